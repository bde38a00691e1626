//! OXM (OpenFlow Extensible Match) TLVs and the `ofp_match` structure.
//!
//! This module owns the mapping between [`FlowMatch`] fields and OpenFlow 1.3's
//! `OFPXMC_OPENFLOW_BASIC` fields, both ways: the transport fields `l4_src`/`l4_dst`
//! become `tcp_*`, `udp_*`, `icmpv4_*` or `icmpv6_*` according to the match's
//! `ip_proto` (TCP when the protocol is none of these); `vlan_vid` keeps
//! `OFPVID_PRESENT`. Strict decoding (flow-mods, stats requests) rejects unknown
//! fields, duplicates, bad lengths, values outside their mask and unmet
//! prerequisites with the matching bad-match code; lenient decoding (messages a switch
//! sends: packet-in, flow-removed, flow stats) skips fields it has no slot for. It
//! never panics on any input and never looks beyond the match's declared length.

use super::buf::{Put, Reader};
use super::error::{BadMatch, ErrorCode};
use super::Fail;
use crate::flow::{ethertype, ipproto, Field, FlowMatch};

/// `OFPXMC_OPENFLOW_BASIC`.
const OXM_CLASS_BASIC: u16 = 0x8000;
/// `OFPMT_OXM`.
const OFPMT_OXM: u16 = 1;

/// Which OXM fields carry the transport slots.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum L4Kind {
    Tcp,
    Udp,
    Icmp4,
    Icmp6,
}

impl L4Kind {
    /// The flavour a match's `ip_proto` implies (TCP when it implies none).
    pub(crate) fn of(m: &FlowMatch) -> L4Kind {
        match m.exact(Field::IpProto).and_then(|p| u8::try_from(p).ok()) {
            Some(ipproto::UDP) => L4Kind::Udp,
            Some(ipproto::ICMP) => L4Kind::Icmp4,
            Some(ipproto::ICMPV6) => L4Kind::Icmp6,
            _ => L4Kind::Tcp,
        }
    }
}

/// `(oxm_field, FlowMatch field, value bytes, transport flavour)` for every field we hold.
const FIELDS: [(u8, Field, usize, Option<L4Kind>); 24] = [
    (0, Field::InPort, 4, None),
    (2, Field::Metadata, 8, None),
    (3, Field::EthDst, 6, None),
    (4, Field::EthSrc, 6, None),
    (5, Field::EthType, 2, None),
    (6, Field::VlanVid, 2, None),
    (7, Field::VlanPcp, 1, None),
    (8, Field::IpDscp, 1, None),
    (10, Field::IpProto, 1, None),
    (11, Field::Ipv4Src, 4, None),
    (12, Field::Ipv4Dst, 4, None),
    (13, Field::L4Src, 2, Some(L4Kind::Tcp)),
    (14, Field::L4Dst, 2, Some(L4Kind::Tcp)),
    (15, Field::L4Src, 2, Some(L4Kind::Udp)),
    (16, Field::L4Dst, 2, Some(L4Kind::Udp)),
    (19, Field::L4Src, 1, Some(L4Kind::Icmp4)),
    (20, Field::L4Dst, 1, Some(L4Kind::Icmp4)),
    (21, Field::ArpOp, 2, None),
    (22, Field::ArpSpa, 4, None),
    (23, Field::ArpTpa, 4, None),
    (26, Field::Ipv6Src, 16, None),
    (27, Field::Ipv6Dst, 16, None),
    (29, Field::L4Src, 1, Some(L4Kind::Icmp6)),
    (30, Field::L4Dst, 1, Some(L4Kind::Icmp6)),
];

fn lookup(oxm_field: u8) -> Option<(Field, usize, Option<L4Kind>)> {
    FIELDS
        .iter()
        .find(|e| e.0 == oxm_field)
        .map(|e| (e.1, e.2, e.3))
}

/// The OXM field id and value size for one of our fields.
pub(crate) fn oxm_id(field: Field, l4: L4Kind) -> (u8, usize) {
    FIELDS
        .iter()
        .find(|e| e.1 == field && e.3.is_none_or(|k| k == l4))
        .map_or((0, 4), |e| (e.0, e.2))
}

/// Appends one OXM TLV.
pub(crate) fn put_oxm(out: &mut Vec<u8>, id: u8, width: usize, value: u128, mask: Option<u128>) {
    let len = if mask.is_some() { 2 * width } else { width };
    let header = (u32::from(OXM_CLASS_BASIC) << 16)
        | (u32::from(id) << 9)
        | (u32::from(mask.is_some()) << 8)
        | u32::try_from(len).unwrap_or(0);
    out.put_u32(header);
    let skip = 16usize.saturating_sub(width);
    out.extend_from_slice(value.to_be_bytes().get(skip..).unwrap_or(&[]));
    if let Some(m) = mask {
        out.extend_from_slice(m.to_be_bytes().get(skip..).unwrap_or(&[]));
    }
}

/// Appends an `ofp_match` (type OXM, padded to 8 bytes).
pub(crate) fn encode_match(out: &mut Vec<u8>, m: &FlowMatch) {
    let start = out.len();
    out.put_u16(OFPMT_OXM);
    out.put_u16(0);
    let l4 = L4Kind::of(m);
    for field in m.fields() {
        let Some((value, mask)) = m.get(field) else {
            continue;
        };
        let (id, width) = oxm_id(field, l4);
        let (value, mask) = if width == 1 && matches!(field, Field::L4Src | Field::L4Dst) {
            // ICMP type/code are one byte; a mask covering that byte is exact.
            let exact = mask & 0xff == 0xff;
            (value & 0xff, (!exact).then_some(mask & 0xff))
        } else {
            (value, (mask != field.full_mask()).then_some(mask))
        };
        put_oxm(out, id, width, value, mask);
    }
    let len = out.len() - start;
    out.patch_u16(start + 2, len);
    out.pad8(start);
}

/// One OXM TLV as read: the field, value, mask and transport flavour. `None` for a
/// field we do not hold (only returned when not strict).
pub(crate) type Oxm = Option<(Field, u128, Option<u128>, Option<L4Kind>)>;

fn bad(code: BadMatch, why: impl Into<String>) -> Fail {
    Fail::new(ErrorCode::BadMatch(code), why)
}

/// Reads one OXM TLV.
pub(crate) fn read_oxm(r: &mut Reader<'_>, strict: bool) -> Result<Oxm, Fail> {
    let header = r
        .u32()
        .map_err(|_| bad(BadMatch::BadLen, "truncated OXM header"))?;
    let class = u16::try_from(header >> 16).unwrap_or(0);
    let id = u8::try_from((header >> 9) & 0x7f).unwrap_or(0);
    let has_mask = header & 0x100 != 0;
    let len = usize::try_from(header & 0xff).unwrap_or(0);
    let payload = r
        .bytes(len)
        .map_err(|_| bad(BadMatch::BadLen, "OXM runs past the match"))?;
    let known = if class == OXM_CLASS_BASIC {
        lookup(id)
    } else {
        None
    };
    let Some((field, width, l4)) = known else {
        return if strict {
            Err(bad(
                BadMatch::BadField,
                format!("unsupported OXM class {class:#x} field {id}"),
            ))
        } else {
            Ok(None)
        };
    };
    let want = if has_mask { 2 * width } else { width };
    if len != want {
        return Err(bad(
            BadMatch::BadLen,
            format!("OXM field {id} has length {len}, expected {want}"),
        ));
    }
    let mut pr = Reader::new(payload);
    let mut get = || -> u128 {
        pr.bytes(width)
            .map(|b| b.iter().fold(0u128, |acc, x| (acc << 8) | u128::from(*x)))
            .unwrap_or(0)
    };
    let value = get();
    let mask = if has_mask { Some(get()) } else { None };
    let icmp = width == 1 && l4.is_some();
    let full = if icmp { 0xff } else { field.full_mask() };
    if value & !full != 0 {
        return Err(bad(
            BadMatch::BadValue,
            format!("{field}: value {value:#x} does not fit"),
        ));
    }
    Ok(Some((field, value, mask.map(|m| m & full), l4)))
}

/// Reads an `ofp_match` and the padding after it.
pub(crate) fn decode_match(r: &mut Reader<'_>, strict: bool) -> Result<FlowMatch, Fail> {
    let typ = r
        .u16()
        .map_err(|_| bad(BadMatch::BadLen, "truncated match"))?;
    let len = usize::from(
        r.u16()
            .map_err(|_| bad(BadMatch::BadLen, "truncated match"))?,
    );
    if typ != OFPMT_OXM {
        return Err(bad(
            BadMatch::BadType,
            format!("match type {typ} (only OXM is supported)"),
        ));
    }
    if len < 4 {
        return Err(bad(BadMatch::BadLen, format!("match length {len}")));
    }
    let body = r
        .bytes(len - 4)
        .map_err(|_| bad(BadMatch::BadLen, "match runs past the message"))?;
    r.skip((8 - len % 8) % 8)
        .map_err(|_| bad(BadMatch::BadLen, "match padding runs past the message"))?;
    let mut br = Reader::new(body);
    let mut m = FlowMatch::any();
    let mut seen: Vec<Field> = Vec::new();
    let mut flavours: Vec<L4Kind> = Vec::new();
    while !br.is_empty() {
        let Some((field, value, mask, l4)) = read_oxm(&mut br, strict)? else {
            continue;
        };
        if seen.contains(&field) {
            if strict {
                return Err(bad(BadMatch::DupField, format!("{field} given twice")));
            }
            continue;
        }
        seen.push(field);
        // An ICMP mask covering its one byte is exact.
        let mask = match (mask, l4) {
            (Some(0xff), Some(L4Kind::Icmp4 | L4Kind::Icmp6)) | (None, _) => field.full_mask(),
            (Some(mk), _) => mk,
        };
        if strict && value & !mask != 0 {
            return Err(bad(
                BadMatch::BadWildcards,
                format!("{field}: value has bits outside its mask"),
            ));
        }
        if let Some(k) = l4 {
            flavours.push(k);
        }
        m.set(field, value, mask);
    }
    if strict {
        check_flavours(&m, &flavours)?;
        m.check_prerequisites()
            .map_err(|e| bad(BadMatch::BadPrereq, e.to_string()))?;
    }
    Ok(m)
}

/// The protocol-specific transport fields need their own protocol (7.2.3.6).
fn check_flavours(m: &FlowMatch, flavours: &[L4Kind]) -> Result<(), Fail> {
    let et = m.exact(Field::EthType);
    let proto = m.exact(Field::IpProto);
    let is = |t: u16| et == Some(u128::from(t));
    let ip = is(ethertype::IPV4) || is(ethertype::IPV6);
    for k in flavours {
        let ok = match k {
            L4Kind::Tcp => ip && proto == Some(u128::from(ipproto::TCP)),
            L4Kind::Udp => ip && proto == Some(u128::from(ipproto::UDP)),
            L4Kind::Icmp4 => is(ethertype::IPV4) && proto == Some(u128::from(ipproto::ICMP)),
            L4Kind::Icmp6 => is(ethertype::IPV6) && proto == Some(u128::from(ipproto::ICMPV6)),
        };
        if !ok {
            return Err(bad(
                BadMatch::BadPrereq,
                format!("{k:?} transport field without its eth_type/ip_proto"),
            ));
        }
    }
    Ok(())
}
