//! ListGroups (key 16), versions 0-5: the groups this broker coordinates (clients ask every
//! broker), filtered by state (v4+, case-insensitive) and type (v5+: "classic", or
//! "consumer" for KIP-848 groups, listed with protocol type "consumer" and their
//! Empty/Assigning/Reconciling/Stable state).

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::ErrorCode;

use super::Ctx;
use crate::cluster::State;
use crate::groups::group::CONSUMER_PROTOCOL_TYPE;

pub(crate) const MIN_VERSION: i16 = 0;
pub(crate) const MAX_VERSION: i16 = 5;

/// The type of classic-protocol groups (Kafka's `Group.GroupType.CLASSIC`).
const CLASSIC: &str = "classic";
/// The type of next-generation consumer groups (KIP-848, `Group.GroupType.CONSUMER`).
const CONSUMER: &str = "consumer";

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
        .map(|g| match g.consumer.as_deref() {
            Some(cg) => (g, cg.state().name(), CONSUMER, CONSUMER_PROTOCOL_TYPE.to_string()),
            None => (g, g.state.name(), CLASSIC, g.protocol_type.clone().unwrap_or_default()),
        })
        .filter(|(_, st, _, _)| states.is_empty() || states.iter().any(|s| *s == st.to_ascii_lowercase()))
        .filter(|(_, _, ty, _)| types.is_empty() || types.iter().any(|t| t == ty))
        .map(|(g, st, ty, protocol_type)| ListedGroup {
            group_id: g.id.clone(),
            protocol_type,
            group_state: st.to_string(),
            group_type: ty.to_string(),
            ..Default::default()
        })
        .collect();
    ListGroupsResponse { throttle_time_ms: 0, error_code: 0, groups, ..Default::default() }
}
