//! The traits every generated message implements, and version ranges.

use bytes::{Bytes, BytesMut};

use crate::error::Result;
use crate::messages::ApiKey;
use crate::primitives::Writer;

/// An inclusive range of protocol versions. `min > max` means the empty range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VersionRange {
    /// Lowest version, inclusive.
    pub min: i16,
    /// Highest version, inclusive.
    pub max: i16,
}

impl VersionRange {
    /// The empty range.
    pub const NONE: VersionRange = VersionRange { min: 1, max: 0 };

    /// A range from `min` to `max`, inclusive.
    pub const fn new(min: i16, max: i16) -> Self {
        VersionRange { min, max }
    }

    /// Whether `version` lies in the range.
    pub const fn contains(&self, version: i16) -> bool {
        self.min <= version && version <= self.max
    }

    /// Whether the range is empty.
    pub const fn is_empty(&self) -> bool {
        self.min > self.max
    }

    /// The overlap of two ranges (possibly empty).
    pub const fn intersect(&self, other: &VersionRange) -> VersionRange {
        let min = if self.min > other.min { self.min } else { other.min };
        let max = if self.max < other.max { self.max } else { other.max };
        VersionRange { min, max }
    }
}

impl std::fmt::Display for VersionRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            f.write_str("none")
        } else {
            write!(f, "{}-{}", self.min, self.max)
        }
    }
}

/// A Kafka message: a request, a response, a header or an embedded data structure.
///
/// Every field exists in a range of versions; [`Message::encode`] refuses (with
/// [`ProtocolError::FieldNotSupported`](crate::ProtocolError::FieldNotSupported)) to silently drop a non-default field that
/// the target version cannot express, unless Kafka marks the field ignorable.
pub trait Message: Sized + Default + Clone + std::fmt::Debug + PartialEq + Send + Sync + 'static {
    /// The message's name as Kafka spells it.
    const NAME: &'static str;
    /// The versions this message can be encoded and decoded at.
    const VERSIONS: VersionRange;
    /// The versions that use compact encodings and tagged fields (empty if none).
    const FLEXIBLE_VERSIONS: VersionRange;

    /// Writes the message at `version`.
    fn encode<W: Writer + ?Sized>(&self, w: &mut W, version: i16) -> Result<()>;

    /// Reads a message of `version` from the front of `buf`, advancing it. Byte and record
    /// fields are zero-copy slices of `buf`.
    fn decode(buf: &mut Bytes, version: i16) -> Result<Self>;

    /// Encodes into a new buffer.
    fn encode_to_bytes(&self, version: i16) -> Result<Bytes> {
        let mut b = BytesMut::new();
        self.encode(&mut b, version)?;
        Ok(b.freeze())
    }
}

/// A request body, tied to its API key and response type.
pub trait Request: Message {
    /// The API this request belongs to.
    const API_KEY: ApiKey;
    /// The matching response type.
    type Response: Response;
}

/// A response body, tied to its API key and request type.
pub trait Response: Message {
    /// The API this response belongs to.
    const API_KEY: ApiKey;
    /// The matching request type.
    type Request: Request;
}
