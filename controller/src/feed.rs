//! What the switches tell placement: turns a switch's flow counters into each VM's
//! traffic from the clients of that switch's cloud, and its tunnels' handshake round
//! trips into latencies between clouds.
//!
//! It owns the attribution rule and the per-flow counter state of one switch
//! session; the switch session (`net/sampling.rs`) polls the switch and keeps the resulting
//! series in a [`crate::measure::Measurements`]. Pure: the caller passes the
//! clock and the replies.
//!
//! The rule: traffic *to* a VM is counted where it enters the overlay. A flow of
//! switch `s` counts for VM `v` when it matches exactly `ip_dst` = `v`'s overlay or
//! public address, forwards (outputs, a group or another table), and does not take
//! packets from a tunnel (those entered elsewhere and were counted there) nor from
//! `v`'s own port. A flow without an `in_port` counts when flows of higher
//! priority take every tunnel's packets it would match, as the routing's tunnel
//! cases do on a switch that routes to another host; on a switch whose every
//! destination is local, one flow per destination serves tunnels and local ports
//! alike, and is not counted (traffic among the VMs of such a host is not seen,
//! rather than the tunnels' counted twice). The clients' region is the
//! cloud of `s`: VMs on its host, or the internet at its gateway uplink. Traffic
//! *from* a VM is not attributed: its destination flows are shared by every VM of
//! the host. Request and answer volumes rise and fall together, so the inbound side
//! weighs regions the way the whole conversation does.

use crate::model::{Inventory, TUNNEL_PORT_BASE};
use openflow::flow::{ethertype, Field, FlowMatch};
use openflow::wire::FlowStatsEntry;
use openflow::FlowSpec;
use rustc_hash::FxHashMap as HashMap;
use std::collections::BTreeMap;

/// What decides whether a flow of one switch counts, built once per sample.
struct Switch<'a> {
    inv: &'a Inventory,
    host: &'a str,
    by_addr: &'a VmAddresses,
    /// Ports of the tunnels to the other hosts.
    tunnel_ports: Vec<u32>,
    /// The switch's flows that take one tunnel port, by that port.
    from_tunnel: HashMap<u32, Vec<&'a FlowSpec>>,
}

impl<'a> Switch<'a> {
    fn new(
        inv: &'a Inventory,
        by_addr: &'a VmAddresses,
        host: &'a str,
        flows: &'a [FlowStatsEntry],
    ) -> Switch<'a> {
        let tunnel_ports: Vec<u32> = inv
            .hosts
            .iter()
            .filter(|h| h.name != host)
            .map(crate::model::Host::tunnel_port)
            .collect();
        let mut from_tunnel: HashMap<u32, Vec<&FlowSpec>> = HashMap::default();
        for f in flows {
            if let Some(port) = in_port(&f.spec.matcher).filter(|p| tunnel_ports.contains(p)) {
                from_tunnel.entry(port).or_default().push(&f.spec);
            }
        }
        Switch {
            inv,
            host,
            by_addr,
            tunnel_ports,
            from_tunnel,
        }
    }

    /// True when no packet from a tunnel can hit `flow`: for every tunnel port, a
    /// flow of higher priority in its table takes every packet that would match it
    /// from that port. The compiled routing has those flows when the switch routes
    /// to another host; a switch whose every destination is local has one flow per
    /// destination for all its ports, tunnels included.
    fn tunnel_free(&self, flow: &FlowSpec) -> bool {
        self.tunnel_ports.iter().all(|&port| {
            let from_port = flow.matcher.with(Field::InPort, u128::from(port));
            self.from_tunnel.get(&port).is_some_and(|flows| {
                flows.iter().any(|g| {
                    g.table_id == flow.table_id
                        && g.priority > flow.priority
                        && covers(&g.matcher, &from_port)
                })
            })
        })
    }

    /// The VM `flow` counts for, if any (see the module's rule).
    fn counted_vm(&self, flow: &FlowSpec) -> Option<&'a str> {
        let m = &flow.matcher;
        if m.get(Field::EthType) != Some((u128::from(ethertype::IPV4), 0xffff)) {
            return None;
        }
        let (dst, mask) = m.get(Field::Ipv4Dst)?;
        if mask != 0xffff_ffff {
            return None;
        }
        let vm = self.by_addr.name(u32::try_from(dst).ok()?)?;
        match in_port(m) {
            Some(port) => {
                let own = self
                    .inv
                    .vms
                    .get(vm)
                    .is_some_and(|v| v.host == self.host && v.port == port);
                if port >= TUNNEL_PORT_BASE || own {
                    return None;
                }
            }
            // Local clients and tunnels mixed cannot be told apart: not counted.
            None if !self.tunnel_free(flow) => return None,
            None => {}
        }
        flow.forwards().then_some(vm)
    }
}

/// The exact `in_port` a match takes, if any.
fn in_port(m: &FlowMatch) -> Option<u32> {
    m.get(Field::InPort)
        .and_then(|(port, _)| u32::try_from(port).ok())
}

/// True when every packet `inner` matches, `outer` matches too.
fn covers(outer: &FlowMatch, inner: &FlowMatch) -> bool {
    outer.fields().all(|f| {
        let (ov, om) = outer.get(f).unwrap_or_default();
        inner
            .get(f)
            .is_some_and(|(iv, im)| im & om == om && iv & om == ov)
    })
}

/// Every VM's overlay and public address, to its name: built once per
/// inventory and shared by every switch's samples (a sample looks up only the
/// addresses its flows match, never every VM).
#[derive(Debug, Default)]
pub struct VmAddresses(HashMap<u32, String>);

impl VmAddresses {
    /// The addresses of `inv`'s VMs.
    pub fn new(inv: &Inventory) -> VmAddresses {
        let mut by_addr = HashMap::with_capacity_and_hasher(inv.vms.len(), Default::default());
        for v in inv.vms.values() {
            by_addr.insert(u32::from(v.ip), v.name.clone());
            if let Some(p) = v.public_ip {
                by_addr.insert(u32::from(p), v.name.clone());
            }
        }
        VmAddresses(by_addr)
    }

    /// The VM with overlay or public address `addr`.
    fn name(&self, addr: u32) -> Option<&str> {
        self.0.get(&addr).map(String::as_str)
    }
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
        self.sample_indexed(inv, &VmAddresses::new(inv), host, t_ms, flows)
    }

    /// [`Self::sample`] with `inv`'s VM addresses already indexed.
    pub fn sample_indexed(
        &mut self,
        inv: &Inventory,
        addresses: &VmAddresses,
        host: &str,
        t_ms: u64,
        flows: &[FlowStatsEntry],
    ) -> Option<BTreeMap<String, f64>> {
        if self.last_ms.is_some_and(|t0| t0 >= t_ms) {
            return None;
        }
        let previous = self.last_ms.replace(t_ms);
        let switch = Switch::new(inv, addresses, host, flows);
        let mut bytes = HashMap::with_capacity_and_hasher(flows.len(), Default::default());
        let mut per_vm: BTreeMap<String, u64> = BTreeMap::new();
        for f in flows {
            let Some(vm) = switch.counted_vm(&f.spec) else {
                continue;
            };
            let key = (f.spec.table_id, f.spec.priority, f.spec.matcher);
            let now = f.stats.byte_count;
            // A new flow counted everything it holds since the last sample.
            let counted = crate::measure::counted_since(self.bytes.get(&key).copied(), now);
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
    use crate::program::compile_network;
    use dataplane_core::pipeline::{Classification, Pipeline};
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
                    packet_count: e.packets(),
                    byte_count: e.bytes(),
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
                .map(crate::model::Host::tunnel_port),
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

    /// Packets of `sizes` enter every switch of `inv` at every port towards every
    /// address; the sampler's rates must be exactly the bytes that entered the
    /// overlay at that switch, not from a tunnel nor from the VM itself, and were
    /// forwarded.
    fn counted_is_entered(inv: &Inventory, sizes: &[usize]) -> Result<(), TestCaseError> {
        let tables = compile_network(inv, "id", "p").unwrap();
        for host in &inv.hosts {
            let p = Pipeline::from_flows(tables[&host.datapath_id].clone()).unwrap();
            let mut sampler = TrafficSampler::default();
            prop_assert_eq!(sampler.sample(inv, &host.name, 0, &stats(&p)), None);
            let mut expected: BTreeMap<String, f64> = BTreeMap::new();
            let mut c = Classification::default();
            let mut size = sizes.iter().cycle();
            for in_port in arrival_ports(inv, &host.name) {
                for (dst, vm) in destinations(inv) {
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
            let mut got = sampler.sample(inv, &host.name, 1_000, &stats(&p)).unwrap();
            // A VM with counting flows that carried nothing is there with 0.
            got.retain(|_, b| *b > 0.0);
            prop_assert_eq!(&got, &expected, "host {}", host.name);
            // Nothing more came: every rate is zero now.
            let idle = sampler.sample(inv, &host.name, 3_000, &stats(&p)).unwrap();
            prop_assert!(idle.values().all(|r| *r == 0.0));
        }
        Ok(())
    }

    /// The example's only VM with a public address, on a host of its own and
    /// reached from the internet through another host's gateway: that host routes
    /// to no other host, so its delivery flow takes tunnels and local ports alike.
    fn lone_public_vm() -> Inventory {
        let mut inv = inventory();
        inv.vms = inv
            .vms
            .into_iter()
            .filter(|(name, _)| name == "web1")
            .collect();
        let web1 = inv.vms.get_mut("web1").unwrap();
        web1.host = "host-b".into();
        inv
    }

    proptest! {
        #[test]
        fn counted_traffic_is_what_entered_here_towards_each_vm(
            sizes in prop::collection::vec(60usize..1500, 64),
        ) {
            counted_is_entered(&inventory(), &sizes)?;
            counted_is_entered(&lone_public_vm(), &sizes)?;
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
