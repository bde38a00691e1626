//! `bench latency`: the round trip at idle and the 64-byte packet rate of each
//! path (what the receiving iperf3 read, and what the receiving VM's interface
//! took in: a receiver that waits for a core overflows its socket), with the
//! switch's CPU per packet and at idle, over several runs
//! (min / median / max): local switching (Linux bridge, `scd`, Open vSwitch
//! userspace) and the tunnel (bare veth, `scd`, `boringtun-cli`). With
//! `--before`, an earlier build's `scd` is measured the same way in the same run;
//! this build's `scd` is measured with and without busy-polling. After the runs,
//! the per-stage latency histograms of this build's `scd` (its metrics) say where
//! its time went.

use crate::common::{installed, iperf_server, latency, spread, start_scd};
use crate::switching::{scd_one_host_with, with_bridge_vms, with_ovs_vms, IP2};
use crate::tunnel::{scd_tunnel_with, with_userspace_wg, VB_IP};
use anyhow::{Context, Result};
use netns_tests::{Netns, Scd};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Seconds of 64-byte UDP per packet-rate measurement.
const PPS_SECONDS: u32 = 3;
/// Seconds over which an idle switch's CPU is read, after a quiet second.
const IDLE_SECONDS: u64 = 2;
/// `[scheduling]` of a `scd` with a busy-poll window of `us` and `workers`
/// forwarding workers.
fn scheduling_section(us: u32, workers: usize) -> String {
    format!("[scheduling]\nbusy_poll_us = {us}\nworkers = {workers}\n")
}

/// A row's name.
fn row_name(us: u32, workers: usize) -> String {
    if workers == 1 {
        format!("scd, busy_poll_us = {us}")
    } else {
        format!("scd, busy_poll_us = {us}, workers = {workers}")
    }
}

/// One path measured once.
#[derive(Debug, Clone, Default)]
struct Sample {
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    pps: Option<f64>,
    /// 64-byte packets per second that reached the receiving VM's interface,
    /// whether or not the receiving application read them in time.
    delivered_pps: Option<f64>,
    /// CPU of the switch's processes per received packet, in µs.
    cpu_us_per_packet: Option<f64>,
    /// CPU of the switch's processes at idle, in percent of one core.
    idle_cpu_percent: Option<f64>,
    /// The switch's per-stage histograms (this build's `scd` only).
    stages: Option<String>,
    error: Option<String>,
}

/// CPU time (user + system, every thread) of the processes `pids`, in seconds.
fn cpu_seconds(pids: &[u32]) -> Option<f64> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let mut total = 0u64;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may hold spaces), from field 3 on.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        total += utime + stime;
    }
    Some(total as f64 / ticks)
}

/// Packets received so far by the interface that holds `ip` in `ns`.
fn rx_packets(ns: &Netns, ip: &str) -> Option<u64> {
    let addr = ns.ip(&["-o", "addr", "show", "to", ip]).ok()?;
    let ifname = addr.split_whitespace().nth(1)?;
    let out = ns
        .command("cat")
        .arg(format!("/sys/class/net/{ifname}/statistics/rx_packets"))
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// What a packet-rate measurement gives.
struct Rate {
    /// Datagrams per second the receiving iperf3 read.
    read_pps: f64,
    /// Packets per second the receiving VM's interface took in.
    delivered_pps: Option<f64>,
    /// CPU of the switch per datagram read, in µs.
    cpu_us_per_packet: Option<f64>,
}

/// Packets per second of 64-byte UDP datagrams that reach `server_ip` from
/// `client` (iperf3 at full speed), and the CPU `pids` spent per packet.
fn packet_rate(client: &Netns, server: &Netns, server_ip: &str, pids: &[u32]) -> Result<Rate> {
    let _srv = iperf_server(server, server_ip, "5202")?;
    let rx_before = rx_packets(server, server_ip);
    let cpu_before = cpu_seconds(pids);
    let out = client
        .command("iperf3")
        .args([
            "-c", server_ip, "-p", "5202", "-J", "-u", "-l", "64", "-b", "0",
        ])
        .args(["-t", &PPS_SECONDS.to_string()])
        .output()?;
    let cpu_after = cpu_seconds(pids);
    let rx_after = rx_packets(server, server_ip);
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("iperf3 output: {text}"))?;
    let sum = &v["end"]["sum"];
    let (sent, lost, seconds) = (
        sum["packets"].as_f64(),
        sum["lost_packets"].as_f64(),
        sum["seconds"].as_f64(),
    );
    let (Some(sent), Some(lost), Some(seconds)) = (sent, lost, seconds) else {
        anyhow::bail!("iperf3 failed: {}", v["error"]);
    };
    let received = (sent - lost).max(0.0);
    anyhow::ensure!(received > 0.0 && seconds > 0.0, "no datagram arrived");
    let cpu = cpu_before
        .zip(cpu_after)
        .filter(|_| !pids.is_empty())
        .map(|(a, b)| (b - a) / received * 1e6);
    Ok(Rate {
        read_pps: received / seconds,
        delivered_pps: rx_before
            .zip(rx_after)
            .map(|(a, b)| b.saturating_sub(a) as f64 / seconds),
        cpu_us_per_packet: cpu,
    })
}

/// CPU of `pids` at idle, in percent of one core, after a quiet second.
fn idle_cpu(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    std::thread::sleep(Duration::from_secs(1));
    let before = cpu_seconds(pids)?;
    std::thread::sleep(Duration::from_secs(IDLE_SECONDS));
    let after = cpu_seconds(pids)?;
    Some((after - before) / IDLE_SECONDS as f64 * 100.0)
}

/// p50/p99 of each stage of `scd`'s histograms as a table row per stage.
fn stage_table(scd: &Scd) -> Option<String> {
    let text = scd.metrics_text().ok()?;
    let mut rows = String::new();
    for stage in [
        "tunnel_wakeup",
        "local_batch",
        "tunnel_batch",
        "tunnel_send",
        "job_hop",
        "round",
    ] {
        let tag = format!("stage=\"{stage}\"");
        // Cumulative buckets in order of their bounds.
        let buckets: Vec<(f64, f64)> = text
            .lines()
            .filter(|l| l.starts_with("scd_stage_latency_seconds_bucket{") && l.contains(&tag))
            .filter_map(|l| {
                let le = l.split("le=\"").nth(1)?.split('"').next()?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, l.rsplit_once(' ')?.1.parse().ok()?))
            })
            .collect();
        let total = buckets.last().map_or(0.0, |b| b.1);
        if total == 0.0 {
            continue;
        }
        // The +Inf bucket has no upper bound: what it holds is above the last
        // finite one.
        let at = |q: f64| {
            let i = buckets.iter().position(|(_, c)| *c >= q * total)?;
            Some(match buckets[i].0 {
                le if le.is_finite() => format!("≤ {:.1}", le * 1e6),
                _ => format!("> {:.1}", buckets.get(i.checked_sub(1)?)?.0 * 1e6),
            })
        };
        let at = |q: f64| at(q).unwrap_or_default();
        rows.push_str(&format!(
            "| {stage} | {total:.0} | {} | {} |\n",
            at(0.5),
            at(0.99)
        ));
    }
    Some(rows)
}

/// Round trips at idle, then CPU at idle, then the packet rate.
fn sample(
    client: &Netns,
    server: &Netns,
    server_ip: &str,
    pids: &[u32],
    scd: Option<&Scd>,
) -> Sample {
    let attempt = || -> Result<Sample> {
        let (p50, p99) = latency(client, server_ip)?;
        // The stages of the round trips at idle, before the flood swamps them.
        let stages = scd.and_then(stage_table);
        let idle = idle_cpu(pids);
        let rate = packet_rate(client, server, server_ip, pids)?;
        Ok(Sample {
            p50_us: Some(p50),
            p99_us: Some(p99),
            pps: Some(rate.read_pps),
            delivered_pps: rate.delivered_pps,
            cpu_us_per_packet: rate.cpu_us_per_packet,
            idle_cpu_percent: idle,
            stages,
            error: None,
        })
    };
    attempt().unwrap_or_else(failed)
}

fn failed(e: anyhow::Error) -> Sample {
    Sample {
        error: Some(format!("{e:#}")),
        ..Sample::default()
    }
}

/// `scd` wiring two VMs on one host, started from `binary` (it makes their
/// TAPs, with a queue per worker).
fn scd_switching(binary: &Path, extra: &str, _workers: usize, stages: bool) -> Sample {
    std::env::set_var("SCD_BIN", binary);
    let run = || -> Result<Sample> {
        let h = scd_one_host_with(&start_scd, extra)?;
        Ok(sample(
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
fn scd_tunnel_sample(binary: &Path, extra: &str, workers: usize, stages: bool) -> Sample {
    std::env::set_var("SCD_BIN", binary);
    let run = || -> Result<Sample> {
        let t = scd_tunnel_with(&start_scd, extra, workers)?;
        Ok(sample(
            &t.va.ns,
            &t.vb.ns,
            VB_IP,
            &[t.sa.pid(), t.sb.pid()],
            stages.then_some(&t.sa),
        ))
    };
    run().unwrap_or_else(failed)
}

/// How this build's `scd` is run: busy-poll windows and counts of workers.
#[derive(Clone, Copy)]
struct Variants<'a> {
    windows: &'a [u32],
    workers: &'a [usize],
}

/// The `scd` rows of one area: the earlier build (if any), then this build once
/// per busy-poll window and count of workers, the last one with its stages.
fn scd_rows(
    out: &mut Vec<(&'static str, String, Sample)>,
    area: &'static str,
    this: &Path,
    before: Option<&Path>,
    variants: Variants<'_>,
    measure: fn(&Path, &str, usize, bool) -> Sample,
) {
    if let Some(before) = before {
        out.push((area, "scd before".into(), measure(before, "", 1, false)));
    }
    let rows = variants
        .workers
        .iter()
        .flat_map(|w| variants.windows.iter().map(move |us| (*us, *w)));
    let count = variants.windows.len() * variants.workers.len();
    for (i, (us, workers)) in rows.enumerate() {
        let last = i + 1 == count;
        let sample = measure(this, &scheduling_section(us, workers), workers, last);
        out.push((area, row_name(us, workers), sample));
    }
}

/// Every path of one run, by name, in table order.
fn one_run(
    this: &Path,
    before: Option<&Path>,
    variants: Variants<'_>,
) -> Vec<(&'static str, String, Sample)> {
    let mut out = Vec::new();
    let switching = "switching";
    out.push((
        switching,
        "Linux bridge (limit)".into(),
        with_bridge_vms(|a, b| sample(a, b, IP2, &[], None)).unwrap_or_else(failed),
    ));
    scd_rows(&mut out, switching, this, before, variants, scd_switching);
    out.push((
        switching,
        "Open vSwitch userspace".into(),
        with_ovs_vms(false, |a, b, pid| sample(&a.ns, &b.ns, IP2, &[pid], None))
            .unwrap_or_else(failed),
    ));
    let tunnel = "tunnel";
    out.push((
        tunnel,
        "plain veth (limit)".into(),
        crate::common::pair("lat-veth")
            .map(|p| sample(&p.a, &p.b, "192.0.2.2", &[], None))
            .unwrap_or_else(failed),
    ));
    scd_rows(&mut out, tunnel, this, before, variants, scd_tunnel_sample);
    let boringtun = if installed("boringtun-cli") {
        with_userspace_wg(
            "boringtun-cli",
            &["--foreground", "--disable-drop-privileges"],
            |a, b, pids| sample(a, b, "100.64.2.1", pids, None),
        )
        .unwrap_or_else(failed)
    } else {
        failed(anyhow::anyhow!("boringtun-cli not installed"))
    };
    out.push((tunnel, "boringtun-cli".into(), boringtun));
    std::env::set_var("SCD_BIN", this);
    out
}

/// Measures every path `runs` times, this build's `scd` once per busy-poll
/// window of `windows` (µs; the last one's stages are shown), and prints the tables.
pub fn latency_bench(
    before: Option<PathBuf>,
    runs: usize,
    windows: &[u32],
    workers: &[usize],
) -> Result<()> {
    let variants = Variants { windows, workers };
    let this = netns_tests::scd_binary()?;
    let before = before
        .map(|b| b.canonicalize().context("the --before scd"))
        .transpose()?;
    let mut all: Vec<Vec<(&str, String, Sample)>> = Vec::new();
    for run in 1..=runs.max(1) {
        all.push(one_run(&this, before.as_deref(), variants));
        eprintln!("latency: run {run} of {runs} done");
    }
    let first = &all[0];
    println!(
        "\n### Latency and 64-byte packet rate ({} runs: min / median / max)\n",
        all.len()
    );
    println!("| area | path | RTT p50 µs | RTT p99 µs | 64 B pps (k) | 64 B into the VM, pps (k) | CPU µs/packet | idle CPU % | failed runs |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (i, (area, name, _)) in first.iter().enumerate() {
        let column = |f: &dyn Fn(&Sample) -> Option<f64>| -> Vec<f64> {
            all.iter().filter_map(|r| f(&r.get(i)?.2)).collect()
        };
        let errors: Vec<&str> = all
            .iter()
            .filter_map(|r| r.get(i)?.2.error.as_deref())
            .collect();
        println!(
            "| {area} | {name} | {} | {} | {} | {} | {} | {} | {} |",
            spread(column(&|s| s.p50_us), 0),
            spread(column(&|s| s.p99_us), 0),
            spread(column(&|s| s.pps.map(|p| p / 1000.0)), 1),
            spread(column(&|s| s.delivered_pps.map(|p| p / 1000.0)), 1),
            spread(column(&|s| s.cpu_us_per_packet), 2),
            spread(column(&|s| s.idle_cpu_percent), 1),
            if errors.is_empty() {
                "0".to_string()
            } else {
                format!("{}: {}", errors.len(), errors[0].replace('\n', " "))
            }
        );
    }
    for (area, name, s) in all.last().into_iter().flatten() {
        if let Some(stages) = &s.stages {
            println!(
                "\nWhere `{name}` ({area}) spent its time, last run (bucket upper bounds, µs):\n"
            );
            println!("| stage | samples | p50 µs | p99 µs |\n|---|---|---|---|");
            print!("{stages}");
        }
    }
    println!(
        "\nCommand: `bench latency --runs {runs} --windows {} --workers {}`{} (load average {})",
        windows
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(","),
        workers
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(","),
        if before.is_some() {
            " --before PATH/TO/OLD/scd"
        } else {
            ""
        },
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    Ok(())
}
