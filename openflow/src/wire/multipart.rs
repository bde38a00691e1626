//! Multipart (statistics) requests and replies: desc, flow, aggregate, table,
//! port-stats and port-desc.
//!
//! This module owns the bodies of `OFPT_MULTIPART_REQUEST`/`REPLY` for the types the
//! switch answers, and the splitting of long replies into several messages flagged
//! `OFPMPF_REPLY_MORE`. Other multipart types are refused with
//! bad-request/bad-multipart. It never gathers statistics itself and never panics on
//! any input.

use super::buf::{get_str, put_str, Put, Reader};
use super::error::{BadRequest, ErrorCode};
use super::flow_mod::FlowStatsEntry;
use super::oxm::{decode_match, encode_match};
use super::port::{PortDesc, PortStats, PORT_DESC_LEN, PORT_STATS_LEN};
use super::Fail;
use crate::flow::{FlowMatch, PortNo};

const DESC: u16 = 0;
const FLOW: u16 = 1;
const AGGREGATE: u16 = 2;
const TABLE: u16 = 3;
const PORT_STATS: u16 = 4;
const PORT_DESC: u16 = 13;

/// `OFPMPF_REQ_MORE` / `OFPMPF_REPLY_MORE`: more messages of this multipart follow.
pub const MORE: u16 = 1;

/// The selection of a flow or aggregate statistics request.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct FlowStatsRequest {
    /// Table to read, or `TABLE_ALL`.
    pub table_id: u8,
    /// Only flows that output to this port (`port::ANY` = all).
    pub out_port: PortNo,
    /// Only flows that output to this group (`GROUP_ANY` = all).
    pub out_group: u32,
    /// Cookie value the selected flows must have under `cookie_mask`.
    pub cookie: u64,
    /// Which cookie bits must match (0 = any).
    pub cookie_mask: u64,
    /// Flows whose match this covers (non-strict selection).
    pub matcher: FlowMatch,
}

impl FlowStatsRequest {
    /// Every flow of every table.
    pub fn all() -> FlowStatsRequest {
        FlowStatsRequest {
            table_id: super::flow_mod::TABLE_ALL,
            out_port: crate::flow::port::ANY,
            out_group: super::flow_mod::GROUP_ANY,
            cookie: 0,
            cookie_mask: 0,
            matcher: FlowMatch::any(),
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<FlowStatsRequest, Fail> {
        let table_id = r.u8()?;
        r.skip(3)?;
        let out_port = r.u32()?;
        let out_group = r.u32()?;
        r.skip(4)?;
        Ok(FlowStatsRequest {
            table_id,
            out_port,
            out_group,
            cookie: r.u64()?,
            cookie_mask: r.u64()?,
            matcher: decode_match(r, true)?,
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.put_u8(self.table_id);
        out.put_zeros(3);
        out.put_u32(self.out_port);
        out.put_u32(self.out_group);
        out.put_zeros(4);
        out.put_u64(self.cookie);
        out.put_u64(self.cookie_mask);
        encode_match(out, &self.matcher);
    }
}

/// What a multipart request asks for.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum MultipartRequestBody {
    /// Switch description.
    Desc,
    /// Individual flow statistics.
    Flow(FlowStatsRequest),
    /// Aggregate flow statistics.
    Aggregate(FlowStatsRequest),
    /// Table statistics.
    Table,
    /// Port statistics of one port, or all (`port::ANY`).
    PortStats(PortNo),
    /// Port descriptions.
    PortDesc,
}

/// An `OFPT_MULTIPART_REQUEST`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct MultipartRequest {
    /// `OFPMPF_REQ_*` flags ([`MORE`]).
    pub flags: u16,
    /// The request.
    pub body: MultipartRequestBody,
}

fn bad_multipart(typ: u16) -> Fail {
    Fail::new(
        ErrorCode::BadRequest(BadRequest::BadMultipart),
        format!("multipart type {typ} is not supported"),
    )
}

impl MultipartRequest {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<MultipartRequest, Fail> {
        let typ = r.u16()?;
        let flags = r.u16()?;
        r.skip(4)?;
        let body = match typ {
            DESC => MultipartRequestBody::Desc,
            FLOW => MultipartRequestBody::Flow(FlowStatsRequest::decode(r)?),
            AGGREGATE => MultipartRequestBody::Aggregate(FlowStatsRequest::decode(r)?),
            TABLE => MultipartRequestBody::Table,
            PORT_STATS => {
                let p = r.u32()?;
                r.skip(4)?;
                MultipartRequestBody::PortStats(p)
            }
            PORT_DESC => MultipartRequestBody::PortDesc,
            other => return Err(bad_multipart(other)),
        };
        Ok(MultipartRequest { flags, body })
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let typ = match &self.body {
            MultipartRequestBody::Desc => DESC,
            MultipartRequestBody::Flow(_) => FLOW,
            MultipartRequestBody::Aggregate(_) => AGGREGATE,
            MultipartRequestBody::Table => TABLE,
            MultipartRequestBody::PortStats(_) => PORT_STATS,
            MultipartRequestBody::PortDesc => PORT_DESC,
        };
        out.put_u16(typ);
        out.put_u16(self.flags);
        out.put_zeros(4);
        match &self.body {
            MultipartRequestBody::Flow(f) | MultipartRequestBody::Aggregate(f) => f.encode(out),
            MultipartRequestBody::PortStats(p) => {
                out.put_u32(*p);
                out.put_zeros(4);
            }
            MultipartRequestBody::Desc
            | MultipartRequestBody::Table
            | MultipartRequestBody::PortDesc => {}
        }
    }
}

/// The switch description (`ofp_desc`).
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct SwitchDesc {
    /// Manufacturer (at most 256 bytes).
    pub mfr_desc: String,
    /// Hardware (at most 256 bytes).
    pub hw_desc: String,
    /// Software (at most 256 bytes).
    pub sw_desc: String,
    /// Serial number (at most 32 bytes).
    pub serial_num: String,
    /// Human-readable datapath description (at most 256 bytes).
    pub dp_desc: String,
}

/// Aggregate flow statistics.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct AggregateStats {
    /// Packets of all selected flows.
    pub packet_count: u64,
    /// Bytes of all selected flows.
    pub byte_count: u64,
    /// Number of selected flows.
    pub flow_count: u32,
}

/// Statistics of one table (`ofp_table_stats`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct TableStats {
    /// Table id.
    pub table_id: u8,
    /// Entries in the table.
    pub active_count: u32,
    /// Packets looked up in the table.
    pub lookup_count: u64,
    /// Packets that hit an entry.
    pub matched_count: u64,
}

/// What a multipart reply carries.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum MultipartReplyBody {
    /// Switch description.
    Desc(SwitchDesc),
    /// Flow entries with counters.
    Flow(Vec<FlowStatsEntry>),
    /// Aggregate counters.
    Aggregate(AggregateStats),
    /// Per-table counters.
    Table(Vec<TableStats>),
    /// Per-port counters.
    PortStats(Vec<PortStats>),
    /// Port descriptions.
    PortDesc(Vec<PortDesc>),
}

/// An `OFPT_MULTIPART_REPLY`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct MultipartReply {
    /// `OFPMPF_REPLY_*` flags ([`MORE`]).
    pub flags: u16,
    /// The reply.
    pub body: MultipartReplyBody,
}

fn items<T>(
    r: &mut Reader<'_>,
    mut one: impl FnMut(&mut Reader<'_>) -> Result<T, Fail>,
) -> Result<Vec<T>, Fail> {
    let mut out = Vec::new();
    while !r.is_empty() {
        out.push(one(r)?);
    }
    Ok(out)
}

impl MultipartReply {
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<MultipartReply, Fail> {
        let typ = r.u16()?;
        let flags = r.u16()?;
        r.skip(4)?;
        let body = match typ {
            DESC => MultipartReplyBody::Desc(SwitchDesc {
                mfr_desc: get_str(r, 256)?,
                hw_desc: get_str(r, 256)?,
                sw_desc: get_str(r, 256)?,
                serial_num: get_str(r, 32)?,
                dp_desc: get_str(r, 256)?,
            }),
            FLOW => MultipartReplyBody::Flow(items(r, FlowStatsEntry::decode)?),
            AGGREGATE => {
                let a = AggregateStats {
                    packet_count: r.u64()?,
                    byte_count: r.u64()?,
                    flow_count: r.u32()?,
                };
                r.skip(4)?;
                MultipartReplyBody::Aggregate(a)
            }
            TABLE => MultipartReplyBody::Table(items(r, |r| {
                let table_id = r.u8()?;
                r.skip(3)?;
                Ok(TableStats {
                    table_id,
                    active_count: r.u32()?,
                    lookup_count: r.u64()?,
                    matched_count: r.u64()?,
                })
            })?),
            PORT_STATS => MultipartReplyBody::PortStats(items(r, PortStats::decode)?),
            PORT_DESC => MultipartReplyBody::PortDesc(items(r, PortDesc::decode)?),
            other => return Err(bad_multipart(other)),
        };
        Ok(MultipartReply { flags, body })
    }

    fn type_code(&self) -> u16 {
        match &self.body {
            MultipartReplyBody::Desc(_) => DESC,
            MultipartReplyBody::Flow(_) => FLOW,
            MultipartReplyBody::Aggregate(_) => AGGREGATE,
            MultipartReplyBody::Table(_) => TABLE,
            MultipartReplyBody::PortStats(_) => PORT_STATS,
            MultipartReplyBody::PortDesc(_) => PORT_DESC,
        }
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.put_u16(self.type_code());
        out.put_u16(self.flags);
        out.put_zeros(4);
        match &self.body {
            MultipartReplyBody::Desc(d) => {
                put_str(out, &d.mfr_desc, 256);
                put_str(out, &d.hw_desc, 256);
                put_str(out, &d.sw_desc, 256);
                put_str(out, &d.serial_num, 32);
                put_str(out, &d.dp_desc, 256);
            }
            MultipartReplyBody::Flow(v) => v.iter().for_each(|e| e.encode(out)),
            MultipartReplyBody::Aggregate(a) => {
                out.put_u64(a.packet_count);
                out.put_u64(a.byte_count);
                out.put_u32(a.flow_count);
                out.put_zeros(4);
            }
            MultipartReplyBody::Table(v) => {
                for t in v {
                    out.put_u8(t.table_id);
                    out.put_zeros(3);
                    out.put_u32(t.active_count);
                    out.put_u64(t.lookup_count);
                    out.put_u64(t.matched_count);
                }
            }
            MultipartReplyBody::PortStats(v) => v.iter().for_each(|p| p.encode(out)),
            MultipartReplyBody::PortDesc(v) => v.iter().for_each(|p| p.encode(out)),
        }
    }

    /// Splits a reply whose list would not fit one message (65535 bytes) into replies
    /// that each fit, all but the last flagged [`MORE`]. Replies that fit, and
    /// non-list replies, come back as one.
    pub fn split(&self) -> Vec<MultipartReply> {
        // Room for list items: message minus header (8) and multipart header (8).
        const ROOM: usize = super::MAX_MESSAGE_LEN - 16;
        fn chunks<T: Clone>(v: &[T], size: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
            let mut out: Vec<Vec<T>> = vec![Vec::new()];
            let mut used = 0;
            for item in v {
                let n = size(item);
                if used + n > ROOM && out.last().is_some_and(|c| !c.is_empty()) {
                    out.push(Vec::new());
                    used = 0;
                }
                used += n;
                if let Some(c) = out.last_mut() {
                    c.push(item.clone());
                }
            }
            out
        }
        let parts: Vec<MultipartReplyBody> = match &self.body {
            MultipartReplyBody::Flow(v) => chunks(v, |e| {
                let mut b = Vec::new();
                e.encode(&mut b);
                b.len()
            })
            .into_iter()
            .map(MultipartReplyBody::Flow)
            .collect(),
            MultipartReplyBody::Table(v) => chunks(v, |_| 24)
                .into_iter()
                .map(MultipartReplyBody::Table)
                .collect(),
            MultipartReplyBody::PortStats(v) => chunks(v, |_| PORT_STATS_LEN)
                .into_iter()
                .map(MultipartReplyBody::PortStats)
                .collect(),
            MultipartReplyBody::PortDesc(v) => chunks(v, |_| PORT_DESC_LEN)
                .into_iter()
                .map(MultipartReplyBody::PortDesc)
                .collect(),
            other => vec![other.clone()],
        };
        let n = parts.len();
        parts
            .into_iter()
            .enumerate()
            .map(|(i, body)| MultipartReply {
                flags: if i + 1 < n {
                    self.flags | MORE
                } else {
                    self.flags
                },
                body,
            })
            .collect()
    }
}
