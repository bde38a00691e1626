//! The routing every switch runs, derived from the inventory, as NetKAT syntax
//! trees built in code (never as text to re-parse).
//!
//! On each host's switch, IPv4 to a local VM is delivered with both MACs
//! rewritten (the anycast gateway's as source, the VM's as destination); IPv4 to
//! a VM on another host leaves through the direct tunnel to that host, unless it
//! came from a tunnel (no transit); a gateway adds NAT between public addresses
//! and VMs (`gateway`); anything else is dropped. ARP never reaches the tables:
//! `scd` answers it on the host. The routing is a union of [`Case`]s, each about
//! one destination address, so the cases of one address can be recomputed alone
//! (`program` compiles them with the user's policy, which runs first, so it can
//! drop or constrain traffic before routing decides where it goes). This module
//! owns the cases and the whole routing program that `scc routing` prints; it
//! never compiles and never talks to a switch.

use crate::gateway::ip;
use crate::model::{Host, Inventory, Migration, Phase, Vm};
use crate::netkat::diagnostics::Diagnostic;
use crate::netkat::syntax::{HeaderField, Policy, Pred, Value};
use crate::netkat::CompileError;
use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

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
    /// Only for packets that did not come from a tunnel: routes to remote VMs.
    Remote,
    /// For packets from anywhere: local delivery, gateways, migration transit.
    Open,
}

/// One routing case of one switch: what it does with IPv4 to `dst`. Cases about
/// different addresses never overlap.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Case {
    /// The destination address every packet of the case has.
    pub dst: u32,
    /// Where in the table it goes.
    pub band: Band,
    /// What it does (starting with its own test of `dst`).
    pub pol: Policy,
}

/// The VMs by overlay and by public address, to find the cases of one address.
#[derive(Debug, Default)]
pub struct Destinations<'a> {
    by_ip: HashMap<u32, Vec<&'a Vm>>,
    by_public: HashMap<u32, Vec<&'a Vm>>,
}

impl<'a> Destinations<'a> {
    /// The destinations of `inv`.
    pub fn new(inv: &'a Inventory) -> Destinations<'a> {
        let mut d = Destinations::default();
        for vm in inv.vms.values() {
            d.by_ip.entry(u32::from(vm.ip)).or_default().push(vm);
            if let Some(public) = vm.public_ip {
                d.by_public.entry(u32::from(public)).or_default().push(vm);
            }
        }
        d
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

fn test(field: HeaderField, value: Value) -> Policy {
    Policy::filter(Pred::test(field, value))
}

fn int(v: impl Into<u64>) -> Value {
    Value::Int(v.into())
}

/// `port = t1 or …`: from the tunnel of any other host.
fn from_tunnels(inv: &Inventory, host: &Host) -> Pred {
    Pred::or_all(
        inv.hosts
            .iter()
            .filter(|h| h.name != host.name)
            .map(|h| Pred::test(HeaderField::Port, int(h.tunnel_port())))
            .collect(),
    )
}

/// Delivery to a VM's port on this switch, both MACs rewritten.
fn deliver(inv: &Inventory, vm: &Vm, port: u32) -> Vec<Policy> {
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
    dests: &Destinations<'_>,
    migration: Option<&Migration>,
) -> Vec<Case> {
    let mut cases = Vec::new();
    let has_tunnels = inv.hosts.iter().any(|h| h.name != host.name);
    let to_dst = || test(HeaderField::Ip4Dst, ip(Ipv4Addr::from(dst)));
    for vm in dests.by_ip.get(&dst).into_iter().flatten() {
        let open = |steps: Vec<Policy>| Case {
            dst,
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
        } else if let (Some(remote), true) = (remote, has_tunnels) {
            let out = Policy::assign(HeaderField::Port, int(remote.tunnel_port()));
            cases.push(Case {
                dst,
                band: Band::Remote,
                pol: Policy::seq_all(vec![to_dst(), out]),
            });
        }
    }
    let claimants = dests.by_public.get(&dst).into_iter().flatten().copied();
    if let Some(pol) = crate::gateway::inbound_case(inv, host, Ipv4Addr::from(dst), claimants) {
        cases.push(Case {
            dst,
            band: Band::Open,
            pol,
        });
    }
    cases
}

/// The cases of `host`'s switch as a program: `open + filter not tunnels; remote`.
pub fn switch_program(inv: &Inventory, host: &Host, cases: Vec<Case>) -> Policy {
    let (open, remote): (Vec<Case>, Vec<Case>) =
        cases.into_iter().partition(|c| c.band == Band::Open);
    let mut parts: Vec<Policy> = open.into_iter().map(|c| c.pol).collect();
    if !remote.is_empty() {
        // Never from one tunnel into another: the mesh is direct, no transit.
        parts.push(Policy::seq_all(vec![
            Policy::filter(Pred::negate(from_tunnels(inv, host))),
            Policy::union_all(remote.into_iter().map(|c| c.pol).collect()),
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
