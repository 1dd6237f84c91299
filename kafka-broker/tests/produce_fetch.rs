//! Produce, Fetch, ListOffsets, InitProducerId, DescribeProducers, OffsetForLeaderEpoch and
//! DeleteRecords over real TCP with raw requests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use kafka_broker::Cluster;
use kafka_protocol::compression::DEFAULT_DECOMPRESS_LIMIT;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::primitives::Uuid;
use kafka_protocol::records::{ProducerState, RecordSetEntry, RecordSetIter, TimestampType};
use kafka_protocol::ErrorCode;

fn produce_req(topic: &str, partition: i32, records: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest {
        transactional_id: None,
        acks,
        timeout_ms: 5000,
        topic_data: vec![TopicProduceData {
            name: topic.into(),
            partition_data: vec![PartitionProduceData {
                index: partition,
                records: Some(records),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn fetch_req(topic: &str, id: Uuid, partitions: &[(i32, i64)], max_wait_ms: i32, min_bytes: i32) -> FetchRequest {
    FetchRequest {
        replica_id: -1,
        max_wait_ms,
        min_bytes,
        max_bytes: 50 * 1024 * 1024,
        isolation_level: 0,
        session_id: 0,
        session_epoch: -1,
        topics: vec![FetchTopic {
            topic: topic.into(),
            topic_id: id,
            partitions: partitions
                .iter()
                .map(|(p, o)| FetchPartition {
                    partition: *p,
                    current_leader_epoch: -1,
                    fetch_offset: *o,
                    log_start_offset: -1,
                    partition_max_bytes: 1024 * 1024,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        rack_id: String::new(),
        ..Default::default()
    }
}

/// Every record value of a fetched partition, with offsets.
fn values(records: &Option<Bytes>) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    for e in RecordSetIter::new(records.clone().unwrap_or_default()) {
        let RecordSetEntry::Batch(b) = e.unwrap() else { panic!("legacy entry") };
        b.verify_crc().unwrap();
        for r in b.records(DEFAULT_DECOMPRESS_LIMIT).unwrap().iter() {
            let r = r.unwrap();
            out.push((r.offset(), r.value().unwrap_or_default().to_vec()));
        }
    }
    out
}

async fn produce(s: &mut tokio::net::TcpStream, topic: &str, partition: i32, records: Bytes) -> (i16, i64) {
    let resp = call(s, 1, &produce_req(topic, partition, records, -1), 9).await;
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

async fn topic_id(cluster: &Cluster, s: &mut tokio::net::TcpStream, topic: &str) -> Uuid {
    let _ = cluster;
    let req = MetadataRequest {
        topics: Some(vec![metadata_request::MetadataRequestTopic { name: Some(topic.into()), ..Default::default() }]),
        ..Default::default()
    };
    call(s, 99, &req, 12).await.topics[0].topic_id
}

#[tokio::test]
async fn produce_then_fetch_at_every_version() {
    let cluster = Cluster::builder().start().await.unwrap();
    cluster.create_topic("t", 1, 1).await.unwrap();
    let mut s = connect(&cluster).await;
    let mut expected = Vec::new();
    for (i, version) in (3..=11).enumerate() {
        let value = format!("v{version}");
        let resp =
            call(&mut s, version.into(), &produce_req("t", 0, batch(&[value.as_bytes(), b"x"]), 1), version).await;
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0, "produce v{version}");
        assert_eq!(p.base_offset, 2 * i as i64, "produce v{version}");
        assert_eq!(p.log_append_time_ms, -1);
        expected.push((2 * i as i64, value.into_bytes()));
        expected.push((2 * i as i64 + 1, b"x".to_vec()));
    }
    let id = topic_id(&cluster, &mut s, "t").await;
    for version in 4..=17 {
        let resp = call(&mut s, 100 + i32::from(version), &fetch_req("t", id, &[(0, 0)], 0, 0), version).await;
        assert_eq!(resp.error_code, 0);
        let p = &resp.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "fetch v{version}");
        assert_eq!(p.high_watermark, 18);
        if version >= 13 {
            assert_eq!(resp.responses[0].topic_id, id);
        } else {
            assert_eq!(resp.responses[0].topic, "t");
        }
        assert_eq!(values(&p.records), expected, "fetch v{version}");
    }
    // A fetch from the middle of a batch returns the whole batch (the client skips).
    let resp = call(&mut s, 200, &fetch_req("t", id, &[(0, 3)], 0, 0), 12).await;
    assert_eq!(values(&resp.responses[0].partitions[0].records)[0].0, 2);
    cluster.shutdown().await;
}

#[tokio::test]
async fn versions_kafka_4_removed_get_unsupported_version() {
    let cluster = Cluster::builder().start().await.unwrap();
    cluster.create_topic("t", 1, 1).await.unwrap();
    let mut s = connect(&cluster).await;
    let resp = call(&mut s, 1, &produce_req("t", 0, batch(&[b"a"]), 1), 2).await;
    assert_eq!(resp.responses[0].partition_responses[0].error_code, ErrorCode::UnsupportedVersion.code());
    let resp = call(&mut s, 2, &fetch_req("t", Uuid::ZERO, &[(0, 0)], 0, 0), 3).await;
    assert_eq!(resp.responses[0].partitions[0].error_code, ErrorCode::UnsupportedVersion.code());
    let req = ListOffsetsRequest {
        replica_id: -1,
        topics: vec![ListOffsetsTopic {
            name: "t".into(),
            partitions: vec![ListOffsetsPartition { partition_index: 0, timestamp: -1, ..Default::default() }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let resp = call(&mut s, 3, &req, 0).await;
    assert_eq!(resp.topics[0].partitions[0].error_code, ErrorCode::UnsupportedVersion.code());
    // Nothing was written, and the connection still works.
    let resp = call(&mut s, 4, &fetch_req("t", Uuid::ZERO, &[(0, 0)], 0, 0), 4).await;
    assert_eq!(resp.responses[0].partitions[0].high_watermark, 0);
    cluster.shutdown().await;
}

#[tokio::test]
async fn bad_batches_are_refused_and_nothing_is_written() {
    let cluster = Cluster::builder().start().await.unwrap();
    cluster.create_topic_with_configs("t", 1, 1, &[("max.message.bytes", "200")]).await.unwrap();
    cluster.create_topic_with_configs("c", 1, 1, &[("cleanup.policy", "compact")]).await.unwrap();
    let mut s = connect(&cluster).await;

    let mut corrupt = batch(&[b"hello"]).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert_eq!(produce(&mut s, "t", 0, corrupt.into()).await.0, ErrorCode::CorruptMessage.code());

    let big = vec![b'x'; 300];
    assert_eq!(produce(&mut s, "t", 0, batch(&[&big])).await.0, ErrorCode::MessageTooLarge.code());
    for version in 3..=11 {
        let resp = call(&mut s, 9, &produce_req("t", 0, batch(&[&big]), 1), version).await;
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!(p.error_code, ErrorCode::MessageTooLarge.code(), "v{version}");
        assert_eq!(p.error_message.is_some(), version >= 8, "v{version}");
    }

    let mut two = batch(&[b"a"]).to_vec();
    two.extend_from_slice(&batch(&[b"b"]));
    assert_eq!(produce(&mut s, "t", 0, two.into()).await.0, ErrorCode::InvalidRecord.code());

    assert_eq!(produce(&mut s, "t", 0, Bytes::new()).await.0, ErrorCode::InvalidRecord.code());
    let truncated = batch(&[b"hello"]).slice(..40);
    assert_eq!(produce(&mut s, "t", 0, truncated).await.0, ErrorCode::CorruptMessage.code());
    assert_eq!(produce(&mut s, "c", 0, batch(&[b"no key"])).await.0, ErrorCode::InvalidRecord.code());
    assert_eq!(produce(&mut s, "nope", 0, batch(&[b"a"])).await.0, ErrorCode::UnknownTopicOrPartition.code());
    assert_eq!(produce(&mut s, "t", 7, batch(&[b"a"])).await.0, ErrorCode::UnknownTopicOrPartition.code());
    let resp = call(&mut s, 5, &produce_req("t", 0, batch(&[b"a"]), 2), 9).await;
    assert_eq!(resp.responses[0].partition_responses[0].error_code, ErrorCode::InvalidRequiredAcks.code());

    let resp = call(&mut s, 6, &fetch_req("t", Uuid::ZERO, &[(0, 0)], 0, 0), 11).await;
    assert_eq!(resp.responses[0].partitions[0].high_watermark, 0, "a refused batch must not be stored");
    // And a good one still goes in at offset 0.
    assert_eq!(produce(&mut s, "t", 0, batch(&[b"ok"])).await, (0, 0));
    cluster.shutdown().await;
}

#[tokio::test]
async fn produce_to_a_follower_names_the_leader() {
    let cluster = Cluster::builder().brokers(3).start().await.unwrap();
    cluster.create_topic("t", 1, 3).await.unwrap();
    let mut md = connect(&cluster).await;
    let resp = call(&mut md, 1, &MetadataRequest { topics: None, ..Default::default() }, 12).await;
    let leader = resp.topics[0].partitions[0].leader_id;
    let follower = (1..=3).find(|n| *n != leader).unwrap();
    let mut s = connect_to(&cluster, follower).await;
    let resp = call(&mut s, 2, &produce_req("t", 0, batch(&[b"a"]), -1), 10).await;
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!(p.error_code, ErrorCode::NotLeaderOrFollower.code());
    assert_eq!(p.current_leader.leader_id, leader);
    assert_eq!(resp.node_endpoints.len(), 1);
    assert_eq!(resp.node_endpoints[0].node_id, leader);
    for version in 3..=11 {
        let resp = call(&mut s, 3, &produce_req("t", 0, batch(&[b"a"]), -1), version).await;
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!(p.error_code, ErrorCode::NotLeaderOrFollower.code(), "v{version}");
        let hint = if version >= 10 { leader } else { -1 };
        assert_eq!(p.current_leader.leader_id, hint, "v{version}");
        let resp = call(&mut s, 4, &fetch_req("t", Uuid::ZERO, &[(0, 0)], 0, 0), version + 1).await;
        assert_eq!(resp.responses[0].partitions[0].error_code, ErrorCode::NotLeaderOrFollower.code());
    }
    for version in 12..=17 {
        let mut req = fetch_req("t", Uuid::ZERO, &[(0, 0)], 0, 0);
        req.topics[0].topic_id = topic_id(&cluster, &mut md, "t").await;
        let resp = call(&mut s, 5, &req, version).await;
        let p = &resp.responses[0].partitions[0];
        assert_eq!((p.error_code, p.current_leader.leader_id), (ErrorCode::NotLeaderOrFollower.code(), leader));
    }
    let mut l = connect_to(&cluster, leader).await;
    assert_eq!(produce(&mut l, "t", 0, batch(&[b"a"])).await, (0, 0));
    cluster.shutdown().await;
}

#[tokio::test]
async fn acks_zero_sends_no_response_and_closes_on_failure() {
    let cluster = Cluster::builder().start().await.unwrap();
    cluster.create_topic("t", 1, 1).await.unwrap();
    let mut s = connect(&cluster).await;
    send(&mut s, 1, &produce_req("t", 0, batch(&[b"fire"]), 0), 9).await;
    // The next response on the connection is the fetch's, and the record is there.
    let resp = call(&mut s, 2, &fetch_req("t", Uuid::ZERO, &[(0, 0)], 0, 0), 11).await;
    assert_eq!(values(&resp.responses[0].partitions[0].records), vec![(0, b"fire".to_vec())]);
    send(&mut s, 3, &produce_req("missing", 0, batch(&[b"x"]), 0), 9).await;
    assert!(closed(&mut s).await, "a failed acks=0 produce closes the connection");
    cluster.shutdown().await;
}

#[tokio::test]
async fn acks_all_honours_min_insync_replicas() {
    let cluster = Cluster::builder().brokers(2).start().await.unwrap();
    cluster.create_topic_with_configs("strict", 1, 2, &[("min.insync.replicas", "3")]).await.unwrap();
    let mut md = connect(&cluster).await;
    let resp = call(&mut md, 1, &MetadataRequest { topics: None, ..Default::default() }, 12).await;
    let leader = resp.topics[0].partitions[0].leader_id;
    let mut s = connect_to(&cluster, leader).await;
    assert_eq!(produce(&mut s, "strict", 0, batch(&[b"a"])).await.0, ErrorCode::NotEnoughReplicas.code());
    // acks=1 does not wait for the ISR.
    let resp = call(&mut s, 2, &produce_req("strict", 0, batch(&[b"a"]), 1), 9).await;
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
    cluster.shutdown().await;
}

async fn init_pid(s: &mut tokio::net::TcpStream) -> (i64, i16) {
    let req = InitProducerIdRequest {
        transactional_id: None,
        transaction_timeout_ms: -1,
        producer_id: -1,
        producer_epoch: -1,
        ..Default::default()
    };
    let resp = call(s, 50, &req, 4).await;
    assert_eq!(resp.error_code, 0);
    (resp.producer_id, resp.producer_epoch)
}

fn idem(values: &[&[u8]], pid: i64, epoch: i16, seq: i32) -> Bytes {
    batch_with(values, None, now_ms(), ProducerState { producer_id: pid, producer_epoch: epoch, base_sequence: seq })
}

#[tokio::test]
async fn idempotent_producer_retries_gaps_and_fencing() {
    let cluster = Cluster::builder().start().await.unwrap();
    cluster.create_topic("t", 1, 1).await.unwrap();
    let mut s = connect(&cluster).await;
    let (pid, epoch) = init_pid(&mut s).await;
    let (other, _) = init_pid(&mut s).await;
    assert_ne!(pid, other, "every InitProducerId without a transactional id gets a new id");

    assert_eq!(produce(&mut s, "t", 0, idem(&[b"a", b"b"], pid, epoch, 0)).await, (0, 0));
    assert_eq!(produce(&mut s, "t", 0, idem(&[b"c"], pid, epoch, 2)).await, (0, 2));
    // A retry of either batch is answered with its original offset and written once.
    assert_eq!(produce(&mut s, "t", 0, idem(&[b"a", b"b"], pid, epoch, 0)).await, (0, 0));
    assert_eq!(produce(&mut s, "t", 0, idem(&[b"c"], pid, epoch, 2)).await, (0, 2));
    // A gap is refused.
    assert_eq!(
        produce(&mut s, "t", 0, idem(&[b"d"], pid, epoch, 5)).await.0,
        ErrorCode::OutOfOrderSequenceNumber.code()
    );
    // A new epoch must start at 0; then the old epoch is fenced.
    assert_eq!(
        produce(&mut s, "t", 0, idem(&[b"d"], pid, epoch + 1, 3)).await.0,
        ErrorCode::OutOfOrderSequenceNumber.code()
    );
    assert_eq!(produce(&mut s, "t", 0, idem(&[b"d"], pid, epoch + 1, 0)).await, (0, 3));
    assert_eq!(produce(&mut s, "t", 0, idem(&[b"e"], pid, epoch, 3)).await.0, ErrorCode::InvalidProducerEpoch.code());
    // A producer the partition has never seen must start at 0.
    assert_eq!(produce(&mut s, "t", 0, idem(&[b"x"], other, 0, 7)).await.0, ErrorCode::UnknownProducerId.code());

    // Only the last five batches are remembered.
    for seq in 1..=6 {
        assert_eq!(produce(&mut s, "t", 0, idem(&[b"n"], pid, epoch + 1, seq)).await.0, 0);
    }
    assert_eq!(produce(&mut s, "t", 0, idem(&[b"n"], pid, epoch + 1, 2)).await.0, 0, "within the window: duplicate");
    assert_eq!(
        produce(&mut s, "t", 0, idem(&[b"n"], pid, epoch + 1, 1)).await.0,
        ErrorCode::OutOfOrderSequenceNumber.code(),
        "older than the window"
    );

    let resp = call(&mut s, 7, &fetch_req("t", Uuid::ZERO, &[(0, 0)], 0, 0), 11).await;
    let got: Vec<Vec<u8>> = values(&resp.responses[0].partitions[0].records).into_iter().map(|(_, v)| v).collect();
    let want: Vec<&[u8]> = vec![b"a", b"b", b"c", b"d", b"n", b"n", b"n", b"n", b"n", b"n"];
    assert_eq!(got, want);

    let req = DescribeProducersRequest {
        topics: vec![describe_producers_request::TopicRequest {
            name: "t".into(),
            partition_indexes: vec![0],
            ..Default::default()
        }],
        ..Default::default()
    };
    let resp = call(&mut s, 8, &req, 0).await;
    let active = &resp.topics[0].partitions[0].active_producers;
    assert_eq!(active.len(), 1);
    assert_eq!(
        (active[0].producer_id, active[0].producer_epoch, active[0].last_sequence),
        (pid, i32::from(epoch) + 1, 6)
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn log_append_time_topics_stamp_batches() {
    let cluster = Cluster::builder().start().await.unwrap();
    cluster.create_topic_with_configs("t", 1, 1, &[("message.timestamp.type", "LogAppendTime")]).await.unwrap();
    let mut s = connect(&cluster).await;
    let before = now_ms();
    let resp =
        call(&mut s, 1, &produce_req("t", 0, batch_with(&[b"a", b"b"], None, 5, ProducerState::NONE), -1), 9).await;
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0);
    assert!(p.log_append_time_ms >= before, "append time {} before {before}", p.log_append_time_ms);
    let resp = call(&mut s, 2, &fetch_req("t", Uuid::ZERO, &[(0, 0)], 0, 0), 11).await;
    let data = resp.responses[0].partitions[0].records.clone().unwrap();
    let Some(Ok(RecordSetEntry::Batch(b))) = RecordSetIter::new(data).next() else { panic!() };
    b.verify_crc().unwrap();
    assert_eq!(b.header().timestamp_type(), TimestampType::LogAppendTime);
    for r in b.records(DEFAULT_DECOMPRESS_LIMIT).unwrap().iter() {
        assert_eq!(r.unwrap().timestamp(), p.log_append_time_ms);
    }
    cluster.shutdown().await;
}

#[tokio::test]
async fn timestamps_outside_the_allowed_window_are_refused() {
    let cluster = Cluster::builder().start().await.unwrap();
    cluster.create_topic_with_configs("t", 1, 1, &[("message.timestamp.before.max.ms", "60000")]).await.unwrap();
    let mut s = connect(&cluster).await;
    let old = batch_with(&[b"a"], None, now_ms() - 3_600_000, ProducerState::NONE);
    assert_eq!(produce(&mut s, "t", 0, old).await.0, ErrorCode::InvalidTimestamp.code());
    assert_eq!(produce(&mut s, "t", 0, batch(&[b"a"])).await.0, 0);
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_waiting_fetch_returns_when_data_arrives() {
    let cluster = Cluster::builder().start().await.unwrap();
    cluster.create_topic("t", 1, 1).await.unwrap();
    let mut consumer = connect(&cluster).await;
    let mut producer = connect(&cluster).await;
    let started = Instant::now();
    send(&mut consumer, 1, &fetch_req("t", Uuid::ZERO, &[(0, 0)], 30_000, 1), 11).await;
    // The fetch is parked: a produce on another connection must release it.
    assert_eq!(produce(&mut producer, "t", 0, batch(&[b"wake"])).await, (0, 0));
    let resp = recv::<FetchRequest>(&mut consumer, 1, 11).await;
    assert_eq!(values(&resp.responses[0].partitions[0].records), vec![(0, b"wake".to_vec())]);
    assert!(started.elapsed() < Duration::from_secs(25), "answered on arrival, not at the deadline");

    // With nothing arriving, the fetch is answered empty at its deadline, not before.
    let started = Instant::now();
    let resp = call(&mut consumer, 2, &fetch_req("t", Uuid::ZERO, &[(0, 1)], 300, 1), 11).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(resp.responses[0].partitions[0].records.as_ref().unwrap().is_empty());
    cluster.shutdown().await;
}

/// A read that stops before a batch of 256 KiB or more (which is sent alone, from its own
/// buffer) has more data right behind it: a long-polling fetch must answer then, not wait for
/// `min_bytes` until its deadline.
#[tokio::test]
async fn a_fetch_stopped_by_a_large_batch_answers_without_waiting() {
    let cluster = Cluster::builder().start().await.unwrap();
    cluster.create_topic("t", 1, 1).await.unwrap();
    let mut s = connect(&cluster).await;
    assert_eq!(produce(&mut s, "t", 0, batch(&[b"small"])).await, (0, 0));
    let big = vec![b'x'; 1000];
    let values: Vec<&[u8]> = (0..300).map(|_| &big[..]).collect();
    let large = batch(&values);
    assert!(large.len() >= 256 * 1024);
    assert_eq!(produce(&mut s, "t", 0, large).await, (0, 1));

    let started = Instant::now();
    let resp = call(&mut s, 1, &fetch_req("t", Uuid::ZERO, &[(0, 0)], 30_000, 10 << 20), 11).await;
    assert_eq!(values_of(&resp), vec![(0, b"small".to_vec())], "the small batch, then the read stops");
    assert!(started.elapsed() < Duration::from_secs(20), "answered at once, not at the 30 s deadline");
    // At the end of the log the usual rule holds again: less than min_bytes waits.
    let resp = call(&mut s, 2, &fetch_req("t", Uuid::ZERO, &[(0, 1)], 200, 10 << 20), 11).await;
    let got = values_of(&resp);
    assert_eq!((got.len(), got[0].0, got[299].0), (300, 1, 300), "the large batch alone");
    cluster.shutdown().await;
}

fn values_of(resp: &FetchResponse) -> Vec<(i64, Vec<u8>)> {
    values(&resp.responses[0].partitions[0].records)
}

#[tokio::test]
async fn byte_limits_follow_kip_74() {
    let cluster = Cluster::builder().start().await.unwrap();
    cluster.create_topic("t", 2, 1).await.unwrap();
    let mut s = connect(&cluster).await;
    let big = vec![b'x'; 2000];
    for p in 0..2 {
        for _ in 0..3 {
            produce(&mut s, "t", p, batch(&[&big])).await;
        }
    }
    // Partition limit below one batch: the first partition still gets its first batch whole;
    // the second partition gets only a cut piece (the client skips it).
    let mut req = fetch_req("t", Uuid::ZERO, &[(0, 0), (1, 0)], 0, 0);
    for p in &mut req.topics[0].partitions {
        p.partition_max_bytes = 100;
    }
    let resp = call(&mut s, 1, &req, 11).await;
    let parts = &resp.responses[0].partitions;
    assert_eq!(values(&parts[0].records).len(), 1);
    assert!(parts[0].records.as_ref().unwrap().len() > 2000);
    let mut it = RecordSetIter::new(parts[1].records.clone().unwrap());
    assert!(it.next().is_none());
    assert!(it.has_partial_tail() || parts[1].records.as_ref().unwrap().is_empty());

    // Response limit: whole batches, then a cut piece of the next one.
    let mut req = fetch_req("t", Uuid::ZERO, &[(0, 0)], 0, 0);
    req.max_bytes = 5000;
    let resp = call(&mut s, 2, &req, 11).await;
    let data = resp.responses[0].partitions[0].records.clone().unwrap();
    assert_eq!(data.len(), 5000);
    let mut it = RecordSetIter::new(data);
    assert_eq!(it.by_ref().count(), 2);
    assert!(it.has_partial_tail());
    cluster.shutdown().await;
}

#[tokio::test]
async fn offsets_out_of_range_and_delete_records() {
    let cluster = Cluster::builder().start().await.unwrap();
    cluster.create_topic("t", 1, 1).await.unwrap();
    let mut s = connect(&cluster).await;
    for i in 0..4u8 {
        produce(&mut s, "t", 0, batch(&[&[i]])).await;
    }
    let resp = call(&mut s, 1, &fetch_req("t", Uuid::ZERO, &[(0, 5)], 0, 0), 11).await;
    assert_eq!(resp.responses[0].partitions[0].error_code, ErrorCode::OffsetOutOfRange.code());
    // The log end itself is a valid position (nothing yet).
    let resp = call(&mut s, 2, &fetch_req("t", Uuid::ZERO, &[(0, 4)], 0, 0), 11).await;
    assert_eq!(resp.responses[0].partitions[0].error_code, 0);

    let del = |offset: i64| DeleteRecordsRequest {
        topics: vec![delete_records_request::DeleteRecordsTopic {
            name: "t".into(),
            partitions: vec![delete_records_request::DeleteRecordsPartition {
                partition_index: 0,
                offset,
                ..Default::default()
            }],
            ..Default::default()
        }],
        timeout_ms: 1000,
        ..Default::default()
    };
    let resp = call(&mut s, 3, &del(2), 2).await;
    assert_eq!((resp.topics[0].partitions[0].error_code, resp.topics[0].partitions[0].low_watermark), (0, 2));
    let resp = call(&mut s, 4, &del(9), 0).await;
    assert_eq!(resp.topics[0].partitions[0].error_code, ErrorCode::OffsetOutOfRange.code());
    let resp = call(&mut s, 5, &fetch_req("t", Uuid::ZERO, &[(0, 1)], 0, 0), 11).await;
    assert_eq!(resp.responses[0].partitions[0].error_code, ErrorCode::OffsetOutOfRange.code());
    assert_eq!(resp.responses[0].partitions[0].log_start_offset, 2);
    let resp = call(&mut s, 6, &fetch_req("t", Uuid::ZERO, &[(0, 2)], 0, 0), 11).await;
    assert_eq!(values(&resp.responses[0].partitions[0].records), vec![(2, vec![2]), (3, vec![3])]);
    let resp = call(&mut s, 7, &del(-1), 1).await;
    assert_eq!(resp.topics[0].partitions[0].low_watermark, 4);
    cluster.shutdown().await;
}

fn list_req(timestamp: i64, isolation: i8) -> ListOffsetsRequest {
    ListOffsetsRequest {
        replica_id: -1,
        isolation_level: isolation,
        topics: vec![ListOffsetsTopic {
            name: "t".into(),
            partitions: vec![ListOffsetsPartition {
                partition_index: 0,
                current_leader_epoch: -1,
                timestamp,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[tokio::test]
async fn list_offsets_by_kind_and_time() {
    let cluster = Cluster::builder().start().await.unwrap();
    cluster.create_topic("t", 1, 1).await.unwrap();
    let mut s = connect(&cluster).await;
    let t0 = now_ms() - 10_000;
    // Offsets 0-2 at t0, t0+1, t0+2; offsets 3-4 at t0+100, t0+50 (out of order).
    produce(&mut s, "t", 0, batch_with(&[b"a", b"b", b"c"], None, t0, ProducerState::NONE)).await;
    let mut b = kafka_protocol::records::RecordBatchBuilder::new(Default::default());
    b.append(t0 + 100, None, Some(b"d"), &[]).unwrap();
    b.append(t0 + 50, None, Some(b"e"), &[]).unwrap();
    produce(&mut s, "t", 0, b.seal(ProducerState::NONE).unwrap()).await;

    let one = |r: ListOffsetsResponse| {
        let p = &r.topics[0].partitions[0];
        assert_eq!(p.error_code, 0);
        (p.offset, p.timestamp)
    };
    for version in 1..=10 {
        assert_eq!(one(call(&mut s, 1, &list_req(-1, 0), version).await), (5, -1), "latest v{version}");
        assert_eq!(one(call(&mut s, 2, &list_req(-2, 0), version).await), (0, -1), "earliest v{version}");
        assert_eq!(one(call(&mut s, 3, &list_req(t0 + 1, 0), version).await), (1, t0 + 1), "by time v{version}");
        assert_eq!(one(call(&mut s, 4, &list_req(t0 + 60, 0), version).await), (3, t0 + 100), "by time v{version}");
        assert_eq!(one(call(&mut s, 5, &list_req(t0 + 101, 0), version).await), (-1, -1), "after every record");
    }
    assert_eq!(one(call(&mut s, 6, &list_req(-3, 0), 7).await), (3, t0 + 100), "max timestamp");
    assert_eq!(one(call(&mut s, 7, &list_req(-4, 0), 8).await), (0, -1), "earliest local");
    assert_eq!(one(call(&mut s, 8, &list_req(-1, 1), 5).await), (5, -1), "latest committed");
    let resp = call(&mut s, 9, &list_req(-1, 0), 9).await;
    assert_eq!(resp.topics[0].partitions[0].leader_epoch, 0);
    cluster.shutdown().await;
}

#[tokio::test]
async fn offset_for_leader_epoch_reports_the_log_end_for_the_current_epoch() {
    let cluster = Cluster::builder().start().await.unwrap();
    cluster.create_topic("t", 1, 1).await.unwrap();
    let mut s = connect(&cluster).await;
    produce(&mut s, "t", 0, batch(&[b"a", b"b"])).await;
    for version in 0..=4 {
        let req = OffsetForLeaderEpochRequest {
            replica_id: -1,
            topics: vec![offset_for_leader_epoch_request::OffsetForLeaderTopic {
                topic: "t".into(),
                partitions: vec![
                    offset_for_leader_epoch_request::OffsetForLeaderPartition {
                        partition: 0,
                        current_leader_epoch: 0,
                        leader_epoch: 0,
                        ..Default::default()
                    },
                    offset_for_leader_epoch_request::OffsetForLeaderPartition {
                        partition: 0,
                        current_leader_epoch: -1,
                        leader_epoch: 5,
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        };
        let resp = call(&mut s, 1, &req, version).await;
        let p = &resp.topics[0].partitions;
        // v0 has no leader_epoch field.
        let epoch = if version == 0 { -1 } else { 0 };
        assert_eq!((p[0].error_code, p[0].leader_epoch, p[0].end_offset), (0, epoch, 2), "v{version}");
        assert_eq!((p[1].leader_epoch, p[1].end_offset), (-1, -1), "an epoch from the future, v{version}");
    }
    cluster.shutdown().await;
}

#[tokio::test]
async fn fetch_sessions_full_incremental_and_errors() {
    let cluster = Cluster::builder().start().await.unwrap();
    cluster.create_topic("t", 2, 1).await.unwrap();
    let mut s = connect(&cluster).await;
    produce(&mut s, "t", 0, batch(&[b"a"])).await;
    produce(&mut s, "t", 1, batch(&[b"b"])).await;

    // Epoch 0 opens a session; the full response lists every partition.
    let mut req = fetch_req("t", Uuid::ZERO, &[(0, 0), (1, 0)], 0, 0);
    req.session_epoch = 0;
    let resp = call(&mut s, 1, &req, 11).await;
    assert_ne!(resp.session_id, 0);
    assert_eq!(resp.responses[0].partitions.len(), 2);
    let session = resp.session_id;

    // Incremental, positions moved: nothing changed, so nothing is listed.
    let mut inc = fetch_req("t", Uuid::ZERO, &[(0, 1), (1, 1)], 0, 0);
    inc.session_id = session;
    inc.session_epoch = 1;
    let resp = call(&mut s, 2, &inc, 11).await;
    assert_eq!(resp.error_code, 0);
    assert_eq!(resp.session_id, session);
    assert!(resp.responses.is_empty(), "{resp:?}");

    // New data in partition 1 only: the next incremental fetch (no partitions named) lists it.
    produce(&mut s, "t", 1, batch(&[b"c"])).await;
    let mut inc = fetch_req("t", Uuid::ZERO, &[], 0, 0);
    inc.topics.clear();
    inc.session_id = session;
    inc.session_epoch = 2;
    let resp = call(&mut s, 3, &inc, 11).await;
    assert_eq!(resp.responses.len(), 1);
    assert_eq!(resp.responses[0].partitions.len(), 1);
    assert_eq!(resp.responses[0].partitions[0].partition_index, 1);
    assert_eq!(values(&resp.responses[0].partitions[0].records), vec![(1, b"c".to_vec())]);

    // A stale epoch and an unknown session are errors.
    let resp = call(&mut s, 4, &inc, 11).await;
    assert_eq!(resp.error_code, ErrorCode::InvalidFetchSessionEpoch.code());
    let mut unknown = inc.clone();
    unknown.session_id = session + 1000;
    let resp = call(&mut s, 5, &unknown, 11).await;
    assert_eq!(resp.error_code, ErrorCode::FetchSessionIdNotFound.code());

    // Forgetting partition 1, then data in both: only partition 0 comes back.
    produce(&mut s, "t", 0, batch(&[b"d"])).await;
    produce(&mut s, "t", 1, batch(&[b"e"])).await;
    let mut inc = fetch_req("t", Uuid::ZERO, &[], 0, 0);
    inc.topics.clear();
    inc.forgotten_topics_data = vec![ForgottenTopic { topic: "t".into(), partitions: vec![1], ..Default::default() }];
    inc.session_id = session;
    inc.session_epoch = 3;
    let resp = call(&mut s, 6, &inc, 11).await;
    let listed: Vec<i32> = resp.responses.iter().flat_map(|t| t.partitions.iter().map(|p| p.partition_index)).collect();
    assert_eq!(listed, vec![0]);

    // Epoch -1 closes the session: the next incremental use of it is unknown.
    let mut close = fetch_req("t", Uuid::ZERO, &[(0, 0)], 0, 0);
    close.session_id = session;
    close.session_epoch = -1;
    let resp = call(&mut s, 7, &close, 11).await;
    assert_eq!(resp.session_id, 0);
    inc.session_epoch = 4;
    let resp = call(&mut s, 8, &inc, 11).await;
    assert_eq!(resp.error_code, ErrorCode::FetchSessionIdNotFound.code());
    cluster.shutdown().await;
}

#[tokio::test]
async fn unknown_topic_ids_and_names_in_fetch() {
    let cluster = Cluster::builder().start().await.unwrap();
    let mut s = connect(&cluster).await;
    let resp = call(&mut s, 1, &fetch_req("", Uuid::from_u64_pair(1, 2), &[(0, 0)], 0, 0), 13).await;
    assert_eq!(resp.responses[0].partitions[0].error_code, ErrorCode::UnknownTopicId.code());
    let resp = call(&mut s, 2, &fetch_req("nope", Uuid::ZERO, &[(0, 0)], 0, 0), 12).await;
    assert_eq!(resp.responses[0].partitions[0].error_code, ErrorCode::UnknownTopicOrPartition.code());
    cluster.shutdown().await;
}

#[tokio::test]
async fn rack_aware_clients_are_sent_to_a_replica_in_their_rack() {
    let cluster = Cluster::builder()
        .brokers(3)
        .racks(["r1", "r2", "r3"])
        .broker_config("replica.selector.class", "org.apache.kafka.common.replica.RackAwareReplicaSelector")
        .start()
        .await
        .unwrap();
    cluster.create_topic("t", 1, 3).await.unwrap();
    let mut md = connect(&cluster).await;
    let resp = call(&mut md, 1, &MetadataRequest { topics: None, ..Default::default() }, 12).await;
    let leader = resp.topics[0].partitions[0].leader_id;
    assert_eq!(
        resp.brokers.iter().find(|b| b.node_id == leader).unwrap().rack.as_deref(),
        Some(format!("r{leader}").as_str())
    );
    let mut l = connect_to(&cluster, leader).await;
    produce(&mut l, "t", 0, batch(&[b"a"])).await;
    let other = (1..=3).find(|n| *n != leader).unwrap();
    let mut req = fetch_req("t", Uuid::ZERO, &[(0, 0)], 0, 0);
    req.rack_id = format!("r{other}");
    let resp = call(&mut l, 2, &req, 11).await;
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.preferred_read_replica, other);
    assert!(p.records.as_ref().unwrap().is_empty());
    // The follower serves the client that sends its rack.
    let mut f = connect_to(&cluster, other).await;
    let resp = call(&mut f, 3, &req, 11).await;
    assert_eq!(values(&resp.responses[0].partitions[0].records), vec![(0, b"a".to_vec())]);
    // Without a rack, the follower refuses (consumers read from leaders).
    req.rack_id.clear();
    let resp = call(&mut f, 4, &req, 11).await;
    assert_eq!(resp.responses[0].partitions[0].error_code, ErrorCode::NotLeaderOrFollower.code());
    cluster.shutdown().await;
}

#[tokio::test]
async fn retention_by_time_and_size_moves_the_log_start() {
    let cluster = Cluster::builder().start().await.unwrap();
    cluster.create_topic_with_configs("timed", 1, 1, &[("retention.ms", "60000")]).await.unwrap();
    cluster
        .create_topic_with_configs("sized", 1, 1, &[("retention.bytes", "300"), ("segment.bytes", "100")])
        .await
        .unwrap();
    let mut s = connect(&cluster).await;
    for i in 0..5u8 {
        produce(&mut s, "timed", 0, batch(&[&[i]])).await;
        produce(&mut s, "sized", 0, batch(&[&[i; 40]])).await;
    }
    cluster.run_housekeeping().await.unwrap();
    let start = |r: &FetchResponse| r.responses[0].partitions[0].log_start_offset;
    let resp = call(&mut s, 1, &fetch_req("timed", Uuid::ZERO, &[(0, 0)], 0, 0), 11).await;
    assert_eq!(start(&resp), 0, "nothing expired yet");
    let resp = call(&mut s, 2, &fetch_req("sized", Uuid::ZERO, &[(0, 4)], 0, 0), 11).await;
    let sized_start = start(&resp);
    assert!(sized_start > 0 && sized_start < 5, "size retention kept the newest segments: start {sized_start}");
    cluster.advance_clock(61_000).await.unwrap();
    cluster.run_housekeeping().await.unwrap();
    let resp = call(&mut s, 3, &fetch_req("timed", Uuid::ZERO, &[(0, 5)], 0, 0), 11).await;
    assert_eq!(start(&resp), 5, "every batch expired");
    assert_eq!(resp.responses[0].partitions[0].high_watermark, 5, "offsets are never reused");
    assert_eq!(produce(&mut s, "timed", 0, batch(&[b"new"])).await, (0, 5));
    cluster.shutdown().await;
}

#[tokio::test]
async fn compaction_keeps_the_newest_record_per_key() {
    let cluster = Cluster::builder().start().await.unwrap();
    cluster
        .create_topic_with_configs(
            "c",
            1,
            1,
            &[("cleanup.policy", "compact"), ("segment.bytes", "100"), ("delete.retention.ms", "1000")],
        )
        .await
        .unwrap();
    let mut s = connect(&cluster).await;
    let t = now_ms();
    let rec = |k: &[u8], v: Option<&[u8]>| {
        let mut b = kafka_protocol::records::RecordBatchBuilder::new(Default::default());
        b.append(t, Some(k), v, &[]).unwrap();
        b.seal(ProducerState::NONE).unwrap()
    };
    produce(&mut s, "c", 0, rec(b"k1", Some(b"one"))).await; // 0
    produce(&mut s, "c", 0, rec(b"k2", Some(b"two"))).await; // 1
    produce(&mut s, "c", 0, rec(b"k1", Some(b"uno"))).await; // 2
    produce(&mut s, "c", 0, rec(b"k2", None)).await; // 3: tombstone
    produce(&mut s, "c", 0, rec(b"k3", Some(b"three"))).await; // 4
    produce(&mut s, "c", 0, rec(b"k4", Some(b"active"))).await; // 5, stays in the active segment
    cluster.run_housekeeping().await.unwrap();
    let resp = call(&mut s, 1, &fetch_req("c", Uuid::ZERO, &[(0, 0)], 0, 0), 11).await;
    let offsets: Vec<i64> = values(&resp.responses[0].partitions[0].records).into_iter().map(|(o, _)| o).collect();
    assert_eq!(offsets, vec![2, 3, 4, 5], "older values of k1 and k2 are gone, the tombstone stays for now");
    cluster.advance_clock(2_000).await.unwrap();
    cluster.run_housekeeping().await.unwrap();
    let resp = call(&mut s, 2, &fetch_req("c", Uuid::ZERO, &[(0, 0)], 0, 0), 11).await;
    let offsets: Vec<i64> = values(&resp.responses[0].partitions[0].records).into_iter().map(|(o, _)| o).collect();
    assert_eq!(offsets, vec![2, 4, 5], "the tombstone is dropped after delete.retention.ms");
    assert_eq!(resp.responses[0].partitions[0].high_watermark, 6);
    cluster.shutdown().await;
}
