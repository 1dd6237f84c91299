//! The broker crate's error type.

use kafka_protocol::ErrorCode;

/// Errors of the bundled broker's in-process API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The cluster was configured inconsistently.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The operation was refused with a Kafka error, as a client would see it.
    #[error("{code}: {message}")]
    Kafka {
        /// The Kafka error code.
        code: ErrorCode,
        /// The broker's message.
        message: String,
    },
    /// The cluster has been shut down.
    #[error("the cluster has been shut down")]
    Stopped,
}
