//! Legacy message sets (magic 0 and 1), decode only.
//!
//! An entry is: offset i64, message size i32, then the message: crc u32 (IEEE CRC-32 of the
//! rest of the message), magic i8, attributes i8 (bits 0-2 codec: gzip, snappy or lz4; bit 3
//! LogAppendTime for magic 1), timestamp i64 (magic 1 only), key (i32 length, -1 = null),
//! value (same).
//!
//! A compressed message ("wrapper") holds a whole inner message set in its value.
//! [`LegacyMessage::flatten`] decompresses it (bounded) and returns the inner messages with
//! absolute offsets: for magic 1 the inner offsets are relative and the wrapper carries the
//! absolute offset of the last inner message (abs = wrapper - (last_inner - inner)); for
//! magic 0 they are absolute already. As in Java, when that base would be negative (a wrapper
//! whose offset no broker assigned yet) the inner offsets are left as they are.

use bytes::Bytes;

use super::{i32_at, i64_at, TimestampType, LOG_OVERHEAD};
use crate::compression::{self, Compression};
use crate::error::{ProtocolError, Result};

/// Smallest magic 0 message: crc, magic, attributes, key length, value length.
const MIN_MESSAGE_V0: usize = 4 + 1 + 1 + 4 + 4;
/// Smallest magic 1 message: as v0 plus the timestamp.
const MIN_MESSAGE_V1: usize = MIN_MESSAGE_V0 + 8;
/// Offset of the magic byte in an entry.
const MAGIC_AT: usize = 16;
const ATTRIBUTES_AT: usize = 17;
const CODEC_MASK: i8 = 0x07;
const TIMESTAMP_TYPE_BIT: i8 = 0x08;

/// The smallest legacy message size (the `message size` field).
pub(crate) const MIN_LEGACY_MESSAGE_SIZE: usize = MIN_MESSAGE_V0;

/// One magic 0 or magic 1 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyMessage {
    /// The offset: absolute, except for inner messages of a magic 1 wrapper before
    /// [`LegacyMessage::flatten`] resolves them.
    pub offset: i64,
    /// 0 or 1.
    pub magic: i8,
    /// The stored CRC.
    pub crc: u32,
    /// The attribute bits.
    pub attributes: i8,
    /// The timestamp (magic 1; -1 means none); `None` for magic 0.
    pub timestamp: Option<i64>,
    /// The timestamp type (magic 1); `None` for magic 0.
    pub timestamp_type: Option<TimestampType>,
    /// The key, or `None` for null.
    pub key: Option<Bytes>,
    /// The value, or `None` for null.
    pub value: Option<Bytes>,
    /// The whole entry, for the CRC.
    raw: Bytes,
}

/// Reads an i32-length-prefixed nullable byte string at `*pos`.
fn read_bytes(entry: &Bytes, pos: &mut usize, what: &'static str) -> Result<Option<Bytes>> {
    let Some(len) = i32_at(entry, *pos) else {
        return Err(ProtocolError::Truncated { needed: 4, remaining: entry.len().saturating_sub(*pos) });
    };
    *pos += 4;
    if len == -1 {
        return Ok(None);
    }
    let end = usize::try_from(len).ok().and_then(|l| pos.checked_add(l)).filter(|e| *e <= entry.len());
    let Some(end) = end else {
        return Err(ProtocolError::InvalidLength { what, length: i64::from(len) });
    };
    let v = entry.slice(*pos..end);
    *pos = end;
    Ok(Some(v))
}

impl LegacyMessage {
    /// Parses exactly one entry (offset, size, message).
    pub fn parse(entry: Bytes) -> Result<Self> {
        let (Some(offset), Some(size)) = (i64_at(&entry, 0), i32_at(&entry, 8)) else {
            return Err(ProtocolError::Truncated { needed: LOG_OVERHEAD, remaining: entry.len() });
        };
        let magic = entry.get(MAGIC_AT).map(|m| *m as i8);
        let min = match magic {
            Some(0) => MIN_MESSAGE_V0,
            Some(1) => MIN_MESSAGE_V1,
            Some(m) => return Err(ProtocolError::UnsupportedMagic(m)),
            None => return Err(ProtocolError::Truncated { needed: MAGIC_AT + 1, remaining: entry.len() }),
        };
        if size < 0 || (size as usize) < min {
            return Err(ProtocolError::InvalidLength { what: "legacy message", length: i64::from(size) });
        }
        let total = size as usize + LOG_OVERHEAD;
        if entry.len() < total {
            return Err(ProtocolError::Truncated { needed: total, remaining: entry.len() });
        }
        if entry.len() > total {
            return Err(ProtocolError::CorruptRecord("bytes after the end of the legacy message"));
        }
        let magic = magic.unwrap_or(0);
        let crc = i32_at(&entry, 12).unwrap_or(0) as u32;
        let attributes = entry.get(ATTRIBUTES_AT).map(|a| *a as i8).unwrap_or(0);
        let mut pos = ATTRIBUTES_AT + 1;
        let (timestamp, timestamp_type) = if magic == 1 {
            let ts = i64_at(&entry, pos).unwrap_or(-1);
            pos += 8;
            let tt = if attributes & TIMESTAMP_TYPE_BIT != 0 {
                TimestampType::LogAppendTime
            } else {
                TimestampType::CreateTime
            };
            (Some(ts), Some(tt))
        } else {
            (None, None)
        };
        let key = read_bytes(&entry, &mut pos, "legacy message key")?;
        let value = read_bytes(&entry, &mut pos, "legacy message value")?;
        if pos != entry.len() {
            return Err(ProtocolError::CorruptRecord("trailing bytes inside a legacy message"));
        }
        Ok(LegacyMessage { offset, magic, crc, attributes, timestamp, timestamp_type, key, value, raw: entry })
    }

    /// The codec of a wrapper message; legacy messages know only ids 0-3.
    pub fn compression(&self) -> Result<Compression> {
        match (self.attributes & CODEC_MASK) as u8 {
            id @ 0..=3 => Compression::from_id(id),
            id => Err(ProtocolError::UnknownCompression(id)),
        }
    }

    /// Whether this is a compressed wrapper.
    pub fn is_compressed(&self) -> bool {
        self.attributes & CODEC_MASK != 0
    }

    /// The whole entry on the wire.
    pub fn as_bytes(&self) -> &Bytes {
        &self.raw
    }

    /// IEEE CRC-32 of the message from its magic byte to its end.
    pub fn compute_crc(&self) -> u32 {
        crc32fast::hash(self.raw.get(MAGIC_AT..).unwrap_or_default())
    }

    /// Checks the stored CRC.
    pub fn verify_crc(&self) -> Result<()> {
        let computed = self.compute_crc();
        if computed == self.crc {
            Ok(())
        } else {
            Err(ProtocolError::CrcMismatch { stored: self.crc, computed })
        }
    }

    /// The messages this entry stands for: itself if it is not compressed, otherwise its inner
    /// messages, decompressed (at most `decompress_limit` bytes) and with absolute offsets.
    ///
    /// Inner messages of a magic 1 LogAppendTime wrapper take the wrapper's timestamp, as in
    /// Java. A wrapper inside a wrapper, an empty or null wrapper value, or a truncated inner
    /// message is an error. LZ4 wrappers are read whatever their frame header checksum
    /// (KAFKA-3160: magic 0 messages carry a checksum computed the wrong way). Inner CRCs are
    /// not checked here: call [`Self::verify_crc`] on each if wanted.
    pub fn flatten(&self, decompress_limit: usize) -> Result<Vec<LegacyMessage>> {
        let codec = self.compression()?;
        if codec == Compression::None {
            return Ok(vec![self.clone()]);
        }
        let Some(value) = &self.value else {
            return Err(ProtocolError::CorruptRecord("compressed legacy message with a null value"));
        };
        let mut inner = match codec {
            Compression::Lz4 => compression::lz4_decompress_ignoring_header_checksum(value, decompress_limit)?,
            other => compression::decompress(other, value, decompress_limit)?,
        };
        let mut out: Vec<LegacyMessage> = Vec::new();
        while !inner.is_empty() {
            let size = match i32_at(&inner, 8) {
                Some(s) if s >= 0 => s as usize,
                _ => return Err(ProtocolError::CorruptRecord("truncated message inside a compressed message set")),
            };
            let total = size.saturating_add(LOG_OVERHEAD);
            if total > inner.len() {
                return Err(ProtocolError::CorruptRecord("truncated message inside a compressed message set"));
            }
            let message = LegacyMessage::parse(inner.split_to(total))?;
            if message.is_compressed() {
                return Err(ProtocolError::CorruptRecord("nested compression in a legacy message"));
            }
            out.push(message);
        }
        let Some(last_inner) = out.last().map(|m| m.offset) else {
            return Err(ProtocolError::CorruptRecord("compressed legacy message without inner messages"));
        };
        let log_append_time = self.timestamp_type == Some(TimestampType::LogAppendTime);
        // As in Java (and kafka-python): a negative base means the wrapper's offset was never
        // assigned by a broker (a producer-side set); the relative offsets are then kept.
        let base = if self.magic > 0 { self.offset.wrapping_sub(last_inner) } else { -1 };
        for m in &mut out {
            if base >= 0 {
                m.offset = base.wrapping_add(m.offset);
            }
            if log_append_time {
                m.timestamp = self.timestamp;
                m.timestamp_type = Some(TimestampType::LogAppendTime);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::BytesMut;

    /// Encodes one legacy entry (test-only encoder).
    pub(crate) fn encode(
        offset: i64,
        magic: i8,
        attributes: i8,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Vec<u8> {
        let mut msg = vec![magic as u8, attributes as u8];
        if magic == 1 {
            msg.extend_from_slice(&timestamp.to_be_bytes());
        }
        for part in [key, value] {
            match part {
                None => msg.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(b) => {
                    msg.extend_from_slice(&(b.len() as i32).to_be_bytes());
                    msg.extend_from_slice(b);
                }
            }
        }
        let mut out = offset.to_be_bytes().to_vec();
        out.extend_from_slice(&((msg.len() + 4) as i32).to_be_bytes());
        out.extend_from_slice(&crc32fast::hash(&msg).to_be_bytes());
        out.extend_from_slice(&msg);
        out
    }

    /// A compressed wrapper around `inner` (already-encoded entries).
    pub(crate) fn wrapper(
        offset: i64,
        magic: i8,
        codec: Compression,
        attrs_extra: i8,
        ts: i64,
        inner: &[u8],
    ) -> Vec<u8> {
        let mut compressed = BytesMut::new();
        compression::compress(codec, None, inner, &mut compressed).unwrap();
        encode(offset, magic, codec.id() as i8 | attrs_extra, ts, None, Some(&compressed))
    }

    #[test]
    fn plain_messages_v0_and_v1() {
        let v0 = encode(5, 0, 0, 0, Some(b"k"), Some(b"v"));
        let m = LegacyMessage::parse(Bytes::from(v0)).unwrap();
        assert_eq!((m.offset, m.magic, m.timestamp, m.timestamp_type), (5, 0, None, None));
        assert_eq!(m.key.as_deref(), Some(&b"k"[..]));
        m.verify_crc().unwrap();
        assert_eq!(m.flatten(1 << 20).unwrap(), vec![m.clone()]);
        let v1 = encode(6, 1, 0x08, 1234, None, None);
        let m = LegacyMessage::parse(Bytes::from(v1.clone())).unwrap();
        assert_eq!((m.timestamp, m.timestamp_type), (Some(1234), Some(TimestampType::LogAppendTime)));
        assert_eq!((m.key.clone(), m.value.clone()), (None, None));
        m.verify_crc().unwrap();
        let mut bad = encode(6, 1, 0, 1234, None, Some(b"v"));
        *bad.last_mut().unwrap() ^= 1;
        assert!(matches!(
            LegacyMessage::parse(Bytes::from(bad)).unwrap().verify_crc(),
            Err(ProtocolError::CrcMismatch { .. })
        ));
        // Truncations and bad lengths never panic.
        for cut in 0..v1.len() {
            assert!(LegacyMessage::parse(Bytes::copy_from_slice(&v1[..cut])).is_err());
        }
        let mut huge_key = encode(0, 0, 0, 0, Some(b"abc"), None);
        huge_key[18..22].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(LegacyMessage::parse(Bytes::from(huge_key)), Err(ProtocolError::InvalidLength { .. })));
    }

    #[test]
    fn compressed_wrappers_resolve_offsets() {
        for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4] {
            // Magic 1: relative inner offsets 0..3, wrapper at the absolute offset of the last.
            let mut inner = Vec::new();
            for i in 0..3 {
                inner.extend(encode(i, 1, 0, 1000 + i, Some(format!("k{i}").as_bytes()), Some(b"value")));
            }
            let w = wrapper(102, 1, codec, 0, 5000, &inner);
            let m = LegacyMessage::parse(Bytes::from(w)).unwrap();
            m.verify_crc().unwrap();
            let flat = m.flatten(1 << 20).unwrap();
            assert_eq!(flat.iter().map(|m| m.offset).collect::<Vec<_>>(), vec![100, 101, 102], "{codec}");
            assert_eq!(flat.iter().map(|m| m.timestamp.unwrap()).collect::<Vec<_>>(), vec![1000, 1001, 1002]);
            assert_eq!(flat[1].key.as_deref(), Some(&b"k1"[..]));
            flat.iter().for_each(|m| m.verify_crc().unwrap());
            // LogAppendTime wrapper: inner messages take its timestamp.
            let w = wrapper(102, 1, codec, 0x08, 5000, &inner);
            let flat = LegacyMessage::parse(Bytes::from(w)).unwrap().flatten(1 << 20).unwrap();
            assert!(flat
                .iter()
                .all(|m| m.timestamp == Some(5000) && m.timestamp_type == Some(TimestampType::LogAppendTime)));
            // Magic 0: inner offsets are absolute.
            let mut inner0 = Vec::new();
            for i in 0..3 {
                inner0.extend(encode(50 + i, 0, 0, 0, None, Some(b"x")));
            }
            let w = wrapper(52, 0, codec, 0, 0, &inner0);
            let flat = LegacyMessage::parse(Bytes::from(w)).unwrap().flatten(1 << 20).unwrap();
            assert_eq!(flat.iter().map(|m| m.offset).collect::<Vec<_>>(), vec![50, 51, 52]);
            // Magic 1 wrapper with an unassigned offset (0): relative offsets are kept.
            let w = wrapper(0, 1, codec, 0, 5000, &inner);
            let flat = LegacyMessage::parse(Bytes::from(w)).unwrap().flatten(1 << 20).unwrap();
            assert_eq!(flat.iter().map(|m| m.offset).collect::<Vec<_>>(), vec![0, 1, 2]);
            // The decompression limit applies.
            let w = wrapper(52, 0, codec, 0, 0, &inner0);
            assert!(matches!(
                LegacyMessage::parse(Bytes::from(w)).unwrap().flatten(10),
                Err(ProtocolError::DecompressionLimit { .. })
            ));
        }
    }

    #[test]
    fn nested_empty_and_garbage_wrappers_are_rejected() {
        let leaf = encode(0, 1, 0, 0, None, Some(b"x"));
        let inner_wrapper = wrapper(0, 1, Compression::Gzip, 0, 0, &leaf);
        let outer = wrapper(0, 1, Compression::Gzip, 0, 0, &inner_wrapper);
        let m = LegacyMessage::parse(Bytes::from(outer)).unwrap();
        assert_eq!(m.flatten(1 << 20), Err(ProtocolError::CorruptRecord("nested compression in a legacy message")));
        let empty = wrapper(0, 1, Compression::Gzip, 0, 0, &[]);
        assert!(LegacyMessage::parse(Bytes::from(empty)).unwrap().flatten(1 << 20).is_err());
        let null_value = encode(0, 1, 1, 0, None, None);
        assert!(LegacyMessage::parse(Bytes::from(null_value)).unwrap().flatten(1 << 20).is_err());
        let garbage = encode(0, 1, 2, 0, None, Some(b"definitely not snappy"));
        assert!(LegacyMessage::parse(Bytes::from(garbage)).unwrap().flatten(1 << 20).is_err());
        let truncated_inner = wrapper(0, 1, Compression::Gzip, 0, 0, &leaf[..leaf.len() - 1]);
        assert!(LegacyMessage::parse(Bytes::from(truncated_inner)).unwrap().flatten(1 << 20).is_err());
        let zstd = encode(0, 1, 4, 0, None, Some(b"x"));
        assert_eq!(
            LegacyMessage::parse(Bytes::from(zstd)).unwrap().flatten(1 << 20),
            Err(ProtocolError::UnknownCompression(4))
        );
    }

    #[test]
    fn kafka_3160_lz4_v0_wrapper() {
        let mut inner = Vec::new();
        for i in 0..2 {
            inner.extend(encode(7 + i, 0, 0, 0, None, Some(b"old lz4")));
        }
        let mut compressed = BytesMut::new();
        compression::compress(Compression::Lz4, None, &inner, &mut compressed).unwrap();
        // Old clients computed the header checksum over magic + descriptor.
        compressed[6] = 0x1A;
        let w = encode(8, 0, 3, 0, None, Some(&compressed));
        let flat = LegacyMessage::parse(Bytes::from(w)).unwrap().flatten(1 << 20).unwrap();
        assert_eq!(flat.iter().map(|m| m.offset).collect::<Vec<_>>(), vec![7, 8]);
    }
}
