//! The bodies of the fuzz targets, one function each, shared by the cargo-fuzz binaries in
//! `fuzz_targets/` (nightly, libFuzzer) and by the stable regression test
//! `tests/tests/fuzz_regressions.rs`, which includes this file and runs every function over
//! the checked-in inputs in `fuzz/regressions/<target>/` (seeds, hostile inputs, and every
//! crashing input a fuzz run ever found). A function panics exactly when the target finds a
//! bug: a panic in the code under test, or a broken oracle (an `assert!` below).

use bytes::{Bytes, BytesMut};
use kafka_client::security::sasl::scram::{ScramAlgorithm, ScramClient};
use kafka_client::security::Secret;
use kafka_protocol::frame::{self, FrameDecoder};
use kafka_protocol::messages::{RequestBody, ResponseBody};
use kafka_protocol::records::{RecordSetEntry, RecordSetIter};
use kafka_protocol::ApiKey;

/// A target's body: runs one input.
pub type Target = fn(&[u8]);

/// Every target by name (the name of its binary and of its directory of inputs).
pub const TARGETS: [(&str, Target); 5] = [
    ("request_decode", request_decode),
    ("response_decode", response_decode),
    ("record_batch_decode", record_batch_decode),
    ("frame_reader", frame_reader),
    ("scram_client", scram_client),
];

/// The API key and version the first two input bytes select, and the rest.
fn api_and_version(data: &[u8]) -> Option<(ApiKey, i16, &[u8])> {
    let (&sel, rest) = data.split_first()?;
    let (&ver, body) = rest.split_first()?;
    let api = ApiKey::ALL[sel as usize % ApiKey::ALL.len()];
    let range = api.valid_versions();
    let version = range.min + (ver as i16 % (range.max - range.min + 1));
    Some((api, version, body))
}

/// Any request body at any api key and version (chosen by the first two input bytes), plus
/// the full frame path (header included). Whatever decodes must re-encode, and decoding that
/// again must give the same bytes: the decoder and encoder agree on a canonical form.
pub fn request_decode(data: &[u8]) {
    let Some((api, version, body)) = api_and_version(data) else { return };
    let mut buf = Bytes::copy_from_slice(body);
    if let Ok(decoded) = RequestBody::decode(api, &mut buf, version) {
        let mut once = BytesMut::new();
        decoded.encode(&mut once, version).expect("a decoded request re-encodes");
        let again = RequestBody::decode(api, &mut once.clone().freeze(), version).expect("re-encoded request decodes");
        let mut twice = BytesMut::new();
        again.encode(&mut twice, version).expect("re-encodes twice");
        assert_eq!(once, twice, "{api:?} v{version} is not canonical");
    }
    let _ = frame::decode_request(Bytes::copy_from_slice(data));
}

/// Any response body at any api key and version (chosen by the first two input bytes), plus
/// the response frame path. Whatever decodes must re-encode canonically.
pub fn response_decode(data: &[u8]) {
    let Some((api, version, body)) = api_and_version(data) else { return };
    let mut buf = Bytes::copy_from_slice(body);
    if let Ok(decoded) = ResponseBody::decode(api, &mut buf, version) {
        let mut once = BytesMut::new();
        decoded.encode(&mut once, version).expect("a decoded response re-encodes");
        let again =
            ResponseBody::decode(api, &mut once.clone().freeze(), version).expect("re-encoded response decodes");
        let mut twice = BytesMut::new();
        again.encode(&mut twice, version).expect("re-encodes twice");
        assert_eq!(once, twice, "{api:?} v{version} is not canonical");
    }
    let _ = frame::decode_response_body(Bytes::copy_from_slice(body), api, version);
}

/// A records blob as Fetch returns it: magic-2 batches in every codec and legacy message
/// sets, with CRC checks, bounded decompression, every record and every header walked.
pub fn record_batch_decode(data: &[u8]) {
    const LIMIT: usize = 1 << 20;
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
}

/// The frame reader fed in arbitrary chunk sizes (first byte), with a 64 KiB maximum frame
/// size, and every complete frame decoded as a request. The buffer never holds more than the
/// bytes received plus one reservation step, whatever sizes the prefixes claim.
pub fn frame_reader(data: &[u8]) {
    let Some((&chunk, stream)) = data.split_first() else { return };
    let chunk = (chunk as usize % 64) + 1;
    let mut decoder = FrameDecoder::new(64 * 1024);
    let mut buf = BytesMut::new();
    let mut consumed = 0usize;
    let mut received = 0usize;
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        received += piece.len();
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(f)) => {
                    consumed += 4 + f.len();
                    let _ = frame::decode_request(f);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(buf.capacity() <= 4 * (received + 64 * 1024), "reserved {} after {received} bytes", buf.capacity());
    }
    assert!(consumed <= stream.len());
}

/// The SCRAM client's parsing of the server's messages (server-first, then server-final):
/// any bytes give a typed error or success, never a panic. The first byte picks the hash and
/// whether the server-first starts with our nonce (to get past the nonce check); a newline
/// separates server-first from server-final. Iterations are capped low to keep runs fast.
pub fn scram_client(data: &[u8]) {
    const NONCE: &str = "fuzzclientnonce";
    let Some((&mode, rest)) = data.split_first() else { return };
    let algorithm = if mode & 1 == 0 { ScramAlgorithm::Sha256 } else { ScramAlgorithm::Sha512 };
    let (first, last) = match rest.iter().position(|b| *b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let mut server_first = Vec::new();
    if mode & 2 != 0 {
        server_first.extend_from_slice(b"r=");
        server_first.extend_from_slice(NONCE.as_bytes());
    }
    server_first.extend_from_slice(first);
    let mut client = ScramClient::with_nonce(algorithm, "user", Secret::new("pencil"), NONCE).iteration_limits(1, 64);
    let _ = client.client_first();
    if client.handle_server_first(&server_first).is_ok() {
        let _ = client.handle_server_final(last);
    }
}
