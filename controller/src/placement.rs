//! The placement engine: which cloud each VM should run in, from measured client
//! traffic and latency ("follow the sun").
//!
//! [`plan`] is a pure function of the VMs' knobs and current clouds, the
//! [`Measurements`], the engine's [`EngineConfig`] and the clock; it returns one
//! [`Decision`] per VM with the numbers and the reason behind it. Applying a decision
//! (the migration procedure) is the caller's business; this module never does I/O.
//!
//! The model, in short (the full text is `docs/placement.md`):
//! - Clients enter the overlay at a cloud (their *region*); the latency they see at
//!   a candidate cloud is the measured latency between the two clouds. A VM's
//!   expected latency at a cloud is the mean over regions weighted by forecast
//!   traffic (exponentially weighted recent rates).
//! - The *score* of a cloud is that latency, floored at the VM's latency target
//!   (being faster than the target is worth nothing), plus an optional price
//!   penalty. Clouds whose scores are within `tie_ms` are equal; the current one wins
//!   a tie, then the cheapest.
//! - A move costs the time to copy RAM and disk over the measured bandwidth plus the
//!   expected downtime. The *gain* is the score difference times the traffic over the
//!   horizon left once the move is done; the *cost* charges the traffic for the
//!   slowdown during the copy and the stall of the downtime. Both are in
//!   latency-weighted traffic (ms × bytes, shown as ms·GB).
//! - Hysteresis: a VM moves only when the gain beats the cost by `gain_margin`, the
//!   score improves by at least `min_improvement_ms` and `min_improvement_ratio`, and
//!   it has stayed `min_dwell_s` since its last move, so it never ping-pongs.
//! - Budget: at most `max_migrations_per_day` moves of one VM, and
//!   `max_fleet_migrations_per_vm_day` × VMs moves of the fleet, in any 24 hours. A
//!   move the rules above allow is made only while the budgets have room, and only
//!   if the day ahead (forecast from the same hours a season ago) is served better
//!   by spending a move now than by keeping it for a later, larger gain: a small
//!   dynamic program over the day's slots, with the budget each slot has left as old
//!   moves leave the window. The same plans share the fleet's budget out among the
//!   VMs (a knapsack), and may send a VM to a cloud between two regions' daytimes
//!   rather than the one best right now.

use crate::inventory::{Inventory, VmPlacement};
use crate::measure::Measurements;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

pub use crate::model::placement::EngineConfig;

/// One VM as the engine sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmSite {
    /// Name.
    pub name: String,
    /// The cloud it runs in now.
    pub cloud: String,
    /// Its knobs from the inventory.
    #[serde(default)]
    pub knobs: VmPlacement,
    /// When it last arrived somewhere by migration (ms, the measurements' clock).
    #[serde(default)]
    pub last_moved_ms: Option<u64>,
    /// When it arrived somewhere by migration over the last day at least (ms, any
    /// order; `last_moved_ms` counts too), for the migration budget.
    #[serde(default)]
    pub recent_moves_ms: Vec<u64>,
}

/// The VMs of an inventory: the cloud of each one's host, its knobs, and when it
/// last moved (from the caller's migration history).
pub fn sites(inventory: &Inventory, last_moved_ms: &BTreeMap<String, u64>) -> Vec<VmSite> {
    inventory
        .vms
        .values()
        .map(|vm| VmSite {
            name: vm.name.clone(),
            cloud: inventory
                .host(&vm.host)
                .map(|h| h.cloud.clone())
                .unwrap_or_default(),
            knobs: inventory
                .placement
                .get(&vm.name)
                .cloned()
                .unwrap_or_default(),
            last_moved_ms: last_moved_ms.get(&vm.name).copied(),
            recent_moves_ms: Vec::new(),
        })
        .collect()
}

/// Everything the engine needs besides the inventory: what the daemon hands it,
/// and what `scc placement plan --measurements FILE` reads (`docs/placement.md`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The clock of the plan, ms on the measurements' clock; default: the newest sample.
    #[serde(default)]
    pub now_ms: Option<u64>,
    /// The measurements.
    #[serde(default)]
    pub measurements: Measurements,
    /// When each VM last arrived somewhere by migration, ms.
    #[serde(default)]
    pub last_moved_ms: BTreeMap<String, u64>,
    /// When each VM arrived somewhere by migration over the last day at least, ms
    /// (for the migration budget; `last_moved_ms` counts too).
    #[serde(default)]
    pub recent_moves_ms: BTreeMap<String, Vec<u64>>,
    /// Engine knobs; missing fields take their defaults.
    #[serde(default)]
    pub config: EngineConfig,
}

/// The clouds a VM may be placed in: every cloud with a host.
pub fn candidate_clouds(inventory: &Inventory) -> Vec<String> {
    inventory
        .clouds
        .keys()
        .filter(|c| inventory.hosts.iter().any(|h| &h.cloud == *c))
        .cloned()
        .collect()
}

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

/// Why the engine decided what it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Why {
    /// Too little traffic to tell where its clients are.
    Idle,
    /// A latency needed to compare clouds was never measured.
    Unmeasured {
        /// Client region.
        region: String,
        /// Cloud.
        cloud: String,
    },
    /// No allowed cloud could be scored.
    NoCandidate,
    /// It already runs in the best cloud (or one as good).
    AlreadyBest,
    /// It moved too recently.
    Dwell {
        /// Seconds since the last move.
        since_s: f64,
        /// Seconds it must stay.
        min_s: f64,
    },
    /// The improvement is smaller than the hysteresis asks.
    SmallImprovement {
        /// Score improvement, ms.
        improvement_ms: f64,
        /// Least improvement worth a move, ms.
        needed_ms: f64,
    },
    /// The move would not finish within the horizon.
    MoveTooLong {
        /// Seconds the move takes.
        move_s: f64,
    },
    /// The gain does not beat the cost by the margin.
    CostExceedsGain,
    /// The fleet used its migration budget: as many moves of all VMs in the last 24
    /// hours as allowed.
    FleetBudgetSpent {
        /// Moves of all VMs in the last 24 hours.
        moves: usize,
        /// The fleet's budget.
        max: usize,
    },
    /// It used its migration budget: as many moves in the last 24 hours as allowed.
    BudgetSpent {
        /// Moves in the last 24 hours.
        moves: u32,
        /// The budget.
        max: u32,
    },
    /// The day ahead (forecast from a season ago) is served better keeping a move
    /// of the budget for later than spending it now.
    BudgetKeptForLater {
        /// Moves in the last 24 hours.
        moves: u32,
        /// The budget.
        max: u32,
        /// How much worse moving now serves the day ahead, ms·GB of client traffic.
        worse_by: f64,
    },
    /// Move: the gain beats the cost by the margin.
    Gain,
    /// Move: its cloud is not one it may use.
    NotAllowed,
    /// Move, to a cloud the present measurements rank below another: the day ahead,
    /// within the migration budget, is served best from there (the gain still beats
    /// the cost by the margin).
    BudgetPlan {
        /// The cloud best right now.
        instead_of: String,
    },
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Idle => write!(f, "idle: too little traffic"),
            Why::Unmeasured { region, cloud } => {
                write!(f, "no latency measured between {region} and {cloud}")
            }
            Why::NoCandidate => write!(f, "no allowed cloud can be scored"),
            Why::AlreadyBest => write!(f, "already in the best cloud"),
            Why::Dwell { since_s, min_s } => write!(
                f,
                "moved {:.0} min ago, stays at least {:.0} min",
                since_s / 60.0,
                min_s / 60.0
            ),
            Why::SmallImprovement {
                improvement_ms,
                needed_ms,
            } => write!(
                f,
                "improves {improvement_ms:.1} ms, hysteresis needs {needed_ms:.1} ms"
            ),
            Why::MoveTooLong { move_s } => {
                write!(f, "the move takes {move_s:.0} s, longer than the horizon")
            }
            Why::CostExceedsGain => write!(f, "gain does not beat cost by the margin"),
            Why::FleetBudgetSpent { moves, max } => {
                write!(f, "the fleet moved {moves} times in 24 h, budget {max}")
            }
            Why::BudgetSpent { moves, max } => {
                write!(f, "moved {moves} times in 24 h, budget {max}")
            }
            Why::BudgetKeptForLater {
                moves,
                max,
                worse_by,
            } => write!(
                f,
                "keeps move {} of {max} in 24 h for later: the day ahead is {worse_by:.3} ms·GB worse moving now",
                moves + 1
            ),
            Why::Gain => write!(f, "migrate: gain beats cost by the margin"),
            Why::NotAllowed => write!(f, "migrate: current cloud is not allowed"),
            Why::BudgetPlan { instead_of } => write!(
                f,
                "migrate: gain beats cost by the margin, and within the budget the day ahead is served best here, not from {instead_of}"
            ),
        }
    }
}

/// The engine's decision for one VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// VM name.
    pub vm: String,
    /// The cloud it runs in now.
    pub now: String,
    /// The best allowed cloud (equal to `now` when it stays for lack of a better one).
    pub best: String,
    /// Whether to migrate to `best`.
    pub migrate: bool,
    /// Expected client latency where it runs, ms (traffic-weighted).
    pub latency_now_ms: Option<f64>,
    /// Expected client latency at `best`, ms.
    pub latency_best_ms: Option<f64>,
    /// Gain of moving over the horizon, ms·GB of client traffic.
    pub gain: f64,
    /// Cost of moving, ms·GB of client traffic.
    pub cost: f64,
    /// Seconds the move takes (copy plus downtime).
    pub move_s: f64,
    /// Why.
    pub why: Why,
}

/// A candidate cloud with its numbers.
#[derive(Debug, Clone)]
struct Scored {
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

/// Each VM's share of a fleet budget of `fleet_max` moves in any 24 hours: the
/// moves it made in the window, plus units of the rest as a knapsack over the VMs'
/// day-ahead plans shares them out (never above its own budget). A VM without a
/// day-ahead forecast gets an even share of the fleet's budget among the VMs
/// that may use more than one cloud: with nothing to tell which VM's moves are
/// worth more, none may take more than its part (the
/// moves of a first day, spent without a forecast, are still in the window the
/// next day, when there is one).
fn fleet_shares(
    clouds: &[String],
    vms: &[VmSite],
    m: &Measurements,
    config: &EngineConfig,
    now_ms: u64,
    fleet_max: usize,
) -> Vec<Option<u32>> {
    let past: Vec<Vec<u64>> = vms.iter().map(|vm| moves_in_window(vm, now_ms)).collect();
    let mut left = fleet_max.saturating_sub(past.iter().map(Vec::len).sum());
    // No more than fit in the day a dwell time apart, whatever the budgets.
    let own_max = |used: usize| {
        let fits = used + left.min(most_moves_in_a_day(config));
        config.max_migrations_per_day.map_or(fits, |max| {
            usize::try_from(max).unwrap_or(usize::MAX).min(fits)
        })
    };
    // The day ahead's least cost for each budget from the moves made to its own
    // budget, or `None` without a forecast.
    let values: Vec<Option<Vec<f64>>> = vms
        .iter()
        .zip(&past)
        .map(|(vm, past)| {
            let allowed: Vec<&str> = clouds
                .iter()
                .map(String::as_str)
                .filter(|c| may_use(&vm.knobs, c))
                .collect();
            let day = DayAhead::forecast(vm, &allowed, m, config, now_ms)?;
            (past.len()..=own_max(past.len()).max(past.len()))
                .map(|budget| {
                    let max = u32::try_from(budget).unwrap_or(u32::MAX);
                    let first = day.plan_now(&vm.cloud, Some((past, max)), config)?;
                    Some(
                        first
                            .best_move()
                            .map_or(first.keep, |(_, c)| c.min(first.keep)),
                    )
                })
                .collect()
        })
        .collect();
    // A knapsack over the VMs: least[b] is the least cost of the VMs so far with b
    // units among them, pick[i][b] the units VM i gets then. Exact, because a VM
    // may need two units before either pays (there and back within the day).
    let mut least = vec![0.0; left + 1];
    let mut pick: Vec<Vec<usize>> = Vec::with_capacity(vms.len());
    for v in &values {
        let options: Vec<f64> = v.clone().unwrap_or_else(|| vec![0.0]);
        let (row, picks): (Vec<f64>, Vec<usize>) = (0..=left)
            .map(|b| {
                options
                    .iter()
                    .enumerate()
                    .take(b + 1)
                    .map(|(units, cost)| (least[b - units] + cost, units))
                    .min_by(|x, y| x.0.total_cmp(&y.0))
                    .unwrap_or((f64::INFINITY, 0))
            })
            .unzip();
        least = row;
        pick.push(picks);
    }
    let mut extra = vec![0usize; vms.len()];
    for (i, picks) in pick.iter().enumerate().rev() {
        extra[i] = picks[left];
        left -= extra[i];
    }
    values
        .iter()
        .zip(&past)
        .zip(extra)
        .map(|((v, past), extra)| match v {
            Some(_) => u32::try_from(past.len() + extra).ok(),
            None => {
                // Shared among the VMs that can move at all: one pinned to a
                // single cloud never uses its part.
                let movable = vms
                    .iter()
                    .filter(|vm| clouds.iter().filter(|c| may_use(&vm.knobs, c)).count() > 1)
                    .count();
                let even = u32::try_from(fleet_max / movable.max(1)).unwrap_or(u32::MAX);
                Some(
                    config
                        .max_migrations_per_day
                        .map_or(even, |max| max.min(even)),
                )
            }
        })
        .collect()
}

/// Forecast mean traffic of one VM over the horizon by region, bytes per second.
///
/// The level is the recent exponentially weighted rate. When the series reaches one
/// season (`seasonal_period_s`, a day) back, the change the season saw next is
/// added: the median over the same horizon a season ago minus the median over the
/// hour before it (additive, so a region asleep a season ago does not multiply
/// noise). Latencies do not change over the horizon, so the mean rate is all the
/// scores need.
fn forecast(vm: &str, m: &Measurements, config: &EngineConfig, now_ms: u64) -> Vec<(String, f64)> {
    let half_life = secs_to_ms(config.traffic_half_life_s);
    let period = secs_to_ms(config.seasonal_period_s);
    let horizon = secs_to_ms(config.horizon_s);
    // An hour at least, and medians: a flash crowd of the day before (minutes
    // long) must not be forecast again.
    let before = (2 * half_life).max(3_600_000);
    m.traffic_of(vm)
        .filter_map(|(region, s)| {
            let level = s.ewma(half_life, now_ms)?;
            let then = now_ms.checked_sub(period).filter(|_| period > 0);
            let seasonal_change = then
                .filter(|then| s.window(0, then.saturating_sub(before)).next().is_some())
                .and_then(|then| {
                    let next = s.quantile(0.5, then, then.saturating_add(horizon))?;
                    Some(next - s.quantile(0.5, then.saturating_sub(before), then)?)
                })
                .unwrap_or(0.0);
            Some((region.to_string(), (level + seasonal_change).max(0.0)))
        })
        .filter(|(_, rate)| *rate > 0.0)
        .collect()
}

fn secs_to_ms(s: f64) -> u64 {
    std::time::Duration::try_from_secs_f64(s.max(0.0)).map_or(u64::MAX, |d| {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    })
}

/// Expected client latency at `cloud`: the traffic-weighted mean over regions; or the
/// region whose latency to it is unknown. Clients inside a cloud see it at 0 ms
/// unless a latency within it was measured.
fn expected_latency(
    traffic: &[(String, f64)],
    cloud: &str,
    m: &Measurements,
    config: &EngineConfig,
    now_ms: u64,
) -> Result<f64, String> {
    let window = secs_to_ms(config.latency_window_s);
    let (mut weighted, mut total) = (0.0, 0.0);
    for (region, rate) in traffic {
        let latency = match m.latency_between(region, cloud, now_ms, window) {
            Some(l) => l,
            None if region == cloud => 0.0,
            None => return Err(region.clone()),
        };
        weighted += rate * latency;
        total += rate;
    }
    Ok(weighted / total)
}

fn decide(
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

/// Whether a VM with these knobs may run in `cloud` (no list: anywhere).
fn may_use(knobs: &VmPlacement, cloud: &str) -> bool {
    knobs.clouds.is_empty() || knobs.clouds.iter().any(|c| c == cloud)
}

/// The score of a cloud where clients see `latency_ms`: the latency floored at the
/// VM's target, plus the price penalty; and the price.
fn score(latency_ms: f64, cloud: &str, knobs: &VmPlacement, config: &EngineConfig) -> (f64, f64) {
    let price = knobs.price_per_hour.get(cloud).copied().unwrap_or(0.0);
    let floor = knobs.latency_target_ms.unwrap_or(0.0);
    (
        latency_ms.max(floor) + config.price_penalty_ms * price,
        price,
    )
}

/// Seconds to copy the VM's RAM and disk from one cloud to another.
fn copy_time_s(
    vm: &VmSite,
    from: &str,
    to: &str,
    m: &Measurements,
    config: &EngineConfig,
    now_ms: u64,
) -> f64 {
    let bandwidth = m
        .bandwidth_between(from, to, now_ms, secs_to_ms(config.bandwidth_window_s))
        .filter(|b| *b > 0.0)
        .unwrap_or(config.default_bandwidth_bytes_per_s);
    let ram = vm.knobs.ram_mib.unwrap_or(config.default_ram_mib) as f64 * 1024.0 * 1024.0;
    let disk = vm.knobs.disk_gib.unwrap_or(0) as f64 * 1024.0 * 1024.0 * 1024.0;
    (ram + disk) / bandwidth
}

/// What a move costs the clients at `rate` bytes per second, ms·bytes: the slowdown
/// while memory is copied and the stall of the downtime.
fn move_cost(rate: f64, copy_s: f64, config: &EngineConfig) -> f64 {
    rate * (copy_s * config.copy_penalty_ms + config.downtime_s * config.downtime_penalty_ms)
}

/// The window of the migration budget: a day.
const BUDGET_WINDOW_MS: u64 = 24 * 3_600_000;

/// Most moves of one VM that fit in the budget's window a dwell time (and a
/// day-ahead slot) apart.
fn most_moves_in_a_day(config: &EngineConfig) -> usize {
    let apart = secs_to_ms(config.min_dwell_s)
        .max(secs_to_ms(config.budget_slot_s))
        .max(60_000);
    usize::try_from(BUDGET_WINDOW_MS.div_ceil(apart) + 1).unwrap_or(usize::MAX)
}

/// Arrivals of `vm` within the budget window ending at `now_ms`, oldest first.
fn moves_in_window(vm: &VmSite, now_ms: u64) -> Vec<u64> {
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

/// What the migration budget says about a move that the other rules allow.
#[derive(Debug, Default)]
struct BudgetVerdict {
    /// The day ahead is served best by moving to this cloud now, not to the best.
    elsewhere: Option<String>,
    /// Why the move to the best cloud is held back, if it is.
    hold: Option<Why>,
}

/// The migration budget's view of a move of `vm` to `best`, a cloud the other rules
/// would move it to: held back when the last 24 hours used the budget up, or when
/// the day ahead is served better keeping a move for later; or better spent on
/// another cloud of `clouds` (the clouds it may move to).
fn budget_verdict(
    vm: &VmSite,
    best: &str,
    clouds: &[&str],
    m: &Measurements,
    config: &EngineConfig,
    now_ms: u64,
    max: u32,
) -> BudgetVerdict {
    let past = moves_in_window(vm, now_ms);
    let moves = u32::try_from(past.len()).unwrap_or(u32::MAX);
    if moves >= max {
        return BudgetVerdict {
            elsewhere: None,
            hold: Some(Why::BudgetSpent { moves, max }),
        };
    }
    // Without a season of history there is no later to keep a move for: the budget
    // is only a cap.
    let Some(day) = DayAhead::forecast(vm, clouds, m, config, now_ms) else {
        return BudgetVerdict::default();
    };
    let (Some(budgeted), Some(free)) = (
        day.plan_now(&vm.cloud, Some((&past, max)), config),
        day.plan_now(&vm.cloud, None, config),
    ) else {
        return BudgetVerdict::default();
    };
    let elsewhere = budgeted
        .best_move()
        .filter(|(cloud, cost)| *cloud != best && *cost < budgeted.keep)
        .map(|(cloud, _)| cloud.to_string());
    // Held back only for the budget's sake: the day ahead must be served better
    // keeping the move, and by more than it would be without a budget (where a
    // difference is only the forecast's view of the best time to move, which the
    // present measurements judge better).
    let worse_by = budgeted.move_to(best) - budgeted.keep;
    let hold = (worse_by > 0.0 && worse_by > free.move_to(best) - free.keep).then(|| {
        Why::BudgetKeptForLater {
            moves,
            max,
            worse_by: worse_by / 1e9,
        }
    });
    BudgetVerdict { elsewhere, hold }
}

/// The least cost of the day ahead (client latency-weighted traffic plus move
/// costs, ms·bytes) for each first step: moving now to one cloud, or staying.
#[derive(Debug)]
struct FirstStep<'a> {
    /// `(cloud, cost)` of moving there now, for every other cloud.
    moves: Vec<(&'a str, f64)>,
    /// Of staying now.
    keep: f64,
}

impl FirstStep<'_> {
    fn move_to(&self, cloud: &str) -> f64 {
        self.moves
            .iter()
            .find(|(c, _)| *c == cloud)
            .map_or(f64::INFINITY, |(_, cost)| *cost)
    }

    fn best_move(&self) -> Option<(&str, f64)> {
        self.moves
            .iter()
            .copied()
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }
}

/// The day ahead as the budget sees it: slot by slot, what serving the VM's clients
/// from each cloud costs, forecast from the same slots a season ago.
#[derive(Debug)]
struct DayAhead {
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
    fn forecast(
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
    fn plan_now(
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIN: u64 = 60_000;
    const CLOUDS: [&str; 3] = ["americas", "europe", "asia"];
    /// One-way latency between the test clouds, ms.
    const LATENCY: [[f64; 3]; 3] = [[0.0, 80.0, 150.0], [80.0, 0.0, 150.0], [150.0, 150.0, 0.0]];

    fn clouds() -> Vec<String> {
        CLOUDS.iter().map(|c| c.to_string()).collect()
    }

    fn site(cloud: &str) -> VmSite {
        VmSite {
            name: "vm".into(),
            cloud: cloud.into(),
            knobs: VmPlacement::default(),
            last_moved_ms: None,
            recent_moves_ms: Vec::new(),
        }
    }

    /// Records one minute of measurements: latency probes and traffic rates by region.
    fn record_minute(m: &mut Measurements, t_ms: u64, traffic: [f64; 3]) {
        for (i, a) in CLOUDS.iter().enumerate() {
            for (j, b) in CLOUDS.iter().enumerate() {
                m.record_latency(a, b, t_ms, LATENCY[i][j]);
            }
            m.record_traffic_rate("vm", a, t_ms, traffic[i]);
        }
    }

    fn steady(traffic: [f64; 3], minutes: u64) -> Measurements {
        let mut m = Measurements::new(256);
        for minute in 0..minutes {
            record_minute(&mut m, minute * MIN, traffic);
        }
        m
    }

    fn decide_one(vm: &VmSite, m: &Measurements, now_ms: u64) -> Decision {
        plan(
            &clouds(),
            std::slice::from_ref(vm),
            m,
            &EngineConfig::default(),
            now_ms,
        )
        .remove(0)
    }

    #[test]
    fn moves_to_where_the_clients_are() {
        let m = steady([1e5, 1e6, 1e5], 60);
        let d = decide_one(&site("americas"), &m, 59 * MIN);
        assert!(d.migrate, "{d:?}");
        assert_eq!((d.best.as_str(), &d.why), ("europe", &Why::Gain));
        let expected_at_eu = (1e5 * 80.0 + 1e5 * 150.0) / 1.2e6;
        assert!((d.latency_best_ms.unwrap() - expected_at_eu).abs() < 1e-9);
        assert!(d.gain > d.cost * 2.0, "{d:?}");
        let table = table(&[d]);
        assert!(table.contains("| vm | americas | europe |"), "{table}");
        assert!(table.contains("migrate: gain beats cost"), "{table}");
    }

    #[test]
    fn stays_when_already_best_or_idle() {
        let m = steady([1e6, 1e5, 1e5], 60);
        assert_eq!(
            decide_one(&site("americas"), &m, 59 * MIN).why,
            Why::AlreadyBest
        );
        let idle = steady([0.0, 0.0, 0.0], 60);
        assert_eq!(decide_one(&site("asia"), &idle, 59 * MIN).why, Why::Idle);
    }

    #[test]
    fn respects_dwell_time_and_allowed_clouds() {
        let m = steady([1e5, 1e6, 1e5], 60);
        let mut vm = site("americas");
        vm.last_moved_ms = Some(30 * MIN);
        let d = decide_one(&vm, &m, 59 * MIN);
        assert!(!d.migrate);
        assert!(matches!(d.why, Why::Dwell { .. }), "{d:?}");
        let mut vm = site("americas");
        vm.knobs.clouds = vec!["americas".into(), "asia".into()];
        let d = decide_one(&vm, &m, 59 * MIN);
        assert!(!d.migrate && d.best == "americas", "{d:?}");
        // A VM in a cloud it may not use moves, dwell or not.
        let mut vm = site("europe");
        vm.knobs.clouds = vec!["asia".into()];
        vm.last_moved_ms = Some(58 * MIN);
        let d = decide_one(&vm, &m, 59 * MIN);
        assert!(
            d.migrate && d.best == "asia" && d.why == Why::NotAllowed,
            "{d:?}"
        );
    }

    #[test]
    fn a_latency_target_makes_faster_clouds_worth_nothing() {
        // At am: (1e6·80 + 1e5·150) / 1.2e6 ≈ 79 ms; at eu: ≈ 19 ms.
        let m = steady([1e5, 1e6, 1e5], 60);
        let mut vm = site("americas");
        vm.knobs.latency_target_ms = Some(100.0);
        let d = decide_one(&vm, &m, 59 * MIN);
        assert!(!d.migrate && d.why == Why::AlreadyBest, "{d:?}");
        vm.knobs.latency_target_ms = Some(50.0);
        let d = decide_one(&vm, &m, 59 * MIN);
        assert!(d.migrate && d.best == "europe", "{d:?}");
    }

    #[test]
    fn price_breaks_ties_and_can_be_a_penalty() {
        // Equal traffic from am and eu, none from as: am and eu score the same.
        let m = steady([1e6, 1e6, 0.0], 60);
        let mut vm = site("asia");
        vm.knobs.price_per_hour =
            [("americas".to_string(), 0.2), ("europe".to_string(), 0.1)].into();
        let d = decide_one(&vm, &m, 59 * MIN);
        assert!(d.migrate && d.best == "europe", "{d:?}");
        // In a tie the VM stays where it is, even if the other cloud is cheaper.
        let d = decide_one(
            &VmSite {
                cloud: "americas".into(),
                ..vm.clone()
            },
            &m,
            59 * MIN,
        );
        assert!(!d.migrate && d.best == "americas", "{d:?}");
        // A penalty of 2000 ms per unit of price makes as (free) the best score:
        // am 40 + 400, eu 40 + 200, as 150 + 0.
        let config = EngineConfig {
            price_penalty_ms: 2000.0,
            ..EngineConfig::default()
        };
        let d = plan(&clouds(), &[vm], &m, &config, 59 * MIN).remove(0);
        assert!(!d.migrate && d.best == "asia", "{d:?}");
    }

    #[test]
    fn a_long_move_is_not_worth_it() {
        let mut m = steady([1e5, 1e6, 1e5], 60);
        m.record_bandwidth("americas", "europe", 0, 1e3);
        let mut vm = site("americas");
        vm.knobs.disk_gib = Some(100);
        let d = decide_one(&vm, &m, 59 * MIN);
        assert!(
            !d.migrate && matches!(d.why, Why::MoveTooLong { .. }),
            "{d:?}"
        );
        // Without the disk, at the same bandwidth the copy is cheap enough only
        // with a low enough RAM.
        vm.knobs.disk_gib = None;
        vm.knobs.ram_mib = Some(1);
        let d = decide_one(&vm, &m, 59 * MIN);
        assert!(d.migrate, "{d:?}");
    }

    #[test]
    fn a_day_of_history_lets_it_move_ahead_of_a_daily_shift() {
        // Every day the load turns from Americas to Europe at 10:00.
        let mut m = Measurements::new(4096);
        let now = 24 * 60 + 9 * 60 + 30;
        for minute in 0..=now {
            let traffic = if minute % (24 * 60) < 10 * 60 {
                [1e6, 1e5, 0.0]
            } else {
                [1e5, 1e6, 0.0]
            };
            record_minute(&mut m, minute * MIN, traffic);
        }
        // Half an hour before the turn, the day before says most of the next two
        // hours belongs to Europe.
        let d = decide_one(&site("americas"), &m, now * MIN);
        assert!(d.migrate && d.best == "europe", "{d:?}");
        // Without the seasonal forecast only the present counts.
        let config = EngineConfig {
            seasonal_period_s: 0.0,
            ..EngineConfig::default()
        };
        let d = plan(&clouds(), &[site("americas")], &m, &config, now * MIN).remove(0);
        assert_eq!(d.why, Why::AlreadyBest);
    }

    /// Every day: Americas until 09:30, Europe until 12:30, then Asia for 14 hours.
    fn americas_europe_asia(minute_of_day: u64) -> [f64; 3] {
        match minute_of_day {
            570..750 => [1e5, 1e6, 1e5],
            150..570 => [1e6, 1e5, 1e5],
            _ => [1e5, 1e5, 1e6],
        }
    }

    #[test]
    fn the_budget_keeps_a_move_for_the_larger_gain_later_in_the_day() {
        // 10:00 on the second day; the VM arrived in the Americas an hour ago, so a
        // budget of 2 leaves one move until tomorrow 09:00.
        let now = 24 * 60 + 10 * 60;
        let mut m = Measurements::new(4096);
        for minute in 0..=now {
            record_minute(
                &mut m,
                minute * MIN,
                americas_europe_asia(minute % (24 * 60)),
            );
        }
        let mut vm = site("americas");
        vm.last_moved_ms = Some((now - 60) * MIN);
        let config = |max| EngineConfig {
            min_dwell_s: 1800.0,
            max_migrations_per_day: max,
            max_fleet_migrations_per_vm_day: None,
            ..EngineConfig::default()
        };
        let decide = |vm: &VmSite, max| {
            plan(
                &clouds(),
                std::slice::from_ref(vm),
                &m,
                &config(max),
                now * MIN,
            )
            .remove(0)
        };
        // Without a budget it follows Europe's short phase.
        let free = decide(&vm, None);
        assert!(free.migrate && free.best == "europe", "{free:?}");
        // With one move left it waits for Asia's long phase: Europe's clients see
        // 80 ms for 2.5 hours, instead of Asia's 150 ms for 14.
        let kept = decide(&vm, Some(2));
        assert!(!kept.migrate && kept.best == "europe", "{kept:?}");
        let Why::BudgetKeptForLater {
            moves: 1,
            max: 2,
            worse_by,
        } = kept.why
        else {
            panic!("{kept:?}");
        };
        assert!(worse_by > 0.0, "{kept:?}");
        // A budget of 3 is not room enough either: the daily cycle needs 3 moves, and
        // with the one of 09:00 a move now would be the fourth within 24 hours by the
        // return to the Americas at 02:30. With 4 it follows Europe now.
        assert!(matches!(
            decide(&vm, Some(3)).why,
            Why::BudgetKeptForLater { .. }
        ));
        assert_eq!(decide(&vm, Some(4)).why, Why::Gain);
        // With no room at all, it says so.
        vm.recent_moves_ms = vec![(now - 600) * MIN];
        let spent = decide(&vm, Some(2));
        assert_eq!(spent.why, Why::BudgetSpent { moves: 2, max: 2 });
        assert!(spent.why.to_string().contains("budget 2"), "{spent:?}");
    }

    #[test]
    fn the_fleet_budget_goes_to_the_vm_that_gains_most() {
        // Two VMs whose clients turn from the Americas to Europe at 10:00 every
        // day, one with ten times the other's traffic; the fleet may move once.
        let now = 24 * 60 + 10 * 60 + 30;
        let mut m = Measurements::new(4096);
        for minute in 0..=now {
            let t = minute * MIN;
            let europe = minute % (24 * 60) >= 10 * 60;
            for (i, a) in CLOUDS.iter().enumerate() {
                for (j, b) in CLOUDS.iter().enumerate() {
                    m.record_latency(a, b, t, LATENCY[i][j]);
                }
            }
            for (vm, scale) in [("small", 1e5), ("big", 1e6)] {
                let (am, eu) = if europe { (0.1, 1.0) } else { (1.0, 0.1) };
                m.record_traffic_rate(vm, "americas", t, am * scale);
                m.record_traffic_rate(vm, "europe", t, eu * scale);
            }
        }
        let vms = ["small", "big"].map(|name| VmSite {
            name: name.into(),
            ..site("americas")
        });
        let config = EngineConfig {
            max_fleet_migrations_per_vm_day: Some(0.5),
            ..EngineConfig::default()
        };
        let decisions = plan(&clouds(), &vms, &m, &config, now * MIN);
        let (small, big) = (&decisions[0], &decisions[1]);
        assert!(big.migrate && big.best == "europe", "{big:?}");
        assert!(!small.migrate, "{small:?}");
        assert_eq!(small.why, Why::BudgetSpent { moves: 0, max: 0 });
        // Without the fleet budget both move.
        let free = EngineConfig {
            max_fleet_migrations_per_vm_day: None,
            ..config
        };
        assert!(plan(&clouds(), &vms, &m, &free, now * MIN)
            .iter()
            .all(|d| d.migrate));
    }

    #[test]
    fn without_history_the_fleet_budget_is_shared_by_the_vms_that_can_move() {
        // Two moves of one VM without a day-ago forecast: europe, then asia.
        let now = 4 * 60 * MIN;
        let mut m = Measurements::new(4096);
        for minute in 0..=30 {
            record_minute(&mut m, now - 30 * MIN + minute * MIN, [0.0, 1e6, 0.0]);
        }
        let pinned = |name: &str| VmSite {
            name: name.into(),
            knobs: VmPlacement {
                clouds: vec!["americas".into()],
                ..VmPlacement::default()
            },
            ..site("americas")
        };
        // A fleet of three at 1 move per VM and day: 3 moves. With the two others
        // pinned to their cloud, the one that can move may take all three (up to
        // its own budget of 3), not a third.
        let config = EngineConfig {
            max_fleet_migrations_per_vm_day: Some(1.0),
            seasonal_period_s: 0.0,
            ..EngineConfig::default()
        };
        let moved_once = VmSite {
            last_moved_ms: Some(0),
            recent_moves_ms: vec![0],
            ..site("americas")
        };
        let fleet = [moved_once, pinned("a"), pinned("b")];
        let d = plan(&clouds(), &fleet, &m, &config, now);
        assert!(d[0].migrate && d[0].best == "europe", "{:?}", d[0]);
        // Three VMs that could all move: one move each, the first is spent.
        let movable = |name: &str| VmSite {
            name: name.into(),
            ..site("americas")
        };
        let free = [fleet[0].clone(), movable("a"), movable("b")];
        let d = plan(&clouds(), &free, &m, &config, now);
        assert!(!d[0].migrate, "{:?}", d[0]);
        assert_eq!(d[0].why, Why::BudgetSpent { moves: 1, max: 1 });
    }

    #[test]
    fn an_unmeasured_latency_is_said() {
        let mut m = Measurements::new(16);
        m.record_traffic_rate("vm", "americas", 0, 1e6);
        m.record_traffic_rate("vm", "europe", 0, 1e6);
        let d = decide_one(&site("americas"), &m, 0);
        assert_eq!(
            d.why,
            Why::NoCandidate,
            "no cloud can be scored without americas↔europe"
        );
        m.record_latency("americas", "europe", 0, 80.0);
        let d = decide_one(&site("americas"), &m, 0);
        assert!(d.latency_now_ms == Some(40.0) && !d.migrate, "{d:?}");
    }

    #[test]
    fn the_documented_snapshot_plans_the_documented_inventory() {
        let inventory = Inventory::parse(
            include_str!("../../docs/examples/inventory.toml"),
            "inventory.toml",
        )
        .unwrap();
        let snapshot: Snapshot =
            serde_json::from_str(include_str!("../../docs/examples/placement-snapshot.json"))
                .unwrap();
        let decisions = snapshot.plan(&inventory);
        let by_vm = |vm: &str| decisions.iter().find(|d| d.vm == vm).unwrap();
        let web1 = by_vm("web1");
        assert!(web1.migrate && web1.best == "gcp-europe", "{web1:?}");
        assert_eq!(by_vm("db1").why, Why::AlreadyBest);
        assert_eq!(by_vm("batch1").why, Why::Idle);
        // The bandwidth measured a day earlier still prices the copy: 1 GiB at 60 MB/s.
        assert!((web1.move_s - (1024.0 * 1024.0 * 1024.0 / 6e7 + 0.3)).abs() < 1e-6);
    }

    /// Runs the engine every 5 minutes over a load given per minute, applying its
    /// decisions at once; returns the minutes at which the VM moved and where to.
    fn run(start: &str, load: &[[f64; 3]], config: &EngineConfig) -> Vec<(u64, String)> {
        let mut m = Measurements::new(load.len().max(512));
        let mut vm = site(start);
        let mut moves = Vec::new();
        for (minute, traffic) in load.iter().enumerate() {
            let t = minute as u64 * MIN;
            record_minute(&mut m, t, *traffic);
            if minute % 5 == 4 {
                let d = plan(&clouds(), std::slice::from_ref(&vm), &m, config, t).remove(0);
                if d.migrate {
                    vm.cloud = d.best.clone();
                    vm.last_moved_ms = Some(t);
                    vm.recent_moves_ms.push(t);
                    moves.push((minute as u64, d.best));
                }
            }
        }
        moves
    }

    fn noisy_load(base: [f64; 3], noise: &[f64]) -> Vec<[f64; 3]> {
        noise
            .chunks(3)
            .map(|n| [base[0] * n[0], base[1] * n[1], base[2] * n[2]])
            .collect()
    }

    proptest! {
        #[test]
        fn never_proposes_a_cloud_it_may_not_use(
            allowed in prop::sample::subsequence(CLOUDS.to_vec(), 1..=3),
            start in prop::sample::select(CLOUDS.to_vec()),
            traffic in prop::array::uniform3(0.0f64..1e6),
            target in prop::option::of(0.0f64..200.0),
        ) {
            let m = steady(traffic, 30);
            let mut vm = site(start);
            vm.knobs.clouds = allowed.iter().map(|c| c.to_string()).collect();
            vm.knobs.latency_target_ms = target;
            let d = decide_one(&vm, &m, 29 * MIN);
            if d.migrate {
                prop_assert!(allowed.contains(&d.best.as_str()), "{d:?}");
            }
        }

        #[test]
        fn never_moves_again_within_the_dwell_time(
            start in prop::sample::select(CLOUDS.to_vec()),
            // Four phases of random load, each 30 to 120 minutes.
            phases in prop::collection::vec((prop::array::uniform3(0.0f64..1e6), 30usize..120), 4),
        ) {
            let load: Vec<[f64; 3]> = phases
                .iter()
                .flat_map(|(traffic, minutes)| std::iter::repeat_n(*traffic, *minutes))
                .collect();
            let moves = run(start, &load, &EngineConfig::default());
            let dwell_min = EngineConfig::default().min_dwell_s / 60.0;
            for pair in moves.windows(2) {
                prop_assert!((pair[1].0 - pair[0].0) as f64 >= dwell_min, "{moves:?}");
            }
        }

        #[test]
        fn a_stable_load_gives_no_migration_from_its_best_cloud(
            base in prop::array::uniform3(1e3f64..1e6),
            noise in prop::collection::vec(0.8f64..1.2, 3 * 360),
        ) {
            let load = noisy_load(base, &noise);
            // Where the steady load is best served.
            let best = (0..3)
                .min_by(|&a, &b| {
                    let at = |c: usize| (0..3).map(|r| base[r] * LATENCY[r][c]).sum::<f64>();
                    at(a).total_cmp(&at(b))
                })
                .unwrap();
            let moves = run(CLOUDS[best], &load, &EngineConfig::default());
            // Noise may make a near-tie look better for a while, but hysteresis must
            // keep a VM where it is unless a move is clearly worth it.
            let at = |c: usize| (0..3).map(|r| base[r] * LATENCY[r][c]).sum::<f64>() / base.iter().sum::<f64>();
            let clear = (0..3).filter(|&c| c != best).all(|c| at(c) - at(best) > 0.25 * at(best) + 5.0);
            if clear {
                prop_assert!(moves.is_empty(), "{moves:?}");
            }
            // From anywhere, a stable load settles: at most one move.
            let from_elsewhere = run(CLOUDS[(best + 1) % 3], &load, &EngineConfig::default());
            if clear {
                prop_assert!(from_elsewhere.len() <= 1, "{from_elsewhere:?}");
            }
        }
    }

    proptest! {
        // A case runs the engine over up to three days of load: fewer cases.
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn never_moves_more_than_the_budget_in_any_day(
            start in prop::sample::select(CLOUDS.to_vec()),
            max in 1u32..=3,
            // Phases of random load, 30 minutes to 4 hours each: 8 to 64 hours.
            phases in prop::collection::vec((prop::array::uniform3(0.0f64..1e6), 30usize..240), 16),
            daily in any::<bool>(),
        ) {
            let mut load: Vec<[f64; 3]> = phases
                .iter()
                .flat_map(|(traffic, minutes)| std::iter::repeat_n(*traffic, *minutes))
                .collect();
            // Half the cases repeat their first day, so the day-ahead plan has a season.
            if daily && load.len() > 24 * 60 {
                load = (0..load.len()).map(|minute| load[minute % (24 * 60)]).collect();
            }
            // An eager engine, so the budget is what stops it.
            let config = EngineConfig {
                min_dwell_s: 1800.0,
                min_improvement_ratio: 0.0,
                gain_margin: 0.0,
                max_migrations_per_day: Some(max),
                max_fleet_migrations_per_vm_day: None,
                ..EngineConfig::default()
            };
            let moves = run(start, &load, &config);
            for (i, (at, _)) in moves.iter().enumerate() {
                let in_day = moves[..=i].iter().filter(|(t, _)| t + 24 * 60 > *at).count();
                prop_assert!(in_day <= max as usize, "{moves:?}");
            }
        }

        #[test]
        fn the_fleet_never_moves_more_than_its_budget_in_any_day(
            starts in prop::collection::vec(prop::sample::select(CLOUDS.to_vec()), 3),
            per_vm in 0.4f64..2.0,
            // Each VM's load: phases of 30 minutes to 4 hours, repeated daily.
            phases in prop::collection::vec(
                prop::collection::vec((prop::array::uniform3(0.0f64..1e6), 30usize..240), 8),
                3,
            ),
        ) {
            let loads: Vec<Vec<[f64; 3]>> = phases
                .iter()
                .map(|p| {
                    let day: Vec<[f64; 3]> = p
                        .iter()
                        .flat_map(|(traffic, minutes)| std::iter::repeat_n(*traffic, *minutes))
                        .cycle()
                        .take(24 * 60)
                        .collect();
                    day.iter().cycle().take(2 * 24 * 60).copied().collect()
                })
                .collect();
            let config = EngineConfig {
                min_dwell_s: 1800.0,
                min_improvement_ratio: 0.0,
                gain_margin: 0.0,
                max_migrations_per_day: None,
                max_fleet_migrations_per_vm_day: Some(per_vm),
                ..EngineConfig::default()
            };
            let names = ["a", "b", "c"];
            let mut vms: Vec<VmSite> = names
                .iter()
                .zip(&starts)
                .map(|(name, start)| VmSite { name: name.to_string(), ..site(start) })
                .collect();
            let mut m = Measurements::new(4096);
            let mut moves: Vec<u64> = Vec::new();
            for minute in 0..2 * 24 * 60 {
                let t = minute as u64 * MIN;
                for (name, load) in names.iter().zip(&loads) {
                    for (r, region) in CLOUDS.iter().enumerate() {
                        m.record_traffic_rate(name, region, t, load[minute][r]);
                    }
                }
                for (i, a) in CLOUDS.iter().enumerate() {
                    for (j, b) in CLOUDS.iter().enumerate() {
                        m.record_latency(a, b, t, LATENCY[i][j]);
                    }
                }
                if minute % 15 == 14 {
                    let decisions = plan(&clouds(), &vms, &m, &config, t);
                    for (vm, d) in vms.iter_mut().zip(decisions) {
                        if d.migrate {
                            vm.cloud = d.best;
                            vm.last_moved_ms = Some(t);
                            vm.recent_moves_ms.push(t);
                            moves.push(minute as u64);
                        }
                    }
                }
            }
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let fleet_max = (per_vm * 3.0).floor() as usize;
            for &at in &moves {
                let in_day = moves.iter().filter(|&&t| t <= at && t + 24 * 60 > at).count();
                prop_assert!(in_day <= fleet_max, "{moves:?}");
            }
        }
    }
}
