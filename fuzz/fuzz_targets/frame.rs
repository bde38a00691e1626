//! Fuzzes the frame parser and the in-place action executor with arbitrary bytes:
//! neither may panic, and what parses must keep its layout inside the frame.
#![no_main]

use dataplane_core::exec::{execute, FrameBuf};
use dataplane_core::packet::parse;
use dataplane_core::pipeline::Pipeline;
use libfuzzer_sys::fuzz_target;
use openflow::flow::{Action, Bucket, Field, GroupSpec, GroupType};

fuzz_target!(|data: &[u8]| {
    let Ok((key, mut layout)) = parse(data, 1) else { return };
    assert!(layout.l3 <= data.len());
    if let Some(l4) = layout.l4 {
        assert!(l4 <= data.len());
    }
    let mut frame = FrameBuf::with_capacity(data.len());
    frame.fill(data);
    let actions = [
        Action::set(Field::Ipv4Dst, u128::from(key.ipv4_src)),
        Action::set(Field::L4Dst, 4242),
        Action::set(Field::EthDst, 0x0200_0000_0001),
        Action::DecNwTtl,
        Action::PushVlan(0x8100),
        Action::set(Field::VlanVid, 0x1005),
        Action::output(1),
        Action::PopVlan,
        Action::PopVlan,
        Action::output(2),
    ];
    let no_groups = dataplane_core::pipeline::GroupTable::default();
    execute(&actions, &mut frame, &mut layout, &no_groups, |_, bytes| {
        let _ = parse(bytes, 2);
    });
    // The same actions again inside an all group's buckets, which must leave the
    // frame as they found it for the next bucket.
    let mut pipeline = Pipeline::default();
    let group = GroupSpec {
        group_id: 1,
        group_type: GroupType::All,
        buckets: vec![Bucket::new(actions.to_vec()), Bucket::new(actions.to_vec())],
    };
    if pipeline.add_group(group, std::time::Instant::now()).is_err() {
        return;
    }
    let before = frame.bytes().to_vec();
    let grouped = [Action::Group(1), Action::output(3)];
    execute(&grouped, &mut frame, &mut layout, pipeline.groups(), |p, bytes| {
        if p == 3 {
            assert_eq!(bytes, &before[..]);
        }
        let _ = parse(bytes, 2);
    });
});
