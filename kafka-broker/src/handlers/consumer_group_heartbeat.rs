//! ConsumerGroupHeartbeat (key 68), versions 0-1: the next-generation consumer group protocol
//! (KIP-848). The request is checked as Kafka's `throwIfConsumerGroupHeartbeatRequestIsInvalid`
//! does (INVALID_REQUEST with Kafka's message, UNSUPPORTED_ASSIGNOR, INVALID_REGULAR_EXPRESSION)
//! and handed to the group coordinator (`groups/consumer.rs`). v0 members join with an empty
//! member id and get one from the coordinator; from v1 the client generates it.

use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use kafka_protocol::ErrorCode;

use super::{client_host, Ctx};
use crate::cluster::State;
use crate::groups::assignor;
use crate::groups::consumer::{
    compile_regex, CgAnswer, CgHeartbeat, TopicMeta, TopicsView, LEAVE_GROUP_MEMBER_EPOCH,
    LEAVE_GROUP_STATIC_MEMBER_EPOCH,
};

pub(crate) const MIN_VERSION: i16 = 0;
pub(crate) const MAX_VERSION: i16 = 1;

/// The error answer Kafka sends: the code and its message, nothing else.
pub(crate) fn refuse(code: ErrorCode, message: Option<String>) -> ConsumerGroupHeartbeatResponse {
    ConsumerGroupHeartbeatResponse {
        error_code: code.code(),
        error_message: message,
        member_id: None,
        member_epoch: 0,
        heartbeat_interval_ms: 0,
        ..Default::default()
    }
}

fn invalid(message: &str) -> Result<(), (ErrorCode, String)> {
    Err((ErrorCode::InvalidRequest, message.to_string()))
}

/// Kafka's request validation.
fn validate(
    req: &ConsumerGroupHeartbeatRequest,
    version: i16,
    assignors: &[String],
) -> Result<(), (ErrorCode, String)> {
    let epoch = req.member_epoch;
    if (version >= 1 || epoch > 0 || epoch == LEAVE_GROUP_MEMBER_EPOCH) && req.member_id.is_empty() {
        return invalid("MemberId can't be empty.");
    }
    if req.group_id.is_empty() {
        return invalid("GroupId can't be empty.");
    }
    if req.instance_id.as_deref() == Some("") {
        return invalid("InstanceId can't be empty.");
    }
    if req.rack_id.as_deref() == Some("") {
        return invalid("RackId can't be empty.");
    }
    if epoch == 0 {
        if req.rebalance_timeout_ms == -1 {
            return invalid("RebalanceTimeoutMs must be provided in first request.");
        }
        if req.topic_partitions.as_ref().map_or(true, |tp| !tp.is_empty()) {
            return invalid("TopicPartitions must be empty when (re-)joining.");
        }
        if req.subscribed_topic_names.is_none() && req.subscribed_topic_regex.is_none() {
            return invalid("Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when (re-)joining.");
        }
    } else if epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
        if req.member_id.is_empty() {
            return invalid("MemberId can't be empty.");
        }
        if req.instance_id.is_none() {
            return invalid("InstanceId can't be null.");
        }
    } else if epoch < LEAVE_GROUP_STATIC_MEMBER_EPOCH {
        return invalid("MemberEpoch is invalid.");
    }
    if let Some(name) = &req.server_assignor {
        if !assignors.iter().any(|a| a == name) {
            return Err((
                ErrorCode::UnsupportedAssignor,
                format!("ServerAssignor {name} is not supported. Supported assignors: {}.", assignors.join(", ")),
            ));
        }
    }
    if let Some(re) = req.subscribed_topic_regex.as_deref().filter(|r| !r.is_empty()) {
        if let Err(e) = compile_regex(re) {
            return Err((
                ErrorCode::InvalidRegularExpression,
                format!("SubscribedTopicRegex `{re}` is not a valid regular expression: {e}."),
            ));
        }
    }
    Ok(())
}

/// Every topic of the cluster as the coordinator sees it.
pub(crate) fn topics_view(state: &State) -> TopicsView {
    state
        .topics
        .iter()
        .map(|(name, t)| {
            (name.clone(), TopicMeta { id: t.id, partitions: i32::try_from(t.partitions.len()).unwrap_or(i32::MAX) })
        })
        .collect()
}

fn response(a: CgAnswer) -> ConsumerGroupHeartbeatResponse {
    ConsumerGroupHeartbeatResponse {
        error_code: 0,
        error_message: None,
        member_id: Some(a.member_id),
        member_epoch: a.member_epoch,
        heartbeat_interval_ms: a.heartbeat_interval_ms,
        assignment: a.assignment.map(|assignment| Assignment {
            topic_partitions: assignment
                .into_iter()
                .map(|(topic_id, parts)| TopicPartitions {
                    topic_id,
                    partitions: parts.into_iter().collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(crate) fn handle(
    state: &mut State,
    ctx: Ctx<'_>,
    req: &ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    if let Err((code, message)) = validate(req, ctx.version, &state.groups.config.consumer_assignors) {
        return refuse(code, Some(message));
    }
    if !state.is_group_coordinator(ctx.broker, &req.group_id) {
        return refuse(ErrorCode::NotCoordinator, None);
    }
    let owned = req.topic_partitions.as_ref().map(|tps| {
        let mut a = assignor::Assignment::new();
        for tp in tps {
            a.entry(tp.topic_id).or_default().extend(tp.partitions.iter().copied());
        }
        a
    });
    let hb = CgHeartbeat {
        group_id: req.group_id.clone(),
        member_id: req.member_id.clone(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.clone(),
        rack_id: req.rack_id.clone(),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        client_id: ctx.header.client_id.clone().unwrap_or_default(),
        client_host: client_host(ctx.peer),
        subscribed_topic_names: req.subscribed_topic_names.clone(),
        subscribed_topic_regex: req.subscribed_topic_regex.clone(),
        server_assignor: req.server_assignor.clone(),
        owned,
    };
    let topics = topics_view(state);
    match state.groups.consumer_heartbeat(ctx.now_ms, ctx.broker, &topics, hb) {
        Ok(answer) => response(answer),
        Err((code, message)) => refuse(code, Some(message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::assert_encodes;

    #[test]
    fn answers_encode_at_every_version() {
        for v in MIN_VERSION..=MAX_VERSION {
            assert_encodes(refuse(ErrorCode::FencedMemberEpoch, Some("fenced".into())), v);
            let mut a = assignor::Assignment::new();
            a.entry(kafka_protocol::primitives::Uuid::from_u64_pair(1, 2)).or_default().insert(3);
            let ok = response(CgAnswer {
                member_id: "m".into(),
                member_epoch: 2,
                heartbeat_interval_ms: 5000,
                assignment: Some(a),
            });
            assert_encodes(ok, v);
        }
    }

    #[test]
    fn requests_are_checked_as_kafka_checks_them() {
        let assignors: Vec<String> = assignor::ASSIGNORS.iter().map(|a| a.to_string()).collect();
        let join = ConsumerGroupHeartbeatRequest {
            group_id: "g".into(),
            member_id: "m".into(),
            member_epoch: 0,
            rebalance_timeout_ms: 1000,
            subscribed_topic_names: Some(vec!["t".into()]),
            topic_partitions: Some(vec![]),
            ..Default::default()
        };
        assert_eq!(validate(&join, 1, &assignors), Ok(()));
        let code = |r: &ConsumerGroupHeartbeatRequest, v: i16| validate(r, v, &assignors).err().map(|e| e.0);
        assert_eq!(
            code(&ConsumerGroupHeartbeatRequest { member_id: String::new(), ..join.clone() }, 0),
            None,
            "v0: the coordinator names the member"
        );
        assert_eq!(
            code(&ConsumerGroupHeartbeatRequest { member_id: String::new(), ..join.clone() }, 1),
            Some(ErrorCode::InvalidRequest)
        );
        assert_eq!(
            code(&ConsumerGroupHeartbeatRequest { group_id: String::new(), ..join.clone() }, 1),
            Some(ErrorCode::InvalidRequest)
        );
        assert_eq!(
            code(&ConsumerGroupHeartbeatRequest { rebalance_timeout_ms: -1, ..join.clone() }, 1),
            Some(ErrorCode::InvalidRequest)
        );
        assert_eq!(
            code(&ConsumerGroupHeartbeatRequest { topic_partitions: None, ..join.clone() }, 1),
            Some(ErrorCode::InvalidRequest)
        );
        assert_eq!(
            code(&ConsumerGroupHeartbeatRequest { subscribed_topic_names: None, ..join.clone() }, 1),
            Some(ErrorCode::InvalidRequest)
        );
        assert_eq!(
            code(&ConsumerGroupHeartbeatRequest { member_epoch: -3, ..join.clone() }, 1),
            Some(ErrorCode::InvalidRequest)
        );
        assert_eq!(
            code(&ConsumerGroupHeartbeatRequest { member_epoch: -2, ..join.clone() }, 1),
            Some(ErrorCode::InvalidRequest),
            "static leave needs an instance id"
        );
        assert_eq!(
            code(&ConsumerGroupHeartbeatRequest { server_assignor: Some("sticky".into()), ..join.clone() }, 1),
            Some(ErrorCode::UnsupportedAssignor)
        );
        assert_eq!(
            code(&ConsumerGroupHeartbeatRequest { server_assignor: Some("range".into()), ..join.clone() }, 1),
            None
        );
        assert_eq!(
            code(&ConsumerGroupHeartbeatRequest { subscribed_topic_regex: Some("a(".into()), ..join.clone() }, 1),
            Some(ErrorCode::InvalidRegularExpression)
        );
        assert_eq!(
            code(
                &ConsumerGroupHeartbeatRequest {
                    subscribed_topic_names: None,
                    subscribed_topic_regex: Some("t.*".into()),
                    ..join.clone()
                },
                1
            ),
            None
        );
    }
}
