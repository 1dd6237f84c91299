//! Recycled buffers for large request frames.
//!
//! A produce request's frame of [`MIN_POOLED`] bytes or more is read into a buffer of its own,
//! and its record batch is stored in that buffer (see [`crate::log::PartitionLog::append_owned`]).
//! When retention or DeleteRecords drops the batch, and nothing else (an in-flight fetch
//! response) still holds the buffer, the buffer comes back here and the next large frame is
//! read into it.
//!
//! Why: memory that the process takes from the kernel afresh costs a page fault per 4 KiB on
//! its first touch, which on a virtual machine can cost more than everything else the broker
//! does for the records in it (about 3 µs a page, 80 ns per 111-byte record, on the CI
//! machine). The allocator hands freed megabyte buffers back to the kernel, so without the
//! pool a broker whose log is held at a constant size by retention pays that cost for every
//! byte produced, forever. With it, a log at its retention size stores new batches in memory
//! that is already resident.
//!
//! Bounds: the pool holds at most [`POOL_BYTES`]; a buffer nobody took by the end of the
//! housekeeping interval after the one it came back in (`log.retention.check.interval.ms`,
//! so one to two intervals) is released by [`BufferPool::shed`], so an idle broker does not
//! keep what a burst freed.

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::{Bytes, BytesMut};

/// Buffers below this size are not pooled: small frames are read into the connection's own
/// buffer, and the allocator serves small sizes from memory it keeps.
pub(crate) const MIN_POOLED: usize = 64 * 1024;

/// The most the pool holds, in buffer capacity.
pub(crate) const POOL_BYTES: usize = 64 << 20;

/// How much room may follow a batch stored in a frame's buffer: 4 KiB or an eighth of the
/// batch, whichever is more. A batch stored in place keeps its whole buffer alive, so this
/// bounds the memory a stored batch can hold beyond its own bytes (at most 1.125x for large
/// batches). The pool hands out buffers within the same bound, so that a recycled buffer's
/// batch is stored in place too.
pub(crate) fn allowed_slack(len: usize) -> usize {
    (len / 8).max(4096)
}

#[derive(Debug, Default)]
struct Inner {
    /// Free buffers by capacity, each with the tick it was returned at.
    free: BTreeMap<usize, Vec<(BytesMut, u64)>>,
    /// The capacity of every free buffer together.
    bytes: usize,
    /// Housekeeping ticks so far.
    tick: u64,
    stats: PoolStats,
}

/// What the pool did so far (for tests and diagnostics).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolStats {
    /// Buffers handed out again.
    pub reused: u64,
    /// Buffers taken back.
    pub returned: u64,
    /// Buffers offered that could not be taken back (still shared, too small, pool full).
    pub refused: u64,
    /// Buffers released to the allocator by [`BufferPool::shed`].
    pub shed: u64,
}

/// A bounded pool of large, resident buffers, shared by a cluster's connections (which take)
/// and its state task (which gives back). Its lock is a leaf: nothing else is locked while it
/// is held.
#[derive(Debug, Default)]
pub(crate) struct BufferPool {
    inner: Mutex<Inner>,
}

impl BufferPool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The lock guards plain data that every operation leaves consistent: a panic
        // elsewhere while it was held cannot have broken it.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An empty buffer with room for a frame of `len` bytes whose batch will be stored in
    /// place, or `None` when the pool has none of a fitting size.
    pub fn take(&self, len: usize) -> Option<BytesMut> {
        if len < MIN_POOLED {
            return None;
        }
        // Half the slack the log allows after a batch: the frame's header and trailer come on
        // top of the batch's own room, and the batch must still be stored in place.
        let most = len + allowed_slack(len) / 2;
        let mut inner = self.lock();
        let (&cap, list) = inner.free.range_mut(len..=most).next()?;
        let (buf, _) = list.pop()?;
        if list.is_empty() {
            inner.free.remove(&cap);
        }
        inner.bytes -= cap;
        inner.stats.reused += 1;
        Some(buf)
    }

    /// Offers the buffer behind `data` (a dropped batch) back. It is taken when `data` is the
    /// last reference to a buffer of at least [`MIN_POOLED`] bytes and the pool has room.
    pub fn give(&self, data: Bytes) {
        if data.len() < MIN_POOLED / 2 {
            return;
        }
        let Ok(mut buf) = data.try_into_mut() else {
            self.lock().stats.refused += 1;
            return;
        };
        // Back to the whole allocation: `buf` views the batch, which starts after the frame's
        // header. Asking for one byte more than the view has makes `try_reclaim` move the
        // view to the start of the allocation (it allocates nothing); it fails only when
        // the view already starts there.
        buf.clear();
        let _ = buf.try_reclaim(buf.capacity() + 1);
        let cap = buf.capacity();
        let mut inner = self.lock();
        if cap < MIN_POOLED || inner.bytes + cap > POOL_BYTES {
            inner.stats.refused += 1;
            return;
        }
        inner.bytes += cap;
        inner.stats.returned += 1;
        let tick = inner.tick;
        inner.free.entry(cap).or_default().push((buf, tick));
    }

    /// [`Self::give`] for each of `freed` (a log's [`crate::log::PartitionLog::take_freed`]).
    pub fn give_all(&self, freed: impl IntoIterator<Item = Bytes>) {
        for data in freed {
            self.give(data);
        }
    }

    /// Releases buffers that were not taken since the previous call (called every
    /// housekeeping interval).
    pub fn shed(&self) {
        let mut inner = self.lock();
        let tick = inner.tick;
        inner.tick += 1;
        if inner.free.is_empty() {
            return;
        }
        let mut released = 0usize;
        let mut expired = Vec::new();
        inner.free.retain(|&cap, list| {
            let (keep, old): (Vec<_>, Vec<_>) = std::mem::take(list).into_iter().partition(|(_, t)| *t == tick);
            *list = keep;
            released += cap * old.len();
            expired.extend(old);
            !list.is_empty()
        });
        inner.bytes -= released;
        inner.stats.shed += expired.len() as u64;
        drop(inner);
        // Freed (unmapped) after the lock is released: a connection taking a buffer meanwhile
        // does not wait for it.
        drop(expired);
    }

    /// The free buffers' total capacity.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// What the pool did so far.
    #[cfg(test)]
    pub fn stats(&self) -> PoolStats {
        self.lock().stats
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// A frame-like buffer: `len` bytes, of which the "batch" starts at `header`.
    fn frame(len: usize, header: usize) -> (Bytes, *const u8) {
        let mut buf = BytesMut::with_capacity(len);
        buf.resize(len, 7);
        let start = buf.as_ptr();
        let mut frozen = buf.freeze();
        let batch = frozen.split_off(header);
        drop(frozen);
        (batch, start)
    }

    #[test]
    fn a_dropped_batch_buffer_is_handed_out_again_whole() {
        let pool = BufferPool::default();
        let (batch, start) = frame(1 << 20, 100);
        pool.give(batch);
        assert_eq!(pool.bytes(), 1 << 20);
        let buf = pool.take((1 << 20) - 10).unwrap();
        assert_eq!(buf.as_ptr(), start, "the same allocation, from its start");
        assert!(buf.is_empty());
        assert_eq!(buf.capacity(), 1 << 20);
        assert_eq!(pool.bytes(), 0);
        assert_eq!(pool.stats(), PoolStats { reused: 1, returned: 1, refused: 0, shed: 0 });
    }

    #[test]
    fn a_batch_viewing_the_whole_buffer_is_pooled_too() {
        let pool = BufferPool::default();
        let (batch, start) = frame(MIN_POOLED, 0);
        pool.give(batch);
        assert_eq!(pool.take(MIN_POOLED).unwrap().as_ptr(), start);
    }

    #[test]
    fn shared_small_and_ill_fitting_buffers_are_not_used() {
        let pool = BufferPool::default();
        let (batch, _) = frame(1 << 20, 100);
        let fetch_response = batch.clone();
        pool.give(batch);
        assert_eq!(pool.stats().refused, 1, "still referenced by a response");
        drop(fetch_response);
        let (small, _) = frame(MIN_POOLED / 4, 0);
        pool.give(small);
        assert_eq!(pool.bytes(), 0);

        let (batch, _) = frame(1 << 20, 100);
        pool.give(batch);
        assert!(pool.take((1 << 20) + 1).is_none(), "too small for the frame");
        assert!(pool.take(1 << 19).is_none(), "far too big: the batch would be copied out of it");
        assert!(pool.take(1000).is_none(), "small frames use the connection's buffer");
        assert!(pool.take((1 << 20) - 4096).is_some());
    }

    #[test]
    fn the_pool_is_bounded_and_sheds_what_sat_unused() {
        let pool = BufferPool::default();
        for _ in 0..(POOL_BYTES >> 20) + 3 {
            pool.give(frame(1 << 20, 64).0);
        }
        assert_eq!(pool.bytes(), POOL_BYTES);
        assert_eq!(pool.stats().refused, 3);
        pool.shed();
        assert_eq!(pool.bytes(), POOL_BYTES, "returned during this interval: kept");
        pool.give(frame(2 << 20, 64).0);
        pool.shed();
        assert_eq!(pool.bytes(), 0, "nobody took them for a whole interval");
        assert_eq!(pool.stats().shed, (POOL_BYTES >> 20) as u64);
    }
}
