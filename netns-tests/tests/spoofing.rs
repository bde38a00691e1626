//! Port security, as an attacker inside a VM tries it: a green VM forges the IP,
//! or the MAC and IP, of a blue VM on its own host and of one across the
//! overlay, and sends to the other blue VM. Every forgery reaches nobody and is
//! counted on the attacker's port (`scd_port_spoofed_total`) by reason; the same
//! frame with the attacker's own addresses, sent just before through the same
//! socket, arrives, so the observers would have seen a forgery that got through.
//! ARP claiming a blue VM's address is dropped and counted too. The blue VMs'
//! traffic is unaffected and their ports count nothing.
//!
//! Host 0's VM ports are bound by the controller only (their `vm_mac`/`vm_ips`
//! lines are taken out of the generated configuration), host 1's by its file:
//! both ways of binding are exercised.

mod common;

use anyhow::{Context, Result};
use common::{reaches, start_scc, VmSpec};
use netns_tests::packet::send_from;
use netns_tests::{require_root, wait_until, Internet, Scd, Vm};
use std::net::{Ipv4Addr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The attacker (green) and its neighbour (blue) on host 0, a blue VM on host 1.
const VMS: [VmSpec; 3] = [
    VmSpec::new("g1", 0, 1, "100.64.1.1", "02:00:00:00:01:01").in_tenant("green"),
    VmSpec::new("b1", 0, 2, "100.64.1.2", "02:00:00:00:01:02").in_tenant("blue"),
    VmSpec::new("b2", 1, 1, "100.64.2.1", "02:00:00:00:02:01").in_tenant("blue"),
];

/// The observers' UDP port.
const PORT: u16 = 7000;
/// Forged frames per attempt.
const FORGED: u64 = 20;

fn mac(text: &str) -> Result<[u8; 6]> {
    let mut out = [0u8; 6];
    let octets: Vec<&str> = text.split(':').collect();
    anyhow::ensure!(octets.len() == 6, "`{text}` is not a MAC");
    for (byte, octet) in out.iter_mut().zip(octets) {
        *byte = u8::from_str_radix(octet, 16)?;
    }
    Ok(out)
}

fn ip(text: &str) -> Result<Ipv4Addr> {
    text.parse().with_context(|| format!("`{text}`"))
}

/// An Ethernet frame holding a UDP datagram from `src` to `dst`:[`PORT`].
fn udp_frame(
    eth_dst: [u8; 6],
    eth_src: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    payload: &[u8],
) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut f = Vec::with_capacity(14 + total);
    f.extend_from_slice(&eth_dst);
    f.extend_from_slice(&eth_src);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&u16::try_from(total).unwrap_or(0).to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let mut sum: u32 = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let checksum = !u16::try_from(sum).unwrap_or(0);
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&PORT.to_be_bytes());
    f.extend_from_slice(&u16::try_from(udp_len).unwrap_or(0).to_be_bytes());
    f.extend_from_slice(&[0, 0]); // no UDP checksum
    f.extend_from_slice(payload);
    f
}

/// A gratuitous ARP request from `sha` claiming `spa`.
fn arp_frame(sha: [u8; 6], spa: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0xffu8; 6];
    f.extend_from_slice(&sha);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&spa.octets());
    f.resize(60, 0);
    f
}

/// What a VM's UDP socket on [`PORT`] received: (source, payload) in order.
struct Observer {
    seen: Arc<Mutex<Vec<(Ipv4Addr, String)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<Result<()>>>>,
}

impl Observer {
    fn start(vm: &Vm) -> Result<Observer> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let addr = ip(&vm.ip)?;
        let thread = vm.ns.spawn(move || -> Result<()> {
            let socket = UdpSocket::bind((addr, PORT))?;
            socket.set_read_timeout(Some(Duration::from_millis(50)))?;
            let _ = tx.send(());
            let mut buf = [0u8; 2048];
            while !stop2.load(Ordering::Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    let std::net::SocketAddr::V4(from) = from else {
                        continue;
                    };
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    seen2
                        .lock()
                        .map_err(|_| anyhow::anyhow!("poisoned"))?
                        .push((*from.ip(), text));
                }
            }
            Ok(())
        });
        rx.recv_timeout(Duration::from_secs(10))
            .context("observer did not start")?;
        Ok(Observer {
            seen,
            stop,
            thread: Some(thread),
        })
    }

    fn seen(&self) -> Vec<(Ipv4Addr, String)> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn wait_for(&self, payload: &str) -> Result<()> {
        wait_until(Duration::from_secs(10), payload, || {
            Ok(self.seen().iter().any(|(_, p)| p == payload))
        })
        .map(|_| ())
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn spoofed(scd: &Scd, port: u32, reason: &str) -> Result<u64> {
    scd.metric(
        "scd_port_spoofed_total",
        &[&format!("port=\"{port}\""), &format!("reason=\"{reason}\"")],
    )
}

#[test]
fn a_vm_forging_another_vms_ip_or_mac_reaches_nobody_and_is_counted() -> Result<()> {
    if !require_root("a_vm_forging_another_vms_ip_or_mac_reaches_nobody_and_is_counted") {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let net = Internet::with_hosts("spoof", &[None, None])?;
    let keys = common::key_pairs(2)?;
    let vms = common::create_vms("spoof", &VMS)?;
    let (g1, b1, b2) = (&vms[0], &vms[1], &vms[2]);
    let inventory = dir.path().join("inventory.toml");
    std::fs::write(
        &inventory,
        common::inventory(&keys, &common::entries(&VMS, &vms)),
    )?;
    let scc = start_scc(&net, dir.path(), true)?;
    let scds = common::start_switches_edited(&net, &inventory, &keys, |i, config| {
        anyhow::ensure!(config.contains("vm_mac = "), "host-config binds: {config}");
        Ok(if i == 0 {
            // Host 0 learns its bindings from the controller only.
            config
                .lines()
                .filter(|l| !l.starts_with("vm_mac = ") && !l.starts_with("vm_ips = "))
                .map(|l| format!("{l}\n"))
                .collect()
        } else {
            config
        })
    })?;
    scc.wait_synced(&net)?;
    assert!(reaches(g1, &b2.ip, 10)?, "g1 -> b2 across hosts");
    assert!(reaches(g1, &b1.ip, 10)?, "g1 -> b1 on its host");
    assert!(reaches(b1, &b2.ip, 10)?, "b1 -> b2");
    assert!(
        scds[0].log().contains("port binding set by the controller"),
        "the controller bound host 0's ports:\n{}",
        scds[0].log()
    );

    // The gateway MAC g1's kernel resolved: where a forged frame goes.
    let neigh = g1.ns.ip(&["neigh", "show", &b2.ip])?;
    let gateway = neigh
        .split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)
        .with_context(|| format!("no neighbour entry: {neigh}"))?;
    let gateway = mac(gateway)?;

    let observers = [Observer::start(b1)?, Observer::start(b2)?];
    let (g1_mac, g1_ip) = (mac(&g1.mac)?, ip(&g1.ip)?);
    // (what, target observer, forged source MAC and address, counted reason)
    let attempts = [
        ("ip-across-hosts", 1, g1_mac, ip(&b1.ip)?, "ip"),
        ("ip-same-host", 0, g1_mac, ip(&b2.ip)?, "ip"),
        ("mac-across-hosts", 1, mac(&b1.mac)?, ip(&b1.ip)?, "mac"),
        ("mac-same-host", 0, mac(&b2.mac)?, ip(&b2.ip)?, "mac"),
    ];
    let targets = [ip(&b1.ip)?, ip(&b2.ip)?];
    for (what, target, forged_mac, forged_ip, _) in attempts {
        // The same frame with g1's own addresses arrives: the path is open.
        let legit = format!("legit-{what}");
        let frame = udp_frame(gateway, g1_mac, g1_ip, targets[target], legit.as_bytes());
        send_from(g1, vec![frame])?;
        observers[target].wait_for(&legit)?;
        let forged = format!("forged-{what}");
        let frames = (0..FORGED)
            .map(|_| {
                udp_frame(
                    gateway,
                    forged_mac,
                    forged_ip,
                    targets[target],
                    forged.as_bytes(),
                )
            })
            .collect();
        send_from(g1, frames)?;
    }
    // A last legitimate datagram to each observer, sent after every forgery on
    // the same path, has arrived: a forgery that got through would be in by now.
    for (target, observer) in observers.iter().enumerate() {
        let last = format!("legit-last-{target}");
        let frame = udp_frame(gateway, g1_mac, g1_ip, targets[target], last.as_bytes());
        send_from(g1, vec![frame])?;
        observer.wait_for(&last)?;
    }
    for observer in &observers {
        let seen = observer.seen();
        let forged: Vec<_> = seen
            .iter()
            .filter(|(_, p)| p.starts_with("forged"))
            .collect();
        assert!(forged.is_empty(), "forgeries got through: {forged:?}");
        assert!(seen.iter().all(|(from, _)| *from == g1_ip), "{seen:?}");
    }
    for reason in ["ip", "mac"] {
        let expected = FORGED * attempts.iter().filter(|a| a.4 == reason).count() as u64;
        wait_until(Duration::from_secs(10), reason, || {
            Ok(spoofed(&scds[0], 1, reason)? >= expected)
        })?;
        assert_eq!(spoofed(&scds[0], 1, reason)?, expected, "{reason}");
    }

    // ARP claiming b1's address, from g1's MAC: dropped before the responder.
    let arp: Vec<_> = (0..FORGED).map(|_| arp_frame(g1_mac, targets[0])).collect();
    send_from(g1, arp)?;
    wait_until(Duration::from_secs(10), "arp counted", || {
        Ok(spoofed(&scds[0], 1, "arp")? >= FORGED)
    })?;
    assert_eq!(spoofed(&scds[0], 1, "arp")?, FORGED);

    // Legitimate traffic is unaffected, and the blue VMs' ports counted nothing
    // while they sent (their receive counters moved).
    assert!(reaches(g1, &b2.ip, 10)?, "g1 -> b2 after its forgeries");
    assert!(reaches(b1, &b2.ip, 10)?, "b1 -> b2");
    assert!(reaches(b2, &b1.ip, 10)?, "b2 -> b1");
    for (scd, port) in [(&scds[0], 2), (&scds[1], 1)] {
        let received = scd.metric(
            "scd_port_packets_total",
            &[&format!("port=\"{port}\""), "dir=\"rx\""],
        )?;
        assert!(received > 0, "the port received");
        for reason in ["ip", "mac", "arp"] {
            assert_eq!(spoofed(scd, port, reason)?, 0, "port {port} {reason}");
        }
    }
    Ok(())
}
