//! IPv6 addresses in the core calculus (extension): `ip6Src`/`ip6Dst` tests,
//! prefixes and assignments, and VM names that stand for both address families.
//!
//! The FDD's values are `u64`, so each 128-bit address field is two core fields,
//! its high and its low 64 bits ([`HField::Ip6SrcHi`] and [`HField::Ip6SrcLo`],
//! next to each other in the FDD order): a /48 tests the high half on 48 bits, a
//! /128 both halves exactly, a /80 the high half exactly and the low one on 16
//! bits. The table generator (`crate::local`) joins the halves back into one
//! OpenFlow `ipv6_src`/`ipv6_dst` match with its mask, and into one `set_field`.
//! As for IPv4, a test carries its prerequisite (`ethTyp = 0x86dd`) and an
//! assignment changes only IPv6 packets.
//!
//! A name (`vm:web1`) in a test of an address field of either family means the
//! VM's addresses in both: `ip4Src = vm:web1` is `ip4Src = 100.64.1.1 or ip6Src
//! = fd00::…`, so a rule written for one family keeps holding for the VM's
//! IPv6 traffic. In an assignment a name means the one address of the field's
//! family (the primary IPv6 address). This module never parses text and never
//! builds diagrams.

use crate::diagnostics::Diagnostic;
use crate::ir::{ip4, CPol, CPred, HField, Pattern, Resolver};
use crate::syntax::{HeaderField, HeaderVal, Value};
use openflow::flow::{ethertype, Field};

/// `ethTyp = 0x86dd`, the prerequisite of every IPv6 field.
pub(crate) fn ethertype_test() -> CPred {
    CPred::test(HField::EthType, u64::from(ethertype::IPV6))
}

/// The OpenFlow field a half belongs to, and how far its bits are shifted
/// within it; `None` for a field that is not an IPv6 half.
pub(crate) fn half(f: HField) -> Option<(Field, u32)> {
    Some(match f {
        HField::Ip6SrcHi => (Field::Ipv6Src, 64),
        HField::Ip6SrcLo => (Field::Ipv6Src, 0),
        HField::Ip6DstHi => (Field::Ipv6Dst, 64),
        HField::Ip6DstLo => (Field::Ipv6Dst, 0),
        _ => return None,
    })
}

/// The other half of the same address field.
pub(crate) fn other_half(f: HField) -> HField {
    match f {
        HField::Ip6SrcHi => HField::Ip6SrcLo,
        HField::Ip6SrcLo => HField::Ip6SrcHi,
        HField::Ip6DstHi => HField::Ip6DstLo,
        HField::Ip6DstLo => HField::Ip6DstHi,
        other => other,
    }
}

/// The whole address whose half `f` is `v` and whose other half is `other`.
pub(crate) fn join(f: HField, v: u64, other: u64) -> u128 {
    let (v, other) = (u128::from(v), u128::from(other));
    match half(f) {
        Some((_, 64)) => (v << 64) | other,
        _ => (other << 64) | v,
    }
}

/// Bits `shift..shift + 64` of `v`.
pub(crate) fn bits_at(v: u128, shift: u32) -> u64 {
    u64::try_from((v >> shift) & u128::from(u64::MAX)).unwrap_or(0)
}

/// The high and low halves of a source or destination address.
fn halves(src: bool) -> (HField, HField) {
    if src {
        (HField::Ip6SrcHi, HField::Ip6SrcLo)
    } else {
        (HField::Ip6DstHi, HField::Ip6DstLo)
    }
}

/// `ip6Src = addr/len` (or `ip6Dst`) in the core calculus, prerequisite included.
pub fn prefix_test(src: bool, addr: u128, len: u8) -> CPred {
    let (hi, lo) = halves(src);
    let len = len.min(128);
    let high = CPred::Test(Pattern::prefix(hi, bits_at(addr, 64), len.min(64)));
    let address = if len > 64 {
        let low = CPred::Test(Pattern::prefix(lo, bits_at(addr, 0), len - 64));
        CPred::and(high, low)
    } else {
        high
    };
    CPred::and(ethertype_test(), address)
}

/// `ip6Src := addr` (or `ip6Dst`): both halves, on IPv6 packets only.
pub fn assignment(src: bool, addr: u128) -> CPol {
    let (hi, lo) = halves(src);
    CPol::union(
        CPol::seq(
            CPol::filter(ethertype_test()),
            CPol::seq(
                CPol::Mod(hi, bits_at(addr, 64)),
                CPol::Mod(lo, bits_at(addr, 0)),
            ),
        ),
        CPol::filter(CPred::negate(ethertype_test())),
    )
}

fn unknown(hv: &HeaderVal, kind: &str, name: &str, what: &str) -> Diagnostic {
    Diagnostic::error(hv.span, format!("unknown name `{kind}:{name}`"))
        .with_label(what.to_string())
        .with_hint("names are resolved against the controller's inventory of hosts and VMs")
}

/// The core test of `hv` when it is about IPv6 (an `ip6Src`/`ip6Dst` test) or
/// about a named address (both families); `None` for any other test.
pub(crate) fn lower_test(
    resolver: &dyn Resolver,
    hv: &HeaderVal,
) -> Result<Option<CPred>, Diagnostic> {
    let src = matches!(hv.field, HeaderField::Ip4Src | HeaderField::Ip6Src);
    let address_field = matches!(
        hv.field,
        HeaderField::Ip4Src | HeaderField::Ip4Dst | HeaderField::Ip6Src | HeaderField::Ip6Dst
    );
    match &hv.value {
        Value::Ip6 { addr, prefix } if address_field => Ok(Some(prefix_test(
            src,
            u128::from(*addr),
            prefix.unwrap_or(128),
        ))),
        Value::Named { kind, name } if address_field => {
            let mut families: Vec<CPred> = resolver
                .ipv6(kind, name)
                .into_iter()
                .map(|a| prefix_test(src, a, 128))
                .collect();
            if let Some(v4) = resolver.ipv4(kind, name) {
                let f = if src { HField::Ip4Src } else { HField::Ip4Dst };
                families.insert(0, CPred::and(ip4(), CPred::test(f, u64::from(v4))));
            }
            let any = families.into_iter().reduce(CPred::or);
            any.map(Some)
                .ok_or_else(|| unknown(hv, kind, name, "not in the inventory"))
        }
        _ => Ok(None),
    }
}

/// The core assignment of `hv` when it writes `ip6Src`/`ip6Dst`; `None` for
/// any other assignment.
pub(crate) fn lower_assignment(
    resolver: &dyn Resolver,
    hv: &HeaderVal,
) -> Result<Option<CPol>, Diagnostic> {
    let src = match hv.field {
        HeaderField::Ip6Src => true,
        HeaderField::Ip6Dst => false,
        _ => return Ok(None),
    };
    let addr = match &hv.value {
        Value::Ip6 { addr, .. } => u128::from(*addr),
        Value::Named { kind, name } => {
            let primary = resolver.ipv6(kind, name).into_iter().next();
            primary.ok_or_else(|| unknown(hv, kind, name, "no IPv6 address in the inventory"))?
        }
        _ => return Ok(Some(CPol::Filter(CPred::False))),
    };
    Ok(Some(assignment(src, addr)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_split_and_join_back() {
        let a: u128 = 0x2001_0db8_0000_0001_0000_0000_0000_00ff;
        assert_eq!(bits_at(a, 64), 0x2001_0db8_0000_0001);
        assert_eq!(bits_at(a, 0), 0xff);
        assert_eq!(join(HField::Ip6SrcHi, bits_at(a, 64), bits_at(a, 0)), a);
        assert_eq!(join(HField::Ip6DstLo, bits_at(a, 0), bits_at(a, 64)), a);
    }

    #[test]
    fn a_prefix_tests_the_halves_it_reaches() {
        let a: u128 = 0xfd00_0001_0002_0003_0004_0005_0006_0007;
        let CPred::And(_, hi) = &prefix_test(true, a, 48) else {
            panic!("prerequisite first")
        };
        let want = CPred::Test(Pattern::prefix(HField::Ip6SrcHi, bits_at(a, 64), 48));
        assert_eq!(**hi, want);
        let CPred::And(_, both) = &prefix_test(false, a, 80) else {
            panic!("prerequisite first")
        };
        let CPred::And(hi, lo) = &**both else {
            panic!("two halves")
        };
        assert_eq!(**hi, CPred::test(HField::Ip6DstHi, bits_at(a, 64)));
        let low = CPred::Test(Pattern::prefix(HField::Ip6DstLo, 0x0004 << 48, 16));
        assert_eq!(**lo, low);
    }

    #[test]
    fn addresses_lex_in_every_text_form_and_leave_other_tokens_alone() {
        use crate::lexer::{lex, Kw, Tok};
        let toks = |src: &str| -> Vec<Tok> { lex(src).unwrap().into_iter().map(|t| t.0).collect() };
        let v6 = |s: &str| Tok::Ip6(s.parse::<std::net::Ipv6Addr>().unwrap());
        for text in [
            "2001:db8::1",
            "::1",
            "fd00:5c::",
            "1:2:3:4:5:6:7:8",
            "::ffff:192.0.2.7",
        ] {
            assert_eq!(toks(text), vec![v6(text), Tok::Eof], "{text}");
        }
        assert_eq!(
            toks("ip6Dst=fd00:1::/64"),
            vec![
                Tok::Field(HeaderField::Ip6Dst),
                Tok::Kw(Kw::Eq),
                v6("fd00:1::"),
                Tok::Kw(Kw::Slash),
                Tok::Int(64),
                Tok::Eof
            ]
        );
        // A MAC, an assignment right after a field and Frenetic's run-together
        // words read as before.
        assert_eq!(
            toks("00:11:22:33:44:55"),
            vec![Tok::Mac(0x0011_2233_4455), Tok::Eof]
        );
        assert_eq!(
            toks("port:=2"),
            vec![
                Tok::Field(HeaderField::Port),
                Tok::Kw(Kw::Assign),
                Tok::Int(2),
                Tok::Eof
            ]
        );
        assert_eq!(toks("1andport=2").len(), 6);
    }

    struct Names;

    impl Resolver for Names {
        fn ipv4(&self, kind: &str, name: &str) -> Option<u32> {
            (kind == "vm" && name != "v6only").then_some(0x6440_0001)
        }
        fn mac(&self, _: &str, _: &str) -> Option<u64> {
            None
        }
        fn ipv6(&self, kind: &str, name: &str) -> Vec<u128> {
            if kind == "vm" && name != "v4only" {
                vec![0xfd00 << 112 | 1, 0xfd00 << 112 | 2]
            } else {
                Vec::new()
            }
        }
    }

    #[test]
    fn a_name_in_an_address_test_means_the_vm_in_both_families() {
        use crate::semantics::{eval_pred, Packet};
        let prog = crate::check("filter ip4Src = vm:web; port := 1", &Names).unwrap();
        let CPol::Seq(filter, _) = &prog.pol else {
            panic!("a sequence")
        };
        let CPol::Filter(a) = &**filter else {
            panic!("a filter")
        };
        let mut pkt = Packet::default();
        pkt.headers.eth_type = ethertype::IPV4;
        pkt.headers.ipv4_src = 0x6440_0001;
        assert!(eval_pred(a, &pkt));
        pkt.headers.eth_type = ethertype::IPV6;
        assert!(!eval_pred(a, &pkt));
        for address in [0xfd00 << 112 | 1, 0xfd00 << 112 | 2] {
            pkt.headers.ipv6_src = address;
            assert!(eval_pred(a, &pkt));
        }
        // An assignment takes the primary address of its own family.
        let set = crate::check("ip6Dst := vm:web", &Names).unwrap();
        assert_eq!(set.pol, assignment(false, 0xfd00 << 112 | 1));
        let refused = crate::check("ip6Dst := vm:v4only", &Names).unwrap_err();
        assert!(refused.message.contains("vm:v4only"), "{}", refused.message);
        assert!(crate::check("filter ip6Src = vm:v4only", &Names).is_ok());
    }
}
