//! Session-level messages: hello (with the version bitmap), features, switch config
//! and controller role.
//!
//! This module owns the bodies of `OFPT_HELLO`, `OFPT_FEATURES_REPLY`,
//! `OFPT_GET_CONFIG_REPLY`/`OFPT_SET_CONFIG` and `OFPT_ROLE_REQUEST`/`REPLY`, and the
//! version negotiation rule of OpenFlow 1.3 section 6.3.1. It never keeps session
//! state and never panics on any input.

use super::buf::{Put, Reader};
use super::error::{wire_enum, BadRequest, ErrorCode, RoleRequestFailed};
use super::{Fail, OFP_VERSION};

/// `OFPHET_VERSIONBITMAP`.
const VERSIONBITMAP: u16 = 1;

/// An `OFPT_HELLO`. Its header version is the highest version the sender speaks.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Hello {
    /// The version in the hello's header.
    pub version: u8,
    /// The version bitmap element (bit `n` of word `n / 32` = version `n`), empty when
    /// the hello carries none.
    pub bitmap: Vec<u32>,
}

impl Hello {
    /// The hello we send: version 1.3 with a bitmap offering only 1.3.
    pub fn of13() -> Hello {
        Hello {
            version: OFP_VERSION,
            bitmap: vec![1 << OFP_VERSION],
        }
    }

    /// True when the peer's hello lets both sides speak OpenFlow 1.3: with a bitmap,
    /// the 1.3 bit must be set; without one, the peer's version must be at least 1.3
    /// (the negotiated version is the smaller of the two).
    pub fn accepts_of13(&self) -> bool {
        if self.bitmap.is_empty() {
            self.version >= OFP_VERSION
        } else {
            self.bitmap
                .first()
                .is_some_and(|w| w & (1 << OFP_VERSION) != 0)
        }
    }

    pub(crate) fn decode(version: u8, r: &mut Reader<'_>) -> Result<Hello, Fail> {
        let mut bitmap = Vec::new();
        // Elements; unknown ones are ignored, as the spec asks.
        while r.remaining() >= 4 {
            let typ = r.u16()?;
            let len = usize::from(r.u16()?);
            if len < 4 {
                return Err(Fail::new(
                    ErrorCode::BadRequest(BadRequest::BadLen),
                    "hello element shorter than its header",
                ));
            }
            let body = r.bytes(len - 4)?;
            r.skip((len.div_ceil(8) * 8 - len).min(r.remaining()))?;
            if typ == VERSIONBITMAP && bitmap.is_empty() {
                let mut b = Reader::new(body);
                while b.remaining() >= 4 {
                    bitmap.push(b.u32()?);
                }
            }
        }
        // Fewer than 4 trailing bytes cannot be an element; OVS ignores them too.
        r.rest();
        Ok(Hello { version, bitmap })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        if self.bitmap.is_empty() {
            return;
        }
        let start = out.len();
        out.put_u16(VERSIONBITMAP);
        out.put_u16(0);
        for w in &self.bitmap {
            out.put_u32(*w);
        }
        let len = out.len() - start;
        out.patch_u16(start + 2, len);
        out.pad8(start);
    }
}

/// `ofp_capabilities` bits of a features reply.
pub mod capabilities {
    /// Flow statistics.
    pub const FLOW_STATS: u32 = 1 << 0;
    /// Table statistics.
    pub const TABLE_STATS: u32 = 1 << 1;
    /// Port statistics.
    pub const PORT_STATS: u32 = 1 << 2;
    /// Group statistics.
    pub const GROUP_STATS: u32 = 1 << 3;
    /// Can reassemble IP fragments.
    pub const IP_REASM: u32 = 1 << 5;
    /// Queue statistics.
    pub const QUEUE_STATS: u32 = 1 << 6;
    /// Switch will block looping ports.
    pub const PORT_BLOCKED: u32 = 1 << 8;
}

/// An `OFPT_FEATURES_REPLY`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct SwitchFeatures {
    /// Datapath id (low 48 bits usually a MAC).
    pub datapath_id: u64,
    /// Packets the switch can buffer for packet-in.
    pub n_buffers: u32,
    /// Number of flow tables.
    pub n_tables: u8,
    /// Auxiliary connection id (0 = main connection).
    pub auxiliary_id: u8,
    /// [`capabilities`] bits.
    pub capabilities: u32,
    /// Reserved field, kept for round trips.
    pub reserved: u32,
}

impl SwitchFeatures {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<SwitchFeatures, Fail> {
        let f = SwitchFeatures {
            datapath_id: r.u64()?,
            n_buffers: r.u32()?,
            n_tables: r.u8()?,
            auxiliary_id: r.u8()?,
            capabilities: {
                r.skip(2)?;
                r.u32()?
            },
            reserved: r.u32()?,
        };
        Ok(f)
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.put_u64(self.datapath_id);
        out.put_u32(self.n_buffers);
        out.put_u8(self.n_tables);
        out.put_u8(self.auxiliary_id);
        out.put_zeros(2);
        out.put_u32(self.capabilities);
        out.put_u32(self.reserved);
    }
}

/// The body of `OFPT_GET_CONFIG_REPLY` and `OFPT_SET_CONFIG`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct SwitchConfig {
    /// `OFPC_FRAG_*` bits.
    pub flags: u16,
    /// Bytes of a table-miss packet to send to the controller (`0xffff` = all).
    pub miss_send_len: u16,
}

impl Default for SwitchConfig {
    /// The spec's default: normal fragment handling, 128 bytes.
    fn default() -> SwitchConfig {
        SwitchConfig {
            flags: 0,
            miss_send_len: 128,
        }
    }
}

impl SwitchConfig {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<SwitchConfig, Fail> {
        Ok(SwitchConfig {
            flags: r.u16()?,
            miss_send_len: r.u16()?,
        })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.put_u16(self.flags);
        out.put_u16(self.miss_send_len);
    }
}

wire_enum! {
    /// `ofp_controller_role`.
    ControllerRole: u32 {
        /** Do not change the role (query). */ NoChange = 0,
        /** Full access, shared with other equal controllers. */ Equal = 1,
        /** Full access, at most one master. */ Master = 2,
        /** Read-only access. */ Slave = 3,
    }
}

/// The body of `OFPT_ROLE_REQUEST` and `OFPT_ROLE_REPLY`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Role {
    /// The role asked for or granted.
    pub role: ControllerRole,
    /// Master election generation id.
    pub generation_id: u64,
}

impl Role {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Role, Fail> {
        let role = ControllerRole::from_wire(r.u32()?);
        r.skip(4)?;
        let generation_id = r.u64()?;
        if let ControllerRole::Other(v) = role {
            return Err(Fail::new(
                ErrorCode::RoleRequestFailed(RoleRequestFailed::BadRole),
                format!("role {v}"),
            ));
        }
        Ok(Role {
            role,
            generation_id,
        })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.put_u32(self.role.to_wire());
        out.put_zeros(4);
        out.put_u64(self.generation_id);
    }
}

/// The body of `OFPT_SET_ASYNC` and `OFPT_GET_ASYNC_REPLY`: which asynchronous
/// messages a connection wants, by reason bit (`1 << reason`), as master or equal
/// (index 0) and as slave (index 1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct AsyncConfig {
    /// Packet-in reasons (`OFPR_*`).
    pub packet_in_mask: [u32; 2],
    /// Port-status reasons (`OFPPR_*`).
    pub port_status_mask: [u32; 2],
    /// Flow-removed reasons (`OFPRR_*`).
    pub flow_removed_mask: [u32; 2],
}

impl Default for AsyncConfig {
    /// What a connection gets until it sets its own (OpenFlow 1.3 §6.1.1, as Open
    /// vSwitch does): a master or equal controller every packet-in but invalid-TTL,
    /// every port-status and every flow-removed; a slave port-status only.
    fn default() -> AsyncConfig {
        AsyncConfig {
            packet_in_mask: [0b011, 0],
            port_status_mask: [0b111, 0b111],
            flow_removed_mask: [0b1111, 0],
        }
    }
}

impl AsyncConfig {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<AsyncConfig, Fail> {
        let mut pair = || -> Result<[u32; 2], Fail> { Ok([r.u32()?, r.u32()?]) };
        Ok(AsyncConfig {
            packet_in_mask: pair()?,
            port_status_mask: pair()?,
            flow_removed_mask: pair()?,
        })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        for mask in [
            self.packet_in_mask,
            self.port_status_mask,
            self.flow_removed_mask,
        ] {
            out.put_u32(mask[0]);
            out.put_u32(mask[1]);
        }
    }
}
