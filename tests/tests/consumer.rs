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
use kafka_integration_tests::group::{exact_split, until, Reader, WAIT};
use kafka_integration_tests::{init_logs, seq_of, unique_value};

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

fn fast_group_cluster(brokers: usize) -> kafka_broker::ClusterBuilder {
    Cluster::builder().brokers(brokers).broker_config("group.min.session.timeout.ms", "1000")
}

#[tokio::test]
async fn members_join_up_to_one_per_partition_and_a_seventh_idles() {
    init_logs();
    let cluster = fast_group_cluster(3).start().await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("six", 6, 1).await.unwrap();
    let mut members: Vec<Arc<Consumer>> = Vec::new();
    let mut readers = Vec::new();
    for _ in 0..3 {
        let c = Arc::new(Consumer::new(config(&bootstrap, Some("g-six"))).unwrap());
        c.subscribe(["six"]).unwrap();
        readers.push(Reader::spawn(c.clone()));
        members.push(c);
    }
    until("3 members with 2 partitions each", || exact_split(&members, 6, &[2, 2, 2])).await;
    for n in 4..=6 {
        let c = Arc::new(Consumer::new(config(&bootstrap, Some("g-six"))).unwrap());
        c.subscribe(["six"]).unwrap();
        readers.push(Reader::spawn(c.clone()));
        members.push(c);
        let mut sizes = vec![1; 6];
        sizes.truncate(6);
        let want: Vec<usize> = match n {
            4 => vec![1, 1, 2, 2],
            5 => vec![1, 1, 1, 1, 2],
            _ => vec![1, 1, 1, 1, 1, 1],
        };
        until(&format!("{n} members splitting 6 partitions"), || exact_split(&members, 6, &want)).await;
    }
    // A seventh member joins: one member (whichever sorts last for the range assignor)
    // gets nothing and idles.
    let seventh = Arc::new(Consumer::new(config(&bootstrap, Some("g-six"))).unwrap());
    seventh.subscribe(["six"]).unwrap();
    readers.push(Reader::spawn(seventh.clone()));
    members.push(seventh.clone());
    until("the seventh member in the current generation", || {
        let g = seventh.group_metadata().unwrap().generation_id;
        g > 0
            && members.iter().all(|m| m.group_metadata().unwrap().generation_id == g)
            && exact_split(&members, 6, &[0, 1, 1, 1, 1, 1, 1])
    })
    .await;
    let idle = members.iter().position(|m| m.assignment().is_empty()).unwrap();
    let before: Vec<usize> = readers.iter().map(Reader::count).collect();
    // Records produced now are all consumed, none by the idle member.
    produce(&bootstrap, "six", 6, 0, 600, Compression::None).await;
    until("600 records consumed", || {
        readers.iter().map(Reader::count).sum::<usize>() >= before.iter().sum::<usize>() + 600
    })
    .await;
    assert_eq!(readers[idle].count(), before[idle], "the idle member received records");
    assert!(members[idle].assignment().is_empty());
    for r in readers {
        r.stop().await;
    }
    for m in members {
        m.close().await.unwrap();
    }
    cluster.shutdown().await;
}

#[tokio::test]
async fn cooperative_sticky_keeps_consuming_partitions_that_do_not_move() {
    init_logs();
    let cluster = fast_group_cluster(1).start().await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("coop", 6, 1).await.unwrap();
    let coop = |c: ConsumerConfig| {
        c.set("partition.assignment.strategy", "cooperative-sticky").unwrap().enable_auto_commit(false)
    };
    let recorder = Recorder::default();
    let c1 = Arc::new(Consumer::with_listener(coop(config(&bootstrap, Some("g-coop"))), recorder.clone()).unwrap());
    c1.subscribe(["coop"]).unwrap();
    let r1 = Reader::spawn(c1.clone());
    until("c1 owning all 6", || c1.assignment().len() == 6).await;

    // A producer keeps writing while the second member joins.
    let stop = Arc::new(AtomicBool::new(false));
    let producing = {
        let (bootstrap, stop) = (bootstrap.clone(), stop.clone());
        tokio::spawn(async move {
            let mut next = 0;
            while !stop.load(Ordering::Relaxed) {
                produce(&bootstrap, "coop", 6, next, 60, Compression::None).await;
                next += 60;
            }
            next
        })
    };
    until("records flowing to c1", || r1.count() >= 120).await;
    let c2 = Arc::new(Consumer::new(coop(config(&bootstrap, Some("g-coop")))).unwrap());
    c2.subscribe(["coop"]).unwrap();
    let r2 = Reader::spawn(c2.clone());
    until("a 3/3 split", || exact_split(&[c1.clone(), c2.clone()], 6, &[3, 3])).await;
    let kept: BTreeSet<TopicPartition> = c1.assignment().into_iter().collect();
    let before = r1.count();
    until("more records on c1 after the rebalance", || r1.count() >= before + 60).await;
    stop.store(true, Ordering::Relaxed);
    let produced = producing.await.unwrap();
    until("every record consumed", || r1.count() + r2.count() >= produced as usize).await;
    let got1 = r1.stop().await;
    let got2 = r2.stop().await;

    // Only the partitions that moved were revoked, and nothing was lost.
    let events = recorder.events.lock().unwrap().clone();
    assert!(events.iter().all(|e| !e.starts_with("lost")), "{events:?}");
    assert!(events.contains(&"revoked 3".to_owned()), "{events:?}");
    // A kept partition was never repositioned: its offsets on c1 run without a gap or repeat.
    for tp in &kept {
        let offsets: Vec<i64> = got1.iter().filter(|r| &r.topic_partition() == tp).map(|r| r.offset()).collect();
        assert!(!offsets.is_empty());
        assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1), "{tp}: offsets not consecutive");
        assert_eq!(offsets[0], 0);
    }
    let distinct: BTreeSet<u64> = got1.iter().chain(&got2).map(|r| seq_of(r.value().unwrap()).unwrap()).collect();
    assert_eq!(distinct.len() as u64, produced);
    c1.close().await.unwrap();
    c2.close().await.unwrap();
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_static_member_restarted_within_its_session_keeps_its_assignment_without_a_rebalance() {
    init_logs();
    let cluster = fast_group_cluster(1).start().await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("static", 6, 1).await.unwrap();
    let stat = |id: &str| config(&bootstrap, Some("g-static")).set("group.instance.id", id).unwrap();
    let recorder = Recorder::default();
    let a = Arc::new(Consumer::with_listener(stat("a"), recorder.clone()).unwrap());
    a.subscribe(["static"]).unwrap();
    let ra = Reader::spawn(a.clone());
    let b = Arc::new(Consumer::new(stat("b")).unwrap());
    b.subscribe(["static"]).unwrap();
    let rb = Reader::spawn(b.clone());
    until("a 3/3 split", || exact_split(&[a.clone(), b.clone()], 6, &[3, 3])).await;
    let generation = a.group_metadata().unwrap().generation_id;
    let b_assignment = b.assignment();
    let events_before = recorder.events.lock().unwrap().len();
    // b goes away (static members send no LeaveGroup) and comes back at once.
    rb.stop().await;
    b.close().await.unwrap();
    drop(b);
    let b2 = Arc::new(Consumer::new(stat("b")).unwrap());
    b2.subscribe(["static"]).unwrap();
    let rb2 = Reader::spawn(b2.clone());
    until("b back with its partitions", || b2.assignment() == b_assignment).await;
    assert_eq!(b2.group_metadata().unwrap().generation_id, generation, "the restart caused a rebalance");
    assert_eq!(a.group_metadata().unwrap().generation_id, generation);
    produce(&bootstrap, "static", 6, 0, 60, Compression::None).await;
    until("records reach both", || ra.count() + rb2.count() >= 60).await;
    assert_eq!(recorder.events.lock().unwrap().len(), events_before, "a saw a rebalance");
    ra.stop().await;
    rb2.stop().await;
    cluster.shutdown().await;
}

async fn committed_offset(c: &Consumer, tp: &TopicPartition) -> Option<i64> {
    c.committed([tp.clone()]).await.unwrap()[tp].as_ref().map(|o| o.offset)
}

#[tokio::test]
async fn auto_commit_never_commits_unreturned_records_and_a_crash_resumes_there() {
    init_logs();
    let cluster = fast_group_cluster(1).start().await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("auto", 1, 1).await.unwrap();
    produce(&bootstrap, "auto", 1, 0, 1000, Compression::None).await;
    let cfg = config(&bootstrap, Some("g-auto"))
        .set("auto.commit.interval.ms", "50")
        .unwrap()
        .set("max.poll.records", "100")
        .unwrap()
        .set("session.timeout.ms", "2000")
        .unwrap();
    let tp = TopicPartition::new("auto", 0);
    let c1 = Consumer::new(cfg.clone()).unwrap();
    c1.subscribe(["auto"]).unwrap();
    let mut handed_out = 0i64;
    for round in 0..3 {
        let batch = take(&c1, 1).await;
        let end = batch.last().unwrap().offset() + 1;
        assert_eq!(batch.first().unwrap().offset(), handed_out);
        // Auto-commit reaches what earlier polls returned ...
        if round > 0 {
            let deadline = tokio::time::Instant::now() + WAIT;
            while committed_offset(&c1, &tp).await != Some(handed_out) {
                assert!(tokio::time::Instant::now() < deadline, "auto-commit never reached {handed_out}");
            }
        }
        // ... and never the records of the latest poll, however many intervals pass.
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(60)).await;
            let c = committed_offset(&c1, &tp).await;
            assert!(c.unwrap_or(0) <= handed_out, "committed {c:?} past the {handed_out} already processed");
        }
        handed_out = end;
    }
    // Crash: dropped without close (no final commit, no LeaveGroup).
    let last_committed = committed_offset(&c1, &tp).await.unwrap();
    drop(c1);
    let c2 = Consumer::new(cfg).unwrap();
    c2.subscribe(["auto"]).unwrap();
    let first = tokio::time::timeout(WAIT, c2.recv()).await.unwrap().unwrap();
    assert_eq!(first.offset(), last_committed, "the new member starts at the last committed offset");
    c2.close().await.unwrap();
    cluster.shutdown().await;
}

#[tokio::test]
async fn prefetch_stays_bounded_while_the_application_does_not_read() {
    init_logs();
    let cluster = Cluster::builder().brokers(1).start().await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("bounded", 4, 1).await.unwrap();
    // About 24 MB of records.
    let producer = Producer::new(ProducerConfig::new(&bootstrap).linger(Duration::from_millis(5))).unwrap();
    let value = vec![7u8; 1000];
    let mut pending = Vec::new();
    for i in 0..24_000u64 {
        pending
            .push(producer.send(ProducerRecord::new("bounded").partition((i % 4) as i32).value(&value)).await.unwrap());
    }
    for p in pending {
        p.await.unwrap();
    }
    producer.close(Duration::from_secs(5)).await.unwrap();
    let limit_kb = 1024;
    let partition_max = 256 * 1024;
    let consumer = Consumer::new(
        config(&bootstrap, None)
            .set("queued.max.messages.kbytes", &limit_kb.to_string())
            .unwrap()
            .set("max.partition.fetch.bytes", &partition_max.to_string())
            .unwrap(),
    )
    .unwrap();
    consumer.assign((0..4).map(|p| TopicPartition::new("bounded", p))).unwrap();
    let first = take(&consumer, 10).await.len();
    // The application stops reading: the buffer fills to its bound and stays there.
    let bound = limit_kb * 1024 + 4 * partition_max;
    let mut peak = 0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        peak = peak.max(consumer.buffered_bytes());
        assert!(consumer.buffered_bytes() <= bound, "{} buffered, bound {bound}", consumer.buffered_bytes());
    }
    assert!(peak >= limit_kb * 1024 / 2, "prefetch did not fill ({peak})");
    // Reading again drains everything.
    let rest = take(&consumer, 24_000 - first).await;
    assert_eq!(rest.len(), 24_000 - first);
    consumer.close().await.unwrap();
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_pattern_picks_up_new_topics_and_added_partitions_and_a_moved_coordinator_is_found_again() {
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
    use kafka_protocol::messages::CreatePartitionsRequest;
    init_logs();
    let cluster = fast_group_cluster(2).start().await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("pat-a", 2, 1).await.unwrap();
    cluster.create_topic("other", 2, 1).await.unwrap();
    let consumer =
        Arc::new(Consumer::new(config(&bootstrap, Some("g-pat")).set("metadata.max.age.ms", "200").unwrap()).unwrap());
    consumer.subscribe_pattern("pat-.*").unwrap();
    let reader = Reader::spawn(consumer.clone());
    until("pat-a's 2 partitions", || consumer.assignment().len() == 2).await;
    cluster.create_topic("pat-b", 3, 1).await.unwrap();
    until("pat-b joins the assignment", || consumer.assignment().len() == 5).await;
    assert!(consumer.assignment().iter().all(|tp| tp.topic.starts_with("pat-")));
    // Partitions added to a subscribed topic trigger a rebalance that assigns them.
    let conn = consumer.client().any_connection().await.unwrap();
    let response = conn
        .request(&CreatePartitionsRequest {
            topics: vec![CreatePartitionsTopic {
                name: "pat-a".into(),
                count: 4,
                assignments: None,
                ..Default::default()
            }],
            timeout_ms: 5000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(response.results[0].error_code, 0);
    until("pat-a's new partitions", || consumer.assignment().len() == 7).await;

    // The coordinator moves: the member finds it again and keeps its partitions.
    let generation = consumer.group_metadata().unwrap().generation_id;
    cluster.move_coordinator("g-pat").await.unwrap();
    produce(&bootstrap, "pat-b", 3, 0, 30, Compression::None).await;
    until("records after the move", || reader.count() >= 30).await;
    consumer.commit().await.unwrap();
    assert_eq!(consumer.assignment().len(), 7);
    assert_eq!(consumer.group_metadata().unwrap().generation_id, generation);
    reader.stop().await;
    consumer.close().await.unwrap();
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

/// A rebalance listener whose revocation takes a while (a slow commit), counting its calls.
struct SlowRevoke {
    calls: Arc<std::sync::atomic::AtomicUsize>,
}

impl RebalanceListener for SlowRevoke {
    fn on_partitions_revoked<'a>(
        &'a self,
        consumer: &'a Consumer,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if partitions.is_empty() {
                return;
            }
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(150)).await;
            consumer.commit().await.unwrap();
        })
    }
}

/// `poll` may be dropped half-way (`tokio::time::timeout`, a `select!` with a shutdown
/// signal). A revocation it was running is run again from the start by the next poll, so it is
/// never lost half-done: no record is handed to two members, and the new owner starts at the
/// offsets the revocation committed.
#[tokio::test]
async fn a_poll_dropped_during_a_revocation_runs_it_again_and_nothing_is_read_twice() {
    init_logs();
    let cluster = fast_group_cluster(1).start().await.unwrap();
    cluster.create_topic("cancel", 4, 1).await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    const N: usize = 4000;
    produce(&bootstrap, "cancel", 4, 0, N as u64, Compression::None).await;
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let manual =
        |c: ConsumerConfig| c.set("enable.auto.commit", "false").unwrap().set("max.poll.records", "100").unwrap();
    let a = Consumer::with_listener(manual(config(&bootstrap, Some("cancel"))), SlowRevoke { calls: calls.clone() })
        .unwrap();
    a.subscribe(["cancel"]).unwrap();
    let a_seen: Arc<Mutex<Vec<(i32, i64)>>> =
        Arc::new(Mutex::new(take(&a, 500).await.iter().map(|r| (r.partition(), r.offset())).collect()));
    a.commit().await.unwrap();

    // b joins (an eager rebalance: a revokes everything) and reads and commits until stopped.
    let b = Arc::new(Consumer::new(manual(config(&bootstrap, Some("cancel")))).unwrap());
    b.subscribe(["cancel"]).unwrap();
    let b_seen: Arc<Mutex<Vec<(i32, i64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let b_task = {
        let (b, b_seen, stop) = (b.clone(), b_seen.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let batch = b.poll(Duration::from_millis(50)).await.unwrap();
                b_seen.lock().unwrap().extend(batch.iter().map(|r| (r.partition(), r.offset())));
                b.commit().await.unwrap();
            }
        })
    };
    let distinct = |a_seen: &Mutex<Vec<(i32, i64)>>, b_seen: &Mutex<Vec<(i32, i64)>>| {
        let mut all: BTreeSet<(i32, i64)> = a_seen.lock().unwrap().iter().copied().collect();
        all.extend(b_seen.lock().unwrap().iter().copied());
        all.len()
    };
    // a polls with deadlines shorter than its 150 ms revocation until the revocation was
    // started twice (so the first run was dropped half-way), then with long ones, until the
    // group settled and everything was read.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let limit = Duration::from_millis(if calls.load(Ordering::SeqCst) < 2 { 60 } else { 1000 });
        if let Ok(batch) = tokio::time::timeout(limit, a.poll(Duration::from_millis(50))).await {
            let batch = batch.unwrap();
            a_seen.lock().unwrap().extend(batch.iter().map(|r| (r.partition(), r.offset())));
            if !batch.is_empty() {
                a.commit().await.unwrap();
            }
        }
        let settled = a.assignment().len() == 2 && b.assignment().len() == 2;
        if settled && distinct(&a_seen, &b_seen) >= N {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stuck: a has {} partitions, b {}, {} of {N} records read",
            a.assignment().len(),
            b.assignment().len(),
            distinct(&a_seen, &b_seen)
        );
    }
    stop.store(true, Ordering::Relaxed);
    b_task.await.unwrap();
    assert!(calls.load(Ordering::SeqCst) >= 2, "the revocation was never interrupted and run again");
    let handed_out = a_seen.lock().unwrap().len() + b_seen.lock().unwrap().len();
    assert_eq!(distinct(&a_seen, &b_seen), N);
    assert_eq!(handed_out, N, "{} records were handed out twice", handed_out - N);
    b.close().await.unwrap();
    a.close().await.unwrap();
    cluster.shutdown().await;
}

/// Consumes `count` records of `trunc`/0 (failing after WAIT) and returns their offsets.
async fn offsets_of(consumer: &Consumer, count: usize) -> Vec<i64> {
    take(consumer, count).await.iter().map(ConsumerRecord::offset).collect()
}

/// KIP-320 after a leader change: the consumer asks the new leader (OffsetForLeaderEpoch)
/// where the epoch it fetched last ends before fetching on. With no truncation it goes on
/// where it was; when the new leader's log ends earlier (injected: the bundled broker never
/// loses acknowledged records), it goes back to the divergence point with a reset policy, and
/// reports `Error::LogTruncation` with `auto.offset.reset=none`.
#[tokio::test]
async fn a_leader_change_validates_the_position_and_handles_a_truncated_log() {
    use kafka_broker::{Action, Times};
    use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
    use kafka_protocol::messages::{OffsetForLeaderEpochResponse, ResponseBody};
    use kafka_protocol::ApiKey;
    init_logs();
    let cluster = Cluster::builder().brokers(3).start().await.unwrap();
    cluster.create_topic("trunc", 1, 3).await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    produce(&bootstrap, "trunc", 1, 0, 100, Compression::None).await;
    let tp = TopicPartition::new("trunc", 0);
    let consumer = |name: &str, reset: &str| {
        let config = config(&bootstrap, None).set("auto.offset.reset", reset).unwrap().set("client.id", name).unwrap();
        let c = Consumer::new(config).unwrap();
        c.assign([tp.clone()]).unwrap();
        c
    };
    let plain = consumer("plain", "earliest");
    let resetting = consumer("resetting", "earliest");
    for c in [&plain, &resetting] {
        assert_eq!(offsets_of(c, 100).await, (0..100).collect::<Vec<_>>());
    }
    // Positioned by a seek, without a leader epoch, and with no reset policy.
    let strict = consumer("strict", "none");
    strict.seek(&tp, 100).unwrap();

    // To `resetting` and `strict`, the new leaders claim their log ended at 60 for the first
    // epoch; `plain` gets the real broker's answer.
    let before = cluster.partition_stats("trunc", 0).await.unwrap();
    let epoch = before.leader_epoch;
    cluster
        .intercept(ApiKey::OffsetForLeaderEpoch, Times::Always, move |req| {
            if req.client_id == Some("plain") {
                return Action::Pass;
            }
            Action::Respond(ResponseBody::OffsetForLeaderEpoch(OffsetForLeaderEpochResponse {
                topics: vec![OffsetForLeaderTopicResult {
                    topic: "trunc".into(),
                    partitions: vec![EpochEndOffset {
                        partition: 0,
                        leader_epoch: epoch,
                        end_offset: 60,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }))
        })
        .await
        .unwrap();
    let next = before.leader % 3 + 1;
    cluster.set_leader("trunc", 0, Some(next)).await.unwrap();
    produce(&bootstrap, "trunc", 1, 100, 50, Compression::None).await;
    assert_eq!(offsets_of(&plain, 50).await, (100..150).collect::<Vec<_>>(), "no truncation: it goes on");
    let asked: BTreeSet<String> = cluster
        .request_log()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.api_key == ApiKey::OffsetForLeaderEpoch)
        .filter_map(|r| r.client_id)
        .collect();
    assert!(asked.contains("plain"), "the position was not validated after the leader change: {asked:?}");
    // `resetting` has read 0..100 under the old epoch: it goes back to 60.
    assert_eq!(offsets_of(&resetting, 90).await, (60..150).collect::<Vec<_>>(), "repositioned at the divergence");
    // `strict` was positioned at 100 without an epoch: the first fetch learns the epoch of
    // the records it reads; nothing to validate until the leader changes again.
    assert_eq!(offsets_of(&strict, 50).await, (100..150).collect::<Vec<_>>());
    cluster.set_leader("trunc", 0, Some(next % 3 + 1)).await.unwrap();
    let err = tokio::time::timeout(WAIT, async {
        loop {
            match strict.poll(Duration::from_millis(100)).await {
                Ok(batch) => assert!(batch.is_empty(), "records after a truncation with reset=none"),
                Err(e) => return e,
            }
        }
    })
    .await
    .expect("no truncation error");
    match err {
        Error::LogTruncation { position, end_offset, .. } => {
            assert_eq!((position, end_offset), (150, 60));
        }
        other => panic!("expected LogTruncation, got {other}"),
    }
    cluster.shutdown().await;
}

/// A rebalance callback still queued when the application unsubscribes (the member heard of
/// a rebalance while the application was not polling) must not run afterwards: the
/// partitions are gone, and the listener already heard of their revocation from
/// `unsubscribe`.
#[tokio::test]
async fn unsubscribe_drops_rebalance_callbacks_still_queued() {
    use kafka_protocol::messages::ApiKey;
    init_logs();
    let cluster = Cluster::builder().start().await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("unsub", 4, 1).await.unwrap();
    produce(&bootstrap, "unsub", 4, 0, 40, Compression::None).await;

    // Records callbacks without committing (a commit during the rebalance would be refused).
    #[derive(Default, Clone)]
    struct Events(Arc<Mutex<Vec<String>>>);
    impl RebalanceListener for Events {
        fn on_partitions_revoked<'a>(&'a self, _c: &'a Consumer, p: &'a [TopicPartition]) -> BoxFuture<'a, ()> {
            self.0.lock().unwrap().push(format!("revoked {}", p.len()));
            Box::pin(async {})
        }
        fn on_partitions_assigned<'a>(&'a self, _c: &'a Consumer, p: &'a [TopicPartition]) -> BoxFuture<'a, ()> {
            self.0.lock().unwrap().push(format!("assigned {}", p.len()));
            Box::pin(async {})
        }
        fn on_partitions_lost<'a>(&'a self, _c: &'a Consumer, p: &'a [TopicPartition]) -> BoxFuture<'a, ()> {
            self.0.lock().unwrap().push(format!("lost {}", p.len()));
            Box::pin(async {})
        }
    }
    let recorder = Events::default();
    let c1 = Consumer::with_listener(
        config(&bootstrap, Some("g-unsub")).enable_auto_commit(false).set("client.id", "first").unwrap(),
        recorder.clone(),
    )
    .unwrap();
    c1.subscribe(["unsub"]).unwrap();
    take(&c1, 40).await;
    assert_eq!(c1.assignment().len(), 4);
    assert_eq!(*recorder.0.lock().unwrap(), ["assigned 4"]);

    // A second member joins while the first does not poll: the first member's heartbeat
    // answer starts a rebalance, and its revocation waits for the application's next poll.
    cluster.clear_request_log().await.unwrap();
    let c2 = Arc::new(Consumer::new(config(&bootstrap, Some("g-unsub")).set("client.id", "second").unwrap()).unwrap());
    c2.subscribe(["unsub"]).unwrap();
    let r2 = Reader::spawn(c2.clone());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let log = cluster.request_log().await.unwrap();
        let joined =
            log.iter().position(|r| r.api_key == ApiKey::JoinGroup && r.client_id.as_deref() == Some("second"));
        let heard = joined.is_some_and(|j| {
            log.iter().skip(j + 1).any(|r| r.api_key == ApiKey::Heartbeat && r.client_id.as_deref() == Some("first"))
        });
        if heard {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the first member never heartbeated after the join");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    c1.unsubscribe().await.unwrap();
    assert!(c1.assignment().is_empty());
    // Polls after unsubscribing run no callback: neither the queued revocation (whether it
    // was queued before `unsubscribe` or after) nor anything else.
    for _ in 0..5 {
        let _ = c1.poll(Duration::from_millis(100)).await;
    }
    assert_eq!(*recorder.0.lock().unwrap(), ["assigned 4", "revoked 4"]);
    // The second member gets everything once the first has left.
    until("the second member owns all four partitions", || c2.assignment().len() == 4).await;
    r2.stop().await;
    c2.close().await.unwrap();
    cluster.shutdown().await;
}
