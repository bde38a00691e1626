//! Replicated controllers past the first etcd layout's limit: three `scc`
//! replicas on a three-member etcd cluster with etcd's default request limit
//! (1.5 MiB) commit an inventory of 20,000 VMs (about 3 MB as one document, which
//! the first layout could not write), then a change of policy; `kill -9` of the
//! leader, and a standby takes over with every VM and the policy's version
//! (which the standbys followed through the watch before the kill). No
//! switch is needed for that: the replicas' `scc status` says who leads and what
//! it holds.

use anyhow::{Context, Result};
mod common;

use netns_tests::replicas::{
    can_run, master_generation, others, start_three, SccReplica, CONTROLLER_SETTINGS,
};
use netns_tests::{wait_for, Internet, Netns};
use std::time::{Duration, Instant};

const VMS: usize = 20_000;
const HOSTS: usize = 4;

/// Generous: 20,000 VMs compile in seconds, a loaded machine takes longer.
const WAIT: Duration = Duration::from_secs(300);

/// The inventory's `[[vm]]` tables: `VMS` VMs spread over the hosts, none run.
fn vm_tables() -> String {
    let mut text = String::new();
    for i in 0..VMS {
        let (high, low) = (i / 250, i % 250);
        text += &format!(
            "[[vm]]\nname = \"v{i}\"\nmac = \"02:00:00:{:02x}:{:02x}:{:02x}\"\nip = \"100.64.{}.{}\"\nhost = \"host{}\"\nport = {}\ntenant = \"blue\"\n",
            (i >> 16) & 0xff,
            (i >> 8) & 0xff,
            i & 0xff,
            10 + high,
            1 + low,
            i % HOSTS,
            100 + i / HOSTS,
        );
    }
    text
}

/// The replica that leads (by `scc status`), its generation and its status.
fn leader(ns: &Netns, replicas: &[&SccReplica]) -> Result<(usize, u64, serde_json::Value)> {
    wait_for(WAIT, "one replica leading", || {
        let mut found = Vec::new();
        for (i, r) in replicas.iter().enumerate() {
            if let Some(s) = r.status(ns)? {
                if let Some(g) = master_generation(&s) {
                    found.push((i, g, s));
                }
            }
        }
        Ok((found.len() == 1).then(|| found.remove(0)))
    })
    .with_context(|| {
        replicas
            .iter()
            .map(|r| format!("--- {}:\n{}", r.log.display(), r.log_text()))
            .collect::<String>()
    })
}

fn vm_count(status: &serde_json::Value) -> usize {
    status["vms"].as_array().map_or(0, Vec::len)
}

#[test]
fn replicas_hold_twenty_thousand_vms_across_a_failover() -> Result<()> {
    if !can_run("replicas_hold_twenty_thousand_vms_across_a_failover") {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let net = Internet::with_hosts("scclarge", &[None, None, None, None])?;
    let keys = common::key_pairs(HOSTS)?;
    let inventory = dir.path().join("inventory.toml");
    let text = common::inventory_with(&keys, &[], CONTROLLER_SETTINGS, &[], &[]) + &vm_tables();
    std::fs::write(&inventory, &text)?;
    netns_tests::pki::ensure(&dir.path().join(netns_tests::pki::DIR), HOSTS)?;
    let started = Instant::now();
    let (etcd, mut replicas) = start_three(&net, dir.path(), &inventory)?;
    let (first, generation, status) = leader(&net.router, &replicas.iter().collect::<Vec<_>>())?;
    eprintln!(
        "r{first} leads (generation {generation}) with {} VMs after {:?}",
        vm_count(&status),
        started.elapsed()
    );
    assert_eq!(vm_count(&status), VMS, "the leader holds every VM");

    // A change after the import: one record, not the whole state again.
    let policy = dir.path().join("id.kat");
    std::fs::write(&policy, "id\n")?;
    let (ok, out) = replicas[first].cli(
        &net.router,
        &["apply", policy.to_str().context("path")?, "--force"],
    )?;
    assert!(ok, "the leader applies: {out}");
    let version = replicas[first]
        .status(&net.router)?
        .and_then(|s| s["version"].as_u64())
        .context("the leader's version")?;

    // What etcd holds: the layout's keys, and no key of the first layout.
    let keys_out = etcd.etcdctl(
        &net.router,
        &["get", "--prefix", "--keys-only", "/supercloud/"],
    )?;
    let listed = String::from_utf8_lossy(&keys_out.stdout);
    assert!(listed.contains("/supercloud/v2/current"), "{listed}");
    assert!(
        listed.contains("/supercloud/v2/rec/"),
        "a record for the change: {listed}"
    );
    assert!(
        !listed.lines().any(|l| l == "/supercloud/state"),
        "{listed}"
    );

    // The standbys follow the change through the watch (its record applied to
    // the state they hold), before any failover.
    let standbys = others(&replicas, first);
    wait_for(WAIT, "every standby at the leader's version", || {
        for r in &standbys {
            let at = r.status(&net.router)?.and_then(|s| s["version"].as_u64());
            if at != Some(version) {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })?;
    drop(standbys);

    let killed = Instant::now();
    replicas[first].kill()?;
    let survivors = others(&replicas, first);
    let (_, new_generation, status) = wait_for(WAIT, "a standby leading at the version", || {
        let (i, g, s) = leader(&net.router, &survivors)?;
        Ok((s["version"].as_u64() == Some(version)).then_some((i, g, s)))
    })?;
    eprintln!(
        "a standby leads (generation {new_generation}) {:?} after the kill, version {version}",
        killed.elapsed()
    );
    assert!(new_generation > generation);
    assert_eq!(vm_count(&status), VMS, "the new leader holds every VM");
    drop(etcd);
    Ok(())
}
