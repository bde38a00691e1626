//! The counters and the port list the forwarding workers share with every other
//! thread: written by the forwarding workers, read by metrics and OpenFlow.

use super::port_state::{PortChanges, PortLink};
use super::stage_latency::StageLatency;
use crate::io::tap::LinkProbe;
use arc_swap::ArcSwap;
use dataplane_core::packet::ParseError;
use dataplane_core::port::{PeerStatus, PortCounts};
use openflow::flow::PortNo;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Set (for good) once a switch with more than one forwarding worker is built:
/// from then on every [`Counter`] of this process adds with a locked
/// `fetch_add`, since several workers write the same port and switch counters.
static MULTI_WRITER: AtomicBool = AtomicBool::new(false);

/// Makes every [`Counter`] of this process safe for several writers (never
/// undone: a counter written by two threads with a plain store loses counts).
pub(super) fn counters_for_several_writers() {
    MULTI_WRITER.store(true, Ordering::SeqCst);
}

/// A counter written by the forwarding workers and read by anyone. With one
/// worker, a relaxed load-add-store, with no locked instruction on the fast
/// path; with several, an atomic add (see [`counters_for_several_writers`]).
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        if MULTI_WRITER.load(Ordering::Relaxed) {
            self.0.fetch_add(n, Ordering::Relaxed);
            return;
        }
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counters of one port (`ofp_port_stats`).
#[derive(Debug, Default)]
pub struct PortCounters {
    /// Frames received.
    pub rx_packets: Counter,
    /// Bytes received.
    pub rx_bytes: Counter,
    /// Frames sent.
    pub tx_packets: Counter,
    /// Bytes sent.
    pub tx_bytes: Counter,
    /// Frames that could not be sent (queue full or device gone).
    pub tx_dropped: Counter,
    /// Receive errors other than "nothing to read".
    pub rx_errors: Counter,
    /// Frames a bound port refused, by reason (indexed as `Spoofed::ALL`).
    pub spoofed: [Counter; dataplane_core::port_security::Spoofed::ALL.len()],
}

impl PortCounters {
    /// The counters as they are now.
    pub fn snapshot(&self) -> PortCounts {
        PortCounts {
            rx_packets: self.rx_packets.get(),
            rx_bytes: self.rx_bytes.get(),
            tx_packets: self.tx_packets.get(),
            tx_bytes: self.tx_bytes.get(),
            tx_dropped: self.tx_dropped.get(),
            rx_errors: self.rx_errors.get(),
        }
    }
}

/// A port as the rest of the daemon sees it.
#[derive(Debug)]
pub struct PortInfo {
    /// OpenFlow port number.
    pub number: PortNo,
    /// Interface name.
    pub name: String,
    /// Counters.
    pub counters: PortCounters,
    /// Link state and port-mod configuration.
    pub link: PortLink,
    /// Reads the interface's flags (local ports; tunnels have none).
    pub probe: Option<LinkProbe>,
}

impl PortInfo {
    /// A port with fresh counters, up until its probe says otherwise.
    pub fn new(number: PortNo, name: String, probe: Option<LinkProbe>) -> PortInfo {
        PortInfo {
            number,
            name,
            counters: PortCounters::default(),
            link: PortLink::default(),
            probe,
        }
    }
}

/// Counters of the whole switch.
#[derive(Debug, Default)]
pub struct SwitchCounters {
    /// Frames dropped because their headers were truncated.
    pub malformed_truncated: Counter,
    /// Frames dropped because a length field lied.
    pub malformed_bad_length: Counter,
    /// Frames dropped because of a wrong version field.
    pub malformed_bad_version: Counter,
    /// ARP requests answered by the anycast gateway.
    pub arp_replies: Counter,
    /// IPv6 neighbour and router solicitations answered by the anycast gateway.
    pub nd_replies: Counter,
    /// DHCP requests from VM ports answered (offers, acks and naks).
    pub dhcp_replies: Counter,
    /// DHCP requests from VM ports left unanswered (DHCP off, a port without an
    /// address, a release): consumed all the same, never forwarded.
    pub dhcp_unanswered: Counter,
    /// Frames that matched no flow (or a flow without outputs).
    pub no_output: Counter,
    /// Frames dropped by `dec_ttl`.
    pub ttl_expired: Counter,
    /// Frames sent to the controller.
    pub to_controller: Counter,
    /// Outputs to ports that do not exist.
    pub bad_port: Counter,
    /// Cache hits (published once per batch).
    pub cache_hits: Counter,
    /// Cache misses (published once per batch).
    pub cache_misses: Counter,
    /// Datagrams on the tunnel socket that are not WireGuard for any of our peers.
    pub tunnel_invalid: Counter,
    /// WireGuard data packets whose counter was already seen.
    pub tunnel_replayed: Counter,
    /// Decrypted packets whose source the tables do not place behind their peer.
    pub tunnel_spoofed: Counter,
    /// Decrypted payloads that are not IP.
    pub tunnel_not_ip: Counter,
    /// Frames for a tunnel that are not IP (tunnels carry IP only).
    pub tunnel_non_ip_dropped: Counter,
    /// Frames for a peer with no known endpoint.
    pub tunnel_no_endpoint: Counter,
    /// Frames held while a handshake completes.
    pub tunnel_handshaking: Counter,
    /// Packets over the tunnel MTU (answered with ICMP when IPv4 with DF, with
    /// ICMPv6 packet-too-big when IPv6).
    pub tunnel_too_big: Counter,
    /// ICMPv6 packet-too-big messages sent.
    pub packet_too_big_sent: Counter,
    /// ICMPv6 packet-too-big messages not sent: over the rate limit.
    pub packet_too_big_limited: Counter,
    /// Encrypted datagrams the kernel refused to send (socket buffer full).
    pub tunnel_send_errors: Counter,
    /// Frames (or received datagrams) for a tunnel peer another forwarding
    /// worker owns, dropped because the ring to that worker was full.
    pub tunnel_handoff_dropped: Counter,
    /// Tunnel datagrams a worker received for a peer another worker owns and
    /// handed to it (handshake initiations; anything more: unsteered).
    pub tunnel_datagrams_handed: Counter,
    /// Packet-ins handed to the OpenFlow channel.
    pub packet_in_queued: Counter,
    /// Packet-ins dropped because the channel's queue or buffer pool was full (or
    /// no channel runs).
    pub packet_in_dropped: Counter,
}

/// Counters of the OpenFlow channel, written by its threads (atomic adds).
#[derive(Debug, Default)]
pub struct ChannelCounters {
    /// OpenFlow connections open now.
    pub connections: AtomicU64,
    /// Messages received.
    pub messages_in: AtomicU64,
    /// Error replies sent.
    pub errors_sent: AtomicU64,
    /// Flow-mods applied.
    pub flow_mods: AtomicU64,
    /// Packet-in messages sent (one per connection that got it).
    pub packet_ins_sent: AtomicU64,
    /// Packet-out messages executed.
    pub packet_outs: AtomicU64,
    /// Each passive listener's counters, registered as it starts.
    pub listeners: Mutex<Vec<Arc<ListenerCounters>>>,
}

/// Counters of one passive OpenFlow listener (`ptcp:` or `punix:`).
#[derive(Debug, Default)]
pub struct ListenerCounters {
    /// The listener as written in the configuration, e.g. `punix:/run/scd.mgmt`.
    pub listener: String,
    /// Connections it serves now (held below its cap).
    pub open: AtomicU64,
    /// Connections closed at once because `open` was at the cap.
    pub refused: AtomicU64,
    /// Connections closed because they sent nothing for the idle timeout.
    pub idle_closed: AtomicU64,
    /// Connections to a `pssl:` listener whose TLS handshake failed.
    pub tls_refused: AtomicU64,
}

/// Outcomes of reloading the static flows file, written by whoever reloads it
/// (atomic adds).
#[derive(Debug, Default)]
pub struct ReloadCounters {
    /// Reloads that replaced the static flows.
    pub applied: AtomicU64,
    /// Reloads refused (unreadable or bad file): the tables stayed as they were.
    pub failed: AtomicU64,
}

impl SwitchCounters {
    pub(super) fn malformed(&self, e: &ParseError) -> &Counter {
        match e {
            ParseError::Truncated(_) => &self.malformed_truncated,
            ParseError::BadLength(_) => &self.malformed_bad_length,
            ParseError::BadVersion(_) => &self.malformed_bad_version,
        }
    }

    /// All malformed frames, whatever the reason.
    pub fn malformed_total(&self) -> u64 {
        self.malformed_truncated.get()
            + self.malformed_bad_length.get()
            + self.malformed_bad_version.get()
    }
}

/// What other threads can see of a running switch.
#[derive(Debug)]
pub struct SwitchShared {
    /// Datapath id.
    pub datapath_id: u64,
    /// Ports, in configuration order then in the order they were added; replaced
    /// as a whole when a port comes or goes (read it with [`SwitchShared::ports`]).
    pub ports: ArcSwap<Vec<Arc<PortInfo>>>,
    /// Port changes waiting to be announced as port-status.
    pub port_changes: PortChanges,
    /// Switch-wide counters.
    pub counters: SwitchCounters,
    /// Tunnel peers as of the last second.
    pub tunnels: Mutex<Vec<PeerStatus>>,
    /// When the switch was built (port statistics durations).
    pub started: Instant,
    /// OpenFlow channel counters.
    pub channel: ChannelCounters,
    /// Static flows reload counters.
    pub reloads: ReloadCounters,
    /// Where each forwarding worker's time goes, stage by stage (indexed by
    /// worker: one entry per `[scheduling] workers`).
    pub stage_latency: Box<[StageLatency]>,
}

impl SwitchShared {
    /// The ports as they are now.
    pub fn ports(&self) -> Arc<Vec<Arc<PortInfo>>> {
        self.ports.load_full()
    }

    /// Queues a port-status for port `info` with its state now.
    pub fn announce(&self, reason: openflow::wire::PortReason, info: &PortInfo) {
        self.port_changes.push(
            self.datapath_id,
            reason,
            info.number,
            &info.name,
            info.link.state(),
        );
    }
}
