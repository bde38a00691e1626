//! `scd`'s OpenFlow 1.3 pipeline beyond apply-actions, programmed by a real peer
//! (`ovs-ofctl -O OpenFlow13`, which encodes the instructions itself) and checked
//! with real traffic between two VM namespaces: an ingress table tags each packet
//! with its port in the metadata (write-metadata), a routing table writes the
//! forwarding actions into the action set (write-actions) and goes to an egress
//! table far beyond the old eight (table 200), which matches the metadata
//! (masked) and either lets the action set run or clears it (clear-actions). That
//! is the shape of Faucet's egress pipeline. A packet a later table sends to the
//! controller carries the metadata an earlier one wrote in its packet-in, as
//! `ovs-ofctl monitor` shows.

use anyhow::Result;
use netns_tests::ofctl::{n_packets, Monitor};
use netns_tests::two_vms::{switch_with_two_vms, IP1, IP2, MAC1, MAC2, VM1, VM2};
use netns_tests::GATEWAY_MAC;
use netns_tests::{require_program, require_root, scd_config_head, unique, Netns, Scd, Vm};

const TARGET: &str = "tcp:127.0.0.1:6653";

struct Host {
    // Field order is drop order: stop scd before deleting the namespaces.
    scd: Scd,
    vm1: Vm,
    _vm2: Vm,
    host: Netns,
}

/// The host of test `name` (its namespaces named after `test`), or none when
/// the test cannot run here (it says why: no root, no `ovs-ofctl`).
fn setup(name: &str, test: &str) -> Result<Option<Host>> {
    if !(require_root(name) && require_program(name, "ovs-ofctl")) {
        return Ok(None);
    }
    let host = Netns::new(&unique(&format!("{test}-host-")))?;
    let (scd, vm1, vm2) = switch_with_two_vms(
        test,
        &host,
        &scd_config_head("\"0x5c13\"", "of13-host", false),
        "listen = \"ptcp:6653\"",
        [VM1, VM2],
    )?;
    Ok(Some(Host {
        scd,
        vm1,
        _vm2: vm2,
        host,
    }))
}

fn ofctl(host: &Netns, args: &[&str]) -> Result<String> {
    netns_tests::ofctl::ofctl(host, TARGET, args)
}

fn add_flow(host: &Netns, flow: &str) -> Result<String> {
    ofctl(host, &["add-flow", "{}", flow])
}

fn ping(from: &Vm, to: &str, count: u32) -> bool {
    netns_tests::ping(&from.ns, to, count).is_ok_and(|p| p.answered)
}

/// Routing: rewrite the MACs and output, all in the action set, then egress.
fn route(dst: &str, mac: &str, port: u32) -> String {
    format!(
        "table=1,priority=100,ip,nw_dst={dst},actions=write_actions(set_field:{GATEWAY_MAC}->eth_src,\
         set_field:{mac}->eth_dst,output:{port}),goto_table:200"
    )
}

#[test]
fn metadata_action_set_and_clear_actions_carry_real_traffic() -> Result<()> {
    let test = "metadata_action_set_and_clear_actions_carry_real_traffic";
    let Some(h) = setup(test, "of13")? else {
        return Ok(());
    };
    let show = ofctl(&h.host, &["show", "{}"])?;
    assert!(show.contains("n_tables:254"), "{show}");
    for port in [1, 2] {
        let tag = format!(
            "table=0,priority=100,in_port={port},actions=write_metadata:{:#x}/0xff00,goto_table:1",
            port << 8
        );
        add_flow(&h.host, &tag)?;
    }
    add_flow(&h.host, &route(IP1, MAC1, 1))?;
    add_flow(&h.host, &route(IP2, MAC2, 2))?;
    // Egress: anything tagged by a VM port goes (its action set runs).
    add_flow(&h.host, "table=200,priority=10,metadata=0/0xfc00,actions=")?;
    let dump = ofctl(&h.host, &["dump-flows", "{}"])?;
    assert!(
        dump.contains("write_metadata:0x100/0xff00,goto_table:1"),
        "{dump}"
    );
    assert!(dump.contains("write_actions("), "{dump}");
    assert!(
        ping(&h.vm1, IP2, 3),
        "ping through write-actions failed:\n{dump}\n{}",
        h.scd.log()
    );
    let after = ofctl(&h.host, &["dump-flows", "{}"])?;
    assert!(n_packets(&after, "table=200")? >= 6, "{after}");

    // Egress clears the action set of what VM 2 sends: its replies are dropped.
    add_flow(
        &h.host,
        "table=200,priority=20,metadata=0x200/0xff00,actions=clear_actions",
    )?;
    assert!(
        !ping(&h.vm1, IP2, 2),
        "ping worked though egress clears VM 2's action set"
    );
    let cleared = ofctl(&h.host, &["dump-flows", "{}"])?;
    assert!(
        n_packets(&cleared, "metadata=0x200/0xff00")? >= 2,
        "the clearing entry saw no packet:\n{cleared}"
    );
    ofctl(
        &h.host,
        &["del-flows", "{}", "table=200,metadata=0x200/0xff00"],
    )?;
    assert!(ping(&h.vm1, IP2, 1), "ping failed once egress let go");
    Ok(())
}

#[test]
fn a_packet_in_carries_the_metadata_an_earlier_table_wrote() -> Result<()> {
    let test = "a_packet_in_carries_the_metadata_an_earlier_table_wrote";
    let Some(h) = setup(test, "of13md")? else {
        return Ok(());
    };
    add_flow(
        &h.host,
        "table=0,priority=100,in_port=1,actions=write_metadata:0x5c00/0xff00,goto_table:1",
    )?;
    add_flow(
        &h.host,
        "table=1,priority=10,cookie=0xc1,icmp,actions=CONTROLLER:65535",
    )?;
    let monitor = Monitor::start(&h.host, TARGET, &[])?;
    netns_tests::wait_until(
        std::time::Duration::from_secs(30),
        "ovs-ofctl monitor connected",
        || Ok(h.scd.metric("scd_openflow_connections", &[])? >= 1),
    )?;
    // The controller answers nothing: the ping only has to leave VM 1.
    let _ = ping(&h.vm1, IP2, 1);
    monitor.wait_for(
        "OFPT_PACKET_IN",
        "a packet-in of the ping with its metadata",
        &[
            "table_id=1 cookie=0xc1",
            "metadata=0x5c00,in_port=1 (via action)",
            "icmp",
        ],
    )
}
