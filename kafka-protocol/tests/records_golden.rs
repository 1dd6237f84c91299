//! Record batches written by librdkafka 2.16 (captured from its Produce requests) and
//! kafka-python 3.0.12 in every codec, and legacy message sets (magic 0 and 1) from both: our
//! reader yields exactly the records they were given, with headers, null keys and values and
//! timestamps; the header fields match; and for uncompressed batches our builder reproduces the
//! bytes exactly. Fixtures and how they were made: `tests/fixtures/golden/README.md`.

// Test code: a failed unwrap is a failed test, and fixture bytes are indexed directly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::PathBuf;

use bytes::Bytes;
use kafka_protocol::compression::Compression;
use kafka_protocol::records::{
    BatchOptions, Header, RecordBatch, RecordBatchBuilder, RecordSetEntry, RecordSetIter, TimestampType,
};
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden")
}

fn entries(kind: &str) -> Vec<(Value, Bytes)> {
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(dir().join("manifest.json")).unwrap()).unwrap();
    manifest
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .map(|e| (e.clone(), Bytes::from(std::fs::read(dir().join(e["file"].as_str().unwrap())).unwrap())))
        .collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn key_of(r: &Value) -> Option<Vec<u8>> {
    if let Some(h) = r.get("key_hex").and_then(Value::as_str) {
        return Some(unhex(h));
    }
    r["key"].as_str().map(|k| k.as_bytes().to_vec())
}

fn value_of(r: &Value) -> Option<Vec<u8>> {
    r["value_hex"].as_str().map(unhex)
}

#[test]
fn golden_record_batches_in_every_codec() {
    let mut codecs = std::collections::BTreeSet::new();
    let mut records_checked = 0;
    let mut rebuilt = 0;
    for (e, data) in entries("record_batch") {
        let name = e["file"].as_str().unwrap();
        let want = &e["expect"];
        let batch = RecordBatch::from_bytes(data.clone()).unwrap_or_else(|err| panic!("{name}: {err}"));
        batch.verify_crc().unwrap_or_else(|err| panic!("{name}: {err}"));
        let h = batch.header();
        let codec: Compression = want["codec"].as_str().unwrap().parse().unwrap();
        codecs.insert(format!("{codec}/{}", e["source"].as_str().unwrap().split(' ').next().unwrap()));
        assert_eq!(h.compression().unwrap(), codec, "{name}");
        assert_eq!(h.base_offset, want["base_offset"].as_i64().unwrap(), "{name}");
        assert_eq!(h.crc as i64, want["crc"].as_i64().unwrap(), "{name}");
        assert_eq!(h.producer_id, want["producer_id"].as_i64().unwrap(), "{name}");
        assert_eq!(h.producer_epoch as i64, want["producer_epoch"].as_i64().unwrap(), "{name}");
        assert_eq!(h.base_sequence as i64, want["base_sequence"].as_i64().unwrap(), "{name}");
        assert_eq!(h.record_count as i64, want["record_count"].as_i64().unwrap(), "{name}");
        assert_eq!(h.base_timestamp, want["base_timestamp"].as_i64().unwrap(), "{name}");
        assert_eq!(h.max_timestamp, want["max_timestamp"].as_i64().unwrap(), "{name}");
        assert_eq!(h.is_transactional(), want["is_transactional"].as_bool().unwrap(), "{name}");

        let records = batch.records(64 << 20).unwrap();
        let expected = want["records"].as_array().unwrap();
        let ours: Vec<_> = records.iter().map(|r| r.unwrap()).collect();
        assert_eq!(ours.len(), expected.len(), "{name}");
        for (r, x) in ours.iter().zip(expected) {
            assert_eq!(r.offset(), x["offset"].as_i64().unwrap(), "{name}");
            assert_eq!(r.timestamp(), x["timestamp"].as_i64().unwrap(), "{name}");
            assert_eq!(r.key().map(<[u8]>::to_vec), key_of(x), "{name} key");
            assert_eq!(r.value().map(<[u8]>::to_vec), value_of(x), "{name} value");
            let headers: Vec<(String, Option<Vec<u8>>)> = r
                .headers()
                .map(|hd| (String::from_utf8_lossy(hd.key).into_owned(), hd.value.map(<[u8]>::to_vec)))
                .collect();
            let want_headers: Vec<(String, Option<Vec<u8>>)> = x["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_str().map(|v| v.as_bytes().to_vec())))
                .collect();
            assert_eq!(headers, want_headers, "{name} headers");
            records_checked += 1;
        }

        // Uncompressed batches are deterministic: our builder must write the same bytes.
        if codec == Compression::None {
            let mut b = RecordBatchBuilder::new(BatchOptions {
                compression: Compression::None,
                timestamp_type: TimestampType::CreateTime,
                transactional: h.is_transactional(),
                partition_leader_epoch: h.partition_leader_epoch,
                base_offset: h.base_offset,
                ..BatchOptions::default()
            });
            for x in expected {
                let hdrs: Vec<(String, Option<String>)> = x["headers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_str().map(str::to_string)))
                    .collect();
                let headers: Vec<Header<'_>> = hdrs
                    .iter()
                    .map(|(k, v)| Header { key: k.as_str(), value: v.as_deref().map(str::as_bytes) })
                    .collect();
                let key = key_of(x);
                let value = value_of(x);
                b.append(x["timestamp"].as_i64().unwrap(), key.as_deref(), value.as_deref(), &headers).unwrap();
            }
            let sealed = b.seal(h.producer_state()).unwrap();
            assert_eq!(sealed, data, "{name}: our builder wrote different bytes");
            rebuilt += 1;
        }
    }
    for c in ["gzip", "snappy", "lz4", "zstd", "none"] {
        assert!(codecs.contains(&format!("{c}/librdkafka")), "no librdkafka {c} batch: {codecs:?}");
    }
    assert!(records_checked >= 40 && rebuilt >= 2, "{records_checked} records, {rebuilt} rebuilt");
}

#[test]
fn golden_legacy_message_sets() {
    let mut checked = 0;
    let mut seen = std::collections::BTreeSet::new();
    for (e, data) in entries("legacy_message_set") {
        let name = e["file"].as_str().unwrap();
        let want = &e["expect"];
        seen.insert((want["magic"].as_i64().unwrap(), want["codec"].as_str().unwrap().to_string()));
        let mut ours = Vec::new();
        for entry in RecordSetIter::new(data) {
            match entry.unwrap_or_else(|err| panic!("{name}: {err}")) {
                RecordSetEntry::Legacy(m) => {
                    m.verify_crc().unwrap_or_else(|err| panic!("{name}: {err}"));
                    ours.extend(m.flatten(64 << 20).unwrap_or_else(|err| panic!("{name}: {err}")));
                }
                RecordSetEntry::Batch(_) => panic!("{name}: a v2 batch in a legacy set"),
            }
        }
        let expected = want["records"].as_array().unwrap();
        assert_eq!(ours.len(), expected.len(), "{name}");
        for (m, x) in ours.iter().zip(expected) {
            assert_eq!(m.offset, x["offset"].as_i64().unwrap(), "{name}");
            assert_eq!(m.magic as i64, x["magic"].as_i64().unwrap(), "{name}");
            assert_eq!(m.timestamp, x["timestamp"].as_i64(), "{name}");
            assert_eq!(m.key.as_ref().map(|k| k.to_vec()), key_of(x), "{name}");
            assert_eq!(m.value.as_ref().map(|v| v.to_vec()), value_of(x), "{name}");
            checked += 1;
        }
    }
    for magic in [0, 1] {
        for codec in ["none", "gzip", "snappy", "lz4"] {
            assert!(seen.contains(&(magic, codec.to_string())), "no legacy v{magic} {codec}: {seen:?}");
        }
    }
    assert!(checked >= 30, "{checked}");
}
