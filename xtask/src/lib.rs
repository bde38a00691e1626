//! Repository chores for `supercloud-net`, run as `cargo run -p xtask -- <task>`.
//!
//! The one task so far, the structure check, keeps issue #24's promises true: no
//! import cycles between modules (a reference from `x::y` to `x::z` is an edge
//! `y -> z` among the siblings under `x`), and no source file longer than about 850
//! lines before its unit tests. [`source`] blanks comments and literals and
//! tokenizes, [`scan`] reads one file's module references, [`workspace`] finds the
//! crates and their module files, [`graph`] finds cycles and [`report`] prints them.
//! Test code (`#[cfg(test)]`) is never looked at: tests may reach anywhere.
#![forbid(unsafe_code)]

pub mod graph;
pub mod report;
pub mod scan;
pub mod source;
pub mod workspace;

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Result;

use crate::graph::target_cycles;
use crate::report::{LongFile, Report};
use crate::workspace::{load_workspace, Target};

/// The team's limit on lines before a file's unit tests (`docs/ARCHITECTURE.md`).
pub const DEFAULT_MAX_LINES: usize = 850;

/// What the structure check allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Most lines a file may have before its `#[cfg(test)]` module.
    pub max_lines: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_lines: DEFAULT_MAX_LINES,
        }
    }
}

/// Checks every crate of the workspace whose root `Cargo.toml` is in `root`.
pub fn check_workspace(root: &Path, config: &Config) -> Result<Report> {
    Ok(check_targets(&load_workspace(root)?, config))
}

/// Checks crate targets already loaded. A file shared by two targets (a library
/// module that a binary also declares) is measured once.
pub fn check_targets(targets: &[Target], config: &Config) -> Report {
    let cycles = targets.iter().flat_map(target_cycles).collect();
    let mut measured = BTreeSet::new();
    let mut long_files = Vec::new();
    for file in targets.iter().flat_map(|t| &t.files) {
        if measured.insert(file.path.clone()) && file.scan.lines_before_tests > config.max_lines {
            long_files.push(LongFile {
                path: file.path.clone(),
                lines_before_tests: file.scan.lines_before_tests,
            });
        }
    }
    long_files.sort_by_key(|file| std::cmp::Reverse(file.lines_before_tests));
    Report {
        cycles,
        long_files,
        max_lines: config.max_lines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::load_target;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    fn check(files: &[(&str, &str)], max_lines: usize) -> Report {
        let files: BTreeMap<PathBuf, String> = files
            .iter()
            .map(|(p, t)| (PathBuf::from(p), (*t).to_owned()))
            .collect();
        let target = load_target(&files, "demo".into(), Path::new("src/lib.rs"));
        check_targets(&[target], &Config { max_lines })
    }

    #[test]
    fn a_cycle_is_reported_with_evidence_for_each_edge() {
        let report = check(
            &[
                ("src/lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
                ("src/a.rs", "//! A.\n\nuse crate::b::Thing;\n"),
                ("src/b.rs", "//! B.\nfn f() {\n    crate::a::run();\n}\n"),
                ("src/c.rs", "use crate::a;\n"),
            ],
            850,
        );
        assert_eq!(
            report.to_string(),
            "1 import cycle(s) between sibling modules (break each by moving plain types to a \
             lower module or a function to where it belongs):\n  \
             demo: a -> b -> a\n    \
             a -> b                         src/a.rs:3\n    \
             b -> a                         src/b.rs:3\n"
        );
    }

    #[test]
    fn edges_count_between_siblings_at_each_level_only() {
        let report = check(
            &[
                ("src/lib.rs", "pub mod switch;\npub mod tunnel;\n"),
                ("src/switch/mod.rs", "mod run;\nmod output;\n"),
                (
                    "src/switch/run.rs",
                    "use crate::tunnel::peer::Peer;\nuse super::output;\n",
                ),
                ("src/switch/output.rs", "use super::run::Loop;\n"),
                ("src/tunnel/mod.rs", "pub mod peer;\n"),
                ("src/tunnel/peer.rs", "use crate::switch::Frame;\n"),
            ],
            850,
        );
        let cycles: Vec<String> = report
            .cycles
            .iter()
            .map(|c| format!("{}:{}", c.level.join("::"), c.nodes.join(",")))
            .collect();
        assert_eq!(cycles, [":switch,tunnel", "switch:output,run"]);
    }

    #[test]
    fn test_code_may_reach_anywhere() {
        let report = check(
            &[
                ("src/lib.rs", "mod a;\nmod b;\n"),
                ("src/a.rs", "use crate::b;\n"),
                (
                    "src/b.rs",
                    "#[cfg(test)]\nmod tests {\n    use crate::a;\n}\n#[cfg(test)]\nmod more;\n",
                ),
                ("src/b/more.rs", "use crate::a;\n"),
            ],
            850,
        );
        assert!(report.is_clean(), "{report}");
    }

    #[test]
    fn super_paths_resolve_from_the_file_module() {
        let report = check(
            &[
                ("src/lib.rs", "mod net;\n"),
                (
                    "src/net/mod.rs",
                    "mod api;\nmod session;\nuse self::api::Server;\n",
                ),
                ("src/net/api.rs", "fn f() { super::session::open(); }\n"),
                ("src/net/session.rs", "use super::super::net::api::Route;\n"),
            ],
            850,
        );
        assert_eq!(report.cycles.len(), 1);
        assert_eq!(report.cycles[0].level, ["net"]);
        assert_eq!(report.cycles[0].nodes, ["api", "session"]);
    }

    #[test]
    fn re_exports_are_followed_to_the_module_that_owns_the_item() {
        let report = check(
            &[
                ("src/lib.rs", "mod pipeline;\n"),
                (
                    "src/pipeline/mod.rs",
                    "mod groups;\nmod table;\npub use table::FlowTable;\n",
                ),
                (
                    "src/pipeline/groups.rs",
                    "use super::FlowTable;\npub struct Group;\n",
                ),
                (
                    "src/pipeline/table.rs",
                    "use crate::pipeline::groups::{self as g};\nfn f(_: g::Group) {}\n",
                ),
            ],
            850,
        );
        let cycles: Vec<String> = report.cycles.iter().map(ToString::to_string).collect();
        assert_eq!(
            cycles,
            ["demo::pipeline: groups -> table -> groups\n    \
              groups -> table                src/pipeline/groups.rs:1\n    \
              table -> groups                src/pipeline/table.rs:1"]
        );
    }

    #[test]
    fn comments_and_strings_are_not_dependencies() {
        let report = check(
            &[
                ("src/lib.rs", "mod a;\nmod b;\n"),
                ("src/a.rs", "use crate::b;\n"),
                (
                    "src/b.rs",
                    "/// Unlike [`crate::a::X`].\nconst S: &str = \"crate::a\"; // crate::a\n",
                ),
            ],
            850,
        );
        assert!(report.is_clean(), "{report}");
    }

    #[test]
    fn long_files_count_lines_before_their_test_module() {
        let body = "fn f() {}\n".repeat(5);
        let with_tests = format!("{body}#[cfg(test)]\nmod tests {{\n{}}}\n", "\n".repeat(20));
        let report = check(
            &[
                ("src/lib.rs", "mod long;\nmod short;\n"),
                ("src/long.rs", &format!("{body}{body}")),
                ("src/short.rs", &with_tests),
            ],
            6,
        );
        assert_eq!(
            report.long_files,
            [LongFile {
                path: PathBuf::from("src/long.rs"),
                lines_before_tests: 10,
            }]
        );
    }
}
