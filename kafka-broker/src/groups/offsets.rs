//! Committed offsets (Kafka's `OffsetMetadataManager`): OffsetCommit validation against the
//! group's generation and members, transactional offset commits (TxnOffsetCommit: pending
//! until their transaction ends), OffsetFetch, OffsetDelete, DeleteGroups, and the periodic
//! expiration of offsets and of empty groups without offsets.
//!
//! Offsets live in their group. A commit with generation -1 to a group that does not exist
//! creates an empty "simple" group to hold them, as Kafka does.

use kafka_protocol::ErrorCode;

use super::group::CommittedOffset;
use super::timer::TimerKey;
use super::{Coordinator, Group, GroupState};

/// Per topic, each partition's error.
pub(crate) type PartitionErrors = Vec<(String, Vec<(i32, ErrorCode)>)>;

/// One partition of an OffsetFetch answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FetchedOffset {
    pub partition: i32,
    /// -1: nothing committed.
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub error: ErrorCode,
}

impl FetchedOffset {
    fn none(partition: i32, error: ErrorCode) -> Self {
        FetchedOffset { partition, offset: -1, leader_epoch: -1, metadata: String::new(), error }
    }

    fn of(partition: i32, c: &CommittedOffset) -> Self {
        FetchedOffset {
            partition,
            offset: c.offset,
            leader_epoch: c.leader_epoch,
            metadata: c.metadata.clone(),
            error: ErrorCode::None,
        }
    }
}

/// Kafka's `ClassicGroup.validateOffsetCommit`.
fn validate_commit(
    group: &Group,
    generation: i32,
    member_id: &str,
    instance_id: Option<&str>,
    transactional: bool,
) -> Result<(), ErrorCode> {
    if group.is(GroupState::Dead) {
        return Err(ErrorCode::CoordinatorNotAvailable);
    }
    if generation < 0 && group.is(GroupState::Empty) {
        // The admin client, or a consumer that assigns partitions itself.
        return Ok(());
    }
    if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
        group.validate_member(member_id, instance_id)?;
        if generation != group.generation {
            return Err(ErrorCode::IllegalGeneration);
        }
    } else if !transactional && !group.is(GroupState::Empty) {
        // No member id and no generation: only an empty group accepts it. Not for
        // transactional commits: TxnOffsetCommit before v3 has neither.
        return Err(ErrorCode::UnknownMemberId);
    }
    if !transactional && group.is(GroupState::CompletingRebalance) {
        // A member of the new generation that has no assignment yet: it should wait for it.
        return Err(ErrorCode::RebalanceInProgress);
    }
    Ok(())
}

impl Coordinator {
    /// Checks an OffsetCommit's generation and member before its offsets are stored. A
    /// member's commit keeps its session alive.
    #[allow(clippy::too_many_arguments)]
    pub fn validate_offset_commit(
        &mut self,
        now: i64,
        coordinator: i32,
        version: i16,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ErrorCode> {
        let group = match self.groups.get(group_id) {
            Some(g) => g,
            None if generation < 0 => {
                tracing::info!(group = group_id, "creating a simple group for a manual offset commit");
                self.groups.insert(group_id.to_string(), Group::new(group_id.to_string(), now, coordinator));
                return Ok(());
            }
            // v9 (KIP-848) says what is wrong; older versions keep Kafka's old answer.
            None if version >= 9 => return Err(ErrorCode::GroupIdNotFound),
            None => return Err(ErrorCode::IllegalGeneration),
        };
        if let Some(cg) = group.consumer.as_deref() {
            return Coordinator::validate_consumer_commit(cg, member_id, generation, false, version);
        }
        validate_commit(group, generation, member_id, instance_id, false)?;
        if matches!(group.state, GroupState::Stable | GroupState::PreparingRebalance) {
            self.touch_member(now, group_id, member_id);
        }
        Ok(())
    }

    /// Checks a TxnOffsetCommit's generation and member (Kafka's
    /// `validateTransactionalOffsetCommit`): a group that does not exist is created for
    /// generation -1 and is ILLEGAL_GENERATION otherwise.
    pub fn validate_txn_offset_commit(
        &mut self,
        now: i64,
        coordinator: i32,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ErrorCode> {
        let Some(group) = self.groups.get(group_id) else {
            if generation < 0 {
                tracing::info!(group = group_id, "creating a simple group for a transactional offset commit");
                self.groups.insert(group_id.to_string(), Group::new(group_id.to_string(), now, coordinator));
                return Ok(());
            }
            return Err(ErrorCode::IllegalGeneration);
        };
        if let Some(cg) = group.consumer.as_deref() {
            return Coordinator::validate_consumer_commit(cg, member_id, generation, true, 9);
        }
        validate_commit(group, generation, member_id, instance_id, true)
    }

    fn next_record_seq(&mut self) -> u64 {
        self.next_commit_seq += 1;
        self.next_commit_seq
    }

    /// Stores a validated commit.
    pub fn store_offset(&mut self, group_id: &str, topic: &str, partition: i32, mut committed: CommittedOffset) {
        committed.record_seq = self.next_record_seq();
        if let Some(g) = self.groups.get_mut(group_id) {
            g.offsets.entry(topic.to_string()).or_default().insert(partition, committed);
        }
    }

    /// Stores a validated transactional commit of producer `producer_id`: pending until the
    /// transaction ends.
    pub fn store_txn_offset(
        &mut self,
        group_id: &str,
        producer_id: i64,
        topic: &str,
        partition: i32,
        mut committed: CommittedOffset,
    ) {
        committed.record_seq = self.next_record_seq();
        if let Some(g) = self.groups.get_mut(group_id) {
            let pending = g.pending_txn_offsets.entry(producer_id).or_default();
            pending.entry(topic.to_string()).or_default().insert(partition, committed);
        }
    }

    /// A transaction marker reached offsets partition `offsets_partition` (Kafka's
    /// `replayEndTransactionMarker`): the producer's pending offsets in the groups of that
    /// partition become committed offsets (each only if no newer commit replaced it
    /// meanwhile) or, on abort, disappear.
    pub fn complete_transaction(&mut self, producer_id: i64, offsets_partition: i32, commit: bool) {
        let partitions = self.config.offsets_topic_partitions;
        for (id, g) in &mut self.groups {
            if super::partition_for(id, partitions) != offsets_partition {
                continue;
            }
            let Some(pending) = g.pending_txn_offsets.remove(&producer_id) else { continue };
            if !commit {
                tracing::debug!(group = %id, producer_id, "transactional offsets aborted");
                continue;
            }
            for (topic, parts) in pending {
                let committed = g.offsets.entry(topic).or_default();
                for (partition, offset) in parts {
                    if committed.get(&partition).map_or(true, |c| c.record_seq < offset.record_seq) {
                        committed.insert(partition, offset);
                    }
                }
            }
            g.offsets.retain(|_, p| !p.is_empty());
            tracing::debug!(group = %id, producer_id, "transactional offsets committed");
        }
    }

    /// Whether a transaction has uncommitted offsets for the partition (OffsetFetch with
    /// `require_stable` then answers UNSTABLE_OFFSET_COMMIT).
    pub fn has_pending_transactional_offsets(&self, group_id: &str, topic: &str, partition: i32) -> bool {
        self.groups.get(group_id).is_some_and(|g| g.has_pending_txn_offset(topic, partition))
    }

    /// OffsetFetch for one group: the requested partitions in request order, or every
    /// committed offset (`topics` = `None`). A group that does not exist has nothing
    /// committed (no error, as in Kafka).
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<&[(String, Vec<i32>)]>,
        require_stable: bool,
    ) -> Vec<(String, Vec<FetchedOffset>)> {
        let group = self.groups.get(group_id).filter(|g| !g.is(GroupState::Dead));
        let unstable =
            |topic: &str, p: i32| require_stable && self.has_pending_transactional_offsets(group_id, topic, p);
        match topics {
            Some(topics) => topics
                .iter()
                .map(|(topic, partitions)| {
                    let committed = group.and_then(|g| g.offsets.get(topic));
                    let fetched = partitions
                        .iter()
                        .map(|p| {
                            if unstable(topic, *p) {
                                return FetchedOffset::none(*p, ErrorCode::UnstableOffsetCommit);
                            }
                            match committed.and_then(|c| c.get(p)) {
                                Some(c) => FetchedOffset::of(*p, c),
                                None => FetchedOffset::none(*p, ErrorCode::None),
                            }
                        })
                        .collect();
                    (topic.clone(), fetched)
                })
                .collect(),
            None => group
                .map(|g| {
                    g.offsets
                        .iter()
                        .map(|(topic, parts)| {
                            let fetched = parts
                                .iter()
                                .map(|(p, c)| {
                                    if unstable(topic, *p) {
                                        FetchedOffset::none(*p, ErrorCode::UnstableOffsetCommit)
                                    } else {
                                        FetchedOffset::of(*p, c)
                                    }
                                })
                                .collect();
                            (topic.clone(), fetched)
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// OffsetDelete: a group-level error, or each partition's.
    pub fn delete_offsets(
        &mut self,
        group_id: &str,
        topics: &[(String, Vec<i32>)],
    ) -> Result<PartitionErrors, ErrorCode> {
        let group = self.groups.get_mut(group_id).ok_or(ErrorCode::GroupIdNotFound)?;
        // A consumer group's offsets can go whatever its state (Kafka's
        // `ConsumerGroup.validateOffsetDelete`), except those of subscribed topics.
        match group.state {
            _ if group.consumer.is_some() => {}
            GroupState::Dead => return Err(ErrorCode::GroupIdNotFound),
            GroupState::Stable | GroupState::PreparingRebalance | GroupState::CompletingRebalance
                if !group.uses_consumer_protocol() =>
            {
                return Err(ErrorCode::NonEmptyGroup)
            }
            _ => {}
        }
        Ok(topics
            .iter()
            .map(|(topic, partitions)| {
                let results = if group.is_subscribed_to_topic(topic) {
                    partitions.iter().map(|p| (*p, ErrorCode::GroupSubscribedToTopic)).collect()
                } else {
                    if let Some(committed) = group.offsets.get_mut(topic) {
                        for p in partitions {
                            committed.remove(p);
                        }
                        if committed.is_empty() {
                            group.offsets.remove(topic);
                        }
                    }
                    // Kafka's tombstone removes pending transactional offsets too.
                    for pending in group.pending_txn_offsets.values_mut() {
                        if let Some(parts) = pending.get_mut(topic) {
                            for p in partitions {
                                parts.remove(p);
                            }
                        }
                    }
                    partitions.iter().map(|p| (*p, ErrorCode::None)).collect()
                };
                (topic.clone(), results)
            })
            .collect())
    }

    /// DeleteGroups for one group: only an empty group can go, with its offsets.
    pub fn delete_group(&mut self, group_id: &str) -> Result<(), ErrorCode> {
        let group = self.groups.get(group_id).ok_or(ErrorCode::GroupIdNotFound)?;
        if let Some(cg) = group.consumer.as_deref() {
            if !cg.is_empty() {
                return Err(ErrorCode::NonEmptyGroup);
            }
            self.remove_group(group_id);
            return Ok(());
        }
        match group.state {
            GroupState::Dead => Err(ErrorCode::GroupIdNotFound),
            GroupState::Stable | GroupState::PreparingRebalance | GroupState::CompletingRebalance => {
                Err(ErrorCode::NonEmptyGroup)
            }
            GroupState::Empty => {
                self.remove_group(group_id);
                Ok(())
            }
        }
    }

    fn remove_group(&mut self, group_id: &str) {
        self.cancel_consumer_timers(group_id);
        if let Some(mut g) = self.groups.remove(group_id) {
            g.transition_to(GroupState::Dead, g.state_timestamp_ms.unwrap_or_default());
            self.timers.cancel(&TimerKey::Join(group_id.to_string()));
            self.timers.cancel(&TimerKey::Sync(group_id.to_string()));
            tracing::info!(group = group_id, "group removed");
        }
    }

    /// A topic was deleted: its committed offsets go too.
    pub fn on_topic_deleted(&mut self, topic: &str) {
        for g in self.groups.values_mut() {
            g.offsets.remove(topic);
            for pending in g.pending_txn_offsets.values_mut() {
                pending.remove(topic);
            }
        }
    }

    /// Expires offsets past `offsets.retention.minutes` (Kafka's expiration conditions) and
    /// removes empty groups that have no offsets left.
    pub(super) fn cleanup(&mut self, now: i64) {
        let retention = self.config.offsets_retention_ms;
        let mut dead = Vec::new();
        for (id, g) in &mut self.groups {
            let all_expired = if g.has_offsets() { expire_offsets(g, now, retention) } else { true };
            if all_expired && g.is(GroupState::Empty) && g.consumer.as_ref().map_or(true, |cg| cg.is_empty()) {
                dead.push(id.clone());
            }
        }
        for id in dead {
            self.remove_group(&id);
        }
    }
}

/// Which time an offset's retention counts from, if its group lets offsets expire at all
/// (Kafka's `offsetExpirationCondition`).
#[derive(Debug, Clone, Copy)]
enum Base {
    /// The commit time.
    Commit,
    /// When the group became empty (or the commit time, if unknown).
    EmptySince(Option<i64>),
}

/// Removes the group's expired offsets; true if none are left.
fn expire_offsets(g: &mut Group, now: i64, retention: i64) -> bool {
    let base = match g.protocol_type.as_deref() {
        // A simple group (offsets only): from each commit.
        None => Some(Base::Commit),
        Some(_) if g.is(GroupState::Empty) => Some(Base::EmptySince(g.state_timestamp_ms)),
        // Topics a stable consumer group no longer subscribes to: from each commit.
        Some(_) if g.uses_consumer_protocol() && g.subscribed_topics.is_some() && g.is(GroupState::Stable) => {
            Some(Base::Commit)
        }
        Some(_) => None,
    };
    let Some(base) = base else { return false };
    let mut all_expired = true;
    let subscribed: Vec<bool> = g.offsets.keys().map(|t| g.is_subscribed_to_topic(t)).collect();
    for ((_, partitions), subscribed) in g.offsets.iter_mut().zip(subscribed) {
        if subscribed {
            all_expired = false;
            continue;
        }
        partitions.retain(|_, c| {
            let expired = match c.expire_timestamp_ms {
                Some(at) => now >= at,
                None => {
                    let from = match base {
                        Base::Commit => c.commit_timestamp_ms,
                        Base::EmptySince(t) => t.unwrap_or(c.commit_timestamp_ms),
                    };
                    now.saturating_sub(from) >= retention
                }
            };
            if !expired {
                all_expired = false;
            }
            !expired
        });
    }
    g.offsets.retain(|_, p| !p.is_empty());
    // Offsets pending in open transactions never expire (and keep their group).
    all_expired && !g.has_pending_txn_offsets()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::groups::GroupConfig;

    fn committed(offset: i64, at: i64) -> CommittedOffset {
        CommittedOffset {
            offset,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: at,
            expire_timestamp_ms: None,
            record_seq: 0,
        }
    }

    #[test]
    fn simple_commits_create_a_group_and_generations_are_checked() {
        let mut c = Coordinator::new(GroupConfig::default());
        assert_eq!(c.validate_offset_commit(0, 1, 8, "g", 3, "m", None), Err(ErrorCode::IllegalGeneration));
        assert_eq!(c.validate_offset_commit(0, 1, 9, "g", 3, "m", None), Err(ErrorCode::GroupIdNotFound));
        assert!(c.groups.is_empty());
        assert_eq!(c.validate_offset_commit(0, 1, 8, "g", -1, "", None), Ok(()));
        assert!(c.groups.get("g").unwrap().is(GroupState::Empty));
        assert_eq!(c.validate_offset_commit(0, 1, 8, "g", -1, "", None), Ok(()));
        assert_eq!(c.validate_offset_commit(0, 1, 8, "g", 0, "ghost", None), Err(ErrorCode::UnknownMemberId));
        c.store_offset("g", "t", 0, committed(42, 0));
        let got = c.fetch_offsets("g", Some(&[("t".into(), vec![0, 1])]), false);
        assert_eq!(got[0].1[0].offset, 42);
        assert_eq!(got[0].1[1], FetchedOffset::none(1, ErrorCode::None));
        assert_eq!(c.fetch_offsets("g", None, true)[0].1.len(), 1);
        assert!(c.fetch_offsets("nope", None, false).is_empty());
    }

    #[test]
    fn offsets_of_an_empty_group_expire_and_then_the_group_goes() {
        let mut c = Coordinator::new(GroupConfig { offsets_retention_ms: 1000, ..Default::default() });
        c.validate_offset_commit(0, 1, 8, "simple", -1, "", None).unwrap();
        c.store_offset("simple", "t", 0, committed(1, 0));
        c.store_offset("simple", "t", 1, CommittedOffset { expire_timestamp_ms: Some(5000), ..committed(1, 0) });
        c.cleanup(999);
        assert_eq!(c.groups["simple"].offsets["t"].len(), 2);
        c.cleanup(1000);
        assert_eq!(c.groups["simple"].offsets["t"].len(), 1, "the explicit expiry is later");
        c.cleanup(5000);
        assert!(!c.groups.contains_key("simple"), "no offsets left: the empty group is removed");
        assert_eq!(c.delete_group("simple"), Err(ErrorCode::GroupIdNotFound));
    }

    #[test]
    fn deleting_offsets_and_groups() {
        let mut c = Coordinator::new(GroupConfig::default());
        c.validate_offset_commit(0, 1, 8, "g", -1, "", None).unwrap();
        c.store_offset("g", "t", 0, committed(1, 0));
        c.store_offset("g", "t", 1, committed(1, 0));
        let r = c.delete_offsets("g", &[("t".into(), vec![0])]).unwrap();
        assert_eq!(r, vec![("t".to_string(), vec![(0, ErrorCode::None)])]);
        assert_eq!(c.groups["g"].offsets["t"].len(), 1);
        assert_eq!(c.delete_offsets("h", &[]), Err(ErrorCode::GroupIdNotFound));
        c.on_topic_deleted("t");
        assert!(!c.groups["g"].has_offsets());
        assert_eq!(c.delete_group("g"), Ok(()));
        assert!(c.groups.is_empty());
    }

    #[test]
    fn transactional_offsets_wait_for_the_marker() {
        let mut c = Coordinator::new(GroupConfig::default());
        let p = super::super::partition_for("g", 50);
        assert_eq!(c.validate_txn_offset_commit(0, 1, "g", 2, "m", None), Err(ErrorCode::IllegalGeneration));
        assert_eq!(c.validate_txn_offset_commit(0, 1, "g", -1, "", None), Ok(()), "creates a simple group");
        c.store_offset("g", "t", 0, committed(5, 0));
        c.store_txn_offset("g", 77, "t", 0, committed(10, 0));
        c.store_txn_offset("g", 77, "t", 1, committed(20, 0));
        c.store_txn_offset("g", 88, "t", 2, committed(30, 0));
        assert!(c.has_pending_transactional_offsets("g", "t", 1));
        assert!(!c.has_pending_transactional_offsets("g", "t", 3));
        let fetched = c.fetch_offsets("g", Some(&[("t".into(), vec![0, 1])]), true);
        assert_eq!(fetched[0].1[0].error, ErrorCode::UnstableOffsetCommit);
        let fetched = c.fetch_offsets("g", Some(&[("t".into(), vec![0, 1])]), false);
        assert_eq!((fetched[0].1[0].offset, fetched[0].1[1].offset), (5, -1), "pending offsets are invisible");
        // A regular commit after the transactional one wins when the transaction commits.
        c.store_offset("g", "t", 1, committed(21, 0));
        c.complete_transaction(77, (p + 1) % 50, true);
        assert!(c.has_pending_transactional_offsets("g", "t", 0), "another offsets partition: untouched");
        c.complete_transaction(77, p, true);
        let got: Vec<i64> =
            c.fetch_offsets("g", Some(&[("t".into(), vec![0, 1, 2])]), false)[0].1.iter().map(|f| f.offset).collect();
        assert_eq!(got, vec![10, 21, -1]);
        // Producer 88 aborts: its offset disappears; the group empties of pending offsets.
        assert!(c.groups["g"].has_offsets());
        c.complete_transaction(88, p, false);
        assert!(!c.has_pending_transactional_offsets("g", "t", 2));
        assert_eq!(c.fetch_offsets("g", Some(&[("t".into(), vec![2])]), true)[0].1[0].offset, -1);
    }

    #[test]
    fn pending_offsets_keep_their_group_and_follow_deletions() {
        let mut c = Coordinator::new(GroupConfig { offsets_retention_ms: 1000, ..Default::default() });
        c.validate_txn_offset_commit(0, 1, "g", -1, "", None).unwrap();
        c.store_txn_offset("g", 7, "t", 0, committed(1, 0));
        c.store_txn_offset("g", 7, "u", 0, committed(1, 0));
        c.cleanup(10_000);
        assert!(c.groups.contains_key("g"), "an open transaction's offsets keep the group");
        c.on_topic_deleted("t");
        assert!(!c.has_pending_transactional_offsets("g", "t", 0));
        c.delete_offsets("g", &[("u".into(), vec![0])]).unwrap();
        assert!(!c.has_pending_transactional_offsets("g", "u", 0), "OffsetDelete removes pending offsets too");
        c.cleanup(20_000);
        assert!(!c.groups.contains_key("g"));
    }
}
