//! The metrics of a running switch (no ports), rendered and served: names and
//! labels as the namespace tests and dashboards read them, a slow client that
//! must not hold up a scrape, and 2,000 idle connections that must not keep it
//! from serving.

use super::*;
use crate::switch::test_switch::Running;
use dataplane_core::pipeline::Pipeline;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// A switch on its own thread with one flow; stopped when the guard drops.
fn running() -> Running {
    let flows =
        openflow::text::parse_flows("cookie=0x6000,priority=5,ip,nw_dst=10.0.0.1,actions=drop\n")
            .unwrap();
    let pipeline = Pipeline::from_flows_at(flows, std::time::Instant::now()).unwrap();
    crate::switch::test_switch::running(pipeline)
}

/// The sample lines of `text`, `name{labels}` to value.
fn samples(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap_or_else(|| panic!("{l:?}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn renders_the_switch_under_the_same_names_and_labels() {
    let s = running();
    let text = render(&s.handle, "host \"a\"");
    let all = samples(&text);
    let base = "host=\"host \\\"a\\\"\",dpid=\"000000000000002a\"";
    for expected in [
        format!("scd_malformed_total{{{base},reason=\"truncated\"}}"),
        format!("scd_arp_replies_total{{{base}}}"),
        format!("scd_dhcp_replies_total{{{base}}}"),
        format!("scd_tunnel_spoofed_total{{{base}}}"),
        format!("scd_reloads_total{{{base}}}"),
        format!("scd_reload_failures_total{{{base}}}"),
        format!("scd_openflow_connections{{{base}}}"),
        format!("scd_table_lookups_total{{{base},table=\"0\"}}"),
        format!("scd_table_matched_total{{{base},table=\"0\"}}"),
        format!(
            "scd_flow_packets_total{{{base},table=\"0\",priority=\"5\",cookie=\"0x6000\",match=\"ip,nw_dst=10.0.0.1\"}}"
        ),
    ] {
        assert!(all.iter().any(|(k, v)| *k == expected && v == "0"), "{expected} in\n{text}");
    }
    let flows = format!("scd_table_flows{{{base},table=\"0\"}}");
    assert!(all.contains(&(flows, "1".to_string())), "{text}");
    assert!(text.contains("# TYPE scd_port_packets counter\n"), "{text}");
    assert!(
        text.contains("# TYPE scd_stage_latency_seconds histogram\n"),
        "{text}"
    );
    // A sample recorded is counted in its stage, within a bucket's bounds.
    s.handle.shared.stage_latency[0].record(
        crate::switch::Stage::Round,
        std::time::Duration::from_micros(3),
    );
    // A sample past the last finite bound (2^30 ns) is counted only under +Inf.
    s.handle.shared.stage_latency[0].record(
        crate::switch::Stage::Round,
        std::time::Duration::from_secs(100),
    );
    let text = render(&s.handle, "host \"a\"");
    let all = samples(&text);
    let round = format!("{base},stage=\"round\",worker=\"0\"");
    for (key, value) in [
        (format!("scd_stage_latency_seconds_count{{{round}}}"), "2"),
        (
            format!("scd_stage_latency_seconds_bucket{{le=\"1.073741824\",{round}}}"),
            "1",
        ),
        (
            format!("scd_stage_latency_seconds_bucket{{le=\"0.000002048\",{round}}}"),
            "0",
        ),
        (
            format!("scd_stage_latency_seconds_bucket{{le=\"0.000004096\",{round}}}"),
            "1",
        ),
        (
            format!("scd_stage_latency_seconds_bucket{{le=\"+Inf\",{round}}}"),
            "2",
        ),
    ] {
        assert!(
            all.iter().any(|(k, v)| *k == key && v == value),
            "{key} {value} in\n{text}"
        );
    }
    assert!(text.ends_with("# EOF\n"), "{text}");
    // Every value is a number the namespace tests can read.
    assert!(all.iter().all(|(_, v)| v.parse::<f64>().is_ok()), "{text}");
}

#[test]
fn each_openflow_listener_has_its_labelled_counters() {
    let s = running();
    let listener = Arc::new(crate::switch::ListenerCounters {
        listener: "punix:/run/scd.mgmt".into(),
        ..Default::default()
    });
    listener.open.store(2, Relaxed);
    listener.refused.store(3, Relaxed);
    listener.idle_closed.store(4, Relaxed);
    s.handle
        .shared
        .channel
        .listeners
        .lock()
        .unwrap()
        .push(listener);
    let text = render(&s.handle, "h");
    let all = samples(&text);
    let labels = "host=\"h\",dpid=\"000000000000002a\",listener=\"punix:/run/scd.mgmt\"";
    for (name, value) in [
        ("scd_ofp_listener_connections", "2"),
        ("scd_ofp_refused_total", "3"),
        ("scd_ofp_idle_closed_total", "4"),
    ] {
        let key = format!("{name}{{{labels}}}");
        assert!(
            all.contains(&(key.clone(), value.to_string())),
            "{key} in\n{text}"
        );
    }
}

#[tokio::test]
async fn a_slow_client_does_not_stall_a_scrape() {
    let s = running();
    // The slow client is never closed for being slow while the scrape runs.
    let patient = Limits {
        header_timeout: Duration::from_secs(3600),
        ..LIMITS
    };
    let addr = serve_within(
        "127.0.0.1:0".parse().unwrap(),
        s.handle.clone(),
        "h".into(),
        patient,
    )
    .unwrap();
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /metr").await.unwrap();
    let scrape =
        bounded_http::client::request(addr, "GET", "/metrics", b"", Duration::from_secs(60))
            .await
            .unwrap();
    assert_eq!(scrape.status, 200);
    assert!(
        scrape.text().contains("scd_table_flows{"),
        "{}",
        scrape.text()
    );
    let other = bounded_http::client::request(addr, "GET", "/", b"", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        (other.status, other.text().as_str()),
        (404, "try GET /metrics\n")
    );
    // The slow one is still waiting: nothing was answered or closed on it.
    let mut buf = [0u8; 64];
    let still_open =
        matches!(slow.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    assert!(
        still_open,
        "the slow client was served or closed before the scrape"
    );
}

#[tokio::test]
async fn two_thousand_idle_connections_leave_the_metrics_serving() {
    let s = running();
    let addr = serve_within(
        "127.0.0.1:0".parse().unwrap(),
        s.handle.clone(),
        "h".into(),
        LIMITS,
    )
    .unwrap();
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let wanted = rustix::process::Rlimit {
        current: limit.maximum.map(|m| m.min(8192)),
        maximum: limit.maximum,
    };
    rustix::process::setrlimit(rustix::process::Resource::Nofile, wanted).unwrap();
    let mut idle = Vec::new();
    for _ in 0..2000 {
        if let Ok(c) = tokio::net::TcpStream::connect(addr).await {
            idle.push(c);
        }
    }
    assert!(idle.len() >= 1000, "only {} connections", idle.len());
    // Held open, silent: the cap turns newcomers away at once and the header
    // timeout frees the slots the first ones took, so a scraper gets in.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let scrape =
            bounded_http::client::request(addr, "GET", "/metrics", b"", Duration::from_secs(10))
                .await;
        match scrape {
            Ok(a) if a.status == 200 && a.text().contains("scd_table_flows{") => break,
            other => assert!(
                std::time::Instant::now() < deadline,
                "never served again: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(idle.len() >= 1000, "the idle connections were still held");
}
