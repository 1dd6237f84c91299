//! A tour of the protocol crate, runnable with no setup:
//! `cargo run -p kafka-examples --bin protocol-tour`.
//!
//! Builds a record batch (zstd), wraps it in a Produce request, frames it as a client would,
//! then reads it back as a broker would, and prints what each step produced.

use bytes::BytesMut;
use kafka_protocol::compression::Compression;
use kafka_protocol::frame::{self, FrameDecoder};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, RequestBody};
use kafka_protocol::murmur2::partition_for_key;
use kafka_protocol::records::{BatchOptions, Header, ProducerState, RecordBatch, RecordBatchBuilder};
use kafka_protocol::ApiKey;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. Records go straight into a batch buffer in wire form.
    let options = BatchOptions { compression: Compression::Zstd, ..BatchOptions::default() };
    let mut builder = RecordBatchBuilder::new(options);
    let customers = ["alice", "bob", "carol", "dave"];
    for (i, customer) in customers.iter().cycle().take(1000).enumerate() {
        let value = format!(r#"{{"order":{i},"customer":"{customer}","amount":{}}}"#, (i * 37) % 1000);
        let headers = [Header { key: "source", value: Some(b"protocol-tour") }];
        builder.append(1_700_000_000_000 + i as i64, Some(customer.as_bytes()), Some(value.as_bytes()), &headers)?;
    }
    let raw = builder.size_in_bytes();
    let batch = builder.seal(ProducerState { producer_id: 4242, producer_epoch: 0, base_sequence: 0 })?;
    println!("record batch: 1000 records, {raw} bytes uncompressed, {} bytes sealed with zstd", batch.len());

    // 2. Keyed records are partitioned as the Java client does.
    for customer in customers {
        println!("  key {customer:>5} -> partition {} of 6", partition_for_key(customer.as_bytes(), 6));
    }

    // 3. A Produce request at the newest version this crate knows, framed with its header.
    let version = ApiKey::Produce.max_stable_version();
    let request = ProduceRequest {
        acks: -1,
        timeout_ms: 30_000,
        topic_data: vec![TopicProduceData {
            name: "orders".into(),
            partition_data: vec![PartitionProduceData { index: 0, records: Some(batch.clone()), ..Default::default() }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut wire = BytesMut::new();
    frame::encode_request(&mut wire, 1, Some("protocol-tour"), &request, version)?;
    println!(
        "produce request v{version}: {} bytes on the wire (header v{})",
        wire.len(),
        ApiKey::Produce.request_header_version(version)
    );

    // 4. The broker's side: split the frame, decode header and body, read the records back.
    let mut decoder = FrameDecoder::default();
    let frame = decoder.decode(&mut wire)?.ok_or("incomplete frame")?;
    let decoded = frame::decode_request(frame)?;
    let RequestBody::Produce(produce) = decoded.body else { return Err("not a produce request".into()) };
    let records = produce
        .topic_data
        .first()
        .and_then(|t| t.partition_data.first())
        .and_then(|p| p.records.clone())
        .ok_or("no records")?;
    let batch = RecordBatch::from_bytes(records)?;
    batch.verify_crc()?;
    let header = batch.header();
    println!(
        "broker read: client {:?}, producer id {}, {} records, offsets {}..={}, crc ok",
        decoded.header.client_id.unwrap_or_default(),
        header.producer_id,
        header.record_count,
        header.base_offset,
        header.last_offset()
    );
    let decompressed = batch.records(kafka_protocol::compression::DEFAULT_DECOMPRESS_LIMIT)?;
    if let Some(first) = decompressed.iter().next() {
        let first = first?;
        println!(
            "first record: offset {} key {:?} value {}",
            first.offset(),
            String::from_utf8_lossy(first.key().unwrap_or_default()),
            String::from_utf8_lossy(first.value().unwrap_or_default())
        );
    }
    Ok(())
}
