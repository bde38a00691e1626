//! `ovs-ofctl -O OpenFlow13` against a switch from inside its host namespace, and
//! reading what its `dump-flows` prints: the tests' view of a switch's tables as an
//! operator has it.

use crate::{run, Netns};
use anyhow::{anyhow, Result};

/// Runs `ovs-ofctl -O OpenFlow13 ARGS` in `host`; an argument `{}` stands for
/// `target` (such as `tcp:127.0.0.1:6653`).
pub fn ofctl(host: &Netns, target: &str, args: &[&str]) -> Result<String> {
    let args: Vec<&str> = args
        .iter()
        .map(|a| if *a == "{}" { target } else { a })
        .collect();
    run(host
        .command("ovs-ofctl")
        .args(["-O", "OpenFlow13", "--timeout=20"])
        .args(&args))
}

/// The flow lines of a `dump-flows` text (every line with a cookie).
pub fn flow_lines(dump: &str) -> Vec<&str> {
    dump.lines().filter(|l| l.contains("cookie=")).collect()
}

/// `n_packets` of the dump-flows line that contains `needle`.
pub fn n_packets(dump: &str, needle: &str) -> Result<u64> {
    let line = dump
        .lines()
        .find(|l| l.contains(needle))
        .ok_or_else(|| anyhow!("no flow with `{needle}` in:\n{dump}"))?;
    let v = line
        .split(", ")
        .find_map(|f| f.trim().strip_prefix("n_packets="))
        .ok_or_else(|| anyhow!("no n_packets in {line}"))?;
    Ok(v.parse()?)
}

/// The flow lines of a `dump-flows` text without their statistics (`duration=`,
/// `n_packets=`, `n_bytes=`, ages), trimmed and sorted: what the flows are, not what
/// they did or in which order flows of equal priority were added.
pub fn flow_specs(dump: &str) -> Vec<String> {
    const STATISTICS: [&str; 5] = [
        "duration=",
        "n_packets=",
        "n_bytes=",
        "idle_age=",
        "hard_age=",
    ];
    let mut specs: Vec<String> = flow_lines(dump)
        .into_iter()
        .map(|l| {
            l.trim()
                .split(", ")
                .filter(|item| !STATISTICS.iter().any(|s| item.starts_with(s)))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .collect();
    specs.sort();
    specs
}
