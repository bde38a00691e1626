//! Frames between the switch and its controllers as plain data: a packet-out to
//! run, why one is refused, and a frame the switch sends up (packet-in).

use openflow::flow::{Action, PortNo};

/// A frame injected by an OpenFlow packet-out.
#[derive(Debug, Clone)]
pub struct PacketOutJob {
    /// The ingress port the actions see: a port, or `CONTROLLER`/`ANY` for none.
    pub in_port: PortNo,
    /// Actions to apply in order; `output:TABLE` runs the frame through the tables.
    pub actions: Vec<Action>,
    /// The Ethernet frame.
    pub data: Vec<u8>,
}

/// Why a packet-out was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketOutError {
    /// `in_port` is neither a port of this switch nor `CONTROLLER`/`ANY`.
    #[error("in_port {0:#x} is not a port of this switch")]
    BadInPort(PortNo),
    /// An output names a port this switch does not have.
    #[error("output to port {0:#x}, which does not exist")]
    BadOutPort(PortNo),
    /// A group action names a group this switch does not have.
    #[error("group {0}, which does not exist")]
    BadOutGroup(u32),
    /// The frame is not a well-formed Ethernet frame.
    #[error("the frame is malformed")]
    BadPacket,
}

/// Why a frame went to the controller (`ofp_packet_in_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketInReason {
    /// A table-miss entry (priority 0, matches everything) sent it.
    NoMatch,
    /// An explicit output to `CONTROLLER` in another entry (or a packet-out).
    Action,
}

/// A frame for the controller, as the switch thread hands it over.
#[derive(Debug)]
pub struct PacketInEvent {
    /// Port the frame came in on.
    pub in_port: PortNo,
    /// Why.
    pub reason: PacketInReason,
    /// Table of the entry that sent it (`0xff` when none, e.g. packet-out).
    pub table_id: u8,
    /// Cookie of that entry (all ones when none).
    pub cookie: u64,
    /// The packet's metadata when it was sent (0 when none was written).
    pub metadata: u64,
    /// Length of the whole frame.
    pub total_len: usize,
    /// The frame, or its first `max_len` bytes. A pooled buffer: the daemon's
    /// packet-in channel takes it back once the message is written.
    pub data: Vec<u8>,
}
