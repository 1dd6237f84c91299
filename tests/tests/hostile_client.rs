//! Hostile clients against the bundled broker (RELIABILITY.md, "Bad input", from a client to
//! our broker): while an idempotent producer writes through the checker, raw connections
//! send malformed requests. Each bad connection is closed or answered with an error; the
//! producer loses nothing, and the broker keeps answering everyone else.
//! (`kafka-broker/tests/tcp.rs` checks single bad frames against a quiet broker.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_broker::Cluster;
use kafka_client::Producer;
use kafka_integration_tests::scenario::produce;
use kafka_integration_tests::{init_logs, Checker};
use kafka_protocol::frame;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse};
use kafka_protocol::records::{BatchOptions, ProducerState, RecordBatchBuilder};
use kafka_protocol::ErrorCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw frame: size prefix then `body`.
fn raw(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as i32).to_be_bytes().to_vec();
    v.extend(body);
    v
}

fn encode_request<R: kafka_protocol::Request>(correlation_id: i32, r: &R, version: i16) -> Vec<u8> {
    let mut out = BytesMut::new();
    frame::encode_request(&mut out, correlation_id, Some("hostile"), r, version).unwrap();
    out.to_vec()
}

/// Reads one response frame, or `None` when the broker closed the connection (or said
/// nothing within 3 s).
async fn read_frame(s: &mut TcpStream) -> Option<Bytes> {
    let mut size = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut size)).await.ok()?.ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(size).clamp(0, 64 << 20) as usize];
    tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut body)).await.ok()?.ok()?;
    Some(Bytes::from(body))
}

fn produce_request(records: Bytes) -> ProduceRequest {
    ProduceRequest {
        transactional_id: None,
        acks: -1,
        timeout_ms: 5_000,
        topic_data: vec![TopicProduceData {
            name: "hostile".into(),
            partition_data: vec![PartitionProduceData { index: 0, records: Some(records), ..Default::default() }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn batch() -> BytesMut {
    let mut b = RecordBatchBuilder::new(BatchOptions::default());
    b.append(1_700_000_000_000, None, Some(b"hostile value"), &[]).unwrap();
    BytesMut::from(&b.seal(ProducerState { producer_id: -1, producer_epoch: -1, base_sequence: -1 }).unwrap()[..])
}

/// The malformed requests: (what, bytes).
fn cases() -> Vec<(&'static str, Vec<u8>)> {
    let metadata_v1 = encode_request(7, &MetadataRequest { topics: None, ..Default::default() }, 1);
    let mut lying_topics = metadata_v1[4..14 + 7].to_vec(); // header: key, version, id, client id "hostile"
    lying_topics.extend(54_000_000i32.to_be_bytes());
    let mut bad_utf8_client = metadata_v1.clone();
    bad_utf8_client[14] = 0xff; // first byte of the client id
    let mut bad_crc = batch();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0x55;
    let mut bad_magic = batch();
    bad_magic[16] = 9;
    let mut lying_count = batch();
    lying_count[57..61].copy_from_slice(&54_000_000i32.to_be_bytes());
    vec![
        ("negative frame size", (-7i32).to_be_bytes().to_vec()),
        ("frame size above socket.request.max.bytes", (0x7fff_0000i32).to_be_bytes().to_vec()),
        ("frame cut short", raw(&metadata_v1[4..])[..12].to_vec()),
        ("array count far above the bytes", raw(&lying_topics)),
        ("invalid UTF-8 in the client id", bad_utf8_client),
        ("unknown API key", raw(&[0x7f, 0x00, 0, 0, 0, 0, 0, 9, 0xff, 0xff])),
        ("version out of range", raw(&[0, 3, 0x7f, 0, 0, 0, 0, 9, 0xff, 0xff])),
        ("record batch with a wrong CRC", encode_request(11, &produce_request(bad_crc.freeze()), 9)),
        ("record batch with a wrong magic", encode_request(12, &produce_request(bad_magic.freeze()), 9)),
        ("record count far above the bytes", encode_request(13, &produce_request(lying_count.freeze()), 9)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_close_their_connection_and_the_producer_loses_nothing() {
    init_logs();
    let cluster = Cluster::builder()
        .brokers(1)
        .auto_create_topics(false)
        .broker_config("socket.request.max.bytes", "1048576")
        .start()
        .await
        .unwrap();
    cluster.create_topic("hostile", 1, 1).await.unwrap();
    cluster.create_topic("good", 3, 1).await.unwrap();
    let addr = cluster.broker_addrs()[0].1;
    let checker = std::sync::Arc::new(Checker::new("good", 3, 16));
    let producing = {
        let (checker, bootstrap) = (checker.clone(), cluster.bootstrap_servers());
        tokio::spawn(async move {
            let config = kafka_client::ProducerConfig::new(&bootstrap).linger(Duration::from_millis(1));
            let producer = Producer::new(config).unwrap();
            produce(&checker, &producer, 20_000, 2_000, |_| async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(())
            })
            .await
            .unwrap();
            producer.close(Duration::from_secs(10)).await.unwrap();
        })
    };
    let mut rounds = 0;
    while !producing.is_finished() || rounds == 0 {
        rounds += 1;
        for (what, bytes) in cases() {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(&bytes).await.unwrap();
            let answer = read_frame(&mut s).await;
            if what.starts_with("record") {
                // A bad batch is the client's fault, not the stream's: the broker answers
                // CORRUPT_MESSAGE (Kafka's answer) and writes nothing.
                let frame = answer.unwrap_or_else(|| panic!("{what}: no answer"));
                let (_, r) = frame::decode_response::<ProduceResponse>(frame, 9).unwrap();
                let code = ErrorCode::from_code(r.responses[0].partition_responses[0].error_code);
                assert!(
                    matches!(code, ErrorCode::CorruptMessage | ErrorCode::InvalidRecord),
                    "{what}: {}",
                    code.name()
                );
            } else {
                assert!(answer.is_none(), "{what}: the broker answered instead of closing");
            }
        }
        // Everyone else is still served.
        let mut healthy = TcpStream::connect(addr).await.unwrap();
        healthy
            .write_all(&encode_request(1, &MetadataRequest { topics: None, ..Default::default() }, 1))
            .await
            .unwrap();
        let (_, m) = frame::decode_response::<MetadataResponse>(read_frame(&mut healthy).await.unwrap(), 1).unwrap();
        assert_eq!(m.brokers.len(), 1);
    }
    producing.await.unwrap();
    let log = checker.read_back(&cluster.bootstrap_servers()).await.unwrap();
    let figures = checker.figures(&log);
    println!("hostile clients: {rounds} rounds of {} malformed requests\n{figures}", cases().len());
    figures.check_clean().unwrap();
    assert_eq!(figures.acked, 20_000, "{figures}");
    // Nothing from the bad batches was written.
    let stats = cluster.partition_stats("hostile", 0).await.unwrap();
    assert_eq!(stats.high_watermark, 0);
    cluster.shutdown().await;
}
