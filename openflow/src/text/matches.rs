//! Parsing the match items of a flow line (`ip`, `nw_dst=10.0.0.0/8`,
//! `priority=100`, …) into a [`FlowMatch`] and the flow's other settings,
//! remembering which item set each field so errors can point at it.

use super::lex::{Ctx, Item, ParseError};
use super::values::{
    parse_int_masked, parse_ipv4_masked, parse_ipv6_masked, parse_mac_masked, parse_port,
    parse_uint, parse_width, RESET_COUNTS,
};
use crate::flow::{ethertype, flags, ipproto, Field, FlowMatch, FlowSpec, VLAN_PRESENT};

/// The flow being built from one line, with the token behind each field.
#[derive(Debug)]
pub(super) struct Builder<'a> {
    pub(super) m: FlowMatch,
    pub(super) by: Vec<(Field, Item<'a>)>,
    /// Transport-field names that need one of these `ip_proto` values.
    pub(super) needs_proto: Vec<(&'static [u8], Item<'a>)>,
}

impl<'a> Builder<'a> {
    /// Adds the constraint `field & mask == value & mask`, merging with what is there.
    fn add(
        &mut self,
        cx: &Ctx<'_>,
        item: &Item<'a>,
        field: Field,
        value: u128,
        mask: u128,
    ) -> Result<(), ParseError> {
        let mask = mask & field.full_mask();
        let value = value & mask;
        let (v0, m0) = self.m.get(field).unwrap_or((0, 0));
        let common = mask & m0;
        if value & common != v0 & common {
            return Err(cx.err(
                item,
                format!("{field} is already matched to a different value"),
            ));
        }
        self.m.set(field, v0 | value, m0 | mask);
        if !self.by.iter().any(|(f, _)| *f == field) {
            self.by.push((field, *item));
        }
        Ok(())
    }
}

pub(super) fn parse_match_item<'a>(
    cx: &Ctx<'_>,
    item: &Item<'a>,
    spec: &mut FlowSpec,
    b: &mut Builder<'a>,
) -> Result<(), ParseError> {
    let key = item.key;
    let shorthand: Option<(u16, Option<u8>)> = match key {
        "ip" => Some((ethertype::IPV4, None)),
        "ipv6" => Some((ethertype::IPV6, None)),
        "arp" => Some((ethertype::ARP, None)),
        "rarp" => Some((ethertype::RARP, None)),
        "tcp" => Some((ethertype::IPV4, Some(ipproto::TCP))),
        "udp" => Some((ethertype::IPV4, Some(ipproto::UDP))),
        "icmp" => Some((ethertype::IPV4, Some(ipproto::ICMP))),
        "tcp6" => Some((ethertype::IPV6, Some(ipproto::TCP))),
        "udp6" => Some((ethertype::IPV6, Some(ipproto::UDP))),
        "icmp6" => Some((ethertype::IPV6, Some(ipproto::ICMPV6))),
        _ => None,
    };
    if let Some((et, proto)) = shorthand {
        if item.value.is_some() {
            return Err(cx.err(item, format!("`{key}` takes no value")));
        }
        b.add(cx, item, Field::EthType, et.into(), u128::MAX)?;
        if let Some(p) = proto {
            b.add(cx, item, Field::IpProto, p.into(), u128::MAX)?;
        }
        return Ok(());
    }
    let flag = match key {
        "send_flow_rem" => Some(flags::SEND_FLOW_REM),
        "check_overlap" => Some(flags::CHECK_OVERLAP),
        "reset_counts" => Some(RESET_COUNTS),
        "no_packet_counts" => Some(flags::NO_PKT_COUNTS),
        "no_byte_counts" => Some(flags::NO_BYT_COUNTS),
        _ => None,
    };
    if let Some(f) = flag {
        if item.value.is_some() {
            return Err(cx.err(item, format!("`{key}` takes no value")));
        }
        spec.flags |= f;
        return Ok(());
    }
    let Some(v) = item.value else {
        return Err(cx.err(
            item,
            format!("unknown keyword `{key}` (a match field needs `=value`)"),
        ));
    };
    let bad = |what: &str| cx.err(item, format!("`{v}` is not {what}"));
    match key {
        "table" => {
            spec.table_id = u8::try_from(parse_uint(v).ok_or_else(|| bad("a table number"))?)
                .map_err(|_| bad("a table number (0-254)"))?;
            if spec.table_id == 255 {
                return Err(bad("a table number (0-254)"));
            }
        }
        "priority" => {
            spec.priority = u16::try_from(parse_uint(v).ok_or_else(|| bad("a priority"))?)
                .map_err(|_| bad("a priority (0-65535)"))?;
        }
        "cookie" => {
            if v.contains('/') {
                return Err(cx.err(item, "a cookie mask is only for mod-flows/del-flows"));
            }
            spec.cookie = u64::try_from(parse_uint(v).ok_or_else(|| bad("a cookie"))?)
                .map_err(|_| bad("a 64-bit cookie"))?;
        }
        "idle_timeout" | "hard_timeout" => {
            let t = u16::try_from(parse_uint(v).ok_or_else(|| bad("a timeout"))?)
                .map_err(|_| bad("a timeout (0-65535 s)"))?;
            if key == "idle_timeout" {
                spec.idle_timeout = t;
            } else {
                spec.hard_timeout = t;
            }
        }
        "in_port" | "in_port_oxm" => {
            let (val, mask) = match v.split_once('/') {
                Some((a, m)) => (
                    parse_width(a, 32).ok_or_else(|| bad("a port"))?,
                    parse_width(m, 32).ok_or_else(|| bad("a port mask"))?,
                ),
                None => (
                    parse_port(v).ok_or_else(|| bad("a port"))?.into(),
                    u128::MAX,
                ),
            };
            b.add(cx, item, Field::InPort, val, mask)?;
        }
        "dl_src" | "eth_src" | "dl_dst" | "eth_dst" => {
            let f = if key.ends_with("src") {
                Field::EthSrc
            } else {
                Field::EthDst
            };
            let (val, mask) = parse_mac_masked(v).ok_or_else(|| bad("a MAC address[/mask]"))?;
            b.add(cx, item, f, val, mask)?;
        }
        "dl_type" | "eth_type" => {
            let (val, mask) = parse_int_masked(v, 16).ok_or_else(|| bad("an EtherType"))?;
            b.add(cx, item, Field::EthType, val, mask)?;
        }
        "dl_vlan" => {
            let vid = parse_width(v, 12).ok_or_else(|| bad("a VLAN id (0-4095)"))?;
            b.add(
                cx,
                item,
                Field::VlanVid,
                vid | u128::from(VLAN_PRESENT),
                u128::MAX,
            )?;
        }
        "vlan_vid" => {
            let (val, mask) = parse_int_masked(v, 13)
                .ok_or_else(|| bad("a vlan_vid (0x1000 | vid, 13 bits)[/mask]"))?;
            b.add(cx, item, Field::VlanVid, val, mask)?;
        }
        "dl_vlan_pcp" | "vlan_pcp" => {
            let pcp = parse_width(v, 3).ok_or_else(|| bad("a VLAN priority (0-7)"))?;
            b.add(
                cx,
                item,
                Field::VlanVid,
                VLAN_PRESENT.into(),
                VLAN_PRESENT.into(),
            )?;
            b.add(cx, item, Field::VlanPcp, pcp, u128::MAX)?;
        }
        "vlan_tci" => {
            let (val, mask) = parse_int_masked(v, 16).ok_or_else(|| bad("a 16-bit TCI[/mask]"))?;
            if mask & 0x1fff != 0 {
                b.add(cx, item, Field::VlanVid, val & 0x1fff, mask & 0x1fff)?;
            }
            if mask >> 13 != 0 {
                b.add(cx, item, Field::VlanPcp, val >> 13, mask >> 13)?;
            }
        }
        "nw_src" | "ip_src" | "nw_dst" | "ip_dst" | "arp_spa" | "arp_tpa" => {
            let f = match key {
                "nw_src" | "ip_src" => Field::Ipv4Src,
                "nw_dst" | "ip_dst" => Field::Ipv4Dst,
                "arp_spa" => Field::ArpSpa,
                _ => Field::ArpTpa,
            };
            let (val, mask) = parse_ipv4_masked(v)
                .ok_or_else(|| bad("an IPv4 address[/prefix length or /mask]"))?;
            b.add(cx, item, f, val, mask)?;
        }
        "ipv6_src" | "ipv6_dst" => {
            let f = if key == "ipv6_src" {
                Field::Ipv6Src
            } else {
                Field::Ipv6Dst
            };
            let (val, mask) = parse_ipv6_masked(v)
                .ok_or_else(|| bad("an IPv6 address[/prefix length or /mask]"))?;
            b.add(cx, item, f, val, mask)?;
        }
        "nw_proto" | "ip_proto" => {
            let (val, mask) = parse_int_masked(v, 8).ok_or_else(|| bad("an IP protocol"))?;
            b.add(cx, item, Field::IpProto, val, mask)?;
        }
        "nw_tos" => {
            let tos = parse_width(v, 8).ok_or_else(|| bad("a TOS byte"))?;
            if tos & 3 != 0 {
                return Err(cx.err(item, "nw_tos must have its two ECN bits clear"));
            }
            b.add(cx, item, Field::IpDscp, tos >> 2, u128::MAX)?;
        }
        "metadata" => {
            let (val, mask) =
                parse_int_masked(v, 64).ok_or_else(|| bad("a 64-bit metadata[/mask]"))?;
            b.add(cx, item, Field::Metadata, val, mask)?;
        }
        "ip_dscp" => {
            let (val, mask) = parse_int_masked(v, 6).ok_or_else(|| bad("a DSCP (0-63)"))?;
            b.add(cx, item, Field::IpDscp, val, mask)?;
        }
        "arp_op" => {
            let (val, mask) = parse_int_masked(v, 16).ok_or_else(|| bad("an ARP opcode"))?;
            b.add(cx, item, Field::ArpOp, val, mask)?;
        }
        "tp_src" | "tp_dst" | "tcp_src" | "tcp_dst" | "udp_src" | "udp_dst" | "icmp_type"
        | "icmp_code" | "icmpv6_type" | "icmpv6_code" => {
            let src = key.ends_with("src") || key.ends_with("type");
            let f = if src { Field::L4Src } else { Field::L4Dst };
            let bits = if key.starts_with("icmp") { 8 } else { 16 };
            let (val, mask) = parse_int_masked(v, bits).ok_or_else(|| bad("a port number"))?;
            let mask = if bits == 8 && mask == 0xff {
                u128::MAX
            } else {
                mask
            };
            b.add(cx, item, f, val, mask)?;
            // OVS accepts `icmp_type`/`icmp_code` for ICMPv6 too, and prints them so.
            let allowed: &'static [u8] = match key {
                "tcp_src" | "tcp_dst" => &[ipproto::TCP],
                "udp_src" | "udp_dst" => &[ipproto::UDP],
                "icmp_type" | "icmp_code" => &[ipproto::ICMP, ipproto::ICMPV6],
                "icmpv6_type" | "icmpv6_code" => &[ipproto::ICMPV6],
                _ => &[],
            };
            if !allowed.is_empty() {
                b.needs_proto.push((allowed, *item));
            }
        }
        "out_port" | "out_group" => {
            return Err(cx.err(item, format!("`{key}` is only for mod-flows/del-flows")));
        }
        _ => {
            return Err(cx.err(item, format!("unknown or unsupported match field `{key}`")));
        }
    }
    Ok(())
}
