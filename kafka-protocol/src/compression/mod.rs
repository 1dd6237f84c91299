//! Compression codecs for record batches: gzip, snappy, lz4 and zstd, as Kafka writes them.
//!
//! [`compress`] appends the compressed form of its input to a `BytesMut`; [`decompress`] returns
//! the decompressed bytes and stops with [`ProtocolError::DecompressionLimit`] as soon as the
//! output would exceed the caller's limit, so a tiny hostile payload (a "decompression bomb")
//! cannot make the decoder allocate much more than that limit. Every decoder reports malformed,
//! truncated or trailing input as [`ProtocolError::Compression`] and never panics.
//!
//! Wire formats, matching what the Java client writes and reads:
//! - gzip: ordinary gzip (RFC 1952); several concatenated members are read, as Java's
//!   `GZIPInputStream` does.
//! - snappy: written in the xerial framing that the Java client uses (magic
//!   `0x82 "SNAPPY" 0x00`, version 1, compatible version 1, then 32 KiB blocks each prefixed by
//!   a big-endian `i32` length); read either framed or as one raw snappy block.
//! - lz4: the LZ4 frame format with 64 KiB independent blocks and no checksums, as Java's
//!   `Lz4BlockOutputStream` writes it. Any valid frame (linked blocks, checksums, content size)
//!   is read.
//! - zstd: one zstd frame; concatenated frames are read.

use std::fmt;
use std::io::Read;
use std::ops::RangeInclusive;
use std::str::FromStr;

use bytes::{Bytes, BytesMut};

use crate::error::{ProtocolError, Result};

mod gzip;
mod lz4;
mod snappy;
mod zstandard;

pub(crate) use lz4::decompress_ignoring_header_checksum as lz4_decompress_ignoring_header_checksum;

/// The default cap on the output of one decompression: 256 MiB.
///
/// A batch is at most `message.max.bytes` on the wire (1 MiB by default, rarely above a few
/// tens of MiB); real record data compresses by 2-10x, highly repetitive data by up to a few
/// hundred. 256 MiB leaves room for a full-size batch of very compressible data while keeping a
/// hostile batch (gzip and zstd reach ratios above 1000:1) from taking gigabytes. Consumers that
/// raise `max.partition.fetch.bytes` far beyond its default should raise this as well.
pub const DEFAULT_DECOMPRESS_LIMIT: usize = 256 * 1024 * 1024;

/// A record-batch compression codec. The discriminants are the ids in the low three bits of a
/// batch's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// No compression (id 0).
    #[default]
    None,
    /// gzip (id 1).
    Gzip,
    /// Snappy, xerial-framed (id 2).
    Snappy,
    /// LZ4 frame format (id 3).
    Lz4,
    /// Zstandard (id 4); needs Produce v7+ and Fetch v10+.
    Zstd,
}

impl Compression {
    /// All codecs, in id order.
    pub const ALL: [Compression; 5] =
        [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

    /// The codec's id as stored in the batch attributes (0-4).
    pub fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The codec with the given attribute id; ids 5-7 (and above) are
    /// [`ProtocolError::UnknownCompression`].
    pub fn from_id(id: u8) -> Result<Self> {
        match id {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            other => Err(ProtocolError::UnknownCompression(other)),
        }
    }

    /// Kafka's name for the codec (`compression.type`): "none", "gzip", "snappy", "lz4", "zstd".
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// The level used when none is given, as in Kafka (KIP-390): gzip 6 (zlib's default, which
    /// Java's `Deflater.DEFAULT_COMPRESSION` means), lz4 9, zstd 3. `None` for codecs without
    /// levels (none, snappy).
    pub fn default_level(self) -> Option<i32> {
        match self {
            Compression::None | Compression::Snappy => None,
            Compression::Gzip => Some(6),
            Compression::Lz4 => Some(9),
            Compression::Zstd => Some(zstandard::DEFAULT_LEVEL),
        }
    }

    /// The levels Kafka accepts for the codec: gzip 1..=9, lz4 1..=17, zstd from zstd's minimum
    /// (negative, fast) level to 22. `None` for codecs without levels.
    ///
    /// The lz4 level is accepted for compatibility but does not change the output: the pure-Rust
    /// lz4 encoder has only LZ4's fast mode, whose output is valid at every level but larger than
    /// the LZ4-HC output that the Java client produces at higher levels.
    pub fn level_range(self) -> Option<RangeInclusive<i32>> {
        match self {
            Compression::None | Compression::Snappy => None,
            Compression::Gzip => Some(1..=9),
            Compression::Lz4 => Some(1..=17),
            Compression::Zstd => Some(zstandard::level_range()),
        }
    }

    /// Resolves an optional level to the one to use, checking it against [`Self::level_range`].
    /// Codecs without levels ignore the argument and return `None`.
    pub fn resolve_level(self, level: Option<i32>) -> Result<Option<i32>> {
        let Some(range) = self.level_range() else {
            return Ok(None);
        };
        match level {
            None => Ok(self.default_level()),
            Some(l) if range.contains(&l) => Ok(Some(l)),
            Some(l) => Err(ProtocolError::ValueOutOfRange { what: "compression level", value: i64::from(l) }),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of parsing a [`Compression`] from a name Kafka does not define.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCompressionName(pub String);

impl fmt::Display for UnknownCompressionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown compression type {:?} (expected none, gzip, snappy, lz4 or zstd)", self.0)
    }
}

impl std::error::Error for UnknownCompressionName {}

impl FromStr for Compression {
    type Err = UnknownCompressionName;

    /// Parses Kafka's `compression.type` names, ignoring ASCII case and surrounding whitespace.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let t = s.trim();
        Compression::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(t))
            .ok_or_else(|| UnknownCompressionName(s.to_owned()))
    }
}

/// Compresses `input` with `codec` and appends the result to `out`.
///
/// `level` of `None` means the codec's Kafka default; a level outside
/// [`Compression::level_range`] is [`ProtocolError::ValueOutOfRange`]. Codecs without levels
/// (none, snappy) ignore it. `Compression::None` appends `input` unchanged.
pub fn compress(codec: Compression, level: Option<i32>, input: &[u8], out: &mut BytesMut) -> Result<()> {
    let level = codec.resolve_level(level)?;
    match codec {
        Compression::None => {
            out.extend_from_slice(input);
            Ok(())
        }
        Compression::Gzip => gzip::compress(level.unwrap_or(6), input, out),
        Compression::Snappy => snappy::compress(input, out),
        Compression::Lz4 => lz4::compress(input, out),
        Compression::Zstd => zstandard::compress(level.unwrap_or(zstandard::DEFAULT_LEVEL), input, out),
    }
}

/// An upper bound on what [`compress`] appends for `input_len` bytes, for reserving the output
/// buffer once.
pub fn max_compressed_len(codec: Compression, input_len: usize) -> usize {
    match codec {
        Compression::None => input_len,
        Compression::Gzip => gzip::max_compressed_len(input_len),
        Compression::Snappy => snappy::max_compressed_len(input_len),
        Compression::Lz4 => lz4::max_compressed_len(input_len),
        Compression::Zstd => zstandard::max_compressed_len(input_len),
    }
}

/// Decompresses `input` with `codec`.
///
/// Fails with [`ProtocolError::DecompressionLimit`] once the output would exceed `limit` bytes;
/// the output buffer never grows beyond `limit + 1` bytes. Malformed, truncated or trailing
/// input is [`ProtocolError::Compression`]. `Compression::None` returns a copy of `input`
/// (subject to the same limit).
pub fn decompress(codec: Compression, input: &[u8], limit: usize) -> Result<Bytes> {
    match codec {
        Compression::None => {
            if input.len() > limit {
                return Err(ProtocolError::DecompressionLimit { codec, limit });
            }
            Ok(Bytes::copy_from_slice(input))
        }
        Compression::Gzip => gzip::decompress(input, limit),
        Compression::Snappy => snappy::decompress(input, limit),
        Compression::Lz4 => lz4::decompress(input, limit),
        Compression::Zstd => zstandard::decompress(input, limit),
    }
}

/// Builds a [`ProtocolError::Compression`].
pub(crate) fn codec_error(codec: Compression, message: impl fmt::Display) -> ProtocolError {
    ProtocolError::Compression { codec, message: message.to_string() }
}

/// Reads `reader` to its end into one buffer, failing once more than `limit` bytes come out.
///
/// The buffer grows geometrically but never past `limit + 1` bytes, and each growth step is
/// filled through `Read::take`, so no read can push it further: memory stays bounded by the
/// limit whatever the compressed input claims. `size_hint` (e.g. a multiple of the compressed
/// size) sets the first reservation.
pub(crate) fn read_bounded<R: Read>(
    codec: Compression,
    mut reader: R,
    limit: usize,
    size_hint: usize,
) -> Result<Bytes> {
    let cap = limit.saturating_add(1);
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = size_hint.clamp(4096, 1 << 20);
    loop {
        let room = cap - out.len().min(cap);
        if room == 0 {
            return Err(ProtocolError::DecompressionLimit { codec, limit });
        }
        let want = chunk.min(room);
        out.reserve_exact(want);
        let got = (&mut reader).take(want as u64).read_to_end(&mut out).map_err(|e| codec_error(codec, e))?;
        if out.len() > limit {
            return Err(ProtocolError::DecompressionLimit { codec, limit });
        }
        if got < want {
            return Ok(Bytes::from(out));
        }
        // Grow geometrically: the total is at most twice what was produced so far, capped above.
        chunk = out.len().max(4096);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(len: usize) -> Vec<u8> {
        // Half pseudo-random, half repetitive text, like the benchmark payloads.
        let mut x: u32 = 0x1234_5678;
        let text = br#"{"user":"alice","action":"click","page":"/home","ts":1700000000000},"#;
        (0..len)
            .map(|i| {
                if (i / 512) % 2 == 0 {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                } else {
                    text[i % text.len()]
                }
            })
            .collect()
    }

    #[test]
    fn ids_names_and_parsing() {
        for (i, c) in Compression::ALL.into_iter().enumerate() {
            assert_eq!(c.id() as usize, i);
            assert_eq!(Compression::from_id(c.id()).unwrap(), c);
            assert_eq!(c.name().parse::<Compression>().unwrap(), c);
            assert_eq!(c.name().to_uppercase().parse::<Compression>().unwrap(), c);
            assert_eq!(c.to_string(), c.name());
        }
        for id in 5..=7 {
            assert_eq!(Compression::from_id(id), Err(ProtocolError::UnknownCompression(id)));
        }
        assert_eq!(" Zstd ".parse::<Compression>(), Ok(Compression::Zstd));
        assert!("brotli".parse::<Compression>().is_err());
        assert_eq!(Compression::default(), Compression::None);
    }

    #[test]
    fn levels() {
        assert_eq!(Compression::Gzip.default_level(), Some(6));
        assert_eq!(Compression::Lz4.default_level(), Some(9));
        assert_eq!(Compression::Zstd.default_level(), Some(3));
        assert_eq!(Compression::Snappy.default_level(), None);
        assert_eq!(Compression::Gzip.level_range(), Some(1..=9));
        assert_eq!(Compression::Lz4.level_range(), Some(1..=17));
        let z = Compression::Zstd.level_range().unwrap();
        assert!(z.contains(&22) && z.contains(&-5) && !z.contains(&23));
        let mut out = BytesMut::new();
        assert!(matches!(
            compress(Compression::Gzip, Some(10), b"x", &mut out),
            Err(ProtocolError::ValueOutOfRange { .. })
        ));
        assert!(matches!(
            compress(Compression::Lz4, Some(0), b"x", &mut out),
            Err(ProtocolError::ValueOutOfRange { .. })
        ));
        assert!(matches!(
            compress(Compression::Zstd, Some(23), b"x", &mut out),
            Err(ProtocolError::ValueOutOfRange { .. })
        ));
        // Codecs without levels ignore them.
        compress(Compression::Snappy, Some(99), b"x", &mut out).unwrap();
    }

    #[test]
    fn round_trip_every_codec_and_size() {
        for codec in Compression::ALL {
            for len in [0usize, 1, 100, 32 * 1024 - 1, 32 * 1024, 32 * 1024 + 1, 65536, 65537, 300_000] {
                let data = sample(len);
                let levels: Vec<Option<i32>> = match codec.level_range() {
                    Some(r) => vec![None, Some(*r.start()), Some(*r.end())],
                    None => vec![None],
                };
                for level in levels {
                    if codec == Compression::Zstd && level.is_some_and(|l| l > 19) && len > 100_000 {
                        continue; // slow and memory-hungry; covered at small sizes
                    }
                    let mut out = BytesMut::from(&b"prefix"[..]);
                    compress(codec, level, &data, &mut out).unwrap();
                    assert_eq!(&out[..6], b"prefix", "compress appends");
                    assert!(out.len() - 6 <= max_compressed_len(codec, len), "{codec} {len} bound");
                    let back = decompress(codec, &out[6..], len).unwrap();
                    assert_eq!(&back[..], &data[..], "{codec} level {level:?} len {len}");
                    if len > 0 {
                        assert_eq!(
                            decompress(codec, &out[6..], len - 1),
                            Err(ProtocolError::DecompressionLimit { codec, limit: len - 1 }),
                            "{codec} limit one below"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn bombs_are_stopped_at_the_limit() {
        let zeros = vec![0u8; 64 << 20];
        for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            let mut out = BytesMut::new();
            compress(codec, None, &zeros, &mut out).unwrap();
            assert!(out.len() < 4 << 20, "{codec} compresses zeros well");
            assert_eq!(
                decompress(codec, &out, 1 << 20),
                Err(ProtocolError::DecompressionLimit { codec, limit: 1 << 20 }),
                "{codec}"
            );
        }
    }

    #[test]
    fn garbage_and_truncation_are_errors_not_panics() {
        let data = sample(70_000);
        for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            let mut out = BytesMut::new();
            compress(codec, None, &data, &mut out).unwrap();
            // Truncation at many points (every byte near the ends, a stride in the middle).
            let n = out.len();
            let cuts: Vec<usize> = (0..n.min(64)).chain((64..n).step_by(97)).chain(n.saturating_sub(64)..n).collect();
            for cut in cuts {
                match decompress(codec, &out[..cut], 1 << 20) {
                    Err(ProtocolError::Compression { codec: c, .. }) => assert_eq!(c, codec),
                    // An empty or header-only input may legitimately decode to nothing, and raw
                    // snappy treats a cut framed header as a (bad) raw block; never the data.
                    Ok(b) => assert!(b.len() < data.len(), "{codec} cut {cut} decoded everything"),
                    Err(e) => panic!("{codec} cut {cut}: unexpected {e:?}"),
                }
            }
            // Flipped bytes: must not panic; errors must be Compression or a wrong-but-bounded output.
            for i in (0..n).step_by(13) {
                let mut bad = out.to_vec();
                bad[i] ^= 0x5a;
                match decompress(codec, &bad, 1 << 20) {
                    Ok(_) | Err(ProtocolError::Compression { .. }) | Err(ProtocolError::DecompressionLimit { .. }) => {}
                    Err(e) => panic!("{codec} flip {i}: unexpected {e:?}"),
                }
            }
            // Trailing garbage.
            let mut trailing = out.to_vec();
            trailing.extend_from_slice(b"garbage!garbage!");
            assert!(decompress(codec, &trailing, 1 << 20).is_err(), "{codec} trailing garbage");
            // Pure garbage.
            let garbage: Vec<u8> = sample(1000);
            assert!(decompress(codec, &garbage, 1 << 20).is_err(), "{codec} garbage");
        }
    }

    #[test]
    fn none_codec_copies_with_limit() {
        assert_eq!(&decompress(Compression::None, b"abc", 3).unwrap()[..], b"abc");
        assert!(decompress(Compression::None, b"abcd", 3).is_err());
    }

    #[test]
    fn read_bounded_grows_to_exact_limit() {
        let data = sample(10_000);
        assert_eq!(read_bounded(Compression::None, &data[..], 10_000, 1).unwrap().len(), 10_000);
        assert!(read_bounded(Compression::None, &data[..], 9_999, 1).is_err());
        assert_eq!(read_bounded(Compression::None, &data[..], usize::MAX, 1).unwrap().len(), 10_000);
    }
}
