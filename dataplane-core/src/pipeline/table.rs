//! Where entries live and how one flow table finds them: the slab of every table's
//! entries, addressed by [`FlowId`], and per table three views kept in step — the
//! entries in priority order (for dumps, expiry and loose flow-mods), the identity
//! index (priority and match → entry, OpenFlow's identity of a flow, for strict
//! flow-mods and the add that replaces an identical entry) and the classifier (for
//! packets).
//!
//! Every change to a table goes through [`FlowTable::insert`] and
//! [`FlowTable::remove`], so the views cannot drift apart, and both cost the same
//! whatever the table's size: one hash probe, one link or unlink in the entry's
//! priority chain (a doubly linked list beside the slab), a lookup in the map of the
//! table's distinct priorities, and the classifier's own update. This module knows nothing of
//! flow-mod semantics, which are the pipeline's, and reads no clock.

use super::entry::{FlowEntry, TableCounters};
use crate::classifier::TupleSpace;
use crate::cow::{ChunkedVec, Shards};
use crate::flow_id::FlowId;
use hashbrown::HashTable;
use openflow::flow::{FlowKey, FlowMatch};
use rustc_hash::FxBuildHasher;
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::Arc;

/// No neighbour: the end of a priority chain.
const NIL: u32 = u32::MAX;

/// An entry's neighbours in its priority chain (same table, same priority).
#[derive(Clone, Copy, Debug)]
struct Links {
    /// The next older entry, or [`NIL`].
    older: u32,
    /// The next younger one, or [`NIL`].
    younger: u32,
}

/// Every table's entries, by id. Ids of removed entries are reused. The chain links
/// sit beside the entries rather than in them: eight bytes an entry, and a walk in
/// priority order touches only them. Both are copied on write in chunks, so a copy
/// of the tables shares every chunk a later change does not touch.
#[derive(Clone, Debug, Default)]
pub(super) struct Entries {
    slots: ChunkedVec<Option<FlowEntry>>,
    links: ChunkedVec<Links>,
    free: Vec<u32>,
}

impl Entries {
    pub(super) fn get(&self, id: FlowId) -> Option<&FlowEntry> {
        self.slots.get(id.0 as usize).and_then(Option::as_ref)
    }

    pub(super) fn get_mut(&mut self, id: FlowId) -> Option<&mut FlowEntry> {
        self.slots.get_mut(id.0 as usize).and_then(Option::as_mut)
    }

    /// The links of a slot; `None` for [`NIL`].
    fn links_mut(&mut self, index: u32) -> Option<&mut Links> {
        self.links.get_mut(index as usize)
    }

    /// Stores an entry; `None` when every id is taken.
    fn store(&mut self, entry: FlowEntry, links: Links) -> Option<FlowId> {
        if let Some(index) = self.free.pop() {
            if let Some(slot) = self.slots.get_mut(index as usize) {
                *slot = Some(entry);
            }
            if let Some(slot) = self.links.get_mut(index as usize) {
                *slot = links;
            }
            return Some(FlowId(index));
        }
        let index = u32::try_from(self.slots.len()).ok().filter(|i| *i != NIL)?;
        self.slots.push(Some(entry));
        self.links.push(links);
        Some(FlowId(index))
    }

    fn take(&mut self, id: FlowId) -> Option<(FlowEntry, Links)> {
        let entry = self.slots.get_mut(id.0 as usize)?.take()?;
        self.free.push(id.0);
        Some((entry, self.links.get(id.0 as usize).copied()?))
    }
}

/// The oldest and youngest entry of one priority in one table.
#[derive(Clone, Copy, Debug)]
struct Chain {
    oldest: u32,
    youngest: u32,
}

/// One flow table: which entries it holds, in which order, and how to find them.
#[derive(Clone, Debug, Default)]
pub(super) struct FlowTable {
    /// The table's priority chains, by priority (walked from the highest down).
    chains: BTreeMap<u16, Chain>,
    /// Ids by the hash of (priority, match); at most one entry per identity. In
    /// shards copied on write, like the entries.
    identity: Shards<HashTable<FlowId>>,
    /// The same entries, grouped by mask for lookups.
    space: TupleSpace,
    len: usize,
    /// Shared with every copy of the table, like the entries' counters.
    pub(super) stats: Arc<TableCounters>,
}

/// The hash of an entry's identity. Fx, like the classifier: matches come from the
/// controller, not from packets.
fn identity_hash(priority: u16, matcher: &FlowMatch) -> u64 {
    FxBuildHasher.hash_one((priority, matcher))
}

impl FlowTable {
    /// Number of entries.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The entry with exactly this priority and match.
    pub(super) fn find(
        &self,
        entries: &Entries,
        priority: u16,
        matcher: &FlowMatch,
    ) -> Option<FlowId> {
        let hash = identity_hash(priority, matcher);
        self.identity
            .shard(hash)
            .find(hash, |id| {
                entries
                    .get(*id)
                    .is_some_and(|e| e.spec.priority == priority && e.spec.matcher == *matcher)
            })
            .copied()
    }

    /// Adds an entry whose identity no entry of the table has (see [`Self::find`]),
    /// after every entry of higher or equal priority; `seq` (increasing) breaks
    /// classification ties in favour of older entries. `None` when every id is taken.
    pub(super) fn insert(
        &mut self,
        entries: &mut Entries,
        entry: FlowEntry,
        seq: u64,
    ) -> Option<FlowId> {
        let (priority, matcher) = (entry.spec.priority, entry.spec.matcher);
        let chain = self.chains.get(&priority).copied();
        let links = Links {
            older: chain.map_or(NIL, |c| c.youngest),
            younger: NIL,
        };
        let id = entries.store(entry, links)?;
        let ends = match chain {
            Some(c) => {
                if let Some(previous) = entries.links_mut(c.youngest) {
                    previous.younger = id.0;
                }
                Chain {
                    youngest: id.0,
                    ..c
                }
            }
            None => Chain {
                oldest: id.0,
                youngest: id.0,
            },
        };
        self.chains.insert(priority, ends);
        let hash = identity_hash(priority, &matcher);
        self.identity.shard_mut(hash).insert_unique(hash, id, |id| {
            entries
                .get(*id)
                .map_or(0, |e| identity_hash(e.spec.priority, &e.spec.matcher))
        });
        self.space.insert(&matcher, priority, seq, id);
        self.len += 1;
        Some(id)
    }

    /// Removes an entry of this table, returning it.
    pub(super) fn remove(&mut self, entries: &mut Entries, id: FlowId) -> Option<FlowEntry> {
        let (entry, links) = entries.take(id)?;
        let (priority, matcher) = (entry.spec.priority, entry.spec.matcher);
        if let Some(older) = entries.links_mut(links.older) {
            older.younger = links.younger;
        }
        if let Some(younger) = entries.links_mut(links.younger) {
            younger.older = links.older;
        }
        if let Entry::Occupied(mut chain) = self.chains.entry(priority) {
            let ends = chain.get_mut();
            if ends.oldest == id.0 {
                ends.oldest = links.younger;
            }
            if ends.youngest == id.0 {
                ends.youngest = links.older;
            }
            if ends.oldest == NIL {
                chain.remove();
            }
        }
        let hash = identity_hash(priority, &matcher);
        if let Ok(indexed) = self
            .identity
            .shard_mut(hash)
            .find_entry(hash, |other| *other == id)
        {
            indexed.remove();
        }
        self.space.remove(&matcher, priority, id);
        self.len -= 1;
        Some(entry)
    }

    /// The table's entry ids, highest priority first; among equal priorities,
    /// oldest first.
    pub(super) fn ids<'a>(&'a self, entries: &'a Entries) -> impl Iterator<Item = FlowId> + 'a {
        self.chains.values().rev().flat_map(move |chain| {
            std::iter::successors(Some(chain.oldest), move |index| {
                entries
                    .links
                    .get(*index as usize)
                    .map(|l| l.younger)
                    .filter(|next| *next != NIL)
            })
            .map(FlowId)
        })
    }

    /// The best entry matching `key`, adding the bits it consulted to
    /// `consulted` (see [`TupleSpace::lookup_consulting`]).
    pub(super) fn lookup_consulting(
        &self,
        key: &FlowKey,
        consulted: Option<&mut FlowKey>,
    ) -> Option<FlowId> {
        self.space.lookup_consulting(key, consulted)
    }
}
