//! What every benchmark of the runner shares: one measured row, host pairs joined
//! by a veth, background processes ended by PID, iperf3 and ping measurements, a
//! process's resident memory, and number formatting for the tables.

use anyhow::{Context, Result};
use netns_tests::{unique, Netns, Scd};
use std::process::{Child, Stdio};
use std::time::Duration;

/// The anycast gateway MAC of every `scd` configuration the runner writes.
pub const GW: &str = "02:5c:00:00:00:01";

/// One measured path: throughput and round-trip times, `None` where it failed.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub gbits_1: Option<f64>,
    pub gbits_4: Option<f64>,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub note: String,
}

impl Row {
    /// A row that could not be measured, with the reason in its note.
    pub fn failed(name: &str, why: String) -> Row {
        Row {
            name: name.to_string(),
            gbits_1: None,
            gbits_4: None,
            p50_us: None,
            p99_us: None,
            note: why,
        }
    }
}

/// Two host namespaces joined by a veth: 192.0.2.1 and 192.0.2.2.
#[derive(Debug)]
pub struct Pair {
    pub a: Netns,
    pub b: Netns,
}

pub fn pair(tag: &str) -> Result<Pair> {
    let (a, b) = netns_tests::linked_pair(
        &unique(&format!("bench-{tag}-a-")),
        &unique(&format!("bench-{tag}-b-")),
    )?;
    Ok(Pair { a, b })
}

/// A background process ended by PID when dropped.
#[derive(Debug)]
pub struct Background(pub Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An iperf3 server on `ip`:`port` in `ns`, given time to listen; ended when
/// dropped.
pub fn iperf_server(ns: &Netns, ip: &str, port: &str) -> Result<Background> {
    let server = Background(
        ns.command("iperf3")
            .args(["-s", "-B", ip, "-p", port])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    std::thread::sleep(Duration::from_millis(300));
    Ok(server)
}

/// iperf3 throughput in Gbit/s from `client` to `server_ip` (server in `server`).
pub fn iperf(
    client: &Netns,
    server: &Netns,
    server_ip: &str,
    streams: u32,
    seconds: u32,
) -> Result<f64> {
    let _srv = iperf_server(server, server_ip, "5201")?;
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
pub fn latency(from: &Netns, to_ip: &str) -> Result<(f64, f64)> {
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

/// Latency at idle first (ping), then iperf3 with 1 and 4 streams; a failure
/// becomes a row that says why.
pub fn measure(
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
    attempt().unwrap_or_else(|e| Row::failed(name, format!("failed: {e:#}")))
}

/// `v` with `digits` decimals, or a dash when there is no value.
pub fn fmt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |v| format!("{v:.digits$}"))
}

/// `a / b` with two decimals, or a dash when either is missing or `b` is zero.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "–".into(),
    }
}

/// Resident memory of process `pid` in KiB (`VmRSS` in /proc/PID/status).
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no VmRSS for process {pid}"))
}

/// True when `program` is on the PATH.
pub fn installed(program: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts an `scd` in a host namespace: (host, config, static flows, WireGuard
/// private key). Benchmarks take one so that a profiler can wrap the switch.
pub type Launcher<'a> = dyn Fn(&Netns, &str, Option<&str>, Option<&str>) -> Result<Scd> + 'a;

/// The plain launcher: this build's `scd`, as the harness starts it.
pub fn start_scd(
    host: &Netns,
    config: &str,
    flows: Option<&str>,
    key: Option<&str>,
) -> Result<Scd> {
    match key {
        Some(key) => Scd::start_with_key(host, config, flows, key),
        None => Scd::start(host, config, flows),
    }
}

/// Runs `start` inside a two-worker tokio runtime on a thread of namespace `ns`
/// (it spawns the tasks, such as fake switches) and keeps the runtime, and so
/// the tasks, until `stop` is set.
pub fn runtime_until_stopped(
    ns: &Netns,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    start: impl FnOnce() -> Result<()> + Send + 'static,
) -> std::thread::JoinHandle<Result<Result<()>>> {
    ns.spawn(move || -> Result<()> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        rt.block_on(async move {
            start()?;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(())
        })
    })
}

/// The smallest, the median (the upper one of an even count) and the largest of
/// `values`; `None` when there are none.
pub fn min_median_max(mut values: Vec<f64>) -> Option<(f64, f64, f64)> {
    values.sort_by(f64::total_cmp);
    let median = *values.get(values.len() / 2)?;
    Some((values[0], median, values[values.len() - 1]))
}

/// "min / median / max" of `values`, in `digits` decimals.
pub fn spread(values: Vec<f64>, digits: usize) -> String {
    match min_median_max(values) {
        None => "–".into(),
        Some((min, median, max)) => format!(
            "{} / {} / {}",
            fmt(Some(min), digits),
            fmt(Some(median), digits),
            fmt(Some(max), digits)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_even_count_is_the_upper_middle_and_none_of_nothing() {
        assert_eq!(min_median_max(vec![3.0, 1.0, 2.0]), Some((1.0, 2.0, 3.0)));
        assert_eq!(
            min_median_max(vec![4.0, 1.0, 3.0, 2.0]),
            Some((1.0, 3.0, 4.0))
        );
        assert_eq!(min_median_max(Vec::new()), None);
        assert_eq!(spread(vec![2.0, 1.0], 1), "1.0 / 2.0 / 2.0");
        assert_eq!(spread(Vec::new(), 1), "–");
    }
}
