//! Metadata (key 3), versions 0-12: brokers, controller, cluster id, topics with partitions,
//! leaders, leader epochs, replicas and ISR; topic ids (v10+); auto-creation of missing topics
//! when the cluster allows it and the request does (v4+).

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
use kafka_protocol::ErrorCode;

use crate::cluster::{State, Topic};
use crate::handlers::create_topics;

pub(crate) const MIN_VERSION: i16 = 0;
pub(crate) const MAX_VERSION: i16 = 12;

/// Kafka's value for "authorized operations not requested".
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

fn describe(name: &str, topic: &Topic) -> MetadataResponseTopic {
    MetadataResponseTopic {
        error_code: 0,
        name: Some(name.to_string()),
        topic_id: topic.id,
        is_internal: false,
        partitions: topic
            .partitions
            .iter()
            .enumerate()
            .map(|(i, p)| MetadataResponsePartition {
                error_code: if p.leader < 0 { ErrorCode::LeaderNotAvailable.code() } else { 0 },
                partition_index: i as i32,
                leader_id: p.leader,
                leader_epoch: p.leader_epoch,
                replica_nodes: p.replicas.clone(),
                isr_nodes: p.isr.clone(),
                offline_replicas: Vec::new(),
                ..Default::default()
            })
            .collect(),
        topic_authorized_operations: AUTHORIZED_OPERATIONS_OMITTED,
        ..Default::default()
    }
}

fn missing(name: Option<String>, topic_id: kafka_protocol::primitives::Uuid, code: ErrorCode) -> MetadataResponseTopic {
    MetadataResponseTopic {
        error_code: code.code(),
        name,
        topic_id,
        topic_authorized_operations: AUTHORIZED_OPERATIONS_OMITTED,
        ..Default::default()
    }
}

pub(crate) fn handle(state: &mut State, version: i16, req: MetadataRequest) -> MetadataResponse {
    let brokers = state
        .brokers
        .iter()
        .filter(|b| !state.stopped.contains(&b.node_id))
        .map(|b| MetadataResponseBroker {
            node_id: b.node_id,
            host: b.host.clone(),
            port: i32::from(b.port),
            rack: b.rack.clone(),
            ..Default::default()
        })
        .collect();
    // v0: an empty list means every topic; v1+: null means every topic, empty means none.
    let wanted = match req.topics {
        None => None,
        Some(list) if version == 0 && list.is_empty() => None,
        Some(list) => Some(list),
    };
    let topics = match wanted {
        None => state.topics.iter().map(|(name, t)| describe(name, t)).collect(),
        Some(list) => {
            // Before v4 the request has no allow_auto_topic_creation field and Kafka treats it as true.
            let allow = state.settings.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
            list.into_iter()
                .map(|t| {
                    let name = match t.name {
                        Some(n) => n,
                        // v10+: a topic asked for by id.
                        None => {
                            match state.topics.iter().find(|(_, topic)| topic.id == t.topic_id && !t.topic_id.is_zero())
                            {
                                Some((name, topic)) => return describe(name, topic),
                                None => return missing(None, t.topic_id, ErrorCode::UnknownTopicId),
                            }
                        }
                    };
                    if let Some(topic) = state.topics.get(&name) {
                        return describe(&name, topic);
                    }
                    if let Err((code, _)) = create_topics::validate_topic_name(&name) {
                        return missing(Some(name), t.topic_id, code);
                    }
                    if !allow {
                        return missing(Some(name), t.topic_id, ErrorCode::UnknownTopicOrPartition);
                    }
                    let (partitions, rf) =
                        (state.settings.default_partitions, state.settings.default_replication_factor);
                    match create_topics::create(state, &name, partitions, rf, Default::default(), false) {
                        Ok(_) => match state.topics.get(&name) {
                            Some(topic) => describe(&name, topic),
                            None => missing(Some(name), t.topic_id, ErrorCode::UnknownTopicOrPartition),
                        },
                        Err((code, _)) => missing(Some(name), t.topic_id, code),
                    }
                })
                .collect()
        }
    };
    MetadataResponse {
        throttle_time_ms: 0,
        brokers,
        cluster_id: Some(state.cluster_id.clone()),
        controller_id: state.controller_id,
        topics,
        cluster_authorized_operations: AUTHORIZED_OPERATIONS_OMITTED,
        ..Default::default()
    }
}
