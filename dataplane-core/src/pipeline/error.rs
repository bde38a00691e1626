//! Why a flow-mod or a group-mod was refused; each variant maps onto an OpenFlow
//! error code.

use openflow::flow::Field;
use openflow::PortNo;

/// Why a flow-mod was refused (each maps onto an OpenFlow error code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// The table id is not one of the switch's tables.
    #[error("table {0} does not exist")]
    BadTableId(u8),
    /// Goto-table must point to a later, existing table.
    #[error("goto_table:{goto} from table {from} must name a later table below {limit}")]
    BadGoto {
        /// The table holding the instruction.
        from: u8,
        /// The table it points to.
        goto: u8,
        /// Number of tables.
        limit: u8,
    },
    /// An add with check-overlap collided with an entry of the same priority.
    #[error("flow overlaps an existing flow of priority {0} (check_overlap)")]
    Overlap(u16),
    /// The table is full.
    #[error("table {0} is full")]
    TableFull(u8),
    /// An output names a port that cannot be an output.
    #[error("output to port {0:#x} is not valid")]
    BadOutPort(PortNo),
    /// An instruction list with two of the same kind.
    #[error("instruction {0} appears twice")]
    DuplicateInstruction(&'static str),
    /// A group action names a group the switch does not have.
    #[error("group {0} does not exist")]
    BadOutGroup(u32),
    /// A set_field writes a field scd cannot write (see [`super::writable`]).
    #[error("set_field cannot write {0:?}")]
    BadSetField(Field),
}

/// Why a group-mod was refused (each maps onto an `OFPGMFC_*` code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// An add of a group id already in use.
    #[error("group {0} already exists")]
    Exists(u32),
    /// A modify or delete of a group that is not there.
    #[error("group {0} does not exist")]
    Unknown(u32),
    /// A group id above `OFPG_MAX`, or an indirect group without exactly one bucket.
    #[error("group {0}: {1}")]
    Invalid(u32, &'static str),
    /// A bucket names a group; scd runs groups in one step.
    #[error("group {0}: a bucket may not forward to a group")]
    ChainingUnsupported(u32),
    /// A bucket outputs to a port that cannot be an output.
    #[error("group {0}: output to port {1:#x} is not valid")]
    BadBucket(u32, PortNo),
    /// A bucket's set_field writes a field scd cannot write.
    #[error("group {0}: set_field cannot write {1:?}")]
    BadSetField(u32, Field),
    /// The group table is full.
    #[error("the group table is full ({0} groups)")]
    OutOfGroups(usize),
}
