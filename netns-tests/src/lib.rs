//! The namespace test harness: whole hosts and VMs as Linux network namespaces.
//!
//! It owns creating and destroying test namespaces (unique names that start with the
//! test's name, removed in `Drop`, also when the test panics), running code and
//! commands inside them, attaching "VMs" (a namespace that owns a TAP whose file
//! descriptor `scd` holds), and starting `scd` processes and reading their metrics.
//! It never touches the machine's own interfaces or routes, and it ends only the
//! processes it started, by PID.

pub mod cloud;

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

impl Vm {
    /// Creates namespace `name` holding a persistent TAP `tap` with `mac`,
    /// `ip/prefix_len` and `mtu`, for an `scd` port configured with
    /// `netns = name` and `create = false`. The VM keeps its interface and address
    /// when the switch serving it stops, restarts, or is replaced by another.
    pub fn with_tap(
        name: &str,
        tap: &str,
        mac: &str,
        ip: &str,
        prefix_len: u8,
        mtu: u32,
    ) -> Result<Vm> {
        let ns = Netns::new(name)?;
        ns.ip(&["tuntap", "add", "dev", tap, "mode", "tap"])?;
        ns.ip(&["link", "set", tap, "address", mac, "mtu", &mtu.to_string()])?;
        ns.ip(&["addr", "add", &format!("{ip}/{prefix_len}"), "dev", tap])?;
        ns.ip(&["link", "set", tap, "up"])?;
        Ok(Vm {
            ns,
            ifname: tap.to_string(),
            mac: mac.to_string(),
            ip: ip.to_string(),
        })
    }

    /// The `[[port]]` section of an `scd` config serving this VM's TAP.
    pub fn port_section(&self, number: u32) -> String {
        format!(
            "[[port]]\nnumber = {number}\nname = \"{}\"\nnetns = \"{}\"\ncreate = false\n",
            self.ifname,
            self.ns.name()
        )
    }
}

impl Vm {
    /// Creates namespace `name` holding `ifname`, one end of a veth pair, with
    /// `mac`, `ip/prefix_len` and `mtu`; the other end, of the same name, is made in
    /// namespace `host` and brought up there, for an `scd` port of `type = "raw"`.
    /// Segmentation offloads (TSO/GSO) are turned off on the VM's end, because a raw
    /// port refuses super-frames; transmit checksum offload stays on, so the raw
    /// port sees unfinished checksums and must finish them.
    pub fn with_veth(
        name: &str,
        host: &Netns,
        ifname: &str,
        mac: &str,
        ip: &str,
        prefix_len: u8,
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
        ns.ip(&["link", "set", ifname, "address", mac])?;
        run(ns
            .command("ethtool")
            .args(["-K", ifname, "tso", "off", "gso", "off"]))?;
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

/// A userspace delay line between two interfaces of one namespace: every frame that
/// arrives on one side leaves on the other `delay` later. It stands in for
/// `tc qdisc ... netem delay`, which this kernel lacks (CONFIG_NET_SCH_NETEM is
/// not set); the harness uses netem where the kernel has it.
#[derive(Debug)]
pub struct DelayLine {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn packet_socket_all(ifname: &str) -> Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let proto = 0x0003u16.to_be(); // ETH_P_ALL
                                   // SAFETY: plain socket(2); checked below.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK,
            i32::from(proto),
        )
    };
    anyhow::ensure!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor owned here only.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let name = std::ffi::CString::new(ifname)?;
    // SAFETY: `name` is NUL-terminated.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    anyhow::ensure!(index != 0, "no interface {ifname}");
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid start.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = u16::try_from(libc::AF_PACKET)?;
    addr.sll_protocol = proto;
    addr.sll_ifindex = i32::try_from(index)?;
    let len = u32::try_from(std::mem::size_of::<libc::sockaddr_ll>())?;
    // SAFETY: `addr` is a valid sockaddr_ll of `len` bytes.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            len,
        )
    };
    anyhow::ensure!(rc == 0, "bind: {}", std::io::Error::last_os_error());
    let mreq = libc::packet_mreq {
        mr_ifindex: i32::try_from(index)?,
        mr_type: u16::try_from(libc::PACKET_MR_PROMISC)?,
        mr_alen: 0,
        mr_address: [0; 8],
    };
    let mlen = u32::try_from(std::mem::size_of::<libc::packet_mreq>())?;
    // SAFETY: `mreq` is a valid packet_mreq of `mlen` bytes.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            (&mreq as *const libc::packet_mreq).cast(),
            mlen,
        )
    };
    anyhow::ensure!(rc == 0, "promisc: {}", std::io::Error::last_os_error());
    Ok(fd)
}

impl DelayLine {
    /// Starts forwarding between `a` and `b` (both in namespace `ns`) with `delay`.
    pub fn start(ns: &Netns, a: &str, b: &str, delay: Duration) -> Result<DelayLine> {
        let (a, b) = (a.to_string(), b.to_string());
        let sockets = ns.enter(move || -> Result<_> {
            Ok([packet_socket_all(&a)?, packet_socket_all(&b)?])
        })??;
        // The line is a userspace thread: give it room to absorb bursts while the
        // scheduler runs something else, as a router's queue would.
        for socket in &sockets {
            big_receive_buffer(socket, 16 << 20)?;
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut queue: std::collections::VecDeque<(Instant, usize, Vec<u8>)> =
                Default::default();
            let mut buf = vec![0u8; 65_536];
            while !flag.load(Ordering::Relaxed) {
                let now = Instant::now();
                while queue.front().is_some_and(|(due, _, _)| *due <= now) {
                    if let Some((_, out, frame)) = queue.pop_front() {
                        // A full socket buffer is waited out briefly, as a router's
                        // queue would absorb a burst, rather than dropped at once.
                        for _ in 0..50 {
                            // SAFETY: `frame` is valid for reads of its length.
                            let sent = unsafe {
                                libc::send(
                                    sockets[out].as_raw_fd(),
                                    frame.as_ptr().cast(),
                                    frame.len(),
                                    0,
                                )
                            };
                            if sent >= 0 {
                                break;
                            }
                            std::thread::sleep(Duration::from_micros(100));
                        }
                    }
                }
                // Rounded up: a frame due in 0.3 ms must not make the line spin.
                let wait = queue.front().map_or(20, |(due, _, _)| {
                    due.saturating_duration_since(now)
                        .as_micros()
                        .div_ceil(1000)
                        .clamp(0, 20)
                });
                let mut fds = [0, 1].map(|i| libc::pollfd {
                    fd: sockets[i].as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
                // SAFETY: `fds` is a valid array of two pollfd structures.
                unsafe { libc::poll(fds.as_mut_ptr(), 2, i32::try_from(wait).unwrap_or(20)) };
                for (i, sock) in sockets.iter().enumerate() {
                    loop {
                        // SAFETY: sockaddr_ll is plain data; all-zero is valid.
                        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                        let mut len =
                            u32::try_from(std::mem::size_of::<libc::sockaddr_ll>()).unwrap_or(0);
                        // SAFETY: `buf` and `from` are valid for writes of the given sizes.
                        let n = unsafe {
                            libc::recvfrom(
                                sock.as_raw_fd(),
                                buf.as_mut_ptr().cast(),
                                buf.len(),
                                0,
                                (&mut from as *mut libc::sockaddr_ll).cast(),
                                &mut len,
                            )
                        };
                        let Ok(n) = usize::try_from(n) else { break };
                        if n == 0 {
                            break;
                        }
                        // Frames we sent ourselves show up as outgoing: never loop them.
                        if from.sll_pkttype != libc::PACKET_OUTGOING {
                            queue.push_back((Instant::now() + delay, 1 - i, buf[..n].to_vec()));
                        }
                    }
                }
            }
        });
        Ok(DelayLine {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// True when the kernel offers the netem qdisc.
fn have_netem(ns: &Netns) -> bool {
    ns.command("tc")
        .args(["qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        && ns
            .command("tc")
            .args(["qdisc", "del", "dev", "lo", "root"])
            .status()
            .is_ok()
}

/// Turns off the offloads that would hand a packet socket frames it cannot
/// forward (unfinished checksums, super-frames).
fn no_offloads(ns: &Netns, ifname: &str) -> Result<()> {
    run(ns.command("ethtool").args([
        "-K", ifname, "tx", "off", "tso", "off", "gso", "off", "gro", "off",
    ]))?;
    Ok(())
}

/// An emulated internet: a router namespace with one /26 "cloud" subnet per host
/// from 192.0.2.0/24 (documentation addresses), optional latency per link.
#[derive(Debug)]
pub struct Internet {
    /// Delay lines, stopped before their namespaces go.
    delays: Vec<(DelayLine, Netns)>,
    /// Host namespaces, in the order they were added.
    pub hosts: Vec<Netns>,
    /// The router namespace.
    pub router: Netns,
}

impl Internet {
    /// A router with no hosts yet.
    pub fn new(prefix: &str) -> Result<Internet> {
        let router = Netns::new(&unique(&format!("{prefix}-inet-")))?;
        run(Command::new("ip").args([
            "netns",
            "exec",
            router.name(),
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]))?;
        Ok(Internet {
            delays: Vec::new(),
            hosts: Vec::new(),
            router,
        })
    }

    /// The underlay address of host `i` (0-based): 192.0.2.(64*i + 2).
    pub fn host_addr(i: usize) -> String {
        format!("192.0.2.{}", 64 * i + 2)
    }

    /// Adds a host namespace in its own cloud subnet; `delay_ms` adds latency on
    /// the router's side of its link (tc netem), both directions seeing it once.
    pub fn add_host(&mut self, prefix: &str, delay_ms: Option<u32>) -> Result<&Netns> {
        let i = self.hosts.len();
        anyhow::ensure!(i < 4, "at most four clouds fit in 192.0.2.0/24");
        let host = Netns::new(&unique(&format!("{prefix}-host{i}-")))?;
        let outside = unique("scr");
        let inside = unique("sch");
        let netem = delay_ms.is_some() && have_netem(&self.router);
        if let (Some(ms), false) = (delay_ms, netem) {
            // router <-> [delay line namespace] <-> host
            let line = Netns::new(&unique(&format!("{prefix}-delay{i}-")))?;
            let (d_router, d_host) = (unique("scd"), unique("scd"));
            veth(&outside, &self.router, &d_router, &line)?;
            veth(&inside, &host, &d_host, &line)?;
            for ifname in [&d_router, &d_host] {
                line.ip(&["link", "set", ifname, "up"])?;
                no_offloads(&line, ifname)?;
            }
            no_offloads(&self.router, &outside)?;
            no_offloads(&host, &inside)?;
            let delay = DelayLine::start(
                &line,
                &d_router,
                &d_host,
                Duration::from_millis(u64::from(ms)),
            )?;
            self.delays.push((delay, line));
        } else {
            veth(&outside, &self.router, &inside, &host)?;
        }
        let base = 64 * i;
        self.router.ip(&[
            "addr",
            "add",
            &format!("192.0.2.{}/26", base + 1),
            "dev",
            &outside,
        ])?;
        self.router.ip(&["link", "set", &outside, "up"])?;
        host.ip(&[
            "addr",
            "add",
            &format!("{}/26", Internet::host_addr(i)),
            "dev",
            &inside,
        ])?;
        host.ip(&["link", "set", &inside, "up"])?;
        host.ip(&[
            "route",
            "add",
            "192.0.2.0/24",
            "via",
            &format!("192.0.2.{}", base + 1),
        ])?;
        if let (Some(ms), true) = (delay_ms, netem) {
            run(self.router.command("tc").args([
                "qdisc",
                "add",
                "dev",
                &outside,
                "root",
                "netem",
                "delay",
                &format!("{ms}ms"),
            ]))?;
        }
        self.hosts.push(host);
        Ok(&self.hosts[i])
    }
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
        Scd::start_in(host, dir, config, flows)
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
        Scd::start_in(host, dir, config, flows)
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
        Scd::start_in(&host, dir, &config, None)
    }

    fn start_in(
        host: &Netns,
        dir: tempfile::TempDir,
        config: &str,
        flows: Option<&str>,
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

/// Gives a socket a receive buffer of `bytes` (beyond the sysctl limit: we are root),
/// so a test's receiver that the scheduler delays does not itself drop what the
/// network delivered.
pub fn big_receive_buffer(socket: &impl AsRawFd, bytes: i32) -> Result<()> {
    let len = u32::try_from(std::mem::size_of::<i32>())?;
    // SAFETY: setsockopt reads one i32 from a live local.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&bytes as *const i32).cast(),
            len,
        )
    };
    anyhow::ensure!(
        rc == 0,
        "SO_RCVBUFFORCE: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// What a checked TCP transfer saw at both ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    /// Hash of what the sender wrote.
    pub sent_hash: u64,
    /// Hash of what the receiver read.
    pub received_hash: u64,
    /// Bytes the receiver read.
    pub received: u64,
}

impl Transfer {
    /// True when every byte arrived intact.
    pub fn intact(&self, bytes: u64) -> bool {
        self.received == bytes && self.sent_hash == self.received_hash
    }
}

/// Streams `bytes` pseudo-random bytes over TCP from namespace `from` to a
/// listener on `dst:port` in namespace `to`, and reports both ends' hashes.
pub fn tcp_transfer(
    from: &Netns,
    to: &Netns,
    dst: std::net::IpAddr,
    port: u16,
    bytes: u64,
) -> Result<Transfer> {
    let listener = to.enter(move || std::net::TcpListener::bind((dst, port)))??;
    let server = to.spawn(move || -> Result<(u64, u64)> {
        let (mut s, _) = listener.accept()?;
        let (mut hash, mut buf, mut total) = (Fnv::default(), vec![0u8; 256 * 1024], 0u64);
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Ok((hash.value(), total));
            }
            hash.update(&buf[..n]);
            total += n as u64;
        }
    });
    let sent_hash = from.enter(move || -> Result<u64> {
        let mut s = TcpStream::connect_timeout(&(dst, port).into(), Duration::from_secs(10))
            .with_context(|| format!("connect to {dst}:{port}"))?;
        s.set_write_timeout(Some(Duration::from_secs(30)))?;
        let (mut state, mut hash, mut buf) =
            (u64::from(port) | 1, Fnv::default(), vec![0u8; 256 * 1024]);
        let mut left = bytes;
        while left > 0 {
            let n = usize::try_from(left.min(buf.len() as u64))?;
            fill_pseudo_random(&mut state, &mut buf[..n]);
            s.write_all(&buf[..n])?;
            hash.update(&buf[..n]);
            left -= n as u64;
        }
        s.shutdown(std::net::Shutdown::Write)?;
        Ok(hash.value())
    })??;
    let (received_hash, received) = server
        .join()
        .map_err(|_| anyhow!("receiver panicked"))???;
    Ok(Transfer {
        sent_hash,
        received_hash,
        received,
    })
}

/// A paced burst of numbered UDP datagrams: `count` datagrams of `size` bytes (at
/// least 4), sleeping `pause` after every `every` of them.
#[derive(Debug, Clone, Copy)]
pub struct Burst {
    /// Datagrams to send.
    pub count: u32,
    /// Bytes in each.
    pub size: usize,
    /// Datagrams between pauses.
    pub every: u32,
    /// Length of each pause.
    pub pause: Duration,
}

/// Sends `burst` from `src` in namespace `from` to `dst:port` in namespace `to`,
/// and returns how many distinct datagrams arrived (the receiver waits 500 ms after
/// the last one).
pub fn udp_count(
    from: &Netns,
    src: std::net::IpAddr,
    to: &Netns,
    dst: std::net::IpAddr,
    port: u16,
    burst: Burst,
) -> Result<u32> {
    let rx = to.enter(move || std::net::UdpSocket::bind((dst, port)))??;
    rx.set_read_timeout(Some(Duration::from_millis(500)))?;
    big_receive_buffer(&rx, 8 << 20)?;
    let receiver = std::thread::spawn(move || {
        let mut seen = std::collections::HashSet::new();
        let mut buf = vec![0u8; 65_536];
        while let Ok(len) = rx.recv(&mut buf) {
            if len >= 4 {
                seen.insert(u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]));
            }
        }
        u32::try_from(seen.len()).unwrap_or(u32::MAX)
    });
    from.enter(move || -> Result<()> {
        let tx = std::net::UdpSocket::bind((src, 0))?;
        let mut payload = vec![0x5au8; burst.size.max(4)];
        for i in 0..burst.count {
            payload[..4].copy_from_slice(&i.to_be_bytes());
            tx.send_to(&payload, (dst, port))?;
            if (i + 1) % burst.every.max(1) == 0 {
                std::thread::sleep(burst.pause);
            }
        }
        Ok(())
    })??;
    receiver
        .join()
        .map_err(|_| anyhow!("udp receiver panicked"))
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
