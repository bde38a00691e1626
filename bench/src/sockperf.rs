//! sockperf's UDP ping-pong between two namespaces: the half round trip (its
//! "latency") at p50 and p99, as the issue that set the data path's targets
//! measured it. Owns starting the server, running the client and reading its
//! percentiles; it never judges the figures.

use crate::common::Background;
use anyhow::{Context, Result};
use netns_tests::Netns;
use std::process::Stdio;
use std::time::Duration;

/// Seconds of ping-pong per measurement (after sockperf's own warm-up).
const SECONDS: u32 = 3;
/// Bytes of each message, as the 64-byte packet rate sends.
const MESSAGE_BYTES: &str = "64";
const PORT: &str = "11111";

/// Half round trips at p50 and p99, in µs, of sockperf's ping-pong from `client`
/// to a sockperf server on `server_ip` in `server`.
pub fn half_round_trip(client: &Netns, server: &Netns, server_ip: &str) -> Result<(f64, f64)> {
    let _server = Background(
        server
            .command("sockperf")
            .args(["server", "-i", server_ip, "-p", PORT])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("sockperf server")?,
    );
    std::thread::sleep(Duration::from_millis(300));
    let out = client
        .command("sockperf")
        .args([
            "ping-pong",
            "-i",
            server_ip,
            "-p",
            PORT,
            "-m",
            MESSAGE_BYTES,
        ])
        .args(["-t", &SECONDS.to_string()])
        .output()
        .context("sockperf ping-pong")?;
    let text = String::from_utf8_lossy(&out.stdout);
    percentiles(&text).with_context(|| {
        format!(
            "no percentiles in sockperf's output: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })
}

/// (p50, p99) from the `---> percentile 50.000 = 23.629` lines of sockperf's report.
fn percentiles(report: &str) -> Option<(f64, f64)> {
    let at = |percent: &str| {
        report.lines().find_map(|line| {
            let rest = line.split("---> percentile ").nth(1)?;
            let (p, value) = rest.split_once('=')?;
            (p.trim() == percent).then(|| value.trim().parse().ok())?
        })
    };
    Some((at("50.000")?, at("99.000")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_p50_and_p99_of_a_report() {
        let report = "sockperf: Summary: Latency is 24.732 usec\n\
             sockperf: ---> percentile 99.990 =  767.811\n\
             sockperf: ---> percentile 99.900 =   59.585\n\
             sockperf: ---> percentile 99.000 =   35.287\n\
             sockperf: ---> percentile 50.000 =   23.629\n\
             sockperf: ---> <MIN> observation =    8.908\n";
        assert_eq!(percentiles(report), Some((23.629, 35.287)));
    }

    #[test]
    fn a_report_without_percentiles_gives_none() {
        assert_eq!(percentiles("sockperf: ERROR: connection refused\n"), None);
        assert_eq!(
            percentiles("sockperf: ---> percentile 50.000 =   23.629\n"),
            None
        );
    }
}
