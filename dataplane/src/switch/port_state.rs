//! The link state of each local port as OpenFlow reports it (port-desc and
//! port-status), and the queue of port changes waiting to be announced.
//!
//! The state has two writers: the link watcher (the interface's own up and
//! carrier flags, polled) and port-mod (the `OFPPC_*` bits a controller sets).
//! The forwarding thread only reads it, one relaxed load per frame, to honour
//! `PORT_DOWN`, `NO_RECV` and `NO_FWD`. Changes are queued here, bounded
//! (oldest dropped first, counted), and the OpenFlow channel's dispatcher sends
//! them as `OFPT_PORT_STATUS`; nothing here blocks the forwarding thread.

use dataplane_core::translate::{port_desc, LinkState};
use openflow::wire::{port_config, PortReason, PortStatus};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Port changes kept for the channel before the oldest is dropped.
pub const PORT_CHANGES_DEPTH: usize = 1024;

/// The `OFPPC_*` bits port-mod may set on `scd`'s ports.
pub const SETTABLE_CONFIG: u32 =
    port_config::PORT_DOWN | port_config::NO_RECV | port_config::NO_FWD | port_config::NO_PACKET_IN;

/// One port's link: what its interface says and what a controller configured.
#[derive(Debug, Default)]
pub struct PortLink {
    /// `OFPPC_*` bits set by port-mod.
    configured: AtomicU32,
    /// The interface is administratively down (its own `IFF_UP` is off).
    admin_down: AtomicBool,
    /// The interface has no carrier (or is gone from its namespace).
    no_carrier: AtomicBool,
}

impl PortLink {
    /// The state as OpenFlow describes it: an interface that is down reads as
    /// `PORT_DOWN` (as Open vSwitch reports it) besides `LINK_DOWN`.
    pub fn state(&self) -> LinkState {
        let admin_down = self.admin_down.load(Relaxed);
        let mut config = self.configured.load(Relaxed);
        if admin_down {
            config |= port_config::PORT_DOWN;
        }
        LinkState {
            config,
            link_down: admin_down || self.no_carrier.load(Relaxed),
        }
    }

    /// Records the interface's flags; true when that changed the state.
    pub fn set_interface(&self, up: bool, running: bool) -> bool {
        let was = self.state();
        self.admin_down.store(!up, Relaxed);
        self.no_carrier.store(!running, Relaxed);
        self.state() != was
    }

    /// Applies a port-mod: `config` under `mask` (only [`SETTABLE_CONFIG`] bits);
    /// true when that changed the state.
    pub fn set_config(&self, config: u32, mask: u32) -> bool {
        let mask = mask & SETTABLE_CONFIG;
        let was = self.state();
        let old = self.configured.load(Relaxed);
        self.configured
            .store((old & !mask) | (config & mask), Relaxed);
        self.state() != was
    }

    /// Frames received on the port go no further (`PORT_DOWN` or `NO_RECV`).
    #[inline]
    pub fn drops_received(&self) -> bool {
        self.configured.load(Relaxed) & (port_config::PORT_DOWN | port_config::NO_RECV) != 0
    }

    /// Frames forwarded to the port are dropped (`PORT_DOWN` or `NO_FWD`).
    #[inline]
    pub fn drops_forwarded(&self) -> bool {
        self.configured.load(Relaxed) & (port_config::PORT_DOWN | port_config::NO_FWD) != 0
    }

    /// The controller gets no packet-ins from the port (`NO_PACKET_IN`).
    #[inline]
    pub fn no_packet_in(&self) -> bool {
        self.configured.load(Relaxed) & port_config::NO_PACKET_IN != 0
    }
}

/// Port changes waiting for the OpenFlow channel, oldest first.
#[derive(Debug, Default)]
pub struct PortChanges {
    queue: Mutex<VecDeque<PortStatus>>,
    /// Changes dropped because the queue was full (nobody read it).
    pub dropped: AtomicU64,
}

impl PortChanges {
    /// Queues a change of the port `number` called `name`, as it is now.
    pub fn push(
        &self,
        datapath_id: u64,
        reason: PortReason,
        number: u32,
        name: &str,
        link: LinkState,
    ) {
        let status = PortStatus {
            reason,
            desc: port_desc(datapath_id, number, name, link, &[]),
        };
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.len() >= PORT_CHANGES_DEPTH {
            queue.pop_front();
            self.dropped.fetch_add(1, Relaxed);
        }
        queue.push_back(status);
    }

    /// Every change queued so far, oldest first.
    pub fn take(&self) -> Vec<PortStatus> {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_down_reads_as_port_down_and_link_down() {
        let link = PortLink::default();
        assert_eq!(link.state(), LinkState::UP);
        assert!(link.set_interface(false, false));
        assert_eq!(
            link.state(),
            LinkState {
                config: port_config::PORT_DOWN,
                link_down: true
            }
        );
        assert!(!link.set_interface(false, false), "no change, no report");
        assert!(link.set_interface(true, true));
        assert_eq!(link.state(), LinkState::UP);
    }

    #[test]
    fn port_mod_sets_only_masked_settable_bits() {
        let link = PortLink::default();
        assert!(link.set_config(port_config::NO_FWD | (1 << 20), u32::MAX));
        assert_eq!(link.state().config, port_config::NO_FWD);
        assert!(link.drops_forwarded() && !link.drops_received());
        assert!(!link.set_config(0, port_config::NO_RECV), "unchanged");
        assert!(link.set_config(0, port_config::NO_FWD));
        assert!(!link.drops_forwarded());
    }

    #[test]
    fn a_full_queue_drops_the_oldest_change() {
        let changes = PortChanges::default();
        for n in 0..=PORT_CHANGES_DEPTH {
            let number = u32::try_from(n).unwrap();
            changes.push(1, PortReason::Add, number, "p", LinkState::UP);
        }
        let all = changes.take();
        assert_eq!(all.len(), PORT_CHANGES_DEPTH);
        assert_eq!(all[0].desc.port_no, 1);
        assert_eq!(changes.dropped.load(Relaxed), 1);
        assert!(changes.take().is_empty());
    }
}
