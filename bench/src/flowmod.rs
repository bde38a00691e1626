//! `bench flowmod`: the flow-mod rate of `scd` against Open vSwitch (userspace
//! netdev datapath), both driven by the same `ovs-ofctl add-flows` of 10,000 flows
//! in the same run; then what a flow-stats dump of 10,000 and 100,000 flows takes
//! each (`ovs-ofctl dump-flows`), the request `scc` sends every switch each
//! placement sampling interval.

use crate::common::GW;
use crate::ovs::Ovs;
use anyhow::{Context, Result};
use netns_tests::{run, unique, Netns, Scd};
use std::time::Instant;

/// Writes flows number `range` (distinct /32 destinations in 100.64.0.0/10, one
/// per flow) in `ovs-ofctl add-flows` syntax to `path`.
pub fn write_flows(path: &std::path::Path, range: std::ops::Range<u32>) -> Result<()> {
    write_flows_from(path, range, std::net::Ipv4Addr::new(100, 64, 0, 0), 100)
}

/// [`write_flows`] with flow `i` sending to the `i + 1`th address after `base`,
/// at `priority`.
pub fn write_flows_from(
    path: &std::path::Path,
    range: std::ops::Range<u32>,
    base: std::net::Ipv4Addr,
    priority: u16,
) -> Result<()> {
    let mut text = String::with_capacity(range.len() * 64);
    for i in range {
        let dst = std::net::Ipv4Addr::from(u32::from(base) + i + 1);
        text += &format!("table=0,priority={priority},ip,nw_dst={dst},actions=output:1\n");
    }
    std::fs::write(path, text)?;
    Ok(())
}

/// Seconds `ovs-ofctl add-flows` takes to push the file to `target` (it sends the
/// flow-mods, then a barrier, and returns when the barrier is answered).
pub fn time_add_flows(ns: &Netns, target: &str, flows: &std::path::Path) -> Result<f64> {
    time_add_flows_with(ns, &[], target, flows)
}

/// [`time_add_flows`] with more `ovs-ofctl` options (an `ssl:` target's key,
/// certificate and CA).
pub fn time_add_flows_with(
    ns: &Netns,
    options: &[String],
    target: &str,
    flows: &std::path::Path,
) -> Result<f64> {
    let started = Instant::now();
    run(ns
        .command("ovs-ofctl")
        .args(["-O", "OpenFlow13", "--timeout=120"])
        .args(options)
        .args(["add-flows", target, flows.to_str().context("path")?]))?;
    Ok(started.elapsed().as_secs_f64())
}

/// Flow count reported by `ovs-ofctl dump-aggregate`.
pub fn flow_count(ns: &Netns, target: &str) -> Result<u64> {
    let out = run(ns
        .command("ovs-ofctl")
        .args(["-O", "OpenFlow13", "dump-aggregate", target]))?;
    out.split("flow_count=")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .with_context(|| format!("no flow_count in {out}"))
}

/// Where `ovs-ofctl` reaches an `scd` started by [`scd_with_listener`].
pub const SCD_TARGET: &str = "tcp:127.0.0.1:6653";

/// An `scd` in `ns` with one TAP port, a passive OpenFlow listener and no flows.
pub fn scd_with_listener(ns: &Netns) -> Result<Scd> {
    let config = format!(
        "datapath_id = 1\n[overlay]\nprefix = \"100.64.0.0/10\"\ngateway_mac = \"{GW}\"\n\
         [metrics]\nlisten = \"127.0.0.1:9464\"\n[openflow]\nlisten = \"ptcp:6653\"\n\
         [[port]]\nnumber = 1\nname = \"{}\"\n",
        unique("bfm")
    );
    Scd::start(ns, &config, None)
}

/// Median seconds of three `ovs-ofctl dump-flows` of `target` (flow stats of every
/// flow, replies in parts of up to 64 KiB, printed to a pipe that is thrown away).
fn time_dump(ns: &Netns, target: &str) -> Result<f64> {
    let mut times = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let out = ns
            .command("ovs-ofctl")
            .args(["-O", "OpenFlow13", "--timeout=120", "dump-flows", target])
            .stdout(std::process::Stdio::null())
            .status()?;
        anyhow::ensure!(out.success(), "ovs-ofctl dump-flows {target}: {out}");
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[1])
}

/// What one switch measured: add-flows seconds, then dump seconds at 10,000 and
/// 100,000 flows.
struct Measured {
    add: f64,
    dump: [f64; 2],
}

/// Adds `flows`, dumps, adds `more` (90,000 further flows), dumps again.
fn add_and_dump(
    ns: &Netns,
    target: &str,
    flows: &std::path::Path,
    more: &std::path::Path,
) -> Result<Measured> {
    let add = time_add_flows(ns, target, flows)?;
    anyhow::ensure!(
        flow_count(ns, target)? >= 10_000,
        "{target} does not hold 10,000 flows"
    );
    let small = time_dump(ns, target)?;
    time_add_flows(ns, target, more)?;
    anyhow::ensure!(
        flow_count(ns, target)? >= 100_000,
        "{target} does not hold 100,000 flows"
    );
    Ok(Measured {
        add,
        dump: [small, time_dump(ns, target)?],
    })
}

fn flowmod_scd(flows: &std::path::Path, more: &std::path::Path) -> Result<Measured> {
    let ns = Netns::new(&unique("bench-fm-scd-"))?;
    let _scd = scd_with_listener(&ns)?;
    add_and_dump(&ns, SCD_TARGET, flows, more)
}

/// Open vSwitch with its userspace datapath in a namespace of its own.
fn flowmod_ovs(flows: &std::path::Path, more: &std::path::Path) -> Result<Measured> {
    let ns = Netns::new(&unique("bench-fm-ovs-"))?;
    let ovs = Ovs::start(&ns, &[])?;
    add_and_dump(&ns, &ovs.target(), flows, more)
}

/// Measures both switches and prints the tables.
pub fn flowmod() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let flows = dir.path().join("flows");
    let more = dir.path().join("more-flows");
    write_flows(&flows, 0..10_000)?;
    write_flows(&more, 10_000..100_000)?;
    let scd = flowmod_scd(&flows, &more);
    let ovs = flowmod_ovs(&flows, &more);
    let rows = [
        ("scd (release)", &scd),
        ("Open vSwitch, netdev datapath", &ovs),
    ];
    println!("\n### Flow-mod rate: 10,000 adds + barrier via `ovs-ofctl add-flows`\n");
    println!("| switch | seconds | flow-mods/s | x Open vSwitch |");
    println!("|---|---|---|---|");
    let rate = |r: &Result<Measured>| r.as_ref().ok().map(|m| 10_000.0 / m.add);
    for (name, r) in rows {
        match r {
            Ok(m) => println!(
                "| {name} | {:.3} | {:.0} | {} |",
                m.add,
                10_000.0 / m.add,
                match (rate(r), rate(&ovs)) {
                    (Some(a), Some(b)) => format!("{:.2}", a / b),
                    _ => "–".into(),
                }
            ),
            Err(e) => println!("| {name} | – | – | failed: {e:#} |"),
        }
    }
    println!("\n### Flow-stats dump (what placement sampling asks every switch), `ovs-ofctl dump-flows`, median of 3\n");
    println!("| switch | 10,000 flows ms | 100,000 flows ms | x Open vSwitch at 100,000 |");
    println!("|---|---|---|---|");
    for (name, r) in rows {
        match r {
            Ok(m) => println!(
                "| {name} | {:.1} | {:.1} | {} |",
                m.dump[0] * 1000.0,
                m.dump[1] * 1000.0,
                match &ovs {
                    // Time taken: below 1 is faster than Open vSwitch.
                    Ok(o) => format!("{:.2}", m.dump[1] / o.dump[1]),
                    Err(_) => "–".into(),
                }
            ),
            Err(e) => println!("| {name} | – | – | failed: {e:#} |"),
        }
    }
    println!("\nCommand: `bash scripts/bench.sh flowmod`");
    Ok(())
}
