//! Hostile input against every decoder, with the process's peak heap use measured: typed
//! errors, no panic, and memory bounded by the bytes actually given, never by a count or length
//! claimed on the wire (RELIABILITY.md, "Bad input").
//!
//! Every test here takes `MEASURE` so that only one runs at a time: the allocator's peak is
//! process-wide.

// Test code: a failed unwrap is a failed test, and fixture bytes are indexed directly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use kafka_protocol::compression::{self, Compression};
use kafka_protocol::frame::{decode_request, decode_response_body, FrameDecoder};
use kafka_protocol::messages::{RequestBody, ResponseBody};
use kafka_protocol::records::{
    BatchOptions, ProducerState, RecordBatch, RecordBatchBuilder, RecordSetEntry, RecordSetIter,
};
use kafka_protocol::{ApiKey, ProtocolError};
use peak_alloc::PeakAlloc;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

static MEASURE: Mutex<()> = Mutex::new(());

/// Runs `f` and returns the peak heap growth (bytes) above what was live before it.
fn peak_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = ALLOC.current_usage();
    ALLOC.reset_peak_usage();
    let r = f();
    let peak = ALLOC.peak_usage().saturating_sub(before);
    (r, peak)
}

/// Bodies built to lie: counts and lengths of 54 million, i32::MAX, -2, overlong varints.
fn hostile_bodies() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = vec![
        vec![0x03, 0x38, 0x0e, 0x80, 0, 0, 0, 0], // i32 54,005,376 then zeros
        vec![0x7f, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff], // i32::MAX twice
        vec![0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 0], // -2: negative, not null
        vec![0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0], // uvarint u32::MAX (compact length)
        vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x80], // overlong varint
        vec![0; 8],
        vec![0xff; 8],
    ];
    // Each of the above after a few fixed-size fields, so that a later array or string lies.
    for prefix in [2usize, 4, 6, 8, 12, 16] {
        for body in v.clone().into_iter().take(5) {
            let mut b = vec![0u8; prefix];
            b.extend(body);
            v.push(b);
        }
    }
    v
}

#[test]
fn lying_counts_fail_without_allocating_for_every_api_and_version() {
    let _g = MEASURE.lock().unwrap_or_else(|e| e.into_inner());
    let bodies = hostile_bodies();
    let mut cases = 0;
    let mut worst = 0;
    for &api in ApiKey::ALL {
        let range = api.valid_versions();
        for version in range.min..=range.max {
            for body in &bodies {
                let ((), peak) = peak_during(|| {
                    let _ = RequestBody::decode(api, &mut Bytes::copy_from_slice(body), version);
                    let _ = ResponseBody::decode(api, &mut Bytes::copy_from_slice(body), version);
                });
                cases += 2;
                worst = worst.max(peak);
                assert!(peak < 64 * 1024, "{api:?} v{version} body {body:02x?}: peak {peak} bytes");
            }
        }
    }
    println!("lying counts: {cases} decodes, worst peak {worst} bytes");
}

fn golden_frames() -> Vec<(String, String, ApiKey, i16, Bytes)> {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let mut out = Vec::new();
    for e in manifest.as_array().unwrap() {
        let kind = e["kind"].as_str().unwrap().to_string();
        let file = e["file"].as_str().unwrap().to_string();
        let data = Bytes::from(std::fs::read(dir.join(&file)).unwrap());
        let (api, version) = match (e["api_key"].as_i64(), e["api_version"].as_i64()) {
            (Some(k), Some(v)) => (ApiKey::from_key(k as i16).unwrap(), v as i16),
            _ => (ApiKey::Produce, 0),
        };
        out.push((kind, file, api, version, data));
    }
    out
}

/// Every byte of every golden frame and batch overwritten with values that turn counts and
/// lengths into lies (0xff, 0x7f, 0x80): each decode ends in Ok or a typed error, and the peak
/// heap stays within a small multiple of the input.
#[test]
fn corrupted_fixtures_decode_to_typed_errors_with_bounded_memory() {
    let _g = MEASURE.lock().unwrap_or_else(|e| e.into_inner());
    let mut cases = 0;
    let mut errors = 0;
    let mut worst_frame_ratio = 0.0f64;
    let mut worst_records_peak = 0usize;
    for (kind, file, api, version, data) in golden_frames() {
        for i in 0..data.len() {
            for x in [0xffu8, 0x7f, 0x80] {
                let mut bytes = data.to_vec();
                bytes[i] = x;
                let input = Bytes::from(bytes);
                let (is_err, peak) = peak_during(|| match kind.as_str() {
                    "request" => decode_request(input.clone()).is_err(),
                    "response" => decode_response_body(input.clone(), api, version).is_err(),
                    _ => walk_records(input.clone()).is_err(),
                });
                cases += 1;
                errors += usize::from(is_err);
                // Decompressed batches legitimately grow; everything else stays near the input.
                let allowance =
                    if kind == "request" || kind == "response" { 16 * data.len() + 64 * 1024 } else { 4 << 20 };
                assert!(
                    peak <= allowance,
                    "{file} byte {i} = {x:#x}: peak {peak} bytes for {} input bytes",
                    data.len()
                );
                if kind == "request" || kind == "response" {
                    worst_frame_ratio = worst_frame_ratio.max(peak as f64 / data.len() as f64);
                } else {
                    worst_records_peak = worst_records_peak.max(peak);
                }
            }
        }
    }
    assert!(errors > cases / 10, "corruption should mostly be detected: {errors}/{cases}");
    println!(
        "corrupted fixtures: {cases} decodes, {errors} typed errors; frames: worst peak/input {worst_frame_ratio:.1}x; \
         record data (decompression capped at 1 MiB): worst peak {worst_records_peak} bytes"
    );
}

fn walk_records(data: Bytes) -> Result<usize, ProtocolError> {
    let mut n = 0;
    for entry in RecordSetIter::new(data) {
        match entry? {
            RecordSetEntry::Batch(b) => {
                b.verify_crc()?;
                for r in b.records(1 << 20)?.iter() {
                    let r = r?;
                    n += r.headers().count() + 1;
                }
            }
            RecordSetEntry::Legacy(m) => {
                m.verify_crc()?;
                n += m.flatten(1 << 20)?.len();
            }
        }
    }
    Ok(n)
}

fn sealed_batch(codec: Compression, records: usize) -> Bytes {
    let mut b = RecordBatchBuilder::new(BatchOptions { compression: codec, ..BatchOptions::default() });
    for i in 0..records {
        let v = format!("value-{i}-{}", "x".repeat(90));
        b.append(1_700_000_000_000 + i as i64, Some(b"key"), Some(v.as_bytes()), &[]).unwrap();
    }
    b.seal(ProducerState::default()).unwrap()
}

#[test]
fn hostile_record_batches() {
    let _g = MEASURE.lock().unwrap_or_else(|e| e.into_inner());
    let good = sealed_batch(Compression::None, 20);
    // Each case: (what, mutate, recompute the CRC so that only the named lie remains).
    type Mutate = fn(&mut Vec<u8>);
    let cases: Vec<(&str, Mutate, bool)> = vec![
        ("wrong crc", |b| b[30] ^= 1, false),
        ("huge record count", |b| b[57..61].copy_from_slice(&i32::MAX.to_be_bytes()), true),
        ("negative record count", |b| b[57..61].copy_from_slice(&(-5i32).to_be_bytes()), true),
        ("batch length below header", |b| b[8..12].copy_from_slice(&10i32.to_be_bytes()), false),
        ("negative batch length", |b| b[8..12].copy_from_slice(&(-1i32).to_be_bytes()), false),
        ("magic 3", |b| b[16] = 3, false),
        ("compression bits 5", |b| b[22] = (b[22] & !7) | 5, true),
        ("compression bits 7", |b| b[22] |= 7, true),
        ("record length shorter than the record", |b| b[61] = 0x7e, true),
        ("record length past the end", |b| b[61] = 0xfe, true),
    ];
    for (what, mutate, fix_crc) in cases {
        let mut bytes = good.to_vec();
        mutate(&mut bytes);
        if fix_crc {
            let crc = crc32c::crc32c(&bytes[21..]);
            bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        }
        let (res, peak) = peak_during(|| walk_records(Bytes::from(bytes.clone())));
        match (&res, what) {
            (Err(ProtocolError::CrcMismatch { .. }), "wrong crc") => {}
            (Err(ProtocolError::CrcMismatch { .. }), _) => panic!("{what}: only the CRC caught it"),
            (Err(_), _) => {}
            (Ok(n), _) => panic!("{what}: decoded {n} records"),
        }
        assert!(peak < 256 * 1024, "{what}: peak {peak}");
    }
    // A claimed key length of 54 million inside a record, with the CRC fixed up so only the
    // length lies.
    let mut bytes = good.to_vec();
    // record 0 starts at 61: length varint, attributes, ts delta, offset delta, key length.
    let key_len_at = 61 + 1 + 1 + 1 + 1;
    bytes[key_len_at] = 0xfe; // a large zig-zag varint, continued
    let crc = crc32c::crc32c(&bytes[21..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    let (res, peak) = peak_during(|| walk_records(Bytes::from(bytes)));
    assert!(res.is_err());
    assert!(peak < 256 * 1024, "peak {peak}");
}

#[test]
fn decompression_bombs_stop_at_the_limit_for_every_codec() {
    let _g = MEASURE.lock().unwrap_or_else(|e| e.into_inner());
    let zeros = vec![0u8; 64 << 20];
    for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let mut bomb = BytesMut::new();
        compression::compress(codec, None, &zeros, &mut bomb).unwrap();
        let limit = 1 << 20;
        let (res, peak) = peak_during(|| compression::decompress(codec, &bomb, limit));
        assert!(
            matches!(res, Err(ProtocolError::DecompressionLimit { limit: l, .. }) if l == limit),
            "{codec}: {res:?}"
        );
        assert!(peak < 4 * limit + (1 << 20), "{codec}: peak {peak} bytes for a {limit}-byte limit");
        println!("{codec} bomb: {} compressed bytes, stopped with peak {peak} bytes", bomb.len());
    }
    // Truncated and garbage compressed data.
    for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let mut data = BytesMut::new();
        compression::compress(codec, None, b"some data some data some data some data", &mut data).unwrap();
        for cut in 0..data.len() {
            let _ = compression::decompress(codec, &data[..cut], 1 << 20);
        }
        assert!(
            compression::decompress(codec, &[0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8], 1 << 20).is_err(),
            "{codec}"
        );
    }
    // A compressed batch whose inner data is a bomb.
    let mut b = RecordBatchBuilder::new(BatchOptions { compression: Compression::Zstd, ..BatchOptions::default() });
    b.append(0, None, Some(&zeros[..8 << 20]), &[]).unwrap();
    let batch = RecordBatch::from_bytes(b.seal(ProducerState::default()).unwrap()).unwrap();
    assert!(matches!(batch.records(1 << 20), Err(ProtocolError::DecompressionLimit { .. })));
}

#[test]
fn oversized_frames_are_refused_before_allocating() {
    let _g = MEASURE.lock().unwrap_or_else(|e| e.into_inner());
    let mut decoder = FrameDecoder::default();
    for size in [i32::MAX, 100 * 1024 * 1024 + 1, -1, i32::MIN] {
        let mut buf = BytesMut::from(&size.to_be_bytes()[..]);
        let (res, peak) = peak_during(|| decoder.decode(&mut buf));
        assert!(res.is_err(), "{size}");
        assert!(peak < 4096, "{size}: peak {peak}");
    }
    // A frame of exactly the maximum is accepted, and only reserved once its prefix is checked.
    let mut small = FrameDecoder::new(16);
    let mut buf = BytesMut::from(&[0, 0, 0, 16][..]);
    assert_eq!(small.decode(&mut buf), Ok(None));
}

/// Every golden record batch and legacy message set (librdkafka, kafka-python) cut at every byte
/// offset: iteration ends cleanly (a cut batch is a partial tail, as when a fetch hits its size
/// limit, so no record of it is returned) or gives a typed error; never a panic, never more
/// memory than the decompression cap allows.
#[test]
fn truncated_golden_record_data_is_a_partial_tail_or_an_error() {
    let _g = MEASURE.lock().unwrap_or_else(|e| e.into_inner());
    let mut cases = 0;
    for (kind, file, _, _, data) in golden_frames() {
        if kind != "record_batch" && kind != "legacy_message_set" {
            continue;
        }
        let whole = walk_records(data.clone()).unwrap_or_else(|e| panic!("{file}: {e}"));
        for cut in 0..data.len() {
            let (res, peak) = peak_during(|| walk_records(data.slice(..cut)));
            if let Ok(n) = res {
                assert!(n < whole || cut == data.len(), "{file}: a prefix of {cut} bytes yielded all {n} records");
            }
            assert!(peak < 4 << 20, "{file} cut at {cut}: peak {peak}");
            cases += 1;
        }
    }
    assert!(cases > 5_000, "{cases}");
}
