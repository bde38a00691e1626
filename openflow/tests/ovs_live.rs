//! Live interop: a real `ovs-ofctl -O OpenFlow13` talks to a tiny fake switch built on
//! this crate over TCP on 127.0.0.1. The messages it sends are real captures; what we
//! decode must mean what `parse_flow` reads from the same text, and what we answer
//! must print as `format_flow_stats` prints it. Skipped without `ovs-ofctl`, except
//! under `CI=true`, where a missing `ovs-ofctl` fails.

mod common;

use openflow::text::{format_flow, format_flow_stats, parse_flow, FlowStats};
use openflow::wire::*;
use openflow::{FlowSpec, Mac};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// What the fake switch knows: its flows (for dump-flows) and ports.
#[derive(Debug, Default, Clone)]
struct FakeSwitch {
    flows: Vec<(FlowSpec, FlowStats)>,
    ports: Vec<PortDesc>,
    groups: Vec<openflow::flow::GroupSpec>,
}

impl FakeSwitch {
    fn answer(&self, m: &Message) -> Vec<Message> {
        match m {
            Message::EchoRequest(d) => vec![Message::EchoReply(d.clone())],
            Message::FeaturesRequest => vec![Message::FeaturesReply(SwitchFeatures {
                datapath_id: 0x0200_0000_00aa,
                n_buffers: 0,
                n_tables: 4,
                auxiliary_id: 0,
                capabilities: capabilities::FLOW_STATS | capabilities::PORT_STATS,
                reserved: 0,
            })],
            Message::GetConfigRequest => vec![Message::GetConfigReply(SwitchConfig::default())],
            Message::BarrierRequest => vec![Message::BarrierReply],
            Message::MultipartRequest(r) => {
                let body = match &r.body {
                    MultipartRequestBody::Flow(_) => MultipartReplyBody::Flow(
                        self.flows
                            .iter()
                            .map(|(spec, stats)| FlowStatsEntry {
                                spec: spec.clone(),
                                stats: *stats,
                            })
                            .collect(),
                    ),
                    MultipartRequestBody::PortDesc => {
                        MultipartReplyBody::PortDesc(self.ports.clone())
                    }
                    MultipartRequestBody::GroupDesc => {
                        MultipartReplyBody::GroupDesc(self.groups.clone())
                    }
                    MultipartRequestBody::PortStats(_) => MultipartReplyBody::PortStats(
                        self.ports
                            .iter()
                            .map(|p| PortStats {
                                port_no: p.port_no,
                                rx_packets: 10,
                                tx_packets: 20,
                                rx_bytes: 1000,
                                tx_bytes: 2000,
                                ..PortStats::default()
                            })
                            .collect(),
                    ),
                    MultipartRequestBody::Table => MultipartReplyBody::Table(
                        (0..4)
                            .map(|t| TableStats {
                                table_id: t,
                                active_count: u32::from(t),
                                lookup_count: 100,
                                matched_count: 90,
                            })
                            .collect(),
                    ),
                    MultipartRequestBody::Aggregate(_) => {
                        MultipartReplyBody::Aggregate(AggregateStats {
                            packet_count: 1,
                            byte_count: 2,
                            flow_count: 3,
                        })
                    }
                    MultipartRequestBody::Desc => MultipartReplyBody::Desc(SwitchDesc {
                        mfr_desc: "supercloud".into(),
                        ..SwitchDesc::default()
                    }),
                    MultipartRequestBody::TableFeatures => MultipartReplyBody::TableFeatures(
                        (0..4)
                            .map(|t| TableFeatures::supercloud(t, 4, 1_000_000))
                            .collect(),
                    ),
                    // A fake switch without tunnels.
                    MultipartRequestBody::TunnelStats => MultipartReplyBody::TunnelStats(vec![]),
                };
                MultipartReply { flags: 0, body }
                    .split()
                    .into_iter()
                    .map(Message::MultipartReply)
                    .collect()
            }
            _ => vec![],
        }
    }
}

/// Runs `ovs-ofctl -O OpenFlow13 <args with {} = the switch>` against the fake switch;
/// returns every message it sent (decoded, in order) and its stdout.
fn run(ofctl: &Path, sw: &FakeSwitch, args: &[&str]) -> (Vec<Message>, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = format!("tcp:{}", listener.local_addr().unwrap());
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            if *a == "{}" {
                target.clone()
            } else {
                a.to_string()
            }
        })
        .collect();
    let child = Command::new(ofctl)
        .args(["-O", "OpenFlow13", "--timeout=10", "-vvconn:dbg"])
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // ovs-ofctl may open several connections (e.g. `show`); serve each in a thread.
    listener.set_nonblocking(true).unwrap();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut child = child;
    let mut servers = Vec::new();
    let status = loop {
        if let Ok((mut conn, _)) = listener.accept() {
            conn.set_nonblocking(false).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(15)))
                .unwrap();
            let (sw, got) = (sw.clone(), got.clone());
            servers.push(std::thread::spawn(move || {
                let msgs = serve(&mut conn, &sw);
                got.lock().unwrap().extend(msgs);
            }));
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    for s in servers {
        s.join().unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let _ = status;
    let got = std::mem::take(&mut *got.lock().unwrap());
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "ovs-ofctl {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (got, stdout)
}

fn serve(conn: &mut TcpStream, sw: &FakeSwitch) -> Vec<Message> {
    conn.write_all(&encode(&Message::Hello(Hello::of13()), 0).unwrap())
        .unwrap();
    let mut buf = Vec::new();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return got,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(len) = frame_len(&buf).expect("ovs-ofctl framed its stream") {
            let frame: Vec<u8> = buf.drain(..len).collect();
            let (xid, m) = match decode(&frame) {
                Ok(ok) => ok,
                Err(e) => {
                    // What scd does: answer with the error and carry on.
                    eprintln!("fake switch: {e}");
                    let reply = error_reply_for(&e, &frame);
                    conn.write_all(&encode(&reply, e.xid).unwrap()).unwrap();
                    got.push(reply);
                    continue;
                }
            };
            eprintln!("fake switch got: {m:?}");
            for reply in sw.answer(&m) {
                conn.write_all(&encode(&reply, xid).unwrap()).unwrap();
            }
            got.push(m);
        }
    }
}

fn flow_mods(msgs: &[Message]) -> Vec<FlowMod> {
    msgs.iter()
        .filter_map(|m| match m {
            Message::FlowMod(f) => Some(f.clone()),
            _ => None,
        })
        .collect()
}

const FLOWS: &[&str] = &[
    "table=0,priority=100,ip,nw_dst=100.64.0.0/10,actions=mod_dl_dst:02:00:00:00:00:02,output:3",
    "priority=5,dl_vlan=5,dl_vlan_pcp=3,actions=pop_vlan,output:IN_PORT",
    "priority=6,tcp,tp_dst=80,nw_tos=184,actions=set_field:8080->tcp_dst,dec_ttl,LOCAL",
    "table=1,cookie=0x1f,idle_timeout=10,hard_timeout=20,send_flow_rem,priority=6,icmp,icmp_type=8,actions=set_field:10.0.0.1->ip_dst,goto_table:2",
    "priority=6,arp,arp_op=1,arp_spa=10.0.0.0/8,arp_tpa=10.0.0.1,actions=CONTROLLER:128",
    "priority=6,ipv6,ipv6_src=fe80::/10,actions=push_vlan:0x8100,set_field:4101->vlan_vid,FLOOD",
    "priority=6,udp6,tp_src=0x10/0xfff0,actions=drop",
];

#[test]
fn add_flow_sends_what_parse_flow_reads() {
    let Some(ofctl) = common::ovs_ofctl() else {
        return;
    };
    for text in FLOWS {
        let (msgs, _) = run(&ofctl, &FakeSwitch::default(), &["add-flow", "{}", text]);
        let fms = flow_mods(&msgs);
        assert_eq!(fms.len(), 1, "{msgs:?}");
        let ours = parse_flow(text).unwrap();
        assert_eq!(fms[0].command, FlowModCommand::Add);
        // OVS writes max_len 0 for non-controller outputs; the text form ignores it.
        assert_eq!(format_flow(&fms[0].spec), format_flow(&ours), "{text}");
        assert_eq!(fms[0].spec.matcher, ours.matcher, "{text}");
        assert!(msgs.iter().any(|m| matches!(m, Message::BarrierRequest)));
    }
}

#[test]
fn add_flows_from_a_file_and_del_and_mod_flows() {
    let Some(ofctl) = common::ovs_ofctl() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("openflow-live-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("flows.txt");
    std::fs::write(&file, format!("# static flows\n\n{}\n", FLOWS.join("\n"))).unwrap();
    let (msgs, _) = run(
        &ofctl,
        &FakeSwitch::default(),
        &["add-flows", "{}", file.to_str().unwrap()],
    );
    let _ = std::fs::remove_dir_all(&dir);
    let fms = flow_mods(&msgs);
    assert_eq!(fms.len(), FLOWS.len());
    for (fm, text) in fms.iter().zip(FLOWS) {
        assert_eq!(
            format_flow(&fm.spec),
            format_flow(&parse_flow(text).unwrap())
        );
    }

    let (msgs, _) = run(
        &ofctl,
        &FakeSwitch::default(),
        &["del-flows", "{}", "ip,nw_dst=100.64.0.2"],
    );
    let fms = flow_mods(&msgs);
    assert_eq!(fms.len(), 1);
    assert_eq!(fms[0].command, FlowModCommand::Delete);
    assert_eq!(fms[0].spec.table_id, TABLE_ALL);
    assert_eq!(
        fms[0].spec.matcher,
        parse_flow("ip,nw_dst=100.64.0.2,actions=drop")
            .unwrap()
            .matcher
    );

    let (msgs, _) = run(
        &ofctl,
        &FakeSwitch::default(),
        &["--strict", "del-flows", "{}", "priority=5,ip"],
    );
    assert_eq!(flow_mods(&msgs)[0].command, FlowModCommand::DeleteStrict);

    let (msgs, _) = run(
        &ofctl,
        &FakeSwitch::default(),
        &["mod-flows", "{}", "ip,actions=output:7"],
    );
    let fms = flow_mods(&msgs);
    assert_eq!(fms[0].command, FlowModCommand::Modify);
    assert_eq!(format_flow(&fms[0].spec), "ip actions=output:7");
}

#[test]
fn dump_flows_prints_what_format_flow_stats_prints() {
    let Some(ofctl) = common::ovs_ofctl() else {
        return;
    };
    let sw = FakeSwitch {
        flows: FLOWS
            .iter()
            .zip(1u64..)
            .map(|(t, i)| {
                let stats = FlowStats {
                    duration_sec: 5,
                    duration_nsec: 1_000_000 * u32::try_from(i).unwrap(),
                    packet_count: i,
                    byte_count: 98 * i,
                    idle_age: None,
                };
                (parse_flow(t).unwrap(), stats)
            })
            .collect(),
        ports: vec![],
        groups: vec![],
    };
    let (_, stdout) = run(&ofctl, &sw, &["dump-flows", "{}"]);
    let theirs: Vec<&str> = stdout
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("cookie="))
        .collect();
    let ours: Vec<String> = sw
        .flows
        .iter()
        .map(|(s, st)| format_flow_stats(s, st))
        .collect();
    assert_eq!(theirs, ours, "{stdout}");
}

#[test]
fn show_dump_ports_dump_tables_and_packet_out() {
    let Some(ofctl) = common::ovs_ofctl() else {
        return;
    };
    let sw = FakeSwitch {
        flows: vec![],
        groups: vec![],
        ports: vec![
            common::tap_vm1_port(),
            PortDesc {
                port_no: 2,
                hw_addr: Mac([2, 0, 0, 0, 0, 2]),
                name: "wg-host-b".into(),
                state: port_state::LIVE,
                ..PortDesc::default()
            },
        ],
    };
    let (_, out) = run(&ofctl, &sw, &["show", "{}"]);
    assert!(
        out.contains("dpid:0000020000000aa") || out.contains("dpid:00000200000000aa"),
        "{out}"
    );
    assert!(out.contains("1(tap-vm1): addr:02:00:00:00:00:01"), "{out}");
    assert!(out.contains("2(wg-host-b)"), "{out}");
    let (_, out) = run(&ofctl, &sw, &["dump-ports-desc", "{}"]);
    assert!(out.contains("tap-vm1"), "{out}");
    let (msgs, out) = run(&ofctl, &sw, &["dump-ports", "{}"]);
    assert!(out.contains("port  1: rx pkts=10, bytes=1000"), "{out}");
    assert!(msgs.iter().any(|m| matches!(m, Message::MultipartRequest(MultipartRequest { body: MultipartRequestBody::PortStats(p), .. }) if *p == openflow::flow::port::ANY)));
    let (_, out) = run(&ofctl, &sw, &["dump-tables", "{}"]);
    assert!(out.contains("table 3"), "{out}");
    let frame =
        "ffffffffffff020000000001080600010800060400010200000000016440000100000000000064400002";
    let (msgs, _) = run(
        &ofctl,
        &sw,
        &[
            "packet-out",
            "{}",
            &format!("in_port=CONTROLLER,packet={frame},actions=output:2"),
        ],
    );
    let po = msgs
        .iter()
        .find_map(|m| match m {
            Message::PacketOut(p) => Some(p.clone()),
            _ => None,
        })
        .expect("a packet-out");
    assert_eq!(po.in_port, openflow::flow::port::CONTROLLER);
    assert_eq!(po.buffer_id, None);
    assert_eq!(po.data.len(), frame.len() / 2);
    assert!(matches!(
        po.actions.as_slice(),
        [openflow::Action::Output { port: 2, .. }]
    ));
}

#[test]
fn add_group_sends_what_we_decode_and_dump_groups_prints_format_group() {
    use openflow::flow::{Bucket, GroupSpec, GroupType};
    use openflow::text::format_group;
    use openflow::{Action, Field};
    let Some(ofctl) = common::ovs_ofctl() else {
        return;
    };
    let group = GroupSpec {
        group_id: 7,
        group_type: GroupType::All,
        buckets: vec![
            Bucket::new(vec![
                Action::set(Field::Ipv4Src, 0x0a00_0001),
                Action::output(5),
            ]),
            Bucket::new(vec![Action::output(6)]),
        ],
    };
    let text = format_group(&group);
    let (msgs, _) = run(&ofctl, &FakeSwitch::default(), &["add-group", "{}", &text]);
    let sent: Vec<&GroupMod> = msgs
        .iter()
        .filter_map(|m| match m {
            Message::GroupMod(g) => Some(g),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 1, "{msgs:?}");
    assert_eq!(sent[0].command, GroupModCommand::Add);
    // OVS writes max_len 0 for outputs to ports; the text form ignores it.
    assert_eq!(format_group(&sent[0].spec), text);
    let (msgs, _) = run(
        &ofctl,
        &FakeSwitch::default(),
        &["add-flow", "{}", "ip,actions=group:7"],
    );
    let fm = msgs
        .iter()
        .find_map(|m| match m {
            Message::FlowMod(f) => Some(f),
            _ => None,
        })
        .expect("a flow-mod");
    assert_eq!(format_flow(&fm.spec), "ip actions=group:7");

    let sw = FakeSwitch {
        groups: vec![group],
        ..FakeSwitch::default()
    };
    let (_, stdout) = run(&ofctl, &sw, &["dump-groups", "{}"]);
    let theirs: Vec<&str> = stdout
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("group_id="))
        .collect();
    assert_eq!(theirs, vec![text.as_str()], "{stdout}");
}
