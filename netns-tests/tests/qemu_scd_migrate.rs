//! A real QEMU guest (TCG) live-migrates between two hosts' `scd` switches while a
//! client VM in another cloud holds a TCP connection to it, and the controller
//! reroutes the overlay when QEMU's RARP self-announce reaches the destination's
//! switch. The migration stream runs over TLS with the cloud's CA (QEMU's
//! `tls-creds-x509`, host1's certificate at the source, host2's at the
//! destination, which demands the source's), driven by `hypervisor-glue`.
//!
//! Three hosts behind an emulated internet, each with an `scd` programmed by `scc`
//! over WireGuard tunnels: host0 (cloud 1) serves the client VM `a1` (a namespace
//! with a TAP); host1 (cloud 2) serves the guest `vm1` through a raw port on the
//! host side of the persistent TAP its QEMU uses; host2 (cloud 3) has a raw port
//! ready on the TAP of the destination QEMU (started with `-incoming`). The guest
//! runs a TCP echo server; `a1` streams a byte pattern through it and checks every
//! byte that comes back. Then: `scc migrate vm1 --to host2 --port 2`, wait for
//! "destination ready", QMP `migrate` over the underlay, QEMU's RARP arrives at
//! host2's raw port, packet-in, `scc` reroutes every switch, and the stream goes on
//! intact. QEMU's total time and downtime, the reroute time from the controller's
//! timeline and the stream's longest gap are printed.
//!
//! Owns its namespaces (prefixed with the test name, removed on drop, also on
//! panic), the QEMU, `scc` and `scd` processes it starts (ended by PID) and a temp
//! dir. Needs root, `qemu-system-x86_64` (scripts/install-qemu.sh) and the guest
//! (scripts/build-guest.sh); without them it says so loudly and fails under CI=true.

mod common;

use anyhow::{bail, Context, Result};
use common::{event_ms, start_scc, wait_event, wait_timeline, VmSpec};
use hypervisor_glue::commands::QueryStatus;
use hypervisor_glue::migration;
use hypervisor_glue::notify;
use hypervisor_glue::storage::Progress;
use hypervisor_glue::tls;
use hypervisor_glue::{MigrationStatus, QemuConfig, RunState};
use netns_tests::qemu_cloud::{
    assert_stream_survived, connect_from, guest_config, guest_inventory_entry, guest_nic_args,
    migration_tls, qemu_logs, qemu_taps, quit, spawn_tls_destination, spawn_tls_source,
    start_qemu_switches, CLIENT_IP, CLIENT_MAC, ECHO_PORT, GUEST_IP, MIGRATION_PORT, QEMU_MTU,
    QTAP, READY,
};
use netns_tests::{low_downtime_guest_migration, EchoStream, Guest};
use netns_tests::{Internet, Netns};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TEST: &str = "qemu_scd_migrate";

/// The QEMU of one host: the persistent TAP `QTAP` in that host's namespace, the
/// guest's MAC from the inventory, MTU 1420 announced to the guest (virtio
/// `host_mtu`), and no segmentation offload (a raw port refuses super-frames;
/// checksum offload stays on and the raw port hands unfinished checksums on behind
/// their virtio-net header).
fn qemu_config(guest: &Guest, host: &Netns, dir: &Path, role: &str) -> QemuConfig {
    let mut c = guest_config(guest, TEST, dir, role);
    c.append = format!("quiet sc.ip={GUEST_IP}/10 sc.port={ECHO_PORT}");
    c.netns = Some(host.name().to_owned());
    c.extra_args = guest_nic_args();
    c
}

// ---------------------------------------------------------------- controller

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_guest_migrates_between_scd_hosts_keeping_its_tcp_connection() -> Result<()> {
    let Some(guest) = netns_tests::require_qemu_guest(TEST) else {
        return Ok(());
    };
    let t0 = Instant::now();
    let dir = tempfile::Builder::new().prefix(TEST).tempdir()?;
    let net = Internet::with_hosts("qscd", &[None; 3])?;
    let keys = common::key_pairs(3)?;
    // The cloud's PKI (the one scc and scd use): the QEMUs' migration TLS
    // credentials come from host1's and host2's certificates.
    let (src_tls, dst_tls) = migration_tls(dir.path(), 3)?;
    qemu_taps(&net, QEMU_MTU)?;
    let src_cfg = qemu_config(&guest, &net.hosts[1], dir.path(), "src");
    let (mut src, src_qmp) = spawn_tls_source(src_cfg, &src_tls).await?;
    let dst_ul = Internet::host_addr(2);
    let dst_cfg = qemu_config(&guest, &net.hosts[2], dir.path(), "dst");
    let (mut dst, dst_qmp) = spawn_tls_destination(dst_cfg, &dst_tls).await?;
    assert_eq!(
        dst_qmp.execute(&QueryStatus).await?.status,
        RunState::Inmigrate,
        "the destination waits for the migration"
    );

    // The overlay: a1 on host0 port 1; vm1 (the guest) on host1 port 1, a raw port
    // on the QEMU's TAP; host2 has raw port 2 on its QEMU's TAP, ready.
    let client = VmSpec::new("a1", 0, 1, CLIENT_IP, CLIENT_MAC);
    let a1 = client.create(TEST)?;
    let mut inventory = common::inventory(&keys, &[client.entry(&a1)]);
    inventory += &guest_inventory_entry();
    let inventory_path = dir.path().join("inventory.toml");
    std::fs::write(&inventory_path, inventory)?;
    let scc_proc = start_scc(&net, dir.path(), true)?;
    let scds = start_qemu_switches(&net, &inventory_path, &keys, Ok)?;
    scc_proc.wait_synced(&net)?;

    let booted = Instant::now();
    if let Err(e) = src.wait_for_serial(READY, Duration::from_secs(90)).await {
        bail!("guest did not boot: {e}\n{}", qemu_logs(dir.path()));
    }
    eprintln!(
        "guest ready (waited {:?} after the switches were up)",
        booted.elapsed()
    );

    // The client's connection to the guest's echo server, from a1's namespace.
    let to = SocketAddr::new(GUEST_IP.parse()?, ECHO_PORT);
    let conn =
        connect_from(&a1, to, Duration::from_secs(20)).with_context(|| qemu_logs(dir.path()))?;
    let stream = EchoStream::start(conn)?;
    let before = tokio::task::block_in_place(|| stream.wait_echoed(4096, Duration::from_secs(30)))
        .context("echo works through host1's raw port before the migration")?;
    anyhow::ensure!(
        before.received > 0 && before.corrupt_at.is_none(),
        "echo works through host1's raw port before the migration: {before:?}"
    );

    // Make before break: the destination delivers first.
    common::start_migration(&net, "vm1", "host2", 2)?;

    // QEMU migrates; the controller reroutes on the RARP that reaches host2's
    // raw port (watched from a blocking thread meanwhile).
    let started = Instant::now();
    let net = Arc::new(net);
    let watch_net = net.clone();
    let rerouted = tokio::task::spawn_blocking(move || {
        let s = wait_event(
            &watch_net,
            "rerouted",
            Duration::from_secs(60),
            &AtomicBool::new(false),
        );
        (s, started.elapsed())
    });
    let mut opts = low_downtime_guest_migration();
    opts.parameters = tls::with_tls(opts.parameters, Some("host2"));
    let uri = format!("tcp:{dst_ul}:{MIGRATION_PORT}");
    // As `scvm migrate --scc-api` does: QEMU's figures go to scc while it copies.
    let (progress_tx, progress_rx) = tokio::sync::watch::channel(None);
    let api = bounded_http::Endpoint::Unix(common::api_socket(&net.router));
    let reporter = tokio::spawn(notify::report_progress(
        api,
        None,
        Some("vm1".into()),
        progress_rx,
    ));
    let report = migration::migrate_observed(&src_qmp, &uri, &opts, &mut |info| {
        progress_tx.send_replace(Some(Progress::of_memory(info, started.elapsed())));
    })
    .await
    .with_context(|| qemu_logs(dir.path()))?;
    drop(progress_tx);
    reporter.await?;
    let (timeline, rerouted_at) = rerouted.await?;
    let timeline = timeline?;

    // Keep the stream going a while at the new place (3 s of it echoed).
    let flowing =
        tokio::task::block_in_place(|| stream.wait_echoed(38_400, Duration::from_secs(60)));
    if let Err(e) = flowing {
        eprintln!("{e:#}");
    }
    let (written, stats, wres) = stream.finish();
    // After the grace period the old host's counts are in the timeline.
    let drained = wait_timeline(&net, "old host drained")?;
    let arrived = event_ms(&timeline, "arrived");
    let reroute = event_ms(&timeline, "rerouted");
    let dst_status = dst_qmp.execute(&QueryStatus).await?;
    let src_status = src_qmp.execute(&QueryStatus).await?;
    let host2_port2_rx = scds[2].metric(
        "scd_port_packets_total",
        &[&format!("name=\"{QTAP}\""), "dir=\"rx\""],
    )?;
    eprintln!(
        "\n=== QEMU guest (TCG, 128 MiB) migrates host1 -> host2 under scd/scc, stream over TLS ===\n\
         {}\n\
         QEMU total time    : {} ms\n\
         QEMU downtime      : {} ms\n\
         controller         : arrival (RARP packet-in) at {:?} ms, all switches rerouted {:.1} ms later\n\
         rerouted seen      : +{:?} after QMP migrate\n\
         TCP stream gap     : {:?} (longest inter-arrival at the client)\n\
         TCP bytes echoed   : {} of {} written, first corrupt byte {:?}\n\
         host2 raw port rx  : {host2_port2_rx} frames\n\
         old host           : forwarded {} packets to host2, lost {} (network's count)\n\
         timeline           : {}\n\
         last copy report   : {}\n\
         whole test         : {:?}\n",
        report.summary(),
        report.total_time_ms.unwrap_or(-1),
        report.downtime_ms.unwrap_or(-1),
        arrived,
        reroute.zip(arrived).map_or(-1.0, |(r, a)| r - a),
        rerouted_at,
        stats.max_gap,
        stats.received,
        written,
        stats.corrupt_at,
        drained["timeline"]["forwarded_by_old_host"],
        drained["timeline"]["lost_at_old_host"],
        drained["timeline"]["events"],
        drained["timeline"]["copy"],
        t0.elapsed(),
    );

    assert_eq!(report.status, MigrationStatus::Completed);
    assert!(
        dst_status.running,
        "the guest runs at host2: {dst_status:?}"
    );
    assert_eq!(src_status.status, RunState::Postmigrate);
    assert!(
        arrived.is_some(),
        "the RARP announce reached scc as the arrival"
    );
    // scc took the hypervisor's progress: the copy phase is in its timeline and
    // the last report's figures in `scc status`.
    let copy = &drained["timeline"]["copy"];
    assert!(
        event_ms(&drained, "memory copy").is_some()
            && copy["phase"] == "memory"
            && copy["ram_transferred"].as_u64().unwrap_or(0) > 0
            && copy["ram_total"].as_u64().unwrap_or(0) > 0,
        "scc status shows the copy's progress: {}",
        drained["timeline"]
    );
    assert_stream_survived(written, &stats, &wres, &qemu_logs(dir.path()));
    assert!(
        host2_port2_rx > 0,
        "the guest talks through host2's raw port"
    );

    quit(&mut dst, &dst_qmp).await;
    quit(&mut src, &src_qmp).await;
    drop(scds);
    Ok(())
}
