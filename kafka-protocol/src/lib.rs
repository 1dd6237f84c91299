//! # kafka-protocol
//!
//! The Kafka wire protocol, without I/O: every request and response at every version Kafka
//! defines (generated from Kafka's own JSON message definitions), record batches, compression,
//! error codes and size-prefixed frames. The client, the admin client, the bundled broker and
//! the fuzzers all share this crate.
//!
//! Decoders never panic and never trust a length read off the wire: bad input becomes a
//! [`ProtocolError`].
//!
//! # Requests and responses
//!
//! Every message implements [`Message`]: `encode` at a version, `decode` at a version. The
//! [`frame`] module adds the size prefix and the header that each API and version needs.
//!
//! ```
//! use bytes::BytesMut;
//! use kafka_protocol::frame::{self, FrameDecoder};
//! use kafka_protocol::messages::{MetadataRequest, RequestBody};
//! use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
//!
//! let request = MetadataRequest {
//!     topics: Some(vec![MetadataRequestTopic { name: Some("orders".into()), ..Default::default() }]),
//!     allow_auto_topic_creation: false,
//!     ..Default::default()
//! };
//! let mut wire = BytesMut::new();
//! frame::encode_request(&mut wire, 7, Some("my-client"), &request, 12)?;
//!
//! // The other side: split the frame off the stream, then decode header and body.
//! let frame = FrameDecoder::default().decode(&mut wire)?.expect("a whole frame");
//! let decoded = frame::decode_request(frame)?;
//! assert_eq!(decoded.header.correlation_id, 7);
//! assert_eq!(decoded.body, RequestBody::Metadata(request));
//! # Ok::<(), kafka_protocol::ProtocolError>(())
//! ```
//!
//! # Record batches
//!
//! ```
//! use kafka_protocol::compression::Compression;
//! use kafka_protocol::records::{BatchOptions, Header, ProducerState, RecordBatch, RecordBatchBuilder};
//!
//! let mut builder = RecordBatchBuilder::new(BatchOptions { compression: Compression::Lz4, ..Default::default() });
//! builder.append(1_700_000_000_000, Some(b"key"), Some(b"value"), &[Header { key: "trace", value: Some(b"abc") }])?;
//! let sealed = builder.seal(ProducerState::default())?;
//!
//! let batch = RecordBatch::from_bytes(sealed)?;
//! batch.verify_crc()?;
//! let records = batch.records(1 << 20)?;
//! let first = records.iter().next().expect("one record")?;
//! assert_eq!(first.value(), Some(&b"value"[..]));
//! # Ok::<(), kafka_protocol::ProtocolError>(())
//! ```

mod api;
pub mod compression;
pub mod consumer_protocol;
pub mod error;
pub mod error_code;
pub mod frame;
pub mod message;
pub mod messages;
pub mod murmur2;
pub mod primitives;
pub mod records;

#[cfg(test)]
mod message_tests;

pub use error::{ProtocolError, Result};
pub use error_code::ErrorCode;
pub use message::{Message, Request, Response, VersionRange};
pub use messages::ApiKey;
