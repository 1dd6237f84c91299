//! One connection to one broker: framing, correlation ids, many requests in flight, request
//! timeouts, and the ApiVersions handshake.
//!
//! A connection is two tasks over the two halves of a byte stream:
//! - the **writer** takes encoded requests from an unbounded channel (callers bound what they
//!   put in flight), records each one that expects a response in the in-flight queue, then
//!   writes it with vectored writes, so that sealed record batches go to the socket uncopied;
//! - the **reader** splits response frames off the stream (size checked before allocating)
//!   and completes the request at the head of the in-flight queue, after checking that the
//!   correlation id matches: Kafka answers the requests of a connection in order, so a
//!   mismatch means the stream cannot be trusted. The reader also enforces
//!   `request.timeout.ms`: when the oldest request's deadline passes, that request fails with
//!   [`Error::RequestTimeout`] and the connection is closed (the responses behind it are stuck
//!   too), failing every other request in flight with [`Error::Disconnected`].
//!
//! The stream is a boxed [`Transport`], so TLS and SASL slot in at [`connect`] without touching
//! the tasks.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::frame::{self, FrameDecoder};
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::{ApiKey, ErrorCode, ProtocolError, Request, VersionRange};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

use crate::config::ClientConfig;
use crate::error::{Error, Result};
use crate::security::sasl::{self, SaslContext, SaslIo, SaslMechanism};

/// A byte stream to a broker: plain TCP now, TLS later.
pub trait Transport: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Transport for T {}

/// Encoded requests of this size or more are referenced, not copied, into the write.
const CHUNK_THRESHOLD: usize = 4096;
/// The most slices handed to one vectored write.
const MAX_IOV: usize = 64;
/// The name and version sent in ApiVersions v3+ (KIP-511).
const SOFTWARE_NAME: &str = "kafka-sdk-rust";
const SOFTWARE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where a broker is: its node id (negative for bootstrap addresses) and `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BrokerAddress {
    /// The node id, or a negative number for a bootstrap server.
    pub node_id: i32,
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl std::fmt::Display for BrokerAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.node_id >= 0 {
            write!(f, "node {} ({}:{})", self.node_id, self.host, self.port)
        } else {
            write!(f, "bootstrap {}:{}", self.host, self.port)
        }
    }
}

/// The API versions a broker advertised.
#[derive(Debug, Clone, Default)]
pub struct ApiVersionTable {
    ranges: Vec<(i16, VersionRange)>,
}

impl ApiVersionTable {
    fn from_response(resp: &ApiVersionsResponse) -> Self {
        let mut ranges: Vec<(i16, VersionRange)> =
            resp.api_keys.iter().map(|k| (k.api_key, VersionRange::new(k.min_version, k.max_version))).collect();
        ranges.sort_by_key(|(k, _)| *k);
        ApiVersionTable { ranges }
    }

    /// The broker's range for an API, if it supports it at all.
    pub fn broker_range(&self, api: ApiKey) -> Option<VersionRange> {
        self.ranges.binary_search_by_key(&api.key(), |(k, _)| *k).ok().and_then(|i| self.ranges.get(i)).map(|r| r.1)
    }

    /// The highest version both sides support, at least `min` (a version the caller needs
    /// for a feature). Our side stops at the highest stable version upstream.
    pub fn pick(&self, api: ApiKey, min: i16) -> Option<i16> {
        let ours = VersionRange::new(api.valid_versions().min.max(min), api.max_stable_version());
        let common = ours.intersect(&self.broker_range(api)?);
        (!common.is_empty()).then_some(common.max)
    }
}

/// A request waiting for its response.
struct Pending {
    correlation_id: i32,
    api: ApiKey,
    deadline: Instant,
    timeout: Duration,
    reply: oneshot::Sender<Result<Bytes>>,
}

/// A request on its way to the writer.
struct Outgoing {
    chunks: Vec<Bytes>,
    /// `None` for requests without a response (Produce with acks=0): the reply then
    /// completes once the bytes are written.
    pending: Option<Pending>,
    written: Option<oneshot::Sender<Result<Bytes>>>,
}

static NEXT_CONNECTION_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

struct Shared {
    id: u64,
    address: BrokerAddress,
    label: String,
    in_flight: Mutex<VecDeque<Pending>>,
    /// Why the connection closed; set once.
    closed: Mutex<Option<Error>>,
    is_closed: AtomicBool,
    /// Wakes the reader when the in-flight queue or the closed flag changes.
    wake_reader: Notify,
    /// Wakes the writer when the connection closes.
    wake_writer: Notify,
}

impl Shared {
    /// Closes the connection (once): fails every request in flight with `error`. A protocol
    /// error becomes a disconnection for them: the stream could not be trusted, but the
    /// requests themselves were fine, and a retry on a new connection may succeed (the
    /// caller whose response failed to decode gets the protocol error itself).
    fn close(&self, error: Error) {
        let error = match error {
            Error::Protocol { broker, source } => {
                Error::Disconnected { broker, reason: format!("closed after a protocol error: {source}") }
            }
            other => other,
        };
        let drained: Vec<Pending> = {
            let mut closed = self.closed.lock().unwrap_or_else(|e| e.into_inner());
            if closed.is_some() {
                return;
            }
            *closed = Some(error.clone());
            self.is_closed.store(true, Ordering::Release);
            self.in_flight.lock().unwrap_or_else(|e| e.into_inner()).drain(..).collect()
        };
        tracing::debug!(broker = %self.label, %error, in_flight = drained.len(), "connection closed");
        for p in drained {
            let _ = p.reply.send(Err(error.clone()));
        }
        self.wake_reader.notify_one();
        self.wake_writer.notify_waiters();
    }

    /// Completes once the connection is closed.
    async fn closed(&self) {
        loop {
            let notified = self.wake_writer.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_closed.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    fn close_reason(&self) -> Error {
        self.closed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| Error::Disconnected { broker: self.label.clone(), reason: "closed".to_owned() })
    }

    fn disconnected(&self, reason: impl Into<String>) -> Error {
        Error::Disconnected { broker: self.label.clone(), reason: reason.into() }
    }
}

/// An established connection to a broker. Cheap to clone; closes when the last clone is
/// dropped, or at the first transport, protocol or timeout error.
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Outgoing>,
    versions: Arc<ApiVersionTable>,
    correlation: Arc<AtomicI32>,
    client_id: Arc<str>,
    request_timeout: Duration,
    reauthentications: Arc<std::sync::atomic::AtomicU64>,
    _guard: Arc<CloseOnDrop>,
}

struct CloseOnDrop(Arc<Shared>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close(self.0.disconnected("connection dropped by the client"));
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("broker", &self.shared.label).field("closed", &self.is_closed()).finish()
    }
}

/// Opens a connection, all within `socket.connection.setup.timeout.ms`: TCP (with
/// `TCP_NODELAY`), the TLS handshake (`SSL`, `SASL_SSL`), ApiVersions, then SaslHandshake and
/// SaslAuthenticate (`SASL_PLAINTEXT`, `SASL_SSL`). With a session lifetime from the broker
/// (KIP-368) the connection re-authenticates by itself before the session expires.
///
/// # Errors
/// [`Error::Connect`] (TCP, timeout), [`Error::Tls`] (handshake, with the verification
/// reason), [`Error::SaslMechanismNotEnabled`], [`Error::Authentication`] (the broker's
/// message), [`Error::Config`] (unusable TLS files), [`Error::Protocol`].
pub async fn connect(address: &BrokerAddress, config: &ClientConfig) -> Result<Connection> {
    let label = address.to_string();
    let security = &config.security;
    let setup = async {
        let tcp = TcpStream::connect((address.host.as_str(), address.port))
            .await
            .map_err(|e| Error::Connect { broker: label.clone(), reason: e.to_string() })?;
        tcp.set_nodelay(true).map_err(|e| Error::Connect { broker: label.clone(), reason: e.to_string() })?;
        let mut stream: Box<dyn Transport> = if security.protocol.uses_tls() {
            Box::new(crate::security::tls::handshake(tcp, &address.host, &security.tls, &label).await?)
        } else {
            Box::new(tcp)
        };
        let versions = handshake(&mut stream, &label, config).await?;
        let mut next_correlation = 2;
        let sasl = if security.protocol.uses_sasl() {
            let mechanism = security.sasl.resolve()?;
            let context = SaslContext { host: address.host.clone(), port: address.port, broker: label.clone() };
            let started = Instant::now();
            let mut io = SetupIo { stream: &mut stream, label: &label, config, correlation: &mut next_correlation };
            let lifetime = sasl::authenticate(&mut io, mechanism.as_ref(), &context, &versions).await?;
            Some(Reauth {
                mechanism,
                context,
                next: lifetime.map(|l| sasl::reauth_at(started, l)),
                count: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            })
        } else {
            None
        };
        Ok::<_, Error>((stream, versions, sasl, next_correlation))
    };
    let (stream, versions, sasl, next_correlation) =
        match tokio::time::timeout(config.connection_setup_timeout, setup).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(Error::Connect {
                    broker: label,
                    reason: format!(
                        "no connection within socket.connection.setup.timeout.ms ({} ms)",
                        config.connection_setup_timeout.as_millis()
                    ),
                })
            }
        };
    Ok(Connection::start(address.clone(), label, stream, versions, config, sasl, next_correlation))
}

/// What a SASL connection needs to re-authenticate (KIP-368).
struct Reauth {
    mechanism: Arc<dyn SaslMechanism>,
    context: SaslContext,
    /// When to re-authenticate; `None` when the broker set no session lifetime.
    next: Option<Instant>,
    /// Re-authentications done on this connection.
    count: Arc<std::sync::atomic::AtomicU64>,
}

/// SASL requests on the raw stream during connection setup (nothing else is in flight).
struct SetupIo<'a> {
    stream: &'a mut Box<dyn Transport>,
    label: &'a str,
    config: &'a ClientConfig,
    correlation: &'a mut i32,
}

impl SetupIo<'_> {
    async fn round_trip<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response> {
        let id = *self.correlation;
        *self.correlation += 1;
        let mut out = BytesMut::new();
        frame::encode_request(&mut out, id, Some(&self.config.client_id), request, version)
            .map_err(|source| Error::Protocol { broker: self.label.to_owned(), source })?;
        self.stream
            .write_all(&out)
            .await
            .map_err(|e| Error::Connect { broker: self.label.to_owned(), reason: e.to_string() })?;
        self.stream
            .flush()
            .await
            .map_err(|e| Error::Connect { broker: self.label.to_owned(), reason: e.to_string() })?;
        let frame = read_one_frame(self.stream, self.label, self.config.max_response_size).await?;
        let (got, response) = frame::decode_response::<R::Response>(frame, version)
            .map_err(|source| Error::Protocol { broker: self.label.to_owned(), source })?;
        if got != id {
            return Err(Error::Connect {
                broker: self.label.to_owned(),
                reason: format!("response correlation id {got} during SASL, expected {id}"),
            });
        }
        Ok(response)
    }
}

impl SaslIo for SetupIo<'_> {
    fn handshake(
        &mut self,
        request: SaslHandshakeRequest,
        version: i16,
    ) -> sasl::BoxFuture<'_, Result<SaslHandshakeResponse>> {
        Box::pin(async move { self.round_trip(&request, version).await })
    }

    fn authenticate(
        &mut self,
        request: SaslAuthenticateRequest,
        version: i16,
    ) -> sasl::BoxFuture<'_, Result<SaslAuthenticateResponse>> {
        Box::pin(async move { self.round_trip(&request, version).await })
    }
}

/// Sends ApiVersions at the newest version we know; a broker that does not know it answers
/// UNSUPPORTED_VERSION in the v0 layout, and we ask again with v0 (or the highest version it
/// listed for ApiVersions).
async fn handshake(stream: &mut Box<dyn Transport>, label: &str, config: &ClientConfig) -> Result<ApiVersionTable> {
    let mut version = ApiKey::ApiVersions.max_stable_version();
    for attempt in 0..2 {
        let request = ApiVersionsRequest {
            client_software_name: SOFTWARE_NAME.to_owned(),
            client_software_version: SOFTWARE_VERSION.to_owned(),
            ..Default::default()
        };
        let mut out = BytesMut::new();
        frame::encode_request(&mut out, attempt, Some(&config.client_id), &request, version)
            .map_err(|source| Error::Protocol { broker: label.to_owned(), source })?;
        stream.write_all(&out).await.map_err(|e| Error::Connect { broker: label.to_owned(), reason: e.to_string() })?;
        // TLS keeps what the socket did not take until a flush.
        stream.flush().await.map_err(|e| Error::Connect { broker: label.to_owned(), reason: e.to_string() })?;
        let frame = read_one_frame(stream, label, config.max_response_size).await?;
        // The response header is v0 at every version; an UNSUPPORTED_VERSION answer uses the
        // v0 body whatever version was asked, so fall back to reading it as v0.
        let response = match frame::decode_response::<ApiVersionsResponse>(frame.clone(), version) {
            Ok((_, r)) => r,
            Err(_) => frame::decode_response::<ApiVersionsResponse>(frame, 0)
                .map(|(_, r)| r)
                .map_err(|source| Error::Protocol { broker: label.to_owned(), source })?,
        };
        let code = ErrorCode::from_code(response.error_code);
        if code == ErrorCode::UnsupportedVersion && attempt == 0 {
            let table = ApiVersionTable::from_response(&response);
            version = table.broker_range(ApiKey::ApiVersions).map(|r| r.max.min(version)).unwrap_or(0).max(0);
            if version == ApiKey::ApiVersions.max_stable_version() {
                version = 0;
            }
            continue;
        }
        if let Some(code) = code.err() {
            return Err(Error::Connect {
                broker: label.to_owned(),
                reason: format!("ApiVersions failed: {}", code.name()),
            });
        }
        return Ok(ApiVersionTable::from_response(&response));
    }
    Err(Error::Connect { broker: label.to_owned(), reason: "ApiVersions: no version agreed".to_owned() })
}

async fn read_one_frame(stream: &mut Box<dyn Transport>, label: &str, max: usize) -> Result<Bytes> {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).await.map_err(|e| Error::Connect {
        broker: label.to_owned(),
        reason: format!("connection closed during the handshake ({e}); is this a Kafka listener?"),
    })?;
    let size =
        frame::check_frame_size(prefix, max).map_err(|source| Error::Protocol { broker: label.to_owned(), source })?;
    let mut body = BytesMut::zeroed(size);
    stream
        .read_exact(&mut body)
        .await
        .map_err(|e| Error::Connect { broker: label.to_owned(), reason: e.to_string() })?;
    Ok(body.freeze())
}

impl Connection {
    fn start(
        address: BrokerAddress,
        label: String,
        stream: Box<dyn Transport>,
        versions: ApiVersionTable,
        config: &ClientConfig,
        sasl: Option<Reauth>,
        next_correlation: i32,
    ) -> Connection {
        let shared = Arc::new(Shared {
            id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
            address,
            label,
            in_flight: Mutex::new(VecDeque::new()),
            closed: Mutex::new(None),
            is_closed: AtomicBool::new(false),
            wake_reader: Notify::new(),
            wake_writer: Notify::new(),
        });
        let (read, write) = tokio::io::split(stream);
        let (tx, rx) = mpsc::unbounded_channel();
        let versions = Arc::new(versions);
        let correlation = Arc::new(AtomicI32::new(next_correlation));
        let client_id: Arc<str> = Arc::from(config.client_id.as_str());
        let reauthentications = sasl.as_ref().map(|r| r.count.clone()).unwrap_or_default();
        let session = Session {
            reauth: sasl,
            versions: versions.clone(),
            correlation: correlation.clone(),
            client_id: client_id.clone(),
            timeout: config.request_timeout,
        };
        tokio::spawn(writer(shared.clone(), write, rx, session));
        tokio::spawn(reader(shared.clone(), read, FrameDecoder::new(config.max_response_size)));
        Connection {
            _guard: Arc::new(CloseOnDrop(shared.clone())),
            shared,
            tx,
            versions,
            correlation,
            client_id,
            request_timeout: config.request_timeout,
            reauthentications,
        }
    }

    /// A number unique to this connection in the process (a reconnect gets a new one).
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The broker this connection talks to.
    pub fn address(&self) -> &BrokerAddress {
        &self.shared.address
    }

    /// The versions the broker advertised.
    pub fn versions(&self) -> &ApiVersionTable {
        &self.versions
    }

    /// The version to use for `api`: the highest both sides support, at least `min`.
    pub fn version(&self, api: ApiKey, min: i16) -> Result<i16> {
        self.versions.pick(api, min).ok_or_else(|| Error::UnsupportedVersion {
            api,
            broker: self.shared.label.clone(),
            detail: format!(
                "broker {}, client {}..={}",
                self.versions.broker_range(api).map(|r| r.to_string()).unwrap_or_else(|| "none".to_owned()),
                api.valid_versions().min.max(min),
                api.max_stable_version()
            ),
        })
    }

    /// How many times this connection has re-authenticated (SASL, KIP-368).
    pub fn reauthentications(&self) -> u64 {
        self.reauthentications.load(Ordering::Relaxed)
    }

    /// Whether the connection has closed (it is then useless; open a new one).
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed.load(Ordering::Acquire)
    }

    /// Closes the connection, failing requests in flight.
    pub fn close(&self) {
        self.shared.close(self.shared.disconnected("closed by the client"));
    }

    /// Sends a request at the version chosen by [`Self::version`] with `min` and waits for
    /// the response.
    pub async fn request<R: Request>(&self, request: &R) -> Result<R::Response> {
        let version = self.version(R::API_KEY, 0)?;
        self.request_at(request, version).await
    }

    /// Sends a request at `version` and waits for its response.
    pub async fn request_at<R: Request>(&self, request: &R, version: i16) -> Result<R::Response> {
        let frame = self.send(request, version, true, self.request_timeout)?.await?;
        frame::decode_response::<R::Response>(frame, version)
            .map(|(_, r)| r)
            .map_err(|source| self.protocol_error(source))
    }

    /// Enqueues a request now (so requests keep the order of calls) and returns a future of
    /// the raw response frame (header included). With `expect_response` false (Produce with
    /// acks=0) the future completes with an empty frame once the request is written.
    pub fn send<R: Request>(
        &self,
        request: &R,
        version: i16,
        expect_response: bool,
        timeout: Duration,
    ) -> Result<impl std::future::Future<Output = Result<Bytes>> + Send + 'static> {
        let correlation_id = self.correlation.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        let chunks =
            frame::encode_request_chunked(correlation_id, Some(&self.client_id), request, version, CHUNK_THRESHOLD)
                .map_err(|source| Error::Protocol { broker: self.shared.label.clone(), source })?;
        let (reply, rx) = oneshot::channel();
        let outgoing = if expect_response {
            Outgoing {
                chunks,
                pending: Some(Pending {
                    correlation_id,
                    api: R::API_KEY,
                    deadline: Instant::now() + timeout,
                    timeout,
                    reply,
                }),
                written: None,
            }
        } else {
            Outgoing { chunks, pending: None, written: Some(reply) }
        };
        if self.is_closed() || self.tx.send(outgoing).is_err() {
            return Err(self.shared.close_reason());
        }
        let shared = self.shared.clone();
        Ok(async move {
            match rx.await {
                Ok(r) => r,
                Err(_) => Err(shared.close_reason()),
            }
        })
    }

    /// Wraps a codec error, closing the connection: a response that cannot be decoded means
    /// the stream cannot be trusted.
    pub fn protocol_error(&self, source: ProtocolError) -> Error {
        let e = Error::Protocol { broker: self.shared.label.clone(), source };
        self.shared.close(e.clone());
        e
    }
}

/// What the writer needs to re-authenticate.
struct Session {
    reauth: Option<Reauth>,
    versions: Arc<ApiVersionTable>,
    correlation: Arc<AtomicI32>,
    client_id: Arc<str>,
    timeout: Duration,
}

enum WriterStep {
    Send(Option<Outgoing>),
    Reauthenticate,
}

async fn writer(
    shared: Arc<Shared>,
    mut write: tokio::io::WriteHalf<Box<dyn Transport>>,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    mut session: Session,
) {
    let mut queue: VecDeque<Bytes> = VecDeque::new();
    let mut written_acks: Vec<oneshot::Sender<Result<Bytes>>> = Vec::new();
    loop {
        let reauth_at = session.reauth.as_ref().and_then(|r| r.next);
        let step = tokio::select! {
            m = rx.recv() => WriterStep::Send(m),
            _ = shared.closed() => WriterStep::Send(None),
            _ = async {
                match reauth_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => WriterStep::Reauthenticate,
        };
        let first = match step {
            WriterStep::Send(m) => m,
            WriterStep::Reauthenticate => {
                // KIP-368 on the running connection: everything written so far stays in
                // flight and is answered first (the broker answers in order); requests
                // queued meanwhile wait in the channel until the exchange is over, because
                // the broker reads nothing but SASL requests during it.
                if let Err(e) = reauthenticate(&shared, &mut write, &mut session).await {
                    tracing::warn!(broker = %shared.label, error = %e, "re-authentication failed; closing the connection");
                    shared.close(e);
                    break;
                }
                continue;
            }
        };
        let Some(first) = first else { break };
        if shared.is_closed.load(Ordering::Acquire) {
            fail(&shared, first);
            break;
        }
        // Coalesce what is already queued into one vectored write.
        let mut next = Some(first);
        while let Some(out) = next.take() {
            if let Some(p) = out.pending {
                shared.in_flight.lock().unwrap_or_else(|e| e.into_inner()).push_back(p);
            }
            if let Some(w) = out.written {
                written_acks.push(w);
            }
            queue.extend(out.chunks);
            if queue.len() < 1024 {
                next = rx.try_recv().ok();
            }
        }
        shared.wake_reader.notify_one();
        let result = tokio::select! {
            r = write_chunks(&mut write, &mut queue) => r,
            _ = shared.closed() => Err(std::io::Error::other("connection closed")),
        };
        if let Err(e) = result {
            shared.close(shared.disconnected(format!("write failed: {e}")));
            for w in written_acks.drain(..) {
                let _ = w.send(Err(shared.close_reason()));
            }
            break;
        }
        for w in written_acks.drain(..) {
            let _ = w.send(Ok(Bytes::new()));
        }
    }
    // Fail whatever is still queued.
    rx.close();
    while let Ok(out) = rx.try_recv() {
        fail(&shared, out);
    }
    let _ = write.shutdown().await;
}

async fn reauthenticate(
    shared: &Arc<Shared>,
    write: &mut tokio::io::WriteHalf<Box<dyn Transport>>,
    session: &mut Session,
) -> Result<()> {
    let Some(reauth) = session.reauth.as_mut() else { return Ok(()) };
    let started = Instant::now();
    let mut io = PipelineIo {
        shared,
        write,
        correlation: &session.correlation,
        client_id: &session.client_id,
        timeout: session.timeout,
    };
    let lifetime = sasl::authenticate(&mut io, reauth.mechanism.as_ref(), &reauth.context, &session.versions).await?;
    reauth.next = lifetime.map(|l| sasl::reauth_at(started, l));
    reauth.count.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(broker = %shared.label, "re-authenticated");
    Ok(())
}

/// SASL requests on a running connection, sent by the writer itself: they go through the
/// in-flight queue like any request, and the reader hands their responses back.
struct PipelineIo<'a> {
    shared: &'a Arc<Shared>,
    write: &'a mut tokio::io::WriteHalf<Box<dyn Transport>>,
    correlation: &'a AtomicI32,
    client_id: &'a str,
    timeout: Duration,
}

impl PipelineIo<'_> {
    async fn round_trip<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response> {
        let shared = self.shared;
        let correlation_id = self.correlation.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        let chunks =
            frame::encode_request_chunked(correlation_id, Some(self.client_id), request, version, CHUNK_THRESHOLD)
                .map_err(|source| Error::Protocol { broker: shared.label.clone(), source })?;
        let (reply, rx) = oneshot::channel();
        shared.in_flight.lock().unwrap_or_else(|e| e.into_inner()).push_back(Pending {
            correlation_id,
            api: R::API_KEY,
            deadline: Instant::now() + self.timeout,
            timeout: self.timeout,
            reply,
        });
        shared.wake_reader.notify_one();
        let mut queue: VecDeque<Bytes> = chunks.into();
        let frame = tokio::select! {
            r = async {
                write_chunks(self.write, &mut queue)
                    .await
                    .map_err(|e| shared.disconnected(format!("write failed: {e}")))?;
                rx.await.map_err(|_| shared.close_reason())?
            } => r?,
            _ = shared.closed() => return Err(shared.close_reason()),
        };
        frame::decode_response::<R::Response>(frame, version).map(|(_, r)| r).map_err(|source| {
            let e = Error::Protocol { broker: shared.label.clone(), source };
            shared.close(e.clone());
            e
        })
    }
}

impl SaslIo for PipelineIo<'_> {
    fn handshake(
        &mut self,
        request: SaslHandshakeRequest,
        version: i16,
    ) -> sasl::BoxFuture<'_, Result<SaslHandshakeResponse>> {
        Box::pin(async move { self.round_trip(&request, version).await })
    }

    fn authenticate(
        &mut self,
        request: SaslAuthenticateRequest,
        version: i16,
    ) -> sasl::BoxFuture<'_, Result<SaslAuthenticateResponse>> {
        Box::pin(async move { self.round_trip(&request, version).await })
    }
}

fn fail(shared: &Shared, out: Outgoing) {
    let err = shared.close_reason();
    if let Some(p) = out.pending {
        let _ = p.reply.send(Err(err.clone()));
    }
    if let Some(w) = out.written {
        let _ = w.send(Err(err));
    }
}

async fn write_chunks<W: AsyncWrite + Unpin>(write: &mut W, queue: &mut VecDeque<Bytes>) -> std::io::Result<()> {
    while !queue.is_empty() {
        let n = {
            let slices: Vec<IoSlice<'_>> = queue.iter().take(MAX_IOV).map(|b| IoSlice::new(b)).collect();
            write.write_vectored(&slices).await?
        };
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::WriteZero, "socket closed"));
        }
        frame::consume_chunks(queue, n);
    }
    write.flush().await
}

async fn reader(shared: Arc<Shared>, mut read: tokio::io::ReadHalf<Box<dyn Transport>>, mut decoder: FrameDecoder) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        if shared.is_closed.load(Ordering::Acquire) {
            return;
        }
        // Deliver every complete frame.
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    if let Err(e) = deliver(&shared, frame) {
                        shared.close(e);
                        return;
                    }
                }
                Ok(None) => break,
                Err(source) => {
                    shared.close(Error::Protocol { broker: shared.label.clone(), source });
                    return;
                }
            }
        }
        if buf.capacity() - buf.len() < 8 * 1024 {
            buf.reserve(64 * 1024);
        }
        let deadline = shared
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|p| (p.deadline, p.api, p.timeout))
            .min_by_key(|p| p.0);
        let sleep = async {
            match deadline {
                Some((d, _, _)) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = read.read_buf(&mut buf) => match r {
                Ok(0) => {
                    let pending = shared.in_flight.lock().unwrap_or_else(|e| e.into_inner()).len();
                    shared.close(shared.disconnected(format!("closed by the broker ({pending} requests in flight)")));
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    shared.close(shared.disconnected(format!("read failed: {e}")));
                    return;
                }
            },
            _ = sleep => {
                if let Some((_, api, timeout)) = deadline {
                    // Fail the request that timed out with its own error, then the rest.
                    let expired = {
                        let mut q = shared.in_flight.lock().unwrap_or_else(|e| e.into_inner());
                        let now = Instant::now();
                        q.iter().position(|p| p.deadline <= now).and_then(|i| q.remove(i))
                    };
                    let error = Error::RequestTimeout {
                        api,
                        broker: shared.label.clone(),
                        timeout_ms: timeout.as_millis() as u64,
                    };
                    if let Some(p) = expired {
                        let _ = p.reply.send(Err(error.clone()));
                    }
                    shared.close(shared.disconnected(format!("{error}; closing the connection")));
                    return;
                }
            },
            _ = shared.wake_reader.notified() => {}
        }
    }
}

/// Hands a response frame to the oldest request in flight, checking its correlation id.
fn deliver(shared: &Shared, frame: Bytes) -> Result<()> {
    let id = frame::peek_correlation_id(&frame)
        .map_err(|source| Error::Protocol { broker: shared.label.clone(), source })?;
    let front = shared.in_flight.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
    match front {
        Some(p) if p.correlation_id == id => {
            let _ = p.reply.send(Ok(frame));
            Ok(())
        }
        Some(p) => {
            let e = shared.disconnected(format!(
                "response correlation id {id} does not match the oldest request ({:?}, id {})",
                p.api, p.correlation_id
            ));
            let _ = p.reply.send(Err(e.clone()));
            Err(e)
        }
        None => Err(shared.disconnected(format!("unexpected response with correlation id {id}"))),
    }
}
