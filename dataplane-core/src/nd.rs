//! IPv6 neighbour discovery for the routed overlay: the addresses a VM's MAC
//! gives it (its EUI-64 link-local and SLAAC addresses), the anycast gateway's
//! answers to neighbour and router solicitations, and the router advertisements
//! that give VMs the overlay prefix (SLAAC, no DHCPv6: M and O clear) and the MTU.
//!
//! As with ARP for IPv4, every host answers for the gateway itself, so neighbour
//! discovery never leaves the host: [`is_neighbour_discovery`] names the ICMPv6
//! messages a VM port's frame may carry that the switch consumes instead of
//! forwarding. This module only builds frames; it never forwards one.

use crate::packet::{checksum_add, checksum_finish, Ipv6Packet, ETH_HLEN, IPV6_HLEN};
use openflow::flow::{ethertype, ipproto, FlowKey, Mac};
use std::net::Ipv6Addr;

/// The EUI-64 interface identifier of `mac` (RFC 4291 appendix A): the
/// universal/local bit flipped and `ff:fe` in the middle.
pub fn interface_id(mac: Mac) -> u64 {
    let m = mac.0;
    u64::from_be_bytes([m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]])
}

/// The link-local address a guest derives from `mac` (`fe80::/64` + EUI-64).
pub fn link_local(mac: Mac) -> Ipv6Addr {
    Ipv6Addr::from((0xfe80u128 << 112) | u128::from(interface_id(mac)))
}

/// The address SLAAC gives `mac` in the /64 that starts `prefix` (the prefix's
/// bits past 64 are ignored).
pub fn slaac_address(prefix: Ipv6Addr, mac: Mac) -> Ipv6Addr {
    Ipv6Addr::from((u128::from(prefix) & (u128::MAX << 64)) | u128::from(interface_id(mac)))
}

/// ICMPv6 type of a router solicitation.
pub const ROUTER_SOLICITATION: u8 = 133;
/// ICMPv6 type of a router advertisement.
pub const ROUTER_ADVERTISEMENT: u8 = 134;
/// ICMPv6 type of a neighbour solicitation.
pub const NEIGHBOUR_SOLICITATION: u8 = 135;
/// ICMPv6 type of a neighbour advertisement.
pub const NEIGHBOUR_ADVERTISEMENT: u8 = 136;
/// ICMPv6 type of a redirect.
pub const REDIRECT: u8 = 137;

/// The hop limit every neighbour discovery message carries (RFC 4861: a
/// message with any other came from off the link and is ignored).
const ND_HOP_LIMIT: u8 = 255;
/// Router lifetime advertised, seconds.
pub const ROUTER_LIFETIME_S: u16 = 1800;
/// Valid and preferred lifetime of the advertised prefix, seconds.
const PREFIX_LIFETIME_S: u32 = 86_400;
/// How often a VM port is sent an unsolicited router advertisement, seconds
/// (well inside [`ROUTER_LIFETIME_S`]).
pub const ADVERTISE_EVERY_S: u64 = 200;
/// The all-nodes multicast address `ff02::1`.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// Length of an Ethernet + IPv6 header.
const L4_AT: usize = ETH_HLEN + IPV6_HLEN;
/// Length of a neighbour advertisement with its target link-layer option.
const NA_LEN: usize = 24 + 8;
/// Length of a router advertisement with source link-layer, MTU and prefix
/// information options.
const RA_LEN: usize = 16 + 8 + 8 + 32;
/// The largest frame a responder writes.
pub const MAX_REPLY_FRAME: usize = L4_AT + RA_LEN;

/// True for the ICMPv6 messages that belong to one link: neighbour discovery
/// (router and neighbour solicitations and advertisements, redirects) and
/// multicast listener discovery. The switch answers or drops them on a VM
/// port; they never cross a tunnel.
pub fn is_link_control(key: &FlowKey) -> bool {
    key.eth_type == ethertype::IPV6
        && key.ip_proto == ipproto::ICMPV6
        && matches!(key.l4_src, 130..=137 | 143)
}

/// The anycast gateway's side of neighbour discovery on VM ports: neighbour
/// advertisements for the gateway's link-local address and every overlay
/// address (as ARP for IPv4), and router advertisements of the overlay's first
/// /64 with SLAAC on and DHCPv6 off, and the link MTU.
#[derive(Clone, Copy, Debug)]
pub struct NdResponder {
    gateway_mac: Mac,
    gateway_ll: u128,
    network: u128,
    mask: u128,
    mtu: u32,
}

impl NdResponder {
    /// A responder for the overlay `network/len` that answers with
    /// `gateway_mac` and advertises `mtu`.
    pub fn new(network: Ipv6Addr, len: u8, gateway_mac: Mac, mtu: u32) -> NdResponder {
        let mask = u128::MAX
            .checked_shl(128 - u32::from(len.min(128)))
            .unwrap_or(0);
        NdResponder {
            gateway_mac,
            gateway_ll: u128::from(link_local(gateway_mac)),
            network: u128::from(network) & mask,
            mask,
            mtu,
        }
    }

    /// The gateway's link-local address, the source of its advertisements and
    /// the VMs' default router.
    pub fn gateway_link_local(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.gateway_ll)
    }

    /// The prefix VMs autoconfigure from: the overlay's first /64.
    pub fn slaac_prefix(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.network & (u128::MAX << 64))
    }

    /// Writes the answer to a VM's neighbour or router solicitation (an
    /// untagged frame, as parsed into `key`) into `out` and returns its length;
    /// `None` when there is nothing to answer: another message, a duplicate
    /// address probe (from `::`), a target that is neither the gateway nor an
    /// overlay address, a hop limit other than 255, or `out` too small.
    pub fn reply(&self, key: &FlowKey, frame: &[u8], out: &mut [u8]) -> Option<usize> {
        if !is_link_control(key) || key.vlan_vid != 0 {
            return None;
        }
        let ip = Ipv6Packet::new_checked(frame.get(ETH_HLEN..)?).ok()?;
        if ip.hop_limit() != ND_HOP_LIMIT || key.l4_dst != 0 {
            return None;
        }
        match u8::try_from(key.l4_src).ok()? {
            NEIGHBOUR_SOLICITATION => {
                let target = u128::from_be_bytes(ip.payload().get(8..24)?.try_into().ok()?);
                let answers = target == self.gateway_ll
                    || (target & self.mask == self.network && target != key.ipv6_src);
                if key.ipv6_src == 0 || !answers {
                    return None;
                }
                self.neighbour_advertisement(key, target, out)
            }
            ROUTER_SOLICITATION => {
                let to = if key.ipv6_src == 0 {
                    ALL_NODES
                } else {
                    Ipv6Addr::from(key.ipv6_src)
                };
                self.router_advertisement(key.eth_src, to, out)
            }
            _ => None,
        }
    }

    fn neighbour_advertisement(
        &self,
        key: &FlowKey,
        target: u128,
        out: &mut [u8],
    ) -> Option<usize> {
        let from = (self.gateway_mac, Ipv6Addr::from(self.gateway_ll));
        neighbour_advertisement(from, target, key, out)
    }

    /// Writes a router advertisement to `to` (the soliciting VM's address, or
    /// [`ALL_NODES`] when unsolicited) at `dst_mac` into `out` and returns its
    /// length (`None` when `out` is too small).
    pub fn router_advertisement(
        &self,
        dst_mac: Mac,
        to: Ipv6Addr,
        out: &mut [u8],
    ) -> Option<usize> {
        let frame = out.get_mut(..L4_AT + RA_LEN)?;
        frame.fill(0);
        let icmp = &mut frame[L4_AT..];
        icmp[0] = ROUTER_ADVERTISEMENT;
        icmp[4] = 64; // the hop limit guests should use
        icmp[5] = 0; // M and O clear: SLAAC, no DHCPv6
        icmp[6..8].copy_from_slice(&ROUTER_LIFETIME_S.to_be_bytes());
        // Source link-layer address.
        icmp[16] = 1;
        icmp[17] = 1;
        icmp[18..24].copy_from_slice(&self.gateway_mac.0);
        // MTU.
        icmp[24] = 5;
        icmp[25] = 1;
        icmp[28..32].copy_from_slice(&self.mtu.to_be_bytes());
        // Prefix information: /64, autonomous, not on-link (every packet goes to
        // the gateway, which routes it, as for IPv4).
        icmp[32] = 3;
        icmp[33] = 4;
        icmp[34] = 64;
        icmp[35] = 0x40;
        icmp[36..40].copy_from_slice(&PREFIX_LIFETIME_S.to_be_bytes());
        icmp[40..44].copy_from_slice(&PREFIX_LIFETIME_S.to_be_bytes());
        icmp[48..64].copy_from_slice(&self.slaac_prefix().octets());
        self.finish(frame, dst_mac, to);
        Some(L4_AT + RA_LEN)
    }

    /// Fills in the Ethernet and IPv6 headers of the ICMPv6 message after them,
    /// from the gateway to `dst`, and its checksum.
    fn finish(&self, frame: &mut [u8], dst_mac: Mac, dst: Ipv6Addr) {
        let from = (self.gateway_mac, Ipv6Addr::from(self.gateway_ll));
        finish(frame, from, dst_mac, dst);
    }
}

/// Writes into `out` a solicited neighbour advertisement (router, override)
/// of `target` with `from`'s MAC, from `from`'s address to the soliciting
/// `key`'s source, and returns its length (`None`: `out` too small).
fn neighbour_advertisement(
    from: (Mac, Ipv6Addr),
    target: u128,
    key: &FlowKey,
    out: &mut [u8],
) -> Option<usize> {
    let frame = out.get_mut(..L4_AT + NA_LEN)?;
    frame.fill(0);
    let icmp = &mut frame[L4_AT..];
    icmp[0] = NEIGHBOUR_ADVERTISEMENT;
    // Router, solicited, override.
    icmp[4] = 0xe0;
    icmp[8..24].copy_from_slice(&target.to_be_bytes());
    // Target link-layer address option.
    icmp[24] = 2;
    icmp[25] = 1;
    icmp[26..32].copy_from_slice(&from.0 .0);
    finish(frame, from, key.eth_src, Ipv6Addr::from(key.ipv6_src));
    Some(L4_AT + NA_LEN)
}

/// Fills in the Ethernet and IPv6 headers of the ICMPv6 message after them,
/// from `from` (MAC, address) to `dst` at `dst_mac`, and its checksum.
fn finish(frame: &mut [u8], from: (Mac, Ipv6Addr), dst_mac: Mac, dst: Ipv6Addr) {
    let icmp_len = frame.len() - L4_AT;
    frame[0..6].copy_from_slice(&dst_mac.0);
    frame[6..12].copy_from_slice(&from.0 .0);
    frame[12..14].copy_from_slice(&ethertype::IPV6.to_be_bytes());
    let ip = &mut frame[ETH_HLEN..];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&u16::try_from(icmp_len).unwrap_or(0).to_be_bytes());
    ip[6] = ipproto::ICMPV6;
    ip[7] = ND_HOP_LIMIT;
    ip[8..24].copy_from_slice(&from.1.octets());
    ip[24..40].copy_from_slice(&dst.octets());
    let sum = icmpv6_checksum(&frame[ETH_HLEN..]);
    frame[L4_AT + 2..L4_AT + 4].copy_from_slice(&sum.to_be_bytes());
}

/// Neighbour discovery on a port that faces a router rather than VMs (a
/// gateway's uplink, `answer_nd` in scd's configuration): it answers the
/// router's neighbour solicitations for its own address and the public prefix
/// it routes (so the router may route the prefix to the address or treat it
/// as on-link), with the port's MAC, as `answer_arp` does for IPv4.
#[derive(Clone, Debug)]
pub struct PortNdResponder {
    mac: Mac,
    /// (network, mask) of each prefix answered for.
    answers: Vec<(u128, u128)>,
}

impl PortNdResponder {
    /// Answers for `prefixes` (a /128 is one address) with `mac`.
    pub fn new(mac: Mac, prefixes: &[(Ipv6Addr, u8)]) -> PortNdResponder {
        let answers = prefixes
            .iter()
            .map(|(net, len)| {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from((*len).min(128)))
                    .unwrap_or(0);
                (u128::from(*net) & mask, mask)
            })
            .collect();
        PortNdResponder { mac, answers }
    }

    /// Writes the answer to a neighbour solicitation that arrived on the port
    /// (an untagged frame, as parsed into `key`) into `out` and returns its
    /// length; `None` for anything else: another message, a duplicate address
    /// probe, a target outside the answered prefixes, a hop limit other than
    /// 255, or `out` too small.
    pub fn reply(&self, key: &FlowKey, frame: &[u8], out: &mut [u8]) -> Option<usize> {
        if !is_link_control(key)
            || key.vlan_vid != 0
            || key.l4_src != u16::from(NEIGHBOUR_SOLICITATION)
            || key.l4_dst != 0
            || key.ipv6_src == 0
        {
            return None;
        }
        let ip = Ipv6Packet::new_checked(frame.get(ETH_HLEN..)?).ok()?;
        if ip.hop_limit() != ND_HOP_LIMIT {
            return None;
        }
        let target = u128::from_be_bytes(ip.payload().get(8..24)?.try_into().ok()?);
        if !self.answers.iter().any(|(net, mask)| target & mask == *net) {
            return None;
        }
        neighbour_advertisement((self.mac, Ipv6Addr::from(target)), target, key, out)
    }
}

/// The ICMPv6 checksum of the message after the fixed IPv6 header `ip` starts
/// with (its own checksum field taken as it is: zero it first to compute one,
/// leave it to verify one, which then gives 0).
pub fn icmpv6_checksum(ip: &[u8]) -> u16 {
    let payload = ip.get(IPV6_HLEN..).unwrap_or(&[]);
    let mut sum = checksum_add(0, &ip[8..40]);
    sum = checksum_add(
        sum,
        &u32::try_from(payload.len()).unwrap_or(0).to_be_bytes(),
    );
    sum = checksum_add(sum, &[0, 0, 0, ipproto::ICMPV6]);
    checksum_finish(checksum_add(sum, payload))
}

#[cfg(test)]
mod tests;
