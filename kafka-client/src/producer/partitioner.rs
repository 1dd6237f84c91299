//! Choosing a partition: explicit, keyed (Java's murmur2), or uniform sticky (KIP-794).

use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use rand::Rng;

/// Custom partitioning logic, consulted for every record without an explicit partition.
///
/// Return `None` to fall back to the built-in behaviour (murmur2 for keyed records, uniform
/// sticky for the others).
///
/// ```
/// use kafka_client::Partitioner;
///
/// /// Sends records whose key starts with "vip-" to partition 0.
/// struct Vip;
/// impl Partitioner for Vip {
///     fn partition(&self, _topic: &str, key: Option<&[u8]>, _value: Option<&[u8]>, _partitions: i32) -> Option<i32> {
///         key.filter(|k| k.starts_with(b"vip-")).map(|_| 0)
///     }
/// }
/// assert_eq!(Vip.partition("t", Some(b"vip-1"), None, 6), Some(0));
/// ```
pub trait Partitioner: Send + Sync + 'static {
    /// The partition for a record of `topic`, which has `partitions` partitions (at least 1).
    /// A result outside `0..partitions` fails the send with an error.
    fn partition(&self, topic: &str, key: Option<&[u8]>, value: Option<&[u8]>, partitions: i32) -> Option<i32>;
}

/// The uniform sticky state of one topic (KIP-794): records without a key go to one partition
/// until `batch.size` bytes have gone there, then to another chosen at random, so batches
/// fill up instead of spreading thin, and every partition gets the same share over time.
#[derive(Debug)]
pub(crate) struct Sticky {
    partition: AtomicI32,
    bytes: AtomicUsize,
}

impl Sticky {
    pub fn new() -> Self {
        Sticky { partition: AtomicI32::new(-1), bytes: AtomicUsize::new(0) }
    }

    /// The partition for an unkeyed record of `size` bytes. `available` says whether a
    /// partition currently has a leader; partitions without one are avoided when possible.
    pub fn next(&self, size: usize, partitions: i32, batch_size: usize, available: impl Fn(i32) -> bool) -> i32 {
        let current = self.partition.load(Ordering::Relaxed);
        if current >= 0 && current < partitions {
            let before = self.bytes.fetch_add(size, Ordering::Relaxed);
            if before < batch_size.max(1) {
                return current;
            }
        }
        // Switch: a random partition other than the current one, preferring available ones.
        let chosen = choose(current, partitions, &available);
        if self.partition.compare_exchange(current, chosen, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            self.bytes.store(size, Ordering::Relaxed);
            chosen
        } else {
            // Another sender switched first: follow it.
            self.partition.load(Ordering::Relaxed).clamp(0, partitions.max(1) - 1)
        }
    }
}

fn choose(current: i32, partitions: i32, available: &impl Fn(i32) -> bool) -> i32 {
    if partitions <= 1 {
        return 0;
    }
    let mut rng = rand::thread_rng();
    // A few random draws favouring available partitions; fall back to any other one.
    for _ in 0..8 {
        let p = rng.gen_range(0..partitions);
        if p != current && available(p) {
            return p;
        }
    }
    if current >= 0 && available(current) {
        return current;
    }
    let p = rng.gen_range(0..partitions - 1);
    if p >= current && current >= 0 {
        p + 1
    } else {
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sticky_fills_a_batch_then_moves_and_spreads_uniformly() {
        let s = Sticky::new();
        let mut counts = [0usize; 4];
        let mut switches = 0;
        let mut last = -1;
        for _ in 0..40_000 {
            let p = s.next(100, 4, 1000, |_| true);
            if p != last {
                switches += 1;
                // After a switch the partition stays for a whole batch (10 records of 100 B).
                last = p;
            }
            counts[p as usize] += 1;
        }
        assert!((3_000..=4_001).contains(&switches), "{switches}");
        for c in counts {
            assert!((8_000..12_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn sticky_avoids_unavailable_partitions() {
        let s = Sticky::new();
        // With only partition 2 available, the sticky partition settles there and stays.
        let on_two = (0..1000).filter(|_| s.next(1000, 3, 1000, |p| p == 2) == 2).count();
        assert!(on_two > 990, "{on_two}");
    }
}
