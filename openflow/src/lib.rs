//! The OpenFlow 1.3 model and wire codec of the supercloud, free of I/O.
//!
//! [`flow`] owns the meaning of matches, actions and flow entries that the switch
//! (`scd`), the controller (`scc`) and the policy compiler share. [`text`] reads and
//! writes flows in `ovs-ofctl` syntax. [`wire`] turns messages into OpenFlow 1.3 bytes
//! and back. Nothing here opens a socket, reads a clock or spawns a task, so every part
//! is testable without a network, and no input — bytes or text — can make it panic.
//!
//! # Text (`ovs-ofctl` syntax)
//! - [`text::format_flow`]`(&FlowSpec) -> String`: the `dump-flows --no-stats` form,
//!   accepted back by `ovs-ofctl add-flow` and by [`text::parse_flow`].
//! - [`text::format_flow_stats`]`(&FlowSpec, &FlowStats) -> String`: one `dump-flows`
//!   line (without OVS's leading space).
//! - [`text::parse_flow`]`(&str)` / [`text::parse_flows`]`(&str)` `-> Result<_, ParseError>`:
//!   `add-flow` / `add-flows` syntax (`#` comments, blank lines); errors carry line,
//!   column and the offending token.
//! - [`text::format_match`], [`text::format_actions`], [`text::format_port`],
//!   [`text::parse_port`] for the pieces; [`text::format_group`] for a group in
//!   `dump-groups` form.
//!
//! # Wire (OpenFlow 1.3)
//! A connection loop in `scd` or `scc` looks like:
//! ```
//! use openflow::wire::{decode, encode_into, error_reply_for, frame_len, Message, Hello};
//! let mut inbox: Vec<u8> = encode_into_vec(&Message::Hello(Hello::of13()), 1);
//! inbox.extend(encode_into_vec(&Message::BarrierRequest, 2));
//! let mut outbox = Vec::new();
//! loop {
//!     let n = match frame_len(&inbox) {
//!         Ok(Some(n)) => n,
//!         Ok(None) => break,          // wait for more bytes
//!         Err(_fatal) => break,       // header length < 8: close the connection
//!     };
//!     let frame: Vec<u8> = inbox.drain(..n).collect();
//!     match decode(&frame) {
//!         Ok((xid, Message::BarrierRequest)) => {
//!             encode_into(&Message::BarrierReply, xid, &mut outbox).unwrap()
//!         }
//!         Ok((_xid, _other)) => {}
//!         Err(e) => encode_into(&error_reply_for(&e, &frame), e.xid, &mut outbox).unwrap(),
//!     }
//! }
//! assert_eq!(decode(&outbox).unwrap(), (2, Message::BarrierReply));
//! # fn encode_into_vec(m: &Message, xid: u32) -> Vec<u8> { openflow::wire::encode(m, xid).unwrap() }
//! ```
//! - [`wire::frame_len`]`(&[u8]) -> Result<Option<usize>, FrameError>` cuts a stream.
//! - [`wire::decode`]`(&[u8]) -> Result<(u32, Message), DecodeError>`; a
//!   [`wire::DecodeError`] carries `xid`, `msg_type` and the [`wire::ErrorCode`] to
//!   answer with; [`wire::error_reply_for`] builds that answer (first 64 bytes).
//! - [`wire::encode`]`(&Message, xid) -> Result<Vec<u8>, EncodeError>` and
//!   [`wire::encode_into`] (appends to a reusable buffer). Long multipart replies are
//!   cut with [`wire::MultipartReply::split`].
//! - [`wire::Hello::of13`] / [`wire::Hello::accepts_of13`] negotiate the version;
//!   [`wire::TableFeatures::supercloud`] answers the table-features query that
//!   `ovs-ofctl` sends before `add-flow` and friends.
#![forbid(unsafe_code)]

pub mod flow;
pub mod text;
pub mod wire;

pub use flow::{Action, Field, FlowKey, FlowMatch, FlowSpec, Instruction, Mac, MatchError, PortNo};
pub use text::{format_flow, format_flow_stats, parse_flow, parse_flows, FlowStats, ParseError};
