//! gzip (RFC 1952) through flate2's pure-Rust backend.

use std::io::Write;

use bytes::{BufMut, Bytes, BytesMut};

use super::{codec_error, read_bounded, Compression};
use crate::error::Result;

/// An upper bound on the bytes [`compress`] appends for `n` input bytes: deflate's worst case
/// (stored blocks, 5 bytes per block of at most 16 KiB here, generously) plus the gzip header
/// and trailer.
pub(super) fn max_compressed_len(n: usize) -> usize {
    n.saturating_add(n / 16).saturating_add(64)
}

/// Appends `input` as one gzip member at `level` (1-9).
pub(super) fn compress(level: i32, input: &[u8], out: &mut BytesMut) -> Result<()> {
    let level = flate2::Compression::new(level.clamp(0, 9) as u32);
    out.reserve(input.len() / 2 + 64);
    let mut encoder = flate2::write::GzEncoder::new(out.writer(), level);
    encoder.write_all(input).map_err(|e| codec_error(Compression::Gzip, e))?;
    encoder.finish().map_err(|e| codec_error(Compression::Gzip, e))?;
    Ok(())
}

/// Decodes one or more concatenated gzip members, bounded by `limit`. Unlike Java's
/// `GZIPInputStream`, bytes after the last member that are not a valid member are an error.
pub(super) fn decompress(input: &[u8], limit: usize) -> Result<Bytes> {
    let decoder = flate2::read::MultiGzDecoder::new(input);
    read_bounded(Compression::Gzip, decoder, limit, input.len().saturating_mul(4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_concatenated_members_like_java() {
        let mut out = BytesMut::new();
        compress(6, b"one ", &mut out).unwrap();
        compress(1, b"two", &mut out).unwrap();
        assert_eq!(&decompress(&out, 100).unwrap()[..], b"one two");
    }

    #[test]
    fn output_is_standard_gzip() {
        let mut out = BytesMut::new();
        compress(9, b"hello", &mut out).unwrap();
        assert_eq!(&out[..3], &[0x1f, 0x8b, 8]);
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&out[..]), &mut plain).unwrap();
        assert_eq!(plain, b"hello");
    }
}
