//! The switch loop: the one thread that owns the pipeline, the cache and the ports.
//!
//! It waits on every port and on a wake-up eventfd with epoll, reads frames in
//! batches into one reusable buffer, and for each frame: parse once, answer overlay
//! ARP locally, look the flow up in the exact-match cache (the classifier on a miss),
//! count, and execute the actions in place. Other threads (metrics, the OpenFlow
//! channel, signal handling) never touch the tables directly: they send closures
//! through a [`SwitchHandle`] that this thread runs between batches, so the fast path
//! takes no lock. Nothing here allocates per packet.

use crate::arp::ArpResponder;
use crate::cache::{CacheStats, FlowCache};
use crate::exec::{execute, FrameBuf, Outcome};
use crate::packet::{parse, ParseError};
use crate::table::{Pipeline, RemovedFlow};
use crate::tap::Tap;
use openflow::flow::{port, PortNo};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest frame a port reads (a TAP without offloads never exceeds MTU + headers).
pub const MAX_FRAME: usize = 65_535 + 18;

/// Frames read from one port before looking at the others.
pub const BATCH: usize = 64;

/// A counter written by the switch thread only and read by anyone; a relaxed
/// load-add-store, with no locked instruction on the fast path.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n` (single writer).
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counters of one port (`ofp_port_stats`).
#[derive(Debug, Default)]
pub struct PortCounters {
    /// Frames received.
    pub rx_packets: Counter,
    /// Bytes received.
    pub rx_bytes: Counter,
    /// Frames sent.
    pub tx_packets: Counter,
    /// Bytes sent.
    pub tx_bytes: Counter,
    /// Frames that could not be sent (queue full or device gone).
    pub tx_dropped: Counter,
    /// Receive errors other than "nothing to read".
    pub rx_errors: Counter,
}

/// A port as the rest of the daemon sees it.
#[derive(Debug)]
pub struct PortInfo {
    /// OpenFlow port number.
    pub number: PortNo,
    /// Interface name.
    pub name: String,
    /// Counters.
    pub counters: PortCounters,
}

/// Counters of the whole switch.
#[derive(Debug, Default)]
pub struct SwitchCounters {
    /// Frames dropped because their headers were truncated.
    pub malformed_truncated: Counter,
    /// Frames dropped because a length field lied.
    pub malformed_bad_length: Counter,
    /// Frames dropped because of a wrong version field.
    pub malformed_bad_version: Counter,
    /// ARP requests answered by the anycast gateway.
    pub arp_replies: Counter,
    /// Frames that matched no flow (or a flow without outputs).
    pub no_output: Counter,
    /// Frames dropped by `dec_ttl`.
    pub ttl_expired: Counter,
    /// Frames sent to the controller.
    pub to_controller: Counter,
    /// Outputs to ports that do not exist.
    pub bad_port: Counter,
    /// Cache hits (published once per batch).
    pub cache_hits: Counter,
    /// Cache misses (published once per batch).
    pub cache_misses: Counter,
}

impl SwitchCounters {
    fn malformed(&self, e: &ParseError) -> &Counter {
        match e {
            ParseError::Truncated(_) => &self.malformed_truncated,
            ParseError::BadLength(_) => &self.malformed_bad_length,
            ParseError::BadVersion(_) => &self.malformed_bad_version,
        }
    }

    /// All malformed frames, whatever the reason.
    pub fn malformed_total(&self) -> u64 {
        self.malformed_truncated.get()
            + self.malformed_bad_length.get()
            + self.malformed_bad_version.get()
    }
}

/// What other threads can see of a running switch.
#[derive(Debug)]
pub struct SwitchShared {
    /// Datapath id.
    pub datapath_id: u64,
    /// Ports, in configuration order.
    pub ports: Vec<PortInfo>,
    /// Switch-wide counters.
    pub counters: SwitchCounters,
}

/// A job run on the switch thread with the tables in hand.
pub type Job = Box<dyn FnOnce(&mut Pipeline, Instant) + Send>;

/// A cloneable handle to talk to the switch thread.
#[derive(Debug, Clone)]
pub struct SwitchHandle {
    jobs: Sender<Job>,
    wake: Arc<OwnedFd>,
    stop: Arc<AtomicBool>,
    /// Counters and port list.
    pub shared: Arc<SwitchShared>,
}

/// The switch thread has stopped.
#[derive(Debug, thiserror::Error)]
#[error("the switch thread is not running")]
pub struct SwitchGone;

impl SwitchHandle {
    fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
        unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Runs `f` on the switch thread with the pipeline and waits for its result.
    pub fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Pipeline, Instant) -> R + Send + 'static,
    ) -> Result<R, SwitchGone> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.jobs
            .send(Box::new(move |p, now| {
                let _ = tx.send(f(p, now));
            }))
            .map_err(|_| SwitchGone)?;
        self.wake();
        rx.recv_timeout(Duration::from_secs(10))
            .map_err(|_| SwitchGone)
    }

    /// Asks the switch thread to stop after the current batch.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake();
    }
}

/// Called with every flow that leaves the tables by timeout.
pub type RemovedHook = Box<dyn FnMut(&RemovedFlow) + Send>;

/// A port owned by the switch thread.
#[derive(Debug)]
struct Port {
    number: PortNo,
    tap: Tap,
}

/// The switch: owner of pipeline, cache and ports.
pub struct Switch {
    pipeline: Pipeline,
    cache: FlowCache,
    ports: Vec<Port>,
    arp: Option<ArpResponder>,
    shared: Arc<SwitchShared>,
    jobs: Receiver<Job>,
    handle: SwitchHandle,
    epoll: OwnedFd,
    on_removed: Option<RemovedHook>,
}

impl std::fmt::Debug for Switch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switch")
            .field("datapath_id", &self.shared.datapath_id)
            .field("ports", &self.ports)
            .field("flows", &self.pipeline.len())
            .finish()
    }
}

const WAKE_TOKEN: u64 = u64::MAX;
const EVENTS: usize = 16;
const EVENTS_I32: i32 = 16;

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

impl Switch {
    /// A switch over these TAP ports (with their OpenFlow numbers).
    pub fn new(
        datapath_id: u64,
        ports: Vec<(PortNo, Tap)>,
        arp: Option<ArpResponder>,
        pipeline: Pipeline,
    ) -> io::Result<Switch> {
        // SAFETY: plain epoll_create1; checked below.
        let epoll = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: fresh descriptor, owned here only.
        let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
        // SAFETY: plain eventfd; checked below.
        let wake = check(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: fresh descriptor, owned here only.
        let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(wake) });
        let add = |fd: i32, token: u64| -> io::Result<()> {
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: token,
            };
            // SAFETY: `ev` is a valid epoll_event; both fds are open.
            check(unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })
                .map(|_| ())
        };
        add(wake.as_raw_fd(), WAKE_TOKEN)?;
        for (i, (_, tap)) in ports.iter().enumerate() {
            add(tap.as_raw_fd(), i as u64)?;
        }
        let shared = Arc::new(SwitchShared {
            datapath_id,
            ports: ports
                .iter()
                .map(|(n, t)| PortInfo {
                    number: *n,
                    name: t.name().to_string(),
                    counters: PortCounters::default(),
                })
                .collect(),
            counters: SwitchCounters::default(),
        });
        let (tx, rx) = mpsc::channel();
        let handle = SwitchHandle {
            jobs: tx,
            wake,
            stop: Arc::new(AtomicBool::new(false)),
            shared: shared.clone(),
        };
        Ok(Switch {
            pipeline,
            cache: FlowCache::default(),
            ports: ports
                .into_iter()
                .map(|(number, tap)| Port { number, tap })
                .collect(),
            arp,
            shared,
            jobs: rx,
            handle,
            epoll,
            on_removed: None,
        })
    }

    /// A handle for other threads.
    pub fn handle(&self) -> SwitchHandle {
        self.handle.clone()
    }

    /// Sets the hook called for flows that expire.
    pub fn on_removed(&mut self, hook: RemovedHook) {
        self.on_removed = Some(hook);
    }

    /// Runs until [`SwitchHandle::stop`] is called or `stop` becomes true.
    pub fn run(&mut self, stop: &AtomicBool) -> io::Result<()> {
        let mut frame = FrameBuf::with_capacity(MAX_FRAME);
        let mut reply = [0u8; 64];
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        let mut last_expiry = Instant::now();
        let mut published = CacheStats::default();
        while !stop.load(Ordering::Relaxed) && !self.handle.stop.load(Ordering::Relaxed) {
            // SAFETY: `events` is a valid buffer of 16 epoll_event structures.
            let n = unsafe {
                libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), EVENTS_I32, 200)
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            for ev in &events[..n.unsigned_abs() as usize] {
                let token = ev.u64;
                if token == WAKE_TOKEN {
                    let mut buf = [0u8; 8];
                    // SAFETY: reads 8 bytes into a live buffer from our eventfd.
                    unsafe { libc::read(self.handle.wake.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
                    continue;
                }
                let Ok(idx) = usize::try_from(token) else {
                    continue;
                };
                self.drain_port(idx, &mut frame, &mut reply, now);
            }
            while let Ok(job) = self.jobs.try_recv() {
                job(&mut self.pipeline, now);
            }
            if now.duration_since(last_expiry) >= Duration::from_secs(1) {
                last_expiry = now;
                for removed in self.pipeline.expire(now) {
                    if let Some(hook) = self.on_removed.as_mut() {
                        hook(&removed);
                    }
                }
            }
            let stats = self.cache.stats();
            let c = &self.shared.counters;
            c.cache_hits.add(stats.hits - published.hits);
            c.cache_misses.add(stats.misses - published.misses);
            published = stats;
        }
        Ok(())
    }

    fn drain_port(&mut self, idx: usize, frame: &mut FrameBuf, reply: &mut [u8; 64], now: Instant) {
        let Some(port) = self.ports.get(idx) else {
            return;
        };
        let in_port = port.number;
        let shared = self.shared.clone();
        let info = &shared.ports[idx];
        for _ in 0..BATCH {
            let n = match self.ports[idx].tap.recv(frame.recv_space()) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    info.counters.rx_errors.add(1);
                    return;
                }
            };
            frame.set_len(n);
            info.counters.rx_packets.add(1);
            info.counters.rx_bytes.add(n as u64);
            self.process(idx, in_port, frame, reply, now);
        }
    }

    fn process(
        &mut self,
        idx: usize,
        in_port: PortNo,
        frame: &mut FrameBuf,
        reply: &mut [u8; 64],
        now: Instant,
    ) {
        let counters = &self.shared.counters;
        let (key, mut layout) = match parse(frame.bytes(), in_port) {
            Ok(parsed) => parsed,
            Err(e) => {
                counters.malformed(&e).add(1);
                return;
            }
        };
        if let Some(arp) = &self.arp {
            if let Some(len) = arp.reply(&key, frame.bytes(), reply) {
                counters.arp_replies.add(1);
                send(&self.ports, &self.shared, idx, &reply[..len]);
                return;
            }
        }
        let len = frame.len();
        let decision = self.cache.lookup(&self.pipeline, &key);
        self.pipeline
            .account(&decision.hits, &decision.tables, len, now);
        let mut outputs = 0u32;
        let ports = &self.ports;
        let shared = &self.shared;
        let outcome = execute(&decision.actions, frame, &mut layout, |out, bytes| {
            outputs += 1;
            output(ports, shared, idx, out, bytes);
        });
        if outcome == Outcome::TtlExpired {
            counters.ttl_expired.add(1);
        } else if outputs == 0 {
            counters.no_output.add(1);
        }
    }
}

fn send(ports: &[Port], shared: &SwitchShared, idx: usize, bytes: &[u8]) {
    let counters = &shared.ports[idx].counters;
    match ports[idx].tap.send(bytes) {
        Ok(_) => {
            counters.tx_packets.add(1);
            counters.tx_bytes.add(bytes.len() as u64);
        }
        Err(_) => counters.tx_dropped.add(1),
    }
}

fn output(ports: &[Port], shared: &SwitchShared, in_idx: usize, out: PortNo, bytes: &[u8]) {
    match out {
        port::IN_PORT => send(ports, shared, in_idx, bytes),
        port::FLOOD | port::ALL => {
            for i in (0..ports.len()).filter(|i| *i != in_idx) {
                send(ports, shared, i, bytes);
            }
        }
        port::CONTROLLER => shared.counters.to_controller.add(1),
        p => match ports.iter().position(|q| q.number == p) {
            // OpenFlow never sends back out of the input port unless asked with IN_PORT.
            Some(i) if i != in_idx => send(ports, shared, i, bytes),
            Some(_) => {}
            None => shared.counters.bad_port.add(1),
        },
    }
}
