//! Flow-mod, flow-removed and the per-flow entries of flow statistics.
//!
//! This module owns the wire form of the messages that carry a [`FlowSpec`]: the
//! `OFPT_FLOW_MOD` commands (add, modify, modify-strict, delete, delete-strict, with
//! cookie mask, `out_port`, `out_group`, flags and buffer id), `OFPT_FLOW_REMOVED`, and
//! `ofp_flow_stats`. Flow-mods are decoded strictly (unknown commands, flags, tables,
//! matches, actions and instructions are errors with their OpenFlow codes). It never
//! decides what a flow-mod does to a table, and never panics on any input.

use super::action::{decode_instructions, encode_instructions};
use super::buf::{Put, Reader};
use super::error::{wire_enum, BadRequest, ErrorCode, FlowModFailed};
use super::oxm::{decode_match, encode_match, L4Kind};
use super::{Fail, NO_BUFFER};
use crate::flow::{flags, FlowSpec, PortNo};

/// `OFPTT_ALL`: every table (delete and stats requests only).
pub const TABLE_ALL: u8 = 0xff;
pub use crate::flow::GROUP_ANY;
/// Every flag a flow-mod may carry in OpenFlow 1.3.
const KNOWN_FLAGS: u16 = flags::SEND_FLOW_REM
    | flags::CHECK_OVERLAP
    | (1 << 2)
    | flags::NO_PKT_COUNTS
    | flags::NO_BYT_COUNTS;

/// `ofp_flow_mod_command`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum FlowModCommand {
    /// New flow.
    Add,
    /// Modify all matching flows.
    Modify,
    /// Modify the flow with exactly this match and priority.
    ModifyStrict,
    /// Delete all matching flows.
    Delete,
    /// Delete the flow with exactly this match and priority.
    DeleteStrict,
}

impl FlowModCommand {
    fn to_wire(self) -> u8 {
        match self {
            FlowModCommand::Add => 0,
            FlowModCommand::Modify => 1,
            FlowModCommand::ModifyStrict => 2,
            FlowModCommand::Delete => 3,
            FlowModCommand::DeleteStrict => 4,
        }
    }

    fn from_wire(v: u8) -> Option<FlowModCommand> {
        Some(match v {
            0 => FlowModCommand::Add,
            1 => FlowModCommand::Modify,
            2 => FlowModCommand::ModifyStrict,
            3 => FlowModCommand::Delete,
            4 => FlowModCommand::DeleteStrict,
            _ => return None,
        })
    }

    /// True for delete and delete-strict.
    pub fn is_delete(self) -> bool {
        matches!(self, FlowModCommand::Delete | FlowModCommand::DeleteStrict)
    }
}

/// An `OFPT_FLOW_MOD`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct FlowMod {
    /// What to do.
    pub command: FlowModCommand,
    /// The entry (for modify/delete: the match, priority, table and cookie to select
    /// by; `table_id` may be [`TABLE_ALL`] for deletes).
    pub spec: FlowSpec,
    /// Which cookie bits must equal `spec.cookie` (modify/delete; 0 = any cookie).
    pub cookie_mask: u64,
    /// Buffered packet to run through the new flow, if any.
    pub buffer_id: Option<u32>,
    /// Delete only flows that output to this port (`port::ANY` = no restriction).
    pub out_port: PortNo,
    /// Delete only flows that output to this group ([`GROUP_ANY`] = no restriction).
    pub out_group: u32,
}

impl FlowMod {
    /// An add of `spec` with no buffer and no restrictions.
    pub fn add(spec: FlowSpec) -> FlowMod {
        FlowMod {
            command: FlowModCommand::Add,
            spec,
            cookie_mask: 0,
            buffer_id: None,
            out_port: crate::flow::port::ANY,
            out_group: GROUP_ANY,
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<FlowMod, Fail> {
        let cookie = r.u64()?;
        let cookie_mask = r.u64()?;
        let table_id = r.u8()?;
        let command = r.u8()?;
        let idle_timeout = r.u16()?;
        let hard_timeout = r.u16()?;
        let priority = r.u16()?;
        let buffer_id = r.u32()?;
        let out_port = r.u32()?;
        let out_group = r.u32()?;
        let fl = r.u16()?;
        r.skip(2)?;
        let fail = |c: FlowModFailed, why: String| Fail::new(ErrorCode::FlowModFailed(c), why);
        let command = FlowModCommand::from_wire(command)
            .ok_or_else(|| fail(FlowModFailed::BadCommand, format!("command {command}")))?;
        if fl & !KNOWN_FLAGS != 0 {
            return Err(fail(FlowModFailed::BadFlags, format!("flags {fl:#x}")));
        }
        if table_id == TABLE_ALL && !command.is_delete() {
            return Err(fail(
                FlowModFailed::BadTableId,
                "table 255 (all) is only for deletes".into(),
            ));
        }
        let matcher = decode_match(r, true)?;
        let instructions = decode_instructions(r.rest(), Some(table_id))?;
        Ok(FlowMod {
            command,
            spec: FlowSpec {
                table_id,
                priority,
                matcher,
                instructions,
                cookie,
                idle_timeout,
                hard_timeout,
                flags: fl,
            },
            cookie_mask,
            buffer_id: (buffer_id != NO_BUFFER).then_some(buffer_id),
            out_port,
            out_group,
        })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let s = &self.spec;
        out.put_u64(s.cookie);
        out.put_u64(self.cookie_mask);
        out.put_u8(s.table_id);
        out.put_u8(self.command.to_wire());
        out.put_u16(s.idle_timeout);
        out.put_u16(s.hard_timeout);
        out.put_u16(s.priority);
        out.put_u32(self.buffer_id.unwrap_or(NO_BUFFER));
        out.put_u32(self.out_port);
        out.put_u32(self.out_group);
        out.put_u16(s.flags);
        out.put_zeros(2);
        encode_match(out, &s.matcher);
        encode_instructions(out, &s.instructions, L4Kind::of(&s.matcher));
    }
}

wire_enum! {
    /// `ofp_flow_removed_reason`.
    FlowRemovedReason: u8 {
        /** Idle timeout expired. */ IdleTimeout = 0,
        /** Hard timeout expired. */ HardTimeout = 1,
        /** Deleted by a flow-mod. */ Delete = 2,
        /** Group was removed. */ GroupDelete = 3,
    }
}

/// An `OFPT_FLOW_REMOVED`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct FlowRemoved {
    /// Cookie of the removed entry.
    pub cookie: u64,
    /// Its priority.
    pub priority: u16,
    /// Why it went.
    pub reason: FlowRemovedReason,
    /// Its table.
    pub table_id: u8,
    /// How long it lived, seconds part.
    pub duration_sec: u32,
    /// How long it lived, nanoseconds beyond `duration_sec`.
    pub duration_nsec: u32,
    /// Its idle timeout.
    pub idle_timeout: u16,
    /// Its hard timeout.
    pub hard_timeout: u16,
    /// Packets it matched.
    pub packet_count: u64,
    /// Bytes it matched.
    pub byte_count: u64,
    /// Its match.
    pub matcher: crate::flow::FlowMatch,
}

impl FlowRemoved {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<FlowRemoved, Fail> {
        Ok(FlowRemoved {
            cookie: r.u64()?,
            priority: r.u16()?,
            reason: FlowRemovedReason::from_wire(r.u8()?),
            table_id: r.u8()?,
            duration_sec: r.u32()?,
            duration_nsec: r.u32()?,
            idle_timeout: r.u16()?,
            hard_timeout: r.u16()?,
            packet_count: r.u64()?,
            byte_count: r.u64()?,
            matcher: decode_match(r, false)?,
        })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.put_u64(self.cookie);
        out.put_u16(self.priority);
        out.put_u8(self.reason.to_wire());
        out.put_u8(self.table_id);
        out.put_u32(self.duration_sec);
        out.put_u32(self.duration_nsec);
        out.put_u16(self.idle_timeout);
        out.put_u16(self.hard_timeout);
        out.put_u64(self.packet_count);
        out.put_u64(self.byte_count);
        encode_match(out, &self.matcher);
    }
}

/// One entry of a flow statistics reply (`ofp_flow_stats`).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct FlowStatsEntry {
    /// The flow (table, priority, match, instructions, cookie, timeouts, flags).
    pub spec: FlowSpec,
    /// Its counters.
    pub stats: crate::text::FlowStats,
}

impl FlowStatsEntry {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<FlowStatsEntry, Fail> {
        let len = usize::from(r.u16()?);
        let bad_len = || {
            Fail::new(
                ErrorCode::BadRequest(BadRequest::BadLen),
                "flow stats entry length",
            )
        };
        if len < 56 {
            return Err(bad_len());
        }
        let body = r.bytes(len - 2).map_err(|_| bad_len())?;
        let mut b = Reader::new(body);
        let table_id = b.u8()?;
        b.skip(1)?;
        let duration_sec = b.u32()?;
        let duration_nsec = b.u32()?;
        let priority = b.u16()?;
        let idle_timeout = b.u16()?;
        let hard_timeout = b.u16()?;
        let fl = b.u16()?;
        b.skip(4)?;
        let cookie = b.u64()?;
        let packet_count = b.u64()?;
        let byte_count = b.u64()?;
        let matcher = decode_match(&mut b, false)?;
        let instructions = decode_instructions(b.rest(), None)?;
        Ok(FlowStatsEntry {
            spec: FlowSpec {
                table_id,
                priority,
                matcher,
                instructions,
                cookie,
                idle_timeout,
                hard_timeout,
                flags: fl,
            },
            stats: crate::text::FlowStats {
                duration_sec,
                duration_nsec,
                packet_count,
                byte_count,
                idle_age: None,
            },
        })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let s = &self.spec;
        out.put_u16(0);
        out.put_u8(s.table_id);
        out.put_u8(0);
        out.put_u32(self.stats.duration_sec);
        out.put_u32(self.stats.duration_nsec);
        out.put_u16(s.priority);
        out.put_u16(s.idle_timeout);
        out.put_u16(s.hard_timeout);
        out.put_u16(s.flags);
        out.put_zeros(4);
        out.put_u64(s.cookie);
        out.put_u64(self.stats.packet_count);
        out.put_u64(self.stats.byte_count);
        encode_match(out, &s.matcher);
        encode_instructions(out, &s.instructions, L4Kind::of(&s.matcher));
        let len = out.len() - start;
        out.patch_u16(start, len);
    }
}
