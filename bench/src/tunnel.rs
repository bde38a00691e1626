//! `bench tunnel`: VM-to-VM TCP throughput (1 and 4 streams, iperf3) and
//! round-trip latency (ping, p50/p99) across two host namespaces joined by a veth:
//! through `scd`'s WireGuard tunnel, through `wireguard-go`, through `boringtun-cli`
//! (when installed), and over the bare veth (the limit of the machine). Every
//! namespace is the benchmark's own and is removed when it ends.

use crate::common::{
    fmt, installed, measure, pair, ratio, start_scd, Background, Launcher, Pair, Row, GW,
};
use anyhow::{bail, Context, Result};
use netns_tests::{run, unique, KeyPair, Scd, Vm, VmAddress};
use std::process::Stdio;
use std::time::{Duration, Instant};

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

fn scd_config(vm: &Vm, peer_pub: &str, peer_ip: &str, dpid: u32, extra: &str) -> String {
    format!(
        "datapath_id = {dpid}\n[overlay]\nprefix = \"100.64.0.0/10\"\ngateway_mac = \"{GW}\"\n\
         [metrics]\nlisten = \"127.0.0.1:9464\"\n[flows]\nfile = \"flows\"\n\
         [tunnel]\nprivate_key_file = \"key\"\nlisten = \"51820\"\n{}\
         [[peer]]\nport = {TUNNEL_PORT}\nname = \"peer\"\npublic_key = \"{peer_pub}\"\nendpoint = \"{peer_ip}:51820\"\n{extra}",
        vm.port_section(1)
    )
}

/// Two hosts joined by a veth, one VM on each behind its host's `scd`, the two
/// switches joined by a WireGuard tunnel (port 100 on both sides).
#[derive(Debug)]
pub struct ScdTunnel {
    // Field order is drop order: the switches stop before their namespaces go.
    /// The switch of host A (192.0.2.1), serving `va`.
    pub sa: Scd,
    /// The switch of host B (192.0.2.2), serving `vb`.
    pub sb: Scd,
    /// VM 100.64.1.1 on host A, on port 1.
    pub va: Vm,
    /// VM 100.64.2.1 on host B, on port 1.
    pub vb: Vm,
    _hosts: Pair,
}

/// The overlay address of the VM on host A and on host B.
pub const VA_IP: &str = "100.64.1.1";
pub const VB_IP: &str = "100.64.2.1";
/// The OpenFlow port number of the tunnel on both switches.
pub const TUNNEL_PORT: u32 = 100;

/// Builds the two hosts; host A's switch is started by `start_a` (host namespace,
/// config, flows, private key), so a benchmark can run it under a profiler.
pub fn scd_tunnel(start_a: &Launcher<'_>) -> Result<ScdTunnel> {
    scd_tunnel_with(start_a, "", 1)
}

/// [`scd_tunnel`] with `extra` sections appended to both switches' configuration,
/// which gives each `workers` forwarding workers (the VMs' TAPs get as many
/// queues).
pub fn scd_tunnel_with(start_a: &Launcher<'_>, extra: &str, workers: usize) -> Result<ScdTunnel> {
    let p = pair("scd")?;
    let (ka, kb) = (KeyPair::generate()?, KeyPair::generate()?);
    let vm = |name: &str, mac: &str, ip: &str| {
        let addr = VmAddress::overlay(mac, ip);
        Vm::with_tap_queues(&unique(name), &unique("sbt"), addr, 1420, workers > 1)
    };
    let va = vm("bench-scd-vma-", "02:00:00:00:01:01", VA_IP)?;
    let vb = vm("bench-scd-vmb-", "02:00:00:00:02:01", VB_IP)?;
    let flows = |local: &str, mac: &str, remote: &str| {
        format!(
            "priority=100,ip,nw_dst={local},actions=set_field:{GW}->eth_src,set_field:{mac}->eth_dst,output:1\n\
             priority=100,ip,nw_dst={remote},actions=output:{TUNNEL_PORT}\n"
        )
    };
    let sa = start_a(
        &p.a,
        &scd_config(&va, &kb.public, "192.0.2.2", 1, extra),
        Some(&flows(VA_IP, &va.mac, VB_IP)),
        Some(&ka.private),
    )?;
    let sb = Scd::start_with_key(
        &p.b,
        &scd_config(&vb, &ka.public, "192.0.2.1", 2, extra),
        Some(&flows(VB_IP, &vb.mac, VA_IP)),
        &kb.private,
    )?;
    run(va.ns.command("ping").args(["-c", "1", "-w", "10", VB_IP]))?;
    Ok(ScdTunnel {
        sa,
        sb,
        va,
        vb,
        _hosts: p,
    })
}

/// `[scheduling]` of a `scd` with `workers` forwarding workers.
pub fn workers_section(workers: usize) -> String {
    format!("[scheduling]\nworkers = {workers}\n")
}

fn bench_scd(seconds: u32, workers: usize) -> Result<Row> {
    let t = scd_tunnel_with(&start_scd, &workers_section(workers), workers)?;
    let name = if workers == 1 {
        "scd (WireGuard, boringtun core)".to_string()
    } else {
        format!("scd (WireGuard, boringtun core), workers = {workers}")
    };
    Ok(measure(
        &name,
        &t.va.ns,
        &t.vb.ns,
        VB_IP,
        seconds,
        "VM -> TAP -> scd -> veth -> scd -> TAP -> VM".into(),
    ))
}

/// A userspace WireGuard implementation driven by `wg`: wireguard-go or boringtun-cli.
fn bench_userspace_wg(name: &str, program: &str, args: &[&str], seconds: u32) -> Result<Row> {
    if !installed(program) {
        return Ok(Row::failed(
            name,
            format!("`{program}` not installed (scripts/bench.sh installs it)"),
        ));
    }
    with_userspace_wg(program, args, |a, b, _| {
        measure(
            name,
            a,
            b,
            "100.64.2.1",
            seconds,
            format!("{program} {}", args.join(" ")),
        )
    })
}

/// Runs `f` with two hosts joined by `program` (a userspace WireGuard driven by
/// `wg`; 100.64.1.1 on the first, 100.64.2.1 on the second, a first ping
/// through) and the two processes' ids.
pub fn with_userspace_wg<R>(
    program: &str,
    args: &[&str],
    f: impl FnOnce(&netns_tests::Netns, &netns_tests::Netns, &[u32]) -> R,
) -> Result<R> {
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
    let pids: Vec<u32> = procs.iter().map(|b| b.0.id()).collect();
    let out = f(&p.a, &p.b, &pids);
    drop(procs);
    Ok(out)
}

/// Measures every path and prints the table; returns the rows for the chart.
/// The tunnel rows: veth, `scd` once per count of `workers`, the userspace
/// WireGuards.
pub fn tunnel(seconds: u32, workers: &[usize]) -> Result<Vec<Row>> {
    let mut rows = vec![bench_veth(seconds)?];
    for n in workers {
        rows.push(bench_scd(seconds, *n)?);
    }
    let peers = rows.len();
    rows.push(bench_userspace_wg(
        "wireguard-go (Debian)",
        "wireguard-go",
        &["-f"],
        seconds,
    )?);
    rows.push(bench_userspace_wg(
        "boringtun-cli",
        "boringtun-cli",
        &["--foreground", "--disable-drop-privileges"],
        seconds,
    )?);
    let best_peer = rows[peers..]
        .iter()
        .filter_map(|r| r.gbits_1)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    let veth = rows[0].gbits_1;
    println!("\n### Tunnel: VM to VM across two hosts (iperf3 {seconds} s, ping 200 x 5 ms)\n");
    println!("| path | 1 stream Gbit/s | 4 streams Gbit/s | x best userspace WG (1 stream) | x veth | RTT p50 µs | RTT p99 µs | notes |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            fmt(r.gbits_1, 2),
            fmt(r.gbits_4, 2),
            ratio(r.gbits_1, best_peer),
            ratio(r.gbits_1, veth),
            fmt(r.p50_us, 0),
            fmt(r.p99_us, 0),
            r.note
        );
    }
    println!("\nCommand: `bash scripts/bench.sh tunnel` (runs `target/release/bench tunnel --seconds {seconds}`)");
    Ok(rows)
}
