//! Live migration of one VM, driven from the source QEMU's QMP connection.
//!
//! Owns the procedure: set capabilities and parameters, `migrate`, follow the
//! `MIGRATION` events and `query-migrate` until a terminal state, and on failure
//! or timeout cancel and make sure the source VM runs again. It returns a
//! [`MigrationReport`] either way. It must never start or kill QEMU processes,
//! never touch the network (moving the VM's attachment is the caller's job), and
//! never resume a source whose migration completed (the VM lives elsewhere then).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::broadcast;

use crate::commands::{
    BlockJobCancel, CapabilityState, Cont, Migrate, MigrateCancel, MigrateContinue,
    MigrateIncoming, MigrateSetCapabilities, MigrationInfo, MigrationParameters, MigrationStatus,
    QueryBlockJobs, QueryMigrate, QueryStatus, Raw, RunState,
};
use crate::qmp::{EventKind, QmpClient, QmpError, QmpEvent};

/// How a migration is run.
#[derive(Debug, Clone)]
pub struct MigrationOptions {
    /// Parameters for `migrate-set-parameters` (only the set ones are sent).
    pub parameters: MigrationParameters,
    /// Extra capabilities; `events` is always switched on.
    pub capabilities: Vec<CapabilityState>,
    /// Give up (cancel) when not completed within this time.
    pub timeout: Duration,
    /// How often `query-migrate` is polled besides the events.
    pub poll_interval: Duration,
    /// Time allowed for cancelling and resuming the source after a failure.
    pub recovery_timeout: Duration,
    /// Block jobs (disk mirrors) that must finish at the switchover: the
    /// migration pauses once the guest is stopped (`pause-before-switchover`),
    /// each job is completed without pivot (its target then equals the disk),
    /// and only then does the destination take over.
    pub switchover_jobs: Vec<String>,
    /// Switch to post-copy after the first full pass of RAM: the guest runs at
    /// the destination at once and fetches the pages still missing (the
    /// destination must have the `postcopy-ram` capability too).
    pub postcopy: bool,
    /// Set from anywhere to abort: the migration is cancelled and the source
    /// runs again.
    pub abort: Arc<AtomicBool>,
}

impl MigrationOptions {
    /// Slow the guest down when it dirties memory faster than the link copies
    /// it (`auto-converge`), starting at `initial` percent.
    pub fn with_auto_converge(mut self, initial: Option<u64>) -> MigrationOptions {
        self.capabilities.push(CapabilityState {
            capability: "auto-converge".into(),
            state: true,
        });
        self.parameters.cpu_throttle_initial = initial;
        self
    }

    /// True once [`MigrationOptions::abort`] is set.
    pub fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }
}

impl Default for MigrationOptions {
    fn default() -> Self {
        MigrationOptions {
            parameters: MigrationParameters::default(),
            capabilities: Vec::new(),
            timeout: Duration::from_secs(60),
            poll_interval: Duration::from_millis(50),
            recovery_timeout: Duration::from_secs(10),
            switchover_jobs: Vec::new(),
            postcopy: false,
            abort: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// One moment of the migration, relative to the `migrate` command.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEntry {
    /// Time since the migration began (before capabilities were set).
    pub at: Duration,
    /// What happened, e.g. `event MIGRATION active`, `query-migrate completed`.
    pub what: String,
}

/// What happened, with QEMU's own figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MigrationReport {
    /// Destination URI.
    pub uri: String,
    /// The last status seen.
    pub status: MigrationStatus,
    /// QEMU's `total-time`, in ms.
    pub total_time_ms: Option<i64>,
    /// QEMU's `downtime`, in ms (the guest's stop-and-copy pause).
    pub downtime_ms: Option<i64>,
    /// QEMU's `setup-time`, in ms.
    pub setup_time_ms: Option<i64>,
    /// RAM bytes sent.
    pub transferred_bytes: Option<u64>,
    /// Guest RAM size.
    pub ram_total_bytes: Option<u64>,
    /// QEMU's `error-desc` on failure.
    pub error_desc: Option<String>,
    /// Our wall-clock time from start to a terminal state (and recovery).
    pub wall_time: Duration,
    /// After a failure: does the source VM run (checked with `query-status`)?
    /// `None` when the migration completed or the check could not be made.
    pub source_running: Option<bool>,
    /// Events and status changes in order.
    pub timeline: Vec<TimelineEntry>,
}

impl MigrationReport {
    fn new(uri: &str) -> Self {
        MigrationReport {
            uri: uri.to_owned(),
            status: MigrationStatus::None,
            total_time_ms: None,
            downtime_ms: None,
            setup_time_ms: None,
            transferred_bytes: None,
            ram_total_bytes: None,
            error_desc: None,
            wall_time: Duration::ZERO,
            source_running: None,
            timeline: Vec::new(),
        }
    }

    fn absorb(&mut self, info: &MigrationInfo) {
        if let Some(s) = info.status {
            self.status = s;
        }
        self.total_time_ms = info.total_time.or(self.total_time_ms);
        self.downtime_ms = info.downtime.or(self.downtime_ms);
        self.setup_time_ms = info.setup_time.or(self.setup_time_ms);
        if let Some(ram) = &info.ram {
            self.transferred_bytes = Some(ram.transferred);
            self.ram_total_bytes = Some(ram.total);
        }
        if info.error_desc.is_some() {
            self.error_desc.clone_from(&info.error_desc);
        }
    }

    /// One line for logs and operators.
    pub fn summary(&self) -> String {
        let ms = |v: Option<i64>| v.map_or("-".to_owned(), |v| format!("{v} ms"));
        let mut s = format!(
            "migration to {}: {} total={} downtime={} setup={} transferred={} wall={:?}",
            self.uri,
            self.status,
            ms(self.total_time_ms),
            ms(self.downtime_ms),
            ms(self.setup_time_ms),
            self.transferred_bytes
                .map_or("-".to_owned(), |b| format!("{b} B")),
            self.wall_time,
        );
        if let Some(e) = &self.error_desc {
            s.push_str(&format!(" error=\"{e}\""));
        }
        if let Some(r) = self.source_running {
            s.push_str(&format!(" source_running={r}"));
        }
        s
    }
}

/// Why a migration did not complete. Every variant that carries a report has
/// already tried to leave the source VM running (see `source_running`).
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// Capabilities, parameters or the `migrate` command were refused.
    #[error("migration could not start: {source}")]
    Start {
        /// QEMU's refusal or the transport error.
        #[source]
        source: QmpError,
        /// What was done, including the recovery check.
        report: Box<MigrationReport>,
    },
    /// QEMU reported `failed` or `cancelled`.
    #[error("{}", .report.summary())]
    Failed {
        /// The figures and timeline.
        report: Box<MigrationReport>,
    },
    /// Aborted on request ([`MigrationOptions::abort`]); it was cancelled.
    #[error("aborted; {}", .report.summary())]
    Aborted {
        /// The figures and timeline.
        report: Box<MigrationReport>,
    },
    /// Not completed in time; it was cancelled.
    #[error("timed out after {after:?}; {}", .report.summary())]
    TimedOut {
        /// The configured timeout.
        after: Duration,
        /// The figures and timeline.
        report: Box<MigrationReport>,
    },
    /// The QMP connection failed while following the migration.
    #[error("lost QMP while following the migration: {0}")]
    Qmp(#[from] QmpError),
}

impl MigrationError {
    /// The report, when there is one.
    pub fn report(&self) -> Option<&MigrationReport> {
        match self {
            MigrationError::Start { report, .. }
            | MigrationError::Failed { report }
            | MigrationError::Aborted { report }
            | MigrationError::TimedOut { report, .. } => Some(report),
            MigrationError::Qmp(_) => None,
        }
    }
}

/// Migrates the VM behind `source` to `uri` (e.g. `tcp:100.64.0.2:4444`).
///
/// On success the source is left in `postmigrate` (paused; stop it when the
/// destination is confirmed). On failure or timeout the migration is cancelled
/// and the source resumed if it was left paused.
pub async fn migrate(
    source: &QmpClient,
    uri: &str,
    opts: &MigrationOptions,
) -> Result<MigrationReport, MigrationError> {
    migrate_observed(source, uri, opts, &mut |_| {}).await
}

/// [`migrate`], calling `observe` with every `query-migrate` answer (figures
/// for a progress display: bytes, rate, dirty rate, expected downtime).
pub async fn migrate_observed(
    source: &QmpClient,
    uri: &str,
    opts: &MigrationOptions,
    observe: &mut (dyn FnMut(&MigrationInfo) + Send),
) -> Result<MigrationReport, MigrationError> {
    let started = Instant::now();
    let mut report = MigrationReport::new(uri);
    let mut events = source.subscribe();

    if let Err(e) = start(source, uri, opts, &mut report, started).await {
        recover_source(source, opts, &mut report, started).await;
        report.wall_time = started.elapsed();
        return Err(MigrationError::Start {
            source: e,
            report: Box::new(report),
        });
    }

    let deadline = tokio::time::Instant::now() + opts.timeout;
    let mut poll = tokio::time::interval(opts.poll_interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut timed_out = false;
    let mut aborted = false;
    let mut postcopy_started = false;
    while !report.status.is_terminal() {
        if opts.aborted() {
            aborted = true;
            note(&mut report, started, "abort requested".to_owned());
            break;
        }
        if report.status == MigrationStatus::PreSwitchover && !opts.switchover_jobs.is_empty() {
            break;
        }
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(ev) => note_event(&mut report, &ev, started),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    note(&mut report, started, format!("missed {n} events"));
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(QmpError::Disconnected(None).into());
                }
            },
            _ = poll.tick() => {
                let info = source.execute(&QueryMigrate).await?;
                let before = report.status;
                report.absorb(&info);
                observe(&info);
                let now = report.status;
                if now != before {
                    note(&mut report, started, format!("query-migrate {now}"));
                }
                let first_pass_done = info.ram.as_ref().is_some_and(|r| r.dirty_sync_count >= 2);
                if opts.postcopy && !postcopy_started && now == MigrationStatus::Active && first_pass_done {
                    postcopy_started = true;
                    source.execute(&Raw::new("migrate-start-postcopy")).await?;
                    note(&mut report, started, "migrate-start-postcopy".to_owned());
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                timed_out = true;
                note(&mut report, started, "timeout".to_owned());
                break;
            }
        }
    }

    if report.status == MigrationStatus::PreSwitchover && !aborted && !timed_out {
        if let Err(e) = finish_jobs_and_switch_over(source, opts, &mut report, started).await {
            note(&mut report, started, format!("switchover failed: {e}"));
        } else {
            return follow_after_switchover(source, opts, report, started, observe).await;
        }
    }

    // The final figures (downtime, total time) are only in query-migrate.
    match source.execute(&QueryMigrate).await {
        Ok(info) => report.absorb(&info),
        Err(e) if report.status == MigrationStatus::Completed => {
            tracing::warn!("final query-migrate failed after completion: {e}");
        }
        Err(e) => return Err(e.into()),
    }

    if report.status == MigrationStatus::Completed {
        report.wall_time = started.elapsed();
        return Ok(report);
    }
    recover_source(source, opts, &mut report, started).await;
    report.wall_time = started.elapsed();
    let report = Box::new(report);
    if aborted {
        Err(MigrationError::Aborted { report })
    } else if timed_out {
        Err(MigrationError::TimedOut {
            after: opts.timeout,
            report,
        })
    } else {
        Err(MigrationError::Failed { report })
    }
}

/// The guest is stopped at the source and the migration waits before the
/// switchover: complete every block job without pivot (a mirror copies what is
/// still dirty and leaves its target equal to the disk), then let the
/// migration go on.
async fn finish_jobs_and_switch_over(
    source: &QmpClient,
    opts: &MigrationOptions,
    report: &mut MigrationReport,
    started: Instant,
) -> Result<(), QmpError> {
    for job in &opts.switchover_jobs {
        source
            .execute(&BlockJobCancel {
                device: job.clone(),
                force: false,
            })
            .await?;
        note(
            report,
            started,
            format!("block-job-cancel {job} (complete, no pivot)"),
        );
    }
    let deadline = Instant::now() + opts.recovery_timeout;
    loop {
        let jobs = source.execute(&QueryBlockJobs).await?;
        if let Some(failed) = jobs.iter().find(|j| j.error.is_some()) {
            return Err(QmpError::Protocol(format!(
                "block job {} failed: {}",
                failed.device,
                failed.error.clone().unwrap_or_default()
            )));
        }
        if !jobs
            .iter()
            .any(|j| opts.switchover_jobs.contains(&j.device))
        {
            break;
        }
        if Instant::now() >= deadline {
            return Err(QmpError::Timeout {
                what: "block jobs at switchover".into(),
                after: opts.recovery_timeout,
            });
        }
        tokio::time::sleep(opts.poll_interval).await;
    }
    note(report, started, "disk in sync; migrate-continue".to_owned());
    source
        .execute(&MigrateContinue {
            state: MigrationStatus::PreSwitchover,
        })
        .await?;
    Ok(())
}

/// After the switchover was released: follow the migration to its end (the
/// loop of [`migrate_observed`] again, which no longer pauses).
async fn follow_after_switchover(
    source: &QmpClient,
    opts: &MigrationOptions,
    mut report: MigrationReport,
    started: Instant,
    observe: &mut (dyn FnMut(&MigrationInfo) + Send),
) -> Result<MigrationReport, MigrationError> {
    let deadline = Instant::now() + opts.recovery_timeout;
    loop {
        let info = source.execute(&QueryMigrate).await?;
        report.absorb(&info);
        observe(&info);
        if report.status.is_terminal() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(opts.poll_interval).await;
    }
    let last = report.status;
    note(&mut report, started, format!("query-migrate {last}"));
    report.wall_time = started.elapsed();
    if report.status == MigrationStatus::Completed {
        return Ok(report);
    }
    recover_source(source, opts, &mut report, started).await;
    report.wall_time = started.elapsed();
    Err(MigrationError::Failed {
        report: Box::new(report),
    })
}

async fn start(
    source: &QmpClient,
    uri: &str,
    opts: &MigrationOptions,
    report: &mut MigrationReport,
    started: Instant,
) -> Result<(), QmpError> {
    let mut capabilities = vec![CapabilityState {
        capability: "events".into(),
        state: true,
    }];
    capabilities.extend(opts.capabilities.iter().cloned());
    if !opts.switchover_jobs.is_empty() {
        capabilities.push(CapabilityState {
            capability: "pause-before-switchover".into(),
            state: true,
        });
    }
    if opts.postcopy {
        capabilities.push(CapabilityState {
            capability: "postcopy-ram".into(),
            state: true,
        });
    }
    source
        .execute(&MigrateSetCapabilities { capabilities })
        .await?;
    if !opts.parameters.is_empty() {
        source.execute(&opts.parameters).await?;
    }
    source
        .execute(&Migrate {
            uri: uri.to_owned(),
        })
        .await?;
    note(report, started, format!("migrate {uri}"));
    Ok(())
}

/// After a failed migration: cancel if still in flight, then make sure the
/// source runs. Records what it did in the report; never fails.
async fn recover_source(
    source: &QmpClient,
    opts: &MigrationOptions,
    report: &mut MigrationReport,
    started: Instant,
) {
    let deadline = Instant::now() + opts.recovery_timeout;
    let in_flight = |s: MigrationStatus| !s.is_terminal() && s != MigrationStatus::None;
    if in_flight(report.status) {
        match source.execute(&MigrateCancel).await {
            Ok(_) => note(report, started, "migrate_cancel".to_owned()),
            Err(e) => note(report, started, format!("migrate_cancel failed: {e}")),
        }
        while Instant::now() < deadline {
            match source.execute(&QueryMigrate).await {
                Ok(info) => {
                    report.absorb(&info);
                    let now = report.status;
                    if !in_flight(now) {
                        note(report, started, format!("query-migrate {now}"));
                        break;
                    }
                }
                Err(e) => {
                    note(report, started, format!("query-migrate failed: {e}"));
                    return;
                }
            }
            tokio::time::sleep(opts.poll_interval).await;
        }
    }

    // QEMU resumes the source itself on most failures; `cont` covers the rest.
    while Instant::now() < deadline {
        let status = match source.execute(&QueryStatus).await {
            Ok(s) => s,
            Err(e) => {
                note(report, started, format!("query-status failed: {e}"));
                return;
            }
        };
        if status.running {
            report.source_running = Some(true);
            note(report, started, "source running".to_owned());
            return;
        }
        match status.status {
            RunState::Paused | RunState::Postmigrate | RunState::FinishMigrate => {
                match source.execute(&Cont).await {
                    Ok(_) => note(report, started, "cont".to_owned()),
                    Err(e) => note(report, started, format!("cont refused: {e}")),
                }
            }
            other => {
                note(
                    report,
                    started,
                    format!("source in state {other:?}, not resuming"),
                );
                report.source_running = Some(false);
                return;
            }
        }
        tokio::time::sleep(opts.poll_interval).await;
    }
    report.source_running = Some(false);
    note(report, started, "source still not running".to_owned());
}

fn note(report: &mut MigrationReport, started: Instant, what: String) {
    tracing::debug!("migration +{:?}: {what}", started.elapsed());
    report.timeline.push(TimelineEntry {
        at: started.elapsed(),
        what,
    });
}

fn note_event(report: &mut MigrationReport, ev: &QmpEvent, started: Instant) {
    let kind = ev.kind();
    match kind {
        EventKind::Migration(s) => {
            report.status = s;
            note(report, started, format!("event MIGRATION {s}"));
        }
        EventKind::MigrationPass(_) | EventKind::Stop | EventKind::Resume => {
            note(report, started, format!("event {}", ev.event));
        }
        _ => {}
    }
}

/// On a destination started with `-incoming defer`: start listening on `uri`.
pub async fn start_incoming(destination: &QmpClient, uri: &str) -> Result<(), QmpError> {
    destination
        .execute(&MigrateIncoming {
            uri: uri.to_owned(),
        })
        .await
        .map(|_| ())
}

/// Waits for the first event that `pred` accepts, up to `timeout`.
pub async fn wait_for_event<F>(
    events: &mut broadcast::Receiver<QmpEvent>,
    timeout: Duration,
    mut pred: F,
) -> Result<QmpEvent, QmpError>
where
    F: FnMut(&QmpEvent) -> bool,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => {
                return Err(QmpError::Timeout {
                    what: "event".into(),
                    after: timeout,
                })
            }
            Ok(Ok(ev)) if pred(&ev) => return Ok(ev),
            Ok(Ok(_)) => {}
            Ok(Err(broadcast::error::RecvError::Lagged(n))) => {
                tracing::warn!("event receiver lagged by {n}");
            }
            Ok(Err(broadcast::error::RecvError::Closed)) => {
                return Err(QmpError::Disconnected(None));
            }
        }
    }
}

/// Waits until the VM behind `client` runs (e.g. a migration destination):
/// returns at once if it already does, else at the `RESUME` event.
pub async fn wait_until_running(client: &QmpClient, timeout: Duration) -> Result<(), QmpError> {
    let mut events = client.subscribe();
    if client.execute(&QueryStatus).await?.running {
        return Ok(());
    }
    let poll = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if client.execute(&QueryStatus).await?.running {
                return Ok::<(), QmpError>(());
            }
        }
    };
    tokio::select! {
        ev = wait_for_event(&mut events, timeout, |e| e.kind() == EventKind::Resume) => ev.map(|_| ()),
        polled = tokio::time::timeout(timeout, poll) => match polled {
            Ok(r) => r,
            Err(_) => Err(QmpError::Timeout { what: "guest running".into(), after: timeout }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{fast_options as fast_opts, FakeQmp, Out};
    use serde_json::{json, Value};
    use std::sync::{Arc, Mutex};

    const T: Duration = Duration::from_secs(2);

    /// A source whose migration goes through `states` one query-migrate at a
    /// time, and whose run state is `run` (shared so the test can change it).
    fn scripted_source(
        states: Vec<&'static str>,
        run: Arc<Mutex<(bool, &'static str)>>,
        on_cancel: &'static str,
    ) -> FakeQmp {
        let mut step = 0usize;
        let mut cancelled = false;
        FakeQmp::start(move |cmd, _args| match cmd {
            "migrate" => vec![
                Out::ret(json!({})),
                Out::event("MIGRATION", json!({"status": "setup"})),
            ],
            "query-migrate" => {
                let s = if cancelled {
                    on_cancel
                } else {
                    let s = states[step.min(states.len() - 1)];
                    step += 1;
                    s
                };
                let mut v = json!({"status": s, "total-time": 300, "setup-time": 3,
                    "ram": {"transferred": 5_000_000u64, "total": 134_217_728u64,
                            "remaining": 0, "mbps": 100.0}});
                if s == "completed" {
                    v["downtime"] = json!(42);
                }
                if s == "failed" {
                    v["error-desc"] = json!("Unable to write to socket: Connection reset by peer");
                }
                let mut out = vec![Out::ret(v)];
                if s == "completed" {
                    out.push(Out::event("MIGRATION", json!({"status": "completed"})));
                }
                out
            }
            "migrate_cancel" => {
                cancelled = true;
                vec![Out::ret(json!({}))]
            }
            "query-status" => {
                let (running, status) = *run.lock().unwrap();
                vec![Out::ret(json!({"running": running, "status": status}))]
            }
            "cont" => {
                *run.lock().unwrap() = (true, "running");
                vec![Out::ret(json!({})), Out::event("RESUME", Value::Null)]
            }
            _ => vec![Out::ret(json!({}))],
        })
    }

    #[tokio::test]
    async fn a_completed_migration_reports_qemu_figures() {
        let run = Arc::new(Mutex::new((true, "running")));
        let fake = scripted_source(vec!["active", "active", "completed"], run, "cancelled");
        let client = QmpClient::connect(fake.path(), T).await.unwrap();
        let opts = MigrationOptions {
            parameters: MigrationParameters {
                downtime_limit: Some(200),
                ..Default::default()
            },
            ..fast_opts()
        };
        let report = migrate(&client, "tcp:100.64.0.2:4444", &opts)
            .await
            .unwrap();
        assert_eq!(report.status, MigrationStatus::Completed);
        assert_eq!(report.downtime_ms, Some(42));
        assert_eq!(report.total_time_ms, Some(300));
        assert_eq!(report.transferred_bytes, Some(5_000_000));
        assert_eq!(report.source_running, None);
        let names = fake.names();
        assert_eq!(
            &names[..4],
            &[
                "qmp_capabilities",
                "migrate-set-capabilities",
                "migrate-set-parameters",
                "migrate"
            ]
        );
        assert!(!names.contains(&"cont".to_string()));
        assert!(!names.contains(&"migrate_cancel".to_string()));
        let cmds = fake.commands();
        assert_eq!(
            cmds[1].1,
            json!({"capabilities": [{"capability": "events", "state": true}]})
        );
        assert_eq!(cmds[2].1, json!({"downtime-limit": 200}));
        assert_eq!(cmds[3].1, json!({"uri": "tcp:100.64.0.2:4444"}));
        assert!(report
            .timeline
            .iter()
            .any(|t| t.what == "event MIGRATION setup"));
        assert!(report.summary().contains("downtime=42 ms"));
    }

    #[tokio::test]
    async fn a_failed_migration_resumes_a_paused_source() {
        let run = Arc::new(Mutex::new((false, "paused")));
        let fake = scripted_source(vec!["active", "failed"], Arc::clone(&run), "failed");
        let client = QmpClient::connect(fake.path(), T).await.unwrap();
        let err = migrate(&client, "tcp:100.64.0.2:4444", &fast_opts())
            .await
            .unwrap_err();
        let MigrationError::Failed { report } = &err else {
            panic!("unexpected {err}");
        };
        assert_eq!(report.status, MigrationStatus::Failed);
        assert_eq!(report.source_running, Some(true));
        assert!(report.error_desc.as_deref().unwrap().contains("reset"));
        let names = fake.names();
        assert!(names.contains(&"cont".to_string()), "{names:?}");
        // Already terminal: nothing to cancel.
        assert!(!names.contains(&"migrate_cancel".to_string()), "{names:?}");
        assert!(err.to_string().contains("failed"), "{err}");
    }

    #[tokio::test]
    async fn a_stuck_migration_is_cancelled_and_the_running_source_left_alone() {
        let run = Arc::new(Mutex::new((true, "running")));
        let fake = scripted_source(vec!["active"], run, "cancelled");
        let client = QmpClient::connect(fake.path(), T).await.unwrap();
        let opts = MigrationOptions {
            timeout: Duration::from_millis(200),
            ..fast_opts()
        };
        let err = migrate(&client, "tcp:100.64.0.2:4444", &opts)
            .await
            .unwrap_err();
        let MigrationError::TimedOut { report, .. } = &err else {
            panic!("unexpected {err}");
        };
        assert_eq!(report.status, MigrationStatus::Cancelled);
        assert_eq!(report.source_running, Some(true));
        let names = fake.names();
        assert!(names.contains(&"migrate_cancel".to_string()), "{names:?}");
        assert!(!names.contains(&"cont".to_string()), "{names:?}");
    }

    #[tokio::test]
    async fn a_refused_migrate_command_is_a_start_error() {
        let fake = FakeQmp::start(|cmd, _| match cmd {
            "migrate" => vec![Out::err("GenericError", "Invalid migration URI")],
            "query-status" => vec![Out::ret(json!({"running": true, "status": "running"}))],
            _ => vec![Out::ret(json!({}))],
        });
        let client = QmpClient::connect(fake.path(), T).await.unwrap();
        let err = migrate(&client, "bogus:", &fast_opts()).await.unwrap_err();
        assert!(matches!(err, MigrationError::Start { .. }), "{err}");
        assert!(err.to_string().contains("Invalid migration URI"), "{err}");
        assert_eq!(err.report().unwrap().source_running, Some(true));
    }

    #[tokio::test]
    async fn a_lost_connection_is_a_qmp_error() {
        let fake = FakeQmp::closing_on("query-migrate");
        let client = QmpClient::connect(fake.path(), T).await.unwrap();
        let err = migrate(&client, "tcp:1.2.3.4:1", &fast_opts())
            .await
            .unwrap_err();
        assert!(matches!(err, MigrationError::Qmp(_)), "{err}");
    }

    #[tokio::test]
    async fn destination_wait_until_running_sees_resume() {
        let fake = FakeQmp::start(|cmd, _| match cmd {
            "query-status" => vec![
                Out::ret(json!({"running": false, "status": "inmigrate"})),
                Out::Delay(Duration::from_millis(30)),
                Out::event("RESUME", Value::Null),
            ],
            _ => vec![Out::ret(json!({}))],
        });
        let client = QmpClient::connect(fake.path(), T).await.unwrap();
        start_incoming(&client, "tcp:0.0.0.0:4444").await.unwrap();
        wait_until_running(&client, T).await.unwrap();
        assert_eq!(fake.commands()[1].1, json!({"uri": "tcp:0.0.0.0:4444"}));
    }
}
