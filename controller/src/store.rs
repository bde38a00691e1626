//! The controller's embedded store: one JSON file holding the inventory, the policy,
//! the version of the network program and the migration in flight, replaced
//! atomically.
//!
//! Crash safety comes from the write path: the new state goes to a temporary file in
//! the same directory, is flushed to disk, and is renamed over the old file, and the
//! directory is flushed too; a crash at any point leaves either the old state or the
//! new one, never a torn file. This module owns that file and nothing else.

use crate::migration::MigrationState;
use crate::model::Inventory;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What survives a controller restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Persisted {
    /// The inventory as last accepted (shared with the program compiled from it
    /// and with every reader: a change copies it once, a reader never).
    pub inventory: Arc<Inventory>,
    /// The policy text as last accepted.
    pub policy: String,
    /// Where the policy came from (for messages).
    pub policy_name: String,
    /// Version of the network program; bumped by every accepted change.
    pub version: u64,
    /// Each VM's arrivals by migration (ms, Unix time) of the last two days: the
    /// placement engine's dwell time and migration budgets survive a restart.
    #[serde(default)]
    pub moves_ms: std::collections::BTreeMap<String, Vec<u64>>,
    /// The current or last migration as its last committed phase left it: the
    /// program of `version` was compiled with it, so a restarted controller
    /// compiles the same tables and resumes the migration from there.
    #[serde(default)]
    pub migration: Option<MigrationState>,
}

impl Persisted {
    /// A first state: `inventory` with `policy`, version 1, nothing moved yet.
    pub fn first(inventory: Inventory, policy: String, policy_name: String) -> Persisted {
        Persisted {
            inventory: Arc::new(inventory),
            policy,
            policy_name,
            version: 1,
            moves_ms: Default::default(),
            migration: None,
        }
    }
}

/// The store file.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
}

impl Store {
    /// A store at `path` (created on first save).
    pub fn new(path: &Path) -> Store {
        Store {
            path: path.to_path_buf(),
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The persisted state, if the file exists.
    pub fn load(&self) -> std::io::Result<Option<Persisted>> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", self.path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replaces the persisted state atomically and durably.
    pub fn save(&self, state: &Persisted) -> std::io::Result<()> {
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(
            ".{}.tmp",
            self.path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("scc-state")
        ));
        let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &self.path)?;
        std::fs::File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(&dir.path().join("scc.json"));
        assert!(store.load().unwrap().is_none());
        let inv =
            Inventory::parse(include_str!("../../docs/examples/inventory.toml"), "i").unwrap();
        let state = Persisted {
            inventory: Arc::new(inv),
            policy: "id".into(),
            policy_name: "p.kat".into(),
            version: 3,
            moves_ms: [("web1".to_string(), vec![1_000, 2_000])].into(),
            migration: None,
        };
        store.save(&state).unwrap();
        assert_eq!(store.load().unwrap(), Some(state.clone()));
        let mut next = state;
        next.version = 4;
        store.save(&next).unwrap();
        assert_eq!(store.load().unwrap().unwrap().version, 4);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file left behind: {names:?}");
    }
}
