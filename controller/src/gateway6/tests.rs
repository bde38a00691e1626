use super::*;
use crate::model::Phase;
use crate::routing6::tests::{ports, switch};
use openflow::flow::{ethertype, FlowKey};

const PUBLIC: &str = "2001:db8:100::10";
const CLIENT: &str = "2001:db8:ff00::10";
const UPLINK: u32 = 100;

/// The example inventory, dual stack, host-a's uplink routing
/// 2001:db8:100::/48 and db1 (host-b, port 1) holding [`PUBLIC`].
fn public_ipv6() -> Inventory {
    let text = include_str!("../../../docs/examples/inventory.toml");
    let mut inv = Inventory::parse(text, "inventory.toml").unwrap();
    inv.overlay_ipv6 = Some(("fd00:5c::".parse().unwrap(), 48));
    let gw = inv.gateways.get_mut("host-a").unwrap();
    assert_eq!(gw.port, UPLINK);
    gw.address6 = Some("2001:db8:ff::1".parse().unwrap());
    gw.public_ipv6_prefix = Some(("2001:db8:100::".parse().unwrap(), 48));
    let mut db1 = inv.vms["db1"].clone();
    db1.public_ipv6 = Some(PUBLIC.parse().unwrap());
    inv.add_vm(db1).unwrap();
    inv
}

fn ip(text: &str) -> u128 {
    u128::from(text.parse::<Ipv6Addr>().unwrap())
}

fn packet(in_port: u32, src: &str, dst: &str) -> FlowKey {
    FlowKey {
        in_port,
        eth_type: ethertype::IPV6,
        ip_proto: 6,
        ipv6_src: ip(src),
        ipv6_dst: ip(dst),
        ..FlowKey::default()
    }
}

#[test]
fn the_internet_reaches_an_owned_public_address_and_nothing_else() {
    let inv = public_ipv6();
    let a = switch(&inv, 1, None);
    // To db1's public address: the tunnel to host-b, unchanged (no NAT).
    let out = a.simulate(&packet(UPLINK, CLIENT, PUBLIC));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, 10_002);
    assert_eq!(out[0].1.ipv6_dst, ip(PUBLIC));
    assert_eq!(out[0].1.ipv6_src, ip(CLIENT));
    // Nothing else from the uplink: an unowned public address, the overlay,
    // a source claiming the public prefix or the overlay.
    let db1_ula = inv.vm_ipv6(&inv.vms["db1"]).unwrap().to_string();
    for (src, dst) in [
        (CLIENT, "2001:db8:100::99"),
        (CLIENT, db1_ula.as_str()),
        ("2001:db8:100::99", PUBLIC),
        ("fd00:5c::1", PUBLIC),
    ] {
        assert!(
            ports(&a, &packet(UPLINK, src, dst)).is_empty(),
            "{src} -> {dst}"
        );
    }
}

#[test]
fn a_vm_sources_only_its_own_public_address_towards_the_internet() {
    let inv = public_ipv6();
    let (a, b) = (switch(&inv, 1, None), switch(&inv, 2, None));
    // db1 on host-b: into the tunnel to its home gateway (host-a).
    assert_eq!(ports(&b, &packet(1, PUBLIC, CLIENT)), [10_001]);
    let db1_ula = inv.vm_ipv6(&inv.vms["db1"]).unwrap().to_string();
    assert!(ports(&b, &packet(1, &db1_ula, CLIENT)).is_empty());
    // At host-a: out of the uplink to the router, addresses unchanged.
    let out = a.simulate(&packet(10_002, PUBLIC, CLIENT));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, UPLINK);
    let gw = &inv.gateways["host-a"];
    assert_eq!(out[0].1.eth_dst, gw.router_mac);
    assert_eq!(out[0].1.eth_src, gw.mac);
    assert_eq!(out[0].1.ipv6_src, ip(PUBLIC));
    // Not from a tunnel db1 is not behind, nor to a non-global destination.
    assert!(ports(&a, &packet(10_003, PUBLIC, CLIENT)).is_empty());
    assert!(ports(&a, &packet(10_002, PUBLIC, "fd00:5c::99")).is_empty());
    // Another VM reaches the public address over the overlay, not the uplink.
    let web1_ula = inv.vm_ipv6(&inv.vms["web1"]).unwrap().to_string();
    assert_eq!(ports(&a, &packet(1, &web1_ula, PUBLIC)), [10_002]);
}

#[test]
fn the_public_address_moves_with_its_vm() {
    let inv = public_ipv6();
    let mut moved = inv.clone();
    moved.vms.get_mut("db1").unwrap().host = "host-c".into();
    moved.vms.get_mut("db1").unwrap().port = 7;
    let migration = |phase| Migration {
        vm: "db1".into(),
        from_host: "host-b".into(),
        from_port: 1,
        to_host: "host-c".into(),
        to_port: 7,
        phase,
    };
    // Prepared: still to host-b; host-a takes db1's traffic from both hosts.
    let prepared = migration(Phase::Prepared);
    let a = switch(&inv, 1, Some(&prepared));
    assert_eq!(ports(&a, &packet(UPLINK, CLIENT, PUBLIC)), [10_002]);
    assert_eq!(ports(&a, &packet(10_003, PUBLIC, CLIENT)), [UPLINK]);
    let c = switch(&inv, 3, Some(&prepared));
    assert_eq!(ports(&c, &packet(10_001, CLIENT, PUBLIC)), [7]);
    assert_eq!(ports(&c, &packet(7, PUBLIC, CLIENT)), [10_001]);
    // Switched: the gateway sends to host-c; the old host forwards stragglers.
    let switched = migration(Phase::Switched);
    let a = switch(&moved, 1, Some(&switched));
    assert_eq!(ports(&a, &packet(UPLINK, CLIENT, PUBLIC)), [10_003]);
    let b = switch(&moved, 2, Some(&switched));
    assert_eq!(ports(&b, &packet(10_001, CLIENT, PUBLIC)), [10_003]);
    // Done: only the new place sends out.
    let a = switch(&moved, 1, None);
    assert_eq!(ports(&a, &packet(10_003, PUBLIC, CLIENT)), [UPLINK]);
    assert!(ports(&a, &packet(10_002, PUBLIC, CLIENT)).is_empty());
}

#[test]
fn public_ipv6_is_refused_outside_every_gateways_prefix_and_twice() {
    let inv = public_ipv6();
    let mut web1 = inv.vms["web1"].clone();
    web1.public_ipv6 = Some("2001:db8:200::1".parse().unwrap());
    let e = inv.clone().add_vm(web1.clone()).unwrap_err().to_string();
    assert!(
        e.contains("vm.public_ipv6") && e.contains("no gateway"),
        "{e}"
    );
    web1.public_ipv6 = Some(PUBLIC.parse().unwrap());
    let e = inv.clone().add_vm(web1.clone()).unwrap_err().to_string();
    assert!(
        e.contains("vm.public_ipv6") && e.contains("already used by VM `db1`"),
        "{e}"
    );
    web1.public_ipv6 = Some("2001:db8:ff::1".parse().unwrap());
    let e = inv.clone().add_vm(web1).unwrap_err().to_string();
    assert!(e.contains("no gateway"), "{e}");
}

#[test]
fn a_public_ipv6_address_moving_to_a_cloud_with_a_gateway_is_announced_there() {
    let mut inv = public_ipv6();
    let mut gateway_c = inv.gateways["host-a"].clone();
    gateway_c.host = "host-c".into();
    gateway_c.address = "198.51.100.194".parse().unwrap();
    gateway_c.address6 = Some("2001:db8:fe::1".parse().unwrap());
    inv.gateways.insert("host-c".into(), gateway_c);
    let from_b = |inv: &Inventory| {
        crate::gateway::moves(inv, "db1", "host-b")
            .into_iter()
            .filter(|m| m.public.is_ipv6())
            .collect::<Vec<_>>()
    };
    assert!(from_b(&inv).is_empty(), "host-a stays home from cloud B");
    let db1 = inv.vms.get_mut("db1").unwrap();
    db1.host = "host-c".into();
    db1.port = 7;
    let moved = from_b(&inv);
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].public, PUBLIC.parse::<Ipv6Addr>().unwrap());
    assert_eq!(
        (
            moved[0].gateway.as_str(),
            moved[0].next_hop.to_string().as_str()
        ),
        ("host-c", "2001:db8:fe::1")
    );
    // Its traffic now leaves through host-c's own uplink; host-a still lets
    // the internet in and tunnels it to host-c.
    let c = switch(&inv, 3, None);
    assert_eq!(ports(&c, &packet(7, PUBLIC, CLIENT)), [UPLINK]);
    let a = switch(&inv, 1, None);
    assert_eq!(ports(&a, &packet(UPLINK, CLIENT, PUBLIC)), [10_003]);
}

#[test]
fn the_policy_decides_for_the_internets_ipv6_on_the_gateway_host_too() {
    // web1 runs on host-a, the gateway itself: the internet's packets to its
    // public address reach it through its compiled route, which the policy
    // guards, never through a plain flow beside the policy.
    const WEB1_PUBLIC: &str = "2001:db8:100::11";
    let mut inv = public_ipv6();
    let mut web1 = inv.vms["web1"].clone();
    assert_eq!(web1.host, "host-a");
    web1.public_ipv6 = Some(WEB1_PUBLIC.parse().unwrap());
    inv.add_vm(web1.clone()).unwrap();
    let open = switch(&inv, 1, None);
    assert_eq!(
        ports(&open, &packet(UPLINK, CLIENT, WEB1_PUBLIC)),
        vec![web1.port]
    );
    let policy = format!("filter not (ethType = 0x86dd and ip6Dst = {WEB1_PUBLIC})");
    let tables = crate::program::compile_network_during(&inv, &policy, "policy.kat", None).unwrap();
    let closed = dataplane_core::pipeline::Pipeline::from_flows(tables[&1].clone()).unwrap();
    assert!(ports(&closed, &packet(UPLINK, CLIENT, WEB1_PUBLIC)).is_empty());
    // The policy closed that address only: db1's stays reachable.
    assert_eq!(
        ports(&closed, &packet(UPLINK, CLIENT, PUBLIC)),
        vec![10_002]
    );
}
