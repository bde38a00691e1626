//! The match side of the local compiler: an FDD path's tests (or a deny
//! entry's) as one OpenFlow match, with the prerequisites OpenFlow requires
//! (`dl_type` for IP fields, `nw_proto` for ports, a tag for `vlan_pcp`)
//! checked, and the two 64-bit halves of an IPv6 address joined back into one
//! masked field.

use super::LocalError;
use crate::guard::Entry;
use crate::ir::ip6;
use crate::ir::{HField, LOCATION_BASE};
use crate::path::Ctx;
use openflow::flow::{Field, FlowMatch, VLAN_PRESENT};

pub(super) fn is_physical(p: u64) -> bool {
    p < LOCATION_BASE && p <= u64::from(u32::MAX)
}

pub(super) fn field_of(f: HField) -> Option<Field> {
    Some(match f {
        HField::Port => Field::InPort,
        HField::VlanVid => Field::VlanVid,
        HField::VlanPcp => Field::VlanPcp,
        HField::EthType => Field::EthType,
        HField::EthSrc => Field::EthSrc,
        HField::EthDst => Field::EthDst,
        HField::IpProto => Field::IpProto,
        HField::Ip4Src => Field::Ipv4Src,
        HField::Ip4Dst => Field::Ipv4Dst,
        HField::L4Src => Field::L4Src,
        HField::L4Dst => Field::L4Dst,
        HField::Switch | HField::Meta(_) => return None,
        HField::Ip6SrcHi | HField::Ip6SrcLo | HField::Ip6DstHi | HField::Ip6DstLo => return None,
    })
}

/// The match of a path, with prerequisites checked; `None` when unsatisfiable.
pub(super) fn to_match(ctx: &Ctx) -> Result<Option<FlowMatch>, LocalError> {
    let mut m = FlowMatch::any();
    for p in &ctx.pos {
        if p.field == HField::Port && !is_physical(p.value) {
            return Ok(None);
        }
        if let Some((f, shift)) = ip6::half(p.field) {
            // The two halves of one address become one masked match.
            let (v, mask) = m.get(f).unwrap_or((0, 0));
            let (value, bits) = (u128::from(p.value), u128::from(p.mask()));
            m.set(f, v | value << shift, mask | bits << shift);
            continue;
        }
        let Some(f) = field_of(p.field) else {
            if matches!(p.field, HField::Meta(_)) {
                return Err(LocalError::Unrepresentable(
                    "a meta field is tested outside its scope".into(),
                ));
            }
            continue;
        };
        m.set(f, u128::from(p.value), u128::from(p.mask()));
    }
    let eth = m.exact(Field::EthType);
    let has = |f: Field| m.get(f).is_some();
    if (has(Field::Ipv4Src) || has(Field::Ipv4Dst) || has(Field::IpProto))
        && eth != Some(u128::from(openflow::flow::ethertype::IPV4))
    {
        return Err(LocalError::Unrepresentable(
            "an IPv4 field is tested where the EtherType is not known to be 0x800 (does the policy assign ethTyp before testing ip4Src/ip4Dst/ipProto?)".into(),
        ));
    }
    if (has(Field::Ipv6Src) || has(Field::Ipv6Dst))
        && eth != Some(u128::from(openflow::flow::ethertype::IPV6))
    {
        return Err(LocalError::Unrepresentable(
            "an IPv6 field is tested where the EtherType is not known to be 0x86dd".into(),
        ));
    }
    if (has(Field::L4Src) || has(Field::L4Dst)) && m.exact(Field::IpProto).is_none() {
        return Err(LocalError::Unrepresentable(
            "a transport port is tested where the IP protocol is not known (does the policy assign ipProto before testing a port?)".into(),
        ));
    }
    Ok(Some(m))
}

/// The match of a deny entry on `switch`; `None` when the entry names another
/// switch or no packet can match it.
pub(super) fn entry_match(entry: &Entry, switch: u64) -> Result<Option<FlowMatch>, LocalError> {
    let mut ctx = Ctx::default();
    for t in entry {
        if t.field == HField::Switch {
            if !t.holds(switch) {
                return Ok(None);
            }
            continue;
        }
        ctx.pos.push(*t);
    }
    // Entries never test the PCP without the tag (the front end guards it with a
    // negative test, which keeps such a filter out of the deny entries), so the
    // match needs no `complete_pcp`.
    debug_assert!(ctx.pos.iter().all(|t| t.field != HField::VlanPcp));
    to_match(&ctx)
}

/// `vlan_pcp` needs a tag in the match: add it, or split when PCP 0 also
/// describes untagged packets.
pub(super) fn complete_pcp(m: FlowMatch) -> [Option<FlowMatch>; 2] {
    let Some((pcp, _)) = m.get(Field::VlanPcp) else {
        return [Some(m), None];
    };
    match m.get(Field::VlanVid) {
        Some((v, mask)) if v & mask & u128::from(VLAN_PRESENT) != 0 => [Some(m), None],
        Some((0, _)) => {
            // Untagged: the PCP reads as 0.
            if pcp == 0 {
                let mut u = m;
                u.clear(Field::VlanPcp);
                [Some(u), None]
            } else {
                [None, None]
            }
        }
        _ => {
            let tagged = m.with_masked(
                Field::VlanVid,
                u128::from(VLAN_PRESENT),
                u128::from(VLAN_PRESENT),
            );
            if pcp == 0 {
                let mut u = m.with(Field::VlanVid, 0);
                u.clear(Field::VlanPcp);
                [Some(u), Some(tagged)]
            } else {
                [Some(tagged), None]
            }
        }
    }
}
