//! Unfinished checksums through `scd`, proved by a receiver that verifies them.
//!
//! `scd` hands a frame's partial TCP/UDP checksum on behind its virtio-net header
//! (`NEEDS_CSUM`) instead of finishing it, and finishes it only where it must: into
//! a WireGuard tunnel, whose peer gets whole IP packets. A tunnel's receiver
//! verifies each packet's checksum and hands it on partial again. A kernel that
//! takes a partial checksum trusts it, so a plain namespace VM would accept a wrong
//! one silently: here each VM's TAP is bridged to a veth whose transmit checksum
//! offload is off, so the bridge's kernel finishes every partial checksum in
//! software, from `csum_start`/`csum_offset` and the pseudo-header sum `scd` left,
//! and the VM's own stack behind that veth verifies it as it would a wire's
//! (`InCsumErrors`, and drops). The VMs send with transmit checksum offload on and
//! segmentation off, so every TCP segment and UDP datagram reaches `scd` as a lone
//! frame with its checksum unfinished. Before the traffic, one datagram with a
//! wrong checksum proves the receiver counts what it drops.

use anyhow::{Context, Result};
use netns_tests::cloud::key_pairs;
use netns_tests::packet::{packet_socket, send_frame};
use netns_tests::{
    require_program, require_root, run, snmp_counter, tcp_transfer, unique, wait_until,
};
use netns_tests::{scd_config_head, Burst, Internet, Netns, Scd, GATEWAY_MAC};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

const MTU: u32 = 1420;
const WG_PORT: u16 = 51820;
const STREAM_BYTES: u64 = 8 << 20;
const DATAGRAMS: u32 = 400;

/// A VM whose stack sits behind a bridge that finishes partial checksums: the TAP
/// `scd` serves and a veth (transmit checksum offload off) joined by a bridge in
/// `outer`; the VM's interface, the veth's other end, in `inner`.
struct CheckedVm {
    // Drop order: the VM's namespace, then the bridge's.
    inner: Netns,
    outer: Netns,
    tap: String,
    ip: Ipv4Addr,
    mac: &'static str,
}

impl CheckedVm {
    fn new(test: &str, ip: &str, mac: &'static str) -> Result<CheckedVm> {
        let outer = Netns::new(&unique(&format!("{test}-br-")))?;
        let inner = Netns::new(&unique(&format!("{test}-vm-")))?;
        let tap = unique("sck");
        let mtu = MTU.to_string();
        outer.ip(&["tuntap", "add", "dev", &tap, "mode", "tap"])?;
        outer.ip(&["link", "set", &tap, "mtu", &mtu])?;
        outer.ip(&["link", "add", "br0", "type", "bridge"])?;
        netns_tests::veth("vb", &outer, "ve", &inner)?;
        outer.ip(&["link", "set", "vb", "mtu", &mtu])?;
        inner.ip(&["link", "set", "ve", "mtu", &mtu])?;
        for dev in [tap.as_str(), "vb"] {
            outer.ip(&["link", "set", dev, "master", "br0"])?;
        }
        for dev in [tap.as_str(), "vb", "br0"] {
            outer.ip(&["link", "set", dev, "up"])?;
        }
        // The bridge's kernel finishes what `scd` left partial before the VM sees it.
        run(outer.command("ethtool").args(["-K", "vb", "tx", "off"]))?;
        inner.ip(&["link", "set", "ve", "address", mac])?;
        // Lone frames, each with its checksum left to offload.
        run(inner
            .command("ethtool")
            .args(["-K", "ve", "tso", "off", "gso", "off"]))?;
        inner.ip(&["addr", "add", &format!("{ip}/10"), "dev", "ve"])?;
        inner.ip(&["link", "set", "ve", "up"])?;
        Ok(CheckedVm {
            inner,
            outer,
            tap,
            ip: ip.parse()?,
            mac,
        })
    }

    /// The `[[port]]` section of the `scd` serving this VM's TAP.
    fn port_section(&self, number: u32) -> String {
        format!(
            "[[port]]\nnumber = {number}\nname = \"{}\"\nnetns = \"{}\"\ncreate = false\n",
            self.tap,
            self.outer.name()
        )
    }

    /// The flow delivering this VM's packets out of `port`, MACs rewritten.
    fn local_flow(&self, port: u32) -> String {
        format!(
            "priority=100,ip,nw_dst={},actions=set_field:{GATEWAY_MAC}->eth_src,set_field:{}->eth_dst,output:{port}\n",
            self.ip, self.mac
        )
    }

    /// Checksum errors the VM's stack counted: UDP's and TCP's `InCsumErrors`.
    fn checksum_errors(&self) -> Result<(u64, u64)> {
        let field = |proto: &str| snmp_counter(&self.inner, proto, "InCsumErrors");
        Ok((field("Udp")?, field("Tcp")?))
    }
}

/// An Ethernet/IPv4/UDP frame from `from` to `to` whose UDP checksum is wrong.
fn bad_checksum_frame(from: &CheckedVm, to: &CheckedVm) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 8 + 16];
    let mac = |s: &str| -> Vec<u8> {
        s.split(':')
            .map(|b| u8::from_str_radix(b, 16).unwrap_or(0))
            .collect()
    };
    f[0..6].copy_from_slice(&mac(GATEWAY_MAC));
    f[6..12].copy_from_slice(&mac(from.mac));
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&44u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&from.ip.octets());
    ip[16..20].copy_from_slice(&to.ip.octets());
    let mut sum = 0u32;
    for w in ip.chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let sum = !u16::try_from(sum).unwrap_or(0);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let udp = &mut f[34..];
    udp[0..2].copy_from_slice(&9u16.to_be_bytes());
    udp[2..4].copy_from_slice(&9999u16.to_be_bytes());
    udp[4..6].copy_from_slice(&24u16.to_be_bytes());
    // Not the sum of anything here (and not 0, which would mean "none").
    udp[6..8].copy_from_slice(&0x1234u16.to_be_bytes());
    f
}

/// From `from` to `to`: one datagram with a wrong checksum, which `to` must count
/// and drop (the observer works); then a TCP stream and a UDP burst with
/// checksums left to offload, which must arrive with no further error.
fn checked_traffic(from: &CheckedVm, to: &CheckedVm, port: u16, scd: &Scd) -> Result<()> {
    // The path is up (ARP answered, a tunnel's handshake done) before the one
    // datagram that must not be lost.
    let dst = to.ip.to_string();
    wait_until(Duration::from_secs(20), "a ping through", || {
        Ok(from
            .inner
            .command("ping")
            .args(["-c", "1", "-W", "1", &dst])
            .output()?
            .status
            .success())
    })
    .with_context(|| scd.log())?;
    let before = to.checksum_errors()?;
    let frame = bad_checksum_frame(from, to);
    from.inner.enter(move || -> Result<()> {
        let fd = packet_socket("ve", libc::SOCK_RAW, 0x0003)?;
        send_frame(&fd, &frame)
    })??;
    wait_until(
        Duration::from_secs(20),
        "the wrong checksum counted",
        || Ok(to.checksum_errors()?.0 > before.0),
    )
    .with_context(|| scd.log())?;
    let counted = to.checksum_errors()?;
    let sender = from.checksum_errors()?;

    let t = tcp_transfer(
        &from.inner,
        &to.inner,
        IpAddr::V4(to.ip),
        port,
        STREAM_BYTES,
    )?;
    assert!(
        t.intact(STREAM_BYTES),
        "the stream arrives whole and intact: {t:?}\n{}",
        scd.log()
    );
    let burst = Burst {
        count: DATAGRAMS,
        size: 64,
        every: 10,
        pause: Duration::from_millis(2),
    };
    let arrived = netns_tests::udp_count(
        &from.inner,
        IpAddr::V4(from.ip),
        &to.inner,
        IpAddr::V4(to.ip),
        port + 1,
        burst,
    )?;
    // A checksum left wrong would lose every datagram; a full queue on a loaded
    // machine loses a few. The counters below say which.
    assert!(
        arrived >= DATAGRAMS * 9 / 10,
        "{arrived} of {DATAGRAMS} datagrams arrived"
    );
    assert_eq!(
        to.checksum_errors()?,
        counted,
        "no checksum error at the receiver (UDP, TCP)"
    );
    assert_eq!(
        from.checksum_errors()?,
        sender,
        "no checksum error at the sender (the stream's acknowledgements)"
    );
    Ok(())
}

#[test]
fn partial_checksums_cross_one_switch_and_the_receiver_verifies_them() -> Result<()> {
    let test = "partial_checksums_cross_one_switch_and_the_receiver_verifies_them";
    if !require_root(test) || !require_program(test, "ethtool") {
        return Ok(());
    }
    let host = Netns::new(&unique("csum1-host-"))?;
    let vm1 = CheckedVm::new("csum1", "100.64.1.1", "02:00:00:00:01:01")?;
    let vm2 = CheckedVm::new("csum1", "100.64.1.2", "02:00:00:00:01:02")?;
    let config = scd_config_head("1", "csum1", true) + &vm1.port_section(1) + &vm2.port_section(2);
    let flows = vm1.local_flow(1) + &vm2.local_flow(2);
    let scd = Scd::start(&host, &config, Some(&flows))?;
    checked_traffic(&vm1, &vm2, 7100, &scd)?;
    checked_traffic(&vm2, &vm1, 7200, &scd)?;
    Ok(())
}

#[test]
fn partial_checksums_are_finished_into_a_tunnel_and_verified_out_of_it() -> Result<()> {
    let test = "partial_checksums_are_finished_into_a_tunnel_and_verified_out_of_it";
    if !require_root(test) || !require_program(test, "ethtool") {
        return Ok(());
    }
    let net = Internet::with_hosts("csum2", &[None, None])?;
    let keys = key_pairs(2)?;
    let vms = [
        CheckedVm::new("csum2", "100.64.1.1", "02:00:00:00:01:01")?,
        CheckedVm::new("csum2", "100.64.2.1", "02:00:00:00:02:01")?,
    ];
    let tunnel_port = |host: usize| 100 + u32::try_from(host).unwrap_or(0);
    let scds = (0..2)
        .map(|h| {
            let other = 1 - h;
            let config = format!(
                "{}[tunnel]\nprivate_key_file = \"key\"\nlisten = \"0.0.0.0:{WG_PORT}\"\nmtu = {MTU}\n\
                 {}[[peer]]\nport = {}\nname = \"host{other}\"\npublic_key = \"{}\"\nendpoint = \"{}:{WG_PORT}\"\n",
                scd_config_head(&(h + 1).to_string(), &format!("host{h}"), true),
                vms[h].port_section(1),
                tunnel_port(other),
                keys[other].public,
                Internet::host_addr(other)
            );
            let flows = vms[h].local_flow(1)
                + &format!(
                    "priority=100,ip,nw_dst={},actions=output:{}\n",
                    vms[other].ip,
                    tunnel_port(other)
                );
            Scd::start_with_key(&net.hosts[h], &config, Some(&flows), &keys[h].private)
        })
        .collect::<Result<Vec<_>>>()?;
    checked_traffic(&vms[0], &vms[1], 7300, &scds[0])?;
    checked_traffic(&vms[1], &vms[0], 7400, &scds[1])?;
    Ok(())
}
