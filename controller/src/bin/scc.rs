//! `scc`: command-line front end of the supercloud controller.
//!
//! Each subcommand is one variant of [`Command`] and one function; daemon verbs
//! are added the same way. This file owns argument parsing, file reading and
//! printing; the work is done by the `controller` library.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use controller::netkat::{self, diagnostics::Diagnostic, ir::NoNames, TableOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "scc", version, about = "The supercloud controller")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse and check a NetKAT policy; print errors the way rustc does.
    Check {
        /// The policy file (Frenetic syntax).
        file: PathBuf,
    },
    /// Compile a NetKAT policy to OpenFlow 1.3 flow tables.
    Compile {
        /// The policy file (Frenetic syntax).
        policy: PathBuf,
        /// Only this switch's table.
        #[arg(long)]
        switch: Option<u64>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// `ovs-ofctl dump-flows` style, one `# switch N` section per switch.
    Text,
    /// JSON: `[{"switch": N, "flows": [FlowSpec…]}]`.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { file } => check(&file),
        Command::Compile {
            policy,
            switch,
            format,
        } => compile(&policy, switch, format),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn report(path: &Path, src: &str, d: &Diagnostic) -> ExitCode {
    eprint!("{}", d.render(&path.display().to_string(), src));
    ExitCode::from(1)
}

fn check(path: &Path) -> Result<ExitCode> {
    let src = read(path)?;
    match netkat::check(&src, &NoNames) {
        Ok(_) => {
            println!("{}: ok", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(d) => Ok(report(path, &src, &d)),
    }
}

fn compile(path: &Path, switch: Option<u64>, format: Format) -> Result<ExitCode> {
    let src = read(path)?;
    let prog = match netkat::check(&src, &NoNames) {
        Ok(p) => p,
        Err(d) => return Ok(report(path, &src, &d)),
    };
    let mut compiled = match netkat::compile(&prog) {
        Ok(c) => c,
        Err(e) => return Ok(report(path, &src, &Diagnostic::global(e.to_string()))),
    };
    let opts = TableOptions::default();
    let tables = match switch {
        Some(s) => compiled.table(s, opts).map(|t| vec![(s, t)]),
        None => compiled.tables(opts),
    };
    let tables = match tables {
        Ok(t) => t,
        Err(e) => return Ok(report(path, &src, &Diagnostic::global(e.to_string()))),
    };
    for (_, t) in &tables {
        for w in &t.warnings {
            let d = Diagnostic::global(w.clone()).warning();
            eprint!("{}", d.render(&path.display().to_string(), &src));
        }
    }
    match format {
        Format::Json => {
            let v: Vec<serde_json::Value> = tables
                .iter()
                .map(|(s, t)| serde_json::json!({ "switch": s, "flows": t.flows }))
                .collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Format::Text => {
            let every = switch.is_none() && compiled.switches().is_empty();
            for (s, t) in &tables {
                if every {
                    println!("# every switch ({} flows)", t.flows.len());
                } else {
                    println!("# switch {s} ({} flows)", t.flows.len());
                }
                for f in &t.flows {
                    println!("{}", openflow::text::format_flow(f));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
