//! The migration budgets: a VM's own (at most so many moves in any 24 hours,
//! spent now only when the day ahead is not served better by keeping a move for
//! later) and the fleet's, shared out among the VMs as a knapsack over their
//! day-ahead plans.

use super::cost::may_use;
use super::day_ahead::{most_moves_in_a_day, moves_in_window, DayAhead};
use super::decision::Why;
use super::site::VmSite;
use crate::measure::Measurements;
use crate::model::EngineConfig;

/// Each VM's share of a fleet budget of `fleet_max` moves in any 24 hours: the
/// moves it made in the window, plus units of the rest as a knapsack over the VMs'
/// day-ahead plans shares them out (never above its own budget). A VM without a
/// day-ahead forecast gets an even share of the fleet's budget among the VMs
/// that may use more than one cloud: with nothing to tell which VM's moves are
/// worth more, none may take more than its part (the
/// moves of a first day, spent without a forecast, are still in the window the
/// next day, when there is one).
pub(super) fn fleet_shares(
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

/// What the migration budget says about a move that the other rules allow.
#[derive(Debug, Default)]
pub(super) struct BudgetVerdict {
    /// The day ahead is served best by moving to this cloud now, not to the best.
    pub(super) elsewhere: Option<String>,
    /// Why the move to the best cloud is held back, if it is.
    pub(super) hold: Option<Why>,
}

/// The migration budget's view of a move of `vm` to `best`, a cloud the other rules
/// would move it to: held back when the last 24 hours used the budget up, or when
/// the day ahead is served better keeping a move for later; or better spent on
/// another cloud of `clouds` (the clouds it may move to).
pub(super) fn budget_verdict(
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
