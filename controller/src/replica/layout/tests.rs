//! The layout's promises, on the fake store: a change is one small guarded
//! write; a state of any size is written within the request limits and read
//! back in pages; a crash or a lost answer at any write leaves the state before
//! or the state after, never a mix; a deposed leader writes nothing; a store of
//! the first layout is read and rewritten.

use super::memory::{Fault, MemoryKv};
use super::*;
use crate::model::{Inventory, Vm};

const LEADER: i64 = 7;

fn example() -> Persisted {
    let inventory = Inventory::parse(
        include_str!("../../../../docs/examples/inventory.toml"),
        "inventory.toml",
    )
    .unwrap();
    Persisted::first(inventory, "id".into(), "p.kat".into())
}

/// `state`, one version on, with `n` more VMs named `{tag}{i}`.
fn with_vms(state: &Persisted, tag: &str, n: usize) -> Persisted {
    let mut next = state.clone();
    next.version += 1;
    let template = next.inventory.vms.values().next().cloned().unwrap();
    let vms = &mut Arc::make_mut(&mut next.inventory).vms;
    for i in 0..n {
        let name = format!("{tag}{i}");
        let vm = Vm {
            tap: Vm::default_tap(&name),
            name: name.clone(),
            ..template.clone()
        };
        vms.insert(name, vm);
    }
    next
}

fn layout(kv: MemoryKv) -> Arc<Layout<MemoryKv>> {
    // No compaction unless a test asks for one.
    let limits = CompactionLimits {
        records: usize::MAX,
        bytes: usize::MAX,
    };
    Layout::new(kv, "/t/", limits)
}

/// What a replica starting now would read.
fn fresh_read(layout: &Layout<MemoryKv>) -> Option<Persisted> {
    layout.read().unwrap().state
}

#[test]
fn a_change_is_one_small_record_and_reads_back() {
    let store = layout(MemoryKv::with_leader(LEADER));
    let first = example();
    store.save(LEADER, &first).unwrap();
    let writes = store.kv().writes();
    let next = with_vms(&first, "added", 1);
    store.save(LEADER, &next).unwrap();
    assert_eq!(store.kv().writes(), writes + 1, "one guarded write");
    let keys = store.kv().live_keys();
    assert!(
        keys.contains(&store.keys().record(next.version)),
        "{keys:?}"
    );
    assert_eq!(fresh_read(&store), Some(next.clone()));
    // The same state again writes nothing.
    store.save(LEADER, &next).unwrap();
    assert_eq!(store.kv().writes(), writes + 1);
}

#[test]
fn a_big_state_is_written_in_chunks_within_the_limits_and_read_in_pages() {
    let store = layout(MemoryKv::with_leader(LEADER));
    let big = with_vms(&example(), "vm", 9_000);
    store.save(LEADER, &big).unwrap();
    let chunks = store
        .kv()
        .live_keys()
        .iter()
        .filter(|k| k.contains("/snap/"))
        .count();
    assert!(chunks >= 2, "{chunks} chunks");
    assert!(
        store.kv().largest_write() < 3 << 19,
        "under 1.5 MiB a request"
    );
    assert_eq!(fresh_read(&store), Some(big.clone()));
    // An import bigger than a record: a new generation, the old one deleted.
    let import = with_vms(&big, "imported", 3_000);
    store.save(LEADER, &import).unwrap();
    assert_eq!(fresh_read(&store), Some(import.clone()));
    let generations: std::collections::BTreeSet<String> = store
        .kv()
        .live_keys()
        .iter()
        .filter_map(|k| k.strip_prefix("/t/v2/snap/"))
        .filter_map(|k| k.split('/').next().map(str::to_string))
        .collect();
    assert_eq!(generations.len(), 1, "{generations:?}");
    assert!(store.kv().largest_write() < 3 << 19);
}

#[test]
fn a_store_of_the_first_layout_is_read_and_rewritten_by_the_first_save() {
    let kv = MemoryKv::with_leader(LEADER);
    let old = example();
    kv.put("/t/state", &serde_json::to_vec(&old).unwrap());
    let store = layout(kv);
    assert_eq!(store.load(Some(LEADER)).unwrap().state, Some(old.clone()));
    let next = with_vms(&old, "new", 1);
    store.save(LEADER, &next).unwrap();
    let keys = store.kv().live_keys();
    assert!(!keys.contains(&"/t/state".to_string()), "{keys:?}");
    assert!(keys.contains(&"/t/v2/current".to_string()), "{keys:?}");
    assert_eq!(fresh_read(&store), Some(next));
}

#[test]
fn a_deposed_leader_writes_nothing() {
    let store = layout(MemoryKv::with_leader(LEADER));
    let first = example();
    store.save(LEADER, &first).unwrap();
    store.kv().set_leader(LEADER + 1);
    let writes = store.kv().writes();
    let refused = store.save(LEADER, &with_vms(&first, "x", 1)).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::PermissionDenied);
    let refused = store
        .save(LEADER, &with_vms(&first, "big", 3_000))
        .unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::PermissionDenied);
    assert!(store.kv().writes() > writes, "the writes were tried");
    assert_eq!(fresh_read(&store), Some(first));
}

#[test]
fn a_state_that_goes_back_replaces_the_newer_records() {
    let store = layout(MemoryKv::with_leader(LEADER));
    let first = example();
    store.save(LEADER, &first).unwrap();
    let second = with_vms(&first, "a", 1);
    let third = with_vms(&second, "b", 1);
    store.save(LEADER, &second).unwrap();
    store.save(LEADER, &third).unwrap();
    store.save(LEADER, &first).unwrap();
    assert_eq!(fresh_read(&store), Some(first));
}

#[test]
fn compaction_folds_the_records_into_a_new_generation() {
    let store = layout(MemoryKv::with_leader(LEADER));
    let mut state = with_vms(&example(), "vm", 100);
    store.save(LEADER, &state).unwrap();
    for i in 0..5 {
        state = with_vms(&state, &format!("n{i}-"), 1);
        store.save(LEADER, &state).unwrap();
    }
    store.compact(LEADER).unwrap();
    let records = |s: &Layout<MemoryKv>| {
        s.kv()
            .live_keys()
            .iter()
            .filter(|k| k.contains("/rec/"))
            .count()
    };
    assert_eq!(records(&store), 0);
    state = with_vms(&state, "after", 1);
    store.save(LEADER, &state).unwrap();
    assert_eq!(records(&store), 1);
    assert_eq!(fresh_read(&store), Some(state.clone()));

    // Past its limits a save starts the compaction on a thread of its own.
    let auto = Layout::new(
        MemoryKv::with_leader(LEADER),
        "/t/",
        CompactionLimits {
            records: 3,
            bytes: usize::MAX,
        },
    );
    let mut state = example();
    auto.save(LEADER, &state).unwrap();
    for i in 0..3 {
        state = with_vms(&state, &format!("m{i}-"), 1);
        auto.save(LEADER, &state).unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while records(&auto) != 0 {
        assert!(std::time::Instant::now() < deadline, "no compaction");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(fresh_read(&auto), Some(state));
}

/// A sequence of saves as the daemon makes them: a first import, small changes,
/// an import too big for a record, a compaction.
fn sequence() -> Vec<Persisted> {
    let first = with_vms(&example(), "vm", 7_000);
    let a = with_vms(&first, "a", 1);
    let import = with_vms(&a, "import", 2_000);
    let b = with_vms(&import, "b", 1);
    vec![first, a, import, b]
}

#[test]
fn a_failure_at_any_write_leaves_the_state_before_or_after() {
    let states = sequence();
    // Writes a clean run makes.
    let clean = layout(MemoryKv::with_leader(LEADER));
    for s in &states {
        clean.save(LEADER, s).unwrap();
    }
    clean.compact(LEADER).unwrap();
    let total = clean.kv().writes();
    assert!(total > 10, "{total} writes");
    for nth in 0..total {
        for fault in [Fault::Before, Fault::After] {
            let store = layout(MemoryKv::with_leader(LEADER));
            store.kv().fail(nth, fault);
            let mut committed: Option<Persisted> = None;
            for s in &states {
                match store.save(LEADER, s) {
                    Ok(()) => committed = Some(s.clone()),
                    Err(_) => {
                        let seen = fresh_read(&store);
                        assert!(
                            seen == committed || seen.as_ref() == Some(s),
                            "write {nth} {fault:?}: a state neither before nor after version {}",
                            s.version
                        );
                        // The daemon's next change comes from what it holds:
                        // the same state retried.
                        store.save(LEADER, s).unwrap();
                        committed = Some(s.clone());
                    }
                }
                assert_eq!(fresh_read(&store), committed, "write {nth} {fault:?}");
            }
            // A compaction that fails changes nothing in force.
            let _ = store.compact(LEADER);
            assert_eq!(fresh_read(&store), committed, "write {nth} {fault:?}");
            let last = with_vms(states.last().unwrap(), "z", 1);
            store.save(LEADER, &last).unwrap();
            assert_eq!(fresh_read(&store), Some(last), "write {nth} {fault:?}");
        }
    }
}
