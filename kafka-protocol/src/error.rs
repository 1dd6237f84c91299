//! The crate's one error type.

use crate::compression::Compression;

/// Everything that can go wrong while encoding or decoding Kafka wire data.
///
/// Decoders never panic on bad input: every malformed, truncated or hostile byte sequence
/// surfaces as one of these variants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The input ended before a value was complete.
    #[error("truncated input: needed {needed} more bytes, {remaining} remaining")]
    Truncated {
        /// Bytes the value needed.
        needed: usize,
        /// Bytes that were left.
        remaining: usize,
    },
    /// A length or count read from the wire is negative (and not the null marker), or larger
    /// than the bytes that remain, or otherwise impossible.
    #[error("invalid length {length} for {what}")]
    InvalidLength {
        /// What the length described (e.g. "string", "array", "record batch").
        what: &'static str,
        /// The length as read.
        length: i64,
    },
    /// A varint ran past 5 bytes (32-bit) or 10 bytes (64-bit).
    #[error("varint longer than {max_bytes} bytes")]
    VarintOverflow {
        /// The longest encoding allowed for the type.
        max_bytes: usize,
    },
    /// A string field held bytes that are not UTF-8.
    #[error("invalid utf-8 in string field")]
    InvalidUtf8,
    /// A null was read or was about to be written where the version does not allow it.
    #[error("null not allowed for field {field} at version {version}")]
    NullNotAllowed {
        /// The field's name.
        field: &'static str,
        /// The message version.
        version: i16,
    },
    /// A field was set to a non-default value that the target version cannot express.
    #[error("field {field} cannot be expressed at version {version} of {message}")]
    FieldNotSupported {
        /// The message (struct) name.
        message: &'static str,
        /// The field's name.
        field: &'static str,
        /// The message version.
        version: i16,
    },
    /// The API key or version is not one this crate knows.
    #[error("unsupported version {version} of api {api_key} ({api_name})")]
    UnsupportedVersion {
        /// The API key.
        api_key: i16,
        /// The API's name, or "unknown".
        api_name: &'static str,
        /// The version asked for.
        version: i16,
    },
    /// An API key that Kafka does not define.
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    /// A checksum did not match.
    #[error("crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// The CRC carried by the data.
        stored: u32,
        /// The CRC computed over the data.
        computed: u32,
    },
    /// A record batch or message had a magic byte this crate cannot read.
    #[error("unsupported record magic {0}")]
    UnsupportedMagic(i8),
    /// The compression bits named a codec that does not exist.
    #[error("unknown compression codec id {0}")]
    UnknownCompression(u8),
    /// A decompressor would have produced more than the allowed output.
    #[error("{codec} decompression exceeded the limit of {limit} bytes")]
    DecompressionLimit {
        /// The codec.
        codec: Compression,
        /// The cap in bytes.
        limit: usize,
    },
    /// Compressed data was malformed, or a compressor failed.
    #[error("{codec} error: {message}")]
    Compression {
        /// The codec.
        codec: Compression,
        /// What the codec reported.
        message: String,
    },
    /// A record or batch was structurally invalid (bad counts, bad deltas, trailing bytes).
    #[error("corrupt record data: {0}")]
    CorruptRecord(&'static str),
    /// A frame's size prefix was negative.
    #[error("negative frame size {0}")]
    NegativeFrameSize(i32),
    /// A frame's size prefix was above the configured maximum.
    #[error("frame size {size} exceeds maximum {max}{hint}")]
    FrameTooLarge {
        /// The size the prefix claimed.
        size: usize,
        /// The configured maximum.
        max: usize,
        /// Extra context, e.g. that the peer may be speaking TLS.
        hint: &'static str,
    },
    /// A value was out of range for the field's wire type (e.g. a string longer than i16::MAX).
    #[error("value out of range for {what}: {value}")]
    ValueOutOfRange {
        /// What was being encoded.
        what: &'static str,
        /// The value.
        value: i64,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = ProtocolError> = std::result::Result<T, E>;
