//! An installed flow entry with its counters and timeouts, why entries leave, and
//! per-table counters: the types the pipeline hands out.
//!
//! Counters are atomics behind an `Arc`, shared by every copy of the entry: the
//! tables a forwarding thread reads are an immutable snapshot of the control
//! side's copy, and a packet counted in one snapshot shows in the next one and in
//! every dump, whichever copy the reader holds.

use openflow::flow::{port, Action, Instruction};
use openflow::{FlowSpec, PortNo};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The counters of one entry, shared by its copies.
#[derive(Debug, Default)]
struct FlowCounters {
    packets: AtomicU64,
    bytes: AtomicU64,
    /// Nanoseconds from the entry's install to the last packet that hit it: an
    /// `Instant` cannot sit in an atomic, an offset can.
    last_hit_ns: AtomicU64,
}

/// An installed flow entry with its counters. A clone shares the counters.
#[derive(Clone, Debug)]
pub struct FlowEntry {
    /// What the controller asked for.
    pub spec: FlowSpec,
    /// When the entry was installed (or last replaced by an add).
    pub installed: Instant,
    counters: Arc<FlowCounters>,
}

impl FlowEntry {
    /// An entry as an add installs it at `now`: no packets yet.
    pub fn installed_at(spec: FlowSpec, now: Instant) -> FlowEntry {
        FlowEntry {
            spec,
            installed: now,
            counters: Arc::default(),
        }
    }

    /// Packets that hit it.
    pub fn packets(&self) -> u64 {
        self.counters.packets.load(Ordering::Relaxed)
    }

    /// Bytes of those packets.
    pub fn bytes(&self) -> u64 {
        self.counters.bytes.load(Ordering::Relaxed)
    }

    /// When a packet last hit it (its install time if none did).
    pub fn last_hit(&self) -> Instant {
        self.installed + Duration::from_nanos(self.counters.last_hit_ns.load(Ordering::Relaxed))
    }

    /// Counts one packet of `len` bytes that hit it at `now`. Any thread may count
    /// through a shared reference; a lookup never waits for it.
    pub fn count(&self, len: usize, now: Instant) {
        let c = &self.counters;
        c.packets.fetch_add(1, Ordering::Relaxed);
        c.bytes.fetch_add(len as u64, Ordering::Relaxed);
        let since = now.saturating_duration_since(self.installed).as_nanos();
        let since = u64::try_from(since).unwrap_or(u64::MAX);
        // A plain store, not a read-modify-write: one thread forwards, and a batch
        // of packets with one `now` writes the line once.
        if c.last_hit_ns.load(Ordering::Relaxed) < since {
            c.last_hit_ns.store(since, Ordering::Relaxed);
        }
    }

    /// Sets the packet and byte counts back to zero (a modify with `RESET_COUNTS`).
    pub fn reset_counts(&self) {
        self.counters.packets.store(0, Ordering::Relaxed);
        self.counters.bytes.store(0, Ordering::Relaxed);
    }

    /// True when an apply-actions or write-actions list of the entry runs group
    /// `group`.
    pub fn uses_group(&self, group: u32) -> bool {
        self.spec
            .instructions
            .iter()
            .flat_map(Instruction::actions)
            .any(|a| matches!(a, Action::Group(g) if *g == group))
    }

    pub(super) fn outputs_to(&self, out_port: PortNo) -> bool {
        out_port == port::ANY
            || self
                .spec
                .instructions
                .iter()
                .flat_map(Instruction::actions)
                .any(|a| matches!(a, Action::Output { port, .. } if *port == out_port))
    }

    /// Why and whether the entry has expired at `now`.
    pub fn expiry(&self, now: Instant) -> Option<RemovedReason> {
        let idle = u64::from(self.spec.idle_timeout);
        let hard = u64::from(self.spec.hard_timeout);
        if hard != 0 && now.saturating_duration_since(self.installed) >= Duration::from_secs(hard) {
            return Some(RemovedReason::HardTimeout);
        }
        if idle != 0 && now.saturating_duration_since(self.last_hit()) >= Duration::from_secs(idle)
        {
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

/// Per-table counters (`ofp_table_stats`), as read at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Packets looked up in this table.
    pub lookups: u64,
    /// Packets that hit an entry.
    pub matched: u64,
}

/// The live counters of one table, shared by every copy of the tables like an
/// entry's.
#[derive(Debug, Default)]
pub(super) struct TableCounters {
    lookups: AtomicU64,
    matched: AtomicU64,
}

impl TableCounters {
    pub(super) fn count(&self, matched: bool) {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        self.matched
            .fetch_add(u64::from(matched), Ordering::Relaxed);
    }

    pub(super) fn read(&self) -> TableStats {
        TableStats {
            lookups: self.lookups.load(Ordering::Relaxed),
            matched: self.matched.load(Ordering::Relaxed),
        }
    }
}
