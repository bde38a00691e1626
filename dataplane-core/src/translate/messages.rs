//! Asynchronous messages to controllers: flow-removed and packet-in.

use super::duration::duration;
use crate::packet_io::{PacketInEvent, PacketInReason as SwitchReason};
use crate::pipeline::{RemovedFlow, RemovedReason};
use openflow::flow::{flags, Field, FlowMatch};
use openflow::wire::{FlowRemoved, FlowRemovedReason, PacketIn, PacketInReason};
use std::time::Instant;

/// Largest packet-in payload (the message must fit 65535 bytes).
pub const MAX_PACKET_IN_DATA: usize = 65_000;

/// The flow-removed message for an entry that left, if it asked for one.
pub fn flow_removed_message(r: &RemovedFlow, now: Instant) -> Option<FlowRemoved> {
    let spec = &r.entry.spec;
    if spec.flags & flags::SEND_FLOW_REM == 0 {
        return None;
    }
    let (duration_sec, duration_nsec) = duration(r.entry.installed, now);
    Some(FlowRemoved {
        cookie: spec.cookie,
        priority: spec.priority,
        reason: match r.reason {
            RemovedReason::IdleTimeout => FlowRemovedReason::IdleTimeout,
            RemovedReason::HardTimeout => FlowRemovedReason::HardTimeout,
            RemovedReason::Delete => FlowRemovedReason::Delete,
            RemovedReason::GroupDelete => FlowRemovedReason::GroupDelete,
        },
        table_id: spec.table_id,
        duration_sec,
        duration_nsec,
        idle_timeout: spec.idle_timeout,
        hard_timeout: spec.hard_timeout,
        packet_count: r.entry.packets(),
        byte_count: r.entry.bytes(),
        matcher: spec.matcher,
    })
}

/// The packet-in message for a frame the switch sent to the controller. Its
/// match carries the pipeline fields the packet had (OpenFlow 1.3 §7.4.1): the
/// input port always, the metadata when it is not zero (as Open vSwitch does).
pub fn packet_in_message(ev: &PacketInEvent) -> PacketIn {
    let data = ev
        .data
        .get(..ev.data.len().min(MAX_PACKET_IN_DATA))
        .unwrap_or(&[]);
    let mut matcher = FlowMatch::any().with(Field::InPort, u128::from(ev.in_port));
    if ev.metadata != 0 {
        matcher = matcher.with(Field::Metadata, u128::from(ev.metadata));
    }
    PacketIn {
        buffer_id: None,
        total_len: u16::try_from(ev.total_len).unwrap_or(u16::MAX),
        reason: match ev.reason {
            SwitchReason::NoMatch => PacketInReason::NoMatch,
            SwitchReason::Action => PacketInReason::Action,
        },
        table_id: ev.table_id,
        cookie: ev.cookie,
        matcher,
        data: data.to_vec(),
    }
}
