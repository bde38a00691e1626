use super::*;
use crate::pipeline::tests::tag_ports_then_table_1;
use crate::pipeline::Selector;
use openflow::flow::{Action, Field, FlowMatch, FlowSpec, Instruction};
use proptest::prelude::*;
use std::time::Instant;

/// Routing shaped like the controller's: a /32 per VM, a tunnel-only rule, and
/// a second table for the VMs of one port.
fn routing() -> Pipeline {
    let now = Instant::now();
    let mut p = Pipeline::default();
    for vm in 1..=4u32 {
        let m = FlowMatch::any()
            .with(Field::EthType, 0x800)
            .with(Field::Ipv4Dst, u128::from(0x6440_0100 + vm));
        p.add(FlowSpec::new(0, 100, m, vec![Action::output(vm)]), now)
            .unwrap();
    }
    let from_tunnel = FlowMatch::any().with(Field::InPort, 9);
    let to_next = FlowSpec {
        instructions: vec![Instruction::GotoTable(1)],
        ..FlowSpec::new(0, 200, from_tunnel, vec![])
    };
    p.add(to_next, now).unwrap();
    p.add(
        FlowSpec::new(1, 1, FlowMatch::any(), vec![Action::output(1)]),
        now,
    )
    .unwrap();
    p
}

fn tcp(in_port: u32, src: u32, dst: u32, sport: u16) -> FlowKey {
    FlowKey {
        in_port,
        eth_type: 0x800,
        ip_proto: 6,
        ipv4_src: src,
        ipv4_dst: dst,
        l4_src: sport,
        l4_dst: 80,
        ..FlowKey::default()
    }
}

#[test]
fn a_new_connection_between_known_hosts_hits() {
    let p = routing();
    let mut cache = MegaflowCache::default();
    let first = cache
        .lookup(&p, &tcp(1, 0x6440_0101, 0x6440_0102, 40_000))
        .clone();
    assert_eq!(first.actions, vec![Action::output(2)]);
    for sport in 40_001..40_100 {
        let c = cache.lookup(&p, &tcp(1, 0x6440_0101, 0x6440_0102, sport));
        assert_eq!(c.actions, first.actions);
    }
    assert_eq!(cache.stats().misses, 1);
    assert_eq!(cache.stats().hits, 99);
    assert_eq!(cache.len(), 1);
}

/// What each entry has room for, which grows only when something allocated.
fn rooms(cache: &MegaflowCache) -> Vec<(usize, usize, usize)> {
    cache
        .entries
        .iter()
        .map(|e| {
            let c = &e.classification;
            (c.actions.capacity(), c.hits.capacity(), c.tables.capacity())
        })
        .collect()
}

#[test]
fn misses_allocate_nothing() {
    let p = routing();
    let mut cache = MegaflowCache::with_capacity(16);
    let index_room = cache.index.capacity();
    let room = rooms(&cache);
    // Many more megaflows than entries: the cache starts over, never grows.
    for dst in 0..200u32 {
        cache.lookup(&p, &tcp(1 + dst % 9, 0x6440_0101, 0x6440_0100 + dst, 1));
    }
    assert!(cache.stats().misses >= 200 - 4 * 9);
    assert_eq!(cache.index.capacity(), index_room);
    assert_eq!(cache.masks.capacity(), MAX_MASKS);
    assert_eq!(rooms(&cache), room);
}

#[test]
fn a_table_change_empties_it() {
    let now = Instant::now();
    let mut p = routing();
    let mut cache = MegaflowCache::default();
    let key = tcp(1, 0x6440_0101, 0x6440_0102, 40_000);
    assert_eq!(cache.lookup(&p, &key).actions, vec![Action::output(2)]);
    let m = FlowMatch::any().with(Field::L4Src, 40_000);
    p.add(FlowSpec::new(0, 300, m, vec![Action::output(7)]), now)
        .unwrap();
    assert_eq!(cache.lookup(&p, &key).actions, vec![Action::output(7)]);
    assert_eq!(cache.stats().invalidations, 1);
}

fn arb_key() -> impl Strategy<Value = FlowKey> {
    (
        0u32..4,
        0u32..4,
        0u32..4,
        0u16..4,
        prop_oneof![Just(0x800u16), Just(0x806)],
    )
        .prop_map(|(in_port, src, dst, sport, eth_type)| FlowKey {
            eth_type,
            ..tcp(in_port, 0x6440_0100 + src, 0x6440_0100 + dst, sport)
        })
}

fn arb_match() -> impl Strategy<Value = FlowMatch> {
    (
        proptest::option::of(0u32..4),
        proptest::option::of((0u32..4, prop_oneof![Just(24u8), Just(31), Just(32)])),
        proptest::option::of(0u16..4),
        any::<bool>(),
        proptest::option::of(0u64..4),
    )
        .prop_map(|(in_port, dst, sport, ip, metadata)| {
            let mut m = FlowMatch::any();
            if let Some(v) = metadata {
                m = m.with_masked(Field::Metadata, v.into(), 3);
            }
            if let Some(p) = in_port {
                m = m.with(Field::InPort, p.into());
            }
            if ip || dst.is_some() || sport.is_some() {
                m = m.with(Field::EthType, 0x800);
            }
            if let Some((d, len)) = dst {
                m = m.with_prefix32(Field::Ipv4Dst, 0x6440_0100 + d, len);
            }
            if let Some(s) = sport {
                m = m.with(Field::IpProto, 6).with(Field::L4Src, s.into());
            }
            m
        })
}

#[derive(Clone, Debug)]
enum Op {
    Add(u8, u16, FlowMatch, u32, bool),
    Delete(FlowMatch),
    Lookup(FlowKey),
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..2, 0u16..4, arb_match(), 1u32..5, any::<bool>())
            .prop_map(|(t, prio, m, out, goto)| Op::Add(t, prio, m, out, goto)),
        arb_match().prop_map(Op::Delete),
        arb_key().prop_map(Op::Lookup),
        arb_key().prop_map(Op::Lookup),
        arb_key().prop_map(Op::Lookup),
    ]
}

proptest! {
    // Whatever the tables (two of them, goto, set-field and write-metadata before
    // the goto, metadata matches, write-actions at the end) and whatever sequence of
    // changes and lookups, a megaflow answers exactly what the classifier answers
    // for the packet at hand.
    #[test]
    fn megaflows_agree_with_the_classifier(ops in proptest::collection::vec(arb_op(), 1..80), room in 1usize..8) {
        let now = Instant::now();
        let mut p = Pipeline::default();
        let mut cache = MegaflowCache::with_capacity(room);
        for op in ops {
            match op {
                Op::Add(table, prio, m, out, goto) => {
                    let mut actions = vec![Action::output(out)];
                    let mut instructions = Vec::new();
                    if goto && table == 0 {
                        actions.insert(0, Action::SetField { field: Field::L4Src, value: u128::from(out) });
                        instructions.push(Instruction::WriteMetadata { value: u64::from(out), mask: 3 });
                        instructions.push(Instruction::GotoTable(1));
                    }
                    if goto && table == 1 {
                        instructions.insert(0, Instruction::WriteActions(actions));
                    } else {
                        instructions.insert(0, Instruction::ApplyActions(actions));
                    }
                    let spec = FlowSpec { instructions, ..FlowSpec::new(table, prio, m, vec![]) };
                    p.add(spec, now).unwrap();
                }
                Op::Delete(m) => {
                    p.delete(&Selector::loose(0, &m)).unwrap();
                }
                Op::Lookup(key) => {
                    let mut direct = Classification::default();
                    p.classify(&key, &mut direct);
                    let cached = cache.lookup(&p, &key);
                    prop_assert_eq!(&cached.actions, &direct.actions);
                    prop_assert_eq!(&cached.hits, &direct.hits);
                    prop_assert_eq!(&cached.tables, &direct.tables);
                    prop_assert_eq!(&cached.to_controller, &direct.to_controller);
                }
            }
        }
    }
}

#[test]
fn metadata_written_by_one_table_steers_the_next_and_megaflows_keep_it_apart() {
    let now = Instant::now();
    let mut p = Pipeline::default();
    // Table 0 tags the packet with its port's metadata; table 1 outputs by tag.
    tag_ports_then_table_1(&mut p, now);
    for port in 1..=2u32 {
        let by_tag = FlowMatch::any().with_masked(Field::Metadata, u128::from(port) << 8, 0xff00);
        p.add(
            FlowSpec::new(1, 10, by_tag, vec![Action::output(10 + port)]),
            now,
        )
        .unwrap();
    }
    let mut cache = MegaflowCache::default();
    for _ in 0..2 {
        for port in 1..=2u32 {
            let key = tcp(port, 1, 2, 3);
            assert_eq!(
                cache.lookup(&p, &key).actions,
                vec![Action::output(10 + port)]
            );
        }
    }
    assert_eq!(cache.stats().hits, 2);
}

#[test]
fn a_megaflow_hit_reports_the_metadata_of_each_output_to_the_controller() {
    let now = Instant::now();
    let mut p = Pipeline::default();
    tag_ports_then_table_1(&mut p, now);
    let to_controller = vec![Action::output(openflow::flow::port::CONTROLLER)];
    let learn = p
        .add(FlowSpec::new(1, 1, FlowMatch::any(), to_controller), now)
        .unwrap();
    let mut cache = MegaflowCache::default();
    for sport in 1..=50u16 {
        for port in 1..=2u32 {
            let c = cache.lookup(&p, &tcp(port, 1, 2, sport));
            assert_eq!(
                c.to_controller,
                [crate::pipeline::ControllerOutput {
                    entry: learn,
                    metadata: u64::from(port) << 8
                }]
            );
        }
    }
    assert_eq!((cache.stats().misses, cache.stats().hits), (2, 98));
}
