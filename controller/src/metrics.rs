//! `scc`'s Prometheus metrics (`GET /metrics` on the API): per switch, whether it
//! is connected, how often its flows were audited and how many flow-mods repaired
//! them. Rendered in the OpenMetrics text format by `prometheus-client` from the
//! switches' status at each scrape; this module owns the metrics' names, help and
//! labels and never changes anything.

use crate::daemon::SwitchStatus;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The media type of what [`render`] writes.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One switch's label: `switch="HOST"`.
type Labels = Vec<(&'static str, String)>;

/// The metrics of these switches (host name, status) and of the switches
/// refused at the OpenFlow listener (by reason), as OpenMetrics text.
pub fn render(
    switches: &[(String, SwitchStatus)],
    refusals: &std::collections::BTreeMap<&'static str, u64>,
) -> String {
    let refused = Family::<Vec<(&'static str, &'static str)>, Counter>::default();
    for reason in crate::net::Refusal::ALL {
        let n = refusals.get(reason.label()).copied().unwrap_or(0);
        refused
            .get_or_create(&vec![("reason", reason.label())])
            .inc_by(n);
    }
    let connected = Family::<Labels, Gauge>::default();
    let audits = Family::<Labels, Counter>::default();
    let repairs = Family::<Labels, Counter>::default();
    for (host, s) in switches {
        let labels = vec![("switch", host.clone())];
        connected.get_or_create(&labels).set(i64::from(s.connected));
        audits.get_or_create(&labels).inc_by(s.audits);
        repairs.get_or_create(&labels).inc_by(s.repairs);
    }
    let mut registry = Registry::default();
    registry.register(
        "scc_switch_connected",
        "1 while the switch's OpenFlow session is up and answering.",
        connected,
    );
    registry.register(
        "scc_switch_audits",
        "Times the controller read the switch's flows back to compare them with the program.",
        audits,
    );
    registry.register(
        "scc_switch_repairs",
        "Flow-mods sent to repair flows that differed from the program (deleted, added or changed behind the controller's back).",
        repairs,
    );
    registry.register(
        "scc_switch_refused",
        "Connections to the OpenFlow listener refused before any program was sent: a failed TLS handshake (no_certificate, untrusted_certificate, handshake), a certificate that names no inventory host (unknown_host) or another host than the announced datapath id's (wrong_datapath), a datapath id of no host (unknown_datapath), or a datapath that has a live session (duplicate).",
        refused,
    );
    let mut out = String::with_capacity(1024);
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::warn!("rendering metrics: {e}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_switch_has_its_counters() {
        let a = SwitchStatus {
            connected: true,
            audits: 4,
            repairs: 3,
            ..SwitchStatus::default()
        };
        let refusals = [("wrong_datapath", 2)].into_iter().collect();
        let text = render(
            &[
                ("host-a".into(), a),
                ("host-b".into(), SwitchStatus::default()),
            ],
            &refusals,
        );
        for line in [
            "scc_switch_repairs_total{switch=\"host-a\"} 3",
            "scc_switch_repairs_total{switch=\"host-b\"} 0",
            "scc_switch_audits_total{switch=\"host-a\"} 4",
            "scc_switch_connected{switch=\"host-a\"} 1",
            "scc_switch_connected{switch=\"host-b\"} 0",
            "scc_switch_refused_total{reason=\"wrong_datapath\"} 2",
            "scc_switch_refused_total{reason=\"duplicate\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
