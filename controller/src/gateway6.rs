//! Public IPv6 at the gateways (docs/gateway.md#public-ipv6): routed, no NAT.
//! A VM's `public_ipv6` lies in some gateway's `public_ipv6_prefix`; the guest
//! holds it as a second address beside its overlay (ULA) ones, and it is routed
//! to the VM like them (a /128 on every switch, moved through a migration's
//! phases by `routing6`). This module owns what only the gateways add, as plain
//! flows: the uplink lets in exactly the owned public addresses (to the VM's
//! route from there) and drops sources claiming the gateway's own prefix or the
//! overlay; a VM's IPv6 from its public address to global unicast destinations
//! (`2000::/3`) leaves through the tunnel to its home gateway (the same home as
//! for IPv4: a serving gateway in its cloud, else the first), which sends it out
//! of the uplink to the router, unchanged but for the MACs. Only the VM's own
//! places (its port, or on the home gateway the tunnel from its host; both
//! during a migration) are matched, so a VM may source only its own public
//! address towards the internet. Pure: no I/O, never talks to a switch.

use crate::gateway::{home_by, out_of_uplink, places, serving_by};
use crate::model::{Gateway, Host, Inventory, Migration, Vm};
use crate::routing6::{ipv6_flow, ipv6_match, IPV6_UPLINK_DROP_PRIORITY};
use openflow::flow::{Action, Field};
use openflow::FlowSpec;
use std::net::Ipv6Addr;

/// Priority of a VM's outbound public IPv6 on its own host: above the
/// compiled IPv6 routes (`routing6`, which the policy governs), as IPv4's
/// outbound NAT. A VM's packets from its public address to another VM's public
/// address therefore leave through its home gateway and come back in through
/// the gateway serving that address, as from the internet (the policy still
/// decides at the receiving VM's switch). Backup routes through other serving
/// gateways sit one priority lower each.
pub const PUBLIC6_OUTBOUND_PRIORITY: u16 = 59_000;
/// Priority of the home gateway's outbound flows from the tunnels of the VM's
/// host: above the drop of IPv6 from tunnels and the compiled routes.
pub const PUBLIC6_FROM_TUNNEL_PRIORITY: u16 = PUBLIC6_OUTBOUND_PRIORITY;
/// Priority of the uplink's drop of spoofed sources (any gateway's public
/// IPv6 prefix, or the overlay's), above the uplink's other drops; what is
/// left reaches the VMs' public addresses through their compiled /128 routes.
pub const PUBLIC6_SPOOF_PRIORITY: u16 = IPV6_UPLINK_DROP_PRIORITY + 1;

/// Global unicast (`2000::/3`): the destinations a VM's public address may
/// reach through a gateway.
const GLOBAL_UNICAST: (u128, u128) = (0x2000 << 112, 0xe000 << 112);

/// The gateways serving `public` (whose public IPv6 prefix holds it), in host
/// order.
pub fn serving6(inv: &Inventory, public: Ipv6Addr) -> impl Iterator<Item = &Gateway> {
    serving_by(inv, move |g| g.serves_ipv6(public))
}

/// The home gateway of `vm`'s public IPv6 address, by IPv4's rule: a serving
/// gateway in the VM's own cloud if there is one, else the first.
pub fn home6<'a>(inv: &'a Inventory, vm: &Vm, public: Ipv6Addr) -> Option<&'a Gateway> {
    home_by(inv, vm, move |g| g.serves_ipv6(public))
}

/// VMs with a public IPv6 address some gateway serves, with that address and
/// its home gateway; an address claimed twice (refused by the inventory and
/// the API) goes to the first VM by name only. None without the overlay's IPv6.
fn public6_vms(inv: &Inventory) -> Vec<(&Vm, Ipv6Addr, &Gateway)> {
    if inv.overlay_ipv6.is_none()
        || inv
            .gateways
            .values()
            .all(|g| g.public_ipv6_prefix.is_none())
    {
        return Vec::new();
    }
    let mut claimed = std::collections::BTreeSet::new();
    inv.vms
        .values()
        .filter_map(|vm| {
            let public = vm.public_ipv6?;
            let home = home6(inv, vm, public)?;
            claimed.insert(public).then_some((vm, public, home))
        })
        .collect()
}

/// The public IPv6 flows of `host`'s switch with `migration` in progress.
pub fn public_ipv6_flows(
    inv: &Inventory,
    host: &Host,
    migration: Option<&Migration>,
) -> Vec<FlowSpec> {
    let vms = public6_vms(inv);
    let mut flows = uplink_guards(inv, host);
    for &(vm, public, home) in &vms {
        let places = places(vm, migration);
        let out_of_uplink = out_of_uplink(home);
        let outbound = || {
            ipv6_match()
                .with(Field::Ipv6Src, u128::from(public))
                .with_masked(Field::Ipv6Dst, GLOBAL_UNICAST.0, GLOBAL_UNICAST.1)
        };
        // Where the VM sends from on this switch: its own port.
        for &(_, port) in places.iter().filter(|(h, _)| *h == host.name) {
            let from_vm = outbound().with(Field::InPort, u128::from(port));
            if home.host == host.name {
                flows.push(ipv6_flow(
                    PUBLIC6_OUTBOUND_PRIORITY,
                    from_vm,
                    out_of_uplink.clone(),
                ));
                continue;
            }
            // Other serving gateways tunnel the internet's packets here too;
            // a shadowed route to each lets `scd` accept internet sources
            // from their tunnels.
            let gateways = std::iter::once(home.host.as_str()).chain(
                serving6(inv, public)
                    .map(|g| g.host.as_str())
                    .filter(|g| *g != home.host && *g != host.name),
            );
            for (rank, gateway) in (0u16..).zip(gateways) {
                if let Some(gateway) = inv.host(gateway) {
                    flows.push(ipv6_flow(
                        PUBLIC6_OUTBOUND_PRIORITY - rank,
                        from_vm,
                        vec![Action::output(gateway.tunnel_port())],
                    ));
                }
            }
        }
        // On the home gateway: what the tunnels from the VM's places bring.
        if home.host == host.name {
            for (place, _) in places.iter().filter(|(h, _)| *h != host.name) {
                if let Some(remote) = inv.host(place) {
                    let from_tunnel =
                        outbound().with(Field::InPort, u128::from(remote.tunnel_port()));
                    flows.push(ipv6_flow(
                        PUBLIC6_FROM_TUNNEL_PRIORITY,
                        from_tunnel,
                        out_of_uplink.clone(),
                    ));
                }
            }
        }
    }
    flows
}

/// A gateway's drops of IPv6 from its uplink whose source claims an address
/// of the deployment's: any gateway's public IPv6 prefix (the VMs' public
/// addresses, wherever they are served) or the overlay's.
fn uplink_guards(inv: &Inventory, host: &Host) -> Vec<FlowSpec> {
    let Some(gw) = inv.gateways.get(&host.name) else {
        return Vec::new();
    };
    let (Some(_), Some(overlay)) = (gw.public_ipv6_prefix, inv.overlay_ipv6) else {
        return Vec::new();
    };
    let mut prefixes: Vec<(Ipv6Addr, u8)> = inv
        .gateways
        .values()
        .filter_map(|g| g.public_ipv6_prefix)
        .collect();
    prefixes.push(overlay);
    prefixes.sort_unstable();
    prefixes.dedup();
    prefixes
        .into_iter()
        .map(|(net, len)| {
            ipv6_flow(
                PUBLIC6_SPOOF_PRIORITY,
                ipv6_match()
                    .with(Field::InPort, u128::from(gw.port))
                    .with_masked(
                        Field::Ipv6Src,
                        u128::from(net),
                        config_support::prefix_mask128(len),
                    ),
                Vec::new(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests;
