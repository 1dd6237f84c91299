//! Record batch hot paths: encoding 1000 x 100-byte records into a batch (producer), decoding
//! with CRC check and touching every record (consumer), CRC-32C throughput, and sealing with
//! lz4 and zstd.
//!
//! Payloads follow docs/PERFORMANCE.md: half the values are random bytes, half a repeated
//! JSON-like text. Run with
//! `cargo bench --bench records -- --warm-up-time 1 --measurement-time 3`.

// A benchmark harness, not library code: failing loudly is what it should do.
#![allow(clippy::unwrap_used, clippy::panic, clippy::unreachable, clippy::indexing_slicing)]

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_main, Criterion, Throughput};
use kafka_protocol::compression::{Compression, DEFAULT_DECOMPRESS_LIMIT};
use kafka_protocol::records::{
    BatchOptions, ProducerState, RecordBatchBuilder, RecordSetEntry, RecordSetIter, RECORD_BATCH_OVERHEAD,
};
use kafka_protocol::ProtocolError;

#[path = "support/workload.rs"]
mod workload;
use workload::{touch, values, BASE_TS, RECORDS, VALUE_SIZE};

/// Buffer size for one batch: 100-byte values take 111 bytes in a batch of 1000.
const CAPACITY: usize = RECORD_BATCH_OVERHEAD + RECORDS * (VALUE_SIZE + 12);

fn build(values: &[Vec<u8>], compression: Compression) -> Bytes {
    let options = BatchOptions { compression, ..BatchOptions::default() };
    fill(RecordBatchBuilder::with_capacity(CAPACITY, options), values)
}

/// Like [`build`], but into a recycled buffer (as a producer with a buffer pool would).
fn build_pooled(values: &[Vec<u8>], pool: &mut Option<BytesMut>) -> Bytes {
    let buf = pool.take().unwrap_or_else(|| BytesMut::with_capacity(CAPACITY));
    fill(RecordBatchBuilder::with_buffer(buf, BatchOptions::default()), values)
}

fn fill(mut builder: RecordBatchBuilder, values: &[Vec<u8>]) -> Bytes {
    for (i, v) in values.iter().enumerate() {
        builder.append(BASE_TS + i as i64, None, Some(v), &[]).unwrap();
    }
    builder.seal(ProducerState { producer_id: 1, producer_epoch: 0, base_sequence: 0 }).unwrap()
}

/// Reads every batch of `data`, verifies its CRC and touches every record's offset,
/// timestamp, key and value.
fn consume(data: &Bytes) -> usize {
    let mut touched = 0;
    for entry in RecordSetIter::new(data.clone()) {
        let RecordSetEntry::Batch(batch) = entry.unwrap() else { unreachable!() };
        batch.verify_crc().unwrap();
        let records = batch.records(DEFAULT_DECOMPRESS_LIMIT).unwrap();
        for record in records.iter() {
            let record = record.unwrap();
            touched += record.key().map_or(0, <[u8]>::len) + record.value().map_or(0, <[u8]>::len);
            touched += touch(record.offset(), record.timestamp());
        }
    }
    touched
}

/// [`consume`] with internal iteration ([`kafka_protocol::records::Records::try_for_each`]).
fn consume_for_each(data: &Bytes) -> usize {
    let mut touched = 0;
    for entry in RecordSetIter::new(data.clone()) {
        let RecordSetEntry::Batch(batch) = entry.unwrap() else { unreachable!() };
        batch.verify_crc().unwrap();
        let records = batch.records(DEFAULT_DECOMPRESS_LIMIT).unwrap();
        records
            .try_for_each(|record| -> Result<(), ProtocolError> {
                touched += record.key().map_or(0, <[u8]>::len) + record.value().map_or(0, <[u8]>::len);
                touched += touch(record.offset(), record.timestamp());
                Ok(())
            })
            .unwrap();
    }
    touched
}

fn bench_records(c: &mut Criterion) {
    let values = values();

    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.bench_function("seal_none_1000x100B", |b| b.iter(|| build(black_box(&values), Compression::None)));
    let mut pool = None;
    group.bench_function("seal_none_pooled_buffer_1000x100B", |b| {
        b.iter(|| {
            let sealed = build_pooled(black_box(&values), &mut pool);
            black_box(&sealed);
            pool = sealed.try_into_mut().ok();
        })
    });
    group.bench_function("seal_lz4_1000x100B", |b| b.iter(|| build(black_box(&values), Compression::Lz4)));
    group.bench_function("seal_zstd_1000x100B", |b| b.iter(|| build(black_box(&values), Compression::Zstd)));
    group.finish();

    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(RECORDS as u64));
    for codec in [Compression::None, Compression::Lz4, Compression::Zstd] {
        let sealed = build(&values, codec);
        let raw = RECORDS * (VALUE_SIZE + 8) + RECORD_BATCH_OVERHEAD;
        eprintln!("{codec}: batch {} bytes, ratio {:.2}", sealed.len(), raw as f64 / sealed.len() as f64);
        assert_eq!(consume(&sealed), RECORDS * VALUE_SIZE);
        group.bench_function(format!("crc_iterate_{codec}_1000x100B"), |b| b.iter(|| consume(black_box(&sealed))));
        if codec == Compression::None {
            assert_eq!(consume_for_each(&sealed), RECORDS * VALUE_SIZE);
            group.bench_function("crc_for_each_none_1000x100B", |b| b.iter(|| consume_for_each(black_box(&sealed))));
        }
    }
    group.finish();

    let mut group = c.benchmark_group("crc32c");
    let mib: Vec<u8> = values.iter().flatten().copied().cycle().take(1 << 20).collect();
    group.throughput(Throughput::Bytes(mib.len() as u64));
    group.bench_function("1MiB", |b| b.iter(|| crc32c::crc32c(black_box(&mib))));
    group.finish();
}

/// The benchmark group (written out instead of `criterion_group!`, whose generated function
/// has no doc comment).
fn benches() {
    let mut c = Criterion::default().configure_from_args();
    bench_records(&mut c);
}

criterion_main!(benches);
