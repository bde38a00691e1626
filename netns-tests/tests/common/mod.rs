//! Helpers shared by the tests that run `scc`: starting it in the router namespace,
//! calling its CLI, and waiting until every switch confirmed the current program.
#![allow(dead_code)]

use anyhow::{Context, Result};
use netns_tests::{scc_binary, Internet, Vm};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

pub const CONTROLLER: &str = "192.0.2.1:6653";

/// `scc run` in the router namespace, ended by PID when dropped.
pub struct Scc {
    child: Child,
    /// Its log file.
    pub log: std::path::PathBuf,
}

impl Drop for Scc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_scc(net: &Internet, dir: &std::path::Path, fresh: bool) -> Result<Scc> {
    let log = dir.join(format!("scc-{}.log", if fresh { "first" } else { "again" }));
    let mut cmd = net.router.command(scc_binary()?.to_str().context("path")?);
    cmd.args(["run", "--state"]).arg(dir.join("state.json"));
    if fresh {
        cmd.arg("--inventory").arg(dir.join("inventory.toml"));
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    Ok(Scc { child, log })
}

pub fn scc(net: &Internet, args: &[&str]) -> Result<(bool, String)> {
    let out = net
        .router
        .command(scc_binary()?.to_str().context("path")?)
        .args(args)
        .output()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Ok((out.status.success(), text))
}

pub fn status(net: &Internet) -> Result<serde_json::Value> {
    let (ok, text) = scc(net, &["status"])?;
    anyhow::ensure!(ok, "scc status: {text}");
    Ok(serde_json::from_str(&text)?)
}

/// Waits until every switch has confirmed the current program version.
pub fn wait_synced(net: &Internet) -> Result<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = status(net) {
            let version = s["version"].as_u64();
            let hosts = s["hosts"].as_array().cloned().unwrap_or_default();
            if !hosts.is_empty()
                && hosts.iter().all(|h| {
                    h["switch"]["connected"] == true
                        && h["switch"]["synced_version"].as_u64() == version
                })
            {
                return Ok(s);
            }
            if Instant::now() > deadline {
                anyhow::bail!("switches not synchronised: {s:#}");
            }
        } else if Instant::now() > deadline {
            anyhow::bail!("scc status never answered");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One ping, one second to answer.
pub fn ping(vm: &Vm, ip: &str) -> Result<bool> {
    Ok(vm
        .ns
        .command("ping")
        .args(["-c", "1", "-W", "1", ip])
        .output()?
        .status
        .success())
}

/// Pings until it works (the first packets may wait for a handshake), at most `secs`.
pub fn reaches(vm: &Vm, ip: &str, secs: u64) -> Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if ping(vm, ip)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A VM as the inventory of a test sees it.
pub struct VmEntry<'a> {
    /// Name.
    pub name: &'a str,
    /// Index of its host.
    pub host: usize,
    /// Its port on that host.
    pub port: u32,
    /// Overlay address.
    pub ip: &'a str,
    /// MAC.
    pub mac: &'a str,
    /// Tenant.
    pub tenant: &'a str,
    /// The namespace VM (TAP name and namespace).
    pub vm: &'a Vm,
}

/// An inventory of one host per key (clouds cloud-1.., hosts host0.., endpoints
/// from [`Internet::host_addr`]) and these VMs, with the controller at [`CONTROLLER`].
pub fn inventory(keys: &[netns_tests::KeyPair], vms: &[VmEntry<'_>]) -> String {
    let mut t = format!("[controller]\nopenflow = \"{CONTROLLER}\"\napi = \"127.0.0.1:6680\"\n");
    for i in 0..keys.len() {
        t += &format!("[[cloud]]\nname = \"cloud-{}\"\n", i + 1);
    }
    for (i, k) in keys.iter().enumerate() {
        t += &format!(
            "[[host]]\nname = \"host{i}\"\ncloud = \"cloud-{}\"\ndatapath_id = {}\ntunnel_endpoint = \"{}:51820\"\npublic_key = \"{}\"\n",
            i + 1,
            i + 1,
            Internet::host_addr(i),
            k.public
        );
    }
    for e in vms {
        t += &format!(
            "[[vm]]\nname = \"{}\"\nmac = \"{}\"\nip = \"{}\"\nhost = \"host{}\"\nport = {}\ntap = \"{}\"\nnetns = \"{}\"\ntenant = \"{}\"\n",
            e.name, e.mac, e.ip, e.host, e.port, e.vm.ifname, e.vm.ns.name(), e.tenant
        );
    }
    t
}

/// The `scd` configuration of host `i` as `scc host-config` writes it.
pub fn host_config(net: &Internet, inventory: &std::path::Path, i: usize) -> Result<String> {
    netns_tests::run(
        net.router
            .command(scc_binary()?.to_str().context("path")?)
            .args([
                "host-config",
                &format!("host{i}"),
                "--inventory",
                inventory.to_str().context("path")?,
                "--key-file",
                "key",
            ]),
    )
}
