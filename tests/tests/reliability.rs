//! The reliability scenarios of RELIABILITY.md (`kafka_integration_tests::scenario`), each
//! with a fixed seed and a size that keeps `cargo test` quick. Every run prints its figures
//! and the command that reproduces it at any size. `RELIABILITY_RECORDS` overrides the size.
//!
//! R7, R9, R10 and R13 run a transactional producer with a read_committed consumer; R14 is
//! the combined soak (the exactly-once pipeline under R1 + R2 + R7 + R8), here at a quick
//! size: its long run is `chaos --scenario R14 --records 500000 --minutes 10`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_broker::{Action, Cluster, Times};
use kafka_client::{Producer, ProducerConfig};
use kafka_integration_tests::scenario::{produce, run, Params, Scenario};
use kafka_integration_tests::{init_logs, Checker};
use kafka_protocol::messages::RequestBody;
use kafka_protocol::records::{RecordSetEntry, RecordSetIter};
use kafka_protocol::{ApiKey, ErrorCode};

async fn scenario(s: Scenario, records: u64, seed: u64) {
    init_logs();
    let records = std::env::var("RELIABILITY_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(records);
    let params = Params { records, seed };
    println!(
        "{s} seed {seed}: reproduce with `cargo run -p kafka-integration-tests --bin chaos -- --scenario {s} --records {records} --seed {seed}`"
    );
    let report = run(s, params).await.unwrap_or_else(|e| panic!("{s} seed {seed}: {e}"));
    println!("{report}");
    report.check().unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r1_connections_dropped_mid_produce() {
    scenario(Scenario::R1, 50_000, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2_leader_moves_during_produce_and_fetch() {
    scenario(Scenario::R2, 30_000, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_retriable_produce_errors() {
    scenario(Scenario::R3, 50_000, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r4_responses_lost_after_append() {
    scenario(Scenario::R4, 50_000, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r5_forgotten_producer_state_and_sequence_errors() {
    scenario(Scenario::R5, 30_000, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r6_timeouts_queued_and_in_flight() {
    scenario(Scenario::R6, 10_000, 6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r8_consumers_killed_and_added() {
    scenario(Scenario::R8, 30_000, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r11_brokers_restarted() {
    scenario(Scenario::R11, 30_000, 11).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r12_topic_missing_from_metadata() {
    scenario(Scenario::R12, 20_000, 12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r15_all_brokers_down_then_back() {
    scenario(Scenario::R15, 20_000, 15).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r16_latency_above_the_request_timeout() {
    scenario(Scenario::R16, 20_000, 16).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r17_commit_and_heartbeat_errors() {
    scenario(Scenario::R17, 20_000, 17).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r7_coordinators_move_mid_transaction_and_mid_commit() {
    scenario(Scenario::R7, 6_000, 7).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r9_every_third_transaction_aborted() {
    scenario(Scenario::R9, 100_000, 9).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r10_zombie_fenced() {
    scenario(Scenario::R10, 10_000, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r13_end_txn_delayed_past_the_next_transaction() {
    scenario(Scenario::R13, 3_000, 13).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r14_combined_soak_quick() {
    scenario(Scenario::R14, 20_000, 14).await;
}

/// The registry knows every row of the table by name.
#[test]
fn every_scenario_is_registered() {
    for s in Scenario::ALL {
        assert_eq!(Scenario::parse(&s.to_string()), Some(s));
        assert!(!s.fault().is_empty());
    }
    assert_eq!(Scenario::parse("R18"), None);
}

/// Java-client parity (TransactionManager.canRetry): NOT_LEADER_OR_FOLLOWER for one of several
/// pipelined batches of an idempotent producer. The batches behind it, already in flight, are
/// refused by the broker with OUT_OF_ORDER_SEQUENCE_NUMBER (their predecessor is missing);
/// they are not the batch the broker expects next, so they are retried in order after it:
/// no epoch bump, nothing lost, duplicated or reordered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_leader_for_one_of_several_pipelined_batches_needs_no_epoch_bump() {
    init_logs();
    let cluster = Cluster::builder().brokers(1).auto_create_topics(false).start().await.unwrap();
    cluster.create_topic("pipelined", 1, 1).await.unwrap();
    // Every Produce request's base sequence, and whether it was answered NOT_LEADER_OR_FOLLOWER.
    let seen: Arc<Mutex<Vec<(i32, bool)>>> = Arc::default();
    let log = seen.clone();
    let mut n = 0u32;
    cluster
        .intercept(ApiKey::Produce, Times::Always, move |req| {
            let RequestBody::Produce(p) = req.body else { return Action::Pass };
            let records = p.topic_data.iter().flat_map(|t| &t.partition_data).find_map(|d| d.records.clone());
            let seq = match records.and_then(|r| RecordSetIter::new(r).next()) {
                Some(Ok(RecordSetEntry::Batch(b))) => b.header().base_sequence,
                _ => return Action::Pass,
            };
            n += 1;
            let inject = n % 40 == 10;
            log.lock().unwrap().push((seq, inject));
            if inject {
                Action::Error(ErrorCode::NotLeaderOrFollower)
            } else {
                Action::Pass
            }
        })
        .await
        .unwrap();
    // Answers a little late, so that requests pile up in flight.
    cluster.set_latency(1, Duration::from_millis(5)).await.unwrap();
    let checker = Checker::new("pipelined", 1, 24);
    let config = ProducerConfig::new(&cluster.bootstrap_servers())
        .linger(Duration::ZERO)
        .batch_size(1024)
        .max_in_flight(5)
        .retry_backoff(Duration::from_millis(10));
    let producer = Producer::new(config).unwrap();
    produce(&checker, &producer, 6_000, u64::MAX, |_| async { Ok(()) }).await.unwrap();
    producer.close(Duration::from_secs(10)).await.unwrap();
    let log = checker.read_back(&cluster.bootstrap_servers()).await.unwrap();
    let figures = checker.figures(&log);
    cluster.shutdown().await;
    let epochs: std::collections::BTreeSet<i16> = log.iter().flatten().map(|r| r.producer_epoch).collect();
    // Requests with a later sequence that reached the broker after an injected one and before
    // its retry were in flight behind it: each got OUT_OF_ORDER_SEQUENCE_NUMBER.
    let seen = seen.lock().unwrap().clone();
    let (mut injected, mut behind) = (0, 0);
    for (i, (seq, inject)) in seen.iter().enumerate() {
        if *inject {
            injected += 1;
            behind += seen[i + 1..].iter().take_while(|(s, _)| s != seq).filter(|(s, _)| s > seq).count();
        }
    }
    println!(
        "{figures}injected NOT_LEADER_OR_FOLLOWER {injected}, batches refused behind them {behind}, epochs {epochs:?}"
    );
    assert!(injected >= 3 && behind >= 1, "the faults did not hit pipelined batches: {injected} {behind}");
    figures.check_clean().unwrap();
    assert_eq!(figures.acked, 6_000);
    assert_eq!(epochs, [0].into(), "the epoch was bumped");
}
