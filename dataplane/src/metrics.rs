//! The Prometheus text endpoint of `scd` (`GET /metrics` on a local address).
//!
//! This module owns rendering the switch's counters (ports, malformed frames, ARP,
//! cache, per-table and per-flow counters) in the Prometheus text format, and a
//! minimal blocking HTTP server for it on its own thread. It reads the fast path's
//! counters without locks and asks the switch thread for table counters through the
//! handle; it never changes anything.

use crate::switch::SwitchHandle;
use dataplane_core::pipeline::TableStats;
use openflow::text::format_match;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};

struct FlowRow {
    table: u8,
    priority: u16,
    cookie: u64,
    matcher: String,
    packets: u64,
    bytes: u64,
}

fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Renders every metric of the switch.
pub fn render(handle: &SwitchHandle, host: &str) -> String {
    let shared = &handle.shared;
    let mut out = String::with_capacity(4096);
    let dp = format!("{:016x}", shared.datapath_id);
    let host = label(host);
    let mut family = |name: &str, help: &str, kind: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(
        "scd_port_packets_total",
        "Frames through a port.",
        "counter",
    );
    family("scd_port_bytes_total", "Bytes through a port.", "counter");
    family(
        "scd_port_dropped_total",
        "Frames a port could not send.",
        "counter",
    );
    let _ = &mut family;
    for p in &shared.ports {
        let c = &p.counters;
        let l = format!(
            "host=\"{host}\",dpid=\"{dp}\",port=\"{}\",name=\"{}\"",
            p.number,
            label(&p.name)
        );
        let _ = writeln!(
            out,
            "scd_port_packets_total{{{l},dir=\"rx\"}} {}",
            c.rx_packets.get()
        );
        let _ = writeln!(
            out,
            "scd_port_packets_total{{{l},dir=\"tx\"}} {}",
            c.tx_packets.get()
        );
        let _ = writeln!(
            out,
            "scd_port_bytes_total{{{l},dir=\"rx\"}} {}",
            c.rx_bytes.get()
        );
        let _ = writeln!(
            out,
            "scd_port_bytes_total{{{l},dir=\"tx\"}} {}",
            c.tx_bytes.get()
        );
        let _ = writeln!(
            out,
            "scd_port_dropped_total{{{l},dir=\"tx\"}} {}",
            c.tx_dropped.get()
        );
        let _ = writeln!(
            out,
            "scd_port_errors_total{{{l},dir=\"rx\"}} {}",
            c.rx_errors.get()
        );
    }
    let c = &shared.counters;
    let base = format!("host=\"{host}\",dpid=\"{dp}\"");
    let _ = writeln!(out, "# HELP scd_malformed_total Frames dropped because their headers were malformed.\n# TYPE scd_malformed_total counter");
    for (reason, v) in [
        ("truncated", c.malformed_truncated.get()),
        ("bad_length", c.malformed_bad_length.get()),
        ("bad_version", c.malformed_bad_version.get()),
    ] {
        let _ = writeln!(out, "scd_malformed_total{{{base},reason=\"{reason}\"}} {v}");
    }
    for (name, help, v) in [
        (
            "scd_arp_replies_total",
            "ARP requests answered by the anycast gateway.",
            c.arp_replies.get(),
        ),
        (
            "scd_no_output_total",
            "Frames that matched no flow or a flow without outputs.",
            c.no_output.get(),
        ),
        (
            "scd_ttl_expired_total",
            "Frames dropped by dec_ttl.",
            c.ttl_expired.get(),
        ),
        (
            "scd_packet_in_queued_total",
            "Frames for the controller handed to the OpenFlow channel.",
            c.packet_in_queued.get(),
        ),
        (
            "scd_packet_in_dropped_total",
            "Frames for the controller dropped (channel queue full or no channel).",
            c.packet_in_dropped.get(),
        ),
        (
            "scd_openflow_messages_total",
            "OpenFlow messages received.",
            shared
                .channel
                .messages_in
                .load(std::sync::atomic::Ordering::Relaxed),
        ),
        (
            "scd_openflow_errors_sent_total",
            "OpenFlow error replies sent.",
            shared
                .channel
                .errors_sent
                .load(std::sync::atomic::Ordering::Relaxed),
        ),
        (
            "scd_openflow_flow_mods_total",
            "OpenFlow flow-mods applied or refused by the tables.",
            shared
                .channel
                .flow_mods
                .load(std::sync::atomic::Ordering::Relaxed),
        ),
        (
            "scd_openflow_packet_ins_total",
            "OpenFlow packet-in messages sent (one per connection).",
            shared
                .channel
                .packet_ins_sent
                .load(std::sync::atomic::Ordering::Relaxed),
        ),
        (
            "scd_openflow_packet_outs_total",
            "OpenFlow packet-outs executed.",
            shared
                .channel
                .packet_outs
                .load(std::sync::atomic::Ordering::Relaxed),
        ),
        (
            "scd_to_controller_total",
            "Frames sent to the controller.",
            c.to_controller.get(),
        ),
        (
            "scd_bad_port_total",
            "Outputs to ports that do not exist.",
            c.bad_port.get(),
        ),
        (
            "scd_cache_hits_total",
            "Exact-match cache hits.",
            c.cache_hits.get(),
        ),
        (
            "scd_cache_misses_total",
            "Exact-match cache misses.",
            c.cache_misses.get(),
        ),
        (
            "scd_tunnel_invalid_total",
            "Datagrams that are not WireGuard for any peer.",
            c.tunnel_invalid.get(),
        ),
        (
            "scd_tunnel_replayed_total",
            "Replayed WireGuard data packets.",
            c.tunnel_replayed.get(),
        ),
        (
            "scd_tunnel_spoofed_total",
            "Decrypted packets from a source not routed to their peer.",
            c.tunnel_spoofed.get(),
        ),
        (
            "scd_tunnel_not_ip_total",
            "Decrypted payloads that are not IP.",
            c.tunnel_not_ip.get(),
        ),
        (
            "scd_tunnel_non_ip_dropped_total",
            "Non-IP frames sent to a tunnel.",
            c.tunnel_non_ip_dropped.get(),
        ),
        (
            "scd_tunnel_no_endpoint_total",
            "Frames for a peer without an endpoint.",
            c.tunnel_no_endpoint.get(),
        ),
        (
            "scd_tunnel_handshaking_total",
            "Frames held for a handshake.",
            c.tunnel_handshaking.get(),
        ),
        (
            "scd_tunnel_send_errors_total",
            "Encrypted datagrams the kernel refused to send.",
            c.tunnel_send_errors.get(),
        ),
        (
            "scd_tunnel_too_big_total",
            "Packets over the tunnel MTU.",
            c.tunnel_too_big.get(),
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{{base}}} {v}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP scd_openflow_connections OpenFlow connections open now.\n# TYPE scd_openflow_connections gauge\nscd_openflow_connections{{{base}}} {}",
        shared
            .channel
            .connections
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    if let Ok(peers) = shared.tunnels.lock() {
        let _ = writeln!(out, "# HELP scd_tunnel_handshake_age_seconds Seconds since the last WireGuard handshake with a peer (absent: never).\n# TYPE scd_tunnel_handshake_age_seconds gauge");
        let _ = writeln!(out, "# HELP scd_tunnel_handshake_rtt_seconds Round trip of the last handshake this switch initiated with a peer, millisecond resolution (absent: none yet).\n# TYPE scd_tunnel_handshake_rtt_seconds gauge");
        for p in peers.iter() {
            let l = format!(
                "{base},port=\"{}\",peer=\"{}\",endpoint=\"{}\"",
                p.port,
                label(&p.name),
                p.endpoint.map(|e| e.to_string()).unwrap_or_default()
            );
            if let Some(age) = p.since_handshake {
                let _ = writeln!(
                    out,
                    "scd_tunnel_handshake_age_seconds{{{l}}} {}",
                    age.as_secs()
                );
            }
            if let Some(rtt) = p.handshake_rtt {
                let _ = writeln!(
                    out,
                    "scd_tunnel_handshake_rtt_seconds{{{l}}} {:.3}",
                    rtt.as_secs_f64()
                );
            }
            let _ = writeln!(
                out,
                "scd_tunnel_session_bytes_total{{{l},dir=\"tx\"}} {}",
                p.tx_bytes
            );
            let _ = writeln!(
                out,
                "scd_tunnel_session_bytes_total{{{l},dir=\"rx\"}} {}",
                p.rx_bytes
            );
        }
    }
    let tables = handle.call(|p, _| {
        let stats: Vec<(u8, TableStats, usize)> = (0..p.n_tables())
            .filter_map(|t| p.table_stats(t).map(|s| (t, s, p.entries(t).count())))
            .collect();
        let flows: Vec<FlowRow> = (0..p.n_tables())
            .flat_map(|t| p.entries(t).collect::<Vec<_>>())
            .map(|e| FlowRow {
                table: e.spec.table_id,
                priority: e.spec.priority,
                cookie: e.spec.cookie,
                matcher: format_match(&e.spec.matcher),
                packets: e.packets,
                bytes: e.bytes,
            })
            .collect();
        (stats, flows)
    });
    if let Ok((stats, flows)) = tables {
        let _ = writeln!(out, "# HELP scd_table_lookups_total Packets looked up in a table.\n# TYPE scd_table_lookups_total counter");
        for (t, s, _) in &stats {
            let _ = writeln!(
                out,
                "scd_table_lookups_total{{{base},table=\"{t}\"}} {}",
                s.lookups
            );
            let _ = writeln!(
                out,
                "scd_table_matched_total{{{base},table=\"{t}\"}} {}",
                s.matched
            );
        }
        let _ = writeln!(
            out,
            "# HELP scd_table_flows Flow entries in a table.\n# TYPE scd_table_flows gauge"
        );
        for (t, _, n) in &stats {
            let _ = writeln!(out, "scd_table_flows{{{base},table=\"{t}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP scd_flow_packets_total Packets that hit a flow.\n# TYPE scd_flow_packets_total counter");
        for f in &flows {
            let l = format!(
                "{base},table=\"{}\",priority=\"{}\",cookie=\"{:#x}\",match=\"{}\"",
                f.table,
                f.priority,
                f.cookie,
                label(&f.matcher)
            );
            let _ = writeln!(out, "scd_flow_packets_total{{{l}}} {}", f.packets);
            let _ = writeln!(out, "scd_flow_bytes_total{{{l}}} {}", f.bytes);
        }
    }
    out
}

/// Serves `GET /metrics` on `addr` from a background thread.
pub fn serve(addr: SocketAddr, handle: SwitchHandle, host: String) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                let mut request_line = String::new();
                let mut reader = BufReader::new(&stream);
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                // Drain the headers so the client sees a clean response.
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let (status, body) = if request_line.starts_with("GET /metrics") {
                    ("200 OK", render(&handle, &host))
                } else {
                    ("404 Not Found", "try GET /metrics\n".to_string())
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        })?;
    Ok(bound)
}
