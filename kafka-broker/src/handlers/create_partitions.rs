//! CreatePartitions (key 37), versions 0-3: grows a topic to a new partition count, with
//! Kafka's checks, explicit assignments for the new partitions or leaders spread over the
//! brokers, and `validate_only`.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::ErrorCode;

use crate::cluster::{Partition, State};

pub(crate) const MIN_VERSION: i16 = 0;
pub(crate) const MAX_VERSION: i16 = 3;

type Failure = (ErrorCode, String);

fn invalid_assignment(message: String) -> Failure {
    (ErrorCode::InvalidReplicaAssignment, message)
}

/// Checks one explicit assignment the way Kafka's controller does.
fn check_assignment(state: &State, replicas: &[i32], replication_factor: usize) -> Result<(), Failure> {
    if replicas.is_empty() {
        return Err(invalid_assignment("The manual partition assignment includes an empty replica list.".into()));
    }
    let mut seen = BTreeSet::new();
    let mut sorted = replicas.to_vec();
    sorted.sort_unstable();
    for b in sorted {
        if !state.brokers.iter().any(|x| x.node_id == b) {
            return Err(invalid_assignment(format!(
                "The manual partition assignment includes broker {b}, but no such broker is registered."
            )));
        }
        if !seen.insert(b) {
            return Err(invalid_assignment(format!(
                "The manual partition assignment includes the broker {b} more than once."
            )));
        }
    }
    if replicas.len() != replication_factor {
        return Err(invalid_assignment(format!(
            "The manual partition assignment includes a partition with {} replica(s), but this is not consistent with previous partitions, which have {replication_factor} replica(s).",
            replicas.len()
        )));
    }
    Ok(())
}

/// The replicas of the new partitions: the explicit assignment, or the round robin of
/// [`State::add_topic`] carried on from the topic's first partition.
fn new_replicas(state: &State, name: &str, topic: &CreatePartitionsTopic) -> Result<Vec<Vec<i32>>, Failure> {
    let Some(existing) = state.topics.get(name) else {
        return Err((ErrorCode::UnknownTopicOrPartition, ErrorCode::UnknownTopicOrPartition.description().into()));
    };
    let current = existing.partitions.len();
    let count = topic.count;
    let additional = match usize::try_from(count) {
        Ok(n) if n > current => n - current,
        Ok(n) if n == current => {
            return Err((ErrorCode::InvalidPartitions, format!("Topic already has {current} partition(s).")))
        }
        _ => {
            return Err((
                ErrorCode::InvalidPartitions,
                format!("The topic {name} currently has {current} partition(s); {count} would not be an increase."),
            ))
        }
    };
    let first = existing.partitions.first().map(|p| p.replicas.as_slice()).unwrap_or_default();
    let replication_factor = first.len().max(1);
    if let Some(assignments) = &topic.assignments {
        if assignments.len() != additional {
            return Err(invalid_assignment(format!(
                "Attempted to add {additional} additional partition(s), but only {} assignment(s) were specified.",
                assignments.len()
            )));
        }
        for a in assignments {
            check_assignment(state, &a.broker_ids, replication_factor)?;
        }
        return Ok(assignments.iter().map(|a| a.broker_ids.clone()).collect());
    }
    let n = state.brokers.len().max(1);
    let leader = first.first().copied().unwrap_or(-1);
    let start = state.brokers.iter().position(|b| b.node_id == leader).unwrap_or(0);
    Ok((current..current + additional)
        .map(|p| {
            (0..replication_factor).filter_map(|r| state.brokers.get((start + p + r) % n).map(|b| b.node_id)).collect()
        })
        .collect())
}

pub(crate) fn handle(state: &mut State, _version: i16, req: &CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &req.topics {
        *counts.entry(t.name.as_str()).or_default() += 1;
    }
    let mut answered_duplicates = BTreeSet::new();
    let mut results = Vec::new();
    for topic in &req.topics {
        let name = topic.name.as_str();
        let outcome = if counts.get(name).copied().unwrap_or(0) > 1 {
            // Kafka answers a name given more than once with a single error.
            if !answered_duplicates.insert(name) {
                continue;
            }
            Err((ErrorCode::InvalidRequest, "Duplicate topic name.".to_string()))
        } else {
            new_replicas(state, name, topic)
        };
        let error = match outcome {
            Ok(replicas) => {
                if !req.validate_only {
                    if let Some(t) = state.topics.get_mut(name) {
                        t.partitions.extend(replicas.into_iter().map(Partition::new));
                    }
                }
                None
            }
            Err(e) => Some(e),
        };
        results.push(CreatePartitionsTopicResult {
            name: topic.name.clone(),
            error_code: error.as_ref().map_or(0, |(code, _)| code.code()),
            error_message: error.map(|(_, message)| message),
            ..Default::default()
        });
    }
    CreatePartitionsResponse { throttle_time_ms: 0, results, ..Default::default() }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsAssignment;

    use super::*;
    use crate::cluster::test_state;

    fn grow(name: &str, count: i32, assignments: Option<Vec<Vec<i32>>>) -> CreatePartitionsTopic {
        CreatePartitionsTopic {
            name: name.into(),
            count,
            assignments: assignments.map(|a| {
                a.into_iter()
                    .map(|broker_ids| CreatePartitionsAssignment { broker_ids, ..Default::default() })
                    .collect()
            }),
            ..Default::default()
        }
    }

    fn request(topics: Vec<CreatePartitionsTopic>, validate_only: bool) -> CreatePartitionsRequest {
        CreatePartitionsRequest { topics, timeout_ms: 1000, validate_only, ..Default::default() }
    }

    fn replicas(state: &State, name: &str) -> Vec<Vec<i32>> {
        state.topics[name].partitions.iter().map(|p| p.replicas.clone()).collect()
    }

    #[test]
    fn new_partitions_continue_the_round_robin_with_the_same_replication_factor() {
        let mut state = test_state(3);
        state.add_topic("first", 1, 1, BTreeMap::new());
        state.add_topic("t", 2, 2, BTreeMap::new()); // the second topic: leaders start on broker 2
        let resp = handle(&mut state, 3, &request(vec![grow("t", 5, None)], false));
        assert_eq!(resp.results[0].error_code, 0);
        assert!(resp.results[0].error_message.is_none());
        assert_eq!(replicas(&state, "t"), vec![vec![2, 3], vec![3, 1], vec![1, 2], vec![2, 3], vec![3, 1]]);
        let p = &state.topics["t"].partitions[4];
        assert_eq!((p.leader, p.leader_epoch, p.isr.clone()), (3, 0, vec![3, 1]));
    }

    #[test]
    fn explicit_assignments_are_used_and_checked() {
        let mut state = test_state(3);
        state.add_topic("t", 1, 2, BTreeMap::new());
        let resp = handle(&mut state, 0, &request(vec![grow("t", 3, Some(vec![vec![3, 2], vec![1, 3]]))], false));
        assert_eq!(resp.results[0].error_code, 0);
        assert_eq!(replicas(&state, "t"), vec![vec![1, 2], vec![3, 2], vec![1, 3]]);

        let bad = [
            (vec![vec![1, 2]], "Attempted to add 2 additional partition(s), but only 1 assignment(s) were specified."),
            (vec![vec![1, 9], vec![1, 2]], "The manual partition assignment includes broker 9, but no such broker is registered."),
            (vec![vec![2, 2], vec![1, 2]], "The manual partition assignment includes the broker 2 more than once."),
            (vec![vec![1], vec![1, 2]], "The manual partition assignment includes a partition with 1 replica(s), but this is not consistent with previous partitions, which have 2 replica(s)."),
            (vec![vec![], vec![1, 2]], "The manual partition assignment includes an empty replica list."),
        ];
        for (assignment, message) in bad {
            let resp = handle(&mut state, 0, &request(vec![grow("t", 5, Some(assignment))], false));
            assert_eq!(resp.results[0].error_code, ErrorCode::InvalidReplicaAssignment.code());
            assert_eq!(resp.results[0].error_message.as_deref(), Some(message));
        }
        assert_eq!(state.topics["t"].partitions.len(), 3, "failed requests add nothing");
    }

    #[test]
    fn only_increases_of_known_topics_are_allowed() {
        let mut state = test_state(1);
        state.add_topic("t", 3, 1, BTreeMap::new());
        let resp = handle(&mut state, 1, &request(vec![grow("t", 3, None), grow("t2", 4, None)], false));
        assert_eq!(resp.results[0].error_code, ErrorCode::InvalidPartitions.code());
        assert_eq!(resp.results[0].error_message.as_deref(), Some("Topic already has 3 partition(s)."));
        assert_eq!(resp.results[1].error_code, ErrorCode::UnknownTopicOrPartition.code());
        let resp = handle(&mut state, 1, &request(vec![grow("t", 2, None)], false));
        assert_eq!(resp.results[0].error_code, ErrorCode::InvalidPartitions.code());
        assert_eq!(
            resp.results[0].error_message.as_deref(),
            Some("The topic t currently has 3 partition(s); 2 would not be an increase.")
        );
        assert_eq!(state.topics["t"].partitions.len(), 3);
    }

    #[test]
    fn validate_only_and_duplicates_change_nothing() {
        let mut state = test_state(2);
        state.add_topic("t", 1, 1, BTreeMap::new());
        state.add_topic("u", 1, 1, BTreeMap::new());
        let resp = handle(&mut state, 2, &request(vec![grow("t", 4, None)], true));
        assert_eq!(resp.results[0].error_code, 0);
        assert_eq!(state.topics["t"].partitions.len(), 1);
        let resp =
            handle(&mut state, 2, &request(vec![grow("u", 2, None), grow("t", 4, None), grow("u", 3, None)], false));
        let outcome: Vec<(&str, i16)> = resp.results.iter().map(|r| (r.name.as_str(), r.error_code)).collect();
        assert_eq!(outcome, vec![("u", ErrorCode::InvalidRequest.code()), ("t", 0)]);
        assert_eq!(resp.results[0].error_message.as_deref(), Some("Duplicate topic name."));
        assert_eq!((state.topics["t"].partitions.len(), state.topics["u"].partitions.len()), (4, 1));
    }

    #[test]
    fn every_version_encodes() {
        for version in MIN_VERSION..=MAX_VERSION {
            let mut state = test_state(2);
            state.add_topic("t", 1, 1, BTreeMap::new());
            let req = request(vec![grow("t", 3, None), grow("x", 2, None)], false);
            crate::handlers::assert_encodes(handle(&mut state, version, &req), version);
        }
    }
}
