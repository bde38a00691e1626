//! The reference evaluator: NetKAT's packet semantics, run directly on the core
//! calculus (one packet in, the set of packets out), as Frenetic's `Semantics.ml`.
//!
//! This module owns the definition every compiler is checked against, so it is
//! written for obviousness, not speed: it interprets [`CPol`] literally (star as a
//! fixpoint over sets of packets, links as `filter; switch := ; port :=`). `dup`
//! only extends a packet's history, which this packet-level evaluator does not
//! record, so it acts as `id`. It never builds FDDs or flow tables.

use super::ir::{alias_test, CInit, CPol, CPred, HField, Pattern, Program};
use super::syntax::HeaderField;
use openflow::flow::{FlowKey, Mac};
use std::collections::HashSet;

/// A packet at a location: the switch, the port (physical, or a pipe/query
/// location), and its headers. `headers.in_port` is not used.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Packet {
    /// Datapath id.
    pub switch: u64,
    /// Port (see [`super::ir::LOCATION_BASE`] for pipes and queries).
    pub port: u64,
    /// Header fields.
    pub headers: FlowKey,
}

impl Packet {
    /// The value of a header field (meta fields are not stored on the packet).
    pub fn get(&self, f: HField) -> u64 {
        let h = &self.headers;
        match f {
            HField::Switch => self.switch,
            HField::Port => self.port,
            HField::VlanVid => h.vlan_vid.into(),
            HField::VlanPcp => h.vlan_pcp.into(),
            HField::EthType => h.eth_type.into(),
            HField::EthSrc => h.eth_src.to_u64(),
            HField::EthDst => h.eth_dst.to_u64(),
            HField::IpProto => h.ip_proto.into(),
            HField::Ip4Src => h.ipv4_src.into(),
            HField::Ip4Dst => h.ipv4_dst.into(),
            HField::L4Src => h.l4_src.into(),
            HField::L4Dst => h.l4_dst.into(),
            HField::Ip6SrcHi => crate::ir::ip6::bits_at(h.ipv6_src, 64),
            HField::Ip6SrcLo => crate::ir::ip6::bits_at(h.ipv6_src, 0),
            HField::Ip6DstHi => crate::ir::ip6::bits_at(h.ipv6_dst, 64),
            HField::Ip6DstLo => crate::ir::ip6::bits_at(h.ipv6_dst, 0),
            HField::Meta(_) => 0,
        }
    }

    /// Sets a header field (truncated to its width).
    pub fn set(&mut self, f: HField, v: u64) {
        let h = &mut self.headers;
        match f {
            HField::Switch => self.switch = v,
            HField::Port => self.port = v,
            HField::VlanVid => h.vlan_vid = u16::try_from(v & 0x1fff).unwrap_or(0),
            HField::VlanPcp => h.vlan_pcp = u8::try_from(v & 7).unwrap_or(0),
            HField::EthType => h.eth_type = u16::try_from(v & 0xffff).unwrap_or(0),
            HField::EthSrc => h.eth_src = Mac::from_u64(v),
            HField::EthDst => h.eth_dst = Mac::from_u64(v),
            HField::IpProto => h.ip_proto = u8::try_from(v & 0xff).unwrap_or(0),
            HField::Ip4Src => h.ipv4_src = u32::try_from(v & 0xffff_ffff).unwrap_or(0),
            HField::Ip4Dst => h.ipv4_dst = u32::try_from(v & 0xffff_ffff).unwrap_or(0),
            HField::L4Src => h.l4_src = u16::try_from(v & 0xffff).unwrap_or(0),
            HField::L4Dst => h.l4_dst = u16::try_from(v & 0xffff).unwrap_or(0),
            HField::Ip6SrcHi | HField::Ip6SrcLo => h.ipv6_src = with_half(h.ipv6_src, f, v),
            HField::Ip6DstHi | HField::Ip6DstLo => h.ipv6_dst = with_half(h.ipv6_dst, f, v),
            HField::Meta(_) => {}
        }
    }
}

/// `address` with its half `f` replaced by `v`.
fn with_half(address: u128, f: HField, v: u64) -> u128 {
    let other = crate::ir::ip6::bits_at(
        address,
        if matches!(f, HField::Ip6SrcHi | HField::Ip6DstHi) {
            0
        } else {
            64
        },
    );
    crate::ir::ip6::join(f, v, other)
}

/// Why evaluation stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// A star produced more packets than the evaluator is willing to hold.
    #[error("evaluation produced more than {0} packets")]
    TooMany(usize),
}

/// Most packets a star may reach before evaluation gives up.
pub const STATE_LIMIT: usize = 100_000;

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum MetaVal {
    Const(u64),
    Alias(HeaderField, Packet),
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct State {
    pkt: Packet,
    metas: Vec<Option<MetaVal>>,
}

/// Evaluates a program on one packet: the set of packets it produces.
pub fn eval(prog: &Program, pkt: Packet) -> Result<HashSet<Packet>, EvalError> {
    let st = State {
        pkt,
        metas: vec![None; usize::from(prog.metas)],
    };
    Ok(eval_pol(&prog.pol, st)?
        .into_iter()
        .map(|s| s.pkt)
        .collect())
}

/// Evaluates a predicate on a packet with no meta fields in scope.
pub fn eval_pred(a: &CPred, pkt: &Packet) -> bool {
    test_pred(
        a,
        &State {
            pkt: *pkt,
            metas: Vec::new(),
        },
    )
}

fn test_pattern(p: &Pattern, st: &State) -> bool {
    match p.field {
        HField::Meta(k) => match st.metas.get(usize::from(k)).cloned().flatten() {
            Some(MetaVal::Const(c)) => p.holds(c),
            Some(MetaVal::Alias(field, snap)) => eval_pred(&alias_test(&field, p.value), &snap),
            None => false,
        },
        f => p.holds(st.pkt.get(f)),
    }
}

fn test_pred(a: &CPred, st: &State) -> bool {
    crate::stack::deep(|| match a {
        CPred::True => true,
        CPred::False => false,
        CPred::Test(p) => test_pattern(p, st),
        CPred::Not(x) => !test_pred(x, st),
        CPred::And(x, y) => test_pred(x, st) && test_pred(y, st),
        CPred::Or(x, y) => test_pred(x, st) || test_pred(y, st),
    })
}

fn eval_pol(p: &CPol, st: State) -> Result<HashSet<State>, EvalError> {
    crate::stack::deep(|| {
        let mut out = HashSet::new();
        match p {
            CPol::Filter(a) => {
                if test_pred(a, &st) {
                    out.insert(st);
                }
            }
            CPol::Mod(f, v) => {
                let mut st = st;
                match f {
                    HField::Meta(k) => {
                        if let Some(slot) = st.metas.get_mut(usize::from(*k)) {
                            *slot = Some(MetaVal::Const(*v));
                        }
                    }
                    f => st.pkt.set(*f, *v),
                }
                out.insert(st);
            }
            CPol::Union(x, y) => {
                out = eval_pol(x, st.clone())?;
                out.extend(eval_pol(y, st)?);
            }
            CPol::Seq(x, y) => {
                for mid in eval_pol(x, st)? {
                    out.extend(eval_pol(y, mid)?);
                }
            }
            CPol::Star(x) => {
                out.insert(st.clone());
                let mut frontier = vec![st];
                while let Some(s) = frontier.pop() {
                    for next in eval_pol(x, s)? {
                        if !out.contains(&next) {
                            if out.len() >= STATE_LIMIT {
                                return Err(EvalError::TooMany(STATE_LIMIT));
                            }
                            out.insert(next.clone());
                            frontier.push(next);
                        }
                    }
                }
            }
            CPol::Dup => {
                out.insert(st);
            }
            CPol::Link { s1, p1, s2, p2, .. } => {
                if st.pkt.switch == *s1 && st.pkt.port == *p1 {
                    let mut st = st;
                    st.pkt.switch = *s2;
                    st.pkt.port = *p2;
                    out.insert(st);
                }
            }
            CPol::Let { meta, init, body } => {
                let mut st = st;
                let k = usize::from(*meta);
                if k < st.metas.len() {
                    st.metas[k] = Some(match init {
                        CInit::Const(c) => MetaVal::Const(*c),
                        CInit::Alias(f) => MetaVal::Alias(f.clone(), st.pkt),
                    });
                }
                for mut s in eval_pol(body, st)? {
                    if k < s.metas.len() {
                        s.metas[k] = None;
                    }
                    out.insert(s);
                }
            }
        }
        Ok(out)
    })
}
