//! `bench storage-migration`: a TCG guest moved with its disk against disk size
//! (256 MiB and 1 GiB of data, 4 GiB sparse with 32 MiB of data), next to a
//! memory-only migration of the same guest, in the same run. The guest writes
//! its known block stream all along (the disk's dirty rate). Reported per case:
//! the disk copy (bytes and time until the mirror is ready), QEMU's own total
//! time and downtime of the memory migration, and the wall time of the whole
//! move. Both streams over TLS with a CA of the harness's PKI
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
/// starts, or no disk.
struct Case {
    name: &'static str,
    disk: Option<(u64, u64)>,
}

const CASES: [Case; 4] = [
    Case {
        name: "memory only",
        disk: None,
    },
    Case {
        name: "256 MiB disk",
        disk: Some((256, 256)),
    },
    Case {
        name: "1 GiB disk",
        disk: Some((1024, 1024)),
    },
    Case {
        name: "4 GiB sparse (32 MiB data)",
        disk: Some((4096, 32)),
    },
];

struct Measured {
    disk_bytes: Option<u64>,
    disk_copy: Option<Duration>,
    qemu_total_ms: Option<i64>,
    qemu_downtime_ms: Option<i64>,
    ram_bytes: Option<u64>,
    wall: Duration,
    blocks_written: u64,
}

/// `disk`: the size of the guest's disk in MiB, if it has one.
fn config(guest: &Guest, ns: &Netns, dir: &Path, role: &str, disk: Option<u64>) -> QemuConfig {
    let mut c = netns_tests::qemu_cloud::guest_config(guest, "bench-storage", dir, role);
    // The stream starts half-way into the disk (4 KiB blocks: 256 per MiB).
    let writer = disk.map_or(String::new(), |mib| {
        format!(" sc.disk=write sc.disk.base={}", mib * 128)
    });
    // noapic: a TCG guest on a loaded machine can miss the IO-APIC timer check
    // and panic at boot.
    c.append = format!("quiet noapic sc.ip=100.64.7.10/10{writer}");
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
    let mut src_cfg = config(guest, ns, dir, "src", size);
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
    let mut dst_cfg = config(guest, ns, dir, "dst", size);
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
    opts.timeout = Duration::from_secs(600);
    opts.parameters = tls::with_tls(opts.parameters, Some("host2"));
    let uri = format!("tcp:127.0.0.1:{MIGRATION_PORT}");
    let started = Instant::now();
    let measured = if has_disk {
        storage::export_disk(&dst_qmp, "127.0.0.1", NBD_PORT, true).await?;
        let target = NbdTarget {
            host: "127.0.0.1".into(),
            port: NBD_PORT,
            tls_hostname: Some("host2".into()),
        };
        let r = storage::migrate_with_disk(&src_qmp, &uri, &target, &opts, &mut |_| {}).await?;
        let _ = storage::unexport_disk(&dst_qmp).await;
        Measured {
            disk_bytes: Some(r.disk_bytes),
            disk_copy: Some(r.disk_copy_time),
            qemu_total_ms: r.migration.total_time_ms,
            qemu_downtime_ms: r.migration.downtime_ms,
            ram_bytes: r.migration.transferred_bytes,
            wall: started.elapsed(),
            blocks_written: blocks_reported(&serial()).unwrap_or(0),
        }
    } else {
        let r = migration::migrate(&src_qmp, &uri, &opts).await?;
        Measured {
            disk_bytes: None,
            disk_copy: None,
            qemu_total_ms: r.total_time_ms,
            qemu_downtime_ms: r.downtime_ms,
            ram_bytes: r.transferred_bytes,
            wall: started.elapsed(),
            blocks_written: 0,
        }
    };
    for (p, c) in [(&mut dst, &dst_qmp), (&mut src, &src_qmp)] {
        let _ = c.execute(&Quit).await;
        let _ = p.terminate(Duration::from_secs(5)).await;
    }
    Ok(measured)
}

/// Runs every case once, in order, and prints the table.
pub fn storage_migration() -> Result<()> {
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
    println!("\n## Storage migration (issue 18)\n");
    println!("| case | disk copied | disk copy s | QEMU total ms (memory) | QEMU downtime ms | RAM sent MiB | whole move s | guest blocks written |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for case in &CASES {
        let m = runtime.block_on(measure(&guest, &ns, dir.path(), &creds, case));
        match m {
            Ok(m) => println!(
                "| {} | {} | {} | {} | {} | {:.1} | {:.2} | {} |",
                case.name,
                m.disk_bytes
                    .map_or("-".into(), |b| format!("{} MiB", b >> 20)),
                m.disk_copy
                    .map_or("-".into(), |d| format!("{:.2}", d.as_secs_f64())),
                m.qemu_total_ms.map_or("-".into(), |v| v.to_string()),
                m.qemu_downtime_ms.map_or("-".into(), |v| v.to_string()),
                m.ram_bytes.unwrap_or(0) as f64 / f64::from(1u32 << 20),
                m.wall.as_secs_f64(),
                m.blocks_written,
            ),
            Err(e) => println!("| {} | failed: {e:#} | | | | | | |", case.name),
        }
    }
    Ok(())
}
