//! The systemd units in `deploy/systemd/` keep the sandboxing they promise:
//! `systemd-analyze security` rates each of them, offline, at or below an exposure
//! of 3.0 ("OK"), and `scd`'s keeps exactly the two capabilities `scd` keeps itself.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `systemd-analyze`'s "OK" band ends at 3.9; we hold the units well inside it.
const MAX_EXPOSURE: f64 = 3.0;

fn unit(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/systemd")
        .join(name)
}

/// The overall exposure `systemd-analyze security` gives the unit file, or `None`
/// (loudly, and a failure under `CI=true`) when the tool is not installed.
fn exposure(name: &str) -> Option<f64> {
    let out = match Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(unit(name))
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "systemd-analyze is needed under CI=true: {e}"
            );
            eprintln!("!! SKIPPING the score of {name}: systemd-analyze not available ({e})");
            return None;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!(
                "no exposure level for {name}:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let value = line
        .split_once(": ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("unreadable exposure line: {line}"));
    Some(value)
}

#[test]
fn scd_unit_is_sandboxed() {
    if let Some(score) = exposure("scd.service") {
        assert!(score <= MAX_EXPOSURE, "scd.service exposure {score}");
    }
}

#[test]
fn scc_unit_is_sandboxed() {
    if let Some(score) = exposure("scc.service") {
        assert!(score <= MAX_EXPOSURE, "scc.service exposure {score}");
    }
}

#[test]
fn scd_unit_grants_only_what_scd_keeps() {
    let text = std::fs::read_to_string(unit("scd.service")).expect("unit file");
    for key in ["AmbientCapabilities", "CapabilityBoundingSet"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{key}=")))
            .unwrap_or_else(|| panic!("scd.service sets {key}"));
        assert_eq!(line, format!("{key}=CAP_NET_ADMIN CAP_NET_RAW"));
    }
}
