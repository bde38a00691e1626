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

mod policies;
mod report;
mod world;

use clap::Parser;
use controller::model::EngineConfig;
use policies::{
    engine_schedules, oracle_schedules, oracle_with_budget, static_schedule, Schedule,
    ORACLE_MAX_MOVES,
};
use report::{budget_label, outcome, row, Outcome};
use world::{trace, vms, Rng, CLOUDS};

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
