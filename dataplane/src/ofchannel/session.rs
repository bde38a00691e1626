//! The state of one OpenFlow connection, independent of its socket: hello and
//! version negotiation, roles, and the answer to every request `scd` understands.

use super::backend::Backend;
use super::registry::{Conn, Registry};
use crate::switch::SwitchGone;
use dataplane_core::packet_io::PacketOutJob;
use dataplane_core::pipeline::{ALL_TABLES, MAX_ENTRIES_PER_TABLE};
use dataplane_core::translate::{aggregate, flow_removed_message, packet_out_error_code};
use openflow::wire::{
    capabilities, decode, error_reply_for, BadRequest, ControllerRole, ErrorCode, ErrorMsg,
    FlowMod, HelloFailed, Message, MultipartReply, MultipartReplyBody, MultipartRequestBody,
    SwitchConfig, SwitchDesc, SwitchFeatures, TableFeatures,
};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tracing::{debug, warn};

/// `ofp_type`s that change the switch and that `scd` does not decode (port-mod,
/// table-mod, meter-mod): a slave gets `OFPBRC_IS_SLAVE` for them as for a flow-mod.
const CHANGES_SWITCH_STATE: [u8; 3] = [16, 17, 29];

/// What handling a batch of messages produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Replies to this connection, in order, with their xids.
    pub replies: Vec<(u32, Message)>,
    /// Messages for every connection that is not a slave (flow-removed).
    pub broadcast: Vec<Message>,
    /// Close the connection after sending the replies.
    pub close: bool,
}

impl Outcome {
    fn error(&mut self, xid: u32, code: ErrorCode, offending: &[u8]) {
        let data = offending
            .get(..openflow::wire::ERROR_DATA_LEN.min(offending.len()))
            .unwrap_or(&[])
            .to_vec();
        self.replies
            .push((xid, Message::Error(ErrorMsg { code, data })));
    }
}

/// The state of one OpenFlow connection, independent of its socket.
#[derive(Debug)]
pub struct Session {
    pub(super) conn: Arc<Conn>,
    registry: Arc<Registry>,
    hello_done: bool,
    config: SwitchConfig,
    /// The flow-mods just applied were published with their reply: the barrier
    /// that follows them needs no trip of its own.
    barrier_met: bool,
}

impl Session {
    /// A session for a registered connection.
    pub fn new(conn: Arc<Conn>, registry: Arc<Registry>) -> Session {
        Session {
            conn,
            registry,
            hello_done: false,
            config: SwitchConfig::default(),
            barrier_met: false,
        }
    }

    /// True once the peer's hello has been accepted.
    pub fn ready(&self) -> bool {
        self.hello_done
    }

    /// Handles complete frames (each as [`frame_len`] cut it) in order. Consecutive
    /// flow-mods are applied in one call to the switch.
    pub fn handle<B: Backend>(&mut self, frames: &[&[u8]], backend: &B) -> Outcome {
        let mut out = Outcome::default();
        let mut i = 0;
        while i < frames.len() && !out.close {
            let frame = frames[i];
            i += 1;
            let (xid, msg) = match decode(frame) {
                Ok(ok) => ok,
                Err(e) => {
                    if e.msg_type == openflow::wire::msg_type::ERROR {
                        debug!(peer = %self.conn.peer, "undecodable error message: {e}");
                        continue;
                    }
                    debug!(peer = %self.conn.peer, "refused: {e}");
                    if self.conn.role() == ControllerRole::Slave
                        && CHANGES_SWITCH_STATE.contains(&e.msg_type)
                    {
                        // A slave learns that it may not, not that scd lacks the
                        // message: it must not retry as if it were master.
                        out.error(e.xid, ErrorCode::BadRequest(BadRequest::IsSlave), frame);
                        continue;
                    }
                    if let Message::Error(err) = error_reply_for(&e, frame) {
                        out.error(e.xid, err.code, frame);
                    }
                    continue;
                }
            };
            if !self.hello_done {
                match msg {
                    Message::Hello(h) if h.accepts_of13() => {
                        self.hello_done = true;
                        self.conn.ready.store(true, Ordering::Relaxed);
                    }
                    Message::Hello(h) => {
                        out.replies.push((
                            xid,
                            Message::Error(ErrorMsg {
                                code: ErrorCode::HelloFailed(HelloFailed::Incompatible),
                                data: format!(
                                    "scd speaks OpenFlow 1.3 (0x04) only; peer offered version {:#x}",
                                    h.version
                                )
                                .into_bytes(),
                            }),
                        ));
                        out.close = true;
                    }
                    _ => {
                        out.replies.push((
                            xid,
                            Message::Error(ErrorMsg {
                                code: ErrorCode::HelloFailed(HelloFailed::Incompatible),
                                data: b"expected a hello first".to_vec(),
                            }),
                        ));
                        out.close = true;
                    }
                }
                continue;
            }
            if let Message::FlowMod(fm) = msg {
                if self.conn.role() == ControllerRole::Slave {
                    out.error(xid, ErrorCode::BadRequest(BadRequest::IsSlave), frame);
                    continue;
                }
                // Gather the run of flow-mods that follows, for one switch call.
                let mut batch = vec![(xid, frame, fm)];
                while let Some(next) = frames.get(i) {
                    match decode(next) {
                        Ok((x, Message::FlowMod(f))) => {
                            batch.push((x, next, f));
                            i += 1;
                        }
                        _ => break,
                    }
                }
                let then_barrier = frames
                    .get(i)
                    .is_some_and(|next| matches!(decode(next), Ok((_, Message::BarrierRequest))));
                self.flow_mods(batch, then_barrier, backend, &mut out);
                continue;
            }
            self.one(xid, msg, frame, backend, &mut out);
            self.barrier_met = false;
        }
        out
    }

    fn flow_mods<B: Backend>(
        &mut self,
        batch: Vec<(u32, &[u8], FlowMod)>,
        then_barrier: bool,
        backend: &B,
        out: &mut Outcome,
    ) {
        let buffers: Vec<Option<u32>> = batch.iter().map(|(_, _, f)| f.buffer_id).collect();
        let fms: Vec<FlowMod> = batch.iter().map(|(_, _, f)| f.clone()).collect();
        let applied = if then_barrier {
            backend.flow_mods_then_barrier(fms)
        } else {
            backend.flow_mods(fms)
        };
        self.barrier_met = then_barrier;
        let results = match applied {
            Ok(r) => r,
            Err(SwitchGone) => {
                out.close = true;
                return;
            }
        };
        let now = Instant::now();
        for (((xid, frame, _), result), buffer) in batch.iter().zip(results).zip(buffers) {
            match result {
                Ok(removed) => {
                    out.broadcast.extend(
                        removed
                            .iter()
                            .filter_map(|r| flow_removed_message(r, now))
                            .map(Message::FlowRemoved),
                    );
                    if buffer.is_some() {
                        // scd buffers no packets; the flow-mod itself took effect.
                        out.error(
                            *xid,
                            ErrorCode::BadRequest(BadRequest::BufferUnknown),
                            frame,
                        );
                    }
                }
                Err(code) => out.error(*xid, code, frame),
            }
        }
    }

    /// A change of one port (add, remove, port-mod, binding): refused to a
    /// slave, its error (if any) answered, the connection closed if the switch
    /// is gone.
    fn port_change(
        &self,
        xid: u32,
        frame: &[u8],
        out: &mut Outcome,
        change: impl FnOnce() -> Result<Result<(), ErrorCode>, SwitchGone>,
    ) {
        if self.conn.role() == ControllerRole::Slave {
            return out.error(xid, ErrorCode::BadRequest(BadRequest::IsSlave), frame);
        }
        match change() {
            Ok(Ok(())) => {}
            Ok(Err(code)) => out.error(xid, code, frame),
            Err(SwitchGone) => out.close = true,
        }
    }

    fn one<B: Backend>(
        &mut self,
        xid: u32,
        msg: Message,
        frame: &[u8],
        backend: &B,
        out: &mut Outcome,
    ) {
        let info = backend.info();
        let reply = match msg {
            Message::Hello(_) => return,
            Message::Error(e) => {
                warn!(peer = %self.conn.peer, "peer reports error {}", e.code);
                return;
            }
            Message::EchoRequest(d) => Message::EchoReply(d),
            Message::EchoReply(_) => return,
            Message::FeaturesRequest => Message::FeaturesReply(SwitchFeatures {
                datapath_id: info.datapath_id,
                n_buffers: 0,
                n_tables: info.n_tables,
                auxiliary_id: 0,
                capabilities: capabilities::FLOW_STATS
                    | capabilities::TABLE_STATS
                    | capabilities::PORT_STATS,
                reserved: 0,
            }),
            Message::GetConfigRequest => Message::GetConfigReply(self.config),
            Message::SetConfig(c) => {
                self.config = c;
                return;
            }
            Message::BarrierRequest => {
                // Flow-mods before it reach packets before its reply leaves.
                if !self.barrier_met && backend.barrier().is_err() {
                    out.close = true;
                    return;
                }
                Message::BarrierReply
            }
            Message::GetAsyncRequest => Message::GetAsyncReply(self.conn.async_config()),
            Message::SetAsync(config) => {
                self.conn.set_async_config(config);
                return;
            }
            Message::RoleRequest(r) => match self.registry.request_role(&self.conn, r) {
                Ok(role) => Message::RoleReply(role),
                Err(code) => return out.error(xid, code, frame),
            },
            Message::PacketOut(po) => {
                if self.conn.role() == ControllerRole::Slave {
                    return out.error(xid, ErrorCode::BadRequest(BadRequest::IsSlave), frame);
                }
                if po.buffer_id.is_some() {
                    return out.error(xid, ErrorCode::BadRequest(BadRequest::BufferUnknown), frame);
                }
                let job = PacketOutJob {
                    in_port: po.in_port,
                    actions: po.actions,
                    data: po.data,
                };
                match backend.packet_out(job) {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => out.error(xid, packet_out_error_code(&e), frame),
                    Err(SwitchGone) => out.close = true,
                }
                return;
            }
            Message::FlowMod(_) => return, // handled in batches by `handle`
            Message::AddPort(req) => {
                return self.port_change(xid, frame, out, || backend.add_port(req))
            }
            Message::DelPort(req) => {
                return self.port_change(xid, frame, out, || backend.del_port(req))
            }
            Message::PortMod(pm) => {
                return self.port_change(xid, frame, out, || Ok(backend.port_mod(pm)))
            }
            Message::BindPort(bind) => {
                return self.port_change(xid, frame, out, || backend.bind_port(bind))
            }
            Message::GroupMod(gm) => {
                if self.conn.role() == ControllerRole::Slave {
                    return out.error(xid, ErrorCode::BadRequest(BadRequest::IsSlave), frame);
                }
                match backend.group_mod(gm) {
                    Ok(Ok(removed)) => {
                        let now = Instant::now();
                        out.broadcast.extend(
                            removed
                                .iter()
                                .filter_map(|r| flow_removed_message(r, now))
                                .map(Message::FlowRemoved),
                        );
                    }
                    Ok(Err(code)) => out.error(xid, code, frame),
                    Err(SwitchGone) => out.close = true,
                }
                return;
            }
            Message::MultipartRequest(req) => {
                let body = match req.body {
                    MultipartRequestBody::Desc => MultipartReplyBody::Desc(SwitchDesc {
                        mfr_desc: "supercloud".into(),
                        hw_desc: "scd".into(),
                        sw_desc: format!("scd {}", env!("CARGO_PKG_VERSION")),
                        serial_num: format!("{:016x}", info.datapath_id),
                        dp_desc: info.name.clone(),
                    }),
                    MultipartRequestBody::Flow(r) | MultipartRequestBody::Aggregate(r)
                        if r.table_id != ALL_TABLES && r.table_id >= info.n_tables =>
                    {
                        return out.error(xid, ErrorCode::BadRequest(BadRequest::BadTableId), frame)
                    }
                    MultipartRequestBody::Flow(r) => match backend.flow_stats(r) {
                        Ok(Ok(v)) => MultipartReplyBody::Flow(v),
                        Ok(Err(code)) => return out.error(xid, code, frame),
                        Err(SwitchGone) => {
                            out.close = true;
                            return;
                        }
                    },
                    MultipartRequestBody::Aggregate(r) => match backend.flow_stats(r) {
                        Ok(Ok(v)) => MultipartReplyBody::Aggregate(aggregate(&v)),
                        Ok(Err(code)) => return out.error(xid, code, frame),
                        Err(SwitchGone) => {
                            out.close = true;
                            return;
                        }
                    },
                    MultipartRequestBody::Table => match backend.table_stats() {
                        Ok(v) => MultipartReplyBody::Table(v),
                        Err(SwitchGone) => {
                            out.close = true;
                            return;
                        }
                    },
                    MultipartRequestBody::PortStats(p) => match backend.port_stats(p) {
                        Ok(v) => MultipartReplyBody::PortStats(v),
                        Err(code) => return out.error(xid, code, frame),
                    },
                    MultipartRequestBody::PortDesc => {
                        MultipartReplyBody::PortDesc(backend.port_descs())
                    }
                    MultipartRequestBody::GroupDesc => match backend.group_descs() {
                        Ok(v) => MultipartReplyBody::GroupDesc(v),
                        Err(SwitchGone) => {
                            out.close = true;
                            return;
                        }
                    },
                    MultipartRequestBody::TunnelStats => match backend.tunnel_stats() {
                        Ok(v) => MultipartReplyBody::TunnelStats(v),
                        Err(SwitchGone) => {
                            out.close = true;
                            return;
                        }
                    },
                    MultipartRequestBody::TableFeatures => MultipartReplyBody::TableFeatures(
                        (0..info.n_tables)
                            .map(|t| {
                                TableFeatures::supercloud(
                                    t,
                                    info.n_tables,
                                    u32::try_from(MAX_ENTRIES_PER_TABLE).unwrap_or(u32::MAX),
                                )
                            })
                            .collect(),
                    ),
                };
                for part in (MultipartReply { flags: 0, body }).split() {
                    out.replies.push((xid, Message::MultipartReply(part)));
                }
                return;
            }
            // Messages only a switch sends.
            Message::FeaturesReply(_)
            | Message::GetConfigReply(_)
            | Message::PacketIn(_)
            | Message::FlowRemoved(_)
            | Message::PortStatus(_)
            | Message::MultipartReply(_)
            | Message::BarrierReply
            | Message::GetAsyncReply(_)
            | Message::RoleReply(_) => {
                return out.error(xid, ErrorCode::BadRequest(BadRequest::BadType), frame)
            }
        };
        out.replies.push((xid, reply));
    }
}
