//! Placement's measurement of one switch, sans-IO: the session asks for every
//! flow's counters and the tunnels' statistics together without waiting, and
//! hands each reply to the [`Sampler`], which gathers the multipart parts and
//! feeds the finished series to the follower (`crate::follow`): traffic per VM and
//! region through `crate::feed`, latency from the tunnels' handshakes.

use crate::daemon::Controller;
use crate::feed::TrafficSampler;
use openflow::wire::{
    FlowStatsEntry, Message, MultipartReply, MultipartReplyBody, TunnelStatsEntry, MORE,
};

/// One measurement in flight: the requests' xids (0 once answered) and the parts
/// received so far.
#[derive(Debug)]
struct InFlight {
    t_ms: u64,
    flows_xid: u32,
    flows: Vec<FlowStatsEntry>,
    tunnels_xid: u32,
    tunnels: Vec<TunnelStatsEntry>,
}

/// What a session remembers between measurements of its switch.
#[derive(Debug)]
pub(super) struct Sampler {
    in_flight: Option<InFlight>,
    traffic: TrafficSampler,
    /// False once the switch refused the tunnel statistics (it is not `scd`).
    tunnel_stats: bool,
}

impl Default for Sampler {
    fn default() -> Sampler {
        Sampler {
            in_flight: None,
            traffic: TrafficSampler::default(),
            tunnel_stats: true,
        }
    }
}

/// Adds a multipart reply's part to `parts`; the whole once it was the last part.
pub(super) fn gather<T>(parts: &mut Vec<T>, part: Option<Vec<T>>, flags: u16) -> Option<Vec<T>> {
    parts.extend(part.into_iter().flatten());
    (flags & MORE == 0).then(|| std::mem::take(parts))
}

impl Sampler {
    /// True when the switch answers tunnel statistics (asked until it refuses).
    pub(super) fn wants_tunnel_stats(&self) -> bool {
        self.tunnel_stats
    }

    /// A new measurement taken at `t_ms`, asked for as `flows_xid` and
    /// `tunnels_xid` (0: not asked); one still unanswered is given up.
    pub(super) fn started(&mut self, t_ms: u64, flows_xid: u32, tunnels_xid: u32) {
        self.in_flight = Some(InFlight {
            t_ms,
            flows_xid,
            flows: Vec::new(),
            tunnels_xid,
            tunnels: Vec::new(),
        });
    }

    /// True when `xid` is a request of the measurement in flight: an error the
    /// switch answers it with is not the switch's error.
    pub(super) fn measuring(&self, xid: u32) -> bool {
        self.in_flight
            .as_ref()
            .is_some_and(|s| xid == s.flows_xid || xid == s.tunnels_xid)
    }

    /// A message from switch `dpid` that answers the measurement in flight, if it
    /// does; anything else is passed over.
    pub(super) fn absorb(&mut self, ctl: &Controller, dpid: u64, xid: u32, m: Message) {
        let Some(s) = self.in_flight.as_mut() else {
            return;
        };
        match m {
            Message::MultipartReply(MultipartReply { flags, body }) if xid == s.flows_xid => {
                let part = match body {
                    MultipartReplyBody::Flow(entries) => Some(entries),
                    _ => None,
                };
                if let Some(flows) = gather(&mut s.flows, part, flags) {
                    s.flows_xid = 0;
                    let (inv, addresses) = ctl.vm_addresses();
                    let host = inv.host_by_dpid(dpid).map(|h| h.name.as_str());
                    let rates = host.and_then(|h| {
                        self.traffic
                            .sample_indexed(&inv, &addresses, h, s.t_ms, &flows)
                    });
                    if let Some(rates) = rates {
                        ctl.follower().record_traffic(&inv, dpid, s.t_ms, rates);
                    }
                }
            }
            Message::MultipartReply(MultipartReply { flags, body }) if xid == s.tunnels_xid => {
                let part = match body {
                    MultipartReplyBody::TunnelStats(entries) => Some(entries),
                    _ => None,
                };
                if let Some(tunnels) = gather(&mut s.tunnels, part, flags) {
                    s.tunnels_xid = 0;
                    let inv = ctl.inventory();
                    ctl.follower().record_tunnels(&inv, dpid, s.t_ms, tunnels);
                }
            }
            Message::Error(e) if xid == s.tunnels_xid => {
                // A switch without the Supercloud experimenter (OVS, say) still
                // gives traffic; only the latency is missing. Asked once.
                s.tunnels_xid = 0;
                self.tunnel_stats = false;
                tracing::info!(
                    dpid,
                    "switch has no tunnel statistics ({e:?}): no latency measured from it"
                );
            }
            Message::Error(e) if xid == s.flows_xid => {
                s.flows_xid = 0;
                tracing::warn!(
                    dpid,
                    "switch refused the flow counters placement samples: {e:?}"
                );
            }
            _ => {}
        }
    }
}
