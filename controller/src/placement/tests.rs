//! The placement engine on hand-made measurements: scores, hysteresis, budgets,
//! the day ahead and the fleet's shares.

use super::*;
use crate::measure::Measurements;
use crate::model::{EngineConfig, Inventory, VmPlacement};
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
    vm.knobs.price_per_hour = [("americas".to_string(), 0.2), ("europe".to_string(), 0.1)].into();
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
        include_str!("../../../docs/examples/inventory.toml"),
        "inventory.toml",
    )
    .unwrap();
    let snapshot: Snapshot = serde_json::from_str(include_str!(
        "../../../docs/examples/placement-snapshot.json"
    ))
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
