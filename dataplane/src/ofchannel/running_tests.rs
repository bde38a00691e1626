//! Tests of the channel against running switches on their own threads: the
//! latency probe over real tunnels and the tunnel statistics they answer.

use super::backend::SwitchBackend;
use super::info::DatapathInfo;
use super::tests::ask_tunnel_stats;
use dataplane_core::pipeline::Pipeline;
use openflow::flow::Mac;
use openflow::wire::TunnelStatsEntry;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Runs a switch over `tunnels` (no local ports) on its own thread.
pub(super) fn spawn_switch(
    datapath_id: u64,
    tunnels: Option<crate::tunnel::Tunnels>,
) -> (SwitchBackend, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let mut switch = crate::switch::Switch::new(crate::switch::SwitchParams {
            datapath_id,
            ports: vec![],
            probes: vec![],
            tunnels,
            arp: None,
            port_arp: vec![],
            dhcp: None,
            nd: Default::default(),
            bindings: Vec::new(),
            gateway_mac: Mac([2, 0, 0, 0, 0, 1]),
            gateway_ip: std::net::Ipv4Addr::new(100, 64, 0, 1),
            pipeline: Pipeline::new(1),
            workers: 1,
        })
        .unwrap();
        tx.send(switch.handle()).unwrap();
        switch.run(&AtomicBool::new(false)).unwrap();
    });
    let handle = rx.recv().unwrap();
    let info = DatapathInfo {
        datapath_id,
        name: format!("switch-{datapath_id}"),
        n_tables: 1,
    };
    (SwitchBackend::new(handle, info), thread)
}

fn secret(b: u8) -> boringtun::x25519::StaticSecret {
    boringtun::x25519::StaticSecret::from([b; 32])
}

fn public(b: u8) -> [u8; 32] {
    boringtun::x25519::PublicKey::from(&secret(b)).to_bytes()
}

/// A tunnel peer on `port` with the public key of secret `key` bytes.
fn peer(
    port: u32,
    name: &str,
    key: [u8; 32],
    endpoint: Option<std::net::SocketAddr>,
) -> crate::tunnel::PeerConfig {
    crate::tunnel::PeerConfig {
        port,
        name: name.into(),
        public_key: key,
        endpoint,
        keepalive: None,
    }
}

/// With the latency probe, the side that only answered at start initiates a
/// handshake of its own within a period, so both sides have a round trip; and
/// the initiator's keeps being refreshed.
#[test]
fn the_latency_probe_gives_both_sides_a_fresh_round_trip() {
    use crate::tunnel::Tunnels;
    let loopback = "127.0.0.1:0".parse().unwrap();
    let probe = Some(Duration::from_millis(300));
    let mut b_tunnels = Tunnels::new(
        loopback,
        secret(2),
        vec![peer(10_001, "a", public(1), None)],
        1420,
    )
    .unwrap();
    b_tunnels.set_latency_probe(probe);
    let b_addr = b_tunnels.local_addr().unwrap();
    let mut a_tunnels = Tunnels::new(
        loopback,
        secret(1),
        vec![peer(10_002, "b", public(2), Some(b_addr))],
        1420,
    )
    .unwrap();
    a_tunnels.set_latency_probe(probe);
    let (b_backend, b_thread) = spawn_switch(2, Some(b_tunnels));
    let (a_backend, a_thread) = spawn_switch(1, Some(a_tunnels));
    // Wait (not a timing assertion) until b, which learns a's endpoint from a's
    // first initiation, has probed a itself.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (a, b) = loop {
        let a = ask_tunnel_stats(&a_backend);
        let b = ask_tunnel_stats(&b_backend);
        if b[0].handshake_rtt_us.is_some() || Instant::now() > deadline {
            break (a, b);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(a[0].handshake_rtt_us.is_some(), "{a:?}");
    assert!(b[0].handshake_rtt_us.is_some(), "b probed a: {b:?}");
    // Handshakes keep coming: the age of the last one goes back down, again and
    // again. Waited for with a generous deadline, so a slow machine only makes the
    // test slower; how fresh a handshake is at any moment is not asserted.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut refreshed = 0;
    let mut last_age = ask_tunnel_stats(&a_backend)[0].since_handshake_ms;
    while refreshed < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let age = ask_tunnel_stats(&a_backend)[0].since_handshake_ms;
        if let (Some(before), Some(now)) = (last_age, age) {
            if now < before {
                refreshed += 1;
            }
        }
        last_age = age;
    }
    assert_eq!(
        refreshed, 3,
        "a's handshake was renewed three times by its probe"
    );
    for (backend, thread) in [(a_backend, a_thread), (b_backend, b_thread)] {
        backend.handle.stop();
        thread.join().unwrap();
    }
}

/// Two switches on loopback: `a` initiates a handshake to `b` at start and has a
/// second peer that never answers (no endpoint). Their answers come from the
/// switch threads' tunnel tables.
#[test]
fn running_switches_answer_tunnel_stats_from_their_tunnels() {
    use crate::tunnel::Tunnels;
    let loopback = "127.0.0.1:0".parse().unwrap();
    let b_tunnels = Tunnels::new(
        loopback,
        secret(2),
        vec![peer(10_001, "a", public(1), None)],
        1420,
    )
    .unwrap();
    let b_addr = b_tunnels.local_addr().unwrap();
    let a_tunnels = Tunnels::new(
        loopback,
        secret(1),
        vec![
            peer(10_002, "b", public(2), Some(b_addr)),
            peer(10_003, "c", public(3), None),
        ],
        1420,
    )
    .unwrap();
    let (b_backend, b_thread) = spawn_switch(2, Some(b_tunnels));
    let (a_backend, a_thread) = spawn_switch(1, Some(a_tunnels));
    let (none_backend, none_thread) = spawn_switch(3, None);

    // Wait (not a timing assertion) for the handshake a initiated at start.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (a, b) = loop {
        let a = ask_tunnel_stats(&a_backend);
        let b = ask_tunnel_stats(&b_backend);
        let done = a[0].since_handshake_ms.is_some() && b[0].since_handshake_ms.is_some();
        if done || Instant::now() > deadline {
            break (a, b);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let ports = |v: &[TunnelStatsEntry]| v.iter().map(|e| e.port_no).collect::<Vec<_>>();
    assert_eq!(ports(&a), vec![10_002, 10_003]);
    assert_eq!(ports(&b), vec![10_001]);
    // a initiated: it has a round trip, in whole milliseconds carried as µs.
    let rtt = a[0]
        .handshake_rtt_us
        .expect("a measured the handshake to b");
    assert_eq!(rtt % 1000, 0, "{rtt}");
    assert!(a[0].since_handshake_ms.is_some(), "{a:?}");
    // b only answered: a session but no round trip of its own.
    assert!(b[0].since_handshake_ms.is_some(), "{b:?}");
    assert_eq!(b[0].handshake_rtt_us, None);
    // c never answered.
    assert_eq!(
        (
            a[1].handshake_rtt_us,
            a[1].since_handshake_ms,
            a[1].rx_bytes
        ),
        (None, None, 0)
    );
    // A switch without tunnels answers an empty list.
    assert_eq!(ask_tunnel_stats(&none_backend), vec![]);

    for (backend, thread) in [
        (a_backend, a_thread),
        (b_backend, b_thread),
        (none_backend, none_thread),
    ] {
        backend.handle.stop();
        thread.join().unwrap();
    }
}

/// The controller's bind-port reaches the switch thread: a port the switch does
/// not have, or a binding no VM can have, is refused with the error the session
/// sends back.
#[test]
fn bind_port_is_refused_for_a_missing_port_and_for_group_addresses() {
    use super::backend::Backend;
    use openflow::wire::{BadRequest, BindPort, ErrorCode};
    let (backend, thread) = spawn_switch(7, None);
    let bind = |mac| BindPort {
        port: 5,
        mac: Some(mac),
        ips: vec![std::net::Ipv4Addr::new(100, 64, 0, 10)],
        ipv6: Vec::new(),
    };
    assert_eq!(
        backend.bind_port(bind(Mac([2, 0, 0, 0, 0, 9]))).unwrap(),
        Err(ErrorCode::BadRequest(BadRequest::BadPort))
    );
    assert_eq!(
        backend.bind_port(bind(Mac::BROADCAST)).unwrap(),
        Err(ErrorCode::BadRequest(BadRequest::BadLen))
    );
    backend.handle.stop();
    thread.join().unwrap();
}
