//! The overlay's IPv6 routing on every switch, when the inventory has an
//! `overlay_ipv6_prefix`: a /128 route per VM address, as the IPv4 routing's /32s
//! (`routing`) and moved the same way through a migration's phases, written
//! directly as OpenFlow flows. On the VM's own host IPv6 to it is delivered to
//! its port with both MACs rewritten; elsewhere it leaves through the direct
//! tunnel to that host, unless it came from a tunnel (no transit: the tunnels'
//! IPv6 is dropped below the open routes); while a migration is prepared the
//! destination switch already delivers what the tunnels bring, and once it has
//! switched the old host forwards what still arrives to the new one.
//!
//! A VM's public IPv6 address is one of its addresses here too; what only the
//! gateways add for it (the uplink, the way out to the internet) is
//! `gateway6`'s, between these priorities.
//!
//! These flows match `dl_type=0x86dd` only, so they never overlap the compiled
//! IPv4 rules, and they sit above them so no compiled catch-all hides them. The
//! user's policy does not see IPv6 yet (the policy language has no IPv6 fields):
//! see docs/security.md. Pure: no I/O.

use crate::model::{Host, Inventory, Migration, Phase, Vm};
use crate::routing::SCC_COOKIE;
use openflow::flow::{ethertype, Action, Field, FlowMatch};
use openflow::FlowSpec;

/// Priority of the routes to VMs on other hosts (packets from VM ports).
pub const IPV6_REMOTE_PRIORITY: u16 = 60_000;
/// Priority of the drops of IPv6 from the tunnels, above the remote routes.
pub const IPV6_GUARD_PRIORITY: u16 = IPV6_REMOTE_PRIORITY + 1;
/// Priority of local delivery and of a migration's transit, from anywhere (one
/// above the guard is the home gateway's outbound public IPv6, `gateway6`).
pub const IPV6_OPEN_PRIORITY: u16 = IPV6_GUARD_PRIORITY + 2;
/// Priority of the drop of IPv6 from a gateway's uplink, above every route:
/// only the owned public IPv6 addresses (`gateway6`, above it) come in.
pub const IPV6_UPLINK_DROP_PRIORITY: u16 = IPV6_OPEN_PRIORITY + 1;

/// The IPv6 flows of `host`'s switch with `migration` in progress; none when
/// the overlay carries no IPv6.
pub fn ipv6_flows(inv: &Inventory, host: &Host, migration: Option<&Migration>) -> Vec<FlowSpec> {
    if inv.overlay_ipv6.is_none() {
        return Vec::new();
    }
    let tunnels: Vec<u32> = inv
        .hosts
        .iter()
        .filter(|h| h.name != host.name)
        .map(Host::tunnel_port)
        .collect();
    let mut flows: Vec<FlowSpec> = tunnels
        .iter()
        .map(|&port| {
            ipv6_flow(
                IPV6_GUARD_PRIORITY,
                ipv6_match().with(Field::InPort, u128::from(port)),
                Vec::new(),
            )
        })
        .collect();
    if let Some(gw) = inv.gateways.get(&host.name) {
        flows.push(ipv6_flow(
            IPV6_UPLINK_DROP_PRIORITY,
            ipv6_match().with(Field::InPort, u128::from(gw.port)),
            Vec::new(),
        ));
    }
    let addresses = inv
        .vms
        .values()
        .flat_map(|vm| inv.vm_ipv6_addresses(vm).map(move |address| (vm, address)));
    for (vm, address) in addresses {
        let to_vm = || ipv6_match().with(Field::Ipv6Dst, u128::from(address));
        if let Some(m) = migration
            .filter(|m| m.phase == Phase::Prepared && m.to_host == host.name && m.vm == vm.name)
        {
            // Make before break: deliver what the tunnels bring once senders switch.
            for &port in &tunnels {
                let from_tunnel = to_vm().with(Field::InPort, u128::from(port));
                flows.push(ipv6_flow(
                    IPV6_OPEN_PRIORITY,
                    from_tunnel,
                    deliver(inv, vm, m.to_port),
                ));
            }
        }
        let remote = inv.host(&vm.host);
        if vm.host == host.name {
            flows.push(ipv6_flow(
                IPV6_OPEN_PRIORITY,
                to_vm(),
                deliver(inv, vm, vm.port),
            ));
        } else if let Some(remote) = remote {
            let moved_away = migration.is_some_and(|m| {
                m.phase == Phase::Switched && m.vm == vm.name && m.from_host == host.name
            });
            // The old host of a VM that just moved forwards whatever still
            // arrives for it, from anywhere; others route only their own VMs'.
            let priority = if moved_away {
                IPV6_OPEN_PRIORITY
            } else {
                IPV6_REMOTE_PRIORITY
            };
            let out = vec![Action::output(remote.tunnel_port())];
            flows.push(ipv6_flow(priority, to_vm(), out));
        }
    }
    flows
}

/// Any IPv6 packet.
pub(crate) fn ipv6_match() -> FlowMatch {
    FlowMatch::any().with(Field::EthType, u128::from(ethertype::IPV6))
}

/// A flow of the controller's.
pub(crate) fn ipv6_flow(priority: u16, matcher: FlowMatch, actions: Vec<Action>) -> FlowSpec {
    let mut f = FlowSpec::new(0, priority, matcher, actions);
    f.cookie = SCC_COOKIE;
    f
}

/// Delivery to a VM's port on this switch, both MACs rewritten.
pub(crate) fn deliver(inv: &Inventory, vm: &Vm, port: u32) -> Vec<Action> {
    vec![
        Action::SetField {
            field: Field::EthSrc,
            value: u128::from(inv.gateway_mac.to_u64()),
        },
        Action::SetField {
            field: Field::EthDst,
            value: u128::from(vm.mac.to_u64()),
        },
        Action::output(port),
    ]
}

#[cfg(test)]
pub(crate) mod tests;
