//! The tables' control side: the master copy of the pipeline, which only the
//! control thread changes, and the snapshot every other thread reads.
//!
//! Flow-mods, group-mods, reloads and expiry run here, on the master copy. A
//! change becomes visible by publishing: an immutable copy of the master goes
//! into an [`ArcSwap`], which the forwarding thread checks once per round of its
//! loop, and which flow-stats dumps and metrics read on their own threads. The
//! forwarding thread never waits for any of this, and never frees a table either:
//! the snapshots it let go of are dropped here, once nobody holds them.
//!
//! A copy costs time in proportion to the tables, so bursts share one: the jobs
//! queued together are applied and published once, and flow-mods (whose replies
//! promise no visibility; a barrier does) may wait for later ones up to a short,
//! self-adjusting bound before the publish. Every other job (a barrier, a
//! group-mod, a reload, a read that must see what came before) is answered only
//! after what it and everything before it did is published. Counters are shared
//! atomics, so packets counted on an old snapshot are never lost.

use arc_swap::ArcSwap;
use dataplane_core::pipeline::{Pipeline, RemovedFlow};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Called with every flow that leaves the tables by timeout.
pub type RemovedHook = Box<dyn FnMut(&RemovedFlow) + Send>;

/// What a job leaves to do once its changes are published: send its reply.
pub type Reply = Box<dyn FnOnce() + Send>;

/// A job run on the control thread with the master tables in hand.
pub type Job = Box<dyn FnOnce(&mut Pipeline, Instant) -> Reply + Send>;

/// Whether a job's reply must wait until its changes are visible to packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Visibility {
    /// Replied after the publish that includes it (barriers, reads, reloads).
    Published,
    /// Replied at once; published within [`Control::publish_within`].
    Deferred,
}

/// The published tables and how often they were published.
#[derive(Debug)]
pub struct Published {
    tables: ArcSwap<Pipeline>,
    /// Snapshots published so far.
    pub publishes: AtomicU64,
    /// Jobs applied so far (a burst of them shares a publish).
    pub jobs: AtomicU64,
}

impl Published {
    pub(super) fn new(pipeline: Pipeline) -> Published {
        Published {
            tables: ArcSwap::from_pointee(pipeline),
            publishes: AtomicU64::new(0),
            jobs: AtomicU64::new(0),
        }
    }

    /// The tables as last published.
    pub fn snapshot(&self) -> Arc<Pipeline> {
        self.tables.load_full()
    }

    /// `current` when it is still the published snapshot, else the new one: a
    /// pointer comparison, no reference count touched unless it changed.
    pub(super) fn refresh(&self, current: &mut Arc<Pipeline>) {
        let latest = self.tables.load();
        if !Arc::ptr_eq(&latest, current) {
            *current = arc_swap::Guard::into_inner(latest);
        }
    }
}

/// The longest a single burst is applied for before its publish.
const MAX_BURST: Duration = Duration::from_millis(50);
/// Deferred changes wait at most this long for company, at least.
const MIN_DEFER: Duration = Duration::from_millis(5);
/// How often entries are checked for timeouts.
const EXPIRE_EVERY: Duration = Duration::from_secs(1);

/// The control thread's state.
pub(super) struct Control {
    master: Pipeline,
    published: Arc<Published>,
    jobs: Receiver<(Job, Visibility)>,
    /// Snapshots replaced but perhaps still read; freed here once only this
    /// list holds them.
    retired: Vec<Arc<Pipeline>>,
    pub(super) on_removed: Option<RemovedHook>,
    /// What the last publish took: deferred changes wait twice that, so copying
    /// takes at most a third of a busy control thread.
    last_publish: Duration,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("flows", &self.master.len())
            .field("retired", &self.retired.len())
            .finish()
    }
}

impl Control {
    pub(super) fn new(
        master: Pipeline,
        published: Arc<Published>,
        jobs: Receiver<(Job, Visibility)>,
    ) -> Control {
        Control {
            master,
            published,
            jobs,
            retired: Vec::new(),
            on_removed: None,
            last_publish: Duration::ZERO,
        }
    }

    fn publish_within(&self) -> Duration {
        (self.last_publish * 2).max(MIN_DEFER)
    }

    /// Applies jobs and publishes until `stopped` says so or every handle is gone.
    pub(super) fn run(&mut self, stopped: impl Fn() -> bool) {
        let mut last_expiry = Instant::now();
        // Replies of deferred jobs already sent whose changes are not published
        // yet, and since when.
        let mut dirty_since: Option<Instant> = None;
        let mut waiting: Vec<Reply> = Vec::new();
        while !stopped() {
            let wait = match dirty_since {
                Some(since) => self.publish_within().saturating_sub(since.elapsed()),
                None => Duration::from_millis(100),
            };
            let mut must_publish = false;
            match self.jobs.recv_timeout(wait) {
                Ok(first) => {
                    let started = Instant::now();
                    let mut next = Some(first);
                    while let Some((job, visibility)) = next.take() {
                        let reply = job(&mut self.master, started);
                        self.published.jobs.fetch_add(1, Ordering::Relaxed);
                        match visibility {
                            Visibility::Deferred => {
                                reply();
                                dirty_since.get_or_insert(started);
                            }
                            Visibility::Published => {
                                waiting.push(reply);
                                must_publish = true;
                                break;
                            }
                        }
                        if started.elapsed() < MAX_BURST {
                            next = self.jobs.try_recv().ok();
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let now = Instant::now();
            if now.duration_since(last_expiry) >= EXPIRE_EVERY {
                last_expiry = now;
                let expired = self.master.expire(now);
                if !expired.is_empty() {
                    dirty_since.get_or_insert(now);
                }
                for removed in &expired {
                    if let Some(hook) = self.on_removed.as_mut() {
                        hook(removed);
                    }
                }
            }
            let overdue = dirty_since.is_some_and(|since| since.elapsed() >= self.publish_within());
            if must_publish || overdue {
                self.publish();
                dirty_since = None;
                for reply in waiting.drain(..) {
                    reply();
                }
            }
            self.retired.retain(|old| Arc::strong_count(old) > 1);
        }
    }

    fn generation(&self) -> u64 {
        self.published.tables.load().generation()
    }

    /// Makes the master's state the one packets see (when it changed).
    fn publish(&mut self) {
        if self.master.generation() == self.generation() {
            return;
        }
        let started = Instant::now();
        let old = self.published.tables.swap(Arc::new(self.master.clone()));
        self.retired.push(old);
        self.published.publishes.fetch_add(1, Ordering::Relaxed);
        self.last_publish = started.elapsed();
    }
}

#[cfg(test)]
mod tests;
