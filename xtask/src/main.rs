//! `cargo run -p xtask -- check-structure [--max-lines N] [--root DIR]`: prints the
//! structure report of the workspace and exits with 1 when it finds anything.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use xtask::{check_workspace, Config};

const USAGE: &str = "usage: cargo run -p xtask -- check-structure [--max-lines N] [--root DIR]";

fn main() -> Result<ExitCode> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some("check-structure") {
        eprintln!("{USAGE}");
        return Ok(ExitCode::from(2));
    }
    // The workspace this xtask belongs to, wherever cargo was started from.
    let mut root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask lives inside the workspace")?
        .to_path_buf();
    let mut config = Config::default();
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--max-lines" => config.max_lines = value.parse().context("--max-lines")?,
            "--root" => root = PathBuf::from(value),
            _ => bail!("unknown argument {flag}\n{USAGE}"),
        }
    }
    let report = check_workspace(&root, &config)?;
    print!("{report}");
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
