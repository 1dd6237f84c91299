//! Support for the cross-crate integration tests: reading a partition back with plain Fetch
//! requests (independent of the consumer under test), unique record values, and the checker
//! that turns what was sent and what was read into figures (lost, duplicates, reordered...),
//! and the reliability scenarios built on it.

pub mod checker;
pub mod group;
pub mod scenario;
pub mod txn;

pub use checker::{Checker, Figures, Outcome};

use std::time::Duration;

use bytes::Bytes;
use kafka_client::{Client, ClientConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use kafka_protocol::records::{RecordSetEntry, RecordSetIter};
use kafka_protocol::{ApiKey, ErrorCode};

/// Shows client and broker logs in a failing test's output (`RUST_LOG` to change the level).
pub fn init_logs() {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned());
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter(filter).try_init();
}

/// One record as stored, with the batch facts a test may check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord {
    /// The record's offset.
    pub offset: i64,
    /// Key.
    pub key: Option<Bytes>,
    /// Value.
    pub value: Option<Bytes>,
    /// Headers (key, value).
    pub headers: Vec<(String, Option<Bytes>)>,
    /// The timestamp as a consumer reports it.
    pub timestamp: i64,
    /// The producer epoch of the record's batch.
    pub producer_epoch: i16,
    /// The codec id of the record's batch.
    pub compression: u8,
}

/// Reads a whole partition, from its first offset to the high watermark, with Fetch requests
/// to the partition's leader.
pub async fn read_partition(client: &Client, topic: &str, partition: i32) -> Result<Vec<ReadRecord>, String> {
    let mut out = Vec::new();
    let mut offset = 0i64;
    for _attempt in 0..10_000 {
        let metadata = client.refresh_metadata().await.map_err(|e| e.to_string())?;
        let Some(leader) = metadata.leader(topic, partition) else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let conn = client.connection(leader).await.map_err(|e| e.to_string())?;
        // v12 is the last version that names topics (v13+ use topic ids).
        let version = conn.version(ApiKey::Fetch, 4).map_err(|e| e.to_string())?.min(12);
        let request = FetchRequest {
            replica_id: -1,
            max_wait_ms: 0,
            min_bytes: 1,
            max_bytes: 8 << 20,
            session_epoch: -1,
            cluster_id: None,
            topics: vec![FetchTopic {
                topic: topic.to_owned(),
                partitions: vec![FetchPartition {
                    partition,
                    current_leader_epoch: -1,
                    fetch_offset: offset,
                    last_fetched_epoch: -1,
                    log_start_offset: -1,
                    partition_max_bytes: 4 << 20,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            rack_id: String::new(),
            ..Default::default()
        };
        let response: FetchResponse = conn.request_at(&request, version).await.map_err(|e| e.to_string())?;
        let data = response
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == partition)
            .ok_or("no partition in the fetch response")?;
        match ErrorCode::from_code(data.error_code) {
            ErrorCode::None => {}
            ErrorCode::OffsetOutOfRange if offset == 0 => {
                offset = data.log_start_offset.max(0);
                continue;
            }
            code if code.is_retriable() => continue,
            code => return Err(format!("fetch {topic}[{partition}] at {offset}: {}", code.name())),
        }
        let records = data.records.clone().unwrap_or_default();
        let before = offset;
        for entry in RecordSetIter::new(records) {
            let RecordSetEntry::Batch(batch) = entry.map_err(|e| e.to_string())? else {
                return Err("legacy message in the log".into());
            };
            batch.verify_crc().map_err(|e| e.to_string())?;
            let header = *batch.header();
            let records = batch.records(64 << 20).map_err(|e| e.to_string())?;
            for r in records.iter() {
                let r = r.map_err(|e| e.to_string())?;
                if r.offset() < offset {
                    continue;
                }
                let headers = r
                    .headers()
                    .map(|h| (h.key_str().unwrap_or("?").to_owned(), h.value.map(Bytes::copy_from_slice)))
                    .collect::<Vec<_>>();
                out.push(ReadRecord {
                    offset: r.offset(),
                    key: r.key_bytes(),
                    value: r.value_bytes(),
                    headers,
                    timestamp: r.timestamp(),
                    producer_epoch: header.producer_epoch,
                    compression: header.compression().map(|c| c.id()).unwrap_or(255),
                });
                offset = r.offset() + 1;
            }
            offset = offset.max(header.next_offset());
        }
        if offset == before && offset >= data.high_watermark {
            return Ok(out);
        }
    }
    Err(format!("reading {topic}[{partition}] did not finish"))
}

/// Reads every partition of a topic.
pub async fn read_topic(bootstrap: &str, topic: &str, partitions: i32) -> Result<Vec<Vec<ReadRecord>>, String> {
    let client = Client::new(ClientConfig::new(bootstrap), false).map_err(|e| e.to_string())?;
    client.add_topics([topic]);
    let mut all = Vec::new();
    for p in 0..partitions {
        all.push(read_partition(&client, topic, p).await?);
    }
    client.close();
    Ok(all)
}

/// The value of record number `seq`: the number (8 bytes, big-endian), then `pad` bytes
/// derived from it, so that values are unique and checkable.
pub fn unique_value(seq: u64, pad: usize) -> Vec<u8> {
    let mut v = seq.to_be_bytes().to_vec();
    v.extend((0..pad).map(|i| (seq as usize).wrapping_mul(31).wrapping_add(i) as u8));
    v
}

/// The sequence number a value produced by [`unique_value`] carries.
pub fn seq_of(value: &[u8]) -> Option<u64> {
    value.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes)
}
