//! Building and updating an index: walk → read → chunk → embed → stage → commit.
//!
//! One writer at a time (an OS file lock on `LOCK`). Work is staged in memory and committed
//! every few thousand chunks or seconds: new immutable data files first (each fsynced and
//! renamed into place), then the manifest. Files left by a writer that died before its
//! commit are unreferenced and deleted when the next writer opens the index.

use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::chunks::{self, ChunkRecord};
use super::lexical::{self, Analyzer};
use super::manifest::{FileEntry, FileRef, LiveSet, Manifest, ModelStamp, VectorKind, MANIFEST};
use super::reader::IndexReader;
use super::tokens::{self, StoredTokens};
use super::vectors::{Stored, VectorDelta};
use crate::chunk::{self, ChunkOptions};
use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::ingest::{self, WalkOptions};

const LOCK: &str = "LOCK";

/// Segments of one size tier merged into one of the next (see [`plan_merge`]).
const MERGE_FACTOR: usize = 4;
/// Live chunks below which every segment is in the lowest tier (times [`MERGE_FACTOR`]).
const LEVEL_BASE: u64 = 2048;

#[derive(Clone, Debug)]
pub struct IndexOptions {
    pub walk: WalkOptions,
    pub chunking: ChunkOptions,
    pub vector_kind: VectorKind,
    /// New query instruction to record (None keeps the index's).
    pub instruction: Option<String>,
    pub commit_every_chunks: usize,
    pub commit_every_secs: f64,
    /// Start from scratch, discarding stored state (recovers from corruption).
    pub rebuild: bool,
    /// Set to stop an indexing run: it commits what it has staged and returns
    /// [`Error::Cancelled`].
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions {
            walk: WalkOptions::default(),
            chunking: ChunkOptions::default(),
            vector_kind: VectorKind::I8,
            instruction: None,
            commit_every_chunks: 2048,
            commit_every_secs: 20.0,
            rebuild: false,
            cancel: None,
        }
    }
}

/// What the indexer reports while it works.
#[derive(Clone, Debug)]
pub enum Progress {
    /// The walk found this many candidate files.
    Walked { files: usize },
    /// A file was processed (indexed, unchanged or skipped).
    File { done: usize, total: usize, chunks: u64, elapsed_s: f64 },
    Warning(String),
    Committed { generation: u64, files: usize, chunks: u64 },
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct IndexReport {
    pub files_seen: usize,
    pub files_indexed: usize,
    pub files_unchanged: usize,
    pub files_removed: usize,
    pub files_skipped: usize,
    pub chunks_added: u64,
    /// Chunks sent to the model: new chunks whose text a changed file already had reuse the
    /// stored vector.
    pub chunks_embedded: u64,
    pub generation: u64,
    pub elapsed_s: f64,
    pub chunks_per_s: f64,
}

struct Staged {
    records: Vec<ChunkRecord>,
    texts: Vec<(u64, String)>,
    delta: VectorDelta,
    /// Late-interaction token vectors of the staged chunks (ColBERT models only).
    tokens: Vec<(u64, StoredTokens)>,
    files: Vec<(String, FileEntry)>,
    removed: Vec<String>,
}

impl Staged {
    /// Whether there is nothing to commit: no chunks, file entries or removals.
    fn is_empty(&self) -> bool {
        self.records.is_empty() && self.files.is_empty() && self.removed.is_empty()
    }
}

/// Text the model and BM25 see for a chunk: its heading path, then its text.
pub fn indexed_text(heading: Option<&str>, text: &str) -> String {
    match heading {
        Some(h) if !h.is_empty() => format!("{h}\n{text}"),
        _ => text.to_string(),
    }
}

pub struct Indexer<'a> {
    dir: PathBuf,
    _lock: File,
    manifest: Manifest,
    embedder: &'a Embedder,
    opts: IndexOptions,
    staged: Staged,
    analyzer: Analyzer,
    /// The committed state, opened when a changed file's old chunks are looked up (reopened
    /// after each commit).
    committed: Option<IndexReader>,
}

fn lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK);
    let f = File::options().create(true).truncate(false).write(true).open(&path).map_err(|e| Error::io(&path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::InvalidInput(format!(
            "another ponder process is writing the index in {}",
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

impl<'a> Indexer<'a> {
    pub fn open(dir: &Path, embedder: &'a Embedder, stamp: ModelStamp, opts: IndexOptions) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let lock = lock(dir)?;
        let existing = Manifest::read(dir);
        let mut manifest = match (existing, opts.rebuild) {
            (Ok(Some(m)), false) => {
                if m.model.fingerprint != stamp.fingerprint || m.model.precision != stamp.precision {
                    return Err(Error::InvalidInput(format!(
                        "the index in {} was built with model {} ({} {}); refusing to mix in vectors of {} ({} {}). \
                         Use the same --model/--precision, another --index, or --rebuild",
                        dir.display(), m.model.name, m.model.precision, m.model.fingerprint,
                        stamp.name, stamp.precision, stamp.fingerprint
                    )));
                }
                if m.chunking != opts.chunking || m.vector_kind != opts.vector_kind {
                    return Err(Error::InvalidInput(format!(
                        "the index in {} was built with chunking {:?} and {:?} vectors; these settings differ. Use --rebuild to change them",
                        dir.display(), m.chunking, m.vector_kind
                    )));
                }
                m
            }
            (Ok(None), _) => Manifest::new(stamp, opts.chunking.clone(), opts.vector_kind, None),
            (Ok(Some(old)), true) => {
                let mut m = Manifest::new(stamp, opts.chunking.clone(), opts.vector_kind, old.query_instruction.clone());
                m.roots = old.roots;
                m.generation = old.generation;
                m
            }
            (Err(_), true) => Manifest::new(stamp, opts.chunking.clone(), opts.vector_kind, None),
            (Err(e), false) => return Err(e),
        };
        if let Some(instr) = &opts.instruction {
            manifest.query_instruction = (!instr.is_empty()).then(|| instr.clone());
        }
        let delta = VectorDelta::new(manifest.model.dim, manifest.vector_kind)?;
        let mut ix = Indexer {
            dir: dir.to_path_buf(),
            _lock: lock,
            manifest,
            embedder,
            opts,
            staged: Staged { records: Vec::new(), texts: Vec::new(), delta, tokens: Vec::new(), files: Vec::new(), removed: Vec::new() },
            analyzer: Analyzer::default(),
            committed: None,
        };
        ix.remove_unreferenced()?;
        if ix.opts.rebuild {
            // Commit the empty state first: from here on the old data is gone for readers too.
            ix.manifest.files.clear();
            ix.commit(&mut |_| {})?;
            ix.remove_unreferenced()?;
        } else if !ix.manifest.files.is_empty() {
            // Every job starts by checking the committed files' checksums: the writer copies
            // from them (reused vectors, compaction), and queries do not hash files whole.
            ix.committed()?;
        }
        Ok(ix)
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Deletes data files the committed manifest does not name (left by a killed writer, or
    /// replaced by compaction).
    fn remove_unreferenced(&self) -> Result<()> {
        let keep: BTreeSet<&str> = self.manifest.referenced().collect();
        let entries = fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == MANIFEST || name == LOCK || keep.contains(name.as_str()) {
                continue;
            }
            let ours = ["chunks-", "vec-", "lex-", "tok-", ".MANIFEST.tmp", ".chunks-", ".lex-", ".vec-", ".tok-"].iter().any(|p| name.starts_with(p));
            if ours {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Indexes `roots`: new and changed files are (re-)embedded, unchanged ones skipped,
    /// files gone from under the roots removed.
    pub fn index(&mut self, roots: &[PathBuf], on: &mut dyn FnMut(Progress)) -> Result<IndexReport> {
        self.index_under(roots, true, on)
    }

    /// Brings the index up to date for `paths` (files or folders that changed, appeared or
    /// disappeared, e.g. from file-system notifications) without adding them to the index's
    /// roots: files under them are (re-)embedded if changed and removed if gone. Paths that no
    /// longer exist only remove what was indexed under them. Excluded paths stay excluded.
    pub fn update(&mut self, paths: &[PathBuf], on: &mut dyn FnMut(Progress)) -> Result<IndexReport> {
        self.index_under(paths, false, on)
    }

    fn cancelled(&self) -> bool {
        self.opts.cancel.as_ref().is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
    }

    fn index_under(&mut self, roots: &[PathBuf], register: bool, on: &mut dyn FnMut(Progress)) -> Result<IndexReport> {
        let start = Instant::now();
        let mut report = IndexReport::default();
        let root_strs: Vec<String> = roots
            .iter()
            .map(|r| fs::canonicalize(r).unwrap_or_else(|_| r.clone()).to_string_lossy().into_owned())
            .collect();
        if register {
            // Indexing a removed path explicitly brings it back.
            self.manifest.excluded.retain(|x| !root_strs.iter().any(|r| is_under(r, x)));
        }
        let mut warn = |m: String| on(Progress::Warning(m));
        let excluded = self.manifest.excluded.clone();
        // Updates name paths that may be gone: those only remove what was indexed under them.
        let existing: Vec<PathBuf> =
            if register { roots.to_vec() } else { roots.iter().filter(|p| p.exists()).cloned().collect() };
        let mut walk_opts = self.opts.walk.clone();
        walk_opts.exclude.push(fs::canonicalize(&self.dir).unwrap_or_else(|_| self.dir.clone()));
        let files: Vec<PathBuf> = ingest::walk(&existing, &walk_opts, &mut warn)
            .into_iter()
            .filter(|p| {
                let s = p.to_string_lossy();
                !excluded.iter().any(|x| is_under(&s, x))
            })
            .collect();
        on(Progress::Walked { files: files.len() });
        report.files_seen = files.len();
        // A path that does not exist was warned about by the walk; it does not become a root.
        for r in root_strs.iter().filter(|r| register && Path::new(r).exists()) {
            if !self.manifest.roots.contains(r) {
                self.manifest.roots.push(r.clone());
            }
        }
        // Files under the roots that the walk no longer finds are removed.
        let seen: BTreeSet<String> = files.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        let gone: Vec<String> = self
            .manifest
            .files
            .keys()
            .filter(|p| root_strs.iter().any(|r| is_under(p, r)) && !seen.contains(*p))
            .cloned()
            .collect();
        report.files_removed = gone.len();
        self.staged.removed.extend(gone);

        let mut last_commit = Instant::now();
        let mut pending: Vec<(String, FileEntry, Vec<chunk::Chunk>)> = Vec::new();
        let mut pending_chunks = 0usize;
        let total = files.len();
        // Files are read, parsed and tokenized on a thread of their own, ahead of the chunking
        // and embedding here (up to READ_AHEAD_BYTES), so that neither waits on the other. It
        // stops when this loop ends, whatever ends it (cancelling included): its sends fail.
        let olds: Vec<Option<FileEntry>> =
            files.iter().map(|p| self.manifest.files.get(p.to_string_lossy().as_ref()).cloned()).collect();
        let reading = Reading {
            embedder: self.embedder,
            max_bytes: self.opts.walk.max_bytes,
            include_generated: self.opts.walk.include_generated,
        };
        let files = &files;
        let budget = ReadAhead::default();
        std::thread::scope(|scope| -> Result<()> {
            let (tx, rx) = std::sync::mpsc::channel();
            let budget = &budget;
            scope.spawn(move || {
                background_priority();
                for (path, old) in files.iter().zip(olds) {
                    let prepared = reading.prepare(path, old.as_ref());
                    let held = match &prepared {
                        Ok(Prepared::Changed(_, doc, spans)) => doc.text.len() + std::mem::size_of_val(&spans[..]),
                        _ => 0,
                    };
                    if !budget.take(held) || tx.send((prepared, held)).is_err() {
                        break;
                    }
                }
            });
            // However this loop ends, the reading thread stops waiting for room.
            let _close = budget.closer();
            for (i, path) in files.iter().enumerate() {
                if self.cancelled() {
                    self.embed_pending(std::mem::take(&mut pending), &mut report)?;
                    self.commit(on)?;
                    return Err(Error::Cancelled);
                }
                let key = path.to_string_lossy().into_owned();
                let (prepared, held) = rx.recv().map_err(|_| Error::Config("the reading thread stopped".into()))?;
                match prepared {
                    Ok(Prepared::Unchanged) => report.files_unchanged += 1,
                    Ok(Prepared::Touched(entry)) => {
                        report.files_unchanged += 1;
                        self.staged.files.push((key, entry));
                    }
                    Ok(Prepared::Changed(entry, doc, spans)) => {
                        let chunks = self.cut(&key, &doc, spans);
                        report.files_indexed += 1;
                        pending_chunks += chunks.len();
                        pending.push((key, entry, chunks));
                    }
                    Err(msg) => {
                        report.files_skipped += 1;
                        on(Progress::Warning(format!("skipped {}: {msg}", path.display())));
                    }
                }
                budget.give(held);
                // Embedded in batches of 256 chunks, or fewer when commits come more often.
                if pending_chunks >= self.opts.commit_every_chunks.clamp(1, 256) || i + 1 == total {
                    self.embed_pending(std::mem::take(&mut pending), &mut report)?;
                    pending_chunks = 0;
                }
                on(Progress::File { done: i + 1, total, chunks: report.chunks_added, elapsed_s: start.elapsed().as_secs_f64() });
                if self.staged.records.len() >= self.opts.commit_every_chunks
                    || (last_commit.elapsed().as_secs_f64() >= self.opts.commit_every_secs && !self.staged.files.is_empty())
                {
                    self.commit(on)?;
                    self.merge_as_needed(on)?;
                    last_commit = Instant::now();
                }
            }
            Ok(())
        })?;
        self.embed_pending(pending, &mut report)?;
        // An update that changed nothing commits nothing: the generation moves with the index.
        let staged = !self.staged.is_empty();
        if register || staged {
            self.commit(on)?;
        }
        self.merge_as_needed(on)?;
        report.generation = self.manifest.generation;
        report.elapsed_s = start.elapsed().as_secs_f64();
        report.chunks_per_s = report.chunks_added as f64 / report.elapsed_s.max(1e-9);
        Ok(report)
    }

    /// Indexes in-memory documents (evaluation collections) as one chunk each, keyed by `key`:
    /// the model sees the first `max_seq_len` tokens, BM25 the whole text.
    pub fn index_records(&mut self, docs: &[(String, String)], on: &mut dyn FnMut(Progress)) -> Result<IndexReport> {
        let start = Instant::now();
        let mut report = IndexReport { files_seen: docs.len(), ..Default::default() };
        for (i, batch) in docs.chunks(256).enumerate() {
            let mut pending = Vec::new();
            for (key, text) in batch {
                let hash: [u8; 32] = Sha256::digest(text.as_bytes()).into();
                if self.manifest.files.get(key).is_some_and(|e| e.hash == hash) {
                    report.files_unchanged += 1;
                    continue;
                }
                let lines = text.lines().count().max(1);
                let c = chunk::Chunk {
                    text: text.clone(),
                    start_byte: 0,
                    end_byte: text.len(),
                    start_line: 1,
                    end_line: lines,
                    heading: None,
                    pages: None,
                };
                let entry = FileEntry { hash, size: text.len() as u64, mtime: 0, kind: ingest::DocKind::Text, chunks: (0, 0) };
                pending.push((key.clone(), entry, vec![c]));
                report.files_indexed += 1;
            }
            self.embed_pending(pending, &mut report)?;
            let done = ((i + 1) * 256).min(docs.len());
            on(Progress::File { done, total: docs.len(), chunks: report.chunks_added, elapsed_s: start.elapsed().as_secs_f64() });
            if self.staged.records.len() >= self.opts.commit_every_chunks {
                self.commit(on)?;
            }
        }
        self.commit(on)?;
        report.generation = self.manifest.generation;
        report.elapsed_s = start.elapsed().as_secs_f64();
        report.chunks_per_s = report.chunks_added as f64 / report.elapsed_s.max(1e-9);
        Ok(report)
    }

    /// Chunks a changed file's text. Where the file was indexed before, its committed chunks
    /// that are still there whole are kept (see [`chunk::rechunk`]), so that an edit re-embeds
    /// only the chunks it touched.
    fn cut(&mut self, key: &str, doc: &ingest::Document, spans: Vec<(usize, usize)>) -> Vec<chunk::Chunk> {
        let old = self.manifest.files.get(key).map(|e| e.chunks).filter(|(a, b)| b > a);
        // The old chunks are an optimisation: a state that cannot be read means cutting afresh.
        let records = match old {
            Some((first, end)) => self.committed().and_then(|r| r.records_in(first, end)).unwrap_or_default(),
            None => Vec::new(),
        };
        let earlier: Vec<chunk::Earlier> =
            records.iter().map(|r| chunk::Earlier { start_byte: r.start_byte as usize, text: &r.text }).collect();
        let mut chunks = chunk::rechunk(&doc.text, doc.kind, &self.manifest.chunking, spans, &earlier);
        for c in &mut chunks {
            c.pages = doc.page_range(c.start_byte, c.end_byte);
        }
        chunks
    }

    /// The committed state as a reader, opened (or reopened) when the manifest moved on.
    fn committed(&mut self) -> Result<&IndexReader> {
        let fresh = self.committed.as_ref().is_some_and(|r| r.manifest.generation == self.manifest.generation);
        if !fresh {
            // The writer copies from these files (reused vectors, compaction), so it checks
            // their checksums, which queries do not.
            let r = match self.committed.take() {
                Some(old) => old.reopen_verified()?,
                None => IndexReader::open_verified(&self.dir)?,
            };
            self.committed = Some(r);
        }
        Ok(self.committed.as_ref().unwrap())
    }

    /// Stored vectors of the committed chunks of the files in `pending` that had an entry,
    /// keyed by the hash of their indexed text, in their stored form: added again they keep
    /// exactly the same codes for every vector kind (see [`Stored`]). Chunks staged in this run
    /// and not yet committed are not looked at (a file is prepared once per run).
    /// A late-interaction index reuses a chunk only with its stored token vectors.
    fn reusable_vectors(&mut self, pending: &[(String, FileEntry, Vec<chunk::Chunk>)]) -> HashMap<[u8; 32], (Stored, Option<StoredTokens>)> {
        let ranges: Vec<(u64, u64)> = pending
            .iter()
            .filter_map(|(key, _, _)| self.manifest.files.get(key).map(|e| e.chunks))
            .filter(|(a, b)| b > a)
            .collect();
        let mut out = HashMap::new();
        if ranges.is_empty() {
            return out;
        }
        let late = self.embedder.is_late_interaction();
        // The old vectors are an optimisation: a state that cannot be read means embedding again.
        let Ok(reader) = self.committed() else { return out };
        for (first, end) in ranges {
            let Ok(records) = reader.records_in(first, end) else { continue };
            for r in records {
                let toks = if late {
                    match reader.stored_tokens(r.id) {
                        Ok(Some(t)) => Some(t),
                        _ => continue,
                    }
                } else {
                    None
                };
                if let Ok(Some(v)) = reader.stored_vector(r.id) {
                    out.insert(text_hash(&indexed_text(r.heading.as_deref(), &r.text)), (v, toks));
                }
            }
        }
        out
    }

    /// Embeds the chunks of several files at once and stages them with fresh ids. Chunks whose
    /// indexed text the file's committed version already had take the stored vector instead.
    fn embed_pending(&mut self, pending: Vec<(String, FileEntry, Vec<chunk::Chunk>)>, report: &mut IndexReport) -> Result<()> {
        let texts: Vec<String> = pending
            .iter()
            .flat_map(|(_, _, cs)| cs.iter().map(|c| indexed_text(c.heading.as_deref(), &c.text)))
            .collect();
        let mut reuse = self.reusable_vectors(&pending);
        let late = self.embedder.is_late_interaction();
        let mut vectors: Vec<Option<Stored>> = Vec::with_capacity(texts.len());
        let mut toks: Vec<Option<StoredTokens>> = Vec::with_capacity(texts.len());
        for t in &texts {
            let (v, tk) = if reuse.is_empty() { (None, None) } else { reuse.get(&text_hash(t)).cloned().unzip() };
            vectors.push(v);
            toks.push(tk.flatten());
        }
        reuse.clear();
        let missing: Vec<usize> = (0..texts.len()).filter(|&i| vectors[i].is_none()).collect();
        let refs: Vec<&str> = missing.iter().map(|&i| texts[i].as_str()).collect();
        if late {
            // One vector per chunk (the mean of its tokens) for the HNSW first stage, and the
            // token vectors themselves, int8 with one scale per token, for MaxSim.
            let embedded = if refs.is_empty() { Vec::new() } else { self.embedder.embed_tokens(&refs, false)? };
            for (&i, m) in missing.iter().zip(embedded) {
                vectors[i] = Some(Stored::F32(m.mean_normalized()));
                let (codes, scales) = crate::embed::colbert::quantize_tokens(&m);
                toks[i] = Some(StoredTokens { codes, scales });
            }
        } else {
            let embedded = if refs.is_empty() { Vec::new() } else { self.embedder.embed(&refs)? };
            for (&i, v) in missing.iter().zip(embedded) {
                vectors[i] = Some(Stored::F32(v));
            }
        }
        report.chunks_embedded += missing.len() as u64;
        let mut vi = 0;
        let mut n = 0u64;
        for (key, mut entry, cs) in pending {
            let first = self.manifest.next_chunk_id;
            for c in cs {
                let id = self.manifest.next_chunk_id;
                self.manifest.next_chunk_id += 1;
                let v = vectors[vi].as_ref().ok_or_else(|| Error::Config("the model returned too few vectors".into()))?;
                self.staged.delta.add_stored(id, v)?;
                if late {
                    let t = toks[vi].take().ok_or_else(|| Error::Config("the model returned too few token matrices".into()))?;
                    self.staged.tokens.push((id, t));
                }
                self.staged.texts.push((id, texts[vi].clone()));
                self.staged.records.push(ChunkRecord {
                    id,
                    start_byte: c.start_byte as u64,
                    end_byte: c.end_byte as u64,
                    start_line: c.start_line as u32,
                    end_line: c.end_line as u32,
                    heading: c.heading,
                    text: c.text,
                    pages: c.pages,
                });
                vi += 1;
                n += 1;
            }
            entry.chunks = (first, self.manifest.next_chunk_id);
            self.staged.files.push((key, entry));
        }
        report.chunks_added += n;
        Ok(())
    }

    fn write_data_file(&self, name: &str, bytes: &[u8]) -> Result<FileRef> {
        crate::fsutil::write_atomic(&self.dir.join(name), bytes)?;
        Ok(FileRef { name: name.to_string(), first: 0, end: 0, bytes: bytes.len() as u64, crc32: crc32fast::hash(bytes) })
    }

    /// The chunk segment of records `first..end`, as a new data file of generation `gen`.
    fn write_chunks(&self, gen: u64, records: &[ChunkRecord]) -> Result<FileRef> {
        let mut c = self.write_data_file(&format!("chunks-{gen:08}.seg"), &chunks::encode(records)?)?;
        (c.first, c.end) = (records[0].id, records.last().unwrap().id + 1);
        Ok(c)
    }

    /// The BM25 segment of `texts` (ids `first..end`), as a new data file of generation `gen`.
    fn write_lexical(&self, gen: u64, texts: &[(u64, String)], (first, end): (u64, u64)) -> Result<FileRef> {
        let docs: Vec<(u64, &str)> = texts.iter().map(|(id, t)| (*id, t.as_str())).collect();
        let mut l = self.write_data_file(&format!("lex-{gen:08}.bm25"), &lexical::encode(&self.analyzer, &docs)?)?;
        (l.first, l.end) = (first, end);
        Ok(l)
    }

    /// The vector file of `delta` (ids `first..end`), as a new data file of generation `gen`.
    fn write_vectors(&self, gen: u64, delta: &VectorDelta, (first, end): (u64, u64)) -> Result<FileRef> {
        let name = format!("vec-{gen:08}.usearch");
        let tmp = self.dir.join(format!(".{name}.tmp"));
        delta.save(&tmp)?;
        let (bytes, crc32) = crate::fsutil::crc32_file(&tmp)?;
        fs::rename(&tmp, self.dir.join(&name)).map_err(|e| Error::io(&tmp, e))?;
        Ok(FileRef { name, first, end, bytes, crc32 })
    }

    /// Writes staged data files, then the manifest (the commit point).
    pub fn commit(&mut self, on: &mut dyn FnMut(Progress)) -> Result<()> {
        let gen = self.manifest.generation + 1;
        if !self.staged.records.is_empty() {
            // Each staged part is dropped once its file is written, so that a large commit
            // never holds the records, the texts' postings and the vector file at once. A
            // failed commit fails the job; what it staged is indexed again next run.
            let records = std::mem::take(&mut self.staged.records);
            let c = self.write_chunks(gen, &records)?;
            drop(records);
            let texts = std::mem::take(&mut self.staged.texts);
            let l = self.write_lexical(gen, &texts, (c.first, c.end))?;
            drop(texts);
            let delta = std::mem::replace(&mut self.staged.delta, VectorDelta::new(self.manifest.model.dim, self.manifest.vector_kind)?);
            let v = self.write_vectors(gen, &delta, (c.first, c.end))?;
            drop(delta);
            if !self.staged.tokens.is_empty() {
                let staged = std::mem::take(&mut self.staged.tokens);
                let image = tokens::encode(self.manifest.model.dim, &staged)?;
                drop(staged);
                let mut t = self.write_data_file(&format!("tok-{gen:08}.colbert"), &image)?;
                (t.first, t.end) = (c.first, c.end);
                self.manifest.token_files.push(t);
            }
            self.manifest.chunk_files.push(c);
            self.manifest.lexical_files.push(l);
            self.manifest.vector_files.push(v);
        }
        for (key, entry) in self.staged.files.drain(..) {
            self.manifest.files.insert(key, entry);
        }
        for key in self.staged.removed.drain(..) {
            self.manifest.files.remove(&key);
        }
        self.manifest.commit(&self.dir)?;
        self.staged.records.clear();
        self.staged.texts.clear();
        self.staged.tokens.clear();
        self.staged.delta = VectorDelta::new(self.manifest.model.dim, self.manifest.vector_kind)?;
        on(Progress::Committed {
            generation: self.manifest.generation,
            files: self.manifest.files.len(),
            chunks: self.manifest.live_chunks(),
        });
        Ok(())
    }

    /// Removes every indexed file at or under `path`; returns how many.
    pub fn remove(&mut self, path: &Path) -> Result<usize> {
        let p = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()).to_string_lossy().into_owned();
        let gone: Vec<String> = self.manifest.files.keys().filter(|k| is_under(k, &p)).cloned().collect();
        let n = gone.len();
        self.staged.removed.extend(gone);
        self.manifest.roots.retain(|r| !is_under(r, &p));
        if !self.manifest.excluded.contains(&p) {
            self.manifest.excluded.push(p);
        }
        self.commit(&mut |_| {})?;
        Ok(n)
    }

    /// Segments the index could be rewritten as: a reader's per-vector-file spans and counts.
    /// Returns `(first, end, live, stored)` for each segment (one commit's or one merge's
    /// files), in id order.
    fn segments(&mut self) -> Result<Vec<(u64, u64, u64, u64)>> {
        let live = LiveSet::new(self.manifest.live_ranges());
        let reader = self.committed()?;
        Ok(reader.vector_spans().into_iter().map(|(a, b, stored)| (a, b, live.count_in(a, b), stored)).collect())
    }

    /// The largest segment merging builds: its vector graph is built in memory, so it is
    /// bounded in bytes (about 192 MiB of vectors and links), whatever the corpus.
    fn max_segment_chunks(&self) -> u64 {
        let per = match self.manifest.vector_kind {
            VectorKind::I8 => 1,
            VectorKind::F16 => 2,
            VectorKind::F32 => 4,
            VectorKind::B1 => 0,
        } * self.manifest.model.dim
            + self.manifest.model.dim / 8
            + 192;
        ((192u64 << 20) / per as u64).max(LEVEL_BASE * MERGE_FACTOR as u64)
    }

    /// The next run of segments to rewrite as one (see [`plan_merge`]).
    fn merge_plan(&mut self) -> Result<Option<(u64, u64)>> {
        let cap = self.max_segment_chunks();
        Ok(plan_merge(&self.segments()?, cap))
    }

    /// Merges segments as [`Self::merge_plan`] says until it says nothing (after each commit
    /// of an indexing job).
    fn merge_as_needed(&mut self, on: &mut dyn FnMut(Progress)) -> Result<()> {
        while let Some(span) = self.merge_plan()? {
            self.merge(span, on)?;
        }
        Ok(())
    }

    /// Rewrites all live chunks into as few segments as [`Self::max_segment_chunks`] allows
    /// (one, for any index under a few hundred thousand chunks); dead chunks are dropped.
    pub fn compact(&mut self, on: &mut dyn FnMut(Progress)) -> Result<()> {
        self.commit(on)?;
        let cap = self.max_segment_chunks();
        let segs = self.segments()?;
        // Greedy runs of adjacent segments whose live chunks fit one segment.
        let mut runs: Vec<(u64, u64, usize, bool)> = Vec::new();
        for s in segs {
            let dead = s.3 > s.2;
            match runs.last_mut() {
                Some(r) if r.2 as u64 + s.2 <= cap || s.2 == 0 => {
                    r.1 = s.1;
                    r.2 += s.2 as usize;
                    r.3 = true;
                }
                _ => runs.push((s.0, s.1, s.2 as usize, dead)),
            }
        }
        for (a, b, _, rewrite) in runs {
            if rewrite {
                self.merge((a, b), on)?;
            }
        }
        Ok(())
    }

    /// Rewrites the segments within the id span `[lo, hi)` as one; their dead chunks are
    /// dropped. The files are written one after the other, each from what it needs alone:
    /// the records (then dropped), the texts' postings (then dropped), the vector graph. The
    /// span's worth of each is never in memory together with the others.
    fn merge(&mut self, (lo, hi): (u64, u64), on: &mut dyn FnMut(Progress)) -> Result<()> {
        if !self.staged.is_empty() {
            self.commit(on)?;
        }
        // The committed reader: the files it already had were verified when it opened them, so
        // only new ones are read again. It is taken, and reopened past this merge before the
        // merged-away files it maps are deleted.
        self.committed()?;
        let reader = self.committed.take().expect("committed() leaves a reader");
        let in_span = |f: &FileRef| f.first >= lo && f.end <= hi;
        let old: Vec<String> = self.manifest.referenced_files().filter(|f| in_span(f)).map(|f| f.name.clone()).collect();
        let records = reader.records_in(lo, hi)?;
        let gen = self.manifest.generation + 1;
        let mut files = None;
        if !records.is_empty() {
            let ids: Vec<u64> = records.iter().map(|r| r.id).collect();
            let span = (ids[0], ids[ids.len() - 1] + 1);
            // Token vectors first, streamed in stored form into the file the manifest below
            // will reference (this generation's name); unreferenced if this job dies first.
            let mut token_file = None;
            if reader.has_tokens() {
                let name = format!("tok-{gen:08}.colbert");
                let mut w = tokens::TokenWriter::create(&self.dir.join(&name), self.manifest.model.dim)?;
                for &id in &ids {
                    let t = reader
                        .stored_tokens(id)?
                        .ok_or_else(|| Error::corrupt(&self.dir, format!("chunk {id} has no stored token vectors")))?;
                    w.push(id, &t)?;
                }
                let (bytes, crc32) = w.finish()?;
                token_file = Some(FileRef { name, first: span.0, end: span.1, bytes, crc32 });
            }
            let texts: Vec<(u64, String)> =
                records.iter().map(|r| (r.id, indexed_text(r.heading.as_deref(), &r.text))).collect();
            let c = self.write_chunks(gen, &records)?;
            drop(records);
            let l = self.write_lexical(gen, &texts, span)?;
            drop(texts);
            crate::fsutil::release_free_memory();
            let mut delta = VectorDelta::new(self.manifest.model.dim, self.manifest.vector_kind)?;
            for (i, &id) in ids.iter().enumerate() {
                // In stored form: i8 codes are copied, not dequantized and re-quantized.
                let v = reader
                    .stored_vector(id)?
                    .ok_or_else(|| Error::corrupt(&self.dir, format!("chunk {id} has no stored vector")))?;
                delta.add_stored(id, &v)?;
                // The merged-away files' pages, read once in id order, leave the resident set
                // as the copy goes (the kernel maps 16 cached pages around each fault, so
                // otherwise they all stay while the new graph is built beside them).
                if i % 16_384 == 16_383 {
                    reader.release_pages();
                }
            }
            let v = self.write_vectors(gen, &delta, span)?;
            drop(delta);
            files = Some((c, l, v, token_file));
        }
        let (c, l, v, t) = match files {
            Some((c, l, v, t)) => (Some(c), Some(l), Some(v), t),
            None => (None, None, None, None),
        };
        let m = &mut self.manifest;
        for (list, new) in [(&mut m.chunk_files, c), (&mut m.lexical_files, l), (&mut m.vector_files, v), (&mut m.token_files, t)] {
            list.retain(|f| !in_span(f));
            if let Some(f) = new {
                let at = list.partition_point(|x| x.end <= f.first);
                list.insert(at, f);
            }
        }
        // Files staged and not yet committed would be lost with the old lists: there are
        // none, since the commit above emptied the stage.
        debug_assert!(self.staged.records.is_empty());
        self.commit(on)?;
        crate::fsutil::release_free_memory();
        // Reopened, it keeps the segments it had and verifies only the merged one; failing
        // that, the next use opens and verifies the whole index.
        let next = reader.reopen_verified();
        drop(reader);
        for name in old {
            let _ = fs::remove_file(self.dir.join(name));
        }
        self.committed = next.ok();
        Ok(())
    }
}

/// The next run of segments to rewrite as one, as an id span, or `None`. `segs` holds each
/// segment's `(first id, end id, live chunks, stored chunks)` in id order; no merge produces a
/// segment of more than `cap` live chunks.
/// - A segment with no live chunk, or whose stored chunks are more than a third dead (past
///   1,000), is rewritten alone.
/// - Size tiers: a segment's level is how many times [`MERGE_FACTOR`] its live count is past
///   [`LEVEL_BASE`] × [`MERGE_FACTOR`]. [`MERGE_FACTOR`] adjacent segments of one level are
///   merged into one of the next level.
///
/// So each chunk is rewritten about log4(N / 2048) times as an index grows to N chunks (a
/// merge of everything every few commits rewrote it N / 16k times), and no merge holds more
/// than one bounded segment in memory.
fn plan_merge(segs: &[(u64, u64, u64, u64)], cap: u64) -> Option<(u64, u64)> {
    if let Some(s) = segs.iter().find(|s| (s.2 == 0 && s.3 > 0) || (s.3 > 1000 && s.3 > s.2 + s.2 / 3)) {
        return Some((s.0, s.1));
    }
    let level = |n: u64| {
        let (mut l, mut bound) = (0u32, LEVEL_BASE * MERGE_FACTOR as u64);
        while n >= bound {
            l += 1;
            bound = bound.saturating_mul(MERGE_FACTOR as u64);
        }
        l
    };
    let mut i = 0;
    while i < segs.len() {
        let l = level(segs[i].2);
        let mut j = i;
        while j < segs.len() && level(segs[j].2) == l {
            j += 1;
        }
        for start in i..j {
            if j - start < MERGE_FACTOR {
                break;
            }
            let run = &segs[start..start + MERGE_FACTOR];
            if run.iter().map(|s| s.2).sum::<u64>() <= cap {
                return Some((run[0].0, run[MERGE_FACTOR - 1].1));
            }
        }
        i = j;
    }
    None
}

/// What reading one file gave.
enum Prepared {
    Unchanged,
    /// Same content, new mtime.
    Touched(FileEntry),
    /// New or changed: its entry (no chunks yet), its text, and the model tokenizer's spans of
    /// the whole text.
    Changed(FileEntry, ingest::Document, Vec<(usize, usize)>),
}

/// Bytes of text (and token spans) held ahead of the chunking and embedding, beyond the file
/// being read, at most; a larger file is passed on alone.
const READ_AHEAD_BYTES: usize = 32 << 20;

/// How much the reading thread holds ahead of the embedding.
#[derive(Default)]
struct ReadAhead {
    /// Bytes held, and whether the consumer has stopped.
    state: std::sync::Mutex<(usize, bool)>,
    freed: std::sync::Condvar,
}

impl ReadAhead {
    /// Waits for room for `n` more bytes; false once the consumer has stopped.
    fn take(&self, n: usize) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while !st.1 && st.0 > 0 && st.0 + n > READ_AHEAD_BYTES {
            st = self.freed.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.0 += n;
        !st.1
    }

    fn give(&self, n: usize) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.0 = st.0.saturating_sub(n);
        self.freed.notify_all();
    }

    /// A guard that marks the consumer stopped when dropped.
    fn closer(&self) -> impl Drop + '_ {
        struct Close<'a>(&'a ReadAhead);
        impl Drop for Close<'_> {
            fn drop(&mut self) {
                self.0.state.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
                self.0.freed.notify_all();
            }
        }
        Close(self)
    }
}

/// Gives the calling thread the lowest priority (Linux: nice 19 for this thread alone). The
/// reading thread must not take time from the embedding, whose threads split every matrix
/// product between the cores: one of them preempted holds up the whole step. It fills the
/// gaps instead (commits, chunking, the tail of each batch), and when the embedding waits for
/// the next file, a core is free for it. Unlike `SCHED_IDLE`, nice 19 still gets a share when
/// other programs keep every core busy, so reading never stalls.
fn background_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread's own id.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19);
    }
}

/// What the reading thread needs.
struct Reading<'a> {
    embedder: &'a Embedder,
    max_bytes: u64,
    include_generated: bool,
}

impl Reading<'_> {
    /// Stats and hashes one file (`old`: its entry in the index, if any) and, if it changed,
    /// reads and tokenizes it.
    fn prepare(&self, path: &Path, old: Option<&FileEntry>) -> std::result::Result<Prepared, String> {
        let meta = fs::metadata(path).map_err(|e| e.to_string())?;
        let size = meta.len();
        let mtime = crate::fsutil::mtime_ns(&meta);
        if let Some(old) = old {
            if old.size == size && old.mtime == mtime {
                return Ok(Prepared::Unchanged);
            }
        }
        if size > self.max_bytes {
            return Err(format!("{size} bytes is over the {} byte limit (--max-file-size)", self.max_bytes));
        }
        let bytes = fs::read(path).map_err(|e| e.to_string())?;
        let hash: [u8; 32] = Sha256::digest(&bytes).into();
        if let Some(old) = old {
            if old.hash == hash {
                return Ok(Prepared::Touched(FileEntry { mtime, size, ..old.clone() }));
            }
        }
        let reader = ingest::reader_for(path).ok_or_else(|| "no reader for this file type".to_string())?;
        let doc = reader.read(path, &bytes).map_err(|e| e.to_string())?;
        if !self.include_generated {
            if let Some(why) = ingest::generated::reason(path, &doc) {
                return Err(format!("{why}; --include-generated indexes it"));
            }
        }
        let spans = self.embedder.tokenizer().token_spans_here(&doc.text);
        Ok(Prepared::Changed(FileEntry { hash, size, mtime, kind: doc.kind, chunks: (0, 0) }, doc, spans))
    }
}

/// Whether `path` is `root` or lies under it (both absolute, `/`-separated).
pub(crate) fn is_under(path: &str, root: &str) -> bool {
    path == root || (path.starts_with(root) && (root.ends_with('/') || path[root.len()..].starts_with('/')))
}

fn text_hash(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}


#[cfg(test)]
mod tests {
    use super::*;

    /// Applies a merge plan's span to simulated segments: the run becomes one segment of its
    /// live chunks. Returns the chunks rewritten.
    fn apply(segs: &mut Vec<(u64, u64, u64, u64)>, (lo, hi): (u64, u64)) -> u64 {
        let at = segs.iter().position(|s| s.0 >= lo).unwrap();
        let run: Vec<_> = segs.iter().filter(|s| s.0 >= lo && s.1 <= hi).copied().collect();
        segs.retain(|s| !(s.0 >= lo && s.1 <= hi));
        let live: u64 = run.iter().map(|s| s.2).sum();
        if live > 0 {
            segs.insert(at, (lo, hi, live, live));
        }
        live
    }

    #[test]
    fn growing_to_a_million_chunks_rewrites_each_a_few_times_in_bounded_segments() {
        let cap = 322_638; // max_segment_chunks() for 384-dimensional i8 vectors
        let (mut segs, mut next, mut rewritten, mut most) = (Vec::new(), 0u64, 0u64, 0usize);
        while next < 1_000_000 {
            segs.push((next, next + 3000, 3000, 3000));
            next += 3000;
            let mut merges = 0;
            while let Some(span) = plan_merge(&segs, cap) {
                rewritten += apply(&mut segs, span);
                merges += 1;
                assert!(merges < 10, "merging does not settle: {segs:?}");
            }
            most = most.max(segs.len());
            assert!(segs.iter().all(|s| s.2 <= cap), "{segs:?}");
            assert!(segs.windows(2).all(|w| w[0].1 <= w[1].0), "segments out of order: {segs:?}");
        }
        assert_eq!(segs.iter().map(|s| s.2).sum::<u64>(), next, "chunks lost");
        // log4(1M / 2k) is about 4.5 rewrites per chunk; merging all every 8 commits was ~40.
        assert!(rewritten <= 4 * next, "{rewritten} chunks rewritten for {next}");
        assert!(most <= 16, "{most} segments at once");
    }

    #[test]
    fn small_segments_merge_by_fours_and_big_ones_are_left_alone() {
        let seg = |i: u64, live: u64| (i * 1000, i * 1000 + 1000, live, live);
        // Three small ones: nothing to do; a fourth: the four merge.
        let mut segs: Vec<_> = (0..3).map(|i| seg(i, 10)).collect();
        assert_eq!(plan_merge(&segs, 1 << 20), None);
        segs.push(seg(3, 10));
        assert_eq!(plan_merge(&segs, 1 << 20), Some((0, 4000)));
        // Four small ones after big ones: only the small ones merge.
        let mut segs: Vec<_> = (0..3).map(|i| seg(i, 200_000)).collect();
        segs.extend((3..7).map(|i| seg(i, 10)));
        assert_eq!(plan_merge(&segs, 1 << 20), Some((3000, 7000)));
        // Four big ones of one level whose sum passes the cap stay as they are.
        let segs: Vec<_> = (0..4).map(|i| seg(i, 200_000)).collect();
        assert_eq!(plan_merge(&segs, 500_000), None);
        assert_eq!(plan_merge(&segs, 1 << 20), Some((0, 4000)));
    }

    #[test]
    fn dead_segments_are_rewritten_alone() {
        // More than a third dead (past 1,000 stored): rewritten, whatever its neighbours.
        let segs = [(0, 100, 50_000, 50_000), (100, 200, 900, 2000), (200, 300, 10, 10)];
        assert_eq!(plan_merge(&segs, 1 << 20), Some((100, 200)));
        // No live chunk left: dropped.
        let segs = [(0, 100, 50_000, 50_000), (100, 200, 0, 3)];
        assert_eq!(plan_merge(&segs, 1 << 20), Some((100, 200)));
        // A quarter dead: left.
        let segs = [(0, 100, 50_000, 50_000), (100, 200, 1500, 2000)];
        assert_eq!(plan_merge(&segs, 1 << 20), None);
    }
}
