//! OpenFlow translation: decoded OpenFlow messages become pipeline operations,
//! and pipeline and port state become replies (statistics, descriptions,
//! flow-removed and packet-in messages, error codes).
//!
//! Pure functions of their inputs and the time passed in, so the daemon's
//! OpenFlow session runs them on the switch thread and tests run them alone.

mod duration;
mod flow_mod;
mod messages;
mod stats;

pub use flow_mod::{
    apply_flow_mod, apply_group_mod, group_error_code, packet_out_error_code, table_error_code,
};

pub use messages::{flow_removed_message, packet_in_message, MAX_PACKET_IN_DATA};
pub use stats::{
    aggregate, flow_stats, group_descs, port_desc, port_descs, port_stats, table_stats,
    tunnel_stats, LinkState,
};
