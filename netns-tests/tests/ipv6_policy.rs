//! The policy governs IPv6 as it governs IPv4, end to end: dual-stack
//! namespace VMs in two clouds, a1 (cloud A) and b1, c1 (cloud B), talk TCP over
//! both families; a policy applied with `scc apply` that drops IPv6 from a1
//! to b1 (`ethType = 0x86dd and ip6Src = vm:a1 and ip6Dst = vm:b1`, the names
//! resolved to the VMs' IPv6 addresses) stops a1's IPv6 TCP to b1 while its
//! IPv4 TCP to b1 and its IPv6 TCP to c1 still connect. A policy naming the
//! VMs in IPv4 fields (`ip4Src = vm:a1 and ip4Dst = vm:b1`) then stops both
//! families, as a VM name stands for the VM's addresses in both.

mod common;

use anyhow::{Context, Result};
use common::VmSpec;
use netns_tests::{require_root, wait_until, Internet, Netns, Vm};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

const VMS: [VmSpec; 3] = [
    VmSpec::new("a1", 0, 1, "100.64.1.1", "02:00:00:00:01:01"),
    VmSpec::new("b1", 1, 1, "100.64.2.1", "02:00:00:00:02:01"),
    VmSpec::new("c1", 1, 2, "100.64.2.2", "02:00:00:00:02:02"),
];

/// The addresses SLAAC gives the VMs' MACs in `fd00:5c::/48`'s first /64.
const A1: &str = "fd00:5c::ff:fe00:101";
const B1: &str = "fd00:5c::ff:fe00:201";
const C1: &str = "fd00:5c::ff:fe00:202";

/// True when a TCP connection from `from` to `dst:port`, where `to` listens,
/// is established within a few seconds (the handshake crossed the overlay
/// both ways).
fn tcp_connects(from: &Netns, to: &Netns, dst: &str, port: u16) -> Result<bool> {
    let dst: IpAddr = dst.parse()?;
    let listener = to.enter(move || TcpListener::bind((dst, port)))??;
    let at = SocketAddr::new(dst, port);
    let connected =
        from.enter(move || TcpStream::connect_timeout(&at, Duration::from_secs(3)).is_ok())?;
    drop(listener);
    Ok(connected)
}

/// Waits until `vm` holds `addr`/64 past duplicate address detection.
fn autoconfigured(vm: &Vm, addr: &str) -> Result<()> {
    let wanted = format!("inet6 {addr}/64 scope global");
    wait_until(
        Duration::from_secs(30),
        &format!("{addr} on {}", vm.ifname),
        || {
            let shown = vm.ns.ip(&["-6", "addr", "show", "dev", &vm.ifname])?;
            Ok(shown
                .lines()
                .any(|l| l.contains(&wanted) && !l.contains("tentative")))
        },
    )?;
    Ok(())
}

/// Applies the policy `text` through the API and waits for every switch.
fn apply(net: &Internet, dir: &std::path::Path, text: &str) -> Result<()> {
    let file = dir.join("policy.kat");
    std::fs::write(&file, text)?;
    let (ok, out) = common::scc(net, &["apply", file.to_str().context("path")?])?;
    anyhow::ensure!(ok, "scc apply: {out}");
    common::wait_synced(net)?;
    Ok(())
}

#[test]
fn a_policy_drops_one_vms_ipv6_to_another_and_keeps_its_ipv4() -> Result<()> {
    if !require_root("a_policy_drops_one_vms_ipv6_to_another_and_keeps_its_ipv4") {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let net = Internet::with_hosts("i6p", &[None, None])?;
    let keys = common::key_pairs(2)?;
    let vms = common::create_vms("i6p", &VMS)?;
    let (a1, b1, c1) = (&vms[0], &vms[1], &vms[2]);
    let inventory = common::write_inventory(
        dir.path(),
        &format!(
            "overlay_ipv6_prefix = \"fd00:5c::/48\"\n{}",
            common::inventory(&keys, &common::entries(&VMS, &vms))
        ),
    )?;
    let _scc = common::start_scc(&net, dir.path(), true)?;
    let _scds = common::start_switches(&net, &inventory, &keys, |_| String::new())?;
    common::wait_synced(&net)?;
    autoconfigured(a1, A1)?;
    autoconfigured(b1, B1)?;
    autoconfigured(c1, C1)?;
    // The observer works: without a policy both families connect (the first
    // attempts may wait for the tunnel's handshake).
    for (dst, port) in [(B1, 7001), ("100.64.2.1", 7002)] {
        wait_until(Duration::from_secs(30), &format!("a1 -> {dst}"), || {
            tcp_connects(&a1.ns, &b1.ns, dst, port)
        })?;
    }

    apply(
        &net,
        dir.path(),
        "filter not (ethType = 0x86dd and ip6Src = vm:a1 and ip6Dst = vm:b1)\n",
    )?;
    assert!(
        !tcp_connects(&a1.ns, &b1.ns, B1, 7003)?,
        "a1 -> b1 over IPv6 is dropped by the policy"
    );
    assert!(
        tcp_connects(&a1.ns, &b1.ns, "100.64.2.1", 7004)?,
        "a1 -> b1 over IPv4 still connects"
    );
    assert!(
        tcp_connects(&a1.ns, &c1.ns, C1, 7005)?,
        "a1 -> c1 over IPv6 still connects"
    );

    // A VM name in an IPv4 field stands for the VM in both families.
    apply(
        &net,
        dir.path(),
        "filter not (ip4Src = vm:a1 and ip4Dst = vm:b1)\n",
    )?;
    assert!(
        !tcp_connects(&a1.ns, &b1.ns, B1, 7006)?,
        "a1 -> b1 over IPv6"
    );
    assert!(
        !tcp_connects(&a1.ns, &b1.ns, "100.64.2.1", 7007)?,
        "a1 -> b1 over IPv4"
    );
    assert!(
        tcp_connects(&a1.ns, &c1.ns, C1, 7008)?,
        "a1 -> c1 over IPv6"
    );

    // Lifted: a1 reaches b1 over IPv6 again.
    apply(&net, dir.path(), "id\n")?;
    assert!(
        tcp_connects(&a1.ns, &b1.ns, B1, 7009)?,
        "a1 -> b1 over IPv6, policy lifted"
    );
    Ok(())
}
