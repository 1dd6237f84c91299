//! The consumer with `group.protocol=consumer` (KIP-848) against the bundled broker:
//! server-side assignment, revocation before reassignment, fencing after the session
//! timeout, a moved coordinator, leaving on close, the wire rule of sending only changed
//! fields, and the errors a member cannot get past.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_broker::{Action, Cluster, Times};
use kafka_client::consumer::BoxFuture;
use kafka_client::{
    Consumer, ConsumerConfig, Error, Producer, ProducerConfig, ProducerRecord, RebalanceListener, TopicPartition,
};
use kafka_integration_tests::group::{assignments, exact_split, until, Reader, WAIT};
use kafka_integration_tests::{init_logs, seq_of, unique_value};
use kafka_protocol::messages::RequestBody;
use kafka_protocol::{ApiKey, ErrorCode};

/// A cluster whose consumer groups heartbeat every 100 ms and expire after 2 s.
fn cluster(brokers: usize) -> kafka_broker::ClusterBuilder {
    Cluster::builder()
        .brokers(brokers)
        .broker_config("group.consumer.heartbeat.interval.ms", "100")
        .broker_config("group.consumer.session.timeout.ms", "2000")
}

fn config(bootstrap: &str, group: &str) -> ConsumerConfig {
    ConsumerConfig::new(bootstrap)
        .set("auto.offset.reset", "earliest")
        .unwrap()
        .set("group.id", group)
        .unwrap()
        .set("group.protocol", "consumer")
        .unwrap()
        .set("fetch.max.wait.ms", "100")
        .unwrap()
}

/// Writes `count` records with values `unique_value(first + i)` round-robin over partitions.
async fn produce(bootstrap: &str, topic: &str, partitions: i32, first: u64, count: u64) {
    let producer = Producer::new(ProducerConfig::new(bootstrap).linger(Duration::from_millis(2))).unwrap();
    let mut pending = Vec::new();
    for i in 0..count {
        let value = unique_value(first + i, 20);
        let record = ProducerRecord::new(topic).partition(((first + i) % partitions as u64) as i32).value(&value);
        pending.push(producer.send(record).await.unwrap());
    }
    for p in pending {
        p.await.unwrap();
    }
    producer.close(Duration::from_secs(5)).await.unwrap();
}

/// Issue test 8: test 1 with `group.protocol=consumer`.
#[tokio::test]
async fn kip848_members_join_up_to_one_per_partition_and_a_seventh_idles() {
    init_logs();
    let cluster = cluster(3).start().await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("six", 6, 1).await.unwrap();
    let mut members: Vec<Arc<Consumer>> = Vec::new();
    let mut readers = Vec::new();
    for _ in 0..3 {
        let c = Arc::new(Consumer::new(config(&bootstrap, "g-six")).unwrap());
        c.subscribe(["six"]).unwrap();
        readers.push(Reader::spawn(c.clone()));
        members.push(c);
    }
    until("3 members with 2 partitions each", || exact_split(&members, 6, &[2, 2, 2])).await;
    for n in 4..=6 {
        let c = Arc::new(Consumer::new(config(&bootstrap, "g-six")).unwrap());
        c.subscribe(["six"]).unwrap();
        readers.push(Reader::spawn(c.clone()));
        members.push(c);
        let want: Vec<usize> = match n {
            4 => vec![1, 1, 2, 2],
            5 => vec![1, 1, 1, 1, 2],
            _ => vec![1, 1, 1, 1, 1, 1],
        };
        until(&format!("{n} members splitting 6 partitions"), || exact_split(&members, 6, &want)).await;
    }
    let seventh = Arc::new(Consumer::new(config(&bootstrap, "g-six")).unwrap());
    seventh.subscribe(["six"]).unwrap();
    readers.push(Reader::spawn(seventh.clone()));
    members.push(seventh.clone());
    // The seventh is a member (it has an epoch) and gets nothing; the six keep one each.
    until("the seventh member in the group", || {
        seventh.group_metadata().unwrap().generation_id > 0 && exact_split(&members, 6, &[0, 1, 1, 1, 1, 1, 1])
    })
    .await;
    let idle = members.iter().position(|m| m.assignment().is_empty()).unwrap();
    let before: Vec<usize> = readers.iter().map(Reader::count).collect();
    produce(&bootstrap, "six", 6, 0, 600).await;
    until("600 records consumed", || {
        readers.iter().map(Reader::count).sum::<usize>() >= before.iter().sum::<usize>() + 600
    })
    .await;
    assert_eq!(readers[idle].count(), before[idle], "the idle member received records");
    assert!(members[idle].assignment().is_empty());
    assert!(exact_split(&members, 6, &[0, 1, 1, 1, 1, 1, 1]), "{:?}", assignments(&members));
    for r in readers {
        r.stop().await;
    }
    for m in members {
        m.close().await.unwrap();
    }
    cluster.shutdown().await;
}

/// Who owns which partition, as the members' listeners see it, and every overlap seen.
#[derive(Default)]
struct Owners {
    owner: Mutex<HashMap<TopicPartition, usize>>,
    overlaps: Mutex<Vec<String>>,
    revocations: AtomicUsize,
}

struct Tracking {
    me: usize,
    owners: Arc<Owners>,
}

impl RebalanceListener for Tracking {
    fn on_partitions_revoked<'a>(
        &'a self,
        consumer: &'a Consumer,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            // Commit what was processed: the next owner must start exactly there.
            consumer.commit().await.unwrap();
            let mut owner = self.owners.owner.lock().unwrap();
            for tp in partitions {
                assert_eq!(owner.remove(tp), Some(self.me), "{tp} revoked from a member that did not own it");
            }
            self.owners.revocations.fetch_add(1, Ordering::Relaxed);
        })
    }

    fn on_partitions_assigned<'a>(
        &'a self,
        _consumer: &'a Consumer,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let mut owner = self.owners.owner.lock().unwrap();
            for tp in partitions {
                if let Some(other) = owner.insert(tp.clone(), self.me) {
                    self.owners.overlaps.lock().unwrap().push(format!("{tp}: {} while {other} owns it", self.me));
                }
            }
        })
    }

    fn on_partitions_lost<'a>(
        &'a self,
        _consumer: &'a Consumer,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.owners.overlaps.lock().unwrap().push(format!("member {} lost {partitions:?}", self.me));
        })
    }
}

/// Members join one by one while the group consumes: partitions move only after their
/// previous owner revoked them (its listener ran and committed), no record is handed out by
/// a member that does not own its partition, and the offsets committed in
/// `on_partitions_revoked` are where the next owner starts: every record is consumed exactly
/// once, with no gap and no repeat.
#[tokio::test]
async fn kip848_revocation_comes_before_reassignment_and_commits_in_it_hand_over_exactly() {
    init_logs();
    let cluster = cluster(1).start().await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("handover", 6, 1).await.unwrap();
    const N: u64 = 6_000;
    produce(&bootstrap, "handover", 6, 0, N).await;
    let owners = Arc::new(Owners::default());
    let mut members: Vec<Arc<Consumer>> = Vec::new();
    let mut readers: Vec<Reader> = Vec::new();
    let start = |me: usize| {
        let c = Arc::new(
            Consumer::with_listener(
                config(&bootstrap, "g-handover")
                    .set("enable.auto.commit", "false")
                    .unwrap()
                    .set("max.poll.records", "20")
                    .unwrap(),
                Tracking { me, owners: owners.clone() },
            )
            .unwrap(),
        );
        c.subscribe(["handover"]).unwrap();
        let owners = owners.clone();
        let reader = Reader::spawn_with(c.clone(), Duration::from_millis(5), move |r| {
            let tp = TopicPartition::new(r.topic(), r.partition());
            let owner = owners.owner.lock().unwrap().get(&tp).copied();
            if owner != Some(me) {
                owners
                    .overlaps
                    .lock()
                    .unwrap()
                    .push(format!("{tp}@{} handed out by {me}, owner {owner:?}", r.offset()));
            }
        });
        (c, reader)
    };
    let total = |readers: &[Reader]| readers.iter().map(Reader::count).sum::<usize>();
    for me in 0..3 {
        let (c, r) = start(me);
        members.push(c);
        readers.push(r);
        // Let this member consume a while before the next joins: partitions move mid-stream.
        let target = (me + 1) * 1_000;
        until(&format!("{target} records consumed"), || total(&readers) >= target).await;
    }
    // Partitions moved while records were still flowing.
    assert!(total(&readers) < N as usize - 1_000, "consumption ended before the group settled");
    until("3 members with 2 partitions each", || exact_split(&members, 6, &[2, 2, 2])).await;
    until("all records consumed", || total(&readers) >= N as usize).await;
    // Nothing more arrives (a repeat would show up as an extra record).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    for r in readers {
        for rec in r.stop().await {
            *seen.entry(seq_of(rec.value().unwrap()).unwrap()).or_default() += 1;
        }
    }
    let repeats: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    let missing: Vec<u64> = (0..N).filter(|s| !seen.contains_key(s)).collect();
    println!(
        "kip848 hand-over: {N} records, {} distinct, {} repeated, {} missing, {} revocations",
        seen.len(),
        repeats.len(),
        missing.len(),
        owners.revocations.load(Ordering::Relaxed)
    );
    assert!(owners.overlaps.lock().unwrap().is_empty(), "{:?}", owners.overlaps.lock().unwrap());
    assert!(repeats.is_empty(), "repeated: {:?}", &repeats[..repeats.len().min(10)]);
    assert!(missing.is_empty(), "missing: {:?}", &missing[..missing.len().min(10)]);
    assert!(owners.revocations.load(Ordering::Relaxed) >= 2, "members joining never revoked anything");
    assert!(exact_split(&members, 6, &[2, 2, 2]), "{:?}", assignments(&members));
    for m in members {
        m.close().await.unwrap();
    }
    cluster.shutdown().await;
}

/// A member that stops without leaving (dropped: no leave heartbeat) keeps its partitions
/// until the coordinator's session timeout (2 s here) fences it; then they move.
#[tokio::test]
async fn kip848_a_member_killed_without_leaving_is_fenced_after_the_session_timeout() {
    init_logs();
    let cluster = cluster(1).start().await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("killed", 4, 1).await.unwrap();
    let c1 = Arc::new(Consumer::new(config(&bootstrap, "g-killed")).unwrap());
    let c2 = Arc::new(Consumer::new(config(&bootstrap, "g-killed")).unwrap());
    c1.subscribe(["killed"]).unwrap();
    c2.subscribe(["killed"]).unwrap();
    let (r1, r2) = (Reader::spawn(c1.clone()), Reader::spawn(c2.clone()));
    until("2 partitions each", || c1.assignment().len() == 2 && c2.assignment().len() == 2).await;
    r1.stop().await;
    drop(c1);
    let killed = std::time::Instant::now();
    until("c2 owns all 4", || c2.assignment().len() == 4).await;
    let took = killed.elapsed();
    println!("kip848 fencing: partitions moved {took:?} after the kill");
    assert!(took >= Duration::from_millis(1500), "moved after {took:?}: before the session timeout");
    produce(&bootstrap, "killed", 4, 0, 40).await;
    until("c2 reads the 40 records", || r2.count() >= 40).await;
    r2.stop().await;
    c2.close().await.unwrap();
    cluster.shutdown().await;
}

/// The coordinator moves mid-run: the member finds it again, keeps its partitions and its
/// epoch, and commits work against the new coordinator.
#[tokio::test]
async fn kip848_a_moved_coordinator_is_found_again() {
    init_logs();
    let cluster = cluster(2).start().await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("moving", 4, 1).await.unwrap();
    let consumer =
        Arc::new(Consumer::new(config(&bootstrap, "g-moving").set("enable.auto.commit", "false").unwrap()).unwrap());
    consumer.subscribe(["moving"]).unwrap();
    let reader = Reader::spawn(consumer.clone());
    until("4 partitions", || consumer.assignment().len() == 4).await;
    produce(&bootstrap, "moving", 4, 0, 40).await;
    until("40 records", || reader.count() >= 40).await;
    let epoch = consumer.group_metadata().unwrap().generation_id;
    let before = cluster.group_coordinator("g-moving").await.unwrap();
    let after = cluster.move_coordinator("g-moving").await.unwrap();
    assert_ne!(before, after);
    produce(&bootstrap, "moving", 4, 40, 40).await;
    until("80 records", || reader.count() >= 80).await;
    // A few heartbeats against the new coordinator.
    tokio::time::sleep(Duration::from_millis(500)).await;
    reader.stop().await;
    consumer.commit().await.unwrap();
    assert_eq!(consumer.assignment().len(), 4);
    assert_eq!(consumer.group_metadata().unwrap().generation_id, epoch, "the member had to rejoin");
    let committed = consumer.committed(consumer.assignment()).await.unwrap();
    assert_eq!(committed.values().map(|o| o.as_ref().unwrap().offset).sum::<i64>(), 80);
    consumer.close().await.unwrap();
    cluster.shutdown().await;
}

/// `close` leaves (epoch -1), so the other member takes the partitions over at once rather
/// than after the session timeout.
#[tokio::test]
async fn kip848_close_leaves_the_group_at_once() {
    init_logs();
    let cluster = Cluster::builder()
        .brokers(1)
        .broker_config("group.consumer.heartbeat.interval.ms", "100")
        .broker_config("group.consumer.session.timeout.ms", "10000")
        .start()
        .await
        .unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("leaving", 4, 1).await.unwrap();
    let c1 = Arc::new(Consumer::new(config(&bootstrap, "g-leave")).unwrap());
    let c2 = Arc::new(Consumer::new(config(&bootstrap, "g-leave")).unwrap());
    c1.subscribe(["leaving"]).unwrap();
    c2.subscribe(["leaving"]).unwrap();
    let (r1, r2) = (Reader::spawn(c1.clone()), Reader::spawn(c2.clone()));
    until("2 partitions each", || c1.assignment().len() == 2 && c2.assignment().len() == 2).await;
    r1.stop().await;
    c1.close().await.unwrap();
    let closed = std::time::Instant::now();
    until("c2 owns all 4", || c2.assignment().len() == 4).await;
    let took = closed.elapsed();
    assert!(took < Duration::from_secs(4), "the takeover took {took:?}: no leave heartbeat?");
    r2.stop().await;
    c2.close().await.unwrap();
    cluster.shutdown().await;
}

/// On the wire: the join carries every field, later heartbeats only what changed (the
/// owned partitions once, when an assignment was reconciled); a new subscription is sent
/// alone; v1 members name themselves with a UUID.
#[tokio::test]
async fn kip848_heartbeats_carry_only_what_changed() {
    init_logs();
    let cluster = cluster(1).start().await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("wire-a", 2, 1).await.unwrap();
    cluster.create_topic("wire-b", 2, 1).await.unwrap();
    let seen: Arc<Mutex<Vec<(i16, kafka_protocol::messages::ConsumerGroupHeartbeatRequest)>>> = Arc::default();
    let s = seen.clone();
    cluster
        .intercept(ApiKey::ConsumerGroupHeartbeat, Times::Always, move |req| {
            if let RequestBody::ConsumerGroupHeartbeat(r) = req.body {
                s.lock().unwrap().push((req.version, r.clone()));
            }
            Action::Pass
        })
        .await
        .unwrap();
    let consumer =
        Arc::new(Consumer::new(config(&bootstrap, "g-wire").set("group.remote.assignor", "range").unwrap()).unwrap());
    consumer.subscribe(["wire-a"]).unwrap();
    let reader = Reader::spawn(consumer.clone());
    until("2 partitions", || consumer.assignment().len() == 2).await;
    // Wait for a few plain heartbeats after the acknowledgement.
    until("5 heartbeats", || seen.lock().unwrap().len() >= 5).await;
    consumer.subscribe(["wire-a", "wire-b"]).unwrap();
    until("4 partitions", || consumer.assignment().len() == 4).await;
    let n = seen.lock().unwrap().len();
    until("3 more heartbeats", || seen.lock().unwrap().len() >= n + 3).await;
    reader.stop().await;
    consumer.close().await.unwrap();
    let seen = seen.lock().unwrap().clone();
    let (version, join) = &seen[0];
    assert_eq!(*version, 1);
    assert_eq!(join.member_epoch, 0);
    assert_eq!(join.member_id.len(), 22, "a v1 member names itself: {:?}", join.member_id);
    assert_eq!(join.subscribed_topic_names, Some(vec!["wire-a".to_owned()]));
    assert_eq!(join.server_assignor.as_deref(), Some("range"));
    assert_eq!(join.rebalance_timeout_ms, 300_000);
    assert_eq!(join.topic_partitions, Some(vec![]));
    let rest = &seen[1..];
    assert!(rest.iter().all(|(_, r)| r.member_id == join.member_id));
    // Each owned set is reported once; most heartbeats carry nothing but the epoch.
    let with_owned: Vec<usize> = rest
        .iter()
        .filter_map(|(_, r)| r.topic_partitions.as_ref().map(|t| t.iter().map(|t| t.partitions.len()).sum()))
        .collect();
    assert_eq!(with_owned.first(), Some(&2), "{with_owned:?}");
    assert_eq!(with_owned.last(), Some(&4), "{with_owned:?}");
    let changed_subscription: Vec<&Vec<String>> =
        rest.iter().filter_map(|(_, r)| r.subscribed_topic_names.as_ref()).collect();
    assert_eq!(changed_subscription, vec![&vec!["wire-a".to_owned(), "wire-b".to_owned()]]);
    assert!(rest
        .iter()
        .all(|(_, r)| r.server_assignor.is_none() && r.rebalance_timeout_ms == -1 || r.member_epoch < 0));
    let bare = rest
        .iter()
        .filter(|(_, r)| r.topic_partitions.is_none() && r.subscribed_topic_names.is_none() && r.member_epoch > 0)
        .count();
    assert!(bare >= 3, "{bare} bare heartbeats of {}", rest.len());
    // close() left with epoch -1.
    assert_eq!(seen.last().unwrap().1.member_epoch, -1);
    cluster.shutdown().await;
}

/// A pattern goes to the coordinator as SubscribedTopicRegex (v1): topics created later
/// are assigned without the client matching anything.
#[tokio::test]
async fn kip848_a_regex_subscription_is_resolved_by_the_coordinator() {
    init_logs();
    let cluster = cluster(1).start().await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("rx-a", 2, 1).await.unwrap();
    cluster.create_topic("other", 2, 1).await.unwrap();
    let regex_sent = Arc::new(Mutex::new(None));
    let s = regex_sent.clone();
    cluster
        .intercept(ApiKey::ConsumerGroupHeartbeat, Times::Always, move |req| {
            if let RequestBody::ConsumerGroupHeartbeat(r) = req.body {
                if r.subscribed_topic_regex.is_some() {
                    *s.lock().unwrap() = r.subscribed_topic_regex.clone();
                }
            }
            Action::Pass
        })
        .await
        .unwrap();
    let consumer =
        Arc::new(Consumer::new(config(&bootstrap, "g-rx").set("metadata.max.age.ms", "200").unwrap()).unwrap());
    consumer.subscribe_pattern("rx-.*").unwrap();
    let reader = Reader::spawn(consumer.clone());
    until("rx-a's 2 partitions", || consumer.assignment().len() == 2).await;
    cluster.create_topic("rx-b", 3, 1).await.unwrap();
    until("rx-b joins the assignment", || consumer.assignment().len() == 5).await;
    assert!(consumer.assignment().iter().all(|tp| tp.topic.starts_with("rx-")));
    assert_eq!(regex_sent.lock().unwrap().as_deref(), Some("rx-.*"));
    produce(&bootstrap, "rx-b", 3, 0, 30).await;
    until("rx-b's records", || reader.count() >= 30).await;
    reader.stop().await;
    consumer.close().await.unwrap();
    cluster.shutdown().await;
}

/// A broker that answers UNSUPPORTED_VERSION (KIP-848 not enabled) gives the application a
/// clear error from `poll`, naming the way out.
#[tokio::test]
async fn kip848_a_broker_without_the_protocol_is_a_clear_error() {
    init_logs();
    let cluster = cluster(1).start().await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("old", 1, 1).await.unwrap();
    cluster
        .intercept(ApiKey::ConsumerGroupHeartbeat, Times::Always, |_| Action::Error(ErrorCode::UnsupportedVersion))
        .await
        .unwrap();
    let consumer = Consumer::new(config(&bootstrap, "g-old")).unwrap();
    consumer.subscribe(["old"]).unwrap();
    let e = tokio::time::timeout(WAIT, async {
        loop {
            match consumer.poll(Duration::from_millis(100)).await {
                Ok(r) => assert!(r.is_empty()),
                Err(e) => return e,
            }
        }
    })
    .await
    .unwrap();
    assert!(e.to_string().contains("group.protocol=classic"), "{e}");
    consumer.close().await.unwrap();
    cluster.shutdown().await;
}

/// FENCED_MEMBER_EPOCH: the member's partitions are lost (the listener hears
/// `on_partitions_lost`), it rejoins with epoch 0 and gets them back.
#[tokio::test]
async fn kip848_a_fenced_member_loses_its_partitions_and_rejoins() {
    init_logs();
    let cluster = cluster(1).start().await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("fenced", 2, 1).await.unwrap();
    #[derive(Default)]
    struct Lost(AtomicUsize);
    struct L(Arc<Lost>);
    impl RebalanceListener for L {
        fn on_partitions_lost<'a>(&'a self, _c: &'a Consumer, p: &'a [TopicPartition]) -> BoxFuture<'a, ()> {
            self.0 .0.fetch_add(p.len(), Ordering::Relaxed);
            Box::pin(async {})
        }
    }
    let lost = Arc::new(Lost::default());
    let consumer = Arc::new(Consumer::with_listener(config(&bootstrap, "g-fenced"), L(lost.clone())).unwrap());
    consumer.subscribe(["fenced"]).unwrap();
    let reader = Reader::spawn(consumer.clone());
    until("2 partitions", || consumer.assignment().len() == 2).await;
    let joins = Arc::new(AtomicUsize::new(0));
    let j = joins.clone();
    cluster
        .intercept(ApiKey::ConsumerGroupHeartbeat, Times::Always, move |req| {
            if let RequestBody::ConsumerGroupHeartbeat(r) = req.body {
                if r.member_epoch == 0 {
                    j.fetch_add(1, Ordering::Relaxed);
                }
            }
            Action::Pass
        })
        .await
        .unwrap();
    cluster
        .intercept(ApiKey::ConsumerGroupHeartbeat, Times::Once, |_| Action::Error(ErrorCode::FencedMemberEpoch))
        .await
        .unwrap();
    until("the loss heard", || lost.0.load(Ordering::Relaxed) == 2).await;
    until("a rejoin with epoch 0 and the partitions back", || {
        joins.load(Ordering::Relaxed) >= 1 && consumer.assignment().len() == 2
    })
    .await;
    produce(&bootstrap, "fenced", 2, 0, 20).await;
    until("records after the rejoin", || reader.count() >= 20).await;
    reader.stop().await;
    consumer.close().await.unwrap();
    cluster.shutdown().await;
}

/// An application that stops polling for longer than max.poll.interval.ms leaves the group
/// (its partitions go to the other member) and rejoins on its next poll.
#[tokio::test]
async fn kip848_a_stalled_application_leaves_and_rejoins_on_its_next_poll() {
    init_logs();
    let cluster = cluster(1).start().await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("stall", 4, 1).await.unwrap();
    let slow =
        Arc::new(Consumer::new(config(&bootstrap, "g-stall").set("max.poll.interval.ms", "1000").unwrap()).unwrap());
    let other = Arc::new(Consumer::new(config(&bootstrap, "g-stall")).unwrap());
    slow.subscribe(["stall"]).unwrap();
    other.subscribe(["stall"]).unwrap();
    let r_other = Reader::spawn(other.clone());
    let r_slow = Reader::spawn(slow.clone());
    until("2 partitions each", || slow.assignment().len() == 2 && other.assignment().len() == 2).await;
    // The slow application stops polling.
    r_slow.stop().await;
    until("the other member owns all 4", || other.assignment().len() == 4).await;
    // Its next poll hears of the loss and rejoins.
    let r_slow = Reader::spawn(slow.clone());
    until("2 partitions each again", || slow.assignment().len() == 2 && other.assignment().len() == 2).await;
    r_slow.stop().await;
    r_other.stop().await;
    slow.close().await.unwrap();
    other.close().await.unwrap();
    cluster.shutdown().await;
}

/// A static member (group.instance.id) that closes leaves with epoch -2: the coordinator
/// keeps its partitions for it, and the restarted member gets the same ones back while the
/// other member's assignment never changes.
#[tokio::test]
async fn kip848_a_static_member_restarted_within_its_session_gets_its_partitions_back() {
    init_logs();
    let cluster = Cluster::builder()
        .brokers(1)
        .broker_config("group.consumer.heartbeat.interval.ms", "100")
        .broker_config("group.consumer.session.timeout.ms", "10000")
        .start()
        .await
        .unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("static", 4, 1).await.unwrap();
    let static_config = || config(&bootstrap, "g-static").set("group.instance.id", "inst-1").unwrap();
    let c1 = Arc::new(Consumer::new(static_config()).unwrap());
    let c2 = Arc::new(Consumer::new(config(&bootstrap, "g-static")).unwrap());
    c1.subscribe(["static"]).unwrap();
    c2.subscribe(["static"]).unwrap();
    let (r1, r2) = (Reader::spawn(c1.clone()), Reader::spawn(c2.clone()));
    until("2 partitions each", || c1.assignment().len() == 2 && c2.assignment().len() == 2).await;
    let mine = c1.assignment();
    let theirs = c2.assignment();
    r1.stop().await;
    c1.close().await.unwrap();
    drop(c1);
    // The other member keeps exactly its own partitions while the static member is away.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(c2.assignment(), theirs);
    }
    let c1 = Arc::new(Consumer::new(static_config()).unwrap());
    c1.subscribe(["static"]).unwrap();
    let r1 = Reader::spawn(c1.clone());
    until("the same partitions back", || c1.assignment() == mine).await;
    assert_eq!(c2.assignment(), theirs);
    r1.stop().await;
    r2.stop().await;
    c1.close().await.unwrap();
    c2.close().await.unwrap();
    cluster.shutdown().await;
}

/// `unsubscribe` revokes (the listener runs), leaves at once, and a later `subscribe`
/// joins again as a new member.
#[tokio::test]
async fn kip848_unsubscribe_leaves_and_subscribe_joins_again() {
    init_logs();
    let cluster = Cluster::builder()
        .brokers(1)
        .broker_config("group.consumer.heartbeat.interval.ms", "100")
        .broker_config("group.consumer.session.timeout.ms", "10000")
        .start()
        .await
        .unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("unsub", 4, 1).await.unwrap();
    let c1 = Arc::new(Consumer::new(config(&bootstrap, "g-unsub")).unwrap());
    let c2 = Arc::new(Consumer::new(config(&bootstrap, "g-unsub")).unwrap());
    c1.subscribe(["unsub"]).unwrap();
    c2.subscribe(["unsub"]).unwrap();
    let (r1, r2) = (Reader::spawn(c1.clone()), Reader::spawn(c2.clone()));
    until("2 partitions each", || c1.assignment().len() == 2 && c2.assignment().len() == 2).await;
    r1.stop().await;
    c1.unsubscribe().await.unwrap();
    assert!(c1.assignment().is_empty());
    let left = std::time::Instant::now();
    until("c2 owns all 4", || c2.assignment().len() == 4).await;
    assert!(left.elapsed() < Duration::from_secs(4), "no leave heartbeat?");
    c1.subscribe(["unsub"]).unwrap();
    let r1 = Reader::spawn(c1.clone());
    until("2 partitions each again", || c1.assignment().len() == 2 && c2.assignment().len() == 2).await;
    produce(&bootstrap, "unsub", 4, 0, 40).await;
    until("40 records between them", || r1.count() + r2.count() >= 40).await;
    r1.stop().await;
    r2.stop().await;
    c1.close().await.unwrap();
    c2.close().await.unwrap();
    cluster.shutdown().await;
}

/// Exactly-once with a KIP-848 member: `group_metadata()` carries the member epoch as the
/// generation, the coordinator checks it on TxnOffsetCommit, and the offsets become the
/// group's committed offsets when the transaction commits.
#[tokio::test]
async fn kip848_offsets_sent_to_a_transaction_are_checked_against_the_member_epoch() {
    init_logs();
    let cluster = cluster(1).start().await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("eos-in", 2, 1).await.unwrap();
    cluster.create_topic("eos-out", 1, 1).await.unwrap();
    produce(&bootstrap, "eos-in", 2, 0, 20).await;
    let consumer = Consumer::new(
        config(&bootstrap, "g-eos")
            .set("enable.auto.commit", "false")
            .unwrap()
            .set("isolation.level", "read_committed")
            .unwrap(),
    )
    .unwrap();
    consumer.subscribe(["eos-in"]).unwrap();
    let producer = Producer::new(ProducerConfig::new(&bootstrap).transactional_id("kip848-eos")).unwrap();
    producer.init_transactions().await.unwrap();
    let mut records = Vec::new();
    tokio::time::timeout(WAIT, async {
        while records.len() < 20 {
            records.extend(consumer.poll(Duration::from_millis(100)).await.unwrap());
        }
    })
    .await
    .unwrap();
    producer.begin_transaction().unwrap();
    let mut offsets = BTreeMap::new();
    for r in &records {
        // Aborted below: these deliveries fail, which this test does not look at.
        let _aborted = producer.send(ProducerRecord::new("eos-out").value(r.value().unwrap())).await.unwrap();
        offsets.insert(
            TopicPartition::new(r.topic(), r.partition()),
            kafka_client::consumer::OffsetAndMetadata::new(r.offset() + 1),
        );
    }
    let metadata = consumer.group_metadata().unwrap();
    assert!(metadata.generation_id > 0, "{metadata:?}");
    assert!(!metadata.member_id.is_empty());
    // A stale member epoch is refused (the coordinator fences zombies with it).
    let mut stale = metadata.clone();
    stale.generation_id -= 1;
    producer.send_offsets_to_transaction(&offsets, &stale).await.unwrap_err();
    producer.abort_transaction().await.unwrap();
    producer.begin_transaction().unwrap();
    let mut deliveries = Vec::new();
    for r in &records {
        deliveries.push(producer.send(ProducerRecord::new("eos-out").value(r.value().unwrap())).await.unwrap());
    }
    producer.send_offsets_to_transaction(&offsets, &consumer.group_metadata().unwrap()).await.unwrap();
    producer.commit_transaction().await.unwrap();
    for d in deliveries {
        d.await.unwrap();
    }
    let committed = consumer.committed(offsets.keys().cloned()).await.unwrap();
    let got: BTreeMap<TopicPartition, i64> = committed.into_iter().map(|(tp, o)| (tp, o.unwrap().offset)).collect();
    let want: BTreeMap<TopicPartition, i64> = offsets.iter().map(|(tp, o)| (tp.clone(), o.offset)).collect();
    assert_eq!(got, want);
    assert_eq!(want.values().sum::<i64>(), 20);
    producer.close(Duration::from_secs(5)).await.unwrap();
    consumer.close().await.unwrap();
    cluster.shutdown().await;
}

/// Heartbeats go on while a revocation waits for the application: a member that polls only
/// every 3 s (longer than the 2 s session timeout, well within max.poll.interval.ms) is not
/// fenced when a new member's arrival makes it revoke partitions; it revokes them on its next
/// poll and keeps the rest.
#[tokio::test]
async fn kip848_a_slow_application_is_not_fenced_while_a_revocation_waits_for_its_poll() {
    init_logs();
    let cluster = cluster(1).start().await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("slow", 4, 1).await.unwrap();
    #[derive(Default)]
    struct Heard {
        revoked: AtomicUsize,
        lost: AtomicUsize,
    }
    struct L(Arc<Heard>);
    impl RebalanceListener for L {
        fn on_partitions_revoked<'a>(&'a self, _c: &'a Consumer, p: &'a [TopicPartition]) -> BoxFuture<'a, ()> {
            self.0.revoked.fetch_add(p.len(), Ordering::Relaxed);
            Box::pin(async {})
        }
        fn on_partitions_lost<'a>(&'a self, _c: &'a Consumer, p: &'a [TopicPartition]) -> BoxFuture<'a, ()> {
            self.0.lost.fetch_add(p.len(), Ordering::Relaxed);
            Box::pin(async {})
        }
    }
    let heard = Arc::new(Heard::default());
    let slow = Arc::new(Consumer::with_listener(config(&bootstrap, "g-slow"), L(heard.clone())).unwrap());
    slow.subscribe(["slow"]).unwrap();
    until("4 partitions", || slow.assignment().len() == 4).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (s, st) = (slow.clone(), stop.clone());
    let app = tokio::spawn(async move {
        while !st.load(Ordering::Relaxed) {
            s.poll(Duration::from_millis(10)).await.unwrap();
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
    });
    let other = Arc::new(Consumer::new(config(&bootstrap, "g-slow")).unwrap());
    other.subscribe(["slow"]).unwrap();
    let reader = Reader::spawn(other.clone());
    until("2 partitions each", || slow.assignment().len() == 2 && other.assignment().len() == 2).await;
    assert_eq!(heard.revoked.load(Ordering::Relaxed), 2);
    // Past two more of the slow member's polls: still in the group, nothing lost.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(heard.lost.load(Ordering::Relaxed), 0, "the slow member was fenced");
    assert_eq!(slow.assignment().len(), 2);
    assert_eq!(other.assignment().len(), 2);
    stop.store(true, Ordering::Relaxed);
    app.await.unwrap();
    reader.stop().await;
    slow.close().await.unwrap();
    other.close().await.unwrap();
    cluster.shutdown().await;
}

/// Commits go as OffsetCommit v9+ with the member id and epoch; STALE_MEMBER_EPOCH (the
/// epoch moved on while the commit was out) is retried with the current epoch, and
/// UNKNOWN_MEMBER_ID is a commit failure.
#[tokio::test]
async fn kip848_commits_carry_the_member_epoch_and_a_stale_epoch_is_retried() {
    init_logs();
    let cluster = cluster(1).start().await.unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("commits", 1, 1).await.unwrap();
    produce(&bootstrap, "commits", 1, 0, 10).await;
    let consumer =
        Arc::new(Consumer::new(config(&bootstrap, "g-commits").set("enable.auto.commit", "false").unwrap()).unwrap());
    consumer.subscribe(["commits"]).unwrap();
    let mut got = 0;
    tokio::time::timeout(WAIT, async {
        while got < 10 {
            got += consumer.poll(Duration::from_millis(100)).await.unwrap().len();
        }
    })
    .await
    .unwrap();
    let seen: Arc<Mutex<Vec<(i16, i32, String)>>> = Arc::default();
    let s = seen.clone();
    cluster
        .intercept(ApiKey::OffsetCommit, Times::Always, move |req| {
            if let RequestBody::OffsetCommit(r) = req.body {
                s.lock().unwrap().push((req.version, r.generation_id_or_member_epoch, r.member_id.clone()));
            }
            Action::Pass
        })
        .await
        .unwrap();
    cluster.intercept(ApiKey::OffsetCommit, Times::Once, |_| Action::Error(ErrorCode::StaleMemberEpoch)).await.unwrap();
    consumer.commit().await.unwrap();
    let tp = TopicPartition::new("commits", 0);
    let committed = consumer.committed([tp.clone()]).await.unwrap();
    assert_eq!(committed[&tp].as_ref().unwrap().offset, 10);
    let member = consumer.group_metadata().unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen.iter().all(|(v, epoch, id)| *v >= 9 && *epoch == member.generation_id && *id == member.member_id),
        "{seen:?}"
    );
    cluster.intercept(ApiKey::OffsetCommit, Times::Once, |_| Action::Error(ErrorCode::UnknownMemberId)).await.unwrap();
    assert!(matches!(consumer.commit().await, Err(Error::CommitFailed(_))));
    consumer.close().await.unwrap();
    cluster.shutdown().await;
}
