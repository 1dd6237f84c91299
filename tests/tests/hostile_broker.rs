//! A hostile broker (RELIABILITY.md, "Bad input"): a raw TCP server that completes the
//! ApiVersions handshake properly, then feeds the client malformed responses. Every case must
//! give a typed error within a bound (no panic, no hang, no allocation sized by a count read
//! off the wire: a 54-million-element claim would need gigabytes), close the connection whose
//! stream can no longer be trusted, fail the requests pending on it with a retriable error,
//! and leave other connections working.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_client::conn::{self, BrokerAddress, Connection};
use kafka_client::{
    ClientConfig, Consumer, ConsumerConfig, Error, Producer, ProducerConfig, ProducerRecord, TopicPartition,
};
use kafka_integration_tests::init_logs;
use kafka_protocol::frame;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiVersionsResponse, FetchResponse, ListOffsetsResponse, MetadataRequest, MetadataResponse,
};
use kafka_protocol::records::{BatchOptions, ProducerState, RecordBatchBuilder};
use kafka_protocol::ApiKey;
use peak_alloc::PeakAlloc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Counts the bytes this test binary has allocated, current and peak (`peak_alloc` wraps
/// `System`; the workspace forbids `unsafe`, so the wrapper is that small crate's), so each
/// malformed case can show its memory stayed bounded by what was received, not by a size
/// claimed on the wire. The tests of this binary take [`SERIAL`], so the counts are one
/// test's.
#[global_allocator]
static ALLOCATOR: PeakAlloc = PeakAlloc;

/// Serialises the tests of this binary (libtest runs them on parallel threads), so that the
/// allocation counts of one are not another's.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A malformed case may make the client allocate this much above where it started (the
/// fake broker's own buffers, a connection, a consumer), never what the wire claims.
const MEMORY_BOUND: usize = 4 << 20;

/// Starts measuring: the peak is reset to the current count, which is returned.
fn measure_from_here() -> usize {
    ALLOCATOR.reset_peak_usage();
    ALLOCATOR.current_usage()
}

/// Asserts that the peak since `base` stayed within [`MEMORY_BOUND`]; returns it.
fn assert_bounded(what: &str, base: usize) -> usize {
    let grown = ALLOCATOR.peak_usage().saturating_sub(base);
    assert!(grown < MEMORY_BOUND, "{what}: the peak allocation grew by {grown} bytes (bound {MEMORY_BOUND})");
    grown
}

/// What the fake broker does with a request (not ApiVersions, which it always answers well).
enum Reply {
    /// Write these bytes (a whole frame, or anything else).
    Raw(Vec<u8>),
    /// Write these bytes, then close the connection.
    RawThenClose(Vec<u8>),
    /// Do not answer.
    Nothing,
}

/// A malformed answer, given the request's correlation id.
type BadAnswer = Box<dyn Fn(i32) -> Reply + Send + Sync>;

/// Damage done to a record batch in wire form.
type Corruption = fn(&mut BytesMut);

/// The request as the fake broker saw it: connection number, API, version, correlation id.
type Script = Box<dyn FnMut(usize, ApiKey, i16, i32) -> Reply + Send>;

struct FakeBroker {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl FakeBroker {
    async fn start(script: Script) -> FakeBroker {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let script = Arc::new(Mutex::new(script));
        let connections = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let n = connections.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(serve(s, n, script.clone()));
            }
        });
        FakeBroker { port, task }
    }

    fn address(&self) -> BrokerAddress {
        BrokerAddress { node_id: -1, host: "127.0.0.1".into(), port: self.port }
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for FakeBroker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut s: TcpStream, n: usize, script: Arc<Mutex<Script>>) {
    loop {
        let mut size = [0u8; 4];
        if s.read_exact(&mut size).await.is_err() {
            return;
        }
        let mut body = vec![0u8; i32::from_be_bytes(size).clamp(0, 1 << 20) as usize];
        if s.read_exact(&mut body).await.is_err() {
            return;
        }
        let prefix = frame::peek_request(&body).unwrap();
        let api = ApiKey::from_key(prefix.api_key).unwrap();
        let reply = if api == ApiKey::ApiVersions {
            let mut out = BytesMut::new();
            frame::encode_response(&mut out, prefix.correlation_id, &api_versions(), 0).unwrap();
            Reply::Raw(out.to_vec())
        } else {
            (script.lock().unwrap())(n, api, prefix.api_version, prefix.correlation_id)
        };
        match reply {
            Reply::Raw(b) => {
                if s.write_all(&b).await.is_err() {
                    return;
                }
            }
            Reply::RawThenClose(b) => {
                let _ = s.write_all(&b).await;
                return;
            }
            Reply::Nothing => {}
        }
    }
}

/// What the fake broker advertises: versions that name topics (Fetch up to 12).
fn api_versions() -> ApiVersionsResponse {
    let api = |k: ApiKey, min: i16, max: i16| ApiVersion {
        api_key: k as i16,
        min_version: min,
        max_version: max,
        ..Default::default()
    };
    ApiVersionsResponse {
        error_code: 0,
        api_keys: vec![
            api(ApiKey::ApiVersions, 0, 3),
            api(ApiKey::Metadata, 1, 12),
            api(ApiKey::Produce, 3, 9),
            api(ApiKey::Fetch, 4, 12),
            api(ApiKey::ListOffsets, 1, 7),
            api(ApiKey::InitProducerId, 0, 4),
        ],
        ..Default::default()
    }
}

/// A frame: size prefix, correlation id (response header v0), then `body`.
fn frame_v0(correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend(((body.len() + 4) as i32).to_be_bytes());
    v.extend(correlation_id.to_be_bytes());
    v.extend(body);
    v
}

fn encode<R: kafka_protocol::Response>(correlation_id: i32, r: &R, version: i16) -> Vec<u8> {
    let mut out = BytesMut::new();
    frame::encode_response(&mut out, correlation_id, r, version).unwrap();
    out.to_vec()
}

/// Metadata naming one broker and topic `t` with `partitions` partitions led by `leader`.
fn metadata(host: &str, port: i32, leader: i32, partitions: i32) -> MetadataResponse {
    MetadataResponse {
        brokers: vec![MetadataResponseBroker { node_id: 1, host: host.into(), port, ..Default::default() }],
        controller_id: 1,
        cluster_id: Some("hostile".into()),
        topics: vec![MetadataResponseTopic {
            name: Some("t".into()),
            partitions: (0..partitions)
                .map(|p| MetadataResponsePartition {
                    partition_index: p,
                    leader_id: leader,
                    leader_epoch: 0,
                    replica_nodes: vec![1],
                    isr_nodes: vec![1],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn connect(fake: &FakeBroker) -> Connection {
    conn::connect(&fake.address(), &ClientConfig::new("127.0.0.1:1")).await.unwrap()
}

/// Each malformed answer to a Metadata request, given on connection 1 only (connection 0
/// is answered well throughout).
#[tokio::test]
async fn malformed_responses_fail_typed_close_their_connection_and_spare_the_others() {
    let _serial = SERIAL.lock().await;
    init_logs();
    let lying_count = {
        // Metadata v1 body: brokers array claiming 54 million entries, then 4 bytes.
        let mut b = Vec::new();
        b.extend(54_000_000i32.to_be_bytes());
        b.extend([0, 0, 0, 1]);
        b
    };
    let bad_utf8 = {
        let mut r = metadata("h", 9092, 1, 1);
        r.brokers[0].host = "XX".into();
        let mut v = encode(0, &r, 1);
        // Replace the host "XX" with two bytes that are not UTF-8.
        let at = v.windows(2).position(|w| w == b"XX").unwrap();
        v[at] = 0xff;
        v[at + 1] = 0xfe;
        v
    };
    let cases: Vec<(&str, BadAnswer)> = vec![
        ("negative frame length", Box::new(|_| Reply::Raw((-2i32).to_be_bytes().to_vec()))),
        ("frame length above the maximum", Box::new(|_| Reply::Raw(0x7fff_fff0i32.to_be_bytes().to_vec()))),
        (
            "frame cut short, then the connection closes",
            Box::new(|c| Reply::RawThenClose(frame_v0(c, &[0u8; 40])[..20].to_vec())),
        ),
        ("unknown correlation id", Box::new(|c| Reply::Raw(frame_v0(c.wrapping_add(1000), &[0u8; 8])))),
        (
            "frame length just below the maximum, then the connection closes",
            Box::new(|_| {
                let mut v = ((100 << 20) - 1i32).to_be_bytes().to_vec();
                v.extend([0u8; 100]);
                Reply::RawThenClose(v)
            }),
        ),
        ("array count far above the bytes", Box::new(move |c| Reply::Raw(frame_v0(c, &lying_count)))),
        ("array count 2^31 - 1", {
            let mut b = Vec::new();
            b.extend(i32::MAX.to_be_bytes());
            b.extend([0, 0, 0, 1]);
            Box::new(move |c| Reply::Raw(frame_v0(c, &b)))
        }),
        ("body truncated inside the frame", Box::new(|c| Reply::Raw(frame_v0(c, &[0, 0, 0, 1, 0, 0])))),
        ("invalid UTF-8 in a string", {
            let bad = bad_utf8.clone();
            Box::new(move |c| {
                let mut v = bad.clone();
                v[4..8].copy_from_slice(&c.to_be_bytes());
                Reply::Raw(v)
            })
        }),
    ];
    for (what, bad) in cases {
        let base = measure_from_here();
        let bad: Arc<dyn Fn(i32) -> Reply + Send + Sync> = Arc::from(bad);
        let b = bad.clone();
        let fake = FakeBroker::start(Box::new(move |conn, api, version, corr| match (conn, api) {
            (1, ApiKey::Metadata) if corr % 2 == 0 => b(corr),
            (1, ApiKey::Metadata) => Reply::Nothing,
            (_, ApiKey::Metadata) => Reply::Raw(encode(corr, &metadata("127.0.0.1", 9092, 1, 1), version)),
            _ => Reply::Nothing,
        }))
        .await;
        let healthy = connect(&fake).await;
        let victim = connect(&fake).await;
        let request = MetadataRequest { topics: None, ..Default::default() };
        // Two requests in flight: the first gets the bad answer, the second none.
        let first = victim.send(&request, 1, true, Duration::from_secs(10)).unwrap();
        let second = victim.send(&request, 1, true, Duration::from_secs(10)).unwrap();
        let started = std::time::Instant::now();
        let first = tokio::time::timeout(Duration::from_secs(5), async {
            let frame = first.await?;
            frame::decode_response::<MetadataResponse>(frame, 1).map_err(|source| victim.protocol_error(source))
        })
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within 5 s"));
        let e = first.expect_err(what);
        assert!(
            matches!(e, Error::Protocol { .. } | Error::Disconnected { .. }),
            "{what}: the bad answer gives a protocol or disconnection error, not {e:?}"
        );
        let second = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .unwrap_or_else(|_| panic!("{what}: pending request hangs"));
        let e2 = second.expect_err(what);
        assert!(
            e2.is_retriable(),
            "{what}: the request pending behind the bad answer must fail retriably, not with {e2:?}"
        );
        assert!(victim.is_closed(), "{what}: the untrustworthy connection is closed");
        assert!(started.elapsed() < Duration::from_secs(5), "{what}");
        // The other connection is untouched.
        let ok: MetadataResponse = healthy.request_at(&request, 1).await.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(ok.brokers.len(), 1, "{what}");
        assert!(!healthy.is_closed(), "{what}");
        let grown = assert_bounded(what, base);
        println!("{what}: peak allocation +{grown} bytes");
    }
}

/// A record batch in wire form at `base_offset` with `n` records.
fn batch(base_offset: i64, n: i32) -> BytesMut {
    let mut b = RecordBatchBuilder::new(BatchOptions { base_offset, ..Default::default() });
    for i in 0..n {
        b.append(1_700_000_000_000, None, Some(format!("v{i}").as_bytes()), &[]).unwrap();
    }
    BytesMut::from(&b.seal(ProducerState { producer_id: -1, producer_epoch: -1, base_sequence: -1 }).unwrap()[..])
}

fn fetch_response(parts: Vec<(i32, Option<Bytes>)>) -> FetchResponse {
    FetchResponse {
        responses: vec![FetchableTopicResponse {
            topic: "t".into(),
            partitions: parts
                .into_iter()
                .map(|(p, records)| PartitionData {
                    partition_index: p,
                    high_watermark: 3,
                    last_stable_offset: 3,
                    log_start_offset: 0,
                    records,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A fake broker that leads `t` (2 partitions), answers ListOffsets with 0 and every Fetch
/// with `fetch(version, correlation id)`.
async fn fetch_broker(fetch: impl Fn(i16, i32) -> Vec<u8> + Send + 'static) -> FakeBroker {
    let port = Arc::new(AtomicUsize::new(0));
    let p = port.clone();
    let fake = FakeBroker::start(Box::new(move |_, api, version, corr| match api {
        ApiKey::Metadata => {
            Reply::Raw(encode(corr, &metadata("127.0.0.1", p.load(Ordering::Relaxed) as i32, 1, 2), version))
        }
        ApiKey::ListOffsets => Reply::Raw(encode(
            corr,
            &ListOffsetsResponse {
                topics: vec![ListOffsetsTopicResponse {
                    name: "t".into(),
                    partitions: (0..2)
                        .map(|p| ListOffsetsPartitionResponse {
                            partition_index: p,
                            offset: 0,
                            timestamp: -1,
                            leader_epoch: 0,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            },
            version,
        )),
        ApiKey::Fetch => Reply::Raw(fetch(version, corr)),
        _ => Reply::Nothing,
    }))
    .await;
    port.store(fake.port as usize, Ordering::Relaxed);
    fake
}

async fn consumer_on(fake: &FakeBroker, partitions: &[i32]) -> Consumer {
    let config = ConsumerConfig::new(&fake.bootstrap())
        .set("auto.offset.reset", "earliest")
        .unwrap()
        .set("fetch.max.wait.ms", "50")
        .unwrap()
        .set("check.crcs", "true")
        .unwrap();
    let c = Consumer::new(config).unwrap();
    c.assign(partitions.iter().map(|p| TopicPartition::new("t", *p))).unwrap();
    c
}

/// Polls for `d`, collecting records and errors.
async fn poll_for(c: &Consumer, d: Duration) -> (Vec<(i32, i64)>, Vec<Error>) {
    let (mut records, mut errors) = (Vec::new(), Vec::new());
    let end = tokio::time::Instant::now() + d;
    while tokio::time::Instant::now() < end {
        match c.poll(Duration::from_millis(50)).await {
            Ok(b) => records.extend(b.iter().map(|r| (r.partition(), r.offset()))),
            Err(e) => errors.push(e),
        }
    }
    (records, errors)
}

/// Corrupt record batches in Fetch answers: the consumer hands out nothing from them, and
/// says why with a typed error (never a panic or a record made of garbage).
#[tokio::test]
async fn corrupt_record_batches_are_refused_with_typed_errors() {
    let _serial = SERIAL.lock().await;
    init_logs();
    let corruptions: Vec<(&str, Corruption)> = vec![
        ("wrong CRC-32C", |b| {
            let last = b.len() - 1;
            b[last] ^= 0x55;
        }),
        ("wrong magic", |b| b[16] = 7),
        ("batch length past the end", |b| b[8..12].copy_from_slice(&0x0fff_ffffi32.to_be_bytes())),
        ("negative batch length", |b| b[8..12].copy_from_slice(&(-40i32).to_be_bytes())),
        ("batch length below the header", |b| b[8..12].copy_from_slice(&20i32.to_be_bytes())),
        ("record count far above the bytes", |b| b[57..61].copy_from_slice(&54_000_000i32.to_be_bytes())),
        ("record count 2^31 - 1", |b| b[57..61].copy_from_slice(&i32::MAX.to_be_bytes())),
        ("batch length 2 GiB", |b| b[8..12].copy_from_slice(&i32::MAX.to_be_bytes())),
    ];
    for (what, corrupt) in corruptions {
        let base = measure_from_here();
        let fake = fetch_broker(move |version, corr| {
            let mut b = batch(0, 3);
            corrupt(&mut b);
            encode(corr, &fetch_response(vec![(0, Some(b.freeze()))]), version)
        })
        .await;
        let c = consumer_on(&fake, &[0]).await;
        let (records, errors) = poll_for(&c, Duration::from_millis(700)).await;
        // A truncated tail is legitimately skipped (KIP-74), so "past the end" may give no
        // error at all; the others must say what is wrong.
        assert!(records.is_empty(), "{what}: records handed out from a corrupt batch: {records:?}");
        if what != "batch length past the end" && what != "batch length 2 GiB" {
            assert!(!errors.is_empty(), "{what}: no error reported");
            assert!(
                errors.iter().all(|e| matches!(e, Error::Corrupt { .. } | Error::Protocol { .. })),
                "{what}: {errors:?}"
            );
        }
        c.close().await.unwrap();
        let grown = assert_bounded(what, base);
        println!("{what}: peak allocation +{grown} bytes");
    }
}

/// Fetch answers naming partitions that were not asked for, or one partition twice: nothing
/// is handed out for a partition not assigned, and no record twice.
#[tokio::test]
async fn fetch_answers_with_unasked_or_repeated_partitions_hand_out_nothing_twice() {
    let _serial = SERIAL.lock().await;
    init_logs();
    let fake = fetch_broker(|version, corr| {
        let b = batch(0, 3).freeze();
        encode(corr, &fetch_response(vec![(0, Some(b.clone())), (0, Some(b.clone())), (1, Some(b))]), version)
    })
    .await;
    let c = consumer_on(&fake, &[0]).await;
    let (records, _errors) = poll_for(&c, Duration::from_millis(700)).await;
    assert!(records.iter().all(|(p, _)| *p == 0), "records of an unassigned partition: {records:?}");
    // The batch (offsets 0-2) comes in every answer; each record is handed out once.
    assert_eq!(records, vec![(0, 0), (0, 1), (0, 2)]);
    let mut offsets: Vec<i64> = records.iter().map(|(_, o)| *o).collect();
    offsets.dedup();
    assert_eq!(offsets.len(), records.len(), "a record handed out twice: {records:?}");
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
    c.close().await.unwrap();
}

/// Metadata naming a leader that is not among the brokers, a broker on port 0, or one with
/// an empty host: sends fail with a typed timeout once delivery.timeout.ms runs out; nothing
/// panics or spins.
#[tokio::test]
async fn metadata_with_unusable_leaders_fails_sends_with_typed_errors() {
    let _serial = SERIAL.lock().await;
    init_logs();
    let cases: Vec<(&str, &'static str, i32, i32)> = vec![
        ("leader not among the brokers", "127.0.0.1", -1, 7),
        ("broker on port 0", "127.0.0.1", 0, 1),
        ("empty host", "", -1, 1),
    ];
    for (what, host, port, leader) in cases {
        let fake_port = Arc::new(AtomicUsize::new(0));
        let fp = fake_port.clone();
        let requests = Arc::new(AtomicUsize::new(0));
        let r = requests.clone();
        let fake = FakeBroker::start(Box::new(move |_, api, version, corr| {
            r.fetch_add(1, Ordering::Relaxed);
            match api {
                ApiKey::Metadata => {
                    let port = if port < 0 { fp.load(Ordering::Relaxed) as i32 } else { port };
                    Reply::Raw(encode(corr, &metadata(host, port, leader, 1), version))
                }
                ApiKey::InitProducerId => Reply::Raw(encode(
                    corr,
                    &kafka_protocol::messages::InitProducerIdResponse {
                        producer_id: 1,
                        producer_epoch: 0,
                        ..Default::default()
                    },
                    version,
                )),
                _ => Reply::Nothing,
            }
        }))
        .await;
        fake_port.store(fake.port as usize, Ordering::Relaxed);
        let config = ProducerConfig::new(&fake.bootstrap())
            .linger(Duration::from_millis(0))
            .request_timeout(Duration::from_millis(300))
            .delivery_timeout(Duration::from_millis(800))
            .max_block(Duration::from_millis(800))
            .retry_backoff(Duration::from_millis(50))
            .set("reconnect.backoff.max.ms", "200")
            .unwrap();
        let producer = Producer::new(config).unwrap();
        let started = std::time::Instant::now();
        let outcome = tokio::time::timeout(Duration::from_secs(10), async {
            match producer.send(ProducerRecord::new("t").value("x")).await {
                Ok(f) => f.await.map(|_| ()).map_err(Error::from),
                Err(e) => Err(e),
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{what}: the send neither failed nor succeeded in 10 s"));
        let e = outcome.expect_err(what);
        assert!(
            matches!(&e, Error::Timeout { .. })
                || matches!(&e, Error::Delivery(d) if matches!(d.error, Error::Timeout { .. })),
            "{what}: {e:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{what}: {:?}", started.elapsed());
        // Bounded retrying: well under one request per millisecond.
        let n = requests.load(Ordering::Relaxed);
        assert!(n < 500, "{what}: {n} requests in {:?}: a hot loop", started.elapsed());
        producer.close(Duration::from_secs(1)).await.unwrap();
    }
}
