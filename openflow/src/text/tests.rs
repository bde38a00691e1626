//! Unit tests of the flow text syntax: printing, parsing and their round trips.

use super::*;
use crate::flow::*;
use format::write_duration;

fn spec(m: FlowMatch, actions: Vec<Action>) -> FlowSpec {
    FlowSpec::new(0, 100, m, actions)
}

#[test]
fn formats_the_brief_example() {
    let m = FlowMatch::any()
        .with(Field::EthType, 0x800)
        .with(Field::Ipv4Dst, 0x6440_0002);
    let s = spec(
        m,
        vec![
            Action::set(Field::EthDst, 0x0200_0000_0002),
            Action::output(2),
        ],
    );
    let stats = FlowStats {
        duration_sec: 1,
        duration_nsec: 234_000_000,
        packet_count: 3,
        byte_count: 294,
        idle_age: None,
    };
    assert_eq!(
        format_flow_stats(&s, &stats),
        "cookie=0x0, duration=1.234s, table=0, n_packets=3, n_bytes=294, \
         priority=100,ip,nw_dst=100.64.0.2 actions=set_field:02:00:00:00:00:02->eth_dst,output:2"
    );
    assert_eq!(
        format_flow(&s),
        "priority=100,ip,nw_dst=100.64.0.2 actions=set_field:02:00:00:00:00:02->eth_dst,output:2"
    );
}

#[test]
fn durations_print_like_ovs() {
    let mut s = String::new();
    write_duration(&mut s, 5, 0);
    write_duration(&mut s, 5, 120_000_000);
    write_duration(&mut s, 5, 123_456_700);
    assert_eq!(s, "5s5.120s5.1234567s");
}

#[test]
fn parses_the_brief_example() {
    let f = parse_flow(
        "table=0,priority=100,ip,nw_dst=100.64.0.0/10,actions=mod_dl_dst:02:00:00:00:00:02,output:3",
    )
    .unwrap();
    assert_eq!(f.priority, 100);
    assert_eq!(
        f.matcher,
        FlowMatch::any()
            .with(Field::EthType, 0x800)
            .with_prefix32(Field::Ipv4Dst, 0x6440_0000, 10)
    );
    assert_eq!(
        f.instructions,
        vec![Instruction::ApplyActions(vec![
            Action::set(Field::EthDst, 0x0200_0000_0002),
            Action::output(3)
        ])]
    );
}

#[test]
fn errors_name_line_column_and_token() {
    let e = parse_flows("# comment\n\npriority=1,ip,nw_dst=1.2.3,actions=drop\n").unwrap_err();
    assert_eq!((e.line, e.column), (3, 15));
    assert_eq!(e.token, "nw_dst=1.2.3");
    let e = parse_flow("priority=1,actions=output:1,resubmit(,3)").unwrap_err();
    assert_eq!(e.token, "resubmit(,3)");
    assert!(e.message.contains("unsupported action"), "{e}");
    let e = parse_flow("tcp_dst=80,actions=drop").unwrap_err();
    assert_eq!(e.token, "tcp_dst=80");
    assert!(e.message.contains("prerequisite"), "{e}");
    let e = parse_flow("udp,tcp_dst=80,actions=drop").unwrap_err();
    assert!(e.message.contains("nw_proto=6"), "{e}");
    let e = parse_flow("ip,arp,actions=drop").unwrap_err();
    assert_eq!(e.token, "arp");
    let e = parse_flow("ip").unwrap_err();
    assert!(e.message.contains("missing `actions=`"));
    let e = parse_flow("ip,actions=output:1,goto_table:1,output:2").unwrap_err();
    assert_eq!(e.token, "output:2");
    let e = parse_flow("ip,actions=meter:1").unwrap_err();
    assert!(e.message.contains("meters are not supported"), "{e}");
    let e = parse_flow("ip,actions=write_actions(output:1),write_actions(drop)").unwrap_err();
    assert!(e.message.contains("given twice"), "{e}");
    let e = parse_flow("ip,actions=write_metadata:0x1/0x1/0x1").unwrap_err();
    assert_eq!(e.token, "write_metadata:0x1/0x1/0x1");
    let e = parse_flow("ip,actions=set_field:1->eth_type").unwrap_err();
    assert!(e.message.contains("read-only"), "{e}");
}

#[test]
fn defaults_and_keywords() {
    let f = parse_flow(
        "cookie=0x12 idle_timeout=10, hard_timeout=20 send_flow_rem check_overlap \
         in_port=LOCAL,dl_vlan=5,dl_vlan_pcp=3 actions=pop_vlan,IN_PORT,CONTROLLER:128,dec_ttl,goto_table:2",
    )
    .unwrap();
    assert_eq!(f.priority, DEFAULT_PRIORITY);
    assert_eq!(f.cookie, 0x12);
    assert_eq!((f.idle_timeout, f.hard_timeout), (10, 20));
    assert_eq!(f.flags, flags::SEND_FLOW_REM | flags::CHECK_OVERLAP);
    assert_eq!(f.matcher.exact(Field::VlanVid), Some(0x1005));
    assert_eq!(f.matcher.exact(Field::VlanPcp), Some(3));
    assert_eq!(f.matcher.exact(Field::InPort), Some(port::LOCAL.into()));
    assert_eq!(
        format_flow(&f),
        "cookie=0x12, idle_timeout=10, hard_timeout=20, send_flow_rem check_overlap \
         in_port=LOCAL,dl_vlan=5,dl_vlan_pcp=3 actions=pop_vlan,IN_PORT,CONTROLLER:128,dec_ttl,goto_table:2"
    );
    let f = parse_flow("priority=0 actions=drop").unwrap();
    assert!(f.instructions.is_empty());
    assert_eq!(format_flow(&f), "priority=0 actions=drop");
}

#[test]
fn addresses_take_masks_as_addresses_or_prefix_lengths() {
    use super::values::{parse_ipv4_masked, parse_ipv6_masked};
    assert_eq!(
        parse_ipv4_masked("10.1.2.3"),
        Some((0x0a01_0203, 0xffff_ffff))
    );
    assert_eq!(
        parse_ipv4_masked("10.0.0.0/8"),
        Some((0x0a00_0000, 0xff00_0000))
    );
    assert_eq!(parse_ipv4_masked("10.0.0.0/0"), Some((0x0a00_0000, 0)));
    assert_eq!(
        parse_ipv4_masked("10.0.0.0/32"),
        Some((0x0a00_0000, 0xffff_ffff))
    );
    assert_eq!(
        parse_ipv4_masked("10.0.0.0/255.255.0.0"),
        Some((0x0a00_0000, 0xffff_0000))
    );
    assert_eq!(parse_ipv4_masked("10.0.0.0/33"), None);
    assert_eq!(parse_ipv4_masked("10.0.0.0/1.2"), None);
    assert_eq!(parse_ipv4_masked("10.0.0/8"), None);
    assert_eq!(parse_ipv6_masked("::1"), Some((1, u128::MAX)));
    assert_eq!(parse_ipv6_masked("::/0"), Some((0, 0)));
    assert_eq!(parse_ipv6_masked("::1/128"), Some((1, u128::MAX)));
    assert_eq!(
        parse_ipv6_masked("2001:db8::/32"),
        Some((0x2001_0db8 << 96, 0xffff_ffff << 96))
    );
    assert_eq!(parse_ipv6_masked("::/ffff::"), Some((0, 0xffff << 112)));
    assert_eq!(parse_ipv6_masked("::/129"), None);
    assert_eq!(parse_ipv6_masked("::/1.2.3.4"), None);
}

#[test]
fn write_actions_clear_actions_and_metadata_print_and_parse_back() {
    let text = "table=1, priority=5,metadata=0x10/0xf0,ip \
                actions=output:3,clear_actions,write_actions(set_field:10.0.0.1->ip_dst,group:7),\
                write_metadata:0x20/0xf0,goto_table:4";
    let f = parse_flow(text).unwrap();
    assert_eq!(f.matcher.get(Field::Metadata), Some((0x10, 0xf0)));
    assert_eq!(
        f.instructions,
        vec![
            Instruction::ApplyActions(vec![Action::output(3)]),
            Instruction::ClearActions,
            Instruction::WriteActions(vec![
                Action::set(Field::Ipv4Dst, 0x0a00_0001),
                Action::Group(7)
            ]),
            Instruction::WriteMetadata {
                value: 0x20,
                mask: 0xf0
            },
            Instruction::GotoTable(4),
        ]
    );
    let printed = format_flow(&f);
    assert_eq!(
        printed,
        "table=1, priority=5,ip,metadata=0x10/0xf0 actions=output:3,clear_actions,\
         write_actions(set_field:10.0.0.1->ip_dst,group:7),write_metadata:0x20/0xf0,goto_table:4"
    );
    assert_eq!(parse_flow(&printed).unwrap(), f);
}
