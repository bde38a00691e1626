//! Gateways: hosts whose switch has an uplink into the internet and serves public
//! addresses by 1:1 NAT to VMs' overlay addresses (docs/gateway.md).
//!
//! This module owns what a gateway adds to the routing program: the NetKAT cases
//! for inbound traffic (uplink, public address → overlay address, then the VM's
//! normal route, so a migration's reroute step redirects it too; on every gateway
//! that serves the address), and plain flows above the compiled table for
//! outbound traffic (a VM with a public address → the tunnel to its home gateway →
//! public source, out of the uplink) and the counted drops (public addresses no VM
//! owns, overlay packets claiming a public source); and announcing a public
//! address's new home gateway to the internet after a migration ([`Announcer`]).
//! It never talks to a switch.

use crate::inventory::{Host, Inventory, Vm};
use openflow::flow::{ethertype, prefix_mask32, Action, Field, FlowMatch, Mac};
use openflow::FlowSpec;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// Priority of the counted drops: above every compiled rule, below the migration
/// announcement flow. They never overlap traffic the routing forwards.
pub const GATEWAY_DROP_PRIORITY: u16 = 64_000;

/// The uplink of a gateway host (`[host.uplink]` in the inventory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gateway {
    /// The gateway host.
    pub host: String,
    /// OpenFlow port number of the uplink on that host's switch.
    pub port: u32,
    /// The uplink interface (a raw port: an existing interface `scd` attaches to).
    pub interface: String,
    /// Namespace the interface lives in, when not the host's (test harness).
    pub netns: Option<String>,
    /// The uplink's own address, which the next-hop router routes the public
    /// prefix to (the switch answers ARP for it).
    pub address: Ipv4Addr,
    /// The uplink's own MAC (source of outbound frames, ARP answers).
    pub mac: Mac,
    /// The next-hop router's MAC (destination of outbound frames).
    pub router_mac: Mac,
    /// The public prefix this gateway serves: network and length.
    pub public_prefix: (Ipv4Addr, u8),
}

impl Gateway {
    /// True when `ip` lies in this gateway's public prefix.
    pub fn serves(&self, ip: Ipv4Addr) -> bool {
        let mask = prefix_mask32(self.public_prefix.1);
        u32::from(ip) & mask == u32::from(self.public_prefix.0)
    }

    /// The `[[port]]` section of the host's `scd` configuration for the uplink.
    pub fn port_section(&self) -> String {
        let mut s = format!(
            "\n# uplink into the internet (gateway for {}/{})\n[[port]]\nnumber = {}\nname = \"{}\"\ntype = \"raw\"\n",
            self.public_prefix.0, self.public_prefix.1, self.port, self.interface
        );
        if let Some(ns) = &self.netns {
            s += &format!("netns = \"{ns}\"\n");
        }
        s += &format!(
            "answer_arp = [\"{}\", \"{}/{}\"]\nmac = \"{}\"\n",
            self.address, self.public_prefix.0, self.public_prefix.1, self.mac
        );
        s
    }
}

/// The gateways serving `public_ip` (whose public prefix holds it), in host order.
pub fn serving(inv: &Inventory, public_ip: Ipv4Addr) -> impl Iterator<Item = &Gateway> {
    inv.hosts
        .iter()
        .filter_map(|h| inv.gateways.get(&h.name))
        .filter(move |g| g.serves(public_ip))
}

/// The home gateway of `vm`'s public address: its traffic to the internet leaves
/// there, and the internet is told to send the address there. A serving gateway
/// in the VM's own cloud if there is one, else the first serving gateway.
pub fn home<'a>(inv: &'a Inventory, vm: &Vm, public_ip: Ipv4Addr) -> Option<&'a Gateway> {
    let cloud = inv.host(&vm.host).map(|h| h.cloud.as_str());
    let in_cloud = |g: &&Gateway| inv.host(&g.host).map(|h| h.cloud.as_str()) == cloud;
    serving(inv, public_ip)
        .find(in_cloud)
        .or_else(|| serving(inv, public_ip).next())
}

/// VMs with a public address some gateway serves, with their home gateway. An
/// address claimed by two VMs (the inventory file refuses that, a VM added through
/// the API is not checked) goes to the first by name only, so a gateway never
/// sends one packet to two VMs.
fn public_vms(inv: &Inventory) -> impl Iterator<Item = (&Vm, Ipv4Addr, &Gateway)> {
    let mut claimed = std::collections::BTreeSet::new();
    inv.vms.values().filter_map(move |vm| {
        let public = vm.public_ip?;
        let gw = home(inv, vm, public)?;
        claimed.insert(public).then_some((vm, public, gw))
    })
}

/// The routing case (NetKAT, disjoint from every other case of this switch) a
/// gateway adds to its own switch: inbound translation.
pub fn routing_cases(inv: &Inventory, host: &Host) -> Vec<String> {
    let Some(gw) = inv.gateways.get(&host.name) else {
        return Vec::new();
    };
    // Inbound, on every gateway that serves the address (so it keeps working
    // wherever the internet sends it): the public address becomes the overlay
    // address, then the VM's own route from here (local port or the tunnel to
    // its host).
    let inbound: Vec<String> = public_vms(inv)
        .filter(|(_, public, _)| gw.serves(*public))
        .filter_map(|(vm, public, _)| {
            let deliver = if vm.host == host.name {
                format!(
                    "ethSrc := {}; ethDst := {}; port := {}",
                    inv.gateway_mac, vm.mac, vm.port
                )
            } else {
                format!("port := {}", inv.host(&vm.host)?.tunnel_port())
            };
            Some(format!(
                "filter ip4Dst = {public}; ip4Dst := {}; {deliver}",
                vm.ip
            ))
        })
        .collect();
    if inbound.is_empty() {
        return Vec::new();
    }
    // One case whose port test is written once, in front of the per-VM cases.
    vec![format!(
        "filter port = {}; begin\n       {}\n     end",
        gw.port,
        inbound.join("\n     + ")
    )]
}

/// Priority of the outbound flows: above every compiled rule, below the counted
/// drops (which they never overlap).
pub const GATEWAY_OUTBOUND_PRIORITY: u16 = 63_000;

/// The prefixes of IPv4 outside `net/len`: one per bit of the prefix.
fn complement(net: u32, len: u8) -> Vec<(u32, u8)> {
    (1..=len)
        .map(|l| {
            let bit = 1u32 << (32 - u32::from(l));
            ((net & prefix_mask32(l)) ^ bit, l)
        })
        .collect()
}

/// The outbound flows of `host`'s switch: a VM's IPv4 to outside the overlay,
/// arriving where the VM itself sends from (its port, or on its home gateway the
/// tunnel from its host; both hosts during a migration), goes to the tunnel to
/// its home gateway, or there leaves through the uplink with its public address
/// as source and the router as destination.
///
/// Plain flows rather than NetKAT: the flow compiler tests sources before
/// destinations, so a per-VM source case next to the per-VM destination cases
/// would cost public VMs × VMs rules on every switch. Matching exactly the VM's
/// own ports keeps them disjoint from all other routing (no transit between
/// tunnels, nothing from the uplink), at the price that the user's policy does
/// not see this traffic.
pub fn outbound_flows(
    inv: &Inventory,
    host: &Host,
    migration: Option<&crate::routing::Migration>,
) -> Vec<FlowSpec> {
    let outside = complement(u32::from(inv.overlay.0), inv.overlay.1);
    let mut flows = Vec::new();
    for (vm, public, home) in public_vms(inv) {
        // Where the VM runs, and where it ran or will run during its migration.
        let mut places = vec![(vm.host.as_str(), vm.port)];
        if let Some(m) = migration.filter(|m| m.vm == vm.name) {
            places.push((m.from_host.as_str(), m.from_port));
            places.push((m.to_host.as_str(), m.to_port));
        }
        places.sort_unstable();
        places.dedup();
        let mut in_ports = Vec::new();
        // Every other serving gateway also translates the address inbound and
        // tunnels the internet's packets here; its tunnel must be allowed to carry
        // internet sources, which `scd` grants to the peers the tables route
        // internet destinations to. So where the VM runs, each of them gets a
        // backup route one priority below the home gateway's, shadowed by it.
        let mut backups = Vec::new();
        let actions = if home.host == host.name {
            for (h, port) in &places {
                if *h == host.name {
                    in_ports.push(*port);
                } else if let Some(remote) = inv.host(h) {
                    in_ports.push(remote.tunnel_port());
                }
            }
            vec![
                Action::SetField {
                    field: Field::Ipv4Src,
                    value: u128::from(u32::from(public)),
                },
                Action::SetField {
                    field: Field::EthSrc,
                    value: u128::from(home.mac.to_u64()),
                },
                Action::SetField {
                    field: Field::EthDst,
                    value: u128::from(home.router_mac.to_u64()),
                },
                Action::output(home.port),
            ]
        } else {
            let Some(home_host) = inv.host(&home.host) else {
                continue;
            };
            in_ports.extend(
                places
                    .iter()
                    .filter(|(h, _)| *h == host.name)
                    .map(|(_, port)| *port),
            );
            backups.extend(
                serving(inv, public)
                    .filter(|g| g.host != home.host && g.host != host.name)
                    .filter_map(|g| inv.host(&g.host))
                    .map(|h| vec![Action::output(h.tunnel_port())]),
            );
            vec![Action::output(home_host.tunnel_port())]
        };
        in_ports.sort_unstable();
        in_ports.dedup();
        for in_port in in_ports {
            for (net, len) in &outside {
                let matcher = FlowMatch::any()
                    .with(Field::InPort, u128::from(in_port))
                    .with(Field::EthType, u128::from(ethertype::IPV4))
                    .with(Field::Ipv4Src, u128::from(u32::from(vm.ip)))
                    .with_prefix32(Field::Ipv4Dst, *net, *len);
                let routes = std::iter::once(&actions).chain(backups.iter());
                for (rank, route) in (0u16..).zip(routes) {
                    let mut f =
                        FlowSpec::new(0, GATEWAY_OUTBOUND_PRIORITY - rank, matcher, route.clone());
                    f.cookie = crate::routing::SCC_COOKIE;
                    flows.push(f);
                }
            }
        }
    }
    flows
}

/// The counted drops of `host`'s switch: on every host, packets whose source is
/// a public address a gateway serves (only the gateway itself may use them, after
/// NAT, so an overlay packet carrying one is spoofed); on a gateway, packets from
/// the uplink to a public address no VM owns. Each flow's counters are the count.
pub fn counted_drops(inv: &Inventory, host: &Host) -> Vec<FlowSpec> {
    let mut flows = Vec::new();
    let drop = |matcher: FlowMatch| {
        let mut f = FlowSpec::new(0, GATEWAY_DROP_PRIORITY, matcher, Vec::<Action>::new());
        f.cookie = crate::routing::SCC_COOKIE;
        f
    };
    let ipv4 = FlowMatch::any().with(Field::EthType, u128::from(ethertype::IPV4));
    let prefixes: std::collections::BTreeSet<(Ipv4Addr, u8)> = inv
        .gateways
        .values()
        .filter(|g| inv.host(&g.host).is_some())
        .map(|g| g.public_prefix)
        .collect();
    for (net, len) in prefixes {
        flows.push(drop(ipv4.with_prefix32(
            Field::Ipv4Src,
            u32::from(net),
            len,
        )));
    }
    if let Some(gw) = inv.gateways.get(&host.name) {
        // The uplink faces the internet: nothing from it may reach the overlay
        // except through the translation of an owned public address.
        flows.push(drop(
            ipv4.with(Field::InPort, u128::from(gw.port)).with_prefix32(
                Field::Ipv4Dst,
                u32::from(inv.overlay.0),
                inv.overlay.1,
            ),
        ));
        let (net, len) = gw.public_prefix;
        let owned: Vec<u32> = public_vms(inv)
            .filter(|(_, public, _)| gw.serves(*public))
            .map(|(_, public, _)| u32::from(public))
            .collect();
        for (n, l) in uncovered(u32::from(net), len, &owned) {
            flows.push(drop(
                ipv4.with(Field::InPort, u128::from(gw.port))
                    .with_prefix32(Field::Ipv4Dst, n, l),
            ));
        }
    }
    flows
}

/// The prefixes covering `net/len` except the addresses in `owned`: disjoint from
/// the owned addresses, so they can sit above the rules that serve those.
fn uncovered(net: u32, len: u8, owned: &[u32]) -> Vec<(u32, u8)> {
    let mask = prefix_mask32(len);
    if !owned.iter().any(|a| a & mask == net) {
        return vec![(net, len)];
    }
    if len == 32 {
        return Vec::new();
    }
    let half = 1u32 << (31 - len);
    let mut out = uncovered(net, len + 1, owned);
    out.extend(uncovered(net | half, len + 1, owned));
    out
}

/// How the controller tells the internet where a public address enters
/// (`[controller] announce` in the inventory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Announce {
    /// `ip route replace ADDRESS/32 via UPLINK` in the namespace `scc` runs in: the
    /// emulated internet's router in the tests and the demo.
    IpRoute,
}

impl std::str::FromStr for Announce {
    type Err = String;

    fn from_str(s: &str) -> Result<Announce, String> {
        match s {
            "ip-route" => Ok(Announce::IpRoute),
            other => Err(format!(
                "unknown announcement method `{other}` (expected \"ip-route\")"
            )),
        }
    }
}

/// Tells the internet where a public prefix enters the supercloud from now on.
/// Behind a trait so that a BGP speaker can take the place of the emulated
/// router's route table.
pub trait Announcer: std::fmt::Debug {
    /// Sends `prefix` to `next_hop` (a gateway's uplink address), replacing any
    /// earlier announcement of the same prefix.
    fn announce(&self, prefix: (Ipv4Addr, u8), next_hop: Ipv4Addr) -> Result<(), String>;
}

/// [`Announce::IpRoute`].
#[derive(Debug, Clone, Copy, Default)]
pub struct IpRoute;

impl Announcer for IpRoute {
    fn announce(&self, prefix: (Ipv4Addr, u8), next_hop: Ipv4Addr) -> Result<(), String> {
        let out = std::process::Command::new("ip")
            .args(["route", "replace", &format!("{}/{}", prefix.0, prefix.1)])
            .args(["via", &next_hop.to_string()])
            .output()
            .map_err(|e| format!("ip route: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "ip route replace {}/{} via {next_hop}: {}",
                prefix.0,
                prefix.1,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

/// A public address whose home gateway changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The address.
    pub public: Ipv4Addr,
    /// Its new home gateway's host.
    pub gateway: String,
    /// That gateway's uplink address.
    pub next_hop: Ipv4Addr,
}

/// The public address of `vm` (placed at its new host in `inv`) if its home
/// gateway there is not the one it had on `from_host`.
pub fn moves(inv: &Inventory, vm: &str, from_host: &str) -> Vec<Move> {
    public_vms(inv)
        .filter(|(v, _, _)| v.name == vm)
        .filter(|(v, public, new_home)| {
            let was = Vm {
                host: from_host.to_string(),
                ..(*v).clone()
            };
            home(inv, &was, *public).map(|g| &g.host) != Some(&new_home.host)
        })
        .map(|(_, public, home)| Move {
            public,
            gateway: home.host.clone(),
            next_hop: home.address,
        })
        .collect()
}

/// Announcements to make after a migration's switch step.
#[derive(Debug)]
pub struct Announcements {
    moves: Vec<Move>,
    announcer: Box<dyn Announcer + Send>,
}

impl Announcements {
    /// What the switch step that moves `vm` from `from_host` to its host in `inv`
    /// has to announce, with the method `inv` names; `None` when nothing.
    pub fn after_move(inv: &Inventory, vm: &str, from_host: &str) -> Option<Announcements> {
        let announcer: Box<dyn Announcer + Send> = match inv.announce? {
            Announce::IpRoute => Box::new(IpRoute),
        };
        let moves = moves(inv, vm, from_host);
        (!moves.is_empty()).then_some(Announcements { moves, announcer })
    }

    /// Makes the announcements on a thread of its own and reports each outcome
    /// through `noted` (the migration timeline). Every serving gateway keeps
    /// translating the address, so until an announcement has taken effect the
    /// old gateway goes on forwarding.
    pub fn spawn(self, mut noted: impl FnMut(String) + Send + 'static) {
        std::thread::spawn(move || {
            for m in self.moves {
                match self.announcer.announce((m.public, 32), m.next_hop) {
                    Ok(()) => noted(format!("announced {} via {}", m.public, m.gateway)),
                    Err(e) => {
                        tracing::error!("announcing {} via {}: {e}", m.public, m.gateway);
                        noted(format!("announcing {} failed", m.public));
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::{compile_network, compile_network_during, Migration, Phase};

    #[test]
    fn the_complement_of_the_overlay_is_everything_else_once() {
        let parts = complement(0x6440_0000, 10);
        assert_eq!(parts.len(), 10);
        for a in [
            0u32,
            0x6440_0001,
            0x647f_ffff,
            0x6480_0000,
            0x633f_ffff,
            0xcb00_710a,
            u32::MAX,
        ] {
            let n = parts
                .iter()
                .filter(|(net, len)| a & prefix_mask32(*len) == *net)
                .count();
            let inside = a & prefix_mask32(10) == 0x6440_0000;
            assert_eq!(n, usize::from(!inside), "{a:x}");
        }
    }
    use dataplane_core::pipeline::Pipeline;
    use openflow::flow::{FlowKey, Instruction};

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

    #[test]
    fn the_public_prefix_minus_owned_addresses_is_covered_exactly() {
        let net = ip([203, 0, 113, 0]);
        let owned = [ip(PUBLIC), ip([203, 0, 113, 200])];
        let parts = uncovered(net, 24, &owned);
        for host in 0..=255u32 {
            let a = net | host;
            let covering = parts
                .iter()
                .filter(|(n, l)| a & prefix_mask32(*l) == *n)
                .count();
            assert_eq!(covering, usize::from(!owned.contains(&a)), "{a:x}");
        }
        assert_eq!(uncovered(net, 24, &[]), [(net, 24)]);
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
        let web1 = moved.vms.get_mut("web1").unwrap();
        web1.host = "host-c".into();
        web1.port = 7;
        let migration = Migration {
            vm: "web1".into(),
            from_host: "host-a".into(),
            from_port: 1,
            to_host: "host-c".into(),
            to_port: 7,
            phase: Phase::Switched,
        };
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
        let web1 = inv.vms.get_mut("web1").unwrap();
        web1.host = "host-b".into();
        web1.port = 5;
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
        let web1 = after.vms.get_mut("web1").unwrap();
        web1.host = "host-c".into();
        web1.port = 5;
        assert_eq!(
            moves(&after, "web1", "host-a"),
            [Move {
                public: Ipv4Addr::from(PUBLIC),
                gateway: "host-c".into(),
                next_hop: Ipv4Addr::new(198, 51, 100, 194),
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
        let web1 = inv.vms.get_mut("web1").unwrap();
        web1.host = "host-b".into();
        web1.port = 6;
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
        let web1 = inv.vms.get_mut("web1").unwrap();
        web1.host = "host-b".into();
        web1.port = 5;
        let migration = Migration {
            vm: "web1".into(),
            from_host: "host-b".into(),
            from_port: 5,
            to_host: "host-c".into(),
            to_port: 6,
            phase: Phase::Prepared,
        };
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

    #[test]
    fn the_host_config_of_a_gateway_has_its_uplink_port() {
        let inv = inventory();
        let cfg = inv.host_config("host-a", "k").unwrap();
        let parsed = dataplane::config::HostConfig::parse(&cfg, std::path::Path::new("a.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{cfg}"));
        let uplink = parsed.ports.iter().find(|p| p.number == UPLINK).unwrap();
        assert_eq!(uplink.kind, dataplane::config::PortKind::Raw);
        assert_eq!(uplink.mac, Some(inv.gateways["host-a"].mac));
        assert!(uplink.answer_arp.contains(&(ip([203, 0, 113, 0]), 24)));
    }
}
