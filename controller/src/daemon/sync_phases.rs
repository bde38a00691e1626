//! Where the time of the last program version's distribution went: when it was
//! published (and how long its store write took), and for every switch session
//! how long after that it woke, computed its difference, had written its
//! flow-mods and had its barriers answered. `scc status` shows the summary
//! (`sync_phases`) and `bench reroute` prints it per change, so a slow reroute
//! says whether the sessions were late to wake, slow to diff and encode, or
//! waiting for their switches. It has its own lock: no session ever waits here
//! for the state lock, nor the other way round.

use serde::Serialize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When one session went through the phases of one synchronisation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionPhases {
    /// It saw the new version.
    pub woke: Instant,
    /// Its difference (flow-mods) was computed.
    pub diffed: Instant,
    /// Its flow-mods (all of them, with the first barrier) were written.
    pub sent: Instant,
    /// Its last barrier was answered.
    pub confirmed: Instant,
}

/// What every session of one version reported, as offsets from its publication.
#[derive(Debug, Default)]
struct Version {
    version: u64,
    published: Option<Instant>,
    save_ms: f64,
    deltas_ms: f64,
    woke_ms: Vec<f64>,
    diff_ms: Vec<f64>,
    send_ms: Vec<f64>,
    barriers_ms: Vec<f64>,
    confirmed_ms: Vec<f64>,
}

/// The phases of the last published version (see the module's doc).
#[derive(Debug, Default)]
pub(crate) struct SyncPhases {
    last: Mutex<Version>,
}

/// Median and maximum of some durations, milliseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Spread {
    pub p50: f64,
    pub max: f64,
}

/// The summary `scc status` shows as `sync_phases`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PhaseSummary {
    /// The program version measured.
    pub version: u64,
    /// Sessions that confirmed it.
    pub switches: usize,
    /// Writing the version to the store, before publication.
    pub save_ms: f64,
    /// Working out every switch's delta, before publication.
    pub deltas_ms: f64,
    /// Publication → a session saw the version.
    pub woke_ms: Spread,
    /// Computing one switch's difference (its own duration).
    pub diff_ms: Spread,
    /// Diff done → flow-mods and the first barrier written (its own duration).
    pub send_ms: Spread,
    /// Flow-mods written → last barrier answered (its own duration).
    pub barriers_ms: Spread,
    /// Publication → a switch confirmed it; `max` is the last switch.
    pub confirmed_ms: Spread,
    /// Total time all sessions spent computing differences, milliseconds.
    pub diff_total_ms: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn spread(v: &[f64]) -> Spread {
    let mut sorted = v.to_vec();
    sorted.sort_by(f64::total_cmp);
    Spread {
        p50: sorted
            .get(sorted.len().saturating_sub(1) / 2)
            .copied()
            .unwrap_or(0.0),
        max: sorted.last().copied().unwrap_or(0.0),
    }
}

impl SyncPhases {
    fn last(&self) -> std::sync::MutexGuard<'_, Version> {
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `version` is published now, its store write having taken `save`.
    pub(crate) fn published(&self, version: u64, save: Duration, deltas: Duration) {
        *self.last() = Version {
            version,
            published: Some(Instant::now()),
            save_ms: ms(save),
            deltas_ms: ms(deltas),
            ..Version::default()
        };
    }

    /// A session confirmed `version` through `p`; a version no longer the last
    /// published is not recorded.
    pub(crate) fn confirmed(&self, version: u64, p: SessionPhases) {
        let mut last = self.last();
        let Some(published) = last.published.filter(|_| last.version == version) else {
            return;
        };
        let since = |t: Instant| ms(t.saturating_duration_since(published));
        let woke = since(p.woke);
        let confirmed = since(p.confirmed);
        last.woke_ms.push(woke);
        last.diff_ms
            .push(ms(p.diffed.saturating_duration_since(p.woke)));
        last.send_ms
            .push(ms(p.sent.saturating_duration_since(p.diffed)));
        last.barriers_ms
            .push(ms(p.confirmed.saturating_duration_since(p.sent)));
        last.confirmed_ms.push(confirmed);
    }

    /// The summary of the last published version.
    pub(crate) fn summary(&self) -> PhaseSummary {
        let last = self.last();
        PhaseSummary {
            version: last.version,
            switches: last.confirmed_ms.len(),
            save_ms: last.save_ms,
            deltas_ms: last.deltas_ms,
            woke_ms: spread(&last.woke_ms),
            diff_ms: spread(&last.diff_ms),
            send_ms: spread(&last.send_ms),
            barriers_ms: spread(&last.barriers_ms),
            confirmed_ms: spread(&last.confirmed_ms),
            diff_total_ms: last.diff_ms.iter().sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_published_version_is_summarised() {
        let phases = SyncPhases::default();
        phases.published(7, Duration::from_millis(3), Duration::ZERO);
        let t = Instant::now();
        let at = |ms: u64| t + Duration::from_millis(ms);
        phases.confirmed(
            7,
            SessionPhases {
                woke: at(10),
                diffed: at(12),
                sent: at(15),
                confirmed: at(40),
            },
        );
        phases.confirmed(
            6,
            SessionPhases {
                woke: at(0),
                diffed: at(0),
                sent: at(0),
                confirmed: at(0),
            },
        );
        let s = phases.summary();
        assert_eq!((s.version, s.switches, s.save_ms), (7, 1, 3.0));
        assert_eq!(
            (s.diff_ms.max, s.send_ms.max, s.barriers_ms.max),
            (2.0, 3.0, 25.0)
        );
        assert!(s.confirmed_ms.max >= s.woke_ms.max + 30.0 - 1e-9);
        phases.published(8, Duration::ZERO, Duration::ZERO);
        assert_eq!(phases.summary().switches, 0);
    }
}
