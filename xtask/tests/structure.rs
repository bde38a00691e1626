//! Runs the structure check on the real workspace, so that `cargo test --workspace`
//! keeps issue #24's promises: no import cycles between modules, no file over 850
//! lines before its unit tests.

use std::path::Path;

use xtask::{check_workspace, Config};

#[test]
fn workspace_has_no_module_cycles_and_no_overlong_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let report = check_workspace(&root, &Config::default()).expect("the workspace can be read");
    assert!(report.is_clean(), "\n{report}");
}
