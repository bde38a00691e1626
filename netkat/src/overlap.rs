//! Which placed rules overlap a match: the query the table builder
//! ([`super::local`]) asks once per rule to give it the lowest priority above
//! every rule it hides. This module owns only that index; it never decides
//! priorities or actions.
//!
//! Tuple-space search: rules are grouped by their mask (the fields they match and
//! the bits of each), and a group is hashed by the bits of the fields a query
//! matches at least as precisely as the group does. On those fields an
//! overlapping rule must have the query's value exactly, so the query looks up one
//! bucket per group instead of scanning it; the other fields are checked rule by
//! rule. Tables cut from a decision diagram have few masks, so a query costs a few
//! lookups plus the rules it really overlaps (a routing table of n destinations:
//! linear, where a scan per rule was quadratic).

use openflow::flow::{Field, FlowMatch};
use rustc_hash::{FxHashMap, FxHasher};
use std::hash::Hasher;

/// Placed matches, by id (the order of [`OverlapIndex::insert`]).
#[derive(Default)]
pub(crate) struct OverlapIndex {
    rules: Vec<FlowMatch>,
    groups: Vec<Group>,
}

/// The rules of one mask.
struct Group {
    /// The fields the mask constrains, with their bits.
    mask: Vec<(Field, u128)>,
    members: Vec<usize>,
    /// For a set of the mask's fields (bit i: `mask[i]`), its members by a hash of
    /// their values on those fields (a collision only adds a candidate, which the
    /// full overlap test then refuses); built the first time a query needs it.
    views: Vec<(u32, FxHashMap<u64, Vec<usize>>)>,
}

impl Group {
    /// The hash of `m`'s values on the fields of `set`, under the group's bits.
    fn key(&self, m: &FlowMatch, set: u32) -> u64 {
        let mut h = FxHasher::default();
        for (i, (f, bits)) in self.mask.iter().enumerate() {
            if set & (1 << i) != 0 {
                h.write_u128(m.key().get(*f) & bits);
            }
        }
        h.finish()
    }

    fn has_mask_of(&self, m: &FlowMatch, fields: usize) -> bool {
        self.mask.len() == fields && self.mask.iter().all(|(f, b)| m.mask().get(*f) == *b)
    }
}

impl OverlapIndex {
    /// Places `m` under the next id.
    pub(crate) fn insert(&mut self, m: &FlowMatch) {
        let id = self.rules.len();
        self.rules.push(*m);
        let fields = Field::ALL
            .into_iter()
            .filter(|f| m.mask().get(*f) != 0)
            .count();
        let g = match self.groups.iter().position(|g| g.has_mask_of(m, fields)) {
            Some(g) => g,
            None => {
                self.groups.push(Group {
                    mask: Field::ALL
                        .into_iter()
                        .map(|f| (f, m.mask().get(f)))
                        .filter(|(_, b)| *b != 0)
                        .collect(),
                    members: Vec::new(),
                    views: Vec::new(),
                });
                self.groups.len() - 1
            }
        };
        let group = &mut self.groups[g];
        group.members.push(id);
        for v in 0..group.views.len() {
            let key = group.key(m, group.views[v].0);
            group.views[v].1.entry(key).or_default().push(id);
        }
    }

    /// Calls `f` with the id of every placed match that overlaps `m`.
    pub(crate) fn for_overlapping(&mut self, m: &FlowMatch, mut f: impl FnMut(usize)) {
        for group in &mut self.groups {
            // The fields on which `m` is at least as precise as the group.
            let mut set = 0u32;
            for (i, (field, bits)) in group.mask.iter().enumerate() {
                if m.mask().get(*field) & bits == *bits {
                    set |= 1 << i;
                }
            }
            let candidates: &[usize] = if set == 0 {
                &group.members
            } else {
                let view = match group.views.iter().position(|(s, _)| *s == set) {
                    Some(v) => v,
                    None => {
                        let mut view: FxHashMap<u64, Vec<usize>> = FxHashMap::default();
                        for &id in &group.members {
                            view.entry(group.key(&self.rules[id], set))
                                .or_default()
                                .push(id);
                        }
                        group.views.push((set, view));
                        group.views.len() - 1
                    }
                };
                let key = group.key(m, set);
                group.views[view].1.get(&key).map_or(&[], Vec::as_slice)
            };
            for &id in candidates {
                if self.rules[id].overlaps(m) {
                    f(id);
                }
            }
        }
    }
}
