//! Which inner source addresses each tunnel peer may send from. The check runs on
//! every datagram a tunnel delivers, and the peer is known by then, so each peer
//! keeps its own set: its full-length addresses (a /32 or /128 per VM routed to
//! it, the bulk of any table) in a hash set, one probe per packet, and every other
//! mask (a subnet, the internet's 0/0 behind a gateway, an OpenFlow mask that is
//! not a prefix) in a short list checked after it.

use rustc_hash::FxHashSet;

/// Bit width of IPv4 addresses (held in the low bits of a `u128`).
const V4_BITS: u32 = 32;

/// What one peer may send from.
#[derive(Debug, Default, Clone)]
struct PeerSources {
    /// Single addresses, with their family.
    exact: FxHashSet<(u128, bool)>,
    /// Everything wider: (value, mask, is_v6).
    masked: Vec<(u128, u128, bool)>,
}

/// The allowed source addresses of every peer.
#[derive(Debug, Default, Clone)]
pub struct AllowedIps {
    /// By peer index.
    peers: Vec<PeerSources>,
}

/// The mask of every bit of an address of the family.
fn full_mask(v6: bool) -> u128 {
    if v6 {
        u128::MAX
    } else {
        (1u128 << V4_BITS) - 1
    }
}

impl AllowedIps {
    /// Forgets every prefix.
    pub fn clear(&mut self) {
        self.peers.clear();
    }

    /// Lets `peer` send from the addresses `value` under `mask`.
    pub fn insert(&mut self, peer: usize, value: u128, mask: u128, v6: bool) {
        if self.peers.len() <= peer {
            self.peers.resize_with(peer + 1, PeerSources::default);
        }
        let sources = &mut self.peers[peer];
        let full = full_mask(v6);
        let mask = mask & full;
        if mask == full {
            sources.exact.insert((value & full, v6));
        } else {
            let entry = (value & mask, mask, v6);
            if !sources.masked.contains(&entry) {
                sources.masked.push(entry);
            }
        }
    }

    /// True when `peer` may send from `src`.
    pub fn allows(&self, peer: usize, src: u128, v6: bool) -> bool {
        let Some(sources) = self.peers.get(peer) else {
            return false;
        };
        let src = src & full_mask(v6);
        sources.exact.contains(&(src, v6))
            || sources
                .masked
                .iter()
                .any(|&(value, mask, is_v6)| is_v6 == v6 && src & mask == value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4]) -> u128 {
        u128::from(u32::from_be_bytes(a))
    }

    #[test]
    fn prefixes_allow_what_they_cover_and_only_for_their_peer() {
        let mut allowed = AllowedIps::default();
        allowed.insert(0, v4([100, 64, 2, 0]), v4([255, 255, 255, 0]), false);
        allowed.insert(1, v4([100, 64, 1, 1]), v4([255, 255, 255, 255]), false);
        assert!(allowed.allows(0, v4([100, 64, 2, 7]), false));
        assert!(!allowed.allows(1, v4([100, 64, 2, 7]), false));
        assert!(allowed.allows(1, v4([100, 64, 1, 1]), false));
        assert!(!allowed.allows(1, v4([100, 64, 1, 2]), false));
        assert!(
            !allowed.allows(0, v4([100, 64, 2, 7]), true),
            "other family"
        );
    }

    #[test]
    fn a_zero_mask_allows_everything_and_odd_masks_still_work() {
        let mut allowed = AllowedIps::default();
        allowed.insert(0, 0, 0, true);
        assert!(allowed.allows(0, u128::MAX, true));
        // Every address whose last byte is 5, whatever the rest.
        allowed.insert(1, 5, 0xff, false);
        assert!(allowed.allows(1, v4([10, 0, 0, 5]), false));
        assert!(!allowed.allows(1, v4([10, 0, 0, 6]), false));
    }

    #[test]
    fn single_addresses_of_both_families_and_unknown_peers() {
        let mut allowed = AllowedIps::default();
        let v6 = 0x2001_0db8_u128 << 96 | 7;
        allowed.insert(2, v6, u128::MAX, true);
        allowed.insert(2, v4([100, 64, 3, 3]), u128::MAX, false);
        assert!(allowed.allows(2, v6, true));
        assert!(!allowed.allows(2, v6 + 1, true));
        assert!(allowed.allows(2, v4([100, 64, 3, 3]), false));
        assert!(
            !allowed.allows(2, v4([100, 64, 3, 3]), true),
            "other family"
        );
        assert!(
            !allowed.allows(0, v4([100, 64, 3, 3]), false),
            "peer with nothing"
        );
        assert!(
            !allowed.allows(9, v4([100, 64, 3, 3]), false),
            "peer never named"
        );
        allowed.clear();
        assert!(!allowed.allows(2, v6, true));
    }
}
