//! `bench flowmod`: the flow-mod rate of `scd` against Open vSwitch (userspace
//! netdev datapath), both driven by the same `ovs-ofctl add-flows` of 10,000 flows
//! in the same run.

use crate::common::GW;
use crate::ovs::Ovs;
use anyhow::{Context, Result};
use netns_tests::{run, unique, Netns, Scd};
use std::time::Instant;

/// Writes flows number `range` (distinct /32 destinations in 100.64.0.0/10, one
/// per flow) in `ovs-ofctl add-flows` syntax to `path`.
pub fn write_flows(path: &std::path::Path, range: std::ops::Range<u32>) -> Result<()> {
    let mut text = String::with_capacity(range.len() * 64);
    for i in range {
        let dst = std::net::Ipv4Addr::from(0x6440_0000 + i + 1);
        text += &format!("table=0,priority=100,ip,nw_dst={dst},actions=output:1\n");
    }
    std::fs::write(path, text)?;
    Ok(())
}

/// Seconds `ovs-ofctl add-flows` takes to push the file to `target` (it sends the
/// flow-mods, then a barrier, and returns when the barrier is answered).
pub fn time_add_flows(ns: &Netns, target: &str, flows: &std::path::Path) -> Result<f64> {
    let started = Instant::now();
    run(ns.command("ovs-ofctl").args([
        "-O",
        "OpenFlow13",
        "--timeout=120",
        "add-flows",
        target,
        flows.to_str().context("path")?,
    ]))?;
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

fn flowmod_scd(flows: &std::path::Path) -> Result<f64> {
    let ns = Netns::new(&unique("bench-fm-scd-"))?;
    let _scd = scd_with_listener(&ns)?;
    let secs = time_add_flows(&ns, SCD_TARGET, flows)?;
    anyhow::ensure!(
        flow_count(&ns, SCD_TARGET)? == 10_000,
        "scd does not hold 10,000 flows"
    );
    Ok(secs)
}

/// Open vSwitch with its userspace datapath in a namespace of its own.
fn flowmod_ovs(flows: &std::path::Path) -> Result<f64> {
    let ns = Netns::new(&unique("bench-fm-ovs-"))?;
    let ovs = Ovs::start(&ns, &[])?;
    let secs = time_add_flows(&ns, &ovs.target(), flows)?;
    anyhow::ensure!(
        flow_count(&ns, &ovs.target())? >= 10_000,
        "OVS does not hold 10,000 flows"
    );
    Ok(secs)
}

/// Measures both switches and prints the table.
pub fn flowmod() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let flows = dir.path().join("flows");
    write_flows(&flows, 0..10_000)?;
    let scd = flowmod_scd(&flows);
    let ovs = flowmod_ovs(&flows);
    println!("\n### Flow-mod rate: 10,000 adds + barrier via `ovs-ofctl add-flows`\n");
    println!("| switch | seconds | flow-mods/s | x Open vSwitch |");
    println!("|---|---|---|---|");
    let rate = |r: &Result<f64>| r.as_ref().ok().map(|s| 10_000.0 / s);
    for (name, r) in [
        ("scd (release)", &scd),
        ("Open vSwitch, netdev datapath", &ovs),
    ] {
        match r {
            Ok(secs) => println!(
                "| {name} | {secs:.3} | {:.0} | {} |",
                10_000.0 / secs,
                match (rate(r), rate(&ovs)) {
                    (Some(a), Some(b)) => format!("{:.2}", a / b),
                    _ => "–".into(),
                }
            ),
            Err(e) => println!("| {name} | – | – | failed: {e:#} |"),
        }
    }
    println!("\nCommand: `bash scripts/bench.sh flowmod`");
    Ok(())
}
