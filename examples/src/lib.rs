//! Shared code of the examples and command-line tools.

pub mod cli;
pub mod compat;
pub mod perf;
pub mod progress;

/// The fixture records of the interop checks: record `i` has key `key-{i % 50}`, a JSON value
/// carrying `i`, headers `trace` (i, 8 bytes big-endian) and `empty` (null). Shared by
/// `interop-produce` and the codec round-trip test, so both check the same shape.
pub mod fixture {
    /// Key, value and `trace` header value of record `i`.
    pub fn parts(i: u64) -> (String, String, [u8; 8]) {
        let key = format!("key-{}", i % 50);
        let value = format!("{{\"n\": {i}, \"text\": \"{}\"}}", "abc".repeat((i % 20) as usize));
        (key, value, i.to_be_bytes())
    }
}
