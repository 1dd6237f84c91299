//! Group membership with the consumer protocol (KIP-848, `group.protocol=consumer`).
//!
//! One RPC, ConsumerGroupHeartbeat, carries everything: the member joins with epoch 0,
//! the coordinator assigns partitions itself (server-side assignors) and answers each
//! heartbeat with the member's epoch, the heartbeat interval and, when it changed, the
//! member's target assignment (topic ids and partitions). The member *reconciles*: it
//! resolves the topic ids to names through the metadata, revokes the partitions it owns
//! that are no longer in the target (auto-commit, `on_partitions_revoked`, then removal,
//! so the fetcher never hands out another record of them), adds the new ones
//! (`on_partitions_assigned`), and acknowledges by sending the partitions it now owns in the
//! next heartbeat. The coordinator gives a partition to its next owner only after the
//! previous owner acknowledged its revocation, so no partition ever has two owners.
//!
//! The shape follows the Java client (`ConsumerMembershipManager`,
//! `ConsumerHeartbeatRequestManager`): a full heartbeat when joining and after any failure,
//! then only the fields that changed since the last one sent. The listener, revocation and
//! fetcher machinery is the classic path's (`AppTask`s run inside `poll`/`recv`); only the
//! way the assignment arrives differs.
//!
//! Heartbeats keep going while a reconciliation waits for the application's callbacks
//! (the coordinator's session timeout runs meanwhile); their answers may bring a newer
//! target, reconciled after the current one.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use kafka_protocol::primitives::Uuid;
use kafka_protocol::{ApiKey, ErrorCode};
use rand::RngCore;
use tokio::time::Instant;

use super::coordinator::{add_if_subscribed, remove_partitions, run_on_app, subscribed_topics, Group, Member};
use super::state::{AppTask, Subscription};
use super::{Shared, TopicPartition};
use crate::client::lock;
use crate::conn::Connection;
use crate::error::{Error, Result};

/// The epoch that asks to join (or rejoin after being fenced).
const JOIN_EPOCH: i32 = 0;
/// The epoch of a dynamic member's leave request.
const LEAVE_EPOCH: i32 = -1;
/// The epoch of a static member's leave request: the coordinator keeps its assignment for
/// the session timeout, waiting for the same instance id to come back.
const STATIC_LEAVE_EPOCH: i32 = -2;
/// The newest ConsumerGroupHeartbeat version this client speaks. The JSON in shared/ still
/// marks v1 (SubscribedTopicRegex, client-generated member ids) unstable, as it was before
/// Kafka 4.0 made KIP-848 generally available, so the generic "stable versions only" cap
/// would stop at v0; Kafka 4.0 brokers advertise v1 as stable.
const MAX_VERSION: i16 = 1;

/// A member id as the Java client makes one for v1+ (`Uuid.randomUuid().toString()`:
/// 22 characters of URL-safe base64), never the zero UUID and never starting with `-`.
pub(crate) fn new_member_id() -> String {
    let mut rng = rand::thread_rng();
    loop {
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        let id = Uuid(b);
        let s = id.to_string();
        if !id.is_zero() && !s.starts_with('-') {
            return s;
        }
    }
}

/// The ConsumerGroupHeartbeat version to use on `conn`: the highest both sides speak, up to
/// v1. A broker without the API (no KIP-848) gets a clear error.
pub(crate) fn heartbeat_version(conn: &Connection) -> Result<i16> {
    let unsupported = |detail: &str| Error::UnsupportedVersion {
        api: ApiKey::ConsumerGroupHeartbeat,
        broker: conn.address().to_string(),
        detail: detail.to_owned(),
    };
    let Some(range) = conn.versions().broker_range(ApiKey::ConsumerGroupHeartbeat) else {
        return Err(unsupported(
            "the broker does not support the consumer group protocol (KIP-848); use group.protocol=classic",
        ));
    };
    let v = range.max.min(MAX_VERSION);
    if v < range.min.max(0) {
        return Err(unsupported(&format!("broker {range}, client 0..={MAX_VERSION}")));
    }
    Ok(v)
}

/// What the member subscribes to, as sent on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WireSubscription {
    /// Topic names (a topic list, or a pattern matched here below v1).
    Names(Vec<String>),
    /// A regular expression the coordinator matches (v1+; Java/RE2J syntax passes through).
    Regex(String),
}

/// The fields of the member that the heartbeat reports.
#[derive(Debug, Clone)]
pub(crate) struct Wanted {
    pub subscription: WireSubscription,
    pub rebalance_timeout_ms: i32,
    pub server_assignor: Option<String>,
    /// The partitions the member owns now, with their topic ids.
    pub owned: BTreeMap<TopicPartition, Uuid>,
}

/// The fields sent in the latest heartbeat; `None` means "not sent since the last reset",
/// which makes the next heartbeat carry it (a full heartbeat after a reset).
#[derive(Debug, Default, Clone)]
pub(crate) struct Sent {
    rebalance_timeout_ms: Option<i32>,
    subscription: Option<WireSubscription>,
    server_assignor: Option<String>,
    owned: Option<BTreeMap<TopicPartition, Uuid>>,
}

/// The member's side of the protocol, without I/O.
#[derive(Debug)]
pub(crate) struct HeartbeatState {
    pub group_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    /// The member id: generated here for v1+, given by the coordinator at v0.
    pub member_id: String,
    /// The id to use at v1+, kept for the consumer's lifetime as Java does.
    client_member_id: String,
    pub epoch: i32,
    pub interval: Duration,
    sent: Sent,
}

/// What to do after a heartbeat failed.
#[derive(Debug)]
pub(crate) enum OnError {
    /// FENCED_MEMBER_EPOCH / UNKNOWN_MEMBER_ID: the partitions are lost; rejoin with epoch 0.
    Fenced,
    /// The coordinator moved or is unreachable: find it again, then send a full heartbeat.
    Rediscover,
    /// A transient error: retry after a backoff with a full heartbeat.
    Retry,
    /// Cannot go on until the application changes something: the error goes to `poll`.
    Fatal(Error),
}

impl HeartbeatState {
    pub(crate) fn new(group_id: String, instance_id: Option<String>, rack_id: Option<String>) -> Self {
        HeartbeatState {
            group_id,
            instance_id,
            rack_id,
            member_id: String::new(),
            client_member_id: new_member_id(),
            epoch: JOIN_EPOCH,
            interval: Duration::from_secs(5),
            sent: Sent::default(),
        }
    }

    /// Forgets what was sent: the next heartbeat carries every field.
    pub(crate) fn reset_sent(&mut self) {
        self.sent = Sent::default();
    }

    /// Back to joining (after being fenced or leaving): epoch 0, a full heartbeat. At v0 the
    /// coordinator names the member, so the old name goes too.
    pub(crate) fn rejoin(&mut self, version: i16) {
        self.epoch = JOIN_EPOCH;
        if version < 1 {
            self.member_id.clear();
        }
        self.reset_sent();
    }

    fn full(&self) -> bool {
        self.epoch == JOIN_EPOCH || self.sent.owned.is_none()
    }

    /// Whether the next heartbeat has something to report at once (a changed subscription,
    /// an acknowledged assignment).
    pub(crate) fn has_news(&self, wanted: &Wanted) -> bool {
        self.full()
            || self.sent.subscription.as_ref() != Some(&wanted.subscription)
            || self.sent.owned.as_ref() != Some(&wanted.owned)
            || self.sent.rebalance_timeout_ms != Some(wanted.rebalance_timeout_ms)
            || (wanted.server_assignor.is_some() && self.sent.server_assignor != wanted.server_assignor)
    }

    /// The next heartbeat: every field when joining or after a reset, otherwise only what
    /// changed since the last one sent (Kafka's rule; an unchanged field is null / -1).
    pub(crate) fn request(&mut self, wanted: &Wanted, version: i16) -> ConsumerGroupHeartbeatRequest {
        if version >= 1 && self.member_id.is_empty() {
            self.member_id = self.client_member_id.clone();
        }
        let full = self.full();
        let mut r = ConsumerGroupHeartbeatRequest {
            group_id: self.group_id.clone(),
            member_id: self.member_id.clone(),
            member_epoch: self.epoch,
            rebalance_timeout_ms: -1,
            ..Default::default()
        };
        if full {
            r.instance_id = self.instance_id.clone();
            r.rack_id = self.rack_id.clone();
        }
        if full || self.sent.rebalance_timeout_ms != Some(wanted.rebalance_timeout_ms) {
            r.rebalance_timeout_ms = wanted.rebalance_timeout_ms;
            self.sent.rebalance_timeout_ms = Some(wanted.rebalance_timeout_ms);
        }
        if full || self.sent.subscription.as_ref() != Some(&wanted.subscription) {
            match &wanted.subscription {
                WireSubscription::Names(n) => r.subscribed_topic_names = Some(n.clone()),
                WireSubscription::Regex(re) if version >= 1 => r.subscribed_topic_regex = Some(re.clone()),
                // Callers resolve patterns here below v1; an empty list is the safe answer.
                WireSubscription::Regex(_) => r.subscribed_topic_names = Some(Vec::new()),
            }
            self.sent.subscription = Some(wanted.subscription.clone());
        }
        if let Some(a) = &wanted.server_assignor {
            if full || self.sent.server_assignor.as_ref() != Some(a) {
                r.server_assignor = Some(a.clone());
                self.sent.server_assignor = Some(a.clone());
            }
        }
        if full || self.sent.owned.as_ref() != Some(&wanted.owned) {
            r.topic_partitions = Some(topic_partitions(&wanted.owned));
            self.sent.owned = Some(wanted.owned.clone());
        }
        r
    }

    /// The leave request: epoch -1, or -2 for a static member (its assignment waits for it).
    pub(crate) fn leave_request(&self) -> ConsumerGroupHeartbeatRequest {
        ConsumerGroupHeartbeatRequest {
            group_id: self.group_id.clone(),
            member_id: self.member_id.clone(),
            member_epoch: if self.instance_id.is_some() { STATIC_LEAVE_EPOCH } else { LEAVE_EPOCH },
            instance_id: self.instance_id.clone(),
            rebalance_timeout_ms: -1,
            ..Default::default()
        }
    }

    /// A successful answer: the new epoch, interval and member id; returns the new target
    /// assignment when the coordinator sent one.
    pub(crate) fn on_success(&mut self, response: ConsumerGroupHeartbeatResponse) -> Option<Vec<(Uuid, Vec<i32>)>> {
        if let Some(id) = response.member_id.filter(|id| !id.is_empty()) {
            self.member_id = id;
        }
        self.epoch = response.member_epoch;
        if response.heartbeat_interval_ms > 0 {
            self.interval = Duration::from_millis(u64::try_from(response.heartbeat_interval_ms).unwrap_or(5_000));
        }
        response.assignment.map(|a| a.topic_partitions.into_iter().map(|t| (t.topic_id, t.partitions)).collect())
    }

    /// Classifies a failed heartbeat (and forgets what was sent: the next one is full).
    pub(crate) fn on_error(&mut self, error: Error, version: i16) -> OnError {
        self.reset_sent();
        match error.code() {
            Some(ErrorCode::FencedMemberEpoch | ErrorCode::UnknownMemberId) => {
                self.rejoin(version);
                OnError::Fenced
            }
            Some(ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable) => OnError::Rediscover,
            Some(ErrorCode::UnsupportedVersion) => OnError::Fatal(Error::UnsupportedVersion {
                api: ApiKey::ConsumerGroupHeartbeat,
                broker: "the group coordinator".to_owned(),
                detail: "the broker does not support the consumer group protocol (KIP-848) or has it disabled; use group.protocol=classic"
                    .to_owned(),
            }),
            Some(
                ErrorCode::UnreleasedInstanceId
                | ErrorCode::FencedInstanceId
                | ErrorCode::GroupMaxSizeReached
                | ErrorCode::UnsupportedAssignor
                | ErrorCode::GroupAuthorizationFailed
                | ErrorCode::InvalidRequest
                | ErrorCode::InvalidGroupId
                | ErrorCode::GroupIdNotFound
                | ErrorCode::InconsistentGroupProtocol,
            ) => OnError::Fatal(error),
            Some(code) if code.is_retriable() => OnError::Retry,
            Some(_) => OnError::Fatal(error),
            // Errors of the connection, not of the group: only those that a retry cannot fix
            // end membership; the rest (lost or closed connections, timeouts, an answer that
            // did not decode) find the coordinator again.
            None if matches!(
                error,
                Error::UnsupportedVersion { .. }
                    | Error::Authentication { .. }
                    | Error::SaslMechanismNotEnabled { .. }
                    | Error::Tls { .. }
                    | Error::Config { .. }
            ) =>
            {
                OnError::Fatal(error)
            }
            None => OnError::Rediscover,
        }
    }
}

fn topic_partitions(owned: &BTreeMap<TopicPartition, Uuid>) -> Vec<TopicPartitions> {
    let mut by_id: BTreeMap<[u8; 16], Vec<i32>> = BTreeMap::new();
    for (tp, id) in owned {
        by_id.entry(id.0).or_default().push(tp.partition);
    }
    by_id
        .into_iter()
        .map(|(id, partitions)| TopicPartitions { topic_id: Uuid(id), partitions, ..Default::default() })
        .collect()
}

/// What a reconciliation does: revoke first, then add.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    pub revoke: Vec<TopicPartition>,
    pub add: Vec<(TopicPartition, Uuid)>,
    /// Some target topic ids are not in the metadata yet: reconcile again after a refresh.
    pub unresolved: bool,
}

impl Plan {
    fn is_empty(&self) -> bool {
        self.revoke.is_empty() && self.add.is_empty()
    }
}

/// Compares the target (topic ids) with what the member owns. Ids it already owns resolve
/// through `owned`; others through `names` (the metadata). Unresolved partitions are neither
/// revoked nor added (the owned ones stay until their topic resolves).
pub(crate) fn plan(
    owned: &BTreeMap<TopicPartition, Uuid>,
    target: &[(Uuid, Vec<i32>)],
    names: &BTreeMap<[u8; 16], String>,
) -> Plan {
    let mut known: BTreeMap<[u8; 16], String> = names.clone();
    for (tp, id) in owned {
        known.entry(id.0).or_insert_with(|| tp.topic.clone());
    }
    let mut want: BTreeMap<TopicPartition, Uuid> = BTreeMap::new();
    let mut unresolved_ids: BTreeSet<[u8; 16]> = BTreeSet::new();
    for (id, partitions) in target {
        match known.get(&id.0) {
            Some(name) => {
                for p in partitions {
                    want.insert(TopicPartition::new(name.clone(), *p), *id);
                }
            }
            None => {
                unresolved_ids.insert(id.0);
            }
        }
    }
    let revoke = owned.keys().filter(|tp| !want.contains_key(*tp)).cloned().collect();
    let add = want.into_iter().filter(|(tp, _)| !owned.contains_key(tp)).collect();
    Plan { revoke, add, unresolved: !unresolved_ids.is_empty() }
}

fn id_names(shared: &Shared) -> BTreeMap<[u8; 16], String> {
    shared
        .client
        .metadata()
        .topics
        .values()
        .filter(|t| !t.topic_id.is_zero())
        .map(|t| (t.topic_id.0, t.name.clone()))
        .collect()
}

/// Runs a plan on the application's task: revoke (auto-commit, listener, removal), then add
/// (listener). Returns what the member owns afterwards.
async fn reconcile(
    shared: Arc<Shared>,
    mut owned: BTreeMap<TopicPartition, Uuid>,
    plan: Plan,
) -> BTreeMap<TopicPartition, Uuid> {
    if !plan.revoke.is_empty() {
        tracing::info!(partitions = ?plan.revoke, "revoking");
        run_on_app(&shared, |tx| AppTask::Revoke(plan.revoke.clone(), tx)).await;
        // Again, in case the application's future was dropped mid-callback.
        remove_partitions(&shared, &plan.revoke);
        for tp in &plan.revoke {
            owned.remove(tp);
        }
    }
    let added: Vec<TopicPartition> = plan.add.iter().map(|(tp, _)| tp.clone()).collect();
    if !add_if_subscribed(&shared, &added) {
        // The application unsubscribed meanwhile: nothing more is taken on.
        return owned;
    }
    owned.extend(plan.add);
    shared.fetcher_wake.notify_one();
    tracing::info!(added = ?added, owned = owned.len(), "assignment reconciled");
    run_on_app(&shared, |tx| AppTask::Assigned(added, tx)).await;
    owned
}

type Reconciling = Pin<Box<dyn Future<Output = BTreeMap<TopicPartition, Uuid>> + Send>>;

/// The subscription to report, given the heartbeat version.
fn wanted_subscription(shared: &Shared, version: i16) -> Option<WireSubscription> {
    let pattern = match &shared.lock().subscription {
        Subscription::Pattern(re) => Some(re.as_str().to_owned()),
        Subscription::Topics(t) if !t.is_empty() => None,
        _ => return None,
    };
    match pattern {
        // The stored regex is anchored for local matching ("^(?:p)$"); the coordinator
        // matches whole names itself, so it gets the pattern as the application wrote it.
        Some(p) if version >= 1 => Some(WireSubscription::Regex(unanchor(&p).to_owned())),
        _ => subscribed_topics(shared).map(WireSubscription::Names),
    }
}

fn unanchor(p: &str) -> &str {
    p.strip_prefix("^(?:").and_then(|s| s.strip_suffix(")$")).unwrap_or(p)
}

fn ms(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

fn backoff(shared: &Shared, attempt: u32) -> Duration {
    let c = &shared.config.client;
    c.retry_backoff.saturating_mul(1u32 << attempt.min(10)).min(c.retry_backoff_max)
}

/// Publishes the member's identity for commits and `group_metadata()` (the epoch is the
/// generation of the consumer protocol).
fn publish(group: &Group, hb: &HeartbeatState) {
    let mut m = lock(&group.member);
    *m = Member { member_id: hb.member_id.clone(), generation: hb.epoch, protocol: None };
}

/// Sends one heartbeat and decodes the answer (error codes become `Error::Kafka`).
async fn send(
    shared: &Shared,
    group: &Group,
    hb: &mut HeartbeatState,
    wanted: &Wanted,
) -> (i16, Result<ConsumerGroupHeartbeatResponse>) {
    let conn = match group.coordinator(shared).await {
        Ok(c) => c,
        Err(e) => return (MAX_VERSION, Err(e)),
    };
    let version = match heartbeat_version(&conn) {
        Ok(v) => v,
        Err(e) => return (0, Err(e)),
    };
    let names;
    let wanted = match &wanted.subscription {
        // A broker without v1 cannot match a regex: match it here and send names.
        WireSubscription::Regex(_) if version < 1 => {
            names = Wanted {
                subscription: WireSubscription::Names(subscribed_topics(shared).unwrap_or_default()),
                ..wanted.clone()
            };
            &names
        }
        _ => wanted,
    };
    let request = hb.request(wanted, version);
    tracing::debug!(group = %hb.group_id, epoch = hb.epoch, owned = wanted.owned.len(), "heartbeat");
    let result = match conn.request_at(&request, version).await {
        Ok(r) => match ErrorCode::from_code(r.error_code) {
            ErrorCode::None => Ok(r),
            code => Err(Error::kafka(code, r.error_message.or_else(|| Some(format!("group {}", hb.group_id))))),
        },
        Err(e) => Err(e),
    };
    (version, result)
}

/// The membership task for `group.protocol=consumer`. Runs while the consumer is open.
pub(crate) async fn run(weak: Weak<Shared>, group: Arc<Group>) {
    let (instance_id, rack) = match weak.upgrade() {
        Some(s) => (group.instance_id.clone(), s.config.client_rack.clone()),
        None => return,
    };
    let mut hb = HeartbeatState::new(group.group_id.clone(), instance_id, rack);
    let mut owned: BTreeMap<TopicPartition, Uuid> = BTreeMap::new();
    let mut target: Option<Vec<(Uuid, Vec<i32>)>> = None;
    let mut reconciling: Option<Reconciling> = None;
    // Fenced while a reconciliation ran: lose everything once it finishes.
    let mut fenced = false;
    let mut failures = 0u32;
    let mut version = MAX_VERSION;
    let mut leaves = group.leaves.load(Ordering::Acquire);
    let mut next_beat = Instant::now();
    let mut just_joined = false;
    let mut last_refresh: Option<Instant> = None;
    loop {
        let Some(shared) = weak.upgrade() else { return };
        if shared.is_closed() {
            return;
        }
        // The application left (unsubscribe): start over as a new member.
        let now_leaves = group.leaves.load(Ordering::Acquire);
        if now_leaves != leaves {
            leaves = now_leaves;
            hb.rejoin(version);
            owned.clear();
            target = None;
            reconciling = None;
            fenced = false;
        }
        // Wait for a group subscription.
        let Some(subscription) = wanted_subscription(&shared, version) else {
            tokio::select! {
                _ = shared.subscription_changed.notified() => {}
                _ = shared.close_requested.notified() => {}
            }
            continue;
        };
        let sub_version = shared.lock().subscription_version;

        // Fenced: once nothing is in flight, the listener hears of the loss, then rejoin.
        if fenced && reconciling.is_none() {
            fenced = false;
            lose(&shared, &mut owned).await;
            target = None;
            next_beat = Instant::now();
            continue;
        }

        // max.poll.interval.ms: an application that stopped polling leaves the group, loses
        // its partitions (heard on its next poll) and rejoins.
        if reconciling.is_none() && hb.epoch > 0 && poll_overdue(&shared) {
            tracing::warn!(group = %group.group_id, "no poll within max.poll.interval.ms; leaving the group until the next poll");
            send_leave(&shared, &group, &hb).await;
            hb.rejoin(version);
            publish(&group, &hb);
            target = None;
            if owned.is_empty() {
                tokio::select! {
                    _ = shared.polled.notified() => {}
                    _ = shared.close_requested.notified() => {}
                }
            } else {
                lose(&shared, &mut owned).await;
            }
            next_beat = Instant::now();
            continue;
        }

        let wanted = Wanted {
            subscription,
            rebalance_timeout_ms: ms(shared.config.max_poll_interval),
            server_assignor: shared.config.group_remote_assignor.clone(),
            owned: owned.clone(),
        };
        if !fenced && (Instant::now() >= next_beat || (failures == 0 && hb.has_news(&wanted))) {
            if hb.epoch == JOIN_EPOCH {
                just_joined = true;
            }
            if let WireSubscription::Names(n) = &wanted.subscription {
                shared.client.add_topics(n.iter().map(String::as_str));
            }
            let (v, result) = send(&shared, &group, &mut hb, &wanted).await;
            version = v;
            if group.leaves.load(Ordering::Acquire) != leaves || shared.is_closed() {
                // The application left while this heartbeat was out: its answer is stale.
                continue;
            }
            match result {
                Ok(response) => {
                    failures = 0;
                    if let Some(t) = hb.on_success(response) {
                        target = Some(t);
                    }
                    publish(&group, &hb);
                    next_beat = Instant::now() + hb.interval;
                }
                Err(e) => {
                    failures += 1;
                    match hb.on_error(e, version) {
                        OnError::Fenced => {
                            tracing::info!(group = %group.group_id, "fenced; the partitions are lost and the member rejoins");
                            publish(&group, &hb);
                            fenced = true;
                            next_beat = Instant::now();
                        }
                        OnError::Rediscover => {
                            group.coordinator_dead().await;
                            next_beat = Instant::now() + backoff(&shared, failures);
                        }
                        OnError::Retry => next_beat = Instant::now() + backoff(&shared, failures),
                        OnError::Fatal(e) => {
                            tracing::error!(group = %group.group_id, error = %e, "cannot stay in the group");
                            shared.lock().errors.push_back(e);
                            shared.data_ready.notify_one();
                            hb.rejoin(version);
                            publish(&group, &hb);
                            if reconciling.is_some() {
                                // Lose everything once the reconciliation in flight ends.
                                fenced = true;
                            } else {
                                lose(&shared, &mut owned).await;
                            }
                            target = None;
                            // Wait for a new subscription before trying again.
                            tokio::select! {
                                _ = shared.subscription_changed.notified() => {}
                                _ = shared.close_requested.notified() => {}
                            }
                            next_beat = Instant::now();
                        }
                    }
                    continue;
                }
            }
        }

        // Start reconciling a new target when the previous reconciliation is done.
        let mut unresolved = false;
        if reconciling.is_none() && !fenced {
            if let Some(t) = &target {
                let p = plan(&owned, t, &id_names(&shared));
                unresolved = p.unresolved;
                if unresolved {
                    // At most one refresh per backoff: each refresh wakes this loop again.
                    let now = Instant::now();
                    if last_refresh.map_or(true, |t| now >= t + shared.config.client.retry_backoff) {
                        last_refresh = Some(now);
                        shared.client.request_refresh();
                    }
                } else {
                    target = None;
                }
                // Java runs `on_partitions_assigned` after every reconciliation, with the
                // partitions added (maybe none): a member that joined hears of its first
                // assignment even when it is empty (the seventh of six partitions).
                if !p.is_empty() || (!unresolved && just_joined) {
                    just_joined = false;
                    reconciling = Some(Box::pin(reconcile(shared.clone(), owned.clone(), p)));
                }
            }
        }

        let mut metadata_rx = shared.client.watch_metadata();
        // Only a deadline still ahead: one already past while a reconciliation waits for the
        // application (or while joining) would wake this loop again and again.
        let poll_deadline = {
            let st = shared.lock();
            st.last_poll
                .filter(|_| !st.in_poll)
                .map(|lp| lp + shared.config.max_poll_interval + Duration::from_millis(1))
                .filter(|d| *d > Instant::now())
        };
        // A pattern matched here (v0) may match new topics; unresolved topic ids may resolve
        // now. The loop recomputes both.
        let pattern_local = matches!(shared.lock().subscription, Subscription::Pattern(_)) && version < 1;
        let wake_on_metadata = unresolved || pattern_local;
        tokio::select! {
            // Fenced: no heartbeat until the reconciliation in flight ends (then rejoin).
            _ = tokio::time::sleep_until(next_beat), if !fenced => {}
            done = async { match reconciling.as_mut() { Some(f) => f.await, None => std::future::pending().await } } => {
                reconciling = None;
                owned = done;
                // Acknowledge at once: the coordinator waits for it to move partitions on.
                next_beat = Instant::now();
            }
            _ = shared.subscription_changed.notified() => {
                if shared.lock().subscription_version != sub_version {
                    next_beat = Instant::now();
                }
            }
            r = metadata_rx.changed(), if wake_on_metadata => {
                if r.is_err() {
                    return;
                }
            }
            _ = group.rejoin.notified() => next_beat = Instant::now(),
            _ = async { match poll_deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {}
            _ = shared.close_requested.notified() => {}
        }
    }
}

/// Whether the application has not polled within `max.poll.interval.ms`.
fn poll_overdue(shared: &Shared) -> bool {
    let st = shared.lock();
    st.last_poll.filter(|_| !st.in_poll).is_some_and(|lp| lp.elapsed() > shared.config.max_poll_interval)
}

/// Partitions lost (fenced, expired, fatal): the listener hears of it, nothing is committed.
async fn lose(shared: &Shared, owned: &mut BTreeMap<TopicPartition, Uuid>) {
    if owned.is_empty() {
        return;
    }
    let lost: Vec<TopicPartition> = std::mem::take(owned).into_keys().collect();
    run_on_app(shared, |tx| AppTask::Lost(lost.clone(), tx)).await;
    remove_partitions(shared, &lost);
}

async fn send_leave(shared: &Shared, group: &Group, hb: &HeartbeatState) {
    if hb.member_id.is_empty() || hb.epoch <= 0 {
        return;
    }
    let Ok(conn) = group.coordinator(shared).await else { return };
    let Ok(version) = heartbeat_version(&conn) else { return };
    let request = hb.leave_request();
    match conn.request_at(&request, version).await {
        Ok(r) if r.error_code == 0 => {
            tracing::info!(group = %group.group_id, member = %hb.member_id, epoch = request.member_epoch, "left the group")
        }
        Ok(r) => tracing::debug!(group = %group.group_id, error = r.error_code, "leave refused"),
        Err(e) => tracing::debug!(group = %group.group_id, error = %e, "leave failed"),
    }
}

/// Leaves the group from the application's side (close, unsubscribe): epoch -1, or -2 for
/// a static member. The membership task notices (`Group::leaves`) and starts over.
pub(crate) async fn leave(shared: &Shared, group: &Group) {
    let member = group.member();
    group.leaves.fetch_add(1, Ordering::AcqRel);
    *lock(&group.member) = Member::default();
    if member.member_id.is_empty() || member.generation <= 0 {
        return;
    }
    let rack = shared.config.client_rack.clone();
    let mut hb = HeartbeatState::new(group.group_id.clone(), group.instance_id.clone(), rack);
    hb.member_id = member.member_id;
    hb.epoch = member.generation;
    send_leave(shared, group, &hb).await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions as RespTp};

    fn id(n: u8) -> Uuid {
        Uuid([n; 16])
    }

    fn wanted(owned: &[(&str, i32, u8)]) -> Wanted {
        Wanted {
            subscription: WireSubscription::Names(vec!["a".to_owned(), "b".to_owned()]),
            rebalance_timeout_ms: 300_000,
            server_assignor: Some("uniform".to_owned()),
            owned: owned.iter().map(|(t, p, i)| (TopicPartition::new(*t, *p), id(*i))).collect(),
        }
    }

    fn state() -> HeartbeatState {
        HeartbeatState::new("g".to_owned(), Some("i1".to_owned()), Some("r1".to_owned()))
    }

    #[test]
    fn member_ids_look_like_java_uuids() {
        let a = new_member_id();
        let b = new_member_id();
        assert_eq!(a.len(), 22);
        assert_ne!(a, b);
        assert!(!a.starts_with('-'));
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }

    #[test]
    fn joining_sends_every_field_then_only_changes() {
        let mut hb = state();
        let w = wanted(&[]);
        // v1: the member names itself.
        let r = hb.request(&w, 1);
        assert_eq!(r.member_epoch, 0);
        assert_eq!(r.member_id.len(), 22);
        assert_eq!(r.instance_id.as_deref(), Some("i1"));
        assert_eq!(r.rack_id.as_deref(), Some("r1"));
        assert_eq!(r.rebalance_timeout_ms, 300_000);
        assert_eq!(r.subscribed_topic_names, Some(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(r.server_assignor.as_deref(), Some("uniform"));
        assert_eq!(r.topic_partitions, Some(vec![]));
        let member_id = r.member_id.clone();

        // Joined at epoch 5 with an assignment.
        let target = hb.on_success(ConsumerGroupHeartbeatResponse {
            member_id: Some(member_id.clone()),
            member_epoch: 5,
            heartbeat_interval_ms: 250,
            assignment: Some(Assignment {
                topic_partitions: vec![RespTp { topic_id: id(1), partitions: vec![0, 2], ..Default::default() }],
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(target, Some(vec![(id(1), vec![0, 2])]));
        assert_eq!(hb.epoch, 5);
        assert_eq!(hb.interval, Duration::from_millis(250));

        // Nothing changed: a bare heartbeat.
        assert!(!hb.has_news(&w));
        let r = hb.request(&w, 1);
        assert_eq!((r.member_id.as_str(), r.member_epoch), (member_id.as_str(), 5));
        assert_eq!(r.instance_id, None);
        assert_eq!(r.rack_id, None);
        assert_eq!(r.rebalance_timeout_ms, -1);
        assert_eq!(r.subscribed_topic_names, None);
        assert_eq!(r.server_assignor, None);
        assert_eq!(r.topic_partitions, None);

        // The assignment reconciled: the owned partitions are acknowledged once.
        let w2 = wanted(&[("a", 0, 1), ("a", 2, 1)]);
        assert!(hb.has_news(&w2));
        let r = hb.request(&w2, 1);
        let tps = r.topic_partitions.unwrap();
        assert_eq!(tps.len(), 1);
        assert_eq!((tps[0].topic_id, tps[0].partitions.clone()), (id(1), vec![0, 2]));
        assert_eq!(hb.request(&w2, 1).topic_partitions, None);

        // A new subscription is sent alone.
        let mut w3 = w2.clone();
        w3.subscription = WireSubscription::Names(vec!["c".to_owned()]);
        let r = hb.request(&w3, 1);
        assert_eq!(r.subscribed_topic_names, Some(vec!["c".to_owned()]));
        assert_eq!(r.topic_partitions, None);

        // After an error, everything again (same epoch: not fenced).
        assert!(matches!(hb.on_error(Error::kafka(ErrorCode::CoordinatorNotAvailable, None), 1), OnError::Rediscover));
        let r = hb.request(&w3, 1);
        assert_eq!(r.member_epoch, 5);
        assert_eq!(r.instance_id.as_deref(), Some("i1"));
        assert_eq!(r.rebalance_timeout_ms, 300_000);
        assert!(r.subscribed_topic_names.is_some() && r.topic_partitions.is_some() && r.server_assignor.is_some());
    }

    #[test]
    fn v0_lets_the_coordinator_name_the_member_and_forgets_the_name_when_fenced() {
        let mut hb = state();
        let w = wanted(&[]);
        let r = hb.request(&w, 0);
        assert_eq!(r.member_id, "");
        hb.on_success(ConsumerGroupHeartbeatResponse {
            member_id: Some("m-1".to_owned()),
            member_epoch: 1,
            heartbeat_interval_ms: 100,
            ..Default::default()
        });
        assert_eq!(hb.request(&w, 0).member_id, "m-1");
        assert!(matches!(hb.on_error(Error::kafka(ErrorCode::UnknownMemberId, None), 0), OnError::Fenced));
        let r = hb.request(&w, 0);
        assert_eq!((r.member_id.as_str(), r.member_epoch), ("", 0));
        assert!(r.subscribed_topic_names.is_some());
    }

    #[test]
    fn fenced_at_v1_rejoins_with_the_same_id_and_epoch_0() {
        let mut hb = state();
        let w = wanted(&[]);
        let id1 = hb.request(&w, 1).member_id;
        hb.on_success(ConsumerGroupHeartbeatResponse { member_epoch: 3, ..Default::default() });
        assert!(matches!(hb.on_error(Error::kafka(ErrorCode::FencedMemberEpoch, None), 1), OnError::Fenced));
        let r = hb.request(&w, 1);
        assert_eq!((r.member_id, r.member_epoch), (id1, 0));
    }

    #[test]
    fn errors_are_classified_as_java_does() {
        let mut hb = state();
        for code in [
            ErrorCode::UnreleasedInstanceId,
            ErrorCode::GroupMaxSizeReached,
            ErrorCode::UnsupportedAssignor,
            ErrorCode::FencedInstanceId,
            ErrorCode::GroupAuthorizationFailed,
        ] {
            assert!(matches!(hb.on_error(Error::kafka(code, None), 1), OnError::Fatal(_)), "{code:?}");
        }
        match hb.on_error(Error::kafka(ErrorCode::UnsupportedVersion, None), 1) {
            OnError::Fatal(e) => assert!(e.to_string().contains("group.protocol=classic"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(hb.on_error(Error::kafka(ErrorCode::NotCoordinator, None), 1), OnError::Rediscover));
        assert!(matches!(hb.on_error(Error::kafka(ErrorCode::CoordinatorLoadInProgress, None), 1), OnError::Retry));
        let lost = Error::Disconnected { broker: "b".to_owned(), reason: "reset".to_owned() };
        assert!(matches!(hb.on_error(lost, 1), OnError::Rediscover));
        let old = Error::UnsupportedVersion {
            api: ApiKey::ConsumerGroupHeartbeat,
            broker: "b".to_owned(),
            detail: "no".to_owned(),
        };
        assert!(matches!(hb.on_error(old, 1), OnError::Fatal(_)));
    }

    #[test]
    fn leaving_uses_epoch_minus_one_or_minus_two_for_static_members() {
        let mut hb = state();
        hb.member_id = "m".to_owned();
        hb.epoch = 7;
        let r = hb.leave_request();
        assert_eq!((r.member_epoch, r.instance_id.as_deref()), (-2, Some("i1")));
        let mut hb = HeartbeatState::new("g".to_owned(), None, None);
        hb.member_id = "m".to_owned();
        assert_eq!(hb.leave_request().member_epoch, -1);
    }

    #[test]
    fn regex_subscriptions_go_to_the_broker_at_v1_only() {
        let mut hb = state();
        let mut w = wanted(&[]);
        w.subscription = WireSubscription::Regex("orders-.*".to_owned());
        let r = hb.request(&w, 1);
        assert_eq!(r.subscribed_topic_regex.as_deref(), Some("orders-.*"));
        assert_eq!(r.subscribed_topic_names, None);
        assert_eq!(unanchor("^(?:orders-.*)$"), "orders-.*");
        assert_eq!(unanchor("x"), "x");
    }

    #[test]
    fn plans_revoke_what_left_and_add_what_came_keeping_the_rest() {
        let owned: BTreeMap<TopicPartition, Uuid> =
            [(TopicPartition::new("a", 0), id(1)), (TopicPartition::new("a", 1), id(1))].into_iter().collect();
        let names: BTreeMap<[u8; 16], String> = [(id(2).0, "b".to_owned())].into_iter().collect();
        let p = plan(&owned, &[(id(1), vec![1]), (id(2), vec![0])], &names);
        assert_eq!(p.revoke, vec![TopicPartition::new("a", 0)]);
        assert_eq!(p.add, vec![(TopicPartition::new("b", 0), id(2))]);
        assert!(!p.unresolved);
        // An unknown topic id: nothing of it is added, owned partitions stay, retry later.
        let p = plan(&owned, &[(id(1), vec![0, 1]), (id(3), vec![0])], &names);
        assert!(p.is_empty());
        assert!(p.unresolved);
        // Everything taken away.
        let p = plan(&owned, &[], &names);
        assert_eq!(p.revoke.len(), 2);
    }
}
