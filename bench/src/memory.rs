//! `bench memory`: resident memory (`VmRSS` of /proc/PID/status) that `scd` spends
//! per flow and per WireGuard peer. Flows: 0, 10,000 and 100,000 distinct /32
//! entries pushed with `ovs-ofctl add-flows` into `scd`'s `ptcp:` listener and,
//! the same files, into Open vSwitch's netdev bridge. Peers: `scd` started with a
//! configuration of 1, 100 and 1,000 `[[peer]]` sections (no endpoints, so no
//! handshake leaves the namespace).

use crate::common::{fmt, ratio, rss_kib, start_scd, GW};
use crate::flowmod::{flow_count, scd_with_listener, time_add_flows, write_flows, SCD_TARGET};
use crate::ovs::Ovs;
use anyhow::Result;
use dataplane::keys;
use netns_tests::{unique, Netns};
use std::time::Duration;

/// Flow counts at which resident memory is read.
const FLOW_STEPS: [u32; 3] = [0, 10_000, 100_000];
/// Peer counts at which resident memory is read.
const PEER_STEPS: [u32; 3] = [1, 100, 1_000];
/// Time for allocators and background threads to settle before a reading.
const SETTLE: Duration = Duration::from_secs(1);

/// Installs flows up to each of [`FLOW_STEPS`] into the switch at `target` in
/// `ns` and reads the resident memory of `pid` (KiB) at each step.
fn rss_by_flows(ns: &Netns, target: &str, pid: u32) -> Result<Vec<u64>> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("flows");
    let mut installed = 0;
    let mut rss = Vec::new();
    for step in FLOW_STEPS {
        if step > installed {
            write_flows(&file, installed..step)?;
            time_add_flows(ns, target, &file)?;
            installed = step;
            let held = flow_count(ns, target)?;
            anyhow::ensure!(
                held >= u64::from(step),
                "switch holds {held} flows, not {step}"
            );
        }
        std::thread::sleep(SETTLE);
        rss.push(rss_kib(pid)?);
    }
    Ok(rss)
}

fn scd_by_flows() -> Result<Vec<u64>> {
    let ns = Netns::new(&unique("bench-mem-scd-"))?;
    let scd = scd_with_listener(&ns)?;
    rss_by_flows(&ns, SCD_TARGET, scd.pid())
}

fn ovs_by_flows() -> Result<Vec<u64>> {
    let ns = Netns::new(&unique("bench-mem-ovs-"))?;
    let ovs = Ovs::start(&ns, &[])?;
    rss_by_flows(&ns, &ovs.target(), ovs.vswitchd_pid())
}

/// Resident memory (KiB) of an `scd` whose configuration has `peers` tunnel peers.
fn scd_with_peers(peers: u32) -> Result<u64> {
    let ns = Netns::new(&unique("bench-mem-wg-"))?;
    let mut config = format!(
        "datapath_id = 1\n[overlay]\nprefix = \"100.64.0.0/10\"\ngateway_mac = \"{GW}\"\n\
         [metrics]\nlisten = \"127.0.0.1:9464\"\n\
         [tunnel]\nprivate_key_file = \"key\"\nlisten = \"51820\"\n"
    );
    for i in 0..peers {
        let public = keys::encode(&keys::public_of(&keys::generate_private()?));
        config += &format!(
            "[[peer]]\nport = {}\nname = \"p{i}\"\npublic_key = \"{public}\"\n",
            100 + i
        );
    }
    let own = keys::encode(&keys::generate_private()?);
    let scd = start_scd(&ns, &config, None, Some(&own))?;
    std::thread::sleep(SETTLE);
    rss_kib(scd.pid())
}

fn mib(kib: Option<u64>) -> String {
    fmt(kib.map(|k| k as f64 / 1024.0), 1)
}

/// Bytes each item added between reading `first` and reading `this`, both
/// (items, KiB); none for the first reading itself.
fn bytes_per_item(first: (u32, u64), this: (u32, u64)) -> Option<f64> {
    let items = this.0.checked_sub(first.0).filter(|&n| n > 0)?;
    Some((this.1 as f64 - first.1 as f64) * 1024.0 / f64::from(items))
}

/// Measures both tables and prints them.
pub fn memory() -> Result<()> {
    let scd = scd_by_flows();
    let ovs = ovs_by_flows();
    println!(
        "\n### Memory per flow: resident memory with N flows installed via `ovs-ofctl add-flows`\n"
    );
    println!("| flows | scd RSS MiB | OVS netdev RSS MiB | scd bytes/flow | OVS bytes/flow | scd x OVS (bytes/flow) |");
    println!("|---|---|---|---|---|---|");
    for (i, flows) in FLOW_STEPS.iter().enumerate() {
        let at = |r: &Result<Vec<u64>>| r.as_ref().ok().map(|v| v[i]);
        let per = |r: &Result<Vec<u64>>| {
            let rss = r.as_ref().ok()?;
            bytes_per_item((FLOW_STEPS[0], rss[0]), (FLOW_STEPS[i], rss[i]))
        };
        let (s, o) = (per(&scd), per(&ovs));
        println!(
            "| {flows} | {} | {} | {} | {} | {} |",
            mib(at(&scd)),
            mib(at(&ovs)),
            fmt(s, 0),
            fmt(o, 0),
            ratio(s, o)
        );
    }
    for (name, r) in [("scd", &scd), ("Open vSwitch", &ovs)] {
        if let Err(e) = r {
            println!("\n{name} failed: {e:#}");
        }
    }
    let peers: Vec<Result<u64>> = PEER_STEPS.iter().map(|&n| scd_with_peers(n)).collect();
    println!(
        "\n### Memory per tunnel peer: resident memory of scd configured with N WireGuard peers\n"
    );
    println!("| peers | scd RSS MiB | bytes/peer (over 1 peer) |");
    println!("|---|---|---|");
    for (i, n) in PEER_STEPS.iter().enumerate() {
        let per = match (&peers[0], &peers[i]) {
            (Ok(first), Ok(this)) => bytes_per_item((PEER_STEPS[0], *first), (*n, *this)),
            _ => None,
        };
        match &peers[i] {
            Ok(kib) => println!("| {n} | {} | {} |", mib(Some(*kib)), fmt(per, 0)),
            Err(e) => println!("| {n} | failed: {e:#} | – |"),
        }
    }
    println!("\nCommand: `bash scripts/bench.sh memory` (runs `target/release/bench memory`)");
    Ok(())
}
