//! The main job: a supercloud on this one machine. Three "clouds" joined by an
//! emulated internet (15 and 40 ms apart), a controller, one `scd` per host, users
//! in every cloud and a server VM `web1` that follows its users around the clouds
//! by live migration, decided by the controller's placement engine from what the
//! switches measure, while a client in cloud 1 keeps one TCP stream to it open. It
//! prints the web console's address (a loopback port of this machine relayed to
//! `scc`'s API), then, as it goes, where web1 is, the stream's throughput, each decision and
//! each migration's gap, and removes everything it made on exit, also on Ctrl-C.

use anyhow::{bail, Context, Result};
use netns_tests::cloud::{self, VmSpec};
use netns_tests::{fill_pseudo_random, Fnv, Internet};
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WEB_IP: &str = "100.64.2.1";
const WEB_MAC: &str = "02:00:00:00:02:01";
const CLOUDS: [&str; 3] = [
    "cloud-1 (us-east)",
    "cloud-2 (europe, +15 ms)",
    "cloud-3 (asia, +40 ms)",
];
/// Extra one-way delay on each host's link to the internet's router.
const DELAY_MS: [Option<u32>; 3] = [None, Some(15), Some(40)];
/// The users of each cloud, on port 1 of that cloud's host.
const USERS: [VmSpec; 3] = [
    VmSpec::new("users-us", 0, 1, "100.64.1.1", "02:00:00:00:01:01").in_tenant("demo"),
    VmSpec::new("users-eu", 1, 1, "100.64.3.1", "02:00:00:00:03:01").in_tenant("demo"),
    VmSpec::new("users-asia", 2, 1, "100.64.4.1", "02:00:00:00:04:01").in_tenant("demo"),
];
/// Its port on every host (users have port 1).
const WEB_PORT: u32 = 2;
/// web1, which the controller moves; it starts on host0.
const WEB: VmSpec = VmSpec::new("web1", 0, WEB_PORT, WEB_IP, WEB_MAC).in_tenant("demo");
/// The engine on a demo's time scale: seconds instead of hours (and a day's
/// migration budget that a day compressed into half a minute does not exhaust).
const PLACEMENT: &str =
    "\n[placement]\nsample_every_s = 1\nplan_every_s = 2\nmigrate = [\"MOVE\"]\n\
    [placement.engine]\ntraffic_half_life_s = 3.0\nseasonal_period_s = 0.0\nhorizon_s = 600.0\n\
    min_dwell_s = 8.0\nlatency_window_s = 600.0\nmin_traffic_bytes_per_s = 50000.0\n\
    default_bandwidth_bytes_per_s = 1.0e9\nmax_migrations_per_day = 100\n\
    max_fleet_migrations_per_vm_day = 100.0\n";

/// Where scc's API listens on TCP (the router's address in cloud 1), for the
/// web console; and the loopback port of this machine that relays to it.
const CONSOLE_API: &str = "192.0.2.1:6680";
const CONSOLE_LOCAL: &str = "127.0.0.1:8680";

/// 16 random bytes as hex: the API token of this run.
fn fresh_token() -> Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Relays [`CONSOLE_LOCAL`] (this machine's loopback only) to the API in the
/// router's namespace, so a browser on this machine reaches the console; nothing
/// else routes into the namespaces. Returns the local address. The relay ends
/// with the demo's process.
fn relay_console(net: &Internet) -> Result<String> {
    let listener = TcpListener::bind(CONSOLE_LOCAL)?;
    // The listener stays in this namespace; the thread's connections are made
    // in the router's.
    drop(net.router.spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(api) = TcpStream::connect(CONSOLE_API) else {
                continue;
            };
            for (mut from, mut to) in [(client.try_clone(), api.try_clone()), (Ok(api), Ok(client))]
                .into_iter()
                .filter_map(|(a, b)| Some((a.ok()?, b.ok()?)))
            {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    }));
    Ok(CONSOLE_LOCAL.to_string())
}

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
        net.add_host("demo", DELAY_MS[i])?;
        clock.say(format_args!(
            "{}: host{i}, tunnel endpoint {}:51820",
            name,
            Internet::host_addr(i)
        ));
    }
    let keys = cloud::key_pairs(3)?;
    // Users in every cloud (the ones in cloud 1 also hold the TCP stream); web1
    // has a TAP on every host so it can move.
    let users = cloud::create_vms("demo", &USERS)?;
    let web = WEB.create("demo")?;
    let taps = [
        web.ifname.clone(),
        cloud::second_tap(&web, cloud::VM_MTU)?,
        cloud::second_tap(&web, cloud::VM_MTU)?,
    ];
    let mut entries = cloud::entries(&USERS, &users);
    entries.push(WEB.entry(&web));
    // The controller moves web1 with this command: `scc migrate`, then the VM
    // resumes on the destination's TAP and announces itself, as QEMU would.
    let landing: Vec<(String, u32, String)> = (0..3)
        .map(|i| (format!("host{i}"), WEB_PORT, taps[i].clone()))
        .collect();
    let nsvm = std::env::current_exe()?
        .parent()
        .context("demo's directory")?
        .join("nsvm");
    let mover = cloud::move_command(dir.path(), "web1", &web, &landing, &nsvm)?;
    // Users stay where they are; web1 may go anywhere.
    let pins: Vec<(&str, String)> = USERS
        .iter()
        .map(|user| {
            (
                user.name,
                format!("[vm.placement]\nclouds = [\"cloud-{}\"]\n", user.host + 1),
            )
        })
        .chain([("web1", "[vm.placement]\nram_mib = 64\n".to_string())])
        .collect();
    let pins: Vec<(&str, &str)> = pins.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let inventory = dir.path().join("inventory.toml");
    let placement = PLACEMENT.replace("MOVE", &mover.display().to_string());
    // The API on TCP too, behind a fresh token, for the web console.
    let token = fresh_token()?;
    let controller = cloud::api_on_tcp(dir.path(), CONSOLE_API, &token)? + &placement;
    std::fs::write(
        &inventory,
        cloud::inventory_with(&keys, &entries, &controller, &[], &pins),
    )?;
    let _scc = cloud::start_scc(&net, dir.path(), true)?;
    clock.say(format_args!(
        "controller scc up at {} (store {}, API unix:{}); OpenFlow over mutual TLS, certificates from `scc pki` in {}",
        cloud::CONTROLLER,
        dir.path().join("state.json").display(),
        cloud::api_socket(&net.router).display(),
        dir.path().join(netns_tests::pki::DIR).display()
    ));
    match relay_console(&net) {
        Ok(local) => clock.say(format_args!(
            "web console: http://{local}/console, sign in with the token {token} (scc's API, relayed from this machine's loopback into the namespaces)"
        )),
        Err(e) => clock.say(format_args!(
            "web console: http://{CONSOLE_API}/console inside namespace {}, sign in with the token {token} (no loopback relay: {e:#})",
            net.router.name()
        )),
    }
    // A port ready for web1 on every host it may move to.
    let scds = cloud::start_switches(&net, &inventory, &keys, |i| match i {
        0 => String::new(),
        _ => web.tap_port_section(WEB_PORT, &taps[i]),
    })?;
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
    // Every pair of hosts shakes hands: the switches learn every latency.
    for (u, spec) in users.iter().zip(USERS) {
        if !cloud::reaches(u, WEB_IP, 10)? {
            bail!("{} cannot reach web1", spec.name);
        }
    }
    if !cloud::reaches(&users[0], USERS[2].ip, 10)? {
        bail!("users-us cannot reach users-asia");
    }
    clock.say("users in every cloud reach web1 (cloud-1) over the direct WireGuard tunnels");

    // The stream: the client in cloud 1 sends 2 KiB every 5 ms (about 3 Mbit/s)
    // to web1, on one TCP connection, for the whole demo.
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
    let sender = users[0].ns.spawn(move || -> Result<u64> {
        let mut s = TcpStream::connect((web_ip, 8080))?;
        let (mut state, mut hash, mut chunk) = (1u64, Fnv::default(), vec![0u8; 2 * 1024]);
        while keep.load(Ordering::Relaxed) {
            fill_pseudo_random(&mut state, &mut chunk);
            s.write_all(&chunk)?;
            hash.update(&chunk);
            std::thread::sleep(Duration::from_millis(5));
        }
        s.shutdown(std::net::Shutdown::Write)?;
        Ok(hash.value())
    });
    clock.say("client (cloud-1) -> web1: TCP stream started");
    // What the users send is taken in by web1 (read by nobody, so nothing answers).
    let _sink = web.ns.enter(move || UdpSocket::bind((web_ip, 9)))??;

    let where_is_web1 = || -> Result<usize> {
        let s = cloud::status(&net)?;
        let host = cloud::vm_host(&s, "web1").context("web1 in scc status")?;
        host.strip_prefix("host")
            .and_then(|i| i.parse().ok())
            .with_context(|| format!("host {host}"))
    };
    let progress = |secs: u64| -> Result<usize> {
        let mut at = where_is_web1()?;
        for _ in 0..secs {
            let before = received.load(Ordering::Relaxed);
            std::thread::sleep(Duration::from_secs(1));
            stopped(interrupted)?;
            let now = received.load(Ordering::Relaxed);
            at = where_is_web1()?;
            clock.say(format_args!(
                "web1 @ host{at} {:<26} stream {:6.1} Mbit/s, {:7.1} MiB so far",
                CLOUDS[at],
                (now - before) as f64 * 8.0 / 1e6,
                now as f64 / 1048576.0
            ));
        }
        Ok(at)
    };
    progress(3)?;
    // Follow the sun: the users of one cloud after the other are awake and send
    // about 2.4 MB/s to web1; the controller sees it in its switches' counters and
    // moves web1 to them, through the migration procedure.
    let mut migrations = 0;
    for (region, hour) in [
        (2usize, "09:00 in Tokyo"),
        (1, "09:00 in Frankfurt"),
        (0, "09:00 in New York"),
    ] {
        clock.say(format_args!(
            "{hour}: the users of {} wake up",
            CLOUDS[region]
        ));
        let from = where_is_web1()?;
        gap_us.store(0, Ordering::Relaxed);
        // The users of that cloud, awake: 1000-byte datagrams to web1, 2.4 MB/s.
        let load = cloud::UdpLoad::start(
            &users[region],
            USERS[region].ip.parse()?,
            (web_ip, 9).into(),
            24,
        );
        let mut at = from;
        let start = Instant::now();
        while at == from && start.elapsed() < Duration::from_secs(60) {
            at = progress(1)?;
        }
        if at == from {
            let (_, plan) = cloud::scc(&net, &["placement", "plan"])?;
            bail!(
                "web1 did not follow its users to {} within 60 s:\n{plan}",
                CLOUDS[region]
            );
        }
        migrations += 1;
        let decision = cloud::scc(&net, &["placement", "moves"])?.1;
        let decision: serde_json::Value = serde_json::from_str(&decision).unwrap_or_default();
        let d = &decision["history"][0]["decision"];
        let d = if d.is_null() {
            &decision["moving"]["decision"]
        } else {
            d
        };
        clock.say(format_args!(
            "the controller decided: web1 {} -> {}, expected latency {:.0} -> {:.0} ms for its users",
            d["now"].as_str().unwrap_or("?"),
            d["best"].as_str().unwrap_or("?"),
            d["latency_now_ms"].as_f64().unwrap_or(f64::NAN),
            d["latency_best_ms"].as_f64().unwrap_or(f64::NAN),
        ));
        // The old host forwards stragglers for the grace period, then the controller
        // counts what it forwarded and what it could not deliver.
        let s = cloud::wait_event(
            &net,
            "old host drained",
            Duration::from_secs(20),
            interrupted,
        )?;
        let reroute = cloud::event_ms(&s, "rerouted")
            .zip(cloud::event_ms(&s, "arrived"))
            .map(|(r, a)| r - a)
            .unwrap_or(f64::NAN);
        let count = |k: &str| {
            s["timeline"][k]
                .as_u64()
                .map_or_else(|| "?".to_string(), |n| n.to_string())
        };
        clock.say(format_args!(
            "migrated web1: host{from} -> host{at} ({}); network rerouted in {reroute:.0} ms after web1 announced itself; stream gap {:.0} ms; old host forwarded {} packets, lost {}",
            CLOUDS[at],
            gap_us.load(Ordering::Relaxed) as f64 / 1000.0,
            count("forwarded_by_old_host"),
            count("lost_at_old_host"),
        ));
        progress(2)?;
        let sent = load.stop()?;
        clock.say(format_args!(
            "the users of {} go to sleep ({:.1} MB sent to web1)",
            CLOUDS[region],
            sent as f64 / 1e3
        ));
        if at != region {
            bail!("web1 went to {} instead of {}", CLOUDS[at], CLOUDS[region]);
        }
    }
    sending.store(false, Ordering::Relaxed);
    let sent = sender
        .join()
        .map_err(|_| anyhow::anyhow!("sender panicked"))???;
    let got = server
        .join()
        .map_err(|_| anyhow::anyhow!("server panicked"))???;
    clock.say(format_args!(
        "stream closed: {:.1} MiB, {} through {migrations} migrations the controller decided",
        received.load(Ordering::Relaxed) as f64 / 1048576.0,
        if sent == got {
            "every byte intact"
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
