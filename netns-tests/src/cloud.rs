//! Clouds programmed by the controller: starting `scc` in the router namespace of
//! an [`Internet`], calling its CLI, writing its inventory and the hosts' `scd`
//! configurations, and waiting until every switch confirmed the current program.
//! The VMs of such a cloud as specs (created as namespace VMs, written as inventory
//! entries). Also what the migration tests share: moving a namespace VM to another
//! host's TAP, starting a migration and waiting for its timeline, and the paced
//! TCP stream whose longest gap they print (`paced`, re-exported here). Shared by
//! the namespace tests and the demo; it never touches the machine's own interfaces.

pub use crate::paced::{paced_stream, paced_stream_at, PacedStream, StreamReport};
use crate::{scc_binary, Internet, KeyPair, Scd, Vm, VmAddress};
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
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
    /// What the controller logged so far (empty when the log cannot be read).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// [`wait_synced`], with the controller's log when it fails.
    pub fn wait_synced(&self, net: &Internet) -> Result<serde_json::Value> {
        wait_synced(net).with_context(|| self.log_text())
    }

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
    crate::pki::ensure(&dir.join(crate::pki::DIR), net.hosts.len())?;
    let log = dir.join(format!("scc-{}.log", if fresh { "first" } else { "again" }));
    if fresh {
        // The API's socket is the test's own (its namespace's name), unless the
        // test chose one.
        let path = dir.join("inventory.toml");
        let text = std::fs::read_to_string(&path)?;
        if !text.contains("api_socket") {
            let socket = format!(
                "[controller]\napi_socket = \"{}\"\n",
                api_socket(&net.router).display()
            );
            std::fs::write(&path, text.replacen("[controller]\n", &socket, 1))?;
        }
    }
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

/// The `scc` verbs that talk to the running controller's API.
const API_VERBS: [&str; 8] = [
    "inventory",
    "status",
    "metrics",
    "apply",
    "vm",
    "host",
    "migrate",
    "placement",
];

/// Where an `scc` running in namespace `ns` (a router) serves its API in the
/// tests: a Unix socket named after the namespace.
pub fn api_socket(ns: &crate::Netns) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/run/scc-tests/{}.sock", ns.name()))
}

/// Runs an `scc` command in the router namespace: (success, stdout + stderr).
/// API verbs talk to [`api_socket`].
pub fn scc(net: &Internet, args: &[&str]) -> Result<(bool, String)> {
    let mut cmd = net.router.command(scc_binary()?.to_str().context("path")?);
    cmd.args(args);
    if args.first().is_some_and(|verb| API_VERBS.contains(verb)) {
        cmd.arg("--api")
            .arg(format!("unix:{}", api_socket(&net.router).display()));
    }
    let out = cmd.output()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Ok((out.status.success(), text))
}

/// `scc status` as JSON.
pub fn status(net: &Internet) -> Result<serde_json::Value> {
    let (ok, text) = scc(net, &["status", "--json"])?;
    anyhow::ensure!(ok, "scc status: {text}");
    Ok(serde_json::from_str(&text)?)
}

/// Waits until every switch has confirmed the current program version.
pub fn wait_synced(net: &Internet) -> Result<serde_json::Value> {
    let mut last = None;
    crate::wait_for(
        Duration::from_secs(30),
        "every switch to confirm the current program",
        || {
            let s = status(net)?;
            let version = s["version"].as_u64();
            let hosts = s["hosts"].as_array().cloned().unwrap_or_default();
            let synced = !hosts.is_empty()
                && hosts.iter().all(|h| {
                    h["switch"]["connected"] == true
                        && h["switch"]["synced_version"].as_u64() == version
                });
            let found = synced.then(|| s.clone());
            last = Some(s);
            Ok(found)
        },
    )
    .with_context(|| match &last {
        Some(s) => format!("switches not synchronised: {s:#}"),
        None => "scc status never answered".to_string(),
    })
}

/// One ping, one second to answer.
pub fn ping(vm: &Vm, ip: &str) -> Result<bool> {
    Ok(crate::ping(&vm.ns, ip, 1)?.answered)
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

/// A VM as the inventory of a test sees it: its spec, run by a namespace VM.
#[derive(Debug)]
pub struct VmEntry<'a> {
    /// What the inventory says about it.
    pub spec: VmSpec,
    /// The namespace VM (TAP name and namespace).
    pub vm: &'a Vm,
}

/// An inventory of one host per key (clouds cloud-1.., hosts host0.., endpoints
/// from [`Internet::host_addr`]) and these VMs, with the controller at
/// [`CONTROLLER`], talking OpenFlow over mutual TLS with the PKI beside the
/// inventory ([`crate::pki`], made when `scc` or the switches start).
pub fn inventory(keys: &[crate::KeyPair], vms: &[VmEntry<'_>]) -> String {
    inventory_with(keys, vms, "", &[], &[])
}

/// [`inventory`] with extra TOML lines in the `[controller]` table, after some
/// hosts' sections (by host index, e.g. a `[host.uplink]` table) and after some
/// VMs' (by name, e.g. `public_ip = ...`).
pub fn inventory_with(
    keys: &[crate::KeyPair],
    vms: &[VmEntry<'_>],
    controller_extra: &str,
    host_extra: &[(usize, &str)],
    vm_extra: &[(&str, &str)],
) -> String {
    let mut t = format!(
        "[controller]\nopenflow = \"{CONTROLLER}\"\n{controller_extra}\n{}\n",
        crate::pki::INVENTORY_TLS
    );
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
        for (_, extra) in host_extra.iter().filter(|(h, _)| *h == i) {
            t += extra;
            t += "\n";
        }
    }
    for e in vms {
        t += &format!(
            "[[vm]]\nname = \"{}\"\nmac = \"{}\"\nip = \"{}\"\nhost = \"host{}\"\nport = {}\ntap = \"{}\"\nnetns = \"{}\"\ntenant = \"{}\"\n",
            e.spec.name,
            e.spec.mac,
            e.spec.ip,
            e.spec.host,
            e.spec.port,
            e.vm.ifname,
            e.vm.ns.name(),
            e.spec.tenant
        );
        for (_, extra) in vm_extra.iter().filter(|(v, _)| *v == e.spec.name) {
            t += extra;
            t += "\n";
        }
    }
    t
}

/// Writes `text` as `dir/inventory.toml` (where [`start_scc`] reads it, and
/// beside which the PKI goes); returns its path.
pub fn write_inventory(dir: &std::path::Path, text: &str) -> Result<std::path::PathBuf> {
    let path = dir.join("inventory.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// The `[controller]` lines that open `scc`'s API on TCP at `api` (for the web
/// console) behind `token`, written to `dir/api.token` with mode 0600.
pub fn api_on_tcp(dir: &std::path::Path, api: &str, token: &str) -> Result<String> {
    let file = dir.join("api.token");
    std::fs::write(&file, token)?;
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(format!(
        "api = \"{api}\"\napi_token_file = \"{}\"\n",
        file.display()
    ))
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
                // Beside the inventory: every host of a test has its own.
                "--openflow-listen",
                &format!(
                    "punix:{}",
                    inventory.with_file_name(format!("host{i}.mgmt")).display()
                ),
            ]),
    )
}

/// `config` (as [`host_config`] writes it, with its local listener) with one
/// more OpenFlow listener, `listen` (e.g. `ptcp:6654:127.0.0.1` for `ovs-ofctl`
/// inside the host's namespace).
pub fn with_openflow_listener(config: &str, listen: &str) -> Result<String> {
    const KEY: &str = "[openflow]\nlisten = ";
    let start = config
        .find(KEY)
        .context("no [openflow] listen in the host config")?
        + KEY.len();
    let end = start + config[start..].find('\n').context("an unfinished line")?;
    Ok(format!(
        "{}[\"{listen}\", {}]{}",
        &config[..start],
        &config[start..end],
        &config[end..]
    ))
}

/// A VM of a test cloud before it exists: what its inventory entry will say.
#[derive(Debug, Clone, Copy)]
pub struct VmSpec {
    /// Name.
    pub name: &'static str,
    /// Index of its host.
    pub host: usize,
    /// Its port on that host.
    pub port: u32,
    /// Overlay address.
    pub ip: &'static str,
    /// MAC.
    pub mac: &'static str,
    /// Tenant.
    pub tenant: &'static str,
}

/// The MTU of the namespace VMs' TAPs: what the tunnels carry.
pub const VM_MTU: u32 = 1420;

impl VmSpec {
    /// VM `name` on port `port` of host `host` (an index), in tenant `t`.
    pub const fn new(
        name: &'static str,
        host: usize,
        port: u32,
        ip: &'static str,
        mac: &'static str,
    ) -> VmSpec {
        VmSpec {
            name,
            host,
            port,
            ip,
            mac,
            tenant: "t",
        }
    }

    /// The same VM in tenant `tenant`.
    pub const fn in_tenant(self, tenant: &'static str) -> VmSpec {
        VmSpec { tenant, ..self }
    }

    /// Creates the namespace VM: a TAP with its MAC and address (in the overlay's
    /// /10, MTU [`VM_MTU`]) in a namespace named `{prefix}-{name}-…`.
    pub fn create(&self, prefix: &str) -> Result<Vm> {
        Vm::with_tap(
            &crate::unique(&format!("{prefix}-{}-", self.name)),
            &crate::unique("sct"),
            VmAddress::overlay(self.mac, self.ip),
            VM_MTU,
        )
    }

    /// Its inventory entry, run by `vm`.
    pub fn entry<'a>(&self, vm: &'a Vm) -> VmEntry<'a> {
        VmEntry { spec: *self, vm }
    }
}

/// Creates the namespace VM of every spec ([`VmSpec::create`]).
pub fn create_vms(prefix: &str, specs: &[VmSpec]) -> Result<Vec<Vm>> {
    specs.iter().map(|spec| spec.create(prefix)).collect()
}

/// The inventory entries of `specs`, run by `vms` (in the same order).
pub fn entries<'a>(specs: &[VmSpec], vms: &'a [Vm]) -> Vec<VmEntry<'a>> {
    specs
        .iter()
        .zip(vms)
        .map(|(spec, vm)| spec.entry(vm))
        .collect()
}

/// `n` fresh WireGuard key pairs, one per host.
pub fn key_pairs(n: usize) -> Result<Vec<KeyPair>> {
    (0..n).map(|_| KeyPair::generate()).collect()
}

/// Starts `scd` on every host of `net` with the configuration `scc host-config`
/// writes from `inventory`, plus `extra(i)` appended for host `i` (ports the
/// inventory does not know yet, such as a migrating VM's destination TAP).
pub fn start_switches(
    net: &Internet,
    inventory: &std::path::Path,
    keys: &[KeyPair],
    extra: impl Fn(usize) -> String,
) -> Result<Vec<Scd>> {
    start_switches_edited(net, inventory, keys, |i, config| Ok(config + &extra(i)))
}

/// The `extra` of [`start_switches`] for a VM that will land on port `port` of
/// host `host`, on `tap`, a second TAP in its namespace ([`second_tap`]).
pub fn landing_port<'a>(
    host: usize,
    port: u32,
    vm: &'a Vm,
    tap: &'a str,
) -> impl Fn(usize) -> String + 'a {
    move |i| {
        if i == host {
            vm.tap_port_section(port, tap)
        } else {
            String::new()
        }
    }
}

/// Starts `scd` on every host of `net` with the configuration `scc host-config`
/// writes from `inventory`, as `edit(i, config)` returns it for host `i`.
pub fn start_switches_edited(
    net: &Internet,
    inventory: &std::path::Path,
    keys: &[KeyPair],
    mut edit: impl FnMut(usize, String) -> Result<String>,
) -> Result<Vec<Scd>> {
    let beside = inventory.parent().context("the inventory's directory")?;
    crate::pki::ensure(&beside.join(crate::pki::DIR), keys.len())?;
    let mut scds = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let config = edit(i, host_config(net, inventory, i)?)?;
        scds.push(Scd::start_with_key(
            &net.hosts[i],
            &config,
            None,
            &key.private,
        )?);
    }
    Ok(scds)
}

/// What the migration tests start from: the VMs of `specs` (namespaces named after
/// `prefix`) on the hosts of `net`, a second TAP in the namespace of the one at
/// index `moving` for the host it lands on, the inventory in
/// `dir/inventory.toml`, and `scc` started from it. The switches are the test's
/// to start, with [`MigrationCloud::landing`].
#[derive(Debug)]
pub struct MigrationCloud {
    /// One key pair per host.
    pub keys: Vec<KeyPair>,
    /// The VMs, in the order of the specs.
    pub vms: Vec<Vm>,
    /// The moving VM's TAP on its first host, and the one it lands on.
    pub taps: (String, String),
    /// The inventory file.
    pub inventory: std::path::PathBuf,
    /// The controller.
    pub scc: Scc,
}

impl MigrationCloud {
    /// Creates it (see [`MigrationCloud`]).
    pub fn start(
        net: &Internet,
        dir: &std::path::Path,
        prefix: &str,
        specs: &[VmSpec],
        moving: usize,
    ) -> Result<MigrationCloud> {
        let keys = key_pairs(net.hosts.len())?;
        let vms = create_vms(prefix, specs)?;
        let first = vms[moving].ifname.clone();
        let landing = second_tap(&vms[moving], VM_MTU)?;
        let inventory = dir.join("inventory.toml");
        std::fs::write(&inventory, self::inventory(&keys, &entries(specs, &vms)))?;
        let scc = start_scc(net, dir, true)?;
        Ok(MigrationCloud {
            keys,
            vms,
            taps: (first, landing),
            inventory,
            scc,
        })
    }
}

/// Makes a second TAP in a namespace VM's namespace, with its MAC and `mtu`, for
/// the host it will migrate to; returns its name.
///
/// The TAP takes no IPv6 router advertisements: its switch brings it up and
/// advertises the overlay's router on it long before the VM lands there, and a
/// guest that took them would have its SLAAC address and a second default
/// route on an interface whose switch does not carry its traffic yet, and
/// would send by whichever interface was advertised to first (a real guest has
/// one NIC). Pings to the VM still pass then (an echo reply leaves by the
/// interface the request came in), its TCP answers and own pings do not. A
/// test that moves the VM gives the TAP its addresses and routes.
pub fn second_tap(vm: &Vm, mtu: u32) -> Result<String> {
    let tap = crate::unique("sct");
    vm.ns.ip(&["tuntap", "add", "dev", &tap, "mode", "tap"])?;
    vm.ns.ip(&[
        "link",
        "set",
        &tap,
        "address",
        &vm.mac,
        "mtu",
        &mtu.to_string(),
    ])?;
    let no_ra = format!("net.ipv6.conf.{tap}.accept_ra=0");
    crate::run(vm.ns.command("sysctl").args(["-qw", &no_ra]))?;
    Ok(tap)
}

/// Sends one RARP "reverse request" from `mac` out of `ifname` (in the calling
/// thread's namespace), the announcement QEMU makes after a live migration: the
/// controller reroutes the VM when its new host's switch reports it.
pub fn announce_rarp(ifname: &str, mac: [u8; 6]) -> Result<()> {
    let mut frame = vec![0xffu8; 6];
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&[0x80, 0x35, 0, 1, 8, 0, 6, 4, 0, 3]);
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&[0; 4]);
    frame.resize(60, 0);
    let fd = crate::packet::packet_socket(ifname, libc::SOCK_RAW, 0x8035)?;
    crate::packet::send_frame(&fd, &frame)
}

/// "Migrates" a namespace VM: moves its address (`vm.ip/10`) from interface
/// `from` to `to` inside its namespace, as if it resumed on the other host's TAP,
/// adds `routes` (arguments of `ip route add ... dev to`) there, and announces it
/// with RARP as QEMU does. `while_paused` runs when the VM has left its old
/// interface and not yet announced itself.
pub fn move_vm(
    vm: &Vm,
    from: &str,
    to: &str,
    routes: &[&str],
    while_paused: impl FnOnce() -> Result<()>,
) -> Result<()> {
    let addr = format!("{}/10", vm.ip);
    vm.ns.ip(&["addr", "del", &addr, "dev", from])?;
    vm.ns.ip(&["link", "set", from, "down"])?;
    while_paused()?;
    vm.ns.ip(&["addr", "add", &addr, "dev", to])?;
    vm.ns.ip(&["link", "set", to, "up"])?;
    for route in routes {
        let mut args = vec!["route", "add"];
        args.extend(route.split_whitespace());
        args.extend(["dev", to]);
        vm.ns.ip(&args)?;
    }
    let mut mac = [0u8; 6];
    let octets: Vec<&str> = vm.mac.split(':').collect();
    anyhow::ensure!(octets.len() == 6, "`{}` is not a MAC", vm.mac);
    for (byte, text) in mac.iter_mut().zip(octets) {
        *byte = u8::from_str_radix(text, 16).with_context(|| format!("MAC {}", vm.mac))?;
    }
    let to = to.to_string();
    vm.ns.enter(move || announce_rarp(&to, mac))?
}

/// A steady UDP load from a namespace VM: `per_10ms` datagrams of 1000 bytes every
/// 10 ms (about `per_10ms` × 100 kB/s), until stopped.
#[derive(Debug)]
pub struct UdpLoad {
    running: Arc<AtomicBool>,
    sender: JoinHandle<Result<Result<u64>>>,
}

impl UdpLoad {
    /// Starts sending from `from` (an address of `vm`) to `to`.
    pub fn start(vm: &Vm, from: std::net::IpAddr, to: SocketAddr, per_10ms: u32) -> UdpLoad {
        let running = Arc::new(AtomicBool::new(true));
        let keep = running.clone();
        let sender = vm.ns.spawn(move || -> Result<u64> {
            let s = std::net::UdpSocket::bind((from, 0))?;
            let payload = [0x5cu8; 1000];
            let mut sent = 0;
            while keep.load(Ordering::Relaxed) {
                for _ in 0..per_10ms {
                    s.send_to(&payload, to)?;
                    sent += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(sent)
        });
        UdpLoad { running, sender }
    }

    /// Stops the load; the datagrams it sent.
    pub fn stop(self) -> Result<u64> {
        self.running.store(false, Ordering::Relaxed);
        self.sender
            .join()
            .map_err(|_| anyhow::anyhow!("load thread panicked"))??
    }
}

/// Writes `dir/move-NAME.sh`, an inventory `[placement] migrate` command for the
/// namespace VM `vm` (named `name` in the inventory): for the destination host in
/// `SC_TO_HOST` it runs `scc migrate` to that host's port from `landing` (host name,
/// port, TAP already in the VM's namespace), then `nsvm move` to that TAP, which
/// moves the address and announces the VM with RARP, as a hypervisor resuming it
/// there would. `nsvm` is the harness's binary at `nsvm`.
pub fn move_command(
    dir: &std::path::Path,
    name: &str,
    vm: &Vm,
    landing: &[(String, u32, String)],
    nsvm: &std::path::Path,
) -> Result<std::path::PathBuf> {
    let mut cases = String::new();
    for (host, port, tap) in landing {
        cases += &format!("  {host}) port={port}; tap={tap};;\n");
    }
    let script = format!(
        "#!/bin/sh\n# Moves namespace VM {name}: scc migrate, then nsvm move.\nset -eu\n\
         test \"$SC_VM\" = {name} || {{ echo \"only {name} can move\" >&2; exit 1; }}\n\
         case \"$SC_TO_HOST\" in\n{cases}  *) echo \"no TAP for {name} on $SC_TO_HOST\" >&2; exit 1;;\nesac\n\
         {scc} migrate \"$SC_VM\" --to \"$SC_TO_HOST\" --port \"$port\" --api \"$SC_API\" >/dev/null\n\
         {nsvm} move {ns} {ip} {mac} \"$tap\"\n",
        scc = scc_binary()?.display(),
        nsvm = nsvm.display(),
        ns = vm.ns.name(),
        ip = vm.ip,
        mac = vm.mac,
    );
    let path = dir.join(format!("move-{name}.sh"));
    std::fs::write(&path, script)?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    Ok(path)
}

/// The host VM `vm` runs on, in an `scc status` answer.
pub fn vm_host(status: &serde_json::Value, vm: &str) -> Option<String> {
    status["vms"].as_array()?.iter().find(|v| v["name"] == vm)?["host"]
        .as_str()
        .map(str::to_string)
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

/// How long a test waits for a migration timeline event: generous, for a loaded
/// machine (a migration step takes well under a second on an idle one).
pub const TIMELINE_WAIT: Duration = Duration::from_secs(30);

/// Starts migrating `vm` to port `port` of host `to_host` (`scc migrate`) and
/// waits until the destination is ready. The harness's VMs keep a port on every
/// host they may visit and move by moving their link between those TAPs, so the
/// harness manages ports itself (`--no-manage-ports`): scc removing a source port
/// would leave a VM that moves back without its TAP.
pub fn start_migration(net: &Internet, vm: &str, to_host: &str, port: u32) -> Result<()> {
    let port = port.to_string();
    let (ok, text) = scc(
        net,
        &[
            "migrate",
            vm,
            "--to",
            to_host,
            "--port",
            &port,
            "--no-manage-ports",
        ],
    )?;
    anyhow::ensure!(ok, "scc migrate: {text}");
    wait_timeline(net, "destination ready")?;
    Ok(())
}

/// Waits until the controller's migration timeline has `event`, at most
/// [`TIMELINE_WAIT`]; returns that `scc status` answer.
pub fn wait_timeline(net: &Internet, event: &str) -> Result<serde_json::Value> {
    wait_event(net, event, TIMELINE_WAIT, &AtomicBool::new(false))
}

/// Waits until the controller's migration timeline has `event`, at most `within`,
/// giving up early when `stop` is set; returns that `scc status` answer.
pub fn wait_event(
    net: &Internet,
    event: &str,
    within: Duration,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<serde_json::Value> {
    let mut last = serde_json::Value::Null;
    crate::wait_for(within, &format!("`{event}` in the timeline"), || {
        anyhow::ensure!(
            !stop.load(std::sync::atomic::Ordering::Relaxed),
            "interrupted while waiting for `{event}`"
        );
        let s = status(net)?;
        let found = event_ms(&s, event).is_some().then(|| s.clone());
        last = s;
        Ok(found)
    })
    .with_context(|| format!("no `{event}` in the timeline: {last:#}"))
}
