//! Consumed records, and the decoding of fetched data into them.
//!
//! A fetch response's records for one partition become a [`CompletedFetch`]: the raw bytes,
//! decoded lazily one batch at a time when the application asks for records, so that
//! decoding runs on the application's task and records are slices of the fetched buffer.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::records::{
    ControlRecord, ControlRecordType, HeaderIter, OwnedRecord, RecordBatch, RecordSetEntry, RecordSetIter,
    TimestampType,
};

use crate::error::Error;

/// A record handed to the application.
///
/// The key, value and headers are slices of the fetched buffer (one reference count per
/// record, no copy); [`ConsumerRecord::value_bytes`] gives a `Bytes` that can outlive the
/// record.
#[derive(Debug, Clone)]
pub struct ConsumerRecord {
    topic: Arc<str>,
    partition: i32,
    leader_epoch: Option<i32>,
    timestamp_type: TimestampType,
    body: Body,
}

#[derive(Debug, Clone)]
enum Body {
    V2(OwnedRecord),
    Legacy { offset: i64, timestamp: i64, key: Option<Bytes>, value: Option<Bytes> },
}

impl ConsumerRecord {
    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The topic as a shared string (cheap to clone).
    pub fn topic_arc(&self) -> &Arc<str> {
        &self.topic
    }

    /// The partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The offset.
    pub fn offset(&self) -> i64 {
        match &self.body {
            Body::V2(r) => r.offset(),
            Body::Legacy { offset, .. } => *offset,
        }
    }

    /// The leader epoch of the batch the record came in, when the broker set one.
    pub fn leader_epoch(&self) -> Option<i32> {
        self.leader_epoch
    }

    /// The timestamp in milliseconds since the epoch (-1 when the record has none).
    pub fn timestamp(&self) -> i64 {
        match &self.body {
            Body::V2(r) => r.timestamp(),
            Body::Legacy { timestamp, .. } => *timestamp,
        }
    }

    /// Whether the timestamp was set by the producer or by the broker.
    pub fn timestamp_type(&self) -> TimestampType {
        self.timestamp_type
    }

    /// The key, or `None` for a null key.
    pub fn key(&self) -> Option<&[u8]> {
        match &self.body {
            Body::V2(r) => r.key(),
            Body::Legacy { key, .. } => key.as_deref(),
        }
    }

    /// The value, or `None` for a null value (a tombstone).
    pub fn value(&self) -> Option<&[u8]> {
        match &self.body {
            Body::V2(r) => r.value(),
            Body::Legacy { value, .. } => value.as_deref(),
        }
    }

    /// The key as a zero-copy `Bytes`.
    pub fn key_bytes(&self) -> Option<Bytes> {
        match &self.body {
            Body::V2(r) => r.key_bytes(),
            Body::Legacy { key, .. } => key.clone(),
        }
    }

    /// The value as a zero-copy `Bytes`.
    pub fn value_bytes(&self) -> Option<Bytes> {
        match &self.body {
            Body::V2(r) => r.value_bytes(),
            Body::Legacy { value, .. } => value.clone(),
        }
    }

    /// The headers, in order (none for records written before Kafka 0.11).
    pub fn headers(&self) -> HeaderIter<'_> {
        match &self.body {
            Body::V2(r) => r.headers(),
            Body::Legacy { .. } => HeaderIter::default(),
        }
    }

    /// The topic and partition.
    pub fn topic_partition(&self) -> crate::consumer::TopicPartition {
        crate::consumer::TopicPartition::new(&*self.topic, self.partition)
    }
}

/// Aborted transactions of a read_committed fetch: which producers' batches to drop.
#[derive(Debug, Default)]
struct AbortedFilter {
    /// Aborted transactions not reached yet, by first offset.
    pending: BTreeMap<i64, Vec<i64>>,
    /// Producers whose transaction in progress was aborted.
    aborted: HashSet<i64>,
}

impl AbortedFilter {
    fn reach(&mut self, last_offset: i64) {
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > last_offset {
                break;
            }
            self.aborted.extend(entry.remove());
        }
    }
}

/// One partition's data from one fetch response, decoded lazily.
#[derive(Debug)]
pub(crate) struct CompletedFetch {
    /// The partition state's epoch when the fetch was sent: data of an older epoch is dropped.
    pub epoch: u64,
    /// Bytes this fetch counts against the prefetch limits.
    pub size: usize,
    topic: Arc<str>,
    partition: i32,
    entries: RecordSetIter,
    pending: VecDeque<ConsumerRecord>,
    /// The offset after everything decoded so far.
    next_offset: i64,
    /// The leader epoch of the last decoded batch.
    next_epoch: Option<i32>,
    /// Records below this offset are skipped (a batch may start before the fetch offset).
    fetch_offset: i64,
    aborted: Option<AbortedFilter>,
    check_crcs: bool,
    decompress_limit: usize,
}

/// What a [`CompletedFetch`] is built from.
#[derive(Debug)]
pub(crate) struct FetchedData {
    pub epoch: u64,
    pub topic: Arc<str>,
    pub partition: i32,
    pub records: Bytes,
    pub fetch_offset: i64,
    pub fetch_epoch: Option<i32>,
    /// `Some` for read_committed fetches: (producer id, first offset) of aborted transactions.
    pub aborted: Option<Vec<(i64, i64)>>,
    pub check_crcs: bool,
    pub decompress_limit: usize,
}

impl CompletedFetch {
    pub(crate) fn new(d: FetchedData) -> Self {
        let aborted = d.aborted.map(|list| {
            let mut f = AbortedFilter::default();
            for (pid, first) in list {
                f.pending.entry(first).or_default().push(pid);
            }
            f
        });
        CompletedFetch {
            epoch: d.epoch,
            size: d.records.len(),
            topic: d.topic,
            partition: d.partition,
            entries: RecordSetIter::new(d.records),
            pending: VecDeque::new(),
            next_offset: d.fetch_offset,
            next_epoch: d.fetch_epoch,
            fetch_offset: d.fetch_offset,
            aborted,
            check_crcs: d.check_crcs,
            decompress_limit: d.decompress_limit,
        }
    }

    /// The position after the records handed out so far: the next pending record's offset,
    /// or the offset after everything decoded.
    pub(crate) fn position(&self) -> (i64, Option<i32>) {
        match self.pending.front() {
            Some(r) => (r.offset(), r.leader_epoch),
            None => (self.next_offset, self.next_epoch),
        }
    }

    /// Whether nothing is left to hand out.
    pub(crate) fn is_exhausted(&self) -> bool {
        self.pending.is_empty() && self.entries.remaining().is_empty()
    }

    /// Moves up to `max` records to `out`, decoding batches as needed. Returns how many were
    /// moved. An error (CRC mismatch, undecodable batch) leaves the position before the
    /// batch that failed.
    pub(crate) fn take(&mut self, max: usize, out: &mut Vec<ConsumerRecord>) -> Result<usize, Error> {
        let mut moved = 0;
        while moved < max {
            if let Some(r) = self.pending.pop_front() {
                out.push(r);
                moved += 1;
                continue;
            }
            if !self.decode_next()? {
                break;
            }
        }
        Ok(moved)
    }

    /// Decodes the next entry into `pending`. Returns false when there is none left.
    fn decode_next(&mut self) -> Result<bool, Error> {
        let Some(entry) = self.entries.next() else { return Ok(false) };
        let entry = entry.map_err(|e| self.corrupt(self.next_offset, e.to_string()))?;
        match entry {
            RecordSetEntry::Batch(batch) => self.decode_batch(batch)?,
            RecordSetEntry::Legacy(message) => {
                if self.check_crcs {
                    message.verify_crc().map_err(|e| self.corrupt(message.offset, e.to_string()))?;
                }
                let inner =
                    message.flatten(self.decompress_limit).map_err(|e| self.corrupt(message.offset, e.to_string()))?;
                for m in inner {
                    if m.offset < self.fetch_offset {
                        continue;
                    }
                    self.next_offset = m.offset.saturating_add(1);
                    self.pending.push_back(ConsumerRecord {
                        topic: self.topic.clone(),
                        partition: self.partition,
                        leader_epoch: None,
                        timestamp_type: m.timestamp_type.unwrap_or(TimestampType::CreateTime),
                        body: Body::Legacy {
                            offset: m.offset,
                            timestamp: m.timestamp.unwrap_or(-1),
                            key: m.key,
                            value: m.value,
                        },
                    });
                }
            }
        }
        Ok(true)
    }

    fn decode_batch(&mut self, batch: RecordBatch) -> Result<(), Error> {
        let h = *batch.header();
        let next = h.next_offset();
        if next <= self.fetch_offset {
            // Entirely below the fetch offset (the broker returns whole batches).
            return Ok(());
        }
        if self.check_crcs {
            batch.verify_crc().map_err(|e| self.corrupt(h.base_offset, e.to_string()))?;
        }
        let epoch = (h.partition_leader_epoch >= 0).then_some(h.partition_leader_epoch);
        let mut skip = h.is_control();
        let pid = h.producer_state().producer_id;
        if self.aborted.is_some() && pid >= 0 {
            // An ABORT marker ends the producer's aborted transaction.
            let is_abort = h.is_control() && {
                let records =
                    batch.records(self.decompress_limit).map_err(|e| self.corrupt(h.base_offset, e.to_string()))?;
                let mut abort = false;
                for r in records.iter() {
                    let r = r.map_err(|e| self.corrupt(h.base_offset, e.to_string()))?;
                    if let Ok(c) = ControlRecord::from_record(&r) {
                        abort |= c.kind == ControlRecordType::Abort;
                    }
                }
                abort
            };
            if let Some(filter) = &mut self.aborted {
                filter.reach(h.last_offset());
                if is_abort {
                    filter.aborted.remove(&pid);
                } else if !h.is_control() && h.is_transactional() && filter.aborted.contains(&pid) {
                    skip = true;
                }
            }
        }
        if !skip {
            let records =
                batch.records(self.decompress_limit).map_err(|e| self.corrupt(h.base_offset, e.to_string()))?;
            let timestamp_type = h.timestamp_type();
            let fetch_offset = self.fetch_offset;
            let (topic, partition) = (&self.topic, self.partition);
            let pending = &mut self.pending;
            let before = pending.len();
            let result: Result<(), kafka_protocol::ProtocolError> = records.try_for_each(|r| {
                if r.offset() >= fetch_offset {
                    pending.push_back(ConsumerRecord {
                        topic: topic.clone(),
                        partition,
                        leader_epoch: epoch,
                        timestamp_type,
                        body: Body::V2(r.into_owned()),
                    });
                }
                Ok(())
            });
            if let Err(e) = result {
                // Hand out nothing of a batch that does not decode whole.
                self.pending.truncate(before);
                return Err(self.corrupt(h.base_offset, e.to_string()));
            }
        }
        self.next_offset = next;
        self.next_epoch = epoch.or(self.next_epoch);
        Ok(())
    }

    fn corrupt(&self, offset: i64, reason: String) -> Error {
        Error::Corrupt { topic: self.topic.to_string(), partition: self.partition, offset, reason }
    }
}

/// The offset after the last complete entry of a records blob, and that entry's leader
/// epoch; `None` when it holds no complete entry. Reads only entry headers.
pub(crate) fn scan_end(records: &Bytes) -> Result<Option<(i64, Option<i32>)>, kafka_protocol::ProtocolError> {
    let mut end = None;
    for entry in RecordSetIter::new(records.clone()) {
        end = Some(match entry? {
            RecordSetEntry::Batch(b) => {
                let h = b.header();
                (h.next_offset(), (h.partition_leader_epoch >= 0).then_some(h.partition_leader_epoch))
            }
            RecordSetEntry::Legacy(m) => (m.offset.saturating_add(1), None),
        });
    }
    Ok(end)
}
