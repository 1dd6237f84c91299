//! The quick start, runnable with no setup: `cargo run -p kafka-examples --bin quickstart`.
//!
//! Everything runs in this one process, against the bundled broker over real TCP:
//!
//! 1. a three-broker cluster starts and the admin client creates an `orders` topic (6
//!    partitions, 3 replicas);
//! 2. a group of three consumers (`order-service`, cooperative-sticky) joins and splits the
//!    partitions;
//! 3. an idempotent, lz4-compressing producer sends order events keyed by customer, while the
//!    cluster moves a partition leader under it;
//! 4. halfway through, one consumer leaves: the group rebalances and only its partitions move;
//! 5. one transaction writes every customer's total to `order-totals`, and a `read_committed`
//!    consumer reads them back;
//! 6. it prints what happened: partitions, offsets, rebalances, throughput, and checks that
//!    every order was consumed exactly once.
//!
//! Every step is also what you would write against a real cluster: only the first line
//! (`Cluster::builder()`) and the leader move are specific to the bundled broker.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kafka_admin::{AdminClient, AdminConfig, NewTopic};
use kafka_broker::{Cluster, PartitionStats};
use kafka_client::consumer::{BoxFuture, OffsetAndMetadata, RebalanceListener, TopicPartition};
use kafka_client::{Compression, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord};
use tokio::sync::Notify;

const ORDERS: u32 = 60_000;
const CUSTOMERS: [&str; 12] =
    ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "niaj"];
const GROUP: &str = "order-service";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the consumers saw, shared with the main task.
#[derive(Default)]
struct Account {
    /// (partition, offset) -> how many times it was handed to the application.
    seen: BTreeMap<(i32, i64), u32>,
    /// partition -> the consumers that read from it, in order.
    readers: BTreeMap<i32, Vec<String>>,
    /// Per-customer order count and amount, for the transaction.
    totals: BTreeMap<String, (u64, u64)>,
    /// Each consumer's current assignment.
    assignments: BTreeMap<String, BTreeSet<i32>>,
    /// What the rebalance listeners heard, in order.
    events: Vec<String>,
    /// The highest group generation any member reached.
    generation: i32,
    first_record: Option<Instant>,
    last_record: Option<Instant>,
}

struct Shared {
    account: Mutex<Account>,
    changed: Notify,
    started: Instant,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Account> {
        self.account.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Records the listener calls: the account shows them as the rebalances.
struct Listener {
    name: String,
    shared: Arc<Shared>,
}

fn partitions_text(partitions: &[TopicPartition]) -> String {
    let list: Vec<String> = partitions.iter().map(|tp| tp.partition.to_string()).collect();
    list.join(",")
}

impl RebalanceListener for Listener {
    fn on_partitions_revoked<'a>(
        &'a self,
        consumer: &'a Consumer,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if partitions.is_empty() {
                return;
            }
            // Everything handed out was processed (records are processed inside the poll
            // loop), so committing here means the next owner starts exactly where we stopped.
            if let Err(e) = consumer.commit().await {
                eprintln!("{}: commit on revoke failed: {e}", self.name);
            }
            let mut a = self.shared.lock();
            let at = self.shared.started.elapsed().as_secs_f64();
            a.events.push(format!("{at:6.2}s  {} gave up partitions {}", self.name, partitions_text(partitions)));
            if let Some(set) = a.assignments.get_mut(&self.name) {
                for tp in partitions {
                    set.remove(&tp.partition);
                }
            }
            drop(a);
            self.shared.changed.notify_waiters();
        })
    }

    fn on_partitions_assigned<'a>(
        &'a self,
        consumer: &'a Consumer,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let generation = consumer.group_metadata().map(|m| m.generation_id).unwrap_or(-1);
            let mut a = self.shared.lock();
            a.generation = a.generation.max(generation);
            if !partitions.is_empty() {
                let at = self.shared.started.elapsed().as_secs_f64();
                a.events.push(format!(
                    "{at:6.2}s  {} got partitions {} (generation {generation})",
                    self.name,
                    partitions_text(partitions)
                ));
            }
            let set = a.assignments.entry(self.name.clone()).or_default();
            set.extend(partitions.iter().map(|tp| tp.partition));
            drop(a);
            self.shared.changed.notify_waiters();
        })
    }
}

/// One member of the group: polls, "processes" (adds to the account), commits after each
/// batch, and leaves cleanly when told to or when everything was consumed.
async fn run_consumer(
    name: String,
    bootstrap: String,
    shared: Arc<Shared>,
    leave: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
) -> Result<(), BoxError> {
    let config = ConsumerConfig::new(&bootstrap)
        .set("group.id", GROUP)?
        .set("client.id", &name)?
        .set("auto.offset.reset", "earliest")?
        .set("enable.auto.commit", "false")?
        .set("partition.assignment.strategy", "cooperative-sticky")?;
    let consumer = Consumer::with_listener(config, Listener { name: name.clone(), shared: shared.clone() })?;
    consumer.subscribe(["orders"])?;
    while !leave.load(Ordering::Acquire) && !done.load(Ordering::Acquire) {
        let records = consumer.poll(Duration::from_millis(100)).await?;
        if records.is_empty() {
            continue;
        }
        {
            let mut a = shared.lock();
            let now = Instant::now();
            a.first_record.get_or_insert(now);
            a.last_record = Some(now);
            for r in &records {
                *a.seen.entry((r.partition(), r.offset())).or_default() += 1;
                let readers = a.readers.entry(r.partition()).or_default();
                if readers.last() != Some(&name) {
                    readers.push(name.clone());
                }
                let customer = String::from_utf8_lossy(r.key().unwrap_or_default()).into_owned();
                let amount = amount_of(r.value().unwrap_or_default());
                let total = a.totals.entry(customer).or_default();
                total.0 += 1;
                total.1 += amount;
            }
        }
        shared.changed.notify_waiters();
        consumer.commit().await?;
    }
    // close(): the listener gives up the partitions (committing), then LeaveGroup, so the
    // group rebalances at once instead of waiting out the session timeout.
    consumer.close().await?;
    shared.lock().assignments.remove(&name);
    shared.changed.notify_waiters();
    Ok(())
}

/// The `amount` field of an order event (the value is a small JSON object).
fn amount_of(value: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(value);
    text.split("\"amount\":").nth(1).and_then(|rest| rest.trim_end_matches('}').parse().ok()).unwrap_or(0)
}

/// Waits until `ready` holds for the account (re-checked on every change).
async fn wait_for(shared: &Shared, what: &str, ready: impl Fn(&Account) -> bool) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let changed = shared.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if ready(&shared.lock()) {
            return Ok(());
        }
        if tokio::time::timeout_at(deadline.into(), changed).await.is_err() {
            let a = shared.lock();
            return Err(format!(
                "gave up waiting for {what}: {} consumed, assignments {}, events:\n{}",
                a.seen.len(),
                assignment_line(&a),
                a.events.join("\n")
            )
            .into());
        }
    }
}

fn assignment_line(a: &Account) -> String {
    let parts: Vec<String> = a
        .assignments
        .iter()
        .map(|(name, set)| {
            let list: Vec<String> = set.iter().map(|p| p.to_string()).collect();
            format!("{name} [{}]", list.join(","))
        })
        .collect();
    parts.join("  ")
}

fn per_second(count: u64, elapsed: Duration) -> String {
    let rate = count as f64 / elapsed.as_secs_f64().max(1e-9);
    format!("{rate:.0}/s")
}

type Committed = BTreeMap<TopicPartition, Result<Option<OffsetAndMetadata>, kafka_admin::Error>>;

/// Step 6: prints the account and returns what does not balance.
fn report(
    a: &Account,
    logs: &BTreeMap<i32, PartitionStats>,
    committed: &Committed,
    acked: &BTreeMap<i32, u64>,
) -> Result<Vec<String>, BoxError> {
    let consume_time = match (a.first_record, a.last_record) {
        (Some(first), Some(last)) => last.duration_since(first),
        _ => Duration::ZERO,
    };
    let duplicates: u32 = a.seen.values().map(|n| n - 1).sum();
    println!(
        "6. consumed {} distinct orders ({} while producing and after), {duplicates} handed out twice",
        a.seen.len(),
        per_second(a.seen.len() as u64, consume_time)
    );
    println!("\n   partition  leader  acked  log-end  committed  consumed-by");
    let mut problems = Vec::new();
    for partition in 0..6 {
        let stats = logs.get(&partition).ok_or("partition stats missing")?;
        let tp = TopicPartition::new("orders", partition);
        let committed = committed.get(&tp).and_then(|r| r.as_ref().ok()).and_then(|o| o.as_ref()).map(|o| o.offset);
        let acked = acked.get(&partition).copied().unwrap_or(0);
        let readers = a.readers.get(&partition).map(|r| r.join(" -> ")).unwrap_or_default();
        println!(
            "   {partition:>9}  {:>6}  {acked:>5}  {:>7}  {:>9}  {readers}",
            stats.leader,
            stats.high_watermark,
            committed.map(|c| c.to_string()).unwrap_or_else(|| "-".to_owned()),
        );
        let seen = a.seen.keys().filter(|(p, _)| *p == partition).count() as u64;
        if stats.high_watermark != acked as i64 || seen != acked || committed != Some(stats.high_watermark) {
            problems.push(format!(
                "partition {partition}: {acked} acked, log end {}, {seen} consumed, committed {committed:?}",
                stats.high_watermark
            ));
        }
    }
    println!(
        "\n   what the rebalance listeners heard (group generation {} at the end; the last lines are the members closing):",
        a.generation
    );
    for e in &a.events {
        println!("   {e}");
    }
    if duplicates != 0 {
        problems.push(format!("{duplicates} records were handed out twice"));
    }
    Ok(problems)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let started = Instant::now();

    // 1. A Kafka cluster in this process: three brokers speaking the real wire protocol.
    let cluster = Cluster::builder().brokers(3).start().await?;
    let bootstrap = cluster.bootstrap_servers();
    println!("1. bundled cluster: 3 brokers listening at {bootstrap}");
    let admin = AdminClient::new(AdminConfig::new(&bootstrap))?;
    for (topic, created) in
        admin.create_topics([NewTopic::new("orders", 6, 3), NewTopic::new("order-totals", 1, 3)], false).await?
    {
        created.map_err(|e| format!("creating {topic}: {e}"))?;
    }
    println!("   topics created with the admin client: orders (6 partitions, 3 replicas), order-totals (1 partition)");

    // 2. A group of three consumers; wait until they split the six partitions.
    let shared = Arc::new(Shared { account: Mutex::new(Account::default()), changed: Notify::new(), started });
    let done = Arc::new(AtomicBool::new(false));
    let mut members = Vec::new();
    let mut leave_signals = Vec::new();
    for i in 1..=3 {
        let leave = Arc::new(AtomicBool::new(false));
        leave_signals.push(leave.clone());
        members.push(tokio::spawn(run_consumer(
            format!("consumer-{i}"),
            bootstrap.clone(),
            shared.clone(),
            leave,
            done.clone(),
        )));
    }
    wait_for(&shared, "the group to assign all six partitions to three members", |a| {
        a.assignments.len() == 3 && a.assignments.values().all(|s| s.len() == 2)
    })
    .await?;
    println!("2. group {GROUP} formed (cooperative-sticky): {}", assignment_line(&shared.lock()));

    // 3. An idempotent producer (the default), lz4, keyed by customer: each customer's
    //    orders land in one partition, in order. Partition 0's leader moves halfway.
    let producer =
        Producer::new(ProducerConfig::new(&bootstrap).compression(Compression::Lz4).linger(Duration::from_millis(5)))?;
    let produce_started = Instant::now();
    let mut deliveries = Vec::new();
    let mut moved = None;
    for i in 0..ORDERS {
        let customer = CUSTOMERS.get(i as usize % CUSTOMERS.len()).copied().unwrap_or("nobody");
        let value = format!(r#"{{"order":{i},"customer":"{customer}","amount":{}}}"#, (i * 37) % 1000);
        deliveries.push(producer.send(ProducerRecord::new("orders").key(customer).value(&value)).await?);
        if i == ORDERS / 2 {
            let from = cluster.partition_stats("orders", 0).await?.leader;
            let to = from % 3 + 1;
            cluster.set_leader("orders", 0, Some(to)).await?;
            moved = Some((from, to));
        }
    }
    let mut acked: BTreeMap<i32, u64> = BTreeMap::new();
    for d in deliveries {
        *acked.entry(d.await?.partition).or_default() += 1;
    }
    let produce_time = produce_started.elapsed();
    producer.close(Duration::from_secs(10)).await?;
    println!(
        "3. produced {ORDERS} orders for {} customers in {:.2} s ({}; idempotent, lz4)",
        CUSTOMERS.len(),
        produce_time.as_secs_f64(),
        per_second(u64::from(ORDERS), produce_time)
    );
    if let Some((from, to)) = moved {
        println!(
            "   partition 0's leader moved from broker {from} to broker {to} mid-stream; the producer followed it"
        );
    }

    // 4. Once half the orders were consumed, consumer-3 leaves.
    wait_for(&shared, "half of the orders to be consumed", |a| a.seen.len() as u32 >= ORDERS / 2).await?;
    let leaving = shared.lock().assignments.get("consumer-3").cloned().unwrap_or_default();
    if let Some(leave) = leave_signals.get(2) {
        leave.store(true, Ordering::Release);
    }
    wait_for(&shared, "the group to give consumer-3's partitions to the others", |a| {
        !a.assignments.contains_key("consumer-3") && a.assignments.values().map(BTreeSet::len).sum::<usize>() == 6
    })
    .await?;
    let leaving: Vec<String> = leaving.iter().map(|p| p.to_string()).collect();
    let (consumed_so_far, now_assigned) = {
        let a = shared.lock();
        (a.seen.len(), assignment_line(&a))
    };
    println!(
        "4. consumer-3 left after {consumed_so_far} records were consumed; its partitions {} moved: {now_assigned}",
        leaving.join(",")
    );
    wait_for(&shared, "every order to be consumed", |a| a.seen.len() as u32 >= ORDERS).await?;
    done.store(true, Ordering::Release);
    for m in members {
        m.await??;
    }

    // 5. One transaction: every customer's total, written atomically.
    let totals = shared.lock().totals.clone();
    let txn_producer = Producer::new(ProducerConfig::new(&bootstrap).set("transactional.id", "quickstart-totals")?)?;
    txn_producer.init_transactions().await?;
    txn_producer.begin_transaction()?;
    for (customer, (count, amount)) in &totals {
        let value = format!(r#"{{"customer":"{customer}","orders":{count},"amount":{amount}}}"#);
        drop(txn_producer.send(ProducerRecord::new("order-totals").key(customer.as_str()).value(&value)).await?);
    }
    txn_producer.commit_transaction().await?;
    txn_producer.close(Duration::from_secs(10)).await?;
    let reader = Consumer::new(
        ConsumerConfig::new(&bootstrap)
            .set("isolation.level", "read_committed")?
            .set("auto.offset.reset", "earliest")?,
    )?;
    reader.assign([TopicPartition::new("order-totals", 0)])?;
    let mut committed_totals = Vec::new();
    while committed_totals.len() < totals.len() {
        let r = tokio::time::timeout(Duration::from_secs(30), reader.recv())
            .await
            .map_err(|_| "the committed totals did not arrive")??;
        committed_totals.push(r.offset());
    }
    reader.close().await?;
    let totals_end = cluster.partition_stats("order-totals", 0).await?.high_watermark;
    println!(
        "5. one transaction wrote {} customer totals to order-totals; a read_committed consumer read them at \
         offsets {}-{} (log end {totals_end}: the commit marker takes one offset)",
        totals.len(),
        committed_totals.first().copied().unwrap_or(-1),
        committed_totals.last().copied().unwrap_or(-1),
    );

    // 6. The account, checked against the brokers' logs and the group's committed offsets.
    let committed = admin.list_consumer_group_offsets(GROUP, None).await?;
    let mut logs = BTreeMap::new();
    for partition in 0..6 {
        logs.insert(partition, cluster.partition_stats("orders", partition).await?);
    }
    let problems = report(&shared.lock(), &logs, &committed, &acked)?;
    let total_time = started.elapsed();
    cluster.shutdown().await;
    if !problems.is_empty() {
        return Err(format!("the account does not balance: {}", problems.join("; ")).into());
    }
    println!(
        "\nevery order acknowledged once, stored once, consumed once and committed; {:.1} s in all",
        total_time.as_secs_f64()
    );
    Ok(())
}
