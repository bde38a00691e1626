use super::*;
use crate::packet::{parse, write_arp, ARP_LEN, ETH_HLEN};
use proptest::prelude::*;

const VM_MAC: Mac = Mac([0x02, 0, 0, 0, 0, 0x0a]);
const OTHER_MAC: Mac = Mac([0x02, 0, 0, 0, 0, 0x0b]);
const VM_IP: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 10);
const VM_SECOND_IP: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 11);
const OTHER_IP: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 20);

fn binding() -> PortBinding {
    PortBinding::new(VM_MAC, &[VM_IP, VM_SECOND_IP]).unwrap()
}

fn ethernet(src: Mac, eth_type: u16) -> Vec<u8> {
    let mut f = vec![0u8; ETH_HLEN];
    f[0..6].copy_from_slice(&[0x02, 0x5c, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&eth_type.to_be_bytes());
    f
}

fn udp(src_mac: Mac, src: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    let mut f = ethernet(src_mac, ethertype::IPV4);
    let mut ip = [0u8; 28];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&28u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = ipproto::UDP;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&OTHER_IP.octets());
    ip[20..22].copy_from_slice(&sport.to_be_bytes());
    ip[22..24].copy_from_slice(&dport.to_be_bytes());
    ip[24..26].copy_from_slice(&8u16.to_be_bytes());
    f.extend_from_slice(&ip);
    f
}

fn arp(src_mac: Mac, eth_type: u16, sha: Mac, spa: Ipv4Addr) -> Vec<u8> {
    let mut f = ethernet(src_mac, eth_type);
    f.resize(ETH_HLEN + ARP_LEN, 0);
    write_arp(
        &mut f[ETH_HLEN..],
        1,
        sha,
        u32::from(spa),
        Mac::ZERO,
        u32::from(OTHER_IP),
    )
    .unwrap();
    f
}

fn verdict(frame: &[u8]) -> Result<(), Spoofed> {
    let (key, layout) = parse(frame, 1).expect("test frames parse");
    binding().check(&key, &layout, frame)
}

#[test]
fn the_vm_own_traffic_passes() {
    assert_eq!(verdict(&udp(VM_MAC, VM_IP, 4000, 53)), Ok(()));
    assert_eq!(verdict(&udp(VM_MAC, VM_SECOND_IP, 4000, 53)), Ok(()));
    assert_eq!(verdict(&arp(VM_MAC, ethertype::ARP, VM_MAC, VM_IP)), Ok(()));
    // An ARP probe and QEMU's RARP announcement carry no sender address.
    let unspecified = Ipv4Addr::UNSPECIFIED;
    assert_eq!(
        verdict(&arp(VM_MAC, ethertype::ARP, VM_MAC, unspecified)),
        Ok(())
    );
    assert_eq!(
        verdict(&arp(VM_MAC, ethertype::RARP, VM_MAC, unspecified)),
        Ok(())
    );
    assert_eq!(verdict(&udp(VM_MAC, unspecified, 68, 67)), Ok(()));
}

#[test]
fn forgeries_are_refused_with_their_reason() {
    assert_eq!(verdict(&udp(OTHER_MAC, VM_IP, 4000, 53)), Err(Spoofed::Mac));
    assert_eq!(verdict(&udp(VM_MAC, OTHER_IP, 4000, 53)), Err(Spoofed::Ip));
    // From 0.0.0.0 only a DHCP client's message.
    assert_eq!(
        verdict(&udp(VM_MAC, Ipv4Addr::UNSPECIFIED, 4000, 53)),
        Err(Spoofed::Ip)
    );
    assert_eq!(
        verdict(&arp(VM_MAC, ethertype::ARP, VM_MAC, OTHER_IP)),
        Err(Spoofed::Arp)
    );
    assert_eq!(
        verdict(&arp(VM_MAC, ethertype::ARP, OTHER_MAC, VM_IP)),
        Err(Spoofed::Arp)
    );
    assert_eq!(
        verdict(&arp(
            VM_MAC,
            ethertype::RARP,
            OTHER_MAC,
            Ipv4Addr::UNSPECIFIED
        )),
        Err(Spoofed::Arp)
    );
    let mut ipv6 = ethernet(VM_MAC, ethertype::IPV6);
    ipv6.resize(ETH_HLEN + 40, 0);
    ipv6[ETH_HLEN] = 0x60;
    assert_eq!(
        verdict(&ipv6),
        Err(Spoofed::Ipv6),
        "from ::, not neighbour discovery"
    );
    let plain = udp(VM_MAC, VM_IP, 4000, 53);
    let mut tagged = plain[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    tagged.extend_from_slice(&plain[12..]);
    assert_eq!(verdict(&tagged), Err(Spoofed::Protocol));
}

#[test]
fn bindings_refuse_addresses_no_vm_can_own() {
    assert!(PortBinding::new(Mac::BROADCAST, &[VM_IP]).is_err());
    assert!(PortBinding::new(Mac::ZERO, &[VM_IP]).is_err());
    assert!(PortBinding::new(VM_MAC, &[Ipv4Addr::UNSPECIFIED]).is_err());
    assert!(PortBinding::new(VM_MAC, &[Ipv4Addr::BROADCAST]).is_err());
    assert!(PortBinding::new(VM_MAC, &[Ipv4Addr::new(224, 0, 0, 1)]).is_err());
    let b = PortBinding::new(VM_MAC, &[VM_SECOND_IP, VM_IP, VM_IP]).unwrap();
    assert_eq!(b.ips().collect::<Vec<_>>(), vec![VM_IP, VM_SECOND_IP]);
    assert_eq!(b.mac(), VM_MAC);
}

fn any_mac() -> impl Strategy<Value = Mac> {
    prop_oneof![
        Just(VM_MAC),
        any::<[u8; 6]>().prop_map(|mut b| {
            b[0] &= 0xfe;
            Mac(b)
        }),
    ]
}

fn any_ip() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        Just(VM_IP),
        Just(VM_SECOND_IP),
        Just(Ipv4Addr::UNSPECIFIED),
        any::<u32>().prop_map(Ipv4Addr::from),
    ]
}

fn owned(ip: Ipv4Addr) -> bool {
    ip == VM_IP || ip == VM_SECOND_IP
}

proptest! {
    /// An IPv4 frame passes iff its source MAC is the VM's and its source
    /// address one of the VM's (or it is a DHCP client's message from 0.0.0.0).
    #[test]
    fn ipv4_passes_iff_mac_and_source_are_bound(
        src_mac in any_mac(),
        src in any_ip(),
        ports in prop_oneof![Just((68u16, 67u16)), any::<(u16, u16)>()],
    ) {
        let dhcp = src.is_unspecified() && ports == (68, 67);
        let passes = src_mac == VM_MAC && (owned(src) || dhcp);
        prop_assert_eq!(verdict(&udp(src_mac, src, ports.0, ports.1)).is_ok(), passes);
    }

    /// An ARP or RARP frame passes iff its Ethernet source and sender MAC are the
    /// VM's and its sender address is one of the VM's or unspecified.
    #[test]
    fn arp_passes_iff_sender_is_bound(
        src_mac in any_mac(),
        sha in any_mac(),
        spa in any_ip(),
        rarp in any::<bool>(),
    ) {
        let eth_type = if rarp { ethertype::RARP } else { ethertype::ARP };
        let passes = src_mac == VM_MAC && sha == VM_MAC && (owned(spa) || spa.is_unspecified());
        prop_assert_eq!(verdict(&arp(src_mac, eth_type, sha, spa)).is_ok(), passes);
    }

    /// Whatever the bytes, the check never panics, and a frame from another MAC
    /// never passes.
    #[test]
    fn any_frame_from_another_mac_is_refused(mut bytes in proptest::collection::vec(any::<u8>(), 14..200)) {
        bytes[6..12].copy_from_slice(&OTHER_MAC.0);
        if let Ok((key, layout)) = parse(&bytes, 1) {
            prop_assert_eq!(binding().check(&key, &layout, &bytes), Err(Spoofed::Mac));
        }
    }
}

/// An untagged IPv6 frame from `src_mac`/`src` carrying a message of
/// `next_header` whose first byte (an ICMPv6 type) is `first`.
fn ipv6_from(src_mac: Mac, src: Ipv6Addr, next_header: u8, first: u8) -> Vec<u8> {
    let mut f = ethernet(src_mac, ethertype::IPV6);
    let mut ip = [0u8; 48];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&8u16.to_be_bytes());
    ip[6] = next_header;
    ip[7] = 255;
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&"fd00:5c::99".parse::<Ipv6Addr>().unwrap().octets());
    ip[40] = first;
    // A UDP header's length (the rest of an ICMPv6 message for ICMPv6).
    ip[45] = 8;
    f.extend_from_slice(&ip);
    f
}

#[test]
fn ipv6_is_admitted_from_the_vms_own_and_link_local_addresses_only() {
    let own: Ipv6Addr = "fd00:5c::ff:fe00:a".parse().unwrap();
    let bound = binding().with_ipv6(&[own, "ff02::1".parse().unwrap()]);
    let judge = |frame: &[u8]| {
        let (key, layout) = parse(frame, 1).unwrap();
        bound.check(&key, &layout, frame)
    };
    assert_eq!(bound.ipv6().count(), 2, "multicast is nobody's");
    let link_local = crate::nd::link_local(VM_MAC);
    assert_eq!(judge(&ipv6_from(VM_MAC, own, ipproto::UDP, 0)), Ok(()));
    assert_eq!(
        judge(&ipv6_from(VM_MAC, link_local, ipproto::ICMPV6, 133)),
        Ok(())
    );
    // Duplicate address detection and its listener report come from `::`.
    for icmp_type in [135, 143] {
        let probe = ipv6_from(VM_MAC, Ipv6Addr::UNSPECIFIED, ipproto::ICMPV6, icmp_type);
        assert_eq!(judge(&probe), Ok(()), "type {icmp_type}");
    }
    for refused in [
        ipv6_from(
            VM_MAC,
            "fd00:5c::ff:fe00:b".parse().unwrap(),
            ipproto::UDP,
            0,
        ),
        ipv6_from(
            VM_MAC,
            crate::nd::link_local(OTHER_MAC),
            ipproto::ICMPV6,
            135,
        ),
        ipv6_from(VM_MAC, Ipv6Addr::UNSPECIFIED, ipproto::ICMPV6, 128),
        ipv6_from(VM_MAC, Ipv6Addr::UNSPECIFIED, ipproto::UDP, 0),
    ] {
        assert_eq!(judge(&refused), Err(Spoofed::Ipv6));
    }
    assert_eq!(
        judge(&ipv6_from(OTHER_MAC, own, ipproto::UDP, 0)),
        Err(Spoofed::Mac)
    );
    // Without IPv6 addresses only the link-local one is the VM's.
    assert_eq!(
        verdict(&ipv6_from(VM_MAC, own, ipproto::UDP, 0)),
        Err(Spoofed::Ipv6)
    );
    assert_eq!(
        verdict(&ipv6_from(VM_MAC, link_local, ipproto::UDP, 0)),
        Ok(())
    );
}
