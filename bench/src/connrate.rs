//! `bench connrate`: new TCP connections per second through one switch, `scd`
//! against Open vSwitch (userspace netdev datapath) with the same flows, in the
//! same run. N client/server pairs of namespace VMs sit on one switch; the flows
//! are L3 routes shaped like the controller's (a /32 per VM, ARP by target
//! address, and filler /32 routes to other hosts so the tables have a realistic
//! size), loaded with `ovs-ofctl add-flows` into both. Each client connects to
//! its server and closes at once (with a reset, so no TIME_WAIT exhausts the
//! ports), as fast as it can, for a fixed time: every connection is a new
//! 5-tuple, which an exact-match cache misses and `scd`'s megaflow cache hits.
//! Reports connects/s, the ratio to Open vSwitch, and `scd`'s megaflow hit rate.

use crate::common::{fmt, ratio, start_scd};
use crate::flowmod::{time_add_flows, write_flows_from, SCD_TARGET};
use crate::ovs::Ovs;
use crate::switching::ovs_tap_vm;
use anyhow::{Context, Result};
use netns_tests::{run, unique, Netns, Vm, VmAddress};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Filler routes (to hosts that are not here), below the VMs' priority.
const FILLER_ROUTES: u32 = 10_000;
const FILLER_BASE: Ipv4Addr = Ipv4Addr::new(100, 96, 0, 0);
const SERVER_PORT: u16 = 8080;

/// Pair `i`'s client and server: (OpenFlow port, MAC, address).
fn client(i: usize) -> (u32, String, String) {
    let port = u32::try_from(2 * i + 1).unwrap_or(u32::MAX);
    (
        port,
        format!("02:00:00:00:02:{i:02x}"),
        format!("100.64.1.{}", 10 + i),
    )
}

fn server(i: usize) -> (u32, String, String) {
    let port = u32::try_from(2 * i + 2).unwrap_or(u32::MAX);
    (
        port,
        format!("02:00:00:00:03:{i:02x}"),
        format!("100.64.1.{}", 130 + i),
    )
}

fn endpoints(pairs: usize) -> Vec<(u32, String, String)> {
    (0..pairs).flat_map(|i| [client(i), server(i)]).collect()
}

/// The flows both switches get: filler routes, then each VM's /32 and ARP.
fn write_flows(path: &Path, pairs: usize) -> Result<()> {
    write_flows_from(path, 0..FILLER_ROUTES, FILLER_BASE, 50)?;
    let mut file = std::fs::OpenOptions::new().append(true).open(path)?;
    for (port, _, ip) in endpoints(pairs) {
        writeln!(
            file,
            "table=0,priority=100,ip,nw_dst={ip},actions=output:{port}"
        )?;
        writeln!(
            file,
            "table=0,priority=100,arp,arp_tpa={ip},actions=output:{port}"
        )?;
    }
    Ok(())
}

fn address<'a>(mac: &'a str, ip: &'a str) -> VmAddress<'a> {
    VmAddress {
        mac,
        ip,
        prefix_len: 24,
    }
}

/// Closes with a reset: the client's port is free again at once.
fn close_at_once(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a valid `linger` of the size passed.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::from_ref(&linger).cast(),
            libc::socklen_t::try_from(std::mem::size_of::<libc::linger>()).unwrap_or(0),
        )
    };
}

/// Accepts and drops connections until `stop`.
fn serve(listener: &TcpListener, stop: &AtomicBool) -> Result<()> {
    listener.set_nonblocking(true)?;
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Connects and closes until `until`; returns (connects, failures).
fn connect_loop(to: SocketAddr, until: Instant) -> (u64, u64) {
    let (mut ok, mut failed) = (0, 0);
    while Instant::now() < until {
        match TcpStream::connect_timeout(&to, Duration::from_secs(1)) {
            Ok(stream) => {
                close_at_once(&stream);
                ok += 1;
            }
            Err(_) => failed += 1,
        }
    }
    (ok, failed)
}

/// What one switch did.
#[derive(Debug, Default, Clone, Copy)]
struct Rate {
    connects: u64,
    failed: u64,
    per_second: f64,
    /// `scd`'s megaflow hits and misses during the run.
    cache: Option<(u64, u64)>,
}

/// Runs the connect loops between the pairs' VMs (clients and servers in the
/// same order as [`endpoints`]) for `seconds`.
fn connect_between(vms: &[Vm], seconds: u32) -> Result<Rate> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut servers = Vec::new();
    for (i, pair) in vms.chunks(2).enumerate() {
        let ip: Ipv4Addr = server(i).2.parse()?;
        let listener = pair[1]
            .ns
            .enter(move || TcpListener::bind((ip, SERVER_PORT)))??;
        let stop = stop.clone();
        servers.push(std::thread::spawn(move || serve(&listener, &stop)));
    }
    let until = Instant::now() + Duration::from_secs(u64::from(seconds));
    let started = Instant::now();
    let clients: Vec<_> = vms
        .chunks(2)
        .enumerate()
        .map(|(i, pair)| {
            let to = SocketAddr::from((
                server(i)
                    .2
                    .parse::<Ipv4Addr>()
                    .unwrap_or(Ipv4Addr::UNSPECIFIED),
                SERVER_PORT,
            ));
            pair[0].ns.spawn(move || connect_loop(to, until))
        })
        .collect();
    let mut rate = Rate::default();
    for c in clients {
        let (ok, failed) = c.join().map_err(|_| anyhow::anyhow!("client panicked"))??;
        rate.connects += ok;
        rate.failed += failed;
    }
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for s in servers {
        s.join().map_err(|_| anyhow::anyhow!("server panicked"))??;
    }
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    {
        rate.per_second = rate.connects as f64 / elapsed;
    }
    Ok(rate)
}

/// A first ping from every client to its server, so ARP is settled and the
/// flows are proven before the clock starts.
fn check_reach(vms: &[Vm]) -> Result<()> {
    for (i, pair) in vms.chunks(2).enumerate() {
        run(pair[0]
            .ns
            .command("ping")
            .args(["-c", "1", "-w", "10", &server(i).2]))
        .with_context(|| format!("pair {i}: no ping"))?;
    }
    Ok(())
}

/// The value of counter family `name` in an OpenMetrics text.
fn counter(text: &str, name: &str) -> Option<u64> {
    let total = format!("{name}_total");
    text.lines()
        .find(|l| l.starts_with(&total))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
}

fn cache_counters(text: &str) -> Option<(u64, u64)> {
    Some((
        counter(text, "scd_cache_hits")?,
        counter(text, "scd_cache_misses")?,
    ))
}

fn scd_rate(pairs: usize, flows: &Path, seconds: u32) -> Result<Rate> {
    let host = Netns::new(&unique("bench-cr-scd-"))?;
    let mut vms = Vec::new();
    let mut ports = String::new();
    for (port, mac, ip) in endpoints(pairs) {
        let vm = Vm::with_tap(
            &unique("bench-cr-vm-"),
            &unique("bcr"),
            address(&mac, &ip),
            1500,
        )?;
        ports += &vm.port_section(port);
        vms.push(vm);
    }
    let config = format!(
        "datapath_id = 1\n[overlay]\nprefix = \"100.64.0.0/10\"\ngateway_mac = \"{}\"\n\
         arp_responder = false\n[metrics]\nlisten = \"127.0.0.1:9464\"\n\
         [openflow]\nlisten = \"ptcp:6653\"\n{ports}",
        crate::common::GW
    );
    let scd = start_scd(&host, &config, None, None)?;
    time_add_flows(&host, SCD_TARGET, flows)?;
    check_reach(&vms)?;
    let before = cache_counters(&scd.metrics_text()?).context("no cache counters")?;
    let mut rate = connect_between(&vms, seconds)?;
    let after = cache_counters(&scd.metrics_text()?).context("no cache counters")?;
    rate.cache = Some((after.0 - before.0, after.1 - before.1));
    drop(scd);
    Ok(rate)
}

fn ovs_rate(pairs: usize, flows: &Path, seconds: u32) -> Result<Rate> {
    let host = Netns::new(&unique("bench-cr-ovs-"))?;
    let ovs = Ovs::start(&host, &[])?;
    let mut vms = Vec::new();
    for (port, mac, ip) in endpoints(pairs) {
        vms.push(ovs_tap_vm(&ovs, &host, port, address(&mac, &ip))?);
    }
    let target = ovs.target();
    run(host
        .command("ovs-ofctl")
        .args(["-O", "OpenFlow13", "del-flows", &target]))?;
    time_add_flows(&host, &target, flows)?;
    check_reach(&vms).with_context(|| ovs.log_tail())?;
    connect_between(&vms, seconds)
}

/// Alternates the two switches `reps` times and prints each run and the medians.
pub fn connrate(pairs: usize, seconds: u32, reps: usize) -> Result<()> {
    anyhow::ensure!((1..=100).contains(&pairs), "--pairs is 1 to 100");
    let dir = tempfile::tempdir()?;
    let flows = dir.path().join("flows");
    write_flows(&flows, pairs)?;
    let n_flows = FILLER_ROUTES as usize + 2 * 2 * pairs;
    println!("\n### New TCP connections per second: {pairs} client/server pairs on one switch, {n_flows} flows, {seconds} s per run\n");
    println!("| run | switch | connects | failed | connects/s | x Open vSwitch | megaflow hits | misses | hit rate |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for rep in 1..=reps.max(1) {
        let scd = scd_rate(pairs, &flows, seconds);
        let ovs = ovs_rate(pairs, &flows, seconds);
        for (name, rate) in [("scd", &scd), ("Open vSwitch userspace", &ovs)] {
            let rate = match rate {
                Ok(r) => r,
                Err(e) => {
                    println!("| {rep} | {name} | – | – | – | – | – | – | failed: {e:#} |");
                    continue;
                }
            };
            let vs = ratio(
                Some(rate.per_second),
                ovs.as_ref().ok().map(|o| o.per_second),
            );
            let (hits, misses, hit_rate) = match rate.cache {
                #[allow(clippy::cast_precision_loss)] // counts far below 2^52
                Some((h, m)) if h + m > 0 => (
                    h.to_string(),
                    m.to_string(),
                    format!("{:.2} %", 100.0 * h as f64 / (h + m) as f64),
                ),
                _ => ("–".into(), "–".into(), "–".into()),
            };
            println!(
                "| {rep} | {name} | {} | {} | {} | {vs} | {hits} | {misses} | {hit_rate} |",
                rate.connects,
                rate.failed,
                fmt(Some(rate.per_second), 0)
            );
        }
        ours.extend(scd.ok().map(|r| r.per_second));
        theirs.extend(ovs.ok().map(|r| r.per_second));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    let (a, b) = (median(&mut ours), median(&mut theirs));
    println!(
        "\nMedians: scd {} connects/s, Open vSwitch {} connects/s, ratio {}.",
        fmt(a, 0),
        fmt(b, 0),
        ratio(a, b)
    );
    println!("\nCommand: `bench connrate --pairs {pairs} --seconds {seconds} --reps {reps}`");
    Ok(())
}
