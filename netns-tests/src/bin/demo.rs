//! The main job: a supercloud on this one machine. Three "clouds" joined by an
//! emulated internet (one 20 ms further away), a controller, one `scd` per host, a
//! client VM in cloud 1 and a server VM `web1` that follows its users around the
//! clouds by live migration while the client streams to it over TCP. It prints,
//! as it goes, where each VM is, the stream's throughput and each migration's gap,
//! and removes everything it made on exit, also on Ctrl-C.

use anyhow::{bail, Context, Result};
use netns_tests::cloud::{self, VmEntry};
use netns_tests::{fill_pseudo_random, unique, Fnv, Internet, KeyPair, Scd, Vm};
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WEB_IP: &str = "100.64.2.1";
const WEB_MAC: &str = "02:00:00:00:02:01";
const CLOUDS: [&str; 3] = [
    "cloud-1 (us-east)",
    "cloud-2 (europe)",
    "cloud-3 (asia, +20 ms)",
];

fn stopped(flag: &AtomicBool) -> Result<()> {
    if flag.load(Ordering::Relaxed) {
        bail!("interrupted");
    }
    Ok(())
}

struct Clock(Instant);

impl Clock {
    fn say(&self, text: impl std::fmt::Display) {
        println!("[{:6.1} s] {text}", self.0.elapsed().as_secs_f64());
    }
}

fn main() {
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, interrupted.clone()) {
            eprintln!("demo: cannot handle signal {sig}: {e}");
        }
    }
    let result = run(&interrupted);
    // Every namespace, process and file was owned by `run` and is gone by now.
    match result {
        Ok(()) => println!("\ndemo: done; everything it created is removed"),
        Err(e) if interrupted.load(Ordering::Relaxed) => {
            println!("\ndemo: stopped by signal at: {e:#}; everything it created is removed")
        }
        Err(e) => {
            eprintln!("\ndemo: failed: {e:#}\n(everything it created is removed)");
            std::process::exit(1);
        }
    }
}

fn run(interrupted: &Arc<AtomicBool>) -> Result<()> {
    let clock = Clock(Instant::now());
    println!("Supercloud demo: one private cloud over three clouds, on this machine.\n");
    let dir = tempfile::Builder::new()
        .prefix("supercloud-demo")
        .tempdir()?;
    let mut net = Internet::new("demo")?;
    for (i, name) in CLOUDS.iter().enumerate() {
        net.add_host("demo", (i == 2).then_some(20))?;
        clock.say(format_args!(
            "{}: host{i}, tunnel endpoint {}:51820",
            name,
            Internet::host_addr(i)
        ));
    }
    let keys = (0..3)
        .map(|_| KeyPair::generate())
        .collect::<Result<Vec<_>>>()?;
    // The client stays in cloud 1; web1 has a TAP on every host so it can move.
    let client = Vm::with_tap(
        &unique("demo-client-"),
        &unique("sct"),
        "02:00:00:00:01:01",
        "100.64.1.1",
        10,
        1420,
    )?;
    let web = Vm::with_tap(
        &unique("demo-web1-"),
        &unique("sct"),
        WEB_MAC,
        WEB_IP,
        10,
        1420,
    )?;
    let mut taps = [String::new(), web.ifname.clone(), String::new()];
    for i in [0, 2] {
        taps[i] = unique("sct");
        web.ns
            .ip(&["tuntap", "add", "dev", &taps[i], "mode", "tap"])?;
        web.ns
            .ip(&["link", "set", &taps[i], "address", WEB_MAC, "mtu", "1420"])?;
    }
    let web_ports = [2u32, 1, 2];
    let entries = [
        VmEntry {
            name: "client",
            host: 0,
            port: 1,
            ip: "100.64.1.1",
            mac: "02:00:00:00:01:01",
            tenant: "demo",
            vm: &client,
        },
        VmEntry {
            name: "web1",
            host: 1,
            port: 1,
            ip: WEB_IP,
            mac: WEB_MAC,
            tenant: "demo",
            vm: &web,
        },
    ];
    let inventory = dir.path().join("inventory.toml");
    std::fs::write(&inventory, cloud::inventory(&keys, &entries))?;
    let _scc = cloud::start_scc(&net, dir.path(), true)?;
    clock.say(format_args!(
        "controller scc up at {} (store {})",
        cloud::CONTROLLER,
        dir.path().join("state.json").display()
    ));
    let mut scds = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let mut config = cloud::host_config(&net, &inventory, i)?;
        if i != 1 {
            // A port ready for web1 on every host it may move to.
            config += &format!(
                "[[port]]\nnumber = {}\nname = \"{}\"\nnetns = \"{}\"\ncreate = false\n",
                web_ports[i],
                taps[i],
                web.ns.name()
            );
        }
        scds.push(Scd::start_with_key(
            &net.hosts[i],
            &config,
            None,
            &key.private,
        )?);
    }
    let s = cloud::wait_synced(&net)?;
    let flows: Vec<String> = s["hosts"]
        .as_array()
        .context("hosts")?
        .iter()
        .map(|h| h["switch"]["flows"].to_string())
        .collect();
    clock.say(format_args!(
        "scd on every host, programmed by scc alone (flows per switch: {})",
        flows.join("/")
    ));
    stopped(interrupted)?;
    if !cloud::reaches(&client, WEB_IP, 10)? {
        bail!("client cannot reach web1");
    }
    clock.say("client (cloud-1) reaches web1 (cloud-2) over the direct WireGuard tunnel");

    // The stream: the client sends 32 KiB every 5 ms (about 50 Mbit/s) to web1.
    let web_ip: IpAddr = WEB_IP.parse()?;
    let listener = web.ns.enter(move || TcpListener::bind((web_ip, 8080)))??;
    let received = Arc::new(AtomicU64::new(0));
    let gap_us = Arc::new(AtomicU64::new(0));
    let (rx_count, rx_gap) = (received.clone(), gap_us.clone());
    let server = web.ns.spawn(move || -> Result<u64> {
        let (mut s, _) = listener.accept()?;
        let (mut hash, mut buf, mut last) = (Fnv::default(), vec![0u8; 65536], Instant::now());
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Ok(hash.value());
            }
            let gap = u64::try_from(last.elapsed().as_micros()).unwrap_or(u64::MAX);
            rx_gap.fetch_max(gap, Ordering::Relaxed);
            last = Instant::now();
            hash.update(&buf[..n]);
            rx_count.fetch_add(n as u64, Ordering::Relaxed);
        }
    });
    let sending = Arc::new(AtomicBool::new(true));
    let keep = sending.clone();
    let sender = client.ns.spawn(move || -> Result<u64> {
        let mut s = TcpStream::connect((web_ip, 8080))?;
        let (mut state, mut hash, mut chunk) = (1u64, Fnv::default(), vec![0u8; 32 * 1024]);
        while keep.load(Ordering::Relaxed) {
            fill_pseudo_random(&mut state, &mut chunk);
            s.write_all(&chunk)?;
            hash.update(&chunk);
            std::thread::sleep(Duration::from_millis(5));
        }
        s.shutdown(std::net::Shutdown::Write)?;
        Ok(hash.value())
    });
    clock.say("client -> web1: TCP stream started");

    let progress = |where_: usize, secs: u64| -> Result<()> {
        for _ in 0..secs {
            let before = received.load(Ordering::Relaxed);
            std::thread::sleep(Duration::from_secs(1));
            stopped(interrupted)?;
            let now = received.load(Ordering::Relaxed);
            clock.say(format_args!(
                "web1 @ host{where_} {:<24} stream {:6.1} Mbit/s, {:7.1} MiB so far",
                CLOUDS[where_],
                (now - before) as f64 * 8.0 / 1e6,
                now as f64 / 1048576.0
            ));
        }
        Ok(())
    };
    progress(1, 3)?;
    let mut at = 1usize;
    // Follow the sun: asia, then us-east, then back to europe.
    for to in [2usize, 0, 1] {
        gap_us.store(0, Ordering::Relaxed);
        let (ok, text) = cloud::scc(
            &net,
            &[
                "migrate",
                "web1",
                "--to",
                &format!("host{to}"),
                "--port",
                &web_ports[to].to_string(),
            ],
        )?;
        if !ok {
            bail!("scc migrate: {text}");
        }
        cloud::wait_event(
            &net,
            "destination ready",
            Duration::from_secs(20),
            interrupted,
        )?;
        // The VM pauses, moves, and resumes on the destination host's TAP.
        web.ns
            .ip(&["addr", "del", &format!("{WEB_IP}/10"), "dev", &taps[at]])?;
        web.ns.ip(&["link", "set", &taps[at], "down"])?;
        web.ns
            .ip(&["addr", "add", &format!("{WEB_IP}/10"), "dev", &taps[to]])?;
        web.ns.ip(&["link", "set", &taps[to], "up"])?;
        let tap = taps[to].clone();
        web.ns
            .enter(move || cloud::announce_rarp(&tap, [2, 0, 0, 0, 2, 1]))??;
        let s = cloud::wait_event(&net, "rerouted", Duration::from_secs(20), interrupted)?;
        let reroute = cloud::event_ms(&s, "rerouted")
            .zip(cloud::event_ms(&s, "arrived"))
            .map(|(r, a)| r - a)
            .unwrap_or(f64::NAN);
        // The old host forwards stragglers for the grace period, then the controller
        // counts what it forwarded and what it could not deliver.
        let s = cloud::wait_event(
            &net,
            "old host drained",
            Duration::from_secs(20),
            interrupted,
        )?;
        let count = |k: &str| {
            s["timeline"][k]
                .as_u64()
                .map_or_else(|| "?".to_string(), |n| n.to_string())
        };
        clock.say(format_args!(
            "migrated web1: host{at} -> host{to} ({}); network rerouted in {reroute:.0} ms after web1 announced itself; stream gap {:.0} ms; old host forwarded {} packets, lost {}",
            CLOUDS[to],
            gap_us.load(Ordering::Relaxed) as f64 / 1000.0,
            count("forwarded_by_old_host"),
            count("lost_at_old_host"),
        ));
        at = to;
        progress(at, 3)?;
    }
    sending.store(false, Ordering::Relaxed);
    let sent = sender
        .join()
        .map_err(|_| anyhow::anyhow!("sender panicked"))???;
    let got = server
        .join()
        .map_err(|_| anyhow::anyhow!("server panicked"))???;
    clock.say(format_args!(
        "stream closed: {:.1} MiB, {}",
        received.load(Ordering::Relaxed) as f64 / 1048576.0,
        if sent == got {
            "every byte intact through three migrations"
        } else {
            "CORRUPTED"
        }
    ));
    if sent != got {
        bail!("the stream was corrupted");
    }
    drop(scds);
    Ok(())
}
