//! A leader killed during a migration: three `scc` replicas on a three-member
//! etcd cluster, three hosts whose `scd` connects to all three. VM m1 starts
//! moving from host1 to host2; once the destination is ready (the *prepared*
//! phase, committed to etcd) the leader gets `kill -9`. The standby elected
//! resumes the migration from the store, as a restarted `scc` does: the first
//! time `scc migrate --abort` to it rolls the move back (m1 stays at host1), the
//! second time `scc migrate --arrived` completes it (switched, then cleaned up
//! after the grace period; m1 answers at host2). A TCP stream to m1 runs
//! through all of it with every byte intact.

mod common;

use anyhow::{Context, Result};
use common::{event_ms, reaches, vm_host, VmSpec, VM_MTU};
use netns_tests::replicas::{
    controller_ip, elected, others, start_three, with_every_replica, SccReplica,
    CONTROLLER_SETTINGS,
};
use netns_tests::{require_program, require_root, wait_for, Internet, Netns};
use std::time::Duration;

const M1_IP: &str = "100.64.2.1";

/// a1 (the client) on host0, m1 (the VM that moves) on host1, c1 on host2.
const VMS: [VmSpec; 3] = [
    VmSpec::new("a1", 0, 1, "100.64.1.1", "02:00:00:00:01:01"),
    VmSpec::new("m1", 1, 1, M1_IP, "02:00:00:00:02:01"),
    VmSpec::new("c1", 2, 1, "100.64.3.1", "02:00:00:00:03:01"),
];

/// Generous: a loaded machine is slow, not wrong.
const WAIT: Duration = Duration::from_secs(90);

/// `replica`'s status once its migration timeline has `event`.
fn wait_event(ns: &Netns, replica: &SccReplica, event: &str) -> Result<serde_json::Value> {
    wait_for(WAIT, &format!("`{event}` in the timeline"), || {
        Ok(replica.status(ns)?.filter(|s| event_ms(s, event).is_some()))
    })
    .with_context(|| replica.log_text())
}

/// `replica`'s status once it holds the migration in progress (a standby
/// adopted the phase the leader committed) or, with `false`, none.
fn wait_migrating(ns: &Netns, replica: &SccReplica, migrating: bool) -> Result<serde_json::Value> {
    wait_for(WAIT, "the migration in the replica's state", || {
        Ok(replica
            .status(ns)?
            .filter(|s| s["migration"].is_null() != migrating))
    })
    .with_context(|| replica.log_text())
}

/// Runs `scc ARGS` against `replica`; fails unless it succeeds.
fn cli(ns: &Netns, replica: &SccReplica, args: &[&str]) -> Result<String> {
    let (ok, text) = replica.cli(ns, args)?;
    anyhow::ensure!(ok, "scc {}: {text}", args.join(" "));
    Ok(text)
}

/// Starts m1's move to host2 port 2 through `leader`, waits until the
/// destination is ready and every standby holds the prepared phase, then kills
/// the leader; returns the index (in `replicas`) of the one elected after it.
fn kill_leader_when_prepared(
    net: &Internet,
    replicas: &mut [SccReplica],
    leader: usize,
) -> Result<usize> {
    let ns = &net.router;
    cli(
        ns,
        &replicas[leader],
        &["migrate", "m1", "--to", "host2", "--port", "2"],
    )?;
    wait_event(ns, &replicas[leader], "destination ready")?;
    for standby in others(replicas, leader) {
        wait_migrating(ns, standby, true)?;
    }
    replicas[leader].kill()?;
    let survivors: Vec<(usize, &SccReplica)> = replicas
        .iter()
        .enumerate()
        .filter(|(i, r)| *i != leader && r.is_running())
        .collect();
    let alive: Vec<&SccReplica> = survivors.iter().map(|(_, r)| *r).collect();
    let (new_leader, generation) = elected(ns, &alive, WAIT)?;
    let index = survivors[new_leader].0;
    eprintln!("leader r{leader} killed when prepared: r{index} leads, generation {generation}");
    let s = wait_event(ns, &replicas[index], "resumed after restart")?;
    assert!(
        !s["migration"].is_null(),
        "the new leader resumed it: {s:#}"
    );
    Ok(index)
}

#[test]
fn a_new_leader_resumes_the_migration_its_predecessor_left_prepared() -> Result<()> {
    let test = "a_new_leader_resumes_the_migration_its_predecessor_left_prepared";
    if !require_root(test) || !require_program(test, "etcd") || !require_program(test, "etcdctl") {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let net = Internet::with_hosts("screpm", &[None, None, None])?;
    let keys = common::key_pairs(3)?;
    let vms = common::create_vms("screpm", &VMS)?;
    let (a1, m1) = (&vms[0], &vms[1]);
    let tap_b = m1.ifname.clone();
    let tap_c = common::second_tap(m1, VM_MTU)?;
    let inventory = dir.path().join("inventory.toml");
    let entries = common::entries(&VMS, &vms);
    let text = common::inventory_with(&keys, &entries, CONTROLLER_SETTINGS, &[], &[]);
    std::fs::write(&inventory, text)?;
    let (etcd, mut replicas) = start_three(&net, dir.path(), &inventory)?;
    let landing = common::landing_port(2, 2, m1, &tap_c);
    let _scds = common::start_switches_edited(&net, &inventory, &keys, |i, c| {
        Ok(with_every_replica(&c, &replicas)? + &landing(i))
    })?;
    let (leader, _) = elected(&net.router, &replicas.iter().collect::<Vec<_>>(), WAIT)?;
    assert!(reaches(a1, M1_IP, 10)?, "a1 -> m1 on host1");
    let stream = common::paced_stream(m1, a1, M1_IP, 9200)?;
    stream.wait_flowing(64 * 1024, WAIT)?;

    // Prepared, leader killed, the new leader rolls the move back on --abort.
    let leader = kill_leader_when_prepared(&net, &mut replicas, leader)?;
    cli(&net.router, &replicas[leader], &["migrate", "--abort"])?;
    let s = wait_migrating(&net.router, &replicas[leader], false)?;
    assert_eq!(vm_host(&s, "m1").as_deref(), Some("host1"), "{s:#}");
    elected(&net.router, &[&replicas[leader]], WAIT)?;
    assert!(reaches(a1, M1_IP, 10)?, "aborted: m1 answers at host1");

    // A third replica is needed for a second election: the killed one comes back.
    let killed = (0..3)
        .find(|i| !replicas[*i].is_running())
        .context("the killed replica")?;
    replicas[killed] = SccReplica::start(
        &net.router,
        dir.path(),
        u16::try_from(killed)?,
        &etcd.store_spec(),
        controller_ip()?,
        &inventory,
    )?;
    let (leader, _) = elected(&net.router, &replicas.iter().collect::<Vec<_>>(), WAIT)?;

    // Prepared again, leader killed, the new leader completes it on --arrived.
    let leader = kill_leader_when_prepared(&net, &mut replicas, leader)?;
    cli(&net.router, &replicas[leader], &["migrate", "--arrived"])?;
    common::move_vm(m1, &tap_b, &tap_c, &[], || Ok(()))?;
    let s = wait_event(&net.router, &replicas[leader], "cleaned up")?;
    assert_eq!(vm_host(&s, "m1").as_deref(), Some("host2"), "{s:#}");
    elected(&net.router, &[&replicas[leader]], WAIT)?;
    assert!(reaches(a1, M1_IP, 10)?, "arrived: m1 answers at host2");

    stream.wait_flowing(stream.received() + 64 * 1024, WAIT)?;
    let report = stream.finish()?;
    eprintln!("stream: {report}");
    assert!(
        report.intact,
        "the TCP stream survives two failovers during migrations: {report:?}"
    );
    Ok(())
}
