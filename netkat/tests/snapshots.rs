//! Snapshot tests (insta) of the tables compiled from the example policies shipped
//! in `netkat/examples/`, in `ovs-ofctl dump-flows` text; each table is also
//! checked against the reference evaluator, so a reviewed snapshot is a correct one.

mod common;

use netkat::ir::NoNames;
use netkat::TableOptions;

fn compile_text(name: &str) -> String {
    let path = format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let src = std::fs::read_to_string(&path).expect("example");
    let prog = netkat::check(&src, &NoNames).unwrap_or_else(|d| panic!("{}", d.render(name, &src)));
    if !prog.pol.has_links() {
        assert!(common::check_local(&prog, 500, 5).expect("compiles") > 0);
    }
    let mut compiled = netkat::compile(&prog).expect("compiles");
    let mut out = String::new();
    for (sw, t) in compiled.tables(TableOptions::default()).expect("tables") {
        common::check_table(&t.flows);
        out.push_str(&format!("# switch {sw}\n{}", common::dump(&t.flows)));
    }
    out
}

#[test]
fn tenant_isolation() {
    insta::assert_snapshot!(compile_text("tenant-isolation.kat"));
}

#[test]
fn routing() {
    insta::assert_snapshot!(compile_text("routing.kat"));
}

#[test]
fn acl() {
    insta::assert_snapshot!(compile_text("acl.kat"));
}

#[test]
fn waypoint() {
    insta::assert_snapshot!(compile_text("waypoint.kat"));
}
