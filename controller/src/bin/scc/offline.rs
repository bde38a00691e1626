//! The commands of `scc` that need no running controller: `check` and `compile`
//! of a policy, with the names of an inventory or without, and the shell
//! completions and man page generated from the CLI definitions.

use anyhow::{Context, Result};
use clap::ValueEnum;
use controller::model::Inventory;
use controller::netkat::{self, diagnostics::Diagnostic, ir::NoNames, Groups, TableOptions};
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// `ovs-ofctl dump-flows` style, one `# switch N` section per switch.
    Text,
    /// JSON: `[{"switch": N, "flows": [FlowSpec…]}]`, one switch a line.
    Json,
}

fn report(path: &Path, src: &str, d: &Diagnostic) -> ExitCode {
    eprint!("{}", d.render(&path.display().to_string(), src));
    ExitCode::from(1)
}

/// Reads a policy file; text that is not UTF-8 is reported at its first bad byte.
fn read_policy(path: &Path) -> Result<Result<String, ExitCode>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        // Up to the bad byte, the lossy text has the same offsets as the file.
        let shown = String::from_utf8_lossy(e.as_bytes()).into_owned();
        let d = Diagnostic::error(netkat::syntax::Span::new(at, at + 1), "not UTF-8 text")
            .with_label("invalid UTF-8 byte")
            .with_hint("policies are UTF-8 text files");
        report(path, &shown, &d)
    }))
}

pub(crate) fn check(path: &Path, inventory: Option<&Path>) -> Result<ExitCode> {
    let src = match read_policy(path)? {
        Ok(src) => src,
        Err(code) => return Ok(code),
    };
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
    let src = match read_policy(path)? {
        Ok(src) => src,
        Err(code) => return Ok(code),
    };
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
    let switches = match switch {
        Some(s) => vec![s],
        None if compiled.switches().is_empty() => vec![0],
        None => compiled.switches().to_vec(),
    };
    let every = switch.is_none() && compiled.switches().is_empty();
    let mut out = TableWriter {
        out: std::io::BufWriter::new(std::io::stdout().lock()),
        format,
        every,
        written: 0,
    };
    // One switch's table at a time, written as soon as it is built: memory stays
    // that of the largest table, whatever the format.
    let streamed = (|| -> Result<Option<ExitCode>> {
        out.start()?;
        for s in switches {
            // Groups appear only where a policy cannot be written without them.
            let table = match compiled.table_with(s, TableOptions::default(), Groups::Allowed) {
                Ok(t) => t,
                Err(e) => {
                    out.out.flush()?;
                    return Ok(Some(report(path, &src, &Diagnostic::global(e.to_string()))));
                }
            };
            for w in &table.warnings {
                let d = Diagnostic::global(w.clone()).warning();
                eprint!("{}", d.render(&path.display().to_string(), &src));
            }
            out.table(s, &table)?;
        }
        out.finish()?;
        Ok(None)
    })();
    match streamed {
        Ok(code) => Ok(code.unwrap_or(ExitCode::SUCCESS)),
        // `scc compile … | head`: the reader has seen enough.
        Err(e) if is_broken_pipe(&e) => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e),
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        let kind = c
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind)
            .or_else(|| c.downcast_ref::<serde_json::Error>()?.io_error_kind());
        kind == Some(std::io::ErrorKind::BrokenPipe)
    })
}

/// Writes compiled tables as text (`ovs-ofctl` syntax) or as one JSON array.
struct TableWriter<W: std::io::Write> {
    out: W,
    format: Format,
    every: bool,
    written: usize,
}

/// One table as JSON, borrowed from the compiled table.
#[derive(serde::Serialize)]
struct TableJson<'a> {
    switch: u64,
    flows: &'a [openflow::flow::FlowSpec],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    groups: &'a [openflow::flow::GroupSpec],
}

impl<W: std::io::Write> TableWriter<W> {
    fn start(&mut self) -> Result<()> {
        if self.format == Format::Json {
            write!(self.out, "[")?;
        }
        Ok(())
    }

    fn table(&mut self, s: u64, t: &netkat::Table) -> Result<()> {
        match self.format {
            Format::Json => {
                let sep = if self.written == 0 { "\n  " } else { ",\n  " };
                write!(self.out, "{sep}")?;
                let json = TableJson {
                    switch: s,
                    flows: &t.flows,
                    groups: &t.groups,
                };
                serde_json::to_writer(&mut self.out, &json)?;
            }
            Format::Text => {
                if self.every {
                    writeln!(self.out, "# every switch ({} flows)", t.flows.len())?;
                } else {
                    writeln!(self.out, "# switch {s} ({} flows)", t.flows.len())?;
                }
                if !t.groups.is_empty() {
                    writeln!(
                        self.out,
                        "# {} groups (ovs-ofctl -O OpenFlow13 add-groups, before the flows)",
                        t.groups.len()
                    )?;
                    for g in &t.groups {
                        // The compiler gives a group whose buckets set a transport
                        // port to flows of one protocol only: print it as theirs.
                        let user = t.flows.iter().find(|f| {
                            f.instructions.iter().any(|i| {
                                matches!(i, openflow::flow::Instruction::ApplyActions(a)
                                    if a.contains(&openflow::flow::Action::Group(g.group_id)))
                            })
                        });
                        let m = user.map_or_else(openflow::flow::FlowMatch::any, |f| f.matcher);
                        writeln!(self.out, "{}", openflow::text::format_group_for(g, &m))?;
                    }
                    writeln!(self.out, "# flows")?;
                }
                for f in &t.flows {
                    writeln!(self.out, "{}", openflow::text::format_flow(f))?;
                }
            }
        }
        self.written += 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if self.format == Format::Json {
            writeln!(self.out, "\n]")?;
        }
        self.out.flush()?;
        Ok(())
    }
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
