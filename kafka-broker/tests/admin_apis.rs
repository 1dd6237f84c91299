//! The admin APIs over real TCP with raw requests encoded by kafka-protocol, each at its
//! lowest and highest version: DescribeCluster, DeleteTopics, CreatePartitions,
//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs, their answers and their errors,
//! and what Metadata shows afterwards.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeMap;

use common::*;
use kafka_broker::Cluster;
use kafka_protocol::messages::create_partitions_request::{CreatePartitionsAssignment, CreatePartitionsTopic};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResourceResult;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::*;
use kafka_protocol::primitives::Uuid;
use kafka_protocol::{ApiKey, ErrorCode};
use tokio::net::TcpStream;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const GROUP: i8 = 32;

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

/// Metadata for one topic, never creating it.
async fn metadata(s: &mut TcpStream, name: &str) -> MetadataResponseTopic {
    let req = MetadataRequest {
        topics: Some(vec![MetadataRequestTopic { name: Some(name.into()), ..Default::default() }]),
        allow_auto_topic_creation: false,
        ..Default::default()
    };
    call(s, 900, &req, 12).await.topics.remove(0)
}

async fn start(brokers: usize) -> (Cluster, TcpStream) {
    let cluster = Cluster::builder().brokers(brokers).cluster_id("admin-cluster").start().await.unwrap();
    let s = connect(&cluster).await;
    (cluster, s)
}

#[tokio::test]
async fn api_versions_advertises_the_admin_apis() {
    let (cluster, mut s) = start(1).await;
    let resp = call(&mut s, 1, &ApiVersionsRequest::default(), 3).await;
    let keys: BTreeMap<i16, (i16, i16)> =
        resp.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect();
    assert_eq!(keys.get(&ApiKey::DescribeCluster.key()), Some(&(0, 1)));
    assert_eq!(keys.get(&ApiKey::DeleteTopics.key()), Some(&(0, 6)));
    assert_eq!(keys.get(&ApiKey::CreatePartitions.key()), Some(&(0, 3)));
    assert_eq!(keys.get(&ApiKey::DescribeConfigs.key()), Some(&(0, 4)));
    assert_eq!(keys.get(&ApiKey::AlterConfigs.key()), Some(&(0, 2)));
    assert_eq!(keys.get(&ApiKey::IncrementalAlterConfigs.key()), Some(&(0, 1)));
    cluster.shutdown().await;
}

// ---- DescribeCluster ----

#[tokio::test]
async fn describe_cluster_lists_brokers_at_v0_and_v1() {
    let (cluster, mut s) = start(3).await;
    let addrs = cluster.broker_addrs();
    for version in [0, 1] {
        let resp = call(&mut s, 1, &DescribeClusterRequest::default(), version).await;
        assert_eq!((resp.error_code, resp.error_message.as_deref()), (0, None), "v{version}");
        assert_eq!(resp.cluster_id, "admin-cluster");
        assert_eq!(resp.controller_id, 1);
        let brokers: Vec<(i32, String, i32)> =
            resp.brokers.iter().map(|b| (b.broker_id, b.host.clone(), b.port)).collect();
        let expected: Vec<(i32, String, i32)> =
            addrs.iter().map(|(id, a)| (*id, "127.0.0.1".to_string(), i32::from(a.port()))).collect();
        assert_eq!(brokers, expected, "v{version}");
        assert_eq!(resp.cluster_authorized_operations, i32::MIN, "not asked for");
    }
    let v1 = call(&mut s, 2, &DescribeClusterRequest { endpoint_type: 1, ..Default::default() }, 1).await;
    assert_eq!(v1.endpoint_type, 1);
    let with_ops = DescribeClusterRequest { include_cluster_authorized_operations: true, ..Default::default() };
    let ops = call(&mut s, 3, &with_ops, 0).await.cluster_authorized_operations;
    assert_eq!(ops, 0b1_1111_1010_0000, "every cluster operation: there is no authorizer");
    cluster.shutdown().await;
}

#[tokio::test]
async fn describe_cluster_refuses_other_endpoint_types() {
    let (cluster, mut s) = start(1).await;
    let controllers = call(&mut s, 1, &DescribeClusterRequest { endpoint_type: 2, ..Default::default() }, 1).await;
    assert_eq!(controllers.error_code, ErrorCode::MismatchedEndpointType.code());
    assert!(controllers.brokers.is_empty());
    let unknown = call(&mut s, 2, &DescribeClusterRequest { endpoint_type: 9, ..Default::default() }, 1).await;
    assert_eq!(unknown.error_code, ErrorCode::UnsupportedEndpointType.code());
    assert_eq!(unknown.error_message.as_deref(), Some("Unsupported endpoint type 9"));
    cluster.shutdown().await;
}

// ---- DeleteTopics ----

fn delete_by_name(names: &[&str]) -> DeleteTopicsRequest {
    DeleteTopicsRequest {
        topic_names: names.iter().map(|n| n.to_string()).collect(),
        timeout_ms: 1000,
        ..Default::default()
    }
}

fn delete_v6(entries: Vec<(Option<&str>, Uuid)>) -> DeleteTopicsRequest {
    DeleteTopicsRequest {
        topics: entries
            .into_iter()
            .map(|(name, topic_id)| DeleteTopicState { name: name.map(str::to_string), topic_id, ..Default::default() })
            .collect(),
        timeout_ms: 1000,
        ..Default::default()
    }
}

#[tokio::test]
async fn delete_topics_v0_by_name_then_metadata_no_longer_knows_it() {
    let (cluster, mut s) = start(2).await;
    cluster.create_topic("gone", 3, 2).await.unwrap();
    cluster.create_topic("kept", 1, 1).await.unwrap();
    assert_eq!(metadata(&mut s, "gone").await.error_code, 0);
    let resp = call(&mut s, 1, &delete_by_name(&["gone", "never-was"]), 0).await;
    let outcome: Vec<(Option<&str>, i16)> = resp.responses.iter().map(|r| (r.name.as_deref(), r.error_code)).collect();
    assert_eq!(outcome, vec![(Some("gone"), 0), (Some("never-was"), ErrorCode::UnknownTopicOrPartition.code())]);
    let md = metadata(&mut s, "gone").await;
    assert_eq!(md.error_code, ErrorCode::UnknownTopicOrPartition.code());
    assert!(md.partitions.is_empty());
    assert_eq!(metadata(&mut s, "kept").await.error_code, 0);
    // Deleting again: the topic is unknown now.
    let again = call(&mut s, 2, &delete_by_name(&["gone"]), 0).await;
    assert_eq!(again.responses[0].error_code, ErrorCode::UnknownTopicOrPartition.code());
    // A name given twice is one INVALID_REQUEST, and nothing is deleted.
    let twice = call(&mut s, 3, &delete_by_name(&["kept", "kept"]), 0).await;
    assert_eq!(twice.responses.len(), 1);
    assert_eq!(twice.responses[0].error_code, ErrorCode::InvalidRequest.code());
    assert_eq!(metadata(&mut s, "kept").await.error_code, 0);
    cluster.shutdown().await;
}

#[tokio::test]
async fn delete_topics_v6_by_id_and_by_name() {
    let (cluster, mut s) = start(1).await;
    cluster.create_topic("by-id", 2, 1).await.unwrap();
    cluster.create_topic("by-name", 1, 1).await.unwrap();
    cluster.create_topic("both", 1, 1).await.unwrap();
    let by_id = metadata(&mut s, "by-id").await.topic_id;
    let by_name = metadata(&mut s, "by-name").await.topic_id;
    let both = metadata(&mut s, "both").await.topic_id;
    let unknown = Uuid::from_u64_pair(42, 42);
    let req = delete_v6(vec![
        (None, by_id),
        (Some("by-name"), Uuid::ZERO),
        (None, unknown),
        (Some("nope"), Uuid::ZERO),
        (Some("both"), both),
        (None, Uuid::ZERO),
    ]);
    let resp = call(&mut s, 1, &req, 6).await;
    let outcome: Vec<(Option<&str>, Uuid, i16)> =
        resp.responses.iter().map(|r| (r.name.as_deref(), r.topic_id, r.error_code)).collect();
    assert_eq!(
        outcome,
        vec![
            (Some("by-id"), by_id, 0),
            (Some("by-name"), by_name, 0),
            (None, unknown, ErrorCode::UnknownTopicId.code()),
            (Some("nope"), Uuid::ZERO, ErrorCode::UnknownTopicOrPartition.code()),
            (Some("both"), both, ErrorCode::InvalidRequest.code()),
            (None, Uuid::ZERO, ErrorCode::InvalidRequest.code()),
        ]
    );
    assert!(resp.responses[0].error_message.is_none());
    assert_eq!(resp.responses[4].error_message.as_deref(), Some("You may not specify both topic name and topic id."));
    for gone in ["by-id", "by-name"] {
        assert_eq!(metadata(&mut s, gone).await.error_code, ErrorCode::UnknownTopicOrPartition.code(), "{gone}");
    }
    assert_eq!(metadata(&mut s, "both").await.error_code, 0, "refused entries delete nothing");
    // An id given twice: one INVALID_REQUEST.
    let twice = call(&mut s, 2, &delete_v6(vec![(None, both), (None, both)]), 6).await;
    assert_eq!(twice.responses.len(), 1);
    assert_eq!(
        (twice.responses[0].error_code, twice.responses[0].error_message.as_deref()),
        (ErrorCode::InvalidRequest.code(), Some("Duplicate topic id."))
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn delete_topics_refused_when_deletion_is_disabled() {
    let cluster = Cluster::builder().broker_config("delete.topic.enable", "false").start().await.unwrap();
    let mut s = connect(&cluster).await;
    cluster.create_topic("t", 1, 1).await.unwrap();
    let v0 = call(&mut s, 1, &delete_by_name(&["t"]), 0).await;
    assert_eq!(v0.responses[0].error_code, ErrorCode::InvalidRequest.code());
    let v6 = call(&mut s, 2, &delete_v6(vec![(Some("t"), Uuid::ZERO)]), 6).await;
    assert_eq!(v6.responses[0].error_code, ErrorCode::TopicDeletionDisabled.code());
    assert_eq!(metadata(&mut s, "t").await.error_code, 0);
    cluster.shutdown().await;
}

// ---- CreatePartitions ----

fn grow(name: &str, count: i32, assignments: Option<Vec<Vec<i32>>>) -> CreatePartitionsTopic {
    CreatePartitionsTopic {
        name: name.into(),
        count,
        assignments: assignments.map(|a| {
            a.into_iter().map(|broker_ids| CreatePartitionsAssignment { broker_ids, ..Default::default() }).collect()
        }),
        ..Default::default()
    }
}

fn create_partitions(topics: Vec<CreatePartitionsTopic>, validate_only: bool) -> CreatePartitionsRequest {
    CreatePartitionsRequest { topics, timeout_ms: 1000, validate_only, ..Default::default() }
}

fn results(resp: &CreatePartitionsResponse) -> Vec<(&str, i16)> {
    resp.results.iter().map(|r| (r.name.as_str(), r.error_code)).collect()
}

#[tokio::test]
async fn create_partitions_then_metadata_shows_them_with_leaders() {
    let (cluster, mut s) = start(3).await;
    cluster.create_topic("grows", 3, 2).await.unwrap();
    for (version, count) in [(0i16, 5), (3, 7)] {
        let resp = call(&mut s, 1, &create_partitions(vec![grow("grows", count, None)], false), version).await;
        assert_eq!(results(&resp), vec![("grows", 0)], "v{version}");
        assert!(resp.results[0].error_message.is_none());
        let md = metadata(&mut s, "grows").await;
        assert_eq!(md.partitions.len(), count as usize, "v{version}");
        for p in &md.partitions {
            assert_eq!(p.replica_nodes.len(), 2, "same replication factor as partition 0");
            assert_eq!(p.leader_id, p.replica_nodes[0]);
            assert_eq!(p.isr_nodes, p.replica_nodes);
            assert_eq!(p.error_code, 0);
        }
        let mut leaders = BTreeMap::new();
        for p in &md.partitions {
            *leaders.entry(p.leader_id).or_insert(0) += 1;
        }
        assert_eq!(leaders.len(), 3, "leaders spread over every broker: {leaders:?}");
    }
    // Explicit assignments for the new partitions.
    let resp =
        call(&mut s, 2, &create_partitions(vec![grow("grows", 9, Some(vec![vec![3, 1], vec![2, 3]]))], false), 3).await;
    assert_eq!(results(&resp), vec![("grows", 0)]);
    let md = metadata(&mut s, "grows").await;
    let tail: Vec<(i32, Vec<i32>)> =
        md.partitions[7..].iter().map(|p| (p.leader_id, p.replica_nodes.clone())).collect();
    assert_eq!(tail, vec![(3, vec![3, 1]), (2, vec![2, 3])]);
    assert_eq!(md.partitions[8].partition_index, 8);
    cluster.shutdown().await;
}

#[tokio::test]
async fn create_partitions_errors_at_v0_and_v3() {
    let (cluster, mut s) = start(2).await;
    cluster.create_topic("t", 2, 2).await.unwrap();
    cluster.create_topic("u", 1, 1).await.unwrap();
    for version in [0, 3] {
        let req = create_partitions(
            vec![grow("t", 2, None), grow("t2", 3, None), grow("u", 3, Some(vec![vec![1]])), grow("u", 2, None)],
            false,
        );
        let resp = call(&mut s, 1, &req, version).await;
        assert_eq!(
            results(&resp),
            vec![
                ("t", ErrorCode::InvalidPartitions.code()),
                ("t2", ErrorCode::UnknownTopicOrPartition.code()),
                ("u", ErrorCode::InvalidRequest.code())
            ],
            "v{version}"
        );
        assert_eq!(resp.results[0].error_message.as_deref(), Some("Topic already has 2 partition(s)."));
        assert_eq!(resp.results[2].error_message.as_deref(), Some("Duplicate topic name."));

        let lower = call(&mut s, 2, &create_partitions(vec![grow("t", 1, None)], false), version).await;
        assert_eq!(results(&lower), vec![("t", ErrorCode::InvalidPartitions.code())]);
        assert_eq!(
            lower.results[0].error_message.as_deref(),
            Some("The topic t currently has 2 partition(s); 1 would not be an increase.")
        );

        let bad_assignments = [
            vec![vec![1, 2]],             // two new partitions, one assignment
            vec![vec![1, 7], vec![2, 1]], // no broker 7
            vec![vec![1], vec![2]],       // replication factor 1, the topic has 2
        ];
        for a in bad_assignments {
            let resp = call(&mut s, 3, &create_partitions(vec![grow("t", 4, Some(a.clone()))], false), version).await;
            assert_eq!(results(&resp), vec![("t", ErrorCode::InvalidReplicaAssignment.code())], "v{version} {a:?}");
        }

        // validate_only answers as if, and adds nothing.
        let dry = call(&mut s, 4, &create_partitions(vec![grow("t", 4, None)], true), version).await;
        assert_eq!(results(&dry), vec![("t", 0)]);
        assert_eq!(metadata(&mut s, "t").await.partitions.len(), 2, "v{version}");
    }
    assert_eq!(metadata(&mut s, "u").await.partitions.len(), 1);
    cluster.shutdown().await;
}

// ---- DescribeConfigs ----

fn describe(resources: Vec<(i8, &str, Option<&[&str]>)>, synonyms: bool, docs: bool) -> DescribeConfigsRequest {
    DescribeConfigsRequest {
        resources: resources
            .into_iter()
            .map(|(resource_type, name, keys)| DescribeConfigsResource {
                resource_type,
                resource_name: name.into(),
                configuration_keys: keys.map(|k| k.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            })
            .collect(),
        include_synonyms: synonyms,
        include_documentation: docs,
        ..Default::default()
    }
}

fn config<'a>(configs: &'a [DescribeConfigsResourceResult], name: &str) -> &'a DescribeConfigsResourceResult {
    configs.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no config {name}"))
}

async fn topic_config(s: &mut TcpStream, topic: &str, name: &str) -> (Option<String>, i8) {
    let resp = call(s, 800, &describe(vec![(TOPIC, topic, Some(&[name]))], false, false), 4).await;
    assert_eq!(resp.results[0].error_code, 0, "{topic}");
    let c = &resp.results[0].configs[0];
    (c.value.clone(), c.config_source)
}

async fn configured_cluster() -> (Cluster, TcpStream) {
    let cluster = Cluster::builder()
        .brokers(2)
        .broker_config("log.retention.ms", "3600000")
        .broker_config("num.partitions", "2")
        .start()
        .await
        .unwrap();
    let s = connect(&cluster).await;
    (cluster, s)
}

/// Creates `name` with the given configs over CreateTopics.
async fn create_with_configs(s: &mut TcpStream, name: &str, configs: &[(&str, &str)]) {
    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    let req = CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: name.into(),
            num_partitions: 1,
            replication_factor: 1,
            configs: configs
                .iter()
                .map(|(k, v)| CreatableTopicConfig {
                    name: k.to_string(),
                    value: Some(v.to_string()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        timeout_ms: 1000,
        ..Default::default()
    };
    assert_eq!(call(s, 700, &req, 7).await.topics[0].error_code, 0);
}

#[tokio::test]
async fn describe_configs_v0_reports_values_and_defaults() {
    let (cluster, mut s) = configured_cluster().await;
    create_with_configs(&mut s, "t", &[("cleanup.policy", "compact")]).await;
    let resp = call(&mut s, 1, &describe(vec![(TOPIC, "t", None)], false, false), 0).await;
    let r = &resp.results[0];
    assert_eq!((r.error_code, r.resource_type, r.resource_name.as_str()), (0, TOPIC, "t"));
    assert!(r.configs.len() >= 30, "every topic config: {}", r.configs.len());
    let policy = config(&r.configs, "cleanup.policy");
    assert_eq!((policy.value.as_deref(), policy.is_default, policy.read_only), (Some("compact"), false, false));
    let retention = config(&r.configs, "retention.ms");
    assert_eq!((retention.value.as_deref(), retention.is_default), (Some("3600000"), false));
    let segment = config(&r.configs, "segment.bytes");
    assert_eq!((segment.value.as_deref(), segment.is_default), (Some("1073741824"), true));
    assert!(r.configs.iter().all(|c| !c.is_sensitive));

    let errors = call(
        &mut s,
        2,
        &describe(vec![(TOPIC, "missing", None), (BROKER, "2", None), (GROUP, "g", None)], false, false),
        0,
    )
    .await;
    let codes: Vec<i16> = errors.results.iter().map(|r| r.error_code).collect();
    assert_eq!(
        codes,
        vec![
            ErrorCode::UnknownTopicOrPartition.code(),
            ErrorCode::InvalidRequest.code(),
            ErrorCode::InvalidRequest.code()
        ]
    );
    assert!(errors.results.iter().all(|r| r.configs.is_empty()));
    cluster.shutdown().await;
}

#[tokio::test]
async fn describe_configs_v4_sources_synonyms_types_and_documentation() {
    let (cluster, mut s) = configured_cluster().await;
    create_with_configs(&mut s, "t", &[("cleanup.policy", "compact")]).await;
    let keys: &[&str] = &["cleanup.policy", "retention.ms", "max.message.bytes"];
    let resp = call(&mut s, 1, &describe(vec![(TOPIC, "t", Some(keys))], true, true), 4).await;
    let configs = &resp.results[0].configs;
    let names: Vec<&str> = configs.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, vec!["cleanup.policy", "max.message.bytes", "retention.ms"]);
    type Synonyms = Vec<(String, Option<String>, i8)>;
    // value, config_source, config_type, synonyms (name, value, source)
    let summary = |c: &DescribeConfigsResourceResult| -> (Option<String>, i8, i8, Synonyms) {
        let synonyms = c.synonyms.iter().map(|s| (s.name.clone(), s.value.clone(), s.source)).collect();
        (c.value.clone(), c.config_source, c.config_type, synonyms)
    };
    assert_eq!(
        summary(config(configs, "cleanup.policy")),
        (
            Some("compact".into()),
            1,
            7,
            vec![
                ("cleanup.policy".into(), Some("compact".into()), 1),
                ("log.cleanup.policy".into(), Some("delete".into()), 5)
            ]
        )
    );
    assert_eq!(
        summary(config(configs, "retention.ms")),
        (
            Some("3600000".into()),
            4,
            5,
            vec![
                ("log.retention.ms".into(), Some("3600000".into()), 4),
                ("log.retention.ms".into(), Some("604800000".into()), 5)
            ]
        )
    );
    assert_eq!(
        summary(config(configs, "max.message.bytes")),
        (Some("1048588".into()), 5, 3, vec![("message.max.bytes".into(), Some("1048588".into()), 5)])
    );
    assert!(configs.iter().all(|c| c.documentation.as_deref().is_some_and(|d| !d.is_empty())));

    // Without the flags: no synonyms, null documentation.
    let plain = call(&mut s, 2, &describe(vec![(TOPIC, "t", Some(keys))], false, false), 4).await;
    assert!(plain.results[0].configs.iter().all(|c| c.synonyms.is_empty() && c.documentation.is_none()));

    // The broker this connection is on: its static settings and what topics inherit.
    let broker = call(&mut s, 3, &describe(vec![(BROKER, "1", None)], true, false), 4).await;
    let b = &broker.results[0];
    assert_eq!(b.error_code, 0);
    let partitions = config(&b.configs, "num.partitions");
    assert_eq!((partitions.value.as_deref(), partitions.config_source, partitions.read_only), (Some("2"), 4, true));
    let retention = config(&b.configs, "log.retention.ms");
    assert_eq!((retention.value.as_deref(), retention.config_source), (Some("3600000"), 4));
    let policy = config(&b.configs, "log.cleanup.policy");
    assert_eq!((policy.value.as_deref(), policy.config_source), (Some("delete"), 5));

    let errors = call(
        &mut s,
        4,
        &describe(
            vec![(TOPIC, "missing", None), (BROKER, "2", None), (16, "metrics", None), (TOPIC, "bad name", None)],
            false,
            false,
        ),
        4,
    )
    .await;
    let codes: Vec<i16> = errors.results.iter().map(|r| r.error_code).collect();
    assert_eq!(
        codes,
        vec![
            ErrorCode::UnknownTopicOrPartition.code(),
            ErrorCode::InvalidRequest.code(),
            ErrorCode::InvalidRequest.code(),
            ErrorCode::InvalidTopicException.code()
        ]
    );
    assert_eq!(
        errors.results[1].error_message.as_deref(),
        Some("Unexpected broker id, expected 1 or empty string, but received 2")
    );
    cluster.shutdown().await;
}

// ---- AlterConfigs ----

/// A resource to alter: type, name and (config name, value) pairs.
type AlterResource<'a> = (i8, &'a str, Vec<(&'a str, Option<&'a str>)>);

fn alter(resources: Vec<AlterResource<'_>>, validate_only: bool) -> AlterConfigsRequest {
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    AlterConfigsRequest {
        resources: resources
            .into_iter()
            .map(|(resource_type, name, configs)| AlterConfigsResource {
                resource_type,
                resource_name: name.into(),
                configs: configs
                    .into_iter()
                    .map(|(n, v)| AlterableConfig {
                        name: n.into(),
                        value: v.map(str::to_string),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        validate_only,
        ..Default::default()
    }
}

#[tokio::test]
async fn alter_configs_replaces_the_whole_set_at_v0_and_v2() {
    let (cluster, mut s) = configured_cluster().await;
    create_with_configs(&mut s, "t", &[("cleanup.policy", "compact")]).await;
    for (version, retention) in [(0i16, "1000"), (2, "2000")] {
        let req = alter(vec![(TOPIC, "t", vec![("retention.ms", Some(retention))])], false);
        let resp = call(&mut s, 1, &req, version).await;
        let r = &resp.responses[0];
        assert_eq!(
            (r.error_code, r.error_message.as_deref(), r.resource_type, r.resource_name.as_str()),
            (0, None, TOPIC, "t")
        );
        assert_eq!(topic_config(&mut s, "t", "retention.ms").await, (Some(retention.to_string()), 1), "v{version}");
        // Not listed, so back to the default: Kafka's legacy semantics.
        assert_eq!(topic_config(&mut s, "t", "cleanup.policy").await, (Some("delete".to_string()), 5));
    }
    let expected: BTreeMap<String, String> = [("retention.ms".to_string(), "2000".to_string())].into();
    assert_eq!(cluster.topic_configs("t").await.unwrap(), expected);
    cluster.shutdown().await;
}

#[tokio::test]
async fn alter_configs_errors_at_v0_and_v2() {
    let (cluster, mut s) = configured_cluster().await;
    create_with_configs(&mut s, "t", &[("retention.ms", "5000")]).await;
    create_with_configs(&mut s, "u", &[]).await;
    for version in [0, 2] {
        let req = alter(
            vec![
                (TOPIC, "t", vec![("retention.ms", Some("forever"))]),
                (TOPIC, "missing", vec![("retention.ms", Some("1"))]),
                (TOPIC, "t", vec![("no.such.config", Some("1"))]),
                (BROKER, "1", vec![("log.retention.ms", Some("1"))]),
                (TOPIC, "u", vec![("retention.ms", Some("1")), ("retention.ms", Some("2"))]),
                (GROUP, "g", vec![]),
            ],
            false,
        );
        let resp = call(&mut s, 1, &req, version).await;
        let codes: Vec<i16> = resp.responses.iter().map(|r| r.error_code).collect();
        let invalid = ErrorCode::InvalidRequest.code();
        assert_eq!(
            codes,
            vec![invalid, ErrorCode::UnknownTopicOrPartition.code(), invalid, invalid, invalid, invalid],
            "v{version}: t twice is a duplicate resource"
        );
        let single = alter(vec![(TOPIC, "t", vec![("retention.ms", Some("forever"))])], false);
        assert_eq!(call(&mut s, 2, &single, version).await.responses[0].error_code, ErrorCode::InvalidConfig.code());
        let dry = alter(vec![(TOPIC, "t", vec![("retention.ms", Some("7"))])], true);
        assert_eq!(call(&mut s, 3, &dry, version).await.responses[0].error_code, 0);
        assert_eq!(topic_config(&mut s, "t", "retention.ms").await, (Some("5000".to_string()), 1), "v{version}");
        assert_eq!(topic_config(&mut s, "u", "retention.ms").await, (Some("3600000".to_string()), 4));
    }
    cluster.shutdown().await;
}

// ---- IncrementalAlterConfigs ----

/// A resource to alter: type, name and (config name, operation, value) triples.
type IncrementalResource<'a> = (i8, &'a str, Vec<(&'a str, i8, Option<&'a str>)>);

fn incremental(resources: Vec<IncrementalResource<'_>>, validate_only: bool) -> IncrementalAlterConfigsRequest {
    use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    IncrementalAlterConfigsRequest {
        resources: resources
            .into_iter()
            .map(|(resource_type, name, configs)| AlterConfigsResource {
                resource_type,
                resource_name: name.into(),
                configs: configs
                    .into_iter()
                    .map(|(n, op, v)| AlterableConfig {
                        name: n.into(),
                        config_operation: op,
                        value: v.map(str::to_string),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        validate_only,
        ..Default::default()
    }
}

#[tokio::test]
async fn incremental_alter_configs_operations_at_v0_and_v1() {
    let (cluster, mut s) = configured_cluster().await;
    for version in [0i16, 1] {
        let topic = format!("t{version}");
        create_with_configs(&mut s, &topic, &[("retention.ms", "5000")]).await;
        let set = incremental(
            vec![(TOPIC, &topic, vec![("min.insync.replicas", SET, Some("2")), ("retention.ms", DELETE, None)])],
            false,
        );
        let resp = call(&mut s, 1, &set, version).await;
        let r = &resp.responses[0];
        assert_eq!((r.error_code, r.error_message.as_deref(), r.resource_name.as_str()), (0, None, topic.as_str()));
        assert_eq!(topic_config(&mut s, &topic, "min.insync.replicas").await, (Some("2".to_string()), 1));
        assert_eq!(
            topic_config(&mut s, &topic, "retention.ms").await,
            (Some("3600000".to_string()), 4),
            "deleted: the broker setting again"
        );

        let append = incremental(vec![(TOPIC, &topic, vec![("cleanup.policy", APPEND, Some("compact"))])], false);
        assert_eq!(call(&mut s, 2, &append, version).await.responses[0].error_code, 0);
        assert_eq!(topic_config(&mut s, &topic, "cleanup.policy").await, (Some("delete,compact".to_string()), 1));
        let subtract = incremental(vec![(TOPIC, &topic, vec![("cleanup.policy", SUBTRACT, Some("delete"))])], false);
        assert_eq!(call(&mut s, 3, &subtract, version).await.responses[0].error_code, 0);
        assert_eq!(topic_config(&mut s, &topic, "cleanup.policy").await, (Some("compact".to_string()), 1));

        let expected: BTreeMap<String, String> = [
            ("cleanup.policy".to_string(), "compact".to_string()),
            ("min.insync.replicas".to_string(), "2".to_string()),
        ]
        .into();
        assert_eq!(cluster.topic_configs(&topic).await.unwrap(), expected, "v{version}");
    }
    cluster.shutdown().await;
}

#[tokio::test]
async fn incremental_alter_configs_errors_at_v0_and_v1() {
    let (cluster, mut s) = configured_cluster().await;
    create_with_configs(&mut s, "t", &[("retention.ms", "5000")]).await;
    create_with_configs(&mut s, "u", &[]).await;
    for version in [0i16, 1] {
        let req = incremental(
            vec![
                (TOPIC, "t", vec![("retention.ms", APPEND, Some("1"))]),
                (TOPIC, "missing", vec![("retention.ms", SET, Some("1"))]),
                (TOPIC, "u", vec![("min.insync.replicas", SET, Some("0"))]),
                (BROKER, "", vec![("log.retention.ms", SET, Some("1"))]),
                (TOPIC, "dup-keys", vec![("retention.ms", SET, Some("1")), ("retention.ms", DELETE, None)]),
                (TOPIC, "twice", vec![]),
                (TOPIC, "twice", vec![]),
            ],
            false,
        );
        let resp = call(&mut s, 1, &req, version).await;
        let codes: Vec<i16> = resp.responses.iter().map(|r| r.error_code).collect();
        let invalid = ErrorCode::InvalidRequest.code();
        assert_eq!(
            codes,
            vec![
                ErrorCode::InvalidConfig.code(),
                ErrorCode::UnknownTopicOrPartition.code(),
                ErrorCode::InvalidConfig.code(),
                invalid,
                invalid,
                invalid,
                invalid
            ],
            "v{version}"
        );
        assert_eq!(
            resp.responses[0].error_message.as_deref(),
            Some("Can't APPEND to key retention.ms because its type is not LIST.")
        );
        assert_eq!(resp.responses[4].error_message.as_deref(), Some("Error due to duplicate config keys"));
        assert_eq!(resp.responses[5].error_message.as_deref(), Some("Each resource must appear at most once."));

        let dry = incremental(vec![(TOPIC, "t", vec![("retention.ms", SET, Some("7"))])], true);
        assert_eq!(call(&mut s, 2, &dry, version).await.responses[0].error_code, 0);
        assert_eq!(topic_config(&mut s, "t", "retention.ms").await, (Some("5000".to_string()), 1), "v{version}");
        assert_eq!(topic_config(&mut s, "u", "min.insync.replicas").await, (Some("1".to_string()), 5));
    }
    cluster.shutdown().await;
}
