//! `bench reroute`: how long the controller takes to reroute a migrated VM, against
//! the number of VMs and switches.
//!
//! One `scc` runs in the benchmark's own namespace with a generated inventory of N
//! hosts and M VMs; N fake switches (`fake_switch::FakeSwitch`, an OpenFlow 1.3
//! switch that keeps a flow table and answers barriers, stats and echoes but moves
//! no packet; all of them tasks on one thread) connect to it over loopback. A VM is
//! added (`scc vm add`, timed until every switch confirmed the new version). A VM is migrated with `scc migrate`,
//! then declared arrived with `scc migrate --arrived` (the hypervisor's signal) once
//! scc has compiled the switch step ahead, as it does while a real VM's memory is
//! copied. The controller's own timeline gives the times: prepare → switch step
//! compiled, and arrival → switch step sent → every switch confirmed it (barrier).
//! With `--tls` every row is measured twice in the same run, the switches
//! connecting over plain TCP and then over mutual TLS (a throwaway PKI, one
//! certificate per host, `[controller.tls]` in the inventory).
//! Packets lost cannot be
//! measured without packets: the namespace tests (`netns-tests/tests/migration.rs`,
//! `qemu_scd_migrate.rs`) report them with real `scd`s.

use anyhow::{bail, Context, Result};
use fake_switch::{Counters, FakeSwitch};
use netns_tests::cloud::{api_socket, event_ms};
use netns_tests::{scc_binary, unique, Netns};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tls_support::pki::{self, Role};
use tls_support::rustls::ClientConfig;

const OPENFLOW: &str = "127.0.0.1:6653";
/// The port a migrated VM takes at its destination: below the tunnel ports
/// (10,000) and above every port the grid's VMs hold (one per VM of a host,
/// from 1, and one more for the VM added), so up to 8,998 VMs per host.
const DESTINATION_PORT: u32 = 9_000;

/// Runs one fake switch per host (`fake_switch`: tasks of one tokio runtime on
/// one thread, inside the namespace) until `stop` is set; over TLS when `clients`
/// holds each switch's TLS client configuration (its host's certificate).
fn spawn_switches(
    ns: &Netns,
    clients: Vec<Option<Arc<ClientConfig>>>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<Result<()>>> {
    crate::common::runtime_until_stopped(ns, stop, move || {
        let to: std::net::SocketAddr = OPENFLOW.parse()?;
        let give_up = tokio::time::Instant::now() + Duration::from_secs(120);
        for (h, tls) in clients.into_iter().enumerate() {
            let dpid = u64::try_from(h).unwrap_or(0) + 1;
            let sw = FakeSwitch::with_counters(dpid, counters.clone());
            // The ports a VM is moved between: scc refuses a port the
            // destination switch did not describe.
            sw.set_ports(
                [1, DESTINATION_PORT]
                    .map(|n| fake_switch::port(n, &format!("vm{n}")))
                    .to_vec(),
            );
            tokio::spawn(async move {
                let served = match tls {
                    None => sw.run(to, give_up).await,
                    Some(config) => serve_over_tls(sw, to, give_up, config).await,
                };
                if let Err(e) = served {
                    eprintln!("fake switch {dpid}: {e}");
                }
            });
        }
        Ok(())
    })
}

/// Connects `sw` to scc at `to` over mutual TLS (retrying until `give_up`) and
/// serves it until the connection ends.
async fn serve_over_tls(
    sw: Arc<FakeSwitch>,
    to: std::net::SocketAddr,
    give_up: tokio::time::Instant,
    config: Arc<ClientConfig>,
) -> std::io::Result<()> {
    let tcp = loop {
        match tokio::net::TcpStream::connect(to).await {
            Ok(s) => break s,
            Err(_) if tokio::time::Instant::now() < give_up => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
        }
    };
    tcp.set_nodelay(true)?;
    let name = tls_support::ServerName::try_from("scc").map_err(std::io::Error::other)?;
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    match sw.run_on(stream).await {
        // scc is killed at the end of a run, without a TLS close_notify.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(()),
        served => served,
    }
}

/// How the generated inventory addresses its VMs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Addressing {
    hosts: usize,
    vms: usize,
    /// Each host has a VM prefix holding its VMs (else one flat range).
    prefixes: bool,
}

impl Addressing {
    pub(crate) fn new(hosts: usize, vms: usize, prefixes: bool) -> Addressing {
        Addressing {
            hosts,
            vms,
            prefixes,
        }
    }

    /// Addresses per host prefix: its VMs, the one `add_vm` adds, to spare.
    fn block(&self) -> u32 {
        let per_host = u32::try_from(self.vms / self.hosts.max(1) + 4).unwrap_or(u32::MAX);
        per_host.next_power_of_two().max(256)
    }

    /// Host `h`'s VM prefix (the first block of the overlay is left out).
    fn prefix(&self, h: usize) -> (std::net::Ipv4Addr, u8) {
        let block = self.block();
        let first = 0x6440_0000u32 + block * (1 + u32::try_from(h).unwrap_or(0));
        let len = 32 - u8::try_from(block.trailing_zeros()).unwrap_or(8);
        (first.into(), len)
    }

    /// The address of the `index`th VM of host `h`.
    fn vm_ip(&self, h: usize, index: usize, v: usize) -> std::net::Ipv4Addr {
        if self.prefixes {
            let first = u32::from(self.prefix(h).0);
            (first + 1 + u32::try_from(index).unwrap_or(0)).into()
        } else {
            (0x6440_0000u32 + 0x100 + u32::try_from(v).unwrap_or(0)).into()
        }
    }
}

/// The inventory of `hosts` hosts in three clouds and `vms` VMs spread over them.
/// Switches may stay silent for 300 s: the fake switches of a run share two
/// threads, which fall behind scc's first synchronisation of a million flows, and
/// the echo verdict would judge them, not scc.
pub(crate) fn inventory(at: Addressing, api_socket: &std::path::Path, tls: bool) -> String {
    let Addressing { hosts, vms, .. } = at;
    let mut t = format!(
        "overlay_prefix = \"100.64.0.0/10\"\ngateway_mac = \"02:5c:00:00:00:01\"\n\
         [controller]\nopenflow = \"{OPENFLOW}\"\napi_socket = \"{}\"\n\
         echo_timeout_s = 300\n",
        api_socket.display()
    );
    if tls {
        t += "[controller.tls]\nprivate_key = \"pki/scc-key.pem\"\n\
              certificate = \"pki/scc-cert.pem\"\nca_cert = \"pki/ca-cert.pem\"\n";
    }
    for c in 0..3 {
        t += &format!("[[cloud]]\nname = \"cloud-{c}\"\n");
    }
    for h in 0..hosts {
        // Any 32 bytes make a valid key: the fake switches never handshake.
        t += &format!(
            "[[host]]\nname = \"host{h}\"\ncloud = \"cloud-{}\"\ndatapath_id = {}\n\
             tunnel_endpoint = \"198.51.100.{}:51820\"\npublic_key = \"{:042}A=\"\n",
            h % 3,
            h + 1,
            h % 250 + 1,
            h
        );
        if at.prefixes {
            let (net, len) = at.prefix(h);
            t += &format!("vm_prefix = \"{net}/{len}\"\n");
        }
    }
    for v in 0..vms {
        t += &format!(
            "[[vm]]\nname = \"vm{v}\"\nmac = \"02:00:{:02x}:{:02x}:{:02x}:{:02x}\"\nip = \"{}\"\n\
             host = \"host{}\"\nport = {}\ntenant = \"t\"\n",
            (v >> 24) & 0xff,
            (v >> 16) & 0xff,
            (v >> 8) & 0xff,
            v & 0xff,
            at.vm_ip(v % hosts, v / hosts, v),
            v % hosts,
            v / hosts + 1
        );
    }
    t
}

/// An API verb of `scc` against the one running in `ns`.
fn scc(ns: &Netns, args: &[&str]) -> Result<String> {
    let out = ns
        .command(scc_binary()?.to_str().context("path")?)
        .args(args)
        .arg("--api")
        .arg(format!("unix:{}", api_socket(ns).display()))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(
        out.status.success(),
        "scc {}: {}{}",
        args.join(" "),
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(text)
}

/// Poll `scc status` with its VM list (`bench reroute --poll-vms`).
pub static POLL_VMS: AtomicBool = AtomicBool::new(false);

/// `scc status` without its VM list: the bench polls it while the switches
/// synchronise, and at 100,000 VMs the list is megabytes that scc, the `scc`
/// client and the bench would build and parse on the two cores the sessions run
/// on (unless [`POLL_VMS`]).
fn status(ns: &Netns) -> Result<serde_json::Value> {
    let args: &[&str] = match POLL_VMS.load(Ordering::Relaxed) {
        true => &["status", "--json"],
        false => &["status", "--json", "--no-vms"],
    };
    Ok(serde_json::from_str(&scc(ns, args)?)?)
}

/// How long `scc` gets to reach a state: at 1,000 × 100,000 its start and
/// first synchronisation took longer than three minutes.
const WAIT: Duration = Duration::from_secs(600);

/// Polls `scc status` until `ok`; fails when scc exits or after [`WAIT`].
fn wait_for(
    ns: &Netns,
    scc: &mut std::process::Child,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value> {
    let deadline = Instant::now() + WAIT;
    let mut last = serde_json::Value::Null;
    loop {
        if let Some(exit) = scc.try_wait()? {
            bail!("scc exited ({exit}) before: {what}");
        }
        if let Ok(s) = status(ns) {
            if ok(&s) {
                return Ok(s);
            }
            last = s;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "scc never reached: {what} ({})",
            lagging(&last)
        );
        // Timings come from scc's timeline or from the fake switches, not from
        // this loop.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Which switches are behind in `status`, and why, briefly.
fn lagging(status: &serde_json::Value) -> String {
    let version = status["version"].as_u64();
    let behind: Vec<String> = status["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["switch"]["synced_version"].as_u64() != version)
        .map(|h| {
            format!(
                "{} connected={} synced={} error={} session={}",
                h["name"],
                h["switch"]["connected"],
                h["switch"]["synced_version"],
                h["switch"]["last_error"],
                h["session"]
            )
        })
        .collect();
    format!(
        "version {version:?}; {} switches behind, first: {}",
        behind.len(),
        behind.first().map_or("-", String::as_str)
    )
}

fn all_synced(s: &serde_json::Value) -> bool {
    let v = s["version"].as_u64();
    s["hosts"].as_array().is_some_and(|hs| {
        hs.iter().all(|h| {
            h["switch"]["connected"].as_bool() == Some(true)
                && h["switch"]["synced_version"].as_u64() == v
        })
    })
}

/// One measured migration.
struct Reroute {
    /// Compiling the switch step while the VM migrates (prepare → compiled).
    ahead_ms: f64,
    /// Arrival → switch step committed and sent.
    compile_ms: f64,
    distribute_ms: f64,
    flow_mods: u64,
    /// Where the switch step's distribution spent its time (scc's `sync_phases`).
    phases: Phases,
}

/// scc's `sync_phases` of one version (see docs/controller.md), milliseconds:
/// the store write, and over the switches the latest wake-up after
/// publication, the total and slowest difference computed, the slowest write
/// of flow-mods, the median and slowest barrier wait, the last confirmation.
#[derive(Clone, Copy)]
struct Phases {
    save: f64,
    deltas: f64,
    woke_max: f64,
    diff_total: f64,
    diff_max: f64,
    send_max: f64,
    barriers_p50: f64,
    barriers_max: f64,
    confirmed_max: f64,
}

impl Phases {
    /// The phases in `status` if they are `version`'s; NaN where not.
    fn of(status: &serde_json::Value, version: Option<u64>) -> Phases {
        let p = &status["sync_phases"];
        let same = version.is_some() && p["version"].as_u64() == version;
        let at = |a: &str, b: &str| {
            let v = if b.is_empty() { &p[a] } else { &p[a][b] };
            v.as_f64().filter(|_| same).unwrap_or(f64::NAN)
        };
        Phases {
            save: at("save_ms", ""),
            deltas: at("deltas_ms", ""),
            woke_max: at("woke_ms", "max"),
            diff_total: at("diff_total_ms", ""),
            diff_max: at("diff_ms", "max"),
            send_max: at("send_ms", "max"),
            barriers_p50: at("barriers_ms", "p50"),
            barriers_max: at("barriers_ms", "max"),
            confirmed_max: at("confirmed_ms", "max"),
        }
    }

    /// The median of each phase over `all`.
    fn median(all: &[Phases]) -> Phases {
        let m = |f: fn(&Phases) -> f64| median(all.iter().map(f).collect());
        Phases {
            save: m(|p| p.save),
            deltas: m(|p| p.deltas),
            woke_max: m(|p| p.woke_max),
            diff_total: m(|p| p.diff_total),
            diff_max: m(|p| p.diff_max),
            send_max: m(|p| p.send_max),
            barriers_p50: m(|p| p.barriers_p50),
            barriers_max: m(|p| p.barriers_max),
            confirmed_max: m(|p| p.confirmed_max),
        }
    }

    /// Table cells: store write (+ deltas worked out) | last awake | diff total / slowest | slowest send |
    /// barriers p50 / slowest | last confirmed.
    fn cells(&self) -> String {
        format!(
            "{:.1} (+{:.1}) | {:.1} | {:.1} / {:.1} | {:.1} | {:.1} / {:.1} | {:.1}",
            self.save,
            self.deltas,
            self.woke_max,
            self.diff_total,
            self.diff_max,
            self.send_max,
            self.barriers_p50,
            self.barriers_max,
            self.confirmed_max
        )
    }
}

/// What one grid point measured.
struct Point {
    /// scc started → every switch confirmed the first version.
    ready_s: f64,
    /// Flow-mods of the first synchronisation, all switches together.
    first_sync_flow_mods: u64,
    /// `scc vm add` issued → every switch confirmed the version adding it.
    /// Its time and flow-mods, or why it did not finish (the migrations are
    /// measured all the same).
    add: Result<(f64, u64), String>,
    /// Where the VM add's distribution spent its time.
    add_phases: Phases,
    reroutes: Vec<Reroute>,
    /// scc's resident memory after the runs.
    rss_mib: f64,
}

/// Resident memory of process `pid` in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Adds one VM on host 0 and times it until every switch it changes confirmed
/// it (each answers the barrier after its flow-mods; a synchronisation that also
/// deletes answers two, and then scc's status, checked after, says the version is
/// not everywhere yet and the time runs on until it is): every switch for a route
/// per VM, host 0's alone when the VM is inside host 0's prefix.
fn add_vm(
    ns: &Netns,
    child: &mut std::process::Child,
    at: Addressing,
    counters: &Counters,
) -> Result<(f64, u64)> {
    let Addressing { hosts, vms, .. } = at;
    let ip = at.vm_ip(0, vms / hosts + 1, vms);
    let port = vms / hosts + 2;
    anyhow::ensure!(
        u32::try_from(port).is_ok_and(|p| p < DESTINATION_PORT),
        "{vms} VMs on {hosts} hosts take ports up to {port}, past the migration's \
         destination port {DESTINATION_PORT}: give the grid more hosts"
    );
    let port = port.to_string();
    let flow_mods = counters.flow_mods.load(Ordering::SeqCst);
    let barriers = counters.barriers.load(Ordering::SeqCst);
    let started = Instant::now();
    let out = scc(
        ns,
        &[
            "vm",
            "add",
            "--name",
            "added",
            "--mac",
            "02:5c:ff:00:00:01",
            "--ip",
            &ip.to_string(),
            "--host",
            "host0",
            "--port",
            &port,
        ],
    )?;
    anyhow::ensure!(out.contains("version"), "scc vm add answered {out}");
    // A VM added inside its host's prefix changes that host's switch only.
    let told = if at.prefixes { 1 } else { hosts };
    let all = barriers + u64::try_from(told).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(180);
    while counters.barriers.load(Ordering::SeqCst) < all {
        if let Some(exit) = child.try_wait()? {
            bail!("scc exited ({exit}) while adding a VM");
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "VM add: {} of {} barriers answered",
            counters.barriers.load(Ordering::SeqCst) - barriers,
            all - barriers
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut ms = started.elapsed().as_secs_f64() * 1e3;
    if !all_synced(&status(ns)?) {
        wait_for(ns, child, "the added VM everywhere", all_synced)?;
        ms = started.elapsed().as_secs_f64() * 1e3;
    }
    Ok((ms, counters.flow_mods.load(Ordering::SeqCst) - flow_mods))
}

/// Starts scc and `hosts` fake switches, adds a VM, migrates `vm0` back and forth
/// `reps` times, and reports it all.
fn measure(at: Addressing, reps: usize, tls: bool) -> Result<Point> {
    let hosts = at.hosts;
    let ns = Netns::new(&unique("bench-reroute-"))?;
    ns.ip(&["link", "set", "lo", "up"])?;
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("inventory.toml"),
        inventory(at, &api_socket(&ns), tls),
    )?;
    let mut clients = Vec::with_capacity(hosts);
    if tls {
        let pki_dir = dir.path().join("pki");
        pki::init(&pki_dir, "bench CA")?;
        pki::issue(&pki_dir, "scc", Role::Controller)?;
        for h in 0..hosts {
            pki::issue(&pki_dir, &format!("host{h}"), Role::Host)?;
            let files = pki::files(&pki_dir, &format!("host{h}"));
            clients.push(Some(tls_support::client_config(&files)?));
        }
    } else {
        clients.resize(hosts, None);
    }
    let log = dir.path().join("scc.log");
    let started = Instant::now();
    let mut child = ns
        .command(scc_binary()?.to_str().context("path")?)
        .args(["run", "--state"])
        .arg(dir.path().join("state.json"))
        .arg("--inventory")
        .arg(dir.path().join("inventory.toml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let switches = spawn_switches(&ns, clients, counters.clone(), stop.clone());
    let result = (|| -> Result<Point> {
        let log_tail = || {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            format!("scc log ends: {}", tail.join(" / "))
        };
        wait_for(&ns, &mut child, "all switches synced", all_synced).with_context(log_tail)?;
        let ready_s = started.elapsed().as_secs_f64();
        let first_sync_flow_mods = counters.flow_mods.load(Ordering::SeqCst);
        let add = add_vm(&ns, &mut child, at, &counters).map_err(|e| format!("{e:#}"));
        let add_phases = status(&ns)
            .map(|s| Phases::of(&s, s["version"].as_u64()))
            .unwrap_or_else(|_| Phases::of(&serde_json::Value::Null, None));
        let mut reroutes = Vec::new();
        for rep in 0..reps {
            let to = if rep % 2 == 0 { 1 % hosts } else { 0 };
            let port = if rep % 2 == 0 { DESTINATION_PORT } else { 1 };
            scc(
                &ns,
                &[
                    "migrate",
                    "vm0",
                    "--to",
                    &format!("host{to}"),
                    "--port",
                    &port.to_string(),
                ],
            )?;
            // A live migration copies memory for much longer than scc needs to
            // compile the switch step ahead; the arrival comes after both.
            let s = wait_for(&ns, &mut child, "switch compiled ahead", |s| {
                event_ms(s, "destination ready").is_some()
                    && event_ms(s, "switch compiled").is_some()
            })?;
            let ahead_ms = event_ms(&s, "switch compiled").context("compiled")?
                - event_ms(&s, "prepare sent").context("prepare")?;
            let before = counters.flow_mods.load(Ordering::Relaxed);
            scc(&ns, &["migrate", "--arrived"])?;
            let s = wait_for(&ns, &mut child, "rerouted", |s| {
                event_ms(s, "rerouted").is_some()
            })?;
            let after = counters.flow_mods.load(Ordering::Relaxed);
            let (arrived, sent, rerouted) = (
                event_ms(&s, "arrived").context("arrived")?,
                event_ms(&s, "switch sent").context("switch sent")?,
                event_ms(&s, "rerouted").context("rerouted")?,
            );
            reroutes.push(Reroute {
                ahead_ms,
                compile_ms: sent - arrived,
                distribute_ms: rerouted - sent,
                flow_mods: after - before,
                // The switch step is the version in force until the clean-up,
                // GRACE later.
                phases: Phases::of(&s, s["version"].as_u64()),
            });
            wait_for(&ns, &mut child, "cleaned up", |s| {
                event_ms(s, "old host drained").is_some() && all_synced(s)
            })?;
        }
        Ok(Point {
            ready_s,
            first_sync_flow_mods,
            add,
            add_phases,
            reroutes,
            rss_mib: rss_mib(child.id()),
        })
    })();
    let result = result.map_err(|e| kept_for_reading(&ns, dir, e));
    stop.store(true, Ordering::Relaxed);
    let _ = child.kill();
    let _ = child.wait();
    let _ = switches.join();
    result
}

/// A failed row's scc log and final `scc status --json` (with each session's
/// current step, `hosts[].session`), kept in the run's directory instead of
/// deleted with it; the error names the directory and counts the sessions by
/// step.
fn kept_for_reading(ns: &Netns, dir: tempfile::TempDir, e: anyhow::Error) -> anyhow::Error {
    let final_status = status(ns);
    let sessions = final_status.as_ref().map_or_else(
        |s| format!("no status: {s:#}"),
        |s| s["sessions"].to_string(),
    );
    if let Ok(s) = &final_status {
        let _ = std::fs::write(
            dir.path().join("status.json"),
            serde_json::to_string_pretty(s).unwrap_or_default(),
        );
    }
    let kept = dir.keep();
    e.context(format!(
        "scc.log and status.json kept in {} (sessions by step: {sessions})",
        kept.display()
    ))
}

/// The `q` quantile (0..=1) of `v`, nearest rank.
fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    // Nearest rank: the smallest rank whose share of the samples reaches `q`.
    let rank = (1..=v.len())
        .find(|r| *r as f64 >= q * v.len() as f64)
        .unwrap_or(v.len());
    v[rank - 1]
}

fn median(v: Vec<f64>) -> f64 {
    quantile(v, 0.5)
}

/// Grid points from `SWITCHES:VMS` strings; the default grid when empty.
pub fn parse_grid(points: &[String]) -> Result<Vec<(usize, usize)>> {
    if points.is_empty() {
        return Ok([10, 30, 100]
            .into_iter()
            .flat_map(|h| [1, 100, 1000].map(|v| (h, v)))
            .collect());
    }
    points
        .iter()
        .map(|p| {
            let (h, v) = p
                .split_once(':')
                .with_context(|| format!("grid point `{p}`: expected SWITCHES:VMS"))?;
            let (h, v) = (h.trim().parse()?, v.trim().parse()?);
            anyhow::ensure!(
                h >= 2 && v >= 1,
                "grid point `{p}`: at least 2 switches and 1 VM"
            );
            Ok((h, v))
        })
        .collect()
}

/// Runs the grid and prints the table; with `tls`, each row over plain TCP
/// and then over mutual TLS. With `prefixes`, each host has a VM prefix holding
/// its VMs (a switch holds a route per host); without, a route per VM.
pub fn reroute(grid: &[(usize, usize)], reps: usize, tls: bool, prefixes: bool) -> Result<()> {
    println!("\n## Reroute time against VM and switch count (scc + fake OpenFlow switches)\n");
    let routes = if prefixes {
        "a VM prefix per host"
    } else {
        "a route per VM (--no-prefixes)"
    };
    println!("Routes: {routes}.\n");
    println!(
        "| transport | switches | VMs | flows per switch (first sync flow-mods / switches) | scc start + first sync s | VM add ms (→ last barrier) | flow-mods per VM add | switch step compiled ahead ms | arrival → switch sent ms | sent → all barriers ms | reroute ms p50 (arrival → last barrier) | reroute ms p99 | flow-mods per reroute | scc RSS MiB |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let transports: &[bool] = if tls { &[false, true] } else { &[false] };
    let mut phase_rows = Vec::new();
    for (&(hosts, vms), &over_tls) in grid
        .iter()
        .flat_map(|point| transports.iter().map(move |t| (point, t)))
    {
        let transport = if over_tls { "TLS" } else { "TCP" };
        match measure(Addressing::new(hosts, vms, prefixes), reps, over_tls) {
            Ok(p) => {
                let rs = &p.reroutes;
                let flow_mods = rs.first().map_or(0, |r| r.flow_mods);
                let total: Vec<f64> = rs.iter().map(|r| r.compile_ms + r.distribute_ms).collect();
                println!(
                    "| {transport} | {hosts} | {vms} | {} | {:.2} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {flow_mods} | {:.0} |",
                    p.first_sync_flow_mods / u64::try_from(hosts).unwrap_or(1).max(1),
                    p.ready_s,
                    p.add.as_ref().map_or_else(|e| e.clone(), |(ms, _)| format!("{ms:.1}")),
                    p.add.as_ref().map_or(String::new(), |(_, n)| n.to_string()),
                    median(rs.iter().map(|r| r.ahead_ms).collect()),
                    median(rs.iter().map(|r| r.compile_ms).collect()),
                    median(rs.iter().map(|r| r.distribute_ms).collect()),
                    median(total.clone()),
                    quantile(total, 0.99),
                    p.rss_mib,
                );
                let reroute = Phases::median(&rs.iter().map(|r| r.phases).collect::<Vec<_>>());
                for (change, phases) in [("VM add", p.add_phases), ("reroute", reroute)] {
                    phase_rows.push(format!(
                        "| {transport} | {hosts} | {vms} | {change} | {} |",
                        phases.cells()
                    ));
                }
            }
            Err(e) => {
                println!("| {transport} | {hosts} | {vms} | | failed: {e:#} | | | | | | | | | |")
            }
        }
    }
    println!("\nWhere the time goes (scc's `sync_phases` of the version that made the change, ms from its publication or of each phase; reroute: median over the migrations):\n");
    println!("| transport | switches | VMs | change | store write (+ deltas worked out) | last session awake | diff total / slowest | slowest send | barriers p50 / slowest | last switch confirmed |");
    println!("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|");
    for row in phase_rows {
        println!("{row}");
    }
    println!("\nCommand: `bash scripts/bench.sh reroute` ({reps} migrations per row; medians, p99 by nearest rank)");
    Ok(())
}
