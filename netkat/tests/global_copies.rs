//! The global compiler never delivers more copies of a packet than NetKAT's
//! semantics does: random programs with links over a tree of switches and over a
//! network where paths split and meet again, compiled, installed in the switch's
//! classifier and run hop by hop over the links, deliver exactly the evaluator's
//! set of packets, each once (the harness fails on a second delivery of the same
//! packet at the same place).

mod common;

use common::network::check_global;
use netkat::global::GlobalError;
use netkat::ir::{self, NoNames};
use netkat::local::LocalError;
use netkat::{CompileError, Groups, TableOptions};
use proptest::prelude::*;

/// The wires of the first test network, an out-tree (`s1@p1 => s2@p2`): every
/// switch is reached over one path only, so copies that meet at a switch crossed
/// the same links.
const TREE: &[&str] = &["1@1 => 2@1", "1@2 => 3@1", "2@2 => 4@1", "2@3 => 5@1"];

/// The wires of the second, a network whose paths split and meet again: switch 2
/// is reached from 1 directly or through 3, switch 4 from 2 or 3, switch 5 from 2
/// or 4, so copies meet after different links, or cross one link at different
/// times.
const MEETING: &[&str] = &[
    "1@1 => 2@1",
    "1@2 => 3@1",
    "3@2 => 2@2",
    "2@3 => 4@1",
    "3@3 => 4@2",
    "4@3 => 5@1",
    "2@4 => 5@2",
];

/// A program that copies a packet at the entry switch into two differently
/// changed copies which later become identical: delivered once.
#[test]
fn copies_that_become_identical_after_a_link_are_delivered_once() {
    let src = "filter switch = 1; (ip4Src := 10.0.0.1 + ip4Src := 10.0.0.2); port := 1; \
               1@1 => 2@1; ip4Src := 10.0.0.3; port := 7";
    let prog = program(src);
    check_global(src, &prog, 200, 5);
}

/// As above, with the copies changed differently on both switches.
#[test]
fn copies_changed_on_two_switches_merge_where_they_agree() {
    let src =
        "filter switch = 1; (ethDst := 1; tcpDstPort := 80 + ethDst := 2; tcpDstPort := 80); \
               port := 2; 1@2 => 3@1; (ethDst := 3 + filter ethDst = 1; port := 4); port := 5";
    let prog = program(src);
    check_global(src, &prog, 200, 9);
}

/// Two copies cross two different links and meet on switch 4, where they leave
/// on one port with identical headers: NetKAT's semantics delivers one packet.
#[test]
fn copies_that_meet_after_different_links_are_delivered_once() {
    let src = "filter switch = 1; (port := 1; 1@1 => 2@1 + port := 2; 1@2 => 3@1); \
               port := 2; (2@2 => 4@1 + 3@2 => 4@2); port := 5";
    let prog = program(src);
    check_global(src, &prog, 200, 3);
}

/// An output that ends the program on a link's source port is not an egress
/// (NetKAT's semantics delivers nothing there), and it must not reach the wire
/// either: the switch at the far end would take it for a packet entering the
/// network and deliver it on port 5.
#[test]
fn an_output_where_a_link_starts_is_not_sent_over_the_link() {
    let src = "(filter switch = 1; port := 1; 1@1 => 2@1; port := 7) \
               + (filter switch = 1; port := 1) + (filter switch = 2; port := 5)";
    let prog = program(src);
    check_global(src, &prog, 200, 6);
}

/// Fat-tree routing written with links (`netkat::gen`), whose copies never meet,
/// delivers each packet at its destination once.
#[test]
fn linked_fat_tree_routing_delivers_each_packet_once() {
    let src = netkat::gen::linked_routing_policy(&netkat::gen::fat_tree(4));
    let prog = program(&src);
    check_global("linked fat-tree k=4", &prog, 100, 4);
}

fn program(src: &str) -> ir::Program {
    let pol =
        netkat::parser::parse_policy(src).unwrap_or_else(|d| panic!("{}", d.render("p", src)));
    ir::lower(&pol, &NoNames).unwrap_or_else(|d| panic!("{}", d.render("p", src)))
}

fn arb_test() -> impl Strategy<Value = String> {
    prop_oneof![
        (1u64..6).prop_map(|n| format!("switch = {n}")),
        (1u64..4).prop_map(|n| format!("port = {n}")),
        (1u64..3).prop_map(|n| format!("ethDst = {n}")),
        (1u64..3).prop_map(|n| format!("ip4Src = 10.0.0.{n}")),
        prop_oneof![Just(80u64), Just(443)].prop_map(|n| format!("tcpDstPort = {n}")),
    ]
}

fn arb_pred() -> impl Strategy<Value = String> {
    arb_test().prop_recursive(2, 6, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|a| format!("not ({a})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} and {b})")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("({a} or {b})")),
        ]
    })
}

fn arb_mod() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (1u64..6).prop_map(|n| format!("port := {n}")),
        2 => (1u64..4).prop_map(|n| format!("ethDst := {n}")),
        2 => (1u64..4).prop_map(|n| format!("ip4Src := 10.0.0.{n}")),
        1 => prop_oneof![Just(80u64), Just(443)].prop_map(|n| format!("tcpDstPort := {n}")),
    ]
}

/// A link, preceded by the output to its source port so that copies reach it.
fn arb_link(links: &'static [&'static str]) -> impl Strategy<Value = String> {
    (0..links.len()).prop_map(move |i| {
        let link = links[i];
        let port = link.split(['@', ' ']).nth(1).unwrap_or("1");
        format!("(port := {port}; {link})")
    })
}

fn arb_program(links: &'static [&'static str]) -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        3 => arb_pred().prop_map(|a| format!("filter {a}")),
        4 => arb_mod(),
        3 => arb_link(links),
        1 => Just("id".to_string()),
    ];
    leaf.prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            3 => (inner.clone(), inner.clone()).prop_map(|(p, q)| format!("({p} + {q})")),
            4 => (inner.clone(), inner.clone()).prop_map(|(p, q)| format!("({p}; {q})")),
            1 => inner.clone().prop_map(|p| format!("({p})*")),
            1 => (arb_pred(), inner.clone(), inner)
                .prop_map(|(a, p, q)| format!("(if {a} then {p} else {q})")),
        ]
    })
}

/// Compiles `src` and runs it hop by hop; `Err` only for a wrong delivery (a
/// policy the compiler refuses cleanly is skipped).
fn check_random(src: &str, seed: u64) -> Result<(), TestCaseError> {
    let prog = program(src);
    let compiled = netkat::compile(&prog).and_then(|mut c| {
        c.tables_with(TableOptions::default(), Groups::Allowed)
            .map(|_| ())
    });
    match compiled {
        Ok(()) => {}
        // Refused, never mistranslated: copies whose changes one table cannot
        // express, or more states than VLAN ids.
        Err(CompileError::Local(LocalError::Unrepresentable(m))) => prop_assume!(false, "{}", m),
        Err(CompileError::Global(GlobalError::TooManyStates(n))) => {
            prop_assume!(false, "{} states", n)
        }
        Err(e) => return Err(TestCaseError::fail(format!("{src}: {e}"))),
    }
    check_global(src, &prog, 60, seed);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, max_global_rejects: 3000, ..ProptestConfig::default() })]

    #[test]
    fn global_tables_deliver_each_packet_once(body in arb_program(TREE), seed in any::<u64>()) {
        // Every program crosses at least one link, so the global compiler runs.
        check_random(&format!("{body}; (port := 1; 1@1 => 2@1; port := 9) + (port := 9)"), seed)?;
    }

    #[test]
    fn outputs_may_end_where_a_link_starts(body in arb_program(TREE), seed in any::<u64>()) {
        // Unlike above, the body's own outputs leave the program, on ports 1, 2
        // or 5: 1@1, 1@2 and 2@2 are links' sources (no egress, and no wire
        // either). The ports are named because a packet the harness
        // sends in on port 0, which is no port, may leave where it came from.
        check_random(
            &format!("({body}; (port := 1 + port := 2 + port := 5)) + (port := 1; 1@1 => 2@1; port := 9)"),
            seed,
        )?;
    }

    #[test]
    fn copies_meeting_after_different_paths_are_delivered_once(
        body in arb_program(MEETING),
        seed in any::<u64>(),
    ) {
        // A packet entering switch 1 is copied to switches 2 and 3 first, and
        // every copy may go on to switch 5 over either of its links and leave
        // there on port 9: the copies of many programs meet.
        check_random(
            &format!(
                "(id + port := 1; 1@1 => 2@1 + port := 2; 1@2 => 3@1); {body}; \
                 (filter switch = 2; port := 4; 2@4 => 5@2 \
                 + filter switch = 4; port := 3; 4@3 => 5@1 + id); port := 9"
            ),
            seed,
        )?;
    }
}
