//! The OpenFlow 1.3 wire codec: framing, [`Message`], [`encode`] and [`decode`].
//!
//! This module owns the translation between OpenFlow 1.3 bytes and typed messages,
//! and the choice of the error reply a bad message deserves. It is I/O-free: it never
//! reads a socket, keeps no session state and never panics on any input; decoding
//! validates every length before use and returns a [`DecodeError`] that carries the
//! OpenFlow error type and code to answer with.
//!
//! Usage on a byte stream:
//! 1. [`frame_len`] on the buffered bytes says how long the first message is (or that
//!    more bytes are needed). A header length below 8 is [`FrameError`]: the stream
//!    cannot be resynchronised and the connection must be closed.
//! 2. [`decode`] on exactly those bytes gives `(xid, Message)`, or a [`DecodeError`];
//!    for the latter, [`error_reply_for`] builds the `OFPT_ERROR` to send back with the
//!    same xid, and the stream stays in sync because framing used the header length.
//! 3. [`encode`] (or [`encode_into`], appending to a reusable buffer) writes a message.

mod action;
mod buf;
pub mod error;
mod experimenter;
mod flow_mod;
mod group_mod;
mod multipart;
mod oxm;
mod packet;
mod port;
mod switch;

pub use error::{
    BadAction, BadInstruction, BadMatch, BadRequest, ErrorCode, ErrorMsg, FlowModFailed,
    GroupModFailed, HelloFailed, RoleRequestFailed, SwitchConfigFailed,
};
pub use experimenter::{
    AddPort, BindPort, DelPort, EXP_ADD_PORT, EXP_BIND_PORT, EXP_DEL_PORT, MAX_BOUND_IPS,
    SUPERCLOUD_EXPERIMENTER,
};
pub use flow_mod::{
    FlowMod, FlowModCommand, FlowRemoved, FlowRemovedReason, FlowStatsEntry, GROUP_ANY, TABLE_ALL,
};
pub use group_mod::{GroupMod, GroupModCommand};
pub use multipart::{
    AggregateStats, FlowStatsRequest, MultipartReply, MultipartReplyBody, MultipartRequest,
    MultipartRequestBody, SwitchDesc, TableFeatures, TableStats, TunnelStatsEntry,
    EXP_TUNNEL_STATS, MORE,
};
pub use packet::{PacketIn, PacketInReason, PacketOut};
pub use port::{
    config as port_config, port_mod_failed, state as port_state, PortDesc, PortMod, PortReason,
    PortStats, PortStatus,
};
pub use switch::{
    capabilities, AsyncConfig, ControllerRole, Hello, Role, SwitchConfig, SwitchFeatures,
};

use buf::{Put, Reader, Short};

/// `OFP_VERSION` of OpenFlow 1.3.
pub const OFP_VERSION: u8 = 0x04;
/// `OFP_NO_BUFFER`.
pub const NO_BUFFER: u32 = 0xffff_ffff;
/// Bytes of the `ofp_header`.
pub const HEADER_LEN: usize = 8;
/// The largest message the 16-bit length can describe.
pub const MAX_MESSAGE_LEN: usize = 0xffff;
/// Bytes of the offending message an error reply carries (OpenFlow 1.3 section 7.4.4).
pub const ERROR_DATA_LEN: usize = 64;

/// `ofp_type` numbers.
pub mod msg_type {
    #![allow(missing_docs)]
    pub const HELLO: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const ECHO_REQUEST: u8 = 2;
    pub const ECHO_REPLY: u8 = 3;
    pub const EXPERIMENTER: u8 = 4;
    pub const FEATURES_REQUEST: u8 = 5;
    pub const FEATURES_REPLY: u8 = 6;
    pub const GET_CONFIG_REQUEST: u8 = 7;
    pub const GET_CONFIG_REPLY: u8 = 8;
    pub const SET_CONFIG: u8 = 9;
    pub const PACKET_IN: u8 = 10;
    pub const FLOW_REMOVED: u8 = 11;
    pub const PORT_STATUS: u8 = 12;
    pub const PACKET_OUT: u8 = 13;
    pub const FLOW_MOD: u8 = 14;
    pub const GROUP_MOD: u8 = 15;
    pub const PORT_MOD: u8 = 16;
    pub const MULTIPART_REQUEST: u8 = 18;
    pub const MULTIPART_REPLY: u8 = 19;
    pub const BARRIER_REQUEST: u8 = 20;
    pub const BARRIER_REPLY: u8 = 21;
    pub const ROLE_REQUEST: u8 = 24;
    pub const ROLE_REPLY: u8 = 25;
    pub const GET_ASYNC_REQUEST: u8 = 26;
    pub const GET_ASYNC_REPLY: u8 = 27;
    pub const SET_ASYNC: u8 = 28;
}

/// An OpenFlow 1.3 message (the subset the supercloud speaks).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Message {
    /// `OFPT_HELLO`.
    Hello(Hello),
    /// `OFPT_ERROR`.
    Error(ErrorMsg),
    /// `OFPT_ECHO_REQUEST` with its payload.
    EchoRequest(Vec<u8>),
    /// `OFPT_ECHO_REPLY` with the request's payload.
    EchoReply(Vec<u8>),
    /// `OFPT_FEATURES_REQUEST`.
    FeaturesRequest,
    /// `OFPT_FEATURES_REPLY`.
    FeaturesReply(SwitchFeatures),
    /// `OFPT_GET_CONFIG_REQUEST`.
    GetConfigRequest,
    /// `OFPT_GET_CONFIG_REPLY`.
    GetConfigReply(SwitchConfig),
    /// `OFPT_SET_CONFIG`.
    SetConfig(SwitchConfig),
    /// `OFPT_PACKET_IN`.
    PacketIn(PacketIn),
    /// `OFPT_FLOW_REMOVED`.
    FlowRemoved(FlowRemoved),
    /// `OFPT_PORT_STATUS`.
    PortStatus(PortStatus),
    /// `OFPT_PACKET_OUT`.
    PacketOut(PacketOut),
    /// `OFPT_FLOW_MOD`.
    FlowMod(FlowMod),
    /// `OFPT_GROUP_MOD`.
    GroupMod(GroupMod),
    /// `OFPT_PORT_MOD`.
    PortMod(PortMod),
    /// `OFPT_MULTIPART_REQUEST`.
    MultipartRequest(MultipartRequest),
    /// `OFPT_MULTIPART_REPLY`.
    MultipartReply(MultipartReply),
    /// `OFPT_BARRIER_REQUEST`.
    BarrierRequest,
    /// `OFPT_BARRIER_REPLY`.
    BarrierReply,
    /// `OFPT_ROLE_REQUEST`.
    RoleRequest(Role),
    /// `OFPT_ROLE_REPLY`.
    RoleReply(Role),
    /// `OFPT_GET_ASYNC_REQUEST`.
    GetAsyncRequest,
    /// `OFPT_GET_ASYNC_REPLY`.
    GetAsyncReply(AsyncConfig),
    /// `OFPT_SET_ASYNC`.
    SetAsync(AsyncConfig),
    /// `OFPT_EXPERIMENTER` of the Supercloud experimenter: a VM port's binding.
    BindPort(BindPort),
    /// `OFPT_EXPERIMENTER` of the Supercloud experimenter: add a port at run time.
    AddPort(AddPort),
    /// `OFPT_EXPERIMENTER` of the Supercloud experimenter: remove a port.
    DelPort(DelPort),
}

impl Message {
    /// The `ofp_type` of the message.
    pub fn msg_type(&self) -> u8 {
        use msg_type::*;
        match self {
            Message::Hello(_) => HELLO,
            Message::Error(_) => ERROR,
            Message::EchoRequest(_) => ECHO_REQUEST,
            Message::EchoReply(_) => ECHO_REPLY,
            Message::FeaturesRequest => FEATURES_REQUEST,
            Message::FeaturesReply(_) => FEATURES_REPLY,
            Message::GetConfigRequest => GET_CONFIG_REQUEST,
            Message::GetConfigReply(_) => GET_CONFIG_REPLY,
            Message::SetConfig(_) => SET_CONFIG,
            Message::PacketIn(_) => PACKET_IN,
            Message::FlowRemoved(_) => FLOW_REMOVED,
            Message::PortStatus(_) => PORT_STATUS,
            Message::PacketOut(_) => PACKET_OUT,
            Message::FlowMod(_) => FLOW_MOD,
            Message::GroupMod(_) => GROUP_MOD,
            Message::PortMod(_) => PORT_MOD,
            Message::MultipartRequest(_) => MULTIPART_REQUEST,
            Message::MultipartReply(_) => MULTIPART_REPLY,
            Message::BarrierRequest => BARRIER_REQUEST,
            Message::BarrierReply => BARRIER_REPLY,
            Message::RoleRequest(_) => ROLE_REQUEST,
            Message::RoleReply(_) => ROLE_REPLY,
            Message::GetAsyncRequest => GET_ASYNC_REQUEST,
            Message::GetAsyncReply(_) => GET_ASYNC_REPLY,
            Message::SetAsync(_) => SET_ASYNC,
            Message::BindPort(_) | Message::AddPort(_) | Message::DelPort(_) => EXPERIMENTER,
        }
    }
}

/// A decoding failure inside the codec: the error to reply with and why.
#[derive(Debug, Clone)]
pub(crate) struct Fail {
    pub(crate) code: ErrorCode,
    pub(crate) why: String,
}

impl Fail {
    pub(crate) fn new(code: ErrorCode, why: impl Into<String>) -> Fail {
        Fail {
            code,
            why: why.into(),
        }
    }
}

impl From<Short> for Fail {
    fn from(_: Short) -> Fail {
        Fail::new(
            ErrorCode::BadRequest(BadRequest::BadLen),
            "message shorter than its fields",
        )
    }
}

/// The stream cannot be cut into messages any more; close the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A header claims a length below the header's own 8 bytes.
    #[error("OpenFlow header length {0} is below 8: the stream cannot be resynchronised")]
    BadLength(u16),
}

/// A message that cannot be accepted, with the OpenFlow error to answer it with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("OpenFlow message type {msg_type} xid {xid:#x}: {code}: {detail}")]
pub struct DecodeError {
    /// The xid of the offending message (0 when even the header was unreadable).
    pub xid: u32,
    /// Its `ofp_type` (for callers that must not answer errors with errors).
    pub msg_type: u8,
    /// The error type and code to reply with.
    pub code: ErrorCode,
    /// What was wrong, for logs.
    pub detail: String,
}

/// An encoding failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The message would exceed 65535 bytes (split multipart replies with
    /// [`MultipartReply::split`]; shorten packet data).
    #[error("message of {0} bytes exceeds the 65535-byte OpenFlow limit")]
    TooLong(usize),
}

/// The `ofp_header` fields.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Header {
    /// Protocol version.
    pub version: u8,
    /// `ofp_type`.
    pub msg_type: u8,
    /// Length including the header.
    pub length: u16,
    /// Transaction id.
    pub xid: u32,
}

/// Reads the header at the start of `buf`, if 8 bytes are there.
pub fn peek_header(buf: &[u8]) -> Option<Header> {
    let mut r = Reader::new(buf);
    Some(Header {
        version: r.u8().ok()?,
        msg_type: r.u8().ok()?,
        length: r.u16().ok()?,
        xid: r.u32().ok()?,
    })
}

/// How many bytes the first message in `buf` takes: `Ok(None)` until its whole
/// header and body have arrived, `Ok(Some(n))` when `buf[..n]` is one message.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    let Some(h) = peek_header(buf) else {
        return Ok(None);
    };
    let n = usize::from(h.length);
    if n < HEADER_LEN {
        return Err(FrameError::BadLength(h.length));
    }
    Ok((buf.len() >= n).then_some(n))
}

/// Decodes exactly one message (`buf` must be one frame, as [`frame_len`] cut it).
pub fn decode(buf: &[u8]) -> Result<(u32, Message), DecodeError> {
    let Some(h) = peek_header(buf) else {
        return Err(DecodeError {
            xid: 0,
            msg_type: 0,
            code: ErrorCode::BadRequest(BadRequest::BadLen),
            detail: "shorter than an OpenFlow header".into(),
        });
    };
    let fail = |f: Fail| DecodeError {
        xid: h.xid,
        msg_type: h.msg_type,
        code: f.code,
        detail: f.why,
    };
    if usize::from(h.length) != buf.len() {
        return Err(fail(Fail::new(
            ErrorCode::BadRequest(BadRequest::BadLen),
            format!("header length {} but {} bytes", h.length, buf.len()),
        )));
    }
    // Hello and error have the same layout in every version (a peer that cannot
    // speak 1.3 answers our hello with a hello-failed error in its own version).
    let version_free = matches!(h.msg_type, msg_type::HELLO | msg_type::ERROR);
    if h.version != OFP_VERSION && !version_free {
        return Err(fail(Fail::new(
            ErrorCode::BadRequest(BadRequest::BadVersion),
            format!("version {:#x} (only 1.3 = 0x04 is spoken)", h.version),
        )));
    }
    let mut r = Reader::new(buf.get(HEADER_LEN..).unwrap_or(&[]));
    let msg = decode_body(h, &mut r).map_err(fail)?;
    if !r.is_empty() {
        return Err(fail(Fail::new(
            ErrorCode::BadRequest(BadRequest::BadLen),
            format!("{} unexpected bytes after the body", r.remaining()),
        )));
    }
    Ok((h.xid, msg))
}

fn decode_body(h: Header, r: &mut Reader<'_>) -> Result<Message, Fail> {
    use msg_type::*;
    Ok(match h.msg_type {
        HELLO => Message::Hello(Hello::decode(h.version, r)?),
        ERROR => Message::Error(ErrorMsg::decode(r)?),
        ECHO_REQUEST => Message::EchoRequest(r.rest().to_vec()),
        ECHO_REPLY => Message::EchoReply(r.rest().to_vec()),
        FEATURES_REQUEST => Message::FeaturesRequest,
        FEATURES_REPLY => Message::FeaturesReply(SwitchFeatures::decode(r)?),
        GET_CONFIG_REQUEST => Message::GetConfigRequest,
        GET_CONFIG_REPLY => Message::GetConfigReply(SwitchConfig::decode(r)?),
        SET_CONFIG => Message::SetConfig(SwitchConfig::decode(r)?),
        PACKET_IN => Message::PacketIn(PacketIn::decode(r)?),
        FLOW_REMOVED => Message::FlowRemoved(FlowRemoved::decode(r)?),
        PORT_STATUS => Message::PortStatus(PortStatus::decode(r)?),
        PACKET_OUT => Message::PacketOut(PacketOut::decode(r)?),
        FLOW_MOD => Message::FlowMod(FlowMod::decode(r)?),
        GROUP_MOD => Message::GroupMod(GroupMod::decode(r)?),
        PORT_MOD => Message::PortMod(PortMod::decode(r)?),
        MULTIPART_REQUEST => Message::MultipartRequest(MultipartRequest::decode(r)?),
        MULTIPART_REPLY => Message::MultipartReply(MultipartReply::decode(r)?),
        BARRIER_REQUEST => Message::BarrierRequest,
        BARRIER_REPLY => Message::BarrierReply,
        ROLE_REQUEST => Message::RoleRequest(Role::decode(r)?),
        ROLE_REPLY => Message::RoleReply(Role::decode(r)?),
        GET_ASYNC_REQUEST => Message::GetAsyncRequest,
        GET_ASYNC_REPLY => Message::GetAsyncReply(AsyncConfig::decode(r)?),
        SET_ASYNC => Message::SetAsync(AsyncConfig::decode(r)?),
        EXPERIMENTER => experimenter::decode_message(r)?,
        other => {
            return Err(Fail::new(
                ErrorCode::BadRequest(BadRequest::BadType),
                format!("message type {other} is not supported"),
            ))
        }
    })
}

/// Appends the encoding of `msg` with transaction id `xid` to `out`. On error `out` is
/// left as it was.
pub fn encode_into(msg: &Message, xid: u32, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    let version = match msg {
        Message::Hello(h) => h.version,
        _ => OFP_VERSION,
    };
    out.put_u8(version);
    out.put_u8(msg.msg_type());
    out.put_u16(0);
    out.put_u32(xid);
    match msg {
        Message::Hello(h) => h.encode(out),
        Message::Error(e) => e.encode(out),
        Message::EchoRequest(d) | Message::EchoReply(d) => out.extend_from_slice(d),
        Message::FeaturesRequest
        | Message::GetConfigRequest
        | Message::BarrierRequest
        | Message::BarrierReply
        | Message::GetAsyncRequest => {}
        Message::GetAsyncReply(a) | Message::SetAsync(a) => a.encode(out),
        Message::FeaturesReply(f) => f.encode(out),
        Message::GetConfigReply(c) | Message::SetConfig(c) => c.encode(out),
        Message::PacketIn(p) => p.encode(out),
        Message::FlowRemoved(f) => f.encode(out),
        Message::PortStatus(p) => p.encode(out),
        Message::PacketOut(p) => p.encode(out),
        Message::FlowMod(f) => f.encode(out),
        Message::GroupMod(g) => g.encode(out),
        Message::PortMod(p) => p.encode(out),
        Message::MultipartRequest(m) => m.encode(out),
        Message::MultipartReply(m) => m.encode(out),
        Message::RoleRequest(r) | Message::RoleReply(r) => r.encode(out),
        Message::BindPort(b) => b.encode(out),
        Message::AddPort(a) => a.encode(out),
        Message::DelPort(d) => d.encode(out),
    }
    let len = out.len() - start;
    if len > MAX_MESSAGE_LEN {
        out.truncate(start);
        return Err(EncodeError::TooLong(len));
    }
    out.patch_u16(start + 2, len);
    Ok(())
}

/// Encodes `msg` with transaction id `xid`.
pub fn encode(msg: &Message, xid: u32) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    encode_into(msg, xid, &mut out)?;
    Ok(out)
}

/// The `OFPT_ERROR` answering a message that failed to decode: the error's type and
/// code, and the first 64 bytes of the offending message. Send it with `err.xid`.
pub fn error_reply_for(err: &DecodeError, offending: &[u8]) -> Message {
    Message::Error(ErrorMsg {
        code: err.code,
        data: offending
            .get(..ERROR_DATA_LEN.min(offending.len()))
            .unwrap_or(&[])
            .to_vec(),
    })
}
