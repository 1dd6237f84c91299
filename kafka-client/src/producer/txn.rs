//! Transactions: the producer's transaction state machine and its requests to the
//! transaction coordinator (InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn) and
//! to consumer groups' coordinators (TxnOffsetCommit).
//!
//! # States
//! ```text
//! Uninitialized --init_transactions--> Initializing --> Ready --begin_transaction--> InTransaction
//! InTransaction --commit_transaction--> Committing --> Ready
//! InTransaction --abort_transaction---> Aborting   --> Ready
//! any --fatal error--> Fatal (every later call fails with that error)
//! ```
//! An *abortable* error (a record failed, a TxnOffsetCommit failed) is kept next to
//! `InTransaction`: sends and commit fail with it, abort clears it.
//!
//! # Who does what
//! - The API calls (init, begin, send_offsets, commit, abort) run in the caller's task,
//!   one at a time (an async mutex), and talk to the coordinators directly.
//! - The sender task adds partitions to the transaction before their first batch is sent
//!   (one AddPartitionsToTxn at a time, batching every partition waiting), and reads the
//!   producer id and epoch from here, re-stamping sequences when they change.
//! - `send` checks the state under the state's read lock and appends under it, so that
//!   commit and abort (which take the write lock to change the state) know that no record
//!   can slip into a transaction after its flush.
//!
//! # An EndTxn with an unknown outcome
//! Commit and abort retry EndTxn until its outcome is known. When they give up
//! (`max.block.ms`), the state stays `Committing`/`Aborting` and the next call may only repeat
//! the same commit or abort (or the application re-creates the producer, whose
//! InitProducerId bumps the epoch and so fences the old EndTxn): a late EndTxn can never land
//! on a later transaction, since no later transaction starts before the outcome is known.
//!
//! Versions: EndTxn is capped at v4 and AddPartitionsToTxn at v3 (v5 and v4 belong to
//! KIP-890's transaction version 2, whose per-transaction epoch bumps this client does not
//! implement; the broker keeps version 1 semantics for clients that use the older versions).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, EndTxnRequest, InitProducerIdRequest, TxnOffsetCommitRequest,
};
use kafka_protocol::{ApiKey, ErrorCode};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::accumulator::PartitionQueue;
use super::{Inner, Producer};
use crate::client::Client;
use crate::conn::Connection;
use crate::consumer::{ConsumerGroupMetadata, OffsetAndMetadata, TopicPartition};
use crate::error::{Error, Result};

/// The highest AddPartitionsToTxn version a client uses (v4+ is for brokers).
const ADD_PARTITIONS_MAX_VERSION: i16 = 3;
/// The highest EndTxn version used (v5 is transaction version 2).
const END_TXN_MAX_VERSION: i16 = 4;
/// Backoff after CONCURRENT_TRANSACTIONS: the previous transaction's markers are usually
/// written within milliseconds (Java retries as quickly).
const CONCURRENT_BACKOFF: Duration = Duration::from_millis(20);

/// Where the transaction state machine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Uninitialized,
    Initializing,
    Ready,
    InTransaction,
    Committing,
    Aborting,
    Fatal,
}

/// The transaction state, behind [`Txn::state`].
#[derive(Debug)]
pub(crate) struct TxnState {
    pub phase: Phase,
    pub producer_id: i64,
    pub epoch: i16,
    /// Why the current transaction can only abort.
    pub abortable: Option<Error>,
    /// Why the producer is unusable.
    pub fatal: Option<Error>,
    /// A sequenced batch failed (a gap in some partition's sequence), or the broker lost the
    /// producer's state: after the abort, the epoch must be bumped.
    pub bump_required: bool,
    /// The coordinator knows of this transaction (a partition or offsets were added): ending
    /// it takes an EndTxn.
    pub started: bool,
    /// AddPartitionsToTxn requests in flight (the sender's).
    pub adding: usize,
    /// Aborts asked of the sender (it fails the queued batches of the aborted transaction),
    /// and the last one it carried out.
    pub abort_requested: u64,
    pub abort_drained: u64,
}

/// A coordinator found by key, with the connection kept until it moves.
struct CoordinatorSlot {
    key: String,
    key_type: i8,
    conn: tokio::sync::Mutex<Option<Connection>>,
}

impl CoordinatorSlot {
    fn new(key: String, key_type: i8) -> Self {
        CoordinatorSlot { key, key_type, conn: tokio::sync::Mutex::new(None) }
    }

    async fn get(&self, client: &Client) -> Result<Connection> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let c = client.coordinator_connection(&self.key, self.key_type).await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    async fn forget(&self) {
        if let Some(c) = self.conn.lock().await.take() {
            c.close();
        }
    }
}

/// A transactional producer's transaction state and coordinators.
pub(crate) struct Txn {
    pub id: String,
    timeout_ms: i32,
    state: RwLock<TxnState>,
    coordinator: CoordinatorSlot,
    groups: tokio::sync::Mutex<HashMap<String, Arc<CoordinatorSlot>>>,
    /// One API call at a time.
    ops: tokio::sync::Mutex<()>,
    /// An AddPartitionsToTxn finished, or the sender carried out an abort.
    pub changed: Notify,
}

/// Errors after which the producer cannot go on (Java's fatal transaction errors).
pub(crate) fn is_fatal(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::ProducerFenced
            | ErrorCode::InvalidProducerEpoch
            | ErrorCode::TransactionalIdAuthorizationFailed
            | ErrorCode::ClusterAuthorizationFailed
            | ErrorCode::InvalidTxnState
            | ErrorCode::UnsupportedVersion
            | ErrorCode::UnsupportedForMessageFormat
            | ErrorCode::InvalidTransactionTimeout
            | ErrorCode::TransactionalIdNotFound
    )
}

fn is_coordinator_error(e: &Error) -> bool {
    match e.code() {
        Some(code) => matches!(code, ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable),
        // Transport failures: the connection is gone or cannot be trusted.
        None => e.is_retriable(),
    }
}

fn code_result(code: i16, message: Option<String>) -> Result<()> {
    match ErrorCode::from_code(code).err() {
        None => Ok(()),
        Some(code) => Err(Error::kafka(code, message.filter(|m| !m.is_empty()))),
    }
}

impl Txn {
    pub fn new(id: String, timeout: Duration) -> Txn {
        Txn {
            coordinator: CoordinatorSlot::new(id.clone(), 1),
            id,
            timeout_ms: i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX),
            state: RwLock::new(TxnState {
                phase: Phase::Uninitialized,
                producer_id: -1,
                epoch: -1,
                abortable: None,
                fatal: None,
                bump_required: false,
                started: false,
                adding: 0,
                abort_requested: 0,
                abort_drained: 0,
            }),
            groups: tokio::sync::Mutex::new(HashMap::new()),
            ops: tokio::sync::Mutex::new(()),
            changed: Notify::new(),
        }
    }

    pub fn read(&self) -> RwLockReadGuard<'_, TxnState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, TxnState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `send` may append now (called under the read lock).
    pub fn check_send(st: &TxnState) -> Result<()> {
        if let Some(e) = &st.fatal {
            return Err(e.clone());
        }
        match st.phase {
            Phase::InTransaction => match &st.abortable {
                Some(cause) => Err(Error::TransactionAbortable(Box::new(cause.clone()))),
                None => Ok(()),
            },
            Phase::Uninitialized | Phase::Initializing => {
                Err(Error::TransactionState("send before init_transactions completed".to_owned()))
            }
            Phase::Ready => {
                Err(Error::TransactionState("send outside a transaction: call begin_transaction first".to_owned()))
            }
            Phase::Committing => Err(Error::TransactionState("send while the transaction is committing".to_owned())),
            Phase::Aborting => Err(Error::TransactionState("send while the transaction is aborting".to_owned())),
            Phase::Fatal => Err(Error::TransactionState("the producer failed fatally".to_owned())),
        }
    }

    /// The current transaction can only abort now (the first cause is kept).
    pub fn set_abortable(&self, cause: Error, gap: bool) {
        let mut st = self.write();
        st.bump_required |= gap;
        if st.abortable.is_none() && matches!(st.phase, Phase::InTransaction | Phase::Committing) {
            tracing::debug!(transactional_id = %self.id, %cause, "transaction can only abort now");
            st.abortable = Some(cause);
        }
    }

    /// The producer cannot go on.
    pub fn set_fatal(&self, error: Error) {
        let mut st = self.write();
        if st.fatal.is_none() {
            tracing::error!(transactional_id = %self.id, %error, "transactional producer failed fatally");
            st.fatal = Some(error);
            st.phase = Phase::Fatal;
        }
    }

    /// Runs `op` against the transaction coordinator until it succeeds, fails for good, or
    /// `deadline` passes, finding the coordinator again after it moved.
    async fn with_coordinator<T, F, Fut>(
        &self,
        slot: &CoordinatorSlot,
        client: &Client,
        deadline: Instant,
        backoff: (Duration, Duration),
        mut op: F,
    ) -> Result<T>
    where
        F: FnMut(Connection) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempt = 0u32;
        loop {
            let r = match slot.get(client).await {
                Ok(conn) => op(conn).await,
                Err(e) => Err(e),
            };
            let e = match r {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let retriable = e.is_retriable() || e.code() == Some(ErrorCode::ConcurrentTransactions);
            if !retriable || Instant::now() >= deadline {
                return Err(e);
            }
            if is_coordinator_error(&e) {
                slot.forget().await;
            }
            attempt = attempt.saturating_add(1);
            let pause = if e.code() == Some(ErrorCode::ConcurrentTransactions) {
                CONCURRENT_BACKOFF
            } else {
                backoff.0.saturating_mul(1u32 << attempt.min(10)).min(backoff.1.max(backoff.0))
            };
            tracing::debug!(key = %slot.key, error = %e, attempt, "coordinator request failed, retrying");
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }

    /// InitProducerId for this transactional id: a new producer id or epoch (`current` set:
    /// bump the epoch of that id, KIP-360).
    async fn init_producer_id(
        &self,
        inner: &Inner,
        deadline: Instant,
        current: Option<(i64, i16)>,
    ) -> Result<(i64, i16)> {
        let backoff = backoff_of(inner);
        self.with_coordinator(&self.coordinator, &inner.client, deadline, backoff, |conn| async move {
            let version = conn.version(ApiKey::InitProducerId, 0)?;
            let (producer_id, producer_epoch) = match current {
                Some(c) if version >= 3 => c,
                Some(_) => {
                    return Err(Error::UnsupportedVersion {
                        api: ApiKey::InitProducerId,
                        broker: conn.address().to_string(),
                        detail: "bumping a transactional producer's epoch needs v3 (Kafka 2.5)".to_owned(),
                    })
                }
                None => (-1, -1),
            };
            let request = InitProducerIdRequest {
                transactional_id: Some(self.id.clone()),
                transaction_timeout_ms: self.timeout_ms,
                producer_id,
                producer_epoch,
                ..Default::default()
            };
            let resp = conn.request_at(&request, version).await?;
            code_result(resp.error_code, None)?;
            Ok((resp.producer_id, resp.producer_epoch))
        })
        .await
    }

    /// AddPartitionsToTxn for `parts` (the sender's call): each partition's outcome, or the
    /// error of the whole request.
    pub async fn add_partitions(
        &self,
        inner: &Inner,
        producer: (i64, i16),
        parts: &[Arc<PartitionQueue>],
    ) -> Result<Vec<(Arc<PartitionQueue>, ErrorCode)>> {
        let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
        for p in parts {
            match topics.iter_mut().find(|t| *t.name == *p.topic) {
                Some(t) => t.partitions.push(p.partition),
                None => topics.push(AddPartitionsToTxnTopic {
                    name: p.topic.to_string(),
                    partitions: vec![p.partition],
                    ..Default::default()
                }),
            }
        }
        let deadline = Instant::now() + inner.config.delivery_timeout;
        let backoff = backoff_of(inner);
        let topics = &topics;
        let results = self
            .with_coordinator(&self.coordinator, &inner.client, deadline, backoff, |conn| async move {
                let version = conn.version(ApiKey::AddPartitionsToTxn, 0)?.min(ADD_PARTITIONS_MAX_VERSION);
                let request = AddPartitionsToTxnRequest {
                    v3_and_below_transactional_id: self.id.clone(),
                    v3_and_below_producer_id: producer.0,
                    v3_and_below_producer_epoch: producer.1,
                    v3_and_below_topics: topics.clone(),
                    ..Default::default()
                };
                let resp = conn.request_at(&request, version).await?;
                let mut results: HashMap<(String, i32), ErrorCode> = HashMap::new();
                let mut retry: Option<ErrorCode> = None;
                for t in resp.results_by_topic_v3_and_below {
                    for r in t.results_by_partition {
                        let code = ErrorCode::from_code(r.partition_error_code);
                        // The whole request is retried when any partition says so;
                        // OPERATION_NOT_ATTEMPTED only means another partition failed.
                        if code != ErrorCode::None
                            && code != ErrorCode::OperationNotAttempted
                            && (code.is_retriable() || code == ErrorCode::ConcurrentTransactions)
                        {
                            retry = Some(code);
                        }
                        results.insert((t.name.clone(), r.partition_index), code);
                    }
                }
                if let Some(code) = retry {
                    return Err(Error::kafka(code, Some("adding partitions to the transaction".to_owned())));
                }
                Ok(results)
            })
            .await?;
        Ok(parts
            .iter()
            .map(|p| {
                let code =
                    results.get(&(p.topic.to_string(), p.partition)).copied().unwrap_or(ErrorCode::UnknownServerError);
                (p.clone(), code)
            })
            .collect())
    }

    /// EndTxn, retried until its outcome is known or `deadline` passes.
    async fn end_txn(&self, inner: &Inner, deadline: Instant, producer: (i64, i16), commit: bool) -> Result<()> {
        let backoff = backoff_of(inner);
        self.with_coordinator(&self.coordinator, &inner.client, deadline, backoff, |conn| async move {
            let version = conn.version(ApiKey::EndTxn, 0)?.min(END_TXN_MAX_VERSION);
            let request = EndTxnRequest {
                transactional_id: self.id.clone(),
                producer_id: producer.0,
                producer_epoch: producer.1,
                committed: commit,
                ..Default::default()
            };
            let resp = conn.request_at(&request, version).await?;
            code_result(resp.error_code, None)
        })
        .await
    }

    /// Waits until `done` holds (rechecked whenever the sender reports progress).
    async fn wait_for(&self, done: impl Fn(&TxnState) -> bool) {
        loop {
            let wait = self.changed.notified();
            tokio::pin!(wait);
            wait.as_mut().enable();
            if done(&self.read()) {
                return;
            }
            wait.await;
        }
    }

    async fn group_slot(&self, group_id: &str) -> Arc<CoordinatorSlot> {
        self.groups
            .lock()
            .await
            .entry(group_id.to_owned())
            .or_insert_with(|| Arc::new(CoordinatorSlot::new(group_id.to_owned(), 0)))
            .clone()
    }
}

fn backoff_of(inner: &Inner) -> (Duration, Duration) {
    (inner.config.client.retry_backoff, inner.config.client.retry_backoff_max)
}

impl Producer {
    fn txn(&self) -> Result<&Txn> {
        self.inner
            .txn
            .as_ref()
            .ok_or_else(|| Error::TransactionState("the producer has no transactional.id".to_owned()))
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.inner.config.max_block
    }

    /// Registers the producer's `transactional.id` with its transaction coordinator: gets
    /// the producer id and epoch, fences any earlier producer with the same id (its open
    /// transaction is aborted), and makes the producer ready for [`begin_transaction`].
    /// Call once, before anything else; bounded by `max.block.ms` (after a timeout, calling
    /// it again resumes).
    ///
    /// [`begin_transaction`]: Producer::begin_transaction
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use kafka_client::{Producer, ProducerConfig, ProducerRecord};
    ///
    /// let cluster = kafka_broker::Cluster::builder().brokers(1).start().await?;
    /// cluster.create_topic("payments", 2, 1).await?;
    /// let config = ProducerConfig::new(&cluster.bootstrap_servers()).transactional_id("payments-writer-1");
    /// let producer = Producer::new(config)?;
    /// producer.init_transactions().await?;
    ///
    /// producer.begin_transaction()?;
    /// producer.send(ProducerRecord::new("payments").key("alice").value("debit 10")).await?;
    /// producer.send(ProducerRecord::new("payments").key("bob").value("credit 10")).await?;
    /// producer.commit_transaction().await?; // both records, or (after an abort) neither
    ///
    /// producer.begin_transaction()?;
    /// producer.send(ProducerRecord::new("payments").key("carol").value("debit 99")).await?;
    /// producer.abort_transaction().await?; // read_committed consumers never see it
    /// producer.close(std::time::Duration::from_secs(5)).await?;
    /// cluster.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn init_transactions(&self) -> Result<()> {
        let txn = self.txn()?;
        let _op = txn.ops.lock().await;
        {
            let mut st = txn.write();
            if let Some(e) = &st.fatal {
                return Err(e.clone());
            }
            match st.phase {
                Phase::Uninitialized | Phase::Initializing => st.phase = Phase::Initializing,
                other => {
                    return Err(Error::TransactionState(format!(
                        "init_transactions was already called (state {other:?})"
                    )))
                }
            }
        }
        match txn.init_producer_id(&self.inner, self.deadline(), None).await {
            Ok((id, epoch)) => {
                let mut st = txn.write();
                st.producer_id = id;
                st.epoch = epoch;
                st.phase = Phase::Ready;
                drop(st);
                tracing::debug!(transactional_id = %txn.id, producer_id = id, epoch, "transactions initialised");
                self.inner.wake.notify_one();
                Ok(())
            }
            Err(e) => Err(self.fail_call(txn, e)),
        }
    }

    /// Starts a transaction: records sent from now until [`commit_transaction`] become
    /// visible to `read_committed` consumers together, or not at all. Local: nothing is
    /// sent to the coordinator until the first record or offsets.
    ///
    /// [`commit_transaction`]: Producer::commit_transaction
    pub fn begin_transaction(&self) -> Result<()> {
        let txn = self.txn()?;
        let mut st = txn.write();
        if let Some(e) = &st.fatal {
            return Err(e.clone());
        }
        match st.phase {
            Phase::Ready => {
                st.phase = Phase::InTransaction;
                st.started = false;
                st.abortable = None;
                Ok(())
            }
            Phase::InTransaction => Err(Error::TransactionState("a transaction is already open".to_owned())),
            Phase::Uninitialized | Phase::Initializing => {
                Err(Error::TransactionState("begin_transaction before init_transactions completed".to_owned()))
            }
            Phase::Committing | Phase::Aborting => Err(Error::TransactionState(format!(
                "the previous transaction is still {} (its outcome is not known yet): call {} again",
                if st.phase == Phase::Committing { "committing" } else { "aborting" },
                if st.phase == Phase::Committing { "commit_transaction" } else { "abort_transaction" },
            ))),
            Phase::Fatal => Err(Error::TransactionState("the producer failed fatally".to_owned())),
        }
    }

    /// Adds a consumer group's offsets to the transaction (KIP-447): they are committed if
    /// and only if the transaction commits. `offsets` are the next offsets to consume (one
    /// past the last processed record); `group` is [`Consumer::group_metadata`], so that a
    /// consumer fenced by a rebalance cannot commit (the group coordinator checks the
    /// generation and member id).
    ///
    /// [`Consumer::group_metadata`]: crate::Consumer::group_metadata
    pub async fn send_offsets_to_transaction(
        &self,
        offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>,
        group: &ConsumerGroupMetadata,
    ) -> Result<()> {
        let txn = self.txn()?;
        let _op = txn.ops.lock().await;
        let producer = {
            let st = txn.read();
            Txn::check_send(&st).map_err(|e| match e {
                Error::TransactionState(m) => Error::TransactionState(m.replace("send", "send_offsets_to_transaction")),
                other => other,
            })?;
            (st.producer_id, st.epoch)
        };
        if group.group_id.is_empty() {
            return Err(Error::InvalidArgument("the group id is empty".to_owned()));
        }
        let deadline = self.deadline();
        let backoff = backoff_of(&self.inner);
        let client = &self.inner.client;
        // The coordinator first learns that the group's offsets belong to the transaction.
        let added = txn
            .with_coordinator(&txn.coordinator, client, deadline, backoff, |conn| async move {
                let request = AddOffsetsToTxnRequest {
                    transactional_id: txn.id.clone(),
                    producer_id: producer.0,
                    producer_epoch: producer.1,
                    group_id: group.group_id.clone(),
                    ..Default::default()
                };
                let resp = conn.request(&request).await?;
                code_result(resp.error_code, None)
            })
            .await;
        if let Err(e) = added {
            return Err(self.fail_in_transaction(txn, e));
        }
        txn.write().started = true;
        let slot = txn.group_slot(&group.group_id).await;
        let mut topics: Vec<TxnOffsetCommitRequestTopic> = Vec::new();
        for (tp, om) in offsets {
            let partition = TxnOffsetCommitRequestPartition {
                partition_index: tp.partition,
                committed_offset: om.offset,
                committed_leader_epoch: om.leader_epoch.unwrap_or(-1),
                committed_metadata: Some(om.metadata.clone().unwrap_or_default()),
                ..Default::default()
            };
            match topics.iter_mut().find(|t| t.name == tp.topic) {
                Some(t) => t.partitions.push(partition),
                None => topics.push(TxnOffsetCommitRequestTopic {
                    name: tp.topic.clone(),
                    partitions: vec![partition],
                    ..Default::default()
                }),
            }
        }
        let topics = &topics;
        let committed = txn
            .with_coordinator(&slot, client, deadline, backoff, |conn| async move {
                let version = conn.version(ApiKey::TxnOffsetCommit, 0)?;
                let mut request = TxnOffsetCommitRequest {
                    transactional_id: txn.id.clone(),
                    group_id: group.group_id.clone(),
                    producer_id: producer.0,
                    producer_epoch: producer.1,
                    topics: topics.clone(),
                    ..Default::default()
                };
                if version >= 3 {
                    request.generation_id = group.generation_id;
                    request.member_id = group.member_id.clone();
                    request.group_instance_id = group.group_instance_id.clone();
                } else {
                    request.generation_id = -1;
                    request.member_id = String::new();
                    request.group_instance_id = None;
                }
                let resp = conn.request_at(&request, version).await?;
                let mut first: Option<(Error, bool)> = None;
                for t in resp.topics {
                    for p in t.partitions {
                        let Some(code) = ErrorCode::from_code(p.error_code).err() else { continue };
                        let retriable = code.is_retriable() || code == ErrorCode::ConcurrentTransactions;
                        let e =
                            Error::kafka(code, Some(format!("committing offsets of {}-{}", t.name, p.partition_index)));
                        // A retriable error wins: the whole request is sent again.
                        if first.as_ref().map_or(true, |(_, r)| retriable && !*r) {
                            first = Some((e, retriable));
                        }
                    }
                }
                match first {
                    None => Ok(()),
                    Some((e, _)) => Err(e),
                }
            })
            .await;
        match committed {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = match e.code() {
                    Some(ErrorCode::UnknownMemberId | ErrorCode::IllegalGeneration | ErrorCode::FencedInstanceId) => {
                        Error::CommitFailed(format!(
                            "the consumer's group generation is no longer current ({e}); its partitions may belong to another member now"
                        ))
                    }
                    _ => e,
                };
                Err(self.fail_in_transaction(txn, e))
            }
        }
    }

    /// Commits the transaction: sends every record still waiting (a flush), then asks the
    /// coordinator to commit. Fails with [`Error::TransactionAbortable`] (naming the cause)
    /// when a record or an offset commit of the transaction failed: abort then. Bounded by
    /// `max.block.ms`; after a timeout the outcome is unknown and only calling it again (or
    /// dropping the producer) is allowed.
    pub async fn commit_transaction(&self) -> Result<()> {
        self.end_transaction(true).await
    }

    /// Aborts the transaction: records not sent yet fail with [`Error::TransactionAborted`],
    /// records in flight are waited for, and the coordinator writes abort markers, so that
    /// `read_committed` consumers skip everything the transaction wrote. The next transaction
    /// can then begin. Bounded by `max.block.ms`; calling it again after a timeout resumes.
    pub async fn abort_transaction(&self) -> Result<()> {
        self.end_transaction(false).await
    }

    async fn end_transaction(&self, commit: bool) -> Result<()> {
        let txn = self.txn()?;
        let _op = txn.ops.lock().await;
        let what = if commit { "commit_transaction" } else { "abort_transaction" };
        {
            let mut st = txn.write();
            if let Some(e) = &st.fatal {
                return Err(e.clone());
            }
            match (st.phase, commit) {
                (Phase::InTransaction, true) => {
                    if let Some(cause) = &st.abortable {
                        return Err(Error::TransactionAbortable(Box::new(cause.clone())));
                    }
                    st.phase = Phase::Committing;
                }
                (Phase::Committing, true) => {}
                (Phase::InTransaction, false) | (Phase::Aborting, false) => {
                    st.phase = Phase::Aborting;
                    st.abort_requested += 1;
                }
                (Phase::Committing, false) => {
                    return Err(Error::TransactionState(
                        "abort_transaction while a commit's outcome is unknown: call commit_transaction again"
                            .to_owned(),
                    ))
                }
                (Phase::Aborting, true) => {
                    return Err(Error::TransactionState(
                        "commit_transaction while an abort is under way: call abort_transaction again".to_owned(),
                    ))
                }
                (Phase::Ready, _) => {
                    return Err(Error::TransactionState(format!("{what} without an open transaction")))
                }
                (Phase::Uninitialized | Phase::Initializing, _) => {
                    return Err(Error::TransactionState(format!("{what} before init_transactions completed")))
                }
                (Phase::Fatal, _) => return Err(Error::TransactionState("the producer failed fatally".to_owned())),
            }
        }
        let deadline = self.deadline();
        let outcome = tokio::time::timeout_at(deadline, self.finish_transaction(txn, commit, deadline)).await;
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Timeout {
                what: format!("in {what}: its outcome is not known yet; call {what} again"),
                setting: "max.block.ms",
                timeout_ms: self.inner.config.max_block.as_millis() as u64,
            }),
        }
    }

    async fn finish_transaction(&self, txn: &Txn, commit: bool, deadline: Instant) -> Result<()> {
        // Every record of the transaction gets its outcome: an abort first has the sender fail
        // the queued ones (so that no record of the aborted transaction is sent later).
        self.inner.wake.notify_one();
        if !commit {
            txn.wait_for(|st| st.abort_drained >= st.abort_requested).await;
        }
        self.flush().await?;
        // No AddPartitionsToTxn may be left in flight to race with EndTxn.
        txn.wait_for(|st| st.adding == 0).await;
        let (producer, started) = {
            let mut st = txn.write();
            if let Some(e) = &st.fatal {
                return Err(e.clone());
            }
            if commit {
                if let Some(cause) = &st.abortable {
                    let cause = cause.clone();
                    st.phase = Phase::InTransaction;
                    return Err(Error::TransactionAbortable(Box::new(cause)));
                }
            }
            ((st.producer_id, st.epoch), st.started)
        };
        if started {
            if let Err(e) = txn.end_txn(&self.inner, deadline, producer, commit).await {
                return Err(self.fail_call(txn, e));
            }
        }
        let bump = !commit && txn.read().bump_required;
        if bump {
            // A sequence gap (a failed batch) or a broker that lost our state: a new epoch
            // restarts every sequence (KIP-360).
            match txn.init_producer_id(&self.inner, deadline, Some(producer)).await {
                Ok((id, epoch)) => {
                    tracing::info!(transactional_id = %txn.id, producer_id = id, epoch, "epoch bumped after the abort");
                    let mut st = txn.write();
                    st.producer_id = id;
                    st.epoch = epoch;
                    st.bump_required = false;
                }
                Err(e) => return Err(self.fail_call(txn, e)),
            }
        }
        for t in self.inner.acc.topics() {
            for p in t.all() {
                p.lock().txn_added = false;
            }
        }
        {
            let mut st = txn.write();
            st.phase = Phase::Ready;
            st.started = false;
            st.abortable = None;
        }
        self.inner.wake.notify_one();
        Ok(())
    }

    /// A coordinator call failed: fatal errors end the producer; others are returned (the
    /// state stays where it is, so the call can be repeated).
    fn fail_call(&self, txn: &Txn, e: Error) -> Error {
        if e.code().is_some_and(is_fatal) || matches!(e, Error::UnsupportedVersion { .. }) {
            txn.set_fatal(e.clone());
            self.inner.set_fatal(e.clone());
        }
        e
    }

    /// A call inside the transaction failed: fatal errors end the producer, others make the
    /// transaction abortable.
    fn fail_in_transaction(&self, txn: &Txn, e: Error) -> Error {
        let e = self.fail_call(txn, e);
        if txn.read().fatal.is_none() {
            txn.set_abortable(e.clone(), false);
        }
        e
    }
}
