//! Typed, zero-copy views over frame bytes: Ethernet (with 802.1Q), ARP, IPv4, IPv6,
//! UDP, TCP and ICMP, plus the one-pass parser that summarises a frame as a
//! [`FlowKey`] and remembers where each header starts.
//!
//! Each view validates its length once in `new_checked`; after that no accessor can
//! panic or read out of bounds, whatever the bytes. This module never allocates and
//! never decides what happens to a packet; it only says what the packet is.

use openflow::flow::{ethertype, ipproto, FlowKey, Mac, PortNo, VLAN_PRESENT};

/// Why a frame could not be parsed (each is counted separately by `scd`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ParseError {
    /// Shorter than the header it claims to carry.
    #[error("truncated {0} header")]
    Truncated(&'static str),
    /// A length field disagrees with the bytes present.
    #[error("bad length in {0} header")]
    BadLength(&'static str),
    /// A version field that is not the protocol's.
    #[error("bad version in {0} header")]
    BadVersion(&'static str),
}

impl ParseError {
    /// A short stable name, used as a metrics label.
    pub fn label(&self) -> &'static str {
        match self {
            ParseError::Truncated(_) => "truncated",
            ParseError::BadLength(_) => "bad_length",
            ParseError::BadVersion(_) => "bad_version",
        }
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn mac_at(b: &[u8], at: usize) -> Mac {
    let mut m = [0u8; 6];
    m.copy_from_slice(&b[at..at + 6]);
    Mac(m)
}

/// Length of an Ethernet header without tags.
pub const ETH_HLEN: usize = 14;
/// Length of one 802.1Q tag.
pub const VLAN_TAG_LEN: usize = 4;

/// An Ethernet II frame.
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buf` after checking it holds an Ethernet header.
    pub fn new_checked(buf: T) -> Result<Self, ParseError> {
        if buf.as_ref().len() < ETH_HLEN {
            return Err(ParseError::Truncated("ethernet"));
        }
        Ok(EthernetFrame { buf })
    }
    /// Destination address.
    pub fn dst(&self) -> Mac {
        mac_at(self.buf.as_ref(), 0)
    }
    /// Source address.
    pub fn src(&self) -> Mac {
        mac_at(self.buf.as_ref(), 6)
    }
    /// The EtherType (or TPID of an outer VLAN tag).
    pub fn ethertype(&self) -> u16 {
        be16(self.buf.as_ref(), 12)
    }
    /// Everything after the 14-byte header.
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[ETH_HLEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination address.
    pub fn set_dst(&mut self, mac: Mac) {
        self.buf.as_mut()[0..6].copy_from_slice(&mac.0);
    }
    /// Sets the source address.
    pub fn set_src(&mut self, mac: Mac) {
        self.buf.as_mut()[6..12].copy_from_slice(&mac.0);
    }
}

/// An ARP packet for Ethernet and IPv4 (the only kind the overlay uses).
#[derive(Debug, Clone, Copy)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buf: T,
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const ARP_LEN: usize = 28;

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps `buf` after checking it is a complete Ethernet/IPv4 ARP packet.
    pub fn new_checked(buf: T) -> Result<Self, ParseError> {
        let b = buf.as_ref();
        if b.len() < ARP_LEN {
            return Err(ParseError::Truncated("arp"));
        }
        if be16(b, 0) != 1 || be16(b, 2) != ethertype::IPV4 || b[4] != 6 || b[5] != 4 {
            return Err(ParseError::BadVersion("arp"));
        }
        Ok(ArpPacket { buf })
    }
    /// Operation (1 request, 2 reply).
    pub fn op(&self) -> u16 {
        be16(self.buf.as_ref(), 6)
    }
    /// Sender hardware address.
    pub fn sha(&self) -> Mac {
        mac_at(self.buf.as_ref(), 8)
    }
    /// Sender protocol address.
    pub fn spa(&self) -> u32 {
        be32(self.buf.as_ref(), 14)
    }
    /// Target hardware address.
    pub fn tha(&self) -> Mac {
        mac_at(self.buf.as_ref(), 18)
    }
    /// Target protocol address.
    pub fn tpa(&self) -> u32 {
        be32(self.buf.as_ref(), 24)
    }
}

/// Writes an Ethernet/IPv4 ARP packet into the first [`ARP_LEN`] bytes of `buf`.
/// Returns `None` when `buf` is too short.
pub fn write_arp(buf: &mut [u8], op: u16, sha: Mac, spa: u32, tha: Mac, tpa: u32) -> Option<usize> {
    let b = buf.get_mut(..ARP_LEN)?;
    b[0..2].copy_from_slice(&1u16.to_be_bytes());
    b[2..4].copy_from_slice(&ethertype::IPV4.to_be_bytes());
    b[4] = 6;
    b[5] = 4;
    b[6..8].copy_from_slice(&op.to_be_bytes());
    b[8..14].copy_from_slice(&sha.0);
    b[14..18].copy_from_slice(&spa.to_be_bytes());
    b[18..24].copy_from_slice(&tha.0);
    b[24..28].copy_from_slice(&tpa.to_be_bytes());
    Some(ARP_LEN)
}

/// An IPv4 header and its payload (bounded by the total-length field).
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps `buf` after checking version, header length and total length.
    pub fn new_checked(buf: T) -> Result<Self, ParseError> {
        let b = buf.as_ref();
        if b.len() < 20 {
            return Err(ParseError::Truncated("ipv4"));
        }
        if b[0] >> 4 != 4 {
            return Err(ParseError::BadVersion("ipv4"));
        }
        let ihl = usize::from(b[0] & 0x0f) * 4;
        let total = usize::from(be16(b, 2));
        if ihl < 20 || total < ihl || total > b.len() {
            return Err(ParseError::BadLength("ipv4"));
        }
        Ok(Ipv4Packet { buf })
    }
    /// Header length in bytes.
    pub fn header_len(&self) -> usize {
        usize::from(self.buf.as_ref()[0] & 0x0f) * 4
    }
    /// Total length in bytes (header and payload).
    pub fn total_len(&self) -> usize {
        usize::from(be16(self.buf.as_ref(), 2))
    }
    /// DSCP (upper six bits of the TOS byte).
    pub fn dscp(&self) -> u8 {
        self.buf.as_ref()[1] >> 2
    }
    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buf.as_ref()[8]
    }
    /// Protocol of the payload.
    pub fn protocol(&self) -> u8 {
        self.buf.as_ref()[9]
    }
    /// Source address.
    pub fn src(&self) -> u32 {
        be32(self.buf.as_ref(), 12)
    }
    /// Destination address.
    pub fn dst(&self) -> u32 {
        be32(self.buf.as_ref(), 16)
    }
    /// True for the second and later fragments, which carry no transport header.
    pub fn is_later_fragment(&self) -> bool {
        be16(self.buf.as_ref(), 6) & 0x1fff != 0
    }
    /// The bytes after the header, up to the total length.
    pub fn payload(&self) -> &[u8] {
        &self.buf.as_ref()[self.header_len()..self.total_len()]
    }
}

/// Length of the fixed IPv6 header.
pub const IPV6_HLEN: usize = 40;

/// An IPv6 fixed header and its payload.
#[derive(Debug, Clone, Copy)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps `buf` after checking version and payload length.
    pub fn new_checked(buf: T) -> Result<Self, ParseError> {
        let b = buf.as_ref();
        if b.len() < IPV6_HLEN {
            return Err(ParseError::Truncated("ipv6"));
        }
        if b[0] >> 4 != 6 {
            return Err(ParseError::BadVersion("ipv6"));
        }
        if IPV6_HLEN + usize::from(be16(b, 4)) > b.len() {
            return Err(ParseError::BadLength("ipv6"));
        }
        Ok(Ipv6Packet { buf })
    }
    /// DSCP.
    pub fn dscp(&self) -> u8 {
        let b = self.buf.as_ref();
        ((b[0] & 0x0f) << 2) | (b[1] >> 6)
    }
    /// Next header.
    pub fn next_header(&self) -> u8 {
        self.buf.as_ref()[6]
    }
    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buf.as_ref()[7]
    }
    /// Source address.
    pub fn src(&self) -> u128 {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buf.as_ref()[8..24]);
        u128::from_be_bytes(a)
    }
    /// Destination address.
    pub fn dst(&self) -> u128 {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buf.as_ref()[24..40]);
        u128::from_be_bytes(a)
    }
    /// The payload, bounded by the payload-length field.
    pub fn payload(&self) -> &[u8] {
        let b = self.buf.as_ref();
        &b[IPV6_HLEN..IPV6_HLEN + usize::from(be16(b, 4))]
    }
}

/// A UDP header and payload.
#[derive(Debug, Clone, Copy)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps `buf` after checking the header and the length field.
    pub fn new_checked(buf: T) -> Result<Self, ParseError> {
        let b = buf.as_ref();
        if b.len() < 8 {
            return Err(ParseError::Truncated("udp"));
        }
        let len = usize::from(be16(b, 4));
        if len < 8 || len > b.len() {
            return Err(ParseError::BadLength("udp"));
        }
        Ok(UdpPacket { buf })
    }
    /// Source port.
    pub fn src_port(&self) -> u16 {
        be16(self.buf.as_ref(), 0)
    }
    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }
    /// Checksum field (0 = none, for IPv4).
    pub fn checksum(&self) -> u16 {
        be16(self.buf.as_ref(), 6)
    }
}

/// A TCP header and payload.
#[derive(Debug, Clone, Copy)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps `buf` after checking the header and its data offset.
    pub fn new_checked(buf: T) -> Result<Self, ParseError> {
        let b = buf.as_ref();
        if b.len() < 20 {
            return Err(ParseError::Truncated("tcp"));
        }
        let off = usize::from(b[12] >> 4) * 4;
        if off < 20 || off > b.len() {
            return Err(ParseError::BadLength("tcp"));
        }
        Ok(TcpPacket { buf })
    }
    /// Source port.
    pub fn src_port(&self) -> u16 {
        be16(self.buf.as_ref(), 0)
    }
    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        be16(self.buf.as_ref(), 2)
    }
    /// Header length in bytes.
    pub fn header_len(&self) -> usize {
        usize::from(self.buf.as_ref()[12] >> 4) * 4
    }
}

/// An ICMP (v4 or v6) header.
#[derive(Debug, Clone, Copy)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    /// Wraps `buf` after checking it holds the 8-byte ICMP header.
    pub fn new_checked(buf: T) -> Result<Self, ParseError> {
        if buf.as_ref().len() < 8 {
            return Err(ParseError::Truncated("icmp"));
        }
        Ok(IcmpPacket { buf })
    }
    /// Message type.
    pub fn msg_type(&self) -> u8 {
        self.buf.as_ref()[0]
    }
    /// Message code.
    pub fn code(&self) -> u8 {
        self.buf.as_ref()[1]
    }
}

/// Where the headers of a parsed frame start, so actions can rewrite them in place.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// Offset of the network header (after any VLAN tag).
    pub l3: usize,
    /// Offset of the transport header, when one was parsed.
    pub l4: Option<usize>,
    /// Whether the frame carries an 802.1Q tag.
    pub vlan: bool,
}

/// Parses a frame once into its flow key and header layout.
///
/// A frame whose headers are cut short or whose lengths lie is an error; a frame of an
/// unknown EtherType or IP protocol is fine (its upper fields stay zero).
pub fn parse(frame: &[u8], in_port: PortNo) -> Result<(FlowKey, Layout), ParseError> {
    let eth = EthernetFrame::new_checked(frame)?;
    let mut key = FlowKey {
        in_port,
        eth_dst: eth.dst(),
        eth_src: eth.src(),
        ..FlowKey::default()
    };
    let mut layout = Layout {
        l3: ETH_HLEN,
        ..Layout::default()
    };
    let mut eth_type = eth.ethertype();
    if eth_type == ethertype::VLAN || eth_type == ethertype::QINQ {
        if frame.len() < ETH_HLEN + VLAN_TAG_LEN {
            return Err(ParseError::Truncated("vlan"));
        }
        let tci = be16(frame, ETH_HLEN);
        key.vlan_vid = VLAN_PRESENT | (tci & 0x0fff);
        key.vlan_pcp = (tci >> 13) as u8;
        eth_type = be16(frame, ETH_HLEN + 2);
        layout.l3 += VLAN_TAG_LEN;
        layout.vlan = true;
    }
    key.eth_type = eth_type;
    let l3 = &frame[layout.l3..];
    match eth_type {
        ethertype::IPV4 => {
            let ip = Ipv4Packet::new_checked(l3)?;
            key.ip_dscp = ip.dscp();
            key.ip_proto = ip.protocol();
            key.ipv4_src = ip.src();
            key.ipv4_dst = ip.dst();
            if !ip.is_later_fragment() {
                let l4_at = layout.l3 + ip.header_len();
                parse_l4(ip.payload(), key.ip_proto, &mut key)?;
                layout.l4 = Some(l4_at).filter(|_| has_l4(key.ip_proto));
            }
        }
        ethertype::IPV6 => {
            let ip = Ipv6Packet::new_checked(l3)?;
            key.ip_dscp = ip.dscp();
            key.ip_proto = ip.next_header();
            key.ipv6_src = ip.src();
            key.ipv6_dst = ip.dst();
            parse_l4(ip.payload(), key.ip_proto, &mut key)?;
            layout.l4 = Some(layout.l3 + IPV6_HLEN).filter(|_| has_l4(key.ip_proto));
        }
        ethertype::ARP | ethertype::RARP => {
            let arp = ArpPacket::new_checked(l3)?;
            key.arp_op = arp.op();
            key.arp_spa = arp.spa();
            key.arp_tpa = arp.tpa();
        }
        _ => {}
    }
    Ok((key, layout))
}

fn has_l4(proto: u8) -> bool {
    matches!(
        proto,
        ipproto::TCP | ipproto::UDP | ipproto::ICMP | ipproto::ICMPV6
    )
}

fn parse_l4(payload: &[u8], proto: u8, key: &mut FlowKey) -> Result<(), ParseError> {
    match proto {
        ipproto::TCP => {
            let tcp = TcpPacket::new_checked(payload)?;
            key.l4_src = tcp.src_port();
            key.l4_dst = tcp.dst_port();
        }
        ipproto::UDP => {
            let udp = UdpPacket::new_checked(payload)?;
            key.l4_src = udp.src_port();
            key.l4_dst = udp.dst_port();
        }
        ipproto::ICMP | ipproto::ICMPV6 => {
            let icmp = IcmpPacket::new_checked(payload)?;
            key.l4_src = icmp.msg_type().into();
            key.l4_dst = icmp.code().into();
        }
        _ => {}
    }
    Ok(())
}

/// Folds a byte slice into a ones'-complement sum (not yet complemented).
pub fn checksum_add(mut sum: u32, bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

/// Folds a 32-bit ones'-complement sum to 16 bits and complements it.
pub fn checksum_finish(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !low16(sum)
}

/// The low 16 bits of a word.
pub fn low16(word: u32) -> u16 {
    let b = word.to_be_bytes();
    u16::from_be_bytes([b[2], b[3]])
}

/// Writes a correct IPv4 header checksum for the header at the start of `ip`.
pub fn fix_ipv4_checksum(ip: &mut [u8]) {
    let hl = usize::from(ip[0] & 0x0f) * 4;
    ip[10] = 0;
    ip[11] = 0;
    let c = checksum_finish(checksum_add(0, &ip[..hl]));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Builds an Ethernet/IPv4/UDP frame with correct checksums.
    pub(crate) fn udp_frame(src: u32, dst: u32, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; ETH_HLEN + 20 + 8 + payload.len()];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip = &mut f[ETH_HLEN..];
        ip[0] = 0x45;
        let total = u16::try_from(20 + 8 + payload.len()).unwrap();
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&src.to_be_bytes());
        ip[16..20].copy_from_slice(&dst.to_be_bytes());
        fix_ipv4_checksum(ip);
        let udp = &mut ip[20..];
        udp[0..2].copy_from_slice(&sport.to_be_bytes());
        udp[2..4].copy_from_slice(&dport.to_be_bytes());
        udp[4..6].copy_from_slice(&(total - 20).to_be_bytes());
        udp[8..].copy_from_slice(payload);
        let c = l4_checksum_v4(&f[ETH_HLEN..]);
        f[ETH_HLEN + 26..ETH_HLEN + 28].copy_from_slice(&c.to_be_bytes());
        f
    }

    /// The correct TCP/UDP checksum of an IPv4 packet (with its checksum field zeroed).
    pub(crate) fn l4_checksum_v4(ip: &[u8]) -> u16 {
        let hl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(be16(ip, 2));
        let l4 = &ip[hl..total];
        let mut sum = checksum_add(0, &ip[12..20]);
        sum += u32::from(ip[9]);
        sum += u32::try_from(l4.len()).unwrap();
        let cks_at = if ip[9] == 6 { 16 } else { 6 };
        let mut copy = l4.to_vec();
        copy[cks_at] = 0;
        copy[cks_at + 1] = 0;
        checksum_finish(checksum_add(sum, &copy))
    }

    #[test]
    fn parses_udp_frame() {
        let f = udp_frame(0x6440_0001, 0x6440_0002, 1000, 53, b"hello");
        let (key, layout) = parse(&f, 3).unwrap();
        assert_eq!(key.in_port, 3);
        assert_eq!(key.eth_type, 0x800);
        assert_eq!(key.ip_proto, 17);
        assert_eq!(key.ipv4_src, 0x6440_0001);
        assert_eq!(key.l4_dst, 53);
        assert_eq!(layout.l3, 14);
        assert_eq!(layout.l4, Some(34));
    }

    #[test]
    fn parses_vlan_and_arp() {
        let mut f = vec![0xffu8; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&[0x81, 0x00, 0x20, 0x0a, 0x08, 0x06]);
        let mut arp = [0u8; ARP_LEN];
        write_arp(&mut arp, 1, Mac([2, 0, 0, 0, 0, 1]), 1, Mac::ZERO, 2).unwrap();
        f.extend_from_slice(&arp);
        let (key, layout) = parse(&f, 1).unwrap();
        assert_eq!(key.vlan_vid, VLAN_PRESENT | 10);
        assert_eq!(key.vlan_pcp, 1);
        assert_eq!(key.eth_type, 0x806);
        assert_eq!((key.arp_op, key.arp_spa, key.arp_tpa), (1, 1, 2));
        assert!(layout.vlan);
    }

    #[test]
    fn rejects_lying_lengths() {
        let mut f = udp_frame(1, 2, 3, 4, b"abcd");
        f[ETH_HLEN + 2] = 0xff; // IPv4 total length beyond the frame
        assert_eq!(parse(&f, 1), Err(ParseError::BadLength("ipv4")));
        let mut f = udp_frame(1, 2, 3, 4, b"abcd");
        f[ETH_HLEN + 24] = 0;
        f[ETH_HLEN + 25] = 3; // UDP length below its header
        assert_eq!(parse(&f, 1), Err(ParseError::BadLength("udp")));
        assert_eq!(parse(&f[..10], 1), Err(ParseError::Truncated("ethernet")));
        assert_eq!(parse(&f[..30], 1), Err(ParseError::Truncated("ipv4")));
        assert_eq!(parse(&f[..40], 1), Err(ParseError::BadLength("ipv4")));
    }

    proptest! {
        #[test]
        fn never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200), port in any::<u32>()) {
            let _ = parse(&bytes, port);
        }

        #[test]
        fn never_panics_on_mutated_frames(idx in 0usize..60, val in any::<u8>(), cut in 0usize..60) {
            let mut f = udp_frame(0x6440_0001, 0x6440_0002, 1000, 53, b"0123456789abcdef");
            let i = idx % f.len();
            f[i] = val;
            let end = f.len() - cut.min(f.len());
            if let Ok((key, layout)) = parse(&f[..end], 1) {
                prop_assert!(layout.l3 <= end);
                if let Some(l4) = layout.l4 { prop_assert!(l4 < end); }
                prop_assert_eq!(key.in_port, 1);
            }
        }
    }
}
