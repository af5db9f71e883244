//! The library facade: one [`Engine`] per index directory, for applications that embed ponder
//! (desktop apps, the HTTP server, the MCP server, the C ABI and the `ponder` binary itself).
//!
//! An `Engine` owns what a long-lived process keeps warm: the embedding model (loaded once,
//! on first use), the reranker (loaded on the first reranked search), and a snapshot of the
//! last committed index state. It is `Send + Sync`: any number of threads search while one
//! indexing job runs (jobs are serialised by a mutex here and by the index's file lock across
//! processes). Searches never wait for indexing: they read the snapshot, which follows each
//! commit — the indexing job refreshes it as it commits, and a search that sees a newer
//! `MANIFEST` on disk (another process committed) reopens only the data files it did not have.
//!
//! ```no_run
//! use ponder::engine::{Engine, EngineOptions, IndexJob, SearchRequest};
//! let engine = Engine::open("/tmp/my-index", EngineOptions::default())?;
//! engine.index(&["/home/me/notes".into()], &IndexJob::default(), &mut |_progress| {})?;
//! for hit in engine.search(&SearchRequest::new("how long to proof dough"))? {
//!     println!("{} {}-{} {:.3}", hit.path, hit.start_line, hit.end_line, hit.score);
//! }
//! # Ok::<(), ponder::Error>(())
//! ```

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::device::DeviceChoice;
use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::fuse::Fusion;
use crate::index::manifest::{LiveSet, MANIFEST};
use crate::index::{self, IndexReader, IndexReport, Indexer, Manifest, ModelStamp, Progress, VectorKind};
use crate::ingest::{DocKind, WalkOptions};
use crate::model::{format, ModelSource, ModelWeights, Precision};
use crate::present::collapse::{collapse, Candidate, Diversity};
use crate::present::{self, Explain, Hit};
use crate::rerank::Reranker;
use crate::retrieve::{LongQuery, Mode, Rm3, Rocchio, SearchOptions, Searcher, Signals};
use std::collections::HashMap;

/// How an [`Engine`] loads models and writes its index.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// The embedding model. `None`: the model the index was built with, or the embedded
    /// default for a new index. Naming a model other than the index's is refused when
    /// indexing, unless the job rebuilds.
    pub model: Option<ModelSource>,
    /// Compute precision (default: int8 for int8 model files, f32 otherwise).
    pub precision: Option<Precision>,
    /// Where the models run.
    pub device: DeviceChoice,
    /// Vector storage. `None`: the index's, or i8 for a new index. Naming another kind than
    /// the index's is refused when indexing, unless the job rebuilds.
    pub vectors: Option<VectorKind>,
    /// What the indexer reads.
    pub walk: WalkOptions,
    /// Commit after this many new chunks.
    pub commit_every_chunks: usize,
    /// Commit at least this often (seconds) while files are being indexed.
    pub commit_every_secs: f64,
    /// The cross-encoder for reranked searches.
    pub reranker: ModelSource,
    /// The reranker's compute precision (default: int8 for int8 files, f32 otherwise).
    pub reranker_precision: Option<Precision>,
    /// Bytes of resident memory (RSS) this process should stay under between searches.
    /// While it is over, each vector file gives its pages back as soon as its part of a dense
    /// search is done, and a search that ends over the limit gives back the pages of every
    /// memory-mapped index file and of the built-in models (see
    /// [`IndexReader::release_pages`]). They are page cache, not allocations: the kernel keeps
    /// them while it has room, and searches that need them map them back without reading the
    /// disk, at the price of page faults. Memory that is not mapped (models' packed layers,
    /// buffers, usearch's key tables) is not given back.
    ///
    /// The kernel maps 16 cached pages around each page fault, so one search maps most of the
    /// vector files' pages (about 50 MB at 100k chunks, 420 MB at a million), and a server's
    /// RSS without a limit is soon the size of its vector files plus about 130 MB. Measured on
    /// 2 cores over HTTP (`benches/million.sh`, `SERVE_LIMITS`): at a million chunks, no limit
    /// 746 MB after 200 searches, p50 13.4–13.8 ms; 256 MiB: at most 253 MB between searches
    /// and a peak (VmHWM) of 380 MB, p50 31–33 ms; 384 MiB: peak 461–467 MB, p50 24–27 ms. At
    /// 100k chunks a 96 MiB limit costs under 0.5 ms at p50.
    /// `None` (the default): no limit. Linux only (elsewhere the limit is ignored).
    pub resident_limit: Option<u64>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            model: None,
            precision: None,
            device: DeviceChoice::Auto,
            vectors: None,
            walk: WalkOptions::default(),
            commit_every_chunks: 2048,
            commit_every_secs: 20.0,
            reranker: ModelSource::Default,
            reranker_precision: None,
            resident_limit: None,
        }
    }
}

/// One indexing run's settings.
#[derive(Clone, Debug, Default)]
pub struct IndexJob {
    /// Discard the stored index and build it again (recovers a corrupt index, changes model).
    pub rebuild: bool,
    /// Rewrite the index into one file per kind afterwards, dropping removed chunks.
    pub compact: bool,
    /// New query instruction to record (`Some("")` clears it; `None` keeps the index's).
    pub instruction: Option<String>,
    /// Set it to stop the job: what was staged is committed, and the job returns
    /// [`Error::Cancelled`].
    pub cancel: Option<Arc<AtomicBool>>,
}

/// A search: one or several query texts (several are fused into one ranking), how many hits,
/// how to retrieve, whether to rerank, and which files may answer. Deserializes from the JSON
/// that `ponder serve`, `ponder mcp` and the C ABI accept; unknown fields are refused.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SearchRequest {
    /// One query (fused with `queries` when both are given).
    pub query: Option<String>,
    /// Several queries, e.g. an agent's rewrites of one need.
    pub queries: Vec<String>,
    /// Number of hits (1..=1000).
    pub k: usize,
    /// `hybrid`, `dense` or `lexical`.
    pub mode: Mode,
    /// Hybrid fusion: `zscore` (standardised scores, the default), `weighted` (min-max
    /// normalised scores) or `rrf`.
    pub fusion: String,
    /// Dense weight of `zscore` or `weighted` fusion (0..=1); unset: 0.6 for `zscore`, 0.5
    /// for `weighted`.
    pub dense_weight: Option<f32>,
    /// RRF constant.
    pub rrf_k: f32,
    /// Candidates per retriever before fusion.
    pub candidates: usize,
    /// Exact vector search instead of HNSW.
    pub exact: bool,
    /// Queries longer than the model window: `truncate` or `split`.
    pub long_query: LongQuery,
    /// Dense pseudo-relevance feedback over this many top chunks (0: off), and its weight.
    pub prf_dense: usize,
    /// Weight of the feedback centroid in dense feedback.
    pub prf_dense_beta: f32,
    /// Lexical pseudo-relevance feedback (RM3) over this many top chunks (0: off).
    pub rm3: usize,
    /// RM3 expansion terms.
    pub rm3_terms: usize,
    /// RM3 weight of the original query.
    pub rm3_weight: f32,
    /// Rerank the top `rerank_top` with the cross-encoder, interpolated with weight
    /// `rerank_weight` (0..=1; the retriever gets the rest).
    pub rerank: bool,
    /// How many of the retriever's top candidates are reranked.
    pub rerank_top: usize,
    /// The reranker's share of the interpolated score.
    pub rerank_weight: f32,
    /// The reranker reorders a query's candidates only when the standard deviation of its
    /// scores is at least this (it can tell them apart); 0 always reranks.
    pub rerank_min_spread: f32,
    /// Only files whose path matches one of these globs; a glob starting with `!` excludes.
    /// A relative glob matches anywhere (`*.md` is `**/*.md`); a plain path matches the file
    /// or everything under the folder.
    pub path: Vec<String>,
    /// Only files of these kinds: `pdf`, `md`, `html`, `code`, `text`.
    #[serde(rename = "type")]
    pub kinds: Vec<String>,
    /// Only files modified on or after this day (`YYYY-MM-DD`, UTC).
    pub after: Option<String>,
    /// Only files modified before this day (`YYYY-MM-DD`, UTC).
    pub before: Option<String>,
    /// Most hits from one file (0: no limit), so that the top k covers different documents.
    pub per_file: usize,
    /// One hit per file (its best chunk); the same as `per_file: 1`.
    pub files: bool,
    /// Collapse chunks with identical or near-identical text in different files into one hit
    /// that lists the other paths in `also_in`.
    pub dedup: bool,
    /// Add each hit's dense and lexical scores and ranks, the fused score and the rerank score.
    pub explain: bool,
}

impl Default for SearchRequest {
    fn default() -> Self {
        SearchRequest {
            query: None,
            queries: Vec::new(),
            k: 10,
            mode: Mode::Hybrid,
            fusion: "zscore".into(),
            dense_weight: None,
            rrf_k: 60.0,
            candidates: 100,
            exact: false,
            long_query: LongQuery::Truncate,
            prf_dense: 0,
            prf_dense_beta: 0.5,
            rm3: 0,
            rm3_terms: 10,
            rm3_weight: 0.5,
            rerank: false,
            // 20 and 0.3 were measured best on SciFact and held-out SQuAD (models/RERANKER.md).
            rerank_top: 20,
            rerank_weight: 0.3,
            rerank_min_spread: crate::rerank::DEFAULT_MIN_SPREAD,
            path: Vec::new(),
            kinds: Vec::new(),
            after: None,
            before: None,
            per_file: DEFAULT_PER_FILE,
            files: false,
            dedup: true,
            explain: false,
        }
    }
}

/// Hits one file may contribute by default: on the Cargo book (`benches/diversity.sh`, 15
/// questions, top 5) 2 gave 74.7% distinct documents and hit@5 15/15, against 62.7% and 14/15
/// for 3.
pub const DEFAULT_PER_FILE: usize = 2;

/// The most hits one request may ask for.
pub const MAX_K: usize = 1000;
/// The most candidates per retriever one request may ask for.
pub const MAX_CANDIDATES: usize = 10_000;
/// The most query texts in one request.
pub const MAX_QUERIES: usize = 64;

impl SearchRequest {
    /// A request for one query with the defaults.
    pub fn new(query: impl Into<String>) -> Self {
        SearchRequest { query: Some(query.into()), ..Default::default() }
    }

    /// Parses the JSON form (as `ponder serve` takes it), naming what is wrong.
    pub fn from_json(json: &str) -> Result<Self> {
        let r: SearchRequest =
            serde_json::from_str(json).map_err(|e| Error::InvalidInput(format!("search request: {e}")))?;
        r.validate()?;
        Ok(r)
    }

    /// All query texts, `query` first.
    pub fn all_queries(&self) -> Vec<String> {
        self.query.iter().cloned().chain(self.queries.iter().cloned()).collect()
    }

    /// Checks ranges and names; every problem is [`Error::InvalidInput`].
    pub fn validate(&self) -> Result<()> {
        self.checked_filter().map(drop)
    }

    /// Validates the request and returns its filter, compiled once.
    fn checked_filter(&self) -> Result<Filter> {
        let bad = |m: String| Err(Error::InvalidInput(m));
        let qs = self.all_queries();
        if qs.is_empty() {
            return bad("no query: give `query` or `queries`".into());
        }
        if qs.len() > MAX_QUERIES {
            return bad(format!("{} queries; at most {MAX_QUERIES}", qs.len()));
        }
        if qs.iter().all(|q| q.trim().is_empty()) {
            return bad("the query is empty".into());
        }
        if !(1..=MAX_K).contains(&self.k) {
            return bad(format!("k must be between 1 and {MAX_K}"));
        }
        if !(1..=MAX_CANDIDATES).contains(&self.candidates) {
            return bad(format!("candidates must be between 1 and {MAX_CANDIDATES}"));
        }
        if !["zscore", "weighted", "rrf"].contains(&self.fusion.as_str()) {
            return bad(format!("unknown fusion {:?} (zscore, weighted, rrf)", self.fusion));
        }
        if self.dense_weight.is_some_and(|w| !(0.0..=1.0).contains(&w)) {
            return bad("dense_weight must be between 0 and 1".into());
        }
        if !(self.rrf_k > 0.0) {
            return bad("rrf_k must be positive".into());
        }
        if !(1..=MAX_K).contains(&self.rerank_top) {
            return bad(format!("rerank_top must be between 1 and {MAX_K}"));
        }
        if !(0.0..=1.0).contains(&self.rerank_weight) {
            return bad("rerank_weight must be between 0 and 1".into());
        }
        if !(self.rerank_min_spread >= 0.0 && self.rerank_min_spread.is_finite()) {
            return bad("rerank_min_spread must be a finite number >= 0".into());
        }
        if self.prf_dense > MAX_K || self.rm3 > MAX_K || self.rm3_terms > MAX_K {
            return bad(format!("prf_dense, rm3 and rm3_terms are at most {MAX_K}"));
        }
        if self.per_file > MAX_K {
            return bad(format!("per_file is at most {MAX_K} (0: no limit)"));
        }
        self.filter()
    }

    /// The retrieval options this request asks for.
    pub fn options(&self) -> Result<SearchOptions> {
        let fusion = match self.fusion.as_str() {
            "rrf" => Fusion::Rrf { k: self.rrf_k },
            "zscore" => Fusion::ZScore { dense_weight: self.dense_weight.unwrap_or(crate::fuse::ZSCORE_DENSE_WEIGHT) },
            "weighted" => Fusion::Weighted { dense_weight: self.dense_weight.unwrap_or(crate::fuse::WEIGHTED_DENSE_WEIGHT) },
            other => return Err(Error::InvalidInput(format!("unknown fusion {other:?} (zscore, weighted, rrf)"))),
        };
        let k = if self.rerank { self.k.max(self.rerank_top) } else { self.k };
        Ok(SearchOptions {
            k,
            mode: self.mode,
            fusion,
            candidates: self.candidates.max(k),
            exact: self.exact,
            rocchio: (self.prf_dense > 0).then_some(Rocchio { docs: self.prf_dense, beta: self.prf_dense_beta }),
            rm3: (self.rm3 > 0).then_some(Rm3 { docs: self.rm3, terms: self.rm3_terms, original_weight: self.rm3_weight }),
            long_query: self.long_query,
            instruction: None,
        })
    }

    /// How hits are diversified: duplicates collapsed, hits per file capped.
    pub fn diversity(&self) -> Diversity {
        Diversity { dedup: self.dedup, per_file: if self.files { 1 } else { self.per_file } }
    }

    /// How many ranked chunks feed the diversification of `k` hits: dropping duplicates and
    /// capping files needs more than k candidates to still return k hits.
    fn pool(&self) -> usize {
        let d = self.diversity();
        if !d.dedup && d.per_file == 0 {
            return self.k;
        }
        let factor = if d.per_file == 1 { 10 } else { 4 };
        (self.k * factor).max(self.k + 40).min(MAX_K * 4)
    }

    /// The file filter this request asks for.
    pub fn filter(&self) -> Result<Filter> {
        Filter::new(&self.path, &self.kinds, self.after.as_deref(), self.before.as_deref())
    }
}

/// Which files may answer a search: path globs (with `!` exclusions), kinds, and a
/// modification-time window. It selects whole files, and so whole chunk-id ranges, which the
/// dense and lexical searches both honour *inside* the search (not as a post-filter).
#[derive(Clone, Debug, Default)]
pub struct Filter {
    include: Option<globset::GlobSet>,
    exclude: Option<globset::GlobSet>,
    kinds: Vec<DocKind>,
    /// Nanoseconds since the epoch, `[after, before)`.
    after_ns: Option<i64>,
    before_ns: Option<i64>,
}

impl Filter {
    /// Compiles a filter; bad globs, kinds and dates are [`Error::InvalidInput`].
    pub fn new(paths: &[String], kinds: &[String], after: Option<&str>, before: Option<&str>) -> Result<Self> {
        let mut include = globset::GlobSetBuilder::new();
        let mut exclude = globset::GlobSetBuilder::new();
        let (mut n_in, mut n_ex) = (0, 0);
        for p in paths {
            let (neg, pat) = match p.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, p.as_str()),
            };
            for g in glob_patterns(pat) {
                let glob = globset::GlobBuilder::new(&g)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| Error::InvalidInput(format!("path glob {p:?}: {e}")))?;
                if neg {
                    exclude.add(glob);
                    n_ex += 1;
                } else {
                    include.add(glob);
                    n_in += 1;
                }
            }
        }
        let build = |b: globset::GlobSetBuilder| b.build().map_err(|e| Error::InvalidInput(format!("path globs: {e}")));
        let kinds = kinds.iter().map(|k| parse_kind(k)).collect::<Result<Vec<_>>>()?;
        let after_ns = after.map(|d| parse_day(d, "after")).transpose()?;
        let before_ns = before.map(|d| parse_day(d, "before")).transpose()?;
        Ok(Filter {
            include: (n_in > 0).then(|| build(include)).transpose()?,
            exclude: (n_ex > 0).then(|| build(exclude)).transpose()?,
            kinds,
            after_ns,
            before_ns,
        })
    }

    /// Whether this filter lets every file through.
    pub fn is_empty(&self) -> bool {
        self.include.is_none() && self.exclude.is_none() && self.kinds.is_empty() && self.after_ns.is_none() && self.before_ns.is_none()
    }

    /// Whether a file passes.
    pub fn accepts(&self, path: &str, entry: &index::manifest::FileEntry) -> bool {
        self.include.as_ref().is_none_or(|g| g.is_match(path))
            && !self.exclude.as_ref().is_some_and(|g| g.is_match(path))
            && (self.kinds.is_empty() || self.kinds.contains(&entry.kind))
            && self.after_ns.is_none_or(|t| entry.mtime >= t)
            && self.before_ns.is_none_or(|t| entry.mtime < t)
    }

    /// The chunks a non-empty filter keeps; `None` when the filter keeps everything.
    pub fn restrict(&self, manifest: &Manifest) -> Option<LiveSet> {
        (!self.is_empty()).then(|| self.live_set(manifest))
    }

    /// The live chunks of the files that pass.
    pub fn live_set(&self, manifest: &Manifest) -> LiveSet {
        let mut ranges: Vec<(u64, u64)> = manifest
            .files
            .iter()
            .filter(|(p, e)| e.chunks.1 > e.chunks.0 && self.accepts(p, e))
            .map(|(_, e)| e.chunks)
            .collect();
        ranges.sort_unstable();
        LiveSet::new(ranges)
    }
}

/// A path argument as globs: relative patterns match anywhere, plain paths match themselves
/// and everything under them.
fn glob_patterns(pat: &str) -> Vec<String> {
    let pat = pat.trim_end_matches('/');
    let anchored = if pat.starts_with('/') || pat.starts_with("**") { pat.to_string() } else { format!("**/{pat}") };
    if pat.contains(['*', '?', '[', '{']) {
        vec![anchored]
    } else {
        vec![anchored.clone(), format!("{anchored}/**")]
    }
}

fn parse_kind(k: &str) -> Result<DocKind> {
    Ok(match k.to_ascii_lowercase().as_str() {
        "pdf" => DocKind::Pdf,
        "md" | "markdown" => DocKind::Markdown,
        "html" | "htm" => DocKind::Html,
        "code" => DocKind::Code,
        "text" | "txt" => DocKind::Text,
        other => return Err(Error::InvalidInput(format!("unknown type {other:?} (pdf, md, html, code, text)"))),
    })
}

/// `YYYY-MM-DD` (UTC midnight) as nanoseconds since the epoch.
fn parse_day(s: &str, what: &str) -> Result<i64> {
    let bad = || Error::InvalidInput(format!("{what}: {s:?} is not a date (YYYY-MM-DD)"));
    let parts: Vec<&str> = s.trim().split('-').collect();
    let [y, m, d] = parts[..] else { return Err(bad()) };
    let (y, m, d): (i64, i64, i64) =
        (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?, d.parse().map_err(|_| bad())?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&m) || d < 1 || d > month_days[(m - 1) as usize] || !(1..=9999).contains(&y) {
        return Err(bad());
    }
    // Days from the civil date (proleptic Gregorian), after Howard Hinnant's algorithm.
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    // Modification times are i64 nanoseconds (until 2262): later days clamp to the end.
    Ok((i128::from(days) * 86_400 * 1_000_000_000).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
}

/// What an index holds (the fields of `ponder status --json`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// The index directory.
    pub index: String,
    /// Commits so far (each commit adds one).
    pub generation: u64,
    /// Indexed files.
    pub files: usize,
    /// Live chunks.
    pub chunks: u64,
    /// Bytes of the committed data files and manifest.
    pub disk_bytes: u64,
    /// usearch files (compaction merges them).
    pub vector_files: usize,
    /// Vector storage: i8, f16, f32 or b1.
    pub vectors: String,
    /// The embedding model (`default` or a path), its fingerprint, compute precision and width.
    pub model: String,
    pub model_fingerprint: String,
    pub precision: String,
    pub dim: usize,
    /// `{"max_tokens", "overlap_tokens"}` of the chunker.
    pub chunking: serde_json::Value,
    /// Instruction prepended to queries, if any.
    pub query_instruction: Option<String>,
    /// Folders and files indexed as roots.
    pub roots: Vec<String>,
    /// Seconds since the epoch.
    pub created_unix: u64,
    pub updated_unix: u64,
}

/// A file's indexed text, or a line range of it ([`Engine::get`]).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Document {
    /// The indexed (absolute) path.
    pub path: String,
    /// First and last line returned (1-based, inclusive).
    pub start_line: u32,
    pub end_line: u32,
    /// Lines in the whole indexed text.
    pub total_lines: u32,
    /// The text of those lines.
    pub text: String,
}

/// Identity of the `MANIFEST` file on disk: a commit renames a new file into place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ManifestKey {
    ino: u64,
    len: u64,
    mtime_ns: i64,
}

fn manifest_key(dir: &Path) -> Option<ManifestKey> {
    let m = std::fs::metadata(dir.join(MANIFEST)).ok()?;
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let ino = 0;
    Some(ManifestKey { ino, len: m.len(), mtime_ns: crate::fsutil::mtime_ns(&m) })
}

/// A committed state of the index, shared by the searches that use it.
pub struct Snapshot {
    /// The opened index at that commit.
    pub reader: IndexReader,
    key: Option<ManifestKey>,
}

/// An index directory with its models, ready to search and to index. See the module docs.
pub struct Engine {
    dir: PathBuf,
    opts: EngineOptions,
    embedder: Mutex<Option<(Arc<Embedder>, ModelStamp)>>,
    /// The query embedder, when it differs from the indexing one (see [`Engine::query_embedder`]).
    query_embedder: Mutex<Option<Arc<Embedder>>>,
    reranker: Mutex<Option<Arc<Reranker>>>,
    snapshot: RwLock<Option<Arc<Snapshot>>>,
    /// Serialises snapshot refreshes (readers keep using the old one meanwhile).
    refreshing: Mutex<()>,
    /// One indexing job at a time in this process.
    writer: Mutex<()>,
    /// Set while a search gives mapped pages back (see [`EngineOptions::resident_limit`]).
    releasing: AtomicBool,
    /// The resident limit, shared with every snapshot's reader (which counts its releases).
    resident_limit: Option<Arc<crate::fsutil::ResidentLimit>>,
}

impl Engine {
    /// Opens the index in `dir`, or prepares to create it there on the first
    /// [`Engine::index`]. Nothing is read yet: models load on first use and the index on the
    /// first search (a corrupt index can still be rebuilt with [`IndexJob::rebuild`]).
    pub fn open(dir: impl AsRef<Path>, opts: EngineOptions) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        if dir.exists() && !dir.is_dir() {
            return Err(Error::InvalidInput(format!("{} is a file, not an index directory", dir.display())));
        }
        let resident_limit = opts.resident_limit.map(|b| Arc::new(crate::fsutil::ResidentLimit::new(b)));
        let engine = Engine {
            dir,
            opts,
            embedder: Mutex::new(None),
            query_embedder: Mutex::new(None),
            reranker: Mutex::new(None),
            snapshot: RwLock::new(None),
            refreshing: Mutex::new(()),
            writer: Mutex::new(()),
            releasing: AtomicBool::new(false),
            resident_limit,
        };
        Ok(engine)
    }

    /// Opens an index that must exist already ([`Error::NoIndex`] otherwise) and reads its
    /// committed state, so that a corrupt index is reported here, naming the file.
    pub fn open_existing(dir: impl AsRef<Path>, opts: EngineOptions) -> Result<Self> {
        let engine = Self::open(dir, opts)?;
        engine.snapshot()?;
        Ok(engine)
    }

    /// The index directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options this engine was opened with.
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Whether an index has been committed in the directory.
    pub fn exists(&self) -> bool {
        self.dir.join(MANIFEST).is_file()
    }

    /// Loads the model and opens the index now, so that the first search is fast.
    /// The two run side by side: on a 100k-chunk index each takes tens of milliseconds.
    pub fn warm(&self) -> Result<()> {
        std::thread::scope(|s| {
            let model = s.spawn(|| self.query_embedder().map(drop));
            let index = if self.exists() { self.snapshot().and_then(|s| s.reader.prepare()) } else { Ok(()) };
            let model = model.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            index.and(model)
        })
    }

    /// The last committed state, reopened first if a newer commit is on disk.
    pub fn snapshot(&self) -> Result<Arc<Snapshot>> {
        let key = manifest_key(&self.dir);
        if key.is_none() {
            return Err(Error::NoIndex(self.dir.clone()));
        }
        if let Some(s) = self.snapshot.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            if s.key == key {
                return Ok(s.clone());
            }
        }
        self.refresh()
    }

    /// Reopens the snapshot from disk (reusing the data files it already has open).
    pub fn refresh(&self) -> Result<Arc<Snapshot>> {
        let _one = self.refreshing.lock().unwrap_or_else(|e| e.into_inner());
        let key = manifest_key(&self.dir);
        let current = self.snapshot.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(s) = &current {
            if s.key == key {
                return Ok(s.clone());
            }
        }
        let reader = match &current {
            Some(s) => s.reader.reopen(),
            None => IndexReader::open(&self.dir).map(|r| r.with_resident_limit(self.resident_limit.clone())),
        };
        let reader = reader.map_err(|e| match e {
            Error::MissingFile(p) if p.ends_with(MANIFEST) => Error::NoIndex(self.dir.clone()),
            other => other,
        })?;
        let snap = Arc::new(Snapshot { reader, key });
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Some(snap.clone());
        Ok(snap)
    }

    /// The embedding model: the one named in the options, else the index's, else the
    /// embedded default. Loaded once.
    pub fn embedder(&self) -> Result<Arc<Embedder>> {
        Ok(self.embedder_and_stamp()?.0)
    }

    /// The model that embeds queries. With `DeviceChoice::Auto` this is the native CPU
    /// runtime: one short query takes a few milliseconds there, while finding and starting a
    /// GPU costs about 90 ms and 77 MB before the first result (measured with lavapipe present).
    /// Indexing, which embeds in bulk, still takes a GPU when there is one. Other choices
    /// embed queries where they index.
    pub fn query_embedder(&self) -> Result<Arc<Embedder>> {
        if self.opts.device != DeviceChoice::Auto {
            return self.embedder();
        }
        if let Some((e, _)) = self.embedder.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            if e.is_native_cpu() {
                return Ok(e.clone());
            }
        }
        let mut slot = self.query_embedder.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = slot.as_ref() {
            return Ok(e.clone());
        }
        let e = Arc::new(self.load_embedder(DeviceChoice::Cpu)?.0);
        *slot = Some(e.clone());
        Ok(e)
    }

    fn embedder_and_stamp(&self) -> Result<(Arc<Embedder>, ModelStamp)> {
        let mut slot = self.embedder.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((e, s)) = slot.as_ref() {
            return Ok((e.clone(), s.clone()));
        }
        let (embedder, stamp) = self.load_embedder(self.opts.device)?;
        let embedder = Arc::new(embedder);
        *slot = Some((embedder.clone(), stamp.clone()));
        Ok((embedder, stamp))
    }

    /// Loads the model named in the options, else the index's (checked by fingerprint), else
    /// the embedded default, on `device`.
    fn load_embedder(&self, device: DeviceChoice) -> Result<(Embedder, ModelStamp)> {
        // The open snapshot's manifest, when there is one: a 100k-file manifest takes tens of
        // milliseconds to read again.
        let snap = self.snapshot.read().unwrap_or_else(|e| e.into_inner()).clone();
        let stamp = match &snap {
            Some(s) => Some(s.reader.manifest.model.clone()),
            None => Manifest::read_model(&self.dir).ok().flatten(),
        };
        Ok(match (&self.opts.model, stamp) {
            (Some(src), _) => load_model(src, self.opts.precision, device)?,
            (None, Some(m)) => {
                let source: ModelSource = m.name.parse().unwrap_or(ModelSource::Default);
                let precision = self.opts.precision.or(Some(if m.precision == "int8" { Precision::Int8 } else { Precision::F32 }));
                let (e, s) = load_model(&source, precision, device)?;
                if s.fingerprint != m.fingerprint {
                    return Err(Error::InvalidInput(format!(
                        "the index in {} was built with model {} (fingerprint {}), but that model now has fingerprint {}; re-index with --rebuild",
                        self.dir.display(), m.name, m.fingerprint, s.fingerprint
                    )));
                }
                (e, s)
            }
            (None, None) => load_model(&ModelSource::Default, self.opts.precision, device)?,
        })
    }

    /// The reranker, loaded on first use.
    pub fn reranker(&self) -> Result<Arc<Reranker>> {
        let mut slot = self.reranker.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = slot.as_ref() {
            return Ok(r.clone());
        }
        let r = Arc::new(load_reranker(&self.opts.reranker, self.opts.reranker_precision, self.opts.device)?);
        *slot = Some(r.clone());
        Ok(r)
    }

    /// Ranked (chunk id, score) pairs for a request, against one snapshot; reranked when the
    /// request asks. Duplicates are not collapsed and files not capped: [`Engine::search`] does
    /// that, and turns them into hits.
    pub fn rank(&self, snap: &Snapshot, req: &SearchRequest) -> Result<Vec<(u64, f32)>> {
        let mut r = self.rank_detailed(snap, req, req.k, false)?;
        r.ranked.truncate(req.k);
        self.keep_under_resident_limit(snap);
        Ok(r.ranked)
    }

    /// Gives the snapshot's mapped pages back when this process is over
    /// [`EngineOptions::resident_limit`]. One search at a time does it; the others go on.
    fn keep_under_resident_limit(&self, snap: &Snapshot) {
        let Some(limit) = self.resident_limit.as_ref().filter(|l| l.over()) else { return };
        if self.releasing.swap(true, Ordering::AcqRel) {
            return;
        }
        snap.reader.release_pages();
        // Queries read rows of the built-in model's word-embedding table back in, a page
        // (and the kernel's fault-around) at a time: 10 MB after 200 searches.
        crate::model::embedded::release_pages();
        limit.count_release();
        self.releasing.store(false, Ordering::Release);
    }

    /// How many times searches gave mapped index pages back to stay under
    /// [`EngineOptions::resident_limit`]: a vector file after its part of a search, or every
    /// mapped file of the snapshot after a search.
    pub fn page_releases(&self) -> u64 {
        self.resident_limit.as_ref().map_or(0, |l| l.releases())
    }

    /// The top `pool` of a request's ranking, with the signals behind it when `explain`.
    fn rank_detailed(&self, snap: &Snapshot, req: &SearchRequest, pool: usize, explain: bool) -> Result<Ranking> {
        let filter = req.checked_filter()?;
        let queries = req.all_queries();
        let mut opts = req.options()?;
        opts.k = opts.k.max(pool);
        opts.candidates = opts.candidates.max(opts.k);
        let embedder = self.query_embedder()?;
        let built = &snap.reader.manifest.model;
        if req.mode != Mode::Lexical && embedder.dim() != built.dim {
            return Err(Error::InvalidInput(format!(
                "the index in {} was built with model {} ({} dimensions); this model gives {} dimensions: search with that model, or re-index with --rebuild",
                self.dir.display(), built.name, built.dim, embedder.dim()
            )));
        }
        let live = filter.restrict(&snap.reader.manifest);
        let mut searcher = Searcher::new(&snap.reader, &embedder);
        if let Some(l) = &live {
            searcher = searcher.with_filter(l);
        }
        let mut signals = explain.then(Signals::default);
        let ranked = searcher.search_with_signals(&queries, &opts, signals.as_mut())?;
        let mut out = Ranking { fused: HashMap::new(), rerank: HashMap::new(), signals, ranked: Vec::new() };
        if explain {
            out.fused = ranked.iter().copied().collect();
        }
        if !req.rerank {
            out.ranked = ranked;
            return Ok(out);
        }
        let reranker = self.reranker()?;
        let n = req.rerank_top.min(ranked.len());
        let texts: Vec<String> = ranked[..n]
            .iter()
            .map(|(id, _)| Ok(snap.reader.chunk(*id)?.map(|h| h.record.text).unwrap_or_default()))
            .collect::<Result<_>>()?;
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        // Several queries: the reranker reads them joined, as one information need.
        let scores = reranker.score(&queries.join(" "), &refs)?;
        if explain {
            out.rerank = ranked[..n].iter().map(|x| x.0).zip(scores.iter().copied()).collect();
        }
        out.ranked = crate::rerank::interpolate_gated(&ranked, &scores, req.rerank_weight, req.rerank_min_spread);
        Ok(out)
    }

    /// Searches the last committed state: ranks, collapses duplicates, caps hits per file, and
    /// explains each hit when asked.
    pub fn search(&self, req: &SearchRequest) -> Result<Vec<Hit>> {
        let snap = self.snapshot()?;
        let ranking = self.rank_detailed(&snap, req, req.pool(), req.explain)?;
        let queries = req.all_queries();
        let reader = &snap.reader;
        // Without duplicates to drop or files to cap, the pool is k and every candidate is a hit.
        let pool = req.pool();
        let mut loaded = Vec::with_capacity(pool.min(ranking.ranked.len()));
        for &(id, score) in ranking.ranked.iter().take(pool) {
            let Some(hit) = reader.chunk(id)? else { continue };
            let file_chunks = reader.manifest.files.get(&hit.path).map_or(u64::MAX, |e| e.chunks.1 - e.chunks.0);
            loaded.push((id, score, hit, file_chunks));
        }
        let cands: Vec<Candidate> = loaded
            .iter()
            .map(|(_, _, h, n)| Candidate { path: &h.path, text: &h.record.text, file_chunks: *n })
            .collect();
        let groups = collapse(&cands, req.k, req.diversity());
        let terms = query_terms(reader, &queries);
        let mut out = Vec::with_capacity(groups.len());
        for g in groups {
            let (id, _, hit, _) = &loaded[g.shown];
            let mut h = make_hit(reader, &terms, *id, loaded[g.best].1, hit.clone());
            h.also_in = g.also_in;
            if req.explain {
                h.explain = Some(ranking.explain(*id));
            }
            out.push(h);
        }
        self.keep_under_resident_limit(&snap);
        Ok(out)
    }

    /// Indexes files and folders (new and changed files are embedded, unchanged ones skipped,
    /// files gone from under them removed) and records them as roots of the index. With no
    /// paths, re-indexes the roots recorded before. `on` hears progress, warnings and commits;
    /// searches see each commit as it happens.
    pub fn index(&self, paths: &[PathBuf], job: &IndexJob, on: &mut dyn FnMut(Progress)) -> Result<IndexReport> {
        self.write(job, on, |ix, on| {
            let roots: Vec<PathBuf> = if paths.is_empty() {
                ix.manifest().roots.iter().map(PathBuf::from).collect()
            } else {
                paths.to_vec()
            };
            if roots.is_empty() {
                if job.compact {
                    return Ok(IndexReport { generation: ix.manifest().generation, ..Default::default() });
                }
                return Err(Error::InvalidInput("nothing to index: give one or more paths".into()));
            }
            ix.index(&roots, on)
        })
    }

    /// Brings the index up to date for paths that changed (files or folders, existing or not),
    /// without making them roots: what the file watcher calls.
    pub fn update(&self, paths: &[PathBuf], job: &IndexJob, on: &mut dyn FnMut(Progress)) -> Result<IndexReport> {
        self.write(job, on, |ix, on| ix.update(paths, on))
    }

    /// Removes a file, or every file under a folder; returns how many. The path stays excluded
    /// from later runs over its root until it is indexed again explicitly.
    pub fn remove(&self, path: &Path) -> Result<usize> {
        let n = self.write(&IndexJob::default(), &mut |_| {}, |ix, _| Ok(IndexReport { files_removed: ix.remove(path)?, ..Default::default() }))?;
        Ok(n.files_removed)
    }

    fn write(
        &self,
        job: &IndexJob,
        on: &mut dyn FnMut(Progress),
        work: impl FnOnce(&mut Indexer, &mut dyn FnMut(Progress)) -> Result<IndexReport>,
    ) -> Result<IndexReport> {
        let _one = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let (embedder, stamp) = self.embedder_and_stamp()?;
        let existing = if job.rebuild { None } else { Manifest::read(&self.dir).ok().flatten() };
        let mut opts = index::IndexOptions {
            walk: self.opts.walk.clone(),
            vector_kind: self.opts.vectors.unwrap_or_default(),
            instruction: job.instruction.clone(),
            rebuild: job.rebuild,
            commit_every_chunks: self.opts.commit_every_chunks.max(1),
            commit_every_secs: self.opts.commit_every_secs,
            cancel: job.cancel.clone(),
            ..Default::default()
        };
        if let Some(m) = &existing {
            opts.chunking = m.chunking.clone();
            opts.vector_kind = self.opts.vectors.unwrap_or(m.vector_kind);
        } else {
            // A new index: chunks no longer than the model embeds whole (a ColBERT model's
            // `document_length` can be shorter than the default chunk).
            let c = &mut opts.chunking;
            c.max_tokens = c.max_tokens.min(embedder.chunk_capacity());
            c.overlap_tokens = c.overlap_tokens.min(c.max_tokens / 4);
        }
        let mut ix = Indexer::open(&self.dir, &embedder, stamp, opts)?;
        let _ = self.refresh();
        let mut hear = |p: Progress| {
            if matches!(p, Progress::Committed { .. }) {
                let _ = self.refresh();
            }
            on(p);
        };
        let mut report = work(&mut ix, &mut hear)?;
        if job.compact {
            ix.compact(&mut hear)?;
            report.generation = ix.manifest().generation;
        }
        drop(ix);
        let _ = self.refresh();
        Ok(report)
    }

    /// Reads the whole index and verifies every data file (`ponder check`): sizes and
    /// checksums against the manifest, then each file's structure. Searches do not do this.
    pub fn check(&self) -> Result<crate::index::check::CheckReport> {
        crate::index::check::check(&self.dir).map_err(|e| match e {
            Error::MissingFile(p) if p.ends_with(MANIFEST) => Error::NoIndex(self.dir.clone()),
            other => other,
        })
    }

    /// What the index holds.
    pub fn status(&self) -> Result<Status> {
        let snap = self.snapshot()?;
        let r = &snap.reader;
        let m = &r.manifest;
        Ok(Status {
            index: self.dir.display().to_string(),
            generation: m.generation,
            files: m.files.len(),
            chunks: m.live_chunks(),
            disk_bytes: r.disk_bytes(),
            vector_files: r.vector_files(),
            vectors: format!("{:?}", m.vector_kind).to_lowercase(),
            model: m.model.name.clone(),
            model_fingerprint: m.model.fingerprint.clone(),
            precision: m.model.precision.clone(),
            dim: m.model.dim,
            chunking: serde_json::json!({"max_tokens": m.chunking.max_tokens, "overlap_tokens": m.chunking.overlap_tokens}),
            query_instruction: m.query_instruction.clone(),
            roots: m.roots.clone(),
            created_unix: m.created_unix,
            updated_unix: m.updated_unix,
        })
    }

    /// A file's text as ponder indexed it (what the chunks hold, not the file as it is now),
    /// whole or lines `start..=end` (1-based). `path` may be relative to the current directory.
    pub fn get(&self, path: &Path, lines: Option<(u32, u32)>) -> Result<Document> {
        let snap = self.snapshot()?;
        let m = &snap.reader.manifest;
        let key = resolve_indexed(m, path).ok_or_else(|| Error::NotIndexed(path.display().to_string()))?;
        let entry = &m.files[&key];
        let records = snap.reader.records_in(entry.chunks.0, entry.chunks.1)?;
        // Chunks are exact slices of the document and overlap; between two chunks there is only
        // whitespace, which comes back as the line breaks that keep line numbers right.
        let mut text = String::new();
        let mut covered = 0usize;
        let mut line = 1u32;
        for r in &records {
            let (s, e) = (r.start_byte as usize, r.end_byte as usize);
            if e <= covered && !text.is_empty() {
                continue;
            }
            let piece = if s >= covered || text.is_empty() {
                while line < r.start_line {
                    text.push('\n');
                    line += 1;
                }
                if s > covered && !text.is_empty() && !text.ends_with('\n') {
                    text.push(' ');
                }
                r.text.as_str()
            } else {
                let mut cut = (covered - s).min(r.text.len());
                while !r.text.is_char_boundary(cut) {
                    cut += 1;
                }
                &r.text[cut..]
            };
            text.push_str(piece);
            line += piece.matches('\n').count() as u32;
            covered = covered.max(e);
        }
        let all: Vec<&str> = text.split('\n').collect();
        let total = all.len() as u32;
        let (a, b) = match lines {
            None => (1, total),
            Some((a, b)) => {
                if a == 0 || b < a {
                    return Err(Error::InvalidInput(format!("bad line range {a}-{b} (1-based, start <= end)")));
                }
                if a > total {
                    return Err(Error::InvalidInput(format!("{key} has {total} lines; line {a} is past the end")));
                }
                (a, b.min(total))
            }
        };
        Ok(Document { path: key, start_line: a, end_line: b, total_lines: total, text: all[(a - 1) as usize..b as usize].join("\n") })
    }
}

/// The indexed path a user's path names: as given, or made absolute and canonical.
fn resolve_indexed(m: &Manifest, path: &Path) -> Option<String> {
    let given = path.to_string_lossy().into_owned();
    if m.files.contains_key(&given) {
        return Some(given);
    }
    let abs = std::fs::canonicalize(path)
        .ok()
        .or_else(|| std::env::current_dir().ok().map(|d| d.join(path)))?
        .to_string_lossy()
        .into_owned();
    m.files.contains_key(&abs).then_some(abs)
}

/// Hits for ranked chunk ids, with the queries' (analyzed) terms highlighted; chunks that
/// are gone are skipped.
pub fn hits(reader: &IndexReader, queries: &[String], ranked: &[(u64, f32)]) -> Result<Vec<Hit>> {
    let terms = query_terms(reader, queries);
    let mut out = Vec::with_capacity(ranked.len());
    for (id, score) in ranked {
        let Some(hit) = reader.chunk(*id)? else { continue };
        out.push(make_hit(reader, &terms, *id, *score, hit));
    }
    Ok(out)
}

fn query_terms(reader: &IndexReader, queries: &[String]) -> Vec<String> {
    queries.iter().flat_map(|q| reader.lexical.query_terms(q)).collect()
}

fn make_hit(reader: &IndexReader, terms: &[String], id: u64, score: f32, hit: crate::index::reader::ChunkHit) -> Hit {
    let r = hit.record;
    let highlights = present::matches(&r.text, terms, &reader.lexical.analyzer);
    Hit {
        path: hit.path,
        score,
        start_line: r.start_line,
        end_line: r.end_line,
        heading: r.heading,
        text: r.text,
        highlights,
        chunk_id: id,
        page: r.pages.map(|p| p.0),
        page_end: r.pages.map(|p| p.1),
        also_in: Vec::new(),
        explain: None,
    }
}

/// A ranking and, for explanations, what produced it.
struct Ranking {
    ranked: Vec<(u64, f32)>,
    signals: Option<Signals>,
    /// The retriever's (fused) score of each candidate, before any rerank.
    fused: HashMap<u64, f32>,
    rerank: HashMap<u64, f32>,
}

impl Ranking {
    fn explain(&self, id: u64) -> Explain {
        let (dense, lexical) = match &self.signals {
            Some(s) => (s.dense.get(&id).copied(), s.lexical.get(&id).copied()),
            None => (None, None),
        };
        Explain {
            dense_score: dense.map(|d| d.1),
            dense_rank: dense.map(|d| d.0),
            lexical_score: lexical.map(|l| l.1),
            lexical_rank: lexical.map(|l| l.0),
            fused_score: self.fused.get(&id).copied(),
            rerank_score: self.rerank.get(&id).copied(),
        }
    }
}

/// The compute precision: the one asked for, else int8 for int8 files and f32 otherwise.
pub fn compute_precision(asked: Option<Precision>, weights: &ModelWeights) -> Result<Precision> {
    let precision = asked.unwrap_or(match format::precision_of(weights) {
        Precision::Int8 => Precision::Int8,
        _ => Precision::F32,
    });
    if precision == Precision::F16 {
        return Err(Error::InvalidInput("f16 is a storage format (model import), not a compute precision".into()));
    }
    Ok(precision)
}

/// A display name for a model source (`default`, or the canonical path).
pub fn model_name(m: &ModelSource) -> String {
    match m {
        ModelSource::Default => "default".into(),
        ModelSource::Path(p) => std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()).display().to_string(),
    }
}

/// Loads an embedding model and the stamp an index records for it.
pub fn load_model(source: &ModelSource, precision: Option<Precision>, device: DeviceChoice) -> Result<(Embedder, ModelStamp)> {
    let weights = source.load()?;
    let precision = compute_precision(precision, &weights)?;
    let embedder = Embedder::new(&weights, precision, device)?;
    let stamp = ModelStamp {
        name: model_name(source),
        fingerprint: weights.fingerprint(),
        dim: embedder.dim(),
        precision: embedder.precision_name().to_string(),
    };
    // The fingerprint read every byte of the model: give the built-in one's pages back.
    if matches!(source, ModelSource::Default) {
        crate::model::embedded::release_pages();
    }
    Ok((embedder, stamp))
}

/// Loads a cross-encoder reranker (`default`: the built-in one) at the asked precision.
pub fn load_reranker(source: &ModelSource, precision: Option<Precision>, device: DeviceChoice) -> Result<Reranker> {
    let weights = reranker_weights(source)?;
    let precision = compute_precision(precision, &weights)?;
    let reranker = Reranker::new(&weights, precision, device)?;
    if matches!(source, ModelSource::Default) {
        crate::model::embedded::release_pages();
    }
    Ok(reranker)
}

/// A cross-encoder's weights: the built-in reranker for `default`, else the file or directory.
pub fn reranker_weights(src: &ModelSource) -> Result<ModelWeights> {
    match src {
        ModelSource::Default => Reranker::default_weights(),
        other => other.load(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn engine_is_send_and_sync() {
        assert_send_sync::<Engine>();
    }

    #[test]
    fn request_json_defaults_and_errors() {
        let r = SearchRequest::from_json(r#"{"query": "dough", "k": 3, "mode": "lexical"}"#).unwrap();
        assert_eq!((r.k, r.mode, r.rerank_top), (3, Mode::Lexical, 20));
        for bad in [
            r#"{"query": "x", "colour": 1}"#,
            r#"{"query": 5}"#,
            r#"{"k": 3}"#,
            r#"{"query": "x", "k": 0}"#,
            r#"{"query": "x", "mode": "psychic"}"#,
            r#"{"query": "x", "rerank_weight": 2}"#,
            r#"{"query": "x", "type": ["spreadsheet"]}"#,
            r#"{"query": "x", "after": "2024-02-30"}"#,
            r#"[1, 2"#,
        ] {
            assert!(matches!(SearchRequest::from_json(bad), Err(Error::InvalidInput(_))), "{bad} was accepted");
        }
    }

    /// Loading the built-in models gives their pages back; the word-embedding rows that
    /// queries read afterwards come back from the binary with the same values.
    #[test]
    fn built_in_models_embed_the_same_after_their_pages_are_given_back() {
        let texts = ["zebra crossings in Lisbon", "quantum chromodynamics lattice", "a recipe for sourdough"];
        let (embedder, _) = load_model(&ModelSource::Default, None, DeviceChoice::Cpu).unwrap();
        let first = embedder.embed(&texts).unwrap();
        // The bytes read back still match the file's checksum (dropping anonymous memory
        // would have zeroed them).
        let bytes = crate::model::weights::Bytes::from_static(crate::model::embedded::DEFAULT_MODEL);
        crate::model::format::read_bytes(bytes, Path::new("default model")).unwrap();
        crate::model::embedded::release_pages();
        assert_eq!(embedder.embed(&texts).unwrap(), first);
        let reranker = load_reranker(&ModelSource::Default, None, DeviceChoice::Cpu).unwrap();
        let scores = reranker.score("bread", &texts).unwrap();
        crate::model::embedded::release_pages();
        assert_eq!(reranker.score("bread", &texts).unwrap(), scores);
    }

    #[test]
    fn days_since_epoch() {
        assert_eq!(parse_day("1970-01-01", "x").unwrap(), 0);
        assert_eq!(parse_day("2000-03-01", "x").unwrap(), 11_017 * 86_400 * 1_000_000_000);
        assert_eq!(parse_day("2024-02-29", "x").unwrap(), 19_782 * 86_400 * 1_000_000_000);
        assert_eq!(parse_day("2999-01-01", "x").unwrap(), i64::MAX);
    }

    #[test]
    fn filter_globs_kinds_and_dates() {
        let e = |kind, mtime| index::manifest::FileEntry { hash: [0; 32], size: 0, mtime, kind, chunks: (0, 1) };
        let f = Filter::new(&["notes".into(), "!**/draft*".into()], &[], None, None).unwrap();
        assert!(f.accepts("/home/a/notes/x.md", &e(DocKind::Markdown, 0)));
        assert!(!f.accepts("/home/a/notes/draft1.md", &e(DocKind::Markdown, 0)));
        assert!(!f.accepts("/home/a/papers/x.pdf", &e(DocKind::Pdf, 0)));
        let f = Filter::new(&["*.md".into()], &["md".into()], Some("2020-01-01"), Some("2021-01-01")).unwrap();
        let t2020 = parse_day("2020-06-01", "").unwrap();
        assert!(f.accepts("/a/b/c.md", &e(DocKind::Markdown, t2020)));
        assert!(!f.accepts("/a/b/c.md", &e(DocKind::Markdown, 0)));
        assert!(!f.accepts("/a/b/c.txt", &e(DocKind::Markdown, t2020)));
        assert!(!f.accepts("/a/b/c.md", &e(DocKind::Text, t2020)));
    }
}
