//! Where the forwarding thread's microseconds go: one histogram per stage of a
//! round of its loop (the wake-up of a datagram's arrival, each port's batch,
//! the tunnel send, the jobs other threads hand over and their cross-thread hop,
//! the whole round), kept cheap enough to leave on.
//!
//! Buckets are powers of two of nanoseconds, so recording is a leading-zeros
//! count and two single-writer counter updates; the clock is read once per batch,
//! never per packet, and each reading ends one stage and starts the next. Only
//! the forwarding thread records; the metrics thread reads the counters as they
//! are (a scrape may see a sample's bucket before its sum, which is harmless).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A single-writer counter: a relaxed load and store, no locked instruction
/// (the same discipline as the switch's counters, kept apart so the two
/// modules need not import each other).
#[derive(Debug, Default)]
struct Counter(AtomicU64);

impl Counter {
    #[inline]
    fn add(&self, n: u64) {
        let v = self.0.load(Ordering::Relaxed).wrapping_add(n);
        self.0.store(v, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Buckets per histogram: bucket `i` counts durations below 2^i ns (and at
/// least 2^(i-1)); the last one is open-ended: everything from 2^30 ns (about
/// 1.07 s) up, however long.
pub const BUCKETS: usize = 32;

/// A stage of the forwarding loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// From the kernel's receive timestamp of the first datagram of a round's
    /// first tunnel batch to the moment the loop read it: the thread's wake-up
    /// (or the rest of the round it was busy with) seen from the wire.
    TunnelWakeup,
    /// One local port's batch: TAP or raw reads, port security, tables, actions
    /// and the writes or encryptions of the outputs.
    LocalBatch,
    /// One tunnel batch: `recvmmsg`, decryption, anti-spoofing, coalescing,
    /// tables, actions and the writes of the outputs.
    TunnelBatch,
    /// The round's encrypted datagrams handed to the kernel (`sendmmsg`).
    TunnelSend,
    /// From another thread queueing work (packet-out, port change, status) to
    /// the forwarding thread taking it: the eventfd wake-up and the rest of
    /// the round before it.
    JobHop,
    /// A round that moved packets: from `epoll_wait` returning to the last send.
    Round,
}

impl Stage {
    /// Every stage, in the order of a round.
    pub const ALL: [Stage; 6] = [
        Stage::TunnelWakeup,
        Stage::LocalBatch,
        Stage::TunnelBatch,
        Stage::TunnelSend,
        Stage::JobHop,
        Stage::Round,
    ];

    /// Its label on the metrics endpoint.
    pub fn name(self) -> &'static str {
        match self {
            Stage::TunnelWakeup => "tunnel_wakeup",
            Stage::LocalBatch => "local_batch",
            Stage::TunnelBatch => "tunnel_batch",
            Stage::TunnelSend => "tunnel_send",
            Stage::JobHop => "job_hop",
            Stage::Round => "round",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One stage's histogram, written by the forwarding thread only.
#[derive(Debug, Default)]
pub struct StageHistogram {
    buckets: [Counter; BUCKETS],
    sum_ns: Counter,
}

/// The bucket a duration of `ns` nanoseconds falls in.
fn bucket(ns: u64) -> usize {
    let bits = (u64::BITS - ns.leading_zeros()) as usize;
    bits.min(BUCKETS - 1)
}

impl StageHistogram {
    fn record(&self, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket(ns)].add(1);
        self.sum_ns.add(ns);
    }

    /// The counts as they are now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: std::array::from_fn(|i| self.buckets[i].get()),
            sum_ns: self.sum_ns.get(),
        }
    }
}

/// A histogram read at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Samples per bucket (see [`BUCKETS`]).
    pub counts: [u64; BUCKETS],
    /// Sum of every sample, in nanoseconds.
    pub sum_ns: u64,
}

impl HistogramSnapshot {
    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The exclusive upper bound of bucket `i`, in nanoseconds; `None` for the
    /// last, open-ended bucket (Prometheus's `+Inf`).
    pub fn upper_ns(i: usize) -> Option<u64> {
        (i + 1 < BUCKETS).then(|| 1u64 << i)
    }

    /// Where quantile `q` (0 to 1) lies, as its bucket bounds it. `None` without
    /// samples.
    pub fn quantile_ns(&self, q: f64) -> Option<QuantileBound> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        // The rank of the quantile's sample, 1-based; truncation is the point.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        let mut at = BUCKETS - 1;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                at = i;
                break;
            }
        }
        Some(match Self::upper_ns(at) {
            Some(upper) => QuantileBound::Below(upper),
            None => QuantileBound::AtLeast(1u64 << (at - 1)),
        })
    }
}

/// Where a quantile lies, in nanoseconds, as far as power-of-two buckets tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantileBound {
    /// Below this bound and at least half of it.
    Below(u64),
    /// In the open-ended top bucket: at least this, with no upper bound.
    AtLeast(u64),
}

/// Every stage's histogram.
#[derive(Debug, Default)]
pub struct StageLatency {
    stages: [StageHistogram; Stage::ALL.len()],
}

impl StageLatency {
    /// Records one sample of `stage` (forwarding thread only).
    #[inline]
    pub fn record(&self, stage: Stage, elapsed: Duration) {
        self.stages[stage.index()].record(elapsed);
    }

    /// The histogram of `stage`.
    pub fn get(&self, stage: Stage) -> &StageHistogram {
        &self.stages[stage.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_land_in_power_of_two_buckets_and_quantiles_bound_them() {
        let l = StageLatency::default();
        for us in [1u64, 2, 3, 50, 1000] {
            l.record(Stage::Round, Duration::from_micros(us));
        }
        l.record(Stage::Round, Duration::ZERO);
        l.record(Stage::Round, Duration::from_secs(100));
        let s = l.get(Stage::Round).snapshot();
        assert_eq!(s.count(), 7);
        assert_eq!(s.counts[0], 1);
        // 1 µs = 1000 ns lies in [512, 1024): bucket 10.
        assert_eq!(s.counts[10], 1);
        assert_eq!(s.counts[BUCKETS - 1], 1);
        assert_eq!(s.sum_ns, 1_056_000 + 100_000_000_000);
        // The median, 3 µs, lies in [2.048, 4.096) µs.
        assert_eq!(s.quantile_ns(0.5), Some(QuantileBound::Below(1 << 12)));
        // 100 s is in the open top bucket: no bound above, 2^30 ns below.
        assert_eq!(s.quantile_ns(1.0), Some(QuantileBound::AtLeast(1 << 30)));
        assert_eq!(HistogramSnapshot::upper_ns(BUCKETS - 1), None);
        assert_eq!(HistogramSnapshot::upper_ns(BUCKETS - 2), Some(1 << 30));
        assert_eq!(l.get(Stage::JobHop).snapshot().quantile_ns(0.5), None);
    }
}
