//! A gateway host's uplink into the internet (`[host.uplink]` in the inventory)
//! and how a public address's new home is announced (`[controller] announce`):
//! plain data. What a gateway adds to the routing is the gateway module's.

use config_support::prefix_mask;
use openflow::flow::Mac;
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, Ipv6Addr};

/// The uplink of a gateway host (`[host.uplink]` in the inventory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gateway {
    /// The gateway host.
    pub host: String,
    /// OpenFlow port number of the uplink on that host's switch.
    pub port: u32,
    /// The uplink interface (a raw port: an existing interface `scd` attaches to).
    pub interface: String,
    /// Namespace the interface lives in, when not the host's (test harness).
    pub netns: Option<String>,
    /// The uplink's own address, which the next-hop router routes the public
    /// prefix to (the switch answers ARP for it).
    pub address: Ipv4Addr,
    /// The uplink's own MAC (source of outbound frames, ARP answers).
    pub mac: Mac,
    /// The next-hop router's MAC (destination of outbound frames).
    pub router_mac: Mac,
    /// The public prefix this gateway serves: network and length.
    pub public_prefix: (Ipv4Addr, u8),
    /// The uplink's own IPv6 address, which the next-hop router routes the
    /// public IPv6 prefix to (the switch answers neighbour solicitations for
    /// it); given with [`Gateway::public_ipv6_prefix`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address6: Option<Ipv6Addr>,
    /// The public IPv6 prefix this gateway routes to VMs (no NAT): network
    /// and length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ipv6_prefix: Option<(Ipv6Addr, u8)>,
}

impl Gateway {
    /// True when `ip` lies in this gateway's public prefix.
    pub fn serves(&self, ip: Ipv4Addr) -> bool {
        let mask = prefix_mask(self.public_prefix.1);
        u32::from(ip) & mask == u32::from(self.public_prefix.0)
    }

    /// True when `ip` lies in this gateway's public IPv6 prefix.
    pub fn serves_ipv6(&self, ip: Ipv6Addr) -> bool {
        self.public_ipv6_prefix.is_some_and(|(net, len)| {
            u128::from(ip) & config_support::prefix_mask128(len) == u128::from(net)
        })
    }
}

/// How the controller tells the internet where a public address enters
/// (`[controller] announce` in the inventory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Announce {
    /// `ip route replace ADDRESS/32 via UPLINK` (`/128` via the uplink's `address6`
    /// for a public IPv6 address) in the namespace `scc` runs in: the
    /// emulated internet's router in the tests and the demo.
    IpRoute,
}

impl std::str::FromStr for Announce {
    type Err = String;

    fn from_str(s: &str) -> Result<Announce, String> {
        match s {
            "ip-route" => Ok(Announce::IpRoute),
            other => Err(format!(
                "unknown announcement method `{other}` (expected \"ip-route\")"
            )),
        }
    }
}
