//! Token vectors for late interaction (ColBERT): each chunk's document token vectors, int8
//! with one scale per token, in immutable files read in place from a memory map.
//!
//! Layout of the payload (inside the common envelope, little-endian), for `n` chunks with
//! `rows` token vectors in all, each `dim` wide:
//!
//! ```text
//! codes       rows × dim  i8     token vectors, chunk after chunk
//! scales      rows        f32    value = code × scale
//! ids         n           u64    chunk ids, ascending
//! row_starts  n + 1       u64    chunk i owns rows row_starts[i]..row_starts[i+1]
//! trailer     dim u64, n u64, rows u64
//! ```
//!
//! Opening reads the trailer and checks that the sections fill the payload exactly; a lookup
//! binary-searches the ids and bounds-checks the rows it reads, so a damaged file yields an
//! error, never a panic. Whole-file checksums are left to `verify` (`ponder check`) and the
//! writer, as for the other files read in place.

use memmap2::Mmap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::container;
use crate::embed::colbert::{maxsim_i8, TokenMatrix};
use crate::error::{Error, Result};

pub(crate) const MAGIC: &[u8; 8] = b"PNDRTOKS";
const TRAILER: usize = 24;

/// One chunk's token vectors in stored form.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoredTokens {
    pub codes: Vec<i8>,
    pub scales: Vec<f32>,
}

/// Encodes chunks' token vectors (ascending ids) into a sealed file image.
pub fn encode(dim: usize, chunks: &[(u64, StoredTokens)]) -> Result<Vec<u8>> {
    let rows: usize = chunks.iter().map(|(_, t)| t.scales.len()).sum();
    let mut payload = Vec::with_capacity(rows * (dim + 4) + chunks.len() * 16 + 8 + TRAILER);
    let mut last = None;
    for (id, t) in chunks {
        if t.codes.len() != t.scales.len() * dim {
            return Err(Error::InvalidInput(format!("chunk {id}: {} token codes for {} tokens of width {dim}", t.codes.len(), t.scales.len())));
        }
        if last.is_some_and(|l| l >= *id) {
            return Err(Error::InvalidInput("token vectors must be stored in ascending chunk order".into()));
        }
        last = Some(*id);
        payload.extend(t.codes.iter().map(|&c| c as u8));
    }
    for (_, t) in chunks {
        for s in &t.scales {
            payload.extend_from_slice(&s.to_le_bytes());
        }
    }
    for (id, _) in chunks {
        payload.extend_from_slice(&id.to_le_bytes());
    }
    let mut row = 0u64;
    payload.extend_from_slice(&row.to_le_bytes());
    for (_, t) in chunks {
        row += t.scales.len() as u64;
        payload.extend_from_slice(&row.to_le_bytes());
    }
    for v in [dim as u64, chunks.len() as u64, rows as u64] {
        payload.extend_from_slice(&v.to_le_bytes());
    }
    Ok(container::seal(MAGIC, &payload))
}

/// Writes a token file chunk by chunk, holding only the scales and the tables in memory (the
/// codes, most of the file, go straight to disk): how compaction copies a large index's
/// tokens. The same bytes as [`encode`]; written under a temporary name, fsynced, renamed.
pub struct TokenWriter {
    out: std::io::BufWriter<File>,
    tmp: PathBuf,
    path: PathBuf,
    crc: crc32fast::Hasher,
    dim: usize,
    scales: Vec<f32>,
    ids: Vec<u64>,
    starts: Vec<u64>,
}

impl TokenWriter {
    pub fn create(path: &Path, dim: usize) -> Result<Self> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.tmp.{}", std::process::id()));
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut w = TokenWriter {
            out: std::io::BufWriter::with_capacity(1 << 20, file),
            tmp,
            path: path.to_path_buf(),
            crc: crc32fast::Hasher::new(),
            dim,
            scales: Vec::new(),
            ids: Vec::new(),
            starts: vec![0],
        };
        let mut head = MAGIC.to_vec();
        head.extend_from_slice(&container::INDEX_FORMAT_VERSION.to_le_bytes());
        w.write(&head)?;
        Ok(w)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.crc.update(bytes);
        self.out.write_all(bytes).map_err(|e| Error::io(&self.tmp, e))
    }

    /// Appends one chunk (ids ascending).
    pub fn push(&mut self, id: u64, t: &StoredTokens) -> Result<()> {
        if t.codes.len() != t.scales.len() * self.dim || self.ids.last().is_some_and(|&l| l >= id) {
            return Err(Error::InvalidInput(format!("chunk {id}: token vectors out of order or of the wrong width")));
        }
        let bytes: Vec<u8> = t.codes.iter().map(|&c| c as u8).collect();
        self.write(&bytes)?;
        self.scales.extend_from_slice(&t.scales);
        self.ids.push(id);
        self.starts.push(self.scales.len() as u64);
        Ok(())
    }

    /// Chunks pushed so far.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Writes the tables, trailer and footer, fsyncs and renames into place; returns the
    /// file's size and CRC32 (as the manifest records them).
    pub fn finish(mut self) -> Result<(u64, u32)> {
        let mut tail = Vec::with_capacity(self.scales.len() * 4 + self.ids.len() * 16 + 8 + TRAILER);
        self.scales.iter().for_each(|s| tail.extend_from_slice(&s.to_le_bytes()));
        self.ids.iter().for_each(|i| tail.extend_from_slice(&i.to_le_bytes()));
        self.starts.iter().for_each(|r| tail.extend_from_slice(&r.to_le_bytes()));
        for v in [self.dim as u64, self.ids.len() as u64, self.scales.len() as u64] {
            tail.extend_from_slice(&v.to_le_bytes());
        }
        self.write(&tail)?;
        let crc = std::mem::take(&mut self.crc).finalize();
        let mut footer = crc.to_le_bytes().to_vec();
        footer.extend_from_slice(container::FOOTER_MAGIC);
        self.out.write_all(&footer).map_err(|e| Error::io(&self.tmp, e))?;
        let file = self.out.into_inner().map_err(|e| Error::io(&self.tmp, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&self.tmp, e))?;
        drop(file);
        let (bytes, crc32) = crate::fsutil::crc32_file(&self.tmp)?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.tmp, e))?;
        if let Some(dir) = self.path.parent().and_then(|d| File::open(d).ok()) {
            let _ = dir.sync_all();
        }
        Ok((bytes, crc32))
    }
}

/// A mapped token file.
pub struct TokenFile {
    map: Mmap,
    path: PathBuf,
    dim: usize,
    n: usize,
    rows: usize,
    /// Offsets of the sections in the map.
    codes_at: usize,
    scales_at: usize,
    ids_at: usize,
    starts_at: usize,
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    bytes.get(at..at + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap()))
}

impl TokenFile {
    /// Drops the file's pages from this process's resident set (see
    /// [`crate::fsutil::release_mapped`]).
    pub fn release_pages(&self) {
        crate::fsutil::release_mapped(&self.map);
    }

    /// Opens a token file whose vectors are `dim` wide.
    pub fn open(path: &Path, dim: usize) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: data files are immutable once committed; every read below is bounds-checked.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let payload = container::open_unverified(MAGIC, &map, path)?;
        let bad = |m: String| Error::corrupt(path, m);
        if payload.len() < TRAILER {
            return Err(bad("no trailer".into()));
        }
        let t = payload.len() - TRAILER;
        let (fdim, n, rows) = (u64_at(payload, t).unwrap(), u64_at(payload, t + 8).unwrap(), u64_at(payload, t + 16).unwrap());
        if fdim != dim as u64 {
            return Err(bad(format!("token vectors are {fdim} wide, the index's model gives {dim}")));
        }
        // Section sizes, checked so that they cannot overflow and fill the payload exactly.
        let size = (|| {
            let codes = rows.checked_mul(fdim)?;
            let scales = rows.checked_mul(4)?;
            let ids = n.checked_mul(8)?;
            let starts = n.checked_add(1)?.checked_mul(8)?;
            codes.checked_add(scales)?.checked_add(ids)?.checked_add(starts)
        })();
        if size != Some(t as u64) {
            return Err(bad(format!("sections of {n} chunks and {rows} tokens do not fill {t} bytes")));
        }
        let (n, rows) = (n as usize, rows as usize);
        let codes_at = container::HEADER_LEN;
        let scales_at = codes_at + rows * dim;
        let ids_at = scales_at + rows * 4;
        let starts_at = ids_at + n * 8;
        Ok(TokenFile { map, path: path.to_path_buf(), dim, n, rows, codes_at, scales_at, ids_at, starts_at })
    }

    /// Chunks stored.
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    fn id(&self, i: usize) -> u64 {
        u64_at(&self.map, self.ids_at + i * 8).unwrap_or(u64::MAX)
    }

    /// Rows of entry `i`, checked.
    fn rows_of(&self, i: usize) -> Result<(usize, usize)> {
        let a = u64_at(&self.map, self.starts_at + i * 8);
        let b = u64_at(&self.map, self.starts_at + (i + 1) * 8);
        match (a, b) {
            (Some(a), Some(b)) if a <= b && b <= self.rows as u64 => Ok((a as usize, b as usize)),
            _ => Err(Error::corrupt(&self.path, format!("token rows of entry {i} out of range"))),
        }
    }

    fn find(&self, id: u64) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.id(mid) < id { lo = mid + 1 } else { hi = mid }
        }
        (lo < self.n && self.id(lo) == id).then_some(lo)
    }

    /// The stored codes and scales of chunk `id`, or `None` if this file lacks it.
    pub fn get(&self, id: u64) -> Result<Option<StoredTokens>> {
        let Some(i) = self.find(id) else { return Ok(None) };
        let (a, b) = self.rows_of(i)?;
        let codes = self.map[self.codes_at + a * self.dim..self.codes_at + b * self.dim].iter().map(|&c| c as i8).collect();
        let scales = self.map[self.scales_at + a * 4..self.scales_at + b * 4]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        Ok(Some(StoredTokens { codes, scales }))
    }

    /// MaxSim of `query` against chunk `id`'s stored tokens, read in place; `None` if this
    /// file lacks the chunk.
    pub fn maxsim(&self, query: &TokenMatrix, id: u64) -> Result<Option<f32>> {
        let Some(i) = self.find(id) else { return Ok(None) };
        let (a, b) = self.rows_of(i)?;
        let raw = &self.map[self.codes_at + a * self.dim..self.codes_at + b * self.dim];
        // SAFETY: i8 and u8 have the same size and alignment.
        let codes: &[i8] = unsafe { std::slice::from_raw_parts(raw.as_ptr() as *const i8, raw.len()) };
        let scales: Vec<f32> = self.map[self.scales_at + a * 4..self.scales_at + b * 4]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        Ok(Some(maxsim_i8(query, codes, &scales)))
    }

    /// Checks the whole file: checksum, ascending ids, monotone row ranges covering every
    /// token, finite scales. Returns the number of chunks.
    pub fn verify(path: &Path, dim: usize) -> Result<u64> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        container::open(MAGIC, &bytes, path)?;
        let f = Self::open(path, dim)?;
        let mut prev = None;
        for i in 0..f.n {
            let id = f.id(i);
            if prev.is_some_and(|p| p >= id) {
                return Err(Error::corrupt(path, format!("chunk ids not ascending at entry {i}")));
            }
            prev = Some(id);
            f.rows_of(i)?;
        }
        if f.n > 0 && f.rows_of(f.n - 1)?.1 != f.rows {
            return Err(Error::corrupt(path, "row ranges do not cover every token"));
        }
        let bad_scale = f.map[f.scales_at..f.scales_at + f.rows * 4]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .any(|s| !s.is_finite() || s < 0.0);
        if bad_scale {
            return Err(Error::corrupt(path, "a token scale is not a finite non-negative number"));
        }
        Ok(f.n as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<(u64, StoredTokens)> {
        vec![
            (3, StoredTokens { codes: vec![1, 2, 3, 4], scales: vec![0.5, 0.25] }),
            (7, StoredTokens { codes: vec![], scales: vec![] }),
            (9, StoredTokens { codes: vec![-127, 0], scales: vec![1.0] }),
        ]
    }

    #[test]
    fn round_trip_lookup_and_every_damage_is_an_error_not_a_panic() {
        let dir = std::env::temp_dir().join(format!("ponder-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tok.colbert");
        let image = encode(2, &sample()).unwrap();
        std::fs::write(&path, &image).unwrap();
        let f = TokenFile::open(&path, 2).unwrap();
        assert_eq!(f.len(), 3);
        for (id, t) in sample() {
            assert_eq!(f.get(id).unwrap().unwrap(), t);
        }
        assert_eq!(f.get(4).unwrap(), None);
        let q = TokenMatrix { dim: 2, data: vec![1.0, 0.0] };
        assert!((f.maxsim(&q, 3).unwrap().unwrap() - 0.75).abs() < 1e-6);
        assert_eq!(TokenFile::verify(&path, 2).unwrap(), 3);
        assert!(TokenFile::open(&path, 3).is_err());
        assert!(encode(2, &[(1, StoredTokens { codes: vec![1], scales: vec![1.0] })]).is_err());
        // The streaming writer writes the same bytes.
        let streamed = dir.join("streamed.colbert");
        let mut w = TokenWriter::create(&streamed, 2).unwrap();
        for (id, t) in sample() {
            w.push(id, &t).unwrap();
        }
        assert!(w.push(1, &sample()[0].1).is_err());
        let (bytes, crc) = w.finish().unwrap();
        assert_eq!(std::fs::read(&streamed).unwrap(), image);
        assert_eq!((bytes, crc), (image.len() as u64, crc32fast::hash(&image)));
        // Every single-byte flip: verify names the file; open + lookups never panic.
        for i in 0..image.len() {
            let mut bad = image.clone();
            bad[i] ^= 0x41;
            std::fs::write(&path, &bad).unwrap();
            assert!(TokenFile::verify(&path, 2).is_err(), "flip at {i} not caught");
            if let Ok(f) = TokenFile::open(&path, 2) {
                for id in [3, 7, 9, 100] {
                    let _ = f.get(id);
                    let _ = f.maxsim(&q, id);
                }
            }
        }
        for n in 0..image.len() {
            std::fs::write(&path, &image[..n]).unwrap();
            assert!(TokenFile::open(&path, 2).is_err());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
