//! The frame reader fed in arbitrary chunk sizes (first byte), with a small maximum frame size,
//! and every complete frame decoded as a request.
#![no_main]

use bytes::BytesMut;
use kafka_protocol::frame::{self, FrameDecoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, stream)) = data.split_first() else { return };
    let chunk = (chunk as usize % 64) + 1;
    let mut decoder = FrameDecoder::new(64 * 1024);
    let mut buf = BytesMut::new();
    let mut consumed = 0usize;
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(f)) => {
                    consumed += 4 + f.len();
                    let _ = frame::decode_request(f);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(buf.capacity() <= 64 * 1024 + 4 + 4096 + stream.len(), "reserved more than a frame");
    }
    assert!(consumed <= stream.len());
});
