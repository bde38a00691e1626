//! Networks of switches in the test harness: programs with links (the global
//! compiler) and end-to-end hop programs run switch by switch over their wires,
//! and their deliveries compared with the reference evaluator's.

use super::{check_table, constants, random_key, Rng};
use dataplane_core::pipeline::Pipeline;
use netkat::fdd::Fdd;
use netkat::ir::{HField, Program, LOCATION_BASE};
use netkat::semantics::{eval, Packet};
use netkat::{Groups, TableOptions};
use openflow::flow::{port, FlowKey};
use std::collections::{BTreeSet, HashMap, HashSet};

/// Where an output goes: whether it is delivered (seen leaving the network at
/// that port) and which location it reaches over a wire, if any.
pub struct Hop {
    pub delivered: bool,
    pub crosses_to: Option<(u64, u64)>,
}

/// Runs a packet through a network of pipelines; `route` says, for an output of
/// switch `sw` on port `p`, whether it is delivered and where it crosses to.
/// Returns the delivered packets as `(switch, port, headers)`; panics when a
/// packet is delivered twice.
pub fn simulate(
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
            // The evaluator's output is a set: a second copy of a packet
            // delivered is a copy too many, never something to merge here.
            if hop.delivered {
                let delivered = (sw, p, format!("{o:?}"));
                assert!(
                    out.insert(delivered.clone()),
                    "delivered twice: {delivered:?}"
                );
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
pub fn delivered_as(p: Packet) -> (u64, u64, String) {
    let mut h = p.headers;
    h.in_port = 0;
    (p.switch, p.port, format!("{h:?}"))
}

/// A network compiled by the global compiler, its links modelled as wires: every
/// output on a link's source port crosses the link. A tagged one continues the
/// program at the far switch; an untagged one is, for the far switch, a packet
/// entering the network there and is processed as such (the evaluator's output
/// at a link source is no egress, so whatever the far switch makes of it is a
/// delivery too many). Other outputs leave the network, untagged.
pub fn simulate_network(
    pipes: &HashMap<u64, Pipeline>,
    links: &[(u64, u64, u64, u64)],
    switch: u64,
    key: FlowKey,
) -> BTreeSet<(u64, u64, String)> {
    simulate(pipes, switch, key, |sw, p, o| {
        match links.iter().find(|l| (l.0, l.1) == (sw, p)) {
            Some(l) => Hop {
                delivered: false,
                crosses_to: Some((l.2, l.3)),
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

/// Compiles a program with links (groups allowed), checks every switch's table,
/// and sends `packets` untagged packets into the network at random switches: what
/// the tables deliver over the links must be what the evaluator delivers. Returns
/// how many groups the tables needed.
pub fn check_global(name: &str, prog: &Program, packets: usize, seed: u64) -> usize {
    let mut compiled = netkat::compile(prog).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(
        compiled.is_global(),
        "{name}: not compiled as a global program"
    );
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
    let consts = constants(prog);
    let mut rng = Rng(seed | 1);
    let switches: Vec<u64> = pipes.keys().copied().collect();
    for _ in 0..packets {
        let sw = switches[usize::try_from(rng.next() % switches.len() as u64).unwrap_or(0)];
        let mut key = random_key(&mut rng, &consts);
        key.vlan_vid = 0; // packets enter the network untagged
        key.vlan_pcp = 0;
        key.in_port = u32::try_from(rng.pick(HField::Port, &consts, &[1]) % 100).unwrap_or(1);
        let got = simulate_network(&pipes, &links, sw, key);
        let want: BTreeSet<(u64, u64, String)> = eval(
            prog,
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
    groups
}

/// The FDD of a whole program (links and moves included), evaluated on `packets`
/// random packets at random locations, gives exactly the evaluator's output.
/// Returns how many packets the evaluator output.
pub fn check_fdd(prog: &Program, packets: usize, seed: u64) -> usize {
    let mut fdd = Fdd::new();
    let root = fdd.compile(&prog.pol).expect("FDD");
    let consts = constants(prog);
    let mut rng = Rng(seed | 1);
    let mut delivered = 0;
    for _ in 0..packets {
        let pkt = Packet {
            switch: rng.pick(HField::Switch, &consts, &[7]),
            port: rng.pick(HField::Port, &consts, &[9]),
            headers: random_key(&mut rng, &consts),
        };
        let want = eval(prog, pkt).expect("eval");
        let got: HashSet<Packet> = fdd
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
    delivered
}

/// An end-to-end hop program (`in; (p; t)*; p; out`, its topology written as
/// moves), compiled: every switch runs its hop program (see `netkat::hops`), the
/// moves of `t` are wires, and a packet entering at an `in` location leaves at
/// exactly the `out` locations, with exactly the headers, the evaluator gives.
/// Returns the number of wires and of packets delivered.
pub fn check_hops(prog: &Program, packets: usize, seed: u64) -> (usize, usize) {
    let hop = netkat::hops::recognise(&prog.pol).expect("an end-to-end hop program");
    let mut compiled = netkat::compile(prog).expect("compiles");
    let mut pipes = HashMap::new();
    for (sw, t) in compiled.tables(TableOptions::default()).expect("tables") {
        check_table(&t.flows);
        pipes.insert(sw, Pipeline::from_flows(t.flows).expect("install"));
    }
    let consts = constants(prog);
    let mut rng = Rng(seed | 1);
    let mut delivered = 0;
    for i in 0..packets {
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
            prog,
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
    (hop.wires.len(), delivered)
}
