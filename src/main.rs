//! The `ponder` command line: wires flags to the library and reports errors.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use ponder::device::DeviceChoice;
use ponder::fuse::Fusion;
use ponder::index::{self, IndexReader, Indexer, ModelStamp, Progress, VectorKind};
use ponder::model::{format, ModelSource, ModelWeights, Precision};
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
        let weights = self.model.load().with_context(|| format!("loading model {}", model_name(&self.model)))?;
        let precision = compute_precision(self.precision, &weights, "--precision")?;
        let embedder = Embedder::new(&weights, precision, self.device)?;
        let stamp = stamp(&self.model, &weights, &embedder);
        Ok((embedder, stamp))
    }
}

/// The compute precision: the one asked for, else int8 for int8 files and f32 otherwise.
fn compute_precision(asked: Option<Precision>, weights: &ModelWeights, flag: &str) -> Result<Precision> {
    let precision = asked.unwrap_or(match format::precision_of(weights) {
        Precision::Int8 => Precision::Int8,
        _ => Precision::F32,
    });
    if precision == Precision::F16 {
        bail!("{flag} f16 is a storage format (model import), not a compute precision");
    }
    Ok(precision)
}

/// A cross-encoder's weights: the built-in reranker for `default`, else the file or directory.
fn reranker_weights(src: &ModelSource) -> Result<ModelWeights> {
    Ok(match src {
        ModelSource::Default => ponder::rerank::Reranker::default_weights()?,
        other => other.load().with_context(|| format!("loading reranker {}", model_name(other)))?,
    })
}

/// Texts of the chunks `ranked` names, in order (empty for a chunk that is gone).
fn chunk_texts(reader: &IndexReader, ranked: &[(u64, f32)]) -> Result<Vec<String>> {
    ranked.iter().map(|(id, _)| Ok(reader.chunk(*id)?.map(|h| h.record.text).unwrap_or_default())).collect()
}

fn model_name(m: &ModelSource) -> String {
    match m {
        ModelSource::Default => "default".into(),
        ModelSource::Path(p) => std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()).display().to_string(),
    }
}

fn stamp(source: &ModelSource, weights: &ModelWeights, embedder: &Embedder) -> ModelStamp {
    ModelStamp {
        name: model_name(source),
        fingerprint: weights.fingerprint(),
        dim: embedder.dim(),
        precision: embedder.precision_name().to_string(),
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
}

impl RerankArgs {
    fn load(&self, device: DeviceChoice) -> Result<ponder::rerank::Reranker> {
        let weights = reranker_weights(&self.reranker)?;
        let precision = compute_precision(self.reranker_precision, &weights, "--reranker-precision")?;
        Ok(ponder::rerank::Reranker::new(&weights, precision, device)?)
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
    /// Hybrid fusion: weighted (min-max normalised scores) or rrf (reciprocal rank).
    #[arg(long, default_value = "weighted")]
    fusion: String,
    /// Dense weight for --fusion weighted.
    #[arg(long, default_value_t = 0.5)]
    dense_weight: f32,
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
    fn options(&self, k: usize) -> Result<SearchOptions> {
        let fusion = match self.fusion.as_str() {
            "rrf" => Fusion::Rrf { k: self.rrf_k },
            "weighted" => Fusion::Weighted { dense_weight: self.dense_weight },
            other => bail!("unknown --fusion {other:?} (rrf, weighted)"),
        };
        Ok(SearchOptions {
            k,
            mode: self.mode,
            fusion,
            candidates: self.candidates.max(k),
            exact: self.exact,
            rocchio: (self.prf_dense > 0).then_some(ponder::retrieve::Rocchio { docs: self.prf_dense, beta: self.prf_dense_beta }),
            rm3: (self.rm3 > 0).then_some(ponder::retrieve::Rm3 {
                docs: self.rm3,
                terms: self.rm3_terms,
                original_weight: self.rm3_weight,
            }),
            long_query: self.long_query,
        })
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

/// Loads the model an index was built with, checking it is the same model.
fn embedder_for(reader: &IndexReader, device: DeviceChoice) -> Result<Embedder> {
    let st = &reader.manifest.model;
    let source: ModelSource = st.name.parse().unwrap();
    let weights = source.load().with_context(|| format!("loading the index's model {}", st.name))?;
    let precision = if st.precision == "int8" { Precision::Int8 } else { Precision::F32 };
    let embedder = Embedder::new(&weights, precision, device)?;
    let now = stamp(&source, &weights, &embedder);
    if now.fingerprint != st.fingerprint {
        bail!(
            "the index was built with model {} (fingerprint {}), but that model now has fingerprint {}; re-index with --rebuild",
            st.name, st.fingerprint, now.fingerprint
        );
    }
    Ok(embedder)
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
        /// Vector storage in usearch.
        #[arg(long, value_enum, default_value = "i8")]
        vectors: VectorKind,
        /// Instruction prepended to every query of this index (documents are embedded as is).
        #[arg(long)]
        instruction: Option<String>,
        /// Include hidden files and folders.
        #[arg(long)]
        hidden: bool,
        /// Do not honour .gitignore / .ignore files.
        #[arg(long)]
        no_ignore: bool,
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
        /// One JSON object per result line.
        #[arg(long)]
        json: bool,
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
}

fn main() {
    let cli = Cli::parse();
    if let Some(t) = cli.threads {
        let _ = rayon::ThreadPoolBuilder::new().num_threads(t).build_global();
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

fn run(command: Command) -> Result<()> {
    match command {
        Command::Embed { model } => embed_stdin(&model),
        Command::Demo { model } => demo(&model),
        Command::Index { paths, dir, model, vectors, instruction, hidden, no_ignore, max_file_size, rebuild, compact, progress, commit_every } => {
            let opts = index::IndexOptions {
                walk: ponder::ingest::WalkOptions { hidden, no_ignore, max_bytes: max_file_size, ..Default::default() },
                vector_kind: vectors,
                instruction,
                rebuild,
                commit_every_chunks: commit_every.max(1),
                ..Default::default()
            };
            run_index(&dir.dir(), paths, &model, opts, compact, &progress)
        }
        Command::Search { query, queries, dir, k, retrieval, rerank, json, device } => {
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
            let opts = retrieval.options(k)?;
            run_search(&dir.dir(), &all, &opts, rerank.rerank.then_some(&rerank), json, device)
        }
        Command::Status { dir, json } => status(&dir.dir(), json),
        Command::Eval { dir, retrieval, rerank, k, json, model, vectors, split, max_queries, cache } => {
            rerank.check()?;
            let mut opts = retrieval.options(100.max(k))?;
            opts.candidates = opts.candidates.max(100);
            let device = model.device;
            run_eval(&dir, &split, &model, vectors, &opts, k, json, max_queries, cache, rerank.rerank.then_some(&rerank), device)
        }
        Command::Remove { path, dir } => {
            let dir = dir.dir();
            let reader = IndexReader::open(&dir).with_context(|| format!("opening index {}", dir.display()))?;
            let embedder = embedder_for(&reader, DeviceChoice::Cpu)?;
            let m = &reader.manifest;
            let opts = index::IndexOptions { chunking: m.chunking.clone(), vector_kind: m.vector_kind, ..Default::default() };
            let stamp = m.model.clone();
            drop(reader);
            let mut ix = Indexer::open(&dir, &embedder, stamp, opts)?;
            let n = ix.remove(&path)?;
            eprintln!("removed {n} file(s) under {}", path.display());
            Ok(())
        }
        Command::Model { command: ModelCommand::Import { hf_dir, out_file, precision, provenance } } => {
            let t = Instant::now();
            let weights = ponder::model::hf::load_hf_dir(&hf_dir)?;
            format::write_file(&weights, precision, &provenance, &out_file)?;
            let size = std::fs::metadata(&out_file)?.len();
            eprintln!(
                "wrote {} ({:?}, {:.1} MB) in {:.1}s",
                out_file.display(),
                precision,
                size as f64 / 1e6,
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
        Command::Bench { command: BenchCommand::Search { dir, queries, n, k } } => bench_search(&dir.dir(), queries, n, k),
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
    } = command;
    if !(1..=512).contains(&max_len) {
        bail!("--max-len must be between 1 and 512");
    }
    let weights = init.load().with_context(|| format!("loading --init {}", model_name(&init)))?;
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
            let w = reranker_weights(src)?;
            Some(Embedder::new(&w, compute_precision(None, &w, "teacher")?, DeviceChoice::Cpu)?)
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

fn run_index(dir: &std::path::Path, paths: Vec<PathBuf>, model: &ModelArgs, mut opts: index::IndexOptions, compact: bool, progress: &str) -> Result<()> {
    use std::io::IsTerminal;
    let prior = index::Manifest::read(dir).ok().flatten();
    let existing = if opts.rebuild { None } else { prior.clone() };
    let t = Instant::now();
    let (embedder, stamp) = match &existing {
        // Re-runs keep the index's model unless another is named explicitly.
        Some(m) if model.model == ModelSource::Default && model.precision.is_none() && m.model.name != "default" => {
            let args = ModelArgs { model: m.model.name.parse().unwrap(), precision: None, device: model.device };
            args.load_with_stamp()?
        }
        _ => model.load_with_stamp()?,
    };
    if let Some(m) = &existing {
        opts.chunking = m.chunking.clone();
    }
    let roots: Vec<PathBuf> = if paths.is_empty() {
        let from_manifest: Vec<PathBuf> =
            prior.map(|m| m.roots.into_iter().map(PathBuf::from).collect()).unwrap_or_default();
        if from_manifest.is_empty() && !compact {
            bail!("nothing to index: give one or more paths");
        }
        from_manifest
    } else {
        paths
    };
    let mode = match progress {
        "auto" if std::io::stderr().is_terminal() => "bar",
        "auto" => "plain",
        other => other,
    };
    let mut ix = Indexer::open(dir, &embedder, stamp, opts)?;
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
    if !roots.is_empty() {
        let report = ix.index(&roots, &mut on)?;
        if let Some(b) = &bar {
            b.finish_and_clear();
        }
        eprintln!(
            "{} indexed, {} unchanged, {} removed, {} skipped; {} chunks added in {:.1}s ({:.1} chunks/s); generation {}",
            report.files_indexed, report.files_unchanged, report.files_removed, report.files_skipped,
            report.chunks_added, report.elapsed_s, report.chunks_per_s, report.generation
        );
    }
    if compact {
        ix.compact(&mut on)?;
        eprintln!("compacted");
    }
    Ok(())
}

fn run_search(
    dir: &std::path::Path,
    queries: &[String],
    opts: &SearchOptions,
    rerank: Option<&RerankArgs>,
    json: bool,
    device: DeviceChoice,
) -> Result<()> {
    use std::io::IsTerminal;
    let reader = IndexReader::open(dir).with_context(|| format!("opening index {}", dir.display()))?;
    let embedder = embedder_for(&reader, device)?;
    let searcher = Searcher { reader: &reader, embedder: &embedder };
    let ranked = match rerank {
        None => searcher.search(queries, opts)?,
        Some(args) => {
            let top = args.rerank_top[0];
            let mut wide = opts.clone();
            wide.k = opts.k.max(top);
            let ranked = searcher.search(queries, &wide)?;
            let reranker = args.load(device)?;
            let texts = chunk_texts(&reader, &ranked[..top.min(ranked.len())])?;
            let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
            // Several queries: the reranker reads them joined, as one information need.
            let scores = reranker.score(&queries.join(" "), &refs)?;
            let mut out = ponder::rerank::interpolate(&ranked, &scores, args.rerank_weight[0]);
            out.truncate(opts.k);
            out
        }
    };
    let terms: Vec<String> = queries.iter().flat_map(|q| reader.lexical.query_terms(q)).collect();
    let stdout = std::io::stdout();
    let tty = stdout.is_terminal();
    let mut out = BufWriter::new(stdout.lock());
    for (rank, (id, score)) in ranked.iter().enumerate() {
        let Some(hit) = reader.chunk(*id)? else { continue };
        let r = hit.record;
        let highlights = present::matches(&r.text, &terms, &reader.lexical.analyzer);
        if json {
            let h = present::Hit {
                path: hit.path,
                score: *score,
                start_line: r.start_line,
                end_line: r.end_line,
                heading: r.heading,
                text: r.text,
                highlights,
                chunk_id: *id,
            };
            serde_json::to_writer(&mut out, &h)?;
            writeln!(out)?;
        } else {
            let (snip, hs) = present::snippet(&r.text, &highlights, 300);
            let (open, close) = if tty { ("\x1b[1;33m", "\x1b[0m") } else { ("**", "**") };
            let heading = r.heading.map(|h| format!("  [{h}]")).unwrap_or_default();
            writeln!(out, "{}. {}:{}-{}  score {:.4}{}", rank + 1, hit.path, r.start_line, r.end_line, score, heading)?;
            writeln!(out, "   {}", present::render(&snip, &hs, open, close))?;
        }
    }
    if ranked.is_empty() && !json {
        writeln!(out, "no results")?;
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
    rerank: Option<&RerankArgs>,
    device: DeviceChoice,
) -> Result<()> {
    use ponder::eval::{self, Collection};
    let mut c = Collection::load(dir, split)?;
    if let Some(n) = max_queries {
        c.queries.truncate(n);
    }
    let (embedder, stamp) = model.load_with_stamp()?;
    let key = format!(
        "{}-{}-{}-{}-{}",
        c.name, c.fingerprint(), &stamp.fingerprint, stamp.precision, format!("{vectors:?}").to_lowercase()
    );
    let idx_dir = cache.unwrap_or_else(eval::default_cache_dir).join(key);
    let reusable = index::Manifest::read(&idx_dir).ok().flatten().is_some_and(|m| m.files.len() == c.docs.len());
    let mut index_s = 0.0;
    if !reusable {
        let t = Instant::now();
        let opts = index::IndexOptions { vector_kind: vectors, rebuild: true, ..Default::default() };
        let mut ix = Indexer::open(&idx_dir, &embedder, stamp, opts)?;
        let mut last = Instant::now();
        ix.index_records(&c.docs, &mut |p| {
            if let Progress::File { done, total, chunks, elapsed_s } = p {
                if !json && (last.elapsed().as_secs_f64() > 5.0 || done == total) {
                    last = Instant::now();
                    eprintln!("indexing {}: {done}/{total} docs, {:.1} docs/s", c.name, chunks as f64 / elapsed_s.max(1e-9));
                }
            }
        })?;
        index_s = t.elapsed().as_secs_f64();
    }
    let reader = IndexReader::open(&idx_dir)?;
    let searcher = Searcher { reader: &reader, embedder: &embedder };
    let t = Instant::now();
    let mut run = std::collections::HashMap::new();
    let mut lists = Vec::new();
    for (qid, q) in &c.queries {
        let ranked = searcher.search(std::slice::from_ref(q), opts)?;
        let docs: Vec<String> = ranked.iter().filter_map(|(id, _)| reader.path_of(*id).map(String::from)).collect();
        run.insert(qid.clone(), docs);
        lists.push(ranked);
    }
    let qps = c.queries.len() as f64 / t.elapsed().as_secs_f64().max(1e-9);
    let m = eval::evaluate_at(&c, &run, k);
    if let Some(args) = rerank {
        return rerank_grid(&c, &reader, &lists, args, device, k, json, &m);
    }
    let out = serde_json::json!({
        "collection": c.name, "mode": format!("{:?}", opts.mode).to_lowercase(), "fusion": format!("{:?}", opts.fusion),
        "rocchio": format!("{:?}", opts.rocchio), "rm3": format!("{:?}", opts.rm3), "long_query": format!("{:?}", opts.long_query),
        "exact": opts.exact, "vectors": format!("{vectors:?}").to_lowercase(), "precision": embedder.precision_name(),
        format!("ndcg@{k}"): (m.ndcg10 * 1e4).round() / 1e2, "recall@100": (m.recall100 * 1e4).round() / 1e2,
        format!("mrr@{k}"): (m.mrr10 * 1e4).round() / 1e2, "queries": m.queries, "queries_per_s": (qps * 10.0).round() / 10.0,
        "index_s": (index_s * 10.0).round() / 10.0, "index_reused": reusable, "docs": c.docs.len(),
    });
    if json {
        println!("{out}");
    } else {
        println!(
            "{} ({} docs, {} queries) mode={} : nDCG@{k} {:.2}  Recall@100 {:.2}  MRR@{k} {:.2}  | {:.1} queries/s, index {:.1}s{}",
            c.name, c.docs.len(), m.queries, format!("{:?}", opts.mode).to_lowercase(),
            m.ndcg10 * 100.0, m.recall100 * 100.0, m.mrr10 * 100.0, qps, index_s, if reusable { " (reused)" } else { "" }
        );
    }
    Ok(())
}

/// Scores the largest --rerank-top once per query, then evaluates every (top, weight) pair.
#[allow(clippy::too_many_arguments)]
fn rerank_grid(
    c: &ponder::eval::Collection,
    reader: &IndexReader,
    lists: &[Vec<(u64, f32)>],
    args: &RerankArgs,
    device: DeviceChoice,
    k: usize,
    json: bool,
    base: &ponder::eval::Metrics,
) -> Result<()> {
    use ponder::eval;
    let reranker = args.load(device)?;
    let deepest = *args.rerank_top.iter().max().unwrap_or(&20);
    let first = *args.rerank_top.iter().min().unwrap_or(&20);
    let mut scores: Vec<Vec<f32>> = Vec::with_capacity(lists.len());
    let (mut first_s, mut total_s) = (0.0, 0.0);
    let mut last = Instant::now();
    for (i, ((_, q), ranked)) in c.queries.iter().zip(lists).enumerate() {
        let n = deepest.min(ranked.len());
        let texts = chunk_texts(reader, &ranked[..n])?;
        let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
        // The shallowest depth is timed on its own: that is the per-query latency a user sees.
        let t = Instant::now();
        let mut s = reranker.score(q, &refs[..first.min(n)])?;
        first_s += t.elapsed().as_secs_f64();
        s.extend(reranker.score(q, &refs[first.min(n)..])?);
        total_s += t.elapsed().as_secs_f64();
        scores.push(s);
        if !json && last.elapsed().as_secs_f64() > 10.0 {
            last = Instant::now();
            eprintln!("reranking {}: {}/{} queries", c.name, i + 1, c.queries.len());
        }
    }
    let nq = lists.len().max(1) as f64;
    let ms_first = first_s / nq * 1e3;
    let round = |x: f64| (x * 1e4).round() / 1e2;
    let row = |top: usize, weight: f64, m: &eval::Metrics| {
        serde_json::json!({
            "collection": c.name, "rerank_top": top, "rerank_weight": weight,
            format!("ndcg@{k}"): round(m.ndcg10), "recall@100": round(m.recall100), format!("mrr@{k}"): round(m.mrr10),
        })
    };
    let mut rows = vec![row(0, 0.0, base)];
    for &top in &args.rerank_top {
        for &w in &args.rerank_weight {
            let mut run = std::collections::HashMap::new();
            for (((qid, _), ranked), s) in c.queries.iter().zip(lists).zip(&scores) {
                let out = ponder::rerank::interpolate(ranked, &s[..top.min(s.len())], w);
                run.insert(qid.clone(), out.iter().filter_map(|(id, _)| reader.path_of(*id).map(String::from)).collect());
            }
            let m = eval::evaluate_at(c, &run, k);
            rows.push(row(top, (f64::from(w) * 1e3).round() / 1e3, &m));
        }
    }
    let timing = serde_json::json!({
        "collection": c.name, "reranker": reranker.describe(), "queries": lists.len(),
        "rerank_ms_per_query_at_top": first, "rerank_ms_per_query": (ms_first * 10.0).round() / 10.0,
        "rerank_ms_per_query_deepest": ((total_s / nq * 1e3) * 10.0).round() / 10.0, "deepest": deepest,
    });
    if json {
        for r in &rows {
            println!("{r}");
        }
        println!("{timing}");
    } else {
        println!("{} ({} queries), reranker: {}", c.name, lists.len(), reranker.describe());
        println!("{:>10} {:>8} {:>9} {:>11} {:>8}", "rerank_top", "weight", format!("nDCG@{k}"), "Recall@100", format!("MRR@{k}"));
        for r in &rows {
            println!(
                "{:>10} {:>8} {:>9.2} {:>11.2} {:>8.2}",
                if r["rerank_top"] == 0 { "none".to_string() } else { r["rerank_top"].to_string() },
                r["rerank_weight"], r[format!("ndcg@{k}")].as_f64().unwrap_or(0.0), r["recall@100"].as_f64().unwrap_or(0.0),
                r[format!("mrr@{k}")].as_f64().unwrap_or(0.0)
            );
        }
        println!("rerank latency: {ms_first:.1} ms/query at top {first} ({:.1} ms at top {deepest})", total_s / nq * 1e3);
    }
    Ok(())
}

fn status(dir: &std::path::Path, json: bool) -> Result<()> {
    let reader = IndexReader::open(dir).with_context(|| format!("opening index {}", dir.display()))?;
    let m = &reader.manifest;
    let info = serde_json::json!({
        "index": dir.display().to_string(),
        "generation": m.generation,
        "files": m.files.len(),
        "chunks": m.live_chunks(),
        "disk_bytes": reader.disk_bytes(),
        "vector_files": reader.vector_files(),
        "vectors": format!("{:?}", m.vector_kind).to_lowercase(),
        "model": m.model.name,
        "model_fingerprint": m.model.fingerprint,
        "precision": m.model.precision,
        "dim": m.model.dim,
        "chunking": {"max_tokens": m.chunking.max_tokens, "overlap_tokens": m.chunking.overlap_tokens},
        "query_instruction": m.query_instruction,
        "roots": m.roots,
        "created_unix": m.created_unix,
        "updated_unix": m.updated_unix,
    });
    if json {
        println!("{info}");
    } else {
        println!("index:        {}", dir.display());
        println!("files:        {}", m.files.len());
        println!("chunks:       {}", m.live_chunks());
        println!("disk:         {:.1} MB in {} vector file(s)", reader.disk_bytes() as f64 / 1e6, reader.vector_files());
        println!("model:        {} ({}, {} dims, fingerprint {})", m.model.name, m.model.precision, m.model.dim, m.model.fingerprint);
        println!("vectors:      {:?}", m.vector_kind);
        println!("instruction:  {}", m.query_instruction.as_deref().unwrap_or("(none)"));
        println!("roots:        {}", m.roots.join(", "));
        println!("generation:   {} (updated {} s ago)", m.generation, index::manifest::now_unix().saturating_sub(m.updated_unix));
    }
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

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn bench_search(dir: &std::path::Path, queries: Option<PathBuf>, n: usize, k: usize) -> Result<()> {
    let t = Instant::now();
    let reader = IndexReader::open(dir).with_context(|| format!("opening index {}", dir.display()))?;
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let embedder = embedder_for(&reader, DeviceChoice::Auto)?;
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
        "bytes_per_chunk": reader.disk_bytes() as f64 / reader.manifest.live_chunks().max(1) as f64}));
    let searcher = Searcher { reader: &reader, embedder: &embedder };
    let mut hybrid_ms = Vec::new();
    for mode in [Mode::Dense, Mode::Lexical, Mode::Hybrid] {
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
    for q in &qs {
        let t = Instant::now();
        let v = searcher.query_vector(q, ponder::retrieve::LongQuery::Split)?;
        embed_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let ann: std::collections::HashSet<u64> = reader.dense(&v, k, false)?.into_iter().map(|x| x.0).collect();
        let exact = reader.dense(&v, k, true)?;
        let hit = exact.iter().filter(|x| ann.contains(&x.0)).count();
        recall += hit as f64 / exact.len().max(1) as f64;
    }
    embed_ms.sort_by(f64::total_cmp);
    println!("{}", serde_json::json!({"event": "ann", "recall_at_k": recall / qs.len().max(1) as f64, "k": k,
        "query_embed_p50_ms": percentile(&embed_ms, 0.5), "hybrid_p50_ms": percentile(&hybrid_ms, 0.5)}));
    Ok(())
}

/// The benchmark passage: same rule as `benches/onnx_baseline.py`.
fn bench_passage(i: usize) -> String {
    let p = "The quick brown fox jumps over the lazy dog while researchers measure protein folding rates in yeast cells under heat stress, and the results suggest that chaperone expression increases survival. ";
    format!("{i} {}", p.repeat(40))
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
