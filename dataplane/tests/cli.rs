//! The `scd` command line: configuration errors reach the operator with the file,
//! line and field, and the process fails without starting anything.

use std::process::Command;

fn check_config(text: &str) -> (bool, String) {
    check_config_with_flows(text, None)
}

/// `scd check-config` of the configuration `text`, with a static flows file
/// `flows` beside it when given.
fn check_config_with_flows(text: &str, flows: Option<&str>) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    if let Some(flows) = flows {
        std::fs::write(dir.path().join("flows"), flows).expect("write flows");
    }
    let path = dir.path().join("host.toml");
    std::fs::write(&path, text).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_scd"))
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("run scd");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.success(), text)
}

const GOOD: &str = r#"datapath_id = 7
[overlay]
prefix = "100.64.0.0/10"
gateway_mac = "02:5c:00:00:00:01"
[[port]]
number = 1
name = "tap0"
"#;

#[test]
fn a_good_config_checks_out() {
    let (ok, text) = check_config(GOOD);
    assert!(ok, "{text}");
    assert!(text.contains("ok (1 ports, 0 static flows)"), "{text}");
}

#[test]
fn check_config_reads_the_private_key_as_run_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("wg.key");
    std::fs::write(&key, "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=\n").expect("key");
    let config = format!(
        "{GOOD}[tunnel]\nprivate_key_file = \"{}\"\nlisten = \"51820\"\n",
        key.display()
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (ok, text) = check_config(&config);
    assert!(
        !ok,
        "a key others may read is refused by run, so by check-config: {text}"
    );
    assert!(text.contains("tunnel.private_key_file"), "{text}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (ok, text) = check_config(&config);
    assert!(ok, "{text}");
}

#[test]
fn a_bad_config_names_the_field_and_line() {
    let (ok, text) = check_config(&GOOD.replace("number = 1", "number = 0"));
    assert!(!ok);
    assert!(
        text.contains("host.toml:6: `port.number`: 0 is not a valid OpenFlow port number"),
        "{text}"
    );

    let (ok, text) = check_config(&GOOD.replace("[overlay]", "[overlai]"));
    assert!(!ok);
    assert!(
        text.contains("host.toml:2:2: unknown field `overlai`"),
        "{text}"
    );
}

/// `scd check-config` of [`GOOD`] with a static flows file holding `flows`.
fn check_flows(flows: &str) -> (bool, String) {
    let config = GOOD.replacen("[overlay]", "[flows]\nfile = \"flows\"\n[overlay]", 1);
    check_config_with_flows(&config, Some(flows))
}

#[test]
fn a_bad_flows_file_is_refused_with_its_line() {
    let first = "priority=1,actions=output:1\n";
    for (second, expected) in [
        (
            "priority=2,ip,nw_dst=1.2.3.4/40,actions=drop",
            "flows:2:15: ",
        ),
        (
            "table=254,actions=drop",
            "flows:2: table 254 does not exist",
        ),
        (
            "actions=goto_table:254",
            "flows:2: goto_table:254 from table 0 must name a later table below 254",
        ),
        ("actions=group:3", "flows:2: group 3 does not exist"),
        ("cookie=0x6000,actions=drop", "flows:2: cookie=0x6000: "),
    ] {
        let (ok, text) = check_flows(&format!("{first}{second}\n"));
        assert!(!ok, "{second}: {text}");
        assert!(text.contains(expected), "{text}");
    }
    let (ok, text) = check_flows(first);
    assert!(ok, "{text}");
    assert!(text.contains("ok (1 ports, 1 static flows)"), "{text}");
}

#[test]
fn completions_and_the_man_page_come_from_the_cli_definitions() {
    let scd = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_scd"))
            .args(args)
            .output()
            .expect("run scd");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "scd {args:?}: {stderr}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let bash = scd(&["completions", "bash"]);
    assert!(bash.contains("check-config"), "{bash}");
    let man = scd(&["man"]);
    assert!(man.contains(".TH scd"), "{man}");
}

/// Every host configuration in `docs/examples/` (with the static flows it names)
/// is what `scd check-config` accepts: the documented examples cannot rot.
#[test]
fn every_documented_example_config_checks_out() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).expect("docs/examples") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read example");
        // A host configuration (the inventory, also TOML, is scc's and tested there).
        let host_config = text.lines().any(|l| l.trim() == "[overlay]");
        if path.extension().is_none_or(|e| e != "toml") || !host_config {
            continue;
        }
        let out = Command::new(env!("CARGO_BIN_EXE_scd"))
            .arg("check-config")
            .arg(&path)
            .output()
            .expect("run scd");
        assert!(
            out.status.success(),
            "{}: {}{}",
            path.display(),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        checked += 1;
    }
    assert!(checked >= 1, "no host configuration found in {dir}");
}
