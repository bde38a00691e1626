//! Fuzz target: arbitrary bytes through framing and decoding. It must never panic,
//! every decode failure must yield an error reply that encodes, and whatever decodes
//! must survive `decode(encode(m)) == m`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use openflow::wire::{decode, encode, error_reply_for, frame_len, FrameError};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    loop {
        match frame_len(rest) {
            Ok(Some(n)) => {
                let (frame, tail) = rest.split_at(n);
                match decode(frame) {
                    Ok((xid, m)) => {
                        let bytes = encode(&m, xid).expect("a decoded message re-encodes");
                        assert_eq!(decode(&bytes).expect("re-decodes"), (xid, m));
                    }
                    Err(e) => {
                        let reply = error_reply_for(&e, frame);
                        encode(&reply, e.xid).expect("error replies encode");
                    }
                }
                rest = tail;
            }
            Ok(None) | Err(FrameError::BadLength(_)) => break,
        }
    }
    let _ = openflow::text::parse_flows(&String::from_utf8_lossy(data));
});
