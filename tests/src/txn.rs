//! Helpers for transactional tests and scenarios: the transactional producer settings every
//! test uses, and reading a topic back through a consumer at an isolation level.

use std::time::Duration;

use kafka_client::{Consumer, ConsumerConfig, ConsumerRecord, ProducerConfig, TopicPartition};

/// A transactional producer's settings for tests: short linger and retry backoff, and
/// `max.block.ms` of 20 s (the longest a transactional call waits).
pub fn txn_config(bootstrap: &str, id: &str) -> ProducerConfig {
    ProducerConfig::new(bootstrap)
        .transactional_id(id)
        .linger(Duration::from_millis(1))
        .retry_backoff(Duration::from_millis(10))
        .max_block(Duration::from_secs(20))
}

/// Every record of `topic` as a consumer at `isolation` ("read_committed" or
/// "read_uncommitted") sees it, read from the start up to the end offsets (the last stable
/// offset for read_committed). Control records are never handed out.
///
/// # Errors
/// A description of what failed, or "reading back stalled" when a poll took over 30 s.
pub async fn read_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    isolation: &str,
) -> Result<Vec<ConsumerRecord>, String> {
    let config = ConsumerConfig::new(bootstrap)
        .set("isolation.level", isolation)
        .and_then(|c| c.set("auto.offset.reset", "earliest"))
        .and_then(|c| c.set("fetch.max.wait.ms", "50"))
        .map_err(|e| e.to_string())?;
    let consumer = Consumer::new(config).map_err(|e| e.to_string())?;
    let tps: Vec<TopicPartition> = (0..partitions).map(|p| TopicPartition::new(topic, p)).collect();
    consumer.assign(tps.clone()).map_err(|e| e.to_string())?;
    let ends = consumer.end_offsets(&tps).await.map_err(|e| format!("end offsets: {e}"))?;
    let mut out = Vec::new();
    loop {
        let mut done = true;
        for tp in &tps {
            let position = consumer.position(tp).await.map_err(|e| format!("position: {e}"))?;
            if position < ends.get(tp).copied().unwrap_or(0) {
                done = false;
            }
        }
        if done {
            break;
        }
        let batch = tokio::time::timeout(Duration::from_secs(30), consumer.poll(Duration::from_millis(200)))
            .await
            .map_err(|_| "reading back stalled".to_owned())?
            .map_err(|e| format!("poll: {e}"))?;
        out.extend(batch);
    }
    consumer.close().await.map_err(|e| e.to_string())?;
    Ok(out)
}
