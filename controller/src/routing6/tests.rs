use super::*;
use crate::program::compile_network_during;
use dataplane_core::pipeline::Pipeline;
use openflow::flow::FlowKey;
use std::net::Ipv6Addr;

fn dual_stack() -> Inventory {
    let text = include_str!("../../../docs/examples/inventory.toml");
    let mut inv = Inventory::parse(text, "inventory.toml").unwrap();
    inv.overlay_ipv6 = Some(("fd00:5c::".parse().unwrap(), 48));
    inv
}

fn address(inv: &Inventory, vm: &str) -> Ipv6Addr {
    inv.vm_ipv6(&inv.vms[vm]).unwrap()
}

fn packet(in_port: u32, dst: Ipv6Addr) -> FlowKey {
    FlowKey {
        in_port,
        eth_type: ethertype::IPV6,
        ip_proto: 6,
        ipv6_src: u128::from(Ipv6Addr::LOCALHOST),
        ipv6_dst: u128::from(dst),
        ..FlowKey::default()
    }
}

pub(crate) fn switch(inv: &Inventory, dpid: u64, migration: Option<&Migration>) -> Pipeline {
    let tables = compile_network_during(inv, "id", "p", migration).unwrap();
    Pipeline::from_flows(tables[&dpid].clone()).unwrap()
}

/// Where `key` goes on the switch: its output ports, in order.
pub(crate) fn ports(sw: &Pipeline, key: &FlowKey) -> Vec<u32> {
    sw.simulate(key).iter().map(|(port, _)| *port).collect()
}

#[test]
fn ipv6_is_routed_by_destination_128_locally_and_through_the_direct_tunnel() {
    let inv = dual_stack();
    let (web1, db1) = (address(&inv, "web1"), address(&inv, "db1"));
    let a = switch(&inv, 1, None);
    // web1 (host-a, port 1) -> db1 (host-b): into host-b's tunnel.
    assert_eq!(ports(&a, &packet(1, db1)), vec![10_002]);
    // From host-b's tunnel to web1: delivered with both MACs rewritten.
    let out = a.simulate(&packet(10_002, web1));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, 1);
    assert_eq!(out[0].1.eth_dst, inv.vms["web1"].mac);
    assert_eq!(out[0].1.eth_src, inv.gateway_mac);
    // No transit from one tunnel into another, nothing for unknown addresses.
    assert!(ports(&a, &packet(10_003, db1)).is_empty());
    assert!(ports(&a, &packet(1, "fd00:5c::99".parse().unwrap())).is_empty());
    // IPv4 routing is what it was.
    let v4 = FlowKey {
        in_port: 1,
        eth_type: ethertype::IPV4,
        ipv4_dst: u32::from(inv.vms["db1"].ip),
        ..FlowKey::default()
    };
    assert_eq!(ports(&a, &v4), vec![10_002]);
}

#[test]
fn without_an_ipv6_prefix_there_are_no_ipv6_flows() {
    let mut inv = dual_stack();
    inv.overlay_ipv6 = None;
    for host in &inv.hosts {
        assert!(ipv6_cases(&inv, host, None).is_empty());
        assert!(ipv6_plain_flows(&inv, host).is_empty());
        let tables = compile_network_during(&inv, "id", "p", None).unwrap();
        let v6 = u128::from(ethertype::IPV6);
        assert!(!tables[&host.datapath_id]
            .iter()
            .any(|f| f.matcher.exact(Field::EthType) == Some(v6)));
    }
}

#[test]
fn the_128_routes_move_with_a_migration_make_before_break() {
    let inv = dual_stack();
    let db1 = address(&inv, "db1");
    let prepared = Migration {
        vm: "db1".into(),
        from_host: "host-b".into(),
        from_port: inv.vms["db1"].port,
        to_host: "host-c".into(),
        to_port: 900,
        phase: Phase::Prepared,
    };
    // Prepared: senders still use host-b; host-c already delivers what the
    // tunnels bring to the new port.
    assert_eq!(
        ports(&switch(&inv, 1, Some(&prepared)), &packet(1, db1)),
        vec![10_002]
    );
    let c = switch(&inv, 3, Some(&prepared));
    assert_eq!(ports(&c, &packet(10_001, db1)), vec![900]);
    // Switched: every sender uses host-c; host-b forwards stragglers, even from
    // a tunnel.
    let mut moved = inv.clone();
    let vm = moved.vms.get_mut("db1").unwrap();
    vm.host = "host-c".into();
    vm.port = 900;
    let switched = Migration {
        phase: Phase::Switched,
        ..prepared
    };
    assert_eq!(
        ports(&switch(&moved, 1, Some(&switched)), &packet(1, db1)),
        vec![10_003]
    );
    assert_eq!(
        ports(&switch(&moved, 2, Some(&switched)), &packet(10_001, db1)),
        vec![10_003]
    );
    assert_eq!(
        ports(&switch(&moved, 3, Some(&switched)), &packet(10_001, db1)),
        vec![900]
    );
    // Done: host-b no longer forwards from tunnels (no transit).
    assert!(ports(&switch(&moved, 2, None), &packet(10_001, db1)).is_empty());
}

#[test]
fn a_vm_with_an_address_of_its_own_is_routed_by_both() {
    let mut inv = dual_stack();
    let own: Ipv6Addr = "fd00:5c:0:2::1".parse().unwrap();
    inv.vms.get_mut("db1").unwrap().ipv6 = Some(own);
    let slaac = dataplane_core::nd::slaac_address("fd00:5c::".parse().unwrap(), inv.vms["db1"].mac);
    assert_eq!(
        inv.vm_ipv6(&inv.vms["db1"]),
        Some(own),
        "its own is its primary"
    );
    let a = switch(&inv, 1, None);
    let b = switch(&inv, 2, None);
    for dst in [own, slaac] {
        assert_eq!(ports(&a, &packet(1, dst)), vec![10_002], "{dst}");
        assert_eq!(
            ports(&b, &packet(10_001, dst)),
            vec![inv.vms["db1"].port],
            "{dst}"
        );
    }
}

#[test]
fn ipv6_from_a_gateways_uplink_reaches_no_vm() {
    let mut inv = dual_stack();
    let host = inv.hosts[0].clone();
    let uplink = 40;
    inv.gateways.insert(
        host.name.clone(),
        crate::model::Gateway {
            host: host.name.clone(),
            port: uplink,
            interface: "up0".into(),
            netns: None,
            address: "192.0.2.2".parse().unwrap(),
            mac: openflow::flow::Mac([2, 0, 0, 0, 0, 40]),
            router_mac: openflow::flow::Mac([2, 0, 0, 0, 0, 41]),
            public_prefix: ("203.0.113.0".parse().unwrap(), 24),
            address6: None,
            public_ipv6_prefix: None,
        },
    );
    let sw = switch(&inv, host.datapath_id, None);
    let mut checked = 0;
    for vm in inv.vms.values() {
        let to = address(&inv, &vm.name);
        // The observer works: the same packet is routed from where it may come
        // (a tunnel for a VM of this host, a VM port for a VM elsewhere).
        let allowed = if vm.host == host.name {
            inv.hosts[1].tunnel_port()
        } else {
            inv.vms.values().find(|v| v.host == host.name).unwrap().port
        };
        assert!(!ports(&sw, &packet(allowed, to)).is_empty(), "{}", vm.name);
        assert_eq!(
            ports(&sw, &packet(uplink, to)),
            Vec::<u32>::new(),
            "{}",
            vm.name
        );
        checked += 1;
    }
    assert!(checked > 0);
}
