//! The Supercloud experimenter's messages (`OFPT_EXPERIMENTER` with our
//! experimenter id) and the id check every experimenter body shares: today one,
//! [`BindPort`], with which a controller binds a VM port of `scd` to its VM's MAC and
//! addresses (port security, `dataplane_core::port_security`).
//!
//! Layout of a `BindPort` after the header: experimenter id (u32), exp_type (u32),
//! port (u32), MAC (6 bytes, all zero: unbind), number of addresses (u16), then the
//! IPv4 addresses (u32 each). A body that disagrees with its count is bad-len.

use super::buf::{Put, Reader};
use super::error::{BadRequest, ErrorCode};
use super::Fail;
use crate::flow::Mac;
use std::net::Ipv4Addr;

/// Our experimenter id in `OFPT_EXPERIMENTER` messages and `OFPMP_EXPERIMENTER`
/// multiparts (not an IEEE-registered OUI; fixed here).
pub const SUPERCLOUD_EXPERIMENTER: u32 = 0x005c_5c01;
/// exp_type of [`BindPort`] in an `OFPT_EXPERIMENTER` message.
pub const EXP_BIND_PORT: u32 = 0x100;
/// The most addresses one port may be bound to.
pub const MAX_BOUND_IPS: usize = 64;

/// Binds a port to its VM's MAC and IPv4 addresses, or (`mac: None`) unbinds it.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct BindPort {
    /// The OpenFlow port of the VM.
    pub port: u32,
    /// The VM's MAC; `None` leaves the port unbound (no port security).
    pub mac: Option<Mac>,
    /// The VM's addresses (at most [`MAX_BOUND_IPS`]; none when unbinding).
    pub ips: Vec<Ipv4Addr>,
}

/// Refuses another experimenter's id with bad-request/bad-experimenter.
pub(super) fn ours(experimenter: u32) -> Result<(), Fail> {
    if experimenter == SUPERCLOUD_EXPERIMENTER {
        Ok(())
    } else {
        Err(Fail::new(
            ErrorCode::BadRequest(BadRequest::BadExperimenter),
            format!("experimenter {experimenter:#010x} is not supported"),
        ))
    }
}

/// Writes our experimenter id and `exp_type`.
pub(super) fn encode_header(out: &mut Vec<u8>, exp_type: u32) {
    out.put_u32(SUPERCLOUD_EXPERIMENTER);
    out.put_u32(exp_type);
}

fn bad_len(why: impl Into<String>) -> Fail {
    Fail::new(ErrorCode::BadRequest(BadRequest::BadLen), why)
}

impl BindPort {
    /// Decodes the body of an `OFPT_EXPERIMENTER` message (from the experimenter id).
    pub(super) fn decode_message(r: &mut Reader<'_>) -> Result<BindPort, Fail> {
        ours(r.u32()?)?;
        match r.u32()? {
            EXP_BIND_PORT => {}
            other => {
                return Err(Fail::new(
                    ErrorCode::BadRequest(BadRequest::BadExpType),
                    format!("supercloud experimenter message type {other} is not supported"),
                ))
            }
        }
        let port = r.u32()?;
        let mac = Some(r.mac()?).filter(|m| *m != Mac::ZERO);
        let n = usize::from(r.u16()?);
        if n > MAX_BOUND_IPS || r.remaining() != n * 4 {
            return Err(bad_len(format!(
                "bind-port claims {n} addresses (at most {MAX_BOUND_IPS}) in {} bytes",
                r.remaining()
            )));
        }
        if mac.is_none() && n > 0 {
            return Err(bad_len("an unbinding carries no addresses"));
        }
        let ips = (0..n)
            .map(|_| r.u32().map(Ipv4Addr::from))
            .collect::<Result<_, _>>()?;
        Ok(BindPort { port, mac, ips })
    }

    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        encode_header(out, EXP_BIND_PORT);
        out.put_u32(self.port);
        out.extend_from_slice(&self.mac.unwrap_or(Mac::ZERO).0);
        let n = self.ips.len().min(MAX_BOUND_IPS);
        out.put_u16(u16::try_from(n).unwrap_or(0));
        for ip in &self.ips[..n] {
            out.put_u32(u32::from(*ip));
        }
    }
}
