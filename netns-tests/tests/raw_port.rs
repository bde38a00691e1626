//! Raw ports: `scd` serving two namespace "VMs" through `AF_PACKET` sockets on the
//! host ends of their veth pairs (`type = "raw"`), as it serves a QEMU guest through
//! the host side of the TAP that QEMU owns. ARP, ping, a TCP transfer checked end to
//! end and a UDP burst go through the flow tables. The VMs keep transmit checksum
//! offload on, so the switch sees unfinished TCP/UDP checksums and must hand them on
//! behind their virtio-net header (a switch that dropped the header would pass ping
//! and break TCP; `checksums.rs` checks what the receiving kernel makes of them). The switch's own sends
//! must not come back to it as input, and a raw port on a missing interface is
//! refused at start with a clear error. With segmentation offload on, the VMs hand
//! over TCP super-frames, which cross the switch whole. A tagged trunk works: the
//! kernel strips 802.1Q tags on receive, and the switch puts them back before its
//! tables see the frame.

use anyhow::Result;
use netns_tests::{require_root, unique, Netns, Scd, Vm, VmAddress};
use netns_tests::{scd_config_head, GATEWAY_MAC};
use std::net::UdpSocket;
use std::time::Duration;

const GW_MAC: &str = GATEWAY_MAC;
const MAC1: &str = "02:00:00:00:07:01";
const MAC2: &str = "02:00:00:00:07:02";
const IP1: &str = "100.64.7.1";
const IP2: &str = "100.64.7.2";
const STREAM_BYTES: u64 = 16 * 1024 * 1024;

struct Setup {
    // Field order is drop order: stop scd before deleting the namespaces.
    scd: Scd,
    vm1: Vm,
    vm2: Vm,
    _host: Netns,
}

fn config(if1: &str, if2: &str, host_ns: &str) -> String {
    // Port 2 names the namespace explicitly: it is opened from inside it.
    format!(
        r#"{}[[port]]
number = 1
name = "{if1}"
type = "raw"
[[port]]
number = 2
name = "{if2}"
type = "raw"
netns = "{host_ns}"
create = false
"#,
        scd_config_head("7", "raw-host", true)
    )
}

fn flows() -> String {
    let route = |dst: &str, mac: &str, port: u32| {
        format!("priority=100,ip,nw_dst={dst},actions=set_field:{GW_MAC}->eth_src,set_field:{mac}->eth_dst,output:{port}\n")
    };
    route(IP1, MAC1, 1) + &route(IP2, MAC2, 2)
}

fn setup(test: &str) -> Result<Setup> {
    let host = Netns::new(&unique(&format!("{test}-host-")))?;
    let (if1, if2) = (unique("scv"), unique("scv"));
    let vm1 = Vm::with_veth(
        &unique(&format!("{test}-vm1-")),
        &host,
        &if1,
        VmAddress::overlay(MAC1, IP1),
        1420,
    )?;
    let vm2 = Vm::with_veth(
        &unique(&format!("{test}-vm2-")),
        &host,
        &if2,
        VmAddress::overlay(MAC2, IP2),
        1420,
    )?;
    let scd = Scd::start(&host, &config(&if1, &if2, host.name()), Some(&flows()))?;
    Ok(Setup {
        scd,
        vm1,
        vm2,
        _host: host,
    })
}

fn ping(vm: &Vm, ip: &str) -> Result<bool> {
    Ok(netns_tests::ping(&vm.ns, ip, 3)?.answered)
}

#[test]
fn raw_ports_carry_arp_ping_tcp_and_udp_with_checksums_finished() -> Result<()> {
    if !require_root("raw_ports_carry_arp_ping_tcp_and_udp_with_checksums_finished") {
        return Ok(());
    }
    let s = setup("rawport")?;
    // The premise: the senders leave checksums to offload.
    let features = netns_tests::run(s.vm1.ns.command("ethtool").args(["-k", &s.vm1.ifname]))?;
    assert!(
        features.contains("tx-checksumming: on"),
        "transmit checksum offload stays on: {features}"
    );

    assert!(
        ping(&s.vm1, IP2)?,
        "vm1 pings vm2 through two raw ports\n{}",
        s.scd.log()
    );
    assert!(
        s.scd.metric("scd_arp_replies_total", &[])? >= 1,
        "ARP answered on the raw port"
    );

    let t = netns_tests::tcp_transfer(&s.vm1.ns, &s.vm2.ns, IP2.parse()?, 5101, STREAM_BYTES)?;
    assert_eq!(t.received, STREAM_BYTES, "every byte arrives");
    assert_eq!(t.sent_hash, t.received_hash, "the stream arrives intact");

    // UDP with the checksum left to offload: a datagram whose checksum lost its
    // virtio-net header on the way would be dropped, so every one must arrive.
    let rx = s.vm2.ns.enter(move || UdpSocket::bind((IP2, 6100)))??;
    rx.set_read_timeout(Some(Duration::from_millis(500)))?;
    netns_tests::big_receive_buffer(&rx, 8 << 20)?;
    const DATAGRAMS: u32 = 500;
    s.vm1.ns.enter(move || -> Result<()> {
        let tx = UdpSocket::bind((IP1, 0))?;
        let mut payload = vec![0x5au8; 1200];
        for i in 0..DATAGRAMS {
            payload[..4].copy_from_slice(&i.to_be_bytes());
            tx.send_to(&payload, (IP2, 6100))?;
            if i % 50 == 49 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        Ok(())
    })??;
    let mut seen = std::collections::HashSet::new();
    let mut buf = [0u8; 2048];
    while let Ok(n) = rx.recv(&mut buf) {
        if n == 1200 && buf[4..n].iter().all(|b| *b == 0x5a) {
            seen.insert(u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]));
        }
    }
    assert_eq!(
        seen.len(),
        usize::try_from(DATAGRAMS)?,
        "every datagram arrives"
    );

    // Nothing the switch sent came back to it as input: every frame received on a
    // port is one the other side sent, so the ports' counters stay in step.
    let m = s.scd.metrics()?;
    let sum = |name: &str, dir: &str| -> u64 {
        m.iter()
            .filter(|(k, _)| k.starts_with(name) && k.contains(&format!("dir=\"{dir}\"")))
            .map(|(_, v)| *v)
            .sum()
    };
    let (rx_packets, tx_packets) = (
        sum("scd_port_packets_total", "rx"),
        sum("scd_port_packets_total", "tx"),
    );
    eprintln!(
        "raw ports: {rx_packets} frames in, {tx_packets} out, {} TCP bytes and {DATAGRAMS} datagrams intact",
        STREAM_BYTES
    );
    assert!(
        rx_packets < tx_packets + 100,
        "no echo of our own sends: rx {rx_packets}, tx {tx_packets}"
    );
    assert_eq!(
        s.scd.metric("scd_port_errors_total", &[])?,
        0,
        "no refused frames"
    );
    Ok(())
}

#[test]
fn raw_ports_carry_tso_super_frames_whole() -> Result<()> {
    if !require_root("raw_ports_carry_tso_super_frames_whole") {
        return Ok(());
    }
    let s = setup("rawtso")?;
    for vm in [&s.vm1, &s.vm2] {
        netns_tests::run(
            vm.ns
                .command("ethtool")
                .args(["-K", &vm.ifname, "tso", "on", "gso", "on"]),
        )?;
    }
    let t = netns_tests::tcp_transfer(&s.vm1.ns, &s.vm2.ns, IP2.parse()?, 5102, STREAM_BYTES)?;
    assert_eq!(t.received, STREAM_BYTES, "every byte arrives");
    assert_eq!(t.sent_hash, t.received_hash, "the stream arrives intact");
    // 16 MiB in 1420-byte frames would be over 11,000 frames; super-frames are
    // counted once each.
    let frames = s
        .scd
        .metric("scd_port_packets_total", &["port=\"2\"", "dir=\"tx\""])?;
    assert!(
        frames < STREAM_BYTES / 1420 / 2,
        "super-frames crossed whole: {frames} frames for {STREAM_BYTES} bytes"
    );
    assert_eq!(
        s.scd.metric("scd_port_errors_total", &[])?,
        0,
        "no refused frames"
    );
    Ok(())
}

/// An Ethernet frame from `MAC1` to `MAC2` tagged with VLAN `vid`, carrying an
/// experimental EtherType so no IP stack takes it.
fn tagged_frame(vid: u16, seq: u16) -> Vec<u8> {
    let mac = |text: &str| -> Vec<u8> {
        text.split(':')
            .map(|b| u8::from_str_radix(b, 16).expect("hex"))
            .collect()
    };
    let mut f = mac(MAC2);
    f.extend(mac(MAC1));
    f.extend(0x8100u16.to_be_bytes());
    f.extend(vid.to_be_bytes());
    f.extend(EXPERIMENTAL_ETHERTYPE.to_be_bytes());
    f.extend(seq.to_be_bytes());
    f.resize(64, 0x5a);
    f
}

/// IEEE 802 local experimental EtherType 1.
const EXPERIMENTAL_ETHERTYPE: u16 = 0x88b5;

#[test]
fn tagged_frames_on_raw_ports_keep_their_vlan_tag() -> Result<()> {
    if !require_root("tagged_frames_on_raw_ports_keep_their_vlan_tag") {
        return Ok(());
    }
    let s = setup("rawvlan")?;
    // A trunk: VLAN 10 crosses to port 2; the same frames untagged would be
    // dropped. The kernel strips the tag on receive, so only a switch that puts it
    // back forwards them.
    s.scd.reload_flows(
        &(flows()
            + "priority=300,in_port=1,dl_vlan=10,actions=output:2\n"
            + "priority=200,in_port=1,dl_type=0x88b5,actions=drop\n"),
        4,
    )?;
    let ifname = s.vm2.ifname.clone();
    let rx = s.vm2.ns.enter(move || {
        netns_tests::packet::packet_socket(&ifname, libc::SOCK_RAW, EXPERIMENTAL_ETHERTYPE)
    })??;
    let ifname = s.vm1.ifname.clone();
    const FRAMES: u16 = 20;
    s.vm1.ns.enter(move || -> Result<()> {
        let tx = netns_tests::packet::packet_socket(&ifname, libc::SOCK_RAW, 0x0003)?;
        for seq in 0..FRAMES {
            netns_tests::packet::send_frame(&tx, &tagged_frame(10, seq))?;
        }
        Ok(())
    })??;
    let mut arrived = std::collections::BTreeSet::new();
    let mut buf = [0u8; 2048];
    let waited =
        netns_tests::wait_until(Duration::from_secs(20), "every tagged frame at vm2", || {
            while let Some((n, _)) = netns_tests::packet::recv_frame(&rx, &mut buf) {
                // The receiving kernel strips the tag again: the sequence number
                // follows the inner EtherType.
                if n >= 16 {
                    arrived.insert(u16::from_be_bytes([buf[14], buf[15]]));
                }
            }
            Ok(arrived.len() == usize::from(FRAMES))
        });
    if let Err(e) = waited {
        anyhow::bail!(
            "{e}: {} of {FRAMES} arrived\n{}",
            arrived.len(),
            s.scd.log()
        );
    }
    let tagged = s.scd.metric("scd_flow_packets_total", &["dl_vlan=10"])?;
    assert_eq!(tagged, u64::from(FRAMES), "the VLAN 10 flow carried them");
    // Untagged overlay traffic still works beside the trunk.
    assert!(ping(&s.vm1, IP2)?, "untagged ping");
    Ok(())
}

#[test]
fn a_raw_port_on_a_missing_interface_is_refused_at_start() -> Result<()> {
    if !require_root("a_raw_port_on_a_missing_interface_is_refused_at_start") {
        return Ok(());
    }
    let host = Netns::new(&unique("rawmiss-host-"))?;
    let err = Scd::start(
        &host,
        &config("scvnone0", "scvnone1", host.name()),
        Some(&flows()),
    )
    .expect_err("scd must refuse a raw port without its interface");
    let text = format!("{err:#}");
    assert!(
        text.contains("port 1 (scvnone0)") && text.contains("no interface `scvnone0`"),
        "{text}"
    );
    Ok(())
}
