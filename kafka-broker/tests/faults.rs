//! The fault-injection API: each function, observed over real TCP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use kafka_broker::{hold, Action, Chaos, Cluster, ErrorScope, Fault, Loss, Times};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::records::ProducerState;
use kafka_protocol::{ApiKey, ErrorCode};
use tokio::net::TcpStream;

fn produce_req(topic: &str, partitions: &[i32], records: Bytes) -> ProduceRequest {
    ProduceRequest {
        transactional_id: None,
        acks: -1,
        timeout_ms: 5000,
        topic_data: vec![TopicProduceData {
            name: topic.into(),
            partition_data: partitions
                .iter()
                .map(|p| PartitionProduceData { index: *p, records: Some(records.clone()), ..Default::default() })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn produce(s: &mut TcpStream, topic: &str, partition: i32, records: Bytes) -> (i16, i64) {
    let resp = call(s, 1, &produce_req(topic, &[partition], records), 9).await;
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

async fn high_watermark(s: &mut TcpStream, topic: &str, partition: i32) -> i64 {
    let req = FetchRequest {
        replica_id: -1,
        max_wait_ms: 0,
        max_bytes: 1 << 20,
        session_epoch: -1,
        topics: vec![FetchTopic {
            topic: topic.into(),
            partitions: vec![FetchPartition {
                partition,
                current_leader_epoch: -1,
                fetch_offset: 0,
                partition_max_bytes: 1 << 20,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let resp = call(s, 2, &req, 11).await;
    assert_eq!(resp.responses[0].partitions[0].error_code, 0);
    resp.responses[0].partitions[0].high_watermark
}

async fn metadata(s: &mut TcpStream) -> MetadataResponse {
    call(s, 3, &MetadataRequest { topics: None, ..Default::default() }, 12).await
}

#[tokio::test]
async fn intercept_error_respond_and_pass() {
    let cluster = Cluster::builder().start().await.unwrap();
    cluster.create_topic("t", 2, 1).await.unwrap();
    let mut s = connect(&cluster).await;
    // Acts on partition 1 only; requests for partition 0 pass and do not count.
    cluster
        .intercept(ApiKey::Produce, Times::Count(2), |req| match req.body {
            RequestBody::Produce(p) if p.topic_data[0].partition_data[0].index == 1 => {
                Action::Error(ErrorCode::NotLeaderOrFollower)
            }
            _ => Action::Pass,
        })
        .await
        .unwrap();
    assert_eq!(produce(&mut s, "t", 0, batch(&[b"a"])).await, (0, 0));
    assert_eq!(produce(&mut s, "t", 1, batch(&[b"a"])).await.0, ErrorCode::NotLeaderOrFollower.code());
    assert_eq!(produce(&mut s, "t", 0, batch(&[b"b"])).await, (0, 1));
    assert_eq!(produce(&mut s, "t", 1, batch(&[b"a"])).await.0, ErrorCode::NotLeaderOrFollower.code());
    assert_eq!(produce(&mut s, "t", 1, batch(&[b"a"])).await, (0, 0), "used up after two");
    let stats = cluster.partition_stats("t", 1).await.unwrap();
    assert_eq!((stats.log_start_offset, stats.high_watermark), (0, 1));
    assert_eq!(stats.stored_bytes, batch(&[b"a"]).len());
    assert_eq!(high_watermark(&mut s, "t", 1).await, 1, "refused requests wrote nothing");

    // Respond replaces the answer; remove_intercept stops an Always interceptor.
    let id = cluster
        .intercept(ApiKey::InitProducerId, Times::Always, |_| {
            Action::Respond(
                InitProducerIdResponse { producer_id: 4242, producer_epoch: 7, ..Default::default() }.into(),
            )
        })
        .await
        .unwrap();
    let req =
        InitProducerIdRequest { transactional_id: None, producer_id: -1, producer_epoch: -1, ..Default::default() };
    for _ in 0..2 {
        let resp = call(&mut s, 4, &req, 4).await;
        assert_eq!((resp.producer_id, resp.producer_epoch), (4242, 7));
    }
    assert!(cluster.remove_intercept(id).await.unwrap());
    assert!(!cluster.remove_intercept(id).await.unwrap());
    assert_ne!(call(&mut s, 5, &req, 4).await.producer_id, 4242);
    cluster.shutdown().await;
}

#[tokio::test]
async fn intercept_delay_drop_and_hold() {
    let cluster = Cluster::builder().start().await.unwrap();
    cluster.create_topic("t", 1, 1).await.unwrap();
    let mut s = connect(&cluster).await;
    let mut watcher = connect(&cluster).await;

    cluster.intercept(ApiKey::Produce, Times::Once, |_| Action::Delay(Duration::from_millis(200))).await.unwrap();
    let started = Instant::now();
    assert_eq!(produce(&mut s, "t", 0, batch(&[b"slow"])).await, (0, 0));
    assert!(started.elapsed() >= Duration::from_millis(200));

    cluster.intercept(ApiKey::Produce, Times::Once, |_| Action::DropConnection).await.unwrap();
    send(&mut s, 6, &produce_req("t", &[0], batch(&[b"dropped"])), 9).await;
    assert!(closed(&mut s).await);
    assert_eq!(high_watermark(&mut watcher, "t", 0).await, 1, "a dropped request is not handled");

    let mut s = connect(&cluster).await;
    cluster.intercept(ApiKey::Produce, Times::Once, |_| Action::DropResponse).await.unwrap();
    send(&mut s, 7, &produce_req("t", &[0], batch(&[b"written"])), 9).await;
    assert!(closed(&mut s).await);
    assert_eq!(high_watermark(&mut watcher, "t", 0).await, 2, "DropResponse handles the request first");

    let (release, held) = hold();
    let mut held = Some(held);
    cluster.intercept(ApiKey::Produce, Times::Once, move |_| Action::Hold(held.take().unwrap())).await.unwrap();
    let mut s = connect(&cluster).await;
    send(&mut s, 8, &produce_req("t", &[0], batch(&[b"held"])), 9).await;
    // The request is known to the broker (it is in the request log) but not handled.
    loop {
        let log = cluster.request_log().await.unwrap();
        if log.iter().any(|r| r.api_key == ApiKey::Produce && r.correlation_id == 8) {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(high_watermark(&mut watcher, "t", 0).await, 2, "held: not handled yet");
    release.release();
    let resp = recv::<ProduceRequest>(&mut s, 8, 9).await;
    assert_eq!(resp.responses[0].partition_responses[0].base_offset, 2);
    cluster.shutdown().await;
}

#[tokio::test]
async fn pushed_errors_by_cluster_broker_and_partition() {
    let cluster = Cluster::builder().brokers(2).start().await.unwrap();
    cluster.create_topic("t", 2, 2).await.unwrap();
    let mut md = connect(&cluster).await;
    let leader0 = metadata(&mut md).await.topics[0].partitions[0].leader_id;
    let mut s = connect_to(&cluster, leader0).await;

    cluster
        .push_errors(
            ApiKey::Produce,
            ErrorScope::Cluster,
            [ErrorCode::RequestTimedOut, ErrorCode::None, ErrorCode::NotEnoughReplicas],
        )
        .await
        .unwrap();
    assert_eq!(produce(&mut s, "t", 0, batch(&[b"a"])).await.0, ErrorCode::RequestTimedOut.code());
    assert_eq!(produce(&mut s, "t", 0, batch(&[b"a"])).await.0, 0);
    assert_eq!(produce(&mut s, "t", 0, batch(&[b"a"])).await.0, ErrorCode::NotEnoughReplicas.code());
    assert_eq!(produce(&mut s, "t", 0, batch(&[b"a"])).await.0, 0);

    let other = if leader0 == 1 { 2 } else { 1 };
    cluster.push_errors(ApiKey::Metadata, ErrorScope::Broker(other), [ErrorCode::UnknownServerError]).await.unwrap();
    let mut o = connect_to(&cluster, other).await;
    let req = MetadataRequest {
        topics: Some(vec![metadata_request::MetadataRequestTopic { name: Some("t".into()), ..Default::default() }]),
        ..Default::default()
    };
    assert_eq!(call(&mut s, 9, &req, 12).await.topics[0].error_code, 0, "another broker is unaffected");
    assert_eq!(call(&mut o, 9, &req, 12).await.topics[0].error_code, ErrorCode::UnknownServerError.code());
    assert_eq!(call(&mut o, 9, &req, 12).await.topics[0].error_code, 0);

    // Partition scope: only that partition's entry fails.
    cluster.set_leader("t", 1, Some(leader0)).await.unwrap();
    cluster
        .push_errors(ApiKey::Produce, ErrorScope::Partition("t".into(), 1), [ErrorCode::NotLeaderOrFollower])
        .await
        .unwrap();
    let resp = call(&mut s, 10, &produce_req("t", &[0, 1], batch(&[b"x"])), 9).await;
    let codes: Vec<i16> = resp.responses[0].partition_responses.iter().map(|p| p.error_code).collect();
    assert_eq!(codes, vec![0, ErrorCode::NotLeaderOrFollower.code()]);
    assert_eq!(high_watermark(&mut s, "t", 1).await, 0);
    cluster.shutdown().await;
}

#[tokio::test]
async fn latency_per_broker() {
    let cluster = Cluster::builder().brokers(2).start().await.unwrap();
    cluster.set_latency(2, Duration::from_millis(250)).await.unwrap();
    let mut fast = connect_to(&cluster, 1).await;
    let mut slow = connect_to(&cluster, 2).await;
    let started = Instant::now();
    metadata(&mut slow).await;
    assert!(started.elapsed() >= Duration::from_millis(250));
    cluster.set_latency(2, Duration::ZERO).await.unwrap();
    let _ = metadata(&mut fast).await;
    let log = cluster.request_log().await.unwrap();
    assert_eq!(log.iter().map(|r| r.broker).collect::<Vec<_>>(), vec![2, 1]);
    cluster.shutdown().await;
}

#[tokio::test]
async fn stopping_a_broker_moves_leadership_and_refuses_connections() {
    let cluster = Cluster::builder().brokers(3).start().await.unwrap();
    cluster.create_topic_with_configs("t", 1, 2, &[("min.insync.replicas", "2")]).await.unwrap();
    let mut md = connect(&cluster).await;
    let before = metadata(&mut md).await;
    let p = &before.topics[0].partitions[0];
    let (old_leader, epoch) = (p.leader_id, p.leader_epoch);
    let follower = p.replica_nodes.iter().copied().find(|b| *b != old_leader).unwrap();
    let mut on_old = connect_to(&cluster, old_leader).await;
    assert_eq!(produce(&mut on_old, "t", 0, batch(&[b"a"])).await, (0, 0));

    cluster.stop_broker(old_leader).await.unwrap();
    assert!(closed(&mut on_old).await, "its connections end");
    let addr = cluster.broker_addrs().into_iter().find(|(id, _)| *id == old_leader).unwrap().1;
    assert!(TcpStream::connect(addr).await.is_err(), "new connections are refused");

    let mut md = connect_to(&cluster, follower).await;
    let after = metadata(&mut md).await;
    assert!(after.brokers.iter().all(|b| b.node_id != old_leader));
    let p = &after.topics[0].partitions[0];
    assert_eq!((p.leader_id, p.leader_epoch), (follower, epoch + 1));
    assert_eq!(p.isr_nodes, vec![follower]);

    let mut on_new = connect_to(&cluster, follower).await;
    // acks=all now fails min.insync.replicas=2; the data written before is still there.
    assert_eq!(produce(&mut on_new, "t", 0, batch(&[b"b"])).await.0, ErrorCode::NotEnoughReplicas.code());
    assert_eq!(high_watermark(&mut on_new, "t", 0).await, 1);
    // A client still on the old epoch is fenced.
    let req = ListOffsetsRequest {
        replica_id: -1,
        topics: vec![list_offsets_request::ListOffsetsTopic {
            name: "t".into(),
            partitions: vec![list_offsets_request::ListOffsetsPartition {
                partition_index: 0,
                current_leader_epoch: epoch,
                timestamp: -1,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    assert_eq!(
        call(&mut on_new, 11, &req, 5).await.topics[0].partitions[0].error_code,
        ErrorCode::FencedLeaderEpoch.code()
    );

    cluster.start_broker(old_leader).await.unwrap();
    let mut back = connect_to(&cluster, old_leader).await;
    let p = metadata(&mut back).await.topics[0].partitions[0].clone();
    assert_eq!(p.leader_id, follower, "leadership does not move back by itself");
    assert_eq!(p.isr_nodes.len(), 2);
    assert_eq!(produce(&mut on_new, "t", 0, batch(&[b"c"])).await, (0, 1));
    cluster.shutdown().await;
}

#[tokio::test]
async fn set_leader_moves_or_removes_leadership() {
    let cluster = Cluster::builder().brokers(2).start().await.unwrap();
    cluster.create_topic("t", 1, 2).await.unwrap();
    let mut s = connect(&cluster).await;
    let p = metadata(&mut s).await.topics[0].partitions[0].clone();
    let other = if p.leader_id == 1 { 2 } else { 1 };
    cluster.set_leader("t", 0, Some(other)).await.unwrap();
    let q = metadata(&mut s).await.topics[0].partitions[0].clone();
    assert_eq!((q.leader_id, q.leader_epoch), (other, p.leader_epoch + 1));
    cluster.set_leader("t", 0, None).await.unwrap();
    let q = metadata(&mut s).await.topics[0].partitions[0].clone();
    assert_eq!((q.error_code, q.leader_id), (ErrorCode::LeaderNotAvailable.code(), -1));
    let mut o = connect_to(&cluster, other).await;
    assert_eq!(produce(&mut o, "t", 0, batch(&[b"a"])).await.0, ErrorCode::LeaderNotAvailable.code());
    assert!(cluster.set_leader("t", 0, Some(9)).await.is_err());
    assert!(cluster.set_leader("nope", 0, Some(1)).await.is_err());
    cluster.shutdown().await;
}

#[tokio::test]
async fn lost_responses_and_forgotten_producers() {
    let cluster = Cluster::builder().start().await.unwrap();
    cluster.create_topic("t", 1, 1).await.unwrap();
    let mut s = connect(&cluster).await;
    let mut watcher = connect(&cluster).await;
    let req =
        InitProducerIdRequest { transactional_id: None, producer_id: -1, producer_epoch: -1, ..Default::default() };
    let pid = call(&mut s, 1, &req, 4).await.producer_id;
    let idem = |seq: i32| {
        batch_with(&[b"v"], None, now_ms(), ProducerState { producer_id: pid, producer_epoch: 0, base_sequence: seq })
    };

    cluster.lose_response_after_append(Loss::Count(1)).await.unwrap();
    send(&mut s, 2, &produce_req("t", &[0], idem(0)), 9).await;
    assert!(closed(&mut s).await, "the answer is lost");
    assert_eq!(high_watermark(&mut watcher, "t", 0).await, 1, "but the batch was written");
    // The producer retries on a new connection: a duplicate, answered with the first offset.
    let mut s = connect(&cluster).await;
    assert_eq!(produce(&mut s, "t", 0, idem(0)).await, (0, 0));
    assert_eq!(high_watermark(&mut watcher, "t", 0).await, 1, "written once");
    assert_eq!(produce(&mut s, "t", 0, idem(1)).await, (0, 1), "only one response was lost");

    cluster.forget_producer_state().await.unwrap();
    assert_eq!(produce(&mut s, "t", 0, idem(2)).await.0, ErrorCode::UnknownProducerId.code());
    cluster.shutdown().await;
}

/// A fixed workload on one connection: the schedule may drop it, so reconnect as needed.
async fn chaos_run(seed: u64) -> (Vec<kafka_broker::ChaosEvent>, i64) {
    let cluster = Cluster::builder().brokers(2).start().await.unwrap();
    cluster.create_topic("t", 4, 2).await.unwrap();
    cluster
        .set_chaos(Some(Chaos {
            seed,
            drop_connection: 0.1,
            inject_error: 0.2,
            move_leader: 0.1,
            latency: 0.1,
            max_latency: Duration::from_millis(5),
            ..Chaos::default()
        }))
        .await
        .unwrap();
    let mut conns = [connect_to(&cluster, 1).await, connect_to(&cluster, 2).await];
    for i in 0..60 {
        let broker = i % 2;
        let mut out = bytes::BytesMut::new();
        kafka_protocol::frame::encode_request(
            &mut out,
            i as i32,
            Some("chaos"),
            &produce_req("t", &[(i % 4) as i32], batch(&[b"c"])),
            9,
        )
        .unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut conns[broker], &out).await.unwrap();
        if read_frame(&mut conns[broker]).await.is_none() {
            conns[broker] = connect_to(&cluster, broker as i32 + 1).await;
        }
    }
    let log = cluster.chaos_log().await.unwrap();
    let requests = cluster.request_log().await.unwrap().len() as i64;
    cluster.shutdown().await;
    (log, requests)
}

#[tokio::test]
async fn the_same_seed_gives_the_same_faults() {
    let (a, n) = chaos_run(42).await;
    let (b, _) = chaos_run(42).await;
    let (c, _) = chaos_run(7).await;
    assert_eq!(n, 60);
    assert!(a.len() >= 10, "about half of 60 requests see a fault: {}", a.len());
    assert_eq!(a, b);
    assert_ne!(a, c);
    for kind in [
        |f: &Fault| matches!(f, Fault::DropConnection),
        |f: &Fault| matches!(f, Fault::Error(_)),
        |f: &Fault| matches!(f, Fault::MoveLeader { .. }),
        |f: &Fault| matches!(f, Fault::Latency(_)),
    ] {
        assert!(a.iter().any(|e| kind(&e.fault)), "every kind of fault occurs: {a:?}");
    }
}

#[tokio::test]
async fn the_request_log_records_every_request() {
    let cluster = Cluster::builder().start().await.unwrap();
    let mut s = connect(&cluster).await;
    call(&mut s, 21, &ApiVersionsRequest::default(), 3).await;
    metadata(&mut s).await;
    let log = cluster.request_log().await.unwrap();
    let seen: Vec<(ApiKey, i16, i32, Option<&str>)> =
        log.iter().map(|r| (r.api_key, r.version, r.correlation_id, r.client_id.as_deref())).collect();
    assert_eq!(seen, vec![(ApiKey::ApiVersions, 3, 21, Some("tcp-test")), (ApiKey::Metadata, 12, 3, Some("tcp-test"))]);
    assert!(log[0].at <= log[1].at);
    cluster.clear_request_log().await.unwrap();
    assert!(cluster.request_log().await.unwrap().is_empty());
    cluster.shutdown().await;
}

#[tokio::test]
async fn clients_over_their_quota_are_throttled() {
    let cluster = Cluster::builder().broker_config("quota.producer.default", "2000").start().await.unwrap();
    cluster.create_topic("t", 1, 1).await.unwrap();
    cluster.set_client_quota("tcp-test", None, Some(2000.0)).await.unwrap();
    let mut s = connect(&cluster).await;
    let big = vec![b'x'; 24_000];
    // 24 KB against 2 KB/s over a 10 s span (2.4 KB/s): (2400 - 2000) / 2000 * 10 s = 2 s of
    // throttle, reported and enforced by muting the connection.
    let resp = call(&mut s, 1, &produce_req("t", &[0], batch(&[&big])), 9).await;
    let throttle = resp.throttle_time_ms;
    assert!((1_500..=2_500).contains(&throttle), "throttle {throttle}");
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 0, "the data is still written");
    let started = Instant::now();
    call(&mut s, 2, &ApiVersionsRequest::default(), 3).await;
    assert!(started.elapsed() >= Duration::from_millis(throttle as u64 - 50), "the connection was muted");

    // The fetch quota: the throttled fetch returns no data, and the bytes are not counted.
    let req = FetchRequest {
        replica_id: -1,
        max_wait_ms: 0,
        max_bytes: 1 << 20,
        session_epoch: -1,
        topics: vec![FetchTopic {
            topic: "t".into(),
            partitions: vec![FetchPartition {
                partition: 0,
                current_leader_epoch: -1,
                fetch_offset: 0,
                partition_max_bytes: 1 << 20,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let resp = call(&mut s, 3, &req, 11).await;
    assert!(resp.throttle_time_ms > 0);
    assert!(resp.responses.is_empty(), "a throttled fetch carries no data");
    // Lifting the quota lets the data through (on a new connection: the old one is muted).
    cluster.set_client_quota("tcp-test", Some(1e12), Some(1e12)).await.unwrap();
    let mut s = connect(&cluster).await;
    let resp = call(&mut s, 4, &req, 11).await;
    assert_eq!(resp.throttle_time_ms, 0);
    assert_eq!(resp.responses[0].partitions[0].high_watermark, 1);
    cluster.shutdown().await;
}
