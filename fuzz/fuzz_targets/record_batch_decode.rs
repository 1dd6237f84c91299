//! A records blob as Fetch returns it: magic-2 batches in every codec and legacy message sets,
//! with CRC checks, bounded decompression, every record and every header walked.
#![no_main]

use bytes::Bytes;
use kafka_protocol::records::{RecordSetEntry, RecordSetIter};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let mut total = 0usize;
    for entry in RecordSetIter::new(Bytes::copy_from_slice(data)) {
        match entry {
            Ok(RecordSetEntry::Batch(batch)) => {
                let _ = batch.verify_crc();
                let Ok(records) = batch.records(LIMIT) else { continue };
                for record in records.iter() {
                    let Ok(record) = record else { break };
                    total += record.key().map_or(0, <[u8]>::len) + record.value().map_or(0, <[u8]>::len);
                    for header in record.headers() {
                        std::hint::black_box(header);
                    }
                    let _ = record.into_owned();
                }
            }
            Ok(RecordSetEntry::Legacy(message)) => {
                let _ = message.verify_crc();
                if let Ok(inner) = message.flatten(LIMIT) {
                    total += inner.len();
                }
            }
            Err(_) => break,
        }
    }
    std::hint::black_box(total);
});
