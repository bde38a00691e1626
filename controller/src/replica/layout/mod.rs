//! How the replicated controllers' state is laid out in etcd's keys, so that a
//! change writes only what it changed, in one leader-guarded transaction, and a
//! state of any size is written and read within etcd's request limits.
//!
//! Under `<prefix>v2/`:
//! - `current`: the pointer readers follow: the generation of the snapshot in
//!   force, the version it holds, its chunk count and length.
//! - `snap/<generation>/<index>`: that snapshot (the whole [`Persisted`] as
//!   compact JSON) cut into chunks of at most [`CHUNK_BYTES`].
//! - `rec/<version>`: one record per change after the snapshot: what the change
//!   changed (the embedded store's journal record, [`crate::store`]), at most
//!   [`RECORD_MAX_BYTES`].
//!
//! A change is one guarded put of its record. A change too big for a record (a
//! first start, an `inventory import`, a state that goes back) and the periodic
//! compaction write a new generation's chunks first, each in a guarded request
//! of its own (no reader looks there yet), then switch `current` to it in one
//! guarded transaction that also deletes the records it holds and every other
//! generation's chunks: a crash at any point leaves `current` naming a whole
//! snapshot, and the records after it. A read takes `current` and then reads
//! the rest at that same store revision, in pages, so it never sees half a
//! change and never receives one message of more than a few MiB. A store of the
//! first layout (one JSON document under `<prefix>state`) is read as it is and
//! rewritten in this layout, the old key deleted, by the first leader's save.
//!
//! This module owns the keys and that protocol; the transport is a [`Kv`] (etcd
//! in [`super::etcd_store`], a fake with fault injection in the tests). It never
//! decides who leads: every write carries the leadership the caller holds.

#[cfg(test)]
mod memory;
#[cfg(test)]
mod tests;

use crate::store::{apply_change_record, change_record, Persisted};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Largest snapshot chunk: one chunk is one request, well under etcd's default
/// `--max-request-bytes` (1.5 MiB).
pub const CHUNK_BYTES: usize = 1 << 20;

/// Largest change written as a record; a bigger change writes a new generation.
pub const RECORD_MAX_BYTES: usize = 256 << 10;

/// Chunks per read request (a response stays under 4 MiB with room to spare).
const CHUNKS_PER_PAGE: i64 = 2;

/// Records per read request.
const RECORDS_PER_PAGE: i64 = 8;

/// One write of a guarded transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Sets a key.
    Put(String, Vec<u8>),
    /// Deletes the keys in `[from, end)`.
    DeleteRange(String, String),
}

/// Keys and values of a range read, in key order; `more` when the limit cut it.
#[derive(Debug, Default)]
pub struct Page {
    /// The keys read and their values.
    pub kvs: Vec<(String, Vec<u8>)>,
    /// Keys remain after the last one.
    pub more: bool,
}

/// What the layout needs of a key-value store (etcd's v3 API, or a fake).
pub trait Kv: Send + Sync {
    /// `key`'s value, if any, and the store revision it was read at.
    fn get(&self, key: &str) -> std::io::Result<(Option<Vec<u8>>, i64)>;
    /// At most `limit` keys of `[from, end)` as they were at `revision`.
    fn range(&self, from: &str, end: &str, revision: i64, limit: i64) -> std::io::Result<Page>;
    /// Applies `ops` in one transaction if the leader key still has the create
    /// revision `leader`; `Ok(false)` (nothing written) if not.
    fn guarded(&self, leader: i64, ops: Vec<Op>) -> std::io::Result<bool>;
}

/// The layout's key names under a prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    /// The first layout's single document.
    pub v1_state: String,
    /// Everything of this layout: what a follower watches.
    pub root: String,
    current: String,
    snap: String,
    rec: String,
}

impl Keys {
    /// The keys under `prefix` (such as `/supercloud/`).
    pub fn new(prefix: &str) -> Keys {
        let root = format!("{prefix}v2/");
        Keys {
            v1_state: format!("{prefix}state"),
            current: format!("{root}current"),
            snap: format!("{root}snap/"),
            rec: format!("{root}rec/"),
            root,
        }
    }

    fn generation(&self, generation: &str) -> String {
        format!("{}{generation}/", self.snap)
    }

    fn chunk(&self, generation: &str, index: usize) -> String {
        format!("{}{index:08}", self.generation(generation))
    }

    /// The key of the record of `version`.
    pub fn record(&self, version: u64) -> String {
        format!("{}{version:020}", self.rec)
    }

    /// The version a record key names, if `key` is one.
    pub fn record_version(&self, key: &str) -> Option<u64> {
        key.strip_prefix(&self.rec)?.parse().ok()
    }

    /// The end of the range a follower watches, from [`Keys::root`]: the
    /// pointer and the records, not the snapshot's chunks (megabytes it reads
    /// itself when the pointer moves).
    pub fn watch_end(&self) -> String {
        prefix_end(&self.rec)
    }

    /// True for the pointer key.
    pub fn is_current(&self, key: &str) -> bool {
        key == self.current
    }
}

/// The end of the range of every key starting with `prefix`.
fn prefix_end(prefix: &str) -> String {
    let mut end = prefix.to_string();
    // Every prefix here ends in '/': the next byte is '0'.
    end.pop();
    end.push('0');
    end
}

/// The value of the `current` key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Pointer {
    generation: String,
    version: u64,
    chunks: usize,
    bytes: usize,
}

/// When the compaction writes a new generation: the records since the
/// snapshot number `records`, or weigh more than both `bytes` and the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionLimits {
    /// Records after the snapshot.
    pub records: usize,
    /// Bytes of records, unless the snapshot is larger.
    pub bytes: usize,
}

impl Default for CompactionLimits {
    fn default() -> Self {
        CompactionLimits {
            records: 1_000,
            bytes: 8 << 20,
        }
    }
}

/// A state read at one store revision.
#[derive(Debug, Clone)]
pub struct Read {
    /// The state (`None`: the store holds none yet).
    pub state: Option<Persisted>,
    /// The store revision it was read at: a watch continues after it.
    pub revision: i64,
    /// The pointer in force (`None`: an empty store, or the first layout).
    pointer: Option<Pointer>,
    /// Bytes of each record after the snapshot, oldest first.
    records: VecDeque<usize>,
}

/// What this replica knows the store holds, as it last read or wrote it.
#[derive(Debug)]
struct Head {
    read: Read,
    /// The leadership it was read or written under: a save under another reads
    /// again first (the store may have changed meanwhile).
    leader: Option<i64>,
    /// New at every read and every switch of the pointer (from
    /// [`Layout::epochs`], never reused): a compaction prepared before one is
    /// abandoned, also when a failed save made this replica read again.
    epoch: u64,
}

/// The state in a [`Kv`], in this layout.
pub struct Layout<K> {
    kv: K,
    keys: Keys,
    limits: CompactionLimits,
    head: Mutex<Option<Head>>,
    compacting: AtomicBool,
    /// Makes each generation this replica writes unique under one leadership.
    written: AtomicU64,
    /// The last epoch handed to a [`Head`]: a count that never goes back, so
    /// a head read again after an unknown outcome never looks like the head a
    /// compaction started from.
    epochs: AtomicU64,
}

impl<K> std::fmt::Debug for Layout<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layout")
            .field("root", &self.keys.root)
            .finish_non_exhaustive()
    }
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message)
}

fn not_leading() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        "leadership lost (another replica holds the leader key): write refused",
    )
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl<K: Kv + 'static> Layout<K> {
    /// The layout under `prefix` in `kv`.
    pub fn new(kv: K, prefix: &str, limits: CompactionLimits) -> Arc<Layout<K>> {
        Arc::new(Layout {
            kv,
            keys: Keys::new(prefix),
            limits,
            head: Mutex::new(None),
            compacting: AtomicBool::new(false),
            written: AtomicU64::new(0),
            epochs: AtomicU64::new(0),
        })
    }

    /// The key names.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The transport.
    pub fn kv(&self) -> &K {
        &self.kv
    }

    /// Reads the state in force, without remembering it (a follower's read).
    pub fn read(&self) -> std::io::Result<Read> {
        let (pointer, revision) = self.kv.get(&self.keys.current)?;
        let Some(pointer) = pointer else {
            // The first layout's document, or nothing yet. It was written whole
            // under a 1.5 MiB request limit: one read fits the client's limit.
            let (v1, revision) = self.kv.get(&self.keys.v1_state)?;
            let state = v1
                .map(|bytes| serde_json::from_slice::<Persisted>(&bytes))
                .transpose()
                .map_err(|e| invalid(format!("{}: {e}", self.keys.v1_state)))?;
            return Ok(Read {
                state,
                revision,
                pointer: None,
                records: VecDeque::new(),
            });
        };
        let pointer: Pointer = serde_json::from_slice(&pointer)
            .map_err(|e| invalid(format!("{}: {e}", self.keys.current)))?;
        let generation = self.keys.generation(&pointer.generation);
        // The pointer's size is read from the store, not trusted for an
        // allocation: the room made up front is bounded, the chunks grow it,
        // and a size that does not match is the error below.
        let mut snapshot = Vec::with_capacity(pointer.bytes.min(64 << 20));
        let mut chunks = 0;
        self.pages(
            &generation,
            &prefix_end(&generation),
            revision,
            CHUNKS_PER_PAGE,
            |_, v| {
                snapshot.extend_from_slice(&v);
                chunks += 1;
                Ok(())
            },
        )?;
        if chunks != pointer.chunks || snapshot.len() != pointer.bytes {
            return Err(invalid(format!(
                "{generation}: {chunks} chunks of {} bytes where {} names {} of {}",
                snapshot.len(),
                self.keys.current,
                pointer.chunks,
                pointer.bytes
            )));
        }
        let mut state: Persisted =
            serde_json::from_slice(&snapshot).map_err(|e| invalid(format!("{generation}: {e}")))?;
        if state.version != pointer.version {
            return Err(invalid(format!(
                "{generation}: version {} where {} names {}",
                state.version, self.keys.current, pointer.version
            )));
        }
        let mut records = VecDeque::new();
        let from = self.keys.record(pointer.version + 1);
        self.pages(
            &from,
            &prefix_end(&self.keys.rec),
            revision,
            RECORDS_PER_PAGE,
            |k, v| {
                apply_change_record(&mut state, &v).map_err(|e| invalid(format!("{k}: {e}")))?;
                records.push_back(v.len());
                Ok(())
            },
        )?;
        Ok(Read {
            state: Some(state),
            revision,
            pointer: Some(pointer),
            records,
        })
    }

    /// Every key of `[from, end)` at `revision`, `limit` a request, in order.
    fn pages(
        &self,
        from: &str,
        end: &str,
        revision: i64,
        limit: i64,
        mut each: impl FnMut(String, Vec<u8>) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let mut next = from.to_string();
        loop {
            let page = self.kv.range(&next, end, revision, limit)?;
            let last = page.kvs.last().map(|(k, _)| k.clone());
            for (k, v) in page.kvs {
                each(k, v)?;
            }
            match last {
                Some(mut key) if page.more => {
                    // The smallest key after the last one read.
                    key.push('\0');
                    next = key;
                }
                _ => return Ok(()),
            }
        }
    }

    /// Reads the state in force and remembers it as the base of the next save,
    /// made under the leadership `leader` (if any).
    pub fn load(&self, leader: Option<i64>) -> std::io::Result<Read> {
        let read = self.read()?;
        let mut head = lock(&self.head);
        let epoch = self.new_epoch();
        *head = Some(Head {
            read: read.clone(),
            leader,
            epoch,
        });
        Ok(read)
    }

    /// Saves `state` under the leadership `leader`: as one record when it is the
    /// next version and its record is small enough, else as a new generation.
    /// An error means nothing is in force that was not before (for a
    /// transaction whose answer was lost, possibly the change: the next save
    /// reads the store again first).
    pub fn save(self: &Arc<Self>, leader: i64, state: &Persisted) -> std::io::Result<()> {
        let mut head = lock(&self.head);
        if head.as_ref().is_none_or(|h| h.leader != Some(leader)) {
            drop(head);
            self.load(Some(leader))?;
            head = lock(&self.head);
        }
        let Some(h) = head.as_mut() else {
            return Err(std::io::Error::other("the store was not read"));
        };
        let saved = self.save_on(h, leader, state);
        if saved.is_err() {
            *head = None;
            return saved;
        }
        let compact = head
            .as_ref()
            .is_some_and(|h| self.wants_compaction(&h.read));
        drop(head);
        if compact {
            self.start_compaction(leader);
        }
        Ok(())
    }

    fn save_on(&self, head: &mut Head, leader: i64, state: &Persisted) -> std::io::Result<()> {
        let before = &head.read;
        if before.state.as_ref() == Some(state) && before.pointer.is_some() {
            return Ok(());
        }
        let next = before.pointer.is_some()
            && before
                .state
                .as_ref()
                .is_some_and(|b| b.version + 1 == state.version);
        if next {
            let base = before.state.as_ref().expect("checked");
            let record = change_record(base, state)?;
            if record.len() <= RECORD_MAX_BYTES {
                let len = record.len();
                let put = Op::Put(self.keys.record(state.version), record);
                if !self.kv.guarded(leader, vec![put])? {
                    return Err(not_leading());
                }
                head.read.state = Some(state.clone());
                head.read.records.push_back(len);
                return Ok(());
            }
        }
        // Every record goes: none of them continues this snapshot.
        let records = (self.keys.rec.clone(), prefix_end(&self.keys.rec));
        let pointer = self.write_chunks(leader, state)?;
        let pointer = self.switch(leader, pointer, records)?;
        head.read = Read {
            state: Some(state.clone()),
            revision: head.read.revision,
            pointer: Some(pointer),
            records: VecDeque::new(),
        };
        head.epoch = self.new_epoch();
        Ok(())
    }

    /// Writes `state` as a new generation's chunks, each in a guarded request
    /// of its own; nothing reads them before [`Layout::switch`].
    fn write_chunks(&self, leader: i64, state: &Persisted) -> std::io::Result<Pointer> {
        let bytes = serde_json::to_vec(state).map_err(std::io::Error::other)?;
        let generation = format!(
            "{leader:020}-{:010}",
            self.written.fetch_add(1, Ordering::Relaxed)
        );
        let mut chunks = 0;
        for (index, chunk) in bytes.chunks(CHUNK_BYTES).enumerate() {
            let put = Op::Put(self.keys.chunk(&generation, index), chunk.to_vec());
            if !self.kv.guarded(leader, vec![put])? {
                return Err(not_leading());
            }
            chunks += 1;
        }
        Ok(Pointer {
            generation,
            version: state.version,
            chunks,
            bytes: bytes.len(),
        })
    }

    /// Puts `pointer` in force in one guarded transaction that also deletes
    /// `records` (a key range), the first layout's document and every other
    /// generation (those before, and any a crashed writer left half-written).
    fn switch(
        &self,
        leader: i64,
        pointer: Pointer,
        records: (String, String),
    ) -> std::io::Result<Pointer> {
        let this = self.keys.generation(&pointer.generation);
        let value = serde_json::to_vec(&pointer).map_err(std::io::Error::other)?;
        let switch = vec![
            Op::Put(self.keys.current.clone(), value),
            Op::DeleteRange(records.0, records.1),
            Op::DeleteRange(
                self.keys.v1_state.clone(),
                format!("{}\0", self.keys.v1_state),
            ),
            Op::DeleteRange(self.keys.snap.clone(), this.clone()),
            Op::DeleteRange(prefix_end(&this), prefix_end(&self.keys.snap)),
        ];
        if !self.kv.guarded(leader, switch)? {
            return Err(not_leading());
        }
        Ok(pointer)
    }

    fn new_epoch(&self) -> u64 {
        self.epochs.fetch_add(1, Ordering::AcqRel) + 1
    }

    fn wants_compaction(&self, read: &Read) -> bool {
        let bytes: usize = read.records.iter().sum();
        let snapshot = read.pointer.as_ref().map_or(0, |p| p.bytes);
        read.records.len() >= self.limits.records || bytes > self.limits.bytes.max(snapshot)
    }

    /// Writes the state saved last as a new generation and drops the records it
    /// holds. Saves go on while its chunks are written; they wait only for the
    /// switch. Abandoned (nothing in force changes) if another switch came first
    /// or the leadership changed.
    pub fn compact(&self, leader: i64) -> std::io::Result<()> {
        let (state, epoch) = {
            let head = lock(&self.head);
            match head.as_ref() {
                Some(h) if h.leader == Some(leader) && !h.read.records.is_empty() => {
                    match &h.read.state {
                        Some(state) => (state.clone(), h.epoch),
                        None => return Ok(()),
                    }
                }
                _ => return Ok(()),
            }
        };
        let prepared = self.write_chunks(leader, &state)?;
        let records = (self.keys.rec.clone(), self.keys.record(state.version + 1));
        let mut head = lock(&self.head);
        let Some(h) = head
            .as_mut()
            .filter(|h| h.epoch == epoch && h.leader == Some(leader))
        else {
            return Ok(());
        };
        let pointer = match self.switch(leader, prepared, records) {
            Ok(pointer) => pointer,
            Err(e) => {
                // The switch's outcome is not known: read again before saving.
                *head = None;
                return Err(e);
            }
        };
        let held =
            usize::try_from(pointer.version - h.read.pointer.as_ref().map_or(0, |p| p.version))
                .unwrap_or(usize::MAX);
        h.read.records.drain(..held.min(h.read.records.len()));
        h.read.pointer = Some(pointer);
        h.epoch = self.new_epoch();
        Ok(())
    }

    /// Compacts on a thread of its own, unless a compaction is running.
    fn start_compaction(self: &Arc<Self>, leader: i64) {
        if self.compacting.swap(true, Ordering::AcqRel) {
            return;
        }
        let layout = self.clone();
        let spawned = std::thread::Builder::new()
            .name("scc-etcd-compact".into())
            .spawn(move || {
                if let Err(e) = layout.compact(leader) {
                    tracing::warn!("etcd store compaction: {e}; records accumulate until the next");
                }
                layout.compacting.store(false, Ordering::Release);
            });
        if let Err(e) = spawned {
            tracing::warn!("etcd store compaction not started: {e}");
            self.compacting.store(false, Ordering::Release);
        }
    }
}
