//! WireGuard tunnel ports: one UDP socket per `scd` (per forwarding worker,
//! with several), one boringtun session per remote host, each remote host an
//! OpenFlow port.
//!
//! The peer logic ([`session`]) is sans-IO: it turns datagrams into packets and
//! replies and never touches a socket, so it is tested with two peers talking to
//! each other in memory. Which inner sources a peer may use is kept in an
//! allowed-IPs trie ([`allowed_ips`]) fed from the flow tables. The socket side
//! ([`socket`]) does the batched I/O. It carries IP packets only, with no extra
//! header, and never decides where a packet goes; the switch loop does that with
//! the tables. With several forwarding workers each owns some peers and a
//! socket of its own, and [`steering`] makes the kernel deliver each datagram
//! to its peer's owner.

pub mod allowed_ips;
pub mod session;
pub mod socket;
pub mod steering;

pub use session::{
    Peer, PeerConfig, PeerSessions, Received, Sent, SourceCheck, DEFAULT_TUNNEL_MTU,
    MAX_TUNNEL_MTU, WG_OVERHEAD_V4,
};
pub use socket::Tunnels;
