//! Thin QEMU driver over QMP for supercloud live migration.
//!
//! Owns the hypervisor side of a migration: talking QMP to QEMU ([`qmp`]),
//! the typed commands it uses ([`commands`]), starting and stopping QEMU
//! processes ([`qemu`]), running a migration to completion or safe failure
//! ([`migration`]), with its disk ([`storage`]: NBD and a mirror), and its
//! streams over TLS with the deployment's CA ([`tls`]). It must never program the network (the controller and the
//! switch own that), never signal a process it did not start or was not given by
//! PID, and carries no unsafe code.
#![forbid(unsafe_code)]

pub mod commands;
pub mod migration;
pub mod notify;
pub mod qemu;
pub mod qmp;
pub mod storage;
pub mod tls;

#[cfg(test)]
mod fake;

pub use commands::{MigrationInfo, MigrationParameters, MigrationStatus, RunState, StatusInfo};
pub use migration::{migrate, MigrationError, MigrationOptions, MigrationReport};
pub use qemu::{Incoming, QemuConfig, QemuError, QemuProcess, TapNic};
pub use qmp::{EventKind, QmpClient, QmpError, QmpEvent};
