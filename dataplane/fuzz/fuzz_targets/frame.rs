//! Fuzzes the frame parser and the in-place action executor with arbitrary bytes:
//! neither may panic, and what parses must keep its layout inside the frame.
#![no_main]

use dataplane::exec::{execute, FrameBuf};
use dataplane::packet::parse;
use libfuzzer_sys::fuzz_target;
use openflow::flow::{Action, Field};

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
    execute(&actions, &mut frame, &mut layout, |_, bytes| {
        let _ = parse(bytes, 2);
    });
});
