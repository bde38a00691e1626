//! The socket side of the tunnels: one UDP socket per `scd` with batched sends
//! (`sendmmsg`, segmentation offload) and receives (`recvmmsg`, coalescing), put
//! around the sans-IO [`PeerSessions`]. Everything that reaches the network goes
//! through here.

use super::session::{Outbox, PeerSessions, Received, Sent, SourceCheck};
use super::session::{Peer, PeerConfig};
use crate::io::udpbatch::{RecvBatch, SendBatch};
use boringtun::x25519::StaticSecret;
use dataplane_core::pipeline::Pipeline;
use dataplane_core::port::PeerStatus;
use openflow::flow::PortNo;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// All tunnels of a switch and their socket.
pub struct Tunnels {
    socket: UdpSocket,
    sessions: PeerSessions,
    /// Inner MTU: larger IP packets are refused with ICMP.
    pub mtu: usize,
    /// How IPv6 over [`Tunnels::mtu`] is answered (packet-too-big); `None`:
    /// dropped and counted only.
    pub too_big: Option<dataplane_core::icmp6::TooBigReplies>,
    tx: SendBatch,
    rx: RecvBatch,
    outbox: Outbox,
    send_failures: usize,
}

impl std::fmt::Debug for Tunnels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnels")
            .field("local", &self.socket.local_addr().ok())
            .field("peers", &self.sessions.peers())
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
        // Segmentation offload on send and coalescing on receive: a run of
        // datagrams to one peer crosses the UDP stack once. Both fall back to one
        // datagram at a time where the kernel lacks them.
        let mut tx = SendBatch::default();
        let mut rx = RecvBatch::default();
        let gso = tx.enable_gso(socket.as_raw_fd());
        let gro = rx.enable_gro(socket.as_raw_fd());
        let stamps = rx.enable_timestamps(socket.as_raw_fd());
        tracing::debug!(gso, gro, stamps, "tunnel socket offloads");
        Ok(Tunnels {
            socket,
            sessions: PeerSessions::new(private, peers, Instant::now()),
            mtu,
            too_big: None,
            tx,
            rx,
            outbox: Outbox::default(),
            send_failures: 0,
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
        self.sessions.peers()
    }

    /// The peer behind an OpenFlow port.
    pub fn peer_of_port(&self, port: PortNo) -> Option<usize> {
        self.sessions.peer_of_port(port)
    }

    /// Status of every peer.
    pub fn status(&self) -> Vec<PeerStatus> {
        self.sessions.status()
    }

    /// Sends the control datagrams the sessions produced, one at a time (they are
    /// few: handshakes, cookies, keepalives).
    fn send_outbox(&mut self) {
        for (to, datagram) in self.outbox.drain() {
            let _ = self.socket.send_to(&datagram, to);
        }
    }

    /// Encrypts an IP packet for `peer` and queues it for the next [`Self::flush`]
    /// (which happens by itself when the batch is full).
    pub fn send(&mut self, peer: usize, ip_packet: &[u8]) -> Sent {
        if self
            .sessions
            .peers()
            .get(peer)
            .is_some_and(|p| p.endpoint.is_none())
        {
            return Sent::NoEndpoint;
        }
        if self.tx.is_full() {
            self.send_failures += self.tx.flush(self.socket.as_raw_fd());
        }
        let Some(slot) = self.tx.slot() else {
            return Sent::SocketError;
        };
        match self.sessions.seal(peer, ip_packet, slot) {
            Ok(sealed) => {
                self.tx.commit(sealed.len, &sealed.to);
                sealed.outcome
            }
            Err(why) => why,
        }
    }

    /// True when encrypted datagrams (or refusals to report) wait for
    /// [`Self::flush`].
    pub fn has_queued(&self) -> bool {
        !self.tx.is_empty() || self.send_failures > 0
    }

    /// How long the first datagram of the first receive batch since the last
    /// call had waited in the kernel when it was read (`None` when nothing was
    /// read since, or the kernel gave no timestamp).
    pub fn take_receive_age(&mut self) -> Option<Duration> {
        self.rx.take_age()
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
        let received = self.sessions.receive(datagram, from, dst, &mut self.outbox);
        self.send_outbox();
        Ok(received)
    }

    /// Starts a handshake with every peer whose endpoint is known.
    pub fn initiate_all(&mut self) {
        self.sessions.initiate_all(&mut self.outbox);
        self.send_outbox();
    }

    /// Probes the latency to every peer every `every` (`None`: never); see
    /// [`PeerSessions::set_latency_probe`].
    pub fn set_latency_probe(&mut self, every: Option<Duration>) {
        self.sessions.set_latency_probe(every, Instant::now());
    }

    /// Runs handshake and keepalive timers and the latency probes; call every
    /// 100 ms or so.
    pub fn tick(&mut self, now: Instant) {
        self.sessions.tick(now, &mut self.outbox);
        self.send_outbox();
    }

    /// True while datagrams received by the last batch wait to be handed out.
    pub fn has_pending(&self) -> bool {
        self.rx.pending() > 0
    }

    /// Recomputes which source prefixes each peer may use when the tables changed.
    pub fn refresh_allowed(&mut self, pipeline: &Pipeline) {
        self.sessions.refresh_allowed(pipeline);
    }

    /// True when the tables route `src` (an inner source address) to `peer`.
    pub fn source_allowed(&self, peer: usize, src: u128, v6: bool) -> bool {
        self.sessions.source_allowed(peer, src, v6)
    }

    /// Whether the IP packet `ip` decrypted from `peer` may enter the switch.
    pub fn check_source(&self, peer: usize, ip: &[u8]) -> SourceCheck {
        self.sessions.check_source(peer, ip)
    }
}
