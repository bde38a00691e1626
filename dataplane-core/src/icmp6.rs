//! ICMPv6 "packet too big" (RFC 4443 §3.2), which path MTU discovery needs
//! because IPv6 routers never fragment: the message the switch sends back to
//! the source of an IPv6 packet too large for the tunnel it must enter, and
//! the token bucket that bounds how many it sends. Builds frames and counts
//! tokens; never sends anything and never reads a clock (time is passed in).

use crate::nd::icmpv6_checksum;
use crate::packet::{Ipv6Packet, ETH_HLEN, IPV6_HLEN};
use openflow::flow::{ethertype, ipproto};
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

/// The smallest link MTU IPv6 allows (RFC 8200 §5): every link, and so every
/// tunnel carrying IPv6, must pass packets of this size whole.
pub const MIN_IPV6_MTU: usize = 1280;
/// ICMPv6 type of a packet-too-big message.
pub const PACKET_TOO_BIG: u8 = 2;
/// Length of the ICMPv6 header of a packet-too-big message (type, code,
/// checksum, MTU).
const PTB_HLEN: usize = 8;
/// The largest frame [`packet_too_big`] writes: an untagged Ethernet header and
/// an IPv6 packet of [`MIN_IPV6_MTU`], as much of the invoking packet quoted as
/// that leaves room for.
pub const MAX_TOO_BIG_FRAME: usize = ETH_HLEN + MIN_IPV6_MTU;
/// Hop limit of the messages the switch originates.
const HOP_LIMIT: u8 = 64;

/// Writes into `out` a packet-too-big message answering `frame` (whose IP
/// packet starts at `l2`) and returns its length: back to the frame's source
/// MAC from its destination MAC, untagged, from `from` to the packet's source,
/// telling `mtu`, quoting as much of the packet as fits in
/// [`MIN_IPV6_MTU`]. `None` when no message may be sent (RFC 4443 §2.4): not
/// IPv6, a source that is not one unicast node (`::`, multicast), a packet
/// that is itself an ICMPv6 error, or `out` too small.
pub fn packet_too_big(
    out: &mut [u8],
    frame: &[u8],
    l2: usize,
    mtu: u32,
    from: Ipv6Addr,
) -> Option<usize> {
    let eth = frame.get(..12)?;
    let ip = frame.get(l2..)?;
    let packet = Ipv6Packet::new_checked(ip).ok()?;
    let src = Ipv6Addr::from(packet.src());
    if src.is_unspecified() || src.is_multicast() {
        return None;
    }
    // Errors are never answered with errors (types below 128), so two
    // switches can never bounce them between each other.
    let is_error = packet.next_header() == ipproto::ICMPV6
        && packet.payload().first().is_none_or(|t| *t < 128);
    if is_error {
        return None;
    }
    let quoted_len = ip.len().min(MIN_IPV6_MTU - IPV6_HLEN - PTB_HLEN);
    let icmp_len = PTB_HLEN + quoted_len;
    let total = ETH_HLEN + IPV6_HLEN + icmp_len;
    let buf = out.get_mut(..total)?;
    buf[0..6].copy_from_slice(&eth[6..12]);
    buf[6..12].copy_from_slice(&eth[0..6]);
    buf[12..14].copy_from_slice(&ethertype::IPV6.to_be_bytes());
    let h = &mut buf[ETH_HLEN..];
    h[..IPV6_HLEN].fill(0);
    h[0] = 0x60;
    h[4..6].copy_from_slice(&u16::try_from(icmp_len).ok()?.to_be_bytes());
    h[6] = ipproto::ICMPV6;
    h[7] = HOP_LIMIT;
    h[8..24].copy_from_slice(&from.octets());
    h[24..40].copy_from_slice(&src.octets());
    let icmp = &mut h[IPV6_HLEN..];
    icmp[0] = PACKET_TOO_BIG;
    icmp[1] = 0;
    icmp[2..4].fill(0);
    icmp[4..8].copy_from_slice(&mtu.to_be_bytes());
    icmp[PTB_HLEN..].copy_from_slice(&ip[..quoted_len]);
    let sum = icmpv6_checksum(h);
    h[IPV6_HLEN + 2..IPV6_HLEN + 4].copy_from_slice(&sum.to_be_bytes());
    Some(total)
}

/// A token bucket: at most `burst` at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    /// Time one token takes to come back.
    cost: Duration,
    /// Time saved up, at most `burst` tokens' worth.
    saved: Duration,
    cap: Duration,
    last: Option<Instant>,
}

impl RateLimit {
    /// A full bucket of `burst` tokens refilled at `per_second` (both at least 1).
    pub fn new(per_second: u32, burst: u32) -> RateLimit {
        let cost = Duration::from_secs(1) / per_second.max(1);
        let cap = cost * burst.max(1);
        RateLimit {
            cost,
            saved: cap,
            cap,
            last: None,
        }
    }

    /// Takes a token at `now` if one is left.
    pub fn allow(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            self.saved = (self.saved + now.saturating_duration_since(last)).min(self.cap);
        }
        self.last = Some(self.last.map_or(now, |last| last.max(now)));
        if self.saved >= self.cost {
            self.saved -= self.cost;
            true
        } else {
            false
        }
    }
}

/// Packet-too-big messages sent per second at most, after a burst of as many.
pub const TOO_BIG_PER_SECOND: u32 = 100;

/// What a switch needs to answer oversized IPv6: the rate limits, and the
/// source address of its messages by input port (a gateway's uplink sends
/// from its own global address, which the internet can route back; every
/// other port from the anycast gateway's link-local address). Each uplink has
/// a budget of its own apart from the VM ports', so the internet cannot spend
/// the answers the VMs need for path MTU discovery.
#[derive(Debug, Clone)]
pub struct TooBigReplies {
    /// The VM ports' budget.
    limit: RateLimit,
    link_local: Ipv6Addr,
    by_port: Vec<(u32, Ipv6Addr, RateLimit)>,
}

impl TooBigReplies {
    /// Replies from `link_local` except on the ports of `by_port`.
    pub fn new(link_local: Ipv6Addr, by_port: Vec<(u32, Ipv6Addr)>) -> TooBigReplies {
        let budget = || RateLimit::new(TOO_BIG_PER_SECOND, TOO_BIG_PER_SECOND);
        TooBigReplies {
            limit: budget(),
            link_local,
            by_port: by_port
                .into_iter()
                .map(|(port, from)| (port, from, budget()))
                .collect(),
        }
    }

    /// The source of a message answering a packet from `port`.
    pub fn source(&self, port: u32) -> Ipv6Addr {
        self.by_port
            .iter()
            .find(|(p, _, _)| *p == port)
            .map_or(self.link_local, |(_, a, _)| *a)
    }

    /// True when a message answering a packet from `port` may be sent now
    /// (it is then counted against that port's budget).
    pub fn allow(&mut self, port: u32, now: Instant) -> bool {
        match self.by_port.iter_mut().find(|(p, _, _)| *p == port) {
            Some((_, _, limit)) => limit.allow(now),
            None => self.limit.allow(now),
        }
    }
}

#[cfg(test)]
mod tests;
