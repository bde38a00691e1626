//! The controller's state in etcd: [`EtcdStore`] keeps the [`Persisted`] state
//! in the key layout of [`super::layout`] (a snapshot in chunks and one record
//! per change), and writes only in transactions that check this replica still
//! holds the leader key it created, so a deposed leader's write fails instead of
//! overwriting its successor's.
//!
//! The etcd client runs on a runtime of its own thread: the daemon's synchronous
//! saves (under its state lock) wait on it without starving the daemon's own
//! runtime, and a store that lost its quorum answers with an error after
//! [`OP_TIMEOUT`] instead of hanging. This module owns the keys, that thread and
//! the leadership the election ([`super::election`]) hands it; never the policy.

use super::layout::{CompactionLimits, Kv, Layout, Op, Page};
use crate::state_store::StateStore;
use crate::store::{apply_change_record, Persisted};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, KvClient,
    Txn, TxnOp, WatchClient, WatchOptions,
};
use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long an etcd request may take, retries included, before the change is
/// refused: a store that lost its quorum never answers writes, and one whose
/// raft leader just died needs an election (about a second) first.
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// One attempt's share of [`OP_TIMEOUT`]: a member that died mid-request is given
/// up for another.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1500);

/// The client's limit on one received message: a backstop only, every read is
/// paged well under gRPC's default 4 MiB (a watch may batch several events).
const RECEIVE_LIMIT: usize = 64 << 20;

/// `--store etcd://HOST:PORT,HOST:PORT`: the endpoints, as `http://HOST:PORT`.
pub fn parse_endpoints(spec: &str) -> Result<Vec<String>, String> {
    let rest = spec
        .strip_prefix("etcd://")
        .ok_or_else(|| format!("`{spec}`: a store is `etcd://HOST:PORT,…`"))?;
    let endpoints: Vec<String> = rest
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| format!("http://{e}"))
        .collect();
    if endpoints.is_empty() {
        return Err(format!("`{spec}`: no etcd endpoint"));
    }
    Ok(endpoints)
}

fn no_quorum(what: &str, last_error: Option<&etcd_client::Error>) -> std::io::Error {
    let last = last_error.map_or(String::new(), |e| format!(" (last error: {e})"));
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "etcd did not confirm {what} within {}s: the store has no quorum (or is \
             unreachable); changes are refused until it answers, the switches keep \
             forwarding with the tables they hold{last}",
            OP_TIMEOUT.as_secs()
        ),
    )
}

/// The shared state between the store, the election and the follower.
pub(super) struct Shared {
    pub(super) client: Client,
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) layout: Arc<Layout<EtcdKv>>,
    watcher: WatchClient,
    pub(super) leader_key: String,
    /// The create revision of the leader key this replica holds, while it leads.
    pub(super) leading: Mutex<Option<i64>>,
    /// The lease of the leader key this replica holds (0 when it leads not).
    pub(super) lease: AtomicI64,
    /// The store revision of the state last read: a watch starts after it.
    read_revision: AtomicI64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("root", &self.layout.keys().root)
            .field("leading", &self.leading)
            .finish_non_exhaustive()
    }
}

/// The state in etcd, shared by every replica; writable by the leader only.
#[derive(Debug, Clone)]
pub struct EtcdStore {
    pub(super) shared: Arc<Shared>,
}

impl EtcdStore {
    /// Connects to the cluster (any member will do; the client balances between
    /// them), keeping keys under `prefix` (such as `/supercloud/`).
    pub fn connect(endpoints: Vec<String>, prefix: &str) -> std::io::Result<EtcdStore> {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("scc-etcd".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("scc-etcd-rt")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(rt.handle().clone()));
                // Lives as long as the process: the store is never dropped mid-run.
                rt.block_on(std::future::pending::<()>());
            })?;
        let runtime = handle_rx
            .recv()
            .map_err(|_| std::io::Error::other("etcd runtime thread died"))??;
        let options = ConnectOptions::new()
            .with_connect_timeout(ATTEMPT_TIMEOUT)
            .with_timeout(ATTEMPT_TIMEOUT)
            .with_keep_alive(Duration::from_secs(1), Duration::from_secs(2));
        let endpoints2 = endpoints.clone();
        let client = wait_on(&runtime, "connection", move || {
            let (endpoints, options) = (endpoints2.clone(), options.clone());
            async move { Client::connect(endpoints, Some(options)).await }
        })
        .map_err(|e| std::io::Error::other(format!("{e} ({})", endpoints.join(","))))?;
        let leader_key = format!("{prefix}leader");
        let kv = EtcdKv {
            kv: client.kv_client().max_decoding_message_size(RECEIVE_LIMIT),
            runtime: runtime.clone(),
            leader_key: leader_key.clone(),
            writes: AtomicU64::new(0),
            written_bytes: AtomicU64::new(0),
        };
        Ok(EtcdStore {
            shared: Arc::new(Shared {
                watcher: client
                    .watch_client()
                    .max_decoding_message_size(RECEIVE_LIMIT),
                client,
                runtime,
                layout: Layout::new(kv, prefix, CompactionLimits::default()),
                leader_key,
                leading: Mutex::new(None),
                lease: AtomicI64::new(0),
                read_revision: AtomicI64::new(0),
            }),
        })
    }

    /// The create revision of the leader key this replica holds, if it leads.
    pub fn leading(&self) -> Option<i64> {
        *self
            .shared
            .leading
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Gives up the leadership now, for a stop: the leader key goes with its
    /// lease, so a standby takes over at once instead of after the lease's TTL.
    pub fn resign(&self) -> std::io::Result<()> {
        *self
            .shared
            .leading
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        let lease = self.shared.lease.swap(0, Ordering::Relaxed);
        if lease == 0 {
            return Ok(());
        }
        let client = self.shared.client.clone();
        wait_on(&self.shared.runtime, "the lease's revocation", move || {
            let mut client = client.clone();
            async move { client.lease_revoke(lease).await }
        })
        .map(|_| ())
    }

    /// Guarded transactions this replica sent so far, and the bytes of the
    /// keys and values they put (what a change costs the cluster).
    pub fn written(&self) -> (u64, u64) {
        let kv = self.shared.layout.kv();
        (
            kv.writes.load(Ordering::Relaxed),
            kv.written_bytes.load(Ordering::Relaxed),
        )
    }

    /// The store revision of the state last read (0 before any).
    pub fn read_revision(&self) -> i64 {
        self.shared.read_revision.load(Ordering::Relaxed)
    }

    /// Calls `on_state` with every state another replica writes (and this one's
    /// own, read back), after the store revision `after`, forever: a record is
    /// applied to the state followed so far, a new generation (or a gap, or a
    /// watch that broke) is read whole.
    pub fn follow(
        &self,
        after: i64,
        on_state: impl Fn(Persisted) + Send + Sync + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let shared = self.shared.clone();
        let on_state = Arc::new(on_state);
        self.shared.runtime.spawn(async move {
            let mut watcher = shared.watcher.clone();
            let keys = shared.layout.keys().clone();
            let mut followed: Option<Persisted> = None;
            let mut next = after + 1;
            let mut reread = true;
            loop {
                if reread {
                    let layout = shared.layout.clone();
                    match tokio::task::spawn_blocking(move || layout.read()).await {
                        Ok(Ok(read)) => {
                            next = read.revision + 1;
                            followed = read.state;
                            reread = false;
                            if let Some(p) = followed.clone() {
                                deliver(&on_state, p).await;
                            }
                        }
                        Ok(Err(e)) => tracing::warn!("etcd read of the state: {e}; retrying"),
                        Err(e) => tracing::warn!("etcd read of the state: {e}; retrying"),
                    }
                    if reread {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                }
                let options = WatchOptions::new()
                    .with_start_revision(next)
                    .with_range(keys.watch_end());
                let mut stream = match watcher.watch(keys.root.as_str(), Some(options)).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!("etcd watch of the state: {e}; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                'events: while let Ok(Some(resp)) = stream.message().await {
                    if resp.canceled() {
                        break;
                    }
                    for event in resp.events() {
                        let Some(kv) = event.kv() else { continue };
                        next = next.max(kv.mod_revision() + 1);
                        if event.event_type() != EventType::Put {
                            continue;
                        }
                        let key = String::from_utf8_lossy(kv.key());
                        if keys.is_current(&key) {
                            reread = true;
                            break 'events;
                        }
                        let Some(version) = keys.record_version(&key) else {
                            continue;
                        };
                        let Some(state) = followed.as_mut() else {
                            reread = true;
                            break 'events;
                        };
                        if version <= state.version {
                            continue;
                        }
                        if let Err(e) = apply_change_record(state, kv.value()) {
                            tracing::warn!("{key}: {e}; the state is read again");
                            reread = true;
                            break 'events;
                        }
                        deliver(&on_state, state.clone()).await;
                    }
                }
                if !reread {
                    // A watch that ended may have missed events (a compacted
                    // revision): read the state again rather than guess.
                    tracing::warn!("etcd watch of the state ended; re-established");
                    reread = true;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        })
    }
}

/// Hands a state to the follower's callback: not on the store's runtime, which
/// also renews the leader's lease, since compiling may take a while.
async fn deliver(on_state: &Arc<impl Fn(Persisted) + Send + Sync + 'static>, p: Persisted) {
    let f = on_state.clone();
    let _ = tokio::task::spawn_blocking(move || f(p)).await;
}

/// Runs `attempt()` on the store's runtime, again while it fails or hangs
/// (another member may answer), for at most [`OP_TIMEOUT`] in all, and waits for
/// it from any thread. Retrying is safe: see [`EtcdKv`].
fn wait_on<T, F>(
    runtime: &tokio::runtime::Handle,
    what: &'static str,
    attempt: impl Fn() -> F + Send + 'static,
) -> std::io::Result<T>
where
    T: Send + 'static,
    F: Future<Output = Result<T, etcd_client::Error>> + Send,
{
    let (tx, rx) = std::sync::mpsc::channel();
    runtime.spawn(async move {
        let deadline = tokio::time::Instant::now() + OP_TIMEOUT;
        let mut last_error = None;
        let outcome = loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break Err(no_quorum(what, last_error.as_ref()));
            }
            match tokio::time::timeout(left.min(ATTEMPT_TIMEOUT), attempt()).await {
                Ok(Ok(v)) => break Ok(v),
                Ok(Err(e)) => {
                    tracing::debug!("etcd {what}: {e}; retrying");
                    last_error = Some(e);
                }
                Err(_) => tracing::debug!("etcd {what}: no answer; retrying"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let _ = tx.send(outcome);
    });
    rx.recv()
        .map_err(|_| std::io::Error::other("etcd runtime stopped"))?
}

impl StateStore for EtcdStore {
    fn load(&self) -> std::io::Result<Option<Persisted>> {
        let read = self.shared.layout.load(self.leading())?;
        self.shared
            .read_revision
            .fetch_max(read.revision, Ordering::Relaxed);
        Ok(read.state)
    }

    fn save(&self, state: &Persisted) -> std::io::Result<()> {
        let Some(leader_rev) = self.leading() else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "this replica does not hold the leadership: only the leader writes",
            ));
        };
        self.shared.layout.save(leader_rev, state)
    }
}

/// etcd as the layout's [`Kv`]: every call waits on the store's runtime, retried
/// within [`OP_TIMEOUT`]. Retrying a write is safe: it puts the same values and
/// deletes the same ranges under the same leadership condition.
pub(super) struct EtcdKv {
    kv: KvClient,
    runtime: tokio::runtime::Handle,
    leader_key: String,
    /// Guarded transactions sent, and the bytes of keys and values they put.
    writes: AtomicU64,
    written_bytes: AtomicU64,
}

impl Kv for EtcdKv {
    fn get(&self, key: &str) -> std::io::Result<(Option<Vec<u8>>, i64)> {
        let (kv, key) = (self.kv.clone(), key.to_string());
        let resp = wait_on(&self.runtime, "a read of the state", move || {
            let (mut kv, key) = (kv.clone(), key.clone());
            async move { kv.get(key, None).await }
        })?;
        let revision = resp.header().map_or(0, |h| h.revision());
        Ok((resp.kvs().first().map(|kv| kv.value().to_vec()), revision))
    }

    fn range(&self, from: &str, end: &str, revision: i64, limit: i64) -> std::io::Result<Page> {
        let (kv, from) = (self.kv.clone(), from.to_string());
        let options = GetOptions::new()
            .with_range(end)
            .with_revision(revision)
            .with_limit(limit);
        let resp = wait_on(&self.runtime, "a read of the state", move || {
            let (mut kv, from, options) = (kv.clone(), from.clone(), options.clone());
            async move { kv.get(from, Some(options)).await }
        })?;
        let kvs = resp
            .kvs()
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    kv.value().to_vec(),
                )
            })
            .collect();
        Ok(Page {
            kvs,
            more: resp.more(),
        })
    }

    fn guarded(&self, leader: i64, ops: Vec<Op>) -> std::io::Result<bool> {
        let bytes: usize = ops
            .iter()
            .map(|op| match op {
                Op::Put(key, value) => key.len() + value.len(),
                Op::DeleteRange(..) => 0,
            })
            .sum();
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.written_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        let ops: Vec<TxnOp> = ops
            .into_iter()
            .map(|op| match op {
                Op::Put(key, value) => TxnOp::put(key, value, None),
                Op::DeleteRange(from, end) => {
                    TxnOp::delete(from, Some(DeleteOptions::new().with_range(end)))
                }
            })
            .collect();
        let txn = Txn::new()
            .when([Compare::create_revision(
                self.leader_key.as_str(),
                CompareOp::Equal,
                leader,
            )])
            .and_then(ops);
        let kv = self.kv.clone();
        let resp = wait_on(&self.runtime, "the write of the state", move || {
            let (mut kv, txn) = (kv.clone(), txn.clone());
            async move { kv.txn(txn).await }
        })?;
        Ok(resp.succeeded())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_endpoints;

    #[test]
    fn store_specs_name_every_endpoint() {
        assert_eq!(
            parse_endpoints("etcd://127.0.0.1:2379, 127.0.0.1:22379").unwrap(),
            ["http://127.0.0.1:2379", "http://127.0.0.1:22379"]
        );
        assert!(parse_endpoints("file:///x").is_err());
        assert!(parse_endpoints("etcd://").is_err());
    }
}
