//! One journal record: what an accepted change did to the persisted state (the
//! VMs, placement knobs and moves added, changed or removed, the hosts, the
//! inventory's settings, the policy and the migration when they changed, and the
//! new version), worked out from the state saved before and the one saved now,
//! and applied to the first to give the second. It never reads or writes a file.

use super::Persisted;
use crate::migration::MigrationState;
use crate::model::{
    Announce, Cloud, ControllerTls, Gateway, Host, Inventory, PlacementSettings, SwitchSettings,
    Vm, VmPlacement, Vms,
};
use openflow::flow::Mac;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

/// What one save changed, relative to the save before it.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Change {
    /// The version this change puts in force.
    pub(super) version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    policy_name: Option<String>,
    #[serde(default, skip_serializing_if = "MapChange::is_empty")]
    moves_ms: MapChange<Vec<u64>>,
    /// The migration changed: [`Change::migration`] is how it stands now.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    migration_changed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    migration: Option<MigrationState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    inventory: Option<InventoryChange>,
}

impl Change {
    /// What turns `before` into `after`. The inventory is compared entry by
    /// entry only when it is not the very same one (a change of policy or of a
    /// migration's phase shares it).
    pub(super) fn between(before: &Persisted, after: &Persisted) -> Change {
        let migration_changed = before.migration != after.migration;
        let inventory = (!Arc::ptr_eq(&before.inventory, &after.inventory))
            .then(|| InventoryChange::between(&before.inventory, &after.inventory))
            .filter(|c| !c.is_empty());
        Change {
            version: after.version,
            policy: (before.policy != after.policy).then(|| after.policy.clone()),
            policy_name: (before.policy_name != after.policy_name)
                .then(|| after.policy_name.clone()),
            moves_ms: MapChange::between(&before.moves_ms, &after.moves_ms),
            migration_changed,
            migration: if migration_changed {
                after.migration.clone()
            } else {
                None
            },
            inventory,
        }
    }

    /// Applies this change to `state`, the state saved before it.
    pub(super) fn apply(self, state: &mut Persisted) {
        state.version = self.version;
        if let Some(policy) = self.policy {
            state.policy = policy;
        }
        if let Some(name) = self.policy_name {
            state.policy_name = name;
        }
        self.moves_ms.apply(&mut state.moves_ms);
        if self.migration_changed {
            state.migration = self.migration;
        }
        if let Some(inventory) = self.inventory {
            inventory.apply(Arc::make_mut(&mut state.inventory));
        }
    }
}

/// The entries of a map by name that were set (added or changed) and removed.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound(serialize = "V: Serialize", deserialize = "V: Deserialize<'de>"))]
struct MapChange<V> {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    set: BTreeMap<String, V>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    removed: Vec<String>,
}

impl<V> Default for MapChange<V> {
    fn default() -> Self {
        MapChange {
            set: BTreeMap::new(),
            removed: Vec::new(),
        }
    }
}

impl<V: PartialEq + Clone> MapChange<V> {
    /// Walks both maps in step (they are sorted by name): one comparison per
    /// entry present in both, no lookups.
    fn between(before: &BTreeMap<String, V>, after: &BTreeMap<String, V>) -> MapChange<V> {
        let mut change = MapChange::default();
        let mut old = before.iter().peekable();
        let mut new = after.iter().peekable();
        loop {
            match (old.peek(), new.peek()) {
                (None, None) => break,
                (Some((name, _)), None) => {
                    change.removed.push((*name).clone());
                    old.next();
                }
                (None, Some((name, value))) => {
                    change.set.insert((*name).clone(), (*value).clone());
                    new.next();
                }
                (Some((old_name, old_value)), Some((new_name, new_value))) => {
                    match old_name.cmp(new_name) {
                        std::cmp::Ordering::Less => {
                            change.removed.push((*old_name).clone());
                            old.next();
                        }
                        std::cmp::Ordering::Greater => {
                            change.set.insert((*new_name).clone(), (*new_value).clone());
                            new.next();
                        }
                        std::cmp::Ordering::Equal => {
                            if old_value != new_value {
                                change.set.insert((*new_name).clone(), (*new_value).clone());
                            }
                            old.next();
                            new.next();
                        }
                    }
                }
            }
        }
        change
    }

    fn is_empty(&self) -> bool {
        self.set.is_empty() && self.removed.is_empty()
    }

    fn apply(self, map: &mut BTreeMap<String, V>) {
        for name in &self.removed {
            map.remove(name);
        }
        map.extend(self.set);
    }
}

impl MapChange<Vm> {
    /// The VMs that differ: the inventory's persistent map visits only the
    /// parts the two versions do not share.
    fn of_vms(before: &Inventory, after: &Inventory) -> MapChange<Vm> {
        let mut change = MapChange::default();
        for (was, is) in before.vm_changes(after) {
            match (was, is) {
                (_, Some(vm)) => {
                    change.set.insert(vm.name.clone(), vm.clone());
                }
                (Some(vm), None) => change.removed.push(vm.name.clone()),
                (None, None) => {}
            }
        }
        change
    }

    fn apply_to_vms(self, vms: &mut Vms) {
        for name in &self.removed {
            vms.remove(name);
        }
        for (name, vm) in self.set {
            vms.insert(name, vm);
        }
    }
}

/// What changed in the inventory.
#[derive(Debug, Serialize, Deserialize)]
struct InventoryChange {
    /// Everything but the hosts, VMs and placement knobs, when any of it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    settings: Option<Box<InventorySettings>>,
    /// The hosts, in file order, when any changed (a thousand hosts are a few
    /// hundred kilobytes; they change rarely).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hosts: Option<Vec<Host>>,
    #[serde(default, skip_serializing_if = "MapChange::is_empty")]
    vms: MapChange<Vm>,
    #[serde(default, skip_serializing_if = "MapChange::is_empty")]
    placement: MapChange<VmPlacement>,
}

impl InventoryChange {
    fn between(before: &Inventory, after: &Inventory) -> InventoryChange {
        let settings = InventorySettings::of(after);
        InventoryChange {
            settings: (InventorySettings::of(before) != settings).then(|| Box::new(settings)),
            hosts: (before.hosts != after.hosts).then(|| after.hosts.clone()),
            vms: MapChange::of_vms(before, after),
            placement: MapChange::between(&before.placement, &after.placement),
        }
    }

    fn is_empty(&self) -> bool {
        self.settings.is_none()
            && self.hosts.is_none()
            && self.vms.is_empty()
            && self.placement.is_empty()
    }

    fn apply(self, inventory: &mut Inventory) {
        if let Some(settings) = self.settings {
            settings.put(inventory);
        }
        if let Some(hosts) = self.hosts {
            inventory.hosts = hosts;
        }
        self.vms.apply_to_vms(&mut inventory.vms);
        self.placement.apply(&mut inventory.placement);
    }
}

/// The inventory less its hosts, VMs and placement knobs. Built and put back by
/// naming every field, so a field added to [`Inventory`] does not compile until
/// it is journalled too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct InventorySettings {
    overlay: (Ipv4Addr, u8),
    #[serde(default)]
    overlay_ipv6: Option<(Ipv6Addr, u8)>,
    gateway_mac: Mac,
    dns: Vec<Ipv4Addr>,
    openflow: SocketAddr,
    api: Option<SocketAddr>,
    api_socket: PathBuf,
    api_token_file: Option<PathBuf>,
    announce: Option<Announce>,
    clouds: BTreeMap<String, Cloud>,
    gateways: BTreeMap<String, Gateway>,
    placement_settings: PlacementSettings,
    switch_settings: SwitchSettings,
    openflow_tls: Option<ControllerTls>,
    insecure_plaintext: bool,
}

impl InventorySettings {
    fn of(inventory: &Inventory) -> InventorySettings {
        let Inventory {
            overlay,
            overlay_ipv6,
            gateway_mac,
            dns,
            openflow,
            api,
            api_socket,
            api_token_file,
            announce,
            clouds,
            hosts: _,
            vms: _,
            placement: _,
            gateways,
            placement_settings,
            switch_settings,
            openflow_tls,
            insecure_plaintext,
        } = inventory;
        InventorySettings {
            overlay: *overlay,
            overlay_ipv6: *overlay_ipv6,
            gateway_mac: *gateway_mac,
            dns: dns.clone(),
            openflow: *openflow,
            api: *api,
            api_socket: api_socket.clone(),
            api_token_file: api_token_file.clone(),
            announce: *announce,
            clouds: clouds.clone(),
            gateways: gateways.clone(),
            placement_settings: placement_settings.clone(),
            switch_settings: *switch_settings,
            openflow_tls: openflow_tls.clone(),
            insecure_plaintext: *insecure_plaintext,
        }
    }

    fn put(self, inventory: &mut Inventory) {
        let InventorySettings {
            overlay,
            overlay_ipv6,
            gateway_mac,
            dns,
            openflow,
            api,
            api_socket,
            api_token_file,
            announce,
            clouds,
            gateways,
            placement_settings,
            switch_settings,
            openflow_tls,
            insecure_plaintext,
        } = self;
        *inventory = Inventory {
            overlay,
            overlay_ipv6,
            gateway_mac,
            dns,
            openflow,
            api,
            api_socket,
            api_token_file,
            announce,
            clouds,
            hosts: std::mem::take(&mut inventory.hosts),
            vms: std::mem::take(&mut inventory.vms),
            placement: std::mem::take(&mut inventory.placement),
            gateways,
            placement_settings,
            switch_settings,
            openflow_tls,
            insecure_plaintext,
        };
    }
}
