//! The flow model shared by the switch, the controller and the wire codec.
//!
//! A packet is summarised by a [`FlowKey`]: one fixed-width value for every header
//! field a flow table can match. A [`FlowMatch`] is a key plus a mask of the same
//! shape (a set bit in the mask means "this bit must equal the key's bit"), so
//! matching is `packet & mask == key` field by field. This module owns the meaning of
//! matches, actions and instructions; it never touches bytes on a wire or a socket.
//!
//! Transport ports are one pair of fields (`l4_src`/`l4_dst`) whose protocol is given
//! by `ip_proto`, as OpenFlow's prerequisites demand (`tcp_src` needs `ip_proto=6`).
//! ICMP type and code live in the same slots as `icmp_type`/`icmp_code`.

use serde::{Deserialize, Serialize};
use std::fmt;

mod action_set;
pub use action_set::ActionSet;

/// OpenFlow port numbers (`ofp_port_no`), including the reserved ports.
pub type PortNo = u32;

/// Reserved OpenFlow 1.3 port numbers.
pub mod port {
    use super::PortNo;
    /// Highest number of a physical or logical port.
    pub const MAX: PortNo = 0xffff_ff00;
    /// Send the packet out of the port it came in on.
    pub const IN_PORT: PortNo = 0xffff_fff8;
    /// Submit the packet to the first flow table (packet-out only).
    pub const TABLE: PortNo = 0xffff_fff9;
    /// The traditional non-OpenFlow pipeline (unsupported by scd).
    pub const NORMAL: PortNo = 0xffff_fffa;
    /// All ports but the input port and those with flooding disabled.
    pub const FLOOD: PortNo = 0xffff_fffb;
    /// All ports but the input port.
    pub const ALL: PortNo = 0xffff_fffc;
    /// Send to the controller as a packet-in.
    pub const CONTROLLER: PortNo = 0xffff_fffd;
    /// The switch's local port.
    pub const LOCAL: PortNo = 0xffff_fffe;
    /// Wildcard port, used in flow-mod `out_port` and stats requests.
    pub const ANY: PortNo = 0xffff_ffff;
}

/// `OFPVID_PRESENT`: set in `vlan_vid` when the packet carries an 802.1Q tag.
pub const VLAN_PRESENT: u16 = 0x1000;

/// Common EtherTypes.
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// 802.1Q VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad service tag.
    pub const QINQ: u16 = 0x88a8;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
    /// Reverse ARP (QEMU's self-announce after migration).
    pub const RARP: u16 = 0x8035;
}

/// IP protocol numbers used by the prerequisites.
pub mod ipproto {
    /// ICMP for IPv4.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMP for IPv6.
    pub const ICMPV6: u8 = 58;
}

/// A 48-bit Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// The broadcast address ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: Mac = Mac([0xff; 6]);
    /// The all-zero address.
    pub const ZERO: Mac = Mac([0; 6]);

    /// The address as the low 48 bits of a `u64`.
    pub fn to_u64(self) -> u64 {
        let b = self.0;
        u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// The address from the low 48 bits of a `u64`.
    pub fn from_u64(v: u64) -> Mac {
        let b = v.to_be_bytes();
        Mac([b[2], b[3], b[4], b[5], b[6], b[7]])
    }

    /// True for group (multicast and broadcast) addresses.
    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Error for text that is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a MAC address (expected six hex octets such as 02:00:00:00:00:01)")]
pub struct BadMac(pub String);

impl std::str::FromStr for Mac {
    type Err = BadMac;
    fn from_str(s: &str) -> Result<Mac, BadMac> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for slot in out.iter_mut() {
            let part = parts.next().ok_or_else(|| BadMac(s.to_string()))?;
            if part.is_empty() || part.len() > 2 {
                return Err(BadMac(s.to_string()));
            }
            *slot = u8::from_str_radix(part, 16).map_err(|_| BadMac(s.to_string()))?;
        }
        if parts.next().is_some() {
            return Err(BadMac(s.to_string()));
        }
        Ok(Mac(out))
    }
}

/// Every header field a flow table can match, as fixed-width values.
///
/// Fields that are absent from a packet are zero (for example `vlan_vid` of an
/// untagged frame, or `l4_src` of an ARP frame).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug, Serialize, Deserialize)]
pub struct FlowKey {
    /// Ingress OpenFlow port.
    pub in_port: PortNo,
    /// Ethernet destination.
    pub eth_dst: Mac,
    /// Ethernet source.
    pub eth_src: Mac,
    /// EtherType after any VLAN tag.
    pub eth_type: u16,
    /// `VLAN_PRESENT | vid` for tagged frames, 0 for untagged ones.
    pub vlan_vid: u16,
    /// 802.1Q priority code point.
    pub vlan_pcp: u8,
    /// IP DSCP (six bits).
    pub ip_dscp: u8,
    /// IP protocol (IPv4) or next header (IPv6).
    pub ip_proto: u8,
    /// IPv4 source.
    pub ipv4_src: u32,
    /// IPv4 destination.
    pub ipv4_dst: u32,
    /// IPv6 source.
    pub ipv6_src: u128,
    /// IPv6 destination.
    pub ipv6_dst: u128,
    /// TCP/UDP source port, or ICMP type.
    pub l4_src: u16,
    /// TCP/UDP destination port, or ICMP code.
    pub l4_dst: u16,
    /// ARP opcode.
    pub arp_op: u16,
    /// ARP sender protocol address.
    pub arp_spa: u32,
    /// ARP target protocol address.
    pub arp_tpa: u32,
    /// Pipeline metadata (`OXM_OF_METADATA`): zero when a packet enters the
    /// tables, changed only by write-metadata instructions.
    pub metadata: u64,
}

/// The names of the fields of a [`FlowKey`], used in errors and in text output.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Field {
    /// `in_port`
    InPort,
    /// `eth_dst`
    EthDst,
    /// `eth_src`
    EthSrc,
    /// `eth_type`
    EthType,
    /// `vlan_vid`
    VlanVid,
    /// `vlan_pcp`
    VlanPcp,
    /// `ip_dscp`
    IpDscp,
    /// `ip_proto`
    IpProto,
    /// `ipv4_src`
    Ipv4Src,
    /// `ipv4_dst`
    Ipv4Dst,
    /// `ipv6_src`
    Ipv6Src,
    /// `ipv6_dst`
    Ipv6Dst,
    /// `tcp_src`/`udp_src` (by `ip_proto`), or `icmp_type`
    L4Src,
    /// `tcp_dst`/`udp_dst` (by `ip_proto`), or `icmp_code`
    L4Dst,
    /// `arp_op`
    ArpOp,
    /// `arp_spa`
    ArpSpa,
    /// `arp_tpa`
    ArpTpa,
    /// `metadata`
    Metadata,
}

impl Field {
    /// Every field, in the order of [`FlowKey`].
    pub const ALL: [Field; 18] = [
        Field::InPort,
        Field::EthDst,
        Field::EthSrc,
        Field::EthType,
        Field::VlanVid,
        Field::VlanPcp,
        Field::IpDscp,
        Field::IpProto,
        Field::Ipv4Src,
        Field::Ipv4Dst,
        Field::Ipv6Src,
        Field::Ipv6Dst,
        Field::L4Src,
        Field::L4Dst,
        Field::ArpOp,
        Field::ArpSpa,
        Field::ArpTpa,
        Field::Metadata,
    ];

    /// Width of the field in bits.
    pub fn bits(self) -> u32 {
        match self {
            Field::InPort | Field::Ipv4Src | Field::Ipv4Dst | Field::ArpSpa | Field::ArpTpa => 32,
            Field::EthDst | Field::EthSrc => 48,
            Field::EthType | Field::L4Src | Field::L4Dst | Field::ArpOp => 16,
            Field::VlanVid => 13,
            Field::VlanPcp => 3,
            Field::IpDscp => 6,
            Field::IpProto => 8,
            Field::Ipv6Src | Field::Ipv6Dst => 128,
            Field::Metadata => 64,
        }
    }

    /// The mask with every bit of the field set.
    pub fn full_mask(self) -> u128 {
        let bits = self.bits();
        if bits == 128 {
            u128::MAX
        } else {
            (1u128 << bits) - 1
        }
    }

    /// The `ovs-ofctl` name of the field (transport ports take the TCP spelling).
    pub fn name(self) -> &'static str {
        match self {
            Field::InPort => "in_port",
            Field::EthDst => "dl_dst",
            Field::EthSrc => "dl_src",
            Field::EthType => "dl_type",
            Field::VlanVid => "vlan_vid",
            Field::VlanPcp => "vlan_pcp",
            Field::IpDscp => "ip_dscp",
            Field::IpProto => "nw_proto",
            Field::Ipv4Src => "nw_src",
            Field::Ipv4Dst => "nw_dst",
            Field::Ipv6Src => "ipv6_src",
            Field::Ipv6Dst => "ipv6_dst",
            Field::L4Src => "tp_src",
            Field::L4Dst => "tp_dst",
            Field::ArpOp => "arp_op",
            Field::ArpSpa => "arp_spa",
            Field::ArpTpa => "arp_tpa",
            Field::Metadata => "metadata",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FlowKey {
    /// The value of one field, widened to `u128`.
    pub fn get(&self, field: Field) -> u128 {
        match field {
            Field::InPort => self.in_port.into(),
            Field::EthDst => self.eth_dst.to_u64().into(),
            Field::EthSrc => self.eth_src.to_u64().into(),
            Field::EthType => self.eth_type.into(),
            Field::VlanVid => self.vlan_vid.into(),
            Field::VlanPcp => self.vlan_pcp.into(),
            Field::IpDscp => self.ip_dscp.into(),
            Field::IpProto => self.ip_proto.into(),
            Field::Ipv4Src => self.ipv4_src.into(),
            Field::Ipv4Dst => self.ipv4_dst.into(),
            Field::Ipv6Src => self.ipv6_src,
            Field::Ipv6Dst => self.ipv6_dst,
            Field::L4Src => self.l4_src.into(),
            Field::L4Dst => self.l4_dst.into(),
            Field::ArpOp => self.arp_op.into(),
            Field::ArpSpa => self.arp_spa.into(),
            Field::ArpTpa => self.arp_tpa.into(),
            Field::Metadata => self.metadata.into(),
        }
    }

    /// Sets one field; bits beyond the field's width are ignored.
    #[allow(clippy::cast_possible_truncation)] // masked to the field's width first
    pub fn set(&mut self, field: Field, value: u128) {
        let v = value & field.full_mask();
        match field {
            Field::InPort => self.in_port = v as u32,
            Field::EthDst => self.eth_dst = Mac::from_u64(v as u64),
            Field::EthSrc => self.eth_src = Mac::from_u64(v as u64),
            Field::EthType => self.eth_type = v as u16,
            Field::VlanVid => self.vlan_vid = v as u16,
            Field::VlanPcp => self.vlan_pcp = v as u8,
            Field::IpDscp => self.ip_dscp = v as u8,
            Field::IpProto => self.ip_proto = v as u8,
            Field::Ipv4Src => self.ipv4_src = v as u32,
            Field::Ipv4Dst => self.ipv4_dst = v as u32,
            Field::Ipv6Src => self.ipv6_src = v,
            Field::Ipv6Dst => self.ipv6_dst = v,
            Field::L4Src => self.l4_src = v as u16,
            Field::L4Dst => self.l4_dst = v as u16,
            Field::ArpOp => self.arp_op = v as u16,
            Field::ArpSpa => self.arp_spa = v as u32,
            Field::ArpTpa => self.arp_tpa = v as u32,
            Field::Metadata => self.metadata = v as u64,
        }
    }

    /// Field-wise AND, used to apply a mask.
    pub fn and(&self, mask: &FlowKey) -> FlowKey {
        FlowKey {
            in_port: self.in_port & mask.in_port,
            eth_dst: Mac::from_u64(self.eth_dst.to_u64() & mask.eth_dst.to_u64()),
            eth_src: Mac::from_u64(self.eth_src.to_u64() & mask.eth_src.to_u64()),
            eth_type: self.eth_type & mask.eth_type,
            vlan_vid: self.vlan_vid & mask.vlan_vid,
            vlan_pcp: self.vlan_pcp & mask.vlan_pcp,
            ip_dscp: self.ip_dscp & mask.ip_dscp,
            ip_proto: self.ip_proto & mask.ip_proto,
            ipv4_src: self.ipv4_src & mask.ipv4_src,
            ipv4_dst: self.ipv4_dst & mask.ipv4_dst,
            ipv6_src: self.ipv6_src & mask.ipv6_src,
            ipv6_dst: self.ipv6_dst & mask.ipv6_dst,
            l4_src: self.l4_src & mask.l4_src,
            l4_dst: self.l4_dst & mask.l4_dst,
            arp_op: self.arp_op & mask.arp_op,
            arp_spa: self.arp_spa & mask.arp_spa,
            arp_tpa: self.arp_tpa & mask.arp_tpa,
            metadata: self.metadata & mask.metadata,
        }
    }

    /// Every bit set in either key: the union of two masks. Off the per-packet
    /// path (a cache miss at most), so field by field through [`Self::get`].
    pub fn or(&self, other: &FlowKey) -> FlowKey {
        let mut union = *self;
        for field in Field::ALL {
            union.set(field, self.get(field) | other.get(field));
        }
        union
    }
}

/// Why a match cannot be built or accepted (maps onto OpenFlow's bad-match codes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatchError {
    /// The value has bits set where the mask is clear.
    #[error("{0}: value has bits outside its mask")]
    ValueOutsideMask(Field),
    /// A field was used without its prerequisite (e.g. `tcp_dst` without `ip_proto=6`).
    #[error("{field}: prerequisite not met ({needs})")]
    Prerequisite {
        /// The field whose prerequisite is missing.
        field: Field,
        /// What it needs, in `ovs-ofctl` words.
        needs: &'static str,
    },
    /// The same field was given twice with different values.
    #[error("{0}: given twice with conflicting values")]
    Conflict(Field),
}

/// A masked match over a [`FlowKey`]: a packet matches when `packet & mask == key`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug, Serialize, Deserialize)]
pub struct FlowMatch {
    key: FlowKey,
    mask: FlowKey,
}

impl FlowMatch {
    /// The match that every packet satisfies.
    pub fn any() -> FlowMatch {
        FlowMatch::default()
    }

    /// The key (values of the matched bits; unmatched bits are zero).
    pub fn key(&self) -> &FlowKey {
        &self.key
    }

    /// The mask (set bits are matched).
    pub fn mask(&self) -> &FlowKey {
        &self.mask
    }

    /// Requires `field == value` exactly.
    pub fn with(mut self, field: Field, value: u128) -> FlowMatch {
        self.set(field, value, field.full_mask());
        self
    }

    /// Requires `field & mask == value & mask`.
    pub fn with_masked(mut self, field: Field, value: u128, mask: u128) -> FlowMatch {
        self.set(field, value, mask);
        self
    }

    /// Requires the top `len` bits of a 32-bit address field to equal `addr`'s.
    pub fn with_prefix32(self, field: Field, addr: u32, len: u8) -> FlowMatch {
        let mask = prefix_mask32(len);
        self.with_masked(field, u128::from(addr & mask), u128::from(mask))
    }

    /// Sets (replaces) the constraint on one field. Bits of `value` outside `mask`
    /// are cleared, so the stored key is always canonical.
    pub fn set(&mut self, field: Field, value: u128, mask: u128) {
        let mask = mask & field.full_mask();
        self.key.set(field, value & mask);
        self.mask.set(field, mask);
    }

    /// Removes any constraint on one field.
    pub fn clear(&mut self, field: Field) {
        self.key.set(field, 0);
        self.mask.set(field, 0);
    }

    /// The constraint on one field as `(value, mask)`, or `None` when wildcarded.
    pub fn get(&self, field: Field) -> Option<(u128, u128)> {
        let mask = self.mask.get(field);
        (mask != 0).then(|| (self.key.get(field), mask))
    }

    /// The fields this match constrains, in canonical order.
    pub fn fields(&self) -> impl Iterator<Item = Field> + '_ {
        Field::ALL.into_iter().filter(|f| self.mask.get(*f) != 0)
    }

    /// True when `packet` satisfies the match.
    #[inline]
    pub fn matches(&self, packet: &FlowKey) -> bool {
        packet.and(&self.mask) == self.key
    }

    /// True when every packet matching `other` also matches `self`.
    pub fn covers(&self, other: &FlowMatch) -> bool {
        Field::ALL.into_iter().all(|f| {
            let m = self.mask.get(f);
            // `other` must constrain at least our bits, to our values.
            other.mask.get(f) & m == m && other.key.get(f) & m == self.key.get(f)
        })
    }

    /// True when some packet matches both.
    pub fn overlaps(&self, other: &FlowMatch) -> bool {
        Field::ALL.into_iter().all(|f| {
            let common = self.mask.get(f) & other.mask.get(f);
            self.key.get(f) & common == other.key.get(f) & common
        })
    }

    /// Checks OpenFlow 1.3's prerequisites (section 7.2.3.6): transport ports need
    /// an IP protocol, IP fields need an IP EtherType, ARP fields need ARP.
    pub fn check_prerequisites(&self) -> Result<(), MatchError> {
        let eth_type = self.exact(Field::EthType);
        let is_ip = matches!(eth_type, Some(t) if t == u128::from(ethertype::IPV4) || t == u128::from(ethertype::IPV6));
        let need = |field: Field, ok: bool, needs: &'static str| {
            if self.get(field).is_some() && !ok {
                Err(MatchError::Prerequisite { field, needs })
            } else {
                Ok(())
            }
        };
        need(Field::IpProto, is_ip, "dl_type=0x0800 or 0x86dd")?;
        need(Field::IpDscp, is_ip, "dl_type=0x0800 or 0x86dd")?;
        let v4 = eth_type == Some(u128::from(ethertype::IPV4));
        let v6 = eth_type == Some(u128::from(ethertype::IPV6));
        need(Field::Ipv4Src, v4, "dl_type=0x0800")?;
        need(Field::Ipv4Dst, v4, "dl_type=0x0800")?;
        need(Field::Ipv6Src, v6, "dl_type=0x86dd")?;
        need(Field::Ipv6Dst, v6, "dl_type=0x86dd")?;
        let arp = eth_type == Some(u128::from(ethertype::ARP));
        need(Field::ArpOp, arp, "dl_type=0x0806")?;
        need(Field::ArpSpa, arp, "dl_type=0x0806")?;
        need(Field::ArpTpa, arp, "dl_type=0x0806")?;
        let proto = self.exact(Field::IpProto);
        let l4_ok = is_ip
            && matches!(proto, Some(p) if [ipproto::TCP, ipproto::UDP, ipproto::ICMP, ipproto::ICMPV6]
                .iter()
                .any(|q| u128::from(*q) == p));
        need(Field::L4Src, l4_ok, "nw_proto=6, 17, 1 or 58")?;
        need(Field::L4Dst, l4_ok, "nw_proto=6, 17, 1 or 58")?;
        let vlan_pcp_ok = matches!(self.get(Field::VlanVid), Some((v, m)) if v & m & u128::from(VLAN_PRESENT) != 0);
        need(
            Field::VlanPcp,
            vlan_pcp_ok,
            "vlan_vid with the VLAN present bit",
        )?;
        Ok(())
    }

    /// The exact value a field is matched to, if it is matched on all its bits.
    pub fn exact(&self, field: Field) -> Option<u128> {
        match self.get(field) {
            Some((v, m)) if m == field.full_mask() => Some(v),
            _ => None,
        }
    }
}

/// The mask of an IPv4 prefix of length `len` (clamped to 32).
pub fn prefix_mask32(len: u8) -> u32 {
    match len {
        0 => 0,
        l if l >= 32 => u32::MAX,
        l => u32::MAX << (32 - u32::from(l)),
    }
}

/// An action of an apply-actions instruction.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum Action {
    /// Send a copy of the packet, as it is now, out of a port. For
    /// [`port::CONTROLLER`], `max_len` bytes go in the packet-in.
    Output {
        /// Port number, possibly reserved.
        port: PortNo,
        /// Bytes to send to the controller (`0xffff` = whole frame, no buffer).
        max_len: u16,
    },
    /// Overwrite a header field.
    SetField {
        /// The field to write.
        field: Field,
        /// The new value (the low `field.bits()` bits).
        value: u128,
    },
    /// Push a new outermost VLAN tag with this TPID (0x8100 or 0x88a8).
    PushVlan(u16),
    /// Remove the outermost VLAN tag.
    PopVlan,
    /// Decrement the IP TTL / hop limit; at zero the packet is dropped.
    DecNwTtl,
    /// Run the packet through a group: every bucket acts on its own copy of the
    /// packet as it is now, and the action list goes on with the packet unchanged.
    Group(u32),
}

impl Action {
    /// `output:port` with the whole frame for the controller.
    pub fn output(port: PortNo) -> Action {
        Action::Output {
            port,
            max_len: 0xffff,
        }
    }

    /// `set_field:value->field`.
    pub fn set(field: Field, value: u128) -> Action {
        Action::SetField {
            field,
            value: value & field.full_mask(),
        }
    }
}

/// An instruction of a flow entry (the subset scd implements).
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum Instruction {
    /// Apply these actions now, in order.
    ApplyActions(Vec<Action>),
    /// Empty the packet's action set.
    ClearActions,
    /// Merge these actions into the action set (one per kind; a set-field one per
    /// field), which runs when the pipeline ends (see [`ActionSet`]).
    WriteActions(Vec<Action>),
    /// `metadata = (metadata & !mask) | (value & mask)`.
    WriteMetadata {
        /// The new bits.
        value: u64,
        /// Which bits change.
        mask: u64,
    },
    /// Continue matching in a later table.
    GotoTable(u8),
}

impl Instruction {
    /// The actions an apply-actions or write-actions instruction holds.
    pub fn actions(&self) -> &[Action] {
        match self {
            Instruction::ApplyActions(a) | Instruction::WriteActions(a) => a,
            _ => &[],
        }
    }
}

/// How a group picks among its buckets (`ofp_group_type`, the kinds scd runs).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum GroupType {
    /// Every bucket, each on its own copy of the packet (multicast, copies with
    /// different changes).
    All,
    /// Exactly one bucket (a shared next hop).
    Indirect,
}

/// One bucket of a group: the actions one copy of the packet goes through.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Bucket {
    /// Share of traffic for select groups (0 for all/indirect).
    pub weight: u16,
    /// Port whose liveness decides the bucket (fast-failover only; `port::ANY` else).
    pub watch_port: PortNo,
    /// Group whose liveness decides the bucket (fast-failover only; any group else).
    pub watch_group: u32,
    /// The bucket's actions, executed in order on the copy.
    pub actions: Vec<Action>,
}

impl Bucket {
    /// A bucket of an all or indirect group: just actions, nothing watched.
    pub fn new(actions: Vec<Action>) -> Bucket {
        Bucket {
            weight: 0,
            watch_port: port::ANY,
            watch_group: GROUP_ANY,
            actions,
        }
    }
}

/// `OFPG_MAX`: the highest group number a controller may use.
pub const GROUP_MAX: u32 = 0xffff_ff00;
/// `OFPG_ALL`: every group (group-mod delete only).
pub const GROUP_ALL: u32 = 0xffff_fffc;
/// `OFPG_ANY`: no group (wildcard in watch fields and flow-mod `out_group`).
pub const GROUP_ANY: u32 = 0xffff_ffff;

/// A group entry as a controller specifies it (the body of a group-mod add).
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct GroupSpec {
    /// Group number, at most [`GROUP_MAX`].
    pub group_id: u32,
    /// How buckets are chosen.
    pub group_type: GroupType,
    /// The buckets.
    pub buckets: Vec<Bucket>,
}

/// Flags of a flow entry (`ofp_flow_mod_flags`).
pub mod flags {
    /// Send a flow-removed message when the entry expires or is deleted.
    pub const SEND_FLOW_REM: u16 = 1 << 0;
    /// Refuse an add that overlaps an entry of the same priority.
    pub const CHECK_OVERLAP: u16 = 1 << 1;
    /// On a modify: zero the counters of the entries whose instructions change.
    pub const RESET_COUNTS: u16 = 1 << 2;
    /// Do not keep packet counts.
    pub const NO_PKT_COUNTS: u16 = 1 << 3;
    /// Do not keep byte counts.
    pub const NO_BYT_COUNTS: u16 = 1 << 4;
}

/// A flow entry as a controller specifies it (the body of a flow-mod add).
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct FlowSpec {
    /// Table the entry goes into.
    pub table_id: u8,
    /// Higher wins among overlapping entries.
    pub priority: u16,
    /// Which packets the entry applies to.
    pub matcher: FlowMatch,
    /// What happens to them.
    pub instructions: Vec<Instruction>,
    /// Opaque controller-chosen identifier.
    pub cookie: u64,
    /// Seconds without a hit before expiry (0 = never).
    pub idle_timeout: u16,
    /// Seconds after installation before expiry (0 = never).
    pub hard_timeout: u16,
    /// `flags::*` bits.
    pub flags: u16,
}

impl FlowSpec {
    /// An entry with the given match and actions, no timeouts, cookie 0.
    pub fn new(table_id: u8, priority: u16, matcher: FlowMatch, actions: Vec<Action>) -> FlowSpec {
        FlowSpec {
            table_id,
            priority,
            matcher,
            instructions: vec![Instruction::ApplyActions(actions)],
            cookie: 0,
            idle_timeout: 0,
            hard_timeout: 0,
            flags: 0,
        }
    }

    /// True when the entry sends its packets somewhere: an output, a group or
    /// another table (not a drop).
    pub fn forwards(&self) -> bool {
        self.instructions.iter().any(|i| match i {
            Instruction::GotoTable(_) => true,
            Instruction::ClearActions | Instruction::WriteMetadata { .. } => false,
            Instruction::ApplyActions(actions) | Instruction::WriteActions(actions) => actions
                .iter()
                .any(|a| matches!(a, Action::Output { .. } | Action::Group(_))),
        })
    }
}

/// Applies an action list to a packet summary and returns what leaves which port,
/// in order. This is the abstract meaning of an action list, shared by the switch
/// (which also rewrites bytes) and by tests that compare tables with policies.
/// `DecNwTtl` and VLAN push/pop change only the fields a key holds.
/// A group action sends nothing here (no group is known); see
/// [`apply_actions_with_groups`].
pub fn apply_actions(actions: &[Action], key: &mut FlowKey, out: &mut Vec<(PortNo, FlowKey)>) {
    apply_actions_with_groups(actions, key, out, &|_| None);
}

/// [`apply_actions`] where a group action runs every bucket `groups` gives for it on
/// its own copy of the key (all and indirect groups); the list then goes on with the
/// key as it was before the group.
pub fn apply_actions_with_groups<'g>(
    actions: &[Action],
    key: &mut FlowKey,
    out: &mut Vec<(PortNo, FlowKey)>,
    groups: &dyn Fn(u32) -> Option<&'g [Bucket]>,
) {
    for action in actions {
        match *action {
            Action::Output { port, .. } => out.push((port, *key)),
            Action::SetField { field, value } => key.set(field, value),
            Action::PushVlan(_) => {
                // A new tag copies vid and pcp of the old one (or zero), per OF 1.3.
                key.vlan_vid |= VLAN_PRESENT;
            }
            Action::PopVlan => {
                key.vlan_vid = 0;
                key.vlan_pcp = 0;
            }
            Action::DecNwTtl => {}
            Action::Group(id) => {
                for bucket in groups(id).unwrap_or(&[]) {
                    let mut copy = *key;
                    apply_actions_with_groups(&bucket.actions, &mut copy, out, groups);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mac_parses_and_prints() {
        let mac: Mac = "02:00:5e:00:01:0A".parse().unwrap();
        assert_eq!(mac.to_string(), "02:00:5e:00:01:0a");
        assert_eq!(Mac::from_u64(mac.to_u64()), mac);
        assert!("02:00:5e:00:01".parse::<Mac>().is_err());
        assert!("02:00:5e:00:01:0a:00".parse::<Mac>().is_err());
        assert!("zz:00:5e:00:01:0a".parse::<Mac>().is_err());
    }

    #[test]
    fn prefix_match() {
        let m = FlowMatch::any().with(Field::EthType, 0x800).with_prefix32(
            Field::Ipv4Dst,
            0x6440_0000,
            10,
        );
        let mut p = FlowKey {
            eth_type: 0x800,
            ipv4_dst: 0x6440_0a05,
            ..FlowKey::default()
        };
        assert!(m.matches(&p));
        p.ipv4_dst = 0x0a00_0001;
        assert!(!m.matches(&p));
        assert!(m.check_prerequisites().is_ok());
    }

    #[test]
    fn prerequisites_are_enforced() {
        let m = FlowMatch::any().with(Field::L4Dst, 80);
        assert!(matches!(
            m.check_prerequisites(),
            Err(MatchError::Prerequisite {
                field: Field::L4Dst,
                ..
            })
        ));
        let m = m.with(Field::EthType, 0x800).with(Field::IpProto, 6);
        assert!(m.check_prerequisites().is_ok());
    }

    #[test]
    fn actions_apply_in_order() {
        let mut key = FlowKey::default();
        let mut out = Vec::new();
        apply_actions(
            &[
                Action::output(1),
                Action::set(Field::Ipv4Dst, 7),
                Action::output(2),
            ],
            &mut key,
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].1.ipv4_dst, 0);
        assert_eq!(out[1].1.ipv4_dst, 7);
    }

    fn arb_key() -> impl Strategy<Value = FlowKey> {
        (
            any::<u32>(),
            any::<u16>(),
            any::<u8>(),
            any::<u32>(),
            any::<u16>(),
        )
            .prop_map(|(ip, port, proto, in_port, et)| FlowKey {
                in_port: in_port % 8,
                eth_type: et % 3,
                ip_proto: proto % 3,
                ipv4_dst: ip % 16,
                l4_dst: port % 4,
                ..FlowKey::default()
            })
    }

    proptest! {
        #[test]
        fn covers_implies_match(a in arb_key(), b in arb_key(), p in arb_key(), ma in any::<u8>(), mb in any::<u8>()) {
            let mk = |k: FlowKey, sel: u8| {
                let mut m = FlowMatch::any();
                for (i, f) in [Field::InPort, Field::EthType, Field::IpProto, Field::Ipv4Dst, Field::L4Dst].into_iter().enumerate() {
                    if sel & (1 << i) != 0 { m.set(f, k.get(f), f.full_mask()); }
                }
                m
            };
            let (x, y) = (mk(a, ma), mk(b, mb));
            if x.covers(&y) && y.matches(&p) {
                prop_assert!(x.matches(&p));
            }
            if x.matches(&p) && y.matches(&p) {
                prop_assert!(x.overlaps(&y));
            }
        }
    }
}
