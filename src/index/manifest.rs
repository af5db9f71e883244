//! The manifest: the one file that says what an index is. Every other index file is
//! immutable once written and is part of the index only when the current manifest names it,
//! so writing the manifest (atomically, fsynced, generation + 1) is the commit.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

use super::container;
use crate::chunk::ChunkOptions;
use crate::error::{Error, Result};
use crate::ingest::DocKind;

pub const MANIFEST: &str = "MANIFEST";
pub(crate) const MAGIC: &[u8; 8] = b"PNDRMANI";

/// Which model built the vectors; an index refuses to mix models.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelStamp {
    /// Where the model came from (`default` or a path), for display.
    pub name: String,
    /// Checksum of the model's config, tokenizer and weights.
    pub fingerprint: String,
    pub dim: usize,
    /// Compute precision used for the vectors (`int8`, `f32`).
    pub precision: String,
}

/// How vectors are stored in usearch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
pub enum VectorKind {
    /// 8-bit integers (cosine); the default.
    #[default]
    I8,
    /// 16-bit floats (cosine).
    F16,
    /// 32-bit floats (cosine): exact reference, 4x the size of i8.
    F32,
    /// 1 bit per dimension (Hamming).
    B1,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// SHA-256 of the file's bytes (hex).
    pub hash: String,
    pub size: u64,
    pub mtime: i64,
    pub kind: DocKind,
    /// Chunk ids `[start, end)` of this file's chunks.
    pub chunks: (u64, u64),
}

/// An immutable data file of the index and the chunk ids `[first, end)` it covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    pub name: String,
    pub first: u64,
    pub end: u64,
    pub bytes: u64,
    pub crc32: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub generation: u64,
    pub created_unix: u64,
    pub updated_unix: u64,
    pub model: ModelStamp,
    pub chunking: ChunkOptions,
    /// Instruction prepended to queries (never to documents).
    pub query_instruction: Option<String>,
    pub vector_kind: VectorKind,
    pub next_chunk_id: u64,
    /// Paths the user asked to index (for `--rebuild` and re-runs).
    pub roots: Vec<String>,
    /// Paths removed with `ponder remove`: skipped when their parent root is re-indexed,
    /// until they are indexed again explicitly.
    pub excluded: Vec<String>,
    /// Indexed files by absolute path.
    pub files: BTreeMap<String, FileEntry>,
    /// Chunk text segments.
    pub chunk_files: Vec<FileRef>,
    /// usearch vector files.
    pub vector_files: Vec<FileRef>,
    /// BM25 segments.
    pub lexical_files: Vec<FileRef>,
}

impl Manifest {
    pub fn new(model: ModelStamp, chunking: ChunkOptions, vector_kind: VectorKind, instruction: Option<String>) -> Self {
        let now = now_unix();
        Manifest {
            generation: 0,
            created_unix: now,
            updated_unix: now,
            model,
            chunking,
            query_instruction: instruction,
            vector_kind,
            next_chunk_id: 0,
            roots: Vec::new(),
            excluded: Vec::new(),
            files: BTreeMap::new(),
            chunk_files: Vec::new(),
            vector_files: Vec::new(),
            lexical_files: Vec::new(),
        }
    }

    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(MANIFEST);
        if !path.exists() {
            return Ok(None);
        }
        let payload = container::read_small(MAGIC, &path)?;
        postcard::from_bytes(&payload)
            .map(Some)
            .map_err(|e| Error::corrupt(&path, format!("manifest does not decode: {e}")))
    }

    /// The commit point: writes generation + 1 atomically.
    pub fn commit(&mut self, dir: &Path) -> Result<()> {
        self.generation += 1;
        self.updated_unix = now_unix();
        let payload = postcard::to_allocvec(self).map_err(|e| Error::Config(format!("manifest: {e}")))?;
        crate::fsutil::write_atomic(&dir.join(MANIFEST), &container::seal(MAGIC, &payload))
    }

    /// Sorted, disjoint live chunk-id ranges.
    pub fn live_ranges(&self) -> Vec<(u64, u64)> {
        let mut r: Vec<(u64, u64)> = self.files.values().map(|f| f.chunks).filter(|(a, b)| b > a).collect();
        r.sort_unstable();
        r
    }

    pub fn live_chunks(&self) -> u64 {
        self.files.values().map(|f| f.chunks.1 - f.chunks.0).sum()
    }

    /// Names of every data file the manifest references.
    pub fn referenced(&self) -> impl Iterator<Item = &str> {
        self.chunk_files.iter().chain(&self.vector_files).chain(&self.lexical_files).map(|f| f.name.as_str())
    }
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Membership test over live chunk-id ranges.
#[derive(Clone, Debug, Default)]
pub struct LiveSet {
    ranges: Vec<(u64, u64)>,
}

impl LiveSet {
    pub fn new(ranges: Vec<(u64, u64)>) -> Self {
        LiveSet { ranges }
    }
    pub fn contains(&self, id: u64) -> bool {
        let i = self.ranges.partition_point(|r| r.1 <= id);
        i < self.ranges.len() && self.ranges[i].0 <= id
    }
    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|r| r.1 - r.0).sum()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_set_membership() {
        let s = LiveSet::new(vec![(0, 3), (5, 6), (10, 20)]);
        let inside: Vec<u64> = (0..25).filter(|&i| s.contains(i)).collect();
        let want: Vec<u64> = (0..3).chain(5..6).chain(10..20).collect();
        assert_eq!(inside, want);
        assert_eq!(s.len(), 14);
    }
}
