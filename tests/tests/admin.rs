//! The admin client against the bundled broker: every call, routing (controller, leader,
//! coordinator, the broker itself), retries on NOT_CONTROLLER / NOT_COORDINATOR /
//! COORDINATOR_LOAD_IN_PROGRESS, and per-resource results with partial failures.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_admin::{
    AdminClient, AdminConfig, AlterConfigOp, ConfigResource, ConfigSource, Error as AdminError, NewPartitions,
    NewTopic, OffsetAndMetadata, OffsetSpec, TopicPartition,
};
use kafka_broker::{Action, Cluster, Times};
use kafka_client::{Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord};
use kafka_integration_tests::init_logs;
use kafka_protocol::{ApiKey, ErrorCode};

async fn cluster(brokers: usize) -> Cluster {
    init_logs();
    Cluster::builder().brokers(brokers).start().await.unwrap()
}

fn admin(cluster: &Cluster) -> AdminClient {
    AdminClient::new(
        AdminConfig::new(&cluster.bootstrap_servers())
            .set("default.api.timeout.ms", "15000")
            .unwrap()
            .set("retry.backoff.ms", "20")
            .unwrap(),
    )
    .unwrap()
}

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

async fn produce(bootstrap: &str, topic: &str, partition: i32, count: usize, timestamp: Option<i64>) {
    let producer = Producer::new(ProducerConfig::new(bootstrap).linger(Duration::from_millis(1))).unwrap();
    let mut pending = Vec::new();
    for i in 0..count {
        let value = format!("v{i}");
        let mut record = ProducerRecord::new(topic).partition(partition).value(&value);
        if let Some(ts) = timestamp {
            record = record.timestamp(ts + i as i64);
        }
        pending.push(producer.send(record).await.unwrap());
    }
    for p in pending {
        p.await.unwrap();
    }
    producer.close(Duration::from_secs(5)).await.unwrap();
}

async fn requests_of(cluster: &Cluster, api: ApiKey) -> Vec<i32> {
    cluster.request_log().await.unwrap().into_iter().filter(|r| r.api_key == api).map(|r| r.broker).collect()
}

#[tokio::test]
async fn create_topics_fails_per_topic() {
    let cluster = cluster(3).await;
    let admin = admin(&cluster);
    let created = admin
        .create_topics(
            [
                NewTopic::new("orders", 3, 3).config("retention.ms", "3600000"),
                NewTopic::new("bad name!", 1, 1),
                NewTopic::new("too-replicated", 1, 5),
                NewTopic::with_assignment("pinned", [vec![2, 3], vec![3, 1]]),
                NewTopic::new("", 1, 1),
            ],
            false,
        )
        .await
        .unwrap();
    assert_eq!(created.len(), 5);
    let orders = created["orders"].as_ref().unwrap();
    assert_eq!((orders.num_partitions, orders.replication_factor), (3, 3));
    let bad = created["bad name!"].as_ref().unwrap_err();
    assert_eq!(bad.code(), Some(ErrorCode::InvalidTopicException));
    assert!(bad.to_string().starts_with("topic bad name!: INVALID_TOPIC_EXCEPTION"), "{bad}");
    assert_eq!(created["too-replicated"].as_ref().unwrap_err().code(), Some(ErrorCode::InvalidReplicationFactor));
    assert!(created["pinned"].is_ok());
    // Refused locally, named.
    assert!(matches!(created[""], Err(AdminError::InvalidArgument { .. })));

    // The explicit assignment and the config took effect.
    let described = admin.describe_topics(["pinned"]).await.unwrap();
    let pinned = described["pinned"].as_ref().unwrap();
    assert_eq!(pinned.partitions.iter().map(|p| p.replicas.clone()).collect::<Vec<_>>(), vec![vec![2, 3], vec![3, 1]]);
    assert_eq!(cluster.topic_configs("orders").await.unwrap().get("retention.ms").map(String::as_str), Some("3600000"));

    // Again: the existing topic fails alone; validate_only creates nothing.
    let again =
        admin.create_topics([NewTopic::new("orders", 3, 3), NewTopic::new("checked", 2, 1)], true).await.unwrap();
    assert_eq!(again["orders"].as_ref().unwrap_err().code(), Some(ErrorCode::TopicAlreadyExists));
    assert!(again["checked"].is_ok());
    let names: Vec<String> = admin.list_topics(false).await.unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(names, vec!["orders", "pinned"]);
    let with_internal = admin.list_topics(true).await.unwrap();
    assert!(with_internal.len() >= 2);
    cluster.shutdown().await;
}

#[tokio::test]
async fn topic_changes_go_to_the_controller_and_retry_on_not_controller() {
    let cluster = cluster(3).await;
    let admin = admin(&cluster);
    let controller = admin.describe_cluster().await.unwrap().controller.unwrap();
    // The first CreateTopics and DeleteTopics are refused as by a broker that lost the
    // controllership: the client finds the controller again and retries.
    cluster.intercept(ApiKey::CreateTopics, Times::Once, |_| Action::Error(ErrorCode::NotController)).await.unwrap();
    cluster.intercept(ApiKey::DeleteTopics, Times::Once, |_| Action::Error(ErrorCode::NotController)).await.unwrap();
    cluster.clear_request_log().await.unwrap();
    let created = admin.create_topics([NewTopic::new("t1", 1, 1), NewTopic::new("t2", 1, 1)], false).await.unwrap();
    assert!(created.values().all(|r| r.is_ok()), "{created:?}");
    let sent = requests_of(&cluster, ApiKey::CreateTopics).await;
    assert_eq!(sent.len(), 2, "one refused, one retried");
    assert!(sent.iter().all(|b| *b == controller), "{sent:?} vs controller {controller}");

    let deleted = admin.delete_topics(["t1", "missing"]).await.unwrap();
    assert!(deleted["t1"].is_ok());
    let missing = deleted["missing"].as_ref().unwrap_err();
    assert_eq!(missing.code(), Some(ErrorCode::UnknownTopicOrPartition));
    assert_eq!(missing.resource(), Some("topic missing"));
    assert_eq!(requests_of(&cluster, ApiKey::DeleteTopics).await.len(), 2);
    cluster.shutdown().await;
}

#[tokio::test]
async fn describe_topics_and_cluster() {
    let cluster = cluster(3).await;
    cluster.create_topic("orders", 3, 3).await.unwrap();
    let admin = admin(&cluster);
    let described = admin.describe_topics(["orders", "nope"]).await.unwrap();
    let orders = described["orders"].as_ref().unwrap();
    assert_eq!(orders.partitions.len(), 3);
    for (i, p) in orders.partitions.iter().enumerate() {
        assert_eq!(p.partition, i as i32);
        assert_eq!(p.replicas.len(), 3);
        assert_eq!(p.isr.len(), 3);
        assert!(p.replicas.contains(&p.leader.unwrap()));
        assert!(p.leader_epoch >= 0);
    }
    assert_ne!(orders.topic_id, kafka_protocol::primitives::Uuid::default());
    assert_eq!(described["nope"].as_ref().unwrap_err().code(), Some(ErrorCode::UnknownTopicOrPartition));

    let c = admin.describe_cluster().await.unwrap();
    assert_eq!(c.brokers.iter().map(|b| b.node_id).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(c.cluster_id.is_some());
    assert!(c.controller.is_some());
    cluster.shutdown().await;
}

#[tokio::test]
async fn create_partitions_refuses_a_decrease_before_sending() {
    let cluster = cluster(3).await;
    cluster.create_topic("grow", 2, 2).await.unwrap();
    cluster.create_topic("shrink", 4, 1).await.unwrap();
    let admin = admin(&cluster);
    cluster.clear_request_log().await.unwrap();
    let results = admin
        .create_partitions(
            [
                ("grow".to_owned(), NewPartitions::increase_to(5)),
                ("shrink".to_owned(), NewPartitions::increase_to(2)),
                ("missing".to_owned(), NewPartitions::increase_to(2)),
            ]
            .into(),
        )
        .await
        .unwrap();
    assert!(results["grow"].is_ok());
    let shrink = results["shrink"].as_ref().unwrap_err();
    assert!(matches!(shrink, AdminError::InvalidArgument { .. }), "{shrink:?}");
    assert!(shrink.to_string().contains("topic shrink") && shrink.to_string().contains("4 partitions"), "{shrink}");
    assert_eq!(results["missing"].as_ref().unwrap_err().code(), Some(ErrorCode::UnknownTopicOrPartition));
    assert_eq!(admin.describe_topics(["grow"]).await.unwrap()["grow"].as_ref().unwrap().partitions.len(), 5);
    assert_eq!(admin.describe_topics(["shrink"]).await.unwrap()["shrink"].as_ref().unwrap().partitions.len(), 4);

    // Only a decrease: nothing is sent at all.
    cluster.clear_request_log().await.unwrap();
    let only = admin.create_partitions([("shrink".to_owned(), NewPartitions::increase_to(1))].into()).await.unwrap();
    assert!(only["shrink"].is_err());
    assert!(requests_of(&cluster, ApiKey::CreatePartitions).await.is_empty());
    cluster.shutdown().await;
}

#[tokio::test]
async fn configs_of_topics_and_brokers() {
    let cluster = cluster(3).await;
    cluster.create_topic_with_configs("orders", 1, 1, &[("cleanup.policy", "compact")]).await.unwrap();
    let admin = admin(&cluster);
    let topic = ConfigResource::topic("orders");
    let missing = ConfigResource::topic("missing");
    let broker = ConfigResource::broker(2);
    cluster.clear_request_log().await.unwrap();
    let described = admin.describe_configs([topic.clone(), missing.clone(), broker.clone()], true).await.unwrap();
    let configs = described[&topic].as_ref().unwrap();
    let policy = configs.iter().find(|c| c.name == "cleanup.policy").unwrap();
    assert_eq!((policy.value.as_deref(), policy.source), (Some("compact"), ConfigSource::DynamicTopic));
    let retention = configs.iter().find(|c| c.name == "retention.ms").unwrap();
    assert!(retention.source != ConfigSource::DynamicTopic);
    assert_eq!(described[&missing].as_ref().unwrap_err().code(), Some(ErrorCode::UnknownTopicOrPartition));
    assert!(!described[&broker].as_ref().unwrap().is_empty());
    // The broker resource went to broker 2.
    assert!(requests_of(&cluster, ApiKey::DescribeConfigs).await.contains(&2));

    let changes = [
        (topic.clone(), vec![AlterConfigOp::set("retention.ms", "60000"), AlterConfigOp::delete("cleanup.policy")]),
        (ConfigResource::topic("missing"), vec![AlterConfigOp::set("retention.ms", "1")]),
    ]
    .into();
    let altered = admin.incremental_alter_configs(changes, false).await.unwrap();
    assert!(altered[&topic].is_ok());
    assert!(altered[&missing].is_err());
    let now = cluster.topic_configs("orders").await.unwrap();
    assert_eq!(now.get("retention.ms").map(String::as_str), Some("60000"));
    assert!(!now.contains_key("cleanup.policy"));

    // The legacy AlterConfigs replaces the set.
    let legacy = admin
        .alter_configs([(topic.clone(), [("segment.ms".to_owned(), "100000".to_owned())].into())].into(), false)
        .await
        .unwrap();
    assert!(legacy[&topic].is_ok());
    let now = cluster.topic_configs("orders").await.unwrap();
    assert_eq!(now.get("segment.ms").map(String::as_str), Some("100000"));
    assert!(!now.contains_key("retention.ms"));
    cluster.shutdown().await;
}

fn consumer_config(bootstrap: &str, group: &str) -> ConsumerConfig {
    ConsumerConfig::new(bootstrap)
        .set("group.id", group)
        .unwrap()
        .set("client.id", "admin-test-client")
        .unwrap()
        .set("auto.offset.reset", "earliest")
        .unwrap()
        .set("enable.auto.commit", "false")
        .unwrap()
        .set("heartbeat.interval.ms", "100")
        .unwrap()
        .set("fetch.max.wait.ms", "100")
        .unwrap()
}

#[tokio::test]
async fn consumer_groups_and_their_offsets() {
    let cluster = cluster(3).await;
    cluster.create_topic("orders", 2, 3).await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    produce(&bootstrap, "orders", 0, 5, None).await;
    produce(&bootstrap, "orders", 1, 3, None).await;
    let admin = admin(&cluster);

    // A live member that consumed everything and committed.
    let consumer = Arc::new(Consumer::new(consumer_config(&bootstrap, "live")).unwrap());
    consumer.subscribe(["orders"]).unwrap();
    let mut got = 0;
    while got < 8 {
        got += consumer.poll(Duration::from_millis(200)).await.unwrap().len();
    }
    consumer.commit().await.unwrap();
    // An empty group: committed offsets only.
    let simple: BTreeMap<TopicPartition, OffsetAndMetadata> = [(tp("orders", 0), OffsetAndMetadata::new(2))].into();
    let altered = admin.alter_consumer_group_offsets("simple", simple).await.unwrap();
    assert!(altered[&tp("orders", 0)].is_ok());

    let groups = admin.list_consumer_groups().await.unwrap();
    let states: Vec<(String, Option<String>)> = groups.into_iter().map(|g| (g.group_id, g.state)).collect();
    assert_eq!(
        states,
        vec![("live".to_owned(), Some("Stable".to_owned())), ("simple".to_owned(), Some("Empty".to_owned()))]
    );

    let described = admin.describe_consumer_groups(["live", "simple", "ghost"]).await.unwrap();
    let live = described["live"].as_ref().unwrap();
    assert_eq!(
        (live.state.as_str(), live.protocol_type.as_str(), live.protocol.as_str()),
        ("Stable", "consumer", "range")
    );
    assert_eq!(live.coordinator, cluster.group_coordinator("live").await.unwrap());
    assert_eq!(live.members.len(), 1);
    let member = &live.members[0];
    assert_eq!(member.client_id, "admin-test-client");
    assert!(member.host.contains("127.0.0.1"), "{}", member.host);
    assert_eq!(member.assignment, vec![tp("orders", 0), tp("orders", 1)]);
    assert_eq!(described["simple"].as_ref().unwrap().state, "Empty");
    assert_eq!(described["ghost"].as_ref().unwrap().state, "Dead");

    let offsets = admin.list_consumer_group_offsets("live", None).await.unwrap();
    assert_eq!(offsets[&tp("orders", 0)].as_ref().unwrap().as_ref().unwrap().offset, 5);
    assert_eq!(offsets[&tp("orders", 1)].as_ref().unwrap().as_ref().unwrap().offset, 3);
    let some = admin.list_consumer_group_offsets("simple", Some(&[tp("orders", 0), tp("orders", 1)])).await.unwrap();
    assert_eq!(some[&tp("orders", 0)].as_ref().unwrap().as_ref().unwrap().offset, 2);
    assert_eq!(some[&tp("orders", 1)].as_ref().unwrap(), &None);

    // A group with live members refuses outside commits, per partition.
    let reset: BTreeMap<TopicPartition, OffsetAndMetadata> =
        [(tp("orders", 0), OffsetAndMetadata::new(0)), (tp("orders", 1), OffsetAndMetadata::new(0))].into();
    let refused = admin.alter_consumer_group_offsets("live", reset.clone()).await.unwrap();
    for (p, r) in &refused {
        let e = r.as_ref().unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::UnknownMemberId), "{p:?}");
        assert!(e.to_string().contains(&format!("group live partition orders-{}", p.partition)), "{e}");
    }
    // Deleting it fails alone; the missing one alone too.
    let deleted = admin.delete_consumer_groups(["live", "ghost"]).await.unwrap();
    assert_eq!(deleted["live"].as_ref().unwrap_err().code(), Some(ErrorCode::NonEmptyGroup));
    assert_eq!(deleted["ghost"].as_ref().unwrap_err().code(), Some(ErrorCode::GroupIdNotFound));
    // Offsets of a subscribed topic cannot be deleted.
    let subscribed = admin.delete_consumer_group_offsets("live", &[tp("orders", 0)]).await.unwrap();
    assert_eq!(subscribed[&tp("orders", 0)].as_ref().unwrap_err().code(), Some(ErrorCode::GroupSubscribedToTopic));

    // Once the member has left, all of it works.
    consumer.close().await.unwrap();
    let reset = admin.alter_consumer_group_offsets("live", reset).await.unwrap();
    assert!(reset.values().all(|r| r.is_ok()), "{reset:?}");
    let offsets = admin.list_consumer_group_offsets("live", None).await.unwrap();
    assert_eq!(offsets[&tp("orders", 1)].as_ref().unwrap().as_ref().unwrap().offset, 0);
    let removed = admin.delete_consumer_group_offsets("live", &[tp("orders", 1)]).await.unwrap();
    assert!(removed[&tp("orders", 1)].is_ok());
    let offsets = admin.list_consumer_group_offsets("live", None).await.unwrap();
    assert_eq!(offsets.keys().cloned().collect::<Vec<_>>(), vec![tp("orders", 0)]);
    let deleted = admin.delete_consumer_groups(["live", "simple"]).await.unwrap();
    assert!(deleted.values().all(|r| r.is_ok()), "{deleted:?}");
    assert!(admin.list_consumer_groups().await.unwrap().is_empty());
    cluster.shutdown().await;
}

#[tokio::test]
async fn group_calls_retry_when_the_coordinator_moves_or_loads() {
    let cluster = cluster(3).await;
    let admin = admin(&cluster);
    cluster.create_topic("t", 1, 1).await.unwrap();
    let committed =
        admin.alter_consumer_group_offsets("g", [(tp("t", 0), OffsetAndMetadata::new(7))].into()).await.unwrap();
    assert!(committed[&tp("t", 0)].is_ok(), "{committed:?}");
    cluster.clear_request_log().await.unwrap();
    cluster.intercept(ApiKey::DescribeGroups, Times::Once, |_| Action::Error(ErrorCode::NotCoordinator)).await.unwrap();
    cluster
        .intercept(ApiKey::OffsetFetch, Times::Count(2), |_| Action::Error(ErrorCode::CoordinatorLoadInProgress))
        .await
        .unwrap();
    cluster.intercept(ApiKey::OffsetCommit, Times::Once, |_| Action::Error(ErrorCode::NotCoordinator)).await.unwrap();
    let moved_to = cluster.move_coordinator("g").await.unwrap();
    let described = admin.describe_consumer_groups(["g"]).await.unwrap();
    let g = described["g"].as_ref().unwrap();
    assert_eq!((g.state.as_str(), g.coordinator), ("Empty", moved_to));
    let offsets = admin.list_consumer_group_offsets("g", None).await.unwrap();
    assert_eq!(offsets[&tp("t", 0)].as_ref().unwrap().as_ref().unwrap().offset, 7);
    let altered =
        admin.alter_consumer_group_offsets("g", [(tp("t", 0), OffsetAndMetadata::new(9))].into()).await.unwrap();
    assert!(altered[&tp("t", 0)].is_ok(), "{altered:?}");
    assert_eq!(requests_of(&cluster, ApiKey::OffsetFetch).await.len(), 3);
    cluster.shutdown().await;
}

#[tokio::test]
async fn offsets_records_and_producers_at_the_leader() {
    let cluster = cluster(3).await;
    cluster.create_topic("orders", 2, 3).await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    produce(&bootstrap, "orders", 0, 10, Some(1_000_000)).await;
    let admin = admin(&cluster);
    let p0 = tp("orders", 0);
    let p1 = tp("orders", 1);
    let missing = tp("nope", 0);
    let out_of_range = tp("orders", 9);
    let ask = |spec| -> BTreeMap<TopicPartition, OffsetSpec> {
        [(p0.clone(), spec), (p1.clone(), spec), (missing.clone(), spec), (out_of_range.clone(), spec)].into()
    };
    let latest = admin.list_offsets(ask(OffsetSpec::Latest), false).await.unwrap();
    assert_eq!(latest[&p0].as_ref().unwrap().offset, 10);
    assert_eq!(latest[&p1].as_ref().unwrap().offset, 0);
    assert_eq!(latest[&missing].as_ref().unwrap_err().code(), Some(ErrorCode::UnknownTopicOrPartition));
    assert_eq!(latest[&out_of_range].as_ref().unwrap_err().code(), Some(ErrorCode::UnknownTopicOrPartition));
    let by_time = admin.list_offsets([(p0.clone(), OffsetSpec::Timestamp(1_000_004))].into(), false).await.unwrap();
    assert_eq!(by_time[&p0].as_ref().unwrap().offset, 4);
    let max = admin.list_offsets([(p0.clone(), OffsetSpec::MaxTimestamp)].into(), false).await.unwrap();
    assert_eq!((max[&p0].as_ref().unwrap().offset, max[&p0].as_ref().unwrap().timestamp), (9, 1_000_009));

    // The leader answers; a leader move in between is retried.
    let leader = cluster.partition_stats("orders", 0).await.unwrap().leader;
    assert!(leader >= 0);
    cluster.clear_request_log().await.unwrap();
    cluster
        .intercept(ApiKey::DeleteRecords, Times::Once, |_| Action::Error(ErrorCode::NotLeaderOrFollower))
        .await
        .unwrap();
    let deleted = admin.delete_records([(p0.clone(), 6), (missing.clone(), 1)].into()).await.unwrap();
    assert_eq!(deleted[&p0].as_ref().unwrap(), &6);
    assert!(deleted[&missing].is_err());
    let sent = requests_of(&cluster, ApiKey::DeleteRecords).await;
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|b| *b == leader), "{sent:?} vs {leader}");
    let earliest = admin.list_offsets([(p0.clone(), OffsetSpec::Earliest)].into(), false).await.unwrap();
    assert_eq!(earliest[&p0].as_ref().unwrap().offset, 6);

    let producers = admin.describe_producers([p0.clone(), p1.clone()]).await.unwrap();
    let states = producers[&p0].as_ref().unwrap();
    assert_eq!(states.len(), 1, "the idempotent producer");
    assert!(states[0].producer_id >= 0);
    assert_eq!(states[0].last_sequence, 9);
    assert!(producers[&p1].as_ref().unwrap().is_empty());
    cluster.shutdown().await;
}

#[tokio::test]
async fn transactions_are_listed_and_described_at_their_coordinator() {
    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    use kafka_protocol::messages::{AddPartitionsToTxnRequest, FindCoordinatorRequest, InitProducerIdRequest};
    let cluster = cluster(3).await;
    cluster.create_topic("orders", 2, 1).await.unwrap();
    let admin = admin(&cluster);
    // Client-side transactions are not written yet: drive one by hand.
    let client = admin.client();
    let any = client.any_connection().await.unwrap();
    let found = any
        .request_at(&FindCoordinatorRequest { key: "tx-1".into(), key_type: 1, ..Default::default() }, 3)
        .await
        .unwrap();
    client.refresh_metadata().await.unwrap();
    let coordinator = client.connection(found.node_id).await.unwrap();
    let init = coordinator
        .request_at(
            &InitProducerIdRequest {
                transactional_id: Some("tx-1".into()),
                transaction_timeout_ms: 60_000,
                producer_id: -1,
                producer_epoch: -1,
                ..Default::default()
            },
            3,
        )
        .await
        .unwrap();
    assert_eq!(init.error_code, 0);
    let add = AddPartitionsToTxnRequest {
        v3_and_below_transactional_id: "tx-1".into(),
        v3_and_below_producer_id: init.producer_id,
        v3_and_below_producer_epoch: init.producer_epoch,
        v3_and_below_topics: vec![AddPartitionsToTxnTopic {
            name: "orders".into(),
            partitions: vec![1],
            ..Default::default()
        }],
        ..Default::default()
    };
    let added = coordinator.request_at(&add, 3).await.unwrap();
    assert!(added
        .results_by_topic_v3_and_below
        .iter()
        .all(|t| t.results_by_partition.iter().all(|p| p.partition_error_code == 0)));

    let listed = admin.list_transactions().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].transactional_id.as_str(), listed[0].producer_id), ("tx-1", init.producer_id));
    let described = admin.describe_transactions(["tx-1", "tx-unknown"]).await.unwrap();
    let tx = described["tx-1"].as_ref().unwrap();
    assert_eq!(tx.state, "Ongoing");
    assert_eq!(tx.coordinator, found.node_id);
    assert_eq!(tx.partitions, vec![tp("orders", 1)]);
    assert_eq!(tx.transaction_timeout_ms, 60_000);
    assert_eq!(described["tx-unknown"].as_ref().unwrap_err().code(), Some(ErrorCode::TransactionalIdNotFound));
    cluster.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_cluster_fails_the_call_within_the_timeout() {
    init_logs();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let admin =
        AdminClient::new(AdminConfig::new(&addr.to_string()).set("default.api.timeout.ms", "1500").unwrap()).unwrap();
    let started = std::time::Instant::now();
    let e = admin.list_topics(false).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert!(e.to_string().contains("default.api.timeout.ms"), "{e}");
    let e = admin.create_topics([NewTopic::new("x", 1, 1)], false).await.unwrap_err();
    assert!(matches!(e, AdminError::Client(_)), "{e:?}");
}

#[tokio::test]
async fn a_call_never_outlives_default_api_timeout() {
    let cluster = cluster(1).await;
    cluster.create_topic("t", 1, 1).await.unwrap();
    let admin =
        AdminClient::new(AdminConfig::new(&cluster.bootstrap_servers()).set("default.api.timeout.ms", "800").unwrap())
            .unwrap();
    // The broker holds DescribeGroups answers far longer than the call may take.
    cluster.intercept(ApiKey::DescribeGroups, Times::Always, |_| Action::Delay(Duration::from_secs(3))).await.unwrap();
    let started = std::time::Instant::now();
    let e = admin.describe_consumer_groups(["g"]).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert!(e.to_string().contains("default.api.timeout.ms"), "{e}");
    // The held answer blocks that connection (Kafka answers a connection's requests in
    // order) until request.timeout.ms closes it; other connections are unaffected.
    assert_eq!(self::admin(&cluster).list_topics(false).await.unwrap().len(), 1);
    cluster.shutdown().await;
}

/// KIP-848 groups are described with ConsumerGroupDescribe (their state, server assignor and
/// member assignments), classic ones with DescribeGroups, in one call, as the Java admin
/// client does; listing shows both.
#[tokio::test]
async fn kip848_and_classic_groups_are_described_together() {
    let cluster = cluster(3).await;
    cluster.create_topic("orders", 4, 3).await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    produce(&bootstrap, "orders", 0, 2, None).await;
    let admin = admin(&cluster);
    let mut next_gen = consumer_config(&bootstrap, "next-gen").set("group.protocol", "consumer").unwrap();
    // With KIP-848 the broker sets the heartbeat interval; the classic setting must stay unset.
    next_gen.heartbeat_interval = ConsumerConfig::default().heartbeat_interval;
    let next_gen = Consumer::new(next_gen).unwrap();
    next_gen.subscribe(["orders"]).unwrap();
    let classic = Consumer::new(consumer_config(&bootstrap, "classic")).unwrap();
    classic.subscribe(["orders"]).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while next_gen.assignment().len() < 4 || classic.assignment().len() < 4 {
        assert!(tokio::time::Instant::now() < deadline, "the groups did not assign");
        let (a, b) = tokio::join!(next_gen.poll(Duration::from_millis(50)), classic.poll(Duration::from_millis(50)));
        a.unwrap();
        b.unwrap();
    }

    let described = admin.describe_consumer_groups(["next-gen", "classic", "ghost"]).await.unwrap();
    let ng = described["next-gen"].as_ref().unwrap();
    assert_eq!(
        (ng.group_type.as_str(), ng.protocol_type.as_str(), ng.protocol.as_str()),
        ("consumer", "consumer", "uniform")
    );
    assert!(["Stable", "Reconciling", "Assigning"].contains(&ng.state.as_str()), "{}", ng.state);
    assert_eq!(ng.coordinator, cluster.group_coordinator("next-gen").await.unwrap());
    assert_eq!(ng.members.len(), 1);
    assert_eq!(ng.members[0].client_id, "admin-test-client");
    assert!(ng.members[0].host.contains("127.0.0.1"), "{}", ng.members[0].host);
    let mut assigned = ng.members[0].assignment.clone();
    assigned.sort();
    assert_eq!(assigned, (0..4).map(|p| tp("orders", p)).collect::<Vec<_>>());
    let cl = described["classic"].as_ref().unwrap();
    assert_eq!((cl.group_type.as_str(), cl.state.as_str(), cl.protocol.as_str()), ("classic", "Stable", "range"));
    assert_eq!(cl.members[0].assignment.len(), 4);
    assert_eq!(described["ghost"].as_ref().unwrap().state, "Dead");

    let listed: Vec<String> = admin.list_consumer_groups().await.unwrap().into_iter().map(|g| g.group_id).collect();
    assert_eq!(listed, vec!["classic".to_owned(), "next-gen".to_owned()]);
    next_gen.close().await.unwrap();
    classic.close().await.unwrap();
    cluster.shutdown().await;
}
