//! Printing flows, matches, actions and groups the way `ovs-ofctl dump-flows`
//! and `dump-groups` do.

use super::values::{
    format_port, mac_of, reserved_port_name, u16_of, u32_of, DEFAULT_PRIORITY, RESET_COUNTS,
};
use crate::flow::{
    ethertype, flags, ipproto, port, Action, Field, FlowMatch, FlowSpec, Instruction, VLAN_PRESENT,
};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Counters of a flow entry, as a flow-stats reply carries them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct FlowStats {
    /// Whole seconds since the entry was installed.
    pub duration_sec: u32,
    /// Nanoseconds beyond `duration_sec`.
    pub duration_nsec: u32,
    /// Packets that hit the entry.
    pub packet_count: u64,
    /// Bytes that hit the entry.
    pub byte_count: u64,
    /// Seconds since the last hit, when the switch reports it (an OVS extension).
    pub idle_age: Option<u32>,
}

/// The `ovs-ofctl` text of a match, without priority (e.g. `tcp,nw_dst=10.0.0.0/8,tp_dst=80`).
pub fn format_match(m: &FlowMatch) -> String {
    let mut s = String::new();
    write_match(&mut s, m, DEFAULT_PRIORITY);
    s
}

fn write_match(s: &mut String, m: &FlowMatch, priority: u16) {
    let mut parts: Vec<String> = Vec::new();
    if priority != DEFAULT_PRIORITY {
        parts.push(format!("priority={priority}"));
    }
    let eth_type = m.exact(Field::EthType);
    let proto = m.exact(Field::IpProto);
    let ip4 = eth_type == Some(u128::from(ethertype::IPV4));
    let ip6 = eth_type == Some(u128::from(ethertype::IPV6));
    let mut skip_type = false;
    let mut skip_proto = false;
    if let Some(t) = eth_type {
        skip_type = true;
        let short = match proto {
            _ if !(ip4 || ip6) => match u16::try_from(t).ok() {
                Some(ethertype::ARP) => Some("arp"),
                Some(ethertype::RARP) => Some("rarp"),
                _ => None,
            },
            Some(p) => {
                skip_proto = true;
                match (ip4, u8::try_from(p).unwrap_or(0)) {
                    (true, ipproto::ICMP) => Some("icmp"),
                    (true, ipproto::TCP) => Some("tcp"),
                    (true, ipproto::UDP) => Some("udp"),
                    (false, ipproto::ICMPV6) => Some("icmp6"),
                    (false, ipproto::TCP) => Some("tcp6"),
                    (false, ipproto::UDP) => Some("udp6"),
                    _ => {
                        skip_proto = false;
                        Some(if ip4 { "ip" } else { "ipv6" })
                    }
                }
            }
            None => Some(if ip4 { "ip" } else { "ipv6" }),
        };
        match short {
            Some(name) => parts.push(name.to_string()),
            None => skip_type = false,
        }
    }
    if let Some((v, mask)) = m.get(Field::Metadata) {
        if mask == Field::Metadata.full_mask() {
            parts.push(format!("metadata={v:#x}"));
        } else {
            parts.push(format!("metadata={v:#x}/{mask:#x}"));
        }
    }
    if let Some((v, mask)) = m.get(Field::InPort) {
        if mask == Field::InPort.full_mask() {
            parts.push(format!("in_port={}", format_port(u32_of(v))));
        } else {
            parts.push(format!("in_port={v:#x}/{mask:#x}"));
        }
    }
    if let Some(vlan) = format_vlan(m) {
        parts.push(vlan);
    }
    for (f, name) in [(Field::EthSrc, "dl_src"), (Field::EthDst, "dl_dst")] {
        if let Some((v, mask)) = m.get(f) {
            parts.push(format!("{name}={}", fmt_mac_masked(v, mask)));
        }
    }
    if !skip_type {
        if let Some((v, mask)) = m.get(Field::EthType) {
            if mask == Field::EthType.full_mask() {
                parts.push(format!("dl_type=0x{v:04x}"));
            } else {
                parts.push(format!("dl_type=0x{v:04x}/0x{mask:04x}"));
            }
        }
    }
    for (f, name) in [(Field::Ipv6Src, "ipv6_src"), (Field::Ipv6Dst, "ipv6_dst")] {
        if let Some((v, mask)) = m.get(f) {
            parts.push(format!("{name}={}", fmt_ipv6_masked(v, mask)));
        }
    }
    for (f, name) in [
        (Field::ArpSpa, "arp_spa"),
        (Field::ArpTpa, "arp_tpa"),
        (Field::Ipv4Src, "nw_src"),
        (Field::Ipv4Dst, "nw_dst"),
    ] {
        if let Some((v, mask)) = m.get(f) {
            parts.push(format!("{name}={}", fmt_ipv4_masked(v, mask)));
        }
    }
    if !skip_proto {
        if let Some((v, mask)) = m.get(Field::IpProto) {
            parts.push(fmt_int_masked("nw_proto", v, mask, Field::IpProto));
        }
    }
    if let Some((v, mask)) = m.get(Field::ArpOp) {
        parts.push(fmt_int_masked("arp_op", v, mask, Field::ArpOp));
    }
    if let Some((v, mask)) = m.get(Field::IpDscp) {
        if mask == Field::IpDscp.full_mask() {
            parts.push(format!("nw_tos={}", v << 2));
        } else {
            parts.push(format!("ip_dscp={v:#x}/{mask:#x}"));
        }
    }
    let icmp = (ip4 && proto == Some(u128::from(ipproto::ICMP)))
        || (ip6 && proto == Some(u128::from(ipproto::ICMPV6)));
    let (src, dst) = if icmp {
        ("icmp_type", "icmp_code")
    } else {
        ("tp_src", "tp_dst")
    };
    for (f, name) in [(Field::L4Src, src), (Field::L4Dst, dst)] {
        if let Some((v, mask)) = m.get(f) {
            if mask == f.full_mask() {
                parts.push(format!("{name}={v}"));
            } else {
                parts.push(format!("{name}={v:#x}/{mask:#x}"));
            }
        }
    }
    s.push_str(&parts.join(","));
}

/// The VLAN part of a match, printed the way OVS prints its `vlan_tci`.
fn format_vlan(m: &FlowMatch) -> Option<String> {
    let (vid, vid_m) = m.get(Field::VlanVid).unwrap_or((0, 0));
    let (pcp, pcp_m) = m.get(Field::VlanPcp).unwrap_or((0, 0));
    let tci = u16_of(vid | (pcp << 13));
    let tci_m = u16_of(vid_m | (pcp_m << 13));
    if tci_m == 0 {
        return None;
    }
    let vid_mask = tci_m & 0x0fff;
    let pcp_mask = tci_m & 0xe000;
    let cfi = tci_m & VLAN_PRESENT;
    if cfi != 0
        && tci & VLAN_PRESENT != 0
        && (vid_mask == 0 || vid_mask == 0x0fff)
        && (pcp_mask == 0 || pcp_mask == 0xe000)
        && (vid_mask != 0 || pcp_mask != 0)
    {
        let mut out = Vec::new();
        if vid_mask != 0 {
            out.push(format!("dl_vlan={}", tci & 0x0fff));
        }
        if pcp_mask != 0 {
            out.push(format!("dl_vlan_pcp={}", tci >> 13));
        }
        Some(out.join(","))
    } else if tci_m == 0xffff {
        Some(format!("vlan_tci=0x{tci:04x}"))
    } else {
        Some(format!("vlan_tci=0x{tci:04x}/0x{tci_m:04x}"))
    }
}

fn fmt_int_masked(name: &str, v: u128, mask: u128, f: Field) -> String {
    if mask == f.full_mask() {
        format!("{name}={v}")
    } else {
        format!("{name}={v:#x}/{mask:#x}")
    }
}

fn fmt_mac_masked(v: u128, mask: u128) -> String {
    if mask == Field::EthSrc.full_mask() {
        mac_of(v).to_string()
    } else {
        format!("{}/{}", mac_of(v), mac_of(mask))
    }
}

fn fmt_ipv4_masked(v: u128, mask: u128) -> String {
    let (v, mask) = (u32_of(v), u32_of(mask));
    let addr = Ipv4Addr::from(v);
    if mask == u32::MAX {
        addr.to_string()
    } else if mask.leading_ones() + mask.trailing_zeros() == 32 {
        format!("{addr}/{}", mask.leading_ones())
    } else {
        format!("{addr}/{}", Ipv4Addr::from(mask))
    }
}

fn fmt_ipv6_masked(v: u128, mask: u128) -> String {
    let addr = Ipv6Addr::from(v);
    if mask == u128::MAX {
        addr.to_string()
    } else if mask.leading_ones() + mask.trailing_zeros() == 128 {
        format!("{addr}/{}", mask.leading_ones())
    } else {
        format!("{addr}/{}", Ipv6Addr::from(mask))
    }
}

/// The protocol that names the transport fields of set-field actions, from the match.
fn l4_names(m: &FlowMatch) -> Option<(&'static str, &'static str)> {
    match u8::try_from(m.exact(Field::IpProto)?).ok()? {
        ipproto::TCP => Some(("tcp_src", "tcp_dst")),
        ipproto::UDP => Some(("udp_src", "udp_dst")),
        ipproto::ICMP => Some(("icmp_type", "icmp_code")),
        ipproto::ICMPV6 => Some(("icmpv6_type", "icmpv6_code")),
        _ => None,
    }
}

fn write_action(s: &mut String, a: &Action, m: &FlowMatch) {
    match *a {
        Action::Output { port: p, max_len } => {
            if p == port::CONTROLLER {
                let _ = write!(s, "CONTROLLER:{max_len}");
            } else if let Some(name) = reserved_port_name(p) {
                s.push_str(name);
            } else {
                let _ = write!(s, "output:{p}");
            }
        }
        Action::SetField { field, value } => {
            let v = value & field.full_mask();
            let (name, text) = match field {
                Field::InPort => ("in_port", format_port(u32_of(v))),
                Field::EthDst => ("eth_dst", mac_of(v).to_string()),
                Field::EthSrc => ("eth_src", mac_of(v).to_string()),
                Field::EthType => ("eth_type", format!("0x{v:04x}")),
                Field::VlanVid => ("vlan_vid", v.to_string()),
                Field::VlanPcp => ("vlan_pcp", v.to_string()),
                Field::IpDscp => ("ip_dscp", v.to_string()),
                Field::IpProto => ("nw_proto", v.to_string()),
                Field::Ipv4Src => ("ip_src", Ipv4Addr::from(u32_of(v)).to_string()),
                Field::Ipv4Dst => ("ip_dst", Ipv4Addr::from(u32_of(v)).to_string()),
                Field::Ipv6Src => ("ipv6_src", Ipv6Addr::from(v).to_string()),
                Field::Ipv6Dst => ("ipv6_dst", Ipv6Addr::from(v).to_string()),
                Field::L4Src | Field::L4Dst => {
                    let Some((src, dst)) = l4_names(m) else {
                        let which = if field == Field::L4Src { "src" } else { "dst" };
                        let _ = write!(s, "mod_tp_{which}:{v}");
                        return;
                    };
                    (if field == Field::L4Src { src } else { dst }, v.to_string())
                }
                Field::ArpOp => ("arp_op", v.to_string()),
                Field::ArpSpa => ("arp_spa", Ipv4Addr::from(u32_of(v)).to_string()),
                Field::ArpTpa => ("arp_tpa", Ipv4Addr::from(u32_of(v)).to_string()),
                Field::Metadata => ("metadata", format!("{v:#x}")),
            };
            let _ = write!(s, "set_field:{text}->{name}");
        }
        Action::PushVlan(tpid) => {
            let _ = write!(s, "push_vlan:{tpid:#x}");
        }
        Action::PopVlan => s.push_str("pop_vlan"),
        Action::DecNwTtl => s.push_str("dec_ttl"),
        Action::Group(id) => {
            let _ = write!(s, "group:{id}");
        }
    }
}

/// The `ovs-ofctl` text of an instruction list (the part after `actions=`).
///
/// `m` is the flow's match: it decides whether a transport set-field prints as
/// `tcp_dst`, `udp_dst`, `icmp_code`... (OVS names them by protocol).
pub fn format_actions(m: &FlowMatch, instructions: &[Instruction]) -> String {
    let mut items: Vec<String> = Vec::new();
    let list = |actions: &[Action]| -> Vec<String> {
        actions
            .iter()
            .map(|a| {
                let mut s = String::new();
                write_action(&mut s, a, m);
                s
            })
            .collect()
    };
    // OVS prints the instructions in execution order, whatever order they came in.
    let rank = |i: &Instruction| match i {
        Instruction::ApplyActions(_) => 0,
        Instruction::ClearActions => 1,
        Instruction::WriteActions(_) => 2,
        Instruction::WriteMetadata { .. } => 3,
        Instruction::GotoTable(_) => 4,
    };
    let mut ordered: Vec<&Instruction> = instructions.iter().collect();
    ordered.sort_by_key(|i| rank(i));
    for ins in ordered {
        match ins {
            Instruction::ApplyActions(actions) => items.extend(list(actions)),
            Instruction::ClearActions => items.push("clear_actions".into()),
            Instruction::WriteActions(actions) => {
                items.push(format!("write_actions({})", list(actions).join(",")));
            }
            Instruction::WriteMetadata { value, mask } => {
                if *mask == u64::MAX {
                    items.push(format!("write_metadata:{value:#x}"));
                } else {
                    items.push(format!("write_metadata:{value:#x}/{mask:#x}"));
                }
            }
            Instruction::GotoTable(t) => items.push(format!("goto_table:{t}")),
        }
    }
    if items.is_empty() {
        "drop".to_string()
    } else {
        items.join(",")
    }
}

/// One group as `ovs-ofctl -O OpenFlow13 dump-groups` prints it (without OVS's
/// leading space): `group_id=1,type=all,bucket=actions=output:1,bucket=actions=…`,
/// which `ovs-ofctl add-group` accepts back.
pub fn format_group(spec: &crate::flow::GroupSpec) -> String {
    format_group_for(spec, &FlowMatch::any())
}

/// The `ovs-ofctl add-groups` text of a group run by flows with match `m`: a
/// bucket has no match of its own, so a transport set-field takes its protocol's
/// name (`udp_dst`, `tcp_src`) from `m`, as `ovs-ofctl` encodes only those in
/// OpenFlow 1.3 (the generic `mod_tp_dst` is an OpenFlow 1.1 action).
pub fn format_group_for(spec: &crate::flow::GroupSpec, m: &FlowMatch) -> String {
    let kind = match spec.group_type {
        crate::flow::GroupType::All => "all",
        crate::flow::GroupType::Indirect => "indirect",
    };
    let mut s = format!("group_id={},type={kind}", spec.group_id);
    for bucket in &spec.buckets {
        let actions = format_actions(m, &[Instruction::ApplyActions(bucket.actions.clone())]);
        let _ = write!(s, ",bucket=actions={actions}");
    }
    s
}

fn write_flags(s: &mut String, f: u16) {
    for (bit, name) in [
        (flags::SEND_FLOW_REM, "send_flow_rem"),
        (flags::CHECK_OVERLAP, "check_overlap"),
        (RESET_COUNTS, "reset_counts"),
        (flags::NO_PKT_COUNTS, "no_packet_counts"),
        (flags::NO_BYT_COUNTS, "no_byte_counts"),
    ] {
        if f & bit != 0 {
            s.push_str(name);
            s.push(' ');
        }
    }
}

fn write_flow(s: &mut String, spec: &FlowSpec, stats: Option<&FlowStats>) {
    if stats.is_some() || spec.cookie != 0 {
        let _ = write!(s, "cookie={:#x}, ", spec.cookie);
    }
    if let Some(st) = stats {
        s.push_str("duration=");
        write_duration(s, st.duration_sec, st.duration_nsec);
        s.push_str(", ");
    }
    if stats.is_some() || spec.table_id != 0 {
        let _ = write!(s, "table={}, ", spec.table_id);
    }
    if let Some(st) = stats {
        let _ = write!(
            s,
            "n_packets={}, n_bytes={}, ",
            st.packet_count, st.byte_count
        );
    }
    if spec.idle_timeout != 0 {
        let _ = write!(s, "idle_timeout={}, ", spec.idle_timeout);
    }
    if spec.hard_timeout != 0 {
        let _ = write!(s, "hard_timeout={}, ", spec.hard_timeout);
    }
    write_flags(s, spec.flags);
    if let Some(age) = stats.and_then(|st| st.idle_age) {
        let _ = write!(s, "idle_age={age}, ");
    }
    let before = s.len();
    write_match(s, &spec.matcher, spec.priority);
    if s.len() != before {
        s.push(' ');
    }
    s.push_str("actions=");
    s.push_str(&format_actions(&spec.matcher, &spec.instructions));
}

/// Writes a duration as OVS does: `5s`, `1.234s`, or as many decimals as needed.
pub(super) fn write_duration(s: &mut String, sec: u32, nsec: u32) {
    let _ = write!(s, "{sec}");
    if nsec > 0 {
        if nsec.is_multiple_of(1_000_000) {
            let _ = write!(s, ".{:03}", nsec / 1_000_000);
        } else {
            let frac = format!("{nsec:09}");
            let _ = write!(s, ".{}", frac.trim_end_matches('0'));
        }
    }
    s.push('s');
}

/// A flow as `ovs-ofctl dump-flows --no-stats` prints it, which `ovs-ofctl add-flow`
/// and [`parse_flow`] accept back, e.g.
/// `cookie=0x5, table=1, priority=100,ip,nw_dst=100.64.0.2 actions=output:2`.
pub fn format_flow(spec: &FlowSpec) -> String {
    let mut s = String::new();
    write_flow(&mut s, spec, None);
    s
}

/// A flow with its counters as `ovs-ofctl -O OpenFlow13 dump-flows` prints it, e.g.
/// `cookie=0x0, duration=1.234s, table=0, n_packets=3, n_bytes=294, priority=100,ip
/// actions=drop` (OVS indents each line with one space; that space is not included).
pub fn format_flow_stats(spec: &FlowSpec, stats: &FlowStats) -> String {
    let mut s = String::new();
    write_flow(&mut s, spec, Some(stats));
    s
}
