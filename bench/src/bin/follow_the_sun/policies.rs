//! The three placement policies of `follow_the_sun` on one trace: the static best
//! cloud in hindsight, the oracle (a dynamic program that knows the future, alone or
//! under a fleet budget) and the engine (`controller::placement` fed with simulated
//! measurements minute by minute).

use crate::world::{
    Rng, SimVm, Trace, BANDWIDTH, CLOUDS, DAY_MIN, ENGINE_START_MIN, LATENCY_MS, SLOT_MIN,
};
use controller::measure::Measurements;
use controller::model::{EngineConfig, VmPlacement};
use controller::placement::{plan, VmSite};

/// Where one VM was at each minute of the day measured, and the minutes at which it
/// arrived somewhere new (the downtime falls there).
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    pub(crate) cloud: Vec<usize>,
    pub(crate) arrivals: Vec<usize>,
    /// Most arrivals within any 24 hours, warm-up included (the engine's only; the
    /// other policies plan the day measured alone).
    pub(crate) most_in_a_day: usize,
}

/// The engine's move cost, shared with the oracle: ms·bytes for a move at `rate`.
fn move_cost(config: &EngineConfig, ram_mib: u64, rate: f64) -> (f64, f64) {
    let copy_s = ram_mib as f64 * 1024.0 * 1024.0 / BANDWIDTH;
    let cost =
        rate * (copy_s * config.copy_penalty_ms + config.downtime_s * config.downtime_penalty_ms);
    (cost, copy_s + config.downtime_s)
}

fn served_cost(traffic: &[f64; 3], cloud: usize) -> f64 {
    (0..3)
        .map(|r| traffic[r] * LATENCY_MS[r][cloud] * 60.0)
        .sum()
}

/// The best single cloud for a day of traffic.
fn static_best(day: &[[f64; 3]]) -> usize {
    (0..3)
        .min_by(|&a, &b| {
            let total = |c| day.iter().map(|t| served_cost(t, c)).sum::<f64>();
            total(a).total_cmp(&total(b))
        })
        .expect("three clouds")
}

pub(crate) fn static_schedule(day: &[[f64; 3]]) -> Schedule {
    Schedule {
        cloud: vec![static_best(day); DAY_MIN],
        arrivals: Vec::new(),
        most_in_a_day: 0,
    }
}

/// Most moves a day the oracle considers per VM: more than it ever uses here.
pub(crate) const ORACLE_MAX_MOVES: usize = 24;

/// The oracle: the cheapest sequence of clouds over the day's slots, knowing every
/// minute's traffic, where a move costs what the engine assumes it costs. Element
/// `k` is the best schedule with at most `k` moves, with its cost (latency-weighted
/// traffic plus move costs). With `cycle`, the schedule starts and ends the day in
/// one cloud: repeated day after day, it has its `k` moves in every 24 hours, as a
/// rolling budget asks; without, it starts the day wherever is best.
pub(crate) fn oracle_schedules(
    day: &[[f64; 3]],
    vm: &SimVm,
    config: &EngineConfig,
    cycle: bool,
) -> Vec<(f64, Schedule)> {
    if cycle {
        let from_each: Vec<Vec<(f64, Schedule)>> = (0..3)
            .map(|start| oracle_schedules_from(day, vm, config, Some(start)))
            .collect();
        return (0..=ORACLE_MAX_MOVES)
            .map(|k| {
                from_each
                    .iter()
                    .map(|options| options[k].clone())
                    .min_by(|a, b| a.0.total_cmp(&b.0))
                    .expect("three clouds")
            })
            .collect();
    }
    oracle_schedules_from(day, vm, config, None)
}

/// The oracle's schedules by most moves, starting and ending the day in `cycle_at`
/// if given.
fn oracle_schedules_from(
    day: &[[f64; 3]],
    vm: &SimVm,
    config: &EngineConfig,
    cycle_at: Option<usize>,
) -> Vec<(f64, Schedule)> {
    let slots = DAY_MIN / SLOT_MIN;
    let states = 3 * (ORACLE_MAX_MOVES + 1);
    let state = |c: usize, k: usize| c * (ORACLE_MAX_MOVES + 1) + k;
    // best[s][state(c, k)]: least cost of slots 0..=s ending in cloud c after exactly
    // k moves; from[s][..]: the state before.
    let mut best = vec![vec![f64::INFINITY; states]; slots];
    let mut from = vec![vec![0usize; states]; slots];
    for s in 0..slots {
        let minutes = &day[s * SLOT_MIN..(s + 1) * SLOT_MIN];
        let rate = minutes.iter().map(|t| t.iter().sum::<f64>()).sum::<f64>() / SLOT_MIN as f64;
        let (move_cost, _) = move_cost(config, vm.ram_mib, rate);
        for c in 0..3 {
            let here: f64 = minutes.iter().map(|t| served_cost(t, c)).sum();
            for k in 0..=ORACLE_MAX_MOVES {
                // It knows the future: it starts the day wherever is best (or
                // where its cycle does).
                let (previous, cost) = match s {
                    0 => {
                        let start = k == 0 && cycle_at.is_none_or(|at| at == c);
                        (state(c, k), if start { 0.0 } else { f64::INFINITY })
                    }
                    _ => (0..3)
                        .filter_map(|p| match (p == c, k) {
                            (true, _) => Some((state(p, k), best[s - 1][state(p, k)])),
                            (false, 0) => None,
                            (false, _) => {
                                Some((state(p, k - 1), best[s - 1][state(p, k - 1)] + move_cost))
                            }
                        })
                        .min_by(|a, b| a.1.total_cmp(&b.1))
                        .expect("staying is always possible"),
                };
                best[s][state(c, k)] = cost + here;
                from[s][state(c, k)] = previous;
            }
        }
    }
    let schedule_from = |end: usize| {
        let mut per_slot = vec![0; slots];
        let mut at = end;
        for s in (0..slots).rev() {
            per_slot[s] = at / (ORACLE_MAX_MOVES + 1);
            at = from[s][at];
        }
        let arrivals: Vec<usize> = (1..slots)
            .filter(|&s| per_slot[s] != per_slot[s - 1])
            .map(|s| s * SLOT_MIN)
            .collect();
        Schedule {
            cloud: per_slot.iter().flat_map(|&c| [c; SLOT_MIN]).collect(),
            most_in_a_day: arrivals.len(),
            arrivals,
        }
    };
    (0..=ORACLE_MAX_MOVES)
        .map(|budget| {
            let end = (0..3)
                .filter(|&c| cycle_at.is_none_or(|at| at == c))
                .flat_map(|c| (0..=budget).map(move |k| state(c, k)))
                .min_by(|&a, &b| best[slots - 1][a].total_cmp(&best[slots - 1][b]))
                .expect("three clouds");
            (best[slots - 1][end], schedule_from(end))
        })
        .collect()
}

/// The oracle under a fleet budget of `budget` moves a day in all: how many moves
/// each VM gets (a knapsack over the VMs' cost against moves) and its schedule.
pub(crate) fn oracle_with_budget(per_vm: &[Vec<(f64, Schedule)>], budget: usize) -> Vec<Schedule> {
    // fleet[j][b]: least cost of the first j VMs with at most b moves; pick[j][b]: moves of VM j-1.
    let mut fleet = vec![vec![0.0; budget + 1]];
    let mut pick: Vec<Vec<usize>> = Vec::new();
    for options in per_vm {
        let previous = fleet.last().expect("starts with no VM");
        let (row, picks): (Vec<f64>, Vec<usize>) = (0..=budget)
            .map(|b| {
                (0..=b.min(ORACLE_MAX_MOVES))
                    .map(|k| (previous[b - k] + options[k].0, k))
                    .min_by(|x, y| x.0.total_cmp(&y.0))
                    .expect("zero moves is always possible")
            })
            .unzip();
        fleet.push(row);
        pick.push(picks);
    }
    let mut left = budget;
    let mut schedules = vec![None; per_vm.len()];
    for j in (0..per_vm.len()).rev() {
        let k = pick[j][left];
        schedules[j] = Some(per_vm[j][k].1.clone());
        left -= k;
    }
    schedules
        .into_iter()
        .map(|s| s.expect("every VM picked"))
        .collect()
}

/// The engine: measurements fed minute by minute (byte counters, latency probes),
/// a plan every slot, moves landing after their copy time.
pub(crate) fn engine_schedules(
    trace: &Trace,
    vms: &[SimVm],
    config: &EngineConfig,
    rng: &mut Rng,
) -> Vec<Schedule> {
    let clouds: Vec<String> = CLOUDS.iter().map(|c| c.to_string()).collect();
    let mut m = Measurements::new(2 * 1024);
    let mut sites: Vec<VmSite> = vms
        .iter()
        .map(|vm| VmSite {
            name: vm.name.to_string(),
            cloud: CLOUDS[static_best(
                trace.day(vms.iter().position(|v| v.name == vm.name).expect("listed")),
            )]
            .to_string(),
            knobs: VmPlacement {
                ram_mib: Some(vm.ram_mib),
                ..VmPlacement::default()
            },
            last_moved_ms: None,
            recent_moves_ms: Vec::new(),
        })
        .collect();
    let mut schedules = vec![
        Schedule {
            cloud: Vec::with_capacity(DAY_MIN),
            arrivals: Vec::new(),
            most_in_a_day: 0,
        };
        vms.len()
    ];
    // Every arrival of every VM, minutes from the start of the warm-up.
    let mut arrivals: Vec<Vec<usize>> = vec![Vec::new(); vms.len()];
    // In-flight moves: (vm, destination, minute it lands).
    let mut moving: Vec<(usize, String, usize)> = Vec::new();
    let mut counters = vec![[0u64; 3]; vms.len()];
    for pair in 0..9 {
        let (a, b) = (pair / 3, pair % 3);
        m.record_bandwidth(
            CLOUDS[a],
            CLOUDS[b],
            0,
            BANDWIDTH * (1.0 + 0.05 * rng.normal()),
        );
    }
    for minute in 0..trace.day_start + DAY_MIN {
        let t_ms = minute as u64 * 60_000;
        // Probes between clouds: the path's latency with jitter, one in twenty late.
        for (a, row) in LATENCY_MS.iter().enumerate() {
            for (b, latency) in row.iter().enumerate() {
                let late = if rng.unit() < 0.05 { 3.0 } else { 1.0 };
                m.record_latency(
                    CLOUDS[a],
                    CLOUDS[b],
                    t_ms,
                    latency * trace.jitter[minute][a][b] * late,
                );
            }
        }
        // Byte counters by region; Asia's switch restarts at noon UTC.
        let asia_restart = minute == trace.day_start + 12 * 60;
        for (i, vm) in vms.iter().enumerate() {
            for (r, counter) in counters[i].iter_mut().enumerate() {
                if asia_restart && r == 2 {
                    *counter = 0;
                }
                // Whole bytes: the fraction of a byte does not matter.
                #[allow(clippy::cast_possible_truncation)]
                let bytes = (trace.traffic[i][minute][r] * 60.0) as u64;
                *counter += bytes;
                m.record_traffic_counter(vm.name, CLOUDS[r], t_ms, *counter);
            }
        }
        if minute < ENGINE_START_MIN {
            continue;
        }
        // None during the warm-up: moves then are not counted against the day.
        let day_minute = minute.checked_sub(trace.day_start);
        moving.retain(|(i, to, lands)| {
            if *lands != minute {
                return true;
            }
            sites[*i].cloud = to.clone();
            sites[*i].last_moved_ms = Some(t_ms);
            // What the daemon keeps from its migration history: the last day's arrivals.
            sites[*i]
                .recent_moves_ms
                .retain(|&t| t + DAY_MIN as u64 * 60_000 > t_ms);
            sites[*i].recent_moves_ms.push(t_ms);
            arrivals[*i].push(minute);
            schedules[*i].arrivals.extend(day_minute);
            false
        });
        if minute % SLOT_MIN == 0 {
            let idle: Vec<VmSite> = sites
                .iter()
                .enumerate()
                .filter(|(i, _)| !moving.iter().any(|(j, _, _)| j == i))
                .map(|(_, s)| s.clone())
                .collect();
            for d in plan(&clouds, &idle, &m, config, t_ms) {
                if d.migrate {
                    let i = vms
                        .iter()
                        .position(|v| v.name == d.vm)
                        .expect("planned VMs are listed");
                    // Minutes the copy takes, at least one: the move lands next minute at the earliest.
                    #[allow(clippy::cast_possible_truncation)]
                    let minutes = (d.move_s / 60.0).ceil().max(1.0) as usize;
                    moving.push((i, d.best, minute + minutes));
                }
            }
        }
        if day_minute.is_none() {
            continue;
        }
        for (i, site) in sites.iter().enumerate() {
            let c = CLOUDS
                .iter()
                .position(|c| *c == site.cloud)
                .expect("a simulated cloud");
            schedules[i].cloud.push(c);
        }
    }
    for (schedule, arrivals) in schedules.iter_mut().zip(&arrivals) {
        schedule.most_in_a_day = arrivals
            .iter()
            .map(|&a| {
                arrivals
                    .iter()
                    .filter(|&&b| b <= a && b + DAY_MIN > a)
                    .count()
            })
            .max()
            .unwrap_or(0);
    }
    schedules
}
