//! Executes an action list on the bytes of one frame, in place.
//!
//! This module owns header rewriting: set-field with incremental checksum updates
//! (RFC 1624), VLAN push and pop through headroom kept in front of the frame, and TTL
//! decrement. Outputs are handed to a caller-supplied sink with the frame as it is at
//! that point, so `set, output, set, output` sends two different frames without a
//! copy. A group runs each bucket on the frame as the group found it: the headers
//! are saved once on the stack and put back before the next bucket and after the
//! last. It never allocates and never knows what a port is, except that it tells
//! each output how many outputs to the controller came before it in the list.

use crate::packet::{checksum_finish, low16, Layout, ETH_HLEN, VLAN_TAG_LEN};
use crate::pipeline::GroupTable;
use openflow::flow::{ethertype, ipproto, port, Action, Field, PortNo};

/// Bytes kept free in front of every frame so a VLAN tag can be pushed in place.
pub const HEADROOM: usize = 8;

/// A frame inside a reusable buffer, with headroom in front of it.
#[derive(Debug)]
pub struct FrameBuf {
    data: Box<[u8]>,
    start: usize,
    end: usize,
}

impl FrameBuf {
    /// A buffer that holds frames of up to `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> FrameBuf {
        FrameBuf {
            data: vec![0u8; capacity + HEADROOM].into_boxed_slice(),
            start: HEADROOM,
            end: HEADROOM,
        }
    }

    /// The frame's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// The frame's bytes, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.start..self.end]
    }

    /// The whole space past the headroom, to receive a frame into; follow with
    /// [`Self::set_len`].
    pub fn recv_space(&mut self) -> &mut [u8] {
        self.start = HEADROOM;
        &mut self.data[HEADROOM..]
    }

    /// Sets the frame length after receiving into [`Self::recv_space`].
    pub fn set_len(&mut self, len: usize) {
        self.start = HEADROOM;
        self.end = (HEADROOM + len).min(self.data.len());
    }

    /// Replaces the frame with a copy of `bytes` (truncated to the capacity).
    pub fn fill(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.data.len() - HEADROOM);
        self.data[HEADROOM..HEADROOM + n].copy_from_slice(&bytes[..n]);
        self.set_len(n);
    }

    /// Frame length.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// True for an empty frame.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// What became of a frame after its actions ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// All actions ran.
    Done,
    /// `dec_ttl` found a TTL that could not be decremented; later actions were skipped.
    TtlExpired,
}

/// Bytes from the start of a frame buffer (headroom included) that actions can
/// change: a frame has at most two VLAN tags (headroom allows two pushes), so the
/// network header starts by byte 8 + 22, an IPv4 header with options ends 60 bytes
/// later, and the last byte written is a transport checksum 18 bytes into the
/// transport header: 110 bytes. IPv6 (40 bytes, no extension headers parsed) and
/// ARP (28) end earlier.
const SAVED_HEADER_LEN: usize = HEADROOM + 128;

/// The part of a frame that a group's buckets may change, kept on the stack.
struct SavedHeaders {
    bytes: [u8; SAVED_HEADER_LEN],
    len: usize,
    start: usize,
    layout: Layout,
}

impl SavedHeaders {
    fn save(frame: &FrameBuf, layout: &Layout) -> SavedHeaders {
        let len = frame.end.min(SAVED_HEADER_LEN);
        let mut bytes = [0u8; SAVED_HEADER_LEN];
        bytes[..len].copy_from_slice(&frame.data[..len]);
        SavedHeaders {
            bytes,
            len,
            start: frame.start,
            layout: *layout,
        }
    }

    fn restore(&self, frame: &mut FrameBuf, layout: &mut Layout) {
        frame.data[..self.len].copy_from_slice(&self.bytes[..self.len]);
        frame.start = self.start;
        *layout = self.layout;
    }
}

/// Runs `actions` on `frame`, calling `output(port, bytes)` for each output action;
/// a group action runs the buckets `groups` holds for it, each on the frame as it was
/// when the group began, and the list goes on with that frame.
pub fn execute(
    actions: &[Action],
    frame: &mut FrameBuf,
    layout: &mut Layout,
    groups: &GroupTable,
    mut output: impl FnMut(PortNo, &[u8]),
) -> Outcome {
    execute_counted(actions, frame, layout, groups, |port, bytes, _| {
        output(port, bytes)
    })
}

/// [`execute`], calling `output(port, bytes, before)` with `before` the number of
/// outputs to the controller that come before this output in `actions`, counted
/// in the list's order with each group bucket's in turn, whether they ran or not:
/// a bucket whose `dec_ttl` fails skips the rest of its actions but not their
/// places. For an output to the controller that is its place among them, the
/// index of its record in the classification's `to_controller`, which notes
/// every one (`pipeline::ControllerOutput`), so a packet-in is told apart by
/// where its output stands, never by how many others happened to run.
pub fn execute_counted(
    actions: &[Action],
    frame: &mut FrameBuf,
    layout: &mut Layout,
    groups: &GroupTable,
    mut output: impl FnMut(PortNo, &[u8], usize),
) -> Outcome {
    let mut before = 0;
    run(
        actions,
        frame,
        layout,
        Some(groups),
        &mut before,
        &mut output,
    )
}

/// The outputs to the controller among `actions` (a bucket's: no groups).
fn controller_outputs(actions: &[Action]) -> usize {
    let to_controller =
        |a: &&Action| matches!(a, Action::Output { port, .. } if *port == port::CONTROLLER);
    actions.iter().filter(to_controller).count()
}

/// The body of [`execute_counted`]; `groups` is `None` inside a bucket (buckets
/// never name groups: the group table refuses chaining); `before` counts the
/// outputs to the controller met so far.
fn run(
    actions: &[Action],
    frame: &mut FrameBuf,
    layout: &mut Layout,
    groups: Option<&GroupTable>,
    before: &mut usize,
    output: &mut impl FnMut(PortNo, &[u8], usize),
) -> Outcome {
    for action in actions {
        match *action {
            Action::Group(id) => {
                let Some(buckets) = groups.and_then(|g| g.buckets(id)) else {
                    continue;
                };
                let saved = SavedHeaders::save(frame, layout);
                for bucket in buckets {
                    let first = *before;
                    // An expired TTL drops this bucket's copy only; the outputs
                    // it skipped keep their places.
                    let outcome = run(&bucket.actions, frame, layout, None, before, output);
                    if outcome == Outcome::TtlExpired {
                        *before = first + controller_outputs(&bucket.actions);
                    }
                    saved.restore(frame, layout);
                }
            }
            Action::Output { port, .. } => {
                output(port, frame.bytes(), *before);
                if port == port::CONTROLLER {
                    *before += 1;
                }
            }
            Action::SetField { field, value } => set_field(frame.bytes_mut(), layout, field, value),
            Action::PushVlan(tpid) => push_vlan(frame, layout, tpid),
            Action::PopVlan => pop_vlan(frame, layout),
            Action::DecNwTtl => {
                if !dec_ttl(frame.bytes_mut(), layout) {
                    return Outcome::TtlExpired;
                }
            }
        }
    }
    Outcome::Done
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// RFC 1624 eqn. 3: the checksum after a 16-bit word changed from `old` to `new`.
fn csum_update16(check: u16, old: u16, new: u16) -> u16 {
    checksum_finish(u32::from(!check) + u32::from(!old) + u32::from(new))
}

fn csum_update32(check: u16, old: u32, new: u32) -> u16 {
    let c = csum_update16(check, (old >> 16) as u16, (new >> 16) as u16);
    csum_update16(c, low16(old), low16(new))
}

fn eth_type_of(b: &[u8], layout: &Layout) -> u16 {
    if layout.l3 >= 2 && layout.l3 <= b.len() {
        be16(b, layout.l3 - 2)
    } else {
        0
    }
}

/// Offset of the transport checksum field and whether a zero checksum means "none".
fn l4_checksum_at(b: &[u8], layout: &Layout, proto: u8) -> Option<(usize, bool)> {
    let l4 = layout.l4?;
    let (at, zero_is_none) = match proto {
        ipproto::TCP => (l4 + 16, false),
        ipproto::UDP => (l4 + 6, eth_type_of(b, layout) == ethertype::IPV4),
        // ICMPv6's checksum covers the IPv6 pseudo-header (ICMPv4's does not).
        ipproto::ICMPV6 if eth_type_of(b, layout) == ethertype::IPV6 => (l4 + 2, false),
        _ => return None,
    };
    (at + 2 <= b.len()).then_some((at, zero_is_none))
}

fn update_l4_checksum32(b: &mut [u8], layout: &Layout, proto: u8, old: u32, new: u32) {
    if let Some((at, zero_is_none)) = l4_checksum_at(b, layout, proto) {
        let check = be16(b, at);
        if zero_is_none && check == 0 {
            return;
        }
        let c = csum_update32(check, old, new);
        b[at..at + 2].copy_from_slice(&c.to_be_bytes());
    }
}

#[allow(clippy::cast_possible_truncation)] // values are masked to the field width by Action::set
fn set_field(b: &mut [u8], layout: &Layout, field: Field, value: u128) {
    let l3 = layout.l3;
    let eth_type = eth_type_of(b, layout);
    match field {
        Field::EthDst if b.len() >= 6 => {
            b[0..6].copy_from_slice(&value.to_be_bytes()[10..16]);
        }
        Field::EthSrc if b.len() >= 12 => {
            b[6..12].copy_from_slice(&value.to_be_bytes()[10..16]);
        }
        Field::VlanVid | Field::VlanPcp if layout.vlan && b.len() >= ETH_HLEN + VLAN_TAG_LEN => {
            let tci = be16(b, ETH_HLEN);
            let tci = if field == Field::VlanVid {
                (tci & 0xf000) | (value as u16 & 0x0fff)
            } else {
                (tci & 0x1fff) | ((value as u16 & 0x7) << 13)
            };
            b[ETH_HLEN..ETH_HLEN + 2].copy_from_slice(&tci.to_be_bytes());
        }
        Field::Ipv4Src | Field::Ipv4Dst if eth_type == ethertype::IPV4 && b.len() >= l3 + 20 => {
            let at = l3 + if field == Field::Ipv4Src { 12 } else { 16 };
            let old = u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            let new = value as u32;
            b[at..at + 4].copy_from_slice(&new.to_be_bytes());
            let c = csum_update32(be16(b, l3 + 10), old, new);
            b[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
            let proto = b[l3 + 9];
            update_l4_checksum32(b, layout, proto, old, new);
        }
        Field::Ipv6Src | Field::Ipv6Dst if eth_type == ethertype::IPV6 && b.len() >= l3 + 40 => {
            let at = l3 + if field == Field::Ipv6Src { 8 } else { 24 };
            let proto = b[l3 + 6];
            let new = value.to_be_bytes();
            for i in 0..4 {
                let w = at + 4 * i;
                let old = u32::from_be_bytes([b[w], b[w + 1], b[w + 2], b[w + 3]]);
                let neww = u32::from_be_bytes([
                    new[4 * i],
                    new[4 * i + 1],
                    new[4 * i + 2],
                    new[4 * i + 3],
                ]);
                b[w..w + 4].copy_from_slice(&neww.to_be_bytes());
                update_l4_checksum32(b, layout, proto, old, neww);
            }
        }
        Field::IpDscp if eth_type == ethertype::IPV4 && b.len() >= l3 + 20 => {
            let old = be16(b, l3);
            let tos = (b[l3 + 1] & 0x03) | ((value as u8) << 2);
            b[l3 + 1] = tos;
            let c = csum_update16(be16(b, l3 + 10), old, be16(b, l3));
            b[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        }
        Field::L4Src | Field::L4Dst => {
            let Some(l4) = layout.l4 else { return };
            let proto = match eth_type {
                ethertype::IPV4 if b.len() >= l3 + 20 => b[l3 + 9],
                ethertype::IPV6 if b.len() >= l3 + 40 => b[l3 + 6],
                _ => return,
            };
            let new = value as u16;
            match proto {
                ipproto::TCP | ipproto::UDP => {
                    let at = l4 + if field == Field::L4Src { 0 } else { 2 };
                    if at + 2 > b.len() {
                        return;
                    }
                    let old = be16(b, at);
                    b[at..at + 2].copy_from_slice(&new.to_be_bytes());
                    update_l4_checksum32(b, layout, proto, u32::from(old), u32::from(new));
                }
                ipproto::ICMP | ipproto::ICMPV6 if l4 + 4 <= b.len() => {
                    let old = be16(b, l4);
                    let at = l4 + if field == Field::L4Src { 0 } else { 1 };
                    b[at] = new as u8;
                    let c = csum_update16(be16(b, l4 + 2), old, be16(b, l4));
                    b[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
                }
                _ => {}
            }
        }
        Field::ArpOp | Field::ArpSpa | Field::ArpTpa
            if matches!(eth_type, ethertype::ARP | ethertype::RARP) && b.len() >= l3 + 28 =>
        {
            match field {
                Field::ArpOp => b[l3 + 6..l3 + 8].copy_from_slice(&(value as u16).to_be_bytes()),
                Field::ArpSpa => b[l3 + 14..l3 + 18].copy_from_slice(&(value as u32).to_be_bytes()),
                _ => b[l3 + 24..l3 + 28].copy_from_slice(&(value as u32).to_be_bytes()),
            }
        }
        // Fields the frame does not carry are left alone, as OpenFlow's set-field
        // on an absent header does nothing; the pipeline refuses writes to fields
        // that are not `writable`.
        _ => {}
    }
}

fn push_vlan(frame: &mut FrameBuf, layout: &mut Layout, tpid: u16) {
    if frame.start < VLAN_TAG_LEN || frame.len() < ETH_HLEN {
        return;
    }
    // A new outer tag copies vid/pcp of an existing tag, else zero (OF 1.3 §5.12).
    let tci = if layout.vlan && frame.len() >= ETH_HLEN + VLAN_TAG_LEN {
        be16(frame.bytes(), ETH_HLEN) & 0xefff
    } else {
        0
    };
    let s = frame.start;
    frame.data.copy_within(s..s + 12, s - VLAN_TAG_LEN);
    frame.start -= VLAN_TAG_LEN;
    let b = frame.bytes_mut();
    b[12..14].copy_from_slice(&tpid.to_be_bytes());
    b[14..16].copy_from_slice(&tci.to_be_bytes());
    layout.l3 += VLAN_TAG_LEN;
    layout.l4 = layout.l4.map(|l4| l4 + VLAN_TAG_LEN);
    layout.vlan = true;
}

fn pop_vlan(frame: &mut FrameBuf, layout: &mut Layout) {
    if !layout.vlan || frame.len() < ETH_HLEN + VLAN_TAG_LEN {
        return;
    }
    let s = frame.start;
    frame.data.copy_within(s..s + 12, s + VLAN_TAG_LEN);
    frame.start += VLAN_TAG_LEN;
    layout.l3 -= VLAN_TAG_LEN;
    layout.l4 = layout.l4.map(|l4| l4 - VLAN_TAG_LEN);
    let b = frame.bytes();
    let et = be16(b, 12);
    // A frame cut right after an inner tag's EtherType carries no tag to read.
    layout.vlan =
        (et == ethertype::VLAN || et == ethertype::QINQ) && b.len() >= ETH_HLEN + VLAN_TAG_LEN;
}

/// Decrements the TTL/hop limit; false when it was already 0 or 1.
fn dec_ttl(b: &mut [u8], layout: &Layout) -> bool {
    let l3 = layout.l3;
    match eth_type_of(b, layout) {
        ethertype::IPV4 if b.len() >= l3 + 20 => {
            let ttl = b[l3 + 8];
            if ttl <= 1 {
                return false;
            }
            let old = be16(b, l3 + 8);
            b[l3 + 8] = ttl - 1;
            let c = csum_update16(be16(b, l3 + 10), old, be16(b, l3 + 8));
            b[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
            true
        }
        ethertype::IPV6 if b.len() >= l3 + 40 => {
            if b[l3 + 7] <= 1 {
                return false;
            }
            b[l3 + 7] -= 1;
            true
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::tests::{l4_checksum_v4, udp_frame};
    use crate::packet::{checksum_add, parse};
    use openflow::flow::VLAN_PRESENT;
    use proptest::prelude::*;

    fn ip_header_ok(ip: &[u8]) -> bool {
        checksum_finish(checksum_add(0, &ip[..20])) == 0
    }

    fn run(actions: &[Action], bytes: &[u8]) -> Vec<(PortNo, Vec<u8>)> {
        run_with(actions, bytes, &crate::pipeline::Pipeline::default())
    }

    fn run_with(
        actions: &[Action],
        bytes: &[u8],
        pipeline: &crate::pipeline::Pipeline,
    ) -> Vec<(PortNo, Vec<u8>)> {
        let mut frame = FrameBuf::with_capacity(2048);
        frame.fill(bytes);
        let (_, mut layout) = parse(frame.bytes(), 1).unwrap();
        let mut out = Vec::new();
        execute(
            actions,
            &mut frame,
            &mut layout,
            pipeline.groups(),
            |p, b| out.push((p, b.to_vec())),
        );
        out
    }

    fn pipeline_with_group(buckets: Vec<Vec<Action>>) -> crate::pipeline::Pipeline {
        use openflow::flow::{Bucket, GroupSpec, GroupType};
        let mut p = crate::pipeline::Pipeline::default();
        p.add_group(
            GroupSpec {
                group_id: 7,
                group_type: GroupType::All,
                buckets: buckets.into_iter().map(Bucket::new).collect(),
            },
            std::time::Instant::now(),
        )
        .unwrap();
        p
    }

    #[test]
    fn every_bucket_of_a_group_starts_from_the_frame_the_group_found() {
        let f = udp_frame(0x0a00_0001, 0x0a00_0002, 3, 4, b"payload");
        let p = pipeline_with_group(vec![
            vec![Action::set(Field::Ipv4Src, 0x0a00_0009), Action::output(1)],
            // Moves the headers through the headroom, then drops its copy.
            vec![Action::PushVlan(0x8100), Action::output(2)],
            vec![
                Action::set(Field::L4Dst, 99),
                Action::DecNwTtl,
                Action::output(3),
            ],
        ]);
        let out = run_with(&[Action::Group(7), Action::output(4)], &f, &p);
        let ports: Vec<PortNo> = out.iter().map(|(p, _)| *p).collect();
        assert_eq!(ports, vec![1, 2, 3, 4]);
        let key = |i: usize| parse(&out[i].1, 1).unwrap().0;
        assert_eq!((key(0).ipv4_src, key(0).l4_dst), (0x0a00_0009, 4));
        assert_eq!(key(1).vlan_vid, VLAN_PRESENT);
        assert_eq!((key(2).ipv4_src, key(2).l4_dst), (0x0a00_0001, 99));
        assert_eq!(out[2].1[ETH_HLEN + 8], 63);
        assert!(out
            .iter()
            .all(|(_, b)| ip_header_ok(&b[b.len() - 20 - 8 - 7..])));
        // The action list goes on with the frame the group found.
        assert_eq!(out[3].1, f);
    }

    /// Found by the `frame` fuzz target once groups ran its actions twice: two pops
    /// of an 18-byte frame whose inner EtherType is 0x8100 leave 14 bytes that
    /// name a tag they do not hold; a push then read past the frame.
    #[test]
    fn a_frame_popped_down_to_a_tag_type_can_be_pushed_again() {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x81, 0x00, 0x01, 0x0a];
        f.extend_from_slice(&[0x81, 0x00]);
        let pops = [
            Action::PopVlan,
            Action::PopVlan,
            Action::PushVlan(0x8100),
            Action::output(1),
        ];
        let out = run(&pops, &f);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1.len(), 18);
        assert_eq!(
            out[0].1[14..16],
            [0, 0],
            "a new tag on an untagged frame has TCI 0"
        );
    }

    #[test]
    fn an_unknown_group_sends_nothing_and_the_list_goes_on() {
        let f = udp_frame(1, 2, 3, 4, b"x");
        let out = run(&[Action::Group(9), Action::output(1)], &f);
        assert_eq!(out, vec![(1, f)]);
    }

    /// An IPv6 frame carrying `l4` (a TCP segment or an ICMPv6 message) with
    /// its checksum at `at` filled in.
    fn ipv6_frame(src: u128, dst: u128, proto: u8, mut l4: Vec<u8>, at: usize) -> Vec<u8> {
        let mut f = vec![0u8; ETH_HLEN + 40];
        f[12..14].copy_from_slice(&ethertype::IPV6.to_be_bytes());
        f[ETH_HLEN] = 0x60;
        f[ETH_HLEN + 4..ETH_HLEN + 6]
            .copy_from_slice(&u16::try_from(l4.len()).unwrap().to_be_bytes());
        f[ETH_HLEN + 6] = proto;
        f[ETH_HLEN + 7] = 64;
        f[ETH_HLEN + 8..ETH_HLEN + 24].copy_from_slice(&src.to_be_bytes());
        f[ETH_HLEN + 24..ETH_HLEN + 40].copy_from_slice(&dst.to_be_bytes());
        l4[at..at + 2].copy_from_slice(&[0, 0]);
        f.extend_from_slice(&l4);
        let sum = l4_checksum_v6(&f[ETH_HLEN..]);
        f[ETH_HLEN + 40 + at..ETH_HLEN + 42 + at].copy_from_slice(&sum.to_be_bytes());
        f
    }

    /// The transport checksum over the IPv6 pseudo-header: 0 when `ip`'s is right.
    fn l4_checksum_v6(ip: &[u8]) -> u16 {
        let payload = &ip[40..];
        let mut sum = checksum_add(0, &ip[8..40]);
        sum = checksum_add(sum, &u32::try_from(payload.len()).unwrap().to_be_bytes());
        sum = checksum_add(sum, &[0, 0, 0, ip[6]]);
        checksum_finish(checksum_add(sum, payload))
    }

    proptest! {
        /// What `scc` emits for an `ip6Src :=`/`ip6Dst :=`, on TCP and on ICMPv6
        /// (whose checksum also covers the addresses).
        #[test]
        fn ipv6_rewrites_keep_checksums_right(src in any::<u128>(), dst in any::<u128>(),
                                              nsrc in any::<u128>(), ndst in any::<u128>()) {
            let mut tcp = vec![0u8; 20];
            tcp[12] = 0x50;
            tcp.extend_from_slice(b"segment");
            let echo = [128, 0, 0, 0, 0, 1, 0, 1, 0xab, 0xcd].to_vec();
            for f in [ipv6_frame(src, dst, ipproto::TCP, tcp.clone(), 16),
                      ipv6_frame(src, dst, ipproto::ICMPV6, echo.clone(), 2)] {
                prop_assert_eq!(l4_checksum_v6(&f[ETH_HLEN..]), 0);
                let out = run(&[
                    Action::set(Field::Ipv6Src, nsrc),
                    Action::set(Field::Ipv6Dst, ndst),
                    Action::output(5),
                ], &f);
                let (key, _) = parse(&out[0].1, 1).unwrap();
                prop_assert_eq!((key.ipv6_src, key.ipv6_dst), (nsrc, ndst));
                prop_assert_eq!(l4_checksum_v6(&out[0].1[ETH_HLEN..]), 0);
            }
        }

        #[test]
        fn nat_rewrites_keep_checksums_right(src in any::<u32>(), dst in any::<u32>(), nsrc in any::<u32>(),
                                             ndst in any::<u32>(), sp in any::<u16>(), ndp in any::<u16>()) {
            let f = udp_frame(src, dst, sp, 80, b"payload bytes");
            let out = run(&[
                Action::set(Field::Ipv4Src, nsrc.into()),
                Action::set(Field::Ipv4Dst, ndst.into()),
                Action::set(Field::L4Dst, ndp.into()),
                Action::output(5),
            ], &f);
            let ip = &out[0].1[ETH_HLEN..];
            prop_assert!(ip_header_ok(ip));
            let (key, _) = parse(&out[0].1, 1).unwrap();
            prop_assert_eq!((key.ipv4_src, key.ipv4_dst, key.l4_dst), (nsrc, ndst, ndp));
            let stored = be16(ip, 26);
            // UDP's zero checksum means "none"; a recomputed sum of 0 is sent as 0xffff.
            let want = l4_checksum_v4(ip);
            prop_assert!(stored == want || (stored == 0xffff && want == 0) || (stored == 0 && want == 0xffff));
        }
    }

    #[test]
    fn outputs_see_the_frame_as_it_is_then() {
        let f = udp_frame(1, 2, 3, 4, b"x");
        let out = run(
            &[
                Action::output(1),
                Action::set(Field::EthDst, 0x0200_0000_00aa),
                Action::output(2),
            ],
            &f,
        );
        assert_eq!(out[0].1[0..6], [2, 0, 0, 0, 0, 2]);
        assert_eq!(out[1].1[0..6], [2, 0, 0, 0, 0, 0xaa]);
    }

    #[test]
    fn push_then_pop_vlan_round_trips() {
        let f = udp_frame(1, 2, 3, 4, b"xyz");
        let out = run(
            &[
                Action::PushVlan(0x8100),
                Action::set(Field::VlanVid, u128::from(VLAN_PRESENT | 42)),
                Action::output(1),
                Action::PopVlan,
                Action::output(2),
            ],
            &f,
        );
        let (tagged, layout) = parse(&out[0].1, 1).unwrap();
        assert_eq!(tagged.vlan_vid, VLAN_PRESENT | 42);
        assert!(layout.vlan);
        assert_eq!(tagged.l4_dst, 4);
        assert_eq!(out[1].1, f);
    }

    /// The places `execute_counted` gives each output (port, place), for a
    /// frame with TTL `ttl`.
    fn places(
        actions: &[Action],
        ttl: u8,
        pipeline: &crate::pipeline::Pipeline,
    ) -> Vec<(PortNo, usize)> {
        let mut f = udp_frame(1, 2, 3, 4, b"x");
        f[ETH_HLEN + 8] = ttl;
        crate::packet::fix_ipv4_checksum(&mut f[ETH_HLEN..]);
        let mut frame = FrameBuf::with_capacity(2048);
        frame.fill(&f);
        let (_, mut layout) = parse(frame.bytes(), 1).unwrap();
        let mut out = Vec::new();
        execute_counted(
            actions,
            &mut frame,
            &mut layout,
            pipeline.groups(),
            |p, _, place| {
                out.push((p, place));
            },
        );
        out
    }

    #[test]
    fn an_output_keeps_its_place_when_a_bucket_before_it_stops_at_its_ttl() {
        let to_controller = Action::output(port::CONTROLLER);
        let pipeline =
            pipeline_with_group(vec![vec![to_controller, Action::DecNwTtl, to_controller]]);
        let actions = [Action::Group(7), Action::output(3), to_controller];
        // TTL 1: the bucket's second output is skipped but keeps place 1, so the
        // list's own output to the controller is place 2, as when it runs.
        let expired = places(&actions, 1, &pipeline);
        assert_eq!(
            expired,
            [(port::CONTROLLER, 0), (3, 2), (port::CONTROLLER, 2)]
        );
        let ran = places(&actions, 64, &pipeline);
        assert_eq!(
            ran,
            [
                (port::CONTROLLER, 0),
                (port::CONTROLLER, 1),
                (3, 2),
                (port::CONTROLLER, 2)
            ]
        );
        assert_eq!(
            places(&actions, 1, &pipeline),
            expired,
            "the same every time"
        );
    }

    #[test]
    fn dec_ttl_stops_at_one() {
        let mut f = udp_frame(1, 2, 3, 4, b"x");
        let out = run(&[Action::DecNwTtl, Action::output(1)], &f);
        assert_eq!(out[0].1[ETH_HLEN + 8], 63);
        assert!(ip_header_ok(&out[0].1[ETH_HLEN..]));
        f[ETH_HLEN + 8] = 1;
        crate::packet::fix_ipv4_checksum(&mut f[ETH_HLEN..]);
        assert!(run(&[Action::DecNwTtl, Action::output(1)], &f).is_empty());
    }
}
