//! What the switches tell placement: turns a switch's flow counters into each VM's
//! traffic from the clients of that switch's cloud, and its tunnels' handshake round
//! trips into latencies between clouds.
//!
//! It owns the attribution rule and the per-flow counter state of one switch
//! session; the daemon (`daemon.rs`) polls the switch and keeps the resulting
//! series in a [`crate::measure::Measurements`]. Pure: the caller passes the
//! clock and the replies.
//!
//! The rule: traffic *to* a VM is counted where it enters the overlay. A flow of
//! switch `s` counts for VM `v` when it matches exactly `ip_dst` = `v`'s overlay or
//! public address, forwards (outputs, a group or another table), and does not take
//! packets from a tunnel (those entered elsewhere and were counted there) nor from
//! `v`'s own port. The routing tests tunnel ports before anything else, so a flow
//! without an `in_port` never sees a tunnel's packets. The clients' region is the
//! cloud of `s`: VMs on its host, or the internet at its gateway uplink. Traffic
//! *from* a VM is not attributed: its destination flows are shared by every VM of
//! the host. Request and answer volumes rise and fall together, so the inbound side
//! weighs regions the way the whole conversation does.

use crate::inventory::{Inventory, TUNNEL_PORT_BASE};
use openflow::flow::{ethertype, Action, Field, FlowMatch, Instruction};
use openflow::wire::FlowStatsEntry;
use openflow::FlowSpec;
use std::collections::{BTreeMap, HashMap};

/// The VM a flow of `host` counts for, if any (see the module's rule).
fn counted_vm<'a>(
    inv: &'a Inventory,
    host: &str,
    by_addr: &HashMap<u32, &'a str>,
    flow: &FlowSpec,
) -> Option<&'a str> {
    let m = &flow.matcher;
    if m.get(Field::EthType) != Some((u128::from(ethertype::IPV4), 0xffff)) {
        return None;
    }
    let (dst, mask) = m.get(Field::Ipv4Dst)?;
    if mask != 0xffff_ffff {
        return None;
    }
    let vm = *by_addr.get(&u32::try_from(dst).ok()?)?;
    if let Some((in_port, _)) = m.get(Field::InPort) {
        let in_port = u32::try_from(in_port).ok()?;
        let own = inv
            .vms
            .get(vm)
            .is_some_and(|v| v.host == host && v.port == in_port);
        if in_port >= TUNNEL_PORT_BASE || own {
            return None;
        }
    }
    forwards(flow).then_some(vm)
}

/// True when the flow sends its packets somewhere (not a drop).
fn forwards(flow: &FlowSpec) -> bool {
    flow.instructions.iter().any(|i| match i {
        Instruction::GotoTable(_) => true,
        Instruction::ApplyActions(actions) => actions
            .iter()
            .any(|a| matches!(a, Action::Output { .. } | Action::Group(_))),
    })
}

/// Every VM's overlay and public address, to its name.
fn addresses(inv: &Inventory) -> HashMap<u32, &str> {
    let mut by_addr = HashMap::new();
    for v in inv.vms.values() {
        by_addr.insert(u32::from(v.ip), v.name.as_str());
        if let Some(p) = v.public_ip {
            by_addr.insert(u32::from(p), v.name.as_str());
        }
    }
    by_addr
}

/// The traffic counters of one switch, sample after sample.
///
/// Rates are computed per flow and then summed: a flow re-installed or modified with
/// `reset_counts` (every reroute) counts from zero again, and only that flow's
/// interval is affected, not the VM's whole sum.
#[derive(Debug, Default)]
pub struct TrafficSampler {
    last_ms: Option<u64>,
    bytes: HashMap<(u8, u16, FlowMatch), u64>,
}

impl TrafficSampler {
    /// Feeds one flow-stats reply of `host`'s switch taken at `t_ms`; returns each
    /// counted VM's inbound bytes per second since the previous sample (`None` on
    /// the first sample, or when the clock did not move forward). VMs no flow counts
    /// for are absent.
    pub fn sample(
        &mut self,
        inv: &Inventory,
        host: &str,
        t_ms: u64,
        flows: &[FlowStatsEntry],
    ) -> Option<BTreeMap<String, f64>> {
        if self.last_ms.is_some_and(|t0| t0 >= t_ms) {
            return None;
        }
        let previous = self.last_ms.replace(t_ms);
        let by_addr = addresses(inv);
        let mut bytes = HashMap::with_capacity(flows.len());
        let mut per_vm: BTreeMap<String, u64> = BTreeMap::new();
        for f in flows {
            let Some(vm) = counted_vm(inv, host, &by_addr, &f.spec) else {
                continue;
            };
            let key = (f.spec.table_id, f.spec.priority, f.spec.matcher);
            let now = f.stats.byte_count;
            let counted = match self.bytes.get(&key) {
                Some(&before) if now >= before => now - before,
                // New, or counting again from zero since the last sample.
                _ => now,
            };
            bytes.insert(key, now);
            *per_vm.entry(vm.to_string()).or_default() += counted;
        }
        self.bytes = bytes;
        let t0 = previous?;
        let seconds = (t_ms - t0) as f64 / 1000.0;
        Some(
            per_vm
                .into_iter()
                .map(|(vm, b)| (vm, b as f64 / seconds))
                .collect(),
        )
    }
}

/// The cloud at the far end of tunnel port `tunnel_port`, and the one-way latency
/// to it in ms: half the handshake's round trip. `None` when the port is no tunnel
/// of the inventory.
pub fn tunnel_latency(
    inv: &Inventory,
    tunnel_port: u32,
    handshake_rtt_us: u64,
) -> Option<(&str, f64)> {
    let peer = inv.hosts.iter().find(|h| h.tunnel_port() == tunnel_port)?;
    Some((peer.cloud.as_str(), handshake_rtt_us as f64 / 2000.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::compile_network;
    use dataplane::table::{Classification, Pipeline};
    use openflow::flow::FlowKey;
    use openflow::text::FlowStats;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;
    use std::time::Instant;

    fn inventory() -> Inventory {
        Inventory::parse(
            include_str!("../../docs/examples/inventory.toml"),
            "inventory.toml",
        )
        .unwrap()
    }

    fn stats(p: &Pipeline) -> Vec<FlowStatsEntry> {
        (0..p.n_tables())
            .flat_map(|t| p.entries(t))
            .map(|e| FlowStatsEntry {
                spec: e.spec.clone(),
                stats: FlowStats {
                    packet_count: e.packets,
                    byte_count: e.bytes,
                    ..FlowStats::default()
                },
            })
            .collect()
    }

    /// Every port a packet can arrive at on `host`'s switch: its VMs, its uplink,
    /// every tunnel.
    fn arrival_ports(inv: &Inventory, host: &str) -> Vec<u32> {
        let mut ports: Vec<u32> = inv
            .vms
            .values()
            .filter(|v| v.host == host)
            .map(|v| v.port)
            .collect();
        ports.extend(inv.gateways.get(host).map(|g| g.port));
        ports.extend(
            inv.hosts
                .iter()
                .filter(|h| h.name != host)
                .map(crate::inventory::Host::tunnel_port),
        );
        ports
    }

    fn destinations(inv: &Inventory) -> Vec<(u32, Option<String>)> {
        let mut d: Vec<_> = inv
            .vms
            .values()
            .flat_map(|v| {
                std::iter::once((u32::from(v.ip), Some(v.name.clone())))
                    .chain(v.public_ip.map(|p| (u32::from(p), Some(v.name.clone()))))
            })
            .collect();
        d.push((u32::from(Ipv4Addr::new(198, 51, 100, 7)), None));
        d.push((u32::from(Ipv4Addr::new(100, 64, 9, 9)), None));
        d
    }

    proptest! {
        /// Packets of random sizes enter every switch at every port towards every
        /// address; the sampler's rates are exactly the bytes that entered the
        /// overlay at that switch, not from a tunnel nor from the VM itself, and
        /// were forwarded.
        #[test]
        fn counted_traffic_is_what_entered_here_towards_each_vm(
            sizes in prop::collection::vec(60usize..1500, 64),
        ) {
            let inv = inventory();
            let tables = compile_network(&inv, "id", "p").unwrap();
            for host in &inv.hosts {
                let mut p = Pipeline::from_flows(tables[&host.datapath_id].clone()).unwrap();
                let mut sampler = TrafficSampler::default();
                prop_assert_eq!(sampler.sample(&inv, &host.name, 0, &stats(&p)), None);
                let mut expected: BTreeMap<String, f64> = BTreeMap::new();
                let mut c = Classification::default();
                let mut size = sizes.iter().cycle();
                for in_port in arrival_ports(&inv, &host.name) {
                    for (dst, vm) in destinations(&inv) {
                        let key = FlowKey {
                            in_port,
                            eth_type: ethertype::IPV4,
                            ip_proto: 17,
                            ipv4_src: u32::from(Ipv4Addr::new(198, 51, 100, 9)),
                            ipv4_dst: dst,
                            ..FlowKey::default()
                        };
                        let len = *size.next().unwrap();
                        c.clear();
                        p.classify(&key, &mut c);
                        p.account(&c.hits, &c.tables, len, Instant::now());
                        let forwarded = !p.simulate(&key).is_empty();
                        let from_tunnel = in_port >= TUNNEL_PORT_BASE;
                        if let (Some(vm), true, false) = (vm, forwarded, from_tunnel) {
                            let v = &inv.vms[&vm];
                            if !(v.host == host.name && v.port == in_port) {
                                *expected.entry(vm).or_default() += len as f64;
                            }
                        }
                    }
                }
                let mut got = sampler.sample(&inv, &host.name, 1_000, &stats(&p)).unwrap();
                // A VM with counting flows that carried nothing is there with 0.
                got.retain(|_, b| *b > 0.0);
                prop_assert_eq!(&got, &expected, "host {}", host.name);
                // Nothing more came: every rate is zero now.
                let idle = sampler.sample(&inv, &host.name, 3_000, &stats(&p)).unwrap();
                prop_assert!(idle.values().all(|r| *r == 0.0));
            }
        }
    }

    #[test]
    fn a_reset_flow_counts_from_zero_and_a_stale_clock_gives_no_rate() {
        let inv = inventory();
        let tables = compile_network(&inv, "id", "p").unwrap();
        let flows: Vec<FlowStatsEntry> = tables[&2]
            .iter()
            .map(|spec| FlowStatsEntry {
                spec: spec.clone(),
                stats: FlowStats::default(),
            })
            .collect();
        let web1 = flows
            .iter()
            .position(|f| {
                f.spec.matcher.get(Field::Ipv4Dst).map(|(v, _)| v)
                    == Some(u128::from(u32::from(inv.vms["web1"].ip)))
                    && f.spec.matcher.get(Field::InPort).is_none()
            })
            .unwrap();
        let with = |bytes: u64| {
            let mut f = flows.clone();
            f[web1].stats.byte_count = bytes;
            f
        };
        let mut s = TrafficSampler::default();
        assert_eq!(s.sample(&inv, "host-b", 1_000, &with(5_000)), None);
        assert_eq!(
            s.sample(&inv, "host-b", 2_000, &with(7_000)).unwrap()["web1"],
            2_000.0
        );
        // Modified with reset_counts: 500 bytes since.
        assert_eq!(
            s.sample(&inv, "host-b", 3_000, &with(500)).unwrap()["web1"],
            500.0
        );
        assert_eq!(s.sample(&inv, "host-b", 3_000, &with(900)), None);
        assert_eq!(
            s.sample(&inv, "host-b", 5_000, &with(4_500)).unwrap()["web1"],
            2_000.0
        );
    }

    #[test]
    fn a_tunnel_names_its_peer_cloud_and_half_the_round_trip() {
        let inv = inventory();
        let to_c = inv.host("host-c").unwrap().tunnel_port();
        assert_eq!(
            tunnel_latency(&inv, to_c, 40_000),
            Some(("azure-asia", 20.0))
        );
        assert_eq!(tunnel_latency(&inv, 7, 40_000), None);
    }
}
