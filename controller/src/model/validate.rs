//! The rules a host or a VM must satisfy against the rest of the inventory. A
//! host: a known cloud, a datapath id in range that no other host has, a
//! WireGuard public key, a VM prefix (if any) inside the overlay that overlaps
//! no other host's. A VM: its address in the overlay and its own, a host
//! that exists, a free port that is neither a tunnel's nor an uplink's, a valid
//! TAP name, and a public address a gateway serves and no other VM has. The
//! inventory file's parser and the API both go through [`Inventory::add_host`]
//! and [`Inventory::add_vm`], so neither accepts what the other refuses.

use super::{Host, Inventory, Vm, MAX_DATAPATH_ID, MAX_INTERFACE_NAME, TUNNEL_PORT_BASE};

/// Why the inventory refuses a host or a VM: the field at fault (as the
/// inventory file names it, `vm.port`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {message}")]
pub struct Invalid {
    /// The field, e.g. `vm.ip`.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

fn invalid(field: &'static str, message: String) -> Invalid {
    Invalid { field, message }
}

/// Length of a WireGuard public key in base64.
const PUBLIC_KEY_LEN: usize = 44;

impl Inventory {
    /// Checks `host` against the rest of the inventory; a host of the same name is
    /// the one `host` replaces, so it is not counted as a collision.
    pub fn check_host(&self, host: &Host) -> Result<(), Invalid> {
        if !self.clouds.contains_key(&host.cloud) {
            return Err(invalid(
                "host.cloud",
                format!("no [[cloud]] named `{}`", host.cloud),
            ));
        }
        let dpid = host.datapath_id;
        if dpid == 0 || dpid > MAX_DATAPATH_ID {
            return Err(invalid(
                "host.datapath_id",
                format!("{dpid} is outside 1..={MAX_DATAPATH_ID}"),
            ));
        }
        if let Some(o) = self
            .hosts
            .iter()
            .find(|o| o.name != host.name && o.datapath_id == dpid)
        {
            return Err(invalid(
                "host.datapath_id",
                format!(
                    "datapath id {dpid} is used twice (already used by host `{}`)",
                    o.name
                ),
            ));
        }
        if let Some((net, len)) = host.vm_prefix {
            self.check_vm_prefix(host, net, len)?;
        }
        let key = host.public_key.trim();
        if key.len() != PUBLIC_KEY_LEN || !key.ends_with('=') {
            return Err(invalid(
                "host.public_key",
                format!("not a WireGuard public key ({PUBLIC_KEY_LEN} characters of base64)"),
            ));
        }
        Ok(())
    }

    /// A host's VM prefix lies in the overlay and overlaps no other host's.
    fn check_vm_prefix(
        &self,
        host: &Host,
        net: std::net::Ipv4Addr,
        len: u8,
    ) -> Result<(), Invalid> {
        if len < self.overlay.1 || !self.in_overlay(net) {
            return Err(invalid(
                "host.vm_prefix",
                format!(
                    "{net}/{len} is not inside the overlay {}/{}",
                    self.overlay.0, self.overlay.1
                ),
            ));
        }
        let overlaps = |(o_net, o_len): (std::net::Ipv4Addr, u8)| {
            let mask = config_support::prefix_mask(len.min(o_len));
            u32::from(net) & mask == u32::from(o_net) & mask
        };
        if let Some(o) = self
            .hosts
            .iter()
            .find(|o| o.name != host.name && o.vm_prefix.is_some_and(overlaps))
        {
            let (o_net, o_len) = o.vm_prefix.unwrap_or((net, len));
            return Err(invalid(
                "host.vm_prefix",
                format!(
                    "{net}/{len} overlaps host `{}`'s VM prefix {o_net}/{o_len}",
                    o.name
                ),
            ));
        }
        Ok(())
    }

    /// Adds `host`, or replaces the host of its name (which then comes last, as
    /// a new one does), after [`Self::check_host`]; returns the host it replaced.
    /// Nothing changes when it is refused.
    pub fn add_host(&mut self, host: Host) -> Result<Option<Host>, Invalid> {
        self.check_host(&host)?;
        let replaced = self
            .hosts
            .iter()
            .position(|o| o.name == host.name)
            .map(|i| self.hosts.remove(i));
        self.hosts.push(host);
        Ok(replaced)
    }

    /// Checks `vm` against the rest of the inventory; a VM of the same name is the
    /// one `vm` replaces, so it is not counted as a collision.
    pub fn check_vm(&self, vm: &Vm) -> Result<(), Invalid> {
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
        if let Some(o) = others().find(|o| o.ip == vm.ip) {
            return Err(invalid(
                "vm.ip",
                format!("address {} already used by VM `{}`", vm.ip, o.name),
            ));
        }
        if let Some(o) = others().find(|o| o.mac == vm.mac) {
            return Err(invalid(
                "vm.mac",
                format!("MAC {} already used by VM `{}`", vm.mac, o.name),
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
    pub fn add_vm(&mut self, vm: Vm) -> Result<Option<Vm>, Invalid> {
        self.check_vm(&vm)?;
        Ok(self.vms.insert(vm.name.clone(), vm))
    }
}
