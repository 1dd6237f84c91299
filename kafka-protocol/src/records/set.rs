//! Iterating the concatenated batches of a records blob (what Fetch returns).

use bytes::Bytes;

use super::legacy::MIN_LEGACY_MESSAGE_SIZE;
use super::{i32_at, i64_at, offsets, LegacyMessage, RecordBatch, LOG_OVERHEAD, MAGIC_V2, RECORD_BATCH_OVERHEAD};
use crate::error::{ProtocolError, Result};

/// Bytes needed to see an entry's magic byte: offset, length, epoch or crc, magic.
const HEADER_SIZE_UP_TO_MAGIC: usize = offsets::MAGIC + 1;

/// One entry of a records blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordSetEntry {
    /// A magic 2 batch.
    Batch(RecordBatch),
    /// A magic 0 or 1 message (possibly a compressed wrapper: see [`LegacyMessage::flatten`]).
    Legacy(LegacyMessage),
}

impl RecordSetEntry {
    /// The entry's first offset (for a magic 1 wrapper, the offset it carries, which is that
    /// of its last inner message).
    pub fn base_offset(&self) -> i64 {
        match self {
            RecordSetEntry::Batch(b) => b.header().base_offset,
            RecordSetEntry::Legacy(m) => m.offset,
        }
    }

    /// The entry's last offset (see [`RecordSetEntry::base_offset`] for legacy messages).
    pub fn last_offset(&self) -> i64 {
        match self {
            RecordSetEntry::Batch(b) => b.header().last_offset(),
            RecordSetEntry::Legacy(m) => m.offset,
        }
    }

    /// The entry's size on the wire.
    pub fn size_in_bytes(&self) -> usize {
        match self {
            RecordSetEntry::Batch(b) => b.as_bytes().len(),
            RecordSetEntry::Legacy(m) => m.as_bytes().len(),
        }
    }
}

/// Iterator over the entries of a records blob, each a zero-copy slice of it.
///
/// A last entry cut short (the broker fills a fetch up to its byte limit) ends the iteration
/// silently; [`RecordSetIter::partial_tail_len`] tells how many bytes were skipped. A length
/// below the minimum, a negative length or an unknown magic is an error, after which the
/// iterator ends.
#[derive(Debug, Clone)]
pub struct RecordSetIter {
    data: Bytes,
    partial_tail: usize,
    done: bool,
}

impl RecordSetIter {
    /// Iterates the entries of `data`.
    pub fn new(data: Bytes) -> Self {
        RecordSetIter { data, partial_tail: 0, done: false }
    }

    /// Bytes of an incomplete entry skipped at the end (0 if none, or not reached yet).
    pub fn partial_tail_len(&self) -> usize {
        self.partial_tail
    }

    /// Whether an incomplete entry was skipped at the end.
    pub fn has_partial_tail(&self) -> bool {
        self.partial_tail > 0
    }

    /// The bytes not yet consumed.
    pub fn remaining(&self) -> &Bytes {
        &self.data
    }

    fn next_entry(&mut self) -> Result<Option<RecordSetEntry>> {
        let remaining = self.data.len();
        if remaining == 0 {
            return Ok(None);
        }
        let length = match (i64_at(&self.data, 0), i32_at(&self.data, offsets::BATCH_LENGTH)) {
            (Some(_), Some(length)) if remaining >= HEADER_SIZE_UP_TO_MAGIC => length,
            _ => {
                self.partial_tail = remaining;
                self.data.clear();
                return Ok(None);
            }
        };
        if length < 0 || (length as usize) < MIN_LEGACY_MESSAGE_SIZE {
            return Err(ProtocolError::InvalidLength { what: "record batch", length: i64::from(length) });
        }
        let size = length as usize + LOG_OVERHEAD;
        if size > remaining {
            self.partial_tail = remaining;
            self.data.clear();
            return Ok(None);
        }
        let magic = self.data.get(offsets::MAGIC).map(|m| *m as i8).unwrap_or(-1);
        match magic {
            MAGIC_V2 => {
                if size < RECORD_BATCH_OVERHEAD {
                    return Err(ProtocolError::InvalidLength { what: "record batch", length: i64::from(length) });
                }
                RecordBatch::from_bytes(self.data.split_to(size)).map(|b| Some(RecordSetEntry::Batch(b)))
            }
            0 | 1 => LegacyMessage::parse(self.data.split_to(size)).map(|m| Some(RecordSetEntry::Legacy(m))),
            other => Err(ProtocolError::UnsupportedMagic(other)),
        }
    }
}

impl Iterator for RecordSetIter {
    type Item = Result<RecordSetEntry>;

    fn next(&mut self) -> Option<Result<RecordSetEntry>> {
        if self.done {
            return None;
        }
        match self.next_entry() {
            Ok(Some(entry)) => Some(Ok(entry)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl std::iter::FusedIterator for RecordSetIter {}
