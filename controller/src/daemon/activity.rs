//! What each switch session is doing right now (waiting for a new version,
//! writing flow-mods, waiting for a barrier, auditing, ...), since when and for
//! which version, so that `scc status` (`hosts[].session`) says what a switch
//! that stays behind is waiting on. It has its own lock, taken for a copy or an
//! assignment only: a session never waits here for the state lock. A switch
//! that reconnects has a newer session than the one that is still ending: each
//! session has its own number, and the older one never overwrites nor erases
//! the newer one's step.

use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// One session's current step.
#[derive(Debug, Clone, Copy)]
struct Step {
    /// The session's number ([`Activities::begin`]); a later session's is larger.
    session: u64,
    doing: &'static str,
    version: u64,
    since: Instant,
}

/// What `scc status` shows of a session's current step.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SessionActivity {
    /// The step, e.g. `waiting for a new version`, `writing flow-mods`,
    /// `waiting for a barrier`, `auditing`.
    pub doing: &'static str,
    /// The program version the session was synchronising to (or last saw).
    pub version: u64,
    /// How long it has been at that step, milliseconds.
    pub for_ms: u64,
}

/// Every live session's current step, by datapath id.
#[derive(Debug, Default)]
pub(crate) struct Activities {
    steps: Mutex<HashMap<u64, Step>>,
    sessions: AtomicU64,
}

impl Activities {
    fn steps(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Step>> {
        self.steps.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session's number, larger than every earlier session's.
    pub(crate) fn begin(&self) -> u64 {
        self.sessions.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Session `session` of switch `dpid` is now `doing` for `version`; an
    /// older session of the same switch changes nothing.
    pub(crate) fn set(&self, dpid: u64, session: u64, doing: &'static str, version: u64) {
        let step = Step {
            session,
            doing,
            version,
            since: Instant::now(),
        };
        let mut steps = self.steps();
        let entry = steps.entry(dpid).or_insert(step);
        if entry.session <= session {
            *entry = step;
        }
    }

    /// Session `session` of switch `dpid` ended: its step goes, not a newer
    /// session's.
    pub(crate) fn ended(&self, dpid: u64, session: u64) {
        let mut steps = self.steps();
        if steps.get(&dpid).is_some_and(|s| s.session == session) {
            steps.remove(&dpid);
        }
    }

    /// Session `dpid`'s current step, if it runs.
    pub(crate) fn of(&self, dpid: u64) -> Option<SessionActivity> {
        let step = *self.steps().get(&dpid)?;
        Some(SessionActivity {
            doing: step.doing,
            version: step.version,
            for_ms: u64::try_from(step.since.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// How many live sessions are at each step, for a summary.
    pub(crate) fn counts(&self) -> std::collections::BTreeMap<&'static str, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for step in self.steps().values() {
            *counts.entry(step.doing).or_default() += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_session_of_a_switch_neither_overwrites_nor_erases_the_newer_ones_step() {
        let activities = Activities::default();
        let (old, new) = (activities.begin(), activities.begin());
        assert!(new > old);
        activities.set(1, old, "waiting for a barrier", 7);
        activities.set(1, new, "reading flows back", 8);
        activities.set(1, old, "writing flow-mods", 7);
        activities.ended(1, old);
        let step = activities.of(1).expect("the newer session's step stays");
        assert_eq!((step.doing, step.version), ("reading flows back", 8));
        activities.ended(1, new);
        assert_eq!(activities.of(1), None, "its own session's end erases it");
    }
}
