//! Property tests: (1) printing a policy and parsing it back gives the same tree;
//! (2) for random policies and random packets, the compiled tables, run in the
//! switch's classifier (`dataplane_core::pipeline::Pipeline`), produce exactly the packets
//! the reference evaluator produces; (3) the parser never panics on any text;
//! (4) `check`, which lowers as it parses, gives what parsing then lowering the
//! tree gives, errors included.

mod common;

use netkat::ir::{self, NoNames};
use netkat::parser::parse_policy;
use netkat::syntax::{HeaderField, HeaderVal, LetInit, Policy, PolicyKind, Pred, PredKind, Value};
use netkat::{local::LocalError, CompileError};
use proptest::prelude::*;
use std::net::Ipv6Addr;

fn hv(field: HeaderField, value: Value) -> HeaderVal {
    HeaderVal {
        field,
        value,
        span: Default::default(),
    }
}

/// IPv6 addresses of the random policies: A and B share their high half, C
/// differs from A in both.
const IP6_A: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1);
const IP6_B: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0x8000, 0, 0, 2);
const IP6_C: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 1, 0, 0, 0, 0, 0xff);

/// Tests on a small value space, so random packets hit them.
fn arb_test() -> impl Strategy<Value = HeaderVal> {
    prop_oneof![
        (1u64..4).prop_map(|n| hv(HeaderField::Port, Value::Int(n))),
        (1u64..3).prop_map(|n| hv(HeaderField::Switch, Value::Int(n))),
        prop_oneof![Just(1u64), Just(2), Just(0xffff)]
            .prop_map(|n| hv(HeaderField::VlanId, Value::Int(n))),
        (0u64..2).prop_map(|n| hv(HeaderField::VlanPcp, Value::Int(n))),
        prop_oneof![Just(0x800u64), Just(0x806), Just(0x86dd)]
            .prop_map(|n| hv(HeaderField::EthTyp, Value::Int(n))),
        prop_oneof![Just(6u64), Just(17)].prop_map(|n| hv(HeaderField::IpProto, Value::Int(n))),
        (1u64..3).prop_map(|n| hv(HeaderField::EthDst, Value::Mac(n))),
        (
            prop_oneof![Just(0x0a00_0001u32), Just(0x0a01_0000)],
            prop_oneof![Just(None), Just(Some(8u8)), Just(Some(16))]
        )
            .prop_map(|(addr, prefix)| hv(HeaderField::Ip4Src, Value::Ip4 { addr, prefix })),
        prop_oneof![Just(0x0a00_0002u32), Just(0x6440_0001)]
            .prop_map(|addr| hv(HeaderField::Ip4Dst, Value::Ip4 { addr, prefix: None })),
        prop_oneof![Just(80u64), Just(443)]
            .prop_map(|n| hv(HeaderField::TcpDstPort, Value::Int(n))),
        (
            prop_oneof![Just(IP6_A), Just(IP6_B)],
            prop_oneof![
                Just(None),
                Just(Some(32u8)),
                Just(Some(64)),
                Just(Some(80)),
                Just(Some(127))
            ]
        )
            .prop_map(|(addr, prefix)| hv(HeaderField::Ip6Src, Value::Ip6 { addr, prefix })),
        (
            prop_oneof![Just(IP6_A), Just(IP6_C)],
            prop_oneof![Just(None), Just(Some(48u8))]
        )
            .prop_map(|(addr, prefix)| hv(HeaderField::Ip6Dst, Value::Ip6 { addr, prefix })),
        prop_oneof![Just(53u64), Just(80)].prop_map(|n| hv(HeaderField::UdpSrcPort, Value::Int(n))),
    ]
}

fn arb_mod() -> impl Strategy<Value = HeaderVal> {
    prop_oneof![
        4 => (1u64..5).prop_map(|n| hv(HeaderField::Port, Value::Int(n))),
        1 => Just(hv(HeaderField::Port, Value::Pipe("ctl".into()))),
        1 => (1u64..3).prop_map(|n| hv(HeaderField::EthDst, Value::Mac(n))),
        1 => Just(hv(HeaderField::Ip4Dst, Value::Ip4 { addr: 0x0a00_0002, prefix: None })),
        1 => prop_oneof![Just(1u64), Just(0xffff)].prop_map(|n| hv(HeaderField::VlanId, Value::Int(n))),
        1 => Just(hv(HeaderField::VlanPcp, Value::Int(1))),
        1 => Just(hv(HeaderField::TcpDstPort, Value::Int(80))),
        1 => prop_oneof![Just(IP6_A), Just(IP6_B)].prop_map(|addr| hv(HeaderField::Ip6Src, Value::Ip6 { addr, prefix: None })),
        1 => Just(hv(HeaderField::Ip6Dst, Value::Ip6 { addr: IP6_C, prefix: None })),
    ]
}

fn pred_of(k: PredKind) -> Pred {
    Pred::new(k)
}

fn arb_pred() -> impl Strategy<Value = Pred> {
    let leaf = prop_oneof![
        8 => arb_test().prop_map(|h| pred_of(PredKind::Test(h))),
        1 => Just(pred_of(PredKind::True)),
        1 => Just(pred_of(PredKind::False)),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            inner
                .clone()
                .prop_map(|a| pred_of(PredKind::Not(Box::new(a)))),
            (inner.clone(), inner.clone())
                .prop_map(|(a, b)| pred_of(PredKind::And(Box::new(a), Box::new(b)))),
            (inner.clone(), inner)
                .prop_map(|(a, b)| pred_of(PredKind::Or(Box::new(a), Box::new(b)))),
        ]
    })
}

fn pol(k: PolicyKind) -> Policy {
    Policy::new(k)
}

/// Random policies; `meta` adds `let`/`var` scopes whose field `m is tested inside.
fn arb_policy() -> impl Strategy<Value = Policy> {
    let leaf = prop_oneof![
        3 => arb_pred().prop_map(|a| pol(PolicyKind::Filter(a))),
        4 => arb_mod().prop_map(|h| pol(PolicyKind::Mod(h))),
        1 => Just(pol(PolicyKind::Id)),
        1 => Just(pol(PolicyKind::Drop)),
    ];
    leaf.prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            3 => (inner.clone(), inner.clone()).prop_map(|(p, q)| pol(PolicyKind::Union(Box::new(p), Box::new(q)))),
            3 => (inner.clone(), inner.clone()).prop_map(|(p, q)| pol(PolicyKind::Seq(Box::new(p), Box::new(q)))),
            1 => inner.clone().prop_map(|p| pol(PolicyKind::Star(Box::new(p)))),
            2 => (arb_pred(), inner.clone(), inner.clone()).prop_map(|(a, p, q)| pol(PolicyKind::If(a, Box::new(p), Box::new(q)))),
            1 => (arb_pred(), inner.clone()).prop_map(|(a, p)| pol(PolicyKind::While(a, Box::new(p)))),
            1 => (any::<bool>(), prop_oneof![Just(LetInit::Alias(HeaderField::Port)), (0u64..3).prop_map(|n| LetInit::Const(Value::Int(n)))], 1u64..3, inner)
                .prop_map(|(mutable, init, v, body)| {
                    let test = pol(PolicyKind::Filter(pred_of(PredKind::Test(hv(HeaderField::Meta("m".into()), Value::Int(v))))));
                    let mut body = pol(PolicyKind::Seq(Box::new(test), Box::new(body)));
                    if mutable {
                        let set = pol(PolicyKind::Mod(hv(HeaderField::Meta("m".into()), Value::Int(v))));
                        body = pol(PolicyKind::Union(Box::new(body), Box::new(set)));
                    }
                    pol(PolicyKind::Let { name: "m".into(), init, mutable, name_span: Default::default(), body: Box::new(body) })
                }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, max_global_rejects: 4000, ..ProptestConfig::default() })]

    #[test]
    fn print_then_parse_is_identity(p in arb_policy()) {
        let text = p.to_string();
        let mut back = parse_policy(&text).map_err(|d| TestCaseError::fail(format!("{}\n{}", text, d.render("p", &text))))?;
        back.erase_spans();
        prop_assert_eq!(back, p, "{}", text);
    }

    #[test]
    fn tables_agree_with_the_evaluator(p in arb_policy(), seed in any::<u64>()) {
        let prog = ir::lower(&p, &NoNames).map_err(|d| TestCaseError::fail(d.message.clone()))?;
        match common::check_local(&prog, 40, seed) {
            Ok(n) => prop_assert!(n > 0),
            // Copies with different changes go through groups; what is left
            // unrepresentable (prerequisites a policy makes unknowable, a VLAN tag
            // state the match does not know) is refused, never mistranslated.
            Err(CompileError::Local(LocalError::Unrepresentable(m))) => {
                prop_assume!(false, "{}", m);
            }
            Err(e) => return Err(TestCaseError::fail(format!("{p}: {e}"))),
        }
    }

    #[test]
    fn checking_in_one_pass_is_parsing_then_lowering(p in arb_policy(), cut in 0usize..200, junk in "[()*;+=:@a-z0-9` ]{0,6}", spoil in any::<bool>()) {
        let mut text = p.to_string();
        if spoil {
            let at = (0..=cut.min(text.len())).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
            text.insert_str(at, &junk);
        }
        let direct = netkat::check(&text, &NoNames);
        let via_tree = parse_policy(&text).and_then(|t| ir::lower(&t, &NoNames));
        match (direct, via_tree) {
            (Ok(a), Ok(b)) => {
                prop_assert_eq!(&a.pol, &b.pol, "{}", text);
                prop_assert_eq!(a.locations, b.locations);
                prop_assert_eq!(a.metas, b.metas);
            }
            (Err(a), Err(b)) => prop_assert_eq!(a, b, "{}", text),
            (a, b) => prop_assert!(false, "{}: one pass {:?}, tree {:?}", text, a.is_ok(), b.is_ok()),
        }
    }

    #[test]
    fn parser_never_panics(s in "\\PC{0,80}") {
        let _ = parse_policy(&s);
    }

    #[test]
    fn parser_never_panics_on_near_policies(p in arb_policy(), cut in 0usize..200, junk in "[()*;+=:@a-z0-9` ]{0,6}") {
        let mut text = p.to_string();
        let at = (0..=cut.min(text.len())).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        text.insert_str(at, &junk);
        if let Err(d) = parse_policy(&text) {
            // Every error points into the text.
            let span = d.span.expect("parse errors are positioned");
            prop_assert!(span.start <= text.len());
            prop_assert!(d.render("p.kat", &text).contains("p.kat:"));
        }
    }
}

/// Rules of every switch's table of a generated deny-ACL of `n` entries.
fn acl_rules(n: usize, seed: u64) -> (usize, ir::Program) {
    let src = netkat::gen::acl_policy(n, seed);
    let prog = netkat::check(&src, &NoNames).expect("generated ACLs parse");
    let mut compiled = netkat::compile(&prog).expect("ACLs compile");
    let rules = compiled
        .tables(netkat::TableOptions::default())
        .expect("tables")
        .iter()
        .map(|(_, t)| t.flows.len())
        .sum();
    (rules, prog)
}

/// A deny-ACL of n entries in front of a two-port bridge is n drop rules plus the
/// bridge's two rules, at most (an FDD path per rule gave ~0.43 n² rules).
#[test]
fn acl_rule_count_is_linear() {
    for n in [10, 100, 1000, 3000] {
        let (rules, _) = acl_rules(n, 7);
        assert!(rules <= n + 2, "{n} ACL entries gave {rules} rules");
        // Every entry overlaps the bridge, so none is left out either.
        assert!(
            rules >= n * 9 / 10,
            "{n} ACL entries gave only {rules} rules"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Generated ACLs, compiled to drop rules above the bridge, forward exactly
    /// what the evaluator forwards (packets are drawn from the ACL's own values, so
    /// most of them hit an entry or its neighbour).
    #[test]
    fn acl_tables_agree_with_the_evaluator(n in 1usize..60, seed in any::<u64>()) {
        let (_, prog) = acl_rules(n, seed);
        prop_assert!(common::check_local(&prog, 300, seed).expect("compiles") > 0);
        // The same entries after the bridge go through the FDD instead.
        let after = netkat::gen::acl_after_policy(n.min(12), seed);
        let prog = netkat::check(&after, &NoNames).expect("parses");
        prop_assert!(common::check_local(&prog, 300, seed).expect("compiles") > 0);
    }
}

/// The case the property above found (`n = 12`): the tables forwarded a UDP
/// packet that the entry `ip4Dst = 10.124.106.37 and udpDstPort = 339` drops.
#[test]
fn acl_after_the_bridge_found_by_the_property() {
    let seed = 6_254_551_526_668_517_408;
    let after = netkat::gen::acl_after_policy(12, seed);
    let prog = netkat::check(&after, &NoNames).expect("parses");
    assert!(common::check_local(&prog, 300, seed).expect("compiles") > 0);
}

/// The smallest union that lost an entry: `(A or B) or C` kept only A and C for
/// packets in C's source prefix. Skipping the run of `ip4Src /24` tests of `A or B`
/// to reach B's `ip4Dst` test took the run end cached for that `ip4Dst` node (the
/// end of its own run of `ip4Dst /32` tests, `drop`) instead of the node itself.
#[test]
fn union_keeps_the_entry_behind_a_run_of_prefix_tests() {
    let entries = "(ip4Src = 10.227.148.0/24 and ip4Dst = 10.14.161.5) \
                   or (ip4Dst = 10.108.159.239 and udpDstPort = 366) \
                   or (ip4Src = 10.86.223.0/24 and ip4Dst = 10.114.251.191)";
    let prog = netkat::check(&format!("filter {entries}"), &NoNames).expect("parses");
    let ir::CPol::Filter(pred) = &prog.pol else {
        panic!("a filter lowers to a filter: {:?}", prog.pol);
    };
    let mut fdd = netkat::fdd::Fdd::new();
    let root = fdd.compile(&prog.pol).expect("compiles");
    let mut pkt = netkat::semantics::Packet::default();
    pkt.headers.eth_type = 0x800;
    pkt.headers.ip_proto = 17;
    pkt.headers.ipv4_src = u32::from(std::net::Ipv4Addr::new(10, 86, 223, 1));
    pkt.headers.ipv4_dst = u32::from(std::net::Ipv4Addr::new(10, 108, 159, 239));
    pkt.headers.l4_dst = 366;
    assert!(
        netkat::semantics::eval_pred(pred, &pkt),
        "B matches the packet"
    );
    assert!(
        !fdd.eval(root, &|f| pkt.get(f)).is_empty(),
        "the FDD of A or B or C drops a packet B matches"
    );
}

/// An ACL-like entry: a conjunction of tests on addresses (several prefix lengths
/// of overlapping values, so one field's tests form long runs) and ports.
fn arb_entry() -> impl Strategy<Value = String> {
    let src = (
        prop_oneof![
            Just("10.1.0.0"),
            Just("10.1.2.0"),
            Just("10.2.0.0"),
            Just("10.1.2.3")
        ],
        prop_oneof![Just(8u8), Just(16), Just(24), Just(32)],
    )
        .prop_map(|(a, l)| format!("ip4Src = {a}/{l}"));
    let dst = prop_oneof![Just("10.9.0.1"), Just("10.9.0.2"), Just("10.9.1.1")]
        .prop_map(|a| format!("ip4Dst = {a}"));
    let port = (
        prop_oneof![Just("tcp"), Just("udp")],
        prop_oneof![Just(53u16), Just(80)],
    )
        .prop_map(|(p, n)| format!("{p}DstPort = {n}"));
    prop::collection::vec(prop_oneof![src, dst, port], 1..4)
        .prop_map(|t| format!("({})", t.join(" and ")))
}

/// Random groupings of `or` (and sometimes `not`) over entries.
fn arb_acl() -> impl Strategy<Value = String> {
    arb_entry().prop_recursive(5, 24, 2, |inner| {
        prop_oneof![
            4 => (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} or {b})")),
            1 => inner.prop_map(|a| format!("not {a}")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// The FDD of a predicate holds exactly where the evaluator says, on every
    /// packet built from the predicate's addresses and ports and their neighbours.
    #[test]
    fn acl_predicate_fdds_agree_with_the_evaluator(acl in arb_acl()) {
        let prog = netkat::check(&format!("filter {acl}"), &NoNames).expect("parses");
        let ir::CPol::Filter(pred) = &prog.pol else {
            panic!("a filter lowers to a filter: {:?}", prog.pol);
        };
        let mut fdd = netkat::fdd::Fdd::new();
        let root = fdd.compile(&prog.pol).expect("compiles");
        let ip = |a: u8, b: u8, c: u8, d: u8| u32::from(std::net::Ipv4Addr::new(a, b, c, d));
        let srcs = [ip(10, 1, 0, 0), ip(10, 1, 2, 0), ip(10, 1, 2, 3), ip(10, 1, 3, 0), ip(10, 2, 0, 0), ip(10, 3, 0, 0), ip(11, 0, 0, 0)];
        let dsts = [ip(10, 9, 0, 1), ip(10, 9, 0, 2), ip(10, 9, 1, 1), ip(10, 9, 0, 3)];
        for (src, dst, proto, port) in header_combinations(&srcs, &dsts) {
            let mut pkt = netkat::semantics::Packet::default();
            pkt.headers.eth_type = 0x800;
            pkt.headers.ip_proto = proto;
            pkt.headers.ipv4_src = src;
            pkt.headers.ipv4_dst = dst;
            pkt.headers.l4_dst = port;
            let want = netkat::semantics::eval_pred(pred, &pkt);
            let got = !fdd.eval(root, &|f| pkt.get(f)).is_empty();
            prop_assert_eq!(got, want, "packet {:?}", pkt.headers);
        }
    }
}

/// Every (source, destination, protocol, port) combination.
fn header_combinations(srcs: &[u32], dsts: &[u32]) -> Vec<(u32, u32, u8, u16)> {
    let mut out = Vec::new();
    for &s in srcs {
        for &d in dsts {
            for proto in [6, 17] {
                for port in [53, 80, 443] {
                    out.push((s, d, proto, port));
                }
            }
        }
    }
    out
}
