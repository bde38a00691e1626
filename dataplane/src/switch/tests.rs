//! Tests of the switch: packet-in metadata, the loop over real TAPs, tunnels.

use super::output::actions_keep_offload;
use super::packet_in::{packet_in_channel, PacketInMeta};
use dataplane_core::packet_io::PacketInReason;
use openflow::flow::Action;

fn meta() -> PacketInMeta {
    PacketInMeta {
        in_port: 1,
        reason: PacketInReason::NoMatch,
        table_id: 0,
        cookie: 0,
        metadata: 0,
    }
}

#[test]
fn only_rewrites_outside_the_partial_checksum_keep_a_super_frame_whole() {
    use openflow::flow::Field;
    let keeps = [
        Action::set(Field::EthSrc, 0x0200_0000_0001),
        Action::set(Field::EthDst, 0x0200_0000_0002),
        Action::set(Field::IpDscp, 10),
        Action::DecNwTtl,
        Action::output(1),
    ];
    assert!(actions_keep_offload(&keeps));
    for breaks in [
        Action::set(Field::Ipv4Dst, 1),
        Action::set(Field::Ipv6Src, 1),
        Action::set(Field::L4Dst, 80),
        Action::PushVlan(0x8100),
        Action::PopVlan,
        Action::output(openflow::flow::port::CONTROLLER),
    ] {
        let mut actions = keeps.to_vec();
        actions.insert(2, breaks);
        assert!(!actions_keep_offload(&actions), "{breaks:?}");
    }
}

#[test]
fn packet_in_channel_sends_whole_frames_drops_when_full_and_reuses_buffers() {
    let (tx, rx) = packet_in_channel(2);
    let frame = [7u8; 100];
    assert!(tx.send(meta(), &frame));
    assert!(tx.send(meta(), &frame));
    // Queue and pool exhausted: the third is dropped, not waited for.
    assert!(!tx.send(meta(), &frame));
    let first = rx.events.try_recv().unwrap();
    assert_eq!((first.total_len, first.data.len()), (100, 100));
    let second = rx.events.try_recv().unwrap();
    // Unbuffered: the whole frame, whatever `max_len` the output had.
    assert_eq!((second.total_len, second.data.len()), (100, 100));
    let ptr = first.data.as_ptr();
    rx.recycle(first.data);
    assert!(tx.send(meta(), &frame));
    // The recycled buffer carries the next frame.
    assert_eq!(rx.events.try_recv().unwrap().data.as_ptr(), ptr);
}

#[test]
fn a_switch_with_two_workers_keeps_a_histogram_each_and_stops_whole() {
    use super::Switch;
    use std::sync::atomic::AtomicBool;
    let pipeline = dataplane_core::pipeline::Pipeline::new(1);
    let mut switch = Switch::new(super::test_switch::no_ports(7, pipeline, 2)).unwrap();
    let handle = switch.handle();
    assert_eq!(handle.shared.stage_latency.len(), 2);
    assert_eq!(switch.helpers.len(), 1);
    let running = std::thread::spawn(move || {
        let result = switch.run(&AtomicBool::new(false));
        (result, switch)
    });
    // Worker 0 answers while worker 1 runs beside it.
    handle.sync().unwrap();
    assert_eq!(handle.tunnel_status().unwrap(), Vec::new());
    handle.stop();
    let (result, switch) = running.join().unwrap();
    result.unwrap();
    assert_eq!(
        switch.helpers.len(),
        1,
        "worker 1 came back from its thread"
    );
}

#[test]
fn each_output_to_the_controller_reports_its_own_entry_and_metadata() {
    use super::packet_in::{packet_in_meta, Classified};
    use dataplane_core::pipeline::{Classification, Pipeline};
    use openflow::flow::{port, FlowKey, FlowMatch, FlowSpec, Instruction};
    let to_controller = || Instruction::ApplyActions(vec![Action::output(port::CONTROLLER)]);
    // Table 0 sends to the controller, tags the packet and goes on; table 1's
    // table-miss entry sends it again.
    let first = FlowSpec {
        cookie: 0xa,
        instructions: vec![
            to_controller(),
            Instruction::WriteMetadata {
                value: 0x42,
                mask: u64::MAX,
            },
            Instruction::GotoTable(1),
        ],
        ..FlowSpec::new(0, 10, FlowMatch::any(), vec![])
    };
    let miss = FlowSpec {
        cookie: 0xb,
        instructions: vec![to_controller()],
        ..FlowSpec::new(1, 0, FlowMatch::any(), vec![])
    };
    let pipeline = Pipeline::from_flows(vec![first, miss]).unwrap();
    let mut c = Classification::default();
    pipeline.classify(&FlowKey::default(), &mut c);
    let classified = Classified::new(&pipeline, &c);
    let at = |nth| {
        let m = packet_in_meta(Some(classified), 7, nth);
        (m.in_port, m.reason, m.table_id, m.cookie, m.metadata)
    };
    let table_0 = (7, PacketInReason::Action, 0, 0xa, 0);
    let table_1 = (7, PacketInReason::NoMatch, 1, 0xb, 0x42);
    // Each output is reported by its place, whatever ran before it.
    assert_eq!([at(1), at(0)], [table_1, table_0]);
    let out = packet_in_meta(None, 7, 0);
    assert_eq!(
        (out.table_id, out.cookie, out.metadata),
        (0xff, u64::MAX, 0)
    );
}

#[test]
fn tunnel_status_gathers_the_peers_of_every_worker_in_configuration_order() {
    use super::Switch;
    use crate::tunnel::{PeerConfig, Tunnels};
    use boringtun::x25519::{PublicKey, StaticSecret};
    use std::sync::atomic::AtomicBool;
    let peers: Vec<PeerConfig> = (0..3u8)
        .map(|i| PeerConfig {
            port: 10 + u32::from(i),
            name: format!("host-{i}"),
            public_key: PublicKey::from(&StaticSecret::from([i + 3; 32])).to_bytes(),
            endpoint: None,
            keepalive: None,
        })
        .collect();
    let listen = "127.0.0.1:0".parse().unwrap();
    let tunnels =
        Tunnels::for_workers(listen, StaticSecret::from([1; 32]), peers, 1420, 2).unwrap();
    let mut params = super::test_switch::no_ports(8, dataplane_core::pipeline::Pipeline::new(1), 2);
    params.tunnels = Some(tunnels);
    let mut switch = Switch::new(params).unwrap();
    assert!(switch.tunnels.as_ref().unwrap().owns(0));
    assert!(switch.helpers[0].tunnels.as_ref().unwrap().owns(1));
    let handle = switch.handle();
    let running = std::thread::spawn(move || switch.run(&AtomicBool::new(false)));
    let names: Vec<String> = handle
        .tunnel_status()
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["host-0", "host-1", "host-2"]);
    let shared: Vec<u32> = handle
        .shared
        .tunnels
        .lock()
        .unwrap()
        .iter()
        .map(|p| p.port)
        .collect();
    assert_eq!(
        shared,
        [10, 11, 12],
        "the status /metrics reads lists every peer"
    );
    handle.stop();
    running.join().unwrap().unwrap();
}
