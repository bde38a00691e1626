//! The namespace test harness: whole hosts and VMs as Linux network namespaces.
//!
//! It owns creating and destroying test namespaces (unique names that start with the
//! test's name, removed in `Drop`, also when the test panics), running code and
//! commands inside them, attaching "VMs" (a namespace that owns a TAP whose file
//! descriptor `scd` holds), and starting `scd` processes and reading their metrics.
//! It never touches the machine's own interfaces or routes, and it ends only the
//! processes it started, by PID.
//!
//! Beside it, each a layer above this root (they use it, it uses none of them):
//! `internet` (the emulated internet and its delay lines), `traffic` (checked TCP
//! and UDP streams, pings), `echo` (the checked stream through a VM's echo server),
//! `wait` (polling for a state with a deadline), `packet` (AF_PACKET sockets),
//! `ofctl` (`ovs-ofctl` against a switch and its `dump-flows` text),
//! `host_config` (the head of a test host's `scd` configuration), `cloud`
//! (clouds programmed by `scc`), `paced` (the paced TCP stream the migration
//! tests run across a move), `replicas` (an etcd cluster and `scc`
//! replicas on it), `disk` (the guest disks of the storage-migration tests) and
//! `qemu_cloud` (what the tests migrating a QEMU guest between `scd` hosts share).

pub mod cloud;
pub mod disk;
pub mod dual_stack;
mod echo;
mod host_config;
mod internet;
pub mod ofctl;
pub mod ovs;
mod paced;
pub mod packet;
pub mod pki;
pub mod qemu_cloud;
pub mod replicas;
mod traffic;
mod wait;

pub use echo::{EchoStream, StreamStats};
pub use host_config::{scd_config_head, GATEWAY_MAC};
pub use internet::{linked_pair, DelayLine, Internet};
pub use traffic::{
    big_receive_buffer, datagrams_before_marker, fill_pseudo_random, ping, tcp_transfer, udp_count,
    Burst, Fnv, Pings, Transfer,
};
pub use wait::{wait_for, wait_until};

use anyhow::{anyhow, bail, Context, Result};
use hypervisor_glue::{MigrationOptions, MigrationParameters};
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// True when this process may build namespaces. When it may not, says so loudly;
/// under CI (`CI=true`) that is a failure, never a silent pass.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let has_ip = Command::new("ip").arg("-V").output().is_ok();
    if root && has_ip {
        return true;
    }
    let why = if root {
        "the `ip` command (iproute2) is missing"
    } else {
        "it needs root"
    };
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{test}: cannot run because {why}; CI must run every namespace test");
    }
    eprintln!("\n*** {test}: NOT RUN because {why} (this would fail under CI=true) ***\n");
    false
}

/// True when `program` can be run (`program --version` works). When it cannot,
/// says so loudly; under CI (`CI=true`) that is a failure, never a silent pass.
pub fn require_program(test: &str, program: &str) -> bool {
    let found = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if found {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{test}: cannot run because `{program}` is missing; CI must install it");
    }
    eprintln!(
        "\n*** {test}: NOT RUN because `{program}` is missing (this would fail under CI=true) ***\n"
    );
    false
}

/// The QEMU guest the namespace tests boot: a Debian kernel and the busybox
/// initramfs `scripts/build-guest.sh` builds (in `target/guest`, or `GUEST_DIR`).
#[derive(Debug, Clone)]
pub struct Guest {
    /// The kernel image.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
}

/// Root, QEMU and the guest, or why not: like [`require_root`], a missing piece
/// is said loudly and fails the run under CI (`CI=true`).
pub fn require_qemu_guest(test: &str) -> Option<Guest> {
    if !require_root(test) {
        return None;
    }
    let dir = std::env::var_os("GUEST_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/guest"),
        PathBuf::from,
    );
    let guest = Guest {
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initramfs.cpio.gz"),
    };
    let mut missing = Vec::new();
    if !Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        missing.push("qemu-system-x86_64 (run: bash scripts/install-qemu.sh)".to_owned());
    }
    for f in [&guest.kernel, &guest.initrd] {
        if !f.exists() {
            missing.push(format!(
                "{} (run: bash scripts/build-guest.sh)",
                f.display()
            ));
        }
    }
    if missing.is_empty() {
        return Some(guest);
    }
    let missing = missing.join("; ");
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("{test}: cannot run under CI=true, missing: {missing}");
    }
    eprintln!("\n*** {test}: NOT RUN, missing: {missing} (this would fail under CI=true) ***\n");
    None
}

/// How the QEMU tests migrate their guest with `parameters`: given up after 60 s,
/// QEMU's other settings left as they are.
pub fn guest_migration(parameters: MigrationParameters) -> MigrationOptions {
    MigrationOptions {
        parameters,
        timeout: Duration::from_secs(60),
        ..Default::default()
    }
}

/// The QEMU tests' usual migration: [`guest_migration`] with at most 100 ms of
/// downtime.
pub fn low_downtime_guest_migration() -> MigrationOptions {
    guest_migration(MigrationParameters {
        downtime_limit: Some(100),
        ..Default::default()
    })
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A short name unique to this process: `prefix` + pid + sequence. Interface names
/// must stay within 15 bytes, so keep `prefix` short for those.
pub fn unique(prefix: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}{n}", std::process::id() % 100_000)
}

/// Runs a command and fails with its stderr when it fails.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("spawn {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Creates a veth pair: interface `a` in namespace `a_ns`, its peer `b` in `b_ns`.
pub fn veth(a: &str, a_ns: &Netns, b: &str, b_ns: &Netns) -> Result<()> {
    run(Command::new("ip").args([
        "link",
        "add",
        a,
        "netns",
        a_ns.name(),
        "type",
        "veth",
        "peer",
        "name",
        b,
        "netns",
        b_ns.name(),
    ]))?;
    Ok(())
}

/// A network namespace that is deleted when dropped (if this handle made it).
#[derive(Debug)]
pub struct Netns {
    name: String,
    owned: bool,
}

impl Netns {
    /// Creates namespace `name` with its loopback up.
    pub fn new(name: &str) -> Result<Netns> {
        run(Command::new("ip").args(["netns", "add", name]))?;
        let ns = Netns {
            name: name.to_string(),
            owned: true,
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A handle on an existing namespace that someone else made and deletes.
    pub fn existing(name: &str) -> Netns {
        Netns {
            name: name.to_string(),
            owned: false,
        }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NAME args...`.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `f` on a thread that has entered the namespace. Sockets created there
    /// stay in the namespace for their whole life.
    pub fn spawn<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> std::thread::JoinHandle<Result<R>> {
        let path = PathBuf::from("/run/netns").join(&self.name);
        std::thread::spawn(move || {
            let file = File::open(&path).with_context(|| format!("open {}", path.display()))?;
            // SAFETY: setns on an open namespace file; it changes only this thread.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(anyhow!(
                    "setns {}: {}",
                    path.display(),
                    std::io::Error::last_os_error()
                ));
            }
            Ok(f())
        })
    }

    /// Runs `f` inside the namespace and waits for it.
    pub fn enter<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> Result<R> {
        self.spawn(f)
            .join()
            .map_err(|_| anyhow!("thread in {} panicked", self.name))?
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// The two VMs of the one-host tests (`switch_one_host`, `openflow`): their MACs
/// and overlay addresses.
pub mod two_vms {
    use super::VmAddress;

    /// The first VM's MAC.
    pub const MAC1: &str = "02:00:00:00:01:01";
    /// The second VM's MAC.
    pub const MAC2: &str = "02:00:00:00:01:02";
    /// The first VM's overlay address.
    pub const IP1: &str = "100.64.1.1";
    /// The second VM's overlay address.
    pub const IP2: &str = "100.64.1.2";
    /// The first VM in the overlay.
    pub const VM1: VmAddress<'static> = VmAddress::overlay(MAC1, IP1);
    /// The second VM in the overlay.
    pub const VM2: VmAddress<'static> = VmAddress::overlay(MAC2, IP2);

    /// The `[[port]]` sections of a switch that creates the two VMs' TAPs:
    /// `tap1` as port 1, `tap2` as port 2.
    pub fn tap_ports(tap1: &str, tap2: &str) -> String {
        format!(
            "[[port]]\nnumber = 1\nname = \"{tap1}\"\n\
             [[port]]\nnumber = 2\nname = \"{tap2}\"\n"
        )
    }

    /// Starts `scd` in `host` with `head` (as [`crate::scd_config_head`] writes
    /// it), then `[openflow]` with `openflow` as its body, and two TAP ports;
    /// moves each TAP into a VM namespace named after `test` with `addrs`.
    pub fn switch_with_two_vms(
        test: &str,
        host: &crate::Netns,
        head: &str,
        openflow: &str,
        addrs: [VmAddress<'_>; 2],
    ) -> anyhow::Result<(crate::Scd, crate::Vm, crate::Vm)> {
        let (tap1, tap2) = (crate::unique("sct"), crate::unique("sct"));
        let config = format!("{head}[openflow]\n{openflow}\n{}", tap_ports(&tap1, &tap2));
        let scd = crate::Scd::start(host, &config, None)?;
        let vm1 = crate::Vm::attach(
            &crate::unique(&format!("{test}-v1-")),
            host,
            &tap1,
            addrs[0],
        )?;
        let vm2 = crate::Vm::attach(
            &crate::unique(&format!("{test}-v2-")),
            host,
            &tap2,
            addrs[1],
        )?;
        Ok((scd, vm1, vm2))
    }
}

/// How a VM's interface is addressed: its MAC, and its IP address with the prefix
/// length of its on-link route.
#[derive(Debug, Clone, Copy)]
pub struct VmAddress<'a> {
    /// The MAC.
    pub mac: &'a str,
    /// The IP address.
    pub ip: &'a str,
    /// The prefix length of the on-link route.
    pub prefix_len: u8,
}

impl<'a> VmAddress<'a> {
    /// `mac` and `ip` with the whole overlay, 100.64.0.0/10, on link: every other
    /// VM is reached through the anycast gateway's ARP answers.
    pub const fn overlay(mac: &'a str, ip: &'a str) -> VmAddress<'a> {
        VmAddress {
            mac,
            ip,
            prefix_len: 10,
        }
    }
}

/// A "VM": a namespace that owns one TAP device served by `scd`.
#[derive(Debug)]
pub struct Vm {
    /// Its namespace.
    pub ns: Netns,
    /// The TAP's name inside the namespace.
    pub ifname: String,
    /// Its MAC.
    pub mac: String,
    /// Its overlay address.
    pub ip: String,
}

impl Vm {
    /// Gives `ifname` (its MAC already `addr.mac`) the address
    /// `addr.ip/addr.prefix_len` in `ns` and brings it up: the VM.
    fn addressed(ns: Netns, ifname: &str, addr: VmAddress<'_>) -> Result<Vm> {
        let VmAddress {
            mac,
            ip,
            prefix_len,
        } = addr;
        ns.ip(&["addr", "add", &format!("{ip}/{prefix_len}"), "dev", ifname])?;
        ns.ip(&["link", "set", ifname, "up"])?;
        Ok(Vm {
            ns,
            ifname: ifname.to_string(),
            mac: mac.to_string(),
            ip: ip.to_string(),
        })
    }
}

impl Vm {
    /// Moves `tap` from the host namespace `host` into a new namespace `name`, and
    /// gives it `addr`. The on-link route for the prefix makes the
    /// whole overlay reachable through the anycast gateway's ARP answers.
    pub fn attach(name: &str, host: &Netns, tap: &str, addr: VmAddress<'_>) -> Result<Vm> {
        let ns = Netns::new(name)?;
        host.ip(&["link", "set", tap, "netns", name])?;
        ns.ip(&["link", "set", tap, "address", addr.mac])?;
        Vm::addressed(ns, tap, addr)
    }
}

impl Vm {
    /// Creates namespace `name` holding a persistent TAP `tap` with `addr` and
    /// `mtu`, for an `scd` port configured with
    /// `netns = name` and `create = false`. The VM keeps its interface and address
    /// when the switch serving it stops, restarts, or is replaced by another.
    pub fn with_tap(name: &str, tap: &str, addr: VmAddress<'_>, mtu: u32) -> Result<Vm> {
        Vm::with_tap_queues(name, tap, addr, mtu, false)
    }

    /// [`Vm::with_tap`], the TAP made with `multi_queue` when asked, for an
    /// `scd` with several forwarding workers (each attaches a queue).
    pub fn with_tap_queues(
        name: &str,
        tap: &str,
        addr: VmAddress<'_>,
        mtu: u32,
        multi_queue: bool,
    ) -> Result<Vm> {
        let ns = Netns::new(name)?;
        let queues: &[&str] = if multi_queue { &["multi_queue"] } else { &[] };
        ns.ip(&[&["tuntap", "add", "dev", tap, "mode", "tap"], queues].concat())?;
        ns.ip(&[
            "link",
            "set",
            tap,
            "address",
            addr.mac,
            "mtu",
            &mtu.to_string(),
        ])?;
        Vm::addressed(ns, tap, addr)
    }

    /// The `[[port]]` section of an `scd` config serving this VM's TAP.
    pub fn port_section(&self, number: u32) -> String {
        self.tap_port_section(number, &self.ifname)
    }

    /// The `[[port]]` section of an `scd` config serving `tap`, another TAP in this
    /// VM's namespace (where a migrating VM lands).
    pub fn tap_port_section(&self, number: u32, tap: &str) -> String {
        format!(
            "[[port]]\nnumber = {number}\nname = \"{tap}\"\nnetns = \"{}\"\ncreate = false\n",
            self.ns.name()
        )
    }
}

impl Vm {
    /// Creates namespace `name` holding `ifname`, one end of a veth pair, with
    /// `addr` and `mtu`; the other end, of the same name, is made in
    /// namespace `host` and brought up there, for an `scd` port of `type = "raw"`.
    /// Segmentation offloads (TSO/GSO) are turned off on the VM's end, because a raw
    /// port refuses super-frames; transmit checksum offload stays on, so the raw
    /// port sees unfinished checksums and must finish them.
    pub fn with_veth(
        name: &str,
        host: &Netns,
        ifname: &str,
        addr: VmAddress<'_>,
        mtu: u32,
    ) -> Result<Vm> {
        let ns = Netns::new(name)?;
        let mtu = mtu.to_string();
        ns.ip(&[
            "link",
            "add",
            ifname,
            "mtu",
            &mtu,
            "type",
            "veth",
            "peer",
            "name",
            ifname,
            "mtu",
            &mtu,
            "netns",
            host.name(),
        ])?;
        host.ip(&["link", "set", ifname, "up"])?;
        ns.ip(&["link", "set", ifname, "address", addr.mac])?;
        run(ns
            .command("ethtool")
            .args(["-K", ifname, "tso", "off", "gso", "off"]))?;
        Vm::addressed(ns, ifname, addr)
    }
}

/// A WireGuard key pair made by `scd genkey`/`scd pubkey`.
#[derive(Debug, Clone)]
pub struct KeyPair {
    /// Private key, base64.
    pub private: String,
    /// Public key, base64.
    pub public: String,
}

impl KeyPair {
    /// A fresh key pair.
    pub fn generate() -> Result<KeyPair> {
        let scd = scd_binary()?;
        let private = run(Command::new(&scd).arg("genkey"))?.trim().to_string();
        let mut child = Command::new(&scd)
            .arg("pubkey")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .ok_or_else(|| anyhow!("no stdin"))?
            .write_all(private.as_bytes())?;
        let out = child.wait_with_output()?;
        anyhow::ensure!(out.status.success(), "scd pubkey failed");
        Ok(KeyPair {
            private,
            public: String::from_utf8(out.stdout)?.trim().to_string(),
        })
    }
}

/// Runs `scd port ARGS --socket CTL` in `host` (the management socket of a
/// running `scd`); its output, whether it succeeded or not.
pub fn scd_port(host: &Netns, ctl: &Path, args: &[&str]) -> Result<std::process::Output> {
    Ok(host
        .command(scd_binary()?.to_str().context("path")?)
        .arg("port")
        .args(args)
        .arg("--socket")
        .arg(ctl)
        .output()?)
}

/// One counter of `/proc/net/snmp` as the stack of namespace `ns` counts it,
/// e.g. `("Tcp", "RetransSegs")`.
pub fn snmp_counter(ns: &Netns, proto: &str, name: &str) -> Result<u64> {
    let snmp = run(ns.command("cat").arg("/proc/net/snmp"))?;
    let mut lines = snmp.lines().filter(|l| l.starts_with(&format!("{proto}:")));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        bail!("no {proto} in /proc/net/snmp:\n{snmp}");
    };
    let at = names
        .split_whitespace()
        .position(|n| n == name)
        .with_context(|| format!("no {proto} {name} in /proc/net/snmp"))?;
    Ok(values
        .split_whitespace()
        .nth(at)
        .context("value")?
        .parse()?)
}

/// Where the `scd` binary of this build is (`SCD_BIN` overrides).
pub fn scd_binary() -> Result<PathBuf> {
    workspace_binary("scd", "SCD_BIN", "dataplane")
}

/// Where the `scc` binary of this build is (`SCC_BIN` overrides).
pub fn scc_binary() -> Result<PathBuf> {
    workspace_binary("scc", "SCC_BIN", "controller")
}

fn workspace_binary(name: &str, env: &str, package: &str) -> Result<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Ok(PathBuf::from(p));
    }
    // Test executables live in target/<profile>/deps; binaries one level up.
    let exe = std::env::current_exe()?;
    let candidate = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join(name))
        .ok_or_else(|| anyhow!("no parent of {}", exe.display()))?;
    if !candidate.exists() {
        bail!(
            "{} not found: build it first (`cargo build -p {package}`) or set {env}",
            candidate.display()
        );
    }
    Ok(candidate)
}

/// Metrics endpoint port used inside each host namespace.
pub const METRICS_PORT: u16 = 9464;

/// A running `scd` inside a host namespace, stopped with SIGTERM when dropped.
#[derive(Debug)]
pub struct Scd {
    child: Child,
    /// Directory holding its config, flows file and log.
    pub dir: tempfile::TempDir,
    host_ns: String,
}

impl Scd {
    /// Writes `config` (and `flows`, referenced as `flows` from the config) into a
    /// fresh directory and starts `scd` in namespace `host`; returns once its
    /// metrics endpoint answers.
    pub fn start(host: &Netns, config: &str, flows: Option<&str>) -> Result<Scd> {
        let dir = tempfile::Builder::new().prefix("scd-test").tempdir()?;
        Scd::start_in(host, dir, config, flows, &[])
    }

    /// Like [`Scd::start`], switching to `user` once the devices are open
    /// (`scd run --user USER`).
    pub fn start_as(host: &Netns, config: &str, flows: Option<&str>, user: &str) -> Result<Scd> {
        let dir = tempfile::Builder::new().prefix("scd-test").tempdir()?;
        Scd::start_in(host, dir, config, flows, &["--user", user])
    }

    /// Like [`Scd::start`], with the WireGuard private key written to `key` (mode
    /// 600) next to the config.
    pub fn start_with_key(
        host: &Netns,
        config: &str,
        flows: Option<&str>,
        private_key: &str,
    ) -> Result<Scd> {
        let dir = tempfile::Builder::new().prefix("scd-test").tempdir()?;
        let key = dir.path().join("key");
        std::fs::write(&key, private_key)?;
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        Scd::start_in(host, dir, config, flows, &[])
    }

    /// Starts `scd` again with the same directory (config, flows, key), as after a crash.
    pub fn restart(self) -> Result<Scd> {
        let mut old = self;
        old.stop()?;
        let dir = tempfile::Builder::new().prefix("scd-test").tempdir()?;
        for name in ["host.toml", "flows", "key"] {
            let from = old.dir.path().join(name);
            if from.exists() {
                std::fs::copy(&from, dir.path().join(name))?;
            }
        }
        let config = std::fs::read_to_string(dir.path().join("host.toml"))?;
        // The host namespace belongs to the test, not to this handle.
        let host = Netns::existing(&old.host_ns);
        Scd::start_in(&host, dir, &config, None, &[])
    }

    fn start_in(
        host: &Netns,
        dir: tempfile::TempDir,
        config: &str,
        flows: Option<&str>,
        extra_args: &[&str],
    ) -> Result<Scd> {
        std::fs::write(dir.path().join("host.toml"), config)?;
        if let Some(flows) = flows {
            std::fs::write(dir.path().join("flows"), flows)?;
        }
        let log = File::create(dir.path().join("scd.log"))?;
        let child = host
            .command(
                scd_binary()?
                    .to_str()
                    .ok_or_else(|| anyhow!("non-UTF-8 path"))?,
            )
            .args(["run", "-c"])
            .arg(dir.path().join("host.toml"))
            .args(extra_args)
            .env("SCD_LOG", "info")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut scd = Scd {
            child,
            dir,
            host_ns: host.name().to_string(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = scd.child.try_wait()? {
                bail!("scd exited at start ({status}):\n{}", scd.log());
            }
            if scd.metrics_text().is_ok() {
                return Ok(scd);
            }
            if Instant::now() > deadline {
                bail!("scd did not answer on its metrics port:\n{}", scd.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("scd.log")).unwrap_or_default()
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The metrics as the switch renders them (OpenMetrics text).
    pub fn metrics_text(&self) -> Result<String> {
        let path = PathBuf::from("/run/netns").join(&self.host_ns);
        let handle = std::thread::spawn(move || -> Result<String> {
            let file = File::open(&path)?;
            // SAFETY: setns on an open namespace file; it changes only this thread.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!("setns: {}", std::io::Error::last_os_error());
            }
            // The socket is made on this thread, inside the namespace.
            let metrics = (std::net::Ipv4Addr::LOCALHOST, METRICS_PORT).into();
            let scrape = bounded_http::client::blocking(bounded_http::client::request(
                metrics,
                "GET",
                "/metrics",
                b"",
                Duration::from_secs(5),
            ))?;
            if !scrape.is_success() {
                bail!("GET /metrics: {} {}", scrape.status, scrape.text());
            }
            Ok(scrape.text())
        });
        handle
            .join()
            .map_err(|_| anyhow!("metrics thread panicked"))?
    }

    /// All samples, keyed by `name{labels}` exactly as printed.
    pub fn metrics(&self) -> Result<HashMap<String, u64>> {
        let text = self.metrics_text()?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect())
    }

    /// The sum of the samples of metric `name` whose labels contain every one of
    /// `labels` (each written as `key="value"`).
    pub fn metric(&self, name: &str, labels: &[&str]) -> Result<u64> {
        let all = self.metrics()?;
        Ok(all
            .iter()
            .filter(|(k, _)| {
                k.starts_with(&format!("{name}{{")) && labels.iter().all(|l| k.contains(l))
            })
            .map(|(_, v)| *v)
            .sum())
    }

    /// Replaces the static flows file and sends SIGHUP; returns once the switch
    /// reports `expected_flows` entries.
    pub fn reload_flows(&self, flows: &str, expected_flows: u64) -> Result<()> {
        std::fs::write(self.dir.path().join("flows"), flows)?;
        self.signal(libc::SIGHUP)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.metric("scd_table_flows", &[])? == expected_flows {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("flows not reloaded:\n{}", self.log())
    }

    /// Sends a signal to the process.
    pub fn signal(&self, sig: libc::c_int) -> Result<()> {
        let pid = libc::pid_t::try_from(self.child.id())?;
        // SAFETY: kill on the PID of a child we started and have not reaped.
        if unsafe { libc::kill(pid, sig) } != 0 {
            bail!("kill: {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Kills it with SIGKILL (a crash) and waits.
    pub fn kill(&mut self) -> Result<()> {
        self.signal(libc::SIGKILL)?;
        self.child.wait()?;
        Ok(())
    }

    /// Stops it with SIGTERM and waits; returns its exit status.
    pub fn stop(&mut self) -> Result<std::process::ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        self.signal(libc::SIGTERM)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child.kill()?;
        Ok(self.child.wait()?)
    }
}

impl Drop for Scd {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
