//! TxnOffsetCommit (key 28), versions 0-4: a transactional producer commits a consumer group's
//! offsets as part of its transaction, asked of the group coordinator. The offsets stay
//! pending (invisible to OffsetFetch, UNSTABLE_OFFSET_COMMIT with `require_stable`) until the
//! transaction's marker reaches the group's offsets partition: then they become the group's
//! committed offsets (commit) or disappear (abort).
//!
//! Checks in Kafka 4's order: unknown topics (UNKNOWN_TOPIC_OR_PARTITION), the coordinator
//! (NOT_COORDINATOR), the transaction (KIP-890's verification: the group's offsets partition
//! must be in the producer's open transaction, added by AddOffsetsToTxn: INVALID_TXN_STATE
//! before v4, TRANSACTION_ABORTABLE from v4; a stale epoch is INVALID_PRODUCER_EPOCH), then
//! the group's generation and member (v3+ carry them; ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID,
//! FENCED_INSTANCE_ID), then each partition's metadata size (OFFSET_METADATA_TOO_LARGE).

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use kafka_protocol::ErrorCode;

use super::{lookup_partition, Ctx};
use crate::cluster::State;
use crate::groups::group::CommittedOffset;
use crate::groups::partition_for;
use crate::txn::OFFSETS_TOPIC;

pub(crate) const MIN_VERSION: i16 = 0;
pub(crate) const MAX_VERSION: i16 = 4;

/// Every partition of the request with `code`.
pub(crate) fn refuse_all(req: &TxnOffsetCommitRequest, code: ErrorCode) -> TxnOffsetCommitResponse {
    let topics = req
        .topics
        .iter()
        .map(|t| TxnOffsetCommitResponseTopic {
            name: t.name.clone(),
            partitions: t
                .partitions
                .iter()
                .map(|p| TxnOffsetCommitResponsePartition {
                    partition_index: p.partition_index,
                    error_code: code.code(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    TxnOffsetCommitResponse { throttle_time_ms: 0, topics, ..Default::default() }
}

/// What the transaction check answers, as a TxnOffsetCommit of `version` reports it (Kafka's
/// verification translation).
fn verification_error(code: ErrorCode, version: i16) -> ErrorCode {
    match code {
        ErrorCode::ProducerFenced => ErrorCode::InvalidProducerEpoch,
        ErrorCode::TransactionAbortable if version < 4 => ErrorCode::InvalidTxnState,
        other => other,
    }
}

pub(crate) fn handle(state: &mut State, ctx: Ctx<'_>, req: &TxnOffsetCommitRequest) -> TxnOffsetCommitResponse {
    let version = ctx.version;
    let mut resp = refuse_all(req, ErrorCode::None);
    let mut valid = 0usize;
    for (t, rt) in req.topics.iter().zip(resp.topics.iter_mut()) {
        for (p, rp) in t.partitions.iter().zip(rt.partitions.iter_mut()) {
            if lookup_partition(state, &t.name, p.partition_index).is_some() {
                valid += 1;
            } else {
                rp.error_code = ErrorCode::UnknownTopicOrPartition.code();
            }
        }
    }
    if valid == 0 {
        return resp;
    }
    let set_valid = |resp: &mut TxnOffsetCommitResponse, code: ErrorCode| {
        for rp in resp.topics.iter_mut().flat_map(|t| t.partitions.iter_mut()).filter(|p| p.error_code == 0) {
            rp.error_code = code.code();
        }
    };
    let group_id = req.group_id.as_str();
    if group_id.is_empty() {
        set_valid(&mut resp, ErrorCode::InvalidGroupId);
        return resp;
    }
    if !state.is_group_coordinator(ctx.broker, group_id) {
        set_valid(&mut resp, ErrorCode::NotCoordinator);
        return resp;
    }
    let offsets_partition =
        (OFFSETS_TOPIC.to_string(), partition_for(group_id, state.groups.config.offsets_topic_partitions));
    let verified =
        state.verify_txn_partition(&req.transactional_id, req.producer_id, req.producer_epoch, &offsets_partition);
    if verified != ErrorCode::None {
        set_valid(&mut resp, verification_error(verified, version));
        return resp;
    }
    let (generation, member, instance) = if version >= 3 {
        (req.generation_id, req.member_id.as_str(), req.group_instance_id.as_deref())
    } else {
        (-1, "", None)
    };
    let now = ctx.now_ms;
    if let Err(code) = state.groups.validate_txn_offset_commit(now, ctx.broker, group_id, generation, member, instance)
    {
        set_valid(&mut resp, code);
        return resp;
    }
    let max_metadata = state.groups.config.offset_metadata_max_bytes;
    for (t, rt) in req.topics.iter().zip(resp.topics.iter_mut()) {
        for (p, rp) in t.partitions.iter().zip(rt.partitions.iter_mut()) {
            if rp.error_code != 0 {
                continue;
            }
            let metadata = p.committed_metadata.clone().unwrap_or_default();
            if metadata.encode_utf16().count() > max_metadata {
                rp.error_code = ErrorCode::OffsetMetadataTooLarge.code();
                continue;
            }
            let committed = CommittedOffset {
                offset: p.committed_offset,
                leader_epoch: if version >= 2 { p.committed_leader_epoch } else { -1 },
                metadata,
                commit_timestamp_ms: now,
                expire_timestamp_ms: None,
                record_seq: 0,
            };
            state.groups.store_txn_offset(group_id, req.producer_id, &t.name, p.partition_index, committed);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::assert_encodes;
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };

    #[test]
    fn verification_errors_by_version_and_every_version_encodes() {
        assert_eq!(verification_error(ErrorCode::TransactionAbortable, 3), ErrorCode::InvalidTxnState);
        assert_eq!(verification_error(ErrorCode::TransactionAbortable, 4), ErrorCode::TransactionAbortable);
        assert_eq!(verification_error(ErrorCode::ProducerFenced, 4), ErrorCode::InvalidProducerEpoch);
        let req = TxnOffsetCommitRequest {
            topics: vec![TxnOffsetCommitRequestTopic {
                name: "t".into(),
                partitions: vec![TxnOffsetCommitRequestPartition { partition_index: 3, ..Default::default() }],
                ..Default::default()
            }],
            ..Default::default()
        };
        for v in MIN_VERSION..=MAX_VERSION {
            assert_encodes(refuse_all(&req, ErrorCode::NotCoordinator), v);
        }
    }
}
