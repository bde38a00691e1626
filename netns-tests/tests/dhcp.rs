//! A stock DHCP client (busybox `udhcpc`) in a namespace VM with no address gets
//! everything from its host's `scd`: the address its inventory entry gives, the
//! overlay prefix, the anycast gateway as router, the tunnels' MTU and the
//! inventory's DNS servers; with that configuration it reaches a VM on another
//! host. Its DHCP requests never leave its host: a packet socket on the other
//! VM, which sees the client's pings, sees none of them.
//!
//! Two hosts behind an emulated internet, `scd` on each programmed by `scc`.
//! Owns its namespaces (prefixed with the test name, removed on drop, also on
//! panic), the processes it starts and a temp dir. Needs root and `busybox`;
//! without them it says so loudly and fails under CI=true.

mod common;

use anyhow::{Context, Result};
use common::{reaches, start_scc, VmSpec};
use netns_tests::packet::{packet_socket, recv_frame};
use netns_tests::{require_program, require_root, run, Internet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const TEST: &str = "dhcp";
const VMS: [VmSpec; 2] = [
    VmSpec::new("c1", 0, 1, "100.64.1.21", "02:00:00:00:01:21"),
    VmSpec::new("p2", 1, 1, "100.64.2.22", "02:00:00:00:02:22"),
];
const DNS: [&str; 2] = ["192.0.2.53", "198.51.100.53"];

/// The udhcpc script: records what the client was given, then configures the
/// interface with it (address and prefix, MTU, default route).
const SCRIPT: &str = r#"#!/bin/sh
case "$1" in
bound|renew)
    echo "ip=$ip mask=$mask router=$router dns=$dns mtu=$mtu serverid=$serverid lease=$lease" >"$LEASE_FILE"
    ip addr flush dev "$interface"
    ip link set "$interface" mtu "$mtu"
    ip addr add "$ip/$mask" dev "$interface"
    ip route add default via "$router" dev "$interface"
    ;;
esac
exit 0
"#;

/// Counts, on a VM's interface, DHCP requests (UDP to port 67) and ICMP echo
/// requests from `pinger`, until dropped.
struct Watch {
    dhcp: Arc<AtomicU64>,
    pings: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<Result<()>>>>,
}

impl Watch {
    fn start(vm: &netns_tests::Vm, pinger: [u8; 4]) -> Result<Watch> {
        let (dhcp, pings, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (d, p, s) = (dhcp.clone(), pings.clone(), stop.clone());
        let ifname = vm.ifname.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = vm.ns.spawn(move || -> Result<()> {
            let fd = packet_socket(&ifname, libc::SOCK_RAW, 0x0003)?;
            let _ = ready_tx.send(());
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                let Some((n, _)) = recv_frame(&fd, &mut buf) else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let f = &buf[..n];
                if n < 42 || f[12..14] != [0x08, 0x00] {
                    continue;
                }
                let ihl = usize::from(f[14] & 0x0f) * 4;
                let l4 = 14 + ihl;
                match f[23] {
                    17 if f.get(l4 + 2..l4 + 4) == Some(&[0, 67]) => {
                        d.fetch_add(1, Ordering::Relaxed);
                    }
                    1 if f[26..30] == pinger && f.get(l4) == Some(&8) => {
                        p.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
            Ok(())
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .context("the watch did not start")?;
        Ok(Watch {
            dhcp,
            pings,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn field<'a>(lease: &'a str, name: &str) -> Option<&'a str> {
    lease
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

#[test]
fn a_stock_dhcp_client_gets_its_inventory_address_and_reaches_another_host() -> Result<()> {
    if !require_root(TEST) || !require_program(TEST, "busybox") {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let net = Internet::with_hosts(TEST, &[None, None])?;
    let keys = common::key_pairs(2)?;
    let vms = common::create_vms(TEST, &VMS)?;
    let (client, peer) = (&vms[0], &vms[1]);
    // The client starts with nothing: no address, the TAP's default MTU.
    client.ns.ip(&["addr", "flush", "dev", &client.ifname])?;
    client
        .ns
        .ip(&["link", "set", &client.ifname, "mtu", "1500"])?;
    let dns = format!("dns = [\"{}\", \"{}\"]\n", DNS[0], DNS[1]);
    let inventory = dir.path().join("inventory.toml");
    std::fs::write(
        &inventory,
        dns + &common::inventory(&keys, &common::entries(&VMS, &vms)),
    )?;
    let scc = start_scc(&net, dir.path(), true)?;
    let scds = common::start_switches(&net, &inventory, &keys, |_| String::new())?;
    scc.wait_synced(&net)?;
    let watch = Watch::start(peer, [100, 64, 1, 21])?;

    let script = dir.path().join("udhcpc.script");
    std::fs::write(&script, SCRIPT)?;
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let lease_file = dir.path().join("lease");
    let out = run(client
        .ns
        .command("busybox")
        .env("LEASE_FILE", &lease_file)
        .args(["udhcpc", "-f", "-q", "-n", "-t", "10", "-T", "1", "-i"])
        .arg(&client.ifname)
        .arg("-s")
        .arg(&script))
    .with_context(|| format!("udhcpc; scd log:\n{}", scds[0].log()))?;
    let lease = std::fs::read_to_string(&lease_file)
        .with_context(|| format!("udhcpc bound nothing: {out}"))?;
    eprintln!("{TEST}: udhcpc was given: {}", lease.trim());
    assert_eq!(field(&lease, "ip"), Some(VMS[0].ip), "{lease}");
    assert_eq!(field(&lease, "mask"), Some("10"), "{lease}");
    assert_eq!(field(&lease, "router"), Some("100.64.0.1"), "{lease}");
    assert_eq!(field(&lease, "serverid"), Some("100.64.0.1"), "{lease}");
    assert_eq!(field(&lease, "mtu"), Some("1420"), "{lease}");
    assert!(
        lease.contains(&format!("dns={} {}", DNS[0], DNS[1])),
        "{lease}"
    );
    let link = client
        .ns
        .ip(&["-o", "addr", "show", "dev", &client.ifname])?;
    assert!(link.contains(&format!("{}/10", VMS[0].ip)), "{link}");
    assert!(
        client
            .ns
            .ip(&["link", "show", &client.ifname])?
            .contains("mtu 1420"),
        "the MTU from DHCP is set"
    );
    assert!(
        scds[0].metric("scd_dhcp_replies_total", &[])? >= 2,
        "offer and ack"
    );

    assert!(
        reaches(client, &peer.ip, 20)?,
        "the client reaches the VM on the other host with what DHCP gave it"
    );
    netns_tests::wait_until(Duration::from_secs(10), "the watch saw the pings", || {
        Ok(watch.pings.load(Ordering::Relaxed) > 0)
    })?;
    assert_eq!(
        watch.dhcp.load(Ordering::Relaxed),
        0,
        "a DHCP request left the client's host"
    );
    Ok(())
}
