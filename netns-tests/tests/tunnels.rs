//! Three clouds joined by an emulated internet, one `scd` per host, a full mesh of
//! WireGuard tunnels: every VM reaches every other over the direct tunnel; a crashed
//! switch heals; garbage, replayed and spoofed packets are dropped and counted; a
//! too-big packet gets ICMP "fragmentation needed".

use anyhow::{Context, Result};
use netns_tests::cloud::{create_vms, key_pairs, VmSpec, VM_MTU as MTU};
use netns_tests::{fill_pseudo_random, require_root, wait_until, Internet, KeyPair, Scd, Vm};
use netns_tests::{scd_config_head, GATEWAY_MAC};
use std::net::{IpAddr, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

const GW_MAC: &str = GATEWAY_MAC;
const WG_PORT: u16 = 51820;

const VMS: [VmSpec; 4] = [
    VmSpec::new("a1", 0, 1, "100.64.1.1", "02:00:00:00:01:01"),
    VmSpec::new("a2", 0, 2, "100.64.1.2", "02:00:00:00:01:02"),
    VmSpec::new("b1", 1, 1, "100.64.2.1", "02:00:00:00:02:01"),
    VmSpec::new("c1", 2, 1, "100.64.3.1", "02:00:00:00:03:01"),
];

fn tunnel_port(host: usize) -> u32 {
    100 + u32::try_from(host).unwrap_or(0)
}

/// What each host's controller would install: local VMs delivered with MACs
/// rewritten, remote VMs sent to the tunnel of their host.
fn flows_for(host: usize) -> String {
    VMS.iter()
        .map(|v| {
            if v.host == host {
                format!("priority=100,ip,nw_dst={},actions=set_field:{GW_MAC}->eth_src,set_field:{}->eth_dst,output:{}\n", v.ip, v.mac, v.port)
            } else {
                format!("priority=100,ip,nw_dst={},actions=output:{}\n", v.ip, tunnel_port(v.host))
            }
        })
        .collect()
}

fn config_for(host: usize, vms: &[Vm], keys: &[KeyPair]) -> String {
    let mut c = format!(
        "{}[tunnel]\nprivate_key_file = \"key\"\nlisten = \"0.0.0.0:{WG_PORT}\"\nmtu = {MTU}\n\
         latency_probe_s = 1\n",
        scd_config_head(&(host + 1).to_string(), &format!("host{host}"), true)
    );
    for (spec, vm) in VMS.iter().zip(vms) {
        if spec.host == host {
            c += &vm.port_section(spec.port);
        }
    }
    c += &Internet::peer_sections(keys, host, tunnel_port, WG_PORT);
    c
}

struct Clouds {
    // Drop order: switches first, then VMs, then the internet.
    scds: Vec<Scd>,
    vms: Vec<Vm>,
    net: Internet,
}

fn setup(test: &str) -> Result<Clouds> {
    // Cloud 3 is far away: 20 ms each way.
    let net = Internet::with_hosts(test, &[None, None, Some(20)])?;
    let keys = key_pairs(3)?;
    let vms = create_vms(test, &VMS)?;
    let scds = (0..3)
        .map(|h| {
            Scd::start_with_key(
                &net.hosts[h],
                &config_for(h, &vms, &keys),
                Some(&flows_for(h)),
                &keys[h].private,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Clouds { scds, vms, net })
}

fn ip_of(v: &Vm) -> IpAddr {
    v.ip.parse().expect("overlay address")
}

/// Streams `bytes` pseudo-random bytes from `from` to `to`; returns the received
/// length after checking the hash.
fn tcp_stream(from: &Vm, to: &Vm, port: u16, bytes: u64) -> Result<u64> {
    let t = netns_tests::tcp_transfer(&from.ns, &to.ns, ip_of(to), port, bytes)?;
    anyhow::ensure!(
        t.sent_hash == t.received_hash,
        "stream corrupted between {} and {}",
        from.ip,
        to.ip
    );
    Ok(t.received)
}

/// Sends `n` datagrams from `from` to `to`; returns how many distinct ones arrived.
fn udp_count(from: &Vm, to: &Vm, port: u16, n: u32) -> Result<u32> {
    // One datagram per millisecond: the far cloud's link is an emulated WAN (a
    // userspace delay line), not a place to test burst loss.
    let burst = netns_tests::Burst {
        count: n,
        size: 1000,
        every: 1,
        pause: Duration::from_millis(1),
    };
    netns_tests::udp_count(&from.ns, ip_of(from), &to.ns, ip_of(to), port, burst)
}

/// Packets through every tunnel port of one switch (rx + tx).
fn tunnel_packets(scd: &Scd) -> Result<u64> {
    scd.metric("scd_port_packets_total", &["name=\"wg-"])
}

#[test]
fn every_vm_reaches_every_other_over_the_direct_tunnel() -> Result<()> {
    if !require_root("every_vm_reaches_every_other_over_the_direct_tunnel") {
        return Ok(());
    }
    let c = setup("wgmesh")?;
    let mut port = 7000;
    for (i, a) in VMS.iter().enumerate() {
        for (j, b) in VMS.iter().enumerate().skip(i + 1) {
            let third: Vec<usize> = (0..3).filter(|h| *h != a.host && *h != b.host).collect();
            let before: Vec<u64> = third
                .iter()
                .map(|h| tunnel_packets(&c.scds[*h]))
                .collect::<Result<_>>()?;
            port += 1;
            let started = Instant::now();
            let total = tcp_stream(&c.vms[i], &c.vms[j], port, 100 << 20)?;
            assert_eq!(total, 100 << 20, "{} -> {}: every byte", a.name, b.name);
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "{} -> {}: 100 MiB intact in {secs:.1} s ({:.0} Mbit/s)",
                a.name,
                b.name,
                838.9 / secs
            );
            port += 1;
            let arrived = udp_count(&c.vms[j], &c.vms[i], port, 200)?;
            let send_errors: Vec<u64> = c
                .scds
                .iter()
                .map(|s| s.metric("scd_tunnel_send_errors_total", &[]))
                .collect::<Result<_>>()?;
            assert_eq!(
                arrived, 200,
                "{} -> {} UDP (tunnel send errors per host: {send_errors:?})",
                b.name, a.name
            );
            let after: Vec<u64> = third
                .iter()
                .map(|h| tunnel_packets(&c.scds[*h]))
                .collect::<Result<_>>()?;
            assert_eq!(
                before, after,
                "{} <-> {}: no third host forwarded anything",
                a.name, b.name
            );
            if a.host != b.host {
                let direct = c.scds[a.host].metric(
                    "scd_port_bytes_total",
                    &[&format!("port=\"{}\"", tunnel_port(b.host)), "dir=\"tx\""],
                )?;
                assert!(
                    direct >= 100 << 20,
                    "{} -> {} went through the direct tunnel ({direct} bytes)",
                    a.name,
                    b.name
                );
            }
        }
    }
    for scd in &c.scds {
        assert_eq!(scd.metric("scd_tunnel_spoofed_total", &[])?, 0);
        assert_eq!(scd.metric("scd_malformed_total", &[])?, 0);
    }
    // The switches measure the latency between hosts over the tunnels themselves
    // (handshake round trips, probed every second here): host2 sits behind 20 ms
    // each way. A probe taken while a 100 MiB transfer fills the switch loops
    // measures their queues too, so the figures printed are those of fresh probes
    // taken with the tunnels idle. Only the emulated delay's lower bound is
    // asserted: a loaded machine adds to a round trip, never takes from it.
    let rtt = |from: usize, to: usize| -> Result<Option<f64>> {
        let text = c.scds[from].metrics_text()?;
        let port = format!("port=\"{}\"", tunnel_port(to));
        Ok(text
            .lines()
            .filter(|l| l.starts_with("scd_tunnel_handshake_rtt_seconds{") && l.contains(&port))
            .find_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok()))
    };
    const PAIRS: [(usize, usize); 3] = [(0, 1), (0, 2), (1, 2)];
    let both_ways = |(a, b): (usize, usize)| -> Result<(Option<f64>, Option<f64>)> {
        Ok((rtt(a, b)?, rtt(b, a)?))
    };
    let under_load = PAIRS.map(both_ways);
    let fresh = wait_until(
        Duration::from_secs(15),
        "a fresh probe on every tunnel",
        || {
            Ok(PAIRS
                .iter()
                .zip(&under_load)
                .all(|(pair, old)| both_ways(*pair).ok().as_ref() != old.as_ref().ok()))
        },
    );
    if let Err(e) = fresh {
        eprintln!("{e:#}: the round trips printed may include the transfers' queues");
    }
    for (a, b) in PAIRS {
        let (ab, ba) = both_ways((a, b))?;
        eprintln!("handshake round trip host{a} <-> host{b}: {ab:?} / {ba:?} s");
        let measured: Vec<f64> = [ab, ba].into_iter().flatten().collect();
        assert!(
            !measured.is_empty(),
            "host{a} <-> host{b}: one side initiated a handshake"
        );
        for r in measured {
            if b == 2 {
                assert!(
                    r >= 0.035,
                    "host{a} <-> host{b} crosses the 2 x 20 ms link: {r} s"
                );
            } else {
                // Present means measured; the figure is whole milliseconds
                // (boringtun's), so a round trip between two namespaces on a
                // quiet machine reads 0.
                assert!(
                    r.is_finite() && r >= 0.0,
                    "host{a} <-> host{b}: a round trip was measured: {r} s"
                );
            }
        }
    }
    let _ = &c.net;
    Ok(())
}

fn ping(from: &Vm, to: &str, count: u32) -> Result<bool> {
    Ok(netns_tests::ping(&from.ns, to, count)?.answered)
}

#[test]
fn a_crashed_switch_heals_without_restarting_the_others() -> Result<()> {
    if !require_root("a_crashed_switch_heals_without_restarting_the_others") {
        return Ok(());
    }
    let mut c = setup("wgheal")?;
    assert!(ping(&c.vms[0], VMS[2].ip, 2)?, "a1 -> b1 before the crash");
    let mut b = c.scds.remove(1);
    b.kill()?;
    assert!(
        !ping(&c.vms[0], VMS[2].ip, 1)?,
        "a1 -> b1 fails while host1's switch is down"
    );
    // The control: a1's pings do get through where no switch is down.
    assert!(ping(&c.vms[0], VMS[3].ip, 2)?, "a1 -> c1 meanwhile");
    let b = b.restart()?;
    // Each peer's traffic resumes once the restarted switch's handshake with that
    // peer completes (one round trip, 40 ms more for the far cloud).
    for (vm, name) in [(0, "a1"), (3, "c1")] {
        let what = format!("{name} -> b1 after the restart");
        let healed = wait_until(Duration::from_secs(20), &what, || {
            ping(&c.vms[vm], VMS[2].ip, 1)
        })
        .with_context(|| b.log())?;
        eprintln!(
            "{name} -> b1 healed {:.2} s after host1's switch restarted",
            healed.as_secs_f64()
        );
    }
    assert_eq!(
        udp_count(&c.vms[3], &c.vms[2], 7500, 100)?,
        100,
        "c1 -> b1, every datagram"
    );
    assert_eq!(
        udp_count(&c.vms[2], &c.vms[0], 7501, 100)?,
        100,
        "b1 -> a1, every datagram"
    );
    c.scds.insert(1, b);
    Ok(())
}

/// IPv4 packets through `ifname`, from their IP header on.
fn packet_socket(ifname: &str) -> Result<OwnedFd> {
    netns_tests::packet::packet_socket(ifname, libc::SOCK_DGRAM, 0x0800)
}

#[test]
fn garbage_replayed_and_spoofed_packets_are_dropped_and_counted() -> Result<()> {
    if !require_root("garbage_replayed_and_spoofed_packets_are_dropped_and_counted") {
        return Ok(());
    }
    let c = setup("wgbad")?;
    assert!(ping(&c.vms[2], VMS[0].ip, 1)?, "b1 -> a1 works");
    let host0 = Internet::host_addr(0);

    // Watch the router's link to host0 and keep one WireGuard data packet that
    // host0 sent to host1, to replay it at host1.
    let link = c.net.router.ip(&["-o", "link", "show"])?;
    let router_if = link
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .find(|n| n.starts_with("scr"))
        .context("router interface")?;
    let sniffer = c.net.router.enter(move || packet_socket(&router_if))??;
    assert!(ping(&c.vms[2], VMS[0].ip, 3)?);
    let mut captured = None;
    let mut buf = [0u8; 2048];
    loop {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::recv(sniffer.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            break;
        }
        let ip = &buf[..usize::try_from(n)?];
        let from_host0 = ip.len() > 28
            && ip[9] == 17
            && ip[12..16] == host0.parse::<std::net::Ipv4Addr>()?.octets();
        if from_host0 && ip[28] == 4 {
            captured = Some(ip[28..].to_vec());
        }
    }
    let replay = captured.context("captured a WireGuard data packet from host0")?;

    let target = (host0.parse::<IpAddr>()?, WG_PORT);
    let host1 = (Internet::host_addr(1).parse::<IpAddr>()?, WG_PORT);
    let garbage_sent = c.net.router.enter(move || -> Result<u64> {
        let s = UdpSocket::bind(("0.0.0.0", 0))?;
        let mut state = 7u64;
        for len in [0usize, 1, 3, 4, 32, 64, 148, 500] {
            let mut d = vec![0u8; len];
            fill_pseudo_random(&mut state, &mut d);
            s.send_to(&d, target)?;
        }
        // Well-formed headers with nonsense inside.
        for kind in [1u8, 2, 3, 4] {
            let mut d = vec![0u8; 148];
            fill_pseudo_random(&mut state, &mut d);
            d[..4].copy_from_slice(&[kind, 0, 0, 0]);
            s.send_to(&d, target)?;
        }
        for _ in 0..3 {
            s.send_to(&replay, host1)?;
        }
        Ok(12)
    })??;
    let counted = wait_until(
        Duration::from_secs(10),
        "garbage and replays counted",
        || {
            Ok(
                c.scds[0].metric("scd_tunnel_invalid_total", &[])? >= garbage_sent - 1
                    && c.scds[1].metric("scd_tunnel_replayed_total", &[])? >= 3,
            )
        },
    );
    if let Err(e) = counted {
        eprintln!("{e:#}");
    }
    let invalid = c.scds[0].metric("scd_tunnel_invalid_total", &[])?;
    let replayed = c.scds[1].metric("scd_tunnel_replayed_total", &[])?;
    assert!(
        invalid >= garbage_sent - 1,
        "garbage counted as invalid: {invalid}"
    );
    assert!(replayed >= 3, "replays counted: {replayed}");

    // b1 claims an address that host0's tables place behind host2.
    c.vms[2]
        .ns
        .ip(&["addr", "add", "100.64.3.99/32", "dev", &c.vms[2].ifname])?;
    let spoofed_before = c.scds[0].metric("scd_tunnel_spoofed_total", &[])?;
    let a1 = ip_of(&c.vms[0]);
    let rx = c.vms[0].ns.enter(move || UdpSocket::bind((a1, 7700)))??;
    rx.set_read_timeout(Some(Duration::from_secs(5)))?;
    netns_tests::big_receive_buffer(&rx, 8 << 20)?;
    // After the spoofed datagrams, b1 sends a marker from its own address on the
    // same path: the positive control that a1 was listening.
    let b1 = ip_of(&c.vms[2]);
    c.vms[2].ns.enter(move || -> Result<()> {
        let s = UdpSocket::bind(("100.64.3.99", 0))?;
        for _ in 0..5 {
            s.send_to(b"spoofed", (a1, 7700))?;
        }
        let s = UdpSocket::bind((b1, 0))?;
        for _ in 0..3 {
            s.send_to(b"marker", (a1, 7700))?;
        }
        Ok(())
    })??;
    let delivered = netns_tests::datagrams_before_marker(&rx, b"marker")
        .context("b1's marker never reached a1")?;
    assert_eq!(delivered, 0, "the spoofed datagram must not be delivered");
    let counted = wait_until(
        Duration::from_secs(10),
        "every spoofed packet counted",
        || Ok(c.scds[0].metric("scd_tunnel_spoofed_total", &[])? - spoofed_before >= 5),
    );
    if let Err(e) = counted {
        eprintln!("{e:#}");
    }
    let spoofed = c.scds[0].metric("scd_tunnel_spoofed_total", &[])? - spoofed_before;
    assert_eq!(spoofed, 5, "each spoofed packet counted");

    // The switch keeps working.
    assert!(ping(&c.vms[2], VMS[0].ip, 1)?);
    Ok(())
}

#[test]
fn too_big_packets_get_fragmentation_needed() -> Result<()> {
    if !require_root("too_big_packets_get_fragmentation_needed") {
        return Ok(());
    }
    let c = setup("wgmtu")?;
    // a1 believes in a 1500-byte path; the tunnel carries 1420.
    c.vms[0]
        .ns
        .ip(&["link", "set", &c.vms[0].ifname, "mtu", "1500"])?;
    let out = c.vms[0]
        .ns
        .command("ping")
        .args(["-c", "1", "-W", "2", "-M", "do", "-s", "1472", VMS[2].ip])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Frag needed") && text.contains("mtu = 1420"),
        "ICMP answer: {text}"
    );
    assert!(c.scds[0].metric("scd_tunnel_too_big_total", &[])? >= 1);
    // And the path MTU it learned works.
    assert!(ping(&c.vms[0], VMS[2].ip, 1)?);
    Ok(())
}
