//! SyncGroup (key 14), versions 0-5: the leader's assignment for every member, delivered by
//! the group coordinator (`groups/classic.rs`); other members' requests wait for it. v5 must
//! name the protocol type and name, which must be the group's.

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::ErrorCode;

use super::{Ctx, Handled};
use crate::cluster::State;
use crate::groups::classic::SyncRequest;
use crate::groups::{SyncResult, Waiter};

pub(crate) const MIN_VERSION: i16 = 0;
pub(crate) const MAX_VERSION: i16 = 5;

/// Fits an answer to the request's version.
pub(crate) fn response(version: i16, r: SyncResult) -> SyncGroupResponse {
    SyncGroupResponse {
        throttle_time_ms: 0,
        error_code: r.error.code(),
        protocol_type: if version >= 5 { r.protocol_type } else { None },
        protocol_name: if version >= 5 { r.protocol_name } else { None },
        assignment: r.assignment,
        ..Default::default()
    }
}

/// The answer refusing the request with `code`.
pub(crate) fn refuse(version: i16, code: ErrorCode) -> SyncGroupResponse {
    response(version, SyncResult::error(code))
}

pub(crate) fn handle(state: &mut State, ctx: Ctx<'_>, req: &SyncGroupRequest) -> Handled {
    let version = ctx.version;
    if version >= 5 && (req.protocol_type.is_none() || req.protocol_name.is_none()) {
        // Mandatory from v5 (KIP-559).
        return Handled::Respond(refuse(version, ErrorCode::InconsistentGroupProtocol).into());
    }
    if req.group_id.is_empty() {
        return Handled::Respond(refuse(version, ErrorCode::InvalidGroupId).into());
    }
    if !state.is_group_coordinator(ctx.broker, &req.group_id) {
        return Handled::Respond(refuse(version, ErrorCode::NotCoordinator).into());
    }
    let sync = SyncRequest {
        group_id: req.group_id.clone(),
        generation: req.generation_id,
        member_id: req.member_id.clone(),
        instance_id: if version >= 3 { req.group_instance_id.clone() } else { None },
        protocol_type: if version >= 5 { req.protocol_type.clone() } else { None },
        protocol_name: if version >= 5 { req.protocol_name.clone() } else { None },
        assignments: req.assignments.iter().map(|a| (a.member_id.clone(), a.assignment.clone())).collect(),
    };
    let ticket = state.groups.new_ticket();
    state.groups.sync(ctx.now_ms, sync, Waiter { ticket, version });
    Handled::Wait(ticket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::assert_encodes;

    #[test]
    fn every_version_encodes() {
        for v in MIN_VERSION..=MAX_VERSION {
            let ok = SyncResult {
                error: ErrorCode::None,
                protocol_type: Some("consumer".into()),
                protocol_name: Some("range".into()),
                assignment: "a".into(),
            };
            assert_encodes(response(v, ok), v);
            assert_encodes(refuse(v, ErrorCode::RebalanceInProgress), v);
        }
    }
}
