//! DescribeGroups (key 15), versions 0-5: state, protocol and members (client id, host,
//! metadata and assignment) of each group. As in Kafka, member metadata and assignments are
//! only given for Stable groups, and a group that does not exist is described as Dead with no
//! error. v3+ report the authorized operations when asked (every group operation: the
//! bundled broker has no authorizer). A KIP-848 consumer group is described as Dead with no error, as
//! Kafka does before v6 (ConsumerGroupDescribe describes it).

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::ErrorCode;

use super::Ctx;
use crate::cluster::State;
use crate::groups::GroupState;

pub(crate) const MIN_VERSION: i16 = 0;
pub(crate) const MAX_VERSION: i16 = 5;

/// READ, DELETE and DESCRIBE: what Kafka allows on a group without an authorizer.
const GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

/// Each group with `code`.
pub(crate) fn refuse_all(req: &DescribeGroupsRequest, code: ErrorCode) -> DescribeGroupsResponse {
    let groups = req.groups.iter().map(|g| error(g, code)).collect();
    DescribeGroupsResponse { throttle_time_ms: 0, groups, ..Default::default() }
}

fn error(group_id: &str, code: ErrorCode) -> DescribedGroup {
    DescribedGroup { error_code: code.code(), group_id: group_id.to_string(), ..Default::default() }
}

pub(crate) fn handle(state: &State, ctx: Ctx<'_>, req: &DescribeGroupsRequest) -> DescribeGroupsResponse {
    let version = ctx.version;
    let operations = if version >= 3 && req.include_authorized_operations { GROUP_OPERATIONS } else { i32::MIN };
    let groups = req
        .groups
        .iter()
        .map(|id| {
            if !state.is_group_coordinator(ctx.broker, id) {
                return error(id, ErrorCode::NotCoordinator);
            }
            // Kafka describes only classic groups here: a consumer group (KIP-848) is Dead
            // before v6, as a group that does not exist (ConsumerGroupDescribe describes it).
            let Some(g) = state.groups.groups.get(id).filter(|g| g.consumer.is_none()) else {
                return DescribedGroup {
                    group_id: id.clone(),
                    group_state: GroupState::Dead.name().to_string(),
                    authorized_operations: operations,
                    ..Default::default()
                };
            };
            let stable = g.is(GroupState::Stable);
            let protocol = g.protocol_name.clone().unwrap_or_default();
            let members = g
                .members()
                .iter()
                .map(|m| DescribedGroupMember {
                    member_id: m.id.clone(),
                    group_instance_id: if version >= 4 { m.instance_id.clone() } else { None },
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    member_metadata: if stable { m.metadata(&protocol) } else { Default::default() },
                    member_assignment: if stable { m.assignment.clone() } else { Default::default() },
                    ..Default::default()
                })
                .collect();
            DescribedGroup {
                error_code: 0,
                group_id: id.clone(),
                group_state: g.state.name().to_string(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                protocol_data: if stable { protocol } else { String::new() },
                members,
                authorized_operations: operations,
                ..Default::default()
            }
        })
        .collect();
    DescribeGroupsResponse { throttle_time_ms: 0, groups, ..Default::default() }
}
