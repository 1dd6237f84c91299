//! Magic 2 record batches: the builder (producer hot path), the reader (consumer hot path) and
//! in-place patching of sealed batches.

use bytes::{Bytes, BytesMut};

use super::{
    attributes, i32_at, offsets, put_at, ProducerState, RecordBatchHeader, TimestampType, LOG_OVERHEAD, MAGIC_V2,
    NO_PARTITION_LEADER_EPOCH, NO_TIMESTAMP, RECORD_BATCH_OVERHEAD,
};
use crate::compression::{self, Compression};
use crate::error::{ProtocolError, Result};
use crate::primitives::{decode_uvarint, decode_uvarlong};

/// The smallest possible record: length, attributes, timestamp delta, offset delta, key length,
/// value length and header count, one byte each.
const MIN_RECORD_SIZE: usize = 7;

/// Largest value of `batchLength`, hence of the bytes after the first 12 of a batch.
const MAX_BATCH_LENGTH: usize = i32::MAX as usize;

/// Capacity of [`RecordBatchBuilder::new`]'s buffer: Kafka's default `batch.size`.
const DEFAULT_CAPACITY: usize = 16 * 1024;

/// Decodes an unsigned 32-bit varint, with the one- and two-byte cases inline (record lengths
/// of 64-8191 bytes and deltas below 8192 take two); longer ones go through the checked
/// decoder in `primitives`, which rejects overlong encodings.
#[inline(always)]
fn uvarint32(b: &[u8]) -> Result<(u32, usize)> {
    match *b {
        [x, ..] if x < 0x80 => Ok((u32::from(x), 1)),
        [x, y, ..] if y < 0x80 => Ok((u32::from(x & 0x7f) | (u32::from(y) << 7), 2)),
        _ => decode_uvarint(b),
    }
}

/// Decodes an unsigned 64-bit varint (see [`uvarint32`]).
#[inline(always)]
fn uvarint64(b: &[u8]) -> Result<(u64, usize)> {
    match *b {
        [x, ..] if x < 0x80 => Ok((u64::from(x), 1)),
        [x, y, ..] if y < 0x80 => Ok((u64::from(x & 0x7f) | (u64::from(y) << 7), 2)),
        _ => decode_uvarlong(b),
    }
}

#[inline(always)]
fn unzigzag32(u: u32) -> i32 {
    ((u >> 1) as i32) ^ -((u & 1) as i32)
}

#[inline(always)]
fn unzigzag64(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Reads a varint-length-prefixed nullable byte string (-1 = null). Works on the zig-zag form
/// directly: even means a length, 1 means null, any other odd value is a negative length.
#[inline(always)]
fn read_nullable<'a>(b: &'a [u8], what: &'static str) -> Result<(Option<&'a [u8]>, &'a [u8])> {
    let (raw, n) = uvarint32(b)?;
    let b = b.get(n..).unwrap_or_default();
    if raw & 1 == 0 {
        match b.split_at_checked((raw >> 1) as usize) {
            Some((v, rest)) => Ok((Some(v), rest)),
            None => Err(ProtocolError::InvalidLength { what, length: i64::from(raw >> 1) }),
        }
    } else if raw == 1 {
        Ok((None, b))
    } else {
        Err(ProtocolError::InvalidLength { what, length: i64::from(unzigzag32(raw)) })
    }
}

/// Bytes a record's fast parse reads up front: its length, attributes, timestamp delta, offset
/// delta and key length take at most 13 bytes when every varint is at most three bytes long.
const FAST_HEAD: usize = 16;

/// Decodes a varint of at most three bytes (lengths below 1 MiB, timestamp deltas within
/// about 17 minutes), or `None` for a longer or truncated one (the fast parse then declines).
/// Accepts what [`uvarint32`] accepts, with the same value.
#[inline(always)]
fn short_uvarint(b: &[u8]) -> Option<(u32, usize)> {
    match *b {
        [x, ..] if x < 0x80 => Some((u32::from(x), 1)),
        [x, y, ..] if y < 0x80 => Some((u32::from(x & 0x7f) | (u32::from(y) << 7), 2)),
        [x, y, z, ..] if z < 0x80 => Some((u32::from(x & 0x7f) | (u32::from(y & 0x7f) << 7) | (u32::from(z) << 14), 3)),
        _ => None,
    }
}

/// [`read_nullable`] for the fast parse, from the zig-zag length already decoded: `None` for
/// a negative length other than -1 or one past the end of `b`.
#[inline(always)]
fn fast_nullable(raw: u32, b: &[u8]) -> Option<(Option<&[u8]>, &[u8])> {
    if raw & 1 == 0 {
        let (v, rest) = b.split_at_checked((raw >> 1) as usize)?;
        Some((Some(v), rest))
    } else if raw == 1 {
        Some((None, b))
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding helpers for the append path
// ---------------------------------------------------------------------------------------------

#[inline(always)]
fn zigzag32(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

#[inline(always)]
fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Bytes of an unsigned varint. Branches rather than arithmetic: within a batch the sizes
/// repeat, so the branches are predicted and cost less than a bit scan and a division.
#[inline(always)]
fn uvarint_size(v: u64) -> usize {
    if v < 1 << 7 {
        1
    } else if v < 1 << 14 {
        2
    } else {
        uvarint_size_slow(v)
    }
}

#[inline(never)]
fn uvarint_size_slow(v: u64) -> usize {
    ((70 - (v | 1).leading_zeros()) / 7) as usize
}

/// Bytes of the zig-zag varint length prefix of a non-negative length.
#[inline(always)]
fn len_prefix_size(len: usize) -> usize {
    uvarint_size((len as u64) << 1)
}

/// Bytes of a nullable byte string with its length prefix.
#[inline(always)]
fn nullable_size(v: Option<&[u8]>) -> usize {
    match v {
        None => 1,
        Some(b) => len_prefix_size(b.len()).saturating_add(b.len()),
    }
}

/// Size of a record's body (everything after its length prefix).
#[inline(always)]
fn body_size(
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[Header<'_>],
) -> usize {
    let mut n = 1 // attributes
        + uvarint_size(zigzag64(timestamp_delta))
        + uvarint_size(u64::from(zigzag32(offset_delta)))
        + uvarint_size((headers.len() as u64) << 1);
    n = n.saturating_add(nullable_size(key)).saturating_add(nullable_size(value));
    for h in headers {
        n = n
            .saturating_add(len_prefix_size(h.key.len()).saturating_add(h.key.len()))
            .saturating_add(nullable_size(h.value));
    }
    n
}

/// Values below this take at most three bytes as a varint.
const VARINT3_LIMIT: u64 = 1 << 21;

/// A varint of `v < 2^21` encoded into the low bytes of a `u64`, with its length (1 to 3).
/// Within a batch the widths repeat, so the branches are predicted.
#[inline(always)]
fn varint3(v: u32) -> (u64, usize) {
    // With v = a + 128 b + 16384 c (each below 128), the bytes a | 0x80, b | 0x80, c read
    // as a little-endian number are v + 128 b + 0x80 + 49152 c + 0x8000: additions of
    // masked copies of v, no shifts.
    let v = u64::from(v);
    if v < 1 << 7 {
        (v, 1)
    } else if v < 1 << 14 {
        (v + (v & 0x3f80) + 0x80, 2)
    } else {
        (v + (v & 0x3f80) + 3 * (v & 0x1f_c000) + 0x8080, 3)
    }
}

/// Bytes past a record that the fixed-width writes may scribble on, and that are cut off (or
/// overwritten by the next record) afterwards: [`FastWriter`]'s 8- and 16-byte stores in the
/// general path, the 16-byte chunk of leading varints in the fast path.
const SLACK: usize = 16;

/// Writes a record into an initialized buffer that has [`SLACK`] bytes to spare after it.
///
/// Each varint is encoded in a register and stored with one fixed 8-byte write (or 16 for the
/// rare varlong past 8 bytes); the position then advances by the varint's true length, and the
/// extra bytes are overwritten by what follows. That replaces a store, a bounds check and a
/// loop iteration per byte with one store per field.
struct FastWriter<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl FastWriter<'_> {
    /// Stores 8 bytes at the position without advancing it.
    #[inline(always)]
    fn put8(&mut self, bits: u64) {
        if let Some(dst) = self.buf.get_mut(self.pos..self.pos + 8) {
            dst.copy_from_slice(&bits.to_le_bytes());
        }
    }

    #[inline(always)]
    fn byte(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.pos) {
            *slot = b;
        }
        self.pos += 1;
    }

    #[inline(always)]
    fn uvarint(&mut self, v: u64) {
        if v < 1 << 7 {
            self.byte(v as u8);
        } else if v < 1 << 14 {
            self.put8((v & 0x7f) | 0x80 | ((v << 1) & 0x7f00));
            self.pos += 2;
        } else {
            self.uvarint_slow(v);
        }
    }

    #[inline(never)]
    fn uvarint_slow(&mut self, mut v: u64) {
        let mut bits: u128 = 0;
        let mut shift = 0u32;
        while v >= 0x80 {
            bits |= u128::from((v & 0x7f) | 0x80) << shift;
            v >>= 7;
            shift += 8;
        }
        bits |= u128::from(v) << shift;
        if let Some(dst) = self.buf.get_mut(self.pos..self.pos + 16) {
            dst.copy_from_slice(&bits.to_le_bytes());
        }
        self.pos += (shift / 8 + 1) as usize;
    }

    #[inline(always)]
    fn slice(&mut self, src: &[u8]) {
        if let Some(dst) = self.buf.get_mut(self.pos..self.pos + src.len()) {
            dst.copy_from_slice(src);
        }
        self.pos += src.len();
    }

    #[inline(always)]
    fn nullable(&mut self, v: Option<&[u8]>) {
        match v {
            None => self.byte(1), // zig-zag of -1
            Some(b) => {
                self.uvarint((b.len() as u64) << 1);
                self.slice(b);
            }
        }
    }
}

/// Writes a record into a region of exactly its size, byte by byte (used when there is no
/// slack left, i.e. for the record that exactly fills the buffer).
struct ExactWriter<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl ExactWriter<'_> {
    fn byte(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.pos) {
            *slot = b;
        }
        self.pos += 1;
    }

    fn uvarint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.byte(v as u8 | 0x80);
            v >>= 7;
        }
        self.byte(v as u8);
    }

    fn slice(&mut self, src: &[u8]) {
        if let Some(dst) = self.buf.get_mut(self.pos..self.pos + src.len()) {
            dst.copy_from_slice(src);
        }
        self.pos += src.len();
    }

    fn nullable(&mut self, v: Option<&[u8]>) {
        match v {
            None => self.byte(1),
            Some(b) => {
                self.uvarint((b.len() as u64) << 1);
                self.slice(b);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Building
// ---------------------------------------------------------------------------------------------

/// A record header to append: a string key and a nullable value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header<'a> {
    /// The header key (Kafka header keys are strings).
    pub key: &'a str,
    /// The header value, or `None` for null.
    pub value: Option<&'a [u8]>,
}

impl<'a> Header<'a> {
    /// A header with the given key and value.
    pub const fn new(key: &'a str, value: Option<&'a [u8]>) -> Self {
        Header { key, value }
    }
}

/// How a [`RecordBatchBuilder`] encodes its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    /// The codec for the records section.
    pub compression: Compression,
    /// The codec's level; `None` for Kafka's default. Checked at [`RecordBatchBuilder::seal`]
    /// against [`Compression::level_range`].
    pub compression_level: Option<i32>,
    /// CreateTime (producers) or LogAppendTime (a broker building a batch itself).
    pub timestamp_type: TimestampType,
    /// Sets the transactional attribute bit.
    pub transactional: bool,
    /// The partition leader epoch; -1 from producers (the broker fills it in).
    pub partition_leader_epoch: i32,
    /// The base offset; 0 from producers (the broker assigns offsets).
    pub base_offset: i64,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            compression: Compression::None,
            compression_level: None,
            timestamp_type: TimestampType::CreateTime,
            transactional: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            base_offset: 0,
        }
    }
}

/// Builds one magic 2 record batch, writing each record in wire form straight into a single
/// buffer (no per-record allocation); [`Self::seal`] then compresses the records section if
/// asked, fills the header and computes the CRC.
///
/// The first record's timestamp becomes the base timestamp; offset deltas run 0, 1, 2, ...
///
/// The buffer is a `Vec<u8>` whose length is the batch's. A record is appended with a few
/// `extend_from_slice` calls into capacity checked once for the whole record, so nothing is
/// zeroed first (safe code cannot write into uninitialized memory any other way): its leading
/// varints are encoded in registers and appended as one fixed 16-byte chunk, then the length
/// is cut back to their true size, and the next write overwrites the extra bytes. The
/// allocation is made once, at the capacity asked for, and grows (doubling) only when a record
/// does not fit; a record that fits exactly never makes it grow.
#[derive(Debug)]
pub struct RecordBatchBuilder {
    /// The batch so far: 61 header bytes (filled at seal time), then the records.
    buf: Vec<u8>,
    options: BatchOptions,
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    control: bool,
}

impl RecordBatchBuilder {
    /// A builder with a 16 KiB buffer (Kafka's default `batch.size`).
    pub fn new(options: BatchOptions) -> Self {
        Self::with_capacity(DEFAULT_CAPACITY, options)
    }

    /// A builder whose buffer holds `capacity` bytes (header included) before it has to grow:
    /// pass the producer's `batch.size`.
    pub fn with_capacity(capacity: usize, options: BatchOptions) -> Self {
        let mut buf = Vec::new();
        // The caller's batch size, not a length from the wire; nothing is zeroed yet.
        buf.reserve_exact(capacity.max(RECORD_BATCH_OVERHEAD));
        Self::with_vec(buf, options)
    }

    /// A builder that reuses `buf`'s memory, e.g. a batch sealed earlier and recovered with
    /// `Bytes::try_into_mut`: its allocation is reused as is, nothing is zeroed.
    pub fn with_buffer(buf: BytesMut, options: BatchOptions) -> Self {
        Self::with_vec(Vec::from(buf), options)
    }

    /// Like [`Self::with_buffer`], from a `Vec`; its contents are ignored and overwritten, and
    /// its spare capacity is used before the builder reallocates.
    pub fn with_vec(mut buf: Vec<u8>, options: BatchOptions) -> Self {
        buf.clear();
        buf.resize(RECORD_BATCH_OVERHEAD, 0);
        RecordBatchBuilder {
            buf,
            options,
            count: 0,
            base_timestamp: NO_TIMESTAMP,
            max_timestamp: NO_TIMESTAMP,
            control: false,
        }
    }

    /// The options the batch is built with.
    pub fn options(&self) -> &BatchOptions {
        &self.options
    }

    /// Exact encoded size of a record (length prefix included) with the given deltas.
    #[inline]
    pub fn record_size(
        timestamp_delta: i64,
        offset_delta: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header<'_>],
    ) -> usize {
        let body = body_size(timestamp_delta, offset_delta, key, value, headers);
        len_prefix_size(body).saturating_add(body)
    }

    /// An upper bound on a record's encoded size whatever its timestamp and offset deltas
    /// (like Java's `estimateSizeInBytesUpperBound`), for checking `max.request.size` before
    /// a batch is chosen.
    pub fn max_record_size(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[Header<'_>]) -> usize {
        Self::record_size(i64::MIN, i32::MIN, key, value, headers)
    }

    /// Exact number of bytes [`Self::append`] would add for this record now, so a producer can
    /// check `batch.size` before appending.
    #[inline]
    pub fn next_record_size(
        &self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header<'_>],
    ) -> usize {
        let delta = if self.count == 0 { 0 } else { timestamp_ms.wrapping_sub(self.base_timestamp) };
        Self::record_size(delta, self.count, key, value, headers)
    }

    /// Appends a record and returns its offset delta.
    ///
    /// Fails with [`ProtocolError::ValueOutOfRange`] when the timestamp delta overflows, the
    /// record or the batch would exceed `i32::MAX` bytes, or the batch already holds
    /// `i32::MAX` records; the builder is unchanged then.
    // Always inlined, so the fast path runs in the caller's loop (the general path stays out
    // of line): as a call, left to the compiler because of its size, it cost about 26
    // instructions a record in prologue, epilogue and a `Result` returned through memory.
    #[inline(always)]
    pub fn append(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header<'_>],
    ) -> Result<i32> {
        let offset_delta = self.count;
        let base = if offset_delta == 0 { timestamp_ms } else { self.base_timestamp };
        let (timestamp_delta, overflow) = timestamp_ms.overflowing_sub(base);
        if headers.is_empty() && !overflow && self.append_fast(timestamp_delta, offset_delta, key, value) {
            self.commit(timestamp_ms, offset_delta);
            return Ok(offset_delta);
        }
        self.append_general(timestamp_ms, key, value, headers)
    }

    /// Appends a record without headers whose varints all fit three bytes (deltas below 2^20,
    /// key and value together shorter than 512 KiB) and whose bytes, plus [`SLACK`], fit the allocation;
    /// `false` (nothing appended) for anything else.
    ///
    /// The record's first fields are assembled in registers: the length, attributes and
    /// timestamp delta (at most 7 bytes) in one `u64`, the offset delta and key length, or for
    /// a null key the offset delta, the null marker and the value length (at most 7 bytes) in
    /// another. The two are placed in a 16-byte chunk, appended whole, and the length is cut
    /// back to their true size. Then the key, the value's length if the key was not null (an
    /// 8-byte chunk, cut back the same way), the value and the header count. One length
    /// computation, no loop, no zeroing, and the capacity checks of `extend_from_slice` never
    /// fail because the record's room was checked first.
    #[inline(always)]
    fn append_fast(
        &mut self,
        timestamp_delta: i64,
        offset_delta: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> bool {
        let zts = zigzag64(timestamp_delta);
        // An offset delta below 2^20 also leaves room for the count to grow.
        let zoff = u64::from(zigzag32(offset_delta));
        let key_len = key.map_or(0, <[u8]>::len);
        let value_len = value.map_or(0, <[u8]>::len);
        // One comparison checks the deltas and, with key and value together below 512 KiB,
        // the two lengths and the record's (whose zig-zag forms are then below 2^21).
        if (zts | zoff | ((key_len + value_len) as u64) << 2) >= VARINT3_LIMIT {
            return false;
        }
        let (ts_bits, ts_n) = varint3(zts as u32);
        let (off_bits, off_n) = varint3(zoff as u32);
        let (key_bits, key_n) = if key.is_some() { varint3((key_len as u32) << 1) } else { (1, 1) };
        let (value_bits, value_n) = if value.is_some() { varint3((value_len as u32) << 1) } else { (1, 1) };
        // Attributes and header count take a byte each.
        let body = 2 + ts_n + off_n + key_n + key_len + value_n + value_len;
        let (len_bits, len_n) = varint3((body as u32) << 1);
        let buf = &mut self.buf;
        let start = buf.len();
        let end = start + len_n + body;
        // Within the allocation, with the slack, and within `batchLength`'s range.
        if end + SLACK > buf.capacity().min(MAX_BATCH_LENGTH + LOG_OVERHEAD + SLACK) {
            return false;
        }
        // Implied by the check above, but in the form `extend_from_slice` checks before the
        // 16-byte chunk: the compiler then drops that check and its reallocation path, and
        // keeps fewer values on the stack around it (3 instructions a record).
        if buf.capacity() - start < 16 {
            return false;
        }
        // Length, attributes (0: unused) and timestamp delta.
        let a = len_bits | (ts_bits << (8 * (len_n + 1)));
        let a_n = len_n + 1 + ts_n;
        let (b, b_n) = match key {
            // Offset delta, -1 (zig-zag 1) for the null key, value length.
            None => (off_bits | (1 << (8 * off_n)) | (value_bits << (8 * (off_n + 1))), off_n + 1 + value_n),
            Some(_) => (off_bits | (key_bits << (8 * off_n)), off_n + key_n),
        };
        // The two groups go into a 16-byte chunk with two overlapping 8-byte stores (`a_n` is at
        // most 7, so both lie inside it), which is appended whole and cut back. The 16-byte
        // reload of the two stores cannot be forwarded from them and perf puts many samples
        // on it, but the alternatives cost more than it: appending each group as its own
        // 8-byte chunk took 18-25 more instructions a record, joining them in a `u128` in
        // registers 8 more, and neither was faster in paired runs.
        let mut head = [0u8; 16];
        if let Some((first, _)) = head.split_first_chunk_mut::<8>() {
            *first = a.to_le_bytes();
        }
        if let Some((second, _)) = head.get_mut(a_n & 7..).and_then(<[u8]>::split_first_chunk_mut::<8>) {
            *second = b.to_le_bytes();
        }
        buf.extend_from_slice(&head);
        buf.truncate(start + a_n + b_n);
        if let Some(k) = key {
            buf.extend_from_slice(k);
            let at = buf.len() + value_n;
            buf.extend_from_slice(&value_bits.to_le_bytes());
            buf.truncate(at);
        }
        let value = value.unwrap_or_default();
        // Never true (the room was checked above); stated in `extend_from_slice`'s and `push`'s
        // own forms so that their reallocation paths go away.
        if buf.capacity() - buf.len() < value.len() {
            buf.truncate(start);
            return false;
        }
        buf.extend_from_slice(value);
        if buf.len() == buf.capacity() {
            buf.truncate(start);
            return false;
        }
        buf.push(0); // no headers
        debug_assert_eq!(buf.len(), end);
        true
    }

    /// Records a written record in the builder's state.
    #[inline(always)]
    fn commit(&mut self, timestamp_ms: i64, offset_delta: i32) {
        if offset_delta == 0 {
            self.base_timestamp = timestamp_ms;
            self.max_timestamp = timestamp_ms;
        } else if timestamp_ms > self.max_timestamp {
            self.max_timestamp = timestamp_ms;
        }
        self.count = offset_delta + 1;
    }

    /// [`Self::append`] for every case: headers, long varints, no slack left, errors.
    #[inline(never)]
    fn append_general(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header<'_>],
    ) -> Result<i32> {
        let offset_delta = self.count;
        if offset_delta == i32::MAX {
            return Err(ProtocolError::ValueOutOfRange { what: "record count", value: i64::from(i32::MAX) + 1 });
        }
        let base = if offset_delta == 0 { timestamp_ms } else { self.base_timestamp };
        let Some(timestamp_delta) = timestamp_ms.checked_sub(base) else {
            return Err(ProtocolError::ValueOutOfRange { what: "timestamp delta", value: timestamp_ms });
        };
        let body = body_size(timestamp_delta, offset_delta, key, value, headers);
        let total = len_prefix_size(body).saturating_add(body);
        let start = self.buf.len();
        let end = start.saturating_add(total);
        if end - LOG_OVERHEAD > MAX_BATCH_LENGTH {
            return Err(ProtocolError::ValueOutOfRange { what: "record batch size", value: total as i64 });
        }
        // Every length below is at most `body` <= i32::MAX, so the casts are exact. The record
        // is written into zeroed bytes (this path is not the hot one), with the slack the
        // fixed-width writes need, unless only the record itself fits the allocation.
        let capacity = self.buf.capacity();
        if end.saturating_add(SLACK) <= capacity || end > capacity {
            // `resize` past the capacity grows the allocation (at least doubling it).
            self.buf.resize(end.saturating_add(SLACK), 0);
            self.write_fast(start, body, timestamp_delta, offset_delta, key, value, headers);
        } else {
            self.buf.resize(end, 0);
            self.write_exact(start, end, body, timestamp_delta, offset_delta, key, value, headers);
        }
        self.buf.truncate(end);
        self.commit(timestamp_ms, offset_delta);
        Ok(offset_delta)
    }

    /// Writes a record at `start` into the buffer, which has [`SLACK`] bytes after it.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn write_fast(
        &mut self,
        start: usize,
        body: usize,
        timestamp_delta: i64,
        offset_delta: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header<'_>],
    ) {
        let mut w = FastWriter { buf: self.buf.get_mut(start..).unwrap_or_default(), pos: 0 };
        w.uvarint((body as u64) << 1);
        w.byte(0); // record attributes: unused
        w.uvarint(zigzag64(timestamp_delta));
        w.uvarint(u64::from(zigzag32(offset_delta)));
        w.nullable(key);
        w.nullable(value);
        w.uvarint((headers.len() as u64) << 1);
        for h in headers {
            w.uvarint((h.key.len() as u64) << 1);
            w.slice(h.key.as_bytes());
            w.nullable(h.value);
        }
    }

    /// Writes a record into exactly `start..end` of the buffer.
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn write_exact(
        &mut self,
        start: usize,
        end: usize,
        body: usize,
        timestamp_delta: i64,
        offset_delta: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header<'_>],
    ) {
        let mut w = ExactWriter { buf: self.buf.get_mut(start..end).unwrap_or_default(), pos: 0 };
        w.uvarint((body as u64) << 1);
        w.byte(0);
        w.uvarint(zigzag64(timestamp_delta));
        w.uvarint(u64::from(zigzag32(offset_delta)));
        w.nullable(key);
        w.nullable(value);
        w.uvarint((headers.len() as u64) << 1);
        for h in headers {
            w.uvarint((h.key.len() as u64) << 1);
            w.slice(h.key.as_bytes());
            w.nullable(h.value);
        }
    }

    /// Drops every record appended so far, keeping the buffer and the options.
    pub fn clear(&mut self) {
        self.buf.truncate(RECORD_BATCH_OVERHEAD);
        self.count = 0;
        self.base_timestamp = NO_TIMESTAMP;
        self.max_timestamp = NO_TIMESTAMP;
    }

    /// Bytes written so far, header included, before compression.
    pub fn size_in_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Records appended so far.
    pub fn record_count(&self) -> i32 {
        self.count
    }

    /// Whether no record was appended.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The first record's timestamp, once there is one.
    pub fn base_timestamp(&self) -> Option<i64> {
        (self.count > 0).then_some(self.base_timestamp)
    }

    /// The largest timestamp appended so far.
    pub fn max_timestamp(&self) -> Option<i64> {
        (self.count > 0).then_some(self.max_timestamp)
    }

    /// Finishes the batch: compresses the records section if the options ask for it, fills
    /// the header (producer id, epoch and base sequence from `producer`) and computes the CRC.
    ///
    /// A builder with no records seals into a batch with `recordCount` 0, `lastOffsetDelta`
    /// -1 and no timestamps; brokers reject such batches from producers.
    pub fn seal(self, producer: ProducerState) -> Result<Bytes> {
        let codec = self.options.compression;
        if codec == Compression::None {
            return Ok(self.finish(producer));
        }
        let level = self.options.compression_level;
        let records = self.buf.get(RECORD_BATCH_OVERHEAD..).unwrap_or_default();
        let mut out =
            BytesMut::with_capacity(RECORD_BATCH_OVERHEAD + compression::max_compressed_len(codec, records.len()));
        out.extend_from_slice(&[0u8; RECORD_BATCH_OVERHEAD]);
        compression::compress(codec, level, records, &mut out)?;
        if out.len() - LOG_OVERHEAD > MAX_BATCH_LENGTH {
            return Err(ProtocolError::ValueOutOfRange { what: "record batch size", value: out.len() as i64 });
        }
        Ok(self.finish_into(Vec::from(out), producer))
    }

    /// Fills the header of the batch (whose length fits `batchLength`) and freezes it.
    fn finish(mut self, producer: ProducerState) -> Bytes {
        let buf = std::mem::take(&mut self.buf);
        self.finish_into(buf, producer)
    }

    /// Fills the header at the start of `buf` (61 bytes, then the possibly compressed records).
    fn finish_into(&self, mut buf: Vec<u8>, producer: ProducerState) -> Bytes {
        let batch_length = i32::try_from(buf.len() - LOG_OVERHEAD).unwrap_or(i32::MAX);
        let mut attrs = i16::from(self.options.compression.id());
        if self.options.timestamp_type == TimestampType::LogAppendTime {
            attrs |= attributes::TIMESTAMP_TYPE;
        }
        if self.options.transactional {
            attrs |= attributes::TRANSACTIONAL;
        }
        if self.control {
            attrs |= attributes::CONTROL;
        }
        let header = RecordBatchHeader {
            base_offset: self.options.base_offset,
            batch_length,
            partition_leader_epoch: self.options.partition_leader_epoch,
            magic: MAGIC_V2,
            crc: 0,
            attributes: attrs,
            last_offset_delta: self.count - 1,
            base_timestamp: self.base_timestamp,
            max_timestamp: self.max_timestamp,
            producer_id: producer.producer_id,
            producer_epoch: producer.producer_epoch,
            base_sequence: producer.base_sequence,
            record_count: self.count,
        };
        put_at(&mut buf, 0, &header.to_bytes());
        let crc = crc32c::crc32c(buf.get(offsets::ATTRIBUTES..).unwrap_or_default());
        put_at(&mut buf, offsets::CRC, &crc.to_be_bytes());
        Bytes::from(buf)
    }

    /// Builds a control batch holding one record (used by [`super::build_control_batch`]).
    pub(crate) fn control_batch(
        options: BatchOptions,
        producer: ProducerState,
        timestamp_ms: i64,
        key: &[u8],
        value: &[u8],
    ) -> Bytes {
        let mut b = Self::with_capacity(RECORD_BATCH_OVERHEAD + 32, options);
        b.control = true;
        let body = body_size(0, 0, Some(key), Some(value), &[]);
        let end = RECORD_BATCH_OVERHEAD + len_prefix_size(body) + body;
        b.buf.resize(end, 0);
        b.write_exact(RECORD_BATCH_OVERHEAD, end, body, 0, 0, Some(key), Some(value), &[]);
        b.count = 1;
        b.base_timestamp = timestamp_ms;
        b.max_timestamp = timestamp_ms;
        b.finish(producer)
    }
}

// ---------------------------------------------------------------------------------------------
// Patching sealed batches in place
// ---------------------------------------------------------------------------------------------

/// Checks that `batch` starts with a complete magic 2 batch and returns its end.
fn check_batch(batch: &[u8]) -> Result<usize> {
    if batch.len() < RECORD_BATCH_OVERHEAD {
        return Err(ProtocolError::Truncated { needed: RECORD_BATCH_OVERHEAD, remaining: batch.len() });
    }
    let magic = batch.get(offsets::MAGIC).copied().unwrap_or(0) as i8;
    if magic != MAGIC_V2 {
        return Err(ProtocolError::UnsupportedMagic(magic));
    }
    let length = i32_at(batch, offsets::BATCH_LENGTH).unwrap_or(-1);
    if length < (RECORD_BATCH_OVERHEAD - LOG_OVERHEAD) as i32 {
        return Err(ProtocolError::InvalidLength { what: "record batch", length: i64::from(length) });
    }
    let end = length as usize + LOG_OVERHEAD;
    if end > batch.len() {
        return Err(ProtocolError::Truncated { needed: end, remaining: batch.len() });
    }
    Ok(end)
}

fn update_crc(batch: &mut [u8], end: usize) {
    let crc = crc32c::crc32c(batch.get(offsets::ATTRIBUTES..end).unwrap_or_default());
    put_at(batch, offsets::CRC, &crc.to_be_bytes());
}

/// Sets the base offset of the sealed batch at the start of `batch` (outside the CRC), as a
/// broker does when it assigns offsets.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) -> Result<()> {
    check_batch(batch)?;
    put_at(batch, offsets::BASE_OFFSET, &base_offset.to_be_bytes());
    Ok(())
}

/// Sets the partition leader epoch of the sealed batch at the start of `batch` (outside the
/// CRC).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) -> Result<()> {
    check_batch(batch)?;
    put_at(batch, offsets::PARTITION_LEADER_EPOCH, &epoch.to_be_bytes());
    Ok(())
}

/// Sets the producer id, epoch and base sequence of the sealed batch at the start of `batch`
/// and recomputes its CRC (a producer assigning sequences when it drains a batch).
pub fn set_producer_state(batch: &mut [u8], producer: ProducerState) -> Result<()> {
    let end = check_batch(batch)?;
    put_at(batch, offsets::PRODUCER_ID, &producer.producer_id.to_be_bytes());
    put_at(batch, offsets::PRODUCER_EPOCH, &producer.producer_epoch.to_be_bytes());
    put_at(batch, offsets::BASE_SEQUENCE, &producer.base_sequence.to_be_bytes());
    update_crc(batch, end);
    Ok(())
}

/// Marks the sealed batch at the start of `batch` as LogAppendTime with the given time as its
/// max timestamp, and recomputes its CRC (a broker on a LogAppendTime topic). Readers then
/// report that time for every record.
pub fn set_log_append_time(batch: &mut [u8], log_append_time_ms: i64) -> Result<()> {
    let end = check_batch(batch)?;
    let attrs = batch
        .get(offsets::ATTRIBUTES..offsets::ATTRIBUTES + 2)
        .map(|b| i16::from_be_bytes([b.first().copied().unwrap_or(0), b.get(1).copied().unwrap_or(0)]))
        .unwrap_or(0);
    put_at(batch, offsets::ATTRIBUTES, &(attrs | attributes::TIMESTAMP_TYPE).to_be_bytes());
    put_at(batch, offsets::MAX_TIMESTAMP, &log_append_time_ms.to_be_bytes());
    update_crc(batch, end);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// One magic 2 record batch, holding its bytes as a zero-copy slice of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordBatch {
    header: RecordBatchHeader,
    data: Bytes,
}

impl RecordBatch {
    /// Wraps exactly one batch: `data` must be as long as its header's `batchLength + 12`.
    ///
    /// Checks the magic, the length and the record count's sign; not the CRC (see
    /// [`Self::verify_crc`]) and not the records (see [`Self::records`]).
    pub fn from_bytes(data: Bytes) -> Result<Self> {
        let header = RecordBatchHeader::parse(&data)?;
        let length = header.batch_length;
        if length < (RECORD_BATCH_OVERHEAD - LOG_OVERHEAD) as i32 {
            return Err(ProtocolError::InvalidLength { what: "record batch", length: i64::from(length) });
        }
        let size = length as usize + LOG_OVERHEAD;
        if data.len() < size {
            return Err(ProtocolError::Truncated { needed: size, remaining: data.len() });
        }
        if data.len() > size {
            return Err(ProtocolError::CorruptRecord("bytes after the end of the record batch"));
        }
        if header.record_count < 0 {
            return Err(ProtocolError::InvalidLength { what: "record count", length: i64::from(header.record_count) });
        }
        Ok(RecordBatch { header, data })
    }

    /// The parsed header.
    pub fn header(&self) -> &RecordBatchHeader {
        &self.header
    }

    /// The whole batch on the wire.
    pub fn as_bytes(&self) -> &Bytes {
        &self.data
    }

    /// The whole batch on the wire.
    pub fn into_bytes(self) -> Bytes {
        self.data
    }

    /// The CRC-32C of the batch's bytes from the attributes to the end.
    pub fn compute_crc(&self) -> u32 {
        crc32c::crc32c(self.data.get(offsets::ATTRIBUTES..).unwrap_or_default())
    }

    /// Checks the stored CRC; [`ProtocolError::CrcMismatch`] carries both values.
    pub fn verify_crc(&self) -> Result<()> {
        let computed = self.compute_crc();
        if computed == self.header.crc {
            Ok(())
        } else {
            Err(ProtocolError::CrcMismatch { stored: self.header.crc, computed })
        }
    }

    /// The raw records section (compressed if the batch is).
    pub fn records_section(&self) -> &[u8] {
        self.data.get(RECORD_BATCH_OVERHEAD..).unwrap_or_default()
    }

    /// The records, ready to iterate: a zero-copy view for uncompressed batches, or the
    /// decompressed section (at most `decompress_limit` bytes, else
    /// [`ProtocolError::DecompressionLimit`]).
    pub fn records(&self, decompress_limit: usize) -> Result<Records> {
        let codec = self.header.compression()?;
        if self.data.len() < RECORD_BATCH_OVERHEAD {
            return Err(ProtocolError::Truncated { needed: RECORD_BATCH_OVERHEAD, remaining: self.data.len() });
        }
        let data = match codec {
            Compression::None => self.data.slice(RECORD_BATCH_OVERHEAD..),
            codec => compression::decompress(codec, self.records_section(), decompress_limit)?,
        };
        let count = self.header.record_count;
        if count < 0 || count as usize > data.len() / MIN_RECORD_SIZE {
            return Err(ProtocolError::InvalidLength { what: "record count", length: i64::from(count) });
        }
        Ok(Records {
            data,
            count: count as u32,
            base_offset: self.header.base_offset,
            base_timestamp: self.header.base_timestamp,
            log_append_time: (self.header.timestamp_type() == TimestampType::LogAppendTime)
                .then_some(self.header.max_timestamp),
        })
    }
}

/// The records of one batch, decompressed if need be; iterate with [`Records::iter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Records {
    data: Bytes,
    count: u32,
    base_offset: i64,
    base_timestamp: i64,
    log_append_time: Option<i64>,
}

impl Records {
    /// The record count the batch header declares.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether the batch declares no records.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The (decompressed) records section that the records borrow from.
    pub fn as_bytes(&self) -> &Bytes {
        &self.data
    }

    /// Iterates the records, validating each; after an error the iterator ends.
    pub fn iter(&self) -> RecordIter<'_> {
        RecordIter {
            rest: &self.data,
            remaining: self.count,
            done: false,
            ctx: BatchContext {
                owner: &self.data,
                base_offset: self.base_offset,
                base_timestamp: self.base_timestamp,
                log_append_time: self.log_append_time,
            },
        }
    }
}

impl Records {
    /// Calls `f` on every record, stopping at the first error (a malformed record, or one
    /// `f` returns). Equivalent to iterating [`Self::iter`], but internal iteration lets the
    /// compiler keep the loop's state in registers.
    #[inline]
    pub fn try_for_each<E, F>(&self, mut f: F) -> std::result::Result<(), E>
    where
        E: From<ProtocolError>,
        F: FnMut(Record<'_>) -> std::result::Result<(), E>,
    {
        let mut it = self.iter();
        while it.remaining > 0 {
            it.remaining -= 1;
            f(it.parse()?)?;
        }
        if it.rest.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::CorruptRecord("bytes after the last record of the batch").into())
        }
    }
}

impl<'a> IntoIterator for &'a Records {
    type Item = Result<Record<'a>>;
    type IntoIter = RecordIter<'a>;
    fn into_iter(self) -> RecordIter<'a> {
        self.iter()
    }
}

/// Iterator over the records of a batch; yields exactly `recordCount` records, then an error
/// if bytes remain after them. Fused: after an error it yields nothing more.
#[derive(Debug, Clone)]
pub struct RecordIter<'a> {
    rest: &'a [u8],
    remaining: u32,
    done: bool,
    ctx: BatchContext<'a>,
}

/// What a record needs from its batch: the buffer it borrows from and the bases its deltas
/// apply to. Passed by value to the parsers, so the iterator's own state (the rest of the
/// bytes and the count) never has its address taken and stays in registers in the loop.
#[derive(Debug, Clone, Copy)]
struct BatchContext<'a> {
    owner: &'a Bytes,
    base_offset: i64,
    base_timestamp: i64,
    log_append_time: Option<i64>,
}

impl<'a> RecordIter<'a> {
    /// Parses the next record (one is due): the fast path, or the checked one when the fast
    /// path declines.
    #[inline(always)]
    fn parse(&mut self) -> Result<Record<'a>> {
        let (record, next) = match self.ctx.parse_fast(self.rest) {
            Some(parsed) => parsed,
            None => self.ctx.parse_checked(self.rest)?,
        };
        self.rest = next;
        Ok(record)
    }
}

impl<'a> BatchContext<'a> {
    /// The common case, with as few bounds checks as it can: no varint longer than three bytes
    /// and at least [`FAST_HEAD`] bytes left. `None` for anything else, valid or not; the caller
    /// then runs [`Self::parse_checked`], which decides and names the error, so this path only
    /// has to accept nothing that one would reject, and need not say why.
    ///
    /// The length, attributes, timestamp delta, offset delta and key length (at most 13 bytes)
    /// are read from a fixed 16-byte window, which costs one length check for all of them
    /// instead of one per field. The window may extend past the record; that is harmless
    /// because the key, read next from the record itself, starts after all of them, so the
    /// check that it lies inside the record covers them too.
    #[inline(always)]
    fn parse_fast(self, rest: &'a [u8]) -> Option<(Record<'a>, &'a [u8])> {
        let (head, _) = rest.split_first_chunk::<FAST_HEAD>()?;
        let (raw_len, p) = short_uvarint(head)?;
        if raw_len & 1 != 0 {
            return None;
        }
        let (record, next) = rest.split_at_checked(p + (raw_len >> 1) as usize)?;
        let attributes = *head.get(p)?;
        let (raw_ts, n) = short_uvarint(head.get(p + 1..)?)?;
        let p = p + 1 + n;
        let (raw_off, n) = short_uvarint(head.get(p..)?)?;
        let p = p + n;
        let (raw_key, n) = short_uvarint(head.get(p..)?)?;
        let p = p + n;
        if raw_key == 1 {
            // A null key: the value's length is in the window too (at most 11 bytes so far). A
            // record whose value ends one byte before its end, on a header count of 0, needs
            // no more checks than that.
            let (raw_value, n) = short_uvarint(head.get(p..)?)?;
            let p = p + n;
            if let Some((&0, body)) = record.split_last() {
                if raw_value & 1 == 0 && body.len() == p + (raw_value >> 1) as usize {
                    let value = body.get(p..)?;
                    let headers = next.get(..0).unwrap_or_default(); // empty, at the record's end
                    return Some((
                        self.record(attributes, raw_ts.into(), raw_off, None, Some(value), headers, 0),
                        next,
                    ));
                }
            }
        }
        let (key, b) = fast_nullable(raw_key, record.get(p..)?)?;
        let (raw_value, n) = short_uvarint(b)?;
        // The same end check as above, after a key.
        if let Some((&0, body)) = b.split_last() {
            if raw_value & 1 == 0 && body.len() == n + (raw_value >> 1) as usize {
                let value = body.get(n..)?;
                let headers = next.get(..0).unwrap_or_default();
                return Some((self.record(attributes, raw_ts.into(), raw_off, key, Some(value), headers, 0), next));
            }
        }
        let (value, b) = fast_nullable(raw_value, b.get(n..)?)?;
        let (&raw_count, headers) = b.split_first()?;
        // A one-byte header count: 0 (then nothing may follow), or a count whose headers must
        // fill the rest of the record exactly.
        if raw_count != 0 && (raw_count >= 0x80 || validate_headers(unzigzag32(u32::from(raw_count)), headers).is_err())
            || raw_count == 0 && !headers.is_empty()
        {
            return None;
        }
        Some((self.record(attributes, raw_ts.into(), raw_off, key, value, headers, u32::from(raw_count)), next))
    }

    /// Parses the record at the start of `rest` with every check, naming what is wrong;
    /// returns it and the bytes after it.
    #[inline(never)]
    fn parse_checked(self, rest: &'a [u8]) -> Result<(Record<'a>, &'a [u8])> {
        if rest.is_empty() {
            return Err(ProtocolError::CorruptRecord("fewer records than the batch's record count"));
        }
        let (raw_len, n) = uvarint32(rest)?;
        if raw_len & 1 != 0 {
            return Err(ProtocolError::InvalidLength { what: "record", length: i64::from(unzigzag32(raw_len)) });
        }
        let after = rest.get(n..).unwrap_or_default();
        let Some((body, next)) = after.split_at_checked((raw_len >> 1) as usize) else {
            return Err(ProtocolError::InvalidLength { what: "record", length: i64::from(raw_len >> 1) });
        };
        let Some((&attributes, b)) = body.split_first() else {
            return Err(ProtocolError::Truncated { needed: 1, remaining: 0 });
        };
        let (raw_ts, n) = uvarint64(b)?;
        let b = b.get(n..).unwrap_or_default();
        let (raw_off, n) = uvarint32(b)?;
        let b = b.get(n..).unwrap_or_default();
        let (key, b) = read_nullable(b, "record key")?;
        let (value, b) = read_nullable(b, "record value")?;
        let (raw_count, n) = uvarint32(b)?;
        let headers = b.get(n..).unwrap_or_default();
        if raw_count != 0 {
            validate_headers(unzigzag32(raw_count), headers)?;
        } else if !headers.is_empty() {
            return Err(ProtocolError::CorruptRecord("trailing bytes inside a record"));
        }
        Ok((self.record(attributes, raw_ts, raw_off, key, value, headers, raw_count), next))
    }

    /// A record from its parsed fields (varints still in zig-zag form).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn record(
        self,
        attributes: u8,
        raw_ts: u64,
        raw_off: u32,
        key: Option<&'a [u8]>,
        value: Option<&'a [u8]>,
        headers: &'a [u8],
        raw_count: u32,
    ) -> Record<'a> {
        let timestamp = match self.log_append_time {
            Some(t) => t,
            None => self.base_timestamp.wrapping_add(unzigzag64(raw_ts)),
        };
        Record {
            offset: self.base_offset.wrapping_add(i64::from(unzigzag32(raw_off))),
            timestamp,
            key,
            value,
            headers,
            header_count: raw_count >> 1,
            attributes: attributes as i8,
            owner: self.owner,
        }
    }
}

/// Checks that `header_count` headers fill `headers` exactly.
fn validate_headers(header_count: i32, headers: &[u8]) -> Result<()> {
    // Each header takes at least two bytes (key length and value length).
    if header_count < 0 || header_count as usize > headers.len() / 2 {
        return Err(ProtocolError::InvalidLength { what: "record headers", length: i64::from(header_count) });
    }
    let mut rest = headers;
    for _ in 0..header_count {
        let (_, r) = parse_header(rest)?;
        rest = r;
    }
    if rest.is_empty() {
        Ok(())
    } else {
        Err(ProtocolError::CorruptRecord("trailing bytes inside a record"))
    }
}

fn parse_header(b: &[u8]) -> Result<(RecordHeader<'_>, &[u8])> {
    let (key, b) = read_nullable(b, "record header key")?;
    let Some(key) = key else {
        return Err(ProtocolError::InvalidLength { what: "record header key", length: -1 });
    };
    let (value, b) = read_nullable(b, "record header value")?;
    Ok((RecordHeader { key, value }, b))
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<Record<'a>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            if self.done || self.rest.is_empty() {
                return None;
            }
            self.done = true;
            return Some(Err(ProtocolError::CorruptRecord("bytes after the last record of the batch")));
        }
        self.remaining -= 1;
        match self.parse() {
            Ok(r) => Some(Ok(r)),
            Err(e) => {
                self.remaining = 0;
                self.done = true;
                Some(Err(e))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.remaining as usize;
        (n, Some(n + 1))
    }
}

/// A record borrowed from its batch (or the batch's decompressed buffer).
///
/// Cheap to create: no allocation and no reference counting. Use [`Record::into_owned`] or
/// [`Record::key_bytes`] / [`Record::value_bytes`] for data that must outlive the batch.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    offset: i64,
    timestamp: i64,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: &'a [u8],
    header_count: u32,
    attributes: i8,
    owner: &'a Bytes,
}

/// A zero-copy `Bytes` for `part`, which lies inside `owner` (copied if it somehow does not).
fn share(owner: &Bytes, part: &[u8]) -> Bytes {
    let start = (part.as_ptr() as usize).wrapping_sub(owner.as_ptr() as usize);
    match start.checked_add(part.len()) {
        Some(end) if end <= owner.len() && start <= end => owner.slice(start..end),
        _ => Bytes::copy_from_slice(part),
    }
}

impl<'a> Record<'a> {
    /// Absolute offset: the batch's base offset plus the record's offset delta.
    #[inline]
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// Timestamp in ms: base timestamp plus delta, or the batch's max timestamp when the batch
    /// is LogAppendTime (as Java reports it).
    #[inline]
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// The record attributes byte (unused by Kafka so far).
    pub fn attributes(&self) -> i8 {
        self.attributes
    }

    /// The key, or `None` for null.
    #[inline]
    pub fn key(&self) -> Option<&'a [u8]> {
        self.key
    }

    /// The value, or `None` for null (a tombstone).
    #[inline]
    pub fn value(&self) -> Option<&'a [u8]> {
        self.value
    }

    /// The key as a zero-copy `Bytes`.
    pub fn key_bytes(&self) -> Option<Bytes> {
        self.key.map(|k| share(self.owner, k))
    }

    /// The value as a zero-copy `Bytes`.
    pub fn value_bytes(&self) -> Option<Bytes> {
        self.value.map(|v| share(self.owner, v))
    }

    /// Number of headers.
    pub fn header_count(&self) -> usize {
        self.header_count as usize
    }

    /// The headers, parsed lazily from the record's bytes (already validated).
    pub fn headers(&self) -> HeaderIter<'a> {
        HeaderIter { rest: self.headers, remaining: self.header_count }
    }

    /// An owned copy that shares the batch's buffer (one reference count, no copy).
    pub fn into_owned(self) -> OwnedRecord {
        // The key, the value and the headers lie in this order inside the owner: one slice of
        // it spans them all.
        let first = self.key.or(self.value).unwrap_or(self.headers);
        let base = first.as_ptr() as usize;
        let end = (self.headers.as_ptr() as usize).wrapping_add(self.headers.len());
        let span = end.wrapping_sub(base);
        let owner_start = self.owner.as_ptr() as usize;
        let inside = base >= owner_start && span <= self.owner.len() && base - owner_start <= self.owner.len() - span;
        if !inside {
            return self.copied();
        }
        let offset = base - owner_start;
        let range = |s: &[u8]| {
            let start = (s.as_ptr() as usize).wrapping_sub(base);
            start..start.wrapping_add(s.len())
        };
        OwnedRecord {
            offset: self.offset,
            timestamp: self.timestamp,
            attributes: self.attributes,
            key: self.key.map(range),
            value: self.value.map(range),
            headers: range(self.headers),
            header_count: self.header_count,
            data: self.owner.slice(offset..offset + span),
        }
    }

    /// [`Self::into_owned`] by copying, for parts that are not inside the owner (which the
    /// iterator never produces).
    #[cold]
    fn copied(self) -> OwnedRecord {
        let mut data = Vec::new();
        let mut put = |s: &[u8]| {
            let start = data.len();
            data.extend_from_slice(s);
            start..data.len()
        };
        let key = self.key.map(&mut put);
        let value = self.value.map(&mut put);
        let headers = put(self.headers);
        OwnedRecord {
            offset: self.offset,
            timestamp: self.timestamp,
            attributes: self.attributes,
            key,
            value,
            headers,
            header_count: self.header_count,
            data: Bytes::from(data),
        }
    }
}

/// A record that owns a reference-counted slice of its batch's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    offset: i64,
    timestamp: i64,
    attributes: i8,
    key: Option<std::ops::Range<usize>>,
    value: Option<std::ops::Range<usize>>,
    headers: std::ops::Range<usize>,
    header_count: u32,
    data: Bytes,
}

impl OwnedRecord {
    /// Absolute offset.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// Timestamp in ms (see [`Record::timestamp`]).
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// The record attributes byte.
    pub fn attributes(&self) -> i8 {
        self.attributes
    }

    /// The key, or `None` for null.
    pub fn key(&self) -> Option<&[u8]> {
        self.key.clone().map(|r| self.data.get(r).unwrap_or_default())
    }

    /// The value, or `None` for null.
    pub fn value(&self) -> Option<&[u8]> {
        self.value.clone().map(|r| self.data.get(r).unwrap_or_default())
    }

    /// The key as a zero-copy `Bytes`.
    pub fn key_bytes(&self) -> Option<Bytes> {
        self.key().map(|k| share(&self.data, k))
    }

    /// The value as a zero-copy `Bytes`.
    pub fn value_bytes(&self) -> Option<Bytes> {
        self.value().map(|v| share(&self.data, v))
    }

    /// Number of headers.
    pub fn header_count(&self) -> usize {
        self.header_count as usize
    }

    /// The headers.
    pub fn headers(&self) -> HeaderIter<'_> {
        HeaderIter { rest: self.data.get(self.headers.clone()).unwrap_or_default(), remaining: self.header_count }
    }
}

/// A record header as read: the key's bytes (Kafka writes UTF-8; see
/// [`RecordHeader::key_str`]) and a nullable value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordHeader<'a> {
    /// The key's bytes.
    pub key: &'a [u8],
    /// The value, or `None` for null.
    pub value: Option<&'a [u8]>,
}

impl<'a> RecordHeader<'a> {
    /// The key as a string; [`ProtocolError::InvalidUtf8`] if it is not UTF-8.
    pub fn key_str(&self) -> Result<&'a str> {
        std::str::from_utf8(self.key).map_err(|_| ProtocolError::InvalidUtf8)
    }
}

/// Iterator over a record's headers (`Default` is an empty one).
#[derive(Debug, Clone, Default)]
pub struct HeaderIter<'a> {
    rest: &'a [u8],
    remaining: u32,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = RecordHeader<'a>;

    fn next(&mut self) -> Option<RecordHeader<'a>> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        // The headers were validated when the record was read; a failure here cannot happen
        // and simply ends the iteration.
        match parse_header(self.rest) {
            Ok((h, rest)) => {
                self.rest = rest;
                Some(h)
            }
            Err(_) => {
                self.remaining = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining as usize))
    }
}

#[cfg(test)]
mod fast_parse_tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use proptest::prelude::*;

    use super::*;

    /// A record's offset, timestamp, key, value, header bytes and count, and the bytes after it.
    type Fields = (i64, i64, Option<Vec<u8>>, Option<Vec<u8>>, Vec<u8>, usize, usize);

    /// What the checked parse makes of the first record of `data`: the record's fields and the
    /// bytes after it, or `None` for an error.
    fn checked(data: &Bytes) -> Option<Fields> {
        let records =
            Records { data: data.clone(), count: 1, base_offset: 7, base_timestamp: 1000, log_append_time: None };
        let (r, rest) = records.iter().ctx.parse_checked(data).ok()?;
        Some(fields(r, rest))
    }

    fn fields(r: Record<'_>, rest: &[u8]) -> Fields {
        (
            r.offset,
            r.timestamp,
            r.key.map(<[u8]>::to_vec),
            r.value.map(<[u8]>::to_vec),
            r.headers.to_vec(),
            r.header_count(),
            rest.len(),
        )
    }

    /// Records of every varint width, with and without keys, values and headers, then
    /// mutated: the fast parse, when it accepts, must agree with the checked one exactly.
    /// Returns whether the fast parse accepted.
    fn check(data: Vec<u8>) -> bool {
        let data = Bytes::from(data);
        let records =
            Records { data: data.clone(), count: 1, base_offset: 7, base_timestamp: 1000, log_append_time: None };
        let Some((r, rest)) = records.iter().ctx.parse_fast(&data) else { return false };
        assert_eq!(Some(fields(r, rest)), checked(&data), "{data:?}");
        true
    }

    fn record(ts: i64, key: Option<Vec<u8>>, value: Option<Vec<u8>>, headers: usize) -> Vec<u8> {
        let hs: Vec<Header<'_>> = (0..headers).map(|_| Header::new("h", Some(b"v"))).collect();
        let mut b = RecordBatchBuilder::new(BatchOptions::default());
        b.append(0, None, None, &[]).unwrap();
        b.append(ts, key.as_deref(), value.as_deref(), &hs).unwrap();
        let sealed = b.seal(ProducerState::NONE).unwrap();
        // The second record, then some bytes of whatever follows.
        let first = 7; // the first record: six one-byte fields after its length
        let mut v = sealed[RECORD_BATCH_OVERHEAD + first..].to_vec();
        v.extend_from_slice(&[0x55; 20]);
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn fast_parse_agrees_with_checked_parse(
            ts in prop_oneof![-100i64..100, -20_000i64..20_000, any::<i64>()],
            key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
            value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
            headers in 0usize..3,
            mutations in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut data = record(ts, key, value, headers);
            // Deltas within 2^19 ms fit three bytes: the fast parse takes those records.
            prop_assert_eq!(check(data.clone()), ts.unsigned_abs() < 1 << 19);
            // Every position set to the bytes that change a varint's width, sign or parity.
            for i in 0..data.len() {
                for byte in [0, 1, 2, 3, 4, 0x7e, 0x7f, 0x80, 0x81, 0xfe, 0xff] {
                    let mut d = data.clone();
                    d[i] = byte;
                    let _ = check(d);
                }
            }
            for (at, byte) in mutations {
                let i = at.index(data.len());
                data[i] = byte;
                let _ = check(data.clone());
            }
            data.truncate(cut.index(data.len() + 1));
            let _ = check(data);
        }
    }
}
