//! What the old host's switch session measures during a migration, for the
//! timeline's counts: its old port's transmit counters when it takes the prepare
//! step (the baseline of drops) and around the switch step, and its forwarding
//! flows' counters before the clean-up removes them. Each is taken once.

use super::MigrationState;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::time::Duration;

/// The migrating VM's old host, as its session measures it for the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OldHost {
    /// Its switch.
    pub dpid: u64,
    /// The VM's port there.
    pub port: u32,
    /// The VM's address, which the forwarding flows match.
    pub vm_ip: Ipv4Addr,
    /// The old host's tunnel port towards the new host.
    pub tunnel_port: u32,
    /// Program version of the clean-up, once committed.
    pub cleanup_version: u64,
    /// The old port's counters when the old host confirmed the prepare step.
    pub baseline: Option<PortCounts>,
    baseline_taken: bool,
    switch_taken: bool,
    cleanup_taken: bool,
}

impl OldHost {
    /// The old host `dpid` where the VM at `vm_ip` ran on `port`, forwarding to
    /// the new host through `tunnel_port`; nothing measured yet.
    pub fn new(dpid: u64, port: u32, vm_ip: Ipv4Addr, tunnel_port: u32) -> OldHost {
        OldHost {
            dpid,
            port,
            vm_ip,
            tunnel_port,
            cleanup_version: 0,
            baseline: None,
            baseline_taken: false,
            switch_taken: false,
            cleanup_taken: false,
        }
    }
}

/// The transmit counters of one switch port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortCounts {
    /// Packets sent.
    pub tx_packets: u64,
    /// Packets the port could not send.
    pub tx_dropped: u64,
}

/// What a switch session measures around one synchronisation, for the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Nothing for the timeline.
    Nothing,
    /// The old port's counters before the prepare step (the baseline of drops).
    Baseline {
        /// The VM's old port.
        port: u32,
    },
    /// The old port's counters before and after the switch step.
    AroundSwitch {
        /// The VM's old port.
        port: u32,
    },
    /// The forwarding flows' counters before the clean-up.
    Forwarded {
        /// The VM's address.
        vm_ip: Ipv4Addr,
        /// The tunnel port the old host forwards through.
        tunnel_port: u32,
    },
}

impl MigrationState {
    /// What the session of switch `dpid` measures around its synchronisation to
    /// `version`; each measurement is taken once per migration.
    pub fn measure_for(&mut self, dpid: u64, version: u64) -> Measure {
        let (prepare, switch) = (self.prepare_version, self.switch_version);
        let Some(o) = self.old_host.as_mut().filter(|o| o.dpid == dpid) else {
            return Measure::Nothing;
        };
        if o.cleanup_version != 0 && version >= o.cleanup_version && !o.cleanup_taken {
            // A session that skipped the switch step (slow, or reconnected after the
            // grace period) must not measure it later around some other change.
            o.cleanup_taken = true;
            o.switch_taken = true;
            o.baseline_taken = true;
            return Measure::Forwarded {
                vm_ip: o.vm_ip,
                tunnel_port: o.tunnel_port,
            };
        }
        if switch != 0 && version >= switch && !o.switch_taken {
            o.switch_taken = true;
            return Measure::AroundSwitch { port: o.port };
        }
        if prepare != 0 && version >= prepare && switch == 0 && !o.baseline_taken {
            o.baseline_taken = true;
            return Measure::Baseline { port: o.port };
        }
        Measure::Nothing
    }

    /// The old port's counters when the old host took the prepare step.
    pub fn record_baseline(&mut self, counts: PortCounts) {
        if let Some(o) = self.old_host.as_mut() {
            o.baseline = Some(counts);
        }
    }

    /// The old port's counters just before and just after the old host switched.
    pub fn record_switch(&mut self, before: PortCounts, after: PortCounts) {
        let dropped_since = self
            .old_host
            .as_ref()
            .and_then(|o| o.baseline)
            .unwrap_or(before)
            .tx_dropped;
        let lost = after.tx_dropped.saturating_sub(dropped_since)
            + after.tx_packets.saturating_sub(before.tx_packets);
        self.timeline.lost_at_old_host = Some(lost);
    }

    /// The packets the old host forwarded, counted at `now` before its clean-up.
    pub fn record_forwarded(&mut self, packets: u64, now: Duration) {
        self.timeline.forwarded_by_old_host = Some(packets);
        self.note("old host drained", now);
    }
}
