//! The group coordinator (classic protocol and KIP-848 consumer groups): groups, their members
//! and committed offsets, on the state task like everything else (Kafka's
//! `GroupMetadataManager` and `OffsetMetadataManager`, with the same state machines, timers and
//! error answers).
//!
//! - `group.rs`: one group's state machine and members.
//! - `classic.rs`: JoinGroup, SyncGroup, Heartbeat, LeaveGroup and the timers that end join
//!   and sync phases and sessions.
//! - `offsets.rs`: OffsetCommit, OffsetFetch, OffsetDelete, DeleteGroups, offset expiration.
//! - `consumer.rs`: consumer groups of the next-generation protocol (KIP-848):
//!   ConsumerGroupHeartbeat, reconciliation, their timers and offset-commit checks.
//! - `assignor.rs`: the server-side assignors of consumer groups (`uniform`, `range`).
//! - `timer.rs`: keyed deadlines on the cluster clock.
//!
//! JoinGroup and SyncGroup answers are often not ready when the request is handled: the
//! handler takes a ticket ([`Waiter`]), stores it in the member (as Kafka stores the
//! response future) and the state task keeps the request. Whatever completes it later (the
//! last member joining, a timer, the leader's SyncGroup) pushes a [`Completion`]; the state
//! task sends every completion after each event it handles. Answers that are ready at once
//! take the same path, so there is one way a JoinGroup is answered.
//!
//! Coordinator placement follows Kafka: a group belongs to partition
//! `abs(hashCode(group id)) % offsets.topic.num.partitions` of `__consumer_offsets`, and its
//! coordinator is that partition's leader. The partitions are virtual (no such topic is
//! listed): partition p is led by the p-th broker (mod the broker count), or, while that
//! broker is stopped, by the next live one. `Cluster::move_coordinator` overrides this for
//! one group.

pub(crate) mod assignor;
pub(crate) mod classic;
pub(crate) mod consumer;
pub(crate) mod group;
pub(crate) mod offsets;
pub(crate) mod timer;

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::ErrorCode;

use crate::cluster::State;
use crate::faults::SplitMix64;
pub(crate) use group::{Group, GroupState};

/// Kafka's `CLASSIC_GROUP_NEW_MEMBER_JOIN_TIMEOUT_MS`: a member that joined for the first time
/// is dropped if the join phase has not ended by then (it cannot heartbeat yet).
pub(crate) const NEW_MEMBER_JOIN_TIMEOUT_MS: i64 = 5 * 60 * 1000;

/// Coordinator key types of FindCoordinator.
pub(crate) const KEY_TYPE_GROUP: i8 = 0;
pub(crate) const KEY_TYPE_TRANSACTION: i8 = 1;

/// A request waiting for the coordinator: its ticket with the state task and the version it
/// must be answered at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Waiter {
    pub ticket: u64,
    pub version: i16,
}

/// One member as the leader sees it in its JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JoinMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

/// A JoinGroup answer before it is fitted to the request's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JoinResult {
    pub error: ErrorCode,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub skip_assignment: bool,
    pub member_id: String,
    pub members: Vec<JoinMember>,
}

impl JoinResult {
    /// An error answer (generation -1, no protocol, no leader).
    pub fn error(member_id: &str, error: ErrorCode) -> Self {
        JoinResult {
            error,
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            skip_assignment: false,
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

/// A SyncGroup answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SyncResult {
    pub error: ErrorCode,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(error: ErrorCode) -> Self {
        SyncResult { error, ..Default::default() }
    }
}

/// An answer for a waiting request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Completion {
    Join(Waiter, JoinResult),
    Sync(Waiter, SyncResult),
}

impl Completion {
    pub fn ticket(&self) -> u64 {
        match self {
            Completion::Join(w, _) | Completion::Sync(w, _) => w.ticket,
        }
    }
}

/// The coordinator's broker settings (Kafka's names; defaults are Kafka's except where noted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupConfig {
    /// `group.min.session.timeout.ms` (6000).
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms` (1800000).
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: Kafka's default is 3000; the bundled broker's is 0,
    /// so that tests do not wait three seconds for every new group.
    pub initial_rebalance_delay_ms: i32,
    /// `group.max.size` (unlimited).
    pub max_size: usize,
    /// `offset.metadata.max.bytes` (4096).
    pub offset_metadata_max_bytes: usize,
    /// `offsets.retention.minutes` (7 days), in milliseconds.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms` (600000): how often expired offsets and empty
    /// groups are removed (checked on the housekeeping tick; `Cluster::run_housekeeping`
    /// runs it at once).
    pub offsets_retention_check_interval_ms: i64,
    /// `offsets.topic.num.partitions` (50).
    pub offsets_topic_partitions: i32,
    /// `transaction.state.log.num.partitions` (50).
    pub transaction_topic_partitions: i32,
    /// `group.consumer.heartbeat.interval.ms` (5000): the interval ConsumerGroupHeartbeat
    /// tells members.
    pub consumer_heartbeat_interval_ms: i32,
    /// `group.consumer.session.timeout.ms` (45000): a consumer-group member that does not
    /// heartbeat for this long is removed.
    pub consumer_session_timeout_ms: i32,
    /// `group.consumer.max.size` (unlimited).
    pub consumer_max_size: usize,
    /// `group.consumer.assignors`: the server assignors by name, the default first
    /// (`uniform`, `range`; Kafka's class names are accepted too).
    pub consumer_assignors: Vec<String>,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 0,
            max_size: usize::MAX,
            offset_metadata_max_bytes: 4096,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offsets_retention_check_interval_ms: 600_000,
            offsets_topic_partitions: 50,
            transaction_topic_partitions: 50,
            consumer_heartbeat_interval_ms: 5000,
            consumer_session_timeout_ms: 45_000,
            consumer_max_size: usize::MAX,
            consumer_assignors: assignor::ASSIGNORS.iter().map(|a| (*a).to_string()).collect(),
        }
    }
}

impl GroupConfig {
    /// Takes a broker setting if it is one of the coordinator's (values that do not parse,
    /// or are out of range, are ignored like other settings the broker cannot use).
    pub fn apply(&mut self, key: &str, value: &str) {
        let v = value.trim();
        match key {
            "group.min.session.timeout.ms" => set(&mut self.min_session_timeout_ms, v.parse().ok()),
            "group.max.session.timeout.ms" => set(&mut self.max_session_timeout_ms, v.parse().ok()),
            "group.initial.rebalance.delay.ms" => {
                set(&mut self.initial_rebalance_delay_ms, v.parse().ok().filter(|n: &i32| *n >= 0))
            }
            "group.max.size" => set(&mut self.max_size, v.parse().ok().filter(|n: &usize| *n >= 1)),
            "offset.metadata.max.bytes" => set(&mut self.offset_metadata_max_bytes, v.parse().ok()),
            "offsets.retention.minutes" => set(
                &mut self.offsets_retention_ms,
                v.parse::<i64>().ok().filter(|n| *n >= 1).map(|m| m.saturating_mul(60_000)),
            ),
            "offsets.retention.check.interval.ms" => {
                set(&mut self.offsets_retention_check_interval_ms, v.parse().ok().filter(|n: &i64| *n >= 1))
            }
            "offsets.topic.num.partitions" => {
                set(&mut self.offsets_topic_partitions, v.parse().ok().filter(|n: &i32| *n >= 1))
            }
            "transaction.state.log.num.partitions" => {
                set(&mut self.transaction_topic_partitions, v.parse().ok().filter(|n: &i32| *n >= 1))
            }
            "group.consumer.heartbeat.interval.ms" => {
                set(&mut self.consumer_heartbeat_interval_ms, v.parse().ok().filter(|n: &i32| *n >= 1))
            }
            "group.consumer.session.timeout.ms" => {
                set(&mut self.consumer_session_timeout_ms, v.parse().ok().filter(|n: &i32| *n >= 1))
            }
            "group.consumer.max.size" => set(&mut self.consumer_max_size, v.parse().ok().filter(|n: &usize| *n >= 1)),
            "group.consumer.assignors" => {
                let names: Vec<String> = v
                    .split(',')
                    .filter_map(|a| {
                        let a = a.trim();
                        assignor::ASSIGNORS
                            .iter()
                            .find(|n| a == **n || a.to_ascii_lowercase().ends_with(&format!("{n}assignor")))
                    })
                    .map(|n| (*n).to_string())
                    .collect();
                set(&mut self.consumer_assignors, Some(names).filter(|n| !n.is_empty()))
            }
            _ => {}
        }
    }
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *field = v;
    }
}

/// The coordinator's state.
#[derive(Debug)]
pub(crate) struct Coordinator {
    pub config: GroupConfig,
    pub groups: BTreeMap<String, Group>,
    pub timers: timer::Timers,
    /// Answers for waiting requests, sent by the state task after each event.
    pub completions: Vec<Completion>,
    /// Coordinators moved by `Cluster::move_coordinator`: (key type, key) -> broker.
    pub overrides: BTreeMap<(i8, String), i32>,
    next_ticket: u64,
    /// The last commit's `record_seq` (commits are ordered as Kafka's commit records are).
    next_commit_seq: u64,
    pub(super) ids: SplitMix64,
    last_cleanup_ms: Option<i64>,
}

impl Coordinator {
    pub fn new(config: GroupConfig) -> Self {
        Coordinator {
            config,
            groups: BTreeMap::new(),
            timers: Default::default(),
            completions: Vec::new(),
            overrides: BTreeMap::new(),
            next_ticket: 0,
            next_commit_seq: 0,
            ids: SplitMix64::new(0x6772_6f75_7073),
            last_cleanup_ms: None,
        }
    }

    /// A ticket for a request that will be answered through a [`Completion`].
    pub fn new_ticket(&mut self) -> u64 {
        self.next_ticket += 1;
        self.next_ticket
    }

    /// Kafka's member ids: the client id (or the group instance id) and a random UUID. The
    /// UUIDs come from a fixed-seed generator, so a run is reproducible.
    pub fn generate_member_id(&mut self, client_id: &str, instance_id: Option<&str>) -> String {
        let (a, b) = (self.ids.next_u64(), self.ids.next_u64());
        // Version 4, variant 1, like java.util.UUID.randomUUID().
        let a = (a & !0xf000) | 0x4000;
        let b = (b & !(0xc << 60)) | (0x8 << 60);
        let prefix = instance_id.unwrap_or(client_id);
        format!(
            "{prefix}-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
    }

    /// The earliest timer deadline (cluster clock).
    pub fn next_deadline(&self) -> Option<i64> {
        self.timers.next_deadline()
    }

    /// Runs every timer due at `now`.
    pub fn fire_timers(&mut self, now: i64) {
        while let Some((key, task)) = self.timers.pop_due(now) {
            self.run_timer(now, key, task);
        }
    }

    /// Offset expiration and empty-group removal, every `offsets.retention.check.interval.ms`
    /// (or now, if `force`).
    pub fn maybe_cleanup(&mut self, now: i64, force: bool) {
        let due = match self.last_cleanup_ms {
            None => {
                self.last_cleanup_ms = Some(now);
                false
            }
            Some(last) => now.saturating_sub(last) >= self.config.offsets_retention_check_interval_ms,
        };
        if due || force {
            self.last_cleanup_ms = Some(now);
            self.cleanup(now);
        }
    }

    /// A group's coordinator changed (a broker stopped, `move_coordinator`): as when Kafka
    /// unloads a group, waiting JoinGroup and SyncGroup requests are answered
    /// NOT_COORDINATOR, and sessions restart from now as when the new coordinator loads it.
    pub fn coordinator_moved(&mut self, group_id: &str, to: i32, now: i64) {
        let Coordinator { groups, timers, completions, .. } = self;
        let Some(group) = groups.get_mut(group_id) else { return };
        group.coordinator = to;
        if group.consumer.is_some() {
            self.consumer_group_moved(group_id, now);
            return;
        }
        for m in group.members_mut() {
            if let Some(w) = m.awaiting_join.take() {
                completions.push(Completion::Join(w, JoinResult::error(&m.id, ErrorCode::NotCoordinator)));
            }
            if let Some(w) = m.awaiting_sync.take() {
                completions.push(Completion::Sync(w, SyncResult::error(ErrorCode::NotCoordinator)));
            }
            timers.schedule(
                timer::TimerKey::Heartbeat(group_id.to_string(), m.id.clone()),
                now.saturating_add(i64::from(m.session_timeout_ms)),
                timer::TimerTask::ExpireHeartbeat,
            );
        }
    }
}

/// Java's `String.hashCode` (over UTF-16 code units).
pub(crate) fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// Kafka's `partitionFor`: `Utils.abs(key.hashCode()) % partitions`.
pub(crate) fn partition_for(key: &str, partitions: i32) -> i32 {
    let h = java_string_hash(key);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

impl State {
    /// The broker coordinating `key` of `key_type` (group or transactional id), or `None` if
    /// every broker is stopped.
    pub fn coordinator_for(&self, key_type: i8, key: &str) -> Option<i32> {
        let live = |id: i32| !self.stopped.contains(&id);
        if !self.groups.overrides.is_empty() {
            let moved =
                self.groups.overrides.iter().find(|((t, k), _)| *t == key_type && k == key).map(|(_, broker)| *broker);
            if let Some(b) = moved.filter(|b| live(*b)) {
                return Some(b);
            }
        }
        let partitions = if key_type == KEY_TYPE_TRANSACTION {
            self.groups.config.transaction_topic_partitions
        } else {
            self.groups.config.offsets_topic_partitions
        };
        let n = self.brokers.len();
        let first = usize::try_from(partition_for(key, partitions)).unwrap_or(0);
        (0..n).filter_map(|i| self.brokers.get((first + i) % n.max(1))).map(|b| b.node_id).find(|id| live(*id))
    }

    /// Whether `broker` coordinates group `group_id`.
    pub fn is_group_coordinator(&self, broker: i32, group_id: &str) -> bool {
        self.coordinator_for(KEY_TYPE_GROUP, group_id) == Some(broker)
    }

    /// Tells groups whose coordinator changed (after a broker stopped or started, or a
    /// coordinator was moved).
    pub fn sync_coordinators(&mut self) {
        let now = self.now_ms();
        let moved: Vec<(String, i32)> = self
            .groups
            .groups
            .iter()
            .filter_map(|(id, g)| {
                let now_at = self.coordinator_for(KEY_TYPE_GROUP, id).unwrap_or(-1);
                (now_at != g.coordinator).then(|| (id.clone(), now_at))
            })
            .collect();
        for (id, to) in moved {
            tracing::info!(group = %id, to, "group coordinator moved");
            self.groups.coordinator_moved(&id, to, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::test_state;

    #[test]
    fn partition_for_matches_java() {
        // "".hashCode() = 0, "a" = 97, "group" = 98629247, and a negative hash.
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("group"), 98_629_247);
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 50), 0, "abs(MIN_VALUE) is 0 in Kafka's Utils.abs");
        assert_eq!(partition_for("group", 50), 98_629_247 % 50);
        assert_eq!(java_string_hash("é€"), 233 * 31 + 8364);
    }

    #[test]
    fn coordinators_spread_and_fail_over() {
        let mut state = test_state(3);
        let nodes: std::collections::BTreeSet<i32> =
            (0..30).filter_map(|i| state.coordinator_for(KEY_TYPE_GROUP, &format!("g{i}"))).collect();
        assert_eq!(nodes.len(), 3, "groups spread over every broker");
        let g = (0..30).map(|i| format!("g{i}")).find(|g| state.coordinator_for(0, g) == Some(2)).unwrap();
        assert_eq!(state.coordinator_for(KEY_TYPE_TRANSACTION, &g), Some(2), "same hash, same partition count");
        state.stopped.insert(2);
        assert_eq!(state.coordinator_for(0, &g), Some(3), "the next live broker");
        state.stopped.insert(3);
        assert_eq!(state.coordinator_for(0, &g), Some(1));
        state.stopped.insert(1);
        assert_eq!(state.coordinator_for(0, &g), None);
    }

    #[test]
    fn member_ids_look_like_kafkas() {
        let mut c = Coordinator::new(GroupConfig::default());
        let id = c.generate_member_id("rdkafka", None);
        let uuid = id.strip_prefix("rdkafka-").unwrap();
        let parts: Vec<&str> = uuid.split('-').collect();
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), [8, 4, 4, 4, 12]);
        assert!(parts[2].starts_with('4'));
        assert!(c.generate_member_id("x", Some("instance-1")).starts_with("instance-1-"));
        assert_ne!(c.generate_member_id("x", None), c.generate_member_id("x", None));
    }

    #[test]
    fn config_takes_kafka_names() {
        let mut c = GroupConfig::default();
        c.apply("group.initial.rebalance.delay.ms", "3000");
        c.apply("offsets.retention.minutes", "2");
        c.apply("group.max.size", "0");
        c.apply("group.min.session.timeout.ms", "soon");
        assert_eq!(c.initial_rebalance_delay_ms, 3000);
        assert_eq!(c.offsets_retention_ms, 120_000);
        assert_eq!(c.max_size, usize::MAX, "out of range: ignored");
        assert_eq!(c.min_session_timeout_ms, 6000, "unparsable: ignored");
    }
}
