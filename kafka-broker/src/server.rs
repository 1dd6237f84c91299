//! Listeners and connections: framing, decoding and encoding happen here, on one task per
//! connection; the request itself is handled by the state task.
//!
//! Like Kafka, a connection has one request in flight inside the broker at a time: the next
//! request is read only after the previous response was written. Clients still pipeline (their
//! requests wait in the socket buffer), and responses always come back in request order.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use kafka_protocol::frame::{self, FrameDecoder};
use kafka_protocol::messages::{ApiKey, RequestBody, ResponseBody, SaslAuthenticateResponse, SaslHandshakeResponse};
use kafka_protocol::{ErrorCode, ProtocolError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use crate::cluster::{Command, Delivery, Pending, Reply};
use crate::handlers;
use crate::security::{AuthState, ListenerSecurity, SaslServer};

/// How long a client may take over the TLS handshake before its connection is dropped.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What a broker's listener task needs.
pub(crate) struct BrokerTask {
    pub node_id: i32,
    /// The listener while the broker runs.
    pub listener: Option<TcpListener>,
    /// New listeners, when a stopped broker starts again.
    pub listeners: mpsc::Receiver<TcpListener>,
    /// False while the broker is stopped: its listener is closed and its connections end.
    pub up: watch::Receiver<bool>,
    pub state: mpsc::Sender<Command>,
    pub shutdown: watch::Receiver<bool>,
    pub max_frame_size: usize,
    /// TLS and SASL of this broker's listener.
    pub security: Arc<ListenerSecurity>,
    /// Recycled buffers for large frames.
    pub pool: Arc<crate::pool::BufferPool>,
}

pub(crate) async fn accept_loop(mut task: BrokerTask) {
    let node_id = task.node_id;
    loop {
        let Some(listener) = task.listener.take() else {
            tokio::select! {
                _ = task.shutdown.changed() => return,
                next = task.listeners.recv() => match next {
                    Some(l) => task.listener = Some(l),
                    None => return,
                },
            }
            continue;
        };
        loop {
            tokio::select! {
                _ = task.shutdown.changed() => return,
                _ = task.up.changed() => {
                    if !*task.up.borrow_and_update() {
                        // Stopped: dropping the listener refuses new connections.
                        break;
                    }
                }
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let conn = Conn {
                            node_id,
                            peer: peer.ip(),
                            state: task.state.clone(),
                            shutdown: task.shutdown.clone(),
                            up: task.up.clone(),
                            max_frame_size: task.max_frame_size,
                            pool: task.pool.clone(),
                        };
                        let security = task.security.clone();
                        tokio::spawn(async move {
                            let result = match open(stream, &security).await {
                                Ok(Stream::Tcp(s)) => serve(s, conn, security.sasl.clone()).await,
                                Ok(Stream::Tls(s)) => serve(*s, conn, security.sasl.clone()).await,
                                Err(e) => Err(e),
                            };
                            if let Err(reason) = result {
                                tracing::info!(node_id, %peer, %reason, "closing connection");
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!(node_id, error = %e, "accept failed");
                        // Out of file descriptors and the like: back off instead of spinning.
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                }
            }
        }
        drop(listener);
        tracing::info!(node_id, "broker stopped");
    }
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>),
}

/// `TCP_NODELAY`, then the TLS handshake on a TLS listener.
async fn open(stream: tokio::net::TcpStream, security: &ListenerSecurity) -> Result<Stream, ConnectionEnd> {
    stream.set_nodelay(true)?;
    let Some(acceptor) = &security.tls else { return Ok(Stream::Tcp(stream)) };
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(s)) => Ok(Stream::Tls(Box::new(s))),
        Ok(Err(e)) => Err(ConnectionEnd::Closed(format!("TLS handshake failed: {e}"))),
        Err(_) => Err(ConnectionEnd::Closed("TLS handshake timed out".to_owned())),
    }
}

struct Conn {
    node_id: i32,
    peer: std::net::IpAddr,
    state: mpsc::Sender<Command>,
    shutdown: watch::Receiver<bool>,
    up: watch::Receiver<bool>,
    max_frame_size: usize,
    pool: Arc<crate::pool::BufferPool>,
}

/// Why a connection ended (anything but the client closing it cleanly).
#[derive(Debug, thiserror::Error)]
enum ConnectionEnd {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad frame: {0}")]
    Frame(ProtocolError),
    #[error("undecodable request (api {api_key} v{version}): {error}")]
    Request { api_key: i16, version: i16, error: ProtocolError },
    #[error("cannot encode the response (api {api_key} v{version}): {error}")]
    Response { api_key: i16, version: i16, error: ProtocolError },
    #[error("api {api_key} v{version} is not implemented by the bundled broker")]
    NotImplemented { api_key: i16, version: i16 },
    #[error("{0}")]
    Closed(String),
    #[error("broker shutting down")]
    Shutdown,
    #[error("broker stopped (fault injection)")]
    Stopped,
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    conn: Conn,
    sasl: Option<Arc<SaslServer>>,
) -> Result<(), ConnectionEnd> {
    let Conn { node_id, peer, state, mut shutdown, mut up, max_frame_size, pool } = conn;
    let mut auth = AuthState::Start;
    // The principal of the session being re-authenticated (KIP-368), between SaslHandshake
    // and the end of SaslAuthenticate.
    let mut reauthenticating: Option<String> = None;
    let mut decoder = FrameDecoder::new(max_frame_size);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut out = BytesMut::with_capacity(64 * 1024);
    loop {
        let frame = loop {
            // A large frame is looked for first, before the decoder reserves room for it in
            // `buf`: `buf` stays small, and a large frame always gets a buffer of its own.
            if let Some(total) = large_frame(&buf, max_frame_size) {
                match read_large_frame(&mut stream, &mut buf, total, &pool, &mut shutdown, &mut up).await? {
                    Some(f) => break f,
                    None => return Ok(()),
                }
            }
            match decoder.decode(&mut buf) {
                Ok(Some(f)) => break f,
                Ok(None) => {}
                Err(e) => return Err(ConnectionEnd::Frame(e)),
            }
            if !*up.borrow() {
                return Err(ConnectionEnd::Stopped);
            }
            tokio::select! {
                _ = shutdown.changed() => return Err(ConnectionEnd::Shutdown),
                _ = up.changed() => {}
                n = stream.read_buf(&mut buf) => {
                    if n? == 0 {
                        return Ok(());
                    }
                }
            }
        };
        let mut mute_for = std::time::Duration::ZERO;
        let prefix = frame::peek_request(&frame).map_err(ConnectionEnd::Frame)?;
        let (api_key, version, correlation_id) = (prefix.api_key, prefix.api_version, prefix.correlation_id);
        out.clear();
        if api_key == ApiKey::SaslHandshake.key() || api_key == ApiKey::SaslAuthenticate.key() {
            let (response, close) = sasl_request(frame, sasl.as_deref(), &mut auth, &mut reauthenticating)
                .map_err(|error| ConnectionEnd::Request { api_key, version, error })?;
            frame::encode_response_body(&mut out, correlation_id, &response, version)
                .map_err(|error| ConnectionEnd::Response { api_key, version, error })?;
            stream.write_all(&out).await?;
            stream.flush().await?;
            if let Some(reason) = close {
                return Err(ConnectionEnd::Closed(reason));
            }
            continue;
        }
        if let Some(server) = &sasl {
            // Kafka's SaslServerAuthenticator: before authentication only ApiVersions and
            // SaslHandshake; an expired session accepts nothing but a re-authentication.
            match &auth {
                AuthState::Authenticated { expires: Some(at), .. } if Instant::now() >= *at => {
                    server.counters.expired_sessions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Err(ConnectionEnd::Closed(
                        "SASL session expired (connections.max.reauth.ms) without re-authentication".to_owned(),
                    ));
                }
                AuthState::Authenticated { .. } if reauthenticating.is_none() => {}
                AuthState::Start if api_key == ApiKey::ApiVersions.key() => {}
                _ => {
                    server.counters.unauthenticated_requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Err(ConnectionEnd::Closed(format!(
                        "unexpected request (api {api_key}) before SASL authentication completed"
                    )));
                }
            }
        }
        match frame::decode_request(frame) {
            Ok(req) => {
                let (mut header, mut body, mut bypass_faults) = (req.header, Box::new(req.body), false);
                let delivery = loop {
                    let (reply, rx) = oneshot::channel();
                    let cmd = Command::Request(Pending {
                        broker: node_id,
                        peer: Some(peer),
                        header,
                        version,
                        body,
                        reply,
                        deadline: None,
                        bypass_faults,
                    });
                    if state.send(cmd).await.is_err() {
                        return Err(ConnectionEnd::Shutdown);
                    }
                    let delivery: Delivery = rx.await.map_err(|_| ConnectionEnd::Shutdown)?;
                    match delivery.reply {
                        Reply::Hold(hold, held_body, held_header) => {
                            // Held by an interceptor: wait for the release (a dropped release
                            // counts), then hand the same request back.
                            let _ = hold.0.await;
                            (header, body, bypass_faults) = (held_header, held_body, true);
                        }
                        _ => break delivery,
                    }
                };
                if !delivery.delay.is_zero() {
                    tokio::time::sleep(delivery.delay).await;
                }
                mute_for = delivery.mute;
                if !*up.borrow() {
                    return Err(ConnectionEnd::Stopped);
                }
                match delivery.reply {
                    Reply::Response(ResponseBody::Fetch(response)) => {
                        // Fetched batches go to the socket from the log's own buffers.
                        let chunks =
                            frame::encode_response_chunked(correlation_id, &response, version, CHUNK_THRESHOLD)
                                .map_err(|error| ConnectionEnd::Response { api_key, version, error })?;
                        write_chunks(&mut stream, chunks).await?;
                        mute(mute_for).await;
                        continue;
                    }
                    Reply::Response(response) => {
                        frame::encode_response_body(&mut out, correlation_id, &response, version)
                            .map_err(|error| ConnectionEnd::Response { api_key, version, error })?;
                    }
                    Reply::Silent => {
                        mute(delivery.mute).await;
                        continue;
                    }
                    Reply::Close(reason) => return Err(ConnectionEnd::Closed(reason)),
                    Reply::NotImplemented => return Err(ConnectionEnd::NotImplemented { api_key, version }),
                    Reply::Hold(..) => return Err(ConnectionEnd::Closed("held twice".into())),
                }
            }
            Err(error) => {
                // ApiVersions at a version this broker does not know is answered in the v0
                // layout with UNSUPPORTED_VERSION and the supported ranges, so that the client
                // can retry with a version both sides know (KIP-511). Anything else that cannot
                // be decoded closes the connection, as Kafka does.
                if api_key == ApiKey::ApiVersions.key() {
                    let response = handlers::api_versions::unsupported_version();
                    frame::encode_response_body(&mut out, correlation_id, &response, 0)
                        .map_err(|error| ConnectionEnd::Request { api_key, version, error })?;
                } else {
                    return Err(ConnectionEnd::Request { api_key, version, error });
                }
            }
        }
        stream.write_all(&out).await?;
        // TLS buffers what the socket did not take; plain TCP's flush does nothing.
        stream.flush().await?;
        mute(mute_for).await;
    }
}

/// SaslHandshake and SaslAuthenticate, answered on the connection's task (the state task never
/// sees credentials). Returns the response and, when the connection must close after it,
/// why (an unknown mechanism, a failed authentication, a request out of order).
fn sasl_request(
    frame: Bytes,
    sasl: Option<&SaslServer>,
    auth: &mut AuthState,
    reauthenticating: &mut Option<String>,
) -> Result<(ResponseBody, Option<String>), ProtocolError> {
    let request = frame::decode_request(frame)?;
    let illegal = |what: &str| Some(format!("{what}: ILLEGAL_SASL_STATE"));
    Ok(match (request.body, sasl) {
        (RequestBody::SaslHandshake(_), None) => (
            SaslHandshakeResponse { error_code: ErrorCode::IllegalSaslState.code(), ..Default::default() }.into(),
            None,
        ),
        (RequestBody::SaslAuthenticate(_), None) => (
            SaslAuthenticateResponse {
                error_code: ErrorCode::IllegalSaslState.code(),
                error_message: Some("this listener does not use SASL".to_owned()),
                ..Default::default()
            }
            .into(),
            None,
        ),
        (RequestBody::SaslHandshake(req), Some(server)) => {
            let allowed = matches!(auth, AuthState::Start)
                || matches!(auth, AuthState::Authenticated { .. }) && reauthenticating.is_none();
            if !allowed {
                let response = SaslHandshakeResponse {
                    error_code: ErrorCode::IllegalSaslState.code(),
                    mechanisms: server.enabled().to_vec(),
                    ..Default::default()
                };
                return Ok((response.into(), illegal("SaslHandshake out of order")));
            }
            match server.handshake(auth, &req.mechanism) {
                Ok(m) => {
                    if let AuthState::Authenticated { principal, .. } = auth {
                        *reauthenticating = Some(principal.clone());
                    }
                    *auth = AuthState::Handshaken(m);
                    let response =
                        SaslHandshakeResponse { mechanisms: server.enabled().to_vec(), ..Default::default() };
                    (response.into(), None)
                }
                Err(()) => {
                    let response = SaslHandshakeResponse {
                        error_code: ErrorCode::UnsupportedSaslMechanism.code(),
                        mechanisms: server.enabled().to_vec(),
                        ..Default::default()
                    };
                    (response.into(), Some(format!("SASL mechanism {:?} is not enabled", req.mechanism)))
                }
            }
        }
        (RequestBody::SaslAuthenticate(req), Some(server)) => {
            let step = server.authenticate(auth, reauthenticating.as_deref(), &req.auth_bytes);
            if let AuthState::Authenticated { principal, mechanism, .. } = auth {
                if reauthenticating.take().is_some() {
                    tracing::info!(%principal, ?mechanism, "SASL re-authentication done");
                }
            }
            let close = step.error.as_ref().map(|e| format!("SASL authentication failed: {e}"));
            let response = SaslAuthenticateResponse {
                error_code: if step.error.is_some() { ErrorCode::SaslAuthenticationFailed.code() } else { 0 },
                error_message: step.error,
                auth_bytes: Bytes::from(step.bytes),
                session_lifetime_ms: step.session_lifetime_ms,
                ..Default::default()
            };
            (response.into(), close)
        }
        (body, _) => return Err(ProtocolError::UnknownApiKey(body.api_key().key())),
    })
}

/// Frames of at least this size are read into a buffer of their own (see [`read_large_frame`]).
const LARGE_FRAME: usize = 64 * 1024;

/// The most a large frame's buffer reserves before its bytes have arrived: room for a
/// produce request of `max.message.bytes` (1 MiB by default). A frame claiming more grows
/// from there as its bytes arrive, so a bare size prefix costs at most this much address
/// space (on Linux its pages become resident only when bytes are written into them).
const EAGER_RESERVE: usize = 2 << 20;

/// Record data of at least this size is written to the socket from the buffer it is stored
/// in, not copied into the response frame.
const CHUNK_THRESHOLD: usize = 16 * 1024;

/// The total size (with its prefix) of the frame starting `buf` when it is a large one not yet
/// complete. An invalid size (negative, above `max`) is left to the frame decoder, which
/// refuses it.
fn large_frame(buf: &BytesMut, max: usize) -> Option<usize> {
    let prefix: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    let size = frame::check_frame_size(prefix, max).ok()?;
    let total = size.checked_add(4)?;
    (size >= LARGE_FRAME && buf.len() < total).then_some(total)
}

/// Reads the rest of a large frame (of `total` bytes with its prefix, its first bytes in `buf`)
/// into a buffer that holds exactly that frame, and returns the frame without its prefix;
/// `None` when the client closed the connection first. [`large_frame`] checked the size
/// against the maximum.
///
/// Two reasons: the buffer is sized once, instead of growing (and being copied) step by step
/// while a 1 MiB produce request arrives; and the frame owns its allocation, so that the log
/// can keep a produced batch where it is, patching its offsets in place, instead of copying it.
/// The buffer is a recycled one from `pool` when it has one of a fitting size (memory already
/// resident, see [`crate::pool`]).
async fn read_large_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    total: usize,
    pool: &crate::pool::BufferPool,
    shutdown: &mut watch::Receiver<bool>,
    up: &mut watch::Receiver<bool>,
) -> Result<Option<Bytes>, ConnectionEnd> {
    use bytes::{Buf, BufMut};
    let mut own = pool.take(total).unwrap_or_else(|| BytesMut::with_capacity(total.min(EAGER_RESERVE).max(buf.len())));
    own.extend_from_slice(buf);
    buf.clear();
    while own.len() < total {
        let want = total - own.len();
        if own.capacity() == own.len() {
            // Past the eager reservation: grow with what has arrived, as the decoder does.
            own.reserve(want.min(own.len()));
        }
        let mut room = (&mut own).limit(want);
        tokio::select! {
            _ = shutdown.changed() => return Err(ConnectionEnd::Shutdown),
            _ = up.changed() => {
                if !*up.borrow_and_update() {
                    return Err(ConnectionEnd::Stopped);
                }
            }
            n = stream.read_buf(&mut room) => {
                if n? == 0 {
                    return Ok(None);
                }
            }
        }
    }
    own.advance(4);
    Ok(Some(own.freeze()))
}

/// Writes a response's chunks with vectored writes.
async fn write_chunks<S: AsyncWrite + Unpin>(stream: &mut S, chunks: Vec<Bytes>) -> std::io::Result<()> {
    /// At most this many buffers per write (Linux's IOV_MAX is 1024).
    const MAX_IOV: usize = 64;
    let mut queue: std::collections::VecDeque<Bytes> = chunks.into_iter().filter(|c| !c.is_empty()).collect();
    while !queue.is_empty() {
        let n = {
            let slices: Vec<std::io::IoSlice<'_>> =
                queue.iter().take(MAX_IOV).map(|b| std::io::IoSlice::new(b)).collect();
            stream.write_vectored(&slices).await?
        };
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::WriteZero, "socket closed"));
        }
        frame::consume_chunks(&mut queue, n);
    }
    // TLS buffers what the socket did not take; plain TCP's flush does nothing.
    stream.flush().await
}

/// A throttled client's connection reads nothing for a while (KIP-219).
async fn mute(d: std::time::Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn only_complete_valid_large_frames_take_the_own_buffer_path() {
        let frame = |size: i32, have: usize| {
            let mut b = BytesMut::from(&size.to_be_bytes()[..]);
            b.resize(have.max(4), 0);
            b
        };
        let big = LARGE_FRAME as i32;
        assert_eq!(large_frame(&frame(big, 4), 1 << 20), Some(LARGE_FRAME + 4));
        assert_eq!(large_frame(&frame(big, LARGE_FRAME + 4), 1 << 20), None, "already complete");
        assert_eq!(large_frame(&frame(big - 1, 4), 1 << 20), None, "small: the decoder's");
        assert_eq!(large_frame(&frame(big, 4), LARGE_FRAME - 1), None, "too large: the decoder refuses it");
        assert_eq!(large_frame(&frame(-5, 4), 1 << 20), None, "negative: the decoder refuses it");
        assert_eq!(large_frame(&BytesMut::from(&[0u8, 1][..]), 1 << 20), None);
    }

    #[tokio::test]
    async fn a_large_frame_arriving_in_pieces_is_read_into_a_buffer_it_owns_alone() {
        let size = 300_000usize;
        let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let (mut client, mut server) = tokio::io::duplex(8 * 1024);
        let sent = body.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&(size as i32).to_be_bytes()).await.unwrap();
            for piece in sent.chunks(7_777) {
                client.write_all(piece).await.unwrap();
            }
            // The next frame's first bytes must stay in the stream.
            client.write_all(&[0, 0, 0, 9]).await.unwrap();
            client
        });
        let mut buf = BytesMut::new();
        while buf.len() < 100 {
            server.read_buf(&mut buf).await.unwrap();
        }
        let total = large_frame(&buf, 1 << 20).unwrap();
        let (_stop_tx, mut stop) = watch::channel(false);
        let (_up_tx, mut up) = watch::channel(true);
        let frame =
            read_large_frame(&mut server, &mut buf, total, &crate::pool::BufferPool::default(), &mut stop, &mut up)
                .await
                .unwrap()
                .unwrap();
        assert_eq!(&frame[..], &body[..]);
        assert!(buf.is_empty());
        assert!(frame.try_into_mut().is_ok(), "the frame shares its buffer");
        let _client = writer.await.unwrap();
        let mut next = [0u8; 4];
        server.read_exact(&mut next).await.unwrap();
        assert_eq!(next, [0, 0, 0, 9]);
    }

    #[tokio::test]
    async fn a_large_frame_is_read_into_a_recycled_buffer() {
        let pool = crate::pool::BufferPool::default();
        let size = 200_000usize;
        // The buffer of a dropped batch: a frame's buffer, the batch a slice of it.
        let mut old = BytesMut::with_capacity(size + 4 + 1000);
        old.resize(size + 4, 0);
        let base = old.as_ptr() as usize;
        let batch = old.freeze().slice(100..);
        pool.give(batch);
        let body: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        let sent = body.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&(size as i32).to_be_bytes()).await.unwrap();
            client.write_all(&sent).await.unwrap();
            client
        });
        let mut buf = BytesMut::new();
        while buf.len() < 4 {
            server.read_buf(&mut buf).await.unwrap();
        }
        let total = large_frame(&buf, 1 << 20).unwrap();
        let (_stop_tx, mut stop) = watch::channel(false);
        let (_up_tx, mut up) = watch::channel(true);
        let frame = read_large_frame(&mut server, &mut buf, total, &pool, &mut stop, &mut up).await.unwrap().unwrap();
        assert_eq!(&frame[..], &body[..]);
        assert_eq!(frame.as_ptr() as usize, base + 4, "read into the recycled buffer");
        assert_eq!(pool.stats().reused, 1);
        let _client = writer.await.unwrap();
    }

    /// The whole path: produce frames read into their own buffers, batches stored in them,
    /// size retention dropping them, the pool handing them to the next frames; and what is
    /// read back is what was produced, never bytes of a batch written later.
    #[tokio::test]
    async fn retention_recycles_produce_buffers_and_the_data_stays_intact() {
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        use kafka_protocol::messages::{FetchRequest, ProduceRequest};
        use kafka_protocol::records::{BatchOptions, ProducerState, RecordBatchBuilder, RecordSetEntry, RecordSetIter};
        use kafka_protocol::{frame, Request};

        async fn call<R: Request>(s: &mut tokio::net::TcpStream, corr: i32, req: &R, v: i16) -> R::Response {
            let mut out = BytesMut::new();
            frame::encode_request(&mut out, corr, Some("pool-test"), req, v).unwrap();
            s.write_all(&out).await.unwrap();
            let mut dec = frame::FrameDecoder::default();
            let mut buf = BytesMut::new();
            loop {
                if let Some(f) = dec.decode(&mut buf).unwrap() {
                    return frame::decode_response::<R::Response>(f, v).unwrap().1;
                }
                assert_ne!(s.read_buf(&mut buf).await.unwrap(), 0, "connection closed");
            }
        }

        let cluster = crate::Cluster::builder().brokers(1).start().await.unwrap();
        // About 100 KB a batch, one batch a segment, four to six batches kept.
        cluster
            .create_topic_with_configs("t", 1, 1, &[("retention.bytes", "400000"), ("segment.bytes", "200000")])
            .await
            .unwrap();
        let mut s = tokio::net::TcpStream::connect(cluster.broker_addrs()[0].1).await.unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        for i in 0..30u8 {
            let value = vec![i; 1000];
            let mut b = RecordBatchBuilder::new(BatchOptions::default());
            for _ in 0..100 {
                b.append(now, None, Some(&value), &[]).unwrap();
            }
            let req = ProduceRequest {
                acks: 1,
                timeout_ms: 5000,
                topic_data: vec![TopicProduceData {
                    name: "t".into(),
                    partition_data: vec![PartitionProduceData {
                        index: 0,
                        records: Some(b.seal(ProducerState::NONE).unwrap()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            };
            let resp = call(&mut s, i32::from(i), &req, 9).await;
            let p = &resp.responses[0].partition_responses[0];
            assert_eq!((p.error_code, p.base_offset), (0, i64::from(i) * 100));
        }
        let stats = cluster.run(|state| state.pool.stats()).await.unwrap();
        assert!(stats.reused >= 20, "{stats:?}");

        let fetch = FetchRequest {
            replica_id: -1,
            max_wait_ms: 0,
            max_bytes: 1 << 24,
            session_epoch: -1,
            topics: vec![kafka_protocol::messages::fetch_request::FetchTopic {
                topic: "t".into(),
                partitions: vec![kafka_protocol::messages::fetch_request::FetchPartition {
                    partition: 0,
                    current_leader_epoch: -1,
                    fetch_offset: 0,
                    partition_max_bytes: 1 << 24,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let resp = call(&mut s, 100, &fetch, 11).await;
        let part = &resp.responses[0].partitions[0];
        assert_eq!(part.error_code, kafka_protocol::ErrorCode::OffsetOutOfRange.code(), "the start was deleted");
        let mut fetch = fetch;
        fetch.topics[0].partitions[0].fetch_offset = part.log_start_offset;
        let mut offset = part.log_start_offset;
        assert!(offset >= 2000, "retention kept {offset}..3000");
        while offset < 3000 {
            fetch.topics[0].partitions[0].fetch_offset = offset;
            let resp = call(&mut s, 101, &fetch, 11).await;
            let data = resp.responses[0].partitions[0].records.clone().unwrap();
            for entry in RecordSetIter::new(data) {
                let RecordSetEntry::Batch(batch) = entry.unwrap() else { panic!("legacy") };
                batch.verify_crc().unwrap();
                let want = (batch.header().base_offset / 100) as u8;
                for record in batch.records(1 << 24).unwrap().iter() {
                    assert!(record.unwrap().value().unwrap().iter().all(|&b| b == want), "batch of {want}");
                }
                offset = batch.header().base_offset + i64::from(batch.header().last_offset_delta) + 1;
            }
        }
        cluster.shutdown().await;
    }

    #[tokio::test]
    async fn a_client_closing_mid_frame_ends_the_read() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(&(1_000_000i32).to_be_bytes()).await.unwrap();
        client.write_all(&[1; 100]).await.unwrap();
        drop(client);
        let mut buf = BytesMut::new();
        server.read_buf(&mut buf).await.unwrap();
        let (_stop_tx, mut stop) = watch::channel(false);
        let (_up_tx, mut up) = watch::channel(true);
        let total = large_frame(&buf, 1 << 20).unwrap();
        assert!(read_large_frame(
            &mut server,
            &mut buf,
            total,
            &crate::pool::BufferPool::default(),
            &mut stop,
            &mut up
        )
        .await
        .unwrap()
        .is_none());
    }
}
