//! Listeners and connections: framing, decoding and encoding happen here, on one task per
//! connection; the request itself is handled by the state task.
//!
//! Like Kafka, a connection has one request in flight inside the broker at a time: the next
//! request is read only after the previous response was written. Clients still pipeline (their
//! requests wait in the socket buffer), and responses always come back in request order.

use bytes::BytesMut;
use kafka_protocol::frame::{self, FrameDecoder};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::ProtocolError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

use crate::cluster::{Command, Delivery, Pending, Reply};
use crate::handlers;

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
                        };
                        tokio::spawn(async move {
                            if let Err(reason) = serve(stream, conn).await {
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

struct Conn {
    node_id: i32,
    peer: std::net::IpAddr,
    state: mpsc::Sender<Command>,
    shutdown: watch::Receiver<bool>,
    up: watch::Receiver<bool>,
    max_frame_size: usize,
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

async fn serve(mut stream: TcpStream, conn: Conn) -> Result<(), ConnectionEnd> {
    let Conn { node_id, peer, state, mut shutdown, mut up, max_frame_size } = conn;
    stream.set_nodelay(true)?;
    let mut decoder = FrameDecoder::new(max_frame_size);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut out = BytesMut::with_capacity(64 * 1024);
    loop {
        let frame = loop {
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
        mute(mute_for).await;
    }
}

/// A throttled client's connection reads nothing for a while (KIP-219).
async fn mute(d: std::time::Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}
