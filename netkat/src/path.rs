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
}

impl Negatives {
    pub(crate) fn push(&mut self, p: Pattern) {
        if p.len == p.field.bits() {
            *self.exact.entry(p).or_default() += 1;
        } else {
            self.prefixes.push(p);
        }
    }

    pub(crate) fn pop(&mut self, p: Pattern) {
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
        (p.len == p.field.bits() && self.exact.contains_key(p))
            || self.prefixes.iter().any(|q| q.contains(p))
    }
}

impl Ctx {
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
