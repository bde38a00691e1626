//! Port descriptions (`ofp_port`), port-status messages and port statistics.
//!
//! This module owns the 64-byte `ofp_port` structure shared by port-status and the
//! port-desc multipart reply, and the 112-byte `ofp_port_stats`. It never looks up a
//! real interface and never panics on any input. Port names longer than 16 bytes are
//! cut (at a character boundary) when written.

use super::buf::{get_str, put_str, Put, Reader};
use super::error::wire_enum;
use super::Fail;
use crate::flow::{Mac, PortNo};

/// `ofp_port_config` bits.
pub mod config {
    /// Port is administratively down.
    pub const PORT_DOWN: u32 = 1 << 0;
    /// Drop all packets received by the port.
    pub const NO_RECV: u32 = 1 << 2;
    /// Drop packets forwarded to the port.
    pub const NO_FWD: u32 = 1 << 5;
    /// Do not send packet-in messages for the port.
    pub const NO_PACKET_IN: u32 = 1 << 6;
}

/// `ofp_port_state` bits.
pub mod state {
    /// No physical link present.
    pub const LINK_DOWN: u32 = 1 << 0;
    /// Port is blocked.
    pub const BLOCKED: u32 = 1 << 1;
    /// Live for fast failover.
    pub const LIVE: u32 = 1 << 2;
}

/// A port description (`ofp_port`).
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct PortDesc {
    /// Port number.
    pub port_no: PortNo,
    /// Hardware address.
    pub hw_addr: Mac,
    /// Name, at most 16 bytes on the wire.
    pub name: String,
    /// [`config`] bits.
    pub config: u32,
    /// [`state`] bits.
    pub state: u32,
    /// Current features (`ofp_port_features`).
    pub curr: u32,
    /// Advertised features.
    pub advertised: u32,
    /// Supported features.
    pub supported: u32,
    /// Features advertised by the peer.
    pub peer: u32,
    /// Current bit rate, kbps.
    pub curr_speed: u32,
    /// Maximum bit rate, kbps.
    pub max_speed: u32,
}

/// Bytes of an `ofp_port`.
pub(crate) const PORT_DESC_LEN: usize = 64;

impl PortDesc {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<PortDesc, Fail> {
        let port_no = r.u32()?;
        r.skip(4)?;
        let hw_addr = r.mac()?;
        r.skip(2)?;
        Ok(PortDesc {
            port_no,
            hw_addr,
            name: get_str(r, 16)?,
            config: r.u32()?,
            state: r.u32()?,
            curr: r.u32()?,
            advertised: r.u32()?,
            supported: r.u32()?,
            peer: r.u32()?,
            curr_speed: r.u32()?,
            max_speed: r.u32()?,
        })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.put_u32(self.port_no);
        out.put_zeros(4);
        out.extend_from_slice(&self.hw_addr.0);
        out.put_zeros(2);
        put_str(out, &self.name, 16);
        for v in [
            self.config,
            self.state,
            self.curr,
            self.advertised,
            self.supported,
            self.peer,
            self.curr_speed,
            self.max_speed,
        ] {
            out.put_u32(v);
        }
    }
}

wire_enum! {
    /// `ofp_port_reason`.
    PortReason: u8 { /** Port added. */ Add = 0, /** Port removed. */ Delete = 1, /** Some attribute changed. */ Modify = 2 }
}

/// An `OFPT_PORT_STATUS`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct PortStatus {
    /// What happened.
    pub reason: PortReason,
    /// The port as it is now.
    pub desc: PortDesc,
}

impl PortStatus {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<PortStatus, Fail> {
        let reason = PortReason::from_wire(r.u8()?);
        r.skip(7)?;
        Ok(PortStatus {
            reason,
            desc: PortDesc::decode(r)?,
        })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.put_u8(self.reason.to_wire());
        out.put_zeros(7);
        self.desc.encode(out);
    }
}

/// An `OFPT_PORT_MOD`: changes a port's `config` bits under `mask`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct PortMod {
    /// The port.
    pub port_no: PortNo,
    /// Its hardware address, as port-desc reports it (a check, not a change).
    pub hw_addr: Mac,
    /// New [`config`] bits.
    pub config: u32,
    /// Which [`config`] bits to change.
    pub mask: u32,
    /// Features to advertise (0: unchanged).
    pub advertise: u32,
}

impl PortMod {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<PortMod, Fail> {
        let port_no = r.u32()?;
        r.skip(4)?;
        let hw_addr = r.mac()?;
        r.skip(2)?;
        let pm = PortMod {
            port_no,
            hw_addr,
            config: r.u32()?,
            mask: r.u32()?,
            advertise: r.u32()?,
        };
        r.skip(4)?;
        Ok(pm)
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.put_u32(self.port_no);
        out.put_zeros(4);
        out.extend_from_slice(&self.hw_addr.0);
        out.put_zeros(2);
        out.put_u32(self.config);
        out.put_u32(self.mask);
        out.put_u32(self.advertise);
        out.put_zeros(4);
    }
}

/// `OFPET_PORT_MOD_FAILED` codes, as `(type, code)` for [`super::ErrorCode::Other`].
pub mod port_mod_failed {
    /// The error type.
    pub const TYPE: u16 = 7;
    /// No such port.
    pub const BAD_PORT: u16 = 0;
    /// The hardware address is not the port's.
    pub const BAD_HW_ADDR: u16 = 1;
    /// Permissions error (the port cannot be opened).
    pub const EPERM: u16 = 4;
}

/// Counters of one port (`ofp_port_stats`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct PortStats {
    /// Port number.
    pub port_no: PortNo,
    /// Received packets.
    pub rx_packets: u64,
    /// Transmitted packets.
    pub tx_packets: u64,
    /// Received bytes.
    pub rx_bytes: u64,
    /// Transmitted bytes.
    pub tx_bytes: u64,
    /// Packets dropped on receive.
    pub rx_dropped: u64,
    /// Packets dropped on transmit.
    pub tx_dropped: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Transmit errors.
    pub tx_errors: u64,
    /// Frame alignment errors.
    pub rx_frame_err: u64,
    /// Overrun errors.
    pub rx_over_err: u64,
    /// CRC errors.
    pub rx_crc_err: u64,
    /// Collisions.
    pub collisions: u64,
    /// Seconds the port has been alive.
    pub duration_sec: u32,
    /// Nanoseconds beyond `duration_sec`.
    pub duration_nsec: u32,
}

/// Bytes of an `ofp_port_stats`.
pub(crate) const PORT_STATS_LEN: usize = 112;

impl PortStats {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<PortStats, Fail> {
        let port_no = r.u32()?;
        r.skip(4)?;
        let mut c = [0u64; 12];
        for v in &mut c {
            *v = r.u64()?;
        }
        let [rx_packets, tx_packets, rx_bytes, tx_bytes, rx_dropped, tx_dropped, rx_errors, tx_errors, rx_frame_err, rx_over_err, rx_crc_err, collisions] =
            c;
        Ok(PortStats {
            port_no,
            rx_packets,
            tx_packets,
            rx_bytes,
            tx_bytes,
            rx_dropped,
            tx_dropped,
            rx_errors,
            tx_errors,
            rx_frame_err,
            rx_over_err,
            rx_crc_err,
            collisions,
            duration_sec: r.u32()?,
            duration_nsec: r.u32()?,
        })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.put_u32(self.port_no);
        out.put_zeros(4);
        for v in [
            self.rx_packets,
            self.tx_packets,
            self.rx_bytes,
            self.tx_bytes,
            self.rx_dropped,
            self.tx_dropped,
            self.rx_errors,
            self.tx_errors,
            self.rx_frame_err,
            self.rx_over_err,
            self.rx_crc_err,
            self.collisions,
        ] {
            out.put_u64(v);
        }
        out.put_u32(self.duration_sec);
        out.put_u32(self.duration_nsec);
    }
}
