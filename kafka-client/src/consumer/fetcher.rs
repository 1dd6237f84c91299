//! The fetch task: one per consumer, with at most one Fetch in flight per broker, each broker
//! keeping a fetch session (KIP-227); it also resolves positions (committed offsets, resets).
//!
//! A partition is fetched when it is assigned, has a position, is not paused, has less than
//! `max.partition.fetch.bytes` buffered, and the consumer as a whole has less than
//! `queued.max.messages.kbytes` buffered: prefetch is pipelined (the next fetch goes out while
//! the application reads the previous one) and bounded. A fetch that would carry only
//! caught-up partitions (at the end of the log as of the last response) is not sent to a
//! broker while other partitions it leads are held back by full buffers: the broker would hold
//! it for `fetch.max.wait.ms`, and those partitions could not be fetched meanwhile.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use kafka_protocol::messages::{
    FetchRequest, FetchResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
};
use kafka_protocol::primitives::Uuid;
use kafka_protocol::{frame, ApiKey, ErrorCode};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::config::OffsetReset;
use super::offsets::{list_offsets, EARLIEST, LATEST};
use super::record::{scan_end, CompletedFetch, FetchedData};
use super::state::{Need, Position};
use super::{Shared, TopicPartition};
use crate::error::{Error, Result};
use crate::metadata::Metadata;

/// A partition as last sent in a broker's fetch session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SessionPart {
    fetch_offset: i64,
    leader_epoch: i32,
    last_fetched_epoch: i32,
}

/// The client side of one broker's fetch session.
#[derive(Debug, Default)]
struct Session {
    id: i32,
    /// The epoch to send next: 0 opens a new session (a full fetch).
    epoch: i32,
    parts: BTreeMap<TopicPartition, SessionPart>,
}

impl Session {
    fn reset(&mut self) {
        self.id = 0;
        self.epoch = 0;
        self.parts.clear();
    }
}

/// A partition of a fetch in flight.
#[derive(Debug)]
struct Sent {
    tp: TopicPartition,
    epoch: u64,
    fetch_offset: i64,
}

struct FetchDone {
    node: i32,
    sent: Vec<Sent>,
    wanted: BTreeMap<TopicPartition, SessionPart>,
    full: bool,
    names: HashMap<Uuid, String>,
    result: Result<FetchResponse>,
}

struct ResolveDone {
    results: Vec<(TopicPartition, u64, Result<Option<Position>>, Need)>,
    validated: Vec<(TopicPartition, u64, Validation)>,
}

/// What the leader said of a position after a leader change (KIP-320).
#[derive(Debug)]
enum Validation {
    /// The log holds what was fetched: fetch on, under this leader epoch.
    Valid(i32),
    /// The log ends at `end_offset` for the epoch fetched last, before the fetch position.
    Truncated { end_offset: i64, leader_epoch: i32 },
    /// The leader knows nothing of the epoch fetched last (undefined epoch or offset).
    Unknown,
    /// Ask again later (a retriable error; the metadata is refreshed).
    Retry(Error),
    /// An error the application must see (not authorized, say).
    Failed(Error),
}

/// The error for a truncated log when `auto.offset.reset` is `none` (`end_offset` -1: the
/// leader did not know the epoch).
fn truncation(tp: &TopicPartition, position: i64, end_offset: i64) -> Error {
    Error::LogTruncation { topic: tp.topic.clone(), partition: tp.partition, position, end_offset }
}

/// Asks each partition's leader where the epoch of its fetch position ends
/// (OffsetForLeaderEpoch v3+, as the Java consumer; brokers without it are not asked and
/// the position stands, as in Java).
async fn validate_positions(
    shared: &Arc<Shared>,
    items: Vec<(TopicPartition, u64, Position)>,
) -> Vec<(TopicPartition, u64, Validation)> {
    let mut out = Vec::new();
    if items.is_empty() {
        return out;
    }
    let metadata = shared.client.metadata();
    let mut by_leader: BTreeMap<i32, Vec<(TopicPartition, u64, Position, i32)>> = BTreeMap::new();
    for (tp, epoch, pos) in items {
        let current = metadata.topic(&tp.topic).and_then(|t| t.partition(tp.partition)).map_or(-1, |m| m.leader_epoch);
        match metadata.leader(&tp.topic, tp.partition) {
            Some(node) => by_leader.entry(node).or_default().push((tp, epoch, pos, current)),
            None => {
                shared.client.request_refresh();
                let e = Error::kafka(ErrorCode::LeaderNotAvailable, Some(format!("validating {tp}")));
                out.push((tp, epoch, Validation::Retry(e)));
            }
        }
    }
    for (node, parts) in by_leader {
        let answer: Result<Option<OffsetForLeaderEpochResponse>> = async {
            let conn = shared.client.connection(node).await?;
            let Ok(version) = conn.version(ApiKey::OffsetForLeaderEpoch, 3) else { return Ok(None) };
            let mut topics: BTreeMap<&str, Vec<OffsetForLeaderPartition>> = BTreeMap::new();
            for (tp, _, pos, current) in &parts {
                topics.entry(tp.topic.as_str()).or_default().push(OffsetForLeaderPartition {
                    partition: tp.partition,
                    current_leader_epoch: *current,
                    leader_epoch: pos.leader_epoch.unwrap_or(-1),
                    ..Default::default()
                });
            }
            let request = OffsetForLeaderEpochRequest {
                replica_id: -1,
                topics: topics
                    .into_iter()
                    .map(|(topic, partitions)| OffsetForLeaderTopic {
                        topic: topic.to_owned(),
                        partitions,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            };
            Ok(Some(conn.request_at(&request, version).await?))
        }
        .await;
        for (tp, epoch, pos, current) in parts {
            let v = match &answer {
                Ok(None) => Validation::Valid(current),
                Err(e) => Validation::Retry(e.clone()),
                Ok(Some(response)) => {
                    let found = response
                        .topics
                        .iter()
                        .filter(|t| t.topic == tp.topic)
                        .flat_map(|t| t.partitions.iter())
                        .find(|p| p.partition == tp.partition);
                    match found {
                        None => Validation::Retry(Error::kafka(
                            ErrorCode::UnknownServerError,
                            Some(format!("no answer for {tp} in OffsetForLeaderEpoch")),
                        )),
                        Some(r) => match ErrorCode::from_code(r.error_code) {
                            ErrorCode::None if r.end_offset < 0 || r.leader_epoch < 0 => Validation::Unknown,
                            ErrorCode::None if r.end_offset < pos.offset => {
                                Validation::Truncated { end_offset: r.end_offset, leader_epoch: r.leader_epoch }
                            }
                            ErrorCode::None => Validation::Valid(current),
                            code @ (ErrorCode::FencedLeaderEpoch
                            | ErrorCode::UnknownLeaderEpoch
                            | ErrorCode::NotLeaderOrFollower
                            | ErrorCode::UnknownTopicOrPartition) => {
                                shared.client.request_refresh();
                                Validation::Retry(Error::kafka(code, Some(format!("validating {tp}"))))
                            }
                            code if code.is_retriable() => {
                                Validation::Retry(Error::kafka(code, Some(format!("validating {tp}"))))
                            }
                            code => Validation::Failed(Error::kafka(code, Some(format!("validating {tp}")))),
                        },
                    }
                }
            };
            out.push((tp, epoch, v));
        }
    }
    out
}

/// Runs until the consumer closes.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut sessions: HashMap<i32, Session> = HashMap::new();
    let mut fetches: JoinSet<FetchDone> = JoinSet::new();
    let mut busy_nodes: HashSet<i32> = HashSet::new();
    let mut lookups: JoinSet<ResolveDone> = JoinSet::new();
    let mut metadata_rx = shared.client.watch_metadata();
    loop {
        if shared.is_closed() {
            break;
        }
        let metadata = shared.client.metadata();
        let mut lookup_wake = None;
        if lookups.is_empty() {
            let (task, wake) = plan_resolution(&shared);
            if let Some(task) = task {
                lookups.spawn(task);
            }
            lookup_wake = wake;
        }
        let next_wake = plan_fetches(&shared, &metadata, &mut sessions, &mut busy_nodes, &mut fetches);
        let next_wake = match (next_wake, lookup_wake) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        tokio::select! {
            Some(done) = fetches.join_next(), if !fetches.is_empty() => {
                if let Ok(done) = done {
                    busy_nodes.remove(&done.node);
                    handle_fetch(&shared, &mut sessions, done);
                }
            }
            Some(done) = lookups.join_next(), if !lookups.is_empty() => {
                if let Ok(done) = done {
                    handle_resolution(&shared, done);
                }
            }
            _ = shared.fetcher_wake.notified() => {}
            r = metadata_rx.changed() => {
                if r.is_err() {
                    break;
                }
            }
            _ = sleep_until_opt(next_wake) => {}
        }
    }
    fetches.abort_all();
    lookups.abort_all();
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Starts a lookup for the partitions that need a position, if any; also returns when a
/// partition backing off after a failed lookup is due.
fn plan_resolution(
    shared: &Arc<Shared>,
) -> (Option<impl std::future::Future<Output = ResolveDone> + Send + 'static>, Option<Instant>) {
    let now = Instant::now();
    let mut work: Vec<(TopicPartition, u64, Need)> = Vec::new();
    let mut validate: Vec<(TopicPartition, u64, Position)> = Vec::new();
    let mut wake: Option<Instant> = None;
    {
        let mut st = shared.lock();
        for (tp, p) in st.parts.iter_mut() {
            if p.need == Need::Nothing || p.resolving || p.stalled {
                continue;
            }
            if let Some(t) = p.backoff_until.filter(|t| *t > now) {
                wake = Some(wake.map_or(t, |w| w.min(t)));
                continue;
            }
            p.resolving = true;
            if p.need == Need::Validate {
                match p.fetch_position {
                    Some(pos) => validate.push((tp.clone(), p.epoch, pos)),
                    None => {
                        p.resolving = false;
                        p.need = Need::Nothing;
                    }
                }
                continue;
            }
            work.push((tp.clone(), p.epoch, p.need));
        }
    }
    if work.is_empty() && validate.is_empty() {
        return (None, wake);
    }
    let shared = shared.clone();
    (
        Some(async move {
            let validated = validate_positions(&shared, validate).await;
            let mut results = Vec::new();
            // Committed offsets first; partitions without one fall back to the reset policy.
            let committed: Vec<TopicPartition> =
                work.iter().filter(|(_, _, n)| *n == Need::Committed).map(|(tp, _, _)| tp.clone()).collect();
            let mut found: BTreeMap<TopicPartition, Result<Option<Position>>> = BTreeMap::new();
            if !committed.is_empty() {
                match &shared.group {
                    Some(group) => match group.fetch_committed(&shared, &committed).await {
                        Ok(map) => {
                            for tp in &committed {
                                let pos = map
                                    .get(tp)
                                    .and_then(|c| c.as_ref())
                                    .map(|c| Position { offset: c.offset, leader_epoch: c.leader_epoch });
                                found.insert(tp.clone(), Ok(pos));
                            }
                        }
                        Err(e) => {
                            for tp in &committed {
                                found.insert(tp.clone(), Err(e.clone()));
                            }
                        }
                    },
                    None => {
                        for tp in &committed {
                            found.insert(tp.clone(), Ok(None));
                        }
                    }
                }
            }
            let reset = shared.config.auto_offset_reset;
            let mut by_time: BTreeMap<TopicPartition, i64> = BTreeMap::new();
            let mut plan: Vec<(TopicPartition, u64, Need)> = Vec::new();
            for (tp, epoch, need) in work {
                let policy = match need {
                    Need::Committed => match found.remove(&tp) {
                        Some(Ok(Some(pos))) => {
                            results.push((tp, epoch, Ok(Some(pos)), Need::Nothing));
                            continue;
                        }
                        Some(Err(e)) => {
                            results.push((tp, epoch, Err(e), need));
                            continue;
                        }
                        _ => reset,
                    },
                    Need::Reset(policy) => policy,
                    Need::Timestamp(ts) => {
                        by_time.insert(tp.clone(), ts);
                        plan.push((tp, epoch, need));
                        continue;
                    }
                    Need::Nothing | Need::Validate => continue,
                };
                match policy {
                    OffsetReset::Earliest => {
                        by_time.insert(tp.clone(), EARLIEST);
                    }
                    OffsetReset::Latest => {
                        by_time.insert(tp.clone(), LATEST);
                    }
                    OffsetReset::None => {
                        let e = Error::NoOffset {
                            topic: tp.topic.clone(),
                            partition: tp.partition,
                            reason: if need == Need::Committed {
                                "no committed offset".to_owned()
                            } else {
                                "the position is out of range".to_owned()
                            },
                        };
                        results.push((tp, epoch, Err(e), Need::Reset(OffsetReset::None)));
                        continue;
                    }
                }
                plan.push((tp, epoch, Need::Reset(policy)));
            }
            if !by_time.is_empty() {
                let answers = list_offsets(&shared.client, shared.config.isolation_level.wire(), &by_time).await;
                for (tp, epoch, need) in plan {
                    let r = match answers.get(&tp) {
                        Some(Ok(Some(o))) => Ok(Some(Position { offset: o.offset, leader_epoch: o.leader_epoch })),
                        // A timestamp after the last record: the end of the log.
                        Some(Ok(None)) => match need {
                            Need::Timestamp(_) => {
                                let end = BTreeMap::from([(tp.clone(), LATEST)]);
                                match list_offsets(&shared.client, shared.config.isolation_level.wire(), &end)
                                    .await
                                    .remove(&tp)
                                {
                                    Some(Ok(Some(o))) => Ok(Some(Position { offset: o.offset, leader_epoch: None })),
                                    Some(Err(e)) => Err(e),
                                    _ => Ok(None),
                                }
                            }
                            _ => Ok(None),
                        },
                        Some(Err(e)) => Err(e.clone()),
                        None => Ok(None),
                    };
                    results.push((tp, epoch, r, need));
                }
            }
            ResolveDone { results, validated }
        }),
        wake,
    )
}

fn handle_resolution(shared: &Arc<Shared>, done: ResolveDone) {
    let backoff = shared.config.client.retry_backoff;
    let mut st = shared.lock();
    let mut wake_app = false;
    for (tp, epoch, result, need) in done.results {
        let Some(p) = st.parts.get_mut(&tp) else { continue };
        if p.epoch != epoch {
            continue;
        }
        p.resolving = false;
        match result {
            Ok(Some(pos)) => {
                p.position = Some(pos);
                p.fetch_position = Some(pos);
                p.need = Need::Nothing;
                p.backoff_until = None;
                tracing::debug!(partition = %tp, offset = pos.offset, "position set");
            }
            Ok(None) => {
                p.need = need;
                p.backoff_until = Some(Instant::now() + backoff);
            }
            Err(e @ Error::NoOffset { .. }) => {
                p.stalled = true;
                st.errors.push_back(e);
                wake_app = true;
            }
            Err(e) => {
                tracing::debug!(partition = %tp, error = %e, "offset lookup failed; retrying");
                p.backoff_until = Some(Instant::now() + backoff);
                if !e.is_retriable() && !matches!(e, Error::Kafka { .. }) {
                    st.errors.push_back(e);
                    wake_app = true;
                }
            }
        }
    }
    let reset = shared.config.auto_offset_reset;
    for (tp, epoch, v) in done.validated {
        let Some(p) = st.parts.get_mut(&tp) else { continue };
        if p.epoch != epoch {
            continue;
        }
        p.resolving = false;
        let position = p.position.or(p.fetch_position).map_or(-1, |x| x.offset);
        match v {
            Validation::Valid(leader_epoch) => {
                p.need = Need::Nothing;
                p.validated_leader_epoch = leader_epoch;
                p.backoff_until = None;
            }
            Validation::Retry(e) => {
                tracing::debug!(partition = %tp, error = %e, "position validation failed; retrying");
                p.backoff_until = Some(Instant::now() + backoff);
            }
            Validation::Failed(e) => {
                p.need = Need::Nothing;
                p.stalled = true;
                st.errors.push_back(e);
                wake_app = true;
            }
            Validation::Truncated { end_offset, .. } if reset == OffsetReset::None => {
                p.need = Need::Nothing;
                p.stalled = true;
                st.errors.push_back(truncation(&tp, position, end_offset));
                wake_app = true;
            }
            Validation::Unknown if reset == OffsetReset::None => {
                p.need = Need::Nothing;
                p.stalled = true;
                st.errors.push_back(truncation(&tp, position, -1));
                wake_app = true;
            }
            Validation::Truncated { end_offset, leader_epoch } => {
                // As Java: go back to the first offset known to diverge (never forward past
                // what the application has not seen yet).
                tracing::warn!(partition = %tp, position, end_offset, "log truncation detected after a leader change; repositioning");
                let pos = Position { offset: end_offset.min(position.max(0)), leader_epoch: Some(leader_epoch) };
                st.reposition(&tp, Some(pos), Need::Nothing);
            }
            Validation::Unknown => {
                tracing::warn!(partition = %tp, position, "the new leader does not know the fetched epoch; resetting");
                st.reposition(&tp, None, Need::Reset(reset));
            }
        }
    }
    drop(st);
    shared.positions_changed.notify_waiters();
    if wake_app {
        shared.data_ready.notify_one();
    }
}

/// Sends a fetch to every broker that has fetchable partitions and none in flight. Returns
/// when the loop should look again (the earliest backoff expiry).
fn plan_fetches(
    shared: &Arc<Shared>,
    metadata: &Arc<Metadata>,
    sessions: &mut HashMap<i32, Session>,
    busy: &mut HashSet<i32>,
    fetches: &mut JoinSet<FetchDone>,
) -> Option<Instant> {
    let config = &shared.config;
    let now = Instant::now();
    let mut next_wake: Option<Instant> = None;
    let mut by_node: BTreeMap<i32, Vec<(TopicPartition, u64, SessionPart)>> = BTreeMap::new();
    let mut missing_leader = false;
    // Brokers with partitions held back only until the application drains their buffers, and
    // brokers with a fetchable partition that has data beyond its fetch position.
    let mut held: HashSet<i32> = HashSet::new();
    let mut behind: HashSet<i32> = HashSet::new();
    let read_committed = config.isolation_level.wire() == 1;
    {
        let mut st = shared.lock();
        if st.buffered >= config.max_buffered_bytes {
            return None;
        }
        let partition_limit = usize::try_from(config.max_partition_fetch_bytes).unwrap_or(usize::MAX);
        for (tp, p) in st.parts.iter_mut() {
            if p.paused || p.stalled || p.in_flight || p.need != Need::Nothing {
                continue;
            }
            let full = p.buffered >= partition_limit;
            let Some(pos) = p.fetch_position else { continue };
            if let Some(t) = p.backoff_until {
                if t > now {
                    next_wake = Some(next_wake.map_or(t, |w| w.min(t)));
                    continue;
                }
                p.backoff_until = None;
            }
            let meta = metadata.topic(&tp.topic).and_then(|t| t.partition(tp.partition));
            if let Some(m) = meta.filter(|m| m.leader_epoch >= 0) {
                if p.validated_leader_epoch < 0 || pos.leader_epoch.is_none() {
                    // First fetch at this position: Fetch's last_fetched_epoch (v12+) lets
                    // the leader report a divergence itself.
                    p.validated_leader_epoch = m.leader_epoch;
                } else if m.leader_epoch > p.validated_leader_epoch {
                    // A new leader (KIP-320): check the position against its log first.
                    p.need = Need::Validate;
                    next_wake = Some(now);
                    continue;
                }
            }
            let leader = metadata.leader(&tp.topic, tp.partition);
            let node = match p.preferred_replica {
                Some((node, until)) if until > now && metadata.brokers.contains_key(&node) => Some(node),
                _ => {
                    p.preferred_replica = None;
                    leader
                }
            };
            let Some(node) = node else {
                missing_leader |= !full;
                continue;
            };
            if full {
                held.insert(node);
                continue;
            }
            if busy.contains(&node) {
                continue;
            }
            // The end of what a fetch can return, as of the last response (-1: not known yet).
            let end = if read_committed && p.last_stable_offset >= 0 { p.last_stable_offset } else { p.high_watermark };
            if end < 0 || pos.offset < end {
                behind.insert(node);
            }
            by_node.entry(node).or_default().push((
                tp.clone(),
                p.epoch,
                SessionPart {
                    fetch_offset: pos.offset,
                    leader_epoch: meta.map_or(-1, |m| m.leader_epoch),
                    last_fetched_epoch: pos.leader_epoch.unwrap_or(-1),
                },
            ));
        }
        // A fetch of caught-up partitions only is held by the broker for up to
        // fetch.max.wait.ms, and while it is in flight nothing else can be fetched from that
        // broker: partitions whose buffers the application is draining would wait for it
        // although the broker has their data. Leave such a fetch for later: the application
        // wakes this task as it frees buffer space, and the fetch then carries those
        // partitions too and is answered at once.
        by_node.retain(|node, _| behind.contains(node) || !held.contains(node));
        for parts in by_node.values() {
            for (tp, _, _) in parts {
                if let Some(p) = st.parts.get_mut(tp) {
                    p.in_flight = true;
                }
            }
        }
    }
    if missing_leader {
        shared.client.request_refresh();
        let t = now + config.client.retry_backoff;
        next_wake = Some(next_wake.map_or(t, |w| w.min(t)));
    }
    for (node, parts) in by_node {
        busy.insert(node);
        let session = sessions.entry(node).or_default();
        let wanted: BTreeMap<TopicPartition, SessionPart> = parts.iter().map(|(tp, _, sp)| (tp.clone(), *sp)).collect();
        let sent: Vec<Sent> = parts
            .iter()
            .map(|(tp, epoch, sp)| Sent { tp: tp.clone(), epoch: *epoch, fetch_offset: sp.fetch_offset })
            .collect();
        let shared = shared.clone();
        let metadata = metadata.clone();
        let full = session.epoch == 0;
        // What to put in the request: everything for a full fetch; for an incremental one,
        // the partitions that are new or changed, and the ones to forget.
        let (send, forget): (Vec<(TopicPartition, SessionPart)>, Vec<TopicPartition>) = if full {
            (wanted.iter().map(|(tp, sp)| (tp.clone(), *sp)).collect(), Vec::new())
        } else {
            let send = wanted
                .iter()
                .filter(|(tp, sp)| session.parts.get(*tp) != Some(*sp))
                .map(|(tp, sp)| (tp.clone(), *sp))
                .collect();
            let forget = session.parts.keys().filter(|tp| !wanted.contains_key(*tp)).cloned().collect();
            (send, forget)
        };
        let (session_id, session_epoch) = (session.id, session.epoch);
        // Responses at v13+ name topics by id, and an incremental one may carry any partition
        // of the session: map the ids of every wanted topic.
        let mut names: HashMap<Uuid, String> = HashMap::new();
        for tp in wanted.keys() {
            if let Some(t) = metadata.topic(&tp.topic).filter(|t| t.topic_id != Uuid::default()) {
                names.entry(t.topic_id).or_insert_with(|| tp.topic.clone());
            }
        }
        fetches.spawn(async move {
            let result = send_fetch(&shared, &metadata, node, session_id, session_epoch, &send, &forget).await;
            FetchDone { node, sent, wanted, full, names, result }
        });
    }
    next_wake
}

async fn send_fetch(
    shared: &Arc<Shared>,
    metadata: &Metadata,
    node: i32,
    session_id: i32,
    session_epoch: i32,
    send: &[(TopicPartition, SessionPart)],
    forget: &[TopicPartition],
) -> Result<FetchResponse> {
    let config = &shared.config;
    let conn = shared.client.connection(node).await?;
    let mut version = conn.version(ApiKey::Fetch, 4)?;
    // Fetch v13+ names topics by id: use it only when every topic's id is known.
    let id_of = |topic: &str| metadata.topic(topic).map(|t| t.topic_id).filter(|id| *id != Uuid::default());
    if version >= 13
        && send.iter().map(|(tp, _)| &tp.topic).chain(forget.iter().map(|tp| &tp.topic)).any(|t| id_of(t).is_none())
    {
        version = 12;
    }
    let use_sessions = version >= 7;
    let mut topics: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
    for (tp, sp) in send {
        topics.entry(tp.topic.as_str()).or_default().push(FetchPartition {
            partition: tp.partition,
            current_leader_epoch: sp.leader_epoch,
            fetch_offset: sp.fetch_offset,
            last_fetched_epoch: sp.last_fetched_epoch,
            log_start_offset: -1,
            partition_max_bytes: config.max_partition_fetch_bytes,
            ..Default::default()
        });
    }
    let mut forgotten: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in forget {
        forgotten.entry(tp.topic.as_str()).or_default().push(tp.partition);
    }
    let topic_id = |t: &str| if version >= 13 { id_of(t).unwrap_or_default() } else { Uuid::default() };
    let request = FetchRequest {
        replica_id: -1,
        max_wait_ms: i32::try_from(config.fetch_max_wait.as_millis()).unwrap_or(i32::MAX),
        min_bytes: config.fetch_min_bytes,
        max_bytes: config.fetch_max_bytes,
        isolation_level: config.isolation_level.wire(),
        session_id: if use_sessions { session_id } else { 0 },
        session_epoch: if use_sessions { session_epoch } else { -1 },
        topics: topics
            .into_iter()
            .map(|(t, partitions)| FetchTopic {
                topic: t.to_owned(),
                topic_id: topic_id(t),
                partitions,
                ..Default::default()
            })
            .collect(),
        forgotten_topics_data: if use_sessions {
            forgotten
                .into_iter()
                .map(|(t, partitions)| ForgottenTopic {
                    topic: t.to_owned(),
                    topic_id: topic_id(t),
                    partitions,
                    ..Default::default()
                })
                .collect()
        } else {
            Vec::new()
        },
        rack_id: config.client_rack.clone().unwrap_or_default(),
        ..Default::default()
    };
    tracing::trace!(node, session_id, session_epoch, version, send = send.len(), forget = forget.len(), "fetch");
    let timeout = config.client.request_timeout + config.fetch_max_wait;
    let frame = conn.send(&request, version, true, timeout)?.await?;
    let (_, response) = frame::decode_response::<FetchResponse>(frame, version).map_err(|e| conn.protocol_error(e))?;
    Ok(response)
}

fn handle_fetch(shared: &Arc<Shared>, sessions: &mut HashMap<i32, Session>, done: FetchDone) {
    let config = &shared.config;
    let session = sessions.entry(done.node).or_default();
    let backoff = config.client.retry_backoff;
    let sent_epochs: HashMap<&TopicPartition, (u64, i64)> =
        done.sent.iter().map(|s| (&s.tp, (s.epoch, s.fetch_offset))).collect();
    let response = match done.result {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(node = done.node, error = %e, "fetch failed");
            session.reset();
            shared.client.request_refresh();
            let mut st = shared.lock();
            let until = Instant::now() + backoff;
            for s in &done.sent {
                if let Some(p) = st.parts.get_mut(&s.tp) {
                    p.in_flight = false;
                    if p.epoch == s.epoch {
                        p.backoff_until = Some(until);
                    }
                }
            }
            return;
        }
    };
    let top = ErrorCode::from_code(response.error_code);
    if top != ErrorCode::None {
        tracing::debug!(node = done.node, error = top.name(), "fetch session error");
        session.reset();
        let mut st = shared.lock();
        for s in &done.sent {
            if let Some(p) = st.parts.get_mut(&s.tp) {
                p.in_flight = false;
                if top != ErrorCode::FetchSessionIdNotFound && top != ErrorCode::InvalidFetchSessionEpoch {
                    p.backoff_until = Some(Instant::now() + backoff);
                }
            }
        }
        return;
    }
    // The session moves on.
    if done.full {
        session.id = response.session_id;
        session.epoch = if response.session_id != 0 { 1 } else { 0 };
    } else {
        session.epoch = if session.epoch == i32::MAX { 1 } else { session.epoch + 1 };
    }
    session.parts = done.wanted;
    if session.id == 0 {
        session.epoch = 0;
    }

    let decompress_limit = usize::try_from(config.fetch_max_bytes).unwrap_or(usize::MAX).max(64 << 20);
    let read_committed = config.isolation_level.wire() == 1;
    let mut refresh = false;
    let mut wake_app = false;
    let now = Instant::now();
    let mut st = shared.lock();
    for s in &done.sent {
        if let Some(p) = st.parts.get_mut(&s.tp) {
            p.in_flight = false;
        }
    }
    for topic in response.responses {
        let name = if topic.topic.is_empty() {
            match done.names.get(&topic.topic_id) {
                Some(n) => n.clone(),
                None => continue,
            }
        } else {
            topic.topic
        };
        for pd in topic.partitions {
            let tp = TopicPartition::new(name.clone(), pd.partition_index);
            let Some(&(epoch, fetch_offset)) = sent_epochs.get(&tp) else { continue };
            let Some(p) = st.parts.get_mut(&tp) else { continue };
            if p.epoch != epoch || p.fetch_position.map(|f| f.offset) != Some(fetch_offset) {
                continue;
            }
            let code = ErrorCode::from_code(pd.error_code);
            match code {
                ErrorCode::None => {}
                ErrorCode::OffsetOutOfRange => {
                    tracing::info!(partition = %tp, offset = fetch_offset, "offset out of range; resetting");
                    st.reposition(&tp, None, Need::Reset(config.auto_offset_reset));
                    continue;
                }
                ErrorCode::NotLeaderOrFollower
                | ErrorCode::UnknownTopicOrPartition
                | ErrorCode::FencedLeaderEpoch
                | ErrorCode::UnknownLeaderEpoch
                | ErrorCode::KafkaStorageError
                | ErrorCode::OffsetNotAvailable
                | ErrorCode::ReplicaNotAvailable
                | ErrorCode::LeaderNotAvailable
                | ErrorCode::UnknownTopicId
                | ErrorCode::InconsistentTopicId => {
                    p.preferred_replica = None;
                    p.backoff_until = Some(now + backoff);
                    refresh = true;
                    continue;
                }
                other => {
                    p.stalled = true;
                    let e = Error::kafka(other, Some(format!("fetching {tp}")));
                    st.errors.push_back(e);
                    wake_app = true;
                    continue;
                }
            }
            p.high_watermark = pd.high_watermark;
            p.last_stable_offset = pd.last_stable_offset;
            p.log_start_offset = pd.log_start_offset;
            if pd.preferred_read_replica >= 0 && pd.preferred_read_replica != done.node {
                p.preferred_replica = Some((pd.preferred_read_replica, now + config.client.metadata_max_age));
            }
            if pd.diverging_epoch.epoch >= 0 && pd.diverging_epoch.end_offset >= 0 {
                // KIP-320: the leader's log diverged from what we read at this epoch.
                let end = pd.diverging_epoch.end_offset;
                let position = p.position.map_or(fetch_offset, |x| x.offset);
                if end < position && config.auto_offset_reset == OffsetReset::None {
                    p.stalled = true;
                    st.errors.push_back(truncation(&tp, position, end));
                    wake_app = true;
                } else {
                    tracing::warn!(partition = %tp, position, end_offset = end, "log truncation detected; repositioning");
                    let pos = Position { offset: end.min(position), leader_epoch: Some(pd.diverging_epoch.epoch) };
                    st.reposition(&tp, Some(pos), Need::Nothing);
                }
                continue;
            }
            let Some(records) = pd.records.filter(|r| !r.is_empty()) else { continue };
            match scan_end(&records) {
                Ok(Some((next, batch_epoch))) => {
                    let aborted = read_committed.then(|| {
                        pd.aborted_transactions
                            .unwrap_or_default()
                            .iter()
                            .map(|a| (a.producer_id, a.first_offset))
                            .collect::<Vec<_>>()
                    });
                    let fetch_epoch = p.fetch_position.and_then(|f| f.leader_epoch);
                    let cf = CompletedFetch::new(FetchedData {
                        epoch,
                        topic: p.topic.clone(),
                        partition: tp.partition,
                        records: records.clone(),
                        fetch_offset,
                        fetch_epoch,
                        aborted,
                        check_crcs: config.check_crcs,
                        decompress_limit,
                    });
                    let size = cf.size;
                    p.fetch_position = Some(Position { offset: next, leader_epoch: batch_epoch.or(fetch_epoch) });
                    p.buffer.push_back(cf);
                    p.buffered += size;
                    st.buffered += size;
                    wake_app = true;
                }
                Ok(None) => {
                    // Not even one whole batch: the batch is larger than the fetch limit
                    // (only brokers before KIP-74 do this).
                    p.stalled = true;
                    st.errors.push_back(Error::RecordTooLarge {
                        size: records.len(),
                        limit: usize::try_from(config.max_partition_fetch_bytes).unwrap_or(usize::MAX),
                        setting: "max.partition.fetch.bytes",
                    });
                    wake_app = true;
                }
                Err(e) => {
                    p.stalled = true;
                    st.errors.push_back(Error::Corrupt {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                        offset: fetch_offset,
                        reason: e.to_string(),
                    });
                    wake_app = true;
                }
            }
        }
    }
    drop(st);
    if refresh {
        shared.client.request_refresh();
    }
    if wake_app {
        shared.data_ready.notify_one();
    }
}
