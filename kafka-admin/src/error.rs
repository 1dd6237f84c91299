//! The admin client's error: a Kafka error about one resource, a local refusal about one
//! resource, or a failure of the connection layer that stopped the whole call.

use kafka_protocol::ErrorCode;

/// Results of the admin client.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, naming the resource (topic, partition, group, broker, transactional id)
/// it concerns when it concerns one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The broker answered with an error code for one resource.
    #[error("{resource}: {}", kafka_client::Error::kafka(*.code, .message.clone()))]
    Kafka {
        /// The resource, e.g. `topic orders`, `partition orders-3`, `group billing`.
        resource: String,
        /// The Kafka error code.
        code: ErrorCode,
        /// The broker's message, when it sent one.
        message: Option<String>,
    },
    /// The request for this resource was refused before anything was sent (for example a
    /// partition count lower than the current one).
    #[error("{resource}: {reason}")]
    InvalidArgument {
        /// The resource.
        resource: String,
        /// Why it was refused.
        reason: String,
    },
    /// The connection layer failed (no broker reachable, a version the broker does not
    /// support, a timeout, a malformed response, a bad setting).
    #[error(transparent)]
    Client(#[from] kafka_client::Error),
}

impl Error {
    /// A Kafka error about `resource`.
    pub fn kafka(resource: impl Into<String>, code: ErrorCode, message: Option<String>) -> Self {
        Error::Kafka { resource: resource.into(), code, message: message.filter(|m| !m.is_empty()) }
    }

    /// A local refusal about `resource`.
    pub fn invalid(resource: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument { resource: resource.into(), reason: reason.into() }
    }

    /// The Kafka error code, when there is one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Kafka { code, .. } => Some(*code),
            Error::Client(e) => e.code(),
            Error::InvalidArgument { .. } => None,
        }
    }

    /// The resource this error is about, when it is about one.
    pub fn resource(&self) -> Option<&str> {
        match self {
            Error::Kafka { resource, .. } | Error::InvalidArgument { resource, .. } => Some(resource),
            Error::Client(_) => None,
        }
    }

    /// Whether trying again may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Kafka { code, .. } => code.is_retriable(),
            Error::Client(e) => e.is_retriable(),
            Error::InvalidArgument { .. } => false,
        }
    }
}

/// Per-resource error codes that the admin client handles by finding the right broker again
/// and retrying, within `default.api.timeout.ms`: the controller, coordinator or leader moved
/// or is still loading. REQUEST_TIMED_OUT is not among them: for CreateTopics and
/// DeleteTopics it means the controller is still working on it, and a retry would report
/// TOPIC_ALREADY_EXISTS for a topic this call created.
pub(crate) fn is_rediscover(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NotController
            | ErrorCode::NotCoordinator
            | ErrorCode::CoordinatorNotAvailable
            | ErrorCode::CoordinatorLoadInProgress
            | ErrorCode::NotLeaderOrFollower
            | ErrorCode::LeaderNotAvailable
            | ErrorCode::FencedLeaderEpoch
            | ErrorCode::UnknownLeaderEpoch
    )
}

/// Whether a failure of a whole request is worth another attempt (transport errors and the
/// codes above; never a version the broker does not support or a bad setting).
pub(crate) fn whole_request_retriable(e: &kafka_client::Error) -> bool {
    match e {
        kafka_client::Error::Kafka { code, .. } => is_rediscover(*code),
        kafka_client::Error::Connect { .. }
        | kafka_client::Error::Disconnected { .. }
        | kafka_client::Error::RequestTimeout { .. }
        | kafka_client::Error::NoBrokers(_) => true,
        _ => false,
    }
}
