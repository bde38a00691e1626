//! The overlay's IPv6 routing on every switch, when the inventory has an
//! `overlay_ipv6_prefix`: a /128 route per VM address, as the IPv4 routing's /32s
//! (`routing`) and moved the same way through a migration's phases, written as
//! NetKAT syntax trees so that the user's policy runs before them as it runs
//! before the IPv4 routes (`program` composes and compiles them). On the VM's
//! own host IPv6 to it is delivered to its port with both MACs rewritten;
//! elsewhere it leaves through the direct tunnel to that host, unless it came
//! from a tunnel (no transit: the remote routes are [`Band::Remote`], below the
//! tunnels' drop); while a migration is prepared the destination switch already
//! delivers what the tunnels bring, and once it has switched the old host
//! forwards what still arrives to the new one. IPv6 from a gateway's uplink is
//! dropped above everything (a plain flow). Pure: no I/O.

use crate::model::{Host, Inventory, Migration, Phase};
use crate::netkat::syntax::{HeaderField, Policy, Pred, Value};
use crate::routing::{deliver, from_tunnels, Band, SCC_COOKIE};
use openflow::flow::{ethertype, Action, Field, FlowMatch};
use openflow::FlowSpec;

/// Priority of the drop of IPv6 from a gateway's uplink above every route:
/// all of it without a public IPv6 prefix, else what is addressed to the
/// overlay's own addresses.
pub const IPV6_UPLINK_DROP_PRIORITY: u16 = 60_003;
/// Priority of the drop of what a gateway's uplink brings and no compiled
/// route takes, below every route (a gateway with a public IPv6 prefix).
pub const IPV6_UPLINK_UNROUTED_PRIORITY: u16 = 0;

/// One IPv6 routing case of one switch: what it does with IPv6 to `dst`.
/// Cases about different addresses never overlap.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Case6 {
    /// The destination address every packet of the case has.
    pub dst: u128,
    /// Where in the table it goes ([`Band::Remote`] or [`Band::Open`]).
    pub band: Band,
    /// What it does (starting with its own test of `dst`).
    pub pol: Policy,
}

/// The IPv6 cases of `host`'s switch with `migration` in progress, by
/// destination address; none when the overlay carries no IPv6.
pub fn ipv6_cases(inv: &Inventory, host: &Host, migration: Option<&Migration>) -> Vec<Case6> {
    if inv.overlay_ipv6.is_none() {
        return Vec::new();
    }
    let has_tunnels = inv.hosts.iter().any(|h| h.name != host.name);
    let mut cases = Vec::new();
    for vm in inv.vms.values() {
        let prepared_here = migration
            .filter(|m| m.phase == Phase::Prepared && m.to_host == host.name && m.vm == vm.name);
        let moved_away = migration.is_some_and(|m| {
            m.phase == Phase::Switched && m.vm == vm.name && m.from_host == host.name
        });
        let remote = inv.host(&vm.host);
        for address in inv.vm_ipv6_addresses(vm) {
            let dst = u128::from(address);
            let to_vm = || {
                Policy::filter(Pred::test(
                    HeaderField::Ip6Dst,
                    Value::Ip6 {
                        addr: address,
                        prefix: None,
                    },
                ))
            };
            let case = |band: Band, steps: Vec<Policy>| Case6 {
                dst,
                band,
                pol: Policy::seq_all(steps),
            };
            if let Some(m) = prepared_here.filter(|_| has_tunnels) {
                // Make before break: deliver what the tunnels bring once senders switch.
                let mut steps = vec![to_vm(), Policy::filter(from_tunnels(inv, host))];
                steps.extend(deliver(inv, vm, m.to_port));
                cases.push(case(Band::Open, steps));
            }
            if vm.host == host.name {
                let mut steps = vec![to_vm()];
                steps.extend(deliver(inv, vm, vm.port));
                cases.push(case(Band::Open, steps));
            } else if let Some(remote) = remote.filter(|_| has_tunnels) {
                // The old host of a VM that just moved forwards whatever still
                // arrives for it, from anywhere; others route only their own VMs'.
                let band = if moved_away { Band::Open } else { Band::Remote };
                let out =
                    Policy::assign(HeaderField::Port, Value::Int(remote.tunnel_port().into()));
                cases.push(case(band, vec![to_vm(), out]));
            }
        }
    }
    cases
}

/// The IPv6 routing of the whole overlay as one program (for a policy compiled
/// whole): `filter ethTyp = 0x86dd; (filter switch = 1; (open + filter not
/// tunnels; remote) + …)`; `drop` when the overlay carries no IPv6.
pub fn ipv6_routing_program(inv: &Inventory, migration: Option<&Migration>) -> Policy {
    if inv.overlay_ipv6.is_none() {
        return Policy::new(crate::netkat::syntax::PolicyKind::Drop);
    }
    let switches = inv
        .hosts
        .iter()
        .map(|host| {
            let (open, remote): (Vec<Case6>, Vec<Case6>) = ipv6_cases(inv, host, migration)
                .into_iter()
                .partition(|c| c.band == Band::Open);
            let mut parts: Vec<Policy> = open.into_iter().map(|c| c.pol).collect();
            if !remote.is_empty() {
                parts.push(Policy::seq_all(vec![
                    Policy::filter(Pred::negate(from_tunnels(inv, host))),
                    Policy::union_all(remote.into_iter().map(|c| c.pol).collect()),
                ]));
            }
            Policy::seq_all(vec![
                Policy::filter(Pred::test(
                    HeaderField::Switch,
                    Value::Int(host.datapath_id),
                )),
                Policy::union_all(parts),
            ])
        })
        .collect();
    Policy::seq_all(vec![
        Policy::filter(Pred::test(
            HeaderField::EthTyp,
            Value::Int(u64::from(ethertype::IPV6)),
        )),
        Policy::union_all(switches),
    ])
}

/// The IPv6 flows of `host`'s switch outside the compiled routes: on a
/// gateway, what its uplink may not bring. Without a public IPv6 prefix, all
/// of it is dropped above every route. With one, the internet's packets go
/// through the compiled /128 routes, so the policy decides for them as for the
/// overlay's own: only packets to the overlay's addresses are dropped above the
/// routes, and what no route takes (addresses nobody owns, link-local and
/// multicast) is dropped below them; `gateway6` drops spoofed sources above.
pub fn ipv6_plain_flows(inv: &Inventory, host: &Host) -> Vec<FlowSpec> {
    let (Some(gw), Some((overlay, overlay_len))) = (inv.gateways.get(&host.name), inv.overlay_ipv6)
    else {
        return Vec::new();
    };
    let from_uplink = ipv6_match().with(Field::InPort, u128::from(gw.port));
    if gw.public_ipv6_prefix.is_none() {
        return vec![ipv6_flow(
            IPV6_UPLINK_DROP_PRIORITY,
            from_uplink,
            Vec::new(),
        )];
    }
    vec![
        ipv6_flow(
            IPV6_UPLINK_DROP_PRIORITY,
            from_uplink.with_masked(
                Field::Ipv6Dst,
                u128::from(overlay),
                config_support::prefix_mask128(overlay_len),
            ),
            Vec::new(),
        ),
        ipv6_flow(IPV6_UPLINK_UNROUTED_PRIORITY, from_uplink, Vec::new()),
    ]
}

/// Any IPv6 packet.
pub(crate) fn ipv6_match() -> FlowMatch {
    FlowMatch::any().with(Field::EthType, u128::from(ethertype::IPV6))
}

/// A plain flow of the controller's.
pub(crate) fn ipv6_flow(priority: u16, matcher: FlowMatch, actions: Vec<Action>) -> FlowSpec {
    let mut f = FlowSpec::new(0, priority, matcher, actions);
    f.cookie = SCC_COOKIE;
    f
}

#[cfg(test)]
pub(crate) mod tests;
