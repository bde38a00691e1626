//! Statistics and description replies: flows (selected by the pipeline's own
//! [`Selector`] rule), aggregates, tables, groups, ports and tunnels.

use super::duration::duration;
use crate::pipeline::{Pipeline, Selector, ALL_TABLES};
use crate::port::{is_tunnel_port, port_mac, PeerStatus, PortCounts};
use openflow::flow::{port, GroupSpec, PortNo};
use openflow::text::FlowStats;
use openflow::wire::{
    port_state, AggregateStats, BadRequest, ErrorCode, FlowStatsEntry, FlowStatsRequest, PortDesc,
    PortStats, TableStats, TunnelStatsEntry,
};
use std::time::Instant;

/// The entries a flow or aggregate statistics request selects, with counters.
pub fn flow_stats(
    p: &Pipeline,
    req: &FlowStatsRequest,
    now: Instant,
) -> Result<Vec<FlowStatsEntry>, ErrorCode> {
    if req.table_id != ALL_TABLES && req.table_id >= p.n_tables() {
        return Err(ErrorCode::BadRequest(BadRequest::BadTableId));
    }
    let tables = if req.table_id == ALL_TABLES {
        0..p.n_tables()
    } else {
        req.table_id..req.table_id.saturating_add(1)
    };
    // A stats request selects entries exactly as a non-strict delete would.
    let selector = |table_id: u8| Selector {
        table_id,
        matcher: &req.matcher,
        strict_priority: None,
        cookie: req.cookie,
        cookie_mask: req.cookie_mask,
        out_port: req.out_port,
        out_group: req.out_group,
    };
    let mut out = Vec::new();
    for t in tables {
        for e in p.entries(t) {
            if !selector(t).selects(e) {
                continue;
            }
            let (duration_sec, duration_nsec) = duration(e.installed, now);
            out.push(FlowStatsEntry {
                spec: e.spec.clone(),
                stats: FlowStats {
                    duration_sec,
                    duration_nsec,
                    packet_count: e.packets(),
                    byte_count: e.bytes(),
                    idle_age: None,
                },
            });
        }
    }
    Ok(out)
}

/// Sums flow statistics into an aggregate reply.
pub fn aggregate(entries: &[FlowStatsEntry]) -> AggregateStats {
    AggregateStats {
        packet_count: entries.iter().map(|e| e.stats.packet_count).sum(),
        byte_count: entries.iter().map(|e| e.stats.byte_count).sum(),
        flow_count: u32::try_from(entries.len()).unwrap_or(u32::MAX),
    }
}

/// Every group of the pipeline, by increasing id.
pub fn group_descs(p: &Pipeline) -> Vec<GroupSpec> {
    p.groups().iter().map(|g| g.spec.clone()).collect()
}

/// Per-table counters of every table.
pub fn table_stats(p: &Pipeline) -> Vec<TableStats> {
    (0..p.n_tables())
        .map(|t| {
            let s = p.table_stats(t).unwrap_or_default();
            TableStats {
                table_id: t,
                active_count: u32::try_from(p.entries(t).count()).unwrap_or(u32::MAX),
                lookup_count: s.lookups,
                matched_count: s.matched,
            }
        })
        .collect()
}

/// Descriptions of every port (TAPs and tunnels), in configuration order. A tunnel
/// port is `LIVE` while its WireGuard session is fresh and `LINK_DOWN` before the
/// first handshake or once the session has expired, so a controller sees which
/// tunnels are up.
pub fn port_descs<'a>(
    datapath_id: u64,
    ports: impl IntoIterator<Item = (PortNo, &'a str)>,
    tunnels: &[PeerStatus],
) -> Vec<PortDesc> {
    ports
        .into_iter()
        .map(|(number, name)| port_desc(datapath_id, number, name, LinkState::UP, tunnels))
        .collect()
}

/// What a local port's link looks like from the switch: its `ofp_port_config`
/// bits (administratively down, or set by a port-mod) and whether its carrier is
/// missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LinkState {
    /// `ofp_port_config` bits (`OFPPC_*`).
    pub config: u32,
    /// No carrier, or the interface is down: `OFPPS_LINK_DOWN`.
    pub link_down: bool,
}

impl LinkState {
    /// Up, with nothing configured.
    pub const UP: LinkState = LinkState {
        config: 0,
        link_down: false,
    };
}

/// The description of one port: a tunnel's state comes from its peer's session,
/// a local port's from `link`.
pub fn port_desc(
    datapath_id: u64,
    number: PortNo,
    name: &str,
    link: LinkState,
    tunnels: &[PeerStatus],
) -> PortDesc {
    let state = match tunnels.iter().find(|t| t.port == number) {
        Some(t) if t.is_live() => port_state::LIVE,
        Some(_) => port_state::LINK_DOWN,
        None if link.link_down => port_state::LINK_DOWN,
        None => port_state::LIVE,
    };
    // TAPs are virtual 10G links; tunnels report no speed.
    let speed = if is_tunnel_port(name) { 0 } else { 10_000_000 };
    PortDesc {
        port_no: number,
        hw_addr: port_mac(datapath_id, number),
        name: name.to_owned(),
        config: link.config,
        state,
        curr: 0,
        advertised: 0,
        supported: 0,
        peer: 0,
        curr_speed: speed,
        max_speed: speed,
    }
}

/// Counters of one port or of all (`port::ANY`).
/// `counts` reads one port's counters; the switch started at `started`.
pub fn port_stats(
    ports: impl IntoIterator<Item = PortNo>,
    counts: impl Fn(PortNo) -> PortCounts,
    port_no: PortNo,
    started: Instant,
    now: Instant,
) -> Result<Vec<PortStats>, ErrorCode> {
    let (duration_sec, duration_nsec) = duration(started, now);
    let all: Vec<PortStats> = ports
        .into_iter()
        .filter(|p| port_no == port::ANY || *p == port_no)
        .map(|p| {
            let c = counts(p);
            PortStats {
                port_no: p,
                rx_packets: c.rx_packets,
                tx_packets: c.tx_packets,
                rx_bytes: c.rx_bytes,
                tx_bytes: c.tx_bytes,
                tx_dropped: c.tx_dropped,
                rx_errors: c.rx_errors,
                duration_sec,
                duration_nsec,
                ..PortStats::default()
            }
        })
        .collect();
    if all.is_empty() && port_no != port::ANY {
        return Err(ErrorCode::BadRequest(BadRequest::BadPort));
    }
    Ok(all)
}

/// One tunnel statistics entry per peer, in configuration order. boringtun measures
/// the handshake round trip in whole milliseconds; the wire carries microseconds so
/// that a finer measurement needs no new message.
pub fn tunnel_stats(peers: &[PeerStatus]) -> Vec<TunnelStatsEntry> {
    let saturating = |v: u128| u64::try_from(v).unwrap_or(u64::MAX);
    peers
        .iter()
        .map(|p| TunnelStatsEntry {
            port_no: p.port,
            handshake_rtt_us: p.handshake_rtt.map(|d| saturating(d.as_micros())),
            since_handshake_ms: p.since_handshake.map(|d| saturating(d.as_millis())),
            tx_bytes: p.tx_bytes,
            rx_bytes: p.rx_bytes,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::RemovedFlow;
    use openflow::flow::{Action, Field, FlowMatch};
    use openflow::FlowSpec;

    /// A flow-stats request and a non-strict delete with the same filters pick the
    /// same entries: both ask `Selector::selects`.
    #[test]
    fn flow_stats_select_what_a_delete_with_the_same_filters_removes() {
        let ip = FlowMatch::any().with(Field::EthType, 0x800);
        let flows = vec![
            FlowSpec::new(0, 10, ip.with(Field::Ipv4Dst, 1), vec![Action::output(1)]),
            FlowSpec::new(0, 10, ip.with(Field::Ipv4Dst, 2), vec![Action::output(2)]),
            FlowSpec::new(0, 5, FlowMatch::any(), vec![Action::output(2)]),
        ];
        let now = Instant::now();
        let mut pipeline = Pipeline::from_flows_at(flows, now).unwrap();
        let req = FlowStatsRequest {
            out_port: 2,
            matcher: ip,
            ..FlowStatsRequest::all()
        };
        let stats = flow_stats(&pipeline, &req, now).unwrap();
        let removed: Vec<RemovedFlow> = pipeline
            .delete(&Selector {
                out_port: 2,
                ..Selector::loose(ALL_TABLES, &ip)
            })
            .unwrap();
        let selected: Vec<FlowSpec> = stats.into_iter().map(|e| e.spec).collect();
        let deleted: Vec<FlowSpec> = removed.into_iter().map(|r| r.entry.spec).collect();
        assert_eq!(selected, deleted);
        assert_eq!(
            pipeline.len(),
            2,
            "only the IPv4 flow to port 2 matched both"
        );
    }
}
