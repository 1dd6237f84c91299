//! One partition's log: record batches kept in wire form, offsets assigned by patching each
//! batch's header in place, the producer state that makes idempotent retries safe, the
//! transaction bookkeeping behind the last stable offset, and the retention and compaction
//! that trim the log.
//!
//! Replication is simulated (one log per partition), so the high watermark is the log end
//! offset. Transactions (Kafka's `ProducerStateManager`): a producer's first transactional
//! batch opens its transaction on the partition at that batch's offset; the COMMIT or ABORT
//! marker written by the transaction coordinator closes it. The last stable offset is the
//! first offset of the oldest open transaction (never below the log start offset), or the
//! high watermark when none is open. Aborted transactions are remembered (producer id, first
//! offset, marker offset) for read_committed fetches, until retention or DeleteRecords moves
//! the log start past their marker.

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::{Bytes, BytesMut};
use kafka_protocol::compression::DEFAULT_DECOMPRESS_LIMIT;
use kafka_protocol::records::{
    self, BatchOptions, ControlRecordType, Header, ProducerState, RecordBatch, RecordBatchBuilder, RecordBatchHeader,
    TimestampType,
};
use kafka_protocol::ErrorCode;

use crate::configs::LogSettings;

/// Batches the broker remembers per producer and partition for duplicate detection (Kafka's
/// `NUM_BATCHES_TO_RETAIN`): hence a producer's max in-flight requests of 5.
pub(crate) const PRODUCER_BATCHES_RETAINED: usize = 5;

/// One batch in the log.
#[derive(Debug, Clone)]
pub(crate) struct StoredBatch {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The largest timestamp in the batch (the append time on LogAppendTime topics).
    pub max_timestamp: i64,
    /// The broker's clock when the batch was appended.
    pub append_time_ms: i64,
    /// The segment the batch belongs to: retention deletes whole segments.
    pub segment: u64,
    /// The batch as it is served: header patched with offsets and leader epoch.
    pub data: Bytes,
}

/// A batch a producer wrote, remembered for duplicate detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerBatch {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
    pub timestamp: i64,
}

/// What the partition knows of one producer id.
#[derive(Debug, Clone)]
pub(crate) struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<ProducerBatch>,
    pub last_timestamp: i64,
    /// The first offset of the producer's open transaction on this partition.
    pub current_txn_first_offset: Option<i64>,
    /// The coordinator epoch of the last marker written for the producer (-1: none).
    pub coordinator_epoch: i32,
}

impl Default for ProducerEntry {
    fn default() -> Self {
        ProducerEntry {
            epoch: 0,
            batches: VecDeque::new(),
            last_timestamp: -1,
            current_txn_first_offset: None,
            coordinator_epoch: -1,
        }
    }
}

impl ProducerEntry {
    /// The last sequence written, -1 if none.
    pub fn last_seq(&self) -> i32 {
        self.batches.back().map_or(-1, |b| b.last_seq)
    }
}

/// The outcome of a successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Appended {
    pub base_offset: i64,
    /// The append time on LogAppendTime topics, -1 otherwise.
    pub log_append_time_ms: i64,
    /// Whether the batch was a retry of one already in the log (nothing was written).
    pub duplicate: bool,
}

/// A produce refused for one partition: the code and Kafka's message.
pub(crate) type Refusal = (ErrorCode, String);

/// An aborted transaction on this partition (an entry of Kafka's transaction index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AbortedTxn {
    pub producer_id: i64,
    /// The offset of the transaction's first batch on this partition.
    pub first_offset: i64,
    /// The offset of its ABORT marker.
    pub last_offset: i64,
}

/// What a read returned.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReadResult {
    /// Whole batches, then possibly the first bytes of the next one (cut by the byte limit,
    /// as Kafka's log slice is).
    pub records: Bytes,
    /// Whether any complete batch was returned.
    pub complete_batches: usize,
    /// The offset after the last batch whose bytes (all or some) were returned; the read's
    /// start offset if nothing was.
    pub end_offset: i64,
    /// The read ended at a large batch's boundary ([`STANDALONE_BATCH`]) although more data
    /// below the bound was within the byte limit: a long-polling fetch must not wait for
    /// more, since more is there.
    pub cut_short: bool,
}

/// A partition's log.
#[derive(Debug, Default)]
pub(crate) struct PartitionLog {
    batches: VecDeque<StoredBatch>,
    log_start_offset: i64,
    next_offset: i64,
    size_bytes: usize,
    segment: u64,
    segment_bytes: usize,
    segment_created_ms: i64,
    /// Producer id -> state, for idempotence.
    pub producers: HashMap<i64, ProducerEntry>,
    /// Leader epoch -> the first offset written in it (Kafka's leader epoch cache), ascending.
    epochs: Vec<(i32, i64)>,
    /// Open transactions: first offset -> producer id (the first key is the first unstable offset).
    ongoing_txns: BTreeMap<i64, i64>,
    /// Aborted transactions, in the order of their markers.
    aborted_txns: VecDeque<AbortedTxn>,
    /// Data of large batches that retention or DeleteRecords dropped, for the state task to
    /// offer back to the buffer pool ([`Self::take_freed`]).
    freed: Vec<Bytes>,
}

impl PartitionLog {
    /// The first offset still in the log.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// The offset the next record gets (log end offset).
    pub fn log_end_offset(&self) -> i64 {
        self.next_offset
    }

    /// The high watermark: every appended record is "replicated" at once.
    pub fn high_watermark(&self) -> i64 {
        self.next_offset
    }

    /// The first offset of the oldest open transaction, never below the log start offset
    /// (Kafka's `maybeIncrementFirstUnstableOffset`); `None` when no transaction is open.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing_txns.keys().next().map(|first| (*first).max(self.log_start_offset))
    }

    /// The last stable offset: the first unstable offset if it is below the high watermark,
    /// else the high watermark. read_committed consumers read up to it.
    pub fn last_stable_offset(&self) -> i64 {
        let hw = self.high_watermark();
        match self.first_unstable_offset() {
            Some(first) if first < hw => first,
            _ => hw,
        }
    }

    /// Whether `producer_id` has a transaction open on this partition.
    pub fn has_ongoing_txn(&self, producer_id: i64) -> bool {
        self.producers.get(&producer_id).is_some_and(|e| e.current_txn_first_offset.is_some())
    }

    /// The aborted transactions a read_committed fetch of `[from, to)` must report (Kafka's
    /// `collectAbortedTransactions`): those whose marker is at or after `from` and whose first
    /// batch is before `to`.
    pub fn aborted_txns_in(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        // Markers are appended in offset order, so the entries ending before `from` come first.
        let start = self.aborted_txns.partition_point(|a| a.last_offset < from);
        self.aborted_txns.range(start..).filter(|a| a.first_offset < to).copied().collect()
    }

    /// Forgets the idempotence state of every producer without an open transaction (a broker
    /// that lost it). Open transactions stay: Kafka rebuilds them from the log.
    pub fn forget_producers(&mut self) {
        self.producers.retain(|_, e| e.current_txn_first_offset.is_some());
    }

    /// Writes a transaction marker (COMMIT or ABORT control batch) for `producer_id`, closing
    /// its open transaction here (Kafka's `appendEndTxnMarker`): the last stable offset moves
    /// past it, and an aborted transaction is remembered for read_committed fetches. A marker
    /// for a producer with nothing open closes nothing. Returns the marker's offset.
    #[allow(clippy::too_many_arguments)]
    pub fn append_marker(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
        leader_epoch: i32,
        now_ms: i64,
        settings: &LogSettings,
    ) -> Result<i64, Refusal> {
        if let Some(entry) = self.producers.get(&producer_id) {
            if producer_epoch < entry.epoch {
                return Err((
                    ErrorCode::InvalidProducerEpoch,
                    format!(
                        "Epoch of producer {producer_id} at offset {} is {producer_epoch}, which is smaller than the last seen epoch {}",
                        self.next_offset, entry.epoch
                    ),
                ));
            }
            if entry.coordinator_epoch > coordinator_epoch {
                return Err((
                    ErrorCode::TransactionCoordinatorFenced,
                    format!(
                        "Invalid coordinator epoch for producerId {producer_id}: {coordinator_epoch} (zombie), {} (current)",
                        entry.coordinator_epoch
                    ),
                ));
            }
        }
        let kind = if commit { ControlRecordType::Commit } else { ControlRecordType::Abort };
        let data =
            records::build_control_batch(producer_id, producer_epoch, kind, coordinator_epoch, now_ms, leader_epoch);
        let offset = self.next_offset;
        let mut buf = BytesMut::from(&data[..]);
        records::set_base_offset(&mut buf, offset).map_err(|e| (ErrorCode::CorruptMessage, e.to_string()))?;
        self.push(
            StoredBatch {
                base_offset: offset,
                last_offset: offset,
                max_timestamp: now_ms,
                append_time_ms: now_ms,
                segment: 0,
                data: buf.freeze(),
            },
            settings,
        );
        let entry = self.producers.entry(producer_id).or_default();
        if entry.epoch != producer_epoch {
            entry.batches.clear();
            entry.epoch = producer_epoch;
        }
        entry.coordinator_epoch = coordinator_epoch;
        entry.last_timestamp = now_ms;
        if let Some(first) = entry.current_txn_first_offset.take() {
            self.ongoing_txns.remove(&first);
            if !commit {
                self.aborted_txns.push_back(AbortedTxn { producer_id, first_offset: first, last_offset: offset });
            }
        }
        Ok(offset)
    }

    /// Drops aborted transactions whose marker is below the log start offset (Kafka deletes
    /// their transaction index with the segment).
    fn trim_aborted_txns(&mut self) {
        while self.aborted_txns.front().is_some_and(|a| a.last_offset < self.log_start_offset) {
            self.aborted_txns.pop_front();
        }
    }

    /// Bytes of stored batches.
    pub fn size_bytes(&self) -> usize {
        self.size_bytes
    }

    /// [`PartitionLog::append_owned`] of a copy.
    #[cfg(test)]
    pub fn append(
        &mut self,
        data: &Bytes,
        settings: &LogSettings,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<Appended, Refusal> {
        self.append_owned(data.clone(), settings, leader_epoch, now_ms)
    }

    /// Validates a batch from a producer and appends it, or recognizes it as a retry.
    ///
    /// `data` must hold exactly one record batch (the produce handler checked the count).
    /// When nothing else holds `data`'s buffer (a large produce request's frame, read into a
    /// buffer of its own), the batch is stored where it is, its offsets patched in place;
    /// otherwise it is copied.
    pub fn append_owned(
        &mut self,
        data: Bytes,
        settings: &LogSettings,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<Appended, Refusal> {
        let (header, records_max_ts) = validate(&data, settings, now_ms)?;
        let h = &header;
        let count = h.record_count;
        let idempotent = h.producer_id >= 0;
        let transactional = h.is_transactional();
        if idempotent {
            if let Some(dup) = self.check_sequence(h.producer_id, h.producer_epoch, h.base_sequence, count)? {
                return Ok(Appended { base_offset: dup.base_offset, log_append_time_ms: -1, duplicate: true });
            }
            if !transactional && self.has_ongoing_txn(h.producer_id) {
                return Err((
                    ErrorCode::InvalidTxnState,
                    format!(
                        "Expected transactional write from producer {} at offset {} in partition",
                        h.producer_id, self.next_offset
                    ),
                ));
            }
        }
        let base_offset = self.next_offset;
        // In place only when the buffer ends about where the batch does (within 4 KiB or an
        // eighth of the batch): a frame padded after its batch (decoders ignore trailing
        // bytes) must not stay alive, up to the frame size limit, behind a small stored batch.
        let mut buf = match data.try_into_mut() {
            Ok(own) if own.capacity() - own.len() <= crate::pool::allowed_slack(own.len()) => own,
            Ok(own) => BytesMut::from(&own[..]),
            Err(shared) => BytesMut::from(&shared[..]),
        };
        let patch = |e: kafka_protocol::ProtocolError| (ErrorCode::CorruptMessage, e.to_string());
        records::set_base_offset(&mut buf, base_offset).map_err(patch)?;
        records::set_partition_leader_epoch(&mut buf, leader_epoch).map_err(patch)?;
        let mut log_append_time_ms = -1;
        let mut max_timestamp = records_max_ts;
        if settings.log_append_time {
            records::set_log_append_time(&mut buf, now_ms).map_err(patch)?;
            log_append_time_ms = now_ms;
            max_timestamp = now_ms;
        }
        let last_offset = base_offset + i64::from(count.max(1)) - 1;
        self.push(
            StoredBatch {
                base_offset,
                last_offset,
                max_timestamp,
                append_time_ms: now_ms,
                segment: 0,
                data: buf.freeze(),
            },
            settings,
        );
        if idempotent {
            let entry = self.producers.entry(h.producer_id).or_default();
            if entry.epoch != h.producer_epoch {
                entry.batches.clear();
            }
            entry.epoch = h.producer_epoch;
            entry.last_timestamp = max_timestamp;
            entry.batches.push_back(ProducerBatch {
                first_seq: h.base_sequence,
                last_seq: last_seq(h.base_sequence, count),
                base_offset,
                last_offset,
                timestamp: max_timestamp,
            });
            while entry.batches.len() > PRODUCER_BATCHES_RETAINED {
                entry.batches.pop_front();
            }
            if transactional && entry.current_txn_first_offset.is_none() {
                entry.current_txn_first_offset = Some(base_offset);
                self.ongoing_txns.insert(base_offset, h.producer_id);
            }
        }
        Ok(Appended { base_offset, log_append_time_ms, duplicate: false })
    }

    /// Appends a batch built by the broker itself (control batches, compaction output).
    pub fn push(&mut self, mut batch: StoredBatch, settings: &LogSettings) {
        let roll = self.segment_bytes > 0
            && (self.segment_bytes.saturating_add(batch.data.len()) > settings.segment_bytes.max(1) as usize
                || batch.append_time_ms.saturating_sub(self.segment_created_ms) >= settings.segment_ms);
        if roll || self.batches.is_empty() && self.segment_bytes == 0 {
            if roll {
                self.segment += 1;
            }
            self.segment_bytes = 0;
            self.segment_created_ms = batch.append_time_ms;
        }
        batch.segment = self.segment;
        let epoch = batch.data.get(12..16).and_then(|b| <[u8; 4]>::try_from(b).ok()).map_or(-1, i32::from_be_bytes);
        if epoch >= 0 && self.epochs.last().map_or(true, |(e, _)| *e < epoch) {
            self.epochs.push((epoch, batch.base_offset));
        }
        self.segment_bytes += batch.data.len();
        self.size_bytes += batch.data.len();
        self.next_offset = batch.last_offset + 1;
        self.batches.push_back(batch);
        // Size retention also runs here, not only in the background, once the log has grown a
        // whole segment past `retention.bytes`: a log fed faster than the housekeeping
        // interval then stays within its bound, and the buffers it drops are reused by the
        // next produce requests while they are still resident (see `crate::pool`). Checking
        // is a comparison; deleting walks the oldest segment once per segment appended.
        if settings.delete
            && settings.retention_bytes >= 0
            && self.size_bytes as i64 >= settings.retention_bytes.saturating_add(settings.segment_bytes.max(1))
        {
            self.delete_segments(settings, None);
        }
    }

    /// Checks a producer's epoch and sequence (Kafka's `ProducerAppendInfo`): `Ok(Some)` is a
    /// retry of a batch already written, `Ok(None)` the next batch in sequence.
    fn check_sequence(
        &self,
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        count: i32,
    ) -> Result<Option<ProducerBatch>, Refusal> {
        let Some(entry) = self.producers.get(&producer_id) else {
            // Nothing known of this producer here: a first batch starts at 0. Anything else
            // means the broker lost (or never had) its state, as after a restart with the
            // producer's batches deleted: the producer must reset (KIP-360).
            if first_seq != 0 {
                return Err((
                    ErrorCode::UnknownProducerId,
                    format!("Found no record of producerId={producer_id} on the broker; it must have expired or been lost. Sequence {first_seq} cannot start a producer's history."),
                ));
            }
            return Ok(None);
        };
        if epoch < entry.epoch {
            return Err((
                ErrorCode::InvalidProducerEpoch,
                format!(
                    "Epoch of producer {producer_id} is {epoch}, which is smaller than the last seen epoch {}",
                    entry.epoch
                ),
            ));
        }
        if epoch > entry.epoch {
            if first_seq != 0 {
                return Err((
                    ErrorCode::OutOfOrderSequenceNumber,
                    format!("Invalid sequence number for new epoch of producer {producer_id} at epoch {epoch}: {first_seq} (request epoch), 0 (expected)"),
                ));
            }
            return Ok(None);
        }
        let last = last_seq(first_seq, count);
        if let Some(dup) = entry.batches.iter().find(|b| b.first_seq == first_seq && b.last_seq == last) {
            return Ok(Some(*dup));
        }
        let current = entry.last_seq();
        let expected = if current == i32::MAX { 0 } else { current + 1 };
        if first_seq != expected {
            return Err((
                ErrorCode::OutOfOrderSequenceNumber,
                format!("Out of order sequence number for producer {producer_id} at offset {} in partition: {first_seq} (incoming seq. number), {current} (current end sequence number)", self.next_offset),
            ));
        }
        Ok(None)
    }

    /// The leader epoch of the record at `offset` (-1 if unknown).
    pub fn epoch_at(&self, offset: i64) -> i32 {
        self.epochs.iter().rev().find(|(_, start)| *start <= offset).map_or(-1, |(e, _)| *e)
    }

    /// Kafka's OffsetForLeaderEpoch answer (`LeaderEpochFileCache.endOffsetFor`): for the
    /// current epoch, the log end; for an older one, the largest epoch at most `epoch` and
    /// the offset where the next epoch starts; `(-1, -1)` for an epoch newer than the current.
    /// A leader records its epoch when it takes over, so `current_epoch` counts as started at
    /// the log end if nothing was written in it yet.
    pub fn end_offset_for_epoch(&self, epoch: i32, current_epoch: i32) -> (i32, i64) {
        let mut cache = self.epochs.clone();
        if cache.last().map_or(true, |(e, _)| *e < current_epoch) {
            cache.push((current_epoch, self.next_offset));
        }
        if epoch < 0 {
            return (-1, -1);
        }
        if cache.last().is_some_and(|(e, _)| *e == epoch) {
            return (epoch, self.next_offset);
        }
        let Some((_, higher_start)) = cache.iter().find(|(e, _)| *e > epoch) else {
            return (-1, -1);
        };
        match cache.iter().rev().find(|(e, _)| *e <= epoch) {
            Some((floor, _)) => (*floor, *higher_start),
            None => (epoch, *higher_start),
        }
    }

    /// Index of the batch holding `offset`, or of the first batch after it.
    ///
    /// (See [`STANDALONE_BATCH`] for how reads treat large batches.)
    fn batch_index(&self, offset: i64) -> usize {
        self.batches.partition_point(|b| b.last_offset < offset)
    }

    /// Reads from `offset` up to `max_bytes` (but at least one whole batch when
    /// `min_one_batch`, KIP-74), not past `upper` (the high watermark or last stable offset):
    /// only batches that end before it.
    /// The caller checked that `offset` is within the log.
    pub fn read(&self, offset: i64, max_bytes: usize, min_one_batch: bool, upper: i64) -> ReadResult {
        let mut idx = self.batch_index(offset);
        let mut parts: Vec<&Bytes> = Vec::new();
        let mut total = 0usize;
        let mut tail: Option<Bytes> = None;
        let mut end_offset = offset;
        let mut cut_short = false;
        while let Some(b) = self.batches.get(idx) {
            // The batch holding `upper` is not returned: an LSO clamped to a log start inside
            // a batch must not let the rest of that (undecided) batch out (Kafka reads up to
            // the position of the batch holding the bound).
            if b.last_offset >= upper {
                break;
            }
            let len = b.data.len();
            if len >= STANDALONE_BATCH && !parts.is_empty() {
                // A large batch is never copied into a response: it is sent from its own
                // buffer in the next fetch, as Kafka ends a read at a segment's end.
                cut_short = true;
                break;
            }
            if total + len > max_bytes && !(min_one_batch && parts.is_empty()) {
                // Kafka slices the log by bytes: the response ends with the start of the batch
                // that did not fit. Clients skip it.
                let room = max_bytes.saturating_sub(total);
                if room > 0 {
                    tail = Some(b.data.slice(..room.min(len)));
                    end_offset = b.last_offset + 1;
                }
                break;
            }
            parts.push(&b.data);
            total += len;
            end_offset = b.last_offset + 1;
            idx += 1;
            if len >= STANDALONE_BATCH {
                cut_short = self.batches.get(idx).is_some_and(|next| next.last_offset < upper);
                break;
            }
        }
        let complete_batches = parts.len();
        let records = match (parts.as_slice(), &tail) {
            ([], None) => Bytes::new(),
            ([one], None) => (*one).clone(),
            ([], Some(t)) => t.clone(),
            _ => {
                let mut out = BytesMut::with_capacity(total + tail.as_ref().map_or(0, Bytes::len));
                for p in &parts {
                    out.extend_from_slice(p);
                }
                if let Some(t) = &tail {
                    out.extend_from_slice(t);
                }
                out.freeze()
            }
        };
        ReadResult { records, complete_batches, end_offset, cut_short }
    }

    /// The earliest offset whose timestamp is at least `timestamp`, with that timestamp
    /// (ListOffsets by time); `None` if every record is older.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Option<(i64, i64)> {
        let b = self.batches.iter().find(|b| b.max_timestamp >= timestamp)?;
        if let Ok(batch) = RecordBatch::from_bytes(b.data.clone()) {
            let append_time = batch.header().timestamp_type() == TimestampType::LogAppendTime;
            if append_time {
                return Some((b.base_offset.max(self.log_start_offset), batch.header().max_timestamp));
            }
            if let Ok(recs) = batch.records(DEFAULT_DECOMPRESS_LIMIT) {
                for r in recs.iter().flatten() {
                    if r.timestamp() >= timestamp && r.offset() >= self.log_start_offset {
                        return Some((r.offset(), r.timestamp()));
                    }
                }
            }
        }
        Some((b.base_offset.max(self.log_start_offset), b.max_timestamp))
    }

    /// The offset and timestamp of the record with the largest timestamp (ListOffsets -3);
    /// the earliest such record on ties.
    pub fn max_timestamp_offset(&self) -> Option<(i64, i64)> {
        let mut best: Option<(i64, i64)> = None;
        for b in &self.batches {
            if best.is_some_and(|(_, ts)| b.max_timestamp <= ts) {
                continue;
            }
            let mut found = (b.last_offset, b.max_timestamp);
            if let Ok(batch) = RecordBatch::from_bytes(b.data.clone()) {
                if batch.header().timestamp_type() == TimestampType::LogAppendTime {
                    found = (b.base_offset, b.max_timestamp);
                } else if let Ok(recs) = batch.records(DEFAULT_DECOMPRESS_LIMIT) {
                    if let Some(r) = recs.iter().flatten().find(|r| r.timestamp() == b.max_timestamp) {
                        found = (r.offset(), r.timestamp());
                    }
                }
            }
            best = Some(found);
        }
        best
    }

    /// Keeps the data of a dropped batch for the buffer pool when it may be a frame buffer
    /// of its own; smaller data is simply dropped.
    fn release(&mut self, data: Bytes) {
        if data.len() >= crate::pool::MIN_POOLED / 2 {
            self.freed.push(data);
        }
    }

    /// The data of large batches dropped since the last call, to offer to the buffer pool.
    pub fn take_freed(&mut self) -> Vec<Bytes> {
        std::mem::take(&mut self.freed)
    }

    /// Moves the log start offset to `offset` (DeleteRecords), dropping whole batches below
    /// it. The caller checked `offset <= high watermark`.
    pub fn delete_records_before(&mut self, offset: i64) {
        if offset <= self.log_start_offset {
            return;
        }
        self.log_start_offset = offset;
        while self.batches.front().is_some_and(|b| b.last_offset < offset) {
            if let Some(b) = self.batches.pop_front() {
                self.size_bytes -= b.data.len();
                self.release(b.data);
            }
        }
        if self.batches.is_empty() {
            self.segment_bytes = 0;
        }
        self.trim_aborted_txns();
    }

    /// Applies time and size retention: deletes whole segments, oldest first, whose newest
    /// record is older than `retention_ms`, then while the log exceeds `retention_bytes` by at
    /// least a whole segment. Returns the number of batches deleted.
    pub fn apply_retention(&mut self, settings: &LogSettings, now_ms: i64) -> usize {
        if !settings.delete {
            return 0;
        }
        self.delete_segments(settings, Some(now_ms))
    }

    /// The deleting part of [`Self::apply_retention`]. Without `now_ms`, only the size limit
    /// applies and the active segment stays (the one the batch just appended is in).
    fn delete_segments(&mut self, settings: &LogSettings, now_ms: Option<i64>) -> usize {
        let mut deleted = 0;
        while let Some(first) = self.batches.front() {
            let seg = first.segment;
            if now_ms.is_none() && seg == self.segment {
                break;
            }
            let (seg_bytes, seg_max_ts) = self
                .batches
                .iter()
                .take_while(|b| b.segment == seg)
                .fold((0usize, i64::MIN), |(n, ts), b| (n + b.data.len(), ts.max(b.max_timestamp)));
            let expired = now_ms.is_some_and(|now| {
                settings.retention_ms >= 0 && seg_max_ts < now.saturating_sub(settings.retention_ms)
            });
            let too_big = settings.retention_bytes >= 0
                && self.size_bytes.saturating_sub(seg_bytes) as i64 >= settings.retention_bytes;
            if !expired && !too_big {
                break;
            }
            while self.batches.front().is_some_and(|b| b.segment == seg) {
                if let Some(b) = self.batches.pop_front() {
                    self.size_bytes -= b.data.len();
                    self.log_start_offset = self.log_start_offset.max(b.last_offset + 1);
                    deleted += 1;
                    self.release(b.data);
                }
            }
        }
        if self.batches.is_empty() {
            self.log_start_offset = self.log_start_offset.max(self.next_offset);
            self.segment_bytes = 0;
        }
        self.trim_aborted_txns();
        deleted
    }

    /// Compacts the log (cleanup.policy=compact): in every batch but the newest segment, keeps
    /// only the newest record of each key, and drops tombstones (null values) once older than
    /// `delete_retention_ms`. Offsets never change: batches are rewritten with the surviving
    /// records at their original offsets, and empty batches disappear. Returns the number of
    /// records removed.
    ///
    /// Transactions, as Kafka's cleaner treats them: nothing at or after the last stable
    /// offset is cleaned or counts as a key's newest record (the outcome of an open
    /// transaction is unknown); records of aborted transactions never count and their batches
    /// are removed; markers stay.
    pub fn compact(&mut self, settings: &LogSettings, now_ms: i64) -> usize {
        if !settings.compact || self.batches.len() < 2 {
            return 0;
        }
        let active = self.batches.back().map_or(0, |b| b.segment);
        let lso = self.last_stable_offset();
        let mut aborted: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for a in &self.aborted_txns {
            aborted.entry(a.producer_id).or_default().push((a.first_offset, a.last_offset));
        }
        let is_aborted = |h: &kafka_protocol::records::RecordBatchHeader| {
            h.is_transactional()
                && !h.is_control()
                && aborted.get(&h.producer_id).is_some_and(|ranges| {
                    ranges.iter().any(|(first, last)| *first <= h.base_offset && h.base_offset <= *last)
                })
        };
        // Newest offset of every key among the decided, committed records.
        let mut newest: HashMap<Bytes, i64> = HashMap::new();
        for b in &self.batches {
            if b.last_offset >= lso {
                break;
            }
            let Ok(batch) = RecordBatch::from_bytes(b.data.clone()) else { continue };
            if batch.header().is_control() || is_aborted(batch.header()) {
                continue;
            }
            let Ok(recs) = batch.records(DEFAULT_DECOMPRESS_LIMIT) else { continue };
            for r in recs.iter().flatten() {
                if let Some(k) = r.key_bytes() {
                    newest.insert(k, r.offset());
                }
            }
        }
        let mut removed = 0;
        let mut kept: VecDeque<StoredBatch> = VecDeque::new();
        let mut size = 0usize;
        let aborted_batches: Vec<bool> = self
            .batches
            .iter()
            .map(|b| RecordBatch::from_bytes(b.data.clone()).is_ok_and(|batch| is_aborted(batch.header())))
            .collect();
        for (mut b, aborted) in std::mem::take(&mut self.batches).into_iter().zip(aborted_batches) {
            let old_enough = now_ms.saturating_sub(b.max_timestamp) >= settings.min_compaction_lag_ms;
            if b.segment == active || !old_enough || b.last_offset >= lso {
                size += b.data.len();
                kept.push_back(b);
                continue;
            }
            if aborted {
                removed += usize::try_from(b.last_offset - b.base_offset + 1).unwrap_or(0);
                self.release(b.data);
                continue;
            }
            match rewrite_compacted(&b, &newest, now_ms, settings.delete_retention_ms) {
                Rewrite::Keep => {
                    size += b.data.len();
                    kept.push_back(b);
                }
                Rewrite::Replace(data, n) => {
                    removed += n;
                    let old = std::mem::replace(&mut b.data, data);
                    self.release(old);
                    size += b.data.len();
                    kept.push_back(b);
                }
                Rewrite::Drop(n) => {
                    removed += n;
                    self.release(b.data);
                }
            }
        }
        self.batches = kept;
        self.size_bytes = size;
        removed
    }
}

enum Rewrite {
    Keep,
    Replace(Bytes, usize),
    Drop(usize),
}

/// The last sequence of a batch of `count` records starting at `first` (wrapping at
/// i32::MAX to 0, as Kafka's sequences do).
fn last_seq(first: i32, count: i32) -> i32 {
    let last = i64::from(first) + i64::from(count.max(1)) - 1;
    if last > i64::from(i32::MAX) {
        (last - i64::from(i32::MAX) - 1) as i32
    } else {
        last as i32
    }
}

fn rewrite_compacted(b: &StoredBatch, newest: &HashMap<Bytes, i64>, now_ms: i64, delete_retention_ms: i64) -> Rewrite {
    let Ok(batch) = RecordBatch::from_bytes(b.data.clone()) else { return Rewrite::Keep };
    let h = *batch.header();
    if h.is_control() {
        return Rewrite::Keep;
    }
    let Ok(recs) = batch.records(DEFAULT_DECOMPRESS_LIMIT) else { return Rewrite::Keep };
    let tombstone_expired = now_ms.saturating_sub(b.max_timestamp) >= delete_retention_ms;
    let all: Vec<_> = recs.iter().flatten().collect();
    let keep: Vec<_> = all
        .iter()
        .filter(|r| {
            let latest = r.key_bytes().and_then(|k| newest.get(&k).copied()) == Some(r.offset());
            latest && !(r.value().is_none() && tombstone_expired)
        })
        .collect();
    if keep.len() == all.len() {
        return Rewrite::Keep;
    }
    let removed = all.len() - keep.len();
    if keep.is_empty() {
        return Rewrite::Drop(removed);
    }
    // Rebuild with the surviving records, each at its own offset: the builder numbers records
    // 0, 1, 2, ..., so each survivor goes into a batch of its own at its offset, which keeps
    // offsets exact at the cost of some header bytes (Kafka keeps offset deltas instead).
    let mut out = BytesMut::new();
    for r in keep {
        let options = BatchOptions {
            compression: h.compression().unwrap_or(kafka_protocol::compression::Compression::None),
            timestamp_type: h.timestamp_type(),
            transactional: h.is_transactional(),
            partition_leader_epoch: h.partition_leader_epoch,
            base_offset: r.offset(),
            ..BatchOptions::default()
        };
        let mut builder = RecordBatchBuilder::new(options);
        let headers: Vec<(String, Option<Vec<u8>>)> = r
            .headers()
            .map(|hd| (hd.key_str().unwrap_or_default().to_string(), hd.value.map(<[u8]>::to_vec)))
            .collect();
        let hs: Vec<Header<'_>> = headers.iter().map(|(k, v)| Header::new(k, v.as_deref())).collect();
        if builder.append(r.timestamp(), r.key(), r.value(), &hs).is_err() {
            return Rewrite::Keep;
        }
        let state = ProducerState { producer_id: h.producer_id, producer_epoch: h.producer_epoch, base_sequence: -1 };
        match builder.seal(state) {
            Ok(sealed) => out.extend_from_slice(&sealed),
            Err(_) => return Rewrite::Keep,
        }
    }
    Rewrite::Replace(out.freeze(), removed)
}

/// Why a batch failed validation inside the record loop.
enum Invalid {
    Malformed(kafka_protocol::ProtocolError),
    Refused(Refusal),
}

impl From<kafka_protocol::ProtocolError> for Invalid {
    fn from(e: kafka_protocol::ProtocolError) -> Self {
        Invalid::Malformed(e)
    }
}

/// A stored batch of at least this many bytes is a read of its own: a fetch returns it alone,
/// straight from its buffer, rather than copying it together with its neighbours into one
/// response buffer (a fetch response carries one contiguous byte range per partition). Kafka
/// similarly ends a read at the end of a log segment; clients fetch again for the rest.
/// Smaller batches are still gathered up to the fetch's size limits, so that a consumer of
/// small batches gets as much per round trip as from Kafka.
pub(crate) const STANDALONE_BATCH: usize = 256 * 1024;

/// Checks a producer's batch (Kafka's `LogValidator`): size, structure, CRC, offset deltas,
/// keys on compacted topics, timestamps against `message.timestamp.{before,after}.max.ms`.
/// Returns the batch's header and its records' largest timestamp.
fn validate(data: &Bytes, settings: &LogSettings, now_ms: i64) -> Result<(RecordBatchHeader, i64), Refusal> {
    if data.len() > settings.max_message_bytes.max(0) as usize {
        return Err((
            ErrorCode::MessageTooLarge,
            format!(
                "The request included a message larger than the max message size the server will accept: {} > {}",
                data.len(),
                settings.max_message_bytes
            ),
        ));
    }
    let batch = RecordBatch::from_bytes(data.clone()).map_err(|e| (ErrorCode::CorruptMessage, e.to_string()))?;
    batch.verify_crc().map_err(|e| (ErrorCode::CorruptMessage, e.to_string()))?;
    let h = batch.header();
    if h.is_control() {
        return Err((ErrorCode::InvalidRecord, "Clients are not allowed to write control records".into()));
    }
    if h.record_count < 1 || i64::from(h.last_offset_delta) != i64::from(h.record_count) - 1 {
        return Err((
            ErrorCode::InvalidRecord,
            format!("Record count {} does not match last offset delta {}", h.record_count, h.last_offset_delta),
        ));
    }
    let recs = batch.records(DEFAULT_DECOMPRESS_LIMIT).map_err(|e| (ErrorCode::CorruptMessage, e.to_string()))?;
    let base = h.base_offset;
    let mut expected = base;
    let mut max_ts = i64::MIN;
    let (earliest, latest) = (
        now_ms.saturating_sub(settings.timestamp_before_max_ms),
        now_ms.saturating_add(settings.timestamp_after_max_ms),
    );
    let check_time = !settings.log_append_time;
    let checked = recs.try_for_each(|r| {
        if r.offset() != expected {
            return Err(Invalid::Refused((
                ErrorCode::InvalidRecord,
                format!("Record offset delta {} is not the expected {}", r.offset() - base, expected - base),
            )));
        }
        if settings.compact && r.key().is_none() {
            return Err(Invalid::Refused((
                ErrorCode::InvalidRecord,
                "Compacted topic cannot accept message without key.".to_string(),
            )));
        }
        let ts = r.timestamp();
        if check_time && (ts < earliest || ts > latest) {
            return Err(Invalid::Refused((
                ErrorCode::InvalidTimestamp,
                format!("Timestamp {ts} of message with offset {} is out of range.", expected - base),
            )));
        }
        max_ts = max_ts.max(ts);
        expected += 1;
        Ok(())
    });
    match checked {
        Ok(()) => {}
        Err(Invalid::Refused(refusal)) => return Err(refusal),
        Err(Invalid::Malformed(e)) => return Err((ErrorCode::CorruptMessage, e.to_string())),
    }
    if expected - base != i64::from(h.record_count) {
        return Err((ErrorCode::CorruptMessage, "fewer records than the batch header claims".into()));
    }
    Ok((*h, max_ts))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use std::collections::BTreeMap;

    fn settings() -> LogSettings {
        crate::configs::log_settings(&BTreeMap::new(), &BTreeMap::new())
    }

    fn batch(n: usize, producer: ProducerState, ts: i64) -> Bytes {
        let mut b = RecordBatchBuilder::new(BatchOptions::default());
        for i in 0..n {
            b.append(ts + i as i64, Some(b"k"), Some(b"value"), &[]).unwrap();
        }
        b.seal(producer).unwrap()
    }

    fn idem(pid: i64, epoch: i16, seq: i32, n: usize) -> Bytes {
        batch(n, ProducerState { producer_id: pid, producer_epoch: epoch, base_sequence: seq }, 1_000)
    }

    #[test]
    fn offsets_are_patched_and_epochs_cached() {
        let mut log = PartitionLog::default();
        let s = settings();
        assert_eq!(log.append(&batch(3, ProducerState::NONE, 1_000), &s, 0, 2_000).unwrap().base_offset, 0);
        assert_eq!(log.append(&batch(2, ProducerState::NONE, 1_000), &s, 4, 2_000).unwrap().base_offset, 3);
        let stored = RecordBatch::from_bytes(log.batches.get(1).unwrap().data.clone()).unwrap();
        assert_eq!((stored.header().base_offset, stored.header().partition_leader_epoch), (3, 4));
        stored.verify_crc().unwrap();
        assert_eq!(log.epoch_at(2), 0);
        assert_eq!(log.epoch_at(3), 4);
        // Kafka's endOffsetFor: current epoch -> log end; older -> start of the next epoch;
        // between known epochs -> the floor epoch; newer than current -> undefined.
        assert_eq!(log.end_offset_for_epoch(4, 4), (4, 5));
        assert_eq!(log.end_offset_for_epoch(0, 4), (0, 3));
        assert_eq!(log.end_offset_for_epoch(2, 4), (0, 3));
        assert_eq!(log.end_offset_for_epoch(9, 4), (-1, -1));
        assert_eq!(log.end_offset_for_epoch(5, 5), (5, 5), "a new leader's epoch starts at the log end");
    }

    #[test]
    fn sequence_checks_follow_kafka() {
        let mut log = PartitionLog::default();
        let s = settings();
        let code = |r: Result<Appended, Refusal>| r.map_err(|e| e.0);
        assert_eq!(code(log.append(&idem(7, 0, 3, 1), &s, 0, 0)), Err(ErrorCode::UnknownProducerId));
        assert!(!log.append(&idem(7, 0, 0, 2), &s, 0, 0).unwrap().duplicate);
        assert!(log.append(&idem(7, 0, 0, 2), &s, 0, 0).unwrap().duplicate);
        assert_eq!(code(log.append(&idem(7, 0, 1, 1), &s, 0, 0)), Err(ErrorCode::OutOfOrderSequenceNumber));
        assert_eq!(code(log.append(&idem(7, 0, 3, 1), &s, 0, 0)), Err(ErrorCode::OutOfOrderSequenceNumber));
        assert!(!log.append(&idem(7, 0, 2, 1), &s, 0, 0).unwrap().duplicate);
        assert_eq!(code(log.append(&idem(7, 1, 5, 1), &s, 0, 0)), Err(ErrorCode::OutOfOrderSequenceNumber));
        assert!(!log.append(&idem(7, 1, 0, 1), &s, 0, 0).unwrap().duplicate);
        assert_eq!(code(log.append(&idem(7, 0, 3, 1), &s, 0, 0)), Err(ErrorCode::InvalidProducerEpoch));
        assert_eq!(log.producers[&7].last_seq(), 0);
        assert_eq!(log.log_end_offset(), 4);
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        assert_eq!(last_seq(i32::MAX, 1), i32::MAX);
        assert_eq!(last_seq(i32::MAX, 2), 0);
        assert_eq!(last_seq(i32::MAX - 1, 4), 1);
        let mut log = PartitionLog::default();
        let s = settings();
        // A producer whose state is known, near the wrap.
        log.producers.insert(
            9,
            ProducerEntry {
                epoch: 0,
                batches: [ProducerBatch {
                    first_seq: i32::MAX - 2,
                    last_seq: i32::MAX - 1,
                    base_offset: 0,
                    last_offset: 1,
                    timestamp: 0,
                }]
                .into(),
                last_timestamp: 0,
                ..Default::default()
            },
        );
        assert!(log.append(&idem(9, 0, i32::MAX, 2), &s, 0, 0).is_ok(), "MAX then 0");
        assert!(log.append(&idem(9, 0, 1, 1), &s, 0, 0).is_ok());
    }

    #[test]
    fn reads_slice_by_bytes_and_honour_kip_74() {
        let mut log = PartitionLog::default();
        let s = settings();
        let b = batch(10, ProducerState::NONE, 1_000);
        let len = b.len();
        for _ in 0..3 {
            log.append(&b, &s, 0, 0).unwrap();
        }
        let r = log.read(0, len * 2 + 10, false, log.high_watermark());
        assert_eq!((r.complete_batches, r.records.len()), (2, len * 2 + 10));
        let r = log.read(0, 5, true, log.high_watermark());
        assert_eq!((r.complete_batches, r.records.len()), (1, len), "the first batch whole");
        let r = log.read(0, 5, false, log.high_watermark());
        assert_eq!((r.complete_batches, r.records.len()), (0, 5));
        let r = log.read(15, 1 << 20, false, 20);
        assert_eq!((r.complete_batches, r.records.len()), (1, len), "from the batch holding 15, below the limit");
    }

    /// A batch of `n` records of `size`-byte values.
    fn big_batch(n: usize, size: usize) -> Bytes {
        let value = vec![7u8; size];
        let mut b = RecordBatchBuilder::new(BatchOptions::default());
        for i in 0..n {
            b.append(1_000 + i as i64, None, Some(&value), &[]).unwrap();
        }
        b.seal(ProducerState::NONE).unwrap()
    }

    #[test]
    fn a_batch_nobody_else_holds_is_stored_without_a_copy_and_read_back_from_the_same_buffer() {
        let mut log = PartitionLog::default();
        let s = settings();
        // In a buffer of its own size, as a large produce frame is read.
        let data = Bytes::from(big_batch(3, 100).to_vec());
        let ptr = data.as_ptr();
        log.append_owned(data, &s, 5, 2_000).unwrap();
        let stored = &log.batches.front().unwrap().data;
        assert_eq!(stored.as_ptr(), ptr, "the batch was copied");
        let read = log.read(0, 1 << 20, true, log.high_watermark());
        assert_eq!(read.records.as_ptr(), ptr, "the read copied the batch");
        let batch = RecordBatch::from_bytes(read.records).unwrap();
        batch.verify_crc().unwrap();
        assert_eq!((batch.header().base_offset, batch.header().partition_leader_epoch), (0, 5));

        // A buffer with much more room after the batch (a padded frame) is copied.
        let batch = big_batch(2, 100);
        let mut padded = BytesMut::with_capacity(batch.len() + 64 * 1024);
        padded.extend_from_slice(&batch);
        padded.resize(batch.len() + 64 * 1024, 0);
        let padded = padded.freeze().slice(..batch.len());
        let padded_ptr = padded.as_ptr();
        log.append_owned(padded, &s, 5, 2_000).unwrap();
        assert_ne!(log.batches.back().unwrap().data.as_ptr(), padded_ptr, "a padded frame was kept");

        // A buffer someone else still holds is copied, and the holder's bytes are untouched.
        let held = big_batch(2, 100);
        let original = held.to_vec();
        log.append_owned(held.clone(), &s, 5, 2_000).unwrap();
        assert_ne!(log.batches.back().unwrap().data.as_ptr(), held.as_ptr());
        assert_eq!(held.to_vec(), original);
        assert_eq!(RecordBatch::from_bytes(log.batches.back().unwrap().data.clone()).unwrap().header().base_offset, 5);
    }

    #[test]
    fn size_retention_runs_on_append_and_hands_the_dropped_buffers_over() {
        let mut log = PartitionLog::default();
        let one = big_batch(1000, 100);
        let len = one.len() as i64;
        // Three batches a segment, retention of six.
        let s = LogSettings { retention_bytes: 6 * len, segment_bytes: 3 * len, ..settings() };
        let mut ptrs = Vec::new();
        for i in 0..30 {
            // Each in a buffer of its own, as large produce frames are read.
            let data = Bytes::from(one.to_vec());
            ptrs.push(data.as_ptr());
            log.append_owned(data, &s, 0, 2_000).unwrap();
            assert!(log.size_bytes as i64 <= 9 * len, "append {i}: {} bytes kept", log.size_bytes);
            assert_eq!(log.batches.back().unwrap().base_offset, i * 1000, "the batch just appended stays");
        }
        let freed = log.take_freed();
        // Every deleted batch, oldest first, in the buffer it arrived in.
        assert_eq!(log.log_start_offset(), freed.len() as i64 * 1000);
        assert!(freed.len() >= 20, "{} batches deleted", freed.len());
        for (data, ptr) in freed.iter().zip(&ptrs) {
            assert_eq!(data.as_ptr(), *ptr);
        }
        assert!(log.take_freed().is_empty());
        // Only once the log is a whole segment past the limit; never the active segment.
        let mut log = PartitionLog::default();
        let s = LogSettings { retention_bytes: 0, segment_bytes: 1 << 30, ..settings() };
        for _ in 0..5 {
            log.append(&one, &s, 0, 2_000).unwrap();
        }
        assert_eq!(log.log_start_offset(), 0);
        // Small batches are not kept for the pool.
        let s = LogSettings { retention_bytes: 0, segment_bytes: 1, ..settings() };
        let mut log = PartitionLog::default();
        for _ in 0..5 {
            log.append(&batch(2, ProducerState::NONE, 1_000), &s, 0, 2_000).unwrap();
        }
        assert_eq!(log.log_start_offset(), 8, "all but the active segment deleted");
        assert!(log.take_freed().is_empty());
    }

    /// A transaction marker goes through the same append path, so it can be what takes the
    /// log past `retention.bytes`; the transaction's bookkeeping stays right.
    #[test]
    fn a_marker_can_trigger_size_retention() {
        let mlen = {
            let mut l = PartitionLog::default();
            marker(&mut l, 9, 0, true);
            l.size_bytes
        };
        let (plain, open) = (big_batch(1000, 100), txn(7, 0, 0, 4000));
        let (a, t) = (plain.len() as i64, open.len() as i64);
        // Each batch a segment of its own, the marker joins the last; the marker's bytes are
        // the ones that reach retention.bytes + segment.bytes.
        let segment_bytes = a.max(t) + mlen as i64;
        let s = LogSettings { retention_bytes: 2 * a + t + mlen as i64 - segment_bytes, segment_bytes, ..settings() };
        let mut log = PartitionLog::default();
        log.append(&plain, &s, 0, 2_000).unwrap(); // 0..=999
        log.append(&open, &s, 0, 2_000).unwrap(); // 1000..=4999, open
        log.append(&plain, &s, 0, 2_000).unwrap(); // 5000..=5999
        assert_eq!((log.log_start_offset(), log.last_stable_offset()), (0, 1000));
        assert!(log.take_freed().is_empty());
        log.append_marker(7, 0, true, 0, 0, 2_000, &s).unwrap(); // 6000
        assert_eq!(log.log_start_offset(), 1000, "the first segment went");
        assert_eq!(log.take_freed().len(), 1);
        assert_eq!((log.last_stable_offset(), log.high_watermark()), (6001, 6001), "the transaction committed");
        assert!(log.aborted_txns_in(0, 6001).is_empty());
    }

    #[test]
    fn large_batches_are_read_alone_and_small_ones_gathered() {
        let mut log = PartitionLog::default();
        let s = settings();
        let small = big_batch(10, 100);
        let large = big_batch(3, STANDALONE_BATCH / 2);
        assert!(large.len() >= STANDALONE_BATCH);
        for b in [&small, &small, &large, &large, &small] {
            log.append(b, &s, 0, 2_000).unwrap();
        }
        let hw = log.high_watermark();
        let big = 64 << 20;
        // Two small batches, then the first large one would follow: the read ends before it.
        let r = log.read(0, big, true, hw);
        assert_eq!((r.complete_batches, r.records.len(), r.end_offset), (2, 2 * small.len(), 20));
        assert!(r.cut_short, "more was there");
        // A large batch alone, from its own buffer.
        let r = log.read(20, big, true, hw);
        assert_eq!((r.complete_batches, r.records.len(), r.end_offset), (1, large.len(), 23));
        assert_eq!(r.records.as_ptr(), log.batches.get(2).unwrap().data.as_ptr());
        let r = log.read(23, big, true, hw);
        assert_eq!((r.complete_batches, r.end_offset), (1, 26));
        assert!(r.cut_short);
        let r = log.read(26, big, true, hw);
        assert_eq!((r.complete_batches, r.records.len(), r.end_offset), (1, small.len(), 36));
        assert!(!r.cut_short, "the end of the log");
        let r = log.read(23, big, true, 26);
        assert!(!r.cut_short, "nothing more below the bound");
        // KIP-74 and byte limits still apply to a large batch.
        let r = log.read(20, 1000, false, hw);
        assert_eq!((r.complete_batches, r.records.len()), (0, 1000));
    }

    #[test]
    fn validation_refuses_bad_batches() {
        let s = settings();
        let mut log = PartitionLog::default();
        let mut corrupt = batch(2, ProducerState::NONE, 1_000).to_vec();
        let n = corrupt.len();
        corrupt[n - 1] ^= 1;
        assert_eq!(log.append(&corrupt.into(), &s, 0, 0).unwrap_err().0, ErrorCode::CorruptMessage);
        let small = LogSettings { max_message_bytes: 10, ..s.clone() };
        assert_eq!(
            log.append(&batch(1, ProducerState::NONE, 0), &small, 0, 0).unwrap_err().0,
            ErrorCode::MessageTooLarge
        );
        let strict = LogSettings { timestamp_after_max_ms: 1000, ..s };
        assert_eq!(
            log.append(&batch(1, ProducerState::NONE, 10_000), &strict, 0, 0).unwrap_err().0,
            ErrorCode::InvalidTimestamp
        );
        assert_eq!(log.log_end_offset(), 0);
    }

    fn txn(pid: i64, epoch: i16, seq: i32, n: usize) -> Bytes {
        let mut b = RecordBatchBuilder::new(BatchOptions { transactional: true, ..BatchOptions::default() });
        for i in 0..n {
            b.append(1_000 + i as i64, Some(format!("k{i}").as_bytes()), Some(b"v"), &[]).unwrap();
        }
        b.seal(ProducerState { producer_id: pid, producer_epoch: epoch, base_sequence: seq }).unwrap()
    }

    fn marker(log: &mut PartitionLog, pid: i64, epoch: i16, commit: bool) -> i64 {
        log.append_marker(pid, epoch, commit, 0, 0, 2_000, &settings()).unwrap()
    }

    #[test]
    fn open_transactions_hold_the_last_stable_offset() {
        let mut log = PartitionLog::default();
        let s = settings();
        log.append(&batch(2, ProducerState::NONE, 1_000), &s, 0, 0).unwrap();
        assert_eq!((log.last_stable_offset(), log.first_unstable_offset()), (2, None));
        log.append(&txn(7, 0, 0, 3), &s, 0, 0).unwrap(); // 2..=4
        log.append(&txn(8, 0, 0, 1), &s, 0, 0).unwrap(); // 5
        log.append(&batch(1, ProducerState::NONE, 1_000), &s, 0, 0).unwrap(); // 6
        assert_eq!((log.last_stable_offset(), log.high_watermark()), (2, 7), "the oldest open transaction");
        assert!(log.has_ongoing_txn(7) && log.has_ongoing_txn(8));
        log.append(&txn(7, 0, 3, 1), &s, 0, 0).unwrap(); // 7: same transaction
        assert_eq!(log.producers[&7].current_txn_first_offset, Some(2));
        // Producer 8 commits first: 7's transaction still holds the LSO.
        assert_eq!(marker(&mut log, 8, 0, true), 8);
        assert_eq!(log.last_stable_offset(), 2);
        assert_eq!(marker(&mut log, 7, 0, false), 9);
        assert_eq!((log.last_stable_offset(), log.high_watermark()), (10, 10));
        assert!(!log.has_ongoing_txn(7));
        assert_eq!(
            log.aborted_txns_in(0, 10),
            vec![AbortedTxn { producer_id: 7, first_offset: 2, last_offset: 9 }],
            "only the aborted one, with its first offset and marker"
        );
        assert_eq!(log.aborted_txns_in(10, 20), vec![], "the marker is before the range");
        assert_eq!(log.aborted_txns_in(0, 2), vec![], "the transaction starts at the range's end");
        assert_eq!(log.aborted_txns_in(9, 10).len(), 1);
        // The marker is a control batch carrying the producer's epoch; readers see it.
        let read = log.read(9, 1 << 20, false, log.last_stable_offset());
        let stored = RecordBatch::from_bytes(read.records.clone()).unwrap();
        assert!(stored.header().is_control() && stored.header().is_transactional());
        assert_eq!((stored.header().base_offset, stored.header().producer_id, read.end_offset), (9, 7, 10));
        stored.verify_crc().unwrap();
        assert_eq!((log.producers[&7].coordinator_epoch, log.producers[&7].current_txn_first_offset), (0, None));
    }

    #[test]
    fn transactional_producers_follow_kafkas_rules() {
        let mut log = PartitionLog::default();
        let s = settings();
        log.append(&txn(7, 2, 0, 1), &s, 0, 0).unwrap();
        let refused = log.append(&idem(7, 2, 1, 1), &s, 0, 0).unwrap_err();
        assert_eq!(refused.0, ErrorCode::InvalidTxnState, "a plain batch inside an open transaction");
        assert!(log.append(&txn(7, 2, 0, 1), &s, 0, 0).unwrap().duplicate, "retries are still duplicates");
        // A marker with a bumped epoch (a fence) ends the transaction; the old epoch is refused.
        marker(&mut log, 7, 3, false);
        assert_eq!(log.producers[&7].epoch, 3);
        assert_eq!(log.append(&txn(7, 2, 1, 1), &s, 0, 0).unwrap_err().0, ErrorCode::InvalidProducerEpoch);
        assert_eq!(log.append_marker(7, 2, true, 0, 0, 0, &s).unwrap_err().0, ErrorCode::InvalidProducerEpoch);
        assert_eq!(log.append_marker(7, 3, true, -5, 0, 0, &s).unwrap_err().0, ErrorCode::TransactionCoordinatorFenced);
        // The next epoch starts its sequences at 0.
        log.append(&txn(7, 4, 0, 2), &s, 0, 0).unwrap();
        // A marker for a producer with nothing open closes nothing (no aborted entry).
        let before = log.aborted_txns_in(0, i64::MAX).len();
        marker(&mut log, 99, 0, false);
        assert_eq!(log.aborted_txns_in(0, i64::MAX).len(), before);
        // Forgetting producer state keeps open transactions (Kafka rebuilds them from the log).
        log.append(&idem(50, 0, 0, 1), &s, 0, 0).unwrap();
        log.forget_producers();
        assert!(log.producers.contains_key(&7) && !log.producers.contains_key(&50) && !log.producers.contains_key(&99));
        assert_eq!(log.first_unstable_offset(), Some(2), "epoch 4's transaction, opened at 2");
    }

    #[test]
    fn delete_records_and_retention_keep_the_bookkeeping_consistent() {
        let mut log = PartitionLog::default();
        let s = settings();
        log.append(&txn(1, 0, 0, 2), &s, 0, 0).unwrap(); // 0..=1
        marker(&mut log, 1, 0, false); // 2
        log.append(&txn(2, 0, 0, 2), &s, 0, 0).unwrap(); // 3..=4, open
        log.append(&batch(2, ProducerState::NONE, 1_000), &s, 0, 0).unwrap(); // 5..=6
        assert_eq!(log.last_stable_offset(), 3);
        log.delete_records_before(2);
        assert_eq!(log.aborted_txns_in(0, 10).len(), 1, "its marker (2) is still in the log");
        log.delete_records_before(4);
        assert!(log.aborted_txns_in(0, 10).is_empty(), "gone with its marker");
        assert_eq!(
            (log.log_start_offset(), log.first_unstable_offset(), log.last_stable_offset()),
            (4, Some(4), 4),
            "the open transaction started below the log start: the LSO is clamped to it"
        );
        let read = log.read(4, 1 << 20, true, log.last_stable_offset());
        assert!(read.records.is_empty(), "the open batch holding the clamped LSO stays unread");
        log.delete_records_before(6);
        assert_eq!(log.last_stable_offset(), 6);
        marker(&mut log, 2, 0, true); // 7
        assert_eq!((log.last_stable_offset(), log.high_watermark()), (8, 8));
        // Retention that empties the log leaves the LSO at the log end.
        let old = LogSettings { retention_ms: 0, ..s };
        log.apply_retention(&old, i64::MAX / 2);
        assert_eq!((log.log_start_offset(), log.last_stable_offset()), (8, 8));
    }

    #[test]
    fn compaction_keeps_open_and_removes_aborted_transactions() {
        let mut log = PartitionLog::default();
        let s = LogSettings { compact: true, delete: false, min_compaction_lag_ms: 0, ..settings() };
        let keyed = |key: &[u8], value: &[u8], p: ProducerState, transactional: bool| {
            let mut b = RecordBatchBuilder::new(BatchOptions { transactional, ..BatchOptions::default() });
            b.append(1_000, Some(key), Some(value), &[]).unwrap();
            b.seal(p).unwrap()
        };
        let pid = |id| ProducerState { producer_id: id, producer_epoch: 0, base_sequence: 0 };
        log.append(&keyed(b"a", b"1", ProducerState::NONE, false), &s, 0, 0).unwrap(); // 0: a=1
        log.append(&keyed(b"a", b"aborted", pid(5), true), &s, 0, 0).unwrap(); // 1
        log.append_marker(5, 0, false, 0, 0, 0, &s).unwrap(); // 2
        log.append(&keyed(b"b", b"1", ProducerState::NONE, false), &s, 0, 0).unwrap(); // 3: b=1
        log.append(&keyed(b"b", b"open", pid(6), true), &s, 0, 0).unwrap(); // 4: open
        log.append(&keyed(b"c", b"1", ProducerState::NONE, false), &s, 0, 0).unwrap(); // 5
        log.segment += 1; // roll: everything above is cleanable but for the LSO
        log.append(&keyed(b"z", b"1", ProducerState::NONE, false), &s, 0, 0).unwrap(); // 6
        let removed = log.compact(&s, 10_000);
        assert_eq!(removed, 1, "only the aborted record");
        let offsets: Vec<i64> = log.batches.iter().map(|b| b.base_offset).collect();
        assert_eq!(offsets, vec![0, 2, 3, 4, 5, 6], "a=1 survives the aborted a; b=1 waits for the open b");
        assert!(log.aborted_txns_in(0, 10).len() == 1, "the index entry stays for readers below it");
    }
}
