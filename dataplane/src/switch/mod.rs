//! The switch loop: the one thread that owns the pipeline, the cache and the ports.
//!
//! It waits on every port and on a wake-up eventfd with epoll, reads frames in
//! batches into one reusable buffer, and for each frame: parse once, answer overlay
//! ARP locally, look the flow up in the exact-match cache (the classifier on a miss),
//! count, and execute the actions in place. Other threads (metrics, the OpenFlow
//! channel, signal handling) never touch the tables directly: they send closures
//! through a [`SwitchHandle`] that this thread runs between batches, so the fast path
//! takes no lock. Nothing here allocates per packet. Frames for the controller
//! (packet-in) leave through a bounded channel with a pool of reused buffers: when
//! the channel or the pool is exhausted the frame is dropped and counted, so the
//! OpenFlow channel can never block or slow the fast path. Packet-out frames come in
//! through the same job queue as table changes, so they are ordered with them.

mod counters;
mod event_loop;
mod guards;
mod handle;
mod output;
mod packet_in;
mod ports;

pub use counters::{
    ChannelCounters, Counter, ListenerCounters, PortCounters, PortInfo, ReloadCounters,
    SwitchCounters, SwitchShared,
};
pub use event_loop::{Switch, SwitchParams};
pub use guards::BindRefused;
pub use handle::{Job, RemovedHook, SwitchGone, SwitchHandle};
pub use packet_in::{packet_in_channel, PacketInReceiver, PacketInSender, NO_BUFFER_LEN};
pub use ports::{LocalPort, BATCH, MAX_FRAME};

#[cfg(test)]
pub(crate) mod test_switch;
#[cfg(test)]
mod tests;
