use super::*;
use crate::packet::parse;
use proptest::prelude::*;

const GW: Mac = Mac([0x02, 0x5c, 0, 0, 0, 1]);
const VM: Mac = Mac([0x02, 0, 0, 0, 0x01, 0x01]);

fn responder() -> NdResponder {
    NdResponder::new("fd00:5c::".parse().unwrap(), 48, GW, 1420)
}

/// An untagged ICMPv6 frame from the VM with `icmp` as its message (checksum
/// filled in).
pub(crate) fn icmpv6_frame(src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8, icmp: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; L4_AT];
    f[0..6].copy_from_slice(&[0x33, 0x33, 0, 0, 0, 2]);
    f[6..12].copy_from_slice(&VM.0);
    f[12..14].copy_from_slice(&ethertype::IPV6.to_be_bytes());
    f[14] = 0x60;
    f[18..20].copy_from_slice(&u16::try_from(icmp.len()).unwrap().to_be_bytes());
    f[20] = ipproto::ICMPV6;
    f[21] = hop_limit;
    f[22..38].copy_from_slice(&src.octets());
    f[38..54].copy_from_slice(&dst.octets());
    f.extend_from_slice(icmp);
    let sum = icmpv6_checksum(&f[ETH_HLEN..]);
    f[L4_AT + 2..L4_AT + 4].copy_from_slice(&sum.to_be_bytes());
    f
}

fn solicitation(src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let mut icmp = vec![NEIGHBOUR_SOLICITATION, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&target.octets());
    icmp.extend_from_slice(&[1, 1]);
    icmp.extend_from_slice(&VM.0);
    icmp_to(src, "ff02::1:ff00:1".parse().unwrap(), &icmp)
}

fn icmp_to(src: Ipv6Addr, dst: Ipv6Addr, icmp: &[u8]) -> Vec<u8> {
    icmpv6_frame(src, dst, ND_HOP_LIMIT, icmp)
}

fn answer(frame: &[u8]) -> Option<Vec<u8>> {
    let (key, _) = parse(frame, 1).unwrap();
    let mut out = [0u8; MAX_REPLY_FRAME];
    responder()
        .reply(&key, frame, &mut out)
        .map(|n| out[..n].to_vec())
}

#[test]
fn addresses_come_from_the_mac_as_slaac_makes_them() {
    assert_eq!(interface_id(VM), 0x0000_00ff_fe00_0101);
    assert_eq!(
        link_local(VM),
        "fe80::ff:fe00:101".parse::<Ipv6Addr>().unwrap()
    );
    assert_eq!(
        slaac_address("fd00:5c:0:0:dead::".parse().unwrap(), VM),
        "fd00:5c::ff:fe00:101".parse::<Ipv6Addr>().unwrap()
    );
    assert_eq!(
        responder().gateway_link_local(),
        "fe80::5c:ff:fe00:1".parse::<Ipv6Addr>().unwrap()
    );
}

#[test]
fn the_gateway_and_overlay_addresses_are_advertised_with_the_gateway_mac() {
    let vm_ll = link_local(VM);
    for target in [
        responder().gateway_link_local(),
        "fd00:5c::9".parse().unwrap(),
    ] {
        let reply = answer(&solicitation(vm_ll, target)).expect("answered");
        let (key, _) = parse(&reply, 1).unwrap();
        assert_eq!((key.eth_dst, key.eth_src), (VM, GW));
        assert_eq!(key.ipv6_dst, u128::from(vm_ll));
        assert_eq!(key.l4_src, u16::from(NEIGHBOUR_ADVERTISEMENT));
        assert_eq!(icmpv6_checksum(&reply[ETH_HLEN..]), 0, "checksum verifies");
        assert_eq!(&reply[L4_AT + 8..L4_AT + 24], &target.octets());
        assert_eq!(&reply[L4_AT + 26..L4_AT + 32], &GW.0);
        assert_eq!(reply[L4_AT + 4] & 0xe0, 0xe0, "router, solicited, override");
    }
}

#[test]
fn probes_foreign_targets_and_off_link_solicitations_are_not_answered() {
    let vm_ll = link_local(VM);
    assert!(answer(&solicitation(
        Ipv6Addr::UNSPECIFIED,
        "fd00:5c::9".parse().unwrap()
    ))
    .is_none());
    assert!(answer(&solicitation(vm_ll, "fd00:5d::9".parse().unwrap())).is_none());
    assert!(answer(&solicitation(vm_ll, "fe80::1".parse().unwrap())).is_none());
    let mut far = solicitation(vm_ll, "fd00:5c::9".parse().unwrap());
    far[21] = 64;
    assert!(answer(&far).is_none(), "hop limit 64: not from this link");
}

#[test]
fn a_router_solicitation_gets_the_prefix_with_slaac_on_and_the_mtu() {
    let rs = icmp_to(
        link_local(VM),
        "ff02::2".parse().unwrap(),
        &[ROUTER_SOLICITATION, 0, 0, 0, 0, 0, 0, 0],
    );
    let ra = answer(&rs).expect("answered");
    let (key, _) = parse(&ra, 1).unwrap();
    assert_eq!(key.l4_src, u16::from(ROUTER_ADVERTISEMENT));
    assert_eq!(key.ipv6_src, u128::from(responder().gateway_link_local()));
    assert_eq!(icmpv6_checksum(&ra[ETH_HLEN..]), 0);
    let icmp = &ra[L4_AT..];
    assert_eq!(icmp[5] & 0xc0, 0, "no DHCPv6 (M and O clear)");
    assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), ROUTER_LIFETIME_S);
    assert_eq!(u32::from_be_bytes(icmp[28..32].try_into().unwrap()), 1420);
    assert_eq!(
        (icmp[32], icmp[34], icmp[35]),
        (3, 64, 0x40),
        "a /64, autonomous, not on-link"
    );
    assert_eq!(
        &icmp[48..64],
        &"fd00:5c::".parse::<Ipv6Addr>().unwrap().octets()
    );
    let from_nowhere = icmp_to(
        Ipv6Addr::UNSPECIFIED,
        "ff02::2".parse().unwrap(),
        &[ROUTER_SOLICITATION, 0, 0, 0, 0, 0, 0, 0],
    );
    let ra = answer(&from_nowhere).expect("answered");
    assert_eq!(&ra[38..54], &ALL_NODES.octets());
}

#[test]
fn an_uplink_answers_the_router_for_its_address_and_prefix_only() {
    const UPLINK: Mac = Mac([0x02, 0x5c, 0, 0, 0x0a, 1]);
    let responder = PortNdResponder::new(
        UPLINK,
        &[
            ("2001:db8:ff::1".parse().unwrap(), 128),
            ("2001:db8:100::".parse().unwrap(), 48),
        ],
    );
    let router: Ipv6Addr = "fe80::1".parse().unwrap();
    let ask = |src: Ipv6Addr, target: &str| {
        let frame = solicitation(src, target.parse().unwrap());
        let (key, _) = parse(&frame, 1).unwrap();
        let mut out = [0u8; MAX_REPLY_FRAME];
        responder
            .reply(&key, &frame, &mut out)
            .map(|n| out[..n].to_vec())
    };
    for target in ["2001:db8:ff::1", "2001:db8:100::10"] {
        let na = ask(router, target).expect(target);
        let (key, _) = parse(&na, 1).unwrap();
        assert_eq!(key.l4_src, u16::from(NEIGHBOUR_ADVERTISEMENT));
        assert_eq!(key.eth_src, UPLINK);
        assert_eq!(key.eth_dst, VM);
        assert_eq!(
            Ipv6Addr::from(key.ipv6_src),
            target.parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(key.ipv6_dst, u128::from(router));
        assert_eq!(
            &na[L4_AT + 8..L4_AT + 24],
            &target.parse::<Ipv6Addr>().unwrap().octets()
        );
        assert_eq!(&na[L4_AT + 26..L4_AT + 32], &UPLINK.0);
        assert_eq!(icmpv6_checksum(&na[ETH_HLEN..]), 0);
    }
    // The answered run: nothing else, no duplicate address probe.
    assert!(ask(router, "2001:db8:ff::2").is_none());
    assert!(ask(router, "2001:db8:101::10").is_none());
    assert!(ask(Ipv6Addr::UNSPECIFIED, "2001:db8:100::10").is_none());
}

#[test]
fn link_control_is_nd_and_mld_only() {
    let vm_ll = link_local(VM);
    for (ty, local) in [
        (128u8, false),
        (129, false),
        (1, false),
        (2, false),
        (130, true),
        (133, true),
        (135, true),
        (137, true),
        (143, true),
    ] {
        let (key, _) = parse(
            &icmp_to(
                vm_ll,
                "ff02::1".parse().unwrap(),
                &[ty, 0, 0, 0, 0, 0, 0, 0],
            ),
            1,
        )
        .unwrap();
        assert_eq!(is_link_control(&key), local, "type {ty}");
    }
}

proptest! {
    #[test]
    fn any_icmpv6_message_is_parsed_and_answered_without_panic(
        ty in prop_oneof![Just(ROUTER_SOLICITATION), Just(NEIGHBOUR_SOLICITATION), any::<u8>()],
        body in proptest::collection::vec(any::<u8>(), 0..80),
        hop in prop_oneof![Just(ND_HOP_LIMIT), any::<u8>()],
        cut in 0usize..200,
    ) {
        let mut icmp = vec![ty, 0, 0, 0];
        icmp.extend_from_slice(&body);
        let mut frame = icmpv6_frame(link_local(VM), "ff02::1".parse().unwrap(), hop, &icmp);
        frame.truncate(cut.max(1).min(frame.len()));
        if let Ok((key, _)) = parse(&frame, 1) {
            let mut out = [0u8; MAX_REPLY_FRAME];
            if let Some(n) = responder().reply(&key, &frame, &mut out) {
                let (reply, _) = parse(&out[..n], 1).expect("a reply parses");
                prop_assert_eq!(reply.eth_dst, VM);
                prop_assert_eq!(icmpv6_checksum(&out[ETH_HLEN..n]), 0);
            }
        }
    }

    #[test]
    fn an_answer_needs_room(len in 0usize..MAX_REPLY_FRAME) {
        let rs = icmp_to(link_local(VM), "ff02::2".parse().unwrap(), &[ROUTER_SOLICITATION, 0, 0, 0, 0, 0, 0, 0]);
        let (key, _) = parse(&rs, 1).unwrap();
        let mut out = vec![0u8; len];
        prop_assert!(responder().reply(&key, &rs, &mut out).is_none());
    }
}

/// The fuzz seeds double as test vectors, so the seeds stay messages that are
/// answered.
#[test]
fn the_fuzz_seeds_are_answered() {
    let seeds: [&[u8]; 2] = [
        include_bytes!("../../../fuzz/seeds/nd/neighbour-solicitation"),
        include_bytes!("../../../fuzz/seeds/nd/router-solicitation"),
    ];
    for seed in seeds {
        let frame = icmp_to(link_local(VM), ALL_NODES, seed);
        assert!(answer(&frame).is_some(), "{seed:?}");
    }
}
