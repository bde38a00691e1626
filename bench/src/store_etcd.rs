//! `bench store --etcd`: what the etcd store of replicated controllers costs at
//! the reroute benchmark's inventory sizes, on a three-member etcd cluster with
//! etcd's default limits (Debian's `etcd-server`, on the loopback of the
//! benchmark's own namespace): the first import (the whole state as a new
//! generation, in chunks), one change (a VM added, a VM moved: one record each,
//! in one leader-guarded transaction), and a replica's read-back of the state
//! (paged). It owns those measurements and nothing else.

use crate::store_save::{first_state, print_rows, timed, vm_added, vm_moved};
use anyhow::{Context, Result};
use controller::replica::EtcdStore;
use controller::state_store::{Mastership, StateStore};
use controller::store::Persisted;
use netns_tests::replicas::EtcdCluster;
use netns_tests::{unique, wait_for, Netns};
use std::time::Duration;

/// Medians of `reps` changes of each kind at `hosts` × `vms`, as a Markdown table.
pub fn store_etcd(hosts: usize, vms: usize, reps: usize) -> Result<()> {
    let ns = Netns::new(&unique("bench-store-etcd-"))?;
    let dir = tempfile::tempdir()?;
    let etcd = EtcdCluster::start(&ns, dir.path(), 3, 24790)?;
    let endpoints: Vec<String> = etcd
        .endpoints()
        .split(',')
        .map(|e| format!("http://{e}"))
        .collect();
    let state = first_state(hosts, vms, dir.path())?;
    // The store's client must live in the namespace: its threads are started
    // from one that entered it.
    let rows = ns.enter(move || measure(endpoints, state, hosts, reps))??;
    print_rows(
        &format!(
            "etcd store at {hosts} hosts × {vms} VMs (3 members, default limits; {reps} changes of each kind)"
        ),
        rows,
    );
    drop(etcd);
    Ok(())
}

type Rows = Vec<(&'static str, Vec<Duration>, u64)>;

fn measure(
    endpoints: Vec<String>,
    mut state: Persisted,
    hosts: usize,
    reps: usize,
) -> Result<Rows> {
    let store = EtcdStore::connect(endpoints.clone(), "/bench/")?;
    let roles = controller::replica::campaign(&store, "bench".into(), 10);
    wait_for(Duration::from_secs(60), "the bench to lead", || {
        Ok(matches!(*roles.borrow(), Mastership::Master(_)).then_some(()))
    })?;
    let mut rows: Rows = Vec::new();
    let save = |state: &Persisted| -> Result<(Duration, u64)> {
        let before = store.written().1;
        let took = timed(|| Ok(store.save(state)?))?;
        Ok((took, store.written().1 - before))
    };
    let (took, bytes) = save(&state)?;
    rows.push((
        "first import: whole state, new generation in chunks",
        vec![took],
        bytes,
    ));
    let (mut added, mut moved) = (Vec::new(), Vec::new());
    let (mut added_len, mut moved_len) = (0, 0);
    for rep in 0..reps {
        let next = vm_added(&state, rep);
        let (took, bytes) = save(&next)?;
        added.push(took);
        added_len = bytes;
        state = next;
        let next = vm_moved(&state, rep, hosts);
        let (took, bytes) = save(&next)?;
        moved.push(took);
        moved_len = bytes;
        state = next;
    }
    rows.push(("record: VM added (one guarded txn)", added, added_len));
    rows.push(("record: VM moved (one guarded txn)", moved, moved_len));
    let reader = EtcdStore::connect(endpoints, "/bench/")?;
    let mut read = None;
    let took = timed(|| {
        read = reader.load()?;
        Ok(())
    })?;
    anyhow::ensure!(
        read.as_ref() == Some(&state),
        "the read-back differs from the state saved last"
    );
    let read_len = serde_json::to_vec(read.as_ref().context("read")?)?.len() as u64;
    rows.push(("read-back by another replica (paged)", vec![took], read_len));
    store.resign()?;
    Ok(rows)
}
