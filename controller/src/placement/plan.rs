//! The decision for every VM: each candidate cloud scored, the hysteresis rules
//! (gain against cost, least improvement, dwell time) and the budgets' verdicts
//! applied, the fleet's budget shared out first when there is one.

use super::budget::{budget_verdict, fleet_shares};
use super::cost::{copy_time_s, expected_latency, forecast, may_use, move_cost, score};
use super::day_ahead::moves_in_window;
use super::decision::{Decision, Why};
use super::site::{candidate_clouds, sites, Snapshot, VmSite};
use crate::measure::Measurements;
use crate::model::EngineConfig;
use crate::model::Inventory;

impl Snapshot {
    /// Plans every VM of `inventory`. A VM may be placed in any cloud that has a host.
    pub fn plan(&self, inventory: &Inventory) -> Vec<Decision> {
        let clouds = candidate_clouds(inventory);
        let now_ms = self
            .now_ms
            .or_else(|| self.measurements.newest_ms())
            .unwrap_or(0);
        let mut vms = sites(inventory, &self.last_moved_ms);
        for vm in &mut vms {
            vm.recent_moves_ms = self
                .recent_moves_ms
                .get(&vm.name)
                .cloned()
                .unwrap_or_default();
        }
        plan(&clouds, &vms, &self.measurements, &self.config, now_ms)
    }
}

/// A candidate cloud with its numbers.
#[derive(Debug, Clone)]
pub(super) struct Scored {
    cloud: String,
    latency_ms: f64,
    score: f64,
    price: f64,
}

/// Plans every VM. `clouds` are all clouds VMs may be placed in; `now_ms` is on
/// the measurements' clock.
pub fn plan(
    clouds: &[String],
    vms: &[VmSite],
    measurements: &Measurements,
    config: &EngineConfig,
    now_ms: u64,
) -> Vec<Decision> {
    let Some(per_vm) = config.max_fleet_migrations_per_vm_day else {
        return vms
            .iter()
            .map(|vm| decide(clouds, vm, measurements, config, now_ms))
            .collect();
    };
    // Whole moves: the budget is a count.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let fleet_max = (per_vm.max(0.0) * vms.len() as f64).floor() as usize;
    let shares = fleet_shares(clouds, vms, measurements, config, now_ms, fleet_max);
    let mut moves: usize = vms.iter().map(|vm| moves_in_window(vm, now_ms).len()).sum();
    vms.iter()
        .zip(shares)
        .map(|(vm, share)| {
            let config = EngineConfig {
                max_migrations_per_day: share,
                ..config.clone()
            };
            let mut d = decide(clouds, vm, measurements, &config, now_ms);
            if d.migrate && d.why != Why::NotAllowed && moves >= fleet_max {
                d.migrate = false;
                d.why = Why::FleetBudgetSpent {
                    moves,
                    max: fleet_max,
                };
            }
            moves += usize::from(d.migrate);
            d
        })
        .collect()
}

pub(super) fn decide(
    clouds: &[String],
    vm: &VmSite,
    m: &Measurements,
    config: &EngineConfig,
    now_ms: u64,
) -> Decision {
    let stay = |why: Why| Decision {
        vm: vm.name.clone(),
        now: vm.cloud.clone(),
        best: vm.cloud.clone(),
        migrate: false,
        latency_now_ms: None,
        latency_best_ms: None,
        gain: 0.0,
        cost: 0.0,
        move_s: 0.0,
        why,
    };
    let traffic = forecast(&vm.name, m, config, now_ms);
    let rate: f64 = traffic.iter().map(|(_, r)| r).sum();
    if rate < config.min_traffic_bytes_per_s {
        return stay(Why::Idle);
    }
    let allowed = |c: &str| may_use(&vm.knobs, c);
    let score_of = |cloud: &str| -> Result<Scored, Why> {
        let latency_ms =
            expected_latency(&traffic, cloud, m, config, now_ms).map_err(|region| {
                Why::Unmeasured {
                    region,
                    cloud: cloud.to_string(),
                }
            })?;
        let (score, price) = score(latency_ms, cloud, &vm.knobs, config);
        Ok(Scored {
            cloud: cloud.to_string(),
            latency_ms,
            score,
            price,
        })
    };
    let current = score_of(&vm.cloud);
    let candidates: Vec<Scored> = clouds
        .iter()
        .filter(|c| allowed(c))
        .filter_map(|c| score_of(c).ok())
        .collect();
    let Some(lowest) = candidates.iter().map(|c| c.score).reduce(f64::min) else {
        return stay(Why::NoCandidate);
    };
    let ties = candidates
        .iter()
        .filter(|c| c.score <= lowest + config.tie_ms);
    let best = match ties.clone().find(|c| c.cloud == vm.cloud) {
        Some(here) => here,
        None => ties
            .min_by(|a, b| {
                (a.price.total_cmp(&b.price))
                    .then(a.latency_ms.total_cmp(&b.latency_ms))
                    .then(a.cloud.cmp(&b.cloud))
            })
            .expect("the lowest score is a candidate's"),
    };
    let mut decision = stay(Why::AlreadyBest);
    decision.best = best.cloud.clone();
    decision.latency_best_ms = Some(best.latency_ms);
    let current = match current {
        Ok(c) => c,
        // Its cloud cannot be scored: without a number to compare, only a cloud it
        // may not use is reason enough to move.
        Err(_) if !allowed(&vm.cloud) => {
            decision.migrate = true;
            decision.why = Why::NotAllowed;
            return decision;
        }
        Err(why) => return stay(why),
    };
    decision.latency_now_ms = Some(current.latency_ms);
    // Its own cloud is allowed whenever it is the best: nothing to move.
    if best.cloud == vm.cloud {
        return decision;
    }
    // The numbers of a move to `target`, and whether the hysteresis lets it happen
    // (`Why::Gain`) or why not.
    let judge = |target: &Scored| {
        let mut d = stay(Why::Gain);
        d.best = target.cloud.clone();
        d.latency_now_ms = Some(current.latency_ms);
        d.latency_best_ms = Some(target.latency_ms);
        let copy_s = copy_time_s(vm, &vm.cloud, &target.cloud, m, config, now_ms);
        d.move_s = copy_s + config.downtime_s;
        let improvement = current.score - target.score;
        // ms × bytes/s × s = ms·bytes; shown as ms·GB.
        d.gain = improvement.max(0.0) * rate * (config.horizon_s - d.move_s).max(0.0) / 1e9;
        d.cost = move_cost(rate, copy_s, config) / 1e9;
        let needed_ms = config
            .min_improvement_ms
            .max(config.min_improvement_ratio * current.score);
        if improvement < needed_ms {
            d.why = Why::SmallImprovement {
                improvement_ms: improvement,
                needed_ms,
            };
        } else if d.move_s >= config.horizon_s {
            d.why = Why::MoveTooLong { move_s: d.move_s };
        } else if d.gain <= d.cost * (1.0 + config.gain_margin) {
            d.why = Why::CostExceedsGain;
        }
        d
    };
    let mut decision = judge(best);
    if !allowed(&vm.cloud) {
        decision.migrate = true;
        decision.why = Why::NotAllowed;
        return decision;
    }
    if let Some(moved) = vm.last_moved_ms {
        let since_s = now_ms.saturating_sub(moved) as f64 / 1000.0;
        if since_s < config.min_dwell_s {
            decision.why = Why::Dwell {
                since_s,
                min_s: config.min_dwell_s,
            };
            return decision;
        }
    }
    if decision.why != Why::Gain {
        return decision;
    }
    if let Some(max) = config.max_migrations_per_day {
        let scored: Vec<&str> = candidates.iter().map(|c| c.cloud.as_str()).collect();
        let verdict = budget_verdict(vm, &best.cloud, &scored, m, config, now_ms, max);
        // The day ahead may be served best by a cloud that is not the best right
        // now (one between two regions' daytimes, skipping a phase): it goes there
        // if the hysteresis agrees it is a clear improvement now.
        if let Some(elsewhere) = verdict
            .elsewhere
            .and_then(|cloud| candidates.iter().find(|c| c.cloud == cloud))
        {
            let mut instead = judge(elsewhere);
            if instead.why == Why::Gain {
                instead.migrate = true;
                instead.why = Why::BudgetPlan {
                    instead_of: best.cloud.clone(),
                };
                return instead;
            }
        }
        if let Some(why) = verdict.hold {
            decision.why = why;
            return decision;
        }
    }
    decision.migrate = true;
    decision
}
