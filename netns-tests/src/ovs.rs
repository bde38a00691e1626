//! A real Open vSwitch for tests that ask it whether it accepts something: one
//! `ovsdb-server` and one `ovs-vswitchd --disable-system` (no kernel module on
//! these machines) with a bridge `br0` of the userspace datapath speaking
//! OpenFlow 1.3, run in a test's namespace from a private directory (database,
//! sockets, log). Dropping it ends both processes by PID and removes the directory.

use crate::{run, wait_until, Netns};
use anyhow::{Context, Result};
use std::process::{Child, Stdio};
use std::time::Duration;

/// `ovs-vsctl` arguments that add the userspace (netdev) bridge `br0` speaking
/// OpenFlow 1.3, as the tests and the benchmarks run Open vSwitch.
pub const ADD_NETDEV_BRIDGE: [&str; 8] = [
    "add-br",
    "br0",
    "--",
    "set",
    "bridge",
    "br0",
    "datapath_type=netdev",
    "protocols=OpenFlow13",
];

/// A running Open vSwitch with bridge `br0`; `ovs-ofctl` reaches it at
/// [`OpenVswitch::target`].
#[derive(Debug)]
pub struct OpenVswitch {
    // Drop order: the switch, then its database, then the directory.
    daemons: Vec<Child>,
    dir: tempfile::TempDir,
}

impl OpenVswitch {
    /// Starts the database and the switch in `ns` and creates `br0`.
    pub fn start(ns: &Netns) -> Result<OpenVswitch> {
        let dir = tempfile::Builder::new().prefix("netns-ovs").tempdir()?;
        let path = dir.path().to_str().context("temporary path")?.to_string();
        let private = |cmd: &mut std::process::Command| {
            for var in ["OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR"] {
                cmd.env(var, &path);
            }
        };
        run(std::process::Command::new("ovsdb-tool").args([
            "create",
            &format!("{path}/conf.db"),
            "/usr/share/openvswitch/vswitch.ovsschema",
        ]))?;
        let mut ovs = OpenVswitch {
            daemons: Vec::new(),
            dir,
        };
        let mut db = ns.command("ovsdb-server");
        db.arg(format!("{path}/conf.db"))
            .arg(format!("--remote=punix:{path}/db.sock"))
            .args(["--no-chdir", &format!("--pidfile={path}/ovsdb-server.pid")])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        private(&mut db);
        ovs.daemons.push(db.spawn()?);
        let socket = ovs.dir.path().join("db.sock");
        wait_until(Duration::from_secs(30), "ovsdb-server's socket", || {
            Ok(socket.exists())
        })?;
        ovs.vsctl(ns, &["--no-wait", "init"])?;
        let mut switchd = ns.command("ovs-vswitchd");
        switchd
            .arg(format!("unix:{path}/db.sock"))
            .args(["--disable-system", "--no-chdir"])
            .arg(format!("--pidfile={path}/ovs-vswitchd.pid"))
            .arg(format!("--log-file={path}/ovs-vswitchd.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        private(&mut switchd);
        // The switch goes first on drop.
        ovs.daemons.insert(0, switchd.spawn()?);
        let mut add_br = ADD_NETDEV_BRIDGE.to_vec();
        add_br.push("fail_mode=secure");
        ovs.vsctl(ns, &add_br)?;
        let mgmt = ovs.dir.path().join("br0.mgmt");
        wait_until(Duration::from_secs(30), "br0's management socket", || {
            Ok(mgmt.exists())
        })?;
        Ok(ovs)
    }

    fn vsctl(&self, ns: &Netns, args: &[&str]) -> Result<String> {
        let path = self.dir.path().display();
        run(ns
            .command("ovs-vsctl")
            .arg(format!("--db=unix:{path}/db.sock"))
            .args(args))
    }

    /// The `ovs-ofctl` target of `br0`.
    pub fn target(&self) -> String {
        format!("unix:{}/br0.mgmt", self.dir.path().display())
    }
}

impl Drop for OpenVswitch {
    fn drop(&mut self) {
        for child in &mut self.daemons {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
