use super::*;
use crate::packet::parse;
use crate::packet::tests::{l4_checksum_v4, udp_frame};
use proptest::prelude::*;

const VM_MAC: Mac = Mac([0x02, 0, 0, 0, 0, 0x0a]);
const VM_IP: Ipv4Addr = Ipv4Addr::new(100, 64, 1, 10);
const GATEWAY: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 1);
const GATEWAY_MAC: Mac = Mac([0x02, 0x5c, 0, 0, 0, 1]);

fn server() -> DhcpServer {
    DhcpServer {
        gateway_mac: GATEWAY_MAC,
        gateway_ip: GATEWAY,
        prefix_len: 10,
        mtu: 1420,
        dns: vec![Ipv4Addr::new(192, 0, 2, 53), Ipv4Addr::new(192, 0, 2, 54)],
        lease_secs: 3600,
    }
}

fn client_message(message_type: MessageType) -> DhcpMessage {
    DhcpMessage {
        secs: 3,
        message_type: Some(message_type),
        ..DhcpMessage::new(BOOTREQUEST, 0x1234_5678, VM_MAC)
    }
}

/// A client's frame: from 0.0.0.0 (or `src`) port 68 to 255.255.255.255 port 67.
fn request_frame(m: &DhcpMessage, src: Ipv4Addr) -> Vec<u8> {
    let mut payload = vec![0u8; 600];
    let n = m.write(&mut payload).unwrap();
    payload.truncate(n);
    let mut f = udp_frame(src.into(), u32::MAX, CLIENT_PORT, SERVER_PORT, &payload);
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&m.chaddr.0);
    f
}

/// The reply frame the server writes for `m`, checked to be well-formed
/// Ethernet/IPv4/UDP with correct checksums, and the message it carries.
fn exchange(m: &DhcpMessage, src: Ipv4Addr) -> Option<(Vec<u8>, DhcpMessage)> {
    let frame = request_frame(m, src);
    let (key, _) = parse(&frame, 1).unwrap();
    let mut out = [0u8; MAX_REPLY_FRAME];
    let n = server().reply(&key, &frame, VM_MAC, VM_IP, &mut out)?;
    let reply = out[..n].to_vec();
    let (key, layout) = parse(&reply, 1).unwrap();
    assert_eq!((key.l4_src, key.l4_dst), (SERVER_PORT, CLIENT_PORT));
    assert_eq!(key.eth_src, GATEWAY_MAC);
    assert_eq!(key.ipv4_src, u32::from(GATEWAY));
    let ip = &reply[layout.l3..];
    let stored = u16::from_be_bytes([ip[26], ip[27]]);
    assert_eq!(stored, l4_checksum_v4(ip), "UDP checksum");
    let mut header = ip[..20].to_vec();
    crate::packet::fix_ipv4_checksum(&mut header);
    assert_eq!(header, ip[..20], "IPv4 header checksum");
    let message = DhcpMessage::parse(&ip[28..]).unwrap();
    Some((reply, message))
}

#[test]
fn discover_is_offered_the_ports_address_with_every_option() {
    let (frame, offer) = exchange(
        &client_message(MessageType::Discover),
        Ipv4Addr::UNSPECIFIED,
    )
    .expect("an offer");
    assert_eq!(offer.message_type, Some(MessageType::Offer));
    assert_eq!(offer.op, BOOTREPLY);
    assert_eq!(offer.xid, 0x1234_5678);
    assert_eq!(offer.yiaddr, VM_IP);
    assert_eq!(offer.chaddr, VM_MAC);
    assert_eq!(offer.server_id, Some(GATEWAY));
    assert_eq!(offer.router, Some(GATEWAY));
    assert_eq!(offer.subnet_mask, Some(Ipv4Addr::new(255, 192, 0, 0)));
    assert_eq!(offer.mtu, Some(1420));
    assert_eq!(offer.lease_secs, Some(3600));
    assert_eq!(offer.dns, server().dns);
    assert_eq!(&frame[0..6], &VM_MAC.0, "unicast to the client's MAC");
    assert_eq!(&frame[ETH_HLEN + 16..ETH_HLEN + 20], &VM_IP.octets());
    assert!(frame.len() >= ETH_HLEN + 28 + MIN_BOOTP_LEN);
}

#[test]
fn request_for_its_address_is_acked_and_any_other_is_refused() {
    let mut request = client_message(MessageType::Request);
    request.requested_ip = Some(VM_IP);
    request.server_id = Some(GATEWAY);
    let (_, ack) = exchange(&request, Ipv4Addr::UNSPECIFIED).unwrap();
    assert_eq!(ack.message_type, Some(MessageType::Ack));
    assert_eq!(ack.yiaddr, VM_IP);

    request.requested_ip = Some(Ipv4Addr::new(100, 64, 1, 99));
    let (frame, nak) = exchange(&request, Ipv4Addr::UNSPECIFIED).unwrap();
    assert_eq!(nak.message_type, Some(MessageType::Nak));
    assert_eq!(nak.yiaddr, Ipv4Addr::UNSPECIFIED);
    assert_eq!(&frame[0..6], &[0xff; 6], "a NAK is broadcast");

    // A client that chose another server's offer is left alone.
    request.server_id = Some(Ipv4Addr::new(192, 0, 2, 1));
    assert!(exchange(&request, Ipv4Addr::UNSPECIFIED).is_none());
}

#[test]
fn renewal_is_unicast_to_the_clients_address() {
    let mut renew = client_message(MessageType::Request);
    renew.ciaddr = VM_IP;
    let (frame, ack) = exchange(&renew, VM_IP).unwrap();
    assert_eq!(ack.message_type, Some(MessageType::Ack));
    assert_eq!(&frame[ETH_HLEN + 16..ETH_HLEN + 20], &VM_IP.octets());
}

#[test]
fn broadcast_flag_gets_a_broadcast_reply() {
    let mut discover = client_message(MessageType::Discover);
    discover.flags = BROADCAST_FLAG;
    let (frame, _) = exchange(&discover, Ipv4Addr::UNSPECIFIED).unwrap();
    assert_eq!(&frame[0..6], &[0xff; 6]);
    assert_eq!(&frame[ETH_HLEN + 16..ETH_HLEN + 20], &[0xff; 4]);
}

#[test]
fn inform_gets_options_without_an_address() {
    let mut inform = client_message(MessageType::Inform);
    inform.ciaddr = VM_IP;
    let (_, ack) = exchange(&inform, VM_IP).unwrap();
    assert_eq!(ack.message_type, Some(MessageType::Ack));
    assert_eq!(ack.yiaddr, Ipv4Addr::UNSPECIFIED);
    assert_eq!(ack.lease_secs, None);
    assert_eq!(ack.router, Some(GATEWAY));
}

#[test]
fn silent_on_release_decline_other_macs_and_replies() {
    for t in [
        MessageType::Release,
        MessageType::Decline,
        MessageType::Offer,
    ] {
        assert!(
            exchange(&client_message(t), Ipv4Addr::UNSPECIFIED).is_none(),
            "{t:?}"
        );
    }
    let mut other = client_message(MessageType::Discover);
    other.chaddr = Mac([0x02, 0, 0, 0, 0, 0x0b]);
    assert!(exchange(&other, Ipv4Addr::UNSPECIFIED).is_none());
    let mut reply = client_message(MessageType::Discover);
    reply.op = BOOTREPLY;
    assert!(exchange(&reply, Ipv4Addr::UNSPECIFIED).is_none());
    let mut untyped = client_message(MessageType::Discover);
    untyped.message_type = None;
    assert!(exchange(&untyped, Ipv4Addr::UNSPECIFIED).is_none());
}

#[test]
fn other_udp_is_not_a_dhcp_request() {
    let frame = udp_frame(0, u32::MAX, 1000, SERVER_PORT, &[0u8; 300]);
    let (key, _) = parse(&frame, 1).unwrap();
    assert!(!is_to_server(&key));
    let mut out = [0u8; MAX_REPLY_FRAME];
    assert!(server()
        .reply(&key, &frame, VM_MAC, VM_IP, &mut out)
        .is_none());
}

#[test]
fn parse_refuses_what_is_not_dhcp() {
    assert_eq!(DhcpMessage::parse(&[0u8; 100]), Err(DhcpError::Truncated));
    let mut buf = [0u8; 400];
    let n = client_message(MessageType::Discover)
        .write(&mut buf)
        .unwrap();
    let mut bootp = buf[..n].to_vec();
    bootp[BOOTP_FIXED_LEN] = 0;
    assert_eq!(DhcpMessage::parse(&bootp), Err(DhcpError::NoCookie));
    let mut token_ring = buf[..n].to_vec();
    token_ring[1] = 6;
    assert_eq!(DhcpMessage::parse(&token_ring), Err(DhcpError::NotEthernet));
    let mut cut = buf[..BOOTP_FIXED_LEN + 4].to_vec();
    cut.extend_from_slice(&[option::DNS, 8, 1, 2, 3]);
    assert_eq!(
        DhcpMessage::parse(&cut),
        Err(DhcpError::BadOption(option::DNS))
    );
}

fn any_ip() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

prop_compose! {
    fn any_message()(
        op in 1u8..=2,
        xid in any::<u32>(),
        secs in any::<u16>(),
        flags in any::<u16>(),
        addrs in proptest::array::uniform4(any_ip()),
        chaddr in any::<[u8; 6]>(),
        message_type in proptest::option::of(1u8..=8),
        requested_ip in proptest::option::of(any_ip()),
        server_id in proptest::option::of(any_ip()),
        subnet_mask in proptest::option::of(any_ip()),
        router in proptest::option::of(any_ip()),
        dns in proptest::collection::vec(any_ip(), 0..=MAX_DNS_SERVERS),
        mtu in proptest::option::of(any::<u16>()),
        lease_secs in proptest::option::of(any::<u32>()),
    ) -> DhcpMessage {
        DhcpMessage {
            op, xid, secs, flags,
            ciaddr: addrs[0], yiaddr: addrs[1], siaddr: addrs[2], giaddr: addrs[3],
            chaddr: Mac(chaddr),
            message_type: message_type.and_then(MessageType::from_code),
            requested_ip, server_id, subnet_mask, router, dns, mtu, lease_secs,
        }
    }
}

proptest! {
    #[test]
    fn written_messages_read_back_the_same(m in any_message()) {
        let mut buf = [0u8; 600];
        let n = m.write(&mut buf).unwrap();
        prop_assert!(n >= MIN_BOOTP_LEN);
        prop_assert_eq!(DhcpMessage::parse(&buf[..n]).unwrap(), m);
    }

    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
        let _ = DhcpMessage::parse(&bytes);
    }

    #[test]
    fn arbitrary_options_after_a_valid_header_never_panic(
        tail in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut buf = [0u8; 600];
        client_message(MessageType::Discover).write(&mut buf).unwrap();
        let mut bytes = buf[..BOOTP_FIXED_LEN + 4].to_vec();
        bytes.extend_from_slice(&tail);
        if let Ok(mut m) = DhcpMessage::parse(&bytes) {
            m.dns.truncate(MAX_DNS_SERVERS);
            let frame = request_frame(&DhcpMessage { op: BOOTREQUEST, chaddr: VM_MAC, ..m }, Ipv4Addr::UNSPECIFIED);
            let (key, _) = parse(&frame, 1).unwrap();
            let mut out = [0u8; MAX_REPLY_FRAME];
            let _ = server().reply(&key, &frame, VM_MAC, VM_IP, &mut out);
        }
    }

    #[test]
    fn every_answer_fits_the_reply_frame(
        m in any_message(),
        dns in proptest::collection::vec(any_ip(), 0..=MAX_DNS_SERVERS),
    ) {
        let request = DhcpMessage { op: BOOTREQUEST, chaddr: VM_MAC, ..m };
        let frame = request_frame(&request, Ipv4Addr::UNSPECIFIED);
        let (key, _) = parse(&frame, 1).unwrap();
        let mut out = [0u8; MAX_REPLY_FRAME];
        let server = DhcpServer { dns, ..server() };
        if let Some(answer) = server.answer(&request, VM_MAC, VM_IP) {
            let n = server.reply(&key, &frame, VM_MAC, VM_IP, &mut out);
            prop_assert!(n.is_some(), "{answer:?} did not fit");
        }
    }
}
