//! Every table the compiler emits for the project's policies (and for the VLAN
//! sequences that once produced actions Open vSwitch refuses) passes
//! `ovs-ofctl parse-flows`, which applies Open vSwitch's own consistency checks
//! between a flow's match and its actions. Without `ovs-ofctl` the test says so
//! loudly and passes, except under `CI=true`, where it fails.

use netkat::ir::NoNames;
use netkat::{Groups, TableOptions};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;

fn policies() -> Vec<(String, String)> {
    let mut out = vec![
        (
            "untag-or-retag".to_string(),
            "(vlanId := 0xffff + vlanId := 2); port := 2".to_string(),
        ),
        (
            "retag-or-untag".to_string(),
            "filter vlanPcp = 3; (vlanId := 7 + vlanId := 0xffff); port := 1".to_string(),
        ),
        (
            // Two untagging branches: the second has no PCP to put back.
            "untag-twice".to_string(),
            "filter vlanId = 7; (id + (vlanId := 0xffff; port := 3) + vlanId := 0xffff)"
                .to_string(),
        ),
    ];
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/policies"));
    for sub in ["local", "global", "moves"] {
        let Ok(dir) = std::fs::read_dir(root.join(sub)) else {
            continue;
        };
        for entry in dir {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|x| x == "kat") {
                let text = std::fs::read_to_string(&path).expect("read");
                out.push((path.display().to_string(), text));
            }
        }
    }
    out
}

#[test]
fn open_vswitch_accepts_every_compiled_table() {
    if Command::new("ovs-ofctl").arg("--version").output().is_err() {
        let message = "SKIPPED: ovs-ofctl not installed (apt-get install openvswitch-common)";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
        let _ = writeln!(std::io::stderr(), "\n{message}");
        return;
    }
    let file = std::env::temp_dir().join(format!("netkat-ovs-{}.flows", std::process::id()));
    let mut checked = 0;
    for (name, text) in policies() {
        let prog =
            netkat::check(&text, &NoNames).unwrap_or_else(|d| panic!("{}", d.render(&name, &text)));
        let Ok(mut compiled) = netkat::compile(&prog) else {
            continue;
        };
        let Ok(tables) = compiled.tables_with(TableOptions::default(), Groups::Refused) else {
            continue;
        };
        let flows: Vec<String> = tables
            .iter()
            .flat_map(|(_, t)| t.flows.iter().map(openflow::text::format_flow))
            .collect();
        std::fs::write(&file, flows.join("\n") + "\n").expect("write flows");
        let out = Command::new("ovs-ofctl")
            .args(["-O", "OpenFlow13", "parse-flows"])
            .arg(&file)
            .output()
            .expect("run ovs-ofctl");
        assert!(
            out.status.success(),
            "{name}: Open vSwitch refuses a table:\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            flows.join("\n")
        );
        checked += flows.len();
    }
    let _ = std::fs::remove_file(&file);
    assert!(checked > 0, "no flow was checked");
}
