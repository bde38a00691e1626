//! The placement settings the inventory carries: a VM's knobs (`[vm.placement]`),
//! the daemon's loop (`[placement]`) and the engine's knobs (`[placement.engine]`),
//! documented in `docs/placement.md`. The engine that uses them is
//! the placement module; these are plain data with their defaults.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A VM's placement knobs (`[vm.placement]`, all optional; see `docs/placement.md`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmPlacement {
    /// Clouds the VM may run in; empty means every cloud.
    #[serde(default)]
    pub clouds: Vec<String>,
    /// What the VM costs per hour in each cloud (a cloud not named costs 0).
    #[serde(default)]
    pub price_per_hour: BTreeMap<String, f64>,
    /// Client latency (traffic-weighted mean, ms) below which lower latency is worth
    /// nothing to this VM.
    #[serde(default)]
    pub latency_target_ms: Option<f64>,
    /// Memory to copy when it moves, MiB.
    #[serde(default)]
    pub ram_mib: Option<u64>,
    /// Disk to copy when it moves, GiB (0 when its disk is shared or remote).
    #[serde(default)]
    pub disk_gib: Option<u64>,
}

/// The daemon's follow-the-sun loop (`[placement]`; see `docs/placement.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlacementSettings {
    /// How often `scc` samples every switch's flow counters and tunnel round trips,
    /// seconds (0: never, and nothing is measured).
    pub sample_every_s: u64,
    /// How often `scc` plans and starts a migration by itself, seconds (0: only
    /// when asked, `scc placement run`).
    pub plan_every_s: u64,
    /// The command that moves a VM, as argv; `{vm}`, `{from_host}`, `{to_host}` and
    /// `{to_cloud}` are replaced. It prepares the destination, calls `scc migrate`
    /// and moves the VM (e.g. with `scvm migrate`). Empty: nothing can move a VM.
    pub migrate: Vec<String>,
    /// A move command still running after this long is stopped (SIGTERM, then
    /// SIGKILL, to everything it started), seconds; its migration, if it has not
    /// switched yet, is left to an operator (`scc migrate --arrived` or `--abort`).
    pub migrate_timeout_s: u64,
    /// The engine's knobs.
    pub engine: EngineConfig,
}

impl Default for PlacementSettings {
    fn default() -> Self {
        PlacementSettings {
            sample_every_s: 60,
            plan_every_s: 0,
            migrate: Vec::new(),
            migrate_timeout_s: 900,
            engine: EngineConfig::default(),
        }
    }
}

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
