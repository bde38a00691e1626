//! NetKAT, in Frenetic's concrete syntax, compiled through forwarding decision
//! diagrams to OpenFlow 1.3 flow tables.
//!
//! The layers follow Frenetic's: [`syntax`] (the tree, with spans) ← [`lexer`] and
//! [`parser`], which builds through [`build`] either that tree or, in [`check`],
//! directly the core calculus (`lowering`); [`ir`] (the core calculus: fields as a switch sees them, names and
//! scopes resolved); [`semantics`] (the reference evaluator); [`fdd`] (decision
//! diagrams); [`local`] (one table per switch, its priorities ordered with the
//! `overlap` index); [`global`] (programs with links);
//! [`guard`] (ACL guards as drop rules); [`ir::ip6`] (IPv6 fields as two 64-bit halves); [`hops`] (end-to-end programs whose
//! topology is written with moves); [`diagnostics`] (rustc-style errors); [`gen`]
//! (generated policies for benchmarks and tests). This module glues them into
//! [`check`] and [`compile`]. Nothing here does I/O, and no input text makes it
//! panic.

pub mod build;
mod copies;
pub mod diagnostics;
pub mod fdd;
pub mod gen;
pub mod global;
pub mod guard;
pub mod hops;
pub mod ir;
pub mod lexer;
pub mod local;
mod lowering;
mod overlap;
pub mod parser;
mod path;
pub mod semantics;
mod stack;
pub mod syntax;

use diagnostics::Diagnostic;
use fdd::{Fdd, NodeId};
use ir::{HField, Program, Resolver};
pub use local::{Groups, Table, TableOptions};

/// Why a checked policy does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// The FDD could not be built.
    #[error(transparent)]
    Fdd(#[from] fdd::FddError),
    /// A table could not be built.
    #[error(transparent)]
    Local(#[from] local::LocalError),
    /// The program with links could not be compiled.
    #[error(transparent)]
    Global(#[from] global::GlobalError),
}

/// Parses and lowers a policy: the whole front end, in one pass (no syntax
/// tree is built). Errors are positioned.
pub fn check(src: &str, resolver: &dyn Resolver) -> Result<Program, Diagnostic> {
    lowering::check(src, resolver)
}

/// A compiled policy: its FDD over the whole network, from which each switch's
/// table is cut.
#[derive(Debug)]
pub struct Compiled {
    fdd: Fdd,
    root: NodeId,
    deny: Vec<guard::Entry>,
    switches: Vec<u64>,
    global: bool,
    /// What one table leaves for the next.
    scratch: local::Scratch,
}

/// Compiles a checked program (with the global compiler when it has links). A
/// link-free program of the form `in; (p; t)*; p; out` with the topology `t`
/// written as moves compiles to its per-switch program (see [`hops`]); a leading
/// ACL guard of a link-free program becomes drop rules (see [`guard`]).
pub fn compile(prog: &Program) -> Result<Compiled, CompileError> {
    let mut fdd = Fdd::new();
    let global = prog.pol.has_links();
    let (root, deny) = if global {
        (global::compile(&mut fdd, &prog.pol)?, Vec::new())
    } else {
        // A network written end to end with moves runs its hop program on every
        // switch; any other program runs as it is.
        let local = hops::recognise(&prog.pol).map(|h| h.local());
        let split = guard::split(local.as_ref().unwrap_or(&prog.pol));
        (fdd.compile(&split.rest)?, split.deny)
    };
    let mut switches = fdd.tested_values(root, HField::Switch);
    switches.extend(deny.iter().flatten().filter_map(|t| {
        (t.field == HField::Switch && t.len == HField::Switch.bits()).then_some(t.value)
    }));
    switches.sort_unstable();
    switches.dedup();
    Ok(Compiled {
        fdd,
        root,
        deny,
        switches,
        global,
        scratch: local::Scratch::default(),
    })
}

impl Compiled {
    /// The switches the policy names; empty when it treats every switch alike.
    pub fn switches(&self) -> &[u64] {
        &self.switches
    }

    /// True when the global compiler (links, VLAN tags) was used.
    pub fn is_global(&self) -> bool {
        self.global
    }

    /// Number of FDD nodes of the policy (without its ACL guard).
    pub fn fdd_size(&self) -> usize {
        self.fdd.size(self.root)
    }

    /// Number of ACL entries compiled as drop rules instead of through the FDD.
    pub fn guard_entries(&self) -> usize {
        self.deny.len()
    }

    /// The table of one switch, without groups.
    pub fn table(&mut self, switch: u64, opts: TableOptions) -> Result<Table, CompileError> {
        self.table_with(switch, opts, Groups::Refused)
    }

    /// The table of one switch, with groups if `groups` allows them.
    pub fn table_with(
        &mut self,
        switch: u64,
        opts: TableOptions,
        groups: Groups,
    ) -> Result<Table, CompileError> {
        let r = self
            .fdd
            .restrict_seq(self.root, &vec![(HField::Switch, switch)]);
        let tables = local::Tables {
            fdd: &self.fdd,
            deny: &self.deny,
            opts,
            allow_groups: groups,
        };
        Ok(tables.build(r, switch, &mut self.scratch)?)
    }

    /// Every switch's table (a single table under switch 0 when the policy names
    /// no switch), without groups.
    pub fn tables(&mut self, opts: TableOptions) -> Result<Vec<(u64, Table)>, CompileError> {
        self.tables_with(opts, Groups::Refused)
    }

    /// Every switch's table, with groups if `groups` allows them.
    pub fn tables_with(
        &mut self,
        opts: TableOptions,
        groups: Groups,
    ) -> Result<Vec<(u64, Table)>, CompileError> {
        let sws = if self.switches.is_empty() {
            vec![0]
        } else {
            self.switches.clone()
        };
        sws.into_iter()
            .map(|s| Ok((s, self.table_with(s, opts, groups)?)))
            .collect()
    }
}
