//! The anycast-gateway ARP responder.
//!
//! In the routed overlay every VM sees the whole overlay prefix as on-link, and every
//! host answers ARP for every overlay address with the same gateway MAC, the way a
//! cloud VPC does. So a VM's ARP is answered by its own host and never crosses a
//! tunnel or a cloud; `scd` then routes by IP. This module only builds replies; it
//! never forwards a frame.

use crate::packet::{ArpPacket, ARP_LEN, ETH_HLEN};
use openflow::flow::{ethertype, prefix_mask32, FlowKey, Mac};

/// ARP opcode of a request.
pub const ARP_REQUEST: u16 = 1;
/// ARP opcode of a reply.
pub const ARP_REPLY: u16 = 2;

/// Answers ARP requests for addresses inside the overlay prefix.
#[derive(Clone, Copy, Debug)]
pub struct ArpResponder {
    network: u32,
    mask: u32,
    gateway_mac: Mac,
}

impl ArpResponder {
    /// A responder for `network/len` that answers with `gateway_mac`.
    pub fn new(network: u32, len: u8, gateway_mac: Mac) -> ArpResponder {
        let mask = prefix_mask32(len);
        ArpResponder {
            network: network & mask,
            mask,
            gateway_mac,
        }
    }

    /// True when the responder owns the answer to this (already parsed) frame:
    /// an untagged ARP request for an overlay address that is not a probe or a
    /// gratuitous announcement (those must never be answered, or the asker would
    /// think its own address is taken).
    pub fn wants(&self, key: &FlowKey) -> bool {
        key.eth_type == ethertype::ARP
            && key.vlan_vid == 0
            && key.arp_op == ARP_REQUEST
            && key.arp_tpa & self.mask == self.network
            && key.arp_spa != 0
            && key.arp_spa != key.arp_tpa
    }

    /// Writes the reply to `request` into `out` and returns its length, or `None`
    /// when the request is not one to answer or `out` is too small.
    pub fn reply(&self, key: &FlowKey, request: &[u8], out: &mut [u8]) -> Option<usize> {
        if !self.wants(key) {
            return None;
        }
        let arp = ArpPacket::new_checked(request.get(ETH_HLEN..)?).ok()?;
        let frame = out.get_mut(..ETH_HLEN + ARP_LEN)?;
        frame[0..6].copy_from_slice(&arp.sha().0);
        frame[6..12].copy_from_slice(&self.gateway_mac.0);
        frame[12..14].copy_from_slice(&ethertype::ARP.to_be_bytes());
        crate::packet::write_arp(
            &mut frame[ETH_HLEN..],
            ARP_REPLY,
            self.gateway_mac,
            arp.tpa(),
            arp.sha(),
            arp.spa(),
        )?;
        Some(ETH_HLEN + ARP_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{parse, write_arp};

    fn request(spa: u32, tpa: u32) -> Vec<u8> {
        let mut f = vec![0u8; ETH_HLEN + ARP_LEN];
        f[0..6].copy_from_slice(&[0xff; 6]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 7]);
        f[12..14].copy_from_slice(&ethertype::ARP.to_be_bytes());
        write_arp(
            &mut f[ETH_HLEN..],
            ARP_REQUEST,
            Mac([2, 0, 0, 0, 0, 7]),
            spa,
            Mac::ZERO,
            tpa,
        )
        .unwrap();
        f
    }

    #[test]
    fn answers_overlay_requests_only() {
        let gw = Mac([2, 0x5c, 0, 0, 0, 1]);
        let r = ArpResponder::new(0x6440_0000, 10, gw);
        let req = request(0x6440_0102, 0x6440_0203);
        let (key, _) = parse(&req, 1).unwrap();
        let mut out = [0u8; 64];
        let n = r.reply(&key, &req, &mut out).unwrap();
        let (reply, _) = parse(&out[..n], 1).unwrap();
        assert_eq!(reply.arp_op, ARP_REPLY);
        assert_eq!(reply.eth_src, gw);
        assert_eq!(reply.eth_dst, Mac([2, 0, 0, 0, 0, 7]));
        assert_eq!((reply.arp_spa, reply.arp_tpa), (0x6440_0203, 0x6440_0102));

        for (spa, tpa) in [
            (0x6440_0102, 0x0a00_0001),
            (0, 0x6440_0203),
            (0x6440_0203, 0x6440_0203),
        ] {
            let req = request(spa, tpa);
            let (key, _) = parse(&req, 1).unwrap();
            assert!(
                r.reply(&key, &req, &mut out).is_none(),
                "{spa:x} -> {tpa:x}"
            );
        }
    }
}
