//! DeleteGroups (key 42), versions 0-2: removes empty groups and their offsets;
//! NON_EMPTY_GROUP while members remain, GROUP_ID_NOT_FOUND for a group that does not exist.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};
use kafka_protocol::ErrorCode;

use super::Ctx;
use crate::cluster::State;

pub(crate) const MIN_VERSION: i16 = 0;
pub(crate) const MAX_VERSION: i16 = 2;

/// Each group (named once) with `code`.
pub(crate) fn refuse_all(req: &DeleteGroupsRequest, code: ErrorCode) -> DeleteGroupsResponse {
    let results = distinct(req)
        .into_iter()
        .map(|g| DeletableGroupResult { group_id: g.to_string(), error_code: code.code(), ..Default::default() })
        .collect();
    DeleteGroupsResponse { throttle_time_ms: 0, results, ..Default::default() }
}

/// The group names in request order, each once (Kafka answers a repeated name once).
fn distinct(req: &DeleteGroupsRequest) -> Vec<&str> {
    let mut seen = Vec::new();
    for g in &req.groups_names {
        if !seen.contains(&g.as_str()) {
            seen.push(g.as_str());
        }
    }
    seen
}

pub(crate) fn handle(state: &mut State, ctx: Ctx<'_>, req: &DeleteGroupsRequest) -> DeleteGroupsResponse {
    let results = distinct(req)
        .into_iter()
        .map(|id| {
            let code = if !state.is_group_coordinator(ctx.broker, id) {
                ErrorCode::NotCoordinator
            } else {
                match state.groups.delete_group(id) {
                    Ok(()) => ErrorCode::None,
                    Err(code) => code,
                }
            };
            DeletableGroupResult { group_id: id.to_string(), error_code: code.code(), ..Default::default() }
        })
        .collect();
    DeleteGroupsResponse { throttle_time_ms: 0, results, ..Default::default() }
}
