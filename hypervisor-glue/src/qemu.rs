//! The QEMU process driver: command line, spawn, QMP connect, stop.
//!
//! Owns the `qemu-system-x86_64` invocation for a TCG guest booted from a
//! kernel + initramfs, with one virtio-net NIC on an existing TAP, a QMP Unix
//! socket, the serial console in a log file, and optionally `-incoming`.
//! It must never create or configure network devices (the TAP must exist),
//! and never signal any process but the one it started, by PID (no pkill).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::qmp::{QmpClient, QmpError};

/// Where a destination QEMU takes its incoming migration from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// `-incoming tcp:HOST:PORT` — listens at once.
    Tcp(String),
    /// `-incoming defer` — listen later with `migrate-incoming`.
    Defer,
}

/// The guest's NIC: a virtio-net device on an existing TAP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapNic {
    /// TAP interface name (must exist, in QEMU's network namespace).
    pub ifname: String,
    /// Guest MAC, e.g. `52:54:00:12:34:56`. Keep it the same on both sides of a
    /// migration.
    pub mac: String,
}

/// Everything needed to start one QEMU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuConfig {
    /// The emulator binary (default `qemu-system-x86_64`).
    pub binary: PathBuf,
    /// `-name`.
    pub name: String,
    /// Kernel image (`-kernel`).
    pub kernel: PathBuf,
    /// Initramfs (`-initrd`).
    pub initrd: PathBuf,
    /// Kernel command line (`-append`); `console=ttyS0` is prepended if absent.
    pub append: String,
    /// Guest RAM in MiB.
    pub memory_mib: u32,
    /// The NIC, if any.
    pub nic: Option<TapNic>,
    /// The guest's disk, a qcow2 image, as a virtio-blk device whose node is
    /// [`crate::storage::DISK_NODE`] (what a migration with its disk mirrors).
    pub disk: Option<PathBuf>,
    /// QMP socket path (QEMU creates it).
    pub qmp_socket: PathBuf,
    /// Serial console log file (`-serial file:`).
    pub serial_log: PathBuf,
    /// QEMU's own stdout/stderr go here (inherited when `None`).
    pub stderr_log: Option<PathBuf>,
    /// Destination mode.
    pub incoming: Option<Incoming>,
    /// Run inside this network namespace (via `ip netns exec`, which execs, so
    /// the PID is QEMU's).
    pub netns: Option<String>,
    /// Accelerator (default `tcg`: KVM is not usable on our machines).
    pub accel: String,
    /// Appended verbatim.
    pub extra_args: Vec<String>,
}

impl QemuConfig {
    /// A TCG guest with 128 MiB and no NIC; fill in the rest.
    pub fn new(
        name: impl Into<String>,
        kernel: impl Into<PathBuf>,
        initrd: impl Into<PathBuf>,
        qmp_socket: impl Into<PathBuf>,
        serial_log: impl Into<PathBuf>,
    ) -> Self {
        QemuConfig {
            binary: PathBuf::from("qemu-system-x86_64"),
            name: name.into(),
            kernel: kernel.into(),
            initrd: initrd.into(),
            append: String::new(),
            memory_mib: 128,
            nic: None,
            disk: None,
            qmp_socket: qmp_socket.into(),
            serial_log: serial_log.into(),
            stderr_log: None,
            incoming: None,
            netns: None,
            accel: "tcg".into(),
            extra_args: Vec::new(),
        }
    }

    /// The QEMU arguments (without the binary and without `ip netns exec`).
    pub fn qemu_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |s: &str| a.push(OsString::from(s));
        push("-name");
        push(&self.name);
        push("-accel");
        push(&self.accel);
        // No default devices: fewer things to migrate, nothing unexpected.
        push("-nodefaults");
        push("-no-user-config");
        push("-display");
        push("none");
        push("-m");
        push(&self.memory_mib.to_string());
        push("-smp");
        push("1");
        push("-kernel");
        push(&self.kernel.to_string_lossy());
        push("-initrd");
        push(&self.initrd.to_string_lossy());
        let append = if self
            .append
            .split_whitespace()
            .any(|w| w.starts_with("console="))
        {
            self.append.clone()
        } else {
            format!("console=ttyS0 {}", self.append)
                .trim_end()
                .to_owned()
        };
        push("-append");
        push(&append);
        push("-serial");
        push(&format!("file:{}", self.serial_log.display()));
        push("-qmp");
        push(&format!(
            "unix:{},server=on,wait=off",
            self.qmp_socket.display()
        ));
        if let Some(nic) = &self.nic {
            push("-netdev");
            push(&format!(
                "tap,id=net0,ifname={},script=no,downscript=no",
                nic.ifname
            ));
            push("-device");
            push(&format!("virtio-net-pci,netdev=net0,mac={}", nic.mac));
        }
        if let Some(disk) = &self.disk {
            push("-blockdev");
            push(&format!(
                "driver=qcow2,node-name={},file.driver=file,file.filename={}",
                crate::storage::DISK_NODE,
                disk.display()
            ));
            push("-device");
            push(&format!(
                "virtio-blk-pci,drive={},id=sc-vd0",
                crate::storage::DISK_NODE
            ));
        }
        match &self.incoming {
            Some(Incoming::Tcp(addr)) => {
                push("-incoming");
                push(&format!("tcp:{addr}"));
            }
            Some(Incoming::Defer) => {
                push("-incoming");
                push("defer");
            }
            None => {}
        }
        for e in &self.extra_args {
            push(e);
        }
        a
    }

    /// The full command line: `[ip netns exec NS] qemu-system-x86_64 ARGS...`.
    pub fn command_line(&self) -> Vec<OsString> {
        let mut v = Vec::new();
        if let Some(ns) = &self.netns {
            v.extend(["ip", "netns", "exec"].map(OsString::from));
            v.push(OsString::from(ns));
        }
        v.push(self.binary.clone().into_os_string());
        v.extend(self.qemu_args());
        v
    }

    /// A `std` command ready to spawn (used by the CLI, whose QEMU outlives it).
    pub fn std_command(&self) -> Result<std::process::Command, QemuError> {
        let line = self.command_line();
        let mut cmd = std::process::Command::new(&line[0]);
        cmd.args(&line[1..]).stdin(Stdio::null());
        if let Some(log) = &self.stderr_log {
            let f = open_log(log)?;
            let f2 = f.try_clone().map_err(|e| QemuError::io("log file", e))?;
            cmd.stdout(f).stderr(f2);
        }
        Ok(cmd)
    }
}

fn open_log(path: &Path) -> Result<std::fs::File, QemuError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| QemuError::io(&format!("open {}", path.display()), e))
}

/// What can go wrong with the QEMU process.
#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    /// A file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// QEMU exited before it was ready (its log usually says why).
    #[error("QEMU exited early with {status}{}", log_tail(.log))]
    Exited {
        /// Exit status.
        status: std::process::ExitStatus,
        /// The end of QEMU's stderr log, if it had one.
        log: Option<String>,
    },
    /// QMP did not come up in time or failed.
    #[error("QMP: {0}")]
    Qmp(#[from] QmpError),
    /// The PID is not usable.
    #[error("invalid pid {0}")]
    BadPid(u32),
}

fn log_tail(log: &Option<String>) -> String {
    log.as_ref()
        .map(|l| format!("; its log ends with:\n{l}"))
        .unwrap_or_default()
}

impl QemuError {
    fn io(context: &str, source: std::io::Error) -> Self {
        QemuError::Io {
            context: context.to_owned(),
            source,
        }
    }
}

/// Sends `signal` to `pid` (and nothing else).
pub fn signal_pid(pid: u32, signal: rustix::process::Signal) -> Result<(), QemuError> {
    let raw = i32::try_from(pid).map_err(|_| QemuError::BadPid(pid))?;
    let pid_t = rustix::process::Pid::from_raw(raw).ok_or(QemuError::BadPid(pid))?;
    rustix::process::kill_process(pid_t, signal)
        .map_err(|e| QemuError::io(&format!("signal pid {pid}"), e.into()))
}

/// A QEMU we started. Dropping it kills the process (SIGKILL by PID).
#[derive(Debug)]
pub struct QemuProcess {
    child: tokio::process::Child,
    pid: u32,
    config: QemuConfig,
}

impl QemuProcess {
    /// Starts QEMU. The QMP socket appears shortly after; see
    /// [`QemuProcess::connect_qmp`].
    pub fn spawn(config: QemuConfig) -> Result<Self, QemuError> {
        // A stale socket from an earlier run would make connect_qmp talk to nobody.
        let _ = std::fs::remove_file(&config.qmp_socket);
        let mut cmd = tokio::process::Command::from(config.std_command()?);
        cmd.kill_on_drop(true);
        let child = cmd
            .spawn()
            .map_err(|e| QemuError::io(&format!("spawn {}", config.binary.display()), e))?;
        let pid = child
            .id()
            .ok_or_else(|| QemuError::io("spawn", std::io::Error::other("no pid")))?;
        tracing::info!(pid, name = %config.name, "started QEMU");
        Ok(QemuProcess { child, pid, config })
    }

    /// QEMU's PID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &QemuConfig {
        &self.config
    }

    /// Still running?
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn exited(&mut self) -> Option<QemuError> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(QemuError::Exited {
                status,
                log: self.config.stderr_log.as_deref().and_then(read_tail),
            }),
            _ => None,
        }
    }

    /// Connects to QMP, retrying until the socket accepts, QEMU exits, or
    /// `timeout` passes.
    pub async fn connect_qmp(&mut self, timeout: Duration) -> Result<QmpClient, QemuError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.exited() {
                return Err(e);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match QmpClient::connect(
                &self.config.qmp_socket,
                left.max(Duration::from_millis(100)),
            )
            .await
            {
                Ok(c) => return Ok(c),
                Err(e) if Instant::now() >= deadline => return Err(e.into()),
                Err(QmpError::Io { .. }) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Waits until the serial log contains `marker` (e.g. the guest's ready
    /// line), QEMU exits, or `timeout` passes. Returns the log so far.
    pub async fn wait_for_serial(
        &mut self,
        marker: &str,
        timeout: Duration,
    ) -> Result<String, QemuError> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = std::fs::read_to_string(&self.config.serial_log).unwrap_or_default();
            if log.contains(marker) {
                return Ok(log);
            }
            if let Some(e) = self.exited() {
                return Err(e);
            }
            if Instant::now() >= deadline {
                return Err(QemuError::io(
                    &format!(
                        "waiting for {marker:?} on {}",
                        self.config.serial_log.display()
                    ),
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("not seen in {timeout:?}; serial ends with:\n{}", tail(&log)),
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL by PID and reap.
    pub async fn kill(&mut self) -> Result<(), QemuError> {
        if self.is_running() {
            signal_pid(self.pid, rustix::process::Signal::KILL)?;
        }
        self.child
            .wait()
            .await
            .map_err(|e| QemuError::io("wait for QEMU", e))?;
        Ok(())
    }

    /// SIGTERM by PID, wait up to `grace`, then SIGKILL. Returns once reaped.
    pub async fn terminate(&mut self, grace: Duration) -> Result<(), QemuError> {
        if !self.is_running() {
            return Ok(());
        }
        signal_pid(self.pid, rustix::process::Signal::TERM)?;
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            self.kill().await?;
        }
        Ok(())
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn read_tail(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| tail(&s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> QemuConfig {
        let mut c = QemuConfig::new(
            "vm1",
            "/g/vmlinuz",
            "/g/initramfs.cpio.gz",
            "/run/vm1.qmp",
            "/run/vm1.serial",
        );
        c.append = "sc.ip=100.64.1.10/16".into();
        c.nic = Some(TapNic {
            ifname: "tap-vm1".into(),
            mac: "52:54:00:00:01:0a".into(),
        });
        c
    }

    fn strings(v: Vec<OsString>) -> Vec<String> {
        v.into_iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect()
    }

    fn after<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn source_command_line() {
        let a = strings(cfg().command_line());
        assert_eq!(a[0], "qemu-system-x86_64");
        assert_eq!(after(&a, "-accel"), ["tcg"]);
        assert_eq!(after(&a, "-m"), ["128"]);
        assert_eq!(after(&a, "-kernel"), ["/g/vmlinuz"]);
        assert_eq!(after(&a, "-append"), ["console=ttyS0 sc.ip=100.64.1.10/16"]);
        assert_eq!(after(&a, "-serial"), ["file:/run/vm1.serial"]);
        assert_eq!(after(&a, "-qmp"), ["unix:/run/vm1.qmp,server=on,wait=off"]);
        assert_eq!(
            after(&a, "-netdev"),
            ["tap,id=net0,ifname=tap-vm1,script=no,downscript=no"]
        );
        assert_eq!(
            after(&a, "-device"),
            ["virtio-net-pci,netdev=net0,mac=52:54:00:00:01:0a"]
        );
        assert!(after(&a, "-incoming").is_empty());
    }

    #[test]
    fn destination_command_line_in_a_namespace() {
        let mut c = cfg();
        c.incoming = Some(Incoming::Tcp("0.0.0.0:4444".into()));
        c.netns = Some("qm-hostc".into());
        c.append = "console=ttyS1 quiet".into();
        let a = strings(c.command_line());
        assert_eq!(
            &a[..5],
            ["ip", "netns", "exec", "qm-hostc", "qemu-system-x86_64"]
        );
        assert_eq!(after(&a, "-incoming"), ["tcp:0.0.0.0:4444"]);
        assert_eq!(after(&a, "-append"), ["console=ttyS1 quiet"]);
        c.incoming = Some(Incoming::Defer);
        assert_eq!(after(&strings(c.command_line()), "-incoming"), ["defer"]);
    }

    #[tokio::test]
    async fn a_missing_binary_is_a_clear_error() {
        let mut c = cfg();
        c.binary = "/nonexistent/qemu".into();
        let err = QemuProcess::spawn(c).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/qemu"), "{err}");
    }

    #[tokio::test]
    async fn an_early_exit_is_reported_with_the_log() {
        let dir = std::env::temp_dir().join(format!("hvglue-exit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut c = cfg();
        // `false` ignores its arguments and exits 1: an "emulator" that dies at once.
        c.binary = "false".into();
        c.qmp_socket = dir.join("q.sock");
        c.stderr_log = Some(dir.join("stderr.log"));
        let mut p = QemuProcess::spawn(c).unwrap();
        let err = p.connect_qmp(Duration::from_secs(2)).await.unwrap_err();
        assert!(matches!(err, QemuError::Exited { .. }), "{err}");
        p.kill().await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn terminate_stops_the_process_by_pid() {
        // A stand-in process that runs until signalled.
        let mut cmd = tokio::process::Command::new("sleep");
        cmd.arg("30").kill_on_drop(true);
        let child = cmd.spawn().unwrap();
        let pid = child.id().unwrap();
        let mut p = QemuProcess {
            child,
            pid,
            config: cfg(),
        };
        assert!(p.is_running());
        p.terminate(Duration::from_secs(2)).await.unwrap();
        assert!(!p.is_running());
    }
}
