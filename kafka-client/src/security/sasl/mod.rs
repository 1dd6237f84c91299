//! SASL: the [`SaslMechanism`] trait, the built-in mechanisms (PLAIN, SCRAM-SHA-256/512,
//! OAUTHBEARER), and the SaslHandshake + SaslAuthenticate exchange that drives them.
//!
//! A mechanism defined outside this crate (AWS MSK IAM, GSSAPI, ...) implements
//! [`SaslMechanism`] and is set with
//! [`SecurityConfig::sasl_mechanism`](crate::security::SecurityConfig::sasl_mechanism).
//!
//! Nothing in an exchange is logged: neither the bytes sent nor the bytes received, at any
//! level (the broker's error message is reported in [`Error::Authentication`]).

mod oauthbearer;
mod plain;
pub mod scram;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::{ApiKey, ErrorCode};

pub use oauthbearer::{OAuthBearer, OAuthBearerToken, OAuthBearerTokenProvider};
pub use plain::Plain;
pub use scram::{Scram, ScramAlgorithm};

use crate::conn::ApiVersionTable;
use crate::error::{Error, Result};

/// A boxed, sendable future (what the object-safe traits here return).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a mechanism gave up (a token could not be had, the server's message is malformed or
/// fails verification). Reported as [`Error::Authentication`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslError(pub String);

impl SaslError {
    /// An error with this message (which must not contain credentials).
    pub fn new(message: impl Into<String>) -> Self {
        SaslError(message.into())
    }
}

impl std::fmt::Display for SaslError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a mechanism may want to know about the connection it authenticates.
#[derive(Debug, Clone)]
pub struct SaslContext {
    /// The broker's host name, as connected to (GSSAPI and MSK IAM sign it).
    pub host: String,
    /// The broker's port.
    pub port: u16,
    /// The broker's label for messages (`node 1 (host:port)`).
    pub broker: String,
}

/// A SASL mechanism: a name for SaslHandshake, and a fresh exchange per authentication.
pub trait SaslMechanism: Send + Sync + 'static {
    /// The mechanism's name as the broker knows it (`PLAIN`, `SCRAM-SHA-512`, `AWS_MSK_IAM`).
    fn name(&self) -> &str;

    /// Starts one authentication (the first, or a re-authentication, KIP-368). Async so that
    /// a mechanism can fetch a token or sign a request first.
    fn start<'a>(&'a self, context: &'a SaslContext) -> BoxFuture<'a, Result<Box<dyn SaslExchange>, SaslError>>;
}

/// One authentication's state machine.
pub trait SaslExchange: Send {
    /// Given the server's last message (`None` before the first message), the client's next
    /// message, or `None` when the client has nothing more to send and accepts the server's
    /// last message as the end of the exchange.
    fn step(&mut self, server_message: Option<&[u8]>) -> Result<Option<Vec<u8>>, SaslError>;
}

/// The two SASL requests, sent by whoever owns the stream: the connection setup (a raw
/// stream) or the writer task (re-authentication on a running connection).
pub(crate) trait SaslIo: Send {
    fn handshake(
        &mut self,
        request: SaslHandshakeRequest,
        version: i16,
    ) -> BoxFuture<'_, Result<SaslHandshakeResponse>>;
    fn authenticate(
        &mut self,
        request: SaslAuthenticateRequest,
        version: i16,
    ) -> BoxFuture<'_, Result<SaslAuthenticateResponse>>;
}

/// More rounds than any mechanism needs (SCRAM takes two); a server that keeps asking is
/// broken or hostile.
const MAX_ROUNDS: usize = 16;

/// Runs SaslHandshake then SaslAuthenticate rounds until the mechanism is done. Returns the
/// session lifetime the broker set (SaslAuthenticate v1+), after which the connection must
/// re-authenticate; `None` when the broker sets none.
pub(crate) async fn authenticate(
    io: &mut dyn SaslIo,
    mechanism: &dyn SaslMechanism,
    context: &SaslContext,
    versions: &ApiVersionTable,
) -> Result<Option<Duration>> {
    let name = mechanism.name().to_owned();
    let broker = context.broker.clone();
    let failed = |message: String| Error::Authentication { broker: broker.clone(), mechanism: name.clone(), message };
    let unsupported = |api: ApiKey, min: i16| Error::UnsupportedVersion {
        api,
        broker: broker.clone(),
        detail: format!(
            "broker {}, client needs {min}+ (SASL over SaslAuthenticate, KIP-152)",
            versions.broker_range(api).map(|r| r.to_string()).unwrap_or_else(|| "none".to_owned())
        ),
    };
    let handshake_version =
        versions.pick(ApiKey::SaslHandshake, 1).ok_or_else(|| unsupported(ApiKey::SaslHandshake, 1))?;
    let auth_version =
        versions.pick(ApiKey::SaslAuthenticate, 0).ok_or_else(|| unsupported(ApiKey::SaslAuthenticate, 0))?;

    let response =
        io.handshake(SaslHandshakeRequest { mechanism: name.clone(), ..Default::default() }, handshake_version).await?;
    match ErrorCode::from_code(response.error_code) {
        ErrorCode::None => {}
        ErrorCode::UnsupportedSaslMechanism => {
            return Err(Error::SaslMechanismNotEnabled { broker, mechanism: name, enabled: response.mechanisms })
        }
        ErrorCode::IllegalSaslState => {
            return Err(failed(
                "SaslHandshake: ILLEGAL_SASL_STATE (the listener may not use SASL: check security.protocol)".to_owned(),
            ))
        }
        code => return Err(failed(format!("SaslHandshake: {}", code.name()))),
    }

    let mut exchange = mechanism.start(context).await.map_err(|e| failed(e.0))?;
    let mut message = exchange.step(None).map_err(|e| failed(e.0))?;
    let mut lifetime = None;
    let mut rounds = 0;
    while let Some(bytes) = message.take() {
        rounds += 1;
        if rounds > MAX_ROUNDS {
            return Err(failed(format!("the broker asked for more than {MAX_ROUNDS} rounds")));
        }
        let response = io
            .authenticate(
                SaslAuthenticateRequest { auth_bytes: Bytes::from(bytes), ..Default::default() },
                auth_version,
            )
            .await?;
        if let Some(code) = ErrorCode::from_code(response.error_code).err() {
            let said = response.error_message.filter(|m| !m.is_empty());
            return Err(failed(match said {
                Some(m) => format!("{}: {m}", code.name()),
                None => code.name().to_owned(),
            }));
        }
        lifetime =
            (response.session_lifetime_ms > 0).then(|| Duration::from_millis(response.session_lifetime_ms as u64));
        message = exchange.step(Some(&response.auth_bytes)).map_err(|e| failed(e.0))?;
    }
    tracing::debug!(broker = %context.broker, mechanism = %name, session_lifetime_ms = lifetime.map(|d| d.as_millis() as u64), "SASL authentication done");
    Ok(lifetime)
}

/// When to re-authenticate a session of `lifetime` that started at `started`: at a random
/// point between 85% and 95% of it, as the Java client does (so that many connections
/// authenticated together do not re-authenticate together).
pub(crate) fn reauth_at(started: tokio::time::Instant, lifetime: Duration) -> tokio::time::Instant {
    use rand::Rng;
    let fraction = rand::thread_rng().gen_range(0.85..0.95);
    started + lifetime.mul_f64(fraction)
}
