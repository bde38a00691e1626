//! Fuzzes the anycast gateway's neighbour discovery with arbitrary ICMPv6
//! messages from a VM: parsing the frame and answering it may never panic, and
//! every answer must parse back with a checksum that verifies.
#![no_main]

use dataplane_core::nd::{icmpv6_checksum, link_local, NdResponder, MAX_REPLY_FRAME};
use dataplane_core::packet::{parse, ETH_HLEN};
use libfuzzer_sys::fuzz_target;
use openflow::flow::Mac;

const VM_MAC: Mac = Mac([0x02, 0, 0, 0, 0, 0x0a]);

fuzz_target!(|data: &[u8]| {
    let Ok(len) = u16::try_from(data.len()) else { return };
    let mut frame = vec![0u8; ETH_HLEN + 40];
    frame[0..6].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
    frame[6..12].copy_from_slice(&VM_MAC.0);
    frame[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    let ip = &mut frame[ETH_HLEN..];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&len.to_be_bytes());
    ip[6] = 58;
    ip[7] = 255;
    ip[8..24].copy_from_slice(&link_local(VM_MAC).octets());
    ip[24] = 0xff;
    ip[25] = 0x02;
    ip[39] = 1;
    frame.extend_from_slice(data);
    let Ok((key, _)) = parse(&frame, 1) else { return };
    let responder = NdResponder::new("fd00:5c::".parse().unwrap(), 48, Mac([0x02, 0x5c, 0, 0, 0, 1]), 1420);
    let mut out = [0u8; MAX_REPLY_FRAME];
    if let Some(n) = responder.reply(&key, &frame, &mut out) {
        parse(&out[..n], 1).expect("an answer parses");
        assert_eq!(icmpv6_checksum(&out[ETH_HLEN..n]), 0);
    }
});
