//! Crash safety of the change pipeline, without sockets: a random sequence of
//! operations (VMs added and removed, migrations prepared, arrived, aborted and
//! cleaned up, policies applied) is run by a controller that never stops and by
//! one that crashes after every operation (dropped with its runtime and its
//! pending tasks, a torn temporary file left beside the store) and is started
//! again from the store the way `scc run` starts it. After every operation both
//! have answered alike and want the same tables on every switch. A crash right
//! after the store's append, before the version is published, loses nothing
//! the store accepted: the restarted controller holds it.

use super::tests::example_controller;
use super::*;
use crate::migration::Phase;
use crate::store::Store;
use openflow::flow::Mac;
use proptest::prelude::*;

/// One thing an operator, a hypervisor or the grace timer does.
#[derive(Debug, Clone)]
enum Op {
    AddVm { slot: u8, host: u8, port: u8 },
    RemoveVm { slot: u8 },
    Migrate { slot: u8, host: u8, port: u8 },
    Arrived,
    Abort,
    GraceElapsed,
    Policy(u8),
}

const HOSTS: [&str; 3] = ["host-a", "host-b", "host-c"];
const POLICIES: [&str; 3] = [
    "id",
    "filter ethType = 0x800",
    "filter not ip4Dst = 100.64.2.1",
];

/// The VM names an operation picks from: the example's and those the test adds.
fn vm_name(slot: u8) -> String {
    match slot % 6 {
        0 => "web1".into(),
        1 => "db1".into(),
        2 => "batch1".into(),
        n => format!("t{n}"),
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0u8..6, 0u8..3, 1u8..5).prop_map(|(slot, host, port)| Op::AddVm { slot, host, port }),
        1 => (0u8..6).prop_map(|slot| Op::RemoveVm { slot }),
        3 => (0u8..6, 0u8..3, 1u8..5)
            .prop_map(|(slot, host, port)| Op::Migrate { slot, host, port }),
        3 => Just(Op::Arrived),
        1 => Just(Op::Abort),
        2 => Just(Op::GraceElapsed),
        1 => (0u8..3).prop_map(Op::Policy),
    ]
}

/// Runs `op`; only whether it was accepted is compared (versions differ: a
/// restart is a version of its own).
fn run(ctl: &Arc<Controller>, rt: &tokio::runtime::Runtime, op: &Op) -> bool {
    match *op {
        Op::AddVm { slot, host, port } => {
            let name = vm_name(slot);
            let n = slot % 6 + 1;
            ctl.add_vm(Vm {
                tap: Vm::default_tap(&name),
                mac: Mac([2, 0, 0, 0, 9, n]),
                ip: std::net::Ipv4Addr::new(100, 64, 9, n),
                host: HOSTS[usize::from(host)].into(),
                port: u32::from(port) + 10,
                netns: None,
                tenant: None,
                public_ip: None,
                ipv6: None,
                public_ipv6: None,
                name,
            })
            .is_ok()
        }
        Op::RemoveVm { slot } => ctl.remove_vm(&vm_name(slot)).is_ok(),
        Op::Migrate { slot, host, port } => ctl
            .start_migration(
                &vm_name(slot),
                HOSTS[usize::from(host)],
                u32::from(port) + 20,
            )
            .is_ok(),
        Op::Arrived => ctl.arrived(None, "test").is_ok(),
        Op::Abort => ctl.abort_migration().is_ok(),
        Op::GraceElapsed => {
            let switched = ctl
                .lock()
                .migration
                .as_ref()
                .is_some_and(|m| m.phase == Phase::Switched);
            rt.block_on(ctl.clean_up());
            switched
        }
        Op::Policy(k) => ctl
            .apply_policy(POLICIES[usize::from(k)], &format!("p{k}.kat"))
            .is_ok(),
    }
}

/// A runtime whose timers never fire unless a test waits on it: the grace
/// period's clean-up runs only as [`Op::GraceElapsed`], in both controllers alike.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

/// What must be equal: the tables of every switch, the inventory, and where the
/// migration stands.
fn observed(
    ctl: &Controller,
) -> (
    BTreeMap<u64, Vec<openflow::FlowSpec>>,
    Inventory,
    Option<Phase>,
) {
    let st = ctl.lock();
    (
        st.tables(),
        (*st.persisted.inventory).clone(),
        st.migration.as_ref().map(|m| m.phase),
    )
}

/// The crash: the process is gone with its runtime and everything it had
/// pending, a half-written temporary file is left beside the store, and `scc
/// run` starts again from the store (and an inventory file it must not use).
fn crash_and_restart(
    ctl: Arc<Controller>,
    rt: tokio::runtime::Runtime,
    dir: &std::path::Path,
) -> (Arc<Controller>, tokio::runtime::Runtime) {
    drop(rt);
    drop(ctl);
    std::fs::write(dir.join(".state.json.tmp"), b"{\"inventory\": {\"tor").unwrap();
    started(dir, Store::new(&dir.join("state.json")))
}

/// `scc run` starting from the store in `dir` (and an inventory file it must
/// not use), with the switches connected.
fn started(
    dir: &std::path::Path,
    store: impl StateStore + 'static,
) -> (Arc<Controller>, tokio::runtime::Runtime) {
    let stale_file = Inventory::parse(
        include_str!("../../../docs/examples/inventory.toml"),
        "inventory.toml",
    )
    .unwrap();
    let start = crate::restart::start(
        Store::new(&dir.join("state.json")).load().unwrap(),
        Some((stale_file, "inventory.toml".into())),
        None,
    )
    .unwrap();
    let ctl = Controller::new(start.persisted, store).unwrap();
    super::tests::switches_up(&ctl);
    let rt = runtime();
    {
        let _entered = rt.enter();
        ctl.resume();
    }
    (ctl, rt)
}

/// The embedded store, and the process dying (a panic) as soon as a save is
/// durable, before the controller publishes its version: what was saved is
/// kept aside to compare with what a restart finds.
#[derive(Debug)]
struct DiesAfterSaving {
    store: Store,
    armed: Arc<std::sync::atomic::AtomicBool>,
    saved: Arc<Mutex<Option<Persisted>>>,
}

impl StateStore for DiesAfterSaving {
    fn load(&self) -> std::io::Result<Option<Persisted>> {
        self.store.load()
    }
    fn save(&self, state: &Persisted) -> std::io::Result<()> {
        self.store.save(state)?;
        if self.armed.load(std::sync::atomic::Ordering::SeqCst) {
            *self.saved.lock().unwrap() = Some(state.clone());
            panic!("crash between the journal's append and the version's publication");
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn a_controller_crashing_after_every_step_wants_the_tables_of_one_that_never_did(
        ops in proptest::collection::vec(op(), 1..14)
    ) {
        let (steady_dir, crashing_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let steady = example_controller(steady_dir.path(), |_| {});
        super::tests::switches_up(&steady);
        let steady_rt = runtime();
        let mut crashing = example_controller(crashing_dir.path(), |_| {});
        super::tests::switches_up(&crashing);
        let mut crashing_rt = runtime();
        for (i, op) in ops.iter().enumerate() {
            let accepted = {
                let _entered = steady_rt.enter();
                run(&steady, &steady_rt, op)
            };
            let accepted_after_crashes = {
                let _entered = crashing_rt.enter();
                run(&crashing, &crashing_rt, op)
            };
            prop_assert_eq!(accepted, accepted_after_crashes, "step {} ({:?}) answered alike", i, op);
            (crashing, crashing_rt) = crash_and_restart(crashing, crashing_rt, crashing_dir.path());
            prop_assert!(
                observed(&steady) == observed(&crashing),
                "after step {} ({:?}) and a restart the tables, inventory and migration differ",
                i,
                op
            );
        }
    }
}

/// A crash as soon as the store accepted a change, before any switch heard of
/// it: a VM added, a migration prepared, a migration's switch step, a policy.
/// The restarted controller holds each of them and wants the tables compiled
/// from what was saved.
#[test]
fn a_crash_between_the_append_and_the_publication_loses_no_committed_state() {
    let dir = tempfile::tempdir().unwrap();
    drop(example_controller(dir.path(), |_| {}));
    let ops = [
        Op::AddVm {
            slot: 3,
            host: 1,
            port: 2,
        },
        Op::Migrate {
            slot: 0,
            host: 2,
            port: 1,
        },
        Op::Arrived,
        Op::Policy(1),
    ];
    for op in &ops {
        let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let saved = Arc::new(Mutex::new(None));
        let store = DiesAfterSaving {
            store: Store::new(&dir.path().join("state.json")),
            armed: armed.clone(),
            saved: saved.clone(),
        };
        let (ctl, rt) = started(dir.path(), store);
        armed.store(true, std::sync::atomic::Ordering::SeqCst);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _entered = rt.enter();
            run(&ctl, &rt, op)
        }));
        assert!(outcome.is_err(), "{op:?} was saved, and the crash came");
        drop(ctl);
        drop(rt);
        let committed = saved.lock().unwrap().take().expect("a saved state");
        let (after, _rt) = started(dir.path(), Store::new(&dir.path().join("state.json")));
        let st = after.lock();
        assert!(st.persisted.version > committed.version, "{op:?}");
        assert_eq!(*st.persisted.inventory, *committed.inventory, "{op:?}");
        assert_eq!(st.persisted.policy, committed.policy, "{op:?}");
        assert_eq!(
            st.migration.as_ref().map(|m| m.phase),
            committed.migration.as_ref().map(|m| m.phase),
            "{op:?}"
        );
        assert_eq!(
            st.tables(),
            compile_persisted(&committed).unwrap().flat_tables(),
            "{op:?}"
        );
    }
}

/// The first "must show" as a plain test: a restart at each phase resumes it,
/// and `--arrived` and `--abort` work after it.
#[test]
fn arrived_and_abort_work_after_a_restart_at_each_phase() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let entered = rt.enter();
    let ctl = example_controller(dir.path(), |_| {});
    super::tests::switches_up(&ctl);
    let before = ctl.lock().tables();
    ctl.start_migration("web1", "host-b", 7).unwrap();
    drop(entered);
    let (ctl, rt) = crash_and_restart(ctl, rt, dir.path());
    let prepared = ctl.lock().migration.clone().unwrap();
    assert_eq!(prepared.phase, Phase::Prepared);
    assert!(prepared.timeline.has("resumed after restart"));
    assert!(
        ctl.migrating(),
        "the sessions know a migration is in progress"
    );
    assert!(
        ctl.prepared_for("web1"),
        "the announcement is still awaited"
    );
    ctl.abort_migration().unwrap();
    assert_eq!(ctl.lock().tables(), before, "aborted after the restart");

    let entered = rt.enter();
    ctl.start_migration("web1", "host-b", 7).unwrap();
    drop(entered);
    let (ctl, rt) = crash_and_restart(ctl, rt, dir.path());
    let entered = rt.enter();
    ctl.arrived(None, "test").unwrap();
    drop(entered);
    let (ctl, rt) = crash_and_restart(ctl, rt, dir.path());
    assert_eq!(ctl.vm("web1").unwrap().host, "host-b");
    let err = ctl.abort_migration().unwrap_err().to_string();
    assert!(err.contains("already switched"), "{err}");
    // The clean-up the restart scheduled runs after the grace period.
    rt.block_on(async {
        while ctl.migrating() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert_eq!(
        ctl.lock().migration.as_ref().map(|m| m.phase),
        Some(Phase::Cleaned)
    );
    let (ctl, _rt) = crash_and_restart(ctl, rt, dir.path());
    assert_eq!(
        ctl.lock().migration.as_ref().map(|m| m.phase),
        Some(Phase::Cleaned),
        "an ended migration stays ended"
    );
    assert!(ctl.abort_migration().is_err(), "nothing left to abort");
}

/// A standby adopts the migration phase the leader committed with its version
/// (the tables the leader wants) and, elected, resumes it as a restarted
/// controller does: `--abort` rolls it back (first round), `--arrived`
/// completes it (second round, the two replicas' roles swapped).
#[test]
fn an_elected_standby_resumes_the_migration_the_leader_left_prepared() {
    let rt = runtime();
    let _entered = rt.enter();
    let (leader_dir, standby_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut leader = example_controller(leader_dir.path(), |_| {});
    let before = leader.lock().tables().clone();
    let standby_store = Store::new(&standby_dir.path().join("state.json"));
    let mut standby = Controller::replica(
        leader.lock().persisted.clone(),
        standby_store,
        Mastership::Slave(1),
    )
    .unwrap();
    super::tests::switches_up(&leader);
    super::tests::switches_up(&standby);
    for (generation, round) in [(2, "abort"), (3, "arrived")] {
        leader.start_migration("web1", "host-b", 7).unwrap();
        let prepared = leader.lock().persisted.clone();
        assert!(standby.adopt(prepared).unwrap().is_some());
        assert_eq!(standby.lock().tables(), leader.lock().tables(), "{round}");
        assert!(standby.prepared_for("web1"), "{round}: the phase adopted");
        // The leader dies; the standby is elected.
        leader.set_mastership(Mastership::Slave(generation));
        standby.set_mastership(Mastership::Master(generation));
        let resumed = standby.resume().expect("a migration to resume");
        assert!(resumed.contains("waiting for its arrival"), "{resumed}");
        if round == "abort" {
            standby.abort_migration().unwrap();
            assert_eq!(standby.lock().tables(), before, "rolled back");
            assert_eq!(standby.vm("web1").unwrap().host, "host-a");
        } else {
            standby.arrived(None, "test").unwrap();
            assert_eq!(standby.vm("web1").unwrap().host, "host-b");
        }
        // The old leader comes back as the new one's standby and follows it.
        assert!(leader
            .adopt(standby.lock().persisted.clone())
            .unwrap()
            .is_some());
        assert_eq!(leader.lock().tables(), standby.lock().tables(), "{round}");
        assert!(!leader.prepared_for("web1"), "{round}: ended everywhere");
        std::mem::swap(&mut leader, &mut standby);
    }
}
