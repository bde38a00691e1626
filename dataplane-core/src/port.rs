//! Ports as every layer names and reports them: the one rule that tells a tunnel
//! port from a local one, the MAC a port shows to a controller, and the plain
//! status and counter snapshots the daemon hands to the OpenFlow translation.

use openflow::flow::{Mac, PortNo};
use std::net::SocketAddr;
use std::time::Duration;

/// Every tunnel port is named this prefix followed by the peer's host name.
pub const TUNNEL_PORT_PREFIX: &str = "wg-";

/// The name of the tunnel port to peer `peer`.
pub fn tunnel_port_name(peer: &str) -> String {
    format!("{TUNNEL_PORT_PREFIX}{peer}")
}

/// True when the port called `name` is a tunnel to another host.
pub fn is_tunnel_port(name: &str) -> bool {
    name.starts_with(TUNNEL_PORT_PREFIX)
}

/// A WireGuard session is dead after REJECT_AFTER_TIME without a new handshake.
pub const TUNNEL_DEAD_AFTER: Duration = Duration::from_secs(180);

/// A locally administered MAC for a port: 02:5c, two datapath id bytes, two port
/// number bytes (switch ports have no MAC of their own on the wire).
pub fn port_mac(datapath_id: u64, port_no: PortNo) -> Mac {
    let d = datapath_id.to_be_bytes();
    let p = port_no.to_be_bytes();
    Mac([0x02, 0x5c, d[6], d[7], p[2], p[3]])
}

/// A snapshot of a tunnel peer for status and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// OpenFlow port number.
    pub port: PortNo,
    /// Remote host name.
    pub name: String,
    /// Public key (base64).
    pub public_key: String,
    /// Current endpoint.
    pub endpoint: Option<SocketAddr>,
    /// Time since the last completed handshake, if any.
    pub since_handshake: Option<Duration>,
    /// Round trip of the last handshake this side initiated (initiation sent to
    /// response received): the latency to that host, measured over the tunnel
    /// itself every couple of minutes, as WireGuard rekeys. `None` until this side
    /// has initiated one.
    pub handshake_rtt: Option<Duration>,
    /// Bytes sent and received through the session (boringtun's count).
    pub tx_bytes: u64,
    /// See `tx_bytes`.
    pub rx_bytes: u64,
}

impl PeerStatus {
    /// True while the session is fresh enough to carry traffic.
    pub fn is_live(&self) -> bool {
        self.since_handshake.is_some_and(|d| d < TUNNEL_DEAD_AFTER)
    }
}

/// The counters of one port at one moment (`ofp_port_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortCounts {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames that could not be sent (queue full or device gone).
    pub tx_dropped: u64,
    /// Receive errors other than "nothing to read".
    pub rx_errors: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunnel_port_names_are_recognised() {
        let name = tunnel_port_name("host-b");
        assert_eq!(name, "wg-host-b");
        assert!(is_tunnel_port(&name));
        assert!(!is_tunnel_port("vm-1"));
    }

    #[test]
    fn port_macs_are_unicast_and_distinct() {
        let a = port_mac(1, 1);
        let b = port_mac(1, 2);
        assert_ne!(a, b);
        assert!(!a.is_multicast());
        assert_eq!(a.0[0] & 2, 2);
    }
}
