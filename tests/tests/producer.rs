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
    // The sticky partitioner spread the records over every partition. It switches partition
    // at random about every 256 KiB (some 80 times in a million 20-byte records), so each
    // partition's share varies by about a quarter around count / 6; count / 30 is far enough
    // below that to be reliable, and still fails if a partition is left out.
    let lens: Vec<usize> = log.iter().map(Vec::len).collect();
    assert!(count < 100_000 || lens.iter().all(|n| *n as u64 > count / 30), "{lens:?}");
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

/// Item 3: 5% of Produce responses are lost after the broker appended the batch. Every retry
/// is answered as a duplicate: nothing is lost or written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_responses_after_append_do_not_duplicate() {
    let cluster = cluster(3).await;
    cluster.create_topic("lossy", 6, 3).await.unwrap();
    cluster.lose_response_after_append(Loss::Probability(0.05)).await.unwrap();
    let config = ProducerConfig::new(&cluster.bootstrap_servers())
        .linger(Duration::from_millis(1))
        .retry_backoff(Duration::from_millis(10));
    let producer = Producer::new(config).unwrap();
    let count = 100_000u64;
    let sent = produce(&producer, "lossy", count, 16, u64::MAX, |_| async {}).await;
    producer.close(Duration::from_secs(10)).await.unwrap();
    let log = read_topic(&cluster.bootstrap_servers(), "lossy", 6).await.unwrap();
    let figures = check(&sent, &log);
    assert_clean(&figures, count as usize);
    // Responses really were lost: each loss closes the connection, and every new connection
    // starts with ApiVersions.
    let connections = cluster.request_log().await.unwrap().iter().filter(|r| r.api_key == ApiKey::ApiVersions).count();
    assert!(connections > 15, "only {connections} connections: were responses lost?");
    cluster.shutdown().await;
}

/// Item 4: OUT_OF_ORDER_SEQUENCE_NUMBER and UNKNOWN_PRODUCER_ID from the broker make the
/// producer bump its epoch (KIP-360) and go on, losing, duplicating and reordering nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequence_errors_bump_the_epoch_without_loss_or_duplicates() {
    let cluster = cluster(1).await;
    cluster.create_topic("seq", 3, 1).await.unwrap();
    let config = ProducerConfig::new(&cluster.bootstrap_servers())
        .linger(Duration::from_millis(1))
        .retry_backoff(Duration::from_millis(5));
    let producer = Producer::new(config).unwrap();
    let count = 30_000u64;
    let c = &cluster;
    let sent = produce(&producer, "seq", count, 16, 5_000, |done| async move {
        let code = if done % 10_000 == 0 { ErrorCode::UnknownProducerId } else { ErrorCode::OutOfOrderSequenceNumber };
        let partition = (done / 5_000) as i32 % 3;
        c.push_errors(ApiKey::Produce, ErrorScope::Partition("seq".into(), partition), [code]).await.unwrap();
    })
    .await;
    producer.close(Duration::from_secs(10)).await.unwrap();
    let log = read_topic(&cluster.bootstrap_servers(), "seq", 3).await.unwrap();
    let figures = check(&sent, &log);
    assert_clean(&figures, count as usize);
    // Six errors were injected; each made the producer bump its epoch, so the last batches
    // carry epoch 6 (errors that arrive while a bump is pending share it, hence at least 1).
    let max_epoch = log.iter().flatten().map(|r| r.producer_epoch).max().unwrap();
    assert!(max_epoch >= 1, "the epoch was never bumped");
    assert!(max_epoch <= 6, "{max_epoch}");
    cluster.shutdown().await;
}

/// Item 5: with the only broker stopped, `send` waits for buffer space and then fails after
/// max.block.ms; queued records fail as not persisted, and the one in flight when the broker
/// stopped as possibly persisted. Nothing reported "not persisted" is in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_broker_fails_sends_and_reports_persistence_correctly() {
    let cluster = cluster(1).await;
    cluster.create_topic("down", 1, 1).await.unwrap();
    let config = ProducerConfig::new(&cluster.bootstrap_servers())
        .linger(Duration::from_millis(0))
        .batch_size(1024)
        .buffer_memory(32 * 1024)
        .max_block(Duration::from_millis(300))
        .request_timeout(Duration::from_millis(1_000))
        .delivery_timeout(Duration::from_millis(2_000))
        .retry_backoff(Duration::from_millis(20))
        .set("reconnect.backoff.max.ms", "100")
        .unwrap();
    let producer = Producer::new(config).unwrap();
    // Warm up: metadata and a producer id.
    producer.send(ProducerRecord::new("down").value("first")).await.unwrap().await.unwrap();
    // Hold the next Produce request inside the broker, then stop the broker under it.
    let (release, hold) = kafka_broker::hold();
    let mut hold = Some(hold);
    cluster
        .intercept(ApiKey::Produce, Times::Once, move |_| hold.take().map(Action::Hold).unwrap_or(Action::Pass))
        .await
        .unwrap();
    let value = unique_value(0, 100);
    let in_flight = producer.send(ProducerRecord::new("down").value(&value)).await.unwrap();
    // Wait until the request is held by the broker (it is in the request log once received).
    loop {
        let log = cluster.request_log().await.unwrap();
        if log.iter().filter(|r| r.api_key == ApiKey::Produce).count() >= 2 {
            break;
        }
        tokio::task::yield_now().await;
    }
    cluster.stop_broker(1).await.unwrap();
    drop(release);
    // Fill the buffer: sends succeed until buffer.memory is used up, then one waits
    // max.block.ms and fails.
    let mut queued = Vec::new();
    let mut seq = 1u64;
    let blocked = loop {
        let value = unique_value(seq, 100);
        match producer.send(ProducerRecord::new("down").value(&value)).await {
            Ok(f) => queued.push((seq, f)),
            Err(e) => break e,
        }
        seq += 1;
        assert!(seq < 10_000, "sends never blocked");
    };
    assert!(matches!(blocked, Error::Timeout { setting: "max.block.ms", .. }), "{blocked}");
    assert!(queued.len() > 100, "{}", queued.len());
    // The in-flight record: its outcome is unknown.
    let e = in_flight.await.unwrap_err();
    assert_eq!(e.persistence, Persistence::PossiblyPersisted, "{e}");
    // Queued records fail: those written to the socket behind the held request (at most
    // max.in.flight batches) as possibly persisted, all the others as not persisted.
    let mut sent = Vec::new();
    settle(queued, &mut sent).await;
    assert!(sent.iter().all(|s| s.offset.is_none()), "nothing can be delivered while the broker is down");
    let possibly = sent.iter().filter(|s| s.possibly_persisted).count();
    let records_per_batch = 1024 / 100;
    assert!(possibly <= 4 * records_per_batch, "{possibly} records reported possibly persisted");
    // Back up: nothing that was reported as not persisted is in the log.
    cluster.start_broker(1).await.unwrap();
    let log = read_topic(&cluster.bootstrap_servers(), "down", 1).await.unwrap();
    let figures = check(&sent, &log);
    assert_eq!(figures.lost, 0, "{figures:?}");
    assert_eq!(figures.not_persisted + figures.possibly_persisted, sent.len(), "{figures:?}");
    assert!(figures.not_persisted > 100, "{figures:?}");
    producer.close(Duration::from_secs(5)).await.unwrap();
    cluster.shutdown().await;
}

/// Item 6 (our half): every codec round-trips keys, values, headers and timestamps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codec_round_trips() {
    let cluster = cluster(1).await;
    for codec in [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let topic = format!("codec-{}", codec.name());
        cluster.create_topic(&topic, 2, 1).await.unwrap();
        let config =
            ProducerConfig::new(&cluster.bootstrap_servers()).compression(codec).linger(Duration::from_millis(20));
        let producer = Producer::new(config).unwrap();
        let mut futures = Vec::new();
        for i in 0..2_000u64 {
            let (key, value, trace) = kafka_examples::fixture::parts(i);
            let record = ProducerRecord::new(&topic)
                .key(&key)
                .value(&value)
                .header("trace", &trace)
                .null_header("empty")
                .timestamp(1_700_000_000_000 + i as i64);
            futures.push((i, producer.send(record).await.unwrap()));
        }
        let mut placed = std::collections::HashMap::new();
        for (i, f) in futures {
            let m = f.await.unwrap();
            placed.insert((m.partition, m.offset), i);
        }
        producer.close(Duration::from_secs(5)).await.unwrap();
        let log = read_topic(&cluster.bootstrap_servers(), &topic, 2).await.unwrap();
        let mut seen = 0;
        for (p, records) in log.iter().enumerate() {
            for r in records {
                let i = placed[&(p as i32, r.offset)];
                let (key, value, _) = kafka_examples::fixture::parts(i);
                assert_eq!(r.key.as_deref(), Some(key.as_bytes()));
                assert_eq!(r.value.as_deref(), Some(value.as_bytes()));
                assert_eq!(r.timestamp, 1_700_000_000_000 + i as i64);
                assert_eq!(
                    r.headers,
                    vec![
                        ("trace".to_owned(), Some(bytes::Bytes::copy_from_slice(&i.to_be_bytes()))),
                        ("empty".to_owned(), None)
                    ]
                );
                assert_eq!(r.compression, codec.id(), "{codec:?}");
                // Keyed records land where Java's partitioner puts them.
                assert_eq!(
                    p as i32,
                    kafka_protocol::murmur2::partition_for_key(format!("key-{}", i % 50).as_bytes(), 2)
                );
                seen += 1;
            }
        }
        assert_eq!(seen, 2_000, "{codec:?}");
    }
    cluster.shutdown().await;
}
