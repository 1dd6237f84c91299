//! ConsumerGroupDescribe (key 69), version 0: a consumer group's epochs, state, assignor and
//! members with their current and target assignments (`groups/consumer.rs`). A group that
//! does not exist, or is a classic group, is GROUP_ID_NOT_FOUND, as in Kafka.

use kafka_protocol::messages::consumer_group_describe_response::{Assignment, DescribedGroup, Member, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse};
use kafka_protocol::ErrorCode;

use super::Ctx;
use crate::cluster::State;
use crate::groups::assignor;

pub(crate) const MIN_VERSION: i16 = 0;
pub(crate) const MAX_VERSION: i16 = 0;

/// READ, DELETE and DESCRIBE: what Kafka allows on a group without an authorizer.
const GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

/// Each group with `code`.
pub(crate) fn refuse_all(req: &ConsumerGroupDescribeRequest, code: ErrorCode) -> ConsumerGroupDescribeResponse {
    let groups = req.group_ids.iter().map(|g| error(g, code, None)).collect();
    ConsumerGroupDescribeResponse { throttle_time_ms: 0, groups, ..Default::default() }
}

fn error(group_id: &str, code: ErrorCode, message: Option<String>) -> DescribedGroup {
    DescribedGroup {
        error_code: code.code(),
        error_message: message,
        group_id: group_id.to_string(),
        authorized_operations: i32::MIN,
        ..Default::default()
    }
}

fn assignment(state: &State, a: &assignor::Assignment) -> Assignment {
    Assignment {
        topic_partitions: a
            .iter()
            .map(|(id, parts)| TopicPartitions {
                topic_id: *id,
                topic_name: state.topic_name_by_id(*id).unwrap_or_default().to_string(),
                partitions: parts.iter().copied().collect(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

pub(crate) fn handle(state: &State, ctx: Ctx<'_>, req: &ConsumerGroupDescribeRequest) -> ConsumerGroupDescribeResponse {
    let operations = if req.include_authorized_operations { GROUP_OPERATIONS } else { i32::MIN };
    let default_assignor = state.groups.config.consumer_assignors.first().cloned().unwrap_or_default();
    let groups = req
        .group_ids
        .iter()
        .map(|id| {
            if id.is_empty() {
                return error(id, ErrorCode::InvalidGroupId, None);
            }
            if !state.is_group_coordinator(ctx.broker, id) {
                return error(id, ErrorCode::NotCoordinator, None);
            }
            let Some(g) = state.groups.consumer_group(id) else {
                return error(id, ErrorCode::GroupIdNotFound, Some(format!("Group {id} is not a consumer group.")));
            };
            let empty = assignor::Assignment::new();
            DescribedGroup {
                error_code: 0,
                group_id: id.clone(),
                group_state: g.state().name().to_string(),
                group_epoch: g.group_epoch,
                assignment_epoch: g.assignment_epoch,
                assignor_name: g.preferred_assignor(&default_assignor),
                members: g
                    .members
                    .values()
                    .map(|m| Member {
                        member_id: m.id.clone(),
                        instance_id: m.instance_id.clone(),
                        rack_id: m.rack_id.clone(),
                        member_epoch: m.epoch,
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        subscribed_topic_names: m.subscribed_topic_names.clone(),
                        subscribed_topic_regex: m.subscribed_topic_regex.clone(),
                        assignment: assignment(state, &m.assigned),
                        target_assignment: assignment(state, g.target.get(&m.id).unwrap_or(&empty)),
                        ..Default::default()
                    })
                    .collect(),
                authorized_operations: operations,
                ..Default::default()
            }
        })
        .collect();
    ConsumerGroupDescribeResponse { throttle_time_ms: 0, groups, ..Default::default() }
}
