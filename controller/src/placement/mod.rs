//! The placement engine: which cloud each VM should run in, from measured client
//! traffic and latency ("follow the sun").
//!
//! [`plan`] is a pure function of the VMs' knobs and current clouds, the
//! [`Measurements`], the engine's [`EngineConfig`] and the clock; it returns one
//! [`Decision`] per VM with the numbers and the reason behind it. Applying a decision
//! (the migration procedure) is the caller's business; this module never does I/O.
//!
//! The model, in short (the full text is `docs/placement.md`):
//! - Clients enter the overlay at a cloud (their *region*); the latency they see at
//!   a candidate cloud is the measured latency between the two clouds. A VM's
//!   expected latency at a cloud is the mean over regions weighted by forecast
//!   traffic (exponentially weighted recent rates).
//! - The *score* of a cloud is that latency, floored at the VM's latency target
//!   (being faster than the target is worth nothing), plus an optional price
//!   penalty. Clouds whose scores are within `tie_ms` are equal; the current one wins
//!   a tie, then the cheapest.
//! - A move costs the time to copy RAM and disk over the measured bandwidth plus the
//!   expected downtime. The *gain* is the score difference times the traffic over the
//!   horizon left once the move is done; the *cost* charges the traffic for the
//!   slowdown during the copy and the stall of the downtime. Both are in
//!   latency-weighted traffic (ms × bytes, shown as ms·GB).
//! - Hysteresis: a VM moves only when the gain beats the cost by `gain_margin`, the
//!   score improves by at least `min_improvement_ms` and `min_improvement_ratio`, and
//!   it has stayed `min_dwell_s` since its last move, so it never ping-pongs.
//! - Budget: at most `max_migrations_per_day` moves of one VM, and
//!   `max_fleet_migrations_per_vm_day` × VMs moves of the fleet, in any 24 hours. A
//!   move the rules above allow is made only while the budgets have room, and only
//!   if the day ahead (forecast from the same hours a season ago) is served better
//!   by spending a move now than by keeping it for a later, larger gain: a small
//!   dynamic program over the day's slots, with the budget each slot has left as old
//!   moves leave the window. The same plans share the fleet's budget out among the
//!   VMs (a knapsack), and may send a VM to a cloud between two regions' daytimes
//!   rather than the one best right now.

mod budget;
mod cost;
mod day_ahead;
mod decision;
mod plan;
mod site;
mod table;
#[cfg(test)]
mod tests;

pub use decision::{Decision, Why};
pub use plan::plan;
pub use site::{candidate_clouds, sites, Snapshot, VmSite};
pub use table::table;

use serde::{Deserialize, Serialize};

/// The engine's knobs that are not per VM. Defaults are documented in
/// `docs/placement.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EngineConfig {
    /// How far ahead a move must pay off, seconds.
    pub horizon_s: f64,
    /// Least time between two moves of one VM, seconds.
    pub min_dwell_s: f64,
    /// The gain must exceed the cost by this fraction (0.5: gain ≥ 1.5 × cost).
    pub gain_margin: f64,
    /// Least score improvement worth a move, ms.
    pub min_improvement_ms: f64,
    /// Least score improvement worth a move, as a fraction of the current score.
    pub min_improvement_ratio: f64,
    /// Half-life of the traffic forecast (exponentially weighted rates), seconds.
    pub traffic_half_life_s: f64,
    /// The load's season (a day), seconds: with that much history the forecast adds
    /// the change seen over the same horizon a season ago. 0: no seasonal forecast.
    pub seasonal_period_s: f64,
    /// Latency between clouds is the median of the probes of this window, seconds.
    pub latency_window_s: f64,
    /// Bandwidth between clouds is the mean over this window, seconds.
    pub bandwidth_window_s: f64,
    /// Bandwidth assumed between clouds never measured, bytes per second.
    pub default_bandwidth_bytes_per_s: f64,
    /// Memory assumed for a VM without `ram_mib`, MiB.
    pub default_ram_mib: u64,
    /// Expected downtime of a live migration, seconds.
    pub downtime_s: f64,
    /// Extra latency clients see while memory is being copied, ms.
    pub copy_penalty_ms: f64,
    /// What a request stalled by the downtime costs, ms (retransmissions included).
    pub downtime_penalty_ms: f64,
    /// Score added per unit of price per hour, ms (0: price only breaks ties).
    pub price_penalty_ms: f64,
    /// Scores closer than this are equal, ms.
    pub tie_ms: f64,
    /// Below this total traffic a VM is idle and stays, bytes per second.
    pub min_traffic_bytes_per_s: f64,
    /// Most migrations of one VM in any 24 hours (a rolling window over its arrivals);
    /// `None` (`null`): no budget. Leaving a cloud the VM may not use is never held
    /// back by it, but counts.
    pub max_migrations_per_day: Option<u32>,
    /// Slot of the day-ahead plan that decides whether a move is worth a unit of the
    /// budget, seconds.
    pub budget_slot_s: f64,
    /// Most migrations of all the VMs planned together in any 24 hours, per VM (1.9
    /// for 6 VMs: 11); `None` (`null`): no fleet budget. The day-ahead plans share
    /// it out: each VM's budget is the moves it made in the window plus the units
    /// of the rest that lower the fleet's forecast latency most.
    pub max_fleet_migrations_per_vm_day: Option<f64>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            horizon_s: 2.0 * 3600.0,
            min_dwell_s: 3.0 * 3600.0,
            gain_margin: 1.0,
            min_improvement_ms: 5.0,
            min_improvement_ratio: 0.15,
            traffic_half_life_s: 15.0 * 60.0,
            seasonal_period_s: 24.0 * 3600.0,
            latency_window_s: 5.0 * 60.0,
            bandwidth_window_s: 3600.0,
            default_bandwidth_bytes_per_s: 12.5e6,
            default_ram_mib: 1024,
            downtime_s: 0.3,
            copy_penalty_ms: 5.0,
            downtime_penalty_ms: 1000.0,
            price_penalty_ms: 0.0,
            tie_ms: 1.0,
            min_traffic_bytes_per_s: 1.0,
            max_migrations_per_day: Some(3),
            budget_slot_s: 15.0 * 60.0,
            max_fleet_migrations_per_vm_day: Some(1.9),
        }
    }
}
