//! Parsing the action list of a flow line (`actions=…`) into instructions,
//! checked against what the match guarantees (set-field prerequisites).

use super::lex::{items, Ctx, ParseError};
use super::values::{parse_port, parse_uint, parse_width, proto_of_l4_name, u16_of};
use crate::flow::{ethertype, port, Action, Field, FlowMatch, Instruction, Mac, VLAN_PRESENT};
use std::net::{Ipv4Addr, Ipv6Addr};

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

pub(super) fn parse_actions(
    cx: &Ctx<'_>,
    text: &str,
    base: usize,
    m: &FlowMatch,
) -> Result<Vec<Instruction>, ParseError> {
    let list = items(text, base);
    let mut actions = Vec::new();
    let mut goto: Option<u8> = None;
    let mut later: Vec<Instruction> = Vec::new();
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
            "clear_actions" => {
                no_value()?;
                if later.contains(&Instruction::ClearActions) {
                    return Err(cx.err(item, "clear_actions given twice"));
                }
                later.push(Instruction::ClearActions);
            }
            "write_actions" => {
                let inner = need_value()?
                    .strip_prefix('(')
                    .and_then(|s| s.strip_suffix(')'))
                    .ok_or_else(|| cx.err(item, "write_actions needs (ACTIONS)"))?;
                if later
                    .iter()
                    .any(|i| matches!(i, Instruction::WriteActions(_)))
                {
                    return Err(cx.err(item, "write_actions given twice"));
                }
                let at = item.at + key.len() + 1;
                let written = match parse_actions(cx, inner, at, m)?.as_slice() {
                    [] => Vec::new(),
                    [Instruction::ApplyActions(a)] => a.clone(),
                    _ => return Err(cx.err(item, "write_actions holds actions, not instructions")),
                };
                later.push(Instruction::WriteActions(written));
            }
            "write_metadata" => {
                let (value, mask) = super::values::parse_int_masked(need_value()?, 64)
                    .ok_or_else(|| bad("a 64-bit value[/mask]"))?;
                if later
                    .iter()
                    .any(|i| matches!(i, Instruction::WriteMetadata { .. }))
                {
                    return Err(cx.err(item, "write_metadata given twice"));
                }
                #[allow(clippy::cast_possible_truncation)] // parsed as 64 bits
                later.push(Instruction::WriteMetadata {
                    value: value as u64,
                    mask: mask as u64,
                });
            }
            "meter" => {
                return Err(cx.err(item, "meters are not supported"));
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
    out.extend(later);
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
