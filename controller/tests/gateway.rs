//! Gateways end to end: what the compiled network of every switch does with
//! public addresses (inbound NAT, outbound through the home gateway, counted
//! drops), before, during and after a migration, simulated on `scd`'s tables.

use controller::gateway::{
    moves, Announcements, Move, GATEWAY_DROP_PRIORITY, GATEWAY_OUTBOUND_PRIORITY,
};
use controller::model::{Inventory, Migration, Phase, Vm};
use controller::program::{compile_network, compile_network_during};
use dataplane_core::pipeline::Pipeline;
use openflow::flow::{ethertype, Action, Field, Mac};
use openflow::flow::{FlowKey, Instruction};
use openflow::FlowSpec;
use std::net::Ipv4Addr;

const UPLINK: u32 = 100;
const PUBLIC: [u8; 4] = [203, 0, 113, 10];
const CLIENT: [u8; 4] = [198, 51, 100, 10];

fn inventory() -> Inventory {
    Inventory::parse(
        include_str!("../../docs/examples/inventory.toml"),
        "inventory.toml",
    )
    .unwrap()
}

fn ip(a: [u8; 4]) -> u32 {
    u32::from_be_bytes(a)
}

fn packet(in_port: u32, src: [u8; 4], dst: [u8; 4]) -> FlowKey {
    FlowKey {
        in_port,
        eth_type: ethertype::IPV4,
        ip_proto: 6,
        ipv4_src: ip(src),
        ipv4_dst: ip(dst),
        ..FlowKey::default()
    }
}

/// Puts web1 on port `port` of `host`.
fn place_web1(inv: &mut Inventory, host: &str, port: u32) {
    let web1 = inv.vms.get_mut("web1").unwrap();
    web1.host = host.into();
    web1.port = port;
}

/// web1 moving between two (host, port)s.
fn web1_moving(from: (&str, u32), to: (&str, u32), phase: Phase) -> Migration {
    Migration {
        vm: "web1".into(),
        from_host: from.0.into(),
        from_port: from.1,
        to_host: to.0.into(),
        to_port: to.1,
        phase,
    }
}

#[test]
fn inbound_is_translated_and_follows_the_vm() {
    let inv = inventory();
    let gw = &inv.gateways["host-a"];
    assert_eq!(gw.port, UPLINK);
    let tables = compile_network(&inv, "id", "p").unwrap();
    let a = Pipeline::from_flows(tables[&1].clone()).unwrap();
    // web1 runs on the gateway host: delivered to its port, addressed to it.
    let out = a.simulate(&packet(UPLINK, CLIENT, PUBLIC));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, 1);
    assert_eq!(out[0].1.ipv4_dst, u32::from(inv.vms["web1"].ip));
    assert_eq!(out[0].1.ipv4_src, ip(CLIENT));
    assert_eq!(out[0].1.eth_dst, inv.vms["web1"].mac);

    // After web1 moved to host-c, the same packet leaves through the tunnel.
    let mut moved = inv.clone();
    place_web1(&mut moved, "host-c", 7);
    let migration = web1_moving(("host-a", 1), ("host-c", 7), Phase::Switched);
    let tables = compile_network_during(&moved, "id", "p", Some(&migration)).unwrap();
    let a = Pipeline::from_flows(tables[&1].clone()).unwrap();
    let out = a.simulate(&packet(UPLINK, CLIENT, PUBLIC));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, 10_003);
    assert_eq!(out[0].1.ipv4_dst, u32::from(moved.vms["web1"].ip));
    // host-c delivers what the gateway's tunnel brings, with the client's
    // address as source.
    let c = Pipeline::from_flows(tables[&3].clone()).unwrap();
    let out = c.simulate(&packet(10_001, CLIENT, [100, 64, 1, 1]));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, 7);
}

#[test]
fn outbound_leaves_the_gateway_with_the_public_source() {
    let mut inv = inventory();
    // web1 runs on host-b; its gateway is host-a.
    place_web1(&mut inv, "host-b", 5);
    let tables = compile_network(&inv, "id", "p").unwrap();
    let b = Pipeline::from_flows(tables[&2].clone()).unwrap();
    let out = b.simulate(&packet(5, [100, 64, 1, 1], CLIENT));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, 10_001, "to the gateway's tunnel");
    assert_eq!(out[0].1.ipv4_src, ip([100, 64, 1, 1]));
    // A VM without a public address cannot reach the internet.
    assert!(b.simulate(&packet(1, [100, 64, 2, 1], CLIENT)).is_empty());

    let a = Pipeline::from_flows(tables[&1].clone()).unwrap();
    let gw = &inv.gateways["host-a"];
    let out = a.simulate(&packet(10_002, [100, 64, 1, 1], CLIENT));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, UPLINK);
    assert_eq!(out[0].1.ipv4_src, ip(PUBLIC));
    assert_eq!(out[0].1.ipv4_dst, ip(CLIENT));
    assert_eq!(
        (out[0].1.eth_src, out[0].1.eth_dst),
        (gw.mac, gw.router_mac)
    );
    // Overlay traffic of the same VM is still routed, not translated.
    let out = a.simulate(&packet(10_002, [100, 64, 1, 1], [100, 64, 3, 1]));
    assert!(out.is_empty(), "no transit between tunnels");
}

#[test]
fn unowned_and_spoofed_public_addresses_are_dropped_by_counted_flows() {
    let inv = inventory();
    let tables = compile_network(&inv, "id", "p").unwrap();
    let drops = |dpid: u64| -> Vec<FlowSpec> {
        tables[&dpid]
            .iter()
            .filter(|f| f.priority == GATEWAY_DROP_PRIORITY)
            .cloned()
            .collect()
    };
    for dpid in [1, 2, 3] {
        let flows = drops(dpid);
        assert!(
            flows
                .iter()
                .all(|f| f.instructions == [Instruction::ApplyActions(Vec::new())]),
            "drops only"
        );
        // From a VM port, with a public source: the spoof flow takes it.
        let table = Pipeline::from_flows(tables[&dpid].clone()).unwrap();
        let spoofed = packet(1, PUBLIC, CLIENT);
        assert!(table.simulate(&spoofed).is_empty(), "switch {dpid}");
        assert!(
            flows
                .iter()
                .any(|f| f.matcher.matches(&spoofed) && f.matcher.get(Field::Ipv4Src).is_some()),
            "switch {dpid}"
        );
    }
    let a = Pipeline::from_flows(tables[&1].clone()).unwrap();
    let unowned = packet(UPLINK, CLIENT, [203, 0, 113, 99]);
    assert!(a.simulate(&unowned).is_empty());
    let flows = drops(1);
    assert_eq!(
        flows.iter().filter(|f| f.matcher.matches(&unowned)).count(),
        1,
        "exactly one counted drop takes it"
    );
    let owned = packet(UPLINK, CLIENT, PUBLIC);
    assert!(flows.iter().all(|f| !f.matcher.matches(&owned)));
    assert!(
        drops(2).len() == 1 && drops(3).len() == 1,
        "no uplink there"
    );
}

#[test]
fn a_public_address_claimed_twice_goes_to_one_vm_only() {
    let mut inv = inventory();
    inv.vms.get_mut("db1").unwrap().public_ip = Some(Ipv4Addr::from(PUBLIC));
    let tables = compile_network(&inv, "id", "p").unwrap();
    let a = Pipeline::from_flows(tables[&1].clone()).unwrap();
    let out = a.simulate(&packet(UPLINK, CLIENT, PUBLIC));
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(
        out[0].1.ipv4_dst,
        u32::from(inv.vms["db1"].ip),
        "db1 < web1"
    );
}

/// The example with a second gateway, on host-c, serving the same prefix.
fn two_gateways() -> Inventory {
    let mut inv = inventory();
    let mut c = inv.gateways["host-a"].clone();
    c.host = "host-c".into();
    c.address = Ipv4Addr::new(198, 51, 100, 194);
    c.mac = "02:5c:00:00:0c:01".parse().unwrap();
    inv.gateways.insert("host-c".into(), c);
    inv
}

#[test]
fn a_vm_moving_to_a_cloud_with_a_gateway_gets_it_as_home_and_both_translate() {
    let before = two_gateways();
    let mut after = before.clone();
    place_web1(&mut after, "host-c", 5);
    assert_eq!(
        moves(&after, "web1", "host-a"),
        [Move {
            public: Ipv4Addr::from(PUBLIC).into(),
            gateway: "host-c".into(),
            next_hop: Ipv4Addr::new(198, 51, 100, 194).into(),
        }]
    );
    assert!(moves(&before, "web1", "host-a").is_empty());
    assert!(moves(&after, "web1", "host-c").is_empty());
    assert!(
        Announcements::after_move(&after, "web1", "host-a").is_none(),
        "not asked to"
    );
    let tables = compile_network(&after, "id", "p").unwrap();
    // The old gateway still translates what the internet sends it, towards
    // the VM's new host; the new gateway delivers locally.
    let a = Pipeline::from_flows(tables[&1].clone()).unwrap();
    let out = a.simulate(&packet(UPLINK, CLIENT, PUBLIC));
    assert_eq!((out.len(), out[0].0), (1, 10_003));
    let c = Pipeline::from_flows(tables[&3].clone()).unwrap();
    let out = c.simulate(&packet(UPLINK, CLIENT, PUBLIC));
    assert_eq!((out.len(), out[0].0), (1, 5));
    // Outbound leaves through the new home gateway's own uplink.
    let out = c.simulate(&packet(5, [100, 64, 1, 1], CLIENT));
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].0, out[0].1.ipv4_src), (UPLINK, ip(PUBLIC)));
    assert_eq!(out[0].1.eth_src, after.gateways["host-c"].mac);
    // And the old gateway no longer sends it out.
    assert!(a
        .simulate(&packet(10_003, [100, 64, 1, 1], CLIENT))
        .is_empty());
}

#[test]
fn every_serving_gateway_may_tunnel_the_internet_to_the_vm() {
    // web1 on host-b (no gateway in its cloud): home is host-a, and host-c
    // serves the prefix too. host-c translates what the internet sends it and
    // tunnels it to host-b, whose switch must accept internet sources from
    // host-c: a backup route to host-c, shadowed by the home route, says so.
    let mut inv = two_gateways();
    place_web1(&mut inv, "host-b", 6);
    let tables = compile_network(&inv, "id", "p").unwrap();
    let b = Pipeline::from_flows(tables[&2].clone()).unwrap();
    let out = b.simulate(&packet(6, [100, 64, 1, 1], CLIENT));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, 10_001, "to the home gateway, host-a");
    let outputs_to = |port: u32| {
        tables[&2].iter().any(|f| {
            f.priority < GATEWAY_OUTBOUND_PRIORITY
                && f.matcher.matches(&packet(6, [100, 64, 1, 1], CLIENT))
                && f.instructions == [Instruction::ApplyActions(vec![Action::output(port)])]
        })
    };
    assert!(outputs_to(10_003), "the backup route to host-c exists");
    // host-c translates inbound and sends it to host-b.
    let c = Pipeline::from_flows(tables[&3].clone()).unwrap();
    let out = c.simulate(&packet(UPLINK, CLIENT, PUBLIC));
    assert_eq!((out.len(), out[0].0), (1, 10_002));
}

#[test]
fn nothing_from_the_uplink_reaches_the_overlay_untranslated() {
    let inv = inventory();
    let tables = compile_network(&inv, "id", "p").unwrap();
    let a = Pipeline::from_flows(tables[&1].clone()).unwrap();
    // Straight to web1's overlay address from the internet side: dropped, and
    // by a counted flow.
    let direct = packet(UPLINK, CLIENT, [100, 64, 1, 1]);
    assert!(a.simulate(&direct).is_empty());
    assert!(tables[&1]
        .iter()
        .any(|f| f.priority == GATEWAY_DROP_PRIORITY && f.matcher.matches(&direct)));
    // Through its public address it still arrives.
    assert_eq!(a.simulate(&packet(UPLINK, CLIENT, PUBLIC)).len(), 1);
}

#[test]
fn public_vms_cost_rules_in_proportion_to_their_number() {
    // 60 more VMs on host-b, with or without public addresses: the switches
    // grow by a bounded number of rules per public VM, never public VMs x VMs.
    let grown = |public: bool| {
        let mut inv = inventory();
        for i in 0..60u8 {
            let vm = Vm {
                name: format!("x{i}"),
                mac: Mac([2, 0, 0, 9, 0, i]),
                ip: Ipv4Addr::new(100, 64, 9, i + 1),
                host: "host-b".into(),
                port: u32::from(i) + 10,
                tap: format!("x{i}"),
                netns: None,
                tenant: None,
                public_ip: public.then(|| Ipv4Addr::new(203, 0, 113, 100 + i)),
                ipv6: None,
                public_ipv6: None,
            };
            inv.vms.insert(vm.name.clone(), vm);
        }
        compile_network(&inv, "id", "p").unwrap()
    };
    let (without, with) = (grown(false), grown(true));
    for dpid in [1u64, 2, 3] {
        let extra = with[&dpid].len() - without[&dpid].len();
        eprintln!(
            "switch {dpid}: {} rules, {extra} for 60 public VMs",
            with[&dpid].len()
        );
        assert!(extra <= 60 * 2 * 10 + 60 * 8, "switch {dpid}: {extra}");
    }
}

#[test]
fn during_a_migration_the_home_gateway_takes_the_vm_from_both_hosts() {
    let mut inv = inventory();
    place_web1(&mut inv, "host-b", 5);
    let migration = web1_moving(("host-b", 5), ("host-c", 6), Phase::Prepared);
    let tables = compile_network_during(&inv, "id", "p", Some(&migration)).unwrap();
    let a = Pipeline::from_flows(tables[&1].clone()).unwrap();
    for tunnel in [10_002, 10_003] {
        let out = a.simulate(&packet(tunnel, [100, 64, 1, 1], CLIENT));
        assert_eq!(out.len(), 1, "from {tunnel}");
        assert_eq!((out[0].0, out[0].1.ipv4_src), (UPLINK, ip(PUBLIC)));
    }
    let c = Pipeline::from_flows(tables[&3].clone()).unwrap();
    let out = c.simulate(&packet(6, [100, 64, 1, 1], CLIENT));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, 10_001, "the destination sends it to the gateway");
    // Not from another port, and not from the uplink (no hairpin to itself).
    assert!(c.simulate(&packet(1, [100, 64, 1, 1], CLIENT)).is_empty());
    assert!(a
        .simulate(&packet(UPLINK, [100, 64, 1, 1], CLIENT))
        .is_empty());
}
