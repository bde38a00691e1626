//! Unit tests of the pipeline: flow-mod semantics, groups, timeouts, classification.

use super::*;
use openflow::flow::{port, Bucket, Field, FlowMatch, GroupType, GROUP_MAX};
use proptest::prelude::Just;
use std::time::Duration;

fn any_u32() -> impl proptest::strategy::Strategy<Value = u32> {
    // Few distinct addresses, so prefixes overlap often.
    proptest::prelude::prop_oneof![
        Just(0x6440_0001u32),
        Just(0x6440_0102),
        Just(0x6440_ff01),
        Just(0x0a00_0001)
    ]
}

fn key(in_port: u32, dst: u32) -> FlowKey {
    FlowKey {
        in_port,
        eth_type: 0x800,
        ipv4_dst: dst,
        ..FlowKey::default()
    }
}

fn out(p: u32) -> Vec<Action> {
    vec![Action::output(p)]
}

#[test]
fn highest_priority_wins_and_miss_drops() {
    let now = Instant::now();
    let mut p = Pipeline::default();
    let ip = FlowMatch::any().with(Field::EthType, 0x800);
    p.add(FlowSpec::new(0, 10, ip, out(1)), now).unwrap();
    p.add(
        FlowSpec::new(0, 20, ip.with_prefix32(Field::Ipv4Dst, 5, 32), out(2)),
        now,
    )
    .unwrap();
    assert_eq!(p.simulate(&key(9, 5))[0].0, 2);
    assert_eq!(p.simulate(&key(9, 6))[0].0, 1);
    let arp = FlowKey {
        eth_type: 0x806,
        ..FlowKey::default()
    };
    assert!(p.simulate(&arp).is_empty());
}

#[test]
fn goto_matches_rewritten_packet() {
    let now = Instant::now();
    let mut p = Pipeline::default();
    let mut first = FlowSpec::new(0, 1, FlowMatch::any(), vec![Action::set(Field::Ipv4Dst, 7)]);
    first.instructions.push(Instruction::GotoTable(3));
    p.add(first, now).unwrap();
    p.add(
        FlowSpec::new(3, 1, FlowMatch::any().with(Field::Ipv4Dst, 7), out(4)),
        now,
    )
    .unwrap();
    let result = p.simulate(&key(1, 1));
    assert_eq!(result.len(), 1);
    assert_eq!(result[0].0, 4);
    assert_eq!(result[0].1.ipv4_dst, 7);
}

#[test]
fn backward_goto_is_refused() {
    let mut spec = FlowSpec::new(2, 1, FlowMatch::any(), vec![]);
    spec.instructions.push(Instruction::GotoTable(1));
    let err = Pipeline::default().add(spec, Instant::now()).unwrap_err();
    assert!(matches!(err, TableError::BadGoto { .. }));
}

#[test]
fn add_replaces_identical_and_check_overlap_refuses() {
    let now = Instant::now();
    let mut p = Pipeline::default();
    let m = FlowMatch::any().with(Field::InPort, 1);
    p.add(FlowSpec::new(0, 5, m, out(1)), now).unwrap();
    p.add(FlowSpec::new(0, 5, m, out(2)), now).unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(p.simulate(&key(1, 0))[0].0, 2);
    let mut overlapping = FlowSpec::new(0, 5, FlowMatch::any().with(Field::EthType, 0x800), out(3));
    overlapping.flags = flags::CHECK_OVERLAP;
    assert_eq!(p.add(overlapping, now), Err(TableError::Overlap(5)));
}

#[test]
fn delete_and_modify_select_by_cover_cookie_and_out_port() {
    let now = Instant::now();
    let mut p = Pipeline::default();
    for (i, port) in [(1u32, 10u32), (2, 20), (3, 10)] {
        let mut spec = FlowSpec::new(
            0,
            1,
            FlowMatch::any().with(Field::InPort, i.into()),
            out(port),
        );
        spec.cookie = u64::from(i);
        p.add(spec, now).unwrap();
    }
    let gen = p.generation();
    let any = FlowMatch::any();
    let mut by_port = Selector::loose(ALL_TABLES, &any);
    by_port.out_port = 10;
    assert_eq!(p.delete(&by_port).unwrap().len(), 2);
    assert!(p.generation() > gen);
    assert_eq!(p.len(), 1);
    let mut by_cookie = Selector::loose(0, &any);
    by_cookie.cookie = 2;
    by_cookie.cookie_mask = u64::MAX;
    let changed = p
        .modify(&by_cookie, &[Instruction::ApplyActions(out(30))], false)
        .unwrap();
    assert_eq!(changed, 1);
    assert_eq!(p.simulate(&key(2, 0))[0].0, 30);
    let m = FlowMatch::any().with(Field::InPort, 2);
    assert_eq!(p.delete(&Selector::strict(0, &m, 2)).unwrap().len(), 0);
    assert_eq!(p.delete(&Selector::strict(0, &m, 1)).unwrap().len(), 1);
    assert!(p.is_empty());
}

/// The reference: the first entry in priority order (oldest first) that matches.
fn linear(p: &Pipeline, key: &FlowKey) -> Option<FlowId> {
    p.tables[0]
        .ids(&p.entries)
        .find(|id| p.entry(*id).is_some_and(|e| e.spec.matcher.matches(key)))
}

proptest::proptest! {
    // Tuple-space search picks exactly the entry a linear scan in priority and
    // insertion order picks, whatever the masks, priorities and deletions.
    #[test]
    fn tuple_space_agrees_with_a_linear_scan(
        rules in proptest::collection::vec((0u16..4, 0u8..4, any_u32(), 0u8..33, proptest::option::of(0u16..4)), 1..40),
        deletes in proptest::collection::vec(0usize..40, 0..10),
        keys in proptest::collection::vec((any_u32(), 0u16..4, 0u32..3), 1..40),
    ) {
        let now = Instant::now();
        let mut p = Pipeline::default();
        for (prio, shape, addr, len, l4) in &rules {
            let mut m = FlowMatch::any().with(Field::EthType, 0x800);
            if shape & 1 != 0 {
                m = m.with_prefix32(Field::Ipv4Dst, *addr, *len);
            }
            if shape & 2 != 0 {
                m = m.with(Field::InPort, u128::from(*addr % 3));
            }
            if let Some(port) = l4 {
                m = m.with(Field::L4Dst, u128::from(*port));
            }
            p.add(FlowSpec::new(0, *prio, m, out(u32::from(*prio) + 1)), now).unwrap();
        }
        let ids: Vec<FlowId> = p.tables[0].ids(&p.entries).collect();
        for d in deletes {
            if let Some(id) = ids.get(d) {
                if let Some(e) = p.entry(*id) {
                    let m = e.spec.matcher;
                    let prio = e.spec.priority;
                    p.delete(&Selector::strict(0, &m, prio)).unwrap();
                }
            }
        }
        for (dst, port, in_port) in keys {
            let key = FlowKey { in_port, eth_type: 0x800, ipv4_dst: dst, l4_dst: port, ..FlowKey::default() };
            proptest::prop_assert_eq!(p.tables[0].lookup_consulting(&key, None), linear(&p, &key));
        }
    }

    // Adds replace by (table, priority, match), deletes remove: the table always
    // holds exactly one entry per identity, with the last add's actions.
    #[test]
    fn one_entry_per_identity(ops in proptest::collection::vec((0u8..3, 0u16..3, 0u32..3, 0u32..9), 1..80)) {
        let now = Instant::now();
        let mut p = Pipeline::default();
        let mut model = std::collections::HashMap::new();
        for (op, prio, in_port, outp) in ops {
            let m = FlowMatch::any().with(Field::InPort, in_port.into());
            if op == 0 {
                p.delete(&Selector::strict(0, &m, prio)).unwrap();
                model.remove(&(prio, in_port));
            } else {
                p.add(FlowSpec::new(0, prio, m, out(outp + 1)), now).unwrap();
                model.insert((prio, in_port), outp + 1);
            }
            proptest::prop_assert_eq!(p.len(), model.len());
        }
        for e in p.entries(0) {
            let in_port = u32::try_from(e.spec.matcher.exact(Field::InPort).unwrap()).unwrap();
            let want = model[&(e.spec.priority, in_port)];
            proptest::prop_assert_eq!(&e.spec.instructions, &vec![Instruction::ApplyActions(out(want))]);
        }
    }
}

#[test]
fn timeouts_expire_entries() {
    let now = Instant::now();
    let mut p = Pipeline::default();
    let mut idle = FlowSpec::new(0, 1, FlowMatch::any().with(Field::InPort, 1), out(1));
    idle.idle_timeout = 2;
    let mut hard = FlowSpec::new(0, 1, FlowMatch::any().with(Field::InPort, 2), out(1));
    hard.hard_timeout = 5;
    let idle_id = p.add(idle, now).unwrap();
    p.add(hard, now).unwrap();
    p.account(&[idle_id], &[(0, true)], 100, now + Duration::from_secs(1));
    assert!(p.expire(now + Duration::from_secs(2)).is_empty());
    let gone = p.expire(now + Duration::from_secs(3));
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].reason, RemovedReason::IdleTimeout);
    assert_eq!(gone[0].entry.packets(), 1);
    assert_eq!(gone[0].entry.bytes(), 100);
    let gone = p.expire(now + Duration::from_secs(5));
    assert_eq!(gone[0].reason, RemovedReason::HardTimeout);
    assert_eq!(p.table_stats(0).unwrap().lookups, 1);
}

fn all_group(id: u32, buckets: Vec<Vec<Action>>) -> GroupSpec {
    GroupSpec {
        group_id: id,
        group_type: GroupType::All,
        buckets: buckets.into_iter().map(Bucket::new).collect(),
    }
}

#[test]
fn group_mods_follow_the_openflow_rules() {
    let now = Instant::now();
    let mut p = Pipeline::default();
    let g = all_group(1, vec![out(1), out(2)]);
    let before = p.generation();
    p.add_group(g.clone(), now).unwrap();
    assert!(p.generation() > before);
    assert_eq!(p.add_group(g.clone(), now), Err(GroupError::Exists(1)));
    assert_eq!(
        p.modify_group(all_group(2, vec![out(1)])),
        Err(GroupError::Unknown(2))
    );
    let chained = all_group(3, vec![vec![Action::Group(1)]]);
    assert_eq!(
        p.add_group(chained, now),
        Err(GroupError::ChainingUnsupported(3))
    );
    let indirect = GroupSpec {
        group_type: GroupType::Indirect,
        ..all_group(4, vec![out(1), out(2)])
    };
    assert!(matches!(
        p.add_group(indirect, now),
        Err(GroupError::Invalid(4, _))
    ));
    assert!(matches!(
        p.add_group(all_group(GROUP_MAX + 1, vec![]), now),
        Err(GroupError::Invalid(..))
    ));
    assert_eq!(
        p.add_group(all_group(5, vec![out(port::TABLE)]), now),
        Err(GroupError::BadBucket(5, port::TABLE))
    );
    // A flow may name only an existing group.
    let uses = |g: u32| FlowSpec::new(0, 1, FlowMatch::any(), vec![Action::Group(g)]);
    assert_eq!(p.add(uses(9), now), Err(TableError::BadOutGroup(9)));
    let before = p.generation();
    p.modify_group(all_group(1, vec![out(3)])).unwrap();
    assert!(p.generation() > before, "the cache must forget old buckets");
    assert_eq!(p.groups().buckets(1).unwrap(), &[Bucket::new(out(3))]);
}

#[test]
fn deleting_a_group_deletes_the_flows_that_run_it() {
    let now = Instant::now();
    let mut p = Pipeline::default();
    p.add_group(all_group(1, vec![out(1)]), now).unwrap();
    p.add_group(all_group(2, vec![out(2)]), now).unwrap();
    let by_port = |i: u32, g: u32| {
        FlowSpec::new(
            0,
            1,
            FlowMatch::any().with(Field::InPort, u128::from(i)),
            vec![Action::Group(g)],
        )
    };
    p.add(by_port(1, 1), now).unwrap();
    p.add(by_port(2, 2), now).unwrap();
    p.add(FlowSpec::new(0, 0, FlowMatch::any(), out(3)), now)
        .unwrap();
    let gone = p.delete_group(1);
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].reason, RemovedReason::GroupDelete);
    assert_eq!(gone[0].entry.spec, by_port(1, 1));
    assert!(p.groups().get(1).is_none());
    assert!(p.delete_group(1).is_empty(), "an absent group is no error");
    let gone = p.delete_group(openflow::flow::GROUP_ALL);
    assert_eq!(gone.len(), 1);
    assert!(p.groups().is_empty());
    assert_eq!(p.len(), 1);
}

#[test]
fn simulate_runs_every_bucket_on_a_copy_and_goto_sees_the_original() {
    let now = Instant::now();
    let mut p = Pipeline::default();
    p.add_group(
        all_group(
            1,
            vec![
                vec![Action::set(Field::Ipv4Src, 9), Action::output(1)],
                vec![Action::set(Field::Ipv4Dst, 8), Action::output(2)],
            ],
        ),
        now,
    )
    .unwrap();
    let mut first = FlowSpec::new(0, 1, FlowMatch::any(), vec![Action::Group(1)]);
    first.instructions.push(Instruction::GotoTable(1));
    p.add(first, now).unwrap();
    p.add(
        FlowSpec::new(1, 1, FlowMatch::any().with(Field::Ipv4Dst, 5), out(3)),
        now,
    )
    .unwrap();
    let k = key(7, 5);
    let got = p.simulate(&k);
    let ports: Vec<PortNo> = got.iter().map(|(p, _)| *p).collect();
    assert_eq!(ports, vec![1, 2, 3]);
    assert_eq!((got[0].1.ipv4_src, got[0].1.ipv4_dst), (9, 5));
    assert_eq!((got[1].1.ipv4_src, got[1].1.ipv4_dst), (0, 8));
    assert_eq!(got[2].1, k);
}

/// Every entry of every table as (table, priority, cookie, packets).
fn contents(p: &Pipeline) -> Vec<(u8, u16, u64, u64)> {
    (0..p.n_tables())
        .flat_map(|t| p.entries(t))
        .map(|e| (e.spec.table_id, e.spec.priority, e.spec.cookie, e.packets()))
        .collect()
}

/// Tables with an IPv4 entry of cookie 0x77 at priority 50 (returned) and a
/// catch-all of cookie 5 at priority 10.
fn two_owners(now: Instant) -> (Pipeline, FlowId) {
    let mut p = Pipeline::default();
    let mut other = FlowSpec::new(0, 50, FlowMatch::any().with(Field::EthType, 0x800), out(3));
    other.cookie = 0x77;
    let other_id = p.add(other, now).unwrap();
    p.replace_cookie(5, [FlowSpec::new(0, 10, FlowMatch::any(), out(1))], now)
        .unwrap();
    (p, other_id)
}

#[test]
fn replace_cookie_swaps_only_its_own_entries_and_keeps_the_others_counters() {
    let now = Instant::now();
    let (mut p, other_id) = two_owners(now);
    let ip = FlowMatch::any().with(Field::EthType, 0x800);
    p.account(&[other_id], &[(0, true)], 100, now);
    let generation = p.generation();

    let removed = p
        .replace_cookie(5, [FlowSpec::new(1, 20, ip, out(2))], now)
        .unwrap();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].entry.spec.priority, 10);
    assert_eq!(contents(&p), vec![(0, 50, 0x77, 1), (1, 20, 5, 0)]);
    assert_eq!(p.table_stats(0).unwrap().lookups, 1, "table counters stay");
    assert!(p.generation() > generation);
    // The copy that replaced the tables classifies like them.
    assert_eq!(p.simulate(&key(1, 9))[0].0, 3);
}

#[test]
fn a_refused_batch_changes_nothing_and_names_its_flow() {
    let now = Instant::now();
    let (mut p, _) = two_owners(now);
    let ip = FlowMatch::any().with(Field::EthType, 0x800);
    let (before, generation) = (contents(&p), p.generation());

    let good = FlowSpec::new(0, 11, FlowMatch::any(), out(2));
    let mut goto = FlowSpec::new(0, 12, ip, out(2));
    goto.instructions.push(Instruction::GotoTable(254));
    let refusals = [
        FlowSpec::new(254, 1, FlowMatch::any(), out(1)),
        goto,
        FlowSpec::new(0, 1, FlowMatch::any(), vec![Action::Group(4)]),
        FlowSpec::new(0, 50, ip, out(1)),
    ];
    for bad in refusals {
        let error = p.replace_cookie(5, [good.clone(), bad], now).unwrap_err();
        assert_eq!(error.index, 1, "{error}");
        assert_eq!((contents(&p), p.generation()), (before.clone(), generation));
    }
    let held = p
        .replace_cookie(5, [FlowSpec::new(0, 50, ip, out(1))], now)
        .unwrap_err();
    assert_eq!(
        held.refusal,
        BatchRefusal::Held {
            table: 0,
            priority: 50,
            cookie: 0x77
        }
    );
}

#[test]
fn set_field_of_a_match_only_field_is_refused_with_bad_set_type() {
    use crate::translate::{group_error_code, table_error_code};
    use openflow::wire::{BadAction, ErrorCode};
    let now = Instant::now();
    let mut p = Pipeline::default();
    let bad_set_type = ErrorCode::BadAction(BadAction::BadSetType);
    for field in [Field::InPort, Field::EthType, Field::IpProto] {
        let writes = vec![Action::set(field, 1), Action::output(1)];
        let refused = p
            .add(FlowSpec::new(0, 1, FlowMatch::any(), writes.clone()), now)
            .unwrap_err();
        assert_eq!(refused, TableError::BadSetField(field));
        assert_eq!(table_error_code(&refused), bad_set_type);
        let refused = p.add_group(all_group(7, vec![writes]), now).unwrap_err();
        assert_eq!(refused, GroupError::BadSetField(7, field));
        assert_eq!(group_error_code(&refused), bad_set_type);
    }
    assert!(p.is_empty(), "nothing refused was installed");
    // Every other field is written, so the same flow with one of them goes in.
    for field in Field::ALL.into_iter().filter(|f| super::writable(*f)) {
        let writes = vec![Action::set(field, 1), Action::output(1)];
        p.add(FlowSpec::new(0, 1, FlowMatch::any(), writes), now)
            .unwrap();
    }
}

#[test]
fn every_openflow_table_is_offered_and_counted() {
    let now = Instant::now();
    let mut p = Pipeline::default();
    assert_eq!(p.n_tables(), 254);
    let mut first = FlowSpec::new(0, 1, FlowMatch::any(), vec![]);
    first.instructions.push(Instruction::GotoTable(200));
    p.add(first, now).unwrap();
    let mut middle = FlowSpec::new(200, 1, FlowMatch::any(), vec![]);
    middle.instructions.push(Instruction::GotoTable(253));
    p.add(middle, now).unwrap();
    p.add(FlowSpec::new(253, 1, FlowMatch::any(), out(7)), now)
        .unwrap();
    assert!(p
        .add(FlowSpec::new(254, 1, FlowMatch::any(), out(7)), now)
        .is_err());
    assert_eq!(p.simulate(&key(1, 2))[0].0, 7);
    let mut c = Classification::default();
    p.classify(&key(1, 2), &mut c);
    p.account(&c.hits, &c.tables, 60, now);
    assert_eq!(p.table_stats(253).map(|s| s.matched), Some(1));
    assert_eq!(p.table_stats(100), Some(TableStats::default()));
    assert_eq!(p.table_stats(254), None);
}

#[test]
fn the_action_set_runs_at_the_end_in_the_specification_order() {
    let now = Instant::now();
    let mut p = Pipeline::default();
    // Table 0 applies an output now, writes an output and a set-field, goes on.
    let first = FlowSpec {
        instructions: vec![
            Instruction::GotoTable(1),
            Instruction::WriteActions(vec![Action::output(5), Action::set(Field::Ipv4Dst, 9)]),
            Instruction::ApplyActions(out(1)),
        ],
        ..FlowSpec::new(0, 1, FlowMatch::any(), vec![])
    };
    p.add(first, now).unwrap();
    // Table 1 replaces the set's output with a group, adds pop_vlan, and applies
    // its own output.
    p.add_group(
        GroupSpec {
            group_id: 3,
            group_type: GroupType::All,
            buckets: vec![Bucket::new(out(7))],
        },
        now,
    )
    .unwrap();
    let second = FlowSpec {
        instructions: vec![
            Instruction::ApplyActions(out(2)),
            Instruction::WriteActions(vec![Action::Group(3), Action::PopVlan]),
        ],
        ..FlowSpec::new(1, 1, FlowMatch::any(), vec![])
    };
    p.add(second, now).unwrap();
    let mut c = Classification::default();
    p.classify(&key(1, 2), &mut c);
    assert_eq!(
        c.actions,
        vec![
            Action::output(1),
            Action::output(2),
            Action::PopVlan,
            Action::set(Field::Ipv4Dst, 9),
            Action::Group(3),
        ]
    );
    // Instructions are kept in execution order, whatever order they came in.
    assert!(matches!(
        p.entries(0).next().unwrap().spec.instructions[0],
        Instruction::ApplyActions(_)
    ));
    let sent: Vec<(u32, u32)> = p
        .simulate(&key(1, 2))
        .iter()
        .map(|(port, k)| (*port, k.ipv4_dst))
        .collect();
    assert_eq!(sent, [(1, 2), (2, 2), (7, 9)]);
}

#[test]
fn clear_actions_empties_the_set_and_a_miss_runs_nothing() {
    let now = Instant::now();
    let mut p = Pipeline::default();
    let first = FlowSpec {
        instructions: vec![Instruction::WriteActions(out(5)), Instruction::GotoTable(1)],
        ..FlowSpec::new(0, 1, FlowMatch::any(), vec![])
    };
    p.add(first, now).unwrap();
    // Port 1 clears the set and writes nothing: dropped. Other ports miss table 1:
    // a miss without a table-miss entry drops, action set and all.
    let clear = FlowSpec {
        instructions: vec![Instruction::ClearActions],
        ..FlowSpec::new(1, 1, FlowMatch::any().with(Field::InPort, 1), vec![])
    };
    p.add(clear, now).unwrap();
    assert!(p.simulate(&key(1, 2)).is_empty());
    assert!(p.simulate(&key(2, 2)).is_empty());
    // With a table-miss entry that does nothing, the written output runs.
    p.add(FlowSpec::new(1, 0, FlowMatch::any(), vec![]), now)
        .unwrap();
    assert_eq!(p.simulate(&key(2, 2))[0].0, 5);
    let twice = FlowSpec {
        instructions: vec![Instruction::ClearActions, Instruction::ClearActions],
        ..FlowSpec::new(0, 2, FlowMatch::any(), vec![])
    };
    assert_eq!(
        p.add(twice, now),
        Err(TableError::DuplicateInstruction("clear_actions"))
    );
}

/// Table 0 entries that tag each packet from ports 1 and 2 with its port in
/// bits 8 to 15 of the metadata and go to table 1.
pub(crate) fn tag_ports_then_table_1(p: &mut Pipeline, now: Instant) {
    for in_port in 1..=2u32 {
        let tag = FlowSpec {
            instructions: vec![
                Instruction::WriteMetadata {
                    value: u64::from(in_port) << 8,
                    mask: 0xff00,
                },
                Instruction::GotoTable(1),
            ],
            ..FlowSpec::new(
                0,
                10,
                FlowMatch::any().with(Field::InPort, in_port.into()),
                vec![],
            )
        };
        p.add(tag, now).unwrap();
    }
}

/// [`tag_ports_then_table_1`], and table 1 sends IPv4 to the controller
/// (cookie 0xc1): the shape of a controller's "learn in a later table"
/// pipeline.
fn tag_then_to_controller(now: Instant) -> (Pipeline, FlowId) {
    let mut p = Pipeline::default();
    tag_ports_then_table_1(&mut p, now);
    let learn = FlowSpec {
        cookie: 0xc1,
        ..FlowSpec::new(
            1,
            5,
            FlowMatch::any().with(Field::EthType, 0x800),
            vec![Action::output(port::CONTROLLER), Action::output(9)],
        )
    };
    let learn = p.add(learn, now).unwrap();
    (p, learn)
}

#[test]
fn an_output_to_the_controller_notes_the_metadata_the_earlier_table_wrote() {
    let (p, learn) = tag_then_to_controller(Instant::now());
    let mut c = Classification::with_capacity(4, 4);
    for in_port in 1..=2u32 {
        p.classify(&key(in_port, 7), &mut c);
        assert_eq!(
            c.to_controller,
            [ControllerOutput {
                entry: learn,
                metadata: u64::from(in_port) << 8
            }]
        );
    }
    // A packet that goes nowhere near the controller notes nothing.
    let arp = FlowKey {
        in_port: 1,
        eth_type: 0x806,
        ..FlowKey::default()
    };
    p.classify(&arp, &mut c);
    assert_eq!(c.tables, [(0, true), (1, false)]);
    assert!(c.to_controller.is_empty());
}

#[test]
fn outputs_to_the_controller_are_noted_in_the_order_they_run() {
    let now = Instant::now();
    let mut p = Pipeline::default();
    p.add_group(
        GroupSpec {
            group_id: 4,
            group_type: GroupType::All,
            buckets: vec![
                Bucket::new(out(3)),
                Bucket::new(vec![Action::output(port::CONTROLLER)]),
            ],
        },
        now,
    )
    .unwrap();
    // Table 0 sends to the controller before its write-metadata runs, writes
    // an output to the controller into the action set and goes on.
    let first = FlowSpec {
        instructions: vec![
            Instruction::ApplyActions(vec![Action::output(port::CONTROLLER)]),
            Instruction::WriteActions(vec![Action::output(port::CONTROLLER)]),
            Instruction::WriteMetadata {
                value: 0x5,
                mask: 0xf,
            },
            Instruction::GotoTable(1),
        ],
        ..FlowSpec::new(0, 1, FlowMatch::any(), vec![])
    };
    let first = p.add(first, now).unwrap();
    // Table 1 runs the group (its second bucket goes to the controller) and
    // writes more metadata, which the action set's output then carries.
    let second = FlowSpec {
        instructions: vec![
            Instruction::ApplyActions(vec![Action::Group(4)]),
            Instruction::WriteMetadata {
                value: 0x30,
                mask: 0xf0,
            },
        ],
        ..FlowSpec::new(1, 1, FlowMatch::any(), vec![])
    };
    let second = p.add(second, now).unwrap();
    let mut c = Classification::default();
    p.classify(&key(1, 2), &mut c);
    let noted = |entry, metadata| ControllerOutput { entry, metadata };
    assert_eq!(
        c.to_controller,
        [noted(first, 0), noted(second, 0x5), noted(first, 0x35)]
    );
    // What the executor meets, in order: three outputs to the controller.
    let sent: Vec<u32> = p
        .simulate(&key(1, 2))
        .iter()
        .map(|(port, _)| *port)
        .collect();
    assert_eq!(
        sent,
        [port::CONTROLLER, 3, port::CONTROLLER, port::CONTROLLER]
    );

    // A later table that replaces the set's output owns it; clear-actions
    // forgets it.
    let replace = FlowSpec {
        instructions: vec![Instruction::WriteActions(vec![Action::output(
            port::CONTROLLER,
        )])],
        ..FlowSpec::new(1, 2, FlowMatch::any().with(Field::InPort, 2), vec![])
    };
    let replace = p.add(replace, now).unwrap();
    p.classify(&key(2, 2), &mut c);
    assert_eq!(c.to_controller, [noted(first, 0), noted(replace, 0x5)]);
    let clear = FlowSpec {
        instructions: vec![Instruction::ClearActions],
        ..FlowSpec::new(1, 2, FlowMatch::any().with(Field::InPort, 3), vec![])
    };
    p.add(clear, now).unwrap();
    p.classify(&key(3, 2), &mut c);
    assert_eq!(c.to_controller, [noted(first, 0)]);
}

/// A group bucket whose `dec_ttl` fails skips its output to the controller;
/// an output to the controller later in the same packet's actions is still
/// told apart by its place, so its packet-in names its own entry and metadata,
/// not the skipped one's.
#[test]
fn an_output_to_the_controller_after_a_bucket_whose_ttl_expired_keeps_its_own_record() {
    use crate::exec::{execute_counted, FrameBuf};
    use crate::packet::{fix_ipv4_checksum, parse, tests::udp_frame, ETH_HLEN};
    let now = Instant::now();
    let mut p = Pipeline::default();
    let buckets = vec![
        Bucket::new(vec![Action::DecNwTtl, Action::output(port::CONTROLLER)]),
        Bucket::new(out(3)),
    ];
    let group = GroupSpec {
        group_id: 2,
        group_type: GroupType::All,
        buckets,
    };
    p.add_group(group, now).unwrap();
    // Table 0 runs the group, then writes metadata; table 1 sends to the
    // controller.
    let route = FlowSpec {
        cookie: 0xa,
        instructions: vec![
            Instruction::ApplyActions(vec![Action::Group(2)]),
            Instruction::WriteMetadata {
                value: 0x7,
                mask: 0xff,
            },
            Instruction::GotoTable(1),
        ],
        ..FlowSpec::new(0, 1, FlowMatch::any(), vec![])
    };
    let route = p.add(route, now).unwrap();
    let to_controller = vec![Action::output(port::CONTROLLER)];
    let learn = FlowSpec {
        cookie: 0xb,
        ..FlowSpec::new(1, 1, FlowMatch::any(), to_controller)
    };
    let learn = p.add(learn, now).unwrap();

    // A packet whose TTL cannot be decremented: the bucket's copy expires.
    let mut bytes = udp_frame(0x0a00_0001, 0x0a00_0002, 3, 4, b"ttl");
    bytes[ETH_HLEN + 8] = 1;
    fix_ipv4_checksum(&mut bytes[ETH_HLEN..]);
    let (key, mut layout) = parse(&bytes, 1).unwrap();
    let mut c = Classification::default();
    p.classify(&key, &mut c);
    let noted = |entry, metadata| ControllerOutput { entry, metadata };
    assert_eq!(c.to_controller, [noted(route, 0), noted(learn, 0x7)]);
    let mut frame = FrameBuf::with_capacity(2048);
    frame.fill(&bytes);
    let mut packet_ins = Vec::new();
    execute_counted(
        &c.actions,
        &mut frame,
        &mut layout,
        p.groups(),
        |out, _, before| {
            if out == port::CONTROLLER {
                packet_ins.push(c.to_controller[before]);
            }
        },
    );
    assert_eq!(packet_ins, [noted(learn, 0x7)]);
}
