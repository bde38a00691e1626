//! The routing every switch runs, derived from the inventory, as NetKAT syntax
//! trees built in code (never as text to re-parse).
//!
//! On each host's switch, IPv4 to a local VM is delivered with both MACs
//! rewritten (the anycast gateway's as source, the VM's as destination); IPv4 to
//! a VM on another host leaves through the direct tunnel to that host, unless it
//! came from a tunnel (no transit); a gateway adds NAT between public addresses
//! and VMs (`gateway`); anything else is dropped. A host with a VM prefix
//! (`vm_prefix`) is reached by one route per switch for the whole prefix, below
//! the routes to single VMs: a VM inside it gets routes of its own only when it
//! runs elsewhere (moved, or arriving at a migration's destination); an address
//! of the prefix with no VM is tunnelled to the host and dropped there. ARP never reaches the tables:
//! `scd` answers it on the host. The routing is a union of [`Case`]s, each about
//! one destination address, so the cases of one address can be recomputed alone
//! (`program` compiles them with the user's policy, which runs first, so it can
//! drop or constrain traffic before routing decides where it goes). This module
//! owns the cases and the whole routing program that `scc routing` prints; it
//! never compiles and never talks to a switch.

use crate::gateway::ip;
use crate::model::{Host, Inventory, Migration, Phase, Vm, VmIndex};
use crate::netkat::diagnostics::Diagnostic;
use crate::netkat::syntax::{HeaderField, Policy, Pred, Value};
use crate::netkat::CompileError;
use imbl::{OrdMap, OrdSet};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Cookie carried by every flow the controller installs, so `ovs-ofctl` and the
/// controller itself can tell them apart from flows installed by hand.
pub const SCC_COOKIE: u64 = 0x5cc0_0000_0000_0000;

/// Why a policy could not become tables.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    /// The user's policy does not parse or names something unknown.
    #[error("{rendered}")]
    Policy {
        /// The diagnostic.
        diagnostic: Diagnostic,
        /// The diagnostic rendered rustc-style with the file name.
        rendered: String,
    },
    /// The composed program does not compile.
    #[error("the policy composed with routing does not compile: {0}")]
    Compile(#[from] CompileError),
    /// The generated routing does not lower (a bug, reported rather than hidden).
    #[error("generated routing is invalid: {0}")]
    Routing(String),
}

/// Priority of the flow that reports a migrating VM's announcement (above any
/// compiled rule).
pub const ANNOUNCE_PRIORITY: u16 = 65_000;

/// Which part of a switch's table a case belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Band {
    /// Below every remote route, only for packets that did not come from a
    /// tunnel: the route to another host's VM prefix.
    Prefix,
    /// Only for packets that did not come from a tunnel: routes to remote VMs.
    Remote,
    /// For packets from anywhere: local delivery, gateways, migration transit.
    Open,
}

/// One routing case of one switch: what it does with IPv4 to `dst`. Cases about
/// different addresses never overlap.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Case {
    /// The destination address every packet of the case has (the first of
    /// them for a prefix route).
    pub dst: u32,
    /// How many leading bits of `dst` the case is about (32 but for a prefix).
    pub len: u8,
    /// Where in the table it goes.
    pub band: Band,
    /// What it does (starting with its own test of `dst`).
    pub pol: Policy,
}

/// The VMs by overlay and by public address, to find the cases of one address,
/// and the hosts by VM prefix. Persistent maps: a copy shares everything, so
/// the next inventory's is this one with the VMs that changed
/// ([`Destinations::updated`]), in proportion to the change.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Destinations {
    /// VM names by overlay address (one, unless the inventory is invalid), in
    /// name order.
    by_ip: OrdMap<u32, Vec<String>>,
    by_public: OrdMap<u32, Vec<String>>,
    /// Hosts with a VM prefix by its first address (prefixes never overlap).
    prefixes: Arc<BTreeMap<u32, (u8, Host)>>,
    /// The overlay addresses of each host's VMs (with the VM's name).
    by_host: imbl::HashMap<String, OrdSet<(u32, String)>>,
    /// Overlay addresses whose VM is not on its prefix's host (or that lie in no
    /// prefix): every switch may route them.
    away: OrdSet<(u32, String)>,
}

impl Destinations {
    /// The destinations of `inv`.
    pub fn new(inv: &Inventory) -> Destinations {
        let mut prefixes = BTreeMap::new();
        for h in &inv.hosts {
            if let Some((net, len)) = h.vm_prefix {
                prefixes.insert(u32::from(net), (len, h.clone()));
            }
        }
        let mut d = Destinations {
            prefixes: Arc::new(prefixes),
            ..Destinations::default()
        };
        for vm in inv.vms.values() {
            d.record(vm);
        }
        d
    }

    /// The destinations of `inv`, from these of `old`: only the VMs that differ
    /// are indexed again (all when the hosts differ).
    pub fn updated(&self, old: &Inventory, inv: &Inventory) -> Destinations {
        if old.hosts != inv.hosts {
            return Destinations::new(inv);
        }
        let mut d = self.clone();
        d.follow(old, inv);
        d
    }

    /// The host whose VM prefix holds `ip`, if any.
    pub fn home(&self, ip: u32) -> Option<&Host> {
        let (&net, (len, host)) = self.prefixes.range(..=ip).next_back()?;
        (ip & config_support::prefix_mask(*len) == net).then_some(host)
    }

    /// The VMs whose overlay address is `ip`.
    fn at<'i>(&self, inv: &'i Inventory, ip: u32) -> impl Iterator<Item = &'i Vm> + use<'i, '_> {
        named(inv, self.by_ip.get(&ip))
    }

    /// The VMs that claim the public address `ip`, in name order.
    fn claiming<'i>(
        &self,
        inv: &'i Inventory,
        ip: u32,
    ) -> impl Iterator<Item = &'i Vm> + use<'i, '_> {
        named(inv, self.by_public.get(&ip))
    }

    /// The addresses that may have cases on `host`'s switch: its VMs', those of
    /// VMs away from their prefix's host, public addresses and the migrating VM's.
    pub fn addresses_on(
        &self,
        inv: &Inventory,
        host: &Host,
        migration: Option<&Migration>,
    ) -> BTreeSet<u32> {
        let mut out: BTreeSet<u32> = self.away.iter().map(|(ip, _)| *ip).collect();
        out.extend(
            self.by_host
                .get(host.name.as_str())
                .into_iter()
                .flatten()
                .map(|(ip, _)| *ip),
        );
        out.extend(self.by_public.keys());
        out.extend(
            migration
                .and_then(|m| inv.vms.get(&m.vm))
                .map(|vm| u32::from(vm.ip)),
        );
        out
    }

    /// Every address a case can be about.
    pub fn addresses(&self) -> BTreeSet<u32> {
        self.by_ip
            .keys()
            .chain(self.by_public.keys())
            .copied()
            .collect()
    }
}

impl VmIndex for Destinations {
    fn forget(&mut self, vm: &Vm) {
        let ip = u32::from(vm.ip);
        remove_name(&mut self.by_ip, ip, &vm.name);
        let key = (ip, vm.name.clone());
        if let Some(of_host) = self.by_host.get_mut(&vm.host) {
            of_host.remove(&key);
            if of_host.is_empty() {
                self.by_host.remove(&vm.host);
            }
        }
        self.away.remove(&key);
        if let Some(public) = vm.public_ip {
            remove_name(&mut self.by_public, u32::from(public), &vm.name);
        }
    }

    fn record(&mut self, vm: &Vm) {
        let ip = u32::from(vm.ip);
        insert_name(self.by_ip.entry(ip).or_default(), &vm.name);
        self.by_host
            .entry(vm.host.clone())
            .or_default()
            .insert((ip, vm.name.clone()));
        if self.home(ip).is_none_or(|h| h.name != vm.host) {
            self.away.insert((ip, vm.name.clone()));
        }
        if let Some(public) = vm.public_ip {
            insert_name(
                self.by_public.entry(u32::from(public)).or_default(),
                &vm.name,
            );
        }
    }
}

/// Adds `name` to `names`, kept in name order (as the inventory lists VMs).
fn insert_name(names: &mut Vec<String>, name: &str) {
    if let Err(at) = names.binary_search_by(|n| n.as_str().cmp(name)) {
        names.insert(at, name.to_string());
    }
}

/// Removes `name` from the names of `key`, and the key once it has none.
fn remove_name(map: &mut OrdMap<u32, Vec<String>>, key: u32, name: &str) {
    let Some(names) = map.get_mut(&key) else {
        return;
    };
    names.retain(|n| n != name);
    if names.is_empty() {
        map.remove(&key);
    }
}

/// The VMs of `inv` with these names.
fn named<'i, 'n>(
    inv: &'i Inventory,
    names: Option<&'n Vec<String>>,
) -> impl Iterator<Item = &'i Vm> + use<'i, 'n> {
    names.into_iter().flatten().filter_map(|n| inv.vms.get(n))
}

fn test(field: HeaderField, value: Value) -> Policy {
    Policy::filter(Pred::test(field, value))
}

fn int(v: impl Into<u64>) -> Value {
    Value::Int(v.into())
}

/// `port = t1 or …`: from the tunnel of any other host.
pub(crate) fn from_tunnels(inv: &Inventory, host: &Host) -> Pred {
    Pred::or_all(
        inv.hosts
            .iter()
            .filter(|h| h.name != host.name)
            .map(|h| Pred::test(HeaderField::Port, int(h.tunnel_port())))
            .collect(),
    )
}

/// Delivery to a VM's port on this switch, both MACs rewritten.
pub(crate) fn deliver(inv: &Inventory, vm: &Vm, port: u32) -> Vec<Policy> {
    vec![
        Policy::assign(HeaderField::EthSrc, Value::Mac(inv.gateway_mac.to_u64())),
        Policy::assign(HeaderField::EthDst, Value::Mac(vm.mac.to_u64())),
        Policy::assign(HeaderField::Port, int(port)),
    ]
}

/// The cases of `host`'s switch about IPv4 to `dst`, with `migration` in progress.
pub fn cases_to(
    inv: &Inventory,
    host: &Host,
    dst: u32,
    dests: &Destinations,
    migration: Option<&Migration>,
) -> Vec<Case> {
    let mut cases = Vec::new();
    let has_tunnels = inv.hosts.iter().any(|h| h.name != host.name);
    let to_dst = || test(HeaderField::Ip4Dst, ip(Ipv4Addr::from(dst)));
    for vm in dests.at(inv, dst) {
        let open = |steps: Vec<Policy>| Case {
            dst,
            len: 32,
            band: Band::Open,
            pol: Policy::seq_all(steps),
        };
        if let Some(m) = migration
            .filter(|m| m.phase == Phase::Prepared && m.to_host == host.name && m.vm == vm.name)
        {
            // Make before break: deliver what the tunnels bring once senders switch.
            // Disjoint from the VM's own case below, which takes only local traffic.
            if has_tunnels {
                let mut steps = vec![to_dst(), Policy::filter(from_tunnels(inv, host))];
                steps.extend(deliver(inv, vm, m.to_port));
                cases.push(open(steps));
            }
        }
        let remote = inv.host(&vm.host);
        // At home, the VM is reached through its host's prefix route, except
        // where it is arriving: that switch's own routes must not cover it then.
        let routed_alone = dests.home(dst).is_none_or(|h| h.name != vm.host)
            || migration.is_some_and(|m| {
                m.phase == Phase::Prepared && m.to_host == host.name && m.vm == vm.name
            });
        if vm.host == host.name {
            let mut steps = vec![to_dst()];
            steps.extend(deliver(inv, vm, vm.port));
            cases.push(open(steps));
        } else if let (Some(remote), true) = (
            remote,
            migration.is_some_and(|m| {
                m.phase == Phase::Switched && m.vm == vm.name && m.from_host == host.name
            }),
        ) {
            // The old host of a VM that just moved forwards whatever still
            // arrives for it, from anywhere, to its new host.
            let out = Policy::assign(HeaderField::Port, int(remote.tunnel_port()));
            cases.push(open(vec![to_dst(), out]));
        } else if let (Some(remote), true) = (remote, has_tunnels && routed_alone) {
            let out = Policy::assign(HeaderField::Port, int(remote.tunnel_port()));
            cases.push(Case {
                dst,
                len: 32,
                band: Band::Remote,
                pol: Policy::seq_all(vec![to_dst(), out]),
            });
        }
    }
    let claimants = dests.claiming(inv, dst);
    if let Some(pol) = crate::gateway::inbound_case(inv, host, Ipv4Addr::from(dst), claimants) {
        cases.push(Case {
            dst,
            len: 32,
            band: Band::Open,
            pol,
        });
    }
    cases
}

/// The route on `host`'s switch to `owner`'s VM prefix, if `owner` is another
/// host with one.
pub fn prefix_case(host: &Host, owner: &Host) -> Option<Case> {
    let (net, len) = owner.vm_prefix.filter(|_| owner.name != host.name)?;
    let prefix = Value::Ip4 {
        addr: u32::from(net),
        prefix: Some(len),
    };
    let out = Policy::assign(HeaderField::Port, int(owner.tunnel_port()));
    Some(Case {
        dst: u32::from(net),
        len,
        band: Band::Prefix,
        pol: Policy::seq_all(vec![test(HeaderField::Ip4Dst, prefix), out]),
    })
}

/// The cases of `host`'s switch as a program:
/// `open + filter not tunnels; (remote + filter not (ip4Dst = routed alone); prefixes)`,
/// where a prefix route never takes an address that has cases of its own (as
/// the table's priorities have it).
pub fn switch_program(inv: &Inventory, host: &Host, cases: Vec<Case>) -> Policy {
    let (open, rest): (Vec<Case>, Vec<Case>) =
        cases.into_iter().partition(|c| c.band == Band::Open);
    let (prefixes, remote): (Vec<Case>, Vec<Case>) =
        rest.into_iter().partition(|c| c.band == Band::Prefix);
    let covered: BTreeMap<u32, u8> = prefixes.iter().map(|c| (c.dst, c.len)).collect();
    let in_prefix = |dst: u32| {
        covered
            .range(..=dst)
            .next_back()
            .is_some_and(|(&net, &len)| dst & config_support::prefix_mask(len) == net)
    };
    let alone: BTreeSet<u32> = open
        .iter()
        .chain(&remote)
        .map(|c| c.dst)
        .filter(|&d| in_prefix(d))
        .collect();
    let mut parts: Vec<Policy> = open.into_iter().map(|c| c.pol).collect();
    let mut below_guard: Vec<Policy> = remote.into_iter().map(|c| c.pol).collect();
    if !prefixes.is_empty() {
        let own_cases = alone
            .into_iter()
            .map(|d| Pred::test(HeaderField::Ip4Dst, ip(Ipv4Addr::from(d))))
            .collect();
        below_guard.push(Policy::seq_all(vec![
            Policy::filter(Pred::negate(Pred::or_all(own_cases))),
            Policy::union_all(prefixes.into_iter().map(|c| c.pol).collect()),
        ]));
    }
    if !below_guard.is_empty() {
        // Never from one tunnel into another: the mesh is direct, no transit.
        parts.push(Policy::seq_all(vec![
            Policy::filter(Pred::negate(from_tunnels(inv, host))),
            Policy::union_all(below_guard),
        ]));
    }
    Policy::union_all(parts)
}

/// The routing program of the whole overlay.
pub fn routing_program(inv: &Inventory) -> Policy {
    routing_program_during(inv, None)
}

/// The routing program, with a migration in progress when `migration` is given:
/// `filter ethTyp = 0x800; (filter switch = 1; … + filter switch = 2; … + …)`,
/// every union a balanced tree.
pub fn routing_program_during(inv: &Inventory, migration: Option<&Migration>) -> Policy {
    let dests = Destinations::new(inv);
    let addresses = dests.addresses();
    let switches = inv
        .hosts
        .iter()
        .map(|host| {
            let cases = addresses
                .iter()
                .flat_map(|&dst| cases_to(inv, host, dst, &dests, migration))
                .chain(inv.hosts.iter().filter_map(|o| prefix_case(host, o)))
                .collect();
            Policy::seq_all(vec![
                test(HeaderField::Switch, int(host.datapath_id)),
                switch_program(inv, host, cases),
            ])
        })
        .collect();
    Policy::seq_all(vec![
        test(HeaderField::EthTyp, int(openflow::flow::ethertype::IPV4)),
        Policy::union_all(switches),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printed_routing_has_a_route_per_other_hosts_prefix() {
        let text = include_str!("../../docs/examples/inventory.toml");
        let mut inv = Inventory::parse(text, "inventory.toml").unwrap();
        let db1_alone = "(filter ip4Dst = 100.64.2.1); port := 10002";
        assert!(routing_program(&inv).to_string().contains(db1_alone));
        inv.hosts[1].vm_prefix = Some((Ipv4Addr::new(100, 64, 2, 0), 24));
        let printed = routing_program(&inv).to_string();
        // On host-a and host-c, not on host-b itself; db1 (at home) has no route
        // of its own there.
        assert_eq!(
            printed.matches("ip4Dst = 100.64.2.0/24").count(),
            2,
            "{printed}"
        );
        assert!(
            !printed.contains("ip4Dst = 100.64.2.1; port := 10002"),
            "{printed}"
        );
    }

    #[test]
    fn sixty_thousand_cases_nest_shallowly_and_print_as_parseable_text() {
        let text = include_str!("../../docs/examples/inventory.toml");
        let mut inv = Inventory::parse(text, "inventory.toml").unwrap();
        let template = inv.vms["db1"].clone();
        for i in 0..20_000u32 {
            let mut vm = template.clone();
            vm.name = format!("v{i}");
            vm.ip = Ipv4Addr::from(0x6441_0000 + i);
            inv.vms.insert(vm.name.clone(), vm);
        }
        let program = routing_program(&inv);
        // Printed and parsed back: the parser's recursion follows the tree's
        // depth, which is logarithmic in the number of cases.
        let printed = program.to_string();
        let back = crate::netkat::parser::parse_policy(&printed).unwrap();
        assert_eq!(back.to_string(), printed);
    }
}
