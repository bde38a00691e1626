//! A stock DHCP client (busybox `udhcpc`, and ISC `dhclient`) in a namespace VM with no address gets
//! everything from its host's `scd`: the address its inventory entry gives, the
//! overlay prefix, the anycast gateway as router, the tunnels' MTU and the
//! inventory's DNS servers; with that configuration it reaches a VM on another
//! host. Its DHCP requests never leave its host: a packet socket on the other
//! VM, which sees the client's pings, sees none of them.
//!
//! Two hosts behind an emulated internet, `scd` on each programmed by `scc`.
//! Owns its namespaces (prefixed with the test name, removed on drop, also on
//! panic), the processes it starts and a temp dir. Needs root, `busybox` and
//! `dhclient` (isc-dhcp-client); without them it says so loudly and fails under
//! CI=true.

mod common;

use anyhow::{Context, Result};
use common::{reaches, start_scc, VmSpec};
use netns_tests::packet::{packet_socket, recv_frame};
use netns_tests::{require_program, require_root, run, Internet};
use std::path::{Path, PathBuf};
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

/// A cloud of two hosts for the test `name`: the client VM (no address, the
/// TAP's default MTU) on host0 and its peer on host1, `scc` and the switches
/// running and synced, and the peer watched.
struct Cloud {
    _dir: tempfile::TempDir,
    // Dropped in this order: the watch and the switches before the namespaces.
    watch: Watch,
    scds: Vec<netns_tests::Scd>,
    _scc: common::Scc,
    vms: Vec<netns_tests::Vm>,
    _net: Internet,
}

impl Cloud {
    fn start(name: &str) -> Result<Cloud> {
        let dir = tempfile::tempdir()?;
        let net = Internet::with_hosts(name, &[None, None])?;
        let keys = common::key_pairs(2)?;
        let vms = common::create_vms(name, &VMS)?;
        let client = &vms[0];
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
        let watch = Watch::start(&vms[1], [100, 64, 1, 21])?;
        Ok(Cloud {
            _dir: dir,
            watch,
            scds,
            _scc: scc,
            vms,
            _net: net,
        })
    }

    /// Checks what the client was given (`lease`, as the scripts record it; the
    /// mask as the client spells it) and that it reaches the peer with it,
    /// while no DHCP request left its host.
    fn check(&self, client_name: &str, lease: &str, mask: &str) -> Result<()> {
        let (client, peer) = (&self.vms[0], &self.vms[1]);
        eprintln!("{TEST}: {client_name} was given: {}", lease.trim());
        assert_eq!(field(lease, "ip"), Some(VMS[0].ip), "{lease}");
        assert_eq!(field(lease, "mask"), Some(mask), "{lease}");
        assert_eq!(field(lease, "router"), Some("100.64.0.1"), "{lease}");
        assert_eq!(field(lease, "serverid"), Some("100.64.0.1"), "{lease}");
        assert_eq!(field(lease, "mtu"), Some("1420"), "{lease}");
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
            self.scds[0].metric("scd_dhcp_replies_total", &[])? >= 2,
            "offer and ack"
        );
        assert!(
            reaches(client, &peer.ip, 20)?,
            "the client reaches the VM on the other host with what DHCP gave it"
        );
        netns_tests::wait_until(Duration::from_secs(10), "the watch saw the pings", || {
            Ok(self.watch.pings.load(Ordering::Relaxed) > 0)
        })?;
        assert_eq!(
            self.watch.dhcp.load(Ordering::Relaxed),
            0,
            "a DHCP request left the client's host"
        );
        Ok(())
    }
}

/// Writes the executable client script `name` in `dir` from `text`.
fn script(dir: &Path, name: &str, text: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    Ok(path)
}

#[test]
fn a_stock_dhcp_client_gets_its_inventory_address_and_reaches_another_host() -> Result<()> {
    if !require_root(TEST) || !require_program(TEST, "busybox") {
        return Ok(());
    }
    let cloud = Cloud::start(TEST)?;
    let client = &cloud.vms[0];
    let dir = tempfile::tempdir()?;
    let script = script(dir.path(), "udhcpc.script", SCRIPT)?;
    let lease_file = dir.path().join("lease");
    let out = run(client
        .ns
        .command("busybox")
        .env("LEASE_FILE", &lease_file)
        .args(["udhcpc", "-f", "-q", "-n", "-t", "10", "-T", "1", "-i"])
        .arg(&client.ifname)
        .arg("-s")
        .arg(&script))
    .with_context(|| format!("udhcpc; scd log:\n{}", cloud.scds[0].log()))?;
    let lease = std::fs::read_to_string(&lease_file)
        .with_context(|| format!("udhcpc bound nothing: {out}"))?;
    cloud.check("udhcpc", &lease, "10")
}

/// ISC dhclient's script: records what the client was given in the lease file
/// (its path replaces `LEASE_FILE`: dhclient gives its script no environment of
/// ours), then configures the interface with it.
const DHCLIENT_SCRIPT: &str = r#"#!/bin/sh
case "$reason" in
BOUND|RENEW|REBOOT)
    ip addr flush dev "$interface"
    ip link set "$interface" mtu "$new_interface_mtu"
    ip addr add "$new_ip_address/$new_subnet_mask" dev "$interface"
    ip route add default via "$new_routers" dev "$interface"
    echo "ip=$new_ip_address mask=$new_subnet_mask router=$new_routers dns=$new_domain_name_servers mtu=$new_interface_mtu serverid=$new_dhcp_server_identifier lease=$new_dhcp_lease_time" >"LEASE_FILE.tmp"
    mv "LEASE_FILE.tmp" "LEASE_FILE"
    ;;
esac
exit 0
"#;

/// What dhclient asks for: what a cloud image's client asks for, MTU included.
const DHCLIENT_CONF: &str =
    "request subnet-mask, broadcast-address, routers, domain-name-servers, interface-mtu;\n";

/// A process we started, killed by its PID (and reaped) when dropped.
struct Started(std::process::Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn isc_dhclient_gets_its_inventory_address_and_reaches_another_host() -> Result<()> {
    const NAME: &str = "dhcpisc";
    if !require_root(NAME) || !require_program(NAME, "dhclient") {
        return Ok(());
    }
    let cloud = Cloud::start(NAME)?;
    let client = &cloud.vms[0];
    let dir = tempfile::tempdir()?;
    let lease_file = dir.path().join("lease");
    let text = DHCLIENT_SCRIPT.replace("LEASE_FILE", &lease_file.display().to_string());
    let script = script(dir.path(), "dhclient.script", &text)?;
    let conf = dir.path().join("dhclient.conf");
    std::fs::write(&conf, DHCLIENT_CONF)?;
    // In the foreground, so that the process is ours to end.
    let dhclient = Started(
        client
            .ns
            .command("dhclient")
            .args(["-d", "-1", "-v", "-cf"])
            .arg(&conf)
            .arg("-sf")
            .arg(&script)
            .arg("-lf")
            .arg(dir.path().join("dhclient.leases"))
            .arg("-pf")
            .arg(dir.path().join("dhclient.pid"))
            .arg(&client.ifname)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("dhclient.log"))?)
            .spawn()
            .context("dhclient")?,
    );
    let bound = netns_tests::wait_until(Duration::from_secs(60), "dhclient bound", || {
        Ok(lease_file.exists())
    });
    let log = std::fs::read_to_string(dir.path().join("dhclient.log")).unwrap_or_default();
    bound.with_context(|| format!("dhclient log:\n{log}\nscd log:\n{}", cloud.scds[0].log()))?;
    let lease = std::fs::read_to_string(&lease_file)?;
    let checked = cloud.check("dhclient", &lease, "255.192.0.0");
    drop(dhclient);
    checked
}
