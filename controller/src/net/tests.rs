//! Switch sessions against a fake switch (`fake_switch`, a table behind the
//! OpenFlow codec), on a real loopback connection to the controller's listener.
//! The audit puts back a flow deleted behind the controller's back and sends
//! nothing when the tables match; a switch that stops answering is marked
//! disconnected, its connection closed, and it is welcome back.

use super::serve_openflow;
use crate::daemon::tests::example_controller;
use crate::daemon::{Controller, SwitchStatus};
use crate::model::SwitchSettings;
use fake_switch::FakeSwitch;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// A deadline no loaded machine reaches; the tests wait for conditions.
const DEADLINE: Duration = Duration::from_secs(120);

/// A controller over the example inventory with these settings, listening for
/// switches on a loopback port.
async fn controller(
    dir: &std::path::Path,
    settings: SwitchSettings,
) -> (Arc<Controller>, SocketAddr) {
    let ctl = example_controller(dir, |inventory| inventory.switch_settings = settings);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_openflow(listener, ctl.clone()));
    (ctl, addr)
}

fn switch(ctl: &Controller, dpid: u64) -> SwitchStatus {
    let host = ctl.inventory().host_by_dpid(dpid).unwrap().name.clone();
    ctl.switch_report()
        .into_iter()
        .find(|(name, _)| *name == host)
        .map(|(_, s)| s)
        .unwrap()
}

/// Waits until `done` holds, at most [`DEADLINE`]; panics saying `what` otherwise.
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
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
    let fake = FakeSwitch::new(1);
    connect(&fake, addr);
    wait_until("the switch is synchronised", || {
        switch(&ctl, 1).synced_version == version
    })
    .await;
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
