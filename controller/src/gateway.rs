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
//! It never talks to a switch. The uplink itself is plain data in
//! [`crate::model::uplink`]; the routing marks these flows as the controller's.

use crate::model::{Announce, Gateway, Host, Inventory, Migration, Vm};
use crate::netkat::syntax::{HeaderField, Policy, Pred, Value};
use openflow::flow::{ethertype, prefix_mask32, Action, Field, FlowMatch};
use openflow::FlowSpec;
use std::net::{IpAddr, Ipv4Addr};

/// Priority of the counted drops: above every compiled rule, below the migration
/// announcement flow. They never overlap traffic the routing forwards.
pub const GATEWAY_DROP_PRIORITY: u16 = 64_000;

/// The gateways serving `public_ip` (whose public prefix holds it), in host order.
pub fn serving(inv: &Inventory, public_ip: Ipv4Addr) -> impl Iterator<Item = &Gateway> {
    serving_by(inv, move |g| g.serves(public_ip))
}

/// The gateways `serves` says serve an address, in host order.
pub(crate) fn serving_by(
    inv: &Inventory,
    serves: impl Fn(&Gateway) -> bool,
) -> impl Iterator<Item = &Gateway> {
    inv.hosts
        .iter()
        .filter_map(|h| inv.gateways.get(&h.name))
        .filter(move |g| serves(g))
}

/// The home gateway of `vm`'s public address: its traffic to the internet leaves
/// there, and the internet is told to send the address there. A serving gateway
/// in the VM's own cloud if there is one, else the first serving gateway.
pub fn home<'a>(inv: &'a Inventory, vm: &Vm, public_ip: Ipv4Addr) -> Option<&'a Gateway> {
    home_by(inv, vm, |g| g.serves(public_ip))
}

/// [`home`] among the gateways `serves` says serve the address.
pub(crate) fn home_by<'a>(
    inv: &'a Inventory,
    vm: &Vm,
    serves: impl Fn(&Gateway) -> bool + Copy,
) -> Option<&'a Gateway> {
    let cloud = inv.host(&vm.host).map(|h| h.cloud.as_str());
    let in_cloud = |g: &&Gateway| inv.host(&g.host).map(|h| h.cloud.as_str()) == cloud;
    serving_by(inv, serves)
        .find(in_cloud)
        .or_else(|| serving_by(inv, serves).next())
}

/// VMs with a public address some gateway serves, with their home gateway. An
/// address claimed by two VMs (the inventory and the API refuse that, but a state
/// stored before they did may hold one) goes to the first by name only, so a
/// gateway never sends one packet to two VMs.
fn public_vms(inv: &Inventory) -> impl Iterator<Item = (&Vm, Ipv4Addr, &Gateway)> {
    let mut claimed = std::collections::BTreeSet::new();
    inv.vms.values().filter_map(move |vm| {
        let public = vm.public_ip?;
        let gw = home(inv, vm, public)?;
        claimed.insert(public).then_some((vm, public, gw))
    })
}

/// Every VM with a public address a gateway serves, with that address and its
/// home gateway (each address to the first VM by name that claims it): found
/// once for all the switches whose plain flows are worked out, not per switch.
pub type PublicVms<'a> = Vec<(&'a Vm, Ipv4Addr, &'a Gateway)>;

/// [`PublicVms`] of `inv`.
pub fn public_vms_of(inv: &Inventory) -> PublicVms<'_> {
    public_vms(inv).collect()
}

/// The routing case (NetKAT, disjoint from every other case of this switch) a
/// gateway adds to its own switch for IPv4 from the uplink to `public`: inbound
/// translation to the overlay address of the first of `claimants` (the VMs with
/// that public address, by name) it serves, then that VM's own route from here
/// (its local port or the tunnel to its host). On every gateway that serves the
/// address, so it keeps working wherever the internet sends it.
pub fn inbound_case<'a>(
    inv: &Inventory,
    host: &Host,
    public: Ipv4Addr,
    mut claimants: impl Iterator<Item = &'a Vm>,
) -> Option<Policy> {
    let gw = inv.gateways.get(&host.name).filter(|g| g.serves(public))?;
    // The same VM `public_vms` gives the address to.
    let vm = claimants.find(|vm| home(inv, vm, public).is_some())?;
    let mut steps = vec![
        Policy::filter(Pred::test(
            HeaderField::Port,
            Value::Int(u64::from(gw.port)),
        )),
        Policy::filter(Pred::test(HeaderField::Ip4Dst, ip(public))),
        Policy::assign(HeaderField::Ip4Dst, ip(vm.ip)),
    ];
    if vm.host == host.name {
        steps.extend([
            Policy::assign(HeaderField::EthSrc, Value::Mac(inv.gateway_mac.to_u64())),
            Policy::assign(HeaderField::EthDst, Value::Mac(vm.mac.to_u64())),
            Policy::assign(HeaderField::Port, Value::Int(u64::from(vm.port))),
        ]);
    } else {
        let remote = inv.host(&vm.host)?;
        steps.push(Policy::assign(
            HeaderField::Port,
            Value::Int(u64::from(remote.tunnel_port())),
        ));
    }
    Some(Policy::seq_all(steps))
}

/// An IPv4 address as a NetKAT value.
pub fn ip(addr: Ipv4Addr) -> Value {
    Value::Ip4 {
        addr: u32::from(addr),
        prefix: None,
    }
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
/// not see this traffic. The flows carry no cookie; the routing gives them the
/// controller's.
pub fn outbound_flows(
    inv: &Inventory,
    host: &Host,
    migration: Option<&Migration>,
    public_vms: &PublicVms<'_>,
) -> Vec<FlowSpec> {
    let outside = complement(u32::from(inv.overlay.0), inv.overlay.1);
    let mut flows = Vec::new();
    for &(vm, public, home) in public_vms {
        // Where the VM runs, and where it ran or will run during its migration.
        let places = places(vm, migration);
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
            let source = Action::SetField {
                field: Field::Ipv4Src,
                value: u128::from(u32::from(public)),
            };
            std::iter::once(source).chain(out_of_uplink(home)).collect()
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
                    flows.push(FlowSpec::new(
                        0,
                        GATEWAY_OUTBOUND_PRIORITY - rank,
                        matcher,
                        route.clone(),
                    ));
                }
            }
        }
    }
    flows
}

/// Where `vm` runs, and where it ran or will run during its `migration`:
/// (host, port) pairs, each once.
pub(crate) fn places<'a>(vm: &'a Vm, migration: Option<&'a Migration>) -> Vec<(&'a str, u32)> {
    let mut places = vec![(vm.host.as_str(), vm.port)];
    if let Some(m) = migration.filter(|m| m.vm == vm.name) {
        places.push((m.from_host.as_str(), m.from_port));
        places.push((m.to_host.as_str(), m.to_port));
    }
    places.sort_unstable();
    places.dedup();
    places
}

/// Out of `home`'s uplink to the router: the uplink's MAC as source, the
/// router's as destination.
pub(crate) fn out_of_uplink(home: &Gateway) -> Vec<Action> {
    vec![
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
}

/// The counted drops of `host`'s switch: on every host, packets whose source is
/// a public address a gateway serves (only the gateway itself may use them, after
/// NAT, so an overlay packet carrying one is spoofed); on a gateway, packets from
/// the uplink to a public address no VM owns. Each flow's counters are the count.
/// The flows carry no cookie; the routing gives them the controller's.
pub fn counted_drops(inv: &Inventory, host: &Host, public_vms: &PublicVms<'_>) -> Vec<FlowSpec> {
    let mut flows = Vec::new();
    let drop =
        |matcher: FlowMatch| FlowSpec::new(0, GATEWAY_DROP_PRIORITY, matcher, Vec::<Action>::new());
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
        let owned: Vec<u32> = public_vms
            .iter()
            .filter(|(_, public, _)| gw.serves(*public))
            .map(|(_, public, _)| u32::from(*public))
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

/// Tells the internet where a public prefix enters the supercloud from now on.
/// Behind a trait so that a BGP speaker can take the place of the emulated
/// router's route table.
pub trait Announcer: std::fmt::Debug {
    /// Sends `prefix` to `next_hop` (a gateway's uplink address), replacing any
    /// earlier announcement of the same prefix.
    fn announce(&self, prefix: (IpAddr, u8), next_hop: IpAddr) -> Result<(), String>;
}

/// [`Announce::IpRoute`].
#[derive(Debug, Clone, Copy, Default)]
pub struct IpRoute;

impl Announcer for IpRoute {
    fn announce(&self, prefix: (IpAddr, u8), next_hop: IpAddr) -> Result<(), String> {
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
    /// The address (IPv4 or IPv6).
    pub public: IpAddr,
    /// Its new home gateway's host.
    pub gateway: String,
    /// That gateway's uplink address of the same family.
    pub next_hop: IpAddr,
}

/// The public addresses of `vm` (placed at its new host in `inv`), IPv4 and
/// IPv6, whose home gateway there is not the one they had on `from_host`.
pub fn moves(inv: &Inventory, vm: &str, from_host: &str) -> Vec<Move> {
    let was = |v: &Vm| Vm {
        host: from_host.to_string(),
        ..v.clone()
    };
    let mut moves: Vec<Move> = public_vms(inv)
        .filter(|(v, _, _)| v.name == vm)
        .filter(|(v, public, new_home)| {
            home(inv, &was(v), *public).map(|g| &g.host) != Some(&new_home.host)
        })
        .map(|(_, public, home)| Move {
            public: public.into(),
            gateway: home.host.clone(),
            next_hop: home.address.into(),
        })
        .collect();
    let public6 = inv.vms.get(vm).and_then(|v| Some((v, v.public_ipv6?)));
    if let Some((v, public)) = public6.filter(|_| inv.overlay_ipv6.is_some()) {
        let serves = move |g: &Gateway| g.serves_ipv6(public);
        let new_home = home_by(inv, v, serves);
        let old_home = home_by(inv, &was(v), serves);
        if let Some(home) = new_home.filter(|h| Some(&h.host) != old_home.map(|g| &g.host)) {
            moves.extend(home.address6.map(|next_hop| Move {
                public: public.into(),
                gateway: home.host.clone(),
                next_hop: next_hop.into(),
            }));
        }
    }
    moves
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
                let host_len = if m.public.is_ipv4() { 32 } else { 128 };
                match self.announcer.announce((m.public, host_len), m.next_hop) {
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

    const PUBLIC: [u8; 4] = [203, 0, 113, 10];

    fn ip(a: [u8; 4]) -> u32 {
        u32::from_be_bytes(a)
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
}
