//! The connection layer and producer edges against the bundled broker (and a few fake
//! servers): version negotiation, timeouts, hostile sizes, TLS ports, metadata refresh,
//! local and broker-side size limits, acks=0, custom partitioners.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::Duration;

use kafka_broker::{Action, Cluster, Times};
use kafka_client::conn::{self, BrokerAddress};
use kafka_client::{
    Acks, Client, ClientConfig, Error, Partitioner, Persistence, Producer, ProducerConfig, ProducerRecord,
};
use kafka_integration_tests::{init_logs, read_topic};
use kafka_protocol::messages::MetadataRequest;
use kafka_protocol::{ApiKey, ErrorCode, ProtocolError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

async fn cluster(brokers: usize) -> Cluster {
    init_logs();
    Cluster::builder().brokers(brokers).auto_create_topics(false).start().await.unwrap()
}

fn address(cluster: &Cluster, node: i32) -> BrokerAddress {
    let addr = cluster.broker_addrs().into_iter().find(|(id, _)| *id == node).unwrap().1;
    BrokerAddress { node_id: node, host: addr.ip().to_string(), port: addr.port() }
}

#[test]
fn producer_handles_are_clone_send_sync() {
    fn assert<T: Clone + Send + Sync + 'static>() {}
    assert::<Producer>();
    assert::<Client>();
}

/// The handshake picks, per API, the highest version both sides support.
#[tokio::test]
async fn versions_are_negotiated() {
    let cluster = cluster(1).await;
    let c = conn::connect(&address(&cluster, 1), &ClientConfig::new(&cluster.bootstrap_servers())).await.unwrap();
    let broker = c.versions().broker_range(ApiKey::Produce).unwrap();
    assert_eq!(c.version(ApiKey::Produce, 3).unwrap(), broker.max.min(ApiKey::Produce.max_stable_version()));
    assert!(c.version(ApiKey::Produce, 3).unwrap() >= ApiKey::Produce.kafka4_min_version());
    // An API the bundled broker does not serve yet has no version.
    assert!(matches!(c.version(ApiKey::DescribeAcls, 0), Err(Error::UnsupportedVersion { .. })));
    cluster.shutdown().await;
}

/// A broker that does not know our ApiVersions version answers UNSUPPORTED_VERSION; the client
/// asks again with v0 and connects.
#[tokio::test]
async fn api_versions_falls_back_to_v0() {
    let cluster = cluster(1).await;
    cluster
        .intercept(ApiKey::ApiVersions, Times::Once, |_| Action::Error(ErrorCode::UnsupportedVersion))
        .await
        .unwrap();
    let c = conn::connect(&address(&cluster, 1), &ClientConfig::new(&cluster.bootstrap_servers())).await.unwrap();
    assert!(c.versions().broker_range(ApiKey::Metadata).is_some());
    let versions: Vec<i16> = cluster
        .request_log()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.api_key == ApiKey::ApiVersions)
        .map(|r| r.version)
        .collect();
    assert_eq!(versions, vec![ApiKey::ApiVersions.max_stable_version(), 0]);
    cluster.shutdown().await;
}

/// A response slower than request.timeout.ms fails that request with RequestTimeout and
/// closes the connection.
#[tokio::test]
async fn request_timeout_closes_the_connection() {
    let cluster = cluster(1).await;
    let mut config = ClientConfig::new(&cluster.bootstrap_servers());
    config.request_timeout = Duration::from_millis(200);
    let c = conn::connect(&address(&cluster, 1), &config).await.unwrap();
    cluster.set_latency(1, Duration::from_millis(2_000)).await.unwrap();
    let r = c.request(&MetadataRequest { topics: Some(vec![]), ..Default::default() }).await;
    assert!(matches!(r, Err(Error::RequestTimeout { api: ApiKey::Metadata, timeout_ms: 200, .. })), "{r:?}");
    assert!(c.is_closed());
    cluster.shutdown().await;
}

/// A fake server that answers the handshake with `reply` and keeps the socket open.
async fn fake_server(reply: Vec<u8>) -> (BrokerAddress, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        let _ = s.write_all(&reply).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    (BrokerAddress { node_id: -1, host: "127.0.0.1".into(), port }, task)
}

/// A plaintext client on a TLS port gets a TLS alert back; the error says what happened.
#[tokio::test]
async fn plaintext_client_on_a_tls_port_says_so() {
    // A TLS 1.2 "protocol version" alert, as a TLS server sends to a non-TLS hello.
    let (addr, task) = fake_server(vec![0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46]).await;
    let e = conn::connect(&addr, &ClientConfig::new("127.0.0.1:1")).await.unwrap_err();
    assert!(e.to_string().contains("TLS"), "{e}");
    task.abort();
}

/// A response claiming to be larger than receive.message.max.bytes is refused from its size
/// prefix, before anything is allocated.
#[tokio::test]
async fn oversized_responses_are_refused_before_allocation() {
    let (addr, task) = fake_server(vec![0x7f, 0xff, 0xff, 0xff]).await;
    let e = conn::connect(&addr, &ClientConfig::new("127.0.0.1:1")).await.unwrap_err();
    assert!(
        matches!(&e, Error::Protocol { source: ProtocolError::FrameTooLarge { max, .. }, .. } if *max == 100 << 20),
        "{e}"
    );
    task.abort();
}

/// Metadata is refreshed every metadata.max.age.ms without anyone asking.
#[tokio::test]
async fn metadata_refreshes_on_its_own() {
    let cluster = cluster(1).await;
    let mut config = ClientConfig::new(&cluster.bootstrap_servers());
    config.metadata_max_age = Duration::from_millis(100);
    let client = Client::new(config, false).unwrap();
    let mut rx = client.watch_metadata();
    for _ in 0..3 {
        tokio::time::timeout(Duration::from_secs(5), rx.changed()).await.unwrap().unwrap();
    }
    let requests = cluster.request_log().await.unwrap().iter().filter(|r| r.api_key == ApiKey::Metadata).count();
    assert!(requests >= 3, "{requests}");
    client.close();
    cluster.shutdown().await;
}

/// Bootstrap by host name ("localhost", resolved at each attempt), and reconnection after the
/// connection is lost.
#[tokio::test]
async fn bootstraps_by_name_and_reconnects() {
    let cluster = cluster(1).await;
    let port = address(&cluster, 1).port;
    let client = Client::new(ClientConfig::new(&format!("localhost:{port}")), false).unwrap();
    let m = client.refresh_metadata().await.unwrap();
    assert_eq!(m.brokers.len(), 1);
    // Drop every connection: the next refresh must reconnect (to the known broker or the
    // bootstrap address).
    client.connection(1).await.unwrap().close();
    let m = client.refresh_metadata().await.unwrap();
    assert_eq!(m.brokers.len(), 1);
    client.close();
    cluster.shutdown().await;
}

/// A record that can never fit max.request.size fails at send, before anything is sent.
#[tokio::test]
async fn oversized_records_fail_locally() {
    let cluster = cluster(1).await;
    cluster.create_topic("big", 1, 1).await.unwrap();
    let producer = Producer::new(ProducerConfig::new(&cluster.bootstrap_servers()).max_request_size(10_000)).unwrap();
    let value = vec![7u8; 20_000];
    let e = producer.send(ProducerRecord::new("big").value(&value)).await.unwrap_err();
    assert!(matches!(e, Error::RecordTooLarge { setting: "max.request.size", limit: 10_000, .. }), "{e}");
    producer.close(Duration::from_secs(5)).await.unwrap();
    cluster.shutdown().await;
}

/// MESSAGE_TOO_LARGE from the broker (max.message.bytes) fails the record as not persisted,
/// without retrying until the delivery timeout.
#[tokio::test]
async fn message_too_large_is_not_retried() {
    let cluster = cluster(1).await;
    cluster.create_topic_with_configs("small", 1, 1, &[("max.message.bytes", "1000")]).await.unwrap();
    let producer = Producer::new(ProducerConfig::new(&cluster.bootstrap_servers())).unwrap();
    let value = vec![7u8; 5_000];
    let started = std::time::Instant::now();
    let e = producer.send(ProducerRecord::new("small").value(&value)).await.unwrap().await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::MessageTooLarge), "{e}");
    assert_eq!(e.persistence, Persistence::NotPersisted);
    assert!(started.elapsed() < Duration::from_secs(10));
    producer.close(Duration::from_secs(5)).await.unwrap();
    cluster.shutdown().await;
}

/// acks=0: records are delivered with offset -1 (there is no response to carry one).
#[tokio::test]
async fn acks_zero_delivers_without_offsets() {
    let cluster = cluster(1).await;
    cluster.create_topic("fire", 1, 1).await.unwrap();
    let config = ProducerConfig::new(&cluster.bootstrap_servers()).acks(Acks::None);
    let producer = Producer::new(config).unwrap();
    assert!(!producer.config().enable_idempotence, "acks=0 turns default idempotence off");
    let mut futures = Vec::new();
    for i in 0..100 {
        let v = format!("{i}");
        futures.push(producer.send(ProducerRecord::new("fire").value(&v)).await.unwrap());
    }
    for f in futures {
        assert_eq!(f.await.unwrap().offset, -1);
    }
    producer.close(Duration::from_secs(5)).await.unwrap();
    let log = read_topic(&cluster.bootstrap_servers(), "fire", 1).await.unwrap();
    assert_eq!(log[0].len(), 100);
    cluster.shutdown().await;
}

struct EvenOdd;

impl Partitioner for EvenOdd {
    fn partition(&self, _topic: &str, key: Option<&[u8]>, _value: Option<&[u8]>, partitions: i32) -> Option<i32> {
        let n: i32 = std::str::from_utf8(key?).ok()?.parse().ok()?;
        Some(n % 2 % partitions)
    }
}

/// A custom partitioner decides; an explicit partition still wins over it.
#[tokio::test]
async fn custom_partitioner_and_explicit_partitions() {
    let cluster = cluster(1).await;
    cluster.create_topic("custom", 3, 1).await.unwrap();
    let producer = Producer::with_partitioner(ProducerConfig::new(&cluster.bootstrap_servers()), EvenOdd).unwrap();
    for n in 0..10 {
        let key = n.to_string();
        let m = producer.send(ProducerRecord::new("custom").key(&key).value("v")).await.unwrap().await.unwrap();
        assert_eq!(m.partition, n % 2);
    }
    let m = producer.send(ProducerRecord::new("custom").key("1").partition(2).value("v")).await.unwrap().await.unwrap();
    assert_eq!(m.partition, 2);
    // A partition that does not exist fails after max.block.ms.
    let short =
        Producer::new(ProducerConfig::new(&cluster.bootstrap_servers()).max_block(Duration::from_millis(200))).unwrap();
    let e = short.send(ProducerRecord::new("custom").partition(7).value("v")).await.unwrap_err();
    assert!(matches!(e, Error::Timeout { setting: "max.block.ms", .. }), "{e}");
    producer.close(Duration::from_secs(5)).await.unwrap();
    short.close(Duration::from_secs(5)).await.unwrap();
    cluster.shutdown().await;
}

/// A topic that does not exist (auto-creation off) fails the send after max.block.ms, with
/// a message that names it.
#[tokio::test]
async fn unknown_topics_fail_after_max_block() {
    let cluster = cluster(1).await;
    let config = ProducerConfig::new(&cluster.bootstrap_servers()).max_block(Duration::from_millis(300));
    let producer = Producer::new(config).unwrap();
    let e = producer.send(ProducerRecord::new("nowhere").value("v")).await.unwrap_err();
    assert!(matches!(&e, Error::Timeout { setting: "max.block.ms", what, .. } if what.contains("nowhere")), "{e}");
    producer.close(Duration::from_secs(5)).await.unwrap();
    cluster.shutdown().await;
}

/// Dropping a producer with records still queued for a dead broker returns at once.
#[tokio::test]
async fn dropping_a_producer_never_blocks() {
    let cluster = cluster(1).await;
    cluster.create_topic("gone", 1, 1).await.unwrap();
    let producer = Producer::new(ProducerConfig::new(&cluster.bootstrap_servers())).unwrap();
    producer.send(ProducerRecord::new("gone").value("v")).await.unwrap().await.unwrap();
    cluster.stop_broker(1).await.unwrap();
    let pending = producer.send(ProducerRecord::new("gone").value("w")).await.unwrap();
    let started = std::time::Instant::now();
    drop(producer);
    assert!(started.elapsed() < Duration::from_millis(100));
    assert!(!pending.is_done());
    cluster.shutdown().await;
}

/// When every broker the metadata names is unreachable, the client goes back to its bootstrap
/// servers. A Metadata answer advertising only a broker nobody listens on makes every known
/// broker unreachable; the next refresh must still succeed, through the bootstrap address.
#[tokio::test]
async fn rebootstraps_when_every_known_broker_is_gone() {
    use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
    use kafka_protocol::messages::{MetadataResponse, ResponseBody};
    let cluster = cluster(1).await;
    // A port that refuses connections.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    cluster
        .intercept(ApiKey::Metadata, Times::Once, move |_| {
            Action::Respond(ResponseBody::Metadata(MetadataResponse {
                brokers: vec![MetadataResponseBroker {
                    node_id: 7,
                    host: "127.0.0.1".into(),
                    port: i32::from(dead_port),
                    rack: None,
                    ..Default::default()
                }],
                cluster_id: Some("gone".into()),
                controller_id: 7,
                ..Default::default()
            }))
        })
        .await
        .unwrap();
    let client = Client::new(ClientConfig::new(&cluster.bootstrap_servers()), false).unwrap();
    let first = client.refresh_metadata().await.unwrap();
    assert_eq!(first.brokers.keys().copied().collect::<Vec<_>>(), vec![7]);
    assert!(client.connection(7).await.is_err(), "node 7 is unreachable");
    // Close the bootstrap connection too, so that the refresh has to open it again.
    client.any_connection().await.unwrap().close();
    let second = client.refresh_metadata().await.unwrap();
    assert_eq!(second.brokers.keys().copied().collect::<Vec<_>>(), vec![1], "re-bootstrapped");
    client.close();
    cluster.shutdown().await;
}
