//! Storage migration: a VM's local disk moves with it. The destination QEMU
//! starts with an empty qcow2 of the same size and exports it over NBD; the
//! source mirrors its disk into that export (`blockdev-mirror`, sync `full`,
//! copy mode `write-blocking`: every guest write during the copy goes to both
//! sides before it completes, so the copy converges and loses nothing), then
//! migrates memory; the mirror is completed without pivot while the guest is
//! stopped before the switchover ([`crate::migration`]'s `switchover_jobs`),
//! so the destination resumes on a disk equal to the source's. Both streams use
//! the same TLS credentials object ([`crate::tls::CREDS_ID`]) when asked.
//!
//! Any failure or abort before the switchover cancels the mirror, removes its
//! target on the source and the export on the destination: the VM keeps
//! running at its source on its own disk, which the mirror never changes. This
//! module never starts or stops QEMU and never touches the network.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::commands::{
    BlockJobCancel, BlockJobInfo, MigrationInfo, MigrationStatus, QueryBlockJobs, Raw,
};
use crate::migration::{self, MigrationError, MigrationOptions, MigrationReport};
use crate::qmp::{QmpClient, QmpError};

/// The node name of a VM's disk (the `-blockdev` [`crate::QemuConfig::disk`]
/// makes), on both ends.
pub const DISK_NODE: &str = "sc-disk0";
/// The NBD export name of the destination's disk.
pub const EXPORT_NAME: &str = "sc-disk0";
/// The id of the destination's block export.
const EXPORT_ID: &str = "sc-disk0-export";
/// The source's node for the NBD connection to the destination's export.
pub const MIRROR_TARGET_NODE: &str = "sc-mirror-target";
/// The id of the source's mirror job.
pub const MIRROR_JOB: &str = "sc-mirror";

/// Where the destination exports its disk, as the source reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NbdTarget {
    /// The destination's address.
    pub host: String,
    /// The NBD port.
    pub port: u16,
    /// Over TLS with [`crate::tls::CREDS_ID`]: the name the destination's
    /// certificate must carry. `None`: plain NBD.
    pub tls_hostname: Option<String>,
}

/// On the destination (started with `-incoming`): serve its empty disk over
/// NBD on `listen_host:port`, writable, over TLS (the credentials object
/// [`crate::tls::CREDS_ID`], which demands the source's certificate) when `tls`.
pub async fn export_disk(
    destination: &QmpClient,
    listen_host: &str,
    port: u16,
    tls: bool,
) -> Result<(), QmpError> {
    let mut server = json!({
        // nbd-server-start takes the legacy form of a socket address.
        "addr": {"type": "inet", "data": {"host": listen_host, "port": port.to_string()}},
    });
    if tls {
        server["tls-creds"] = json!(crate::tls::CREDS_ID);
    }
    destination
        .execute(&Raw::with_args("nbd-server-start", server))
        .await?;
    let export = json!({
        "type": "nbd",
        "id": EXPORT_ID,
        "node-name": DISK_NODE,
        "name": EXPORT_NAME,
        // Not `allow-inactive`: the export must activate the disk of the
        // incoming migration, or every write of the mirror is refused (EPERM).
        "writable": true,
    });
    if let Err(e) = destination
        .execute(&Raw::with_args("block-export-add", export))
        .await
    {
        let _ = destination.execute(&Raw::new("nbd-server-stop")).await;
        return Err(e);
    }
    Ok(())
}

/// On the destination: stop serving the disk (after the switchover, or to
/// clean up an aborted migration). Errors of an export already gone are
/// ignored; a server that cannot be stopped is reported.
pub async fn unexport_disk(destination: &QmpClient) -> Result<(), QmpError> {
    let _ = destination
        .execute(&Raw::with_args(
            "block-export-del",
            json!({"id": EXPORT_ID, "mode": "hard"}),
        ))
        .await;
    match destination.execute(&Raw::new("nbd-server-stop")).await {
        Ok(_) => Ok(()),
        Err(QmpError::Command { desc, .. }) if desc.contains("not running") => Ok(()),
        Err(e) => Err(e),
    }
}

/// Which part of a migration (with its disk or not) is under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The disk is copied; the guest runs at the source.
    Disk,
    /// Memory is copied; the disk follows every write.
    Memory,
    /// The guest runs at the destination, which pulls the pages it still lacks.
    PostCopy,
}

/// Where a migration stands, for a progress display and for the controller's
/// `scc status` (the body of `POST /migrate/progress`, [`crate::notify`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// What is copied now.
    pub phase: Phase,
    /// Disk bytes copied (the mirror's offset).
    pub disk_copied: u64,
    /// Disk bytes to copy (grows with writes during the copy).
    pub disk_total: u64,
    /// Disk copy rate since the start, bytes per second.
    pub disk_rate: u64,
    /// RAM bytes sent.
    pub ram_transferred: u64,
    /// RAM bytes left in this pass.
    pub ram_remaining: u64,
    /// Guest RAM size.
    pub ram_total: u64,
    /// RAM throughput of the last pass, Mbit/s.
    pub ram_mbps: f64,
    /// Pages the guest dirties per second.
    pub dirty_pages_rate: u64,
    /// Bytes the guest dirties per second (pages times QEMU's page size).
    #[serde(default)]
    pub dirty_bytes_rate: u64,
    /// QEMU's estimate of the downtime, ms.
    pub expected_downtime_ms: Option<i64>,
    /// Since the start.
    #[serde(rename = "elapsed_ms", with = "millis")]
    pub elapsed: Duration,
}

/// A [`Duration`] as whole milliseconds on the wire.
mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

impl Progress {
    fn new(phase: Phase, elapsed: Duration) -> Progress {
        Progress {
            phase,
            disk_copied: 0,
            disk_total: 0,
            disk_rate: 0,
            ram_transferred: 0,
            ram_remaining: 0,
            ram_total: 0,
            ram_mbps: 0.0,
            dirty_pages_rate: 0,
            dirty_bytes_rate: 0,
            expected_downtime_ms: None,
            elapsed,
        }
    }

    /// The progress of a memory-only migration at `elapsed`, from its
    /// `query-migrate` answer.
    pub fn of_memory(info: &MigrationInfo, elapsed: Duration) -> Progress {
        let mut p = Progress::new(Phase::Memory, elapsed);
        p.absorb_migration(info);
        p
    }

    fn absorb_job(&mut self, job: &BlockJobInfo) {
        self.disk_copied = job.offset;
        self.disk_total = job.len;
        let ms = u64::try_from(self.elapsed.as_millis()).unwrap_or(u64::MAX);
        if let Some(rate) = job.offset.saturating_mul(1000).checked_div(ms) {
            self.disk_rate = rate;
        }
    }

    fn absorb_migration(&mut self, info: &MigrationInfo) {
        if let Some(ram) = &info.ram {
            self.ram_transferred = ram.transferred;
            self.ram_remaining = ram.remaining;
            self.ram_total = ram.total;
            self.ram_mbps = ram.mbps;
            self.dirty_pages_rate = ram.dirty_pages_rate;
            // x86 guests' pages are 4 KiB: QEMU versions that omit the size use that.
            let page = if ram.page_size == 0 {
                4096
            } else {
                ram.page_size
            };
            self.dirty_bytes_rate = ram.dirty_pages_rate.saturating_mul(page);
        }
        if info.status == Some(MigrationStatus::PostcopyActive) {
            self.phase = Phase::PostCopy;
        }
        self.expected_downtime_ms = info.expected_downtime.or(self.expected_downtime_ms);
    }
}

/// What a migration with its disk did: the memory migration's report, and the
/// disk copy's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StorageReport {
    /// The memory migration (QEMU's total time and downtime, timeline).
    pub migration: MigrationReport,
    /// Time from the mirror's start until it was ready (everything copied once).
    pub disk_copy_time: Duration,
    /// Disk bytes the mirror copied until ready.
    pub disk_bytes: u64,
    /// Wall time from the mirror's start to the end.
    pub total_time: Duration,
}

/// Why a migration with its disk did not complete.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The mirror could not start, failed or was aborted before the memory
    /// migration began; it was cancelled and its target removed.
    #[error("disk copy did not complete: {why}")]
    Disk {
        /// What happened.
        why: String,
        /// The mirror's progress when it ended.
        progress: Box<Progress>,
    },
    /// The memory migration failed or was aborted; the mirror was cancelled.
    #[error(transparent)]
    Memory(#[from] MigrationError),
}

/// Migrates the VM behind `source` with its disk: the mirror into `disk`
/// first, then memory to `uri` with `opts` (its `switchover_jobs` get the
/// mirror). `observe` sees the progress at every poll. On any failure the
/// mirror is cancelled and its target removed, and the source runs on (the
/// destination's export is the caller's to remove, [`unexport_disk`]).
pub async fn migrate_with_disk(
    source: &QmpClient,
    uri: &str,
    disk: &NbdTarget,
    opts: &MigrationOptions,
    observe: &mut (dyn FnMut(&Progress) + Send),
) -> Result<StorageReport, StorageError> {
    let started = Instant::now();
    let disk_err = |why: String, progress: &Progress| StorageError::Disk {
        why,
        progress: Box::new(progress.clone()),
    };
    let mut progress = Progress::new(Phase::Disk, Duration::ZERO);
    if let Err(e) = start_mirror(source, disk, opts.parameters.max_bandwidth).await {
        cancel_mirror(source, opts).await;
        return Err(disk_err(format!("mirror could not start: {e}"), &progress));
    }
    let deadline = started + opts.timeout;
    loop {
        progress.elapsed = started.elapsed();
        let job = match mirror_job(source).await {
            Ok(Some(job)) => job,
            Ok(None) => {
                cancel_mirror(source, opts).await;
                return Err(disk_err("the mirror job vanished".into(), &progress));
            }
            Err(e) => {
                cancel_mirror(source, opts).await;
                return Err(disk_err(format!("query-block-jobs: {e}"), &progress));
            }
        };
        progress.absorb_job(&job);
        observe(&progress);
        if let Some(error) = &job.error {
            cancel_mirror(source, opts).await;
            return Err(disk_err(format!("the mirror failed: {error}"), &progress));
        }
        if job.ready {
            break;
        }
        if opts.aborted() {
            cancel_mirror(source, opts).await;
            return Err(disk_err("aborted".into(), &progress));
        }
        if Instant::now() >= deadline {
            cancel_mirror(source, opts).await;
            return Err(disk_err(
                format!("not ready after {:?}", opts.timeout),
                &progress,
            ));
        }
        tokio::time::sleep(opts.poll_interval).await;
    }
    let disk_copy_time = started.elapsed();
    let disk_bytes = progress.disk_copied;

    let mut memory_opts = opts.clone();
    memory_opts.timeout = opts.timeout.saturating_sub(disk_copy_time);
    if !memory_opts.switchover_jobs.iter().any(|j| j == MIRROR_JOB) {
        memory_opts.switchover_jobs.push(MIRROR_JOB.to_owned());
    }
    progress.phase = Phase::Memory;
    let mut on_memory = |info: &MigrationInfo| {
        progress.elapsed = started.elapsed();
        progress.absorb_migration(info);
        observe(&progress);
    };
    let result = migration::migrate_observed(source, uri, &memory_opts, &mut on_memory).await;
    match result {
        Ok(report) => {
            // The job ended at the switchover; its target node is still open.
            remove_target(source).await;
            Ok(StorageReport {
                migration: report,
                disk_copy_time,
                disk_bytes,
                total_time: started.elapsed(),
            })
        }
        Err(e) => {
            cancel_mirror(source, opts).await;
            Err(StorageError::Memory(e))
        }
    }
}

async fn start_mirror(
    source: &QmpClient,
    disk: &NbdTarget,
    speed: Option<u64>,
) -> Result<(), QmpError> {
    let mut target = json!({
        "driver": "nbd",
        "node-name": MIRROR_TARGET_NODE,
        "server": {"type": "inet", "host": disk.host, "port": disk.port.to_string()},
        "export": EXPORT_NAME,
    });
    if let Some(name) = &disk.tls_hostname {
        target["tls-creds"] = json!(crate::tls::CREDS_ID);
        target["tls-hostname"] = json!(name);
    }
    source
        .execute(&Raw::with_args("blockdev-add", target))
        .await?;
    let mut mirror = json!({
        "job-id": MIRROR_JOB,
        "device": DISK_NODE,
        "target": MIRROR_TARGET_NODE,
        "sync": "full",
        "copy-mode": "write-blocking",
        // Finished by block-job-cancel at the switchover, never by QEMU alone.
        "auto-finalize": true,
        "auto-dismiss": true,
    });
    if let Some(bytes_per_s) = speed {
        mirror["speed"] = json!(bytes_per_s);
    }
    source
        .execute(&Raw::with_args("blockdev-mirror", mirror))
        .await?;
    Ok(())
}

async fn mirror_job(source: &QmpClient) -> Result<Option<BlockJobInfo>, QmpError> {
    Ok(source
        .execute(&QueryBlockJobs)
        .await?
        .into_iter()
        .find(|j| j.device == MIRROR_JOB))
}

/// Stops the mirror at once (its target is thrown away) and removes the
/// target node; the source disk is untouched. Never fails: what it could not
/// do is logged.
async fn cancel_mirror(source: &QmpClient, opts: &MigrationOptions) {
    let cancel = BlockJobCancel {
        device: MIRROR_JOB.to_owned(),
        force: true,
    };
    if let Err(e) = source.execute(&cancel).await {
        tracing::debug!("block-job-cancel {MIRROR_JOB}: {e}");
    }
    let deadline = Instant::now() + opts.recovery_timeout;
    while Instant::now() < deadline {
        match mirror_job(source).await {
            Ok(None) => break,
            Ok(Some(_)) => tokio::time::sleep(opts.poll_interval).await,
            Err(e) => {
                tracing::warn!("query-block-jobs while cancelling the mirror: {e}");
                break;
            }
        }
    }
    remove_target(source).await;
}

async fn remove_target(source: &QmpClient) {
    let del = Raw::with_args("blockdev-del", json!({"node-name": MIRROR_TARGET_NODE}));
    if let Err(e) = source.execute(&del).await {
        tracing::debug!("blockdev-del {MIRROR_TARGET_NODE}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{fast_options as fast_opts, FakeQmp, Out};
    use serde_json::Value;
    use std::sync::atomic::Ordering;

    const T: Duration = Duration::from_secs(2);

    fn target() -> NbdTarget {
        NbdTarget {
            host: "192.0.2.2".into(),
            port: 10809,
            tls_hostname: Some("host2".into()),
        }
    }

    /// A source whose mirror reports `offset` of 1 MiB per query until ready
    /// after `ready_after` queries (never, with `None`), and whose memory
    /// migration pauses before the switchover, then completes.
    fn source(ready_after: Option<usize>) -> FakeQmp {
        let mut queries = 0usize;
        let mut job = true;
        let mut migration = "none";
        FakeQmp::start(move |cmd, _args| match cmd {
            "query-block-jobs" if !job => vec![Out::ret(json!([]))],
            "query-block-jobs" => {
                queries += 1;
                let ready = ready_after.is_some_and(|n| queries > n);
                let offset = (queries as u64).min(4) << 20;
                vec![Out::ret(json!([{"device": MIRROR_JOB, "type": "mirror",
                    "len": 4u64 << 20, "offset": offset, "ready": ready,
                    "status": if ready { "ready" } else { "running" }}]))]
            }
            "block-job-cancel" => {
                job = false;
                vec![Out::ret(json!({}))]
            }
            "migrate" => {
                migration = "pre-switchover";
                vec![Out::ret(json!({}))]
            }
            "migrate-continue" => {
                migration = "completed";
                vec![Out::ret(json!({}))]
            }
            "migrate_cancel" => {
                migration = "cancelled";
                vec![Out::ret(json!({}))]
            }
            "query-migrate" => {
                let mut v = json!({"status": migration, "ram": {"transferred": 1u64 << 20,
                    "total": 128u64 << 20, "remaining": 0, "mbps": 100.0}});
                if migration == "completed" {
                    v["downtime"] = json!(42);
                    v["total-time"] = json!(300);
                }
                vec![Out::ret(v)]
            }
            "query-status" => vec![Out::ret(json!({"running": true, "status": "running"}))],
            _ => vec![Out::ret(json!({}))],
        })
    }

    fn position(names: &[String], name: &str) -> usize {
        names
            .iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("no {name} in {names:?}"))
    }

    #[tokio::test]
    async fn the_mirror_is_completed_at_the_switchover_and_its_target_removed() {
        let fake = source(Some(3));
        let client = QmpClient::connect(fake.path(), T).await.unwrap();
        let mut phases = Vec::new();
        let report = migrate_with_disk(
            &client,
            "tcp:192.0.2.2:4444",
            &target(),
            &fast_opts(),
            &mut |p| {
                if phases.last() != Some(&p.phase) {
                    phases.push(p.phase);
                }
            },
        )
        .await
        .unwrap();
        assert_eq!(phases, [Phase::Disk, Phase::Memory]);
        assert_eq!(report.disk_bytes, 4 << 20);
        assert_eq!(report.migration.downtime_ms, Some(42));
        let names = fake.names();
        let commands = fake.commands();
        let add = &commands[position(&names, "blockdev-add")].1;
        assert_eq!(add["tls-hostname"], "host2");
        assert_eq!(add["export"], EXPORT_NAME);
        let mirror = &commands[position(&names, "blockdev-mirror")].1;
        assert_eq!(mirror["copy-mode"], "write-blocking");
        assert_eq!(mirror["sync"], "full");
        let caps = &commands[position(&names, "migrate-set-capabilities")].1;
        assert!(caps["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["capability"] == "pause-before-switchover" && c["state"] == true));
        let cancel = position(&names, "block-job-cancel");
        assert_eq!(
            commands[cancel].1["force"], false,
            "completed, not thrown away"
        );
        assert!(position(&names, "migrate") < cancel);
        assert!(cancel < position(&names, "migrate-continue"));
        assert!(position(&names, "migrate-continue") < position(&names, "blockdev-del"));
    }

    #[tokio::test]
    async fn an_abort_during_the_disk_copy_cancels_the_mirror_and_never_migrates() {
        let fake = source(None);
        let client = QmpClient::connect(fake.path(), T).await.unwrap();
        let opts = fast_opts();
        let abort = opts.abort.clone();
        let err = migrate_with_disk(&client, "tcp:192.0.2.2:4444", &target(), &opts, &mut |p| {
            if p.disk_copied >= 2 << 20 {
                abort.store(true, Ordering::Relaxed);
            }
        })
        .await
        .unwrap_err();
        assert!(
            matches!(err, StorageError::Disk { ref why, .. } if why == "aborted"),
            "{err}"
        );
        let names = fake.names();
        assert!(!names.iter().any(|n| n == "migrate"), "{names:?}");
        let cancel = position(&names, "block-job-cancel");
        assert_eq!(fake.commands()[cancel].1["force"], true);
        assert!(cancel < position(&names, "blockdev-del"));
    }

    #[tokio::test]
    async fn a_refused_mirror_removes_its_target() {
        let fake = FakeQmp::start(|cmd, _: &Value| match cmd {
            "blockdev-mirror" => vec![Out::err("GenericError", "Permission denied")],
            "query-block-jobs" => vec![Out::ret(json!([]))],
            _ => vec![Out::ret(json!({}))],
        });
        let client = QmpClient::connect(fake.path(), T).await.unwrap();
        let err = migrate_with_disk(
            &client,
            "tcp:192.0.2.2:4444",
            &target(),
            &fast_opts(),
            &mut |_| {},
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("Permission denied"), "{err}");
        assert!(fake.names().iter().any(|n| n == "blockdev-del"));
    }
}
