//! VM prefixes: the compiled tables followed hop by hop through the tunnels
//! deliver every VM's address on its current host and nowhere else (property
//! test), the policy still drops what it names inside another host's prefix, and
//! a change touches only the switches the prefix design says it does.

use super::tests::{apply, change, packet, prefixed, Change};
use super::*;
use crate::model::Vm;
use dataplane_core::pipeline::Pipeline;
use openflow::flow::FlowKey;
use proptest::prelude::*;
use std::net::Ipv4Addr;

/// A port that is no VM's, no tunnel's and no uplink's on any switch of the tests.
const STRANGER: u32 = 99;

/// Where a packet entering `host`'s switch goes: every (host, port) it leaves
/// the overlay through, its tunnels followed hop by hop.
fn deliveries(
    pipelines: &BTreeMap<u64, Pipeline>,
    inv: &Inventory,
    host: &Host,
    key: FlowKey,
) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    let mut todo = vec![(host, key, 0)];
    while let Some((at, key, hops)) = todo.pop() {
        assert!(
            hops <= inv.hosts.len(),
            "a loop through the tunnels: {key:?}"
        );
        for (port, sent) in pipelines[&at.datapath_id].simulate(&key) {
            match inv.hosts.iter().find(|h| h.tunnel_port() == port) {
                Some(next) => {
                    let arriving = FlowKey {
                        in_port: at.tunnel_port(),
                        ..sent
                    };
                    todo.push((next, arriving, hops + 1));
                }
                None => out.push((at.name.clone(), port)),
            }
        }
    }
    out.sort();
    out
}

fn pipelines(program: &NetworkProgram) -> BTreeMap<u64, Pipeline> {
    program
        .flat_tables()
        .into_iter()
        .map(|(dpid, flows)| (dpid, Pipeline::from_flows(flows).unwrap()))
        .collect()
}

/// `hosts` hosts with a /24 VM prefix each (100.64.(10 + i).0/24) and `per_host`
/// VMs at home in each.
fn fleet(hosts: u8, per_host: u8) -> Inventory {
    let mut inv = prefixed();
    inv.vms.clear();
    inv.gateways.clear();
    let template = inv.hosts[1].clone();
    inv.hosts = (0..hosts)
        .map(|i| Host {
            name: format!("h{i}"),
            datapath_id: 1 + u64::from(i),
            vm_prefix: Some((Ipv4Addr::new(100, 64, 10 + i, 0), 24)),
            ..template.clone()
        })
        .collect();
    for i in 0..hosts {
        for j in 0..per_host {
            let v = home_vm(i, j);
            inv.vms.insert(v.name.clone(), v);
        }
    }
    inv
}

fn home_vm(host: u8, j: u8) -> Vm {
    Vm {
        name: format!("v{host}-{j}"),
        mac: format!("02:00:00:0b:{host:02x}:{j:02x}").parse().unwrap(),
        ip: Ipv4Addr::new(100, 64, 10 + host, 1 + j),
        host: format!("h{host}"),
        port: 1 + u32::from(j),
        tap: format!("sc-v{host}-{j}"),
        netns: None,
        tenant: None,
        public_ip: None,
        ipv6: None,
        public_ipv6: None,
    }
}

/// Flows that `update` changed on each switch (added + removed).
fn changed(before: &NetworkProgram, after: &NetworkProgram) -> BTreeMap<u64, usize> {
    after
        .tables()
        .iter()
        .map(|(dpid, t)| {
            let (was, now) = match before.table(*dpid) {
                Some(b) => t.changed_since(b),
                None => (Vec::new(), t.to_vec()),
            };
            (*dpid, was.len() + now.len())
        })
        .collect()
}

#[test]
fn a_switch_holds_one_route_per_other_host_and_the_exceptions() {
    let inv = fleet(10, 10);
    let p0 = NetworkProgram::compile(&inv, "id", "p", None).unwrap();
    for table in p0.tables().values() {
        // Its 10 VMs (a delivery and a hairpin each), 9 prefix routes and 9
        // tunnel guards: never one route per VM.
        assert_eq!(table.len(), 2 * 10 + 9 + 9);
    }
    // A VM added at home changes its host's switch only.
    let mut added = inv.clone();
    let v = home_vm(3, 50);
    added.vms.insert(v.name.clone(), v);
    let p1 = p0.update(&added, "id", "p", None).unwrap();
    let touched: Vec<u64> = changed(&p0, &p1)
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(d, _)| d)
        .collect();
    assert_eq!(touched, [4]);
    // Moved away from its prefix's host: one exception on every other switch.
    let mut moved = added.clone();
    moved.vms.get_mut("v3-50").unwrap().host = "h5".into();
    let p2 = p1.update(&moved, "id", "p", None).unwrap();
    for (dpid, table) in p2.tables() {
        let before = p1.table(*dpid).unwrap().len();
        match dpid {
            // Old host: its delivery becomes the exception; new host: delivery.
            4 => assert_eq!(table.len(), before - 1),
            6 => assert_eq!(table.len(), before + 2),
            _ => assert_eq!(table.len(), before + 1, "switch {dpid}"),
        }
    }
    // Moved back home: the exceptions go; the tables are those before the move.
    let p3 = p2.update(&added, "id", "p", None).unwrap();
    assert_eq!(p3.flat_tables(), p1.flat_tables());
    // A host added: one prefix route (and one guard) more on every switch.
    let mut grown = added.clone();
    grown.hosts.push(Host {
        name: "h10".into(),
        datapath_id: 11,
        vm_prefix: Some((Ipv4Addr::new(100, 64, 20, 0), 24)),
        ..grown.hosts[0].clone()
    });
    let p4 = p1.update(&grown, "id", "p", None).unwrap();
    for (dpid, table) in p1.tables() {
        assert_eq!(p4.table(*dpid).unwrap().len(), table.len() + 2);
    }
    // The new switch: a route and a guard per other host.
    assert_eq!(p4.table(11).unwrap().len(), 10 + 10);
}

#[test]
fn the_policy_drops_traffic_to_a_vm_inside_another_hosts_prefix() {
    let inv = prefixed();
    let isolate = "filter not (ip4Src = vm:web1 and ip4Dst = vm:db1)";
    let tables = compile_network(&inv, isolate, "tenants.kat").unwrap();
    let prefix_route =
        |f: &&FlowSpec| f.matcher.get(Field::Ipv4Dst) == Some((0x6440_0200, 0xffff_ff00));
    assert!(
        tables[&1].iter().any(|f| prefix_route(&f)),
        "{:#?}",
        tables[&1]
    );
    let a = Pipeline::from_flows(tables[&1].clone()).unwrap();
    assert!(
        a.simulate(&packet(1, [100, 64, 1, 1], [100, 64, 2, 1]))
            .is_empty(),
        "web1 -> db1 blocked"
    );
    for (src, dst) in [
        ([100, 64, 1, 1], [100, 64, 2, 9]),
        ([100, 64, 1, 5], [100, 64, 2, 1]),
    ] {
        let out = a.simulate(&packet(1, src, dst));
        assert_eq!(out.len(), 1, "{src:?} -> {dst:?}");
        assert_eq!(out[0].0, 10_002, "{src:?} -> {dst:?}");
    }
    // Unchanged when db1 moves away from its prefix's host: its exception
    // carries the policy too.
    let mut moved = inv.clone();
    moved.vms.get_mut("db1").unwrap().host = "host-c".into();
    let tables = compile_network(&moved, isolate, "tenants.kat").unwrap();
    let a = Pipeline::from_flows(tables[&1].clone()).unwrap();
    assert!(a
        .simulate(&packet(1, [100, 64, 1, 1], [100, 64, 2, 1]))
        .is_empty());
    assert_eq!(
        a.simulate(&packet(1, [100, 64, 1, 5], [100, 64, 2, 1]))[0].0,
        10_003
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// For random inventories with prefixes, moves and removals, a packet to a
    /// VM's address sent from any host reaches the VM's port on its current host
    /// and nowhere else, and an address of a prefix with no VM reaches no VM.
    #[test]
    fn every_vm_is_delivered_on_its_host_and_nowhere_else(
        changes in proptest::collection::vec(change(), 0..14),
    ) {
        let mut inv = prefixed();
        let (migration, policy) = (None, "id");
        for c in &changes {
            if matches!(c, Change::Prepare { .. } | Change::Switch | Change::Done) {
                continue;
            }
            let mut next = (inv.clone(), migration.clone(), policy);
            debug_assert!(next.1.is_none());
            if apply(c, &mut next.0, &mut next.1, &mut next.2).is_some() {
                inv = next.0;
            }
        }
        let program = NetworkProgram::compile(&inv, "id", "p", None).unwrap();
        let pipelines = pipelines(&program);
        for from in &inv.hosts {
            for vm in inv.vms.values() {
                let key = packet(STRANGER, [100, 64, 0, 1], vm.ip.octets());
                prop_assert_eq!(
                    deliveries(&pipelines, &inv, from, key),
                    vec![(vm.host.clone(), vm.port)],
                    "{} from {}", vm.name, from.name
                );
            }
            for (net, _) in inv.hosts.iter().filter_map(|h| h.vm_prefix) {
                let nobody = Ipv4Addr::from(u32::from(net) + 77);
                let key = packet(STRANGER, [100, 64, 0, 1], nobody.octets());
                prop_assert!(deliveries(&pipelines, &inv, from, key).is_empty());
            }
        }
    }
}
