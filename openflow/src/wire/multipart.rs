//! Multipart (statistics) requests and replies: desc, flow, aggregate, table,
//! port-stats, port-desc, group-desc, table-features, and the Supercloud
//! experimenter's tunnel statistics.
//!
//! This module owns the bodies of `OFPT_MULTIPART_REQUEST`/`REPLY` for the types the
//! switch answers, and the splitting of long replies into several messages flagged
//! `OFPMPF_REPLY_MORE`. Other multipart types are refused with
//! bad-request/bad-multipart, experimenter multiparts of another experimenter with
//! bad-request/bad-experimenter and unknown types of ours with
//! bad-request/bad-exp-type. It never gathers statistics itself and never panics on
//! any input.

use super::buf::{get_str, put_str, Put, Reader};
use super::error::{BadRequest, ErrorCode};
use super::flow_mod::FlowStatsEntry;
use super::group_mod::{decode_group_desc, encode_group_desc};
use super::oxm::{decode_match, encode_match};
use super::port::{PortDesc, PortStats, PORT_DESC_LEN, PORT_STATS_LEN};
use super::Fail;
use crate::flow::{FlowMatch, GroupSpec, PortNo};

const DESC: u16 = 0;
const FLOW: u16 = 1;
const AGGREGATE: u16 = 2;
const TABLE: u16 = 3;
const PORT_STATS: u16 = 4;
const GROUP_DESC: u16 = 7;
const TABLE_FEATURES: u16 = 12;
const PORT_DESC: u16 = 13;
/// `OFPMP_EXPERIMENTER`: the body starts with experimenter id and exp_type.
const EXPERIMENTER: u16 = 0xffff;

/// exp_type of the tunnel statistics request/reply.
pub const EXP_TUNNEL_STATS: u32 = 1;
/// Bytes of the experimenter id and exp_type after the multipart header.
const EXPERIMENTER_HEADER_LEN: usize = 8;
/// Bytes of one [`TunnelStatsEntry`] on the wire.
const TUNNEL_STATS_ENTRY_LEN: usize = 40;

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
    /// Every group with its buckets (`ovs-ofctl dump-groups`).
    GroupDesc,
    /// Table features, as a query (`ovs-ofctl` sends one before most commands).
    /// Requests that try to *set* table features are refused with
    /// table-features-failed/eperm.
    TableFeatures,
    /// Supercloud experimenter: statistics of every tunnel port (empty request body).
    TunnelStats,
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

/// The experimenter types this codec knows, once the experimenter id is ours.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ExpType {
    TunnelStats,
}

/// Reads the experimenter id and exp_type of an `OFPMP_EXPERIMENTER` body. Another
/// experimenter's id is refused before its type is looked at.
fn decode_experimenter(r: &mut Reader<'_>) -> Result<ExpType, Fail> {
    let experimenter = r.u32()?;
    let exp_type = r.u32()?;
    super::experimenter::ours(experimenter)?;
    match exp_type {
        EXP_TUNNEL_STATS => Ok(ExpType::TunnelStats),
        other => Err(Fail::new(
            ErrorCode::BadRequest(BadRequest::BadExpType),
            format!("supercloud experimenter type {other} is not supported"),
        )),
    }
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
            GROUP_DESC => MultipartRequestBody::GroupDesc,
            TABLE_FEATURES => {
                if !r.is_empty() {
                    return Err(Fail::new(
                        ErrorCode::Other { typ: 13, code: 5 },
                        "setting table features is not supported",
                    ));
                }
                MultipartRequestBody::TableFeatures
            }
            EXPERIMENTER => match decode_experimenter(r)? {
                ExpType::TunnelStats => MultipartRequestBody::TunnelStats,
            },
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
            MultipartRequestBody::GroupDesc => GROUP_DESC,
            MultipartRequestBody::TableFeatures => TABLE_FEATURES,
            MultipartRequestBody::TunnelStats => EXPERIMENTER,
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
            MultipartRequestBody::TunnelStats => {
                super::experimenter::encode_header(out, EXP_TUNNEL_STATS)
            }
            MultipartRequestBody::Desc
            | MultipartRequestBody::Table
            | MultipartRequestBody::PortDesc
            | MultipartRequestBody::GroupDesc
            | MultipartRequestBody::TableFeatures => {}
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

/// The features of one table (`ofp_table_features`). The property list is kept as
/// raw bytes (a sequence of `ofp_table_feature_prop_*` TLVs, each padded to 8 bytes).
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct TableFeatures {
    /// Table id.
    pub table_id: u8,
    /// Name (at most 32 bytes).
    pub name: String,
    /// Metadata bits the table can match.
    pub metadata_match: u64,
    /// Metadata bits the table can write.
    pub metadata_write: u64,
    /// `ofp_table_config` bits.
    pub config: u32,
    /// Entries the table can hold.
    pub max_entries: u32,
    /// Encoded properties.
    pub properties: Vec<u8>,
}

/// Bytes of `ofp_table_features` before its properties.
const TABLE_FEATURES_LEN: usize = 64;

impl TableFeatures {
    /// The features of a supercloud table: the 8 properties Open vSwitch requires,
    /// describing exactly what this codec accepts (apply-actions, write-actions,
    /// clear-actions, write-metadata (every bit) and goto-table to later tables of
    /// `n_tables`; output, push/pop VLAN, group, dec-nw-ttl and set-field; every OXM
    /// field of [`crate::flow::Field`], maskable where OpenFlow allows).
    pub fn supercloud(table_id: u8, n_tables: u8, max_entries: u32) -> TableFeatures {
        fn prop(out: &mut Vec<u8>, typ: u16, data: &[u8]) {
            let start = out.len();
            out.put_u16(typ);
            out.put_u16(u16::try_from(4 + data.len()).unwrap_or(u16::MAX));
            out.extend_from_slice(data);
            out.pad8(start);
        }
        let headers = |ids: &[(u8, usize, bool)]| -> Vec<u8> {
            let mut v = Vec::new();
            for (id, width, maskable) in ids {
                let len = if *maskable { 2 * width } else { *width };
                let h = (0x8000u32 << 16)
                    | (u32::from(*id) << 9)
                    | (u32::from(*maskable) << 8)
                    | u32::try_from(len).unwrap_or(0);
                v.put_u32(h);
            }
            v
        };
        // (oxm field, value bytes, maskable) per OpenFlow 1.3 table 11.
        let fields: [(u8, usize, bool); 24] = [
            (0, 4, false),
            (2, 8, true),
            (3, 6, true),
            (4, 6, true),
            (5, 2, false),
            (6, 2, true),
            (7, 1, false),
            (8, 1, false),
            (10, 1, false),
            (11, 4, true),
            (12, 4, true),
            (13, 2, false),
            (14, 2, false),
            (15, 2, false),
            (16, 2, false),
            (19, 1, false),
            (20, 1, false),
            (21, 2, false),
            (22, 4, true),
            (23, 4, true),
            (26, 16, true),
            (27, 16, true),
            (29, 1, false),
            (30, 1, false),
        ];
        let unmasked: Vec<(u8, usize, bool)> =
            fields.iter().map(|(id, w, _)| (*id, *w, false)).collect();
        let settable: Vec<(u8, usize, bool)> = fields
            .iter()
            .filter(|(id, _, _)| *id != 2 && *id != 5 && *id != 10)
            .map(|(id, w, _)| (*id, *w, false))
            .collect();
        let mut props = Vec::new();
        let mut instructions = Vec::new();
        for t in [1u16, 2, 3, 4, 5] {
            instructions.put_u16(t);
            instructions.put_u16(4);
        }
        prop(&mut props, 0, &instructions);
        let next: Vec<u8> = (table_id.saturating_add(1)..n_tables).collect();
        prop(&mut props, 2, &next);
        let mut actions = Vec::new();
        for t in [0u16, 17, 18, 22, 24, 25] {
            actions.put_u16(t);
            actions.put_u16(4);
        }
        // Write-actions takes the same actions and set-fields as apply-actions.
        prop(&mut props, 4, &actions);
        prop(&mut props, 6, &actions);
        prop(&mut props, 8, &headers(&fields));
        // Wildcards and set-field lists name fields without the has-mask bit.
        prop(&mut props, 10, &headers(&unmasked));
        prop(&mut props, 12, &headers(&settable));
        prop(&mut props, 14, &headers(&settable));
        TableFeatures {
            table_id,
            name: String::new(),
            metadata_match: u64::MAX,
            metadata_write: u64::MAX,
            config: 0,
            max_entries,
            properties: props,
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<TableFeatures, Fail> {
        let len = usize::from(r.u16()?);
        if len < TABLE_FEATURES_LEN {
            return Err(Fail::new(
                ErrorCode::BadRequest(BadRequest::BadLen),
                "table features entry length",
            ));
        }
        let body = r.bytes(len - 2)?;
        let mut b = Reader::new(body);
        let table_id = b.u8()?;
        b.skip(5)?;
        Ok(TableFeatures {
            table_id,
            name: get_str(&mut b, 32)?,
            metadata_match: b.u64()?,
            metadata_write: b.u64()?,
            config: b.u32()?,
            max_entries: b.u32()?,
            properties: b.rest().to_vec(),
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.put_u16(0);
        out.put_u8(self.table_id);
        out.put_zeros(5);
        put_str(out, &self.name, 32);
        out.put_u64(self.metadata_match);
        out.put_u64(self.metadata_write);
        out.put_u32(self.config);
        out.put_u32(self.max_entries);
        out.extend_from_slice(&self.properties);
        let len = out.len() - start;
        out.patch_u16(start, len);
    }
}

/// Statistics of one tunnel port (Supercloud experimenter multipart).
///
/// On the wire (40 bytes, big-endian): `port_no` u32, 4 bytes of padding,
/// `handshake_rtt_us` u64, `since_handshake_ms` u64, `tx_bytes` u64, `rx_bytes` u64;
/// `u64::MAX` stands for `None` in the two optional fields, so `Some(u64::MAX)` is sent
/// as `Some(u64::MAX - 1)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TunnelStatsEntry {
    /// The tunnel's OpenFlow port.
    pub port_no: u32,
    /// Round trip of the last handshake this switch initiated on the tunnel, in
    /// microseconds; None if it never initiated one.
    pub handshake_rtt_us: Option<u64>,
    /// Milliseconds since the last completed handshake (either side); None if none.
    pub since_handshake_ms: Option<u64>,
    /// Bytes sent and received through the tunnel (WireGuard's counters).
    pub tx_bytes: u64,
    /// See `tx_bytes`.
    pub rx_bytes: u64,
}

/// The wire value of an optional field: `u64::MAX` is `None`.
const ABSENT: u64 = u64::MAX;

fn get_optional_u64(r: &mut Reader<'_>) -> Result<Option<u64>, Fail> {
    let v = r.u64()?;
    Ok((v != ABSENT).then_some(v))
}

fn put_optional_u64(out: &mut Vec<u8>, v: Option<u64>) {
    // A present value never turns into the absent marker.
    out.put_u64(v.map_or(ABSENT, |v| v.min(ABSENT - 1)));
}

impl TunnelStatsEntry {
    fn decode(r: &mut Reader<'_>) -> Result<TunnelStatsEntry, Fail> {
        let port_no = r.u32()?;
        r.skip(4)?;
        Ok(TunnelStatsEntry {
            port_no,
            handshake_rtt_us: get_optional_u64(r)?,
            since_handshake_ms: get_optional_u64(r)?,
            tx_bytes: r.u64()?,
            rx_bytes: r.u64()?,
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.put_u32(self.port_no);
        out.put_zeros(4);
        put_optional_u64(out, self.handshake_rtt_us);
        put_optional_u64(out, self.since_handshake_ms);
        out.put_u64(self.tx_bytes);
        out.put_u64(self.rx_bytes);
    }
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
    /// Groups with their buckets.
    GroupDesc(Vec<GroupSpec>),
    /// Table features.
    TableFeatures(Vec<TableFeatures>),
    /// Supercloud experimenter: one entry per tunnel port.
    TunnelStats(Vec<TunnelStatsEntry>),
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
            GROUP_DESC => MultipartReplyBody::GroupDesc(items(r, decode_group_desc)?),
            TABLE_FEATURES => MultipartReplyBody::TableFeatures(items(r, TableFeatures::decode)?),
            EXPERIMENTER => match decode_experimenter(r)? {
                ExpType::TunnelStats => {
                    if !r.remaining().is_multiple_of(TUNNEL_STATS_ENTRY_LEN) {
                        return Err(Fail::new(
                            ErrorCode::BadRequest(BadRequest::BadLen),
                            format!(
                                "tunnel stats body of {} bytes is not a multiple of {TUNNEL_STATS_ENTRY_LEN}",
                                r.remaining()
                            ),
                        ));
                    }
                    MultipartReplyBody::TunnelStats(items(r, TunnelStatsEntry::decode)?)
                }
            },
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
            MultipartReplyBody::GroupDesc(_) => GROUP_DESC,
            MultipartReplyBody::TableFeatures(_) => TABLE_FEATURES,
            MultipartReplyBody::TunnelStats(_) => EXPERIMENTER,
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
            MultipartReplyBody::GroupDesc(v) => v.iter().for_each(|g| encode_group_desc(out, g)),
            MultipartReplyBody::TableFeatures(v) => v.iter().for_each(|t| t.encode(out)),
            MultipartReplyBody::TunnelStats(v) => {
                super::experimenter::encode_header(out, EXP_TUNNEL_STATS);
                v.iter().for_each(|e| e.encode(out));
            }
        }
    }

    /// Splits a reply whose list would not fit one message (65535 bytes) into replies
    /// that each fit, all but the last flagged [`MORE`]. Replies that fit, and
    /// non-list replies, come back as one.
    pub fn split(&self) -> Vec<MultipartReply> {
        // Room for list items: message minus header (8) and multipart header (8).
        const ROOM: usize = super::MAX_MESSAGE_LEN - 16;
        fn chunks<T: Clone>(room: usize, v: &[T], size: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
            let mut out: Vec<Vec<T>> = vec![Vec::new()];
            let mut used = 0;
            for item in v {
                let n = size(item);
                if used + n > room && out.last().is_some_and(|c| !c.is_empty()) {
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
            MultipartReplyBody::Flow(v) => chunks(ROOM, v, |e| {
                let mut b = Vec::new();
                e.encode(&mut b);
                b.len()
            })
            .into_iter()
            .map(MultipartReplyBody::Flow)
            .collect(),
            MultipartReplyBody::Table(v) => chunks(ROOM, v, |_| 24)
                .into_iter()
                .map(MultipartReplyBody::Table)
                .collect(),
            MultipartReplyBody::PortStats(v) => chunks(ROOM, v, |_| PORT_STATS_LEN)
                .into_iter()
                .map(MultipartReplyBody::PortStats)
                .collect(),
            MultipartReplyBody::PortDesc(v) => chunks(ROOM, v, |_| PORT_DESC_LEN)
                .into_iter()
                .map(MultipartReplyBody::PortDesc)
                .collect(),
            MultipartReplyBody::GroupDesc(v) => chunks(ROOM, v, |g| {
                let mut b = Vec::new();
                encode_group_desc(&mut b, g);
                b.len()
            })
            .into_iter()
            .map(MultipartReplyBody::GroupDesc)
            .collect(),
            MultipartReplyBody::TableFeatures(v) => {
                chunks(ROOM, v, |t| TABLE_FEATURES_LEN + t.properties.len())
                    .into_iter()
                    .map(MultipartReplyBody::TableFeatures)
                    .collect()
            }
            MultipartReplyBody::TunnelStats(v) => chunks(ROOM - EXPERIMENTER_HEADER_LEN, v, |_| {
                TUNNEL_STATS_ENTRY_LEN
            })
            .into_iter()
            .map(MultipartReplyBody::TunnelStats)
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
