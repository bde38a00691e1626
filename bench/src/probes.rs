//! One path measured once, as `bench latency` does for every row of every run:
//! round trips at idle (ping), sockperf's half round trip, the switch's CPU at
//! idle, the 64-byte UDP packet rate with CPU per packet, and one TCP stream with
//! CPU per Gbit/s. Each part that fails is noted and the others still run; the
//! CPU figures are the switch processes' own (`/proc/PID/stat`), never the VMs'.

use crate::common::{iperf, iperf_server, latency};
use crate::stages::stage_table;
use anyhow::{Context, Result};
use netns_tests::{Netns, Scd};
use std::time::Duration;

/// Seconds of 64-byte UDP per packet-rate measurement.
const PPS_SECONDS: u32 = 3;
/// Seconds over which an idle switch's CPU is read, after a quiet second.
const IDLE_SECONDS: u64 = 2;

/// A part of a row's measurement that `--skip` can leave out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// Round trips at idle by ping.
    Ping,
    /// sockperf's UDP ping-pong (half round trip).
    Sockperf,
    /// The switch's CPU at idle.
    Idle,
    /// 64-byte UDP at full speed.
    Pps,
    /// One TCP stream for `--seconds`.
    Tcp,
}

/// What every row of a run measures.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Seconds of the TCP stream.
    pub tcp_seconds: u32,
    /// Parts left out.
    pub skip: Vec<Part>,
    /// Whether `sockperf` is on the PATH (its columns say so when it is not).
    pub sockperf_installed: bool,
}

impl Plan {
    fn measures(&self, part: Part) -> bool {
        !self.skip.contains(&part) && (part != Part::Sockperf || self.sockperf_installed)
    }
}

/// One path measured once; `None` where a part was skipped or failed.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    /// sockperf's half round trip.
    pub half_rtt_p50_us: Option<f64>,
    pub half_rtt_p99_us: Option<f64>,
    /// One TCP stream.
    pub gbits: Option<f64>,
    /// CPU of the switch's processes during the TCP stream, in percent of one
    /// core per Gbit/s it moved.
    pub cpu_percent_per_gbits: Option<f64>,
    /// 64-byte datagrams per second the receiving iperf3 read.
    pub pps: Option<f64>,
    /// 64-byte packets per second that reached the receiving VM's interface,
    /// whether or not the receiving application read them in time.
    pub delivered_pps: Option<f64>,
    /// CPU of the switch's processes per received packet, in µs.
    pub cpu_us_per_packet: Option<f64>,
    /// CPU of the switch's processes at idle, in percent of one core.
    pub idle_cpu_percent: Option<f64>,
    /// CPU of the switch's processes while the pings ran (one every 5 ms), in
    /// percent of one core: what a busy-poll window costs for the round trips
    /// it shortens.
    pub ping_cpu_percent: Option<f64>,
    /// The switch's per-stage histograms (this build's `scd` only).
    pub stages: Option<String>,
    /// What failed, part by part (or the whole path's setup).
    pub errors: Vec<String>,
}

/// A path that could not be set up at all.
pub fn failed(e: anyhow::Error) -> Sample {
    Sample {
        errors: vec![format!("{e:#}")],
        ..Sample::default()
    }
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

/// CPU seconds `pids` spent while `work` ran, with what it returned; `None`
/// for the CPU when there are no processes (a kernel-only path) or one is gone.
fn with_cpu<T>(pids: &[u32], work: impl FnOnce() -> Result<T>) -> Result<(T, Option<f64>)> {
    let before = cpu_seconds(pids);
    let out = work()?;
    let after = cpu_seconds(pids);
    let spent = before
        .zip(after)
        .filter(|_| !pids.is_empty())
        .map(|(a, b)| b - a);
    Ok((out, spent))
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

/// Packets per second of 64-byte UDP datagrams that reach `server_ip` from
/// `client` (iperf3 at full speed): read, delivered, and the CPU `pids` spent
/// per packet read, into `s`.
fn packet_rate(
    s: &mut Sample,
    client: &Netns,
    server: &Netns,
    server_ip: &str,
    pids: &[u32],
) -> Result<()> {
    let _srv = iperf_server(server, server_ip, "5202")?;
    let rx_before = rx_packets(server, server_ip);
    let (out, cpu) = with_cpu(pids, || {
        Ok(client
            .command("iperf3")
            .args([
                "-c", server_ip, "-p", "5202", "-J", "-u", "-l", "64", "-b", "0",
            ])
            .args(["-t", &PPS_SECONDS.to_string()])
            .output()?)
    })?;
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
    s.pps = Some(received / seconds);
    s.delivered_pps = rx_before
        .zip(rx_after)
        .map(|(a, b)| b.saturating_sub(a) as f64 / seconds);
    s.cpu_us_per_packet = cpu.map(|c| c / received * 1e6);
    Ok(())
}

/// One TCP stream for `seconds` and the CPU `pids` spent per Gbit/s, into `s`.
fn tcp_stream(
    s: &mut Sample,
    client: &Netns,
    server: &Netns,
    server_ip: &str,
    pids: &[u32],
    seconds: u32,
) -> Result<()> {
    let (gbits, cpu) = with_cpu(pids, || iperf(client, server, server_ip, 1, seconds))?;
    s.gbits = Some(gbits);
    s.cpu_percent_per_gbits = cpu
        .filter(|_| gbits > 0.0)
        .map(|c| c / f64::from(seconds.max(1)) * 100.0 / gbits);
    Ok(())
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

/// Notes in `s` that `part` failed, if it did.
fn note(s: &mut Sample, part: &str, result: Result<()>) {
    if let Err(e) = result {
        s.errors.push(format!("{part}: {e:#}"));
    }
}

/// Round trips at idle and the stages they went through, then sockperf's
/// half round trip, CPU at idle, the packet rate and the TCP stream: the quiet
/// measurements before the floods. `pids` are the switch's processes.
pub fn sample(
    plan: &Plan,
    client: &Netns,
    server: &Netns,
    server_ip: &str,
    pids: &[u32],
    scd: Option<&Scd>,
) -> Sample {
    let mut s = Sample::default();
    if plan.measures(Part::Ping) {
        let started = std::time::Instant::now();
        let r = with_cpu(pids, || latency(client, server_ip)).map(|((p50, p99), cpu)| {
            s.p50_us = Some(p50);
            s.p99_us = Some(p99);
            let wall = started.elapsed().as_secs_f64();
            s.ping_cpu_percent = cpu.filter(|_| wall > 0.0).map(|c| c / wall * 100.0);
        });
        note(&mut s, "ping", r);
        // The stages of the round trips at idle, before the floods swamp them.
        s.stages = scd.and_then(stage_table);
    }
    if plan.measures(Part::Sockperf) {
        let r = crate::sockperf::half_round_trip(client, server, server_ip).map(|(p50, p99)| {
            s.half_rtt_p50_us = Some(p50);
            s.half_rtt_p99_us = Some(p99);
        });
        note(&mut s, "sockperf", r);
    }
    if plan.measures(Part::Idle) {
        s.idle_cpu_percent = idle_cpu(pids);
    }
    if plan.measures(Part::Pps) {
        let r = packet_rate(&mut s, client, server, server_ip, pids);
        note(&mut s, "64 B rate", r);
    }
    if plan.measures(Part::Tcp) {
        let r = tcp_stream(&mut s, client, server, server_ip, pids, plan.tcp_seconds);
        note(&mut s, "TCP", r);
    }
    s
}
