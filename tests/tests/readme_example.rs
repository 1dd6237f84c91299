//! The README's "Test your own service with the bundled broker" example, compiled and run.
//! `readme_shows_this_file` fails when the README's copy differs from this file, so the
//! example people copy is the one CI runs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

// README-EXAMPLE-START
use std::time::Duration;

use kafka_broker::{Action, Cluster, Times};
use kafka_client::{Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord};
use kafka_protocol::{ApiKey, ErrorCode};

/// The code under test: it confirms an order by publishing an event.
async fn confirm_order(bootstrap: &str, order_id: &str) -> Result<(), kafka_client::Error> {
    let producer = Producer::new(ProducerConfig::new(bootstrap))?;
    producer.send(ProducerRecord::new("confirmations").key(order_id).value("confirmed")).await?.await?;
    producer.close(Duration::from_secs(5)).await
}

#[tokio::test]
async fn a_confirmed_order_is_published_once_even_when_the_leader_fails() -> Result<(), Box<dyn std::error::Error>> {
    // Three brokers inside the test process, on ephemeral ports: no Docker, no JVM.
    let cluster = Cluster::builder().brokers(3).start().await?;
    cluster.create_topic("confirmations", 3, 3).await?;
    // The first produce request is refused as if leadership had just moved.
    cluster.intercept(ApiKey::Produce, Times::Once, |_| Action::Error(ErrorCode::NotLeaderOrFollower)).await?;

    confirm_order(&cluster.bootstrap_servers(), "order-42").await?;

    let config = ConsumerConfig::new(&cluster.bootstrap_servers())
        .set("group.id", "test")?
        .set("auto.offset.reset", "earliest")?;
    let consumer = Consumer::new(config)?;
    consumer.subscribe(["confirmations"])?;
    let record = tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await??;
    assert_eq!(record.key(), Some(&b"order-42"[..]));
    assert_eq!(record.value(), Some(&b"confirmed"[..]));
    // Retried after the error, and stored once: nothing else in the partition.
    let stats = cluster.partition_stats("confirmations", record.partition()).await?;
    assert_eq!(stats.high_watermark, 1);
    cluster.shutdown().await;
    Ok(())
}
// README-EXAMPLE-END

#[test]
fn readme_shows_this_file() {
    let this = include_str!("readme_example.rs");
    let readme = include_str!("../../README.md");
    let between = |text: &'static str, start: &str, end: &str| -> Option<&'static str> {
        let from = text.find(start)? + start.len();
        let to = text[from..].find(end)? + from;
        Some(text[from..to].trim())
    };
    let example = between(this, "// README-EXAMPLE-START", "// README-EXAMPLE-END").expect("markers in this file");
    let shown = between(readme, "<!-- test-example -->\n```rust", "```").expect("the example block in README.md");
    assert_eq!(shown, example, "README.md's example differs from tests/tests/readme_example.rs: copy it over");
}
