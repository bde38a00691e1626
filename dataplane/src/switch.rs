//! The switch loop: the one thread that owns the pipeline, the cache and the ports.
//!
//! It waits on every port and on a wake-up eventfd with epoll, reads frames in
//! batches into one reusable buffer, and for each frame: parse once, answer overlay
//! ARP locally, look the flow up in the exact-match cache (the classifier on a miss),
//! count, and execute the actions in place. Other threads (metrics, the OpenFlow
//! channel, signal handling) never touch the tables directly: they send closures
//! through a [`SwitchHandle`] that this thread runs between batches, so the fast path
//! takes no lock. Nothing here allocates per packet. Frames for the controller
//! (packet-in) leave through a bounded channel with a pool of reused buffers: when
//! the channel or the pool is exhausted the frame is dropped and counted, so the
//! OpenFlow channel can never block or slow the fast path. Packet-out frames come in
//! through the same job queue as table changes, so they are ordered with them.

use crate::io::rawport::{RawPort, RawRecv};
use crate::io::tap::Tap;
use crate::tunnel::{Received, Sent, Tunnels};
use dataplane_core::arp::ArpResponder;
use dataplane_core::cache::{CacheStats, FlowCache};
use dataplane_core::exec::{execute, FrameBuf, Outcome};
use dataplane_core::offload::{self, Coalescer, Push, Segments, VnetHdr};
use dataplane_core::packet::{parse, ParseError, ETH_HLEN};
use dataplane_core::packet_io::{PacketInEvent, PacketInReason, PacketOutError, PacketOutJob};
use dataplane_core::pipeline::{Classification, FlowId};
use dataplane_core::pipeline::{Pipeline, RemovedFlow};
use dataplane_core::port::{tunnel_port_name, PeerStatus, PortCounts};
use openflow::flow::{ethertype, port, Action, Mac, PortNo};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest frame a port reads: a super-frame of 64 KB behind an Ethernet header
/// with one VLAN tag.
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

impl PortCounters {
    /// The counters as they are now.
    pub fn snapshot(&self) -> PortCounts {
        PortCounts {
            rx_packets: self.rx_packets.get(),
            rx_bytes: self.rx_bytes.get(),
            tx_packets: self.tx_packets.get(),
            tx_bytes: self.tx_bytes.get(),
            tx_dropped: self.tx_dropped.get(),
            rx_errors: self.rx_errors.get(),
        }
    }
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
    /// Datagrams on the tunnel socket that are not WireGuard for any of our peers.
    pub tunnel_invalid: Counter,
    /// WireGuard data packets whose counter was already seen.
    pub tunnel_replayed: Counter,
    /// Decrypted packets whose source the tables do not place behind their peer.
    pub tunnel_spoofed: Counter,
    /// Decrypted payloads that are not IP.
    pub tunnel_not_ip: Counter,
    /// Frames for a tunnel that are not IP (tunnels carry IP only).
    pub tunnel_non_ip_dropped: Counter,
    /// Frames for a peer with no known endpoint.
    pub tunnel_no_endpoint: Counter,
    /// Frames held while a handshake completes.
    pub tunnel_handshaking: Counter,
    /// Packets over the tunnel MTU (answered with ICMP when IPv4 with DF).
    pub tunnel_too_big: Counter,
    /// Encrypted datagrams the kernel refused to send (socket buffer full).
    pub tunnel_send_errors: Counter,
    /// Packet-ins handed to the OpenFlow channel.
    pub packet_in_queued: Counter,
    /// Packet-ins dropped because the channel's queue or buffer pool was full (or
    /// no channel runs).
    pub packet_in_dropped: Counter,
}

/// Counters of the OpenFlow channel, written by its threads (atomic adds).
#[derive(Debug, Default)]
pub struct ChannelCounters {
    /// OpenFlow connections open now.
    pub connections: AtomicU64,
    /// Messages received.
    pub messages_in: AtomicU64,
    /// Error replies sent.
    pub errors_sent: AtomicU64,
    /// Flow-mods applied.
    pub flow_mods: AtomicU64,
    /// Packet-in messages sent (one per connection that got it).
    pub packet_ins_sent: AtomicU64,
    /// Packet-out messages executed.
    pub packet_outs: AtomicU64,
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
    /// Tunnel peers as of the last second.
    pub tunnels: Mutex<Vec<PeerStatus>>,
    /// When the switch was built (port statistics durations).
    pub started: Instant,
    /// OpenFlow channel counters.
    pub channel: ChannelCounters,
}

/// A job run on the switch thread with the tables in hand.
pub type Job = Box<dyn FnOnce(&mut Pipeline, Instant) + Send>;

/// Work for the switch thread, run in the order it was sent.
enum Work {
    /// A closure over the tables.
    Job(Job),
    /// A frame to inject (OpenFlow packet-out), with where to send the result.
    PacketOut(PacketOutJob, SyncSender<Result<(), PacketOutError>>),
    /// A fresh status of every tunnel peer (empty without tunnels).
    TunnelStatus(SyncSender<Vec<PeerStatus>>),
}

impl std::fmt::Debug for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Work::Job(_) => f.write_str("Job"),
            Work::PacketOut(p, _) => p.fmt(f),
            Work::TunnelStatus(_) => f.write_str("TunnelStatus"),
        }
    }
}

/// The switch thread's end of the packet-in channel.
#[derive(Debug)]
pub struct PacketInSender {
    events: SyncSender<PacketInEvent>,
    pool: Receiver<Vec<u8>>,
}

/// The OpenFlow channel's end of the packet-in channel.
#[derive(Debug)]
pub struct PacketInReceiver {
    /// Frames for the controller, in order.
    pub events: Receiver<PacketInEvent>,
    pool: SyncSender<Vec<u8>>,
}

impl PacketInReceiver {
    /// Returns a frame buffer to the pool once its packet-in is written.
    pub fn recycle(&self, mut buf: Vec<u8>) {
        buf.clear();
        let _ = self.pool.try_send(buf);
    }
}

/// `OFPCML_NO_BUFFER`: an output to the controller that wants the whole frame.
pub const NO_BUFFER_LEN: u16 = 0xffff;

/// Bytes reserved in each pooled packet-in buffer (larger frames grow it once).
const PACKET_IN_BUF: usize = 2048;

/// A bounded packet-in channel holding at most `depth` frames in flight, with
/// `depth` preallocated buffers.
pub fn packet_in_channel(depth: usize) -> (PacketInSender, PacketInReceiver) {
    let depth = depth.max(1);
    let (events_tx, events_rx) = mpsc::sync_channel(depth);
    let (pool_tx, pool_rx) = mpsc::sync_channel(depth);
    for _ in 0..depth {
        let _ = pool_tx.try_send(Vec::with_capacity(PACKET_IN_BUF));
    }
    (
        PacketInSender {
            events: events_tx,
            pool: pool_rx,
        },
        PacketInReceiver {
            events: events_rx,
            pool: pool_tx,
        },
    )
}

impl PacketInSender {
    /// Hands a frame over without blocking; false when it had to be dropped.
    fn send(&self, meta: PacketInMeta, frame: &[u8], max_len: u16) -> bool {
        let Ok(mut buf) = self.pool.try_recv() else {
            return false;
        };
        let keep = if max_len == NO_BUFFER_LEN {
            frame.len()
        } else {
            frame.len().min(usize::from(max_len))
        };
        buf.clear();
        buf.extend_from_slice(&frame[..keep]);
        let event = PacketInEvent {
            in_port: meta.in_port,
            reason: meta.reason,
            table_id: meta.table_id,
            cookie: meta.cookie,
            total_len: frame.len(),
            data: buf,
        };
        match self.events.try_send(event) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

/// Where a packet-in comes from.
#[derive(Debug, Clone, Copy)]
struct PacketInMeta {
    in_port: PortNo,
    reason: PacketInReason,
    table_id: u8,
    cookie: u64,
}

/// Why the entries a packet hit sent it to the controller: the first hit entry
/// with an output to `CONTROLLER` decides; a table-miss entry (priority 0 with an
/// empty match) means [`PacketInReason::NoMatch`].
fn packet_in_meta(pipeline: &Pipeline, c: &Classification, in_port: PortNo) -> PacketInMeta {
    let to_controller = |id: &FlowId| {
        pipeline.entry(*id).is_some_and(|e| {
            e.spec.instructions.iter().any(|i| match i {
                openflow::Instruction::ApplyActions(a) => a
                    .iter()
                    .any(|a| matches!(a, Action::Output { port, .. } if *port == port::CONTROLLER)),
                openflow::Instruction::GotoTable(_) => false,
            })
        })
    };
    let hit = c.hits.iter().find(|id| to_controller(id)).or(c.hits.last());
    match hit.and_then(|id| pipeline.entry(*id)) {
        Some(e) => PacketInMeta {
            in_port,
            reason: if e.spec.priority == 0 && e.spec.matcher == openflow::FlowMatch::any() {
                PacketInReason::NoMatch
            } else {
                PacketInReason::Action
            },
            table_id: e.spec.table_id,
            cookie: e.spec.cookie,
        },
        None => PacketInMeta {
            in_port,
            reason: PacketInReason::Action,
            table_id: 0xff,
            cookie: u64::MAX,
        },
    }
}

/// A cloneable handle to talk to the switch thread.
#[derive(Debug, Clone)]
pub struct SwitchHandle {
    jobs: Sender<Work>,
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

    /// Queues the work `make` builds around a reply sender, wakes the switch thread
    /// and waits for the reply.
    fn ask<R>(&self, make: impl FnOnce(SyncSender<R>) -> Work) -> Result<R, SwitchGone> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.jobs.send(make(tx)).map_err(|_| SwitchGone)?;
        self.wake();
        rx.recv_timeout(Duration::from_secs(10))
            .map_err(|_| SwitchGone)
    }

    /// Runs `f` on the switch thread with the pipeline and waits for its result.
    pub fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Pipeline, Instant) -> R + Send + 'static,
    ) -> Result<R, SwitchGone> {
        self.ask(|tx| {
            Work::Job(Box::new(move |p, now| {
                let _ = tx.send(f(p, now));
            }))
        })
    }

    /// Injects a frame (OpenFlow packet-out) on the switch thread, after every job
    /// sent before it, and waits until its actions have run.
    pub fn packet_out(&self, job: PacketOutJob) -> Result<Result<(), PacketOutError>, SwitchGone> {
        self.ask(|tx| Work::PacketOut(job, tx))
    }

    /// The status of every tunnel peer as the switch thread sees it now (handshake
    /// ages and byte counts, unlike [`SwitchShared::tunnels`], which is up to a second
    /// old); empty for a switch without tunnels.
    pub fn tunnel_status(&self) -> Result<Vec<PeerStatus>, SwitchGone> {
        self.ask(Work::TunnelStatus)
    }

    /// Asks the switch thread to stop after the current batch.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake();
    }
}

/// Called with every flow that leaves the tables by timeout.
pub type RemovedHook = Box<dyn FnMut(&RemovedFlow) + Send>;

/// A port on this host: whole Ethernet frames.
#[derive(Debug)]
pub enum LocalPort {
    /// A TAP device whose file descriptor `scd` holds.
    Tap(Tap),
    /// A packet socket on an interface someone else owns (`type = "raw"`).
    Raw(RawPort),
}

impl LocalPort {
    fn name(&self) -> &str {
        match self {
            LocalPort::Tap(t) => t.name(),
            LocalPort::Raw(r) => r.name(),
        }
    }

    fn fd(&self) -> i32 {
        match self {
            LocalPort::Tap(t) => t.as_raw_fd(),
            LocalPort::Raw(r) => r.as_raw_fd(),
        }
    }
}

/// How a port moves frames.
#[derive(Debug)]
enum PortIo {
    /// A TAP device: whole Ethernet frames.
    Tap(Tap),
    /// A raw packet socket on an existing interface: whole Ethernet frames.
    Raw(RawPort),
    /// A WireGuard peer (index into `Tunnels`): IP packets.
    Tunnel(usize),
}

/// A port owned by the switch thread.
#[derive(Debug)]
struct Port {
    number: PortNo,
    io: PortIo,
}

/// Everything a switch is built from.
#[derive(Debug)]
pub struct SwitchParams {
    /// OpenFlow datapath id.
    pub datapath_id: u64,
    /// Local ports (TAP or raw) with their OpenFlow numbers, in configuration order.
    pub ports: Vec<(PortNo, LocalPort)>,
    /// Tunnels to other hosts (each peer becomes a port).
    pub tunnels: Option<Tunnels>,
    /// The anycast ARP responder, if enabled.
    pub arp: Option<ArpResponder>,
    /// ARP responders of single ports (a gateway's uplink answers for its own
    /// address and the public addresses it serves), by port number.
    pub port_arp: Vec<(PortNo, ArpResponder)>,
    /// The anycast gateway MAC (source of frames made by the switch).
    pub gateway_mac: Mac,
    /// The gateway's overlay address (source of ICMP errors).
    pub gateway_ip: Ipv4Addr,
    /// Initial tables.
    pub pipeline: Pipeline,
}

/// The switch: owner of pipeline, cache and ports.
pub struct Switch {
    pipeline: Pipeline,
    cache: FlowCache,
    ports: Vec<Port>,
    tunnels: Option<Tunnels>,
    arp: Option<ArpResponder>,
    /// Per-port responders, by index into `ports`.
    port_arp: Vec<(usize, ArpResponder)>,
    gateway_mac: Mac,
    gateway_ip: Ipv4Addr,
    shared: Arc<SwitchShared>,
    jobs: Receiver<Work>,
    handle: SwitchHandle,
    epoll: OwnedFd,
    on_removed: Option<RemovedHook>,
    packet_in: Option<PacketInSender>,
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
const TUNNEL_TOKEN: u64 = u64::MAX - 1;
const EVENTS: usize = 16;
const EVENTS_I32: i32 = 16;

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Scratch space the output path needs besides the frame.
struct Scratch {
    icmp: [u8; 14 + 20 + 8 + 60 + 8],
    /// One segment of a super-frame on its way into a tunnel.
    segment: Box<[u8]>,
    /// One segment of a super-frame whose actions need it cut first.
    segment_frame: FrameBuf,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            icmp: [0u8; 14 + 20 + 8 + 60 + 8],
            segment: vec![0u8; MAX_FRAME].into_boxed_slice(),
            segment_frame: FrameBuf::with_capacity(MAX_FRAME),
        }
    }
}

/// True when `actions` leave a super-frame's offload header valid: they touch no
/// byte the header's offsets or the partial checksum depend on (Ethernet addresses,
/// an existing VLAN tag's fields, DSCP and TTL, which the pseudo-header leaves out),
/// and send it nowhere the header cannot follow: a packet-in carries no virtio-net
/// header, so the controller gets complete segments, never a 64 KB frame with an
/// unfinished checksum.
fn actions_keep_offload(actions: &[Action]) -> bool {
    use openflow::flow::{port, Field};
    actions.iter().all(|a| match a {
        Action::Output { port: p, .. } => *p != port::CONTROLLER && *p != port::TABLE,
        Action::DecNwTtl => true,
        Action::SetField { field, .. } => matches!(
            field,
            Field::EthSrc | Field::EthDst | Field::VlanVid | Field::VlanPcp | Field::IpDscp
        ),
        // A bucket may do anything; the flows that need groups pay for segmenting.
        Action::PushVlan(_) | Action::PopVlan | Action::Group(_) => false,
    })
}

/// Ethernet header length of a frame (14, or 18 with one VLAN tag).
fn l2_len(frame: &[u8]) -> usize {
    match frame.get(12..14) {
        Some([0x81, 0x00]) | Some([0x88, 0xa8]) => 18,
        _ => 14,
    }
}

impl Switch {
    /// A switch over these ports.
    pub fn new(params: SwitchParams) -> io::Result<Switch> {
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
        let mut ports = Vec::new();
        let mut infos = Vec::new();
        for (i, (number, local)) in params.ports.into_iter().enumerate() {
            add(local.fd(), i as u64)?;
            infos.push(PortInfo {
                number,
                name: local.name().to_string(),
                counters: PortCounters::default(),
            });
            let io = match local {
                LocalPort::Tap(tap) => PortIo::Tap(tap),
                LocalPort::Raw(raw) => PortIo::Raw(raw),
            };
            ports.push(Port { number, io });
        }
        if let Some(tunnels) = &params.tunnels {
            add(tunnels.fd(), TUNNEL_TOKEN)?;
            for (i, peer) in tunnels.peers().iter().enumerate() {
                infos.push(PortInfo {
                    number: peer.config.port,
                    name: tunnel_port_name(&peer.config.name),
                    counters: PortCounters::default(),
                });
                ports.push(Port {
                    number: peer.config.port,
                    io: PortIo::Tunnel(i),
                });
            }
        }
        let shared = Arc::new(SwitchShared {
            datapath_id: params.datapath_id,
            ports: infos,
            counters: SwitchCounters::default(),
            tunnels: Mutex::new(
                params
                    .tunnels
                    .as_ref()
                    .map(Tunnels::status)
                    .unwrap_or_default(),
            ),
            started: Instant::now(),
            channel: ChannelCounters::default(),
        });
        let (tx, rx) = mpsc::channel();
        let handle = SwitchHandle {
            jobs: tx,
            wake,
            stop: Arc::new(AtomicBool::new(false)),
            shared: shared.clone(),
        };
        let port_arp = params
            .port_arp
            .iter()
            .filter_map(|(number, r)| {
                let idx = ports.iter().position(|p| p.number == *number)?;
                Some((idx, *r))
            })
            .collect();
        Ok(Switch {
            pipeline: params.pipeline,
            cache: FlowCache::default(),
            ports,
            tunnels: params.tunnels,
            arp: params.arp,
            port_arp,
            gateway_mac: params.gateway_mac,
            gateway_ip: params.gateway_ip,
            shared,
            jobs: rx,
            handle,
            epoll,
            on_removed: None,
            packet_in: None,
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

    /// Sends frames output to `CONTROLLER` to this channel (without one they are
    /// only counted).
    pub fn set_packet_in(&mut self, sender: PacketInSender) {
        self.packet_in = Some(sender);
    }

    /// Runs until [`SwitchHandle::stop`] is called or `stop` becomes true.
    pub fn run(&mut self, stop: &AtomicBool) -> io::Result<()> {
        let mut frame = FrameBuf::with_capacity(MAX_FRAME);
        let mut scratch = Scratch::new();
        let mut coalescer = Coalescer::default();
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        let mut last_second = Instant::now();
        let mut published = CacheStats::default();
        if let Some(tunnels) = self.tunnels.as_mut() {
            tunnels.initiate_all();
        }
        while !stop.load(Ordering::Relaxed) && !self.handle.stop.load(Ordering::Relaxed) {
            // SAFETY: `events` is a valid buffer of EVENTS epoll_event structures.
            let n = unsafe {
                libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), EVENTS_I32, 100)
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
                match ev.u64 {
                    WAKE_TOKEN => {
                        let mut buf = [0u8; 8];
                        // SAFETY: reads 8 bytes into a live buffer from our eventfd.
                        unsafe {
                            libc::read(self.handle.wake.as_raw_fd(), buf.as_mut_ptr().cast(), 8)
                        };
                    }
                    TUNNEL_TOKEN => {
                        self.drain_tunnels(&mut frame, &mut coalescer, &mut scratch, now)
                    }
                    token => {
                        if let Ok(idx) = usize::try_from(token) {
                            self.drain_tap(idx, &mut frame, &mut scratch, now);
                        }
                    }
                }
            }
            while let Ok(work) = self.jobs.try_recv() {
                match work {
                    Work::Job(job) => job(&mut self.pipeline, now),
                    Work::PacketOut(job, reply) => {
                        let _ = reply.send(self.packet_out(job, &mut scratch, now));
                    }
                    Work::TunnelStatus(reply) => {
                        let status = self.tunnels.as_ref().map(Tunnels::status);
                        let _ = reply.send(status.unwrap_or_default());
                    }
                }
            }
            if let Some(tunnels) = self.tunnels.as_mut() {
                // Everything this round encrypted leaves in one sendmmsg.
                let refused = tunnels.flush();
                self.shared.counters.tunnel_send_errors.add(refused as u64);
                tunnels.tick(now);
            }
            if now.duration_since(last_second) >= Duration::from_secs(1) {
                last_second = now;
                for removed in self.pipeline.expire(now) {
                    if let Some(hook) = self.on_removed.as_mut() {
                        hook(&removed);
                    }
                }
                if let Some(tunnels) = &self.tunnels {
                    if let Ok(mut status) = self.shared.tunnels.lock() {
                        *status = tunnels.status();
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

    fn drain_tap(&mut self, idx: usize, frame: &mut FrameBuf, scratch: &mut Scratch, now: Instant) {
        let Some(port) = self.ports.get(idx) else {
            return;
        };
        let in_port = port.number;
        let shared = self.shared.clone();
        let info = &shared.ports[idx];
        for _ in 0..BATCH {
            let received = match &self.ports[idx].io {
                PortIo::Tap(tap) => tap.recv(frame.recv_space()),
                PortIo::Raw(raw) => match raw.recv(frame.recv_space()) {
                    Ok(RawRecv::Frame(n, hdr)) => Ok((n, hdr)),
                    // Our own sends, seen leaving the interface.
                    Ok(RawRecv::Outgoing) => continue,
                    Ok(RawRecv::Refused) => {
                        info.counters.rx_errors.add(1);
                        continue;
                    }
                    Err(e) => Err(e),
                },
                PortIo::Tunnel(_) => return,
            };
            let (n, mut hdr) = match received {
                Ok(received) => received,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    info.counters.rx_errors.add(1);
                    return;
                }
            };
            frame.set_len(n);
            // A virtio-net header that does not describe its frame is the sender's
            // error: count it and drop the frame, never forward it half-done.
            if offload::check(&hdr, frame.bytes()).is_err() {
                info.counters.rx_errors.add(1);
                continue;
            }
            // A lone frame's unfinished checksum is finished at once (cheap at its
            // size): every later step then sees a complete packet. Super-frames keep
            // theirs until they are segmented or handed to a kernel that takes them.
            if hdr.needs_csum() && !hdr.is_gso() {
                offload::finish_partial_checksum(
                    frame.bytes_mut(),
                    hdr.csum_start,
                    hdr.csum_offset,
                );
                hdr = VnetHdr::NONE;
            }
            info.counters.rx_packets.add(1);
            info.counters.rx_bytes.add(n as u64);
            self.process(idx, in_port, frame, hdr, scratch, now);
        }
    }

    /// Decrypts what the tunnel socket holds and runs it through the tables,
    /// coalescing back-to-back TCP segments of one flow into super-frames first.
    fn drain_tunnels(
        &mut self,
        frame: &mut FrameBuf,
        coalescer: &mut Coalescer,
        scratch: &mut Scratch,
        now: Instant,
    ) {
        self.decrypt_batch(frame, coalescer, scratch, now);
        self.flush_coalesced(coalescer, scratch, now);
    }

    /// Runs the super-frame the coalescer holds (if any) through the tables.
    fn flush_coalesced(&mut self, coalescer: &mut Coalescer, scratch: &mut Scratch, now: Instant) {
        let Some(idx) = coalescer.source() else {
            return;
        };
        let Some((frame, hdr)) = coalescer.take() else {
            return;
        };
        let port_number = self.ports[idx].number;
        self.process(idx, port_number, frame, hdr, scratch, now);
    }

    fn decrypt_batch(
        &mut self,
        frame: &mut FrameBuf,
        coalescer: &mut Coalescer,
        scratch: &mut Scratch,
        now: Instant,
    ) {
        let shared = self.shared.clone();
        let c = &shared.counters;
        let mut taken = 0;
        loop {
            let Some(tunnels) = self.tunnels.as_mut() else {
                return;
            };
            // After a batch's worth, finish only what was already received: those
            // datagrams left the kernel queue, so epoll would never report them.
            if taken >= BATCH && !tunnels.has_pending() {
                return;
            }
            taken += 1;
            tunnels.refresh_allowed(&self.pipeline);
            // Decrypt straight behind room for the Ethernet header we add.
            let space = frame.recv_space();
            let received = match tunnels.recv(&mut space[ETH_HLEN..]) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            let (peer, len) = match received {
                Received::Data { peer, len } => (peer, len),
                Received::Control => continue,
                Received::Invalid => {
                    c.tunnel_invalid.add(1);
                    continue;
                }
                Received::Replayed => {
                    c.tunnel_replayed.add(1);
                    continue;
                }
            };
            let ip = &space[ETH_HLEN..ETH_HLEN + len];
            let (eth_type, src, v6) = match ip[0] >> 4 {
                4 if len >= 20 => (
                    ethertype::IPV4,
                    u128::from(u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]])),
                    false,
                ),
                6 if len >= 40 => {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(&ip[8..24]);
                    (ethertype::IPV6, u128::from_be_bytes(a), true)
                }
                _ => {
                    c.tunnel_not_ip.add(1);
                    continue;
                }
            };
            if !tunnels.source_allowed(peer, src, v6) {
                c.tunnel_spoofed.add(1);
                continue;
            }
            let port_number = tunnels.peers()[peer].config.port;
            space[0..6].copy_from_slice(&self.gateway_mac.0);
            space[6..12].copy_from_slice(&self.gateway_mac.0);
            space[12..14].copy_from_slice(&eth_type.to_be_bytes());
            frame.set_len(ETH_HLEN + len);
            let Some(idx) = self.ports.iter().position(|p| p.number == port_number) else {
                continue;
            };
            let counters = &shared.ports[idx].counters;
            counters.rx_packets.add(1);
            counters.rx_bytes.add((ETH_HLEN + len) as u64);
            loop {
                match coalescer.push(idx, frame.bytes()) {
                    Push::Taken => break,
                    Push::FlushFirst => self.flush_coalesced(coalescer, scratch, now),
                    Push::Refused => {
                        self.flush_coalesced(coalescer, scratch, now);
                        self.process(idx, port_number, frame, VnetHdr::NONE, scratch, now);
                        break;
                    }
                }
            }
        }
    }

    /// Runs a packet-out: the actions on the frame, `output:TABLE` through the tables
    /// with the frame as the actions before it left it. Control path: it may allocate.
    fn packet_out(
        &mut self,
        job: PacketOutJob,
        scratch: &mut Scratch,
        now: Instant,
    ) -> Result<(), PacketOutError> {
        let in_idx = match job.in_port {
            port::CONTROLLER | port::ANY => usize::MAX,
            p => self
                .ports
                .iter()
                .position(|q| q.number == p)
                .ok_or(PacketOutError::BadInPort(p))?,
        };
        for a in &job.actions {
            if let Action::Output { port: p, .. } = a {
                let reserved = matches!(
                    *p,
                    port::TABLE | port::IN_PORT | port::FLOOD | port::ALL | port::CONTROLLER
                );
                if !reserved && !self.ports.iter().any(|q| q.number == *p) {
                    return Err(PacketOutError::BadOutPort(*p));
                }
            }
            if let Action::Group(g) = a {
                if self.pipeline.groups().get(*g).is_none() {
                    return Err(PacketOutError::BadOutGroup(*g));
                }
            }
        }
        let mut frame = FrameBuf::with_capacity(job.data.len() + 64);
        frame.fill(&job.data);
        let (_, mut layout) =
            parse(frame.bytes(), job.in_port).map_err(|_| PacketOutError::BadPacket)?;
        self.shared
            .channel
            .packet_outs
            .fetch_add(1, Ordering::Relaxed);
        let mut to_table: Option<Vec<u8>> = None;
        let mut out = Output {
            ports: &self.ports,
            shared: &self.shared,
            tunnels: &mut self.tunnels,
            icmp: &mut scratch.icmp,
            segment: &mut scratch.segment,
            offload: VnetHdr::NONE,
            gateway_mac: self.gateway_mac,
            gateway_ip: self.gateway_ip,
            in_idx,
            packet_in: self.packet_in.as_ref(),
            classified: None,
            in_port: job.in_port,
            actions: &job.actions,
        };
        execute(
            &job.actions,
            &mut frame,
            &mut layout,
            self.pipeline.groups(),
            |p, bytes| {
                if p == port::TABLE {
                    to_table.get_or_insert_with(|| bytes.to_vec());
                } else {
                    out.output(p, bytes);
                }
            },
        );
        if let Some(bytes) = to_table {
            let mut frame = FrameBuf::with_capacity(bytes.len() + 64);
            frame.fill(&bytes);
            self.process(in_idx, job.in_port, &mut frame, VnetHdr::NONE, scratch, now);
        }
        Ok(())
    }

    /// Runs one frame (or super-frame, as `offload` says) through the tables and
    /// its actions. A super-frame counts as one packet in the flow entries.
    fn process(
        &mut self,
        idx: usize,
        in_port: PortNo,
        frame: &mut FrameBuf,
        offload: VnetHdr,
        scratch: &mut Scratch,
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
        // A port with answers of its own (a gateway's uplink) faces the outside:
        // the overlay's anycast answers are never given there.
        let own_answers = self.port_arp.iter().any(|(port, _)| *port == idx);
        let responders = self.arp.iter().filter(|_| !own_answers).chain(
            self.port_arp
                .iter()
                .filter(|(port, _)| *port == idx)
                .map(|(_, r)| r),
        );
        for arp in responders {
            if let Some(len) = arp.reply(&key, frame.bytes(), &mut scratch.icmp) {
                counters.arp_replies.add(1);
                let reply = &scratch.icmp[..len];
                send_local(&self.ports, &self.shared, idx, &VnetHdr::NONE, reply);
                return;
            }
        }
        let len = frame.len();
        let decision = self.cache.lookup(&self.pipeline, &key);
        self.pipeline
            .account(&decision.hits, &decision.tables, len, now);
        let mut outputs = 0u32;
        let keep = !offload.is_gso() || actions_keep_offload(&decision.actions);
        let mut out = Output {
            ports: &self.ports,
            shared: &self.shared,
            tunnels: &mut self.tunnels,
            icmp: &mut scratch.icmp,
            segment: &mut scratch.segment,
            offload: if keep { offload } else { VnetHdr::NONE },
            gateway_mac: self.gateway_mac,
            gateway_ip: self.gateway_ip,
            in_idx: idx,
            packet_in: self.packet_in.as_ref(),
            classified: Some((&self.pipeline, decision)),
            in_port,
            actions: &decision.actions,
        };
        let outcome = if keep {
            execute(
                &decision.actions,
                frame,
                &mut layout,
                self.pipeline.groups(),
                |port, bytes| {
                    outputs += 1;
                    out.output(port, bytes);
                },
            )
        } else {
            // Actions that move headers or change what the partial checksum covers:
            // cut the super-frame first and run them on each complete segment.
            let Some(mut segments) = Segments::new(frame.bytes(), &offload) else {
                return;
            };
            let mut outcome = Outcome::Done;
            while let Some(n) = segments.next_into(scratch.segment_frame.recv_space()) {
                scratch.segment_frame.set_len(n);
                let Ok((_, mut layout)) = parse(scratch.segment_frame.bytes(), in_port) else {
                    continue;
                };
                outcome = execute(
                    &decision.actions,
                    &mut scratch.segment_frame,
                    &mut layout,
                    self.pipeline.groups(),
                    |port, bytes| {
                        outputs += 1;
                        out.output(port, bytes);
                    },
                );
            }
            outcome
        };
        if outcome == Outcome::TtlExpired {
            counters.ttl_expired.add(1);
        } else if outputs == 0 {
            counters.no_output.add(1);
        }
    }
}

/// Sends a frame (behind its virtio-net header) out of a local (TAP or raw) port;
/// tunnels are not local. A super-frame counts as one packet.
fn send_local(ports: &[Port], shared: &SwitchShared, idx: usize, hdr: &VnetHdr, bytes: &[u8]) {
    let (Some(info), Some(port)) = (shared.ports.get(idx), ports.get(idx)) else {
        return;
    };
    let counters = &info.counters;
    let sent = match &port.io {
        PortIo::Tap(tap) => tap.send(hdr, bytes),
        PortIo::Raw(raw) => raw.send(hdr, bytes),
        PortIo::Tunnel(_) => return,
    };
    match sent {
        Ok(_) => {
            counters.tx_packets.add(1);
            counters.tx_bytes.add(bytes.len() as u64);
        }
        Err(_) => counters.tx_dropped.add(1),
    }
}

/// The output side of one packet's actions.
struct Output<'a> {
    ports: &'a [Port],
    shared: &'a SwitchShared,
    tunnels: &'a mut Option<Tunnels>,
    icmp: &'a mut [u8; 14 + 20 + 8 + 60 + 8],
    /// Room for one segment of a super-frame bound for a tunnel.
    segment: &'a mut [u8],
    /// The virtio-net header of the frame being output.
    offload: VnetHdr,
    gateway_mac: Mac,
    gateway_ip: Ipv4Addr,
    /// Index of the input port (`usize::MAX` for none, as in a packet-out).
    in_idx: usize,
    packet_in: Option<&'a PacketInSender>,
    /// The tables and what the packet hit (none for a packet-out).
    classified: Option<(&'a Pipeline, &'a Classification)>,
    in_port: PortNo,
    actions: &'a [Action],
}

impl Output<'_> {
    fn controller(&mut self, bytes: &[u8]) {
        let c = &self.shared.counters;
        c.to_controller.add(1);
        let Some(sender) = self.packet_in else {
            c.packet_in_dropped.add(1);
            return;
        };
        // Cold path: only frames for the controller look at the entries again.
        let meta = match self.classified {
            Some((pipeline, classification)) => {
                packet_in_meta(pipeline, classification, self.in_port)
            }
            None => PacketInMeta {
                in_port: self.in_port,
                reason: PacketInReason::Action,
                table_id: 0xff,
                cookie: u64::MAX,
            },
        };
        let max_len = self
            .actions
            .iter()
            .find_map(|a| match a {
                Action::Output { port, max_len } if *port == port::CONTROLLER => Some(*max_len),
                _ => None,
            })
            .unwrap_or(NO_BUFFER_LEN);
        if sender.send(meta, bytes, max_len) {
            c.packet_in_queued.add(1);
        } else {
            c.packet_in_dropped.add(1);
        }
    }

    fn output(&mut self, out: PortNo, bytes: &[u8]) {
        match out {
            port::IN_PORT if self.in_idx < self.ports.len() => self.send(self.in_idx, bytes),
            port::IN_PORT => self.shared.counters.bad_port.add(1),
            port::FLOOD | port::ALL => {
                for i in 0..self.ports.len() {
                    // Floods stay on this host: tunnels carry routed IP only.
                    let local = matches!(self.ports[i].io, PortIo::Tap(_) | PortIo::Raw(_));
                    if i != self.in_idx && local {
                        self.send(i, bytes);
                    }
                }
            }
            port::CONTROLLER => self.controller(bytes),
            p => match self.ports.iter().position(|q| q.number == p) {
                // OpenFlow never sends back out of the input port unless asked with IN_PORT.
                Some(i) if i != self.in_idx => self.send(i, bytes),
                Some(_) => {}
                None => self.shared.counters.bad_port.add(1),
            },
        }
    }

    fn send(&mut self, idx: usize, bytes: &[u8]) {
        match self.ports[idx].io {
            PortIo::Tap(_) | PortIo::Raw(_) => {
                send_local(self.ports, self.shared, idx, &self.offload, bytes)
            }
            PortIo::Tunnel(peer) => self.send_tunnel(idx, peer, bytes),
        }
    }

    fn send_tunnel(&mut self, idx: usize, peer: usize, frame: &[u8]) {
        let c = &self.shared.counters;
        let l2 = l2_len(frame);
        let eth_type = frame
            .get(l2 - 2..l2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]));
        if !matches!(eth_type, Some(ethertype::IPV4) | Some(ethertype::IPV6)) || frame.len() <= l2 {
            c.tunnel_non_ip_dropped.add(1);
            return;
        }
        let Some(tunnels) = self.tunnels.as_mut() else {
            return;
        };
        let segments = if self.offload.is_gso() {
            // Checked when it was received; refused here only if an action broke it.
            let Some(segments) = Segments::new(frame, &self.offload) else {
                c.tunnel_non_ip_dropped.add(1);
                return;
            };
            Some(segments)
        } else {
            None
        };
        let wire_len = segments
            .as_ref()
            .map_or(frame.len() - l2, Segments::max_ip_len);
        if wire_len > tunnels.mtu {
            c.tunnel_too_big.add(1);
            if let Some(len) = frag_needed(
                self.icmp,
                frame,
                l2,
                tunnels.mtu,
                self.gateway_mac,
                self.gateway_ip,
            ) {
                let reply = &self.icmp[..len];
                send_local(self.ports, self.shared, self.in_idx, &VnetHdr::NONE, reply);
            }
            return;
        }
        let counters = &self.shared.ports[idx].counters;
        let count = |sent: Sent, len: usize| match sent {
            Sent::Sent => {
                counters.tx_packets.add(1);
                counters.tx_bytes.add(len as u64);
            }
            Sent::Handshaking => c.tunnel_handshaking.add(1),
            Sent::NoEndpoint => c.tunnel_no_endpoint.add(1),
            Sent::SocketError => counters.tx_dropped.add(1),
        };
        match segments {
            None => count(tunnels.send(peer, &frame[l2..]), frame.len()),
            // Each segment leaves as its own datagram and counts as a packet of the
            // tunnel port, as it would have without offloads.
            Some(mut segments) => {
                while let Some(n) = segments.next_into(self.segment) {
                    count(tunnels.send(peer, &self.segment[l2..n]), n);
                }
            }
        }
    }
}

/// Builds an ICMP "fragmentation needed" (type 3, code 4) answer to an IPv4 frame
/// with DF set that is larger than `mtu`. `None` for anything else (IPv6 and
/// DF-less packets are dropped and counted by the caller).
fn frag_needed(
    out: &mut [u8],
    frame: &[u8],
    l2: usize,
    mtu: usize,
    gw_mac: Mac,
    gw_ip: Ipv4Addr,
) -> Option<usize> {
    let ip = frame.get(l2..)?;
    if ip.len() < 20 || ip[0] >> 4 != 4 || ip[6] & 0x40 == 0 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let quoted = ip.get(..(ihl + 8).min(ip.len()))?;
    let total = 20 + 8 + quoted.len();
    let buf = out.get_mut(..ETH_HLEN + total)?;
    buf[0..6].copy_from_slice(&frame[6..12]);
    buf[6..12].copy_from_slice(&gw_mac.0);
    buf[12..14].copy_from_slice(&ethertype::IPV4.to_be_bytes());
    let h = &mut buf[ETH_HLEN..];
    h[..20].fill(0);
    h[0] = 0x45;
    h[2..4].copy_from_slice(&u16::try_from(total).ok()?.to_be_bytes());
    h[8] = 64;
    h[9] = 1;
    h[12..16].copy_from_slice(&gw_ip.octets());
    h[16..20].copy_from_slice(&ip[12..16]);
    dataplane_core::packet::fix_ipv4_checksum(h);
    let icmp = &mut h[20..];
    icmp[0] = 3;
    icmp[1] = 4;
    icmp[2..6].fill(0);
    icmp[6..8].copy_from_slice(&u16::try_from(mtu).unwrap_or(u16::MAX).to_be_bytes());
    icmp[8..8 + quoted.len()].copy_from_slice(quoted);
    let sum = dataplane_core::packet::checksum_finish(dataplane_core::packet::checksum_add(
        0,
        &icmp[..8 + quoted.len()],
    ));
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    Some(ETH_HLEN + total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> PacketInMeta {
        PacketInMeta {
            in_port: 1,
            reason: PacketInReason::NoMatch,
            table_id: 0,
            cookie: 0,
        }
    }

    #[test]
    fn only_rewrites_outside_the_partial_checksum_keep_a_super_frame_whole() {
        use openflow::flow::Field;
        let keeps = [
            Action::set(Field::EthSrc, 0x0200_0000_0001),
            Action::set(Field::EthDst, 0x0200_0000_0002),
            Action::set(Field::IpDscp, 10),
            Action::DecNwTtl,
            Action::output(1),
        ];
        assert!(actions_keep_offload(&keeps));
        for breaks in [
            Action::set(Field::Ipv4Dst, 1),
            Action::set(Field::Ipv6Src, 1),
            Action::set(Field::L4Dst, 80),
            Action::PushVlan(0x8100),
            Action::PopVlan,
            Action::output(openflow::flow::port::CONTROLLER),
        ] {
            let mut actions = keeps.to_vec();
            actions.insert(2, breaks);
            assert!(!actions_keep_offload(&actions), "{breaks:?}");
        }
    }

    #[test]
    fn packet_in_channel_drops_when_full_and_reuses_buffers() {
        let (tx, rx) = packet_in_channel(2);
        let frame = [7u8; 100];
        assert!(tx.send(meta(), &frame, NO_BUFFER_LEN));
        assert!(tx.send(meta(), &frame, 10));
        // Queue and pool exhausted: the third is dropped, not waited for.
        assert!(!tx.send(meta(), &frame, NO_BUFFER_LEN));
        let first = rx.events.try_recv().unwrap();
        assert_eq!((first.total_len, first.data.len()), (100, 100));
        let second = rx.events.try_recv().unwrap();
        assert_eq!((second.total_len, second.data.len()), (100, 10));
        let ptr = first.data.as_ptr();
        rx.recycle(first.data);
        assert!(tx.send(meta(), &frame, NO_BUFFER_LEN));
        // The recycled buffer carries the next frame.
        assert_eq!(rx.events.try_recv().unwrap().data.as_ptr(), ptr);
    }
}
