//! The Supercloud experimenter's messages (`OFPT_EXPERIMENTER` with our
//! experimenter id) and the id check every experimenter body shares:
//! [`BindPort`], with which a controller binds a VM port of `scd` to its VM's MAC and
//! addresses (port security, `dataplane_core::port_security`), and [`AddPort`] and
//! [`DelPort`], with which it asks `scd` to add or remove a port while it runs.
//!
//! Layout of a `BindPort` after the header: experimenter id (u32), exp_type (u32),
//! port (u32), MAC (6 bytes, all zero: unbind), number of addresses (u16), then the
//! IPv4 addresses (u32 each), then, only when the VM has IPv6 addresses of its
//! own, their number (u16) and the addresses (16 bytes each). A body that
//! disagrees with its counts is bad-len.

use super::buf::{Put, Reader};
use super::error::{BadRequest, ErrorCode};
use super::Fail;
use crate::flow::Mac;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Our experimenter id in `OFPT_EXPERIMENTER` messages and `OFPMP_EXPERIMENTER`
/// multiparts (not an IEEE-registered OUI; fixed here).
pub const SUPERCLOUD_EXPERIMENTER: u32 = 0x005c_5c01;
/// exp_type of [`BindPort`] in an `OFPT_EXPERIMENTER` message.
pub const EXP_BIND_PORT: u32 = 0x100;
/// exp_type of [`AddPort`].
pub const EXP_ADD_PORT: u32 = 0x101;
/// exp_type of [`DelPort`].
pub const EXP_DEL_PORT: u32 = 0x102;
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
    /// The VM's IPv6 addresses besides those its MAC gives it (at most
    /// [`MAX_BOUND_IPS`]; left out of the message when there are none, so
    /// that switches without IPv6 read it as before).
    pub ipv6: Vec<Ipv6Addr>,
}

/// Asks `scd` to open a device and add it as a port while it runs (the
/// controller's way to the management socket's `add`). Layout after the exp_type:
/// port (u32), kind (u8: 0 TAP, 1 raw), flags (u8: bit 0 attach to an existing
/// TAP instead of creating one), 2 bytes of padding, the interface name (16
/// bytes, NUL-padded), then a [`BindPort`]-style MAC, count and addresses.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct AddPort {
    /// The OpenFlow port number to give it.
    pub port: u32,
    /// True: a raw packet socket on an existing interface; false: a TAP.
    pub raw: bool,
    /// TAP only: attach to an existing persistent TAP instead of creating one.
    pub attach: bool,
    /// The interface name (at most 15 bytes).
    pub name: String,
    /// The VM it is bound to (port security), if any.
    pub mac: Option<Mac>,
    /// The VM's addresses (with `mac`).
    pub ips: Vec<Ipv4Addr>,
}

/// Asks `scd` to remove a port (the management socket's `del`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct DelPort {
    /// The OpenFlow port number.
    pub port: u32,
}

/// Decodes an `OFPT_EXPERIMENTER` body (from the experimenter id) of ours.
pub(super) fn decode_message(r: &mut Reader<'_>) -> Result<super::Message, Fail> {
    ours(r.u32()?)?;
    Ok(match r.u32()? {
        EXP_BIND_PORT => super::Message::BindPort(BindPort::decode_body(r)?),
        EXP_ADD_PORT => super::Message::AddPort(AddPort::decode_body(r)?),
        EXP_DEL_PORT => super::Message::DelPort(DelPort { port: r.u32()? }),
        other => {
            return Err(Fail::new(
                ErrorCode::BadRequest(BadRequest::BadExpType),
                format!("supercloud experimenter message type {other} is not supported"),
            ))
        }
    })
}

/// Reads a MAC, an address count and the addresses, as the rest of the body.
/// A binding's MAC and IPv4 addresses; `more_may_follow`: the body may go on
/// after them (a bind-port's IPv6 addresses).
fn decode_binding(
    r: &mut Reader<'_>,
    what: &str,
    more_may_follow: bool,
) -> Result<(Option<Mac>, Vec<Ipv4Addr>), Fail> {
    let mac = Some(r.mac()?).filter(|m| *m != Mac::ZERO);
    let n = usize::from(r.u16()?);
    let fits = if more_may_follow {
        r.remaining() >= n * 4
    } else {
        r.remaining() == n * 4
    };
    if n > MAX_BOUND_IPS || !fits {
        return Err(bad_len(format!(
            "{what} claims {n} addresses (at most {MAX_BOUND_IPS}) in {} bytes",
            r.remaining()
        )));
    }
    if mac.is_none() && n > 0 {
        return Err(bad_len(format!(
            "{what} without a MAC carries no addresses"
        )));
    }
    let ips = (0..n)
        .map(|_| r.u32().map(Ipv4Addr::from))
        .collect::<Result<_, _>>()?;
    Ok((mac, ips))
}

fn encode_binding(out: &mut Vec<u8>, mac: Option<Mac>, ips: &[Ipv4Addr]) {
    out.extend_from_slice(&mac.unwrap_or(Mac::ZERO).0);
    let n = ips.len().min(MAX_BOUND_IPS);
    out.put_u16(u16::try_from(n).unwrap_or(0));
    for ip in &ips[..n] {
        out.put_u32(u32::from(*ip));
    }
}

impl AddPort {
    fn decode_body(r: &mut Reader<'_>) -> Result<AddPort, Fail> {
        let port = r.u32()?;
        let raw = match r.u8()? {
            0 => false,
            1 => true,
            other => {
                return Err(bad_len(format!(
                    "add-port kind {other} is neither TAP (0) nor raw (1)"
                )))
            }
        };
        let attach = r.u8()? & 1 != 0;
        r.skip(2)?;
        let name = super::buf::get_str(r, 16)?;
        let (mac, ips) = decode_binding(r, "add-port", false)?;
        Ok(AddPort {
            port,
            raw,
            attach,
            name,
            mac,
            ips,
        })
    }

    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        encode_header(out, EXP_ADD_PORT);
        out.put_u32(self.port);
        out.put_u8(u8::from(self.raw));
        out.put_u8(u8::from(self.attach));
        out.put_zeros(2);
        super::buf::put_str(out, &self.name, 16);
        encode_binding(out, self.mac, &self.ips);
    }
}

impl DelPort {
    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        encode_header(out, EXP_DEL_PORT);
        out.put_u32(self.port);
    }
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
    fn decode_body(r: &mut Reader<'_>) -> Result<BindPort, Fail> {
        let port = r.u32()?;
        let (mac, ips) = decode_binding(r, "bind-port", true)?;
        let ipv6 = if r.is_empty() {
            Vec::new()
        } else {
            let n = usize::from(r.u16()?);
            if n > MAX_BOUND_IPS || r.remaining() != n * 16 || mac.is_none() {
                return Err(bad_len(format!(
                    "bind-port claims {n} IPv6 addresses (at most {MAX_BOUND_IPS}, with a MAC) in {} bytes",
                    r.remaining()
                )));
            }
            (0..n)
                .map(|_| {
                    r.bytes(16)
                        .map(|b| Ipv6Addr::from(<[u8; 16]>::try_from(b).unwrap_or_default()))
                })
                .collect::<Result<_, _>>()?
        };
        Ok(BindPort {
            port,
            mac,
            ips,
            ipv6,
        })
    }

    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        encode_header(out, EXP_BIND_PORT);
        out.put_u32(self.port);
        encode_binding(out, self.mac, &self.ips);
        if !self.ipv6.is_empty() && self.mac.is_some() {
            let n = self.ipv6.len().min(MAX_BOUND_IPS);
            out.put_u16(u16::try_from(n).unwrap_or(0));
            for ip in &self.ipv6[..n] {
                out.extend_from_slice(&ip.octets());
            }
        }
    }
}
