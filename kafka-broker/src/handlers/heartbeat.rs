//! Heartbeat (key 12), versions 0-4: keeps a member's session alive; REBALANCE_IN_PROGRESS
//! tells it to rejoin, ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID / FENCED_INSTANCE_ID that it
//! lost its place (`groups/classic.rs`).

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};
use kafka_protocol::ErrorCode;

use super::Ctx;
use crate::cluster::State;

pub(crate) const MIN_VERSION: i16 = 0;
pub(crate) const MAX_VERSION: i16 = 4;

pub(crate) fn refuse(code: ErrorCode) -> HeartbeatResponse {
    HeartbeatResponse { throttle_time_ms: 0, error_code: code.code(), ..Default::default() }
}

pub(crate) fn handle(state: &mut State, ctx: Ctx<'_>, req: &HeartbeatRequest) -> HeartbeatResponse {
    if req.group_id.is_empty() {
        return refuse(ErrorCode::InvalidGroupId);
    }
    if !state.is_group_coordinator(ctx.broker, &req.group_id) {
        return refuse(ErrorCode::NotCoordinator);
    }
    let instance = if ctx.version >= 3 { req.group_instance_id.as_deref() } else { None };
    refuse(state.groups.heartbeat(ctx.now_ms, &req.group_id, req.generation_id, &req.member_id, instance))
}
