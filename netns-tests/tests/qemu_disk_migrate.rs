//! A real QEMU guest (TCG) with a 256 MiB qcow2 disk moves between two hosts in
//! different clouds behind `scd`, its disk with it, while it writes a known
//! stream of blocks and a client VM in a third cloud holds a TCP connection to
//! it. Its address came from `scd`'s DHCP. The disk goes over NBD into the
//! destination's empty image (`blockdev-mirror`, write-blocking), memory after
//! it, both over TLS with the cloud's CA (`hypervisor_glue::storage`). After the
//! move the destination's disk holds the pre-filled region and the stream's
//! blocks as an unbroken prefix, and nothing else; the stream survives. Before
//! that, a first move is aborted during its disk copy: the guest runs on at
//! host1 with its stream, and `scc migrate --abort` leaves every switch's
//! tables as they were before (`ovs-ofctl dump-flows`); a second one is aborted
//! during its memory copy, with the same checks.
//!
//! A second test aborts a migration during the disk copy and another during the
//! memory copy: each time the VM keeps running at its source (its block stream
//! goes on), the mirror and its target are gone, and in the end the source disk
//! passes the same block-for-block check. A third moves the guest with its disk
//! by post-copy: disk, memory, then the guest runs at the destination while the
//! rest of its memory follows; the destination's disk passes the check.
//!
//! Owns its namespaces (prefixed with the test name, removed on drop, also on
//! panic), the QEMU, `scc` and `scd` processes it starts (ended by PID) and a temp
//! dir. Needs root, `qemu-system-x86_64`, `qemu-img`/`qemu-io`, `ovs-ofctl` and the guest
//! (scripts/build-guest.sh); without them it says so loudly and fails under
//! CI=true.

mod common;

use anyhow::{bail, Context, Result};
use common::{scc, start_scc, wait_event, VmSpec};
use hypervisor_glue::commands::{
    CapabilityState, MigrateSetCapabilities, QueryBlockJobs, QueryStatus, Stop,
};
use hypervisor_glue::migration::MigrationOptions;
use hypervisor_glue::storage::{self, NbdTarget, Phase, Progress, StorageError};
use hypervisor_glue::tls;
use hypervisor_glue::{
    Incoming, MigrationError, MigrationParameters, QemuConfig, QemuProcess, QmpClient,
};
use netns_tests::disk::{self, blocks_reported};
use netns_tests::ofctl::{flow_specs, ofctl};
use netns_tests::qemu_cloud::{
    assert_stream_survived, connect_from, guest_config, guest_inventory_entry, guest_nic_args,
    migration_tls, qemu_logs, qemu_taps, quit, spawn_tls_destination, spawn_tls_source,
    start_qemu_switches, CLIENT_IP, CLIENT_MAC, ECHO_PORT, GUEST_IP, MIGRATION_PORT, QEMU_MTU,
    QMP_TIMEOUT, READY,
};
use netns_tests::{guest_migration, require_program, EchoStream, Guest, Internet, Netns};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TEST: &str = "qemu_disk_migrate";
const NBD_PORT: u16 = 10809;
const DISK_MIB: u64 = 256;
/// Data the mirror must really copy besides the guest's stream.
const PREFILL_MIB: u64 = 32;
/// Each switch's local OpenFlow listener, for `ovs-ofctl dump-flows`.
const MANAGEMENT: &str = "tcp:127.0.0.1:6654";

/// host2's QEMU with an empty disk, waiting for memory and exporting its disk,
/// both over TLS with `dst_tls`.
async fn tls_destination(
    guest: &Guest,
    net: &Internet,
    dir: &Path,
    dst_tls: &Path,
) -> Result<(QemuProcess, QmpClient)> {
    let _ = std::fs::remove_file(dir.join("dst.qcow2"));
    disk::create_qcow2(&dir.join("dst.qcow2"), DISK_MIB)?;
    let cfg = qemu_config(guest, net.hosts[2].name(), dir, "dst", true);
    let (p, c) = spawn_tls_destination(cfg, dst_tls).await?;
    let dst_ul = Internet::host_addr(2);
    storage::export_disk(&c, &dst_ul.to_string(), NBD_PORT, true).await?;
    Ok((p, c))
}

/// A move of vm1 to host2 (copies capped at `bandwidth` bytes/s) aborted at
/// the first progress of `phase`, then `scc migrate --abort`: every switch's
/// tables are `plain` again, the guest runs at host1 with no mirror left, and
/// the client's stream goes on. Returns why the move did not complete.
async fn aborted_move(
    (net, scc_proc, plain): (&Internet, &common::Scc, &Vec<Vec<String>>),
    src_qmp: &QmpClient,
    uri: &str,
    target: &NbdTarget,
    bandwidth: u64,
    phase: Phase,
    stream: &EchoStream,
) -> Result<StorageError> {
    common::start_migration(net, "vm1", "host2", 2)?;
    let mut opts = guest_migration(tls::with_tls(
        MigrationParameters {
            max_bandwidth: Some(bandwidth),
            ..Default::default()
        },
        Some("host2"),
    ));
    opts.timeout = Duration::from_secs(120);
    let abort = opts.abort.clone();
    let mut seen = false;
    let result = storage::migrate_with_disk(src_qmp, uri, target, &opts, &mut |p: &Progress| {
        if p.phase == phase && (p.disk_copied > 0 || phase != Phase::Disk) {
            seen = true;
            abort.store(true, Ordering::Relaxed);
        }
    })
    .await;
    let Err(why) = result else {
        bail!("the move to abort during the {phase:?} copy completed");
    };
    anyhow::ensure!(seen, "the abort came during the {phase:?} copy: {why}");
    let (ok, text) = scc(net, &["migrate", "--abort"])?;
    anyhow::ensure!(ok, "scc migrate --abort: {text}");
    scc_proc.wait_synced(net)?;
    assert_eq!(
        &tables(net)?,
        plain,
        "aborted during the {phase:?} copy: the tables before the migration"
    );
    still_at_source(src_qmp, "host1").await?;
    tokio::task::block_in_place(|| stream.wait_echoed(4096, Duration::from_secs(30)))
        .with_context(|| format!("the stream goes on at host1 after the {phase:?} abort"))?;
    Ok(why)
}

/// Every switch's flows, as `ovs-ofctl` shows them (counters left out).
fn tables(net: &Internet) -> Result<Vec<Vec<String>>> {
    net.hosts
        .iter()
        .map(|h| Ok(flow_specs(&ofctl(h, MANAGEMENT, &["dump-flows", "{}"])?)))
        .collect()
}

/// A guest with `disk`, taking its address by DHCP and writing the block stream.
fn qemu_config(guest: &Guest, netns: &str, dir: &Path, role: &str, nic: bool) -> QemuConfig {
    let mut c = guest_config(guest, TEST, dir, role);
    let ip = if nic { "dhcp" } else { "100.64.7.10/10" };
    // noapic: a TCG guest on a loaded machine can miss the IO-APIC timer check
    // and panic at boot.
    c.append = format!("quiet noapic sc.ip={ip} sc.port={ECHO_PORT} sc.disk=write");
    c.netns = Some(netns.to_owned());
    c.disk = Some(dir.join(format!("{role}.qcow2")));
    if nic {
        c.extra_args = guest_nic_args();
    }
    c
}

fn serial(dir: &Path, role: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{role}.serial"))).unwrap_or_default()
}

/// Waits until the guest's serial log of `role` reports at least `blocks`.
async fn wait_blocks(dir: &Path, role: &str, blocks: u64, within: Duration) -> Result<u64> {
    let end = Instant::now() + within;
    loop {
        let n = blocks_reported(&serial(dir, role)).unwrap_or(0);
        if n >= blocks {
            return Ok(n);
        }
        if Instant::now() > end {
            bail!(
                "{role} wrote {n} blocks, not {blocks}, in {within:?}\n{}",
                qemu_logs(dir)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Stops the guest (no write after), quits QEMU and checks its disk.
async fn stop_and_check(p: &mut QemuProcess, c: &QmpClient, dir: &Path, role: &str) -> Result<u64> {
    c.execute(&Stop).await?;
    quit(p, c).await;
    disk::check_stream(&dir.join(format!("{role}.qcow2")), PREFILL_MIB)
}

fn disks(dir: &Path) -> Result<()> {
    let src = dir.join("src.qcow2");
    disk::create_qcow2(&src, DISK_MIB)?;
    disk::prefill(&src, PREFILL_MIB)?;
    disk::create_qcow2(&dir.join("dst.qcow2"), DISK_MIB)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_moves_with_its_disk_between_scd_hosts_keeping_its_tcp_connection() -> Result<()> {
    let Some(guest) = netns_tests::require_qemu_guest(TEST) else {
        return Ok(());
    };
    if !require_program(TEST, "ovs-ofctl") {
        return Ok(());
    }
    let t0 = Instant::now();
    let dir = tempfile::Builder::new().prefix(TEST).tempdir()?;
    disks(dir.path())?;
    let net = Internet::with_hosts("qdisk", &[None; 3])?;
    let keys = common::key_pairs(3)?;
    let (src_tls, dst_tls) = migration_tls(dir.path(), 3)?;
    qemu_taps(&net, QEMU_MTU)?;
    // The overlay first, so that the guest's DHCP finds host1's scd serving.
    let client = VmSpec::new("a1", 0, 1, CLIENT_IP, CLIENT_MAC);
    let a1 = client.create(TEST)?;
    let mut inventory = format!(
        "dns = [\"192.0.2.53\"]\n{}",
        common::inventory(&keys, &[client.entry(&a1)])
    );
    inventory += &guest_inventory_entry();
    let inventory_path = dir.path().join("inventory.toml");
    std::fs::write(&inventory_path, inventory)?;
    let scc_proc = start_scc(&net, dir.path(), true)?;
    let scds = start_qemu_switches(&net, &inventory_path, &keys, |config| {
        common::with_openflow_listener(&config, "ptcp:6654:127.0.0.1")
    })?;
    scc_proc.wait_synced(&net)?;

    let src_cfg = qemu_config(&guest, net.hosts[1].name(), dir.path(), "src", true);
    let (mut src, src_qmp) = spawn_tls_source(src_cfg, &src_tls).await?;
    let dst_ul = Internet::host_addr(2);
    let (mut dst, mut dst_qmp) = tls_destination(&guest, &net, dir.path(), &dst_tls).await?;

    if let Err(e) = src.wait_for_serial(READY, Duration::from_secs(120)).await {
        bail!("guest did not boot: {e}\n{}", qemu_logs(dir.path()));
    }
    let ready_line = serial(dir.path(), "src")
        .lines()
        .find(|l| l.contains(READY))
        .unwrap_or_default()
        .to_owned();
    assert!(
        ready_line.contains(&format!("ip={GUEST_IP}/10")) && ready_line.contains("via=dhcp"),
        "the guest's address came from scd's DHCP: {ready_line}\n{}",
        qemu_logs(dir.path())
    );

    let to = SocketAddr::new(GUEST_IP.parse()?, ECHO_PORT);
    let conn =
        connect_from(&a1, to, Duration::from_secs(30)).with_context(|| qemu_logs(dir.path()))?;
    let stream = EchoStream::start(conn)?;
    tokio::task::block_in_place(|| stream.wait_echoed(4096, Duration::from_secs(30)))
        .context("echo before the migration")?;
    let before = wait_blocks(dir.path(), "src", 32, Duration::from_secs(60)).await?;
    let target = NbdTarget {
        host: dst_ul.to_string(),
        port: NBD_PORT,
        tls_hostname: Some("host2".into()),
    };
    let uri = format!("tcp:{dst_ul}:{MIGRATION_PORT}");

    // A first move aborted during the disk copy (capped at 4 MiB/s): the guest
    // runs on at host1, its stream too, and `scc migrate --abort` puts every
    // table back as it was.
    let plain = tables(&net)?;
    let cluster = (&net, &scc_proc, &plain);
    let aborted = aborted_move(
        cluster,
        &src_qmp,
        &uri,
        &target,
        4 << 20,
        Phase::Disk,
        &stream,
    )
    .await?;
    anyhow::ensure!(
        matches!(&aborted, StorageError::Disk { why, .. } if why == "aborted"),
        "an abort during the disk copy: {aborted:?}"
    );
    // The destination waits on: a fresh export for the next move.
    storage::unexport_disk(&dst_qmp).await?;
    storage::export_disk(&dst_qmp, &dst_ul.to_string(), NBD_PORT, true).await?;

    // A second move aborted during the memory copy: the same checks.
    let aborted = aborted_move(
        cluster,
        &src_qmp,
        &uri,
        &target,
        16 << 20,
        Phase::Memory,
        &stream,
    )
    .await?;
    anyhow::ensure!(
        matches!(&aborted, StorageError::Memory(MigrationError::Aborted { report })
                if report.source_running == Some(true)),
        "an abort during the memory copy: {aborted:?}"
    );
    // Its incoming stream broke off, so the destination may be gone: a new one.
    let _ = storage::unexport_disk(&dst_qmp).await;
    quit(&mut dst, &dst_qmp).await;
    (dst, dst_qmp) = tls_destination(&guest, &net, dir.path(), &dst_tls).await?;

    common::start_migration(&net, "vm1", "host2", 2)?;
    let net = Arc::new(net);
    let watch_net = net.clone();
    let rerouted = tokio::task::spawn_blocking(move || {
        wait_event(
            &watch_net,
            "rerouted",
            Duration::from_secs(120),
            &AtomicBool::new(false),
        )
    });
    let mut opts = guest_migration(MigrationParameters {
        downtime_limit: Some(100),
        ..Default::default()
    });
    opts.timeout = Duration::from_secs(120);
    opts.parameters = tls::with_tls(opts.parameters, Some("host2"));
    let (report, phases) = completed_move(&src_qmp, &uri, &target, &opts, dir.path()).await?;
    storage::unexport_disk(&dst_qmp).await?;
    rerouted.await??;

    // Writes go on at the destination, on its copy of the disk.
    let after = wait_blocks(dir.path(), "dst", 32, Duration::from_secs(60)).await?;
    let flowing =
        tokio::task::block_in_place(|| stream.wait_echoed(38_400, Duration::from_secs(60)));
    if let Err(e) = flowing {
        eprintln!("{e:#}");
    }
    let (written, stats, wres) = stream.finish();
    let dst_running = dst_qmp.execute(&QueryStatus).await?.running;
    let blocks = stop_and_check(&mut dst, &dst_qmp, dir.path(), "dst")
        .await
        .with_context(|| qemu_logs(dir.path()))?;
    quit(&mut src, &src_qmp).await;
    let m = &report.migration;
    eprintln!(
        "\n=== QEMU guest (TCG, 128 MiB RAM, {DISK_MIB} MiB qcow2 with {PREFILL_MIB} MiB of data) moves host1 -> host2 with its disk, NBD and migration over TLS ===\n\
         {}\n\
         disk copy          : {} bytes in {:?} (mirror ready)\n\
         QEMU total time    : {} ms (memory), whole move {:?}\n\
         QEMU downtime      : {} ms\n\
         blocks written     : {before}+ before the move, {after}+ reported at the destination, {blocks} on the destination's disk\n\
         TCP stream gap     : {:?}; {} of {} bytes echoed, first corrupt {:?}\n\
         phases             : {phases:?}\n\
         whole test         : {:?}\n",
        m.summary(),
        report.disk_bytes,
        report.disk_copy_time,
        m.total_time_ms.unwrap_or(-1),
        report.total_time,
        m.downtime_ms.unwrap_or(-1),
        stats.max_gap,
        stats.received,
        written,
        stats.corrupt_at,
        t0.elapsed(),
    );
    assert_eq!(phases, [Phase::Disk, Phase::Memory]);
    assert!(dst_running, "the guest runs at host2");
    assert!(
        after > before,
        "the guest went on writing at the destination"
    );
    assert!(
        blocks >= before,
        "every block written before the move is on the destination's disk"
    );
    assert_stream_survived(written, &stats, &wres, &qemu_logs(dir.path()));
    drop(scds);
    Ok(())
}

/// Starts a destination with an empty disk, listening for memory on
/// 127.0.0.1:`MIGRATION_PORT` and exporting its disk on `NBD_PORT`.
async fn destination(guest: &Guest, ns: &Netns, dir: &Path) -> Result<(QemuProcess, QmpClient)> {
    let _ = std::fs::remove_file(dir.join("dst.qcow2"));
    disk::create_qcow2(&dir.join("dst.qcow2"), DISK_MIB)?;
    let mut cfg = qemu_config(guest, ns.name(), dir, "dst", false);
    cfg.incoming = Some(Incoming::Tcp(format!("127.0.0.1:{MIGRATION_PORT}")));
    let mut p = QemuProcess::spawn(cfg)?;
    let c = p.connect_qmp(QMP_TIMEOUT).await?;
    storage::export_disk(&c, "127.0.0.1", NBD_PORT, false).await?;
    Ok((p, c))
}

/// A move with the disk that must complete: its report and the copy phases it
/// went through, in order.
async fn completed_move(
    src_qmp: &QmpClient,
    uri: &str,
    target: &NbdTarget,
    opts: &MigrationOptions,
    dir: &Path,
) -> Result<(storage::StorageReport, Vec<Phase>)> {
    let mut phases = Vec::new();
    let report = storage::migrate_with_disk(src_qmp, uri, target, opts, &mut |p: &Progress| {
        if phases.last() != Some(&p.phase) {
            phases.push(p.phase);
        }
    })
    .await
    .with_context(|| qemu_logs(dir))?;
    Ok((report, phases))
}

/// A source guest with its disk in a namespace of its own (`prefix`…, with
/// loopback only), booted and writing its stream: its temp dir, namespace,
/// QEMU, QMP and the blocks written so far (at least 32).
async fn booted_source(
    guest: &Guest,
    prefix: &str,
) -> Result<(tempfile::TempDir, Netns, QemuProcess, QmpClient, u64)> {
    let dir = tempfile::Builder::new().prefix(TEST).tempdir()?;
    disks(dir.path())?;
    let ns = Netns::new(&netns_tests::unique(prefix))?;
    ns.ip(&["link", "set", "lo", "up"])?;
    let mut src = QemuProcess::spawn(qemu_config(guest, ns.name(), dir.path(), "src", false))?;
    let src_qmp = src.connect_qmp(QMP_TIMEOUT).await?;
    if let Err(e) = src.wait_for_serial(READY, Duration::from_secs(120)).await {
        bail!("guest did not boot: {e}\n{}", qemu_logs(dir.path()));
    }
    let blocks = wait_blocks(dir.path(), "src", 32, Duration::from_secs(60)).await?;
    Ok((dir, ns, src, src_qmp, blocks))
}

/// After an abort: the guest still runs at `where_` and no mirror job is left
/// there.
async fn still_at_source(src_qmp: &QmpClient, where_: &str) -> Result<()> {
    assert!(
        src_qmp.execute(&QueryStatus).await?.running,
        "the guest runs at {where_}"
    );
    assert!(
        src_qmp.execute(&QueryBlockJobs).await?.is_empty(),
        "no mirror left at {where_}"
    );
    Ok(())
}

/// The source after an abort: it runs, its mirror is gone, and its guest goes on
/// writing its stream.
async fn source_runs_on(src_qmp: &QmpClient, dir: &Path) -> Result<()> {
    still_at_source(src_qmp, "the source").await?;
    let now = blocks_reported(&serial(dir, "src")).unwrap_or(0);
    wait_blocks(dir, "src", now + 32, Duration::from_secs(60)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_migration_leaves_the_guest_running_at_its_source_with_its_disk() -> Result<()> {
    let Some(guest) = netns_tests::require_qemu_guest(TEST) else {
        return Ok(());
    };
    let (dir, ns, mut src, src_qmp, _) = booted_source(&guest, "qdiskab").await?;
    let target = NbdTarget {
        host: "127.0.0.1".into(),
        port: NBD_PORT,
        tls_hostname: None,
    };
    let uri = format!("tcp:127.0.0.1:{MIGRATION_PORT}");

    // 1. During the disk copy: 4 MiB/s makes the copy of the pre-filled 32 MiB last.
    let (mut dst, dst_qmp) = destination(&guest, &ns, dir.path()).await?;
    let opts: MigrationOptions = guest_migration(MigrationParameters {
        max_bandwidth: Some(4 << 20),
        ..Default::default()
    });
    let abort = opts.abort.clone();
    let mut seen = None;
    let result = storage::migrate_with_disk(&src_qmp, &uri, &target, &opts, &mut |p: &Progress| {
        if p.phase == Phase::Disk && p.disk_copied > 0 {
            seen.get_or_insert(p.disk_copied);
            abort.store(true, Ordering::Relaxed);
        }
    })
    .await;
    match result {
        Err(StorageError::Disk { why, .. }) => assert_eq!(why, "aborted"),
        other => bail!("expected an abort during the disk copy, got {other:?}"),
    }
    assert!(seen.is_some(), "the abort came while the disk was copied");
    storage::unexport_disk(&dst_qmp).await?;
    quit(&mut dst, &dst_qmp).await;
    source_runs_on(&src_qmp, dir.path()).await?;

    // 2. During the memory copy: abort at the first figures of the memory phase.
    let (mut dst, dst_qmp) = destination(&guest, &ns, dir.path()).await?;
    let opts: MigrationOptions = guest_migration(MigrationParameters {
        max_bandwidth: Some(16 << 20),
        ..Default::default()
    });
    let abort = opts.abort.clone();
    let mut in_memory = false;
    let result = storage::migrate_with_disk(&src_qmp, &uri, &target, &opts, &mut |p: &Progress| {
        if p.phase == Phase::Memory {
            in_memory = true;
            abort.store(true, Ordering::Relaxed);
        }
    })
    .await;
    match result {
        Err(StorageError::Memory(MigrationError::Aborted { report })) => {
            assert_eq!(report.source_running, Some(true), "{}", report.summary());
        }
        other => bail!("expected an abort during the memory copy, got {other:?}"),
    }
    assert!(in_memory, "the abort came while memory was copied");
    // The destination may have exited already: its incoming stream broke off.
    let _ = storage::unexport_disk(&dst_qmp).await;
    quit(&mut dst, &dst_qmp).await;
    source_runs_on(&src_qmp, dir.path()).await?;

    let blocks = stop_and_check(&mut src, &src_qmp, dir.path(), "src").await?;
    eprintln!("{TEST}: after two aborts the source disk holds the pre-filled region and {blocks} blocks of the stream, nothing else");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_moves_with_its_disk_by_post_copy() -> Result<()> {
    let Some(guest) = netns_tests::require_qemu_guest(TEST) else {
        return Ok(());
    };
    let (dir, ns, mut src, src_qmp, before) = booted_source(&guest, "qdiskpc").await?;
    let (mut dst, dst_qmp) = destination(&guest, &ns, dir.path()).await?;
    // Both ends accept post-copy (`scvm incoming --postcopy`).
    dst_qmp
        .execute(&MigrateSetCapabilities {
            capabilities: vec![CapabilityState {
                capability: "postcopy-ram".into(),
                state: true,
            }],
        })
        .await?;
    let target = NbdTarget {
        host: "127.0.0.1".into(),
        port: NBD_PORT,
        tls_hostname: None,
    };
    let uri = format!("tcp:127.0.0.1:{MIGRATION_PORT}");
    // A pre-copy that cannot converge (1 ms of downtime at 16 MiB/s), so that
    // post-copy, not a second pass, completes it.
    let mut opts = guest_migration(MigrationParameters {
        downtime_limit: Some(1),
        max_bandwidth: Some(16 << 20),
        ..Default::default()
    });
    opts.postcopy = true;
    opts.timeout = Duration::from_secs(120);
    let (report, phases) = completed_move(&src_qmp, &uri, &target, &opts, dir.path()).await?;
    let _ = storage::unexport_disk(&dst_qmp).await;
    let m = &report.migration;
    let after = wait_blocks(dir.path(), "dst", 32, Duration::from_secs(60)).await?;
    let dst_running = dst_qmp.execute(&QueryStatus).await?.running;
    let blocks = stop_and_check(&mut dst, &dst_qmp, dir.path(), "dst")
        .await
        .with_context(|| qemu_logs(dir.path()))?;
    quit(&mut src, &src_qmp).await;
    eprintln!(
        "\n=== post-copy with a {DISK_MIB} MiB disk ===\n{}\nphases: {phases:?}\nevents: {:?}\n\
         blocks: {before}+ before, {after}+ at the destination, {blocks} on its disk\n",
        m.summary(),
        m.timeline,
    );
    // The guest stopped only after post-copy was started: with 1 ms of allowed
    // downtime the pre-copy could not have switched over by itself. (The
    // progress reports are samples every 500 ms, so a post-copy phase shorter
    // than that may not show among `phases`; QEMU's events always do.)
    // The switch-over shows as the STOP event or the pre-switchover state, by
    // event or by poll, whichever the glue saw first.
    let started = m
        .timeline
        .iter()
        .position(|e| e.what == "migrate-start-postcopy");
    let stopped = m
        .timeline
        .iter()
        .position(|e| e.what == "event STOP" || e.what.ends_with("pre-switchover"));
    assert!(
        matches!((started, stopped), (Some(p), Some(s)) if p < s),
        "post-copy started, then the guest stopped for the switch-over: {:?}",
        m.timeline
    );
    assert!(
        phases.first() == Some(&Phase::Disk) && phases.contains(&Phase::Memory),
        "disk, then memory (then post-copy): {phases:?}"
    );
    assert!(dst_running, "the guest runs at the destination");
    assert!(after > before, "it goes on writing there");
    assert!(
        blocks >= before,
        "every block written before the move is on the destination's disk"
    );
    Ok(())
}
