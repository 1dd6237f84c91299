//! CreateTopics (key 19), versions 0-7: validation as Kafka does it, `validate_only`, explicit
//! replica assignments, topic configs by Kafka's names.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::primitives::Uuid;
use kafka_protocol::ErrorCode;

use crate::cluster::{Partition, State};

pub(crate) const MIN_VERSION: i16 = 0;
pub(crate) const MAX_VERSION: i16 = 7;

/// Kafka's topic name rule: 1-249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub(crate) fn validate_topic_name(name: &str) -> Result<(), (ErrorCode, String)> {
    let bad = |why: &str| Err((ErrorCode::InvalidTopicException, format!("Topic name \"{name}\" is illegal, {why}")));
    if name.is_empty() {
        return bad("it can't be empty");
    }
    if name == "." || name == ".." {
        return bad("it can't be \".\" or \"..\"");
    }
    if name.len() > 249 {
        return bad("it can't be longer than 249 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        return bad("it contains a character other than ASCII alphanumerics, '.', '_' and '-'");
    }
    Ok(())
}

/// The first checks of every creation: a legal name that is not taken.
fn validate_new_name(state: &State, name: &str) -> Result<(), (ErrorCode, String)> {
    validate_topic_name(name)?;
    if state.topics.contains_key(name) {
        return Err((ErrorCode::TopicAlreadyExists, format!("Topic '{name}' already exists.")));
    }
    Ok(())
}

/// The last check before creating: every config is one Kafka defines, with a legal value.
fn validate_configs(configs: &BTreeMap<String, String>) -> Result<(), (ErrorCode, String)> {
    configs.iter().try_for_each(|(k, v)| crate::configs::validate(k, v))
}

/// What a successful creation produced.
pub(crate) struct Created {
    pub id: Uuid,
    pub partitions: i32,
    pub replication_factor: i16,
}

/// Validates and (unless `validate_only`) creates a topic with leaders spread over brokers.
pub(crate) fn create(
    state: &mut State,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<Created, (ErrorCode, String)> {
    validate_new_name(state, name)?;
    let partitions = match partitions {
        -1 => state.settings.default_partitions,
        n if n >= 1 => n,
        n => {
            return Err((
                ErrorCode::InvalidPartitions,
                format!("Number of partitions was set to an invalid non-positive value ({n})."),
            ))
        }
    };
    let brokers = state.brokers.len();
    let replication_factor = match replication_factor {
        -1 => state.settings.default_replication_factor,
        n if n >= 1 => n,
        n => {
            return Err((
                ErrorCode::InvalidReplicationFactor,
                format!("Replication factor must be larger than 0, or -1 to use the default value ({n})."),
            ))
        }
    };
    if replication_factor as usize > brokers {
        return Err((
            ErrorCode::InvalidReplicationFactor,
            format!("Unable to replicate the partition {replication_factor} time(s): The target replication factor of {replication_factor} cannot be reached because only {brokers} broker(s) are registered."),
        ));
    }
    validate_configs(&configs)?;
    if validate_only {
        return Ok(Created { id: Uuid::ZERO, partitions, replication_factor });
    }
    let id = state.add_topic(name, partitions, replication_factor, configs);
    Ok(Created { id, partitions, replication_factor })
}

/// Creation with an explicit replica assignment (partition -> brokers).
fn create_assigned(
    state: &mut State,
    topic: &CreatableTopic,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<Created, (ErrorCode, String)> {
    validate_new_name(state, &topic.name)?;
    if topic.num_partitions != -1 || topic.replication_factor != -1 {
        return Err((
            ErrorCode::InvalidRequest,
            "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".into(),
        ));
    }
    let mut assignment: Vec<&[i32]> = vec![&[]; topic.assignments.len()];
    for a in &topic.assignments {
        let slot = usize::try_from(a.partition_index).ok().and_then(|i| assignment.get_mut(i));
        match slot {
            Some(s) if s.is_empty() => *s = &a.broker_ids,
            _ => {
                return Err((
                    ErrorCode::InvalidReplicaAssignment,
                    format!("Partitions should be a consecutive 0-based integer sequence, got {}.", a.partition_index),
                ))
            }
        }
    }
    let rf = assignment.first().map_or(0, |r| r.len());
    for replicas in &assignment {
        if replicas.is_empty() || replicas.len() != rf {
            return Err((
                ErrorCode::InvalidReplicaAssignment,
                "All partitions should have the same number of replicas.".into(),
            ));
        }
        for b in *replicas {
            if !state.brokers.iter().any(|x| x.node_id == *b) {
                return Err((
                    ErrorCode::InvalidReplicaAssignment,
                    format!("Unknown broker {b} in the replica assignment."),
                ));
            }
        }
    }
    validate_configs(&configs)?;
    let (partitions, replication_factor) = (assignment.len() as i32, rf as i16);
    if validate_only {
        return Ok(Created { id: Uuid::ZERO, partitions, replication_factor });
    }
    let id = state.new_topic_id();
    let parts = assignment.iter().map(|r| Partition::new(r.to_vec())).collect();
    state.insert_topic(&topic.name, id, parts, configs);
    Ok(Created { id, partitions, replication_factor })
}

pub(crate) fn handle(state: &mut State, _version: i16, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut seen = BTreeMap::new();
    for t in &req.topics {
        *seen.entry(t.name.clone()).or_insert(0) += 1;
    }
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let mut result = CreatableTopicResult {
                name: t.name.clone(),
                error_message: None,
                num_partitions: -1,
                replication_factor: -1,
                ..Default::default()
            };
            let configs: BTreeMap<String, String> =
                t.configs.iter().filter_map(|c| c.value.clone().map(|v| (c.name.clone(), v))).collect();
            let outcome = if seen.get(&t.name).copied().unwrap_or(0) > 1 {
                Err((
                    ErrorCode::InvalidRequest,
                    format!("Create topics request from client contains the topic '{}' more than once.", t.name),
                ))
            } else if t.assignments.is_empty() {
                create(state, &t.name, t.num_partitions, t.replication_factor, configs.clone(), req.validate_only)
            } else {
                create_assigned(state, t, configs.clone(), req.validate_only)
            };
            match outcome {
                Ok(created) => {
                    result.topic_id = created.id;
                    result.num_partitions = created.partitions;
                    result.replication_factor = created.replication_factor;
                    result.configs = Some(
                        configs
                            .into_iter()
                            .map(|(name, value)| CreatableTopicConfigs {
                                name,
                                value: Some(value),
                                config_source: 1, // DYNAMIC_TOPIC_CONFIG
                                ..Default::default()
                            })
                            .collect(),
                    );
                }
                Err((code, message)) => {
                    result.error_code = code.code();
                    result.error_message = Some(message);
                }
            }
            result
        })
        .collect();
    CreateTopicsResponse { throttle_time_ms: 0, topics, ..Default::default() }
}
