//! Client-side transactions against the bundled broker: commit/abort visibility to
//! read_committed and read_uncommitted consumers, fencing, abortable and fatal errors,
//! coordinator errors and moves on every transactional API, EndTxn with an unknown outcome,
//! state machine misuse, and an exactly-once consume-transform-produce pipeline.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kafka_broker::{Action, Cluster, ErrorScope, Times};
use kafka_client::{
    Consumer, ConsumerConfig, ConsumerGroupMetadata, ConsumerRecord, Error, OffsetAndMetadata, Persistence, Producer,
    ProducerConfig, ProducerRecord, TopicPartition,
};
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

/// Issue test 1: 10,000 transactions of 1 to 50 records, every third aborted. A
/// read_committed consumer sees exactly the committed records, in order per partition; a
/// read_uncommitted consumer sees all of them and no control records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_third_transaction_aborted_read_committed_sees_exactly_the_committed() {
    init_logs();
    let transactions: u64 = std::env::var("TXN_COUNT").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let cluster = Cluster::builder().brokers(3).start().await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("txn-visibility", 3, 3).await.unwrap();
    let producer = Producer::new(txn_config(&bootstrap, "visibility")).unwrap();
    producer.init_transactions().await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut committed: HashSet<u64> = HashSet::new();
    let mut aborted: HashSet<u64> = HashSet::new();
    let mut seq = 0u64;
    for t in 0..transactions {
        producer.begin_transaction().unwrap();
        let n = rng.gen_range(1..=50u64);
        let mut mine = Vec::new();
        let mut pending = Vec::new();
        for _ in 0..n {
            let value = unique_value(seq, 10);
            let key = format!("k{}", rng.gen_range(0..1000));
            pending.push(producer.send(ProducerRecord::new("txn-visibility").key(&key).value(&value)).await.unwrap());
            mine.push(seq);
            seq += 1;
        }
        if t % 3 == 2 {
            producer.abort_transaction().await.unwrap();
            aborted.extend(mine);
            // Records already written are acknowledged; the rest were failed by the abort.
            for p in pending {
                if let Err(e) = p.await {
                    assert!(matches!(e.error, Error::TransactionAborted), "{e}");
                    assert_eq!(e.persistence, Persistence::NotPersisted);
                }
            }
        } else {
            producer.commit_transaction().await.unwrap();
            for p in pending {
                p.await.unwrap();
            }
            committed.extend(mine);
        }
    }
    producer.close(Duration::from_secs(10)).await.unwrap();

    let rc = read_all(&bootstrap, "txn-visibility", 3, "read_committed").await;
    let rc_seqs = seqs(&rc);
    let rc_set: HashSet<u64> = rc_seqs.iter().copied().collect();
    let aborted_reads = rc_seqs.iter().filter(|s| aborted.contains(s)).count();
    let lost = committed.iter().filter(|s| !rc_set.contains(s)).count();
    let duplicates = rc_seqs.len() - rc_set.len();
    // Within a partition, values were sent in increasing order.
    let mut last: HashMap<i32, u64> = HashMap::new();
    let mut reordered = 0;
    for r in &rc {
        let s = seq_of(r.value().unwrap()).unwrap();
        if last.get(&r.partition()).is_some_and(|l| *l > s) {
            reordered += 1;
        }
        last.insert(r.partition(), s);
    }
    println!(
        "transactions={transactions} records={seq} committed={} aborted={} read_committed={} aborted_reads={aborted_reads} lost={lost} duplicates={duplicates} reordered={reordered}",
        committed.len(),
        aborted.len(),
        rc.len()
    );
    assert_eq!((aborted_reads, lost, duplicates, reordered), (0, 0, 0, 0));
    assert_eq!(rc.len(), committed.len());

    let ru = read_all(&bootstrap, "txn-visibility", 3, "read_uncommitted").await;
    let ru_set: HashSet<u64> = seqs(&ru).into_iter().collect();
    assert_eq!(ru.len(), ru_set.len(), "duplicates in read_uncommitted");
    // Every committed record, and no control record (every value decodes as ours).
    assert!(committed.iter().all(|s| ru_set.contains(s)));
    assert!(ru_set.iter().all(|s| committed.contains(s) || aborted.contains(s)));
    // Aborted records that were written are visible to read_uncommitted: there must be some
    // (each aborted transaction flushed at least its first batch in most cases).
    assert!(ru.len() > rc.len(), "read_uncommitted saw no aborted record at all");
    cluster.shutdown().await;
}

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

/// Issue test 2: an exactly-once pipeline (read `input`, write `output`, offsets in the
/// transaction) with three instances in one group, one killed and restarted every few
/// seconds, and the transaction and group coordinators moved during the run: the output
/// holds each input exactly once, in input order per key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_pipeline_survives_kills_and_coordinator_moves() {
    init_logs();
    let records: u64 = std::env::var("EOS_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let cluster = Arc::new(
        Cluster::builder().brokers(3).broker_config("group.min.session.timeout.ms", "1000").start().await.unwrap(),
    );
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("eos-in", 6, 3).await.unwrap();
    cluster.create_topic("eos-out", 6, 3).await.unwrap();
    // Input: 100 keys, each key's values in increasing order.
    {
        let producer = Producer::new(ProducerConfig::new(&bootstrap).linger(Duration::from_millis(5))).unwrap();
        let mut pending = Vec::new();
        for i in 0..records {
            let key = format!("key-{}", i % 100);
            pending
                .push(producer.send(ProducerRecord::new("eos-in").key(&key).value(&unique_value(i, 8))).await.unwrap());
        }
        for p in pending {
            p.await.unwrap();
        }
        producer.close(Duration::from_secs(10)).await.unwrap();
    }

    let processed = Arc::new(AtomicU64::new(0));
    // The instances stop starting transactions once `allowed` records are committed, until the
    // next fault is injected: so the faults land at every tenth of the run however fast or
    // slow the machine is.
    let step = (records / 10).max(1);
    let allowed = Arc::new(AtomicU64::new(step));
    let spawn = |instance: usize, generation: u32| {
        let bootstrap = bootstrap.clone();
        let processed = processed.clone();
        let allowed = allowed.clone();
        tokio::spawn(async move { pipeline_instance(&bootstrap, instance, generation, processed, allowed).await })
    };
    let mut tasks: Vec<tokio::task::JoinHandle<()>> = (0..3).map(|i| spawn(i, 0)).collect();
    let mut kills = 0u32;
    let mut moves = 0u32;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    let mut round = 0u32;
    let checker = Consumer::new(ConsumerConfig::new(&bootstrap).set("group.id", "eos-group").unwrap()).unwrap();
    let inputs: Vec<TopicPartition> = (0..6).map(|p| TopicPartition::new("eos-in", p)).collect();
    loop {
        // Done when the group's offsets (committed only by committed transactions) cover
        // the whole input.
        let committed: i64 = match checker.committed(inputs.clone()).await {
            Ok(c) => c.values().map(|o| o.as_ref().map_or(0, |o| o.offset)).sum(),
            Err(_) => 0,
        };
        if committed as u64 >= records {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the pipeline did not finish in time");
        // A fault each time another tenth of the input is committed, alternating between
        // killing an instance (a crash: no LeaveGroup, no abort; it is started again at
        // once) and moving coordinators.
        if round >= 9 {
            allowed.store(u64::MAX, Ordering::Release);
        }
        if round >= 9 || processed.load(Ordering::Acquire) < allowed.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        round += 1;
        if round % 2 == 1 {
            let i = round as usize % 3;
            tasks[i].abort();
            let _ = (&mut tasks[i]).await;
            kills += 1;
            tasks[i] = spawn(i, kills);
        } else {
            cluster.move_transaction_coordinator(&format!("eos-{}", round as usize % 3)).await.unwrap();
            cluster.move_coordinator("eos-group").await.unwrap();
            moves += 1;
        }
        allowed.fetch_add(step, Ordering::AcqRel);
    }
    for t in &tasks {
        t.abort();
    }
    checker.close().await.unwrap();
    let out = read_all(&bootstrap, "eos-out", 6, "read_committed").await;
    let mut seen: HashMap<u64, usize> = HashMap::new();
    let mut last_per_key: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut reordered = 0;
    let mut by_partition: BTreeMap<i32, Vec<&ConsumerRecord>> = BTreeMap::new();
    for r in &out {
        by_partition.entry(r.partition()).or_default().push(r);
    }
    for rs in by_partition.values() {
        for r in rs {
            let s = seq_of(r.value().unwrap()).unwrap();
            *seen.entry(s).or_default() += 1;
            let key = r.key().unwrap().to_vec();
            if last_per_key.get(&key).is_some_and(|l| *l > s) {
                reordered += 1;
            }
            last_per_key.insert(key, s);
        }
    }
    let duplicates: usize = seen.values().map(|c| c - 1).sum();
    let lost = (0..records).filter(|s| !seen.contains_key(s)).count();
    println!(
        "records={records} output={} lost={lost} duplicates={duplicates} reordered={reordered} kills={kills} coordinator_moves={moves} records_in_committed_transactions={}",
        out.len(),
        processed.load(Ordering::Relaxed)
    );
    assert_eq!((lost, duplicates, reordered), (0, 0, 0));
    assert!(kills >= 3, "too few kills to mean anything: {kills}");
    match Arc::try_unwrap(cluster) {
        Ok(c) => c.shutdown().await,
        Err(_) => panic!("cluster still shared"),
    }
}

/// One pipeline instance: consume `eos-in` in group `eos-group`, write each record to
/// `eos-out` with the same key, commit offsets in the transaction, one transaction per poll.
async fn pipeline_instance(
    bootstrap: &str,
    instance: usize,
    generation: u32,
    processed: Arc<AtomicU64>,
    allowed: Arc<AtomicU64>,
) {
    let consumer = Consumer::new(
        ConsumerConfig::new(bootstrap)
            .set("group.id", "eos-group")
            .unwrap()
            .set("isolation.level", "read_committed")
            .unwrap()
            .set("enable.auto.commit", "false")
            .unwrap()
            .set("auto.offset.reset", "earliest")
            .unwrap()
            .set("session.timeout.ms", "2000")
            .unwrap()
            .set("heartbeat.interval.ms", "100")
            .unwrap()
            .set("max.poll.records", "200")
            .unwrap()
            .set("fetch.max.wait.ms", "50")
            .unwrap()
            .set("client.id", &format!("eos-{instance}-{generation}"))
            .unwrap(),
    )
    .unwrap();
    consumer.subscribe(["eos-in"]).unwrap();
    let producer = Producer::new(txn_config(bootstrap, &format!("eos-{instance}"))).unwrap();
    producer.init_transactions().await.unwrap();
    loop {
        if processed.load(Ordering::Acquire) >= allowed.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let batch = match consumer.poll(Duration::from_millis(100)).await {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(instance, error = %e, "poll failed");
                continue;
            }
        };
        if batch.is_empty() {
            continue;
        }
        producer.begin_transaction().unwrap();
        let mut offsets: BTreeMap<TopicPartition, OffsetAndMetadata> = BTreeMap::new();
        let mut failed = false;
        for r in &batch {
            let sent =
                producer.send(ProducerRecord::new("eos-out").key(r.key().unwrap()).value(r.value().unwrap())).await;
            if sent.is_err() {
                failed = true;
                break;
            }
            offsets.insert(r.topic_partition(), OffsetAndMetadata::new(r.offset() + 1));
        }
        let outcome = if failed {
            Err(Error::TransactionState("send failed".into()))
        } else {
            match consumer.group_metadata() {
                Some(g) => match producer.send_offsets_to_transaction(&offsets, &g).await {
                    Ok(()) => producer.commit_transaction().await,
                    Err(e) => Err(e),
                },
                None => Err(Error::TransactionState("no group".into())),
            }
        };
        match outcome {
            Ok(()) => {
                processed.fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::debug!(instance, error = %e, "transaction failed; aborting and rewinding");
                if producer.abort_transaction().await.is_err() {
                    // Fenced or broken: start over as a new instance would.
                    return;
                }
                // Rewind to the committed offsets: the aborted records are processed again.
                let assignment = consumer.assignment();
                if let Ok(committed) = consumer.committed(assignment.clone()).await {
                    for tp in &assignment {
                        match committed.get(tp).cloned().flatten() {
                            Some(o) => consumer.seek(tp, o.offset).unwrap(),
                            None => consumer.seek_to_beginning(std::slice::from_ref(tp)).unwrap(),
                        }
                    }
                }
            }
        }
    }
}
