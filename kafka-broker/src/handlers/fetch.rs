//! Fetch (key 1), versions 4-17 (Kafka 4 dropped 0-3, which answer UNSUPPORTED_VERSION):
//! long polling on `max_wait_ms`/`min_bytes` (a waiting fetch is answered as soon as enough
//! data arrives), `max_bytes` and per-partition limits with KIP-74's "first batch whole",
//! OFFSET_OUT_OF_RANGE, read_uncommitted up to the high watermark and read_committed up to the
//! last stable offset with the aborted transactions overlapping the returned batches (producer
//! id and first offset, Kafka's `collectAbortedTransactions`; null for read_uncommitted), the
//! last stable offset either way, fetch sessions (KIP-227: full and incremental), topic ids (v13+),
//! reads from followers and the preferred read replica for clients that send a rack
//! (KIP-392, v11+).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use kafka_protocol::primitives::Uuid;
use kafka_protocol::ErrorCode;

use super::{check_leader_epoch, find_partition, lookup_partition, Ctx, Handled, PartitionError};
use crate::cluster::State;
use crate::quotas::QuotaKind;

pub(crate) const MIN_VERSION: i16 = 4;
pub(crate) const MAX_VERSION: i16 = 17;

/// Kafka's `max.incremental.fetch.session.cache.slots`.
const MAX_SESSIONS: usize = 1000;
/// Kafka's `fetch.max.bytes` broker default (55 MiB): a cap on any response.
const BROKER_FETCH_MAX_BYTES: usize = 55 * 1024 * 1024;

/// One partition a fetch session tracks.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SessionPartition {
    topic: String,
    topic_id: Uuid,
    partition: i32,
    fetch_offset: i64,
    max_bytes: i32,
    current_leader_epoch: i32,
    /// What the last response told the client, to decide what an incremental response
    /// must include.
    sent_high_watermark: i64,
    sent_log_start_offset: i64,
    sent_last_stable_offset: i64,
    sent_error: i16,
}

/// A fetch session (KIP-227).
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// The epoch the next incremental request must carry.
    epoch: i32,
    partitions: Vec<SessionPartition>,
    last_used: u64,
}

/// Every broker's fetch sessions.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    by_id: HashMap<i32, Session>,
    next_id: i32,
    clock: u64,
}

impl Sessions {
    fn new_id(&mut self) -> i32 {
        loop {
            self.next_id = self.next_id.wrapping_add(1).max(1);
            if !self.by_id.contains_key(&self.next_id) {
                return self.next_id;
            }
        }
    }
}

fn topic_error(
    version: i16,
    topic: &str,
    topic_id: Uuid,
    partitions: &[i32],
    code: ErrorCode,
) -> FetchableTopicResponse {
    FetchableTopicResponse {
        topic: if version < 13 { topic.to_string() } else { String::new() },
        topic_id,
        partitions: partitions.iter().map(|p| partition_error(*p, code, -1, -1)).collect(),
        ..Default::default()
    }
}

fn partition_error(partition: i32, code: ErrorCode, hw: i64, log_start: i64) -> PartitionData {
    PartitionData {
        partition_index: partition,
        error_code: code.code(),
        high_watermark: hw,
        last_stable_offset: hw,
        log_start_offset: log_start,
        records: Some(Bytes::new()),
        ..Default::default()
    }
}

/// Refuses every partition of `req` with `code` (removed versions, injected errors).
pub(crate) fn refuse_all(req: &FetchRequest, version: i16, code: ErrorCode) -> FetchResponse {
    FetchResponse {
        responses: req
            .topics
            .iter()
            .map(|t| {
                let parts: Vec<i32> = t.partitions.iter().map(|p| p.partition).collect();
                topic_error(version, &t.topic, t.topic_id, &parts, code)
            })
            .collect(),
        ..Default::default()
    }
}

pub(crate) fn handle(state: &mut State, ctx: Ctx<'_>, req: &FetchRequest) -> Handled {
    let version = ctx.version;
    // Followers replicate from leaders in Kafka; here replication is simulated and only
    // consumers fetch.
    let sessions_on = version >= 7;
    let (session_id, epoch) = if sessions_on { (req.session_id, req.session_epoch) } else { (0, -1) };

    // The partitions this fetch covers, in order: from the session (incremental) or the request.
    let mut incremental = false;
    let mut session_partitions: Vec<SessionPartition>;
    let mut unknown_ids: Vec<(Uuid, Vec<i32>)> = Vec::new();
    let requested = |state: &State, unknown_ids: &mut Vec<(Uuid, Vec<i32>)>| -> Vec<SessionPartition> {
        let mut out = Vec::new();
        for t in &req.topics {
            let name = if version >= 13 {
                match state.topic_name_by_id(t.topic_id) {
                    Some(n) => n.to_string(),
                    None => {
                        unknown_ids.push((t.topic_id, t.partitions.iter().map(|p| p.partition).collect()));
                        continue;
                    }
                }
            } else {
                t.topic.clone()
            };
            let id = state.topics.get(&name).map_or(Uuid::ZERO, |t| t.id);
            for p in &t.partitions {
                out.push(SessionPartition {
                    topic: name.clone(),
                    topic_id: id,
                    partition: p.partition,
                    fetch_offset: p.fetch_offset,
                    max_bytes: p.partition_max_bytes,
                    current_leader_epoch: p.current_leader_epoch,
                    sent_high_watermark: -1,
                    sent_log_start_offset: -1,
                    sent_last_stable_offset: -1,
                    sent_error: -1,
                });
            }
        }
        out
    };
    if session_id != 0 && epoch > 0 {
        let Some(session) = state.fetch_sessions.by_id.get(&session_id) else {
            return session_error(ErrorCode::FetchSessionIdNotFound);
        };
        if session.epoch != epoch {
            return session_error(ErrorCode::InvalidFetchSessionEpoch);
        }
        incremental = true;
        session_partitions = session.partitions.clone();
        // Forgotten partitions leave; requested ones are added or updated in place.
        for f in &req.forgotten_topics_data {
            let name = if version >= 13 {
                state.topic_name_by_id(f.topic_id).map(str::to_string).unwrap_or_default()
            } else {
                f.topic.clone()
            };
            session_partitions.retain(|p| !(p.topic == name && f.partitions.contains(&p.partition)));
        }
        for np in requested(state, &mut unknown_ids) {
            match session_partitions.iter_mut().find(|p| p.topic == np.topic && p.partition == np.partition) {
                Some(p) => {
                    p.fetch_offset = np.fetch_offset;
                    p.max_bytes = np.max_bytes;
                    p.current_leader_epoch = np.current_leader_epoch;
                }
                None => session_partitions.push(np),
            }
        }
    } else {
        if session_id != 0 && !state.fetch_sessions.by_id.contains_key(&session_id) && epoch == 0 {
            // Closing an unknown session to open a new one: Kafka answers the error.
            return session_error(ErrorCode::FetchSessionIdNotFound);
        }
        session_partitions = requested(state, &mut unknown_ids);
    }

    // Read every partition.
    let rack = (version >= 11 && !req.rack_id.is_empty()).then(|| req.rack_id.clone());
    let isolation_committed = req.isolation_level == 1;
    let max_total = usize::try_from(req.max_bytes).unwrap_or(0).min(BROKER_FETCH_MAX_BYTES);
    let mut remaining = max_total;
    let mut min_one = true;
    // A read ended early at a large batch (see `log::STANDALONE_BATCH`) with more data there.
    let mut more_ready = false;
    let mut total_bytes = 0usize;
    let mut any_error = !unknown_ids.is_empty();
    let mut leaders_named: Vec<i32> = Vec::new();
    let mut results: Vec<(usize, PartitionData)> = Vec::new();
    for (i, sp) in session_partitions.iter().enumerate() {
        let data = read_partition(
            state,
            ctx.broker,
            sp,
            rack.as_deref(),
            isolation_committed,
            &mut remaining,
            &mut min_one,
            &mut more_ready,
        );
        let data = match data {
            Ok(d) => d,
            Err(e) => {
                let (hw, start) = lookup_partition(state, &sp.topic, sp.partition)
                    .map_or((-1, -1), |p| (p.log.high_watermark(), p.log.log_start_offset()));
                let mut d = partition_error(sp.partition, e.code, hw, start);
                if let (Some((leader, epoch)), true) = (e.leader, version >= 12) {
                    d.current_leader =
                        LeaderIdAndEpoch { leader_id: leader, leader_epoch: epoch, ..Default::default() };
                    if leader >= 0 && !leaders_named.contains(&leader) {
                        leaders_named.push(leader);
                    }
                }
                d
            }
        };
        if data.error_code != 0 {
            any_error = true;
        }
        total_bytes += data.records.as_ref().map_or(0, Bytes::len);
        results.push((i, data));
    }

    // Long poll: wait for min_bytes unless there is an error to report or the time is up.
    // Kafka answers at once when max_wait is 0, nothing is asked for, enough bytes are there,
    // a partition has an error, or the client is pointed at another replica; and, as Kafka
    // completes a delayed fetch whose offset is on an older segment, when a read ended at a
    // large batch with more data behind it.
    let min_bytes = usize::try_from(req.min_bytes).unwrap_or(0);
    let redirect = results.iter().any(|(_, d)| d.preferred_read_replica >= 0);
    if !ctx.final_attempt
        && !any_error
        && !redirect
        && !session_partitions.is_empty()
        && req.max_wait_ms > 0
        && total_bytes < min_bytes
        && !more_ready
    {
        let wait = Duration::from_millis(u64::try_from(req.max_wait_ms).unwrap_or(0));
        return Handled::Park(Instant::now() + wait);
    }

    // Quota: a client over its fetch byte rate gets an empty response and a throttle time
    // (Kafka's getThrottledResponse); the bytes are taken back since they were not sent.
    let client = ctx.header.client_id.as_deref().unwrap_or("");
    let mut throttle_time_ms = 0;
    if state.quotas.applies(client, QuotaKind::Fetch) {
        throttle_time_ms = state.quotas.record(client, QuotaKind::Fetch, total_bytes, ctx.now_ms);
        if throttle_time_ms > 0 {
            state.quotas.unrecord(client, QuotaKind::Fetch, total_bytes, ctx.now_ms);
        }
    }
    let throttled = throttle_time_ms > 0;

    // Commit the session and decide which partitions an incremental response carries.
    let mut response_session_id = 0;
    let mut order: Vec<(String, Uuid)> = Vec::new();
    let mut per_topic: HashMap<(String, Uuid), Vec<PartitionData>> = HashMap::new();
    for (i, data) in results {
        if throttled {
            break;
        }
        let Some(sp) = session_partitions.get_mut(i) else { continue };
        let changed = data.records.as_ref().is_some_and(|r| !r.is_empty())
            || data.error_code != 0
            || data.high_watermark != sp.sent_high_watermark
            || data.log_start_offset != sp.sent_log_start_offset
            || data.last_stable_offset != sp.sent_last_stable_offset
            || data.preferred_read_replica >= 0;
        sp.sent_high_watermark = data.high_watermark;
        sp.sent_log_start_offset = data.log_start_offset;
        sp.sent_last_stable_offset = data.last_stable_offset;
        sp.sent_error = data.error_code;
        if incremental && !changed {
            continue;
        }
        let key = (sp.topic.clone(), sp.topic_id);
        if !per_topic.contains_key(&key) {
            order.push(key.clone());
        }
        per_topic.entry(key).or_default().push(data);
    }
    let sessions = &mut state.fetch_sessions;
    sessions.clock += 1;
    let clock = sessions.clock;
    if sessions_on {
        if incremental {
            if let Some(s) = sessions.by_id.get_mut(&session_id) {
                s.partitions = session_partitions;
                s.epoch = next_epoch(epoch);
                s.last_used = clock;
            }
            response_session_id = session_id;
        } else {
            if session_id != 0 {
                sessions.by_id.remove(&session_id);
            }
            if epoch == 0 {
                if sessions.by_id.len() >= MAX_SESSIONS {
                    // Evict the least recently used session, as Kafka's cache does.
                    if let Some(oldest) = sessions.by_id.iter().min_by_key(|(_, s)| s.last_used).map(|(id, _)| *id) {
                        sessions.by_id.remove(&oldest);
                    }
                }
                let id = sessions.new_id();
                sessions.by_id.insert(id, Session { epoch: 1, partitions: session_partitions, last_used: clock });
                response_session_id = id;
            }
        }
    }

    let mut responses: Vec<FetchableTopicResponse> = order
        .into_iter()
        .map(|key| {
            let partitions = per_topic.remove(&key).unwrap_or_default();
            FetchableTopicResponse {
                topic: if version < 13 { key.0 } else { String::new() },
                topic_id: key.1,
                partitions,
                ..Default::default()
            }
        })
        .collect();
    for (id, parts) in unknown_ids.into_iter().filter(|_| !throttled) {
        responses.push(topic_error(version, "", id, &parts, ErrorCode::UnknownTopicId));
    }
    let node_endpoints = if version >= 16 {
        state
            .brokers
            .iter()
            .filter(|b| leaders_named.contains(&b.node_id))
            .map(|b| NodeEndpoint {
                node_id: b.node_id,
                host: b.host.clone(),
                port: i32::from(b.port),
                rack: b.rack.clone(),
                ..Default::default()
            })
            .collect()
    } else {
        Vec::new()
    };
    Handled::Respond(
        FetchResponse {
            throttle_time_ms,
            error_code: 0,
            session_id: response_session_id,
            responses,
            node_endpoints,
            ..Default::default()
        }
        .into(),
    )
}

/// The epoch after `epoch` (wrapping to 1, as Kafka's `nextEpoch`).
fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

fn session_error(code: ErrorCode) -> Handled {
    Handled::Respond(FetchResponse { error_code: code.code(), session_id: 0, ..Default::default() }.into())
}

#[allow(clippy::too_many_arguments)]
fn read_partition(
    state: &mut State,
    broker: i32,
    sp: &SessionPartition,
    rack: Option<&str>,
    committed: bool,
    remaining: &mut usize,
    min_one: &mut bool,
    more_ready: &mut bool,
) -> Result<PartitionData, PartitionError> {
    // Only rack-aware fetches need the brokers' racks (copied out: the partition borrow below
    // holds the state).
    let racks: Vec<(i32, Option<String>)> = match (rack, state.settings.rack_aware_replica_selector) {
        (Some(_), true) => state.brokers.iter().map(|b| (b.node_id, b.rack.clone())).collect(),
        _ => Vec::new(),
    };
    let rack_aware = !racks.is_empty();
    let (_, partition) = find_partition(state, &sp.topic, sp.partition)?;
    let is_leader = partition.leader == broker;
    // Consumers that send their rack (v11+) may read from any in-sync replica (KIP-392).
    let may_serve = is_leader || (rack.is_some() && partition.isr.contains(&broker));
    if !may_serve {
        let code = if partition.leader < 0 { ErrorCode::LeaderNotAvailable } else { ErrorCode::NotLeaderOrFollower };
        return Err(PartitionError {
            code,
            message: format!("This server is not the leader for partition {}-{}", sp.topic, sp.partition),
            leader: Some((partition.leader, partition.leader_epoch)),
        });
    }
    check_leader_epoch(partition, sp.current_leader_epoch)?;
    let log = &partition.log;
    let (hw, lso, start, end) =
        (log.high_watermark(), log.last_stable_offset(), log.log_start_offset(), log.log_end_offset());
    let mut data = PartitionData {
        partition_index: sp.partition,
        error_code: 0,
        high_watermark: hw,
        last_stable_offset: lso,
        log_start_offset: start,
        aborted_transactions: committed.then(Vec::new),
        preferred_read_replica: -1,
        records: Some(Bytes::new()),
        ..Default::default()
    };
    if sp.fetch_offset < start || sp.fetch_offset > end {
        data.error_code = ErrorCode::OffsetOutOfRange.code();
        return Ok(data);
    }
    // The rack-aware selector (replica.selector.class) points the client at an in-sync
    // replica in its rack; the client then fetches from there.
    if let (Some(rack), true, true) = (rack, rack_aware, is_leader) {
        let in_rack = |id: &i32| racks.iter().any(|(n, r)| n == id && r.as_deref() == Some(rack));
        if !in_rack(&broker) {
            if let Some(replica) = partition.isr.iter().find(|id| in_rack(id)) {
                data.preferred_read_replica = *replica;
                return Ok(data);
            }
        }
    }
    let upper = if committed { lso } else { hw };
    let limit = usize::try_from(sp.max_bytes).unwrap_or(0).min(*remaining);
    let read = log.read(sp.fetch_offset, limit, *min_one, upper);
    *more_ready |= read.cut_short;
    if read.complete_batches > 0 || !read.records.is_empty() {
        *remaining = remaining.saturating_sub(read.records.len());
        if read.complete_batches > 0 {
            *min_one = false;
        }
    }
    if committed {
        let aborted = log.aborted_txns_in(sp.fetch_offset, read.end_offset);
        data.aborted_transactions = Some(
            aborted
                .into_iter()
                .map(|a| AbortedTransaction {
                    producer_id: a.producer_id,
                    first_offset: a.first_offset,
                    ..Default::default()
                })
                .collect(),
        );
    }
    data.records = Some(read.records);
    Ok(data)
}
