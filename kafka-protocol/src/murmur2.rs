//! Java's murmur2, which the Java client's default partitioner uses for keyed records.
//! Records partitioned with it land where the Java client (and librdkafka configured with
//! `partitioner=murmur2_random`) puts them.

/// Kafka's murmur2 hash (seed `0x9747b28c`), bit-for-bit as `org.apache.kafka.common.utils.Utils.murmur2`.
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes(<[u8; 4]>::try_from(c).unwrap_or_default());
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, b) in tail.iter().enumerate().rev() {
            h ^= (*b as u32) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition the Java client's default partitioner picks for `key`:
/// `(murmur2(key) & 0x7fffffff) % partitions`. Returns 0 when `partitions` is 0 or negative.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    if partitions <= 0 {
        return 0;
    }
    (murmur2(key) & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from the Java client's UtilsTest (DESIGN-NOTES section 4).
    #[test]
    fn java_vectors() {
        let cases: &[(&str, i32)] = &[
            ("21", -973932308),
            ("foobar", -790332482),
            ("a-little-bit-long-string", -985981536),
            ("a-little-bit-longer-string", -1486304829),
            ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
            ("abc", 479470107),
        ];
        for (input, want) in cases {
            assert_eq!(murmur2(input.as_bytes()), *want, "murmur2({input:?})");
        }
    }

    #[test]
    fn partition_is_positive_modulo() {
        // murmur2("21") is negative; the mask makes it positive before the modulo.
        let p = partition_for_key(b"21", 6);
        assert_eq!(p, ((-973932308i32) & 0x7fff_ffff) % 6);
        assert!((0..6).contains(&p));
        assert_eq!(partition_for_key(b"x", 0), 0);
    }
}
