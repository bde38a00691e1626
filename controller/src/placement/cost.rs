//! The engine's cost model: forecast traffic by region, the expected client
//! latency and score of a cloud, and what a move costs (copy time, downtime).

use super::site::VmSite;
use crate::measure::Measurements;
use crate::model::EngineConfig;
use crate::model::VmPlacement;

/// Forecast mean traffic of one VM over the horizon by region, bytes per second.
///
/// The level is the recent exponentially weighted rate. When the series reaches one
/// season (`seasonal_period_s`, a day) back, the change the season saw next is
/// added: the median over the same horizon a season ago minus the median over the
/// hour before it (additive, so a region asleep a season ago does not multiply
/// noise). Latencies do not change over the horizon, so the mean rate is all the
/// scores need.
pub(super) fn forecast(
    vm: &str,
    m: &Measurements,
    config: &EngineConfig,
    now_ms: u64,
) -> Vec<(String, f64)> {
    let half_life = secs_to_ms(config.traffic_half_life_s);
    let period = secs_to_ms(config.seasonal_period_s);
    let horizon = secs_to_ms(config.horizon_s);
    // An hour at least, and medians: a flash crowd of the day before (minutes
    // long) must not be forecast again.
    let before = (2 * half_life).max(3_600_000);
    m.traffic_of(vm)
        .filter_map(|(region, s)| {
            let level = s.ewma(half_life, now_ms)?;
            let then = now_ms.checked_sub(period).filter(|_| period > 0);
            let seasonal_change = then
                .filter(|then| s.window(0, then.saturating_sub(before)).next().is_some())
                .and_then(|then| {
                    let next = s.quantile(0.5, then, then.saturating_add(horizon))?;
                    Some(next - s.quantile(0.5, then.saturating_sub(before), then)?)
                })
                .unwrap_or(0.0);
            Some((region.to_string(), (level + seasonal_change).max(0.0)))
        })
        .filter(|(_, rate)| *rate > 0.0)
        .collect()
}

pub(super) fn secs_to_ms(s: f64) -> u64 {
    std::time::Duration::try_from_secs_f64(s.max(0.0)).map_or(u64::MAX, |d| {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    })
}

/// Expected client latency at `cloud`: the traffic-weighted mean over regions; or the
/// region whose latency to it is unknown. Clients inside a cloud see it at 0 ms
/// unless a latency within it was measured.
pub(super) fn expected_latency(
    traffic: &[(String, f64)],
    cloud: &str,
    m: &Measurements,
    config: &EngineConfig,
    now_ms: u64,
) -> Result<f64, String> {
    let window = secs_to_ms(config.latency_window_s);
    let (mut weighted, mut total) = (0.0, 0.0);
    for (region, rate) in traffic {
        let latency = match m.latency_between(region, cloud, now_ms, window) {
            Some(l) => l,
            None if region == cloud => 0.0,
            None => return Err(region.clone()),
        };
        weighted += rate * latency;
        total += rate;
    }
    Ok(weighted / total)
}

/// Whether a VM with these knobs may run in `cloud` (no list: anywhere).
pub(super) fn may_use(knobs: &VmPlacement, cloud: &str) -> bool {
    knobs.clouds.is_empty() || knobs.clouds.iter().any(|c| c == cloud)
}

/// The score of a cloud where clients see `latency_ms`: the latency floored at the
/// VM's target, plus the price penalty; and the price.
pub(super) fn score(
    latency_ms: f64,
    cloud: &str,
    knobs: &VmPlacement,
    config: &EngineConfig,
) -> (f64, f64) {
    let price = knobs.price_per_hour.get(cloud).copied().unwrap_or(0.0);
    let floor = knobs.latency_target_ms.unwrap_or(0.0);
    (
        latency_ms.max(floor) + config.price_penalty_ms * price,
        price,
    )
}

/// Seconds to copy the VM's RAM and disk from one cloud to another.
pub(super) fn copy_time_s(
    vm: &VmSite,
    from: &str,
    to: &str,
    m: &Measurements,
    config: &EngineConfig,
    now_ms: u64,
) -> f64 {
    let bandwidth = m
        .bandwidth_between(from, to, now_ms, secs_to_ms(config.bandwidth_window_s))
        .filter(|b| *b > 0.0)
        .unwrap_or(config.default_bandwidth_bytes_per_s);
    let ram = vm.knobs.ram_mib.unwrap_or(config.default_ram_mib) as f64 * 1024.0 * 1024.0;
    let disk = vm.knobs.disk_gib.unwrap_or(0) as f64 * 1024.0 * 1024.0 * 1024.0;
    (ram + disk) / bandwidth
}

/// What a move costs the clients at `rate` bytes per second, ms·bytes: the slowdown
/// while memory is copied and the stall of the downtime.
pub(super) fn move_cost(rate: f64, copy_s: f64, config: &EngineConfig) -> f64 {
    rate * (copy_s * config.copy_penalty_ms + config.downtime_s * config.downtime_penalty_ms)
}
