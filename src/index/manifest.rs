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
    /// SHA-256 of the file's bytes.
    pub hash: [u8; 32],
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
    #[serde(deserialize_with = "sorted_map")]
    pub files: BTreeMap<String, FileEntry>,
    /// Chunk text segments.
    pub chunk_files: Vec<FileRef>,
    /// usearch vector files.
    pub vector_files: Vec<FileRef>,
    /// BM25 segments.
    pub lexical_files: Vec<FileRef>,
    /// Late-interaction token vector files (indexes of ColBERT models). Stored in
    /// [`Extension`] after the fields above, so that manifests written before it existed
    /// still decode (and older ponders ignore it: postcard leaves trailing bytes unread).
    #[serde(skip)]
    pub token_files: Vec<FileRef>,
}

/// Fields added to the manifest after format 3, encoded after [`Manifest`]'s own fields.
/// New fields are appended here, and a manifest that ends before them decodes with defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Extension {
    token_files: Vec<FileRef>,
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
            token_files: Vec::new(),
        }
    }

    /// Reads the committed manifest, `None` when there is none.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(MANIFEST);
        if !path.exists() {
            return Ok(None);
        }
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        Self::decode(container::open(MAGIC, &bytes, &path)?)
            .map(Some)
            .map_err(|e| Error::corrupt(&path, format!("manifest does not decode: {e}")))
    }

    /// The manifest's fields, then the extension if the payload goes on (older manifests end
    /// after the fields).
    fn decode(payload: &[u8]) -> std::result::Result<Self, postcard::Error> {
        let (mut m, rest): (Manifest, &[u8]) = postcard::take_from_bytes(payload)?;
        if !rest.is_empty() {
            let ext: Extension = postcard::from_bytes(rest)?;
            m.token_files = ext.token_files;
        }
        Ok(m)
    }

    fn encode(&self) -> std::result::Result<Vec<u8>, postcard::Error> {
        let mut payload = postcard::to_allocvec(self)?;
        if !self.token_files.is_empty() {
            payload.extend(postcard::to_allocvec(&Extension { token_files: self.token_files.clone() })?);
        }
        Ok(payload)
    }

    /// The model that built the committed index, without decoding the file table (the
    /// stamp comes before it in the file).
    pub fn read_model(dir: &Path) -> Result<Option<ModelStamp>> {
        #[derive(Deserialize)]
        struct Head {
            _generation: u64,
            _created_unix: u64,
            _updated_unix: u64,
            model: ModelStamp,
        }
        let path = dir.join(MANIFEST);
        if !path.exists() {
            return Ok(None);
        }
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        postcard::take_from_bytes::<Head>(container::open(MAGIC, &bytes, &path)?)
            .map(|(h, _)| Some(h.model))
            .map_err(|e| Error::corrupt(&path, format!("manifest does not decode: {e}")))
    }

    /// The commit point: writes generation + 1 atomically.
    pub fn commit(&mut self, dir: &Path) -> Result<()> {
        self.generation += 1;
        self.updated_unix = now_unix();
        // `read_model` decodes the leading fields alone: keep generation, the two times and the
        // model stamp first.
        let payload = self.encode().map_err(|e| Error::Config(format!("manifest: {e}")))?;
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
        self.referenced_files().map(|f| f.name.as_str())
    }

    /// Every data file the manifest references.
    pub fn referenced_files(&self) -> impl Iterator<Item = &FileRef> {
        self.chunk_files.iter().chain(&self.vector_files).chain(&self.lexical_files).chain(&self.token_files)
    }
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Decodes the file table, which is written in key order, as a list and builds the map in one
/// pass: inserting 100k paths one by one into a B-tree took most of opening a 100k-file index.
/// The bytes are the same as a map's (postcard writes both as a length and the pairs).
fn sorted_map<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<BTreeMap<String, FileEntry>, D::Error> {
    let pairs: Vec<(String, FileEntry)> = Deserialize::deserialize(d)?;
    Ok(pairs.into_iter().collect())
}

/// Membership test over live chunk-id ranges.
#[derive(Clone, Debug, Default)]
pub struct LiveSet {
    ranges: Vec<(u64, u64)>,
}

impl LiveSet {
    /// A set of the given [start, end) ranges (in any order; adjacent ones are merged).
    pub fn new(mut ranges: Vec<(u64, u64)>) -> Self {
        ranges.retain(|r| r.1 > r.0);
        ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
        for r in ranges {
            match merged.last_mut() {
                Some(last) if r.0 <= last.1 => last.1 = last.1.max(r.1),
                _ => merged.push(r),
            }
        }
        LiveSet { ranges: merged }
    }
    /// The live [start, end) id ranges, ascending.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }
    pub fn contains(&self, id: u64) -> bool {
        let i = self.ranges.partition_point(|r| r.1 <= id);
        i < self.ranges.len() && self.ranges[i].0 <= id
    }
    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|r| r.1 - r.0).sum()
    }
    /// How many ids in `[first, end)` are live.
    pub fn count_in(&self, first: u64, end: u64) -> u64 {
        let i = self.ranges.partition_point(|r| r.1 <= first);
        self.ranges[i..].iter().take_while(|r| r.0 < end).map(|r| r.1.min(end) - r.0.max(first)).sum()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_stamp_reads_alone_and_the_file_table_round_trips() {
        let dir = std::env::temp_dir().join(format!("ponder-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let stamp = ModelStamp { name: "default".into(), fingerprint: "abc".into(), dim: 384, precision: "int8".into() };
        let mut m = Manifest::new(stamp.clone(), ChunkOptions::default(), VectorKind::I8, None);
        for (i, p) in ["/b/x.md", "/a/y.md", "/c/z.pdf", "/a/a.txt"].iter().enumerate() {
            let e = FileEntry { hash: [i as u8; 32], size: 10 + i as u64, mtime: i as i64, kind: DocKind::Text, chunks: (2 * i as u64, 2 * i as u64 + 2) };
            m.files.insert(p.to_string(), e);
        }
        m.commit(&dir).unwrap();
        assert_eq!(Manifest::read_model(&dir).unwrap().unwrap(), stamp);
        assert_eq!(Manifest::read(&dir).unwrap().unwrap(), m);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn manifests_written_before_token_files_still_decode() {
        // The manifest as it was before `token_files`: the same fields, nothing after them.
        #[derive(Serialize)]
        struct Old<'a> {
            generation: u64,
            created_unix: u64,
            updated_unix: u64,
            model: &'a ModelStamp,
            chunking: &'a ChunkOptions,
            query_instruction: &'a Option<String>,
            vector_kind: VectorKind,
            next_chunk_id: u64,
            roots: &'a Vec<String>,
            excluded: &'a Vec<String>,
            files: &'a BTreeMap<String, FileEntry>,
            chunk_files: &'a Vec<FileRef>,
            vector_files: &'a Vec<FileRef>,
            lexical_files: &'a Vec<FileRef>,
        }
        let stamp = ModelStamp { name: "default".into(), fingerprint: "abc".into(), dim: 384, precision: "int8".into() };
        let mut m = Manifest::new(stamp, ChunkOptions::default(), VectorKind::I8, Some("q".into()));
        let f = FileRef { name: "vec-00000001.usearch".into(), first: 0, end: 4, bytes: 99, crc32: 7 };
        m.vector_files.push(f.clone());
        m.files.insert("/a".into(), FileEntry { hash: [1; 32], size: 3, mtime: 4, kind: DocKind::Text, chunks: (0, 4) });
        let old = Old {
            generation: m.generation, created_unix: m.created_unix, updated_unix: m.updated_unix, model: &m.model,
            chunking: &m.chunking, query_instruction: &m.query_instruction, vector_kind: m.vector_kind,
            next_chunk_id: m.next_chunk_id, roots: &m.roots, excluded: &m.excluded, files: &m.files,
            chunk_files: &m.chunk_files, vector_files: &m.vector_files, lexical_files: &m.lexical_files,
        };
        let bytes = postcard::to_allocvec(&old).unwrap();
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
        // Without token files the new encoding is the old one, byte for byte.
        assert_eq!(m.encode().unwrap(), bytes);
        // With them, the old fields still lead (what older ponders decode) and they round-trip.
        m.token_files.push(FileRef { name: "tok-00000001.colbert".into(), ..f });
        let new = m.encode().unwrap();
        assert!(new.starts_with(&bytes));
        assert_eq!(Manifest::decode(&new).unwrap(), m);
        assert!(m.referenced().any(|n| n == "tok-00000001.colbert"));
    }

    #[test]
    fn live_set_membership() {
        let s = LiveSet::new(vec![(10, 15), (0, 3), (5, 6), (15, 20), (7, 7)]);
        let inside: Vec<u64> = (0..25).filter(|&i| s.contains(i)).collect();
        let want: Vec<u64> = (0..3).chain(5..6).chain(10..20).collect();
        assert_eq!(inside, want);
        assert_eq!(s.len(), 14);
        assert_eq!(s.ranges(), &[(0, 3), (5, 6), (10, 20)]);
    }
}
