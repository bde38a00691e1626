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
//! linear, where a scan per rule was quadratic). Masks are compared and keys cut
//! whole ([`FlowKey::and`]) rather than field by field, and the view a query mask
//! picks in each group is remembered, because a table's queries use few masks.

use openflow::flow::{Field, FlowKey, FlowMatch};
use rustc_hash::{FxHashMap, FxHasher};
use std::hash::Hasher;

/// Placed matches, by id (the order of [`OverlapIndex::insert`]).
#[derive(Default)]
pub(crate) struct OverlapIndex {
    rules: Vec<FlowMatch>,
    groups: Vec<Group>,
    /// For each query mask seen, and each group (by position), the view it
    /// looks up (`None`: the query is less precise than the group on every
    /// field, so every member is a candidate). A table has few masks.
    picked: Vec<(FlowKey, Vec<Option<usize>>)>,
}

/// The rules of one mask.
struct Group {
    /// The mask itself.
    mask: FlowKey,
    /// The fields the mask constrains, with their bits.
    fields: Vec<(Field, u128)>,
    members: Vec<usize>,
    /// Members by a hash of their values under a part of the mask (the fields a
    /// query is at least as precise on; a collision only adds a candidate, which
    /// the full overlap test then refuses); built the first time a query needs it.
    views: Vec<View>,
}

/// The members of a group by hash, as chains through one list (no list per
/// hash: most hashes have one member, and this is built for every table).
struct View {
    mask: FlowKey,
    /// The last entry of each hash's chain.
    heads: FxHashMap<u64, u32>,
    /// `(member id, previous entry of the same hash)`.
    entries: Vec<(usize, u32)>,
}

const END: u32 = u32::MAX;

impl View {
    fn add(&mut self, key: &FlowKey, id: usize) {
        let at = u32::try_from(self.entries.len()).unwrap_or(END);
        let prev = self.heads.insert(hash_under(key, &self.mask), at);
        self.entries.push((id, prev.unwrap_or(END)));
    }

    /// Calls `f` with every member whose hash is that of `key`.
    fn for_hash(&self, key: &FlowKey, mut f: impl FnMut(usize)) {
        let mut at = self
            .heads
            .get(&hash_under(key, &self.mask))
            .copied()
            .unwrap_or(END);
        while let Some(&(id, prev)) = self.entries.get(at as usize) {
            f(id);
            at = prev;
        }
    }
}

/// The hash of `key` cut to `mask`: the fields packed into words by hand, as the
/// derived `Hash` writes eighteen fields one by one (MACs as slices) and this
/// runs for every rule placed and every query.
fn hash_under(key: &FlowKey, mask: &FlowKey) -> u64 {
    let k = key.and(mask);
    let mut h = FxHasher::default();
    h.write_u64(k.eth_dst.to_u64() | u64::from(k.in_port) << 48);
    h.write_u64(k.eth_src.to_u64() | u64::from(k.eth_type) << 48);
    h.write_u64(
        u64::from(k.vlan_vid)
            | u64::from(k.vlan_pcp) << 16
            | u64::from(k.ip_dscp) << 24
            | u64::from(k.ip_proto) << 32
            | u64::from(k.l4_src) << 40
            | u64::from(k.arp_op) << 56,
    );
    h.write_u64(u64::from(k.ipv4_src) | u64::from(k.ipv4_dst) << 32);
    h.write_u64(u64::from(k.arp_spa) | u64::from(k.arp_tpa) << 32);
    h.write_u64(u64::from(k.l4_dst) ^ k.metadata);
    h.write_u128(k.ipv6_src);
    h.write_u128(k.ipv6_dst);
    h.finish()
}

/// True when some packet matches both `a` and `b`.
fn overlap(a: &FlowMatch, b: &FlowMatch) -> bool {
    let common = a.mask().and(b.mask());
    a.key().and(&common) == b.key().and(&common)
}

impl Group {
    /// The part of the mask on which a query with `query_mask` is at least as
    /// precise; `None` when there is none.
    fn view_mask(&self, query_mask: &FlowKey) -> Option<FlowKey> {
        let mut view = FlowKey::default();
        let mut any = false;
        for (field, bits) in &self.fields {
            if query_mask.get(*field) & bits == *bits {
                view.set(*field, *bits);
                any = true;
            }
        }
        any.then_some(view)
    }

    /// The view under `mask`, built from the members if it is new.
    fn view(&mut self, mask: FlowKey, rules: &[FlowMatch]) -> usize {
        if let Some(v) = self.views.iter().position(|v| v.mask == mask) {
            return v;
        }
        let mut view = View {
            mask,
            heads: FxHashMap::default(),
            entries: Vec::with_capacity(self.members.len()),
        };
        for &id in &self.members {
            view.add(rules[id].key(), id);
        }
        self.views.push(view);
        self.views.len() - 1
    }
}

impl OverlapIndex {
    /// Removes every match, keeping the masks seen, their views and their
    /// room: the next table of a program has the same few masks.
    pub(crate) fn clear(&mut self) {
        self.rules.clear();
        for group in &mut self.groups {
            group.members.clear();
            for view in &mut group.views {
                view.heads.clear();
                view.entries.clear();
            }
        }
    }

    /// Places `m` under the next id.
    pub(crate) fn insert(&mut self, m: &FlowMatch) {
        let id = self.rules.len();
        self.rules.push(*m);
        let g = match self.groups.iter().position(|g| g.mask == *m.mask()) {
            Some(g) => g,
            None => {
                self.groups.push(Group {
                    mask: *m.mask(),
                    fields: Field::ALL
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
        for view in &mut group.views {
            view.add(m.key(), id);
        }
    }

    /// Calls `f` with the id of every placed match that overlaps `m`.
    pub(crate) fn for_overlapping(&mut self, m: &FlowMatch, mut f: impl FnMut(usize)) {
        let p = match self.picked.iter().position(|(mask, _)| mask == m.mask()) {
            Some(p) => p,
            None => {
                self.picked.push((*m.mask(), Vec::new()));
                self.picked.len() - 1
            }
        };
        let picked = &mut self.picked[p].1;
        for (g, group) in self.groups.iter_mut().enumerate() {
            if g == picked.len() {
                let view = group.view_mask(m.mask());
                picked.push(view.map(|v| group.view(v, &self.rules)));
            }
            let rules = &self.rules;
            let mut check = |id: usize| {
                if overlap(&rules[id], m) {
                    f(id);
                }
            };
            match picked[g] {
                None => group.members.iter().for_each(|&id| check(id)),
                Some(v) => group.views[v].for_hash(m.key(), check),
            }
        }
    }
}
