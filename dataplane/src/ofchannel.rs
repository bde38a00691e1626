//! The OpenFlow 1.3 channel of `scd`: a passive listener for tools (`ptcp:`) and
//! active connections to controllers (`tcp:`), each served by its own thread.
//!
//! This module owns the per-connection session (hello and version negotiation,
//! roles, keepalive, the answers to every request `scd` understands) and the
//! translation between OpenFlow messages and the switch: flow-mods become
//! [`Pipeline`] changes run on the switch thread through [`SwitchHandle::call`]
//! (consecutive flow-mods of one connection in one call; a group-mod in its own
//! call, in order with them), statistics and group descriptions are read the
//! same way, the Supercloud tunnel statistics (an experimenter multipart) through
//! [`SwitchHandle::tunnel_status`], packet-outs go through
//! [`SwitchHandle::packet_out`], and packet-ins and
//! flow-removed messages arrive from the switch thread through bounded channels and
//! are written to every connection that is not a slave. Replies of one connection
//! are written in the order of its requests, which is what makes a barrier reply
//! mean "everything before it is applied". A malformed or unsupported message gets
//! its OpenFlow error reply and the connection lives on; only a framing error
//! (header length below 8) closes that one connection.
//!
//! It never touches the tables except through the switch handle, never blocks the
//! switch thread (it only ever waits for it), and never panics on any input.

use crate::config::{FailMode, OpenflowConfig};
use crate::switch::{
    PacketInEvent, PacketInReason as SwitchReason, PacketInReceiver, PacketOutError, PacketOutJob,
    RemovedHook, SwitchGone, SwitchHandle, SwitchShared,
};
use crate::tunnel::PeerStatus;
use dataplane_core::pipeline::{
    GroupError, Pipeline, RemovedFlow, RemovedReason, Selector, TableError, ALL_TABLES,
    MAX_ENTRIES_PER_TABLE,
};
use openflow::flow::{flags, port, Action, GroupSpec, Mac, PortNo};
use openflow::text::FlowStats;
use openflow::wire::{
    capabilities, decode, encode_into, error_reply_for, frame_len, port_state, AggregateStats,
    BadAction, BadInstruction, BadRequest, ControllerRole, ErrorCode, ErrorMsg, FlowMod,
    FlowModCommand, FlowModFailed, FlowRemoved, FlowRemovedReason, FlowStatsEntry,
    FlowStatsRequest, GroupMod, GroupModCommand, GroupModFailed, Hello, HelloFailed, Message,
    MultipartReply, MultipartReplyBody, MultipartRequestBody, PacketIn, PacketInReason, PortDesc,
    PortStats, Role, RoleRequestFailed, SwitchConfig, SwitchDesc, SwitchFeatures, TableFeatures,
    TableStats, TunnelStatsEntry, GROUP_ANY,
};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// An echo request goes to each controller this often.
pub const ECHO_INTERVAL: Duration = Duration::from_secs(5);
/// Unanswered echo requests after which a controller connection is closed.
pub const MISSED_ECHOES: u32 = 3;
/// First reconnect delay; doubled after each failure up to [`BACKOFF_MAX`].
pub const BACKOFF_START: Duration = Duration::from_secs(1);
/// Longest reconnect delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(8);
/// Packet-ins in flight between the switch thread and the channel.
pub const PACKET_IN_DEPTH: usize = 1024;
/// Flow-removed notifications of expired entries in flight.
const REMOVED_DEPTH: usize = 4096;
/// `OFPFF_RESET_COUNTS`.
const RESET_COUNTS: u16 = 1 << 2;
/// A socket write that takes longer closes the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest packet-in payload (the message must fit 65535 bytes).
const MAX_PACKET_IN_DATA: usize = 65_000;

/// The channel could not start.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The passive listener could not bind.
    #[error("cannot listen for OpenFlow on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// A thread could not be started.
    #[error("cannot start an OpenFlow thread: {0}")]
    Thread(io::Error),
}

/// What the switch says about itself in features and desc replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatapathInfo {
    /// Datapath id.
    pub datapath_id: u64,
    /// Host name (the `dp_desc`).
    pub name: String,
    /// Number of tables.
    pub n_tables: u8,
}

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
    }
}

/// The OpenFlow error a refused group-mod is answered with.
pub fn group_error_code(e: &GroupError) -> ErrorCode {
    ErrorCode::GroupModFailed(match e {
        GroupError::Exists(_) => GroupModFailed::GroupExists,
        GroupError::Unknown(_) => GroupModFailed::UnknownGroup,
        GroupError::Invalid(..) => GroupModFailed::InvalidGroup,
        GroupError::ChainingUnsupported(_) => GroupModFailed::ChainingUnsupported,
        GroupError::BadBucket(..) => GroupModFailed::BadBucket,
        GroupError::OutOfGroups(_) => GroupModFailed::OutOfGroups,
    })
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

fn duration(since: Instant, now: Instant) -> (u32, u32) {
    let d = now.saturating_duration_since(since);
    (
        u32::try_from(d.as_secs()).unwrap_or(u32::MAX),
        d.subsec_nanos(),
    )
}

/// The entries a flow or aggregate statistics request selects, with counters.
pub fn flow_stats(
    p: &Pipeline,
    req: &FlowStatsRequest,
    now: Instant,
) -> Result<Vec<FlowStatsEntry>, ErrorCode> {
    if req.table_id != ALL_TABLES && req.table_id >= p.n_tables() {
        return Err(ErrorCode::BadRequest(BadRequest::BadTableId));
    }
    let tables = if req.table_id == ALL_TABLES {
        0..p.n_tables()
    } else {
        req.table_id..req.table_id.saturating_add(1)
    };
    let mut out = Vec::new();
    for t in tables {
        for e in p.entries(t) {
            let outputs = req.out_port == port::ANY
                || e.spec.instructions.iter().any(|i| match i {
                    openflow::Instruction::ApplyActions(a) => a
                        .iter()
                        .any(|a| matches!(a, Action::Output { port, .. } if *port == req.out_port)),
                    openflow::Instruction::GotoTable(_) => false,
                });
            if !outputs
                || (req.out_group != GROUP_ANY && !e.uses_group(req.out_group))
                || (e.spec.cookie & req.cookie_mask) != (req.cookie & req.cookie_mask)
                || !req.matcher.covers(&e.spec.matcher)
            {
                continue;
            }
            let (duration_sec, duration_nsec) = duration(e.installed, now);
            out.push(FlowStatsEntry {
                spec: e.spec.clone(),
                stats: FlowStats {
                    duration_sec,
                    duration_nsec,
                    packet_count: e.packets,
                    byte_count: e.bytes,
                    idle_age: None,
                },
            });
        }
    }
    Ok(out)
}

/// Sums flow statistics into an aggregate reply.
pub fn aggregate(entries: &[FlowStatsEntry]) -> AggregateStats {
    AggregateStats {
        packet_count: entries.iter().map(|e| e.stats.packet_count).sum(),
        byte_count: entries.iter().map(|e| e.stats.byte_count).sum(),
        flow_count: u32::try_from(entries.len()).unwrap_or(u32::MAX),
    }
}

/// Every group of the pipeline, by increasing id.
pub fn group_descs(p: &Pipeline) -> Vec<GroupSpec> {
    p.groups().iter().map(|g| g.spec.clone()).collect()
}

/// Per-table counters of every table.
pub fn table_stats(p: &Pipeline) -> Vec<TableStats> {
    (0..p.n_tables())
        .map(|t| {
            let s = p.table_stats(t).unwrap_or_default();
            TableStats {
                table_id: t,
                active_count: u32::try_from(p.entries(t).count()).unwrap_or(u32::MAX),
                lookup_count: s.lookups,
                matched_count: s.matched,
            }
        })
        .collect()
}

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
        packet_count: r.entry.packets,
        byte_count: r.entry.bytes,
        matcher: spec.matcher,
    })
}

/// A locally administered MAC for a port: 02:5c, two datapath id bytes, two port
/// number bytes (switch ports have no MAC of their own on the wire).
pub fn port_mac(datapath_id: u64, port_no: PortNo) -> Mac {
    let d = datapath_id.to_be_bytes();
    let p = port_no.to_be_bytes();
    Mac([0x02, 0x5c, d[6], d[7], p[2], p[3]])
}

/// A WireGuard session is dead after REJECT_AFTER_TIME without a new handshake.
const TUNNEL_DEAD_AFTER: std::time::Duration = std::time::Duration::from_secs(180);

/// Descriptions of every port (TAPs and tunnels), in configuration order. A tunnel
/// port is `LIVE` while its WireGuard session is fresh and `LINK_DOWN` before the
/// first handshake or once the session has expired, so a controller sees which
/// tunnels are up.
pub fn port_descs(shared: &SwitchShared) -> Vec<PortDesc> {
    let tunnels = shared.tunnels.lock().map(|t| t.clone()).unwrap_or_default();
    shared
        .ports
        .iter()
        .map(|p| {
            let state = match tunnels.iter().find(|t| t.port == p.number) {
                Some(t) if t.since_handshake.is_some_and(|d| d < TUNNEL_DEAD_AFTER) => {
                    port_state::LIVE
                }
                Some(_) => port_state::LINK_DOWN,
                None => port_state::LIVE,
            };
            // TAPs are virtual 10G links; tunnels report no speed.
            let speed = if p.name.starts_with("wg-") {
                0
            } else {
                10_000_000
            };
            PortDesc {
                port_no: p.number,
                hw_addr: port_mac(shared.datapath_id, p.number),
                name: p.name.clone(),
                config: 0,
                state,
                curr: 0,
                advertised: 0,
                supported: 0,
                peer: 0,
                curr_speed: speed,
                max_speed: speed,
            }
        })
        .collect()
}

/// Counters of one port or of all (`port::ANY`).
pub fn port_stats(
    shared: &SwitchShared,
    port_no: PortNo,
    now: Instant,
) -> Result<Vec<PortStats>, ErrorCode> {
    let (duration_sec, duration_nsec) = duration(shared.started, now);
    let all: Vec<PortStats> = shared
        .ports
        .iter()
        .filter(|p| port_no == port::ANY || p.number == port_no)
        .map(|p| {
            let c = &p.counters;
            PortStats {
                port_no: p.number,
                rx_packets: c.rx_packets.get(),
                tx_packets: c.tx_packets.get(),
                rx_bytes: c.rx_bytes.get(),
                tx_bytes: c.tx_bytes.get(),
                tx_dropped: c.tx_dropped.get(),
                rx_errors: c.rx_errors.get(),
                duration_sec,
                duration_nsec,
                ..PortStats::default()
            }
        })
        .collect();
    if all.is_empty() && port_no != port::ANY {
        return Err(ErrorCode::BadRequest(BadRequest::BadPort));
    }
    Ok(all)
}

/// One tunnel statistics entry per peer, in configuration order. boringtun measures
/// the handshake round trip in whole milliseconds; the wire carries microseconds so
/// that a finer measurement needs no new message.
pub fn tunnel_stats(peers: &[PeerStatus]) -> Vec<TunnelStatsEntry> {
    let saturating = |v: u128| u64::try_from(v).unwrap_or(u64::MAX);
    peers
        .iter()
        .map(|p| TunnelStatsEntry {
            port_no: p.port,
            handshake_rtt_us: p.handshake_rtt.map(|d| saturating(d.as_micros())),
            since_handshake_ms: p.since_handshake.map(|d| saturating(d.as_millis())),
            tx_bytes: p.tx_bytes,
            rx_bytes: p.rx_bytes,
        })
        .collect()
}

/// The packet-in message for a frame the switch sent to the controller.
pub fn packet_in_message(ev: &PacketInEvent) -> PacketIn {
    let data = ev
        .data
        .get(..ev.data.len().min(MAX_PACKET_IN_DATA))
        .unwrap_or(&[]);
    PacketIn {
        buffer_id: None,
        total_len: u16::try_from(ev.total_len).unwrap_or(u16::MAX),
        reason: match ev.reason {
            SwitchReason::NoMatch => PacketInReason::NoMatch,
            SwitchReason::Action => PacketInReason::Action,
        },
        table_id: ev.table_id,
        cookie: ev.cookie,
        matcher: openflow::FlowMatch::any().with(openflow::Field::InPort, u128::from(ev.in_port)),
        data: data.to_vec(),
    }
}

/// One result per flow-mod: the entries a delete removed, or the error to send.
pub type FlowModResults = Vec<Result<Vec<RemovedFlow>, ErrorCode>>;

/// What a session needs from the switch. The running switch implements it through
/// its handle; tests implement it over a local [`Pipeline`].
pub trait Backend {
    /// Datapath id, name and table count.
    fn info(&self) -> &DatapathInfo;
    /// Applies flow-mods in order; one result per flow-mod.
    fn flow_mods(&self, fms: Vec<FlowMod>) -> Result<FlowModResults, SwitchGone>;
    /// Applies one group-mod.
    fn group_mod(&self, gm: GroupMod) -> Result<Result<Vec<RemovedFlow>, ErrorCode>, SwitchGone>;
    /// Flow statistics.
    fn flow_stats(
        &self,
        req: FlowStatsRequest,
    ) -> Result<Result<Vec<FlowStatsEntry>, ErrorCode>, SwitchGone>;
    /// Table statistics.
    fn table_stats(&self) -> Result<Vec<TableStats>, SwitchGone>;
    /// Every group, by increasing id.
    fn group_descs(&self) -> Result<Vec<GroupSpec>, SwitchGone>;
    /// Port descriptions.
    fn port_descs(&self) -> Vec<PortDesc>;
    /// Port statistics.
    fn port_stats(&self, port_no: PortNo) -> Result<Vec<PortStats>, ErrorCode>;
    /// Statistics of every tunnel port (empty without tunnels).
    fn tunnel_stats(&self) -> Result<Vec<TunnelStatsEntry>, SwitchGone>;
    /// Runs a packet-out.
    fn packet_out(&self, job: PacketOutJob) -> Result<Result<(), PacketOutError>, SwitchGone>;
}

/// The running switch as a [`Backend`].
#[derive(Debug, Clone)]
pub struct SwitchBackend {
    handle: SwitchHandle,
    info: DatapathInfo,
}

impl SwitchBackend {
    /// A backend over a running switch.
    pub fn new(handle: SwitchHandle, info: DatapathInfo) -> SwitchBackend {
        SwitchBackend { handle, info }
    }
}

impl Backend for SwitchBackend {
    fn info(&self) -> &DatapathInfo {
        &self.info
    }

    fn flow_mods(&self, fms: Vec<FlowMod>) -> Result<FlowModResults, SwitchGone> {
        let n = u64::try_from(fms.len()).unwrap_or(u64::MAX);
        let results = self.handle.call(move |p, now| {
            fms.iter()
                .map(|fm| apply_flow_mod(p, fm, now))
                .collect::<Vec<_>>()
        })?;
        self.handle
            .shared
            .channel
            .flow_mods
            .fetch_add(n, Ordering::Relaxed);
        Ok(results)
    }

    fn group_mod(&self, gm: GroupMod) -> Result<Result<Vec<RemovedFlow>, ErrorCode>, SwitchGone> {
        self.handle.call(move |p, now| apply_group_mod(p, &gm, now))
    }

    fn flow_stats(
        &self,
        req: FlowStatsRequest,
    ) -> Result<Result<Vec<FlowStatsEntry>, ErrorCode>, SwitchGone> {
        self.handle.call(move |p, now| flow_stats(p, &req, now))
    }

    fn table_stats(&self) -> Result<Vec<TableStats>, SwitchGone> {
        self.handle.call(|p, _| table_stats(p))
    }

    fn group_descs(&self) -> Result<Vec<GroupSpec>, SwitchGone> {
        self.handle.call(|p, _| group_descs(p))
    }

    fn port_descs(&self) -> Vec<PortDesc> {
        port_descs(&self.handle.shared)
    }

    fn port_stats(&self, port_no: PortNo) -> Result<Vec<PortStats>, ErrorCode> {
        port_stats(&self.handle.shared, port_no, Instant::now())
    }

    fn tunnel_stats(&self) -> Result<Vec<TunnelStatsEntry>, SwitchGone> {
        // Asked of the switch thread rather than read from the once-a-second
        // snapshot, so handshake ages are exact to the millisecond.
        self.handle
            .tunnel_status()
            .map(|peers| tunnel_stats(&peers))
    }

    fn packet_out(&self, job: PacketOutJob) -> Result<Result<(), PacketOutError>, SwitchGone> {
        self.handle.packet_out(job)
    }
}

/// One connection as the rest of the channel sees it: its role and its socket.
#[derive(Debug)]
pub struct Conn {
    id: u64,
    peer: String,
    /// `ofp_controller_role` on the wire (equal, master or slave).
    role: AtomicU32,
    /// True once hellos are exchanged: asynchronous messages may go out.
    ready: AtomicBool,
    writer: Mutex<Option<TcpStream>>,
}

impl Conn {
    /// The connection's current role.
    pub fn role(&self) -> ControllerRole {
        ControllerRole::from_wire(self.role.load(Ordering::Relaxed))
    }

    /// Writes bytes; on failure the socket is shut down (its reader then ends).
    fn send(&self, bytes: &[u8]) -> bool {
        let Ok(mut guard) = self.writer.lock() else {
            return false;
        };
        let Some(stream) = guard.as_mut() else {
            return false;
        };
        if stream.write_all(bytes).is_ok() {
            return true;
        }
        let _ = stream.shutdown(Shutdown::Both);
        *guard = None;
        false
    }
}

#[derive(Debug, Default)]
struct RegistryInner {
    next_id: u64,
    /// Highest master/slave generation id seen.
    generation: Option<u64>,
    conns: Vec<Arc<Conn>>,
}

/// Every open connection, for roles and for asynchronous messages.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<RegistryInner>,
}

impl Registry {
    /// Registers a connection (with its socket, or none in tests).
    pub fn add(&self, peer: String, writer: Option<TcpStream>) -> Arc<Conn> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.next_id += 1;
        let conn = Arc::new(Conn {
            id: inner.next_id,
            peer,
            role: AtomicU32::new(ControllerRole::Equal.to_wire()),
            ready: AtomicBool::new(false),
            writer: Mutex::new(writer),
        });
        inner.conns.push(conn.clone());
        conn
    }

    /// Forgets a connection.
    pub fn remove(&self, id: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.conns.retain(|c| c.id != id);
    }

    /// Number of connections.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .conns
            .len()
    }

    /// True without connections.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Handles a role request of `conn` (OpenFlow 1.3 section 6.3.5): a stale
    /// generation id is refused; a new master turns the old one into a slave.
    pub fn request_role(&self, conn: &Conn, req: Role) -> Result<Role, ErrorCode> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match req.role {
            ControllerRole::NoChange => {
                return Ok(Role {
                    role: conn.role(),
                    generation_id: inner.generation.unwrap_or(0),
                })
            }
            ControllerRole::Master | ControllerRole::Slave => {
                if let Some(known) = inner.generation {
                    // Compared as a wrapping distance, as the spec asks.
                    if (req.generation_id.wrapping_sub(known) as i64) < 0 {
                        return Err(ErrorCode::RoleRequestFailed(RoleRequestFailed::Stale));
                    }
                }
                inner.generation = Some(req.generation_id);
            }
            ControllerRole::Equal => {}
            ControllerRole::Other(_) => {
                return Err(ErrorCode::RoleRequestFailed(RoleRequestFailed::BadRole))
            }
        }
        if req.role == ControllerRole::Master {
            for other in &inner.conns {
                if other.id != conn.id && other.role() == ControllerRole::Master {
                    other
                        .role
                        .store(ControllerRole::Slave.to_wire(), Ordering::Relaxed);
                }
            }
        }
        conn.role.store(req.role.to_wire(), Ordering::Relaxed);
        Ok(req)
    }

    /// Sends `msg` to every ready connection that is not a slave; returns how many
    /// got it.
    pub fn broadcast(&self, msg: &Message) -> usize {
        let conns: Vec<Arc<Conn>> = self
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .conns
            .clone();
        let mut bytes = Vec::new();
        if encode_into(msg, 0, &mut bytes).is_err() {
            return 0;
        }
        conns
            .iter()
            .filter(|c| c.ready.load(Ordering::Relaxed) && c.role() != ControllerRole::Slave)
            .filter(|c| c.send(&bytes))
            .count()
    }
}

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
    conn: Arc<Conn>,
    registry: Arc<Registry>,
    hello_done: bool,
    config: SwitchConfig,
}

impl Session {
    /// A session for a registered connection.
    pub fn new(conn: Arc<Conn>, registry: Arc<Registry>) -> Session {
        Session {
            conn,
            registry,
            hello_done: false,
            config: SwitchConfig::default(),
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
                self.flow_mods(batch, backend, &mut out);
                continue;
            }
            self.one(xid, msg, frame, backend, &mut out);
        }
        out
    }

    fn flow_mods<B: Backend>(
        &mut self,
        batch: Vec<(u32, &[u8], FlowMod)>,
        backend: &B,
        out: &mut Outcome,
    ) {
        let buffers: Vec<Option<u32>> = batch.iter().map(|(_, _, f)| f.buffer_id).collect();
        let fms: Vec<FlowMod> = batch.iter().map(|(_, _, f)| f.clone()).collect();
        let results = match backend.flow_mods(fms) {
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
            Message::BarrierRequest => Message::BarrierReply,
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
            | Message::RoleReply(_) => {
                return out.error(xid, ErrorCode::BadRequest(BadRequest::BadType), frame)
            }
        };
        out.replies.push((xid, reply));
    }
}

/// The running channel.
#[derive(Debug)]
pub struct Channel {
    registry: Arc<Registry>,
    listen: Option<SocketAddr>,
}

impl Channel {
    /// Starts the listener, the controller connections and the dispatcher of
    /// packet-ins and flow-removed messages. Returns the channel and the hook to
    /// install with `Switch::on_removed`.
    pub fn start(
        cfg: &OpenflowConfig,
        handle: SwitchHandle,
        info: DatapathInfo,
        packet_in: PacketInReceiver,
    ) -> Result<(Channel, RemovedHook), ChannelError> {
        let registry = Arc::new(Registry::default());
        let backend = SwitchBackend::new(handle.clone(), info);
        let (removed_tx, removed_rx) = mpsc::sync_channel::<RemovedFlow>(REMOVED_DEPTH);
        let hook: RemovedHook = Box::new(move |r: &RemovedFlow| {
            if r.entry.spec.flags & flags::SEND_FLOW_REM != 0 {
                let _ = removed_tx.try_send(r.clone());
            }
        });
        {
            let registry = registry.clone();
            let shared = handle.shared.clone();
            std::thread::Builder::new()
                .name("of-dispatch".into())
                .spawn(move || dispatch(&registry, &shared, &packet_in, &removed_rx))
                .map_err(ChannelError::Thread)?;
        }
        let mut listen = None;
        if let Some(addr) = cfg.listen {
            let listener =
                TcpListener::bind(addr).map_err(|source| ChannelError::Listen { addr, source })?;
            let bound = listener.local_addr().unwrap_or(addr);
            listen = Some(bound);
            info!(%bound, "OpenFlow listener (ptcp) ready");
            let (registry, backend) = (registry.clone(), backend.clone());
            std::thread::Builder::new()
                .name("of-listen".into())
                .spawn(move || accept_loop(&listener, &registry, &backend))
                .map_err(ChannelError::Thread)?;
        }
        for &addr in &cfg.controllers {
            let (registry, backend, fail_mode) = (registry.clone(), backend.clone(), cfg.fail_mode);
            std::thread::Builder::new()
                .name(format!("of-ctl-{addr}"))
                .spawn(move || controller_loop(addr, fail_mode, &registry, &backend))
                .map_err(ChannelError::Thread)?;
        }
        Ok((Channel { registry, listen }, hook))
    }

    /// Where the passive listener is bound, if it runs.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listen
    }

    /// Open connections now.
    pub fn connections(&self) -> usize {
        self.registry.len()
    }
}

fn dispatch(
    registry: &Registry,
    shared: &SwitchShared,
    packet_in: &PacketInReceiver,
    removed: &Receiver<RemovedFlow>,
) {
    loop {
        match packet_in.events.recv_timeout(Duration::from_millis(100)) {
            Ok(ev) => {
                let msg = Message::PacketIn(packet_in_message(&ev));
                packet_in.recycle(ev.data);
                let n = registry.broadcast(&msg);
                shared
                    .channel
                    .packet_ins_sent
                    .fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        while let Ok(r) = removed.try_recv() {
            if let Some(m) = flow_removed_message(&r, now) {
                registry.broadcast(&Message::FlowRemoved(m));
            }
        }
    }
}

fn accept_loop(listener: &TcpListener, registry: &Arc<Registry>, backend: &SwitchBackend) {
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                warn!("OpenFlow accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let (registry, backend) = (registry.clone(), backend.clone());
        let spawned = std::thread::Builder::new()
            .name("of-conn".into())
            .spawn(move || {
                if let Err(e) = serve(stream, &registry, &backend, false) {
                    debug!("OpenFlow connection ended: {e}");
                }
            });
        if let Err(e) = spawned {
            warn!("OpenFlow connection thread: {e}");
        }
    }
}

fn controller_loop(
    addr: SocketAddr,
    fail_mode: FailMode,
    registry: &Arc<Registry>,
    backend: &SwitchBackend,
) {
    let mut backoff = BACKOFF_START;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(stream) => {
                info!(controller = %addr, "connected to controller");
                backoff = BACKOFF_START;
                let result = serve(stream, registry, backend, true);
                let mode = match fail_mode {
                    FailMode::Secure => "secure: tables kept",
                    FailMode::Standalone => {
                        "standalone: forwarding with the installed tables (scd has no NORMAL pipeline)"
                    }
                };
                warn!(controller = %addr, fail_mode = mode, "controller connection lost: {}",
                    result.err().map_or_else(|| "closed".to_string(), |e| e.to_string()));
            }
            Err(e) => debug!(controller = %addr, "connect failed: {e}"),
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Serves one connection until it closes. `active`: a controller we connected to
/// (keepalive echoes run on it).
fn serve(
    stream: TcpStream,
    registry: &Arc<Registry>,
    backend: &SwitchBackend,
    active: bool,
) -> io::Result<()> {
    let counters = &backend.handle.shared.channel;
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let conn = registry.add(peer.clone(), Some(stream.try_clone()?));
    counters.connections.fetch_add(1, Ordering::Relaxed);
    debug!(%peer, active, "OpenFlow connection open");
    let result = session_loop(stream, &conn, registry, backend, active);
    registry.remove(conn.id);
    counters.connections.fetch_sub(1, Ordering::Relaxed);
    result
}

fn session_loop(
    mut stream: TcpStream,
    conn: &Arc<Conn>,
    registry: &Arc<Registry>,
    backend: &SwitchBackend,
    active: bool,
) -> io::Result<()> {
    let counters = &backend.handle.shared.channel;
    let mut session = Session::new(conn.clone(), registry.clone());
    let mut out = Vec::with_capacity(4096);
    encode_into(&Message::Hello(Hello::of13()), 0, &mut out).map_err(io::Error::other)?;
    if !conn.send(&out) {
        return Err(io::Error::other("cannot send hello"));
    }
    let mut inbox: Vec<u8> = Vec::with_capacity(65_536);
    let mut chunk = vec![0u8; 65_536];
    let mut last_echo = Instant::now();
    let mut unanswered = 0u32;
    let mut echo_xid = 0x5c00_0000u32;
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                inbox.extend_from_slice(&chunk[..n]);
                unanswered = 0;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e),
        }
        if active && session.ready() && last_echo.elapsed() >= ECHO_INTERVAL {
            if unanswered >= MISSED_ECHOES {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{MISSED_ECHOES} echo requests unanswered"),
                ));
            }
            out.clear();
            echo_xid = echo_xid.wrapping_add(1);
            encode_into(&Message::EchoRequest(Vec::new()), echo_xid, &mut out)
                .map_err(io::Error::other)?;
            if !conn.send(&out) {
                return Err(io::Error::other("write failed"));
            }
            unanswered += 1;
            last_echo = Instant::now();
        }
        // Cut whole frames; a header length below 8 ends this connection only.
        let mut frames: Vec<&[u8]> = Vec::new();
        let mut at = 0;
        let mut fatal = None;
        loop {
            match frame_len(&inbox[at..]) {
                Ok(Some(n)) => {
                    frames.push(&inbox[at..at + n]);
                    at += n;
                }
                Ok(None) => break,
                Err(e) => {
                    fatal = Some(e);
                    break;
                }
            }
        }
        if !frames.is_empty() {
            counters
                .messages_in
                .fetch_add(frames.len() as u64, Ordering::Relaxed);
            let outcome = session.handle(&frames, backend);
            out.clear();
            for (xid, msg) in &outcome.replies {
                if matches!(msg, Message::Error(_)) {
                    counters.errors_sent.fetch_add(1, Ordering::Relaxed);
                }
                if let Err(e) = encode_into(msg, *xid, &mut out) {
                    warn!(peer = %conn.peer, "reply not sent: {e}");
                }
            }
            if !out.is_empty() && !conn.send(&out) {
                return Err(io::Error::other("write failed"));
            }
            for m in &outcome.broadcast {
                registry.broadcast(m);
            }
            if outcome.close {
                return Ok(());
            }
        }
        inbox.drain(..at);
        if let Some(e) = fatal {
            warn!(peer = %conn.peer, "closing OpenFlow connection: {e}");
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openflow::text::parse_flow;
    use openflow::wire::{encode, MultipartRequest, PacketOut};

    /// A backend over a local pipeline, with fake ports and tunnel peers.
    struct Local {
        info: DatapathInfo,
        pipeline: Mutex<Pipeline>,
        outs: Mutex<Vec<PacketOutJob>>,
        tunnels: Vec<PeerStatus>,
    }

    impl Local {
        fn new() -> Local {
            Local {
                info: DatapathInfo {
                    datapath_id: 0x2a,
                    name: "host-t".into(),
                    n_tables: 4,
                },
                pipeline: Mutex::new(Pipeline::new(4)),
                outs: Mutex::new(Vec::new()),
                tunnels: Vec::new(),
            }
        }
        fn len(&self) -> usize {
            self.pipeline.lock().unwrap().len()
        }
    }

    impl Backend for Local {
        fn info(&self) -> &DatapathInfo {
            &self.info
        }
        fn flow_mods(&self, fms: Vec<FlowMod>) -> Result<FlowModResults, SwitchGone> {
            let mut p = self.pipeline.lock().unwrap();
            let now = Instant::now();
            Ok(fms.iter().map(|f| apply_flow_mod(&mut p, f, now)).collect())
        }
        fn group_mod(
            &self,
            gm: GroupMod,
        ) -> Result<Result<Vec<RemovedFlow>, ErrorCode>, SwitchGone> {
            let mut p = self.pipeline.lock().unwrap();
            Ok(apply_group_mod(&mut p, &gm, Instant::now()))
        }
        fn flow_stats(
            &self,
            req: FlowStatsRequest,
        ) -> Result<Result<Vec<FlowStatsEntry>, ErrorCode>, SwitchGone> {
            Ok(flow_stats(
                &self.pipeline.lock().unwrap(),
                &req,
                Instant::now(),
            ))
        }
        fn table_stats(&self) -> Result<Vec<TableStats>, SwitchGone> {
            Ok(table_stats(&self.pipeline.lock().unwrap()))
        }
        fn group_descs(&self) -> Result<Vec<GroupSpec>, SwitchGone> {
            Ok(group_descs(&self.pipeline.lock().unwrap()))
        }
        fn port_descs(&self) -> Vec<PortDesc> {
            vec![PortDesc {
                port_no: 1,
                name: "tap1".into(),
                ..PortDesc::default()
            }]
        }
        fn port_stats(&self, port_no: PortNo) -> Result<Vec<PortStats>, ErrorCode> {
            if port_no == 1 || port_no == port::ANY {
                Ok(vec![PortStats {
                    port_no: 1,
                    ..PortStats::default()
                }])
            } else {
                Err(ErrorCode::BadRequest(BadRequest::BadPort))
            }
        }
        fn tunnel_stats(&self) -> Result<Vec<TunnelStatsEntry>, SwitchGone> {
            Ok(tunnel_stats(&self.tunnels))
        }
        fn packet_out(&self, job: PacketOutJob) -> Result<Result<(), PacketOutError>, SwitchGone> {
            if job.data.is_empty() {
                return Ok(Err(PacketOutError::BadPacket));
            }
            self.outs.lock().unwrap().push(job);
            Ok(Ok(()))
        }
    }

    fn session(reg: &Arc<Registry>) -> Session {
        let conn = reg.add("test".into(), None);
        Session::new(conn, reg.clone())
    }

    fn enc(m: &Message, xid: u32) -> Vec<u8> {
        encode(m, xid).unwrap()
    }

    fn run<B: Backend>(s: &mut Session, b: &B, msgs: &[Vec<u8>]) -> Outcome {
        let frames: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        s.handle(&frames, b)
    }

    fn hello() -> Vec<u8> {
        enc(&Message::Hello(Hello::of13()), 1)
    }

    fn add(text: &str, xid: u32) -> Vec<u8> {
        enc(
            &Message::FlowMod(FlowMod::add(parse_flow(text).unwrap())),
            xid,
        )
    }

    /// The xid and error code (none for other replies) of every reply.
    fn codes(out: &Outcome) -> Vec<(u32, Option<ErrorCode>)> {
        out.replies
            .iter()
            .map(|(x, m)| (*x, error_code(m)))
            .collect()
    }

    fn error_code(m: &Message) -> Option<ErrorCode> {
        match m {
            Message::Error(e) => Some(e.code),
            _ => None,
        }
    }

    #[test]
    fn hello_negotiation() {
        let reg = Arc::new(Registry::default());
        let b = Local::new();
        let mut s = session(&reg);
        let out = run(&mut s, &b, &[hello(), enc(&Message::FeaturesRequest, 7)]);
        assert!(s.ready());
        let [(7, Message::FeaturesReply(f))] = out.replies.as_slice() else {
            panic!("{out:?}");
        };
        assert_eq!((f.datapath_id, f.n_tables, f.n_buffers), (0x2a, 4, 0));
        assert_eq!(f.capabilities, 0b111);

        // An OpenFlow 1.0 hello without a bitmap is refused and closes.
        let mut s = session(&reg);
        let mut old = enc(
            &Message::Hello(Hello {
                version: 1,
                bitmap: vec![],
            }),
            3,
        );
        old[0] = 1;
        let out = run(&mut s, &b, &[old]);
        assert!(out.close);
        assert_eq!(
            error_code(&out.replies[0].1),
            Some(ErrorCode::HelloFailed(HelloFailed::Incompatible))
        );
        // Anything before the hello too.
        let mut s = session(&reg);
        let out = run(&mut s, &b, &[enc(&Message::BarrierRequest, 4)]);
        assert!(out.close && !s.ready());
    }

    #[test]
    fn flow_mods_barrier_and_errors_in_order() {
        let reg = Arc::new(Registry::default());
        let b = Local::new();
        let mut s = session(&reg);
        let mut overlap = parse_flow("priority=5,ip,actions=output:1").unwrap();
        overlap.flags = flags::CHECK_OVERLAP;
        let out = run(
            &mut s,
            &b,
            &[
                hello(),
                add("priority=5,in_port=1,actions=output:2", 10),
                add("table=9,actions=drop", 11),
                add("table=2,actions=goto_table:1", 12),
                enc(&Message::FlowMod(FlowMod::add(overlap)), 13),
                enc(&Message::BarrierRequest, 14),
            ],
        );
        let got = codes(&out);
        assert_eq!(
            got,
            vec![
                (
                    11,
                    Some(ErrorCode::FlowModFailed(FlowModFailed::BadTableId))
                ),
                (
                    12,
                    Some(ErrorCode::BadInstruction(BadInstruction::BadTableId))
                ),
                (13, Some(ErrorCode::FlowModFailed(FlowModFailed::Overlap))),
                (14, None),
            ]
        );
        assert_eq!(out.replies[3].1, Message::BarrierReply);
        assert_eq!(b.len(), 1);
        // The error carries the offending message's first bytes.
        let Message::Error(e) = &out.replies[0].1 else {
            panic!()
        };
        assert_eq!(e.data[1], openflow::wire::msg_type::FLOW_MOD);
    }

    #[test]
    fn modify_delete_and_flow_removed() {
        let reg = Arc::new(Registry::default());
        let b = Local::new();
        let mut s = session(&reg);
        run(
            &mut s,
            &b,
            &[
                hello(),
                add("cookie=0x1,priority=5,in_port=1,actions=output:2", 1),
                add(
                    "cookie=0x2,send_flow_rem,priority=5,in_port=2,actions=output:1",
                    2,
                ),
                add("cookie=0x3,priority=7,in_port=3,actions=output:1", 3),
            ],
        );
        let mut m = FlowMod::add(parse_flow("in_port=1,actions=output:3").unwrap());
        m.command = FlowModCommand::Modify;
        run(&mut s, &b, &[enc(&Message::FlowMod(m), 4)]);
        let mut d = FlowMod::add(parse_flow("cookie=0x2,actions=drop").unwrap());
        d.command = FlowModCommand::Delete;
        d.spec.table_id = ALL_TABLES;
        d.cookie_mask = u64::MAX;
        let out = run(&mut s, &b, &[enc(&Message::FlowMod(d), 5)]);
        assert!(out.replies.is_empty());
        let [Message::FlowRemoved(r)] = out.broadcast.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!((r.cookie, r.reason), (2, FlowRemovedReason::Delete));
        assert_eq!(b.len(), 2);
        // Delete-strict needs the exact priority; out_port filters.
        let mut d = FlowMod::add(parse_flow("priority=6,in_port=3,actions=drop").unwrap());
        d.command = FlowModCommand::DeleteStrict;
        run(&mut s, &b, &[enc(&Message::FlowMod(d.clone()), 6)]);
        assert_eq!(b.len(), 2);
        d.spec.priority = 7;
        d.out_port = 2;
        run(&mut s, &b, &[enc(&Message::FlowMod(d.clone()), 7)]);
        assert_eq!(b.len(), 2);
        d.out_port = 1;
        run(&mut s, &b, &[enc(&Message::FlowMod(d), 8)]);
        assert_eq!(b.len(), 1);

        let req = |body| {
            enc(
                &Message::MultipartRequest(MultipartRequest { flags: 0, body }),
                9,
            )
        };
        let out = run(
            &mut s,
            &b,
            &[req(MultipartRequestBody::Flow(FlowStatsRequest::all()))],
        );
        let [(
            9,
            Message::MultipartReply(MultipartReply {
                body: MultipartReplyBody::Flow(v),
                ..
            }),
        )] = out.replies.as_slice()
        else {
            panic!("{out:?}")
        };
        assert_eq!(
            openflow::text::format_flow(&v[0].spec),
            "cookie=0x1, priority=5,in_port=1 actions=output:3"
        );
        let out = run(
            &mut s,
            &b,
            &[
                req(MultipartRequestBody::Aggregate(FlowStatsRequest::all())),
                req(MultipartRequestBody::Table),
                req(MultipartRequestBody::TableFeatures),
                req(MultipartRequestBody::Desc),
                req(MultipartRequestBody::PortStats(77)),
            ],
        );
        assert!(matches!(
            &out.replies[0].1,
            Message::MultipartReply(MultipartReply {
                body: MultipartReplyBody::Aggregate(AggregateStats { flow_count: 1, .. }),
                ..
            })
        ));
        assert!(matches!(
            &out.replies[1].1,
            Message::MultipartReply(MultipartReply { body: MultipartReplyBody::Table(t), .. }) if t.len() == 4 && t[0].active_count == 1
        ));
        assert!(matches!(
            &out.replies[2].1,
            Message::MultipartReply(MultipartReply { body: MultipartReplyBody::TableFeatures(t), .. }) if t.len() == 4
        ));
        assert!(matches!(
            &out.replies[3].1,
            Message::MultipartReply(MultipartReply { body: MultipartReplyBody::Desc(d), .. }) if d.mfr_desc == "supercloud" && d.dp_desc == "host-t"
        ));
        assert_eq!(
            error_code(&out.replies[4].1),
            Some(ErrorCode::BadRequest(BadRequest::BadPort))
        );
    }

    #[test]
    fn malformed_and_unsupported_get_errors_and_the_session_lives() {
        let reg = Arc::new(Registry::default());
        let b = Local::new();
        let mut s = session(&reg);
        // A group-mod adding a select group (type 1), which scd does not run.
        let mut group_mod = vec![4, 15, 0, 16, 0, 0, 0, 21];
        group_mod.extend_from_slice(&[0, 0, 1, 0, 0, 0, 0, 1]);
        let mut short_flow_mod = add("actions=drop", 22);
        short_flow_mod.truncate(20);
        short_flow_mod[2..4].copy_from_slice(&20u16.to_be_bytes());
        let mut wrong_version = enc(&Message::BarrierRequest, 23);
        wrong_version[0] = 5;
        let out = run(
            &mut s,
            &b,
            &[
                hello(),
                group_mod,
                short_flow_mod,
                wrong_version,
                enc(&Message::FeaturesReply(SwitchFeatures::default()), 24),
                add("actions=drop", 25),
                enc(&Message::BarrierRequest, 26),
            ],
        );
        let got = codes(&out);
        assert_eq!(
            got,
            vec![
                (21, Some(ErrorCode::GroupModFailed(GroupModFailed::BadType))),
                (22, Some(ErrorCode::BadRequest(BadRequest::BadLen))),
                (23, Some(ErrorCode::BadRequest(BadRequest::BadVersion))),
                (24, Some(ErrorCode::BadRequest(BadRequest::BadType))),
                (26, None),
            ]
        );
        assert!(!out.close);
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn group_mods_change_the_group_table_and_flows_run_groups() {
        use openflow::flow::{Bucket, GroupSpec, GroupType};
        use openflow::wire::GroupMod;
        let reg = Arc::new(Registry::default());
        let b = Local::new();
        let mut s = session(&reg);
        let group = |id: u32, ports: &[u32]| GroupSpec {
            group_id: id,
            group_type: GroupType::All,
            buckets: ports
                .iter()
                .map(|p| Bucket::new(vec![Action::output(*p)]))
                .collect(),
        };
        let gm = |command, spec, xid| enc(&Message::GroupMod(GroupMod { command, spec }), xid);
        let mut runs_group = parse_flow("priority=5,in_port=1 actions=group:1").unwrap();
        runs_group.flags = flags::SEND_FLOW_REM;
        let out = run(
            &mut s,
            &b,
            &[
                hello(),
                add("in_port=2 actions=group:2", 30),
                gm(GroupModCommand::Add, group(1, &[2, 3]), 31),
                gm(GroupModCommand::Add, group(1, &[2]), 32),
                gm(GroupModCommand::Modify, group(2, &[2]), 33),
                enc(&Message::FlowMod(FlowMod::add(runs_group)), 34),
                enc(&Message::BarrierRequest, 35),
            ],
        );
        assert_eq!(
            codes(&out),
            vec![
                (30, Some(ErrorCode::BadAction(BadAction::BadOutGroup))),
                (
                    32,
                    Some(ErrorCode::GroupModFailed(GroupModFailed::GroupExists))
                ),
                (
                    33,
                    Some(ErrorCode::GroupModFailed(GroupModFailed::UnknownGroup))
                ),
                (35, None),
            ]
        );
        let key = openflow::FlowKey {
            in_port: 1,
            ..openflow::FlowKey::default()
        };
        let ports = |b: &Local| -> Vec<u32> {
            let p = b.pipeline.lock().unwrap();
            p.simulate(&key).iter().map(|(port, _)| *port).collect()
        };
        assert_eq!(ports(&b), vec![2, 3]);
        run(
            &mut s,
            &b,
            &[gm(GroupModCommand::Modify, group(1, &[4]), 36)],
        );
        assert_eq!(ports(&b), vec![4]);
        let dump = enc(
            &Message::MultipartRequest(openflow::wire::MultipartRequest {
                flags: 0,
                body: MultipartRequestBody::GroupDesc,
            }),
            38,
        );
        let out = run(&mut s, &b, &[dump]);
        assert!(
            matches!(
                &out.replies[..],
                [(38, Message::MultipartReply(MultipartReply { body: MultipartReplyBody::GroupDesc(g), .. }))]
                    if g == &vec![group(1, &[4])]
            ),
            "{:?}",
            out.replies
        );
        // Deleting the group deletes its flow, which asked to be told.
        let out = run(
            &mut s,
            &b,
            &[enc(&Message::GroupMod(GroupMod::delete(1)), 37)],
        );
        assert!(out.replies.is_empty());
        assert!(matches!(
            &out.broadcast[..],
            [Message::FlowRemoved(FlowRemoved {
                reason: FlowRemovedReason::GroupDelete,
                priority: 5,
                ..
            })]
        ));
        assert_eq!(b.len(), 0);
    }

    #[test]
    fn roles_master_slave_and_stale_generation() {
        let reg = Arc::new(Registry::default());
        let b = Local::new();
        let mut a = session(&reg);
        let mut c = session(&reg);
        run(&mut a, &b, &[hello()]);
        run(&mut c, &b, &[hello()]);
        let role = |r, g| {
            enc(
                &Message::RoleRequest(Role {
                    role: r,
                    generation_id: g,
                }),
                5,
            )
        };
        let out = run(&mut a, &b, &[role(ControllerRole::Master, 10)]);
        assert_eq!(
            out.replies[0].1,
            Message::RoleReply(Role {
                role: ControllerRole::Master,
                generation_id: 10
            })
        );
        run(&mut c, &b, &[role(ControllerRole::Master, 11)]);
        assert_eq!(a.conn.role(), ControllerRole::Slave);
        let out = run(
            &mut a,
            &b,
            &[
                add("actions=drop", 6),
                enc(
                    &Message::PacketOut(PacketOut {
                        buffer_id: None,
                        in_port: port::CONTROLLER,
                        actions: vec![Action::output(1)],
                        data: vec![0; 60],
                    }),
                    7,
                ),
                role(ControllerRole::Master, 9),
                role(ControllerRole::NoChange, 0),
            ],
        );
        let got: Vec<Option<ErrorCode>> = out.replies.iter().map(|(_, m)| error_code(m)).collect();
        assert_eq!(
            got,
            vec![
                Some(ErrorCode::BadRequest(BadRequest::IsSlave)),
                Some(ErrorCode::BadRequest(BadRequest::IsSlave)),
                Some(ErrorCode::RoleRequestFailed(RoleRequestFailed::Stale)),
                None,
            ]
        );
        assert_eq!(b.len(), 0);
        assert!(b.outs.lock().unwrap().is_empty());
    }

    #[test]
    fn packet_out_and_echo() {
        let reg = Arc::new(Registry::default());
        let b = Local::new();
        let mut s = session(&reg);
        let po = |data: Vec<u8>, buffer_id| {
            enc(
                &Message::PacketOut(PacketOut {
                    buffer_id,
                    in_port: port::CONTROLLER,
                    actions: vec![Action::output(port::TABLE)],
                    data,
                }),
                8,
            )
        };
        let out = run(
            &mut s,
            &b,
            &[
                hello(),
                po(vec![1; 60], None),
                po(vec![], None),
                po(vec![], Some(3)),
                enc(&Message::EchoRequest(b"abc".to_vec()), 9),
                enc(&Message::GetConfigRequest, 10),
            ],
        );
        assert_eq!(b.outs.lock().unwrap().len(), 1);
        let got: Vec<Option<ErrorCode>> = out.replies.iter().map(|(_, m)| error_code(m)).collect();
        assert_eq!(
            got[..2],
            [
                Some(ErrorCode::BadRequest(BadRequest::BadPacket)),
                Some(ErrorCode::BadRequest(BadRequest::BufferUnknown)),
            ]
        );
        assert_eq!(out.replies[2].1, Message::EchoReply(b"abc".to_vec()));
        assert_eq!(
            out.replies[3].1,
            Message::GetConfigReply(SwitchConfig::default())
        );
    }

    #[test]
    fn packet_in_message_carries_in_port_and_frame() {
        let ev = PacketInEvent {
            in_port: 3,
            reason: SwitchReason::NoMatch,
            table_id: 0,
            cookie: 7,
            total_len: 98,
            data: vec![0xab; 64],
        };
        let m = packet_in_message(&ev);
        assert_eq!(m.reason, PacketInReason::NoMatch);
        assert_eq!(m.buffer_id, None);
        assert_eq!((m.total_len, m.data.len(), m.cookie), (98, 64, 7));
        let bytes = encode(&Message::PacketIn(m.clone()), 0).unwrap();
        assert_eq!(decode(&bytes).unwrap().1, Message::PacketIn(m));
    }

    #[test]
    fn port_macs_are_unicast_and_distinct() {
        let a = port_mac(1, 1);
        let b = port_mac(1, 2);
        assert_ne!(a, b);
        assert!(!a.is_multicast());
        assert_eq!(a.0[0] & 2, 2);
    }

    fn tunnel_stats_request(xid: u32) -> Vec<u8> {
        enc(
            &Message::MultipartRequest(MultipartRequest {
                flags: 0,
                body: MultipartRequestBody::TunnelStats,
            }),
            xid,
        )
    }

    /// The entries of the tunnel statistics reply a fresh session gets from `b`.
    fn ask_tunnel_stats<B: Backend>(b: &B) -> Vec<TunnelStatsEntry> {
        let reg = Arc::new(Registry::default());
        let mut s = session(&reg);
        let out = run(&mut s, b, &[hello(), tunnel_stats_request(50)]);
        match out.replies.as_slice() {
            [(
                50,
                Message::MultipartReply(MultipartReply {
                    flags: 0,
                    body: MultipartReplyBody::TunnelStats(v),
                }),
            )] => v.clone(),
            other => panic!("{other:?}"),
        }
    }

    fn peer_status(port: PortNo, rtt_ms: Option<u64>, since_ms: Option<u64>) -> PeerStatus {
        PeerStatus {
            port,
            name: format!("host-{port}"),
            public_key: String::new(),
            endpoint: None,
            since_handshake: since_ms.map(Duration::from_millis),
            handshake_rtt: rtt_ms.map(Duration::from_millis),
            tx_bytes: u64::from(port) * 1000,
            rx_bytes: u64::from(port) * 10,
        }
    }

    #[test]
    fn tunnel_stats_has_one_entry_per_tunnel_and_foreign_experimenters_get_errors() {
        let reg = Arc::new(Registry::default());
        let mut b = Local::new();
        b.tunnels = vec![
            peer_status(10_002, Some(44), Some(3_500)),
            peer_status(10_003, None, Some(61_000)),
            peer_status(10_004, None, None),
        ];
        let mut s = session(&reg);
        let experimenter = |xid: u32, id: u32, exp_type: u32| {
            let mut b = tunnel_stats_request(xid);
            b[16..20].copy_from_slice(&id.to_be_bytes());
            b[20..24].copy_from_slice(&exp_type.to_be_bytes());
            b
        };
        let out = run(
            &mut s,
            &b,
            &[
                hello(),
                tunnel_stats_request(40),
                experimenter(41, 0x2320, openflow::wire::EXP_TUNNEL_STATS),
                experimenter(42, openflow::wire::SUPERCLOUD_EXPERIMENTER, 9),
                enc(&Message::BarrierRequest, 43),
            ],
        );
        assert_eq!(
            codes(&out),
            vec![
                (40, None),
                (41, Some(ErrorCode::BadRequest(BadRequest::BadExperimenter))),
                (42, Some(ErrorCode::BadRequest(BadRequest::BadExpType))),
                (43, None),
            ]
        );
        assert!(!out.close);
        let Message::MultipartReply(MultipartReply {
            body: MultipartReplyBody::TunnelStats(v),
            ..
        }) = &out.replies[0].1
        else {
            panic!("{out:?}")
        };
        let entry = |port_no, handshake_rtt_us, since_handshake_ms| TunnelStatsEntry {
            port_no,
            handshake_rtt_us,
            since_handshake_ms,
            tx_bytes: u64::from(port_no) * 1000,
            rx_bytes: u64::from(port_no) * 10,
        };
        assert_eq!(
            v,
            &vec![
                entry(10_002, Some(44_000), Some(3_500)),
                entry(10_003, None, Some(61_000)),
                entry(10_004, None, None),
            ]
        );
        // The error carries the refused request.
        let Message::Error(e) = &out.replies[1].1 else {
            panic!()
        };
        assert_eq!(e.data, experimenter(41, 0x2320, 1));

        assert_eq!(ask_tunnel_stats(&Local::new()), vec![]);
    }

    /// Runs a switch over `tunnels` (no local ports) on its own thread.
    fn spawn_switch(
        datapath_id: u64,
        tunnels: Option<crate::tunnel::Tunnels>,
    ) -> (SwitchBackend, std::thread::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut switch = crate::switch::Switch::new(crate::switch::SwitchParams {
                datapath_id,
                ports: vec![],
                tunnels,
                arp: None,
                port_arp: vec![],
                gateway_mac: Mac([2, 0, 0, 0, 0, 1]),
                gateway_ip: std::net::Ipv4Addr::new(100, 64, 0, 1),
                pipeline: Pipeline::new(1),
            })
            .unwrap();
            tx.send(switch.handle()).unwrap();
            switch.run(&AtomicBool::new(false)).unwrap();
        });
        let handle = rx.recv().unwrap();
        let info = DatapathInfo {
            datapath_id,
            name: format!("switch-{datapath_id}"),
            n_tables: 1,
        };
        (SwitchBackend::new(handle, info), thread)
    }

    fn secret(b: u8) -> boringtun::x25519::StaticSecret {
        boringtun::x25519::StaticSecret::from([b; 32])
    }

    fn public(b: u8) -> [u8; 32] {
        boringtun::x25519::PublicKey::from(&secret(b)).to_bytes()
    }

    /// A tunnel peer on `port` with the public key of secret `key` bytes.
    fn peer(
        port: u32,
        name: &str,
        key: [u8; 32],
        endpoint: Option<std::net::SocketAddr>,
    ) -> crate::tunnel::PeerConfig {
        crate::tunnel::PeerConfig {
            port,
            name: name.into(),
            public_key: key,
            endpoint,
            keepalive: None,
        }
    }

    /// With the latency probe, the side that only answered at start initiates a
    /// handshake of its own within a period, so both sides have a round trip; and
    /// the initiator's keeps being refreshed.
    #[test]
    fn the_latency_probe_gives_both_sides_a_fresh_round_trip() {
        use crate::tunnel::Tunnels;
        let loopback = "127.0.0.1:0".parse().unwrap();
        let probe = Some(Duration::from_millis(300));
        let mut b_tunnels = Tunnels::new(
            loopback,
            secret(2),
            vec![peer(10_001, "a", public(1), None)],
            1420,
        )
        .unwrap();
        b_tunnels.set_latency_probe(probe);
        let b_addr = b_tunnels.local_addr().unwrap();
        let mut a_tunnels = Tunnels::new(
            loopback,
            secret(1),
            vec![peer(10_002, "b", public(2), Some(b_addr))],
            1420,
        )
        .unwrap();
        a_tunnels.set_latency_probe(probe);
        let (b_backend, b_thread) = spawn_switch(2, Some(b_tunnels));
        let (a_backend, a_thread) = spawn_switch(1, Some(a_tunnels));
        // Wait (not a timing assertion) until b, which learns a's endpoint from a's
        // first initiation, has probed a itself.
        let deadline = Instant::now() + Duration::from_secs(20);
        let (a, b) = loop {
            let a = ask_tunnel_stats(&a_backend);
            let b = ask_tunnel_stats(&b_backend);
            if b[0].handshake_rtt_us.is_some() || Instant::now() > deadline {
                break (a, b);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(a[0].handshake_rtt_us.is_some(), "{a:?}");
        assert!(b[0].handshake_rtt_us.is_some(), "b probed a: {b:?}");
        // Handshakes keep coming: the last one is never much older than a period.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut fresh = 0;
        while fresh < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(400));
            let a = ask_tunnel_stats(&a_backend);
            if a[0].since_handshake_ms.is_some_and(|ms| ms < 1_000) {
                fresh += 1;
            }
        }
        assert_eq!(
            fresh, 3,
            "three samples 400 ms apart saw a handshake under 1 s old"
        );
        for (backend, thread) in [(a_backend, a_thread), (b_backend, b_thread)] {
            backend.handle.stop();
            thread.join().unwrap();
        }
    }

    /// Two switches on loopback: `a` initiates a handshake to `b` at start and has a
    /// second peer that never answers (no endpoint). Their answers come from the
    /// switch threads' tunnel tables.
    #[test]
    fn running_switches_answer_tunnel_stats_from_their_tunnels() {
        use crate::tunnel::Tunnels;
        let loopback = "127.0.0.1:0".parse().unwrap();
        let b_tunnels = Tunnels::new(
            loopback,
            secret(2),
            vec![peer(10_001, "a", public(1), None)],
            1420,
        )
        .unwrap();
        let b_addr = b_tunnels.local_addr().unwrap();
        let a_tunnels = Tunnels::new(
            loopback,
            secret(1),
            vec![
                peer(10_002, "b", public(2), Some(b_addr)),
                peer(10_003, "c", public(3), None),
            ],
            1420,
        )
        .unwrap();
        let (b_backend, b_thread) = spawn_switch(2, Some(b_tunnels));
        let (a_backend, a_thread) = spawn_switch(1, Some(a_tunnels));
        let (none_backend, none_thread) = spawn_switch(3, None);

        // Wait (not a timing assertion) for the handshake a initiated at start.
        let deadline = Instant::now() + Duration::from_secs(20);
        let (a, b) = loop {
            let a = ask_tunnel_stats(&a_backend);
            let b = ask_tunnel_stats(&b_backend);
            let done = a[0].since_handshake_ms.is_some() && b[0].since_handshake_ms.is_some();
            if done || Instant::now() > deadline {
                break (a, b);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let ports = |v: &[TunnelStatsEntry]| v.iter().map(|e| e.port_no).collect::<Vec<_>>();
        assert_eq!(ports(&a), vec![10_002, 10_003]);
        assert_eq!(ports(&b), vec![10_001]);
        // a initiated: it has a round trip, in whole milliseconds carried as µs.
        let rtt = a[0]
            .handshake_rtt_us
            .expect("a measured the handshake to b");
        assert_eq!(rtt % 1000, 0, "{rtt}");
        assert!(a[0].since_handshake_ms.is_some(), "{a:?}");
        // b only answered: a session but no round trip of its own.
        assert!(b[0].since_handshake_ms.is_some(), "{b:?}");
        assert_eq!(b[0].handshake_rtt_us, None);
        // c never answered.
        assert_eq!(
            (
                a[1].handshake_rtt_us,
                a[1].since_handshake_ms,
                a[1].rx_bytes
            ),
            (None, None, 0)
        );
        // A switch without tunnels answers an empty list.
        assert_eq!(ask_tunnel_stats(&none_backend), vec![]);

        for (backend, thread) in [
            (a_backend, a_thread),
            (b_backend, b_thread),
            (none_backend, none_thread),
        ] {
            backend.handle.stop();
            thread.join().unwrap();
        }
    }
}
