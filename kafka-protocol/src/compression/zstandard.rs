//! Zstandard through the `zstd` crate (libzstd).
//!
//! Compression reuses one compression context per thread (creating a context and its ~1 MiB of
//! tables per batch would cost more than compressing a small batch). Decompression streams
//! through `zstd::stream::read::Decoder` under [`read_bounded`], so the limit is enforced while
//! decoding, and the window a frame may demand is capped from the limit (see
//! [`window_log_max`]), which bounds libzstd's internal buffer.

use std::cell::RefCell;
use std::ops::RangeInclusive;

use bytes::{Bytes, BytesMut};

use super::{codec_error, read_bounded, Compression};
use crate::error::Result;

/// Kafka's default zstd level (and libzstd's).
pub(super) const DEFAULT_LEVEL: i32 = 3;

/// The levels libzstd accepts (its negative "fast" levels through 22).
pub(super) fn level_range() -> RangeInclusive<i32> {
    zstd::compression_level_range()
}

/// An upper bound on the bytes [`compress`] appends for `n` input bytes.
pub(super) fn max_compressed_len(n: usize) -> usize {
    zstd::zstd_safe::compress_bound(n)
}

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
}

fn compress_with(c: &mut zstd::bulk::Compressor<'static>, input: &[u8], out: &mut BytesMut) -> Result<()> {
    let start = out.len();
    out.resize(start + max_compressed_len(input.len()), 0);
    let dest = out.get_mut(start..).ok_or_else(|| codec_error(Compression::Zstd, "output buffer"))?;
    let n = c.compress_to_buffer(input, dest).map_err(|e| codec_error(Compression::Zstd, e));
    match n {
        Ok(n) => {
            out.truncate(start + n);
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// Appends `input` as one zstd frame (with its content size) at `level`.
pub(super) fn compress(level: i32, input: &[u8], out: &mut BytesMut) -> Result<()> {
    COMPRESSOR.with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            // Re-entered on this thread (cannot happen today): use a private context.
            let mut c = zstd::bulk::Compressor::new(level).map_err(|e| codec_error(Compression::Zstd, e))?;
            return compress_with(&mut c, input, out);
        };
        match slot.as_mut() {
            Some((l, c)) if *l == level => compress_with(c, input, out),
            Some((l, c)) => {
                c.set_compression_level(level).map_err(|e| codec_error(Compression::Zstd, e))?;
                *l = level;
                compress_with(c, input, out)
            }
            None => {
                let c = zstd::bulk::Compressor::new(level).map_err(|e| codec_error(Compression::Zstd, e))?;
                let (_, c) = slot.insert((level, c));
                compress_with(c, input, out)
            }
        }
    })
}

/// The largest window (as a power of two) a frame may ask for, given the output limit.
///
/// A frame declares its window size and libzstd allocates that much before producing any
/// output, so a tiny hostile frame could otherwise make it reserve 128 MiB (its own default
/// cap, 2^27) whatever our limit. Windows up to `max(8 MiB, ~4 x limit)` are allowed: 8 MiB
/// covers every level through 19 (what Java and librdkafka use), and a window larger than
/// four times the output allowed buys nothing.
fn window_log_max(limit: usize) -> u32 {
    let bits = usize::BITS - limit.leading_zeros(); // ceil-ish log2 of the limit
    (bits + 2).clamp(23, 27)
}

/// Decodes one or more zstd frames, bounded by `limit`.
pub(super) fn decompress(input: &[u8], limit: usize) -> Result<Bytes> {
    let err = |e: std::io::Error| codec_error(Compression::Zstd, e);
    let mut decoder = zstd::stream::read::Decoder::with_buffer(input).map_err(err)?;
    decoder.window_log_max(window_log_max(limit)).map_err(err)?;
    read_bounded(Compression::Zstd, decoder, limit, input.len().saturating_mul(4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_reuse_across_levels() {
        let data = super::super::tests::sample(50_000);
        for level in [3, 1, 3, 19, -5, 3] {
            let mut out = BytesMut::new();
            compress(level, &data, &mut out).unwrap();
            assert_eq!(&decompress(&out, data.len()).unwrap()[..], &data[..]);
            assert_eq!(zstd::decode_all(&out[..]).unwrap(), data);
        }
    }

    #[test]
    fn huge_windows_are_refused_for_small_limits() {
        assert_eq!(window_log_max(1 << 20), 23);
        assert_eq!(window_log_max(super::super::DEFAULT_DECOMPRESS_LIMIT), 27);
        assert_eq!(window_log_max(0), 23);
        // A streamed frame (no content size) that declares a 128 MiB window.
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        enc.window_log(27).unwrap();
        std::io::Write::write_all(&mut enc, b"tiny payload, huge window").unwrap();
        let frame = enc.finish().unwrap();
        assert!(matches!(decompress(&frame, 1 << 20), Err(crate::error::ProtocolError::Compression { .. })));
        assert_eq!(&decompress(&frame, 64 << 20).unwrap()[..], b"tiny payload, huge window");
        // Level 19 streamed frames (8 MiB windows) still decode under a 1 MiB limit.
        let frame = zstd::stream::encode_all(&b"level nineteen"[..], 19).unwrap();
        assert_eq!(&decompress(&frame, 1 << 20).unwrap()[..], b"level nineteen");
    }

    #[test]
    fn reads_streamed_frames_without_content_size() {
        let data = super::super::tests::sample(10_000);
        let framed = zstd::stream::encode_all(&data[..], 3).unwrap();
        assert_eq!(&decompress(&framed, 10_000).unwrap()[..], &data[..]);
        assert!(decompress(&framed, 9_999).is_err());
    }
}
