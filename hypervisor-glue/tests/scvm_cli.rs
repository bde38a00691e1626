//! The `scvm` CLI against real QEMU processes: start a source and a deferred
//! destination, watch events, migrate over a Unix socket, read status, run a raw
//! command, stop both (by PID and by QMP `quit`).
//!
//! Owns a temp dir and the two QEMUs it starts (killed by PID on drop). It must
//! never use the network: no NIC, and the migration goes over a Unix socket.
//! Without QEMU or the guest it says so loudly, and fails when CI=true.

use bounded_http::fake::Fake;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn scvm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_scvm"))
}

fn ok(out: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs `scvm ARGS…`, which must succeed; its stdout.
fn scvm_ok<const N: usize>(args: [&OsStr; N]) -> String {
    let out = scvm().args(args).output().expect("run scvm");
    let what = args.map(OsStr::to_string_lossy).join(" ");
    ok(out, &what)
}

fn guest_files() -> Option<(PathBuf, PathBuf)> {
    let dir = std::env::var_os("GUEST_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/guest"),
        PathBuf::from,
    );
    let (k, i) = (dir.join("vmlinuz"), dir.join("initramfs.cpio.gz"));
    let qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if qemu && k.exists() && i.exists() {
        return Some((k, i));
    }
    let why = format!(
        "scvm_cli: NOT RUN — needs qemu-system-x86_64 (bash scripts/install-qemu.sh) \
         and {} + {} (bash scripts/build-guest.sh)",
        k.display(),
        i.display()
    );
    eprintln!("\n!!!!!!!!\n!!! {why}\n!!!!!!!!\n");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why}");
    }
    None
}

/// QEMUs started through the CLI, killed by PID if the test ends early.
struct Started {
    dir: PathBuf,
    pids: Vec<u32>,
}

impl Drop for Started {
    fn drop(&mut self) {
        for &pid in &self.pids {
            if Path::new(&format!("/proc/{pid}")).exists() {
                let _ = hypervisor_glue::qemu::signal_pid(pid, rustix::process::Signal::KILL);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(s: &mut Started, k: &Path, i: &Path, name: &str, incoming: Option<&str>) -> PathBuf {
    let qmp = s.dir.join(format!("{name}.qmp"));
    let mut cmd = scvm();
    cmd.arg("start")
        .args(["--name", name, "--memory", "128"])
        .arg("--kernel")
        .arg(k)
        .arg("--initrd")
        .arg(i)
        .arg("--qmp")
        .arg(&qmp)
        .arg("--serial")
        .arg(s.dir.join(format!("{name}.serial")))
        .arg("--log")
        .arg(s.dir.join(format!("{name}.log")));
    if let Some(inc) = incoming {
        cmd.args(["--incoming", inc]);
    }
    let out = ok(cmd.output().expect("run scvm start"), "scvm start");
    let pid: u32 = out
        .split_whitespace()
        .find_map(|w| w.strip_prefix("pid="))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {out:?}"));
    s.pids.push(pid);
    qmp
}

#[test]
fn scvm_starts_migrates_reports_and_stops() {
    let Some((k, i)) = guest_files() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("scvm_cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut s = Started { dir, pids: vec![] };

    let src = start(&mut s, &k, &i, "src", None);
    let dst = start(&mut s, &k, &i, "dst", Some("defer"));
    let mig = s.dir.join("mig.sock");
    let mig_uri = format!("unix:{}", mig.display());

    let status = scvm_ok(["status".as_ref(), dst.as_os_str()]);
    assert!(status.contains("Inmigrate"), "{status}");
    let out = scvm_ok(["incoming".as_ref(), dst.as_os_str(), mig_uri.as_ref()]);
    assert!(out.contains("listening"), "{out}");

    // Watch the destination's events while the guest migrates to it (a QMP
    // socket serves one client at a time, so not the source's: migrate uses it).
    let events = scvm()
        .arg("events")
        .arg(&dst)
        .args(["--count", "1", "--duration", "30"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("scvm events");
    std::thread::sleep(Duration::from_millis(300));

    // A stand-in for scc's API: `--scc-api` must tell it of the arrival once the
    // migration completed.
    let mut scc = Fake::start(200, "{\"ok\":true}").expect("fake scc API");
    let migrated = scvm()
        .args(["migrate", "--json", "--downtime-ms", "100", "--from"])
        .arg(&src)
        .args(["--to-uri", &mig_uri, "--scc-api", &scc.addr.to_string()])
        .output()
        .unwrap();
    let told = String::from_utf8_lossy(&migrated.stderr).into_owned();
    let report = ok(migrated, "migrate");
    // The copy's progress first (`scc status` shows it), the arrival last.
    let mut targets = Vec::new();
    while let Ok(asked) = scc.asked.try_recv() {
        assert_eq!(asked.method, "POST", "{asked:?}");
        targets.push(asked.target);
    }
    let (arrived, progress) = targets.split_last().expect("scvm calls the API");
    assert_eq!(arrived, "/migrate/arrived", "{targets:?}");
    // Named as QEMU was started (`--name src`), so scc can tell whose copy it is.
    assert!(
        progress.iter().all(|t| t == "/migrate/progress?vm=src"),
        "{targets:?}"
    );
    assert!(told.contains("scc told of the arrival"), "{told}");
    let v: serde_json::Value = serde_json::from_str(&report).expect("JSON report");
    assert_eq!(v["status"], "completed", "{report}");
    assert!(v["downtime_ms"].as_i64().is_some(), "{report}");
    eprintln!(
        "scvm migrate: total {} ms, downtime {} ms, {} bytes",
        v["total_time_ms"], v["downtime_ms"], v["transferred_bytes"]
    );

    let ev = ok(events.wait_with_output().unwrap(), "events");
    assert!(ev.contains("\"RESUME\""), "{ev}");

    let st = scvm_ok(["status".as_ref(), src.as_os_str()]);
    assert!(
        st.contains("Postmigrate") && st.contains("migration completed"),
        "{st}"
    );
    let st = scvm_ok(["status".as_ref(), dst.as_os_str()]);
    assert!(st.contains("running true"), "{st}");
    let name = scvm_ok(["qmp".as_ref(), dst.as_os_str(), "query-name".as_ref()]);
    assert!(name.contains("\"dst\""), "{name}");

    // Errors are clear: an unknown command names QEMU's error class.
    let bad = scvm()
        .arg("qmp")
        .arg(&dst)
        .arg("no-such-command")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("CommandNotFound"),
        "{bad:?}"
    );

    let src_pid = s.pids[0].to_string();
    scvm_ok(["stop".as_ref(), "--pid".as_ref(), src_pid.as_ref()]);
    scvm_ok(["stop".as_ref(), "--qmp".as_ref(), dst.as_os_str()]);
    for pid in s.pids.clone() {
        let gone = (0..50).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|st| st.contains(") Z "))
        });
        assert!(gone, "QEMU {pid} still running");
    }
}
