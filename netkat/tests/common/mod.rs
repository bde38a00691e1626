//! Test harness: runs compiled tables in the switch's own classifier
//! (`dataplane_core::pipeline::Pipeline`) and compares what leaves with the reference
//! evaluator, packet by packet.
#![allow(dead_code)]

pub mod network;

use dataplane_core::pipeline::Pipeline;
use netkat::ir::{CPol, CPred, HField, Program, LOCATION_BASE};
use netkat::semantics::{eval, Packet};
use netkat::{Groups, TableOptions};
use openflow::flow::{port, FlowKey, FlowSpec, Mac, PortNo, VLAN_PRESENT};
use std::collections::{BTreeSet, HashMap};

/// The values a program mentions, per field (tests and assignments).
pub fn constants(prog: &Program) -> HashMap<HField, BTreeSet<u64>> {
    fn pred(a: &CPred, out: &mut HashMap<HField, BTreeSet<u64>>) {
        match a {
            CPred::True | CPred::False => {}
            CPred::Test(p) => {
                out.entry(p.field).or_default().insert(p.value);
                // A value just inside and just outside a prefix.
                out.entry(p.field).or_default().insert(p.value | 1);
                out.entry(p.field)
                    .or_default()
                    .insert(p.value ^ (1 << 20).min(p.value.max(1)));
            }
            CPred::Not(x) => pred(x, out),
            CPred::And(x, y) | CPred::Or(x, y) => {
                pred(x, out);
                pred(y, out);
            }
        }
    }
    fn pol(p: &CPol, out: &mut HashMap<HField, BTreeSet<u64>>) {
        match p {
            CPol::Filter(a) => pred(a, out),
            CPol::Mod(f, v) => {
                out.entry(*f).or_default().insert(*v);
            }
            CPol::Union(x, y) | CPol::Seq(x, y) => {
                pol(x, out);
                pol(y, out);
            }
            CPol::Star(x) | CPol::Let { body: x, .. } => pol(x, out),
            CPol::Dup => {}
            CPol::Link { s1, p1, s2, p2, .. } => {
                out.entry(HField::Switch).or_default().extend([*s1, *s2]);
                out.entry(HField::Port).or_default().extend([*p1, *p2]);
            }
        }
    }
    let mut out = HashMap::new();
    pol(&prog.pol, &mut out);
    out
}

/// A small deterministic generator.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn pick(
        &mut self,
        f: HField,
        consts: &HashMap<HField, BTreeSet<u64>>,
        other: &[u64],
    ) -> u64 {
        let mut vals: Vec<u64> = consts
            .get(&f)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        vals.extend_from_slice(other);
        let n = u64::try_from(vals.len()).unwrap_or(1).max(1);
        vals.get(usize::try_from(self.next() % n).unwrap_or(0))
            .copied()
            .unwrap_or(0)
    }
}

/// A well-formed packet (untagged frames have PCP 0) built from the program's
/// constants and a few others.
pub fn random_key(rng: &mut Rng, consts: &HashMap<HField, BTreeSet<u64>>) -> FlowKey {
    let mut k = FlowKey::default();
    let p = |rng: &mut Rng, f, other: &[u64]| rng.pick(f, consts, other);
    k.eth_type =
        u16::try_from(p(rng, HField::EthType, &[0x800, 0x806, 0x86dd]) & 0xffff).unwrap_or(0);
    let vid = p(rng, HField::VlanVid, &[0, u64::from(VLAN_PRESENT) | 9]);
    k.vlan_vid = if vid == 0 {
        0
    } else {
        u16::try_from((vid & 0xfff) | u64::from(VLAN_PRESENT)).unwrap_or(0)
    };
    k.vlan_pcp = if k.vlan_vid == 0 {
        0
    } else {
        u8::try_from(p(rng, HField::VlanPcp, &[0, 3]) & 7).unwrap_or(0)
    };
    k.eth_src = Mac::from_u64(p(rng, HField::EthSrc, &[1, 7]));
    k.eth_dst = Mac::from_u64(p(rng, HField::EthDst, &[2, 8]));
    k.ip_proto = u8::try_from(p(rng, HField::IpProto, &[6, 17, 1]) & 0xff).unwrap_or(0);
    k.ipv4_src = u32::try_from(p(rng, HField::Ip4Src, &[0x0a00_0001, 0xc0a8_0001]) & 0xffff_ffff)
        .unwrap_or(0);
    k.ipv4_dst = u32::try_from(p(rng, HField::Ip4Dst, &[0x0a00_0002, 0x6440_0001]) & 0xffff_ffff)
        .unwrap_or(0);
    // Each IPv6 address from halves the program mentions, mixed.
    let half = |rng: &mut Rng, f, other: &[u64]| u128::from(p(rng, f, other));
    k.ipv6_src = half(rng, HField::Ip6SrcHi, &[0x2001_0db8 << 32, 0xfd00 << 48]) << 64
        | half(rng, HField::Ip6SrcLo, &[1, 2]);
    k.ipv6_dst = half(rng, HField::Ip6DstHi, &[0xfd00_0000_0001 << 16, 0]) << 64
        | half(rng, HField::Ip6DstLo, &[1, 0xff]);
    k.l4_src = u16::try_from(p(rng, HField::L4Src, &[80, 5000]) & 0xffff).unwrap_or(0);
    k.l4_dst = u16::try_from(p(rng, HField::L4Dst, &[443, 53]) & 0xffff).unwrap_or(0);
    k
}

/// What the evaluator says leaves a switch, as `(output port, headers)`.
pub fn expected(prog: &Program, switch: u64, key: &FlowKey) -> BTreeSet<(PortNo, String)> {
    let pkt = Packet {
        switch,
        port: u64::from(key.in_port),
        headers: *key,
    };
    let outs = eval(prog, pkt).expect("evaluation");
    outs.into_iter()
        .filter(|p| p.port != 0)
        .map(|p| {
            let port = if p.port >= LOCATION_BASE {
                port::CONTROLLER
            } else {
                u32::try_from(p.port).expect("port")
            };
            let mut h = p.headers;
            h.in_port = 0;
            (port, format!("{h:?}"))
        })
        .collect()
}

/// What the tables do to a packet, with `IN_PORT` resolved; panics on a
/// duplicated output (NetKAT's semantics is a set).
pub fn actual(pipe: &Pipeline, key: &FlowKey) -> BTreeSet<(PortNo, String)> {
    let mut out = BTreeSet::new();
    for (p, mut k) in pipe.simulate(key) {
        let p = if p == port::IN_PORT { key.in_port } else { p };
        k.in_port = 0;
        assert!(
            out.insert((p, format!("{k:?}"))),
            "duplicate packet out of port {p} for {key:?}"
        );
    }
    out
}

/// Structural checks every table must pass: OpenFlow prerequisites hold, no rule is
/// shadowed by a higher one, overlapping rules that act differently never share a
/// priority.
pub fn check_table(flows: &[FlowSpec]) {
    for (i, f) in flows.iter().enumerate() {
        f.matcher
            .check_prerequisites()
            .unwrap_or_else(|e| panic!("rule {i} {f:?}: {e}"));
        for g in &flows[..i] {
            if g.priority > f.priority {
                assert!(
                    !g.matcher.covers(&f.matcher),
                    "rule {f:?} is shadowed by {g:?}"
                );
            }
            // Overlapping rules of one priority are only allowed when it does not
            // matter which one a switch picks (the drop rules of an ACL).
            if g.priority == f.priority && g.instructions != f.instructions {
                assert!(
                    !g.matcher.overlaps(&f.matcher),
                    "same priority overlap: {f:?} / {g:?}"
                );
            }
        }
    }
}

/// Compiles a local program (groups allowed) and compares every switch's table, run
/// with its groups, with the evaluator on
/// `n` random packets per switch; returns how many packets were compared.
pub fn check_local(prog: &Program, n: usize, seed: u64) -> Result<usize, netkat::CompileError> {
    let mut compiled = netkat::compile(prog)?;
    let consts = constants(prog);
    let mut switches = compiled.switches().to_vec();
    switches.push(switches.iter().max().map_or(1, |m| m + 1)); // a switch the policy does not name
    let mut rng = Rng(seed | 1);
    let mut checked = 0;
    for sw in switches {
        let table = compiled.table_with(sw, TableOptions::default(), Groups::Allowed)?;
        check_table(&table.flows);
        let pipe = Pipeline::from_groups_and_flows(table.groups.clone(), table.flows.clone())
            .expect("tables install");
        for _ in 0..n {
            let mut key = random_key(&mut rng, &consts);
            key.in_port = u32::try_from(rng.pick(HField::Port, &consts, &[1, 2, 3]) % 8)
                .unwrap_or(1)
                .max(1);
            let want = expected(prog, sw, &key);
            let got = actual(&pipe, &key);
            assert_eq!(
                got,
                want,
                "switch {sw}, packet {key:?}\ntable:\n{}",
                dump(&table.flows)
            );
            checked += 1;
        }
    }
    Ok(checked)
}

pub fn dump(flows: &[FlowSpec]) -> String {
    flows
        .iter()
        .map(|f| openflow::text::format_flow(f) + "\n")
        .collect()
}

/// A policy that must be refused with a positioned error: the message mentions
/// `needle`, the error points at `line:col`, and its rendering names the file and
/// position and draws a caret.
pub fn check_refused(name: &str, src: &str, line: usize, col: usize, needle: &str) {
    let d = netkat::check(src, &netkat::ir::NoNames).expect_err(name);
    assert!(d.message.contains(needle), "{name}: {}", d.message);
    assert_eq!(d.line_col(src), Some((line, col)), "{name}");
    let text = d.render(name, src);
    assert!(
        text.contains(&format!("{name}:{line}:{col}")) && text.contains('^'),
        "{text}"
    );
}
