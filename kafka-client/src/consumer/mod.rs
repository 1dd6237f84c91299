//! The consumer: group membership, fetching, positions and commits.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use kafka_client::{Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord};
//!
//! let cluster = kafka_broker::Cluster::builder().brokers(1).start().await?;
//! cluster.create_topic("orders", 3, 1).await?;
//! let producer = Producer::new(ProducerConfig::new(&cluster.bootstrap_servers()))?;
//! for i in 0..10 {
//!     producer.send(ProducerRecord::new("orders").key(&format!("k{i}")).value("v")).await?;
//! }
//! producer.flush().await?;
//!
//! let consumer = Consumer::new(
//!     ConsumerConfig::new(&cluster.bootstrap_servers())
//!         .set("group.id", "billing")?
//!         .set("auto.offset.reset", "earliest")?,
//! )?;
//! consumer.subscribe(["orders"])?;
//! let mut seen = 0;
//! while seen < 10 {
//!     let record = consumer.recv().await?;
//!     assert_eq!(record.value(), Some(&b"v"[..]));
//!     seen += 1;
//! }
//! consumer.commit().await?; // everything handed out so far
//! consumer.close().await?;
//! # producer.close(std::time::Duration::from_secs(5)).await?;
//! # cluster.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod assignor;
pub mod config;
mod coordinator;
mod fetcher;
mod membership;
mod offsets;
mod record;
mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

pub use self::config::{ConsumerConfig, GroupProtocol, IsolationLevel, OffsetReset};
use self::coordinator::Group;
pub use self::coordinator::OffsetAndMetadata;
pub use self::offsets::OffsetAndTimestamp;
use self::offsets::{list_offsets, EARLIEST, LATEST};
use self::record::CompletedFetch;
pub use self::record::ConsumerRecord;
pub use self::state::Position;
use self::state::{AppTask, Need, State, Subscription};
use crate::client::Client;
use crate::error::{Error, Result};

/// A topic and one of its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic's name.
    pub topic: String,
    /// The partition's index.
    pub partition: i32,
}

impl TopicPartition {
    /// `topic`'s partition `partition`.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition { topic: topic.into(), partition }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A boxed future, as the rebalance listener's methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Hears of partitions being assigned and taken away. Its methods run on the application's
/// task, inside `poll`/`recv`, so no record is in the application's hands that it has not
/// finished with (by calling `poll`/`recv` again), and no record of a revoked partition is
/// handed out after `on_partitions_revoked` ran. Committing inside `on_partitions_revoked`
/// works: the member is still in its generation. If the application drops a `poll` while a
/// callback runs, the next `poll` runs that callback again from the start, so callbacks
/// should be safe to repeat (a commit is).
///
/// ```
/// use kafka_client::consumer::{BoxFuture, RebalanceListener, TopicPartition};
/// use kafka_client::Consumer;
///
/// struct CommitOnRevoke;
/// impl RebalanceListener for CommitOnRevoke {
///     fn on_partitions_revoked<'a>(&'a self, consumer: &'a Consumer, partitions: &'a [TopicPartition]) -> BoxFuture<'a, ()> {
///         Box::pin(async move {
///             if let Err(e) = consumer.commit().await {
///                 eprintln!("commit before losing {partitions:?} failed: {e}");
///             }
///         })
///     }
/// }
/// ```
pub trait RebalanceListener: Send + Sync + 'static {
    /// Partitions are about to be taken away (eager: all, before rejoining; cooperative:
    /// only those moving to another member).
    fn on_partitions_revoked<'a>(
        &'a self,
        consumer: &'a Consumer,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, ()> {
        let _ = (consumer, partitions);
        Box::pin(async {})
    }

    /// Partitions were added to the assignment (cooperative: only the new ones).
    fn on_partitions_assigned<'a>(
        &'a self,
        consumer: &'a Consumer,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, ()> {
        let _ = (consumer, partitions);
        Box::pin(async {})
    }

    /// Partitions were lost: the member was fenced or its session expired, so another member
    /// may already own them; committing is pointless. Calls `on_partitions_revoked` unless
    /// overridden, as in Java.
    fn on_partitions_lost<'a>(&'a self, consumer: &'a Consumer, partitions: &'a [TopicPartition]) -> BoxFuture<'a, ()> {
        self.on_partitions_revoked(consumer, partitions)
    }
}

/// Holds a listener task while it runs; puts it back if the poll running it is dropped.
struct Requeue<'a> {
    shared: &'a Shared,
    task: Option<AppTask>,
}

impl Drop for Requeue<'_> {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            self.shared.lock().app_tasks.push_front(task);
        }
    }
}

/// The group identity a transactional producer needs for `send_offsets_to_transaction`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupMetadata {
    /// The group id.
    pub group_id: String,
    /// The generation, -1 outside a generation (with `group.protocol=consumer`: the member
    /// epoch, which Kafka checks in its place).
    pub generation_id: i32,
    /// The member id, empty outside the group.
    pub member_id: String,
    /// The static instance id.
    pub group_instance_id: Option<String>,
}

impl ConsumerGroupMetadata {
    /// Only a group id (no generation or member): the coordinator then cannot fence a
    /// zombie member (KIP-447's check is skipped); prefer [`Consumer::group_metadata`].
    pub fn new(group_id: impl Into<String>) -> Self {
        ConsumerGroupMetadata {
            group_id: group_id.into(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
        }
    }
}

/// State shared by the consumer handle and its tasks.
pub(crate) struct Shared {
    pub config: ConsumerConfig,
    pub client: Client,
    state: Mutex<State>,
    /// Fetcher → application: data, errors or tasks are waiting.
    pub data_ready: Notify,
    /// Application → fetcher: assignment, positions or pauses changed.
    pub fetcher_wake: Notify,
    /// Positions were resolved (for `position` waiters).
    pub positions_changed: Notify,
    pub subscription_changed: Notify,
    /// The application called `poll`/`recv` (after a max.poll.interval.ms departure).
    pub polled: Notify,
    pub close_requested: Notify,
    pub group: Option<Arc<Group>>,
    /// The leader's view of partition counts at its last assignment.
    pub leader_snapshot: Mutex<Option<BTreeMap<String, i32>>>,
    closed: AtomicBool,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// A Kafka consumer. Cheap to share by reference across tasks (`&Consumer` methods); `poll`
/// and `recv` calls are serialized.
pub struct Consumer {
    shared: Arc<Shared>,
    poll_lock: tokio::sync::Mutex<()>,
    listener: Option<Arc<dyn RebalanceListener>>,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer").field("group", &self.shared.config.group_id).finish()
    }
}

impl Consumer {
    /// A consumer with these settings. Must be called inside a tokio runtime. Nothing is
    /// subscribed or assigned yet.
    pub fn new(config: ConsumerConfig) -> Result<Consumer> {
        Self::build(config, None)
    }

    /// A consumer whose rebalances are reported to `listener`.
    pub fn with_listener(config: ConsumerConfig, listener: impl RebalanceListener) -> Result<Consumer> {
        Self::build(config, Some(Arc::new(listener)))
    }

    fn build(mut config: ConsumerConfig, listener: Option<Arc<dyn RebalanceListener>>) -> Result<Consumer> {
        config.validate()?;
        let client = Client::new(config.client.clone(), config.allow_auto_create_topics)?;
        let group = match &config.group_id {
            Some(g) => Some(Arc::new(Group::new(
                g.clone(),
                config.group_instance_id.clone(),
                &config.assignment_strategies,
                config.group_protocol,
            )?)),
            None => None,
        };
        let shared = Arc::new(Shared {
            config,
            client,
            state: Mutex::new(State::default()),
            data_ready: Notify::new(),
            fetcher_wake: Notify::new(),
            positions_changed: Notify::new(),
            subscription_changed: Notify::new(),
            polled: Notify::new(),
            close_requested: Notify::new(),
            group: group.clone(),
            leader_snapshot: Mutex::new(None),
            closed: AtomicBool::new(false),
        });
        tokio::spawn(fetcher::run(shared.clone()));
        if let Some(group) = group {
            match shared.config.group_protocol {
                GroupProtocol::Classic => tokio::spawn(coordinator::run(Arc::downgrade(&shared), group)),
                GroupProtocol::Consumer => tokio::spawn(membership::run(Arc::downgrade(&shared), group)),
            };
        }
        if shared.config.enable_auto_commit {
            tokio::spawn(auto_commit(Arc::downgrade(&shared)));
        }
        Ok(Consumer { shared, poll_lock: tokio::sync::Mutex::new(()), listener })
    }

    /// The settings.
    pub fn config(&self) -> &ConsumerConfig {
        &self.shared.config
    }

    /// The connection layer this consumer uses.
    pub fn client(&self) -> &Client {
        &self.shared.client
    }

    /// Subscribes to these topics with group management (needs `group.id`). Replaces an
    /// earlier subscription; a changed subscription triggers a rebalance.
    pub fn subscribe<I, S>(&self, topics: I) -> Result<()>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.shared.config.require_group("subscribe")?;
        let topics: BTreeSet<String> = topics.into_iter().map(Into::into).collect();
        if topics.iter().any(|t| t.trim().is_empty()) {
            return Err(Error::InvalidArgument("empty topic name".to_owned()));
        }
        {
            let mut st = self.shared.lock();
            if matches!(st.subscription, Subscription::Manual) {
                return Err(Error::InvalidArgument("subscribe after assign: call unsubscribe first".to_owned()));
            }
            st.subscription = Subscription::Topics(topics.clone());
            st.subscription_version += 1;
        }
        self.shared.client.add_topics(topics.iter().map(String::as_str));
        self.shared.client.request_refresh();
        self.shared.subscription_changed.notify_one();
        Ok(())
    }

    /// Subscribes to every topic whose whole name matches `pattern` (a regular expression),
    /// now and as topics are created. Internal topics never match when
    /// `exclude.internal.topics` is true.
    pub fn subscribe_pattern(&self, pattern: &str) -> Result<()> {
        self.shared.config.require_group("subscribe_pattern")?;
        let re = regex::Regex::new(&format!("^(?:{pattern})$"))
            .map_err(|e| Error::InvalidArgument(format!("bad pattern {pattern:?}: {e}")))?;
        {
            let mut st = self.shared.lock();
            if matches!(st.subscription, Subscription::Manual) {
                return Err(Error::InvalidArgument("subscribe after assign: call unsubscribe first".to_owned()));
            }
            st.subscription = Subscription::Pattern(re);
            st.subscription_version += 1;
        }
        self.shared.client.add_all_topics();
        self.shared.client.request_refresh();
        self.shared.subscription_changed.notify_one();
        Ok(())
    }

    /// Assigns these partitions manually (no group membership; commits still work with a
    /// `group.id`). Replaces an earlier manual assignment.
    pub fn assign(&self, partitions: impl IntoIterator<Item = TopicPartition>) -> Result<()> {
        let wanted: BTreeSet<TopicPartition> = partitions.into_iter().collect();
        let need = if self.shared.config.group_id.is_some() {
            Need::Committed
        } else {
            Need::Reset(self.shared.config.auto_offset_reset)
        };
        {
            let mut st = self.shared.lock();
            if matches!(st.subscription, Subscription::Topics(_) | Subscription::Pattern(_)) {
                return Err(Error::InvalidArgument("assign after subscribe: call unsubscribe first".to_owned()));
            }
            st.subscription = Subscription::Manual;
            let gone: Vec<TopicPartition> = st.parts.keys().filter(|tp| !wanted.contains(*tp)).cloned().collect();
            for tp in gone {
                st.remove_partition(&tp);
            }
            for tp in &wanted {
                st.add_partition(tp.clone(), need);
            }
        }
        self.shared.client.add_topics(wanted.iter().map(|tp| tp.topic.as_str()));
        self.shared.client.request_refresh();
        self.shared.fetcher_wake.notify_one();
        Ok(())
    }

    /// Drops the subscription or assignment. A group member revokes its partitions (the
    /// listener hears of it; auto-commit commits first) and leaves the group.
    pub async fn unsubscribe(&self) -> Result<()> {
        let owned = self.assignment();
        let was_group = {
            let st = self.shared.lock();
            matches!(st.subscription, Subscription::Topics(_) | Subscription::Pattern(_))
        };
        if was_group && !owned.is_empty() {
            self.revoke(&owned).await;
        }
        let stale: Vec<AppTask> = {
            let mut st = self.shared.lock();
            st.subscription = Subscription::None;
            st.subscription_version += 1;
            let all = st.assignment();
            for tp in all {
                st.remove_partition(&tp);
            }
            // Rebalance callbacks still queued concern partitions this consumer no longer
            // has: they must not run on the next poll. Their senders are told they are done,
            // so the membership task is not left waiting for them.
            st.app_tasks.drain(..).collect()
        };
        for task in stale {
            let (AppTask::Revoke(_, done) | AppTask::Lost(_, done) | AppTask::Assigned(_, done)) = task;
            let _ = done.send(());
        }
        if let (true, Some(group)) = (was_group, &self.shared.group) {
            coordinator::leave(&self.shared, group).await;
            group.rejoin.notify_one();
        }
        self.shared.subscription_changed.notify_one();
        Ok(())
    }

    /// The next record, waiting as long as it takes. Errors that concern a partition (no
    /// offset with `auto.offset.reset=none`, corrupt data) are returned once; the partition
    /// then stays stopped until a seek.
    pub async fn recv(&self) -> Result<ConsumerRecord> {
        loop {
            let mut records = self.poll_inner(None, 1).await?;
            if let Some(r) = records.pop() {
                return Ok(r);
            }
        }
    }

    /// Up to `max.poll.records` records, waiting at most `timeout` for the first ones (an
    /// empty vector when none came).
    pub async fn poll(&self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        self.poll_inner(Some(Instant::now() + timeout), self.shared.config.max_poll_records).await
    }

    /// The records as a `Stream` (ends only with the consumer: errors are items).
    ///
    /// `poll`, `recv` and the stream are cancel-safe: a call dropped half-way (`select!`,
    /// `timeout`) loses no record, and a rebalance callback it was running is run again from
    /// the start by the next call.
    pub fn stream(&self) -> RecordStream<'_> {
        RecordStream { consumer: self, pending: None }
    }

    async fn poll_inner(&self, deadline: Option<Instant>, max: usize) -> Result<Vec<ConsumerRecord>> {
        let _guard = self.poll_lock.lock().await;
        if self.shared.is_closed() {
            return Err(Error::Closed("consumer"));
        }
        {
            let mut st = self.shared.lock();
            st.call += 1;
            st.last_poll = Some(Instant::now());
            st.in_poll = true;
        }
        self.shared.polled.notify_one();
        let _in_poll = InPoll(&self.shared);
        loop {
            self.run_app_tasks().await;
            if let Some(e) = self.shared.lock().errors.pop_front() {
                return Err(e);
            }
            let records = self.collect(max);
            if !records.is_empty() {
                return Ok(records);
            }
            if self.shared.is_closed() {
                return Err(Error::Closed("consumer"));
            }
            // Connection errors retrying cannot fix (a wrong password, an untrusted
            // certificate) end the poll instead of an endless wait, as in the Java client.
            if let Some(e) = self.shared.client.fatal_error() {
                return Err(e);
            }
            // Wake at least every retry.backoff.max.ms to look for such an error: a failing
            // connection sends no data_ready.
            let recheck = Instant::now() + self.shared.config.client.retry_backoff_max.max(Duration::from_millis(100));
            match deadline {
                Some(d) => {
                    if Instant::now() >= d {
                        return Ok(records);
                    }
                    tokio::select! {
                        _ = self.shared.data_ready.notified() => {}
                        _ = tokio::time::sleep_until(d.min(recheck)) => {}
                    }
                }
                None => tokio::select! {
                    _ = self.shared.data_ready.notified() => {}
                    _ = tokio::time::sleep_until(recheck) => {}
                },
            }
        }
    }

    /// Takes up to `max` records from the buffers, round-robin over partitions, advancing
    /// positions as it hands them out.
    fn collect(&self, max: usize) -> Vec<ConsumerRecord> {
        let mut out: Vec<ConsumerRecord> = Vec::new();
        let mut visited = 0usize;
        loop {
            // Pick the next partition with data, after the cursor.
            let picked = {
                let mut st = self.shared.lock();
                let total = st.parts.len();
                if visited >= total || out.len() >= max {
                    None
                } else {
                    let next = {
                        fn ready<'a>(
                            (tp, p): (&'a TopicPartition, &'a state::PartState),
                        ) -> Option<&'a TopicPartition> {
                            (!p.paused && !p.buffer.is_empty()).then_some(tp)
                        }
                        match &st.cursor {
                            Some(c) => st
                                .parts
                                .range::<TopicPartition, _>((std::ops::Bound::Excluded(c), std::ops::Bound::Unbounded))
                                .chain(st.parts.range::<TopicPartition, _>(..=c))
                                .find_map(ready),
                            None => st.parts.iter().find_map(ready),
                        }
                        .cloned()
                    };
                    let mut found: Option<(TopicPartition, CompletedFetch)> = None;
                    if let Some(tp) = next {
                        if let Some(cf) = st.parts.get_mut(&tp).and_then(|p| p.buffer.pop_front()) {
                            found = Some((tp.clone(), cf));
                        }
                        if st.cursor.as_ref() != Some(&tp) {
                            st.cursor = Some(tp);
                        }
                    }
                    found
                }
            };
            let Some((tp, mut cf)) = picked else { break };
            visited += 1;
            let before = out.len();
            let result = cf.take(max - out.len(), &mut out);
            let mut st = self.shared.lock();
            let call = st.call;
            let Some(p) = st.parts.get_mut(&tp).filter(|p| p.epoch == cf.epoch) else {
                // Revoked or repositioned meanwhile: hand out nothing of it.
                out.truncate(before);
                continue;
            };
            if out.len() > before || cf.position().0 != p.position.map_or(-1, |x| x.offset) {
                p.handing_out(call);
            }
            let (offset, leader_epoch) = cf.position();
            p.position = Some(Position { offset, leader_epoch });
            let mut freed = 0;
            match result {
                Ok(_) if !cf.is_exhausted() => p.buffer.push_front(cf),
                Ok(_) => {
                    freed = cf.size;
                }
                Err(e) => {
                    freed = p.buffered;
                    p.buffer.clear();
                    p.stalled = true;
                    p.fetch_position = p.position;
                    st.errors.push_back(e);
                }
            }
            if freed > 0 {
                if let Some(p) = st.parts.get_mut(&tp) {
                    p.buffered = p.buffered.saturating_sub(freed);
                }
                st.buffered = st.buffered.saturating_sub(freed);
                drop(st);
                self.shared.fetcher_wake.notify_one();
            }
            if out.len() >= max {
                break;
            }
        }
        out
    }

    /// Runs rebalance work posted by the membership task.
    async fn run_app_tasks(&self) {
        loop {
            let task = self.shared.lock().app_tasks.pop_front();
            let Some(task) = task else { return };
            // Cancel safety: if the caller drops this poll future while a listener runs, the
            // guard puts the task back at the front, and the next poll runs it again from the
            // start. Without it the revocation would be lost half-done: the membership task
            // would never hear `done`, and the revoked partitions would stay in the buffers.
            let mut guard = Requeue { shared: &self.shared, task: Some(task) };
            enum Kind {
                Revoke,
                Lost,
                Assigned,
            }
            let (kind, parts) = match &guard.task {
                Some(AppTask::Revoke(parts, _)) => (Kind::Revoke, parts),
                Some(AppTask::Lost(parts, _)) => (Kind::Lost, parts),
                Some(AppTask::Assigned(parts, _)) => (Kind::Assigned, parts),
                None => return,
            };
            // Only partitions still assigned: a task posted by a membership task that had not
            // yet seen an `unsubscribe` (or a manual reassignment) names partitions that are
            // gone, and the listener must not hear of them again.
            // (An assignment that added nothing is still reported, as in Java.)
            let named = !parts.is_empty();
            let parts: Vec<TopicPartition> = {
                let st = self.shared.lock();
                parts.iter().filter(|tp| st.parts.contains_key(*tp)).cloned().collect()
            };
            match kind {
                _ if named && parts.is_empty() => {}
                Kind::Revoke => self.revoke(&parts).await,
                Kind::Lost => {
                    if let Some(l) = &self.listener {
                        l.on_partitions_lost(self, &parts).await;
                    }
                    self.remove(&parts);
                }
                Kind::Assigned => {
                    if let Some(l) = &self.listener {
                        l.on_partitions_assigned(self, &parts).await;
                    }
                }
            }
            if let Some(AppTask::Revoke(_, done) | AppTask::Lost(_, done) | AppTask::Assigned(_, done)) =
                guard.task.take()
            {
                let _ = done.send(());
            }
        }
    }

    /// Auto-commit (if on), the listener, then removal.
    async fn revoke(&self, parts: &[TopicPartition]) {
        if self.shared.config.enable_auto_commit {
            let offsets = self.consumed_offsets();
            if let Err(e) = self.commit_offsets(offsets).await {
                tracing::warn!(error = %e, "auto-commit before revocation failed");
            }
        }
        if let Some(l) = &self.listener {
            l.on_partitions_revoked(self, parts).await;
        }
        self.remove(parts);
    }

    fn remove(&self, parts: &[TopicPartition]) {
        let mut st = self.shared.lock();
        for tp in parts {
            st.remove_partition(tp);
        }
        drop(st);
        self.shared.fetcher_wake.notify_one();
    }

    fn consumed_offsets(&self) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
        let st = self.shared.lock();
        consumed_offsets(&st)
    }

    /// Commits the positions of every assigned partition: everything handed out so far.
    pub async fn commit(&self) -> Result<()> {
        let offsets = self.consumed_offsets_now();
        self.commit_offsets(offsets).await
    }

    /// Commits these offsets (each the next offset to consume).
    pub async fn commit_offsets(&self, offsets: BTreeMap<TopicPartition, OffsetAndMetadata>) -> Result<()> {
        let group = self.group("commit")?;
        group.commit(&self.shared, &offsets).await
    }

    /// Commits the current positions in the background; the handle resolves to the outcome.
    pub fn commit_async(&self) -> CommitHandle {
        let offsets = self.consumed_offsets_now();
        let shared = self.shared.clone();
        CommitHandle(tokio::spawn(async move {
            let group =
                shared.group.clone().ok_or_else(|| Error::InvalidArgument("commit needs a group.id".to_owned()))?;
            group.commit(&shared, &offsets).await
        }))
    }

    fn group(&self, what: &str) -> Result<&Arc<Group>> {
        self.shared
            .group
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument(format!("{what} needs a group.id in the consumer settings")))
    }

    /// The committed offsets of these partitions (`None` where there is none).
    pub async fn committed(
        &self,
        partitions: impl IntoIterator<Item = TopicPartition>,
    ) -> Result<BTreeMap<TopicPartition, Option<OffsetAndMetadata>>> {
        let parts: Vec<TopicPartition> = partitions.into_iter().collect();
        self.group("committed")?.fetch_committed(&self.shared, &parts).await
    }

    /// Moves a partition's position; the next record handed out is at `offset`.
    pub fn seek(&self, partition: &TopicPartition, offset: i64) -> Result<()> {
        if offset < 0 {
            return Err(Error::InvalidArgument(format!("negative offset {offset}")));
        }
        self.reposition(partition, Some(Position { offset, leader_epoch: None }), Need::Nothing)
    }

    /// Moves these partitions to the start of their logs (resolved lazily).
    pub fn seek_to_beginning(&self, partitions: &[TopicPartition]) -> Result<()> {
        for tp in partitions {
            self.reposition(tp, None, Need::Reset(OffsetReset::Earliest))?;
        }
        Ok(())
    }

    /// Moves these partitions to the end of their logs (resolved lazily).
    pub fn seek_to_end(&self, partitions: &[TopicPartition]) -> Result<()> {
        for tp in partitions {
            self.reposition(tp, None, Need::Reset(OffsetReset::Latest))?;
        }
        Ok(())
    }

    /// Moves a partition to the first offset whose timestamp is at least `timestamp_ms` (the
    /// end of the log if there is none).
    pub fn seek_to_timestamp(&self, partition: &TopicPartition, timestamp_ms: i64) -> Result<()> {
        self.reposition(partition, None, Need::Timestamp(timestamp_ms))
    }

    fn reposition(&self, tp: &TopicPartition, position: Option<Position>, need: Need) -> Result<()> {
        let ok = self.shared.lock().reposition(tp, position, need);
        if !ok {
            return Err(Error::InvalidArgument(format!("{tp} is not assigned to this consumer")));
        }
        self.shared.fetcher_wake.notify_one();
        Ok(())
    }

    /// Stops handing out (and fetching) records of these partitions until `resume`.
    pub fn pause(&self, partitions: &[TopicPartition]) -> Result<()> {
        self.set_paused(partitions, true)
    }

    /// Resumes paused partitions.
    pub fn resume(&self, partitions: &[TopicPartition]) -> Result<()> {
        self.set_paused(partitions, false)
    }

    fn set_paused(&self, partitions: &[TopicPartition], paused: bool) -> Result<()> {
        let mut st = self.shared.lock();
        for tp in partitions {
            match st.parts.get_mut(tp) {
                Some(p) => p.paused = paused,
                None => return Err(Error::InvalidArgument(format!("{tp} is not assigned to this consumer"))),
            }
        }
        drop(st);
        self.shared.fetcher_wake.notify_one();
        Ok(())
    }

    /// Bytes of fetched data waiting to be handed out (bounded by
    /// `queued.max.messages.kbytes`, plus at most one fetch response in flight).
    pub fn buffered_bytes(&self) -> usize {
        self.shared.lock().buffered
    }

    /// The paused partitions.
    pub fn paused(&self) -> Vec<TopicPartition> {
        self.shared.lock().parts.iter().filter(|(_, p)| p.paused).map(|(tp, _)| tp.clone()).collect()
    }

    /// The partitions assigned to this consumer now.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.shared.lock().assignment()
    }

    /// The subscribed topics (for a pattern, those it matches now).
    pub fn subscription(&self) -> Vec<String> {
        match &self.shared.lock().subscription {
            Subscription::Topics(t) => t.iter().cloned().collect(),
            _ => coordinator_topics(&self.shared),
        }
    }

    /// The next offset to be handed out for `partition`, waiting (up to
    /// `default.api.timeout.ms`) until it is known.
    pub async fn position(&self, partition: &TopicPartition) -> Result<i64> {
        let deadline = Instant::now() + self.shared.config.default_api_timeout;
        loop {
            let waiter = self.shared.positions_changed.notified();
            tokio::pin!(waiter);
            waiter.as_mut().enable();
            {
                let st = self.shared.lock();
                match st.parts.get(partition) {
                    None => {
                        return Err(Error::InvalidArgument(format!("{partition} is not assigned to this consumer")))
                    }
                    Some(p) => {
                        if let Some(pos) = p.position {
                            return Ok(pos.offset);
                        }
                    }
                }
            }
            self.shared.fetcher_wake.notify_one();
            if tokio::time::timeout_at(deadline, waiter).await.is_err() {
                return Err(Error::Timeout {
                    what: format!("waiting for the position of {partition}"),
                    setting: "default.api.timeout.ms",
                    timeout_ms: self.shared.config.default_api_timeout.as_millis() as u64,
                });
            }
        }
    }

    /// The first offset at or after each timestamp (`None` where no record is that recent).
    pub async fn offsets_for_times(
        &self,
        timestamps: BTreeMap<TopicPartition, i64>,
    ) -> Result<BTreeMap<TopicPartition, Option<OffsetAndTimestamp>>> {
        if let Some((tp, ts)) = timestamps.iter().find(|(_, ts)| **ts < 0) {
            return Err(Error::InvalidArgument(format!("negative timestamp {ts} for {tp}")));
        }
        self.lookup(timestamps).await
    }

    /// The first offset of each partition's log.
    pub async fn beginning_offsets(&self, partitions: &[TopicPartition]) -> Result<BTreeMap<TopicPartition, i64>> {
        self.special_offsets(partitions, EARLIEST).await
    }

    /// The end of each partition's log (the last stable offset under read_committed).
    pub async fn end_offsets(&self, partitions: &[TopicPartition]) -> Result<BTreeMap<TopicPartition, i64>> {
        self.special_offsets(partitions, LATEST).await
    }

    async fn special_offsets(&self, partitions: &[TopicPartition], ts: i64) -> Result<BTreeMap<TopicPartition, i64>> {
        let wanted = partitions.iter().map(|tp| (tp.clone(), ts)).collect();
        let found = self.lookup(wanted).await?;
        Ok(found.into_iter().map(|(tp, o)| (tp, o.map_or(-1, |o| o.offset))).collect())
    }

    /// ListOffsets with retries of retriable errors until `default.api.timeout.ms`.
    async fn lookup(
        &self,
        mut wanted: BTreeMap<TopicPartition, i64>,
    ) -> Result<BTreeMap<TopicPartition, Option<OffsetAndTimestamp>>> {
        let timeout = self.shared.config.default_api_timeout;
        let deadline = Instant::now() + timeout;
        let client = &self.shared.client;
        client.add_topics(wanted.keys().map(|tp| tp.topic.as_str()));
        for topic in wanted.keys().map(|tp| tp.topic.clone()).collect::<BTreeSet<_>>() {
            client.wait_for_topic(&topic, timeout, "default.api.timeout.ms").await?;
        }
        let mut out = BTreeMap::new();
        let mut attempt = 0u32;
        loop {
            let answers = list_offsets(client, self.shared.config.isolation_level.wire(), &wanted).await;
            let mut last_error = None;
            for (tp, r) in answers {
                match r {
                    Ok(v) => {
                        wanted.remove(&tp);
                        out.insert(tp, v);
                    }
                    Err(e) if e.is_retriable() => last_error = Some(e),
                    Err(e) => return Err(e),
                }
            }
            if wanted.is_empty() {
                return Ok(out);
            }
            if Instant::now() >= deadline {
                return Err(last_error.unwrap_or(Error::Timeout {
                    what: "looking up offsets".to_owned(),
                    setting: "default.api.timeout.ms",
                    timeout_ms: timeout.as_millis() as u64,
                }));
            }
            attempt += 1;
            let c = &self.shared.config.client;
            tokio::time::sleep(c.retry_backoff.saturating_mul(1 << attempt.min(8)).min(c.retry_backoff_max)).await;
            let _ = client.refresh_metadata().await;
        }
    }

    /// The group identity for a transactional producer's `send_offsets_to_transaction`.
    pub fn group_metadata(&self) -> Option<ConsumerGroupMetadata> {
        let group = self.shared.group.as_ref()?;
        let m = group.member();
        Some(ConsumerGroupMetadata {
            group_id: group.group_id.clone(),
            generation_id: m.generation,
            member_id: m.member_id,
            group_instance_id: group.instance_id.clone(),
        })
    }

    /// Closes the consumer: the final auto-commit, the revocation callback, LeaveGroup
    /// (dynamic members), then the connections. Bounded by `default.api.timeout.ms`.
    pub async fn close(&self) -> Result<()> {
        let timeout = self.shared.config.default_api_timeout;
        let result = tokio::time::timeout(timeout, self.close_inner()).await;
        self.shutdown();
        match result {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                what: "closing the consumer".to_owned(),
                setting: "default.api.timeout.ms",
                timeout_ms: timeout.as_millis() as u64,
            }),
        }
    }

    async fn close_inner(&self) -> Result<()> {
        if self.shared.is_closed() {
            return Ok(());
        }
        let _guard = self.poll_lock.lock().await;
        // Stop the membership task from starting anything new.
        self.shared.close_requested.notify_one();
        // Finish what the membership task was waiting for, so it is not left hanging.
        self.run_app_tasks().await;
        let in_group = matches!(self.shared.lock().subscription, Subscription::Topics(_) | Subscription::Pattern(_));
        let owned = self.assignment();
        let mut result = Ok(());
        if self.shared.config.enable_auto_commit {
            let offsets = self.consumed_offsets_now();
            result = self.commit_offsets(offsets).await;
        }
        if in_group {
            if let Some(l) = &self.listener {
                if !owned.is_empty() {
                    l.on_partitions_revoked(self, &owned).await;
                }
            }
            self.shared.closed.store(true, Ordering::Release);
            if let Some(group) = &self.shared.group {
                coordinator::leave(&self.shared, group).await;
            }
        }
        result
    }

    /// Positions of everything handed out (for `commit`, and at close, when the application
    /// is done with all).
    fn consumed_offsets_now(&self) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
        offsets(&self.shared.lock(), |p| p.position)
    }

    fn shutdown(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.lock().closed = true;
        self.shared.fetcher_wake.notify_one();
        self.shared.subscription_changed.notify_one();
        self.shared.close_requested.notify_one();
        self.shared.data_ready.notify_one();
        self.shared.client.close();
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        // Never blocks: tasks see the flag and stop; the broker notices the member is gone
        // when its session expires (call `close` for a prompt LeaveGroup).
        self.shutdown();
    }
}

struct InPoll<'a>(&'a Shared);

impl Drop for InPoll<'_> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.in_poll = false;
        st.last_poll = Some(Instant::now());
    }
}

fn consumed_offsets(st: &State) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
    offsets(st, |p| p.consumed(st.call))
}

/// The offsets to commit for every assigned partition, from the position `pick` chooses.
fn offsets(
    st: &State,
    pick: impl Fn(&state::PartState) -> Option<Position>,
) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
    st.parts
        .iter()
        .filter_map(|(tp, p)| {
            pick(p).map(|pos| {
                (tp.clone(), OffsetAndMetadata { offset: pos.offset, leader_epoch: pos.leader_epoch, metadata: None })
            })
        })
        .collect()
}

fn coordinator_topics(shared: &Shared) -> Vec<String> {
    let st = shared.lock();
    let topics: BTreeSet<String> = st.parts.keys().map(|tp| tp.topic.clone()).collect();
    topics.into_iter().collect()
}

/// Commits the consumed positions every `auto.commit.interval.ms`.
async fn auto_commit(weak: std::sync::Weak<Shared>) {
    let interval = match weak.upgrade() {
        Some(s) => s.config.auto_commit_interval,
        None => return,
    };
    let mut last: BTreeMap<TopicPartition, OffsetAndMetadata> = BTreeMap::new();
    loop {
        tokio::time::sleep(interval).await;
        let Some(shared) = weak.upgrade() else { return };
        if shared.is_closed() {
            return;
        }
        let Some(group) = shared.group.clone() else { return };
        let offsets: BTreeMap<TopicPartition, OffsetAndMetadata> = {
            let st = shared.lock();
            consumed_offsets(&st).into_iter().filter(|(tp, o)| last.get(tp) != Some(o)).collect()
        };
        if offsets.is_empty() {
            continue;
        }
        match group.commit(&shared, &offsets).await {
            Ok(()) => {
                tracing::debug!(partitions = offsets.len(), "auto-commit");
                last.extend(offsets);
            }
            Err(e) => tracing::debug!(error = %e, "auto-commit failed"),
        }
    }
}

/// The outcome of [`Consumer::commit_async`].
#[derive(Debug)]
pub struct CommitHandle(tokio::task::JoinHandle<Result<()>>);

impl Future for CommitHandle {
    type Output = Result<()>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        match Pin::new(&mut self.0).poll(cx) {
            Poll::Ready(Ok(r)) => Poll::Ready(r),
            Poll::Ready(Err(e)) => Poll::Ready(Err(Error::InvalidArgument(format!("commit task failed: {e}")))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A `Stream` of records from [`Consumer::stream`].
pub struct RecordStream<'a> {
    consumer: &'a Consumer,
    pending: Option<BoxFuture<'a, Result<ConsumerRecord>>>,
}

impl fmt::Debug for RecordStream<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordStream").finish()
    }
}

impl<'a> futures_core::Stream for RecordStream<'a> {
    type Item = Result<ConsumerRecord>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let consumer = self.consumer;
        if consumer.shared.is_closed() && self.pending.is_none() {
            return Poll::Ready(None);
        }
        let fut = self.pending.get_or_insert_with(|| Box::pin(consumer.recv()));
        match fut.as_mut().poll(cx) {
            Poll::Ready(Err(Error::Closed(_))) => {
                self.pending = None;
                Poll::Ready(None)
            }
            Poll::Ready(r) => {
                self.pending = None;
                Poll::Ready(Some(r))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
