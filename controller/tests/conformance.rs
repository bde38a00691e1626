//! Frenetic's example policies, read in place from the shared conformance corpus:
//! every `local` and `GLOBAL` file parses, compiles, and its tables (run in the
//! switch's classifier) agree with the reference evaluator; so does the end-to-end
//! program of Frenetic's bug #497, whose topology is written with moves; expected
//! failures fail with a positioned error.

mod common;

use common::*;
use controller::netkat::fdd::Fdd;
use controller::netkat::ir::{HField, NoNames, Program, LOCATION_BASE};
use controller::netkat::semantics::{eval, Packet};
use controller::netkat::{self, parser, Groups, TableOptions};
use dataplane_core::pipeline::Pipeline;
use openflow::flow::{port, FlowKey};
use std::collections::{BTreeSet, HashMap};

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/conformance/frenetic-examples/"
);

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{DIR}{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn program(name: &str) -> Program {
    let src = read(name);
    netkat::check(&src, &NoNames).unwrap_or_else(|d| panic!("{}", d.render(name, &src)))
}

/// The files SOURCES.txt classifies, by category.
fn catalogue() -> Vec<(String, String)> {
    read("SOURCES.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(".kat"))
        .filter_map(|l| {
            let parts: Vec<&str> = l.split('|').map(str::trim).collect();
            Some((parts.first()?.to_string(), parts.get(3)?.to_string()))
        })
        .collect()
}

#[test]
fn local_files_compile_and_match_the_evaluator() {
    let mut files = 0;
    for (name, cat) in catalogue() {
        if !cat.starts_with("local") {
            continue;
        }
        let prog = program(&name);
        let n = check_local(&prog, 300, 7).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(n > 0, "{name}: no packets compared");
        files += 1;
    }
    assert!(files >= 14, "only {files} local files found");
}

#[test]
fn dup_files_compile_as_packet_programs() {
    for name in ["automata/unrollable.kat", "automata/unrolled.kat"] {
        let prog = program(name);
        check_local(&prog, 100, 3).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn expected_failures_fail_with_positions() {
    for (name, line, col, needle) in [
        ("meta-fields/meta-error1.kat", 3, 1, "immutable"),
        ("meta-fields/meta-error2.kat", 3, 1, "immutable"),
        (
            "meta-fields/multiple-error.kat",
            7,
            5,
            "too many meta fields",
        ),
    ] {
        let src = read(name);
        let d = netkat::check(&src, &NoNames).expect_err(name);
        assert!(d.message.contains(needle), "{name}: {}", d.message);
        assert_eq!(d.line_col(&src), Some((line, col)), "{name}");
        let text = d.render(name, &src);
        assert!(
            text.contains(&format!("{name}:{line}:{col}")) && text.contains('^'),
            "{text}"
        );
    }
    // Frenetic's parser test: drop.kat is a policy, not a predicate.
    let src = read("drop.kat");
    assert!(parser::parse_predicate(&src).is_err());
    assert!(parser::parse_policy(&src).is_ok());
}

#[test]
fn virtual_files_parse_with_their_entry_points() {
    let mut n = 0;
    for (name, cat) in catalogue() {
        if cat.starts_with("VIRTUAL PREDICATE") {
            parser::parse_predicate(&read(&name))
                .unwrap_or_else(|d| panic!("{name}: {}", d.message));
            n += 1;
        } else if cat.starts_with("VIRTUAL POLICY") {
            parser::parse_policy(&read(&name)).unwrap_or_else(|d| panic!("{name}: {}", d.message));
            n += 1;
        }
    }
    assert!(n > 40, "{n}");
}

/// Where an output goes: whether it is delivered (seen leaving the network at
/// that port) and which location it reaches over a wire, if any.
struct Hop {
    delivered: bool,
    crosses_to: Option<(u64, u64)>,
}

/// Runs a packet through a network of pipelines; `route` says, for an output of
/// switch `sw` on port `p`, whether it is delivered and where it crosses to.
/// Returns the delivered packets as `(switch, port, headers)`.
fn simulate(
    pipes: &HashMap<u64, Pipeline>,
    switch: u64,
    key: FlowKey,
    route: impl Fn(u64, u64, &FlowKey) -> Hop,
) -> BTreeSet<(u64, u64, String)> {
    let mut out = BTreeSet::new();
    let mut todo = vec![(switch, key, 0)];
    while let Some((sw, k, hops)) = todo.pop() {
        assert!(hops < 64, "packet loops");
        let Some(pipe) = pipes.get(&sw) else { continue };
        for (p, mut o) in pipe.simulate(&k) {
            let p = u64::from(if p == port::IN_PORT { k.in_port } else { p });
            o.in_port = 0;
            let hop = route(sw, p, &o);
            if hop.delivered {
                out.insert((sw, p, format!("{o:?}")));
            }
            if let Some((s2, p2)) = hop.crosses_to {
                o.in_port = u32::try_from(p2).expect("port");
                todo.push((s2, o, hops + 1));
            }
        }
    }
    out
}

/// An evaluator output as [`simulate`] reports a delivered packet.
fn delivered_as(p: Packet) -> (u64, u64, String) {
    let mut h = p.headers;
    h.in_port = 0;
    (p.switch, p.port, format!("{h:?}"))
}

/// A network compiled by the global compiler: outputs on a link's source port
/// cross the link when tagged; an untagged packet on a link port has finished the
/// program where a link starts and, like the evaluator's, is not an egress; other
/// outputs leave the network, untagged.
fn simulate_network(
    pipes: &HashMap<u64, Pipeline>,
    links: &[(u64, u64, u64, u64)],
    switch: u64,
    key: FlowKey,
) -> BTreeSet<(u64, u64, String)> {
    simulate(pipes, switch, key, |sw, p, o| {
        match links.iter().find(|l| (l.0, l.1) == (sw, p)) {
            Some(l) => Hop {
                delivered: false,
                crosses_to: (o.vlan_vid != 0).then_some((l.2, l.3)),
            },
            None => {
                assert_eq!(o.vlan_vid, 0, "a tagged packet left the network");
                Hop {
                    delivered: true,
                    crosses_to: None,
                }
            }
        }
    })
}

#[test]
fn global_files_compile_and_match_the_evaluator() {
    let mut files = 0;
    for (name, cat) in catalogue() {
        if !cat.starts_with("GLOBAL:") {
            continue;
        }
        let prog = program(&name);
        let mut compiled = netkat::compile(&prog).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(compiled.is_global());
        let needs_groups = name == "global/duplication1.kat";
        if needs_groups {
            // Two copies of one packet with different fields changed need an
            // OpenFlow group; a table without groups refuses, clearly.
            let e = compiled.tables(TableOptions::default()).expect_err(&name);
            assert!(e.to_string().contains("only through a group"), "{e}");
        }
        let links = netkat::global::links(&prog.pol);
        let mut pipes = HashMap::new();
        let mut groups = 0;
        for (sw, t) in compiled
            .tables_with(TableOptions::default(), Groups::Allowed)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
        {
            check_table(&t.flows);
            groups += t.groups.len();
            pipes.insert(
                sw,
                Pipeline::from_groups_and_flows(t.groups, t.flows).expect("install"),
            );
        }
        assert_eq!(groups > 0, needs_groups, "{name}: {groups} groups");
        let consts = constants(&prog);
        let mut rng = Rng(11);
        let switches: Vec<u64> = pipes.keys().copied().collect();
        for _ in 0..300 {
            let sw = switches[usize::try_from(rng.next() % switches.len() as u64).unwrap_or(0)];
            let mut key = random_key(&mut rng, &consts);
            key.vlan_vid = 0; // packets enter the network untagged
            key.vlan_pcp = 0;
            key.in_port =
                u32::try_from(rng.pick(controller::netkat::ir::HField::Port, &consts, &[1]) % 100)
                    .unwrap_or(1);
            let got = simulate_network(&pipes, &links, sw, key);
            let want: BTreeSet<(u64, u64, String)> = eval(
                &prog,
                Packet {
                    switch: sw,
                    port: u64::from(key.in_port),
                    headers: key,
                },
            )
            .expect("eval")
            .into_iter()
            .filter(|p| p.port != 0 && p.port < LOCATION_BASE)
            .filter(|p| !links.iter().any(|l| (l.0, l.1) == (p.switch, p.port)))
            .map(delivered_as)
            .collect();
            assert_eq!(got, want, "{name}: switch {sw} packet {key:?}");
        }
        files += 1;
    }
    assert!(files >= 8, "{files}");
}

const BUG_497: &str = "bug-#497-may-2016.kat";

/// Frenetic's issue #497 was an FDD missing a branch for this end-to-end program
/// (`in; (p; t)*; p; out`, the topology `t` written as `switch :=`/`port :=`
/// moves): our FDD of the whole program gives, packet by packet, exactly the
/// evaluator's output.
#[test]
fn bug_497_fdd_matches_the_evaluator() {
    let prog = program(BUG_497);
    let mut fdd = Fdd::new();
    let root = fdd.compile(&prog.pol).expect("FDD");
    let consts = constants(&prog);
    let mut rng = Rng(497);
    let mut delivered = 0;
    for _ in 0..2000 {
        let pkt = Packet {
            switch: rng.pick(HField::Switch, &consts, &[7]),
            port: rng.pick(HField::Port, &consts, &[9]),
            headers: random_key(&mut rng, &consts),
        };
        let want = eval(&prog, pkt).expect("eval");
        let got: std::collections::HashSet<Packet> = fdd
            .eval(root, &|f| pkt.get(f))
            .iter()
            .map(|seq| {
                let mut out = pkt;
                for (f, v) in seq {
                    out.set(*f, *v);
                }
                out
            })
            .collect();
        assert_eq!(got, want, "{pkt:?}");
        delivered += want.len();
    }
    assert!(delivered > 0, "no packet crossed the network");
}

/// The same program, compiled: every switch runs its hop program (see
/// `netkat::hops`), the moves of `t` are wires, and a packet entering at an `in`
/// location leaves at exactly the `out` locations, with exactly the headers, the
/// evaluator gives.
#[test]
fn bug_497_tables_over_the_wires_match_the_evaluator() {
    let prog = program(BUG_497);
    let hop = netkat::hops::recognise(&prog.pol).expect("an end-to-end hop program");
    assert_eq!(hop.wires.len(), 12);
    let mut compiled = netkat::compile(&prog).expect("compiles");
    let mut pipes = HashMap::new();
    for (sw, t) in compiled.tables(TableOptions::default()).expect("tables") {
        check_table(&t.flows);
        pipes.insert(sw, Pipeline::from_flows(t.flows).expect("install"));
    }
    let consts = constants(&prog);
    let mut rng = Rng(4971);
    let mut delivered = 0;
    for i in 0..1200 {
        let (sw, pt) = hop.ingress[i % hop.ingress.len()];
        let mut key = random_key(&mut rng, &consts);
        key.in_port = u32::try_from(pt).expect("port");
        // An output at an `out` location is delivered (seen on that port); one on
        // a wire's source port crosses the wire.
        let got = simulate(&pipes, sw, key, |s, p, _| Hop {
            delivered: hop.egress.contains(&(s, p)),
            crosses_to: hop.wires.iter().find(|w| w.0 == (s, p)).map(|w| w.1),
        });
        let want: BTreeSet<(u64, u64, String)> = eval(
            &prog,
            Packet {
                switch: sw,
                port: pt,
                headers: key,
            },
        )
        .expect("eval")
        .into_iter()
        .map(delivered_as)
        .collect();
        assert_eq!(got, want, "entering at {sw}@{pt}: {key:?}");
        delivered += want.len();
    }
    assert!(delivered > 100, "only {delivered} packets delivered");
}
