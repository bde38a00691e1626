//! `bench latency`: issue 19's data-path table. Every path of both areas is
//! measured in each run, and every run measures every path (min / median / max
//! over the runs): local switching (Linux bridge, `scd`, Open vSwitch userspace
//! without and with TSO) and the tunnel (bare veth, `scd`, `wireguard-go`,
//! `boringtun-cli`); what each row measures is `probes`' (round trips, sockperf,
//! 64-byte rate and one TCP stream, with the switch's CPU per packet and per
//! Gbit/s). With `--before`, an earlier build's `scd` is measured the same way
//! in the same run, once per busy-poll window; this build's `scd` once per
//! busy-poll window and count of workers. After the runs: the targets of the
//! issue judged from the rows (`targets`), and the per-stage latency
//! histograms of this build's `scd`.

use crate::common::{installed, spread, start_scd};
use crate::probes::{failed, sample, Plan, Sample};
use crate::switching::{scd_one_host_with, with_bridge_vms, with_ovs_vms, IP2};
use crate::targets::{Run, BORINGTUN, BRIDGE, OVS, OVS_TSO, SWITCHING, TUNNEL, VETH, WIREGUARD_GO};
use crate::tunnel::{scd_tunnel_with, with_userspace_wg, VB_IP};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// `[scheduling]` of a `scd` with a busy-poll window of `us`, `workers`
/// forwarding workers and, if given, the forwarding thread's nice value.
fn scheduling_section(us: u32, workers: usize, nice: Option<i32>) -> String {
    let nice = nice.map_or(String::new(), |n| format!("forwarding_nice = {n}\n"));
    format!("[scheduling]\nbusy_poll_us = {us}\nworkers = {workers}\n{nice}")
}

/// A row's name.
fn row_name(us: u32, workers: usize, nice: Option<i32>) -> String {
    let mut name = format!("scd, busy_poll_us = {us}");
    if workers != 1 {
        name += &format!(", workers = {workers}");
    }
    if let Some(n) = nice {
        name += &format!(", forwarding_nice = {n}");
    }
    name
}

/// `scd` wiring two VMs on one host, started from `binary` (it makes their
/// TAPs, with a queue per worker).
fn scd_switching(plan: &Plan, binary: &Path, extra: &str, _workers: usize, stages: bool) -> Sample {
    std::env::set_var("SCD_BIN", binary);
    let run = || -> Result<Sample> {
        let h = scd_one_host_with(&start_scd, extra)?;
        Ok(sample(
            plan,
            &h.vm1.ns,
            &h.vm2.ns,
            IP2,
            &[h.scd.pid()],
            stages.then_some(&h.scd),
        ))
    };
    run().unwrap_or_else(failed)
}

/// Two `scd` joined by their tunnel, started from `binary`.
fn scd_tunnel_sample(
    plan: &Plan,
    binary: &Path,
    extra: &str,
    workers: usize,
    stages: bool,
) -> Sample {
    std::env::set_var("SCD_BIN", binary);
    let run = || -> Result<Sample> {
        let t = scd_tunnel_with(&start_scd, extra, workers)?;
        Ok(sample(
            plan,
            &t.va.ns,
            &t.vb.ns,
            VB_IP,
            &[t.sa.pid(), t.sb.pid()],
            stages.then_some(&t.sa),
        ))
    };
    run().unwrap_or_else(failed)
}

/// Measures one `scd` of an area: (plan, binary, extra configuration, workers,
/// whether to read its stages).
type ScdMeasure = fn(&Plan, &Path, &str, usize, bool) -> Sample;

/// What a run measures: the plan of each row and which `scd` builds and variants.
#[derive(Clone, Copy)]
struct Setup<'a> {
    plan: &'a Plan,
    /// This build's `scd`.
    this: &'a Path,
    /// An earlier build's, measured at each busy-poll window with one worker.
    before: Option<&'a Path>,
    /// Busy-poll windows (µs) of the rows of both builds.
    windows: &'a [u32],
    /// Counts of forwarding workers of this build's rows.
    workers: &'a [usize],
    /// The forwarding thread's nice value in this build's rows (`scd`'s default
    /// when `None`).
    forwarding_nice: Option<i32>,
}

/// The `scd` rows of one area: the earlier build (if any), then this build once
/// per busy-poll window and count of workers, the last one with its stages.
fn scd_rows(out: &mut Run, area: &'static str, setup: Setup<'_>, measure: ScdMeasure) {
    // The earlier build at each window too, so a change to what a window does
    // is compared with itself in the same run.
    if let Some(before) = setup.before {
        for us in setup.windows {
            // Only what every build understands (`scd` refuses unknown keys, and
            // `workers` is newer than `busy_poll_us`): nothing at window 0.
            let extra = match us {
                0 => String::new(),
                us => format!("[scheduling]\nbusy_poll_us = {us}\n"),
            };
            let sample = measure(setup.plan, before, &extra, 1, false);
            out.push((area, format!("scd before, busy_poll_us = {us}"), sample));
        }
    }
    let rows = setup
        .workers
        .iter()
        .flat_map(|w| setup.windows.iter().map(move |us| (*us, *w)));
    let count = setup.windows.len() * setup.workers.len();
    for (i, (us, workers)) in rows.enumerate() {
        let last = i + 1 == count;
        let extra = scheduling_section(us, workers, setup.forwarding_nice);
        let sample = measure(setup.plan, setup.this, &extra, workers, last);
        out.push((area, row_name(us, workers, setup.forwarding_nice), sample));
    }
}

/// A peer's row, or a row saying that its `program` is not installed.
fn peer(program: &str, measure: impl FnOnce() -> Result<Sample>) -> Sample {
    if installed(program) {
        measure().unwrap_or_else(failed)
    } else {
        failed(anyhow::anyhow!(
            "`{program}` not installed (scripts/bench.sh installs it)"
        ))
    }
}

/// A userspace WireGuard's row: `program` with `args` on both hosts.
fn userspace_wg(plan: &Plan, program: &str, args: &[&str]) -> Sample {
    peer(program, || {
        with_userspace_wg(program, args, |a, b, pids| {
            sample(plan, a, b, "100.64.2.1", pids, None)
        })
    })
}

/// Open vSwitch userspace's row, with its userspace TSO or without.
fn ovs(plan: &Plan, tso: bool) -> Sample {
    peer("ovs-vswitchd", || {
        with_ovs_vms(tso, |a, b, pid| {
            sample(plan, &a.ns, &b.ns, IP2, &[pid], None)
        })
    })
}

/// Every path of one run, by name, in table order.
fn one_run(setup: Setup<'_>) -> Run {
    let plan = setup.plan;
    let mut out = Vec::new();
    out.push((
        SWITCHING,
        BRIDGE.into(),
        with_bridge_vms(|a, b| sample(plan, a, b, IP2, &[], None)).unwrap_or_else(failed),
    ));
    scd_rows(&mut out, SWITCHING, setup, scd_switching);
    out.push((SWITCHING, OVS.into(), ovs(plan, false)));
    out.push((SWITCHING, OVS_TSO.into(), ovs(plan, true)));
    out.push((
        TUNNEL,
        VETH.into(),
        crate::common::pair("lat-veth")
            .map(|p| sample(plan, &p.a, &p.b, "192.0.2.2", &[], None))
            .unwrap_or_else(failed),
    ));
    scd_rows(&mut out, TUNNEL, setup, scd_tunnel_sample);
    out.push((
        TUNNEL,
        WIREGUARD_GO.into(),
        userspace_wg(plan, "wireguard-go", &["-f"]),
    ));
    out.push((
        TUNNEL,
        BORINGTUN.into(),
        userspace_wg(
            plan,
            "boringtun-cli",
            &["--foreground", "--disable-drop-privileges"],
        ),
    ));
    std::env::set_var("SCD_BIN", setup.this);
    out
}

/// The per-path table: every row's figures as min / median / max over the runs.
fn print_paths(all: &[Run], plan: &Plan) {
    println!(
        "\n### Data path: latency, one TCP stream, 64-byte packet rate ({} runs: min / median / max)\n",
        all.len()
    );
    println!(
        "| area | path | RTT p50 µs | RTT p99 µs | sockperf ½ RTT p50 µs | sockperf ½ RTT p99 µs \
         | 1 TCP stream Gbit/s | CPU % per Gbit/s | 64 B pps (k) | 64 B into the VM, pps (k) \
         | CPU µs/packet | CPU % during the pings | idle CPU % | runs with a failure |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let half_rtt = |values: Vec<f64>| {
        if plan.sockperf_installed {
            spread(values, 1)
        } else {
            "sockperf not installed".into()
        }
    };
    for (i, (area, name, _)) in all[0].iter().enumerate() {
        let column = |f: &dyn Fn(&Sample) -> Option<f64>| -> Vec<f64> {
            all.iter().filter_map(|r| f(&r.get(i)?.2)).collect()
        };
        let errors: Vec<&String> = all
            .iter()
            .filter_map(|r| r.get(i)?.2.errors.first())
            .collect();
        println!(
            "| {area} | {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            spread(column(&|s| s.p50_us), 0),
            spread(column(&|s| s.p99_us), 0),
            half_rtt(column(&|s| s.half_rtt_p50_us)),
            half_rtt(column(&|s| s.half_rtt_p99_us)),
            spread(column(&|s| s.gbits), 2),
            spread(column(&|s| s.cpu_percent_per_gbits), 1),
            spread(column(&|s| s.pps.map(|p| p / 1000.0)), 1),
            spread(column(&|s| s.delivered_pps.map(|p| p / 1000.0)), 1),
            spread(column(&|s| s.cpu_us_per_packet), 2),
            spread(column(&|s| s.ping_cpu_percent), 1),
            spread(column(&|s| s.idle_cpu_percent), 1),
            match errors.first() {
                None => "0".to_string(),
                Some(e) => format!("{}: {}", errors.len(), e.replace(['\n', '|'], " ")),
            }
        );
    }
}

/// `values` joined by commas, as the command line takes them.
fn listed<T: ToString>(values: &[T]) -> String {
    values
        .iter()
        .map(T::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// What `bench latency` was told.
#[derive(Debug)]
pub struct Options<'a> {
    pub before: Option<PathBuf>,
    pub runs: usize,
    pub windows: &'a [u32],
    pub workers: &'a [usize],
    pub forwarding_nice: Option<i32>,
    pub plan: Plan,
}

/// Measures every path `runs` times, this build's `scd` once per busy-poll
/// window and count of workers (the last one's stages are shown), and prints
/// the per-path table, the targets and the stages.
pub fn latency_bench(options: Options<'_>) -> Result<()> {
    let Options {
        before,
        runs,
        windows,
        workers,
        forwarding_nice,
        ref plan,
    } = options;
    let this = netns_tests::scd_binary()?;
    let before = before
        .map(|b| b.canonicalize().context("the --before scd"))
        .transpose()?;
    let setup = Setup {
        plan,
        this: &this,
        before: before.as_deref(),
        windows,
        workers,
        forwarding_nice,
    };
    let load_at_start = load_average();
    let mut all: Vec<Run> = Vec::new();
    for run in 1..=runs.max(1) {
        all.push(one_run(setup));
        eprintln!("latency: run {run} of {runs} done");
    }
    print_paths(&all, plan);
    crate::targets::print(&all);
    for (area, name, s) in all.last().into_iter().flatten() {
        if let Some(stages) = &s.stages {
            println!(
                "\nWhere `{name}` ({area}) spent its time, last run (bucket upper bounds, µs):\n"
            );
            println!("| stage | samples | p50 µs | p99 µs |\n|---|---|---|---|");
            print!("{stages}");
        }
    }
    let skipped: Vec<String> = plan
        .skip
        .iter()
        .filter_map(clap::ValueEnum::to_possible_value)
        .map(|p| p.get_name().to_string())
        .collect();
    println!(
        "\nCommand: `bench latency --runs {runs} --windows {} --workers {}{} --seconds {}{}`{} \
         (load average at the start {load_at_start}, at the end {})",
        listed(windows),
        listed(workers),
        forwarding_nice.map_or(String::new(), |n| format!(" --forwarding-nice {n}")),
        plan.tcp_seconds,
        if skipped.is_empty() {
            String::new()
        } else {
            format!(" --skip {}", skipped.join(","))
        },
        if before.is_some() {
            " --before PATH/TO/OLD/scd"
        } else {
            ""
        },
        load_average()
    );
    Ok(())
}
