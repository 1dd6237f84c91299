//! Size-prefixed frames and request/response headers.
//!
//! Every Kafka message on the wire is `int32 size` followed by `size` bytes: a header and a body.
//! [`FrameDecoder`] splits frames off a byte stream, refusing negative sizes and sizes above a
//! configurable maximum *before* allocating. The `encode_*`/`decode_*` helpers pick the header
//! version that each API and version requires.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{ProtocolError, Result};
use crate::message::{Message, Request, Response};
use crate::messages::{ApiKey, RequestBody, RequestHeader, ResponseBody, ResponseHeader};
use crate::primitives::{ChunkedWriter, Writer};

/// The default maximum frame size: 100 MiB, as Kafka's `socket.request.max.bytes`.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 100 * 1024 * 1024;

/// A hint added to [`ProtocolError::FrameTooLarge`] when the "size" bytes look like a TLS
/// record header (`0x15 0x03` alert or `0x16 0x03` handshake): a plaintext client talking to
/// a TLS listener reads a length of about 352 MB.
const TLS_HINT: &str = " (the bytes look like TLS: the server may require TLS)";

/// Checks a frame's 4-byte size prefix and returns the size of the frame body.
pub fn check_frame_size(prefix: [u8; 4], max: usize) -> Result<usize> {
    let size = i32::from_be_bytes(prefix);
    if size < 0 {
        return Err(ProtocolError::NegativeFrameSize(size));
    }
    let size = size as usize;
    if size > max {
        let hint = if (prefix[0] == 0x15 || prefix[0] == 0x16) && prefix[1] == 0x03 { TLS_HINT } else { "" };
        return Err(ProtocolError::FrameTooLarge { size, max, hint });
    }
    Ok(size)
}

/// The least [`FrameDecoder::decode`] reserves for an incomplete frame.
const RESERVE_STEP: usize = 64 * 1024;

/// Splits size-prefixed frames off the front of a growing buffer.
///
/// ```
/// use bytes::BytesMut;
/// use kafka_protocol::frame::FrameDecoder;
///
/// let mut decoder = FrameDecoder::new(1024);
/// let mut buf = BytesMut::from(&[0, 0, 0, 3, b'a', b'b'][..]);
/// assert!(decoder.decode(&mut buf).unwrap().is_none()); // incomplete
/// buf.extend_from_slice(b"c");
/// assert_eq!(&decoder.decode(&mut buf).unwrap().unwrap()[..], b"abc");
/// ```
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder { max: DEFAULT_MAX_FRAME_SIZE }
    }
}

impl FrameDecoder {
    /// A decoder refusing frames larger than `max` bytes.
    pub fn new(max: usize) -> Self {
        FrameDecoder { max }
    }

    /// The largest frame this decoder accepts.
    pub fn max_frame_size(&self) -> usize {
        self.max
    }

    /// Returns the next complete frame (without its size prefix), or `None` if more bytes are
    /// needed. When a frame is incomplete, reserves room for more of it in `buf` (its size
    /// already checked against the maximum): as much again as has arrived, at least 64 KiB,
    /// never more than the rest of the frame. So the buffer grows geometrically with the
    /// bytes actually received, never to a size the peer merely claimed (a prefix claiming
    /// 100 MiB followed by nothing costs 64 KiB). An error means the stream can no longer be
    /// trusted and the connection should be closed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>> {
        let Some(prefix) = buf.get(..4) else {
            return Ok(None);
        };
        let prefix: [u8; 4] = prefix.try_into().unwrap_or_default();
        let size = check_frame_size(prefix, self.max)?;
        if buf.len() < 4 + size {
            let rest = 4 + size - buf.len();
            let room = buf.capacity() - buf.len();
            if room < rest {
                buf.reserve(rest.min(buf.len().max(RESERVE_STEP)));
            }
            return Ok(None);
        }
        buf.advance(4);
        Ok(Some(buf.split_to(size).freeze()))
    }
}

/// The first fields of every request header, readable whatever the API and version, so that
/// a broker can answer a request it cannot decode with the right correlation id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestPrefix {
    /// The raw API key (possibly one this crate does not know).
    pub api_key: i16,
    /// The API version the client used.
    pub api_version: i16,
    /// The correlation id to echo.
    pub correlation_id: i32,
}

/// Reads the api key, version and correlation id at the start of a request frame.
pub fn peek_request(frame: &[u8]) -> Result<RequestPrefix> {
    match frame.get(..8) {
        Some(h) => {
            let mut h = h;
            Ok(RequestPrefix { api_key: h.get_i16(), api_version: h.get_i16(), correlation_id: h.get_i32() })
        }
        None => Err(ProtocolError::Truncated { needed: 8, remaining: frame.len() }),
    }
}

fn request_header(api_key: ApiKey, version: i16, correlation_id: i32, client_id: Option<&str>) -> RequestHeader {
    RequestHeader {
        request_api_key: api_key.key(),
        request_api_version: version,
        correlation_id,
        client_id: client_id.map(str::to_owned),
        ..Default::default()
    }
}

fn write_request<W: Writer + ?Sized>(
    w: &mut W,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: Option<&str>,
    body: &dyn Fn(&mut W) -> Result<()>,
) -> Result<()> {
    let header = request_header(api_key, version, correlation_id, client_id);
    header.encode(w, api_key.request_header_version(version))?;
    body(w)
}

fn check_version(api_key: ApiKey, version: i16) -> Result<()> {
    if api_key.valid_versions().contains(version) {
        Ok(())
    } else {
        Err(ProtocolError::UnsupportedVersion { api_key: api_key.key(), api_name: api_key.name(), version })
    }
}

fn patch_size(buf: &mut BytesMut, start: usize) -> Result<()> {
    let len = buf.len() - start - 4;
    let size = i32::try_from(len).map_err(|_| ProtocolError::ValueOutOfRange { what: "frame", value: len as i64 })?;
    if let Some(slot) = buf.get_mut(start..start + 4) {
        slot.copy_from_slice(&size.to_be_bytes());
    }
    Ok(())
}

/// Appends one size-prefixed frame to `out`: checks the version, reserves the prefix, lets
/// `write` add header and body, and patches the size. On error `out` is left as it was.
fn framed(
    out: &mut BytesMut,
    api_key: ApiKey,
    version: i16,
    write: &dyn Fn(&mut BytesMut) -> Result<()>,
) -> Result<()> {
    check_version(api_key, version)?;
    let start = out.len();
    out.put_i32(0);
    if let Err(e) = write(out) {
        out.truncate(start);
        return Err(e);
    }
    patch_size(out, start)
}

/// Encodes a request with its size prefix and header into `out`.
pub fn encode_request<R: Request>(
    out: &mut BytesMut,
    correlation_id: i32,
    client_id: Option<&str>,
    request: &R,
    version: i16,
) -> Result<()> {
    framed(out, R::API_KEY, version, &|w| {
        write_request(w, R::API_KEY, version, correlation_id, client_id, &|w| request.encode(w, version))
    })
}

/// Encodes any request body with its size prefix and header into `out`.
pub fn encode_request_body(
    out: &mut BytesMut,
    correlation_id: i32,
    client_id: Option<&str>,
    request: &RequestBody,
    version: i16,
) -> Result<()> {
    let api_key = request.api_key();
    framed(out, api_key, version, &|w| {
        write_request(w, api_key, version, correlation_id, client_id, &|w| request.encode(w, version))
    })
}

/// Encodes a request as a list of chunks for a vectored write: record payloads of at least
/// `threshold` bytes are referenced, not copied.
pub fn encode_request_chunked<R: Request>(
    correlation_id: i32,
    client_id: Option<&str>,
    request: &R,
    version: i16,
    threshold: usize,
) -> Result<Vec<Bytes>> {
    check_version(R::API_KEY, version)?;
    let mut w = ChunkedWriter::new(threshold);
    write_request(&mut w, R::API_KEY, version, correlation_id, client_id, &|w| request.encode(w, version))?;
    sized_chunks(w)
}

/// A chunked frame's chunks behind its size prefix. The prefix is its own chunk: it is only
/// known once everything else is written, and the chunks after it may be shared buffers that
/// must not be copied to patch it in.
fn sized_chunks(w: ChunkedWriter) -> Result<Vec<Bytes>> {
    let total = w.written();
    let size =
        i32::try_from(total).map_err(|_| ProtocolError::ValueOutOfRange { what: "frame", value: total as i64 })?;
    let mut chunks = vec![Bytes::copy_from_slice(&size.to_be_bytes())];
    chunks.extend(w.into_chunks());
    Ok(chunks)
}

/// Drops the first `n` bytes of a queue of chunks (what a vectored write took): whole chunks
/// from the front, then the start of the next one.
pub fn consume_chunks(queue: &mut std::collections::VecDeque<Bytes>, n: usize) {
    let mut left = n;
    while left > 0 {
        let Some(front) = queue.front_mut() else { return };
        if front.len() <= left {
            left -= front.len();
            queue.pop_front();
        } else {
            front.advance(left);
            left = 0;
        }
    }
}

/// Encodes a response as a list of chunks for a vectored write: record data of at least
/// `threshold` bytes (a Fetch response's batches) is referenced, not copied.
pub fn encode_response_chunked<R: Response>(
    correlation_id: i32,
    response: &R,
    version: i16,
    threshold: usize,
) -> Result<Vec<Bytes>> {
    check_version(R::API_KEY, version)?;
    let mut w = ChunkedWriter::new(threshold);
    let header = ResponseHeader { correlation_id, ..Default::default() };
    header.encode(&mut w, R::API_KEY.response_header_version(version))?;
    response.encode(&mut w, version)?;
    sized_chunks(w)
}

/// Encodes a response with its size prefix and header into `out`.
pub fn encode_response<R: Response>(out: &mut BytesMut, correlation_id: i32, response: &R, version: i16) -> Result<()> {
    encode_response_inner(out, R::API_KEY, correlation_id, version, &|w| response.encode(w, version))
}

/// Encodes any response body with its size prefix and header into `out`.
pub fn encode_response_body(
    out: &mut BytesMut,
    correlation_id: i32,
    response: &ResponseBody,
    version: i16,
) -> Result<()> {
    encode_response_inner(out, response.api_key(), correlation_id, version, &|w| response.encode(w, version))
}

fn encode_response_inner(
    out: &mut BytesMut,
    api_key: ApiKey,
    correlation_id: i32,
    version: i16,
    body: &dyn Fn(&mut BytesMut) -> Result<()>,
) -> Result<()> {
    framed(out, api_key, version, &|w| {
        let header = ResponseHeader { correlation_id, ..Default::default() };
        header.encode(w, api_key.response_header_version(version))?;
        body(w)
    })
}

/// A decoded request: its header and body.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedRequest {
    /// The API of the request.
    pub api_key: ApiKey,
    /// The request header (api key, version, correlation id, client id).
    pub header: RequestHeader,
    /// The request body.
    pub body: RequestBody,
}

/// Decodes a request frame (without its size prefix): header, then body at the header's
/// version. Unknown API keys give [`ProtocolError::UnknownApiKey`] and unknown versions
/// [`ProtocolError::UnsupportedVersion`]; use [`peek_request`] to answer them.
pub fn decode_request(mut frame: Bytes) -> Result<DecodedRequest> {
    let prefix = peek_request(&frame)?;
    let api_key = ApiKey::from_key(prefix.api_key).ok_or(ProtocolError::UnknownApiKey(prefix.api_key))?;
    check_version(api_key, prefix.api_version)?;
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(prefix.api_version))?;
    let body = RequestBody::decode(api_key, &mut frame, prefix.api_version)?;
    Ok(DecodedRequest { api_key, header, body })
}

/// Decodes a response frame (without its size prefix) of a known API and version, returning
/// the correlation id and the body.
pub fn decode_response<R: Response>(mut frame: Bytes, version: i16) -> Result<(i32, R)> {
    check_version(R::API_KEY, version)?;
    let header = ResponseHeader::decode(&mut frame, R::API_KEY.response_header_version(version))?;
    Ok((header.correlation_id, R::decode(&mut frame, version)?))
}

/// Decodes any response frame given the API and version of the request it answers.
pub fn decode_response_body(mut frame: Bytes, api_key: ApiKey, version: i16) -> Result<(i32, ResponseBody)> {
    check_version(api_key, version)?;
    let header = ResponseHeader::decode(&mut frame, api_key.response_header_version(version))?;
    Ok((header.correlation_id, ResponseBody::decode(api_key, &mut frame, version)?))
}

/// Reads the correlation id at the start of a response frame (every response header starts
/// with it), to find the request a response answers before decoding it.
pub fn peek_correlation_id(frame: &[u8]) -> Result<i32> {
    match frame.get(..4) {
        Some(mut b) => Ok(b.get_i32()),
        None => Err(ProtocolError::Truncated { needed: 4, remaining: frame.len() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, ProduceRequest};

    #[test]
    fn negative_and_oversized_frames_are_refused_before_allocating() {
        let mut d = FrameDecoder::new(1024);
        let mut buf = BytesMut::from(&(-1i32).to_be_bytes()[..]);
        assert_eq!(d.decode(&mut buf), Err(ProtocolError::NegativeFrameSize(-1)));
        let mut buf = BytesMut::from(&2048i32.to_be_bytes()[..]);
        assert!(matches!(d.decode(&mut buf), Err(ProtocolError::FrameTooLarge { size: 2048, max: 1024, hint: "" })));
        assert!(buf.capacity() < 2048);
    }

    #[test]
    fn an_incomplete_frame_reserves_by_the_bytes_received_not_the_size_claimed() {
        let mut d = FrameDecoder::new(DEFAULT_MAX_FRAME_SIZE);
        // A prefix claiming 100 MiB - 1, then 100 bytes.
        let mut buf = BytesMut::from(&((100 << 20) - 1i32).to_be_bytes()[..]);
        buf.extend_from_slice(&[7u8; 100]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert!(buf.capacity() <= 2 * RESERVE_STEP, "reserved {} bytes", buf.capacity());
        // A real frame of 1 MiB arriving in 10 KiB pieces: the buffer grows with it, and the
        // frame comes out whole.
        let size = 1 << 20;
        let mut buf = BytesMut::from(&(size as i32).to_be_bytes()[..]);
        let mut sent = 0;
        let frame = loop {
            if let Some(f) = d.decode(&mut buf).unwrap() {
                break f;
            }
            // (BytesMut itself at least doubles a buffer it reallocates.)
            assert!(buf.capacity() <= 4 * (buf.len() + RESERVE_STEP), "{} for {}", buf.capacity(), buf.len());
            let piece = (size - sent).min(10 * 1024);
            buf.extend_from_slice(&vec![1u8; piece]);
            sent += piece;
        };
        assert_eq!(frame.len(), size);
    }

    #[test]
    fn tls_bytes_get_a_hint() {
        // A TLS alert record: 0x15 0x03 0x03 0x00 ...
        let err = check_frame_size([0x15, 0x03, 0x03, 0x00], DEFAULT_MAX_FRAME_SIZE).unwrap_err();
        assert!(err.to_string().contains("may require TLS"), "{err}");
        assert!(matches!(err, ProtocolError::FrameTooLarge { size: 352_518_912, .. }));
    }

    #[test]
    fn request_round_trip_with_headers() {
        let req = MetadataRequest { allow_auto_topic_creation: false, ..Default::default() };
        for version in [4, 9, 12] {
            let mut out = BytesMut::new();
            encode_request(&mut out, 7, Some("client-a"), &req, version).unwrap();
            let mut d = FrameDecoder::default();
            let frame = d.decode(&mut out).unwrap().unwrap();
            assert!(out.is_empty());
            let p = peek_request(&frame).unwrap();
            assert_eq!((p.api_key, p.api_version, p.correlation_id), (3, version, 7));
            let decoded = decode_request(frame).unwrap();
            assert_eq!(decoded.header.client_id.as_deref(), Some("client-a"));
            assert_eq!(decoded.body, RequestBody::Metadata(req.clone()));
        }
    }

    #[test]
    fn api_versions_response_uses_header_v0_even_when_flexible() {
        let resp = ApiVersionsResponse { error_code: 35, ..Default::default() };
        let mut out = BytesMut::new();
        encode_response(&mut out, 42, &resp, 3).unwrap();
        // size, correlation id, then immediately the body's error code (no tagged fields).
        assert_eq!(&out[4..10], &[0, 0, 0, 42, 0, 35]);
        let (corr, decoded) = decode_response::<ApiVersionsResponse>(out.freeze().slice(4..), 3).unwrap();
        assert_eq!((corr, decoded.error_code), (42, 35));
    }

    #[test]
    fn unknown_api_key_and_version_are_typed_errors() {
        let mut out = BytesMut::new();
        encode_request(&mut out, 1, None, &ApiVersionsRequest::default(), 0).unwrap();
        let mut frame = out.split_off(4);
        frame[0..2].copy_from_slice(&500i16.to_be_bytes());
        assert_eq!(decode_request(frame.clone().freeze()), Err(ProtocolError::UnknownApiKey(500)));
        frame[0..2].copy_from_slice(&18i16.to_be_bytes());
        frame[2..4].copy_from_slice(&99i16.to_be_bytes());
        assert!(matches!(
            decode_request(frame.freeze()),
            Err(ProtocolError::UnsupportedVersion { api_key: 18, version: 99, .. })
        ));
    }

    #[test]
    fn consumed_chunks_leave_exactly_the_unwritten_bytes() {
        let mut q: std::collections::VecDeque<Bytes> =
            [&b"abc"[..], b"", b"defg", b"h"].iter().map(|c| Bytes::copy_from_slice(c)).collect();
        consume_chunks(&mut q, 5);
        assert_eq!(q.iter().flat_map(|c| c.iter().copied()).collect::<Vec<u8>>(), b"fgh");
        consume_chunks(&mut q, 3);
        assert!(q.is_empty());
        consume_chunks(&mut q, 1);
        assert!(q.is_empty());
    }

    #[test]
    fn chunked_produce_request_keeps_records_uncopied() {
        use crate::messages::produce_request::{PartitionProduceData, TopicProduceData};
        let records = Bytes::from(vec![0xab; 64 * 1024]);
        let req = ProduceRequest {
            acks: -1,
            timeout_ms: 1000,
            topic_data: vec![TopicProduceData {
                name: "t".into(),
                partition_data: vec![PartitionProduceData {
                    index: 0,
                    records: Some(records.clone()),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        for version in [3, 9] {
            let chunks = encode_request_chunked(5, Some("c"), &req, version, 4096).unwrap();
            assert!(chunks.iter().any(|c| c.as_ptr() == records.as_ptr()), "records were copied");
            let mut flat = BytesMut::new();
            encode_request(&mut flat, 5, Some("c"), &req, version).unwrap();
            let joined: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
            assert_eq!(joined, flat.to_vec());
        }
    }
}
