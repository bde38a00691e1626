//! How values are spelt in `ovs-ofctl` flow text, for printing and parsing alike:
//! ports (reserved names or numbers), integers of a field's width, addresses with
//! their masks, and the flow defaults the syntax leaves out.

use crate::flow::{ipproto, port, Field, Mac, PortNo};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The priority of a flow that does not name one (`OFP_DEFAULT_PRIORITY`).
pub const DEFAULT_PRIORITY: u16 = 0x8000;

/// `OFPFF_RESET_COUNTS`, which `ovs-ofctl` accepts as `reset_counts`.
pub(super) const RESET_COUNTS: u16 = 1 << 2;

/// The `ovs-ofctl` name of a port: a reserved name such as `LOCAL`, else its number.
pub fn format_port(p: PortNo) -> String {
    match reserved_port_name(p) {
        Some(name) => name.to_string(),
        None => p.to_string(),
    }
}

pub(super) fn reserved_port_name(p: PortNo) -> Option<&'static str> {
    Some(match p {
        port::IN_PORT => "IN_PORT",
        port::TABLE => "TABLE",
        port::NORMAL => "NORMAL",
        port::FLOOD => "FLOOD",
        port::ALL => "ALL",
        port::CONTROLLER => "CONTROLLER",
        port::LOCAL => "LOCAL",
        port::ANY => "ANY",
        _ => return None,
    })
}

/// Parses a port as `ovs-ofctl` does: a reserved name (any case), or a number.
/// Numbers are OpenFlow 1.3 port numbers, taken literally (unlike OVS, 65534 is not
/// an alias of `LOCAL`).
pub fn parse_port(s: &str) -> Option<PortNo> {
    const NAMES: [(&str, PortNo); 9] = [
        ("IN_PORT", port::IN_PORT),
        ("TABLE", port::TABLE),
        ("NORMAL", port::NORMAL),
        ("FLOOD", port::FLOOD),
        ("ALL", port::ALL),
        ("CONTROLLER", port::CONTROLLER),
        ("LOCAL", port::LOCAL),
        ("ANY", port::ANY),
        ("NONE", port::ANY),
    ];
    if let Some((_, p)) = NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)) {
        return Some(*p);
    }
    u32::try_from(parse_uint(s)?).ok()
}

pub(super) fn parse_uint(s: &str) -> Option<u128> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u128::from_str_radix(hex, 16).ok()
    } else if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

pub(super) fn parse_width(s: &str, bits: u32) -> Option<u128> {
    let v = parse_uint(s)?;
    (bits >= 128 || v >> bits == 0).then_some(v)
}

/// Splits `value/mask` at its slash; the mask is absent when there is none.
fn split_mask(s: &str) -> (&str, Option<&str>) {
    match s.split_once('/') {
        Some((value, mask)) => (value, Some(mask)),
        None => (s, None),
    }
}

/// The mask of a field `bits` wide: all its bits set.
fn width_mask(bits: u32) -> u128 {
    if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

/// An IP address of `bits` bits, with an optional mask written as an address or as
/// a prefix length (`10.0.0.0/8`, `10.0.0.0/255.0.0.0`, `2001:db8::/32`).
fn parse_ip_masked<A: FromStr>(
    s: &str,
    bits: u32,
    to_bits: impl Fn(A) -> u128,
) -> Option<(u128, u128)> {
    let (addr, mask) = split_mask(s);
    let addr = to_bits(addr.parse().ok()?);
    let full = width_mask(bits);
    let mask = match mask {
        None => full,
        Some(m) => match m.parse::<A>() {
            Ok(mask) => to_bits(mask),
            Err(_) => {
                let len: u32 = m.parse().ok().filter(|l| *l <= bits)?;
                full ^ full.checked_shr(len).unwrap_or(0)
            }
        },
    };
    Some((addr, mask))
}

pub(super) fn parse_ipv4_masked(s: &str) -> Option<(u128, u128)> {
    parse_ip_masked(s, 32, |a: Ipv4Addr| u32::from(a).into())
}

pub(super) fn parse_ipv6_masked(s: &str) -> Option<(u128, u128)> {
    parse_ip_masked(s, 128, |a: Ipv6Addr| u128::from(a))
}

pub(super) fn parse_mac_masked(s: &str) -> Option<(u128, u128)> {
    let (a, m) = split_mask(s);
    let addr: Mac = a.parse().ok()?;
    let mask = match m {
        None => Field::EthSrc.full_mask(),
        Some(m) => m.parse::<Mac>().ok()?.to_u64().into(),
    };
    Some((addr.to_u64().into(), mask))
}

pub(super) fn parse_int_masked(s: &str, bits: u32) -> Option<(u128, u128)> {
    match split_mask(s) {
        (v, Some(m)) => Some((parse_width(v, bits)?, parse_width(m, bits)?)),
        (v, None) => Some((parse_width(v, bits)?, width_mask(bits))),
    }
}

/// What a transport-field name demands of `ip_proto`.
pub(super) fn proto_of_l4_name(name: &str) -> Option<u8> {
    match name {
        "tcp_src" | "tcp_dst" => Some(ipproto::TCP),
        "udp_src" | "udp_dst" => Some(ipproto::UDP),
        "icmp_type" | "icmp_code" => Some(ipproto::ICMP),
        "icmpv6_type" | "icmpv6_code" => Some(ipproto::ICMPV6),
        _ => None,
    }
}

#[allow(clippy::cast_possible_truncation)] // callers pass values of 32-bit fields
pub(super) fn u32_of(v: u128) -> u32 {
    (v & 0xffff_ffff) as u32
}

#[allow(clippy::cast_possible_truncation)] // callers pass values of 16-bit fields
pub(super) fn u16_of(v: u128) -> u16 {
    (v & 0xffff) as u16
}

#[allow(clippy::cast_possible_truncation)] // callers pass values of 48-bit fields
pub(super) fn mac_of(v: u128) -> Mac {
    Mac::from_u64((v & 0xffff_ffff_ffff) as u64)
}
