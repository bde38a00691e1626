//! The decision table that `scc placement plan` prints.

use super::decision::Decision;

/// The decision table (`scc placement plan`): VM, now, best, latencies, gain, cost, why.
pub fn table(decisions: &[Decision]) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    let mut out = String::from(
        "| VM | now | best | latency now ms | latency best ms | gain ms·GB | cost ms·GB | move s | action | why |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for d in decisions {
        out += &format!(
            "| {} | {} | {} | {} | {} | {:.3} | {:.3} | {:.1} | {} | {} |\n",
            d.vm,
            d.now,
            d.best,
            ms(d.latency_now_ms),
            ms(d.latency_best_ms),
            d.gain,
            d.cost,
            d.move_s,
            if d.migrate { "migrate" } else { "stay" },
            d.why
        );
    }
    out
}
