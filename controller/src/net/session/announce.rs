//! The announcements of migrating VMs a session hears as packet-ins (RARP or
//! gratuitous ARP from the VM's new port), handed to the daemon's reroute.

use super::Session;

impl Session {
    /// A packet-in: the announcement (RARP or gratuitous ARP) of a migrating VM,
    /// whose reroute is committed on a blocking thread, not on this session's.
    pub(super) fn packet_in(&self, pin: &openflow::wire::PacketIn) {
        let Some(dpid) = self.dpid else { return };
        let eth_type = pin
            .data
            .get(12..14)
            .map(|b| u16::from_be_bytes([b[0], b[1]]));
        let in_port = pin
            .matcher
            .get(openflow::flow::Field::InPort)
            .map(|(v, _)| v);
        if let (Some(0x8035 | 0x0806), Some(in_port)) = (eth_type, in_port) {
            let kind = if eth_type == Some(0x8035) {
                "RARP"
            } else {
                "ARP"
            };
            let ctl = self.ctl.clone();
            let at = Some((dpid, u32::try_from(in_port).unwrap_or(0)));
            tokio::task::spawn_blocking(move || match ctl.arrived(at, kind) {
                Ok(v) => tracing::info!(
                    dpid,
                    version = v,
                    "migrating VM announced itself: rerouting"
                ),
                Err(e) => tracing::debug!(dpid, "announcement ignored: {e}"),
            });
        }
    }
}
