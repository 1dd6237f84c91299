//! The broker over real TCP with raw requests encoded by kafka-protocol: the answers each
//! handler gives, and what happens to connections that send garbage.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeMap;

use bytes::BytesMut;
use common::*;
use kafka_broker::Cluster;
use kafka_protocol::frame::{self, FrameDecoder};
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::{ApiKey, ErrorCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn api_versions_advertises_exactly_what_is_implemented() {
    let cluster = Cluster::builder().start().await.unwrap();
    let mut s = connect(&cluster).await;
    for version in 0..=4 {
        let resp = call(&mut s, version.into(), &ApiVersionsRequest::default(), version).await;
        assert_eq!(resp.error_code, 0);
        let keys: BTreeMap<i16, (i16, i16)> =
            resp.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect();
        assert_eq!(keys.get(&ApiKey::Metadata.key()), Some(&(0, 12)));
        assert_eq!(keys.get(&ApiKey::ApiVersions.key()), Some(&(0, 4)));
        assert_eq!(keys.get(&ApiKey::CreateTopics.key()), Some(&(0, 7)));
        assert_eq!(keys.get(&ApiKey::Produce.key()), Some(&(3, 11)), "Kafka 4's floor");
        assert_eq!(keys.get(&ApiKey::Fetch.key()), Some(&(4, 17)), "Kafka 4's floor");
        assert_eq!(keys.get(&ApiKey::FindCoordinator.key()), Some(&(0, 6)));
        assert_eq!(keys.get(&ApiKey::JoinGroup.key()), Some(&(0, 9)));
        assert_eq!(keys.get(&ApiKey::OffsetCommit.key()), Some(&(2, 9)), "Kafka 4's floor");
        assert_eq!(keys.get(&ApiKey::OffsetFetch.key()), Some(&(1, 9)), "Kafka 4's floor");
        // The transaction coordinator, at the versions served (EndTxn v5 is unstable).
        assert_eq!(keys.get(&ApiKey::InitProducerId.key()), Some(&(0, 5)));
        assert_eq!(keys.get(&ApiKey::AddPartitionsToTxn.key()), Some(&(0, 5)));
        assert_eq!(keys.get(&ApiKey::AddOffsetsToTxn.key()), Some(&(0, 4)));
        assert_eq!(keys.get(&ApiKey::EndTxn.key()), Some(&(0, 4)));
        assert_eq!(keys.get(&ApiKey::TxnOffsetCommit.key()), Some(&(0, 4)));
        assert_eq!(keys.get(&ApiKey::DescribeTransactions.key()), Some(&(0, 0)));
        assert_eq!(keys.get(&ApiKey::ListTransactions.key()), Some(&(0, 1)));
        assert!(!keys.contains_key(&ApiKey::WriteTxnMarkers.key()), "markers are written in process");
        // KIP-848 consumer groups.
        assert_eq!(keys.get(&ApiKey::ConsumerGroupHeartbeat.key()), Some(&(0, 1)));
        assert_eq!(keys.get(&ApiKey::ConsumerGroupDescribe.key()), Some(&(0, 0)));
        if version >= 3 {
            // No transaction.version feature: clients use the classic (v1) transaction flow. No
            // group.version either: librdkafka needs only the KIP-848 APIs advertised.
            assert!(resp.supported_features.is_empty() && resp.finalized_features.is_empty());
        }
    }
    cluster.shutdown().await;
}

/// A client newer than the broker sends ApiVersions v5: the answer is UNSUPPORTED_VERSION in
/// the v0 layout, with the supported ranges, on a connection that stays open (KIP-511).
#[tokio::test]
async fn api_versions_from_the_future_gets_the_v0_error_answer() {
    let cluster = Cluster::builder().start().await.unwrap();
    let mut s = connect(&cluster).await;
    let mut out = BytesMut::new();
    frame::encode_request(&mut out, 77, Some("future"), &ApiVersionsRequest::default(), 4).unwrap();
    out[6..8].copy_from_slice(&5i16.to_be_bytes()); // the header's api_version: 5
    s.write_all(&out).await.unwrap();
    let frame = read_frame(&mut s).await.unwrap();
    let (corr, resp) = frame::decode_response::<ApiVersionsResponse>(frame, 0).unwrap();
    assert_eq!(corr, 77);
    assert_eq!(resp.error_code, ErrorCode::UnsupportedVersion.code());
    assert!(resp.api_keys.iter().any(|k| k.api_key == 18 && k.max_version == 4));
    // Still usable: retry with v0.
    assert_eq!(call(&mut s, 78, &ApiVersionsRequest::default(), 0).await.error_code, 0);
    cluster.shutdown().await;
}

#[tokio::test]
async fn metadata_lists_brokers_and_spreads_leaders() {
    let cluster = Cluster::builder().brokers(3).cluster_id("test-cluster").start().await.unwrap();
    cluster.create_topic("orders", 6, 3).await.unwrap();
    let mut s = connect(&cluster).await;
    let resp = call(&mut s, 1, &MetadataRequest { topics: None, ..Default::default() }, 12).await;
    assert_eq!(resp.brokers.len(), 3);
    let addrs = cluster.broker_addrs();
    for b in &resp.brokers {
        assert!(addrs.iter().any(|(id, a)| *id == b.node_id && i32::from(a.port()) == b.port && b.host == "127.0.0.1"));
    }
    assert_eq!(resp.cluster_id.as_deref(), Some("test-cluster"));
    assert!(resp.brokers.iter().any(|b| b.node_id == resp.controller_id));
    assert_eq!(resp.topics.len(), 1);
    let t = &resp.topics[0];
    assert_eq!((t.error_code, t.name.as_deref()), (0, Some("orders")));
    assert!(!t.topic_id.is_zero());
    assert_eq!(t.partitions.len(), 6);
    let mut leaders = BTreeMap::new();
    for p in &t.partitions {
        assert_eq!(p.replica_nodes.len(), 3);
        assert_eq!(p.replica_nodes[0], p.leader_id, "the preferred replica leads");
        assert_eq!(p.isr_nodes, p.replica_nodes);
        *leaders.entry(p.leader_id).or_insert(0) += 1;
    }
    assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2, 2, 2], "leaders spread evenly: {leaders:?}");

    // Asking by topic id (v10+) finds the same topic; an unknown id is UNKNOWN_TOPIC_ID.
    let by_id = MetadataRequest {
        topics: Some(vec![MetadataRequestTopic { topic_id: t.topic_id, name: None, ..Default::default() }]),
        ..Default::default()
    };
    let r = call(&mut s, 2, &by_id, 12).await;
    assert_eq!(r.topics[0].name.as_deref(), Some("orders"));
    let unknown = MetadataRequest {
        topics: Some(vec![MetadataRequestTopic {
            topic_id: kafka_protocol::primitives::Uuid::from_u64_pair(9, 9),
            name: None,
            ..Default::default()
        }]),
        ..Default::default()
    };
    assert_eq!(call(&mut s, 3, &unknown, 12).await.topics[0].error_code, ErrorCode::UnknownTopicId.code());

    // v0: an empty list means all topics; v1+: an empty list means none.
    assert_eq!(
        call(&mut s, 4, &MetadataRequest { topics: Some(vec![]), ..Default::default() }, 0).await.topics.len(),
        1
    );
    assert_eq!(
        call(&mut s, 5, &MetadataRequest { topics: Some(vec![]), ..Default::default() }, 1).await.topics.len(),
        0
    );
    cluster.shutdown().await;
}

fn metadata_for(name: &str, allow: bool) -> MetadataRequest {
    MetadataRequest {
        topics: Some(vec![MetadataRequestTopic { name: Some(name.into()), ..Default::default() }]),
        allow_auto_topic_creation: allow,
        ..Default::default()
    }
}

#[tokio::test]
async fn metadata_auto_creates_only_when_both_sides_allow() {
    let cluster = Cluster::builder().brokers(2).default_partitions(4).start().await.unwrap();
    let mut s = connect(&cluster).await;
    let no = call(&mut s, 1, &metadata_for("events", false), 9).await;
    assert_eq!(no.topics[0].error_code, ErrorCode::UnknownTopicOrPartition.code());
    let yes = call(&mut s, 2, &metadata_for("events", true), 9).await;
    assert_eq!(yes.topics[0].error_code, 0);
    assert_eq!(yes.topics[0].partitions.len(), 4);
    assert_eq!(yes.topics[0].partitions[0].replica_nodes.len(), 2, "default replication factor = min(3, brokers)");
    let bad = call(&mut s, 3, &metadata_for("bad name!", true), 9).await;
    assert_eq!(bad.topics[0].error_code, ErrorCode::InvalidTopicException.code());
    cluster.shutdown().await;

    let cluster = Cluster::builder().auto_create_topics(false).start().await.unwrap();
    let mut s = connect(&cluster).await;
    let off = call(&mut s, 1, &metadata_for("events", true), 9).await;
    assert_eq!(off.topics[0].error_code, ErrorCode::UnknownTopicOrPartition.code());
    cluster.shutdown().await;
}

fn topic(name: &str, partitions: i32, rf: i16) -> CreatableTopic {
    CreatableTopic { name: name.into(), num_partitions: partitions, replication_factor: rf, ..Default::default() }
}

#[tokio::test]
async fn create_topics_validates_like_kafka() {
    let cluster = Cluster::builder().brokers(3).start().await.unwrap();
    let mut s = connect(&cluster).await;
    let mut with_config = topic("compacted", 2, 2);
    with_config.configs = vec![CreatableTopicConfig {
        name: "cleanup.policy".into(),
        value: Some("compact".into()),
        ..Default::default()
    }];
    let mut bad_config = topic("bad-config", 1, 1);
    bad_config.configs =
        vec![CreatableTopicConfig { name: "no.such.config".into(), value: Some("1".into()), ..Default::default() }];
    let mut assigned = topic("assigned", -1, -1);
    assigned.assignments = vec![
        CreatableReplicaAssignment { partition_index: 0, broker_ids: vec![3, 1], ..Default::default() },
        CreatableReplicaAssignment { partition_index: 1, broker_ids: vec![2, 3], ..Default::default() },
    ];
    let mut bad_assignment = topic("bad-assignment", -1, -1);
    bad_assignment.assignments =
        vec![CreatableReplicaAssignment { partition_index: 0, broker_ids: vec![7], ..Default::default() }];
    let req = CreateTopicsRequest {
        topics: vec![
            topic("ok", 3, 3),
            topic("defaults", -1, -1),
            topic("too-replicated", 1, 4),
            topic("no-partitions", 0, 1),
            topic("bad/name", 1, 1),
            with_config,
            bad_config,
            assigned,
            bad_assignment,
            topic("twice", 1, 1),
            topic("twice", 1, 1),
        ],
        timeout_ms: 1000,
        ..Default::default()
    };
    let resp = call(&mut s, 1, &req, 7).await;
    let by_name: Vec<(&str, i16)> = resp.topics.iter().map(|t| (t.name.as_str(), t.error_code)).collect();
    assert_eq!(
        by_name,
        vec![
            ("ok", 0),
            ("defaults", 0),
            ("too-replicated", ErrorCode::InvalidReplicationFactor.code()),
            ("no-partitions", ErrorCode::InvalidPartitions.code()),
            ("bad/name", ErrorCode::InvalidTopicException.code()),
            ("compacted", 0),
            ("bad-config", ErrorCode::InvalidConfig.code()),
            ("assigned", 0),
            ("bad-assignment", ErrorCode::InvalidReplicaAssignment.code()),
            ("twice", ErrorCode::InvalidRequest.code()),
            ("twice", ErrorCode::InvalidRequest.code()),
        ]
    );
    let defaults = &resp.topics[1];
    assert_eq!((defaults.num_partitions, defaults.replication_factor), (3, 3));
    assert!(resp.topics[0].error_message.is_none() && resp.topics[2].error_message.is_some());
    assert_eq!(
        cluster.topic_configs("compacted").await.unwrap().get("cleanup.policy").map(String::as_str),
        Some("compact")
    );

    // Creating again: TOPIC_ALREADY_EXISTS; validate_only creates nothing.
    let again =
        call(&mut s, 2, &CreateTopicsRequest { topics: vec![topic("ok", 1, 1)], ..Default::default() }, 7).await;
    assert_eq!(again.topics[0].error_code, ErrorCode::TopicAlreadyExists.code());
    let dry = CreateTopicsRequest { topics: vec![topic("dry", 1, 1)], validate_only: true, ..Default::default() };
    assert_eq!(call(&mut s, 3, &dry, 7).await.topics[0].error_code, 0);
    let md = call(&mut s, 4, &metadata_for("dry", false), 12).await;
    assert_eq!(md.topics[0].error_code, ErrorCode::UnknownTopicOrPartition.code(), "validate_only must not create");

    // The explicit assignment is what Metadata reports.
    let md = call(&mut s, 5, &metadata_for("assigned", false), 12).await;
    let replicas: Vec<Vec<i32>> = md.topics[0].partitions.iter().map(|p| p.replica_nodes.clone()).collect();
    assert_eq!(replicas, vec![vec![3, 1], vec![2, 3]]);
    assert_eq!(md.topics[0].partitions[0].leader_id, 3);

    // The in-process API refuses the same things.
    assert!(matches!(
        cluster.create_topic("ok", 1, 1).await,
        Err(kafka_broker::BrokerError::Kafka { code: ErrorCode::TopicAlreadyExists, .. })
    ));
    assert!(matches!(
        cluster.create_topic("x", 1, 4).await,
        Err(kafka_broker::BrokerError::Kafka { code: ErrorCode::InvalidReplicationFactor, .. })
    ));
    cluster.shutdown().await;
}

/// Several requests written back to back are answered in order.
#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let cluster = Cluster::builder().start().await.unwrap();
    let mut s = connect(&cluster).await;
    let mut out = BytesMut::new();
    for corr in 0..20 {
        if corr % 2 == 0 {
            frame::encode_request(&mut out, corr, None, &ApiVersionsRequest::default(), 3).unwrap();
        } else {
            frame::encode_request(&mut out, corr, None, &MetadataRequest { topics: None, ..Default::default() }, 12)
                .unwrap();
        }
    }
    s.write_all(&out).await.unwrap();
    let mut dec = FrameDecoder::default();
    let mut buf = BytesMut::new();
    let mut seen = Vec::new();
    while seen.len() < 20 {
        while let Some(f) = dec.decode(&mut buf).unwrap() {
            seen.push(frame::peek_correlation_id(&f).unwrap());
        }
        if seen.len() < 20 {
            assert!(s.read_buf(&mut buf).await.unwrap() > 0);
        }
    }
    assert_eq!(seen, (0..20).collect::<Vec<_>>());
    cluster.shutdown().await;
}

/// Garbage closes only the connection that sent it; everyone else is served.
#[tokio::test]
async fn bad_frames_close_only_their_connection() {
    let cluster = Cluster::builder().broker_config("socket.request.max.bytes", "1048576").start().await.unwrap();
    let mut healthy = connect(&cluster).await;
    assert_eq!(call(&mut healthy, 1, &ApiVersionsRequest::default(), 3).await.error_code, 0);

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("negative size", (-5i32).to_be_bytes().to_vec()),
        ("size above socket.request.max.bytes", (2 * 1024 * 1024i32).to_be_bytes().to_vec()),
        ("undecodable body", [&12i32.to_be_bytes()[..], &[0, 3, 0, 9, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0x7f]].concat()),
        ("unknown api key", [&8i32.to_be_bytes()[..], &[0x03, 0xe8, 0, 0, 0, 0, 0, 1]].concat()),
    ];
    for (what, bytes) in cases {
        let mut bad = connect(&cluster).await;
        bad.write_all(&bytes).await.unwrap();
        assert!(closed(&mut bad).await, "{what}: connection should be closed");
        assert_eq!(call(&mut healthy, 2, &ApiVersionsRequest::default(), 3).await.error_code, 0, "after {what}");
    }

    // A request for an API that is not implemented (DescribeAcls) closes that connection too,
    // as Kafka closes connections that use an API not enabled on the listener, rather than
    // being answered with a body that would look like success.
    let mut p = connect(&cluster).await;
    let mut out = BytesMut::new();
    frame::encode_request(&mut out, 1, None, &DescribeAclsRequest::default(), 1).unwrap();
    p.write_all(&out).await.unwrap();
    assert!(closed(&mut p).await);
    assert_eq!(call(&mut healthy, 3, &MetadataRequest::default(), 12).await.brokers.len(), 1);
    cluster.shutdown().await;
}
