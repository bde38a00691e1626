//! The cost of one strict flow-mod (`Pipeline::modify` and `Pipeline::delete` with a
//! strict selector, and an add that replaces an identical entry) against a table of
//! 10,000 and 100,000 entries: what a burst of flow-mods to one switch costs `scd`'s
//! control path (issue #25). The table looks like routes: one exact destination per
//! entry, a few priorities. Run with
//! `cargo bench -p dataplane-core --bench strict_flow_mods`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use dataplane_core::pipeline::{Pipeline, Selector};
use openflow::flow::{Action, Field, FlowMatch, Instruction};
use openflow::FlowSpec;
use std::time::{Duration, Instant};

const SIZES: [usize; 2] = [10_000, 100_000];

/// Distinct priorities in the table.
const PRIORITIES: usize = 4;

/// How far apart successive flow-mods land in the table: a prime, so that it is
/// coprime with every size and a run visits every entry before repeating one.
const STRIDE: usize = 7919;

/// Deletes timed per batch; each batch's entries are added back, untimed, after it.
const DELETE_BATCH: u64 = 100;

/// Entry `i` of a table of `size`, highest priorities first.
fn flow(i: usize, size: usize) -> FlowSpec {
    let priority = 100 + u16::try_from(PRIORITIES - 1 - i * PRIORITIES / size).unwrap_or(0);
    let matcher = FlowMatch::any()
        .with(Field::EthType, 0x800)
        .with(Field::Ipv4Dst, 0x0a00_0000 + i as u128);
    FlowSpec::new(0, priority, matcher, vec![Action::output(1)])
}

fn table(size: usize, now: Instant) -> (Pipeline, Vec<FlowSpec>) {
    let flows: Vec<FlowSpec> = (0..size).map(|i| flow(i, size)).collect();
    let mut pipeline = Pipeline::default();
    for spec in &flows {
        pipeline
            .add(spec.clone(), now)
            .expect("the table takes the flow");
    }
    (pipeline, flows)
}

fn bench(c: &mut Criterion) {
    let now = Instant::now();
    let mut group = c.benchmark_group("strict_flow_mod");
    for size in SIZES {
        let (mut pipeline, flows) = table(size, now);
        let mut next = 0usize;
        let mut pick = move || {
            next = (next + STRIDE) % size;
            next
        };
        let actions = [Instruction::ApplyActions(vec![Action::output(2)])];
        group.bench_function(BenchmarkId::new("modify_strict", size), |b| {
            b.iter(|| {
                let spec = &flows[pick()];
                let strict = Selector::strict(0, &spec.matcher, spec.priority);
                black_box(pipeline.modify(&strict, &actions, false).expect("modify"))
            })
        });
        group.bench_function(BenchmarkId::new("add_identical", size), |b| {
            b.iter(|| black_box(pipeline.add(flows[pick()].clone(), now).expect("add")))
        });
        group.bench_function(BenchmarkId::new("delete_strict", size), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    let batch: Vec<&FlowSpec> = (0..DELETE_BATCH.min(iters - done))
                        .map(|_| &flows[pick()])
                        .collect();
                    let start = Instant::now();
                    for spec in &batch {
                        let strict = Selector::strict(0, &spec.matcher, spec.priority);
                        black_box(pipeline.delete(&strict).expect("delete"));
                    }
                    spent += start.elapsed();
                    for spec in &batch {
                        pipeline.add((*spec).clone(), now).expect("add back");
                    }
                    done += batch.len() as u64;
                }
                spent
            })
        });
        assert_eq!(pipeline.len(), size, "every deleted entry came back");
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
