//! A forwarding worker itself: building the switch from its ports, the epoll
//! loop (with the control thread and the other workers beside it), and each
//! frame's way through parse, ARP, cache, classifier and actions.

use super::busy_poll::BusyPoll;
use super::counters::{ChannelCounters, PortInfo, ReloadCounters, SwitchCounters, SwitchShared};
use super::guards::PortGuards;
use super::handle::{SwitchHandle, Work};
use super::handoff::Crew;
use super::link_control::VmLinkControl;
use super::output::{actions_keep_offload, Egress, Output};
use super::packet_in::PacketInSender;
use super::port_state::PortChanges;
use super::ports::{send_local, LocalPort, Port, PortIo, BATCH, MAX_FRAME};
use super::stage_latency::Stage;
use super::stage_latency::StageLatency;
use super::tables::{Control, Published, RemovedHook};
use crate::io::rawport::RawRecv;
use crate::io::tap::LinkProbe;
use crate::tunnel::Tunnels;
use arc_swap::ArcSwap;
use dataplane_core::arp::ArpResponder;
use dataplane_core::cache::CacheStats;
use dataplane_core::dhcp::{self, DhcpServer};
use dataplane_core::exec::{execute_counted, FrameBuf, Outcome};
use dataplane_core::megaflow::MegaflowCache;
use dataplane_core::offload::{self, Coalescer, Segments, VnetHdr};
use dataplane_core::packet::parse;
use dataplane_core::pipeline::Pipeline;
use dataplane_core::port::tunnel_port_name;
use dataplane_core::port_security::PortBinding;
use openflow::flow::{Mac, PortNo};
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Everything a switch is built from.
#[derive(Debug)]
pub struct SwitchParams {
    /// OpenFlow datapath id.
    pub datapath_id: u64,
    /// Local ports (TAP or raw) with their OpenFlow numbers, in configuration order.
    pub ports: Vec<(PortNo, LocalPort)>,
    /// Link probes of local ports, by port number (a port without one is
    /// reported up).
    pub probes: Vec<(PortNo, LinkProbe)>,
    /// Tunnels to other hosts (each peer becomes a port).
    pub tunnels: Option<Tunnels>,
    /// The anycast ARP responder, if enabled.
    pub arp: Option<ArpResponder>,
    /// ARP responders of single ports (a gateway's uplink answers for its own
    /// address and the public addresses it serves), by port number.
    pub port_arp: Vec<(PortNo, ArpResponder)>,
    /// VM ports bound to their VM's MAC and addresses (port security).
    pub bindings: Vec<(PortNo, PortBinding)>,
    /// The DHCP server of the bound VM ports, if enabled.
    pub dhcp: Option<DhcpServer>,
    /// IPv6 neighbour discovery of VM ports and of a gateway's uplinks.
    pub nd: super::LinkParams,
    /// The anycast gateway MAC (source of frames made by the switch).
    pub gateway_mac: Mac,
    /// The gateway's overlay address (source of ICMP errors).
    pub gateway_ip: Ipv4Addr,
    /// Initial tables.
    pub pipeline: Pipeline,
    /// Forwarding workers (`[scheduling] workers`); every local port comes with
    /// this many queues.
    pub workers: usize,
}

/// The switch: owner of the tables' control side, and forwarding worker 0 (a
/// cache, a queue of every port, the tunnels) with the other workers beside it.
pub struct Switch {
    /// The tables as last published; refreshed between rounds.
    pub(super) pipeline: Arc<Pipeline>,
    /// The control thread's state, taken by [`Switch::run`] while it runs.
    pub(super) control: Option<Control>,
    pub(super) cache: MegaflowCache,
    pub(super) egress: Egress,
    pub(super) tunnels: Option<Tunnels>,
    pub(super) arp: Option<ArpResponder>,
    /// Per-port responders, by index into `ports`.
    pub(super) port_arp: Vec<(usize, ArpResponder)>,
    pub(super) guards: PortGuards,
    pub(super) dhcp: Option<DhcpServer>,
    pub(super) link: VmLinkControl,
    pub(super) jobs: Receiver<(Instant, Work)>,
    pub(super) handle: SwitchHandle,
    pub(super) epoll: OwnedFd,
    /// Which forwarding worker this is, and what ties it to the others.
    pub(super) crew: Crew,
    /// Workers 1 and up (worker 0 only), built with it and run beside it.
    pub(super) helpers: Vec<Switch>,
}

impl std::fmt::Debug for Switch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switch")
            .field("datapath_id", &self.egress.shared.datapath_id)
            .field("ports", &self.egress.ports)
            .field("flows", &self.pipeline.len())
            .finish()
    }
}

pub(super) const WAKE_TOKEN: u64 = u64::MAX;
pub(super) const TUNNEL_TOKEN: u64 = u64::MAX - 1;
pub(super) const EVENTS: usize = 16;
pub(super) const EVENTS_I32: i32 = 16;
/// How long an idle forwarding thread sleeps in `epoll_wait` before it looks at
/// its timers (handshakes, keepalives, statistics).
const IDLE_WAIT_MS: i32 = 100;

/// Scratch space the output path needs besides the frame.
pub(super) struct Scratch {
    pub(super) icmp: [u8; 14 + 20 + 8 + 60 + 8],
    /// A DHCP reply.
    dhcp: [u8; dhcp::MAX_REPLY_FRAME],
    /// One segment of a super-frame on its way into a tunnel.
    pub(super) segment: Box<[u8]>,
    /// One segment of a super-frame whose actions need it cut first.
    segment_frame: FrameBuf,
}

impl Scratch {
    pub(super) fn new() -> Scratch {
        Scratch {
            icmp: [0u8; 14 + 20 + 8 + 60 + 8],
            dhcp: [0u8; dhcp::MAX_REPLY_FRAME],
            segment: vec![0u8; MAX_FRAME].into_boxed_slice(),
            segment_frame: FrameBuf::with_capacity(MAX_FRAME),
        }
    }
}

impl Switch {
    /// A switch over these ports.
    pub fn new(mut params: SwitchParams) -> io::Result<Switch> {
        let epoll = crate::io::epoll_new()?;
        let wake = Arc::new(crate::io::eventfd_new()?);
        let add =
            |fd: i32, token: u64| crate::io::epoll_ctl(&epoll, libc::EPOLL_CTL_ADD, fd, token);
        add(wake.as_raw_fd(), WAKE_TOKEN)?;
        let mut ports = Vec::new();
        for (i, (number, local)) in params.ports.into_iter().enumerate() {
            add(local.fd(), i as u64)?;
            let probe = params
                .probes
                .iter()
                .position(|(n, _)| *n == number)
                .map(|at| params.probes.swap_remove(at).1);
            let info = Arc::new(PortInfo::new(number, local.name().to_string(), probe));
            let io = local.into_io();
            ports.push(Port { number, io, info });
        }
        if let Some(tunnels) = &params.tunnels {
            add(tunnels.fd(), TUNNEL_TOKEN)?;
            for (i, peer) in tunnels.peers().iter().enumerate() {
                let name = tunnel_port_name(&peer.config.name);
                ports.push(Port {
                    number: peer.config.port,
                    io: PortIo::Tunnel(i),
                    info: Arc::new(PortInfo::new(peer.config.port, name, None)),
                });
            }
        }
        let shared = Arc::new(SwitchShared {
            datapath_id: params.datapath_id,
            ports: ArcSwap::from_pointee(ports.iter().map(|p| p.info.clone()).collect()),
            port_changes: PortChanges::default(),
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
            reloads: ReloadCounters::default(),
            stage_latency: (0..params.workers.max(1))
                .map(|_| StageLatency::default())
                .collect(),
        });
        let (tx, rx) = mpsc::channel();
        let (tables_tx, tables_rx) = mpsc::channel();
        let published = Arc::new(Published::new(params.pipeline.clone()));
        let control = Control::new(params.pipeline, published.clone(), tables_rx);
        let handle = SwitchHandle {
            jobs: tx,
            tables: tables_tx,
            published: published.clone(),
            wake,
            stop: Arc::new(AtomicBool::new(false)),
            shared: shared.clone(),
            opener: Arc::default(),
        };
        let port_arp = params
            .port_arp
            .iter()
            .filter_map(|(number, r)| {
                let idx = ports.iter().position(|p| p.number == *number)?;
                Some((idx, *r))
            })
            .collect::<Vec<_>>();
        let uplinks: Vec<usize> = port_arp.iter().map(|(idx, _)| *idx).collect();
        let mut guards = PortGuards::new(&ports, &uplinks, params.bindings)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut switch = Switch {
            pipeline: published.snapshot(),
            control: Some(control),
            cache: MegaflowCache::default(),
            egress: Egress {
                ports,
                shared,
                gateway_mac: params.gateway_mac,
                gateway_ip: params.gateway_ip,
                packet_in: None,
            },
            tunnels: params.tunnels,
            arp: params.arp,
            port_arp,
            link: VmLinkControl::new(params.nd, &mut guards),
            guards,
            dhcp: params.dhcp,
            jobs: rx,
            handle,
            epoll,
            crew: Crew::default(),
            helpers: Vec::new(),
        };
        switch.build_helpers(params.workers)?;
        Ok(switch)
    }

    /// A handle for other threads.
    pub fn handle(&self) -> SwitchHandle {
        self.handle.clone()
    }

    /// Sets the hook called for flows that expire.
    pub fn on_removed(&mut self, hook: RemovedHook) {
        if let Some(control) = self.control.as_mut() {
            control.on_removed = Some(hook);
        }
    }

    /// Sends frames output to `CONTROLLER` to this channel (without one they are
    /// only counted).
    pub fn set_packet_in(&mut self, sender: PacketInSender) {
        for helper in &mut self.helpers {
            helper.egress.packet_in = Some(sender.clone());
        }
        self.egress.packet_in = Some(sender);
    }

    /// Runs until [`SwitchHandle::stop`] is called or `stop` becomes true: the
    /// control thread beside this one, which forwards.
    pub fn run(&mut self, stop: &AtomicBool) -> io::Result<()> {
        let Some(mut control) = self.control.take() else {
            return Err(io::Error::other("the switch is already running"));
        };
        let forwarding_done = AtomicBool::new(false);
        let handle_stop = self.handle.stop.clone();
        let helpers = std::mem::take(&mut self.helpers);
        let result = std::thread::scope(|s| {
            let control_thread = std::thread::Builder::new()
                .name("tables".into())
                .spawn_scoped(s, || {
                    crate::scheduling::control_thread();
                    control.run(|| {
                        stop.load(Ordering::Relaxed)
                            || handle_stop.load(Ordering::Relaxed)
                            || forwarding_done.load(Ordering::Relaxed)
                    });
                    control
                });
            let result = match control_thread {
                Ok(thread) => {
                    // Workers 1 and up stop with this one (or at once if one
                    // of them could not start).
                    let result =
                        Switch::start_helpers(helpers, s, &forwarding_done).and_then(|helpers| {
                            let result = self.forward(stop);
                            forwarding_done.store(true, Ordering::Relaxed);
                            self.helpers = Switch::join_helpers(helpers);
                            result
                        });
                    forwarding_done.store(true, Ordering::Relaxed);
                    thread.join().ok().map(|control| (result, control))
                }
                Err(e) => return Err(e),
            };
            Ok(result)
        })?;
        match result {
            Some((result, control)) => {
                self.control = Some(control);
                result
            }
            None => Err(io::Error::other("the tables' control thread panicked")),
        }
    }

    pub(super) fn forward(&mut self, stop: &AtomicBool) -> io::Result<()> {
        let mut frame = FrameBuf::with_capacity(MAX_FRAME);
        let mut scratch = Scratch::new();
        let mut coalescer = Coalescer::default();
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        let mut last_second = Instant::now();
        let mut published = CacheStats::default();
        let shared = self.egress.shared.clone();
        let latency = &shared.stage_latency[self.crew.worker];
        let mut poll = BusyPoll::new(crate::scheduling::chosen().busy_poll());
        if let Some(tunnels) = self.tunnels.as_mut() {
            tunnels.initiate_all();
        }
        while !stop.load(Ordering::Relaxed) && !self.handle.stop.load(Ordering::Relaxed) {
            let timeout = poll.timeout_ms(IDLE_WAIT_MS);
            // SAFETY: `events` is a valid buffer of EVENTS epoll_event structures.
            let n = unsafe {
                libc::epoll_wait(
                    self.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    EVENTS_I32,
                    timeout,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            if n == 0 && !poll.housekeeping_due(now) {
                // An empty spin of the busy-poll window: let any thread waiting
                // for this core (a VM's, the kernel's softirq thread, another
                // switch) run first, then look again.
                poll.yield_core();
                continue;
            }
            self.handle.published.refresh(&mut self.pipeline);
            // Each clock reading ends one stage and starts the next.
            let mut mark = now;
            let mut moved = false;
            for ev in &events[..n.unsigned_abs() as usize] {
                let stage = match ev.u64 {
                    WAKE_TOKEN => {
                        let mut buf = [0u8; 8];
                        // SAFETY: reads 8 bytes into a live buffer from our eventfd.
                        unsafe {
                            libc::read(self.handle.wake.as_raw_fd(), buf.as_mut_ptr().cast(), 8)
                        };
                        continue;
                    }
                    TUNNEL_TOKEN => {
                        self.drain_tunnels(&mut frame, &mut coalescer, &mut scratch, now);
                        if let Some(age) = self.tunnels.as_mut().and_then(Tunnels::take_receive_age)
                        {
                            latency.record(Stage::TunnelWakeup, age);
                        }
                        Stage::TunnelBatch
                    }
                    token => {
                        if let Ok(idx) = usize::try_from(token) {
                            self.drain_tap(idx, &mut frame, &mut scratch, now);
                        }
                        Stage::LocalBatch
                    }
                };
                let t = Instant::now();
                latency.record(stage, t - mark);
                mark = t;
                moved = true;
            }
            // Again: a packet-out queued after a flow-mod must meet its tables.
            self.handle.published.refresh(&mut self.pipeline);
            while let Ok((queued, work)) = self.jobs.try_recv() {
                latency.record(
                    Stage::JobHop,
                    Instant::now().saturating_duration_since(queued),
                );
                self.run_job(work, &mut scratch, now);
            }
            self.send_handed(&mut frame, &mut coalescer, &mut scratch, now);
            self.crew.end_round();
            if let Some(tunnels) = self.tunnels.as_mut() {
                if tunnels.has_queued() {
                    // Everything this round encrypted leaves in one sendmmsg.
                    let refused = tunnels.flush();
                    shared.counters.tunnel_send_errors.add(refused as u64);
                    let t = Instant::now();
                    latency.record(Stage::TunnelSend, t - mark);
                    mark = t;
                }
                tunnels.tick(now);
            }
            if moved {
                latency.record(Stage::Round, mark - now);
                poll.traffic(mark);
            }
            if now.duration_since(last_second) >= Duration::from_secs(1) {
                last_second = now;
                if self.crew.worker == 0 {
                    self.link.tick(now, &self.guards, &self.egress);
                }
                if let Some(tunnels) = &self.tunnels {
                    if let Ok(mut status) = shared.tunnels.lock() {
                        tunnels.update_status(&mut status);
                    }
                }
            }
            let stats = self.cache.stats();
            let c = &shared.counters;
            c.cache_hits.add(stats.hits - published.hits);
            c.cache_misses.add(stats.misses - published.misses);
            published = stats;
        }
        Ok(())
    }

    /// Runs one piece of work another thread queued.
    fn run_job(&mut self, work: Work, scratch: &mut Scratch, now: Instant) {
        match work {
            Work::PacketOut(job, reply) => {
                let _ = reply.send(self.packet_out(job, scratch, now));
            }
            Work::Bind(port, binding, reply) => {
                let _ = reply.send(self.bind_everywhere(port, binding));
            }
            Work::AddPort(new, reply) => {
                let _ = reply.send(self.add_port(*new));
            }
            Work::RemovePort(number, reply) => {
                let _ = reply.send(self.remove_port(number));
            }
            Work::AddQueue(port, binding, reply) => {
                let _ = reply.send(self.add_queue(*port, binding));
            }
            Work::RemoveQueue(number, reply) => {
                let _ = reply.send(self.remove_queue(number).map(drop));
            }
            Work::TunnelStatus(reply) => {
                let _ = reply.send(self.tunnel_status_everywhere());
            }
        }
    }

    pub(super) fn drain_tap(
        &mut self,
        idx: usize,
        frame: &mut FrameBuf,
        scratch: &mut Scratch,
        now: Instant,
    ) {
        let Some(port) = self.egress.ports.get(idx) else {
            return;
        };
        let in_port = port.number;
        let info = port.info.clone();
        for _ in 0..BATCH {
            let received = match &self.egress.ports[idx].io {
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
                Err(e) if device_gone(&e) => {
                    info.counters.rx_errors.add(1);
                    self.stop_watching_gone_device(idx, &e);
                    return;
                }
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
            // An unfinished transport checksum (a lone frame's or a super-frame's)
            // stays unfinished: `process` finishes it only where the actions or the
            // output need it complete, and a TAP or raw port takes it as it came, so
            // neither `scd` nor the kernel that receives it sums the frame again. A
            // lone frame's request anywhere else is finished now, before port
            // security reads the bytes it writes.
            if hdr.needs_csum()
                && !hdr.is_gso()
                && !offload::requests_transport_checksum(&hdr, frame.bytes())
            {
                offload::finish_partial_checksum(
                    frame.bytes_mut(),
                    hdr.csum_start,
                    hdr.csum_offset,
                );
                hdr = VnetHdr::NONE;
            }
            info.counters.rx_packets.add(1);
            info.counters.rx_bytes.add(n as u64);
            if info.link.drops_received() {
                continue;
            }
            if !self
                .guards
                .admits(idx, in_port, frame.bytes(), &info.counters)
            {
                continue;
            }
            self.process(idx, in_port, frame, hdr, scratch, now);
        }
    }

    /// Answers a DHCP request from the bound VM port at `idx` with its binding's
    /// first address. The request goes no further either way: DHCP of VM ports
    /// never leaves the host.
    fn answer_dhcp(
        &self,
        idx: usize,
        key: &openflow::flow::FlowKey,
        frame: &[u8],
        binding: &PortBinding,
        scratch: &mut Scratch,
    ) {
        let counters = &self.egress.shared.counters;
        let answer = self
            .dhcp
            .as_ref()
            .zip(binding.ips().next())
            .and_then(|(server, address)| {
                server.reply(key, frame, binding.mac(), address, &mut scratch.dhcp)
            });
        let Some(len) = answer else {
            counters.dhcp_unanswered.add(1);
            return;
        };
        counters.dhcp_replies.add(1);
        send_local(
            &self.egress.ports,
            idx,
            &VnetHdr::NONE,
            &scratch.dhcp[..len],
        );
    }

    /// Runs one frame (or super-frame, as `offload` says) through the tables and
    /// its actions. A super-frame counts as one packet in the flow entries.
    pub(super) fn process(
        &mut self,
        idx: usize,
        in_port: PortNo,
        frame: &mut FrameBuf,
        offload: VnetHdr,
        scratch: &mut Scratch,
        now: Instant,
    ) {
        let counters = &self.egress.shared.counters;
        let (key, mut layout) = match parse(frame.bytes(), in_port) {
            Ok(parsed) => parsed,
            Err(e) => {
                counters.malformed(&e).add(1);
                return;
            }
        };
        if dhcp::is_to_server(&key) {
            if let Some(binding) = self.guards.binding(idx) {
                self.answer_dhcp(idx, &key, frame.bytes(), binding, scratch);
                return;
            }
        }
        let link = (&self.guards, &self.egress, idx, &key);
        if self.link.consumed(link, frame.bytes()) {
            return;
        }
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
                send_local(&self.egress.ports, idx, &VnetHdr::NONE, reply);
                return;
            }
        }
        let len = frame.len();
        let decision = self.cache.lookup(&self.pipeline, &key);
        self.pipeline
            .account(&decision.hits, &decision.tables, len, now);
        let mut outputs = 0u32;
        let keep = !offload.needs_csum() || actions_keep_offload(&decision.actions);
        if !keep && !offload.is_gso() {
            // A lone frame whose actions change what its partial checksum covers
            // (or that goes to the controller): finished here, cheap at its size.
            offload::finish_partial_checksum(
                frame.bytes_mut(),
                offload.csum_start,
                offload.csum_offset,
            );
        }
        let mut out = Output {
            egress: &self.egress,
            tunnels: &mut self.tunnels,
            icmp: &mut scratch.icmp,
            segment: &mut scratch.segment,
            offload: if keep { offload } else { VnetHdr::NONE },
            in_idx: idx,
            classified: Some(super::packet_in::Classified::new(&self.pipeline, decision)),
            in_port,
            to_owner: Some(&mut self.crew),
        };
        let outcome = if keep || !offload.is_gso() {
            execute_counted(
                &decision.actions,
                frame,
                &mut layout,
                self.pipeline.groups(),
                |port, bytes, before| {
                    outputs += 1;
                    out.output(port, bytes, before);
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
                outcome = execute_counted(
                    &decision.actions,
                    &mut scratch.segment_frame,
                    &mut layout,
                    self.pipeline.groups(),
                    |port, bytes, before| {
                        outputs += 1;
                        out.output(port, bytes, before);
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

/// Whether a read error says the port's device no longer exists: a TAP
/// descriptor whose interface was deleted answers `EBADFD` from then on (and
/// polls as an error forever); `ENODEV`/`ENXIO` on other paths. Not
/// `ENETDOWN`, which a packet socket also reports for a link that is only
/// down and may come back.
fn device_gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EBADFD | libc::ENODEV | libc::ENXIO)
    )
}
