//! The migration state machine's transitions on the example inventory: what
//! each one requires, and the refusal of those that make no sense where the
//! migration stands.

use super::*;
use crate::migration::measure::{Measure, PortCounts};

fn inventory() -> Inventory {
    Inventory::parse(
        include_str!("../../../docs/examples/inventory.toml"),
        "inventory.toml",
    )
    .unwrap()
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// web1 (host-a, port 1) moving to port 7 of host-b, prepared as version 2 at
/// 1 s.
fn prepared(inv: &Inventory) -> MigrationState {
    let (mut m, step) = MigrationState::start(None, inv, "web1", "host-b", 7, ms(1_000)).unwrap();
    assert_eq!(
        step.inventory, *inv,
        "the prepare step leaves the VM in place"
    );
    let program = step.program.unwrap();
    assert_eq!(program.phase, model::Phase::Prepared);
    assert_eq!(
        (program.from_host.as_str(), program.from_port),
        ("host-a", 1)
    );
    assert_eq!((program.to_host.as_str(), program.to_port), ("host-b", 7));
    m.prepared(2, ms(1_010));
    m
}

fn events(m: &MigrationState) -> Vec<&str> {
    m.timeline.events.iter().map(|(e, _)| e.as_str()).collect()
}

#[test]
fn a_migration_goes_prepared_switched_cleaned() {
    let inv = inventory();
    let mut m = prepared(&inv);
    assert_eq!(m.phase, Phase::Prepared);
    assert!(m.in_progress());
    assert_eq!(m.timeline.events, [("prepare sent".to_string(), 10.0)]);

    let step = m.arrive(&inv, Some((2, 7)), Some("web1")).unwrap();
    let moved = &step.inventory.vms["web1"];
    assert_eq!((moved.host.as_str(), moved.port), ("host-b", 7));
    assert_eq!(step.program.unwrap().phase, model::Phase::Switched);
    assert_eq!(
        step.inventory,
        m.switch_step(&inv).inventory,
        "as compiled ahead"
    );
    m.switched(3, ms(1_500));
    assert_eq!(m.phase, Phase::Switched);
    assert_eq!(m.switch_version, 3);
    assert_eq!(m.program().unwrap().phase, model::Phase::Switched);

    let step = m.clean_up(&step.inventory).unwrap();
    assert_eq!(step.program, None, "the clean-up is the plain program");
    m.cleaned(4, ms(3_500));
    assert_eq!(m.phase, Phase::Cleaned);
    assert!(!m.in_progress());
    assert_eq!(m.program(), None);
    assert_eq!(events(&m), ["prepare sent", "switch sent", "cleaned up"]);
    assert_eq!(
        m.timeline.between("prepare sent", "cleaned up"),
        Some(2_490.0)
    );
}

#[test]
fn an_abort_before_the_switch_restores_the_plain_program() {
    let inv = inventory();
    let mut m = prepared(&inv);
    let step = m.abort(&inv).unwrap();
    assert_eq!(step.inventory, inv);
    assert_eq!(step.program, None);
    m.aborted(ms(2_000));
    assert_eq!(m.phase, Phase::Aborted);
    assert_eq!(m.program(), None);
    assert_eq!(events(&m), ["prepare sent", "aborted"]);
}

#[test]
fn transitions_that_make_no_sense_are_refused() {
    let inv = inventory();
    let mut m = prepared(&inv);
    // Another start while this one runs.
    let again = MigrationState::start(Some(&m), &inv, "db1", "host-c", 7, ms(0));
    assert_eq!(again.unwrap_err(), Refusal::AlreadyMigrating("web1".into()));
    // A clean-up before the switch.
    assert_eq!(m.clean_up(&inv).unwrap_err(), Refusal::NotSwitched);
    // Another VM's arrival, or an announcement from the wrong switch or port.
    assert_eq!(
        m.arrive(&inv, None, Some("db1")).unwrap_err(),
        Refusal::NotWaiting
    );
    assert_eq!(
        m.arrive(&inv, Some((3, 7)), None).unwrap_err(),
        Refusal::Elsewhere
    );
    assert_eq!(
        m.arrive(&inv, Some((2, 1)), None).unwrap_err(),
        Refusal::Elsewhere
    );

    m.arrive(&inv, None, None).unwrap();
    m.switched(3, ms(1_500));
    // Arrived twice.
    assert_eq!(m.arrive(&inv, None, None).unwrap_err(), Refusal::NotWaiting);
    // An abort after the switch: the VM already moved.
    let err = m.abort(&inv).unwrap_err();
    assert!(
        err.to_string().contains("already switched to `host-b`"),
        "{err}"
    );

    m.cleaned(4, ms(3_500));
    // An abort or a second clean-up after the clean-up.
    assert_eq!(m.abort(&inv).unwrap_err(), Refusal::NothingInProgress);
    assert_eq!(m.clean_up(&inv).unwrap_err(), Refusal::NotSwitched);
    assert_eq!(m.arrive(&inv, None, None).unwrap_err(), Refusal::NotWaiting);
    // Once it ended, the next one may start.
    assert!(MigrationState::start(Some(&m), &inv, "db1", "host-c", 7, ms(0)).is_ok());
}

#[test]
fn a_start_is_checked_against_the_inventory() {
    let inv = inventory();
    let start = |vm, host, port| MigrationState::start(None, &inv, vm, host, port, ms(0));
    assert_eq!(
        start("nope", "host-b", 7).unwrap_err(),
        Refusal::NoVm("nope".into())
    );
    assert_eq!(
        start("web1", "nowhere", 7).unwrap_err(),
        Refusal::NoHost("nowhere".into())
    );
    assert!(matches!(
        start("web1", "host-a", 7),
        Err(Refusal::SameHost { .. })
    ));
    let taken = start("web1", "host-b", 1).unwrap_err();
    assert_eq!(taken.to_string(), "port 1 of `host-b` is VM `db1`'s");
}

#[test]
fn the_old_host_measures_each_thing_once_in_order() {
    let inv = inventory();
    let mut m = prepared(&inv);
    // Another switch measures nothing; the old host takes its baseline once.
    assert_eq!(m.measure_for(2, 2), Measure::Nothing);
    assert_eq!(m.measure_for(1, 2), Measure::Baseline { port: 1 });
    assert_eq!(m.measure_for(1, 2), Measure::Nothing);
    m.record_baseline(PortCounts {
        tx_packets: 100,
        tx_dropped: 5,
    });
    m.switched(3, ms(1_500));
    assert_eq!(m.measure_for(1, 3), Measure::AroundSwitch { port: 1 });
    assert_eq!(m.measure_for(1, 3), Measure::Nothing);
    let before = PortCounts {
        tx_packets: 150,
        tx_dropped: 7,
    };
    let after = PortCounts {
        tx_packets: 152,
        tx_dropped: 8,
    };
    m.record_switch(before, after);
    assert_eq!(
        m.timeline.lost_at_old_host,
        Some(3 + 2),
        "drops since the baseline, late deliveries"
    );
    m.cleaned(4, ms(3_500));
    let Measure::Forwarded { tunnel_port, vm_ip } = m.measure_for(1, 4) else {
        panic!("the forwarded packets are counted before the clean-up");
    };
    assert_eq!(vm_ip, inv.vms["web1"].ip);
    assert_eq!(tunnel_port, inv.host("host-b").unwrap().tunnel_port());
    assert_eq!(m.measure_for(1, 4), Measure::Nothing);
    m.record_forwarded(9, ms(3_600));
    assert_eq!(m.timeline.forwarded_by_old_host, Some(9));
    assert!(m.timeline.has("old host drained"));
}

#[test]
fn a_session_that_missed_the_switch_step_measures_only_the_drain() {
    let inv = inventory();
    let mut m = prepared(&inv);
    m.switched(3, ms(1_500));
    m.cleaned(4, ms(3_500));
    assert!(matches!(m.measure_for(1, 4), Measure::Forwarded { .. }));
    assert_eq!(m.measure_for(1, 5), Measure::Nothing);
}

#[test]
fn the_timeline_notes_readiness_and_reroute_once() {
    let inv = inventory();
    let mut m = prepared(&inv);
    // The destination (datapath 2) confirms the prepare step; others do not count.
    m.synced(3, 2, Some(2), 2, ms(1_100));
    assert!(!m.timeline.has("destination ready"));
    m.synced(2, 2, Some(2), 2, ms(1_100));
    m.synced(2, 2, Some(2), 2, ms(1_200));
    m.switched(3, ms(1_500));
    // Rerouted only once the least synced switch has the switch step.
    m.synced(2, 3, Some(2), 2, ms(1_510));
    assert!(!m.timeline.has("rerouted"));
    m.synced(1, 3, Some(2), 3, ms(1_520));
    m.synced(3, 3, Some(2), 3, ms(1_530));
    assert_eq!(
        events(&m),
        [
            "prepare sent",
            "destination ready",
            "switch sent",
            "rerouted"
        ]
    );
}

#[test]
fn the_state_survives_a_round_trip_through_json() {
    let inv = inventory();
    let mut m = prepared(&inv);
    m.measure_for(1, 2);
    m.switched(3, ms(1_500));
    let json = serde_json::to_string(&m).unwrap();
    let back: MigrationState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, m);
}

#[test]
fn the_moved_vm_takes_the_destination_ports_interface_as_its_tap() {
    let inv = inventory();
    let mut m = prepared(&inv);
    let before = m.arrive(&inv, None, None).unwrap();
    assert_eq!(
        before.inventory.vms["web1"].tap, inv.vms["web1"].tap,
        "no name known"
    );
    m.to_tap = Some("web1-b".into());
    let step = m.arrive(&inv, None, None).unwrap();
    assert_eq!(step.inventory.vms["web1"].tap, "web1-b");
}

#[test]
fn the_hypervisors_copy_reports_are_kept_and_each_new_phase_is_an_event() {
    let inv = inventory();
    let mut m = prepared(&inv);
    let report = |phase: &str, copied: u64| -> Progress {
        serde_json::from_value(serde_json::json!({
            "phase": phase, "disk_copied": copied, "disk_total": 1000, "disk_rate": 10,
            "ram_transferred": 0, "ram_remaining": 0, "ram_total": 0, "ram_mbps": 0.0,
            "dirty_pages_rate": 0, "expected_downtime_ms": null, "elapsed_ms": 7,
        }))
        .unwrap()
    };
    m.copy_progress(report("disk", 100), None, ms(1_100))
        .unwrap();
    m.copy_progress(report("disk", 900), Some(&*m.route.vm.clone()), ms(1_200))
        .unwrap();
    m.copy_progress(report("memory", 1000), None, ms(1_300))
        .unwrap();
    // Phases that alternate add no event after the first of each.
    m.copy_progress(report("disk", 1000), None, ms(1_310))
        .unwrap();
    m.copy_progress(report("memory", 1000), None, ms(1_320))
        .unwrap();
    assert_eq!(events(&m), ["prepare sent", "disk copy", "memory copy"]);
    assert!(matches!(
        m.copy_progress(report("memory", 1000), Some("someone-else"), ms(1_330)),
        Err(Refusal::OtherVm { .. })
    ));
    assert_eq!(m.timeline.copy.as_ref().map(|c| c.disk_copied), Some(1000));
    m.aborted(ms(1_400));
    assert_eq!(
        m.copy_progress(report("memory", 1000), None, ms(1_500)),
        Err(Refusal::NothingInProgress)
    );
    let stored = serde_json::to_string(&m).unwrap();
    let back: MigrationState = serde_json::from_str(&stored).unwrap();
    assert_eq!(back, m, "kept with the migration's state");
}
