//! Classifier and flow-cache lookups against rule count (criterion).
//!
//! Tables of N rules shaped like the controller's routing (one /32 per VM, a /24
//! per remote prefix, an in_port-specific rule per tunnel): a classifier lookup
//! (tuple-space search) of a packet that hits, and a lookup that the exact-match
//! cache answers. `cargo bench -p bench --bench classifier`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use dataplane_core::cache::FlowCache;
use dataplane_core::megaflow::MegaflowCache;
use dataplane_core::pipeline::{Classification, Pipeline};
use openflow::flow::{Action, Field, FlowKey, FlowMatch, FlowSpec};

fn pipeline(rules: u32) -> Pipeline {
    let mut flows = Vec::new();
    for i in 0..rules {
        let addr = 0x6440_0000 | i;
        let m = match i % 10 {
            0 => FlowMatch::any().with(Field::EthType, 0x800).with_prefix32(
                Field::Ipv4Dst,
                addr & !0xff,
                24,
            ),
            1 => FlowMatch::any()
                .with(Field::EthType, 0x800)
                .with(Field::InPort, u128::from(10_000 + i % 8))
                .with(Field::Ipv4Dst, u128::from(addr)),
            _ => FlowMatch::any()
                .with(Field::EthType, 0x800)
                .with(Field::Ipv4Dst, u128::from(addr)),
        };
        let priority = u16::try_from(100 + i % 10).unwrap_or(100);
        flows.push(FlowSpec::new(
            0,
            priority,
            m,
            vec![Action::output(1 + i % 16)],
        ));
    }
    Pipeline::from_flows(flows).expect("valid flows")
}

fn packet(i: u32) -> FlowKey {
    FlowKey {
        in_port: 1,
        eth_type: 0x800,
        ip_proto: 6,
        ipv4_src: 0x6440_ffff,
        ipv4_dst: 0x6440_0000 | i,
        l4_src: 40_000,
        l4_dst: 80,
        ..FlowKey::default()
    }
}

fn lookups(c: &mut Criterion) {
    let mut group = c.benchmark_group("lookup");
    for rules in [100u32, 1_000, 10_000, 100_000] {
        let p = pipeline(rules);
        let mut out = Classification::default();
        let mut i = 0u32;
        group.bench_with_input(BenchmarkId::new("classifier", rules), &rules, |b, &n| {
            b.iter(|| {
                i = (i + 7) % n;
                p.classify(black_box(&packet(i)), &mut out);
                black_box(out.actions.len())
            })
        });
        let mut cache = FlowCache::default();
        let warm: Vec<FlowKey> = (0..1024).map(|k| packet(k * 13 % rules)).collect();
        for k in &warm {
            cache.lookup(&p, k);
        }
        let mut j = 0usize;
        group.bench_with_input(BenchmarkId::new("cache_hit", rules), &rules, |b, _| {
            b.iter(|| {
                j = (j + 1) % warm.len();
                black_box(cache.lookup(&p, black_box(&warm[j])).actions.len())
            })
        });
        let mut megaflows = MegaflowCache::default();
        for k in &warm {
            megaflows.lookup(&p, k);
        }
        group.bench_with_input(BenchmarkId::new("megaflow_hit", rules), &rules, |b, _| {
            b.iter(|| {
                j = (j + 1) % warm.len();
                black_box(megaflows.lookup(&p, black_box(&warm[j])).actions.len())
            })
        });
        // A new connection: the next source port towards one of the warm hosts.
        let mut port = 0u16;
        let mut new_connection = |j: usize| {
            port = port.wrapping_add(1);
            FlowKey {
                l4_src: port,
                ..warm[j]
            }
        };
        group.bench_with_input(BenchmarkId::new("new_conn_exact", rules), &rules, |b, _| {
            b.iter(|| {
                j = (j + 1) % warm.len();
                let key = new_connection(j);
                black_box(cache.lookup(&p, black_box(&key)).actions.len())
            })
        });
        group.bench_with_input(
            BenchmarkId::new("new_conn_megaflow", rules),
            &rules,
            |b, _| {
                b.iter(|| {
                    j = (j + 1) % warm.len();
                    let key = new_connection(j);
                    black_box(megaflows.lookup(&p, black_box(&key)).actions.len())
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
