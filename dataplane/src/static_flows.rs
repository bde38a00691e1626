//! The static flows file of `scd` (`[flows] file`, `ovs-ofctl add-flows` syntax):
//! reading it, the cookie that marks its flows, the tables `scd` starts with, and
//! the reload on `SIGHUP`.
//!
//! Every flow of the file carries [`STATIC_COOKIE`]: that is how a reload finds
//! the flows it owns, and it leaves every other flow (a controller's, or one added
//! with `ovs-ofctl`) where it is, with its counters. The file is checked whole by
//! applying it to a copy of the tables (`Pipeline::replace_cookie`), so the tables'
//! own flow-mod checks decide what is valid, and a refusal names the file's line;
//! a refused file changes nothing. At start, check-config and reload alike the file
//! meets the same tables: [`DEFAULT_TABLES`] of them. This module never parses flow
//! text itself (`openflow::text` does) and changes the tables only through that one
//! replacement, on the switch thread.

use crate::switch::{SwitchGone, SwitchHandle};
use dataplane_core::pipeline::{BatchRefusal, Pipeline, DEFAULT_TABLES};
use openflow::FlowSpec;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// The cookie of every flow loaded from the static flows file ("5cd" for `scd`),
/// distinct from the controller's `0x5cc0_0000_0000_0000`.
pub const STATIC_COOKIE: u64 = 0x5cd0_0000_0000_0001;

/// A static flows file, read and parsed, not yet checked against tables.
#[derive(Debug, Clone)]
pub struct StaticFlows {
    path: PathBuf,
    /// Each flow with the line it was read from.
    flows: Vec<(usize, FlowSpec)>,
}

/// Why a static flows file was refused; each names the file, and the line when
/// one line is to blame.
#[derive(Debug, thiserror::Error)]
pub enum StaticFlowsError {
    /// The file could not be read.
    #[error("cannot read flows file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not a flow in `ovs-ofctl` syntax.
    #[error("{path}:{line}:{column}: {message} (at `{token}`)")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
        /// The offending token.
        token: String,
    },
    /// A line sets a cookie other than [`STATIC_COOKIE`].
    #[error(
        "{path}:{line}: cookie={cookie:#x}: every static flow carries cookie {STATIC_COOKIE:#x} \
         (how a reload tells them from a controller's); leave `cookie=` out"
    )]
    Cookie {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The cookie the line sets.
        cookie: u64,
    },
    /// The tables refuse a line's flow.
    #[error("{path}:{line}: {refusal}")]
    Refused {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Why the tables refuse it.
        refusal: BatchRefusal,
    },
}

/// What installing a static flows file changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replaced {
    /// Static flows that left the tables.
    pub removed: usize,
    /// Flows of the file that were added.
    pub added: usize,
}

/// Why a reload did not happen; the tables are as they were.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file is unreadable or refused.
    #[error(transparent)]
    File(#[from] StaticFlowsError),
    /// The switch thread has stopped.
    #[error(transparent)]
    Switch(#[from] SwitchGone),
}

impl StaticFlows {
    /// Reads and parses the file at `path`.
    pub fn read(path: &Path) -> Result<StaticFlows, StaticFlowsError> {
        let text = std::fs::read_to_string(path).map_err(|source| StaticFlowsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        StaticFlows::parse(&text, path)
    }

    /// Parses `text`, the content of the file at `path`. A line may leave out
    /// `cookie=` (or write 0, or [`STATIC_COOKIE`]); any other cookie is refused.
    pub fn parse(text: &str, path: &Path) -> Result<StaticFlows, StaticFlowsError> {
        let flows =
            openflow::text::parse_numbered_flows(text).map_err(|e| StaticFlowsError::Syntax {
                path: path.to_path_buf(),
                line: e.line,
                column: e.column,
                message: e.message,
                token: e.token,
            })?;
        if let Some((line, flow)) = flows
            .iter()
            .find(|(_, f)| f.cookie != 0 && f.cookie != STATIC_COOKIE)
        {
            return Err(StaticFlowsError::Cookie {
                path: path.to_path_buf(),
                line: *line,
                cookie: flow.cookie,
            });
        }
        Ok(StaticFlows {
            path: path.to_path_buf(),
            flows,
        })
    }

    /// Number of flows in the file.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// True when the file holds no flow.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Replaces every flow of `pipeline` with cookie [`STATIC_COOKIE`] by the
    /// file's, all or nothing: on an error the tables are as they were.
    pub fn install(
        self,
        pipeline: &mut Pipeline,
        now: Instant,
    ) -> Result<Replaced, StaticFlowsError> {
        let added = self.flows.len();
        let (lines, flows): (Vec<usize>, Vec<FlowSpec>) = self.flows.into_iter().unzip();
        match pipeline.replace_cookie(STATIC_COOKIE, flows, now) {
            Ok(removed) => Ok(Replaced {
                removed: removed.len(),
                added,
            }),
            Err(e) => Err(StaticFlowsError::Refused {
                path: self.path,
                line: lines.get(e.index).copied().unwrap_or_default(),
                refusal: e.refusal,
            }),
        }
    }
}

/// The tables `scd` starts with: [`DEFAULT_TABLES`] of them, holding the static
/// flows if there are any, installed at `now`.
pub fn initial_pipeline(
    flows: Option<StaticFlows>,
    now: Instant,
) -> Result<Pipeline, StaticFlowsError> {
    let mut pipeline = Pipeline::new(DEFAULT_TABLES);
    if let Some(flows) = flows {
        flows.install(&mut pipeline, now)?;
    }
    Ok(pipeline)
}

/// Reads the file at `path` again and replaces the static flows of the running
/// switch with it, in one job on the switch thread (no packet sees half of it).
/// Counts the outcome in the switch's reload counters.
pub fn reload(handle: &SwitchHandle, path: &Path) -> Result<Replaced, ReloadError> {
    let result = StaticFlows::read(path)
        .map_err(ReloadError::from)
        .and_then(|flows| Ok(handle.call(move |p, now| flows.install(p, now))??));
    let counters = &handle.shared.reloads;
    let outcome = match &result {
        Ok(_) => &counters.applied,
        Err(_) => &counters.failed,
    };
    outcome.fetch_add(1, Ordering::Relaxed);
    result
}

#[cfg(test)]
mod tests;
