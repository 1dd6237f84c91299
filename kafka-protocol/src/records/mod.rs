//! Record batches: building (producer), reading (consumer), patching (broker), and reading the
//! legacy message sets of magic 0 and 1.
//!
//! # Layout (magic 2)
//! A batch is a 61-byte header followed by the records:
//!
//! | offset | field | type |
//! |---|---|---|
//! | 0 | baseOffset | i64 |
//! | 8 | batchLength (bytes after this field) | i32 |
//! | 12 | partitionLeaderEpoch | i32 |
//! | 16 | magic (2) | i8 |
//! | 17 | crc (CRC-32C of bytes 21..end) | u32 |
//! | 21 | attributes | i16 |
//! | 23 | lastOffsetDelta | i32 |
//! | 27 | baseTimestamp | i64 |
//! | 35 | maxTimestamp | i64 |
//! | 43 | producerId | i64 |
//! | 51 | producerEpoch | i16 |
//! | 53 | baseSequence | i32 |
//! | 57 | recordCount | i32 |
//! | 61 | records (compressed as a whole if the codec bits say so) | |
//!
//! Attributes: bits 0-2 codec, bit 3 timestamp type (1 = LogAppendTime), bit 4 transactional,
//! bit 5 control, bit 6 delete horizon set. A record is: length varint, attributes i8,
//! timestampDelta varlong, offsetDelta varint, key (varint length, -1 = null), value (same),
//! header count varint, headers (key varint length + bytes, value varint length + bytes or -1).
//!
//! # Producing
//! [`RecordBatchBuilder`] writes each record in wire form straight into one buffer and
//! compresses, fills the header and computes the CRC once, in [`RecordBatchBuilder::seal`].
//! Sealed batches can be patched in place: [`set_base_offset`], [`set_partition_leader_epoch`]
//! (outside the CRC), [`set_producer_state`] and [`set_log_append_time`] (CRC recomputed).
//!
//! # Consuming
//! [`RecordSetIter`] walks the concatenated batches of a Fetch response, zero-copy, skipping a
//! partial batch at the end. [`RecordBatch::records`] yields [`Record`]s that borrow the batch
//! (or its decompressed buffer); [`Record::into_owned`] turns one into an [`OwnedRecord`] that
//! holds a single `Bytes` slice.

use crate::compression::Compression;
use crate::error::{ProtocolError, Result};

mod batch;
mod control;
mod legacy;
mod set;

pub use batch::{
    set_base_offset, set_log_append_time, set_partition_leader_epoch, set_producer_state, BatchOptions, Header,
    HeaderIter, OwnedRecord, Record, RecordBatch, RecordBatchBuilder, RecordHeader, RecordIter, Records,
};
pub use control::{build_control_batch, ControlRecord, ControlRecordType};
pub use legacy::LegacyMessage;
pub use set::{RecordSetEntry, RecordSetIter};

/// Size of the part of every batch (and legacy message) before its length field ends:
/// baseOffset (8) + batchLength (4).
pub const LOG_OVERHEAD: usize = 12;

/// Size of the magic 2 batch header; the records start at this offset.
pub const RECORD_BATCH_OVERHEAD: usize = 61;

/// The magic byte of the current batch format.
pub const MAGIC_V2: i8 = 2;

/// `producerId` meaning "no producer" (not idempotent).
pub const NO_PRODUCER_ID: i64 = -1;
/// `producerEpoch` meaning "no producer".
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// `baseSequence` meaning "no sequence".
pub const NO_SEQUENCE: i32 = -1;
/// `partitionLeaderEpoch` meaning "unknown" (what producers send).
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;
/// A timestamp meaning "none" (empty batches, magic 1 messages without one).
pub const NO_TIMESTAMP: i64 = -1;

/// Byte offsets of the fields of the magic 2 batch header.
pub mod offsets {
    /// baseOffset (i64).
    pub const BASE_OFFSET: usize = 0;
    /// batchLength (i32).
    pub const BATCH_LENGTH: usize = 8;
    /// partitionLeaderEpoch (i32).
    pub const PARTITION_LEADER_EPOCH: usize = 12;
    /// magic (i8).
    pub const MAGIC: usize = 16;
    /// crc (u32).
    pub const CRC: usize = 17;
    /// attributes (i16); the CRC covers the batch from here to its end.
    pub const ATTRIBUTES: usize = 21;
    /// lastOffsetDelta (i32).
    pub const LAST_OFFSET_DELTA: usize = 23;
    /// baseTimestamp (i64).
    pub const BASE_TIMESTAMP: usize = 27;
    /// maxTimestamp (i64).
    pub const MAX_TIMESTAMP: usize = 35;
    /// producerId (i64).
    pub const PRODUCER_ID: usize = 43;
    /// producerEpoch (i16).
    pub const PRODUCER_EPOCH: usize = 51;
    /// baseSequence (i32).
    pub const BASE_SEQUENCE: usize = 53;
    /// recordCount (i32).
    pub const RECORD_COUNT: usize = 57;
}

/// Attribute bits of a magic 2 batch.
pub mod attributes {
    /// Bits 0-2: the compression codec id.
    pub const COMPRESSION_MASK: i16 = 0x07;
    /// Bit 3: timestamps are LogAppendTime (set by the broker).
    pub const TIMESTAMP_TYPE: i16 = 0x08;
    /// Bit 4: the batch belongs to a transaction.
    pub const TRANSACTIONAL: i16 = 0x10;
    /// Bit 5: the batch holds control records (transaction markers).
    pub const CONTROL: i16 = 0x20;
    /// Bit 6: `baseTimestamp` holds the delete horizon set by the log cleaner (KIP-534).
    pub const DELETE_HORIZON: i16 = 0x40;
}

/// How a batch's timestamps were assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TimestampType {
    /// Set by the producer (attribute bit 3 clear).
    #[default]
    CreateTime,
    /// Set by the broker when it appended the batch (attribute bit 3 set); every record's
    /// timestamp is then the batch's `maxTimestamp`.
    LogAppendTime,
}

/// The producer identity and first sequence number of a batch (idempotence / transactions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProducerState {
    /// The producer id from InitProducerId, or -1.
    pub producer_id: i64,
    /// The producer epoch, or -1.
    pub producer_epoch: i16,
    /// The sequence number of the batch's first record, or -1.
    pub base_sequence: i32,
}

impl ProducerState {
    /// No producer id, epoch or sequence: a non-idempotent producer.
    pub const NONE: ProducerState =
        ProducerState { producer_id: NO_PRODUCER_ID, producer_epoch: NO_PRODUCER_EPOCH, base_sequence: NO_SEQUENCE };
}

impl Default for ProducerState {
    fn default() -> Self {
        ProducerState::NONE
    }
}

/// The 61-byte header of a magic 2 record batch, every field as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordBatchHeader {
    /// Offset of the first record (assigned by the broker; 0 from producers).
    pub base_offset: i64,
    /// Bytes after the length field: the batch's total size minus [`LOG_OVERHEAD`].
    pub batch_length: i32,
    /// Leader epoch of the partition when the batch was appended, or -1.
    pub partition_leader_epoch: i32,
    /// The format version; 2.
    pub magic: i8,
    /// CRC-32C of the bytes from the attributes to the end of the batch.
    pub crc: u32,
    /// The attribute bits (see [`attributes`]).
    pub attributes: i16,
    /// Offset delta of the last record (its offset minus `base_offset`).
    pub last_offset_delta: i32,
    /// Timestamp of the first record (or the delete horizon, see
    /// [`RecordBatchHeader::has_delete_horizon`]); record timestamps are deltas from it.
    pub base_timestamp: i64,
    /// The largest record timestamp, or the log append time for LogAppendTime batches.
    pub max_timestamp: i64,
    /// Producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub record_count: i32,
}

impl RecordBatchHeader {
    /// Parses the header at the start of `bytes` (which may hold more after it). Checks only
    /// that 61 bytes are there and that the magic is 2; [`RecordBatch::from_bytes`] checks the
    /// rest.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let Some((h, _)) = bytes.split_first_chunk::<RECORD_BATCH_OVERHEAD>() else {
            return Err(ProtocolError::Truncated { needed: RECORD_BATCH_OVERHEAD, remaining: bytes.len() });
        };
        let mut r = FixedReader(h);
        let header = RecordBatchHeader {
            base_offset: r.i64(),
            batch_length: r.i32(),
            partition_leader_epoch: r.i32(),
            magic: r.i8(),
            crc: r.i32() as u32,
            attributes: r.i16(),
            last_offset_delta: r.i32(),
            base_timestamp: r.i64(),
            max_timestamp: r.i64(),
            producer_id: r.i64(),
            producer_epoch: r.i16(),
            base_sequence: r.i32(),
            record_count: r.i32(),
        };
        if header.magic != MAGIC_V2 {
            return Err(ProtocolError::UnsupportedMagic(header.magic));
        }
        Ok(header)
    }

    /// The header in wire form.
    pub fn to_bytes(&self) -> [u8; RECORD_BATCH_OVERHEAD] {
        let mut out = [0u8; RECORD_BATCH_OVERHEAD];
        let mut w = FixedWriter(&mut out);
        w.put(&self.base_offset.to_be_bytes());
        w.put(&self.batch_length.to_be_bytes());
        w.put(&self.partition_leader_epoch.to_be_bytes());
        w.put(&self.magic.to_be_bytes());
        w.put(&self.crc.to_be_bytes());
        w.put(&self.attributes.to_be_bytes());
        w.put(&self.last_offset_delta.to_be_bytes());
        w.put(&self.base_timestamp.to_be_bytes());
        w.put(&self.max_timestamp.to_be_bytes());
        w.put(&self.producer_id.to_be_bytes());
        w.put(&self.producer_epoch.to_be_bytes());
        w.put(&self.base_sequence.to_be_bytes());
        w.put(&self.record_count.to_be_bytes());
        out
    }

    /// The codec named by the attribute bits; ids 5-7 are [`ProtocolError::UnknownCompression`].
    pub fn compression(&self) -> Result<Compression> {
        Compression::from_id((self.attributes & attributes::COMPRESSION_MASK) as u8)
    }

    /// CreateTime or LogAppendTime (attribute bit 3).
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & attributes::TIMESTAMP_TYPE != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Whether the batch is part of a transaction (attribute bit 4).
    pub fn is_transactional(&self) -> bool {
        self.attributes & attributes::TRANSACTIONAL != 0
    }

    /// Whether the batch holds control records (attribute bit 5).
    pub fn is_control(&self) -> bool {
        self.attributes & attributes::CONTROL != 0
    }

    /// Whether `base_timestamp` holds the log cleaner's delete horizon (attribute bit 6).
    pub fn has_delete_horizon(&self) -> bool {
        self.attributes & attributes::DELETE_HORIZON != 0
    }

    /// The delete horizon in ms, when [`Self::has_delete_horizon`].
    pub fn delete_horizon_ms(&self) -> Option<i64> {
        self.has_delete_horizon().then_some(self.base_timestamp)
    }

    /// Offset of the last record: `base_offset + last_offset_delta`.
    pub fn last_offset(&self) -> i64 {
        self.base_offset.wrapping_add(i64::from(self.last_offset_delta))
    }

    /// The offset after the batch: `last_offset() + 1`.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().wrapping_add(1)
    }

    /// Producer id, epoch and base sequence.
    pub fn producer_state(&self) -> ProducerState {
        ProducerState {
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
        }
    }

    /// Sequence of the last record, wrapping past `i32::MAX` to 0 as Kafka does; -1 without a
    /// sequence.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence == NO_SEQUENCE {
            return NO_SEQUENCE;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        if last > i64::from(i32::MAX) {
            (last - i64::from(i32::MAX) - 1) as i32
        } else {
            last as i32
        }
    }

    /// Total size of the batch on the wire: `batch_length + 12`.
    pub fn size_in_bytes(&self) -> usize {
        (self.batch_length.max(0) as usize).saturating_add(LOG_OVERHEAD)
    }
}

/// Reads big-endian integers from a buffer whose length was checked up front.
pub(crate) struct FixedReader<'a>(pub(crate) &'a [u8]);

impl FixedReader<'_> {
    #[inline]
    fn take<const N: usize>(&mut self) -> [u8; N] {
        match self.0.split_first_chunk::<N>() {
            Some((v, rest)) => {
                self.0 = rest;
                *v
            }
            None => [0; N],
        }
    }
    /// Reads an i8.
    pub(crate) fn i8(&mut self) -> i8 {
        i8::from_be_bytes(self.take())
    }
    /// Reads an i16.
    pub(crate) fn i16(&mut self) -> i16 {
        i16::from_be_bytes(self.take())
    }
    /// Reads an i32.
    pub(crate) fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take())
    }
    /// Reads an i64.
    pub(crate) fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.take())
    }
}

/// Writes into a buffer whose length was checked up front; bytes past its end are dropped.
pub(crate) struct FixedWriter<'a>(pub(crate) &'a mut [u8]);

impl FixedWriter<'_> {
    pub(crate) fn put(&mut self, bytes: &[u8]) {
        let buf = std::mem::take(&mut self.0);
        let n = bytes.len().min(buf.len());
        let (head, tail) = buf.split_at_mut(n);
        head.copy_from_slice(bytes.get(..n).unwrap_or_default());
        self.0 = tail;
    }
}

/// Reads a big-endian `i32` at `at`, if the bytes are there.
#[inline]
pub(crate) fn i32_at(bytes: &[u8], at: usize) -> Option<i32> {
    let (b, _) = bytes.get(at..)?.split_first_chunk::<4>()?;
    Some(i32::from_be_bytes(*b))
}

/// Reads a big-endian `i64` at `at`, if the bytes are there.
#[inline]
pub(crate) fn i64_at(bytes: &[u8], at: usize) -> Option<i64> {
    let (b, _) = bytes.get(at..)?.split_first_chunk::<8>()?;
    Some(i64::from_be_bytes(*b))
}

/// Overwrites bytes at `at`, if they are there.
#[inline]
pub(crate) fn put_at(bytes: &mut [u8], at: usize, value: &[u8]) -> bool {
    match bytes.get_mut(at..at.saturating_add(value.len())) {
        Some(slot) => {
            slot.copy_from_slice(value);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod batch_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_offsets_match_layout() {
        let h = RecordBatchHeader {
            base_offset: 1,
            batch_length: 2,
            partition_leader_epoch: 3,
            magic: 2,
            crc: 5,
            attributes: 6,
            last_offset_delta: 7,
            base_timestamp: 8,
            max_timestamp: 9,
            producer_id: 10,
            producer_epoch: 11,
            base_sequence: 12,
            record_count: 13,
        };
        let b = h.to_bytes();
        assert_eq!(i64_at(&b, offsets::BASE_OFFSET), Some(1));
        assert_eq!(i32_at(&b, offsets::BATCH_LENGTH), Some(2));
        assert_eq!(i32_at(&b, offsets::PARTITION_LEADER_EPOCH), Some(3));
        assert_eq!(b[offsets::MAGIC], 2);
        assert_eq!(i32_at(&b, offsets::CRC), Some(5));
        assert_eq!(i16::from_be_bytes([b[offsets::ATTRIBUTES], b[offsets::ATTRIBUTES + 1]]), 6);
        assert_eq!(i32_at(&b, offsets::LAST_OFFSET_DELTA), Some(7));
        assert_eq!(i64_at(&b, offsets::BASE_TIMESTAMP), Some(8));
        assert_eq!(i64_at(&b, offsets::MAX_TIMESTAMP), Some(9));
        assert_eq!(i64_at(&b, offsets::PRODUCER_ID), Some(10));
        assert_eq!(i16::from_be_bytes([b[offsets::PRODUCER_EPOCH], b[offsets::PRODUCER_EPOCH + 1]]), 11);
        assert_eq!(i32_at(&b, offsets::BASE_SEQUENCE), Some(12));
        assert_eq!(i32_at(&b, offsets::RECORD_COUNT), Some(13));
    }

    #[test]
    fn crc32c_known_vector() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn header_round_trip_and_accessors() {
        let h = RecordBatchHeader {
            base_offset: 1000,
            batch_length: 100,
            partition_leader_epoch: 7,
            magic: 2,
            crc: 0xdead_beef,
            attributes: 0x7f,
            last_offset_delta: 9,
            base_timestamp: 1,
            max_timestamp: 2,
            producer_id: 3,
            producer_epoch: 4,
            base_sequence: i32::MAX - 3,
            record_count: 10,
        };
        let bytes = h.to_bytes();
        assert_eq!(RecordBatchHeader::parse(&bytes).unwrap(), h);
        assert_eq!(h.compression(), Err(ProtocolError::UnknownCompression(7)));
        assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
        assert!(h.is_transactional() && h.is_control() && h.has_delete_horizon());
        assert_eq!(h.delete_horizon_ms(), Some(1));
        assert_eq!(h.last_offset(), 1009);
        assert_eq!(h.next_offset(), 1010);
        assert_eq!(h.last_sequence(), 5);
        assert_eq!(h.size_in_bytes(), 112);
        assert!(matches!(RecordBatchHeader::parse(&bytes[..60]), Err(ProtocolError::Truncated { .. })));
        let mut v1 = bytes;
        v1[16] = 1;
        assert_eq!(RecordBatchHeader::parse(&v1), Err(ProtocolError::UnsupportedMagic(1)));
    }
}
