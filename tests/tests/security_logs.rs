//! Credentials never reach the logs: everything (client and broker) runs with a TRACE
//! subscriber writing into a buffer, through PLAIN, SCRAM, OAUTHBEARER, mTLS, a failed
//! login and re-authentications; then the buffer is searched for every secret.
//! (Its own test binary, so that its global subscriber sees every event of the process.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_broker::security::{SaslMechanism, SecurityProtocol as BrokerProtocol};
use kafka_broker::Cluster;
use kafka_client::conn::{self, BrokerAddress};
use kafka_client::security::sasl::{BoxFuture, SaslError};
use kafka_client::security::{OAuthBearerToken, OAuthBearerTokenProvider, SecurityConfig, SecurityProtocol};
use kafka_client::{ClientConfig, Producer, ProducerConfig, ProducerRecord};
use kafka_protocol::messages::MetadataRequest;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const PLAIN_PASSWORD: &str = "plain-pw-7c1f9e";
const SCRAM_PASSWORD: &str = "scram-pw-0b44d2";
const WRONG_PASSWORD: &str = "wrong-pw-91aa03";
const TOKEN_MARKER: &str = "tokenmarker3f8e";

struct Tokens;

impl OAuthBearerTokenProvider for Tokens {
    fn token(&self) -> BoxFuture<'_, Result<OAuthBearerToken, SaslError>> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
        let header = b64.encode(br#"{"alg":"none"}"#);
        let payload = b64.encode(format!(r#"{{"sub":"svc","exp":{exp},"jti":"{TOKEN_MARKER}"}}"#));
        Box::pin(async move { Ok(OAuthBearerToken::new(format!("{header}.{payload}.{TOKEN_MARKER}"))) })
    }
}

#[tokio::test]
async fn no_secret_reaches_the_logs_at_trace() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let cluster = Cluster::builder()
        .security_protocol(BrokerProtocol::SaslSsl)
        .tls_client_auth_required()
        .sasl_user("alice", PLAIN_PASSWORD, SaslMechanism::Plain)
        .sasl_user("bob", SCRAM_PASSWORD, SaslMechanism::ScramSha512)
        .sasl_oauthbearer_unsecured_test_validator()
        .broker_config("connections.max.reauth.ms", "300")
        .start()
        .await
        .unwrap();
    let (client_cert, client_key) = cluster.tls_ca().unwrap().issue(&["client"]).unwrap();
    let key_body: String = client_key.lines().filter(|l| !l.starts_with("-----")).collect();
    let base = SecurityConfig::default()
        .protocol(SecurityProtocol::SaslSsl)
        .ca_pem(cluster.tls_ca_pem().unwrap())
        .client_certificate_pem(client_cert, client_key.clone());
    let addr = cluster.broker_addrs()[0].1;
    let address = BrokerAddress { node_id: 1, host: addr.ip().to_string(), port: addr.port() };

    let configs = [
        base.clone().sasl("PLAIN", "alice", PLAIN_PASSWORD),
        base.clone().sasl("SCRAM-SHA-512", "bob", SCRAM_PASSWORD),
        base.clone().sasl_oauthbearer(Arc::new(Tokens)),
    ];
    for security in configs {
        let mut config = ProducerConfig::new(&cluster.bootstrap_servers()).set("linger.ms", "0").unwrap();
        config.client.security = security.clone();
        // Configurations are logged whole at TRACE by careless applications: Debug redacts.
        tracing::trace!(?config, "producer configuration");
        let producer = Producer::new(config).unwrap();
        producer.send(ProducerRecord::new("logs").value("v")).await.unwrap().await.unwrap();
        producer.close(Duration::from_secs(5)).await.unwrap();

        let mut config = ClientConfig::new(&cluster.bootstrap_servers());
        config.security = security;
        let c = conn::connect(&address, &config).await.unwrap();
        // Past the session lifetime: at least one re-authentication.
        for _ in 0..5 {
            c.request(&MetadataRequest::default()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(c.reauthentications() >= 1);
    }
    let mut config = ClientConfig::new(&cluster.bootstrap_servers());
    config.security = base.sasl("SCRAM-SHA-512", "bob", WRONG_PASSWORD);
    let err = conn::connect(&address, &config).await.unwrap_err();
    tracing::error!(%err, ?err, "login failed");
    cluster.shutdown().await;

    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    // The capture works and saw the interesting parts.
    assert!(logs.contains("TRACE"), "no TRACE line captured");
    assert!(logs.contains("SASL authentication done"), "{logs}");
    assert!(logs.contains("re-authenticated"), "{logs}");
    assert!(logs.contains("SASL authentication failed"), "{logs}");
    for secret in [PLAIN_PASSWORD, SCRAM_PASSWORD, WRONG_PASSWORD, TOKEN_MARKER, key_body.as_str()] {
        assert!(!logs.contains(secret), "a secret is in the logs: {secret}");
    }
    // Base64 of the PLAIN message would hide the password from a plain search.
    use base64::Engine;
    let plain_b64 = base64::engine::general_purpose::STANDARD.encode(format!("\0alice\0{PLAIN_PASSWORD}"));
    assert!(!logs.contains(&plain_b64));
    eprintln!("{} bytes of TRACE logs searched", logs.len());
}
