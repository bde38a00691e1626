//! Every table `scc compile` emits is valid OpenFlow 1.3 to both switches that
//! will run it: for Frenetic's examples (the shared conformance corpus), the
//! project's own policies and random policies (with and without links), each
//! switch's groups and flows go through `ovs-ofctl add-groups`/`add-flows` against
//! a real Open vSwitch and against `scd`, and both must accept them. A policy the
//! compiler refuses (with a positioned error) is counted, not sent.
//!
//! Without the corpus the test says so loudly and checks the rest; under
//! `CI=true` a missing corpus fails it.

use anyhow::{bail, Context, Result};
use netns_tests::ofctl::ofctl;
use netns_tests::ovs::OpenVswitch;
use netns_tests::{require_program, require_root, scc_binary, scd_config_head, unique};
use netns_tests::{Netns, Scd};
use std::path::{Path, PathBuf};

const TEST: &str = "compiled_tables";
const SCD_TARGET: &str = "tcp:127.0.0.1:6653";

/// One switch's part of `scc compile`'s text output.
#[derive(Default)]
struct SwitchTable {
    heading: String,
    groups: Vec<String>,
    flows: Vec<String>,
}

/// Splits `scc compile`'s text into switch tables: a `# switch N` or `# every
/// switch` heading, then group lines under `# N groups`, flow lines after.
fn switch_tables(text: &str) -> Vec<SwitchTable> {
    let mut tables: Vec<SwitchTable> = Vec::new();
    let mut in_groups = false;
    for line in text.lines() {
        if line.starts_with("# switch") || line.starts_with("# every switch") {
            tables.push(SwitchTable {
                heading: line.to_string(),
                ..SwitchTable::default()
            });
            in_groups = false;
        } else if line.starts_with('#') {
            in_groups = line.contains(" groups ");
        } else if let Some(t) = tables.last_mut() {
            if line.trim().is_empty() {
                continue;
            }
            if in_groups {
                t.groups.push(line.to_string());
            } else {
                t.flows.push(line.to_string());
            }
        }
    }
    tables
}

/// Frenetic's examples, or `None` (said loudly; a failure under `CI=true`).
fn corpus() -> Option<PathBuf> {
    let dir = std::env::var_os("SC_CONFORMANCE_DIR").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../shared/conformance/frenetic-examples"
            ))
        },
        PathBuf::from,
    );
    if dir.is_dir() {
        return Some(dir);
    }
    let message = format!(
        "{TEST}: the conformance corpus is missing at {} (set SC_CONFORMANCE_DIR); its policies are NOT checked",
        dir.display()
    );
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
    eprintln!("\n*** {message} ***\n");
    None
}

fn kat_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            kat_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "kat") {
            out.push(path);
        }
    }
}

/// A fixed-seed generator, so a failure names a policy that can be compiled again.
struct Xorshift(u64);

impl Xorshift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % n as u64).unwrap_or(0)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const TESTS: [&str; 14] = [
    "switch = 1",
    "switch = 2",
    "port = 1",
    "port = 2",
    "vlanId = 7",
    "vlanId = 0xffff",
    "vlanPcp = 3",
    "ethTyp = 0x806",
    "ip4Src = 10.0.0.0/8",
    "ip4Dst = 192.0.2.1",
    "tcpDstPort = 443",
    "udpSrcPort = 53",
    "ip6Src = 2001:db8::/32",
    "ip6Dst = 2001:db8::1",
];

const LOCAL_MODS: [&str; 11] = [
    "port := 1",
    "port := 2",
    "port := 3",
    "vlanId := 7",
    "vlanId := 0xffff",
    "vlanPcp := 5",
    "ethDst := 00:00:00:00:00:02",
    "ip4Src := 198.51.100.1",
    "tcpSrcPort := 8080",
    "udpDstPort := 53",
    "ip6Dst := 2001:db8::2",
];

/// Links carry no VLAN (the global compiler's tag).
const GLOBAL_MODS: [&str; 7] = [
    "port := 1",
    "port := 2",
    "ethDst := 00:00:00:00:00:02",
    "ip4Src := 198.51.100.1",
    "tcpSrcPort := 8080",
    "ip6Src := 2001:db8::3",
    "(port := 1; 1@1 => 2@1)",
];

fn random_policy(rng: &mut Xorshift, depth: u32, mods: &[&str], tests: &[&str]) -> String {
    if depth == 0 || rng.below(4) == 0 {
        return if rng.below(3) == 0 {
            format!("filter {}", rng.pick(tests))
        } else {
            rng.pick(mods).to_string()
        };
    }
    let (p, q) = (
        random_policy(rng, depth - 1, mods, tests),
        random_policy(rng, depth - 1, mods, tests),
    );
    match rng.below(4) {
        0 => format!("({p} + {q})"),
        1 => format!("(if {} then {p} else {q})", rng.pick(tests)),
        _ => format!("({p}; {q})"),
    }
}

fn random_policies() -> Vec<(String, String)> {
    let mut rng = Xorshift(0x5eed_2020);
    let mut out = Vec::new();
    for i in 0..120 {
        let body = random_policy(&mut rng, 4, &LOCAL_MODS, &TESTS);
        out.push((format!("random local #{i}"), body));
    }
    let global_tests: Vec<&str> = TESTS
        .iter()
        .copied()
        .filter(|t| !t.starts_with("vlan"))
        .collect();
    for i in 0..60 {
        let body = random_policy(&mut rng, 3, &GLOBAL_MODS, &global_tests);
        // Every such program crosses a link, so the global compiler runs.
        out.push((
            format!("random global #{i}"),
            format!("{body}; (port := 1; 1@1 => 2@1; port := 3 + port := 4)"),
        ));
    }
    out
}

/// Both switches under test, one namespace.
struct Switches {
    // Drop order: the switches before their namespace.
    scd: Scd,
    ovs: OpenVswitch,
    ns: Netns,
}

impl Switches {
    fn start() -> Result<Switches> {
        let ns = Netns::new(&unique(&format!("{TEST}-")))?;
        let ovs = OpenVswitch::start(&ns)?;
        let config = format!(
            "{}[openflow]\nlisten = \"ptcp:6653\"\n{}",
            scd_config_head("\"0x2001\"", "compiled-tables", false),
            netns_tests::two_vms::tap_ports(&unique("sct"), &unique("sct"))
        );
        let scd = Scd::start(&ns, &config, None)?;
        Ok(Switches { scd, ovs, ns })
    }

    /// Installs one table on both switches; `Err` names the switch and its reply.
    fn install(&self, dir: &Path, table: &SwitchTable) -> Result<()> {
        let groups = dir.join("groups");
        let flows = dir.join("flows");
        std::fs::write(&groups, table.groups.join("\n") + "\n")?;
        std::fs::write(&flows, table.flows.join("\n") + "\n")?;
        let (groups, flows) = (
            groups.to_str().context("path")?,
            flows.to_str().context("path")?,
        );
        let ovs_target = self.ovs.target();
        for (name, target) in [("Open vSwitch", ovs_target.as_str()), ("scd", SCD_TARGET)] {
            let step = |args: &[&str]| {
                ofctl(&self.ns, target, args).with_context(|| format!("{name} refuses"))
            };
            // Earlier tables' groups may use the same ids.
            step(&["del-flows", "{}"])?;
            step(&["del-groups", "{}"])?;
            if !table.groups.is_empty() {
                step(&["add-groups", "{}", groups])?;
            }
            step(&["add-flows", "{}", flows])?;
        }
        Ok(())
    }
}

#[test]
fn open_vswitch_and_scd_accept_every_compiled_table() -> Result<()> {
    let tools = ["ovs-ofctl", "ovs-vswitchd", "ovsdb-server", "ovsdb-tool"];
    if !require_root(TEST) || !tools.iter().all(|t| require_program(TEST, t)) {
        return Ok(());
    }
    let scc = scc_binary()?;
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let mut files = Vec::new();
    kat_files(&root.join("netkat/tests/policies"), &mut files);
    kat_files(&root.join("netkat/examples"), &mut files);
    let own = files.len();
    if let Some(corpus) = corpus() {
        kat_files(&corpus, &mut files);
    }
    let corpus_files = files.len() - own;
    let mut policies: Vec<(String, String)> = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).with_context(|| f.display().to_string())?;
        policies.push((f.display().to_string(), text));
    }
    policies.extend(random_policies());

    let switches = Switches::start()?;
    let dir = tempfile::Builder::new()
        .prefix("compiled-tables")
        .tempdir()?;
    let (mut compiled, mut refused, mut tables, mut flows, mut groups) = (0, 0, 0, 0, 0);
    for (name, text) in &policies {
        let policy = dir.path().join("policy.kat");
        std::fs::write(&policy, text)?;
        let out = std::process::Command::new(&scc)
            .arg("compile")
            .arg(&policy)
            .output()?;
        if !out.status.success() {
            // Refused with a positioned error (expected failures, virtual
            // programs, what OpenFlow cannot express): nothing to install.
            refused += 1;
            continue;
        }
        compiled += 1;
        for table in switch_tables(&String::from_utf8_lossy(&out.stdout)) {
            if let Err(e) = switches.install(dir.path(), &table) {
                bail!(
                    "{name} ({}): {e:#}\npolicy:\n{text}\ngroups:\n{}\nflows:\n{}",
                    table.heading,
                    table.groups.join("\n"),
                    table.flows.join("\n")
                );
            }
            tables += 1;
            flows += table.flows.len();
            groups += table.groups.len();
        }
    }
    eprintln!(
        "{TEST}: {} policies ({own} own, {corpus_files} from the corpus, {} random): \
         {compiled} compiled, {refused} refused; {tables} tables, {flows} flows, {groups} groups \
         accepted by Open vSwitch and scd",
        policies.len(),
        policies.len() - own - corpus_files
    );
    assert!(
        flows > 1000 && compiled > 100,
        "too little was checked: {compiled} policies, {flows} flows"
    );
    // scd is still up after all of it (an error reply, not a crash, is a refusal).
    let mut switches = switches;
    assert!(
        switches.scd.is_running(),
        "scd exited:\n{}",
        switches.scd.log()
    );
    Ok(())
}
