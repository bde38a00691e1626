//! Frenetic's example policies, read in place from the shared conformance corpus:
//! every `local` and `GLOBAL` file parses, compiles, and its tables (run in the
//! switch's classifier) agree with the reference evaluator; expected failures fail
//! with a positioned error.

mod common;

use common::*;
use controller::netkat::ir::{NoNames, Program, LOCATION_BASE};
use controller::netkat::semantics::{eval, Packet};
use controller::netkat::{self, parser, TableOptions};
use dataplane::table::Pipeline;
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

/// Runs a packet through a network of pipelines: outputs on a link's source port
/// cross the link (keeping their tag); others leave the network.
fn simulate_network(
    pipes: &HashMap<u64, Pipeline>,
    links: &[(u64, u64, u64, u64)],
    switch: u64,
    key: FlowKey,
) -> BTreeSet<(u64, u32, String)> {
    let mut out = BTreeSet::new();
    let mut todo = vec![(switch, key, 0)];
    while let Some((sw, k, hops)) = todo.pop() {
        assert!(hops < 64, "packet loops");
        let Some(pipe) = pipes.get(&sw) else { continue };
        for (p, mut o) in pipe.simulate(&k) {
            let p = if p == port::IN_PORT { k.in_port } else { p };
            let link = links.iter().find(|l| l.0 == sw && l.1 == u64::from(p));
            match link {
                Some(l) if o.vlan_vid != 0 => {
                    o.in_port = u32::try_from(l.3).expect("port");
                    todo.push((l.2, o, hops + 1));
                }
                // An untagged packet on a link port has finished the program
                // where a link starts; like the evaluator's, it is not an egress.
                Some(_) => {}
                None => {
                    assert_eq!(o.vlan_vid, 0, "a tagged packet left the network");
                    o.in_port = 0;
                    out.insert((sw, p, format!("{o:?}")));
                }
            }
        }
    }
    out
}

#[test]
fn global_files_compile_and_match_the_evaluator() {
    let mut files = 0;
    for (name, cat) in catalogue() {
        if !cat.starts_with("GLOBAL:") {
            continue;
        }
        let prog = program(&name);
        let compiled = netkat::compile(&prog);
        if name == "global/duplication1.kat" {
            // Two copies of one packet with different fields changed need an
            // OpenFlow group; without groups the compiler refuses, clearly.
            let e = compiled
                .and_then(|mut c| c.tables(TableOptions::default()))
                .expect_err(&name);
            assert!(e.to_string().contains("cannot copy a packet"), "{e}");
            continue;
        }
        let mut compiled = compiled.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(compiled.is_global());
        let links = netkat::global::links(&prog.pol);
        let mut pipes = HashMap::new();
        for (sw, t) in compiled
            .tables(TableOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"))
        {
            check_table(&t.flows);
            pipes.insert(sw, Pipeline::from_flows(t.flows).expect("install"));
        }
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
            let want: BTreeSet<(u64, u32, String)> = eval(
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
            .map(|p| {
                let mut h = p.headers;
                h.in_port = 0;
                (
                    p.switch,
                    u32::try_from(p.port).expect("port"),
                    format!("{h:?}"),
                )
            })
            .collect();
            assert_eq!(got, want, "{name}: switch {sw} packet {key:?}");
        }
        files += 1;
    }
    assert!(files >= 8, "{files}");
}
