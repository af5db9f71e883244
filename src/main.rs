//! The `ponder` command line: wires flags to the library and reports errors.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use ponder::device::DeviceChoice;
use ponder::engine::{self, Engine, EngineOptions, IndexJob, SearchRequest};
use ponder::index::{self, IndexReader, ModelStamp, Progress, VectorKind};
use ponder::model::{format, ModelSource, Precision};
use ponder::eval::percentile;
use ponder::present;
use ponder::retrieve::{Mode, SearchOptions, Searcher};
use ponder::Embedder;

#[derive(Parser)]
#[command(name = "ponder", version, about = "Offline, on-device semantic search")]
struct Cli {
    /// Worker threads for CPU compute (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct ModelArgs {
    /// `default` (the embedded model), a Hugging Face directory, or a ponder model file.
    #[arg(long, default_value = "default")]
    model: ModelSource,
    /// Compute precision (default: int8 for int8 model files, f32 otherwise).
    #[arg(long, value_enum)]
    precision: Option<Precision>,
    /// Where to run: auto (a real GPU if present, else CPU), cpu, gpu (wgpu, any adapter),
    /// flex (burn's CPU backend).
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceChoice,
}

impl ModelArgs {
    fn load(&self) -> Result<Embedder> {
        Ok(self.load_with_stamp()?.0)
    }

    fn load_with_stamp(&self) -> Result<(Embedder, ModelStamp)> {
        engine::load_model(&self.model, self.precision, self.device)
            .with_context(|| format!("loading model {}", engine::model_name(&self.model)))
    }
}

/// The cross-encoder reranker.
#[derive(clap::Args, Clone)]
struct RerankArgs {
    /// Rerank the top candidates with the cross-encoder and interpolate its score with the
    /// retriever's.
    #[arg(long)]
    rerank: bool,
    /// `default` (the built-in reranker), a Hugging Face BertForSequenceClassification
    /// directory, or a ponder model file.
    #[arg(long, default_value = "default")]
    reranker: ModelSource,
    /// Compute precision of the reranker (default: int8 for int8 files, f32 otherwise).
    #[arg(long, value_enum)]
    reranker_precision: Option<Precision>,
    /// How many of the retriever's top candidates to rerank (eval: comma-separated list).
    #[arg(long, value_delimiter = ',', default_value = "20")]
    rerank_top: Vec<usize>,
    /// Reranker weight in the interpolation, 0..1; the retriever gets the rest (eval:
    /// comma-separated list). 0.3 measured best of 0/0.3/0.5/0.7/1 on SciFact and held-out SQuAD.
    #[arg(long, value_delimiter = ',', default_value = "0.3")]
    rerank_weight: Vec<f32>,
    /// Rerank a query's candidates only when the reranker's scores spread at least this much
    /// (standard deviation of its logits): flat scores mean it cannot tell them apart. 0 always
    /// reranks.
    #[arg(long, default_value_t = ponder::rerank::DEFAULT_MIN_SPREAD)]
    rerank_min_spread: f32,
}

impl RerankArgs {
    fn load(&self, device: DeviceChoice) -> Result<ponder::rerank::Reranker> {
        engine::load_reranker(&self.reranker, self.reranker_precision, device)
            .with_context(|| format!("loading reranker {}", engine::model_name(&self.reranker)))
    }

    fn check(&self) -> Result<()> {
        if self.rerank_top.is_empty() || self.rerank_top.contains(&0) {
            bail!("--rerank-top must be at least 1");
        }
        if self.rerank_weight.iter().any(|w| !(0.0..=1.0).contains(w)) {
            bail!("--rerank-weight must be between 0 and 1");
        }
        Ok(())
    }
}

/// How candidates are retrieved and combined.
#[derive(clap::Args, Clone)]
struct RetrievalArgs {
    #[arg(long, value_enum, default_value = "hybrid")]
    mode: Mode,
    /// Hybrid fusion: zscore (standardised scores), weighted (min-max normalised scores) or
    /// rrf (reciprocal rank).
    #[arg(long, default_value = "zscore")]
    fusion: String,
    /// Dense weight for --fusion zscore (default 0.6) or weighted (default 0.5).
    #[arg(long)]
    dense_weight: Option<f32>,
    /// RRF constant.
    #[arg(long, default_value_t = 60.0)]
    rrf_k: f32,
    /// Candidates per retriever before fusion.
    #[arg(long, default_value_t = 100)]
    candidates: usize,
    /// Exact vector search instead of HNSW.
    #[arg(long)]
    exact: bool,
    /// Dense pseudo-relevance feedback (Rocchio) over this many top documents (0 = off).
    #[arg(long, default_value_t = 0)]
    prf_dense: usize,
    /// Rocchio feedback weight.
    #[arg(long, default_value_t = 0.5)]
    prf_dense_beta: f32,
    /// Lexical pseudo-relevance feedback (RM3) over this many top documents (0 = off).
    #[arg(long, default_value_t = 0)]
    rm3: usize,
    /// RM3 expansion terms.
    #[arg(long, default_value_t = 10)]
    rm3_terms: usize,
    /// RM3 weight of the original query.
    #[arg(long, default_value_t = 0.5)]
    rm3_weight: f32,
    /// Queries longer than the model window: truncate, or split (mean of window vectors).
    #[arg(long, value_enum, default_value = "truncate")]
    long_query: ponder::retrieve::LongQuery,
}

impl RetrievalArgs {
    /// The request these flags describe (no query yet).
    fn request(&self, k: usize) -> SearchRequest {
        SearchRequest {
            k,
            mode: self.mode,
            fusion: self.fusion.clone(),
            dense_weight: self.dense_weight,
            rrf_k: self.rrf_k,
            candidates: self.candidates.max(k),
            exact: self.exact,
            long_query: self.long_query,
            prf_dense: self.prf_dense,
            prf_dense_beta: self.prf_dense_beta,
            rm3: self.rm3,
            rm3_terms: self.rm3_terms,
            rm3_weight: self.rm3_weight,
            ..Default::default()
        }
    }
}

/// How hits are presented: duplicates, files, explanations.
#[derive(clap::Args, Clone, Default)]
struct PresentArgs {
    /// Most hits from one file (0: no limit).
    #[arg(long, default_value_t = ponder::engine::DEFAULT_PER_FILE)]
    per_file: usize,
    /// One row per file: its best chunk.
    #[arg(long)]
    files: bool,
    /// Keep chunks whose text repeats in other files as separate hits (by default they
    /// collapse into one hit listing the other paths).
    #[arg(long)]
    no_dedup: bool,
    /// Show each hit's dense and lexical score and rank, fused score and rerank score.
    #[arg(long)]
    explain: bool,
}

impl PresentArgs {
    fn apply(&self, req: &mut SearchRequest) {
        req.per_file = self.per_file;
        req.files = self.files;
        req.dedup = !self.no_dedup;
        req.explain = self.explain;
    }
}

/// Which files may answer.
#[derive(clap::Args, Clone, Default)]
struct FilterArgs {
    /// Only files whose path matches this glob (repeatable; `!GLOB` excludes). A relative
    /// glob matches anywhere (`*.md`), a plain path matches the file or folder.
    #[arg(long = "path", value_name = "GLOB")]
    path: Vec<String>,
    /// Only files of this kind: pdf, md, html, code, text (repeatable).
    #[arg(long = "type", value_name = "KIND")]
    kinds: Vec<String>,
    /// Only files modified on or after this day (YYYY-MM-DD, UTC).
    #[arg(long, value_name = "YYYY-MM-DD")]
    after: Option<String>,
    /// Only files modified before this day (YYYY-MM-DD, UTC).
    #[arg(long, value_name = "YYYY-MM-DD")]
    before: Option<String>,
}

impl FilterArgs {
    fn apply(&self, req: &mut SearchRequest) {
        req.path = self.path.clone();
        req.kinds = self.kinds.clone();
        req.after = self.after.clone();
        req.before = self.before.clone();
    }
}

#[derive(clap::Args, Clone)]
struct IndexDirArg {
    /// Index directory (default: the user data directory, e.g. ~/.local/share/ponder/index).
    #[arg(long)]
    index: Option<PathBuf>,
}

impl IndexDirArg {
    fn dir(&self) -> PathBuf {
        self.index.clone().unwrap_or_else(index::default_dir)
    }
}

/// `--resident-limit-mb` of the long-lived commands (`serve`, `mcp`).
#[derive(clap::Args, Clone)]
struct ResidentLimitArg {
    /// Keep the process's resident memory (RSS) under this many MiB: past it, searches give
    /// the memory-mapped index pages back to the page cache (Linux).
    #[arg(long)]
    resident_limit_mb: Option<u64>,
}

impl ResidentLimitArg {
    /// [`EngineOptions::resident_limit`]: the limit in bytes.
    fn bytes(&self) -> Option<u64> {
        self.resident_limit_mb.map(|mb| mb.saturating_mul(1 << 20))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Embed JSON strings read one per line from stdin; write one JSON array per line.
    Embed {
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Embed a few sentences with the embedded model and show their cosine similarities.
    Demo {
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Index files and folders (new and changed files are embedded; unchanged ones skipped).
    Index {
        /// Files or folders (default: the folders indexed before).
        paths: Vec<PathBuf>,
        #[command(flatten)]
        dir: IndexDirArg,
        #[command(flatten)]
        model: ModelArgs,
        /// Vector storage in usearch (default: the index's, i8 for a new one).
        #[arg(long, value_enum)]
        vectors: Option<VectorKind>,
        /// Instruction prepended to every query of this index (documents are embedded as is).
        #[arg(long)]
        instruction: Option<String>,
        /// Include hidden files and folders.
        #[arg(long)]
        hidden: bool,
        /// Do not honour .gitignore / .ignore files.
        #[arg(long)]
        no_ignore: bool,
        /// Also index generated and minified files (bundles, *.min.js, lock files, search
        /// indexes, files marked @generated), which are skipped with a warning otherwise.
        #[arg(long)]
        include_generated: bool,
        /// Skip files larger than this many bytes.
        #[arg(long, default_value_t = 50 * 1024 * 1024)]
        max_file_size: u64,
        /// Discard the stored index and build it again (recovers a corrupt index).
        #[arg(long)]
        rebuild: bool,
        /// Rewrite the index into one file per kind, dropping removed chunks.
        #[arg(long)]
        compact: bool,
        /// Progress output: auto (a bar on a terminal, lines otherwise), plain, json, none.
        #[arg(long, default_value = "auto")]
        progress: String,
        /// Commit after this many new chunks.
        #[arg(long, default_value_t = 2048, hide = true)]
        commit_every: usize,
    },
    /// Search the index.
    Search {
        /// The query. Without it (and without --query), a JSON list of queries (or one JSON
        /// string) is read from stdin; several queries are fused into one ranking.
        query: Option<String>,
        /// More queries, fused with the first (e.g. an agent's rewritten queries).
        #[arg(long = "query")]
        queries: Vec<String>,
        #[command(flatten)]
        dir: IndexDirArg,
        /// Number of results.
        #[arg(short = 'k', long = "k", default_value_t = 10)]
        k: usize,
        #[command(flatten)]
        retrieval: RetrievalArgs,
        #[command(flatten)]
        rerank: RerankArgs,
        #[command(flatten)]
        filter: FilterArgs,
        #[command(flatten)]
        present: PresentArgs,
        /// One JSON object per result line.
        #[arg(long)]
        json: bool,
        #[arg(long, value_enum, default_value = "auto")]
        device: DeviceChoice,
    },
    /// Print a file's text as ponder indexed it, or a line range of it: PATH or PATH:START-END.
    Get {
        /// An indexed file, optionally with a line range (`notes/a.md:10-20`).
        target: String,
        #[command(flatten)]
        dir: IndexDirArg,
        /// A JSON object (path, start_line, end_line, total_lines, text) instead of the text.
        #[arg(long)]
        json: bool,
    },
    /// Serve the index over HTTP/JSON (and a Unix socket) with the model kept loaded.
    Serve {
        #[command(flatten)]
        dir: IndexDirArg,
        /// TCP address to listen on (default 127.0.0.1:7700; port 0 picks a free port).
        #[arg(long)]
        addr: Option<String>,
        /// Also (or only) listen on this Unix socket.
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Follow the index's folders and re-index files as they change.
        #[arg(long)]
        watch: bool,
        /// Allow a non-loopback --addr (requires --token).
        #[arg(long)]
        allow_remote: bool,
        /// Require `Authorization: Bearer TOKEN` on every request.
        #[arg(long)]
        token: Option<String>,
        /// Largest request body in bytes.
        #[arg(long, default_value_t = 1 << 20)]
        max_body_bytes: usize,
        /// Searches answered at once; more wait.
        #[arg(long, default_value_t = 16)]
        max_concurrent: usize,
        /// Seconds before a request times out.
        #[arg(long, default_value_t = 60.0)]
        timeout: f64,
        #[command(flatten)]
        memory: ResidentLimitArg,
        /// Commit index jobs after this many new chunks.
        #[arg(long, default_value_t = 2048, hide = true)]
        commit_every: usize,
        #[arg(long, value_enum, default_value = "auto")]
        device: DeviceChoice,
    },
    /// Serve the index to AI agents over MCP (Model Context Protocol) on stdin/stdout.
    Mcp {
        #[command(flatten)]
        dir: IndexDirArg,
        #[arg(long, value_enum, default_value = "auto")]
        device: DeviceChoice,
        #[command(flatten)]
        memory: ResidentLimitArg,
    },
    /// Follow the index's folders and re-index files as they are created, changed, renamed or
    /// deleted, until stopped.
    Watch {
        #[command(flatten)]
        dir: IndexDirArg,
        /// Do not catch up with changes made while nobody watched before starting.
        #[arg(long)]
        no_initial: bool,
        /// Quiet time (ms) after the last change before re-indexing.
        #[arg(long, default_value_t = 300)]
        debounce_ms: u64,
        #[arg(long, value_enum, default_value = "auto")]
        device: DeviceChoice,
    },
    /// Show what an index holds.
    Status {
        #[command(flatten)]
        dir: IndexDirArg,
        #[arg(long)]
        json: bool,
    },
    /// Verify a whole index: every data file's size and checksum against the manifest, then its
    /// structure. Searches read files in place and check only what they touch; run this after a
    /// disk error or a copy. Exits with status 1 when any file is damaged.
    Check {
        #[command(flatten)]
        dir: IndexDirArg,
        #[arg(long)]
        json: bool,
    },
    /// Remove a file, or every file under a folder, from the index.
    Remove {
        path: PathBuf,
        #[command(flatten)]
        dir: IndexDirArg,
    },
    /// Measure retrieval quality on a BEIR or BRIGHT collection.
    Eval {
        /// Collection directory (BEIR: corpus.jsonl, queries.jsonl, qrels/; BRIGHT:
        /// documents.jsonl, examples.jsonl).
        dir: PathBuf,
        #[command(flatten)]
        retrieval: RetrievalArgs,
        /// With --rerank, every (--rerank-top, --rerank-weight) combination is scored from one
        /// pass of the reranker over the largest --rerank-top.
        #[command(flatten)]
        rerank: RerankArgs,
        /// Cutoff for nDCG and MRR.
        #[arg(long, default_value_t = 10)]
        k: usize,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long, value_enum, default_value = "i8")]
        vectors: VectorKind,
        /// qrels split.
        #[arg(long, default_value = "test")]
        split: String,
        /// Evaluate only the first N queries.
        #[arg(long)]
        max_queries: Option<usize>,
        /// Where evaluation indexes are kept (default: the user cache directory).
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Put this task instruction before every query for the dense model (as `ponder index
        /// --instruction` does for an index), to measure one before indexing with it.
        #[arg(long)]
        instruction: Option<String>,
        /// Also write each query's ranking to this file, one JSON line per query:
        /// `{"qid": ..., "ranked": [[doc_id, score], ...]}` (for comparing or fusing runs).
        #[arg(long)]
        run_out: Option<PathBuf>,
        /// Search only the documents these filters keep (paths are document ids). With a filter
        /// and HNSW, the run is also compared with exact filtered search (`filter_recall@k`).
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Model files: import from Hugging Face layout, inspect.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Train models on this machine.
    Train {
        #[command(subcommand)]
        command: TrainCommand,
    },
}

#[derive(Subcommand)]
enum TrainCommand {
    /// Train a cross-encoder reranker from a bi-encoder (or continue a cross-encoder) with
    /// burn's autodiff; resumes from --checkpoint when it exists.
    Reranker {
        /// Training collection in BEIR layout with qrels/train.tsv.
        #[arg(long)]
        data: PathBuf,
        /// Held-out collection (BEIR) for validation.
        #[arg(long)]
        val: Option<PathBuf>,
        /// qrels split of --val.
        #[arg(long, default_value = "test")]
        val_split: String,
        /// Validation queries (each reranks its BM25 top --val-candidates).
        #[arg(long, default_value_t = 100)]
        val_queries: usize,
        #[arg(long, default_value_t = 10)]
        val_candidates: usize,
        /// Starting point: a Hugging Face directory or ponder file (f32 weights are best).
        #[arg(long, default_value = "target/hf/all-MiniLM-L6-v2")]
        init: ModelSource,
        /// The trained model file to write.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value = "int8")]
        precision: Precision,
        /// Checkpoint file (default: OUT with .ckpt).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        #[arg(long, default_value_t = 50)]
        checkpoint_every: usize,
        /// Validate every N steps (0: at the end only).
        #[arg(long, default_value_t = 0)]
        eval_every: usize,
        #[arg(long, default_value_t = 10)]
        progress_every: usize,
        /// Stop with a checkpoint after this many minutes; rerunning resumes.
        #[arg(long)]
        max_minutes: Option<f64>,
        /// Also mine hard negatives with the dense retriever.
        #[arg(long)]
        dense_negatives: bool,
        /// Where to train: auto (a real GPU if present, else burn flex on the CPU), flex, gpu.
        #[arg(long, value_enum, default_value = "auto")]
        device: DeviceChoice,
        #[arg(long, value_enum, default_value = "listwise")]
        loss: ponder::train::Loss,
        #[arg(long, default_value_t = 1000)]
        steps: usize,
        #[arg(long, default_value_t = 3)]
        negatives: usize,
        #[arg(long, default_value_t = 4)]
        queries_per_step: usize,
        /// Pair length in tokens (<= 256 for MiniLM's training length).
        #[arg(long, default_value_t = 160)]
        max_len: usize,
        #[arg(long, default_value_t = 5e-5)]
        lr: f64,
        #[arg(long, default_value_t = 0.1)]
        warmup: f64,
        #[arg(long, default_value_t = 0.75)]
        hard_share: f64,
        #[arg(long, default_value_t = 30)]
        mine_depth: usize,
        /// Also train the word-embedding table.
        #[arg(long)]
        train_word_embeddings: bool,
        #[arg(long, default_value_t = 17)]
        seed: u64,
        /// Distil a bi-encoder from this cross-encoder (`default`: the built-in reranker)
        /// instead of training a reranker: margin-MSE on (query, positive, negative) groups.
        #[arg(long)]
        distill_from: Option<ModelSource>,
        /// Cosine scale of the student in distillation.
        #[arg(long, default_value_t = 20.0)]
        distill_scale: f64,
    },
    /// Distil a smaller bi-encoder (a subset of the teacher's layers) from an embedding model
    /// on unlabeled text; resumes from --checkpoint when it exists.
    Distill(DistillArgs),
}

#[derive(clap::Args)]
struct DistillArgs {
    /// Teacher: `default` (the built-in model), a Hugging Face directory or a ponder file.
    #[arg(long, default_value = "default")]
    teacher: ModelSource,
    /// The BERT-layout model the student starts from (its embeddings and the layers picked by
    /// --layers): by default the teacher itself. A teacher of another architecture (ModernBERT,
    /// a decoder, ColBERT) needs one, for example `default`; when its width differs from the
    /// teacher's, the student learns the teacher's in-batch similarities only (the KL term).
    #[arg(long)]
    student: Option<ModelSource>,
    /// Student layers: a count (spread over the starting model's) or its layer indices (0,2,4).
    #[arg(long, default_value = "3")]
    layers: String,
    /// Unlabeled text: a .jsonl file ({"title", "text"} per line) or a folder to read.
    #[arg(long)]
    data: PathBuf,
    /// The student model file to write.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value = "int8")]
    precision: Precision,
    /// Checkpoint file (default: OUT with .ckpt).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    #[arg(long, default_value_t = 25)]
    checkpoint_every: usize,
    /// Validate every N steps (0: at the start and the end only).
    #[arg(long, default_value_t = 0)]
    eval_every: usize,
    /// Passages held back for validation.
    #[arg(long, default_value_t = 256)]
    val_passages: usize,
    #[arg(long, default_value_t = 10)]
    progress_every: usize,
    /// Stop with a checkpoint after this many minutes; rerunning resumes.
    #[arg(long)]
    max_minutes: Option<f64>,
    /// Where to train: auto (a real GPU if present, else burn flex on the CPU), flex, gpu.
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceChoice,
    #[arg(long, default_value_t = 1000)]
    steps: usize,
    /// Passages per step, each with one pseudo-query.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    #[arg(long, default_value_t = 128)]
    max_len: usize,
    /// Longest passage window in words.
    #[arg(long, default_value_t = 80)]
    max_words: usize,
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    #[arg(long, default_value_t = 0.05)]
    warmup: f64,
    /// Weight of the squared distance to the teacher's vectors.
    #[arg(long, default_value_t = 1.0)]
    mse_weight: f64,
    /// Weight of the KL divergence to the teacher's in-batch similarity distributions.
    #[arg(long, default_value_t = 1.0)]
    kl_weight: f64,
    #[arg(long, default_value_t = 20.0)]
    scale: f64,
    /// Also train the word-embedding table.
    #[arg(long)]
    train_word_embeddings: bool,
    #[arg(long, default_value_t = 17)]
    seed: u64,
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Convert a Hugging Face model directory into a ponder model file.
    Import {
        hf_dir: PathBuf,
        out_file: PathBuf,
        #[arg(long, value_enum, default_value = "int8")]
        precision: Precision,
        /// Free text stored in the file (source, checksum).
        #[arg(long, default_value = "")]
        provenance: String,
    },
    /// Print a model's configuration and storage.
    Info {
        #[arg(default_value = "default")]
        model: ModelSource,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Query latency (p50/p99) per mode and ANN recall@10 against exact search, on an index.
    Search {
        #[command(flatten)]
        dir: IndexDirArg,
        /// Queries: a file of JSON strings, one per line (default: sentences taken from chunks).
        #[arg(long)]
        queries: Option<PathBuf>,
        /// Number of queries.
        #[arg(long, default_value_t = 200)]
        n: usize,
        #[arg(short = 'k', long = "k", default_value_t = 10)]
        k: usize,
        /// Queries of the recall check (exact search is a full scan: at a million chunks,
        /// seconds a query); default: all of them.
        #[arg(long)]
        recall_queries: Option<usize>,
    },
    /// Passages per second for 256-token passages; the first configuration is the baseline
    /// that the others are reported against.
    Embed {
        #[arg(long, default_value = "default")]
        model: ModelSource,
        /// Compute precisions to compare (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "f32,int8")]
        precision: Vec<Precision>,
        /// Devices to compare (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "cpu")]
        device: Vec<DeviceChoice>,
        /// Batch sizes (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
        batch: Vec<usize>,
        /// Minimum seconds per measurement.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Tokens per passage.
        #[arg(long, default_value_t = 256)]
        tokens: usize,
    },
    /// Reranking latency per query: the cross-encoder reads `--top` (query, passage) pairs of
    /// `--tokens` tokens each; reports p50/p90 over `--n` queries after one warm-up.
    Rerank {
        #[arg(long, default_value = "default")]
        reranker: ModelSource,
        #[arg(long, default_value_t = 20)]
        top: usize,
        /// Tokens per pair (query and passage together, as the reranker reads them).
        #[arg(long, default_value_t = 256)]
        tokens: usize,
        #[arg(long, default_value_t = 20)]
        n: usize,
    },
}

fn main() {
    // The PDF helper: this binary re-executed by itself to extract one PDF under limits.
    if std::env::args_os().nth(1).is_some_and(|a| a == ponder::ingest::pdf::HELPER_ARG) {
        std::process::exit(ponder::ingest::pdf::serve_child());
    }
    isolate_pdf_extraction();
    let cli = Cli::parse();
    if let Some(t) = cli.threads {
        let _ = rayon::ThreadPoolBuilder::new().num_threads(t).build_global();
    }
    // A command whose output goes to a pipe that closes (`ponder status | head -3`) ends
    // quietly, as `cat` does, instead of panicking in `println!`. Servers keep ignoring
    // SIGPIPE: a client that hangs up must not stop them.
    #[cfg(unix)]
    if !matches!(cli.command, Command::Serve { .. } | Command::Mcp { .. } | Command::Watch { .. }) {
        // SAFETY: sets the process-wide disposition of one signal; nothing in these commands
        // relies on SIGPIPE being ignored.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    if let Err(e) = run(cli.command) {
        // A closed pipe downstream (`ponder embed | head`) is not an error.
        if e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)) {
            std::process::exit(0);
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Makes PDF extraction run in a helper process (this binary, `__extract-pdf`) with a time and a
/// memory limit. Environment: `PONDER_PDF_TIMEOUT_MS` (wall clock per PDF, default 30000; 15 s
/// per MiB of PDF are added), `PONDER_PDF_MEMORY_MB` (address space of the helper, default 1024; 0 for none),
/// `PONDER_PDF_HELPER` (another helper executable; tests use it).
fn isolate_pdf_extraction() {
    use ponder::ingest::pdf::{self, PdfIsolation};
    let exe = match std::env::var_os("PONDER_PDF_HELPER") {
        Some(p) => PathBuf::from(p),
        None => match std::env::current_exe() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("warning: PDFs will be read without time or memory limits ({e})");
                return;
            }
        },
    };
    let number = |name: &str| -> Option<u64> {
        let v = std::env::var(name).ok()?;
        match v.trim().parse() {
            Ok(n) => Some(n),
            Err(_) => {
                eprintln!("warning: {name}={v:?} is not a whole number; using the default");
                None
            }
        }
    };
    let timeout = number("PONDER_PDF_TIMEOUT_MS").map_or(pdf::DEFAULT_TIMEOUT, std::time::Duration::from_millis);
    let memory = match number("PONDER_PDF_MEMORY_MB") {
        Some(0) => None,
        Some(mb) => Some(mb << 20),
        None => Some(pdf::DEFAULT_MEMORY),
    };
    pdf::set_isolation(PdfIsolation::Subprocess { exe, timeout, memory });
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Embed { model } => embed_stdin(&model),
        Command::Demo { model } => demo(&model),
        Command::Index {
            paths,
            dir,
            model,
            vectors,
            instruction,
            hidden,
            no_ignore,
            include_generated,
            max_file_size,
            rebuild,
            compact,
            progress,
            commit_every,
        } => {
            let opts = EngineOptions {
                // Re-runs keep the index's model unless another is named explicitly.
                model: (model.model != ModelSource::Default || model.precision.is_some() || rebuild).then(|| model.model.clone()),
                precision: model.precision,
                device: model.device,
                vectors,
                walk: ponder::ingest::WalkOptions {
                    hidden,
                    no_ignore,
                    include_generated,
                    max_bytes: max_file_size,
                    ..Default::default()
                },
                commit_every_chunks: commit_every.max(1),
                ..Default::default()
            };
            let job = IndexJob { rebuild, compact, instruction, cancel: None };
            run_index(&dir.dir(), paths, opts, &job, &progress)
        }
        Command::Search { query, queries, dir, k, retrieval, rerank, filter, present, json, device } => {
            let mut all: Vec<String> = query.into_iter().chain(queries).collect();
            if all.is_empty() {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
                all = match serde_json::from_str::<serde_json::Value>(s.trim()) {
                    Ok(serde_json::Value::String(q)) => vec![q],
                    Ok(serde_json::Value::Array(a)) => a
                        .into_iter()
                        .map(|v| v.as_str().map(String::from).context("stdin: every query must be a JSON string"))
                        .collect::<Result<_>>()?,
                    _ => bail!("no query: give QUERY, --query, or a JSON list of strings on stdin"),
                };
            }
            rerank.check()?;
            if rerank.rerank && (rerank.rerank_top.len() > 1 || rerank.rerank_weight.len() > 1) {
                bail!("search takes one --rerank-top and one --rerank-weight (lists are for eval)");
            }
            let mut req = retrieval.request(k);
            req.queries = all;
            req.rerank = rerank.rerank;
            req.rerank_top = rerank.rerank_top[0];
            req.rerank_weight = rerank.rerank_weight[0];
            req.rerank_min_spread = rerank.rerank_min_spread;
            filter.apply(&mut req);
            present.apply(&mut req);
            let opts = EngineOptions {
                device,
                reranker: rerank.reranker.clone(),
                reranker_precision: rerank.reranker_precision,
                ..Default::default()
            };
            run_search(&dir.dir(), &req, opts, json)
        }
        Command::Status { dir, json } => status(&dir.dir(), json),
        Command::Check { dir, json } => check(&dir.dir(), json),
        Command::Get { target, dir, json } => get(&dir.dir(), &target, json),
        Command::Remove { path, dir } => {
            let engine = Engine::open_existing(dir.dir(), EngineOptions { device: DeviceChoice::Cpu, ..Default::default() })?;
            let n = engine.remove(&path)?;
            eprintln!("removed {n} file(s) under {}", path.display());
            Ok(())
        }
        Command::Serve {
            dir, addr, socket, watch, allow_remote, token, max_body_bytes, max_concurrent, timeout, memory, commit_every, device,
        } => {
            let opts = EngineOptions {
                device,
                commit_every_chunks: commit_every.max(1),
                resident_limit: memory.bytes(),
                ..Default::default()
            };
            let engine = std::sync::Arc::new(Engine::open(dir.dir(), opts)?);
            engine.warm()?;
            let serve = ponder::serve::ServeOptions {
                addr, socket, allow_remote, token, watch, max_body_bytes, max_concurrent, timeout_secs: timeout,
            };
            ponder::serve::run(engine, serve, std::sync::Arc::new(|line: String| eprintln!("{line}")))?;
            Ok(())
        }
        Command::Mcp { dir, device, memory } => {
            let opts = EngineOptions { device, resident_limit: memory.bytes(), ..Default::default() };
            let engine = std::sync::Arc::new(Engine::open(dir.dir(), opts)?);
            // A missing index is reported by the tools (an agent can create one); a broken
            // model is not something an agent can fix.
            engine.query_embedder()?;
            ponder::mcp::run_stdio(engine, std::sync::Arc::new(|line: String| eprintln!("{line}")))?;
            Ok(())
        }
        Command::Watch { dir, no_initial, debounce_ms, device } => {
            let engine = std::sync::Arc::new(Engine::open_existing(dir.dir(), EngineOptions { device, ..Default::default() })?);
            if !no_initial {
                let report = engine.index(&[], &IndexJob::default(), &mut |p| {
                    if let Progress::Warning(w) = p {
                        eprintln!("warning: {w}");
                    }
                })?;
                eprintln!("{}", summary(&report));
            }
            let on = std::sync::Arc::new(|e: ponder::watch::WatchEvent| match e {
                ponder::watch::WatchEvent::Updated { paths, report } => eprintln!(
                    "updated {paths} path(s): {} indexed, {} removed, {} chunks added; generation {}",
                    report.files_indexed, report.files_removed, report.chunks_added, report.generation
                ),
                ponder::watch::WatchEvent::Warning(w) => eprintln!("warning: {w}"),
                ponder::watch::WatchEvent::Error(e) => eprintln!("error: {e}"),
            });
            let opts = ponder::watch::WatchOptions { debounce_ms, ..Default::default() };
            let _handle = ponder::watch::start(engine.clone(), opts, on)?;
            eprintln!("watching {} (index {})", engine.status()?.roots.join(", "), engine.dir().display());
            loop {
                std::thread::park();
            }
        }
        Command::Eval { dir, retrieval, rerank, k, json, model, vectors, split, max_queries, cache, instruction, run_out, filter } => {
            rerank.check()?;
            let mut opts = retrieval.request(100.max(k)).options()?;
            opts.candidates = opts.candidates.max(100);
            opts.instruction = instruction;
            let device = model.device;
            let filter = ponder::engine::Filter::new(&filter.path, &filter.kinds, filter.after.as_deref(), filter.before.as_deref())?;
            let rr = rerank.rerank.then_some(&rerank);
            run_eval(&dir, &split, &model, vectors, &opts, k, json, max_queries, cache, run_out, rr, device, &filter)
        }
        Command::Model { command: ModelCommand::Import { hf_dir, out_file, precision, provenance } } => {
            let t = Instant::now();
            let report = ponder::model::hf::import_hf_dir(&hf_dir, precision, &provenance, &out_file)?;
            let size = std::fs::metadata(&out_file)?.len();
            eprintln!(
                "wrote {} ({:?}, {:.1} MB; {} tensors, {:.1}M parameters, {:.1} MB in the source) in {:.1}s",
                out_file.display(),
                precision,
                size as f64 / 1e6,
                report.tensors,
                report.parameters as f64 / 1e6,
                report.source_bytes as f64 / 1e6,
                t.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Model { command: ModelCommand::Info { model } } => {
            let t = Instant::now();
            let w = model.load()?;
            let load = t.elapsed();
            println!("source: {}", w.source);
            println!("precision: {:?}", format::precision_of(&w));
            println!("tensor bytes: {}", w.tensor_bytes());
            println!("load time: {:.1} ms", load.as_secs_f64() * 1e3);
            println!("{}", serde_json::to_string_pretty(&w.config)?);
            Ok(())
        }
        Command::Train { command } => train(command),
        Command::Bench { command: BenchCommand::Search { dir, queries, n, k, recall_queries } } => {
            bench_search(&dir.dir(), queries, n, k, recall_queries.unwrap_or(usize::MAX))
        }
        Command::Bench { command: BenchCommand::Rerank { reranker, top, tokens, n } } => bench_rerank(&reranker, top, tokens, n),
        Command::Bench { command: BenchCommand::Embed { model, precision, device, batch, seconds, tokens } } => {
            bench_embed(&model, &precision, &device, &batch, seconds, tokens)
        }
    }
}

fn train(command: TrainCommand) -> Result<()> {
    let TrainCommand::Reranker {
        data, val, val_split, val_queries, val_candidates, init, out, precision, checkpoint, checkpoint_every,
        eval_every, progress_every, max_minutes, dense_negatives, device, loss, steps, negatives, queries_per_step,
        max_len, lr, warmup, hard_share, mine_depth, train_word_embeddings, seed, distill_from, distill_scale,
    } = command
    else {
        let TrainCommand::Distill(args) = command else { unreachable!("two train commands") };
        return train_distill(args);
    };
    if !(1..=512).contains(&max_len) {
        bail!("--max-len must be between 1 and 512");
    }
    let weights = init.load().with_context(|| format!("loading --init {}", engine::model_name(&init)))?;
    // ponder's native runtime has no backward pass: CPU training is burn flex.
    let resolved = match device {
        DeviceChoice::Cpu | DeviceChoice::Flex => ponder::device::resolve(DeviceChoice::Flex)?,
        gpu_or_auto => ponder::device::resolve(gpu_or_auto)?,
    };
    let device = match resolved {
        ponder::device::Resolved::Burn { device, name } => {
            eprintln!("training on {name}");
            device
        }
        ponder::device::Resolved::NativeCpu => {
            eprintln!("training on cpu (burn flex)");
            burn::tensor::Device::flex()
        }
    };
    let opts = ponder::train::TrainOptions {
        loss, negatives, queries_per_step, max_len, steps, lr, warmup, hard_share, mine_depth, train_word_embeddings, seed,
        distill: distill_from.is_some(), distill_scale, ..Default::default()
    };
    let teacher = match &distill_from {
        None => None,
        Some(src) => {
            let w = engine::reranker_weights(src)?;
            Some(Embedder::new(&w, engine::compute_precision(None, &w)?, DeviceChoice::Cpu)?)
        }
    };
    let rc = ponder::train::RunConfig {
        checkpoint: checkpoint.unwrap_or_else(|| out.with_extension("ckpt")),
        data, val, val_split, val_queries, val_candidates, out, precision, checkpoint_every, eval_every, progress_every,
        max_minutes, dense_negatives,
    };
    let report = ponder::train::run(&weights, opts, device, &rc, teacher.as_ref(), &|line| eprintln!("{line}"))?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn train_distill(a: DistillArgs) -> Result<()> {
    let teacher_w = a.teacher.load().with_context(|| format!("loading --teacher {}", engine::model_name(&a.teacher)))?;
    let student_w = match &a.student {
        Some(s) => s.load().with_context(|| format!("loading --student {}", engine::model_name(s)))?,
        None => teacher_w.clone(),
    };
    let layers = ponder::distill::parse_layers(&a.layers, student_w.config.num_layers)?;
    // The student trains on burn (flex on the CPU, wgpu on a GPU); the teacher runs where it
    // is fastest: the native runtime on the CPU, the GPU when training there.
    let (device, teacher_on) = match ponder::device::resolve(match a.device {
        DeviceChoice::Cpu | DeviceChoice::Flex => DeviceChoice::Flex,
        other => other,
    })? {
        ponder::device::Resolved::Burn { device, name } => {
            let on_gpu = !name.contains("flex");
            eprintln!("training on {name}");
            (device, if on_gpu { DeviceChoice::Gpu } else { DeviceChoice::Cpu })
        }
        ponder::device::Resolved::NativeCpu => (burn::tensor::Device::flex(), DeviceChoice::Cpu),
    };
    let teacher = Embedder::new(&teacher_w, engine::compute_precision(None, &teacher_w)?, teacher_on)?;
    let opts = ponder::distill::DistillOptions {
        layers, batch: a.batch, max_len: a.max_len, max_words: a.max_words, steps: a.steps, lr: a.lr, warmup: a.warmup,
        train_word_embeddings: a.train_word_embeddings, mse_weight: a.mse_weight, kl_weight: a.kl_weight, scale: a.scale,
        seed: a.seed, ..Default::default()
    };
    let rc = ponder::distill::DistillRun {
        checkpoint: a.checkpoint.unwrap_or_else(|| a.out.with_extension("ckpt")),
        data: a.data, out: a.out, precision: a.precision, checkpoint_every: a.checkpoint_every, eval_every: a.eval_every,
        val_passages: a.val_passages, progress_every: a.progress_every, max_minutes: a.max_minutes,
    };
    let report = ponder::distill::run(&student_w, &teacher, &opts, device, &rc, &|line| eprintln!("{line}"))?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn summary(r: &index::IndexReport) -> String {
    format!(
        "{} indexed, {} unchanged, {} removed, {} skipped; {} chunks added, {} chunks embedded in {:.1}s ({:.1} chunks/s); generation {}",
        r.files_indexed, r.files_unchanged, r.files_removed, r.files_skipped, r.chunks_added, r.chunks_embedded, r.elapsed_s, r.chunks_per_s, r.generation
    )
}

fn run_index(dir: &std::path::Path, paths: Vec<PathBuf>, opts: EngineOptions, job: &IndexJob, progress: &str) -> Result<()> {
    use std::io::IsTerminal;
    let t = Instant::now();
    let engine = Engine::open(dir, opts)?;
    let embedder = engine.embedder()?;
    let mode = match progress {
        "auto" if std::io::stderr().is_terminal() => "bar",
        "auto" => "plain",
        "bar" | "plain" | "json" | "none" => progress,
        other => bail!("unknown --progress {other:?} (auto, plain, json, none)"),
    };
    eprintln!("indexing into {} ({}; model loaded in {:.0} ms)", dir.display(), embedder.describe(), t.elapsed().as_secs_f64() * 1e3);
    let bar = (mode == "bar").then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} files  {msg}  [{elapsed_precise}, ETA {eta}]")
                .unwrap(),
        );
        b
    });
    let mut last_line = Instant::now();
    let mut on = |p: Progress| match (&p, mode) {
        (Progress::Warning(w), _) => {
            if let Some(b) = &bar {
                b.suspend(|| eprintln!("warning: {w}"));
            } else if mode == "json" {
                eprintln!("{}", serde_json::json!({"event": "warning", "message": w}));
            } else {
                eprintln!("warning: {w}");
            }
        }
        (Progress::Walked { files }, _) => {
            if let Some(b) = &bar {
                b.set_length(*files as u64);
            }
        }
        (Progress::File { done, total, chunks, elapsed_s }, _) => {
            let rate = *chunks as f64 / elapsed_s.max(1e-9);
            if let Some(b) = &bar {
                b.set_position(*done as u64);
                b.set_message(format!("{chunks} chunks, {rate:.1} chunks/s"));
            } else if mode != "none" && (last_line.elapsed().as_secs_f64() > 2.0 || done == total) {
                last_line = Instant::now();
                if mode == "json" {
                    eprintln!("{}", serde_json::json!({"event": "progress", "files_done": done, "files_total": total, "chunks": chunks, "chunks_per_s": rate, "elapsed_s": elapsed_s}));
                } else {
                    eprintln!("progress: {done}/{total} files, {chunks} chunks, {rate:.1} chunks/s");
                }
            }
        }
        (Progress::Committed { generation, files, chunks }, "json") => {
            eprintln!("{}", serde_json::json!({"event": "commit", "generation": generation, "files": files, "chunks": chunks}));
        }
        _ => {}
    };
    let report = engine.index(&paths, job, &mut on)?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if report.files_seen > 0 || !job.compact {
        eprintln!("{}", summary(&report));
    }
    if mode == "json" {
        let mut v = serde_json::to_value(&report)?;
        v["event"] = "summary".into();
        eprintln!("{v}");
    }
    if job.compact {
        eprintln!("compacted");
    }
    Ok(())
}

fn run_search(dir: &std::path::Path, req: &SearchRequest, opts: EngineOptions, json: bool) -> Result<()> {
    use std::io::IsTerminal;
    let engine = Engine::open(dir, opts)?;
    if !engine.exists() {
        return Err(ponder::Error::NoIndex(dir.to_path_buf()).into());
    }
    // The model loads while the index opens.
    engine.warm()?;
    let hits = engine.search(req)?;
    let stdout = std::io::stdout();
    let tty = stdout.is_terminal();
    let mut out = BufWriter::new(stdout.lock());
    for (rank, h) in hits.iter().enumerate() {
        if json {
            serde_json::to_writer(&mut out, h)?;
            writeln!(out)?;
        } else {
            let (snip, hs) = present::snippet(&h.text, &h.highlights, 300);
            let (open, close) = if tty { ("\x1b[1;33m", "\x1b[0m") } else { ("**", "**") };
            let heading = h.heading.as_ref().map(|h| format!("  [{h}]")).unwrap_or_default();
            // A paged document (PDF) is cited by page: its line numbers are of the extracted text.
            let place = match h.page_label() {
                Some(p) => format!(" {p}"),
                None => format!(":{}-{}", h.start_line, h.end_line),
            };
            writeln!(out, "{}. {}{place}  score {:.4}{}", rank + 1, h.path, h.score, heading)?;
            writeln!(out, "   {}", present::render(&snip, &hs, open, close))?;
            if !h.also_in.is_empty() {
                writeln!(out, "   also in: {}", h.also_in.join(", "))?;
            }
            if let Some(e) = &h.explain {
                let signal = |s: Option<f32>, r: Option<u32>| match (s, r) {
                    (Some(s), Some(r)) => format!("{s:.4} (#{r})"),
                    _ => "-".to_string(),
                };
                let mut line = format!(
                    "   explain: dense {}  lexical {}  fused {}",
                    signal(e.dense_score, e.dense_rank),
                    signal(e.lexical_score, e.lexical_rank),
                    e.fused_score.map_or("-".into(), |f| format!("{f:.4}"))
                );
                if let Some(r) = e.rerank_score {
                    line.push_str(&format!("  rerank {r:.4}"));
                }
                writeln!(out, "{line}")?;
            }
        }
    }
    if hits.is_empty() && !json {
        writeln!(out, "no results")?;
    }
    out.flush()?;
    // The process ends next: freeing the model and a large index's file table one allocation
    // at a time would only delay the exit (about 10 ms at 100k files).
    std::mem::forget(engine);
    Ok(())
}

/// `PATH` or `PATH:START-END` (the range only when it parses, so paths with colons work).
fn parse_target(target: &str) -> (PathBuf, Option<(u32, u32)>) {
    if let Some((path, range)) = target.rsplit_once(':') {
        let parsed = match range.split_once('-') {
            Some((a, b)) => a.parse().ok().zip(b.parse().ok()),
            None => range.parse().ok().map(|a: u32| (a, a)),
        };
        if let Some(r) = parsed {
            return (PathBuf::from(path), Some(r));
        }
    }
    (PathBuf::from(target), None)
}

fn get(dir: &std::path::Path, target: &str, json: bool) -> Result<()> {
    let engine = Engine::open_existing(dir, EngineOptions::default())?;
    let (path, lines) = parse_target(target);
    let doc = engine.get(&path, lines)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if json {
        serde_json::to_writer(&mut out, &doc)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{}", doc.text)?;
    }
    out.flush()?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn run_eval(
    dir: &std::path::Path,
    split: &str,
    model: &ModelArgs,
    vectors: VectorKind,
    opts: &SearchOptions,
    k: usize,
    json: bool,
    max_queries: Option<usize>,
    cache: Option<PathBuf>,
    run_out: Option<PathBuf>,
    rerank: Option<&RerankArgs>,
    device: DeviceChoice,
    filter: &ponder::engine::Filter,
) -> Result<()> {
    use ponder::eval::{self, Collection};
    let mut c = Collection::load(dir, split)?;
    if let Some(n) = max_queries {
        c.queries.truncate(n);
    }
    let (embedder, stamp) = model.load_with_stamp()?;
    let mut last = Instant::now();
    let ix = eval::eval_index(&c, &embedder, stamp, vectors, cache, &mut |done, total, rate| {
        if !json && (last.elapsed().as_secs_f64() > 5.0 || done == total) {
            last = Instant::now();
            eprintln!("indexing {}: {done}/{total} docs, {rate:.1} docs/s", c.name);
        }
    })?;
    let reader = IndexReader::open(&ix.dir)?;
    let live = filter.restrict(&reader.manifest);
    let q = eval::run_queries(&c, &reader, &embedder, opts, live.as_ref())?;
    let m = eval::evaluate_at(&c, &q.run, k);
    // Each query's ranking (and, with --rerank, the reranker's scores of its top candidates).
    let write_run = |rerank_scores: Option<&[Vec<f32>]>| -> Result<()> {
        let Some(path) = &run_out else { return Ok(()) };
        let mut out = String::new();
        for (i, ((qid, _), list)) in c.queries.iter().zip(&q.lists).enumerate() {
            let ranked: Vec<(&str, f32)> =
                list.iter().filter_map(|(id, s)| reader.path_of(*id).map(|p| (p, *s))).collect();
            let mut line = serde_json::json!({ "qid": qid, "ranked": ranked });
            if let Some(s) = rerank_scores.and_then(|s| s.get(i)) {
                line["rerank"] = serde_json::json!(s);
            }
            out.push_str(&line.to_string());
            out.push('\n');
        }
        std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
    };
    if rerank.is_none() {
        write_run(None)?;
    }
    // With a filter, how much of exact filtered search's top k the approximate search found.
    let filter_recall = match &live {
        Some(l) if !opts.exact => Some(eval::filter_recall(&c, &reader, &embedder, opts, l, &q, k)?),
        _ => None,
    };
    let round = |x: f64| (x * 1e4).round() / 1e2;
    if let Some(args) = rerank {
        let reranker = args.load(device)?;
        let mut last = Instant::now();
        let grid = eval::rerank_grid(&c, &reader, &q.lists, &reranker, &args.rerank_top, &args.rerank_weight, args.rerank_min_spread, k, &m, &mut |i, n| {
            if !json && last.elapsed().as_secs_f64() > 10.0 {
                last = Instant::now();
                eprintln!("reranking {}: {i}/{n} queries", c.name);
            }
        })?;
        write_run(Some(&grid.scores))?;
        let rows: Vec<serde_json::Value> = grid
            .cells
            .iter()
            .map(|cell| {
                serde_json::json!({
                    "collection": c.name, "rerank_top": cell.rerank_top,
                    "rerank_weight": (f64::from(cell.rerank_weight) * 1e3).round() / 1e3,
                    format!("ndcg@{k}"): round(cell.metrics.ndcg10), "recall@100": round(cell.metrics.recall100),
                    format!("mrr@{k}"): round(cell.metrics.mrr10),
                })
            })
            .collect();
        let timing = serde_json::json!({
            "collection": c.name, "reranker": reranker.describe(), "queries": q.lists.len(),
            "rerank_ms_per_query_at_top": grid.first_top, "rerank_ms_per_query": (grid.ms_per_query * 10.0).round() / 10.0,
            "rerank_ms_per_query_deepest": (grid.ms_per_query_deepest * 10.0).round() / 10.0, "deepest": grid.deepest,
        });
        if json {
            for r in &rows {
                println!("{r}");
            }
            println!("{timing}");
        } else {
            println!("{} ({} queries), reranker: {}", c.name, q.lists.len(), reranker.describe());
            println!("{:>10} {:>8} {:>9} {:>11} {:>8}", "rerank_top", "weight", format!("nDCG@{k}"), "Recall@100", format!("MRR@{k}"));
            for r in &rows {
                println!(
                    "{:>10} {:>8} {:>9.2} {:>11.2} {:>8.2}",
                    if r["rerank_top"] == 0 { "none".to_string() } else { r["rerank_top"].to_string() },
                    r["rerank_weight"], r[format!("ndcg@{k}")].as_f64().unwrap_or(0.0), r["recall@100"].as_f64().unwrap_or(0.0),
                    r[format!("mrr@{k}")].as_f64().unwrap_or(0.0)
                );
            }
            println!(
                "rerank latency: {:.1} ms/query at top {} ({:.1} ms at top {})",
                grid.ms_per_query, grid.first_top, grid.ms_per_query_deepest, grid.deepest
            );
        }
        return Ok(());
    }
    let out = serde_json::json!({
        "collection": c.name, "mode": format!("{:?}", opts.mode).to_lowercase(), "fusion": format!("{:?}", opts.fusion),
        "rocchio": format!("{:?}", opts.rocchio), "rm3": format!("{:?}", opts.rm3), "long_query": format!("{:?}", opts.long_query),
        "exact": opts.exact, "vectors": format!("{vectors:?}").to_lowercase(), "precision": embedder.precision_name(),
        format!("ndcg@{k}"): round(m.ndcg10), "recall@100": round(m.recall100),
        format!("mrr@{k}"): round(m.mrr10), "queries": m.queries, "queries_per_s": (q.queries_per_s * 10.0).round() / 10.0,
        "index_s": (ix.index_s * 10.0).round() / 10.0, "index_reused": ix.reused, "docs": c.docs.len(),
        "filtered_docs": live.as_ref().map(|l| l.len()), format!("filter_recall@{k}"): filter_recall.map(round),
    });
    if json {
        println!("{out}");
    } else {
        println!(
            "{} ({} docs, {} queries) mode={} : nDCG@{k} {:.2}  Recall@100 {:.2}  MRR@{k} {:.2}  | {:.1} queries/s, index {:.1}s{}",
            c.name, c.docs.len(), m.queries, format!("{:?}", opts.mode).to_lowercase(),
            m.ndcg10 * 100.0, m.recall100 * 100.0, m.mrr10 * 100.0, q.queries_per_s, ix.index_s, if ix.reused { " (reused)" } else { "" }
        );
        if let (Some(l), Some(r)) = (&live, filter_recall) {
            println!("filter keeps {} of {} docs; filtered HNSW found {:.2}% of exact filtered search's top {k}", l.len(), c.docs.len(), r * 100.0);
        }
    }
    Ok(())
}

fn status(dir: &std::path::Path, json: bool) -> Result<()> {
    let engine = Engine::open_existing(dir, EngineOptions::default())?;
    let st = engine.status()?;
    if json {
        println!("{}", serde_json::to_string(&st)?);
    } else {
        let ago = index::manifest::now_unix().saturating_sub(st.updated_unix);
        println!("index:        {}", st.index);
        println!("files:        {}", st.files);
        println!("chunks:       {}", st.chunks);
        println!("disk:         {:.1} MB in {} vector file(s)", st.disk_bytes as f64 / 1e6, st.vector_files);
        println!("model:        {} ({}, {} dims, fingerprint {})", st.model, st.precision, st.dim, st.model_fingerprint);
        println!("vectors:      {}", st.vectors);
        println!("instruction:  {}", st.query_instruction.as_deref().unwrap_or("(none)"));
        println!("roots:        {}", st.roots.join(", "));
        println!("generation:   {} (updated {ago} s ago)", st.generation);
    }
    Ok(())
}

fn check(dir: &std::path::Path, json: bool) -> Result<()> {
    // `open`, not `open_existing`: that would stop at the first damaged file.
    let engine = Engine::open(dir, EngineOptions { device: DeviceChoice::Cpu, ..Default::default() })?;
    let report = engine.check()?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        for f in &report.files {
            match &f.problem {
                None => {
                    let unit = if f.kind == "vectors" { "vectors" } else { "chunks" };
                    println!("ok       {:<28} {:>9} {unit:<8} {:>12} bytes", f.name, f.items, f.bytes)
                }
                Some(p) => println!("DAMAGED  {:<28} {p}", f.name),
            }
        }
    }
    let bad = report.files.iter().filter(|f| f.problem.is_some()).count();
    if bad > 0 {
        bail!("{bad} of {} data file(s) in {} are damaged; `ponder index --rebuild` rebuilds the index from the files", report.files.len(), report.index);
    }
    eprintln!("{}: all {} data files sound (generation {})", report.index, report.files.len(), report.generation);
    Ok(())
}

fn embed_stdin(args: &ModelArgs) -> Result<()> {
    // Validate all input before loading the model, so bad input fails fast and writes nothing.
    let stdin = std::io::stdin();
    let mut texts = Vec::new();
    for (i, line) in stdin.lock().lines().enumerate() {
        let line = line.with_context(|| format!("reading stdin line {}", i + 1))?;
        match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(serde_json::Value::String(s)) => texts.push(s),
            Ok(_) => bail!("stdin line {}: expected a JSON string, got another JSON value", i + 1),
            Err(e) => bail!("stdin line {}: not a JSON string ({e})", i + 1),
        }
    }
    let embedder = args.load()?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for chunk in texts.chunks(256) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        for v in embedder.embed(&refs)? {
            serde_json::to_writer(&mut out, &v)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(())
}

fn demo(args: &ModelArgs) -> Result<()> {
    let t = Instant::now();
    let embedder = args.load()?;
    eprintln!("model loaded in {:.0} ms: {}", t.elapsed().as_secs_f64() * 1e3, embedder.describe());
    let texts = [
        "How do plants turn sunlight into energy?",
        "Photosynthesis converts light energy into chemical energy stored in glucose.",
        "The stock market fell sharply on Tuesday after the rate decision.",
        "Investors sold shares when the central bank raised interest rates.",
        "fn main() { println!(\"hello\"); }",
    ];
    let v = embedder.embed(&texts)?;
    println!("cosine similarity ({}-dim vectors):", embedder.dim());
    for (i, a) in texts.iter().enumerate() {
        let row: Vec<String> = v.iter().map(|b| format!("{:5.2}", ponder::embed::cosine(&v[i], b))).collect();
        println!("  [{i}] {}  {}", row.join(" "), a);
    }
    Ok(())
}

fn bench_search(dir: &std::path::Path, queries: Option<PathBuf>, n: usize, k: usize, recall_queries: usize) -> Result<()> {
    let t = Instant::now();
    let engine = Engine::open_existing(dir, EngineOptions::default())?;
    let snap = engine.snapshot()?;
    let reader = &snap.reader;
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let embedder = engine.query_embedder()?;
    let model_ms = t.elapsed().as_secs_f64() * 1e3;
    let qs: Vec<String> = match queries {
        Some(p) => std::fs::read_to_string(&p)?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).with_context(|| format!("{}: not a JSON string", p.display())))
            .take(n)
            .collect::<Result<_>>()?,
        None => {
            // Evenly spaced live chunks; the first ~12 words of each.
            let ranges = reader.manifest.live_ranges();
            let ids: Vec<u64> = ranges.iter().flat_map(|r| r.0..r.1).collect();
            let step = (ids.len() / n.max(1)).max(1);
            ids.iter()
                .step_by(step)
                .take(n)
                .filter_map(|id| reader.chunk(*id).ok().flatten())
                .map(|c| c.record.text.split_whitespace().take(12).collect::<Vec<_>>().join(" "))
                .collect()
        }
    };
    println!("{}", serde_json::json!({"event": "open", "index_open_ms": open_ms, "model_load_ms": model_ms,
        "chunks": reader.manifest.live_chunks(), "disk_bytes": reader.disk_bytes(),
        "bytes_per_chunk": reader.disk_bytes() as f64 / reader.manifest.live_chunks().max(1) as f64,
        "token_bytes_per_chunk": reader.manifest.token_files.iter().map(|f| f.bytes).sum::<u64>() as f64 / reader.manifest.live_chunks().max(1) as f64}));
    let searcher = Searcher::new(reader, &embedder);
    let mut hybrid_ms = Vec::new();
    // `late` (MaxSim over stored token vectors) where the index has them.
    for mode in [Mode::Dense, Mode::Lexical, Mode::Hybrid, Mode::Late].into_iter().filter(|m| *m != Mode::Late || reader.has_tokens()) {
        let opts = SearchOptions { k, mode, ..Default::default() };
        let mut lat = Vec::new();
        for q in &qs {
            let t = Instant::now();
            std::hint::black_box(searcher.search(std::slice::from_ref(q), &opts)?);
            lat.push(t.elapsed().as_secs_f64() * 1e3);
        }
        lat.sort_by(f64::total_cmp);
        if mode == Mode::Hybrid {
            hybrid_ms = lat.clone();
        }
        println!("{}", serde_json::json!({"event": "latency", "mode": format!("{mode:?}").to_lowercase(), "queries": lat.len(),
            "p50_ms": percentile(&lat, 0.5), "p99_ms": percentile(&lat, 0.99), "mean_ms": lat.iter().sum::<f64>() / lat.len().max(1) as f64}));
    }
    // Embedding share of a query, and ANN recall@k against exact search.
    let mut embed_ms = Vec::new();
    let mut recall = 0.0;
    let recall_qs = &qs[..qs.len().min(recall_queries)];
    for q in recall_qs {
        let t = Instant::now();
        let v = searcher.query_vector(q, ponder::retrieve::LongQuery::Split)?;
        embed_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let ann: std::collections::HashSet<u64> = reader.dense(&v, k, false)?.into_iter().map(|x| x.0).collect();
        let exact = reader.dense(&v, k, true)?;
        let hit = exact.iter().filter(|x| ann.contains(&x.0)).count();
        recall += hit as f64 / exact.len().max(1) as f64;
    }
    embed_ms.sort_by(f64::total_cmp);
    println!("{}", serde_json::json!({"event": "ann", "recall_at_k": recall / recall_qs.len().max(1) as f64, "k": k, "recall_queries": recall_qs.len(),
        "query_embed_p50_ms": percentile(&embed_ms, 0.5), "hybrid_p50_ms": percentile(&hybrid_ms, 0.5)}));
    Ok(())
}

/// The benchmark passage: same rule as `benches/onnx_baseline.py`.
fn bench_passage(i: usize) -> String {
    let p = "The quick brown fox jumps over the lazy dog while researchers measure protein folding rates in yeast cells under heat stress, and the results suggest that chaperone expression increases survival. ";
    format!("{i} {}", p.repeat(40))
}

fn bench_rerank(reranker: &ModelSource, top: usize, tokens: usize, n: usize) -> Result<()> {
    let t = Instant::now();
    let rr = ponder::engine::load_reranker(reranker, None, DeviceChoice::Cpu)?;
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    let query = "what does the passage say about the history of the region and its trade";
    // Passages cut to the word count that makes each pair `tokens` tokens long.
    let passages: Vec<String> = (0..top)
        .map(|i| {
            let text = bench_passage(i);
            let words: Vec<&str> = text.split_whitespace().collect();
            // The most words whose pair fits in `tokens`.
            let (mut lo, mut hi) = (0, words.len());
            while lo < hi {
                let mid = (lo + hi).div_ceil(2);
                if rr.count_pair_tokens(query, &words[..mid].join(" "))? <= tokens {
                    lo = mid;
                } else {
                    hi = mid - 1;
                }
            }
            Ok(words[..lo].join(" "))
        })
        .collect::<Result<_>>()?;
    let refs: Vec<&str> = passages.iter().map(String::as_str).collect();
    let pair_tokens = rr.count_pair_tokens(query, refs[0])?;
    rr.score(query, &refs)?; // warm-up
    let mut ms = Vec::new();
    for _ in 0..n.max(1) {
        let t = Instant::now();
        std::hint::black_box(rr.score(query, &refs)?);
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| percentile(&ms, q);
    println!(
        "{}",
        serde_json::json!({
            "event": "rerank", "reranker": rr.describe(), "pairs": top, "pair_tokens": pair_tokens,
            "load_ms": load_ms.round(), "p50_ms": (at(0.5) * 10.0).round() / 10.0, "p90_ms": (at(0.9) * 10.0).round() / 10.0,
            "queries": ms.len(),
        })
    );
    Ok(())
}

fn bench_embed(
    model: &ModelSource,
    precisions: &[Precision],
    devices: &[DeviceChoice],
    batches: &[usize],
    seconds: f64,
    tokens: usize,
) -> Result<()> {
    let t = Instant::now();
    let weights = model.load()?;
    println!("{}", serde_json::json!({"event": "model_load", "ms": t.elapsed().as_secs_f64() * 1e3, "source": weights.source}));
    let mut baseline: Option<f64> = None;
    for &device in devices {
        for &precision in precisions {
            let t = Instant::now();
            let mut embedder = Embedder::new(&weights, precision, device)?;
            let init_ms = t.elapsed().as_secs_f64() * 1e3;
            let mut enc = Vec::new();
            for i in 0..64 {
                let mut e = embedder.tokenizer().encode(&[&bench_passage(i)])?.remove(0);
                if e.ids.len() > tokens {
                    let last = *e.ids.last().unwrap();
                    e.ids.truncate(tokens);
                    e.type_ids.truncate(tokens);
                    e.ids[tokens - 1] = last;
                }
                enc.push(e);
            }
            for &b in batches {
                embedder.max_batch = b;
                embedder.max_batch_tokens = usize::MAX;
                let batch: Vec<_> = (0..b).map(|i| enc[i % enc.len()].clone()).collect();
                embedder.embed_encoded(&batch); // warm-up
                let start = Instant::now();
                let mut n = 0usize;
                let mut rounds = 0;
                while start.elapsed().as_secs_f64() < seconds || rounds < 2 {
                    std::hint::black_box(embedder.embed_encoded(&batch));
                    n += b;
                    rounds += 1;
                }
                let pps = n as f64 / start.elapsed().as_secs_f64();
                let base = *baseline.get_or_insert(pps);
                println!(
                    "{}",
                    serde_json::json!({
                        "device": embedder.describe(), "precision": format!("{precision:?}").to_lowercase(),
                        "batch": b, "tokens": enc[0].ids.len(), "passages_per_s": (pps * 100.0).round() / 100.0,
                        "ratio_vs_first": (pps / base * 1000.0).round() / 1000.0, "init_ms": init_ms.round(),
                    })
                );
            }
        }
    }
    Ok(())
}
