//! The socket side of the tunnels: one UDP socket per `scd` with batched sends
//! (`sendmmsg`, segmentation offload) and receives (`recvmmsg`, coalescing), put
//! around the sans-IO [`PeerSessions`]. Everything that reaches the network goes
//! through here. With several forwarding workers, one socket per worker on the
//! same address, in one `SO_REUSEPORT` group steered by peer (`steering`), each
//! around the part of the sessions its worker owns.

use super::session::{Outbox, PeerSessions, Received, Sent, SourceCheck};
use super::session::{Peer, PeerConfig};
use crate::io::udpbatch::{set_socket_option, RecvBatch, SendBatch};
use boringtun::x25519::StaticSecret;
use dataplane_core::pipeline::Pipeline;
use dataplane_core::port::PeerStatus;
use openflow::flow::PortNo;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// All tunnels of a switch and their socket (or, split over several
/// forwarding workers, one worker's socket and peers).
pub struct Tunnels {
    socket: UdpSocket,
    sessions: PeerSessions,
    /// The forwarding workers the socket was bound for (more than 1: a
    /// reuseport group, to be [`Tunnels::split`]).
    workers: usize,
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

/// A tunnel socket bound to `listen` with its batches; with `reuse_port`, one
/// of a reuseport group (only our own sockets join: the kernel admits a socket
/// to a group only from the user that made it).
fn open_socket(
    listen: SocketAddr,
    reuse_port: bool,
) -> io::Result<(UdpSocket, SendBatch, RecvBatch)> {
    let socket = if reuse_port {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(listen),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        let one: libc::c_int = 1;
        set_socket_option(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_REUSEPORT,
            &one,
        )?;
        socket.bind(&listen.into())?;
        UdpSocket::from(socket)
    } else {
        UdpSocket::bind(listen)?
    };
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
    Ok((socket, tx, rx))
}

fn set_buffer(fd: RawFd, option: libc::c_int, bytes: libc::c_int) {
    let _ = set_socket_option(fd, libc::SOL_SOCKET, option, &bytes);
}

impl Tunnels {
    /// Binds the tunnel socket and sets up one session state per peer, for the
    /// process's forwarding workers (`[scheduling] workers`).
    pub fn new(
        listen: SocketAddr,
        private: StaticSecret,
        peers: Vec<PeerConfig>,
        mtu: usize,
    ) -> io::Result<Tunnels> {
        let workers = crate::scheduling::chosen().workers;
        Tunnels::for_workers(listen, private, peers, mtu, workers)
    }

    /// As [`Tunnels::new`], for `workers` forwarding workers: with more than
    /// one, the socket starts a reuseport group whose steering program sends
    /// each datagram to the socket of its peer's owner; [`Tunnels::split`]
    /// adds the other workers' sockets.
    pub fn for_workers(
        listen: SocketAddr,
        private: StaticSecret,
        peers: Vec<PeerConfig>,
        mtu: usize,
        workers: usize,
    ) -> io::Result<Tunnels> {
        let workers = workers.max(1);
        let (socket, tx, rx) = if workers > 1 {
            // A plain bind first: a port in use, by another `scd`'s group too,
            // is refused as with one worker, so no second process of our user
            // joins (or replaces the program of) a group unnoticed.
            let free = UdpSocket::bind(listen)?.local_addr()?;
            open_socket(free, true)?
        } else {
            open_socket(listen, false)?
        };
        if workers > 1 {
            // Without it every datagram still reaches its owner, handed over
            // by the worker the kernel's hash picked: only slower.
            if let Err(e) = super::steering::attach_steering(socket.as_raw_fd(), workers) {
                tracing::warn!("tunnel datagrams not steered to their peer's worker: {e}");
            }
        }
        Ok(Tunnels {
            socket,
            sessions: PeerSessions::new(private, peers, Instant::now()),
            workers,
            mtu,
            too_big: None,
            tx,
            rx,
            outbox: Outbox::default(),
            send_failures: 0,
        })
    }

    /// Splits the tunnels over `workers` forwarding workers: this one stays
    /// worker 0's, and those of workers 1 and up (each a socket in the group,
    /// bound in worker order, and the peers it owns) are returned.
    pub fn split(&mut self, workers: usize) -> io::Result<Vec<Tunnels>> {
        if workers != self.workers {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the tunnel socket was bound for {} forwarding workers, not {workers}",
                    self.workers
                ),
            ));
        }
        let local = self.socket.local_addr()?;
        let parts = self.sessions.split(workers, Instant::now());
        parts
            .into_iter()
            .map(|sessions| {
                let (socket, tx, rx) = open_socket(local, true)?;
                Ok(Tunnels {
                    socket,
                    sessions,
                    workers,
                    mtu: self.mtu,
                    too_big: self.too_big.clone(),
                    tx,
                    rx,
                    outbox: Outbox::default(),
                    send_failures: 0,
                })
            })
            .collect()
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

    /// Status of every peer this worker owns.
    pub fn status(&self) -> Vec<PeerStatus> {
        self.sessions.status()
    }

    /// Replaces, in the status of every peer, the entries of those this worker
    /// owns (a peer missing from it is added).
    pub fn update_status(&self, all: &mut Vec<PeerStatus>) {
        for mine in self.sessions.status() {
            match all.iter_mut().find(|s| s.port == mine.port) {
                Some(entry) => *entry = mine,
                None => all.push(mine),
            }
        }
    }

    /// True when this worker runs peer `peer`'s session.
    pub fn owns(&self, peer: usize) -> bool {
        self.sessions.owns(peer)
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

    /// Handles a datagram for `peer` (owned here) that another worker received
    /// from `from`; as [`Self::recv`] otherwise.
    pub fn recv_handed(
        &mut self,
        peer: usize,
        datagram: &[u8],
        from: SocketAddr,
        dst: &mut [u8],
    ) -> Received {
        let received = self
            .sessions
            .receive_for(peer, datagram, from, dst, &mut self.outbox);
        self.send_outbox();
        received
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

#[cfg(test)]
mod tests {
    use super::*;
    use boringtun::x25519::PublicKey;

    fn peer(port: PortNo, key: u8) -> PeerConfig {
        PeerConfig {
            port,
            name: format!("host-{key}"),
            public_key: PublicKey::from(&StaticSecret::from([key; 32])).to_bytes(),
            endpoint: None,
            keepalive: None,
        }
    }

    /// Which of `group` (by worker) reads the next datagram: each socket's
    /// session part answers `Invalid` for what it reads (the datagrams below
    /// carry no valid WireGuard message).
    fn reader(group: &mut [&mut Tunnels]) -> Option<usize> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut dst = vec![0u8; 65_536];
        while Instant::now() < deadline {
            for (worker, tunnels) in group.iter_mut().enumerate() {
                if tunnels.recv(&mut dst).is_ok() {
                    return Some(worker);
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        None
    }

    #[test]
    fn the_kernel_steers_each_datagram_to_the_socket_of_its_peers_owner() {
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let peers = vec![peer(10, 3), peer(11, 4), peer(12, 5)];
        let mut worker0 =
            Tunnels::for_workers(listen, StaticSecret::from([2; 32]), peers, 1420, 2).unwrap();
        let mut parts = worker0.split(2).unwrap();
        let mut worker1 = parts.remove(0);
        let to = worker0.local_addr().unwrap();
        assert_eq!(
            worker1.local_addr().unwrap(),
            to,
            "one address, two sockets"
        );
        assert!(worker1.owns(1) && worker0.owns(2) && !worker0.owns(1));
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let datagram = |kind: u8, peer: u32, session: u8| {
            let mut d = vec![0u8; 48];
            d[0] = kind;
            d[4..8].copy_from_slice(&((peer << 8) | u32::from(session)).to_le_bytes());
            d
        };
        // Several of each, so a hash that happened to agree once cannot pass.
        for round in 0..8u8 {
            for (kind, peer, owner) in [
                (4u8, 1u32, 1usize),
                (4, 2, 0),
                (2, 1, 1),
                (3, 0, 0),
                (1, 1, 0),
            ] {
                sender.send_to(&datagram(kind, peer, round), to).unwrap();
                let got = reader(&mut [&mut worker0, &mut worker1]);
                assert_eq!(got, Some(owner), "type {kind} for peer {peer}");
            }
        }
        assert!(
            worker0.split(3).is_err(),
            "a group is split for the workers it was bound for"
        );
        let again = Tunnels::for_workers(to, StaticSecret::from([2; 32]), vec![], 1420, 2);
        assert_eq!(
            again.map(drop).unwrap_err().kind(),
            io::ErrorKind::AddrInUse,
            "a second process cannot join the group"
        );
    }

    #[test]
    fn one_worker_binds_one_plain_socket() {
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut tunnels = Tunnels::for_workers(
            listen,
            StaticSecret::from([2; 32]),
            vec![peer(10, 3)],
            1420,
            1,
        )
        .unwrap();
        let mut reuse: libc::c_int = -1;
        let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap();
        // SAFETY: getsockopt writes one c_int and its length into live locals.
        let r = unsafe {
            libc::getsockopt(
                tunnels.fd(),
                libc::SOL_SOCKET,
                libc::SO_REUSEPORT,
                (&mut reuse as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!((r, reuse), (0, 0), "no SO_REUSEPORT with one worker");
        assert!(tunnels.split(1).unwrap().is_empty());
        assert!(tunnels.owns(0));
    }
}
