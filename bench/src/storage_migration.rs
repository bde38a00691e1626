//! `bench storage-migration`: a TCG guest moved with its disk against disk size
//! (256 MiB and 1 GiB of data, 4 GiB sparse with 32 MiB of data), next to a
//! memory-only migration of the same guest, in the same run. The guest writes
//! its known block stream all along (the disk's dirty rate). Reported per case:
//! the disk copy (bytes and time until the mirror is ready), QEMU's own total
//! time and downtime of the memory migration, and the wall time of the whole
//! move, each as median [min-max] over `--repeats` runs, next to the dirty rates
//! of the run: QEMU's peak dirty rate of guest RAM during the move and the
//! guest's disk writes per second. Both streams over TLS with a CA of the harness's PKI
//! (`netns_tests::qemu_cloud::migration_tls`), on loopback in the benchmark's
//! own namespace.

use anyhow::{bail, Context, Result};
use hypervisor_glue::commands::Quit;
use hypervisor_glue::storage::{self, NbdTarget};
use hypervisor_glue::tls::{self, Endpoint};
use hypervisor_glue::{migration, Incoming, MigrationParameters, QemuConfig, QemuProcess};
use netns_tests::disk::{self, blocks_reported};
use netns_tests::{guest_migration, unique, Guest, Netns};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MIGRATION_PORT: u16 = 4444;
const NBD_PORT: u16 = 10809;

/// One case: a disk of `size_mib` with `data_mib` written before the guest
/// starts, or no disk; the guest rewrites `dirty_mib` of its RAM every second.
struct Case {
    name: &'static str,
    disk: Option<(u64, u64)>,
    dirty_mib: u64,
}

const CASES: [Case; 6] = [
    Case {
        name: "memory only",
        disk: None,
        dirty_mib: 0,
    },
    Case {
        name: "256 MiB disk",
        disk: Some((256, 256)),
        dirty_mib: 0,
    },
    Case {
        name: "1 GiB disk",
        disk: Some((1024, 1024)),
        dirty_mib: 0,
    },
    Case {
        name: "4 GiB sparse (32 MiB data)",
        disk: Some((4096, 32)),
        dirty_mib: 0,
    },
    Case {
        name: "256 MiB disk, RAM dirtied 8 MiB/s",
        disk: Some((256, 256)),
        dirty_mib: 8,
    },
    Case {
        name: "256 MiB disk, RAM dirtied 24 MiB/s",
        disk: Some((256, 256)),
        dirty_mib: 24,
    },
];

struct Measured {
    /// QEMU's highest dirty rate of guest RAM seen during the move, bytes/s.
    peak_dirty_rate: u64,
    /// Guest disk blocks (4 KiB) written during the move.
    blocks_during: u64,
    disk_bytes: Option<u64>,
    disk_copy: Option<Duration>,
    qemu_total_ms: Option<i64>,
    qemu_downtime_ms: Option<i64>,
    ram_bytes: Option<u64>,
    wall: Duration,
    blocks_written: u64,
}

/// `disk`: the size of the guest's disk in MiB, if it has one; `dirty`: MiB of
/// RAM the guest rewrites every second.
fn config(
    guest: &Guest,
    ns: &Netns,
    dir: &Path,
    role: &str,
    disk: Option<u64>,
    dirty: u64,
) -> QemuConfig {
    let mut c = netns_tests::qemu_cloud::guest_config(guest, "bench-storage", dir, role);
    // The stream starts half-way into the disk (4 KiB blocks: 256 per MiB).
    let writer = disk.map_or(String::new(), |mib| {
        format!(" sc.disk=write sc.disk.base={}", mib * 128)
    });
    // noapic: a TCG guest on a loaded machine can miss the IO-APIC timer check
    // and panic at boot.
    c.append = format!("quiet noapic sc.ip=100.64.7.10/10{writer} sc.dirty={dirty}");
    c.netns = Some(ns.name().to_owned());
    if disk.is_some() {
        c.disk = Some(dir.join(format!("{role}.qcow2")));
    }
    c
}

async fn measure(
    guest: &Guest,
    ns: &Netns,
    dir: &Path,
    creds: &(PathBuf, PathBuf),
    case: &Case,
) -> Result<Measured> {
    let has_disk = case.disk.is_some();
    for role in ["src", "dst"] {
        let _ = std::fs::remove_file(dir.join(format!("{role}.qcow2")));
        let _ = std::fs::remove_file(dir.join(format!("{role}.serial")));
    }
    if let Some((size, data)) = case.disk {
        disk::create_qcow2(&dir.join("src.qcow2"), size)?;
        disk::prefill(&dir.join("src.qcow2"), data)?;
        disk::create_qcow2(&dir.join("dst.qcow2"), size)?;
    }
    let size = case.disk.map(|(size, _)| size);
    let mut src_cfg = config(guest, ns, dir, "src", size, case.dirty_mib);
    src_cfg
        .extra_args
        .extend(tls::object_args(&creds.0, Endpoint::Client));
    let mut src = QemuProcess::spawn(src_cfg)?;
    let src_qmp = src.connect_qmp(Duration::from_secs(10)).await?;
    src.wait_for_serial("SC-GUEST-READY", Duration::from_secs(180))
        .await
        .context("the guest did not boot")?;
    let serial = || std::fs::read_to_string(dir.join("src.serial")).unwrap_or_default();
    if has_disk {
        let end = Instant::now() + Duration::from_secs(120);
        while blocks_reported(&serial()).unwrap_or(0) < 32 {
            if Instant::now() > end {
                bail!("the guest's block stream did not start");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let mut dst_cfg = config(guest, ns, dir, "dst", size, case.dirty_mib);
    dst_cfg.incoming = Some(Incoming::Tcp(format!("127.0.0.1:{MIGRATION_PORT}")));
    dst_cfg
        .extra_args
        .extend(tls::object_args(&creds.1, Endpoint::Server));
    let mut dst = QemuProcess::spawn(dst_cfg)?;
    let dst_qmp = dst.connect_qmp(Duration::from_secs(10)).await?;
    dst_qmp
        .execute(&tls::with_tls(MigrationParameters::default(), None))
        .await?;
    let mut opts = guest_migration(MigrationParameters {
        downtime_limit: Some(100),
        ..Default::default()
    });
    // A guest dirtying memory faster than the link copies it would never
    // converge: such a case fails after 2 minutes instead.
    opts.timeout = Duration::from_secs(120);
    opts.parameters = tls::with_tls(opts.parameters, Some("host2"));
    let uri = format!("tcp:127.0.0.1:{MIGRATION_PORT}");
    let blocks_before = blocks_reported(&serial()).unwrap_or(0);
    let mut peak_dirty_rate = 0;
    let started = Instant::now();
    let mut measured = if has_disk {
        storage::export_disk(&dst_qmp, "127.0.0.1", NBD_PORT, true).await?;
        let target = NbdTarget {
            host: "127.0.0.1".into(),
            port: NBD_PORT,
            tls_hostname: Some("host2".into()),
        };
        let r = storage::migrate_with_disk(&src_qmp, &uri, &target, &opts, &mut |p| {
            peak_dirty_rate = peak_dirty_rate.max(p.dirty_bytes_rate);
        })
        .await?;
        let _ = storage::unexport_disk(&dst_qmp).await;
        Measured {
            peak_dirty_rate: 0,
            blocks_during: 0,
            disk_bytes: Some(r.disk_bytes),
            disk_copy: Some(r.disk_copy_time),
            qemu_total_ms: r.migration.total_time_ms,
            qemu_downtime_ms: r.migration.downtime_ms,
            ram_bytes: r.migration.transferred_bytes,
            wall: started.elapsed(),
            blocks_written: blocks_reported(&serial()).unwrap_or(0),
        }
    } else {
        let r = migration::migrate_observed(&src_qmp, &uri, &opts, &mut |info| {
            let p = storage::Progress::of_memory(info, Duration::ZERO);
            peak_dirty_rate = peak_dirty_rate.max(p.dirty_bytes_rate);
        })
        .await?;
        Measured {
            peak_dirty_rate: 0,
            blocks_during: 0,
            disk_bytes: None,
            disk_copy: None,
            qemu_total_ms: r.total_time_ms,
            qemu_downtime_ms: r.downtime_ms,
            ram_bytes: r.transferred_bytes,
            wall: started.elapsed(),
            blocks_written: 0,
        }
    };
    measured.peak_dirty_rate = peak_dirty_rate;
    measured.blocks_during = measured.blocks_written.saturating_sub(blocks_before);
    for (p, c) in [(&mut dst, &dst_qmp), (&mut src, &src_qmp)] {
        let _ = c.execute(&Quit).await;
        let _ = p.terminate(Duration::from_secs(5)).await;
    }
    Ok(measured)
}

/// Median [min-max] of `values`, with `show` for each; "-" when none.
fn spread<T: Copy + PartialOrd>(mut values: Vec<T>, show: impl Fn(T) -> String) -> String {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    match (values.first(), values.get(values.len() / 2), values.last()) {
        (Some(&lo), Some(&mid), Some(&hi)) if values.len() > 1 => {
            format!("{} [{}-{}]", show(mid), show(lo), show(hi))
        }
        (Some(&one), ..) => show(one),
        _ => "-".into(),
    }
}

/// Runs every case `repeats` times, the cases interleaved (a slow moment of
/// the shared machine hits every case alike), and prints the table.
pub fn storage_migration(repeats: usize) -> Result<()> {
    let Some(guest) = netns_tests::require_qemu_guest("bench storage-migration") else {
        bail!("QEMU or the guest is missing (scripts/install-qemu.sh, scripts/build-guest.sh)");
    };
    let dir = tempfile::Builder::new().prefix("bench-storage").tempdir()?;
    let ns = Netns::new(&unique("bstor"))?;
    ns.ip(&["link", "set", "lo", "up"])?;
    let creds = netns_tests::qemu_cloud::migration_tls(dir.path(), 3)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut runs: Vec<Vec<Measured>> = CASES.iter().map(|_| Vec::new()).collect();
    let mut failures = Vec::new();
    for round in 0..repeats.max(1) {
        for (case, into) in CASES.iter().zip(&mut runs) {
            match runtime.block_on(measure(&guest, &ns, dir.path(), &creds, case)) {
                Ok(m) => {
                    eprintln!(
                        "bench storage-migration: {} run {}: whole {:.2} s, downtime {:?} ms",
                        case.name,
                        round + 1,
                        m.wall.as_secs_f64(),
                        m.qemu_downtime_ms
                    );
                    into.push(m);
                }
                Err(e) => failures.push(format!("{} (run {}): {e:#}", case.name, round + 1)),
            }
        }
    }
    println!("\n## Storage migration (issue 18)\n");
    println!("median [min-max] over {repeats} runs\n");
    println!("| case | runs | disk copied | disk copy s | QEMU total ms (memory) | QEMU downtime ms | whole move s | RAM sent MiB | peak RAM dirty rate MiB/s | disk writes/s (4 KiB) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
    for (case, ms) in CASES.iter().zip(&runs) {
        let pick = |f: &dyn Fn(&Measured) -> Option<f64>| -> Vec<f64> {
            ms.iter().filter_map(f).collect()
        };
        let secs = |v: f64| format!("{v:.2}");
        let whole = |v: f64| format!("{v:.0}");
        let tenth = |v: f64| format!("{v:.1}");
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            case.name,
            ms.len(),
            ms.first()
                .and_then(|m| m.disk_bytes)
                .map_or("-".into(), |b| format!("{} MiB", b >> 20)),
            spread(pick(&|m| m.disk_copy.map(|d| d.as_secs_f64())), secs),
            spread(pick(&|m| m.qemu_total_ms.map(|v| v as f64)), whole),
            spread(pick(&|m| m.qemu_downtime_ms.map(|v| v as f64)), whole),
            spread(pick(&|m| Some(m.wall.as_secs_f64())), secs),
            spread(pick(&|m| m.ram_bytes.map(mib)), tenth),
            spread(pick(&|m| Some(mib(m.peak_dirty_rate))), tenth),
            spread(
                pick(&|m| Some(m.blocks_during as f64 / m.wall.as_secs_f64().max(1e-3))),
                whole
            ),
        );
    }
    for f in &failures {
        println!("\nfailed: {f}");
    }
    Ok(())
}
