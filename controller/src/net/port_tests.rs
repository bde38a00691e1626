//! Ports the controller manages during a migration, against fake switches that
//! take add-port and del-port as `scd` does: a destination port the switch
//! lacks is added (and announced) before the migration starts, the source port
//! is removed after the clean-up, and a switch that refuses the port leaves no
//! migration started.

use super::tests::{controller, switch, synchronised_fake, wait_until};
use crate::migration::Timeline;
use crate::model::SwitchSettings;
use std::sync::Arc;

fn timeline(ctl: &crate::daemon::Controller) -> Timeline {
    serde_json::from_value(ctl.status()["timeline"].clone()).unwrap()
}

#[tokio::test]
async fn a_missing_destination_port_is_added_and_the_source_port_removed_after_the_clean_up() {
    let dir = tempfile::tempdir().unwrap();
    let (ctl, addr) = controller(dir.path(), SwitchSettings::default()).await;
    let source = synchronised_fake(&ctl, addr, 1).await;
    let destination = synchronised_fake(&ctl, addr, 2).await;
    assert!(!switch(&ctl, 2).ports.contains_key(&20), "port 20 is new");
    assert!(source.ports().iter().any(|p| p.port_no == 1), "web1's port");

    Arc::clone(&ctl)
        .start_migration_managing_ports("web1", "host-b", 20, Some("web1-b".into()), true)
        .await
        .unwrap();
    let added = destination.ports();
    assert!(
        added.iter().any(|p| p.port_no == 20 && p.name == "web1-b"),
        "{added:?}"
    );
    assert_eq!(
        switch(&ctl, 2).ports.get(&20).map(String::as_str),
        Some("web1-b"),
        "the port-status reached the controller before the start"
    );
    assert!(timeline(&ctl).has("destination port 20 added (web1-b)"));
    wait_until("the destination is ready", || {
        timeline(&ctl).has("destination ready")
    })
    .await;

    ctl.arrived(None, "test").unwrap();
    wait_until("the source port is removed", || {
        timeline(&ctl).has("source port 1 removed")
    })
    .await;
    assert!(timeline(&ctl).has("cleaned up"));
    assert!(!source.ports().iter().any(|p| p.port_no == 1));
    assert!(!switch(&ctl, 1).ports.contains_key(&1));
}

#[tokio::test]
async fn a_port_the_switch_refuses_starts_no_migration() {
    let dir = tempfile::tempdir().unwrap();
    let (ctl, addr) = controller(dir.path(), SwitchSettings::default()).await;
    let destination = synchronised_fake(&ctl, addr, 2).await;
    let before = destination.ports();
    // web1's TAP name is taken on host-b: the switch refuses the port.
    let mut clash = before.clone();
    clash.push(fake_switch::port(30, "sc-web1"));
    destination.set_ports(clash);
    // The controller learns of it as from any port-status or description.
    ctl.update_switch(2, |s| {
        s.ports.insert(30, "sc-web1".into());
    });

    let refused = Arc::clone(&ctl)
        .start_migration_managing_ports("web1", "host-b", 20, None, true)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("did not add port 20 (`sc-web1`)") && refused.contains("refused"),
        "{refused}"
    );
    assert!(!ctl.migrating(), "nothing started");
    assert!(!switch(&ctl, 2).ports.contains_key(&20));
}
