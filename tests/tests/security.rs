//! TLS and SASL against the bundled broker: every mechanism over plaintext and TLS, wrong
//! passwords, unknown mechanisms, wrong CAs and host names, mTLS, requests before
//! authentication, and re-authentication (KIP-368) during a long produce.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use kafka_broker::security::{SaslMechanism as BrokerMechanism, SecurityProtocol as BrokerProtocol, TestCa};
use kafka_broker::Cluster;
use kafka_client::conn::{self, BrokerAddress};
use kafka_client::security::sasl::{BoxFuture, SaslError};
use kafka_client::security::{OAuthBearerToken, OAuthBearerTokenProvider, SecurityConfig, SecurityProtocol};
use kafka_client::{ClientConfig, Error, Producer, ProducerConfig, ProducerRecord};
use kafka_integration_tests::init_logs;
use kafka_protocol::messages::MetadataRequest;

/// Unsigned JWTs for the broker's OAUTHBEARER test validator; counts the tokens handed out.
struct TestTokens {
    calls: AtomicUsize,
}

impl OAuthBearerTokenProvider for TestTokens {
    fn token(&self) -> BoxFuture<'_, Result<OAuthBearerToken, SaslError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {
            let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
            let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
            let payload = URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"svc-account","exp":{exp}}}"#));
            Ok(OAuthBearerToken::new(format!("{header}.{payload}.")))
        })
    }
}

async fn secure_cluster(
    protocol: BrokerProtocol,
    configure: impl FnOnce(kafka_broker::ClusterBuilder) -> kafka_broker::ClusterBuilder,
) -> Cluster {
    init_logs();
    let builder = Cluster::builder()
        .brokers(1)
        .security_protocol(protocol)
        .sasl_user("plain-user", "plain-secret", BrokerMechanism::Plain)
        .sasl_user("scram256-user", "scram256-secret", BrokerMechanism::ScramSha256)
        .sasl_user("scram512-user", "scram512-secret", BrokerMechanism::ScramSha512)
        .sasl_oauthbearer_unsecured_test_validator();
    configure(builder).start().await.unwrap()
}

fn address(cluster: &Cluster) -> BrokerAddress {
    let addr = cluster.broker_addrs()[0].1;
    BrokerAddress { node_id: 1, host: addr.ip().to_string(), port: addr.port() }
}

fn security(protocol: SecurityProtocol, cluster: &Cluster) -> SecurityConfig {
    let mut s = SecurityConfig::default().protocol(protocol);
    if let Some(ca) = cluster.tls_ca_pem() {
        s = s.ca_pem(ca);
    }
    s
}

fn with_mechanism(s: SecurityConfig, mechanism: &str) -> SecurityConfig {
    match mechanism {
        "PLAIN" => s.sasl("PLAIN", "plain-user", "plain-secret"),
        "SCRAM-SHA-256" => s.sasl("SCRAM-SHA-256", "scram256-user", "scram256-secret"),
        "SCRAM-SHA-512" => s.sasl("SCRAM-SHA-512", "scram512-user", "scram512-secret"),
        "OAUTHBEARER" => s.sasl_oauthbearer(Arc::new(TestTokens { calls: AtomicUsize::new(0) })),
        other => panic!("{other}"),
    }
}

async fn produce_one(cluster: &Cluster, security: SecurityConfig, topic: &str) -> Result<i64, Error> {
    let mut config =
        ProducerConfig::new(&cluster.bootstrap_servers()).set("linger.ms", "0")?.set("max.block.ms", "5000")?;
    config.client.security = security;
    let producer = Producer::new(config)?;
    let delivered = producer.send(ProducerRecord::new(topic).key("k").value("v")).await?.await;
    producer.close(Duration::from_secs(5)).await?;
    Ok(delivered?.offset)
}

const MECHANISMS: [&str; 4] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"];

#[tokio::test]
async fn every_mechanism_over_sasl_plaintext_produces() {
    let cluster = secure_cluster(BrokerProtocol::SaslPlaintext, |b| b).await;
    for (i, m) in MECHANISMS.iter().enumerate() {
        let s = with_mechanism(security(SecurityProtocol::SaslPlaintext, &cluster), m);
        let offset = produce_one(&cluster, s, "sasl-plaintext").await.unwrap_or_else(|e| panic!("{m}: {e}"));
        assert!(offset >= 0, "{m}");
        // Metadata and Produce each authenticated at least one connection per mechanism.
        assert!(cluster.security_stats().authentications > i as u64, "{m}");
    }
    assert_eq!(cluster.security_stats().failures, 0);
    cluster.shutdown().await;
}

#[tokio::test]
async fn every_mechanism_over_sasl_ssl_produces() {
    let cluster = secure_cluster(BrokerProtocol::SaslSsl, |b| b).await;
    assert!(cluster.tls_ca_pem().unwrap().contains("BEGIN CERTIFICATE"));
    for m in MECHANISMS {
        let s = with_mechanism(security(SecurityProtocol::SaslSsl, &cluster), m);
        produce_one(&cluster, s, "sasl-ssl").await.unwrap_or_else(|e| panic!("{m}: {e}"));
    }
    assert_eq!(cluster.security_stats().failures, 0);
    cluster.shutdown().await;
}

#[tokio::test]
async fn ssl_without_sasl_produces_and_mtls_needs_a_client_certificate() {
    init_logs();
    let cluster = Cluster::builder().security_protocol(BrokerProtocol::Ssl).start().await.unwrap();
    produce_one(&cluster, security(SecurityProtocol::Ssl, &cluster), "ssl").await.unwrap();
    cluster.shutdown().await;

    let cluster =
        Cluster::builder().security_protocol(BrokerProtocol::Ssl).tls_client_auth_required().start().await.unwrap();
    let mut config = ClientConfig::new(&cluster.bootstrap_servers());
    config.security = security(SecurityProtocol::Ssl, &cluster);
    config.connection_setup_timeout = Duration::from_secs(5);
    assert!(conn::connect(&address(&cluster), &config).await.is_err(), "no client certificate");
    let (cert, key) = cluster.tls_ca().unwrap().issue(&["client-app"]).unwrap();
    config.security = config.security.client_certificate_pem(cert, key);
    let c = conn::connect(&address(&cluster), &config).await.unwrap();
    c.request(&MetadataRequest::default()).await.unwrap();
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_wrong_password_is_an_authentication_error_with_the_brokers_message() {
    let cluster = secure_cluster(BrokerProtocol::SaslPlaintext, |b| b).await;
    for m in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let user = if m == "PLAIN" {
            "plain-user"
        } else if m == "SCRAM-SHA-256" {
            "scram256-user"
        } else {
            "scram512-user"
        };
        let mut config = ClientConfig::new(&cluster.bootstrap_servers());
        config.security = security(SecurityProtocol::SaslPlaintext, &cluster).sasl(m, user, "wrong-password");
        match conn::connect(&address(&cluster), &config).await {
            Err(Error::Authentication { mechanism, message, .. }) => {
                assert_eq!(mechanism, m);
                assert!(message.contains("SASL_AUTHENTICATION_FAILED"), "{message}");
                assert!(message.contains("invalid credentials"), "{message}");
            }
            other => panic!("{m}: {other:?}"),
        }
        // The shared client reports the same error (not "no broker reachable").
        let client = kafka_client::Client::new(config.clone(), false).unwrap();
        let err = client.refresh_metadata().await.unwrap_err();
        assert!(matches!(err, Error::Authentication { .. }), "{m}: {err}");
        client.close();
    }
    assert!(cluster.security_stats().failures >= 6);
    // An unknown user fails the same way.
    let mut config = ClientConfig::new(&cluster.bootstrap_servers());
    config.security = security(SecurityProtocol::SaslPlaintext, &cluster).sasl("SCRAM-SHA-256", "nobody", "x");
    assert!(matches!(conn::connect(&address(&cluster), &config).await, Err(Error::Authentication { .. })));
    cluster.shutdown().await;
}

/// The producer's `send`, the group consumer's `poll` and the assigned consumer's `recv` with
/// a wrong password fail with the authentication error, long before their timeouts (they used
/// to wait out `max.block.ms` and report a metadata timeout).
#[tokio::test]
async fn sends_and_polls_with_a_wrong_password_report_the_authentication_error() {
    use kafka_client::{Consumer, ConsumerConfig, TopicPartition};
    let cluster = secure_cluster(BrokerProtocol::SaslPlaintext, |b| b).await;
    let wrong = security(SecurityProtocol::SaslPlaintext, &cluster).sasl("SCRAM-SHA-256", "scram256-user", "wrong");
    let limit = Duration::from_secs(60);

    let mut config = ProducerConfig::new(&cluster.bootstrap_servers()).set("max.block.ms", "60000").unwrap();
    config.client.security = wrong.clone();
    let producer = Producer::new(config).unwrap();
    let started = Instant::now();
    match producer.send(ProducerRecord::new("orders").value("v")).await {
        Err(Error::Authentication { mechanism, message, .. }) => {
            assert_eq!(mechanism, "SCRAM-SHA-256");
            assert!(message.contains("SASL_AUTHENTICATION_FAILED"), "{message}");
        }
        other => panic!("send: {other:?}"),
    }
    assert!(started.elapsed() < limit / 2, "send took {:?}", started.elapsed());
    producer.close(Duration::from_secs(1)).await.unwrap();

    let mut config = ConsumerConfig::new(&cluster.bootstrap_servers()).set("group.id", "g").unwrap();
    config.client.security = wrong.clone();
    let consumer = Consumer::new(config).unwrap();
    consumer.subscribe(["orders"]).unwrap();
    let started = Instant::now();
    let err = consumer.poll(limit).await.unwrap_err();
    assert!(matches!(err, Error::Authentication { .. }), "group poll: {err}");
    assert!(started.elapsed() < limit / 2, "poll took {:?}", started.elapsed());
    drop(consumer);

    let mut config = ConsumerConfig::new(&cluster.bootstrap_servers());
    config.client.security = wrong;
    let consumer = Consumer::new(config).unwrap();
    consumer.assign([TopicPartition::new("orders", 0)]).unwrap();
    let err = tokio::time::timeout(limit, consumer.recv()).await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Authentication { .. }), "assigned recv: {err}");
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_mechanism_the_broker_does_not_enable_is_reported_with_its_list() {
    init_logs();
    let cluster = Cluster::builder()
        .security_protocol(BrokerProtocol::SaslPlaintext)
        .sasl_user("u", "p", BrokerMechanism::ScramSha512)
        .start()
        .await
        .unwrap();
    let mut config = ClientConfig::new(&cluster.bootstrap_servers());
    config.security = SecurityConfig::default().protocol(SecurityProtocol::SaslPlaintext).sasl("PLAIN", "u", "p");
    match conn::connect(&address(&cluster), &config).await {
        Err(e) => {
            let text = e.to_string();
            let Error::SaslMechanismNotEnabled { enabled, .. } = e else { panic!("{text}") };
            assert_eq!(enabled, vec!["SCRAM-SHA-512".to_owned()]);
            assert!(text.contains("SCRAM-SHA-512"), "{text}");
        }
        Ok(_) => panic!("connected with a mechanism the broker does not enable"),
    }
    cluster.shutdown().await;
}

#[tokio::test]
async fn requests_before_authentication_close_the_connection() {
    let cluster = secure_cluster(BrokerProtocol::SaslPlaintext, |b| b).await;
    // A PLAINTEXT client: ApiVersions is answered, Metadata closes the connection.
    let config = ClientConfig::new(&cluster.bootstrap_servers());
    let c = conn::connect(&address(&cluster), &config).await.unwrap();
    let err = c.request(&MetadataRequest::default()).await.unwrap_err();
    assert!(matches!(err, Error::Disconnected { .. }), "{err:?}");
    assert_eq!(cluster.security_stats().unauthenticated_requests, 1);
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_sasl_client_on_a_plaintext_listener_is_told_so() {
    init_logs();
    let cluster = Cluster::builder().start().await.unwrap();
    let mut config = ClientConfig::new(&cluster.bootstrap_servers());
    config.security = SecurityConfig::default().protocol(SecurityProtocol::SaslPlaintext).sasl("PLAIN", "u", "p");
    let err = conn::connect(&address(&cluster), &config).await.unwrap_err();
    assert!(err.to_string().contains("ILLEGAL_SASL_STATE"), "{err}");
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_ca_that_did_not_sign_the_brokers_certificate_fails_the_handshake() {
    init_logs();
    let cluster = Cluster::builder().security_protocol(BrokerProtocol::Ssl).start().await.unwrap();
    let other_ca = TestCa::generate().unwrap();
    let mut config = ClientConfig::new(&cluster.bootstrap_servers());
    config.security = SecurityConfig::default().protocol(SecurityProtocol::Ssl).ca_pem(other_ca.certificate_pem());
    match conn::connect(&address(&cluster), &config).await {
        Err(Error::Tls { reason, .. }) => {
            assert!(reason.contains("UnknownIssuer") || reason.to_lowercase().contains("issuer"), "{reason}");
            assert!(reason.contains("ssl.ca.location"), "hint: {reason}");
        }
        other => panic!("{other:?}"),
    }
    // The loudly named escape hatch connects anyway (and logs a warning).
    config.security = config.security.danger_accept_invalid_certificates();
    conn::connect(&address(&cluster), &config).await.unwrap();
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_certificate_for_another_host_fails_the_handshake() {
    init_logs();
    let ca = TestCa::generate().unwrap();
    let (cert, key) = ca.issue(&["kafka.example.com"]).unwrap();
    let cluster =
        Cluster::builder().security_protocol(BrokerProtocol::Ssl).tls_identity(cert, key).start().await.unwrap();
    assert!(cluster.tls_ca_pem().is_none());
    let mut config = ClientConfig::new(&cluster.bootstrap_servers());
    config.security = SecurityConfig::default().protocol(SecurityProtocol::Ssl).ca_pem(ca.certificate_pem());
    match conn::connect(&address(&cluster), &config).await {
        Err(Error::Tls { reason, .. }) => {
            assert!(reason.contains("NotValidForName") || reason.contains("not valid for name"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Java's way of turning the host name check off (only that check).
    config.apply("ssl.endpoint.identification.algorithm", "").unwrap();
    conn::connect(&address(&cluster), &config).await.unwrap();
    cluster.shutdown().await;
}

#[tokio::test]
async fn plaintext_to_tls_and_tls_to_plaintext_say_so() {
    init_logs();
    let tls = Cluster::builder().security_protocol(BrokerProtocol::Ssl).start().await.unwrap();
    let plain = Cluster::builder().start().await.unwrap();
    let config = ClientConfig::new(&tls.bootstrap_servers());
    let err = conn::connect(&address(&tls), &config).await.unwrap_err();
    assert!(err.to_string().contains("TLS"), "{err}");
    let mut config = ClientConfig::new(&plain.bootstrap_servers());
    config.security = SecurityConfig::default().protocol(SecurityProtocol::Ssl).ca_pem(tls.tls_ca_pem().unwrap());
    config.connection_setup_timeout = Duration::from_secs(5);
    let err = conn::connect(&address(&plain), &config).await.unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
    tls.shutdown().await;
    plain.shutdown().await;
}

/// KIP-368 on one connection: the broker's sessions last 400 ms; requests keep flowing for
/// 2 s, the connection re-authenticates (asking the token provider again) and never closes.
#[tokio::test]
async fn a_connection_reauthenticates_before_its_session_expires() {
    let cluster =
        secure_cluster(BrokerProtocol::SaslSsl, |b| b.broker_config("connections.max.reauth.ms", "400")).await;
    let tokens = Arc::new(TestTokens { calls: AtomicUsize::new(0) });
    let mut config = ClientConfig::new(&cluster.bootstrap_servers());
    config.security = security(SecurityProtocol::SaslSsl, &cluster).sasl_oauthbearer(tokens.clone());
    let c = conn::connect(&address(&cluster), &config).await.unwrap();
    let start = Instant::now();
    let mut requests = 0;
    while start.elapsed() < Duration::from_secs(2) {
        // Several in flight at once, so some are pipelined around a re-authentication.
        let futures: Vec<_> =
            (0..4).map(|_| c.send(&MetadataRequest::default(), 1, true, Duration::from_secs(5)).unwrap()).collect();
        for f in futures {
            f.await.unwrap();
            requests += 1;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!c.is_closed());
    let stats = cluster.security_stats();
    assert!(c.reauthentications() >= 3, "{} re-authentications in 2 s", c.reauthentications());
    assert_eq!(stats.reauthentications, c.reauthentications());
    assert_eq!(stats.expired_sessions, 0);
    assert_eq!(tokens.calls.load(Ordering::SeqCst) as u64, 1 + c.reauthentications());
    assert!(requests > 50);
    cluster.shutdown().await;
}

/// KIP-368 under a long produce: the producer's connections re-authenticate with SCRAM while
/// records are in flight; every record is delivered, no session expires.
#[tokio::test]
async fn reauthentication_happens_during_a_long_produce() {
    let cluster =
        secure_cluster(BrokerProtocol::SaslPlaintext, |b| b.broker_config("connections.max.reauth.ms", "500")).await;
    let mut config = ProducerConfig::new(&cluster.bootstrap_servers()).set("linger.ms", "2").unwrap();
    config.client.security = with_mechanism(security(SecurityProtocol::SaslPlaintext, &cluster), "SCRAM-SHA-512");
    let producer = Producer::new(config).unwrap();
    let start = Instant::now();
    let mut delivered = 0;
    while start.elapsed() < Duration::from_millis(2500) {
        let mut pending = Vec::new();
        for i in 0..20 {
            pending.push(
                producer
                    .send(ProducerRecord::new("long-produce").key(format!("k{i}").as_str()).value("v"))
                    .await
                    .unwrap(),
            );
        }
        for p in pending {
            p.await.unwrap();
            delivered += 1;
        }
    }
    producer.close(Duration::from_secs(5)).await.unwrap();
    let stats = cluster.security_stats();
    assert!(stats.reauthentications >= 3, "{stats:?}");
    assert_eq!(stats.expired_sessions, 0, "{stats:?}");
    assert_eq!(stats.failures, 0, "{stats:?}");
    assert!(delivered > 100, "{delivered}");
    cluster.shutdown().await;
}

async fn raw_round_trip<R: kafka_protocol::Request>(
    stream: &mut tokio::net::TcpStream,
    id: i32,
    request: &R,
    version: i16,
) -> Option<R::Response> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut out = bytes::BytesMut::new();
    kafka_protocol::frame::encode_request(&mut out, id, Some("raw"), request, version).unwrap();
    stream.write_all(&out).await.unwrap();
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).await.ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut body).await.ok()?;
    Some(kafka_protocol::frame::decode_response::<R::Response>(body.into(), version).unwrap().1)
}

/// Without re-authentication the broker closes the connection at the first request after
/// the session expired (what the tests above show the client avoids). A hand-made client
/// authenticates once with PLAIN and then waits past the session lifetime.
#[tokio::test]
async fn an_expired_session_closes_the_connection() {
    use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
    let cluster =
        secure_cluster(BrokerProtocol::SaslPlaintext, |b| b.broker_config("connections.max.reauth.ms", "200")).await;
    let mut stream = tokio::net::TcpStream::connect(cluster.broker_addrs()[0].1).await.unwrap();
    let hs = SaslHandshakeRequest { mechanism: "PLAIN".into(), ..Default::default() };
    let r = raw_round_trip(&mut stream, 1, &hs, 1).await.unwrap();
    assert_eq!(r.error_code, 0);
    let auth = SaslAuthenticateRequest {
        auth_bytes: bytes::Bytes::from_static(b"\0plain-user\0plain-secret"),
        ..Default::default()
    };
    let r = raw_round_trip(&mut stream, 2, &auth, 1).await.unwrap();
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    assert!((1..=200).contains(&r.session_lifetime_ms), "{}", r.session_lifetime_ms);
    assert!(raw_round_trip(&mut stream, 3, &MetadataRequest::default(), 1).await.is_some());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(raw_round_trip(&mut stream, 4, &MetadataRequest::default(), 1).await.is_none(), "closed");
    assert_eq!(cluster.security_stats().expired_sessions, 1);
    cluster.shutdown().await;
}

/// Volume over SASL_SSL: 4 MiB produced and consumed back through TLS (responses larger than
/// the socket buffers, so the TLS layer's buffering and flushing matter).
#[tokio::test]
async fn megabytes_round_trip_over_sasl_ssl() {
    use kafka_client::{Consumer, ConsumerConfig, TopicPartition};
    let cluster = secure_cluster(BrokerProtocol::SaslSsl, |b| b).await;
    let security = with_mechanism(security(SecurityProtocol::SaslSsl, &cluster), "SCRAM-SHA-256");
    let mut config = ProducerConfig::new(&cluster.bootstrap_servers()).set("linger.ms", "5").unwrap();
    config.client.security = security.clone();
    let producer = Producer::new(config).unwrap();
    const N: usize = 4096;
    let mut pending = Vec::new();
    for i in 0..N {
        let value = vec![(i % 251) as u8; 1024];
        let key = format!("{i}");
        pending.push(producer.send(ProducerRecord::new("bulk").key(key.as_str()).value(&value)).await.unwrap());
    }
    for p in pending {
        p.await.unwrap();
    }
    producer.close(Duration::from_secs(5)).await.unwrap();

    let mut config = ConsumerConfig::new(&cluster.bootstrap_servers()).set("auto.offset.reset", "earliest").unwrap();
    config.client.security = security;
    let consumer = Consumer::new(config).unwrap();
    consumer.assign((0..3).map(|p| TopicPartition::new("bulk", p))).unwrap();
    let mut got = 0;
    while got < N {
        let r = tokio::time::timeout(Duration::from_secs(10), consumer.recv()).await.unwrap().unwrap();
        let i: usize = std::str::from_utf8(r.key().unwrap()).unwrap().parse().unwrap();
        assert_eq!(r.value().unwrap(), &vec![(i % 251) as u8; 1024][..]);
        got += 1;
    }
    cluster.shutdown().await;
}
