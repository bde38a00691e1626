//! What each switch session is doing right now (waiting for a new version,
//! writing flow-mods, waiting for a barrier, auditing, ...), since when and for
//! which version, so that `scc status` (`hosts[].session`) says what a switch
//! that stays behind is waiting on. It has its own lock, taken for a copy or an
//! assignment only: a session never waits here for the state lock.

use serde::Serialize;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// One session's current step.
#[derive(Debug, Clone, Copy)]
struct Step {
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
}

impl Activities {
    fn steps(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Step>> {
        self.steps.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Session `dpid` is now `doing` for `version`.
    pub(crate) fn set(&self, dpid: u64, doing: &'static str, version: u64) {
        let since = Instant::now();
        self.steps().insert(
            dpid,
            Step {
                doing,
                version,
                since,
            },
        );
    }

    /// Session `dpid` ended.
    pub(crate) fn ended(&self, dpid: u64) {
        self.steps().remove(&dpid);
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
