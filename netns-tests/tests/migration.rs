//! Live migration, network side: a VM moves from cloud B to cloud C and back while a
//! client in cloud A holds a TCP stream to it. The VM is a namespace with one TAP on
//! each host; "migrating" pauses it, moves its address and MAC to the TAP served by
//! the destination's `scd` and announces it with a RARP frame, as QEMU does after a
//! migration. The controller installs delivery at the destination first, reroutes
//! every switch when the announcement arrives, lets the old host forward stragglers
//! for a grace period, then cleans up. The stream survives with every byte intact;
//! its gap and the controller's timeline are printed; a third party's datagrams keep
//! flowing throughout. A migration to a port the destination lacks is refused.

mod common;

use anyhow::{Context, Result};
use common::{event_ms, reaches, scc, status, wait_synced, wait_timeline, VmSpec};
use netns_tests::{require_root, wait_until, Internet, Vm};
use std::net::{IpAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const M1_IP: &str = "100.64.2.1";

/// a1 in cloud A, m1 (the VM that moves) in cloud B, c1 in cloud C.
const VMS: [VmSpec; 3] = [
    VmSpec::new("a1", 0, 1, "100.64.1.1", "02:00:00:00:01:01"),
    VmSpec::new("m1", 1, 1, M1_IP, "02:00:00:00:02:01"),
    VmSpec::new("c1", 2, 1, "100.64.3.1", "02:00:00:00:03:01"),
];

/// Datagrams sent at the moving VM while it is paused or just after it moved, so
/// the timeline's counts have something certain to count.
const PROBES: u64 = 20;

/// Sends [`PROBES`] datagrams from `vm` to the moving VM's discard port.
fn probe_m1(vm: &Vm, from_ip: &'static str) -> Result<()> {
    vm.ns.enter(move || -> Result<()> {
        let s = UdpSocket::bind((from_ip, 0))?;
        for i in 0..PROBES {
            s.send_to(&i.to_be_bytes(), (M1_IP, 9))?;
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    })?
}

#[test]
fn a_vm_migrates_across_clouds_and_back_keeping_its_tcp_stream() -> Result<()> {
    if !require_root("a_vm_migrates_across_clouds_and_back_keeping_its_tcp_stream") {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    // Cloud 3 is far away: 20 ms each way.
    let net = Internet::with_hosts("migr", &[None, None, Some(20)])?;
    // a1: the client in cloud A; c1: a third party in cloud C; m1: the VM that moves,
    // with a TAP on host1 (cloud B, port 1) and one on host2 (cloud C, port 2).
    let cloud = common::MigrationCloud::start(&net, dir.path(), "migr", &VMS, 1)?;
    let (a1, m1, c1) = (&cloud.vms[0], &cloud.vms[1], &cloud.vms[2]);
    let (tap_b, tap_c) = &cloud.taps;
    let landing = common::landing_port(2, 2, m1, tap_c);
    let scds = common::start_switches(&net, &cloud.inventory, &cloud.keys, landing)?;
    cloud.scc.wait_synced(&net)?;
    assert!(reaches(a1, M1_IP, 10)?, "a1 -> m1 on host1");
    assert!(reaches(c1, "100.64.1.1", 10)?, "c1 -> a1");

    // A migration whose hypervisor side fails midway is aborted: the tables go back
    // to what they were and the VM stays reachable where it runs.
    let flows = |s: &serde_json::Value| -> Vec<u64> {
        s["hosts"].as_array().map_or(Vec::new(), |hs| {
            hs.iter()
                .map(|h| h["switch"]["flows"].as_u64().unwrap_or(0))
                .collect()
        })
    };
    let before = flows(&status(&net)?);

    // A port the destination's scd does not have, when scc is told not to add
    // ports itself, is refused before anything changes: the VM would move into a
    // black hole.
    let (ok, text) = scc(
        &net,
        &[
            "migrate",
            "m1",
            "--to",
            "host2",
            "--port",
            "99",
            "--no-manage-ports",
        ],
    )?;
    assert!(!ok, "scc migrate to a missing port must fail: {text}");
    assert!(text.starts_with("error: "), "one error style: {text}");
    assert!(text.contains("has no port 99"), "{text}");
    assert_eq!(flows(&status(&net)?), before, "a refusal changes no table");

    common::start_migration(&net, "m1", "host2", 2)?;
    assert_ne!(
        flows(&status(&net)?),
        before,
        "the destination was prepared"
    );
    let (ok, text) = scc(&net, &["migrate", "--abort"])?;
    assert!(ok, "scc migrate --abort: {text}");
    let after = flows(&wait_synced(&net)?);
    assert_eq!(
        after, before,
        "an aborted migration leaves the tables as they were"
    );
    assert!(reaches(a1, M1_IP, 5)?, "m1 still answers at its source");

    // The stream: a1 sends pseudo-random chunks to m1 every millisecond.
    let stream = common::paced_stream(m1, a1, M1_IP, 9100)?;
    let running = Arc::new(AtomicBool::new(true));
    // A third party's datagrams, c1 -> a1, every 5 ms throughout.
    let a1_ip: IpAddr = "100.64.1.1".parse()?;
    let rx = a1.ns.enter(move || UdpSocket::bind((a1_ip, 9200)))??;
    rx.set_read_timeout(Some(Duration::from_secs(3)))?;
    netns_tests::big_receive_buffer(&rx, 8 << 20)?;
    let keep = running.clone();
    let third = c1.ns.spawn(move || -> Result<u32> {
        let tx = UdpSocket::bind(("100.64.3.1", 0))?;
        let mut i = 0u32;
        while keep.load(Ordering::Relaxed) {
            tx.send_to(&i.to_be_bytes(), (a1_ip, 9200))?;
            i += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(i)
    });
    let receiver = std::thread::spawn(move || {
        let mut seen = std::collections::HashSet::new();
        let mut buf = [0u8; 16];
        while let Ok(n) = rx.recv(&mut buf) {
            if n >= 4 {
                seen.insert(u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]));
            }
        }
        seen.len()
    });
    stream.wait_flowing(64 * 1024, Duration::from_secs(20))?;

    let mut reroutes = Vec::new();
    for (i, (to_host, to_port, from_tap, to_tap)) in
        [("host2", 2, tap_b, tap_c), ("host1", 1, tap_c, tap_b)]
            .into_iter()
            .enumerate()
    {
        common::start_migration(&net, "m1", to_host, to_port)?;
        // First move: a1 probes the paused VM; its old host (host1) cannot deliver
        // the probes, and the timeline must count them as lost there.
        common::move_vm(m1, from_tap, to_tap, &[], || {
            if i == 0 {
                // The probes must reach host1 before the VM announces itself: host1
                // counts each as a transmit drop on m1's old port.
                let old_port_drops = || scds[1].metric("scd_port_dropped_total", &["port=\"1\""]);
                let before = old_port_drops()?;
                probe_m1(a1, "100.64.1.1")?;
                wait_until(
                    Duration::from_secs(10),
                    "the probes dropped at host1",
                    || Ok(old_port_drops()? >= before + PROBES),
                )?;
            }
            Ok(())
        })?;
        let s = wait_timeline(&net, "rerouted")?;
        let arrived = event_ms(&s, "arrived").context("arrival")?;
        let rerouted = event_ms(&s, "rerouted").context("rerouted")?;
        eprintln!(
            "m1 -> {to_host}: arrival at {arrived:.1} ms, all switches rerouted {:.1} ms later",
            rerouted - arrived
        );
        reroutes.push(rerouted - arrived);
        // Second move: c1 lives on the old host (host2), whose table now sends m1's
        // packets on through the tunnel; the timeline must count them as forwarded.
        if i == 1 {
            probe_m1(c1, "100.64.3.1")?;
        }
        let s = wait_timeline(&net, "old host drained")?;
        let t = &s["timeline"];
        eprintln!(
            "timeline: {}; forwarded by the old host: {}; lost at the old host: {}",
            t["events"], t["forwarded_by_old_host"], t["lost_at_old_host"]
        );
        let forwarded = t["forwarded_by_old_host"].as_u64().context("forwarded")?;
        let lost = t["lost_at_old_host"].as_u64().context("lost")?;
        if i == 0 {
            assert!(
                lost >= PROBES,
                "the probes sent at the paused VM are lost: {t}"
            );
        } else {
            assert!(
                forwarded >= PROBES,
                "the old host's own VM reached m1 through its forwarding flows: {t}"
            );
        }
        // The stream flows again (through the new path) before the next move.
        stream.wait_flowing(stream.received() + 64 * 1024, Duration::from_secs(20))?;
    }
    assert!(reaches(c1, M1_IP, 10)?, "c1 -> m1 after it came back");

    running.store(false, Ordering::Relaxed);
    let report = stream.finish()?;
    let datagrams = third.join().expect("third party")??;
    let received = receiver.join().expect("receiver");
    eprintln!(
        "stream: {} bytes sent, {} received, longest gap {:.0} ms; third party: {received}/{datagrams} datagrams; reroutes {reroutes:?} ms",
        report.sent,
        report.received,
        report.gap.as_secs_f64() * 1000.0
    );
    assert!(
        report.intact,
        "the TCP stream survives both migrations with every byte intact: {report:?}"
    );
    assert_eq!(
        received,
        usize::try_from(datagrams)?,
        "the third party lost nothing"
    );
    drop(scds);
    Ok(())
}
