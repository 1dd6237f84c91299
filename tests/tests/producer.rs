//! The producer against the bundled broker: volume, a stopped broker, and every codec. Each
//! test reads the log back with plain Fetch requests and checks it against what the producer
//! reported (the checker of `kafka_integration_tests::checker`). The fault scenarios that used
//! to live here (dropped connections, lost responses, sequence errors) are R1, R4 and R5 of
//! `tests/reliability.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::Duration;

use kafka_broker::{Action, Cluster, Times};
use kafka_client::{Compression, Error, Persistence, Producer, ProducerConfig, ProducerRecord};
use kafka_integration_tests::scenario::produce;
use kafka_integration_tests::{init_logs, read_topic, Checker, Figures};
use kafka_protocol::ApiKey;

fn assert_clean(f: &Figures, expected: usize) {
    f.check_clean().unwrap();
    assert_eq!(f.sent, expected, "{f}");
    assert_eq!(f.acked, expected, "every record must be acknowledged: {f}");
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
    let checker = Checker::new("volume", 6, 8);
    produce(&checker, &producer, count, u64::MAX, |_| async { Ok(()) }).await.unwrap();
    producer.close(Duration::from_secs(10)).await.unwrap();
    let log = checker.read_back(&cluster.bootstrap_servers()).await.unwrap();
    let figures = checker.figures(&log);
    assert_clean(&figures, count as usize);
    // The sticky partitioner spread the records over every partition. It switches partition
    // at random about every 256 KiB (some 80 times in a million 20-byte records), so each
    // partition's share varies by about a quarter around count / 6; count / 30 is far enough
    // below that to be reliable, and still fails if a partition is left out.
    let lens: Vec<usize> = log.iter().map(Vec::len).collect();
    assert!(count < 100_000 || lens.iter().all(|n| *n as u64 > count / 30), "{lens:?}");
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
    let checker = Checker::new("down", 1, 100);
    let tag = checker.new_producer();
    let (first, in_flight) = checker.send(&producer, tag, None, None).await.unwrap();
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
    let blocked = loop {
        match checker.send(&producer, tag, None, None).await {
            Ok(f) => queued.push(f),
            Err(e) => break e,
        }
        assert!(queued.len() < 10_000, "sends never blocked");
    };
    assert!(matches!(blocked, Error::Timeout { setting: "max.block.ms", .. }), "{blocked}");
    assert!(queued.len() > 100, "{}", queued.len());
    // The in-flight record: its outcome is unknown.
    let r = in_flight.await;
    checker.delivered(first, &r);
    let e = r.unwrap_err();
    assert_eq!(e.persistence, Persistence::PossiblyPersisted, "{e}");
    // Queued records fail: those written to the socket behind the held request (at most
    // max.in.flight batches) as possibly persisted, all the others as not persisted.
    let queued_count = queued.len();
    checker.settle(queued).await;
    let figures = checker.figures(&[]);
    assert_eq!(figures.acked, 0, "nothing can be delivered while the broker is down: {figures}");
    // The held record, and at most max.in.flight batches behind it.
    let records_per_batch = 1024 / 100;
    assert!(figures.possibly_persisted <= 1 + 4 * records_per_batch, "{figures}");
    // Back up: nothing that was reported as not persisted is in the log.
    cluster.start_broker(1).await.unwrap();
    let log = checker.read_back(&cluster.bootstrap_servers()).await.unwrap();
    let figures = checker.figures(&log);
    assert_eq!(figures.lost, 0, "{figures}");
    // Every record failed: the queued ones, the held one, and the one whose send timed out.
    assert_eq!(figures.sent, queued_count + 2, "{figures}");
    assert_eq!(figures.not_persisted + figures.possibly_persisted, figures.sent, "{figures}");
    assert!(figures.not_persisted > 100, "{figures}");
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
