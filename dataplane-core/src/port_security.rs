//! Port security of VM ports: the binding of a port to its VM's MAC and IPv4
//! and IPv6 addresses, and the verdict on each frame the VM sends, taken before the ARP
//! responder and the tables see it.
//!
//! A bound port admits only frames from its VM's MAC, and of those only IPv4 from
//! one of its addresses (or a DHCP client's `0.0.0.0` to port 67), and ARP or RARP
//! whose sender hardware address is its MAC and whose sender protocol address is
//! one of its addresses or `0.0.0.0` (an ARP probe, QEMU's RARP announcement), and
//! IPv6 from one of its IPv6 addresses or the link-local address its MAC gives it
//! (or from `::` for neighbour discovery and multicast listener reports, as
//! duplicate address detection sends them).
//! Everything else (another MAC or address, a VLAN tag, protocols the
//! routed overlay does not carry) is refused with the reason. An unbound port
//! admits everything, as before bindings existed. This module only judges; it
//! never counts, drops or forwards.

use crate::nd::{is_link_control, link_local};
use crate::packet::{ArpPacket, Layout};
use openflow::flow::{ethertype, ipproto, FlowKey, Mac};
use std::net::{Ipv4Addr, Ipv6Addr};

/// UDP port of a DHCP server.
const DHCP_SERVER_PORT: u16 = 67;
/// UDP port of a DHCP client.
const DHCP_CLIENT_PORT: u16 = 68;

/// The addresses a VM port is bound to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PortBinding {
    mac: Mac,
    ips: Box<[u32]>,
    /// The IPv6 addresses it may send from, its MAC's link-local one first.
    ipv6: Box<[u128]>,
}

/// Why a frame from a bound port was refused (a metrics label each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Spoofed {
    /// The Ethernet source is not the VM's MAC.
    Mac,
    /// An IPv4 source that is not one of the VM's addresses.
    Ip,
    /// ARP or RARP whose sender MAC or address is not the VM's.
    Arp,
    /// A VLAN tag, or a protocol other than IPv4, IPv6, ARP and RARP.
    Protocol,
    /// An IPv6 source that is not one of the VM's addresses.
    Ipv6,
}

impl Spoofed {
    /// Every reason, in the order metrics list them.
    pub const ALL: [Spoofed; 5] = [
        Spoofed::Mac,
        Spoofed::Ip,
        Spoofed::Arp,
        Spoofed::Protocol,
        Spoofed::Ipv6,
    ];

    /// A short stable name, used as a metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Spoofed::Mac => "mac",
            Spoofed::Ip => "ip",
            Spoofed::Arp => "arp",
            Spoofed::Protocol => "protocol",
            Spoofed::Ipv6 => "ipv6",
        }
    }

    /// Position in [`Spoofed::ALL`], for per-reason counter arrays.
    pub fn index(self) -> usize {
        match self {
            Spoofed::Mac => 0,
            Spoofed::Ip => 1,
            Spoofed::Arp => 2,
            Spoofed::Protocol => 3,
            Spoofed::Ipv6 => 4,
        }
    }
}

/// Why a binding cannot be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    /// A group (multicast or broadcast) or all-zero MAC.
    #[error("{0} is not a unicast MAC")]
    NotUnicast(Mac),
    /// An address that no VM can own (`0.0.0.0`, broadcast, multicast).
    #[error("{0} is not a unicast IPv4 address")]
    NotUnicastIp(Ipv4Addr),
}

impl PortBinding {
    /// A binding to `mac` and `ips` (possibly none: the VM may then only use DHCP
    /// and ARP probes until it is given one).
    pub fn new(mac: Mac, ips: &[Ipv4Addr]) -> Result<PortBinding, BindingError> {
        if mac.is_multicast() || mac == Mac::ZERO {
            return Err(BindingError::NotUnicast(mac));
        }
        if let Some(bad) = ips
            .iter()
            .find(|ip| ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast())
        {
            return Err(BindingError::NotUnicastIp(*bad));
        }
        let mut ips: Vec<u32> = ips.iter().map(|ip| u32::from(*ip)).collect();
        ips.sort_unstable();
        ips.dedup();
        Ok(PortBinding {
            mac,
            ips: ips.into_boxed_slice(),
            ipv6: Box::new([u128::from(link_local(mac))]),
        })
    }

    /// The binding with `addresses` added to its IPv6 addresses (multicast
    /// and `::` are left out: no VM owns them).
    pub fn with_ipv6(mut self, addresses: &[Ipv6Addr]) -> PortBinding {
        let mut ipv6 = self.ipv6.into_vec();
        ipv6.extend(
            addresses
                .iter()
                .filter(|ip| !ip.is_multicast() && !ip.is_unspecified())
                .map(|ip| u128::from(*ip)),
        );
        let mut seen = std::collections::HashSet::new();
        ipv6.retain(|ip| seen.insert(*ip));
        self.ipv6 = ipv6.into_boxed_slice();
        self
    }

    /// The IPv6 addresses it may send from, its MAC's link-local one first.
    pub fn ipv6(&self) -> impl Iterator<Item = Ipv6Addr> + '_ {
        self.ipv6.iter().map(|ip| Ipv6Addr::from(*ip))
    }

    /// The VM's MAC.
    pub fn mac(&self) -> Mac {
        self.mac
    }

    /// The VM's addresses, ascending.
    pub fn ips(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.ips.iter().map(|ip| Ipv4Addr::from(*ip))
    }

    fn owns(&self, ip: u32) -> bool {
        self.ips.contains(&ip)
    }

    /// The verdict on a frame the VM sent, given what [`crate::packet::parse`]
    /// made of it: `Ok` when it may enter the switch.
    pub fn check(&self, key: &FlowKey, layout: &Layout, frame: &[u8]) -> Result<(), Spoofed> {
        if key.eth_src != self.mac {
            return Err(Spoofed::Mac);
        }
        if layout.vlan {
            return Err(Spoofed::Protocol);
        }
        match key.eth_type {
            ethertype::IPV4 if self.owns(key.ipv4_src) || is_dhcp_discovery(key) => Ok(()),
            ethertype::IPV4 => Err(Spoofed::Ip),
            ethertype::IPV6
                if self.ipv6.contains(&key.ipv6_src)
                    || (key.ipv6_src == 0 && is_link_control(key)) =>
            {
                Ok(())
            }
            ethertype::IPV6 => Err(Spoofed::Ipv6),
            ethertype::ARP | ethertype::RARP => {
                let sender_mac = frame
                    .get(layout.l3..)
                    .and_then(|l3| ArpPacket::new_checked(l3).ok())
                    .map(|arp| arp.sha());
                let address_ok = key.arp_spa == 0 || self.owns(key.arp_spa);
                if sender_mac == Some(self.mac) && address_ok {
                    Ok(())
                } else {
                    Err(Spoofed::Arp)
                }
            }
            _ => Err(Spoofed::Protocol),
        }
    }
}

/// A DHCP client's message before it has an address: from `0.0.0.0`, UDP 68 to 67.
fn is_dhcp_discovery(key: &FlowKey) -> bool {
    key.ipv4_src == 0
        && key.ip_proto == ipproto::UDP
        && key.l4_src == DHCP_CLIENT_PORT
        && key.l4_dst == DHCP_SERVER_PORT
}

#[cfg(test)]
mod tests;
