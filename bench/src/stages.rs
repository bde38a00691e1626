//! `scd`'s per-stage latency histograms (`scd_stage_latency_seconds` on its
//! metrics endpoint) as Markdown rows of p50/p99 bucket bounds: where its time
//! went. Reads only; owns no measurement of its own.

use netns_tests::Scd;

/// p50/p99 of each stage of `scd`'s histograms as a table row per stage.
pub fn stage_table(scd: &Scd) -> Option<String> {
    let text = scd.metrics_text().ok()?;
    let mut rows = String::new();
    for stage in [
        "tunnel_wakeup",
        "local_batch",
        "tunnel_batch",
        "tunnel_send",
        "job_hop",
        "round",
    ] {
        let tag = format!("stage=\"{stage}\"");
        // Cumulative buckets in order of their bounds.
        let buckets: Vec<(f64, f64)> = text
            .lines()
            .filter(|l| l.starts_with("scd_stage_latency_seconds_bucket{") && l.contains(&tag))
            .filter_map(|l| {
                let le = l.split("le=\"").nth(1)?.split('"').next()?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, l.rsplit_once(' ')?.1.parse().ok()?))
            })
            .collect();
        let total = buckets.last().map_or(0.0, |b| b.1);
        if total == 0.0 {
            continue;
        }
        // The +Inf bucket has no upper bound: what it holds is above the last
        // finite one.
        let at = |q: f64| {
            let i = buckets.iter().position(|(_, c)| *c >= q * total)?;
            Some(match buckets[i].0 {
                le if le.is_finite() => format!("≤ {:.1}", le * 1e6),
                _ => format!("> {:.1}", buckets.get(i.checked_sub(1)?)?.0 * 1e6),
            })
        };
        let at = |q: f64| at(q).unwrap_or_default();
        rows.push_str(&format!(
            "| {stage} | {total:.0} | {} | {} |\n",
            at(0.5),
            at(0.99)
        ));
    }
    Some(rows)
}
