//! Compression of what a party sends (results, checkpoints, uploads, message batches): gzip,
//! the encoding the server already uses towards parties, and only when it pays. The server
//! decompresses and counts sizes after decompression, against the same limits as
//! uncompressed bodies, so a small compressed body cannot expand past them.

use std::io::Write;

/// Bodies smaller than this go as they are: compressing them saves too little.
pub const COMPRESS_BYTES_MIN: usize = 16 * 1024;

/// `bytes` gzipped, when that makes them at least a tenth smaller; `None`: send them as they
/// are (small, or already compressed).
pub fn gzip_if_smaller(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.len() < COMPRESS_BYTES_MIN {
        return None;
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).ok()?;
    let compressed = encoder.finish().ok()?;
    (compressed.len() <= bytes.len() / 10 * 9).then_some(compressed)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn repetitive_bytes_shrink_and_decode_to_themselves() {
        let bytes = vec![7u8; 1 << 20];
        let compressed = gzip_if_smaller(&bytes).expect("a megabyte of sevens compresses");
        assert!(compressed.len() < bytes.len() / 100);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&compressed[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, bytes);
    }

    #[test]
    fn small_or_incompressible_bytes_go_as_they_are() {
        assert_eq!(gzip_if_smaller(&[7u8; 100]), None);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..64 * 1024)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        assert_eq!(gzip_if_smaller(&noise), None);
    }
}
