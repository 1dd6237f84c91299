//! Listener security: TLS (rustls) and SASL (PLAIN, SCRAM-SHA-256/512, and an OAUTHBEARER
//! validator for tests), as Kafka's broker does them.
//!
//! Every connection of a SASL listener starts unauthenticated: only ApiVersions and
//! SaslHandshake are accepted, then SaslAuthenticate rounds; any other request closes the
//! connection, as Kafka's `SaslServerAuthenticator` does. With `connections.max.reauth.ms`
//! set, a session lasts that long (or until the OAUTHBEARER token expires, if sooner): the
//! client must re-authenticate (SaslHandshake + SaslAuthenticate on the same connection,
//! KIP-368) before then, or its next request closes the connection.
//!
//! Nothing here logs credentials or SASL bytes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine;
use ring::rand::SecureRandom;
use ring::{digest, hmac, pbkdf2};

use crate::error::BrokerError;

/// The security of the broker's listeners (Kafka's `security.protocol` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SecurityProtocol {
    /// Plain TCP, no authentication (the default).
    #[default]
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL over plain TCP.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Whether listeners speak TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether clients must authenticate with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }
}

impl std::str::FromStr for SecurityProtocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Ok(SecurityProtocol::Plaintext),
            "SSL" => Ok(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Ok(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Ok(SecurityProtocol::SaslSsl),
            _ => Err(format!("{s}: expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")),
        }
    }
}

/// A SASL mechanism the bundled broker can check passwords for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SaslMechanism {
    /// PLAIN.
    Plain,
    /// SCRAM-SHA-256.
    ScramSha256,
    /// SCRAM-SHA-512.
    ScramSha512,
}

impl SaslMechanism {
    /// Kafka's name for it.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "PLAIN" => Some(SaslMechanism::Plain),
            "SCRAM-SHA-256" => Some(SaslMechanism::ScramSha256),
            "SCRAM-SHA-512" => Some(SaslMechanism::ScramSha512),
            _ => None,
        }
    }
}

impl std::str::FromStr for SaslMechanism {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        SaslMechanism::from_name(&s.to_ascii_uppercase())
            .ok_or_else(|| format!("{s}: expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"))
    }
}

/// A user of a SASL listener. `Debug` does not show the password.
#[derive(Clone)]
pub(crate) struct SaslUser {
    pub name: String,
    pub password: String,
    pub mechanism: SaslMechanism,
}

impl std::fmt::Debug for SaslUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslUser")
            .field("name", &self.name)
            .field("password", &"[redacted]")
            .field("mechanism", &self.mechanism)
            .finish()
    }
}

/// A certificate authority made at start for tests (rcgen), and the certificates it issues.
/// Its certificate is what clients trust (`ssl.ca.location`).
#[derive(Clone)]
pub struct TestCa {
    inner: Arc<(rcgen::Certificate, rcgen::KeyPair)>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestCa")
    }
}

fn tls_error(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Config(format!("TLS: {e}"))
}

impl TestCa {
    /// A new CA with a fresh key (ECDSA P-256), valid from now for a year.
    ///
    /// # Errors
    /// [`BrokerError::Config`] if rcgen fails.
    pub fn generate() -> Result<TestCa, BrokerError> {
        let key = rcgen::KeyPair::generate().map_err(tls_error)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(tls_error)?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        // A name of its own: two test CAs with one name would look like one CA whose
        // signatures do not verify, instead of an unknown issuer.
        let id: String = random_bytes(6).iter().map(|b| format!("{b:02x}")).collect();
        params.distinguished_name.push(rcgen::DnType::CommonName, format!("kafka-sdk bundled broker test CA {id}"));
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).map_err(tls_error)?;
        Ok(TestCa { inner: Arc::new((cert, key)) })
    }

    /// The CA certificate, PEM.
    pub fn certificate_pem(&self) -> String {
        self.inner.0.pem()
    }

    /// Issues a certificate for `names` (DNS names or IP addresses; the first is also the
    /// common name), usable by servers and clients. Returns the certificate and its private
    /// key (PKCS#8), both PEM.
    ///
    /// # Errors
    /// [`BrokerError::Config`] for a name rcgen refuses.
    pub fn issue(&self, names: &[&str]) -> Result<(String, String), BrokerError> {
        let key = rcgen::KeyPair::generate().map_err(tls_error)?;
        let mut params = rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .map_err(tls_error)?;
        if let Some(first) = names.first() {
            params.distinguished_name.push(rcgen::DnType::CommonName, *first);
        }
        params.extended_key_usages =
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.inner.0, &self.inner.1).map_err(tls_error)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// Where a TLS listener's certificate comes from.
#[derive(Debug, Clone, Default)]
pub(crate) enum TlsIdentity {
    /// A generated CA and a certificate from it for the listeners' host, `localhost`,
    /// `127.0.0.1` and `::1`.
    #[default]
    Generate,
    /// A given CA issues the certificate.
    FromCa(TestCa),
    /// A given certificate chain and key (PEM).
    Pem { cert: String, key: String },
}

/// Counters of a cluster's SASL activity (for tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SecurityStats {
    /// Successful first authentications.
    pub authentications: u64,
    /// Successful re-authentications on an authenticated connection (KIP-368).
    pub reauthentications: u64,
    /// Failed authentications (wrong password, unknown user, bad proof or token).
    pub failures: u64,
    /// Connections closed because a request came after the session expired.
    pub expired_sessions: u64,
    /// Connections closed for a request other than ApiVersions/SaslHandshake/SaslAuthenticate
    /// before authentication.
    pub unauthenticated_requests: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    authentications: AtomicU64,
    reauthentications: AtomicU64,
    failures: AtomicU64,
    pub expired_sessions: AtomicU64,
    pub unauthenticated_requests: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> SecurityStats {
        SecurityStats {
            authentications: self.authentications.load(Ordering::Relaxed),
            reauthentications: self.reauthentications.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            expired_sessions: self.expired_sessions.load(Ordering::Relaxed),
            unauthenticated_requests: self.unauthenticated_requests.load(Ordering::Relaxed),
        }
    }
}

/// What is stored per user: the password for PLAIN; for SCRAM only the salt, the iteration
/// count and the derived keys (RFC 5802), as Kafka stores them.
enum Credential {
    Plain(Vec<u8>),
    Scram { salt: Vec<u8>, iterations: u32, stored_key: Vec<u8>, server_key: Vec<u8> },
}

/// The iterations the bundled broker uses for SCRAM credentials (Kafka's minimum and
/// the usual value).
const SCRAM_ITERATIONS: u32 = 4096;

fn scram_alg(m: SaslMechanism) -> (hmac::Algorithm, &'static digest::Algorithm, pbkdf2::Algorithm) {
    match m {
        SaslMechanism::ScramSha512 => (hmac::HMAC_SHA512, &digest::SHA512, pbkdf2::PBKDF2_HMAC_SHA512),
        _ => (hmac::HMAC_SHA256, &digest::SHA256, pbkdf2::PBKDF2_HMAC_SHA256),
    }
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    // SystemRandom fails only without an OS RNG; the nonce is then still unique per process
    // run because of the counter below, which is enough for a test broker.
    if ring::rand::SystemRandom::new().fill(&mut v).is_err() {
        static COUNTER: AtomicU64 = AtomicU64::new(1);
        let c = COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes();
        for (b, x) in v.iter_mut().zip(c.iter().cycle()) {
            *b = *x;
        }
    }
    v
}

/// Equality that takes the same time wherever the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The SASL side of a listener.
pub(crate) struct SaslServer {
    credentials: HashMap<(String, SaslMechanism), Credential>,
    enabled: Vec<String>,
    oauth_test_validator: bool,
    max_reauth: Option<Duration>,
    pub counters: Arc<Counters>,
}

impl SaslServer {
    pub fn new(users: &[SaslUser], oauth_test_validator: bool, max_reauth: Option<Duration>) -> SaslServer {
        let mut credentials = HashMap::new();
        let mut enabled: Vec<String> = Vec::new();
        for u in users {
            let credential = match u.mechanism {
                SaslMechanism::Plain => Credential::Plain(u.password.as_bytes().to_vec()),
                m => {
                    let (h, d, p) = scram_alg(m);
                    let salt = random_bytes(16);
                    let mut salted = vec![0u8; d.output_len()];
                    let iterations = std::num::NonZeroU32::MIN.saturating_add(SCRAM_ITERATIONS - 1);
                    pbkdf2::derive(p, iterations, &salt, u.password.as_bytes(), &mut salted);
                    let salted = hmac::Key::new(h, &salted);
                    let client_key = hmac::sign(&salted, b"Client Key");
                    let stored_key = digest::digest(d, client_key.as_ref()).as_ref().to_vec();
                    let server_key = hmac::sign(&salted, b"Server Key").as_ref().to_vec();
                    Credential::Scram { salt, iterations: SCRAM_ITERATIONS, stored_key, server_key }
                }
            };
            credentials.insert((u.name.clone(), u.mechanism), credential);
            if !enabled.iter().any(|e| e == u.mechanism.name()) {
                enabled.push(u.mechanism.name().to_owned());
            }
        }
        if oauth_test_validator {
            enabled.push("OAUTHBEARER".to_owned());
        }
        SaslServer { credentials, enabled, oauth_test_validator, max_reauth, counters: Arc::new(Counters::default()) }
    }

    /// The enabled mechanisms, as SaslHandshake lists them.
    pub fn enabled(&self) -> &[String] {
        &self.enabled
    }

    fn is_enabled(&self, mechanism: &str) -> bool {
        self.enabled.iter().any(|m| m == mechanism)
    }
}

/// Where a connection is in authentication.
#[derive(Debug)]
pub(crate) enum AuthState {
    /// Nothing yet: ApiVersions or SaslHandshake expected.
    Start,
    /// SaslHandshake done; SaslAuthenticate expected.
    Handshaken(Mechanism),
    /// SCRAM: the server-first message was sent.
    ScramFirstSent(Box<ScramServerState>),
    /// OAUTHBEARER: an error challenge was sent; the client's acknowledgement comes next.
    OAuthFailed(String),
    /// Authenticated; the session ends at `expires` (when set).
    Authenticated { principal: String, mechanism: Mechanism, expires: Option<Instant> },
}

/// A mechanism chosen in SaslHandshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mechanism {
    Password(SaslMechanism),
    OAuthBearer,
}

impl Mechanism {
    fn name(self) -> &'static str {
        match self {
            Mechanism::Password(m) => m.name(),
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }
}

#[derive(Debug)]
pub(crate) struct ScramServerState {
    mechanism: SaslMechanism,
    user: String,
    gs2_header: String,
    nonce: String,
    client_first_bare: String,
    server_first: String,
}

/// The outcome of one SASL message.
pub(crate) struct Step {
    /// Bytes for the SaslAuthenticate response.
    pub bytes: Vec<u8>,
    /// An error (SASL_AUTHENTICATION_FAILED) with its message: the connection closes after the
    /// response.
    pub error: Option<String>,
    /// The session lifetime to report (SaslAuthenticate v1+).
    pub session_lifetime_ms: i64,
}

impl Step {
    fn fail(message: String) -> Step {
        Step { bytes: Vec::new(), error: Some(message), session_lifetime_ms: 0 }
    }
}

impl SaslServer {
    /// SaslHandshake: `Ok(mechanism)` if enabled; a re-authentication must keep the
    /// mechanism of the session (as Kafka requires).
    pub fn handshake(&self, state: &AuthState, mechanism: &str) -> Result<Mechanism, ()> {
        if !self.is_enabled(mechanism) {
            return Err(());
        }
        let chosen = match SaslMechanism::from_name(mechanism) {
            Some(m) => Mechanism::Password(m),
            None if mechanism == "OAUTHBEARER" && self.oauth_test_validator => Mechanism::OAuthBearer,
            None => return Err(()),
        };
        match state {
            AuthState::Authenticated { mechanism: m, .. } if *m != chosen => Err(()),
            _ => Ok(chosen),
        }
    }

    /// One SaslAuthenticate message. `state` moves on; `previous` is the principal of the
    /// session being re-authenticated, if any.
    pub fn authenticate(&self, state: &mut AuthState, previous: Option<&str>, message: &[u8]) -> Step {
        let current = std::mem::replace(state, AuthState::Start);
        let failed = |m: Mechanism| {
            format!(
                "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
                m.name()
            )
        };
        let step = match current {
            AuthState::Handshaken(Mechanism::Password(SaslMechanism::Plain)) => match self.plain(message) {
                Some(user) => self.done(state, previous, user, Mechanism::Password(SaslMechanism::Plain), None),
                None => Step::fail(failed(Mechanism::Password(SaslMechanism::Plain))),
            },
            AuthState::Handshaken(Mechanism::Password(m)) => match self.scram_first(m, message) {
                Ok((server_first, s)) => {
                    *state = AuthState::ScramFirstSent(Box::new(s));
                    Step { bytes: server_first.into_bytes(), error: None, session_lifetime_ms: 0 }
                }
                Err(why) => Step::fail(format!("{}: {why}", failed(Mechanism::Password(m)))),
            },
            AuthState::ScramFirstSent(s) => {
                let m = s.mechanism;
                match self.scram_final(&s, message) {
                    Ok(server_final) => {
                        let mut step = self.done(state, previous, s.user.clone(), Mechanism::Password(m), None);
                        if step.error.is_none() {
                            step.bytes = server_final.into_bytes();
                        }
                        step
                    }
                    Err(why) => Step::fail(format!("{}: {why}", failed(Mechanism::Password(m)))),
                }
            }
            AuthState::Handshaken(Mechanism::OAuthBearer) => match oauth_unsecured_token(message) {
                Ok((principal, expires)) => self.done(state, previous, principal, Mechanism::OAuthBearer, expires),
                Err(why) => {
                    *state = AuthState::OAuthFailed(why);
                    Step { bytes: br#"{"status":"invalid_token"}"#.to_vec(), error: None, session_lifetime_ms: 0 }
                }
            },
            AuthState::OAuthFailed(why) => Step::fail(format!("{}: {why}", failed(Mechanism::OAuthBearer))),
            other @ (AuthState::Start | AuthState::Authenticated { .. }) => {
                *state = other;
                return Step::fail("SaslAuthenticate without a SaslHandshake first".to_owned());
            }
        };
        if step.error.is_some() {
            self.counters.failures.fetch_add(1, Ordering::Relaxed);
        }
        step
    }

    /// A successful exchange: the session's lifetime is `connections.max.reauth.ms`, or less
    /// if the token expires sooner.
    fn done(
        &self,
        state: &mut AuthState,
        previous: Option<&str>,
        principal: String,
        mechanism: Mechanism,
        token_expires: Option<Instant>,
    ) -> Step {
        if previous.is_some_and(|p| p != principal) {
            return Step::fail(format!("re-authentication as {principal} on a connection of another principal"));
        }
        let now = Instant::now();
        let expires = match (self.max_reauth.map(|d| now + d), token_expires) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let counter =
            if previous.is_some() { &self.counters.reauthentications } else { &self.counters.authentications };
        counter.fetch_add(1, Ordering::Relaxed);
        let session_lifetime_ms = expires
            .map(|e| e.saturating_duration_since(now).as_millis().clamp(1, i64::MAX as u128) as i64)
            .unwrap_or(0);
        *state = AuthState::Authenticated { principal, mechanism, expires };
        Step { bytes: Vec::new(), error: None, session_lifetime_ms }
    }

    /// PLAIN: `authzid NUL authcid NUL password`; the password is compared in constant time.
    fn plain(&self, message: &[u8]) -> Option<String> {
        let mut parts = message.split(|b| *b == 0);
        let (authzid, user, password) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let user = std::str::from_utf8(user).ok()?;
        if !authzid.is_empty() && authzid != user.as_bytes() {
            return None;
        }
        match self.credentials.get(&(user.to_owned(), SaslMechanism::Plain)) {
            Some(Credential::Plain(expected)) if constant_time_eq(expected, password) => Some(user.to_owned()),
            _ => None,
        }
    }

    fn scram_first(&self, mechanism: SaslMechanism, message: &[u8]) -> Result<(String, ScramServerState), String> {
        let text = std::str::from_utf8(message).map_err(|_| "client-first is not UTF-8")?;
        // gs2-header: ("n" | "y") "," [ "a=" authzid ] ","; channel binding ("p=") is refused.
        let (cb, rest) = text.split_once(',').ok_or("malformed client-first")?;
        if cb != "n" && cb != "y" {
            return Err("channel binding is not supported".to_owned());
        }
        let (authzid, bare) = rest.split_once(',').ok_or("malformed client-first")?;
        let gs2_header = format!("{cb},{authzid},");
        let mut user = None;
        let mut nonce = None;
        for (i, attr) in bare.split(',').enumerate() {
            match attr.split_once('=') {
                Some(("m", _)) if i == 0 => return Err("mandatory extensions are not supported".to_owned()),
                Some(("n", v)) => user = Some(unescape(v).ok_or("malformed user name")?),
                Some(("r", v)) => nonce = Some(v),
                Some(_) => {} // extensions (Kafka's tokenauth=...) are ignored
                None => return Err("malformed client-first".to_owned()),
            }
        }
        let user = user.ok_or("no user name")?;
        let client_nonce = nonce.filter(|n| !n.is_empty()).ok_or("no nonce")?;
        if let Some(a) = authzid.strip_prefix("a=") {
            if unescape(a).as_deref() != Some(user.as_str()) {
                return Err("authorization id differs from the user".to_owned());
            }
        } else if !authzid.is_empty() {
            return Err("malformed authorization id".to_owned());
        }
        let Some(Credential::Scram { salt, iterations, .. }) = self.credentials.get(&(user.clone(), mechanism)) else {
            return Err("unknown user".to_owned());
        };
        let nonce = format!("{client_nonce}{}", B64.encode(random_bytes(18)));
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(salt));
        let state = ScramServerState {
            mechanism,
            user,
            gs2_header,
            nonce,
            client_first_bare: bare.to_owned(),
            server_first: server_first.clone(),
        };
        Ok((server_first, state))
    }

    fn scram_final(&self, s: &ScramServerState, message: &[u8]) -> Result<String, String> {
        let text = std::str::from_utf8(message).map_err(|_| "client-final is not UTF-8")?;
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or("no proof in client-final")?;
        let mut channel = None;
        let mut nonce = None;
        for attr in without_proof.split(',') {
            match attr.split_once('=') {
                Some(("c", v)) => channel = Some(v),
                Some(("r", v)) => nonce = Some(v),
                Some(_) => {}
                None => return Err("malformed client-final".to_owned()),
            }
        }
        let channel = B64.decode(channel.ok_or("no channel binding")?).map_err(|_| "bad channel binding")?;
        if channel != s.gs2_header.as_bytes() {
            return Err("channel binding does not match the gs2 header".to_owned());
        }
        if nonce != Some(s.nonce.as_str()) {
            return Err("nonce mismatch".to_owned());
        }
        let proof = B64.decode(proof).map_err(|_| "the proof is not base64")?;
        let Some(Credential::Scram { stored_key, server_key, .. }) =
            self.credentials.get(&(s.user.clone(), s.mechanism))
        else {
            return Err("unknown user".to_owned());
        };
        let (h, d, _) = scram_alg(s.mechanism);
        let auth_message = format!("{},{},{without_proof}", s.client_first_bare, s.server_first);
        let client_signature = hmac::sign(&hmac::Key::new(h, stored_key), auth_message.as_bytes());
        if proof.len() != client_signature.as_ref().len() {
            return Err("invalid proof".to_owned());
        }
        let client_key: Vec<u8> = proof.iter().zip(client_signature.as_ref()).map(|(p, c)| p ^ c).collect();
        if !constant_time_eq(digest::digest(d, &client_key).as_ref(), stored_key) {
            return Err("invalid proof".to_owned());
        }
        let server_signature = hmac::sign(&hmac::Key::new(h, server_key), auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature.as_ref())))
    }
}

/// RFC 5802 saslname: `=2C` is `,` and `=3D` is `=`; any other `=` is malformed.
fn unescape(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(rest.get(..i)?);
        let esc = rest.get(i..i + 3)?;
        out.push(match esc {
            "=2C" => ',',
            "=3D" => '=',
            _ => return None,
        });
        rest = rest.get(i + 3..)?;
    }
    out.push_str(rest);
    Some(out)
}

/// **For tests only**, like Kafka's `OAuthBearerUnsecuredValidatorCallbackHandler`: accepts
/// an *unsigned* JWT (`alg: none`) whose payload has a `sub` (the principal) and an `exp`
/// in the future. Anyone can make such a token; never expose a listener with this on.
fn oauth_unsecured_token(message: &[u8]) -> Result<(String, Option<Instant>), String> {
    let text = std::str::from_utf8(message).map_err(|_| "not UTF-8".to_owned())?;
    // gs2 header, then \x01-separated key=value pairs, ending with \x01\x01.
    let (_gs2, kvs) = text.split_once('\u{1}').ok_or("malformed OAUTHBEARER message")?;
    let auth =
        kvs.split('\u{1}').find_map(|kv| kv.strip_prefix("auth=")).ok_or("no auth= in the OAUTHBEARER message")?;
    let token = auth.strip_prefix("Bearer ").ok_or("not a Bearer token")?.trim();
    let mut parts = token.split('.');
    let (_header, payload) = (parts.next().ok_or("not a JWT")?, parts.next().ok_or("not a JWT")?);
    let payload = B64URL.decode(payload.trim_end_matches('=')).map_err(|_| "the JWT payload is not base64url")?;
    let claims: serde_json::Value = serde_json::from_slice(&payload).map_err(|_| "the JWT payload is not JSON")?;
    let sub = claims.get("sub").and_then(|v| v.as_str()).filter(|s| !s.is_empty()).ok_or("no sub claim")?;
    let exp = claims.get("exp").and_then(|v| v.as_f64()).ok_or("no exp claim")?;
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    if exp <= now {
        return Err("the token has expired".to_owned());
    }
    let left = Duration::try_from_secs_f64(exp - now).map_err(|_| "bad exp claim")?;
    Ok((sub.to_owned(), Instant::now().checked_add(left)))
}

/// What a listener task needs to secure its connections.
pub(crate) struct ListenerSecurity {
    /// The TLS acceptor of a TLS listener.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// The SASL side of a SASL listener.
    pub sasl: Option<Arc<SaslServer>>,
}

impl std::fmt::Debug for ListenerSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerSecurity")
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.sasl.as_ref().map(|s| s.enabled().to_vec()))
            .finish()
    }
}

/// A rustls server configuration from PEM texts; `client_ca` makes client certificates
/// required (mTLS, Kafka's `ssl.client.auth=required`).
pub(crate) fn server_tls(
    cert_pem: &str,
    key_pem: &str,
    client_ca: Option<&str>,
) -> Result<tokio_rustls::TlsAcceptor, BrokerError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs =
        CertificateDer::pem_slice_iter(cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>().map_err(tls_error)?;
    if certs.is_empty() {
        return Err(tls_error("no certificate in the certificate PEM"));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(tls_error)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                roots.add(c.map_err(tls_error)?).map_err(tls_error)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(tls_error)?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(certs, key).map_err(tls_error)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saslnames_unescape() {
        assert_eq!(unescape("a=3Db=2Cc").as_deref(), Some("a=b,c"));
        assert_eq!(unescape("a=4"), None);
        assert_eq!(unescape("a=").as_deref(), None);
    }

    #[test]
    fn plain_needs_the_right_password_and_no_foreign_authzid() {
        let users = [SaslUser { name: "u".into(), password: "p".into(), mechanism: SaslMechanism::Plain }];
        let s = SaslServer::new(&users, false, None);
        assert_eq!(s.plain(b"\0u\0p").as_deref(), Some("u"));
        assert_eq!(s.plain(b"u\0u\0p").as_deref(), Some("u"));
        assert_eq!(s.plain(b"\0u\0q"), None);
        assert_eq!(s.plain(b"x\0u\0p"), None);
        assert_eq!(s.plain(b"\0u"), None);
        assert_eq!(s.plain(b"\0u\0p\0"), None);
    }

    #[test]
    fn unsecured_jwts_need_sub_and_a_future_exp() {
        let jwt =
            |claims: &str| format!("n,,\u{1}auth=Bearer eyJhbGciOiJub25lIn0.{}.\u{1}\u{1}", B64URL.encode(claims));
        let far = 4_000_000_000u64;
        let ok = oauth_unsecured_token(jwt(&format!(r#"{{"sub":"svc","exp":{far}}}"#)).as_bytes()).unwrap();
        assert_eq!(ok.0, "svc");
        assert!(oauth_unsecured_token(jwt(r#"{"sub":"svc","exp":1}"#).as_bytes()).unwrap_err().contains("expired"));
        assert!(oauth_unsecured_token(jwt(&format!(r#"{{"exp":{far}}}"#)).as_bytes()).is_err());
        assert!(oauth_unsecured_token(b"garbage").is_err());
    }
}
