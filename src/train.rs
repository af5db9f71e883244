//! Training: fitting a cross-encoder reranker with burn's autodiff (on `flex` on the CPU
//! or wgpu on a GPU). Owns training data (a BEIR collection with a `train` qrels split),
//! hard-negative mining (BM25 and, optionally, the dense retriever), the loss, a hand-written
//! AdamW, checkpoints that survive being killed, validation on held-out queries, and the
//! export of the trained model to ponder's model format.
//!
//! Determinism: which queries, positives and negatives step `s` sees is a pure function of
//! the seed and `s`, so a resumed run continues exactly where the checkpoint left off.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::embed::burn_bert::{to_host, BurnBert};
use crate::embed::tokenize::TextTokenizer;
use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::eval::Collection;
use crate::index::lexical::{self, Analyzer, Lexical, LexicalSegment};
use crate::index::manifest::LiveSet;
use crate::model::config::{Head, Pooling};
use crate::model::{ModelWeights, Precision, WeightTensor};

/// Training objective over one positive and `n` negatives per query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum Loss {
    /// Softmax cross-entropy over the query's group (the positive must win the group).
    Listwise,
    /// Binary cross-entropy on every pair independently.
    Bce,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainOptions {
    pub loss: Loss,
    /// Negatives per query.
    pub negatives: usize,
    /// Queries per optimiser step (each with 1 + `negatives` pairs).
    pub queries_per_step: usize,
    /// Pair length in tokens (query + passage + 3 special tokens).
    pub max_len: usize,
    pub steps: usize,
    pub lr: f64,
    /// Fraction of steps with linear warm-up; the rest decays linearly to 0.
    pub warmup: f64,
    pub weight_decay: f64,
    /// Also train the word-embedding table (off: it is half the parameters, and frozen
    /// embeddings generalise better from little data).
    pub train_word_embeddings: bool,
    /// Of the negatives, the share drawn from mined hard negatives (the rest are random).
    pub hard_share: f64,
    /// How deep to mine hard negatives.
    pub mine_depth: usize,
    pub seed: u64,
    /// Train the bi-encoder (margin-MSE against a cross-encoder teacher) instead of a
    /// cross-encoder.
    pub distill: bool,
    /// Student similarities are cosines times this before they are compared with the
    /// teacher's logit margins.
    pub distill_scale: f64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            loss: Loss::Listwise,
            negatives: 3,
            queries_per_step: 4,
            max_len: 160,
            steps: 1000,
            lr: 5e-5,
            warmup: 0.1,
            weight_decay: 0.01,
            train_word_embeddings: false,
            hard_share: 0.75,
            mine_depth: 30,
            seed: 17,
            distill: false,
            distill_scale: 20.0,
        }
    }
}

/// One training query: its text, positive documents and mined hard negatives.
struct Example {
    query: String,
    positives: Vec<usize>,
    hard: Vec<usize>,
}

/// Training data in memory.
pub struct TrainData {
    docs: Vec<String>,
    examples: Vec<Example>,
}

/// splitmix64: small, seedable, good enough for sampling.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

struct Rng(u64);

impl Rng {
    fn new(parts: &[u64]) -> Self {
        Rng(parts.iter().fold(0x5eed, |h, &p| mix(h ^ p)))
    }
    fn next(&mut self) -> u64 {
        self.0 = mix(self.0);
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit().max(1e-12), self.unit());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// An in-memory BM25 index over `docs` (ids are positions), with ponder's analyzer.
pub fn bm25_over(docs: &[String]) -> Result<(Lexical, LiveSet)> {
    let analyzer = Analyzer::default();
    let pairs: Vec<(u64, &str)> = docs.iter().enumerate().map(|(i, d)| (i as u64, d.as_str())).collect();
    let bytes = lexical::encode(&analyzer, &pairs)?;
    let seg = LexicalSegment::from_bytes(&bytes, Path::new("<training corpus>"))?;
    Ok((Lexical { segments: vec![seg.into()], analyzer, params: Default::default() }, LiveSet::new(vec![(0, docs.len() as u64)])))
}

impl TrainData {
    /// Loads `dir` (BEIR layout, qrels split `split`) and mines hard negatives for every
    /// query: BM25 top `depth`, plus, if `dense` is given, the dense retriever's top `depth`
    /// (exact search over the whole corpus), positives removed.
    pub fn load(dir: &Path, split: &str, depth: usize, dense: Option<&Embedder>, log: &dyn Fn(&str)) -> Result<Self> {
        let c = Collection::load(dir, split)?;
        if c.queries.is_empty() {
            return Err(Error::InvalidInput(format!("{}: no judged queries in split {split}", dir.display())));
        }
        let index: HashMap<&str, usize> = c.docs.iter().enumerate().map(|(i, (id, _))| (id.as_str(), i)).collect();
        let docs: Vec<String> = c.docs.iter().map(|(_, t)| t.clone()).collect();
        let t0 = Instant::now();
        let (lex, live) = bm25_over(&docs)?;
        let mut examples = Vec::new();
        for (qid, text) in &c.queries {
            let positives: Vec<usize> = c.qrels[qid]
                .iter()
                .filter(|(_, &r)| r > 0)
                .filter_map(|(d, _)| index.get(d.as_str()).copied())
                .collect();
            if positives.is_empty() {
                continue;
            }
            let pos: HashSet<usize> = positives.iter().copied().collect();
            let hard: Vec<usize> = lex
                .search(text, depth + pos.len(), &live)?
                .into_iter()
                .map(|(id, _)| id as usize)
                .filter(|d| !pos.contains(d))
                .take(depth)
                .collect();
            examples.push(Example { query: text.clone(), positives, hard });
        }
        log(&format!(
            "training data: {} queries, {} documents; BM25 negatives mined in {:.1}s",
            examples.len(),
            docs.len(),
            t0.elapsed().as_secs_f64()
        ));
        if let Some(embedder) = dense {
            let t0 = Instant::now();
            let refs: Vec<&str> = docs.iter().map(|s| s.as_str()).collect();
            let dvecs = embedder.embed(&refs)?;
            let qrefs: Vec<&str> = examples.iter().map(|e| e.query.as_str()).collect();
            let qvecs = embedder.embed(&qrefs)?;
            for (ex, q) in examples.iter_mut().zip(&qvecs) {
                let mut scored: Vec<(f32, usize)> =
                    dvecs.iter().enumerate().map(|(i, d)| (q.iter().zip(d).map(|(a, b)| a * b).sum(), i)).collect();
                let keep = (depth + ex.positives.len()).min(scored.len());
                scored.select_nth_unstable_by(keep.saturating_sub(1), |a, b| b.0.total_cmp(&a.0));
                scored.truncate(keep);
                scored.sort_by(|a, b| b.0.total_cmp(&a.0));
                let seen: HashSet<usize> = ex.hard.iter().chain(&ex.positives).copied().collect();
                let extra: Vec<usize> = scored.into_iter().map(|(_, i)| i).filter(|i| !seen.contains(i)).take(depth).collect();
                ex.hard.extend(extra);
            }
            log(&format!("dense negatives mined in {:.1}s", t0.elapsed().as_secs_f64()));
        }
        Ok(TrainData { docs, examples })
    }

    pub fn queries(&self) -> usize {
        self.examples.len()
    }

    /// The (query, passage) pairs of `groups`, group by group.
    fn pairs<'a>(&'a self, groups: &'a [(String, Vec<usize>)]) -> Vec<(&'a str, &'a str)> {
        groups.iter().flat_map(|(q, docs)| docs.iter().map(move |&d| (q.as_str(), self.docs[d].as_str()))).collect()
    }

    /// The (query, passage) groups of step `step`: for each query the positive first.
    fn groups(&self, opts: &TrainOptions, step: usize) -> Vec<(String, Vec<usize>)> {
        let n = self.examples.len();
        let q = opts.queries_per_step;
        // A fresh permutation of the queries per epoch; step picks its slice of it.
        let epoch_len = n.div_ceil(q).max(1);
        let epoch = step / epoch_len;
        let mut order: Vec<usize> = (0..n).collect();
        let mut rng = Rng::new(&[opts.seed, epoch as u64, 1]);
        for i in (1..n).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let start = (step % epoch_len) * q;
        let mut out = Vec::new();
        for k in 0..q {
            let ex = &self.examples[order[(start + k) % n]];
            let mut rng = Rng::new(&[opts.seed, step as u64, k as u64, 2]);
            let pos = ex.positives[rng.below(ex.positives.len())];
            let mut group = vec![pos];
            let mut tries = 0;
            while group.len() < 1 + opts.negatives && tries < 100 {
                tries += 1;
                let d = if !ex.hard.is_empty() && rng.unit() < opts.hard_share {
                    ex.hard[rng.below(ex.hard.len())]
                } else {
                    rng.below(self.docs.len())
                };
                if !ex.positives.contains(&d) && !group.contains(&d) {
                    group.push(d);
                }
            }
            while group.len() < 1 + opts.negatives {
                group.push(rng.below(self.docs.len())); // tiny corpora only
            }
            out.push((ex.query.clone(), group));
        }
        out
    }
}

/// Turns an embedding model into an untrained cross-encoder: CLS pooling, a pooler initialised
/// to the identity and a small random classifier. A model that already is a cross-encoder is
/// returned unchanged (training continues from it).
pub fn cross_encoder_init(base: &ModelWeights, seed: u64) -> ModelWeights {
    let mut w = base.clone();
    // The file keeps the base model's window for inference; training pairs use their own.
    if w.config.head == Head::Classifier {
        return w;
    }
    let h = w.config.hidden_size;
    w.config.head = Head::Classifier;
    w.config.pooling = Pooling::Cls;
    w.config.normalize = false;
    let mut eye = vec![0f32; h * h];
    for i in 0..h {
        eye[i * h + i] = 1.0;
    }
    let mut rng = Rng::new(&[seed, 3]);
    let cls: Vec<f32> = (0..h).map(|_| (rng.normal() * 0.02) as f32).collect();
    w.tensors.insert("pooler.weight".into(), WeightTensor::from_f32(vec![h, h], &eye));
    w.tensors.insert("pooler.bias".into(), WeightTensor::from_f32(vec![h], &vec![0.0; h]));
    w.tensors.insert("classifier.weight".into(), WeightTensor::from_f32(vec![1, h], &cls));
    w.tensors.insert("classifier.bias".into(), WeightTensor::from_f32(vec![1], &[0.0]));
    w
}

const CKPT_MAGIC: &[u8; 8] = b"PONDRCKP";
const CKPT_VERSION: u32 = 1;

/// Everything needed to resume: parameters, AdamW moments, step and options.
#[derive(Serialize, Deserialize)]
struct Checkpoint {
    version: u32,
    step: usize,
    options: TrainOptions,
    /// Fingerprint of the initial model, so a checkpoint is never resumed onto another.
    init: String,
    params: Vec<(String, Vec<usize>, Vec<f32>)>,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    loss_ema: f64,
    /// Seconds of training so far (all sessions).
    seconds: f64,
}

fn to_device(v: &[f32], dims: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(v.to_vec(), dims), device)
}

/// What a finished (or stopped) run reports.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub steps_done: usize,
    pub seconds: f64,
    pub final_loss: f64,
    pub validation: Vec<(usize, Validation)>,
}

/// Reranking quality on held-out queries.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Validation {
    /// MRR@10 of the BM25 candidate order.
    pub bm25_mrr: f64,
    /// MRR@10 after reranking the candidates by the model alone.
    pub mrr: f64,
    /// Share of queries whose positive is among the candidates (the ceiling).
    pub recall: f64,
}

/// Held-out queries with BM25 candidates, scored with the native runtime.
pub struct ValidationSet {
    /// (query, its judgements, its candidates as (doc id, text) in BM25 order).
    items: Vec<(String, HashMap<String, i32>, Vec<(String, String)>)>,
}

impl ValidationSet {
    /// The first `queries` judged queries of `dir` (split `split`), each with its BM25 top
    /// `candidates` from that collection's corpus.
    pub fn load(dir: &Path, split: &str, queries: usize, candidates: usize) -> Result<Self> {
        let c = Collection::load(dir, split)?;
        let docs: Vec<String> = c.docs.iter().map(|(_, t)| t.clone()).collect();
        let (lex, live) = bm25_over(&docs)?;
        let mut items = Vec::new();
        for (qid, text) in c.queries.iter().take(queries) {
            let cands = lex.search(text, candidates, &live)?.into_iter().map(|(i, _)| c.docs[i as usize].clone()).collect();
            items.push((text.clone(), c.qrels[qid].clone(), cands));
        }
        Ok(ValidationSet { items })
    }

    /// Reranks each query's candidates with `model`: a cross-encoder's logits, or a
    /// bi-encoder's cosine similarities.
    pub fn run(&self, model: &Embedder) -> Result<Validation> {
        use crate::eval::{mrr_at, recall_at};
        let (mut base, mut ours, mut found) = (0.0, 0.0, 0.0);
        for (q, rels, cands) in &self.items {
            let ids: Vec<&str> = cands.iter().map(|(id, _)| id.as_str()).collect();
            base += mrr_at(&ids, rels, 10);
            found += f64::from(u8::from(recall_at(&ids, rels, ids.len()) > 0.0));
            let texts: Vec<&str> = cands.iter().map(|(_, t)| t.as_str()).collect();
            let scores = if model.config().head == Head::Classifier {
                let pairs: Vec<(&str, &str)> = texts.iter().map(|t| (q.as_str(), *t)).collect();
                model.score_pairs(&pairs)?
            } else {
                let qv = model.embed(&[q.as_str()])?.remove(0);
                model.embed(&texts)?.iter().map(|d| crate::embed::cosine(&qv, d)).collect()
            };
            let mut order: Vec<usize> = (0..cands.len()).collect();
            order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
            let reranked: Vec<&str> = order.iter().map(|&i| ids[i]).collect();
            ours += mrr_at(&reranked, rels, 10);
        }
        let n = self.items.len().max(1) as f64;
        Ok(Validation { bm25_mrr: base / n, mrr: ours / n, recall: found / n })
    }
}

/// A training run: the model on a burn device, optimiser state and the run's files.
pub struct Trainer {
    model: BurnBert,
    base: ModelWeights,
    tokenizer: TextTokenizer,
    opts: TrainOptions,
    init_fingerprint: String,
    m: Vec<Tensor<2>>,
    v: Vec<Tensor<2>>,
    step: usize,
    loss_ema: f64,
    seconds: f64,
    checkpoint: PathBuf,
}

impl Trainer {
    /// Starts from `init` (an embedding model or a cross-encoder), or resumes from
    /// `checkpoint` if that file exists and was made from the same model and options.
    pub fn new(init: &ModelWeights, opts: TrainOptions, device: Device, checkpoint: PathBuf) -> Result<Self> {
        Self::new_tagged(init, opts, device, checkpoint, "")
    }

    /// [`Trainer::new`] for a caller with settings of its own beyond [`TrainOptions`] (a loss
    /// mix, say): `tag` names them, and a checkpoint made under another tag is refused like
    /// one made from another model.
    pub fn new_tagged(init: &ModelWeights, opts: TrainOptions, device: Device, checkpoint: PathBuf, tag: &str) -> Result<Self> {
        let base = if opts.distill {
            if init.config.head != Head::Embedding {
                return Err(Error::InvalidInput("distillation trains a bi-encoder: --init must be an embedding model".into()));
            }
            init.clone()
        } else {
            cross_encoder_init(init, opts.seed)
        };
        let tokenizer = TextTokenizer::from_json(&base.tokenizer_json, opts.max_len.min(base.config.max_position_embeddings))?;
        let init_fingerprint = if tag.is_empty() { init.fingerprint() } else { format!("{}+{tag}", init.fingerprint()) };
        let device = device.autodiff();
        let model = BurnBert::new(&base, device.clone())?;
        let mut t = Trainer {
            m: Vec::new(),
            v: Vec::new(),
            model,
            base,
            tokenizer,
            opts,
            init_fingerprint,
            step: 0,
            loss_ema: f64::NAN,
            seconds: 0.0,
            checkpoint,
        };
        let resumed = if t.checkpoint.exists() { Some(t.load_checkpoint(&device)?) } else { None };
        let with_word = t.opts.train_word_embeddings;
        let (mut m, mut v) = (Vec::new(), Vec::new());
        for (i, (_, p)) in t.model.params_mut(with_word).into_iter().enumerate() {
            let dims = p.dims();
            *p = p.clone().inner().autodiff().require_grad();
            match &resumed {
                Some((ms, vs)) => {
                    m.push(to_device(&ms[i], dims, &device).inner());
                    v.push(to_device(&vs[i], dims, &device).inner());
                }
                None => {
                    m.push(Tensor::zeros(dims, &device).inner());
                    v.push(Tensor::zeros(dims, &device).inner());
                }
            }
        }
        t.m = m;
        t.v = v;
        Ok(t)
    }

    pub fn step(&self) -> usize {
        self.step
    }

    pub fn options(&self) -> &TrainOptions {
        &self.opts
    }

    fn load_checkpoint(&mut self, device: &Device) -> Result<(Vec<Vec<f32>>, Vec<Vec<f32>>)> {
        let path = self.checkpoint.clone();
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let payload = crate::index::container::open(CKPT_MAGIC, &bytes, &path)?;
        let ck: Checkpoint = postcard::from_bytes(payload).map_err(|e| Error::corrupt(&path, format!("checkpoint: {e}")))?;
        if ck.version != CKPT_VERSION {
            return Err(Error::corrupt(&path, format!("checkpoint version {} (this build reads {CKPT_VERSION})", ck.version)));
        }
        if ck.init != self.init_fingerprint {
            return Err(Error::InvalidInput(format!(
                "{} was trained from another model or with other settings; remove it or pick another --out",
                path.display()
            )));
        }
        let same = postcard::to_allocvec(&ck.options).ok() == postcard::to_allocvec(&TrainOptions { steps: ck.options.steps, ..self.opts.clone() }).ok();
        if !same {
            return Err(Error::InvalidInput(format!(
                "{} was made with other training options; rerun with the same options (only --steps may change) or remove it",
                path.display()
            )));
        }
        let params = self.model.params_mut(self.opts.train_word_embeddings);
        if params.len() != ck.params.len() || ck.m.len() != params.len() || ck.v.len() != params.len() {
            return Err(Error::corrupt(&path, "checkpoint does not match the model's parameters"));
        }
        for ((name, p), (cname, dims, vals)) in params.into_iter().zip(&ck.params) {
            if &name != cname || p.dims().to_vec() != *dims || vals.len() != dims.iter().product::<usize>() {
                return Err(Error::corrupt(&path, format!("checkpoint tensor {cname} does not match {name}")));
            }
            *p = to_device(vals, [dims[0], dims[1]], device);
        }
        self.step = ck.step;
        self.loss_ema = ck.loss_ema;
        self.seconds = ck.seconds;
        Ok((ck.m, ck.v))
    }

    /// Writes the checkpoint atomically (a kill leaves the previous one intact).
    pub fn save_checkpoint(&mut self) -> Result<()> {
        let with_word = self.opts.train_word_embeddings;
        let params: Vec<(String, Vec<usize>, Vec<f32>)> = self
            .model
            .params_mut(with_word)
            .into_iter()
            .map(|(n, p)| (n, p.dims().to_vec(), to_host(p)))
            .collect();
        let ck = Checkpoint {
            version: CKPT_VERSION,
            step: self.step,
            options: self.opts.clone(),
            init: self.init_fingerprint.clone(),
            params,
            m: self.m.iter().map(to_host).collect(),
            v: self.v.iter().map(to_host).collect(),
            loss_ema: self.loss_ema,
            seconds: self.seconds,
        };
        let payload = postcard::to_allocvec(&ck).map_err(|e| Error::Config(format!("checkpoint: {e}")))?;
        if let Some(dir) = self.checkpoint.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        crate::fsutil::write_atomic(&self.checkpoint, &crate::index::container::seal(CKPT_MAGIC, &payload))
    }

    /// The learning rate at `step`: linear warm-up, then linear decay to zero.
    pub fn lr_at(&self, step: usize) -> f64 {
        let total = self.opts.steps.max(1) as f64;
        let warm = (self.opts.warmup * total).max(1.0);
        let s = step as f64 + 1.0;
        if s < warm {
            self.opts.lr * s / warm
        } else {
            self.opts.lr * ((total - s) / (total - warm).max(1.0)).clamp(0.0, 1.0)
        }
    }

    /// One optimiser step on `data`; returns the batch loss. A distillation run needs the
    /// teacher ([`Trainer::distill_step`]).
    pub fn train_step(&mut self, data: &TrainData) -> Result<f64> {
        if self.opts.distill {
            return Err(Error::InvalidInput("a distillation run steps with distill_step".into()));
        }
        let t0 = Instant::now();
        let groups = data.groups(&self.opts, self.step);
        let g = 1 + self.opts.negatives;
        let pairs = data.pairs(&groups);
        let enc = self.tokenizer.encode_pairs(&pairs)?;
        let logits = self.model.score_tensor(&enc).ok_or_else(|| Error::Unsupported("model has no classifier head".into()))?;
        let logits = logits.reshape([groups.len(), g]);
        let loss = match self.opts.loss {
            Loss::Listwise => log_softmax(logits, 1).slice([0..groups.len(), 0..1]).mean().neg(),
            Loss::Bce => {
                // mean(softplus(x) - y * x), with y = 1 for column 0.
                let mut y = vec![0f32; groups.len() * g];
                for i in 0..groups.len() {
                    y[i * g] = 1.0;
                }
                let y = Tensor::<2>::from_data(TensorData::new(y, [groups.len(), g]), &logits.device());
                let sp = logits.clone().clamp_min(0.0) + logits.clone().abs().neg().exp().log1p();
                (sp - logits * y).mean()
            }
        };
        self.apply(loss, t0)
    }

    /// One distillation step: for each query (positive, negative...) the student's scaled
    /// cosine margins `s(q,p) - s(q,n)` are pulled toward the teacher's logit margins
    /// (margin-MSE).
    pub fn distill_step(&mut self, data: &TrainData, teacher: &Embedder) -> Result<f64> {
        if !self.opts.distill {
            return Err(Error::InvalidInput("distill_step needs a distillation run".into()));
        }
        let t0 = Instant::now();
        let groups = data.groups(&self.opts, self.step);
        let g = 1 + self.opts.negatives;
        let pairs = data.pairs(&groups);
        let teacher_scores = teacher.score_pairs(&pairs)?;
        let mut margins = Vec::with_capacity(groups.len() * (g - 1));
        for row in teacher_scores.chunks_exact(g) {
            margins.extend(row[1..].iter().map(|n| row[0] - n));
        }
        let queries: Vec<&str> = groups.iter().map(|(q, _)| q.as_str()).collect();
        let passages: Vec<&str> = pairs.iter().map(|p| p.1).collect();
        let qe = self.model.embed_tensor(&self.tokenizer.encode(&queries)?);
        let pe = self.model.embed_tensor(&self.tokenizer.encode(&passages)?);
        let h = self.model.config().hidden_size;
        let (b, dev) = (groups.len(), qe.device());
        // [B, 1, H] x [B, H, G] -> [B, G] cosines (embeddings are normalised).
        let sims = qe
            .reshape([b, 1, h])
            .matmul(pe.reshape([b, g, h]).swap_dims(1, 2))
            .reshape([b, g])
            .mul_scalar(self.opts.distill_scale);
        let pos = sims.clone().slice([0..b, 0..1]);
        let neg = sims.slice([0..b, 1..g]);
        let student = pos - neg; // broadcast over the negatives
        let target = Tensor::<2>::from_data(TensorData::new(margins, [b, g - 1]), &dev);
        let loss = (student - target).powi_scalar(2).mean();
        self.apply(loss, t0)
    }

    /// One optimiser step on a loss the caller builds from the model being trained (for
    /// objectives that live outside this module, such as `distill`'s); returns the loss.
    pub fn custom_step(&mut self, loss: impl FnOnce(&BurnBert, &TextTokenizer) -> Result<Tensor<1>>) -> Result<f64> {
        let t0 = Instant::now();
        let loss = loss(&self.model, &self.tokenizer)?;
        self.apply(loss, t0)
    }

    /// The learning rate the optimiser used (or will use) at `step`.
    /// Backward pass, gradient clipping and the AdamW update.
    fn apply(&mut self, loss: Tensor<1>, t0: Instant) -> Result<f64> {
        let loss_value = f64::from(loss.clone().inner().into_scalar::<f32>());
        if !loss_value.is_finite() {
            return Err(Error::Config(format!("training diverged at step {} (loss {loss_value})", self.step)));
        }
        let grads = loss.backward();
        let lr = self.lr_at(self.step);
        let (b1, b2, eps, wd) = (0.9f64, 0.999f64, 1e-8f64, self.opts.weight_decay);
        let t = (self.step + 1) as i32;
        let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        let with_word = self.opts.train_word_embeddings;
        let mut params = self.model.params_mut(with_word);
        // Global gradient-norm clipping at 1.0.
        let gs: Vec<Option<Tensor<2>>> = params.iter().map(|(_, p)| p.grad(&grads)).collect();
        let sq: f64 = gs
            .iter()
            .flatten()
            .map(|g| f64::from(g.clone().powi_scalar(2).sum().into_scalar::<f32>()))
            .sum();
        let clip = if sq.sqrt() > 1.0 { 1.0 / sq.sqrt() } else { 1.0 };
        for (i, ((name, p), grad)) in params.iter_mut().zip(gs).enumerate() {
            let Some(grad) = grad else { continue };
            let grad = grad.mul_scalar(clip);
            let m = self.m[i].clone().mul_scalar(b1) + grad.clone().mul_scalar(1.0 - b1);
            let v = self.v[i].clone().mul_scalar(b2) + grad.powi_scalar(2).mul_scalar(1.0 - b2);
            let update = (m.clone().div_scalar(c1)) / (v.clone().div_scalar(c2).sqrt().add_scalar(eps));
            let decay = if name.ends_with(".weight") && !name.contains("ln") { wd } else { 0.0 };
            let cur = p.clone().inner();
            let next = cur.clone() - update.mul_scalar(lr) - cur.mul_scalar(lr * decay);
            **p = next.autodiff().require_grad();
            self.m[i] = m;
            self.v[i] = v;
        }
        self.step += 1;
        self.loss_ema = if self.loss_ema.is_nan() { loss_value } else { 0.98 * self.loss_ema + 0.02 * loss_value };
        self.seconds += t0.elapsed().as_secs_f64();
        Ok(loss_value)
    }

    pub fn loss_ema(&self) -> f64 {
        self.loss_ema
    }

    pub fn seconds(&self) -> f64 {
        self.seconds
    }

    /// The model as trained so far, as f32 weights.
    pub fn weights(&self) -> ModelWeights {
        let mut w = self.model.to_weights(&self.base);
        let what = if self.opts.distill { "distilled bi-encoder" } else { "trained cross-encoder" };
        w.source = format!("{what}, step {}", self.step);
        w
    }

    /// A native-runtime copy of the current model for validation.
    pub fn native(&self, precision: Precision) -> Result<Embedder> {
        Embedder::new(&self.weights(), precision, crate::device::DeviceChoice::Cpu)
    }
}

/// Files, schedule and validation of a training run.
#[derive(Clone, Debug)]
/// When a training loop reports, checkpoints, validates and stops.
pub struct Schedule {
    /// Train until the trainer has taken this many steps.
    pub total: usize,
    /// Log progress every N steps (0: never).
    pub progress_every: usize,
    /// Save a checkpoint every N steps (0: only at the end).
    pub checkpoint_every: usize,
    /// Validate every N steps (0: only where the caller does).
    pub eval_every: usize,
    /// Stop cleanly after this many minutes of this session; the same command resumes.
    pub max_minutes: Option<f64>,
}

/// Steps `trainer` to `schedule.total` with `step` (one optimiser step; returns its loss):
/// logs progress (`extra(steps per second)` is appended to the rate), checkpoints, validates
/// with `validate`, stops cleanly at `max_minutes`, and saves a checkpoint at the end.
/// Returns whether it stopped early. Shared by `ponder train reranker` and `ponder train distill`.
pub fn drive(
    trainer: &mut Trainer,
    schedule: &Schedule,
    step: &mut dyn FnMut(&mut Trainer) -> Result<f64>,
    validate: &mut dyn FnMut(&Trainer) -> Result<()>,
    extra: &dyn Fn(f64) -> String,
    log: &dyn Fn(&str),
) -> Result<bool> {
    let total = schedule.total;
    let session = Instant::now();
    let mut window = (Instant::now(), trainer.step());
    let mut stopped = false;
    while trainer.step() < total {
        let loss = step(trainer)?;
        let s = trainer.step();
        if schedule.progress_every > 0 && (s % schedule.progress_every == 0 || s == total) {
            let dt = window.0.elapsed().as_secs_f64();
            let rate = (s - window.1) as f64 / dt.max(1e-9);
            log(&format!(
                "step {s}/{total} loss {loss:.4} (ema {:.4}) lr {:.2e} {rate:.3} steps/s{} eta {:.1} min",
                trainer.loss_ema(),
                trainer.lr_at(s - 1),
                extra(rate),
                (total - s) as f64 / rate.max(1e-9) / 60.0
            ));
            window = (Instant::now(), s);
        }
        if schedule.checkpoint_every > 0 && s % schedule.checkpoint_every == 0 && s < total {
            trainer.save_checkpoint()?;
        }
        if schedule.eval_every > 0 && s % schedule.eval_every == 0 && s < total {
            validate(trainer)?;
        }
        if schedule.max_minutes.is_some_and(|m| session.elapsed().as_secs_f64() > m * 60.0) && s < total {
            log(&format!(
                "stopping at step {s} after {:.1} min (--max-minutes); the same command resumes",
                session.elapsed().as_secs_f64() / 60.0
            ));
            stopped = true;
            break;
        }
    }
    trainer.save_checkpoint()?;
    Ok(stopped)
}

pub struct RunConfig {
    /// BEIR directory with `qrels/train.tsv`.
    pub data: PathBuf,
    /// Held-out BEIR directory for validation (split `val_split`), if any.
    pub val: Option<PathBuf>,
    pub val_split: String,
    pub val_queries: usize,
    pub val_candidates: usize,
    /// The trained model file to write.
    pub out: PathBuf,
    pub precision: Precision,
    pub checkpoint: PathBuf,
    pub checkpoint_every: usize,
    /// Validate every this many steps (0: only at the end).
    pub eval_every: usize,
    pub progress_every: usize,
    /// Stop (with a checkpoint) once this session has trained this long.
    pub max_minutes: Option<f64>,
    /// Also mine negatives with the dense retriever (`init` as a bi-encoder).
    pub dense_negatives: bool,
}

/// Trains (or resumes) to `opts.steps`, validating and checkpointing on the way, and writes
/// the model to `rc.out`. Progress lines go to `log`.
pub fn run(
    init: &ModelWeights,
    opts: TrainOptions,
    device: Device,
    rc: &RunConfig,
    teacher: Option<&Embedder>,
    log: &dyn Fn(&str),
) -> Result<TrainReport> {
    if opts.distill != teacher.is_some() {
        return Err(Error::InvalidInput("distillation needs a teacher, and only distillation takes one".into()));
    }
    let dense = if rc.dense_negatives {
        if init.config.head != Head::Embedding {
            return Err(Error::InvalidInput("--dense-negatives needs an embedding model as --init".into()));
        }
        Some(Embedder::new(init, Precision::Int8, crate::device::DeviceChoice::Cpu)?)
    } else {
        None
    };
    let data = TrainData::load(&rc.data, "train", opts.mine_depth, dense.as_ref(), log)?;
    drop(dense);
    let val = match &rc.val {
        Some(dir) => Some(ValidationSet::load(dir, &rc.val_split, rc.val_queries, rc.val_candidates)?),
        None => None,
    };
    let mut trainer = Trainer::new(init, opts, device, rc.checkpoint.clone())?;
    let total = trainer.options().steps;
    if trainer.step() > 0 {
        log(&format!("resumed from {} at step {}", rc.checkpoint.display(), trainer.step()));
    }
    let pairs_per_step = trainer.options().queries_per_step * (1 + trainer.options().negatives);
    let mut validation = Vec::new();
    let validate = |trainer: &Trainer, validation: &mut Vec<(usize, Validation)>| -> Result<()> {
        if let Some(val) = &val {
            let t0 = Instant::now();
            let v = val.run(&trainer.native(Precision::F32)?)?;
            log(&format!(
                "validation at step {}: MRR@10 {:.4} (BM25 order {:.4}, positive among candidates {:.1}%) in {:.0}s",
                trainer.step(),
                v.mrr,
                v.bm25_mrr,
                v.recall * 100.0,
                t0.elapsed().as_secs_f64()
            ));
            validation.push((trainer.step(), v));
        }
        Ok(())
    };
    let schedule = Schedule {
        total,
        progress_every: rc.progress_every,
        checkpoint_every: rc.checkpoint_every,
        eval_every: rc.eval_every,
        max_minutes: rc.max_minutes,
    };
    let stopped = drive(
        &mut trainer,
        &schedule,
        &mut |trainer: &mut Trainer| match teacher {
            Some(t) => trainer.distill_step(&data, t),
            None => trainer.train_step(&data),
        },
        &mut |trainer: &Trainer| validate(trainer, &mut validation),
        &|rate| format!(" {:.1} pairs/s", rate * pairs_per_step as f64),
        log,
    )?;
    if !stopped {
        validate(&trainer, &mut validation)?;
    }
    let weights = trainer.weights();
    let o = trainer.options();
    let provenance = if o.distill {
        format!(
            "ponder bi-encoder distilled from a cross-encoder (margin-MSE, scale {}): {} steps from {} on {} ({} negatives, max_len {})",
            o.distill_scale, trainer.step(), init.source, rc.data.display(), o.negatives, o.max_len
        )
    } else {
        format!(
            "ponder cross-encoder: {} steps from {} on {} ({:?} loss, {} negatives, max_len {})",
            trainer.step(), init.source, rc.data.display(), o.loss, o.negatives, o.max_len
        )
    };
    crate::model::format::write_file(&weights, rc.precision, &provenance, &rc.out)?;
    log(&format!("wrote {} ({:?}) after {} steps, {:.1} min of training", rc.out.display(), rc.precision, trainer.step(), trainer.seconds() / 60.0));
    Ok(TrainReport { steps_done: trainer.step(), seconds: trainer.seconds(), final_loss: trainer.loss_ema(), validation })
}
