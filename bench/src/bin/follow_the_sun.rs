//! `follow_the_sun`: a trace-driven simulation of the placement engine over 24 hours.
//!
//! Clients in three regions (Americas UTC-5, Europe UTC+1, Asia UTC+9) load each VM
//! with a diurnal curve in their local time, with per-minute noise and short flash
//! crowds, from a fixed seed. Three policies place the same VMs on the same trace:
//! *static* (the one cloud per VM that is best over the whole day, in hindsight),
//! *oracle* (a dynamic program over 5-minute slots that knows the whole future and
//! pays the same move cost as the engine) and *engine* (`controller::placement`,
//! planning every 5 minutes from what the measurements showed so far: byte counters
//! by region, with a counter reset, and noisy latency probes between clouds). It
//! prints Markdown tables: traffic-weighted mean and p95 client latency, migrations
//! per VM per day, and the ratio to the oracle.
//!
//! Run: `cargo run --release -p bench --bin follow_the_sun [-- --dwell-h 3 --sweep]`.

use clap::Parser;
use controller::measure::Measurements;
use controller::model::{EngineConfig, VmPlacement};
use controller::placement::{plan, VmSite};

/// Clouds, one per client region; clients enter the overlay at their region's cloud.
const CLOUDS: [&str; 3] = ["americas", "europe", "asia"];
/// Each region's offset from UTC, hours.
const UTC_OFFSET_H: [f64; 3] = [-5.0, 1.0, 9.0];
/// Client latency from a region (row) to a VM in a cloud (column), ms.
const LATENCY_MS: [[f64; 3]; 3] = [
    [10.0, 80.0, 150.0],
    [80.0, 10.0, 150.0],
    [150.0, 150.0, 10.0],
];
/// Minutes simulated before the day measured with the engine's first day: the day
/// before it (the engine's history for its day-ago forecast) and an hour. The engine
/// starts from the static placement with an hour of history, so its first move is
/// not counted against the day measured. `--days-before` adds whole days in front.
const WARM_UP_MIN: usize = DAY_MIN + 60;
/// Minute of the trace at which the engine starts planning.
const ENGINE_START_MIN: usize = 60;
const DAY_MIN: usize = 24 * 60;
/// Decisions (engine and oracle) happen on 5-minute slots.
const SLOT_MIN: usize = 5;
/// Bandwidth between clouds the migrations see, bytes per second.
const BANDWIDTH: f64 = 50e6;

#[derive(Debug, Parser)]
#[command(about = "Follow-the-sun placement: static vs oracle vs engine over 24 h")]
struct Args {
    /// Seed of the trace.
    #[arg(long, default_value_t = 9)]
    seed: u64,
    /// Engine: minimum hours between two moves of a VM.
    #[arg(long)]
    dwell_h: Option<f64>,
    /// Engine: hours over which a move must pay off.
    #[arg(long)]
    horizon_h: Option<f64>,
    /// Engine: most migrations of a VM in any 24 hours (default: the engine's).
    #[arg(long, conflicts_with = "no_budget")]
    max_moves: Option<u32>,
    /// Engine: no migration budget.
    #[arg(long)]
    no_budget: bool,
    /// Engine: most migrations of the fleet in any 24 hours, per VM (default: the
    /// engine's); 0: none.
    #[arg(long)]
    fleet_budget: Option<f64>,
    /// Days the engine runs before the day measured: 1 starts it an hour into the
    /// day before, without history; 2 (steady state) gives it a whole day with a
    /// day-ago forecast and moves in its budget's window before the day measured.
    /// Earlier days come from their own seed, so the day measured and the day
    /// before are the same trace for every value.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=7))]
    days_before: u32,
    /// Print only one row for the table over seeds: seed, oracle mean ms and
    /// migrations, the oracles with fewer than 2 migrations / VM / day (any, and
    /// day-periodic) / oracle, engine mean ms,
    /// migrations, most of one VM in 24 h, engine / oracle, whether both targets are
    /// met, then engine without a budget and without the day-ago forecast (mean /
    /// oracle, migrations).
    #[arg(long)]
    seed_row: bool,
    /// Also print the engine with other dwell times and improvement ratios.
    #[arg(long)]
    sweep: bool,
}

/// splitmix64: a small, seeded generator so the trace is the same on every machine.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n (n > 0).
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next_u64() % n as u64).expect("less than n")
    }

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u = self.unit().max(f64::MIN_POSITIVE);
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * self.unit()).cos()
    }
}

/// A simulated VM: how big its audience is in each region, and its size.
#[derive(Debug, Clone)]
struct SimVm {
    name: &'static str,
    /// Peak traffic from each region, bytes per second.
    peak: [f64; 3],
    ram_mib: u64,
}

fn vms() -> Vec<SimVm> {
    let vm = |name, peak: [f64; 3], ram_mib| SimVm {
        name,
        peak: peak.map(|p| p * 1e6),
        ram_mib,
    };
    vec![
        vm("global-even", [1.0, 1.0, 1.0], 4096),
        vm("global-am", [2.0, 1.0, 1.0], 2048),
        vm("global-as", [1.0, 1.0, 2.0], 8192),
        vm("atlantic", [1.0, 1.0, 0.1], 2048),
        vm("eurasia", [0.1, 1.0, 1.0], 1024),
        vm("asia-local", [0.05, 0.05, 1.0], 4096),
    ]
}

/// Share of a region's peak load at a UTC minute: peak at 15:00 local time, a trough
/// of 10% at 03:00.
fn diurnal(region: usize, utc_min: f64) -> f64 {
    let local_h = utc_min / 60.0 + UTC_OFFSET_H[region];
    let bump = (1.0 + (std::f64::consts::TAU * (local_h - 15.0) / 24.0).cos()) / 2.0;
    0.1 + 0.9 * bump * bump
}

/// The trace: traffic (bytes per second) of every VM from every region at every
/// minute, and the latency multiplier (jitter) of every region-cloud path.
#[derive(Debug)]
struct Trace {
    /// `[vm][minute][region]`, minute 0 is the start of the warm-up.
    traffic: Vec<Vec<[f64; 3]>>,
    /// `[minute][region][cloud]`.
    jitter: Vec<[[f64; 3]; 3]>,
    /// Minute at which the day measured starts.
    day_start: usize,
}

impl Trace {
    /// The traffic of VM `i` over the day measured, by minute.
    fn day(&self, i: usize) -> &[[f64; 3]] {
        &self.traffic[i][self.day_start..]
    }
}

/// The trace of seed `seed` with `days_before` days in front of the day measured
/// (at least one: the warm-up day and hour). The warm-up and the day measured come
/// from `seed` alone; earlier days from a seed of their own.
fn trace(vms: &[SimVm], seed: u64, days_before: usize) -> Trace {
    let mut main = trace_part(vms, &mut Rng(seed), WARM_UP_MIN + DAY_MIN, WARM_UP_MIN);
    let early_min = days_before.saturating_sub(1) * DAY_MIN;
    if early_min == 0 {
        return main;
    }
    let mut early = trace_part(
        vms,
        &mut Rng(seed ^ 0xea51),
        early_min,
        early_min + WARM_UP_MIN,
    );
    for (e, m) in early.traffic.iter_mut().zip(&mut main.traffic) {
        e.append(m);
    }
    early.jitter.append(&mut main.jitter);
    early.day_start = early_min + WARM_UP_MIN;
    early
}

/// `minutes` of trace, the first `day_start` minutes before the day measured.
fn trace_part(vms: &[SimVm], rng: &mut Rng, minutes: usize, day_start: usize) -> Trace {
    let traffic = vms
        .iter()
        .map(|vm| {
            // Two flash crowds per VM: one region at 3× for 10-30 minutes.
            let crowds: Vec<(usize, usize, usize)> = (0..2)
                .map(|_| {
                    let start = rng.below(minutes);
                    let length = 10 + rng.below(21);
                    (start, start + length, rng.below(3))
                })
                .collect();
            (0..minutes)
                .map(|m| {
                    let utc = m as f64 - day_start as f64;
                    std::array::from_fn(|r| {
                        let crowd = crowds
                            .iter()
                            .any(|&(a, b, cr)| cr == r && (a..b).contains(&m));
                        let noise = (0.2 * rng.normal()).exp();
                        vm.peak[r] * diurnal(r, utc) * noise * if crowd { 3.0 } else { 1.0 }
                    })
                })
                .collect()
        })
        .collect();
    let jitter = (0..minutes)
        .map(|_| {
            std::array::from_fn(|_| std::array::from_fn(|_| (1.0 + 0.05 * rng.normal()).max(0.5)))
        })
        .collect();
    Trace {
        traffic,
        jitter,
        day_start,
    }
}

/// Where one VM was at each minute of the day measured, and the minutes at which it
/// arrived somewhere new (the downtime falls there).
#[derive(Debug, Clone)]
struct Schedule {
    cloud: Vec<usize>,
    arrivals: Vec<usize>,
    /// Most arrivals within any 24 hours, warm-up included (the engine's only; the
    /// other policies plan the day measured alone).
    most_in_a_day: usize,
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

fn static_schedule(day: &[[f64; 3]]) -> Schedule {
    Schedule {
        cloud: vec![static_best(day); DAY_MIN],
        arrivals: Vec::new(),
        most_in_a_day: 0,
    }
}

/// Most moves a day the oracle considers per VM: more than it ever uses here.
const ORACLE_MAX_MOVES: usize = 24;

/// The oracle: the cheapest sequence of clouds over the day's slots, knowing every
/// minute's traffic, where a move costs what the engine assumes it costs. Element
/// `k` is the best schedule with at most `k` moves, with its cost (latency-weighted
/// traffic plus move costs). With `cycle`, the schedule starts and ends the day in
/// one cloud: repeated day after day, it has its `k` moves in every 24 hours, as a
/// rolling budget asks; without, it starts the day wherever is best.
fn oracle_schedules(
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
fn oracle_with_budget(per_vm: &[Vec<(f64, Schedule)>], budget: usize) -> Vec<Schedule> {
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
fn engine_schedules(
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
struct Outcome {
    mean_ms: f64,
    p95_ms: f64,
    migrations_per_vm_day: f64,
    /// Most migrations of one VM within any 24 hours.
    most_in_a_day: usize,
}

/// The outcome of the VMs `vms` (indices into the trace) on `schedules`.
fn outcome(trace: &Trace, vms: &[usize], schedules: &[Schedule], config: &EngineConfig) -> Outcome {
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

fn row(policy: &str, o: Outcome, oracle: Outcome) {
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
fn budget_label(per_vm: Option<u32>, fleet: Option<f64>) -> String {
    match (per_vm, fleet) {
        (None, None) => "none".to_string(),
        (Some(m), None) => format!("{m} / VM"),
        (None, Some(f)) => format!("{f} / VM (fleet)"),
        (Some(m), Some(f)) => format!("{m} / VM, {f} / VM (fleet)"),
    }
}

fn main() {
    let args = Args::parse();
    let mut config = EngineConfig::default();
    if let Some(h) = args.dwell_h {
        config.min_dwell_s = h * 3600.0;
    }
    if let Some(h) = args.horizon_h {
        config.horizon_s = h * 3600.0;
    }
    if args.no_budget {
        config.max_migrations_per_day = None;
    } else if let Some(max) = args.max_moves {
        config.max_migrations_per_day = Some(max);
    }
    if let Some(per_vm) = args.fleet_budget {
        config.max_fleet_migrations_per_vm_day = (per_vm > 0.0).then_some(per_vm);
    }
    let vms = vms();
    let trace = trace(
        &vms,
        args.seed,
        usize::try_from(args.days_before).expect("at most 7"),
    );
    let statics: Vec<Schedule> = (0..vms.len())
        .map(|i| static_schedule(trace.day(i)))
        .collect();
    let oracle_options: Vec<Vec<(f64, Schedule)>> = vms
        .iter()
        .enumerate()
        .map(|(i, vm)| oracle_schedules(trace.day(i), vm, &config, false))
        .collect();
    let cycle_options: Vec<Vec<(f64, Schedule)>> = vms
        .iter()
        .enumerate()
        .map(|(i, vm)| oracle_schedules(trace.day(i), vm, &config, true))
        .collect();
    let budgeted_cycle = oracle_with_budget(&cycle_options, 2 * vms.len() - 1);
    let oracles: Vec<Schedule> = oracle_options
        .iter()
        .map(|o| o[ORACLE_MAX_MOVES].1.clone())
        .collect();
    // The bound: fewer than 2 migrations per VM per day, for the whole fleet.
    let budgeted = oracle_with_budget(&oracle_options, 2 * vms.len() - 1);
    // The engine's bound, per VM, for the day measured.
    let per_vm_budget = config.max_migrations_per_day.map(|max| {
        let max = usize::try_from(max).map_or(ORACLE_MAX_MOVES, |m| m.min(ORACLE_MAX_MOVES));
        cycle_options
            .iter()
            .map(|o| o[max].1.clone())
            .collect::<Vec<Schedule>>()
    });
    let engine = |c: &EngineConfig| engine_schedules(&trace, &vms, c, &mut Rng(args.seed ^ 0xe9));
    let engines = engine(&config);
    let unbudgeted_config = EngineConfig {
        max_migrations_per_day: None,
        max_fleet_migrations_per_vm_day: None,
        ..config.clone()
    };
    let unbudgeted = engine(&unbudgeted_config);
    let flat = EngineConfig {
        seasonal_period_s: 0.0,
        ..config.clone()
    };
    let every: Vec<usize> = (0..vms.len()).collect();
    let oracle = outcome(&trace, &every, &oracles, &config);
    let of = |s: &[Schedule]| outcome(&trace, &every, s, &config);
    let budget = budget_label(
        config.max_migrations_per_day,
        config.max_fleet_migrations_per_vm_day,
    );
    if args.seed_row {
        // One row of the table over seeds (see --help).
        let (e, u, f) = (of(&engines), of(&unbudgeted), of(&engine(&flat)));
        let ratio = |o: Outcome| o.mean_ms / oracle.mean_ms;
        let periodic = ratio(of(&budgeted_cycle));
        let meets = ratio(e) <= 1.10 && e.migrations_per_vm_day < 2.0;
        println!(
            "| {} | {:.1} | {:.2} | {:.3} | {periodic:.3} | {:.1} | {:.2} | {} | {:.4} | {} | {:.3} | {:.2} | {:.3} | {:.2} |",
            args.seed,
            oracle.mean_ms,
            oracle.migrations_per_vm_day,
            ratio(of(&budgeted)),
            e.mean_ms,
            e.migrations_per_vm_day,
            e.most_in_a_day,
            ratio(e),
            if meets { "yes" } else { "no" },
            ratio(u),
            u.migrations_per_vm_day,
            ratio(f),
            f.migrations_per_vm_day,
        );
        return;
    }
    println!(
        "Follow the sun: {} VMs, 24 h, clients in {} (UTC-5/+1/+9), latency 10/80/150 ms, seed {}; \
         engine: dwell {:.1} h, horizon {:.1} h, margin {:.0}%, improvement ≥ {:.0} ms and {:.0}%, \
         budget (migrations in 24 h) {budget}\n",
        vms.len(),
        CLOUDS.join("/"),
        args.seed,
        config.min_dwell_s / 3600.0,
        config.horizon_s / 3600.0,
        config.gain_margin * 100.0,
        config.min_improvement_ms,
        config.min_improvement_ratio * 100.0,
    );
    println!(
        "| policy | mean ms | p95 ms | migrations / VM / day | most of one VM in 24 h | mean / oracle | p95 / oracle |"
    );
    println!("|---|---|---|---|---|---|---|");
    row(
        "static (best single cloud, hindsight)",
        of(&statics),
        oracle,
    );
    row("oracle (knows the future, same move cost)", oracle, oracle);
    row(
        "oracle with fewer than 2 migrations / VM / day (fleet)",
        of(&budgeted),
        oracle,
    );
    row(
        "oracle, day-periodic, fewer than 2 migrations / VM / day (fleet)",
        of(&budgeted_cycle),
        oracle,
    );
    if let (Some(max), Some(s)) = (config.max_migrations_per_day, &per_vm_budget) {
        row(
            &format!(
                "oracle, day-periodic, at most {max} migrations per VM a day (no fleet budget)"
            ),
            of(s),
            oracle,
        );
    }
    row(
        &format!("engine (controller::placement), budget {budget}"),
        of(&engines),
        oracle,
    );
    row("engine without a budget", of(&unbudgeted), oracle);
    row(
        &format!("engine without the day-ago forecast, budget {budget}"),
        of(&engine(&flat)),
        oracle,
    );

    println!("\nPer VM: mean ms (migrations) under each policy\n");
    println!(
        "| VM | peak MB/s am/eu/as | RAM MiB | static | oracle | oracle, < 2 / VM / day (fleet) | periodic oracle, < 2 / VM / day (fleet) | periodic oracle, ≤ {} | engine | engine, no budget |",
        budget_label(config.max_migrations_per_day, None)
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (i, vm) in vms.iter().enumerate() {
        let one = |s: &Schedule| {
            let o = outcome(&trace, &[i], std::slice::from_ref(s), &config);
            format!("{:.1} ({})", o.mean_ms, s.arrivals.len())
        };
        println!(
            "| {} | {:.2}/{:.2}/{:.2} | {} | {} | {} | {} | {} | {} | {} | {} |",
            vm.name,
            vm.peak[0] / 1e6,
            vm.peak[1] / 1e6,
            vm.peak[2] / 1e6,
            vm.ram_mib,
            one(&statics[i]),
            one(&oracles[i]),
            one(&budgeted[i]),
            one(&budgeted_cycle[i]),
            per_vm_budget
                .as_ref()
                .map_or("-".to_string(), |s| one(&s[i])),
            one(&engines[i]),
            one(&unbudgeted[i]),
        );
    }

    if args.sweep {
        println!("\nEngine against its budgets (same trace):\n");
        println!("| budget (migrations in 24 h) | mean ms | p95 ms | migrations / VM / day | most of one VM in 24 h | mean / oracle |");
        println!("|---|---|---|---|---|---|");
        let budgets = [
            (None, None),
            (Some(3), None),
            (Some(2), None),
            (Some(1), None),
            (None, Some(1.9)),
            (Some(3), Some(1.9)),
            (Some(2), Some(1.9)),
            (Some(3), Some(1.5)),
        ];
        for (max, fleet) in budgets {
            let c = EngineConfig {
                max_migrations_per_day: max,
                max_fleet_migrations_per_vm_day: fleet,
                ..config.clone()
            };
            let o = of(&engine(&c));
            println!(
                "| {} | {:.1} | {:.1} | {:.2} | {} | {:.3} |",
                budget_label(max, fleet),
                o.mean_ms,
                o.p95_ms,
                o.migrations_per_vm_day,
                o.most_in_a_day,
                o.mean_ms / oracle.mean_ms
            );
        }
        println!("\nEngine against its hysteresis and horizon, budget {budget} (same trace):\n");
        println!("| dwell h | improvement ≥ | horizon h | mean ms | p95 ms | migrations / VM / day | mean / oracle |");
        println!("|---|---|---|---|---|---|---|");
        let variants = [1.0, 3.0, 6.0]
            .into_iter()
            .flat_map(|dwell| [0.05, 0.15, 0.3].map(|ratio| (dwell, ratio, 2.0)))
            .chain([1.0, 4.0, 8.0].map(|horizon| (3.0, 0.15, horizon)));
        for (dwell_h, ratio, horizon_h) in variants {
            let c = EngineConfig {
                min_dwell_s: dwell_h * 3600.0,
                min_improvement_ratio: ratio,
                horizon_s: horizon_h * 3600.0,
                ..config.clone()
            };
            let o = of(&engine(&c));
            println!(
                "| {dwell_h:.0} | {:.0}% | {horizon_h:.0} | {:.1} | {:.1} | {:.2} | {:.3} |",
                ratio * 100.0,
                o.mean_ms,
                o.p95_ms,
                o.migrations_per_vm_day,
                o.mean_ms / oracle.mean_ms
            );
        }
    }
}
