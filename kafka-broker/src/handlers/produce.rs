//! Produce (key 0), versions 3-11: magic 2 record batches only, as in Kafka 4 (KIP-896); v0-2
//! get UNSUPPORTED_VERSION for every partition. acks 0, 1 and all (against
//! `min.insync.replicas` and the simulated ISR), batch validation, idempotent producers,
//! leader hints for misdirected batches (KIP-951, v10+).
//!
//! Transactional batches: the request must name the transactional id
//! (TRANSACTIONAL_ID_AUTHORIZATION_FAILED otherwise, as Kafka's authorizer answers a null id),
//! and the partition must be in the producer's open transaction. Kafka 4 asks the transaction
//! coordinator (KIP-890's verification) and translates its answer for producers: a partition
//! never added is INVALID_TXN_STATE before v11 and TRANSACTION_ABORTABLE from v11, a stale
//! epoch INVALID_PRODUCER_EPOCH, a transaction being completed NOT_ENOUGH_REPLICAS
//! (retriable). The bundled broker asks it for every transactional batch (Kafka skips the
//! question while the partition already has the producer's transaction open, which gives
//! the same answers).

use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::records::RecordSetIter;
use kafka_protocol::ErrorCode;

use super::{leader_partition, lookup_partition_mut, Ctx, Handled};
use crate::cluster::State;
use crate::quotas::QuotaKind;

/// Oldest version served; older ones carry magic 0/1 messages, which Kafka 4 no longer takes.
pub(crate) const MIN_VERSION: i16 = 3;
pub(crate) const MAX_VERSION: i16 = 11;

fn refused(index: i32, code: ErrorCode, message: Option<String>) -> PartitionProduceResponse {
    PartitionProduceResponse {
        index,
        error_code: code.code(),
        base_offset: -1,
        log_append_time_ms: -1,
        log_start_offset: -1,
        error_message: message,
        current_leader: LeaderIdAndEpoch { leader_id: -1, leader_epoch: -1, ..Default::default() },
        ..Default::default()
    }
}

/// Refuses every partition of `req` with `code` (removed versions, injected errors).
pub(crate) fn refuse_all(req: &ProduceRequest, code: ErrorCode) -> ProduceResponse {
    ProduceResponse {
        responses: req
            .topic_data
            .iter()
            .map(|t| TopicProduceResponse {
                name: t.name.clone(),
                partition_responses: t.partition_data.iter().map(|p| refused(p.index, code, None)).collect(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

pub(crate) fn handle(state: &mut State, ctx: Ctx<'_>, req: &mut ProduceRequest) -> Handled {
    let acks = req.acks;
    let request_bytes: usize =
        req.topic_data.iter().flat_map(|t| &t.partition_data).map(|p| p.records.as_ref().map_or(0, |r| r.len())).sum();
    let mut any_error: Option<String> = None;
    let mut leaders_named: Vec<i32> = Vec::new();
    let mut appended = false;
    // A request with one batch may hand its buffer to the log (stored without a copy when
    // nothing else holds it). Batches of a request with several share one frame buffer: each
    // is copied, or the first stored in place would keep the whole frame alive.
    let batches = req.topic_data.iter().flat_map(|t| &t.partition_data).filter(|p| p.records.is_some()).count();
    let transactional_id = req.transactional_id.as_deref();
    let responses = req
        .topic_data
        .iter_mut()
        .map(|t| {
            let name = &t.name;
            let partition_responses = t
                .partition_data
                .iter_mut()
                .map(|p| {
                    let records = if batches == 1 { p.records.take() } else { p.records.clone() };
                    let result = produce_one(state, ctx, acks, transactional_id, name, p.index, records);
                    match result {
                        Ok(r) => {
                            appended |= !r.duplicate;
                            PartitionProduceResponse {
                                index: p.index,
                                error_code: 0,
                                base_offset: r.base_offset,
                                log_append_time_ms: r.log_append_time_ms,
                                log_start_offset: r.log_start_offset,
                                error_message: None,
                                current_leader: LeaderIdAndEpoch {
                                    leader_id: -1,
                                    leader_epoch: -1,
                                    ..Default::default()
                                },
                                ..Default::default()
                            }
                        }
                        Err(e) => {
                            any_error.get_or_insert_with(|| format!("{}-{}: {}", name, p.index, e.message));
                            let message = (ctx.version >= 8).then_some(e.message);
                            let mut resp = refused(p.index, e.code, message);
                            if let (Some((leader, epoch)), true) = (e.leader, ctx.version >= 10) {
                                resp.current_leader.leader_id = leader;
                                resp.current_leader.leader_epoch = epoch;
                                if leader >= 0 && !leaders_named.contains(&leader) {
                                    leaders_named.push(leader);
                                }
                            }
                            resp
                        }
                    }
                })
                .collect();
            TopicProduceResponse { name: t.name.clone(), partition_responses, ..Default::default() }
        })
        .collect();
    if appended {
        state.data_version += 1;
    }
    let client = ctx.header.client_id.as_deref().unwrap_or("");
    let mut throttle_time_ms = 0;
    if state.quotas.applies(client, QuotaKind::Produce) {
        throttle_time_ms = state.quotas.record(client, QuotaKind::Produce, request_bytes, ctx.now_ms);
    }
    if acks == 0 {
        // Kafka tells an acks=0 producer about a failure the only way it can: by closing the
        // connection, so that the producer refreshes its metadata.
        return match any_error {
            Some(reason) => Handled::Close(format!("acks=0 produce failed: {reason}")),
            None => Handled::Silent,
        };
    }
    let node_endpoints = if ctx.version >= 10 {
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
    Handled::Respond(ProduceResponse { responses, throttle_time_ms, node_endpoints, ..Default::default() }.into())
}

/// Kafka's transaction verification before a transactional batch is appended.
fn verify_transaction(
    state: &State,
    version: i16,
    transactional_id: Option<&str>,
    header: &kafka_protocol::records::RecordBatchHeader,
    topic: &str,
    index: i32,
) -> Result<(), Failure> {
    let Some(id) = transactional_id else {
        return Err((
            ErrorCode::TransactionalIdAuthorizationFailed,
            "Transactional records need the request's transactional id".to_string(),
        )
            .into());
    };
    if header.producer_id < 0 {
        return Err((ErrorCode::InvalidRecord, "Transactional batch without a producer id".to_string()).into());
    }
    let code = state.verify_txn_partition(id, header.producer_id, header.producer_epoch, &(topic.to_string(), index));
    let (code, message) = match code {
        ErrorCode::None => return Ok(()),
        ErrorCode::TransactionAbortable | ErrorCode::InvalidTxnState => {
            let code = if version >= 11 { ErrorCode::TransactionAbortable } else { ErrorCode::InvalidTxnState };
            (code, "Partition was not added to the transaction".to_string())
        }
        ErrorCode::ProducerFenced => (
            ErrorCode::InvalidProducerEpoch,
            format!("Producer epoch {} of producer {} is not the current one", header.producer_epoch, header.producer_id),
        ),
        ErrorCode::ConcurrentTransactions => (
            ErrorCode::NotEnoughReplicas,
            "Unable to verify the partition has been added to the transaction. Underlying error: CONCURRENT_TRANSACTIONS"
                .to_string(),
        ),
        other => (other, other.description().to_string()),
    };
    Err((code, message).into())
}

struct Produced {
    base_offset: i64,
    log_append_time_ms: i64,
    log_start_offset: i64,
    duplicate: bool,
}

struct Failure {
    code: ErrorCode,
    message: String,
    /// The current leader, for NOT_LEADER_OR_FOLLOWER (KIP-951).
    leader: Option<(i32, i32)>,
}

impl From<(ErrorCode, String)> for Failure {
    fn from((code, message): (ErrorCode, String)) -> Self {
        Failure { code, message, leader: None }
    }
}

fn produce_one(
    state: &mut State,
    ctx: Ctx<'_>,
    acks: i16,
    transactional_id: Option<&str>,
    topic: &str,
    index: i32,
    records: Option<bytes::Bytes>,
) -> Result<Produced, Failure> {
    if !(-1..=1).contains(&acks) {
        return Err((ErrorCode::InvalidRequiredAcks, format!("Invalid required acks {acks}")).into());
    }
    // The leader check (with injected partition errors); the partition is looked up again
    // after the transaction check, which needs the whole state.
    let (settings, _) = leader_partition(state, ctx.broker, topic, index, -1).map_err(|e| Failure {
        code: e.code,
        message: e.message,
        leader: e.leader,
    })?;
    let data = records.unwrap_or_default();
    let header = check_one_batch(&data, &settings, ctx.version)?;
    if header.is_transactional() {
        verify_transaction(state, ctx.version, transactional_id, &header, topic, index)?;
    }
    let Some(partition) = lookup_partition_mut(state, topic, index) else {
        return Err((ErrorCode::UnknownServerError, format!("{topic}-{index} vanished")).into());
    };
    if acks == -1 && (partition.isr.len() as i64) < i64::from(settings.min_insync_replicas) {
        return Err((
            ErrorCode::NotEnoughReplicas,
            format!(
                "The size of the current ISR {} is insufficient to satisfy the min.isr requirement of {} for partition {topic}-{index}",
                partition.isr.len(),
                settings.min_insync_replicas
            ),
        )
            .into());
    }
    let leader_epoch = partition.leader_epoch;
    let appended = partition.log.append_owned(data, &settings, leader_epoch, ctx.now_ms)?;
    let log_start_offset = partition.log.log_start_offset();
    // Size retention may have dropped old batches: their buffers go back to the pool now,
    // for the next large frame.
    let freed = partition.log.take_freed();
    state.pool.give_all(freed);
    Ok(Produced {
        base_offset: appended.base_offset,
        log_append_time_ms: appended.log_append_time_ms,
        log_start_offset,
        duplicate: appended.duplicate,
    })
}

/// Checks that `data` holds exactly one magic 2 batch (Kafka's
/// `ProduceRequest.validateRecords`) and returns its header. Holds no reference to `data`
/// afterwards, so that the log may take the buffer over.
fn check_one_batch(
    data: &bytes::Bytes,
    settings: &crate::configs::LogSettings,
    version: i16,
) -> Result<kafka_protocol::records::RecordBatchHeader, Failure> {
    let mut entries = RecordSetIter::new(data.clone());
    let first = match entries.next() {
        Some(Ok(kafka_protocol::records::RecordSetEntry::Batch(b))) => b,
        Some(Ok(kafka_protocol::records::RecordSetEntry::Legacy(_))) => {
            return Err((
                ErrorCode::InvalidRecord,
                format!(
                    "Produce requests with version {} are only allowed to contain record batches with magic version 2",
                    version
                ),
            )
                .into())
        }
        Some(Err(e)) => return Err((ErrorCode::CorruptMessage, e.to_string()).into()),
        None if data.len() > settings.max_message_bytes.max(0) as usize => {
            return Err((
                ErrorCode::MessageTooLarge,
                format!(
                    "The record batch ({} bytes) is larger than max.message.bytes {}",
                    data.len(),
                    settings.max_message_bytes
                ),
            )
                .into())
        }
        None if data.is_empty() => {
            return Err((
                ErrorCode::InvalidRecord,
                format!("Produce requests with version {} must have at least one record batch per partition", version),
            )
                .into())
        }
        None => return Err((ErrorCode::CorruptMessage, "truncated record batch".to_string()).into()),
    };
    if entries.next().is_some() || entries.has_partial_tail() {
        return Err((
            ErrorCode::InvalidRecord,
            format!(
                "Produce requests with version {} are only allowed to contain exactly one record batch per partition",
                version
            ),
        )
            .into());
    }
    Ok(*first.header())
}
