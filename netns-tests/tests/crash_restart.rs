//! `kill -9` of `scc` at each phase of a migration, then a restart: the
//! controller resumes the migration the store holds. A VM moves from host1 to
//! host2 while a client on host0 streams TCP to it. After every restart the
//! switches hold exactly the flows they held before the crash (read with
//! `ovs-ofctl dump-flows` through each switch's management listener), the
//! restarted controller sends them nothing, and the VM answers at the right
//! host; `--abort` works after a restart in the prepared phase, the VM's
//! announcement is heard by a controller restarted while it was awaited, the
//! clean-up of a switched migration runs after a restart, and a restart with a
//! stale `--inventory` keeps the VM where it migrated to. The stream survives
//! with every byte intact.

mod common;

use anyhow::{Context, Result};
use common::{reaches, scc, start_scc, vm_host, wait_timeline, Scc, VmSpec};
use netns_tests::ofctl::{flow_specs, ofctl};
use netns_tests::{require_program, require_root, Internet};

const M1_IP: &str = "100.64.2.1";

/// a1 (the client) on host0, m1 (the VM that moves) on host1, c1 on host2.
const VMS: [VmSpec; 3] = [
    VmSpec::new("a1", 0, 1, "100.64.1.1", "02:00:00:00:01:01"),
    VmSpec::new("m1", 1, 1, M1_IP, "02:00:00:00:02:01"),
    VmSpec::new("c1", 2, 1, "100.64.3.1", "02:00:00:00:03:01"),
];

/// Where each switch's management listener answers `ovs-ofctl`, in its namespace.
const MANAGEMENT: &str = "tcp:127.0.0.1:6654";

/// Every switch's flows as `ovs-ofctl dump-flows` shows them, statistics left out.
fn tables(net: &Internet) -> Result<Vec<Vec<String>>> {
    (0..net.hosts.len())
        .map(|i| {
            let dump = ofctl(&net.hosts[i], MANAGEMENT, &["dump-flows", "{}"])?;
            Ok(flow_specs(&dump))
        })
        .collect()
}

/// `kill -9` of `scc`, then `scc run` again with the same (now stale) inventory
/// file: once synchronised, every switch holds what it held before the crash and
/// was sent nothing; returns the new controller and its status.
fn crash_and_restart(
    net: &Internet,
    dir: &std::path::Path,
    scc_proc: Scc,
    phase: &str,
) -> Result<(Scc, serde_json::Value)> {
    let before = tables(net)?;
    // Drop sends SIGKILL: no chance to write anything.
    drop(scc_proc);
    let again = start_scc(net, dir, true)?;
    let s = again
        .wait_synced(net)
        .with_context(|| format!("after the crash when {phase}"))?;
    for h in s["hosts"].as_array().context("hosts")? {
        assert_eq!(
            h["switch"]["last_flow_mods"], 0,
            "{phase}: nothing re-sent to {}: {h:#}",
            h["name"]
        );
        assert_eq!(
            h["switch"]["flows"], h["desired_flows"],
            "{phase}: {} holds the program",
            h["name"]
        );
    }
    let after = tables(net)?;
    assert_eq!(
        after, before,
        "{phase}: nothing duplicated or lost in the tables"
    );
    let log = again.log_text();
    assert!(
        log.contains("the store is used"),
        "{phase}: the store is the truth:\n{log}"
    );
    eprintln!(
        "{phase}: restarted, {} flows in place",
        after.iter().map(Vec::len).sum::<usize>()
    );
    Ok((again, s))
}

#[test]
fn scc_killed_at_each_migration_phase_resumes_it() -> Result<()> {
    let test = "scc_killed_at_each_migration_phase_resumes_it";
    if !require_root(test) || !require_program(test, "ovs-ofctl") {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let net = Internet::with_hosts("crash", &[None, None, None])?;
    let cloud = common::MigrationCloud::start(&net, dir.path(), "crash", &VMS, 1)?;
    let (a1, m1) = (&cloud.vms[0], &cloud.vms[1]);
    let (tap_b, tap_c) = &cloud.taps;
    let (inventory, scc_proc) = (&cloud.inventory, cloud.scc);
    let landing = common::landing_port(2, 2, m1, tap_c);
    let _scds = common::start_switches_edited(&net, inventory, &cloud.keys, |i, c| {
        Ok(common::with_openflow_listener(&c, "ptcp:6654:127.0.0.1")? + &landing(i))
    })?;
    scc_proc.wait_synced(&net)?;
    let plain = tables(&net)?;
    assert!(reaches(a1, M1_IP, 10)?, "a1 -> m1 on host1");

    // Killed once the destination is ready; after the restart the migration is
    // still prepared, and `--abort` puts the tables back as they were.
    common::start_migration(&net, "m1", "host2", 2)?;
    let (scc_proc, _) = crash_and_restart(&net, dir.path(), scc_proc, "prepared")?;
    assert!(reaches(a1, M1_IP, 10)?, "m1 still answers at host1");
    let (ok, text) = scc(&net, &["migrate", "--abort"])?;
    assert!(ok, "scc migrate --abort after a restart: {text}");
    scc_proc.wait_synced(&net)?;
    assert_eq!(
        tables(&net)?,
        plain,
        "aborted: the tables before the migration"
    );

    // The stream runs through the rest.
    let stream = common::paced_stream(m1, a1, M1_IP, 9100)?;
    stream.wait_flowing(64 * 1024, std::time::Duration::from_secs(20))?;

    // Killed while the announcement is awaited: the restarted controller hears it.
    common::start_migration(&net, "m1", "host2", 2)?;
    let (scc_proc, _) = crash_and_restart(&net, dir.path(), scc_proc, "prepared")?;
    common::move_vm(m1, tap_b, tap_c, &[], || Ok(()))?;
    let s = wait_timeline(&net, "rerouted").with_context(|| scc_proc.log_text())?;
    assert_eq!(vm_host(&s, "m1").as_deref(), Some("host2"));

    // Killed once switched, within the grace period: the restarted controller
    // still forwards stragglers, then cleans up.
    let (scc_proc, s) = crash_and_restart(&net, dir.path(), scc_proc, "switched")?;
    let events = s["timeline"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let resumed = events
        .iter()
        .filter(|e| e[0] == "resumed after restart")
        .count();
    assert!(
        resumed == 2 && common::event_ms(&s, "cleaned up").is_none(),
        "killed before the clean-up, resumed switched: {events:?}"
    );
    wait_timeline(&net, "cleaned up").with_context(|| scc_proc.log_text())?;
    scc_proc.wait_synced(&net)?;
    assert!(reaches(a1, M1_IP, 10)?, "a1 -> m1 at host2");

    // Killed after the clean-up and restarted with the stale inventory file
    // (m1 on host1): the store wins, m1 stays at host2.
    let (scc_proc, s) = crash_and_restart(&net, dir.path(), scc_proc, "cleaned")?;
    assert_eq!(vm_host(&s, "m1").as_deref(), Some("host2"), "{s:#}");
    let log = scc_proc.log_text();
    assert!(
        log.contains("> vm m1 moves from host2 port 2 to host1 port 1"),
        "the difference with the file is logged:\n{log}"
    );
    assert!(
        reaches(a1, M1_IP, 10)?,
        "a1 -> m1 at host2 after the restart"
    );

    // And the file is applied only when asked.
    let path = inventory.to_str().context("path")?;
    let (ok, text) = scc(&net, &["inventory", "import", path])?;
    assert!(ok && text.contains("run again with --yes"), "{text}");
    assert_eq!(
        vm_host(&common::status(&net)?, "m1").as_deref(),
        Some("host2")
    );

    stream.wait_flowing(
        stream.received() + 64 * 1024,
        std::time::Duration::from_secs(20),
    )?;
    let report = stream.finish()?;
    eprintln!("stream: {report}");
    assert!(
        report.intact,
        "the TCP stream survives three controller crashes and a migration: {report:?}"
    );
    drop(scc_proc);
    Ok(())
}
