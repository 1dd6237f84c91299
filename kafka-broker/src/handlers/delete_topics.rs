//! DeleteTopics (key 20), versions 0-6: by name (every version) and by topic id (v6), with
//! Kafka's checks for duplicates and for entries that name both or neither; a deleted topic's
//! partitions and their logs go with it. `delete.topic.enable=false` refuses every deletion.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
use kafka_protocol::primitives::Uuid;
use kafka_protocol::ErrorCode;

use crate::cluster::State;

pub(crate) const MIN_VERSION: i16 = 0;
pub(crate) const MAX_VERSION: i16 = 6;

/// One entry of the request: a topic by name, by id, or malformed (already answered).
enum Target {
    Name(String),
    Id(Uuid),
    Bad(DeletableTopicResult),
}

fn result(name: Option<String>, topic_id: Uuid, error: Option<(ErrorCode, String)>) -> DeletableTopicResult {
    let (code, message) = match error {
        Some((code, message)) => (code.code(), Some(message)),
        None => (0, None),
    };
    DeletableTopicResult { name, topic_id, error_code: code, error_message: message, ..Default::default() }
}

/// An error with Kafka's default message for its code.
fn plain(code: ErrorCode) -> Option<(ErrorCode, String)> {
    Some((code, code.description().to_string()))
}

/// The request's entries in order: v0-5 list names, v6 lists name-or-id pairs.
fn targets(req: &DeleteTopicsRequest) -> Vec<Target> {
    let by_name = req.topic_names.iter().map(|n| Target::Name(n.clone()));
    let v6 = req.topics.iter().map(|t| match (&t.name, t.topic_id.is_zero()) {
        (None, true) => Target::Bad(result(
            None,
            Uuid::ZERO,
            Some((ErrorCode::InvalidRequest, "Neither topic name nor id were specified.".into())),
        )),
        (None, false) => Target::Id(t.topic_id),
        (Some(name), true) => Target::Name(name.clone()),
        (Some(name), false) => Target::Bad(result(
            Some(name.clone()),
            t.topic_id,
            Some((ErrorCode::InvalidRequest, "You may not specify both topic name and topic id.".into())),
        )),
    });
    by_name.chain(v6).collect()
}

pub(crate) fn handle(state: &mut State, version: i16, req: &DeleteTopicsRequest) -> DeleteTopicsResponse {
    let targets = targets(req);
    if state.settings.broker_configs.get("delete.topic.enable").is_some_and(|v| v.trim().eq_ignore_ascii_case("false"))
    {
        // Kafka refuses the whole request; before v3 TOPIC_DELETION_DISABLED did not exist.
        let code = if version < 3 { ErrorCode::InvalidRequest } else { ErrorCode::TopicDeletionDisabled };
        let disabled = || Some((code, "Topic deletion is disabled.".to_string()));
        let responses = targets
            .into_iter()
            .map(|t| match t {
                Target::Name(name) => result(Some(name), Uuid::ZERO, disabled()),
                Target::Id(id) => result(None, id, disabled()),
                Target::Bad(r) => result(r.name, r.topic_id, disabled()),
            })
            .collect();
        return DeleteTopicsResponse { throttle_time_ms: 0, responses, ..Default::default() };
    }

    let mut name_counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut id_counts: BTreeMap<Uuid, usize> = BTreeMap::new();
    for t in &targets {
        match t {
            Target::Name(n) => *name_counts.entry(n.clone()).or_default() += 1,
            Target::Id(id) => *id_counts.entry(*id).or_default() += 1,
            Target::Bad(_) => {}
        }
    }
    // Ids that a (single) name also resolves to: Kafka answers the name with INVALID_REQUEST
    // and deletes neither, leaving the id without an answer of its own.
    let claimed_by_name: BTreeSet<Uuid> = name_counts
        .iter()
        .filter(|(_, count)| **count == 1)
        .filter_map(|(name, _)| state.topics.get(name).map(|t| t.id))
        .filter(|id| id_counts.contains_key(id))
        .collect();

    // A name or id given more than once gets a single answer.
    let mut answered_names: BTreeSet<String> = BTreeSet::new();
    let mut answered_ids: BTreeSet<Uuid> = BTreeSet::new();
    let mut responses = Vec::new();
    for target in targets {
        match target {
            Target::Bad(r) => responses.push(r),
            Target::Name(name) => {
                if name_counts.get(&name).copied().unwrap_or(0) > 1 {
                    if answered_names.insert(name.clone()) {
                        let dup = Some((ErrorCode::InvalidRequest, "Duplicate topic name.".to_string()));
                        responses.push(result(Some(name), Uuid::ZERO, dup));
                    }
                    continue;
                }
                let Some(id) = state.topics.get(&name).map(|t| t.id) else {
                    responses.push(result(Some(name), Uuid::ZERO, plain(ErrorCode::UnknownTopicOrPartition)));
                    continue;
                };
                if claimed_by_name.contains(&id) {
                    let both = Some((
                        ErrorCode::InvalidRequest,
                        "The provided topic name maps to an ID that was already supplied.".to_string(),
                    ));
                    responses.push(result(Some(name), id, both));
                    continue;
                }
                state.delete_topic(&name);
                responses.push(result(Some(name), id, None));
            }
            Target::Id(id) => {
                if id_counts.get(&id).copied().unwrap_or(0) > 1 {
                    if answered_ids.insert(id) {
                        let dup = Some((ErrorCode::InvalidRequest, "Duplicate topic id.".to_string()));
                        responses.push(result(None, id, dup));
                    }
                    continue;
                }
                if claimed_by_name.contains(&id) {
                    continue;
                }
                match state.topic_name_by_id(id).map(str::to_string) {
                    Some(name) => {
                        state.delete_topic(&name);
                        responses.push(result(Some(name), id, None));
                    }
                    None => responses.push(result(None, id, plain(ErrorCode::UnknownTopicId))),
                }
            }
        }
    }
    DeleteTopicsResponse { throttle_time_ms: 0, responses, ..Default::default() }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::delete_topics_request::DeleteTopicState;

    use super::*;
    use crate::cluster::test_state;

    fn by_name(names: &[&str]) -> DeleteTopicsRequest {
        DeleteTopicsRequest { topic_names: names.iter().map(|n| n.to_string()).collect(), ..Default::default() }
    }

    fn v6(entries: Vec<(Option<&str>, Uuid)>) -> DeleteTopicsRequest {
        DeleteTopicsRequest {
            topics: entries
                .into_iter()
                .map(|(name, topic_id)| DeleteTopicState {
                    name: name.map(str::to_string),
                    topic_id,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn outcome(resp: &DeleteTopicsResponse) -> Vec<(Option<&str>, i16)> {
        resp.responses.iter().map(|r| (r.name.as_deref(), r.error_code)).collect()
    }

    #[test]
    fn deletes_by_name_and_reports_unknown_names() {
        let mut state = test_state(1);
        let id = state.add_topic("a", 2, 1, BTreeMap::new());
        state.add_topic("b", 1, 1, BTreeMap::new());
        let resp = handle(&mut state, 0, &by_name(&["a", "missing"]));
        assert_eq!(outcome(&resp), vec![(Some("a"), 0), (Some("missing"), ErrorCode::UnknownTopicOrPartition.code())]);
        assert_eq!(resp.responses[0].topic_id, id);
        assert!(resp.responses[0].error_message.is_none());
        assert_eq!(state.topics.keys().collect::<Vec<_>>(), vec!["b"]);
    }

    #[test]
    fn deletes_by_id_and_reports_unknown_ids() {
        let mut state = test_state(1);
        let id = state.add_topic("a", 1, 1, BTreeMap::new());
        let unknown = Uuid::from_u64_pair(1, 2);
        let resp = handle(&mut state, 6, &v6(vec![(None, id), (None, unknown)]));
        assert_eq!(outcome(&resp), vec![(Some("a"), 0), (None, ErrorCode::UnknownTopicId.code())]);
        assert_eq!((resp.responses[0].topic_id, resp.responses[1].topic_id), (id, unknown));
        assert!(state.topics.is_empty());
    }

    #[test]
    fn malformed_and_duplicate_entries_are_invalid_requests() {
        let mut state = test_state(1);
        let a = state.add_topic("a", 1, 1, BTreeMap::new());
        let b = state.add_topic("b", 1, 1, BTreeMap::new());
        let c = state.add_topic("c", 1, 1, BTreeMap::new());
        let req = v6(vec![
            (None, Uuid::ZERO),
            (Some("a"), a),
            (Some("b"), Uuid::ZERO),
            (Some("b"), Uuid::ZERO),
            (None, c),
            (None, c),
        ]);
        let resp = handle(&mut state, 6, &req);
        let invalid = ErrorCode::InvalidRequest.code();
        assert_eq!(outcome(&resp), vec![(None, invalid), (Some("a"), invalid), (Some("b"), invalid), (None, invalid)]);
        let messages: Vec<&str> = resp.responses.iter().filter_map(|r| r.error_message.as_deref()).collect();
        assert_eq!(
            messages,
            vec![
                "Neither topic name nor id were specified.",
                "You may not specify both topic name and topic id.",
                "Duplicate topic name.",
                "Duplicate topic id."
            ]
        );
        assert_eq!(state.topics.len(), 3, "nothing deleted");
        // A name and the id it maps to, both given: the name is refused and nothing deleted.
        let resp = handle(&mut state, 6, &v6(vec![(Some("b"), Uuid::ZERO), (None, b)]));
        assert_eq!(outcome(&resp), vec![(Some("b"), invalid)]);
        assert_eq!(resp.responses[0].topic_id, b);
        assert!(state.topics.contains_key("b"));
    }

    #[test]
    fn deletion_can_be_disabled() {
        let mut state = test_state(1);
        state.add_topic("a", 1, 1, BTreeMap::new());
        state.settings.broker_configs.insert("delete.topic.enable".into(), "false".into());
        let resp = handle(&mut state, 5, &by_name(&["a"]));
        assert_eq!(outcome(&resp), vec![(Some("a"), ErrorCode::TopicDeletionDisabled.code())]);
        assert_eq!(handle(&mut state, 2, &by_name(&["a"])).responses[0].error_code, ErrorCode::InvalidRequest.code());
        assert!(state.topics.contains_key("a"));
    }

    #[test]
    fn every_version_encodes() {
        for version in MIN_VERSION..=MAX_VERSION {
            let mut state = test_state(1);
            state.add_topic("a", 1, 1, BTreeMap::new());
            let id = state.add_topic("b", 1, 1, BTreeMap::new());
            let req = if version >= 6 {
                v6(vec![(Some("a"), Uuid::ZERO), (None, id), (None, Uuid::ZERO), (Some("x"), Uuid::ZERO)])
            } else {
                by_name(&["a", "x", "x"])
            };
            crate::handlers::assert_encodes(handle(&mut state, version, &req), version);
        }
    }
}
