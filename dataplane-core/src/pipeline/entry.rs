//! An installed flow entry with its counters and timeouts, why entries leave, and
//! per-table counters: the plain types the pipeline hands out.

use openflow::flow::{port, Action, Instruction};
use openflow::{FlowSpec, PortNo};
use std::time::{Duration, Instant};

/// An installed flow entry with its counters.
#[derive(Clone, Debug)]
pub struct FlowEntry {
    /// What the controller asked for.
    pub spec: FlowSpec,
    /// When the entry was installed (or last replaced by an add).
    pub installed: Instant,
    /// When a packet last hit it.
    pub last_hit: Instant,
    /// Packets that hit it.
    pub packets: u64,
    /// Bytes of those packets.
    pub bytes: u64,
}

impl FlowEntry {
    /// An entry as an add installs it at `now`: no packets yet.
    pub fn installed_at(spec: FlowSpec, now: Instant) -> FlowEntry {
        FlowEntry {
            spec,
            installed: now,
            last_hit: now,
            packets: 0,
            bytes: 0,
        }
    }

    /// True when an apply-actions list of the entry runs group `group`.
    pub fn uses_group(&self, group: u32) -> bool {
        self.spec.instructions.iter().any(|i| match i {
            Instruction::ApplyActions(acts) => acts
                .iter()
                .any(|a| matches!(a, Action::Group(g) if *g == group)),
            Instruction::GotoTable(_) => false,
        })
    }

    pub(super) fn outputs_to(&self, out_port: PortNo) -> bool {
        out_port == port::ANY
            || self.spec.instructions.iter().any(|i| match i {
                Instruction::ApplyActions(acts) => acts
                    .iter()
                    .any(|a| matches!(a, Action::Output { port, .. } if *port == out_port)),
                Instruction::GotoTable(_) => false,
            })
    }

    /// Why and whether the entry has expired at `now`.
    pub fn expiry(&self, now: Instant) -> Option<RemovedReason> {
        let idle = u64::from(self.spec.idle_timeout);
        let hard = u64::from(self.spec.hard_timeout);
        if hard != 0 && now.saturating_duration_since(self.installed) >= Duration::from_secs(hard) {
            return Some(RemovedReason::HardTimeout);
        }
        if idle != 0 && now.saturating_duration_since(self.last_hit) >= Duration::from_secs(idle) {
            return Some(RemovedReason::IdleTimeout);
        }
        None
    }
}

/// Why an entry left the table (`ofp_flow_removed_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemovedReason {
    /// Idle timeout.
    IdleTimeout,
    /// Hard timeout.
    HardTimeout,
    /// Deleted by a flow-mod.
    Delete,
    /// The group it runs was deleted.
    GroupDelete,
}

/// An entry that left the table, for flow-removed messages.
#[derive(Clone, Debug)]
pub struct RemovedFlow {
    /// The entry as it was, with its final counters.
    pub entry: FlowEntry,
    /// Why it left.
    pub reason: RemovedReason,
}

/// Per-table counters (`ofp_table_stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Packets looked up in this table.
    pub lookups: u64,
    /// Packets that hit an entry.
    pub matched: u64,
}
