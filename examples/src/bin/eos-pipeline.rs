//! An exactly-once consume-transform-produce pipeline: reads `orders`, writes an enriched
//! copy of each order to `orders-enriched`, and commits its input offsets inside the same
//! transaction, so every order is enriched exactly once even when an instance crashes.
//!
//! ```sh
//! cargo run -p kafka-examples --bin eos-pipeline                       # bundled cluster, demo data
//! cargo run -p kafka-examples --bin eos-pipeline -- --bootstrap-server host:9092 --instance 1
//! ```
//!
//! Without `--bootstrap-server` it starts a three-broker bundled cluster in the process,
//! writes 10,000 orders, runs two pipeline instances in one consumer group, crashes one
//! halfway (no clean shutdown: its open transaction is aborted when its replacement starts),
//! and at the end reads `orders-enriched` with a read_committed consumer to show that each
//! order appears exactly once.
//!
//! The recipe, as in the Java client:
//! 1. one `transactional.id` per instance, stable across restarts (`orders-enricher-<n>`), so a
//!    restarted instance fences its predecessor;
//! 2. the consumer reads with `isolation.level=read_committed`, auto-commit off;
//! 3. per poll: `begin_transaction`, send the outputs, `send_offsets_to_transaction` with the
//!    consumer's group metadata, `commit_transaction`;
//! 4. on an abortable error: `abort_transaction` and rewind the consumer to its committed
//!    offsets (the aborted batch is processed again); on a fatal one: stop.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use kafka_client::{
    Consumer, ConsumerConfig, Error, OffsetAndMetadata, Producer, ProducerConfig, ProducerRecord, TopicPartition,
};

const INPUT: &str = "orders";
const OUTPUT: &str = "orders-enriched";
const GROUP: &str = "orders-enricher";

/// One pipeline instance; runs until `stop` resolves or a fatal error.
async fn run_instance(
    bootstrap: String,
    instance: u32,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<u64, Error> {
    let consumer = Consumer::new(
        ConsumerConfig::new(&bootstrap)
            .set("group.id", GROUP)?
            .set("isolation.level", "read_committed")?
            .set("enable.auto.commit", "false")?
            .set("auto.offset.reset", "earliest")?
            .set("session.timeout.ms", "6000")?
            .set("heartbeat.interval.ms", "500")?,
    )?;
    consumer.subscribe([INPUT])?;
    let producer = Producer::new(
        ProducerConfig::new(&bootstrap)
            .transactional_id(format!("{GROUP}-{instance}"))
            .linger(Duration::from_millis(5)),
    )?;
    producer.init_transactions().await?;
    let mut processed = 0u64;
    while !*stop.borrow() {
        let records = consumer.poll(Duration::from_millis(200)).await?;
        if records.is_empty() {
            continue;
        }
        producer.begin_transaction()?;
        let mut offsets: BTreeMap<TopicPartition, OffsetAndMetadata> = BTreeMap::new();
        let outcome: Result<(), Error> = async {
            for r in &records {
                let order = String::from_utf8_lossy(r.value().unwrap_or_default());
                let enriched = format!("{order},\"enriched_by\":{instance}}}");
                // The delivery outcome is checked by commit_transaction (any failure aborts).
                drop(
                    producer
                        .send(ProducerRecord::new(OUTPUT).key(r.key().unwrap_or_default()).value(&enriched))
                        .await?,
                );
                offsets.insert(r.topic_partition(), OffsetAndMetadata::new(r.offset() + 1));
            }
            let group = consumer
                .group_metadata()
                .ok_or_else(|| Error::TransactionState("the consumer has no group".to_owned()))?;
            producer.send_offsets_to_transaction(&offsets, &group).await?;
            producer.commit_transaction().await
        }
        .await;
        match outcome {
            Ok(()) => processed += records.len() as u64,
            Err(e @ (Error::TransactionAbortable(_) | Error::CommitFailed(_) | Error::Timeout { .. })) => {
                eprintln!("instance {instance}: transaction aborted ({e}); reprocessing from the committed offsets");
                producer.abort_transaction().await?;
                let assignment = consumer.assignment();
                let committed = consumer.committed(assignment.clone()).await?;
                for tp in &assignment {
                    match committed.get(tp).cloned().flatten() {
                        Some(o) => consumer.seek(tp, o.offset)?,
                        None => consumer.seek_to_beginning(std::slice::from_ref(tp))?,
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
    producer.close(Duration::from_secs(10)).await?;
    consumer.close().await?;
    Ok(processed)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut bootstrap = None;
    let mut instance = 1u32;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--bootstrap-server" => bootstrap = args.next(),
            "--instance" => {
                instance = args.next().and_then(|v| v.parse().ok()).ok_or("--instance: expected a number")?
            }
            "-h" | "--help" => {
                println!("usage: eos-pipeline [--bootstrap-server HOST:PORT --instance N]");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if let Some(bootstrap) = bootstrap {
        // Against a real cluster: one instance until Ctrl-C.
        let (tx, rx) = tokio::sync::watch::channel(false);
        let worker = tokio::spawn(run_instance(bootstrap, instance, rx));
        tokio::signal::ctrl_c().await?;
        let _ = tx.send(true);
        let processed = worker.await??;
        println!("instance {instance}: {processed} records processed exactly once");
        return Ok(());
    }

    let cluster = kafka_broker::Cluster::builder().brokers(3).start().await?;
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic(INPUT, 6, 3).await?;
    cluster.create_topic(OUTPUT, 6, 3).await?;
    println!("bundled cluster at {bootstrap}; writing 10,000 orders to `{INPUT}`");
    let orders = 10_000u64;
    {
        let producer = Producer::new(ProducerConfig::new(&bootstrap))?;
        for i in 0..orders {
            let key = format!("customer-{}", i % 50);
            let value = format!("{{\"order\":{i},\"customer\":\"{key}\"");
            drop(producer.send(ProducerRecord::new(INPUT).key(&key).value(&value)).await?);
        }
        producer.close(Duration::from_secs(10)).await?;
    }

    let (tx, rx) = tokio::sync::watch::channel(false);
    let a = tokio::spawn(run_instance(bootstrap.clone(), 1, rx.clone()));
    let b = tokio::spawn(run_instance(bootstrap.clone(), 2, rx.clone()));
    // Crash instance 2 as soon as output appears: its transaction is left open.
    let watcher = Consumer::new(ConsumerConfig::new(&bootstrap).set("isolation.level", "read_uncommitted")?)?;
    let outs: Vec<TopicPartition> = (0..6).map(|p| TopicPartition::new(OUTPUT, p)).collect();
    loop {
        let written: i64 = watcher.end_offsets(&outs).await?.values().sum();
        if written > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    b.abort();
    println!("instance 2 crashed mid-stream; starting its replacement (same transactional.id)");
    let b2 = tokio::spawn(run_instance(bootstrap.clone(), 2, rx.clone()));
    // Wait until the group's committed offsets cover the input.
    let checker = Consumer::new(ConsumerConfig::new(&bootstrap).set("group.id", GROUP)?)?;
    let ins: Vec<TopicPartition> = (0..6).map(|p| TopicPartition::new(INPUT, p)).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let done: i64 =
            checker.committed(ins.clone()).await?.values().map(|o| o.as_ref().map_or(0, |o| o.offset)).sum();
        if done as u64 >= orders {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err("the pipeline did not finish within two minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = tx.send(true);
    let n1 = a.await??;
    let n2 = b2.await??;

    // Read the output as downstream consumers would: read_committed.
    let reader = Consumer::new(
        ConsumerConfig::new(&bootstrap)
            .set("isolation.level", "read_committed")?
            .set("auto.offset.reset", "earliest")?,
    )?;
    reader.assign(outs.clone())?;
    let ends = reader.end_offsets(&outs).await?;
    let mut seen: HashMap<String, u32> = HashMap::new();
    loop {
        let mut caught_up = true;
        for tp in &outs {
            if reader.position(tp).await? < ends.get(tp).copied().unwrap_or(0) {
                caught_up = false;
            }
        }
        if caught_up {
            break;
        }
        for r in reader.poll(Duration::from_millis(200)).await? {
            let v = String::from_utf8_lossy(r.value().unwrap_or_default()).into_owned();
            let order = v.split(',').next().unwrap_or_default().to_owned();
            *seen.entry(order).or_default() += 1;
        }
    }
    let duplicates = seen.values().filter(|c| **c > 1).count();
    println!(
        "instance 1 committed {n1} records, the replacement of instance 2 committed {n2}; `{OUTPUT}` holds {} distinct orders of {orders}, {duplicates} duplicated",
        seen.len()
    );
    cluster.shutdown().await;
    if seen.len() as u64 != orders || duplicates != 0 {
        return Err("exactly-once violated".into());
    }
    println!("every order enriched exactly once");
    Ok(())
}
