//! The day ahead as the migration budget sees it: the budget's 24-hour window,
//! the moves in it, and a small dynamic program over the day's slots (forecast
//! from the same slots a season ago) giving the least cost of each first step.

use super::cost::{copy_time_s, move_cost, score, secs_to_ms};
use super::site::VmSite;
use crate::measure::Measurements;
use crate::model::EngineConfig;

/// The window of the migration budget: a day.
pub(super) const BUDGET_WINDOW_MS: u64 = 24 * 3_600_000;

/// Most moves of one VM that fit in the budget's window a dwell time (and a
/// day-ahead slot) apart.
pub(super) fn most_moves_in_a_day(config: &EngineConfig) -> usize {
    let apart = secs_to_ms(config.min_dwell_s)
        .max(secs_to_ms(config.budget_slot_s))
        .max(60_000);
    usize::try_from(BUDGET_WINDOW_MS.div_ceil(apart) + 1).unwrap_or(usize::MAX)
}

/// Arrivals of `vm` within the budget window ending at `now_ms`, oldest first.
pub(super) fn moves_in_window(vm: &VmSite, now_ms: u64) -> Vec<u64> {
    let start = now_ms.checked_sub(BUDGET_WINDOW_MS);
    let mut moves: Vec<u64> = vm
        .recent_moves_ms
        .iter()
        .copied()
        .chain(vm.last_moved_ms)
        .filter(|&t| start.is_none_or(|start| t > start))
        .collect();
    moves.sort_unstable();
    moves.dedup();
    moves
}

/// The least cost of the day ahead (client latency-weighted traffic plus move
/// costs, ms·bytes) for each first step: moving now to one cloud, or staying.
#[derive(Debug)]
pub(super) struct FirstStep<'a> {
    /// `(cloud, cost)` of moving there now, for every other cloud.
    pub(super) moves: Vec<(&'a str, f64)>,
    /// Of staying now.
    pub(super) keep: f64,
}

impl FirstStep<'_> {
    pub(super) fn move_to(&self, cloud: &str) -> f64 {
        self.moves
            .iter()
            .find(|(c, _)| *c == cloud)
            .map_or(f64::INFINITY, |(_, cost)| *cost)
    }

    pub(super) fn best_move(&self) -> Option<(&str, f64)> {
        self.moves
            .iter()
            .copied()
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }
}

/// The day ahead as the budget sees it: slot by slot, what serving the VM's clients
/// from each cloud costs, forecast from the same slots a season ago.
#[derive(Debug)]
pub(super) struct DayAhead {
    /// When the first slot starts, ms.
    start_ms: u64,
    slot_ms: u64,
    clouds: Vec<String>,
    /// `[from][to]`: seconds to copy the VM between two clouds.
    copy_s: Vec<Vec<f64>>,
    /// `[slot][cloud]`: score × traffic over the slot, ms·bytes.
    served: Vec<Vec<f64>>,
    /// `[slot]`: total traffic, bytes per second (what a move in the slot stalls).
    rate: Vec<f64>,
}

impl DayAhead {
    /// The forecast over the budget window from `now_ms`, or `None` without a season
    /// of history. A slot's traffic from a region is the median rate over the same
    /// slot a season (or as many seasons as it takes to be past) ago: medians, so a
    /// flash crowd of that day is not forecast. Clouds with a region whose latency
    /// to them was never measured are left out.
    pub(super) fn forecast(
        vm: &VmSite,
        clouds: &[&str],
        m: &Measurements,
        config: &EngineConfig,
        now_ms: u64,
    ) -> Option<DayAhead> {
        let period = secs_to_ms(config.seasonal_period_s);
        let slot_ms = secs_to_ms(config.budget_slot_s).max(60_000);
        let season_ago = now_ms.checked_sub(period).filter(|_| period > 0)?;
        let series: Vec<(&str, &crate::measure::Series)> = m.traffic_of(&vm.name).collect();
        if !series
            .iter()
            .any(|(_, s)| s.window(0, season_ago).next().is_some())
        {
            return None;
        }
        let window = secs_to_ms(config.latency_window_s);
        let latencies: Vec<(String, Vec<f64>)> = clouds
            .iter()
            .filter_map(|cloud| {
                let row = series
                    .iter()
                    .map(
                        |(region, _)| match m.latency_between(region, cloud, now_ms, window) {
                            Some(l) => Some(l),
                            None if region == cloud => Some(0.0),
                            None => None,
                        },
                    )
                    .collect::<Option<Vec<f64>>>()?;
                Some((cloud.to_string(), row))
            })
            .collect();
        let slots = BUDGET_WINDOW_MS.div_ceil(slot_ms);
        let (mut served, mut rate) = (Vec::new(), Vec::new());
        for k in 0..slots {
            let ahead = k * slot_ms;
            let seasons = ahead.div_ceil(period).max(1);
            let then = (now_ms + ahead).checked_sub(seasons.saturating_mul(period))?;
            let rates: Vec<f64> = series
                .iter()
                .map(|(_, s)| {
                    s.quantile(0.5, then, then + slot_ms - 1)
                        .unwrap_or(0.0)
                        .max(0.0)
                })
                .collect();
            let total: f64 = rates.iter().sum();
            let slot_s = slot_ms as f64 / 1000.0;
            served.push(
                latencies
                    .iter()
                    .map(|(cloud, row)| {
                        let latency = if total > 0.0 {
                            rates.iter().zip(row).map(|(r, l)| r * l).sum::<f64>() / total
                        } else {
                            0.0
                        };
                        score(latency, cloud, &vm.knobs, config).0 * total * slot_s
                    })
                    .collect(),
            );
            rate.push(total);
        }
        let clouds: Vec<String> = latencies.into_iter().map(|(c, _)| c).collect();
        let copy_s = clouds
            .iter()
            .map(|a| {
                clouds
                    .iter()
                    .map(|b| copy_time_s(vm, a, b, m, config, now_ms))
                    .collect()
            })
            .collect();
        Some(DayAhead {
            start_ms: now_ms,
            slot_ms,
            clouds,
            copy_s,
            served,
            rate,
        })
    }

    /// The least cost of the day ahead from the VM's cloud `from` for each first
    /// step: moving now to another cloud, or staying now (its dwell time since its
    /// last move is over). After it, it may move, a dwell time apart, as often as
    /// `budget` allows if given: `(past, max)`, its arrivals within the last window
    /// and the most moves in any window (a later slot has the room past moves leave
    /// as they age out). `None` when `from` is not in the forecast.
    pub(super) fn plan_now(
        &self,
        from: &str,
        budget: Option<(&[u64], u32)>,
        config: &EngineConfig,
    ) -> Option<FirstStep<'_>> {
        let from = self.clouds.iter().position(|c| c == from)?;
        let n = self.clouds.len();
        let slots = self.served.len();
        // Slots a move must wait after the one before; a state counts the slots
        // since the last move up to that.
        let dwell = usize::try_from(secs_to_ms(config.min_dwell_s).div_ceil(self.slot_ms))
            .unwrap_or(usize::MAX)
            .min(slots);
        let limit = budget.map_or(0, |(_, max)| usize::try_from(max).unwrap_or(usize::MAX));
        // Moves the plan counts, no more than fit in the day a dwell time apart:
        // without a budget one state serves them all.
        let counted = if budget.is_some() {
            limit.min(most_moves_in_a_day(config))
        } else {
            0
        };
        let state =
            |c: usize, j: usize, since: usize| (c * (counted + 1) + j) * (dwell + 1) + since;
        // Whether a move at the start of slot `k`, after `j` moves in the day ahead,
        // stays within the budget: the window ending then holds those, the past
        // moves not yet aged out, and this one.
        let room = |k: usize, j: usize| {
            budget.is_none_or(|(past, _)| {
                let at = self.start_ms + k as u64 * self.slot_ms;
                let past_in_window = past.iter().filter(|&&p| p + BUDGET_WINDOW_MS > at).count();
                j < counted && j + 1 + past_in_window <= limit
            })
        };
        let after_move = |j: usize| if budget.is_some() { j + 1 } else { 0 };
        let move_cost_at =
            |k: usize, c: usize, d: usize| move_cost(self.rate[k], self.copy_s[c][d], config);
        // cost[state(c, j, since)]: least cost from slot k on, in cloud c after j
        // moves, `since` slots after the last; built backwards from the end of the
        // day ahead.
        let mut cost = vec![0.0; n * (counted + 1) * (dwell + 1)];
        for k in (1..slots).rev() {
            let next = cost.clone();
            for c in 0..n {
                for j in 0..=counted {
                    for since in 0..=dwell {
                        let stay = self.served[k][c] + next[state(c, j, (since + 1).min(dwell))];
                        cost[state(c, j, since)] = (0..n)
                            .filter(|&d| d != c && since >= dwell && room(k, j))
                            .map(|d| {
                                move_cost_at(k, c, d)
                                    + self.served[k][d]
                                    + next[state(d, after_move(j), 1.min(dwell))]
                            })
                            .fold(stay, f64::min);
                    }
                }
            }
        }
        let moves = (0..n)
            .filter(|&d| d != from && room(0, 0))
            .map(|d| {
                let cost = move_cost_at(0, from, d)
                    + self.served[0][d]
                    + cost[state(d, after_move(0), 1.min(dwell))];
                (self.clouds[d].as_str(), cost)
            })
            .collect();
        let keep = self.served[0][from] + cost[state(from, 0, dwell)];
        Some(FirstStep { moves, keep })
    }
}
