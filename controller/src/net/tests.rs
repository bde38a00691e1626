//! Switch sessions against a fake switch (`fake_switch`, a table behind the
//! OpenFlow codec), on a real loopback connection to the controller's listener.
//! The audit puts back a flow deleted behind the controller's back and sends
//! nothing when the tables match; a switch that stops answering is marked
//! disconnected, its connection closed, and it is welcome back; a migration
//! phase committed but never sent before a crash reaches the switch from the
//! restarted controller; flow-mods the switch refuses never confirm a version, so
//! a migration's destination is never reported ready on them; a session held up
//! past the echo timeout does not blame its switch.

use super::serve_openflow;
use crate::daemon::tests::example_controller;
use crate::daemon::{Controller, SwitchStatus};
use crate::model::SwitchSettings;
use fake_switch::FakeSwitch;
use openflow::wire::ControllerRole;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// A deadline no loaded machine reaches; the tests wait for conditions.
const DEADLINE: Duration = Duration::from_secs(120);

/// A controller over the example inventory with these settings, listening for
/// switches on a loopback port.
pub(super) async fn controller(
    dir: &std::path::Path,
    settings: SwitchSettings,
) -> (Arc<Controller>, SocketAddr) {
    let ctl = example_controller(dir, |inventory| inventory.switch_settings = settings);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_openflow(listener, ctl.clone(), None));
    (ctl, addr)
}

pub(super) fn switch(ctl: &Controller, dpid: u64) -> SwitchStatus {
    let host = ctl.inventory().host_by_dpid(dpid).unwrap().name.clone();
    ctl.switch_report()
        .into_iter()
        .find(|(name, _)| *name == host)
        .map(|(_, s)| s)
        .unwrap()
}

/// Waits until `done` holds, at most [`DEADLINE`]; panics saying `what` otherwise.
pub(super) async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < DEADLINE, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `fake` against the controller at `addr`.
fn connect(fake: &Arc<FakeSwitch>, addr: SocketAddr) {
    let give_up = tokio::time::Instant::now() + DEADLINE;
    tokio::spawn(fake.clone().run(addr, give_up));
}

/// A fake switch of datapath `dpid` connected to the controller at `addr`, once
/// it confirmed the program version in force.
pub(super) async fn synchronised_fake(
    ctl: &Controller,
    addr: SocketAddr,
    dpid: u64,
) -> Arc<FakeSwitch> {
    let (version, _) = ctl.desired(dpid).unwrap();
    let fake = FakeSwitch::new(dpid);
    connect(&fake, addr);
    wait_until("the switch is synchronised", || {
        switch(ctl, dpid).synced_version == version
    })
    .await;
    fake
}

#[tokio::test]
async fn the_audit_restores_a_flow_deleted_behind_the_controller_s_back() {
    let dir = tempfile::tempdir().unwrap();
    let settings = SwitchSettings {
        audit_every_s: 1,
        ..SwitchSettings::default()
    };
    let (ctl, addr) = controller(dir.path(), settings).await;
    let (version, desired) = ctl.desired(1).unwrap();
    let desired = desired.to_vec();
    assert!(desired.len() > 1);
    let fake = synchronised_fake(&ctl, addr, 1).await;
    assert_eq!(switch(&ctl, 1).synced_version, version);
    assert_eq!(fake.flow_count(), desired.len());
    let sent = fake.flow_mods();
    assert_eq!(sent, desired.len() as u64, "one add per flow");

    // Audits of equal tables send nothing.
    wait_until("two audits", || switch(&ctl, 1).audits >= 2).await;
    assert_eq!(fake.flow_mods(), sent);
    assert_eq!(switch(&ctl, 1).repairs, 0);

    // A flow deleted behind the controller's back comes back, with one flow-mod.
    let victim = desired[desired.len() / 2].clone();
    assert!(fake.remove(&victim));
    assert_eq!(fake.flow_count(), desired.len() - 1);
    wait_until("the deleted flow is repaired", || {
        switch(&ctl, 1).repairs == 1
    })
    .await;
    assert_eq!(fake.flow_count(), desired.len());
    assert_eq!(fake.flow_mods(), sent + 1);
    assert_eq!(ctl.status()["repairs"], 1);
    let audits = switch(&ctl, 1).audits;
    wait_until("another audit", || switch(&ctl, 1).audits > audits).await;
    assert_eq!(switch(&ctl, 1).repairs, 1, "nothing more to repair");
}

#[tokio::test]
async fn a_switch_that_stops_answering_is_disconnected_and_welcome_back() {
    let dir = tempfile::tempdir().unwrap();
    let settings = SwitchSettings {
        echo_every_s: 1,
        echo_timeout_s: 3,
        audit_every_s: 0,
    };
    let (ctl, addr) = controller(dir.path(), settings).await;
    let (version, desired) = ctl.desired(2).unwrap();
    let desired = desired.to_vec();
    let fake = FakeSwitch::new(2);
    connect(&fake, addr);
    wait_until("the switch is synchronised", || {
        let s = switch(&ctl, 2);
        s.connected && s.synced_version == version
    })
    .await;

    fake.set_answering(false);
    wait_until("the silent switch is disconnected", || {
        !switch(&ctl, 2).connected
    })
    .await;
    let s = switch(&ctl, 2);
    let error = s.last_error.unwrap_or_default();
    assert!(error.contains("stopped answering"), "{error}");
    wait_until("the controller closes the connection", || fake.is_closed()).await;

    // It reconnects with its tables intact: audited, nothing to repair.
    let again = FakeSwitch::new(2);
    for flow in desired {
        again.insert(flow);
    }
    connect(&again, addr);
    wait_until("the switch is back and audited", || {
        let s = switch(&ctl, 2);
        s.connected && s.audits == 1
    })
    .await;
    assert_eq!(switch(&ctl, 2).repairs, 0);
    assert_eq!(again.flow_mods(), 0);
}

/// The cause of the switches declared silent at 1,000 switches: a session that
/// its runtime did not run for longer than the echo timeout (its worker busy
/// compiling, or with a thousand other sessions) judged its switch by a silence
/// of its own making. It had sent no echo meanwhile, or the answer lay unread
/// in its socket while the timer's branch won the race; then a barrier sent
/// right after was given no time at all. Here the controller's only thread is
/// held for twice the timeout, again and again, while the switch (on a thread
/// of its own) stays ready to answer: it must stay connected, and confirm the
/// version committed right after each hold.
#[tokio::test]
async fn a_session_held_up_past_the_echo_timeout_does_not_judge_its_switch_silent() {
    let dir = tempfile::tempdir().unwrap();
    let settings = SwitchSettings {
        echo_every_s: 1,
        echo_timeout_s: 2,
        audit_every_s: 0,
    };
    let (ctl, addr) = controller(dir.path(), settings).await;
    let fake = FakeSwitch::new(1);
    let answering = fake.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(answering.run(addr, tokio::time::Instant::now() + DEADLINE))
    });
    let (version, _) = ctl.desired(1).unwrap();
    wait_until("the switch is synchronised", || {
        switch(&ctl, 1).synced_version == version
    })
    .await;
    for round in 0..4 {
        // Between holds the session runs its echoes as usual.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // Holds the runtime's only thread, as a compile on a worker would.
        std::thread::sleep(Duration::from_secs(4));
        let version = ctl.apply_policy("id", &format!("p{round}")).unwrap();
        wait_until("the version after the hold is confirmed", || {
            let s = switch(&ctl, 1);
            s.synced_version == version || !s.connected
        })
        .await;
        let s = switch(&ctl, 1);
        assert!(s.connected, "round {round}: {:?}", s.last_error);
    }
    assert_eq!(switch(&ctl, 1).last_error, None);
    assert!(!fake.is_closed());
}

/// A crash after a migration phase was committed and before its flow-mods
/// reached the switch: the controller started again from the store sends the
/// switch that phase's difference, and only that.
#[tokio::test]
async fn a_phase_committed_but_never_sent_reaches_the_switch_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (ctl, addr) = controller(dir.path(), SwitchSettings::default()).await;
    let plain = ctl.desired(2).unwrap().1.to_vec();
    let fake = synchronised_fake(&ctl, addr, 2).await;
    let held = fake.flows();

    // The destination of web1's move: deaf from now on, as if the controller
    // died between its commit and its flow-mods.
    fake.set_answering(false);
    ctl.start_migration("web1", "host-b", 7).unwrap();
    let prepared = ctl.desired(2).unwrap().1.to_vec();
    assert_ne!(prepared, plain, "the destination has something to learn");
    assert_eq!(fake.flow_count(), plain.len(), "and never heard it");

    // Started again from the store, with the switch as it was.
    let store = crate::store::Store::new(&dir.path().join("state.json"));
    let start = crate::restart::start(store.load().unwrap(), None, None).unwrap();
    let again = Controller::new(start.persisted, store).unwrap();
    assert!(again.resume().is_some(), "the prepared migration resumes");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_openflow(listener, again.clone(), None));
    let (version, desired) = again.desired(2).unwrap();
    let desired = desired.to_vec();
    assert_eq!(desired, prepared, "the committed phase's table");
    let switch_again = FakeSwitch::new(2);
    for flow in held {
        switch_again.insert(flow);
    }
    connect(&switch_again, addr);
    wait_until("the switch is synchronised again", || {
        switch(&again, 2).synced_version == version
    })
    .await;
    assert_eq!(switch_again.flow_count(), desired.len());
    let difference = crate::diff::plan(&plain, &desired, crate::routing::SCC_COOKIE);
    assert!(!difference.is_empty() && difference.len() < desired.len());
    assert_eq!(
        switch_again.flow_mods(),
        difference.len() as u64,
        "the difference, not the whole table"
    );
}

#[tokio::test]
async fn a_destination_that_refuses_the_flows_is_never_ready() {
    let dir = tempfile::tempdir().unwrap();
    let (ctl, addr) = controller(dir.path(), SwitchSettings::default()).await;
    let fake = synchronised_fake(&ctl, addr, 2).await;
    assert!(
        switch(&ctl, 2).ports.contains_key(&7),
        "its ports were described"
    );

    fake.set_refusing(true);
    let prepared = ctl.start_migration("web1", "host-b", 7).unwrap();
    // The observer ran: the switch's error reached the controller.
    wait_until("the refusal is recorded", || {
        switch(&ctl, 2).last_error.is_some()
    })
    .await;
    wait_until("the session gives up", || fake.is_closed()).await;
    assert!(switch(&ctl, 2).synced_version < prepared, "not confirmed");
    let timeline: crate::migration::Timeline =
        serde_json::from_value(ctl.status()["timeline"].clone()).unwrap();
    assert!(timeline.has("prepare sent"), "{timeline:?}");
    assert!(
        !timeline.has("destination ready"),
        "never ready on refused flows: {timeline:?}"
    );
}

#[tokio::test]
async fn a_standby_claims_slave_and_sends_nothing_and_takes_over_without_flow_mods() {
    use crate::state_store::Mastership;
    let dir = tempfile::tempdir().unwrap();
    let (ctl, addr) = controller(dir.path(), SwitchSettings::default()).await;
    ctl.set_mastership(Mastership::Slave(3));
    let (version, desired) = ctl.desired(1).unwrap();
    let fake = FakeSwitch::new(1);
    connect(&fake, addr);
    wait_until("the switch accepts the slave", || {
        switch(&ctl, 1).role == Some(Mastership::Slave(3))
    })
    .await;
    // The flows were read back after the role (the last request of the
    // handshake): had the standby sent anything, it would be counted by now.
    wait_until("the standby reads the flows", || {
        switch(&ctl, 1).connected && fake.roles().len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.flow_mods(), 0, "a slave sends nothing");
    assert_eq!(switch(&ctl, 1).synced_version, 0);
    assert!(matches!(
        ctl.add_vm(ctl.vm("web1").unwrap()),
        Err(crate::daemon::ChangeError::Standby)
    ));

    ctl.set_mastership(Mastership::Master(4));
    wait_until("the new master programs the switch", || {
        switch(&ctl, 1).synced_version == version
    })
    .await;
    assert_eq!(fake.flow_count(), desired.len());
    let sent = fake.flow_mods();
    assert_eq!(sent, desired.len() as u64);

    // Deposed, then elected again (a new generation): the audit finds the
    // tables equal and sends nothing.
    ctl.set_mastership(Mastership::Slave(4));
    ctl.set_mastership(Mastership::Master(7));
    wait_until("the switch accepts the new generation", || {
        switch(&ctl, 1).role == Some(Mastership::Master(7))
    })
    .await;
    wait_until("the takeover's audit", || {
        fake.roles().last().map(|r| r.generation_id) == Some(7)
            && switch(&ctl, 1).last_flow_mods == 0
    })
    .await;
    assert_eq!(fake.flow_mods(), sent, "equal tables cost nothing");
    let roles: Vec<(ControllerRole, u64)> = fake
        .roles()
        .iter()
        .map(|r| (r.role, r.generation_id))
        .collect();
    assert_eq!(roles.first(), Some(&(ControllerRole::Slave, 3)));
    assert_eq!(roles.last(), Some(&(ControllerRole::Master, 7)));
}
