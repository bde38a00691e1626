//! The rules a host or a VM must satisfy against the rest of the inventory. A
//! host: a known cloud, a datapath id in range that no other host has, a
//! WireGuard public key, a VM prefix (if any) inside the overlay that overlaps
//! no other host's. A VM: its address in the overlay and its own, a host
//! that exists, a free port that is neither a tunnel's nor an uplink's, a valid
//! TAP name, a public address a gateway serves and no other VM has, and an IPv6
//! address (its own or the derived one) inside the overlay's IPv6 prefix that no
//! other VM has. The
//! inventory file's parser and the API both go through [`Inventory::add_host`]
//! and [`Inventory::add_vm`], so neither accepts what the other refuses.

use imbl::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use openflow::flow::Mac;

use super::{Host, Inventory, Vm, VmIndex, MAX_DATAPATH_ID, MAX_INTERFACE_NAME, TUNNEL_PORT_BASE};

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
        let scan = |claim: Claim| {
            self.vms
                .values()
                .find(|o| o.name != vm.name && claim.held_by(o, self))
                .map(|o| o.name.clone())
        };
        self.check_vm_claims(vm, scan)
    }

    /// [`Self::check_vm`] with what the inventory's VMs claim already indexed,
    /// so that checking every VM of a large inventory stays linear.
    fn check_vm_claims(
        &self,
        vm: &Vm,
        holder: impl Fn(Claim) -> Option<String>,
    ) -> Result<(), Invalid> {
        if !self.in_overlay(vm.ip) {
            return Err(invalid(
                "vm.ip",
                format!(
                    "{} is outside the overlay {}/{}",
                    vm.ip, self.overlay.0, self.overlay.1
                ),
            ));
        }
        if let Some(o) = holder(Claim::Ip(vm.ip)) {
            return Err(invalid(
                "vm.ip",
                format!("address {} already used by VM `{o}`", vm.ip),
            ));
        }
        if let Some(o) = holder(Claim::Mac(vm.mac)) {
            return Err(invalid(
                "vm.mac",
                format!("MAC {} already used by VM `{o}`", vm.mac),
            ));
        }
        if let Some(message) = self.ipv6_refusal(vm) {
            return Err(invalid("vm.ipv6", message));
        }
        if let Some(message) = self.public_ipv6_refusal(vm) {
            return Err(invalid("vm.public_ipv6", message));
        }
        for ip6 in self.vm_ipv6_addresses(vm) {
            if let Some(o) = holder(Claim::Ipv6(ip6)) {
                let field = if vm.public_ipv6 == Some(ip6) {
                    "vm.public_ipv6"
                } else {
                    "vm.ipv6"
                };
                return Err(invalid(
                    field,
                    format!("address {ip6} already used by VM `{o}`"),
                ));
            }
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
        if holder(Claim::Port(host, port)).is_some() {
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
            if let Some(o) = holder(Claim::PublicIp(public)) {
                return Err(invalid(
                    "vm.public_ip",
                    format!("{public} is already VM `{o}`'s"),
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

    /// [`Self::add_vm`] for the inventory file's parser, which adds every VM
    /// in turn: `claims`, what the VMs added so far hold, keeps that linear.
    pub(crate) fn add_vm_claiming(
        &mut self,
        vm: Vm,
        claims: &mut VmClaims,
    ) -> Result<Option<Vm>, Invalid> {
        self.check_vm_claims(&vm, |claim| claims.holder(claim, &vm.name))?;
        let replaced = self.vms.remove(&vm.name);
        if let Some(replaced) = &replaced {
            claims.forget(replaced);
        }
        claims.record(&vm);
        self.vms.insert(vm.name.clone(), vm);
        Ok(replaced)
    }
}

/// Something only one VM may hold.
#[derive(Clone, Copy)]
enum Claim<'a> {
    Ip(Ipv4Addr),
    /// An IPv6 address, one of [`Inventory::vm_ipv6_addresses`].
    Ipv6(Ipv6Addr),
    Mac(Mac),
    /// A host's port.
    Port(&'a str, u32),
    PublicIp(Ipv4Addr),
}

impl Claim<'_> {
    fn held_by(self, vm: &Vm, inventory: &Inventory) -> bool {
        match self {
            Claim::Ip(ip) => vm.ip == ip,
            Claim::Ipv6(ip) => inventory.vm_ipv6_addresses(vm).any(|a| a == ip),
            Claim::Mac(mac) => vm.mac == mac,
            Claim::Port(host, port) => vm.host == host && vm.port == port,
            Claim::PublicIp(public) => vm.public_ip == Some(public),
        }
    }
}

/// What an inventory's VMs hold that no other VM may: each address, MAC,
/// host port and public address, with the name of the VM holding it. In
/// persistent maps: a copy shares everything, so the claims of a changed
/// inventory are worked out from the VMs that changed ([`VmClaims::updated`]).
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct VmClaims {
    /// The overlay's IPv6 prefix the IPv6 claims were worked out with (a VM's
    /// SLAAC address depends on it).
    overlay_ipv6: Option<(Ipv6Addr, u8)>,
    ip: HashMap<Ipv4Addr, String>,
    ipv6: HashMap<Ipv6Addr, String>,
    mac: HashMap<Mac, String>,
    port: HashMap<(String, u32), String>,
    public_ip: HashMap<Ipv4Addr, String>,
}

impl VmClaims {
    /// What `inventory`'s VMs hold.
    pub(crate) fn of(inventory: &Inventory) -> Self {
        let mut claims = Self {
            overlay_ipv6: inventory.overlay_ipv6,
            ..Self::default()
        };
        for vm in inventory.vms.values() {
            claims.record(vm);
        }
        claims
    }

    /// What `inventory`'s VMs hold, from these claims of `old`'s: only the VMs
    /// the two do not share are looked at.
    pub(crate) fn updated(&self, old: &Inventory, inventory: &Inventory) -> Self {
        if self.overlay_ipv6 != inventory.overlay_ipv6 {
            return Self::of(inventory);
        }
        let mut claims = self.clone();
        claims.follow(old, inventory);
        claims
    }

    /// The VM other than `asking` that holds `claim`, if any.
    fn holder(&self, claim: Claim, asking: &str) -> Option<String> {
        match claim {
            Claim::Ip(ip) => self.ip.get(&ip),
            Claim::Ipv6(ip) => self.ipv6.get(&ip),
            Claim::Mac(mac) => self.mac.get(&mac),
            Claim::Port(host, port) => self.port.get(&(host.to_owned(), port)),
            Claim::PublicIp(public) => self.public_ip.get(&public),
        }
        .filter(|holder| *holder != asking)
        .cloned()
    }
}

impl VmIndex for VmClaims {
    fn record(&mut self, vm: &Vm) {
        self.ip.insert(vm.ip, vm.name.clone());
        for ip6 in super::ipv6::vm_ipv6_addresses(self.overlay_ipv6, vm) {
            self.ipv6.insert(ip6, vm.name.clone());
        }
        self.mac.insert(vm.mac, vm.name.clone());
        self.port
            .insert((vm.host.clone(), vm.port), vm.name.clone());
        if let Some(public) = vm.public_ip {
            self.public_ip.insert(public, vm.name.clone());
        }
    }

    /// Drops `vm`'s claims, leaving any another VM holds.
    fn forget(&mut self, vm: &Vm) {
        let held_by_vm = |holder: &String| *holder == vm.name;
        if self.ip.get(&vm.ip).is_some_and(held_by_vm) {
            self.ip.remove(&vm.ip);
        }
        for ip6 in super::ipv6::vm_ipv6_addresses(self.overlay_ipv6, vm) {
            if self.ipv6.get(&ip6).is_some_and(held_by_vm) {
                self.ipv6.remove(&ip6);
            }
        }
        if self.mac.get(&vm.mac).is_some_and(held_by_vm) {
            self.mac.remove(&vm.mac);
        }
        let port = (vm.host.clone(), vm.port);
        if self.port.get(&port).is_some_and(held_by_vm) {
            self.port.remove(&port);
        }
        if let Some(public) = vm.public_ip {
            if self.public_ip.get(&public).is_some_and(held_by_vm) {
                self.public_ip.remove(&public);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_followed_through_changes_are_those_indexed_from_scratch() {
        let text = include_str!("../../../docs/examples/inventory.toml");
        let old = Inventory::parse(text, "inventory.toml").unwrap();
        let claims = VmClaims::of(&old);
        let mut new = old.clone();
        let mut added = new.vms["web1"].clone();
        added.name = "added".into();
        added.ip = "100.64.1.99".parse().unwrap();
        added.mac = "02:00:00:00:01:99".parse().unwrap();
        added.port = 42;
        added.public_ip = None;
        let mut followed = claims.clone();
        new.add_vm_claiming(added, &mut followed).unwrap();
        let db1 = new.vms.get_mut("db1").unwrap();
        db1.host = "host-a".into();
        db1.port = 43;
        new.vms.remove("web1");
        assert_eq!(claims.updated(&old, &new), VmClaims::of(&new));
        let refused = new.vms["added"].clone();
        let mut again = VmClaims::of(&new);
        let taken = Vm {
            name: "other".into(),
            ..refused
        };
        assert_eq!(
            new.clone()
                .add_vm_claiming(taken, &mut again)
                .unwrap_err()
                .field,
            "vm.ip"
        );
    }
}
