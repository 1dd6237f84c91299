//! LZ4 frame format, as Kafka uses it.
//!
//! Encoding writes the frame by hand around `lz4_flex`'s block compressor, straight into the
//! output buffer: magic `0x184D2204`, FLG `0x60` (version 01, independent blocks, no block or
//! content checksum, no content size), BD `0x40` (64 KiB blocks), the header checksum byte, then
//! each 64 KiB block as a little-endian `u32` size (high bit set for a block stored
//! uncompressed) and its bytes, and a zero end mark. This is exactly the shape Java's
//! `Lz4BlockOutputStream` writes. Decoding goes through `lz4_flex::frame::FrameDecoder`, which
//! accepts every valid frame.
//!
//! lz4_flex treats input that ends at a block boundary as a complete frame, so before decoding,
//! [`check_frames`] walks the block structure (sizes only) and rejects frames cut before their
//! end mark, as Java's reader does.
//!
//! lz4_flex has only LZ4's fast compressor, so Kafka's lz4 levels (1-17, default 9) are
//! accepted by the caller but do not change the output.

use std::io::Read;

use bytes::{Bytes, BytesMut};

use super::{codec_error, read_bounded, Compression};
use crate::error::Result;

const MAGIC: [u8; 4] = 0x184D_2204u32.to_le_bytes();
const FLG: u8 = 0x60;
const BD: u8 = 0x40;
const BLOCK_SIZE: usize = 64 * 1024;
/// `FLG` bits that add optional descriptor fields.
const FLG_CONTENT_SIZE: u8 = 0x08;
const FLG_DICT_ID: u8 = 0x01;
const FLG_BLOCK_CHECKSUM: u8 = 0x10;
const FLG_CONTENT_CHECKSUM: u8 = 0x04;
const UNCOMPRESSED_BIT: u32 = 0x8000_0000;

/// An upper bound on the bytes [`compress`] appends for `n` input bytes.
pub(super) fn max_compressed_len(n: usize) -> usize {
    let blocks = n.div_ceil(BLOCK_SIZE);
    // Header (7), per-block size (4) and at most the block itself (it is stored raw otherwise),
    // end mark (4).
    7usize.saturating_add(blocks.saturating_mul(4)).saturating_add(n).saturating_add(4)
}

/// Appends `input` as one LZ4 frame.
pub(super) fn compress(input: &[u8], out: &mut BytesMut) -> Result<()> {
    let bound = lz4_flex::block::get_maximum_output_size(BLOCK_SIZE);
    out.reserve(max_compressed_len(input.len()).saturating_add(bound));
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[FLG, BD, header_checksum(&[FLG, BD])]);
    for block in input.chunks(BLOCK_SIZE) {
        let size_at = out.len();
        let data_at = size_at + 4;
        out.resize(data_at + bound, 0);
        let dest = out.get_mut(data_at..).ok_or_else(|| codec_error(Compression::Lz4, "output buffer"))?;
        let n = lz4_flex::block::compress_into(block, dest).map_err(|e| codec_error(Compression::Lz4, e))?;
        let size_word = if n < block.len() {
            n as u32
        } else {
            // Incompressible: store the block as it is.
            out.truncate(data_at);
            out.extend_from_slice(block);
            block.len() as u32 | UNCOMPRESSED_BIT
        };
        out.truncate(data_at + (size_word & !UNCOMPRESSED_BIT) as usize);
        if let Some(slot) = out.get_mut(size_at..data_at) {
            slot.copy_from_slice(&size_word.to_le_bytes());
        }
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    Ok(())
}

/// Decodes one or more LZ4 frames, bounded by `limit`.
pub(super) fn decompress(input: &[u8], limit: usize) -> Result<Bytes> {
    // Only modern frames: the legacy LZ4 frame (magic 0x184C2102) has 8 MiB blocks, which
    // lz4_flex would buffer whole whatever the limit, and no Kafka client writes it.
    if input.get(..4) != Some(&MAGIC[..]) {
        return Err(codec_error(Compression::Lz4, "not an lz4 frame (bad magic number)"));
    }
    check_frames(input)?;
    let frames = Frames { decoder: lz4_flex::frame::FrameDecoder::new(input) };
    read_bounded(Compression::Lz4, frames, limit, input.len().saturating_mul(4))
}

/// Reads concatenated frames: lz4_flex's decoder reports end of input after each frame.
struct Frames<'a> {
    decoder: lz4_flex::frame::FrameDecoder<&'a [u8]>,
}

impl Read for Frames<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.decoder.read(buf)?;
            if n > 0 || buf.is_empty() || self.decoder.get_ref().is_empty() {
                return Ok(n);
            }
        }
    }
}

/// Decodes an LZ4 frame whose header checksum byte may be wrong.
///
/// Before Kafka 0.10 (KAFKA-3160) the Java client computed the frame's header checksum over the
/// magic number and the descriptor instead of the descriptor alone, and message format v0 kept
/// that broken checksum for compatibility (Java reads v0 with the check disabled). This
/// recomputes the checksum of the first frame's descriptor, i.e. ignores the stored one, and
/// then decodes normally (block and content checksums, if present, are still verified). It
/// copies the input once; legacy lz4 messages are rare.
pub(crate) fn decompress_ignoring_header_checksum(input: &[u8], limit: usize) -> Result<Bytes> {
    let flg = match (input.get(..4), input.get(4)) {
        (Some(magic), Some(flg)) if magic == MAGIC => *flg,
        _ => return decompress(input, limit),
    };
    let mut descriptor_len = 2;
    if flg & FLG_CONTENT_SIZE != 0 {
        descriptor_len += 8;
    }
    if flg & FLG_DICT_ID != 0 {
        descriptor_len += 4;
    }
    let hc_at = 4 + descriptor_len;
    let Some(descriptor) = input.get(4..hc_at) else {
        return Err(codec_error(Compression::Lz4, "truncated frame header"));
    };
    let hc = header_checksum(descriptor);
    let mut fixed = input.to_vec();
    match fixed.get_mut(hc_at) {
        Some(b) => *b = hc,
        None => return Err(codec_error(Compression::Lz4, "truncated frame header")),
    }
    decompress(&fixed, limit)
}

/// Walks the frames' structure without decoding: every frame must have a complete header and
/// end with its end mark (and content checksum, if flagged) before the input ends.
fn check_frames(input: &[u8]) -> Result<()> {
    let truncated = || codec_error(Compression::Lz4, "truncated frame");
    let mut rest = input;
    loop {
        let Some((magic, after)) = rest.split_first_chunk::<4>() else {
            return Err(truncated());
        };
        if *magic != MAGIC {
            return Err(codec_error(Compression::Lz4, "not an lz4 frame (bad magic number)"));
        }
        let Some(&flg) = after.first() else {
            return Err(truncated());
        };
        let mut header_len = 3; // FLG, BD, HC
        if flg & FLG_CONTENT_SIZE != 0 {
            header_len += 8;
        }
        if flg & FLG_DICT_ID != 0 {
            header_len += 4;
        }
        let block_checksum = if flg & FLG_BLOCK_CHECKSUM != 0 { 4 } else { 0 };
        rest = after.get(header_len..).ok_or_else(truncated)?;
        loop {
            let Some((size, after)) = rest.split_first_chunk::<4>() else {
                return Err(truncated());
            };
            let size = u32::from_le_bytes(*size);
            if size == 0 {
                let trailer = if flg & FLG_CONTENT_CHECKSUM != 0 { 4 } else { 0 };
                rest = after.get(trailer..).ok_or_else(truncated)?;
                break;
            }
            let len = ((size & !UNCOMPRESSED_BIT) as usize).saturating_add(block_checksum);
            rest = after.get(len..).ok_or_else(truncated)?;
        }
        if rest.is_empty() {
            return Ok(());
        }
    }
}

/// The frame header checksum: second byte of xxHash32 (seed 0) of the descriptor.
fn header_checksum(descriptor: &[u8]) -> u8 {
    (xxh32(descriptor, 0) >> 8) as u8
}

const P1: u32 = 0x9E37_79B1;
const P2: u32 = 0x85EB_CA77;
const P3: u32 = 0xC2B2_AE3D;
const P4: u32 = 0x27D4_EB2F;
const P5: u32 = 0x1656_67B1;

fn le32(b: &[u8]) -> u32 {
    let mut w = [0u8; 4];
    for (d, s) in w.iter_mut().zip(b) {
        *d = *s;
    }
    u32::from_le_bytes(w)
}

fn xxh_round(acc: u32, lane: u32) -> u32 {
    acc.wrapping_add(lane.wrapping_mul(P2)).rotate_left(13).wrapping_mul(P1)
}

/// xxHash32, used only for the LZ4 frame header checksum (lz4_flex keeps its own private).
pub(super) fn xxh32(input: &[u8], seed: u32) -> u32 {
    let mut rest = input;
    let mut h = if input.len() >= 16 {
        let mut v = [seed.wrapping_add(P1).wrapping_add(P2), seed.wrapping_add(P2), seed, seed.wrapping_sub(P1)];
        let mut stripes = input.chunks_exact(16);
        for stripe in &mut stripes {
            for (acc, lane) in v.iter_mut().zip(stripe.chunks_exact(4)) {
                *acc = xxh_round(*acc, le32(lane));
            }
        }
        rest = stripes.remainder();
        let [v1, v2, v3, v4] = v;
        v1.rotate_left(1)
            .wrapping_add(v2.rotate_left(7))
            .wrapping_add(v3.rotate_left(12))
            .wrapping_add(v4.rotate_left(18))
    } else {
        seed.wrapping_add(P5)
    };
    h = h.wrapping_add(input.len() as u32);
    let mut words = rest.chunks_exact(4);
    for w in &mut words {
        h = h.wrapping_add(le32(w).wrapping_mul(P3)).rotate_left(17).wrapping_mul(P4);
    }
    for &b in words.remainder() {
        h = h.wrapping_add(u32::from(b).wrapping_mul(P5)).rotate_left(11).wrapping_mul(P1);
    }
    h ^= h >> 15;
    h = h.wrapping_mul(P2);
    h ^= h >> 13;
    h = h.wrapping_mul(P3);
    h ^= h >> 16;
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn xxh32_known_vectors() {
        assert_eq!(xxh32(b"", 0), 0x02CC_5D05);
        assert_eq!(xxh32(b"a", 0), 0x550D_7456);
        assert_eq!(xxh32(b"abc", 0), 0x32D1_53FF);
        assert_eq!(xxh32(b"Nobody inspects the spammish repetition", 0), 0xE229_3B2F);
    }

    #[test]
    fn frame_header_matches_lz4_flex_and_java() {
        // Java's Lz4BlockOutputStream header for FLG 0x60, BD 0x40 is 04 22 4D 18 60 40 82.
        let mut out = BytesMut::new();
        compress(b"", &mut out).unwrap();
        assert_eq!(&out[..], &[0x04, 0x22, 0x4D, 0x18, 0x60, 0x40, 0x82, 0, 0, 0, 0]);
        // lz4_flex's own encoder with the same settings writes the same header.
        let info = lz4_flex::frame::FrameInfo::new()
            .block_size(lz4_flex::frame::BlockSize::Max64KB)
            .block_mode(lz4_flex::frame::BlockMode::Independent);
        let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
        enc.write_all(b"hello hello hello hello").unwrap();
        let theirs = enc.finish().unwrap();
        assert_eq!(&theirs[..7], &out[..7]);
        assert_eq!(&decompress(&theirs, 100).unwrap()[..], b"hello hello hello hello");
    }

    #[test]
    fn reads_frames_with_checksums_content_size_and_linked_blocks() {
        let data = super::super::tests::sample(300_000);
        for (mode, checksums, size) in [
            (lz4_flex::frame::BlockMode::Independent, true, Some(300_000u64)),
            (lz4_flex::frame::BlockMode::Linked, false, None),
            (lz4_flex::frame::BlockMode::Linked, true, Some(300_000)),
        ] {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_mode(mode)
                .block_checksums(checksums)
                .content_checksum(checksums)
                .content_size(size);
            let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
            enc.write_all(&data).unwrap();
            let mut frame = enc.finish().unwrap();
            assert_eq!(&decompress(&frame, data.len()).unwrap()[..], &data[..]);
            // Two frames back to back.
            let copy = frame.clone();
            frame.extend_from_slice(&copy);
            assert_eq!(decompress(&frame, 2 * data.len()).unwrap().len(), 2 * data.len());
            // Cut anywhere in the trailer: error.
            for cut in 1..=8 {
                assert!(decompress(&copy[..copy.len() - cut], data.len()).is_err());
            }
        }
    }

    #[test]
    fn incompressible_blocks_are_stored() {
        let data = super::super::tests::sample(200_000);
        let random: Vec<u8> = data.iter().enumerate().map(|(i, b)| b ^ (i as u8).wrapping_mul(31)).collect();
        let mut out = BytesMut::new();
        compress(&random, &mut out).unwrap();
        assert_eq!(&decompress(&out, random.len()).unwrap()[..], &random[..]);
    }

    #[test]
    fn kafka_3160_broken_header_checksum() {
        let data = b"kafka 3160 kafka 3160 kafka 3160 kafka 3160".repeat(10);
        let mut out = BytesMut::new();
        compress(&data, &mut out).unwrap();
        // The broken checksum covers magic + descriptor.
        out[6] = (xxh32(&out[..6], 0) >> 8) as u8;
        assert_eq!(out[6], 0x1A, "the value Kafka's MessageCompressionTest uses for v0");
        assert!(decompress(&out, 1 << 20).is_err(), "a strict decoder rejects it");
        assert_eq!(&decompress_ignoring_header_checksum(&out, 1 << 20).unwrap()[..], &data[..]);
        // A correct header also passes, and truncated headers are errors.
        out[6] = 0x82;
        assert_eq!(&decompress_ignoring_header_checksum(&out, 1 << 20).unwrap()[..], &data[..]);
        for cut in 0..8 {
            assert!(decompress_ignoring_header_checksum(&out[..cut], 1 << 20).is_err(), "cut {cut}");
        }
    }
}
