//! `bench reroute`: how long the controller takes to reroute a migrated VM, against
//! the number of VMs and switches.
//!
//! One `scc` runs in the benchmark's own namespace with a generated inventory of N
//! hosts and M VMs; N fake switches (this module's [`FakeSwitch`], an OpenFlow 1.3
//! switch that keeps a flow table and answers barriers, stats and echoes but moves
//! no packet) connect to it over loopback. A VM is migrated with `scc migrate`,
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
use netns_tests::cloud::event_ms;
use netns_tests::{scc_binary, unique, Netns};
use openflow::flow::FlowMatch;
use openflow::wire::{
    decode, encode, frame_len, FlowModCommand, FlowStatsEntry, Message, MultipartReply,
    MultipartReplyBody, MultipartRequestBody, PortStats, SwitchFeatures, MORE,
};
use openflow::FlowSpec;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tls_support::pki::{self, Role};
use tls_support::rustls::{ClientConfig, ClientConnection, StreamOwned};

const OPENFLOW: &str = "127.0.0.1:6653";
/// The port a migrated VM takes at its destination (below the tunnel ports).
const DESTINATION_PORT: u32 = 900;

/// An OpenFlow 1.3 switch without a data path: enough of a switch for the
/// controller to program it exactly as it programs `scd`.
struct FakeSwitch {
    dpid: u64,
    flows: HashMap<(u8, u16, FlowMatch), FlowSpec>,
    /// Flow-mods received, shared by every fake switch of a run.
    flow_mods: Arc<AtomicU64>,
    /// Its TLS client configuration (its host's certificate), if over TLS.
    tls: Option<Arc<ClientConfig>>,
}

/// A fake switch's connection: TCP, or TLS over TCP.
trait Wire: Read + Write {}
impl<T: Read + Write> Wire for T {}

impl FakeSwitch {
    /// The replies to `m` (several for a flow dump longer than one message).
    fn answer(&mut self, m: Message) -> Vec<Message> {
        if let Message::MultipartRequest(r) = &m {
            if let MultipartRequestBody::Flow(_) = r.body {
                // A message is at most 64 KiB: the dump goes in parts, `MORE` set
                // on all but the last.
                let entries: Vec<FlowStatsEntry> = self
                    .flows
                    .values()
                    .map(|spec| FlowStatsEntry {
                        spec: spec.clone(),
                        stats: Default::default(),
                    })
                    .collect();
                let parts: Vec<_> = entries.chunks(100).map(<[_]>::to_vec).collect();
                let n = parts.len().max(1);
                return (0..n)
                    .map(|i| {
                        Message::MultipartReply(MultipartReply {
                            flags: if i + 1 < n { MORE } else { 0 },
                            body: MultipartReplyBody::Flow(
                                parts.get(i).cloned().unwrap_or_default(),
                            ),
                        })
                    })
                    .collect();
            }
        }
        self.answer_one(m).into_iter().collect()
    }

    fn answer_one(&mut self, m: Message) -> Option<Message> {
        match m {
            Message::FeaturesRequest => Some(Message::FeaturesReply(SwitchFeatures {
                datapath_id: self.dpid,
                n_buffers: 0,
                n_tables: 1,
                auxiliary_id: 0,
                capabilities: 0,
                reserved: 0,
            })),
            Message::EchoRequest(d) => Some(Message::EchoReply(d)),
            Message::BarrierRequest => Some(Message::BarrierReply),
            Message::FlowMod(fm) => {
                self.flow_mods.fetch_add(1, Ordering::Relaxed);
                let key = (fm.spec.table_id, fm.spec.priority, fm.spec.matcher);
                match fm.command {
                    FlowModCommand::Add => {
                        self.flows.insert(key, fm.spec);
                    }
                    FlowModCommand::Modify | FlowModCommand::ModifyStrict => {
                        if let Some(f) = self.flows.get_mut(&key) {
                            f.instructions = fm.spec.instructions;
                        }
                    }
                    FlowModCommand::Delete | FlowModCommand::DeleteStrict => {
                        self.flows.remove(&key);
                    }
                }
                None
            }
            Message::MultipartRequest(r) => {
                let body = match r.body {
                    MultipartRequestBody::PortStats(port_no) => {
                        MultipartReplyBody::PortStats(vec![PortStats {
                            port_no,
                            ..PortStats::default()
                        }])
                    }
                    MultipartRequestBody::PortDesc => MultipartReplyBody::PortDesc(Vec::new()),
                    _ => return None,
                };
                Some(Message::MultipartReply(MultipartReply { flags: 0, body }))
            }
            _ => None,
        }
    }

    /// Serves the controller until `stop` is set or the connection ends.
    fn serve(mut self, stop: &AtomicBool) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let stream = loop {
            match TcpStream::connect(OPENFLOW) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => bail!("switch {} cannot reach scc: {e}", self.dpid),
            }
        };
        stream.set_nodelay(true)?;
        let socket = stream.try_clone()?;
        let mut stream: Box<dyn Wire> = match self.tls.take() {
            None => Box::new(stream),
            Some(config) => {
                // The whole handshake before the short read timeout below: with
                // many switches connecting at once it may take longer.
                let mut conn = ClientConnection::new(config, "scc".try_into()?)?;
                let mut tcp = stream;
                while conn.is_handshaking() {
                    conn.complete_io(&mut tcp)?;
                }
                Box::new(StreamOwned::new(conn, tcp))
            }
        };
        stream.write_all(&encode(&Message::Hello(openflow::wire::Hello::of13()), 1)?)?;
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        let mut inbox = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        while !stop.load(Ordering::Relaxed) {
            let n = match stream.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(e.into()),
            };
            inbox.extend_from_slice(&buf[..n]);
            let mut out = Vec::new();
            while let Some(len) = frame_len(&inbox).map_err(|e| anyhow::anyhow!("{e}"))? {
                let frame: Vec<u8> = inbox.drain(..len).collect();
                let (xid, m) = decode(&frame).map_err(|e| anyhow::anyhow!("{e}"))?;
                for reply in self.answer(m) {
                    out.extend(encode(&reply, xid)?);
                }
            }
            stream.write_all(&out)?;
        }
        Ok(())
    }
}

/// The inventory of `hosts` hosts in three clouds and `vms` VMs spread over them.
fn inventory(hosts: usize, vms: usize, tls: bool) -> String {
    let mut t = format!(
        "overlay_prefix = \"100.64.0.0/10\"\ngateway_mac = \"02:5c:00:00:00:01\"\n\
         [controller]\nopenflow = \"{OPENFLOW}\"\napi = \"127.0.0.1:6680\"\n"
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
    }
    for v in 0..vms {
        let ip = 0x6440_0000u32 + 0x100 + u32::try_from(v).unwrap_or(0);
        t += &format!(
            "[[vm]]\nname = \"vm{v}\"\nmac = \"02:00:{:02x}:{:02x}:{:02x}:{:02x}\"\nip = \"{}\"\n\
             host = \"host{}\"\nport = {}\ntenant = \"t\"\n",
            (v >> 24) & 0xff,
            (v >> 16) & 0xff,
            (v >> 8) & 0xff,
            v & 0xff,
            std::net::Ipv4Addr::from(ip),
            v % hosts,
            v / hosts + 1
        );
    }
    t
}

fn scc(ns: &Netns, args: &[&str]) -> Result<String> {
    let out = ns
        .command(scc_binary()?.to_str().context("path")?)
        .args(args)
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

fn status(ns: &Netns) -> Result<serde_json::Value> {
    Ok(serde_json::from_str(&scc(ns, &["status"])?)?)
}

/// Polls `scc status` until `ok`; fails when scc exits or after three minutes.
fn wait_for(
    ns: &Netns,
    scc: &mut std::process::Child,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(exit) = scc.try_wait()? {
            bail!("scc exited ({exit}) before: {what}");
        }
        if let Ok(s) = status(ns) {
            if ok(&s) {
                return Ok(s);
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "scc never reached: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
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
}

/// Starts scc and `hosts` fake switches, migrates `vm0` back and forth `reps`
/// times, and returns each reroute with the time scc took to start and sync.
fn measure(hosts: usize, vms: usize, reps: usize, tls: bool) -> Result<(f64, Vec<Reroute>)> {
    let ns = Netns::new(&unique("bench-reroute-"))?;
    ns.ip(&["link", "set", "lo", "up"])?;
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("inventory.toml"),
        inventory(hosts, vms, tls),
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
    let flow_mods = Arc::new(AtomicU64::new(0));
    let switches: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(h, tls)| {
            let (stop, flow_mods) = (stop.clone(), flow_mods.clone());
            ns.spawn(move || {
                FakeSwitch {
                    dpid: u64::try_from(h).unwrap_or(0) + 1,
                    flows: HashMap::new(),
                    flow_mods,
                    tls,
                }
                .serve(&stop)
            })
        })
        .collect();
    let result = (|| -> Result<(f64, Vec<Reroute>)> {
        let log_tail = || {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            format!("scc log ends: {}", tail.join(" / "))
        };
        wait_for(&ns, &mut child, "all switches synced", all_synced).with_context(log_tail)?;
        let ready = started.elapsed().as_secs_f64();
        let mut out = Vec::new();
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
            let before = flow_mods.load(Ordering::Relaxed);
            scc(&ns, &["migrate", "--arrived"])?;
            let s = wait_for(&ns, &mut child, "rerouted", |s| {
                event_ms(s, "rerouted").is_some()
            })?;
            let after = flow_mods.load(Ordering::Relaxed);
            let (arrived, sent, rerouted) = (
                event_ms(&s, "arrived").context("arrived")?,
                event_ms(&s, "switch sent").context("switch sent")?,
                event_ms(&s, "rerouted").context("rerouted")?,
            );
            out.push(Reroute {
                ahead_ms,
                compile_ms: sent - arrived,
                distribute_ms: rerouted - sent,
                flow_mods: after - before,
            });
            wait_for(&ns, &mut child, "cleaned up", |s| {
                event_ms(s, "old host drained").is_some() && all_synced(s)
            })?;
        }
        Ok((ready, out))
    })();
    stop.store(true, Ordering::Relaxed);
    let _ = child.kill();
    let _ = child.wait();
    for s in switches {
        let _ = s.join();
    }
    result
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
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
/// and then over mutual TLS.
pub fn reroute(grid: &[(usize, usize)], reps: usize, tls: bool) -> Result<()> {
    println!("\n## Reroute time against VM and switch count (scc + fake OpenFlow switches)\n");
    println!(
        "| transport | switches | VMs | scc start + first sync s | switch step compiled ahead ms | arrival → switch sent ms | sent → all barriers ms | reroute ms p50 (arrival → last barrier) | flow-mods per reroute |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let transports: &[bool] = if tls { &[false, true] } else { &[false] };
    for (&(hosts, vms), &over_tls) in grid
        .iter()
        .flat_map(|point| transports.iter().map(move |t| (point, t)))
    {
        let transport = if over_tls { "TLS" } else { "TCP" };
        match measure(hosts, vms, reps, over_tls) {
            Ok((ready, rs)) => {
                let flow_mods = rs.first().map_or(0, |r| r.flow_mods);
                println!(
                    "| {transport} | {hosts} | {vms} | {ready:.2} | {:.1} | {:.1} | {:.1} | {:.1} | {flow_mods} |",
                    median(rs.iter().map(|r| r.ahead_ms).collect()),
                    median(rs.iter().map(|r| r.compile_ms).collect()),
                    median(rs.iter().map(|r| r.distribute_ms).collect()),
                    median(rs.iter().map(|r| r.compile_ms + r.distribute_ms).collect()),
                );
            }
            Err(e) => println!("| {transport} | {hosts} | {vms} | failed: {e:#} | | | | | |"),
        }
    }
    println!("\nCommand: `bash scripts/bench.sh reroute` ({reps} migrations per row, medians)");
    Ok(())
}
