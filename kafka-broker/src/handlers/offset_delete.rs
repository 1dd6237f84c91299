//! OffsetDelete (key 47), version 0: removes a group's committed offsets for partitions it
//! does not consume. Unknown topics and partitions are UNKNOWN_TOPIC_OR_PARTITION; a group
//! with members that is not a consumer group is NON_EMPTY_GROUP; a topic the group
//! subscribes to is GROUP_SUBSCRIBED_TO_TOPIC (`groups/offsets.rs`).

use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use kafka_protocol::ErrorCode;

use super::{lookup_partition, Ctx};
use crate::cluster::State;

pub(crate) const MIN_VERSION: i16 = 0;
pub(crate) const MAX_VERSION: i16 = 0;

pub(crate) fn refuse(code: ErrorCode) -> OffsetDeleteResponse {
    OffsetDeleteResponse { error_code: code.code(), throttle_time_ms: 0, ..Default::default() }
}

pub(crate) fn handle(state: &mut State, ctx: Ctx<'_>, req: &OffsetDeleteRequest) -> OffsetDeleteResponse {
    if req.group_id.is_empty() {
        return refuse(ErrorCode::InvalidGroupId);
    }
    let mut unknown: Vec<(String, Vec<i32>)> = Vec::new();
    let mut known: Vec<(String, Vec<i32>)> = Vec::new();
    for t in &req.topics {
        let (found, missing): (Vec<i32>, Vec<i32>) = t
            .partitions
            .iter()
            .map(|p| p.partition_index)
            .partition(|p| lookup_partition(state, &t.name, *p).is_some());
        if !missing.is_empty() {
            unknown.push((t.name.clone(), missing));
        }
        if !found.is_empty() {
            known.push((t.name.clone(), found));
        }
    }
    if !state.is_group_coordinator(ctx.broker, &req.group_id) {
        return refuse(ErrorCode::NotCoordinator);
    }
    let deleted = match state.groups.delete_offsets(&req.group_id, &known) {
        Ok(d) => d,
        Err(code) => return refuse(code),
    };
    let unknown = unknown
        .into_iter()
        .map(|(t, ps)| (t, ps.into_iter().map(|p| (p, ErrorCode::UnknownTopicOrPartition)).collect()));
    let mut topics: Vec<OffsetDeleteResponseTopic> = Vec::new();
    for (name, partitions) in unknown.chain(deleted) {
        let partitions = partitions.into_iter().map(|(p, e): (i32, ErrorCode)| OffsetDeleteResponsePartition {
            partition_index: p,
            error_code: e.code(),
            ..Default::default()
        });
        match topics.iter_mut().find(|t| t.name == name) {
            Some(t) => t.partitions.extend(partitions),
            None => {
                topics.push(OffsetDeleteResponseTopic { name, partitions: partitions.collect(), ..Default::default() })
            }
        }
    }
    OffsetDeleteResponse { error_code: 0, throttle_time_ms: 0, topics, ..Default::default() }
}
