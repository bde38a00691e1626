//! `scd`'s OpenFlow 1.3 channel against real peers: `ovs-ofctl -O OpenFlow13` run
//! inside the host namespace programs and inspects the switch, traffic between two
//! VM namespaces follows only the flows installed that way; malformed and
//! unsupported messages get error replies while the connection and tables survive;
//! 10,000 flow-mods and a barrier are applied and acknowledged; a controller that
//! `scd` connects to receives packet-ins and injects frames with packet-out.

use anyhow::{anyhow, bail, Context, Result};
use netns_tests::ofctl::n_packets;
use netns_tests::two_vms::{tap_ports, IP1, IP2, MAC1, MAC2, VM1, VM2};
use netns_tests::{require_program, require_root, unique, Netns, Scd, Vm};
use netns_tests::{scd_config_head, GATEWAY_MAC};
use openflow::text::parse_flow;
use openflow::wire::{
    decode, encode, frame_len, BadRequest, ErrorCode, FlowMod, FlowModCommand, FlowRemovedReason,
    GroupModFailed, Hello, Message, MultipartReplyBody, MultipartRequest, MultipartRequestBody,
    PacketInReason, PacketOut,
};
use openflow::{Field, FlowMatch, Instruction};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

const GW_MAC: &str = GATEWAY_MAC;
const OF_PORT: u16 = 6653;
const TARGET: &str = "tcp:127.0.0.1:6653";

struct Host {
    // Field order is drop order: stop scd before deleting the namespaces.
    scd: Scd,
    vm1: Vm,
    vm2: Vm,
    host: Netns,
}

fn config(tap1: &str, tap2: &str, openflow: &str) -> String {
    format!(
        "{}[openflow]\n{openflow}\n{}",
        scd_config_head("\"0x5c01\"", "of-host", false),
        tap_ports(tap1, tap2)
    )
}

/// One host with two VMs and no flows; `openflow` is the body of `[openflow]`.
fn setup(test: &str, openflow: &str) -> Result<Host> {
    let host = Netns::new(&unique(&format!("{test}-host-")))?;
    let (tap1, tap2) = (unique("sco"), unique("sco"));
    let scd = Scd::start(&host, &config(&tap1, &tap2, openflow), None)?;
    let vm1 = Vm::attach(&unique(&format!("{test}-v1-")), &host, &tap1, VM1)?;
    let vm2 = Vm::attach(&unique(&format!("{test}-v2-")), &host, &tap2, VM2)?;
    Ok(Host {
        scd,
        vm1,
        vm2,
        host,
    })
}

fn ready(test: &str) -> bool {
    require_root(test) && require_program(test, "ovs-ofctl")
}

/// `ovs-ofctl -O OpenFlow13 ARGS` inside the host namespace; `{}` is the switch.
fn ofctl(host: &Netns, args: &[&str]) -> Result<String> {
    netns_tests::ofctl::ofctl(host, TARGET, args)
}

fn ping(from: &Vm, to: &str, count: u32) -> bool {
    netns_tests::ping(&from.ns, to, count).is_ok_and(|p| p.answered)
}

fn flow_lines(dump: &str) -> usize {
    netns_tests::ofctl::flow_lines(dump).len()
}

fn route(dst: &str, mac: &str, port: u32) -> String {
    format!("priority=100,ip,nw_dst={dst},actions=set_field:{GW_MAC}->eth_src,set_field:{mac}->eth_dst,output:{port}")
}

fn mac_bytes(mac: &str) -> Vec<u8> {
    mac.split(':')
        .filter_map(|b| u8::from_str_radix(b, 16).ok())
        .collect()
}

fn ip_bytes(ip: &str) -> [u8; 4] {
    ip.parse::<std::net::Ipv4Addr>()
        .map(|a| a.octets())
        .unwrap_or_default()
}

/// An Ethernet/IPv4/UDP frame from VM 1 to VM 2 (UDP checksum 0 = none).
fn udp_frame(dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = mac_bytes(MAC2);
    f.extend(mac_bytes(GW_MAC));
    f.extend([0x08, 0x00]);
    let total = u16::try_from(20 + 8 + payload.len()).unwrap_or(u16::MAX);
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend(ip_bytes(IP1));
    ip.extend(ip_bytes(IP2));
    let sum = ip
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum::<u32>();
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = !u16::try_from((sum & 0xffff) + (sum >> 16)).unwrap_or(0);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend(ip);
    f.extend(7001u16.to_be_bytes());
    f.extend(dst_port.to_be_bytes());
    f.extend((total - 20).to_be_bytes());
    f.extend([0, 0]);
    f.extend(payload);
    f
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs ovs-ofctl packet-out with `actions` and returns what a UDP socket of VM 2
/// received (None after a second of silence).
fn packet_out_reaches_vm2(h: &Host, actions: &str, port: u16) -> Result<Option<Vec<u8>>> {
    let sock = h.vm2.ns.enter(move || UdpSocket::bind((IP2, port)))??;
    sock.set_read_timeout(Some(Duration::from_secs(2)))?;
    let payload = format!("packet-out via {actions}");
    let frame = udp_frame(port, payload.as_bytes());
    ofctl(
        &h.host,
        &[
            "packet-out",
            "{}",
            &format!(
                "in_port=CONTROLLER,packet={},actions={actions}",
                hex(&frame)
            ),
        ],
    )?;
    let mut buf = [0u8; 2048];
    match sock.recv(&mut buf) {
        Ok(n) => Ok(Some(buf[..n].to_vec())),
        Err(_) => Ok(None),
    }
}

#[test]
fn ovs_ofctl_programs_and_inspects_scd() -> Result<()> {
    if !ready("ovs_ofctl_programs_and_inspects_scd") {
        return Ok(());
    }
    let h = setup("ofctl", &format!("listen = \"ptcp:{OF_PORT}\""))?;
    let show = ofctl(&h.host, &["show", "{}"])?;
    assert!(show.contains("dpid:0000000000005c01"), "{show}");
    assert!(show.contains("n_tables:254"), "{show}");
    assert!(show.contains(&format!("1({})", h.vm1.ifname)), "{show}");
    assert!(show.contains(&format!("2({})", h.vm2.ifname)), "{show}");

    // No flows: the VMs cannot talk.
    assert!(!ping(&h.vm1, IP2, 1), "ping worked without flows");
    assert_eq!(flow_lines(&ofctl(&h.host, &["dump-flows", "{}"])?), 0);

    // add-flows from a file (one route) and add-flow (the other): now they can.
    let file = h.scd.dir.path().join("routes.flows");
    std::fs::write(&file, format!("# routes\n{}\n", route(IP1, MAC1, 1)))?;
    ofctl(
        &h.host,
        &["add-flows", "{}", file.to_str().unwrap_or_default()],
    )?;
    ofctl(&h.host, &["add-flow", "{}", &route(IP2, MAC2, 2)])?;
    let before = ofctl(&h.host, &["dump-flows", "{}"])?;
    assert_eq!(flow_lines(&before), 2, "{before}");
    assert!(
        ping(&h.vm1, IP2, 3),
        "ping failed with flows:\n{}",
        h.scd.log()
    );
    let after = ofctl(&h.host, &["dump-flows", "{}"])?;
    let needle = format!("nw_dst={IP2}");
    let moved = n_packets(&after, &needle)? - n_packets(&before, &needle)?;
    assert!(moved >= 3, "n_packets moved by {moved}:\n{before}\n{after}");
    assert!(n_packets(&after, &format!("nw_dst={IP1}"))? >= 3, "{after}");

    // mod-flows: drop towards VM 2, then route again.
    ofctl(
        &h.host,
        &["mod-flows", "{}", &format!("ip,nw_dst={IP2},actions=drop")],
    )?;
    let dump = ofctl(&h.host, &["dump-flows", "{}"])?;
    assert!(
        dump.lines()
            .any(|l| l.contains(&needle) && l.ends_with("actions=drop")),
        "{dump}"
    );
    assert!(!ping(&h.vm1, IP2, 1), "ping worked after mod-flows to drop");
    ofctl(&h.host, &["mod-flows", "{}", &route(IP2, MAC2, 2)])?;
    assert!(ping(&h.vm1, IP2, 1), "ping failed after mod-flows back");

    // Ports, port descriptions and tables.
    let ports = ofctl(&h.host, &["dump-ports", "{}"])?;
    assert!(ports.contains("port  1: rx pkts="), "{ports}");
    let rx1: u64 = ports
        .lines()
        .find(|l| l.contains("port  1: rx pkts="))
        .and_then(|l| l.split("rx pkts=").nth(1))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no rx pkts for port 1:\n{ports}"))?;
    assert!(rx1 >= 5, "{ports}");
    let desc = ofctl(&h.host, &["dump-ports-desc", "{}"])?;
    assert!(
        desc.contains(&format!("2({}): addr:", h.vm2.ifname)),
        "{desc}"
    );
    let tables = ofctl(&h.host, &["dump-tables", "{}"])?;
    assert!(tables.contains("table 0:"), "{tables}");
    assert!(tables.contains("active=2"), "{tables}");

    // packet-out straight to port 2, and through the tables (which route it).
    let got = packet_out_reaches_vm2(&h, "output:2", 7000)?;
    assert_eq!(got.as_deref(), Some(&b"packet-out via output:2"[..]));
    let got = packet_out_reaches_vm2(&h, "TABLE", 7001)?;
    assert_eq!(got.as_deref(), Some(&b"packet-out via TABLE"[..]));
    assert!(h.scd.metric("scd_openflow_packet_outs_total", &[])? >= 2);

    // del-flows: the VMs are cut off again.
    ofctl(&h.host, &["del-flows", "{}"])?;
    assert_eq!(flow_lines(&ofctl(&h.host, &["dump-flows", "{}"])?), 0);
    assert!(!ping(&h.vm1, IP2, 1), "ping worked after del-flows");
    Ok(())
}

/// A raw OpenFlow connection from the test (inside the host namespace).
struct Raw {
    stream: TcpStream,
    inbox: Vec<u8>,
}

impl Raw {
    fn from(stream: TcpStream) -> Result<Raw> {
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        let mut raw = Raw {
            stream,
            inbox: Vec::new(),
        };
        raw.send(&Message::Hello(Hello::of13()), 1)?;
        match raw.recv()? {
            Some((_, Message::Hello(h))) if h.accepts_of13() => Ok(raw),
            other => bail!("expected a hello, got {other:?}"),
        }
    }

    fn connect(host: &Netns) -> Result<Raw> {
        let stream = host.enter(|| TcpStream::connect(("127.0.0.1", OF_PORT)))??;
        Raw::from(stream)
    }

    fn send(&mut self, m: &Message, xid: u32) -> Result<()> {
        self.stream.write_all(&encode(m, xid)?)?;
        Ok(())
    }

    /// The next message, or None when the peer closed.
    fn recv(&mut self) -> Result<Option<(u32, Message)>> {
        loop {
            if let Some(n) = frame_len(&self.inbox).map_err(|e| anyhow!("{e}"))? {
                let frame: Vec<u8> = self.inbox.drain(..n).collect();
                return Ok(Some(decode(&frame).map_err(|e| anyhow!("{e}"))?));
            }
            let mut chunk = [0u8; 65_536];
            // A socket read with a timeout is never restarted after a signal, and
            // fails with EINTR even after a mere stop and continue (signal(7)):
            // that says nothing about scd, so read again.
            let n = match self.stream.read(&mut chunk) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                read => read.context("read from scd")?,
            };
            if n == 0 {
                return Ok(None);
            }
            self.inbox.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next message that is not an echo request (those are answered).
    fn next(&mut self) -> Result<(u32, Message)> {
        loop {
            match self.recv()? {
                None => bail!("scd closed the connection"),
                Some((xid, Message::EchoRequest(d))) => self.send(&Message::EchoReply(d), xid)?,
                Some(m) => return Ok(m),
            }
        }
    }

    /// The next reply: packet-ins and flow-removed messages (asynchronous, e.g.
    /// for the VMs' IPv6 neighbour discovery) are skipped.
    fn reply(&mut self) -> Result<(u32, Message)> {
        loop {
            match self.next()? {
                (_, Message::PacketIn(_) | Message::FlowRemoved(_)) => continue,
                m => return Ok(m),
            }
        }
    }

    fn barrier(&mut self, xid: u32) -> Result<()> {
        self.send(&Message::BarrierRequest, xid)?;
        match self.reply()? {
            (x, Message::BarrierReply) if x == xid => Ok(()),
            other => bail!("expected the barrier reply, got {other:?}"),
        }
    }

    fn flow_count(&mut self, xid: u32) -> Result<u32> {
        self.send(
            &Message::MultipartRequest(MultipartRequest {
                flags: 0,
                body: MultipartRequestBody::Aggregate(openflow::wire::FlowStatsRequest::all()),
            }),
            xid,
        )?;
        match self.reply()? {
            (_, Message::MultipartReply(r)) => match r.body {
                MultipartReplyBody::Aggregate(a) => Ok(a.flow_count),
                other => bail!("expected aggregate stats, got {other:?}"),
            },
            other => bail!("expected aggregate stats, got {other:?}"),
        }
    }
}

/// Packets scd sent out of port 2 so far.
fn tx_port2(h: &Host) -> Result<u64> {
    h.scd
        .metric("scd_port_packets_total", &["port=\"2\"", "dir=\"tx\""])
}

#[test]
fn an_all_group_sends_copies_with_different_changes() -> Result<()> {
    if !ready("an_all_group_sends_copies_with_different_changes") {
        return Ok(());
    }
    let h = setup("ofgrp", &format!("listen = \"ptcp:{OF_PORT}\""))?;
    ofctl(&h.host, &["add-flow", "{}", &route(IP1, MAC1, 1)])?;
    // Two copies towards VM 2: one as routed, one rewritten to another address
    // (which VM 2's kernel ignores), so only the group's first bucket is answered.
    let to_vm2 = format!("set_field:{GW_MAC}->eth_src,set_field:{MAC2}->eth_dst");
    let group = format!(
        "group_id=1,type=all,bucket=actions={to_vm2},output:2,\
         bucket=actions={to_vm2},set_field:100.64.1.99->ip_dst,output:2"
    );
    // A flow may not name a group that does not exist yet.
    let early = h
        .host
        .command("ovs-ofctl")
        .args(["-O", "OpenFlow13", "--timeout=20", "add-flow", TARGET])
        .arg(format!("priority=100,ip,nw_dst={IP2},actions=group:1"))
        .output()?;
    assert!(
        !early.status.success(),
        "a flow to a missing group was accepted"
    );
    ofctl(&h.host, &["add-group", "{}", &group])?;
    ofctl(
        &h.host,
        &[
            "add-flow",
            "{}",
            &format!("priority=100,ip,nw_dst={IP2},actions=group:1"),
        ],
    )?;
    let groups = ofctl(&h.host, &["dump-groups", "{}"])?;
    assert!(
        groups.lines().any(|l| l.trim_start()
            == format!(
                "group_id=1,type=all,bucket=actions={to_vm2},output:2,\
                 bucket=actions={to_vm2},set_field:100.64.1.99->ip_dst,output:2"
            )),
        "{groups}"
    );
    let before = tx_port2(&h)?;
    assert!(
        ping(&h.vm1, IP2, 3),
        "ping through the group failed:\n{}",
        h.scd.log()
    );
    let sent = tx_port2(&h)? - before;
    assert!(
        sent >= 6,
        "{sent} packets out of port 2 for 3 echo requests"
    );

    // Deleting the group deletes the flow that runs it.
    ofctl(&h.host, &["del-groups", "{}", "group_id=1"])?;
    let dump = ofctl(&h.host, &["dump-flows", "{}"])?;
    assert_eq!(flow_lines(&dump), 1, "{dump}");
    assert!(!ping(&h.vm1, IP2, 1), "ping worked after the group went");
    Ok(())
}

fn in_port(m: &FlowMatch) -> Option<u128> {
    m.get(Field::InPort).map(|(v, _)| v)
}

fn error_of(m: &(u32, Message)) -> Option<(u32, ErrorCode)> {
    match m {
        (xid, Message::Error(e)) => Some((*xid, e.code)),
        _ => None,
    }
}

#[test]
fn malformed_and_unsupported_messages_get_errors_and_everything_survives() -> Result<()> {
    if !ready("malformed_and_unsupported_messages_get_errors") {
        return Ok(());
    }
    let h = setup("oferr", &format!("listen = \"ptcp:{OF_PORT}\""))?;
    ofctl(&h.host, &["add-flow", "{}", &route(IP1, MAC1, 1)])?;
    ofctl(&h.host, &["add-flow", "{}", &route(IP2, MAC2, 2)])?;
    let mut raw = Raw::connect(&h.host)?;

    // An unsupported feature: a group-mod (type 15) adding group 1 of type select.
    let group_mod = [4u8, 15, 0, 16, 0, 0, 0, 21, 0, 0, 1, 0, 0, 0, 0, 1];
    raw.stream.write_all(&group_mod)?;
    let reply = raw.next()?;
    assert_eq!(
        error_of(&reply),
        Some((21, ErrorCode::GroupModFailed(GroupModFailed::BadType))),
        "{reply:?}"
    );
    // A malformed message: a flow-mod cut short (header length says 24 bytes).
    let mut short = encode(
        &Message::FlowMod(FlowMod::add(parse_flow("actions=drop")?)),
        22,
    )?;
    short.truncate(24);
    short[2..4].copy_from_slice(&24u16.to_be_bytes());
    raw.stream.write_all(&short)?;
    let reply = raw.next()?;
    assert_eq!(
        error_of(&reply),
        Some((22, ErrorCode::BadRequest(BadRequest::BadLen))),
        "{reply:?}"
    );
    // The error carries the offending bytes.
    if let (_, Message::Error(e)) = &reply {
        assert_eq!(e.data, short);
    }
    // The connection still works, the tables are intact.
    raw.barrier(23)?;
    assert_eq!(raw.flow_count(24)?, 2);
    let dump = ofctl(&h.host, &["dump-flows", "{}"])?;
    assert_eq!(flow_lines(&dump), 2, "{dump}");
    assert!(ping(&h.vm1, IP2, 1), "forwarding broke");

    // A framing error (header length 4) closes that connection only.
    let mut bad = Raw::connect(&h.host)?;
    bad.stream.write_all(&[4, 2, 0, 4, 0, 0, 0, 9])?;
    assert!(
        bad.recv()?.is_none(),
        "scd kept a desynchronised stream open"
    );
    raw.barrier(25)?;
    assert_eq!(raw.flow_count(26)?, 2);
    assert!(h.scd.metric("scd_openflow_errors_sent_total", &[])? >= 2);
    Ok(())
}

#[test]
fn ten_thousand_flow_mods_then_a_barrier() -> Result<()> {
    if !ready("ten_thousand_flow_mods_then_a_barrier") {
        return Ok(());
    }
    let h = setup("of10k", &format!("listen = \"ptcp:{OF_PORT}\""))?;
    let mut raw = Raw::connect(&h.host)?;
    const N: u32 = 10_000;
    let mut bytes = Vec::with_capacity(1 << 20);
    for i in 0..N {
        let a = 0x0a00_0000u32 + i;
        let text = format!(
            "priority=100,ip,nw_dst={},actions=output:2",
            std::net::Ipv4Addr::from(a)
        );
        let m = Message::FlowMod(FlowMod::add(parse_flow(&text)?));
        openflow::wire::encode_into(&m, 1000 + i, &mut bytes)?;
    }
    openflow::wire::encode_into(&Message::BarrierRequest, 99, &mut bytes)?;
    // Write from another thread so errors coming back could never deadlock us.
    let mut writer = raw.stream.try_clone()?;
    let start = Instant::now();
    let sender = std::thread::spawn(move || writer.write_all(&bytes));
    let mut errors = 0;
    loop {
        match raw.next()? {
            (99, Message::BarrierReply) => break,
            (_, Message::Error(_)) => errors += 1,
            other => bail!("unexpected {other:?}"),
        }
    }
    let elapsed = start.elapsed();
    sender.join().map_err(|_| anyhow!("writer panicked"))??;
    assert_eq!(errors, 0);
    assert_eq!(raw.flow_count(2)?, N);
    assert_eq!(h.scd.metric("scd_table_flows", &[])?, u64::from(N));
    println!(
        "scd applied {N} flow-mods + barrier in {:.3} s: {:.0} flow-mods/s (debug build)",
        elapsed.as_secs_f64(),
        f64::from(N) / elapsed.as_secs_f64()
    );
    Ok(())
}

/// Waits (15 s at most) for scd to connect to the test's controller listener.
fn accept(listener: &TcpListener, scd: &Scd) -> Result<Raw> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => bail!("scd did not connect: {e}\n{}", scd.log()),
        }
    };
    stream.set_nonblocking(false)?;
    Raw::from(stream)
}

#[test]
fn a_controller_gets_packet_ins_and_injects_packet_outs() -> Result<()> {
    if !ready("a_controller_gets_packet_ins_and_injects_packet_outs") {
        return Ok(());
    }
    // The controller listens in the host namespace before scd starts.
    let host_name = unique("ofctl-host-");
    let host = Netns::new(&host_name)?;
    let listener = host.enter(|| TcpListener::bind("127.0.0.1:0"))??;
    let port = listener.local_addr()?.port();
    let (tap1, tap2) = (unique("sco"), unique("sco"));
    let cfg = config(
        &tap1,
        &tap2,
        &format!("controllers = [\"tcp:127.0.0.1:{port}\"]\nfail_mode = \"secure\""),
    );
    let scd = Scd::start(&host, &cfg, None)?;
    let h = Host {
        scd,
        vm1: Vm::attach(&unique("ofctl-v1-"), &host, &tap1, VM1)?,
        vm2: Vm::attach(&unique("ofctl-v2-"), &host, &tap2, VM2)?,
        host,
    };
    listener.set_nonblocking(true)?;
    let mut ctl = accept(&listener, &h.scd)?;
    ctl.send(&Message::FeaturesRequest, 2)?;
    match ctl.reply()? {
        (2, Message::FeaturesReply(f)) => assert_eq!(f.datapath_id, 0x5c01),
        other => bail!("expected features, got {other:?}"),
    }
    ctl.send(
        &Message::FlowMod(FlowMod::add(parse_flow(
            "priority=0,actions=CONTROLLER:65535",
        )?)),
        3,
    )?;
    ctl.barrier(4)?;

    // VM 1 pings VM 2: the request misses into the controller.
    let mut pinger = h
        .vm1
        .ns
        .command("ping")
        .args(["-c", "20", "-i", "0.2", "-W", "1", IP2])
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let result = (|| -> Result<()> {
        let icmp = |d: &[u8], ty: u8, src: &str, dst: &str| {
            d.len() > 34
                && d[12..14] == [0x08, 0x00]
                && d[23] == 1
                && d[26..30] == ip_bytes(src)
                && d[30..34] == ip_bytes(dst)
                && d[34] == ty
        };
        let request = loop {
            match ctl.next()? {
                (_, Message::PacketIn(p)) if icmp(&p.data, 8, IP1, IP2) => break p,
                (_, Message::PacketIn(_)) => continue,
                other => bail!("unexpected {other:?}"),
            }
        };
        assert_eq!(in_port(&request.matcher), Some(1), "{request:?}");
        assert_eq!(request.reason, PacketInReason::NoMatch);
        assert_eq!(request.buffer_id, None);
        assert_eq!(usize::from(request.total_len), request.data.len());
        assert_eq!(request.data[6..12], mac_bytes(MAC1)[..]);

        // Route it by hand: the frame reaches VM 2, whose echo reply comes back in.
        let actions = parse_flow(&format!(
            "actions=set_field:{GW_MAC}->eth_src,set_field:{MAC2}->eth_dst,output:2"
        ))?
        .instructions;
        let Some(Instruction::ApplyActions(actions)) = actions.first().cloned() else {
            bail!("no actions parsed");
        };
        ctl.send(
            &Message::PacketOut(PacketOut {
                buffer_id: None,
                in_port: openflow::flow::port::CONTROLLER,
                actions,
                data: request.data.clone(),
            }),
            5,
        )?;
        loop {
            match ctl.next()? {
                (_, Message::PacketIn(p)) if icmp(&p.data, 0, IP2, IP1) => {
                    assert_eq!(in_port(&p.matcher), Some(2), "{p:?}");
                    // The reply answers the very request we injected.
                    assert_eq!(p.data[38..42], request.data[38..42]);
                    break;
                }
                (_, Message::PacketIn(_)) => continue,
                (_, Message::Error(e)) => bail!("packet-out refused: {e:?}"),
                other => bail!("unexpected {other:?}"),
            }
        }
        Ok(())
    })();
    let _ = pinger.kill();
    let _ = pinger.wait();
    result?;
    assert!(h.scd.metric("scd_openflow_packet_ins_total", &[])? >= 2);
    assert_eq!(h.scd.metric("scd_openflow_connections", &[])?, 1);

    // The controller goes away: scd keeps its tables (fail mode secure) and
    // reconnects after its backoff.
    drop(ctl);
    let mut ctl = accept(&listener, &h.scd)?;
    assert_eq!(ctl.flow_count(9)?, 1, "the table-miss flow did not survive");

    // An entry with send_flow_rem and a hard timeout: its expiry is reported.
    ctl.send(
        &Message::FlowMod(FlowMod::add(parse_flow(&format!(
            "cookie=0x77,send_flow_rem,hard_timeout=1,priority=5,ip,nw_dst={IP2},actions=drop"
        ))?)),
        10,
    )?;
    ctl.barrier(11)?;
    let removed = loop {
        match ctl.next()? {
            (_, Message::FlowRemoved(r)) => break r,
            (_, Message::PacketIn(_)) => continue,
            other => bail!("expected flow-removed, got {other:?}"),
        }
    };
    assert_eq!(removed.cookie, 0x77);
    assert_eq!(removed.reason, FlowRemovedReason::HardTimeout);
    assert!(removed.duration_sec >= 1, "{removed:?}");
    // A delete of everything is answered by nothing but the barrier.
    let mut del = FlowMod::add(parse_flow("actions=drop")?);
    del.command = FlowModCommand::Delete;
    del.spec.table_id = openflow::wire::TABLE_ALL;
    ctl.send(&Message::FlowMod(del), 6)?;
    ctl.barrier(7)?;
    assert_eq!(ctl.flow_count(8)?, 0);
    Ok(())
}
