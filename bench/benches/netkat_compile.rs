//! Compile time and rule count of the NetKAT compiler against policy size:
//! shortest-path routing on fat-trees (k = 4..16) and on topology-zoo style graphs,
//! and ACLs of 10..10,000 rules. Before the criterion runs, one timed end-to-end
//! compile per input prints a Markdown row (`size | rules | FDD nodes | time`), the
//! table kept in `bench/RESULTS.md`. Inputs slower than 5 s are timed once only.

use controller::netkat::gen::{acl_after_policy, acl_policy, fat_tree, routing_policy, zoo};
use controller::netkat::ir::NoNames;
use controller::netkat::{self, TableOptions};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::time::{Duration, Instant};

/// Parses, lowers, builds the FDD and every switch's table: `(rules, fdd nodes)`,
/// where an ACL's entries (compiled as drop rules, not through the FDD) count one
/// node each.
fn compile_all(src: &str) -> (usize, usize) {
    let prog = netkat::check(src, &NoNames).expect("generated policies are valid");
    let mut c = netkat::compile(&prog).expect("compiles");
    let nodes = c.fdd_size() + c.guard_entries();
    let rules = c
        .tables(TableOptions::default())
        .expect("tables")
        .iter()
        .map(|(_, t)| t.flows.len())
        .sum();
    (rules, nodes)
}

fn inputs() -> Vec<(String, String, String)> {
    let mut v = Vec::new();
    for k in [4u64, 8, 12, 16] {
        let t = fat_tree(k);
        let size = format!("{} switches, {} hosts", t.switches, t.hosts.len());
        v.push((format!("fat-tree k={k}"), size, routing_policy(&t)));
    }
    for n in [25u64, 50, 100, 200] {
        let t = zoo(n, 42);
        let size = format!("{} switches, {} links", t.switches, t.edges.len());
        v.push((format!("zoo n={n}"), size, routing_policy(&t)));
    }
    for n in [10usize, 100, 1000, 10_000] {
        v.push((
            format!("acl {n}"),
            format!("{n} ACL rules"),
            acl_policy(n, 7),
        ));
    }
    // The same ACLs after the bridge instead of in front: through the FDD.
    for n in [100usize, 300] {
        v.push((
            format!("acl {n} after the bridge"),
            format!("{n} ACL rules"),
            acl_after_policy(n, 7),
        ));
    }
    v
}

fn bench(c: &mut Criterion) {
    let inputs = inputs();
    println!("| input | size | rules | FDD nodes | compile time |");
    println!("|---|---|---:|---:|---:|");
    let mut quick = Vec::new();
    for (name, size, src) in &inputs {
        let start = Instant::now();
        let (rules, nodes) = compile_all(src);
        let t = start.elapsed();
        println!(
            "| {name} | {size} | {rules} | {nodes} | {:.3} s |",
            t.as_secs_f64()
        );
        // Repeated sampling only for inputs that compile in seconds.
        if t < Duration::from_secs(5) {
            quick.push((name, src));
        }
    }
    let mut g = c.benchmark_group("netkat_compile");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    for (name, src) in quick {
        g.bench_with_input(BenchmarkId::from_parameter(name), src, |b, src| {
            b.iter(|| compile_all(src))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
