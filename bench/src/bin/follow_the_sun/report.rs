//! What `follow_the_sun` reports of a policy: the traffic-weighted client latency
//! (mean and p95) and migrations of its schedules, and the Markdown table rows.

use crate::policies::Schedule;
use crate::world::{Trace, LATENCY_MS};
use controller::model::EngineConfig;

/// Traffic-weighted client latency samples of one VM on a schedule: (ms, bytes).
fn samples(
    trace: &Trace,
    i: usize,
    schedule: &Schedule,
    config: &EngineConfig,
    out: &mut Vec<(f64, f64)>,
) {
    for (day_minute, &c) in schedule.cloud.iter().enumerate() {
        let minute = trace.day_start + day_minute;
        let stalled = if schedule.arrivals.contains(&day_minute) {
            config.downtime_s / 60.0
        } else {
            0.0
        };
        for (r, row) in LATENCY_MS.iter().enumerate() {
            let bytes = trace.traffic[i][minute][r] * 60.0;
            let latency = row[c] * trace.jitter[minute][r][c];
            out.push((latency, bytes * (1.0 - stalled)));
            if stalled > 0.0 {
                // Requests arriving during the downtime wait half of it on average.
                out.push((latency + config.downtime_s * 500.0, bytes * stalled));
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome {
    pub(crate) mean_ms: f64,
    pub(crate) p95_ms: f64,
    pub(crate) migrations_per_vm_day: f64,
    /// Most migrations of one VM within any 24 hours.
    pub(crate) most_in_a_day: usize,
}

/// The outcome of the VMs `vms` (indices into the trace) on `schedules`.
pub(crate) fn outcome(
    trace: &Trace,
    vms: &[usize],
    schedules: &[Schedule],
    config: &EngineConfig,
) -> Outcome {
    let mut all = Vec::new();
    for (&i, s) in vms.iter().zip(schedules) {
        samples(trace, i, s, config, &mut all);
    }
    let total: f64 = all.iter().map(|s| s.1).sum();
    let mean_ms = all.iter().map(|s| s.0 * s.1).sum::<f64>() / total;
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut seen = 0.0;
    let p95_ms = all
        .iter()
        .find(|s| {
            seen += s.1;
            seen >= 0.95 * total
        })
        .map_or(f64::NAN, |s| s.0);
    let moves: usize = schedules.iter().map(|s| s.arrivals.len()).sum();
    Outcome {
        mean_ms,
        p95_ms,
        migrations_per_vm_day: moves as f64 / schedules.len() as f64,
        most_in_a_day: schedules.iter().map(|s| s.most_in_a_day).max().unwrap_or(0),
    }
}

pub(crate) fn row(policy: &str, o: Outcome, oracle: Outcome) {
    println!(
        "| {policy} | {:.1} | {:.1} | {:.2} | {} | {:.3} | {:.3} |",
        o.mean_ms,
        o.p95_ms,
        o.migrations_per_vm_day,
        o.most_in_a_day,
        o.mean_ms / oracle.mean_ms,
        o.p95_ms / oracle.p95_ms
    );
}

/// The budgets as a column: "3 / VM, 1.9 / VM (fleet)", or "none".
pub(crate) fn budget_label(per_vm: Option<u32>, fleet: Option<f64>) -> String {
    match (per_vm, fleet) {
        (None, None) => "none".to_string(),
        (Some(m), None) => format!("{m} / VM"),
        (None, Some(f)) => format!("{f} / VM (fleet)"),
        (Some(m), Some(f)) => format!("{m} / VM, {f} / VM (fleet)"),
    }
}
