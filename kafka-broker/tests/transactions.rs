//! The transaction coordinator over real TCP with raw requests: placement (FindCoordinator key
//! type 1), InitProducerId with transactional ids (timeouts, KIP-360, fencing), the error
//! answers of AddPartitionsToTxn, AddOffsetsToTxn, EndTxn and transactional Produce per
//! version, timeouts (driven by `advance_clock`), read_committed fetches that stop at the last
//! stable offset with the aborted-transaction list, ListOffsets under read_committed,
//! TxnOffsetCommit (pending until the transaction ends, UNSTABLE_OFFSET_COMMIT),
//! DescribeTransactions, ListTransactions, DescribeProducers, markers waiting for a leader
//! (CONCURRENT_TRANSACTIONS), and DeleteRecords and topic deletion under open transactions.
//!
//! Waiting is never checked by sleeping: a parked fetch is known to wait once the request log
//! shows it, and what it waited for shows in its answer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use bytes::Bytes;
use common::*;
use kafka_broker::{Cluster, ErrorScope};
use kafka_protocol::compression::DEFAULT_DECOMPRESS_LIMIT;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::records::{BatchOptions, ProducerState, RecordBatchBuilder, RecordSetEntry, RecordSetIter};
use kafka_protocol::{ApiKey, ErrorCode, Request};
use tokio::net::TcpStream;

const FENCED: i16 = ErrorCode::ProducerFenced.code();
const BAD_EPOCH: i16 = ErrorCode::InvalidProducerEpoch.code();
const CONCURRENT: i16 = ErrorCode::ConcurrentTransactions.code();
const BAD_STATE: i16 = ErrorCode::InvalidTxnState.code();

/// One connection with its own correlation ids.
struct Client {
    s: TcpStream,
    corr: i32,
}

impl Client {
    async fn to(cluster: &Cluster, node: i32) -> Client {
        Client { s: connect_to(cluster, node).await, corr: 0 }
    }

    async fn call<R: Request>(&mut self, req: &R, version: i16) -> R::Response {
        let c = self.send(req, version).await;
        self.recv::<R>(c, version).await
    }

    async fn send<R: Request>(&mut self, req: &R, version: i16) -> i32 {
        self.corr += 1;
        send(&mut self.s, self.corr, req, version).await;
        self.corr
    }

    async fn recv<R: Request>(&mut self, corr: i32, version: i16) -> R::Response {
        recv::<R>(&mut self.s, corr, version).await
    }

    async fn init(&mut self, id: &str, timeout_ms: i32, version: i16) -> InitProducerIdResponse {
        let req = InitProducerIdRequest {
            transactional_id: Some(id.into()),
            transaction_timeout_ms: timeout_ms,
            producer_id: -1,
            producer_epoch: -1,
            ..Default::default()
        };
        self.call(&req, version).await
    }

    /// InitProducerId that must succeed (retrying CONCURRENT_TRANSACTIONS as clients do).
    async fn init_ok(&mut self, id: &str, timeout_ms: i32) -> (i64, i16) {
        for _ in 0..3 {
            let r = self.init(id, timeout_ms, 4).await;
            if r.error_code == CONCURRENT {
                continue;
            }
            assert_eq!(r.error_code, 0, "InitProducerId {id}");
            return (r.producer_id, r.producer_epoch);
        }
        panic!("InitProducerId {id} kept answering CONCURRENT_TRANSACTIONS");
    }

    async fn add(&mut self, id: &str, pid: i64, epoch: i16, parts: &[(&str, &[i32])], version: i16) -> Vec<i16> {
        let req = AddPartitionsToTxnRequest {
            v3_and_below_transactional_id: id.into(),
            v3_and_below_producer_id: pid,
            v3_and_below_producer_epoch: epoch,
            v3_and_below_topics: parts
                .iter()
                .map(|(t, ps)| AddPartitionsToTxnTopic {
                    name: (*t).into(),
                    partitions: ps.to_vec(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let r = self.call(&req, version).await;
        r.results_by_topic_v3_and_below
            .iter()
            .flat_map(|t| t.results_by_partition.iter().map(|p| p.partition_error_code))
            .collect()
    }

    async fn add_offsets(&mut self, id: &str, pid: i64, epoch: i16, group: &str, version: i16) -> i16 {
        let req = AddOffsetsToTxnRequest {
            transactional_id: id.into(),
            producer_id: pid,
            producer_epoch: epoch,
            group_id: group.into(),
            ..Default::default()
        };
        self.call(&req, version).await.error_code
    }

    async fn end(&mut self, id: &str, pid: i64, epoch: i16, commit: bool, version: i16) -> i16 {
        let req = EndTxnRequest {
            transactional_id: id.into(),
            producer_id: pid,
            producer_epoch: epoch,
            committed: commit,
            ..Default::default()
        };
        self.call(&req, version).await.error_code
    }

    /// Produces one batch; returns (error code, base offset, error message).
    async fn produce(
        &mut self,
        txn: Option<&str>,
        topic: &str,
        partition: i32,
        records: Bytes,
        version: i16,
    ) -> (i16, i64, Option<String>) {
        let req = ProduceRequest {
            transactional_id: txn.map(str::to_string),
            acks: -1,
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
        };
        let r = self.call(&req, version).await;
        let p = &r.responses[0].partition_responses[0];
        (p.error_code, p.base_offset, p.error_message.clone())
    }

    async fn fetch(&mut self, topic: &str, offset: i64, isolation: i8) -> PartitionData {
        let r = self.call(&fetch_req(topic, offset, isolation, 0, 0), 12).await;
        assert_eq!(r.error_code, 0);
        r.responses[0].partitions[0].clone()
    }

    async fn latest(&mut self, topic: &str, isolation: i8, version: i16) -> i64 {
        let req = ListOffsetsRequest {
            replica_id: -1,
            isolation_level: isolation,
            topics: vec![ListOffsetsTopic {
                name: topic.into(),
                partitions: vec![ListOffsetsPartition {
                    partition_index: 0,
                    current_leader_epoch: -1,
                    timestamp: -1,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let r = self.call(&req, version).await;
        assert_eq!(r.topics[0].partitions[0].error_code, 0);
        r.topics[0].partitions[0].offset
    }

    async fn describe(&mut self, id: &str) -> describe_transactions_response::TransactionState {
        let req = DescribeTransactionsRequest { transactional_ids: vec![id.into()], ..Default::default() };
        self.call(&req, 0).await.transaction_states.remove(0)
    }

    #[allow(clippy::too_many_arguments)]
    async fn txn_commit_offsets(
        &mut self,
        id: &str,
        pid: i64,
        epoch: i16,
        group: &str,
        generation: i32,
        member: &str,
        offsets: &[(&str, i32, i64)],
        version: i16,
    ) -> Vec<i16> {
        let req = TxnOffsetCommitRequest {
            transactional_id: id.into(),
            group_id: group.into(),
            producer_id: pid,
            producer_epoch: epoch,
            generation_id: generation,
            member_id: member.into(),
            group_instance_id: None,
            topics: offsets
                .iter()
                .map(|(t, p, o)| TxnOffsetCommitRequestTopic {
                    name: (*t).into(),
                    partitions: vec![TxnOffsetCommitRequestPartition {
                        partition_index: *p,
                        committed_offset: *o,
                        committed_leader_epoch: -1,
                        committed_metadata: Some("txn".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let r = self.call(&req, version).await;
        r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect()
    }

    /// OffsetFetch v7 of one partition: (offset, error code).
    async fn committed(&mut self, group: &str, topic: &str, partition: i32, require_stable: bool) -> (i64, i16) {
        let req = OffsetFetchRequest {
            group_id: group.into(),
            topics: Some(vec![OffsetFetchRequestTopic {
                name: topic.into(),
                partition_indexes: vec![partition],
                ..Default::default()
            }]),
            require_stable,
            ..Default::default()
        };
        let r = self.call(&req, 7).await;
        assert_eq!(r.error_code, 0);
        let p = &r.topics[0].partitions[0];
        (p.committed_offset, p.error_code)
    }
}

fn fetch_req(topic: &str, offset: i64, isolation: i8, max_wait_ms: i32, min_bytes: i32) -> FetchRequest {
    FetchRequest {
        replica_id: -1,
        max_wait_ms,
        min_bytes,
        max_bytes: 50 * 1024 * 1024,
        isolation_level: isolation,
        session_id: 0,
        session_epoch: -1,
        topics: vec![FetchTopic {
            topic: topic.into(),
            partitions: vec![FetchPartition {
                partition: 0,
                current_leader_epoch: -1,
                fetch_offset: offset,
                log_start_offset: -1,
                partition_max_bytes: 1024 * 1024,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A transactional batch of `values`.
fn txn_batch(values: &[&[u8]], pid: i64, epoch: i16, seq: i32) -> Bytes {
    let mut b = RecordBatchBuilder::new(BatchOptions { transactional: true, ..BatchOptions::default() });
    for (i, v) in values.iter().enumerate() {
        b.append(now_ms() + i as i64, None, Some(v), &[]).unwrap();
    }
    b.seal(ProducerState { producer_id: pid, producer_epoch: epoch, base_sequence: seq }).unwrap()
}

/// The data records of a fetched partition: (offset, value, producer id); control batches
/// (markers) as (offset, "COMMIT"/"ABORT", producer id).
fn records(data: &PartitionData) -> Vec<(i64, String, i64)> {
    let mut out = Vec::new();
    for e in RecordSetIter::new(data.records.clone().unwrap_or_default()) {
        let RecordSetEntry::Batch(b) = e.unwrap() else { panic!("legacy entry") };
        b.verify_crc().unwrap();
        let h = *b.header();
        for r in b.records(DEFAULT_DECOMPRESS_LIMIT).unwrap().iter() {
            let r = r.unwrap();
            let value = if h.is_control() {
                let kind = kafka_protocol::records::ControlRecord::from_record(&r).unwrap().kind;
                format!("{kind:?}").to_uppercase()
            } else {
                String::from_utf8(r.value().unwrap_or_default().to_vec()).unwrap()
            };
            out.push((r.offset(), value, h.producer_id));
        }
    }
    out
}

fn aborted(data: &PartitionData) -> Option<Vec<(i64, i64)>> {
    data.aborted_transactions.as_ref().map(|a| a.iter().map(|t| (t.producer_id, t.first_offset)).collect())
}

fn offsets(data: &PartitionData) -> Vec<i64> {
    records(data).into_iter().map(|(o, _, _)| o).collect()
}

#[tokio::test]
async fn transaction_coordinators_are_placed_by_hash_and_others_refuse() {
    let cluster = Cluster::builder().brokers(3).start().await.unwrap();
    cluster.create_topic("t", 1, 3).await.unwrap();
    let mut c1 = Client::to(&cluster, 1).await;
    let mut nodes = std::collections::BTreeSet::new();
    let ids: Vec<String> = (0..30).map(|i| format!("txn-{i}")).collect();
    let batched =
        c1.call(&FindCoordinatorRequest { key_type: 1, coordinator_keys: ids.clone(), ..Default::default() }, 4).await;
    for (id, b) in ids.iter().zip(&batched.coordinators) {
        let single = c1.call(&FindCoordinatorRequest { key: id.clone(), key_type: 1, ..Default::default() }, 1).await;
        assert_eq!((single.error_code, b.error_code), (0, 0));
        assert_eq!(single.node_id, b.node_id, "{id}: one placement for every version");
        assert_eq!(cluster.transaction_coordinator(id).await.unwrap(), single.node_id);
        nodes.insert(single.node_id);
    }
    assert_eq!(nodes.len(), 3, "transactional ids spread over every broker");

    let id = "txn-0";
    let coord = cluster.transaction_coordinator(id).await.unwrap();
    let other = (1..=3).find(|n| *n != coord).unwrap();
    let mut wrong = Client::to(&cluster, other).await;
    let mut right = Client::to(&cluster, coord).await;
    assert_eq!(wrong.init(id, 60_000, 4).await.error_code, ErrorCode::NotCoordinator.code());
    let (pid, epoch) = right.init_ok(id, 60_000).await;
    let not_coord = ErrorCode::NotCoordinator.code();
    assert_eq!(wrong.add(id, pid, epoch, &[("t", &[0])], 3).await, vec![not_coord]);
    assert_eq!(wrong.add_offsets(id, pid, epoch, "g", 3).await, not_coord);
    assert_eq!(wrong.end(id, pid, epoch, true, 3).await, not_coord);
    assert_eq!(wrong.describe(id).await.error_code, not_coord);
    // The coordinator moves: the old one refuses, the new one carries on with the same state.
    let moved = cluster.move_transaction_coordinator(id).await.unwrap();
    assert_ne!(moved, coord);
    assert_eq!(right.add(id, pid, epoch, &[("t", &[0])], 3).await, vec![not_coord]);
    let mut new = Client::to(&cluster, moved).await;
    assert_eq!(new.add(id, pid, epoch, &[("t", &[0])], 3).await, vec![0]);
    assert_eq!(new.end(id, pid, epoch, true, 3).await, 0);
    assert_eq!(new.init_ok(id, 60_000).await, (pid, epoch + 1));
    cluster.shutdown().await;
}

#[tokio::test]
async fn init_producer_id_validates_timeouts_and_bumps_epochs() {
    let cluster = Cluster::builder().broker_config("transaction.max.timeout.ms", "60000").start().await.unwrap();
    let mut c = Client::to(&cluster, 1).await;
    let invalid_timeout = ErrorCode::InvalidTransactionTimeout.code();
    assert_eq!(c.init("a", 60_001, 4).await.error_code, invalid_timeout);
    assert_eq!(c.init("a", 0, 0).await.error_code, invalid_timeout);
    assert_eq!(c.init("", 1000, 4).await.error_code, ErrorCode::InvalidRequest.code());
    let half = InitProducerIdRequest {
        transactional_id: Some("a".into()),
        transaction_timeout_ms: 1000,
        producer_id: 5,
        producer_epoch: -1,
        ..Default::default()
    };
    assert_eq!(c.call(&half, 3).await.error_code, ErrorCode::InvalidRequest.code());
    let r = c.init("a", 60_000, 0).await;
    assert_eq!((r.error_code, r.producer_epoch), (0, 0));
    let pid = r.producer_id;
    let r = c.init("a", 60_000, 2).await;
    assert_eq!((r.error_code, r.producer_id, r.producer_epoch), (0, pid, 1), "same id, next epoch");
    // KIP-360 (v3+): the producer's own id and epoch bump it; a retry gets the same answer.
    let kip360 = |id: i64, epoch: i16| InitProducerIdRequest {
        transactional_id: Some("a".into()),
        transaction_timeout_ms: 60_000,
        producer_id: id,
        producer_epoch: epoch,
        ..Default::default()
    };
    let r = c.call(&kip360(pid, 1), 3).await;
    assert_eq!((r.error_code, r.producer_id, r.producer_epoch), (0, pid, 2));
    let r = c.call(&kip360(pid, 1), 4).await;
    assert_eq!((r.error_code, r.producer_epoch), (0, 2), "retry");
    assert_eq!(c.call(&kip360(pid + 7, 0), 3).await.error_code, BAD_EPOCH, "v3 does not know PRODUCER_FENCED");
    assert_eq!(c.call(&kip360(pid + 7, 0), 4).await.error_code, FENCED);
    // Idempotent producers (no transactional id) are untouched: a new id every time.
    let idem =
        InitProducerIdRequest { transactional_id: None, producer_id: -1, producer_epoch: -1, ..Default::default() };
    let r = c.call(&idem, 4).await;
    assert_eq!(r.producer_epoch, 0);
    assert_ne!(r.producer_id, pid);
    // Injected errors take the InitProducerId layout.
    cluster
        .push_errors(ApiKey::InitProducerId, ErrorScope::Cluster, [ErrorCode::CoordinatorLoadInProgress])
        .await
        .unwrap();
    let r = c.init("a", 60_000, 4).await;
    assert_eq!((r.error_code, r.producer_id), (ErrorCode::CoordinatorLoadInProgress.code(), -1));
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_second_producer_fences_the_first_and_aborts_its_transaction() {
    let cluster = Cluster::builder().start().await.unwrap();
    cluster.create_topic("t", 1, 1).await.unwrap();
    let mut c = Client::to(&cluster, 1).await;
    let (pid, epoch) = c.init_ok("app", 60_000).await;
    assert_eq!(c.add("app", pid, epoch, &[("t", &[0])], 3).await, vec![0]);
    let (code, base, _) = c.produce(Some("app"), "t", 0, txn_batch(&[b"z1", b"z2"], pid, epoch, 0), 9).await;
    assert_eq!((code, base), (0, 0));

    // The new instance: its first InitProducerId aborts the open transaction.
    let mut zombie_killer = Client::to(&cluster, 1).await;
    assert_eq!(zombie_killer.init("app", 60_000, 4).await.error_code, CONCURRENT, "retry while the abort completes");
    let d = c.describe("app").await;
    assert_eq!((d.transaction_state.as_str(), d.producer_epoch), ("CompleteAbort", epoch + 1));
    let (pid2, epoch2) = zombie_killer.init_ok("app", 60_000).await;
    assert_eq!((pid2, epoch2), (pid, epoch + 2));

    // The zombie is fenced everywhere, with each version's code.
    let (code, _, _) = c.produce(Some("app"), "t", 0, txn_batch(&[b"z3"], pid, epoch, 2), 9).await;
    assert_eq!(code, BAD_EPOCH, "produce: INVALID_PRODUCER_EPOCH (the abort marker carried a newer epoch)");
    assert_eq!(c.end("app", pid, epoch, true, 1).await, BAD_EPOCH);
    assert_eq!(c.end("app", pid, epoch, true, 2).await, FENCED);
    assert_eq!(c.add("app", pid, epoch, &[("t", &[0])], 1).await, vec![BAD_EPOCH]);
    assert_eq!(c.add("app", pid, epoch, &[("t", &[0])], 2).await, vec![FENCED]);
    assert_eq!(c.add_offsets("app", pid, epoch, "g", 1).await, BAD_EPOCH);
    assert_eq!(c.add_offsets("app", pid, epoch, "g", 3).await, FENCED);

    // Its records were aborted: read_committed readers skip them by the aborted list.
    let data = c.fetch("t", 0, 1).await;
    assert_eq!(
        records(&data),
        vec![(0, "z1".into(), pid), (1, "z2".into(), pid), (2, "ABORT".into(), pid)],
        "the batch and the marker are returned; the client drops the aborted batch"
    );
    assert_eq!(aborted(&data), Some(vec![(pid, 0)]));
    assert_eq!((data.last_stable_offset, data.high_watermark), (3, 3));

    // The new instance's transaction commits.
    assert_eq!(zombie_killer.add("app", pid2, epoch2, &[("t", &[0])], 3).await, vec![0]);
    let (code, base, _) = zombie_killer.produce(Some("app"), "t", 0, txn_batch(&[b"ok"], pid2, epoch2, 0), 11).await;
    assert_eq!((code, base), (0, 3));
    assert_eq!(zombie_killer.end("app", pid2, epoch2, true, 3).await, 0);
    let data = c.fetch("t", 3, 1).await;
    assert_eq!(records(&data), vec![(3, "ok".into(), pid), (4, "COMMIT".into(), pid)]);
    assert_eq!(aborted(&data), Some(vec![]));
    cluster.shutdown().await;
}

#[tokio::test]
async fn produce_to_a_partition_not_in_the_transaction_is_refused() {
    let cluster = Cluster::builder().start().await.unwrap();
    cluster.create_topic("t", 2, 1).await.unwrap();
    let mut c = Client::to(&cluster, 1).await;
    let (pid, epoch) = c.init_ok("p", 60_000).await;
    assert_eq!(c.add("p", pid, epoch, &[("t", &[0])], 3).await, vec![0]);
    let (code, _, message) = c.produce(Some("p"), "t", 1, txn_batch(&[b"x"], pid, epoch, 0), 10).await;
    assert_eq!(code, BAD_STATE, "before v11: INVALID_TXN_STATE");
    assert_eq!(message.as_deref(), Some("Partition was not added to the transaction"));
    let (code, _, _) = c.produce(Some("p"), "t", 1, txn_batch(&[b"x"], pid, epoch, 0), 11).await;
    assert_eq!(code, ErrorCode::TransactionAbortable.code(), "v11: TRANSACTION_ABORTABLE");
    let (code, _, _) = c.produce(None, "t", 0, txn_batch(&[b"x"], pid, epoch, 0), 9).await;
    assert_eq!(code, ErrorCode::TransactionalIdAuthorizationFailed.code(), "transactional records need the id");
    let (code, _, _) = c.produce(Some("nobody"), "t", 0, txn_batch(&[b"x"], pid, epoch, 0), 9).await;
    assert_eq!(code, ErrorCode::InvalidProducerIdMapping.code());
    assert_eq!(cluster.partition_stats("t", 1).await.unwrap().high_watermark, 0, "nothing written");
    // In the transaction: accepted; then a plain batch of the same producer is not.
    let (code, _, _) = c.produce(Some("p"), "t", 0, txn_batch(&[b"x"], pid, epoch, 0), 9).await;
    assert_eq!(code, 0);
    let plain = batch_with(
        &[b"y"],
        None,
        now_ms(),
        ProducerState { producer_id: pid, producer_epoch: epoch, base_sequence: 1 },
    );
    let (code, _, _) = c.produce(Some("p"), "t", 0, plain, 9).await;
    assert_eq!(code, BAD_STATE, "a non-transactional write inside an open transaction");
    // Retries of the transactional batch are still duplicates.
    let (code, base, _) = c.produce(Some("p"), "t", 0, txn_batch(&[b"x"], pid, epoch, 0), 9).await;
    assert_eq!((code, base), (0, 0));
    cluster.shutdown().await;
}

#[tokio::test]
async fn end_txn_and_add_partitions_errors() {
    let cluster = Cluster::builder().start().await.unwrap();
    cluster.create_topic("t", 1, 1).await.unwrap();
    let mut c = Client::to(&cluster, 1).await;
    assert_eq!(c.end("ghost", 1, 0, true, 3).await, ErrorCode::InvalidProducerIdMapping.code());
    assert_eq!(c.end("", 1, 0, true, 3).await, ErrorCode::InvalidRequest.code());
    let (pid, epoch) = c.init_ok("e", 60_000).await;
    assert_eq!(c.end("e", pid, epoch, true, 3).await, BAD_STATE, "EndTxn without a transaction");
    assert_eq!(c.end("e", pid, epoch, false, 0).await, BAD_STATE);
    assert_eq!(c.end("e", pid + 1, epoch, true, 3).await, ErrorCode::InvalidProducerIdMapping.code());
    assert_eq!(
        c.add("e", pid, epoch, &[("t", &[0, 3]), ("nope", &[0])], 3).await,
        vec![
            ErrorCode::OperationNotAttempted.code(),
            ErrorCode::UnknownTopicOrPartition.code(),
            ErrorCode::UnknownTopicOrPartition.code()
        ],
        "one unknown partition fails the whole request"
    );
    assert_eq!(c.describe("e").await.transaction_state, "Empty");
    assert_eq!(c.add("e", pid, epoch, &[("t", &[0])], 3).await, vec![0]);
    assert_eq!(c.end("e", pid, epoch + 1, true, 0).await, BAD_EPOCH, "wrong epoch, v0");
    assert_eq!(c.end("e", pid, epoch + 1, true, 3).await, FENCED, "wrong epoch, v3");
    assert_eq!(c.end("e", pid, epoch - 1, true, 3).await, FENCED);
    assert_eq!(c.end("e", pid, epoch, true, 3).await, 0);
    assert_eq!(c.end("e", pid, epoch, true, 3).await, 0, "a retried commit succeeds");
    assert_eq!(c.end("e", pid, epoch, false, 3).await, BAD_STATE, "abort after commit");
    // Injected errors take each API's layout.
    cluster.push_errors(ApiKey::EndTxn, ErrorScope::Cluster, [ErrorCode::ConcurrentTransactions]).await.unwrap();
    assert_eq!(c.end("e", pid, epoch, true, 3).await, CONCURRENT);
    cluster.push_errors(ApiKey::AddPartitionsToTxn, ErrorScope::Cluster, [ErrorCode::NotCoordinator]).await.unwrap();
    assert_eq!(c.add("e", pid, epoch, &[("t", &[0])], 3).await, vec![ErrorCode::NotCoordinator.code()]);
    cluster.shutdown().await;
}

#[tokio::test]
async fn timed_out_transactions_are_aborted_and_their_producer_fenced() {
    let cluster = Cluster::builder().start().await.unwrap();
    cluster.create_topic("t", 1, 1).await.unwrap();
    let mut c = Client::to(&cluster, 1).await;
    let (pid, epoch) = c.init_ok("slow", 10_000).await;
    assert_eq!(c.add("slow", pid, epoch, &[("t", &[0])], 3).await, vec![0]);
    c.produce(Some("slow"), "t", 0, txn_batch(&[b"a", b"b"], pid, epoch, 0), 9).await;

    // A read_committed consumer waits: nothing is stable yet.
    let mut reader = Client::to(&cluster, 1).await;
    let waiting = reader.send(&fetch_req("t", 0, 1, 120_000, 1), 12).await;
    loop {
        let log = cluster.request_log().await.unwrap();
        if log.iter().any(|r| r.api_key == ApiKey::Fetch) {
            break;
        }
        tokio::task::yield_now().await;
    }
    cluster.advance_clock(9_000).await.unwrap();
    assert_eq!(c.describe("slow").await.transaction_state, "Ongoing", "not yet");
    cluster.advance_clock(1_001).await.unwrap();
    // The abort woke the waiting fetch up (long before its two minutes).
    let woken = tokio::time::timeout(std::time::Duration::from_secs(20), reader.recv::<FetchRequest>(waiting, 12));
    let r = woken.await.expect("the abort answers the waiting fetch");
    let data = &r.responses[0].partitions[0];
    assert_eq!(offsets(data), vec![0, 1, 2]);
    assert_eq!(aborted(data), Some(vec![(pid, 0)]));
    assert_eq!(data.last_stable_offset, 3);
    let d = c.describe("slow").await;
    assert_eq!((d.transaction_state.as_str(), d.producer_epoch), ("CompleteAbort", epoch + 1));
    // The producer that let it time out is fenced.
    assert_eq!(c.end("slow", pid, epoch, true, 3).await, FENCED);
    assert_eq!(c.end("slow", pid, epoch, true, 1).await, BAD_EPOCH);
    let (code, _, _) = c.produce(Some("slow"), "t", 0, txn_batch(&[b"c"], pid, epoch, 2), 9).await;
    assert_eq!(code, BAD_EPOCH);
    cluster.shutdown().await;
}

#[tokio::test]
async fn read_committed_fetches_stop_at_the_last_stable_offset() {
    let cluster = Cluster::builder().start().await.unwrap();
    cluster.create_topic("t", 1, 1).await.unwrap();
    let mut c = Client::to(&cluster, 1).await;
    c.produce(None, "t", 0, batch(&[b"p0", b"p1"]), 9).await; // 0-1
    let (a, ea) = c.init_ok("a", 60_000).await;
    let (b, eb) = c.init_ok("b", 60_000).await;
    c.add("a", a, ea, &[("t", &[0])], 3).await;
    c.add("b", b, eb, &[("t", &[0])], 3).await;
    c.produce(Some("a"), "t", 0, txn_batch(&[b"a2", b"a3"], a, ea, 0), 9).await; // 2-3
    c.produce(Some("b"), "t", 0, txn_batch(&[b"b4", b"b5"], b, eb, 0), 9).await; // 4-5
    assert_eq!(c.end("a", a, ea, false, 3).await, 0); // ABORT marker at 6
    c.produce(None, "t", 0, batch(&[b"p7"]), 9).await; // 7

    // read_committed: up to b's open transaction at 4, with a's aborted transaction.
    let data = c.fetch("t", 0, 1).await;
    assert_eq!(offsets(&data), vec![0, 1, 2, 3]);
    assert_eq!(aborted(&data), Some(vec![(a, 2)]));
    assert_eq!((data.last_stable_offset, data.high_watermark), (4, 8));
    // read_uncommitted: everything, no aborted list, the same last stable offset.
    let data = c.fetch("t", 0, 0).await;
    assert_eq!(offsets(&data), vec![0, 1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(aborted(&data), None);
    assert_eq!((data.last_stable_offset, data.high_watermark), (4, 8));
    // ListOffsets latest: the LSO under read_committed.
    for v in 2..=10 {
        assert_eq!(c.latest("t", 1, v).await, 4, "read_committed v{v}");
        assert_eq!(c.latest("t", 0, v).await, 8, "read_uncommitted v{v}");
    }
    assert_eq!(cluster.partition_stats("t", 0).await.unwrap().last_stable_offset, 4);
    // DescribeProducers: b's open transaction starts at 4.
    let req = DescribeProducersRequest {
        topics: vec![TopicRequest { name: "t".into(), partition_indexes: vec![0], ..Default::default() }],
        ..Default::default()
    };
    let r = c.call(&req, 0).await;
    let starts: Vec<(i64, i64, i32)> = r.topics[0].partitions[0]
        .active_producers
        .iter()
        .map(|p| (p.producer_id, p.current_txn_start_offset, p.coordinator_epoch))
        .collect();
    assert_eq!(starts, vec![(a, -1, 0), (b, 4, -1)], "a's marker closed its transaction; b's is open at 4");

    // b commits (marker at 8): everything is stable.
    assert_eq!(c.end("b", b, eb, true, 3).await, 0);
    let data = c.fetch("t", 4, 1).await;
    assert_eq!(offsets(&data), vec![4, 5, 6, 7, 8]);
    assert_eq!(aborted(&data), Some(vec![(a, 2)]), "a's transaction ends (6) inside the range");
    assert_eq!((data.last_stable_offset, data.high_watermark), (9, 9));
    let data = c.fetch("t", 7, 1).await;
    assert_eq!(aborted(&data), Some(vec![]), "a's marker is before 7");
    assert_eq!(c.latest("t", 1, 5).await, 9);
    cluster.shutdown().await;
}

#[tokio::test]
async fn transactional_offsets_commit_and_abort_with_their_transaction() {
    let cluster = Cluster::builder().start().await.unwrap();
    cluster.create_topic("t", 1, 1).await.unwrap();
    let mut c = Client::to(&cluster, 1).await;
    // A plain commit first: offset 5.
    let commit = OffsetCommitRequest {
        group_id: "g".into(),
        generation_id_or_member_epoch: -1,
        topics: vec![OffsetCommitRequestTopic {
            name: "t".into(),
            partitions: vec![OffsetCommitRequestPartition {
                partition_index: 0,
                committed_offset: 5,
                committed_leader_epoch: -1,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    assert_eq!(c.call(&commit, 8).await.topics[0].partitions[0].error_code, 0);
    let (pid, epoch) = c.init_ok("tx", 60_000).await;
    let offsets = [("t", 0, 10)];
    // Without AddOffsetsToTxn the group's offsets partition is not in the transaction.
    assert_eq!(c.txn_commit_offsets("tx", pid, epoch, "g", -1, "", &offsets, 3).await, vec![BAD_STATE]);
    assert_eq!(
        c.txn_commit_offsets("tx", pid, epoch, "g", -1, "", &offsets, 4).await,
        vec![ErrorCode::TransactionAbortable.code()]
    );
    assert_eq!(c.add_offsets("tx", pid, epoch, "g", 3).await, 0);
    assert_eq!(
        c.txn_commit_offsets("tx", pid, epoch, "g", -1, "", &[("t", 0, 10), ("nope", 0, 1)], 3).await,
        vec![0, ErrorCode::UnknownTopicOrPartition.code()]
    );
    assert_eq!(
        c.txn_commit_offsets("tx", pid, epoch, "g", 4, "stranger", &offsets, 3).await,
        vec![ErrorCode::UnknownMemberId.code()],
        "v3 checks the member"
    );
    assert_eq!(c.txn_commit_offsets("tx", pid, epoch + 1, "g", -1, "", &offsets, 3).await, vec![BAD_EPOCH]);
    // Pending: invisible, and unstable for require_stable.
    assert_eq!(c.committed("g", "t", 0, false).await, (5, 0));
    assert_eq!(c.committed("g", "t", 0, true).await, (-1, ErrorCode::UnstableOffsetCommit.code()));
    assert_eq!(c.end("tx", pid, epoch, true, 3).await, 0);
    assert_eq!(c.committed("g", "t", 0, true).await, (10, 0), "materialised on commit");

    // The next transaction aborts: its offset is discarded.
    assert_eq!(c.add_offsets("tx", pid, epoch, "g", 3).await, 0);
    assert_eq!(c.txn_commit_offsets("tx", pid, epoch, "g", -1, "", &[("t", 0, 20)], 2).await, vec![0]);
    assert_eq!(c.committed("g", "t", 0, true).await.1, ErrorCode::UnstableOffsetCommit.code());
    assert_eq!(c.end("tx", pid, epoch, false, 3).await, 0);
    assert_eq!(c.committed("g", "t", 0, true).await, (10, 0), "discarded on abort");
    // A fence aborts pending offsets too.
    assert_eq!(c.add_offsets("tx", pid, epoch, "g", 3).await, 0);
    assert_eq!(c.txn_commit_offsets("tx", pid, epoch, "g", -1, "", &[("t", 0, 30)], 0).await, vec![0]);
    assert_eq!(c.init("tx", 60_000, 4).await.error_code, CONCURRENT);
    assert_eq!(c.committed("g", "t", 0, true).await, (10, 0));
    assert_eq!(c.txn_commit_offsets("tx", pid, epoch, "g", -1, "", &[("t", 0, 40)], 3).await, vec![BAD_EPOCH]);
    cluster.shutdown().await;
}

#[tokio::test]
async fn markers_wait_for_a_partition_leader() {
    let cluster = Cluster::builder().start().await.unwrap();
    cluster.create_topic("t", 2, 1).await.unwrap();
    let mut c = Client::to(&cluster, 1).await;
    let (pid, epoch) = c.init_ok("w", 60_000).await;
    c.add("w", pid, epoch, &[("t", &[0, 1])], 3).await;
    c.produce(Some("w"), "t", 0, txn_batch(&[b"x"], pid, epoch, 0), 9).await;
    c.produce(Some("w"), "t", 1, txn_batch(&[b"y"], pid, epoch, 0), 9).await;
    cluster.set_leader("t", 1, None).await.unwrap();
    assert_eq!(c.end("w", pid, epoch, true, 3).await, 0, "answered once PrepareCommit is decided");
    let d = c.describe("w").await;
    assert_eq!(d.transaction_state, "PrepareCommit");
    let waiting: Vec<(String, Vec<i32>)> = d.topics.iter().map(|t| (t.topic.clone(), t.partitions.clone())).collect();
    assert_eq!(waiting, vec![("t".to_string(), vec![1])], "only the partition without its marker");
    assert_eq!(c.end("w", pid, epoch, true, 3).await, CONCURRENT);
    assert_eq!(c.end("w", pid, epoch, false, 3).await, BAD_STATE);
    assert_eq!(c.add("w", pid, epoch, &[("t", &[0])], 3).await, vec![CONCURRENT]);
    assert_eq!(c.init("w", 60_000, 4).await.error_code, CONCURRENT);
    let list =
        c.call(&ListTransactionsRequest { state_filters: vec!["PrepareCommit".into()], ..Default::default() }, 0).await;
    assert_eq!(list.transaction_states.len(), 1);
    let stats = cluster.partition_stats("t", 0).await.unwrap();
    assert_eq!((stats.last_stable_offset, stats.high_watermark), (2, 2), "t-0 has its marker");
    assert_eq!(cluster.partition_stats("t", 1).await.unwrap().last_stable_offset, 0);
    cluster.set_leader("t", 1, Some(1)).await.unwrap();
    assert_eq!(c.describe("w").await.transaction_state, "CompleteCommit");
    let stats = cluster.partition_stats("t", 1).await.unwrap();
    assert_eq!((stats.last_stable_offset, stats.high_watermark), (2, 2));
    assert_eq!(c.init_ok("w", 60_000).await, (pid, epoch + 1));
    cluster.shutdown().await;
}

#[tokio::test]
async fn describe_and_list_transactions() {
    let cluster = Cluster::builder().start().await.unwrap();
    cluster.create_topic("t", 2, 1).await.unwrap();
    let mut c = Client::to(&cluster, 1).await;
    let (a, ea) = c.init_ok("alpha", 20_000).await;
    let (b, eb) = c.init_ok("beta", 60_000).await;
    c.add("alpha", a, ea, &[("t", &[1, 0])], 3).await;
    c.add_offsets("alpha", a, ea, "grp", 3).await;
    c.add("beta", b, eb, &[("t", &[0])], 3).await;
    c.end("beta", b, eb, true, 3).await;
    let d = c.describe("alpha").await;
    assert_eq!((d.error_code, d.transaction_state.as_str(), d.transaction_timeout_ms), (0, "Ongoing", 20_000));
    assert_eq!((d.producer_id, d.producer_epoch), (a, ea));
    assert!((now_ms() - d.transaction_start_time_ms).abs() < 60_000);
    let topics: Vec<(String, Vec<i32>)> = d.topics.iter().map(|t| (t.topic.clone(), t.partitions.clone())).collect();
    assert_eq!(topics.len(), 2);
    assert_eq!(topics[0].0, "__consumer_offsets", "AddOffsetsToTxn added the group's offsets partition");
    assert_eq!(topics[1], ("t".to_string(), vec![0, 1]));
    let beta = c.describe("beta").await;
    assert_eq!((beta.transaction_state.as_str(), beta.topics.len()), ("CompleteCommit", 0));
    assert_eq!(c.describe("nobody").await.error_code, ErrorCode::TransactionalIdNotFound.code());

    let list = |states: Vec<&str>, pids: Vec<i64>, duration: i64| ListTransactionsRequest {
        state_filters: states.into_iter().map(String::from).collect(),
        producer_id_filters: pids,
        duration_filter: duration,
        ..Default::default()
    };
    let r = c.call(&list(vec![], vec![], -1), 0).await;
    let all: Vec<(String, i64, String)> = r
        .transaction_states
        .iter()
        .map(|t| (t.transactional_id.clone(), t.producer_id, t.transaction_state.clone()))
        .collect();
    assert_eq!(all, vec![("alpha".into(), a, "Ongoing".into()), ("beta".into(), b, "CompleteCommit".into())]);
    let r = c.call(&list(vec!["Ongoing", "Sleeping"], vec![], -1), 0).await;
    assert_eq!(r.transaction_states.len(), 1);
    assert_eq!(r.unknown_state_filters, vec!["Sleeping".to_string()]);
    let r = c.call(&list(vec![], vec![b], -1), 0).await;
    assert_eq!(r.transaction_states[0].transactional_id, "beta");
    let r = c.call(&list(vec!["Ongoing"], vec![], 15_000), 1).await;
    assert!(r.transaction_states.is_empty(), "alpha has run for less than 15 s");
    cluster.advance_clock(16_000).await.unwrap();
    let r = c.call(&list(vec!["Ongoing"], vec![], 15_000), 1).await;
    assert_eq!(r.transaction_states.len(), 1, "now it has (KIP-994's duration filter)");
    cluster.shutdown().await;
}

#[tokio::test]
async fn delete_records_and_topic_deletion_under_open_transactions() {
    let cluster = Cluster::builder().start().await.unwrap();
    cluster.create_topic("t", 1, 1).await.unwrap();
    cluster.create_topic("gone", 1, 1).await.unwrap();
    let mut c = Client::to(&cluster, 1).await;
    c.produce(None, "t", 0, batch(&[b"p0", b"p1"]), 9).await; // 0-1
    let (pid, epoch) = c.init_ok("d", 60_000).await;
    c.add("d", pid, epoch, &[("t", &[0]), ("gone", &[0])], 3).await;
    c.produce(Some("d"), "t", 0, txn_batch(&[b"d2", b"d3"], pid, epoch, 0), 9).await; // 2-3
    c.produce(Some("d"), "gone", 0, txn_batch(&[b"g0"], pid, epoch, 0), 9).await;
    c.produce(None, "t", 0, batch(&[b"p4", b"p5"]), 9).await; // 4-5
    assert_eq!(cluster.partition_stats("t", 0).await.unwrap().last_stable_offset, 2);

    // DeleteRecords past the open transaction's first offset: the LSO is clamped to the log start.
    let del = DeleteRecordsRequest {
        topics: vec![DeleteRecordsTopic {
            name: "t".into(),
            partitions: vec![DeleteRecordsPartition { partition_index: 0, offset: 3, ..Default::default() }],
            ..Default::default()
        }],
        timeout_ms: 1000,
        ..Default::default()
    };
    let r = c.call(&del, 2).await;
    assert_eq!((r.topics[0].partitions[0].error_code, r.topics[0].partitions[0].low_watermark), (0, 3));
    let stats = cluster.partition_stats("t", 0).await.unwrap();
    assert_eq!((stats.log_start_offset, stats.last_stable_offset, stats.high_watermark), (3, 3, 6));
    let data = c.fetch("t", 3, 1).await;
    assert_eq!((data.error_code, offsets(&data), data.last_stable_offset), (0, vec![], 3), "nothing stable to read");
    assert_eq!(c.latest("t", 1, 5).await, 3);

    // The other partition's topic is deleted: the transaction carries on without it.
    let dt = DeleteTopicsRequest { topic_names: vec!["gone".into()], timeout_ms: 1000, ..Default::default() };
    assert_eq!(c.call(&dt, 4).await.responses[0].error_code, 0);
    let d = c.describe("d").await;
    assert_eq!(d.topics.iter().map(|t| t.topic.as_str()).collect::<Vec<_>>(), vec!["t"]);
    assert_eq!(c.end("d", pid, epoch, true, 3).await, 0);
    assert_eq!(c.describe("d").await.transaction_state, "CompleteCommit");
    let stats = cluster.partition_stats("t", 0).await.unwrap();
    assert_eq!((stats.last_stable_offset, stats.high_watermark), (7, 7), "the marker at 6");
    let data = c.fetch("t", 3, 1).await;
    assert_eq!(offsets(&data), vec![2, 3, 4, 5, 6], "the batch holding 3 is returned whole");
    // A new topic of the same name gets no stray marker.
    cluster.create_topic("gone", 1, 1).await.unwrap();
    assert_eq!(cluster.partition_stats("gone", 0).await.unwrap().high_watermark, 0);
    cluster.shutdown().await;
}
