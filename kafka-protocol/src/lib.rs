//! # kafka-protocol
//!
//! The Kafka wire protocol, without I/O: every request and response at every version Kafka
//! defines (generated from Kafka's own JSON message definitions), record batches, compression,
//! error codes and size-prefixed frames. The client, the admin client, the bundled broker and
//! the fuzzers all share this crate.
//!
//! Decoders never panic and never trust a length read off the wire: bad input becomes a
//! [`ProtocolError`].

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
