//! What a path through a decision diagram knows about the packet: the tests it
//! took as true and as false, and whether they decide another test. The table
//! builder ([`super::local`]) walks paths with it; this module never builds rules.

use super::ir::{HField, Pattern};

/// Knowledge along a path: tests known true and known false.
#[derive(Clone, Default)]
pub(crate) struct Ctx {
    /// Tests known true, in path order.
    pub(crate) pos: Vec<Pattern>,
    /// Tests known false.
    pub(crate) neg: Negatives,
}

/// The tests known false along a path. A routing table's path to its default
/// passes thousands of them (one per destination), and each test on the way asks
/// whether one contains it: exact tests are found by hashing, not by a scan.
#[derive(Clone, Default)]
pub(crate) struct Negatives {
    /// Full-length tests, each with how many times the path holds it.
    exact: rustc_hash::FxHashMap<Pattern, u32>,
    /// Shorter prefixes.
    prefixes: Vec<Pattern>,
    /// How many tests (exact or prefix) of each field the path holds: most
    /// questions are about a field the path has no negative test of (the table
    /// builder asks about the VLAN tag for every rule), and are answered
    /// without hashing.
    per_field: [u32; FIELD_SLOTS],
}

/// [`HField`]s without a meta field's number: the meta fields share a slot.
const FIELD_SLOTS: usize = 17;

fn slot(f: HField) -> usize {
    match f {
        HField::Switch => 0,
        HField::Port => 1,
        HField::VlanVid => 2,
        HField::VlanPcp => 3,
        HField::EthType => 4,
        HField::EthSrc => 5,
        HField::EthDst => 6,
        HField::IpProto => 7,
        HField::Ip4Src => 8,
        HField::Ip4Dst => 9,
        HField::L4Src => 10,
        HField::L4Dst => 11,
        HField::Meta(_) => 12,
        HField::Ip6SrcHi => 13,
        HField::Ip6SrcLo => 14,
        HField::Ip6DstHi => 15,
        HField::Ip6DstLo => 16,
    }
}

impl Negatives {
    fn clear(&mut self) {
        self.exact.clear();
        self.prefixes.clear();
        self.per_field = [0; FIELD_SLOTS];
    }

    pub(crate) fn push(&mut self, p: Pattern) {
        self.per_field[slot(p.field)] += 1;
        if p.len == p.field.bits() {
            *self.exact.entry(p).or_default() += 1;
        } else {
            self.prefixes.push(p);
        }
    }

    pub(crate) fn pop(&mut self, p: Pattern) {
        let held = &mut self.per_field[slot(p.field)];
        *held = held.saturating_sub(1);
        if p.len != p.field.bits() {
            self.prefixes.pop();
        } else if let Some(n) = self.exact.get_mut(&p) {
            *n -= 1;
            if *n == 0 {
                self.exact.remove(&p);
            }
        }
    }

    /// True when some test known false contains `p` (so `p` is false too).
    pub(crate) fn cover(&self, p: &Pattern) -> bool {
        if self.per_field[slot(p.field)] == 0 {
            return false;
        }
        (p.len == p.field.bits() && self.exact.contains_key(p))
            || self.prefixes.iter().any(|q| q.contains(p))
    }
}

impl Ctx {
    /// Forgets the path, keeping the room.
    pub(crate) fn clear(&mut self) {
        self.pos.clear();
        self.neg.clear();
    }

    /// `Some(truth)` when the path decides `p`.
    pub(crate) fn decides(&self, p: &Pattern) -> Option<bool> {
        if p.field == HField::VlanPcp && self.pos.contains(&Pattern::exact(HField::VlanVid, 0)) {
            return Some(p.value == 0); // an untagged packet reads PCP 0
        }
        if *p == Pattern::exact(HField::VlanVid, 0) {
            // A path that knows the PCP is not 0 knows the packet is tagged.
            let pcp_nonzero = self.neg.cover(&Pattern::exact(HField::VlanPcp, 0))
                || self
                    .pos
                    .iter()
                    .any(|q| q.field == HField::VlanPcp && q.value != 0);
            if pcp_nonzero {
                return Some(false);
            }
        }
        for q in self.pos.iter().filter(|q| q.field == p.field) {
            if p.contains(q) {
                return Some(true);
            }
            if p.disjoint(q) {
                return Some(false);
            }
        }
        if self.neg.cover(p) {
            return Some(false);
        }
        None
    }
}
