//! The OpenFlow 1.3 model and wire codec of the supercloud, free of I/O.
//!
//! [`flow`] owns the meaning of matches, actions and flow entries that the switch
//! (`scd`), the controller (`scc`) and the policy compiler share. [`text`] reads and
//! writes flows in `ovs-ofctl` syntax. The wire codec turns those into OpenFlow 1.3
//! messages and back. Nothing here opens a socket, reads a clock or spawns a task, so
//! every part is testable without a network.
//!
//! # Text
//! - [`text::format_flow`]`(&FlowSpec) -> String`: `dump-flows --no-stats` form,
//!   accepted back by `ovs-ofctl add-flow` and by [`text::parse_flow`].
//! - [`text::format_flow_stats`]`(&FlowSpec, &FlowStats) -> String`: a `dump-flows` line.
//! - [`text::parse_flow`]`(&str)` / [`text::parse_flows`]`(&str)` `-> Result<_, ParseError>`:
//!   `add-flow` / `add-flows` syntax; errors carry line, column and token.
#![forbid(unsafe_code)]

pub mod flow;
pub mod text;
pub mod wire;

pub use flow::{Action, Field, FlowKey, FlowMatch, FlowSpec, Instruction, Mac, MatchError, PortNo};
pub use text::{format_flow, format_flow_stats, parse_flow, parse_flows, FlowStats, ParseError};
