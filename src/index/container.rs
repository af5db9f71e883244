//! The envelope every ponder index file uses: magic, format version, payload, and a footer
//! with a CRC32 of everything before it. Readers check all three and name the file on error.

use std::path::Path;

use crate::error::{Error, Result};

/// Version of the index file formats; bumped on any incompatible change.
/// 2: chunk records carry their PDF pages; the lexical analyzer folds accents, segments CJK
/// and stems per detected language.
/// 3: lexical segments are laid out to be read in place from a memory map (no decoding on open).
pub const INDEX_FORMAT_VERSION: u32 = 3;
pub(crate) const FOOTER_MAGIC: &[u8; 8] = b"PNDRFOOT";
/// Bytes before the payload: magic and format version.
pub const HEADER_LEN: usize = 12;
const FOOTER_LEN: usize = 12;

/// Wraps `payload` with an 8-byte `magic`, the format version and a checksummed footer.
pub fn seal(magic: &[u8; 8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + HEADER_LEN + FOOTER_LEN);
    out.extend_from_slice(magic);
    out.extend_from_slice(&INDEX_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(FOOTER_MAGIC);
    out
}

/// Checks magic, version and checksum; returns the payload.
pub fn open<'a>(magic: &[u8; 8], bytes: &'a [u8], path: &Path) -> Result<&'a [u8]> {
    let payload = open_unverified(magic, bytes, path)?;
    let body_end = bytes.len() - FOOTER_LEN;
    let stored = u32::from_le_bytes(bytes[body_end..body_end + 4].try_into().unwrap());
    if crc32fast::hash(&bytes[..body_end]) != stored {
        return Err(Error::corrupt(path, "checksum mismatch"));
    }
    Ok(payload)
}

/// Checks magic, version and footer, not the checksum; returns the payload. For files read in
/// place on the query path, whose readers bounds-check every read: hashing a large file whole
/// would cost more than the query. `ponder check` and the writer verify checksums.
pub fn open_unverified<'a>(magic: &[u8; 8], bytes: &'a [u8], path: &Path) -> Result<&'a [u8]> {
    if bytes.len() < HEADER_LEN + FOOTER_LEN {
        return Err(Error::corrupt(path, format!("truncated ({} bytes)", bytes.len())));
    }
    if &bytes[..8] != magic {
        return Err(Error::corrupt(path, "wrong file type (bad magic)"));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    if version != INDEX_FORMAT_VERSION {
        return Err(Error::corrupt(
            path,
            format!("index format version {version}; this ponder reads version {INDEX_FORMAT_VERSION} (run `ponder index --rebuild`)"),
        ));
    }
    let body_end = bytes.len() - FOOTER_LEN;
    if &bytes[body_end + 4..] != FOOTER_MAGIC {
        return Err(Error::corrupt(path, "truncated (no footer)"));
    }
    Ok(&bytes[HEADER_LEN..body_end])
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_every_single_byte_flip_is_caught() {
        let sealed = seal(b"TESTTEST", b"hello payload");
        assert_eq!(open(b"TESTTEST", &sealed, Path::new("x")).unwrap(), b"hello payload");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(open(b"TESTTEST", &bad, Path::new("x")).is_err(), "flip at {i} not caught");
        }
        for n in 0..sealed.len() {
            assert!(open(b"TESTTEST", &sealed[..n], Path::new("x")).is_err());
        }
    }
}
