//! The virtio-net header and the software side of segmentation offloads.
//!
//! A TAP opened with `IFF_VNET_HDR` (and a raw port with `PACKET_VNET_HDR`) hands
//! every frame over behind a `struct virtio_net_hdr`: a checksum the sender left
//! unfinished (`NEEDS_CSUM`) and, with TSO/USO on, a TCP or UDP super-frame of up to
//! 64 KB that is to leave as segments of `gso_size` payload bytes. This module owns
//! that header: parsing it, checking it against the frame it came with (untrusted
//! bytes: a header that does not describe its frame is refused), finishing partial
//! checksums, cutting a super-frame into wire-sized segments with their own IP
//! length, id and checksum and TCP sequence number, flags and checksum, and the
//! reverse, coalescing consecutive TCP segments of one flow into one super-frame
//! with a header the receiving kernel accepts. It never does I/O and never
//! allocates after construction.

use crate::exec::FrameBuf;
use crate::packet::ETH_HLEN;
use openflow::flow::{ethertype, ipproto};

/// Size of the legacy `struct virtio_net_hdr` (what TAP and `PACKET_VNET_HDR` use).
pub const VNET_HDR_LEN: usize = 10;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset` holds
/// only the pseudo-header sum; the rest is still to be added.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the receiver may skip checksum verification.
pub const F_DATA_VALID: u8 = 2;

/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_UDP_L4` (USO: UDP segmentation, not UFO fragmentation).
pub const GSO_UDP_L4: u8 = 5;
/// `VIRTIO_NET_HDR_GSO_ECN`: the TCP super-frame carries CWR on its first segment.
pub const GSO_ECN: u8 = 0x80;

/// Offset of the checksum in a TCP header.
const TCP_CSUM_OFFSET: usize = 16;
/// Offset of the checksum in a UDP header.
const UDP_CSUM_OFFSET: usize = 6;
/// TCP flags that end a segment run (FIN, PSH) and the one only the first carries (CWR).
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
const TCP_URG: u8 = 0x20;
const TCP_CWR: u8 = 0x80;
/// Largest IP packet a super-frame can describe.
const MAX_IP_LEN: usize = 65_535;

/// The legacy `struct virtio_net_hdr`, fields in host order (TAP and packet sockets
/// use the host's byte order unless told otherwise).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VnetHdr {
    /// `F_NEEDS_CSUM`, `F_DATA_VALID`.
    pub flags: u8,
    /// `GSO_*`, possibly with `GSO_ECN`.
    pub gso_type: u8,
    /// Length of the headers in front of the payload (a hint; recomputed here).
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where checksumming starts (from the start of the frame).
    pub csum_start: u16,
    /// Where the checksum goes, from `csum_start`.
    pub csum_offset: u16,
}

/// Why a frame's virtio-net header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OffloadError {
    /// The checksum request points outside the frame.
    #[error("checksum offsets outside the frame")]
    BadChecksumOffsets,
    /// A GSO type this switch does not segment (UFO, unknown).
    #[error("unsupported GSO type {0:#x}")]
    UnsupportedGso(u8),
    /// A super-frame whose headers do not match its GSO type, or lie about lengths.
    #[error("super-frame headers do not match the virtio-net header")]
    BadSuperFrame,
}

impl VnetHdr {
    /// The header of a frame with nothing left to do.
    pub const NONE: VnetHdr = VnetHdr {
        flags: 0,
        gso_type: GSO_NONE,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    };

    /// Reads a header as the kernel wrote it.
    pub fn parse(b: &[u8; VNET_HDR_LEN]) -> VnetHdr {
        VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16::from_ne_bytes([b[2], b[3]]),
            gso_size: u16::from_ne_bytes([b[4], b[5]]),
            csum_start: u16::from_ne_bytes([b[6], b[7]]),
            csum_offset: u16::from_ne_bytes([b[8], b[9]]),
        }
    }

    /// The header as the kernel reads it.
    pub fn to_bytes(self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }

    /// True for a super-frame that must be segmented before it leaves on a wire.
    pub fn is_gso(&self) -> bool {
        self.gso_type != GSO_NONE
    }

    /// True when the checksum is still to be finished.
    pub fn needs_csum(&self) -> bool {
        self.flags & F_NEEDS_CSUM != 0
    }
}

/// Ones'-complement sum of `bytes` (big-endian 16-bit words) added to `sum`, not
/// folded. Four bytes at a time into a 64-bit accumulator: the same result as
/// summing 16-bit words, since 2^16 is 1 modulo 0xffff.
pub fn csum_add(sum: u64, bytes: &[u8]) -> u64 {
    let mut acc = sum;
    let mut chunks = bytes.chunks_exact(4);
    for c in &mut chunks {
        acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    acc + u64::from(u32::from_be_bytes(tail))
}

/// Folds a sum from [`csum_add`] to 16 bits (not complemented).
pub fn csum_fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    u16::try_from(sum).unwrap_or(0xffff)
}

/// The pseudo-header sum of an IPv4 or IPv6 packet starting at `ip`, for a
/// transport segment of `l4_len` bytes of protocol `proto`.
fn pseudo_sum(ip: &[u8], v6: bool, proto: u8, l4_len: usize) -> u64 {
    let addrs = if v6 { &ip[8..40] } else { &ip[12..20] };
    csum_add(0, addrs) + u64::from(proto) + l4_len as u64
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Writes a correct IPv4 header checksum for the header at the start of `ip`.
fn ipv4_header_checksum(ip: &mut [u8], ihl: usize) {
    ip[10] = 0;
    ip[11] = 0;
    let c = !csum_fold(csum_add(0, &ip[..ihl]));
    put16(ip, 10, c);
}

/// Writes the IP length of the packet whose headers `h` describes (and, for IPv4,
/// the header checksum that covers it).
fn set_ip_len(frame: &mut [u8], h: &Headers, ip_len: usize) {
    if h.v6 {
        put16(
            frame,
            h.l3 + 4,
            u16::try_from(ip_len - 40).unwrap_or(u16::MAX),
        );
    } else {
        put16(frame, h.l3 + 2, u16::try_from(ip_len).unwrap_or(u16::MAX));
        ipv4_header_checksum(&mut frame[h.l3..], h.l4 - h.l3);
    }
}

/// Finishes a checksum the sender left to offload: the sum from `start` to the end
/// of the frame (the field at `start + offset` already holds the pseudo-header
/// sum), stored at `start + offset`. False when the offsets point outside the frame.
pub fn finish_partial_checksum(frame: &mut [u8], start: u16, offset: u16) -> bool {
    let (start, at) = (usize::from(start), usize::from(start) + usize::from(offset));
    if start >= frame.len() || at + 2 > frame.len() {
        return false;
    }
    let mut sum = !csum_fold(csum_add(0, &frame[start..]));
    if sum == 0 && usize::from(offset) == UDP_CSUM_OFFSET {
        sum = 0xffff;
    }
    put16(frame, at, sum);
    true
}

/// The reverse of [`finish_partial_checksum`], for a packet handed on to a kernel:
/// when `frame` is exactly one TCP or UDP packet whose transport checksum
/// verifies, the checksum field is set back to the pseudo-header sum, and the
/// header that asks the receiving kernel to finish it is returned. That kernel
/// trusts a partial checksum as it trusts its own, so it neither sums nor
/// dissects the frame again: the check made here is the receiver's, moved.
/// Anything else (not TCP or UDP, bytes after the IP packet, a wrong checksum)
/// is left as it is, with [`VnetHdr::NONE`], so a receiver still sees a wrong
/// checksum and drops the packet.
pub fn reopen_verified_checksum(frame: &mut [u8]) -> VnetHdr {
    let Some(h) = headers(frame) else {
        return VnetHdr::NONE;
    };
    if frame.len() != h.ip_end || !l4_checksum_ok(frame, &h) {
        return VnetHdr::NONE;
    }
    let (proto, offset) = if h.tcp {
        (ipproto::TCP, TCP_CSUM_OFFSET)
    } else {
        (ipproto::UDP, UDP_CSUM_OFFSET)
    };
    let partial = csum_fold(pseudo_sum(&frame[h.l3..], h.v6, proto, h.ip_end - h.l4));
    put16(frame, h.l4 + offset, partial);
    VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_NONE,
        hdr_len: u16::try_from(h.end).unwrap_or(0),
        gso_size: 0,
        csum_start: u16::try_from(h.l4).unwrap_or(0),
        csum_offset: u16::try_from(offset).unwrap_or(0),
    }
}

/// Where the headers of a TCP or UDP frame are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headers {
    /// Offset of the IP header.
    pub l3: usize,
    /// Offset of the transport header.
    pub l4: usize,
    /// End of the transport header (start of the payload).
    pub end: usize,
    /// End of the IP packet (the frame may be longer only by Ethernet padding).
    pub ip_end: usize,
    /// IPv6 rather than IPv4.
    pub v6: bool,
    /// TCP rather than UDP.
    pub tcp: bool,
}

/// Finds the IP and TCP/UDP headers of an Ethernet frame (one optional VLAN tag, no
/// IPv4 fragments, no IPv6 extension headers). `None` for anything else.
pub fn headers(frame: &[u8]) -> Option<Headers> {
    let mut l3 = ETH_HLEN;
    let mut eth_type = be16(frame.get(..ETH_HLEN)?, 12);
    if eth_type == ethertype::VLAN || eth_type == ethertype::QINQ {
        eth_type = be16(frame.get(..ETH_HLEN + 4)?, ETH_HLEN + 2);
        l3 += 4;
    }
    let (v6, proto, l4, ip_end) = match eth_type {
        ethertype::IPV4 => {
            let ip = frame.get(l3..l3 + 20)?;
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            if ip[0] >> 4 != 4 || ihl < 20 || be16(ip, 6) & 0x3fff != 0 {
                return None;
            }
            let total = usize::from(be16(ip, 2));
            (false, ip[9], l3 + ihl, l3 + total)
        }
        ethertype::IPV6 => {
            let ip = frame.get(l3..l3 + 40)?;
            if ip[0] >> 4 != 6 {
                return None;
            }
            (true, ip[6], l3 + 40, l3 + 40 + usize::from(be16(ip, 4)))
        }
        _ => return None,
    };
    let (tcp, end) = match proto {
        ipproto::TCP => {
            // A data offset below five words is not TCP: refused, not guessed.
            let doff = usize::from(frame.get(l4 + 12)? >> 4) * 4;
            if doff < 20 {
                return None;
            }
            (true, l4 + doff)
        }
        ipproto::UDP => (false, l4 + 8),
        _ => return None,
    };
    (end <= ip_end && ip_end <= frame.len() && l4 < end).then_some(Headers {
        l3,
        l4,
        end,
        ip_end,
        v6,
        tcp,
    })
}

/// True when `hdr` asks for the transport checksum of `frame` exactly: its
/// `csum_start` is the TCP or UDP header and its `csum_offset` that header's
/// checksum field. Only such a request may travel unfinished past port
/// security: finishing any other writes 16 bits the sender chose at an offset
/// it chose (an address, after the addresses were checked).
pub fn requests_transport_checksum(hdr: &VnetHdr, frame: &[u8]) -> bool {
    headers(frame).is_some_and(|h| asks_for_checksum_of(hdr, &h))
}

/// True when `hdr` asks for the checksum of the transport header `h` found, and
/// nothing else: the one request both a lone frame and a super-frame may carry.
fn asks_for_checksum_of(hdr: &VnetHdr, h: &Headers) -> bool {
    let csum_at = if h.tcp {
        TCP_CSUM_OFFSET
    } else {
        UDP_CSUM_OFFSET
    };
    hdr.needs_csum()
        && usize::from(hdr.csum_start) == h.l4
        && usize::from(hdr.csum_offset) == csum_at
}

/// Most segments one super-frame may be cut into (the kernel's TSO of 64 KB with a
/// 536-byte MSS gives 123).
pub const MAX_SEGMENTS: usize = 256;

/// Checks a received frame against its virtio-net header: a checksum request must
/// point inside the frame, and a super-frame must be TCP or UDP of the IP version
/// its type names, with its checksum request on that transport header and a
/// non-zero segment size. The frame is then safe to finish or segment.
pub fn check(hdr: &VnetHdr, frame: &[u8]) -> Result<(), OffloadError> {
    if hdr.needs_csum() {
        let start = usize::from(hdr.csum_start);
        if start >= frame.len() || start + usize::from(hdr.csum_offset) + 2 > frame.len() {
            return Err(OffloadError::BadChecksumOffsets);
        }
    }
    if !hdr.is_gso() {
        return Ok(());
    }
    let kind = hdr.gso_type & !GSO_ECN;
    let (want_tcp, want_v6) = match kind {
        GSO_TCPV4 => (true, Some(false)),
        GSO_TCPV6 => (true, Some(true)),
        // ECN applies to TCP's CWR flag only.
        GSO_UDP_L4 if hdr.gso_type & GSO_ECN == 0 => (false, None),
        other => return Err(OffloadError::UnsupportedGso(other)),
    };
    let h = headers(frame).ok_or(OffloadError::BadSuperFrame)?;
    let ok = h.tcp == want_tcp
        && want_v6.is_none_or(|v6| v6 == h.v6)
        && asks_for_checksum_of(hdr, &h)
        && hdr.gso_size > 0
        // A tiny segment size would turn one read into tens of thousands of
        // encrypted datagrams; no real stack cuts that fine.
        && (h.ip_end - h.end).div_ceil(usize::from(hdr.gso_size)) <= MAX_SEGMENTS;
    if ok {
        Ok(())
    } else {
        Err(OffloadError::BadSuperFrame)
    }
}

/// Cuts a checked super-frame into frames of at most `gso_size` payload bytes, each
/// a complete packet with finished checksums.
#[derive(Debug)]
pub struct Segments<'a> {
    frame: &'a [u8],
    h: Headers,
    mss: usize,
    offset: usize,
    index: u16,
}

impl<'a> Segments<'a> {
    /// Segments of `frame`, which [`check`] accepted with `hdr` (`None` otherwise).
    pub fn new(frame: &'a [u8], hdr: &VnetHdr) -> Option<Segments<'a>> {
        if !hdr.is_gso() || check(hdr, frame).is_err() {
            return None;
        }
        let h = headers(frame)?;
        Some(Segments {
            frame,
            h,
            mss: usize::from(hdr.gso_size),
            offset: 0,
            index: 0,
        })
    }

    /// Size of the largest segment's IP packet.
    pub fn max_ip_len(&self) -> usize {
        self.h.end - self.h.l3 + self.mss.min(self.h.ip_end - self.h.end)
    }

    /// Offset of the IP header in every segment.
    pub fn l3(&self) -> usize {
        self.h.l3
    }

    /// Writes the next segment (a whole frame) into `out`; its length, or `None`
    /// when all are out (or `out` is too small for one).
    pub fn next_into(&mut self, out: &mut [u8]) -> Option<usize> {
        let h = self.h;
        let payload = h.ip_end - h.end;
        if self.offset >= payload && !(payload == 0 && self.index == 0) {
            return None;
        }
        let chunk = self.mss.min(payload - self.offset);
        let len = h.end + chunk;
        let seg = out.get_mut(..len)?;
        seg[..h.end].copy_from_slice(&self.frame[..h.end]);
        seg[h.end..].copy_from_slice(&self.frame[h.end + self.offset..h.end + self.offset + chunk]);
        let first = self.index == 0;
        let last = self.offset + chunk >= payload;
        if !h.v6 {
            let id = be16(seg, h.l3 + 4).wrapping_add(self.index);
            put16(seg, h.l3 + 4, id);
        }
        set_ip_len(seg, &h, len - h.l3);
        let l4_len = len - h.l4;
        let csum_at = if h.tcp {
            let seq = be32(seg, h.l4 + 4).wrapping_add(u32::try_from(self.offset).unwrap_or(0));
            seg[h.l4 + 4..h.l4 + 8].copy_from_slice(&seq.to_be_bytes());
            let flags = &mut seg[h.l4 + 13];
            if !last {
                *flags &= !(TCP_FIN | TCP_PSH);
            }
            if !first {
                // Congestion window reduced is said once, by the first segment.
                *flags &= !TCP_CWR;
            }
            h.l4 + TCP_CSUM_OFFSET
        } else {
            put16(seg, h.l4 + 4, u16::try_from(l4_len).unwrap_or(u16::MAX));
            h.l4 + UDP_CSUM_OFFSET
        };
        seg[csum_at] = 0;
        seg[csum_at + 1] = 0;
        let proto = if h.tcp { ipproto::TCP } else { ipproto::UDP };
        let sum = pseudo_sum(&seg[h.l3..], h.v6, proto, l4_len);
        let mut c = !csum_fold(csum_add(sum, &seg[h.l4..]));
        if c == 0 && !h.tcp {
            c = 0xffff;
        }
        put16(seg, csum_at, c);
        self.offset += chunk.max(1);
        self.index = self.index.wrapping_add(1);
        Some(len)
    }
}

/// True when a TCP or UDP frame's transport checksum verifies.
pub fn l4_checksum_ok(frame: &[u8], h: &Headers) -> bool {
    let proto = if h.tcp { ipproto::TCP } else { ipproto::UDP };
    let l4 = &frame[h.l4..h.ip_end];
    if !h.tcp && !h.v6 && be16(l4, 6) == 0 {
        return true;
    }
    let sum = pseudo_sum(&frame[h.l3..], h.v6, proto, l4.len());
    csum_fold(csum_add(sum, l4)) == 0xffff
}

/// The flow a pending super-frame belongs to and where its next segment must start.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// Who sent it (a tunnel peer), so runs never mix sources.
    source: usize,
    h: Headers,
    mss: usize,
    next_seq: u32,
    segments: usize,
    /// The last segment was short or carried PSH: nothing may follow it.
    closed: bool,
}

/// Coalesces consecutive TCP segments of one flow (as decrypted from a tunnel) into
/// one super-frame with a `GSO_TCPV4`/`GSO_TCPV6` header, the way the kernel's GRO
/// does: same addresses, ports, IP header fields, TCP options, acknowledgement and
/// window; sequence numbers back to back; only ACK (and PSH on the last) set; every
/// segment as long as the first except a shorter last one; checksums verified.
#[derive(Debug)]
pub struct Coalescer {
    frame: FrameBuf,
    len: usize,
    run: Option<Run>,
}

/// What [`Coalescer::push`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Appended to (or started) the pending super-frame.
    Taken,
    /// Not coalescable: the caller sends it on as it is (after [`Coalescer::take`]
    /// has handed out what was pending, to keep the order).
    Refused,
    /// Coalescable but not with what is pending: take the pending frame, then push
    /// this one again.
    FlushFirst,
}

impl Default for Coalescer {
    fn default() -> Self {
        Coalescer {
            frame: FrameBuf::with_capacity(ETH_HLEN + 4 + MAX_IP_LEN),
            len: 0,
            run: None,
        }
    }
}

impl Coalescer {
    /// Where the pending frame came from (`source` of its first push), if any.
    pub fn source(&self) -> Option<usize> {
        self.run.map(|r| r.source)
    }

    /// Offers a frame from `source`.
    pub fn push(&mut self, source: usize, frame: &[u8]) -> Push {
        let Some(h) = headers(frame) else {
            return Push::Refused;
        };
        if !h.tcp || frame.len() != h.ip_end || h.ip_end == h.end {
            return Push::Refused;
        }
        let flags = frame[h.l4 + 13];
        if flags & (TCP_FIN | TCP_SYN | TCP_RST | TCP_URG | TCP_CWR) != 0 || flags & TCP_ACK == 0 {
            return Push::Refused;
        }
        if !h.v6 && h.l4 - h.l3 != 20 {
            // IPv4 options: rare, and GRO leaves them alone too.
            return Push::Refused;
        }
        if !l4_checksum_ok(frame, &h) {
            return Push::Refused;
        }
        let payload = h.ip_end - h.end;
        let Some(run) = self.run else {
            self.frame.recv_space()[..frame.len()].copy_from_slice(frame);
            self.len = frame.len();
            self.run = Some(Run {
                source,
                h,
                mss: payload,
                next_seq: be32(frame, h.l4 + 4).wrapping_add(u32::try_from(payload).unwrap_or(0)),
                segments: 1,
                closed: flags & TCP_PSH != 0,
            });
            return Push::Taken;
        };
        let same_flow = run.source == source
            && run.h
                == Headers {
                    ip_end: run.h.ip_end,
                    ..h
                }
            && self.headers_match(frame, &h);
        let fits = !run.closed
            && payload <= run.mss
            && be32(frame, h.l4 + 4) == run.next_seq
            && self.len - run.h.l3 + payload <= MAX_IP_LEN;
        if !(same_flow && fits) {
            return Push::FlushFirst;
        }
        let buf = self.frame.recv_space();
        buf[self.len..self.len + payload].copy_from_slice(&frame[h.end..]);
        // PSH of the last segment carries over to the super-frame.
        buf[run.h.l4 + 13] |= flags & TCP_PSH;
        self.len += payload;
        self.run = Some(Run {
            next_seq: run
                .next_seq
                .wrapping_add(u32::try_from(payload).unwrap_or(0)),
            segments: run.segments + 1,
            closed: payload < run.mss || flags & TCP_PSH != 0,
            h: Headers {
                ip_end: self.len,
                ..run.h
            },
            ..run
        });
        Push::Taken
    }

    /// Everything but the fields that differ from segment to segment: Ethernet and
    /// IP headers except length, id and checksum; TCP header except sequence number,
    /// flags (PSH) and checksum.
    fn headers_match(&mut self, frame: &[u8], h: &Headers) -> bool {
        let a = &self.frame.recv_space()[..h.end];
        let b = &frame[..h.end];
        let (l3, l4) = (h.l3, h.l4);
        let ip_same = if h.v6 {
            a[..l3 + 4] == b[..l3 + 4] && a[l3 + 6..l4] == b[l3 + 6..l4]
        } else {
            a[..l3 + 2] == b[..l3 + 2]
                && a[l3 + 6..l3 + 10] == b[l3 + 6..l3 + 10]
                && a[l3 + 12..l4] == b[l3 + 12..l4]
        };
        ip_same
            && a[l4..l4 + 4] == b[l4..l4 + 4]
            && a[l4 + 8..l4 + 13] == b[l4 + 8..l4 + 13]
            && a[l4 + 13] & !TCP_PSH == b[l4 + 13] & !TCP_PSH
            && a[l4 + 14..l4 + 16] == b[l4 + 14..l4 + 16]
            && a[l4 + 18..h.end] == b[l4 + 18..h.end]
    }

    /// Hands out the pending frame (if any) with its virtio-net header: one segment
    /// as it came (complete checksum, no header), several as a super-frame with IP
    /// length and checksum fixed and the TCP checksum left partial for the receiver.
    pub fn take(&mut self) -> Option<(&mut FrameBuf, VnetHdr)> {
        let run = self.run.take()?;
        self.frame.set_len(self.len);
        if run.segments == 1 {
            return Some((&mut self.frame, VnetHdr::NONE));
        }
        let frame = self.frame.bytes_mut();
        let h = run.h;
        set_ip_len(frame, &h, self.len - h.l3);
        let l4_len = self.len - h.l4;
        let partial = csum_fold(pseudo_sum(&frame[h.l3..], h.v6, ipproto::TCP, l4_len));
        put16(frame, h.l4 + TCP_CSUM_OFFSET, partial);
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: if h.v6 { GSO_TCPV6 } else { GSO_TCPV4 },
            hdr_len: u16::try_from(h.end).unwrap_or(0),
            gso_size: u16::try_from(run.mss).unwrap_or(u16::MAX),
            csum_start: u16::try_from(h.l4).unwrap_or(0),
            csum_offset: u16::try_from(TCP_CSUM_OFFSET).unwrap_or(0),
        };
        Some((&mut self.frame, hdr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An Ethernet + IPv4/IPv6 + TCP/UDP frame with `payload`, complete checksums.
    fn frame(v6: bool, tcp: bool, payload: &[u8], seq: u32, flags: u8) -> Vec<u8> {
        let l3 = ETH_HLEN;
        let iph = if v6 { 40 } else { 20 };
        let th = if tcp { 32 } else { 8 };
        let mut f = vec![0u8; l3 + iph + th + payload.len()];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        let proto = if tcp { ipproto::TCP } else { ipproto::UDP };
        if v6 {
            f[12..14].copy_from_slice(&ethertype::IPV6.to_be_bytes());
            f[l3] = 0x60;
            put16(&mut f, l3 + 4, u16::try_from(th + payload.len()).unwrap());
            f[l3 + 6] = proto;
            f[l3 + 7] = 64;
            f[l3 + 8] = 0xfd;
            f[l3 + 23] = 1;
            f[l3 + 24] = 0xfd;
            f[l3 + 39] = 2;
        } else {
            f[12..14].copy_from_slice(&ethertype::IPV4.to_be_bytes());
            f[l3] = 0x45;
            put16(
                &mut f,
                l3 + 2,
                u16::try_from(iph + th + payload.len()).unwrap(),
            );
            put16(&mut f, l3 + 4, 0x1234);
            f[l3 + 6] = 0x40;
            f[l3 + 8] = 64;
            f[l3 + 9] = proto;
            f[l3 + 12..l3 + 16].copy_from_slice(&[100, 64, 1, 1]);
            f[l3 + 16..l3 + 20].copy_from_slice(&[100, 64, 2, 1]);
            ipv4_header_checksum(&mut f[l3..], 20);
        }
        let l4 = l3 + iph;
        put16(&mut f, l4, 40000);
        put16(&mut f, l4 + 2, 5201);
        if tcp {
            f[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
            f[l4 + 8..l4 + 12].copy_from_slice(&77u32.to_be_bytes());
            f[l4 + 12] = 0x80;
            f[l4 + 13] = flags;
            put16(&mut f, l4 + 14, 512);
            // Timestamp option (NOP NOP TS).
            f[l4 + 20..l4 + 24].copy_from_slice(&[1, 1, 8, 10]);
            f[l4 + 24..l4 + 28].copy_from_slice(&9u32.to_be_bytes());
        } else {
            put16(&mut f, l4 + 4, u16::try_from(th + payload.len()).unwrap());
        }
        f[l4 + th..].copy_from_slice(payload);
        let h = headers(&f).unwrap();
        let at = l4 + if tcp { 16 } else { 6 };
        let sum = pseudo_sum(&f[l3..], v6, proto, f.len() - l4);
        let c = !csum_fold(csum_add(sum, &f[l4..]));
        put16(&mut f, at, c);
        assert!(l4_checksum_ok(&f, &h));
        f
    }

    #[test]
    fn only_a_request_for_the_transport_checksum_may_stay_unfinished() {
        for (v6, tcp) in [(false, true), (false, false), (true, true), (true, false)] {
            let f = frame(v6, tcp, b"payload", 1, TCP_ACK);
            let l4 = headers(&f).unwrap().l4;
            let asks = |start: usize, offset: usize| VnetHdr {
                flags: F_NEEDS_CSUM,
                csum_start: u16::try_from(start).unwrap(),
                csum_offset: u16::try_from(offset).unwrap(),
                ..VnetHdr::NONE
            };
            let field = if tcp {
                TCP_CSUM_OFFSET
            } else {
                UDP_CSUM_OFFSET
            };
            assert!(requests_transport_checksum(&asks(l4, field), &f));
            // A guest aiming the write at an address (IPv4 source at 26,
            // destination at 30; IPv6 source at 22) must be finished at once.
            for (start, offset) in [(0, 26), (0, 30), (0, 22), (l4, field + 2), (ETH_HLEN, 10)] {
                assert!(
                    !requests_transport_checksum(&asks(start, offset), &f),
                    "{start}+{offset}"
                );
            }
            assert!(!requests_transport_checksum(&VnetHdr::NONE, &f));
        }
    }

    /// The frame as a sender with TSO/USO hands it over: the checksum field holds
    /// the pseudo-header sum only.
    fn super_frame(v6: bool, tcp: bool, payload: &[u8], mss: u16) -> (Vec<u8>, VnetHdr) {
        let mut f = frame(v6, tcp, payload, 1000, TCP_ACK | TCP_PSH);
        let h = headers(&f).unwrap();
        let at = h.l4 + if tcp { 16 } else { 6 };
        let proto = if tcp { ipproto::TCP } else { ipproto::UDP };
        let partial = csum_fold(pseudo_sum(&f[h.l3..], v6, proto, f.len() - h.l4));
        put16(&mut f, at, partial);
        let gso_type = match (tcp, v6) {
            (true, false) => GSO_TCPV4,
            (true, true) => GSO_TCPV6,
            (false, _) => GSO_UDP_L4,
        };
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type,
            hdr_len: u16::try_from(h.end).unwrap(),
            gso_size: mss,
            csum_start: u16::try_from(h.l4).unwrap(),
            csum_offset: u16::try_from(at - h.l4).unwrap(),
        };
        (f, hdr)
    }

    fn segments(f: &[u8], hdr: &VnetHdr) -> Vec<Vec<u8>> {
        let mut s = Segments::new(f, hdr).expect("segmentable");
        let mut out = vec![0u8; 70_000];
        let mut all = Vec::new();
        while let Some(n) = s.next_into(&mut out) {
            all.push(out[..n].to_vec());
        }
        all
    }

    #[test]
    fn tiny_segments_ecn_on_udp_and_short_tcp_headers_are_refused() {
        let payload = vec![7u8; 60_000];
        let (f, hdr) = super_frame(false, true, &payload, 1448);
        assert_eq!(check(&hdr, &f), Ok(()));
        let tiny = VnetHdr { gso_size: 1, ..hdr };
        assert_eq!(check(&tiny, &f), Err(OffloadError::BadSuperFrame));
        let (u, uhdr) = super_frame(false, false, &payload, 1400);
        assert_eq!(check(&uhdr, &u), Ok(()));
        let ecn = VnetHdr {
            gso_type: GSO_UDP_L4 | GSO_ECN,
            ..uhdr
        };
        assert!(matches!(
            check(&ecn, &u),
            Err(OffloadError::UnsupportedGso(_))
        ));
        let mut short = f.clone();
        let l4 = headers(&f).unwrap().l4;
        short[l4 + 12] = 0x40; // four words: not a TCP header
        assert!(headers(&short).is_none());
    }

    #[test]
    fn header_round_trips_through_bytes() {
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4 | GSO_ECN,
            hdr_len: 66,
            gso_size: 1368,
            csum_start: 34,
            csum_offset: 16,
        };
        assert_eq!(VnetHdr::parse(&h.to_bytes()), h);
        assert_eq!(VnetHdr::parse(&[0; VNET_HDR_LEN]), VnetHdr::NONE);
    }

    #[test]
    fn headers_that_do_not_describe_the_frame_are_refused() {
        let (f, good) = super_frame(false, true, &[7u8; 4000], 1000);
        assert_eq!(check(&good, &f), Ok(()));
        let bad = |h: VnetHdr| check(&h, &f);
        assert_eq!(
            bad(VnetHdr {
                csum_start: 60_000,
                ..good
            }),
            Err(OffloadError::BadChecksumOffsets)
        );
        assert_eq!(
            bad(VnetHdr {
                gso_type: 3,
                ..good
            }),
            Err(OffloadError::UnsupportedGso(3))
        );
        for wrong in [
            VnetHdr {
                gso_type: GSO_TCPV6,
                ..good
            },
            VnetHdr {
                gso_type: GSO_UDP_L4,
                ..good
            },
            VnetHdr {
                gso_size: 0,
                ..good
            },
            VnetHdr { flags: 0, ..good },
            VnetHdr {
                csum_start: good.csum_start - 2,
                ..good
            },
            VnetHdr {
                csum_offset: 6,
                ..good
            },
        ] {
            assert_eq!(bad(wrong), Err(OffloadError::BadSuperFrame), "{wrong:?}");
        }
        // An IP length that claims more than the frame holds.
        let mut lying = f.clone();
        put16(&mut lying, ETH_HLEN + 2, 60_000);
        assert_eq!(check(&good, &lying), Err(OffloadError::BadSuperFrame));
        assert!(Segments::new(&lying, &good).is_none());
    }

    #[test]
    fn finishing_a_partial_checksum_verifies() {
        let (mut f, hdr) = super_frame(false, true, b"hello world", 1400);
        assert!(finish_partial_checksum(
            &mut f,
            hdr.csum_start,
            hdr.csum_offset
        ));
        assert!(l4_checksum_ok(&f, &headers(&f).unwrap()));
        assert!(!finish_partial_checksum(&mut f, 60_000, 0));
    }

    #[test]
    fn a_verified_checksum_reopens_and_finishes_back_to_itself() {
        for (v6, tcp) in [(false, false), (false, true), (true, false), (true, true)] {
            let complete = frame(v6, tcp, b"sixty-four bytes or so", 7, TCP_ACK);
            let mut f = complete.clone();
            let hdr = reopen_verified_checksum(&mut f);
            let h = headers(&f).unwrap();
            assert!(hdr.needs_csum() && !hdr.is_gso(), "{v6} {tcp}");
            assert_eq!(usize::from(hdr.csum_start), h.l4);
            assert_eq!(check(&hdr, &f), Ok(()));
            // What a kernel does with it gives back the frame that came.
            assert!(finish_partial_checksum(
                &mut f,
                hdr.csum_start,
                hdr.csum_offset
            ));
            assert_eq!(f, complete, "{v6} {tcp}");
        }
        // A wrong checksum is left for the receiver to drop.
        let mut wrong = frame(false, false, b"payload", 0, 0);
        let at = headers(&wrong).unwrap().l4 + UDP_CSUM_OFFSET;
        wrong[at] ^= 0x10;
        let before = wrong.clone();
        assert_eq!(reopen_verified_checksum(&mut wrong), VnetHdr::NONE);
        assert_eq!(wrong, before);
        // Bytes after the IP packet (padding) are outside what a partial sum covers.
        let mut padded = frame(false, true, b"payload", 0, TCP_ACK);
        padded.extend_from_slice(&[0; 6]);
        assert_eq!(reopen_verified_checksum(&mut padded), VnetHdr::NONE);
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&ethertype::ARP.to_be_bytes());
        assert_eq!(reopen_verified_checksum(&mut arp), VnetHdr::NONE);
    }

    #[test]
    fn tcp_segments_carry_sequence_flags_and_ids() {
        let payload: Vec<u8> = (0..3500u32).map(|i| (i % 251).to_le_bytes()[0]).collect();
        let (f, hdr) = super_frame(false, true, &payload, 1448);
        let segs = segments(&f, &hdr);
        assert_eq!(segs.len(), 3);
        let mut seq = 1000u32;
        for (i, s) in segs.iter().enumerate() {
            let h = headers(s).unwrap();
            assert!(l4_checksum_ok(s, &h));
            assert_eq!(be32(s, h.l4 + 4), seq);
            seq += u32::try_from(s.len() - h.end).unwrap();
            assert_eq!(be16(s, h.l3 + 4), 0x1234 + u16::try_from(i).unwrap());
            let psh = s[h.l4 + 13] & TCP_PSH != 0;
            assert_eq!(psh, i == 2);
            assert_eq!(csum_fold(csum_add(0, &s[h.l3..h.l4])), 0xffff);
        }
    }

    #[test]
    fn udp_segments_get_their_own_length() {
        let (f, hdr) = super_frame(true, false, &[9u8; 2500], 1000);
        let segs = segments(&f, &hdr);
        assert_eq!(segs.len(), 3);
        for s in &segs {
            let h = headers(s).unwrap();
            assert_eq!(usize::from(be16(s, h.l4 + 4)), s.len() - h.l4);
            assert!(l4_checksum_ok(s, &h));
        }
    }

    fn coalesce_all(segs: &[Vec<u8>]) -> Vec<(Vec<u8>, VnetHdr)> {
        let mut c = Coalescer::default();
        let mut out = Vec::new();
        for s in segs {
            loop {
                match c.push(0, s) {
                    Push::Taken => break,
                    Push::FlushFirst => {
                        let (f, h) = c.take().unwrap();
                        out.push((f.bytes().to_vec(), h));
                    }
                    Push::Refused => {
                        if let Some((f, h)) = c.take() {
                            out.push((f.bytes().to_vec(), h));
                        }
                        out.push((s.clone(), VnetHdr::NONE));
                        break;
                    }
                }
            }
        }
        if let Some((f, h)) = c.take() {
            out.push((f.bytes().to_vec(), h));
        }
        out
    }

    #[test]
    fn out_of_order_and_other_flows_are_not_merged() {
        let a = frame(false, true, &[1u8; 100], 1000, TCP_ACK);
        let b = frame(false, true, &[2u8; 100], 1100, TCP_ACK);
        let gap = frame(false, true, &[3u8; 100], 1300, TCP_ACK);
        let syn = frame(false, true, &[4u8; 100], 1400, TCP_ACK | TCP_SYN);
        let mut corrupt = frame(false, true, &[5u8; 100], 1500, TCP_ACK);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        let out = coalesce_all(&[a.clone(), b, gap.clone(), syn.clone(), corrupt.clone()]);
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].1.gso_type, GSO_TCPV4);
        assert_eq!(out[0].1.gso_size, 100);
        assert_eq!((out[1].0.clone(), out[1].1), (gap, VnetHdr::NONE));
        assert_eq!(out[2].0, syn);
        assert_eq!(out[3].0, corrupt);
        // A lone segment goes on exactly as it came.
        assert_eq!(
            coalesce_all(std::slice::from_ref(&a)),
            vec![(a, VnetHdr::NONE)]
        );
    }

    proptest! {
        /// Segmenting a super-frame and coalescing the segments again gives back the
        /// payload, one super-frame whose header segments the same way, and every
        /// segment's checksums verify.
        #[test]
        fn segment_then_coalesce_round_trips(
            len in 1usize..20_000,
            mss in 200u16..1500,
            v6 in any::<bool>(),
            seed in any::<u8>(),
        ) {
            let payload: Vec<u8> = (0..len).map(|i| (i.to_le_bytes()[0]).wrapping_mul(31).wrapping_add(seed)).collect();
            let (f, hdr) = super_frame(v6, true, &payload, mss);
            let segs = segments(&f, &hdr);
            prop_assert_eq!(segs.len(), len.div_ceil(usize::from(mss)));
            for s in &segs {
                let h = headers(s).unwrap();
                prop_assert!(l4_checksum_ok(s, &h));
                prop_assert!(s.len() - h.end <= usize::from(mss));
            }
            let out = coalesce_all(&segs);
            prop_assert_eq!(out.len(), 1);
            let (g, ghdr) = &out[0];
            let h = headers(g).unwrap();
            prop_assert_eq!(&g[h.end..], &payload[..]);
            if segs.len() == 1 {
                prop_assert_eq!(ghdr, &VnetHdr::NONE);
            } else {
                prop_assert_eq!(check(ghdr, g), Ok(()));
                prop_assert_eq!(ghdr.gso_size, mss);
                // Segmenting the coalesced frame gives the same segments.
                prop_assert_eq!(segments(g, ghdr), segs);
            }
        }

        /// Whatever the header and frame bytes, checking and segmenting never panic,
        /// and accepted frames give segments within the frame's size.
        #[test]
        fn arbitrary_headers_never_panic(hdr_bytes in any::<[u8; 10]>(), body in proptest::collection::vec(any::<u8>(), 0..400)) {
            let hdr = VnetHdr::parse(&hdr_bytes);
            let mut f = body.clone();
            let _ = check(&hdr, &f);
            if hdr.needs_csum() && check(&hdr, &f).is_ok() {
                prop_assert!(finish_partial_checksum(&mut f, hdr.csum_start, hdr.csum_offset));
            }
            if let Some(mut s) = Segments::new(&body, &hdr) {
                let mut out = vec![0u8; 1000];
                let mut n = 0;
                while s.next_into(&mut out).is_some() {
                    n += 1;
                    prop_assert!(n <= body.len());
                }
            }
            let mut c = Coalescer::default();
            let _ = c.push(0, &body);
            let _ = c.take();
        }
    }
}
