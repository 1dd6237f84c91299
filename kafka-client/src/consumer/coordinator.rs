//! Group membership with the classic protocol, and offset commits and lookups (both
//! protocols; the consumer protocol's membership task is in `membership.rs`).
//!
//! The membership task owns the JoinGroup / SyncGroup / Heartbeat state machine. It talks to
//! the group coordinator over a dedicated connection (as the Java client does), so that
//! heartbeats never queue behind long-polling fetches. Work that must run on the
//! application's task (rebalance callbacks, the auto-commit before a revocation) is posted
//! to the shared state as [`AppTask`]s and awaited; `poll`/`recv` run them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest, OffsetFetchRequest, SyncGroupRequest,
};
use kafka_protocol::{ApiKey, ErrorCode};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use super::assignor::{self, Assignor, MemberSubscription, RebalanceProtocol, SubscriptionInput};
use super::config::GroupProtocol;
use super::state::{AppTask, Need, Subscription};
use super::{Shared, TopicPartition};
use crate::client::lock;
use crate::conn::Connection;
use crate::error::{Error, Result};

/// An offset to commit, with optional metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetAndMetadata {
    /// The next offset to consume (one past the last processed record).
    pub offset: i64,
    /// The leader epoch of the last processed record, when known.
    pub leader_epoch: Option<i32>,
    /// Free-form metadata stored with the offset.
    pub metadata: Option<String>,
}

impl OffsetAndMetadata {
    /// An offset without metadata.
    pub fn new(offset: i64) -> Self {
        OffsetAndMetadata { offset, leader_epoch: None, metadata: None }
    }
}

/// The member's identity in the group, for commits and heartbeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub member_id: String,
    /// The generation (classic) or the member epoch (consumer protocol).
    pub generation: i32,
    pub protocol: Option<String>,
}

impl Default for Member {
    fn default() -> Self {
        Member { member_id: String::new(), generation: -1, protocol: None }
    }
}

/// The group side of a consumer.
pub(crate) struct Group {
    pub group_id: String,
    pub instance_id: Option<String>,
    conn: tokio::sync::Mutex<Option<Connection>>,
    pub member: Mutex<Member>,
    /// Asks the membership task to rejoin (new subscription, commit fenced, ...).
    pub rejoin: Notify,
    assignors: Vec<Box<dyn Assignor>>,
    /// Which membership protocol the group uses.
    pub protocol: GroupProtocol,
    /// Bumped by every leave from the application's side (close, unsubscribe), so the
    /// consumer protocol's task knows an answer in flight meanwhile is stale.
    pub leaves: AtomicU64,
}

fn is_coordinator_error(code: ErrorCode) -> bool {
    matches!(code, ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable)
}

impl Group {
    pub(crate) fn new(
        group_id: String,
        instance_id: Option<String>,
        strategies: &[String],
        protocol: GroupProtocol,
    ) -> Result<Group> {
        let assignors = strategies.iter().map(|s| assignor::assignor_by_name(s)).collect::<Result<Vec<_>>>()?;
        Ok(Group {
            group_id,
            instance_id,
            conn: tokio::sync::Mutex::new(None),
            member: Mutex::new(Member::default()),
            rejoin: Notify::new(),
            assignors,
            protocol,
            leaves: AtomicU64::new(0),
        })
    }

    pub(crate) fn member(&self) -> Member {
        lock(&self.member).clone()
    }

    /// The protocol of the preferred assignor (what this member does when it owns
    /// partitions and a rebalance starts).
    fn protocol_of(&self, name: Option<&str>) -> RebalanceProtocol {
        let a = match name {
            Some(n) => self.assignors.iter().find(|a| a.name() == n),
            None => self.assignors.first(),
        };
        a.map_or(RebalanceProtocol::Eager, |a| a.protocol())
    }

    /// The connection to the group coordinator, found and opened if need be.
    pub(crate) async fn coordinator(&self, shared: &Shared) -> Result<Connection> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let c = shared.client.coordinator_connection(&self.group_id, 0).await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Forgets the coordinator (after NOT_COORDINATOR or a lost connection).
    pub(crate) async fn coordinator_dead(&self) {
        if let Some(c) = self.conn.lock().await.take() {
            c.close();
        }
    }

    /// The committed offsets of `partitions` (`None` for a partition without one).
    pub(crate) async fn fetch_committed(
        &self,
        shared: &Shared,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Option<OffsetAndMetadata>>> {
        self.with_retries(shared, || self.try_fetch_committed(shared, partitions)).await
    }

    /// Runs `op` until it succeeds, fails for good, or `default.api.timeout.ms` passes;
    /// forgets the coordinator after errors that say it moved or is unreachable.
    async fn with_retries<T, F, Fut>(&self, shared: &Shared, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let deadline = Instant::now() + shared.config.default_api_timeout;
        let mut attempt = 0u32;
        loop {
            match op().await {
                Ok(r) => return Ok(r),
                Err(e) if retriable(&e) && Instant::now() < deadline => {
                    if e.code().is_some_and(is_coordinator_error) || !matches!(e, Error::Kafka { .. }) {
                        self.coordinator_dead().await;
                    }
                    attempt += 1;
                    tokio::time::sleep(backoff(shared, attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn try_fetch_committed(
        &self,
        shared: &Shared,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Option<OffsetAndMetadata>>> {
        let conn = self.coordinator(shared).await?;
        let version = conn.version(ApiKey::OffsetFetch, 1)?;
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for tp in partitions {
            by_topic.entry(&tp.topic).or_default().push(tp.partition);
        }
        let request = if version >= 8 {
            OffsetFetchRequest {
                groups: vec![OffsetFetchRequestGroup {
                    group_id: self.group_id.clone(),
                    member_id: None,
                    member_epoch: -1,
                    topics: Some(
                        by_topic
                            .into_iter()
                            .map(|(t, p)| OffsetFetchRequestTopics {
                                name: t.to_owned(),
                                partition_indexes: p,
                                ..Default::default()
                            })
                            .collect(),
                    ),
                    ..Default::default()
                }],
                require_stable: true,
                ..Default::default()
            }
        } else {
            OffsetFetchRequest {
                group_id: self.group_id.clone(),
                topics: Some(
                    by_topic
                        .into_iter()
                        .map(|(t, p)| OffsetFetchRequestTopic {
                            name: t.to_owned(),
                            partition_indexes: p,
                            ..Default::default()
                        })
                        .collect(),
                ),
                require_stable: version >= 7,
                ..Default::default()
            }
        };
        let response = conn.request_at(&request, version).await?;
        let mut out = BTreeMap::new();
        let mut put =
            |topic: &str, partition: i32, code: i16, offset: i64, epoch: i32, metadata: Option<String>| -> Result<()> {
                let code = ErrorCode::from_code(code);
                if code != ErrorCode::None {
                    return Err(Error::kafka(code, Some(format!("committed offset of {topic}-{partition}"))));
                }
                let value = (offset >= 0).then(|| OffsetAndMetadata {
                    offset,
                    leader_epoch: (epoch >= 0).then_some(epoch),
                    metadata,
                });
                out.insert(TopicPartition::new(topic, partition), value);
                Ok(())
            };
        if version >= 8 {
            for g in response.groups {
                let code = ErrorCode::from_code(g.error_code);
                if code != ErrorCode::None {
                    return Err(Error::kafka(code, Some(format!("group {}", self.group_id))));
                }
                for t in g.topics {
                    for p in t.partitions {
                        put(
                            &t.name,
                            p.partition_index,
                            p.error_code,
                            p.committed_offset,
                            p.committed_leader_epoch,
                            p.metadata,
                        )?;
                    }
                }
            }
        } else {
            let code = ErrorCode::from_code(response.error_code);
            if code != ErrorCode::None {
                return Err(Error::kafka(code, Some(format!("group {}", self.group_id))));
            }
            for t in response.topics {
                for p in t.partitions {
                    put(
                        &t.name,
                        p.partition_index,
                        p.error_code,
                        p.committed_offset,
                        p.committed_leader_epoch,
                        p.metadata,
                    )?;
                }
            }
        }
        Ok(out)
    }

    /// Commits `offsets` as this member (generation and member id when it is in the group,
    /// as a simple consumer otherwise).
    pub(crate) async fn commit(
        &self,
        shared: &Shared,
        offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>,
    ) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        self.with_retries(shared, || self.try_commit(shared, offsets)).await
    }

    async fn try_commit(&self, shared: &Shared, offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>) -> Result<()> {
        let conn = self.coordinator(shared).await?;
        // KIP-848 members must commit with v9+ (member id and epoch); Kafka refuses older
        // versions from them.
        let min = if self.protocol == GroupProtocol::Consumer { 9 } else { 2 };
        let version = conn.version(ApiKey::OffsetCommit, min)?;
        let member = self.member();
        let in_group = matches!(shared.lock().subscription, Subscription::Topics(_) | Subscription::Pattern(_));
        let (generation, member_id) =
            if in_group { (member.generation, member.member_id.clone()) } else { (-1, String::new()) };
        let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for (tp, o) in offsets {
            topics.entry(&tp.topic).or_default().push(OffsetCommitRequestPartition {
                partition_index: tp.partition,
                committed_offset: o.offset,
                committed_leader_epoch: o.leader_epoch.unwrap_or(-1),
                commit_timestamp: -1,
                committed_metadata: Some(o.metadata.clone().unwrap_or_default()),
                ..Default::default()
            });
        }
        let request = OffsetCommitRequest {
            group_id: self.group_id.clone(),
            generation_id_or_member_epoch: generation,
            member_id,
            group_instance_id: if in_group { self.instance_id.clone() } else { None },
            retention_time_ms: -1,
            topics: topics
                .into_iter()
                .map(|(t, partitions)| OffsetCommitRequestTopic {
                    name: t.to_owned(),
                    partitions,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let response = conn.request_at(&request, version).await?;
        let mut first_error = None;
        for t in &response.topics {
            for p in &t.partitions {
                let code = ErrorCode::from_code(p.error_code);
                if code != ErrorCode::None && first_error.is_none() {
                    first_error = Some((code, format!("{}-{}", t.name, p.partition_index)));
                }
            }
        }
        match first_error {
            None => Ok(()),
            Some((code, at)) => match code {
                // The epoch moved on between reading it and the commit arriving (a heartbeat
                // answered meanwhile): `with_retries` tries again with the current one.
                ErrorCode::StaleMemberEpoch => Err(Error::kafka(code, Some(format!("committing {at}")))),
                ErrorCode::IllegalGeneration
                | ErrorCode::UnknownMemberId
                | ErrorCode::FencedMemberEpoch
                | ErrorCode::RebalanceInProgress => {
                    if code != ErrorCode::RebalanceInProgress {
                        self.rejoin.notify_one();
                    }
                    Err(Error::CommitFailed(format!(
                        "{} ({}): the group has rebalanced since these records were handed out; they may be delivered again to the new owner",
                        code.name(),
                        at
                    )))
                }
                ErrorCode::FencedInstanceId => {
                    Err(Error::kafka(code, Some(format!("static member {:?}", self.instance_id))))
                }
                _ => Err(Error::kafka(code, Some(format!("committing {at}")))),
            },
        }
    }
}

fn retriable(e: &Error) -> bool {
    match e {
        Error::Kafka { code, .. } => {
            code.is_retriable()
                || is_coordinator_error(*code)
                || matches!(code, ErrorCode::UnstableOffsetCommit | ErrorCode::StaleMemberEpoch)
        }
        other => other.is_retriable(),
    }
}

fn backoff(shared: &Shared, attempt: u32) -> Duration {
    let c = &shared.config.client;
    c.retry_backoff.saturating_mul(1u32 << attempt.min(10)).min(c.retry_backoff_max)
}

/// What ended a stable period.
enum Wake {
    Rejoin,
    Lost,
    Closed,
}

/// The membership task. Runs while the consumer is open and subscribed.
pub(crate) async fn run(weak: Weak<Shared>, group: Arc<Group>) {
    let mut owned: BTreeSet<TopicPartition> = BTreeSet::new();
    let mut failures = 0u32;
    loop {
        let Some(shared) = weak.upgrade() else { return };
        if shared.is_closed() {
            return;
        }
        // Wait for a group subscription.
        let topics = match subscribed_topics(&shared) {
            Some(t) => t,
            None => {
                shared.subscription_changed.notified().await;
                continue;
            }
        };
        let version = shared.lock().subscription_version;
        match join_once(&shared, &group, &topics, &mut owned).await {
            Ok(()) => {
                failures = 0;
                match stable(&shared, &group, &topics, &owned, version).await {
                    Wake::Rejoin => {}
                    Wake::Lost => {
                        lose_all(&shared, &group, &mut owned).await;
                    }
                    Wake::Closed => return,
                }
            }
            Err(e) => {
                failures += 1;
                let fatal = matches!(
                    e.code(),
                    Some(
                        ErrorCode::FencedInstanceId
                            | ErrorCode::GroupAuthorizationFailed
                            | ErrorCode::InconsistentGroupProtocol
                            | ErrorCode::GroupMaxSizeReached
                            | ErrorCode::InvalidGroupId
                    )
                );
                if fatal {
                    tracing::error!(group = %group.group_id, error = %e, "cannot join the group");
                    shared.lock().errors.push_back(e);
                    shared.data_ready.notify_one();
                    // Wait for a new subscription before trying again.
                    shared.subscription_changed.notified().await;
                    continue;
                }
                tracing::debug!(group = %group.group_id, error = %e, "join failed; retrying");
                if e.code().is_some_and(is_coordinator_error) || !matches!(e, Error::Kafka { .. }) {
                    group.coordinator_dead().await;
                }
                let pause = backoff(&shared, failures);
                drop(shared);
                tokio::time::sleep(pause).await;
            }
        }
    }
}

pub(crate) fn subscribed_topics(shared: &Shared) -> Option<Vec<String>> {
    let st = shared.lock();
    match &st.subscription {
        Subscription::Topics(t) if !t.is_empty() => Some(t.iter().cloned().collect()),
        Subscription::Pattern(re) => {
            let metadata = shared.client.metadata();
            let mut t: Vec<String> = metadata
                .topics
                .values()
                .filter(|t| !(shared.config.exclude_internal_topics && t.is_internal) && re.is_match(&t.name))
                .filter(|t| t.error == ErrorCode::None)
                .map(|t| t.name.clone())
                .collect();
            t.sort();
            Some(t)
        }
        _ => None,
    }
}

/// Adds newly assigned partitions to the consumer's state, unless the application has
/// unsubscribed since the membership round began (`unsubscribe` cleared the state and the
/// group is being left: partitions added now would be fetched and handed out). Returns
/// whether they were added.
pub(crate) fn add_if_subscribed(shared: &Shared, added: &[TopicPartition]) -> bool {
    let mut st = shared.lock();
    if matches!(st.subscription, Subscription::None) {
        return false;
    }
    for tp in added {
        st.add_partition(tp.clone(), Need::Committed);
    }
    true
}

/// Posts a task to the application and waits for it to run, heartbeating meanwhile is not
/// needed for correctness here: callers hold the generation, and a missed session ends in
/// the member being fenced, which the next heartbeat reports.
pub(crate) async fn run_on_app(shared: &Shared, make: impl FnOnce(oneshot::Sender<()>) -> AppTask) {
    let (tx, rx) = oneshot::channel();
    {
        let mut st = shared.lock();
        st.app_tasks.push_back(make(tx));
    }
    shared.data_ready.notify_one();
    let _ = rx.await;
}

/// Partitions lost (fenced, expired): the listener hears of it, nothing is committed.
async fn lose_all(shared: &Shared, group: &Group, owned: &mut BTreeSet<TopicPartition>) {
    // One guard: the right-hand side's temporary guard would live to the end of the
    // statement, and locking again for the assignment would deadlock on the std mutex.
    {
        let mut member = lock(&group.member);
        let member_id = std::mem::take(&mut member.member_id);
        *member = Member { member_id, ..Member::default() };
    }
    if owned.is_empty() {
        return;
    }
    let lost: Vec<TopicPartition> = std::mem::take(owned).into_iter().collect();
    run_on_app(shared, |tx| AppTask::Lost(lost.clone(), tx)).await;
    remove_partitions(shared, &lost);
}

/// Removes partitions from the assignment (again, if the application's task already did:
/// its callback may have been cancelled with the `poll` future that ran it).
pub(crate) fn remove_partitions(shared: &Shared, parts: &[TopicPartition]) {
    let mut st = shared.lock();
    for tp in parts {
        st.remove_partition(tp);
    }
}

/// One JoinGroup + SyncGroup round, applying the assignment.
async fn join_once(
    shared: &Shared,
    group: &Group,
    topics: &[String],
    owned: &mut BTreeSet<TopicPartition>,
) -> Result<()> {
    let member = group.member();
    // What this member owned before any revocation: the sticky assignor's user data carries it.
    let prior: Vec<TopicPartition> = owned.iter().cloned().collect();
    // Eager members give everything up before joining.
    if !owned.is_empty() && group.protocol_of(member.protocol.as_deref()) == RebalanceProtocol::Eager {
        let revoked: Vec<TopicPartition> = std::mem::take(owned).into_iter().collect();
        run_on_app(shared, |tx| AppTask::Revoke(revoked.clone(), tx)).await;
        remove_partitions(shared, &revoked);
    }
    shared.client.add_topics(topics.iter().map(String::as_str));
    let conn = group.coordinator(shared).await?;
    let version = conn.version(ApiKey::JoinGroup, 0)?;
    let rack = shared.config.client_rack.as_deref();
    let mut protocols = Vec::new();
    for a in &group.assignors {
        let metadata = assignor::encode_subscription(
            a.as_ref(),
            &SubscriptionInput { topics, owned: &prior, generation: member.generation, rack_id: rack },
        )?;
        protocols.push(JoinGroupRequestProtocol { name: a.name().to_owned(), metadata, ..Default::default() });
    }
    let config = &shared.config;
    let rebalance_timeout = config.max_poll_interval;
    let mut member_id = member.member_id.clone();
    let response = loop {
        let request = JoinGroupRequest {
            group_id: group.group_id.clone(),
            session_timeout_ms: ms(config.session_timeout),
            rebalance_timeout_ms: ms(rebalance_timeout),
            member_id: member_id.clone(),
            group_instance_id: group.instance_id.clone(),
            protocol_type: "consumer".to_owned(),
            protocols: protocols.clone(),
            reason: None,
            ..Default::default()
        };
        let timeout = rebalance_timeout + config.client.request_timeout + Duration::from_secs(5);
        let frame = conn.send(&request, version, true, timeout)?.await?;
        let (_, response) =
            kafka_protocol::frame::decode_response::<kafka_protocol::messages::JoinGroupResponse>(frame, version)
                .map_err(|e| conn.protocol_error(e))?;
        match ErrorCode::from_code(response.error_code) {
            ErrorCode::None => break response,
            ErrorCode::MemberIdRequired => {
                member_id = response.member_id.clone();
                lock(&group.member).member_id = member_id.clone();
                continue;
            }
            ErrorCode::UnknownMemberId => {
                member_id.clear();
                *lock(&group.member) = Member::default();
                return Err(Error::kafka(ErrorCode::UnknownMemberId, None));
            }
            code => return Err(Error::kafka(code, Some(format!("joining group {}", group.group_id)))),
        }
    };
    let protocol_name = response.protocol_name.clone().unwrap_or_default();
    let generation = response.generation_id;
    member_id = response.member_id.clone();
    *lock(&group.member) = Member { member_id: member_id.clone(), generation, protocol: Some(protocol_name.clone()) };
    tracing::info!(group = %group.group_id, member = %member_id, generation, leader = response.leader == member_id, protocol = %protocol_name, "joined");

    let assignments = if response.leader == member_id && !response.skip_assignment {
        leader_assign(shared, group, &protocol_name, &response.members).await?
    } else {
        Vec::new()
    };
    let version = conn.version(ApiKey::SyncGroup, 0)?;
    let request = SyncGroupRequest {
        group_id: group.group_id.clone(),
        generation_id: generation,
        member_id: member_id.clone(),
        group_instance_id: group.instance_id.clone(),
        protocol_type: Some("consumer".to_owned()),
        protocol_name: Some(protocol_name.clone()),
        assignments,
        ..Default::default()
    };
    let timeout = rebalance_timeout + config.client.request_timeout;
    let frame = conn.send(&request, version, true, timeout)?.await?;
    let (_, sync) =
        kafka_protocol::frame::decode_response::<kafka_protocol::messages::SyncGroupResponse>(frame, version)
            .map_err(|e| conn.protocol_error(e))?;
    match ErrorCode::from_code(sync.error_code) {
        ErrorCode::None => {}
        code @ (ErrorCode::UnknownMemberId | ErrorCode::IllegalGeneration) => {
            if code == ErrorCode::UnknownMemberId {
                *lock(&group.member) = Member::default();
            } else {
                lock(&group.member).generation = -1;
            }
            if !owned.is_empty() {
                lose_all(shared, group, owned).await;
            }
            return Err(Error::kafka(code, None));
        }
        code => return Err(Error::kafka(code, Some(format!("syncing group {}", group.group_id)))),
    }
    let assigned: BTreeSet<TopicPartition> = assignor::decode_assignment(sync.assignment)?.into_iter().collect();
    tracing::info!(group = %group.group_id, generation, partitions = assigned.len(), "assignment received");

    // Cooperative: revoke what moved away (then rejoin so it can be handed over).
    let revoked: Vec<TopicPartition> = owned.difference(&assigned).cloned().collect();
    if !revoked.is_empty() {
        for tp in &revoked {
            owned.remove(tp);
        }
        run_on_app(shared, |tx| AppTask::Revoke(revoked.clone(), tx)).await;
        remove_partitions(shared, &revoked);
    }
    let added: Vec<TopicPartition> = assigned.difference(owned).cloned().collect();
    if !add_if_subscribed(shared, &added) {
        // The application unsubscribed meanwhile: nothing more is taken on.
        return Ok(());
    }
    owned.extend(added.iter().cloned());
    shared.fetcher_wake.notify_one();
    run_on_app(shared, |tx| AppTask::Assigned(added, tx)).await;
    if !revoked.is_empty() {
        group.rejoin.notify_one();
    }
    Ok(())
}

async fn leader_assign(
    shared: &Shared,
    group: &Group,
    protocol: &str,
    members: &[kafka_protocol::messages::join_group_response::JoinGroupResponseMember],
) -> Result<Vec<SyncGroupRequestAssignment>> {
    let Some(assignor) = group.assignors.iter().find(|a| a.name() == protocol) else {
        return Err(Error::kafka(ErrorCode::InconsistentGroupProtocol, Some(format!("unknown assignor {protocol}"))));
    };
    let mut subs: Vec<MemberSubscription> = Vec::new();
    for m in members {
        match assignor::decode_subscription(&m.member_id, m.group_instance_id.as_deref(), m.metadata.clone()) {
            Ok(s) => subs.push(s),
            Err(e) => {
                tracing::warn!(member = %m.member_id, error = %e, "undecodable subscription; the member gets nothing");
                subs.push(MemberSubscription {
                    member_id: m.member_id.clone(),
                    generation_id: -1,
                    ..Default::default()
                });
            }
        }
    }
    let all_topics: BTreeSet<String> = subs.iter().flat_map(|s| s.topics.iter().cloned()).collect();
    shared.client.add_topics(all_topics.iter().map(String::as_str));
    let mut metadata = shared.client.metadata();
    if all_topics.iter().any(|t| metadata.topic(t).is_none()) {
        metadata = shared.client.refresh_metadata().await.unwrap_or(metadata);
    }
    let mut partitions_per_topic = BTreeMap::new();
    for t in &all_topics {
        if let Some(tm) = metadata.topic(t).filter(|tm| tm.error == ErrorCode::None && !tm.partitions.is_empty()) {
            partitions_per_topic.insert(t.clone(), i32::try_from(tm.partitions.len()).unwrap_or(i32::MAX));
        }
    }
    *lock(&shared.leader_snapshot) = Some(partitions_per_topic.clone());
    let result = assignor.assign(&partitions_per_topic, &subs)?;
    let mut out = Vec::new();
    for s in &subs {
        let parts = result.get(&s.member_id).cloned().unwrap_or_default();
        out.push(SyncGroupRequestAssignment {
            member_id: s.member_id.clone(),
            assignment: assignor::encode_assignment(&parts, None)?,
            ..Default::default()
        });
    }
    Ok(out)
}

/// Heartbeats until something calls for a rejoin, the member is fenced, or the consumer
/// closes. Also enforces `max.poll.interval.ms`.
async fn stable(
    shared: &Arc<Shared>,
    group: &Group,
    topics: &[String],
    owned: &BTreeSet<TopicPartition>,
    version: u64,
) -> Wake {
    let config = &shared.config;
    let mut metadata_rx = shared.client.watch_metadata();
    let mut next_beat = Instant::now() + config.heartbeat_interval;
    let mut last_ok = Instant::now();
    loop {
        if shared.is_closed() {
            return Wake::Closed;
        }
        // max.poll.interval.ms: an application that stopped polling leaves the group.
        let (last_poll, in_poll) = {
            let st = shared.lock();
            (st.last_poll, st.in_poll)
        };
        if let Some(lp) = last_poll.filter(|_| !in_poll) {
            if lp.elapsed() > config.max_poll_interval {
                tracing::warn!(group = %group.group_id, "no poll within max.poll.interval.ms; leaving the group until the next poll");
                if group.instance_id.is_none() {
                    leave(shared, group).await;
                }
                if !owned.is_empty() {
                    // The loss is handled on the application's next poll, before rejoining.
                    return Wake::Lost;
                }
                shared.polled.notified().await;
                return Wake::Rejoin;
            }
        }
        let poll_deadline = last_poll.map(|lp| lp + config.max_poll_interval + Duration::from_millis(1));
        tokio::select! {
            _ = tokio::time::sleep_until(next_beat) => {
                next_beat = Instant::now() + config.heartbeat_interval;
                match heartbeat(shared, group).await {
                    Ok(()) => last_ok = Instant::now(),
                    Err(e) => match e.code() {
                        Some(ErrorCode::RebalanceInProgress) => return Wake::Rejoin,
                        Some(ErrorCode::IllegalGeneration | ErrorCode::UnknownMemberId | ErrorCode::FencedInstanceId) => {
                            if e.code() == Some(ErrorCode::UnknownMemberId) {
                                *lock(&group.member) = Member::default();
                            }
                            if e.code() == Some(ErrorCode::FencedInstanceId) {
                                shared.lock().errors.push_back(e);
                                shared.data_ready.notify_one();
                            }
                            return Wake::Lost;
                        }
                        _ => {
                            tracing::debug!(group = %group.group_id, error = %e, "heartbeat failed");
                            group.coordinator_dead().await;
                            next_beat = Instant::now() + config.client.retry_backoff;
                            if last_ok.elapsed() > config.session_timeout {
                                return Wake::Lost;
                            }
                        }
                    },
                }
            }
            _ = group.rejoin.notified() => return Wake::Rejoin,
            _ = shared.subscription_changed.notified() => {
                if shared.lock().subscription_version != version {
                    return Wake::Rejoin;
                }
            }
            r = metadata_rx.changed() => {
                if r.is_err() {
                    return Wake::Closed;
                }
                if metadata_calls_for_rejoin(shared, topics) {
                    tracing::info!(group = %group.group_id, "subscribed topics changed; rejoining");
                    return Wake::Rejoin;
                }
            }
            _ = async { match poll_deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {}
            _ = shared.close_requested.notified() => return Wake::Closed,
        }
    }
}

/// Whether the metadata changed what the group should be assigned: for a pattern, the set
/// of matching topics; for the leader, the partition counts it assigned.
fn metadata_calls_for_rejoin(shared: &Shared, topics: &[String]) -> bool {
    if matches!(shared.lock().subscription, Subscription::Pattern(_)) {
        if let Some(now) = subscribed_topics(shared) {
            if now != topics {
                return true;
            }
        }
    }
    let snapshot = lock(&shared.leader_snapshot).clone();
    let Some(snapshot) = snapshot else { return false };
    let metadata = shared.client.metadata();
    snapshot.iter().any(|(t, count)| {
        metadata
            .topic(t)
            .filter(|tm| tm.error == ErrorCode::None)
            .is_some_and(|tm| i32::try_from(tm.partitions.len()).unwrap_or(i32::MAX) != *count)
    })
}

async fn heartbeat(shared: &Shared, group: &Group) -> Result<()> {
    let conn = group.coordinator(shared).await?;
    let member = group.member();
    let request = HeartbeatRequest {
        group_id: group.group_id.clone(),
        generation_id: member.generation,
        member_id: member.member_id,
        group_instance_id: group.instance_id.clone(),
        ..Default::default()
    };
    let response = conn.request(&request).await?;
    match ErrorCode::from_code(response.error_code) {
        ErrorCode::None => Ok(()),
        code => Err(Error::kafka(code, None)),
    }
}

/// Sends LeaveGroup (dynamic members; a static member's departure is its session expiring),
/// or the consumer protocol's leave heartbeat.
pub(crate) async fn leave(shared: &Shared, group: &Group) {
    if group.protocol == GroupProtocol::Consumer {
        super::membership::leave(shared, group).await;
        return;
    }
    let member = group.member();
    *lock(&group.member) = Member::default();
    *lock(&shared.leader_snapshot) = None;
    if member.member_id.is_empty() || group.instance_id.is_some() {
        return;
    }
    let Ok(conn) = group.coordinator(shared).await else { return };
    let Ok(version) = conn.version(ApiKey::LeaveGroup, 0) else { return };
    // v0-2 name the member in `member_id`, v3+ (KIP-345) in `members`; the encoder refuses
    // a field the version does not have.
    let request = if version >= 3 {
        LeaveGroupRequest {
            group_id: group.group_id.clone(),
            members: vec![MemberIdentity {
                member_id: member.member_id.clone(),
                group_instance_id: None,
                ..Default::default()
            }],
            ..Default::default()
        }
    } else {
        LeaveGroupRequest {
            group_id: group.group_id.clone(),
            member_id: member.member_id.clone(),
            ..Default::default()
        }
    };
    match conn.request_at(&request, version).await {
        Ok(r) if r.error_code == 0 => {
            tracing::info!(group = %group.group_id, member = %member.member_id, "left the group")
        }
        Ok(r) => tracing::debug!(group = %group.group_id, error = r.error_code, "LeaveGroup refused"),
        Err(e) => tracing::debug!(group = %group.group_id, error = %e, "LeaveGroup failed"),
    }
}

fn ms(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}
