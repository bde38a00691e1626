//! The static flows file: its cookie, a reload that keeps every other flow with
//! its counters, files refused whole with their line, and the reload counters of a
//! running switch.

use super::*;
use crate::switch::test_switch::running;
use openflow::text::{format_flow, parse_flow};

const PATH: &str = "/etc/scd/static.flows";

/// The controller's cookie (`scc`'s `SCC_COOKIE`).
const CONTROLLER: u64 = 0x5cc0_0000_0000_0000;

const FIRST: &str = "# routes\n\
    priority=100,ip,nw_dst=100.64.1.1,actions=output:1\n\
    \n\
    priority=100,ip,nw_dst=100.64.1.2,actions=output:2\n";

fn parsed(text: &str) -> StaticFlows {
    StaticFlows::parse(text, Path::new(PATH)).unwrap()
}

/// Every flow of every table as `ovs-ofctl dump-flows` would print it, with its
/// packet and byte counts.
fn dump(p: &Pipeline) -> Vec<String> {
    (0..p.n_tables())
        .flat_map(|t| p.entries(t))
        .map(|e| format!("{} [{}/{}]", format_flow(&e.spec), e.packets(), e.bytes()))
        .collect()
}

/// The tables of a switch that loaded [`FIRST`] and then got one flow from its
/// controller, which has seen a packet of 98 bytes.
fn managed() -> Pipeline {
    let now = Instant::now();
    let mut p = initial_pipeline(Some(parsed(FIRST)), now).unwrap();
    let mut theirs = parse_flow("priority=300,ip,nw_dst=100.64.2.2,actions=output:3").unwrap();
    theirs.cookie = CONTROLLER;
    let id = p.add(theirs, now).unwrap();
    p.account(&[id], &[(0, true)], 98, now);
    p
}

#[test]
fn the_file_starts_in_the_default_tables_with_the_static_cookie() {
    let p = initial_pipeline(Some(parsed(FIRST)), Instant::now()).unwrap();
    assert_eq!(p.n_tables(), DEFAULT_TABLES);
    assert_eq!(
        dump(&p),
        [
            "cookie=0x5cd0000000000001, priority=100,ip,nw_dst=100.64.1.1 actions=output:1 [0/0]",
            "cookie=0x5cd0000000000001, priority=100,ip,nw_dst=100.64.1.2 actions=output:2 [0/0]",
        ]
    );
    assert_eq!(initial_pipeline(None, Instant::now()).unwrap().len(), 0);
}

#[test]
fn a_reload_replaces_only_the_static_flows_and_keeps_the_controllers_counters() {
    let mut p = managed();
    let edited = "priority=100,ip,nw_dst=100.64.1.1,actions=output:1\n\
                  priority=1,actions=drop\n";
    let replaced = parsed(edited).install(&mut p, Instant::now()).unwrap();
    assert_eq!(
        replaced,
        Replaced {
            removed: 2,
            added: 2
        }
    );
    assert_eq!(
        dump(&p),
        [
            "cookie=0x5cc0000000000000, priority=300,ip,nw_dst=100.64.2.2 actions=output:3 [1/98]",
            "cookie=0x5cd0000000000001, priority=100,ip,nw_dst=100.64.1.1 actions=output:1 [0/0]",
            "cookie=0x5cd0000000000001, priority=1 actions=drop [0/0]",
        ]
    );
}

#[test]
fn a_bad_file_is_refused_with_its_line_and_nothing_changes() {
    let good = "priority=100,ip,nw_dst=100.64.1.1,actions=output:1\n";
    for (bad, expected) in [
        (
            "table=254,priority=5,actions=drop",
            "/etc/scd/static.flows:2: table 254 does not exist",
        ),
        (
            "# jump\npriority=5,actions=goto_table:254",
            "/etc/scd/static.flows:3: goto_table:254 from table 0 must name a later table below 254",
        ),
        (
            "priority=5,actions=group:7",
            "/etc/scd/static.flows:2: group 7 does not exist",
        ),
        (
            "priority=300,ip,nw_dst=100.64.2.2,actions=drop",
            "/etc/scd/static.flows:2: table 0, priority 300 and this match already hold a flow \
             with cookie 0x5cc0000000000000",
        ),
    ] {
        let mut p = managed();
        let (before, generation) = (dump(&p), p.generation());
        let error = parsed(&format!("{good}{bad}\n"))
            .install(&mut p, Instant::now())
            .unwrap_err()
            .to_string();
        assert!(error.starts_with(expected), "{error}");
        assert_eq!((dump(&p), p.generation()), (before, generation), "{bad}");
    }
}

#[test]
fn a_line_with_another_cookie_is_refused() {
    let error = StaticFlows::parse(
        "priority=1,actions=drop\ncookie=0x6000,priority=2,actions=drop\n",
        Path::new(PATH),
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("/etc/scd/static.flows:2: cookie=0x6000: every static flow carries"),
        "{error}"
    );
    // What `ovs-ofctl dump-flows` prints of a static flow loads back.
    let again = parsed("cookie=0x5cd0000000000001, priority=1 actions=drop\n");
    assert_eq!(again.len(), 1);
}

#[test]
fn reloads_on_a_running_switch_are_counted_and_a_failed_one_changes_nothing() {
    let switch = running(managed());
    let handle = &switch.handle;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows");

    std::fs::write(&path, "priority=1,actions=drop\n").unwrap();
    let replaced = reload(handle, &path).unwrap();
    assert_eq!((replaced.removed, replaced.added), (2, 1));
    let after_good = handle.call(|p, _| dump(p)).unwrap();

    std::fs::write(&path, "priority=2,actions=drop\ntable=254,actions=drop\n").unwrap();
    let error = reload(handle, &path).unwrap_err().to_string();
    assert!(
        error.ends_with("flows:2: table 254 does not exist"),
        "{error}"
    );
    assert_eq!(handle.call(|p, _| dump(p)).unwrap(), after_good);

    std::fs::remove_file(&path).unwrap();
    assert!(matches!(
        reload(handle, &path),
        Err(ReloadError::File(StaticFlowsError::Read { .. }))
    ));
    let counters = &handle.shared.reloads;
    assert_eq!(
        (
            counters.applied.load(Ordering::Relaxed),
            counters.failed.load(Ordering::Relaxed)
        ),
        (1, 2)
    );
}
