//! `bench control-load`: forwarding under control work. Two VMs on one `scd`
//! exchange UDP requests and replies (one every 2 ms) while the switch sits idle,
//! takes 100,000 flow-mods (`ovs-ofctl add-flows`, then a barrier), has its
//! metrics scraped back to back, and has its 100,000 flows dumped back to back;
//! each phase reports the round trips' median, p99 and worst, and the worst's
//! distance from idle. This build runs under each `[scheduling]` setting of
//! [`SETTINGS`] (the default, the control threads lowered, the forwarding
//! thread real-time), `--runs` times over, with a
//! min/median/max summary. With `--before SCD`, an earlier build's `scd` is
//! measured the same way first, in the same run, for a before/after table.

use crate::common::{fmt, spread, start_scd};
use crate::flowmod::{flow_count, time_add_flows, write_flows_from, SCD_TARGET};
use crate::switching::{scd_one_host_with, ScdOneHost, IP2};
use anyhow::{Context, Result};
use netns_tests::Netns;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Flow-mods of the flow-mod phase (and flows present for the scrape and dump).
const FLOW_MODS: u32 = 100_000;
/// The flows' destinations start after this address, clear of the VMs'
/// 100.64.1.0/24, at a priority below the VMs' wire flows.
const FLOWS_BASE: Ipv4Addr = Ipv4Addr::new(100, 96, 0, 0);
const FLOWS_PRIORITY: u16 = 50;
/// One request every this often.
const PROBE_EVERY: Duration = Duration::from_millis(2);
/// A request unanswered this long is lost.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the idle, scrape and dump phases last.
const PHASE: Duration = Duration::from_secs(5);
const ECHO_PORT: u16 = 7777;

/// What one phase measured.
#[derive(Debug, Clone)]
struct Phase {
    name: &'static str,
    /// Round trips in microseconds, sorted.
    rtts_us: Vec<f64>,
    lost: usize,
    /// What the control side got done, in words.
    load: String,
}

impl Phase {
    fn at(&self, percent: usize) -> Option<f64> {
        let n = self.rtts_us.len();
        (n > 0).then(|| self.rtts_us[(n - 1) * percent / 100])
    }

    fn worst(&self) -> Option<f64> {
        self.rtts_us.last().copied()
    }
}

/// How the VMs' threads (prober, echo server) are scheduled: they can stand for
/// guests with cores of their own, so that the round trips show what the switch
/// adds rather than how long the bench's own threads wait on a loaded machine.
#[derive(Clone, Copy, Debug)]
pub struct VmScheduling {
    /// Nice value (orders threads within one session's autogroup only).
    pub nice: i32,
    /// `SCHED_FIFO` at priority 1 (preempts every normal thread on the host).
    pub fifo: bool,
}

impl VmScheduling {
    fn apply(self) -> Result<()> {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        // SAFETY: PRIO_PROCESS with a thread id changes that thread only.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid.unsigned_abs(), self.nice) } != 0 {
            anyhow::bail!(
                "setpriority {}: {}",
                self.nice,
                std::io::Error::last_os_error()
            );
        }
        if self.fifo {
            let param = libc::sched_param { sched_priority: 1 };
            // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param.
            if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } != 0 {
                anyhow::bail!("SCHED_FIFO: {}", std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// Answers every datagram on `ECHO_PORT` until `stop`.
fn echo_server(stop: Arc<AtomicBool>, vm: VmScheduling) -> Result<()> {
    vm.apply()?;
    let socket = UdpSocket::bind((IP2.parse::<Ipv4Addr>()?, ECHO_PORT))?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut buf = [0u8; 64];
    while !stop.load(Ordering::Relaxed) {
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            socket.send_to(&buf[..n], from)?;
        }
    }
    Ok(())
}

/// Sends numbered requests every [`PROBE_EVERY`] until `stop`; returns the round
/// trips in microseconds and how many requests went unanswered.
fn prober(stop: Arc<AtomicBool>, vm: VmScheduling) -> Result<(Vec<f64>, usize)> {
    vm.apply()?;
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    socket.connect((IP2.parse::<Ipv4Addr>()?, ECHO_PORT))?;
    let (mut rtts, mut lost) = (Vec::new(), 0);
    let mut buf = [0u8; 64];
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let sent = Instant::now();
        socket.send(&seq.to_be_bytes())?;
        let answered = loop {
            let left = PROBE_TIMEOUT.saturating_sub(sent.elapsed());
            if left.is_zero() {
                break false;
            }
            socket.set_read_timeout(Some(left))?;
            match socket.recv(&mut buf) {
                // A late answer to an earlier request is skipped.
                Ok(8) if buf[..8] == seq.to_be_bytes() => break true,
                Ok(_) => {}
                Err(_) => break false,
            }
        };
        if answered {
            rtts.push(sent.elapsed().as_secs_f64() * 1e6);
        } else {
            lost += 1;
        }
        std::thread::sleep(PROBE_EVERY.saturating_sub(sent.elapsed()));
    }
    rtts.sort_by(f64::total_cmp);
    Ok((rtts, lost))
}

/// Probes between the VMs while `load` runs; `load` says what it did.
fn phase(
    host: &ScdOneHost,
    vm: VmScheduling,
    name: &'static str,
    load: impl FnOnce() -> Result<String>,
) -> Result<Phase> {
    let stop = Arc::new(AtomicBool::new(false));
    let server = host.vm2.ns.spawn({
        let stop = stop.clone();
        move || echo_server(stop, vm)
    });
    std::thread::sleep(Duration::from_millis(200));
    let probes = host.vm1.ns.spawn({
        let stop = stop.clone();
        move || prober(stop, vm)
    });
    // Let the probes reach their rhythm before the load starts.
    std::thread::sleep(Duration::from_millis(300));
    let load = load();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (rtts_us, lost) = probes
        .join()
        .map_err(|_| anyhow::anyhow!("prober panicked"))???;
    server
        .join()
        .map_err(|_| anyhow::anyhow!("echo server panicked"))???;
    Ok(Phase {
        name,
        rtts_us,
        lost,
        load: load?,
    })
}

/// Repeats `once` for [`PHASE`]; returns how often it ran.
fn repeat(mut once: impl FnMut() -> Result<()>) -> Result<u32> {
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < PHASE {
        once()?;
        n += 1;
    }
    Ok(n)
}

fn dump_flows(ns: &Netns) -> Result<()> {
    let status = ns
        .command("ovs-ofctl")
        .args([
            "-O",
            "OpenFlow13",
            "--timeout=120",
            "dump-flows",
            SCD_TARGET,
        ])
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "ovs-ofctl dump-flows: {status}");
    Ok(())
}

/// The `[scheduling]` settings measured side by side, each in its own `scd`:
/// the default (every thread on equal footing), the control threads lowered,
/// and the forwarding thread real-time.
const SETTINGS: [(&str, &str); 3] = [
    ("default (all threads SCHED_OTHER, nice 0)", ""),
    (
        "control SCHED_BATCH, nice 10",
        "[scheduling]\ncontrol_policy = \"batch\"\ncontrol_nice = 10\n",
    ),
    (
        "forwarding SCHED_FIFO",
        "[scheduling]\nforwarding_policy = \"fifo\"\n",
    ),
];

/// Every phase against the `scd` at `binary`, with `extra` in its configuration.
fn measure(binary: &Path, flows: &Path, extra: &str, vm: VmScheduling) -> Result<Vec<Phase>> {
    std::env::set_var("SCD_BIN", binary);
    let host = scd_one_host_with(
        &start_scd,
        &format!("[openflow]\nlisten = \"ptcp:6653\"\n{extra}"),
    )?;
    let ns = &host.host;
    let mut phases = vec![phase(&host, vm, "idle", || {
        std::thread::sleep(PHASE);
        Ok("nothing".into())
    })?];
    phases.push(phase(&host, vm, "100,000 flow-mods", || {
        let seconds = time_add_flows(ns, SCD_TARGET, flows)?;
        let held = flow_count(ns, SCD_TARGET)?;
        anyhow::ensure!(held >= u64::from(FLOW_MODS), "scd holds {held} flows");
        Ok(format!(
            "{FLOW_MODS} adds + barrier in {seconds:.2} s ({:.0}/s)",
            f64::from(FLOW_MODS) / seconds
        ))
    })?);
    phases.push(phase(&host, vm, "metrics scraped in a loop", || {
        let n = repeat(|| host.scd.metrics_text().map(drop))?;
        Ok(format!(
            "{n} scrapes of 100,002 flows in {}s",
            PHASE.as_secs()
        ))
    })?);
    phases.push(phase(&host, vm, "flows dumped in a loop", || {
        let n = repeat(|| dump_flows(ns))?;
        Ok(format!(
            "{n} dump-flows of 100,002 flows in {}s",
            PHASE.as_secs()
        ))
    })?);
    Ok(phases)
}

fn print(label: &str, phases: &Result<Vec<Phase>>) {
    let phases = match phases {
        Ok(p) => p,
        Err(e) => {
            println!("| {label} | – | – | – | – | – | – | failed: {e:#} |");
            return;
        }
    };
    let idle = phases.first().and_then(Phase::worst);
    for p in phases {
        let over = match (p.worst(), idle) {
            (Some(w), Some(i)) => format!("{:.2}", (w - i) / 1000.0),
            _ => "–".into(),
        };
        println!(
            "| {label} | {} | {} | {} | {} | {} | {over} | {} lost; {} |",
            p.name,
            p.rtts_us.len(),
            fmt(p.at(50), 0),
            fmt(p.at(99), 0),
            fmt(p.worst(), 0),
            p.lost,
            p.load
        );
    }
}

/// Per setting and phase, over the runs: p99, worst, and worst over idle's worst.
fn summarize(label: &str, runs: &[&Result<Vec<Phase>>]) {
    let ok: Vec<&Vec<Phase>> = runs.iter().filter_map(|r| r.as_ref().ok()).collect();
    let Some(first) = ok.first() else {
        return;
    };
    for (i, p) in first.iter().enumerate() {
        let column = |f: &dyn Fn(&[Phase], &Phase) -> Option<f64>| -> Vec<f64> {
            ok.iter()
                .filter_map(|phases| f(phases, phases.get(i)?))
                .collect()
        };
        let p99 = column(&|_, p| p.at(99));
        let worst = column(&|_, p| p.worst());
        let over = column(&|phases, p| Some((p.worst()? - phases.first()?.worst()?) / 1000.0));
        println!(
            "| {label} | {} | {} | {} | {} | {} |",
            p.name,
            ok.len(),
            spread(p99, 0),
            spread(worst, 0),
            spread(over, 2)
        );
    }
}

/// Measures the `before` build (if given) and this one under each of
/// [`SETTINGS`], `runs` times over, and prints each run and a summary; the VMs'
/// threads run as `vm` says.
pub fn control_load(before: Option<PathBuf>, runs: usize, vm: VmScheduling) -> Result<()> {
    let this = netns_tests::scd_binary()?;
    let dir = tempfile::tempdir()?;
    let flows = dir.path().join("flows");
    write_flows_from(&flows, 0..FLOW_MODS, FLOWS_BASE, FLOWS_PRIORITY)?;
    let before = before
        .map(|b| b.canonicalize().context("the --before scd"))
        .transpose()?;
    let mut measured: Vec<(String, Result<Vec<Phase>>)> = Vec::new();
    for run in 1..=runs.max(1) {
        if let Some(before) = &before {
            measured.push(("before".into(), measure(before, &flows, "", vm)));
        }
        for (label, extra) in SETTINGS {
            measured.push((label.to_string(), measure(&this, &flows, extra, vm)));
        }
        eprintln!("control-load: run {run} of {runs} done");
    }
    std::env::set_var("SCD_BIN", &this);
    println!("\n### Forwarding under control load: UDP request/response between two VMs on one scd, one every 2 ms\n");
    println!("| scd | phase | round trips | p50 µs | p99 µs | worst µs | worst − idle worst, ms | notes |");
    println!("|---|---|---|---|---|---|---|---|");
    for (label, phases) in &measured {
        print(label, phases);
    }
    println!("\nOver the runs (min / median / max):\n");
    println!("| scd | phase | runs | p99 µs | worst µs | worst − idle worst, ms |");
    println!("|---|---|---|---|---|---|");
    let mut labels: Vec<&str> = Vec::new();
    for (label, _) in &measured {
        if !labels.contains(&label.as_str()) {
            labels.push(label);
        }
    }
    for label in labels {
        let of_label: Vec<&Result<Vec<Phase>>> = measured
            .iter()
            .filter(|(l, _)| l == label)
            .map(|(_, r)| r)
            .collect();
        summarize(label, &of_label);
    }
    println!("\nCommand: `bench control-load --runs {runs} --vm-nice {}{}` (with `--before PATH/TO/OLD/scd` for an older build in the same run)", vm.nice, if vm.fifo { " --vm-fifo" } else { "" });
    Ok(())
}
