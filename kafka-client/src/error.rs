//! The client's error types.

use std::fmt;

use kafka_protocol::{ApiKey, ErrorCode, ProtocolError};

/// A specialized `Result` for the client.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the client.
///
/// Errors are `Clone` because one failure (a dropped connection, a batch rejected by the
/// broker) is reported to every request or record it affected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is unknown, malformed, out of range, or conflicts with another.
    #[error("invalid configuration `{key}`: {reason}")]
    Config {
        /// The setting's name (Java property name).
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An argument to an API call is invalid (for example a partition that does not exist).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Bytes from a broker could not be decoded, or a request could not be encoded. The
    /// connection is closed, since the stream can no longer be trusted.
    #[error("protocol error with {broker}: {source}")]
    Protocol {
        /// The broker (`host:port`, or `node N host:port`).
        broker: String,
        /// What the codec reported.
        source: ProtocolError,
    },
    /// A connection could not be established.
    #[error("cannot connect to {broker}: {reason}")]
    Connect {
        /// The broker address.
        broker: String,
        /// The operating system's or the handshake's reason.
        reason: String,
    },
    /// An established connection failed or was closed; requests in flight on it have an
    /// unknown outcome.
    #[error("connection to {broker} lost: {reason}")]
    Disconnected {
        /// The broker address.
        broker: String,
        /// Why it was lost.
        reason: String,
    },
    /// A request got no response within `request.timeout.ms`; the connection is closed.
    #[error("{api:?} request to {broker} timed out after {timeout_ms} ms")]
    RequestTimeout {
        /// The API of the request.
        api: ApiKey,
        /// The broker address.
        broker: String,
        /// The timeout that expired.
        timeout_ms: u64,
    },
    /// The broker answered with an error code.
    #[error("{}", KafkaDisplay(*.code, .message.as_deref()))]
    Kafka {
        /// The error code.
        code: ErrorCode,
        /// The broker's message, when it sent one.
        message: Option<String>,
    },
    /// The broker supports no version of an API that the client needs at the versions the
    /// client can speak.
    #[error("broker {broker} does not support {api:?} at a version this client speaks ({detail})")]
    UnsupportedVersion {
        /// The API.
        api: ApiKey,
        /// The broker address.
        broker: String,
        /// The broker's range and ours.
        detail: String,
    },
    /// A wait bounded by a setting expired (`max.block.ms`, `delivery.timeout.ms`, ...).
    #[error("timed out after {timeout_ms} ms ({setting}) {what}")]
    Timeout {
        /// What was being waited for.
        what: String,
        /// The setting that bounds the wait.
        setting: &'static str,
        /// Its value.
        timeout_ms: u64,
    },
    /// A record is larger than a limit (checked before anything is sent).
    #[error("the record is {size} bytes when serialized, larger than {setting} ({limit})")]
    RecordTooLarge {
        /// The record's serialized size, batch overhead included.
        size: usize,
        /// The limit.
        limit: usize,
        /// The setting that sets the limit.
        setting: &'static str,
    },
    /// No broker could be reached, neither known ones nor the bootstrap servers.
    #[error("no broker reachable: {0}")]
    NoBrokers(String),
    /// The client has been closed.
    #[error("the {0} is closed")]
    Closed(&'static str),
    /// A partition has no valid position and `auto.offset.reset` is `none`: no committed
    /// offset, or the position is out of range. Seek to continue.
    #[error("no offset for {topic}-{partition}: {reason} and auto.offset.reset is none")]
    NoOffset {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// Why there is no position.
        reason: String,
    },
    /// A fetched batch failed its CRC check or could not be decoded. The partition's position
    /// stays before it: nothing is skipped silently (seek past it to continue).
    #[error("corrupt data in {topic}-{partition} at offset {offset}: {reason}")]
    Corrupt {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The offset of the batch (or the position when unknown).
        offset: i64,
        /// What was wrong.
        reason: String,
    },
    /// The leader's log was truncated below this consumer's position (detected through the
    /// fetch's diverging epoch, KIP-320) and `auto.offset.reset` is `none`.
    #[error("log truncation in {topic}-{partition}: position {position}, the leader's log ends at {end_offset}")]
    LogTruncation {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// This consumer's position.
        position: i64,
        /// Where the leader's log ends for the position's epoch.
        end_offset: i64,
    },
    /// An offset commit was refused because the group rebalanced (the member's generation is
    /// no longer current) or the member was removed. The partitions may now belong to
    /// another member; their records since the last commit may be delivered again there.
    #[error("commit failed: {0}")]
    CommitFailed(String),
    /// A call does not fit the producer's transaction state (for example `send` outside a
    /// transaction, `commit_transaction` twice, `begin_transaction` while one is open). Nothing
    /// was changed.
    #[error("transaction state: {0}")]
    TransactionState(String),
    /// The current transaction cannot commit because of an earlier failure (named here): call
    /// `abort_transaction`, after which the next transaction can begin.
    #[error("the transaction must be aborted: {0}")]
    TransactionAbortable(Box<Error>),
    /// The record was still waiting to be sent when its transaction was aborted: it was never
    /// written.
    #[error("the transaction was aborted before the record was sent")]
    TransactionAborted,
    /// A record was not delivered (so that `send(..).await?.await?` works with this type).
    #[error(transparent)]
    Delivery(Box<DeliveryError>),
    /// The TLS handshake failed: the broker's certificate was not trusted or does not name the
    /// host, the broker does not speak TLS, or the TLS settings are unusable.
    #[error("TLS handshake with {broker} failed: {reason}")]
    Tls {
        /// The broker address.
        broker: String,
        /// rustls' reason (which check failed), with a hint for the usual causes.
        reason: String,
    },
    /// The broker does not enable the SASL mechanism the client is configured with.
    #[error("SASL mechanism {mechanism} is not enabled on {broker} (it offers: {})", if .enabled.is_empty() { "none".to_owned() } else { .enabled.join(", ") })]
    SaslMechanismNotEnabled {
        /// The broker address.
        broker: String,
        /// The mechanism asked for.
        mechanism: String,
        /// The mechanisms the broker offers.
        enabled: Vec<String>,
    },
    /// SASL authentication failed: wrong credentials, an expired token, or a server whose
    /// messages failed verification (SCRAM).
    #[error("SASL authentication with {broker} failed ({mechanism}): {message}")]
    Authentication {
        /// The broker address.
        broker: String,
        /// The mechanism.
        mechanism: String,
        /// The broker's message, or what the client found wrong.
        message: String,
    },
}

impl From<DeliveryError> for Error {
    fn from(e: DeliveryError) -> Self {
        Error::Delivery(Box::new(e))
    }
}

struct KafkaDisplay<'a>(ErrorCode, Option<&'a str>);

impl fmt::Display for KafkaDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.0.name(), self.0.code(), self.0.description())?;
        if let Some(m) = self.1.filter(|m| !m.is_empty()) {
            write!(f, " broker says: {m}")?;
        }
        Ok(())
    }
}

impl Error {
    /// An error from a broker's error code and optional message.
    pub fn kafka(code: ErrorCode, message: Option<String>) -> Self {
        Error::Kafka { code, message }
    }

    /// The Kafka error code, when the broker sent one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Kafka { code, .. } => Some(*code),
            Error::Delivery(d) => d.error.code(),
            _ => None,
        }
    }

    /// Whether retrying the same operation may succeed: transport failures, timeouts, and
    /// Kafka error codes that Kafka marks retriable.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Kafka { code, .. } => code.is_retriable(),
            Error::Connect { .. } | Error::Disconnected { .. } | Error::RequestTimeout { .. } | Error::NoBrokers(_) => {
                true
            }
            _ => false,
        }
    }
}

impl Error {
    /// Whether this is a connection error that retrying with the same settings cannot fix:
    /// failed SASL authentication, a failed TLS handshake, a SASL mechanism the broker does
    /// not enable.
    pub fn is_fatal_connection(&self) -> bool {
        matches!(self, Error::Authentication { .. } | Error::Tls { .. } | Error::SaslMechanismNotEnabled { .. })
    }
}

/// Whether a delivery failure left the record unwritten, or possibly written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Persistence {
    /// The record was never sent, or every attempt was definitely rejected: it is not in the
    /// log.
    NotPersisted,
    /// At least one attempt had an unknown outcome (the connection dropped or the request
    /// timed out while it was in flight): the record may be in the log.
    PossiblyPersisted,
}

/// Why a record was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("delivery to {topic}[{partition}] failed ({persistence:?}): {error}")]
pub struct DeliveryError {
    /// The topic.
    pub topic: String,
    /// The partition, or -1 when none was chosen.
    pub partition: i32,
    /// Whether the record may nevertheless be in the log.
    pub persistence: Persistence,
    /// The cause: a Kafka error code with the broker's message, a timeout, ...
    pub error: Error,
}

impl DeliveryError {
    /// The Kafka error code, when the broker gave one.
    pub fn code(&self) -> Option<ErrorCode> {
        self.error.code()
    }
}
