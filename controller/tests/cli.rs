//! The `scc` binary: `check` reports a bad policy rustc-style with its position and
//! changes nothing; `compile` prints `ovs-ofctl` text that parses back, or JSON;
//! with `--inventory` both resolve `vm:NAME` names as the controller does.

use std::process::Command;

fn scc(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_scc"))
        .args(args)
        .output()
        .expect("run scc");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp_policy(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("scc-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write policy");
    path
}

#[test]
fn check_reports_position_caret_and_hint() {
    let path = temp_policy(
        "bad.kat",
        "filter port = 1;\nif ethTyp = 0x800 then port := 2\n",
    );
    let before = std::fs::read(&path).expect("read");
    let (code, stdout, stderr) = scc(&["check", path.to_str().expect("path")]);
    assert_eq!(code, 1);
    assert!(stdout.is_empty());
    assert!(
        stderr.starts_with("error: expected `else`, found end of input"),
        "{stderr}"
    );
    assert!(stderr.contains("bad.kat:2:33"), "{stderr}");
    assert!(stderr.contains("^"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");
    assert_eq!(
        std::fs::read(&path).expect("read"),
        before,
        "check must not touch the file"
    );
}

#[test]
fn compile_prints_ovs_ofctl_text_that_parses_back() {
    let path = temp_policy(
        "ok.kat",
        "filter switch = 7; (filter port = 1; port := 2 + filter port = 2; port := 1)",
    );
    let (code, stdout, stderr) = scc(&["compile", path.to_str().expect("path"), "--switch", "7"]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let flows = openflow::text::parse_flows(&lines.join("\n")).expect("ovs-ofctl syntax");
    assert_eq!(flows.len(), 2);
    let (code, json, _) = scc(&["compile", path.to_str().expect("path"), "--format", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v[0]["switch"], 7);
    assert_eq!(v[0]["flows"].as_array().map(Vec::len), Some(2));
}

#[test]
fn compile_prints_the_groups_a_policy_needs_before_its_flows() {
    // Two copies of one packet, each with a different field changed, and a source
    // the match does not pin: only an ALL group can send both.
    let path = temp_policy(
        "copies.kat",
        "filter switch = 2 and port = 1 and ethTyp = 0x800; \
         (ip4Src := 10.0.0.1; port := 2 + ip4Dst := 10.0.0.9; port := 3)",
    );
    let (code, stdout, stderr) = scc(&["compile", path.to_str().expect("path")]);
    assert_eq!(code, 0, "{stderr}");
    let groups: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("group_id="))
        .collect();
    assert_eq!(
        groups,
        vec![
            "group_id=1,type=all,bucket=actions=set_field:10.0.0.1->ip_src,output:2,\
             bucket=actions=set_field:10.0.0.9->ip_dst,output:3"
        ],
        "{stdout}"
    );
    let flows: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("group_id="))
        .collect();
    let flows = openflow::text::parse_flows(&flows.join("\n")).expect("ovs-ofctl syntax");
    assert!(
        flows.iter().any(|f| f.instructions
            == vec![openflow::Instruction::ApplyActions(vec![
                openflow::Action::Group(1)
            ])]),
        "{stdout}"
    );
    let (code, json, _) = scc(&["compile", path.to_str().expect("path"), "--format", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v[0]["groups"][0]["group_id"], 1);
}

/// The example inventory, as the README's commands name it.
fn example_inventory() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/examples/inventory.toml"
    )
    .to_string()
}

#[test]
fn check_and_compile_resolve_vm_names_with_an_inventory() {
    let path = temp_policy("names.kat", "filter ip4Dst = vm:web1; port := 2");
    let policy = path.to_str().expect("path");
    let inventory = example_inventory();

    let (code, _, stderr) = scc(&["check", policy]);
    assert_eq!(code, 1, "without an inventory the name is unknown");
    assert!(stderr.contains("vm:web1"), "{stderr}");

    let (code, stdout, stderr) = scc(&["check", policy, "--inventory", &inventory]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(": ok with "), "{stdout}");
    assert!(stdout.contains("on 3 switches"), "{stdout}");

    let (code, stdout, stderr) = scc(&["compile", policy, "--inventory", &inventory]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("nw_dst=100.64.1.1"), "{stdout}");

    let unknown = temp_policy("unknown.kat", "filter ip4Dst = vm:nosuch");
    let (code, _, stderr) = scc(&[
        "check",
        unknown.to_str().expect("path"),
        "--inventory",
        &inventory,
    ]);
    assert_eq!(code, 1);
    assert!(stderr.starts_with("error"), "one error style: {stderr}");
    assert!(stderr.contains("unknown.kat:1:"), "positioned: {stderr}");
}

#[test]
fn every_error_starts_with_error() {
    // Nothing listens on loopback's discard port: the API is down.
    let (code, _, stderr) = scc(&["status", "--api", "127.0.0.1:9"]);
    assert_ne!(code, 0);
    assert!(stderr.starts_with("error: "), "{stderr}");
}

#[test]
fn completions_and_the_man_page_come_from_the_cli_definitions() {
    let (code, stdout, stderr) = scc(&["completions", "bash"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("migrate"), "{stdout}");
    let (code, stdout, stderr) = scc(&["man"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(".TH scc"), "{stdout}");
}

#[test]
fn compile_stops_quietly_when_its_reader_closes_the_pipe() {
    use std::io::{BufRead, BufReader};
    let text: Vec<String> = (0..5_000)
        .map(|i| {
            format!(
                "switch = {}; ip4Dst = 10.0.{}.{}; port := 2",
                i % 20 + 1,
                i / 256,
                i % 256
            )
        })
        .collect();
    let path = temp_policy("pipe", &text.join(" + "));
    for format in ["text", "json"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_scc"))
            .args(["compile", "--format", format])
            .arg(&path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn scc");
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut first)
            .expect("read a line");
        assert!(!first.is_empty(), "scc wrote nothing");
        // The reader is dropped: the pipe is closed, as `| head -1` does.
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{format}: {:?}\n{stderr}", out.status);
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn invalid_utf8_is_reported_at_its_position() {
    let path = std::env::temp_dir().join(format!("scc-cli-utf8-{}.kat", std::process::id()));
    std::fs::write(&path, b"filter port = 1;\n  port := 2 \xff + id\n").expect("write");
    let (code, _, stderr) = scc(&["check", path.to_str().expect("utf-8 path")]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(":2:13") && stderr.contains("UTF-8"),
        "{stderr}"
    );
}

#[test]
fn run_refuses_a_store_whose_journal_is_damaged_before_its_last_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.json");
    let store = controller::store::Store::new(&path);
    let text = std::fs::read_to_string(example_inventory()).expect("example inventory");
    let inventory =
        controller::model::Inventory::parse(&text, "inventory.toml").expect("example inventory");
    let mut state = controller::store::Persisted::first(inventory, "id".into(), "p.kat".into());
    store.save(&state).expect("snapshot");
    for policy in ["filter port = 1", "filter port = 2", "id"] {
        state.version += 1;
        state.policy = policy.into();
        store.save(&state).expect("journal record");
    }
    let mut bytes = std::fs::read(store.journal_path()).expect("journal");
    bytes[10] ^= 0x20;
    std::fs::write(store.journal_path(), &bytes).expect("damage");
    let (code, _, stderr) = scc(&["run", "--state", path.to_str().expect("path")]);
    assert_ne!(code, 0, "{stderr}");
    let journal = store.journal_path().display().to_string();
    assert!(
        stderr.contains(&format!("{journal}: byte 0:")) && stderr.contains("damaged"),
        "{stderr}"
    );
}
