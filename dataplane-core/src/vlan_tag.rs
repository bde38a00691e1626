//! Putting back the 802.1Q tag that Linux took off a received frame.
//!
//! A packet socket on an interface with receive VLAN offload (veths, most NICs)
//! gets tagged frames with the tag removed and reported beside the frame
//! (`PACKET_AUXDATA`). A switch must see the frame as it was on the wire, or a
//! tagged trunk port carries nothing its flows match: this module re-inserts the
//! tag after the two MAC addresses and moves the virtio-net header's offsets with
//! the bytes they describe.

use crate::offload::{VnetHdr, F_NEEDS_CSUM, GSO_NONE};

/// Bytes a tag adds: its TPID and its TCI.
pub const TAG_LEN: usize = TAG_LEN_U16 as usize;
const TAG_LEN_U16: u16 = 4;
/// Destination and source MAC: the tag goes right after them.
const MACS_LEN: usize = 12;

/// Why a tag could not be put back; the frame is then dropped and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RetagError {
    /// The frame is shorter than two MAC addresses and an EtherType.
    #[error("frame of {0} bytes is too short to carry a VLAN tag")]
    TooShort(usize),
    /// The buffer has no room for four more bytes.
    #[error("no room to put the VLAN tag back into a {0}-byte frame")]
    NoRoom(usize),
}

/// Inserts the tag `tpid`/`tci` into the `len`-byte frame at the start of `buf`,
/// returning its new length, and moves `hdr`'s offsets (checksum start, header
/// length) past the tag.
pub fn reinsert(
    buf: &mut [u8],
    len: usize,
    tpid: u16,
    tci: u16,
    hdr: &mut VnetHdr,
) -> Result<usize, RetagError> {
    if len < MACS_LEN + 2 {
        return Err(RetagError::TooShort(len));
    }
    let new_len = len + TAG_LEN;
    if buf.len() < new_len {
        return Err(RetagError::NoRoom(len));
    }
    buf.copy_within(MACS_LEN..len, MACS_LEN + TAG_LEN);
    buf[MACS_LEN..MACS_LEN + 2].copy_from_slice(&tpid.to_be_bytes());
    buf[MACS_LEN + 2..MACS_LEN + TAG_LEN].copy_from_slice(&tci.to_be_bytes());
    let shift = TAG_LEN_U16;
    if hdr.flags & F_NEEDS_CSUM != 0 {
        hdr.csum_start = hdr.csum_start.saturating_add(shift);
    }
    if hdr.gso_type != GSO_NONE || hdr.hdr_len != 0 {
        hdr.hdr_len = hdr.hdr_len.saturating_add(shift);
    }
    Ok(new_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn plain() -> VnetHdr {
        VnetHdr::NONE
    }

    #[test]
    fn refuses_runts_and_full_buffers() {
        let mut buf = [0u8; 20];
        assert_eq!(
            reinsert(&mut buf, 13, 0x8100, 5, &mut plain()),
            Err(RetagError::TooShort(13))
        );
        assert_eq!(
            reinsert(&mut buf, 17, 0x8100, 5, &mut plain()),
            Err(RetagError::NoRoom(17))
        );
    }

    #[test]
    fn moves_the_checksum_offsets_with_the_headers() {
        let mut buf = [0u8; 100];
        let mut hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 16,
            ..plain()
        };
        assert_eq!(reinsert(&mut buf, 60, 0x8100, 10, &mut hdr), Ok(64));
        assert_eq!((hdr.csum_start, hdr.csum_offset), (38, 16));
    }

    proptest! {
        /// The result is the original frame with exactly the tag inserted after
        /// the MACs: nothing else moves, nothing is lost.
        #[test]
        fn the_frame_is_the_original_with_the_tag(
            frame in proptest::collection::vec(any::<u8>(), 14..1600),
            tpid in prop_oneof![Just(0x8100u16), Just(0x88a8u16)],
            tci in any::<u16>(),
        ) {
            let mut buf = frame.clone();
            buf.resize(frame.len() + TAG_LEN, 0xee);
            let n = reinsert(&mut buf, frame.len(), tpid, tci, &mut plain()).unwrap();
            let mut want = frame[..12].to_vec();
            want.extend_from_slice(&tpid.to_be_bytes());
            want.extend_from_slice(&tci.to_be_bytes());
            want.extend_from_slice(&frame[12..]);
            prop_assert_eq!(&buf[..n], &want[..]);
        }
    }
}
