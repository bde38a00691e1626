//! `bench store`: what one save of scc's embedded store costs at the reroute
//! benchmark's inventory sizes, in process and without a network: the whole
//! state written as the store did before its journal (pretty JSON, fsync,
//! rename, directory fsync), a new snapshot, the journal record of a VM added,
//! of a VM moved to another host (a migration's switch step) and of a policy or
//! migration phase (the inventory shared), then a load (snapshot and journal
//! replayed) and a compaction. It owns those measurements and nothing else.

use crate::reroute::{inventory, Addressing};
use anyhow::Result;
use controller::model::{Inventory, Vm};
use controller::store::{Persisted, Store};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Medians of `reps` saves of each kind at `hosts` × `vms`, as a Markdown table.
pub fn store(hosts: usize, vms: usize, reps: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut state = first_state(hosts, vms, dir.path())?;
    let path = dir.path().join("scc-state.json");
    let store = Store::new(&path);
    let mut rows: Vec<(&str, Vec<Duration>, u64)> = Vec::new();

    let mut whole_pretty = Vec::new();
    let mut snapshot = Vec::new();
    for _ in 0..reps.min(5) {
        whole_pretty.push(timed(|| {
            write_whole_pretty(&dir.path().join("old.json"), &state)
        })?);
        state.version += 1;
        let fresh = Store::new(&dir.path().join("fresh.json"));
        snapshot.push(timed(|| Ok(fresh.save(&state)?))?);
    }
    let pretty_len = std::fs::metadata(dir.path().join("old.json"))?.len();
    let snapshot_len = std::fs::metadata(dir.path().join("fresh.json"))?.len();
    rows.push((
        "whole state, pretty JSON (before)",
        whole_pretty,
        pretty_len,
    ));
    rows.push((
        "whole state, snapshot (compact JSON)",
        snapshot,
        snapshot_len,
    ));

    store.save(&state)?;
    let (mut added, mut moved, mut policy) = (Vec::new(), Vec::new(), Vec::new());
    let (mut added_len, mut moved_len, mut policy_len) = (0, 0, 0);
    for rep in 0..reps {
        let next = vm_added(&state, rep);
        let (took, bytes) = timed_save(&store, &next)?;
        added.push(took);
        added_len = bytes;
        state = next;

        let next = vm_moved(&state, rep, hosts);
        let (took, bytes) = timed_save(&store, &next)?;
        moved.push(took);
        moved_len = bytes;
        state = next;

        let mut next = state.clone();
        next.version += 1;
        next.policy = format!("filter port = {rep} + id");
        let (took, bytes) = timed_save(&store, &next)?;
        policy.push(took);
        policy_len = bytes;
        state = next;
    }
    rows.push(("journal record: VM added", added, added_len));
    rows.push(("journal record: VM moved (switch step)", moved, moved_len));
    rows.push((
        "journal record: policy (inventory shared)",
        policy,
        policy_len,
    ));

    let mut loaded = None;
    let load = timed(|| {
        loaded = Store::new(&path).load()?;
        Ok(())
    })?;
    anyhow::ensure!(
        loaded.as_ref() == Some(&state),
        "the load differs from the state saved last"
    );
    let journal_len = store.journal_size().0;
    rows.push(("load: snapshot + journal replayed", vec![load], journal_len));
    let compaction = timed(|| Ok(store.compact()?))?;
    rows.push((
        "compaction (background thread, off the commit)",
        vec![compaction],
        std::fs::metadata(&path)?.len(),
    ));

    print_rows(
        &format!("Store saves at {hosts} hosts × {vms} VMs ({reps} saves of each record kind)"),
        rows,
    );
    Ok(())
}

/// `state`, one version on, with the VM `bench-added{rep}` added (a copy of
/// its first VM on port 60,000 + `rep`).
pub(crate) fn vm_added(state: &Persisted, rep: usize) -> Persisted {
    // The daemon copies the inventory to change it; that copy is the compile
    // side's, not the store's, and is not timed by the callers.
    let mut next = state.clone();
    next.version += 1;
    let name = format!("bench-added{rep}");
    let template = next.inventory.vms.values().next().cloned();
    if let Some(template) = template {
        let mut vm = Vm {
            tap: Vm::default_tap(&name),
            name: name.clone(),
            ..template
        };
        vm.port = 60_000 + u32::try_from(rep).unwrap_or(0);
        Arc::make_mut(&mut next.inventory).vms.insert(name, vm);
    }
    next
}

/// `state`, one version on, with the VM `vm{rep}` on the next of `hosts` hosts
/// (a migration's switch step).
pub(crate) fn vm_moved(state: &Persisted, rep: usize, hosts: usize) -> Persisted {
    let mut next = state.clone();
    next.version += 1;
    let vm_name = format!("vm{rep}");
    let to = format!("host{}", (rep + 1) % hosts.max(1));
    if let Some(vm) = Arc::make_mut(&mut next.inventory).vms.get_mut(&vm_name) {
        vm.host = to;
    }
    next
}

/// The state of the reroute benchmark's inventory at `hosts` × `vms`, version 1.
pub(crate) fn first_state(hosts: usize, vms: usize, dir: &std::path::Path) -> Result<Persisted> {
    let text = inventory(
        Addressing::new(hosts, vms, true),
        &dir.join("api.sock"),
        false,
    );
    let parsed = Inventory::parse(&text, "bench.toml").map_err(anyhow::Error::msg)?;
    Ok(Persisted::first(parsed, "id".into(), "bench.kat".into()))
}

/// Rows of (what, times, bytes) as a Markdown table of medians under `title`.
pub(crate) fn print_rows(title: &str, rows: Vec<(&str, Vec<Duration>, u64)>) {
    println!("\n### {title}\n");
    println!("| what | median ms | min ms | max ms | bytes written |");
    println!("|---|---:|---:|---:|---:|");
    for (what, mut times, bytes) in rows {
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "| {what} | {:.2} | {:.2} | {:.2} | {bytes} |",
            ms(times[times.len() / 2]),
            ms(times[0]),
            ms(times[times.len() - 1])
        );
    }
}

pub(crate) fn timed(f: impl FnOnce() -> Result<()>) -> Result<Duration> {
    let start = Instant::now();
    f()?;
    Ok(start.elapsed())
}

/// How long saving `state` takes, and the bytes it adds to the journal.
fn timed_save(store: &Store, state: &Persisted) -> Result<(Duration, u64)> {
    let before = store.journal_size().0;
    let took = timed(|| Ok(store.save(state)?))?;
    Ok((took, store.journal_size().0.saturating_sub(before)))
}

/// The store's write before its journal: the whole state as pretty JSON to a
/// temporary file, fsynced, renamed over the file, the directory fsynced.
fn write_whole_pretty(path: &std::path::Path, state: &Persisted) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec_pretty(state)?;
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(path.parent().unwrap_or(std::path::Path::new(".")))?.sync_all()?;
    Ok(())
}
