//! Actions (`ofp_action_*`) and instructions (`ofp_instruction_*`) on the wire.
//!
//! This module owns the encoding of [`Action`] (output, set-field, push/pop VLAN,
//! dec-nw-ttl, group) and [`Instruction`] (apply-actions, write-actions,
//! clear-actions, write-metadata, goto-table). Anything else a peer sends is refused
//! with the code OpenFlow 1.3 prescribes: bad-action/bad-type for unsupported
//! actions, bad-action/bad-set-type for set-fields we cannot write (metadata is
//! written by write-metadata only), bad-instruction/unsup-inst for meter. It never
//! panics on any input and never reads past a declared length.

use super::buf::{Put, Reader};
use super::error::{BadAction, BadInstruction, ErrorCode};
use super::oxm::{oxm_id, put_oxm, read_oxm, L4Kind};
use super::Fail;
use crate::flow::{ethertype, port, Action, Instruction, GROUP_MAX};

const OUTPUT: u16 = 0;
const PUSH_VLAN: u16 = 17;
const POP_VLAN: u16 = 18;
const GROUP: u16 = 22;
const DEC_NW_TTL: u16 = 24;
const SET_FIELD: u16 = 25;
const EXPERIMENTER: u16 = 0xffff;

const GOTO_TABLE: u16 = 1;
const WRITE_METADATA: u16 = 2;
const WRITE_ACTIONS: u16 = 3;
const APPLY_ACTIONS: u16 = 4;
const CLEAR_ACTIONS: u16 = 5;
const METER: u16 = 6;

fn act(code: BadAction, why: impl Into<String>) -> Fail {
    Fail::new(ErrorCode::BadAction(code), why)
}

fn ins(code: BadInstruction, why: impl Into<String>) -> Fail {
    Fail::new(ErrorCode::BadInstruction(code), why)
}

/// Appends an action list. `l4` names the transport fields of set-field actions.
pub(crate) fn encode_actions(out: &mut Vec<u8>, actions: &[Action], l4: L4Kind) {
    for a in actions {
        let start = out.len();
        match *a {
            Action::Output { port, max_len } => {
                out.put_u16(OUTPUT);
                out.put_u16(16);
                out.put_u32(port);
                out.put_u16(max_len);
                out.put_zeros(6);
            }
            Action::SetField { field, value } => {
                out.put_u16(SET_FIELD);
                out.put_u16(0);
                let (id, width) = oxm_id(field, l4);
                put_oxm(out, id, width, value & field.full_mask(), None);
                out.pad8(start);
                let len = out.len() - start;
                out.patch_u16(start + 2, len);
            }
            Action::PushVlan(tpid) => {
                out.put_u16(PUSH_VLAN);
                out.put_u16(8);
                out.put_u16(tpid);
                out.put_zeros(2);
            }
            Action::PopVlan => {
                out.put_u16(POP_VLAN);
                out.put_u16(8);
                out.put_zeros(4);
            }
            Action::DecNwTtl => {
                out.put_u16(DEC_NW_TTL);
                out.put_u16(8);
                out.put_zeros(4);
            }
            Action::Group(id) => {
                out.put_u16(GROUP);
                out.put_u16(8);
                out.put_u32(id);
            }
        }
    }
}

/// Reads an action list that fills `bytes` exactly.
pub(crate) fn decode_actions(bytes: &[u8]) -> Result<Vec<Action>, Fail> {
    let mut r = Reader::new(bytes);
    let mut out = Vec::new();
    while !r.is_empty() {
        let (Ok(typ), Ok(len)) = (r.u16(), r.u16()) else {
            return Err(act(BadAction::BadLen, "truncated action header"));
        };
        let len = usize::from(len);
        if len < 8 || len % 8 != 0 {
            return Err(act(BadAction::BadLen, format!("action length {len}")));
        }
        let body = r
            .bytes(len - 4)
            .map_err(|_| act(BadAction::BadLen, "action runs past its list"))?;
        let mut b = Reader::new(body);
        let short = |_| act(BadAction::BadLen, "action too short");
        let action = match typ {
            OUTPUT => {
                if len != 16 {
                    return Err(act(BadAction::BadLen, "output action must be 16 bytes"));
                }
                let p = b.u32().map_err(short)?;
                let max_len = b.u16().map_err(short)?;
                if p == port::ANY || p == 0 {
                    return Err(act(BadAction::BadOutPort, format!("output to port {p:#x}")));
                }
                Action::Output { port: p, max_len }
            }
            PUSH_VLAN => {
                if len != 8 {
                    return Err(act(BadAction::BadLen, "push_vlan must be 8 bytes"));
                }
                let tpid = b.u16().map_err(short)?;
                if tpid != ethertype::VLAN && tpid != ethertype::QINQ {
                    return Err(act(BadAction::BadArgument, format!("push_vlan {tpid:#x}")));
                }
                Action::PushVlan(tpid)
            }
            POP_VLAN | DEC_NW_TTL => {
                if len != 8 {
                    return Err(act(BadAction::BadLen, "action must be 8 bytes"));
                }
                if typ == POP_VLAN {
                    Action::PopVlan
                } else {
                    Action::DecNwTtl
                }
            }
            GROUP => {
                if len != 8 {
                    return Err(act(BadAction::BadLen, "group action must be 8 bytes"));
                }
                let id = b.u32().map_err(short)?;
                if id > GROUP_MAX {
                    return Err(act(BadAction::BadOutGroup, format!("group {id:#x}")));
                }
                Action::Group(id)
            }
            SET_FIELD => {
                let oxm = read_oxm(&mut b, true).map_err(|f| {
                    let code = match f.code {
                        ErrorCode::BadMatch(super::error::BadMatch::BadField) => {
                            BadAction::BadSetType
                        }
                        ErrorCode::BadMatch(super::error::BadMatch::BadValue) => {
                            BadAction::BadSetArgument
                        }
                        _ => BadAction::BadSetLen,
                    };
                    act(code, f.why)
                })?;
                let Some((field, value, mask, _)) = oxm else {
                    return Err(act(BadAction::BadSetType, "unsupported set-field"));
                };
                if mask.is_some() {
                    return Err(act(BadAction::BadSetArgument, "set-field with a mask"));
                }
                if field == crate::flow::Field::Metadata {
                    return Err(act(
                        BadAction::BadSetType,
                        "set-field of metadata (write-metadata writes it)",
                    ));
                }
                if b.rest().iter().any(|x| *x != 0) {
                    return Err(act(BadAction::BadSetLen, "set-field padding is not zero"));
                }
                Action::SetField { field, value }
            }
            EXPERIMENTER => {
                return Err(act(BadAction::BadExperimenter, "experimenter action"));
            }
            other => {
                return Err(act(
                    BadAction::BadType,
                    format!("unsupported action type {other}"),
                ));
            }
        };
        out.push(action);
    }
    Ok(out)
}

/// Appends an instruction list.
pub(crate) fn encode_instructions(out: &mut Vec<u8>, list: &[Instruction], l4: L4Kind) {
    for i in list {
        let start = out.len();
        match i {
            Instruction::GotoTable(t) => {
                out.put_u16(GOTO_TABLE);
                out.put_u16(8);
                out.put_u8(*t);
                out.put_zeros(3);
            }
            Instruction::ApplyActions(actions) | Instruction::WriteActions(actions) => {
                let typ = if matches!(i, Instruction::ApplyActions(_)) {
                    APPLY_ACTIONS
                } else {
                    WRITE_ACTIONS
                };
                out.put_u16(typ);
                out.put_u16(0);
                out.put_zeros(4);
                encode_actions(out, actions, l4);
                let len = out.len() - start;
                out.patch_u16(start + 2, len);
            }
            Instruction::ClearActions => {
                out.put_u16(CLEAR_ACTIONS);
                out.put_u16(8);
                out.put_zeros(4);
            }
            Instruction::WriteMetadata { value, mask } => {
                out.put_u16(WRITE_METADATA);
                out.put_u16(24);
                out.put_zeros(4);
                out.put_u64(*value);
                out.put_u64(*mask);
            }
        }
    }
}

/// Reads an instruction list that fills `bytes` exactly. `table` is the table of the
/// flow, when known: goto-table must point to a later table.
pub(crate) fn decode_instructions(
    bytes: &[u8],
    table: Option<u8>,
) -> Result<Vec<Instruction>, Fail> {
    let mut r = Reader::new(bytes);
    let mut out = Vec::new();
    let mut seen: Vec<u16> = Vec::new();
    while !r.is_empty() {
        let (Ok(typ), Ok(len)) = (r.u16(), r.u16()) else {
            return Err(ins(BadInstruction::BadLen, "truncated instruction header"));
        };
        let len = usize::from(len);
        if len < 8 || len % 8 != 0 {
            return Err(ins(
                BadInstruction::BadLen,
                format!("instruction length {len}"),
            ));
        }
        let body = r
            .bytes(len - 4)
            .map_err(|_| ins(BadInstruction::BadLen, "instruction runs past its list"))?;
        if seen.contains(&typ) {
            return Err(ins(
                BadInstruction::UnsupInst,
                format!("instruction {typ} given twice"),
            ));
        }
        seen.push(typ);
        match typ {
            GOTO_TABLE => {
                if len != 8 {
                    return Err(ins(BadInstruction::BadLen, "goto_table must be 8 bytes"));
                }
                let t = body.first().copied().unwrap_or(0);
                if t == 0xff || table.is_some_and(|cur| t <= cur) {
                    return Err(ins(
                        BadInstruction::BadTableId,
                        format!("goto_table {t} must name a later table"),
                    ));
                }
                out.push(Instruction::GotoTable(t));
            }
            APPLY_ACTIONS => {
                let actions = decode_actions(body.get(4..).unwrap_or(&[]))?;
                out.push(Instruction::ApplyActions(actions));
            }
            WRITE_ACTIONS => {
                let actions = decode_actions(body.get(4..).unwrap_or(&[]))?;
                out.push(Instruction::WriteActions(actions));
            }
            CLEAR_ACTIONS => {
                if len != 8 {
                    return Err(ins(BadInstruction::BadLen, "clear_actions must be 8 bytes"));
                }
                out.push(Instruction::ClearActions);
            }
            WRITE_METADATA => {
                if len != 24 {
                    return Err(ins(
                        BadInstruction::BadLen,
                        "write_metadata must be 24 bytes",
                    ));
                }
                let mut b = Reader::new(body.get(4..).unwrap_or(&[]));
                let short = |_| ins(BadInstruction::BadLen, "write_metadata too short");
                let value = b.u64().map_err(short)?;
                let mask = b.u64().map_err(short)?;
                out.push(Instruction::WriteMetadata { value, mask });
            }
            METER => {
                return Err(ins(
                    BadInstruction::UnsupInst,
                    format!("instruction type {typ} is not supported"),
                ));
            }
            EXPERIMENTER => {
                return Err(ins(
                    BadInstruction::BadExperimenter,
                    "experimenter instruction",
                ));
            }
            other => {
                return Err(ins(
                    BadInstruction::UnknownInst,
                    format!("unknown instruction type {other}"),
                ));
            }
        }
    }
    Ok(out)
}
