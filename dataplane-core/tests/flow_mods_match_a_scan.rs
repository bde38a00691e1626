//! The pipeline's flow-mods against a reference that scans: random sequences of
//! adds, modifies and deletes (strict and loose, with cookie masks and out-port
//! filters), packets and timeouts leave the pipeline, whose strict flow-mods go
//! through its identity index, with exactly the table a plain list would hold
//! (entries, order, counters), the same answers, and the same classification.

use dataplane_core::pipeline::{
    Classification, FlowEntry, Pipeline, RemovedReason, Selector, ALL_TABLES,
};
use openflow::flow::{port, Action, Field, FlowKey, FlowMatch, Instruction};
use openflow::FlowSpec;
use proptest::prelude::*;
use std::time::{Duration, Instant};

const TABLES: u8 = 3;

/// Which entries a flow-mod modify or delete selects, as the flow-mod says it.
#[derive(Clone, Debug)]
struct Select {
    table_id: u8,
    matcher: FlowMatch,
    strict_priority: Option<u16>,
    cookie: u64,
    cookie_mask: u64,
    out_port: u32,
}

impl Select {
    fn selector(&self) -> Selector<'_> {
        Selector {
            strict_priority: self.strict_priority,
            cookie: self.cookie,
            cookie_mask: self.cookie_mask,
            out_port: self.out_port,
            ..Selector::loose(self.table_id, &self.matcher)
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Add(FlowSpec),
    Modify(Select, u32, bool),
    Delete(Select),
    Packet(FlowKey, u16),
    Wait(u64),
}

/// The old semantics, by scanning: each table a list in priority order, oldest
/// first among equal priorities.
#[derive(Debug)]
struct Reference {
    tables: Vec<Vec<FlowEntry>>,
}

impl Reference {
    fn add(&mut self, spec: FlowSpec, now: Instant) {
        let entry = FlowEntry::installed_at(spec, now);
        let table = &mut self.tables[usize::from(entry.spec.table_id)];
        let same = |e: &FlowEntry| {
            e.spec.priority == entry.spec.priority && e.spec.matcher == entry.spec.matcher
        };
        if let Some(old) = table.iter_mut().find(|e| same(e)) {
            *old = entry;
            return;
        }
        let at = table
            .iter()
            .position(|e| e.spec.priority < entry.spec.priority)
            .unwrap_or(table.len());
        table.insert(at, entry);
    }

    fn tables_of(&mut self, table_id: u8) -> impl Iterator<Item = &mut Vec<FlowEntry>> + '_ {
        self.tables
            .iter_mut()
            .enumerate()
            .filter(move |(t, _)| table_id == ALL_TABLES || usize::from(table_id) == *t)
            .map(|(_, table)| table)
    }

    fn modify(&mut self, select: &Selector<'_>, actions: &[Instruction], reset: bool) -> usize {
        let mut changed = 0;
        for table in self.tables_of(select.table_id) {
            for e in table.iter_mut().filter(|e| select.selects(e)) {
                e.spec.instructions = actions.to_vec();
                if reset {
                    e.reset_counts();
                }
                changed += 1;
            }
        }
        changed
    }

    fn remove_where(
        &mut self,
        table_id: u8,
        doomed: impl Fn(&FlowEntry) -> bool,
    ) -> Vec<FlowEntry> {
        let mut removed = Vec::new();
        for table in self.tables_of(table_id) {
            let (gone, kept): (Vec<_>, Vec<_>) = table.drain(..).partition(|e| doomed(e));
            *table = kept;
            removed.extend(gone);
        }
        removed
    }

    /// The entry a packet hits in table 0 (the generated flows have no goto).
    fn hit(&mut self, key: &FlowKey) -> Option<&mut FlowEntry> {
        self.tables[0]
            .iter_mut()
            .find(|e| e.spec.matcher.matches(key))
    }
}

/// What the tests compare of an entry: what it is and its counters.
fn seen(e: &FlowEntry) -> (FlowSpec, u64, u64) {
    (e.spec.clone(), e.packets(), e.bytes())
}

const ADDRESSES: [u32; 3] = [0x6440_0001, 0x6440_0102, 0x0a00_0001];

/// Few fields and values, so identities and covers collide often.
fn arb_match() -> impl Strategy<Value = FlowMatch> {
    (
        proptest::option::of(0u32..3),
        proptest::option::of((0usize..3, prop_oneof![Just(8u8), Just(24), Just(32)])),
        any::<bool>(),
    )
        .prop_map(|(in_port, dst, ip)| {
            let mut m = FlowMatch::any();
            if let Some(p) = in_port {
                m = m.with(Field::InPort, u128::from(p));
            }
            if ip || dst.is_some() {
                m = m.with(Field::EthType, 0x800);
            }
            if let Some((a, len)) = dst {
                m = m.with_prefix32(Field::Ipv4Dst, ADDRESSES[a], len);
            }
            m
        })
}

fn arb_table(with_all: bool) -> impl Strategy<Value = u8> {
    let all = if with_all { ALL_TABLES } else { 0 };
    prop_oneof![3 => 0u8..TABLES, 1 => Just(all)]
}

fn arb_spec() -> impl Strategy<Value = FlowSpec> {
    (
        arb_table(false),
        0u16..4,
        arb_match(),
        1u32..4,
        0u64..4,
        0u16..3,
        0u16..3,
    )
        .prop_map(|(table, priority, m, out, cookie, idle, hard)| {
            let mut spec = FlowSpec::new(table, priority, m, vec![Action::output(out)]);
            spec.cookie = cookie;
            spec.idle_timeout = idle;
            spec.hard_timeout = hard * 2;
            spec
        })
}

fn arb_select() -> impl Strategy<Value = Select> {
    (
        arb_table(true),
        arb_match(),
        proptest::option::of(0u16..4),
        0u64..4,
        prop_oneof![Just(0u64), Just(1), Just(3), Just(u64::MAX)],
        prop_oneof![2 => Just(port::ANY), 1 => 1u32..4],
    )
        .prop_map(
            |(table_id, matcher, strict_priority, cookie, cookie_mask, out_port)| Select {
                table_id,
                matcher,
                strict_priority,
                cookie,
                cookie_mask,
                out_port,
            },
        )
}

fn arb_key() -> impl Strategy<Value = FlowKey> {
    (0u32..3, 0usize..3, 0u32..2, any::<bool>()).prop_map(|(in_port, a, low, ip)| FlowKey {
        in_port,
        eth_type: if ip { 0x800 } else { 0x806 },
        ipv4_dst: ADDRESSES[a] ^ low,
        ..FlowKey::default()
    })
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => arb_spec().prop_map(Op::Add),
        2 => (arb_select(), 1u32..4, any::<bool>()).prop_map(|(s, out, reset)| Op::Modify(s, out, reset)),
        2 => arb_select().prop_map(Op::Delete),
        3 => (arb_key(), 1u16..1500).prop_map(|(k, len)| Op::Packet(k, len)),
        1 => (0u64..3).prop_map(Op::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn flow_mods_leave_the_table_a_scan_would(ops in proptest::collection::vec(arb_op(), 1..120)) {
        let mut now = Instant::now();
        let mut pipeline = Pipeline::new(TABLES);
        let mut reference = Reference { tables: vec![Vec::new(); usize::from(TABLES)] };
        let mut classification = Classification::default();
        for op in ops {
            match op {
                Op::Add(spec) => {
                    pipeline.add(spec.clone(), now).unwrap();
                    reference.add(spec, now);
                }
                Op::Modify(select, out, reset) => {
                    let actions = [Instruction::ApplyActions(vec![Action::output(out)])];
                    let changed = pipeline.modify(&select.selector(), &actions, reset).unwrap();
                    prop_assert_eq!(changed, reference.modify(&select.selector(), &actions, reset));
                }
                Op::Delete(select) => {
                    let selector = select.selector();
                    let got: Vec<_> = pipeline.delete(&selector).unwrap();
                    prop_assert!(got.iter().all(|r| r.reason == RemovedReason::Delete));
                    let got: Vec<_> = got.iter().map(|r| seen(&r.entry)).collect();
                    let want: Vec<_> = reference
                        .remove_where(select.table_id, |e| selector.selects(e))
                        .iter()
                        .map(seen)
                        .collect();
                    prop_assert_eq!(got, want);
                }
                Op::Packet(key, len) => {
                    pipeline.classify(&key, &mut classification);
                    let got = classification.hits.first().and_then(|id| pipeline.entry(*id)).map(seen);
                    pipeline.account(&classification.hits, &classification.tables, usize::from(len), now);
                    let want = reference.hit(&key).map(|e| {
                        let before = seen(e);
                        e.count(usize::from(len), now);
                        before
                    });
                    prop_assert_eq!(got, want);
                }
                Op::Wait(secs) => {
                    now += Duration::from_secs(secs);
                    let got: Vec<_> = pipeline
                        .expire(now)
                        .iter()
                        .map(|r| (r.reason, seen(&r.entry)))
                        .collect();
                    let want: Vec<_> = reference
                        .remove_where(ALL_TABLES, |e| e.expiry(now).is_some())
                        .iter()
                        .map(|e| (e.expiry(now).unwrap(), seen(e)))
                        .collect();
                    prop_assert_eq!(got, want);
                }
            }
            for t in 0..TABLES {
                let got: Vec<_> = pipeline.entries(t).map(seen).collect();
                let want: Vec<_> = reference.tables[usize::from(t)].iter().map(seen).collect();
                prop_assert_eq!(got, want, "table {}", t);
            }
        }
    }
}
