//! `bench failover`: replicated controllers on etcd. How long the switches are
//! without a master when the leading `scc` dies (`kill -9` of the leader → the
//! last switch accepts the new master's role request), for N switches, with
//! the flow-mods the takeover sent (its audit should find equal tables: none);
//! and the cost of the etcd store against the embedded file for one VM add, in
//! the same run.
//!
//! A three-member etcd cluster (Debian's `etcd-server`) and three `scc
//! --store etcd://…` replicas run in the benchmark's own namespace, on loopback;
//! N fake switches (the `fake-switch` crate's) connect to all three and record when
//! they accept a master and with which generation. The times come from the
//! switches' side: the moment of the kill to the last switch's acceptance. The
//! new leader is then stopped with `SIGTERM` (it revokes its lease): the handover
//! to the third replica is timed the same way.

use crate::reroute::{inventory, Addressing};
use anyhow::{Context, Result};
use fake_switch::{Counters, FakeSwitch};
use netns_tests::replicas::{master_generation, others, switches_accept, EtcdCluster, SccReplica};
use netns_tests::{scc_binary, unique, wait_for, Netns};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Generous: a loaded machine is slow, not wrong.
const WAIT: Duration = Duration::from_secs(180);

/// One failover, from the switches' side.
struct Failover {
    /// Kill → the last switch accepted the new master.
    last_ms: f64,
    /// Kill → the first switch accepted it.
    first_ms: f64,
    /// Flow-mods the switches received from the kill until the new leader
    /// confirmed the program everywhere.
    flow_mods: u64,
    /// Then `SIGTERM` of that new leader (it gives its lease up) → the last
    /// switch accepted the third replica.
    stopped_ms: f64,
}

/// Waits until every one of `hosts` switches accepted a master newer than
/// `generation`; when each did.
fn accepted_after(
    switches: &[Arc<FakeSwitch>],
    hosts: usize,
    generation: u64,
) -> Result<Vec<Instant>> {
    wait_for(WAIT, "every switch to accept a new master", || {
        let newer: Vec<Instant> = switches
            .iter()
            .filter_map(|s| s.master())
            .filter(|(g, _)| *g > generation)
            .map(|(_, at)| at)
            .collect();
        Ok((newer.len() == hosts).then_some(newer))
    })
}

/// Milliseconds from `from` to the last of `at`.
fn last_ms(from: Instant, at: &[Instant]) -> f64 {
    at.iter()
        .map(|t| t.saturating_duration_since(from).as_secs_f64() * 1e3)
        .fold(0.0, f64::max)
}

fn leader_of(ns: &Netns, replicas: &[&SccReplica]) -> Result<(usize, u64)> {
    wait_for(WAIT, "one leader that every switch accepts", || {
        let mut leader = None;
        for (i, r) in replicas.iter().enumerate() {
            let Some(s) = r.status(ns)? else {
                return Ok(None);
            };
            if let Some(g) = master_generation(&s) {
                if switches_accept(&s, "master", g) {
                    leader = Some((i, g));
                }
            }
        }
        Ok(leader)
    })
}

/// Starts etcd, three replicas and `hosts` fake switches; kills the leader once.
fn measure_failover(hosts: usize) -> Result<Failover> {
    let ns = Netns::new(&unique("bench-failover-"))?;
    let dir = tempfile::tempdir()?;
    let inv = dir.path().join("inventory.toml");
    // Each replica serves its own socket (`--api-socket`), not the inventory's.
    std::fs::write(
        &inv,
        inventory(
            Addressing::new(hosts, 1, false),
            &dir.path().join("unused.sock"),
            false,
        ),
    )?;
    let etcd = EtcdCluster::start(&ns, dir.path(), 3, 23790)?;
    let mut replicas = (0..3)
        .map(|i| SccReplica::start(&ns, dir.path(), i, &etcd.store_spec(), "127.0.0.1", &inv))
        .collect::<Result<Vec<_>>>()?;
    let controllers: Vec<String> = replicas.iter().map(|r| r.openflow.clone()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let fakes: Vec<Arc<FakeSwitch>> = (0..hosts)
        .map(|h| FakeSwitch::with_counters(u64::try_from(h).unwrap_or(0) + 1, counters.clone()))
        .collect();
    let addrs = controllers
        .iter()
        .map(|c| c.parse::<std::net::SocketAddr>())
        .collect::<Result<Vec<_>, _>>()?;
    // Every switch a task per controller, in one runtime inside the namespace.
    let runner = {
        let fakes = fakes.clone();
        crate::common::runtime_until_stopped(&ns, stop.clone(), move || {
            let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
            for sw in &fakes {
                for to in &addrs {
                    tokio::spawn(sw.clone().run(*to, give_up));
                }
            }
            Ok(())
        })
    };
    let result = (|| -> Result<Failover> {
        let (leader, generation) = leader_of(&ns, &replicas.iter().collect::<Vec<_>>())
            .with_context(|| replicas[0].log_text())?;
        let before = counters.flow_mods.load(Ordering::Relaxed);
        let killed = Instant::now();
        replicas[leader].kill()?;
        let accepted = accepted_after(&fakes, hosts, generation)?;
        let survivors = others(&replicas, leader);
        let (second, second_generation) = leader_of(&ns, &survivors)?;
        let second_api = survivors[second].api.clone();
        let flow_mods = counters.flow_mods.load(Ordering::Relaxed) - before;
        let second = replicas
            .iter()
            .position(|r| r.api == second_api)
            .context("the second leader")?;
        let stopped = Instant::now();
        replicas[second].terminate()?;
        let handed_over = accepted_after(&fakes, hosts, second_generation)?;
        let ms = |at: &Instant| at.saturating_duration_since(killed).as_secs_f64() * 1e3;
        Ok(Failover {
            last_ms: last_ms(killed, &accepted),
            first_ms: accepted.iter().map(ms).fold(f64::INFINITY, f64::min),
            flow_mods,
            stopped_ms: last_ms(stopped, &handed_over),
        })
    })();
    stop.store(true, Ordering::Relaxed);
    drop(replicas);
    let _ = runner.join();
    result
}

/// Median milliseconds of `n` VM adds through the API at `api` (in `ns`).
fn vm_adds(ns: &Netns, api: &str, n: usize) -> Result<f64> {
    let api: bounded_http::Endpoint = api.parse().map_err(anyhow::Error::msg)?;
    let mut times = Vec::new();
    for i in 0..n {
        let vm = controller::model::Vm {
            name: format!("added{i}"),
            mac: format!("02:aa:00:00:00:{:02x}", i % 250)
                .parse()
                .map_err(|e| anyhow::anyhow!("{e:?}"))?,
            ip: std::net::Ipv4Addr::new(100, 65, 0, u8::try_from(i % 250 + 1)?),
            host: "host0".into(),
            port: 500 + u32::try_from(i)?,
            tap: format!("sc-added{i}"),
            netns: None,
            tenant: Some("t".into()),
            public_ip: None,
            ipv6: None,
            public_ipv6: None,
        };
        let body = serde_json::to_vec(&vm)?;
        let started = Instant::now();
        let to = api.clone();
        let (status, json) =
            ns.enter(move || controller::api::request(&to, None, "POST", "/vm", &body))??;
        anyhow::ensure!(status == 200, "vm add: {json}");
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// The median VM add with the embedded store and with etcd (one leader, its
/// cluster of three), `hosts` hosts, no switch connected, same run.
fn measure_stores(hosts: usize, adds: usize) -> Result<(f64, f64)> {
    let ns = Netns::new(&unique("bench-stores-"))?;
    let dir = tempfile::tempdir()?;
    let inv = dir.path().join("inventory.toml");
    let embedded_socket = dir.path().join("scc-embedded.sock");
    std::fs::write(
        &inv,
        inventory(Addressing::new(hosts, 1, false), &embedded_socket, false),
    )?;
    let etcd = EtcdCluster::start(&ns, dir.path(), 3, 23790)?;
    let replica = SccReplica::start(&ns, dir.path(), 0, &etcd.store_spec(), "127.0.0.1", &inv)?;
    let embedded_log = std::fs::File::create(dir.path().join("scc-embedded.log"))?;
    let mut embedded = ns
        .command(scc_binary()?.to_str().context("path")?)
        .args(["run", "--openflow", "127.0.0.1:6691"])
        .arg("--state")
        .arg(dir.path().join("state.json"))
        .arg("--inventory")
        .arg(&inv)
        .stdout(std::process::Stdio::null())
        .stderr(embedded_log)
        .spawn()?;
    let result = (|| -> Result<(f64, f64)> {
        wait_for(WAIT, "the etcd replica to lead", || {
            Ok(replica.status(&ns)?.and_then(|s| master_generation(&s)))
        })
        .with_context(|| replica.log_text())?;
        let embedded_api = format!("unix:{}", embedded_socket.display());
        wait_for(WAIT, "the embedded scc to answer", || {
            let api: bounded_http::Endpoint = embedded_api.parse().map_err(anyhow::Error::msg)?;
            Ok(ns
                .enter(move || controller::api::request(&api, None, "GET", "/status", b""))?
                .ok())
        })?;
        Ok((
            vm_adds(&ns, &embedded_api, adds)?,
            vm_adds(&ns, &replica.api, adds)?,
        ))
    })();
    let _ = embedded.kill();
    let _ = embedded.wait();
    result
}

/// Runs both measurements and prints the tables.
pub fn failover(switch_counts: &[usize], reps: usize) -> Result<()> {
    println!(
        "\n## Replicated controllers: failover (3 scc replicas, 3 etcd members, fake switches)\n"
    );
    println!("| switches | failover ms p50 (kill -9 → last switch accepts the new master) | first switch ms p50 | flow-mods sent by the takeover | handover ms p50 (SIGTERM → last switch accepts) |");
    println!("|---:|---:|---:|---:|---:|");
    for &hosts in switch_counts {
        let mut runs = Vec::new();
        for _ in 0..reps {
            match measure_failover(hosts) {
                Ok(f) => runs.push(f),
                Err(e) => println!("| {hosts} | failed: {e:#} | | | |"),
            }
        }
        if runs.is_empty() {
            continue;
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        println!(
            "| {hosts} | {:.0} | {:.0} | {} | {:.0} |",
            median(runs.iter().map(|f| f.last_ms).collect()),
            median(runs.iter().map(|f| f.first_ms).collect()),
            runs.iter().map(|f| f.flow_mods).max().unwrap_or(0),
            median(runs.iter().map(|f| f.stopped_ms).collect()),
        );
    }
    println!("\n| store | VM add ms p50 (API call → committed) | ratio |");
    println!("|---|---:|---:|");
    match measure_stores(10, 21) {
        Ok((embedded, etcd)) => {
            println!("| embedded file (fsync) | {embedded:.2} | 1.00 |");
            println!("| etcd, 3 members | {etcd:.2} | {:.2} |", etcd / embedded);
        }
        Err(e) => println!("| failed: {e:#} | | |"),
    }
    println!("\nCommand: `bash scripts/bench.sh failover` ({reps} failovers per row, medians; 21 VM adds per store, 10 hosts)");
    Ok(())
}
