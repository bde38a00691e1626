//! Which inner source addresses each tunnel peer may send from: a binary trie of
//! prefixes per address family, each node naming the peers whose prefix ends
//! there. A source is allowed from a peer when any prefix on its path names that
//! peer. OpenFlow masks need not be prefixes; such a (rare) mask is kept in a
//! list checked after the trie.

/// Bit width of IPv4 addresses (held in the low bits of a `u128`).
const V4_BITS: u32 = 32;
/// Bit width of IPv6 addresses.
const V6_BITS: u32 = 128;

#[derive(Debug, Default, Clone)]
struct Node {
    children: [Option<u32>; 2],
    /// Peers (by index) whose prefix ends at this node.
    peers: Vec<usize>,
}

/// A binary trie over addresses of one width.
#[derive(Debug, Clone)]
struct Trie {
    bits: u32,
    nodes: Vec<Node>,
}

impl Trie {
    fn new(bits: u32) -> Trie {
        Trie {
            bits,
            nodes: vec![Node::default()],
        }
    }

    /// The bit of `addr` at depth `depth` (0 = most significant).
    fn bit(&self, addr: u128, depth: u32) -> usize {
        usize::from((addr >> (self.bits - 1 - depth)) & 1 == 1)
    }

    fn insert(&mut self, value: u128, prefix_len: u32, peer: usize) {
        let mut node = 0usize;
        for depth in 0..prefix_len {
            let b = self.bit(value, depth);
            node = match self.nodes[node].children[b] {
                Some(child) => child as usize,
                None => {
                    let child = self.nodes.len();
                    self.nodes.push(Node::default());
                    self.nodes[node].children[b] = u32::try_from(child).ok();
                    child
                }
            };
        }
        if !self.nodes[node].peers.contains(&peer) {
            self.nodes[node].peers.push(peer);
        }
    }

    fn contains(&self, addr: u128, peer: usize) -> bool {
        let mut node = 0usize;
        for depth in 0..=self.bits {
            if self.nodes[node].peers.contains(&peer) {
                return true;
            }
            if depth == self.bits {
                return false;
            }
            match self.nodes[node].children[self.bit(addr, depth)] {
                Some(child) => node = child as usize,
                None => return false,
            }
        }
        false
    }
}

/// The allowed source addresses of every peer.
#[derive(Debug, Clone)]
pub struct AllowedIps {
    v4: Trie,
    v6: Trie,
    /// Entries whose mask is not a prefix: (value, mask, is_v6, peer).
    other: Vec<(u128, u128, bool, usize)>,
}

impl Default for AllowedIps {
    fn default() -> Self {
        AllowedIps {
            v4: Trie::new(V4_BITS),
            v6: Trie::new(V6_BITS),
            other: Vec::new(),
        }
    }
}

/// The prefix length of `mask` in a `bits`-wide address, if it is a prefix.
fn prefix_len(mask: u128, bits: u32) -> Option<u32> {
    let full = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    let mask = mask & full;
    let len = (mask << (128 - bits)).leading_ones();
    let expected = if len == 0 {
        0
    } else {
        full & !((1u128 << (bits - len)) - 1)
    };
    (mask == expected).then_some(len)
}

impl AllowedIps {
    /// Forgets every prefix.
    pub fn clear(&mut self) {
        *self = AllowedIps::default();
    }

    /// Lets `peer` send from the addresses `value` under `mask`.
    pub fn insert(&mut self, peer: usize, value: u128, mask: u128, v6: bool) {
        let trie = if v6 { &mut self.v6 } else { &mut self.v4 };
        match prefix_len(mask, trie.bits) {
            Some(len) => trie.insert(value & mask, len, peer),
            None => {
                let entry = (value, mask, v6, peer);
                if !self.other.contains(&entry) {
                    self.other.push(entry);
                }
            }
        }
    }

    /// True when `peer` may send from `src`.
    pub fn allows(&self, peer: usize, src: u128, v6: bool) -> bool {
        let trie = if v6 { &self.v6 } else { &self.v4 };
        trie.contains(src, peer)
            || self
                .other
                .iter()
                .any(|(value, mask, is_v6, p)| *p == peer && *is_v6 == v6 && src & mask == *value)
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
    fn prefix_lengths() {
        assert_eq!(prefix_len(0, 32), Some(0));
        assert_eq!(prefix_len(0xffff_ff00, 32), Some(24));
        assert_eq!(prefix_len(0xffff_ffff, 32), Some(32));
        assert_eq!(prefix_len(u128::MAX, 128), Some(128));
        assert_eq!(prefix_len(0xff, 32), None);
    }
}
