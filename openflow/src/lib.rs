//! The OpenFlow 1.3 model and wire codec of the supercloud, free of I/O.
//!
//! [`flow`] owns the meaning of matches, actions and flow entries that the switch
//! (`scd`), the controller (`scc`) and the policy compiler share. The wire codec turns
//! those into OpenFlow 1.3 messages and back. Nothing here opens a socket, reads a
//! clock or spawns a task, so every part is testable without a network.
#![forbid(unsafe_code)]

pub mod flow;

pub use flow::{
    Action, Field, FlowKey, FlowMatch, FlowSpec, Instruction, Mac, MatchError, PortNo,
};
