//! Three `scc` replicas on a three-member etcd cluster (Debian's `etcd-server`,
//! on the router namespace's loopback), two hosts whose `scd` connects to all
//! three. One replica is elected; its switches accept it as master and the
//! others as slaves. `kill -9` of the leader during a TCP stream between two
//! VMs: a standby takes over with a higher generation, every switch accepts it
//! as master, no flow-mod reaches a switch (the tables already match) and the
//! stream loses nothing. A leader stopped with SIGTERM hands over at once; one
//! whose key is deleted behind its back steps down and is elected again. A standby refuses changes; killing one etcd member
//! changes nothing; losing the quorum freezes changes (refused with a clear
//! error) while forwarding goes on.

use anyhow::{Context, Result};
mod common;

use common::{reaches, VmSpec};
use netns_tests::replicas::{
    master_generation, others, start_three, with_every_replica, SccReplica, CONTROLLER_SETTINGS,
};
use netns_tests::{require_program, require_root, wait_for, Internet, Scd};
use std::time::{Duration, Instant};

const VMS: [VmSpec; 2] = [
    VmSpec::new("a1", 0, 1, "100.64.1.1", "02:00:00:00:01:01"),
    VmSpec::new("b1", 1, 1, "100.64.2.1", "02:00:00:00:02:01"),
];

/// Generous: a loaded machine is slow, not wrong.
const WAIT: Duration = Duration::from_secs(90);

/// The replica that leads, with its generation (see `replicas::elected`).
fn elected(net: &Internet, replicas: &[&SccReplica]) -> Result<(usize, u64)> {
    netns_tests::replicas::elected(&net.router, replicas, WAIT)
}

/// Flow-mods every switch has received so far.
fn flow_mods(scds: &[Scd]) -> Result<Vec<u64>> {
    scds.iter()
        .map(|s| s.metric("scd_openflow_flow_mods", &[]))
        .collect()
}

#[test]
fn replicas_fail_over_without_touching_the_tables() -> Result<()> {
    let test = "replicas_fail_over_without_touching_the_tables";
    if !require_root(test) || !require_program(test, "etcd") || !require_program(test, "etcdctl") {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let net = Internet::with_hosts("sccrep", &[None, None])?;
    let keys = common::key_pairs(2)?;
    let vms = common::create_vms("sccrep", &VMS)?;
    let inventory = dir.path().join("inventory.toml");
    std::fs::write(
        &inventory,
        common::inventory_with(
            &keys,
            &common::entries(&VMS, &vms),
            CONTROLLER_SETTINGS,
            &[],
            &[],
        ),
    )?;
    let (mut etcd, mut replicas) = start_three(&net, dir.path(), &inventory)?;
    let scds = common::start_switches_edited(&net, &inventory, &keys, |_, c| {
        with_every_replica(&c, &replicas)
    })?;
    let (leader, generation) = elected(&net, &replicas.iter().collect::<Vec<_>>())?;
    eprintln!("leader r{leader}, generation {generation}");
    assert!(reaches(&vms[0], VMS[1].ip, 10)?, "a1 -> b1 to begin with");

    // A standby refuses changes, saying why.
    let policy = dir.path().join("id.kat");
    std::fs::write(&policy, "id\n")?;
    let policy_arg = policy.to_str().context("path")?;
    let standby = (leader + 1) % 3;
    let (ok, text) = replicas[standby].cli(&net.router, &["apply", policy_arg])?;
    assert!(
        !ok && text.contains("standby"),
        "a standby's answer: {text}"
    );

    // kill -9 the leader while a stream runs between the VMs.
    let stream = common::paced_stream(&vms[1], &vms[0], VMS[1].ip, 7300)?;
    stream.wait_flowing(64 * 1024, WAIT)?;
    let before = flow_mods(&scds)?;
    let killed = Instant::now();
    replicas[leader].kill()?;
    let survivors = others(&replicas, leader);
    let (new_leader, new_generation) = elected(&net, &survivors)?;
    eprintln!(
        "failover: new master acknowledged by every switch {:?} after the kill, generation {new_generation}",
        killed.elapsed()
    );
    assert!(
        new_generation > generation,
        "{new_generation} > {generation}"
    );
    let after = flow_mods(&scds)?;
    assert_eq!(
        after, before,
        "the takeover's audit found equal tables: no flow-mod"
    );
    let received = stream.received();
    stream.wait_flowing(received + 64 * 1024, WAIT)?;
    let report = stream.finish()?;
    eprintln!("stream across the failover: {report:?}");
    assert!(report.intact, "the stream lost nothing: {report:?}");
    let (leading_api, last_api) = (
        survivors[new_leader].api.clone(),
        survivors[1 - new_leader].api.clone(),
    );

    // A leader stopped with SIGTERM gives its lease up: the last replica takes
    // over without waiting for the lease to lapse.
    let leader_index = replicas
        .iter()
        .position(|r| r.api == leading_api)
        .context("the new leader")?;
    let stopped = Instant::now();
    replicas[leader_index].terminate()?;
    let last = replicas
        .iter()
        .find(|r| r.api == last_api)
        .context("the last replica")?;
    let (_, last_generation) = elected(&net, &[last])?;
    eprintln!(
        "after SIGTERM of the leader: new master acknowledged by every switch {:?} after the stop",
        stopped.elapsed()
    );
    assert!(last_generation > new_generation);
    assert_eq!(flow_mods(&scds)?, before, "still no flow-mod");
    assert!(last.log_text().contains("elected leader"));
    // A leader key deleted behind the leader's back (an operator's mistake):
    // the leader steps down at once and is elected again, with a new generation.
    let deleted = etcd.etcdctl(&net.router, &["del", "/supercloud/leader"])?;
    assert!(deleted.status.success(), "etcdctl del: {deleted:?}");
    let (_, again) = wait_for(WAIT, "a new generation after the key's deletion", || {
        let (i, g) = elected(&net, &[last])?;
        Ok((g > last_generation).then_some((i, g)))
    })?;
    assert!(last.log_text().contains("the leader key was deleted"));
    assert_eq!(flow_mods(&scds)?, before, "still no flow-mod");
    let new_generation = again;
    let leader_replica = last;

    // The new leader changes the network; one etcd member less changes nothing.
    let (ok, text) = leader_replica.cli(&net.router, &["apply", policy_arg])?;
    assert!(ok, "the new leader applies: {text}");
    etcd.kill(0)?;
    // When the member killed was etcd's own leader, etcd elects another; a lease
    // renewal may go unconfirmed meanwhile, and the replica steps down and is
    // elected again (a newer generation) rather than risk two masters. Either
    // way the change goes through on two of three members.
    let text = wait_for(WAIT, "a change with two of three etcd members", || {
        let (ok, text) = leader_replica.cli(&net.router, &["apply", policy_arg])?;
        Ok(ok.then_some(text))
    })?;
    // It leads when the change went through, but a step-down may still follow the
    // renewal that went unconfirmed: wait for it to lead again.
    let generation_now = wait_for(WAIT, "the replica leading after the change", || {
        let status = leader_replica.status(&net.router)?;
        Ok(status.as_ref().and_then(master_generation))
    })?;
    assert!(generation_now >= new_generation, "{text}");
    eprintln!("one etcd member killed: generation {new_generation} -> {generation_now}");

    // Without a quorum, changes are refused, clearly, and packets still flow.
    etcd.kill(1)?;
    let (ok, text) = leader_replica.cli(&net.router, &["apply", policy_arg])?;
    eprintln!("a change without quorum: {text}");
    assert!(!ok, "no quorum, no change: {text}");
    assert!(
        text.contains("quorum") || text.contains("standby"),
        "the refusal says why: {text}"
    );
    assert!(
        reaches(&vms[0], VMS[1].ip, 10)?,
        "a1 -> b1 while the store has no quorum"
    );
    drop(scds);
    Ok(())
}
