//! Flow-mods and group-mods applied to the pipeline, and the OpenFlow error each
//! refusal (of a table change, a group change, a packet-out) is answered with.

use crate::packet_io::PacketOutError;
use crate::pipeline::{GroupError, Pipeline, RemovedFlow, Selector, TableError};
use openflow::flow::{port, PortNo};
use openflow::wire::{
    BadAction, BadInstruction, BadRequest, ErrorCode, FlowMod, FlowModCommand, FlowModFailed,
    GroupMod, GroupModCommand, GroupModFailed, GROUP_ANY,
};
use std::time::Instant;

/// `OFPFF_RESET_COUNTS`.
const RESET_COUNTS: u16 = 1 << 2;

/// The OpenFlow error a refused table change is answered with.
pub fn table_error_code(e: &TableError) -> ErrorCode {
    match e {
        TableError::BadTableId(_) => ErrorCode::FlowModFailed(FlowModFailed::BadTableId),
        TableError::BadGoto { .. } => ErrorCode::BadInstruction(BadInstruction::BadTableId),
        TableError::Overlap(_) => ErrorCode::FlowModFailed(FlowModFailed::Overlap),
        TableError::TableFull(_) => ErrorCode::FlowModFailed(FlowModFailed::TableFull),
        TableError::BadOutPort(_) => ErrorCode::BadAction(BadAction::BadOutPort),
        TableError::DuplicateInstruction(_) => ErrorCode::BadInstruction(BadInstruction::UnsupInst),
        TableError::BadOutGroup(_) => ErrorCode::BadAction(BadAction::BadOutGroup),
        TableError::BadSetField(_) => ErrorCode::BadAction(BadAction::BadSetType),
    }
}

/// The OpenFlow error a refused group-mod is answered with.
pub fn group_error_code(e: &GroupError) -> ErrorCode {
    let failed = match e {
        GroupError::Exists(_) => GroupModFailed::GroupExists,
        GroupError::Unknown(_) => GroupModFailed::UnknownGroup,
        GroupError::Invalid(..) => GroupModFailed::InvalidGroup,
        GroupError::ChainingUnsupported(_) => GroupModFailed::ChainingUnsupported,
        GroupError::BadBucket(..) => GroupModFailed::BadBucket,
        GroupError::OutOfGroups(_) => GroupModFailed::OutOfGroups,
        GroupError::BadSetField(..) => return ErrorCode::BadAction(BadAction::BadSetType),
    };
    ErrorCode::GroupModFailed(failed)
}

/// Applies one group-mod to the group table (OpenFlow 1.3 section 6.5); returns
/// the flows a delete removed with their groups.
pub fn apply_group_mod(
    p: &mut Pipeline,
    gm: &GroupMod,
    now: Instant,
) -> Result<Vec<RemovedFlow>, ErrorCode> {
    let result = match gm.command {
        GroupModCommand::Add => p.add_group(gm.spec.clone(), now).map(|()| Vec::new()),
        GroupModCommand::Modify => p.modify_group(gm.spec.clone()).map(|()| Vec::new()),
        GroupModCommand::Delete => Ok(p.delete_group(gm.spec.group_id)),
    };
    result.map_err(|e| group_error_code(&e))
}

/// The OpenFlow error a refused packet-out is answered with.
pub fn packet_out_error_code(e: &PacketOutError) -> ErrorCode {
    match e {
        PacketOutError::BadInPort(_) => ErrorCode::BadRequest(BadRequest::BadPort),
        PacketOutError::BadOutPort(_) => ErrorCode::BadAction(BadAction::BadOutPort),
        PacketOutError::BadOutGroup(_) => ErrorCode::BadAction(BadAction::BadOutGroup),
        PacketOutError::BadPacket => ErrorCode::BadRequest(BadRequest::BadPacket),
    }
}

/// Applies one flow-mod to the tables (OpenFlow 1.3 section 6.4); returns the
/// entries a delete removed.
pub fn apply_flow_mod(
    p: &mut Pipeline,
    fm: &FlowMod,
    now: Instant,
) -> Result<Vec<RemovedFlow>, ErrorCode> {
    let spec = &fm.spec;
    let selector = |strict: bool, out_port: PortNo, out_group: u32| Selector {
        table_id: spec.table_id,
        matcher: &spec.matcher,
        strict_priority: strict.then_some(spec.priority),
        cookie: spec.cookie,
        cookie_mask: fm.cookie_mask,
        out_port,
        out_group,
    };
    let result = match fm.command {
        FlowModCommand::Add => p.add(spec.clone(), now).map(|_| Vec::new()),
        FlowModCommand::Modify | FlowModCommand::ModifyStrict => {
            // out_port and out_group do not restrict modifies (section 6.4).
            let strict = fm.command == FlowModCommand::ModifyStrict;
            p.modify(
                &selector(strict, port::ANY, GROUP_ANY),
                &spec.instructions,
                spec.flags & RESET_COUNTS != 0,
            )
            .map(|_| Vec::new())
        }
        FlowModCommand::Delete | FlowModCommand::DeleteStrict => {
            let strict = fm.command == FlowModCommand::DeleteStrict;
            p.delete(&selector(strict, fm.out_port, fm.out_group))
        }
    };
    result.map_err(|e| table_error_code(&e))
}
