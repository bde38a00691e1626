//! What the daemon asks of a store, whichever it is: [`StateStore`] (load and a
//! durable, all-or-nothing save of [`Persisted`]) and the replica's place among
//! the controllers ([`Mastership`]), which decides the OpenFlow role its switch
//! sessions claim.
//!
//! The embedded file ([`crate::store::Store`]) implements it for one controller;
//! the etcd store of [`crate::replica`] for replicas, where a save succeeds only
//! while the replica holds the leadership. This module owns those two contracts
//! and no I/O.

use crate::store::{Persisted, Store};

/// Where the controller's state lives.
pub trait StateStore: Send + Sync + std::fmt::Debug {
    /// The persisted state, if there is one yet.
    fn load(&self) -> std::io::Result<Option<Persisted>>;
    /// Replaces the persisted state, durably and all or nothing. An error means
    /// nothing was written (for a replica: it is not, or no longer, the leader,
    /// or the store lost its quorum).
    fn save(&self, state: &Persisted) -> std::io::Result<()>;
}

impl StateStore for Store {
    fn load(&self) -> std::io::Result<Option<Persisted>> {
        Store::load(self)
    }
    fn save(&self, state: &Persisted) -> std::io::Result<()> {
        Store::save(self, state)
    }
}

/// This controller's place among the controllers of the switches, and the
/// OpenFlow role its sessions claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(tag = "role", content = "generation", rename_all = "lowercase")]
pub enum Mastership {
    /// The only controller (embedded store): no role request is sent, the switch
    /// keeps every connection `equal`.
    #[default]
    Sole,
    /// The elected leader: `ROLE_REQUEST master` with this generation id.
    Master(u64),
    /// A standby: `ROLE_REQUEST slave` with the newest generation it knows; it
    /// changes nothing on the switches.
    Slave(u64),
}

impl Mastership {
    /// True when this controller may program the switches.
    pub fn programs_switches(self) -> bool {
        !matches!(self, Mastership::Slave(_))
    }
}
