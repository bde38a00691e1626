//! What a session needs from the switch ([`Backend`]), and the running switch as
//! one: changes run on the control thread through its handle, reads on the
//! connection's own thread from the published tables.

use super::info::DatapathInfo;
use crate::switch::{SwitchGone, SwitchHandle};
use dataplane_core::packet_io::{PacketOutError, PacketOutJob};
use dataplane_core::pipeline::RemovedFlow;
use dataplane_core::port::port_mac;
use dataplane_core::port_security::PortBinding;
use dataplane_core::translate::{
    apply_flow_mod, apply_group_mod, flow_stats, group_descs, port_desc, port_stats, table_stats,
    tunnel_stats,
};
use openflow::flow::{GroupSpec, PortNo};
use openflow::wire::{
    port_mod_failed, AddPort, BadRequest, BindPort, DelPort, ErrorCode, FlowMod, FlowStatsEntry,
    FlowStatsRequest, GroupMod, PortDesc, PortMod, PortReason, PortStats, TableStats,
    TunnelStatsEntry,
};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// One result per flow-mod: the entries a delete removed, or the error to send.
pub type FlowModResults = Vec<Result<Vec<RemovedFlow>, ErrorCode>>;

/// What a session needs from the switch. The running switch implements it through
/// its handle; tests implement it over a local [`Pipeline`].
pub trait Backend {
    /// Datapath id, name and table count.
    fn info(&self) -> &DatapathInfo;
    /// Applies flow-mods in order; one result per flow-mod.
    fn flow_mods(&self, fms: Vec<FlowMod>) -> Result<FlowModResults, SwitchGone>;
    /// Applies one group-mod.
    fn group_mod(&self, gm: GroupMod) -> Result<Result<Vec<RemovedFlow>, ErrorCode>, SwitchGone>;
    /// Flow statistics.
    fn flow_stats(
        &self,
        req: FlowStatsRequest,
    ) -> Result<Result<Vec<FlowStatsEntry>, ErrorCode>, SwitchGone>;
    /// Table statistics.
    fn table_stats(&self) -> Result<Vec<TableStats>, SwitchGone>;
    /// Every group, by increasing id.
    fn group_descs(&self) -> Result<Vec<GroupSpec>, SwitchGone>;
    /// Port descriptions.
    fn port_descs(&self) -> Vec<PortDesc>;
    /// Port statistics.
    fn port_stats(&self, port_no: PortNo) -> Result<Vec<PortStats>, ErrorCode>;
    /// Statistics of every tunnel port (empty without tunnels).
    fn tunnel_stats(&self) -> Result<Vec<TunnelStatsEntry>, SwitchGone>;
    /// Returns once every change before is visible to packets (a barrier).
    fn barrier(&self) -> Result<(), SwitchGone> {
        Ok(())
    }
    /// [`Self::flow_mods`] followed by [`Self::barrier`].
    fn flow_mods_then_barrier(&self, fms: Vec<FlowMod>) -> Result<FlowModResults, SwitchGone> {
        let results = self.flow_mods(fms)?;
        self.barrier()?;
        Ok(results)
    }
    /// Runs a packet-out.
    fn packet_out(&self, job: PacketOutJob) -> Result<Result<(), PacketOutError>, SwitchGone>;
    /// Binds a VM port to its VM's addresses, or unbinds it. A backend without
    /// ports refuses it as an experimenter type it does not know.
    fn bind_port(&self, bind: BindPort) -> Result<Result<(), ErrorCode>, SwitchGone> {
        let _ = bind;
        Ok(Err(ErrorCode::BadRequest(BadRequest::BadExpType)))
    }
    /// Adds a port a controller asks for. A backend without ports refuses it as an
    /// experimenter type it does not know.
    fn add_port(&self, req: AddPort) -> Result<Result<(), ErrorCode>, SwitchGone> {
        let _ = req;
        Ok(Err(ErrorCode::BadRequest(BadRequest::BadExpType)))
    }
    /// Removes a port a controller names.
    fn del_port(&self, req: DelPort) -> Result<Result<(), ErrorCode>, SwitchGone> {
        let _ = req;
        Ok(Err(ErrorCode::BadRequest(BadRequest::BadExpType)))
    }
    /// Changes a port's configuration bits (port-mod). A backend without ports
    /// has none to change.
    fn port_mod(&self, pm: PortMod) -> Result<(), ErrorCode> {
        let _ = pm;
        Err(port_mod_error(port_mod_failed::BAD_PORT))
    }
}

/// An `OFPET_PORT_MOD_FAILED` error with `code`.
fn port_mod_error(code: u16) -> ErrorCode {
    ErrorCode::Other {
        typ: port_mod_failed::TYPE,
        code,
    }
}

/// The running switch as a [`Backend`].
#[derive(Debug, Clone)]
pub struct SwitchBackend {
    pub(super) handle: SwitchHandle,
    info: DatapathInfo,
}

impl SwitchBackend {
    /// A backend over a running switch.
    pub fn new(handle: SwitchHandle, info: DatapathInfo) -> SwitchBackend {
        SwitchBackend { handle, info }
    }
}

impl SwitchBackend {
    /// Flow-mods promise no visibility until a barrier, so a burst of them shares
    /// one publish of the tables; with `then_barrier` the reply waits for it (one
    /// trip to the control thread where a barrier after them would take two, as
    /// `ovs-ofctl` sends a barrier after each flow-mod).
    fn apply_flow_mods(
        &self,
        fms: Vec<FlowMod>,
        then_barrier: bool,
    ) -> Result<FlowModResults, SwitchGone> {
        let n = u64::try_from(fms.len()).unwrap_or(u64::MAX);
        let apply = move |p: &mut dataplane_core::pipeline::Pipeline, now| {
            fms.iter()
                .map(|fm| apply_flow_mod(p, fm, now))
                .collect::<Vec<_>>()
        };
        let results = if then_barrier {
            self.handle.call(apply)?
        } else {
            self.handle.call_deferred(apply)?
        };
        self.handle
            .shared
            .channel
            .flow_mods
            .fetch_add(n, Ordering::Relaxed);
        Ok(results)
    }
}

impl Backend for SwitchBackend {
    fn info(&self) -> &DatapathInfo {
        &self.info
    }

    fn flow_mods(&self, fms: Vec<FlowMod>) -> Result<FlowModResults, SwitchGone> {
        self.apply_flow_mods(fms, false)
    }

    fn flow_mods_then_barrier(&self, fms: Vec<FlowMod>) -> Result<FlowModResults, SwitchGone> {
        self.apply_flow_mods(fms, true)
    }

    fn group_mod(&self, gm: GroupMod) -> Result<Result<Vec<RemovedFlow>, ErrorCode>, SwitchGone> {
        self.handle.call(move |p, now| apply_group_mod(p, &gm, now))
    }

    fn flow_stats(
        &self,
        req: FlowStatsRequest,
    ) -> Result<Result<Vec<FlowStatsEntry>, ErrorCode>, SwitchGone> {
        // Read here, on the connection's thread, from tables that hold every
        // change sent before.
        let tables = self.handle.synced_snapshot()?;
        Ok(flow_stats(&tables, &req, Instant::now()))
    }

    fn table_stats(&self) -> Result<Vec<TableStats>, SwitchGone> {
        Ok(table_stats(self.handle.synced_snapshot()?.as_ref()))
    }

    fn group_descs(&self) -> Result<Vec<GroupSpec>, SwitchGone> {
        Ok(group_descs(self.handle.synced_snapshot()?.as_ref()))
    }

    fn barrier(&self) -> Result<(), SwitchGone> {
        self.handle.sync()
    }

    fn port_descs(&self) -> Vec<PortDesc> {
        let shared = &self.handle.shared;
        let tunnels = shared.tunnels.lock().map(|t| t.clone()).unwrap_or_default();
        shared
            .ports()
            .iter()
            .map(|p| {
                port_desc(
                    shared.datapath_id,
                    p.number,
                    &p.name,
                    p.link.state(),
                    &tunnels,
                )
            })
            .collect()
    }

    fn port_stats(&self, port_no: PortNo) -> Result<Vec<PortStats>, ErrorCode> {
        let ports = self.handle.shared.ports();
        let shared = &self.handle.shared;
        port_stats(
            ports.iter().map(|p| p.number),
            |number| {
                ports
                    .iter()
                    .find(|p| p.number == number)
                    .map(|p| p.counters.snapshot())
                    .unwrap_or_default()
            },
            port_no,
            shared.started,
            Instant::now(),
        )
    }

    fn tunnel_stats(&self) -> Result<Vec<TunnelStatsEntry>, SwitchGone> {
        // Asked of the switch thread rather than read from the once-a-second
        // snapshot, so handshake ages are exact to the millisecond.
        self.handle
            .tunnel_status()
            .map(|peers| tunnel_stats(&peers))
    }

    fn packet_out(&self, job: PacketOutJob) -> Result<Result<(), PacketOutError>, SwitchGone> {
        // Flow-mods before it are published first: output:TABLE must meet them.
        self.handle.sync()?;
        self.handle.packet_out(job)
    }

    fn port_mod(&self, pm: PortMod) -> Result<(), ErrorCode> {
        let shared = &self.handle.shared;
        let ports = shared.ports();
        let port = ports
            .iter()
            .find(|p| p.number == pm.port_no)
            .ok_or(port_mod_error(port_mod_failed::BAD_PORT))?;
        if pm.hw_addr != port_mac(shared.datapath_id, pm.port_no) {
            return Err(port_mod_error(port_mod_failed::BAD_HW_ADDR));
        }
        if port.link.set_config(pm.config, pm.mask) {
            tracing::info!(
                port = pm.port_no,
                config = pm.config,
                mask = pm.mask,
                "port-mod applied"
            );
            shared.announce(PortReason::Modify, port);
        }
        Ok(())
    }

    fn add_port(&self, req: AddPort) -> Result<Result<(), ErrorCode>, SwitchGone> {
        let Some(opener) = self.handle.port_opener() else {
            return Ok(Err(ErrorCode::BadRequest(BadRequest::BadExpType)));
        };
        let new = match opener(&req) {
            Ok(new) => new,
            Err(why) => {
                tracing::warn!(port = req.port, name = %req.name, "controller's add-port refused: {why}");
                return Ok(Err(port_mod_error(port_mod_failed::EPERM)));
            }
        };
        Ok(match self.handle.add_port(new)? {
            Ok(()) => {
                tracing::info!(port = req.port, name = %req.name, "port added by the controller");
                Ok(())
            }
            Err(why) => {
                tracing::warn!(port = req.port, name = %req.name, "controller's add-port refused: {why}");
                Err(port_mod_error(port_mod_failed::BAD_PORT))
            }
        })
    }

    fn del_port(&self, req: DelPort) -> Result<Result<(), ErrorCode>, SwitchGone> {
        Ok(match self.handle.remove_port(req.port)? {
            Ok(()) => {
                tracing::info!(port = req.port, "port removed by the controller");
                Ok(())
            }
            Err(why) => {
                tracing::warn!(port = req.port, "controller's del-port refused: {why}");
                Err(port_mod_error(port_mod_failed::BAD_PORT))
            }
        })
    }

    fn bind_port(&self, bind: BindPort) -> Result<Result<(), ErrorCode>, SwitchGone> {
        let bound = |mac| PortBinding::new(mac, &bind.ips).map(|b| b.with_ipv6(&bind.ipv6));
        let binding = match bind.mac.map(bound) {
            None => None,
            Some(Ok(binding)) => Some(binding),
            // Addresses no VM can own: the message is malformed for its type.
            Some(Err(_)) => return Ok(Err(ErrorCode::BadRequest(BadRequest::BadLen))),
        };
        let bound = self.handle.bind_port(bind.port, binding.clone())?;
        Ok(match bound {
            Ok(()) => {
                tracing::info!(port = bind.port, binding = ?binding, "port binding set by the controller");
                Ok(())
            }
            Err(refused) => {
                tracing::warn!(port = bind.port, "port binding refused: {refused}");
                Err(ErrorCode::BadRequest(BadRequest::BadPort))
            }
        })
    }
}
