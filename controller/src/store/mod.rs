//! The controller's embedded store: a snapshot file holding the inventory, the
//! policy, the version of the network program and the migration in flight, and a
//! journal beside it (`<file>.journal`) of what each accepted change changed.
//!
//! A save appends one record to the journal (one write and one `fdatasync`):
//! only the VMs, hosts, policy, moves and migration that differ from the state
//! saved before, never the whole state. A load reads the snapshot and replays
//! the journal; a torn last record (a crash during its append) is left out with a
//! warning, damage before it is an error naming the file and the byte offset.
//! When the journal grows past its limits a background thread writes a new
//! snapshot (to a temporary file, flushed, renamed over the old one, the
//! directory flushed) and then drops the records it holds from the journal, also
//! by rename: a crash at any point leaves a snapshot and a journal that together
//! hold the last saved state. A snapshot written by an older `scc` (one JSON
//! file, no journal) loads as it is. This module owns those two files and
//! nothing else.

mod change;
mod journal;

use crate::migration::MigrationState;
use crate::model::Inventory;
use change::Change;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What survives a controller restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Persisted {
    /// The inventory as last accepted (shared with the program compiled from it
    /// and with every reader: a change copies it once, a reader never).
    pub inventory: Arc<Inventory>,
    /// The policy text as last accepted.
    pub policy: String,
    /// Where the policy came from (for messages).
    pub policy_name: String,
    /// Version of the network program; bumped by every accepted change.
    pub version: u64,
    /// Each VM's arrivals by migration (ms, Unix time) of the last two days: the
    /// placement engine's dwell time and migration budgets survive a restart.
    #[serde(default)]
    pub moves_ms: std::collections::BTreeMap<String, Vec<u64>>,
    /// The current or last migration as its last committed phase left it: the
    /// program of `version` was compiled with it, so a restarted controller
    /// compiles the same tables and resumes the migration from there.
    #[serde(default)]
    pub migration: Option<MigrationState>,
}

impl Persisted {
    /// A first state: `inventory` with `policy`, version 1, nothing moved yet.
    pub fn first(inventory: Inventory, policy: String, policy_name: String) -> Persisted {
        Persisted {
            inventory: Arc::new(inventory),
            policy,
            policy_name,
            version: 1,
            moves_ms: Default::default(),
            migration: None,
        }
    }
}

/// The record of what turns `before` into `after` (their difference, as the
/// journal holds it): the etcd store keeps the same records under keys of its own.
pub(crate) fn change_record(before: &Persisted, after: &Persisted) -> std::io::Result<Vec<u8>> {
    serde_json::to_vec(&Change::between(before, after)).map_err(std::io::Error::other)
}

/// Applies a record of [`change_record`] to `state`, which must be the state of
/// the version just before the record's; returns the version it puts in force.
pub(crate) fn apply_change_record(state: &mut Persisted, record: &[u8]) -> Result<u64, String> {
    let change: Change =
        serde_json::from_slice(record).map_err(|e| format!("a record that does not parse: {e}"))?;
    if change.version != state.version + 1 {
        return Err(format!(
            "version {} does not follow version {}",
            change.version, state.version
        ));
    }
    let version = change.version;
    change.apply(state);
    Ok(version)
}

/// When a background compaction starts: the journal holds `records` records, or
/// more bytes than both `journal_bytes` and the snapshot (so a load never reads
/// much more than twice the state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionLimits {
    /// Records in the journal.
    pub records: u64,
    /// Bytes in the journal, unless the snapshot is larger.
    pub journal_bytes: u64,
}

impl Default for CompactionLimits {
    fn default() -> Self {
        CompactionLimits {
            records: 10_000,
            journal_bytes: 8 << 20,
        }
    }
}

/// The store: a snapshot file and its journal.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Files>,
}

impl std::fmt::Debug for Store {
    // The state it holds is megabytes at 100,000 VMs: its files and sizes only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let journal = lock(&self.inner.journal);
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .field("journal_bytes", &journal.len)
            .field("journal_records", &journal.records)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Files {
    path: PathBuf,
    journal_path: PathBuf,
    limits: CompactionLimits,
    /// Held while a snapshot is written or read (a compaction, a whole save, a
    /// load), before `journal`: the journal is appended to meanwhile.
    snapshotting: Mutex<()>,
    journal: Mutex<Journal>,
    /// A background compaction is running.
    compacting: AtomicBool,
}

/// The journal as this store last wrote or read it.
#[derive(Debug, Default)]
struct Journal {
    /// The state the snapshot and the journal hold together, once loaded or
    /// saved: the next record is the difference from it. `None`: not known
    /// (never loaded, or an append failed half-way), the next save loads first.
    last: Option<Persisted>,
    /// Open for appending, once appended to.
    file: Option<std::fs::File>,
    /// Bytes of whole records.
    len: u64,
    records: u64,
    snapshot_len: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

impl Store {
    /// A store at `path` (created on first save), its journal beside it.
    pub fn new(path: &Path) -> Store {
        Store::with_limits(path, CompactionLimits::default())
    }

    /// A store that compacts its journal past `limits`.
    pub fn with_limits(path: &Path, limits: CompactionLimits) -> Store {
        let mut journal_path = path.as_os_str().to_owned();
        journal_path.push(".journal");
        Store {
            inner: Arc::new(Files {
                path: path.to_path_buf(),
                journal_path: journal_path.into(),
                limits,
                snapshotting: Mutex::new(()),
                journal: Mutex::new(Journal::default()),
                compacting: AtomicBool::new(false),
            }),
        }
    }

    /// The snapshot's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The journal's path (`<snapshot>.journal`).
    pub fn journal_path(&self) -> &Path {
        &self.inner.journal_path
    }

    /// The persisted state, if there is one: the snapshot with the journal
    /// replayed. A torn last record is left out (with a warning) and cut from
    /// the journal; damage before it is an `InvalidData` error naming the
    /// journal and the byte offset.
    pub fn load(&self) -> std::io::Result<Option<Persisted>> {
        let files = &self.inner;
        let _snapshotting = lock(&files.snapshotting);
        let mut journal = lock(&files.journal);
        let snapshot = match std::fs::read(&files.path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let bytes = match std::fs::read(&files.journal_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let Some(snapshot) = snapshot else {
            if !bytes.is_empty() {
                return Err(invalid(format!(
                    "{}: a journal without its snapshot {}",
                    files.journal_path.display(),
                    files.path.display()
                )));
            }
            *journal = Journal {
                last: None,
                ..Journal::default()
            };
            return Ok(None);
        };
        let mut state: Persisted = serde_json::from_slice(&snapshot)
            .map_err(|e| invalid(format!("{}: {e}", files.path.display())))?;
        let records = journal::split(&bytes).map_err(|damaged| {
            invalid(format!(
                "{}: byte {}: {}: the journal is damaged before its last record; restore \
                 the store from a backup, or remove the journal to start from the snapshot \
                 {} alone (losing the changes the journal holds)",
                files.journal_path.display(),
                damaged.offset,
                damaged.what,
                files.path.display()
            ))
        })?;
        let snapshot_version = state.version;
        for &(offset, payload) in &records.payloads {
            let record_error = |what: String| {
                invalid(format!(
                    "{}: byte {offset}: {what}",
                    files.journal_path.display()
                ))
            };
            let change: Change = serde_json::from_slice(payload)
                .map_err(|e| record_error(format!("a record that does not parse: {e}")))?;
            // Already in the snapshot: a compaction stopped before dropping it.
            if change.version <= snapshot_version {
                continue;
            }
            // Each save is one version after the one before: a gap is a journal
            // that does not belong to this snapshot (files copied at different
            // times), never to be replayed on it.
            if change.version != state.version + 1 {
                return Err(record_error(format!(
                    "version {} does not follow version {}: this journal does not \
                     continue the snapshot {}",
                    change.version,
                    state.version,
                    files.path.display()
                )));
            }
            change.apply(&mut state);
        }
        if let Some(torn) = &records.torn {
            tracing::warn!(
                journal = %files.journal_path.display(),
                "{torn}: left out (a crash during its append); the journal is cut there"
            );
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&files.journal_path)?;
            file.set_len(records.whole_len as u64)?;
            file.sync_all()?;
        }
        *journal = Journal {
            last: Some(state.clone()),
            file: None,
            len: records.whole_len as u64,
            records: records.payloads.len() as u64,
            snapshot_len: snapshot.len() as u64,
        };
        let compact = journal.wants_compaction(files.limits);
        drop(journal);
        if compact {
            self.start_compaction();
        }
        Ok(Some(state))
    }

    /// Saves `state` durably, all or nothing: as one journal record of what
    /// differs from the state saved before it when its version is the next one
    /// (every change's), else (a first save, a state that goes back or skips
    /// versions) as a whole new snapshot.
    pub fn save(&self, state: &Persisted) -> std::io::Result<()> {
        let mut journal = lock(&self.inner.journal);
        if journal.last.is_none() {
            drop(journal);
            self.load()?;
            journal = lock(&self.inner.journal);
        }
        match &journal.last {
            Some(last) if state.version == last.version + 1 => {
                let payload = serde_json::to_vec(&Change::between(last, state))
                    .map_err(std::io::Error::other)?;
                self.inner
                    .append(&mut journal, &journal::frame(&payload)?)?;
                journal.last = Some(state.clone());
                let compact = journal.wants_compaction(self.inner.limits);
                drop(journal);
                if compact {
                    self.start_compaction();
                }
                Ok(())
            }
            Some(last) if last == state => Ok(()),
            _ => {
                drop(journal);
                self.save_whole(state)
            }
        }
    }

    /// Replaces snapshot and journal with `state`. A record newer than `state`
    /// must never be replayed on it: when the journal may hold one (`state` goes
    /// back) the journal is emptied first, else after the snapshot is in place
    /// (its records are then no newer than the snapshot, and a load skips them).
    fn save_whole(&self, state: &Persisted) -> std::io::Result<()> {
        let files = &self.inner;
        let _snapshotting = lock(&files.snapshotting);
        let mut journal = lock(&files.journal);
        let goes_back = journal
            .last
            .as_ref()
            .is_some_and(|last| last.version > state.version);
        journal.last = None;
        journal.file = None;
        let journal_exists = journal.len > 0 || files.journal_path.exists();
        if goes_back && journal_exists {
            replace_file(&files.journal_path, &[])?;
        }
        journal.snapshot_len = replace_file(&files.path, &snapshot_bytes(state)?)?;
        if !goes_back && journal_exists {
            replace_file(&files.journal_path, &[])?;
        }
        journal.len = 0;
        journal.records = 0;
        journal.last = Some(state.clone());
        Ok(())
    }

    /// Writes the state saved last as a new snapshot and drops the records it
    /// holds from the journal. Saves go on meanwhile: they wait only while the
    /// journal's newest records (those appended during the snapshot's write) are
    /// copied to the new journal.
    pub fn compact(&self) -> std::io::Result<()> {
        let files = &self.inner;
        let _snapshotting = lock(&files.snapshotting);
        let (state, covered) = {
            let journal = lock(&files.journal);
            match &journal.last {
                Some(state) if journal.len > 0 => (state.clone(), journal.len),
                _ => return Ok(()),
            }
        };
        let snapshot_len = replace_file(&files.path, &snapshot_bytes(&state)?)?;
        let mut journal = lock(&files.journal);
        journal.snapshot_len = snapshot_len;
        if journal.last.is_none() {
            // An append failed half-way: the next save reloads, and skips the
            // records the new snapshot holds.
            return Ok(());
        }
        let mut newer = vec![0; usize::try_from(journal.len.saturating_sub(covered)).unwrap_or(0)];
        if !newer.is_empty() {
            use std::os::unix::fs::FileExt;
            std::fs::File::open(&files.journal_path)?.read_exact_at(&mut newer, covered)?;
        }
        journal.file = None;
        replace_file(&files.journal_path, &newer)?;
        journal.len = newer.len() as u64;
        journal.records = journal::split(&newer).map_or(0, |r| r.payloads.len() as u64);
        Ok(())
    }

    /// Compacts on a thread of its own, unless a compaction is running.
    fn start_compaction(&self) {
        if self.inner.compacting.swap(true, Ordering::AcqRel) {
            return;
        }
        let store = self.clone();
        let spawned = std::thread::Builder::new()
            .name("scc-store-compact".into())
            .spawn(move || loop {
                let compacted = store.compact();
                store.inner.compacting.store(false, Ordering::Release);
                if let Err(e) = compacted {
                    tracing::warn!(
                        store = %store.path().display(),
                        "compaction failed, the journal keeps growing until the next: {e}"
                    );
                    break;
                }
                // The saves made during a long compaction may have passed the
                // limits again, and none may follow to start the next one.
                let again = lock(&store.inner.journal).wants_compaction(store.inner.limits);
                if !again || store.inner.compacting.swap(true, Ordering::AcqRel) {
                    break;
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("compaction not started: {e}");
            self.inner.compacting.store(false, Ordering::Release);
        }
    }

    /// Bytes and records in the journal now.
    pub fn journal_size(&self) -> (u64, u64) {
        let journal = lock(&self.inner.journal);
        (journal.len, journal.records)
    }
}

impl Files {
    /// Appends `record` with one write and one `fdatasync`. On failure the
    /// journal is cut back, so that no half record precedes the next.
    fn append(&self, journal: &mut Journal, record: &[u8]) -> std::io::Result<()> {
        if journal.file.is_none() {
            let created = !self.journal_path.exists();
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.journal_path)?;
            if created {
                std::fs::File::open(parent_dir(&self.journal_path))?.sync_all()?;
            }
            journal.file = Some(file);
        }
        let Some(file) = journal.file.as_mut() else {
            return Err(std::io::Error::other("journal not open"));
        };
        match file.write_all(record).and_then(|()| file.sync_data()) {
            Ok(()) => {
                journal.len += record.len() as u64;
                journal.records += 1;
                Ok(())
            }
            Err(e) => {
                if file
                    .set_len(journal.len)
                    .and_then(|()| file.sync_data())
                    .is_err()
                {
                    journal.last = None;
                    journal.file = None;
                }
                Err(e)
            }
        }
    }
}

impl Journal {
    fn wants_compaction(&self, limits: CompactionLimits) -> bool {
        self.records >= limits.records || self.len > limits.journal_bytes.max(self.snapshot_len)
    }
}

/// A snapshot's bytes: `state` as compact JSON.
fn snapshot_bytes(state: &Persisted) -> std::io::Result<Vec<u8>> {
    serde_json::to_vec(state).map_err(std::io::Error::other)
}

fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Replaces `path` with `bytes` atomically and durably: a temporary file in the
/// same directory, flushed, renamed over it, the directory flushed. Returns the
/// length written.
fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<u64> {
    let dir = parent_dir(path);
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("scc-state")
    ));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(bytes.len() as u64)
}
#[cfg(test)]
mod tests;
