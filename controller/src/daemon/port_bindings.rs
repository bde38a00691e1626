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
    by_dpid: Arc<ByDpid>,
}

/// Every switch's bindings, by datapath id.
pub(crate) type ByDpid = HashMap<u64, Arc<Vec<PortBinding>>>;

impl BindingsByDpid {
    /// Every switch's bindings at `version` with `arriving` in progress.
    pub(super) fn all(
        &mut self,
        version: u64,
        arriving: Option<&Migration>,
        inventory: &crate::model::Inventory,
    ) -> Arc<ByDpid> {
        let fresh = self
            .key
            .as_ref()
            .is_some_and(|(v, m)| *v == version && m.as_ref() == arriving);
        if !fresh {
            let mut by_host = inventory.port_bindings_by_host(arriving);
            self.by_dpid = Arc::new(
                inventory
                    .hosts
                    .iter()
                    .map(|h| {
                        let bindings = by_host.remove(&h.name).unwrap_or_default();
                        (h.datapath_id, Arc::new(bindings))
                    })
                    .collect(),
            );
            self.key = Some((version, arriving.cloned()));
        }
        self.by_dpid.clone()
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
                let all = cache.all(version, arriving, &inv);
                let shared = all.get(&host.datapath_id).cloned().unwrap_or_default();
                assert_eq!(
                    *shared,
                    inv.port_bindings(&host.name, arriving),
                    "{}",
                    host.name
                );
            }
        }
        assert!(
            !cache.all(2, None, &inv).contains_key(&0xdead),
            "not a host"
        );
    }
}
