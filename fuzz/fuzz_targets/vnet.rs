//! Fuzzes the virtio-net header path with arbitrary bytes (the first ten are the
//! header, the rest the frame, as a TAP hands them over): checking, finishing a
//! partial checksum, segmenting and coalescing may never panic, and segments of an
//! accepted super-frame must be complete packets that coalesce again.
#![no_main]

use dataplane_core::offload::{
    check, finish_partial_checksum, headers, l4_checksum_ok, Coalescer, Segments, VnetHdr,
    VNET_HDR_LEN,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((raw, body)) = data.split_first_chunk::<VNET_HDR_LEN>() else {
        return;
    };
    let hdr = VnetHdr::parse(raw);
    let mut frame = body.to_vec();
    if check(&hdr, &frame).is_err() {
        return;
    }
    if hdr.needs_csum() && !hdr.is_gso() {
        assert!(finish_partial_checksum(&mut frame, hdr.csum_start, hdr.csum_offset));
        return;
    }
    let Some(mut segments) = Segments::new(&frame, &hdr) else {
        return;
    };
    let mut out = vec![0u8; 70_000];
    let mut coalescer = Coalescer::default();
    let mut count = 0usize;
    while let Some(n) = segments.next_into(&mut out) {
        count += 1;
        assert!(count <= frame.len() + 1);
        let seg = &out[..n];
        let h = headers(seg).expect("a segment parses");
        assert!(l4_checksum_ok(seg, &h));
        let _ = coalescer.push(0, seg);
    }
    let _ = coalescer.take();
});
