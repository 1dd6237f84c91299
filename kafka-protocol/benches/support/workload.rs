//! The record-batch workload shared by `benches/records.rs` and `examples/records_profile.rs`
//! (docs/PERFORMANCE.md: half the values random bytes, half a repeated JSON-like text).

/// Records per batch.
pub const RECORDS: usize = 1000;
/// Bytes per value.
pub const VALUE_SIZE: usize = 100;
/// The first record's timestamp.
pub const BASE_TS: i64 = 1_700_000_000_000;

/// 1000 values: even ones pseudo-random bytes, odd ones slices of a repeated JSON-like text.
pub fn values() -> Vec<Vec<u8>> {
    let text = br#"{"user_id":12345,"event":"page_view","path":"/products/widget","ok":true},"#.repeat(4);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..RECORDS)
        .map(|i| {
            if i % 2 == 0 {
                (0..VALUE_SIZE)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect()
            } else {
                let start = (i * 7) % (text.len() - VALUE_SIZE);
                text[start..start + VALUE_SIZE].to_vec()
            }
        })
        .collect()
}

/// Hands a record's offset and timestamp to `black_box`, so the compiler cannot drop their
/// computation, as it did when the decode loops read only key and value: a consumer reads all
/// four. Returns 0, to be added to what the loop returns.
#[inline(always)]
pub fn touch(offset: i64, timestamp: i64) -> usize {
    std::hint::black_box((offset, timestamp));
    0
}
