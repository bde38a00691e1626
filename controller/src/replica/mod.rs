//! Replicated controllers on etcd (`scc run --store etcd://…`): several `scc`
//! share one state in etcd ([`EtcdStore`]); one of them leads, elected through
//! an etcd lease (`election`), and is the only one that writes the store and
//! programs the switches (OpenFlow role master, with the generation id of its
//! election); the others are standbys: connected to every switch as slaves, they
//! follow the store's changes (a watch) and take over when the leader's lease
//! lapses, auditing the switches' tables first (tables that already match cost
//! no flow-mod).
//!
//! This module owns the wiring of a replica: [`start`] before the daemon's
//! runtime (connect, campaign, read or, on the very first start, write the
//! state), [`follow`] on it (the store's changes and the mastership into the
//! [`Controller`]). The embedded store stays the default, for one machine.

mod election;
mod etcd_store;
pub mod layout;

pub use etcd_store::{parse_endpoints, EtcdStore, OP_TIMEOUT};

use crate::daemon::{ChangeError, Controller};
use crate::state_store::{Mastership, StateStore};
use crate::store::Persisted;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How a replica joins the others.
#[derive(Debug, Clone)]
pub struct ReplicaOptions {
    /// etcd endpoints, `http://HOST:PORT`.
    pub endpoints: Vec<String>,
    /// Prefix of the keys (`/supercloud/` unless several networks share a cluster).
    pub prefix: String,
    /// This replica's name in the leader key (for operators).
    pub id: String,
    /// The leader's lease, in seconds: how long a dead leader holds the network
    /// before a standby takes over.
    pub lease_ttl_s: i64,
}

/// Why a replica could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// etcd could not be reached or read.
    #[error("etcd store: {0}")]
    Store(#[from] std::io::Error),
    /// The stored program does not compile.
    #[error("{0}")]
    Program(#[from] ChangeError),
    /// The store is empty and this replica, elected, has nothing to put in it.
    #[error("{0}")]
    NoState(String),
}

/// A started replica: its controller, its store and its mastership as the
/// election decides it.
#[derive(Debug)]
pub struct Replica {
    /// The daemon, as a standby until [`follow`] says otherwise.
    pub controller: Arc<Controller>,
    /// The shared store.
    pub store: EtcdStore,
    /// Leader or standby, as elected.
    pub roles: watch::Receiver<Mastership>,
}

/// Connects to etcd, joins the election and reads the state. On the very first
/// start (an empty store) the replica that is elected writes `initial()` (the
/// inventory and policy files); the others wait for it. Once the store holds a
/// state, it is the truth: files given again are not imported.
pub fn start(
    options: &ReplicaOptions,
    initial: impl FnOnce() -> Result<Persisted, String>,
) -> Result<Replica, ReplicaError> {
    let store = EtcdStore::connect(options.endpoints.clone(), &options.prefix)?;
    let roles = election::campaign(
        store.shared.clone(),
        options.id.clone(),
        options.lease_ttl_s,
    );
    let mut initial = Some(initial);
    let mut waiting_said = false;
    let persisted = loop {
        if let Some(p) = store.load()? {
            tracing::info!(
                version = p.version,
                "state read from etcd (the store is the truth)"
            );
            break p;
        }
        if matches!(*roles.borrow(), Mastership::Master(_)) {
            if let Some(make) = initial.take() {
                let p = make().map_err(ReplicaError::NoState)?;
                store.save(&p)?;
                tracing::info!(version = p.version, "first start: state written to etcd");
            }
            continue;
        }
        if !waiting_said {
            tracing::info!("etcd holds no state yet: waiting for the elected replica to write it");
            waiting_said = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let controller = Controller::replica(persisted, store.clone(), Mastership::Slave(0))?;
    Ok(Replica {
        controller,
        store,
        roles,
    })
}

/// Joins the election on `store` as `id` with a lease of `ttl_s` seconds, as
/// [`start`] does (for tools that write the store, such as `bench`).
pub fn campaign(store: &EtcdStore, id: String, ttl_s: i64) -> watch::Receiver<Mastership> {
    election::campaign(store.shared.clone(), id, ttl_s)
}

/// Keeps the controller in step with the store (another replica's changes) and
/// with the election (leader or standby), forever. Before acting as leader it
/// reads the store once more: it leads from the newest state, and resumes the
/// migration that state holds in progress ([`Controller::resume`]).
pub async fn follow(replica: Replica) {
    let Replica {
        controller: ctl,
        store,
        mut roles,
    } = replica;
    let adopting = ctl.clone();
    store.follow(store.read_revision(), move |p| match adopting.adopt(p) {
        Ok(Some(v)) => tracing::info!(version = v, "following the leader: program version adopted"),
        Ok(None) => {}
        Err(e) => tracing::error!("state written by the leader refused: {e}"),
    });
    loop {
        let m = *roles.borrow_and_update();
        if let Mastership::Master(_) = m {
            let s = store.clone();
            match tokio::task::spawn_blocking(move || s.load()).await {
                Ok(Ok(Some(p))) => {
                    if let Err(e) = ctl.adopt(p) {
                        tracing::error!("stored state refused: {e}");
                    }
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::warn!("state not re-read before leading: {e}"),
                Err(e) => tracing::warn!("state not re-read before leading: {e}"),
            }
        }
        tracing::info!(mastership = ?m, "replica role");
        let was_leading = matches!(ctl.mastership(), Mastership::Master(_));
        ctl.set_mastership(m);
        if matches!(m, Mastership::Master(_)) && !was_leading {
            // Elected: a migration the old leader left in progress goes on from
            // its committed phase, as after a restart of a single scc.
            if let Some(resumed) = ctl.resume() {
                tracing::info!("{resumed}");
            }
        }
        if roles.changed().await.is_err() {
            return;
        }
    }
}
