//! Shared test helpers: proptest strategies for canonical flow specs, a sample
//! port, and the `ovs-ofctl` locator. Tests only; never used by the library.
#![allow(dead_code)]

use openflow::flow::{ethertype, flags, ipproto, port, VLAN_PRESENT};
use openflow::wire::PortDesc;
use openflow::{Action, Field, FlowMatch, FlowSpec, Instruction, Mac};
use proptest::prelude::*;
use std::path::PathBuf;

/// `ovs-ofctl` if installed. Missing under `CI=true` is a failure, not a skip.
pub fn ovs_ofctl() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("ovs-ofctl"))
            .find(|p| p.is_file())
    });
    if found.is_none() && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("ovs-ofctl is not installed but CI=true: install Debian's openvswitch-common");
    }
    if found.is_none() {
        eprintln!("SKIPPED: ovs-ofctl not installed (apt-get install openvswitch-common)");
    }
    found
}

/// A VM's TAP as a switch describes it: port 1, `tap-vm1`, MAC 02:00:00:00:00:01,
/// 10 Gb/s.
pub fn tap_vm1_port() -> PortDesc {
    PortDesc {
        port_no: 1,
        hw_addr: Mac([2, 0, 0, 0, 0, 1]),
        name: "tap-vm1".into(),
        curr_speed: 10_000_000,
        max_speed: 10_000_000,
        ..PortDesc::default()
    }
}

fn maybe_mask(full: u128) -> impl Strategy<Value = u128> {
    prop_oneof![4 => Just(full), 1 => any::<u128>().prop_map(move |m| m & full)]
}

fn masked(field: Field) -> impl Strategy<Value = Option<(u128, u128)>> {
    let full = field.full_mask();
    proptest::option::weighted(0.4, (any::<u128>(), maybe_mask(full)))
        .prop_map(move |o| o.map(|(v, m)| (v & full, m)))
}

/// A match that satisfies OpenFlow 1.3's prerequisites, with random masks.
pub fn arb_match() -> impl Strategy<Value = FlowMatch> {
    let base = prop_oneof![
        Just((None, None)),
        Just((Some(ethertype::IPV4), None)),
        Just((Some(ethertype::IPV4), Some(ipproto::TCP))),
        Just((Some(ethertype::IPV4), Some(ipproto::UDP))),
        Just((Some(ethertype::IPV4), Some(ipproto::ICMP))),
        Just((Some(ethertype::IPV4), Some(47u8))),
        Just((Some(ethertype::IPV6), None)),
        Just((Some(ethertype::IPV6), Some(ipproto::TCP))),
        Just((Some(ethertype::IPV6), Some(ipproto::ICMPV6))),
        Just((Some(ethertype::ARP), None)),
        Just((Some(ethertype::RARP), None)),
        Just((Some(0x88cc), None)),
    ];
    let vlan = prop_oneof![
        Just(None),
        (0u16..4096).prop_map(|v| Some((u128::from(VLAN_PRESENT | v), 0x1fff))),
        Just(Some((u128::from(VLAN_PRESENT), u128::from(VLAN_PRESENT)))),
        Just(Some((0, 0x1fff))),
        (any::<u16>(), any::<u16>())
            .prop_map(|(v, m)| Some((u128::from(v & m & 0x1fff), u128::from(m & 0x1fff)))),
    ];
    (
        base,
        vlan,
        proptest::option::of(0u8..8),
        (
            masked(Field::InPort),
            masked(Field::EthSrc),
            masked(Field::EthDst),
        ),
        (masked(Field::Ipv4Src), masked(Field::Ipv4Dst)),
        (masked(Field::Ipv6Src), masked(Field::Ipv6Dst)),
        (
            masked(Field::ArpOp),
            masked(Field::ArpSpa),
            masked(Field::ArpTpa),
        ),
        (
            masked(Field::IpDscp),
            masked(Field::L4Src),
            masked(Field::L4Dst),
            masked(Field::Metadata),
        ),
    )
        .prop_map(|(base, vlan, pcp, l2, v4, v6, arp, l4)| {
            let mut m = FlowMatch::any();
            let (et, proto) = base;
            let put = |m: &mut FlowMatch, f: Field, o: Option<(u128, u128)>| {
                if let Some((v, mask)) = o {
                    if mask != 0 {
                        m.set(f, v, mask);
                    }
                }
            };
            put(&mut m, Field::InPort, l2.0);
            put(&mut m, Field::Metadata, l4.3);
            put(&mut m, Field::EthSrc, l2.1);
            put(&mut m, Field::EthDst, l2.2);
            if let Some((v, mask)) = vlan {
                m.set(Field::VlanVid, v, mask);
                if v & mask & u128::from(VLAN_PRESENT) != 0 {
                    if let Some(p) = pcp {
                        m.set(Field::VlanPcp, p.into(), 7);
                    }
                }
            }
            if let Some(et) = et {
                m.set(Field::EthType, et.into(), u128::MAX);
            }
            if let Some(p) = proto {
                m.set(Field::IpProto, p.into(), u128::MAX);
            }
            match et {
                Some(ethertype::IPV4) => {
                    put(&mut m, Field::Ipv4Src, v4.0);
                    put(&mut m, Field::Ipv4Dst, v4.1);
                    put(&mut m, Field::IpDscp, l4.0);
                }
                Some(ethertype::IPV6) => {
                    put(&mut m, Field::Ipv6Src, v6.0);
                    put(&mut m, Field::Ipv6Dst, v6.1);
                    put(&mut m, Field::IpDscp, l4.0);
                }
                Some(ethertype::ARP) => {
                    put(&mut m, Field::ArpOp, arp.0);
                    put(&mut m, Field::ArpSpa, arp.1);
                    put(&mut m, Field::ArpTpa, arp.2);
                }
                _ => {}
            }
            match proto {
                Some(ipproto::TCP) | Some(ipproto::UDP) => {
                    put(&mut m, Field::L4Src, l4.1);
                    put(&mut m, Field::L4Dst, l4.2);
                }
                Some(ipproto::ICMP) | Some(ipproto::ICMPV6) => {
                    // ICMP type and code are 8-bit on the wire and in text.
                    let eight = |o: Option<(u128, u128)>| {
                        o.map(|(v, mk)| {
                            let mk = if mk == 0xffff || mk & 0xff == 0xff {
                                0xffff
                            } else {
                                mk & 0xff
                            };
                            (v & 0xff & mk, mk)
                        })
                    };
                    put(&mut m, Field::L4Src, eight(l4.1));
                    put(&mut m, Field::L4Dst, eight(l4.2));
                }
                _ => {}
            }
            m
        })
}

/// An action list whose set-fields suit the match (transport fields by protocol).
pub fn arb_actions(m: FlowMatch) -> impl Strategy<Value = Vec<Action>> {
    let icmp = matches!(m.exact(Field::IpProto), Some(p) if p == 1 || p == 58);
    let action = prop_oneof![
        (any::<u32>(), any::<u16>()).prop_map(|(p, len)| {
            let reserved = [
                port::IN_PORT,
                port::TABLE,
                port::NORMAL,
                port::FLOOD,
                port::ALL,
                port::CONTROLLER,
                port::LOCAL,
            ];
            let p = if p % 3 == 0 {
                reserved[(p as usize / 3) % reserved.len()]
            } else {
                p % 0xffff_ff00
            };
            if p == port::CONTROLLER {
                Action::Output {
                    port: p,
                    max_len: len,
                }
            } else {
                Action::output(p)
            }
        }),
        (0usize..15, any::<u128>()).prop_map(move |(i, v)| {
            // Every field but the read-only EtherType and IP protocol, and the
            // metadata (written by write-metadata only).
            let fields: Vec<Field> = Field::ALL
                .into_iter()
                .filter(|f| !matches!(f, Field::EthType | Field::IpProto | Field::Metadata))
                .collect();
            let f = fields[i];
            let v = if icmp && matches!(f, Field::L4Src | Field::L4Dst) {
                v & 0xff
            } else {
                v
            };
            Action::set(f, v)
        }),
        prop_oneof![Just(0x8100u16), Just(0x88a8u16)].prop_map(Action::PushVlan),
        Just(Action::PopVlan),
        Just(Action::DecNwTtl),
        (0u32..=openflow::flow::GROUP_MAX).prop_map(Action::Group),
    ];
    proptest::collection::vec(action, 0..5)
}

/// A canonical flow spec: valid match, instructions `[apply-actions(non-empty)]
/// [clear-actions] [write-actions] [write-metadata] [goto-table]` (the order they
/// run in), known flag bits.
pub fn arb_spec() -> impl Strategy<Value = FlowSpec> {
    arb_match().prop_flat_map(|m| {
        (
            Just(m),
            arb_actions(m),
            (
                any::<bool>(),
                proptest::option::of(arb_actions(m)),
                proptest::option::of((any::<u64>(), prop_oneof![Just(u64::MAX), any::<u64>()])),
            ),
            proptest::option::of(0u8..255),
            (
                0u8..255,
                any::<u16>(),
                any::<u64>(),
                any::<u16>(),
                any::<u16>(),
                0u16..32,
            ),
        )
            .prop_map(
                |(
                    m,
                    actions,
                    (clear, write, metadata),
                    goto,
                    (table, prio, cookie, idle, hard, fl),
                )| {
                    let mut instructions = Vec::new();
                    if !actions.is_empty() {
                        instructions.push(Instruction::ApplyActions(actions));
                    }
                    if clear {
                        instructions.push(Instruction::ClearActions);
                    }
                    if let Some(written) = write {
                        instructions.push(Instruction::WriteActions(written));
                    }
                    if let Some((value, mask)) = metadata {
                        instructions.push(Instruction::WriteMetadata { value, mask });
                    }
                    if let Some(t) = goto {
                        instructions.push(Instruction::GotoTable(t));
                    }
                    let known = flags::SEND_FLOW_REM
                        | flags::CHECK_OVERLAP
                        | 4
                        | flags::NO_PKT_COUNTS
                        | flags::NO_BYT_COUNTS;
                    FlowSpec {
                        table_id: table,
                        priority: prio,
                        matcher: m,
                        instructions,
                        cookie,
                        idle_timeout: idle,
                        hard_timeout: hard,
                        flags: fl & known,
                    }
                },
            )
    })
}
