//! SASL/SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), client side.
//!
//! The password never crosses the wire: the client proves it knows it, and checks that the
//! server knows the salted password too (the server signature). What is checked in the
//! server's messages, each a typed [`SaslError`] rather than a panic:
//! - the combined nonce starts with ours and adds at least one character (otherwise the
//!   messages could be replayed from another session);
//! - the salt decodes and is not empty; the iteration count is within
//!   [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`] (0 would make the proof worthless, a huge count
//!   would let a server keep the client busy for hours);
//! - mandatory extensions (`m=`) are refused; `e=` errors are reported;
//! - the server signature matches (compared in constant time).
//!
//! [`ScramClient`] is the sans-IO state machine (public for fuzzing and tests);
//! [`Scram`] is the [`SaslMechanism`].

use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::{digest, hmac, pbkdf2};

use super::{BoxFuture, SaslContext, SaslError, SaslExchange, SaslMechanism};
use crate::security::Secret;

/// The fewest iterations accepted from a server (RFC 7677 and Kafka's minimum).
pub const MIN_ITERATIONS: u32 = 4096;
/// The most iterations accepted from a server: about a second of PBKDF2 with SHA-512.
pub const MAX_ITERATIONS: u32 = 1_000_000;

/// The hash of a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScramAlgorithm {
    /// SCRAM-SHA-256.
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

impl ScramAlgorithm {
    /// The mechanism name.
    pub fn mechanism(self) -> &'static str {
        match self {
            ScramAlgorithm::Sha256 => "SCRAM-SHA-256",
            ScramAlgorithm::Sha512 => "SCRAM-SHA-512",
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            ScramAlgorithm::Sha256 => hmac::HMAC_SHA256,
            ScramAlgorithm::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            ScramAlgorithm::Sha256 => &digest::SHA256,
            ScramAlgorithm::Sha512 => &digest::SHA512,
        }
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            ScramAlgorithm::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            ScramAlgorithm::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn len(self) -> usize {
        self.digest().output_len()
    }
}

/// SCRAM-SHA-256 or SCRAM-SHA-512 with a user name and password.
#[derive(Debug, Clone)]
pub struct Scram {
    algorithm: ScramAlgorithm,
    username: String,
    password: Secret,
}

impl Scram {
    /// SCRAM with `algorithm` for `username` and `password`.
    pub fn new(algorithm: ScramAlgorithm, username: impl Into<String>, password: impl Into<Secret>) -> Self {
        Scram { algorithm, username: username.into(), password: password.into() }
    }
}

impl SaslMechanism for Scram {
    fn name(&self) -> &str {
        self.algorithm.mechanism()
    }

    fn start<'a>(&'a self, _context: &'a SaslContext) -> BoxFuture<'a, Result<Box<dyn SaslExchange>, SaslError>> {
        let client = ScramClient::new(self.algorithm, &self.username, self.password.clone());
        Box::pin(async move { Ok(Box::new(client?) as Box<dyn SaslExchange>) })
    }
}

enum State {
    Initial,
    SentFirst,
    SentFinal { server_signature: Vec<u8> },
    Done,
}

/// The client side of one SCRAM exchange, without I/O.
pub struct ScramClient {
    algorithm: ScramAlgorithm,
    password: Secret,
    nonce: String,
    client_first_bare: String,
    min_iterations: u32,
    max_iterations: u32,
    state: State,
}

impl std::fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramClient").field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}

/// `=` and `,` in a user name are escaped as `=3D` and `=2C` (RFC 5802 5.1).
fn sasl_name(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

impl ScramClient {
    /// A new exchange with a random 32-byte nonce.
    pub fn new(algorithm: ScramAlgorithm, username: &str, password: Secret) -> Result<Self, SaslError> {
        use ring::rand::SecureRandom;
        let mut raw = [0u8; 24];
        ring::rand::SystemRandom::new()
            .fill(&mut raw)
            .map_err(|_| SaslError::new("no random numbers for the nonce"))?;
        Ok(Self::with_nonce(algorithm, username, password, &B64.encode(raw)))
    }

    /// A new exchange with a given nonce (tests and fuzzing; a real exchange needs a fresh
    /// random nonce).
    pub fn with_nonce(algorithm: ScramAlgorithm, username: &str, password: Secret, nonce: &str) -> Self {
        ScramClient {
            algorithm,
            password,
            nonce: nonce.to_owned(),
            client_first_bare: format!("n={},r={nonce}", sasl_name(username)),
            min_iterations: MIN_ITERATIONS,
            max_iterations: MAX_ITERATIONS,
            state: State::Initial,
        }
    }

    /// Changes the accepted iteration counts (fuzzing uses a low ceiling to stay fast).
    pub fn iteration_limits(mut self, min: u32, max: u32) -> Self {
        self.min_iterations = min.max(1);
        self.max_iterations = max;
        self
    }

    /// The client-first message.
    pub fn client_first(&mut self) -> Vec<u8> {
        self.state = State::SentFirst;
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// Checks the server-first message and returns the client-final message.
    pub fn handle_server_first(&mut self, message: &[u8]) -> Result<Vec<u8>, SaslError> {
        if !matches!(self.state, State::SentFirst) {
            return Err(SaslError::new("SCRAM: server-first message out of order"));
        }
        self.state = State::Done;
        let text = std::str::from_utf8(message).map_err(|_| SaslError::new("SCRAM: server-first is not UTF-8"))?;
        let (mut nonce, mut salt, mut iterations) = (None, None, None);
        for (i, attr) in text.split(',').enumerate() {
            match attr.split_once('=') {
                Some(("m", _)) if i == 0 => {
                    return Err(SaslError::new("SCRAM: the server requires an extension this client does not know"))
                }
                Some(("e", e)) => return Err(SaslError::new(format!("SCRAM: the server says: {e}"))),
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = Some(v),
                Some(("i", v)) => iterations = Some(v),
                Some(_) => {} // extensions after the mandatory attributes are ignored
                None => return Err(SaslError::new("SCRAM: malformed server-first message")),
            }
        }
        let nonce = nonce.ok_or_else(|| SaslError::new("SCRAM: no nonce in server-first"))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() <= self.nonce.len() {
            return Err(SaslError::new("SCRAM: the server's nonce does not extend the client's"));
        }
        if !nonce.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',') {
            return Err(SaslError::new("SCRAM: the server's nonce has invalid characters"));
        }
        let salt = B64
            .decode(salt.ok_or_else(|| SaslError::new("SCRAM: no salt in server-first"))?)
            .map_err(|_| SaslError::new("SCRAM: the salt is not base64"))?;
        if salt.is_empty() {
            return Err(SaslError::new("SCRAM: empty salt"));
        }
        let iterations: u32 = iterations
            .ok_or_else(|| SaslError::new("SCRAM: no iteration count in server-first"))?
            .parse()
            .map_err(|_| SaslError::new("SCRAM: the iteration count is not a number"))?;
        if iterations < self.min_iterations || iterations > self.max_iterations {
            return Err(SaslError::new(format!(
                "SCRAM: iteration count {iterations} outside {}..={}",
                self.min_iterations, self.max_iterations
            )));
        }
        let iterations = NonZeroU32::new(iterations).ok_or_else(|| SaslError::new("SCRAM: iteration count 0"))?;

        let alg = self.algorithm;
        let mut salted = vec![0u8; alg.len()];
        pbkdf2::derive(alg.pbkdf2(), iterations, &salt, self.password.expose().as_bytes(), &mut salted);
        let salted_key = hmac::Key::new(alg.hmac(), &salted);
        let client_key = hmac::sign(&salted_key, b"Client Key");
        let stored_key = digest::digest(alg.digest(), client_key.as_ref());
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let client_signature = hmac::sign(&hmac::Key::new(alg.hmac(), stored_key.as_ref()), auth_message.as_bytes());
        let proof: Vec<u8> = client_key.as_ref().iter().zip(client_signature.as_ref()).map(|(k, s)| k ^ s).collect();
        let server_key = hmac::sign(&salted_key, b"Server Key");
        let server_signature =
            hmac::sign(&hmac::Key::new(alg.hmac(), server_key.as_ref()), auth_message.as_bytes()).as_ref().to_vec();
        self.state = State::SentFinal { server_signature };
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the server-final message (the server's signature).
    pub fn handle_server_final(&mut self, message: &[u8]) -> Result<(), SaslError> {
        let State::SentFinal { server_signature } = std::mem::replace(&mut self.state, State::Done) else {
            return Err(SaslError::new("SCRAM: server-final message out of order"));
        };
        let text = std::str::from_utf8(message).map_err(|_| SaslError::new("SCRAM: server-final is not UTF-8"))?;
        let first = text.split(',').next().unwrap_or("");
        if let Some(e) = first.strip_prefix("e=") {
            return Err(SaslError::new(format!("SCRAM: the server says: {e}")));
        }
        let v = first.strip_prefix("v=").ok_or_else(|| SaslError::new("SCRAM: no verifier in server-final"))?;
        let got = B64.decode(v).map_err(|_| SaslError::new("SCRAM: the server signature is not base64"))?;
        if !constant_time_eq(&got, &server_signature) {
            return Err(SaslError::new("SCRAM: the server's signature is wrong (it does not know the password)"));
        }
        Ok(())
    }
}

/// Equality that takes the same time wherever the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl SaslExchange for ScramClient {
    fn step(&mut self, server_message: Option<&[u8]>) -> Result<Option<Vec<u8>>, SaslError> {
        match (&self.state, server_message) {
            (State::Initial, None) => Ok(Some(self.client_first())),
            (State::SentFirst, Some(m)) => self.handle_server_first(m).map(Some),
            (State::SentFinal { .. }, Some(m)) => self.handle_server_final(m).map(|()| None),
            _ => Err(SaslError::new("SCRAM: unexpected message order")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7677 section 3's example (SCRAM-SHA-256, user "user", password "pencil").
    const NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const SERVER_FIRST: &str = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str =
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn client() -> ScramClient {
        ScramClient::with_nonce(ScramAlgorithm::Sha256, "user", Secret::new("pencil"), NONCE)
    }

    #[test]
    fn rfc7677_example_round_trip() {
        let mut c = client();
        assert_eq!(c.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        assert_eq!(String::from_utf8(c.handle_server_first(SERVER_FIRST.as_bytes()).unwrap()).unwrap(), CLIENT_FINAL);
        c.handle_server_final(SERVER_FINAL.as_bytes()).unwrap();
    }

    fn first_error(server_first: &str) -> String {
        let mut c = client();
        c.client_first();
        c.handle_server_first(server_first.as_bytes()).unwrap_err().0
    }

    #[test]
    fn a_server_nonce_that_does_not_extend_ours_is_refused() {
        assert!(first_error("r=somebodyElsesNonce123,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096").contains("nonce"));
        // Equal to ours: the server added nothing.
        assert!(first_error("r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096").contains("nonce"));
    }

    #[test]
    fn iteration_counts_out_of_bounds_are_refused() {
        for i in ["0", "1", "4095", "1000001", "4294967295", "99999999999", "-1", "x"] {
            let e = first_error(&format!("r={NONCE}abc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i={i}"));
            assert!(e.contains("iteration"), "{i}: {e}");
        }
    }

    #[test]
    fn a_bad_server_signature_is_refused() {
        let mut c = client();
        c.client_first();
        c.handle_server_first(SERVER_FIRST.as_bytes()).unwrap();
        let e = c.handle_server_final(b"v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=").unwrap_err();
        assert!(e.0.contains("signature"), "{e}");
        // Truncated, not base64, missing, an error attribute.
        for bad in ["v=6rriTRBi", "v=***", "x=1", "", "e=invalid-proof"] {
            let mut c = client();
            c.client_first();
            c.handle_server_first(SERVER_FIRST.as_bytes()).unwrap();
            assert!(c.handle_server_final(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn malformed_server_first_messages_are_errors() {
        for bad in [
            "",
            "garbage",
            "m=ext,r=x",
            "e=unknown-user",
            "r=rOprNGfwEbeRWgbNEkqOx,i=4096",
            "r=rOprNGfwEbeRWgbNEkqOx,s=,i=4096",
            "r=rOprNGfwEbeRWgbNEkqOx,s=!!,i=4096",
            "r=rOprNGfwEbeRWgbNEkqOx,s=W22Z",
        ] {
            assert!(!first_error(bad).is_empty(), "{bad}");
        }
        let mut c = client();
        assert!(c.handle_server_first(SERVER_FIRST.as_bytes()).is_err(), "before client-first");
        assert!(c.handle_server_final(SERVER_FINAL.as_bytes()).is_err(), "out of order");
    }

    #[test]
    fn user_names_are_escaped() {
        let mut c = ScramClient::with_nonce(ScramAlgorithm::Sha512, "a=b,c", Secret::new("p"), "n");
        assert_eq!(c.client_first(), b"n,,n=a=3Db=2Cc,r=n");
    }
}
