//! A VM moving between hosts and how far the network has followed it: the state
//! the routing compiles and the daemon persists.

use serde::{Deserialize, Serialize};

/// A VM moving between hosts, and how far the network has followed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migration {
    /// The VM.
    pub vm: String,
    /// Host it leaves.
    pub from_host: String,
    /// Its port there.
    pub from_port: u32,
    /// Host it goes to.
    pub to_host: String,
    /// Its port there.
    pub to_port: u32,
    /// Where the procedure stands.
    pub phase: Phase,
}

/// The steps of make-before-break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// The destination delivers the VM's packets that arrive from tunnels and tells
    /// the controller when the VM announces itself there; everyone else still sends
    /// to the old host. The inventory still places the VM at the old host.
    Prepared,
    /// The inventory places the VM at the new host; every switch sends there, and
    /// the old host forwards in-flight packets from any tunnel to the new host.
    Switched,
}
