//! Clouds programmed by the controller: starting `scc` in the router namespace of
//! an [`Internet`], calling its CLI, writing its inventory and the hosts' `scd`
//! configurations, and waiting until every switch confirmed the current program.
//! Shared by the namespace tests and the demo; it never touches the machine's own
//! interfaces.

use crate::{scc_binary, Internet, Vm};
use anyhow::{Context, Result};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// Where `scc` listens for switches: the router's address in cloud 1.
pub const CONTROLLER: &str = "192.0.2.1:6653";

/// `scc run` in the router namespace, ended by PID when dropped.
#[derive(Debug)]
pub struct Scc {
    child: Child,
    /// Its log file.
    pub log: std::path::PathBuf,
}

impl Scc {
    /// Sends a signal to the controller (through its `ip netns exec` parent, which
    /// execs it: same PID).
    pub fn signal(&self, sig: libc::c_int) -> Result<()> {
        let pid = libc::pid_t::try_from(self.child.id())?;
        // SAFETY: kill on the PID of a child we started and have not reaped.
        let rc = unsafe { libc::kill(pid, sig) };
        anyhow::ensure!(rc == 0, "kill: {}", std::io::Error::last_os_error());
        Ok(())
    }
}

impl Drop for Scc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `scc run` in the router namespace with its state in `dir`; `fresh` reads
/// `dir/inventory.toml` (otherwise the stored state is used, as after a restart).
pub fn start_scc(net: &Internet, dir: &std::path::Path, fresh: bool) -> Result<Scc> {
    start_scc_with(net, dir, fresh, None)
}

/// [`start_scc`] with a `--policy` file, which `SIGHUP` reloads.
pub fn start_scc_with(
    net: &Internet,
    dir: &std::path::Path,
    fresh: bool,
    policy: Option<&std::path::Path>,
) -> Result<Scc> {
    let log = dir.join(format!("scc-{}.log", if fresh { "first" } else { "again" }));
    let mut cmd = net.router.command(scc_binary()?.to_str().context("path")?);
    cmd.args(["run", "--state"]).arg(dir.join("state.json"));
    if fresh {
        cmd.arg("--inventory").arg(dir.join("inventory.toml"));
    }
    if let Some(p) = policy {
        cmd.arg("--policy").arg(p);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    Ok(Scc { child, log })
}

/// Runs an `scc` command in the router namespace: (success, stdout + stderr).
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

/// `scc status` as JSON.
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
#[derive(Debug)]
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
pub fn inventory(keys: &[crate::KeyPair], vms: &[VmEntry<'_>]) -> String {
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
    crate::run(
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

/// Sends one RARP "reverse request" from `mac` out of `ifname` (in the calling
/// thread's namespace), the announcement QEMU makes after a live migration: the
/// controller reroutes the VM when its new host's switch reports it.
pub fn announce_rarp(ifname: &str, mac: [u8; 6]) -> Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let mut frame = vec![0xffu8; 6];
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&[0x80, 0x35, 0, 1, 8, 0, 6, 4, 0, 3]);
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&[0; 4]);
    frame.resize(60, 0);
    // SAFETY: plain socket(2); checked below.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            i32::from(0x8035u16.to_be()),
        )
    };
    anyhow::ensure!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor owned here only.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = std::ffi::CString::new(ifname)?;
    // SAFETY: `name` is NUL-terminated.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    anyhow::ensure!(index != 0, "no interface {ifname}");
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid start.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = u16::try_from(libc::AF_PACKET)?;
    addr.sll_protocol = 0x8035u16.to_be();
    addr.sll_ifindex = i32::try_from(index)?;
    let len = u32::try_from(std::mem::size_of::<libc::sockaddr_ll>())?;
    // SAFETY: `frame` and `addr` are valid for the lengths given.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&addr as *const libc::sockaddr_ll).cast(),
            len,
        )
    };
    anyhow::ensure!(n == 60, "sendto: {}", std::io::Error::last_os_error());
    Ok(())
}

/// Milliseconds from the start of the current migration to the first timeline
/// event whose name starts with `event`, in an `scc status` answer.
pub fn event_ms(status: &serde_json::Value, event: &str) -> Option<f64> {
    status["timeline"]["events"]
        .as_array()?
        .iter()
        .find(|e| e[0].as_str().is_some_and(|n| n.starts_with(event)))?[1]
        .as_f64()
}

/// Waits until the controller's migration timeline has `event`, at most `within`,
/// giving up early when `stop` is set; returns that `scc status` answer.
pub fn wait_event(
    net: &Internet,
    event: &str,
    within: Duration,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<serde_json::Value> {
    let deadline = Instant::now() + within;
    loop {
        anyhow::ensure!(
            !stop.load(std::sync::atomic::Ordering::Relaxed),
            "interrupted while waiting for `{event}`"
        );
        let s = status(net)?;
        if event_ms(&s, event).is_some() {
            return Ok(s);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no `{event}` in the timeline: {s:#}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
