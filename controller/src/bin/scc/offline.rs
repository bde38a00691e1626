//! The commands of `scc` that need no running controller: `check` and `compile`
//! of a policy, with the names of an inventory or without, and the shell
//! completions and man page generated from the CLI definitions.

use super::read;
use anyhow::Result;
use clap::ValueEnum;
use controller::model::Inventory;
use controller::netkat::{self, diagnostics::Diagnostic, ir::NoNames, Groups, TableOptions};
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    /// `ovs-ofctl dump-flows` style, one `# switch N` section per switch.
    Text,
    /// JSON: `[{"switch": N, "flows": [FlowSpec…]}]`.
    Json,
}

fn report(path: &Path, src: &str, d: &Diagnostic) -> ExitCode {
    eprint!("{}", d.render(&path.display().to_string(), src));
    ExitCode::from(1)
}

pub(crate) fn check(path: &Path, inventory: Option<&Path>) -> Result<ExitCode> {
    let src = read(path)?;
    let Some(inventory) = inventory else {
        return match netkat::check(&src, &NoNames) {
            Ok(_) => {
                println!("{}: ok", path.display());
                Ok(ExitCode::SUCCESS)
            }
            Err(d) => Ok(report(path, &src, &d)),
        };
    };
    let inv = Inventory::load(inventory)?;
    let name = path.display().to_string();
    match controller::program::compile_network(&inv, &src, &name) {
        Ok(tables) => {
            let flows: usize = tables.values().map(Vec::len).sum();
            println!(
                "{name}: ok with {}: {flows} flows on {} switches",
                inventory.display(),
                tables.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(controller::routing::ProgramError::Policy { rendered, .. }) => {
            eprint!("{rendered}");
            Ok(ExitCode::from(1))
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

pub(crate) fn compile(
    path: &Path,
    switch: Option<u64>,
    format: Format,
    inventory: Option<&Path>,
) -> Result<ExitCode> {
    let src = read(path)?;
    let inv = inventory.map(Inventory::load).transpose()?;
    let resolver: &dyn netkat::ir::Resolver = match &inv {
        Some(inv) => inv,
        None => &NoNames,
    };
    let prog = match netkat::check(&src, resolver) {
        Ok(p) => p,
        Err(d) => return Ok(report(path, &src, &d)),
    };
    let mut compiled = match netkat::compile(&prog) {
        Ok(c) => c,
        Err(e) => return Ok(report(path, &src, &Diagnostic::global(e.to_string()))),
    };
    // Groups appear only where a policy cannot be written without them.
    let opts = TableOptions::default();
    let tables = match switch {
        Some(s) => compiled
            .table_with(s, opts, Groups::Allowed)
            .map(|t| vec![(s, t)]),
        None => compiled.tables_with(opts, Groups::Allowed),
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
                .map(|(s, t)| {
                    let mut v = serde_json::json!({ "switch": s, "flows": t.flows });
                    if !t.groups.is_empty() {
                        v["groups"] = serde_json::json!(t.groups);
                    }
                    v
                })
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
                if !t.groups.is_empty() {
                    println!(
                        "# {} groups (ovs-ofctl -O OpenFlow13 add-groups, before the flows)",
                        t.groups.len()
                    );
                    for g in &t.groups {
                        println!("{}", openflow::text::format_group(g));
                    }
                    println!("# flows");
                }
                for f in &t.flows {
                    println!("{}", openflow::text::format_flow(f));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the completion script of `shell` for the command line `cli`.
pub(crate) fn completions(shell: clap_complete::Shell, mut cli: clap::Command) {
    clap_complete::generate(shell, &mut cli, "scc", &mut std::io::stdout());
}

/// Prints the man page of the command line `cli`.
pub(crate) fn man(cli: clap::Command) -> Result<ExitCode> {
    clap_mangen::Man::new(cli).render(&mut std::io::stdout())?;
    Ok(ExitCode::SUCCESS)
}
