//! Tuple-space search: the classifier behind each flow table.
//!
//! Entries are grouped by mask (a "subtable"); within a subtable, entries are found
//! by one hash lookup of the packet's key under that mask. A lookup visits the
//! subtables from the highest priority they hold down and stops as soon as no
//! remaining subtable can beat the best match found, so its cost grows with the
//! number of distinct masks, not the number of rules. Among matches of equal
//! priority the oldest entry wins, as a linear scan in insertion order would decide.
//! This module only answers "which entry"; it owns no entries and no counters.

use crate::cow::Shards;
use crate::flow_id::FlowId;
use hashbrown::HashTable;
use openflow::flow::{FlowKey, FlowMatch};
use rustc_hash::{FxBuildHasher, FxHashMap};
use std::collections::BTreeMap;
use std::hash::BuildHasher;

/// One entry as the classifier knows it: priority, age, id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    priority: u16,
    seq: u64,
    id: FlowId,
}

impl Slot {
    /// True when `self` wins over `other`.
    fn beats(&self, other: &Slot) -> bool {
        self.priority > other.priority || (self.priority == other.priority && self.seq < other.seq)
    }
}

/// The entries of one masked key, best first.
#[derive(Clone, Debug)]
struct Bucket {
    key: FlowKey,
    slots: Vec<Slot>,
}

fn key_hash(key: &FlowKey) -> u64 {
    FxBuildHasher.hash_one(key)
}

#[derive(Clone, Debug, Default)]
struct Subtable {
    mask: FlowKey,
    /// Buckets by masked key, in shards copied on write: a copy of the classifier
    /// shares every shard a later change does not touch.
    buckets: Shards<HashTable<Bucket>>,
    /// How many entries of each priority the subtable holds.
    priorities: BTreeMap<u16, usize>,
}

impl Subtable {
    fn max_priority(&self) -> Option<u16> {
        self.priorities.keys().next_back().copied()
    }
}

/// The classifier of one table.
#[derive(Clone, Debug, Default)]
pub struct TupleSpace {
    subtables: Vec<Subtable>,
    by_mask: FxHashMap<FlowKey, usize>,
    /// Subtable indices, highest `max_priority` first (empty ones last).
    visit: Vec<usize>,
}

impl TupleSpace {
    fn resort(&mut self) {
        let subtables = &self.subtables;
        self.visit
            .sort_by_key(|i| std::cmp::Reverse(subtables[*i].max_priority().map_or(-1, i32::from)));
    }

    /// Adds an entry; `seq` orders entries of equal priority (lower is older).
    pub fn insert(&mut self, matcher: &FlowMatch, priority: u16, seq: u64, id: FlowId) {
        let mask = *matcher.mask();
        let index = match self.by_mask.get(&mask) {
            Some(i) => *i,
            None => {
                self.subtables.push(Subtable {
                    mask,
                    ..Subtable::default()
                });
                let i = self.subtables.len() - 1;
                self.by_mask.insert(mask, i);
                self.visit.push(i);
                i
            }
        };
        let st = &mut self.subtables[index];
        let before = st.max_priority();
        let slot = Slot { priority, seq, id };
        let key = *matcher.key();
        let hash = key_hash(&key);
        let bucket = st
            .buckets
            .shard_mut(hash)
            .entry(hash, |b| b.key == key, |b| key_hash(&b.key))
            .or_insert_with(|| Bucket {
                key,
                slots: Vec::new(),
            })
            .into_mut();
        let at = bucket.slots.partition_point(|s| s.beats(&slot));
        bucket.slots.insert(at, slot);
        *st.priorities.entry(priority).or_default() += 1;
        if st.max_priority() != before {
            self.resort();
        }
    }

    /// Removes an entry added with the same match and priority.
    pub fn remove(&mut self, matcher: &FlowMatch, priority: u16, id: FlowId) {
        let Some(&index) = self.by_mask.get(matcher.mask()) else {
            return;
        };
        let st = &mut self.subtables[index];
        let before = st.max_priority();
        let key = *matcher.key();
        let hash = key_hash(&key);
        let Ok(mut bucket) = st
            .buckets
            .shard_mut(hash)
            .find_entry(hash, |b| b.key == key)
        else {
            return;
        };
        let slots = &mut bucket.get_mut().slots;
        let Some(at) = slots.iter().position(|s| s.id == id) else {
            return;
        };
        slots.remove(at);
        if slots.is_empty() {
            bucket.remove();
        }
        if let Some(n) = st.priorities.get_mut(&priority) {
            *n -= 1;
            if *n == 0 {
                st.priorities.remove(&priority);
            }
        }
        if st.max_priority() != before {
            self.resort();
        }
    }

    /// The best entry matching `packet`.
    pub fn lookup(&self, packet: &FlowKey) -> Option<FlowId> {
        self.lookup_consulting(packet, None)
    }

    /// [`Self::lookup`], adding to `consulted` the mask of every subtable it
    /// probed: the bits of `packet` the answer depends on. Any packet that agrees
    /// with `packet` on those bits gets the same answer, which is what a
    /// wildcard (megaflow) cache entry needs to know.
    /// Without `consulted`, a plain lookup: the masks are not gathered.
    pub fn lookup_consulting(
        &self,
        packet: &FlowKey,
        mut consulted: Option<&mut FlowKey>,
    ) -> Option<FlowId> {
        self.lookup_probing(packet, |mask| {
            if let Some(c) = consulted.as_deref_mut() {
                *c = c.or(mask);
            }
        })
    }

    fn lookup_probing(&self, packet: &FlowKey, mut probed: impl FnMut(&FlowKey)) -> Option<FlowId> {
        let mut best: Option<Slot> = None;
        for &i in &self.visit {
            let st = &self.subtables[i];
            let Some(max) = st.max_priority() else { break };
            if best.is_some_and(|b| b.priority > max) {
                break;
            }
            probed(&st.mask);
            let masked = packet.and(&st.mask);
            let hash = key_hash(&masked);
            if let Some(first) = st
                .buckets
                .shard(hash)
                .find(hash, |b| b.key == masked)
                .and_then(|b| b.slots.first())
            {
                if best.is_none_or(|b| first.beats(&b)) {
                    best = Some(*first);
                }
            }
        }
        best.map(|b| b.id)
    }

    /// Number of distinct masks in use.
    pub fn subtables(&self) -> usize {
        self.subtables
            .iter()
            .filter(|s| !s.priorities.is_empty())
            .count()
    }
}
