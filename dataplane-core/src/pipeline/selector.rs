//! Which entries a flow-mod modify or delete (and a flow-stats request) applies to.

use super::entry::FlowEntry;
use openflow::flow::{port, FlowMatch};
use openflow::PortNo;

/// Which entries a modify or delete applies to.
#[derive(Clone, Copy, Debug)]
pub struct Selector<'a> {
    /// Table, or [`ALL_TABLES`].
    pub table_id: u8,
    /// The match of the flow-mod.
    pub matcher: &'a FlowMatch,
    /// `Some(priority)` for the strict variants: identical match and priority.
    pub strict_priority: Option<u16>,
    /// Only entries whose `cookie & cookie_mask == cookie & cookie_mask`.
    pub cookie: u64,
    /// Mask for `cookie` (0 = any cookie).
    pub cookie_mask: u64,
    /// Only entries with an output to this port ([`port::ANY`] = no filter).
    pub out_port: PortNo,
    /// Only entries that run this group (`OFPG_ANY` = no filter).
    pub out_group: u32,
}

impl<'a> Selector<'a> {
    /// Every entry covered by `matcher` in `table_id`, whatever its cookie or outputs.
    pub fn loose(table_id: u8, matcher: &'a FlowMatch) -> Selector<'a> {
        Selector {
            table_id,
            matcher,
            strict_priority: None,
            cookie: 0,
            cookie_mask: 0,
            out_port: port::ANY,
            out_group: openflow::flow::GROUP_ANY,
        }
    }

    /// The entry with exactly this match and priority in `table_id`.
    pub fn strict(table_id: u8, matcher: &'a FlowMatch, priority: u16) -> Selector<'a> {
        Selector {
            strict_priority: Some(priority),
            ..Selector::loose(table_id, matcher)
        }
    }

    /// Whether `entry` is one this selector applies to: the one rule for flow-mod
    /// modify and delete and for flow-stats requests.
    pub fn selects(&self, entry: &FlowEntry) -> bool {
        let by_match = match self.strict_priority {
            Some(prio) => entry.spec.priority == prio && entry.spec.matcher == *self.matcher,
            None => self.matcher.covers(&entry.spec.matcher),
        };
        by_match
            && (entry.spec.cookie & self.cookie_mask) == (self.cookie & self.cookie_mask)
            && entry.outputs_to(self.out_port)
            && (self.out_group == openflow::flow::GROUP_ANY || entry.uses_group(self.out_group))
    }
}
