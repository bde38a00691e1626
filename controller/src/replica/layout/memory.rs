//! A [`Kv`] in memory for the layout's tests: keys with their history (so a
//! range read at an old revision sees the keys as they were, as etcd's MVCC
//! does), a leader key's revision to guard writes with, and fault injection: the
//! Nth guarded write fails before it is applied (a crash or a lost request) or
//! after (a lost answer).

use super::{Kv, Op, Page};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// When a guarded write fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Nothing is applied, an error is returned.
    Before,
    /// The write is applied, an error is returned.
    After,
}

/// A key's values by the revision that set them (`None`: deleted).
type History = Vec<(i64, Option<Vec<u8>>)>;

#[derive(Debug, Default)]
struct Data {
    revision: i64,
    history: BTreeMap<String, History>,
    leader: i64,
    writes: usize,
    fault: Option<(usize, Fault)>,
    largest_write: usize,
}

/// The fake store.
#[derive(Debug, Default)]
pub struct MemoryKv {
    data: Mutex<Data>,
}

impl MemoryKv {
    /// A store whose leader key has the create revision `leader`.
    pub fn with_leader(leader: i64) -> MemoryKv {
        let kv = MemoryKv::default();
        kv.set_leader(leader);
        kv
    }

    fn data(&self) -> std::sync::MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Another replica takes the leader key.
    pub fn set_leader(&self, leader: i64) {
        self.data().leader = leader;
    }

    /// The `nth` guarded write from now on (0: the next) fails as `fault`.
    pub fn fail(&self, nth: usize, fault: Fault) {
        let mut d = self.data();
        d.fault = Some((d.writes + nth, fault));
    }

    /// Guarded writes attempted so far.
    pub fn writes(&self) -> usize {
        self.data().writes
    }

    /// The most bytes one guarded write carried.
    pub fn largest_write(&self) -> usize {
        self.data().largest_write
    }

    /// Puts `key` unguarded (as an older `scc` did).
    pub fn put(&self, key: &str, value: &[u8]) {
        let mut d = self.data();
        d.revision += 1;
        let rev = d.revision;
        d.history
            .entry(key.to_string())
            .or_default()
            .push((rev, Some(value.to_vec())));
    }

    /// The keys that hold a value now.
    pub fn live_keys(&self) -> Vec<String> {
        let d = self.data();
        d.history
            .iter()
            .filter(|(_, h)| h.last().is_some_and(|(_, v)| v.is_some()))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

fn at(history: &History, revision: i64) -> Option<&Vec<u8>> {
    history
        .iter()
        .rev()
        .find(|(r, _)| *r <= revision)
        .and_then(|(_, v)| v.as_ref())
}

impl Kv for MemoryKv {
    fn get(&self, key: &str) -> std::io::Result<(Option<Vec<u8>>, i64)> {
        let d = self.data();
        let value = d.history.get(key).and_then(|h| at(h, d.revision)).cloned();
        Ok((value, d.revision))
    }

    fn range(&self, from: &str, end: &str, revision: i64, limit: i64) -> std::io::Result<Page> {
        let d = self.data();
        let mut page = Page::default();
        for (k, h) in d.history.range(from.to_string()..end.to_string()) {
            let Some(v) = at(h, revision) else { continue };
            if page.kvs.len() == usize::try_from(limit).unwrap_or(usize::MAX) {
                page.more = true;
                break;
            }
            page.kvs.push((k.clone(), v.clone()));
        }
        Ok(page)
    }

    fn guarded(&self, leader: i64, ops: Vec<Op>) -> std::io::Result<bool> {
        let mut d = self.data();
        let nth = d.writes;
        d.writes += 1;
        let fault = d.fault.filter(|(at, _)| *at == nth).map(|(_, f)| f);
        if fault == Some(Fault::Before) {
            return Err(std::io::Error::other("injected: lost before"));
        }
        if leader != d.leader {
            return Ok(false);
        }
        let size = ops
            .iter()
            .map(|op| match op {
                Op::Put(k, v) => k.len() + v.len(),
                Op::DeleteRange(f, e) => f.len() + e.len(),
            })
            .sum();
        d.largest_write = d.largest_write.max(size);
        d.revision += 1;
        let rev = d.revision;
        for op in ops {
            match op {
                Op::Put(k, v) => d.history.entry(k).or_default().push((rev, Some(v))),
                Op::DeleteRange(from, end) => {
                    for (_, h) in d.history.range_mut(from..end) {
                        if h.last().is_some_and(|(_, v)| v.is_some()) {
                            h.push((rev, None));
                        }
                    }
                }
            }
        }
        if fault == Some(Fault::After) {
            return Err(std::io::Error::other("injected: answer lost"));
        }
        Ok(true)
    }
}
