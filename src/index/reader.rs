//! Opening a committed index for queries: manifest, chunk segments, vector files and BM25
//! segments, all immutable and memory-mapped; dense and lexical candidate retrieval.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::chunks::{ChunkRecord, ChunkSegment};
use super::lexical::{Lexical, LexicalSegment};
use super::manifest::{FileRef, LiveSet, Manifest};
use super::tokens::{StoredTokens, TokenFile};
use super::vectors::VectorFile;
use crate::error::{Error, Result};

pub struct IndexReader {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub live: LiveSet,
    /// (first id, end id, file name, segment): segments are shared with the reader this one
    /// was reopened from when the manifest still names them.
    chunk_segments: Vec<(u64, u64, String, Arc<ChunkSegment>)>,
    vectors: Vec<(String, Arc<VectorFile>)>,
    lexical_names: Vec<String>,
    /// Late-interaction token files (name, file), in manifest order.
    tokens: Vec<(String, Arc<TokenFile>)>,
    pub lexical: Lexical,
    /// (first id, end id, path) sorted, for id → file lookups.
    owners: Vec<(u64, u64, String)>,
    /// While the process is over it, a vector file gives its pages back as soon as its part
    /// of a dense search is done (see [`IndexReader::with_resident_limit`]).
    resident_limit: Option<Arc<crate::fsutil::ResidentLimit>>,
}

/// Checks a data file's size and CRC32 against the manifest's record of it.
pub fn verify_file(path: &Path, f: &FileRef) -> Result<()> {
    let (bytes, crc32) = crate::fsutil::crc32_file(path)?;
    if bytes != f.bytes {
        return Err(Error::corrupt(path, format!("{bytes} bytes, the manifest says {}", f.bytes)));
    }
    if crc32 != f.crc32 {
        return Err(Error::corrupt(path, "checksum mismatch"));
    }
    Ok(())
}

/// A stored chunk with the file it belongs to.
#[derive(Clone, Debug)]
pub struct ChunkHit {
    pub path: String,
    pub record: ChunkRecord,
}

impl IndexReader {
    /// Opens the last committed state. Retries when a concurrent compaction removed a file
    /// between reading the manifest and opening the file.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_reusing(dir, None, false)
    }

    /// Opens the last committed state after checking every data file's checksum against the
    /// manifest: what the writer reads from, so damage is never copied into new files.
    pub fn open_verified(dir: &Path) -> Result<Self> {
        Self::open_reusing(dir, None, true)
    }

    /// Opens the last committed state again, keeping the segments of `self` that the new
    /// manifest still names (data files are immutable, so they need not be re-read or
    /// re-verified). This is how a long-lived searcher follows commits cheaply.
    pub fn reopen(&self) -> Result<Self> {
        Self::open_reusing(&self.dir, Some(self), false)
    }

    /// [`IndexReader::reopen`], verifying the checksums of the files not already open.
    pub fn reopen_verified(&self) -> Result<Self> {
        Self::open_reusing(&self.dir, Some(self), true)
    }

    fn open_reusing(dir: &Path, prev: Option<&IndexReader>, verify: bool) -> Result<Self> {
        let mut last = None;
        for _ in 0..5 {
            match Self::try_open(dir, prev, verify) {
                Err(Error::MissingFile(p)) if !p.ends_with(super::manifest::MANIFEST) => {
                    last = Some(Error::MissingFile(p));
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
        Err(last.unwrap())
    }

    /// Makes usearch's view of every vector file now (they are made on first use otherwise;
    /// see [`VectorFile`]), side by side: what a searcher does while it warms up.
    pub fn prepare(&self) -> Result<()> {
        use rayon::prelude::*;
        self.vectors.par_iter().try_for_each(|(_, v)| v.prepare())
    }

    /// Keeps this reader's dense searches under `limit`: each vector file searched while the
    /// process is over it gives its pages back right after its part of the search, so a
    /// search holds at most the files being searched at that moment (at a million chunks
    /// one search otherwise maps most of 500 MB of vector files before anything can be given
    /// back). Readers reopened from this one keep the limit.
    pub fn with_resident_limit(mut self, limit: Option<Arc<crate::fsutil::ResidentLimit>>) -> Self {
        self.resident_limit = limit;
        self
    }

    fn try_open(dir: &Path, prev: Option<&IndexReader>, verify: bool) -> Result<Self> {
        let manifest = Manifest::read(dir)?.ok_or_else(|| Error::MissingFile(dir.join(super::manifest::MANIFEST)))?;
        let check = |f: &FileRef| if verify { verify_file(&dir.join(&f.name), f) } else { Ok(()) };
        let mut chunk_segments = Vec::new();
        for f in &manifest.chunk_files {
            let old = prev.and_then(|p| p.chunk_segments.iter().find(|s| s.2 == f.name)).map(|s| s.3.clone());
            let seg = match old {
                Some(s) => s,
                None => {
                    check(f)?;
                    Arc::new(ChunkSegment::open(&dir.join(&f.name))?)
                }
            };
            chunk_segments.push((f.first, f.end, f.name.clone(), seg));
        }
        let mut vectors = Vec::new();
        for f in &manifest.vector_files {
            let old = prev.and_then(|p| p.vectors.iter().find(|v| v.0 == f.name)).map(|v| v.1.clone());
            let v = match old {
                Some(v) => v,
                None => Arc::new(VectorFile::open(&dir.join(&f.name), manifest.model.dim, manifest.vector_kind, f.crc32)?),
            };
            vectors.push((f.name.clone(), v));
        }
        let mut lexical = Lexical::default();
        let mut lexical_names = Vec::new();
        for f in &manifest.lexical_files {
            let old = prev.and_then(|p| {
                p.lexical_names.iter().position(|n| *n == f.name).map(|i| p.lexical.segments[i].clone())
            });
            let seg = match old {
                Some(s) => s,
                None => {
                    check(f)?;
                    Arc::new(LexicalSegment::open(&dir.join(&f.name))?)
                }
            };
            lexical.segments.push(seg);
            lexical_names.push(f.name.clone());
        }
        let mut tokens = Vec::new();
        for f in &manifest.token_files {
            let old = prev.and_then(|p| p.tokens.iter().find(|t| t.0 == f.name)).map(|t| t.1.clone());
            let t = match old {
                Some(t) => t,
                None => {
                    check(f)?;
                    Arc::new(TokenFile::open(&dir.join(&f.name), manifest.model.dim)?)
                }
            };
            tokens.push((f.name.clone(), t));
        }
        let mut owners: Vec<(u64, u64, String)> =
            manifest.files.iter().map(|(p, e)| (e.chunks.0, e.chunks.1, p.clone())).filter(|o| o.1 > o.0).collect();
        owners.sort_unstable();
        Ok(IndexReader {
            dir: dir.to_path_buf(),
            live: LiveSet::new(manifest.live_ranges()),
            manifest,
            chunk_segments,
            vectors,
            lexical_names,
            tokens,
            lexical,
            owners,
            resident_limit: prev.and_then(|p| p.resident_limit.clone()),
        })
    }

    /// Dense candidates: (chunk id, cosine similarity), best first.
    pub fn dense(&self, query: &[f32], k: usize, exact: bool) -> Result<Vec<(u64, f32)>> {
        self.dense_in(query, k, exact, &self.live)
    }

    /// Dense candidates among the chunks of `live` (a subset of [`IndexReader::live`], e.g. a
    /// filter's files). The filter is applied inside the HNSW search; when that finds fewer than
    /// `k` (a very selective filter), the search is repeated exactly, so `k` results come back
    /// whenever `k` exist.
    pub fn dense_in(&self, query: &[f32], k: usize, exact: bool, live: &LiveSet) -> Result<Vec<(u64, f32)>> {
        // Segments are searched side by side (a large index has several; see `plan_merge`).
        use rayon::prelude::*;
        let search = |v: &VectorFile| {
            let found = v.search(query, k, live, exact);
            if let Some(limit) = self.resident_limit.as_ref().filter(|l| l.over()) {
                v.release_pages();
                limit.count_release();
            }
            found
        };
        let per: Vec<Vec<(u64, f32)>> = if self.vectors.len() > 1 {
            self.vectors.par_iter().map(|(_, v)| search(v)).collect::<Result<_>>()?
        } else {
            self.vectors.iter().map(|(_, v)| search(v)).collect::<Result<_>>()?
        };
        let mut all: Vec<(u64, f32)> = per.into_iter().flatten().collect();
        if !exact && all.len() < k && (all.len() as u64) < live.len() {
            return self.dense_in(query, k, true, live);
        }
        all.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        all.dedup_by_key(|h| h.0);
        all.truncate(k);
        Ok(all)
    }

    /// Lexical candidates: (chunk id, BM25 score), best first.
    pub fn lexical(&self, query: &str, k: usize) -> Result<Vec<(u64, f32)>> {
        self.lexical.search(query, k, &self.live)
    }

    /// Lexical candidates among the chunks of `live`.
    pub fn lexical_in(&self, query: &str, k: usize, live: &LiveSet) -> Result<Vec<(u64, f32)>> {
        self.lexical.search(query, k, live)
    }

    pub fn path_of(&self, id: u64) -> Option<&str> {
        let i = self.owners.partition_point(|o| o.1 <= id);
        self.owners.get(i).filter(|o| o.0 <= id).map(|o| o.2.as_str())
    }

    /// A live chunk by id.
    pub fn chunk(&self, id: u64) -> Result<Option<ChunkHit>> {
        let Some(path) = self.path_of(id) else { return Ok(None) };
        for (first, end, _, seg) in &self.chunk_segments {
            if (*first..*end).contains(&id) {
                if let Some(record) = seg.get(id)? {
                    return Ok(Some(ChunkHit { path: path.to_string(), record }));
                }
            }
        }
        Ok(None)
    }

    /// The stored vector of a chunk (dequantized), for pseudo-relevance feedback and compaction.
    pub fn vector(&self, id: u64) -> Result<Option<Vec<f32>>> {
        for (_, v) in &self.vectors {
            if let Some(x) = v.get(id)? {
                return Ok(Some(x));
            }
        }
        Ok(None)
    }

    /// The stored vector of a chunk as stored, to store again unchanged (reuse on re-indexing).
    pub fn stored_vector(&self, id: u64) -> Result<Option<super::vectors::Stored>> {
        for (_, v) in &self.vectors {
            if let Some(x) = v.get_stored(id)? {
                return Ok(Some(x));
            }
        }
        Ok(None)
    }

    /// Whether the index stores late-interaction token vectors.
    pub fn has_tokens(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// A chunk's stored token vectors (int8 codes and scales), to store again unchanged.
    pub fn stored_tokens(&self, id: u64) -> Result<Option<StoredTokens>> {
        for (_, t) in &self.tokens {
            if let Some(x) = t.get(id)? {
                return Ok(Some(x));
            }
        }
        Ok(None)
    }

    /// MaxSim of query token vectors against a chunk's stored tokens (`None`: none stored).
    pub fn maxsim(&self, query: &crate::embed::colbert::TokenMatrix, id: u64) -> Result<Option<f32>> {
        for (_, t) in &self.tokens {
            if let Some(s) = t.maxsim(query, id)? {
                return Ok(Some(s));
            }
        }
        Ok(None)
    }

    /// The live chunk records with ids in `[first, end)` (one file's chunks), in id order.
    pub fn records_in(&self, first: u64, end: u64) -> Result<Vec<ChunkRecord>> {
        let mut out = Vec::new();
        for (a, b, _, seg) in &self.chunk_segments {
            if *a < end && first < *b {
                out.extend(seg.range(first, end)?.into_iter().filter(|r| self.live.contains(r.id)));
            }
        }
        out.sort_unstable_by_key(|r| r.id);
        Ok(out)
    }

    /// Each vector file's id span and stored vector count (dead ones included), in
    /// manifest order: the segments merging works on.
    pub fn vector_spans(&self) -> Vec<(u64, u64, u64)> {
        self.manifest.vector_files.iter().zip(&self.vectors).map(|(f, (_, v))| (f.first, f.end, v.len() as u64)).collect()
    }

    pub fn vector_files(&self) -> usize {
        self.vectors.len()
    }

    /// Drops the pages of every mapped data file (vectors, BM25 segments, chunk texts, token
    /// vectors) from this process's resident set. They stay in the page cache, so searches
    /// that need them again map them back without reading the disk. See
    /// [`crate::engine::EngineOptions::resident_limit`].
    pub fn release_pages(&self) {
        self.vectors.iter().for_each(|(_, v)| v.release_pages());
        self.lexical.segments.iter().for_each(|s| s.release_pages());
        self.chunk_segments.iter().for_each(|s| s.3.release_pages());
        self.tokens.iter().for_each(|(_, t)| t.release_pages());
    }

    /// Bytes on disk of the committed data files and manifest.
    pub fn disk_bytes(&self) -> u64 {
        let m = &self.manifest;
        m.chunk_files.iter().chain(&m.vector_files).chain(&m.lexical_files).chain(&m.token_files).map(|f| f.bytes).sum::<u64>()
            + std::fs::metadata(self.dir.join(super::manifest::MANIFEST)).map(|m| m.len()).unwrap_or(0)
    }
}
