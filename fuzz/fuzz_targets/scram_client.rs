//! The SCRAM client's parsing of the server's messages (server-first, then server-final):
//! any bytes give a typed error or success, never a panic. The first byte picks the hash and
//! whether the server-first starts with our nonce (to get past the nonce check); a newline
//! separates server-first from server-final. Iterations are capped low to keep runs fast.
#![no_main]

use kafka_client::security::sasl::scram::{ScramAlgorithm, ScramClient};
use kafka_client::security::Secret;
use libfuzzer_sys::fuzz_target;

const NONCE: &str = "fuzzclientnonce";

fuzz_target!(|data: &[u8]| {
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
    let mut client =
        ScramClient::with_nonce(algorithm, "user", Secret::new("pencil"), NONCE).iteration_limits(1, 64);
    let _ = client.client_first();
    if client.handle_server_first(&server_first).is_ok() {
        let _ = client.handle_server_final(last);
    }
});
