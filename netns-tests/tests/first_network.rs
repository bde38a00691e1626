//! The "first network by hand" guide (docs/first-network.md), run literally: every
//! fenced `sh` block of the markdown, in order, each in its own `bash -euo
//! pipefail` in the guide's directory, with this build's `scd` and `scc` first on
//! `PATH`. The guide and this test cannot drift apart: an edit of the guide is
//! what runs here. Around the guide's own commands (which already refuse a
//! migration to a missing port, add a port at run time, migrate and remove the
//! old port) the test adds what a reader would not type: a steady ping between
//! the other ports of the destination host while its new port is added, which
//! must lose nothing, and the guide's last block (clean-up) runs also when a
//! step fails.

use anyhow::{bail, Context, Result};
use netns_tests::{require_program, require_root, scc_binary, scd_binary};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Where the guide works (its first block creates it).
const GUIDE_DIR: &str = "/tmp/first-network";

/// The `sh` blocks of the guide, in order.
fn guide_blocks() -> Result<Vec<String>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/first-network.md");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    anyhow::ensure!(current.is_none(), "an unclosed ```sh block");
    Ok(blocks)
}

/// Runs the guide's blocks with this build's binaries first on `PATH`.
struct Guide {
    path: String,
    log: PathBuf,
    cleanup: String,
}

impl Guide {
    fn run(&self, i: usize, block: &str) -> Result<()> {
        let dir = if Path::new(GUIDE_DIR).is_dir() {
            GUIDE_DIR
        } else {
            "/"
        };
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        // Output to a file, not a pipe: the guide starts daemons in the
        // background, which would hold a pipe open after the block ends.
        let status = Command::new("bash")
            .args(["-euo", "pipefail", "-c", block])
            .current_dir(dir)
            .env("PATH", &self.path)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .status()?;
        if !status.success() {
            bail!(
                "guide block {i} failed ({status}):\n{block}\n--- output so far ---\n{}\n--- logs ---\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default(),
                logs()
            );
        }
        Ok(())
    }
}

impl Drop for Guide {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .args(["-c", &self.cleanup])
            .current_dir("/")
            .env("PATH", &self.path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The daemons' logs the guide writes.
fn logs() -> String {
    ["scc.log", "host-a.log", "host-b.log"]
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(Path::new(GUIDE_DIR).join(f)).unwrap_or_default();
            format!("== {f}\n{text}")
        })
        .collect()
}

/// A steady ping (every 10 ms) from a namespace.
fn steady_ping(ns: &str, to: &str, count: u32) -> Result<Child> {
    Ok(Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-D", "-i", "0.01", "-W", "2"])
        .args(["-c", &count.to_string(), to])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?)
}

/// The sequence numbers up to `count` that got no reply, with the time (epoch
/// seconds) of the reply before each, for the failure message.
fn unanswered(text: &str, count: u64) -> Vec<(u64, String)> {
    let mut answered = std::collections::BTreeMap::new();
    for line in text.lines().filter(|l| l.contains("bytes from")) {
        let stamp = line.split(']').next().unwrap_or("").trim_start_matches('[');
        let seq = line
            .split("icmp_seq=")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(seq) = seq {
            answered.insert(seq, stamp.to_string());
        }
    }
    (1..=count)
        .filter(|n| !answered.contains_key(n))
        .map(|n| {
            let before = answered.range(..n).next_back().map(|(_, t)| t.clone());
            (n, before.unwrap_or_default())
        })
        .collect()
}

fn epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `(transmitted, received)` from ping's summary.
fn ping_summary(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.contains("packets transmitted"))?;
    let mut numbers = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty());
    Some((numbers.next()?.parse().ok()?, numbers.next()?.parse().ok()?))
}

#[test]
fn the_first_network_guide_runs_as_written() -> Result<()> {
    let test = "the_first_network_guide_runs_as_written";
    if !require_root(test) || !require_program(test, "ping") {
        return Ok(());
    }
    let mut blocks = guide_blocks()?;
    let cleanup = blocks.pop().context("the guide has no blocks")?;
    assert!(
        cleanup.contains("ip netns del"),
        "the guide's last block cleans up:\n{cleanup}"
    );
    let bins: Vec<PathBuf> = [scd_binary()?, scc_binary()?]
        .iter()
        .filter_map(|b| b.parent().map(Path::to_path_buf))
        .collect();
    let mut path = std::env::join_paths(&bins)?
        .into_string()
        .unwrap_or_default();
    path += &format!(":{}", std::env::var("PATH").unwrap_or_default());
    let log = std::env::temp_dir().join("first-network-guide.log");
    let _ = std::fs::remove_file(&log);
    let guide = Guide { path, log, cleanup };
    // A run interrupted before left its namespaces behind: start clean.
    drop(Command::new("bash").args(["-c", &guide.cleanup]).status());

    let mut refused_seen = false;
    for (i, block) in blocks.iter().enumerate() {
        if block.contains("scd port add") {
            // The destination's other ports (db1's and the tunnel) carry a
            // steady ping while the new port is added.
            let ping = steady_ping("fn-db1", "100.64.1.1", 400)?;
            std::thread::sleep(std::time::Duration::from_millis(500));
            let added_from = epoch();
            guide.run(i, block)?;
            let added_to = epoch();
            let out = ping.wait_with_output()?;
            let text = String::from_utf8_lossy(&out.stdout);
            let (sent, received) = ping_summary(&text).context("no ping summary")?;
            eprintln!("steady ping during the port add: {received}/{sent} answered");
            assert_eq!(sent, 400, "{text}");
            assert_eq!(
                received,
                sent,
                "lost while a port was added ({added_from:.3} to {added_to:.3}): \
                 (sequence, last reply before it) {:?}\n{}",
                unanswered(&text, sent),
                logs()
            );
            continue;
        }
        guide.run(i, block)?;
        if block.contains("if scc migrate") {
            let output = std::fs::read_to_string(&guide.log)?;
            assert!(
                output.contains("has no port 3"),
                "the refusal names the missing port:\n{output}"
            );
            refused_seen = true;
        }
    }
    assert!(
        refused_seen,
        "the guide tries a migration to a missing port"
    );
    let output = std::fs::read_to_string(&guide.log)?;
    // After the move the VM's TAP is the destination port's interface.
    let shown = output
        .lines()
        .rfind(|l| l.starts_with("web1 "))
        .context("scc vm show web1 printed nothing")?;
    assert!(
        shown.contains("host-b") && shown.contains("web1-b"),
        "{shown}"
    );
    let logs = logs();
    assert!(logs.contains("port removed"), "{logs}");
    // Logs written to files carry no colour codes.
    assert!(
        !logs.contains('\u{1b}'),
        "escape codes in a log file:\n{logs}"
    );
    Ok(())
}
