//! The `ovs-ofctl` text syntax of flows: formatting and parsing.
//!
//! This module owns the human syntax of a [`FlowSpec`]: [`format_flow`] writes a flow
//! the way `ovs-ofctl dump-flows --no-stats` does (which `ovs-ofctl add-flow` and
//! [`parse_flow`] read back), [`format_flow_stats`] writes the `dump-flows` line with
//! counters, and [`parse_flow`]/[`parse_flows`] read what `ovs-ofctl add-flow` and
//! `add-flows` accept, restricted to the fields and actions of [`crate::flow`].
//! It never touches a socket or a wire encoding, and never panics on any input: every
//! rejection is a [`ParseError`] that names the line, the column and the token.
//!
//! Conventions that follow Open vSwitch:
//! - a flow without `priority=` has priority 32768, and that priority is not printed;
//! - `vlan_vid` is the OpenFlow 1.3 field (`0x1000 | vid` for tagged frames), while
//!   `dl_vlan=5` means "tagged with VID 5" and `dl_vlan_pcp=3` "tagged with PCP 3";
//!   the formatter prints the combination the way OVS prints its `vlan_tci`;
//! - `nw_tos` is the whole TOS byte (DSCP << 2); `ip_dscp` is the six-bit DSCP;
//! - transport ports print as `tp_src`/`tp_dst`, except ICMP's as `icmp_type`/`icmp_code`;
//! - an empty action list prints as `drop`, and `drop` parses to no instruction at all;
//! - `output:N` to a non-controller port parses with `max_len = 0xffff`, the value of
//!   [`Action::output`]; `max_len` only shows for `CONTROLLER:N`.
//!
//! Layers, lowest first: `values` (how a port, an integer or an address is
//! written) and `lex` (the items of a line, and errors pointing at them); `format`
//! (printing); `matches` and `actions` (the two halves of a line); `parse` (whole
//! lines and files).

mod actions;
mod format;
mod lex;
mod matches;
mod parse;
mod values;

pub use format::{
    format_actions, format_flow, format_flow_stats, format_group, format_group_for, format_match,
    FlowStats,
};
pub use lex::ParseError;
pub use parse::{parse_flow, parse_flows, parse_numbered_flows};
pub use values::{format_port, parse_port, DEFAULT_PRIORITY};

#[cfg(test)]
mod tests;
