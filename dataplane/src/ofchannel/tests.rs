//! Tests of the channel's sessions over a local pipeline (no switch thread);
//! `running_tests` drives real switches.

use super::backend::{Backend, FlowModResults};
use super::info::DatapathInfo;
use super::registry::Registry;
use super::session::{Outcome, Session};
use crate::switch::SwitchGone;
use dataplane_core::packet_io::{PacketInEvent, PacketInReason as SwitchReason};
use dataplane_core::packet_io::{PacketOutError, PacketOutJob};
use dataplane_core::pipeline::{Pipeline, RemovedFlow, ALL_TABLES};
use dataplane_core::port::PeerStatus;
use dataplane_core::translate::{
    apply_flow_mod, apply_group_mod, flow_stats, group_descs, packet_in_message, table_stats,
    tunnel_stats,
};
use openflow::flow::{flags, port, Action, Field, FlowMatch, GroupSpec, PortNo};
use openflow::text::parse_flow;
use openflow::wire::{
    decode, AggregateStats, BadAction, BadInstruction, BadRequest, ControllerRole, ErrorCode,
    FlowMod, FlowModCommand, FlowModFailed, FlowRemoved, FlowRemovedReason, FlowStatsEntry,
    FlowStatsRequest, GroupMod, GroupModCommand, GroupModFailed, Hello, HelloFailed, Message,
    MultipartReply, MultipartReplyBody, MultipartRequestBody, PacketInReason, PortDesc, PortStats,
    Role, RoleRequestFailed, SwitchConfig, SwitchFeatures, TableStats, TunnelStatsEntry,
};
use openflow::wire::{encode, MultipartRequest, PacketOut};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod roles;

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
    fn group_mod(&self, gm: GroupMod) -> Result<Result<Vec<RemovedFlow>, ErrorCode>, SwitchGone> {
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

/// A session that has said hello.
fn greeted(reg: &Arc<Registry>, b: &Local) -> Session {
    let mut s = session(reg);
    run(&mut s, b, &[hello()]);
    s
}

fn enc(m: &Message, xid: u32) -> Vec<u8> {
    encode(m, xid).unwrap()
}

/// A multipart request (xid 9).
fn req(body: MultipartRequestBody) -> Vec<u8> {
    enc(
        &Message::MultipartRequest(MultipartRequest { flags: 0, body }),
        9,
    )
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

/// A role request for `role` with generation `generation_id` (xid 5).
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

/// A frame for the controller from port 3 (cookie 7) with `metadata`.
fn packet_in_event(metadata: u64) -> PacketInEvent {
    PacketInEvent {
        in_port: 3,
        reason: SwitchReason::NoMatch,
        table_id: 0,
        cookie: 7,
        metadata,
        total_len: 98,
        data: vec![0xab; 64],
    }
}

#[test]
fn packet_in_message_carries_in_port_and_frame() {
    let m = packet_in_message(&packet_in_event(0));
    assert_eq!(m.reason, PacketInReason::NoMatch);
    assert_eq!(m.buffer_id, None);
    assert_eq!((m.total_len, m.data.len(), m.cookie), (98, 64, 7));
    // No metadata was written: the match is the input port alone.
    assert_eq!(m.matcher, FlowMatch::any().with(Field::InPort, 3));
    let bytes = encode(&Message::PacketIn(m.clone()), 0).unwrap();
    assert_eq!(decode(&bytes).unwrap().1, Message::PacketIn(m));
}

#[test]
fn packet_in_message_carries_the_metadata_the_packet_had() {
    let m = packet_in_message(&packet_in_event(0x0102_0304_0506_0708));
    assert_eq!(m.matcher.exact(Field::InPort), Some(3));
    assert_eq!(
        m.matcher.exact(Field::Metadata),
        Some(0x0102_0304_0506_0708)
    );
    assert_eq!(m.matcher.fields().count(), 2);
    let bytes = encode(&Message::PacketIn(m.clone()), 0).unwrap();
    // After the 24 bytes of header and the match's type and length: OXM
    // in_port (0x80000004), then OXM metadata (0x80000408), exact.
    assert_eq!(
        bytes[28..48],
        [0x80, 0, 0, 4, 0, 0, 0, 3, 0x80, 0, 4, 8, 1, 2, 3, 4, 5, 6, 7, 8]
    );
    assert_eq!(decode(&bytes).unwrap().1, Message::PacketIn(m));
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
pub(super) fn ask_tunnel_stats<B: Backend>(b: &B) -> Vec<TunnelStatsEntry> {
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

#[test]
fn table_features_and_table_stats_agree_on_every_one_of_254_tables() {
    let reg = Arc::new(Registry::default());
    let mut b = Local::new();
    b.info.n_tables = dataplane_core::pipeline::DEFAULT_TABLES;
    b.pipeline = Mutex::new(Pipeline::default());
    let mut s = session(&reg);
    run(&mut s, &b, &[hello()]);
    let out = run(
        &mut s,
        &b,
        &[
            req(MultipartRequestBody::Table),
            req(MultipartRequestBody::TableFeatures),
        ],
    );
    let (mut stats, mut features) = (Vec::new(), Vec::new());
    for (_, reply) in &out.replies {
        match reply {
            Message::MultipartReply(MultipartReply {
                body: MultipartReplyBody::Table(t),
                ..
            }) => stats.extend(t.iter().map(|t| t.table_id)),
            Message::MultipartReply(MultipartReply {
                body: MultipartReplyBody::TableFeatures(t),
                ..
            }) => features.extend(t.iter().map(|t| t.table_id)),
            other => panic!("{other:?}"),
        }
    }
    let all: Vec<u8> = (0..254).collect();
    assert_eq!((stats, features), (all.clone(), all));
    // Every reply fits in an OpenFlow message (the features take several).
    assert!(out.replies.len() > 2, "{}", out.replies.len());
    for (xid, reply) in &out.replies {
        encode(reply, *xid).unwrap();
    }
}
