//! The `ovs-ofctl` text syntax of flows: formatting and parsing.
//!
//! This module owns the human syntax of a [`FlowSpec`]: [`format_flow`] writes a flow
//! the way `ovs-ofctl dump-flows --no-stats` does (which `ovs-ofctl add-flow` and
//! [`parse_flow`] read back), [`format_flow_stats`] writes the `dump-flows` line with
//! counters, and [`parse_flow`]/[`parse_flows`] read what `ovs-ofctl add-flow` and
//! `add-flows` accept, restricted to the fields and actions of [`crate::flow`].
//! It never touches a socket or a wire encoding, and never panics on any input: every
//! rejection is a [`ParseError`] that names the line, the column and the token.
//!
//! Conventions that follow Open vSwitch:
//! - a flow without `priority=` has priority 32768, and that priority is not printed;
//! - `vlan_vid` is the OpenFlow 1.3 field (`0x1000 | vid` for tagged frames), while
//!   `dl_vlan=5` means "tagged with VID 5" and `dl_vlan_pcp=3` "tagged with PCP 3";
//!   the formatter prints the combination the way OVS prints its `vlan_tci`;
//! - `nw_tos` is the whole TOS byte (DSCP << 2); `ip_dscp` is the six-bit DSCP;
//! - transport ports print as `tp_src`/`tp_dst`, except ICMP's as `icmp_type`/`icmp_code`;
//! - an empty action list prints as `drop`, and `drop` parses to no instruction at all;
//! - `output:N` to a non-controller port parses with `max_len = 0xffff`, the value of
//!   [`Action::output`]; `max_len` only shows for `CONTROLLER:N`.

use crate::flow::{
    ethertype, flags, ipproto, port, Action, Field, FlowMatch, FlowSpec, Instruction, Mac, PortNo,
    VLAN_PRESENT,
};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The priority of a flow that does not name one (`OFP_DEFAULT_PRIORITY`).
pub const DEFAULT_PRIORITY: u16 = 0x8000;

/// `OFPFF_RESET_COUNTS`, which `ovs-ofctl` accepts as `reset_counts`.
const RESET_COUNTS: u16 = 1 << 2;

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

/// Why a line of flow text was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message} (at `{token}`)")]
pub struct ParseError {
    /// 1-based line number (1 for [`parse_flow`]).
    pub line: usize,
    /// 1-based column, in characters, where the offending token starts.
    pub column: usize,
    /// The offending token, as written.
    pub token: String,
    /// What is wrong with it.
    pub message: String,
}

// ---------------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------------

/// The `ovs-ofctl` name of a port: a reserved name such as `LOCAL`, else its number.
pub fn format_port(p: PortNo) -> String {
    match reserved_port_name(p) {
        Some(name) => name.to_string(),
        None => p.to_string(),
    }
}

fn reserved_port_name(p: PortNo) -> Option<&'static str> {
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

#[allow(clippy::cast_possible_truncation)] // callers pass values of 32-bit fields
fn u32_of(v: u128) -> u32 {
    (v & 0xffff_ffff) as u32
}

#[allow(clippy::cast_possible_truncation)] // callers pass values of 16-bit fields
fn u16_of(v: u128) -> u16 {
    (v & 0xffff) as u16
}

#[allow(clippy::cast_possible_truncation)] // callers pass values of 48-bit fields
fn mac_of(v: u128) -> Mac {
    Mac::from_u64((v & 0xffff_ffff_ffff) as u64)
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
    for ins in instructions {
        match ins {
            Instruction::ApplyActions(actions) => {
                for a in actions {
                    let mut s = String::new();
                    write_action(&mut s, a, m);
                    items.push(s);
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
    let kind = match spec.group_type {
        crate::flow::GroupType::All => "all",
        crate::flow::GroupType::Indirect => "indirect",
    };
    let mut s = format!("group_id={},type={kind}", spec.group_id);
    for bucket in &spec.buckets {
        // A bucket has no match, so transport set-fields print by their generic name.
        let actions = format_actions(
            &FlowMatch::any(),
            &[Instruction::ApplyActions(bucket.actions.clone())],
        );
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
fn write_duration(s: &mut String, sec: u32, nsec: u32) {
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

// ---------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------

/// One `key[=value]` or `key:value` item of a line, with where it starts.
#[derive(Debug, Clone, Copy)]
struct Item<'a> {
    /// Byte offset of the item in the line.
    at: usize,
    /// The whole item as written.
    text: &'a str,
    key: &'a str,
    value: Option<&'a str>,
}

fn is_delim(c: char) -> bool {
    matches!(c, ',' | ' ' | '\t' | '\r' | '\n')
}

/// Splits `s` (starting at byte `base` of the line) into items, as OVS does:
/// delimiters are commas and white space; a key ends at `=`, `:` or `(`; a value runs
/// to the next delimiter outside parentheses.
fn items(s: &str, base: usize) -> Vec<Item<'_>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if is_delim(char::from(b[i])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !matches!(b[i], b'=' | b':' | b'(') && !is_delim(char::from(b[i])) {
            i += 1;
        }
        let key = &s[start..i];
        let mut value = None;
        if i < b.len() && matches!(b[i], b'=' | b':' | b'(') {
            let paren = b[i] == b'(';
            let vstart = if paren { i } else { i + 1 };
            i = vstart;
            let mut depth = 0usize;
            while i < b.len() {
                match b[i] {
                    b'(' => depth += 1,
                    b')' => depth = depth.saturating_sub(1),
                    c if depth == 0 && is_delim(char::from(c)) => break,
                    _ => {}
                }
                i += 1;
            }
            value = Some(&s[vstart..i]);
        }
        out.push(Item {
            at: base + start,
            text: &s[start..i],
            key,
            value,
        });
    }
    out
}

/// Builds errors that point into one line.
#[derive(Debug)]
struct Ctx<'a> {
    line_no: usize,
    line: &'a str,
}

impl Ctx<'_> {
    fn err(&self, item: &Item<'_>, message: impl Into<String>) -> ParseError {
        ParseError {
            line: self.line_no,
            column: self
                .line
                .get(..item.at)
                .map_or(1, |p| p.chars().count() + 1),
            token: item.text.to_string(),
            message: message.into(),
        }
    }
}

fn parse_uint(s: &str) -> Option<u128> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u128::from_str_radix(hex, 16).ok()
    } else if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

fn parse_width(s: &str, bits: u32) -> Option<u128> {
    let v = parse_uint(s)?;
    (bits >= 128 || v >> bits == 0).then_some(v)
}

fn parse_ipv4_masked(s: &str) -> Option<(u128, u128)> {
    let (a, m) = match s.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (s, None),
    };
    let addr: Ipv4Addr = a.parse().ok()?;
    let mask = match m {
        None => u32::MAX,
        Some(m) if m.contains('.') => u32::from(m.parse::<Ipv4Addr>().ok()?),
        Some(m) => {
            let len: u8 = m.parse().ok().filter(|l| *l <= 32)?;
            crate::flow::prefix_mask32(len)
        }
    };
    Some((u32::from(addr).into(), mask.into()))
}

fn parse_ipv6_masked(s: &str) -> Option<(u128, u128)> {
    let (a, m) = match s.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (s, None),
    };
    let addr: Ipv6Addr = a.parse().ok()?;
    let mask = match m {
        None => u128::MAX,
        Some(m) if m.contains(':') => u128::from(m.parse::<Ipv6Addr>().ok()?),
        Some(m) => match m.parse::<u32>().ok().filter(|l| *l <= 128)? {
            0 => 0,
            len => u128::MAX << (128 - len),
        },
    };
    Some((u128::from(addr), mask))
}

fn parse_mac_masked(s: &str) -> Option<(u128, u128)> {
    let (a, m) = match s.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (s, None),
    };
    let addr: Mac = a.parse().ok()?;
    let mask = match m {
        None => Field::EthSrc.full_mask(),
        Some(m) => m.parse::<Mac>().ok()?.to_u64().into(),
    };
    Some((addr.to_u64().into(), mask))
}

fn parse_int_masked(s: &str, bits: u32) -> Option<(u128, u128)> {
    let full = if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    match s.split_once('/') {
        Some((v, m)) => Some((parse_width(v, bits)?, parse_width(m, bits)?)),
        None => Some((parse_width(s, bits)?, full)),
    }
}

/// What a transport-field name demands of `ip_proto`.
fn proto_of_l4_name(name: &str) -> Option<u8> {
    match name {
        "tcp_src" | "tcp_dst" => Some(ipproto::TCP),
        "udp_src" | "udp_dst" => Some(ipproto::UDP),
        "icmp_type" | "icmp_code" => Some(ipproto::ICMP),
        "icmpv6_type" | "icmpv6_code" => Some(ipproto::ICMPV6),
        _ => None,
    }
}

/// The flow being built from one line, with the token behind each field.
#[derive(Debug)]
struct Builder<'a> {
    m: FlowMatch,
    by: Vec<(Field, Item<'a>)>,
    /// Transport-field names that need one of these `ip_proto` values.
    needs_proto: Vec<(&'static [u8], Item<'a>)>,
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

/// Parses one flow in `ovs-ofctl add-flow` syntax, e.g.
/// `table=0,priority=100,ip,nw_dst=100.64.0.0/10,actions=mod_dl_dst:02:00:00:00:00:02,output:3`.
pub fn parse_flow(line: &str) -> Result<FlowSpec, ParseError> {
    parse_line(line, 1)
}

/// Parses a file of flows, one a line; blank lines and lines starting with `#` are
/// skipped. The first bad line stops the parse, and the error names it.
pub fn parse_flows(text: &str) -> Result<Vec<FlowSpec>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        out.push(parse_line(line, i + 1)?);
    }
    Ok(out)
}

fn parse_line(line: &str, line_no: usize) -> Result<FlowSpec, ParseError> {
    let cx = Ctx { line_no, line };
    let all = items(line, 0);
    let mut spec = FlowSpec {
        table_id: 0,
        priority: DEFAULT_PRIORITY,
        matcher: FlowMatch::any(),
        instructions: Vec::new(),
        cookie: 0,
        idle_timeout: 0,
        hard_timeout: 0,
        flags: 0,
    };
    let mut b = Builder {
        m: FlowMatch::any(),
        by: Vec::new(),
        needs_proto: Vec::new(),
    };
    let mut actions_at: Option<(Item<'_>, usize)> = None;
    for item in &all {
        if item.key == "actions" || item.key == "action" {
            if item.value.is_none() {
                return Err(cx.err(item, "`actions` needs `=` and a list"));
            }
            // The action list runs to the end of the line.
            let start = item.at + item.key.len() + 1;
            actions_at = Some((*item, start));
            break;
        }
        parse_match_item(&cx, item, &mut spec, &mut b)?;
    }
    let Some((act_item, start)) = actions_at else {
        let end = Item {
            at: line.len(),
            text: "",
            key: "",
            value: None,
        };
        return Err(cx.err(&end, "missing `actions=`"));
    };
    // Prerequisites and protocol-specific names.
    if let Err(e) = b.m.check_prerequisites() {
        let field = match &e {
            crate::flow::MatchError::Prerequisite { field, .. }
            | crate::flow::MatchError::Conflict(field)
            | crate::flow::MatchError::ValueOutsideMask(field) => *field,
        };
        let item =
            b.by.iter()
                .find(|(f, _)| *f == field)
                .map_or(act_item, |(_, i)| *i);
        return Err(cx.err(&item, e.to_string()));
    }
    let proto = b.m.exact(Field::IpProto);
    for (allowed, item) in &b.needs_proto {
        if !allowed.iter().any(|p| proto == Some(u128::from(*p))) {
            let want: Vec<String> = allowed.iter().map(u8::to_string).collect();
            return Err(cx.err(
                item,
                format!("`{}` needs nw_proto={}", item.key, want.join(" or ")),
            ));
        }
    }
    spec.matcher = b.m;
    let rest = line.get(start..).unwrap_or("");
    spec.instructions = parse_actions(&cx, rest, start, &spec.matcher)?;
    Ok(spec)
}

fn parse_match_item<'a>(
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

/// A `set_field`/`mod_*` target name and the field it writes.
fn set_field_target(name: &str) -> Option<(Field, Option<u8>)> {
    Some(match name {
        "in_port" | "in_port_oxm" => (Field::InPort, None),
        "eth_dst" | "dl_dst" => (Field::EthDst, None),
        "eth_src" | "dl_src" => (Field::EthSrc, None),
        "vlan_vid" => (Field::VlanVid, None),
        "vlan_pcp" | "dl_vlan_pcp" => (Field::VlanPcp, None),
        "ip_dscp" => (Field::IpDscp, None),
        "ip_src" | "nw_src" => (Field::Ipv4Src, None),
        "ip_dst" | "nw_dst" => (Field::Ipv4Dst, None),
        "ipv6_src" => (Field::Ipv6Src, None),
        "ipv6_dst" => (Field::Ipv6Dst, None),
        "arp_op" => (Field::ArpOp, None),
        "arp_spa" => (Field::ArpSpa, None),
        "arp_tpa" => (Field::ArpTpa, None),
        "tp_src" => (Field::L4Src, None),
        "tp_dst" => (Field::L4Dst, None),
        n => {
            let p = proto_of_l4_name(n)?;
            let src = n.ends_with("src") || n.ends_with("type");
            (if src { Field::L4Src } else { Field::L4Dst }, Some(p))
        }
    })
}

/// Parses the value of a set-field for `field`.
fn parse_field_value(field: Field, v: &str) -> Option<u128> {
    match field {
        Field::InPort => parse_port(v).map(u128::from),
        Field::EthDst | Field::EthSrc => v.parse::<Mac>().ok().map(|m| m.to_u64().into()),
        Field::Ipv4Src | Field::Ipv4Dst | Field::ArpSpa | Field::ArpTpa => {
            v.parse::<Ipv4Addr>().ok().map(|a| u32::from(a).into())
        }
        Field::Ipv6Src | Field::Ipv6Dst => v.parse::<Ipv6Addr>().ok().map(u128::from),
        f => parse_width(v, f.bits()),
    }
}

fn parse_actions(
    cx: &Ctx<'_>,
    text: &str,
    base: usize,
    m: &FlowMatch,
) -> Result<Vec<Instruction>, ParseError> {
    let list = items(text, base);
    let mut actions = Vec::new();
    let mut goto: Option<u8> = None;
    let mut saw_drop = false;
    let proto = m.exact(Field::IpProto);
    for item in &list {
        if goto.is_some() {
            return Err(cx.err(item, "nothing may follow goto_table"));
        }
        if saw_drop {
            return Err(cx.err(item, "`drop` must be the only action"));
        }
        let key = item.key;
        let lower = key.to_ascii_lowercase();
        let v = item.value;
        let bad = |what: &str| cx.err(item, format!("`{}` is not {what}", v.unwrap_or("")));
        let need_value = || {
            v.filter(|s| !s.is_empty())
                .ok_or_else(|| cx.err(item, format!("`{key}` needs a value")))
        };
        let no_value = || match v {
            Some(_) => Err(cx.err(item, format!("`{key}` takes no value"))),
            None => Ok(()),
        };
        match lower.as_str() {
            "drop" => {
                no_value()?;
                if !actions.is_empty() {
                    return Err(cx.err(item, "`drop` must be the only action"));
                }
                saw_drop = true;
            }
            "output" => {
                let v = need_value()?;
                let p = parse_port(v).ok_or_else(|| bad("a port"))?;
                actions.push(Action::output(p));
            }
            "controller" => {
                let max_len = match v {
                    None => 0xffff,
                    Some(s) => {
                        let n = s
                            .strip_prefix("(max_len=")
                            .and_then(|s| s.strip_suffix(')'))
                            .unwrap_or(s);
                        u16::try_from(parse_uint(n).ok_or_else(|| bad("a max_len"))?)
                            .map_err(|_| bad("a max_len (0-65535)"))?
                    }
                };
                actions.push(Action::Output {
                    port: port::CONTROLLER,
                    max_len,
                });
            }
            "in_port" | "table" | "normal" | "flood" | "all" | "local" if v.is_none() => {
                let p = parse_port(key).ok_or_else(|| bad("a port"))?;
                actions.push(Action::output(p));
            }
            "set_field" => {
                let v = need_value()?;
                let Some((val, name)) = v.split_once("->") else {
                    return Err(cx.err(item, "set_field needs VALUE->FIELD"));
                };
                if val.contains('/') {
                    return Err(cx.err(item, "a masked set_field is not supported"));
                }
                let (field, val) = match name {
                    "nw_tos" => {
                        let tos = parse_width(val, 8).ok_or_else(|| bad("a TOS byte"))?;
                        (Field::IpDscp, tos >> 2)
                    }
                    "eth_type" | "dl_type" | "nw_proto" | "ip_proto" => {
                        return Err(cx.err(item, format!("{name} is read-only")));
                    }
                    _ => {
                        let Some((field, needs)) = set_field_target(name) else {
                            return Err(cx.err(
                                item,
                                format!("unknown or unsupported set_field target `{name}`"),
                            ));
                        };
                        if let Some(p) = needs {
                            if proto != Some(u128::from(p)) {
                                return Err(cx.err(
                                    item,
                                    format!("set_field to {name} needs a match on nw_proto={p}"),
                                ));
                            }
                        }
                        let value = parse_field_value(field, val).ok_or_else(|| {
                            cx.err(item, format!("`{val}` is not a value for {name}"))
                        })?;
                        (field, value)
                    }
                };
                actions.push(Action::set(field, val));
            }
            "mod_dl_src" | "mod_dl_dst" | "mod_nw_src" | "mod_nw_dst" | "mod_tp_src"
            | "mod_tp_dst" | "set_vlan_vid" | "set_vlan_pcp" => {
                let v = need_value()?;
                let field = match lower.as_str() {
                    "mod_dl_src" => Field::EthSrc,
                    "mod_dl_dst" => Field::EthDst,
                    "mod_nw_src" => Field::Ipv4Src,
                    "mod_nw_dst" => Field::Ipv4Dst,
                    "mod_tp_src" => Field::L4Src,
                    "mod_tp_dst" => Field::L4Dst,
                    "set_vlan_vid" => Field::VlanVid,
                    _ => Field::VlanPcp,
                };
                let mut value = match field {
                    Field::VlanVid => parse_width(v, 12),
                    _ => parse_field_value(field, v),
                }
                .ok_or_else(|| bad("a value for this action"))?;
                if field == Field::VlanVid {
                    value |= u128::from(VLAN_PRESENT);
                }
                actions.push(Action::set(field, value));
            }
            "mod_nw_tos" => {
                let tos = parse_width(need_value()?, 8).ok_or_else(|| bad("a TOS byte"))?;
                actions.push(Action::set(Field::IpDscp, tos >> 2));
            }
            "push_vlan" => {
                let tpid = parse_width(need_value()?, 16).ok_or_else(|| bad("a TPID"))?;
                let tpid = u16_of(tpid);
                if tpid != ethertype::VLAN && tpid != ethertype::QINQ {
                    return Err(cx.err(item, "push_vlan takes 0x8100 or 0x88a8"));
                }
                actions.push(Action::PushVlan(tpid));
            }
            "pop_vlan" | "strip_vlan" => {
                no_value()?;
                actions.push(Action::PopVlan);
            }
            "dec_ttl" => {
                if v.is_some() {
                    return Err(cx.err(item, "dec_ttl with controller ids is not supported"));
                }
                actions.push(Action::DecNwTtl);
            }
            "group" => {
                let id = u32::try_from(parse_uint(need_value()?).ok_or_else(|| bad("a group"))?)
                    .ok()
                    .filter(|id| *id <= crate::flow::GROUP_MAX)
                    .ok_or_else(|| bad("a group number (0-4294967040)"))?;
                actions.push(Action::Group(id));
            }
            "goto_table" => {
                let t = u8::try_from(parse_uint(need_value()?).ok_or_else(|| bad("a table"))?)
                    .map_err(|_| bad("a table number (0-254)"))?;
                goto = Some(t);
            }
            "mod_vlan_vid" | "mod_vlan_pcp" => {
                return Err(cx.err(
                    item,
                    format!(
                        "`{key}` (push if untagged) is not supported; use push_vlan and set_field"
                    ),
                ));
            }
            "write_actions" | "clear_actions" | "write_metadata" | "meter" => {
                return Err(cx.err(
                    item,
                    format!("unsupported instruction `{key}` (scd supports apply-actions and goto_table)"),
                ));
            }
            _ => {
                if v.is_none() && parse_uint(key).is_some() {
                    let p = parse_port(key).ok_or_else(|| bad("a port"))?;
                    actions.push(Action::output(p));
                } else {
                    return Err(cx.err(
                        item,
                        format!(
                            "unsupported action `{key}` (supported: output, CONTROLLER, set_field, \
                             mod_dl_*/mod_nw_*/mod_tp_*, push_vlan, pop_vlan, dec_ttl, group, goto_table, drop)"
                        ),
                    ));
                }
            }
        }
    }
    let mut out = Vec::new();
    if !actions.is_empty() {
        out.push(Instruction::ApplyActions(actions));
    }
    if let Some(t) = goto {
        if t == 255 {
            return Err(ParseError {
                line: cx.line_no,
                column: 1,
                token: "goto_table:255".into(),
                message: "goto_table needs a table number 0-254".into(),
            });
        }
        out.push(Instruction::GotoTable(t));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(m: FlowMatch, actions: Vec<Action>) -> FlowSpec {
        FlowSpec::new(0, 100, m, actions)
    }

    #[test]
    fn formats_the_brief_example() {
        let m = FlowMatch::any()
            .with(Field::EthType, 0x800)
            .with(Field::Ipv4Dst, 0x6440_0002);
        let s = spec(
            m,
            vec![
                Action::set(Field::EthDst, 0x0200_0000_0002),
                Action::output(2),
            ],
        );
        let stats = FlowStats {
            duration_sec: 1,
            duration_nsec: 234_000_000,
            packet_count: 3,
            byte_count: 294,
            idle_age: None,
        };
        assert_eq!(
            format_flow_stats(&s, &stats),
            "cookie=0x0, duration=1.234s, table=0, n_packets=3, n_bytes=294, \
             priority=100,ip,nw_dst=100.64.0.2 actions=set_field:02:00:00:00:00:02->eth_dst,output:2"
        );
        assert_eq!(
            format_flow(&s),
            "priority=100,ip,nw_dst=100.64.0.2 actions=set_field:02:00:00:00:00:02->eth_dst,output:2"
        );
    }

    #[test]
    fn durations_print_like_ovs() {
        let mut s = String::new();
        write_duration(&mut s, 5, 0);
        write_duration(&mut s, 5, 120_000_000);
        write_duration(&mut s, 5, 123_456_700);
        assert_eq!(s, "5s5.120s5.1234567s");
    }

    #[test]
    fn parses_the_brief_example() {
        let f = parse_flow(
            "table=0,priority=100,ip,nw_dst=100.64.0.0/10,actions=mod_dl_dst:02:00:00:00:00:02,output:3",
        )
        .unwrap();
        assert_eq!(f.priority, 100);
        assert_eq!(
            f.matcher,
            FlowMatch::any().with(Field::EthType, 0x800).with_prefix32(
                Field::Ipv4Dst,
                0x6440_0000,
                10
            )
        );
        assert_eq!(
            f.instructions,
            vec![Instruction::ApplyActions(vec![
                Action::set(Field::EthDst, 0x0200_0000_0002),
                Action::output(3)
            ])]
        );
    }

    #[test]
    fn errors_name_line_column_and_token() {
        let e = parse_flows("# comment\n\npriority=1,ip,nw_dst=1.2.3,actions=drop\n").unwrap_err();
        assert_eq!((e.line, e.column), (3, 15));
        assert_eq!(e.token, "nw_dst=1.2.3");
        let e = parse_flow("priority=1,actions=output:1,resubmit(,3)").unwrap_err();
        assert_eq!(e.token, "resubmit(,3)");
        assert!(e.message.contains("unsupported action"), "{e}");
        let e = parse_flow("tcp_dst=80,actions=drop").unwrap_err();
        assert_eq!(e.token, "tcp_dst=80");
        assert!(e.message.contains("prerequisite"), "{e}");
        let e = parse_flow("udp,tcp_dst=80,actions=drop").unwrap_err();
        assert!(e.message.contains("nw_proto=6"), "{e}");
        let e = parse_flow("ip,arp,actions=drop").unwrap_err();
        assert_eq!(e.token, "arp");
        let e = parse_flow("ip").unwrap_err();
        assert!(e.message.contains("missing `actions=`"));
        let e = parse_flow("ip,actions=output:1,goto_table:1,output:2").unwrap_err();
        assert_eq!(e.token, "output:2");
        let e = parse_flow("ip,actions=write_actions(output:1)").unwrap_err();
        assert!(e.message.contains("unsupported instruction"), "{e}");
        let e = parse_flow("ip,actions=set_field:1->eth_type").unwrap_err();
        assert!(e.message.contains("read-only"), "{e}");
    }

    #[test]
    fn defaults_and_keywords() {
        let f = parse_flow(
            "cookie=0x12 idle_timeout=10, hard_timeout=20 send_flow_rem check_overlap \
             in_port=LOCAL,dl_vlan=5,dl_vlan_pcp=3 actions=pop_vlan,IN_PORT,CONTROLLER:128,dec_ttl,goto_table:2",
        )
        .unwrap();
        assert_eq!(f.priority, DEFAULT_PRIORITY);
        assert_eq!(f.cookie, 0x12);
        assert_eq!((f.idle_timeout, f.hard_timeout), (10, 20));
        assert_eq!(f.flags, flags::SEND_FLOW_REM | flags::CHECK_OVERLAP);
        assert_eq!(f.matcher.exact(Field::VlanVid), Some(0x1005));
        assert_eq!(f.matcher.exact(Field::VlanPcp), Some(3));
        assert_eq!(f.matcher.exact(Field::InPort), Some(port::LOCAL.into()));
        assert_eq!(
            format_flow(&f),
            "cookie=0x12, idle_timeout=10, hard_timeout=20, send_flow_rem check_overlap \
             in_port=LOCAL,dl_vlan=5,dl_vlan_pcp=3 actions=pop_vlan,IN_PORT,CONTROLLER:128,dec_ttl,goto_table:2"
        );
        let f = parse_flow("priority=0 actions=drop").unwrap();
        assert!(f.instructions.is_empty());
        assert_eq!(format_flow(&f), "priority=0 actions=drop");
    }
}
