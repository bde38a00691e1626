//! The switch: the forwarding thread that owns the cache and the ports, and the
//! control thread that owns the tables.
//!
//! The forwarding thread waits on every port and on a wake-up eventfd with epoll,
//! reads frames in batches into one reusable buffer, and for each frame: parse
//! once, answer overlay ARP locally, look the flow up in the megaflow cache (the
//! classifier on a miss), count, and execute the actions in place. It reads the
//! tables as an immutable snapshot, which it swaps for the latest published one
//! between rounds (`tables`): flow-mods, reloads and timeouts run on the control
//! thread, which other threads (the OpenFlow channel, signal handling) send
//! closures through a [`SwitchHandle`], and flow dumps and metrics read a
//! snapshot on their own threads, so no control work ever stops forwarding and the
//! fast path takes no lock. Nothing here allocates per packet. Frames for the controller
//! (packet-in) leave through a bounded channel with a pool of reused buffers: when
//! the channel or the pool is exhausted the frame is dropped and counted, so the
//! OpenFlow channel can never block or slow the fast path. Packet-out frames come in
//! through the same job queue as table changes, so they are ordered with them.

mod busy_poll;
mod counters;
mod event_loop;
mod guards;
mod handle;
mod handoff;
mod link_control;
mod link_watch;
mod output;
mod packet_in;
mod packet_out;
mod port_set;
mod port_state;
mod ports;
mod stage_latency;
mod tables;
mod tunnel_rx;
mod workers;

pub use counters::{
    ChannelCounters, Counter, ListenerCounters, PortCounters, PortInfo, ReloadCounters,
    SwitchCounters, SwitchShared,
};
pub use event_loop::{Switch, SwitchParams};
pub use guards::BindRefused;
pub use handle::{PortOpener, PortOpenerSlot, SwitchGone, SwitchHandle};
pub use link_control::LinkParams;
pub use link_watch::{check_links, watch_links, LINK_POLL};
pub use packet_in::{packet_in_channel, PacketInReceiver, PacketInSender};
pub use port_state::{PortChanges, PortLink, PORT_CHANGES_DEPTH, SETTABLE_CONFIG};
pub use ports::{LocalPort, NewPort, PortSetError, BATCH, MAX_FRAME};
pub use stage_latency::{
    HistogramSnapshot, QuantileBound, Stage, StageHistogram, StageLatency,
    BUCKETS as LATENCY_BUCKETS,
};
pub use tables::{Job, Published, RemovedHook, Reply};

#[cfg(test)]
pub(crate) mod test_switch;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod workers_tests;
