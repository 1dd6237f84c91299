//! Tests of building, reading, patching and iterating record batches.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::compression::{self, Compression, DEFAULT_DECOMPRESS_LIMIT};
use crate::error::ProtocolError;

const LIMIT: usize = DEFAULT_DECOMPRESS_LIMIT;

/// Builds a batch around an arbitrary records section, with a correct CRC.
fn raw_batch(attributes: i16, record_count: i32, section: &[u8]) -> Bytes {
    let header = RecordBatchHeader {
        base_offset: 100,
        batch_length: (RECORD_BATCH_OVERHEAD - LOG_OVERHEAD + section.len()) as i32,
        partition_leader_epoch: -1,
        magic: 2,
        crc: 0,
        attributes,
        last_offset_delta: record_count - 1,
        base_timestamp: 1000,
        max_timestamp: 2000,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        record_count,
    };
    let mut out = header.to_bytes().to_vec();
    out.extend_from_slice(section);
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(out)
}

fn collect(batch: &RecordBatch) -> Result<Vec<OwnedRecord>, ProtocolError> {
    let records = batch.records(LIMIT)?;
    records.iter().map(|r| r.map(Record::into_owned)).collect()
}

fn first_error(batch_bytes: Bytes) -> ProtocolError {
    let batch = RecordBatch::from_bytes(batch_bytes).unwrap();
    match batch.records(LIMIT) {
        Err(e) => e,
        Ok(records) => records.iter().find_map(|r| r.err()).expect("expected an error"),
    }
}

// ---------------------------------------------------------------------------------------------
// Golden vectors from an independent encoder (sarama's record_test.go).
// ---------------------------------------------------------------------------------------------

const SARAMA_HEADER_TAIL: [u8; 38] = [
    0, 0, 0, 0, // last offset delta
    0, 0, 1, 88, 141, 205, 89, 56, // first timestamp 1479847795000
    0, 0, 0, 0, 0, 0, 0, 0, // max timestamp
    0, 0, 0, 0, 0, 0, 0, 0, // producer id
    0, 0, // producer epoch
    0, 0, 0, 0, // first sequence
    0, 0, 0, 1, // record count
];

fn sarama_batch(length: u8, crc: [u8; 4], codec: u8, section: &[u8]) -> Bytes {
    let mut v = vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, length, 0, 0, 0, 0, 2];
    v.extend_from_slice(&crc);
    v.extend_from_slice(&[0, codec]);
    v.extend_from_slice(&SARAMA_HEADER_TAIL);
    v.extend_from_slice(section);
    Bytes::from(v)
}

const SARAMA_RECORD: [u8; 21] = [40, 0, 10, 0, 8, 1, 2, 3, 4, 6, 5, 6, 7, 2, 6, 8, 9, 10, 4, 11, 12];

fn sarama_vectors() -> Vec<(Compression, Bytes)> {
    vec![
        (Compression::None, sarama_batch(70, [84, 121, 97, 253], 0, &SARAMA_RECORD)),
        (
            Compression::Gzip,
            sarama_batch(
                95,
                [231, 74, 206, 165],
                1,
                &[
                    31, 139, 8, 0, 0, 9, 110, 136, 0, 255, 0, 21, 0, 234, 255, 40, 0, 10, 0, 8, 1, 2, 3, 4, 6, 5, 6, 7,
                    2, 6, 8, 9, 10, 4, 11, 12, 3, 0, 173, 201, 88, 103, 21, 0, 0, 0,
                ],
            ),
        ),
        (
            // Raw (unframed) snappy.
            Compression::Snappy,
            sarama_batch(
                72,
                [21, 0, 159, 97],
                2,
                &[21, 80, 40, 0, 10, 0, 8, 1, 2, 3, 4, 6, 5, 6, 7, 2, 6, 8, 9, 10, 4, 11, 12],
            ),
        ),
        (
            // LZ4 frame with a content checksum and 4 MiB blocks.
            Compression::Lz4,
            sarama_batch(
                89,
                [169, 74, 119, 197],
                3,
                &[
                    4, 34, 77, 24, 100, 112, 185, 21, 0, 0, 128, 40, 0, 10, 0, 8, 1, 2, 3, 4, 6, 5, 6, 7, 2, 6, 8, 9,
                    10, 4, 11, 12, 0, 0, 0, 0, 12, 59, 239, 146,
                ],
            ),
        ),
    ]
}

#[test]
fn decodes_independent_golden_batches() {
    for (codec, bytes) in sarama_vectors() {
        let mut set = RecordSetIter::new(bytes);
        let Some(Ok(RecordSetEntry::Batch(batch))) = set.next() else { panic!("{codec}: no batch") };
        assert!(set.next().is_none() && !set.has_partial_tail());
        batch.verify_crc().unwrap_or_else(|e| panic!("{codec}: {e}"));
        let h = batch.header();
        assert_eq!(h.compression().unwrap(), codec);
        assert_eq!((h.base_timestamp, h.record_count, h.producer_id), (1_479_847_795_000, 1, 0));
        let records = batch.records(LIMIT).unwrap();
        let all: Vec<Record<'_>> = records.iter().map(|r| r.unwrap()).collect();
        assert_eq!(all.len(), 1);
        let r = all[0];
        assert_eq!(r.offset(), 0);
        assert_eq!(r.timestamp(), 1_479_847_795_005);
        assert_eq!(r.key(), Some(&[1u8, 2, 3, 4][..]));
        assert_eq!(r.value(), Some(&[5u8, 6, 7][..]));
        let headers: Vec<RecordHeader<'_>> = r.headers().collect();
        assert_eq!(headers, vec![RecordHeader { key: &[8, 9, 10], value: Some(&[11, 12]) }]);
    }
}

#[test]
fn encodes_records_like_the_independent_encoder() {
    // sarama's record has timestamp delta 5 and offset delta 0; ours starts at delta 0, so the
    // second record of a batch whose first record is 5 ms earlier has delta 5 and offset 1.
    let mut b = RecordBatchBuilder::new(BatchOptions::default());
    let key = [1u8, 2, 3, 4];
    let value = [5u8, 6, 7];
    let header_key = std::str::from_utf8(&[8, 9, 10]).unwrap().to_owned();
    let headers = [Header::new(&header_key, Some(&[11, 12]))];
    b.append(1_479_847_795_000, Some(&key), Some(&value), &headers).unwrap();
    let before = b.size_in_bytes();
    assert_eq!(b.next_record_size(1_479_847_795_005, Some(&key), Some(&value), &headers), 21);
    b.append(1_479_847_795_005, Some(&key), Some(&value), &headers).unwrap();
    let sealed = b.seal(ProducerState::NONE).unwrap();
    let mut expected = SARAMA_RECORD;
    expected[3] = 2; // offset delta 1
    assert_eq!(&sealed[before..], &expected[..]);
}

// ---------------------------------------------------------------------------------------------
// Builder
// ---------------------------------------------------------------------------------------------

#[test]
fn builder_fills_the_header() {
    let options = BatchOptions {
        compression: Compression::None,
        compression_level: None,
        timestamp_type: TimestampType::CreateTime,
        transactional: true,
        partition_leader_epoch: 9,
        base_offset: 500,
    };
    let mut b = RecordBatchBuilder::new(options);
    assert!(b.is_empty() && b.base_timestamp().is_none());
    assert_eq!(b.append(1000, None, Some(b"a"), &[]).unwrap(), 0);
    assert_eq!(b.append(900, Some(b"k"), None, &[]).unwrap(), 1); // earlier timestamp: negative delta
    assert_eq!(b.append(1500, Some(b""), Some(b""), &[Header::new("h", None)]).unwrap(), 2);
    assert_eq!((b.record_count(), b.base_timestamp(), b.max_timestamp()), (3, Some(1000), Some(1500)));
    let producer = ProducerState { producer_id: 77, producer_epoch: 2, base_sequence: 40 };
    let batch = RecordBatch::from_bytes(b.seal(producer).unwrap()).unwrap();
    batch.verify_crc().unwrap();
    let h = *batch.header();
    assert_eq!(h.base_offset, 500);
    assert_eq!(h.partition_leader_epoch, 9);
    assert_eq!((h.last_offset_delta, h.record_count), (2, 3));
    assert_eq!((h.base_timestamp, h.max_timestamp), (1000, 1500));
    assert_eq!(h.producer_state(), producer);
    assert!(h.is_transactional() && !h.is_control() && !h.has_delete_horizon());
    assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
    assert_eq!((h.last_offset(), h.next_offset(), h.last_sequence()), (502, 503, 42));
    let recs = collect(&batch).unwrap();
    assert_eq!(recs.iter().map(|r| r.offset()).collect::<Vec<_>>(), vec![500, 501, 502]);
    assert_eq!(recs.iter().map(|r| r.timestamp()).collect::<Vec<_>>(), vec![1000, 900, 1500]);
    assert_eq!((recs[0].key(), recs[0].value()), (None, Some(&b"a"[..])));
    assert_eq!((recs[1].key(), recs[1].value()), (Some(&b"k"[..]), None));
    assert_eq!((recs[2].key(), recs[2].value()), (Some(&b""[..]), Some(&b""[..])));
    assert_eq!(recs[2].headers().collect::<Vec<_>>(), vec![RecordHeader { key: b"h", value: None }]);
}

#[test]
fn log_append_time_reports_max_timestamp() {
    let options = BatchOptions { timestamp_type: TimestampType::LogAppendTime, ..Default::default() };
    let mut b = RecordBatchBuilder::new(options);
    b.append(10, None, Some(b"x"), &[]).unwrap();
    b.append(30, None, Some(b"y"), &[]).unwrap();
    let batch = RecordBatch::from_bytes(b.seal(ProducerState::NONE).unwrap()).unwrap();
    assert_eq!(batch.header().timestamp_type(), TimestampType::LogAppendTime);
    let recs = collect(&batch).unwrap();
    assert!(recs.iter().all(|r| r.timestamp() == 30));
}

#[test]
fn sizes_are_exact() {
    let mut b = RecordBatchBuilder::with_capacity(0, BatchOptions::default());
    assert_eq!(b.size_in_bytes(), RECORD_BATCH_OVERHEAD);
    let big = vec![7u8; 70_000];
    let hv = vec![1u8; 200];
    let headers = [Header::new("one", Some(&hv)), Header::new("two", None)];
    for (i, ts) in [0i64, 5, -1_000_000, i64::from(i32::MAX) * 4].into_iter().enumerate() {
        let (k, v): (Option<&[u8]>, Option<&[u8]>) = match i % 3 {
            0 => (None, Some(&big)),
            1 => (Some(&big[..300]), None),
            _ => (Some(b"k"), Some(b"v")),
        };
        let predicted = b.next_record_size(ts, k, v, &headers);
        assert!(predicted <= RecordBatchBuilder::max_record_size(k, v, &headers));
        let before = b.size_in_bytes();
        b.append(ts, k, v, &headers).unwrap();
        assert_eq!(b.size_in_bytes() - before, predicted);
    }
    let n = b.size_in_bytes();
    assert_eq!(b.seal(ProducerState::NONE).unwrap().len(), n);
}

#[test]
fn append_rejects_timestamp_overflow_and_keeps_state() {
    let mut b = RecordBatchBuilder::new(BatchOptions::default());
    b.append(i64::MAX, None, None, &[]).unwrap();
    let size = b.size_in_bytes();
    assert!(matches!(b.append(-2, None, None, &[]), Err(ProtocolError::ValueOutOfRange { .. })));
    assert_eq!((b.size_in_bytes(), b.record_count()), (size, 1));
    b.append(i64::MAX - 5, None, None, &[]).unwrap();
    let batch = RecordBatch::from_bytes(b.seal(ProducerState::NONE).unwrap()).unwrap();
    let ts: Vec<i64> = collect(&batch).unwrap().iter().map(|r| r.timestamp()).collect();
    assert_eq!(ts, vec![i64::MAX, i64::MAX - 5]);
}

#[test]
fn exact_fill_does_not_reallocate_and_growth_works() {
    let v1 = vec![1u8; 100];
    let v2 = vec![2u8; 7];
    let probe = RecordBatchBuilder::new(BatchOptions::default());
    let r1 = probe.next_record_size(5, Some(b"k"), Some(&v1), &[]);
    let r2 = RecordBatchBuilder::record_size(1, 1, None, Some(&v2), &[]);
    let buf = vec![0xaau8; RECORD_BATCH_OVERHEAD + r1 + r2];
    let ptr = buf.as_ptr();
    let mut b = RecordBatchBuilder::with_vec(buf, BatchOptions::default());
    b.append(5, Some(b"k"), Some(&v1), &[]).unwrap();
    b.append(6, None, Some(&v2), &[]).unwrap();
    let sealed = b.seal(ProducerState::NONE).unwrap();
    assert_eq!(sealed.as_ptr(), ptr, "the last record used the exact path, no growth");
    let recs = collect(&RecordBatch::from_bytes(sealed).unwrap()).unwrap();
    assert_eq!((recs[0].key(), recs[0].value()), (Some(&b"k"[..]), Some(&v1[..])));
    assert_eq!((recs[1].key(), recs[1].value()), (None, Some(&v2[..])));
    // Growth from a tiny buffer, across many records of every size class.
    let mut b = RecordBatchBuilder::with_vec(Vec::new(), BatchOptions::default());
    let big = vec![3u8; 20_000];
    for i in 0..300usize {
        b.append(i as i64, None, Some(&big[..(i * 67) % 20_000]), &[]).unwrap();
    }
    let recs = collect(&RecordBatch::from_bytes(b.seal(ProducerState::NONE).unwrap()).unwrap()).unwrap();
    assert!(recs.iter().enumerate().all(|(i, r)| r.value().unwrap().len() == (i * 67) % 20_000));
}

/// A record without headers encoded byte by byte, the plain way: the reference for the
/// builder's fast path.
fn reference_record(ts_delta: i64, offset_delta: i32, key: Option<&[u8]>, value: Option<&[u8]>) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, v: i64) {
        let mut u = ((v << 1) ^ (v >> 63)) as u64;
        while u >= 0x80 {
            out.push(u as u8 | 0x80);
            u >>= 7;
        }
        out.push(u as u8);
    }
    fn nullable(out: &mut Vec<u8>, b: Option<&[u8]>) {
        match b {
            None => varint(out, -1),
            Some(b) => {
                varint(out, b.len() as i64);
                out.extend_from_slice(b);
            }
        }
    }
    let mut body = vec![0u8];
    varint(&mut body, ts_delta);
    varint(&mut body, i64::from(offset_delta));
    nullable(&mut body, key);
    nullable(&mut body, value);
    varint(&mut body, 0);
    let mut out = Vec::new();
    varint(&mut out, body.len() as i64);
    out.extend_from_slice(&body);
    out
}

#[test]
fn fast_path_encodes_like_a_byte_by_byte_encoder() {
    // Every varint of the record around its width boundaries (1/2 bytes at 64, 2/3 at 8192,
    // and 3/4 at 2^20), and the fast path's own limits (deltas below 2^20, key and value
    // together below 512 KiB), where it hands over to the general one: timestamp deltas, offset
    // deltas (9000 records), key and value lengths, and record lengths.
    let deltas = [0i64, 1, -1, 63, -64, 64, -65, 8191, -8192, 8192, -8193, (1 << 20) - 1, -(1 << 20), 1 << 20, 1 << 40];
    let lens = [None, Some(0usize), Some(1), Some(63), Some(64), Some(100), Some(8191), Some(8192)];
    let big = vec![0x5au8; (1 << 20) + 100];
    let bytes = |len: Option<usize>| len.map(|n| &big[..n]);
    let base = 1_700_000_000_000i64;
    let mut records = Vec::new();
    for i in 0..9000usize {
        let (key, value) = match i {
            100 => (None, Some((1 << 19) - 1)),
            101 => (None, Some(1 << 19)),
            102 => (Some(8192), Some((1 << 19) - 8193)),
            103 => (Some(8192), Some((1 << 19) - 8192)),
            4000 => (None, Some((1 << 20) - 40)),
            4001 => (Some(0), Some((1 << 20) - 1)),
            8500 => (None, Some(1 << 20)),
            _ => (if i % 5 == 0 { lens[(i / 5) % lens.len()] } else { None }, lens[(i / 3) % lens.len()]),
        };
        let delta = if i == 0 { 0 } else { deltas[i % deltas.len()] };
        records.push((base + delta, key, value));
    }
    let mut expected = Vec::new();
    for (i, &(ts, key, value)) in records.iter().enumerate() {
        expected.extend_from_slice(&reference_record(ts - base, i as i32, bytes(key), bytes(value)));
    }
    let builders = [
        RecordBatchBuilder::with_capacity(0, BatchOptions::default()),
        RecordBatchBuilder::new(BatchOptions::default()),
        RecordBatchBuilder::with_vec(vec![0xaa; 1 << 16], BatchOptions::default()),
    ];
    for mut b in builders {
        for &(ts, key, value) in &records {
            let predicted = b.next_record_size(ts, bytes(key), bytes(value), &[]);
            let before = b.size_in_bytes();
            b.append(ts, bytes(key), bytes(value), &[]).unwrap();
            assert_eq!(b.size_in_bytes() - before, predicted);
        }
        let sealed = b.seal(ProducerState::NONE).unwrap();
        assert!(sealed[RECORD_BATCH_OVERHEAD..] == expected[..], "the records differ from the reference encoding");
        let batch = RecordBatch::from_bytes(sealed).unwrap();
        batch.verify_crc().unwrap();
        let recs = collect(&batch).unwrap();
        assert_eq!(recs.len(), records.len());
        for (r, &(ts, key, value)) in recs.iter().zip(&records) {
            assert_eq!((r.timestamp(), r.key(), r.value()), (ts, bytes(key), bytes(value)));
        }
    }
}

#[test]
fn fast_path_hands_over_at_every_capacity_near_its_limit() {
    // The fast path writes a record only when it and 16 bytes of slack fit the allocation, and
    // checks the room again in the forms the vector's own methods use; the general path takes
    // the record otherwise (exact fit, growth). Every capacity around those limits must give
    // the reference bytes and a valid CRC, with and without a key.
    let value = vec![7u8; 100];
    for key in [None, Some(&b"key"[..])] {
        let mut expected = Vec::new();
        for i in 0..3 {
            expected.extend_from_slice(&reference_record(i, i as i32, key, Some(&value)));
        }
        for capacity in RECORD_BATCH_OVERHEAD..=RECORD_BATCH_OVERHEAD + expected.len() + 40 {
            let mut b = RecordBatchBuilder::with_capacity(capacity, BatchOptions::default());
            for i in 0..3 {
                b.append(1000 + i, key, Some(&value), &[]).unwrap();
            }
            let sealed = b.seal(ProducerState::NONE).unwrap();
            assert!(sealed[RECORD_BATCH_OVERHEAD..] == expected[..], "capacity {capacity}, key {key:?}");
            RecordBatch::from_bytes(sealed).unwrap().verify_crc().unwrap();
        }
    }
}

#[test]
fn extreme_timestamp_deltas() {
    let mut b = RecordBatchBuilder::new(BatchOptions::default());
    let ts = [0, i64::MAX, i64::MIN, 1 << 55, -(1 << 55), 1 << 56, (1 << 62) + 1];
    for t in ts {
        let predicted = b.next_record_size(t, None, Some(b"v"), &[]);
        let before = b.size_in_bytes();
        b.append(t, None, Some(b"v"), &[]).unwrap();
        assert_eq!(b.size_in_bytes() - before, predicted, "{t}");
    }
    let recs = collect(&RecordBatch::from_bytes(b.seal(ProducerState::NONE).unwrap()).unwrap()).unwrap();
    assert_eq!(recs.iter().map(|r| r.timestamp()).collect::<Vec<_>>(), ts.to_vec());
}

#[test]
fn empty_batch_seals_and_reads() {
    for codec in Compression::ALL {
        let b = RecordBatchBuilder::new(BatchOptions { compression: codec, ..Default::default() });
        let batch = RecordBatch::from_bytes(b.seal(ProducerState::NONE).unwrap()).unwrap();
        batch.verify_crc().unwrap();
        let h = batch.header();
        assert_eq!((h.record_count, h.last_offset_delta, h.base_timestamp), (0, -1, NO_TIMESTAMP));
        assert_eq!(h.next_offset(), h.base_offset);
        assert!(collect(&batch).unwrap().is_empty());
    }
}

#[test]
fn with_buffer_reuses_and_clears() {
    let mut buf = BytesMut::with_capacity(4096);
    buf.extend_from_slice(&[0xee; 3000]);
    let ptr = buf.as_ptr();
    let mut b = RecordBatchBuilder::with_buffer(buf, BatchOptions::default());
    b.append(1, None, Some(b"v"), &[]).unwrap();
    let sealed = b.seal(ProducerState::NONE).unwrap();
    assert_eq!(sealed.as_ptr(), ptr, "no reallocation");
    assert_eq!(collect(&RecordBatch::from_bytes(sealed.clone()).unwrap()).unwrap().len(), 1);
    // Recycling a sealed batch: garbage from the old batch is overwritten, never read.
    let recycled = sealed.try_into_mut().unwrap();
    let mut b = RecordBatchBuilder::with_buffer(recycled, BatchOptions::default());
    b.append(2, Some(b"k2"), None, &[]).unwrap();
    let recs = collect(&RecordBatch::from_bytes(b.seal(ProducerState::NONE).unwrap()).unwrap()).unwrap();
    assert_eq!((recs.len(), recs[0].key(), recs[0].value()), (1, Some(&b"k2"[..]), None));
}

#[test]
fn bad_compression_level_fails_at_seal() {
    let options = BatchOptions { compression: Compression::Gzip, compression_level: Some(12), ..Default::default() };
    let mut b = RecordBatchBuilder::new(options);
    b.append(1, None, Some(b"v"), &[]).unwrap();
    assert!(matches!(b.seal(ProducerState::NONE), Err(ProtocolError::ValueOutOfRange { .. })));
}

#[test]
fn owned_records_share_the_buffer() {
    let mut b = RecordBatchBuilder::new(BatchOptions::default());
    b.append(1, Some(b"key"), Some(b"value"), &[Header::new("h", Some(b"hv"))]).unwrap();
    let sealed = b.seal(ProducerState::NONE).unwrap();
    let batch = RecordBatch::from_bytes(sealed.clone()).unwrap();
    let records = batch.records(LIMIT).unwrap();
    let r = records.iter().next().unwrap().unwrap();
    let key = r.key_bytes().unwrap();
    assert_eq!(&key[..], b"key");
    let start = key.as_ptr() as usize - sealed.as_ptr() as usize;
    assert!(start < sealed.len(), "zero-copy slice of the fetched buffer");
    let owned = r.into_owned();
    drop(records);
    drop(batch);
    assert_eq!(owned.key(), Some(&b"key"[..]));
    assert_eq!(owned.value(), Some(&b"value"[..]));
    assert_eq!(&owned.value_bytes().unwrap()[..], b"value");
    assert_eq!(owned.headers().next().unwrap().key_str().unwrap(), "h");
    assert_eq!(owned.header_count(), 1);
    assert_eq!((owned.offset(), owned.timestamp(), owned.attributes()), (0, 1, 0));
}

// ---------------------------------------------------------------------------------------------
// Patching
// ---------------------------------------------------------------------------------------------

#[test]
fn patch_helpers_keep_the_crc_valid() {
    let mut b = RecordBatchBuilder::new(BatchOptions { compression: Compression::Lz4, ..Default::default() });
    b.append(10, None, Some(b"x"), &[]).unwrap();
    b.append(20, None, Some(b"y"), &[]).unwrap();
    let sealed = b.seal(ProducerState::NONE).unwrap();
    // Followed by another batch in the same buffer: patches must touch only the first.
    let mut buf = sealed.to_vec();
    buf.extend_from_slice(&sealed);
    set_base_offset(&mut buf, 1234).unwrap();
    set_partition_leader_epoch(&mut buf, 8).unwrap();
    let state = ProducerState { producer_id: 5, producer_epoch: 6, base_sequence: 7 };
    set_producer_state(&mut buf, state).unwrap();
    set_log_append_time(&mut buf, 99_999).unwrap();
    assert_eq!(&buf[sealed.len()..], &sealed[..], "second batch untouched");
    let batch = RecordBatch::from_bytes(Bytes::copy_from_slice(&buf[..sealed.len()])).unwrap();
    batch.verify_crc().unwrap();
    let h = batch.header();
    assert_eq!((h.base_offset, h.partition_leader_epoch), (1234, 8));
    assert_eq!(h.producer_state(), state);
    assert_eq!((h.timestamp_type(), h.max_timestamp), (TimestampType::LogAppendTime, 99_999));
    assert_eq!(h.compression().unwrap(), Compression::Lz4);
    let recs = collect(&batch).unwrap();
    assert_eq!(
        recs.iter().map(|r| (r.offset(), r.timestamp())).collect::<Vec<_>>(),
        vec![(1234, 99_999), (1235, 99_999)]
    );
    // Too short, wrong magic, bad length.
    for cut in [0, 8, 60, sealed.len() - 1] {
        let mut short = sealed[..cut].to_vec();
        assert!(set_base_offset(&mut short, 1).is_err());
        assert!(set_partition_leader_epoch(&mut short, 1).is_err());
        assert!(set_producer_state(&mut short, state).is_err());
        assert!(set_log_append_time(&mut short, 1).is_err());
    }
    let mut v1 = sealed.to_vec();
    v1[16] = 1;
    assert_eq!(set_base_offset(&mut v1, 1), Err(ProtocolError::UnsupportedMagic(1)));
    let mut bad_len = sealed.to_vec();
    bad_len[8..12].copy_from_slice(&10i32.to_be_bytes());
    assert!(matches!(set_producer_state(&mut bad_len, state), Err(ProtocolError::InvalidLength { .. })));
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

fn sample_batch(codec: Compression) -> Bytes {
    let mut b = RecordBatchBuilder::new(BatchOptions { compression: codec, ..Default::default() });
    for i in 0..20u8 {
        let key = [i; 3];
        let headers = [Header::new("trace", Some(&key[..])), Header::new("n", None)];
        b.append(1000 + i64::from(i), Some(&key), Some(&[i; 40]), &headers).unwrap();
    }
    b.seal(ProducerState::NONE).unwrap()
}

#[test]
fn truncation_at_every_byte_is_a_partial_tail_or_an_error() {
    for codec in Compression::ALL {
        let full = sample_batch(codec);
        let mut two = full.to_vec();
        two.extend_from_slice(&full);
        for cut in 0..two.len() {
            let data = Bytes::copy_from_slice(&two[..cut]);
            let mut it = RecordSetIter::new(data.clone());
            let entries: Vec<_> = it.by_ref().collect();
            let complete = usize::from(cut >= full.len()) + usize::from(cut == two.len());
            assert_eq!(entries.len(), complete, "{codec} cut {cut}");
            assert!(entries.iter().all(|e| e.is_ok()));
            assert_eq!(it.has_partial_tail(), cut != complete * full.len(), "{codec} cut {cut}");
            assert_eq!(it.partial_tail_len(), cut - complete * full.len());
            // A truncated batch given directly is an error, never a panic.
            if cut < full.len() {
                assert!(RecordBatch::from_bytes(Bytes::copy_from_slice(&full[..cut])).is_err());
            }
        }
    }
}

#[test]
fn every_header_byte_corrupted() {
    for codec in [Compression::None, Compression::Zstd] {
        let full = sample_batch(codec);
        for pos in 0..RECORD_BATCH_OVERHEAD {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = full.to_vec();
                bad[pos] ^= flip;
                // Never panics, whatever the path.
                let mut it = RecordSetIter::new(Bytes::from(bad.clone()));
                let outcome = it.next();
                match pos {
                    0..=7 | 12..=15 => {
                        // Outside the CRC: base offset and leader epoch; still valid.
                        let Some(Ok(RecordSetEntry::Batch(b))) = outcome else { panic!("pos {pos}") };
                        b.verify_crc().unwrap();
                        assert_eq!(collect(&b).unwrap().len(), 20);
                    }
                    8..=11 => {
                        // Length: partial tail (too long), error (too small or negative), or a
                        // shorter batch whose CRC no longer matches.
                        match outcome {
                            None => assert!(it.has_partial_tail()),
                            Some(Err(_)) => {}
                            Some(Ok(RecordSetEntry::Batch(b))) => assert!(b.verify_crc().is_err()),
                            Some(Ok(RecordSetEntry::Legacy(_))) => panic!("pos {pos}"),
                        }
                    }
                    16 => assert!(matches!(outcome, Some(Err(ProtocolError::UnsupportedMagic(_))))),
                    17..=20 => {
                        let Some(Ok(RecordSetEntry::Batch(b))) = outcome else { panic!("pos {pos}") };
                        let crc = u32::from_be_bytes(bad[17..21].try_into().unwrap());
                        let computed = crc32c::crc32c(&full[21..]);
                        assert_eq!(b.verify_crc(), Err(ProtocolError::CrcMismatch { stored: crc, computed }));
                    }
                    _ => {
                        let Some(Ok(RecordSetEntry::Batch(b))) = outcome else {
                            // recordCount sign flipped: rejected up front.
                            assert!((57..61).contains(&pos), "pos {pos}");
                            continue;
                        };
                        assert!(matches!(b.verify_crc(), Err(ProtocolError::CrcMismatch { .. })), "pos {pos}");
                        // Reading anyway never panics.
                        if let Ok(records) = b.records(1 << 20) {
                            for r in records.iter() {
                                let _ = r.map(|r| (r.key(), r.headers().count()));
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn wrong_crc_reports_both_values() {
    let mut bad = sample_batch(Compression::None).to_vec();
    let stored = 0x1234_5678u32;
    bad[17..21].copy_from_slice(&stored.to_be_bytes());
    let computed = crc32c::crc32c(&bad[21..]);
    let b = RecordBatch::from_bytes(Bytes::from(bad)).unwrap();
    assert_eq!(b.compute_crc(), computed);
    assert_eq!(b.verify_crc(), Err(ProtocolError::CrcMismatch { stored, computed }));
}

#[test]
fn record_count_mismatches() {
    let mut b = RecordBatchBuilder::new(BatchOptions::default());
    for i in 0..3 {
        b.append(i, None, Some(&[7; 30]), &[]).unwrap();
    }
    let sealed = b.seal(ProducerState::NONE).unwrap();
    let section = &sealed[RECORD_BATCH_OVERHEAD..];
    // Negative: rejected by from_bytes.
    assert!(matches!(
        RecordBatch::from_bytes(raw_batch(0, -1, section)),
        Err(ProtocolError::InvalidLength { what: "record count", .. })
    ));
    // Huge: more than the bytes could hold.
    assert!(matches!(
        first_error(raw_batch(0, i32::MAX, section)),
        ProtocolError::InvalidLength { what: "record count", .. }
    ));
    // One more than present.
    assert_eq!(
        first_error(raw_batch(0, 4, section)),
        ProtocolError::CorruptRecord("fewer records than the batch's record count")
    );
    // One fewer: the records read fine, then the trailing bytes are reported.
    let batch = RecordBatch::from_bytes(raw_batch(0, 2, section)).unwrap();
    let results: Vec<_> = batch.records(LIMIT).unwrap().iter().map(|r| r.map(|r| r.offset())).collect();
    assert_eq!(
        results,
        vec![Ok(100), Ok(101), Err(ProtocolError::CorruptRecord("bytes after the last record of the batch"))]
    );
}

#[test]
fn try_for_each_matches_the_iterator() {
    let mut b = RecordBatchBuilder::new(BatchOptions::default());
    for i in 0..3 {
        b.append(i, None, Some(&[7; 30]), &[]).unwrap();
    }
    let sealed = b.seal(ProducerState::NONE).unwrap();
    let section = &sealed[RECORD_BATCH_OVERHEAD..];
    let offsets = |bytes: Bytes| {
        let batch = RecordBatch::from_bytes(bytes).unwrap();
        let records = batch.records(LIMIT).unwrap();
        let mut seen = Vec::new();
        let r = records.try_for_each(|r| -> Result<(), ProtocolError> {
            seen.push(r.offset());
            Ok(())
        });
        (seen, r)
    };
    assert_eq!(offsets(sealed.clone()), (vec![0, 1, 2], Ok(())));
    assert_eq!(
        offsets(raw_batch(0, 2, section)),
        (vec![100, 101], Err(ProtocolError::CorruptRecord("bytes after the last record of the batch")))
    );
    assert_eq!(
        offsets(raw_batch(0, 4, section)),
        (vec![100, 101, 102], Err(ProtocolError::CorruptRecord("fewer records than the batch's record count")))
    );
    // The callback's own error stops the walk.
    let batch = RecordBatch::from_bytes(sealed).unwrap();
    let records = batch.records(LIMIT).unwrap();
    let mut n = 0;
    let r = records.try_for_each(|_| {
        n += 1;
        if n == 2 {
            Err(ProtocolError::CorruptRecord("stop"))
        } else {
            Ok(())
        }
    });
    assert_eq!((n, r), (2, Err(ProtocolError::CorruptRecord("stop"))));
}

#[test]
fn hostile_records() {
    // Each section holds one record; all must fail cleanly.
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("negative record length", vec![3, 0, 0, 0, 1, 1, 0]),
        ("record length past the end", vec![0xfe, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0, 1, 1, 0]),
        ("overlong varint", vec![0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0, 0]),
        ("huge key length", vec![20, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff, 0x07, 1, 0]),
        ("key length -2", vec![12, 0, 0, 0, 3, 1, 0, 0, 0, 0, 0, 0, 0]),
        ("value past record", vec![12, 0, 0, 0, 1, 20, 0, 0, 0, 0, 0, 0, 0]),
        ("negative header count", vec![12, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0]),
        ("huge header count", vec![20, 0, 0, 0, 1, 1, 0xfe, 0xff, 0xff, 0xff, 0x07]),
        ("header count past record", vec![12, 0, 0, 0, 1, 1, 2, 0, 0, 0, 0, 0, 0]),
        ("header key null", vec![16, 0, 0, 0, 1, 1, 2, 1, 1]),
        ("huge header key", vec![24, 0, 0, 0, 1, 1, 2, 0xfe, 0xff, 0xff, 0xff, 0x07, 1]),
        ("header value past record", vec![16, 0, 0, 0, 1, 1, 2, 0, 8, 0, 0, 0, 0]),
        ("trailing bytes in record", vec![14, 0, 0, 0, 1, 1, 0, 9, 9, 9, 9, 9, 9, 9, 9]),
        ("trailing bytes after headers", vec![18, 0, 0, 0, 1, 1, 2, 0, 1, 9]),
        ("empty record", vec![0, 0, 0, 0, 0, 0, 0]),
        ("truncated timestamp varlong", vec![2, 0, 0x80, 0, 0, 0, 0, 0]),
        ("overlong timestamp varlong", vec![24, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0]),
    ];
    for (name, section) in cases {
        let e = first_error(raw_batch(0, 1, &section));
        assert!(
            matches!(
                e,
                ProtocolError::CorruptRecord(_)
                    | ProtocolError::InvalidLength { .. }
                    | ProtocolError::Truncated { .. }
                    | ProtocolError::VarintOverflow { .. }
            ),
            "{name}: {e:?}"
        );
    }
    // A minimal valid record for contrast: empty key, null value, no headers.
    let minimal = raw_batch(0, 1, &[12, 0, 4, 6, 0, 1, 0]);
    let recs = collect(&RecordBatch::from_bytes(minimal).unwrap()).unwrap();
    assert_eq!(recs[0].offset(), 103);
    assert_eq!(recs[0].timestamp(), 1002);
    assert_eq!((recs[0].key(), recs[0].value(), recs[0].header_count()), (Some(&b""[..]), None, 0));
}

#[test]
fn unknown_compression_bits() {
    for id in 5..=7 {
        let b = RecordBatch::from_bytes(raw_batch(id, 0, &[])).unwrap();
        assert_eq!(b.header().compression(), Err(ProtocolError::UnknownCompression(id as u8)));
        assert_eq!(b.records(LIMIT), Err(ProtocolError::UnknownCompression(id as u8)));
    }
}

#[test]
fn compressed_garbage_and_bombs() {
    for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let garbage = raw_batch(i16::from(codec.id()), 1, b"this is not compressed data at all");
        assert!(matches!(first_error(garbage), ProtocolError::Compression { .. }), "{codec}");
        // Valid compression of garbage records.
        let mut section = BytesMut::new();
        compression::compress(codec, None, &[0xff; 64], &mut section).unwrap();
        let e = first_error(raw_batch(i16::from(codec.id()), 1, &section));
        assert!(
            matches!(e, ProtocolError::VarintOverflow { .. } | ProtocolError::InvalidLength { .. }),
            "{codec} {e:?}"
        );
        // A bomb: 16 MiB of zeros, read with a 1 MiB limit.
        let mut bomb = BytesMut::new();
        compression::compress(codec, None, &vec![0u8; 16 << 20], &mut bomb).unwrap();
        let batch = RecordBatch::from_bytes(raw_batch(i16::from(codec.id()), 1, &bomb)).unwrap();
        assert_eq!(batch.records(1 << 20), Err(ProtocolError::DecompressionLimit { codec, limit: 1 << 20 }));
    }
}

#[test]
fn set_iterator_rules() {
    let batch = sample_batch(Compression::None);
    // Negative and too-small lengths are errors, not endless loops.
    for length in [-1i32, 0, 13, i32::MIN] {
        let mut bad = batch.to_vec();
        bad[8..12].copy_from_slice(&length.to_be_bytes());
        let mut it = RecordSetIter::new(Bytes::from(bad));
        assert!(matches!(it.next(), Some(Err(ProtocolError::InvalidLength { .. }))), "{length}");
        assert!(it.next().is_none());
    }
    // A v2 batch too short for its header.
    let mut short = batch[..40].to_vec();
    short[8..12].copy_from_slice(&28i32.to_be_bytes());
    assert!(matches!(RecordSetIter::new(Bytes::from(short)).next(), Some(Err(ProtocolError::InvalidLength { .. }))));
    // Unknown magic.
    for magic in [3u8, 0x7f, 0xff] {
        let mut bad = batch.to_vec();
        bad[16] = magic;
        assert_eq!(
            RecordSetIter::new(Bytes::from(bad)).next(),
            Some(Err(ProtocolError::UnsupportedMagic(magic as i8)))
        );
    }
    // Mixed legacy and v2 entries, then a partial tail.
    let mut blob = super::legacy::tests::encode(3, 0, 0, 0, None, Some(b"v0"));
    blob.extend(super::legacy::tests::encode(4, 1, 0, 77, Some(b"k"), Some(b"v1")));
    blob.extend_from_slice(&batch);
    blob.extend_from_slice(&batch[..30]);
    let mut it = RecordSetIter::new(Bytes::from(blob));
    let entries: Vec<RecordSetEntry> = it.by_ref().map(|e| e.unwrap()).collect();
    assert_eq!(entries.len(), 3);
    assert!(matches!(&entries[0], RecordSetEntry::Legacy(m) if m.magic == 0 && m.offset == 3));
    assert!(matches!(&entries[1], RecordSetEntry::Legacy(m) if m.magic == 1 && m.timestamp == Some(77)));
    assert!(matches!(&entries[2], RecordSetEntry::Batch(_)));
    assert_eq!((entries[2].base_offset(), entries[2].last_offset(), entries[2].size_in_bytes()), (0, 19, batch.len()));
    assert_eq!(it.partial_tail_len(), 30);
    assert!(it.remaining().is_empty());
    // The entries are zero-copy slices.
    let data = Bytes::from(batch.to_vec());
    let Some(Ok(RecordSetEntry::Batch(b))) = RecordSetIter::new(data.clone()).next() else { panic!() };
    assert_eq!(b.as_bytes().as_ptr(), data.as_ptr());
}

// ---------------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct TestRecord {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

fn bytes_strategy() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        2 => Just(None),
        2 => Just(Some(Vec::new())),
        6 => proptest::collection::vec(any::<u8>(), 0..200).prop_map(Some),
        1 => proptest::collection::vec(any::<u8>(), 5_000..40_000).prop_map(Some),
    ]
}

fn record_strategy() -> impl Strategy<Value = TestRecord> {
    (
        prop_oneof![-10_000_000_000_000i64..10_000_000_000_000i64, Just(0i64), Just(-1i64)],
        bytes_strategy(),
        bytes_strategy(),
        proptest::collection::vec(
            ("[a-zé]{0,12}", prop_oneof![Just(None), proptest::collection::vec(any::<u8>(), 0..50).prop_map(Some)]),
            0..4,
        ),
    )
        .prop_map(|(timestamp, key, value, headers)| TestRecord { timestamp, key, value, headers })
}

fn codec_strategy() -> impl Strategy<Value = Compression> {
    prop_oneof![
        Just(Compression::None),
        Just(Compression::Gzip),
        Just(Compression::Snappy),
        Just(Compression::Lz4),
        Just(Compression::Zstd)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn round_trip(
        records in proptest::collection::vec(record_strategy(), 0..40),
        codec in codec_strategy(),
        transactional in any::<bool>(),
        log_append in any::<bool>(),
        epoch in any::<i32>(),
        base_offset in 0i64..i64::MAX / 2,
        producer_id in any::<i64>(),
        producer_epoch in any::<i16>(),
        base_sequence in any::<i32>(),
    ) {
        let options = BatchOptions {
            compression: codec,
            compression_level: None,
            timestamp_type: if log_append { TimestampType::LogAppendTime } else { TimestampType::CreateTime },
            transactional,
            partition_leader_epoch: epoch,
            base_offset,
        };
        let mut b = RecordBatchBuilder::with_capacity(256, options);
        for (i, r) in records.iter().enumerate() {
            let headers: Vec<Header<'_>> = r.headers.iter().map(|(k, v)| Header::new(k, v.as_deref())).collect();
            let predicted = b.next_record_size(r.timestamp, r.key.as_deref(), r.value.as_deref(), &headers);
            let before = b.size_in_bytes();
            prop_assert_eq!(b.append(r.timestamp, r.key.as_deref(), r.value.as_deref(), &headers).unwrap(), i as i32);
            prop_assert_eq!(b.size_in_bytes() - before, predicted);
        }
        let producer = ProducerState { producer_id, producer_epoch, base_sequence };
        let sealed = b.seal(producer).unwrap();

        // Two copies back to back, read through the set iterator.
        let mut blob = sealed.to_vec();
        blob.extend_from_slice(&sealed);
        let mut it = RecordSetIter::new(Bytes::from(blob));
        let mut seen = 0;
        for entry in it.by_ref() {
            let RecordSetEntry::Batch(batch) = entry.unwrap() else { panic!("legacy") };
            seen += 1;
            batch.verify_crc().unwrap();
            let h = batch.header();
            prop_assert_eq!(h.compression().unwrap(), codec);
            prop_assert_eq!(h.is_transactional(), transactional);
            prop_assert_eq!(h.timestamp_type() == TimestampType::LogAppendTime, log_append);
            prop_assert_eq!(h.partition_leader_epoch, epoch);
            prop_assert_eq!(h.base_offset, base_offset);
            prop_assert_eq!(h.producer_state(), producer);
            prop_assert_eq!(h.record_count as usize, records.len());
            prop_assert_eq!(h.last_offset_delta, records.len() as i32 - 1);
            let max_ts = records.iter().map(|r| r.timestamp).max().unwrap_or(NO_TIMESTAMP);
            prop_assert_eq!(h.max_timestamp, max_ts);
            prop_assert_eq!(h.base_timestamp, records.first().map_or(NO_TIMESTAMP, |r| r.timestamp));
            let decoded = batch.records(LIMIT).unwrap();
            let mut n = 0;
            for (i, (got, want)) in decoded.iter().zip(&records).enumerate() {
                let got = got.unwrap();
                prop_assert_eq!(got.offset(), base_offset + i as i64);
                prop_assert_eq!(got.timestamp(), if log_append { max_ts } else { want.timestamp });
                prop_assert_eq!(got.key(), want.key.as_deref());
                prop_assert_eq!(got.value(), want.value.as_deref());
                let headers: Vec<(String, Option<Vec<u8>>)> = got
                    .headers()
                    .map(|h| (h.key_str().unwrap().to_owned(), h.value.map(<[u8]>::to_vec)))
                    .collect();
                prop_assert_eq!(&headers, &want.headers);
                let owned = got.into_owned();
                prop_assert_eq!(owned.key(), want.key.as_deref());
                prop_assert_eq!(owned.value(), want.value.as_deref());
                prop_assert_eq!(owned.headers().count(), want.headers.len());
                n += 1;
            }
            prop_assert_eq!(n, records.len());
            prop_assert!(decoded.iter().all(|r| r.is_ok()));
        }
        prop_assert_eq!(seen, 2);
        prop_assert!(!it.has_partial_tail());

        // Patching keeps the CRC valid and the records intact.
        let mut patched = sealed.to_vec();
        set_base_offset(&mut patched, 42).unwrap();
        set_partition_leader_epoch(&mut patched, 3).unwrap();
        set_producer_state(&mut patched, ProducerState { producer_id: 1, producer_epoch: 2, base_sequence: 3 }).unwrap();
        set_log_append_time(&mut patched, 777).unwrap();
        let batch = RecordBatch::from_bytes(Bytes::from(patched)).unwrap();
        batch.verify_crc().unwrap();
        let recs = collect(&batch).unwrap();
        prop_assert_eq!(recs.len(), records.len());
        prop_assert!(recs.iter().enumerate().all(|(i, r)| r.offset() == 42 + i as i64 && r.timestamp() == 777));
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        for entry in RecordSetIter::new(Bytes::from(data)) {
            let Ok(entry) = entry else { break };
            match entry {
                RecordSetEntry::Batch(b) => {
                    let _ = b.verify_crc();
                    if let Ok(records) = b.records(1 << 16) {
                        for r in records.iter().flatten() {
                            let _ = (r.key(), r.value(), r.headers().count(), r.into_owned());
                        }
                    }
                }
                RecordSetEntry::Legacy(m) => {
                    let _ = m.verify_crc();
                    let _ = m.flatten(1 << 16);
                }
            }
        }
    }

    #[test]
    fn corrupted_record_sections_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        codec in codec_strategy(),
    ) {
        let full = sample_batch(codec);
        let mut bad = full.to_vec();
        for (idx, x) in flips {
            let i = RECORD_BATCH_OVERHEAD + idx.index(bad.len() - RECORD_BATCH_OVERHEAD);
            bad[i] ^= x | 1;
        }
        // Recompute the CRC so the corruption reaches the record parser.
        let crc = crc32c::crc32c(&bad[21..]);
        bad[17..21].copy_from_slice(&crc.to_be_bytes());
        let batch = RecordBatch::from_bytes(Bytes::from(bad)).unwrap();
        if let Ok(records) = batch.records(1 << 20) {
            // Internal and external iteration agree on how many records are good.
            let mut internal = 0;
            let _ = records.try_for_each(|_| -> Result<(), ProtocolError> {
                internal += 1;
                Ok(())
            });
            let external = records.iter().take_while(|r| r.is_ok()).count();
            prop_assert_eq!(internal, external);
            for r in records.iter() {
                match r {
                    Ok(r) => { let _ = (r.key(), r.headers().count(), r.into_owned()); }
                    Err(e) => {
                        let expected = matches!(
                            e,
                            ProtocolError::CorruptRecord(_)
                                | ProtocolError::InvalidLength { .. }
                                | ProtocolError::Truncated { .. }
                                | ProtocolError::VarintOverflow { .. }
                        );
                        prop_assert!(expected, "unexpected error {:?}", e);
                    }
                }
            }
        }
    }
}
