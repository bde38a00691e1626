//! Fuzzes the DHCP server of VM ports with arbitrary UDP payloads from a bound
//! port's client: reading the message, answering it and writing the reply frame
//! may never panic, and every reply written must parse back as DHCP.
#![no_main]

use dataplane_core::dhcp::{
    DhcpMessage, DhcpServer, BOOTP_FIXED_LEN, CLIENT_PORT, MAGIC_COOKIE, MAX_REPLY_FRAME, SERVER_PORT,
};
use dataplane_core::packet::{parse, ETH_HLEN};
use libfuzzer_sys::fuzz_target;
use openflow::flow::Mac;
use std::net::Ipv4Addr;

const VM_MAC: Mac = Mac([0x02, 0, 0, 0, 0, 0x0a]);

/// A client's request whose options are `data`, after the magic cookie:
/// random bytes alone almost never reach the options.
fn shaped(data: &[u8]) -> Vec<u8> {
    let mut m = vec![0u8; BOOTP_FIXED_LEN];
    m[0] = 1;
    m[1] = 1;
    m[2] = 6;
    m[28..34].copy_from_slice(&VM_MAC.0);
    m.extend_from_slice(&MAGIC_COOKIE);
    m.extend_from_slice(data);
    m
}

fuzz_target!(|data: &[u8]| {
    let _ = DhcpMessage::parse(data);
    let data = &shaped(data)[..];
    let Ok(udp_len) = u16::try_from(8 + data.len()) else { return };
    let Ok(ip_len) = u16::try_from(20 + 8 + data.len()) else { return };
    let mut frame = vec![0u8; ETH_HLEN + 28];
    frame[0..6].copy_from_slice(&[0xff; 6]);
    frame[6..12].copy_from_slice(&VM_MAC.0);
    frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut frame[ETH_HLEN..];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[16..20].copy_from_slice(&[0xff; 4]);
    ip[20..22].copy_from_slice(&CLIENT_PORT.to_be_bytes());
    ip[22..24].copy_from_slice(&SERVER_PORT.to_be_bytes());
    ip[24..26].copy_from_slice(&udp_len.to_be_bytes());
    frame.extend_from_slice(data);
    let Ok((key, _)) = parse(&frame, 1) else { return };
    let server = DhcpServer {
        gateway_mac: Mac([0x02, 0x5c, 0, 0, 0, 1]),
        gateway_ip: Ipv4Addr::new(100, 64, 0, 1),
        prefix_len: 10,
        mtu: 1420,
        dns: vec![Ipv4Addr::new(192, 0, 2, 53)],
        lease_secs: 3600,
    };
    let mut out = [0u8; MAX_REPLY_FRAME];
    if let Some(n) = server.reply(&key, &frame, VM_MAC, Ipv4Addr::new(100, 64, 1, 10), &mut out) {
        let (reply, layout) = parse(&out[..n], 1).expect("a reply frame parses");
        assert_eq!(reply.l4_dst, CLIENT_PORT);
        DhcpMessage::parse(&out[layout.l3 + 28..n]).expect("a reply message parses");
    }
});
