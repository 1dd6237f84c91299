//! Any response body at any api key and version (chosen by the first two input bytes), plus the
//! response frame path. Whatever decodes must re-encode canonically.
#![no_main]

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ResponseBody;
use kafka_protocol::{frame, ApiKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let Some((&ver, body)) = rest.split_first() else { return };
    let api = ApiKey::ALL[sel as usize % ApiKey::ALL.len()];
    let range = api.valid_versions();
    let version = range.min + (ver as i16 % (range.max - range.min + 1));
    let mut buf = Bytes::copy_from_slice(body);
    if let Ok(decoded) = ResponseBody::decode(api, &mut buf, version) {
        let mut once = BytesMut::new();
        decoded.encode(&mut once, version).expect("a decoded response re-encodes");
        let again = ResponseBody::decode(api, &mut once.clone().freeze(), version).expect("re-encoded response decodes");
        let mut twice = BytesMut::new();
        again.encode(&mut twice, version).expect("re-encodes twice");
        assert_eq!(once, twice, "{api:?} v{version} is not canonical");
    }
    let _ = frame::decode_response_body(Bytes::copy_from_slice(body), api, version);
});
