//! A fake OpenFlow 1.3 switch: it keeps each switch's flow table, applies flow-mods
//! the way a switch does for a controller that only adds, modifies and deletes
//! strictly (the table is keyed by table, priority and match), answers barriers,
//! echoes, features, flow dumps (in parts, as a real switch must for big tables),
//! port statistics and port descriptions (ports 1 to 16 unless told otherwise: a
//! migration is refused to a port its destination did not describe), takes port
//! bindings silently (as `scd` does), adds and removes ports on the controller's
//! add-port/del-port with a port-status (a clashing or unknown port is refused
//! with a port-mod-failed error, as `scd` does), may refuse every flow-mod, counts flow-mods,
//! answers role requests and remembers the last master's generation (one switch
//! may serve several controllers, each connection a task over the same table),
//! and moves no packet.
//!
//! One switch is a task, not a thread or a process: a thousand of them run in one
//! tokio runtime beside the controller on a two-core machine. This crate owns that
//! switch and nothing else; controller tests and `bench reroute` both use it.

use openflow::flow::FlowMatch;
use openflow::wire::{
    decode, encode, frame_len, ControllerRole, ErrorCode, ErrorMsg, FlowModCommand, FlowStatsEntry,
    Hello, Message, MultipartReply, MultipartReplyBody, MultipartRequestBody, PortDesc, PortReason,
    PortStats, PortStatus, Role, SwitchFeatures, MORE,
};
use openflow::FlowSpec;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Flow entries per part of a flow dump: a message is at most 64 KiB.
const ENTRIES_PER_PART: usize = 100;

/// What identifies a flow entry for strict modify and delete.
type FlowKey = (u8, u16, FlowMatch);

/// Counters that every switch of a run may share (a benchmark sums them).
#[derive(Debug, Default)]
pub struct Counters {
    /// Flow-mods received.
    pub flow_mods: AtomicU64,
    /// Barriers answered.
    pub barriers: AtomicU64,
}

/// One fake switch: its table and what a test may change or observe.
#[derive(Debug)]
pub struct FakeSwitch {
    dpid: u64,
    flows: Mutex<HashMap<FlowKey, FlowSpec>>,
    /// False: it reads and ignores everything, as a stopped process would.
    answering: AtomicBool,
    /// The connection ended (the controller closed it, or it failed).
    closed: AtomicBool,
    /// True: every flow-mod is answered with an error and not applied.
    refusing: AtomicBool,
    /// What it answers a port description request with.
    ports: Mutex<Vec<PortDesc>>,
    /// The generation id of the last controller that asked to be master, and when.
    master: Mutex<Option<(u64, std::time::Instant)>>,
    /// Every role request received, in order.
    roles: Mutex<Vec<Role>>,
    counters: Arc<Counters>,
}

impl FakeSwitch {
    /// Datapath `dpid` with an empty table and its own counters.
    pub fn new(dpid: u64) -> Arc<FakeSwitch> {
        FakeSwitch::with_counters(dpid, Arc::default())
    }

    /// Datapath `dpid` with an empty table, counting into `counters`.
    pub fn with_counters(dpid: u64, counters: Arc<Counters>) -> Arc<FakeSwitch> {
        Arc::new(FakeSwitch {
            dpid,
            flows: Mutex::new(HashMap::new()),
            answering: AtomicBool::new(true),
            closed: AtomicBool::new(false),
            refusing: AtomicBool::new(false),
            ports: Mutex::new((1..=16).map(|n| port(n, &format!("port{n}"))).collect()),
            master: Mutex::new(None),
            roles: Mutex::new(Vec::new()),
            counters,
        })
    }

    fn table(&self) -> MutexGuard<'_, HashMap<FlowKey, FlowSpec>> {
        self.flows.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The generation id of the last master it accepted, and when it did.
    pub fn master(&self) -> Option<(u64, std::time::Instant)> {
        *self.master.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every role request it received, in order.
    pub fn roles(&self) -> Vec<Role> {
        self.roles.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Its datapath id.
    pub fn dpid(&self) -> u64 {
        self.dpid
    }

    /// Number of flows held.
    pub fn flow_count(&self) -> usize {
        self.table().len()
    }

    /// The flows held, in no particular order.
    pub fn flows(&self) -> Vec<FlowSpec> {
        self.table().values().cloned().collect()
    }

    /// Installs `flow` as if someone else had (no flow-mod is counted).
    pub fn insert(&self, flow: FlowSpec) {
        self.table()
            .insert((flow.table_id, flow.priority, flow.matcher), flow);
    }

    /// Removes the flow with `flow`'s table, priority and match behind the
    /// controller's back; true if there was one.
    pub fn remove(&self, flow: &FlowSpec) -> bool {
        self.table()
            .remove(&(flow.table_id, flow.priority, flow.matcher))
            .is_some()
    }

    /// Flow-mods received (by every switch sharing these counters).
    pub fn flow_mods(&self) -> u64 {
        self.counters.flow_mods.load(Ordering::SeqCst)
    }

    /// Its counters.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// Stops (false) or resumes (true) answering anything.
    pub fn set_answering(&self, answering: bool) {
        self.answering.store(answering, Ordering::SeqCst);
    }

    /// Refuses (true) or applies (false) every flow-mod from now on.
    pub fn set_refusing(&self, refusing: bool) {
        self.refusing.store(refusing, Ordering::SeqCst);
    }

    /// Describes `ports` from now on instead of ports 1 to 16.
    pub fn set_ports(&self, ports: Vec<PortDesc>) {
        *self.ports.lock().unwrap_or_else(|e| e.into_inner()) = ports;
    }

    /// The ports it describes now (ports added and removed on request included).
    pub fn ports(&self) -> Vec<PortDesc> {
        self.ports.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// True once its connection has ended.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Records that its connection ended before it was served (a TLS handshake
    /// the controller refused, say).
    pub fn set_closed(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// The replies to `m`, having applied it (several for a long flow dump).
    pub fn answer(&self, m: Message) -> Vec<Message> {
        let reply = match m {
            Message::FeaturesRequest => Message::FeaturesReply(SwitchFeatures {
                datapath_id: self.dpid,
                n_buffers: 0,
                n_tables: 4,
                auxiliary_id: 0,
                capabilities: 0,
                reserved: 0,
            }),
            Message::EchoRequest(data) => Message::EchoReply(data),
            Message::RoleRequest(r) => {
                self.roles.lock().unwrap_or_else(|e| e.into_inner()).push(r);
                if r.role == ControllerRole::Master {
                    *self.master.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some((r.generation_id, std::time::Instant::now()));
                }
                Message::RoleReply(r)
            }
            Message::BarrierRequest => {
                self.counters.barriers.fetch_add(1, Ordering::Relaxed);
                Message::BarrierReply
            }
            Message::FlowMod(_) if self.refusing.load(Ordering::SeqCst) => {
                // OFPET_FLOW_MOD_FAILED, OFPFMFC_UNKNOWN.
                Message::Error(ErrorMsg {
                    code: ErrorCode::Other { typ: 5, code: 0 },
                    data: Vec::new(),
                })
            }
            Message::FlowMod(fm) => {
                self.counters.flow_mods.fetch_add(1, Ordering::Relaxed);
                let key = (fm.spec.table_id, fm.spec.priority, fm.spec.matcher);
                let mut table = self.table();
                match fm.command {
                    FlowModCommand::Add => {
                        table.insert(key, fm.spec);
                    }
                    FlowModCommand::Modify | FlowModCommand::ModifyStrict => {
                        if let Some(f) = table.get_mut(&key) {
                            f.instructions = fm.spec.instructions;
                        }
                    }
                    FlowModCommand::Delete | FlowModCommand::DeleteStrict => {
                        table.remove(&key);
                    }
                }
                return Vec::new();
            }
            Message::AddPort(add) => {
                let mut ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
                if ports
                    .iter()
                    .any(|p| p.port_no == add.port || p.name == add.name)
                {
                    port_mod_failed()
                } else {
                    let desc = port(add.port, &add.name);
                    ports.push(desc.clone());
                    Message::PortStatus(PortStatus {
                        reason: PortReason::Add,
                        desc,
                    })
                }
            }
            Message::DelPort(del) => {
                let mut ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
                match ports.iter().position(|p| p.port_no == del.port) {
                    Some(at) => Message::PortStatus(PortStatus {
                        reason: PortReason::Delete,
                        desc: ports.remove(at),
                    }),
                    None => port_mod_failed(),
                }
            }
            Message::MultipartRequest(r) => match r.body {
                MultipartRequestBody::Flow(req) => {
                    return self.flow_dump(req.cookie, req.cookie_mask)
                }
                MultipartRequestBody::PortStats(port_no) => {
                    multipart(MultipartReplyBody::PortStats(vec![PortStats {
                        port_no,
                        ..PortStats::default()
                    }]))
                }
                MultipartRequestBody::PortDesc => {
                    let ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
                    multipart(MultipartReplyBody::PortDesc(ports.clone()))
                }
                MultipartRequestBody::TunnelStats => {
                    multipart(MultipartReplyBody::TunnelStats(Vec::new()))
                }
                _ => return Vec::new(),
            },
            _ => return Vec::new(),
        };
        vec![reply]
    }

    /// The flows whose cookie matches, in parts with `MORE` set on all but the last.
    fn flow_dump(&self, cookie: u64, cookie_mask: u64) -> Vec<Message> {
        let entries: Vec<FlowStatsEntry> = self
            .table()
            .values()
            .filter(|f| f.cookie & cookie_mask == cookie & cookie_mask)
            .map(|spec| FlowStatsEntry {
                spec: spec.clone(),
                stats: Default::default(),
            })
            .collect();
        let parts: Vec<&[FlowStatsEntry]> = entries.chunks(ENTRIES_PER_PART).collect();
        let n = parts.len().max(1);
        (0..n)
            .map(|i| {
                Message::MultipartReply(MultipartReply {
                    flags: if i + 1 < n { MORE } else { 0 },
                    body: MultipartReplyBody::Flow(
                        parts.get(i).map(|p| p.to_vec()).unwrap_or_default(),
                    ),
                })
            })
            .collect()
    }

    /// Connects to the controller at `to` (retrying until `give_up`) and serves it
    /// until the connection ends.
    pub async fn run(
        self: Arc<Self>,
        to: SocketAddr,
        give_up: tokio::time::Instant,
    ) -> std::io::Result<()> {
        let stream = loop {
            match TcpStream::connect(to).await {
                Ok(s) => break s,
                Err(_) if tokio::time::Instant::now() < give_up => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e),
            }
        };
        stream.set_nodelay(true)?;
        self.run_on(stream).await
    }

    /// Serves the controller on an established connection (TCP, or TLS over
    /// TCP) until it closes.
    pub async fn run_on<S: AsyncRead + AsyncWrite + Unpin>(
        self: Arc<Self>,
        stream: S,
    ) -> std::io::Result<()> {
        let result = self.serve(stream).await;
        self.closed.store(true, Ordering::SeqCst);
        result
    }

    /// Serves the controller on `stream` until it closes.
    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(&self, mut stream: S) -> std::io::Result<()> {
        stream
            .write_all(&encode_or_fail(&Message::Hello(Hello::of13()), 1)?)
            .await?;
        let mut inbox: Vec<u8> = Vec::with_capacity(1 << 16);
        let mut out = Vec::new();
        loop {
            inbox.reserve(1 << 16);
            if stream.read_buf(&mut inbox).await? == 0 {
                return Ok(());
            }
            let mut at = 0;
            while let Some(len) = frame_len(&inbox[at..]).map_err(invalid)? {
                let frame = &inbox[at..at + len];
                at += len;
                let Ok((xid, m)) = decode(frame) else {
                    continue;
                };
                if !self.answering.load(Ordering::SeqCst) {
                    continue;
                }
                for reply in self.answer(m) {
                    out.extend(encode_or_fail(&reply, xid)?);
                }
            }
            inbox.drain(..at);
            if !out.is_empty() {
                stream.write_all(&out).await?;
                out.clear();
            }
        }
    }
}

/// Port `port_no` called `name`, up.
pub fn port(port_no: u32, name: &str) -> PortDesc {
    PortDesc {
        port_no,
        name: name.to_string(),
        ..PortDesc::default()
    }
}

/// `OFPET_PORT_MOD_FAILED`, `OFPPMFC_BAD_PORT`: what `scd` answers a port
/// request it cannot do.
fn port_mod_failed() -> Message {
    Message::Error(ErrorMsg {
        code: ErrorCode::Other { typ: 7, code: 0 },
        data: Vec::new(),
    })
}

fn multipart(body: MultipartReplyBody) -> Message {
    Message::MultipartReply(MultipartReply { flags: 0, body })
}

fn invalid(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

fn encode_or_fail(m: &Message, xid: u32) -> std::io::Result<Vec<u8>> {
    encode(m, xid).map_err(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openflow::flow::{Action, Field};
    use openflow::wire::FlowMod;

    fn flow(ip: u32) -> FlowSpec {
        let m = FlowMatch::any()
            .with(Field::EthType, 0x800)
            .with(Field::Ipv4Dst, u128::from(ip));
        FlowSpec::new(0, 1, m, vec![Action::output(2)])
    }

    #[test]
    fn keeps_its_table_and_dumps_it_in_parts() {
        let sw = FakeSwitch::new(7);
        for ip in 0..250 {
            assert!(sw
                .answer(Message::FlowMod(FlowMod::add(flow(ip))))
                .is_empty());
        }
        let gone = FlowMod {
            command: FlowModCommand::DeleteStrict,
            ..FlowMod::add(flow(3))
        };
        sw.answer(Message::FlowMod(gone));
        assert_eq!(sw.flow_count(), 249);
        assert_eq!(sw.flow_mods(), 251);
        let dump = sw.flow_dump(0, 0);
        assert_eq!(dump.len(), 3);
        let mut total = 0;
        for (i, m) in dump.iter().enumerate() {
            let Message::MultipartReply(r) = m else {
                panic!("{m:?}")
            };
            assert_eq!(r.flags == MORE, i < 2);
            if let MultipartReplyBody::Flow(e) = &r.body {
                total += e.len();
            }
        }
        assert_eq!(total, 249);
        assert_eq!(
            sw.answer(Message::BarrierRequest),
            vec![Message::BarrierReply]
        );
    }
}
