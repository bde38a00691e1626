//! Typed QMP commands and the reply types this crate reads.
//!
//! Owns the mapping between Rust types and QEMU's QAPI names (`query-migrate`,
//! `migrate-set-parameters`, `total-time`, ...). Pure data: it must never do I/O
//! and never interpret results (that is [`crate::migration`]'s job). Commands not
//! listed here go through [`Raw`].

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A QMP command: its name, its arguments, and the shape of its `return`.
pub trait Command {
    /// What QEMU's `return` deserializes into.
    type Response: DeserializeOwned;
    /// The QMP command name, e.g. `query-migrate`.
    fn name(&self) -> &str;
    /// The `arguments` object, or `None` for a command without arguments.
    fn arguments(&self) -> Result<Option<Value>, serde_json::Error>;
}

/// A reply whose content we do not read (QEMU returns `{}`).
pub type Empty = IgnoredAny;

fn serialize_args<T: Serialize>(t: &T) -> Result<Option<Value>, serde_json::Error> {
    Ok(match serde_json::to_value(t)? {
        Value::Null => None,
        Value::Object(m) if m.is_empty() => None,
        other => Some(other),
    })
}

macro_rules! command {
    ($ty:ty, $name:literal, $resp:ty) => {
        impl Command for $ty {
            type Response = $resp;
            fn name(&self) -> &str {
                $name
            }
            fn arguments(&self) -> Result<Option<Value>, serde_json::Error> {
                serialize_args(self)
            }
        }
    };
}

/// Any command by name, with arguments as JSON: the escape hatch.
#[derive(Debug, Clone, PartialEq)]
pub struct Raw {
    /// Command name.
    pub name: String,
    /// Arguments object, if any.
    pub arguments: Option<Value>,
}

impl Raw {
    /// A command without arguments.
    pub fn new(name: impl Into<String>) -> Self {
        Raw {
            name: name.into(),
            arguments: None,
        }
    }

    /// A command with an arguments object.
    pub fn with_args(name: impl Into<String>, arguments: Value) -> Self {
        Raw {
            name: name.into(),
            arguments: Some(arguments),
        }
    }
}

impl Command for Raw {
    type Response = Value;
    fn name(&self) -> &str {
        &self.name
    }
    fn arguments(&self) -> Result<Option<Value>, serde_json::Error> {
        Ok(self.arguments.clone())
    }
}

/// Commands without arguments: one unit struct each.
macro_rules! commands_without_arguments {
    ($($(#[$doc:meta])* $ty:ident = $name:literal -> $resp:ty;)*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy, Serialize)]
            pub struct $ty;
            command!($ty, $name, $resp);
        )*
    };
}

commands_without_arguments! {
    /// `query-status`: is the guest running?
    QueryStatus = "query-status" -> StatusInfo;
    /// `query-migrate`: the state and figures of the current/last migration.
    QueryMigrate = "query-migrate" -> MigrationInfo;
    /// `cont`: resume the guest's vCPUs.
    Cont = "cont" -> Empty;
    /// `stop`: pause the guest's vCPUs.
    Stop = "stop" -> Empty;
    /// `quit`: make QEMU exit (the connection closes right after the reply).
    Quit = "quit" -> Empty;
    /// `system_powerdown`: ask the guest to power off (ACPI).
    SystemPowerdown = "system_powerdown" -> Empty;
    /// `migrate_cancel`: abort the outgoing migration.
    MigrateCancel = "migrate_cancel" -> Empty;
    /// `query-block-jobs`: the running block jobs (a disk mirror).
    QueryBlockJobs = "query-block-jobs" -> Vec<BlockJobInfo>;
}

/// `migrate-continue`: go on from a migration paused in `state` (with the
/// `pause-before-switchover` capability, `pre-switchover`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrateContinue {
    /// The state the migration waits in.
    pub state: MigrationStatus,
}
command!(MigrateContinue, "migrate-continue", Empty);

/// `block-job-cancel`: stop a block job. A mirror that is ready and not forced
/// copies what is still dirty first and ends with source and target equal,
/// without switching the guest to the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockJobCancel {
    /// The job's id.
    pub device: String,
    /// Stop at once, even a ready mirror (its target is then incomplete).
    pub force: bool,
}
command!(BlockJobCancel, "block-job-cancel", Empty);

/// One entry of `query-block-jobs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BlockJobInfo {
    /// The job's id.
    pub device: String,
    /// `mirror`, `backup`, ...
    #[serde(rename = "type", default)]
    pub job_type: String,
    /// Bytes the job will have processed when done (grows while the guest
    /// dirties what was copied).
    #[serde(default)]
    pub len: u64,
    /// Bytes processed.
    #[serde(default)]
    pub offset: u64,
    /// Speed cap, bytes per second (0: none).
    #[serde(default)]
    pub speed: u64,
    /// A mirror that copied everything once and now follows the guest's writes.
    #[serde(default)]
    pub ready: bool,
    /// `running`, `ready`, `concluded`, ...
    #[serde(default)]
    pub status: String,
    /// Why it failed, once concluded with an error.
    #[serde(default)]
    pub error: Option<String>,
}

/// `migrate`: start an outgoing migration to `uri` (e.g. `tcp:100.64.0.2:4444`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Migrate {
    /// Destination URI.
    pub uri: String,
}
command!(Migrate, "migrate", Empty);

/// `migrate-incoming`: on a QEMU started with `-incoming defer`, listen on `uri`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrateIncoming {
    /// Listening URI, e.g. `tcp:0.0.0.0:4444`.
    pub uri: String,
}
command!(MigrateIncoming, "migrate-incoming", Empty);

/// One capability switch for `migrate-set-capabilities`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapabilityState {
    /// QAPI capability name, e.g. `events`, `xbzrle`, `postcopy-ram`.
    pub capability: String,
    /// On or off.
    pub state: bool,
}

/// `migrate-set-capabilities`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrateSetCapabilities {
    /// The switches to set.
    pub capabilities: Vec<CapabilityState>,
}
command!(MigrateSetCapabilities, "migrate-set-capabilities", Empty);

/// `migrate-set-parameters`: only the fields that are `Some` are sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MigrationParameters {
    /// Maximum tolerated downtime, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downtime_limit: Option<u64>,
    /// Bandwidth cap, in bytes per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bandwidth: Option<u64>,
    /// Delay before the first self-announce (RARP) after migration, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub announce_initial: Option<u64>,
    /// Maximum delay between announces, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub announce_max: Option<u64>,
    /// Number of announce rounds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub announce_rounds: Option<u64>,
    /// Increase of the delay between rounds, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub announce_step: Option<u64>,
    /// The id of a `tls-creds-x509` object: the stream runs over TLS with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_creds: Option<String>,
    /// The name the destination's certificate must carry (source only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_hostname: Option<String>,
    /// With auto-converge: the first throttle of the guest's vCPUs, percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_throttle_initial: Option<u64>,
    /// With auto-converge: the throttle added at each pass that does not
    /// converge, percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_throttle_increment: Option<u64>,
}

impl MigrationParameters {
    /// True when nothing would be sent.
    pub fn is_empty(&self) -> bool {
        *self == MigrationParameters::default()
    }
}
command!(MigrationParameters, "migrate-set-parameters", Empty);

/// QEMU's run state (`query-status`'s `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    /// vCPUs run.
    Running,
    /// Paused by `stop` or `-S`.
    Paused,
    /// Before the first `cont` with `-S`.
    Prelaunch,
    /// Waiting for an incoming migration.
    Inmigrate,
    /// Outgoing migration finished; the guest now runs elsewhere.
    Postmigrate,
    /// Stopped to copy the last dirty state of an outgoing migration.
    FinishMigrate,
    /// Loading a snapshot.
    RestoreVm,
    /// Saving a snapshot.
    SaveVm,
    /// Guest shut down (with `-no-shutdown`).
    Shutdown,
    /// Stopped on an I/O error.
    IoError,
    /// Stopped by the debugger.
    Debug,
    /// Internal error.
    InternalError,
    /// Guest suspended.
    Suspended,
    /// Watchdog fired.
    Watchdog,
    /// Guest panicked.
    GuestPanicked,
    /// COLO mode.
    Colo,
    /// A state this crate does not know.
    #[serde(other)]
    Other,
}

/// `query-status` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    /// True when vCPUs run.
    pub running: bool,
    /// The run state.
    pub status: RunState,
}

/// QEMU's migration state (`query-migrate`'s `status`, `MIGRATION` events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MigrationStatus {
    /// No migration has run.
    None,
    /// Connecting and negotiating.
    Setup,
    /// Being cancelled.
    Cancelling,
    /// Cancelled (terminal).
    Cancelled,
    /// Copying RAM while the guest runs.
    Active,
    /// Postcopy phase.
    PostcopyActive,
    /// Postcopy paused on a network failure.
    PostcopyPaused,
    /// Postcopy recovery setup.
    PostcopyRecoverSetup,
    /// Postcopy recovering.
    PostcopyRecover,
    /// Done (terminal).
    Completed,
    /// Failed (terminal).
    Failed,
    /// COLO.
    Colo,
    /// Paused before switching over (`pause-before-switchover`).
    PreSwitchover,
    /// Migrating device state.
    Device,
    /// Waiting for an unplug.
    WaitUnplug,
    /// A state this crate does not know.
    #[serde(other)]
    Other,
}

impl MigrationStatus {
    /// Completed, failed or cancelled: nothing more will happen.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            MigrationStatus::Completed | MigrationStatus::Failed | MigrationStatus::Cancelled
        )
    }

    /// The QAPI spelling, e.g. `postcopy-active`.
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationStatus::None => "none",
            MigrationStatus::Setup => "setup",
            MigrationStatus::Cancelling => "cancelling",
            MigrationStatus::Cancelled => "cancelled",
            MigrationStatus::Active => "active",
            MigrationStatus::PostcopyActive => "postcopy-active",
            MigrationStatus::PostcopyPaused => "postcopy-paused",
            MigrationStatus::PostcopyRecoverSetup => "postcopy-recover-setup",
            MigrationStatus::PostcopyRecover => "postcopy-recover",
            MigrationStatus::Completed => "completed",
            MigrationStatus::Failed => "failed",
            MigrationStatus::Colo => "colo",
            MigrationStatus::PreSwitchover => "pre-switchover",
            MigrationStatus::Device => "device",
            MigrationStatus::WaitUnplug => "wait-unplug",
            MigrationStatus::Other => "other",
        }
    }
}

impl std::fmt::Display for MigrationStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RAM figures of `query-migrate`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RamStats {
    /// Bytes sent so far.
    #[serde(default)]
    pub transferred: u64,
    /// Bytes left to send.
    #[serde(default)]
    pub remaining: u64,
    /// Guest RAM size in bytes.
    #[serde(default)]
    pub total: u64,
    /// Zero pages found.
    #[serde(default)]
    pub duplicate: u64,
    /// Pages sent in full.
    #[serde(default)]
    pub normal: u64,
    /// Throughput of the last iteration, Mbit/s.
    #[serde(default)]
    pub mbps: f64,
    /// Dirty pages per second.
    #[serde(default)]
    pub dirty_pages_rate: u64,
    /// How many times the dirty bitmap was synced (≈ passes).
    #[serde(default)]
    pub dirty_sync_count: u64,
    /// The page size of `dirty_pages_rate`, bytes (0 when QEMU omits it).
    #[serde(default)]
    pub page_size: u64,
}

/// `query-migrate` reply (absent fields are `None`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct MigrationInfo {
    /// Migration state; absent before any migration.
    pub status: Option<MigrationStatus>,
    /// Milliseconds since start (or total, when done).
    pub total_time: Option<i64>,
    /// Guest downtime in ms (when completed).
    pub downtime: Option<i64>,
    /// Estimated downtime in ms (while active).
    pub expected_downtime: Option<i64>,
    /// Percent the vCPUs are throttled by auto-converge.
    pub cpu_throttle_percentage: Option<u64>,
    /// Setup time in ms.
    pub setup_time: Option<i64>,
    /// RAM figures.
    pub ram: Option<RamStats>,
    /// Why it failed.
    pub error_desc: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parameters_send_only_what_is_set_in_qapi_spelling() {
        let p = MigrationParameters {
            downtime_limit: Some(100),
            announce_rounds: Some(5),
            ..Default::default()
        };
        assert_eq!(
            p.arguments().unwrap(),
            Some(json!({"downtime-limit": 100, "announce-rounds": 5}))
        );
        assert!(MigrationParameters::default().is_empty());
        assert_eq!(p.name(), "migrate-set-parameters");
    }

    #[test]
    fn unit_commands_have_no_arguments() {
        assert_eq!(QueryMigrate.arguments().unwrap(), None);
        assert_eq!(MigrateCancel.name(), "migrate_cancel");
        assert_eq!(
            Migrate {
                uri: "tcp:1:2".into()
            }
            .arguments()
            .unwrap(),
            Some(json!({"uri": "tcp:1:2"}))
        );
    }

    #[test]
    fn query_migrate_reply_parses_with_unknown_fields() {
        let v = json!({
            "status": "completed", "total-time": 312, "downtime": 41, "setup-time": 2,
            "ram": {"transferred": 1234567, "remaining": 0, "total": 134217728,
                    "duplicate": 30000, "normal": 300, "mbps": 880.5,
                    "dirty-pages-rate": 0, "dirty-sync-count": 3, "page-size": 4096},
            "blocked-reasons": []
        });
        let info: MigrationInfo = serde_json::from_value(v).unwrap();
        assert_eq!(info.status, Some(MigrationStatus::Completed));
        assert_eq!(info.downtime, Some(41));
        assert_eq!(info.ram.unwrap().transferred, 1_234_567);
        let none: MigrationInfo = serde_json::from_value(json!({})).unwrap();
        assert_eq!(none.status, None);
    }

    #[test]
    fn unknown_states_do_not_break_parsing() {
        let s: MigrationStatus = serde_json::from_value(json!("some-future-state")).unwrap();
        assert_eq!(s, MigrationStatus::Other);
        let r: RunState = serde_json::from_value(json!("finish-migrate")).unwrap();
        assert_eq!(r, RunState::FinishMigrate);
        assert!(MigrationStatus::Cancelled.is_terminal());
        assert!(!MigrationStatus::Active.is_terminal());
        assert_eq!(
            MigrationStatus::PostcopyActive.to_string(),
            "postcopy-active"
        );
    }
}
