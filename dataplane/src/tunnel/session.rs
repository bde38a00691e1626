//! The WireGuard side of every tunnel peer, without sockets: demultiplexing
//! datagrams to peers (by the receiver index of a session, or by the static key
//! inside a handshake initiation), boringtun's session handling, handshake and
//! keepalive timers with the latency probes, roaming endpoints, and source-address
//! validation (a packet decrypted from host B must come from an address the flow
//! tables route to B, or that they accept from B by source).
//!
//! Nothing here sends: datagrams to put on the wire are returned in an [`Outbox`]
//! (control messages) or written into a caller's buffer (data), so the peer logic
//! is tested with two of these talking to each other.

use super::allowed_ips::AllowedIps;
use crate::keys;
use boringtun::noise::errors::WireGuardError;
use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use dataplane_core::pipeline::Pipeline;
use dataplane_core::port::PeerStatus;
use openflow::flow::{ethertype, Action, Field, Instruction, PortNo};
use std::net::SocketAddr;
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
    /// A datagram for peer `peer`, which another forwarding worker owns: copied
    /// unread to the start of the buffer (`len` bytes), to be handed to the
    /// owner with its source `from`.
    Foreign {
        /// Index of the peer.
        peer: usize,
        /// Where it came from.
        from: SocketAddr,
        /// Length of the datagram.
        len: usize,
    },
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

/// An IP packet encrypted for a peer: the datagram of `len` bytes in the caller's
/// buffer is to go to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sealed {
    /// Length of the datagram written at the start of the buffer.
    pub len: usize,
    /// Where it goes.
    pub to: SocketAddr,
    /// [`Sent::Sent`] for data, [`Sent::Handshaking`] when boringtun queued the
    /// packet and wrote a handshake initiation instead.
    pub outcome: Sent,
}

/// Whether a decrypted packet may enter the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceCheck {
    /// An IP packet from an address the tables place behind its peer, with the
    /// ethertype of its frame.
    Allowed(u16),
    /// Not an IPv4 or IPv6 packet.
    NotIp,
    /// Its source address is not one the tables place behind that peer.
    Spoofed,
}

/// Control datagrams to send, in order. Reused across calls.
#[derive(Debug, Default)]
pub struct Outbox {
    datagrams: Vec<(SocketAddr, Vec<u8>)>,
}

impl Outbox {
    fn push(&mut self, to: SocketAddr, bytes: &[u8]) {
        self.datagrams.push((to, bytes.to_vec()));
    }

    /// Takes every datagram out, in order.
    pub fn drain(&mut self) -> impl Iterator<Item = (SocketAddr, Vec<u8>)> + '_ {
        self.datagrams.drain(..)
    }

    /// True when nothing waits to be sent.
    pub fn is_empty(&self) -> bool {
        self.datagrams.is_empty()
    }
}

/// Live state of one peer.
pub struct Peer {
    /// Static configuration.
    pub config: PeerConfig,
    tunn: Tunn,
    /// Current endpoint (configured or learned).
    pub endpoint: Option<SocketAddr>,
    /// When the last latency probe (a handshake this side initiated) went out.
    last_probe: Option<Instant>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("port", &self.config.port)
            .field("name", &self.config.name)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

/// The WireGuard state of every peer of one switch.
pub struct PeerSessions {
    private: StaticSecret,
    public: PublicKey,
    rate_limiter: Arc<RateLimiter>,
    peers: Vec<Peer>,
    allowed: AllowedIps,
    allowed_generation: u64,
    scratch: Box<[u8]>,
    last_tick: Instant,
    /// How often each peer's latency is probed, if at all.
    probe_every: Option<Duration>,
    last_rate_reset: Instant,
    /// The forwarding worker holding this part of the sessions, and how many
    /// there are: it serves the peers it owns (`steering::owner_of`) and hands
    /// the others' datagrams over. Worker 0 of 1 serves every peer.
    worker: usize,
    workers: usize,
}

impl std::fmt::Debug for PeerSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerSessions")
            .field("peers", &self.peers)
            .finish()
    }
}

/// The peers of `peers` that worker `worker` of `workers` runs, with their indices.
fn owned(
    peers: &mut [Peer],
    worker: usize,
    workers: usize,
) -> impl Iterator<Item = (usize, &mut Peer)> {
    peers
        .iter_mut()
        .enumerate()
        .filter(move |(i, _)| super::steering::owner_of(*i, workers) == worker)
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

impl PeerSessions {
    /// One session state per peer, as of `now`.
    pub fn new(private: StaticSecret, peers: Vec<PeerConfig>, now: Instant) -> PeerSessions {
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
                    last_probe: None,
                }
            })
            .collect();
        PeerSessions {
            private,
            public,
            rate_limiter,
            peers,
            allowed: AllowedIps::default(),
            allowed_generation: u64::MAX,
            scratch: vec![0u8; 65_536 + 64].into_boxed_slice(),
            last_tick: now,
            probe_every: None,
            last_rate_reset: now,
            worker: 0,
            workers: 1,
        }
    }

    /// Splits the peers over `workers` forwarding workers: this part keeps
    /// worker 0's, and the parts of workers 1 and up are returned. Every part
    /// lists every peer (a peer's index is the same everywhere) but runs the
    /// sessions, timers and probes of its own peers only; they share the
    /// handshake rate limiter (one budget, one cookie secret per host).
    pub fn split(&mut self, workers: usize, now: Instant) -> Vec<PeerSessions> {
        self.workers = workers.max(1);
        let configs: Vec<PeerConfig> = self
            .peers
            .iter()
            .map(|p| PeerConfig {
                endpoint: p.endpoint,
                ..p.config.clone()
            })
            .collect();
        let parts = (1..self.workers)
            .map(|worker| {
                let mut part = PeerSessions::new(self.private.clone(), configs.clone(), now);
                part.rebuild_with_limiter(self.rate_limiter.clone());
                part.worker = worker;
                part.workers = self.workers;
                part.set_latency_probe(self.probe_every, now);
                part
            })
            .collect();
        self.set_latency_probe(self.probe_every, now);
        parts
    }

    /// Makes every session use `rate_limiter` (shared with the other parts).
    fn rebuild_with_limiter(&mut self, rate_limiter: Arc<RateLimiter>) {
        for (i, p) in self.peers.iter_mut().enumerate() {
            p.tunn = Tunn::new(
                self.private.clone(),
                PublicKey::from(p.config.public_key),
                None,
                p.config.keepalive,
                u32::try_from(i).unwrap_or(0),
                Some(rate_limiter.clone()),
            );
        }
        self.rate_limiter = rate_limiter;
    }

    /// True when this part runs peer `peer`'s session.
    pub fn owns(&self, peer: usize) -> bool {
        super::steering::owner_of(peer, self.workers) == self.worker
    }

    /// Peers in configuration order.
    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    /// The peer behind an OpenFlow port.
    pub fn peer_of_port(&self, port: PortNo) -> Option<usize> {
        self.peers.iter().position(|p| p.config.port == port)
    }

    /// Status of every peer this part runs.
    pub fn status(&self) -> Vec<PeerStatus> {
        self.peers
            .iter()
            .enumerate()
            .filter(|(i, _)| self.owns(*i))
            .map(|(_, p)| {
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

    /// Encrypts an IP packet for `peer` into `dst`. `Err` says why nothing is to
    /// be sent.
    pub fn seal(&mut self, peer: usize, ip_packet: &[u8], dst: &mut [u8]) -> Result<Sealed, Sent> {
        // Another worker's peer: its session here is a stale copy whose send
        // counter must not move (the owner's is the one in use).
        if !self.owns(peer) {
            return Err(Sent::SocketError);
        }
        let Some(p) = self.peers.get_mut(peer) else {
            return Err(Sent::SocketError);
        };
        let Some(to) = p.endpoint else {
            return Err(Sent::NoEndpoint);
        };
        match p.tunn.encapsulate(ip_packet, dst) {
            TunnResult::WriteToNetwork(datagram) => {
                // Without a session boringtun queues the packet and hands us a
                // handshake initiation (type 1) instead of data (type 4).
                let outcome = if datagram.first() == Some(&4) {
                    Sent::Sent
                } else {
                    Sent::Handshaking
                };
                Ok(Sealed {
                    len: datagram.len(),
                    to,
                    outcome,
                })
            }
            _ => Err(Sent::Handshaking),
        }
    }

    /// Handles one datagram from `from`. A data packet is decrypted into `dst`
    /// (the IP packet starts at `dst[0]`); answers to handshakes, and packets
    /// boringtun queued until a session stood, go into `outbox`.
    pub fn receive(
        &mut self,
        datagram: &[u8],
        from: SocketAddr,
        dst: &mut [u8],
        outbox: &mut Outbox,
    ) -> Received {
        // Under a handshake flood, answer with a cookie before doing any DH work.
        if datagram.first() == Some(&1) {
            let mut cookie = [0u8; 64];
            match self
                .rate_limiter
                .verify_packet(Some(from.ip()), datagram, &mut cookie)
            {
                Ok(_) => {}
                Err(TunnResult::WriteToNetwork(reply)) => {
                    outbox.push(from, reply);
                    return Received::Control;
                }
                Err(_) => return Received::Invalid,
            }
        }
        let Some(peer) = peer_for(&self.private, &self.public, &self.peers, datagram) else {
            tracing::debug!(%from, kind = datagram.first(), "datagram for no peer");
            return Received::Invalid;
        };
        if !self.owns(peer) {
            let Some(copy) = dst.get_mut(..datagram.len()) else {
                return Received::Invalid;
            };
            copy.copy_from_slice(datagram);
            let len = datagram.len();
            return Received::Foreign { peer, from, len };
        }
        self.receive_for(peer, datagram, from, dst, outbox)
    }

    /// Handles one datagram for `peer`, which this part must own: found by
    /// [`Self::receive`], or received by another worker (which already passed
    /// an initiation through the rate limiter) and handed over.
    pub fn receive_for(
        &mut self,
        peer: usize,
        datagram: &[u8],
        from: SocketAddr,
        dst: &mut [u8],
        outbox: &mut Outbox,
    ) -> Received {
        if !self.owns(peer) || peer >= self.peers.len() {
            return Received::Invalid;
        }
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
            TunnResult::Err(WireGuardError::DuplicateCounter) => return Received::Replayed,
            TunnResult::Err(_) => return Received::Invalid,
            TunnResult::WriteToNetwork(reply) => {
                outbox.push(from, reply);
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
            self.flush_queue(peer, outbox);
        }
        received
    }

    /// Hands over what boringtun queued while the handshake was in progress.
    fn flush_queue(&mut self, peer: usize, outbox: &mut Outbox) {
        loop {
            let p = &mut self.peers[peer];
            match p.tunn.decapsulate(None, &[], &mut self.scratch) {
                TunnResult::WriteToNetwork(datagram) => {
                    if let Some(ep) = p.endpoint {
                        outbox.push(ep, datagram);
                    }
                }
                _ => return,
            }
        }
    }

    /// Starts a handshake with every peer whose endpoint is known, so a restarted
    /// switch replaces the sessions its peers still hold without waiting for their
    /// rekey timers.
    pub fn initiate_all(&mut self, outbox: &mut Outbox) {
        let scratch = &mut self.scratch;
        for (_, p) in owned(&mut self.peers, self.worker, self.workers) {
            let Some(ep) = p.endpoint else { continue };
            if let TunnResult::WriteToNetwork(d) =
                p.tunn.format_handshake_initiation(scratch, false)
            {
                outbox.push(ep, d);
                tracing::info!(peer = %p.config.name, endpoint = %ep, "handshake initiated at start");
            }
        }
    }

    /// Probes the latency to every peer every `every` (`None`: never): a handshake
    /// this side initiates, whose round trip boringtun measures (the peers' first
    /// probes are spread over one period from `now`). Both sides of a tunnel probe,
    /// so each has a fresh round trip; a handshake is WireGuard's own rekey, two
    /// small datagrams and a key exchange at each end.
    pub fn set_latency_probe(&mut self, every: Option<Duration>, now: Instant) {
        self.probe_every = every;
        let n = self.peers.len().max(1);
        for (i, p) in owned(&mut self.peers, self.worker, self.workers) {
            p.last_probe = every.map(|every| {
                // Peer i first probes (i + 1) / n of a period from now.
                let ahead = every.mul_f64((i + 1) as f64 / n as f64);
                now.checked_sub(every - ahead).unwrap_or(now)
            });
        }
    }

    /// Runs handshake and keepalive timers and the latency probes; call every
    /// 100 ms or so.
    pub fn tick(&mut self, now: Instant, outbox: &mut Outbox) {
        if now.duration_since(self.last_tick) < Duration::from_millis(100) {
            return;
        }
        self.last_tick = now;
        // The limiter is shared by every worker's part: worker 0 keeps its clock.
        if self.worker == 0 && now.duration_since(self.last_rate_reset) >= Duration::from_secs(1) {
            self.last_rate_reset = now;
            self.rate_limiter.reset_count();
        }
        for (_, p) in owned(&mut self.peers, self.worker, self.workers) {
            let endpoint = p.endpoint;
            if let TunnResult::WriteToNetwork(datagram) = p.tunn.update_timers(&mut self.scratch) {
                if let Some(ep) = endpoint {
                    outbox.push(ep, datagram);
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
                outbox.push(ep, datagram);
            }
        }
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
        self.allowed.clear();
        let peer_of = |port: u128| {
            self.peers
                .iter()
                .position(|p| u128::from(p.config.port) == port)
        };
        for table in 0..pipeline.n_tables() {
            for entry in pipeline.entries(table) {
                let m = &entry.spec.matcher;
                let accepted = m
                    .get(Field::Ipv4Src)
                    .map(|(v, mask)| (v, mask, false))
                    .or_else(|| m.get(Field::Ipv6Src).map(|(v, mask)| (v, mask, true)));
                if let (Some((value, mask, v6)), Some((in_port, _)), true) =
                    (accepted, m.get(Field::InPort), entry.spec.forwards())
                {
                    if let Some(peer) = peer_of(in_port) {
                        self.allowed.insert(peer, value, mask, v6);
                    }
                }
                let dst = m
                    .get(Field::Ipv4Dst)
                    .map(|(v, mask)| (v, mask, false))
                    .or_else(|| m.get(Field::Ipv6Dst).map(|(v, mask)| (v, mask, true)));
                let Some((value, mask, v6)) = dst else {
                    continue;
                };
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
                        if let Some(peer) = peer_of(u128::from(port)) {
                            self.allowed.insert(peer, value, mask, v6);
                        }
                    }
                }
            }
        }
    }

    /// True when the tables route `src` (an inner source address) to `peer`.
    pub fn source_allowed(&self, peer: usize, src: u128, v6: bool) -> bool {
        self.allowed.allows(peer, src, v6)
    }

    /// Whether the IP packet `ip` decrypted from `peer` may enter the switch.
    pub fn check_source(&self, peer: usize, ip: &[u8]) -> SourceCheck {
        let len = ip.len();
        let (eth_type, src, v6) = match ip.first().map(|b| b >> 4) {
            Some(4) if len >= 20 => (
                ethertype::IPV4,
                u128::from(u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]])),
                false,
            ),
            Some(6) if len >= 40 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&ip[8..24]);
                (ethertype::IPV6, u128::from_be_bytes(a), true)
            }
            _ => return SourceCheck::NotIp,
        };
        if self.source_allowed(peer, src, v6) {
            SourceCheck::Allowed(eth_type)
        } else {
            SourceCheck::Spoofed
        }
    }
}

#[cfg(test)]
mod tests;
