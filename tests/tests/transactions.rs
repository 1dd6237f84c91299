//! Client-side transactions against the bundled broker: commit/abort visibility to
//! read_committed and read_uncommitted consumers, fencing, abortable and fatal errors,
//! coordinator errors and moves on every transactional API, EndTxn with an unknown outcome,
//! state machine misuse, and an exactly-once consume-transform-produce pipeline.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use kafka_broker::{Action, Cluster, ErrorScope, Times};
use kafka_client::{
    Consumer, ConsumerConfig, ConsumerGroupMetadata, ConsumerRecord, Error, OffsetAndMetadata, Producer,
    ProducerConfig, ProducerRecord, TopicPartition,
};
use kafka_integration_tests::scenario::{eos_pipeline, Params, PipelineFaults};
use kafka_integration_tests::txn::txn_config;
use kafka_integration_tests::{init_logs, seq_of, unique_value};
use kafka_protocol::{ApiKey, ErrorCode};
use rand::{Rng, SeedableRng};

/// Every record of `topic` as a consumer at `isolation` sees it (the shared helper, unwrapped).
async fn read_all(bootstrap: &str, topic: &str, partitions: i32, isolation: &str) -> Vec<ConsumerRecord> {
    kafka_integration_tests::txn::read_all(bootstrap, topic, partitions, isolation).await.unwrap()
}

fn seqs(records: &[ConsumerRecord]) -> Vec<u64> {
    records.iter().map(|r| seq_of(r.value().unwrap()).unwrap()).collect()
}

// Issue test 1 (10,000 transactions of 1-50 records, every third aborted, read_committed and
// read_uncommitted consumers) is reliability scenario R9: `tests/reliability.rs`
// `r9_every_third_transaction_aborted`, or at full size
// `cargo run --release -p kafka-integration-tests --bin chaos -- --scenario R9 --records 254300 --seed 9`.

/// Issue test 3: a second producer with the same transactional.id fences the first; none of
/// the first's later writes become visible, and every later call on it fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zombie_is_fenced_and_none_of_its_writes_commit() {
    init_logs();
    let cluster = Cluster::builder().brokers(1).start().await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("zombie", 2, 1).await.unwrap();
    let zombie = Producer::new(txn_config(&bootstrap, "zombie-id")).unwrap();
    zombie.init_transactions().await.unwrap();
    zombie.begin_transaction().unwrap();
    let before = zombie.send(ProducerRecord::new("zombie").partition(0).value(&unique_value(0, 4))).await.unwrap();
    before.await.unwrap();

    let successor = Producer::new(txn_config(&bootstrap, "zombie-id")).unwrap();
    successor.init_transactions().await.unwrap();

    // The zombie goes on: its next write is refused (fenced epoch), so is its commit.
    let after = zombie.send(ProducerRecord::new("zombie").partition(1).value(&unique_value(1, 4))).await;
    let delivered = match after {
        Ok(f) => f.await.map_err(|e| e.error),
        Err(e) => Err(e),
    };
    let commit = zombie.commit_transaction().await;
    let fenced = |e: &Error| {
        matches!(
            e.code(),
            Some(ErrorCode::ProducerFenced | ErrorCode::InvalidProducerEpoch | ErrorCode::InvalidTxnState)
        ) || matches!(e, Error::TransactionAbortable(inner) if inner.code().is_some())
    };
    assert!(delivered.as_ref().is_err_and(fenced) || commit.as_ref().is_err_and(fenced), "{delivered:?} {commit:?}");
    assert!(commit.is_err(), "the zombie committed: {commit:?}");
    // Every later call fails with the same fatal error.
    let later = zombie.send(ProducerRecord::new("zombie").partition(0).value(&unique_value(2, 4))).await;
    assert!(later.is_err());
    assert!(zombie.begin_transaction().is_err());

    successor.begin_transaction().unwrap();
    drop(successor.send(ProducerRecord::new("zombie").partition(0).value(&unique_value(3, 4))).await.unwrap());
    successor.commit_transaction().await.unwrap();
    let rc = read_all(&bootstrap, "zombie", 2, "read_committed").await;
    assert_eq!(seqs(&rc), vec![3], "only the successor's record is visible");
    successor.close(Duration::from_secs(5)).await.unwrap();
    let _ = zombie.close(Duration::from_secs(1)).await;
    cluster.shutdown().await;
}

/// State machine misuse gives clear errors and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misuse_is_a_clear_error() {
    init_logs();
    let cluster = Cluster::builder().brokers(1).start().await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("misuse", 1, 1).await.unwrap();
    let p = Producer::new(txn_config(&bootstrap, "misuse")).unwrap();
    let state = |r: Result<(), Error>| match r {
        Err(Error::TransactionState(m)) => m,
        other => panic!("expected a state error, got {other:?}"),
    };
    assert!(state(p.begin_transaction()).contains("init_transactions"));
    let m = state(p.send(ProducerRecord::new("misuse").value("x")).await.map(|_| ()));
    assert!(m.contains("init_transactions"), "{m}");
    p.init_transactions().await.unwrap();
    assert!(state(p.init_transactions().await).contains("already"));
    let m = state(p.send(ProducerRecord::new("misuse").value("x")).await.map(|_| ()));
    assert!(m.contains("begin_transaction"), "{m}");
    assert!(state(p.commit_transaction().await).contains("without an open transaction"));
    assert!(state(p.abort_transaction().await).contains("without an open transaction"));
    p.begin_transaction().unwrap();
    assert!(state(p.begin_transaction()).contains("already open"));
    drop(p.send(ProducerRecord::new("misuse").value("x")).await.unwrap());
    p.commit_transaction().await.unwrap();
    assert!(state(p.commit_transaction().await).contains("without an open transaction"));
    // A plain producer has no transactions.
    let plain = Producer::new(ProducerConfig::new(&bootstrap)).unwrap();
    assert!(state(plain.begin_transaction()).contains("transactional.id"));
    // Idempotence cannot be turned off for a transactional producer.
    let bad = ProducerConfig::new(&bootstrap).transactional_id("x").enable_idempotence(false);
    assert!(matches!(Producer::new(bad), Err(Error::Config { .. })));
    p.close(Duration::from_secs(5)).await.unwrap();
    plain.close(Duration::from_secs(5)).await.unwrap();
    cluster.shutdown().await;
}

/// A record that timed out locally makes the transaction abortable: commit fails naming the
/// cause, abort works, the record is never visible, and the next transaction commits. The
/// same for OUT_OF_ORDER_SEQUENCE_NUMBER inside a transaction (the abort bumps the epoch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abortable_errors_abort_cleanly_and_the_next_transaction_commits() {
    init_logs();
    let cluster = Cluster::builder().brokers(1).start().await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("abortable", 1, 1).await.unwrap();
    let p = Producer::new(
        txn_config(&bootstrap, "abortable")
            .delivery_timeout(Duration::from_millis(1500))
            .request_timeout(Duration::from_millis(1000)),
    )
    .unwrap();
    p.init_transactions().await.unwrap();

    // 1. Every Produce answered late (after being written): the record times out locally
    // although it is in the log.
    p.begin_transaction().unwrap();
    let id =
        cluster.intercept(ApiKey::Produce, Times::Always, |_| Action::Delay(Duration::from_secs(3))).await.unwrap();
    let f = p.send(ProducerRecord::new("abortable").value(&unique_value(0, 4))).await.unwrap();
    let err = f.await.unwrap_err();
    assert!(matches!(err.error, Error::Timeout { .. }), "{err}");
    match p.commit_transaction().await {
        Err(Error::TransactionAbortable(cause)) => assert!(matches!(*cause, Error::Timeout { .. }), "{cause}"),
        other => panic!("commit after a timed-out record: {other:?}"),
    }
    assert!(matches!(p.send(ProducerRecord::new("abortable").value("y")).await, Err(Error::TransactionAbortable(_))));
    cluster.remove_intercept(id).await.unwrap();
    p.abort_transaction().await.unwrap();

    // 2. The next transaction commits.
    p.begin_transaction().unwrap();
    p.send(ProducerRecord::new("abortable").value(&unique_value(1, 4))).await.unwrap().await.unwrap();
    p.commit_transaction().await.unwrap();

    // 3. OUT_OF_ORDER_SEQUENCE_NUMBER inside a transaction: abortable; the abort bumps the
    // epoch and the next transaction commits.
    p.begin_transaction().unwrap();
    cluster
        .push_errors(
            ApiKey::Produce,
            ErrorScope::Partition("abortable".into(), 0),
            [ErrorCode::OutOfOrderSequenceNumber],
        )
        .await
        .unwrap();
    let f = p.send(ProducerRecord::new("abortable").value(&unique_value(2, 4))).await.unwrap();
    let err = f.await.unwrap_err();
    assert_eq!(err.error.code(), Some(ErrorCode::OutOfOrderSequenceNumber), "{err}");
    assert!(matches!(p.commit_transaction().await, Err(Error::TransactionAbortable(_))));
    p.abort_transaction().await.unwrap();
    p.begin_transaction().unwrap();
    p.send(ProducerRecord::new("abortable").value(&unique_value(3, 4))).await.unwrap().await.unwrap();
    p.commit_transaction().await.unwrap();

    let rc = read_all(&bootstrap, "abortable", 1, "read_committed").await;
    assert_eq!(seqs(&rc), vec![1, 3]);
    p.close(Duration::from_secs(5)).await.unwrap();
    cluster.shutdown().await;
}

/// EndTxn whose answer is lost is retried until its outcome is known; one held past
/// max.block.ms leaves the commit pending: nothing else may start until it is repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_txn_with_an_unknown_outcome_is_resolved_before_anything_else() {
    init_logs();
    let cluster = Cluster::builder().brokers(1).start().await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("endtxn", 1, 1).await.unwrap();
    let p = Producer::new(txn_config(&bootstrap, "endtxn").max_block(Duration::from_millis(1500))).unwrap();
    p.init_transactions().await.unwrap();

    // The answer is lost after the coordinator acted: the retry finds it committed.
    p.begin_transaction().unwrap();
    drop(p.send(ProducerRecord::new("endtxn").value(&unique_value(0, 4))).await.unwrap());
    cluster.intercept(ApiKey::EndTxn, Times::Once, |_| Action::DropResponse).await.unwrap();
    p.commit_transaction().await.unwrap();

    // Held past max.block.ms: the outcome is unknown.
    p.begin_transaction().unwrap();
    drop(p.send(ProducerRecord::new("endtxn").value(&unique_value(1, 4))).await.unwrap());
    let (release, hold) = kafka_broker::hold();
    let hold = std::sync::Mutex::new(Some(hold));
    cluster
        .intercept(ApiKey::EndTxn, Times::Once, move |_| match hold.lock().unwrap().take() {
            Some(h) => Action::Hold(h),
            None => Action::Pass,
        })
        .await
        .unwrap();
    let r = p.commit_transaction().await;
    assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    assert!(matches!(p.begin_transaction(), Err(Error::TransactionState(_))));
    assert!(matches!(p.abort_transaction().await, Err(Error::TransactionState(_))));
    release.release();
    p.commit_transaction().await.unwrap();
    p.begin_transaction().unwrap();
    drop(p.send(ProducerRecord::new("endtxn").value(&unique_value(2, 4))).await.unwrap());
    p.abort_transaction().await.unwrap();

    let rc = read_all(&bootstrap, "endtxn", 1, "read_committed").await;
    assert_eq!(seqs(&rc), vec![0, 1]);
    p.close(Duration::from_secs(5)).await.unwrap();
    cluster.shutdown().await;
}

/// Issue test 4: coordinator errors injected on every transactional API and coordinators
/// moved between transactions: each transaction commits or aborts cleanly; read_committed
/// sees exactly the committed records and the group's offsets are the last committed ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_errors_and_moves_on_every_transactional_api() {
    init_logs();
    let cluster = Cluster::builder().brokers(3).start().await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("coord-errors", 3, 3).await.unwrap();
    cluster.create_topic("input", 1, 3).await.unwrap();
    let p = Producer::new(txn_config(&bootstrap, "coord-errors")).unwrap();
    let apis = [
        ApiKey::InitProducerId,
        ApiKey::AddPartitionsToTxn,
        ApiKey::AddOffsetsToTxn,
        ApiKey::TxnOffsetCommit,
        ApiKey::EndTxn,
    ];
    let codes = [
        ErrorCode::NotCoordinator,
        ErrorCode::CoordinatorNotAvailable,
        ErrorCode::CoordinatorLoadInProgress,
        ErrorCode::ConcurrentTransactions,
    ];
    for api in apis {
        cluster.push_errors(api, ErrorScope::Cluster, codes).await.unwrap();
    }
    p.init_transactions().await.unwrap();
    let group = ConsumerGroupMetadata::new("coord-errors-group");
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut committed = HashSet::new();
    let mut aborted = HashSet::new();
    let mut last_offsets = None;
    let mut seq = 0u64;
    let mut injected = apis.len() * codes.len();
    for t in 0..120u64 {
        if t % 10 == 5 {
            cluster.move_transaction_coordinator("coord-errors").await.unwrap();
            cluster.move_coordinator("coord-errors-group").await.unwrap();
        }
        if t % 7 == 3 {
            let api = apis[rng.gen_range(1..apis.len())];
            let code = codes[rng.gen_range(0..codes.len())];
            cluster.push_errors(api, ErrorScope::Cluster, [code]).await.unwrap();
            injected += 1;
        }
        p.begin_transaction().unwrap();
        let mut mine = Vec::new();
        for _ in 0..rng.gen_range(1..10) {
            drop(p.send(ProducerRecord::new("coord-errors").value(&unique_value(seq, 4))).await.unwrap());
            mine.push(seq);
            seq += 1;
        }
        let offsets: BTreeMap<TopicPartition, OffsetAndMetadata> =
            [(TopicPartition::new("input", 0), OffsetAndMetadata::new(t as i64 + 1))].into();
        p.send_offsets_to_transaction(&offsets, &group).await.unwrap();
        if t % 4 == 3 {
            p.abort_transaction().await.unwrap();
            aborted.extend(mine);
        } else {
            p.commit_transaction().await.unwrap();
            committed.extend(mine);
            last_offsets = Some(t as i64 + 1);
        }
    }
    p.close(Duration::from_secs(10)).await.unwrap();
    let rc: HashSet<u64> = seqs(&read_all(&bootstrap, "coord-errors", 3, "read_committed").await).into_iter().collect();
    println!("injected={injected} committed={} aborted={}", committed.len(), aborted.len());
    assert_eq!(rc, committed);
    let consumer =
        Consumer::new(ConsumerConfig::new(&bootstrap).set("group.id", "coord-errors-group").unwrap()).unwrap();
    let tp = TopicPartition::new("input", 0);
    let c = consumer.committed([tp.clone()]).await.unwrap();
    assert_eq!(c[&tp].as_ref().map(|o| o.offset), last_offsets);
    consumer.close().await.unwrap();
    cluster.shutdown().await;
}

/// Issue test 2: an exactly-once pipeline (read `eos-in`, write `eos-out`, offsets in the
/// transaction) with three instances in one group, one crashed and restarted at every other
/// tenth of the input, and the transaction and group coordinators moved at the others, while
/// the input is written: the committed output holds each input exactly once, in input order
/// per partition, and read_committed never sees an aborted record. The pipeline is the one
/// R14 runs with every fault (`kafka_integration_tests::scenario::eos_pipeline`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_pipeline_survives_kills_and_coordinator_moves() {
    init_logs();
    let records: u64 = std::env::var("EOS_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let faults = PipelineFaults { kill_instances: true, move_coordinators: true, ..Default::default() };
    let (figures, extra) = eos_pipeline(Params { records, seed: 2 }, faults).await.unwrap();
    println!("records={records}\n{figures}");
    for (what, held, detail) in &extra {
        println!("  {}: {what} ({detail})", if *held { "ok" } else { "BROKEN" });
    }
    figures.check_clean().unwrap();
    for (what, held, detail) in extra {
        assert!(held, "{what}: {detail}");
    }
}
