//! The store's promises: a load after any save gives the state saved last,
//! whether the journal was compacted or not; a journal cut at any byte gives the
//! state of its last whole record; damage before the last record is an error
//! naming the journal and the byte; a one-file store of an older `scc` loads.

use super::*;
use crate::model::{Host, Vm, VmPlacement};
use openflow::flow::Mac;
use proptest::prelude::*;
use std::time::Duration;

fn example() -> Persisted {
    let inventory = Inventory::parse(
        include_str!("../../../docs/examples/inventory.toml"),
        "inventory.toml",
    )
    .unwrap();
    Persisted::first(inventory, "id".into(), "p.kat".into())
}

/// One accepted change, as the daemon makes them.
#[derive(Debug, Clone)]
enum Op {
    AddVm { slot: u8, host: u8 },
    RemoveVm { slot: u8 },
    Policy(u8),
    Moved { slot: u8, at: u64 },
    ForgetMoves,
    Migrate,
    MigrationEnded,
    AddHost(u8),
    RemoveHost(u8),
    Audit(u8),
    Placement { slot: u8, ram: Option<u16> },
    Compact,
}

const HOSTS: [&str; 3] = ["host-a", "host-b", "host-c"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..8, 0u8..3).prop_map(|(slot, host)| Op::AddVm { slot, host }),
        2 => (0u8..8).prop_map(|slot| Op::RemoveVm { slot }),
        1 => (0u8..3).prop_map(Op::Policy),
        2 => (0u8..8, 0u64..1_000).prop_map(|(slot, at)| Op::Moved { slot, at }),
        1 => Just(Op::ForgetMoves),
        2 => Just(Op::Migrate),
        1 => Just(Op::MigrationEnded),
        1 => (0u8..3).prop_map(Op::AddHost),
        1 => (0u8..3).prop_map(Op::RemoveHost),
        1 => (0u8..4).prop_map(Op::Audit),
        1 => (0u8..8, proptest::option::of(1u16..4096))
            .prop_map(|(slot, ram)| Op::Placement { slot, ram }),
        1 => Just(Op::Compact),
    ]
}

fn vm_name(slot: u8) -> String {
    match slot {
        0 => "web1".into(),
        1 => "db1".into(),
        n => format!("t{n}"),
    }
}

/// The state after `op` on `state`, with the next version (the inventory
/// copied only when the op changes it, as the daemon does).
fn next(state: &Persisted, op: &Op) -> Persisted {
    let mut next = state.clone();
    next.version += 1;
    let now = Duration::from_secs(next.version);
    match *op {
        Op::AddVm { slot, host } => {
            let name = vm_name(slot);
            Arc::make_mut(&mut next.inventory).vms.insert(
                name.clone(),
                Vm {
                    tap: Vm::default_tap(&name),
                    mac: Mac([2, 0, 0, 0, 9, slot]),
                    ip: std::net::Ipv4Addr::new(100, 64, 9, slot),
                    host: HOSTS[usize::from(host)].into(),
                    port: u32::from(slot) + 10,
                    netns: None,
                    tenant: Some(format!("tenant{host}")),
                    public_ip: None,
                    ipv6: None,
                    public_ipv6: None,
                    name,
                },
            );
        }
        Op::RemoveVm { slot } => {
            Arc::make_mut(&mut next.inventory)
                .vms
                .remove(&vm_name(slot));
        }
        Op::Policy(k) => {
            next.policy = format!("filter port = {k}");
            next.policy_name = format!("p{k}.kat");
        }
        Op::Moved { slot, at } => next.moves_ms.entry(vm_name(slot)).or_default().push(at),
        Op::ForgetMoves => next.moves_ms.clear(),
        Op::Migrate => {
            let target = HOSTS.iter().find(|h| {
                next.inventory
                    .vms
                    .get("web1")
                    .is_some_and(|v| v.host != **h)
            });
            if let Some(Ok((mut m, _))) =
                target.map(|to| MigrationState::start(None, &next.inventory, "web1", to, 31, now))
            {
                m.prepared(next.version, now);
                next.migration = Some(m);
            }
        }
        Op::MigrationEnded => {
            if let Some(m) = next.migration.as_mut() {
                m.switched(next.version, now);
            }
        }
        Op::AddHost(k) => {
            let inventory = Arc::make_mut(&mut next.inventory);
            let name = format!("extra{k}");
            inventory.hosts.retain(|h| h.name != name);
            inventory.hosts.push(Host {
                name,
                cloud: "aws-us-east".into(),
                datapath_id: 100 + u64::from(k),
                tunnel_endpoint: format!("192.0.2.{}:51820", 100 + k).parse().unwrap(),
                public_key: "AAAA".into(),
                vm_prefix: None,
            });
        }
        Op::RemoveHost(k) => {
            let name = format!("extra{k}");
            Arc::make_mut(&mut next.inventory)
                .hosts
                .retain(|h| h.name != name);
        }
        Op::Audit(s) => {
            Arc::make_mut(&mut next.inventory)
                .switch_settings
                .audit_every_s = u64::from(s);
        }
        Op::Placement { slot, ram } => {
            let placement = &mut Arc::make_mut(&mut next.inventory).placement;
            match ram {
                Some(ram) => {
                    placement.insert(
                        vm_name(slot),
                        VmPlacement {
                            ram_mib: Some(u64::from(ram)),
                            ..VmPlacement::default()
                        },
                    );
                }
                None => {
                    placement.remove(&vm_name(slot));
                }
            }
        }
        Op::Compact => {}
    }
    next
}

fn loaded(path: &Path) -> Persisted {
    Store::new(path).load().unwrap().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn a_load_gives_the_last_saved_state_and_a_cut_journal_its_last_whole_record(
        ops in proptest::collection::vec(op(), 1..24),
        cut in any::<proptest::sample::Index>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scc-state.json");
        let store = Store::new(&path);
        let mut state = example();
        store.save(&state).unwrap();
        // Each state saved since the last compaction, with the journal's length
        // once it was appended.
        let mut journalled = vec![(0, state.clone())];
        for op in &ops {
            if let Op::Compact = op {
                store.compact().unwrap();
                let len = store.journal_size().0;
                prop_assert_eq!(len, 0, "nothing was saved during the compaction");
                journalled = vec![(0, state.clone())];
            }
            state = next(&state, op);
            store.save(&state).unwrap();
            journalled.push((store.journal_size().0, state.clone()));
            prop_assert_eq!(&loaded(&path), &state, "after {:?}", op);
        }
        let bytes = std::fs::read(store.journal_path()).unwrap_or_default();
        let at = cut.index(bytes.len() + 1);
        std::fs::write(store.journal_path(), &bytes[..at]).unwrap();
        let whole = journalled.iter().rev().find(|(len, _)| *len <= at as u64).unwrap();
        prop_assert_eq!(&loaded(&path), &whole.1, "journal cut at byte {}", at);
        // The torn record was cut off, and the next save follows the whole ones.
        let after = next(&whole.1, &Op::Policy(2));
        let store = Store::new(&path);
        store.save(&after).unwrap();
        prop_assert_eq!(loaded(&path), after);
    }
}

#[test]
fn a_record_holds_what_changed_not_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(&dir.path().join("scc-state.json"));
    let mut state = example();
    for slot in 10..200 {
        state = next(&state, &Op::AddVm { slot, host: 1 });
    }
    store.save(&state).unwrap();
    let snapshot_len = std::fs::metadata(store.path()).unwrap().len();
    let added = next(&state, &Op::AddVm { slot: 3, host: 2 });
    store.save(&added).unwrap();
    let (len, records) = store.journal_size();
    assert_eq!(records, 1);
    assert!(
        len * 20 < snapshot_len,
        "one VM's record is {len} bytes, the state {snapshot_len}"
    );
    let bytes = std::fs::read(store.journal_path()).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("\"t3\"") && !text.contains("\"t10\""),
        "{text}"
    );
}

#[test]
fn a_store_of_one_file_loads_and_goes_on_with_a_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scc-state.json");
    let state = next(&example(), &Op::Moved { slot: 0, at: 5 });
    std::fs::write(&path, serde_json::to_vec_pretty(&state).unwrap()).unwrap();
    let store = Store::new(&path);
    assert_eq!(store.load().unwrap().as_ref(), Some(&state));
    let after = next(&state, &Op::RemoveVm { slot: 1 });
    store.save(&after).unwrap();
    assert_eq!(loaded(&path), after);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "the snapshot and its journal: {names:?}");
}

#[test]
fn damage_before_the_last_record_names_the_journal_and_the_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scc-state.json");
    let store = Store::new(&path);
    let mut state = example();
    store.save(&state).unwrap();
    let mut ends = Vec::new();
    for op in [Op::Policy(1), Op::ForgetMoves, Op::RemoveVm { slot: 0 }] {
        state = next(&state, &op);
        store.save(&state).unwrap();
        ends.push(store.journal_size().0);
    }
    let mut bytes = std::fs::read(store.journal_path()).unwrap();
    let second = usize::try_from(ends[0]).unwrap();
    bytes[second + journal::HEADER + 1] ^= 0x20;
    std::fs::write(store.journal_path(), &bytes).unwrap();
    let err = Store::new(&path).load().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    let message = err.to_string();
    assert!(
        message.contains(&store.journal_path().display().to_string())
            && message.contains(&format!("byte {second}:")),
        "{message}"
    );
}

#[test]
fn the_journal_is_compacted_in_the_background_past_its_limits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scc-state.json");
    let store = Store::with_limits(
        &path,
        CompactionLimits {
            records: 8,
            journal_bytes: 1 << 30,
        },
    );
    let mut state = example();
    store.save(&state).unwrap();
    let mut most = 0;
    for at in 0..40 {
        state = next(&state, &Op::Moved { slot: 2, at });
        store.save(&state).unwrap();
        most = most.max(store.journal_size().1);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while store.journal_size().1 >= 8 {
        assert!(
            std::time::Instant::now() < deadline,
            "no compaction: {:?}",
            store.journal_size()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(most >= 8, "the limit was reached: {most} records at most");
    assert_eq!(loaded(&path), state);
}
