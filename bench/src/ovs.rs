//! Open vSwitch as a peer: `ovsdb-server` and `ovs-vswitchd --disable-system` (no
//! kernel module here) with one bridge `br0` of the userspace `netdev` datapath,
//! inside a namespace of the benchmark, with their own database and run
//! directories. Both processes are ended by PID and the directories removed when
//! the handle is dropped.

use crate::common::Background;
use anyhow::{Context, Result};
use netns_tests::{run, Netns};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A running Open vSwitch with bridge `br0` (OpenFlow 1.3, netdev datapath).
#[derive(Debug)]
pub struct Ovs<'ns> {
    // Field order is drop order: the switch goes before its database and its dir.
    vswitchd: Background,
    _db: Background,
    dir: tempfile::TempDir,
    ns: &'ns Netns,
}

impl<'ns> Ovs<'ns> {
    /// Process id of `ovs-vswitchd` (the datapath's threads are its own).
    pub fn pid(&self) -> u32 {
        self.vswitchd.0.id()
    }

    /// Starts both daemons in `ns`; `other_config` entries (e.g.
    /// `userspace-tso-enable=true`) are set before `ovs-vswitchd` starts, because
    /// some of them are read only at its start.
    pub fn start(ns: &'ns Netns, other_config: &[&str]) -> Result<Ovs<'ns>> {
        let dir = tempfile::Builder::new().prefix("bench-ovs").tempdir()?;
        let d = dir.path().to_str().context("path")?.to_string();
        let db = format!("{d}/conf.db");
        run(std::process::Command::new("ovsdb-tool").args([
            "create",
            &db,
            "/usr/share/openvswitch/vswitch.ovsschema",
        ]))?;
        let mut server = ns.command("ovsdb-server");
        server
            .args([
                &db,
                &format!("--remote=punix:{d}/db.sock"),
                "--no-chdir",
                &format!("--pidfile={d}/ovsdb-server.pid"),
            ])
            .envs(env_of(&d))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let db_server = Background(server.spawn()?);
        wait_for(&dir.path().join("db.sock"), "ovsdb-server did not start")?;
        vsctl_in(ns, &d, &["--no-wait", "init"])?;
        for entry in other_config {
            vsctl_in(
                ns,
                &d,
                &[
                    "--no-wait",
                    "set",
                    "Open_vSwitch",
                    ".",
                    &format!("other_config:{entry}"),
                ],
            )?;
        }
        let mut switchd = ns.command("ovs-vswitchd");
        switchd
            .args([
                &format!("unix:{d}/db.sock"),
                "--disable-system",
                "--no-chdir",
                &format!("--pidfile={d}/ovs-vswitchd.pid"),
                &format!("--log-file={d}/ovs-vswitchd.log"),
            ])
            .envs(env_of(&d))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let ovs = Ovs {
            vswitchd: Background(switchd.spawn()?),
            _db: db_server,
            dir,
            ns,
        };
        ovs.vsctl(&netns_tests::ovs::ADD_NETDEV_BRIDGE)?;
        wait_for(
            &ovs.dir.path().join("br0.mgmt"),
            "ovs-vswitchd did not create br0",
        )?;
        Ok(ovs)
    }

    /// Runs `ovs-vsctl` against this instance's database.
    pub fn vsctl(&self, args: &[&str]) -> Result<String> {
        vsctl_in(self.ns, self.dir.path().to_str().context("path")?, args)
    }

    /// The `ovs-ofctl` target of bridge `br0` (its management socket).
    pub fn target(&self) -> String {
        format!("unix:{}/br0.mgmt", self.dir.path().display())
    }

    /// Process id of `ovs-vswitchd` (`ip netns exec` execs it, so it is the child's).
    pub fn vswitchd_pid(&self) -> u32 {
        self.vswitchd.0.id()
    }

    /// The last lines of `ovs-vswitchd`'s log, for error messages.
    pub fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("ovs-vswitchd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
}

fn wait_for(path: &Path, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        anyhow::ensure!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Run, database and log directories all point into `dir`.
fn env_of(dir: &str) -> [(&'static str, String); 3] {
    [
        ("OVS_RUNDIR", dir.to_string()),
        ("OVS_DBDIR", dir.to_string()),
        ("OVS_LOGDIR", dir.to_string()),
    ]
}

/// `ovs-vsctl` in `ns` against the database served from `dir`.
fn vsctl_in(ns: &Netns, dir: &str, args: &[&str]) -> Result<String> {
    run(ns
        .command("ovs-vsctl")
        .arg(format!("--db=unix:{dir}/db.sock"))
        .args(args)
        .envs(env_of(dir)))
}
