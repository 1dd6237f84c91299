//! Wire primitives: fixed-width integers, varints, strings, bytes, arrays, UUIDs, tagged fields.
//!
//! Reads take `&mut Bytes` and advance it; every read checks the remaining length first and
//! returns [`ProtocolError::Truncated`] rather than panicking. Lengths and counts read from the
//! wire are checked against the bytes that remain *before* anything is allocated, so a tiny
//! input claiming a huge size fails fast without reserving memory.
//!
//! Writes go through the [`Writer`] trait, implemented for `BytesMut`, `Vec<u8>` and
//! [`ChunkedWriter`] (which keeps large shared buffers, such as sealed record batches, as
//! separate chunks for vectored socket writes instead of copying them).

use bytes::{Buf, Bytes, BytesMut};

use crate::error::{ProtocolError, Result};

/// A sink for encoded bytes.
pub trait Writer {
    /// Appends bytes by copying them.
    fn put_slice(&mut self, bytes: &[u8]);
    /// Appends a shared buffer. Implementations may keep a reference instead of copying it;
    /// the default copies.
    fn put_shared(&mut self, bytes: &Bytes) {
        self.put_slice(bytes);
    }
    /// Total bytes written so far.
    fn written(&self) -> usize;
}

impl Writer for BytesMut {
    #[inline]
    fn put_slice(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    #[inline]
    fn written(&self) -> usize {
        self.len()
    }
}

impl Writer for Vec<u8> {
    #[inline]
    fn put_slice(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    #[inline]
    fn written(&self) -> usize {
        self.len()
    }
}

/// A [`Writer`] that stores shared buffers of at least `threshold` bytes as their own chunks,
/// so that a produce request holding 1 MiB of sealed batches is never copied before the socket.
#[derive(Debug)]
pub struct ChunkedWriter {
    current: BytesMut,
    chunks: Vec<Bytes>,
    threshold: usize,
    written: usize,
}

impl ChunkedWriter {
    /// Creates a writer that keeps shared buffers of `threshold` bytes or more uncopied.
    pub fn new(threshold: usize) -> Self {
        ChunkedWriter { current: BytesMut::with_capacity(256), chunks: Vec::new(), threshold, written: 0 }
    }

    /// Finishes the writer and returns its chunks in order.
    pub fn into_chunks(mut self) -> Vec<Bytes> {
        if !self.current.is_empty() {
            self.chunks.push(self.current.freeze());
        }
        self.chunks
    }
}

impl Writer for ChunkedWriter {
    #[inline]
    fn put_slice(&mut self, bytes: &[u8]) {
        self.current.extend_from_slice(bytes);
        self.written += bytes.len();
    }
    fn put_shared(&mut self, bytes: &Bytes) {
        if bytes.len() >= self.threshold {
            if !self.current.is_empty() {
                let head = self.current.split().freeze();
                self.chunks.push(head);
            }
            self.chunks.push(bytes.clone());
            self.written += bytes.len();
        } else {
            self.put_slice(bytes);
        }
    }
    fn written(&self) -> usize {
        self.written
    }
}

/// A 128-bit UUID as Kafka uses it (topic ids, directory ids). The all-zero value is Kafka's
/// "zero UUID", meaning unset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// The all-zero UUID, Kafka's "unset" value.
    pub const ZERO: Uuid = Uuid([0; 16]);

    /// Builds a UUID from its two 64-bit halves (most significant first), as Java does.
    pub fn from_u64_pair(msb: u64, lsb: u64) -> Self {
        let mut b = [0u8; 16];
        let (hi, lo) = b.split_at_mut(8);
        hi.copy_from_slice(&msb.to_be_bytes());
        lo.copy_from_slice(&lsb.to_be_bytes());
        Uuid(b)
    }

    /// Whether this is the zero UUID.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }
}

impl std::fmt::Display for Uuid {
    /// Formats like Kafka's `Uuid.toString()`: URL-safe base64 without padding.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::with_capacity(22);
        for chunk in self.0.chunks(3) {
            let b0 = chunk.first().copied().unwrap_or(0) as u32;
            let b1 = chunk.get(1).copied().unwrap_or(0) as u32;
            let b2 = chunk.get(2).copied().unwrap_or(0) as u32;
            let n = (b0 << 16) | (b1 << 8) | b2;
            let chars = match chunk.len() {
                3 => 4,
                2 => 3,
                _ => 2,
            };
            for i in 0..chars {
                let idx = ((n >> (18 - 6 * i)) & 63) as usize;
                out.push(ALPHABET.get(idx).copied().unwrap_or(b'A') as char);
            }
        }
        f.write_str(&out)
    }
}

/// A tagged field this crate's definition of the message does not know, kept verbatim so that
/// it survives a decode/encode round trip.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawTaggedField {
    /// The tag number.
    pub tag: u32,
    /// The field's encoded bytes.
    pub data: Bytes,
}

/// The capacity to reserve for `claimed` elements when `remaining` input bytes are left and
/// each element takes at least `min_element_size` bytes on the wire. Never trusts the claim
/// beyond what the input can actually hold.
#[inline]
pub fn bounded_capacity(claimed: usize, remaining: usize, min_element_size: usize) -> usize {
    let fit = remaining / min_element_size.max(1);
    claimed.min(fit).min(4096)
}

/// Creates an empty vector with a capacity bounded by the input that remains (see
/// [`bounded_capacity`]).
#[inline]
#[allow(clippy::disallowed_methods)] // this is the sanctioned wrapper
pub fn vec_for<T>(claimed: usize, remaining: usize, min_element_size: usize) -> Vec<T> {
    Vec::with_capacity(bounded_capacity(claimed, remaining, min_element_size))
}

#[inline]
fn need(buf: &Bytes, n: usize) -> Result<()> {
    if buf.len() < n {
        Err(ProtocolError::Truncated { needed: n, remaining: buf.len() })
    } else {
        Ok(())
    }
}

/// Reads an int8.
#[inline]
pub fn read_i8(buf: &mut Bytes) -> Result<i8> {
    need(buf, 1)?;
    Ok(buf.get_i8())
}
/// Reads a boolean (any non-zero byte is true, as in Java).
#[inline]
pub fn read_bool(buf: &mut Bytes) -> Result<bool> {
    Ok(read_i8(buf)? != 0)
}
/// Reads a big-endian int16.
#[inline]
pub fn read_i16(buf: &mut Bytes) -> Result<i16> {
    need(buf, 2)?;
    Ok(buf.get_i16())
}
/// Reads a big-endian uint16.
#[inline]
pub fn read_u16(buf: &mut Bytes) -> Result<u16> {
    need(buf, 2)?;
    Ok(buf.get_u16())
}
/// Reads a big-endian int32.
#[inline]
pub fn read_i32(buf: &mut Bytes) -> Result<i32> {
    need(buf, 4)?;
    Ok(buf.get_i32())
}
/// Reads a big-endian uint32.
#[inline]
pub fn read_u32(buf: &mut Bytes) -> Result<u32> {
    need(buf, 4)?;
    Ok(buf.get_u32())
}
/// Reads a big-endian int64.
#[inline]
pub fn read_i64(buf: &mut Bytes) -> Result<i64> {
    need(buf, 8)?;
    Ok(buf.get_i64())
}
/// Reads a big-endian IEEE 754 double.
#[inline]
pub fn read_f64(buf: &mut Bytes) -> Result<f64> {
    need(buf, 8)?;
    Ok(buf.get_f64())
}
/// Reads a UUID (16 bytes).
#[inline]
pub fn read_uuid(buf: &mut Bytes) -> Result<Uuid> {
    need(buf, 16)?;
    let mut b = [0u8; 16];
    buf.copy_to_slice(&mut b);
    Ok(Uuid(b))
}

/// Reads an unsigned varint of at most 5 bytes (Kafka's UNSIGNED_VARINT).
#[inline]
pub fn read_uvarint(buf: &mut Bytes) -> Result<u32> {
    let (v, n) = decode_uvarint(buf)?;
    buf.advance(n);
    Ok(v)
}

/// Decodes an unsigned 32-bit varint at the start of `bytes`, returning the value and its
/// encoded length. Does not advance.
#[inline]
pub fn decode_uvarint(bytes: &[u8]) -> Result<(u32, usize)> {
    let mut value: u32 = 0;
    for i in 0..5 {
        let b = match bytes.get(i) {
            Some(b) => *b,
            None => return Err(ProtocolError::Truncated { needed: i + 1, remaining: bytes.len() }),
        };
        if i == 4 && b > 0x0f {
            return Err(ProtocolError::VarintOverflow { max_bytes: 5 });
        }
        value |= ((b & 0x7f) as u32) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err(ProtocolError::VarintOverflow { max_bytes: 5 })
}

/// Decodes an unsigned 64-bit varint at the start of `bytes`, returning the value and its
/// encoded length. Does not advance.
#[inline]
pub fn decode_uvarlong(bytes: &[u8]) -> Result<(u64, usize)> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let b = match bytes.get(i) {
            Some(b) => *b,
            None => return Err(ProtocolError::Truncated { needed: i + 1, remaining: bytes.len() }),
        };
        if i == 9 && b > 0x01 {
            return Err(ProtocolError::VarintOverflow { max_bytes: 10 });
        }
        value |= ((b & 0x7f) as u64) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err(ProtocolError::VarintOverflow { max_bytes: 10 })
}

/// Decodes a zig-zag signed 32-bit varint (Kafka's VARINT) at the start of `bytes`.
#[inline]
pub fn decode_varint(bytes: &[u8]) -> Result<(i32, usize)> {
    let (u, n) = decode_uvarint(bytes)?;
    Ok((((u >> 1) as i32) ^ -((u & 1) as i32), n))
}

/// Decodes a zig-zag signed 64-bit varint (Kafka's VARLONG) at the start of `bytes`.
#[inline]
pub fn decode_varlong(bytes: &[u8]) -> Result<(i64, usize)> {
    let (u, n) = decode_uvarlong(bytes)?;
    Ok((((u >> 1) as i64) ^ -((u & 1) as i64), n))
}

/// Reads a zig-zag signed varint (VARINT).
#[inline]
pub fn read_varint(buf: &mut Bytes) -> Result<i32> {
    let (v, n) = decode_varint(buf)?;
    buf.advance(n);
    Ok(v)
}

/// Reads a zig-zag signed varlong (VARLONG).
#[inline]
pub fn read_varlong(buf: &mut Bytes) -> Result<i64> {
    let (v, n) = decode_varlong(buf)?;
    buf.advance(n);
    Ok(v)
}

/// Encodes an unsigned varint into a stack buffer, returning the buffer and the length used.
#[inline]
pub fn encode_uvarint(mut v: u32) -> ([u8; 5], usize) {
    let mut out = [0u8; 5];
    let mut i = 0;
    for slot in out.iter_mut() {
        i += 1;
        if v < 0x80 {
            *slot = v as u8;
            break;
        }
        *slot = (v as u8) | 0x80;
        v >>= 7;
    }
    (out, i)
}

/// Encodes an unsigned 64-bit varint into a stack buffer, returning the buffer and the length.
#[inline]
pub fn encode_uvarlong(mut v: u64) -> ([u8; 10], usize) {
    let mut out = [0u8; 10];
    let mut i = 0;
    for slot in out.iter_mut() {
        i += 1;
        if v < 0x80 {
            *slot = v as u8;
            break;
        }
        *slot = (v as u8) | 0x80;
        v >>= 7;
    }
    (out, i)
}

/// Bytes a zig-zag varint takes.
#[inline]
pub fn varint_len(v: i32) -> usize {
    uvarint_len(((v << 1) ^ (v >> 31)) as u32)
}
/// Bytes an unsigned varint takes.
#[inline]
pub fn uvarint_len(v: u32) -> usize {
    match v {
        0..=0x7f => 1,
        0x80..=0x3fff => 2,
        0x4000..=0x1f_ffff => 3,
        0x20_0000..=0x0fff_ffff => 4,
        _ => 5,
    }
}
/// Bytes a zig-zag varlong takes.
#[inline]
pub fn varlong_len(v: i64) -> usize {
    let mut u = ((v << 1) ^ (v >> 63)) as u64;
    let mut n = 1;
    while u >= 0x80 {
        u >>= 7;
        n += 1;
    }
    n
}

/// Writes an unsigned varint.
#[inline]
pub fn write_uvarint<W: Writer + ?Sized>(w: &mut W, v: u32) {
    let (b, n) = encode_uvarint(v);
    w.put_slice(b.get(..n).unwrap_or(&b));
}
/// Writes a zig-zag varint.
#[inline]
pub fn write_varint<W: Writer + ?Sized>(w: &mut W, v: i32) {
    write_uvarint(w, ((v << 1) ^ (v >> 31)) as u32);
}
/// Writes a zig-zag varlong.
#[inline]
pub fn write_varlong<W: Writer + ?Sized>(w: &mut W, v: i64) {
    let (b, n) = encode_uvarlong(((v << 1) ^ (v >> 63)) as u64);
    w.put_slice(b.get(..n).unwrap_or(&b));
}

/// Writes an int8.
#[inline]
pub fn write_i8<W: Writer + ?Sized>(w: &mut W, v: i8) {
    w.put_slice(&v.to_be_bytes());
}
/// Writes a boolean.
#[inline]
pub fn write_bool<W: Writer + ?Sized>(w: &mut W, v: bool) {
    w.put_slice(&[v as u8]);
}
/// Writes a big-endian int16.
#[inline]
pub fn write_i16<W: Writer + ?Sized>(w: &mut W, v: i16) {
    w.put_slice(&v.to_be_bytes());
}
/// Writes a big-endian uint16.
#[inline]
pub fn write_u16<W: Writer + ?Sized>(w: &mut W, v: u16) {
    w.put_slice(&v.to_be_bytes());
}
/// Writes a big-endian int32.
#[inline]
pub fn write_i32<W: Writer + ?Sized>(w: &mut W, v: i32) {
    w.put_slice(&v.to_be_bytes());
}
/// Writes a big-endian uint32.
#[inline]
pub fn write_u32<W: Writer + ?Sized>(w: &mut W, v: u32) {
    w.put_slice(&v.to_be_bytes());
}
/// Writes a big-endian int64.
#[inline]
pub fn write_i64<W: Writer + ?Sized>(w: &mut W, v: i64) {
    w.put_slice(&v.to_be_bytes());
}
/// Writes a big-endian IEEE 754 double.
#[inline]
pub fn write_f64<W: Writer + ?Sized>(w: &mut W, v: f64) {
    w.put_slice(&v.to_be_bytes());
}
/// Writes a UUID.
#[inline]
pub fn write_uuid<W: Writer + ?Sized>(w: &mut W, v: &Uuid) {
    w.put_slice(&v.0);
}

/// Reads the length prefix of a string, bytes, records or array field.
/// Returns `None` for null. Classic encodings use a signed `i16` (strings) or `i32` (bytes,
/// arrays) with -1 for null; compact encodings an unsigned varint of length + 1, with 0 for null.
#[inline]
fn read_len(buf: &mut Bytes, compact: bool, wide: bool, what: &'static str) -> Result<Option<usize>> {
    let len: i64 = if compact {
        read_uvarint(buf)? as i64 - 1
    } else if wide {
        read_i32(buf)? as i64
    } else {
        read_i16(buf)? as i64
    };
    if len == -1 {
        return Ok(None);
    }
    if len < 0 {
        return Err(ProtocolError::InvalidLength { what, length: len });
    }
    Ok(Some(len as usize))
}

/// Reads a possibly-null string. `compact` selects COMPACT_STRING over STRING.
pub fn read_nullable_string(buf: &mut Bytes, compact: bool) -> Result<Option<String>> {
    match read_len(buf, compact, false, "string")? {
        None => Ok(None),
        Some(len) => {
            if len > buf.len() {
                return Err(ProtocolError::InvalidLength { what: "string", length: len as i64 });
            }
            let raw = buf.split_to(len);
            match std::str::from_utf8(&raw) {
                Ok(s) => Ok(Some(s.to_owned())),
                Err(_) => Err(ProtocolError::InvalidUtf8),
            }
        }
    }
}

/// Reads a non-null string; a null is an error naming `field`.
pub fn read_string(buf: &mut Bytes, compact: bool, field: &'static str, version: i16) -> Result<String> {
    read_nullable_string(buf, compact)?.ok_or(ProtocolError::NullNotAllowed { field, version })
}

/// Reads possibly-null bytes (BYTES / COMPACT_BYTES, also RECORDS), as a zero-copy slice.
pub fn read_nullable_bytes(buf: &mut Bytes, compact: bool) -> Result<Option<Bytes>> {
    match read_len(buf, compact, true, "bytes")? {
        None => Ok(None),
        Some(len) => {
            if len > buf.len() {
                return Err(ProtocolError::InvalidLength { what: "bytes", length: len as i64 });
            }
            Ok(Some(buf.split_to(len)))
        }
    }
}

/// Reads non-null bytes; a null is an error naming `field`.
pub fn read_bytes(buf: &mut Bytes, compact: bool, field: &'static str, version: i16) -> Result<Bytes> {
    read_nullable_bytes(buf, compact)?.ok_or(ProtocolError::NullNotAllowed { field, version })
}

/// Reads an array's element count. Returns `None` for a null array. A count above the bytes
/// remaining divided by `min_element_size` is rejected before anything is allocated.
pub fn read_array_len(buf: &mut Bytes, compact: bool, min_element_size: usize) -> Result<Option<usize>> {
    match read_len(buf, compact, true, "array")? {
        None => Ok(None),
        Some(n) => {
            if min_element_size > 0 && n > buf.len() / min_element_size {
                return Err(ProtocolError::InvalidLength { what: "array", length: n as i64 });
            }
            if min_element_size == 0 && n > buf.len().saturating_add(1).saturating_mul(64).max(4096) {
                // Elements that may be empty on the wire still cost memory: cap them at a
                // small multiple of the input.
                return Err(ProtocolError::InvalidLength { what: "array", length: n as i64 });
            }
            Ok(Some(n))
        }
    }
}

fn check_len(len: usize, max: usize, what: &'static str) -> Result<()> {
    if len > max {
        Err(ProtocolError::ValueOutOfRange { what, value: len as i64 })
    } else {
        Ok(())
    }
}

/// Writes the length prefix for a non-null value of `len` bytes/elements, or null.
#[inline]
fn write_len<W: Writer + ?Sized>(
    w: &mut W,
    len: Option<usize>,
    compact: bool,
    wide: bool,
    what: &'static str,
) -> Result<()> {
    match (len, compact, wide) {
        (None, true, _) => write_uvarint(w, 0),
        (None, false, true) => write_i32(w, -1),
        (None, false, false) => write_i16(w, -1),
        (Some(n), true, _) => {
            check_len(n, (u32::MAX - 1) as usize, what)?;
            write_uvarint(w, n as u32 + 1)
        }
        (Some(n), false, true) => {
            check_len(n, i32::MAX as usize, what)?;
            write_i32(w, n as i32)
        }
        (Some(n), false, false) => {
            check_len(n, i16::MAX as usize, what)?;
            write_i16(w, n as i16)
        }
    }
    Ok(())
}

/// Writes a possibly-null string.
pub fn write_nullable_string<W: Writer + ?Sized>(w: &mut W, v: Option<&str>, compact: bool) -> Result<()> {
    write_len(w, v.map(str::len), compact, false, "string")?;
    if let Some(s) = v {
        w.put_slice(s.as_bytes());
    }
    Ok(())
}

/// Writes possibly-null bytes.
pub fn write_nullable_bytes<W: Writer + ?Sized>(w: &mut W, v: Option<&[u8]>, compact: bool) -> Result<()> {
    write_len(w, v.map(<[u8]>::len), compact, true, "bytes")?;
    if let Some(b) = v {
        w.put_slice(b);
    }
    Ok(())
}

/// Writes a possibly-null records field; the payload goes through [`Writer::put_shared`] so a
/// chunked writer need not copy it.
pub fn write_nullable_records<W: Writer + ?Sized>(w: &mut W, v: Option<&Bytes>, compact: bool) -> Result<()> {
    write_len(w, v.map(Bytes::len), compact, true, "records")?;
    if let Some(b) = v {
        w.put_shared(b);
    }
    Ok(())
}

/// Writes an array's element count, or null.
pub fn write_array_len<W: Writer + ?Sized>(w: &mut W, len: Option<usize>, compact: bool) -> Result<()> {
    write_len(w, len, compact, true, "array")
}

/// Reads the tagged-field section header (its count), bounded by the remaining input.
#[inline]
pub fn read_tag_count(buf: &mut Bytes) -> Result<usize> {
    let n = read_uvarint(buf)? as usize;
    // Each tagged field takes at least two bytes (tag and size).
    if n > buf.len() / 2 {
        return Err(ProtocolError::InvalidLength { what: "tagged fields", length: n as i64 });
    }
    Ok(n)
}

/// Reads one tagged field's tag and its data as a slice.
#[inline]
pub fn read_tagged_field(buf: &mut Bytes) -> Result<(u32, Bytes)> {
    let tag = read_uvarint(buf)?;
    let size = read_uvarint(buf)? as usize;
    if size > buf.len() {
        return Err(ProtocolError::InvalidLength { what: "tagged field", length: size as i64 });
    }
    Ok((tag, buf.split_to(size)))
}

/// Writes a message's tagged-field section: the known fields (already encoded) and the unknown
/// ones kept from decoding, merged in ascending tag order as the protocol requires.
pub fn write_tag_section<W: Writer + ?Sized>(
    w: &mut W,
    mut known: Vec<(u32, Bytes)>,
    unknown: &[RawTaggedField],
) -> Result<()> {
    if known.is_empty() && unknown.is_empty() {
        write_uvarint(w, 0);
        return Ok(());
    }
    known.extend(unknown.iter().map(|f| (f.tag, f.data.clone())));
    known.sort_by_key(|(tag, _)| *tag);
    write_tagged_fields(w, &known)
}

/// Writes a tagged-field section from `(tag, data)` pairs, which must be sorted by tag.
pub fn write_tagged_fields<W: Writer + ?Sized>(w: &mut W, fields: &[(u32, Bytes)]) -> Result<()> {
    check_len(fields.len(), u32::MAX as usize, "tagged fields")?;
    write_uvarint(w, fields.len() as u32);
    for (tag, data) in fields {
        write_uvarint(w, *tag);
        check_len(data.len(), u32::MAX as usize, "tagged field")?;
        write_uvarint(w, data.len() as u32);
        w.put_slice(data);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uvarint_round_trip_and_lengths() {
        for v in [0u32, 1, 127, 128, 300, 16383, 16384, 2_097_151, 2_097_152, 268_435_455, 268_435_456, u32::MAX] {
            let mut w = BytesMut::new();
            write_uvarint(&mut w, v);
            assert_eq!(w.len(), uvarint_len(v), "length of {v}");
            let mut b = w.freeze();
            assert_eq!(read_uvarint(&mut b).unwrap(), v);
            assert!(b.is_empty());
        }
    }

    #[test]
    fn varint_zigzag_known_encodings() {
        // Values from the protobuf / Kafka ByteUtils tests.
        let cases: &[(i32, &[u8])] =
            &[(0, &[0]), (-1, &[1]), (1, &[2]), (-2, &[3]), (63, &[0x7e]), (-64, &[0x7f]), (64, &[0x80, 1])];
        for (v, enc) in cases {
            let mut w = BytesMut::new();
            write_varint(&mut w, *v);
            assert_eq!(&w[..], *enc, "encoding of {v}");
            assert_eq!(varint_len(*v), enc.len());
            assert_eq!(decode_varint(enc).unwrap(), (*v, enc.len()));
        }
        for v in [i64::MIN, -1, 0, 1, i64::MAX, i32::MIN as i64 - 1] {
            let mut w = BytesMut::new();
            write_varlong(&mut w, v);
            assert_eq!(w.len(), varlong_len(v));
            assert_eq!(decode_varlong(&w).unwrap(), (v, w.len()));
        }
    }

    #[test]
    fn overlong_varints_are_rejected() {
        assert_eq!(
            decode_uvarint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(ProtocolError::VarintOverflow { max_bytes: 5 })
        );
        assert_eq!(
            decode_uvarint(&[0xff, 0xff, 0xff, 0xff, 0x10]),
            Err(ProtocolError::VarintOverflow { max_bytes: 5 })
        );
        assert_eq!(decode_uvarlong(&[0xff; 11]), Err(ProtocolError::VarintOverflow { max_bytes: 10 }));
        assert!(matches!(decode_uvarint(&[0x80]), Err(ProtocolError::Truncated { .. })));
    }

    #[test]
    fn huge_claimed_array_fails_without_allocation() {
        // 8 bytes: an i32 count of 54 million, then 4 bytes.
        let mut b = Bytes::from_static(&[0x03, 0x38, 0x0e, 0x80, 0, 0, 0, 0]);
        assert!(matches!(read_array_len(&mut b, false, 4), Err(ProtocolError::InvalidLength { what: "array", .. })));
    }

    #[test]
    fn strings_null_and_compact() {
        let mut w = BytesMut::new();
        write_nullable_string(&mut w, None, false).unwrap();
        write_nullable_string(&mut w, Some("ab"), false).unwrap();
        write_nullable_string(&mut w, None, true).unwrap();
        write_nullable_string(&mut w, Some("ab"), true).unwrap();
        assert_eq!(&w[..], &[0xff, 0xff, 0, 2, b'a', b'b', 0, 3, b'a', b'b']);
        let mut b = w.freeze();
        assert_eq!(read_nullable_string(&mut b, false).unwrap(), None);
        assert_eq!(read_nullable_string(&mut b, false).unwrap().as_deref(), Some("ab"));
        assert_eq!(read_nullable_string(&mut b, true).unwrap(), None);
        assert_eq!(read_nullable_string(&mut b, true).unwrap().as_deref(), Some("ab"));
        let mut bad = Bytes::from_static(&[0, 2, 0xc3, 0x28]);
        assert_eq!(read_nullable_string(&mut bad, false), Err(ProtocolError::InvalidUtf8));
        let mut neg = Bytes::from_static(&[0xff, 0xfe]);
        assert!(matches!(read_nullable_string(&mut neg, false), Err(ProtocolError::InvalidLength { .. })));
    }

    #[test]
    fn chunked_writer_keeps_large_shared_buffers() {
        let big = Bytes::from(vec![7u8; 1000]);
        let mut w = ChunkedWriter::new(512);
        w.put_slice(b"head");
        w.put_shared(&big);
        w.put_slice(b"tail");
        assert_eq!(w.written(), 1008);
        let chunks = w.into_chunks();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[1].as_ptr(), big.as_ptr(), "large buffer must not be copied");
    }

    #[test]
    fn uuid_display_matches_kafka_base64() {
        // Kafka prints Uuid(msb=0, lsb=1) as "AAAAAAAAAAAAAAAAAAAAAQ".
        assert_eq!(Uuid::from_u64_pair(0, 1).to_string(), "AAAAAAAAAAAAAAAAAAAAAQ");
    }
}
