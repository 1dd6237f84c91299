//! Consumer groups, the next-generation protocol (KIP-848): ConsumerGroupHeartbeat with
//! server-side assignment, as Kafka's `GroupMetadataManager.consumerGroupHeartbeat`,
//! `ConsumerGroup` and `CurrentAssignmentBuilder` do it.
//!
//! Three epochs drive the group:
//! - the **group epoch** is bumped whenever the group changes in a way that needs a new
//!   assignment: a member joins or leaves or changes its subscription, or the subscribed
//!   topics change (a topic appears, partitions are added, a regex matches a new topic);
//! - the **assignment epoch** is the group epoch the target assignment was computed for (the
//!   assignor runs, on the next heartbeat, when the group epoch is ahead of it);
//! - each **member epoch** is the assignment epoch the member has reconciled to.
//!
//! Reconciliation (`reconcile`, Kafka's `CurrentAssignmentBuilder`) moves a member towards
//! its target one step per heartbeat: partitions it must give up are taken from its
//! assignment first and it stays at its epoch (UNREVOKED_PARTITIONS) until a heartbeat's
//! owned partitions no longer include them; only then are they free, and a partition still
//! owned (assigned or pending revocation) by another member is withheld from its new owner
//! (UNRELEASED_PARTITIONS) until it is free. A member that does not revoke within its
//! rebalance timeout is fenced; one that stops heartbeating for
//! `group.consumer.session.timeout.ms` is removed.
//!
//! A consumer group lives in the coordinator's group map as a [`Group`] whose `consumer` is
//! set: its committed offsets stay where every offset API looks for them, and its classic
//! part is never used (it stays Empty, without members).

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::primitives::Uuid;
use kafka_protocol::ErrorCode;

use super::assignor::{self, Assignment, AssignorMember};
use super::timer::{TimerKey, TimerTask};
use super::{Coordinator, Group};

/// The member epoch of a member leaving the group.
pub(crate) const LEAVE_GROUP_MEMBER_EPOCH: i32 = -1;
/// The member epoch of a static member leaving temporarily (it may come back with its
/// instance id and get its assignment back).
pub(crate) const LEAVE_GROUP_STATIC_MEMBER_EPOCH: i32 = -2;

/// Where a member is in its reconciliation (Kafka's `MemberState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MemberState {
    /// Has its target assignment (or everything of it that is free) at the assignment epoch.
    Stable,
    /// Must acknowledge revoked partitions before it moves on.
    UnrevokedPartitions,
    /// Waits for partitions that other members still own.
    UnreleasedPartitions,
}

impl MemberState {
    /// Kafka's name.
    pub fn name(self) -> &'static str {
        match self {
            MemberState::Stable => "stable",
            MemberState::UnrevokedPartitions => "unrevoked_partitions",
            MemberState::UnreleasedPartitions => "unreleased_partitions",
        }
    }
}

/// A consumer group's state, derived from its epochs and members (Kafka's
/// `ConsumerGroup.ConsumerGroupState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConsumerGroupState {
    Empty,
    /// The group epoch is ahead of the target assignment.
    Assigning,
    /// Some member has not reached the target assignment.
    Reconciling,
    Stable,
}

impl ConsumerGroupState {
    /// Kafka's name, as ListGroups and ConsumerGroupDescribe report it.
    pub fn name(self) -> &'static str {
        match self {
            ConsumerGroupState::Empty => "Empty",
            ConsumerGroupState::Assigning => "Assigning",
            ConsumerGroupState::Reconciling => "Reconciling",
            ConsumerGroupState::Stable => "Stable",
        }
    }
}

/// A member of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsumerMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// The topics the member consumes: its names and what its regex matched (existing or
    /// not), as of its last heartbeat or the last topic change.
    pub resolved_topics: BTreeSet<String>,
    pub state: MemberState,
    pub epoch: i32,
    pub previous_epoch: i32,
    /// Partitions the member owns now.
    pub assigned: Assignment,
    /// Partitions the member must give up before it can move to a later epoch.
    pub pending_revocation: Assignment,
}

impl ConsumerMember {
    /// A member that has just joined: epoch 0, nothing assigned.
    pub fn new(id: String) -> Self {
        ConsumerMember {
            id,
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            rebalance_timeout_ms: -1,
            subscribed_topic_names: Vec::new(),
            subscribed_topic_regex: None,
            server_assignor: None,
            resolved_topics: BTreeSet::new(),
            state: MemberState::Stable,
            epoch: 0,
            previous_epoch: -1,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
        }
    }

    /// Kafka's `isReconciledTo`.
    pub fn is_reconciled_to(&self, epoch: i32) -> bool {
        self.state == MemberState::Stable && self.epoch == epoch
    }
}

/// A subscribed topic as the group last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TopicMeta {
    pub id: Uuid,
    pub partitions: i32,
}

/// Every topic of the cluster by name (what the coordinator's metadata image is in Kafka).
pub(crate) type TopicsView = BTreeMap<String, TopicMeta>;

/// A consumer group (Kafka's `ConsumerGroup`).
#[derive(Debug, Default)]
pub(crate) struct ConsumerGroup {
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub members: BTreeMap<String, ConsumerMember>,
    /// Instance id -> member id.
    pub static_members: BTreeMap<String, String>,
    /// Member id -> its target assignment at `assignment_epoch`.
    pub target: BTreeMap<String, Assignment>,
    /// The subscribed topics that exist, with their ids and partition counts: a change bumps
    /// the group epoch.
    pub subscription_metadata: BTreeMap<String, TopicMeta>,
    /// The members' regexes, compiled once (pruned to those in use after each heartbeat).
    regexes: BTreeMap<String, regex::Regex>,
}

impl ConsumerGroup {
    /// The state Kafka derives (`maybeUpdateGroupState`).
    pub fn state(&self) -> ConsumerGroupState {
        if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.group_epoch > self.assignment_epoch {
            ConsumerGroupState::Assigning
        } else if self.members.values().any(|m| !m.is_reconciled_to(self.assignment_epoch)) {
            ConsumerGroupState::Reconciling
        } else {
            ConsumerGroupState::Stable
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Whether any member consumes `topic` (offsets of such topics do not expire and cannot
    /// be deleted).
    pub fn is_subscribed_to_topic(&self, topic: &str) -> bool {
        self.members.values().any(|m| m.resolved_topics.contains(topic))
    }

    /// The assignor the members prefer most (Kafka's `computePreferredServerAssignor`: the
    /// one most members name, ties to the first in name order), else the default.
    pub fn preferred_assignor(&self, default: &str) -> String {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = &m.server_assignor {
                *votes.entry(a.as_str()).or_default() += 1;
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for (name, n) in votes {
            if best.map_or(true, |(_, most)| n > most) {
                best = Some((name, n));
            }
        }
        best.map_or_else(|| default.to_string(), |(name, _)| name.to_string())
    }

    /// The epoch of the member owning a partition (assigned or pending revocation), or -1 if
    /// it is free (Kafka's `currentPartitionEpoch`).
    fn partition_epochs(&self) -> BTreeMap<(Uuid, i32), i32> {
        let mut owners = BTreeMap::new();
        for m in self.members.values() {
            for (t, parts) in m.assigned.iter().chain(m.pending_revocation.iter()) {
                for p in parts {
                    owners.insert((*t, *p), m.epoch);
                }
            }
        }
        owners
    }

    /// Recomputes the subscription metadata from the members' resolved topics.
    fn compute_subscription_metadata(&self, topics: &TopicsView) -> BTreeMap<String, TopicMeta> {
        self.members
            .values()
            .flat_map(|m| m.resolved_topics.iter())
            .filter_map(|name| topics.get(name).map(|t| (name.clone(), *t)))
            .collect()
    }

    /// Runs the assignor for a new target at `epoch`.
    fn compute_target(&mut self, epoch: i32, assignor_name: &str) {
        let ids: BTreeMap<&String, Uuid> =
            self.subscription_metadata.iter().map(|(name, meta)| (name, meta.id)).collect();
        let partitions: BTreeMap<Uuid, i32> =
            self.subscription_metadata.values().map(|meta| (meta.id, meta.partitions)).collect();
        let members: Vec<AssignorMember<'_>> = self
            .members
            .values()
            .map(|m| AssignorMember {
                id: &m.id,
                topics: m.resolved_topics.iter().filter_map(|t| ids.get(t).copied()).collect(),
                previous: self.target.get(&m.id),
            })
            .collect();
        let target = assignor::assign(assignor_name, &members, &partitions);
        tracing::info!(epoch, assignor = assignor_name, "computed a new target assignment");
        self.target = target;
        self.assignment_epoch = epoch;
    }
}

/// Kafka's `CurrentAssignmentBuilder.build`: the member's next step towards `target` at
/// `target_epoch`. `owner_epoch` gives the epoch of the member that owns a partition, -1 if
/// it is free; `owned` is what the member said it owns (`None`: it did not say).
pub(crate) fn reconcile(
    member: &ConsumerMember,
    target_epoch: i32,
    target: &Assignment,
    owner_epoch: &dyn Fn(Uuid, i32) -> i32,
    owned: Option<&Assignment>,
) -> ConsumerMember {
    match member.state {
        MemberState::Stable => {
            if member.epoch != target_epoch {
                next_assignment(member, member.epoch, target_epoch, target, owner_epoch, owned)
            } else {
                member.clone()
            }
        }
        MemberState::UnrevokedPartitions => {
            if owns_any(owned, &member.pending_revocation) {
                return member.clone();
            }
            next_assignment(member, member.epoch.saturating_add(1), target_epoch, target, owner_epoch, owned)
        }
        MemberState::UnreleasedPartitions => {
            next_assignment(member, member.epoch, target_epoch, target, owner_epoch, owned)
        }
    }
}

/// Whether the member (by its owned partitions) still owns any of `revoking`; not saying
/// counts as owning.
fn owns_any(owned: Option<&Assignment>, revoking: &Assignment) -> bool {
    let Some(owned) = owned else { return true };
    owned.iter().any(|(t, parts)| revoking.get(t).is_some_and(|r| parts.iter().any(|p| r.contains(p))))
}

fn set_epoch(m: &mut ConsumerMember, epoch: i32) {
    m.previous_epoch = m.epoch;
    m.epoch = epoch;
}

fn next_assignment(
    member: &ConsumerMember,
    member_epoch: i32,
    target_epoch: i32,
    target: &Assignment,
    owner_epoch: &dyn Fn(Uuid, i32) -> i32,
    owned: Option<&Assignment>,
) -> ConsumerMember {
    let mut has_unreleased = false;
    let mut assigned = Assignment::new();
    let mut revoking = Assignment::new();
    let mut adding = Assignment::new();
    let topics: BTreeSet<Uuid> = target.keys().chain(member.assigned.keys()).copied().collect();
    let empty = BTreeSet::new();
    for topic in topics {
        let want = target.get(&topic).unwrap_or(&empty);
        let have = member.assigned.get(&topic).unwrap_or(&empty);
        let keep: BTreeSet<i32> = have.intersection(want).copied().collect();
        let revoke: BTreeSet<i32> = have.difference(&keep).copied().collect();
        let mut add: BTreeSet<i32> = want.difference(&keep).copied().collect();
        let before = add.len();
        add.retain(|p| owner_epoch(topic, *p) == -1);
        has_unreleased |= add.len() != before;
        if !keep.is_empty() {
            assigned.insert(topic, keep);
        }
        if !revoke.is_empty() {
            revoking.insert(topic, revoke);
        }
        if !add.is_empty() {
            adding.insert(topic, add);
        }
    }
    let mut next = member.clone();
    if !revoking.is_empty() && owns_any(owned, &revoking) {
        // Revoke first: the member stays at its epoch until it acknowledges.
        next.state = MemberState::UnrevokedPartitions;
        set_epoch(&mut next, member_epoch);
        next.assigned = assigned;
        next.pending_revocation = revoking;
        return next;
    }
    for (t, parts) in adding {
        assigned.entry(t).or_default().extend(parts);
    }
    next.state = if has_unreleased { MemberState::UnreleasedPartitions } else { MemberState::Stable };
    set_epoch(&mut next, target_epoch);
    next.assigned = assigned;
    next.pending_revocation = Assignment::new();
    next
}

/// A ConsumerGroupHeartbeat as the coordinator sees it (validated by the handler).
#[derive(Debug, Clone, Default)]
pub(crate) struct CgHeartbeat {
    pub group_id: String,
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topic_names: Option<Vec<String>>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub owned: Option<Assignment>,
}

/// A successful heartbeat's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CgAnswer {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// Sent on a full request or when the member's assignment changed.
    pub assignment: Option<Assignment>,
}

/// An error answer: the code and Kafka's message.
pub(crate) type CgError = (ErrorCode, String);

fn err(code: ErrorCode, message: impl Into<String>) -> CgError {
    (code, message.into())
}

/// Compiles a subscription regex as Kafka matches it (the whole topic name).
pub(crate) fn compile_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("^(?:{pattern})$"))
}

/// The topics a member consumes: its names, and the existing topics its regex matches.
fn resolve_topics(
    m: &ConsumerMember,
    topics: &TopicsView,
    regexes: &mut BTreeMap<String, regex::Regex>,
) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = m.subscribed_topic_names.iter().cloned().collect();
    let Some(pattern) = m.subscribed_topic_regex.as_deref().filter(|r| !r.is_empty()) else { return out };
    if !regexes.contains_key(pattern) {
        // The handler checked that it compiles; one that does not matches nothing.
        let Ok(re) = compile_regex(pattern) else { return out };
        regexes.insert(pattern.to_string(), re);
    }
    if let Some(re) = regexes.get(pattern) {
        out.extend(topics.keys().filter(|t| re.is_match(t)).cloned());
    }
    out
}

impl Coordinator {
    /// The consumer group `id`, if the group is one.
    pub fn consumer_group(&self, id: &str) -> Option<&ConsumerGroup> {
        self.groups.get(id).and_then(|g| g.consumer.as_deref())
    }

    /// Kafka's member ids for consumer groups: a random `Uuid` in Kafka's base64 form.
    fn generate_consumer_member_id(&mut self) -> String {
        let (a, b) = (self.ids.next_u64(), self.ids.next_u64());
        Uuid::from_u64_pair(a, b).to_string()
    }

    /// ConsumerGroupHeartbeat: join (epoch 0), heartbeat, leave (-1) or static leave (-2).
    pub fn consumer_heartbeat(
        &mut self,
        now: i64,
        coordinator: i32,
        topics: &TopicsView,
        req: CgHeartbeat,
    ) -> Result<CgAnswer, CgError> {
        if req.member_epoch == LEAVE_GROUP_MEMBER_EPOCH || req.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
            return self.consumer_leave(&req);
        }
        self.get_or_create_consumer_group(now, coordinator, &req.group_id, req.member_epoch == 0)?;
        let max_size = self.config.consumer_max_size;
        let interval = self.config.consumer_heartbeat_interval_ms;
        let session = i64::from(self.config.consumer_session_timeout_ms);
        let default_assignor = self.config.consumer_assignors.first().cloned().unwrap_or_else(|| "uniform".into());
        let member_id =
            if req.member_id.is_empty() { self.generate_consumer_member_id() } else { req.member_id.clone() };
        let Coordinator { groups, timers, .. } = self;
        let Some(group) = groups.get_mut(&req.group_id).and_then(|g| g.consumer.as_deref_mut()) else {
            return Err(err(ErrorCode::GroupIdNotFound, format!("Consumer group {} not found.", req.group_id)));
        };
        if group.members.len() >= max_size && !group.members.contains_key(&member_id) {
            return Err(err(
                ErrorCode::GroupMaxSizeReached,
                format!("The consumer group has reached its maximum capacity of {max_size} members."),
            ));
        }
        let create = req.member_epoch == 0;
        // The member as it was (or a new one), and the static member it replaces.
        let mut replaced: Option<String> = None;
        let member = match &req.instance_id {
            None => match group.members.get(&member_id) {
                Some(m) => {
                    check_member_epoch(m, req.member_epoch, req.owned.as_ref())?;
                    m.clone()
                }
                None if create => ConsumerMember::new(member_id.clone()),
                None => {
                    return Err(err(
                        ErrorCode::UnknownMemberId,
                        format!("Member {member_id} is not a member of group {}.", req.group_id),
                    ))
                }
            },
            Some(instance) => {
                let existing = group.static_members.get(instance).and_then(|id| group.members.get(id));
                match existing {
                    None if create => ConsumerMember::new(member_id.clone()),
                    Some(old) if create => {
                        if old.epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH {
                            return Err(err(
                                ErrorCode::UnreleasedInstanceId,
                                format!(
                                    "Static member {member_id} with instance id {instance} cannot join the group \
                                     because the instance id is owned by {} member.",
                                    old.id
                                ),
                            ));
                        }
                        // The static member comes back: its assignment under a new member id.
                        let mut m = old.clone();
                        m.id = member_id.clone();
                        m.epoch = 0;
                        m.previous_epoch = 0;
                        replaced = Some(old.id.clone());
                        m
                    }
                    None => return Err(err(ErrorCode::UnknownMemberId, format!("Instance id {instance} is unknown."))),
                    Some(old) => {
                        if old.id != member_id {
                            return Err(err(
                                ErrorCode::FencedInstanceId,
                                format!(
                                    "Static member {member_id} with instance id {instance} was fenced by member {}.",
                                    old.id
                                ),
                            ));
                        }
                        check_member_epoch(old, req.member_epoch, req.owned.as_ref())?;
                        old.clone()
                    }
                }
            }
        };
        let is_new = !group.members.contains_key(&member.id);
        if is_new && replaced.is_none() {
            tracing::info!(group = %req.group_id, member = %member.id, "member joins the consumer group");
        }
        // 1. The member with what the request changed.
        let mut updated = member.clone();
        if let Some(i) = &req.instance_id {
            updated.instance_id = Some(i.clone());
        }
        if let Some(r) = &req.rack_id {
            updated.rack_id = Some(r.clone());
        }
        if req.rebalance_timeout_ms != -1 {
            updated.rebalance_timeout_ms = req.rebalance_timeout_ms;
        }
        if let Some(a) = &req.server_assignor {
            updated.server_assignor = Some(a.clone());
        }
        if let Some(names) = &req.subscribed_topic_names {
            updated.subscribed_topic_names = names.clone();
        }
        if let Some(re) = &req.subscribed_topic_regex {
            updated.subscribed_topic_regex = Some(re.clone()).filter(|r| !r.is_empty());
        }
        updated.client_id = req.client_id.clone();
        updated.client_host = req.client_host.clone();
        let mut bump = group.group_epoch == 0
            || updated.subscribed_topic_names != member.subscribed_topic_names
            || updated.subscribed_topic_regex != member.subscribed_topic_regex;
        // Every member's regex is looked at again: a new topic may match.
        updated.resolved_topics = resolve_topics(&updated, topics, &mut group.regexes);
        if let Some(old) = &replaced {
            // The new id inherits the old one's target assignment.
            let old_target = group.target.remove(old);
            remove_member(group, old);
            if let Some(t) = old_target {
                group.target.insert(updated.id.clone(), t);
            }
        }
        if let Some(i) = &updated.instance_id {
            group.static_members.insert(i.clone(), updated.id.clone());
        }
        group.members.insert(updated.id.clone(), updated.clone());
        let ConsumerGroup { members, regexes, .. } = &mut *group;
        for m in members.values_mut() {
            m.resolved_topics = resolve_topics(m, topics, regexes);
        }
        let in_use: BTreeSet<&str> = members.values().filter_map(|m| m.subscribed_topic_regex.as_deref()).collect();
        regexes.retain(|pattern, _| in_use.contains(pattern.as_str()));
        let metadata = group.compute_subscription_metadata(topics);
        if metadata != group.subscription_metadata {
            group.subscription_metadata = metadata;
            bump = true;
        }
        if bump {
            group.group_epoch = group.group_epoch.saturating_add(1);
            tracing::info!(group = %req.group_id, epoch = group.group_epoch, "bumped the group epoch");
        }
        // 2. A new target assignment if the group epoch moved past it.
        if group.group_epoch > group.assignment_epoch {
            let name = group.preferred_assignor(&default_assignor);
            group.compute_target(group.group_epoch, &name);
        }
        // 3. One reconciliation step.
        let target = group.target.get(&updated.id).cloned().unwrap_or_default();
        let mut current = group.members.get(&updated.id).cloned().unwrap_or(updated);
        if !current.is_reconciled_to(group.assignment_epoch) {
            let owners = group.partition_epochs();
            let owner_epoch = |t: Uuid, p: i32| owners.get(&(t, p)).copied().unwrap_or(-1);
            let next = reconcile(&current, group.assignment_epoch, &target, &owner_epoch, req.owned.as_ref());
            if next != current {
                tracing::debug!(
                    group = %req.group_id, member = %next.id, epoch = next.epoch, state = next.state.name(),
                    "member assignment moved"
                );
                let key = TimerKey::ConsumerRebalance(req.group_id.clone(), next.id.clone());
                if next.state == MemberState::UnrevokedPartitions {
                    timers.schedule(
                        key,
                        now.saturating_add(i64::from(next.rebalance_timeout_ms.max(0))),
                        TimerTask::RevocationTimeout { epoch: next.epoch },
                    );
                } else {
                    timers.cancel(&key);
                }
            }
            current = next;
            group.members.insert(current.id.clone(), current.clone());
        }
        timers.schedule(
            TimerKey::ConsumerSession(req.group_id.clone(), current.id.clone()),
            now.saturating_add(session),
            TimerTask::FenceMember,
        );
        let full = req.member_epoch == 0
            || (req.rebalance_timeout_ms != -1
                && (req.subscribed_topic_names.is_some() || req.subscribed_topic_regex.is_some())
                && req.owned.is_some());
        let assignment = (full || current.assigned != member.assigned).then(|| current.assigned.clone());
        Ok(CgAnswer { member_id: current.id, member_epoch: current.epoch, heartbeat_interval_ms: interval, assignment })
    }

    /// A consumer group to heartbeat into: the existing one, or (when joining) a new one; an
    /// empty classic group is replaced (its offsets kept, as Kafka keeps offsets apart from
    /// the group), a classic group with members is GROUP_ID_NOT_FOUND (Kafka with
    /// `group.consumer.migration.policy=disabled`).
    fn get_or_create_consumer_group(
        &mut self,
        now: i64,
        coordinator: i32,
        group_id: &str,
        create: bool,
    ) -> Result<(), CgError> {
        match self.groups.get_mut(group_id) {
            Some(g) if g.consumer.is_some() => Ok(()),
            Some(g) if create && g.is(super::GroupState::Empty) => {
                tracing::info!(group = group_id, "an empty classic group becomes a consumer group");
                let mut fresh = Group::new(group_id.to_string(), now, coordinator);
                fresh.offsets = std::mem::take(&mut g.offsets);
                fresh.pending_txn_offsets = std::mem::take(&mut g.pending_txn_offsets);
                fresh.consumer = Some(Box::default());
                *g = fresh;
                Ok(())
            }
            Some(_) => Err(err(ErrorCode::GroupIdNotFound, format!("Group {group_id} is not a consumer group"))),
            None if create => {
                let mut g = Group::new(group_id.to_string(), now, coordinator);
                g.consumer = Some(Box::default());
                self.groups.insert(group_id.to_string(), g);
                Ok(())
            }
            None => Err(err(ErrorCode::GroupIdNotFound, format!("Consumer group {group_id} not found."))),
        }
    }

    /// A member leaves (-1) or a static member leaves for now (-2).
    fn consumer_leave(&mut self, req: &CgHeartbeat) -> Result<CgAnswer, CgError> {
        let Coordinator { groups, timers, .. } = self;
        let group = match groups.get_mut(&req.group_id) {
            Some(g) => g.consumer.as_deref_mut().ok_or_else(|| {
                err(ErrorCode::GroupIdNotFound, format!("Group {} is not a consumer group", req.group_id))
            })?,
            None => return Err(err(ErrorCode::GroupIdNotFound, format!("Consumer group {} not found.", req.group_id))),
        };
        let answer = |epoch: i32| CgAnswer {
            member_id: req.member_id.clone(),
            member_epoch: epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        };
        let member_id = match &req.instance_id {
            None => {
                if !group.members.contains_key(&req.member_id) {
                    return Err(err(
                        ErrorCode::UnknownMemberId,
                        format!("Member {} is not a member of group {}.", req.member_id, req.group_id),
                    ));
                }
                req.member_id.clone()
            }
            Some(instance) => {
                let Some(existing) = group.static_members.get(instance).cloned() else {
                    return Err(err(ErrorCode::UnknownMemberId, format!("Instance id {instance} is unknown.")));
                };
                if existing != req.member_id {
                    return Err(err(
                        ErrorCode::FencedInstanceId,
                        format!(
                            "Static member {} with instance id {instance} was fenced by member {existing}.",
                            req.member_id
                        ),
                    ));
                }
                if req.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
                    tracing::info!(group = %req.group_id, member = %existing, "static member left for now");
                    if let Some(m) = group.members.get_mut(&existing) {
                        m.epoch = LEAVE_GROUP_STATIC_MEMBER_EPOCH;
                        m.pending_revocation.clear();
                    }
                    return Ok(answer(LEAVE_GROUP_STATIC_MEMBER_EPOCH));
                }
                existing
            }
        };
        tracing::info!(group = %req.group_id, member = %member_id, "member left the consumer group");
        fence(group, timers, &req.group_id, &member_id);
        Ok(answer(req.member_epoch))
    }

    /// A consumer group's timer fired.
    pub(super) fn run_consumer_timer(&mut self, group_id: &str, member_id: &str, task: TimerTask) {
        let Coordinator { groups, timers, .. } = self;
        let Some(group) = groups.get_mut(group_id).and_then(|g| g.consumer.as_deref_mut()) else { return };
        let Some(member) = group.members.get(member_id) else { return };
        match task {
            TimerTask::FenceMember => {
                tracing::info!(group = group_id, member = member_id, "member fenced: its session expired");
            }
            TimerTask::RevocationTimeout { epoch } => {
                if member.epoch != epoch {
                    return;
                }
                tracing::info!(
                    group = group_id,
                    member = member_id,
                    epoch,
                    "member fenced: it did not revoke its partitions within its rebalance timeout"
                );
            }
            _ => return,
        }
        fence(group, timers, group_id, member_id);
    }

    /// The coordinator of a consumer group moved: sessions restart from now (Kafka's
    /// `onLoaded`), and members still revoking get their rebalance timeout again.
    pub(super) fn consumer_group_moved(&mut self, group_id: &str, now: i64) {
        let session = i64::from(self.config.consumer_session_timeout_ms);
        let Coordinator { groups, timers, .. } = self;
        let Some(group) = groups.get(group_id).and_then(|g| g.consumer.as_deref()) else { return };
        for m in group.members.values() {
            timers.schedule(
                TimerKey::ConsumerSession(group_id.to_string(), m.id.clone()),
                now.saturating_add(session),
                TimerTask::FenceMember,
            );
            if m.state == MemberState::UnrevokedPartitions {
                timers.schedule(
                    TimerKey::ConsumerRebalance(group_id.to_string(), m.id.clone()),
                    now.saturating_add(i64::from(m.rebalance_timeout_ms.max(0))),
                    TimerTask::RevocationTimeout { epoch: m.epoch },
                );
            }
        }
    }

    /// Cancels every timer of a consumer group's members (the group is being removed).
    pub(super) fn cancel_consumer_timers(&mut self, group_id: &str) {
        let Coordinator { groups, timers, .. } = self;
        let Some(group) = groups.get(group_id).and_then(|g| g.consumer.as_deref()) else { return };
        for id in group.members.keys() {
            timers.cancel(&TimerKey::ConsumerSession(group_id.to_string(), id.clone()));
            timers.cancel(&TimerKey::ConsumerRebalance(group_id.to_string(), id.clone()));
        }
    }

    /// A JoinGroup for a group that is a consumer group: an empty one becomes a classic group
    /// (offsets kept); one with members refuses it with INCONSISTENT_GROUP_PROTOCOL.
    pub fn classic_join_to_consumer_group(&mut self, now: i64, group_id: &str) -> Result<(), ErrorCode> {
        let Some(g) = self.groups.get_mut(group_id) else { return Ok(()) };
        let Some(cg) = g.consumer.as_deref() else { return Ok(()) };
        if !cg.is_empty() {
            return Err(ErrorCode::InconsistentGroupProtocol);
        }
        tracing::info!(group = group_id, "an empty consumer group becomes a classic group");
        let mut fresh = Group::new(group_id.to_string(), now, g.coordinator);
        fresh.offsets = std::mem::take(&mut g.offsets);
        fresh.pending_txn_offsets = std::mem::take(&mut g.pending_txn_offsets);
        *g = fresh;
        Ok(())
    }

    /// Kafka's `ConsumerGroup.validateOffsetCommit`: generation -1 from outside the group
    /// while it is empty, else a member at its current epoch (STALE_MEMBER_EPOCH otherwise;
    /// ILLEGAL_GENERATION for transactional commits).
    pub(super) fn validate_consumer_commit(
        group: &ConsumerGroup,
        member_id: &str,
        epoch: i32,
        transactional: bool,
        version: i16,
    ) -> Result<(), ErrorCode> {
        if epoch < 0 && group.is_empty() {
            return Ok(());
        }
        let member = group.members.get(member_id).ok_or(ErrorCode::UnknownMemberId)?;
        if !transactional && version < 9 {
            return Err(ErrorCode::UnsupportedVersion);
        }
        if epoch != member.epoch {
            return Err(if transactional { ErrorCode::IllegalGeneration } else { ErrorCode::StaleMemberEpoch });
        }
        Ok(())
    }

    /// Kafka's `ConsumerGroup.validateOffsetFetch` (OffsetFetch v9 with a member id or epoch).
    pub fn validate_offset_fetch(&self, group_id: &str, member_id: Option<&str>, epoch: i32) -> Result<(), ErrorCode> {
        let Some(group) = self.consumer_group(group_id) else { return Ok(()) };
        if member_id.is_none() && epoch < 0 {
            return Ok(());
        }
        let member_id = member_id.unwrap_or_default();
        let member = group.members.get(member_id).ok_or(ErrorCode::UnknownMemberId)?;
        if member.epoch != epoch {
            return Err(ErrorCode::StaleMemberEpoch);
        }
        Ok(())
    }
}

/// Kafka's `throwIfConsumerGroupMemberEpochIsInvalid`: a member ahead of the coordinator, or
/// behind it other than by the one epoch whose answer may have been lost, is fenced.
fn check_member_epoch(member: &ConsumerMember, received: i32, owned: Option<&Assignment>) -> Result<(), CgError> {
    if received > member.epoch {
        return Err(err(
            ErrorCode::FencedMemberEpoch,
            format!(
                "The consumer group member has a greater member epoch ({received}) than the one known by the group \
                 coordinator ({}). The member must abandon all its partitions and rejoin.",
                member.epoch
            ),
        ));
    }
    if received < member.epoch && (received != member.previous_epoch || !is_subset(owned, &member.assigned)) {
        return Err(err(
            ErrorCode::FencedMemberEpoch,
            format!(
                "The consumer group member has a smaller member epoch ({received}) than the one known by the group \
                 coordinator ({}). The member must abandon all its partitions and rejoin.",
                member.epoch
            ),
        ));
    }
    Ok(())
}

/// Whether the owned partitions are all in `assigned` (not saying is not a subset).
fn is_subset(owned: Option<&Assignment>, assigned: &Assignment) -> bool {
    let Some(owned) = owned else { return false };
    owned.iter().all(|(t, parts)| assigned.get(t).is_some_and(|a| parts.iter().all(|p| a.contains(p))))
}

/// Takes a member out of the group's maps (its partitions become free).
fn remove_member(group: &mut ConsumerGroup, member_id: &str) {
    if let Some(m) = group.members.remove(member_id) {
        if let Some(i) = &m.instance_id {
            if group.static_members.get(i).is_some_and(|id| id == member_id) {
                group.static_members.remove(i);
            }
        }
    }
    group.target.remove(member_id);
}

/// Kafka's `consumerGroupFenceMember`: the member is removed, the subscription metadata
/// loses the topics only it consumed, and the group epoch is bumped so that the others get
/// its partitions.
fn fence(group: &mut ConsumerGroup, timers: &mut super::timer::Timers, group_id: &str, member_id: &str) {
    remove_member(group, member_id);
    let still: BTreeSet<&String> = group.members.values().flat_map(|m| m.resolved_topics.iter()).collect();
    group.subscription_metadata.retain(|name, _| still.contains(name));
    group.group_epoch = group.group_epoch.saturating_add(1);
    timers.cancel(&TimerKey::ConsumerSession(group_id.to_string(), member_id.to_string()));
    timers.cancel(&TimerKey::ConsumerRebalance(group_id.to_string(), member_id.to_string()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::groups::GroupConfig;

    const T: Uuid = Uuid([7; 16]);

    fn topics(partitions: i32) -> TopicsView {
        [("t".to_string(), TopicMeta { id: T, partitions })].into()
    }

    fn parts(ps: &[i32]) -> Assignment {
        if ps.is_empty() {
            return Assignment::new();
        }
        [(T, ps.iter().copied().collect())].into()
    }

    fn join(id: &str) -> CgHeartbeat {
        CgHeartbeat {
            group_id: "g".into(),
            member_id: id.into(),
            member_epoch: 0,
            rebalance_timeout_ms: 1000,
            subscribed_topic_names: Some(vec!["t".into()]),
            owned: Some(Assignment::new()),
            ..Default::default()
        }
    }

    fn beat(id: &str, epoch: i32, owned: &[i32]) -> CgHeartbeat {
        CgHeartbeat {
            group_id: "g".into(),
            member_id: id.into(),
            member_epoch: epoch,
            rebalance_timeout_ms: -1,
            owned: Some(parts(owned)),
            ..Default::default()
        }
    }

    fn group(c: &Coordinator) -> &ConsumerGroup {
        c.consumer_group("g").unwrap()
    }

    fn owned(a: &CgAnswer) -> Vec<i32> {
        a.assignment.as_ref().and_then(|a| a.get(&T)).map(|p| p.iter().copied().collect()).unwrap_or_default()
    }

    #[test]
    fn a_member_joins_gets_everything_and_is_stable() {
        let mut c = Coordinator::new(GroupConfig::default());
        let view = topics(4);
        let a = c.consumer_heartbeat(0, 1, &view, join("a")).unwrap();
        assert_eq!((a.member_id.as_str(), a.member_epoch, a.heartbeat_interval_ms), ("a", 1, 5000));
        assert_eq!(owned(&a), [0, 1, 2, 3]);
        let g = group(&c);
        assert_eq!((g.group_epoch, g.assignment_epoch, g.state()), (1, 1, ConsumerGroupState::Stable));
        // A plain heartbeat at the same epoch changes nothing and carries no assignment.
        let again = c.consumer_heartbeat(1, 1, &view, beat("a", 1, &[0, 1, 2, 3])).unwrap();
        assert_eq!((again.member_epoch, again.assignment), (1, None));
        // v0: an empty member id gets one from the coordinator (Kafka's base64 Uuid).
        let b = c.consumer_heartbeat(2, 1, &view, join("")).unwrap();
        assert_eq!(b.member_id.len(), 22);
    }

    #[test]
    fn partitions_are_revoked_before_they_are_reassigned() {
        let mut c = Coordinator::new(GroupConfig::default());
        let view = topics(4);
        c.consumer_heartbeat(0, 1, &view, join("a")).unwrap();
        // b joins: epoch 2, but a still owns everything, so b gets nothing yet.
        let b = c.consumer_heartbeat(1, 1, &view, join("b")).unwrap();
        assert_eq!(b.member_epoch, 2);
        assert_eq!(owned(&b), Vec::<i32>::new());
        assert_eq!(group(&c).members["b"].state, MemberState::UnreleasedPartitions);
        assert_eq!(group(&c).state(), ConsumerGroupState::Reconciling);
        let b_target: Vec<i32> = group(&c).target["b"][&T].iter().copied().collect();
        assert_eq!(b_target.len(), 2);
        // a is told to give up b's partitions and stays at epoch 1 until it does.
        let a = c.consumer_heartbeat(2, 1, &view, beat("a", 1, &[0, 1, 2, 3])).unwrap();
        assert_eq!(a.member_epoch, 1);
        let a_keeps = owned(&a);
        assert_eq!(a_keeps.len(), 2);
        assert!(a_keeps.iter().all(|p| !b_target.contains(p)));
        assert_eq!(group(&c).members["a"].state, MemberState::UnrevokedPartitions);
        // Still owning them: nothing moves, b still waits.
        let a2 = c.consumer_heartbeat(3, 1, &view, beat("a", 1, &[0, 1, 2, 3])).unwrap();
        assert_eq!((a2.member_epoch, a2.assignment), (1, None));
        let b2 = c.consumer_heartbeat(4, 1, &view, beat("b", 2, &[])).unwrap();
        assert_eq!(owned(&b2), Vec::<i32>::new());
        // a acknowledges: it moves to epoch 2; then b gets the released partitions.
        let a3 = c.consumer_heartbeat(5, 1, &view, beat("a", 1, &a_keeps)).unwrap();
        assert_eq!(a3.member_epoch, 2);
        let b3 = c.consumer_heartbeat(6, 1, &view, beat("b", 2, &[])).unwrap();
        assert_eq!(owned(&b3), b_target);
        assert_eq!(group(&c).state(), ConsumerGroupState::Stable);
    }

    #[test]
    fn epochs_are_checked_and_leaving_frees_partitions() {
        let mut c = Coordinator::new(GroupConfig::default());
        let view = topics(2);
        c.consumer_heartbeat(0, 1, &view, join("a")).unwrap();
        let fenced = |r: Result<CgAnswer, CgError>| r.err().map(|e| e.0);
        assert_eq!(fenced(c.consumer_heartbeat(1, 1, &view, beat("a", 5, &[]))), Some(ErrorCode::FencedMemberEpoch));
        assert_eq!(fenced(c.consumer_heartbeat(1, 1, &view, beat("x", 1, &[]))), Some(ErrorCode::UnknownMemberId));
        // The previous epoch with a subset of the assignment is accepted (a lost answer).
        assert!(c.consumer_heartbeat(1, 1, &view, beat("a", 0, &[0])).is_ok());
        c.consumer_heartbeat(2, 1, &view, join("b")).unwrap();
        assert_eq!(
            fenced(c.consumer_heartbeat(3, 1, &view, beat("b", 0, &[0]))),
            Some(ErrorCode::FencedMemberEpoch),
            "not a subset of b's assignment"
        );
        let left = c.consumer_heartbeat(4, 1, &view, CgHeartbeat { member_epoch: -1, ..beat("a", -1, &[]) }).unwrap();
        assert_eq!(left.member_epoch, -1);
        assert_eq!(group(&c).group_epoch, 3);
        assert_eq!(group(&c).state(), ConsumerGroupState::Assigning);
        let b = c.consumer_heartbeat(5, 1, &view, beat("b", 2, &[])).unwrap();
        assert_eq!((b.member_epoch, owned(&b)), (3, vec![0, 1]));
        assert_eq!(fenced(c.consumer_heartbeat(6, 1, &view, beat("a", 2, &[]))), Some(ErrorCode::UnknownMemberId));
        let none = CgHeartbeat { group_id: "other".into(), ..beat("a", 1, &[]) };
        assert_eq!(fenced(c.consumer_heartbeat(6, 1, &view, none)), Some(ErrorCode::GroupIdNotFound));
    }

    #[test]
    fn sessions_and_revocations_time_out() {
        let mut c = Coordinator::new(GroupConfig::default());
        let view = topics(2);
        c.consumer_heartbeat(0, 1, &view, join("a")).unwrap();
        c.consumer_heartbeat(0, 1, &view, join("b")).unwrap();
        c.consumer_heartbeat(0, 1, &view, beat("a", 1, &[0, 1])).unwrap();
        assert_eq!(group(&c).members["a"].state, MemberState::UnrevokedPartitions);
        // a never acknowledges: fenced after its rebalance timeout (1000 ms).
        c.fire_timers(999);
        assert!(group(&c).members.contains_key("a"));
        c.fire_timers(1000);
        assert!(!group(&c).members.contains_key("a"), "fenced for not revoking");
        // b's session ends 45 s after its last heartbeat.
        c.fire_timers(44_999);
        assert!(group(&c).members.contains_key("b"));
        c.fire_timers(45_000);
        assert_eq!(group(&c).state(), ConsumerGroupState::Empty);
    }

    #[test]
    fn static_members_leave_and_come_back() {
        let mut c = Coordinator::new(GroupConfig::default());
        let view = topics(2);
        let s1 = CgHeartbeat { instance_id: Some("i".into()), ..join("s1") };
        c.consumer_heartbeat(0, 1, &view, s1.clone()).unwrap();
        let s2 = CgHeartbeat { instance_id: Some("i".into()), ..join("s2") };
        assert_eq!(
            c.consumer_heartbeat(1, 1, &view, s2.clone()).err().map(|e| e.0),
            Some(ErrorCode::UnreleasedInstanceId)
        );
        let wrong = CgHeartbeat { instance_id: Some("i".into()), ..beat("other", 1, &[]) };
        assert_eq!(c.consumer_heartbeat(1, 1, &view, wrong).err().map(|e| e.0), Some(ErrorCode::FencedInstanceId));
        let leave = CgHeartbeat { member_epoch: -2, instance_id: Some("i".into()), ..beat("s1", -2, &[]) };
        assert_eq!(c.consumer_heartbeat(2, 1, &view, leave).unwrap().member_epoch, -2);
        let epoch = group(&c).group_epoch;
        let back = c.consumer_heartbeat(3, 1, &view, s2).unwrap();
        assert_eq!((back.member_id.as_str(), owned(&back)), ("s2", vec![0, 1]), "the same assignment");
        assert_eq!(group(&c).group_epoch, epoch, "no rebalance");
        assert!(!group(&c).members.contains_key("s1"));
    }

    #[test]
    fn new_partitions_and_regex_matches_bump_the_epoch() {
        let mut c = Coordinator::new(GroupConfig::default());
        let mut view = topics(2);
        let re =
            CgHeartbeat { subscribed_topic_names: None, subscribed_topic_regex: Some("t|u.*".into()), ..join("a") };
        let a = c.consumer_heartbeat(0, 1, &view, re).unwrap();
        assert_eq!(owned(&a), [0, 1]);
        view.insert("t".into(), TopicMeta { id: T, partitions: 3 });
        let a = c.consumer_heartbeat(1, 1, &view, beat("a", 1, &[0, 1])).unwrap();
        assert_eq!((a.member_epoch, owned(&a)), (2, vec![0, 1, 2]));
        let u = Uuid([9; 16]);
        view.insert("u1".into(), TopicMeta { id: u, partitions: 1 });
        view.insert("v".into(), TopicMeta { id: Uuid([3; 16]), partitions: 1 });
        let a = c.consumer_heartbeat(2, 1, &view, beat("a", 2, &[0, 1, 2])).unwrap();
        assert_eq!(a.member_epoch, 3);
        let got = a.assignment.unwrap();
        assert_eq!(got.len(), 2, "t and u1, not v");
        assert!(got.contains_key(&u));
        assert!(group(&c).is_subscribed_to_topic("u1") && !group(&c).is_subscribed_to_topic("v"));
    }

    #[test]
    fn classic_and_consumer_groups_do_not_mix() {
        let mut c = Coordinator::new(GroupConfig::default());
        let view = topics(1);
        c.consumer_heartbeat(0, 1, &view, join("a")).unwrap();
        assert_eq!(c.classic_join_to_consumer_group(1, "g"), Err(ErrorCode::InconsistentGroupProtocol));
        c.consumer_heartbeat(2, 1, &view, CgHeartbeat { member_epoch: -1, ..beat("a", -1, &[]) }).unwrap();
        c.groups.get_mut("g").unwrap().offsets.entry("t".into()).or_default();
        assert_eq!(c.classic_join_to_consumer_group(3, "g"), Ok(()));
        assert!(c.consumer_group("g").is_none(), "now a classic group");
        assert!(c.groups["g"].offsets.contains_key("t"), "offsets kept");
        // An empty classic group becomes a consumer group again on a join.
        assert!(c.consumer_heartbeat(4, 1, &view, join("b")).is_ok());
        assert!(c.consumer_group("g").is_some());
    }

    #[test]
    fn commits_check_the_member_epoch() {
        let mut c = Coordinator::new(GroupConfig::default());
        c.consumer_heartbeat(0, 1, &topics(1), join("a")).unwrap();
        let check = |c: &mut Coordinator, m: &str, e: i32, v: i16| c.validate_offset_commit(0, 1, v, "g", e, m, None);
        assert_eq!(check(&mut c, "a", 1, 9), Ok(()));
        assert_eq!(check(&mut c, "a", 0, 9), Err(ErrorCode::StaleMemberEpoch));
        assert_eq!(check(&mut c, "x", 1, 9), Err(ErrorCode::UnknownMemberId));
        assert_eq!(check(&mut c, "a", 1, 8), Err(ErrorCode::UnsupportedVersion));
        assert_eq!(check(&mut c, "", -1, 9), Err(ErrorCode::UnknownMemberId), "the group is not empty");
        assert_eq!(c.validate_offset_fetch("g", Some("a"), 0), Err(ErrorCode::StaleMemberEpoch));
        assert_eq!(c.validate_offset_fetch("g", None, -1), Ok(()));
        assert_eq!(c.validate_offset_fetch("g", Some("a"), 1), Ok(()));
        assert_eq!(c.delete_group("g"), Err(ErrorCode::NonEmptyGroup));
    }

    #[test]
    fn reconcile_follows_current_assignment_builder() {
        let mut m = ConsumerMember::new("m".into());
        m.epoch = 5;
        m.assigned = parts(&[0, 1]);
        let free = |_: Uuid, _: i32| -1;
        // Nothing to revoke, partition 2 free: straight to the target epoch.
        let next = reconcile(&m, 6, &parts(&[0, 1, 2]), &free, Some(&parts(&[0, 1])));
        assert_eq!((next.epoch, next.previous_epoch, next.state), (6, 5, MemberState::Stable));
        assert_eq!(next.assigned, parts(&[0, 1, 2]));
        // Partition 1 to revoke: stays at 5 until it is not owned any more.
        let next = reconcile(&m, 6, &parts(&[0, 2]), &free, Some(&parts(&[0, 1])));
        assert_eq!((next.epoch, next.state), (5, MemberState::UnrevokedPartitions));
        assert_eq!((next.assigned.clone(), next.pending_revocation.clone()), (parts(&[0]), parts(&[1])));
        let still = reconcile(&next, 6, &parts(&[0, 2]), &free, None);
        assert_eq!(still, next, "not saying what it owns is owning");
        let owned_by_other = |_: Uuid, p: i32| if p == 2 { 4 } else { -1 };
        let done = reconcile(&next, 6, &parts(&[0, 2]), &owned_by_other, Some(&parts(&[0])));
        assert_eq!(
            (done.epoch, done.state, done.assigned.clone()),
            (6, MemberState::UnreleasedPartitions, parts(&[0]))
        );
        let released = reconcile(&done, 6, &parts(&[0, 2]), &free, Some(&parts(&[0])));
        assert_eq!((released.epoch, released.state, released.assigned), (6, MemberState::Stable, parts(&[0, 2])));
    }
}
