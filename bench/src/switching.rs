//! `bench switching`: two namespace VMs on one host, switched between their
//! interfaces by `scd` (TAP ports, static flows `in_port=1→2`, `2→1`), by Open
//! vSwitch's userspace netdev datapath (tap-type ports, the same two flows; once
//! without and once with its userspace TSO), and by a Linux bridge over veths (the
//! kernel's limit). TCP throughput by iperf3 (1 and 4 streams), round trips at idle
//! by ping, and the latency `scd` adds over the bridge.

use crate::common::{fmt, measure, ratio, start_scd, Launcher, Row, GW};
use crate::ovs::Ovs;
use anyhow::{Context, Result};
use netns_tests::{run, unique, Netns, Scd, Vm, VmAddress};
use std::time::{Duration, Instant};

/// The two VMs' MACs and addresses.
pub const MAC1: &str = "02:00:00:00:01:01";
pub const MAC2: &str = "02:00:00:00:01:02";
pub const IP1: &str = "100.64.1.1";
pub const IP2: &str = "100.64.1.2";
/// The VMs share one /24, so ARP crosses the switch like any other frame.
const PREFIX_LEN: u8 = 24;

/// A VM's address on the VMs' shared /24.
fn on_shared_24<'a>(mac: &'a str, ip: &'a str) -> VmAddress<'a> {
    VmAddress {
        mac,
        ip,
        prefix_len: PREFIX_LEN,
    }
}

/// The same two flows for every OpenFlow switch: a wire between ports 1 and 2.
const WIRE_FLOWS: &str =
    "priority=100,in_port=1,actions=output:2\npriority=100,in_port=2,actions=output:1\n";

/// Issue 11's bound on the latency `scd` adds to a local hop (p50 over the bridge).
const ADDED_LATENCY_TARGET_US: f64 = 30.0;

/// One host whose `scd` wires two VMs' TAPs together (ports 1 and 2).
#[derive(Debug)]
pub struct ScdOneHost {
    // Field order is drop order: the switch stops before the namespaces go.
    /// The switch.
    pub scd: Scd,
    /// VM 100.64.1.1 on port 1.
    pub vm1: Vm,
    /// VM 100.64.1.2 on port 2.
    pub vm2: Vm,
    /// The host namespace the switch runs in.
    pub host: Netns,
}

/// Builds the host with its switch started by `start` (host namespace, config,
/// flows, no key), so a benchmark can run it under a profiler; the TAPs `scd`
/// creates are handed to the VMs' namespaces.
pub fn scd_one_host(start: &Launcher<'_>) -> Result<ScdOneHost> {
    scd_one_host_with(start, "")
}

/// [`scd_one_host`] with `extra` sections appended to the switch's configuration
/// (an OpenFlow listener, say).
pub fn scd_one_host_with(start: &Launcher<'_>, extra: &str) -> Result<ScdOneHost> {
    let host = Netns::new(&unique("bench-sw-scd-"))?;
    let (tap1, tap2) = (unique("bst"), unique("bst"));
    // The ARP responder is off: ARP goes through the two flows, as in the peers.
    let config = format!(
        "datapath_id = 1\n[overlay]\nprefix = \"100.64.0.0/10\"\ngateway_mac = \"{GW}\"\n\
         arp_responder = false\n[metrics]\nlisten = \"127.0.0.1:9464\"\n[flows]\nfile = \"flows\"\n\
         [[port]]\nnumber = 1\nname = \"{tap1}\"\n[[port]]\nnumber = 2\nname = \"{tap2}\"\n{extra}"
    );
    let scd = start(&host, &config, Some(WIRE_FLOWS), None)?;
    let vm1 = Vm::attach(
        &unique("bench-sw-vm1-"),
        &host,
        &tap1,
        on_shared_24(MAC1, IP1),
    )?;
    let vm2 = Vm::attach(
        &unique("bench-sw-vm2-"),
        &host,
        &tap2,
        on_shared_24(MAC2, IP2),
    )?;
    run(vm1.ns.command("ping").args(["-c", "1", "-w", "10", IP2]))?;
    Ok(ScdOneHost {
        scd,
        vm1,
        vm2,
        host,
    })
}

fn scd_row(seconds: u32) -> Result<Row> {
    let h = scd_one_host(&start_scd)?;
    Ok(measure(
        "scd",
        &h.vm1.ns,
        &h.vm2.ns,
        IP2,
        seconds,
        "TAP ports, 2 static flows".into(),
    ))
}

/// A VM on a tap-type port `port` of Open vSwitch's netdev bridge: OVS creates
/// the TAP in `host` and the VM's namespace takes it, while OVS keeps its
/// descriptor.
pub fn ovs_tap_vm(ovs: &Ovs<'_>, host: &Netns, port: u32, addr: VmAddress<'_>) -> Result<Vm> {
    let tap = unique("bot");
    ovs.vsctl(&[
        "add-port",
        "br0",
        &tap,
        "--",
        "set",
        "Interface",
        &tap,
        "type=tap",
        &format!("ofport_request={port}"),
    ])?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while host.ip(&["link", "show", &tap]).is_err() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "OVS did not create {tap}:\n{}",
            ovs.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let name = unique(&format!("bench-sw-ovm{port}-"));
    Vm::attach(&name, host, &tap, addr)
}

/// Runs `f` with two VMs on tap-type ports of Open vSwitch's netdev bridge
/// (the wire flows loaded, a first ping through) and the switch's process id:
/// OVS creates each TAP in its host and the VM's namespace takes it, while OVS
/// keeps its descriptor.
pub fn with_ovs_vms<R>(tso: bool, f: impl FnOnce(&Vm, &Vm, u32) -> R) -> Result<R> {
    let host = Netns::new(&unique("bench-sw-ovs-"))?;
    let config: &[&str] = if tso {
        &["userspace-tso-enable=true"]
    } else {
        &[]
    };
    let ovs = Ovs::start(&host, config)?;
    let mut vms = Vec::new();
    for (port, mac, ip) in [(1, MAC1, IP1), (2, MAC2, IP2)] {
        vms.push(ovs_tap_vm(&ovs, &host, port, on_shared_24(mac, ip))?);
    }
    let dir = tempfile::tempdir()?;
    let flows = dir.path().join("flows");
    std::fs::write(&flows, WIRE_FLOWS)?;
    let target = ovs.target();
    run(host
        .command("ovs-ofctl")
        .args(["-O", "OpenFlow13", "del-flows", &target]))?;
    run(host.command("ovs-ofctl").args([
        "-O",
        "OpenFlow13",
        "add-flows",
        &target,
        flows.to_str().context("path")?,
    ]))?;
    run(vms[0].ns.command("ping").args(["-c", "1", "-w", "10", IP2]))
        .with_context(|| format!("no ping through OVS:\n{}", ovs.log_tail()))?;
    Ok(f(&vms[0], &vms[1], ovs.pid()))
}

fn ovs_row(seconds: u32, tso: bool) -> Result<Row> {
    let (name, note) = if tso {
        (
            "Open vSwitch userspace, TSO on",
            "netdev datapath, tap ports, other_config:userspace-tso-enable=true",
        )
    } else {
        (
            "Open vSwitch userspace",
            "netdev datapath, tap ports, 2 flows",
        )
    };
    with_ovs_vms(tso, |vm1, vm2, _| {
        measure(name, &vm1.ns, &vm2.ns, IP2, seconds, note.into())
    })
}

/// Runs `f` with two VMs on veths enslaved to a Linux bridge in a host of their
/// own (a first ping through): the kernel's own path.
pub fn with_bridge_vms<R>(f: impl FnOnce(&Netns, &Netns) -> R) -> Result<R> {
    let host = Netns::new(&unique("bench-sw-br-"))?;
    host.ip(&["link", "add", "br0", "type", "bridge"])?;
    host.ip(&["link", "set", "br0", "up"])?;
    let mut vms = Vec::new();
    for (mac, ip) in [(MAC1, IP1), (MAC2, IP2)] {
        let vm = Netns::new(&unique("bench-sw-bvm-"))?;
        let (outside, inside) = (unique("bbo"), unique("bbi"));
        netns_tests::veth(&outside, &host, &inside, &vm)?;
        host.ip(&["link", "set", &outside, "master", "br0", "up"])?;
        vm.ip(&["link", "set", &inside, "address", mac])?;
        vm.ip(&["addr", "add", &format!("{ip}/{PREFIX_LEN}"), "dev", &inside])?;
        vm.ip(&["link", "set", &inside, "up"])?;
        vms.push(vm);
    }
    run(vms[0].command("ping").args(["-c", "1", "-w", "10", IP2]))?;
    Ok(f(&vms[0], &vms[1]))
}

fn bridge_row(seconds: u32) -> Result<Row> {
    with_bridge_vms(|vm1, vm2| {
        measure(
            "Linux bridge (limit)",
            vm1,
            vm2,
            IP2,
            seconds,
            "kernel only: veth, bridge, veth".into(),
        )
    })
}

/// Measures every switch and prints the table; returns the rows for the chart.
pub fn switching(seconds: u32) -> Result<Vec<Row>> {
    let or_failed = |name: &str, r: Result<Row>| {
        r.unwrap_or_else(|e| Row::failed(name, format!("failed: {e:#}")))
    };
    let rows = vec![
        or_failed("Linux bridge (limit)", bridge_row(seconds)),
        or_failed("scd", scd_row(seconds)),
        or_failed("Open vSwitch userspace", ovs_row(seconds, false)),
        or_failed("Open vSwitch userspace, TSO on", ovs_row(seconds, true)),
    ];
    let (bridge, scd, ovs, ovs_tso) = (&rows[0], &rows[1], &rows[2], &rows[3]);
    println!(
        "\n### Switching: VM to VM through one host's switch (iperf3 {seconds} s, ping 200 x 5 ms)\n"
    );
    println!("| switch | 1 stream Gbit/s | 4 streams Gbit/s | x OVS TSO (1 stream) | x OVS (1 stream) | x bridge (1 stream) | RTT p50 µs | RTT p99 µs | notes |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            fmt(r.gbits_1, 2),
            fmt(r.gbits_4, 2),
            ratio(r.gbits_1, ovs_tso.gbits_1),
            ratio(r.gbits_1, ovs.gbits_1),
            ratio(r.gbits_1, bridge.gbits_1),
            fmt(r.p50_us, 0),
            fmt(r.p99_us, 0),
            r.note
        );
    }
    let added = scd.p50_us.zip(bridge.p50_us).map(|(s, b)| s - b);
    println!(
        "\nLatency scd adds (p50 minus the bridge's p50): {} µs (target < {ADDED_LATENCY_TARGET_US:.0} µs: {}). \
         scd against OVS userspace with TSO, 1 stream: {}x (target ≥ 1: {}).",
        fmt(added, 0),
        verdict(added.map(|a| a < ADDED_LATENCY_TARGET_US)),
        ratio(scd.gbits_1, ovs_tso.gbits_1),
        verdict(
            scd.gbits_1
                .zip(ovs_tso.gbits_1)
                .map(|(s, o)| s >= o)
        ),
    );
    println!("\nCommand: `bash scripts/bench.sh switching` (runs `target/release/bench switching --seconds {seconds}`)");
    Ok(rows)
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "missed",
        None => "not measured",
    }
}
