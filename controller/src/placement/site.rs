//! What the engine plans over besides the measurements' series: the VMs as it
//! sees them (their cloud, knobs and recent moves), the candidate clouds, and the
//! snapshot the daemon hands it or `scc placement plan --measurements FILE` reads.

use crate::measure::Measurements;
use crate::model::EngineConfig;
use crate::model::{Inventory, VmPlacement};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One VM as the engine sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmSite {
    /// Name.
    pub name: String,
    /// The cloud it runs in now.
    pub cloud: String,
    /// Its knobs from the inventory.
    #[serde(default)]
    pub knobs: VmPlacement,
    /// When it last arrived somewhere by migration (ms, the measurements' clock).
    #[serde(default)]
    pub last_moved_ms: Option<u64>,
    /// When it arrived somewhere by migration over the last day at least (ms, any
    /// order; `last_moved_ms` counts too), for the migration budget.
    #[serde(default)]
    pub recent_moves_ms: Vec<u64>,
}

/// The VMs of an inventory: the cloud of each one's host, its knobs, and when it
/// last moved (from the caller's migration history).
pub fn sites(inventory: &Inventory, last_moved_ms: &BTreeMap<String, u64>) -> Vec<VmSite> {
    inventory
        .vms
        .values()
        .map(|vm| VmSite {
            name: vm.name.clone(),
            cloud: inventory
                .host(&vm.host)
                .map(|h| h.cloud.clone())
                .unwrap_or_default(),
            knobs: inventory
                .placement
                .get(&vm.name)
                .cloned()
                .unwrap_or_default(),
            last_moved_ms: last_moved_ms.get(&vm.name).copied(),
            recent_moves_ms: Vec::new(),
        })
        .collect()
}

/// Everything the engine needs besides the inventory: what the daemon hands it,
/// and what `scc placement plan --measurements FILE` reads (`docs/placement.md`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The clock of the plan, ms on the measurements' clock; default: the newest sample.
    #[serde(default)]
    pub now_ms: Option<u64>,
    /// The measurements.
    #[serde(default)]
    pub measurements: Measurements,
    /// When each VM last arrived somewhere by migration, ms.
    #[serde(default)]
    pub last_moved_ms: BTreeMap<String, u64>,
    /// When each VM arrived somewhere by migration over the last day at least, ms
    /// (for the migration budget; `last_moved_ms` counts too).
    #[serde(default)]
    pub recent_moves_ms: BTreeMap<String, Vec<u64>>,
    /// Engine knobs; missing fields take their defaults.
    #[serde(default)]
    pub config: EngineConfig,
}

/// The clouds a VM may be placed in: every cloud with a host.
pub fn candidate_clouds(inventory: &Inventory) -> Vec<String> {
    inventory
        .clouds
        .keys()
        .filter(|c| inventory.hosts.iter().any(|h| &h.cloud == *c))
        .cloned()
        .collect()
}
