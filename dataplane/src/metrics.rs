//! The Prometheus endpoint of `scd` (`GET /metrics` on a local address).
//!
//! This module owns what the switch's counters are called and labelled (ports,
//! malformed frames, ARP, cache, tunnels, per-table and per-flow counters), written
//! in the OpenMetrics text format by `prometheus-client`, and the endpoint's server
//! (`bounded_http`, on a thread and a current-thread runtime of its own, never the
//! forwarding thread). It reads the fast path's counters without locks and the
//! table and flow counters from the published snapshot of the tables, on its own
//! thread, asking no switch thread anything; it never changes anything.

use crate::switch::{HistogramSnapshot, Stage, SwitchHandle};
use bounded_http::Limits;
use bytes::Bytes;
use dataplane_core::pipeline::TableStats;
use dataplane_core::port_security::Spoofed;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};
use openflow::text::format_match;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use prometheus_client::registry::Unit;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// What the metrics listener tolerates: 16 scrapers at once, 8 KiB of request
/// line and headers within 5 s, the whole exchange within 30 s. Requests carry
/// no body worth reading.
pub const LIMITS: Limits = Limits {
    max_connections: 16,
    max_head_bytes: 8 << 10,
    header_timeout: Duration::from_secs(5),
    exchange_timeout: Duration::from_secs(30),
};

/// The media type of what [`render`] writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Label names and values of one sample, in the order they are written.
type Labels = Vec<(&'static str, String)>;

/// A label value as the text format wants it (prometheus-client writes values
/// as given).
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `base` followed by `extra`.
fn with(base: &Labels, extra: &[(&'static str, String)]) -> Labels {
    base.iter().chain(extra).cloned().collect()
}

/// Writes one counter family (`name` without its `_total`).
fn counters(
    out: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, u64)>,
) -> fmt::Result {
    let mut family = out.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in samples {
        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Writes one gauge family.
fn gauges<V: EncodeGaugeValue>(
    out: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, V)>,
) -> fmt::Result {
    let mut family = out.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in samples {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// One flow entry's counters, as read on the switch thread.
struct FlowRow {
    table: u8,
    priority: u16,
    cookie: u64,
    matcher: String,
    packets: u64,
    bytes: u64,
}

/// The switch's counters, read at every scrape.
#[derive(Debug)]
struct SwitchMetrics {
    handle: SwitchHandle,
    host: String,
}

impl SwitchMetrics {
    /// The labels of every sample: host and datapath id.
    fn base(&self) -> Labels {
        vec![
            ("host", label(&self.host)),
            ("dpid", format!("{:016x}", self.handle.shared.datapath_id)),
        ]
    }

    fn ports(&self, out: &mut DescriptorEncoder) -> fmt::Result {
        let all = self.handle.shared.ports();
        let ports: Vec<_> = all
            .iter()
            .map(|p| {
                let labels = with(
                    &self.base(),
                    &[("port", p.number.to_string()), ("name", label(&p.name))],
                );
                (labels, &p.counters)
            })
            .collect();
        let dir = |labels: &Labels, dir: &str| with(labels, &[("dir", dir.to_string())]);
        let both = |rx: fn(&crate::switch::PortCounters) -> u64,
                    tx: fn(&crate::switch::PortCounters) -> u64| {
            ports
                .iter()
                .flat_map(move |(l, c)| [(dir(l, "rx"), rx(c)), (dir(l, "tx"), tx(c))])
        };
        counters(
            out,
            "scd_port_packets",
            "Frames through a port.",
            both(|c| c.rx_packets.get(), |c| c.tx_packets.get()),
        )?;
        counters(
            out,
            "scd_port_bytes",
            "Bytes through a port.",
            both(|c| c.rx_bytes.get(), |c| c.tx_bytes.get()),
        )?;
        counters(
            out,
            "scd_port_dropped",
            "Frames a port could not send.",
            ports
                .iter()
                .map(|(l, c)| (dir(l, "tx"), c.tx_dropped.get())),
        )?;
        counters(
            out,
            "scd_port_errors",
            "Frames a port failed to receive.",
            ports.iter().map(|(l, c)| (dir(l, "rx"), c.rx_errors.get())),
        )?;
        counters(
            out,
            "scd_port_spoofed",
            "Frames a VM port refused before the tables: not from its VM's MAC and addresses.",
            ports.iter().flat_map(|(l, c)| {
                Spoofed::ALL.iter().map(|r| {
                    (
                        with(l, &[("reason", r.label().to_string())]),
                        c.spoofed[r.index()].get(),
                    )
                })
            }),
        )
    }

    fn switch_counters(&self, out: &mut DescriptorEncoder) -> fmt::Result {
        let shared = &self.handle.shared;
        let (c, of) = (&shared.counters, &shared.channel);
        let base = self.base();
        counters(
            out,
            "scd_malformed",
            "Frames dropped because their headers were malformed.",
            [
                ("truncated", c.malformed_truncated.get()),
                ("bad_length", c.malformed_bad_length.get()),
                ("bad_version", c.malformed_bad_version.get()),
            ]
            .map(|(reason, v)| (with(&base, &[("reason", reason.to_string())]), v)),
        )?;
        for (name, help, value) in [
            (
                "scd_arp_replies",
                "ARP requests answered by the anycast gateway.",
                c.arp_replies.get(),
            ),
            (
                "scd_nd_replies",
                "IPv6 neighbour and router solicitations answered by the anycast gateway.",
                c.nd_replies.get(),
            ),
            (
                "scd_dhcp_replies",
                "DHCP requests from VM ports answered.",
                c.dhcp_replies.get(),
            ),
            (
                "scd_dhcp_unanswered",
                "DHCP requests from VM ports consumed without an answer.",
                c.dhcp_unanswered.get(),
            ),
            (
                "scd_no_output",
                "Frames that matched no flow or a flow without outputs.",
                c.no_output.get(),
            ),
            (
                "scd_ttl_expired",
                "Frames dropped by dec_ttl.",
                c.ttl_expired.get(),
            ),
            (
                "scd_packet_in_queued",
                "Frames for the controller handed to the OpenFlow channel.",
                c.packet_in_queued.get(),
            ),
            (
                "scd_packet_in_dropped",
                "Frames for the controller dropped (channel queue full or no channel).",
                c.packet_in_dropped.get(),
            ),
            (
                "scd_openflow_messages",
                "OpenFlow messages received.",
                of.messages_in.load(Relaxed),
            ),
            (
                "scd_openflow_errors_sent",
                "OpenFlow error replies sent.",
                of.errors_sent.load(Relaxed),
            ),
            (
                "scd_openflow_flow_mods",
                "OpenFlow flow-mods applied or refused by the tables.",
                of.flow_mods.load(Relaxed),
            ),
            (
                "scd_openflow_packet_ins",
                "OpenFlow packet-in messages sent (one per connection).",
                of.packet_ins_sent.load(Relaxed),
            ),
            (
                "scd_openflow_packet_outs",
                "OpenFlow packet-outs executed.",
                of.packet_outs.load(Relaxed),
            ),
            (
                "scd_reloads",
                "Reloads of the static flows file that replaced its flows.",
                shared.reloads.applied.load(Relaxed),
            ),
            (
                "scd_reload_failures",
                "Reloads of the static flows file refused whole (tables unchanged).",
                shared.reloads.failed.load(Relaxed),
            ),
            (
                "scd_to_controller",
                "Frames sent to the controller.",
                c.to_controller.get(),
            ),
            (
                "scd_bad_port",
                "Outputs to ports that do not exist.",
                c.bad_port.get(),
            ),
            (
                "scd_cache_hits",
                "Megaflow cache hits: packets forwarded without classification.",
                c.cache_hits.get(),
            ),
            (
                "scd_cache_misses",
                "Megaflow cache misses: packets classified (and cached).",
                c.cache_misses.get(),
            ),
            (
                "scd_tunnel_invalid",
                "Datagrams that are not WireGuard for any peer.",
                c.tunnel_invalid.get(),
            ),
            (
                "scd_tunnel_replayed",
                "Replayed WireGuard data packets.",
                c.tunnel_replayed.get(),
            ),
            (
                "scd_tunnel_spoofed",
                "Decrypted packets from a source not routed to their peer.",
                c.tunnel_spoofed.get(),
            ),
            (
                "scd_tunnel_not_ip",
                "Decrypted payloads that are not IP.",
                c.tunnel_not_ip.get(),
            ),
            (
                "scd_tunnel_non_ip_dropped",
                "Non-IP frames sent to a tunnel.",
                c.tunnel_non_ip_dropped.get(),
            ),
            (
                "scd_tunnel_no_endpoint",
                "Frames for a peer without an endpoint.",
                c.tunnel_no_endpoint.get(),
            ),
            (
                "scd_tunnel_handshaking",
                "Frames held for a handshake.",
                c.tunnel_handshaking.get(),
            ),
            (
                "scd_tunnel_send_errors",
                "Encrypted datagrams the kernel refused to send.",
                c.tunnel_send_errors.get(),
            ),
            (
                "scd_tunnel_handoff_dropped",
                "Frames (or received datagrams) for a tunnel peer another forwarding worker owns, dropped because the ring to it was full.",
                c.tunnel_handoff_dropped.get(),
            ),
            (
                "scd_tunnel_datagrams_handed",
                "Tunnel datagrams received by one forwarding worker for a peer another owns and handed to it (handshake initiations; more means the kernel did not steer).",
                c.tunnel_datagrams_handed.get(),
            ),
            (
                "scd_tunnel_too_big",
                "Packets over the tunnel MTU.",
                c.tunnel_too_big.get(),
            ),
            (
                "scd_packet_too_big_sent",
                "ICMPv6 packet-too-big messages sent for IPv6 over the tunnel MTU.",
                c.packet_too_big_sent.get(),
            ),
            (
                "scd_packet_too_big_rate_limited",
                "ICMPv6 packet-too-big messages left unsent over the rate limit.",
                c.packet_too_big_limited.get(),
            ),
        ] {
            counters(out, name, help, [(base.clone(), value)])?;
        }
        gauges(
            out,
            "scd_openflow_connections",
            "OpenFlow connections open now.",
            [(base, of.connections.load(Relaxed))],
        )
    }

    /// Per passive OpenFlow listener: connections open, refused at the cap, and
    /// closed for silence.
    fn listeners(&self, out: &mut DescriptorEncoder) -> fmt::Result {
        let listeners: Vec<_> = self
            .handle
            .shared
            .channel
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|l| {
                (
                    with(&self.base(), &[("listener", label(&l.listener))]),
                    l.clone(),
                )
            })
            .collect();
        gauges(
            out,
            "scd_ofp_listener_connections",
            "Connections a passive OpenFlow listener serves now.",
            listeners
                .iter()
                .map(|(l, c)| (l.clone(), c.open.load(Relaxed))),
        )?;
        counters(
            out,
            "scd_ofp_refused",
            "Connections to a passive OpenFlow listener closed at once: it was at its cap.",
            listeners
                .iter()
                .map(|(l, c)| (l.clone(), c.refused.load(Relaxed))),
        )?;
        counters(
            out,
            "scd_ofp_idle_closed",
            "Connections to a passive OpenFlow listener closed after the idle timeout.",
            listeners
                .iter()
                .map(|(l, c)| (l.clone(), c.idle_closed.load(Relaxed))),
        )?;
        counters(
            out,
            "scd_ofp_tls_refused",
            "Connections to a pssl: listener whose TLS handshake failed: no certificate, one not of the CA, or no TLS at all.",
            listeners
                .iter()
                .map(|(l, c)| (l.clone(), c.tls_refused.load(Relaxed))),
        )
    }

    fn tunnels(&self, out: &mut DescriptorEncoder) -> fmt::Result {
        let Ok(peers) = self.handle.shared.tunnels.lock() else {
            return Ok(());
        };
        let peers: Vec<_> = peers
            .iter()
            .map(|p| {
                let labels = with(
                    &self.base(),
                    &[
                        ("port", p.port.to_string()),
                        ("peer", label(&p.name)),
                        (
                            "endpoint",
                            p.endpoint.map(|e| e.to_string()).unwrap_or_default(),
                        ),
                    ],
                );
                (labels, p)
            })
            .collect();
        gauges(
            out,
            "scd_tunnel_handshake_age_seconds",
            "Seconds since the last WireGuard handshake with a peer (absent: never).",
            peers
                .iter()
                .filter_map(|(l, p)| Some((l.clone(), p.since_handshake?.as_secs()))),
        )?;
        gauges(
            out,
            "scd_tunnel_handshake_rtt_seconds",
            "Round trip of the last handshake this switch initiated with a peer, \
             millisecond resolution (absent: none yet).",
            peers.iter().filter_map(|(l, p)| {
                let ms = u32::try_from(p.handshake_rtt?.as_millis()).unwrap_or(u32::MAX);
                Some((l.clone(), f64::from(ms) / 1000.0))
            }),
        )?;
        counters(
            out,
            "scd_tunnel_session_bytes",
            "Bytes through a tunnel peer's current sessions.",
            peers.iter().flat_map(|(l, p)| {
                [
                    (with(l, &[("dir", "tx".to_string())]), p.tx_bytes),
                    (with(l, &[("dir", "rx".to_string())]), p.rx_bytes),
                ]
            }),
        )
    }

    fn tables(&self, out: &mut DescriptorEncoder) -> fmt::Result {
        let read = {
            let p = self.handle.snapshot();
            // Of the 254 tables offered, only those in use are worth a series.
            let stats: Vec<(u8, TableStats, usize)> = (0..p.n_tables())
                .filter_map(|t| p.table_stats(t).map(|s| (t, s, p.entries(t).count())))
                .filter(|(t, s, count)| *t == 0 || s.lookups > 0 || *count > 0)
                .collect();
            let flows: Vec<FlowRow> = (0..p.n_tables())
                .flat_map(|t| p.entries(t).collect::<Vec<_>>())
                .map(|e| FlowRow {
                    table: e.spec.table_id,
                    priority: e.spec.priority,
                    cookie: e.spec.cookie,
                    matcher: format_match(&e.spec.matcher),
                    packets: e.packets(),
                    bytes: e.bytes(),
                })
                .collect();
            (stats, flows)
        };
        let (stats, flows) = read;
        let base = self.base();
        let published = &self.handle.published;
        counters(
            out,
            "scd_table_publishes",
            "New versions of the tables made visible to packets (a burst of changes shares one).",
            [(base.clone(), published.publishes.load(Relaxed))],
        )?;
        counters(
            out,
            "scd_table_jobs",
            "Changes and synchronisations applied to the tables by the control thread.",
            [(base.clone(), published.jobs.load(Relaxed))],
        )?;
        let table = |t: &u8| with(&base, &[("table", t.to_string())]);
        counters(
            out,
            "scd_table_lookups",
            "Packets looked up in a table.",
            stats.iter().map(|(t, s, _)| (table(t), s.lookups)),
        )?;
        counters(
            out,
            "scd_table_matched",
            "Packets that matched a flow of a table.",
            stats.iter().map(|(t, s, _)| (table(t), s.matched)),
        )?;
        gauges(
            out,
            "scd_table_flows",
            "Flow entries in a table.",
            stats.iter().map(|(t, _, n)| (table(t), *n as u64)),
        )?;
        let flow = |f: &FlowRow| {
            with(
                &table(&f.table),
                &[
                    ("priority", f.priority.to_string()),
                    ("cookie", format!("{:#x}", f.cookie)),
                    ("match", label(&f.matcher)),
                ],
            )
        };
        counters(
            out,
            "scd_flow_packets",
            "Packets that hit a flow.",
            flows.iter().map(|f| (flow(f), f.packets)),
        )?;
        counters(
            out,
            "scd_flow_bytes",
            "Bytes that hit a flow.",
            flows.iter().map(|f| (flow(f), f.bytes)),
        )
    }
}

impl SwitchMetrics {
    /// Each forwarding worker's per-stage latency histograms.
    fn stage_latency(&self, out: &mut DescriptorEncoder) -> fmt::Result {
        let mut family = out.encode_descriptor(
            "scd_stage_latency",
            "Time the forwarding thread spent in each stage of its loop, in power-of-two \
             buckets (see docs/scd-config.md, [scheduling]).",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        let base = self.base();
        let workers = self.handle.shared.stage_latency.iter().enumerate();
        for (stage, (worker, latency)) in workers.flat_map(|w| Stage::ALL.map(|s| (s, w))) {
            let snapshot = latency.get(stage).snapshot();
            let buckets: Vec<(f64, u64)> = snapshot
                .counts
                .iter()
                .enumerate()
                .map(|(i, count)| {
                    // prometheus-client writes f64::MAX as `+Inf`: the open top bucket.
                    let upper =
                        HistogramSnapshot::upper_ns(i).map_or(f64::MAX, |ns| ns as f64 / 1e9);
                    (upper, *count)
                })
                .collect();
            let labels = with(
                &base,
                &[
                    ("stage", stage.name().to_string()),
                    ("worker", worker.to_string()),
                ],
            );
            family
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(
                    snapshot.sum_ns as f64 / 1e9,
                    snapshot.count(),
                    &buckets,
                    None,
                )?;
        }
        Ok(())
    }
}

impl Collector for SwitchMetrics {
    fn encode(&self, mut out: DescriptorEncoder) -> fmt::Result {
        self.ports(&mut out)?;
        self.stage_latency(&mut out)?;
        self.switch_counters(&mut out)?;
        self.listeners(&mut out)?;
        self.tunnels(&mut out)?;
        self.tables(&mut out)
    }
}

/// Renders every metric of the switch (OpenMetrics text). Waits for the switch
/// thread to read its tables: call it off any async worker.
pub fn render(handle: &SwitchHandle, host: &str) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SwitchMetrics {
        handle: handle.clone(),
        host: host.to_string(),
    }));
    let mut out = String::with_capacity(4096);
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::warn!("rendering metrics: {e}");
    }
    out
}

/// Answers one request: the metrics for `GET /metrics`, 404 otherwise.
async fn answer(
    request: Request<Incoming>,
    handle: SwitchHandle,
    host: String,
) -> Result<Response<Full<Bytes>>, hyper::http::Error> {
    if request.method() != Method::GET || request.uri().path() != "/metrics" {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Full::new(Bytes::from_static(b"try GET /metrics\n")));
    }
    // The switch thread answers between batches of frames: wait for it on a
    // blocking thread, not on the task that serves the other scrapers.
    match tokio::task::spawn_blocking(move || render(&handle, &host)).await {
        Ok(text) => Response::builder()
            .header(header::CONTENT_TYPE, OPENMETRICS)
            .body(Full::new(Bytes::from(text))),
        Err(e) => Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Full::new(Bytes::from(format!("rendering failed: {e}\n")))),
    }
}

/// Serves `GET /metrics` on `addr` from a thread of its own, within [`LIMITS`].
pub fn serve(addr: SocketAddr, handle: SwitchHandle, host: String) -> std::io::Result<SocketAddr> {
    serve_within(addr, handle, host, LIMITS)
}

fn serve_within(
    addr: SocketAddr,
    handle: SwitchHandle,
    host: String,
    limits: Limits,
) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(2)
        .thread_name("metrics-render")
        .on_thread_start(crate::scheduling::control_thread)
        .build()?;
    let service =
        hyper::service::service_fn(move |request| answer(request, handle.clone(), host.clone()));
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            crate::scheduling::control_thread();
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => bounded_http::serve(listener, service, limits).await,
                    Err(e) => tracing::error!("metrics listener: {e}"),
                }
            })
        })?;
    Ok(bound)
}

#[cfg(test)]
mod tests;
