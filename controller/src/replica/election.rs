//! Leader election through an etcd lease: one replica holds the leader key,
//! attached to its lease; the others wait for the key to go and then race for
//! it in a transaction that only creates it where it is absent.
//!
//! The generation id the leader claims on the switches is the revision that
//! created its key: etcd's revisions only grow, so every new leader's is higher
//! than any before it and the switches refuse the old leader as stale. The
//! leader renews its lease every third of its TTL and, as soon as a renewal is
//! not confirmed within that third, steps down before the lease can lapse (as
//! Kubernetes' leader election does); its writes are conditional on the key
//! anyway ([`super::etcd_store`]), so two leaders can never both write. This
//! module owns the leader key and the lease; never the state.

use super::etcd_store::{Shared, OP_TIMEOUT};
use crate::state_store::Mastership;
use etcd_client::{Compare, CompareOp, EventType, PutOptions, Txn, TxnOp, WatchOptions};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Runs the election forever on the store's runtime; the receiver says whether
/// this replica leads, and the newest generation it knows.
pub(super) fn campaign(shared: Arc<Shared>, id: String, ttl_s: i64) -> watch::Receiver<Mastership> {
    let (tx, rx) = watch::channel(Mastership::Slave(0));
    let runtime = shared.runtime.clone();
    runtime.spawn(async move {
        let mut known = 0u64;
        loop {
            if let Err(e) = term(&shared, &id, ttl_s, &tx, &mut known).await {
                tracing::warn!("leader election: {e}");
            }
            *shared.leading.lock().unwrap_or_else(|e| e.into_inner()) = None;
            shared.lease.store(0, Ordering::Relaxed);
            tx.send_if_modified(|m| std::mem::replace(m, Mastership::Slave(known)) != *m);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    rx
}

async fn timed<T>(
    what: &str,
    fut: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(OP_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!(
            "{what}: no answer within {OP_TIMEOUT:?} (no quorum?)"
        )),
    }
}

/// One attempt: wait until nobody leads, try to take the key, and lead while the
/// lease lives. Returns when this replica is not (or no longer) the leader.
async fn term(
    shared: &Shared,
    id: &str,
    ttl_s: i64,
    tx: &watch::Sender<Mastership>,
    known: &mut u64,
) -> Result<(), String> {
    let mut client = shared.client.clone();
    let key = shared.leader_key.as_str();
    loop {
        let resp = timed("reading the leader key", client.get(key, None)).await?;
        let Some(kv) = resp.kvs().first() else { break };
        *known = (*known).max(u64::try_from(kv.create_revision()).unwrap_or(0));
        let standby = Mastership::Slave(*known);
        tx.send_if_modified(|m| std::mem::replace(m, standby) != *m);
        wait_until_deleted(shared, kv.mod_revision()).await?;
    }
    let lease = timed("granting a lease", client.lease_grant(ttl_s, None))
        .await?
        .id();
    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key,
            id,
            Some(PutOptions::new().with_lease(lease)),
        )]);
    let resp = timed("claiming the leader key", client.txn(txn)).await?;
    if !resp.succeeded() {
        // Another replica was quicker: follow it.
        let _ = timed("revoking the lease", client.lease_revoke(lease)).await;
        return Ok(());
    }
    let generation = resp.header().map_or(0, |h| h.revision());
    *shared.leading.lock().unwrap_or_else(|e| e.into_inner()) = Some(generation);
    shared.lease.store(lease, Ordering::Relaxed);
    *known = u64::try_from(generation).unwrap_or(0);
    tracing::info!(id, generation, "elected leader");
    tx.send_replace(Mastership::Master(*known));
    let (mut keeper, mut responses) =
        timed("keeping the lease alive", client.lease_keep_alive(lease)).await?;
    let third = Duration::from_millis(u64::try_from(ttl_s).unwrap_or(1) * 1000 / 3);
    let renewals = async {
        loop {
            tokio::time::sleep(third).await;
            let renewed = tokio::time::timeout(third, async {
                keeper.keep_alive().await?;
                responses.message().await
            })
            .await;
            match renewed {
                Ok(Ok(Some(r))) if r.ttl() > 0 => {}
                Ok(Ok(Some(_))) => return "lease expired".to_string(),
                Ok(Ok(None)) => return "lease stream closed".to_string(),
                Ok(Err(e)) => return e.to_string(),
                Err(_) => return "no answer".to_string(),
            }
        }
    };
    let why = tokio::select! {
        why = renewals => format!("lease renewal not confirmed ({why})"),
        () = key_gone(shared, generation) => "the leader key was deleted".to_string(),
    };
    // Stop acting first; the lease may still be alive for a while.
    *shared.leading.lock().unwrap_or_else(|e| e.into_inner()) = None;
    tx.send_replace(Mastership::Slave(*known));
    let _ = tokio::time::timeout(third, client.lease_revoke(lease)).await;
    Err(format!("{why}: stepped down"))
}

/// Returns once the leader key created at `generation` is gone (deleted behind
/// this leader's back, e.g. by an operator); a watch that breaks is set up again.
async fn key_gone(shared: &Shared, generation: i64) {
    while let Err(e) = wait_until_deleted(shared, generation).await {
        tracing::debug!("leader key watch: {e}; again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the leader key is deleted (its lease lapsed or was revoked).
async fn wait_until_deleted(shared: &Shared, seen: i64) -> Result<(), String> {
    let mut client = shared.client.clone();
    let options = WatchOptions::new().with_start_revision(seen + 1);
    let mut stream = timed(
        "watching the leader key",
        client.watch(shared.leader_key.as_str(), Some(options)),
    )
    .await?;
    loop {
        match stream.message().await {
            Ok(Some(resp)) => {
                if resp
                    .events()
                    .iter()
                    .any(|e| e.event_type() == EventType::Delete)
                {
                    return Ok(());
                }
                if resp.canceled() {
                    return Err("watch of the leader key cancelled".into());
                }
            }
            Ok(None) => return Err("watch of the leader key ended".into()),
            Err(e) => return Err(format!("watch of the leader key: {e}")),
        }
    }
}
