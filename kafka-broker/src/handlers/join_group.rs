//! JoinGroup (key 11), versions 0-9: the request goes to the group coordinator
//! (`groups/classic.rs`) and waits there until the join phase ends. v4+ members without an id
//! are first answered MEMBER_ID_REQUIRED with one (KIP-394); v5+ carry a group instance id
//! (static membership, KIP-345); v9 lets a restarted static leader skip the assignment.
//! A KIP-848 consumer group with members refuses it with INCONSISTENT_GROUP_PROTOCOL; an empty
//! one becomes a classic group.

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::ErrorCode;

use super::{client_host, Ctx, Handled};
use crate::cluster::State;
use crate::groups::classic::JoinRequest;
use crate::groups::group::Protocol;
use crate::groups::{JoinResult, Waiter};

pub(crate) const MIN_VERSION: i16 = 0;
pub(crate) const MAX_VERSION: i16 = 9;

/// Fits an answer to the request's version, as Kafka's `JoinGroupResponse` constructor does:
/// the protocol name is "" rather than null before v7, and null rather than "" from v7.
pub(crate) fn response(version: i16, r: JoinResult) -> JoinGroupResponse {
    let protocol_name =
        if version < 7 { Some(r.protocol_name.unwrap_or_default()) } else { r.protocol_name.filter(|n| !n.is_empty()) };
    JoinGroupResponse {
        throttle_time_ms: 0,
        error_code: r.error.code(),
        generation_id: r.generation,
        protocol_type: if version >= 7 { r.protocol_type } else { None },
        protocol_name,
        leader: r.leader,
        skip_assignment: version >= 9 && r.skip_assignment,
        member_id: r.member_id,
        members: r
            .members
            .into_iter()
            .map(|m| JoinGroupResponseMember {
                member_id: m.id,
                group_instance_id: if version >= 5 { m.instance_id } else { None },
                metadata: m.metadata,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// The answer refusing the request with `code`.
pub(crate) fn refuse(req: &JoinGroupRequest, version: i16, code: ErrorCode) -> JoinGroupResponse {
    response(version, JoinResult::error(&req.member_id, code))
}

pub(crate) fn handle(state: &mut State, ctx: Ctx<'_>, req: &JoinGroupRequest) -> Handled {
    let version = ctx.version;
    let refuse = |code| Handled::Respond(refuse(req, version, code).into());
    if req.group_id.is_empty() {
        return refuse(ErrorCode::InvalidGroupId);
    }
    let config = &state.groups.config;
    if req.session_timeout_ms < config.min_session_timeout_ms || req.session_timeout_ms > config.max_session_timeout_ms
    {
        return refuse(ErrorCode::InvalidSessionTimeout);
    }
    if !state.is_group_coordinator(ctx.broker, &req.group_id) {
        // As Kafka's coordinator runtime answers: no member id.
        return Handled::Respond(response(version, JoinResult::error("", ErrorCode::NotCoordinator)).into());
    }
    // A consumer group (KIP-848) with members does not take classic members; an empty one
    // becomes a classic group.
    if let Err(code) = state.groups.classic_join_to_consumer_group(ctx.now_ms, &req.group_id) {
        return refuse(code);
    }
    let join = JoinRequest {
        group_id: req.group_id.clone(),
        member_id: req.member_id.clone(),
        instance_id: if version >= 5 { req.group_instance_id.clone() } else { None },
        client_id: ctx.header.client_id.clone().unwrap_or_default(),
        client_host: client_host(ctx.peer),
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if version == 0 { req.session_timeout_ms } else { req.rebalance_timeout_ms },
        session_timeout_ms: req.session_timeout_ms,
        protocol_type: req.protocol_type.clone(),
        protocols: req
            .protocols
            .iter()
            .map(|p| Protocol { name: p.name.clone(), metadata: p.metadata.clone() })
            .collect(),
        reason: if version >= 8 { req.reason.clone() } else { None },
    };
    let ticket = state.groups.new_ticket();
    state.groups.join(ctx.now_ms, ctx.broker, join, Waiter { ticket, version });
    Handled::Wait(ticket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::groups::JoinMember;
    use crate::handlers::assert_encodes;

    #[test]
    fn every_version_encodes_answers_and_errors() {
        for v in MIN_VERSION..=MAX_VERSION {
            let r = JoinResult {
                error: ErrorCode::None,
                generation: 3,
                protocol_type: Some("consumer".into()),
                protocol_name: Some("range".into()),
                leader: "m1".into(),
                skip_assignment: true,
                member_id: "m1".into(),
                members: vec![JoinMember { id: "m1".into(), instance_id: Some("i".into()), metadata: "x".into() }],
            };
            let resp = response(v, r);
            assert_eq!(resp.skip_assignment, v >= 9);
            assert_encodes(resp, v);
            let err = refuse(&JoinGroupRequest::default(), v, ErrorCode::NotCoordinator);
            assert_eq!(err.protocol_name, if v < 7 { Some(String::new()) } else { None });
            assert_encodes(err, v);
        }
    }
}
