//! cargo-fuzz target: `kafka_protocol_fuzz::response_decode` (the body lives in `fuzz/src/lib.rs`, shared
//! with the stable regression test `tests/tests/fuzz_regressions.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kafka_protocol_fuzz::response_decode(data));
