//! `bench cost`: CPU cost per packet of every `scd` path, measured on the switch
//! process itself while a fixed, paced UDP burst passes: local TAP→TAP switching,
//! TAP→tunnel (encrypt and send) and tunnel→TAP (receive and decrypt).
//!
//! Instructions come from `valgrind --tool=callgrind` (repeatable run to run): the
//! switch runs under callgrind, its counters are dumped right before and right
//! after the burst, and the instructions of an idle window of the same length
//! (timers, the metrics thread) are subtracted. The divisor is the number of frames
//! the switch itself counted on the path's ingress port, so frames the kernel
//! dropped before the switch saw them do not flatter the figure. Cycles come from
//! `perf stat` on a switch running natively, when this machine's PMU offers them;
//! where it does not (virtual machines without a PMU), from the native switch's CPU
//! time (every thread's on-CPU nanoseconds in `/proc/PID/task/*/schedstat`, kernel
//! work on its behalf included) times the clock rate `/proc/cpuinfo` reports.

use crate::common::{fmt, installed, start_scd, Background, Launcher};
use crate::switching::{scd_one_host, IP1, IP2, MAC1, MAC2};
use crate::tunnel::{scd_tunnel, TUNNEL_PORT, VA_IP, VB_IP};
use anyhow::{bail, Context, Result};
use netns_tests::{run, udp_count, Burst, Netns, Scd, Vm};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Datagrams per burst.
const DATAGRAMS: u32 = 4_000;
/// UDP payload bytes per datagram, one burst each: small frames show the fixed
/// cost of a packet, large ones add what grows with its length (copies, crypto).
const PAYLOADS: [usize; 2] = [64, 1_000];
/// Paced at 10 datagrams every 5 ms (2,000/s), slow enough for the switch under
/// callgrind, which runs some 50 times slower than natively.
const EVERY: u32 = 10;
const PAUSE: Duration = Duration::from_millis(5);
const UDP_PORT: u16 = 7000;

/// One burst through one of the three paths, as measured.
#[derive(Debug)]
struct Sample {
    /// UDP payload bytes per datagram.
    payload: usize,
    /// Frames the switch counted on the path's ingress port during the burst.
    packets: u64,
    /// Datagrams the receiving VM got.
    delivered: u32,
    /// Count (instructions or cycles) during the burst window.
    busy: u64,
    /// Count during an idle window of the same length.
    idle: u64,
    /// The functions with the most instructions of their own during the burst.
    hot: Vec<String>,
}

impl Sample {
    fn per_packet(&self) -> Option<f64> {
        (self.packets > 0).then(|| self.busy.saturating_sub(self.idle) as f64 / self.packets as f64)
    }
}

/// What counts: instructions under callgrind, or cycles of a native switch.
#[derive(Debug)]
enum Counter {
    Instructions(Callgrind),
    Cycles,
    /// On-CPU time of the native switch, converted to cycles at this clock (MHz).
    CpuTime(f64),
}

impl Counter {
    /// Starts the switch the way this counter needs it: for instructions, through
    /// the callgrind wrapper (other switches of the run keep the real binary).
    fn start(
        &self,
        host: &Netns,
        config: &str,
        flows: Option<&str>,
        key: Option<&str>,
    ) -> Result<Scd> {
        match self {
            Counter::Instructions(cg) => {
                let real = std::env::var_os("SCD_BIN").context("SCD_BIN is set by main")?;
                std::env::set_var("SCD_BIN", &cg.wrapper);
                let scd = start_scd(host, config, flows, key);
                std::env::set_var("SCD_BIN", real);
                scd
            }
            Counter::Cycles | Counter::CpuTime(_) => start_scd(host, config, flows, key),
        }
    }

    /// The count of process `pid` while `work` runs, and `work`'s result.
    fn during<R>(&self, pid: u32, work: impl FnOnce() -> Result<R>) -> Result<(u64, R)> {
        match self {
            Counter::Instructions(cg) => {
                cg.dump(pid)?;
                let r = work()?;
                Ok((cg.dump(pid)?, r))
            }
            Counter::Cycles => {
                let perf = Background(
                    Command::new("perf")
                        .args(["stat", "-x", ",", "-e", "cycles", "-p", &pid.to_string()])
                        .stdout(Stdio::null())
                        .stderr(Stdio::piped())
                        .spawn()?,
                );
                // perf attaches in a few milliseconds; give it more.
                std::thread::sleep(Duration::from_millis(200));
                let r = work()?;
                Ok((stop_perf(perf)?, r))
            }
            Counter::CpuTime(mhz) => {
                let before = cpu_ns(pid)?;
                let r = work()?;
                let ns = cpu_ns(pid)?.saturating_sub(before);
                Ok((cycles(ns, *mhz), r))
            }
        }
    }

    /// The functions that spent the most instructions of their own in the last
    /// window dumped for `pid`, with their share (callgrind only).
    fn hot_spots(&self, pid: u32) -> Result<Vec<String>> {
        let Counter::Instructions(cg) = self else {
            return Ok(Vec::new());
        };
        let dumps = cg.dumps(pid)?;
        let newest = dumps.last().context("no callgrind dump")?;
        let dump = std::fs::read_to_string(newest)?;
        Ok(hot_functions(&dump))
    }
}

/// The functions with the largest self cost in a callgrind dump (written with
/// `--compress-strings=no --compress-pos=no`), as "7.7% function". A cost line
/// holds a position and the instructions; the line right after `calls=` is the
/// inclusive cost of a call, which belongs to the callee, not to the caller.
fn hot_functions(dump: &str) -> Vec<String> {
    let mut costs: std::collections::HashMap<&str, u64> = Default::default();
    let (mut function, mut call_cost_next) = (None, false);
    for line in dump.lines() {
        if let Some(name) = line.strip_prefix("fn=") {
            (function, call_cost_next) = (Some(name), false);
        } else if line.starts_with("calls=") {
            call_cost_next = true;
        } else if line.starts_with(|c: char| c.is_ascii_digit() || c == '+' || c == '-') {
            if std::mem::take(&mut call_cost_next) {
                continue;
            }
            let cost = line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse::<u64>().ok());
            if let (Some(f), Some(cost)) = (function, cost) {
                *costs.entry(f).or_default() += cost;
            }
        }
    }
    let total: u64 = costs.values().sum();
    let mut ranked: Vec<(&str, u64)> = costs.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    ranked
        .into_iter()
        .take(HOT_SPOTS)
        .map(|(f, cost)| {
            format!(
                "{:.1}% {}",
                cost as f64 * 100.0 / total.max(1) as f64,
                short(f)
            )
        })
        .collect()
}

/// How many hot functions a row names.
const HOT_SPOTS: usize = 4;

/// A function name cut to a readable length (Rust paths with generics run long).
fn short(function: &str) -> String {
    const MAX: usize = 60;
    let chars: Vec<char> = function.chars().collect();
    if chars.len() <= MAX {
        function.to_string()
    } else {
        chars[..MAX].iter().collect::<String>() + "…"
    }
}

/// Nanoseconds every thread of process `pid` has spent on a CPU (user and kernel).
fn cpu_ns(pid: u32) -> Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        // A thread that ended between the listing and the read counts nothing.
        let Ok(text) = std::fs::read_to_string(task?.path().join("schedstat")) else {
            continue;
        };
        total += text
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .context("schedstat")?;
    }
    Ok(total)
}

/// Cycles in `ns` nanoseconds at `mhz` (cycles per microsecond / 1000 per ns).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn cycles(ns: u64, mhz: f64) -> u64 {
    // Non-negative and far below 2^53 for any burst: the cast loses nothing real.
    (ns as f64 * mhz / 1000.0).round() as u64
}

/// The clock rate the kernel reports for the first CPU, in MHz.
fn cpu_mhz() -> Option<f64> {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()?
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()
}

/// Ends `perf stat` with SIGINT (it then prints its counts) and reads the cycles.
fn stop_perf(mut perf: Background) -> Result<u64> {
    let pid = libc::pid_t::try_from(perf.0.id())?;
    // SAFETY: kill on the PID of a child we started and have not reaped.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let mut text = String::new();
    if let Some(mut err) = perf.0.stderr.take() {
        std::io::Read::read_to_string(&mut err, &mut text)?;
    }
    text.lines()
        .find(|l| l.contains(",cycles"))
        .and_then(|l| l.split(',').next())
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no cycles in perf's output: {text}"))
}

/// True when `perf stat -e cycles` counts on this machine (it does not on every
/// virtual machine: the PMU may be hidden, and perf then says `<not supported>`).
fn perf_counts_cycles() -> bool {
    Command::new("perf")
        .args(["stat", "-x", ",", "-e", "cycles", "true"])
        .stdout(Stdio::null())
        .output()
        .is_ok_and(|o| {
            let text = String::from_utf8_lossy(&o.stderr);
            o.status.success()
                && text
                    .lines()
                    .find(|l| l.contains(",cycles"))
                    .and_then(|l| l.split(',').next())
                    .is_some_and(|v| v.trim().parse::<u64>().is_ok())
        })
}

/// `scd` under callgrind: a wrapper script in place of the binary, and the
/// directory its dumps go to.
#[derive(Debug)]
struct Callgrind {
    dir: tempfile::TempDir,
    wrapper: PathBuf,
}

impl Callgrind {
    fn new() -> Result<Callgrind> {
        let scd = netns_tests::scd_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("bench-callgrind")
            .tempdir()?;
        let wrapper = dir.path().join("scd-callgrind");
        // `exec` all the way down: the PID the harness holds is valgrind's, which is
        // what callgrind_control addresses.
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec valgrind --tool=callgrind --compress-strings=no --compress-pos=no --callgrind-out-file={}/callgrind.out.%p {} \"$@\"\n",
                dir.path().display(),
                scd.display()
            ),
        )?;
        std::fs::set_permissions(
            &wrapper,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        Ok(Callgrind { dir, wrapper })
    }

    /// Dumps the counters of process `pid` (callgrind zeroes them after a dump)
    /// and returns the instructions counted since the previous dump.
    fn dump(&self, pid: u32) -> Result<u64> {
        let before = self.dumps(pid)?;
        run(Command::new("callgrind_control").args(["-d", &pid.to_string()]))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let dumps = self.dumps(pid)?;
            if let Some(newest) = dumps.last().filter(|_| dumps.len() > before.len()) {
                return summary(newest);
            }
            anyhow::ensure!(Instant::now() < deadline, "callgrind wrote no dump");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Dump files of `pid`, oldest first (callgrind numbers them .1, .2, ...).
    fn dumps(&self, pid: u32) -> Result<Vec<PathBuf>> {
        let prefix = format!("callgrind.out.{pid}.");
        let mut numbered: Vec<(u32, PathBuf)> = std::fs::read_dir(self.dir.path())?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let n = name.strip_prefix(&prefix)?.parse().ok()?;
                Some((n, e.path()))
            })
            .collect();
        numbered.sort();
        Ok(numbered.into_iter().map(|(_, p)| p).collect())
    }
}

/// The `summary:` (total instructions) of a callgrind dump, once it is complete.
fn summary(path: &Path) -> Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path)?;
        if let Some(v) = text
            .lines()
            .find_map(|l| l.strip_prefix("summary:"))
            .and_then(|v| v.trim().parse().ok())
        {
            return Ok(v);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no summary in {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Frames the switch counted on `port` in direction `dir` ("rx" or "tx").
fn port_packets(scd: &Scd, port: u32, dir: &str) -> Result<u64> {
    scd.metric(
        "scd_port_packets_total",
        &[&format!("port=\"{port}\""), &format!("dir=\"{dir}\"")],
    )
}

/// Pins a neighbour entry, so no ARP exchange falls into a measured window.
fn pin_neighbour(vm: &Vm, ip: &str, mac: &str) -> Result<()> {
    vm.ns.ip(&[
        "neigh",
        "replace",
        ip,
        "lladdr",
        mac,
        "nud",
        "permanent",
        "dev",
        &vm.ifname,
    ])?;
    Ok(())
}

/// Sends one burst of each payload size from `from` to `to` and counts them at
/// `scd`, on `in_port`.
fn samples(counter: &Counter, scd: &Scd, in_port: u32, from: &Vm, to: &Vm) -> Result<Vec<Sample>> {
    PAYLOADS
        .iter()
        .map(|&payload| sample(counter, scd, in_port, from, to, payload))
        .collect()
}

fn sample(
    counter: &Counter,
    scd: &Scd,
    in_port: u32,
    from: &Vm,
    to: &Vm,
    payload: usize,
) -> Result<Sample> {
    let burst = Burst {
        count: DATAGRAMS,
        size: payload,
        every: EVERY,
        pause: PAUSE,
    };
    let (src, dst) = (from.ip.parse()?, to.ip.parse()?);
    let before = port_packets(scd, in_port, "rx")?;
    // The idle window lasts as long as the burst did (without the counter's own
    // set-up time, which both windows include).
    let (busy, (delivered, window)) = counter.during(scd.pid(), || {
        let started = Instant::now();
        let delivered = udp_count(&from.ns, src, &to.ns, dst, UDP_PORT, burst)?;
        Ok((delivered, started.elapsed()))
    })?;
    let packets = port_packets(scd, in_port, "rx")? - before;
    let hot = counter.hot_spots(scd.pid())?;
    let (idle, ()) = counter.during(scd.pid(), || {
        std::thread::sleep(window);
        Ok(())
    })?;
    Ok(Sample {
        payload,
        packets,
        delivered,
        busy,
        idle,
        hot,
    })
}

/// The three paths, each on a fresh set of namespaces whose measured switch
/// `counter` starts.
fn paths(counter: &Counter) -> Vec<(&'static str, Result<Vec<Sample>>)> {
    let launcher: &Launcher<'_> =
        &|host, config, flows, key| counter.start(host, config, flows, key);
    let local = || -> Result<Vec<Sample>> {
        let h = scd_one_host(launcher)?;
        pin_neighbour(&h.vm1, IP2, MAC2)?;
        pin_neighbour(&h.vm2, IP1, MAC1)?;
        samples(counter, &h.scd, 1, &h.vm1, &h.vm2)
    };
    let tunnel = |encrypt: bool| -> Result<Vec<Sample>> {
        let t = scd_tunnel(launcher)?;
        pin_neighbour(&t.va, VB_IP, crate::common::GW)?;
        pin_neighbour(&t.vb, VA_IP, crate::common::GW)?;
        if encrypt {
            samples(counter, &t.sa, 1, &t.va, &t.vb)
        } else {
            samples(counter, &t.sa, TUNNEL_PORT, &t.vb, &t.va)
        }
    };
    vec![
        ("local switching, TAP → TAP", local()),
        ("tunnel send: TAP → encrypt → UDP", tunnel(true)),
        ("tunnel receive: UDP → decrypt → TAP", tunnel(false)),
    ]
}

/// Measures every path and prints the table.
pub fn cost() -> Result<()> {
    if !installed("valgrind") || !installed("callgrind_control") {
        bail!("valgrind is not installed (scripts/bench.sh installs it)");
    }
    let instructions = paths(&Counter::Instructions(Callgrind::new()?));
    let perf = perf_counts_cycles();
    let mhz = cpu_mhz();
    let cycles = match (perf, mhz) {
        (true, _) => paths(&Counter::Cycles),
        (false, Some(mhz)) => paths(&Counter::CpuTime(mhz)),
        (false, None) => Vec::new(),
    };
    println!(
        "\n### CPU cost per packet of each scd path ({DATAGRAMS} UDP datagrams per burst, {EVERY} every {} ms)\n",
        PAUSE.as_millis()
    );
    println!("| path | UDP payload bytes | frames scd counted | datagrams delivered | instructions (burst) | instructions (idle, same time) | instructions/packet | cycles/packet |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut hot = Vec::new();
    for (i, (name, r)) in instructions.iter().enumerate() {
        let samples = match r {
            Ok(samples) => samples,
            Err(e) => {
                println!("| {name} | – | – | – | – | – | failed: {e:#} | – |");
                continue;
            }
        };
        for (j, s) in samples.iter().enumerate() {
            let cycles = match cycles.get(i).map(|(_, c)| c) {
                Some(Ok(c)) => fmt(c.get(j).and_then(Sample::per_packet), 0),
                Some(Err(e)) => format!("failed: {e:#}"),
                None => "–".into(),
            };
            println!(
                "| {name} | {} | {} | {} | {} | {} | {} | {cycles} |",
                s.payload,
                s.packets,
                s.delivered,
                s.busy,
                s.idle,
                fmt(s.per_packet(), 0)
            );
            hot.push(format!("- {name}, {} B: {}", s.payload, s.hot.join(", ")));
        }
    }
    println!("\nWhere the instructions go (self cost, share of the burst window):\n");
    for line in hot {
        println!("{line}");
    }
    match (perf, mhz) {
        (true, _) => println!("\nCycles: `perf stat -e cycles` on the native switch (idle window subtracted)."),
        (false, Some(mhz)) => println!(
            "\nCycles: `perf stat -e cycles` reports `<not supported>` here (no PMU in the VM), so cycles are the native switch's on-CPU time (all threads, user and kernel, from /proc/PID/task/*/schedstat, idle window subtracted) × {mhz:.0} MHz. At this paced rate every few datagrams wake the switch, so wake-ups are part of the figure; a saturated switch batches more and costs less per packet."
        ),
        (false, None) => println!(
            "\nCycles: not measured: no PMU (`perf stat -e cycles` says `<not supported>`) and no clock rate in /proc/cpuinfo."
        ),
    }
    println!("\nInstructions are the switch process's own (user space); the kernel's share of each TAP read or write and UDP send or receive is not in them.");
    println!("\nCommand: `bash scripts/bench.sh cost` (runs `target/release/bench cost`)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_becomes_cycles_at_the_clock_rate() {
        assert_eq!(cycles(1_000, 2_000.0), 2_000, "1 µs at 2 GHz");
        assert_eq!(cycles(3, 2_596.124), 8);
        let me = cpu_ns(std::process::id()).unwrap();
        assert!(me > 0, "this test process has run on a CPU");
    }

    #[test]
    fn hot_functions_rank_self_cost_and_leave_call_costs_to_the_callee() {
        let dump = "events: Ir\nsummary: 1000\n\nob=/x/scd\nfl=a.rs\nfn=main\n3 100\n\
            cfn=dataplane::switch::run\ncalls=1 10\n4 900\n\
            fn=dataplane::switch::run\n10 600\nfi=b.rs\n11 200\nfe=a.rs\n+1 50\n";
        assert_eq!(
            hot_functions(dump),
            ["89.5% dataplane::switch::run", "10.5% main"]
        );
    }
}
