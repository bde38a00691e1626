//! The project's own policies (`tests/policies/`, written for this test suite)
//! put through the checks `conformance.rs` runs on Frenetic's corpus, so that a
//! fresh clone with no corpus beside it still tests the parser, the evaluator and
//! the compilers on every language feature the corpus exercises:
//!
//! - `local/`: compiled per switch, tables run in the switch's classifier and
//!   compared with the reference evaluator;
//! - `dup/`: programs with `dup`, compiled as packet programs;
//! - `global/`: programs with links (`=>`), compiled by the global compiler and
//!   run switch by switch over the links;
//! - `moves/`: end-to-end programs whose topology is written with moves (FDD and
//!   hop tables against the evaluator);
//! - `refused/`: policies refused with a positioned error;
//! - `predicates/` and `virtual/`: parsed with the predicate and policy entry
//!   points (Frenetic's virtual compiler's inputs, which `scc` does not compile).
//!
//! A last test checks that the files together use every keyword and field the
//! corpus uses.

mod common;

use common::network::{check_fdd, check_global, check_hops};
use common::{check_local, check_refused};
use netkat::ir::{NoNames, Program};
use netkat::lexer::lex;
use netkat::parser;
use std::collections::BTreeSet;
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/policies"))
}

/// The `.kat` files of a subdirectory, as `(name, text)`, in name order.
fn files(subdir: &str) -> Vec<(String, String)> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir().join(subdir))
        .unwrap_or_else(|e| panic!("{subdir}: {e}"))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "kat"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|p| {
            let name = format!(
                "{subdir}/{}",
                p.file_name().expect("name").to_string_lossy()
            );
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, text)
        })
        .collect()
}

fn program(name: &str, src: &str) -> Program {
    netkat::check(src, &NoNames).unwrap_or_else(|d| panic!("{}", d.render(name, src)))
}

#[test]
fn local_policies_compile_and_match_the_evaluator() {
    let local = files("local");
    for (name, src) in &local {
        let prog = program(name, src);
        let n = check_local(&prog, 300, 7).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(n > 0, "{name}: no packets compared");
    }
    assert!(local.len() >= 6, "only {} local policies", local.len());
}

#[test]
fn dup_policies_compile_as_packet_programs() {
    for (name, src) in files("dup") {
        let prog = program(&name, &src);
        check_local(&prog, 100, 3).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn global_policies_compile_and_match_the_evaluator() {
    let global = files("global");
    for (name, src) in &global {
        let prog = program(name, src);
        assert!(prog.pol.has_links(), "{name}: no links");
        check_global(name, &prog, 300, 11);
    }
    assert!(global.len() >= 4, "only {} global policies", global.len());
}

#[test]
fn programs_with_moves_match_the_evaluator() {
    for (name, src) in files("moves") {
        let prog = program(&name, &src);
        assert!(check_fdd(&prog, 2000, 497) > 0, "{name}: nothing delivered");
        let (wires, delivered) = check_hops(&prog, 1200, 4971);
        assert!(wires > 0, "{name}: no wires");
        assert!(
            delivered > 100,
            "{name}: only {delivered} packets delivered"
        );
    }
}

#[test]
fn refused_policies_fail_with_positions() {
    let expected = [
        ("refused/assign-alias.kat", 4, 3, "immutable"),
        ("refused/assign-constant.kat", 3, 1, "immutable"),
        ("refused/assign-ethtyp.kat", 3, 1, "only reads"),
        (
            "refused/assign-ip6-prefix.kat",
            3,
            1,
            "cannot assign an address prefix",
        ),
        ("refused/assign-ipproto.kat", 3, 3, "only reads"),
        ("refused/assign-reserved-port.kat", 2, 18, "reserved port"),
        ("refused/if-without-else.kat", 3, 29, "else"),
        ("refused/ip6-value-in-ip4-field.kat", 2, 17, "IPv4 address"),
        ("refused/misspelt-field.kat", 3, 8, "vlanID"),
        (
            "refused/too-many-meta-fields.kat",
            7,
            5,
            "too many meta fields",
        ),
    ];
    let refused = files("refused");
    assert_eq!(
        refused.len(),
        expected.len(),
        "a refused policy without expectations"
    );
    for ((name, src), (want_name, line, col, needle)) in refused.iter().zip(expected) {
        assert_eq!(name, want_name);
        check_refused(name, src, line, col, needle);
    }
    // As in Frenetic's parser test: `drop` is a policy, not a predicate.
    let src = std::fs::read_to_string(dir().join("drop.kat")).expect("drop.kat");
    assert!(parser::parse_predicate(&src).is_err());
    assert!(parser::parse_policy(&src).is_ok());
}

#[test]
fn predicates_and_virtual_policies_parse_with_their_entry_points() {
    for (name, src) in files("predicates") {
        parser::parse_predicate(&src).unwrap_or_else(|d| panic!("{}", d.render(&name, &src)));
    }
    for (name, src) in files("virtual") {
        parser::parse_policy(&src).unwrap_or_else(|d| panic!("{}", d.render(&name, &src)));
    }
}

/// Every keyword, punctuation and field of Frenetic's syntax that the corpus
/// uses appears in some policy here (as a token, not in a comment).
#[test]
fn the_policies_use_every_feature_of_the_language() {
    let mut seen = BTreeSet::new();
    for subdir in [
        "local",
        "dup",
        "global",
        "moves",
        "refused",
        "predicates",
        "virtual",
    ] {
        for (_, src) in files(subdir) {
            let Ok(tokens) = lex(&src) else {
                continue; // a refused policy may not even lex
            };
            seen.extend(tokens.into_iter().map(|(tok, _)| tok.to_string()));
        }
    }
    let mut missing = Vec::new();
    for word in [
        "filter", ";", "+", "*", "(", ")", "if", "then", "else", "begin", "end", "and", "or",
        "not", "true", "false", "id", "drop", "dup", "let", "var", "in", "pipe", "query", "@",
        "=>", "=>>", "=", ":=", "/",
    ] {
        if !seen.contains(&format!("`{word}`")) {
            missing.push(word.to_string());
        }
    }
    for (field, _) in netkat::syntax::HeaderField::KEYWORDS {
        if !seen.contains(&format!("field `{field}`")) {
            missing.push(field.to_string());
        }
    }
    assert!(missing.is_empty(), "no policy uses {missing:?}");
}
