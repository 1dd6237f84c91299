//! ListGroups (key 16), versions 0-5: the groups this broker coordinates (clients ask every
//! broker), filtered by state (v4+, case-insensitive) and type (v5+; every group here is
//! "classic").

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::ErrorCode;

use super::Ctx;
use crate::cluster::State;

pub(crate) const MIN_VERSION: i16 = 0;
pub(crate) const MAX_VERSION: i16 = 5;

/// The type of classic-protocol groups (Kafka's `Group.GroupType.CLASSIC`).
const CLASSIC: &str = "classic";

pub(crate) fn refuse(code: ErrorCode) -> ListGroupsResponse {
    ListGroupsResponse { throttle_time_ms: 0, error_code: code.code(), ..Default::default() }
}

pub(crate) fn handle(state: &State, ctx: Ctx<'_>, req: &ListGroupsRequest) -> ListGroupsResponse {
    let states: Vec<String> = if ctx.version >= 4 {
        req.states_filter.iter().map(|s| s.trim().to_ascii_lowercase()).collect()
    } else {
        Vec::new()
    };
    let types: Vec<String> = if ctx.version >= 5 {
        req.types_filter.iter().map(|t| t.trim().to_ascii_lowercase()).collect()
    } else {
        Vec::new()
    };
    let groups = state
        .groups
        .groups
        .values()
        .filter(|g| state.is_group_coordinator(ctx.broker, &g.id))
        .filter(|g| states.is_empty() || states.iter().any(|s| *s == g.state.name().to_ascii_lowercase()))
        .filter(|_| types.is_empty() || types.iter().any(|t| t == CLASSIC))
        .map(|g| ListedGroup {
            group_id: g.id.clone(),
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            group_state: g.state.name().to_string(),
            group_type: CLASSIC.to_string(),
            ..Default::default()
        })
        .collect();
    ListGroupsResponse { throttle_time_ms: 0, error_code: 0, groups, ..Default::default() }
}
