//! The peer logic without sockets: two hosts' session states exchange datagrams
//! in memory.

use super::*;
use openflow::flow::FlowMatch;
use openflow::FlowSpec;

const PEER_PORT: PortNo = 10_002;

fn ip(a: [u8; 4]) -> u128 {
    u128::from(u32::from_be_bytes(a))
}

fn secret(b: u8) -> StaticSecret {
    StaticSecret::from([b; 32])
}

fn public(b: u8) -> [u8; 32] {
    PublicKey::from(&secret(b)).to_bytes()
}

fn addr(last: u8) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, last], 51_820))
}

/// A minimal IPv4/UDP packet from `src` to `dst` carrying `payload`.
fn ipv4_packet(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let total = 28 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&u16::try_from(total).unwrap().to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p[24..26].copy_from_slice(&u16::try_from(8 + payload.len()).unwrap().to_be_bytes());
    p[28..].copy_from_slice(payload);
    p
}

/// Host A (key 1, at .1) knows where B is; host B (key 2, at .2) learns A's
/// endpoint from A's first authenticated message. Each sees the other on port
/// `PEER_PORT`.
fn two_hosts() -> (PeerSessions, PeerSessions) {
    let now = Instant::now();
    let a = PeerSessions::new(
        secret(1),
        vec![PeerConfig {
            port: PEER_PORT,
            name: "host-b".into(),
            public_key: public(2),
            endpoint: Some(addr(2)),
            keepalive: None,
        }],
        now,
    );
    let b = PeerSessions::new(
        secret(2),
        vec![PeerConfig {
            port: PEER_PORT,
            name: "host-a".into(),
            public_key: public(1),
            endpoint: None,
            keepalive: None,
        }],
        now,
    );
    (a, b)
}

/// Hands every datagram in `outbox` (sent from `from`) to `to`; returns the
/// packets it delivered, and what it answered in `reply`.
fn deliver(
    outbox: &mut Outbox,
    from: SocketAddr,
    to: &mut PeerSessions,
    reply: &mut Outbox,
) -> Vec<(usize, Vec<u8>)> {
    let mut packets = Vec::new();
    let mut dst = vec![0u8; 65_536];
    let datagrams: Vec<_> = outbox.drain().collect();
    for (_, datagram) in datagrams {
        if let Received::Data { peer, len } = to.receive(&datagram, from, &mut dst, reply) {
            packets.push((peer, dst[..len].to_vec()));
        }
    }
    packets
}

/// Runs the handshake that A's first packet starts, and returns what B received.
fn handshake_with_first_packet(
    a: &mut PeerSessions,
    b: &mut PeerSessions,
    packet: &[u8],
) -> Vec<(usize, Vec<u8>)> {
    let mut buf = vec![0u8; 65_536];
    let sealed = a.seal(0, packet, &mut buf).expect("A knows B's endpoint");
    assert_eq!(sealed.outcome, Sent::Handshaking, "no session yet");
    assert_eq!(sealed.to, addr(2));
    let (mut a_out, mut b_out) = (Outbox::default(), Outbox::default());
    a_out.push(sealed.to, &buf[..sealed.len]);
    // Initiation to B, response to A, then A's keepalive and queued packet to B.
    assert!(deliver(&mut a_out, addr(1), b, &mut b_out).is_empty());
    assert!(!b_out.is_empty(), "B answers the initiation");
    assert!(deliver(&mut b_out, addr(2), a, &mut a_out).is_empty());
    deliver(&mut a_out, addr(1), b, &mut b_out)
}

#[test]
fn a_handshake_between_two_peers_delivers_a_packet_both_ways() {
    let (mut a, mut b) = two_hosts();
    let a_to_b = ipv4_packet([10, 0, 1, 5], [10, 0, 2, 5], b"to b");
    let got = handshake_with_first_packet(&mut a, &mut b, &a_to_b);
    assert_eq!(
        got,
        vec![(0, a_to_b)],
        "the queued packet arrives after the handshake"
    );
    assert_eq!(b.peers()[0].endpoint, Some(addr(1)), "B learned where A is");

    let b_to_a = ipv4_packet([10, 0, 2, 5], [10, 0, 1, 5], b"to a");
    let mut buf = vec![0u8; 65_536];
    let sealed = b
        .seal(0, &b_to_a, &mut buf)
        .expect("B learned A's endpoint");
    assert_eq!(sealed.outcome, Sent::Sent, "the session stands");
    assert_eq!(sealed.to, addr(1));
    let (mut b_out, mut a_out) = (Outbox::default(), Outbox::default());
    b_out.push(sealed.to, &buf[..sealed.len]);
    assert_eq!(
        deliver(&mut b_out, addr(2), &mut a, &mut a_out),
        vec![(0, b_to_a)]
    );
    assert!(a.status()[0].since_handshake.is_some());
}

#[test]
fn anti_spoofing_drops_a_packet_from_an_address_not_routed_to_that_peer() {
    let (mut a, mut b) = two_hosts();
    // B's tables route 10.0.1.0/24 to A.
    let ipv4 = FlowMatch::any().with(Field::EthType, 0x800);
    let pipeline = Pipeline::from_flows_at(
        vec![FlowSpec::new(
            0,
            10,
            ipv4.with_prefix32(Field::Ipv4Dst, 0x0a00_0100, 24),
            vec![Action::output(PEER_PORT)],
        )],
        Instant::now(),
    )
    .unwrap();
    b.refresh_allowed(&pipeline);

    let spoofed = ipv4_packet([10, 0, 9, 9], [10, 0, 2, 5], b"spoofed");
    let got = handshake_with_first_packet(&mut a, &mut b, &spoofed);
    assert_eq!(got.len(), 1, "it decrypts: the sender is authentic");
    assert_eq!(b.check_source(got[0].0, &got[0].1), SourceCheck::Spoofed);

    let honest = ipv4_packet([10, 0, 1, 5], [10, 0, 2, 5], b"honest");
    assert_eq!(
        b.check_source(0, &honest),
        SourceCheck::Allowed(ethertype::IPV4)
    );
    assert_eq!(b.check_source(0, &[0x10; 8]), SourceCheck::NotIp);
}

#[test]
fn a_datagram_for_no_peer_is_invalid_and_answers_nothing() {
    let (_, mut b) = two_hosts();
    let mut out = Outbox::default();
    let mut dst = vec![0u8; 2048];
    let got = b.receive(&[4, 0, 0, 0, 9, 9, 9, 9], addr(1), &mut dst, &mut out);
    assert_eq!(got, Received::Invalid);
    assert!(out.is_empty());
}

#[test]
fn a_peer_may_send_what_the_tables_route_to_it_or_accept_from_it_by_source() {
    let peer = PeerConfig {
        port: PEER_PORT,
        name: "host-b".into(),
        public_key: PublicKey::from(&StaticSecret::from([9u8; 32])).to_bytes(),
        endpoint: None,
        keepalive: None,
    };
    let mut sessions = PeerSessions::new(StaticSecret::from([7u8; 32]), vec![peer], Instant::now());
    let ipv4 = FlowMatch::any().with(Field::EthType, 0x800);
    let flows = vec![
        // Routed to the peer: its VMs.
        FlowSpec::new(
            0,
            10,
            ipv4.with_prefix32(Field::Ipv4Dst, 0x6440_0200, 24),
            vec![Action::output(PEER_PORT)],
        ),
        // Accepted from the peer by source and forwarded (a gateway taking a
        // migrating VM's traffic from its new host).
        FlowSpec::new(
            0,
            10,
            ipv4.with(Field::InPort, u128::from(PEER_PORT))
                .with(Field::Ipv4Src, ip([100, 64, 1, 1])),
            vec![Action::output(100)],
        ),
        // Matched from the peer by source but dropped: not an acceptance.
        FlowSpec::new(
            0,
            10,
            ipv4.with(Field::InPort, u128::from(PEER_PORT))
                .with(Field::Ipv4Src, ip([100, 64, 3, 3])),
            vec![],
        ),
    ];
    let pipeline = Pipeline::from_flows_at(flows, Instant::now()).unwrap();
    sessions.refresh_allowed(&pipeline);
    assert!(
        sessions.source_allowed(0, ip([100, 64, 2, 7]), false),
        "routed"
    );
    assert!(
        sessions.source_allowed(0, ip([100, 64, 1, 1]), false),
        "accepted"
    );
    assert!(
        !sessions.source_allowed(0, ip([100, 64, 3, 3]), false),
        "dropped"
    );
    assert!(
        !sessions.source_allowed(0, ip([100, 64, 9, 9]), false),
        "unknown"
    );
}

#[test]
fn split_over_two_workers_each_runs_its_own_peers_and_hands_the_others_over() {
    let now = Instant::now();
    let (mut a, _) = two_hosts();
    // B's peer 0 (host C) is worker 0's, peer 1 (host A) worker 1's.
    let peer = |port, name: &str, key, endpoint| PeerConfig {
        port,
        name: name.into(),
        public_key: public(key),
        endpoint,
        keepalive: None,
    };
    let mut b0 = PeerSessions::new(
        secret(2),
        vec![
            peer(PEER_PORT + 1, "host-c", 3, Some(addr(3))),
            peer(PEER_PORT, "host-a", 1, None),
        ],
        now,
    );
    let mut parts = b0.split(2, now);
    assert_eq!(parts.len(), 1);
    let mut b1 = parts.remove(0);
    assert!(b0.owns(0) && !b0.owns(1) && b1.owns(1) && !b1.owns(0));
    assert_eq!(b1.peers().len(), 2, "every part lists every peer");

    let packet = ipv4_packet([10, 0, 1, 5], [10, 0, 2, 5], b"to b");
    let mut buf = vec![0u8; 65_536];
    let sealed = a.seal(0, &packet, &mut buf).expect("A knows B's endpoint");
    let initiation = buf[..sealed.len].to_vec();
    // The kernel steers initiations to worker 0, which does not own A.
    let (mut dst, mut b_out) = (vec![0u8; 65_536], Outbox::default());
    let got = b0.receive(&initiation, addr(1), &mut dst, &mut b_out);
    let Received::Foreign { peer: 1, from, len } = got else {
        panic!("worker 0 hands A's initiation over: {got:?}");
    };
    assert_eq!((from, &dst[..len]), (addr(1), &initiation[..]));
    assert!(b_out.is_empty(), "worker 0 answers nothing itself");
    let got = b1.receive_for(1, &initiation, from, &mut dst, &mut b_out);
    assert_eq!(got, Received::Control, "worker 1 answers it");
    assert_eq!(
        b0.receive_for(1, &initiation, from, &mut dst, &mut b_out),
        Received::Invalid,
        "only the owner takes a handed datagram"
    );

    // A completes the handshake and sends its queued packet, whose receiver
    // index names B's peer 1: what the steering program sends to worker 1.
    let mut a_out = Outbox::default();
    assert!(deliver(&mut b_out, addr(2), &mut a, &mut a_out).is_empty());
    let datagrams: Vec<_> = a_out.drain().collect();
    let data = datagrams
        .iter()
        .map(|(_, d)| d)
        .find(|d| d.first() == Some(&4) && d.len() > 32)
        .expect("the queued packet");
    let receiver_idx = u32::from_le_bytes(data[4..8].try_into().unwrap());
    assert_eq!(
        super::super::steering::owner_of(usize::try_from(receiver_idx >> 8).unwrap(), 2),
        1
    );
    let got = b0.receive(data, addr(1), &mut dst, &mut b_out);
    assert!(matches!(got, Received::Foreign { peer: 1, .. }), "{got:?}");
    let got = b1.receive(data, addr(1), &mut dst, &mut b_out);
    assert!(matches!(got, Received::Data { peer: 1, .. }), "{got:?}");

    // Each part reports, starts handshakes with and times only its own peers.
    let names = |s: &PeerSessions| s.status().into_iter().map(|p| p.name).collect::<Vec<_>>();
    assert_eq!(names(&b0), ["host-c"]);
    assert_eq!(names(&b1), ["host-a"]);
    let (mut out0, mut out1) = (Outbox::default(), Outbox::default());
    b0.initiate_all(&mut out0);
    b1.initiate_all(&mut out1);
    let to = |o: &mut Outbox| o.drain().map(|(to, _)| to).collect::<Vec<_>>();
    assert_eq!(to(&mut out0), [addr(3)]);
    assert_eq!(
        to(&mut out1),
        [addr(1)],
        "A's endpoint, learned by worker 1"
    );
}
