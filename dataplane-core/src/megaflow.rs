//! The wildcard (megaflow) cache in front of the classifier.
//!
//! An entry is keyed by the bits of the packet that its classification consulted
//! (the union of the masks of the subtables probed, see
//! [`Pipeline::classify_consulting`]) and holds that classification. So a new
//! connection between known hosts (another source port, the same addresses) hits
//! the entry its first packet would have made, where an exact-match cache misses.
//! Lookups probe once per distinct mask among the cached entries, as Open vSwitch's
//! datapath classifier does.
//!
//! All storage is sized when the cache is made: entries, their classifications
//! and the hash index. A miss classifies into the next free entry and allocates
//! nothing (unless a classification outgrows the room each entry was given, once).
//! When the entries or the distinct masks run out, the cache starts over. It is
//! tied to [`Pipeline::generation`] like the exact-match cache: any table change
//! empties it before the next lookup, so it never serves a decision the tables no
//! longer make. It decides nothing itself.

use crate::cache::CacheStats;
use crate::pipeline::{Classification, Pipeline};
use hashbrown::HashTable;
use openflow::FlowKey;
use rustc_hash::FxBuildHasher;
use std::hash::BuildHasher;

/// Entries kept at most by [`MegaflowCache::default`].
pub const DEFAULT_MEGAFLOWS: usize = 4_096;

/// Distinct masks kept at most: each costs every lookup one probe.
pub const MAX_MASKS: usize = 32;

/// Room each entry's classification gets up front: actions, and tables traversed.
const ACTIONS_ROOM: usize = 8;
const TABLES_ROOM: usize = 4;

#[derive(Debug)]
struct Megaflow {
    /// Index into the cache's masks.
    mask: usize,
    /// The packet's key under that mask.
    key: FlowKey,
    classification: Classification,
}

/// The cache itself.
#[derive(Debug)]
pub struct MegaflowCache {
    entries: Vec<Megaflow>,
    /// Entries in use: `entries[..used]`.
    used: usize,
    /// Entry indices by the hash of (mask index, masked key).
    index: HashTable<usize>,
    masks: Vec<FlowKey>,
    generation: u64,
    stats: CacheStats,
}

impl Default for MegaflowCache {
    fn default() -> Self {
        MegaflowCache::with_capacity(DEFAULT_MEGAFLOWS)
    }
}

fn slot_hash(mask: usize, key: &FlowKey) -> u64 {
    FxBuildHasher.hash_one((mask, key))
}

impl MegaflowCache {
    /// A cache of at most `capacity` megaflows, all of its memory taken now.
    pub fn with_capacity(capacity: usize) -> MegaflowCache {
        let capacity = capacity.max(1);
        MegaflowCache {
            entries: (0..capacity)
                .map(|_| Megaflow {
                    mask: 0,
                    key: FlowKey::default(),
                    classification: Classification::with_capacity(ACTIONS_ROOM, TABLES_ROOM),
                })
                .collect(),
            used: 0,
            index: HashTable::with_capacity(capacity),
            masks: Vec::with_capacity(MAX_MASKS),
            generation: u64::MAX,
            stats: CacheStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Number of cached megaflows.
    pub fn len(&self) -> usize {
        self.used
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// Number of distinct masks among the cached megaflows.
    pub fn masks(&self) -> usize {
        self.masks.len()
    }

    fn clear(&mut self) {
        self.used = 0;
        self.index.clear();
        self.masks.clear();
    }

    fn find(&self, key: &FlowKey) -> Option<usize> {
        self.masks.iter().enumerate().find_map(|(m, mask)| {
            let masked = key.and(mask);
            let entries = &self.entries;
            self.index
                .find(slot_hash(m, &masked), |&i| {
                    entries[i].mask == m && entries[i].key == masked
                })
                .copied()
        })
    }

    /// The classification of `key` under `pipeline`: from a megaflow when one
    /// covers it and is still valid, else from the classifier (and then cached).
    pub fn lookup(&mut self, pipeline: &Pipeline, key: &FlowKey) -> &Classification {
        if self.generation != pipeline.generation() {
            if self.used > 0 {
                self.stats.invalidations += 1;
            }
            self.clear();
            self.generation = pipeline.generation();
        }
        if let Some(i) = self.find(key) {
            self.stats.hits += 1;
            return &self.entries[i].classification;
        }
        self.stats.misses += 1;
        if self.used == self.entries.len() {
            self.clear();
        }
        let slot = self.used;
        let mut consulted = FlowKey::default();
        pipeline.classify_consulting(key, &mut self.entries[slot].classification, &mut consulted);
        let mask = match self.masks.iter().position(|m| *m == consulted) {
            Some(m) => m,
            None => {
                if self.masks.len() == MAX_MASKS {
                    // Starting over keeps `slot` (entry 0 after the clear holds
                    // nothing the index knows); its classification is moved below.
                    self.clear();
                }
                self.masks.push(consulted);
                self.masks.len() - 1
            }
        };
        // After a clear the new megaflow goes first; its classification is already
        // in `slot`, so the two entries trade places (no copy, no allocation).
        let at = self.used;
        self.entries.swap(slot, at);
        let masked = key.and(&consulted);
        let entry = &mut self.entries[at];
        entry.mask = mask;
        entry.key = masked;
        let entries = &self.entries;
        self.index
            .insert_unique(slot_hash(mask, &masked), at, |&i| {
                slot_hash(entries[i].mask, &entries[i].key)
            });
        self.used += 1;
        &self.entries[at].classification
    }
}

#[cfg(test)]
mod tests;
