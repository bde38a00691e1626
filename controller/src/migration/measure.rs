//! What the old host's switch session measures during a migration, for the
//! timeline's counts: its old port's transmit counters when it takes the prepare
//! step (the baseline of drops) and around the switch step, and its forwarding
//! flows' counters before the clean-up removes them. Each is taken once.

use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

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

impl OldHost {
    /// What the session of this host measures around its synchronisation to
    /// `version`, given the versions of the prepare and switch steps (0: not yet);
    /// each measurement is taken once.
    pub fn measure_for(&mut self, version: u64, prepare: u64, switch: u64) -> Measure {
        if self.cleanup_version != 0 && version >= self.cleanup_version && !self.cleanup_taken {
            // A session that skipped the switch step (slow, or reconnected after the
            // grace period) must not measure it later around some other change.
            self.cleanup_taken = true;
            self.switch_taken = true;
            self.baseline_taken = true;
            return Measure::Forwarded {
                vm_ip: self.vm_ip,
                tunnel_port: self.tunnel_port,
            };
        }
        if switch != 0 && version >= switch && !self.switch_taken {
            self.switch_taken = true;
            return Measure::AroundSwitch { port: self.port };
        }
        if prepare != 0 && version >= prepare && switch == 0 && !self.baseline_taken {
            self.baseline_taken = true;
            return Measure::Baseline { port: self.port };
        }
        Measure::Nothing
    }
}

/// Packets lost at the old port, from its counters just before and just after
/// the switch: drops since the `baseline` (or since just before), plus packets
/// still delivered there after the VM announced itself elsewhere.
pub fn lost(baseline: Option<PortCounts>, before: PortCounts, after: PortCounts) -> u64 {
    let dropped_since = baseline.unwrap_or(before).tx_dropped;
    after.tx_dropped.saturating_sub(dropped_since)
        + after.tx_packets.saturating_sub(before.tx_packets)
}
