//! OffsetCommit (key 8), versions 2-9 (Kafka 4 dropped 0-1, which answer UNSUPPORTED_VERSION):
//! partitions of unknown topics get UNKNOWN_TOPIC_OR_PARTITION; the rest are checked against
//! the group's generation and member (`groups/offsets.rs`) and stored. Generation -1 with no
//! member is a commit by a consumer outside group management, accepted while the group is
//! empty. Metadata longer than `offset.metadata.max.bytes` is OFFSET_METADATA_TOO_LARGE.

use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use kafka_protocol::ErrorCode;

use super::{lookup_partition, Ctx};
use crate::cluster::State;
use crate::groups::group::CommittedOffset;

pub(crate) const MIN_VERSION: i16 = 2;
pub(crate) const MAX_VERSION: i16 = 9;

/// Every partition of the request with `code`.
pub(crate) fn refuse_all(req: &OffsetCommitRequest, code: ErrorCode) -> OffsetCommitResponse {
    let topics = req
        .topics
        .iter()
        .map(|t| OffsetCommitResponseTopic {
            name: t.name.clone(),
            partitions: t
                .partitions
                .iter()
                .map(|p| OffsetCommitResponsePartition {
                    partition_index: p.partition_index,
                    error_code: code.code(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    OffsetCommitResponse { throttle_time_ms: 0, topics, ..Default::default() }
}

/// Java's `String.length()`, which `offset.metadata.max.bytes` is compared with.
fn java_length(s: &str) -> usize {
    s.encode_utf16().count()
}

pub(crate) fn handle(state: &mut State, ctx: Ctx<'_>, req: &OffsetCommitRequest) -> OffsetCommitResponse {
    let version = ctx.version;
    let mut resp = refuse_all(req, ErrorCode::None);
    // Partitions that do not exist are answered before the coordinator sees the request.
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
    let set_valid = |resp: &mut OffsetCommitResponse, code: ErrorCode| {
        for rp in resp.topics.iter_mut().flat_map(|t| t.partitions.iter_mut()).filter(|p| p.error_code == 0) {
            rp.error_code = code.code();
        }
    };
    if !state.is_group_coordinator(ctx.broker, &req.group_id) {
        set_valid(&mut resp, ErrorCode::NotCoordinator);
        return resp;
    }
    let instance = if version >= 7 { req.group_instance_id.as_deref() } else { None };
    let now = ctx.now_ms;
    if let Err(code) = state.groups.validate_offset_commit(
        now,
        ctx.broker,
        version,
        &req.group_id,
        req.generation_id_or_member_epoch,
        &req.member_id,
        instance,
    ) {
        set_valid(&mut resp, code);
        return resp;
    }
    // Retention per request (v2-4); -1 means the broker's offsets.retention.minutes.
    let expire = (version <= 4 && req.retention_time_ms != -1).then(|| now.saturating_add(req.retention_time_ms));
    let max_metadata = state.groups.config.offset_metadata_max_bytes;
    for (t, rt) in req.topics.iter().zip(resp.topics.iter_mut()) {
        for (p, rp) in t.partitions.iter().zip(rt.partitions.iter_mut()) {
            if rp.error_code != 0 {
                continue;
            }
            let metadata = p.committed_metadata.clone().unwrap_or_default();
            if java_length(&metadata) > max_metadata {
                rp.error_code = ErrorCode::OffsetMetadataTooLarge.code();
                continue;
            }
            let committed = CommittedOffset {
                offset: p.committed_offset,
                leader_epoch: if version >= 6 { p.committed_leader_epoch } else { -1 },
                metadata,
                commit_timestamp_ms: now,
                expire_timestamp_ms: expire,
                record_seq: 0,
            };
            state.groups.store_offset(&req.group_id, &t.name, p.partition_index, committed);
        }
    }
    resp
}
