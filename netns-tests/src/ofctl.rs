//! `ovs-ofctl -O OpenFlow13` against a switch from inside its host namespace, and
//! reading what its `dump-flows` prints: the tests' view of a switch's tables as an
//! operator has it; and `ovs-ofctl monitor`, the view of the messages a switch
//! sends its controllers unasked (port-status, packet-in).

use crate::{run, wait_until, Netns};
use anyhow::{anyhow, Context, Result};
use std::process::Child;
use std::time::Duration;

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

/// `ovs-ofctl -O OpenFlow13 monitor` until dropped, its output in a file.
#[derive(Debug)]
pub struct Monitor {
    child: Child,
    out: tempfile::NamedTempFile,
}

impl Monitor {
    /// Starts `ovs-ofctl monitor TARGET ARGS` in `host` (`args` such as a
    /// `miss-len`).
    pub fn start(host: &Netns, target: &str, args: &[&str]) -> Result<Monitor> {
        // ovs-ofctl makes its control socket there.
        std::fs::create_dir_all("/var/run/openvswitch")?;
        let out = tempfile::NamedTempFile::new()?;
        let append = || std::fs::OpenOptions::new().append(true).open(out.path());
        // Line-buffered: its output goes to a file, which it would otherwise
        // write only when it exits.
        let child = host
            .command("stdbuf")
            .args(["-oL", "ovs-ofctl", "-O", "OpenFlow13", "monitor", target])
            .args(args)
            .stdout(append()?)
            .stderr(append()?)
            .spawn()?;
        Ok(Monitor { child, out })
    }

    /// What it printed so far.
    pub fn text(&self) -> String {
        std::fs::read_to_string(self.out.path()).unwrap_or_default()
    }

    /// Waits (30 s at most) until the output holds a message of `kind` (such
    /// as `OFPT_PORT_STATUS`) with all of `needles` in it (its first line and
    /// the lines under it), `what` naming it in the error.
    pub fn wait_for(&self, kind: &str, what: &str, needles: &[&str]) -> Result<()> {
        wait_until(Duration::from_secs(30), what, || {
            let text = self.text();
            Ok(text.split(kind).skip(1).any(|message| {
                let message = message.split("OFPT_").next().unwrap_or(message);
                needles.iter().all(|n| message.contains(n))
            }))
        })
        .map(drop)
        .with_context(|| format!("monitor output:\n{}", self.text()))
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
