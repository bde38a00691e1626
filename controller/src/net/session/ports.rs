//! A switch session's view of the switch's ports: the port list it describes and
//! the port-status messages that change it, and the bindings of its VM ports
//! (port security) that this connection sends and the switch may refuse, the
//! ports the daemon asks it to add or remove, and the transmit counters of a
//! port that a migration's timeline measures.

use super::{Session, SessionError};
use crate::daemon::Published;
use crate::migration::PortCounts;
use crate::port_requests::PortRequest;
use openflow::wire::{port_state, BindPort, Message, PortDesc, PortReason, PortStatus};
use openflow::wire::{MultipartReplyBody, MultipartRequestBody};

impl Session {
    /// The switch's whole port list (a port-desc reply): every port by number,
    /// and which tunnels have a live WireGuard session.
    pub(super) fn ports_described(&self, dpid: u64, ports: &[PortDesc]) {
        let tunnels = ports
            .iter()
            .filter(|p| dataplane_core::port::is_tunnel_port(&p.name))
            .map(|p| (p.name.clone(), p.state & port_state::LINK_DOWN == 0))
            .collect();
        let numbered = ports.iter().map(|p| (p.port_no, p.name.clone())).collect();
        self.ctl.update_switch(dpid, |s| {
            s.tunnels_up = tunnels;
            s.ports = numbered;
        });
    }

    /// One port added, removed or changed (`OFPT_PORT_STATUS`).
    pub(super) fn port_changed(&mut self, dpid: u64, change: &PortStatus) {
        let p = &change.desc;
        tracing::info!(dpid, port = p.port_no, name = %p.name, reason = ?change.reason, "port status");
        let up = p.state & port_state::LINK_DOWN == 0;
        let tunnel = dataplane_core::port::is_tunnel_port(&p.name);
        self.ctl.update_switch(dpid, |s| {
            if change.reason == PortReason::Delete {
                s.ports.remove(&p.port_no);
                s.tunnels_up.remove(&p.name);
            } else {
                s.ports.insert(p.port_no, p.name.clone());
                if tunnel {
                    s.tunnels_up.insert(p.name.clone(), up);
                }
            }
        });
        let added = change.reason != PortReason::Delete;
        let answered: Vec<u32> = self
            .port_asks
            .iter()
            .filter(|(_, r)| r.port() == (p.port_no, added))
            .map(|(xid, _)| *xid)
            .collect();
        for xid in answered {
            if let Some(request) = self.port_asks.remove(&xid) {
                let _ = request.answer.send(Ok(()));
            }
        }
    }

    /// Sends an add-port or del-port the daemon asked for; its answer is the
    /// port-status that follows, or the switch's error.
    pub(super) async fn ask_port(&mut self, request: PortRequest) -> Result<(), SessionError> {
        let xid = self.send(&request.message).await?;
        self.port_asks.insert(xid, request);
        Ok(())
    }

    /// The switch refused the add-port or del-port sent as `xid`.
    pub(super) fn port_refused(&mut self, xid: u32, e: &openflow::wire::ErrorMsg) {
        if let Some(request) = self.port_asks.remove(&xid) {
            let _ = request
                .answer
                .send(Err(format!("the switch refused: {}", e.code)));
        }
    }

    /// Sends the bindings of the switch's VM ports that this connection has not
    /// sent yet (all of them after a connect); they precede the flow-mods of the
    /// version they belong to, so a migration's destination port admits the VM
    /// before the destination reports ready.
    pub(super) async fn bind_ports(
        &mut self,
        dpid: u64,
        published: &Published,
    ) -> Result<(), SessionError> {
        if self.binding_unsupported {
            return Ok(());
        }
        let bindings = published.bindings(dpid, || self.ctl.all_port_bindings());
        for binding in bindings.iter() {
            if self.bound.get(&binding.port) == Some(binding) {
                continue;
            }
            let xid = self
                .send(&Message::BindPort(BindPort {
                    port: binding.port,
                    mac: Some(binding.mac),
                    ips: binding.ips.clone(),
                    ipv6: binding.ipv6.clone(),
                }))
                .await?;
            tracing::debug!(dpid, port = binding.port, mac = %binding.mac, "port bound");
            self.bind_xids.insert(xid);
            self.bound.insert(binding.port, binding.clone());
        }
        Ok(())
    }

    /// The switch refused a binding: one that does not know the message gets no
    /// more; any other refusal (a port it does not have) is the switch's error.
    pub(super) fn binding_refused(&mut self, e: &openflow::wire::ErrorMsg) {
        use openflow::wire::{BadRequest, ErrorCode};
        let unknown = matches!(
            e.code,
            ErrorCode::BadRequest(BadRequest::BadExperimenter | BadRequest::BadExpType)
        );
        if unknown {
            if !self.binding_unsupported {
                tracing::warn!(dpid = ?self.dpid, "switch does not take port bindings (not scd?): its VM ports are not protected");
            }
            self.binding_unsupported = true;
            return;
        }
        let text = format!("port binding refused: {e:?}");
        tracing::warn!(dpid = ?self.dpid, "{text}");
        if let Some(dpid) = self.dpid {
            self.ctl.update_switch(dpid, |s| s.last_error = Some(text));
        }
    }

    /// Asks for the transmit counters of `port` without waiting for them.
    pub(super) async fn request_port_counts(&mut self, port: u32) -> Result<u32, SessionError> {
        let xid = self
            .multipart(MultipartRequestBody::PortStats(port))
            .await?;
        self.ahead.insert(xid);
        Ok(xid)
    }

    /// The answer to [`Self::request_port_counts`]; `None` if the port is gone.
    pub(super) async fn port_counts(
        &mut self,
        xid: u32,
    ) -> Result<Option<PortCounts>, SessionError> {
        match self.reply_to(xid).await {
            Ok(Message::MultipartReply(r)) => match r.body {
                MultipartReplyBody::PortStats(ports) => Ok(ports.first().map(|p| PortCounts {
                    tx_packets: p.tx_packets,
                    tx_dropped: p.tx_dropped,
                })),
                _ => Ok(None),
            },
            Ok(_) => Ok(None),
            Err(SessionError::Refused(e)) => {
                tracing::debug!("port counters unavailable: {e}");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}
