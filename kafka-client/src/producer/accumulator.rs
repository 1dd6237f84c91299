//! Per-partition batches: the open batch records are appended to, and the queue of closed
//! batches waiting for the sender.
//!
//! Each partition has its own mutex, taken once per record by `send` (to append) and once per
//! batch by the sender (to drain): producers writing to different partitions never contend,
//! and the sender never holds two partition locks at once nor any lock across an `.await`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use kafka_protocol::records::{BatchOptions, Header, ProducerState, RecordBatchBuilder, RECORD_BATCH_OVERHEAD};
use tokio::time::Instant;

use super::batch::{BatchShared, DeliveryFuture};
use super::partitioner::Sticky;
use crate::error::{Error, Result};

/// One topic's partitions.
pub(crate) struct TopicQueues {
    pub name: Arc<str>,
    partitions: RwLock<Vec<Arc<PartitionQueue>>>,
    pub sticky: Sticky,
}

impl TopicQueues {
    fn new(name: Arc<str>, count: usize) -> Self {
        let t = TopicQueues { name, partitions: RwLock::new(Vec::new()), sticky: Sticky::new() };
        t.ensure_partitions(count);
        t
    }

    /// The number of partitions known.
    pub fn partition_count(&self) -> i32 {
        i32::try_from(read(&self.partitions).len()).unwrap_or(i32::MAX)
    }

    /// The queue of partition `p`.
    pub fn partition(&self, p: i32) -> Option<Arc<PartitionQueue>> {
        usize::try_from(p).ok().and_then(|i| read(&self.partitions).get(i).cloned())
    }

    /// Every partition queue.
    pub fn all(&self) -> Vec<Arc<PartitionQueue>> {
        read(&self.partitions).clone()
    }

    /// Grows the partition list (partitions are only ever added in Kafka).
    pub fn ensure_partitions(&self, count: usize) {
        if read(&self.partitions).len() >= count {
            return;
        }
        let mut parts = self.partitions.write().unwrap_or_else(|e| e.into_inner());
        while parts.len() < count {
            let p = i32::try_from(parts.len()).unwrap_or(i32::MAX);
            parts.push(Arc::new(PartitionQueue::new(self.name.clone(), p)));
        }
    }
}

/// One partition's batches and its delivery state.
pub(crate) struct PartitionQueue {
    pub topic: Arc<str>,
    pub partition: i32,
    /// Whether the partition had a leader at the last metadata update (for the sticky
    /// partitioner).
    pub has_leader: AtomicBool,
    state: Mutex<PartitionState>,
}

impl PartitionQueue {
    fn new(topic: Arc<str>, partition: i32) -> Self {
        PartitionQueue {
            topic,
            partition,
            has_leader: AtomicBool::new(true),
            state: Mutex::new(PartitionState::default()),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, PartitionState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A batch still taking records.
pub(crate) struct OpenBatch {
    pub builder: RecordBatchBuilder,
    pub shared: Arc<BatchShared>,
    pub created: Instant,
    pub reserved: usize,
}

/// A batch's bytes: still a builder until it is first drained (then sealed with its producer
/// id, epoch and sequence), sealed bytes after.
pub(crate) enum BatchData {
    Building(RecordBatchBuilder),
    Sealed(Bytes),
}

/// A closed batch, queued or in flight.
pub(crate) struct QueuedBatch {
    /// Closing order within the partition; retried batches go back in this order.
    pub ordinal: u64,
    pub shared: Arc<BatchShared>,
    pub data: BatchData,
    pub created: Instant,
    /// `buffer.memory` bytes to give back when the batch completes.
    pub reserved: usize,
    pub record_count: i32,
    pub attempts: u32,
    /// An attempt's outcome is unknown (the connection dropped or the request timed out while
    /// it was in flight): the batch may be in the log.
    pub ambiguous: bool,
    pub retry_at: Option<Instant>,
    /// The producer id, epoch and base sequence it was sealed with (`NONE` before).
    pub producer: ProducerState,
    pub last_error: Option<Error>,
}

impl QueuedBatch {
    pub fn has_sequence(&self) -> bool {
        self.producer.base_sequence >= 0
    }
}

/// A partition's state, behind its mutex.
#[derive(Default)]
pub(crate) struct PartitionState {
    pub open: Option<OpenBatch>,
    /// Closed batches in sending order: retries (sealed) first, by ordinal.
    pub queue: VecDeque<QueuedBatch>,
    /// Every batch not yet completed, oldest first (what `flush` waits for).
    pub pending: VecDeque<Arc<BatchShared>>,
    /// Batches of this partition in flight, and the broker they went to.
    pub in_flight: usize,
    pub in_flight_node: i32,
    /// The connection those batches went out on: more may follow only on the same one, so
    /// that a batch can never reach the broker ahead of an earlier one whose connection
    /// failed (its failure may not have been handled yet).
    pub in_flight_conn: u64,
    /// A batch came back for a retry: until it succeeds, one batch at a time, so that a
    /// retry can never overtake or be overtaken.
    pub retrying: bool,
    /// The next sequence number to assign (idempotence).
    pub next_sequence: i32,
    /// The producer epoch `next_sequence` belongs to.
    pub sequence_epoch: i16,
    /// The sequence after the last batch the broker acknowledged under `sequence_epoch` (0
    /// before any): the base sequence the broker expects next. A batch starting elsewhere
    /// that gets OUT_OF_ORDER_SEQUENCE_NUMBER is refused only because an earlier batch is
    /// still missing (see the sender's `sequence_error`).
    pub acked_sequence_end: i32,
    /// The partition was added to the current transaction (AddPartitionsToTxn succeeded):
    /// its batches may be sent.
    pub txn_added: bool,
    next_ordinal: u64,
}

impl PartitionState {
    /// Moves the open batch to the queue.
    pub fn close_open(&mut self) {
        if let Some(open) = self.open.take() {
            let ordinal = self.next_ordinal;
            self.next_ordinal += 1;
            let record_count = open.builder.record_count();
            self.queue.push_back(QueuedBatch {
                ordinal,
                shared: open.shared,
                data: BatchData::Building(open.builder),
                created: open.created,
                reserved: open.reserved,
                record_count,
                attempts: 0,
                ambiguous: false,
                retry_at: None,
                producer: ProducerState::NONE,
                last_error: None,
            });
        }
    }

    /// Puts a batch back for a retry, in closing order.
    pub fn requeue(&mut self, batch: QueuedBatch) {
        let at = self.queue.iter().position(|b| b.ordinal > batch.ordinal).unwrap_or(self.queue.len());
        self.queue.insert(at, batch);
    }

    /// The batch with this ordinal was definitely not written under `epoch`: neither was any
    /// later batch of that epoch (the broker appends a producer's batches only in sequence),
    /// so their earlier unknown outcomes are resolved as "not written".
    pub fn resolve_not_written_after(&mut self, ordinal: u64, epoch: i16) {
        for b in self.queue.iter_mut() {
            if b.ordinal > ordinal && b.has_sequence() && b.producer.producer_epoch == epoch {
                b.ambiguous = false;
            }
        }
    }

    /// Whether a queued batch has an unresolved unknown outcome under its sequence.
    pub fn has_unresolved(&self) -> bool {
        self.queue.iter().any(|b| b.ambiguous && b.has_sequence())
    }

    /// Forgets completed batches at the front of `pending`.
    pub fn prune_pending(&mut self) {
        while self.pending.front().is_some_and(|b| b.is_done()) {
            self.pending.pop_front();
        }
    }
}

/// What `append` needs to know about the producer's settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AppendSettings {
    pub batch_size: usize,
    pub options: BatchOptions,
}

/// FNV-1a: the topic map is looked up once per record with a short, trusted key (the
/// application's topic names), where SipHash's flood resistance buys nothing and costs
/// several percent of a record's CPU.
#[derive(Default, Clone, Copy)]
pub(crate) struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type TopicMap = HashMap<Arc<str>, Arc<TopicQueues>, std::hash::BuildHasherDefault<Fnv>>;

/// Every topic's queues.
pub(crate) struct Accumulator {
    topics: RwLock<TopicMap>,
    pub settings: AppendSettings,
    /// Bytes of `buffer.memory` still free; `send` waits on it.
    pub memory: Arc<tokio::sync::Semaphore>,
    /// Senders waiting for memory: the sender then sends open batches without lingering.
    pub memory_waiters: AtomicUsize,
    /// `flush` calls in progress: open batches are sent without lingering.
    pub flushing: AtomicUsize,
    /// Buffers of delivered uncompressed batches, reused for new ones: a fresh 1 MiB buffer
    /// costs 256 page faults and the kernel zeroing each page, more than filling it.
    pool: Mutex<Vec<Vec<u8>>>,
    pool_max: usize,
}

impl Accumulator {
    pub fn new(settings: AppendSettings, buffer_memory: usize) -> Self {
        Accumulator {
            topics: RwLock::new(TopicMap::default()),
            settings,
            memory: Arc::new(tokio::sync::Semaphore::new(buffer_memory.min(tokio::sync::Semaphore::MAX_PERMITS))),
            memory_waiters: AtomicUsize::new(0),
            flushing: AtomicUsize::new(0),
            pool: Mutex::new(Vec::new()),
            // A few buffers cover the turnover (a batch completes, another opens) without
            // holding memory outside buffer.memory's accounting for long.
            pool_max: (buffer_memory / settings.batch_size.max(1) / 8).clamp(1, 4),
        }
    }

    /// Offers the memory of a delivered batch for reuse.
    pub fn recycle(&self, buf: Vec<u8>) {
        if self.settings.options.compression != kafka_protocol::compression::Compression::None
            || buf.capacity() < self.settings.batch_size
        {
            return;
        }
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < self.pool_max {
            pool.push(buf);
        }
    }

    fn new_builder(&self, needed: usize) -> RecordBatchBuilder {
        let limit = self.settings.batch_size.max(RECORD_BATCH_OVERHEAD);
        let recycled = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match recycled {
            Some(buf) if buf.capacity() >= needed => RecordBatchBuilder::with_vec(buf, self.settings.options),
            _ => RecordBatchBuilder::with_capacity(limit.max(needed), self.settings.options),
        }
    }

    pub fn topic(&self, name: &str) -> Option<Arc<TopicQueues>> {
        read(&self.topics).get(name).cloned()
    }

    /// The topic's queues, created with `count` partitions if new.
    pub fn topic_or_insert(&self, name: &str, count: usize) -> Arc<TopicQueues> {
        if let Some(t) = self.topic(name) {
            t.ensure_partitions(count);
            return t;
        }
        let mut topics = self.topics.write().unwrap_or_else(|e| e.into_inner());
        topics.entry(Arc::from(name)).or_insert_with_key(|k| Arc::new(TopicQueues::new(k.clone(), count))).clone()
    }

    pub fn topics(&self) -> Vec<Arc<TopicQueues>> {
        read(&self.topics).values().cloned().collect()
    }

    /// Appends a record to the partition's open batch, opening a new one (and queueing the
    /// full one) when it does not fit. Returns the record's future and whether the sender
    /// should look at the partition (a batch was opened or closed).
    #[allow(clippy::too_many_arguments)]
    pub fn append(
        &self,
        queue: &PartitionQueue,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header<'_>],
        reserved: usize,
    ) -> Result<(DeliveryFuture, bool)> {
        let mut st = queue.lock();
        let limit = self.settings.batch_size.max(RECORD_BATCH_OVERHEAD);
        if let Some(open) = st.open.as_mut() {
            let size = open.builder.next_record_size(timestamp, key, value, headers);
            if open.builder.size_in_bytes().saturating_add(size) <= limit {
                let index = open.builder.append(timestamp, key, value, headers).map_err(invalid_record)?;
                open.reserved += reserved;
                return Ok((DeliveryFuture { batch: open.shared.clone(), index, timestamp }, false));
            }
            st.close_open();
        }
        let needed = RECORD_BATCH_OVERHEAD + RecordBatchBuilder::max_record_size(key, value, headers);
        let mut builder = self.new_builder(needed);
        // On error the full batch stays queued; the caller wakes the sender on errors too.
        let index = builder.append(timestamp, key, value, headers).map_err(invalid_record)?;
        let shared = BatchShared::new(queue.topic.clone(), queue.partition);
        st.pending.push_back(shared.clone());
        st.open = Some(OpenBatch { builder, shared: shared.clone(), created: Instant::now(), reserved });
        Ok((DeliveryFuture { batch: shared, index, timestamp }, true))
    }
}

fn invalid_record(e: kafka_protocol::ProtocolError) -> Error {
    Error::InvalidArgument(format!("record cannot be encoded: {e}"))
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}
