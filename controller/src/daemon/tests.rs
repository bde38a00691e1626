//! The daemon's change pipeline and migration driving, on the example inventory
//! with no switch connected; and that example controller, which the switch
//! sessions' tests (`crate::net`) start from.

use super::*;
use crate::migration::Phase;
use crate::model::Host;
use crate::store::Store;

fn controller(dir: &std::path::Path) -> Arc<Controller> {
    example_controller(dir, |_| {})
}

/// A controller over the example inventory as `edit` leaves it, with policy `id`,
/// its store in `dir` and no switch connected.
pub(crate) fn example_controller(
    dir: &std::path::Path,
    edit: impl FnOnce(&mut Inventory),
) -> Arc<Controller> {
    let mut inventory = Inventory::parse(
        include_str!("../../../docs/examples/inventory.toml"),
        "inventory.toml",
    )
    .unwrap();
    edit(&mut inventory);
    let persisted = Persisted::first(inventory, "id".into(), "p".into());
    Controller::new(persisted, Store::new(&dir.join("state.json"))).unwrap()
}

/// Marks every inventory host's switch connected, having described ports 1 to
/// 32, as a session does: a migration checks its destination port against them.
pub(crate) fn switches_up(ctl: &Controller) {
    for host in ctl.inventory().hosts.clone() {
        ctl.update_switch(host.datapath_id, |s| {
            s.connected = true;
            s.ports = (1..=32).map(|n| (n, format!("sc-port{n}"))).collect();
        });
    }
}

/// The program version the store in `dir` holds.
fn stored_version(dir: &std::path::Path) -> u64 {
    Store::new(&dir.join("state.json"))
        .load()
        .unwrap()
        .unwrap()
        .version
}

#[test]
fn a_refused_change_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = controller(dir.path());
    let before = ctl.lock().tables();
    let err = ctl.apply_policy("filter ip4Dst = ", "bad.kat").unwrap_err();
    assert!(err.to_string().contains("bad.kat:1:"), "{err}");
    assert_eq!(ctl.lock().tables(), before);
    assert_eq!(ctl.lock().persisted.version, 1);
    assert_eq!(stored_version(dir.path()), 1);
}

#[tokio::test]
async fn a_migration_to_a_port_the_destination_lacks_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = controller(dir.path());
    let before = ctl.lock().tables();
    let offline = ctl.start_migration("web1", "host-b", 7).unwrap_err();
    assert!(offline.to_string().contains("not connected"), "{offline}");
    switches_up(&ctl);
    let missing = ctl.start_migration("web1", "host-b", 99).unwrap_err();
    let text = missing.to_string();
    assert!(text.contains("has no port 99"), "{text}");
    assert!(
        text.contains("1 sc-port1"),
        "the known ports are listed: {text}"
    );
    assert_eq!(ctl.lock().tables(), before, "a refusal changes no table");
    assert!(ctl.lock().migration.is_none(), "and starts no migration");
    ctl.start_migration("web1", "host-b", 7).unwrap();
}

#[tokio::test]
async fn an_aborted_migration_restores_the_tables() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = controller(dir.path());
    switches_up(&ctl);
    let before = ctl.lock().tables();
    ctl.start_migration("web1", "host-b", 7).unwrap();
    assert_ne!(
        ctl.lock().tables(),
        before,
        "prepared: the destination learned the VM"
    );
    ctl.abort_migration().unwrap();
    assert_eq!(
        ctl.lock().tables(),
        before,
        "aborted: the tables are as they were"
    );
    assert!(ctl.abort_migration().is_err(), "nothing left to abort");
    ctl.start_migration("web1", "host-b", 7).unwrap();
    ctl.arrived(None, "test").unwrap();
    let err = ctl.abort_migration().unwrap_err().to_string();
    assert!(err.contains("already switched"), "{err}");
}

#[tokio::test]
async fn the_switch_step_is_compiled_ahead_and_equals_a_fresh_compile() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = controller(dir.path());
    switches_up(&ctl);
    ctl.start_migration("web1", "host-b", 7).unwrap();
    // A condition waited for, with a deadline no loaded machine reaches.
    let compiled_ahead = async {
        while !ctl
            .lock()
            .migration
            .as_ref()
            .is_some_and(|m| m.timeline.has("switch compiled"))
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), compiled_ahead)
        .await
        .expect("never compiled ahead");
    ctl.arrived(None, "test").unwrap();
    let st = ctl.lock();
    let fresh = crate::program::compile_network_during(
        &st.persisted.inventory,
        &st.persisted.policy,
        &st.persisted.policy_name,
        st.migration
            .as_ref()
            .and_then(MigrationState::program)
            .as_ref(),
    )
    .unwrap();
    assert_eq!(
        st.migration.as_ref().map(|m| m.phase),
        Some(Phase::Switched)
    );
    assert_eq!(st.tables(), fresh, "the tables sent are the switch step's");
    assert!(st.switch_ahead.is_none(), "used once");
}

#[test]
fn arrivals_by_migration_survive_a_restart_through_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = controller(dir.path());
    ctl.follower.moved("web1", 1_000);
    ctl.follower.moved("web1", 5_000);
    // Any change persists them; a controller started from the store has them.
    ctl.apply_policy("id", "p").unwrap();
    let stored = Store::new(&dir.path().join("state.json"))
        .load()
        .unwrap()
        .unwrap();
    assert_eq!(stored.moves_ms["web1"], [1_000, 5_000]);
    let again = Controller::new(stored, Store::new(&dir.path().join("state.json"))).unwrap();
    let snapshot = again.placement_snapshot(None);
    assert_eq!(snapshot.last_moved_ms["web1"], 5_000);
    assert_eq!(snapshot.recent_moves_ms["web1"], [1_000, 5_000]);
}

#[test]
fn a_round_without_a_move_command_says_so_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = controller(dir.path());
    let round = ctl.placement_round(true);
    assert!(round.started.is_none());
    assert!(round.note.unwrap().contains("no `migrate` command"));
    assert_eq!(round.decisions.len(), ctl.inventory().vms.len());
}

#[test]
fn hosts_come_and_go_with_checks() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = controller(dir.path());
    let host = Host {
        name: "host-d".into(),
        cloud: "gcp-europe".into(),
        datapath_id: 4,
        tunnel_endpoint: "198.51.100.3:51820".parse().unwrap(),
        public_key: "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=".into(),
        vm_prefix: None,
    };
    assert!(ctl
        .add_host(Host {
            cloud: "nowhere".into(),
            ..host.clone()
        })
        .is_err());
    assert!(ctl
        .add_host(Host {
            datapath_id: 1,
            ..host.clone()
        })
        .unwrap_err()
        .to_string()
        .contains("already used by host `host-a`"));
    assert_eq!(ctl.add_host(host).unwrap(), 2);
    assert!(
        ctl.lock().program.table(4).is_some(),
        "the new host gets a table"
    );
    let err = ctl.remove_host("host-a").unwrap_err().to_string();
    assert!(err.contains("still runs VM `web1`"), "{err}");
    assert_eq!(ctl.remove_host("host-d").unwrap(), 3);
    assert!(ctl.lock().program.table(4).is_none());
    assert_eq!(stored_version(dir.path()), 3);
}

#[test]
fn a_standby_adopts_newer_versions_only_and_writes_nothing() {
    let leader_dir = tempfile::tempdir().unwrap();
    let leader = controller(leader_dir.path());
    let standby_dir = tempfile::tempdir().unwrap();
    let first = leader.lock().persisted.clone();
    let standby = Controller::replica(
        first.clone(),
        Store::new(&standby_dir.path().join("state.json")),
        Mastership::Slave(1),
    )
    .unwrap();
    leader.remove_vm("batch1").unwrap();
    let second = leader.lock().persisted.clone();
    let versions = standby.versions();
    assert_eq!(standby.adopt(second.clone()).unwrap(), Some(2));
    assert!(versions.has_changed().unwrap(), "the sessions are told");
    assert_eq!(standby.lock().tables(), leader.lock().tables());
    assert!(standby.vm("batch1").is_none());
    // Its own write read back, or an older one, changes nothing.
    assert_eq!(standby.adopt(second).unwrap(), None);
    assert_eq!(standby.adopt(first.clone()).unwrap(), None);
    // A state that does not compile is refused whole.
    let bad = Persisted {
        policy: "filter ip4Dst = ".into(),
        version: 9,
        ..first
    };
    assert!(standby.adopt(bad).is_err());
    assert_eq!(standby.lock().persisted.version, 2);
    // A standby refuses changes and never wrote its store.
    assert!(matches!(
        standby.remove_vm("web1"),
        Err(ChangeError::Standby)
    ));
    assert!(Store::new(&standby_dir.path().join("state.json"))
        .load()
        .unwrap()
        .is_none());
}
