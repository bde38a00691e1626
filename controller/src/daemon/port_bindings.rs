//! Every switch's VM port bindings for one program version, worked out once in
//! one pass over the VMs and shared by all sessions, instead of each session
//! scanning every VM for its own switch under the state lock.

use crate::host_config::PortBinding;
use crate::model::Migration;
use std::collections::HashMap;
use std::sync::Arc;

/// The bindings of one version (and the migration in progress then), by
/// datapath id.
#[derive(Debug, Default)]
pub(super) struct BindingsByDpid {
    key: Option<(u64, Option<Migration>)>,
    by_dpid: HashMap<u64, Arc<Vec<PortBinding>>>,
}

impl BindingsByDpid {
    /// Switch `dpid`'s bindings at `version` with `arriving` in progress,
    /// working them out from `inventory` when they were for another.
    pub(super) fn get(
        &mut self,
        version: u64,
        arriving: Option<&Migration>,
        inventory: &crate::model::Inventory,
        dpid: u64,
    ) -> Arc<Vec<PortBinding>> {
        let fresh = self
            .key
            .as_ref()
            .is_some_and(|(v, m)| *v == version && m.as_ref() == arriving);
        if !fresh {
            let mut by_host = inventory.port_bindings_by_host(arriving);
            self.by_dpid = inventory
                .hosts
                .iter()
                .map(|h| {
                    let bindings = by_host.remove(&h.name).unwrap_or_default();
                    (h.datapath_id, Arc::new(bindings))
                })
                .collect();
            self.key = Some((version, arriving.cloned()));
        }
        self.by_dpid.get(&dpid).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Inventory;

    #[test]
    fn one_pass_gives_each_switch_what_its_host_alone_would_and_follows_versions() {
        let text = include_str!("../../../docs/examples/inventory.toml");
        let inv = Inventory::parse(text, "inventory.toml").unwrap();
        let moving: Migration = serde_json::from_value(serde_json::json!({
            "vm": "web1", "from_host": "host-a", "from_port": 1,
            "to_host": "host-b", "to_port": 7, "phase": "Prepared",
        }))
        .unwrap();
        let mut cache = BindingsByDpid::default();
        for (version, arriving) in [(1, None), (1, Some(&moving)), (2, None)] {
            for host in &inv.hosts {
                let shared = cache.get(version, arriving, &inv, host.datapath_id);
                assert_eq!(
                    *shared,
                    inv.port_bindings(&host.name, arriving),
                    "{}",
                    host.name
                );
            }
        }
        assert!(cache.get(2, None, &inv, 0xdead).is_empty(), "not a host");
    }
}
