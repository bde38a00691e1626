//! One host, two VMs, one `scd`: real TCP and UDP between VM namespaces through the
//! switch, governed only by its flow tables; ARP answered on the host; malformed
//! frames counted and dropped while the switch keeps forwarding.

use anyhow::{Context, Result};
use netns_tests::two_vms::{tap_ports, IP1, IP2, MAC1, MAC2, VM1, VM2};
use netns_tests::{
    fill_pseudo_random, require_root, tcp_transfer, udp_count, unique, wait_until, Burst, Netns,
    Scd, Vm,
};
use netns_tests::{scd_config_head, GATEWAY_MAC};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

const GW_MAC: &str = GATEWAY_MAC;
const UDP_PORT: u16 = 6000;
/// [`GW_MAC`] as bytes: the source of the host's ARP replies.
const GW_MAC_BYTES: [u8; 6] = [2, 0x5c, 0, 0, 0, 1];

struct OneHost {
    // Field order is drop order: stop scd before deleting the namespaces.
    scd: Scd,
    vm1: Vm,
    vm2: Vm,
    _host: Netns,
}

fn config(tap1: &str, tap2: &str) -> String {
    scd_config_head("1", "one-host", true) + &tap_ports(tap1, tap2)
}

/// Routed delivery: rewrite both MACs the way the overlay does, then output.
fn route(dst: &str, mac: &str, port: u32) -> String {
    format!("priority=100,ip,nw_dst={dst},actions=set_field:{GW_MAC}->eth_src,set_field:{mac}->eth_dst,output:{port}\n")
}

fn udp_flow() -> String {
    format!("priority=200,udp,nw_dst={IP2},tp_dst={UDP_PORT},actions=set_field:{GW_MAC}->eth_src,set_field:{MAC2}->eth_dst,output:2\n")
}

fn all_flows() -> String {
    format!(
        "{}{}{}",
        route(IP1, MAC1, 1),
        route(IP2, MAC2, 2),
        udp_flow()
    )
}

fn setup(test: &str) -> Result<OneHost> {
    setup_as(test, None)
}

/// [`setup`], with `scd` switching to `user` once its TAPs are open.
fn setup_as(test: &str, user: Option<&str>) -> Result<OneHost> {
    let host = Netns::new(&unique(&format!("{test}-host-")))?;
    let tap1 = unique("sct");
    let tap2 = unique("sct");
    let (config, flows) = (config(&tap1, &tap2), all_flows());
    let scd = match user {
        None => Scd::start(&host, &config, Some(&flows))?,
        Some(user) => Scd::start_as(&host, &config, Some(&flows), user)?,
    };
    let vm1 = Vm::attach(&unique(&format!("{test}-vm1-")), &host, &tap1, VM1)?;
    let vm2 = Vm::attach(&unique(&format!("{test}-vm2-")), &host, &tap2, VM2)?;
    Ok(OneHost {
        scd,
        vm1,
        vm2,
        _host: host,
    })
}

const STREAM_BYTES: u64 = 100 * 1024 * 1024;

/// Sends `n` numbered datagrams of `size` bytes from vm1 to vm2; returns how many arrived.
fn udp_burst(h: &OneHost, n: u32, size: usize) -> Result<u32> {
    // Paced so a full TAP queue is not what we measure.
    let burst = Burst {
        count: n,
        size,
        every: 50,
        pause: Duration::from_millis(2),
    };
    udp_count(
        &h.vm1.ns,
        IP1.parse()?,
        &h.vm2.ns,
        IP2.parse()?,
        UDP_PORT,
        burst,
    )
}

#[test]
fn vms_talk_tcp_and_udp_only_through_flows_and_counters_match() -> Result<()> {
    if !require_root("vms_talk_tcp_and_udp_only_through_flows_and_counters_match") {
        return Ok(());
    }
    let h = setup("swtcp")?;

    let t = tcp_transfer(&h.vm1.ns, &h.vm2.ns, IP2.parse()?, 5001, STREAM_BYTES)?;
    assert_eq!(t.received, STREAM_BYTES, "every byte arrives");
    assert_eq!(t.sent_hash, t.received_hash, "the stream arrives intact");

    const DATAGRAMS: u32 = 1000;
    const SIZE: usize = 1000;
    let arrived = udp_burst(&h, DATAGRAMS, SIZE)?;
    assert_eq!(
        arrived, DATAGRAMS,
        "every datagram arrives over a local switch"
    );
    let udp_match = format!("match=\"udp,nw_dst={IP2},tp_dst={UDP_PORT}\"");
    let udp_packets = h.scd.metric("scd_flow_packets_total", &[&udp_match])?;
    let udp_bytes = h.scd.metric("scd_flow_bytes_total", &[&udp_match])?;
    assert_eq!(
        udp_packets,
        u64::from(DATAGRAMS),
        "the UDP flow counted each datagram once"
    );
    assert_eq!(
        udp_bytes,
        u64::from(DATAGRAMS) * (14 + 20 + 8 + SIZE as u64)
    );
    let to_vm2 = h
        .scd
        .metric("scd_flow_bytes_total", &["match=\"ip,nw_dst=100.64.1.2\""])?;
    assert!(
        to_vm2 >= STREAM_BYTES,
        "the TCP flow carried the stream: {to_vm2} bytes"
    );
    assert_eq!(h.scd.metric("scd_malformed_total", &[])?, 0);

    // Remove the flows towards vm2: TCP and UDP stop.
    h.scd.reload_flows(&route(IP1, MAC1, 1), 1)?;
    let dropped_before = h.scd.metric("scd_no_output_total", &[])?;
    let refused = h.vm1.ns.enter(|| {
        TcpStream::connect_timeout(
            &(IP2.parse::<std::net::IpAddr>().expect("ip"), 5002).into(),
            Duration::from_secs(2),
        )
    })?;
    assert!(refused.is_err(), "no flow, no connection");
    assert_eq!(udp_burst(&h, 100, 100)?, 0, "no flow, no datagram");
    let dropped_after = h.scd.metric("scd_no_output_total", &[])?;
    assert!(
        dropped_after >= dropped_before + 100,
        "the switch dropped them: {dropped_before} -> {dropped_after}"
    );

    // Put them back: traffic flows again.
    h.scd.reload_flows(&all_flows(), 3)?;
    assert_eq!(udp_burst(&h, 100, 100)?, 100);
    Ok(())
}

/// The Ethernet sources of the frames waiting on a packet socket.
fn frames_from(fd: &OwnedFd) -> Vec<[u8; 6]> {
    let mut buf = [0u8; 2048];
    let mut sources = Vec::new();
    while let Some((n, _)) = netns_tests::packet::recv_frame(fd, &mut buf) {
        if let Some(src) = buf.get(6..12).filter(|_| n >= 12) {
            sources.extend(<[u8; 6]>::try_from(src));
        }
    }
    sources
}

/// The fields of `/proc/PID/task/TID/status` for every thread of `pid`.
fn thread_statuses(pid: u32) -> Result<Vec<std::collections::HashMap<String, String>>> {
    let mut all = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let text = std::fs::read_to_string(task?.path().join("status"))?;
        all.push(
            text.lines()
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.to_string(), v.trim().to_string()))
                .collect(),
        );
    }
    Ok(all)
}

#[test]
fn scd_as_nobody_keeps_only_net_admin_and_net_raw_in_every_thread_and_forwards() -> Result<()> {
    let test = "scd_as_nobody_keeps_only_net_admin_and_net_raw_in_every_thread_and_forwards";
    if !require_root(test) {
        return Ok(());
    }
    let h = setup_as("swpriv", Some("nobody"))?;
    // CAP_NET_ADMIN is bit 12 and CAP_NET_RAW bit 13.
    const NET_ADMIN_AND_RAW: &str = "0000000000003000";
    let threads = thread_statuses(h.scd.pid())?;
    assert!(
        threads.len() >= 3,
        "the switch, OpenFlow/metrics and signal threads run: {} threads",
        threads.len()
    );
    for t in &threads {
        let name = &t["Name"];
        assert_eq!(
            t["Uid"], "65534\t65534\t65534\t65534",
            "thread {name}: uid nobody"
        );
        for set in ["CapEff", "CapPrm", "CapBnd"] {
            assert_eq!(t[set], NET_ADMIN_AND_RAW, "thread {name}: {set}");
        }
        for set in ["CapInh", "CapAmb"] {
            assert_eq!(t[set], "0000000000000000", "thread {name}: {set}");
        }
        assert_eq!(t["NoNewPrivs"], "1", "thread {name}: no_new_privs");
    }
    assert!(
        h.scd.log().contains("privileges dropped"),
        "the drop is logged:\n{}",
        h.scd.log()
    );

    let t = tcp_transfer(&h.vm1.ns, &h.vm2.ns, IP2.parse()?, 5003, 8 * 1024 * 1024)?;
    assert_eq!(t.sent_hash, t.received_hash, "forwarding works as nobody");
    Ok(())
}

#[test]
fn arp_is_answered_on_the_host_and_never_forwarded() -> Result<()> {
    if !require_root("arp_is_answered_on_the_host_and_never_forwarded") {
        return Ok(());
    }
    let h = setup("swarp")?;
    // A flow that would flood ARP to every port: the responder must get there first.
    h.scd
        .reload_flows(&format!("{}priority=1,arp,actions=FLOOD\n", all_flows()), 4)?;
    let ifname = h.vm2.ifname.clone();
    let arp_watch = h
        .vm2
        .ns
        .enter(move || netns_tests::packet::packet_socket(&ifname, libc::SOCK_RAW, 0x0806))??;
    let replies_before = h.scd.metric("scd_arp_replies_total", &[])?;

    // vm1 resolves vm2 and an address no VM has: both are answered by the gateway.
    let pings = netns_tests::ping(&h.vm1.ns, IP2, 2)?;
    assert!(pings.answered, "ping: {}", pings.output);
    netns_tests::ping(&h.vm1.ns, "100.64.9.9", 1)?;
    let neigh = h.vm1.ns.ip(&["neigh", "show", "dev", &h.vm1.ifname])?;
    assert!(
        neigh.contains(&format!("{IP2} lladdr {GW_MAC}")),
        "vm2 resolves to the gateway MAC: {neigh}"
    );
    assert!(
        neigh.contains(&format!("100.64.9.9 lladdr {GW_MAC}")),
        "{neigh}"
    );

    let replies = h.scd.metric("scd_arp_replies_total", &[])? - replies_before;
    assert!(replies >= 2, "the host answered: {replies}");
    // The positive control: vm2 resolves an address no VM has after vm1's
    // requests; the host's reply reaches vm2's TAP, so the watch must see it (it
    // was capturing), and whatever of vm1's it saw came before it.
    netns_tests::ping(&h.vm2.ns, "100.64.9.8", 1)?;
    let (mut from_vm1, mut marker_seen) = (0, false);
    let watched = wait_until(
        Duration::from_secs(5),
        "the host's reply to vm2 on the watch",
        || {
            for src in frames_from(&arp_watch) {
                from_vm1 += u32::from(src == [2, 0, 0, 0, 1, 1]);
                marker_seen |= src == GW_MAC_BYTES;
            }
            Ok(marker_seen)
        },
    );
    watched.context("the ARP watch on vm2's TAP saw nothing")?;
    assert_eq!(from_vm1, 0, "no ARP frame from vm1 reached vm2");
    Ok(())
}

#[test]
fn malformed_frames_are_counted_and_dropped() -> Result<()> {
    if !require_root("malformed_frames_are_counted_and_dropped") {
        return Ok(());
    }
    let h = setup("swbad")?;
    let ifname = h.vm1.ifname.clone();
    let sent_bad = h.vm1.ns.enter(move || -> Result<u64> {
        let fd = netns_tests::packet::packet_socket(&ifname, libc::SOCK_RAW, 0x0003)?;
        let send = |frame: &[u8]| {
            // SAFETY: `frame` is valid for reads of its length.
            unsafe { libc::send(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) }
        };
        let mut head = Vec::new();
        head.extend_from_slice(&[2, 0x5c, 0, 0, 0, 1, 2, 0, 0, 0, 1, 1, 0x08, 0x00]);
        let mut bad = 0u64;
        // IPv4 header cut short.
        let mut f = head.clone();
        f.extend_from_slice(&[0x45, 0, 0, 40, 0, 0]);
        bad += u64::from(send(&f) > 0);
        // IPv4 total length beyond the frame.
        let mut f = head.clone();
        f.extend_from_slice(&[0x45, 0, 0x05, 0xdc]);
        f.extend_from_slice(&[0u8; 36]);
        bad += u64::from(send(&f) > 0);
        // Wrong IP version.
        let mut f = head.clone();
        f.extend_from_slice(&[0x65, 0, 0, 40]);
        f.extend_from_slice(&[0u8; 36]);
        bad += u64::from(send(&f) > 0);
        // TCP header cut short inside a valid IPv4 packet.
        let mut f = head.clone();
        f.extend_from_slice(&[
            0x45, 0, 0, 30, 0, 0, 0, 0, 64, 6, 0, 0, 100, 64, 1, 1, 100, 64, 1, 2,
        ]);
        f.extend_from_slice(&[0u8; 10]);
        bad += u64::from(send(&f) > 0);
        // Random bytes: whatever they parse as, the switch must survive them.
        let mut state = 42u64;
        for len in 14..300 {
            let mut f = vec![0u8; len];
            fill_pseudo_random(&mut state, &mut f);
            send(&f);
        }
        Ok(bad)
    })??;
    assert_eq!(sent_bad, 4);
    let counted = wait_until(
        Duration::from_secs(10),
        "every malformed frame counted",
        || Ok(h.scd.metric("scd_malformed_total", &[])? >= sent_bad),
    );
    if let Err(e) = counted {
        eprintln!("{e:#}");
    }
    let malformed = h.scd.metric("scd_malformed_total", &[])?;
    assert!(
        malformed >= sent_bad,
        "each malformed frame is counted: {malformed}"
    );
    assert!(
        h.scd
            .metric("scd_malformed_total", &["reason=\"truncated\""])?
            >= 2
    );
    assert!(
        h.scd
            .metric("scd_malformed_total", &["reason=\"bad_length\""])?
            >= 1
    );
    assert!(
        h.scd
            .metric("scd_malformed_total", &["reason=\"bad_version\""])?
            >= 1
    );

    // The switch still forwards.
    let pings = netns_tests::ping(&h.vm1.ns, IP2, 2)?;
    assert!(pings.answered, "ping after garbage: {}", pings.output);
    Ok(())
}

#[test]
fn a_tap_deleted_under_scd_is_no_longer_read_and_the_rest_forwards() -> Result<()> {
    if !require_root("a_tap_deleted_under_scd_is_no_longer_read_and_the_rest_forwards") {
        return Ok(());
    }
    let h = setup("tapgone")?;
    let errors = || h.scd.metric("scd_port_errors_total", &["port=\"1\""]);
    assert_eq!(errors()?, 0, "no receive error before");
    // Deleting VM 1's namespace deletes the TAP `scd` still holds: its
    // descriptor answers every read with an error from then on.
    let OneHost {
        scd,
        vm1,
        vm2,
        _host,
    } = h;
    drop(vm1);
    wait_until(
        Duration::from_secs(20),
        "scd saying the device is gone",
        || Ok(scd.log().contains("the port's device is gone")),
    )
    .with_context(|| scd.log())?;
    let seen = scd.metric("scd_port_errors_total", &["port=\"1\""])?;
    assert!(seen >= 1, "the failed read was counted");
    // Counted once, not at every poll: the loop no longer spins on it.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        scd.metric("scd_port_errors_total", &["port=\"1\""])?,
        seen,
        "the gone TAP is still being read\n{}",
        scd.log()
    );
    // Port 2 is still read: its VM's frames (ARP, then the echo requests
    // nothing answers) keep arriving.
    let rx = || scd.metric("scd_port_packets_total", &["port=\"2\"", "dir=\"rx\""]);
    let before = rx()?;
    let answered = netns_tests::ping(&vm2.ns, IP1, 1)?;
    assert!(!answered.answered, "nothing can answer for the deleted VM");
    assert!(rx()? > before, "port 2 no longer read\n{}", scd.log());
    Ok(())
}
