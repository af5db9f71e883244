//! The index: everything ponder stores about a person's files, in one directory.
//!
//! - `MANIFEST` ([`manifest`]) names the committed state: files, chunk-id ranges, the model and
//!   chunking settings that built it, and the data files below. Writing it is the commit.
//! - `chunks-*.seg` ([`chunks`]): chunk text and positions, zstd-compressed.
//! - `vec-*.usearch` ([`vectors`]): vectors in usearch HNSW files, viewed from a memory map.
//! - `lex-*.bm25` ([`lexical`]): BM25 postings, read in place.
//! - `tok-*.colbert` ([`tokens`]): per-token int8 vectors for late interaction, read in place
//!   (only in indexes built with a ColBERT model).
//!
//! Queries read data files in place and check what they touch; whole-file checksums are
//! verified by the writer before it copies from a file, and by [`check`] (`ponder check`).
//!
//! Data files are written once (temporary name, fsync, rename) and never changed; a commit
//! adds files and rewrites the manifest; compaction replaces files. A reader sees the last
//! manifest that was committed, whatever a concurrent or killed writer was doing.

pub mod check;
pub mod chunks;
pub mod container;
pub mod lexical;
pub mod manifest;
pub mod reader;
pub mod tokens;
pub mod vectors;
pub mod writer;

pub use manifest::{Manifest, ModelStamp, VectorKind};
pub use reader::IndexReader;
pub use writer::{IndexOptions, IndexReport, Indexer, Progress};

use std::path::PathBuf;

/// The default index location: `$XDG_DATA_HOME/ponder/index` (or the platform's equivalent).
pub fn default_dir() -> PathBuf {
    dirs::data_dir().unwrap_or_else(|| PathBuf::from(".")).join("ponder").join("index")
}
