//! WireGuard tunnel ports: one UDP socket per `scd`, one boringtun `Tunn` per remote
//! host, each remote host an OpenFlow port.
//!
//! This module owns the tunnel side of the switch: demultiplexing datagrams to peers
//! (by the receiver index of the session, or by the static key inside a handshake
//! initiation), handshake and keepalive timers, roaming endpoints, the counters of
//! garbage and replayed datagrams, and source-address validation: a packet decrypted
//! from host B must come from an address that the flow tables route to B. It carries
//! IP packets only, with no extra header. It never decides where a packet goes; the
//! switch loop does that with the tables.

use crate::io::udpbatch::{RecvBatch, SendBatch};
use crate::keys;
use boringtun::noise::errors::WireGuardError;
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use dataplane_core::pipeline::Pipeline;
use dataplane_core::port::PeerStatus;
use openflow::flow::{Action, Field, Instruction, PortNo};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// WireGuard's data overhead on the wire: outer IPv4 (20) + UDP (8) + header (16) + tag (16).
pub const WG_OVERHEAD_V4: usize = 60;

/// Default inner MTU: a 1500-byte underlay minus WireGuard over IPv6 (80 bytes), as
/// `wg-quick` picks.
pub const DEFAULT_TUNNEL_MTU: usize = 1420;

/// Largest inner MTU: an encrypted packet (MTU + 32 bytes) must fit one slot of the
/// send batch.
pub const MAX_TUNNEL_MTU: u32 = 9000;

/// Handshakes accepted per second before cookies are demanded (boringtun's default).
const HANDSHAKE_RATE_LIMIT: u64 = 100;

/// A remote host reachable through a tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// OpenFlow port number of the tunnel.
    pub port: PortNo,
    /// Name of the remote host.
    pub name: String,
    /// Its WireGuard public key.
    pub public_key: [u8; 32],
    /// Where to send until it is heard from (WireGuard roaming updates it).
    pub endpoint: Option<SocketAddr>,
    /// Persistent keepalive interval in seconds.
    pub keepalive: Option<u16>,
}

/// What became of a received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// An IP packet from peer `peer` was written at the start of the buffer.
    Data {
        /// Index of the peer.
        peer: usize,
        /// Length of the IP packet.
        len: usize,
    },
    /// A handshake or keepalive, handled here.
    Control,
    /// Not a valid WireGuard datagram for any of our peers.
    Invalid,
    /// A data packet whose counter was already seen (a replay).
    Replayed,
}

/// What became of a packet sent into a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Encrypted and sent.
    Sent,
    /// No session yet: queued and a handshake started.
    Handshaking,
    /// The peer has no known endpoint.
    NoEndpoint,
    /// The socket refused it (buffer full or network error).
    SocketError,
}

/// Live state of one peer.
pub struct Peer {
    /// Static configuration.
    pub config: PeerConfig,
    tunn: Tunn,
    /// Current endpoint (configured or learned).
    pub endpoint: Option<SocketAddr>,
    /// Source prefixes the tables place behind this peer: (value, mask, is_v6).
    allowed: Vec<(u128, u128, bool)>,
    /// When the last latency probe (a handshake this side initiated) went out.
    last_probe: Option<Instant>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("port", &self.config.port)
            .field("name", &self.config.name)
            .field("endpoint", &self.endpoint)
            .field("allowed", &self.allowed.len())
            .finish()
    }
}

/// All tunnels of a switch and their socket.
pub struct Tunnels {
    socket: UdpSocket,
    private: StaticSecret,
    public: PublicKey,
    rate_limiter: Arc<RateLimiter>,
    peers: Vec<Peer>,
    /// Inner MTU: larger IP packets are refused with ICMP.
    pub mtu: usize,
    scratch: Box<[u8]>,
    tx: SendBatch,
    rx: RecvBatch,
    allowed_generation: u64,
    send_failures: usize,
    last_tick: Instant,
    /// How often each peer's latency is probed, if at all.
    probe_every: Option<Duration>,
    last_rate_reset: Instant,
}

impl std::fmt::Debug for Tunnels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnels")
            .field("local", &self.socket.local_addr().ok())
            .field("peers", &self.peers)
            .finish()
    }
}

fn set_buffer(fd: RawFd, option: libc::c_int, bytes: libc::c_int) {
    // SAFETY: setsockopt reads one c_int from a live local.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&bytes as *const libc::c_int).cast(),
            libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap_or(4),
        )
    };
}

/// The peer a datagram is for: by the receiver index of a session (our index carries
/// the peer's position in its upper 24 bits), or by the static key inside a
/// handshake initiation.
fn peer_for(
    private: &StaticSecret,
    public: &PublicKey,
    peers: &[Peer],
    datagram: &[u8],
) -> Option<usize> {
    let by_index = |receiver_idx: u32| {
        let i = usize::try_from(receiver_idx >> 8).ok()?;
        (i < peers.len()).then_some(i)
    };
    match Tunn::parse_incoming_packet(datagram).ok()? {
        Packet::HandshakeInit(init) => {
            let half = parse_handshake_anon(private, public, &init).ok()?;
            peers
                .iter()
                .position(|p| p.config.public_key == half.peer_static_public)
        }
        Packet::HandshakeResponse(r) => by_index(r.receiver_idx),
        Packet::PacketCookieReply(c) => by_index(c.receiver_idx),
        Packet::PacketData(d) => by_index(d.receiver_idx),
    }
}

impl Tunnels {
    /// Binds the tunnel socket and sets up one session state per peer.
    pub fn new(
        listen: SocketAddr,
        private: StaticSecret,
        peers: Vec<PeerConfig>,
        mtu: usize,
    ) -> io::Result<Tunnels> {
        let socket = UdpSocket::bind(listen)?;
        socket.set_nonblocking(true)?;
        // Bursts of a fast TAP must not overflow the default 208 KiB buffers.
        set_buffer(socket.as_raw_fd(), libc::SO_RCVBUF, 4 << 20);
        set_buffer(socket.as_raw_fd(), libc::SO_SNDBUF, 4 << 20);
        let public = PublicKey::from(&private);
        let rate_limiter = Arc::new(RateLimiter::new(&public, HANDSHAKE_RATE_LIMIT));
        let peers = peers
            .into_iter()
            .enumerate()
            .map(|(i, config)| {
                let tunn = Tunn::new(
                    private.clone(),
                    PublicKey::from(config.public_key),
                    None,
                    config.keepalive,
                    u32::try_from(i).unwrap_or(0),
                    Some(rate_limiter.clone()),
                );
                Peer {
                    endpoint: config.endpoint,
                    config,
                    tunn,
                    allowed: Vec::new(),
                    last_probe: None,
                }
            })
            .collect();
        let now = Instant::now();
        // Segmentation offload on send and coalescing on receive: a run of
        // datagrams to one peer crosses the UDP stack once. Both fall back to one
        // datagram at a time where the kernel lacks them.
        let mut tx = SendBatch::default();
        let mut rx = RecvBatch::default();
        let gso = tx.enable_gso(socket.as_raw_fd());
        let gro = rx.enable_gro(socket.as_raw_fd());
        tracing::debug!(gso, gro, "tunnel socket offloads");
        Ok(Tunnels {
            socket,
            private,
            public,
            rate_limiter,
            peers,
            mtu,
            scratch: vec![0u8; 65_536 + 64].into_boxed_slice(),
            tx,
            rx,
            allowed_generation: u64::MAX,
            send_failures: 0,
            last_tick: now,
            probe_every: None,
            last_rate_reset: now,
        })
    }

    /// The socket's descriptor, for epoll.
    pub fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// The bound local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Peers in configuration order.
    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    /// The peer behind an OpenFlow port.
    pub fn peer_of_port(&self, port: PortNo) -> Option<usize> {
        self.peers.iter().position(|p| p.config.port == port)
    }

    /// Status of every peer.
    pub fn status(&self) -> Vec<PeerStatus> {
        self.peers
            .iter()
            .map(|p| {
                let (since_handshake, tx, rx, _, rtt_ms) = p.tunn.stats();
                PeerStatus {
                    port: p.config.port,
                    name: p.config.name.clone(),
                    public_key: keys::encode(&p.config.public_key),
                    endpoint: p.endpoint,
                    since_handshake,
                    handshake_rtt: rtt_ms.map(|ms| Duration::from_millis(u64::from(ms))),
                    tx_bytes: tx as u64,
                    rx_bytes: rx as u64,
                }
            })
            .collect()
    }

    /// Encrypts an IP packet for `peer` and queues it for the next [`Self::flush`]
    /// (which happens by itself when the batch is full).
    pub fn send(&mut self, peer: usize, ip_packet: &[u8]) -> Sent {
        let Some(p) = self.peers.get_mut(peer) else {
            return Sent::SocketError;
        };
        let Some(endpoint) = p.endpoint else {
            return Sent::NoEndpoint;
        };
        if self.tx.is_full() {
            self.send_failures += self.tx.flush(self.socket.as_raw_fd());
        }
        let Some(slot) = self.tx.slot() else {
            return Sent::SocketError;
        };
        match p.tunn.encapsulate(ip_packet, slot) {
            TunnResult::WriteToNetwork(datagram) => {
                // Without a session boringtun queues the packet and hands us a
                // handshake initiation (type 1) instead of data (type 4).
                let is_data = datagram.first() == Some(&4);
                let len = datagram.len();
                self.tx.commit(len, &endpoint);
                if is_data {
                    Sent::Sent
                } else {
                    Sent::Handshaking
                }
            }
            _ => Sent::Handshaking,
        }
    }

    /// Sends every queued datagram (one `sendmmsg`); returns how many the kernel
    /// refused since the last call.
    pub fn flush(&mut self) -> usize {
        if !self.tx.is_empty() {
            self.send_failures += self.tx.flush(self.socket.as_raw_fd());
        }
        std::mem::take(&mut self.send_failures)
    }

    /// Receives one datagram. A data packet is decrypted into `dst` (the IP packet
    /// starts at `dst[0]`); handshakes are answered here. `WouldBlock` when none waits.
    pub fn recv(&mut self, dst: &mut [u8]) -> io::Result<Received> {
        let (datagram, from) = self.rx.next(self.socket.as_raw_fd())?;
        // Under a handshake flood, answer with a cookie before doing any DH work.
        if datagram.first() == Some(&1) {
            let mut cookie = [0u8; 64];
            match self
                .rate_limiter
                .verify_packet(Some(from.ip()), datagram, &mut cookie)
            {
                Ok(_) => {}
                Err(TunnResult::WriteToNetwork(reply)) => {
                    let _ = self.socket.send_to(reply, from);
                    return Ok(Received::Control);
                }
                Err(_) => return Ok(Received::Invalid),
            }
        }
        let Some(peer) = peer_for(&self.private, &self.public, &self.peers, datagram) else {
            tracing::debug!(%from, kind = datagram.first(), "datagram for no peer");
            return Ok(Received::Invalid);
        };
        let kind = datagram.first().copied().unwrap_or(0);
        let p = &mut self.peers[peer];
        let result = p.tunn.decapsulate(Some(from.ip()), datagram, dst);
        match (&result, kind) {
            (TunnResult::WriteToNetwork(_), 1) => {
                tracing::info!(peer = %p.config.name, %from, "handshake initiation answered")
            }
            (TunnResult::WriteToNetwork(_), 2) => {
                tracing::info!(peer = %p.config.name, %from, "handshake completed (initiator)")
            }
            (TunnResult::Err(e), 1 | 2) => {
                tracing::warn!(peer = %p.config.name, %from, error = ?e, "handshake refused")
            }
            (TunnResult::Err(e), _) => {
                tracing::debug!(peer = %p.config.name, %from, error = ?e, "data refused")
            }
            _ => {}
        }
        // Only an authenticated message moves the peer's endpoint (WireGuard
        // roaming): data or a keepalive that decrypted, an initiation we answer with
        // a response, a response we answer with a keepalive. A cookie reply is sent
        // before any authentication and must never redirect a peer.
        let authenticated = match (&result, kind) {
            (TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..), _) => true,
            (TunnResult::Done, 4) => true,
            (TunnResult::WriteToNetwork(reply), 1) => reply.first() == Some(&2),
            (TunnResult::WriteToNetwork(reply), 2) => reply.first() == Some(&4),
            _ => false,
        };
        let received = match result {
            TunnResult::Done => Received::Control,
            TunnResult::Err(WireGuardError::DuplicateCounter) => return Ok(Received::Replayed),
            TunnResult::Err(_) => return Ok(Received::Invalid),
            TunnResult::WriteToNetwork(reply) => {
                let _ = self.socket.send_to(reply, from);
                Received::Control
            }
            TunnResult::WriteToTunnelV4(packet, _) | TunnResult::WriteToTunnelV6(packet, _) => {
                let len = packet.len();
                if len == 0 {
                    Received::Control
                } else {
                    Received::Data { peer, len }
                }
            }
        };
        if authenticated {
            p.endpoint = Some(from);
        }
        if received == Received::Control {
            self.flush_queue(peer);
        }
        Ok(received)
    }

    /// Sends what boringtun queued while the handshake was in progress.
    fn flush_queue(&mut self, peer: usize) {
        loop {
            let p = &mut self.peers[peer];
            match p.tunn.decapsulate(None, &[], &mut self.scratch) {
                TunnResult::WriteToNetwork(datagram) => {
                    if let Some(ep) = p.endpoint {
                        let _ = self.socket.send_to(datagram, ep);
                    }
                }
                _ => return,
            }
        }
    }

    /// Starts a handshake with every peer whose endpoint is known, so a restarted
    /// switch replaces the sessions its peers still hold without waiting for their
    /// rekey timers.
    pub fn initiate_all(&mut self) {
        for p in &mut self.peers {
            let Some(ep) = p.endpoint else { continue };
            if let TunnResult::WriteToNetwork(d) =
                p.tunn.format_handshake_initiation(&mut self.scratch, false)
            {
                let sent = self.socket.send_to(d, ep);
                tracing::info!(peer = %p.config.name, endpoint = %ep, ok = sent.is_ok(), "handshake initiated at start");
            }
        }
    }

    /// Probes the latency to every peer every `every` (`None`: never): a handshake
    /// this side initiates, whose round trip boringtun measures (the peers' first
    /// probes are spread over one period). Both sides of a tunnel probe, so each
    /// has a fresh round trip; a handshake is WireGuard's own rekey, two small
    /// datagrams and a key exchange at each end.
    pub fn set_latency_probe(&mut self, every: Option<Duration>) {
        self.probe_every = every;
        let n = self.peers.len().max(1);
        let now = Instant::now();
        for (i, p) in self.peers.iter_mut().enumerate() {
            p.last_probe = every.map(|every| {
                // Peer i first probes (i + 1) / n of a period from now.
                let ahead = every.mul_f64((i + 1) as f64 / n as f64);
                now.checked_sub(every - ahead).unwrap_or(now)
            });
        }
    }

    /// Runs handshake and keepalive timers and the latency probes; call every
    /// 100 ms or so.
    pub fn tick(&mut self, now: Instant) {
        if now.duration_since(self.last_tick) < Duration::from_millis(100) {
            return;
        }
        self.last_tick = now;
        if now.duration_since(self.last_rate_reset) >= Duration::from_secs(1) {
            self.last_rate_reset = now;
            self.rate_limiter.reset_count();
        }
        for p in &mut self.peers {
            let endpoint = p.endpoint;
            if let TunnResult::WriteToNetwork(datagram) = p.tunn.update_timers(&mut self.scratch) {
                if let Some(ep) = endpoint {
                    let _ = self.socket.send_to(datagram, ep);
                }
            }
            let (Some(every), Some(ep)) = (self.probe_every, endpoint) else {
                continue;
            };
            if p.last_probe.is_some_and(|t| now.duration_since(t) < every) {
                continue;
            }
            p.last_probe = Some(now);
            // Nothing is sent while a handshake is already under way.
            if let TunnResult::WriteToNetwork(datagram) =
                p.tunn.format_handshake_initiation(&mut self.scratch, false)
            {
                let _ = self.socket.send_to(datagram, ep);
            }
        }
    }

    /// True while datagrams received by the last batch wait to be handed out.
    pub fn has_pending(&self) -> bool {
        self.rx.pending() > 0
    }

    /// Recomputes, when the tables changed, which source prefixes each peer may use:
    /// the IP destinations of the flows that output to its port, and the IP sources
    /// of the flows that take packets from its port by source and forward them
    /// (the tables accept that source from that peer explicitly, as a gateway does
    /// for a migrating VM's traffic from its new host).
    pub fn refresh_allowed(&mut self, pipeline: &Pipeline) {
        if self.allowed_generation == pipeline.generation() {
            return;
        }
        self.allowed_generation = pipeline.generation();
        for p in &mut self.peers {
            p.allowed.clear();
        }
        for table in 0..pipeline.n_tables() {
            for entry in pipeline.entries(table) {
                let m = &entry.spec.matcher;
                let accepted = m
                    .get(Field::Ipv4Src)
                    .map(|(v, mask)| (v, mask, false))
                    .or_else(|| m.get(Field::Ipv6Src).map(|(v, mask)| (v, mask, true)));
                if let (Some(src), Some((in_port, _)), true) =
                    (accepted, m.get(Field::InPort), entry.spec.forwards())
                {
                    if let Some(peer) = self
                        .peers
                        .iter_mut()
                        .find(|p| u128::from(p.config.port) == in_port)
                    {
                        if !peer.allowed.contains(&src) {
                            peer.allowed.push(src);
                        }
                    }
                }
                let dst = m
                    .get(Field::Ipv4Dst)
                    .map(|(v, mask)| (v, mask, false))
                    .or_else(|| m.get(Field::Ipv6Dst).map(|(v, mask)| (v, mask, true)));
                let Some(dst) = dst else { continue };
                for instruction in &entry.spec.instructions {
                    let Instruction::ApplyActions(actions) = instruction else {
                        continue;
                    };
                    // An output inside a group's bucket routes there as well.
                    let in_groups = actions.iter().flat_map(|a| match a {
                        Action::Group(g) => pipeline.groups().buckets(*g).unwrap_or(&[]),
                        _ => &[],
                    });
                    let outputs = actions
                        .iter()
                        .chain(in_groups.flat_map(|b| &b.actions))
                        .filter_map(|a| match a {
                            Action::Output { port, .. } => Some(*port),
                            _ => None,
                        });
                    for port in outputs {
                        if let Some(peer) = self.peers.iter_mut().find(|p| p.config.port == port) {
                            if !peer.allowed.contains(&dst) {
                                peer.allowed.push(dst);
                            }
                        }
                    }
                }
            }
        }
    }

    /// True when the tables route `src` (an inner source address) to `peer`.
    pub fn source_allowed(&self, peer: usize, src: u128, v6: bool) -> bool {
        self.peers[peer]
            .allowed
            .iter()
            .any(|(value, mask, is_v6)| *is_v6 == v6 && src & mask == *value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane_core::pipeline::Pipeline;
    use openflow::flow::FlowMatch;
    use openflow::FlowSpec;

    const PEER_PORT: PortNo = 10_002;

    fn ip(a: [u8; 4]) -> u128 {
        u128::from(u32::from_be_bytes(a))
    }

    #[test]
    fn a_peer_may_send_what_the_tables_route_to_it_or_accept_from_it_by_source() {
        let peer = PeerConfig {
            port: PEER_PORT,
            name: "host-b".into(),
            public_key: PublicKey::from(&StaticSecret::from([9u8; 32])).to_bytes(),
            endpoint: None,
            keepalive: None,
        };
        let mut tunnels = Tunnels::new(
            "127.0.0.1:0".parse().unwrap(),
            StaticSecret::from([7u8; 32]),
            vec![peer],
            1420,
        )
        .unwrap();
        let ipv4 = FlowMatch::any().with(Field::EthType, 0x800);
        let flows = vec![
            // Routed to the peer: its VMs.
            FlowSpec::new(
                0,
                10,
                ipv4.with_prefix32(Field::Ipv4Dst, 0x6440_0200, 24),
                vec![Action::output(PEER_PORT)],
            ),
            // Accepted from the peer by source and forwarded (a gateway taking a
            // migrating VM's traffic from its new host).
            FlowSpec::new(
                0,
                10,
                ipv4.with(Field::InPort, u128::from(PEER_PORT))
                    .with(Field::Ipv4Src, ip([100, 64, 1, 1])),
                vec![Action::output(100)],
            ),
            // Matched from the peer by source but dropped: not an acceptance.
            FlowSpec::new(
                0,
                10,
                ipv4.with(Field::InPort, u128::from(PEER_PORT))
                    .with(Field::Ipv4Src, ip([100, 64, 3, 3])),
                vec![],
            ),
        ];
        let pipeline = Pipeline::from_flows(flows).unwrap();
        tunnels.refresh_allowed(&pipeline);
        assert!(
            tunnels.source_allowed(0, ip([100, 64, 2, 7]), false),
            "routed"
        );
        assert!(
            tunnels.source_allowed(0, ip([100, 64, 1, 1]), false),
            "accepted"
        );
        assert!(
            !tunnels.source_allowed(0, ip([100, 64, 3, 3]), false),
            "dropped"
        );
        assert!(
            !tunnels.source_allowed(0, ip([100, 64, 9, 9]), false),
            "unknown"
        );
    }
}
