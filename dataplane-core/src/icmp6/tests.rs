use super::*;
use crate::packet::parse;
use proptest::prelude::*;

const VM: [u8; 6] = [2, 0, 0, 0, 0, 0x0a];
const GW: [u8; 6] = [2, 0x5c, 0, 0, 0, 1];

/// An untagged frame from `VM` to `GW` carrying an IPv6 packet of `len` bytes
/// in all from `src` to `dst` with next header `next` and payload `fill`.
fn frame(src: u128, dst: u128, next: u8, len: usize, fill: u8) -> Vec<u8> {
    let mut f = vec![fill; ETH_HLEN + len.max(IPV6_HLEN)];
    f[0..6].copy_from_slice(&GW);
    f[6..12].copy_from_slice(&VM);
    f[12..14].copy_from_slice(&ethertype::IPV6.to_be_bytes());
    let ip = &mut f[ETH_HLEN..];
    ip[..IPV6_HLEN].fill(0);
    ip[0] = 0x60;
    let payload = u16::try_from(len.max(IPV6_HLEN) - IPV6_HLEN).unwrap();
    ip[4..6].copy_from_slice(&payload.to_be_bytes());
    ip[6] = next;
    ip[7] = 64;
    ip[8..24].copy_from_slice(&src.to_be_bytes());
    ip[24..40].copy_from_slice(&dst.to_be_bytes());
    f
}

const FROM: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x5c, 0xff, 0xfe00, 1);

fn unicast() -> impl Strategy<Value = u128> {
    any::<u128>().prop_filter("unicast", |a| *a != 0 && (a >> 120) != 0xff)
}

proptest! {
    #[test]
    fn a_reply_is_a_valid_ptb_back_to_the_source_quoting_what_fits(
        src in unicast(),
        dst in any::<u128>(),
        len in 1281usize..9000,
        mtu in 1280u32..9000,
        fill in any::<u8>(),
    ) {
        let f = frame(src, dst, 6, len, fill);
        let mut out = [0u8; MAX_TOO_BIG_FRAME];
        let n = packet_too_big(&mut out, &f, ETH_HLEN, mtu, FROM).unwrap();
        prop_assert_eq!(n, MAX_TOO_BIG_FRAME);
        let reply = &out[..n];
        prop_assert_eq!(&reply[0..6], &VM);
        prop_assert_eq!(&reply[6..12], &GW);
        let (key, _) = parse(reply, 1).unwrap();
        prop_assert_eq!(key.ip_proto, ipproto::ICMPV6);
        prop_assert_eq!(key.l4_src, u16::from(PACKET_TOO_BIG));
        prop_assert_eq!(key.ipv6_src, u128::from(FROM));
        prop_assert_eq!(key.ipv6_dst, src);
        let ip = &reply[ETH_HLEN..];
        prop_assert_eq!(icmpv6_checksum(ip), 0);
        prop_assert_eq!(&ip[IPV6_HLEN + 4..IPV6_HLEN + 8], &mtu.to_be_bytes());
        let quoted = &ip[IPV6_HLEN + PTB_HLEN..];
        prop_assert_eq!(quoted, &f[ETH_HLEN..ETH_HLEN + quoted.len()]);
    }

    #[test]
    fn a_short_packet_is_quoted_whole(src in unicast(), len in 40usize..1232) {
        let f = frame(src, 1, 17, len, 7);
        let mut out = [0u8; MAX_TOO_BIG_FRAME];
        let n = packet_too_big(&mut out, &f, ETH_HLEN, 1280, FROM).unwrap();
        prop_assert_eq!(n, ETH_HLEN + IPV6_HLEN + PTB_HLEN + len);
        prop_assert_eq!(icmpv6_checksum(&out[ETH_HLEN..n]), 0);
    }

    #[test]
    fn anything_else_gets_no_reply_and_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut out = [0u8; MAX_TOO_BIG_FRAME];
        if let Some(n) = packet_too_big(&mut out, &bytes, ETH_HLEN, 1280, FROM) {
            prop_assert_eq!(icmpv6_checksum(&out[ETH_HLEN..n]), 0);
        }
    }

    #[test]
    fn the_bucket_never_gives_more_than_burst_plus_refill(
        steps in proptest::collection::vec(0u64..50_000_000, 1..400),
    ) {
        let start = Instant::now();
        let mut limit = RateLimit::new(100, 10);
        let (mut now, mut given) = (start, 0u64);
        for step in steps {
            now += Duration::from_nanos(step);
            given += u64::from(limit.allow(now));
        }
        let refill = u64::try_from(now.duration_since(start).as_millis() / 10).unwrap();
        prop_assert!(given <= 10 + refill, "{given} > 10 + {refill}");
    }
}

#[test]
fn no_reply_to_unspecified_or_multicast_sources_nor_to_icmpv6_errors() {
    let mut out = [0u8; MAX_TOO_BIG_FRAME];
    let big = |src, next, first| {
        let mut f = frame(src, 1, next, 1400, 0);
        f[ETH_HLEN + IPV6_HLEN] = first;
        f
    };
    let multicast = 0xff02u128 << 112 | 1;
    for f in [
        big(0, 6, 0),
        big(multicast, 6, 0),
        big(5, ipproto::ICMPV6, 1),
    ] {
        assert_eq!(packet_too_big(&mut out, &f, ETH_HLEN, 1280, FROM), None);
    }
    // An echo request is answered; an IPv4 frame is not.
    assert!(packet_too_big(
        &mut out,
        &big(5, ipproto::ICMPV6, 128),
        ETH_HLEN,
        1280,
        FROM
    )
    .is_some());
    let mut v4 = big(5, 6, 0);
    v4[ETH_HLEN] = 0x45;
    assert_eq!(packet_too_big(&mut out, &v4, ETH_HLEN, 1280, FROM), None);
}

#[test]
fn the_bucket_refills_and_a_reply_source_follows_the_input_port() {
    let start = Instant::now();
    let mut limit = RateLimit::new(100, 2);
    assert!(limit.allow(start) && limit.allow(start));
    assert!(!limit.allow(start));
    assert!(limit.allow(start + Duration::from_millis(10)));
    let uplink: Ipv6Addr = "2001:db8:ff::1".parse().unwrap();
    let replies = TooBigReplies::new(FROM, vec![(100, uplink)]);
    assert_eq!(replies.source(100), uplink);
    assert_eq!(replies.source(1), FROM);
}

#[test]
fn an_uplink_spending_its_budget_leaves_the_vm_ports_theirs() {
    let start = Instant::now();
    let uplink: Ipv6Addr = "2001:db8:ff::1".parse().unwrap();
    let mut replies = TooBigReplies::new(FROM, vec![(100, uplink)]);
    let from_uplink = (0..1_000).filter(|_| replies.allow(100, start)).count();
    assert_eq!(from_uplink, TOO_BIG_PER_SECOND as usize);
    assert!(!replies.allow(100, start));
    // A VM port (any other port) still has its whole burst.
    let from_vms = (0..1_000).filter(|_| replies.allow(3, start)).count();
    assert_eq!(from_vms, TOO_BIG_PER_SECOND as usize);
}
