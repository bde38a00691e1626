//! Measurements for placement, kept as time series in the controller.
//!
//! This module owns the series the placement engine reads: per-VM traffic by client
//! region (bytes per second, derived from the monotonically increasing byte counters
//! of the gateway's and switches' flows, with counter resets handled), latency
//! between clouds (milliseconds, from probes over the tunnels) and bandwidth between
//! clouds (bytes per second, e.g. observed during earlier migrations). Every series is
//! a bounded ring of timestamped samples. The whole store serialises to the JSON
//! snapshot `scc placement plan --measurements` reads (see `docs/placement.md`).
//!
//! It is pure: the caller passes every timestamp (milliseconds on any monotonic
//! clock shared by all samples); nothing here reads a clock or does I/O.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Default number of samples kept per series: 34 hours of one-minute samples, so a
/// day-ago forecast over a few hours ahead finds its history.
pub const DEFAULT_CAPACITY: usize = 2_048;

/// A bounded ring of `(timestamp ms, value)` samples in time order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Most samples kept; the oldest goes when a new one would exceed it.
    #[serde(default = "default_capacity")]
    capacity: usize,
    /// Samples, oldest first, timestamps strictly increasing.
    samples: VecDeque<(u64, f64)>,
}

fn default_capacity() -> usize {
    DEFAULT_CAPACITY
}

impl Default for Series {
    fn default() -> Self {
        Series::with_capacity(DEFAULT_CAPACITY)
    }
}

impl Series {
    /// An empty series keeping at most `capacity` samples (at least one).
    pub fn with_capacity(capacity: usize) -> Series {
        Series {
            capacity: capacity.max(1),
            samples: VecDeque::new(),
        }
    }

    /// Appends a sample. A sample not newer than the last one, or not finite, is
    /// ignored (returns false): probes can arrive late, and a series must stay ordered.
    pub fn push(&mut self, t_ms: u64, value: f64) -> bool {
        if !value.is_finite() || self.samples.back().is_some_and(|&(t, _)| t >= t_ms) {
            return false;
        }
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back((t_ms, value));
        true
    }

    /// Number of samples held.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True when no sample is held.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The newest sample.
    pub fn last(&self) -> Option<(u64, f64)> {
        self.samples.back().copied()
    }

    /// Samples with `from_ms <= t <= to_ms`, oldest first.
    pub fn window(&self, from_ms: u64, to_ms: u64) -> impl Iterator<Item = (u64, f64)> + '_ {
        let start = self.samples.partition_point(|&(t, _)| t < from_ms);
        self.samples
            .range(start..)
            .take_while(move |&&(t, _)| t <= to_ms)
            .copied()
    }

    /// Mean of the samples in `[from_ms, to_ms]`.
    pub fn mean(&self, from_ms: u64, to_ms: u64) -> Option<f64> {
        let (n, sum) = self
            .window(from_ms, to_ms)
            .fold((0usize, 0.0), |(n, s), (_, v)| (n + 1, s + v));
        (n > 0).then(|| sum / n as f64)
    }

    /// The `q`-quantile (0..=1, nearest rank) of the samples in `[from_ms, to_ms]`.
    pub fn quantile(&self, q: f64, from_ms: u64, to_ms: u64) -> Option<f64> {
        let mut values: Vec<f64> = self.window(from_ms, to_ms).map(|(_, v)| v).collect();
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        // The rank is at most `values.len()`, so the cast cannot truncate.
        #[allow(clippy::cast_possible_truncation)]
        let rank = (q.clamp(0.0, 1.0) * values.len() as f64).ceil() as usize;
        Some(values[rank.clamp(1, values.len()) - 1])
    }

    /// Exponentially weighted mean as of `now_ms` over samples up to `now_ms`: a
    /// sample `age` old weighs `2^(-age / half_life)`, so a recent change shows within
    /// a half-life while one noisy sample moves it little. Samples are spaced
    /// irregularly, so the weights are computed from timestamps, not sample counts.
    pub fn ewma(&self, half_life_ms: u64, now_ms: u64) -> Option<f64> {
        let half_life = half_life_ms.max(1) as f64;
        let (weight, sum) = self
            .samples
            .iter()
            .rev()
            .skip_while(|&&(t, _)| t > now_ms)
            .take_while(|&&(t, _)| (now_ms - t) as f64 <= 20.0 * half_life)
            .fold((0.0, 0.0), |(w, s), &(t, v)| {
                let k = (-((now_ms - t) as f64) / half_life).exp2();
                (w + k, s + k * v)
            });
        (weight > 0.0).then(|| sum / weight)
    }
}

/// What a monotonically increasing counter counted between a sample of `before`
/// (if any) and one of `now`. A counter that went down was reset (switch
/// restarted, flow re-installed or modified with `reset_counts`): `now` is what it
/// counted since, not a huge negative difference.
pub fn counted_since(before: Option<u64>, now: u64) -> u64 {
    match before {
        Some(before) if now >= before => now - before,
        _ => now,
    }
}

/// Turns samples of a monotonically increasing counter (bytes of a flow) into rates.
///
/// A counter that goes down was reset (switch restarted, flow re-installed): the new
/// value is what was counted since the reset, so the rate over the interval is taken
/// from the new value alone instead of a huge negative difference.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CounterRate {
    last: Option<(u64, u64)>,
}

impl CounterRate {
    /// Feeds one counter sample; the rate per second since the previous sample, if
    /// there is a previous, older sample.
    pub fn update(&mut self, t_ms: u64, counter: u64) -> Option<f64> {
        let previous = self.last;
        match previous {
            Some((t0, _)) if t_ms <= t0 => return None,
            _ => self.last = Some((t_ms, counter)),
        }
        let (t0, c0) = previous?;
        let counted = counted_since(Some(c0), counter);
        Some(counted as f64 * 1000.0 / (t_ms - t0) as f64)
    }
}

/// Everything placement measures, keyed by VM × client region and by cloud pair.
///
/// A client region is named after the cloud whose gateway or switch the clients'
/// traffic enters the overlay at, so the latency a region's clients see at a cloud is
/// their (fixed) access latency plus the latency between those two clouds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurements {
    /// Traffic to and from each VM, bytes per second, by client region: `vm → region → series`.
    #[serde(default)]
    pub traffic: BTreeMap<String, BTreeMap<String, Series>>,
    /// Latency between clouds in ms (one way), `from → to → series`; the same cloud
    /// twice is the latency inside it.
    #[serde(default)]
    pub latency_ms: BTreeMap<String, BTreeMap<String, Series>>,
    /// Bandwidth available between clouds, bytes per second, `from → to → series`.
    #[serde(default)]
    pub bandwidth: BTreeMap<String, BTreeMap<String, Series>>,
    /// Last counter sample of each `vm → region`, for rates.
    #[serde(default)]
    pub counters: BTreeMap<String, BTreeMap<String, CounterRate>>,
    /// Samples kept per series (default [`DEFAULT_CAPACITY`]).
    #[serde(default = "default_capacity")]
    pub capacity: usize,
    /// The bucket of the newest region sample of each `vm → region`, and how many
    /// reports it holds (see [`Measurements::record_region_rate`]).
    #[serde(skip)]
    buckets: BTreeMap<String, BTreeMap<String, (u64, u32)>>,
}

impl Default for Measurements {
    /// An empty store keeping [`DEFAULT_CAPACITY`] samples per series.
    fn default() -> Self {
        Measurements::new(DEFAULT_CAPACITY)
    }
}

fn series_in<'a>(
    map: &'a mut BTreeMap<String, BTreeMap<String, Series>>,
    a: &str,
    b: &str,
    capacity: usize,
) -> &'a mut Series {
    map.entry(a.to_string())
        .or_default()
        .entry(b.to_string())
        .or_insert_with(|| Series::with_capacity(capacity))
}

fn pair<'a>(
    map: &'a BTreeMap<String, BTreeMap<String, Series>>,
    a: &str,
    b: &str,
) -> Option<&'a Series> {
    map.get(a).and_then(|m| m.get(b))
}

impl Measurements {
    /// An empty store keeping `capacity` samples per series.
    pub fn new(capacity: usize) -> Measurements {
        Measurements {
            traffic: BTreeMap::new(),
            latency_ms: BTreeMap::new(),
            bandwidth: BTreeMap::new(),
            counters: BTreeMap::new(),
            capacity: capacity.max(1),
            buckets: BTreeMap::new(),
        }
    }

    /// Records a sample of the byte counter of `vm`'s traffic with clients of
    /// `region`; from the second sample on, the rate goes into the traffic series.
    pub fn record_traffic_counter(&mut self, vm: &str, region: &str, t_ms: u64, bytes: u64) {
        let rate = self
            .counters
            .entry(vm.to_string())
            .or_default()
            .entry(region.to_string())
            .or_default()
            .update(t_ms, bytes);
        if let Some(rate) = rate {
            self.record_traffic_rate(vm, region, t_ms, rate);
        }
    }

    /// Records an already computed traffic rate (bytes per second).
    pub fn record_traffic_rate(&mut self, vm: &str, region: &str, t_ms: u64, bytes_per_s: f64) {
        series_in(&mut self.traffic, vm, region, self.capacity).push(t_ms, bytes_per_s);
    }

    /// Records the traffic rate of a region measured by several switches, each at
    /// its own time, into buckets of `bucket_ms`: the series keeps one sample per
    /// bucket (the mean of the reports that fell in it, at the time of the last),
    /// whatever the number of switches and however their sampling times fall.
    pub fn record_region_rate(
        &mut self,
        vm: &str,
        region: &str,
        t_ms: u64,
        bytes_per_s: f64,
        bucket_ms: u64,
    ) {
        if !bytes_per_s.is_finite() {
            return;
        }
        let bucket = t_ms / bucket_ms.max(1);
        let seen = self
            .buckets
            .entry(vm.to_string())
            .or_default()
            .entry(region.to_string())
            .or_insert((u64::MAX, 0));
        let s = series_in(&mut self.traffic, vm, region, self.capacity);
        match s.last() {
            Some((t, mean)) if seen.0 == bucket && t <= t_ms => {
                seen.1 += 1;
                s.samples.pop_back();
                s.samples
                    .push_back((t_ms, mean + (bytes_per_s - mean) / f64::from(seen.1)));
            }
            _ => {
                if s.push(t_ms, bytes_per_s) {
                    *seen = (bucket, 1);
                }
            }
        }
    }

    /// Forgets the series of VMs `keep` says no longer exist.
    pub fn retain_vms(&mut self, keep: impl Fn(&str) -> bool) {
        self.traffic.retain(|vm, _| keep(vm));
        self.counters.retain(|vm, _| keep(vm));
        self.buckets.retain(|vm, _| keep(vm));
    }

    /// Records a latency probe between two clouds (one way, ms).
    pub fn record_latency(&mut self, from: &str, to: &str, t_ms: u64, ms: f64) {
        series_in(&mut self.latency_ms, from, to, self.capacity).push(t_ms, ms);
    }

    /// Records the bandwidth measured between two clouds (bytes per second).
    pub fn record_bandwidth(&mut self, from: &str, to: &str, t_ms: u64, bytes_per_s: f64) {
        series_in(&mut self.bandwidth, from, to, self.capacity).push(t_ms, bytes_per_s);
    }

    /// Timestamp of the newest sample of any series.
    pub fn newest_ms(&self) -> Option<u64> {
        [&self.traffic, &self.latency_ms, &self.bandwidth]
            .into_iter()
            .flat_map(|map| map.values().flat_map(BTreeMap::values))
            .filter_map(|s| s.last().map(|(t, _)| t))
            .max()
    }

    /// The traffic series of one VM, by region.
    pub fn traffic_of(&self, vm: &str) -> impl Iterator<Item = (&str, &Series)> {
        self.traffic
            .get(vm)
            .into_iter()
            .flat_map(|m| m.iter().map(|(r, s)| (r.as_str(), s)))
    }

    /// Median latency between two clouds over `[now - window, now]`, either direction
    /// (probes are often sent one way only). The median, because one late probe must
    /// not move a VM.
    pub fn latency_between(&self, a: &str, b: &str, now_ms: u64, window_ms: u64) -> Option<f64> {
        let from = now_ms.saturating_sub(window_ms);
        [(a, b), (b, a)]
            .into_iter()
            .filter_map(|(x, y)| pair(&self.latency_ms, x, y)?.quantile(0.5, from, now_ms))
            .reduce(f64::min)
    }

    /// Bandwidth between two clouds: the mean over `[now - window, now]`, or the
    /// newest sample when none is that recent (a migration is rare; its throughput
    /// stays informative).
    pub fn bandwidth_between(&self, a: &str, b: &str, now_ms: u64, window_ms: u64) -> Option<f64> {
        let s = pair(&self.bandwidth, a, b).or_else(|| pair(&self.bandwidth, b, a))?;
        s.mean(now_ms.saturating_sub(window_ms), now_ms)
            .or_else(|| s.last().map(|(_, v)| v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_default_store_keeps_a_day_and_more_per_series() {
        let mut m = Measurements::default();
        for t in 0..3 {
            m.record_traffic_rate("web1", "eu", t * 1000, 1.0);
            m.record_latency("eu", "us", t * 1000, 40.0);
        }
        assert_eq!(m.traffic["web1"]["eu"].len(), 3);
        assert_eq!(m.latency_ms["eu"]["us"].len(), 3);
        let back: Measurements = serde_json::from_str("{}").unwrap();
        assert_eq!(back.capacity, DEFAULT_CAPACITY);
    }

    #[test]
    fn a_region_keeps_one_sample_per_interval_from_many_switches() {
        let mut m = Measurements::default();
        // Three switches of one cloud report every minute, 20 s apart (no gap of
        // half an interval between them), for two hours.
        for minute in 0..120u64 {
            for (offset, rate) in [(0, 10.0), (20_000, 20.0), (40_000, 30.0)] {
                m.record_region_rate("web1", "eu", minute * 60_000 + offset, rate, 60_000);
            }
        }
        let s = &m.traffic["web1"]["eu"];
        assert_eq!(s.len(), 120, "one sample per minute");
        assert_eq!(s.last(), Some((119 * 60_000 + 40_000, 20.0)), "their mean");
        // Two reports in the same millisecond merge too.
        m.record_region_rate("web1", "us", 5, 1.0, 60_000);
        m.record_region_rate("web1", "us", 5, 3.0, 60_000);
        assert_eq!(m.traffic["web1"]["us"].last(), Some((5, 2.0)));
        m.retain_vms(|vm| vm != "web1");
        assert!(m.traffic.is_empty());
    }

    #[test]
    fn a_full_ring_drops_the_oldest_sample() {
        let mut s = Series::with_capacity(3);
        for t in 1..=5 {
            assert!(s.push(t * 10, t as f64));
        }
        assert_eq!(s.len(), 3);
        assert_eq!(
            s.window(0, u64::MAX).collect::<Vec<_>>(),
            vec![(30, 3.0), (40, 4.0), (50, 5.0)]
        );
    }

    #[test]
    fn late_or_non_finite_samples_are_ignored() {
        let mut s = Series::default();
        assert!(s.push(100, 1.0));
        assert!(!s.push(100, 2.0));
        assert!(!s.push(50, 2.0));
        assert!(!s.push(200, f64::NAN));
        assert_eq!(s.last(), Some((100, 1.0)));
    }

    #[test]
    fn window_mean_and_quantiles() {
        let mut s = Series::default();
        for (i, v) in [5.0, 1.0, 4.0, 2.0, 3.0, 100.0].into_iter().enumerate() {
            s.push(i as u64 * 1000, v);
        }
        assert_eq!(s.mean(0, 4000), Some(3.0));
        assert_eq!(s.quantile(0.5, 0, 4000), Some(3.0));
        assert_eq!(s.quantile(1.0, 0, 5000), Some(100.0));
        assert_eq!(s.quantile(0.0, 0, 5000), Some(1.0));
        assert_eq!(s.mean(10_000, 20_000), None);
    }

    #[test]
    fn ewma_follows_a_step_within_a_few_half_lives() {
        let mut s = Series::default();
        for minute in 0..60u64 {
            s.push(minute * 60_000, if minute < 30 { 100.0 } else { 200.0 });
        }
        let half_life = 5 * 60_000;
        let at_step = s.ewma(half_life, 30 * 60_000).unwrap();
        let later = s.ewma(half_life, 59 * 60_000).unwrap();
        assert!(at_step > 100.0 && at_step < 150.0, "{at_step}");
        assert!(later > 190.0 && later <= 200.0, "{later}");
        // Samples after `now` are not seen.
        assert!((s.ewma(half_life, 29 * 60_000).unwrap() - 100.0).abs() < 1e-9);
    }

    #[test]
    fn counter_rates_survive_a_reset() {
        let mut c = CounterRate::default();
        assert_eq!(c.update(0, 1_000), None);
        assert_eq!(c.update(1_000, 3_000), Some(2_000.0));
        // The switch restarted: counting began again from zero.
        assert_eq!(c.update(2_000, 500), Some(500.0));
        assert_eq!(c.update(4_000, 4_500), Some(2_000.0));
        // A repeated timestamp gives no rate and keeps the older sample.
        assert_eq!(c.update(4_000, 9_000), None);
        assert_eq!(c.update(5_000, 5_500), Some(1_000.0));
    }

    #[test]
    fn measurements_key_traffic_by_vm_and_region_and_round_trip_through_json() {
        let mut m = Measurements::new(16);
        m.record_traffic_counter("web1", "aws-us-east", 0, 0);
        m.record_traffic_counter("web1", "aws-us-east", 60_000, 6_000_000);
        m.record_latency("aws-us-east", "gcp-europe", 60_000, 40.0);
        m.record_latency("aws-us-east", "gcp-europe", 61_000, 400.0);
        m.record_latency("aws-us-east", "gcp-europe", 62_000, 41.0);
        m.record_bandwidth("gcp-europe", "aws-us-east", 1_000, 1e8);
        assert_eq!(m.newest_ms(), Some(62_000));
        let traffic: Vec<_> = m.traffic_of("web1").collect();
        assert_eq!(traffic.len(), 1);
        assert_eq!(traffic[0].1.last(), Some((60_000, 100_000.0)));
        assert_eq!(
            m.latency_between("gcp-europe", "aws-us-east", 62_000, 10_000),
            Some(41.0)
        );
        assert_eq!(
            m.bandwidth_between("aws-us-east", "gcp-europe", 3_600_000, 60_000),
            Some(1e8)
        );
        let json = serde_json::to_string(&m).unwrap();
        let back: Measurements = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
    }

    proptest! {
        #[test]
        fn a_series_stays_ordered_and_bounded(
            capacity in 1usize..20,
            samples in prop::collection::vec((0u64..1_000, -1e6f64..1e6), 0..100),
        ) {
            let mut s = Series::with_capacity(capacity);
            for (t, v) in samples {
                s.push(t, v);
            }
            prop_assert!(s.len() <= capacity);
            let ts: Vec<u64> = s.window(0, u64::MAX).map(|(t, _)| t).collect();
            prop_assert!(ts.windows(2).all(|w| w[0] < w[1]));
        }

        #[test]
        fn counter_rates_are_never_negative(
            steps in prop::collection::vec((1u64..10_000, 0u64..1_000_000), 1..50),
        ) {
            let mut c = CounterRate::default();
            let mut t = 0;
            for (dt, counter) in steps {
                t += dt;
                if let Some(rate) = c.update(t, counter) {
                    prop_assert!(rate >= 0.0);
                }
            }
        }
    }
}
