//! Any request body at any api key and version (chosen by the first two input bytes), plus the
//! full frame path (header included). Whatever decodes must re-encode, and decoding that again
//! must give the same bytes: the decoder and encoder agree on a canonical form.
#![no_main]

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::RequestBody;
use kafka_protocol::{frame, ApiKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let Some((&ver, body)) = rest.split_first() else { return };
    let api = ApiKey::ALL[sel as usize % ApiKey::ALL.len()];
    let range = api.valid_versions();
    let version = range.min + (ver as i16 % (range.max - range.min + 1));
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
});
