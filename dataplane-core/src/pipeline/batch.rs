//! Replacing every entry of one cookie in one step, all or nothing: how `scd`
//! reloads its static flows without touching a controller's.
//!
//! The batch is tried on a copy of the tables with the pipeline's own flow-mod
//! checks (table ids, goto targets, outputs, groups, overlaps, room), and the copy
//! takes the tables' place only when every flow was accepted. So a refused batch
//! leaves the entries, their counters and the generation exactly as they were, and
//! a lookup sees either the old tables or the new ones, never half a batch. This
//! module never decides which cookie a caller owns; it is told.

use super::{Pipeline, RemovedFlow, RemovedReason, Selector, TableError, ALL_TABLES};
use openflow::flow::FlowMatch;
use openflow::FlowSpec;
use std::time::Instant;

/// Why one flow of a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchRefusal {
    /// The tables refuse it, as they would refuse a flow-mod add.
    #[error(transparent)]
    Table(#[from] TableError),
    /// An entry with another cookie has the same table, priority and match: adding
    /// this flow would replace that entry, which belongs to someone else.
    #[error(
        "table {table}, priority {priority} and this match already hold a flow with \
         cookie {cookie:#x}, which only its owner may replace"
    )]
    Held {
        /// Table of both.
        table: u8,
        /// Priority of both.
        priority: u16,
        /// Cookie of the entry already there.
        cookie: u64,
    },
}

/// A batch refused at one of its flows; the tables did not change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("flow {index} of the batch: {refusal}")]
pub struct BatchError {
    /// Position of the refused flow in the batch, from 0.
    pub index: usize,
    /// Why it was refused.
    pub refusal: BatchRefusal,
}

impl Pipeline {
    /// Replaces every entry whose cookie is `cookie` with `flows`, which are given
    /// that cookie and added in order as flow-mod adds (a later flow with the
    /// same table, priority and match as an earlier one replaces it). Entries with
    /// any other cookie stay, counters and all; a flow that would replace one of
    /// them is refused. All or nothing: on a refusal nothing changes. Returns the
    /// entries that left.
    ///
    /// The cost is a copy of the tables, paid by the caller's thread.
    pub fn replace_cookie(
        &mut self,
        cookie: u64,
        flows: impl IntoIterator<Item = FlowSpec>,
        now: Instant,
    ) -> Result<Vec<RemovedFlow>, BatchError> {
        let mut next = self.clone();
        let any = FlowMatch::any();
        let owned = Selector {
            cookie,
            cookie_mask: u64::MAX,
            ..Selector::loose(ALL_TABLES, &any)
        };
        let ids = next.selected_ids(&owned);
        let removed = next.remove_ids(&ids, |_| RemovedReason::Delete);
        for (index, mut flow) in flows.into_iter().enumerate() {
            flow.cookie = cookie;
            let held = next
                .tables
                .get(usize::from(flow.table_id))
                .and_then(|t| t.find(&next.entries, flow.priority, &flow.matcher))
                .and_then(|id| next.entry(id));
            if let Some(other) = held.filter(|e| e.spec.cookie != cookie) {
                let refusal = BatchRefusal::Held {
                    table: flow.table_id,
                    priority: flow.priority,
                    cookie: other.spec.cookie,
                };
                return Err(BatchError { index, refusal });
            }
            next.add(flow, now).map_err(|e| BatchError {
                index,
                refusal: e.into(),
            })?;
        }
        *self = next;
        Ok(removed)
    }
}
