//! The compiled program against packets, against a change's flow-mods, and the
//! incremental compile against a full one (property test).

use super::*;
use crate::diff::plan;
use crate::model::Vm;
use dataplane_core::pipeline::Pipeline;
use openflow::flow::FlowKey;
use openflow::wire::FlowModCommand;
use proptest::prelude::*;

pub(super) fn inventory() -> Inventory {
    let text = include_str!("../../../docs/examples/inventory.toml");
    Inventory::parse(text, "inventory.toml").unwrap()
}

/// The example with VM prefixes on host-a (100.64.1.0/24, holding web1) and
/// host-b (100.64.2.0/24, holding db1); host-c has none.
pub(super) fn prefixed() -> Inventory {
    let mut inv = inventory();
    inv.hosts[0].vm_prefix = Some((std::net::Ipv4Addr::new(100, 64, 1, 0), 24));
    inv.hosts[1].vm_prefix = Some((std::net::Ipv4Addr::new(100, 64, 2, 0), 24));
    inv
}

pub(super) fn packet(in_port: u32, src: [u8; 4], dst: [u8; 4]) -> FlowKey {
    FlowKey {
        in_port,
        eth_type: ethertype::IPV4,
        ip_proto: 6,
        ipv4_src: u32::from_be_bytes(src),
        ipv4_dst: u32::from_be_bytes(dst),
        ..FlowKey::default()
    }
}

#[test]
fn routes_locally_and_through_the_direct_tunnel() {
    let inv = inventory();
    let tables = compile_network(&inv, "id", "policy.kat").unwrap();
    let a = Pipeline::from_flows(tables[&1].clone()).unwrap();
    // A packet from one tunnel is never sent into another (no transit).
    assert!(a
        .simulate(&packet(10_003, [100, 64, 3, 1], [100, 64, 2, 1]))
        .is_empty());
    // web1 (host-a) -> db1 (host-b): out of the tunnel to host-b, unchanged.
    let out = a.simulate(&packet(1, [100, 64, 1, 1], [100, 64, 2, 1]));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, 10_002);
    // From host-b's tunnel to web1: delivered with both MACs rewritten.
    let out = a.simulate(&packet(10_002, [100, 64, 2, 1], [100, 64, 1, 1]));
    assert_eq!(out[0].0, 1);
    assert_eq!(out[0].1.eth_dst, inv.vms["web1"].mac);
    assert_eq!(out[0].1.eth_src, inv.gateway_mac);
    // Unknown destinations and non-IP are dropped.
    assert!(a
        .simulate(&packet(1, [100, 64, 1, 1], [100, 64, 9, 9]))
        .is_empty());
    let arp = FlowKey {
        eth_type: ethertype::ARP,
        ..FlowKey::default()
    };
    assert!(a.simulate(&arp).is_empty());
    assert!(tables[&1].iter().all(|f| f.cookie == SCC_COOKIE));
}

#[test]
fn the_policy_runs_before_routing() {
    let inv = inventory();
    let isolate = "filter not ((ip4Src = vm:web1 and ip4Dst = vm:batch1) or (ip4Src = vm:batch1 and ip4Dst = vm:web1))";
    let tables = compile_network(&inv, isolate, "tenants.kat").unwrap();
    let a = Pipeline::from_flows(tables[&1].clone()).unwrap();
    assert!(
        a.simulate(&packet(1, [100, 64, 1, 1], [100, 64, 3, 1]))
            .is_empty(),
        "blue -> green blocked"
    );
    assert_eq!(
        a.simulate(&packet(1, [100, 64, 1, 1], [100, 64, 2, 1]))[0].0,
        10_002,
        "blue -> blue allowed"
    );
}

#[test]
fn a_bad_policy_is_refused_with_its_position() {
    let inv = inventory();
    let err = compile_network(&inv, "filter ip4Dst = vm:nosuch", "p.kat").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("p.kat:1:"), "{text}");
    let err = compile_network(&inv, "filter ip4Dst =", "p.kat").unwrap_err();
    assert!(err.to_string().contains("p.kat:1:"), "{err}");
}

pub(super) fn vm(n: u8, host: &str, public: bool) -> Vm {
    Vm {
        name: format!("p{n}"),
        mac: format!("02:00:00:09:00:{n:02x}").parse().unwrap(),
        ip: std::net::Ipv4Addr::new(100, 64, 9, n),
        host: host.into(),
        port: 10 + u32::from(n),
        tap: format!("sc-p{n}"),
        netns: None,
        tenant: None,
        public_ip: public.then(|| std::net::Ipv4Addr::new(203, 0, 113, 20 + n)),
        ipv6: None,
        public_ipv6: None,
    }
}

#[test]
fn adding_and_removing_a_vm_changes_only_its_flows() {
    let before = inventory();
    let mut after = before.clone();
    let vm = Vm {
        name: "web2".into(),
        ..vm(2, "host-a", false)
    };
    after.vms.insert(vm.name.clone(), vm);
    let p0 = NetworkProgram::compile(&before, "id", "p", None).unwrap();
    let p1 = p0.update(&after, "id", "p", None).unwrap();
    let t0 = p0.flat_tables();
    let t1 = p1.flat_tables();
    let new_ip = u128::from(u32::from(std::net::Ipv4Addr::new(100, 64, 9, 2)));
    for dpid in [1u64, 2, 3] {
        let add = plan(&t0[&dpid], &t1[&dpid], SCC_COOKIE);
        let rm = plan(&t1[&dpid], &t0[&dpid], SCC_COOKIE);
        // Only new flows appear; every other flow keeps its match, priority and
        // actions, so their traffic is not touched.
        assert!(
            add.then.is_empty() && add.first.iter().all(|m| m.command == FlowModCommand::Add),
            "switch {dpid}"
        );
        assert!(rm.first.is_empty(), "switch {dpid}");
        let about_it =
            |m: &openflow::wire::FlowMod| m.spec.matcher.exact(Field::Ipv4Dst) == Some(new_ip);
        assert!(add.first.iter().all(about_it), "switch {dpid}");
        assert!(rm.then.iter().all(about_it), "switch {dpid}");
        assert_eq!(add.len(), rm.len());
        assert!(!add.is_empty());
        // The session's difference, from the units that changed, is the same.
        let (was, now) = p1.tables()[&dpid].changed_since(&p0.tables()[&dpid]);
        assert_eq!(plan(&was, &now, SCC_COOKIE).len(), add.len());
        assert!(
            was.is_empty()
                && now
                    .iter()
                    .all(|f| f.matcher.exact(Field::Ipv4Dst) == Some(new_ip))
        );
    }
}

/// The packets the tests send: every VM address and some strangers, from every
/// port a switch has (VM ports, tunnels, the uplink).
fn packets(inv: &Inventory) -> Vec<FlowKey> {
    let mut dsts: Vec<u32> = inv.vms.values().map(|v| u32::from(v.ip)).collect();
    // An address of each VM prefix that no VM has.
    dsts.extend(
        inv.hosts
            .iter()
            .filter_map(|h| h.vm_prefix)
            .map(|(net, _)| u32::from(net) + 77),
    );
    dsts.extend(inv.vms.values().filter_map(|v| v.public_ip).map(u32::from));
    dsts.extend([0x6440_0909, 0xcb00_7163]);
    let mut ports: Vec<u32> = inv.vms.values().map(|v| v.port).collect();
    ports.extend(inv.hosts.iter().map(Host::tunnel_port));
    ports.extend([100, 10, 11, 12, 900]);
    let srcs = [0x6440_0101, 0x6440_0301, 0x6440_0905];
    let v4 = dsts.iter().flat_map(|&d| {
        srcs.iter().map(move |&s| FlowKey {
            eth_type: ethertype::IPV4,
            ipv4_src: s,
            ipv4_dst: d,
            ..FlowKey::default()
        })
    });
    // The same for IPv6: every VM address, one no VM has, from web1, p5 and a
    // stranger.
    let address = |vm: &str| inv.vms.get(vm).and_then(|vm| inv.vm_ipv6(vm));
    let mut dsts6: Vec<u128> = inv
        .vms
        .values()
        .flat_map(|vm| inv.vm_ipv6_addresses(vm))
        .map(u128::from)
        .collect();
    let stranger = u128::from(std::net::Ipv6Addr::new(0xfd00, 0x5c, 0, 0, 0, 0, 0, 0x99));
    dsts6.extend(inv.overlay_ipv6.map(|_| stranger));
    let mut srcs6: Vec<u128> = [address("web1"), address("p5")]
        .into_iter()
        .flatten()
        .map(u128::from)
        .collect();
    srcs6.push(stranger);
    let v6 = dsts6.iter().flat_map(|&d| {
        srcs6.iter().map(move |&s| FlowKey {
            eth_type: ethertype::IPV6,
            ipv6_src: s,
            ipv6_dst: d,
            ..FlowKey::default()
        })
    });
    let mut out = Vec::new();
    for key in v4.chain(v6) {
        for &p in &ports {
            out.push(FlowKey {
                in_port: p,
                ip_proto: 6,
                ..key
            });
        }
    }
    out
}

/// A VM name in the policy stands for the VM in both families, and the policy
/// runs before the IPv6 routes as before the IPv4 ones.
#[test]
fn the_policy_governs_ipv6_as_it_governs_ipv4() {
    let mut inv = inventory();
    inv.overlay_ipv6 = Some(("fd00:5c::".parse().unwrap(), 48));
    let v6 = |vm: &str| u128::from(inv.vm_ipv6(&inv.vms[vm]).unwrap());
    let from_web1 = |eth_type: u16, dst: &str| FlowKey {
        in_port: inv.vms["web1"].port,
        eth_type,
        ip_proto: 6,
        ipv4_src: u32::from(inv.vms["web1"].ip),
        ipv4_dst: u32::from(inv.vms[dst].ip),
        ipv6_src: v6("web1"),
        ipv6_dst: v6(dst),
        ..FlowKey::default()
    };
    let outputs = |policy: &str, key: &FlowKey| {
        let tables = compile_network(&inv, policy, "p.kat").unwrap();
        let sw = Pipeline::from_flows(tables[&1].clone()).unwrap();
        sw.simulate(key)
            .iter()
            .map(|(port, _)| *port)
            .collect::<Vec<u32>>()
    };
    let (v4, v6) = (ethertype::IPV4, ethertype::IPV6);
    let to_db1 = inv.hosts[1].tunnel_port();
    let to_batch1 = inv.hosts[2].tunnel_port();
    // The observer works: both families reach db1 without a policy.
    assert_eq!(outputs("id", &from_web1(v4, "db1")), vec![to_db1]);
    assert_eq!(outputs("id", &from_web1(v6, "db1")), vec![to_db1]);
    let both = "filter not (ip4Src = vm:web1 and ip4Dst = vm:db1)";
    assert!(outputs(both, &from_web1(v4, "db1")).is_empty());
    assert!(outputs(both, &from_web1(v6, "db1")).is_empty());
    assert_eq!(outputs(both, &from_web1(v6, "batch1")), vec![to_batch1]);
    let ipv6_only = "filter not (ethType = 0x86dd and ip6Src = vm:web1 and ip6Dst = vm:db1)";
    assert_eq!(outputs(ipv6_only, &from_web1(v4, "db1")), vec![to_db1]);
    assert!(outputs(ipv6_only, &from_web1(v6, "db1")).is_empty());
    // A prefix test, and a policy that changes packets (compiled whole).
    let prefix = "filter not ip6Dst = fd00:5c::ff:fe00:200/120";
    assert!(outputs(prefix, &from_web1(v6, "db1")).is_empty());
    assert_eq!(outputs(prefix, &from_web1(v6, "batch1")), vec![to_batch1]);
    let rewriting = "filter not ip6Dst = vm:db1; (ethSrc := 02:00:00:00:01:01 + drop)";
    assert!(outputs(rewriting, &from_web1(v6, "db1")).is_empty());
    assert_eq!(
        outputs(rewriting, &from_web1(v6, "batch1")),
        vec![to_batch1]
    );
}

/// What `flows` does with each packet.
fn behaviour(flows: &[FlowSpec], packets: &[FlowKey]) -> Vec<Vec<(u32, FlowKey)>> {
    let p = Pipeline::from_flows(flows.to_vec()).unwrap();
    packets.iter().map(|k| p.simulate(k)).collect()
}

/// One change to the network.
#[derive(Debug, Clone)]
pub(super) enum Change {
    AddVm {
        n: u8,
        host: usize,
        public: bool,
    },
    /// A VM inside its host's VM prefix.
    AddHomeVm {
        n: u8,
        host: usize,
    },
    RemoveVm(usize),
    MoveVm {
        vm: usize,
        host: usize,
    },
    AddHost {
        n: u8,
        prefixed: bool,
    },
    RemoveHost(usize),
    Prepare {
        vm: usize,
        host: usize,
    },
    Switch,
    Done,
    Policy(usize),
}

const POLICIES: [&str; 6] = [
    "id",
    "filter not (ip4Src = 100.64.1.1 and ip4Dst = 100.64.9.3)",
    "filter not (switch = 2 and ip4Dst = 100.64.9.4) and not (ip4Src = vm:web1 and ip4Dst = vm:db1)",
    "filter ip4Src = 100.64.0.0/16 or port = 100",
    "filter not (ethType = 0x86dd and ip6Src = vm:web1 and ip6Dst = vm:db1)",
    "filter not (switch = 2 and ip6Dst = fd00:5c::ff:fe09:4) and (ip6Src = fd00:5c::/64 or ip4Src = 100.64.0.0/16 or port = 100)",
];

pub(super) fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        3 => (0u8..12, 0usize..8, any::<bool>()).prop_map(|(n, host, public)| Change::AddVm { n, host, public }),
        3 => (0u8..12, 0usize..8).prop_map(|(n, host)| Change::AddHomeVm { n, host }),
        1 => (0usize..16).prop_map(Change::RemoveVm),
        2 => (0usize..16, 0usize..8).prop_map(|(vm, host)| Change::MoveVm { vm, host }),
        1 => (0u8..4, any::<bool>()).prop_map(|(n, prefixed)| Change::AddHost { n, prefixed }),
        1 => (0usize..8).prop_map(Change::RemoveHost),
        2 => (0usize..16, 0usize..8).prop_map(|(vm, host)| Change::Prepare { vm, host }),
        1 => Just(Change::Switch),
        1 => Just(Change::Done),
        1 => (0usize..POLICIES.len()).prop_map(Change::Policy),
    ]
}

/// Applies `c`; `None` when it does not apply (the test skips it).
pub(super) fn apply(
    c: &Change,
    inv: &mut Inventory,
    migration: &mut Option<Migration>,
    policy: &mut &'static str,
) -> Option<()> {
    let host_name =
        |inv: &Inventory, i: usize| inv.hosts.get(i % inv.hosts.len()).map(|h| h.name.clone());
    let vm_name = |inv: &Inventory, i: usize| inv.vms.keys().nth(i % inv.vms.len().max(1)).cloned();
    match *c {
        Change::AddVm { n, host, public } => {
            let v = vm(n, &host_name(inv, host)?, public);
            inv.vms.insert(v.name.clone(), v);
        }
        Change::RemoveVm(i) => {
            let name = vm_name(inv, i)?;
            if migration.as_ref().is_some_and(|m| m.vm == name) {
                return None;
            }
            inv.vms.remove(&name);
        }
        Change::MoveVm { vm, host } => {
            let name = vm_name(inv, vm)?;
            if migration.as_ref().is_some_and(|m| m.vm == name) {
                return None;
            }
            let to = host_name(inv, host)?;
            inv.vms.get_mut(&name)?.host = to;
        }
        Change::AddHomeVm { n, host } => {
            let h = inv.hosts.get(host % inv.hosts.len())?;
            let (net, _) = h.vm_prefix?;
            let v = Vm {
                name: format!("h{n}"),
                mac: format!("02:00:00:0a:00:{n:02x}").parse().unwrap(),
                ip: std::net::Ipv4Addr::from(u32::from(net) + 100 + u32::from(n)),
                port: 40 + u32::from(n),
                tap: format!("sc-h{n}"),
                ..vm(n, &h.name, false)
            };
            inv.vms.insert(v.name.clone(), v);
        }
        Change::AddHost { n, prefixed } => {
            let mut h = inv.hosts.last()?.clone();
            h.name = format!("x{n}");
            h.datapath_id = 10 + u64::from(n);
            h.vm_prefix = prefixed.then(|| (std::net::Ipv4Addr::new(100, 64, 20 + n, 0), 24));
            if inv.host(&h.name).is_some() {
                return None;
            }
            inv.hosts.push(h);
        }
        Change::RemoveHost(i) => {
            let name = host_name(inv, i)?;
            let busy = inv.vms.values().any(|v| v.host == name)
                || inv.gateways.contains_key(&name)
                || migration
                    .as_ref()
                    .is_some_and(|m| m.to_host == name || m.from_host == name);
            if busy || inv.hosts.len() <= 2 {
                return None;
            }
            inv.hosts.retain(|h| h.name != name);
        }
        Change::Prepare { vm, host } => {
            if migration.is_some() {
                return None;
            }
            let name = vm_name(inv, vm)?;
            let v = inv.vms.get(&name)?;
            let to_host = host_name(inv, host)?;
            if to_host == v.host {
                return None;
            }
            *migration = Some(Migration {
                vm: name,
                from_host: v.host.clone(),
                from_port: v.port,
                to_host,
                to_port: 900,
                phase: Phase::Prepared,
            });
        }
        Change::Switch => {
            let m = migration.as_mut().filter(|m| m.phase == Phase::Prepared)?;
            m.phase = Phase::Switched;
            let v = inv.vms.get_mut(&m.vm)?;
            v.host = m.to_host.clone();
            v.port = m.to_port;
        }
        Change::Done => {
            migration.take()?;
        }
        Change::Policy(i) => *policy = POLICIES[i],
    }
    Some(())
}

/// Each switch's flows, in a canonical order.
fn canonical(p: &NetworkProgram) -> BTreeMap<u64, Vec<String>> {
    p.flat_tables()
        .into_iter()
        .map(|(dpid, flows)| {
            let mut text: Vec<String> = flows.iter().map(|f| format!("{f:?}")).collect();
            text.sort();
            (dpid, text)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// After any sequence of changes, with or without IPv6 in the overlay, the
    /// incrementally compiled tables are the full compile's, and the difference the sessions send (from the changed
    /// units) is the one a full diff finds.
    #[test]
    fn incremental_tables_equal_a_full_compile(
        with_prefixes in any::<bool>(),
        with_ipv6 in any::<bool>(),
        changes in proptest::collection::vec(change(), 1..14),
    ) {
        let mut inv = if with_prefixes { prefixed() } else { inventory() };
        if with_ipv6 {
            inv.overlay_ipv6 = Some(("fd00:5c::".parse().unwrap(), 48));
        }
        let mut migration: Option<Migration> = None;
        let mut policy = POLICIES[0];
        let mut program = NetworkProgram::compile(&inv, policy, "p", None).unwrap();
        for c in &changes {
            let (mut next_inv, mut next_m, mut next_p) = (inv.clone(), migration.clone(), policy);
            if apply(c, &mut next_inv, &mut next_m, &mut next_p).is_none() {
                continue;
            }
            let incremental = program.update(&next_inv, next_p, "p", next_m.as_ref());
            let full = NetworkProgram::compile(&next_inv, next_p, "p", next_m.as_ref());
            match (incremental, full) {
                (Ok(incremental), Ok(full)) => {
                    prop_assert_eq!(canonical(&incremental), canonical(&full), "after {:?}", c);
                    // The index of destinations kept from version to version is
                    // the one built from scratch.
                    if let Some(kept) = incremental.destinations() {
                        prop_assert!(*kept == Destinations::new(&next_inv), "destinations after {:?}", c);
                    }
                    for (dpid, table) in incremental.tables() {
                        let Some(before) = program.table(*dpid) else { continue };
                        let (was, now) = table.changed_since(before);
                        let by_units = plan(&was, &now, SCC_COOKIE);
                        let whole = plan(&before.to_vec(), &table.to_vec(), SCC_COOKIE);
                        let text = |p: &crate::diff::Plan| {
                            let mut v: Vec<String> = p.first.iter().chain(&p.then).map(|m| format!("{m:?}")).collect();
                            v.sort();
                            v
                        };
                        prop_assert_eq!(text(&by_units), text(&whole), "switch {} after {:?}", dpid, c);
                    }
                    program = incremental;
                    (inv, migration, policy) = (next_inv, next_m, next_p);
                }
                (Err(_), Err(_)) => {}
                (i, f) => prop_assert!(false, "incremental {:?} but full {:?}", i.map(|_| ()), f.map(|_| ())),
            }
        }
    }

    /// Compiled by address, the tables forward every packet as the program
    /// compiled whole (the routing and the policy as one NetKAT program) does.
    #[test]
    fn compiled_by_address_behaves_as_compiled_whole(
        with_prefixes in any::<bool>(),
        with_ipv6 in any::<bool>(),
        changes in proptest::collection::vec(change(), 0..8),
    ) {
        let mut inv = if with_prefixes { prefixed() } else { inventory() };
        if with_ipv6 {
            inv.overlay_ipv6 = Some(("fd00:5c::".parse().unwrap(), 48));
        }
        let mut migration: Option<Migration> = None;
        let mut policy = POLICIES[2];
        for c in &changes {
            let mut next = (inv.clone(), migration.clone(), policy);
            if apply(c, &mut next.0, &mut next.1, &mut next.2).is_some() {
                (inv, migration, policy) = next;
            }
        }
        let Ok(by_address) = NetworkProgram::compile(&inv, policy, "p", migration.as_ref()) else {
            return Ok(());
        };
        let form = by_address.policy.clone().unwrap();
        let whole = whole(&Arc::new(inv.clone()), form, migration.as_ref()).unwrap();
        let packets = packets(&inv);
        for (dpid, table) in by_address.tables() {
            prop_assert_eq!(
                behaviour(&table.to_vec(), &packets),
                behaviour(&whole.tables()[dpid].to_vec(), &packets),
                "switch {}", dpid
            );
        }
    }
}

/// A migration's switch step keeps every switch's unchanged plain flows
/// behind the pointer of the version before, and the difference never lists
/// the tunnel guards (one per other host: most of a large mesh's plain flows).
#[test]
fn a_switch_step_shares_unchanged_plain_flows_and_leaves_the_guards_out_of_the_difference() {
    let inv = inventory();
    let prepared = Migration {
        vm: "db1".into(),
        from_host: "host-b".into(),
        from_port: inv.vms["db1"].port,
        to_host: "host-c".into(),
        to_port: 900,
        phase: Phase::Prepared,
    };
    let before = NetworkProgram::compile(&inv, "id", "p", Some(&prepared)).unwrap();
    let mut moved = inv.clone();
    let db1 = moved.vms.get_mut("db1").unwrap();
    db1.host = "host-c".into();
    db1.port = 900;
    let switched = Migration {
        phase: Phase::Switched,
        ..prepared
    };
    let after = before.update(&moved, "id", "p", Some(&switched)).unwrap();
    let mut shared = 0;
    for (dpid, table) in after.tables() {
        let was = &before.tables()[dpid];
        if *was.plain == *table.plain {
            assert!(Arc::ptr_eq(&was.plain, &table.plain), "switch {dpid}");
            shared += 1;
        }
        let (gone, added) = table.changed_since(was);
        assert!(
            gone.iter()
                .chain(&added)
                .all(|f| f.priority != GUARD_PRIORITY),
            "switch {dpid}"
        );
    }
    assert!(shared > 0, "some switch's plain flows did not change");
    // host-c's announcement flows went away: its plain flows changed.
    assert!(!Arc::ptr_eq(
        &before.tables()[&3].plain,
        &after.tables()[&3].plain
    ));
}
