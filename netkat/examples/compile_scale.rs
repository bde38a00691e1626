//! The compiler's scale benchmark, one input per process so peak memory is that
//! input's: `compile_scale fat-tree K` or `compile_scale acl N` generates the
//! policy (`netkat::gen`), then checks, compiles and builds every switch's table
//! one at a time, dropping each as `scc compile` does after writing it, and prints
//! a Markdown row `| input | rules | seconds | peak MiB |` (peak = the process's
//! `VmHWM`), and the time of each phase on stderr, wall-clock and CPU (the
//! thread's run time: on a loaded machine the wall-clock time is mostly waiting). `bench/compile-scale.sh` runs it over fat-trees k = 4..24 and ACLs
//! 10..100,000; the numbers are in `bench/RESULTS.md`.

use netkat::gen::{acl_policy, fat_tree, routing_policy};
use netkat::ir::NoNames;
use netkat::{Groups, TableOptions};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (kind, size) = match args.as_slice() {
        [kind, size] => (kind.as_str(), size.parse::<u64>().unwrap_or(0)),
        _ => {
            eprintln!("usage: compile_scale fat-tree K | acl N");
            std::process::exit(2);
        }
    };
    let src = match kind {
        "fat-tree" => routing_policy(&fat_tree(size)),
        "acl" => acl_policy(usize::try_from(size).unwrap_or(0), 7),
        _ => {
            eprintln!("unknown input {kind}");
            std::process::exit(2);
        }
    };
    let start = Instant::now();
    let cpu_start = cpu_seconds();
    let prog = netkat::check(&src, &NoNames).expect("generated policies are valid");
    drop(src);
    let checked = start.elapsed();
    let cpu_checked = cpu_seconds();
    let mut compiled = netkat::compile(&prog).expect("compiles");
    let fdd_built = start.elapsed();
    let cpu_fdd = cpu_seconds();
    let switches = if compiled.switches().is_empty() {
        vec![0]
    } else {
        compiled.switches().to_vec()
    };
    let mut rules = 0;
    for sw in switches {
        let table = compiled
            .table_with(sw, TableOptions::default(), Groups::Allowed)
            .expect("table");
        rules += table.flows.len();
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu_tables = cpu_seconds();
    eprintln!(
        "{kind} {size}: check {:.3} s, FDD {:.3} s, tables {:.3} s; CPU: check {:.3} s, FDD {:.3} s, tables {:.3} s",
        checked.as_secs_f64(),
        (fdd_built - checked).as_secs_f64(),
        secs - fdd_built.as_secs_f64(),
        cpu_checked - cpu_start,
        cpu_fdd - cpu_checked,
        cpu_tables - cpu_fdd,
    );
    println!(
        "| {kind} {size} | {rules} | {secs:.3} | {} |",
        peak_mib().map_or("?".into(), |m| m.to_string())
    );
}

/// The CPU time this thread has run, in seconds (`/proc/thread-self/schedstat`;
/// 0 where it cannot be read).
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |ns| ns / 1e9)
}

/// The process's peak resident set (`VmHWM`), in MiB.
fn peak_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}
