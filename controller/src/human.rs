//! What `scc` prints for people: the API's JSON answers (`/status`, `/vm/NAME`,
//! a change's version, a migration's timeline) as aligned tables, with MACs as
//! `aa:bb:cc:dd:ee:ff`, times relative to now and durations rounded. Pure: it
//! takes the JSON the API serves (so `--json` and the table always show the same
//! data) and returns text; it never calls the API and never prints.

use serde_json::Value;
use std::fmt::Write as _;

/// Columns of text, each as wide as its widest cell, separated by two spaces;
/// the last column is not padded.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with this header row.
    pub fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// True when only the header is there.
    pub fn is_empty(&self) -> bool {
        self.rows.len() <= 1
    }

    /// The table as text, one line per row.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let pad = widths[c] - cell.chars().count();
                    let _ = write!(line, "{cell}{}  ", " ".repeat(pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A MAC as the API serialises it (six numbers) or as text, spelt `aa:bb:…`.
pub fn mac(v: &Value) -> String {
    match v {
        Value::Array(bytes) => bytes
            .iter()
            .map(|b| format!("{:02x}", b.as_u64().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(":"),
        Value::String(s) => s.clone(),
        _ => "-".into(),
    }
}

/// How long ago Unix time `then` was, seen at `now` (seconds): "12s ago",
/// "5m ago", "3h ago", "2d ago"; "never" for 0.
pub fn ago(then: u64, now: u64) -> String {
    if then == 0 {
        return "never".into();
    }
    let s = now.saturating_sub(then);
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=86_399 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

/// A duration in milliseconds, rounded the way people read it: "0.4 ms",
/// "12 ms", "1.25 s".
pub fn millis(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

/// A JSON string or number as text; "-" for null or absent.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The VMs of a status or a list of VMs, one per row.
/// The IPv6 columns (overlay and public) appear when some VM has IPv6.
fn vm_rows(vms: &[Value]) -> Table {
    let header = [
        "VM",
        "HOST",
        "PORT",
        "TAP",
        "MAC",
        "IP",
        "TENANT",
        "PUBLIC IP",
    ];
    let ipv6 = vms.iter().any(|vm| !vm["overlay_ipv6"].is_null());
    let mut t = if ipv6 {
        Table::new(&[&header[..], &["IPV6", "PUBLIC IPV6"]].concat())
    } else {
        Table::new(&header)
    };
    for vm in vms {
        let mut row = vec![
            text(&vm["name"]),
            text(&vm["host"]),
            text(&vm["port"]),
            text(&vm["tap"]),
            mac(&vm["mac"]),
            text(&vm["ip"]),
            text(&vm["tenant"]),
            text(&vm["public_ip"]),
        ];
        if ipv6 {
            row.extend([text(&vm["overlay_ipv6"]), text(&vm["public_ipv6"])]);
        }
        t.row(row);
    }
    t
}

/// `scc vm show`: one VM.
pub fn vm(vm: &Value) -> String {
    vm_rows(std::slice::from_ref(vm)).render()
}

/// A migration's timeline: each event with its time from the start, and what
/// the old host counted.
pub fn timeline(timeline: &Value) -> String {
    let mut out = String::new();
    let events = timeline["events"].as_array().cloned().unwrap_or_default();
    if events.is_empty() {
        return out;
    }
    let _ = writeln!(out, "migration of {}:", text(&timeline["vm"]));
    let mut t = Table::new(&["  AT", "EVENT"]);
    for e in &events {
        let at = e[1].as_f64().unwrap_or(0.0);
        t.row(vec![format!("  +{}", millis(at)), text(&e[0])]);
    }
    out.push_str(&t.render());
    for (key, what) in [
        ("forwarded_by_old_host", "packets forwarded by the old host"),
        ("lost_at_old_host", "packets lost at the old host"),
    ] {
        if let Some(n) = timeline[key].as_u64() {
            let _ = writeln!(out, "  {what}: {n}");
        }
    }
    if timeline["copy"].is_object() {
        let _ = writeln!(out, "  {}", copy(&timeline["copy"]));
    }
    out
}

/// Bytes in binary units, one decimal.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The hypervisor's last report of a migration's copy, on one line: the phase,
/// what is copied of what, the rate, the guest's dirty rate and the downtime
/// QEMU expects.
fn copy(c: &Value) -> String {
    let n = |k: &str| c[k].as_u64().unwrap_or(0);
    let phase = text(&c["phase"]);
    let at = millis(c["elapsed_ms"].as_f64().unwrap_or(0.0));
    if phase == "disk" {
        return format!(
            "copy at +{at}: disk, {} of {} at {}/s",
            bytes(n("disk_copied")),
            bytes(n("disk_total")),
            bytes(n("disk_rate")),
        );
    }
    let downtime = c["expected_downtime_ms"]
        .as_f64()
        .map_or("-".to_string(), millis);
    format!(
        "copy at +{at}: {phase}, RAM {} sent, {} left of {} at {:.0} Mbit/s, dirty {}/s, \
         expected downtime {downtime}{}",
        bytes(n("ram_transferred")),
        bytes(n("ram_remaining")),
        bytes(n("ram_total")),
        c["ram_mbps"].as_f64().unwrap_or(0.0),
        bytes(n("dirty_bytes_rate")),
        if n("disk_total") > 0 {
            format!(" (disk {} mirrored)", bytes(n("disk_copied")))
        } else {
            String::new()
        },
    )
}

/// `scc status`: the program, each host's switch, the VMs and the last
/// migration, seen at Unix time `now`.
pub fn status(s: &Value, now: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "program version {}, policy {}, repairs {}",
        text(&s["version"]),
        text(&s["policy"]),
        text(&s["repairs"]),
    );
    out.push('\n');
    let mut hosts = Table::new(&[
        "HOST",
        "CLOUD",
        "DATAPATH",
        "SWITCH",
        "SYNCED",
        "FLOWS",
        "PORTS",
        "TUNNELS UP",
        "CHANGED",
        "LAST ERROR",
    ]);
    for h in s["hosts"].as_array().into_iter().flatten() {
        let sw = &h["switch"];
        let connected = sw["connected"].as_bool().unwrap_or(false);
        let ports = sw["ports"].as_object().map_or(0, |p| p.len());
        let tunnels = sw["tunnels_up"].as_object();
        let up = tunnels.map_or(0, |t| {
            t.values().filter(|v| v == &&Value::Bool(true)).count()
        });
        let all = tunnels.map_or(0, |t| t.len());
        hosts.row(vec![
            text(&h["name"]),
            text(&h["cloud"]),
            text(&h["datapath_id"]),
            if connected {
                format!("up {}", text(&sw["peer"]))
            } else {
                "down".into()
            },
            format!("v{}", text(&sw["synced_version"])),
            format!("{}/{}", text(&sw["flows"]), text(&h["desired_flows"])),
            ports.to_string(),
            format!("{up}/{all}"),
            ago(sw["updated"].as_u64().unwrap_or(0), now),
            text(&sw["last_error"]),
        ]);
    }
    out.push_str(&hosts.render());
    out.push('\n');
    let vms = s["vms"].as_array().cloned().unwrap_or_default();
    out.push_str(&vm_rows(&vms).render());
    let m = &s["migration"];
    if m.is_object() {
        let _ = writeln!(
            out,
            "\nmigration in progress: VM {} from {} port {} to {} port {}, {}",
            text(&m["vm"]),
            text(&m["from_host"]),
            text(&m["from_port"]),
            text(&m["to_host"]),
            text(&m["to_port"]),
            text(&m["phase"]).to_lowercase(),
        );
    }
    let line = timeline(&s["timeline"]);
    if !line.is_empty() {
        out.push('\n');
        out.push_str(&line);
    }
    out
}

/// `scc apply`: per switch, the flows added (`+`), changed (`~`) and removed
/// (`-`) in `ovs-ofctl` text, then a summary; with `dry_run` it says nothing
/// was applied, else the version it was applied as.
pub fn policy_change(answer: &Value) -> String {
    let mut out = String::new();
    let switches = answer["switches"].as_array().cloned().unwrap_or_default();
    let (mut added, mut changed, mut removed) = (0, 0, 0);
    for sw in &switches {
        let list = |k: &str| sw[k].as_array().cloned().unwrap_or_default();
        let (a, c, r) = (list("added"), list("changed"), list("removed"));
        let _ = writeln!(
            out,
            "# {} (datapath {}): {} added, {} changed, {} removed",
            text(&sw["host"]),
            text(&sw["datapath_id"]),
            a.len(),
            c.len(),
            r.len()
        );
        for (mark, flows) in [("+", &a), ("~", &c), ("-", &r)] {
            for f in flows {
                let _ = writeln!(out, "{mark} {}", text(f));
            }
        }
        added += a.len();
        changed += c.len();
        removed += r.len();
    }
    let total = format!(
        "{added} flows added, {changed} changed, {removed} removed on {} switches",
        switches.len()
    );
    let reach = &answer["reach"];
    if reach.is_object() {
        let _ = writeln!(
            out,
            "VM pairs that reach each other: {} of {} now, {} after",
            text(&reach["before"]),
            text(&reach["pairs"]),
            text(&reach["after"])
        );
        for pair in reach["newly_cut_off"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "  cut off: {} -> {}", text(&pair[0]), text(&pair[1]));
        }
    }
    if answer["dry_run"] == Value::Bool(true) {
        let _ = writeln!(out, "dry run: {total}; nothing applied");
    } else {
        let _ = writeln!(
            out,
            "applied as version {}: {total}",
            text(&answer["version"])
        );
    }
    out
}

/// The seconds since the Unix epoch now, for [`status`].
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_times_and_durations_read_as_people_write_them() {
        assert_eq!(
            mac(&serde_json::json!([2, 0, 0, 0, 1, 171])),
            "02:00:00:00:01:ab"
        );
        assert_eq!(ago(0, 100), "never");
        assert_eq!(ago(95, 100), "5s ago");
        assert_eq!(ago(10_000 - 7200, 10_000), "2h ago");
        assert_eq!(millis(0.4321), "0.4 ms");
        assert_eq!(millis(12.49), "12 ms");
        assert_eq!(millis(1250.0), "1.25 s");
    }

    #[test]
    fn status_and_vm_read_as_tables() {
        let dir = tempfile::tempdir().unwrap();
        let ctl = crate::daemon::tests::example_controller(dir.path(), |_| {});
        let status = status(&ctl.status(), 1_800_000_000);
        insta::assert_snapshot!("status", status);
        let web1 = serde_json::to_value(ctl.vm("web1").unwrap()).unwrap();
        insta::assert_snapshot!("vm", vm(&web1));
    }

    #[test]
    fn a_dual_stack_vm_shows_its_overlay_and_public_ipv6() {
        let text = include_str!("../../docs/examples/inventory.toml");
        let mut inv = crate::model::Inventory::parse(text, "inventory.toml").unwrap();
        inv.overlay_ipv6 = Some(("fd00:5c::".parse().unwrap(), 48));
        let mut web1 = inv.vms["web1"].clone();
        web1.public_ipv6 = Some("2001:db8:100::10".parse().unwrap());
        let shown = vm(&inv.vm_json(&web1));
        let slaac = inv.vm_ipv6(&web1).unwrap().to_string();
        let header: Vec<&str> = shown.lines().next().unwrap().split_whitespace().collect();
        assert!(
            header.ends_with(&["IP", "IPV6", "PUBLIC", "IPV6"]),
            "{shown}"
        );
        assert!(
            shown.contains(&slaac) && shown.contains("2001:db8:100::10"),
            "{shown}"
        );
    }

    #[test]
    fn a_copy_in_progress_reads_on_one_line() {
        let disk = serde_json::json!({
            "vm": "web1", "events": [["prepared", 0.0], ["disk copy", 12.0]],
            "copy": {"phase": "disk", "disk_copied": 100 << 20, "disk_total": 256 << 20,
                     "disk_rate": 20 << 20, "elapsed_ms": 5000},
        });
        assert!(
            timeline(&disk)
                .ends_with("  copy at +5.00 s: disk, 100.0 MiB of 256.0 MiB at 20.0 MiB/s\n"),
            "{}",
            timeline(&disk)
        );
        let memory = serde_json::json!({
            "vm": "web1", "events": [["memory copy", 9000.0]],
            "copy": {"phase": "memory", "disk_copied": 256 << 20, "disk_total": 256 << 20,
                     "ram_transferred": 64 << 20, "ram_remaining": 8 << 20,
                     "ram_total": 128 << 20, "ram_mbps": 350.2,
                     "dirty_bytes_rate": 3 << 20, "expected_downtime_ms": 30,
                     "elapsed_ms": 9500},
        });
        assert!(
            timeline(&memory).ends_with(
                "  copy at +9.50 s: memory, RAM 64.0 MiB sent, 8.0 MiB left of 128.0 MiB at \
                 350 Mbit/s, dirty 3.0 MiB/s, expected downtime 30 ms (disk 256.0 MiB mirrored)\n"
            ),
            "{}",
            timeline(&memory)
        );
        assert_eq!(bytes(1023), "1023 B");
    }

    #[test]
    fn a_table_aligns_its_columns() {
        let mut t = Table::new(&["A", "LONGER"]);
        t.row(vec!["wide cell".into(), "x".into()]);
        assert_eq!(t.render(), "A          LONGER\nwide cell  x\n");
    }
}
