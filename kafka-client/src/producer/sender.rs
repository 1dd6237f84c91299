//! The sender task: drains ready batches into one ProduceRequest per broker, handles the
//! responses, retries, expires, and keeps the idempotence state (producer id, epoch,
//! sequence numbers).
//!
//! One task decides for every broker, and the requests themselves run as separate tasks
//! over each broker's connection, so a slow broker never holds up the others. A single
//! decision-maker is what makes the ordering rules simple to keep:
//! - a partition's batches in flight all go to one broker; after a retriable failure, the
//!   partition sends one batch at a time until the retried batch is acknowledged, so a retry
//!   can never overtake, or be overtaken by, a later batch;
//! - sequence numbers are assigned when a batch is first drained and kept across retries; a
//!   batch is never re-split or re-merged;
//! - an epoch bump (KIP-360: after OUT_OF_ORDER_SEQUENCE_NUMBER, UNKNOWN_PRODUCER_ID, or a
//!   sequenced batch that failed and left a gap) waits until nothing is in flight and every
//!   batch whose earlier attempt had an unknown outcome has been resolved under the old
//!   epoch; then the epoch is bumped locally (as the Java client does for idempotent
//!   producers), sequences restart at 0, and queued batches are re-stamped in order;
//! - OUT_OF_ORDER_SEQUENCE_NUMBER for a batch that is not the next one the broker expects
//!   (an earlier batch of the epoch is not acknowledged yet, e.g. it got a retriable
//!   NOT_LEADER_OR_FOLLOWER while this one was in flight behind it) only retries it, after the
//!   earlier one: no bump, no failed transaction, as in the Java client.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::compression::Compression;
use kafka_protocol::frame;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse};
use kafka_protocol::records::{set_producer_state, ProducerState};
use kafka_protocol::{ApiKey, ErrorCode};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::accumulator::{BatchData, PartitionQueue, QueuedBatch};
use super::batch::Written;
use super::Inner;
use crate::config::Acks;
use crate::conn::Connection;
use crate::error::{DeliveryError, Error, Persistence, Result};

/// Produce v3 is the first with record batches (magic 2); zstd needs v7.
const PRODUCE_MIN_VERSION: i16 = 3;
const PRODUCE_ZSTD_MIN_VERSION: i16 = 7;

type Drained = (Arc<PartitionQueue>, QueuedBatch);

enum Done {
    Produce(RequestDone),
    ProducerId(Result<(i64, i16)>),
    Connected(i32, Result<Connection>),
    /// AddPartitionsToTxn finished: each partition's outcome, or the whole request's error.
    PartitionsAdded(Vec<Arc<PartitionQueue>>, Result<Vec<(Arc<PartitionQueue>, ErrorCode)>>),
}

struct RequestDone {
    node: i32,
    batches: Vec<Drained>,
    result: Result<Option<ProduceResponse>>,
    /// Whether the request may have reached the broker (so a failure leaves an unknown
    /// outcome).
    maybe_sent: bool,
}

struct Sender {
    inner: Arc<Inner>,
    requests: JoinSet<Done>,
    in_flight_per_node: HashMap<i32, usize>,
    /// The connection each broker's requests go out on (the sender's own view, so that it
    /// knows which connection every in-flight batch used).
    conns: HashMap<i32, Connection>,
    connecting: std::collections::HashSet<i32>,
    blocked_until: HashMap<i32, Instant>,
    producer_id: i64,
    epoch: i16,
    init_running: bool,
    /// Where the next drain round starts (see `drain`).
    drain_start: usize,
    bump_pending: bool,
    idempotent: bool,
    /// An AddPartitionsToTxn of this sender is in flight.
    adding: bool,
}

/// Runs until the producer is closed (or dropped) and everything it accepted has an outcome.
pub(crate) async fn run(inner: Arc<Inner>) {
    let idempotent = inner.config.enable_idempotence;
    let mut metadata = inner.client.watch_metadata();
    let mut s = Sender {
        inner,
        requests: JoinSet::new(),
        in_flight_per_node: HashMap::new(),
        conns: HashMap::new(),
        connecting: std::collections::HashSet::new(),
        blocked_until: HashMap::new(),
        producer_id: -1,
        epoch: -1,
        init_running: false,
        drain_start: 0,
        bump_pending: false,
        idempotent,
        adding: false,
    };
    loop {
        let now = Instant::now();
        if s.inner.abort.load(Ordering::Acquire) {
            s.abort_all();
            break;
        }
        s.expire(now);
        if s.inner.txn.is_some() {
            s.sync_transaction();
        } else if s.idempotent && s.producer_id < 0 && !s.init_running && s.has_work() {
            s.start_init();
        }
        s.maybe_bump();
        let next = s.drain(now);
        // Connection attempts and an InitProducerId still running do not hold up the end:
        // dropping the JoinSet aborts them.
        if s.inner.closing.load(Ordering::Acquire) && s.in_flight_total() == 0 && !s.has_work() {
            break;
        }
        tokio::select! {
            _ = s.inner.wake.notified() => {}
            _ = tokio::time::sleep_until(next) => {}
            Some(done) = s.requests.join_next(), if !s.requests.is_empty() => match done {
                Ok(Done::Produce(d)) => s.handle(d),
                Ok(Done::ProducerId(r)) => s.producer_id_done(r),
                Ok(Done::Connected(node, r)) => s.connected(node, r),
                Ok(Done::PartitionsAdded(parts, r)) => s.partitions_added(parts, r),
                Err(e) => tracing::error!(error = %e, "producer request task failed"),
            },
            r = metadata.changed() => {
                if r.is_err() {
                    // The client is gone: nothing can be sent any more.
                    s.inner.abort.store(true, Ordering::Release);
                }
            }
        }
    }
    s.inner.client.close();
    // The flag first: a waiter that checks it after registering cannot miss the wake-up.
    s.inner.finished_flag.store(true, Ordering::Release);
    s.inner.finished.notify_waiters();
}

impl Sender {
    fn config(&self) -> &crate::config::ProducerConfig {
        &self.inner.config
    }

    /// Whether any partition has an open, queued or in-flight batch.
    fn has_work(&self) -> bool {
        self.inner.acc.topics().iter().any(|t| {
            t.all().iter().any(|p| {
                let st = p.lock();
                st.open.is_some() || !st.queue.is_empty() || st.in_flight > 0
            })
        })
    }

    /// Transactional producers get their producer id and epoch from the transaction state
    /// (init_transactions, and the bump after an abort), and fail their queued batches while
    /// an abort is under way.
    fn sync_transaction(&mut self) {
        let inner = self.inner.clone();
        let Some(txn) = &inner.txn else { return };
        let (producer_id, epoch, abort, fatal) = {
            let st = txn.read();
            (
                st.producer_id,
                st.epoch,
                (st.abort_requested > st.abort_drained).then_some(st.abort_requested),
                st.fatal.clone(),
            )
        };
        if (producer_id, epoch) != (self.producer_id, self.epoch) && self.in_flight_total() == 0 {
            self.producer_id = producer_id;
            self.epoch = epoch;
            if producer_id >= 0 {
                self.reset_sequences();
            }
        }
        if let Some(e) = fatal {
            self.fail_everything(e);
        }
        if let Some(requested) = abort {
            // No record can be appended while the abort waits for this (the state is
            // Aborting), so only the aborted transaction's records are failed.
            self.fail_everything(Error::TransactionAborted);
            txn.write().abort_drained = requested;
            txn.changed.notify_waiters();
        }
    }

    /// Adds `parts` to the transaction (one request at a time; the partitions that arrive
    /// meanwhile wait for the next one).
    fn start_add_partitions(&mut self, parts: Vec<Arc<PartitionQueue>>) {
        let Some(txn) = &self.inner.txn else { return };
        self.adding = true;
        txn.write().adding += 1;
        let inner = self.inner.clone();
        let producer = (self.producer_id, self.epoch);
        self.requests.spawn(async move {
            let r = match &inner.txn {
                Some(txn) => txn.add_partitions(&inner, producer, &parts).await,
                None => Err(Error::TransactionState("not transactional".to_owned())),
            };
            Done::PartitionsAdded(parts, r)
        });
    }

    fn partitions_added(&mut self, parts: Vec<Arc<PartitionQueue>>, r: Result<Vec<(Arc<PartitionQueue>, ErrorCode)>>) {
        self.adding = false;
        let inner = self.inner.clone();
        let Some(txn) = inner.txn.as_ref() else { return };
        let outcomes: Vec<(Arc<PartitionQueue>, Option<Error>)> = match r {
            Ok(results) => results
                .into_iter()
                .map(|(p, code)| {
                    let e = code.err().map(|c| {
                        Error::kafka(c, Some(format!("adding {}-{} to the transaction", p.topic, p.partition)))
                    });
                    (p, e)
                })
                .collect(),
            Err(e) => parts.into_iter().map(|p| (p, Some(e.clone()))).collect(),
        };
        let mut added_any = false;
        for (p, e) in outcomes {
            match e {
                None => {
                    p.lock().txn_added = true;
                    added_any = true;
                }
                // Another partition's failure: this one was not tried.
                Some(e) if e.code() == Some(ErrorCode::OperationNotAttempted) => {}
                Some(e) => {
                    tracing::debug!(topic = %p.topic, partition = p.partition, error = %e, "partition not added to the transaction");
                    if e.code().is_some_and(super::txn::is_fatal) {
                        txn.set_fatal(e.clone());
                        self.inner.set_fatal(e.clone());
                    } else {
                        txn.set_abortable(e.clone(), false);
                    }
                    let batches: Vec<QueuedBatch> = {
                        let mut st = p.lock();
                        st.close_open();
                        st.queue.drain(..).collect()
                    };
                    for b in batches {
                        self.fail(&p, b, e.clone());
                    }
                }
            }
        }
        {
            let mut st = txn.write();
            st.adding = st.adding.saturating_sub(1);
            st.started |= added_any;
        }
        txn.changed.notify_waiters();
    }

    fn start_init(&mut self) {
        self.init_running = true;
        let client = self.inner.client.clone();
        let backoff = self.config().client.retry_backoff;
        let backoff_max = self.config().client.retry_backoff_max;
        self.requests.spawn(async move {
            let mut attempt = 0u32;
            loop {
                let r = async {
                    let conn = client.any_connection().await?;
                    let request = InitProducerIdRequest {
                        transactional_id: None,
                        transaction_timeout_ms: 60_000,
                        producer_id: -1,
                        producer_epoch: -1,
                        ..Default::default()
                    };
                    let resp: InitProducerIdResponse = conn.request(&request).await?;
                    match ErrorCode::from_code(resp.error_code).err() {
                        None => Ok((resp.producer_id, resp.producer_epoch)),
                        Some(code) => Err(Error::kafka(code, None)),
                    }
                }
                .await;
                match r {
                    Ok(v) => return Done::ProducerId(Ok(v)),
                    Err(e) if e.is_retriable() => {
                        attempt = attempt.saturating_add(1);
                        tracing::debug!(error = %e, attempt, "InitProducerId failed, retrying");
                        tokio::time::sleep(retry_backoff(backoff, backoff_max, attempt)).await;
                    }
                    Err(e) => return Done::ProducerId(Err(e)),
                }
            }
        });
    }

    fn producer_id_done(&mut self, r: Result<(i64, i16)>) {
        self.init_running = false;
        match r {
            Ok((id, epoch)) => {
                tracing::debug!(producer_id = id, epoch, "producer id assigned");
                self.producer_id = id;
                self.epoch = epoch;
                self.reset_sequences();
            }
            Err(e) => {
                tracing::error!(error = %e, "InitProducerId failed: the producer cannot send");
                self.inner.set_fatal(e.clone());
                self.fail_everything(e);
            }
        }
    }

    /// After a new producer id or epoch: every partition's sequence restarts at 0, and
    /// sealed batches waiting for a retry are re-stamped, in order.
    fn reset_sequences(&mut self) {
        let producer = ProducerState { producer_id: self.producer_id, producer_epoch: self.epoch, base_sequence: 0 };
        for t in self.inner.acc.topics() {
            for p in t.all() {
                let mut st = p.lock();
                st.next_sequence = 0;
                st.acked_sequence_end = 0;
                st.sequence_epoch = self.epoch;
                let mut next = 0i32;
                for b in st.queue.iter_mut() {
                    if let BatchData::Sealed(bytes) = &b.data {
                        let stamp = ProducerState { base_sequence: next, ..producer };
                        let mut copy = BytesMut::from(&bytes[..]);
                        if set_producer_state(&mut copy, stamp).is_ok() {
                            b.data = BatchData::Sealed(copy.freeze());
                            b.producer = stamp;
                            next = next_sequence(next, b.record_count);
                        }
                    }
                }
                st.next_sequence = next;
            }
        }
    }

    /// Bumps the epoch once it is safe (see the module docs).
    fn maybe_bump(&mut self) {
        if !self.bump_pending || self.in_flight_total() > 0 {
            return;
        }
        let unresolved = self.inner.acc.topics().iter().any(|t| {
            t.all().iter().any(|p| {
                let st = p.lock();
                st.in_flight > 0 || st.has_unresolved()
            })
        });
        if unresolved {
            return;
        }
        self.bump_pending = false;
        if self.epoch == i16::MAX || self.producer_id < 0 {
            // The epoch cannot grow: ask for a new producer id instead.
            self.producer_id = -1;
            self.epoch = -1;
            tracing::info!("producer epoch exhausted: requesting a new producer id");
            return;
        }
        self.epoch += 1;
        tracing::info!(producer_id = self.producer_id, epoch = self.epoch, "producer epoch bumped (KIP-360)");
        self.reset_sequences();
    }

    fn in_flight_total(&self) -> usize {
        self.in_flight_per_node.values().sum()
    }

    /// Fails batches that waited longer than `delivery.timeout.ms` without being in flight.
    fn expire(&mut self, now: Instant) {
        let timeout = self.config().delivery_timeout;
        let mut expired = Vec::new();
        for t in self.inner.acc.topics() {
            for p in t.all() {
                let mut st = p.lock();
                while st.queue.front().is_some_and(|b| b.created + timeout <= now) {
                    if let Some(b) = st.queue.pop_front() {
                        expired.push((p.clone(), b));
                    }
                }
                if st.open.as_ref().is_some_and(|o| o.created + timeout <= now) {
                    st.close_open();
                    if let Some(b) = st.queue.pop_back() {
                        expired.push((p.clone(), b));
                    }
                }
            }
        }
        for (p, b) in expired {
            let error = delivery_timeout_error(b.last_error.clone(), timeout);
            self.fail(&p, b, error);
        }
    }

    /// Completes a batch with an error; a batch that had a sequence leaves a gap, so the
    /// epoch must be bumped before the partition can go on.
    fn fail(&mut self, p: &PartitionQueue, b: QueuedBatch, error: Error) {
        if let Some(txn) = &self.inner.txn {
            // The transaction can no longer commit; a sequence gap needs a new epoch, which
            // the abort gets from the coordinator.
            txn.set_abortable(error.clone(), b.has_sequence());
        } else if b.has_sequence() {
            self.bump_pending = true;
        }
        let persistence = if b.ambiguous { Persistence::PossiblyPersisted } else { Persistence::NotPersisted };
        tracing::debug!(topic = %p.topic, partition = p.partition, %error, ?persistence, records = b.record_count, "batch failed");
        b.shared.complete(Err(DeliveryError {
            topic: p.topic.to_string(),
            partition: p.partition,
            persistence,
            error,
        }));
        self.release(p, b.reserved);
    }

    fn succeed(&mut self, p: &PartitionQueue, b: QueuedBatch, written: Written) {
        b.shared.complete(Ok(written));
        self.release(p, b.reserved);
        // Every other reference (the request, the socket writer's queue) is gone by now.
        if let BatchData::Sealed(bytes) = b.data {
            if let Ok(buf) = bytes.try_into_mut() {
                self.inner.acc.recycle(Vec::from(buf));
            }
        }
    }

    fn release(&self, p: &PartitionQueue, reserved: usize) {
        self.inner.acc.memory.add_permits(reserved);
        p.lock().prune_pending();
    }

    fn fail_everything(&mut self, error: Error) {
        for t in self.inner.acc.topics() {
            for p in t.all() {
                let batches: Vec<QueuedBatch> = {
                    let mut st = p.lock();
                    st.close_open();
                    st.queue.drain(..).collect()
                };
                for b in batches {
                    self.fail(&p, b, error.clone());
                }
            }
        }
    }

    /// `close` ran out of time: fail what is queued (not persisted) and what is in flight
    /// (possibly persisted), and stop.
    fn abort_all(&mut self) {
        tracing::warn!(requests = ?self.in_flight_per_node, tasks = self.requests.len(), bump_pending = self.bump_pending,
            producer_id = self.producer_id, "producer closing before everything was delivered");
        for t in self.inner.acc.topics() {
            for p in t.all() {
                let st = p.lock();
                if st.open.is_some() || !st.queue.is_empty() || st.in_flight > 0 {
                    tracing::warn!(topic = %p.topic, partition = p.partition, open = st.open.is_some(),
                        queued = st.queue.len(), in_flight = st.in_flight, bump_pending = self.bump_pending,
                        requests = ?self.in_flight_per_node, "closing with undelivered batches");
                }
            }
        }
        let error = Error::Closed("producer");
        self.fail_everything(error.clone());
        self.requests.abort_all();
        for t in self.inner.acc.topics() {
            for p in t.all() {
                let pending: Vec<_> = p.lock().pending.drain(..).collect();
                for shared in pending {
                    shared.complete(Err(DeliveryError {
                        topic: p.topic.to_string(),
                        partition: p.partition,
                        persistence: Persistence::PossiblyPersisted,
                        error: error.clone(),
                    }));
                }
            }
        }
    }

    /// Moves ready batches into requests, one per broker, and returns when to look again.
    fn drain(&mut self, now: Instant) -> Instant {
        let inner = self.inner.clone();
        let config = &inner.config;
        let mut next = now + Duration::from_millis(250);
        let metadata = self.inner.client.metadata();
        let hurry = self.inner.acc.flushing.load(Ordering::Acquire) > 0
            || self.inner.acc.memory_waiters.load(Ordering::Acquire) > 0
            || self.inner.closing.load(Ordering::Acquire);
        let can_send = !self.idempotent || self.producer_id >= 0;
        let max_in_flight = config.max_in_flight.max(1);
        let mut per_node: HashMap<i32, (Vec<Drained>, usize)> = HashMap::new();
        let mut want_metadata = false;
        let transactional = self.inner.txn.is_some();
        let mut to_add: Vec<Arc<PartitionQueue>> = Vec::new();
        let mut all = Vec::new();
        for t in self.inner.acc.topics() {
            if let Some(tm) = metadata.topic(&t.name) {
                t.ensure_partitions(tm.partitions.len());
            }
            all.extend(t.all());
        }
        // Start each round at the next partition, as Java's drain index does: when a request
        // fills up, the partitions after it wait for the next round, and a fixed order would
        // make the last partitions wait behind the first ones again and again.
        if !all.is_empty() {
            let start = self.drain_start % all.len();
            all.rotate_left(start);
            self.drain_start = self.drain_start.wrapping_add(1);
        }
        {
            for p in all {
                let leader = metadata.leader(&p.topic, p.partition);
                p.has_leader.store(leader.is_some(), Ordering::Relaxed);
                let mut st = p.lock();
                if let Some(open) = &st.open {
                    let due = open.created + config.linger;
                    if hurry || due <= now {
                        st.close_open();
                    } else {
                        next = next.min(due);
                    }
                }
                if transactional && !st.txn_added && can_send && (st.open.is_some() || !st.queue.is_empty()) {
                    // Added before its first batch is sent (and as soon as it has a record,
                    // so that lingering and adding overlap).
                    to_add.push(p.clone());
                    continue;
                }
                if st.queue.is_empty() || !can_send {
                    continue;
                }
                let Some(node) = leader else {
                    want_metadata = true;
                    continue;
                };
                let Some(head) = st.queue.front() else { continue };
                if let Some(at) = head.retry_at.filter(|at| *at > now) {
                    next = next.min(at);
                    continue;
                }
                // While a bump waits, only partitions with unknown outcomes keep sending (under
                // the old epoch, in order) until those outcomes are known.
                if self.bump_pending && !(head.has_sequence() && st.has_unresolved()) {
                    continue;
                }
                let Some(conn_id) = self.live_connection(node) else { continue };
                if st.in_flight > 0 && (st.in_flight_node != node || st.in_flight_conn != conn_id || st.retrying) {
                    continue;
                }
                if st.in_flight >= max_in_flight {
                    continue;
                }
                if self.blocked_until.get(&node).is_some_and(|at| *at > now) {
                    if let Some(at) = self.blocked_until.get(&node) {
                        next = next.min(*at);
                    }
                    continue;
                }
                let node_in_flight = self.in_flight_per_node.get(&node).copied().unwrap_or(0);
                if node_in_flight >= max_in_flight {
                    continue;
                }
                let size = match &head.data {
                    BatchData::Building(b) => b.size_in_bytes(),
                    BatchData::Sealed(b) => b.len(),
                };
                let entry = per_node.entry(node).or_default();
                if !entry.0.is_empty() && entry.1 + size > config.max_request_size {
                    continue;
                }
                let Some(mut batch) = st.queue.pop_front() else { continue };
                if self.idempotent && !batch.has_sequence() {
                    if st.sequence_epoch != self.epoch {
                        st.sequence_epoch = self.epoch;
                        st.next_sequence = 0;
                        st.acked_sequence_end = 0;
                    }
                    batch.producer = ProducerState {
                        producer_id: self.producer_id,
                        producer_epoch: self.epoch,
                        base_sequence: st.next_sequence,
                    };
                    st.next_sequence = next_sequence(st.next_sequence, batch.record_count);
                }
                st.in_flight += 1;
                st.in_flight_node = node;
                st.in_flight_conn = conn_id;
                entry.0.push((p.clone(), batch));
                entry.1 += size;
            }
        }
        if want_metadata {
            self.inner.client.request_refresh();
        }
        if !to_add.is_empty() && !self.adding {
            // The epoch may have been bumped (an abort) since this round's sync: then the
            // next round syncs first, so that partitions are never added under an old epoch.
            let current = self.inner.txn.as_ref().map(|t| {
                let st = t.read();
                (st.producer_id, st.epoch)
            });
            if current == Some((self.producer_id, self.epoch)) {
                self.start_add_partitions(to_add);
            } else {
                self.inner.wake.notify_one();
            }
        }
        for (node, (batches, _)) in per_node {
            self.send(node, batches);
        }
        next
    }

    /// The id of the open connection to `node`, or `None` (a connection is then being opened
    /// in the background; its completion wakes the sender).
    fn live_connection(&mut self, node: i32) -> Option<u64> {
        match self.conns.get(&node) {
            Some(c) if !c.is_closed() => return Some(c.id()),
            Some(_) => {
                self.conns.remove(&node);
            }
            None => {}
        }
        if self.connecting.insert(node) {
            let client = self.inner.client.clone();
            self.requests.spawn(async move { Done::Connected(node, client.connection(node).await) });
        }
        None
    }

    fn connected(&mut self, node: i32, r: Result<Connection>) {
        self.connecting.remove(&node);
        match r {
            Ok(c) => {
                self.conns.insert(node, c);
            }
            Err(e) => {
                tracing::debug!(node, error = %e, "cannot connect to the leader");
                self.inner.client.request_refresh();
            }
        }
    }

    /// Seals the batches that are new, builds the request and starts it.
    fn send(&mut self, node: i32, batches: Vec<Drained>) {
        let mut ready: Vec<Drained> = Vec::new();
        for (p, mut b) in batches {
            if matches!(b.data, BatchData::Building(_)) {
                let BatchData::Building(builder) = std::mem::replace(&mut b.data, BatchData::Sealed(Bytes::new()))
                else {
                    continue;
                };
                match builder.seal(b.producer) {
                    Ok(bytes) => b.data = BatchData::Sealed(bytes),
                    Err(e) => {
                        p.lock().in_flight -= 1;
                        self.fail(&p, b, Error::InvalidArgument(format!("the batch cannot be sealed: {e}")));
                        continue;
                    }
                }
            }
            ready.push((p, b));
        }
        if ready.is_empty() {
            return;
        }
        let mut topics: Vec<TopicProduceData> = Vec::new();
        for (p, b) in &ready {
            let BatchData::Sealed(bytes) = &b.data else { continue };
            let data = PartitionProduceData { index: p.partition, records: Some(bytes.clone()), ..Default::default() };
            match topics.iter_mut().find(|t| *t.name == *p.topic) {
                Some(t) => t.partition_data.push(data),
                None => topics.push(TopicProduceData {
                    name: p.topic.to_string(),
                    partition_data: vec![data],
                    ..Default::default()
                }),
            }
        }
        let config = &self.inner.config;
        let acks = config.acks;
        let request = ProduceRequest {
            transactional_id: self.inner.txn.as_ref().map(|t| t.id.clone()),
            acks: acks.wire(),
            timeout_ms: i32::try_from(config.client.request_timeout.as_millis()).unwrap_or(i32::MAX),
            topic_data: topics,
            ..Default::default()
        };
        let min_version =
            if config.compression == Compression::Zstd { PRODUCE_ZSTD_MIN_VERSION } else { PRODUCE_MIN_VERSION };
        let timeout = config.client.request_timeout;
        let conn = self.conns.get(&node).cloned();
        if tracing::enabled!(tracing::Level::TRACE) {
            let what: Vec<String> = ready
                .iter()
                .map(|(p, b)| format!("{}[{}]@{}", p.topic, p.partition, b.producer.base_sequence))
                .collect();
            tracing::trace!(node, conn = conn.as_ref().map(|c| c.id()), batches = ?what, "produce request");
        }
        *self.in_flight_per_node.entry(node).or_default() += 1;
        // The request is handed to the connection here, synchronously, so that requests reach
        // the socket in the order the sender drained them; only the wait is a separate task.
        let sent = conn
            .ok_or_else(|| Error::Disconnected { broker: format!("node {node}"), reason: "no connection".to_owned() })
            .and_then(|conn| {
                let version = conn.version(ApiKey::Produce, min_version)?;
                let response = conn.send(&request, version, acks != Acks::None, timeout)?;
                Ok((conn, version, response))
            });
        self.requests.spawn(async move {
            let (result, maybe_sent) = match sent {
                Err(e) => (Err(e), false),
                Ok((conn, version, response)) => {
                    let result = match response.await {
                        Err(e) => Err(e),
                        Ok(_) if acks == Acks::None => Ok(None),
                        Ok(frame) => frame::decode_response::<ProduceResponse>(frame, version)
                            .map(|(_, r)| Some(r))
                            .map_err(|e| conn.protocol_error(e)),
                    };
                    (result, true)
                }
            };
            Done::Produce(RequestDone { node, batches: ready, result, maybe_sent })
        });
    }

    fn handle(&mut self, done: RequestDone) {
        if let Some(n) = self.in_flight_per_node.get_mut(&done.node) {
            *n = n.saturating_sub(1);
        }
        let now = Instant::now();
        let response = match done.result {
            Ok(r) => r,
            Err(error) => {
                tracing::debug!(node = done.node, %error, batches = done.batches.len(), "produce request failed");
                self.inner.client.request_refresh();
                for (p, b) in done.batches {
                    self.retry_or_fail(&p, b, error.clone(), done.maybe_sent, now);
                }
                return;
            }
        };
        let Some(response) = response else {
            // acks=0: written is all we will ever know.
            for (p, b) in done.batches {
                p.lock().in_flight -= 1;
                self.succeed(&p, b, Written { base_offset: -1, log_append_time: -1 });
            }
            return;
        };
        if response.throttle_time_ms > 0 {
            self.blocked_until.insert(done.node, now + Duration::from_millis(response.throttle_time_ms as u64));
        }
        let mut by_partition: HashMap<(&str, i32), &PartitionProduceResponse> = HashMap::new();
        for t in &response.responses {
            for pr in &t.partition_responses {
                by_partition.insert((t.name.as_str(), pr.index), pr);
            }
        }
        let mut refresh = false;
        for (p, b) in done.batches {
            let Some(pr) = by_partition.get(&(&*p.topic, p.partition)) else {
                let e = Error::kafka(
                    ErrorCode::UnknownServerError,
                    Some("the response has no entry for the partition".into()),
                );
                self.retry_or_fail(&p, b, e, true, now);
                continue;
            };
            let code = ErrorCode::from_code(pr.error_code);
            let message = pr
                .error_message
                .clone()
                .filter(|m| !m.is_empty())
                .or_else(|| pr.record_errors.first().and_then(|r| r.batch_index_error_message.clone()));
            match code {
                ErrorCode::None | ErrorCode::DuplicateSequenceNumber => {
                    let written = Written { base_offset: pr.base_offset, log_append_time: pr.log_append_time_ms };
                    let mut st = p.lock();
                    st.in_flight -= 1;
                    if st.in_flight == 0 && st.queue.front().map_or(true, |h| h.attempts == 0) {
                        st.retrying = false;
                    }
                    if b.has_sequence() && b.producer.producer_epoch == st.sequence_epoch {
                        st.acked_sequence_end = next_sequence(b.producer.base_sequence, b.record_count);
                    }
                    drop(st);
                    self.succeed(&p, b, written);
                }
                ErrorCode::OutOfOrderSequenceNumber
                | ErrorCode::UnknownProducerId
                | ErrorCode::InvalidProducerEpoch
                    if self.idempotent =>
                {
                    self.sequence_error(&p, b, code, message, now);
                }
                _ if code.is_retriable() => {
                    refresh |= matches!(
                        code,
                        ErrorCode::NotLeaderOrFollower
                            | ErrorCode::FencedLeaderEpoch
                            | ErrorCode::UnknownTopicOrPartition
                            | ErrorCode::LeaderNotAvailable
                            | ErrorCode::UnknownLeaderEpoch
                    );
                    self.retry_or_fail(&p, b, Error::kafka(code, message), false, now);
                }
                _ if self.inner.txn.is_some() && super::txn::is_fatal(code) => {
                    let e = Error::kafka(code, message);
                    if let Some(txn) = &self.inner.txn {
                        txn.set_fatal(e.clone());
                    }
                    self.inner.set_fatal(e.clone());
                    p.lock().in_flight -= 1;
                    self.fail(&p, b, e);
                }
                _ => {
                    // Not retriable. If an earlier attempt had an unknown outcome, it may still
                    // have been written (some checks, such as timestamps against the broker's
                    // clock, can pass once and fail later), so the batch stays "possibly
                    // persisted".
                    p.lock().in_flight -= 1;
                    self.fail(&p, b, Error::kafka(code, message));
                }
            }
        }
        if refresh {
            self.inner.client.request_refresh();
        }
    }

    fn retry_or_fail(&mut self, p: &PartitionQueue, mut b: QueuedBatch, error: Error, maybe_sent: bool, now: Instant) {
        tracing::trace!(topic = %p.topic, partition = p.partition, sequence = b.producer.base_sequence, %error, maybe_sent, "retriable failure");
        b.ambiguous |= maybe_sent;
        b.attempts = b.attempts.saturating_add(1);
        let mut st = p.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
        let config = &self.inner.config;
        let out_of_time = now >= b.created + config.delivery_timeout;
        if out_of_time || b.attempts > config.retries || !error.is_retriable() {
            drop(st);
            let error = if out_of_time { delivery_timeout_error(Some(error), config.delivery_timeout) } else { error };
            self.fail(p, b, error);
            return;
        }
        b.retry_at =
            Some(now + retry_backoff(config.client.retry_backoff, config.client.retry_backoff_max, b.attempts));
        b.last_error = Some(error);
        st.retrying = true;
        st.requeue(b);
    }

    fn sequence_error(
        &mut self,
        p: &PartitionQueue,
        mut b: QueuedBatch,
        code: ErrorCode,
        message: Option<String>,
        now: Instant,
    ) {
        let error = Error::kafka(code, message);
        let not_next = {
            let st = p.lock();
            b.has_sequence()
                && b.producer.producer_epoch == st.sequence_epoch
                && b.producer.base_sequence != st.acked_sequence_end
        };
        if code == ErrorCode::OutOfOrderSequenceNumber && not_next {
            // Not the batch the broker expects next: an earlier batch of this epoch is not
            // acknowledged yet (typically it failed retriably, e.g. NOT_LEADER_OR_FOLLOWER,
            // and this one was already in flight behind it). Nothing is lost, so, as the Java
            // client does (TransactionManager.canRetry), it is retried after that batch,
            // without an epoch bump and without failing a transaction. Were the earlier batch
            // to fail for good, its failure bumps the epoch (or makes the transaction
            // abortable) and this one is re-stamped.
            tracing::debug!(topic = %p.topic, partition = p.partition, sequence = b.producer.base_sequence,
                "out-of-order sequence behind an unacknowledged batch: retrying in order");
            b.ambiguous = false;
            let mut st = p.lock();
            st.resolve_not_written_after(b.ordinal, b.producer.producer_epoch);
            st.in_flight = st.in_flight.saturating_sub(1);
            b.attempts = b.attempts.saturating_add(1);
            let config = &self.inner.config;
            let out_of_time = now >= b.created + config.delivery_timeout;
            if out_of_time || b.attempts > config.retries {
                drop(st);
                let e = if out_of_time { delivery_timeout_error(Some(error), config.delivery_timeout) } else { error };
                self.fail(p, b, e);
                return;
            }
            b.last_error = Some(error);
            b.retry_at = Some(now);
            st.retrying = true;
            st.requeue(b);
            return;
        }
        if let Some(txn) = &self.inner.txn {
            // Inside a transaction these end it: a fenced epoch ends the producer; a lost
            // sequence makes the transaction abortable, and the abort bumps the epoch.
            p.lock().in_flight -= 1;
            if code == ErrorCode::InvalidProducerEpoch || code == ErrorCode::ProducerFenced {
                txn.set_fatal(error.clone());
                self.inner.set_fatal(error.clone());
            }
            self.fail(p, b, error);
            return;
        }
        self.bump_pending = true;
        tracing::debug!(topic = %p.topic, partition = p.partition, %error, sequence = b.producer.base_sequence,
            epoch = b.producer.producer_epoch, ambiguous = b.ambiguous, attempts = b.attempts, "sequence error");
        if b.ambiguous && code != ErrorCode::OutOfOrderSequenceNumber {
            // An earlier attempt may have been written, and the broker no longer knows this
            // producer: re-sending under a new epoch could duplicate it. Report it as
            // possibly persisted instead.
            p.lock().in_flight -= 1;
            self.fail(p, b, error);
            return;
        }
        // OUT_OF_ORDER_SEQUENCE_NUMBER means the broker does not have this batch (it would
        // have answered a duplicate): it is definitely not in the log, and neither is any
        // later batch of the same epoch.
        b.ambiguous = false;
        p.lock().resolve_not_written_after(b.ordinal, b.producer.producer_epoch);
        b.attempts = b.attempts.saturating_add(1);
        b.last_error = Some(error);
        b.retry_at = Some(now);
        let mut st = p.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
        st.retrying = true;
        st.requeue(b);
    }
}

/// The error of a batch that ran out of `delivery.timeout.ms`, naming the last failure (if
/// any) that kept it from being delivered.
fn delivery_timeout_error(last: Option<Error>, timeout: Duration) -> Error {
    let timeout_ms = timeout.as_millis() as u64;
    match last {
        None => Error::Timeout {
            what: "before the batch could be sent".to_owned(),
            setting: "delivery.timeout.ms",
            timeout_ms,
        },
        Some(e @ Error::Timeout { .. }) => e,
        Some(e) => {
            Error::Timeout { what: format!("retrying; last error: {e}"), setting: "delivery.timeout.ms", timeout_ms }
        }
    }
}

/// The sequence after a batch of `count` records starting at `seq` (wrapping at i32::MAX to 0,
/// as Kafka does).
fn next_sequence(seq: i32, count: i32) -> i32 {
    let next = i64::from(seq) + i64::from(count);
    (next % (i64::from(i32::MAX) + 1)) as i32
}

fn retry_backoff(base: Duration, max: Duration, attempts: u32) -> Duration {
    let exp = base.as_secs_f64() * 2f64.powi(attempts.saturating_sub(1).min(30) as i32);
    let capped = exp.min(max.as_secs_f64().max(base.as_secs_f64()));
    let jitter = rand::Rng::gen_range(&mut rand::thread_rng(), 0.8..1.2);
    Duration::from_secs_f64(capped * jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_wrap_like_kafka() {
        assert_eq!(next_sequence(0, 10), 10);
        assert_eq!(next_sequence(i32::MAX - 4, 5), 0);
        assert_eq!(next_sequence(i32::MAX - 4, 10), 5);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let b = |n| retry_backoff(Duration::from_millis(100), Duration::from_millis(1000), n).as_millis();
        assert!((80..=120).contains(&b(1)));
        assert!((160..=240).contains(&b(2)));
        assert!((800..=1200).contains(&b(10)));
    }
}
