//! Snappy, in the xerial framing the Java client writes.
//!
//! Framed layout: magic `0x82 'S' 'N' 'A' 'P' 'P' 'Y' 0x00`, version `i32` (1), compatible
//! version `i32` (1), then blocks of a big-endian `i32` length and one raw snappy block of at
//! most 32 KiB of input each (xerial's default block size, which Kafka uses). Decoding also
//! accepts a header repeated between blocks (concatenated streams, as xerial does) and input
//! without the magic, read as one raw snappy block.
//!
//! Decoding is bounded: every block's declared output length is read with
//! `snap::raw::decompress_len` and summed against the limit before anything is allocated, and
//! the output is then allocated once at exactly that size.

use bytes::{Bytes, BytesMut};

use super::{codec_error, Compression};
use crate::error::{ProtocolError, Result};

/// The xerial magic.
const MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
/// Magic, version 1, compatible version 1.
const HEADER: [u8; 16] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1];
const BLOCK_SIZE: usize = 32 * 1024;

fn err(message: impl std::fmt::Display) -> ProtocolError {
    codec_error(Compression::Snappy, message)
}

/// An upper bound on the bytes [`compress`] appends for `n` input bytes.
pub(super) fn max_compressed_len(n: usize) -> usize {
    let full = n / BLOCK_SIZE;
    let tail = n % BLOCK_SIZE;
    let per_full = 4 + snap::raw::max_compress_len(BLOCK_SIZE);
    let tail_len = if tail > 0 { 4 + snap::raw::max_compress_len(tail) } else { 0 };
    HEADER.len().saturating_add(full.saturating_mul(per_full)).saturating_add(tail_len)
}

/// Appends `input` xerial-framed.
pub(super) fn compress(input: &[u8], out: &mut BytesMut) -> Result<()> {
    out.reserve(max_compressed_len(input.len()));
    out.extend_from_slice(&HEADER);
    let mut encoder = snap::raw::Encoder::new();
    for block in input.chunks(BLOCK_SIZE) {
        let len_at = out.len();
        let data_at = len_at + 4;
        out.resize(data_at + snap::raw::max_compress_len(block.len()), 0);
        let dest = out.get_mut(data_at..).ok_or_else(|| err("output buffer"))?;
        let n = encoder.compress(block, dest).map_err(err)?;
        out.truncate(data_at + n);
        let n32 = i32::try_from(n).map_err(|_| err("block too large"))?;
        if let Some(slot) = out.get_mut(len_at..data_at) {
            slot.copy_from_slice(&n32.to_be_bytes());
        }
    }
    Ok(())
}

/// Splits framed input into its raw snappy blocks, skipping repeated stream headers.
struct Blocks<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Blocks<'a> {
    type Item = Result<&'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            if self.rest.starts_with(&MAGIC) {
                // A concatenated stream: skip its header.
                match self.rest.get(HEADER.len()..) {
                    Some(r) => {
                        self.rest = r;
                        continue;
                    }
                    None => {
                        self.rest = &[];
                        return Some(Err(err("truncated stream header")));
                    }
                }
            }
            let Some((len_bytes, after)) = self.rest.split_first_chunk::<4>() else {
                self.rest = &[];
                return Some(Err(err("truncated block length")));
            };
            let len = i32::from_be_bytes(*len_bytes);
            let Some(block) = usize::try_from(len).ok().and_then(|l| after.get(..l)) else {
                self.rest = &[];
                return Some(Err(err(format_args!("invalid block length {len} with {} bytes remaining", after.len()))));
            };
            self.rest = after.get(block.len()..).unwrap_or_default();
            return Some(Ok(block));
        }
    }
}

/// Decodes framed or raw snappy, bounded by `limit`.
pub(super) fn decompress(input: &[u8], limit: usize) -> Result<Bytes> {
    let limit_err = || ProtocolError::DecompressionLimit { codec: Compression::Snappy, limit };
    if !input.starts_with(&MAGIC) {
        let len = snap::raw::decompress_len(input).map_err(err)?;
        if len > limit {
            return Err(limit_err());
        }
        let mut out = vec![0u8; len];
        let n = snap::raw::Decoder::new().decompress(input, &mut out).map_err(err)?;
        out.truncate(n);
        return Ok(Bytes::from(out));
    }
    if input.len() < HEADER.len() {
        return Err(err("truncated stream header"));
    }
    // Pass 1: validate the framing and add up the declared output sizes.
    let mut total: usize = 0;
    for block in (Blocks { rest: input }) {
        let n = snap::raw::decompress_len(block?).map_err(err)?;
        total = total.checked_add(n).filter(|t| *t <= limit).ok_or_else(limit_err)?;
    }
    // Pass 2: decode each block into its place.
    let mut out = vec![0u8; total];
    let mut decoder = snap::raw::Decoder::new();
    let mut at = 0;
    for block in (Blocks { rest: input }) {
        let dest = out.get_mut(at..).ok_or_else(|| err("output overrun"))?;
        at += decoder.decompress(block?, dest).map_err(err)?;
    }
    if at != total {
        return Err(err("decoded length differs from the declared length"));
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_is_xerial() {
        let data = super::super::tests::sample(70_000);
        let mut out = BytesMut::new();
        compress(&data, &mut out).unwrap();
        assert_eq!(&out[..16], &HEADER);
        // Three blocks of 32 KiB, 32 KiB and the rest, each a valid raw snappy block.
        let blocks: Vec<&[u8]> = Blocks { rest: &out[16..] }.map(|b| b.unwrap()).collect();
        assert_eq!(blocks.len(), 3);
        let sizes: Vec<usize> = blocks.iter().map(|b| snap::raw::decompress_len(b).unwrap()).collect();
        assert_eq!(sizes, vec![32768, 32768, 70_000 - 65536]);
    }

    #[test]
    fn raw_snappy_and_concatenated_streams() {
        let raw = snap::raw::Encoder::new().compress_vec(b"raw raw raw raw raw").unwrap();
        assert_eq!(&decompress(&raw, 100).unwrap()[..], b"raw raw raw raw raw");
        assert!(decompress(&raw, 5).is_err());
        let mut two = BytesMut::new();
        compress(b"first ", &mut two).unwrap();
        compress(b"second", &mut two).unwrap();
        assert_eq!(&decompress(&two, 100).unwrap()[..], b"first second");
        // Header only: empty.
        assert!(decompress(&HEADER, 10).unwrap().is_empty());
    }

    #[test]
    fn bogus_block_lengths() {
        let mut bad = HEADER.to_vec();
        bad.extend_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(decompress(&bad, 100), Err(ProtocolError::Compression { .. })));
        let mut bad = HEADER.to_vec();
        bad.extend_from_slice(&1000i32.to_be_bytes());
        bad.extend_from_slice(b"short");
        assert!(matches!(decompress(&bad, 100), Err(ProtocolError::Compression { .. })));
        let mut bad = HEADER.to_vec();
        bad.extend_from_slice(&[0, 0]);
        assert!(matches!(decompress(&bad, 100), Err(ProtocolError::Compression { .. })));
        // A block claiming a huge output fails on the limit before allocating.
        let mut bad = HEADER.to_vec();
        bad.extend_from_slice(&4i32.to_be_bytes());
        bad.extend_from_slice(&[0x80, 0x80, 0x80, 0x40]); // 128 MiB
        assert!(matches!(decompress(&bad, 1 << 20), Err(ProtocolError::DecompressionLimit { .. })));
    }
}
