//! `ponder check`: reads a whole index and verifies it, file by file. Queries read data files
//! in place and check only what they touch; this pass checks everything: each file's size
//! and CRC32 against the manifest, each file's own envelope checksum, then its structure
//! (every chunk block decodes, every term and postings list is in range, the vector file
//! loads with the expected dimensions).

use serde::Serialize;
use std::path::Path;

use super::chunks::ChunkSegment;
use super::lexical::LexicalSegment;
use super::manifest::{FileRef, Manifest, MANIFEST};
use super::reader::verify_file;
use super::vectors::VectorFile;
use crate::error::{Error, Result};

/// What `check` found in one data file.
#[derive(Clone, Debug, Serialize)]
pub struct FileCheck {
    pub name: String,
    /// `chunks`, `vectors`, `lexical` or `tokens`.
    pub kind: &'static str,
    pub bytes: u64,
    /// Chunks (chunk files), vectors (vector files) or documents (lexical files) found.
    pub items: u64,
    /// `None` when the file is sound; otherwise what is wrong, naming the file.
    pub problem: Option<String>,
}

/// The result of checking an index.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub index: String,
    pub generation: u64,
    pub files: Vec<FileCheck>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.files.iter().all(|f| f.problem.is_none())
    }
}

/// Checks the index in `dir`. A missing or damaged manifest is an error (nothing else can be
/// located without it); damage in data files is reported per file.
pub fn check(dir: &Path) -> Result<CheckReport> {
    let manifest = Manifest::read(dir)?.ok_or_else(|| Error::MissingFile(dir.join(MANIFEST)))?;
    let mut files = Vec::new();
    let mut run = |f: &FileRef, kind: &'static str, inner: &dyn Fn(&Path) -> Result<u64>| {
        let path = dir.join(&f.name);
        let (items, problem) = match verify_file(&path, f).and_then(|()| inner(&path)) {
            Ok(n) => (n, None),
            Err(e) => (0, Some(e.to_string())),
        };
        files.push(FileCheck { name: f.name.clone(), kind, bytes: f.bytes, items, problem });
    };
    for f in &manifest.chunk_files {
        run(f, "chunks", &|p| {
            let bytes = std::fs::read(p).map_err(|e| Error::io(p, e))?;
            super::container::open(super::chunks::MAGIC, &bytes, p)?;
            Ok(ChunkSegment::open(p)?.verify()? as u64)
        });
    }
    for f in &manifest.vector_files {
        run(f, "vectors", &|p| Ok(VectorFile::open(p, manifest.model.dim, manifest.vector_kind, f.crc32)?.len() as u64));
    }
    for f in &manifest.lexical_files {
        run(f, "lexical", &|p| LexicalSegment::verify(p));
    }
    for f in &manifest.token_files {
        run(f, "tokens", &|p| super::tokens::TokenFile::verify(p, manifest.model.dim));
    }
    Ok(CheckReport { index: dir.display().to_string(), generation: manifest.generation, files })
}
