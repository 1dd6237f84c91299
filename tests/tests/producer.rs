//! The producer against the bundled broker: volume, injected faults, lost responses, sequence
//! errors, a stopped broker, and every codec. Each test reads the log back with plain Fetch
//! requests and checks it against what the producer reported.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::Duration;

use kafka_broker::{Action, Cluster, ErrorScope, Loss, Times};
use kafka_client::{Compression, DeliveryFuture, Error, Persistence, Producer, ProducerConfig, ProducerRecord};
use kafka_integration_tests::{check, init_logs, read_topic, unique_value, Figures, Sent};
use kafka_protocol::{ApiKey, ErrorCode};

/// Awaits delivery futures, recording each outcome.
async fn settle(futures: Vec<(u64, DeliveryFuture)>, sent: &mut Vec<Sent>) {
    for (seq, f) in futures {
        let partition = f.partition();
        match f.await {
            Ok(m) => sent.push(Sent { seq, partition, offset: Some(m.offset), possibly_persisted: false }),
            Err(e) => sent.push(Sent {
                seq,
                partition,
                offset: None,
                possibly_persisted: e.persistence == Persistence::PossiblyPersisted,
            }),
        }
    }
}

/// Sends `count` unique records (value = sequence number + padding), calling `between` after
/// every `every` records, and returns what the producer reported.
async fn produce<F, Fut>(
    producer: &Producer,
    topic: &str,
    count: u64,
    pad: usize,
    every: u64,
    mut between: F,
) -> Vec<Sent>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut sent = Vec::new();
    let mut pending = Vec::new();
    for seq in 0..count {
        let value = unique_value(seq, pad);
        let f = producer.send(ProducerRecord::new(topic).value(&value)).await.unwrap();
        pending.push((seq, f));
        if (seq + 1) % every == 0 {
            between(seq + 1).await;
        }
        if pending.len() >= 100_000 {
            settle(std::mem::take(&mut pending), &mut sent).await;
        }
    }
    producer.flush().await.unwrap();
    settle(pending, &mut sent).await;
    sent
}

fn assert_clean(f: &Figures, expected: usize) {
    assert_eq!(f.sent, expected, "{f:?}");
    assert_eq!(f.acked, expected, "every record must be acknowledged: {f:?}");
    assert_eq!(f.lost, 0, "{f:?}");
    assert_eq!(f.duplicates, 0, "{f:?}");
    assert_eq!(f.reordered, 0, "{f:?}");
    assert_eq!(f.offset_mismatches, 0, "{f:?}");
    assert_eq!(f.misplaced, 0, "{f:?}");
}

async fn cluster(brokers: usize) -> Cluster {
    init_logs();
    Cluster::builder().brokers(brokers).auto_create_topics(false).start().await.unwrap()
}

/// Item 1: a million records over 6 partitions, acks=all, read back exactly once, in order
/// per partition, at the offsets the futures reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_records_read_back_exactly_once_in_order() {
    let cluster = cluster(3).await;
    cluster.create_topic("volume", 6, 3).await.unwrap();
    let config = ProducerConfig::new(&cluster.bootstrap_servers()).batch_size(256 * 1024);
    let producer = Producer::new(config).unwrap();
    let count: u64 = std::env::var("VOLUME_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let sent = produce(&producer, "volume", count, 8, u64::MAX, |_| async {}).await;
    producer.close(Duration::from_secs(10)).await.unwrap();
    let log = read_topic(&cluster.bootstrap_servers(), "volume", 6).await.unwrap();
    let figures = check(&sent, &log);
    assert_clean(&figures, count as usize);
    // The sticky partitioner spread the records over every partition.
    let lens: Vec<usize> = log.iter().map(Vec::len).collect();
    assert!(count < 100_000 || lens.iter().all(|n| *n as u64 > count / 12), "{lens:?}");
    cluster.shutdown().await;
}

/// Item 2: 50 dropped connections (half before the broker handles the request, half after it
/// appended, so the outcome is unknown to the client) and 20 leader moves during the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_and_leader_moves_lose_and_duplicate_nothing() {
    let cluster = cluster(3).await;
    cluster.create_topic("faults", 6, 3).await.unwrap();
    let mut n = 0u32;
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = dropped.clone();
    cluster
        .intercept(ApiKey::Produce, Times::Count(50), move |_| {
            n += 1;
            let action = match n % 10 {
                3 => Action::DropConnection,
                8 => Action::DropResponse,
                _ => return Action::Pass,
            };
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            action
        })
        .await
        .unwrap();
    let config = ProducerConfig::new(&cluster.bootstrap_servers())
        .linger(Duration::from_millis(1))
        .retry_backoff(Duration::from_millis(10));
    let producer = Producer::new(config).unwrap();
    let count: u64 = std::env::var("FAULT_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let moves = std::sync::atomic::AtomicU32::new(0);
    let c = &cluster;
    let sent = produce(&producer, "faults", count, 16, count / 20, |done| {
        let moves = &moves;
        async move {
            // Move the leader of one partition to the next replica.
            let partition = (done / (count / 20)) as i32 % 6;
            let stats = c.partition_stats("faults", partition).await.unwrap();
            let next = stats.leader % 3 + 1;
            c.set_leader("faults", partition, Some(next)).await.unwrap();
            moves.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    })
    .await;
    producer.close(Duration::from_secs(10)).await.unwrap();
    assert_eq!(moves.load(std::sync::atomic::Ordering::Relaxed), 20);
    let log = read_topic(&cluster.bootstrap_servers(), "faults", 6).await.unwrap();
    let figures = check(&sent, &log);
    assert_clean(&figures, count as usize);
    assert_eq!(dropped.load(std::sync::atomic::Ordering::Relaxed), 50, "every planned connection drop happened");
    cluster.shutdown().await;
}
