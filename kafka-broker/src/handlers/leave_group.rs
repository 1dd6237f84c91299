//! LeaveGroup (key 13), versions 0-5: one member (v0-2) or a batch with an error per member
//! (v3+; a member named only by its group instance id is removed by an admin, KIP-345).
//! Versions before 3 carry the member's error at the top level, as Kafka's
//! `LeaveGroupResponse` does.

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use kafka_protocol::ErrorCode;

use super::Ctx;
use crate::cluster::State;

pub(crate) const MIN_VERSION: i16 = 0;
pub(crate) const MAX_VERSION: i16 = 5;

/// The answer refusing the whole request with `code`.
pub(crate) fn refuse(code: ErrorCode) -> LeaveGroupResponse {
    LeaveGroupResponse { throttle_time_ms: 0, error_code: code.code(), ..Default::default() }
}

pub(crate) fn handle(state: &mut State, ctx: Ctx<'_>, req: &LeaveGroupRequest) -> LeaveGroupResponse {
    if req.group_id.is_empty() {
        return refuse(ErrorCode::InvalidGroupId);
    }
    if !state.is_group_coordinator(ctx.broker, &req.group_id) {
        return refuse(ErrorCode::NotCoordinator);
    }
    let members: Vec<(String, Option<String>)> = if ctx.version >= 3 {
        req.members.iter().map(|m| (m.member_id.clone(), m.group_instance_id.clone())).collect()
    } else {
        vec![(req.member_id.clone(), None)]
    };
    match state.groups.leave(ctx.now_ms, &req.group_id, &members) {
        Err(code) => refuse(code),
        Ok(errors) if ctx.version < 3 => refuse(errors.first().copied().unwrap_or(ErrorCode::None)),
        Ok(errors) => LeaveGroupResponse {
            throttle_time_ms: 0,
            error_code: 0,
            members: members
                .into_iter()
                .zip(errors)
                .map(|((member_id, group_instance_id), e)| MemberResponse {
                    member_id,
                    group_instance_id,
                    error_code: e.code(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        },
    }
}
