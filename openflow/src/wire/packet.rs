//! Packet-in and packet-out.
//!
//! This module owns the bodies of `OFPT_PACKET_IN` (switch to controller: the frame or
//! its first bytes, why it was sent, and a match carrying at least `in_port`) and
//! `OFPT_PACKET_OUT` (controller to switch: a buffered or included frame and the
//! actions to apply). It never interprets the frame bytes and never panics on any
//! input.

use super::action::{decode_actions, encode_actions};
use super::buf::{Put, Reader};
use super::error::{wire_enum, BadRequest, ErrorCode};
use super::oxm::{decode_match, encode_match, L4Kind};
use super::{Fail, NO_BUFFER};
use crate::flow::{Action, FlowMatch, PortNo};

wire_enum! {
    /// `ofp_packet_in_reason`.
    PacketInReason: u8 {
        /** No matching flow (table-miss). */ NoMatch = 0,
        /** Output to controller in an action list. */ Action = 1,
        /** Packet has an invalid TTL. */ InvalidTtl = 2,
    }
}

/// An `OFPT_PACKET_IN`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct PacketIn {
    /// Buffer holding the whole frame on the switch, or `None` (`OFP_NO_BUFFER`).
    pub buffer_id: Option<u32>,
    /// Length of the whole frame.
    pub total_len: u16,
    /// Why the frame was sent.
    pub reason: PacketInReason,
    /// Table that was looked up.
    pub table_id: u8,
    /// Cookie of the flow entry that sent it (all ones for a miss without entry).
    pub cookie: u64,
    /// Pipeline fields; at least `in_port`.
    pub matcher: FlowMatch,
    /// The frame, or its first `max_len`/`miss_send_len` bytes.
    pub data: Vec<u8>,
}

impl PacketIn {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<PacketIn, Fail> {
        let buffer_id = r.u32()?;
        let total_len = r.u16()?;
        let reason = PacketInReason::from_wire(r.u8()?);
        let table_id = r.u8()?;
        let cookie = r.u64()?;
        let matcher = decode_match(r, false)?;
        r.skip(2)?;
        Ok(PacketIn {
            buffer_id: (buffer_id != NO_BUFFER).then_some(buffer_id),
            total_len,
            reason,
            table_id,
            cookie,
            matcher,
            data: r.rest().to_vec(),
        })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.put_u32(self.buffer_id.unwrap_or(NO_BUFFER));
        out.put_u16(self.total_len);
        out.put_u8(self.reason.to_wire());
        out.put_u8(self.table_id);
        out.put_u64(self.cookie);
        encode_match(out, &self.matcher);
        out.put_zeros(2);
        out.extend_from_slice(&self.data);
    }
}

/// An `OFPT_PACKET_OUT`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct PacketOut {
    /// A frame buffered on the switch, or `None` to use `data`.
    pub buffer_id: Option<u32>,
    /// Ingress port for the actions (`CONTROLLER` when the frame has none).
    pub in_port: PortNo,
    /// Actions to apply (output to `TABLE` runs the pipeline).
    pub actions: Vec<Action>,
    /// The frame, when `buffer_id` is `None`.
    pub data: Vec<u8>,
}

impl PacketOut {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<PacketOut, Fail> {
        let buffer_id = r.u32()?;
        let in_port = r.u32()?;
        let actions_len = usize::from(r.u16()?);
        r.skip(6)?;
        let actions_bytes = r.bytes(actions_len).map_err(|_| {
            Fail::new(
                ErrorCode::BadRequest(BadRequest::BadLen),
                "packet-out actions run past the message",
            )
        })?;
        let actions = decode_actions(actions_bytes)?;
        Ok(PacketOut {
            buffer_id: (buffer_id != NO_BUFFER).then_some(buffer_id),
            in_port,
            actions,
            data: r.rest().to_vec(),
        })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.put_u32(self.buffer_id.unwrap_or(NO_BUFFER));
        out.put_u32(self.in_port);
        let len_at = out.len();
        out.put_u16(0);
        out.put_zeros(6);
        let start = out.len();
        encode_actions(out, &self.actions, L4Kind::Tcp);
        let len = out.len() - start;
        out.patch_u16(len_at, len);
        out.extend_from_slice(&self.data);
    }
}
