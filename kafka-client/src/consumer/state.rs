//! The consumer's shared state: the assignment, each partition's positions and prefetched
//! data, and the work waiting for the application's task (rebalance callbacks, errors).
//!
//! One `std::sync::Mutex` guards it all; nobody holds it across an await or while decoding.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use tokio::time::Instant;

use super::config::OffsetReset;
use super::record::CompletedFetch;
use super::TopicPartition;
use crate::error::Error;

/// A position: the next offset, and the leader epoch of the record before it when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The next offset to hand out (or fetch).
    pub offset: i64,
    /// The leader epoch of the last record consumed before `offset`, when known (KIP-320).
    pub leader_epoch: Option<i32>,
}

/// How a partition without a position gets one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// It has a position.
    Nothing,
    /// Look up the group's committed offset (falling back to `auto.offset.reset`).
    Committed,
    /// Reset by this policy (or by an explicit seek to the beginning or end).
    Reset(OffsetReset),
    /// Seek to the first offset whose timestamp is at least this.
    Timestamp(i64),
    /// The partition's leader epoch changed since the position was last checked: ask the
    /// leader (OffsetForLeaderEpoch, KIP-320) whether the log still holds what was fetched
    /// before fetching on (a truncation is handled as the reset policy says).
    Validate,
}

/// One assigned partition.
#[derive(Debug)]
pub(crate) struct PartState {
    pub topic: Arc<str>,
    /// The next offset to hand to the application.
    pub position: Option<Position>,
    /// The next offset to fetch (ahead of `position` while data is buffered).
    pub fetch_position: Option<Position>,
    /// Bumped by every seek, reset and reassignment: fetches and lookups of an older epoch
    /// are dropped when they complete.
    pub epoch: u64,
    pub need: Need,
    /// A lookup (committed offset or reset) is running for the current epoch.
    pub resolving: bool,
    pub paused: bool,
    /// Fetched data not yet handed out, oldest first.
    pub buffer: VecDeque<CompletedFetch>,
    pub buffered: usize,
    /// A fetch including this partition is in flight.
    pub in_flight: bool,
    /// Not fetched before this instant (after a retriable error).
    pub backoff_until: Option<Instant>,
    /// Stalled by an error the application must see first (corrupt data, no offset).
    pub stalled: bool,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// KIP-392: the replica the leader told us to fetch from, until when.
    pub preferred_replica: Option<(i32, Instant)>,
    /// The position before the records handed out by the call numbered `last_call`.
    pub consumed: Option<Position>,
    /// The `poll`/`recv` call that last handed out records of this partition (0: none).
    pub last_call: u64,
    /// The leader epoch the fetch position was last fetched or validated under (-1: none
    /// yet); a higher epoch in the metadata means a new leader whose log must be checked.
    pub validated_leader_epoch: i32,
}

impl PartState {
    pub(crate) fn new(topic: Arc<str>, need: Need, epoch: u64) -> Self {
        PartState {
            topic,
            position: None,
            fetch_position: None,
            epoch,
            need,
            resolving: false,
            paused: false,
            buffer: VecDeque::new(),
            buffered: 0,
            in_flight: false,
            backoff_until: None,
            stalled: false,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            preferred_replica: None,
            consumed: None,
            last_call: 0,
            validated_leader_epoch: -1,
        }
    }

    /// Notes that call `call` hands out records (before the position moves).
    pub(crate) fn handing_out(&mut self, call: u64) {
        if self.last_call != call {
            self.consumed = self.position;
            self.last_call = call;
        }
    }

    /// The position the application has finished with: everything handed out before the
    /// current call `call` (a new call to `poll`/`recv` means the previous records are done).
    pub(crate) fn consumed(&self, call: u64) -> Option<Position> {
        if self.last_call == call {
            self.consumed
        } else {
            self.position
        }
    }
}

/// What the application subscribed to.
#[derive(Debug, Clone, Default)]
pub(crate) enum Subscription {
    #[default]
    None,
    Topics(BTreeSet<String>),
    Pattern(regex::Regex),
    Manual,
}

/// Work for the application's task, run inside `poll`/`recv`.
#[derive(Debug)]
pub(crate) enum AppTask {
    /// Revoke these partitions (calling the listener first), then signal `done`.
    Revoke(Vec<TopicPartition>, tokio::sync::oneshot::Sender<()>),
    /// These partitions were lost (the member was fenced): call the listener, no commit.
    Lost(Vec<TopicPartition>, tokio::sync::oneshot::Sender<()>),
    /// These partitions were added (already in the assignment); call the listener.
    Assigned(Vec<TopicPartition>, tokio::sync::oneshot::Sender<()>),
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub subscription: Subscription,
    /// Bumped by every subscribe/unsubscribe, so the membership task can tell whether a
    /// wake-up is a real change.
    pub subscription_version: u64,
    pub parts: BTreeMap<TopicPartition, PartState>,
    /// Where the next round-robin pass over partitions starts.
    pub cursor: Option<TopicPartition>,
    pub buffered: usize,
    pub next_epoch: u64,
    pub errors: VecDeque<Error>,
    pub app_tasks: VecDeque<AppTask>,
    /// The number of the latest `poll`/`recv` call (see [`PartState::consumed`]).
    pub call: u64,
    pub last_poll: Option<Instant>,
    /// A `poll`/`recv` call is in progress (waiting counts as polling).
    pub in_poll: bool,
    pub closed: bool,
    pub topics: BTreeMap<String, Arc<str>>,
}

impl State {
    pub(crate) fn topic_arc(&mut self, topic: &str) -> Arc<str> {
        if let Some(t) = self.topics.get(topic) {
            return t.clone();
        }
        let t: Arc<str> = Arc::from(topic);
        self.topics.insert(topic.to_owned(), t.clone());
        t
    }

    pub(crate) fn bump_epoch(&mut self) -> u64 {
        self.next_epoch += 1;
        self.next_epoch
    }

    /// Adds a partition to the assignment (no-op if present).
    pub(crate) fn add_partition(&mut self, tp: TopicPartition, need: Need) {
        if self.parts.contains_key(&tp) {
            return;
        }
        let topic = self.topic_arc(&tp.topic);
        let epoch = self.bump_epoch();
        self.parts.insert(tp, PartState::new(topic, need, epoch));
    }

    /// Removes a partition, dropping its buffered data.
    pub(crate) fn remove_partition(&mut self, tp: &TopicPartition) {
        if let Some(p) = self.parts.remove(tp) {
            self.buffered = self.buffered.saturating_sub(p.buffered);
        }
    }

    /// Drops a partition's buffered data and gives it a new position (or a need), so that
    /// in-flight fetches and lookups for it are ignored.
    pub(crate) fn reposition(&mut self, tp: &TopicPartition, position: Option<Position>, need: Need) -> bool {
        let epoch = self.bump_epoch();
        let Some(p) = self.parts.get_mut(tp) else { return false };
        self.buffered = self.buffered.saturating_sub(p.buffered);
        p.buffer.clear();
        p.buffered = 0;
        p.epoch = epoch;
        p.position = position;
        p.fetch_position = position;
        p.need = need;
        p.resolving = false;
        p.stalled = false;
        p.backoff_until = None;
        p.last_call = 0;
        p.validated_leader_epoch = -1;
        true
    }

    /// The assigned partitions.
    pub(crate) fn assignment(&self) -> Vec<TopicPartition> {
        self.parts.keys().cloned().collect()
    }
}
