//! `[scheduling] workers = 2`: two forwarding workers per `scd`, each reading
//! its own queue of every multi-queue TAP. Two VMs on one host and a third
//! across a WireGuard tunnel exchange several TCP streams at once (so the
//! kernel's flow hash spreads them over both queues) and pings; every stream
//! arrives whole and in order (TCP checks the order, a hash the bytes), both
//! workers' metrics show they forwarded, and a port added and removed while
//! traffic runs is served by both workers and then gone. Raw ports do the same
//! with one packet socket per worker in a fanout group.

use anyhow::Result;
use netns_tests::cloud::reaches;
use netns_tests::{require_root, snmp_counter, tcp_transfer, unique, wait_until, Internet};
use netns_tests::{scd_config_head, KeyPair, Scd, Vm, VmAddress, GATEWAY_MAC};
use std::time::Duration;

const WG_PORT: u16 = 51820;
const PATIENCE: Duration = Duration::from_secs(60);

/// (host, port, ip, mac) of every VM; the last one is added while `scd` runs.
const VMS: [(usize, u32, &str, &str); 4] = [
    (0, 1, "100.64.1.1", "02:00:00:00:01:01"),
    (0, 2, "100.64.1.2", "02:00:00:00:01:02"),
    (1, 1, "100.64.2.1", "02:00:00:00:02:01"),
    (0, 3, "100.64.1.3", "02:00:00:00:01:03"),
];
const ADDED: usize = 3;

fn tunnel_port(host: usize) -> u32 {
    100 + u32::try_from(host).unwrap_or(0)
}

/// Local VMs delivered with both MACs rewritten, remote ones into their host's
/// tunnel; the added VM's flow is there from the start (it matches nothing
/// until its port exists).
fn flows_for(host: usize) -> String {
    VMS.iter()
        .map(|(h, port, ip, mac)| {
            if *h == host {
                format!("priority=100,ip,nw_dst={ip},actions=set_field:{GATEWAY_MAC}->eth_src,set_field:{mac}->eth_dst,output:{port}\n")
            } else {
                format!("priority=100,ip,nw_dst={ip},actions=output:{}\n", tunnel_port(*h))
            }
        })
        .collect()
}

fn config_for(host: usize, taps: &[String], keys: &[KeyPair], ctl: &std::path::Path) -> String {
    let mut c = format!(
        "{}[tunnel]\nprivate_key_file = \"key\"\nlisten = \"0.0.0.0:{WG_PORT}\"\nmtu = 1420\n",
        scd_config_head(&(host + 1).to_string(), &format!("host{host}"), true)
    );
    for (i, (h, port, _, _)) in VMS.iter().enumerate().take(ADDED) {
        if *h == host {
            c += &format!("[[port]]\nnumber = {port}\nname = \"{}\"\n", taps[i]);
        }
    }
    c += &Internet::peer_sections(keys, host, tunnel_port, WG_PORT);
    c + &format!(
        "[scheduling]\nworkers = 2\n[control]\nsocket = \"{}\"\n",
        ctl.display()
    )
}

/// Runs `streams` TCP streams of `bytes` each from `from` to `to` at once;
/// each must arrive whole (the receiver's hash is the sender's).
fn parallel_streams(from: &Vm, to: &Vm, first_port: u16, streams: u16, bytes: u64) -> Result<()> {
    let dst: std::net::IpAddr = to.ip.parse()?;
    std::thread::scope(|s| {
        let runs: Vec<_> = (0..streams)
            .map(|i| s.spawn(move || tcp_transfer(&from.ns, &to.ns, dst, first_port + i, bytes)))
            .collect();
        for run in runs {
            let t = run
                .join()
                .map_err(|_| anyhow::anyhow!("stream thread panicked"))??;
            anyhow::ensure!(
                t.received == bytes && t.sent_hash == t.received_hash,
                "a stream from {} to {} arrived damaged: {} of {bytes} bytes",
                from.ip,
                to.ip,
                t.received
            );
        }
        Ok(())
    })
}

/// TCP segments the namespace of `vm` retransmitted so far.
fn retransmits(vm: &Vm) -> Result<u64> {
    snmp_counter(&vm.ns, "Tcp", "RetransSegs")
}

/// Batches each worker of `scd` read from local ports.
fn local_batches(scd: &Scd, worker: usize) -> Result<u64> {
    scd.metric(
        "scd_stage_latency_seconds_count",
        &["stage=\"local_batch\"", &format!("worker=\"{worker}\"")],
    )
}

#[test]
fn two_workers_forward_streams_in_order_locally_and_across_a_tunnel() -> Result<()> {
    if !require_root("two_workers_forward_streams_in_order_locally_and_across_a_tunnel") {
        return Ok(());
    }
    let net = Internet::with_hosts("workers", &[None, None])?;
    let keys = vec![KeyPair::generate()?, KeyPair::generate()?];
    let dir = tempfile::Builder::new().prefix("workers").tempdir()?;
    let ctl = dir.path().join("scd.ctl");
    let taps: Vec<String> = VMS.iter().map(|_| unique("scw")).collect();
    let mut scds = Vec::new();
    for host in 0..2 {
        let ctl = if host == 0 {
            ctl.clone()
        } else {
            dir.path().join("scd1.ctl")
        };
        scds.push(Scd::start_with_key(
            &net.hosts[host],
            &config_for(host, &taps, &keys, &ctl),
            Some(&flows_for(host)),
            &keys[host].private,
        )?);
    }
    let vm = |i: usize| -> Result<Vm> {
        let (host, _, ip, mac) = VMS[i];
        Vm::attach(
            &unique(&format!("workers-v{i}-")),
            &net.hosts[host],
            &taps[i],
            VmAddress::overlay(mac, ip),
        )
    };
    let vms = (0..ADDED).map(vm).collect::<Result<Vec<_>>>()?;
    let (a1, a2, b1) = (&vms[0], &vms[1], &vms[2]);

    assert!(reaches(a1, &a2.ip, 20)?, "a1 pings a2\n{}", scds[0].log());
    assert!(
        reaches(a1, &b1.ip, 20)?,
        "a1 pings b1 over the tunnel\n{}",
        scds[0].log()
    );

    let before = retransmits(a1)?;
    parallel_streams(a1, a2, 7100, 4, 32 << 20)?;
    parallel_streams(a2, a1, 7200, 4, 32 << 20)?;
    parallel_streams(a1, b1, 7300, 4, 16 << 20)?;
    parallel_streams(b1, a2, 7400, 4, 16 << 20)?;
    println!(
        "a1 retransmitted {} TCP segments over 16 streams",
        retransmits(a1)? - before
    );
    for (host, scd) in scds.iter().enumerate() {
        let (w0, w1) = (local_batches(scd, 0)?, local_batches(scd, 1)?);
        println!("host {host}: local batches by worker 0: {w0}, by worker 1: {w1}");
        assert!(
            w0 > 0 && w1 > 0,
            "host {host}: both workers read their queues: {w0} and {w1}"
        );
    }
    let dropped = scds[0].metric("scd_tunnel_handoff_dropped_total", &[])?;
    println!("host 0: frames for the tunnel dropped at the hand-over: {dropped}");

    // A port added while traffic runs: both workers take their queue of it.
    let scd_port = |args: &[&str]| netns_tests::scd_port(&net.hosts[0], &ctl, args);
    let background = std::thread::scope(|s| -> Result<()> {
        let stream = s.spawn(|| parallel_streams(a1, a2, 7500, 2, 64 << 20));
        let (_, port, _, _) = VMS[ADDED];
        let out = scd_port(&["add", "--name", &taps[ADDED], "--ofport", &port.to_string()])?;
        anyhow::ensure!(out.status.success(), "{out:?}\n{}", scds[0].log());
        let a3 = vm(ADDED)?;
        anyhow::ensure!(reaches(a1, &a3.ip, 20)?, "a1 pings the added VM");
        let (w0, w1) = (local_batches(&scds[0], 0)?, local_batches(&scds[0], 1)?);
        parallel_streams(&a3, a1, 7600, 4, 16 << 20)?;
        parallel_streams(&a3, b1, 7700, 4, 8 << 20)?;
        let (w0_after, w1_after) = (local_batches(&scds[0], 0)?, local_batches(&scds[0], 1)?);
        anyhow::ensure!(
            w0_after > w0 && w1_after > w1,
            "both workers read the added port: {w0} -> {w0_after}, {w1} -> {w1_after}"
        );
        let out = scd_port(&["del", "--ofport", &port.to_string()])?;
        anyhow::ensure!(out.status.success(), "{out:?}");
        wait_until(PATIENCE, "the removed VM unreachable", || {
            Ok(!netns_tests::cloud::ping(a1, &a3.ip)?)
        })?;
        stream
            .join()
            .map_err(|_| anyhow::anyhow!("stream thread panicked"))??;
        Ok(())
    });
    background?;
    // Everything else still forwards, on both workers.
    assert!(reaches(a1, &a2.ip, 20)?, "a1 pings a2 after the removal");
    parallel_streams(a1, b1, 7800, 4, 8 << 20)?;
    drop(vms);
    drop(scds);
    Ok(())
}

#[test]
fn two_workers_share_raw_ports_through_a_fanout_group() -> Result<()> {
    if !require_root("two_workers_share_raw_ports_through_a_fanout_group") {
        return Ok(());
    }
    let host = netns_tests::Netns::new(&unique("workers-raw-host-"))?;
    let (_, _, ip1, mac1) = VMS[0];
    let (_, _, ip2, mac2) = VMS[1];
    let veth = |ip, mac| -> Result<(String, Vm)> {
        let name = unique("scw");
        let vm = Vm::with_veth(
            &unique("workers-raw-vm-"),
            &host,
            &name,
            VmAddress::overlay(mac, ip),
            1420,
        )?;
        Ok((name, vm))
    };
    let ((if1, vm1), (if2, vm2)) = (veth(ip1, mac1)?, veth(ip2, mac2)?);
    let config = format!(
        "{}[scheduling]\nworkers = 2\n[[port]]\nnumber = 1\nname = \"{if1}\"\ntype = \"raw\"\n\
         [[port]]\nnumber = 2\nname = \"{if2}\"\ntype = \"raw\"\n",
        scd_config_head("9", "raw-workers", true)
    );
    let scd = Scd::start(&host, &config, Some(&flows_for(0)))?;
    assert!(reaches(&vm1, ip2, 20)?, "vm1 pings vm2\n{}", scd.log());
    parallel_streams(&vm1, &vm2, 7900, 4, 16 << 20)?;
    parallel_streams(&vm2, &vm1, 7950, 4, 16 << 20)?;
    let (w0, w1) = (local_batches(&scd, 0)?, local_batches(&scd, 1)?);
    println!("raw ports: local batches by worker 0: {w0}, by worker 1: {w1}");
    assert!(
        w0 > 0 && w1 > 0,
        "both workers read their sockets: {w0} and {w1}"
    );
    drop(scd);
    Ok(())
}

/// (ip, mac) of the one VM of each of three hosts (port 1 on each).
const MESH_VMS: [(&str, &str); 3] = [
    ("100.64.1.1", "02:00:00:00:01:01"),
    ("100.64.2.1", "02:00:00:00:02:01"),
    ("100.64.3.1", "02:00:00:00:03:01"),
];

fn mesh_flows(host: usize) -> String {
    MESH_VMS
        .iter()
        .enumerate()
        .map(|(h, (ip, mac))| {
            if h == host {
                format!("priority=100,ip,nw_dst={ip},actions=set_field:{GATEWAY_MAC}->eth_src,set_field:{mac}->eth_dst,output:1\n")
            } else {
                format!("priority=100,ip,nw_dst={ip},actions=output:{}\n", tunnel_port(h))
            }
        })
        .collect()
}

/// The VM's TAP lives in its own namespace (multi-queue, `create = false`),
/// so it outlives a restart of the host's `scd`.
fn mesh_config(host: usize, vm: &Vm, keys: &[KeyPair]) -> String {
    format!(
        "{}[tunnel]\nprivate_key_file = \"key\"\nlisten = \"0.0.0.0:{WG_PORT}\"\nmtu = 1420\n\
         {}{}[scheduling]\nworkers = 2\n",
        scd_config_head(&(host + 11).to_string(), &format!("mesh{host}"), true),
        vm.port_section(1),
        Internet::peer_sections(keys, host, tunnel_port, WG_PORT)
    )
}

/// Tunnel batches each worker of `scd` decrypted, and tunnel sends it flushed.
fn tunnel_work(scd: &Scd, worker: usize) -> Result<(u64, u64)> {
    let count = |stage: &str| {
        scd.metric(
            "scd_stage_latency_seconds_count",
            &[
                &format!("stage=\"{stage}\""),
                &format!("worker=\"{worker}\""),
            ],
        )
    };
    Ok((count("tunnel_batch")?, count("tunnel_send")?))
}

/// Three hosts with `workers = 2`: each host's two peers are owned one by each
/// worker (peer `i` by worker `i mod 2`), whose socket of the tunnel's
/// reuseport group the kernel's steering program feeds. Streams over every
/// tunnel arrive whole and in order, both workers of every host decrypt and
/// encrypt, and only handshake initiations are handed between workers; a
/// restarted host (whose initiations land on worker 0 of the others while
/// worker 1 owns it there) connects again.
#[test]
fn two_workers_each_own_tunnel_peers_steered_by_reuseport() -> Result<()> {
    if !require_root("two_workers_each_own_tunnel_peers_steered_by_reuseport") {
        return Ok(());
    }
    let net = Internet::with_hosts("wgsteer", &[None, None, None])?;
    let keys = (0..3)
        .map(|_| KeyPair::generate())
        .collect::<Result<Vec<_>>>()?;
    let vms = (0..3)
        .map(|h| {
            let (ip, mac) = MESH_VMS[h];
            Vm::with_tap_queues(
                &unique(&format!("wgsteer-v{h}-")),
                &unique("scs"),
                VmAddress::overlay(mac, ip),
                1420,
                true,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let mut scds = (0..3)
        .map(|h| {
            Scd::start_with_key(
                &net.hosts[h],
                &mesh_config(h, &vms[h], &keys),
                Some(&mesh_flows(h)),
                &keys[h].private,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    for (a, b) in [(0, 1), (0, 2), (1, 2)] {
        assert!(
            reaches(&vms[a], &vms[b].ip, 20)?,
            "host{a} reaches host{b}\n{}",
            scds[a].log()
        );
    }
    // Every tunnel carries streams both ways at once.
    std::thread::scope(|s| -> Result<()> {
        let runs = [
            s.spawn(|| parallel_streams(&vms[0], &vms[1], 7100, 3, 16 << 20)),
            s.spawn(|| parallel_streams(&vms[2], &vms[0], 7200, 3, 16 << 20)),
            s.spawn(|| parallel_streams(&vms[1], &vms[2], 7300, 3, 16 << 20)),
        ];
        for run in runs {
            run.join()
                .map_err(|_| anyhow::anyhow!("stream thread panicked"))??;
        }
        Ok(())
    })?;
    let handed_before: Vec<u64> = scds
        .iter()
        .map(|scd| scd.metric("scd_tunnel_datagrams_handed_total", &[]))
        .collect::<Result<_>>()?;
    for (host, scd) in scds.iter().enumerate() {
        let (w0, w1) = (tunnel_work(scd, 0)?, tunnel_work(scd, 1)?);
        let received = scd.metric("scd_port_packets_total", &["dir=\"rx\""])?;
        println!(
            "host {host}: (tunnel batches, tunnel sends) by worker 0: {w0:?}, by worker 1: {w1:?}; \
             datagrams handed between workers: {}, tunnel and VM packets received: {received}",
            handed_before[host]
        );
        assert!(
            w0.0 > 0 && w0.1 > 0 && w1.0 > 0 && w1.1 > 0,
            "host {host}: both workers decrypt and encrypt: {w0:?} and {w1:?}"
        );
        // The status /metrics reads gathers both workers' peers.
        for peer in (0..3).filter(|p| *p != host) {
            let port = format!("port=\"{}\"", tunnel_port(peer));
            let what = format!("host {host}: the status of peer host{peer}");
            wait_until(PATIENCE, &what, || {
                Ok(scd.metric("scd_tunnel_session_bytes_total", &[&port, "dir=\"rx\""])? > 0)
            })?;
        }
        // Data is steered to its owner's socket: what crosses between workers
        // is the handshake initiations (a few per peer), not the streams.
        assert!(
            handed_before[host] < 1000,
            "host {host}: {} datagrams handed over: not steered",
            handed_before[host]
        );
    }

    // Host 2 restarts: its initiations reach worker 0 of hosts 0 and 1, where
    // it is peer 1 (worker 1's), and are handed over.
    let restarted = scds.remove(2).restart()?;
    scds.push(restarted);
    for a in [0, 1] {
        let what = format!("host{a} -> host2 after host2 restarted");
        wait_until(PATIENCE, &what, || {
            netns_tests::cloud::ping(&vms[a], &vms[2].ip)
        })
        .map_err(|e| anyhow::anyhow!("{e:#}\n{}", scds[2].log()))?;
        let handed = scds[a].metric("scd_tunnel_datagrams_handed_total", &[])?;
        assert!(
            handed > handed_before[a],
            "host {a}: host2's new initiation was handed to its owner: {} -> {handed}",
            handed_before[a]
        );
    }
    parallel_streams(&vms[0], &vms[2], 7400, 2, 8 << 20)?;
    parallel_streams(&vms[2], &vms[1], 7500, 2, 8 << 20)?;
    drop(vms);
    drop(scds);
    Ok(())
}
