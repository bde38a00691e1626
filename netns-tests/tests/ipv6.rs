//! IPv6 in the overlay, end to end: three dual-stack namespace VMs in three
//! clouds autoconfigure their IPv6 addresses from `scd`'s router
//! advertisements (SLAAC, the prefix `overlay_ipv6_prefix` of the inventory),
//! resolve the anycast gateway by neighbour discovery answered on their own
//! host, and reach each other over IPv6 through the WireGuard tunnels (ping and
//! a TCP stream), also after one of them migrates to another cloud, with its
//! stream intact. A VM forging another VM's IPv6 source reaches nobody and is
//! counted on its port (`scd_port_spoofed_total{reason="ipv6"}`), while the
//! same datagram from its own address, sent before and after, arrives. One VM
//! has an address of its own (`ipv6` in the inventory), which reaches its
//! switch's port security through the bind-port message.

mod common;

use anyhow::{Context, Result};
use common::{reaches, VmSpec};
use netns_tests::packet::send_from;
use netns_tests::{require_root, wait_until, Internet, Vm};
use std::net::{Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

/// a1 in cloud A, m1 (the VM that moves) in cloud B, c1 in cloud C.
const VMS: [VmSpec; 3] = [
    VmSpec::new("a1", 0, 1, "100.64.1.1", "02:00:00:00:01:01"),
    VmSpec::new("m1", 1, 1, "100.64.2.1", "02:00:00:00:02:01"),
    VmSpec::new("c1", 2, 1, "100.64.3.1", "02:00:00:00:03:01"),
];

use common::OVERLAY_IPV6_PREFIX as PREFIX;
/// The addresses SLAAC gives the VMs' MACs in the prefix's first /64.
const A1: &str = "fd00:5c::ff:fe00:101";
const M1: &str = "fd00:5c::ff:fe00:201";
const C1_SLAAC: &str = "fd00:5c::ff:fe00:301";
/// c1's own address, given in the inventory (and configured in the guest).
const C1: &str = "fd00:5c:0:3::1";
use common::GATEWAY_LINK_LOCAL as GATEWAY_LL;
const GATEWAY_MAC: [u8; 6] = [0x02, 0x5c, 0, 0, 0, 1];

fn ones_complement(mut sum: u32, bytes: &[u8]) -> u32 {
    for pair in bytes.chunks(2) {
        let hi = u32::from(pair[0]) << 8;
        sum += hi | pair.get(1).map_or(0, |b| u32::from(*b));
    }
    sum
}

/// A frame to the gateway holding a UDP datagram from `src` to `dst`:7000, with
/// a correct checksum (so a forgery that got through would be delivered).
fn udp6_frame(eth_src: [u8; 6], src: Ipv6Addr, dst: Ipv6Addr, payload: &[u8]) -> Vec<u8> {
    let udp_len = u16::try_from(8 + payload.len()).unwrap_or(0);
    let mut udp = Vec::new();
    udp.extend_from_slice(&40000u16.to_be_bytes());
    udp.extend_from_slice(&7000u16.to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let mut sum = ones_complement(0, &src.octets());
    sum = ones_complement(sum, &dst.octets());
    sum = ones_complement(sum, &u32::from(udp_len).to_be_bytes());
    sum = ones_complement(sum, &[0, 0, 0, 17]);
    sum = ones_complement(sum, &udp);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let checksum = !u16::try_from(sum).unwrap_or(0);
    udp[6..8].copy_from_slice(&checksum.to_be_bytes());
    let mut f = Vec::new();
    f.extend_from_slice(&GATEWAY_MAC);
    f.extend_from_slice(&eth_src);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[17, 64]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&udp);
    f
}

/// a1 forges m1's IPv6 source towards c1: nothing arrives, the port counts it.
fn forgeries_are_dropped_and_counted(a1: &Vm, c1: &Vm, host0: &netns_tests::Scd) -> Result<()> {
    const FORGED: u64 = 20;
    let c1_addr: Ipv6Addr = C1.parse()?;
    let rx = c1.ns.enter(move || UdpSocket::bind((c1_addr, 7000)))??;
    rx.set_read_timeout(Some(Duration::from_millis(200)))?;
    let own = |text: &'static str| -> Result<()> {
        a1.ns.enter(move || -> Result<()> {
            let tx = UdpSocket::bind((A1.parse::<Ipv6Addr>()?, 0))?;
            tx.send_to(text.as_bytes(), SocketAddr::new(c1_addr.into(), 7000))?;
            Ok(())
        })?
    };
    let mut seen = Vec::new();
    let wait_for = |marker: &str, seen: &mut Vec<String>| -> Result<()> {
        let mut buf = [0u8; 256];
        wait_until(Duration::from_secs(10), marker, || {
            if marker == "first" {
                own("first")?;
            }
            while let Ok(n) = rx.recv(&mut buf) {
                seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            Ok(seen.iter().any(|s| s == marker))
        })
        .map(|_| ())
    };
    wait_for("first", &mut seen)?;
    let spoofed = || host0.metric("scd_port_spoofed_total", &["port=\"1\"", "reason=\"ipv6\""]);
    let before = spoofed()?;
    let mac = [0x02, 0, 0, 0, 0x01, 0x01];
    let forged = udp6_frame(mac, M1.parse()?, c1_addr, b"forged");
    send_from(a1, vec![forged; usize::try_from(FORGED)?])?;
    own("last")?;
    wait_for("last", &mut seen)?;
    assert!(
        !seen.iter().any(|s| s == "forged"),
        "a forged IPv6 source got through: {seen:?}"
    );
    wait_until(Duration::from_secs(10), "the forgeries counted", || {
        Ok(spoofed()? >= before + FORGED)
    })?;
    eprintln!(
        "forged IPv6 sources: {} counted on a1's port",
        spoofed()? - before
    );
    Ok(())
}

#[test]
fn dual_stack_vms_reach_each_other_over_ipv6_across_clouds_and_a_migration() -> Result<()> {
    if !require_root("dual_stack_vms_reach_each_other_over_ipv6_across_clouds_and_a_migration") {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let net = Internet::with_hosts("ip6", &[None, None, None])?;
    let keys = common::key_pairs(3)?;
    let vms = common::create_vms("ip6", &VMS)?;
    let (a1, m1, c1) = (&vms[0], &vms[1], &vms[2]);
    let landing = common::second_tap(m1, common::VM_MTU)?;
    let inventory = common::write_inventory(
        dir.path(),
        &format!(
            "overlay_ipv6_prefix = \"{PREFIX}\"\n{}",
            common::inventory_with(
                &keys,
                &common::entries(&VMS, &vms),
                "",
                &[],
                &[("c1", &format!("ipv6 = \"{C1}\""))]
            )
        ),
    )?;
    let scc = common::start_scc(&net, dir.path(), true)?;
    let scds = common::start_switches(
        &net,
        &inventory,
        &keys,
        common::landing_port(2, 2, m1, &landing),
    )?;
    scc.wait_synced(&net)?;

    // SLAAC from the router advertisements, the gateway found by neighbour
    // discovery answered on each VM's own host.
    for (vm, addr) in [(a1, A1), (m1, M1), (c1, C1_SLAAC)] {
        common::wait_ipv6_address(vm, &vm.ifname, addr)?;
        let routes = vm.ns.ip(&["-6", "route", "show", "default"])?;
        assert!(routes.contains(GATEWAY_LL), "{routes}");
    }
    // m1's landing TAP is up in its namespace already (host2 opened it) and
    // must have taken no advertisement: m1 answers by its own TAP only. First
    // proof that host2 advertised on it (nothing else leaves that port before
    // the move), or the checks below would hold for want of an advertisement.
    let landing_tx = || scds[2].metric("scd_port_packets_total", &["port=\"2\"", "dir=\"tx\""]);
    wait_until(
        Duration::from_secs(30),
        "host2 advertising on m1's landing TAP",
        || Ok(landing_tx()? > 0),
    )?;
    let accept_ra = m1
        .ns
        .command("sysctl")
        .args(["-n", &format!("net.ipv6.conf.{landing}.accept_ra")])
        .output()?;
    assert_eq!(
        String::from_utf8_lossy(&accept_ra.stdout).trim(),
        "0",
        "the landing TAP takes no router advertisements"
    );
    let landing_global = m1
        .ns
        .ip(&["-6", "addr", "show", "dev", &landing, "scope", "global"])?;
    assert!(
        landing_global.trim().is_empty(),
        "the landing TAP autoconfigured nothing: {landing_global}"
    );
    let routes = m1.ns.ip(&["-6", "route", "show", "default"])?;
    assert!(
        routes.lines().count() == 1 && routes.contains(&m1.ifname),
        "m1 has one default route, by {}: {routes}",
        m1.ifname
    );
    let own = format!("{C1}/64");
    c1.ns
        .ip(&["-6", "addr", "add", &own, "dev", &c1.ifname, "nodad"])?;
    assert!(reaches(a1, M1, 10)?, "a1 -> m1 over IPv6");
    assert!(reaches(c1, A1, 10)?, "c1 -> a1 over IPv6");
    // c1 answers from its own address: its switch's port security has it.
    assert!(reaches(a1, C1, 10)?, "a1 -> c1's own address");
    assert!(reaches(a1, "100.64.3.1", 10)?, "IPv4 still works");
    let neighbours = a1.ns.ip(&["-6", "neigh", "show", "dev", &a1.ifname])?;
    assert!(
        neighbours.contains(&format!("{GATEWAY_LL} lladdr 02:5c:00:00:00:01 router")),
        "{neighbours}"
    );
    for (i, scd) in scds.iter().enumerate() {
        let answered = scd.metric("scd_nd_replies_total", &[])?;
        assert!(answered > 0, "host{i} answered no neighbour discovery");
    }

    forgeries_are_dropped_and_counted(a1, c1, &scds[0])?;

    // A TCP stream over IPv6, a1 -> m1, across m1's migration to cloud C.
    let stream = common::paced_stream_at(m1, M1, a1, M1, 9100)?;
    stream.wait_flowing(64 * 1024, Duration::from_secs(60))?;
    common::start_migration(&net, "m1", "host2", 2)?;
    let with_prefix = format!("{M1}/64");
    common::move_vm(m1, &m1.ifname, &landing, &[], || {
        // The guest keeps its address on its (new) interface, as a migrated
        // guest does (the landing TAP takes no advertisements, so nothing
        // autoconfigured it; `replace` keeps the step idempotent).
        m1.ns
            .ip(&[
                "-6",
                "addr",
                "replace",
                &with_prefix,
                "dev",
                &landing,
                "nodad",
            ])
            .map(|_| ())
    })?;
    m1.ns.ip(&[
        "-6", "route", "replace", "default", "via", GATEWAY_LL, "dev", &landing,
    ])?;
    common::wait_timeline(&net, "rerouted")?;
    stream
        .wait_flowing(stream.received() + 64 * 1024, Duration::from_secs(30))
        .context("the IPv6 stream after the migration")?;
    assert!(
        reaches(c1, M1, 10)?,
        "c1 -> m1 on its new host (its own cloud)"
    );
    assert!(reaches(a1, M1, 10)?, "a1 -> m1 on its new host");
    common::wait_timeline(&net, "old host drained")?;
    let report = stream.finish()?;
    eprintln!("IPv6 stream across the migration: {report}");
    assert!(
        report.intact,
        "the IPv6 TCP stream survives the migration: {report:?}"
    );
    drop(scds);
    Ok(())
}
