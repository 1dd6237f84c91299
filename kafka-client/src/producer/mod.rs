//! The producer: `send` appends to per-partition batches; a sender task ships them.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use kafka_client::{Producer, ProducerConfig, ProducerRecord};
//!
//! let cluster = kafka_broker::Cluster::builder().brokers(1).start().await?;
//! cluster.create_topic("orders", 3, 1).await?;
//!
//! let producer = Producer::new(ProducerConfig::new(&cluster.bootstrap_servers()))?;
//! // `send` returns once the record is in a batch; the future it gives resolves on delivery.
//! let delivery = producer.send(ProducerRecord::new("orders").key("order-1").value("{\"qty\": 3}")).await?;
//! let metadata = delivery.await?;
//! assert_eq!(metadata.offset, 0);
//!
//! // Many records in flight at once: keep the futures, await them later.
//! let mut pending = Vec::new();
//! for i in 0..100 {
//!     let value = format!("record {i}");
//!     pending.push(producer.send(ProducerRecord::new("orders").value(&value)).await?);
//! }
//! producer.flush().await?;
//! for p in pending {
//!     assert!(p.await?.offset >= 0);
//! }
//! producer.close(std::time::Duration::from_secs(5)).await?;
//! cluster.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod accumulator;
mod batch;
mod partitioner;
mod sender;
mod txn;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kafka_protocol::murmur2::partition_for_key;
use kafka_protocol::records::{BatchOptions, RecordBatchBuilder, RECORD_BATCH_OVERHEAD};
use tokio::sync::{Notify, TryAcquireError};
use tokio::time::Instant;

pub use kafka_protocol::records::Header;

use self::accumulator::{Accumulator, AppendSettings, TopicQueues};
use self::batch::{BatchDone, BatchShared};
pub use self::batch::{DeliveryFuture, RecordMetadata};
pub use self::partitioner::Partitioner;
use crate::client::Client;
use crate::config::ProducerConfig;
use crate::error::{Error, Result};

/// A record to send. It borrows its topic, key, value and headers: `send` copies them once,
/// straight into the partition's batch in wire form, so nothing is allocated per record.
///
/// ```
/// use kafka_client::ProducerRecord;
/// let payload = vec![1u8, 2, 3];
/// let record = ProducerRecord::new("events")
///     .key("user-42")                 // &str
///     .value(&payload)                // Vec<u8> (or Bytes, &[u8], String...)
///     .header("trace-id", "abc")
///     .timestamp(1_700_000_000_000);
/// assert_eq!(record.value, Some(&[1u8, 2, 3][..]));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerRecord<'a> {
    /// The topic.
    pub topic: &'a str,
    /// An explicit partition; otherwise the partitioner chooses.
    pub partition: Option<i32>,
    /// The key (`None` is a null key).
    pub key: Option<&'a [u8]>,
    /// The value (`None` is a null value: a tombstone on compacted topics).
    pub value: Option<&'a [u8]>,
    /// Headers, in order.
    pub headers: Vec<Header<'a>>,
    /// The timestamp in ms since the epoch; the time of `send` when `None`.
    pub timestamp: Option<i64>,
}

impl<'a> ProducerRecord<'a> {
    /// A record for `topic` with no key, value or headers.
    pub fn new(topic: &'a str) -> Self {
        ProducerRecord { topic, ..Default::default() }
    }

    /// Sets the key.
    pub fn key<K: AsRef<[u8]> + ?Sized>(mut self, key: &'a K) -> Self {
        self.key = Some(key.as_ref());
        self
    }

    /// Sets the value.
    pub fn value<V: AsRef<[u8]> + ?Sized>(mut self, value: &'a V) -> Self {
        self.value = Some(value.as_ref());
        self
    }

    /// Sends to this partition.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Adds a header.
    pub fn header<V: AsRef<[u8]> + ?Sized>(mut self, key: &'a str, value: &'a V) -> Self {
        self.headers.push(Header { key, value: Some(value.as_ref()) });
        self
    }

    /// Adds a header with a null value.
    pub fn null_header(mut self, key: &'a str) -> Self {
        self.headers.push(Header { key, value: None });
        self
    }

    /// Sets the timestamp (ms since the epoch).
    pub fn timestamp(mut self, timestamp_ms: i64) -> Self {
        self.timestamp = Some(timestamp_ms);
        self
    }
}

/// State shared by the producer handles and the sender task.
pub(crate) struct Inner {
    pub config: ProducerConfig,
    pub client: Client,
    pub acc: Accumulator,
    /// Wakes the sender (a batch opened or closed, a flush, a close).
    pub wake: Notify,
    partitioner: Option<Arc<dyn Partitioner>>,
    fatal: Mutex<Option<Error>>,
    has_fatal: AtomicBool,
    /// No more sends; the sender delivers what it has, without lingering, then stops.
    pub closing: AtomicBool,
    /// The sender fails everything left and stops.
    pub abort: AtomicBool,
    pub finished: Notify,
    pub finished_flag: AtomicBool,
    /// The transaction state (a `transactional.id` is set).
    pub txn: Option<txn::Txn>,
}

impl Inner {
    pub fn set_fatal(&self, error: Error) {
        let mut f = self.fatal.lock().unwrap_or_else(|e| e.into_inner());
        if f.is_none() {
            *f = Some(error);
            self.has_fatal.store(true, Ordering::Release);
        }
    }

    fn fatal(&self) -> Option<Error> {
        if !self.has_fatal.load(Ordering::Acquire) {
            return None;
        }
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn wait_finished(&self) {
        loop {
            let n = self.finished.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if self.finished_flag.load(Ordering::Acquire) {
                return;
            }
            n.await;
        }
    }
}

/// Tells the sender when the last handle is gone, so that it delivers what is left and stops
/// (dropping a producer never blocks).
struct HandleGuard(Arc<Inner>);

impl Drop for HandleGuard {
    fn drop(&mut self) {
        self.0.closing.store(true, Ordering::Release);
        self.0.wake.notify_one();
    }
}

/// An async Kafka producer: batching, linger, compression, retries and idempotence.
///
/// Cheap to clone (clones share everything) and usable from many tasks. See the
/// [module documentation](self) for an example.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
    _handle: Arc<HandleGuard>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").field("client_id", &self.inner.config.client.client_id).finish()
    }
}

struct FlushGuard<'a>(&'a Inner);

impl Drop for FlushGuard<'_> {
    fn drop(&mut self) {
        self.0.acc.flushing.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Producer {
    /// Creates a producer. Must be called inside a tokio runtime (it starts the sender
    /// task); nothing is connected until the first record is sent.
    pub fn new(config: ProducerConfig) -> Result<Producer> {
        Self::build(config, None)
    }

    /// Creates a producer with a custom [`Partitioner`].
    pub fn with_partitioner(config: ProducerConfig, partitioner: impl Partitioner) -> Result<Producer> {
        Self::build(config, Some(Arc::new(partitioner)))
    }

    fn build(mut config: ProducerConfig, partitioner: Option<Arc<dyn Partitioner>>) -> Result<Producer> {
        config.validate()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::InvalidArgument("a Producer must be created inside a tokio runtime".to_owned()));
        }
        let client = Client::new(config.client.clone(), true)?;
        let settings = AppendSettings {
            batch_size: config.batch_size.min(config.max_request_size),
            options: BatchOptions {
                compression: config.compression,
                compression_level: config.compression_level,
                transactional: config.transactional_id.is_some(),
                ..Default::default()
            },
        };
        let txn = config.transactional_id.clone().map(|id| txn::Txn::new(id, config.transaction_timeout));
        let inner = Arc::new(Inner {
            acc: Accumulator::new(settings, config.buffer_memory),
            config,
            client,
            wake: Notify::new(),
            partitioner,
            fatal: Mutex::new(None),
            has_fatal: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            abort: AtomicBool::new(false),
            finished: Notify::new(),
            finished_flag: AtomicBool::new(false),
            txn,
        });
        tokio::spawn(sender::run(inner.clone()));
        Ok(Producer { _handle: Arc::new(HandleGuard(inner.clone())), inner })
    }

    /// The producer's settings (after validation).
    pub fn config(&self) -> &ProducerConfig {
        &self.inner.config
    }

    /// Bytes of `buffer.memory` not taken by records waiting to be sent or acknowledged (Java's
    /// `buffer-available-bytes` metric).
    pub fn buffer_available_bytes(&self) -> usize {
        self.inner.acc.memory.available_permits()
    }

    /// The connection layer (metadata, connections) this producer uses.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Appends a record to its partition's batch and returns the future of its delivery.
    ///
    /// Waits only for what it needs: the topic's metadata the first time a topic is used, and
    /// room in `buffer.memory`; both at most `max.block.ms`, after which it fails with
    /// [`Error::Timeout`]. A record that can never fit `max.request.size` (or
    /// `buffer.memory`) fails at once with [`Error::RecordTooLarge`].
    pub async fn send(&self, record: ProducerRecord<'_>) -> Result<DeliveryFuture> {
        let inner = &*self.inner;
        if inner.closing.load(Ordering::Acquire) {
            return Err(Error::Closed("producer"));
        }
        if let Some(e) = inner.fatal() {
            return Err(e);
        }
        if let Some(txn) = &inner.txn {
            txn::Txn::check_send(&txn.read())?;
        }
        let r = self.send_inner(record).await;
        if let (Some(txn), Err(e)) = (&inner.txn, &r) {
            // As in Java: a record that could not even be queued leaves the transaction
            // incomplete, so it can only abort (unless the call was refused by the state).
            if !matches!(e, Error::TransactionState(_) | Error::TransactionAbortable(_)) {
                txn.set_abortable(e.clone(), false);
            }
        }
        r
    }

    async fn send_inner(&self, record: ProducerRecord<'_>) -> Result<DeliveryFuture> {
        let inner = &*self.inner;
        let config = &inner.config;
        // The record's encoded size (an upper bound); with the batch header, what a batch
        // holding only this record takes.
        let size = RecordBatchBuilder::max_record_size(record.key, record.value, &record.headers);
        let alone = RECORD_BATCH_OVERHEAD + size;
        if alone > config.max_request_size {
            return Err(Error::RecordTooLarge {
                size: alone,
                limit: config.max_request_size,
                setting: "max.request.size",
            });
        }
        if alone > config.buffer_memory {
            return Err(Error::RecordTooLarge { size: alone, limit: config.buffer_memory, setting: "buffer.memory" });
        }
        let mut deadline = None;
        let topic = match inner.acc.topic(record.topic) {
            Some(t) if t.partition_count() > 0 => t,
            _ => self.topic_slow(record.topic, &mut deadline).await?,
        };
        let partition = self.choose_partition(&topic, &record, size, &mut deadline).await?;
        let queue = topic
            .partition(partition)
            .ok_or_else(|| Error::InvalidArgument(format!("partition {partition} of {} is unknown", record.topic)))?;
        let permits = u32::try_from(size).unwrap_or(u32::MAX);
        match inner.acc.memory.try_acquire_many(permits) {
            Ok(p) => p.forget(),
            Err(TryAcquireError::NoPermits) => self.wait_for_memory(permits, &mut deadline).await?,
            Err(TryAcquireError::Closed) => return Err(Error::Closed("producer")),
        }
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        // A transactional record is appended under the state's read lock: commit and abort
        // change the state under the write lock, so no record can join a transaction after
        // its flush began.
        let txn_state = inner.txn.as_ref().map(|t| t.read());
        if let Some(Err(e)) = txn_state.as_ref().map(|st| txn::Txn::check_send(st)) {
            drop(txn_state);
            inner.acc.memory.add_permits(size);
            return Err(e);
        }
        let appended = inner.acc.append(&queue, timestamp, record.key, record.value, &record.headers, size);
        drop(txn_state);
        match appended {
            Ok((future, wake)) => {
                if wake {
                    inner.wake.notify_one();
                }
                Ok(future)
            }
            Err(e) => {
                inner.acc.memory.add_permits(size);
                inner.wake.notify_one();
                Err(e)
            }
        }
    }

    async fn topic_slow(&self, topic: &str, deadline: &mut Option<Instant>) -> Result<Arc<TopicQueues>> {
        if topic.is_empty() {
            return Err(Error::InvalidArgument("the topic name is empty".to_owned()));
        }
        let remaining = remaining(deadline, self.inner.config.max_block);
        let metadata = self.inner.client.wait_for_topic(topic, remaining, "max.block.ms").await?;
        let count = metadata.topic(topic).map(|t| t.partitions.len()).unwrap_or(0);
        Ok(self.inner.acc.topic_or_insert(topic, count))
    }

    async fn choose_partition(
        &self,
        topic: &TopicQueues,
        record: &ProducerRecord<'_>,
        size: usize,
        deadline: &mut Option<Instant>,
    ) -> Result<i32> {
        let count = topic.partition_count();
        let wanted = match record.partition {
            Some(p) => Some(p),
            None => match &self.inner.partitioner {
                Some(custom) => custom.partition(record.topic, record.key, record.value, count),
                None => None,
            },
        };
        if let Some(p) = wanted {
            if p < 0 {
                return Err(Error::InvalidArgument(format!("partition {p} is negative")));
            }
            if p >= count {
                return self.wait_for_partition(topic, p, deadline).await;
            }
            return Ok(p);
        }
        match record.key {
            Some(key) if !self.inner.config.partitioner_ignore_keys => Ok(partition_for_key(key, count)),
            _ => Ok(topic.sticky.next(size, count, self.inner.acc.settings.batch_size, |p| {
                topic.partition(p).is_some_and(|q| q.has_leader.load(Ordering::Relaxed))
            })),
        }
    }

    /// An explicit partition beyond the known count: the metadata may be stale (partitions
    /// were added); wait for it like Java does, at most `max.block.ms`.
    async fn wait_for_partition(&self, topic: &TopicQueues, p: i32, deadline: &mut Option<Instant>) -> Result<i32> {
        let max_block = self.inner.config.max_block;
        let until = *deadline.get_or_insert_with(|| Instant::now() + max_block);
        loop {
            if let Ok(m) = self.inner.client.refresh_metadata().await {
                if let Some(t) = m.topic(&topic.name) {
                    topic.ensure_partitions(t.partitions.len());
                }
            }
            if p < topic.partition_count() {
                return Ok(p);
            }
            if Instant::now() >= until {
                return Err(Error::Timeout {
                    what: format!(
                        "waiting for partition {p} of topic {} (it has {} partitions)",
                        topic.name,
                        topic.partition_count()
                    ),
                    setting: "max.block.ms",
                    timeout_ms: max_block.as_millis() as u64,
                });
            }
            let pause = self.inner.config.client.retry_backoff.min(until.saturating_duration_since(Instant::now()));
            tokio::time::sleep(pause).await;
        }
    }

    async fn wait_for_memory(&self, permits: u32, deadline: &mut Option<Instant>) -> Result<()> {
        let inner = &*self.inner;
        let max_block = inner.config.max_block;
        let until = *deadline.get_or_insert_with(|| Instant::now() + max_block);
        inner.acc.memory_waiters.fetch_add(1, Ordering::AcqRel);
        inner.wake.notify_one();
        let r = tokio::time::timeout_at(until, inner.acc.memory.acquire_many(permits)).await;
        inner.acc.memory_waiters.fetch_sub(1, Ordering::AcqRel);
        match r {
            Ok(Ok(p)) => {
                p.forget();
                Ok(())
            }
            Ok(Err(_)) => Err(Error::Closed("producer")),
            Err(_) => Err(Error::Timeout {
                what: format!("waiting for buffer memory ({permits} bytes of buffer.memory)"),
                setting: "max.block.ms",
                timeout_ms: max_block.as_millis() as u64,
            }),
        }
    }

    /// Sends every batch now (no lingering) and waits until every record sent before the
    /// call has an outcome. Individual failures are reported by the records' futures.
    pub async fn flush(&self) -> Result<()> {
        let inner = &*self.inner;
        inner.acc.flushing.fetch_add(1, Ordering::AcqRel);
        let _guard = FlushGuard(inner);
        inner.wake.notify_one();
        let mut waits: Vec<Arc<BatchShared>> = Vec::new();
        for t in inner.acc.topics() {
            for p in t.all() {
                let mut st = p.lock();
                st.prune_pending();
                waits.extend(st.pending.iter().cloned());
            }
        }
        for b in waits {
            BatchDone(b).await;
        }
        Ok(())
    }

    /// Flushes, then stops the sender and closes the connections. Records still undelivered
    /// after `timeout` fail: queued ones as not persisted, in-flight ones as possibly
    /// persisted. Later sends fail with [`Error::Closed`].
    pub async fn close(&self, timeout: Duration) -> Result<()> {
        let inner = &*self.inner;
        inner.closing.store(true, Ordering::Release);
        inner.wake.notify_one();
        if tokio::time::timeout(timeout, inner.wait_finished()).await.is_err() {
            inner.abort.store(true, Ordering::Release);
            inner.wake.notify_one();
            inner.wait_finished().await;
            return Err(Error::Timeout {
                what: "closing the producer with records still undelivered".to_owned(),
                setting: "close timeout",
                timeout_ms: timeout.as_millis() as u64,
            });
        }
        Ok(())
    }
}

fn remaining(deadline: &mut Option<Instant>, max_block: Duration) -> Duration {
    let until = *deadline.get_or_insert_with(|| Instant::now() + max_block);
    until.saturating_duration_since(Instant::now())
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
