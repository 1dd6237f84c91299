//! SASL/OAUTHBEARER (RFC 7628, as Kafka uses it, KIP-255): a bearer token from a
//! user-supplied async provider, asked again at every re-authentication.

use std::sync::Arc;

use super::{BoxFuture, SaslContext, SaslError, SaslExchange, SaslMechanism};
use crate::security::Secret;

/// A token for one authentication.
#[derive(Debug, Clone)]
pub struct OAuthBearerToken {
    /// The token (a JWT for most identity providers).
    pub value: Secret,
    /// SASL extensions (`key=value` pairs sent with the token, KIP-342), e.g. Confluent
    /// Cloud's `logicalCluster` and `identityPoolId`.
    pub extensions: Vec<(String, String)>,
}

impl OAuthBearerToken {
    /// A token without extensions.
    pub fn new(value: impl Into<Secret>) -> Self {
        OAuthBearerToken { value: value.into(), extensions: Vec::new() }
    }
}

/// Where tokens come from: an identity provider's client-credentials flow, a file refreshed
/// by a sidecar, a cloud SDK. Called at every authentication, so it should cache tokens
/// until shortly before they expire.
pub trait OAuthBearerTokenProvider: Send + Sync + 'static {
    /// A currently valid token.
    fn token(&self) -> BoxFuture<'_, Result<OAuthBearerToken, SaslError>>;
}

/// SASL/OAUTHBEARER over an [`OAuthBearerTokenProvider`].
#[derive(Clone)]
pub struct OAuthBearer {
    provider: Arc<dyn OAuthBearerTokenProvider>,
}

impl std::fmt::Debug for OAuthBearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OAuthBearer")
    }
}

impl OAuthBearer {
    /// OAUTHBEARER with tokens from `provider`.
    pub fn new(provider: Arc<dyn OAuthBearerTokenProvider>) -> Self {
        OAuthBearer { provider }
    }
}

impl SaslMechanism for OAuthBearer {
    fn name(&self) -> &str {
        "OAUTHBEARER"
    }

    fn start<'a>(&'a self, _context: &'a SaslContext) -> BoxFuture<'a, Result<Box<dyn SaslExchange>, SaslError>> {
        Box::pin(async move {
            let token = self.provider.token().await?;
            for (k, v) in &token.extensions {
                // RFC 7628: key = 1*ALPHA; value has no control characters but space, tab, CR, LF.
                if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphabetic()) || k == "auth" {
                    return Err(SaslError::new(format!("invalid SASL extension name {k:?}")));
                }
                if v.bytes().any(|b| b < 0x20 && !matches!(b, b'\t' | b'\r' | b'\n') || b == 0x7f) {
                    return Err(SaslError::new(format!("invalid value for SASL extension {k:?}")));
                }
            }
            Ok(Box::new(OAuthExchange { state: 0, token }) as Box<dyn SaslExchange>)
        })
    }
}

struct OAuthExchange {
    state: u8,
    token: OAuthBearerToken,
}

impl SaslExchange for OAuthExchange {
    fn step(&mut self, server_message: Option<&[u8]>) -> Result<Option<Vec<u8>>, SaslError> {
        match self.state {
            0 => {
                self.state = 1;
                let mut m = b"n,,\x01auth=Bearer ".to_vec();
                m.extend_from_slice(self.token.value.expose().as_bytes());
                m.push(1);
                for (k, v) in &self.token.extensions {
                    m.extend_from_slice(k.as_bytes());
                    m.push(b'=');
                    m.extend_from_slice(v.as_bytes());
                    m.push(1);
                }
                m.push(1);
                Ok(Some(m))
            }
            1 if server_message.is_some_and(|s| !s.is_empty()) => {
                // An error challenge (JSON with a status): RFC 7628 has the client answer
                // with a single 0x01, after which the broker fails the authentication with
                // its message.
                self.state = 2;
                Ok(Some(vec![1]))
            }
            _ => Ok(None),
        }
    }
}
