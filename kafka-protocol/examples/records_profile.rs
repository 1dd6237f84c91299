//! A harness for counting instructions of the record-batch hot paths under callgrind (the
//! criterion benchmark in `benches/records.rs` runs too long under valgrind and its statistics
//! code would drown the counts). It runs one path `N` times over the benchmark's data: 1000
//! records of 100 bytes, half random, half JSON-like text.
//!
//! ```sh
//! cargo build --profile bench -p kafka-protocol --example records_profile
//! valgrind --tool=callgrind target/release/examples/records_profile encode 1
//! valgrind --tool=callgrind target/release/examples/records_profile encode 11
//! ```
//!
//! The difference of the two totals divided by 10,000 is the cost of one record, without the
//! process's start-up and the data generation. Paths: `encode` (fresh buffer), `encode-pooled`
//! (recycled buffer), `decode` (verify CRC, iterate, touch key and value), `decode-for-each`
//! (the same with `Records::try_for_each`), `decode-no-crc` (iterate only), and
//! `encode-keyed` / `decode-keyed` (the same records with 8-byte keys). It also prints the
//! mean wall-clock time per record, a quick check between criterion runs.

// A profiling harness, not library code: failing loudly is what it should do.
#![allow(clippy::unwrap_used, clippy::panic, clippy::unreachable, clippy::indexing_slicing)]

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use kafka_protocol::compression::DEFAULT_DECOMPRESS_LIMIT;
use kafka_protocol::records::{
    BatchOptions, ProducerState, RecordBatch, RecordBatchBuilder, RecordSetEntry, RecordSetIter, RECORD_BATCH_OVERHEAD,
};
use kafka_protocol::ProtocolError;

#[path = "../benches/support/workload.rs"]
mod workload;
use workload::{touch, values, BASE_TS, RECORDS, VALUE_SIZE};

const CAPACITY: usize = RECORD_BATCH_OVERHEAD + RECORDS * (VALUE_SIZE + 12);

fn fill(mut builder: RecordBatchBuilder, values: &[Vec<u8>]) -> Bytes {
    for (i, v) in values.iter().enumerate() {
        builder.append(BASE_TS + i as i64, None, Some(v), &[]).unwrap();
    }
    builder.seal(ProducerState { producer_id: 1, producer_epoch: 0, base_sequence: 0 }).unwrap()
}

/// [`fill`] with 8-byte keys.
fn fill_keyed(mut builder: RecordBatchBuilder, values: &[Vec<u8>]) -> Bytes {
    for (i, v) in values.iter().enumerate() {
        let key = (i as u64 * 0x9E37_79B9).to_le_bytes();
        builder.append(BASE_TS + i as i64, Some(&key), Some(v), &[]).unwrap();
    }
    builder.seal(ProducerState { producer_id: 1, producer_epoch: 0, base_sequence: 0 }).unwrap()
}

fn batch(data: &Bytes) -> RecordBatch {
    match RecordSetIter::new(data.clone()).next() {
        Some(Ok(RecordSetEntry::Batch(b))) => b,
        _ => unreachable!(),
    }
}

fn decode(data: &Bytes, crc: bool) -> usize {
    let batch = batch(data);
    if crc {
        batch.verify_crc().unwrap();
    }
    let mut touched = 0;
    for record in batch.records(DEFAULT_DECOMPRESS_LIMIT).unwrap().iter() {
        let record = record.unwrap();
        touched += record.key().map_or(0, <[u8]>::len) + record.value().map_or(0, <[u8]>::len);
        touched += touch(record.offset(), record.timestamp());
    }
    touched
}

fn decode_for_each(data: &Bytes) -> usize {
    let batch = batch(data);
    batch.verify_crc().unwrap();
    let mut touched = 0;
    batch
        .records(DEFAULT_DECOMPRESS_LIMIT)
        .unwrap()
        .try_for_each(|record| -> Result<(), ProtocolError> {
            touched += record.key().map_or(0, <[u8]>::len) + record.value().map_or(0, <[u8]>::len);
            touched += touch(record.offset(), record.timestamp());
            Ok(())
        })
        .unwrap();
    touched
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "encode".into());
    let n: usize = args.next().map_or(1, |s| s.parse().unwrap());
    let values = values();
    let sealed = fill(RecordBatchBuilder::with_capacity(CAPACITY, BatchOptions::default()), &values);
    let keyed = fill_keyed(RecordBatchBuilder::with_capacity(CAPACITY * 2, BatchOptions::default()), &values);
    let mut pool: Option<BytesMut> = None;
    let mut sum = 0usize;
    let started = std::time::Instant::now();
    for _ in 0..n {
        match path.as_str() {
            "encode" => {
                let b = fill(RecordBatchBuilder::with_capacity(CAPACITY, BatchOptions::default()), black_box(&values));
                sum += black_box(b).len();
            }
            "encode-pooled" => {
                let buf = pool.take().unwrap_or_else(|| BytesMut::with_capacity(CAPACITY));
                let b = fill(RecordBatchBuilder::with_buffer(buf, BatchOptions::default()), black_box(&values));
                sum += black_box(&b).len();
                pool = b.try_into_mut().ok();
            }
            "encode-keyed" => {
                let options = BatchOptions::default();
                let b = fill_keyed(RecordBatchBuilder::with_capacity(CAPACITY * 2, options), black_box(&values));
                sum += black_box(b).len();
            }
            "decode" => sum += decode(black_box(&sealed), true),
            "decode-keyed" => sum += decode(black_box(&keyed), true),
            "decode-no-crc" => sum += decode(black_box(&sealed), false),
            "decode-for-each" => sum += decode_for_each(black_box(&sealed)),
            other => panic!("unknown path {other}"),
        }
    }
    let ns = started.elapsed().as_nanos() as f64 / (n * RECORDS) as f64;
    println!("{path} x{n}: {ns:.1} ns/record (checksum {sum})");
}
