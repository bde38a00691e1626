//! The bounded packet-in channel with its pool of reused buffers: a frame for the
//! controller is dropped and counted rather than ever blocking the fast path.

use dataplane_core::packet_io::{PacketInEvent, PacketInReason};
use dataplane_core::pipeline::{Classification, Pipeline};
use openflow::flow::PortNo;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

/// The forwarding workers' end of the packet-in channel (one clone per worker).
#[derive(Debug, Clone)]
pub struct PacketInSender {
    pub(super) events: SyncSender<PacketInEvent>,
    /// Shared by the workers: taken once per packet-in, a frame already off
    /// the fast path, and uncontended with one worker.
    pub(super) pool: Arc<Mutex<Receiver<Vec<u8>>>>,
}

/// The OpenFlow channel's end of the packet-in channel.
#[derive(Debug)]
pub struct PacketInReceiver {
    /// Frames for the controller, in order.
    pub events: Receiver<PacketInEvent>,
    pool: SyncSender<Vec<u8>>,
}

impl PacketInReceiver {
    /// Returns a frame buffer to the pool once its packet-in is written.
    pub fn recycle(&self, mut buf: Vec<u8>) {
        buf.clear();
        let _ = self.pool.try_send(buf);
    }
}

/// Bytes reserved in each pooled packet-in buffer (larger frames grow it once).
pub(super) const PACKET_IN_BUF: usize = 2048;

/// A bounded packet-in channel holding at most `depth` frames in flight, with
/// `depth` preallocated buffers.
pub fn packet_in_channel(depth: usize) -> (PacketInSender, PacketInReceiver) {
    let depth = depth.max(1);
    let (events_tx, events_rx) = mpsc::sync_channel(depth);
    let (pool_tx, pool_rx) = mpsc::sync_channel(depth);
    for _ in 0..depth {
        let _ = pool_tx.try_send(Vec::with_capacity(PACKET_IN_BUF));
    }
    (
        PacketInSender {
            events: events_tx,
            pool: Arc::new(Mutex::new(pool_rx)),
        },
        PacketInReceiver {
            events: events_rx,
            pool: pool_tx,
        },
    )
}

impl PacketInSender {
    /// Hands a frame over without blocking; false when it had to be dropped.
    /// The whole frame goes, whatever the output's `max_len`: `scd` buffers no
    /// packet, and an unbuffered packet-in carries the entire packet (OpenFlow
    /// 1.3 §7.4.1), as `OFPCML_NO_BUFFER` asks too.
    pub(super) fn send(&self, meta: PacketInMeta, frame: &[u8]) -> bool {
        let taken = self.pool.lock().ok().and_then(|pool| pool.try_recv().ok());
        let Some(mut buf) = taken else {
            return false;
        };
        buf.clear();
        buf.extend_from_slice(frame);
        let event = PacketInEvent {
            in_port: meta.in_port,
            reason: meta.reason,
            table_id: meta.table_id,
            cookie: meta.cookie,
            metadata: meta.metadata,
            total_len: frame.len(),
            data: buf,
        };
        match self.events.try_send(event) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

/// Where a packet-in comes from.
#[derive(Debug, Clone, Copy)]
pub(super) struct PacketInMeta {
    pub(super) in_port: PortNo,
    pub(super) reason: PacketInReason,
    pub(super) table_id: u8,
    pub(super) cookie: u64,
    pub(super) metadata: u64,
}

impl PacketInMeta {
    /// A packet-in no entry caused (a packet-out's output to the controller).
    pub(super) fn unclassified(in_port: PortNo) -> PacketInMeta {
        PacketInMeta {
            in_port,
            reason: PacketInReason::Action,
            table_id: 0xff,
            cookie: u64::MAX,
            metadata: 0,
        }
    }
}

/// The tables a packet went through and what it hit there.
#[derive(Debug, Clone, Copy)]
pub(super) struct Classified<'a> {
    pipeline: &'a Pipeline,
    classification: &'a Classification,
}

impl<'a> Classified<'a> {
    pub(super) fn new(pipeline: &'a Pipeline, classification: &'a Classification) -> Self {
        Classified {
            pipeline,
            classification,
        }
    }
}

/// What the packet-in of the output to the controller at place `nth` among the
/// actions' outputs to the controller reports (the place the executor gives it,
/// `dataplane_core::exec::execute_counted`, which counts outputs a failed
/// `dec_ttl` skipped too): the entry that holds that output and the metadata
/// then (see [`Classification::to_controller`]); an entry that is a table-miss
/// (priority 0 with an empty match) means [`PacketInReason::NoMatch`]. Each
/// segment of a super-frame cut before its actions run counts from zero again.
pub(super) fn packet_in_meta(
    classified: Option<Classified<'_>>,
    in_port: PortNo,
    nth: usize,
) -> PacketInMeta {
    let Some(classified) = classified else {
        return PacketInMeta::unclassified(in_port);
    };
    let noted = &classified.classification.to_controller;
    let (entry, metadata) = match noted.get(nth) {
        Some(output) => (Some(output.entry), output.metadata),
        // Not noted (cannot happen for classified actions): the last entry hit.
        None => (classified.classification.hits.last().copied(), 0),
    };
    match entry.and_then(|id| classified.pipeline.entry(id)) {
        Some(e) => PacketInMeta {
            in_port,
            reason: if e.spec.priority == 0 && e.spec.matcher == openflow::FlowMatch::any() {
                PacketInReason::NoMatch
            } else {
                PacketInReason::Action
            },
            table_id: e.spec.table_id,
            cookie: e.spec.cookie,
            metadata,
        },
        None => PacketInMeta {
            metadata,
            ..PacketInMeta::unclassified(in_port)
        },
    }
}
