//! Fuzzes what `scd` builds from frames it did not make for IPv6 beyond VM
//! ports: a packet-too-big answering an arbitrary frame (any bytes, read as
//! Ethernet + IPv6) and an uplink's answer to an arbitrary ICMPv6 message. Neither
//! may panic, and every message written must parse back with a checksum that
//! verifies and, for packet-too-big, fit IPv6's minimum MTU.
#![no_main]

use dataplane_core::icmp6::{packet_too_big, MAX_TOO_BIG_FRAME, MIN_IPV6_MTU};
use dataplane_core::nd::{icmpv6_checksum, PortNdResponder, MAX_REPLY_FRAME};
use dataplane_core::packet::{parse, ETH_HLEN};
use libfuzzer_sys::fuzz_target;
use openflow::flow::Mac;

fuzz_target!(|data: &[u8]| {
    let from = "2001:db8:ff::1".parse().unwrap();
    let mut out = [0u8; MAX_TOO_BIG_FRAME];
    if let Some(n) = packet_too_big(&mut out, data, ETH_HLEN, 1300, from) {
        assert!(n <= ETH_HLEN + MIN_IPV6_MTU);
        parse(&out[..n], 1).expect("a packet-too-big parses");
        assert_eq!(icmpv6_checksum(&out[ETH_HLEN..n]), 0);
    }
    let Ok((key, _)) = parse(data, 100) else { return };
    let uplink = PortNdResponder::new(
        Mac([0x02, 0x5c, 0, 0, 0x0a, 1]),
        &[(from, 128), ("2001:db8:100::".parse().unwrap(), 48)],
    );
    let mut out = [0u8; MAX_REPLY_FRAME];
    if let Some(n) = uplink.reply(&key, data, &mut out) {
        parse(&out[..n], 1).expect("an answer parses");
        assert_eq!(icmpv6_checksum(&out[ETH_HLEN..n]), 0);
    }
});
