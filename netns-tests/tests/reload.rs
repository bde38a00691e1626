//! `SIGHUP` on an `scd` that a controller programs too: the reload replaces only the
//! flows of the static file (the static-file cookie) and keeps the controller's with
//! their counters; a file the tables refuse (`table=99`, `goto_table:20`) changes
//! no flow and moves `scd_reload_failures_total`. `ovs-ofctl add-flow` with the
//! controller's cookie stands for the controller.

use anyhow::{ensure, Result};
use netns_tests::ofctl::{flow_specs, n_packets, ofctl};
use netns_tests::two_vms::{IP1, IP2, MAC1, MAC2, VM1, VM2};
use netns_tests::{require_program, require_root, unique, wait_until, Netns, Scd, Vm};
use netns_tests::{scd_config_head, GATEWAY_MAC};
use std::time::Duration;

const TARGET: &str = "tcp:127.0.0.1:6653";
/// The static-file cookie as `dump-flows` prints it.
const STATIC: &str = "cookie=0x5cd0000000000001";
/// The controller's cookie (`scc`'s) as `dump-flows` prints it.
const CONTROLLER: &str = "cookie=0x5cc0000000000000";
/// How long a reload may take to show in the metrics: generous, for a loaded machine.
const RELOADED_WITHIN: Duration = Duration::from_secs(60);

struct Host {
    // Field order is drop order: stop scd before deleting the namespaces.
    scd: Scd,
    vm1: Vm,
    _vm2: Vm,
    host: Netns,
}

fn ready(test: &str) -> bool {
    require_root(test) && require_program(test, "ovs-ofctl")
}

fn config(tap1: &str, tap2: &str) -> String {
    let head = scd_config_head("\"0x5c11\"", "reload-host", true);
    format!(
        "{head}[openflow]\nlisten = \"ptcp:6653\"\n\
         [[port]]\nnumber = 1\nname = \"{tap1}\"\n[[port]]\nnumber = 2\nname = \"{tap2}\"\n"
    )
}

/// Routed delivery to a VM: both MACs rewritten, then out of its port.
fn route(priority: u16, dst: &str, mac: &str, port: u32) -> String {
    format!(
        "priority={priority},ip,nw_dst={dst},\
         actions=set_field:{GATEWAY_MAC}->eth_src,set_field:{mac}->eth_dst,output:{port}"
    )
}

/// The static file the switch starts with: the way to VM 2, and a drop.
fn first_file() -> String {
    format!(
        "# static flows\n{}\npriority=10,ip,nw_dst=100.64.9.9,actions=drop\n",
        route(100, IP2, MAC2, 2)
    )
}

/// One host with two VMs: the way to VM 2 from the static file, the way to VM 1
/// from the "controller"; a ping from VM 1 to VM 2 has used both.
fn setup(test: &str) -> Result<Host> {
    let host = Netns::new(&unique(&format!("{test}-host-")))?;
    let (tap1, tap2) = (unique("scr"), unique("scr"));
    let scd = Scd::start(&host, &config(&tap1, &tap2), Some(&first_file()))?;
    let vm1 = Vm::attach(&unique(&format!("{test}-v1-")), &host, &tap1, VM1)?;
    let vm2 = Vm::attach(&unique(&format!("{test}-v2-")), &host, &tap2, VM2)?;
    let theirs = format!("{CONTROLLER},{}", route(100, IP1, MAC1, 1));
    ofctl(&host, TARGET, &["add-flow", "{}", &theirs])?;
    let h = Host {
        scd,
        vm1,
        _vm2: vm2,
        host,
    };
    ensure!(pings(&h), "VM 1 reaches VM 2 through both flows");
    Ok(h)
}

fn pings(h: &Host) -> bool {
    netns_tests::ping(&h.vm1.ns, IP2, 3).is_ok_and(|p| p.answered)
}

fn dump(h: &Host) -> Result<String> {
    ofctl(&h.host, TARGET, &["dump-flows", "{}"])
}

/// The flows of `dump` with `cookie`, without statistics.
fn specs_with(dump: &str, cookie: &str) -> Vec<String> {
    flow_specs(dump)
        .into_iter()
        .filter(|l| l.starts_with(cookie))
        .collect()
}

/// Writes the static file anew, sends SIGHUP and waits until `metric` is `count`.
fn reload(h: &Host, file: &str, metric: &str, count: u64) -> Result<()> {
    std::fs::write(h.scd.dir.path().join("flows"), file)?;
    h.scd.signal(libc::SIGHUP)?;
    wait_until(RELOADED_WITHIN, metric, || {
        Ok(h.scd.metric(metric, &[])? == count)
    })?;
    Ok(())
}

#[test]
fn sighup_keeps_the_controllers_flow_and_its_counters() -> Result<()> {
    if !ready("sighup_keeps_the_controllers_flow_and_its_counters") {
        return Ok(());
    }
    let h = setup("rlkeep")?;
    let before = dump(&h)?;
    let counted = n_packets(&before, CONTROLLER)?;
    assert!(
        counted >= 3,
        "the ping replies took the controller's flow:\n{before}"
    );

    reload(&h, &first_file(), "scd_reloads_total", 1)?;
    let after = dump(&h)?;
    assert_eq!(flow_specs(&after), flow_specs(&before), "the same flows");
    assert!(
        n_packets(&after, CONTROLLER)? >= counted,
        "the controller's flow kept its counters:\n{before}\n{after}"
    );
    assert!(pings(&h), "VM 1 still reaches VM 2");
    assert!(n_packets(&dump(&h)?, CONTROLLER)? >= counted + 3);
    Ok(())
}

#[test]
fn a_bad_file_leaves_every_flow_and_counts_the_failure() -> Result<()> {
    if !ready("a_bad_file_leaves_every_flow_and_counts_the_failure") {
        return Ok(());
    }
    let h = setup("rlbad")?;
    let before = dump(&h)?;
    let (theirs, ours) = (
        n_packets(&before, CONTROLLER)?,
        n_packets(&before, &format!("nw_dst={IP2}"))?,
    );
    let bad_lines = [
        (
            "table=254,priority=5,actions=drop",
            "table 254 does not exist",
        ),
        (
            "table=20,priority=5,actions=goto_table:10",
            "goto_table:10 from table 20 must name a later table below 254",
        ),
    ];
    for (failures, (bad, why)) in (1..).zip(bad_lines) {
        // The good lines first: a reload that stopped midway would have replaced them.
        let file = format!("{}\n{bad}\n", route(120, IP2, MAC2, 2));
        reload(&h, &file, "scd_reload_failures_total", failures)?;
        let after = dump(&h)?;
        assert_eq!(
            flow_specs(&after),
            flow_specs(&before),
            "{bad}: no flow changed"
        );
        assert!(n_packets(&after, CONTROLLER)? >= theirs, "{after}");
        assert!(
            n_packets(&after, &format!("nw_dst={IP2}"))? >= ours,
            "{after}"
        );
        let log = h.scd.log();
        assert!(log.contains(&format!("flows:2: {why}")), "{log}");
    }
    assert_eq!(h.scd.metric("scd_reloads_total", &[])?, 0);
    assert!(pings(&h), "VM 1 still reaches VM 2");
    Ok(())
}

#[test]
fn an_edited_file_replaces_only_the_static_flows() -> Result<()> {
    if !ready("an_edited_file_replaces_only_the_static_flows") {
        return Ok(());
    }
    let h = setup("rledit")?;
    let before = dump(&h)?;
    let counted = n_packets(&before, CONTROLLER)?;
    let edited = format!(
        "{}\npriority=10,ip,nw_dst=100.64.9.10,actions=drop\n",
        route(110, IP2, MAC2, 2)
    );

    reload(&h, &edited, "scd_reloads_total", 1)?;
    let after = dump(&h)?;
    assert_eq!(
        specs_with(&after, CONTROLLER),
        specs_with(&before, CONTROLLER)
    );
    assert!(n_packets(&after, CONTROLLER)? >= counted, "{after}");
    let ours = specs_with(&after, STATIC);
    assert_eq!(ours.len(), 2, "{after}");
    assert!(
        ours.iter()
            .any(|l| l.contains("priority=110,ip,nw_dst=100.64.1.2")),
        "{after}"
    );
    assert!(
        ours.iter()
            .any(|l| l.contains("priority=10,ip,nw_dst=100.64.9.10")),
        "{after}"
    );
    assert!(pings(&h), "VM 1 reaches VM 2 through the edited flow");
    assert!(n_packets(&dump(&h)?, "priority=110")? >= 3);
    Ok(())
}
