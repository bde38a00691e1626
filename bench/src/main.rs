//! The benchmark runner: side-by-side measurements against peers in the same run,
//! printed as Markdown tables with ratios (`scripts/bench.sh` builds and runs it).
//!
//! `bench tunnel` measures VM-to-VM TCP throughput (1 and 4 streams, iperf3) and
//! round-trip latency (ping, p50/p99) across two host namespaces joined by a veth:
//! through `scd`'s WireGuard tunnel, through `wireguard-go`, through `boringtun-cli`
//! (when installed), and over the bare veth (the limit of the machine). Every
//! namespace is the benchmark's own and is removed when it ends.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use netns_tests::{run, unique, KeyPair, Netns, Scd, Vm};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(name = "bench", about = "Supercloud benchmarks against their peers")]
struct Cli {
    #[command(subcommand)]
    what: What,
    /// Seconds per throughput measurement.
    #[arg(long, default_value_t = 5, global = true)]
    seconds: u32,
}

#[derive(Subcommand, Debug)]
enum What {
    /// Tunnel throughput and latency: scd vs wireguard-go vs boringtun-cli vs veth.
    Tunnel,
    /// Flow-mod rate: 10,000 adds and a barrier, scd vs Open vSwitch (netdev).
    Flowmod,
    /// Every benchmark.
    All,
}

/// One measured path.
#[derive(Debug)]
struct Row {
    name: String,
    gbits_1: Option<f64>,
    gbits_4: Option<f64>,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    note: String,
}

/// Two host namespaces joined by a veth: 192.0.2.1 and 192.0.2.2.
struct Pair {
    a: Netns,
    b: Netns,
}

fn pair(tag: &str) -> Result<Pair> {
    let a = Netns::new(&unique(&format!("bench-{tag}-a-")))?;
    let b = Netns::new(&unique(&format!("bench-{tag}-b-")))?;
    let (ia, ib) = (unique("bva"), unique("bvb"));
    netns_tests::veth(&ia, &a, &ib, &b)?;
    a.ip(&["addr", "add", "192.0.2.1/24", "dev", &ia])?;
    a.ip(&["link", "set", &ia, "up"])?;
    b.ip(&["addr", "add", "192.0.2.2/24", "dev", &ib])?;
    b.ip(&["link", "set", &ib, "up"])?;
    Ok(Pair { a, b })
}

/// A background process ended by PID when dropped.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// iperf3 throughput in Gbit/s from `client` to `server_ip` (server in `server`).
fn iperf(
    client: &Netns,
    server: &Netns,
    server_ip: &str,
    streams: u32,
    seconds: u32,
) -> Result<f64> {
    let _srv = Background(
        server
            .command("iperf3")
            .args(["-s", "-B", server_ip, "-p", "5201"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    std::thread::sleep(Duration::from_millis(300));
    let out = client
        .command("iperf3")
        .args([
            "-c",
            server_ip,
            "-p",
            "5201",
            "-J",
            "-t",
            &seconds.to_string(),
            "-P",
            &streams.to_string(),
        ])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("iperf3 output: {text}"))?;
    let bps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .with_context(|| format!("iperf3 failed: {}", v["error"]))?;
    Ok(bps / 1e9)
}

/// Round-trip times by ping (200 probes, 5 ms apart): (p50, p99) in microseconds.
fn latency(from: &Netns, to_ip: &str) -> Result<(f64, f64)> {
    let out = from
        .command("ping")
        .args(["-c", "200", "-i", "0.005", "-W", "1", to_ip])
        .output()?;
    let mut rtts: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split_whitespace().next())
        .filter_map(|t| t.parse::<f64>().ok())
        .map(|ms| ms * 1000.0)
        .collect();
    anyhow::ensure!(
        rtts.len() >= 150,
        "too few ping replies to {to_ip}: {}",
        rtts.len()
    );
    rtts.sort_by(f64::total_cmp);
    let at = |percent: usize| rtts[(rtts.len() - 1) * percent / 100];
    Ok((at(50), at(99)))
}

fn measure(
    name: &str,
    client: &Netns,
    server: &Netns,
    server_ip: &str,
    seconds: u32,
    note: String,
) -> Row {
    let attempt = || -> Result<Row> {
        let (p50, p99) = latency(client, server_ip)?;
        Ok(Row {
            name: name.to_string(),
            gbits_1: Some(iperf(client, server, server_ip, 1, seconds)?),
            gbits_4: Some(iperf(client, server, server_ip, 4, seconds)?),
            p50_us: Some(p50),
            p99_us: Some(p99),
            note: note.clone(),
        })
    };
    attempt().unwrap_or_else(|e| Row {
        name: name.to_string(),
        gbits_1: None,
        gbits_4: None,
        p50_us: None,
        p99_us: None,
        note: format!("failed: {e:#}"),
    })
}

fn bench_veth(seconds: u32) -> Result<Row> {
    let p = pair("veth")?;
    Ok(measure(
        "plain veth (limit)",
        &p.a,
        &p.b,
        "192.0.2.2",
        seconds,
        "kernel only, no encryption".into(),
    ))
}

const GW: &str = "02:5c:00:00:00:01";

fn scd_config(vm: &Vm, peer_pub: &str, peer_ip: &str, dpid: u32) -> String {
    format!(
        "datapath_id = {dpid}\n[overlay]\nprefix = \"100.64.0.0/10\"\ngateway_mac = \"{GW}\"\n\
         [metrics]\nlisten = \"127.0.0.1:9464\"\n[flows]\nfile = \"flows\"\n\
         [tunnel]\nprivate_key_file = \"key\"\nlisten = \"51820\"\n{}\
         [[peer]]\nport = 100\nname = \"peer\"\npublic_key = \"{peer_pub}\"\nendpoint = \"{peer_ip}:51820\"\n",
        vm.port_section(1)
    )
}

fn bench_scd(seconds: u32) -> Result<Row> {
    let p = pair("scd")?;
    let (ka, kb) = (KeyPair::generate()?, KeyPair::generate()?);
    let va = Vm::with_tap(
        &unique("bench-scd-vma-"),
        &unique("sbt"),
        "02:00:00:00:01:01",
        "100.64.1.1",
        10,
        1420,
    )?;
    let vb = Vm::with_tap(
        &unique("bench-scd-vmb-"),
        &unique("sbt"),
        "02:00:00:00:02:01",
        "100.64.2.1",
        10,
        1420,
    )?;
    let flows = |local: &str, mac: &str, remote: &str| {
        format!(
            "priority=100,ip,nw_dst={local},actions=set_field:{GW}->eth_src,set_field:{mac}->eth_dst,output:1\n\
             priority=100,ip,nw_dst={remote},actions=output:100\n"
        )
    };
    let _sa = Scd::start_with_key(
        &p.a,
        &scd_config(&va, &kb.public, "192.0.2.2", 1),
        Some(&flows("100.64.1.1", &va.mac, "100.64.2.1")),
        &ka.private,
    )?;
    let _sb = Scd::start_with_key(
        &p.b,
        &scd_config(&vb, &ka.public, "192.0.2.1", 2),
        Some(&flows("100.64.2.1", &vb.mac, "100.64.1.1")),
        &kb.private,
    )?;
    run(va
        .ns
        .command("ping")
        .args(["-c", "1", "-w", "10", "100.64.2.1"]))?;
    Ok(measure(
        "scd (WireGuard, boringtun core)",
        &va.ns,
        &vb.ns,
        "100.64.2.1",
        seconds,
        "VM -> TAP -> scd -> veth -> scd -> TAP -> VM".into(),
    ))
}

/// A userspace WireGuard implementation driven by `wg`: wireguard-go or boringtun-cli.
fn bench_userspace_wg(name: &str, program: &str, args: &[&str], seconds: u32) -> Result<Row> {
    if Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()?
        .status
        .code()
        != Some(0)
    {
        return Ok(Row {
            name: name.into(),
            gbits_1: None,
            gbits_4: None,
            p50_us: None,
            p99_us: None,
            note: format!("`{program}` not installed (scripts/bench.sh installs it)"),
        });
    }
    let p = pair("wg")?;
    let keys = [KeyPair::generate()?, KeyPair::generate()?];
    let mut procs = Vec::new();
    let dir = tempfile::tempdir()?;
    for (i, ns) in [&p.a, &p.b].into_iter().enumerate() {
        let ifname = unique("bwg");
        let mut cmd = ns.command(program);
        cmd.args(args)
            .arg(&ifname)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // boringtun-cli refuses to run as root without this (it would drop privileges).
        cmd.env("WG_SUDO", "1");
        procs.push(Background(cmd.spawn()?));
        let deadline = Instant::now() + Duration::from_secs(10);
        while ns.ip(&["link", "show", &ifname]).is_err() {
            if Instant::now() > deadline {
                bail!("{program} did not create {ifname}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let key = dir.path().join(format!("key{i}"));
        std::fs::write(&key, &keys[i].private)?;
        let other = 1 - i;
        run(ns.command("wg").args([
            "set",
            &ifname,
            "listen-port",
            "51820",
            "private-key",
            key.to_str().context("path")?,
            "peer",
            &keys[other].public,
            "endpoint",
            &format!("192.0.2.{}:51820", other + 1),
            "allowed-ips",
            &format!("100.64.{}.0/24", other + 1),
        ]))?;
        ns.ip(&[
            "addr",
            "add",
            &format!("100.64.{}.1/24", i + 1),
            "dev",
            &ifname,
        ])?;
        ns.ip(&["link", "set", &ifname, "mtu", "1420", "up"])?;
        ns.ip(&[
            "route",
            "replace",
            &format!("100.64.{}.0/24", other + 1),
            "dev",
            &ifname,
        ])?;
    }
    run(p
        .a
        .command("ping")
        .args(["-c", "1", "-w", "10", "100.64.2.1"]))?;
    let row = measure(
        name,
        &p.a,
        &p.b,
        "100.64.2.1",
        seconds,
        format!("{program} {}", args.join(" ")),
    );
    drop(procs);
    Ok(row)
}

fn fmt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |v| format!("{v:.digits$}"))
}

fn tunnel(seconds: u32) -> Result<()> {
    let rows = vec![
        bench_veth(seconds)?,
        bench_scd(seconds)?,
        bench_userspace_wg("wireguard-go (Debian)", "wireguard-go", &["-f"], seconds)?,
        bench_userspace_wg(
            "boringtun-cli",
            "boringtun-cli",
            &["--foreground", "--disable-drop-privileges"],
            seconds,
        )?,
    ];
    let best_peer = rows[2..]
        .iter()
        .filter_map(|r| r.gbits_1)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    let veth = rows[0].gbits_1;
    println!("\n### Tunnel: VM to VM across two hosts (iperf3 {seconds} s, ping 200 x 5 ms)\n");
    println!("| path | 1 stream Gbit/s | 4 streams Gbit/s | x best userspace WG (1 stream) | x veth | RTT p50 µs | RTT p99 µs | notes |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let ratio = |base: Option<f64>| match (r.gbits_1, base) {
            (Some(v), Some(b)) if b > 0.0 => format!("{:.2}", v / b),
            _ => "–".into(),
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            fmt(r.gbits_1, 2),
            fmt(r.gbits_4, 2),
            ratio(best_peer),
            ratio(veth),
            fmt(r.p50_us, 0),
            fmt(r.p99_us, 0),
            r.note
        );
    }
    println!("\nCommand: `bash scripts/bench.sh tunnel` (runs `target/release/bench tunnel --seconds {seconds}`)");
    Ok(())
}

/// 10,000 distinct flows in `ovs-ofctl add-flows` syntax.
fn flows_file(dir: &std::path::Path) -> Result<std::path::PathBuf> {
    let mut text = String::with_capacity(10_000 * 64);
    for i in 0..10_000u32 {
        text += &format!(
            "table=0,priority=100,ip,nw_dst=100.64.{}.{},actions=output:1\n",
            i / 250,
            i % 250 + 1
        );
    }
    let path = dir.join("flows");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Seconds `ovs-ofctl add-flows` takes to push the file to `target` (it sends the
/// flow-mods, then a barrier, and returns when the barrier is answered).
fn time_add_flows(ns: &Netns, target: &str, flows: &std::path::Path) -> Result<f64> {
    let started = Instant::now();
    run(ns.command("ovs-ofctl").args([
        "-O",
        "OpenFlow13",
        "--timeout=120",
        "add-flows",
        target,
        flows.to_str().context("path")?,
    ]))?;
    Ok(started.elapsed().as_secs_f64())
}

/// Flow count reported by `ovs-ofctl dump-aggregate`.
fn flow_count(ns: &Netns, target: &str) -> Result<u64> {
    let out = run(ns
        .command("ovs-ofctl")
        .args(["-O", "OpenFlow13", "dump-aggregate", target]))?;
    out.split("flow_count=")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .with_context(|| format!("no flow_count in {out}"))
}

fn flowmod_scd(flows: &std::path::Path) -> Result<f64> {
    let ns = Netns::new(&unique("bench-fm-scd-"))?;
    let config = format!(
        "datapath_id = 1\n[overlay]\nprefix = \"100.64.0.0/10\"\ngateway_mac = \"{GW}\"\n\
         [metrics]\nlisten = \"127.0.0.1:9464\"\n[openflow]\nlisten = \"ptcp:6653\"\n\
         [[port]]\nnumber = 1\nname = \"{}\"\n",
        unique("bfm")
    );
    let _scd = Scd::start(&ns, &config, None)?;
    let secs = time_add_flows(&ns, "tcp:127.0.0.1:6653", flows)?;
    anyhow::ensure!(
        flow_count(&ns, "tcp:127.0.0.1:6653")? == 10_000,
        "scd does not hold 10,000 flows"
    );
    Ok(secs)
}

/// Open vSwitch with its userspace datapath in a namespace of its own, with its
/// own database and run directories; its processes are ended by PID.
fn flowmod_ovs(flows: &std::path::Path) -> Result<f64> {
    let ns = Netns::new(&unique("bench-fm-ovs-"))?;
    let dir = tempfile::tempdir()?;
    let d = dir.path().to_str().context("path")?.to_string();
    let env = [
        ("OVS_RUNDIR", d.clone()),
        ("OVS_DBDIR", d.clone()),
        ("OVS_LOGDIR", d.clone()),
    ];
    let db = format!("{d}/conf.db");
    run(Command::new("ovsdb-tool").args([
        "create",
        &db,
        "/usr/share/openvswitch/vswitch.ovsschema",
    ]))?;
    let sock = format!("unix:{d}/db.sock");
    let mut server = ns.command("ovsdb-server");
    server
        .args([&db, &format!("--remote=p{sock}"), "--no-chdir"])
        .envs(env.clone())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _db = Background(server.spawn()?);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::path::Path::new(&format!("{d}/db.sock")).exists() {
        anyhow::ensure!(Instant::now() < deadline, "ovsdb-server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let vsctl = |args: &[&str]| {
        run(ns
            .command("ovs-vsctl")
            .arg(format!("--db={sock}"))
            .args(args)
            .envs(env.clone()))
    };
    vsctl(&["--no-wait", "init"])?;
    let mut switchd = ns.command("ovs-vswitchd");
    switchd
        .args([&sock, "--disable-system", "--no-chdir"])
        .envs(env.clone())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _vswitchd = Background(switchd.spawn()?);
    vsctl(&[
        "add-br",
        "br0",
        "--",
        "set",
        "bridge",
        "br0",
        "datapath_type=netdev",
        "protocols=OpenFlow13",
    ])?;
    let mgmt = format!("unix:{d}/br0.mgmt");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::path::Path::new(&format!("{d}/br0.mgmt")).exists() {
        anyhow::ensure!(Instant::now() < deadline, "ovs-vswitchd did not create br0");
        std::thread::sleep(Duration::from_millis(50));
    }
    let secs = time_add_flows(&ns, &mgmt, flows)?;
    anyhow::ensure!(
        flow_count(&ns, &mgmt)? >= 10_000,
        "OVS does not hold 10,000 flows"
    );
    Ok(secs)
}

fn flowmod() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let flows = flows_file(dir.path())?;
    let scd = flowmod_scd(&flows);
    let ovs = flowmod_ovs(&flows);
    println!("\n### Flow-mod rate: 10,000 adds + barrier via `ovs-ofctl add-flows`\n");
    println!("| switch | seconds | flow-mods/s | x Open vSwitch |");
    println!("|---|---|---|---|");
    let rate = |r: &Result<f64>| r.as_ref().ok().map(|s| 10_000.0 / s);
    for (name, r) in [
        ("scd (release)", &scd),
        ("Open vSwitch, netdev datapath", &ovs),
    ] {
        match r {
            Ok(secs) => println!(
                "| {name} | {secs:.3} | {:.0} | {} |",
                10_000.0 / secs,
                match (rate(r), rate(&ovs)) {
                    (Some(a), Some(b)) => format!("{:.2}", a / b),
                    _ => "–".into(),
                }
            ),
            Err(e) => println!("| {name} | – | – | failed: {e:#} |"),
        }
    }
    println!("\nCommand: `bash scripts/bench.sh flowmod`");
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("benchmarks build network namespaces: run as root");
    }
    // The scd of this build sits next to this binary.
    if std::env::var_os("SCD_BIN").is_none() {
        let scd = std::env::current_exe()?.with_file_name("scd");
        anyhow::ensure!(
            scd.exists(),
            "{} not found: build it with `cargo build --release -p dataplane`",
            scd.display()
        );
        std::env::set_var("SCD_BIN", scd);
    }
    match cli.what {
        What::Tunnel => tunnel(cli.seconds)?,
        What::Flowmod => flowmod()?,
        What::All => {
            tunnel(cli.seconds)?;
            flowmod()?;
        }
    }
    Ok(())
}
