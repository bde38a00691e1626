//! The rules a VM must satisfy against the rest of the inventory: its address in
//! the overlay and its own, a host that exists, a free port that is neither a
//! tunnel's nor an uplink's, a valid TAP name, and a public address a gateway
//! serves and no other VM has. The inventory file's parser and the API's add-VM
//! both go through [`Inventory::add_vm`], so neither accepts what the other
//! refuses.

use super::{Inventory, Vm, MAX_INTERFACE_NAME, TUNNEL_PORT_BASE};

/// Why the inventory refuses a VM: the field at fault (as the inventory file
/// names it, `vm.port`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {message}")]
pub struct InvalidVm {
    /// The field, e.g. `vm.ip`.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

fn invalid(field: &'static str, message: String) -> InvalidVm {
    InvalidVm { field, message }
}

impl Inventory {
    /// Checks `vm` against the rest of the inventory; a VM of the same name is the
    /// one `vm` replaces, so it is not counted as a collision.
    pub fn check_vm(&self, vm: &Vm) -> Result<(), InvalidVm> {
        let others = || self.vms.values().filter(|o| o.name != vm.name);
        if !self.in_overlay(vm.ip) {
            return Err(invalid(
                "vm.ip",
                format!(
                    "{} is outside the overlay {}/{}",
                    vm.ip, self.overlay.0, self.overlay.1
                ),
            ));
        }
        if let Some(o) = others().find(|o| o.ip == vm.ip || o.mac == vm.mac) {
            return Err(invalid(
                "vm.ip",
                format!("address or MAC already used by VM `{}`", o.name),
            ));
        }
        if self.host(&vm.host).is_none() {
            return Err(invalid(
                "vm.host",
                format!("no [[host]] named `{}`", vm.host),
            ));
        }
        let (host, port) = (&vm.host, vm.port);
        if port == 0 || port >= TUNNEL_PORT_BASE {
            return Err(invalid(
                "vm.port",
                format!("{port} is outside 1..{TUNNEL_PORT_BASE} (tunnel ports start there)"),
            ));
        }
        if others().any(|o| o.host == *host && o.port == port) {
            return Err(invalid(
                "vm.port",
                format!("port {port} of host `{host}` is used twice"),
            ));
        }
        if self.gateways.get(host).is_some_and(|g| g.port == port) {
            return Err(invalid(
                "vm.port",
                format!("port {port} of host `{host}` is its uplink"),
            ));
        }
        if vm.tap.is_empty() || vm.tap.len() > MAX_INTERFACE_NAME {
            return Err(invalid(
                "vm.tap",
                format!(
                    "`{}` is not an interface name (1..={MAX_INTERFACE_NAME} bytes)",
                    vm.tap
                ),
            ));
        }
        if let Some(public) = vm.public_ip {
            if !self.gateways.values().any(|g| g.serves(public)) {
                return Err(invalid(
                    "vm.public_ip",
                    format!(
                        "no gateway serves {public} (no [host.uplink] has it in its public_prefix)"
                    ),
                ));
            }
            if let Some(o) = others().find(|o| o.public_ip == Some(public)) {
                return Err(invalid(
                    "vm.public_ip",
                    format!("{public} is already VM `{}`'s", o.name),
                ));
            }
        }
        Ok(())
    }

    /// Adds `vm`, or replaces the VM of its name, after [`Self::check_vm`];
    /// returns the VM it replaced. Nothing changes when it is refused.
    pub fn add_vm(&mut self, vm: Vm) -> Result<Option<Vm>, InvalidVm> {
        self.check_vm(&vm)?;
        Ok(self.vms.insert(vm.name.clone(), vm))
    }
}
