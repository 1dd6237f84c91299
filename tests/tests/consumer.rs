//! The consumer against the bundled broker: manual assignment, group membership and
//! rebalances, commits and auto-commit, seeks and pauses, bounded prefetch.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_broker::Cluster;
use kafka_client::consumer::{BoxFuture, OffsetReset};
use kafka_client::{
    Compression, Consumer, ConsumerConfig, ConsumerRecord, Error, Producer, ProducerConfig, ProducerRecord,
    RebalanceListener, TopicPartition,
};
use kafka_integration_tests::{init_logs, seq_of, unique_value};

const WAIT: Duration = Duration::from_secs(30);

/// Writes `count` records with values `unique_value(first + i)` round-robin over partitions
/// (explicit partition i % partitions), and waits for all of them.
async fn produce(bootstrap: &str, topic: &str, partitions: i32, first: u64, count: u64, codec: Compression) {
    let producer =
        Producer::new(ProducerConfig::new(bootstrap).linger(Duration::from_millis(2)).compression(codec)).unwrap();
    let mut pending = Vec::new();
    for i in 0..count {
        let value = unique_value(first + i, 20);
        let key = format!("k{}", first + i);
        let record =
            ProducerRecord::new(topic).partition(((first + i) % partitions as u64) as i32).key(&key).value(&value);
        pending.push(producer.send(record).await.unwrap());
    }
    for p in pending {
        p.await.unwrap();
    }
    producer.close(Duration::from_secs(5)).await.unwrap();
}

fn config(bootstrap: &str, group: Option<&str>) -> ConsumerConfig {
    let mut c = ConsumerConfig::new(bootstrap).set("auto.offset.reset", "earliest").unwrap();
    if let Some(g) = group {
        c = c.set("group.id", g).unwrap();
    }
    c.set("heartbeat.interval.ms", "100")
        .unwrap()
        .set("session.timeout.ms", "6000")
        .unwrap()
        .set("fetch.max.wait.ms", "100")
        .unwrap()
}

/// A task that polls a consumer and keeps what it receives, until stopped.
struct Reader {
    records: Arc<Mutex<Vec<ConsumerRecord>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Reader {
    fn spawn(consumer: Arc<Consumer>) -> Reader {
        let records = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (records.clone(), stop.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                match consumer.poll(Duration::from_millis(50)).await {
                    Ok(batch) => r.lock().unwrap().extend(batch),
                    Err(Error::Closed(_)) => break,
                    Err(e) => panic!("poll failed: {e}"),
                }
            }
        });
        Reader { records, stop, task }
    }

    fn count(&self) -> usize {
        self.records.lock().unwrap().len()
    }

    async fn stop(self) -> Vec<ConsumerRecord> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        std::mem::take(&mut *self.records.lock().unwrap())
    }
}

/// Receives until `count` records arrived (failing after WAIT).
async fn take(consumer: &Consumer, count: usize) -> Vec<ConsumerRecord> {
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, async {
        while out.len() < count {
            let batch = consumer.poll(Duration::from_millis(200)).await.unwrap();
            out.extend(batch);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {count} records arrived", out.len()));
    out
}

#[tokio::test]
async fn manual_assignment_reads_every_record_in_order_with_every_codec() {
    init_logs();
    let cluster = Cluster::builder().brokers(2).start().await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    for (i, codec) in [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd]
        .into_iter()
        .enumerate()
    {
        let topic = format!("manual-{i}");
        cluster.create_topic(&topic, 3, 1).await.unwrap();
        produce(&bootstrap, &topic, 3, 0, 3000, codec).await;
        let consumer = Consumer::new(config(&bootstrap, None)).unwrap();
        consumer.assign((0..3).map(|p| TopicPartition::new(&topic, p))).unwrap();
        let records = take(&consumer, 3000).await;
        let mut next: HashMap<i32, i64> = HashMap::new();
        let mut seqs = BTreeSet::new();
        for r in &records {
            let expected = next.entry(r.partition()).or_insert(0);
            assert_eq!(r.offset(), *expected, "{codec:?}: offsets of a partition are consecutive");
            *expected += 1;
            assert_eq!(r.topic(), topic);
            let seq = seq_of(r.value().unwrap()).unwrap();
            assert_eq!(seq % 3, r.partition() as u64);
            assert_eq!(r.key(), Some(format!("k{seq}").as_bytes()));
            assert!(r.timestamp() > 0);
            seqs.insert(seq);
        }
        assert_eq!(seqs.len(), 3000, "{codec:?}: every record exactly once");
        // Nothing more arrives.
        assert!(consumer.poll(Duration::from_millis(300)).await.unwrap().is_empty());
        for p in 0..3 {
            assert_eq!(consumer.position(&TopicPartition::new(&topic, p)).await.unwrap(), 1000);
        }
        consumer.close().await.unwrap();
    }
    cluster.shutdown().await;
}

#[tokio::test]
async fn seek_pause_resume_and_offset_lookups() {
    init_logs();
    let cluster = Cluster::builder().brokers(1).start().await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("seek", 2, 1).await.unwrap();
    produce(&bootstrap, "seek", 2, 0, 200, Compression::None).await;
    let consumer = Consumer::new(config(&bootstrap, None)).unwrap();
    let p0 = TopicPartition::new("seek", 0);
    let p1 = TopicPartition::new("seek", 1);
    consumer.assign([p0.clone(), p1.clone()]).unwrap();
    assert_eq!(consumer.beginning_offsets(&[p0.clone(), p1.clone()]).await.unwrap()[&p0], 0);
    assert_eq!(consumer.end_offsets(&[p0.clone(), p1.clone()]).await.unwrap()[&p1], 100);

    // Pause p1: only p0 arrives.
    consumer.pause(std::slice::from_ref(&p1)).unwrap();
    assert_eq!(consumer.paused(), vec![p1.clone()]);
    let first = take(&consumer, 100).await;
    assert!(first.iter().all(|r| r.partition() == 0));
    assert!(consumer.poll(Duration::from_millis(300)).await.unwrap().is_empty());
    consumer.resume(std::slice::from_ref(&p1)).unwrap();
    let second = take(&consumer, 100).await;
    assert!(second.iter().all(|r| r.partition() == 1));

    // Seek back: the records come again from there.
    consumer.seek(&p0, 90).unwrap();
    let again = take(&consumer, 10).await;
    assert_eq!(again.iter().map(|r| r.offset()).collect::<Vec<_>>(), (90..100).collect::<Vec<_>>());
    consumer.seek_to_beginning(std::slice::from_ref(&p1)).unwrap();
    let from_start = take(&consumer, 100).await;
    assert_eq!(from_start.first().unwrap().offset(), 0);
    consumer.seek_to_end(std::slice::from_ref(&p0)).unwrap();
    assert_eq!(consumer.position(&p0).await.unwrap(), 100);

    // offsets_for_times: a timestamp before everything gives offset 0; after, nothing.
    let found =
        consumer.offsets_for_times(BTreeMap::from([(p0.clone(), 0), (p1.clone(), i64::MAX / 2)])).await.unwrap();
    assert_eq!(found[&p0].unwrap().offset, 0);
    assert!(found[&p1].is_none());
    // Seeking a partition not assigned is an error.
    assert!(matches!(consumer.seek(&TopicPartition::new("seek", 7), 0), Err(Error::InvalidArgument(_))));
    consumer.close().await.unwrap();
    cluster.shutdown().await;
}

#[tokio::test]
async fn auto_offset_reset_none_is_an_error_until_a_seek() {
    init_logs();
    let cluster = Cluster::builder().brokers(1).start().await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("reset-none", 1, 1).await.unwrap();
    produce(&bootstrap, "reset-none", 1, 0, 10, Compression::None).await;
    let consumer = Consumer::new(
        config(&bootstrap, Some("g-none")).auto_offset_reset(OffsetReset::None).enable_auto_commit(false),
    )
    .unwrap();
    let tp = TopicPartition::new("reset-none", 0);
    consumer.assign([tp.clone()]).unwrap();
    let e = tokio::time::timeout(WAIT, consumer.recv()).await.unwrap().unwrap_err();
    assert!(matches!(&e, Error::NoOffset { topic, partition: 0, .. } if topic == "reset-none"), "{e}");
    consumer.seek(&tp, 4).unwrap();
    let r = tokio::time::timeout(WAIT, consumer.recv()).await.unwrap().unwrap();
    assert_eq!(r.offset(), 4);
    consumer.close().await.unwrap();
    cluster.shutdown().await;
}

/// Records every callback, and checks that no record of a partition is handed out while it
/// is not assigned.
#[derive(Default, Clone)]
struct Recorder {
    events: Arc<Mutex<Vec<String>>>,
    owned: Arc<Mutex<BTreeSet<TopicPartition>>>,
}

impl RebalanceListener for Recorder {
    fn on_partitions_revoked<'a>(
        &'a self,
        consumer: &'a Consumer,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            // Committing inside the callback works: the member is still in its generation.
            consumer.commit().await.unwrap();
            let mut owned = self.owned.lock().unwrap();
            for tp in partitions {
                owned.remove(tp);
            }
            self.events.lock().unwrap().push(format!("revoked {}", partitions.len()));
        })
    }
    fn on_partitions_assigned<'a>(&'a self, _c: &'a Consumer, partitions: &'a [TopicPartition]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.owned.lock().unwrap().extend(partitions.iter().cloned());
            self.events.lock().unwrap().push(format!("assigned {}", partitions.len()));
        })
    }
    fn on_partitions_lost<'a>(&'a self, _c: &'a Consumer, partitions: &'a [TopicPartition]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let mut owned = self.owned.lock().unwrap();
            for tp in partitions {
                owned.remove(tp);
            }
            self.events.lock().unwrap().push(format!("lost {}", partitions.len()));
        })
    }
}

#[tokio::test]
async fn group_members_share_partitions_and_commits_resume_consumption() {
    init_logs();
    let cluster = Cluster::builder().brokers(3).start().await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("shared", 6, 1).await.unwrap();
    produce(&bootstrap, "shared", 6, 0, 600, Compression::Lz4).await;

    let recorder = Recorder::default();
    let c1 = Arc::new(
        Consumer::with_listener(config(&bootstrap, Some("g1")).enable_auto_commit(false), recorder.clone()).unwrap(),
    );
    c1.subscribe(["shared"]).unwrap();
    let first = take(&c1, 600).await;
    assert_eq!(first.iter().map(|r| seq_of(r.value().unwrap()).unwrap()).collect::<BTreeSet<_>>().len(), 600);
    assert_eq!(c1.assignment().len(), 6);
    for r in &first {
        assert!(recorder.owned.lock().unwrap().contains(&r.topic_partition()), "a record of an unowned partition");
    }
    c1.commit().await.unwrap();
    let committed = c1.committed((0..6).map(|p| TopicPartition::new("shared", p))).await.unwrap();
    assert!(committed.values().all(|c| c.as_ref().unwrap().offset == 100), "{committed:?}");

    // A second member joins: the six partitions are split 3/3.
    let c2 = Arc::new(Consumer::new(config(&bootstrap, Some("g1")).enable_auto_commit(false)).unwrap());
    c2.subscribe(["shared"]).unwrap();
    produce(&bootstrap, "shared", 6, 600, 600, Compression::None).await;
    let (r1, r2) = (Reader::spawn(c1.clone()), Reader::spawn(c2.clone()));
    tokio::time::timeout(WAIT, async {
        while r1.count() + r2.count() < 600
            || c2.assignment().is_empty()
            || c1.assignment().len() + c2.assignment().len() != 6
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!("{} records; assignments {:?} {:?}", r1.count() + r2.count(), c1.assignment(), c2.assignment())
    });
    let mut got = r1.stop().await;
    got.extend(r2.stop().await);
    let a1: BTreeSet<_> = c1.assignment().into_iter().collect();
    let a2: BTreeSet<_> = c2.assignment().into_iter().collect();
    assert!(a1.is_disjoint(&a2));
    assert_eq!(a1.len() + a2.len(), 6);
    let seqs: BTreeSet<u64> = got.iter().map(|r| seq_of(r.value().unwrap()).unwrap()).collect();
    assert!((600..1200).all(|s| seqs.contains(&s)), "every new record arrived");
    assert!(seqs.iter().all(|s| *s >= 600), "nothing before the committed offsets came again");
    assert!(recorder.events.lock().unwrap().iter().any(|e| e.starts_with("revoked")));
    c1.close().await.unwrap();
    c2.close().await.unwrap();
    cluster.shutdown().await;
}

/// A partition at the end of its log must not hold up the others: a fetch of caught-up
/// partitions only is held by the broker for fetch.max.wait.ms, and while it is in flight no
/// other fetch can go to that broker. Partition 0 has one record, partition 1 has ~60 fetches'
/// worth (max.partition.fetch.bytes=16 KiB): with a 500 ms wait behind every one of those
/// fetches, reading partition 1 would take half a minute.
#[tokio::test]
async fn a_caught_up_partition_does_not_hold_up_the_others() {
    init_logs();
    let cluster = Cluster::builder().brokers(1).start().await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("uneven", 2, 1).await.unwrap();
    let producer = Producer::new(ProducerConfig::new(&bootstrap).linger(Duration::from_millis(2))).unwrap();
    let mut pending = vec![producer.send(ProducerRecord::new("uneven").partition(0).value("lonely")).await.unwrap()];
    let total = 5_000u64;
    for i in 0..total {
        let value = unique_value(i, 200);
        pending.push(producer.send(ProducerRecord::new("uneven").partition(1).value(&value)).await.unwrap());
    }
    for p in pending {
        p.await.unwrap();
    }
    producer.close(Duration::from_secs(5)).await.unwrap();

    let consumer = Consumer::new(
        config(&bootstrap, None)
            .set("fetch.max.wait.ms", "500")
            .unwrap()
            .set("max.partition.fetch.bytes", "16384")
            .unwrap(),
    )
    .unwrap();
    consumer.assign([TopicPartition::new("uneven", 0), TopicPartition::new("uneven", 1)]).unwrap();
    let started = std::time::Instant::now();
    let records = take(&consumer, total as usize + 1).await;
    let took = started.elapsed();
    let seqs: BTreeSet<u64> =
        records.iter().filter(|r| r.partition() == 1).map(|r| seq_of(r.value().unwrap()).unwrap()).collect();
    assert_eq!(seqs.len() as u64, total, "every record of partition 1 exactly once");
    assert!(took < Duration::from_secs(8), "reading took {took:?}: fetches waited behind the caught-up partition");
    consumer.close().await.unwrap();
    cluster.shutdown().await;
}

/// A partition assigned again at the position its broker's fetch session still holds is not
/// re-sent in the next incremental fetch (nothing changed), yet the response carries its new
/// records under the topic's id (Fetch v13+): they must still be recognised.
#[tokio::test]
async fn a_partition_assigned_again_at_its_session_position_gets_new_records() {
    init_logs();
    let cluster = Cluster::builder().brokers(1).start().await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("again", 1, 1).await.unwrap();
    produce(&bootstrap, "again", 1, 0, 10, Compression::None).await;
    let consumer = Consumer::new(config(&bootstrap, Some("g-again")).enable_auto_commit(false)).unwrap();
    let tp = TopicPartition::new("again", 0);
    consumer.assign([tp.clone()]).unwrap();
    assert_eq!(take(&consumer, 10).await.len(), 10);
    consumer.commit().await.unwrap();
    // Let a fetch at the end of the log go out, so the session holds the partition there.
    assert!(consumer.poll(Duration::from_millis(300)).await.unwrap().is_empty());
    consumer.assign([]).unwrap();
    assert!(consumer.poll(Duration::from_millis(300)).await.unwrap().is_empty());
    produce(&bootstrap, "again", 1, 10, 5, Compression::None).await;
    // Assigned again: the committed offset (10) is where the session left it.
    consumer.assign([tp.clone()]).unwrap();
    let records = take(&consumer, 5).await;
    let seqs: Vec<u64> = records.iter().map(|r| seq_of(r.value().unwrap()).unwrap()).collect();
    assert_eq!(seqs, (10..15).collect::<Vec<_>>());
    consumer.close().await.unwrap();
    cluster.shutdown().await;
}

/// `close` sends LeaveGroup, so the other members take the partitions over at once instead
/// of after the departed member's session timeout (6 s here).
#[tokio::test]
async fn close_leaves_the_group_at_once() {
    init_logs();
    let cluster = Cluster::builder().brokers(1).start().await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("leaving", 4, 1).await.unwrap();
    let c1 = Arc::new(Consumer::new(config(&bootstrap, Some("g-leave"))).unwrap());
    let c2 = Arc::new(Consumer::new(config(&bootstrap, Some("g-leave"))).unwrap());
    c1.subscribe(["leaving"]).unwrap();
    c2.subscribe(["leaving"]).unwrap();
    let (r1, r2) = (Reader::spawn(c1.clone()), Reader::spawn(c2.clone()));
    tokio::time::timeout(WAIT, async {
        while c1.assignment().len() != 2 || c2.assignment().len() != 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("assignments {:?} {:?}", c1.assignment(), c2.assignment()));
    r1.stop().await;
    c1.close().await.unwrap();
    let closed = std::time::Instant::now();
    tokio::time::timeout(WAIT, async {
        while c2.assignment().len() != 4 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("c2 owns {:?}", c2.assignment()));
    let took = closed.elapsed();
    assert!(took < Duration::from_secs(4), "the takeover took {took:?}: no LeaveGroup?");
    r2.stop().await;
    c2.close().await.unwrap();
    cluster.shutdown().await;
}
