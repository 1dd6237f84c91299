//! Raw-protocol helpers shared by the TCP-level tests: requests encoded by kafka-protocol,
//! sent over a real socket to the bundled broker.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_broker::Cluster;
use kafka_protocol::frame::{self, FrameDecoder};
use kafka_protocol::records::{BatchOptions, ProducerState, RecordBatchBuilder};
use kafka_protocol::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Shows the broker's logs (connection close reasons) in a failing test's output.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("info").try_init();
}

/// A connection to broker `node` (1-based node id).
pub async fn connect_to(cluster: &Cluster, node: i32) -> TcpStream {
    init_logs();
    let addr = cluster.broker_addrs().into_iter().find(|(id, _)| *id == node).expect("broker").1;
    TcpStream::connect(addr).await.unwrap()
}

/// A connection to the first broker.
pub async fn connect(cluster: &Cluster) -> TcpStream {
    connect_to(cluster, 1).await
}

pub async fn read_frame(stream: &mut TcpStream) -> Option<Bytes> {
    let mut dec = FrameDecoder::default();
    let mut buf = BytesMut::new();
    loop {
        if let Some(f) = dec.decode(&mut buf).unwrap() {
            return Some(f);
        }
        if stream.read_buf(&mut buf).await.unwrap_or(0) == 0 {
            return None;
        }
    }
}

pub async fn send<R: Request>(stream: &mut TcpStream, correlation_id: i32, req: &R, version: i16) {
    let mut out = BytesMut::new();
    frame::encode_request(&mut out, correlation_id, Some("tcp-test"), req, version).unwrap();
    stream.write_all(&out).await.unwrap();
}

pub async fn recv<R: Request>(stream: &mut TcpStream, correlation_id: i32, version: i16) -> R::Response {
    let frame = read_frame(stream).await.expect("a response");
    let (corr, resp) = frame::decode_response::<R::Response>(frame, version).unwrap();
    assert_eq!(corr, correlation_id);
    resp
}

pub async fn call<R: Request>(stream: &mut TcpStream, correlation_id: i32, req: &R, version: i16) -> R::Response {
    send(stream, correlation_id, req, version).await;
    recv::<R>(stream, correlation_id, version).await
}

/// True when the broker closed the connection (read returns 0 or an error).
pub async fn closed(stream: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(tokio::time::timeout(Duration::from_secs(5), stream.read(&mut b)).await, Ok(Ok(0)) | Ok(Err(_)))
}

/// A sealed batch of `values` (keyless unless `keys`), timestamps from `timestamp`.
pub fn batch_with(values: &[&[u8]], keys: Option<&[&[u8]]>, timestamp: i64, producer: ProducerState) -> Bytes {
    let mut b = RecordBatchBuilder::new(BatchOptions::default());
    for (i, v) in values.iter().enumerate() {
        let key = keys.map(|k| k[i]);
        b.append(timestamp + i as i64, key, Some(v), &[]).unwrap();
    }
    b.seal(producer).unwrap()
}

/// A sealed, non-idempotent batch of `values`, timestamped now.
pub fn batch(values: &[&[u8]]) -> Bytes {
    batch_with(values, None, now_ms(), ProducerState::NONE)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}
