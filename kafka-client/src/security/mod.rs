//! Security: `security.protocol`, TLS (rustls) and SASL.
//!
//! [`SecurityConfig`] is part of [`ClientConfig`](crate::ClientConfig) and is set by the Java
//! property names (`security.protocol`, `ssl.ca.location`, `sasl.mechanism`, ...) or by its
//! builder methods. [`connect`](crate::conn::connect) applies it in Kafka's order: TCP, then
//! the TLS handshake (SSL and SASL_SSL), then ApiVersions, then SaslHandshake and
//! SaslAuthenticate (SASL_PLAINTEXT and SASL_SSL), and only then hands the stream to the
//! connection's tasks. Credentials are held in [`Secret`], whose `Debug` prints `[redacted]`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use kafka_broker::security::{SaslMechanism, SecurityProtocol as BrokerProtocol};
//! use kafka_client::{Producer, ProducerConfig, ProducerRecord};
//!
//! // A bundled broker with a generated test CA and a SCRAM user.
//! let cluster = kafka_broker::Cluster::builder()
//!     .security_protocol(BrokerProtocol::SaslSsl)
//!     .sasl_user("alice", "alice-secret", SaslMechanism::ScramSha512)
//!     .start()
//!     .await?;
//! let ca = cluster.tls_ca_pem().expect("a generated CA");
//!
//! let producer = Producer::new(ProducerConfig::from_properties([
//!     ("bootstrap.servers", cluster.bootstrap_servers().as_str()),
//!     ("security.protocol", "SASL_SSL"),
//!     ("ssl.ca.pem", ca.as_str()), // or ssl.ca.location with a file
//!     ("sasl.mechanism", "SCRAM-SHA-512"),
//!     ("sasl.username", "alice"),
//!     ("sasl.password", "alice-secret"),
//! ])?)?;
//! producer.send(ProducerRecord::new("secured").value("hello")).await?.await?;
//! producer.close(std::time::Duration::from_secs(5)).await?;
//! cluster.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod sasl;
pub mod tls;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, Result};

pub use sasl::{
    OAuthBearer, OAuthBearerToken, OAuthBearerTokenProvider, Plain, SaslContext, SaslExchange, SaslMechanism, Scram,
    ScramAlgorithm,
};

/// A credential (password, token, private key): `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The credential itself, for the code that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret::new(s)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

/// `security.protocol`: how bytes travel and whether the client authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SecurityProtocol {
    /// Plain TCP, no authentication (the default).
    #[default]
    Plaintext,
    /// TLS, no SASL (the client may still present a certificate: mTLS).
    Ssl,
    /// SASL over plain TCP.
    SaslPlaintext,
    /// SASL over TLS: what Confluent Cloud and MSK (SCRAM) use.
    SaslSsl,
}

impl SecurityProtocol {
    /// Whether the transport is TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether the client authenticates with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }

    /// Kafka's name for it.
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }
}

impl std::str::FromStr for SecurityProtocol {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Ok(SecurityProtocol::Plaintext),
            "SSL" => Ok(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Ok(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Ok(SecurityProtocol::SaslSsl),
            _ => Err(format!("{s}: expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")),
        }
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the certificates that the broker's certificate must chain to come from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TrustAnchors {
    /// The operating system's trust store (`rustls-native-certs`), the default: it is what
    /// librdkafka uses, and company CAs installed on the machine are trusted as they are by
    /// every other program there.
    #[default]
    System,
    /// `ssl.ca.location`: a PEM file of CA certificates (read when a connection is made).
    PemFile(PathBuf),
    /// `ssl.ca.pem`: PEM text of CA certificates.
    Pem(String),
}

/// TLS settings (used with `SSL` and `SASL_SSL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The CAs to trust.
    pub trust: TrustAnchors,
    /// `ssl.certificate.location`: a PEM file with the client's certificate chain (mTLS).
    pub certificate_location: Option<PathBuf>,
    /// `ssl.key.location`: a PEM file with the client's private key (PKCS#8, PKCS#1 or SEC1,
    /// unencrypted).
    pub key_location: Option<PathBuf>,
    /// `ssl.certificate.pem` / `ssl.key.pem`: the same as PEM text.
    pub certificate_pem: Option<String>,
    /// The client key as PEM text.
    pub key_pem: Option<Secret>,
    /// `ssl.endpoint.identification.algorithm`: `https` (the default) checks that the
    /// broker's certificate names the host connected to; empty turns that check off (with a
    /// warning at every connection).
    pub verify_hostname: bool,
    /// `enable.ssl.certificate.verification=false` or
    /// [`SecurityConfig::danger_accept_invalid_certificates`]: accept any certificate. Only
    /// for tests; every connection logs a warning.
    pub danger_accept_invalid_certificates: bool,
    /// The name sent in SNI and checked against the certificate, instead of the broker's
    /// host (for brokers reached through a tunnel).
    pub server_name_override: Option<String>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            trust: TrustAnchors::System,
            certificate_location: None,
            key_location: None,
            certificate_pem: None,
            key_pem: None,
            verify_hostname: true,
            danger_accept_invalid_certificates: false,
            server_name_override: None,
        }
    }
}

/// SASL settings (used with `SASL_PLAINTEXT` and `SASL_SSL`).
#[derive(Clone, Default)]
pub struct SaslConfig {
    /// `sasl.mechanism` (Java) or `sasl.mechanisms` (librdkafka). Default `GSSAPI` in Java;
    /// here the mechanism must be given (GSSAPI is not built in).
    pub mechanism: Option<String>,
    /// `sasl.username`.
    pub username: Option<String>,
    /// `sasl.password`.
    pub password: Option<Secret>,
    /// A mechanism object set with [`SecurityConfig::sasl_mechanism`]: used instead of the
    /// name-based ones (OAUTHBEARER with a token provider, or one defined outside the crate).
    pub custom: Option<Arc<dyn SaslMechanism>>,
}

impl fmt::Debug for SaslConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslConfig")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("custom", &self.custom.as_ref().map(|m| m.name().to_owned()))
            .finish()
    }
}

impl PartialEq for SaslConfig {
    fn eq(&self, other: &Self) -> bool {
        let custom = match (&self.custom, &other.custom) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        custom
            && self.mechanism == other.mechanism
            && self.username == other.username
            && self.password == other.password
    }
}

impl Eq for SaslConfig {}

impl SaslConfig {
    /// The mechanism to use, from the custom object or the name and credentials.
    pub fn resolve(&self) -> Result<Arc<dyn SaslMechanism>> {
        if let Some(m) = &self.custom {
            return Ok(m.clone());
        }
        let name = self
            .mechanism
            .as_deref()
            .ok_or_else(|| config_error("sasl.mechanism", "SASL needs a mechanism (PLAIN, SCRAM-SHA-256, ...)"))?;
        let credentials = || -> Result<(String, Secret)> {
            let user = self
                .username
                .clone()
                .ok_or_else(|| config_error("sasl.username", &format!("{name} needs a user name")))?;
            let password = self
                .password
                .clone()
                .ok_or_else(|| config_error("sasl.password", &format!("{name} needs a password")))?;
            Ok((user, password))
        };
        match name.to_ascii_uppercase().as_str() {
            "PLAIN" => {
                let (u, p) = credentials()?;
                Ok(Arc::new(Plain::new(u, p)))
            }
            "SCRAM-SHA-256" => {
                let (u, p) = credentials()?;
                Ok(Arc::new(Scram::new(ScramAlgorithm::Sha256, u, p)))
            }
            "SCRAM-SHA-512" => {
                let (u, p) = credentials()?;
                Ok(Arc::new(Scram::new(ScramAlgorithm::Sha512, u, p)))
            }
            "OAUTHBEARER" => Err(config_error(
                "sasl.mechanism",
                "OAUTHBEARER needs a token provider: use SecurityConfig::sasl_oauthbearer",
            )),
            other => Err(config_error(
                "sasl.mechanism",
                &format!("{other} is not built in (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER); implement SaslMechanism for it"),
            )),
        }
    }
}

/// All security settings of a client.
///
/// ```
/// use kafka_client::ClientConfig;
/// use kafka_client::security::SecurityProtocol;
///
/// let mut config = ClientConfig::new("broker:9093");
/// for (k, v) in [
///     ("security.protocol", "SASL_SSL"),
///     ("sasl.mechanism", "SCRAM-SHA-512"),
///     ("sasl.username", "alice"),
///     ("sasl.password", "alice-secret"),
/// ] {
///     config.apply(k, v)?;
/// }
/// assert_eq!(config.security.protocol, SecurityProtocol::SaslSsl);
/// // Secrets never show in Debug output.
/// assert!(!format!("{config:?}").contains("alice-secret"));
/// # Ok::<(), kafka_client::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecurityConfig {
    /// `security.protocol`, default PLAINTEXT.
    pub protocol: SecurityProtocol,
    /// TLS settings.
    pub tls: TlsConfig,
    /// SASL settings.
    pub sasl: SaslConfig,
}

impl SecurityConfig {
    /// Applies one property by its Java (or librdkafka) name; `Ok(false)` when the name is not
    /// a security setting.
    pub fn apply(&mut self, key: &str, value: &str) -> Result<bool> {
        match key {
            "security.protocol" => self.protocol = value.parse().map_err(|e: String| config_error(key, &e))?,
            "ssl.ca.location" | "ssl.truststore.location" => {
                if key == "ssl.truststore.location" && !value.ends_with(".pem") && !value.ends_with(".crt") {
                    return Err(config_error(key, "only PEM trust stores are supported (ssl.truststore.type=PEM)"));
                }
                self.tls.trust = TrustAnchors::PemFile(PathBuf::from(value));
            }
            "ssl.ca.pem" | "ssl.truststore.certificates" => self.tls.trust = TrustAnchors::Pem(value.to_owned()),
            "ssl.truststore.type" | "ssl.keystore.type" => {
                if !value.eq_ignore_ascii_case("PEM") {
                    return Err(config_error(key, "only PEM is supported"));
                }
            }
            "ssl.certificate.location" => self.tls.certificate_location = Some(PathBuf::from(value)),
            "ssl.key.location" => self.tls.key_location = Some(PathBuf::from(value)),
            "ssl.certificate.pem" | "ssl.keystore.certificate.chain" => {
                self.tls.certificate_pem = Some(value.to_owned())
            }
            "ssl.key.pem" | "ssl.keystore.key" => self.tls.key_pem = Some(Secret::new(value)),
            "ssl.key.password" => {
                if !value.is_empty() {
                    return Err(config_error(key, "encrypted private keys are not supported; decrypt the key file"));
                }
            }
            "ssl.endpoint.identification.algorithm" => {
                self.tls.verify_hostname = match value.to_ascii_lowercase().as_str() {
                    "https" => true,
                    "" | "none" => false,
                    _ => return Err(config_error(key, "expected https or an empty value")),
                }
            }
            "enable.ssl.certificate.verification" => {
                self.tls.danger_accept_invalid_certificates = !parse_bool(key, value)?;
            }
            "sasl.mechanism" | "sasl.mechanisms" => self.sasl.mechanism = Some(value.to_owned()),
            "sasl.username" => self.sasl.username = Some(value.to_owned()),
            "sasl.password" => self.sasl.password = Some(Secret::new(value)),
            "sasl.jaas.config" => {
                let (user, password) = parse_jaas(value).map_err(|reason| config_error(key, reason))?;
                self.sasl.username = Some(user);
                self.sasl.password = Some(password);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// `security.protocol`.
    pub fn protocol(mut self, protocol: SecurityProtocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// Trusts the CA certificates in a PEM file (`ssl.ca.location`) instead of the system's.
    pub fn ca_location(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls.trust = TrustAnchors::PemFile(path.into());
        self
    }

    /// Trusts the CA certificates in this PEM text (`ssl.ca.pem`).
    pub fn ca_pem(mut self, pem: impl Into<String>) -> Self {
        self.tls.trust = TrustAnchors::Pem(pem.into());
        self
    }

    /// A client certificate chain and its key, as PEM text (mTLS).
    pub fn client_certificate_pem(mut self, certificate_chain: impl Into<String>, key: impl Into<Secret>) -> Self {
        self.tls.certificate_pem = Some(certificate_chain.into());
        self.tls.key_pem = Some(key.into());
        self
    }

    /// **Turns certificate and hostname verification off.** Anyone on the network path can
    /// then read and change the traffic, credentials included. Only for tests against
    /// throw-away brokers; every connection logs a warning.
    pub fn danger_accept_invalid_certificates(mut self) -> Self {
        self.tls.danger_accept_invalid_certificates = true;
        self
    }

    /// SASL with a mechanism name and credentials (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512).
    pub fn sasl(mut self, mechanism: &str, username: impl Into<String>, password: impl Into<Secret>) -> Self {
        self.sasl.mechanism = Some(mechanism.to_owned());
        self.sasl.username = Some(username.into());
        self.sasl.password = Some(password.into());
        self
    }

    /// SASL with a mechanism object: one of this crate's or one defined elsewhere.
    pub fn sasl_mechanism(mut self, mechanism: Arc<dyn SaslMechanism>) -> Self {
        self.sasl.mechanism = Some(mechanism.name().to_owned());
        self.sasl.custom = Some(mechanism);
        self
    }

    /// SASL/OAUTHBEARER with tokens from `provider` (asked at every authentication and
    /// re-authentication).
    pub fn sasl_oauthbearer(self, provider: Arc<dyn OAuthBearerTokenProvider>) -> Self {
        self.sasl_mechanism(Arc::new(OAuthBearer::new(provider)))
    }

    /// Checks that the settings fit together.
    pub fn validate(&self) -> Result<()> {
        if self.protocol.uses_sasl() {
            self.sasl.resolve()?;
        }
        if self.tls.certificate_location.is_some() != self.tls.key_location.is_some() {
            return Err(config_error("ssl.certificate.location", "a client certificate needs ssl.key.location too"));
        }
        Ok(())
    }
}

/// Reads `username="..." password="...";` from a `sasl.jaas.config` value of the PLAIN or
/// SCRAM login modules.
fn parse_jaas(value: &str) -> std::result::Result<(String, Secret), &'static str> {
    let field = |name: &str| -> Option<String> {
        let mut rest = value;
        loop {
            let at = rest.find(name)?;
            let before = rest.get(..at)?;
            let after = rest.get(at + name.len()..)?.trim_start();
            rest = rest.get(at + name.len()..)?;
            if !(before.is_empty() || before.ends_with(char::is_whitespace)) {
                continue;
            }
            let Some(after) = after.strip_prefix('=') else { continue };
            let after = after.trim_start().strip_prefix('"')?;
            let end = after.find('"')?;
            return after.get(..end).map(str::to_owned);
        }
    };
    let user = field("username").ok_or("no username=\"...\" in the JAAS line")?;
    let password = field("password").ok_or("no password=\"...\" in the JAAS line")?;
    Ok((user, Secret(password)))
}

fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(config_error(key, "expected true or false")),
    }
}

fn config_error(key: &str, reason: &str) -> Error {
    Error::Config { key: key.to_owned(), reason: reason.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_debug_and_display() {
        let mut s = SecurityConfig::default();
        s.apply("sasl.password", "hunter2").unwrap();
        s.apply("ssl.key.pem", "-----BEGIN PRIVATE KEY-----abc").unwrap();
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!debug.contains("BEGIN PRIVATE"), "{debug}");
        assert!(debug.contains("[redacted]"));
        assert_eq!(Secret::new("x").to_string(), "[redacted]");
    }

    #[test]
    fn jaas_lines_of_the_plain_and_scram_modules_are_read() {
        let (u, p) = parse_jaas(
            r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" password="a b=c";"#,
        )
        .unwrap();
        assert_eq!((u.as_str(), p.expose()), ("alice", "a b=c"));
        assert!(parse_jaas("org.x.LoginModule required;").is_err());
    }

    #[test]
    fn protocol_names_and_bad_values() {
        let mut s = SecurityConfig::default();
        assert!(s.apply("security.protocol", "sasl_ssl").unwrap());
        assert_eq!(s.protocol, SecurityProtocol::SaslSsl);
        let err = s.apply("security.protocol", "TLS").unwrap_err();
        assert!(err.to_string().contains("security.protocol"));
        assert!(!s.apply("linger.ms", "5").unwrap());
        s.apply("sasl.mechanism", "GSSAPI").unwrap();
        assert!(s.validate().unwrap_err().to_string().contains("GSSAPI"));
    }
}
