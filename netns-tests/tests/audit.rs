//! `scc` keeps its switches in step: a controller flow deleted behind its back
//! with `ovs-ofctl` (through the switch's `ptcp:` management listener) is put
//! back by the audit, counted as a repair in `scc status` and on `/metrics`, and
//! the traffic it carried flows again; a switch stopped with SIGSTOP is marked
//! disconnected with a `last_error` saying it stopped answering, and once
//! continued it reconnects and is confirmed again. Two hosts in two clouds.

use anyhow::{Context, Result};
mod common;

use common::{reaches, scc, start_scc, VmSpec};
use netns_tests::ofctl::ofctl;
use netns_tests::{require_program, require_root, wait_until, Internet, Scd};
use std::time::Duration;

const VMS: [VmSpec; 2] = [
    VmSpec::new("a1", 0, 1, "100.64.1.1", "02:00:00:00:01:01"),
    VmSpec::new("b1", 1, 1, "100.64.2.1", "02:00:00:00:02:01"),
];

/// Where each switch's management listener answers `ovs-ofctl`, in its namespace.
const MANAGEMENT: &str = "tcp:127.0.0.1:6654";

/// Generous: a loaded machine is slow, not wrong.
const WAIT: Duration = Duration::from_secs(90);

/// The `switch` entry of host `host` in an `scc status` answer.
fn switch_of(status: &serde_json::Value, host: &str) -> serde_json::Value {
    status["hosts"]
        .as_array()
        .and_then(|hs| hs.iter().find(|h| h["name"] == host))
        .map_or(serde_json::Value::Null, |h| h["switch"].clone())
}

/// `scc status`'s entry for `host`'s switch.
fn switch(net: &Internet, host: &str) -> Result<serde_json::Value> {
    Ok(switch_of(&common::status(net)?, host))
}

/// A stopped `scd`, continued when dropped (also when the test fails).
struct Stopped<'a>(&'a Scd);

impl<'a> Stopped<'a> {
    fn new(scd: &'a Scd) -> Result<Stopped<'a>> {
        scd.signal(libc::SIGSTOP)?;
        Ok(Stopped(scd))
    }
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        let _ = self.0.signal(libc::SIGCONT);
    }
}

#[test]
fn scc_keeps_switches_in_step() -> Result<()> {
    let test = "scc_keeps_switches_in_step";
    if !require_root(test) || !require_program(test, "ovs-ofctl") {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let net = Internet::with_hosts("sccaud", &[None, None])?;
    let keys = common::key_pairs(2)?;
    let vms = common::create_vms("sccaud", &VMS)?;
    let inventory = common::inventory_with(
        &keys,
        &common::entries(&VMS, &vms),
        "echo_every_s = 1\necho_timeout_s = 4\naudit_every_s = 2",
        &[],
        &[],
    );
    std::fs::write(dir.path().join("inventory.toml"), inventory)?;
    let scc_proc = start_scc(&net, dir.path(), true)?;
    let scds =
        common::start_switches_edited(&net, &dir.path().join("inventory.toml"), &keys, |_, c| {
            common::with_openflow_listener(&c, "ptcp:6654:127.0.0.1")
        })?;
    scc_proc.wait_synced(&net)?;
    assert!(reaches(&vms[0], VMS[1].ip, 10)?, "a1 -> b1 to begin with");

    // Audits of equal tables send nothing.
    let audited = wait_until(WAIT, "host1's switch audited twice", || {
        Ok(switch(&net, "host1")?["audits"].as_u64() >= Some(2))
    });
    audited.with_context(|| scc_proc.log_text())?;
    assert_eq!(switch(&net, "host1")?["repairs"], 0, "nothing to repair");

    // Delete b1's delivery behind scc's back.
    let flows = scds[1].metric("scd_table_flows", &[])?;
    let deleted = format!("ip,nw_dst={}", VMS[1].ip);
    ofctl(&net.hosts[1], MANAGEMENT, &["del-flows", "{}", &deleted])?;
    let repaired = wait_until(WAIT, "the deleted flows repaired", || {
        Ok(switch(&net, "host1")?["repairs"].as_u64() > Some(0)
            && scds[1].metric("scd_table_flows", &[])? == flows)
    });
    eprintln!(
        "repaired after {:?}",
        repaired.with_context(|| scc_proc.log_text())?
    );
    let status = common::status(&net)?;
    let repairs = switch_of(&status, "host1")["repairs"].as_u64().unwrap_or(0);
    assert!(repairs > 0);
    assert_eq!(status["repairs"].as_u64(), Some(repairs), "the total");
    assert_eq!(switch_of(&status, "host0")["repairs"], 0, "host0 untouched");
    let log = scc_proc.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("repairing") && l.contains(VMS[1].ip)),
        "the repair is logged with the missing flow:\n{log}"
    );
    let (ok, metrics) = scc(&net, &["metrics"])?;
    assert!(ok, "scc metrics: {metrics}");
    let line = format!("scc_switch_repairs_total{{switch=\"host1\"}} {repairs}");
    assert!(
        metrics.lines().any(|l| l == line),
        "no `{line}` in:\n{metrics}"
    );
    assert!(reaches(&vms[0], VMS[1].ip, 10)?, "a1 -> b1 once repaired");

    // A stopped switch is marked disconnected; continued, it comes back.
    {
        let _stopped = Stopped::new(&scds[1])?;
        let silent = wait_until(WAIT, "the stopped switch marked disconnected", || {
            Ok(switch(&net, "host1")?["connected"] == false)
        });
        eprintln!(
            "disconnected after {:?}",
            silent.with_context(|| scc_proc.log_text())?
        );
        let s = switch(&net, "host1")?;
        let error = s["last_error"].as_str().unwrap_or_default();
        assert!(error.contains("stopped answering"), "{s:#}");
        assert_eq!(switch(&net, "host0")?["connected"], true, "{s:#}");
    }
    let back = wait_until(WAIT, "the continued switch reconnected", || {
        Ok(switch(&net, "host1")?["connected"] == true)
    });
    eprintln!(
        "reconnected after {:?}",
        back.with_context(|| scc_proc.log_text())?
    );
    scc_proc.wait_synced(&net)?;
    assert!(reaches(&vms[0], VMS[1].ip, 10)?, "a1 -> b1 after the pause");
    Ok(())
}
