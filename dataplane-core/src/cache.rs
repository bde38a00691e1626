//! The exact-match flow cache in front of the classifier: what `scd` ran before
//! the wildcard cache (`megaflow`), kept as its baseline in the benchmarks and for
//! tools that classify many packets of few flows.
//!
//! A hit maps a packet's whole [`FlowKey`] to the flattened actions and the entries
//! the classifier chose for it, so a packet of a known flow costs one hash lookup.
//! The cache is tied to [`Pipeline::generation`]: any table change empties it before
//! the next lookup, so it can never serve a decision the tables no longer make. It
//! never decides anything itself; a miss always goes to the classifier.

use crate::pipeline::{Classification, Pipeline};
use openflow::FlowKey;
use rustc_hash::FxHashMap;
use std::collections::hash_map::Entry;

/// Entries kept at most; when full the cache starts over (cheap, and correct).
pub const DEFAULT_CAPACITY: usize = 65_536;

/// Hit/miss counters of the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that went to the classifier.
    pub misses: u64,
    /// Times the cache was emptied because the tables changed.
    pub invalidations: u64,
}

/// The cache itself.
#[derive(Debug)]
pub struct FlowCache {
    map: FxHashMap<FlowKey, Classification>,
    generation: u64,
    capacity: usize,
    stats: CacheStats,
}

impl Default for FlowCache {
    fn default() -> Self {
        FlowCache::with_capacity(DEFAULT_CAPACITY)
    }
}

impl FlowCache {
    /// A cache holding at most `capacity` flows.
    pub fn with_capacity(capacity: usize) -> FlowCache {
        FlowCache {
            map: FxHashMap::default(),
            generation: u64::MAX,
            capacity: capacity.max(1),
            stats: CacheStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Number of cached flows.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The classification of `key` under `pipeline`: from the cache when it is there
    /// and still valid, else from the classifier (and then cached).
    pub fn lookup(&mut self, pipeline: &Pipeline, key: &FlowKey) -> &Classification {
        if self.generation != pipeline.generation() {
            if !self.map.is_empty() {
                self.stats.invalidations += 1;
            }
            self.map.clear();
            self.generation = pipeline.generation();
        }
        if self.map.len() >= self.capacity && !self.map.contains_key(key) {
            self.map.clear();
        }
        match self.map.entry(*key) {
            Entry::Occupied(hit) => {
                self.stats.hits += 1;
                hit.into_mut()
            }
            Entry::Vacant(slot) => {
                self.stats.misses += 1;
                let mut c = Classification::default();
                pipeline.classify(key, &mut c);
                slot.insert(c)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openflow::flow::{Action, Field, FlowMatch, FlowSpec};
    use proptest::prelude::*;
    use std::time::Instant;

    #[test]
    fn table_change_invalidates() {
        let now = Instant::now();
        let mut p = Pipeline::default();
        let mut cache = FlowCache::default();
        let key = FlowKey {
            in_port: 1,
            ..FlowKey::default()
        };
        assert!(cache.lookup(&p, &key).actions.is_empty());
        p.add(
            FlowSpec::new(0, 1, FlowMatch::any(), vec![Action::output(2)]),
            now,
        )
        .unwrap();
        assert_eq!(cache.lookup(&p, &key).actions, vec![Action::output(2)]);
        assert_eq!(cache.lookup(&p, &key).actions, vec![Action::output(2)]);
        assert_eq!(cache.stats().hits, 1);
        assert_eq!(cache.stats().invalidations, 1);
    }

    proptest! {
        // Whatever sequence of adds, deletes and lookups, the cache answers exactly
        // what the classifier answers.
        #[test]
        fn cache_agrees_with_classifier(ops in proptest::collection::vec((0u8..3, 0u32..4, 0u16..4, 0u32..5), 1..60)) {
            let now = Instant::now();
            let mut p = Pipeline::default();
            let mut cache = FlowCache::with_capacity(3);
            for (op, in_port, prio, outp) in ops {
                let m = FlowMatch::any().with(Field::InPort, in_port.into());
                match op {
                    0 => { p.add(FlowSpec::new(0, prio, m, vec![Action::output(outp + 1)]), now).unwrap(); }
                    1 => { p.delete(&crate::pipeline::Selector::loose(0, &m)).unwrap(); }
                    _ => {
                        let key = FlowKey { in_port, ..FlowKey::default() };
                        let mut direct = Classification::default();
                        p.classify(&key, &mut direct);
                        let cached = cache.lookup(&p, &key);
                        prop_assert_eq!(&cached.actions, &direct.actions);
                        prop_assert_eq!(&cached.hits, &direct.hits);
                    }
                }
            }
        }
    }
}
