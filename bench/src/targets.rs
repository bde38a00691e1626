//! Issue 19's "must show" targets of the data path, judged from the rows of
//! `bench latency`: each `scd` row against its peers of the same area, run by
//! run (a ratio or a difference is only ever taken between rows of the same
//! run), then min / median / max over the runs and met or not at the median.
//! Pure: it reads measured samples and prints; it measures nothing.

use crate::common::min_median_max;
use crate::probes::Sample;

/// The areas and the peers' row names, as `bench latency` names its rows.
pub const SWITCHING: &str = "switching";
pub const TUNNEL: &str = "tunnel";
pub const BRIDGE: &str = "Linux bridge (limit)";
pub const OVS: &str = "Open vSwitch userspace";
pub const OVS_TSO: &str = "Open vSwitch userspace, TSO on";
pub const VETH: &str = "plain veth (limit)";
pub const WIREGUARD_GO: &str = "wireguard-go";
pub const BORINGTUN: &str = "boringtun-cli";

/// One run of the benchmark: (area, row name, what the row measured).
pub type Run = Vec<(&'static str, String, Sample)>;

/// Which peer is the one to beat when there are several.
#[derive(Debug, Clone, Copy)]
enum Best {
    /// The lowest value (a latency).
    Lowest,
    /// The highest value (a rate).
    Highest,
}

/// How `scd`'s figure is set against the peer's.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Compare {
    /// `scd / peer`.
    Ratio,
    /// `scd - peer`, in the metric's unit (µs).
    Difference,
}

/// The bound the comparison must keep.
#[derive(Debug, Clone, Copy)]
enum Bound {
    AtMost(f64),
    AtLeast(f64),
}

impl Bound {
    fn holds(self, value: f64) -> bool {
        match self {
            Bound::AtMost(b) => value <= b,
            Bound::AtLeast(b) => value >= b,
        }
    }
}

/// One target of the issue.
#[derive(Debug)]
struct Target {
    what: &'static str,
    area: &'static str,
    metric: fn(&Sample) -> Option<f64>,
    peers: &'static [&'static str],
    best: Best,
    compare: Compare,
    bound: Bound,
}

const USERSPACE_WG: &[&str] = &[WIREGUARD_GO, BORINGTUN];
const EITHER_OVS: &[&str] = &[OVS, OVS_TSO];

/// The targets, in its order. A latency is against the best (lowest)
/// userspace WireGuard; a rate against the best (highest) peer row.
const TARGETS: &[Target] = &[
    Target {
        what: "tunnel, idle RTT p50 (ping)",
        area: TUNNEL,
        metric: |s| s.p50_us,
        peers: USERSPACE_WG,
        best: Best::Lowest,
        compare: Compare::Ratio,
        bound: Bound::AtMost(0.5),
    },
    Target {
        what: "tunnel, idle RTT p99 (ping)",
        area: TUNNEL,
        metric: |s| s.p99_us,
        peers: USERSPACE_WG,
        best: Best::Lowest,
        compare: Compare::Ratio,
        bound: Bound::AtMost(0.5),
    },
    Target {
        what: "tunnel, half round trip p50 (sockperf)",
        area: TUNNEL,
        metric: |s| s.half_rtt_p50_us,
        peers: USERSPACE_WG,
        best: Best::Lowest,
        compare: Compare::Ratio,
        bound: Bound::AtMost(0.5),
    },
    Target {
        what: "tunnel, half round trip p99 (sockperf)",
        area: TUNNEL,
        metric: |s| s.half_rtt_p99_us,
        peers: USERSPACE_WG,
        best: Best::Lowest,
        compare: Compare::Ratio,
        bound: Bound::AtMost(0.5),
    },
    Target {
        what: "switching, idle RTT p50 (ping) added",
        area: SWITCHING,
        metric: |s| s.p50_us,
        peers: &[BRIDGE],
        best: Best::Lowest,
        compare: Compare::Difference,
        bound: Bound::AtMost(10.0),
    },
    Target {
        what: "switching, half round trip p50 (sockperf) added",
        area: SWITCHING,
        metric: |s| s.half_rtt_p50_us,
        peers: &[BRIDGE],
        best: Best::Lowest,
        compare: Compare::Difference,
        bound: Bound::AtMost(10.0),
    },
    Target {
        what: "tunnel, one TCP stream",
        area: TUNNEL,
        metric: |s| s.gbits,
        peers: &[VETH],
        best: Best::Highest,
        compare: Compare::Ratio,
        bound: Bound::AtLeast(0.35),
    },
    Target {
        what: "switching, one TCP stream",
        area: SWITCHING,
        metric: |s| s.gbits,
        peers: &[OVS_TSO],
        best: Best::Highest,
        compare: Compare::Ratio,
        bound: Bound::AtLeast(1.5),
    },
    Target {
        what: "switching, 64 B read by iperf3",
        area: SWITCHING,
        metric: |s| s.pps,
        peers: EITHER_OVS,
        best: Best::Highest,
        compare: Compare::Ratio,
        bound: Bound::AtLeast(1.2),
    },
    Target {
        what: "switching, 64 B into the VM",
        area: SWITCHING,
        metric: |s| s.delivered_pps,
        peers: EITHER_OVS,
        best: Best::Highest,
        compare: Compare::Ratio,
        bound: Bound::AtLeast(1.2),
    },
    Target {
        what: "tunnel, 64 B read by iperf3",
        area: TUNNEL,
        metric: |s| s.pps,
        peers: USERSPACE_WG,
        best: Best::Highest,
        compare: Compare::Ratio,
        bound: Bound::AtLeast(1.2),
    },
    Target {
        what: "tunnel, 64 B into the VM",
        area: TUNNEL,
        metric: |s| s.delivered_pps,
        peers: USERSPACE_WG,
        best: Best::Highest,
        compare: Compare::Ratio,
        bound: Bound::AtLeast(1.2),
    },
];

/// The value of `metric` in row `name` of `area` in `run`.
fn value(run: &Run, area: &str, name: &str, metric: fn(&Sample) -> Option<f64>) -> Option<f64> {
    run.iter()
        .find(|(a, n, _)| *a == area && n == name)
        .and_then(|(_, _, s)| metric(s))
}

/// The best of the peers' values that were measured.
fn best_of(values: impl Iterator<Item = Option<f64>>, best: Best) -> Option<f64> {
    values.flatten().reduce(|a, b| match best {
        Best::Lowest => a.min(b),
        Best::Highest => a.max(b),
    })
}

/// `scd` row `name` against the target's best peer, one figure per run where
/// both were measured (and a ratio's peer is not zero).
fn per_run(target: &Target, name: &str, runs: &[Run]) -> Vec<f64> {
    runs.iter()
        .filter_map(|run| {
            let scd = value(run, target.area, name, target.metric)?;
            let peer = best_of(
                target
                    .peers
                    .iter()
                    .map(|p| value(run, target.area, p, target.metric)),
                target.best,
            )?;
            match target.compare {
                Compare::Ratio => (peer > 0.0).then(|| scd / peer),
                Compare::Difference => Some(scd - peer),
            }
        })
        .collect()
}

/// A target judged over the runs.
#[derive(Debug, PartialEq)]
struct Outcome {
    /// min, median, max of the per-run figures; `None` when no run measured both.
    spread: Option<(f64, f64, f64)>,
    /// Runs whose own figure kept the bound, of those measured.
    runs_met: usize,
    runs_measured: usize,
    /// The bound kept at the median.
    met: Option<bool>,
}

fn judge(target: &Target, name: &str, runs: &[Run]) -> Outcome {
    let figures = per_run(target, name, runs);
    let spread = min_median_max(figures.clone());
    Outcome {
        spread,
        runs_met: figures.iter().filter(|f| target.bound.holds(**f)).count(),
        runs_measured: figures.len(),
        met: spread.map(|(_, median, _)| target.bound.holds(median)),
    }
}

/// `v` as a figure of its comparison, without the unit.
fn number(compare: Compare, v: f64) -> String {
    match compare {
        Compare::Ratio => format!("{v:.2}"),
        Compare::Difference => format!("{v:+.1}"),
    }
}

/// `v` in the target's unit.
fn shown(compare: Compare, v: f64) -> String {
    match compare {
        Compare::Ratio => format!("{}x", number(compare, v)),
        Compare::Difference => format!("{} µs", number(compare, v)),
    }
}

/// The peer row, or which of the peer rows counts.
fn against(target: &Target) -> String {
    match (target.peers, target.compare, target.best) {
        ([one], Compare::Difference, _) => format!("minus `{one}`"),
        ([one], Compare::Ratio, _) => format!("÷ `{one}`"),
        (many, _, Best::Lowest) => format!("÷ the lowest of `{}`", many.join("`, `")),
        (many, _, Best::Highest) => format!("÷ the highest of `{}`", many.join("`, `")),
    }
}

/// Prints the targets table: one line per target and `scd` row of its area.
pub fn print(runs: &[Run]) {
    println!("\n### Issue 19's targets, from the rows above ({} runs: median (min–max) of each run's own figure)\n", runs.len());
    println!("| target | scd row | against | measured | target | runs met | verdict |");
    println!("|---|---|---|---|---|---|---|");
    let Some(first) = runs.first() else { return };
    for target in TARGETS {
        let scd_rows = first
            .iter()
            .filter(|(area, name, _)| *area == target.area && name.starts_with("scd"));
        for (_, name, _) in scd_rows {
            let outcome = judge(target, name, runs);
            let measured = outcome.spread.map_or("–".into(), |(min, median, max)| {
                format!(
                    "{} ({}–{})",
                    shown(target.compare, median),
                    number(target.compare, min),
                    number(target.compare, max)
                )
            });
            let bound = match target.bound {
                Bound::AtMost(b) => format!("≤ {}", shown(target.compare, b)),
                Bound::AtLeast(b) => format!("≥ {}", shown(target.compare, b)),
            };
            let verdict = match outcome.met {
                Some(true) => "met",
                Some(false) => "not met",
                None => "not measured",
            };
            println!(
                "| {} | {name} | {} | {measured} | {bound} | {}/{} | {verdict} |",
                target.what,
                against(target),
                outcome.runs_met,
                outcome.runs_measured,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        area: &'static str,
        name: &str,
        p50: Option<f64>,
        pps: Option<f64>,
    ) -> (&'static str, String, Sample) {
        let sample = Sample {
            p50_us: p50,
            pps,
            ..Sample::default()
        };
        (area, name.to_string(), sample)
    }

    fn target(what: &str) -> &'static Target {
        TARGETS.iter().find(|t| t.what == what).expect("a target")
    }

    #[test]
    fn a_latency_ratio_is_against_the_lowest_peer_of_the_same_run() {
        let runs = vec![
            vec![
                row(TUNNEL, "scd", Some(40.0), None),
                row(TUNNEL, WIREGUARD_GO, Some(200.0), None),
                row(TUNNEL, BORINGTUN, Some(100.0), None),
            ],
            vec![
                row(TUNNEL, "scd", Some(90.0), None),
                row(TUNNEL, WIREGUARD_GO, Some(300.0), None),
                row(TUNNEL, BORINGTUN, None, None),
            ],
        ];
        let t = target("tunnel, idle RTT p50 (ping)");
        // 40 / 100 in the first run; 90 / 300 in the second (boringtun failed).
        assert_eq!(per_run(t, "scd", &runs), vec![0.4, 0.3]);
    }

    #[test]
    fn a_rate_ratio_is_against_the_highest_peer_and_pairs_runs_by_index() {
        let runs = vec![
            vec![
                row(SWITCHING, "scd", None, Some(120.0)),
                row(SWITCHING, OVS, None, Some(100.0)),
                row(SWITCHING, OVS_TSO, None, Some(80.0)),
            ],
            vec![
                row(SWITCHING, "scd", None, Some(30.0)),
                row(SWITCHING, OVS, None, Some(20.0)),
                row(SWITCHING, OVS_TSO, None, Some(60.0)),
            ],
        ];
        let t = target("switching, 64 B read by iperf3");
        // Run 1: 120 / 100; run 2: 30 / 60. Never 120 / 60 or 30 / 100.
        assert_eq!(per_run(t, "scd", &runs), vec![1.2, 0.5]);
    }

    #[test]
    fn a_difference_is_scd_minus_the_bridge_and_a_run_without_scd_is_left_out() {
        let runs = vec![
            vec![
                row(SWITCHING, "scd", Some(30.0), None),
                row(SWITCHING, BRIDGE, Some(22.0), None),
            ],
            vec![
                row(SWITCHING, "scd", None, None),
                row(SWITCHING, BRIDGE, Some(20.0), None),
            ],
        ];
        let t = target("switching, idle RTT p50 (ping) added");
        assert_eq!(per_run(t, "scd", &runs), vec![8.0]);
    }

    #[test]
    fn met_is_judged_at_the_median_and_runs_are_counted_one_by_one() {
        let run = |scd: f64| {
            vec![
                row(SWITCHING, "scd", None, Some(scd)),
                row(SWITCHING, OVS, None, Some(100.0)),
            ]
        };
        let t = target("switching, 64 B read by iperf3");
        let runs = vec![run(130.0), run(110.0), run(125.0)];
        assert_eq!(
            judge(t, "scd", &runs),
            Outcome {
                spread: Some((1.1, 1.25, 1.3)),
                runs_met: 2,
                runs_measured: 3,
                met: Some(true),
            }
        );
        let runs = vec![run(130.0), run(110.0), run(115.0)];
        assert_eq!(judge(t, "scd", &runs).met, Some(false));
        assert_eq!(judge(t, "no such row", &runs).met, None);
    }

    #[test]
    fn an_at_most_bound_holds_at_its_value_and_below() {
        assert!(Bound::AtMost(0.5).holds(0.5));
        assert!(Bound::AtMost(0.5).holds(0.1));
        assert!(!Bound::AtMost(0.5).holds(0.51));
        assert!(Bound::AtLeast(1.5).holds(1.5));
        assert!(!Bound::AtLeast(1.5).holds(1.49));
    }
}
