//! The DHCP server of VM ports: reading a client's BOOTP/DHCP message, writing
//! the server's, and the decision of what a bound VM port's client is answered.
//!
//! A VM port is bound to its VM's MAC and addresses (`port_security`); the lease
//! is exactly that binding: the client gets its port's first address, the overlay
//! prefix as its subnet (every overlay address is on-link, as the ARP responder
//! arranges), the anycast gateway as its router and server, an MTU that fits the
//! tunnel and the host's DNS servers. There is no pool and no lease state: a
//! request for any other address is refused (DHCPNAK), and the answer never
//! depends on earlier messages. This module never forwards a frame; the switch
//! sends what [`DhcpServer::reply`] writes back out of the port the request came
//! in on.

use crate::packet::{checksum_add, checksum_finish, fix_ipv4_checksum, Ipv4Packet, ETH_HLEN};
use openflow::flow::{ethertype, ipproto, prefix_mask32, FlowKey, Mac};
use std::net::Ipv4Addr;

/// UDP port a DHCP server listens on.
pub const SERVER_PORT: u16 = 67;
/// UDP port a DHCP client listens on.
pub const CLIENT_PORT: u16 = 68;
/// Length of the fixed BOOTP part, up to the options' magic cookie.
pub const BOOTP_FIXED_LEN: usize = 236;
/// The magic cookie that starts DHCP options (RFC 2131 section 3).
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Smallest BOOTP message some clients accept (RFC 1542): shorter replies are
/// padded.
pub const MIN_BOOTP_LEN: usize = 300;
/// Most DNS servers a reply carries (one option of at most 255 bytes holds 63;
/// a handful keeps every reply inside one small frame).
pub const MAX_DNS_SERVERS: usize = 8;
/// Room a reply frame needs: Ethernet, IPv4, UDP and the largest message written.
pub const MAX_REPLY_FRAME: usize = ETH_HLEN + 20 + 8 + 400;

const BOOTREQUEST: u8 = 1;
const BOOTREPLY: u8 = 2;
const HTYPE_ETHERNET: u8 = 1;
const BROADCAST_FLAG: u16 = 0x8000;

mod option {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const DNS: u8 = 6;
    pub const INTERFACE_MTU: u8 = 26;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const END: u8 = 255;
}

/// The DHCP message type (option 53).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    /// A client looks for servers.
    Discover,
    /// A server offers an address.
    Offer,
    /// A client asks for the offered (or its current) address.
    Request,
    /// A client found the address in use.
    Decline,
    /// A server confirms the lease.
    Ack,
    /// A server refuses the request.
    Nak,
    /// A client gives its address back.
    Release,
    /// A client with an address asks for the other parameters only.
    Inform,
}

impl MessageType {
    /// The option's value.
    pub fn code(self) -> u8 {
        match self {
            MessageType::Discover => 1,
            MessageType::Offer => 2,
            MessageType::Request => 3,
            MessageType::Decline => 4,
            MessageType::Ack => 5,
            MessageType::Nak => 6,
            MessageType::Release => 7,
            MessageType::Inform => 8,
        }
    }

    /// The type with this option value, if any.
    pub fn from_code(code: u8) -> Option<MessageType> {
        Some(match code {
            1 => MessageType::Discover,
            2 => MessageType::Offer,
            3 => MessageType::Request,
            4 => MessageType::Decline,
            5 => MessageType::Ack,
            6 => MessageType::Nak,
            7 => MessageType::Release,
            8 => MessageType::Inform,
            _ => return None,
        })
    }
}

/// Why bytes are not a DHCP message this server reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DhcpError {
    /// Shorter than the fixed part and the magic cookie.
    #[error("shorter than a BOOTP header")]
    Truncated,
    /// Not Ethernet hardware addresses (htype 1, hlen 6).
    #[error("not an Ethernet client")]
    NotEthernet,
    /// No DHCP magic cookie: plain BOOTP, which is not served.
    #[error("no DHCP magic cookie")]
    NoCookie,
    /// An option runs past the end of the message.
    #[error("option {0} runs past the end")]
    BadOption(u8),
}

/// A BOOTP/DHCP message: the fixed fields and the options this server reads or
/// writes (others are skipped when reading).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhcpMessage {
    /// 1: request (client to server), 2: reply.
    pub op: u8,
    /// Transaction id, chosen by the client.
    pub xid: u32,
    /// Seconds since the client began.
    pub secs: u16,
    /// Flags; the top bit asks for a broadcast reply.
    pub flags: u16,
    /// The client's current address (renewing, informing).
    pub ciaddr: Ipv4Addr,
    /// The address given to the client.
    pub yiaddr: Ipv4Addr,
    /// Next server (unused here).
    pub siaddr: Ipv4Addr,
    /// Relay agent (unused here: VM ports are never behind a relay).
    pub giaddr: Ipv4Addr,
    /// The client's MAC.
    pub chaddr: Mac,
    /// Option 53.
    pub message_type: Option<MessageType>,
    /// Option 50.
    pub requested_ip: Option<Ipv4Addr>,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
    /// Option 1.
    pub subnet_mask: Option<Ipv4Addr>,
    /// Option 3 (its first router).
    pub router: Option<Ipv4Addr>,
    /// Option 6.
    pub dns: Vec<Ipv4Addr>,
    /// Option 26.
    pub mtu: Option<u16>,
    /// Option 51, seconds.
    pub lease_secs: Option<u32>,
}

fn ip_at(bytes: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3])
}

fn ip_option(value: &[u8]) -> Option<Ipv4Addr> {
    let b: [u8; 4] = value.get(..4)?.try_into().ok()?;
    Some(Ipv4Addr::from(b))
}

impl DhcpMessage {
    /// A message of `op` (1 request, 2 reply) in transaction `xid` about the
    /// client `chaddr`, with every address unspecified and no option.
    pub fn new(op: u8, xid: u32, chaddr: Mac) -> DhcpMessage {
        DhcpMessage {
            op,
            xid,
            secs: 0,
            flags: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr,
            message_type: None,
            requested_ip: None,
            server_id: None,
            subnet_mask: None,
            router: None,
            dns: Vec::new(),
            mtu: None,
            lease_secs: None,
        }
    }

    /// Reads a message from a UDP payload.
    pub fn parse(bytes: &[u8]) -> Result<DhcpMessage, DhcpError> {
        if bytes.len() < BOOTP_FIXED_LEN + MAGIC_COOKIE.len() {
            return Err(DhcpError::Truncated);
        }
        if bytes[1] != HTYPE_ETHERNET || bytes[2] != 6 {
            return Err(DhcpError::NotEthernet);
        }
        if bytes[BOOTP_FIXED_LEN..BOOTP_FIXED_LEN + 4] != MAGIC_COOKIE {
            return Err(DhcpError::NoCookie);
        }
        let mut chaddr = [0u8; 6];
        chaddr.copy_from_slice(&bytes[28..34]);
        let xid = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        let mut m = DhcpMessage {
            secs: u16::from_be_bytes([bytes[8], bytes[9]]),
            flags: u16::from_be_bytes([bytes[10], bytes[11]]),
            ciaddr: ip_at(bytes, 12),
            yiaddr: ip_at(bytes, 16),
            siaddr: ip_at(bytes, 20),
            giaddr: ip_at(bytes, 24),
            ..DhcpMessage::new(bytes[0], xid, Mac(chaddr))
        };
        let mut rest = &bytes[BOOTP_FIXED_LEN + 4..];
        while let Some((&code, tail)) = rest.split_first() {
            match code {
                option::PAD => {
                    rest = tail;
                    continue;
                }
                option::END => break,
                _ => {}
            }
            let (&len, tail) = tail.split_first().ok_or(DhcpError::BadOption(code))?;
            let len = usize::from(len);
            let value = tail.get(..len).ok_or(DhcpError::BadOption(code))?;
            rest = &tail[len..];
            match code {
                option::MESSAGE_TYPE => {
                    m.message_type = value.first().copied().and_then(MessageType::from_code);
                }
                option::REQUESTED_IP => m.requested_ip = ip_option(value),
                option::SERVER_ID => m.server_id = ip_option(value),
                option::SUBNET_MASK => m.subnet_mask = ip_option(value),
                option::ROUTER => m.router = ip_option(value),
                option::DNS => {
                    m.dns = value.chunks_exact(4).filter_map(ip_option).collect();
                }
                option::INTERFACE_MTU => {
                    m.mtu = value.get(..2).map(|v| u16::from_be_bytes([v[0], v[1]]));
                }
                option::LEASE_TIME => {
                    m.lease_secs = value
                        .get(..4)
                        .map(|v| u32::from_be_bytes([v[0], v[1], v[2], v[3]]));
                }
                _ => {}
            }
        }
        Ok(m)
    }

    /// Writes the message into `out`, padded to [`MIN_BOOTP_LEN`], and returns its
    /// length; `None` when `out` is too small or there are more than
    /// [`MAX_DNS_SERVERS`] DNS servers.
    pub fn write(&self, out: &mut [u8]) -> Option<usize> {
        if self.dns.len() > MAX_DNS_SERVERS {
            return None;
        }
        let fixed = out.get_mut(..BOOTP_FIXED_LEN + 4)?;
        fixed.fill(0);
        fixed[0] = self.op;
        fixed[1] = HTYPE_ETHERNET;
        fixed[2] = 6;
        fixed[4..8].copy_from_slice(&self.xid.to_be_bytes());
        fixed[8..10].copy_from_slice(&self.secs.to_be_bytes());
        fixed[10..12].copy_from_slice(&self.flags.to_be_bytes());
        fixed[12..16].copy_from_slice(&self.ciaddr.octets());
        fixed[16..20].copy_from_slice(&self.yiaddr.octets());
        fixed[20..24].copy_from_slice(&self.siaddr.octets());
        fixed[24..28].copy_from_slice(&self.giaddr.octets());
        fixed[28..34].copy_from_slice(&self.chaddr.0);
        fixed[BOOTP_FIXED_LEN..].copy_from_slice(&MAGIC_COOKIE);
        let mut at = BOOTP_FIXED_LEN + 4;
        let mut put = |code: u8, value: &[u8]| -> Option<()> {
            let len = u8::try_from(value.len()).ok()?;
            let slot = out.get_mut(at..at + 2 + value.len())?;
            slot[0] = code;
            slot[1] = len;
            slot[2..].copy_from_slice(value);
            at += 2 + value.len();
            Some(())
        };
        if let Some(t) = self.message_type {
            put(option::MESSAGE_TYPE, &[t.code()])?;
        }
        if let Some(ip) = self.server_id {
            put(option::SERVER_ID, &ip.octets())?;
        }
        if let Some(ip) = self.requested_ip {
            put(option::REQUESTED_IP, &ip.octets())?;
        }
        if let Some(secs) = self.lease_secs {
            put(option::LEASE_TIME, &secs.to_be_bytes())?;
        }
        if let Some(mask) = self.subnet_mask {
            put(option::SUBNET_MASK, &mask.octets())?;
        }
        if let Some(ip) = self.router {
            put(option::ROUTER, &ip.octets())?;
        }
        if !self.dns.is_empty() {
            let mut servers = [0u8; 4 * MAX_DNS_SERVERS];
            for (slot, ip) in servers.chunks_exact_mut(4).zip(&self.dns) {
                slot.copy_from_slice(&ip.octets());
            }
            put(option::DNS, &servers[..4 * self.dns.len()])?;
        }
        if let Some(mtu) = self.mtu {
            put(option::INTERFACE_MTU, &mtu.to_be_bytes())?;
        }
        *out.get_mut(at)? = option::END;
        at += 1;
        if at < MIN_BOOTP_LEN {
            out.get_mut(at..MIN_BOOTP_LEN)?.fill(option::PAD);
            at = MIN_BOOTP_LEN;
        }
        Some(at)
    }
}

/// True when the parsed frame is a message to a DHCP server (UDP 68 to 67 over
/// IPv4): what a bound VM port's client sends, and what never leaves the host.
pub fn is_to_server(key: &FlowKey) -> bool {
    key.eth_type == ethertype::IPV4
        && key.ip_proto == ipproto::UDP
        && key.l4_src == CLIENT_PORT
        && key.l4_dst == SERVER_PORT
}

/// What the server gives every VM port's client besides its address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhcpServer {
    /// The anycast gateway's MAC: source of every reply.
    pub gateway_mac: Mac,
    /// The anycast gateway's address: the router and the server's identifier.
    pub gateway_ip: Ipv4Addr,
    /// The overlay prefix length: the client's subnet.
    pub prefix_len: u8,
    /// The interface MTU the client is told (option 26).
    pub mtu: u16,
    /// DNS servers (at most [`MAX_DNS_SERVERS`]).
    pub dns: Vec<Ipv4Addr>,
    /// Lease time, seconds.
    pub lease_secs: u32,
}

/// Lease time when none is configured: a day. Leases only end when the VM's
/// binding changes, so a long lease costs nothing.
pub const DEFAULT_LEASE_SECS: u32 = 86_400;

impl DhcpServer {
    /// The answer to `request` from the client whose port is bound to `mac` with
    /// `address` as its first address: `None` for messages the server stays
    /// silent on (another MAC, a reply, a release or decline, a client that chose
    /// another server).
    pub fn answer(
        &self,
        request: &DhcpMessage,
        mac: Mac,
        address: Ipv4Addr,
    ) -> Option<DhcpMessage> {
        if request.op != BOOTREQUEST || request.chaddr != mac {
            return None;
        }
        let ours = Some(self.gateway_ip);
        let reply_type = match request.message_type? {
            MessageType::Discover => MessageType::Offer,
            MessageType::Request if request.server_id.is_some() && request.server_id != ours => {
                return None
            }
            MessageType::Request => {
                let wanted = request.requested_ip.unwrap_or(request.ciaddr);
                if wanted == address {
                    MessageType::Ack
                } else {
                    MessageType::Nak
                }
            }
            MessageType::Inform => MessageType::Ack,
            _ => return None,
        };
        let mut reply = DhcpMessage {
            flags: request.flags,
            ciaddr: request.ciaddr,
            giaddr: request.giaddr,
            message_type: Some(reply_type),
            server_id: ours,
            ..DhcpMessage::new(BOOTREPLY, request.xid, request.chaddr)
        };
        if reply_type == MessageType::Nak {
            reply.ciaddr = Ipv4Addr::UNSPECIFIED;
            return Some(reply);
        }
        if request.message_type != Some(MessageType::Inform) {
            reply.yiaddr = address;
            reply.lease_secs = Some(self.lease_secs);
        }
        reply.subnet_mask = Some(Ipv4Addr::from(prefix_mask32(self.prefix_len)));
        reply.router = ours;
        reply.dns = self.dns.iter().take(MAX_DNS_SERVERS).copied().collect();
        reply.mtu = Some(self.mtu);
        Some(reply)
    }

    /// Writes the Ethernet frame answering the request `frame` (parsed as `key`)
    /// into `out` and returns its length; `None` when there is nothing to send
    /// (see [`DhcpServer::answer`]), the frame is not a DHCP request, or `out` is
    /// smaller than [`MAX_REPLY_FRAME`].
    pub fn reply(
        &self,
        key: &FlowKey,
        frame: &[u8],
        mac: Mac,
        address: Ipv4Addr,
        out: &mut [u8],
    ) -> Option<usize> {
        if !is_to_server(key) || key.vlan_vid != 0 {
            return None;
        }
        let ip = Ipv4Packet::new_checked(frame.get(ETH_HLEN..)?).ok()?;
        if ip.is_later_fragment() {
            return None;
        }
        let udp_payload = ip.payload().get(8..)?;
        let request = DhcpMessage::parse(udp_payload).ok()?;
        let reply = self.answer(&request, mac, address)?;
        // RFC 2131 4.1: a NAK and a reply the client asked to be broadcast go to
        // everyone; a renewing or informing client (ciaddr set) is unicast at its
        // address; otherwise the reply goes to the offered address at the
        // client's MAC, which a client without an address reads off the wire.
        let broadcast = reply.message_type == Some(MessageType::Nak)
            || (request.flags & BROADCAST_FLAG != 0 && request.ciaddr.is_unspecified());
        let (dst_mac, dst_ip) = if broadcast {
            (Mac::BROADCAST, Ipv4Addr::BROADCAST)
        } else if !request.ciaddr.is_unspecified() {
            (mac, request.ciaddr)
        } else {
            (mac, reply.yiaddr)
        };
        let out = out.get_mut(..MAX_REPLY_FRAME)?;
        let message_len = reply.write(&mut out[ETH_HLEN + 28..])?;
        let udp_len = 8 + message_len;
        let ip_len = 20 + udp_len;
        out[0..6].copy_from_slice(&dst_mac.0);
        out[6..12].copy_from_slice(&self.gateway_mac.0);
        out[12..14].copy_from_slice(&ethertype::IPV4.to_be_bytes());
        let ip = &mut out[ETH_HLEN..ETH_HLEN + ip_len];
        ip[..20].fill(0);
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&u16::try_from(ip_len).ok()?.to_be_bytes());
        ip[8] = 64;
        ip[9] = ipproto::UDP;
        ip[12..16].copy_from_slice(&self.gateway_ip.octets());
        ip[16..20].copy_from_slice(&dst_ip.octets());
        fix_ipv4_checksum(ip);
        let (header, udp) = ip.split_at_mut(20);
        udp[0..2].copy_from_slice(&SERVER_PORT.to_be_bytes());
        udp[2..4].copy_from_slice(&CLIENT_PORT.to_be_bytes());
        udp[4..6].copy_from_slice(&u16::try_from(udp_len).ok()?.to_be_bytes());
        udp[6..8].fill(0);
        let mut sum = checksum_add(0, &header[12..20]);
        sum += u32::from(ipproto::UDP) + u32::try_from(udp_len).ok()?;
        let checksum = match checksum_finish(checksum_add(sum, udp)) {
            0 => 0xffff,
            c => c,
        };
        udp[6..8].copy_from_slice(&checksum.to_be_bytes());
        Some(ETH_HLEN + ip_len)
    }
}

#[cfg(test)]
mod tests;
