//! The namespace test harness: whole hosts and VMs as Linux network namespaces.
//!
//! It owns creating and destroying test namespaces (unique names that start with the
//! test's name, removed in `Drop`, also when the test panics), running code and
//! commands inside them, attaching "VMs" (a namespace that owns a TAP whose file
//! descriptor `scd` holds), and starting `scd` processes and reading their metrics.
//! It never touches the machine's own interfaces or routes, and it ends only the
//! processes it started, by PID.

use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
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

/// A network namespace that is deleted when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `name` with its loopback up.
    pub fn new(name: &str) -> Result<Netns> {
        run(Command::new("ip").args(["netns", "add", name]))?;
        let ns = Netns {
            name: name.to_string(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
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
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
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
    /// Moves `tap` from the host namespace `host` into a new namespace `name`, and
    /// gives it `mac` and `ip/prefix_len`. The on-link route for the prefix makes the
    /// whole overlay reachable through the anycast gateway's ARP answers.
    pub fn attach(
        name: &str,
        host: &Netns,
        tap: &str,
        mac: &str,
        ip: &str,
        prefix_len: u8,
    ) -> Result<Vm> {
        let ns = Netns::new(name)?;
        host.ip(&["link", "set", tap, "netns", name])?;
        ns.ip(&["link", "set", tap, "address", mac])?;
        ns.ip(&["addr", "add", &format!("{ip}/{prefix_len}"), "dev", tap])?;
        ns.ip(&["link", "set", tap, "up"])?;
        Ok(Vm {
            ns,
            ifname: tap.to_string(),
            mac: mac.to_string(),
            ip: ip.to_string(),
        })
    }
}

/// Where the `scd` binary of this build is.
pub fn scd_binary() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("SCD_BIN") {
        return Ok(PathBuf::from(p));
    }
    // Test executables live in target/<profile>/deps; binaries one level up.
    let exe = std::env::current_exe()?;
    let candidate = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("scd"))
        .ok_or_else(|| anyhow!("no parent of {}", exe.display()))?;
    if !candidate.exists() {
        bail!(
            "{} not found: build it first (`cargo build -p dataplane`) or set SCD_BIN",
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

    /// The raw Prometheus text.
    pub fn metrics_text(&self) -> Result<String> {
        let path = PathBuf::from("/run/netns").join(&self.host_ns);
        let handle = std::thread::spawn(move || -> Result<String> {
            let file = File::open(&path)?;
            // SAFETY: setns on an open namespace file; it changes only this thread.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!("setns: {}", std::io::Error::last_os_error());
            }
            let mut s = TcpStream::connect(("127.0.0.1", METRICS_PORT))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: scd\r\n\r\n")?;
            let mut body = String::new();
            s.read_to_string(&mut body)?;
            Ok(body)
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

/// A 64-bit FNV-1a running hash, to compare streams end to end.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    /// The hash so far.
    pub fn value(&self) -> u64 {
        self.0
    }
}

/// Deterministic pseudo-random bytes (xorshift), so a stream can be checked.
pub fn fill_pseudo_random(state: &mut u64, buf: &mut [u8]) {
    for chunk in buf.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let bytes = state.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}
