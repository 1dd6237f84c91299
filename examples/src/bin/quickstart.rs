//! The quick start, runnable with no setup: `cargo run -p kafka-examples --bin quickstart`.
//!
//! Starts a three-broker bundled cluster inside this process, creates a topic, and sends
//! 100,000 keyed records through an idempotent, lz4-compressing producer while the cluster
//! moves a partition leader and drops a connection under it. Then it prints where the records
//! landed and checks the log holds each exactly once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kafka_broker::{Action, Cluster, Times};
use kafka_client::{Compression, Producer, ProducerConfig, ProducerRecord};
use kafka_protocol::ApiKey;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. A Kafka cluster in this process: three brokers speaking the real wire protocol.
    let cluster = Cluster::builder().brokers(3).start().await?;
    println!("bundled cluster listening at {}", cluster.bootstrap_servers());
    cluster.create_topic("orders", 6, 3).await?;

    // 2. Some trouble: drop the connection of the 20th Produce request.
    let mut n = 0;
    cluster
        .intercept(ApiKey::Produce, Times::Once, move |_| {
            n += 1;
            if n == 20 {
                Action::DropConnection
            } else {
                Action::Pass
            }
        })
        .await?;

    // 3. An idempotent producer (the default), compressing with lz4.
    let config = ProducerConfig::new(&cluster.bootstrap_servers())
        .compression(Compression::Lz4)
        .linger(Duration::from_millis(5));
    let producer = Producer::new(config)?;

    let started = Instant::now();
    let customers = ["alice", "bob", "carol", "dave", "erin", "frank", "grace"];
    let mut deliveries = Vec::new();
    for i in 0..100_000u32 {
        let customer = customers.get(i as usize % customers.len()).copied().unwrap_or("nobody");
        let value = format!(r#"{{"order":{i},"customer":"{customer}","amount":{}}}"#, (i * 37) % 1000);
        deliveries.push(producer.send(ProducerRecord::new("orders").key(customer).value(&value)).await?);
        if i == 50_000 {
            // Move partition 0's leader to another broker mid-stream.
            let leader = cluster.partition_stats("orders", 0).await?.leader;
            cluster.set_leader("orders", 0, Some(leader % 3 + 1)).await?;
        }
    }
    let mut per_partition: BTreeMap<i32, (u64, i64)> = BTreeMap::new();
    for d in deliveries {
        let m = d.await?;
        let e = per_partition.entry(m.partition).or_default();
        e.0 += 1;
        e.1 = e.1.max(m.offset);
    }
    println!("100000 records acknowledged in {:.0} ms", started.elapsed().as_secs_f64() * 1e3);
    producer.close(Duration::from_secs(10)).await?;

    // 4. Where they went: keyed records follow Java's murmur2, so each customer has one
    //    partition; the log holds each record exactly once despite the dropped connection.
    let mut total = 0;
    for (partition, (count, last_offset)) in &per_partition {
        let stats = cluster.partition_stats("orders", *partition).await?;
        println!(
            "  partition {partition}: {count:>6} records, last offset {last_offset:>6}, log end {:>6}, leader {} (epoch {})",
            stats.high_watermark, stats.leader, stats.leader_epoch
        );
        if stats.high_watermark != *last_offset + 1 || stats.high_watermark != *count as i64 {
            return Err(format!("partition {partition}: the log does not hold exactly the acknowledged records").into());
        }
        total += count;
    }
    println!("{total} records in the log, each exactly once");
    cluster.shutdown().await;
    Ok(())
}
