//! Public addresses that follow their VM: a client on the emulated internet holds a
//! TCP connection to a VM's public address (203.0.113.10, served through 1:1 NAT by
//! the gateways of cloud A and cloud C; the internet first sends it to cloud A's)
//! while the VM migrates from cloud B to cloud C. The gateways' inbound translation
//! sends to the VM's current host, so the migration's reroute step redirects it;
//! the VM's replies leave through its home gateway with the public address as
//! source, which becomes cloud C's in the same step, and the controller announces
//! the address there (a route change in the router namespace). The stream survives
//! with every byte intact and its gap is printed. Packets to a public address no VM owns, and packets from another VM
//! claiming the public address as source, are dropped and counted in the switches'
//! flow counters.

mod common;

use anyhow::{Context, Result};
use common::{event_ms, move_vm, reaches, start_scc, wait_timeline, VmSpec};
use netns_tests::{require_root, unique, veth, wait_until, Internet, Netns, Scd, Vm};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

const PUBLIC: &str = "203.0.113.10";
const UNOWNED: &str = "203.0.113.99";
const CLIENT: &str = "198.51.100.10";
const M1_IP: &str = "100.64.2.1";
/// m1 (the VM with the public address) in cloud B, c1 in cloud C.
const VMS: [VmSpec; 2] = [
    VmSpec::new("m1", 1, 1, M1_IP, "02:00:00:00:02:01"),
    VmSpec::new("c1", 2, 1, "100.64.3.1", "02:00:00:00:03:01"),
];
const UPLINK_PORT: u32 = 100;
const UPLINK_A_ADDR: &str = "198.51.100.130";
const UPLINK_C_ADDR: &str = "198.51.100.194";
const ROUTER_MAC: &str = "02:5c:00:00:0a:fe";
/// The VMs' way out of the overlay: any overlay address answers ARP with the
/// anycast gateway MAC, and the switch routes by IP.
const DEFAULT_ROUTE: &str = "default via 100.64.0.1";
/// What the owner of the public address sends after the dropped probes.
const MARKER: &[u8] = b"marker";
/// Datagrams sent for each kind of drop.
const PROBES: u64 = 20;
/// Priority of the controller's counted drops (`controller::gateway`).
const DROP_PRIORITY: &str = "priority=\"64000\"";

/// Sends [`PROBES`] datagrams from `from` to `to` inside namespace `ns`.
fn send_probes(ns: &Netns, from: &'static str, to: SocketAddr) -> Result<()> {
    ns.enter(move || -> Result<()> {
        let s = UdpSocket::bind((from, 0))?;
        for i in 0..PROBES {
            s.send_to(&i.to_be_bytes(), to)?;
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    })?
}

/// Packets that hit the counted drops of `scd` whose match contains `pattern`.
fn dropped(scd: &Scd, pattern: &str) -> Result<u64> {
    scd.metric("scd_flow_packets_total", &[DROP_PRIORITY, pattern])
}

/// A gateway's uplink: a veth from the router (`router_addr`/26, MAC
/// [`ROUTER_MAC`]) into host `i`'s namespace, where `scd` attaches to it as a raw
/// port. Returns its name in the host.
fn uplink(net: &Internet, i: usize, router_addr: &str) -> Result<String> {
    let (router_up, gw_up) = (unique("sgr"), unique("sgu"));
    veth(&router_up, &net.router, &gw_up, &net.hosts[i])?;
    net.router
        .ip(&["link", "set", &router_up, "address", ROUTER_MAC])?;
    net.router.ip(&[
        "addr",
        "add",
        &format!("{router_addr}/26"),
        "dev",
        &router_up,
    ])?;
    net.router.ip(&["link", "set", &router_up, "up"])?;
    net.hosts[i].ip(&["link", "set", &gw_up, "up"])?;
    Ok(gw_up)
}

/// The `[host.uplink]` table of a gateway.
fn uplink_table(interface: &str, address: &str, mac: &str) -> String {
    format!(
        "[host.uplink]\nport = {UPLINK_PORT}\ninterface = \"{interface}\"\naddress = \"{address}\"\n\
         mac = \"{mac}\"\nrouter_mac = \"{ROUTER_MAC}\"\npublic_prefix = \"203.0.113.0/24\""
    )
}

/// A client namespace behind the router, in 198.51.100.0/26.
fn client(net: &Internet) -> Result<Vm> {
    let client = Netns::new(&unique("gw-client-"))?;
    let (router_cl, client_if) = (unique("sgr"), unique("sgc"));
    veth(&router_cl, &net.router, &client_if, &client)?;
    net.router
        .ip(&["addr", "add", "198.51.100.1/26", "dev", &router_cl])?;
    net.router.ip(&["link", "set", &router_cl, "up"])?;
    client.ip(&["addr", "add", &format!("{CLIENT}/26"), "dev", &client_if])?;
    client.ip(&["link", "set", &client_if, "up"])?;
    client.ip(&["route", "add", "default", "via", "198.51.100.1"])?;
    let mac = client.ip(&["-br", "link", "show", &client_if])?;
    let client = Vm {
        ns: client,
        ifname: client_if,
        mac: mac
            .split_whitespace()
            .nth(2)
            .unwrap_or_default()
            .to_string(),
        ip: CLIENT.to_string(),
    };
    Ok(client)
}

#[test]
fn a_public_address_follows_its_vm_across_clouds() -> Result<()> {
    if !require_root("a_public_address_follows_its_vm_across_clouds") {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let net = Internet::with_hosts("gw", &[None; 3])?;
    // Gateways in cloud A (host0) and cloud C (host2), both serving
    // 203.0.113.0/24; the internet first sends the prefix to cloud A's. Loose
    // reverse-path filtering, as on the internet: replies may leave through the
    // new gateway before the route to it has changed.
    let uplink_a = uplink(&net, 0, "198.51.100.129")?;
    let uplink_c = uplink(&net, 2, "198.51.100.193")?;
    net.router
        .ip(&["route", "add", "203.0.113.0/24", "via", UPLINK_A_ADDR])?;
    netns_tests::run(
        net.router
            .command("sysctl")
            .args(["-qw", "net.ipv4.conf.all.rp_filter=2"]),
    )?;
    let client = client(&net)?;
    let keys = common::key_pairs(3)?;
    // m1: the VM with the public address, a TAP on host1 (cloud B, port 1) and one
    // on host2 (cloud C, port 2). c1: another VM in cloud C that will spoof.
    let vms = common::create_vms("gw", &VMS)?;
    for vm in &vms {
        vm.ns
            .ip(&["route", "add", "default", "via", "100.64.0.1"])?;
    }
    let (m1, c1) = (&vms[0], &vms[1]);
    let tap_b = m1.ifname.clone();
    let tap_c = common::second_tap(m1, common::VM_MTU)?;
    let entries = common::entries(&VMS, &vms);
    let gateway_a = uplink_table(&uplink_a, UPLINK_A_ADDR, "02:5c:00:00:0a:01");
    let gateway_c = uplink_table(&uplink_c, UPLINK_C_ADDR, "02:5c:00:00:0c:01");
    let public = format!("public_ip = \"{PUBLIC}\"");
    let inventory = dir.path().join("inventory.toml");
    std::fs::write(
        &inventory,
        common::inventory_with(
            &keys,
            &entries,
            "announce = \"ip-route\"",
            &[(0, &gateway_a), (2, &gateway_c)],
            &[("m1", &public)],
        ),
    )?;
    let scc_proc = start_scc(&net, dir.path(), true)?;
    let landing = common::landing_port(2, 2, m1, &tap_c);
    let scds = common::start_switches(&net, &inventory, &keys, landing)?;
    scc_proc.wait_synced(&net)?;
    assert!(
        reaches(&client, PUBLIC, 10)?,
        "client -> {PUBLIC} (m1 on host1)"
    );
    assert!(reaches(m1, CLIENT, 5)?, "m1 -> client, leaving as {PUBLIC}");

    // The stream: the client sends pseudo-random chunks to the public address
    // every millisecond; m1 sees the client's own address (1:1 NAT).
    let stream = common::paced_stream(m1, &client, PUBLIC, 9100)?;
    stream.wait_flowing(64 * 1024, Duration::from_secs(20))?;

    // m1 migrates from cloud B (host1) to cloud C (host2).
    common::start_migration(&net, "m1", "host2", 2)?;
    move_vm(m1, &tap_b, &tap_c, &[DEFAULT_ROUTE], || Ok(()))?;
    let s = wait_timeline(&net, "rerouted")?;
    let arrived = event_ms(&s, "arrived").context("arrival")?;
    let rerouted = event_ms(&s, "rerouted").context("rerouted")?;
    eprintln!(
        "m1 -> host2: arrival at {arrived:.1} ms, all switches (the gateway's included) rerouted {:.1} ms later",
        rerouted - arrived
    );
    // Cloud C has a gateway of its own: the controller announces the address
    // there (a route change in the router namespace, where scc runs).
    let s = wait_timeline(&net, "announced")?;
    let announced = event_ms(&s, "announced").context("announced")?;
    eprintln!(
        "{PUBLIC} announced via cloud C's gateway {:.1} ms after the arrival",
        announced - arrived
    );
    let route = net.router.ip(&["route", "get", PUBLIC])?;
    assert!(
        route.contains(&format!("via {UPLINK_C_ADDR}")),
        "the internet sends {PUBLIC} to cloud C's gateway: {route}"
    );
    assert!(
        reaches(m1, CLIENT, 10)?,
        "m1 -> client from cloud C, still as {PUBLIC}"
    );
    let uplink_c = |dir: &str| {
        scds[2].metric(
            "scd_port_packets_total",
            &[
                &format!("port=\"{UPLINK_PORT}\""),
                &format!("dir=\"{dir}\""),
            ],
        )
    };
    let (rx_c, tx_c) = (uplink_c("rx")?, uplink_c("tx")?);
    eprintln!("cloud C's uplink after the move: {rx_c} packets in, {tx_c} out");
    assert!(
        rx_c > 0 && tx_c > 0,
        "the stream now enters and leaves through cloud C's gateway"
    );

    let report = stream.finish()?;
    eprintln!(
        "stream to {PUBLIC} across the migration: {} bytes sent, {} received, longest gap {:.0} ms",
        report.sent,
        report.received,
        report.gap.as_secs_f64() * 1000.0
    );
    assert_eq!(
        report.peer.ip(),
        CLIENT.parse::<IpAddr>()?,
        "the VM sees the client's address"
    );
    assert!(
        report.intact,
        "the TCP connection survives the migration with every byte intact: {report:?}"
    );

    // Drops, counted by the controller's drop flows. First: the internet sends to
    // a public address no VM owns; the gateway's uplink drops it.
    let in_port = format!("in_port={UPLINK_PORT}");
    let unowned_before = dropped(&scds[0], &in_port)?;
    send_probes(&client.ns, CLIENT, format!("{UNOWNED}:9").parse()?)?;
    // Second: c1 (cloud C) claims m1's public address as its source; its own
    // host drops it before it reaches any tunnel: port security at c1's port
    // (port 1 is bound to c1's addresses), before the tables' spoofed-source
    // drop flow would see it.
    let rx = client.ns.enter(|| UdpSocket::bind((CLIENT, 9300)))??;
    rx.set_read_timeout(Some(Duration::from_secs(5)))?;
    c1.ns
        .ip(&["addr", "add", &format!("{PUBLIC}/32"), "dev", &c1.ifname])?;
    // Its kernel would now ask for the gateway in the public address's name,
    // an ARP that port security drops too: the neighbour is pinned so that the
    // spoofed datagrams themselves leave c1.
    c1.ns.ip(&[
        "neigh",
        "replace",
        "100.64.0.1",
        "lladdr",
        "02:5c:00:00:00:01",
        "dev",
        &c1.ifname,
        "nud",
        "permanent",
    ])?;
    let spoof_pattern = "nw_src=203.0.113.0/24";
    let c1_spoofed = || -> Result<u64> {
        let reason = |r| scds[2].metric("scd_port_spoofed_total", &["port=\"1\"", r]);
        Ok(reason("reason=\"ip\"")? + reason("reason=\"arp\"")?)
    };
    let spoofed_at_port =
        || -> Result<u64> { Ok(dropped(&scds[2], spoof_pattern)? + c1_spoofed()?) };
    let spoofed_before = spoofed_at_port()?;
    send_probes(&c1.ns, PUBLIC, format!("{CLIENT}:9300").parse()?)?;
    let counted = wait_until(Duration::from_secs(10), "every probe counted", || {
        Ok(dropped(&scds[0], &in_port)? - unowned_before >= PROBES
            && spoofed_at_port()? - spoofed_before >= PROBES)
    });
    if let Err(e) = counted {
        eprintln!("{e:#}");
    }
    let unowned = dropped(&scds[0], &in_port)? - unowned_before;
    let spoofed = spoofed_at_port()? - spoofed_before;
    // The positive control: m1, which owns the address, sends a marker to the same
    // socket after the spoofed probes. The client must receive it (the receiver
    // was listening), and nothing before it.
    m1.ns.enter(|| -> Result<()> {
        let s = UdpSocket::bind((M1_IP, 0))?;
        for _ in 0..3 {
            s.send_to(MARKER, (CLIENT, 9300))?;
        }
        Ok(())
    })??;
    let leaked = netns_tests::datagrams_before_marker(&rx, MARKER)
        .context("m1's marker never reached the client")?;
    eprintln!(
        "dropped and counted: {unowned} packets to unowned {UNOWNED} at the gateway, {spoofed} spoofed from {PUBLIC} inside the overlay"
    );
    assert!(
        unowned >= PROBES,
        "every packet to {UNOWNED} counted: {unowned}"
    );
    assert!(spoofed >= PROBES, "every spoofed packet counted: {spoofed}");
    assert_eq!(leaked, 0, "no spoofed packet reached the client");
    drop(scds);
    Ok(())
}
