//! The `scd` command line: configuration errors reach the operator with the file,
//! line and field, and the process fails without starting anything.

use std::process::Command;

fn check_config(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
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

#[test]
fn a_bad_flows_file_is_refused_with_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("flows"),
        "priority=1,actions=output:1\npriority=2,ip,nw_dst=1.2.3.4/40,actions=drop\n",
    )
    .expect("write flows");
    let path = dir.path().join("host.toml");
    let config = GOOD.replacen("[overlay]", "[flows]\nfile = \"flows\"\n[overlay]", 1);
    std::fs::write(&path, config).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_scd"))
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("run scd");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(text.contains("flows:2:"), "{text}");
}
