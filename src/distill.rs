//! Distilling a smaller bi-encoder from a bigger one with unlabeled text only
//! (`ponder train distill`). Owns the student's initialisation (the teacher's embeddings and a
//! subset of its layers), reading unlabeled text (a JSONL file of `{"title", "text"}` objects
//! or any folder ponder can index, cut into passages), pseudo-queries cut from the passages,
//! the loss (the student's normalised vectors against the teacher's, plus a KL divergence
//! between their in-batch query–passage similarity distributions), a validation on held-back
//! passages, and the run loop with checkpoints and a time limit.
//!
//! Optimisation, checkpoints and resumption are `train`'s [`Trainer`]; what step `s` sees is a
//! function of the seed and `s`, so a resumed run continues exactly where its checkpoint left
//! off.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};
use serde::Serialize;

use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::model::config::{Architecture, Head};
use crate::model::{ModelWeights, Precision};
use crate::train::{TrainOptions, Trainer};

/// What a distillation run trains and how.
#[derive(Clone, Debug, Serialize)]
pub struct DistillOptions {
    /// Teacher layers the student starts from, in order (the student has this many).
    pub layers: Vec<usize>,
    /// Passages per optimiser step (each with one pseudo-query); the other passages of the
    /// batch are the in-batch negatives of the similarity loss.
    pub batch: usize,
    /// Student token window during training (passages are cut to `max_words` words first,
    /// so that teacher and student see the same text).
    pub max_len: usize,
    /// Longest passage window in words.
    pub max_words: usize,
    pub steps: usize,
    pub lr: f64,
    pub warmup: f64,
    pub weight_decay: f64,
    /// Also train the word-embedding table.
    pub train_word_embeddings: bool,
    /// Weight of the squared distance between student and teacher vectors (queries and
    /// passages).
    pub mse_weight: f64,
    /// Weight of the KL divergence between the teacher's and the student's in-batch
    /// query→passage (and passage→query) similarity distributions.
    pub kl_weight: f64,
    /// Cosine similarities are multiplied by this before the softmax.
    pub scale: f64,
    pub seed: u64,
}

impl Default for DistillOptions {
    fn default() -> Self {
        DistillOptions {
            layers: vec![0, 3, 5],
            batch: 16,
            max_len: 128,
            max_words: 80,
            steps: 1000,
            lr: 1e-4,
            warmup: 0.05,
            weight_decay: 0.01,
            train_word_embeddings: false,
            mse_weight: 1.0,
            kl_weight: 1.0,
            scale: 20.0,
            seed: 17,
        }
    }
}

/// Reads `--layers`: a count (`3`: that many teacher layers, spread as [`spread_layers`]
/// picks them) or a comma-separated list of teacher layer indices (`0,2,4`).
pub fn parse_layers(spec: &str, teacher_layers: usize) -> Result<Vec<usize>> {
    let bad = |why: &str| Error::InvalidInput(format!("--layers {spec:?}: {why}"));
    let parts: Vec<&str> = spec.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    let nums: Vec<usize> =
        parts.iter().map(|p| p.parse::<usize>().map_err(|_| bad("expected a count or a list like 0,2,4"))).collect::<Result<_>>()?;
    let layers = match nums.as_slice() {
        [] => return Err(bad("empty")),
        [n] if !spec.contains(',') => spread_layers(teacher_layers, *n).ok_or_else(|| bad("count must be between 1 and the teacher's layers"))?,
        list => list.to_vec(),
    };
    if layers.iter().any(|&l| l >= teacher_layers) {
        return Err(bad(&format!("the teacher has {teacher_layers} layers (0..{})", teacher_layers.saturating_sub(1))));
    }
    if layers.windows(2).any(|w| w[0] >= w[1]) {
        return Err(bad("layers must be distinct and increasing"));
    }
    Ok(layers)
}

/// `n` of `total` layers, evenly spaced from the first to the last (6 → 3: layers 0, 3, 5;
/// one layer: the first), or `None` when `n` is 0 or more than `total`. Of the 3-of-6 choices
/// measured on all-MiniLM-L6-v2 before training (cosine of the student's vectors to the
/// teacher's on held-back SQuAD passages), 0,3,5 was closest (0.63; 0,2,5 0.57; 3,4,5 0.59;
/// 1,3,5 0.50; 0,2,4 0.28; 0,1,2 0.23).
pub fn spread_layers(total: usize, n: usize) -> Option<Vec<usize>> {
    if n == 0 || n > total {
        return None;
    }
    if n == 1 {
        return Some(vec![0]);
    }
    // Round half up of i * (total - 1) / (n - 1).
    Some((0..n).map(|i| (2 * i * (total - 1) + (n - 1)) / (2 * (n - 1))).collect())
}

/// The student before training: the teacher's configuration, tokenizer, embeddings and head,
/// with teacher layer `layers[i]` as layer `i`.
pub fn student_init(teacher: &ModelWeights, layers: &[usize]) -> Result<ModelWeights> {
    let cfg = &teacher.config;
    if cfg.architecture != Architecture::Bert {
        return Err(Error::Unsupported(format!("distillation trains BERT-layout students; the teacher is {:?}", cfg.architecture)));
    }
    if cfg.head != Head::Embedding {
        return Err(Error::InvalidInput("the teacher must be an embedding model (a bi-encoder), not a cross-encoder".into()));
    }
    if layers.is_empty() || layers.iter().any(|&l| l >= cfg.num_layers) || layers.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Error::InvalidInput(format!(
            "student layers {layers:?} must be distinct, increasing teacher layers below {}",
            cfg.num_layers
        )));
    }
    let mut w = teacher.clone();
    w.tensors.retain(|name, _| !name.starts_with("layer."));
    for (i, &src) in layers.iter().enumerate() {
        let prefix = format!("layer.{src}.");
        for (name, t) in &teacher.tensors {
            if let Some(rest) = name.strip_prefix(&prefix) {
                w.tensors.insert(format!("layer.{i}.{rest}"), t.clone());
            }
        }
    }
    w.config.num_layers = layers.len();
    w.source = format!("student of {} (teacher layers {layers:?})", teacher.source);
    Ok(w)
}

/// One piece of unlabeled text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Passage {
    pub title: Option<String>,
    pub text: String,
}

/// Passages of `path`: a `.jsonl` file with one object per line (`text` or `contents`, and an
/// optional `title`; a BEIR `corpus.jsonl` works as is), or any file or folder ponder can
/// index, cut at blank lines into passages of 40 words or more (Markdown headings become
/// the titles of the passages under them).
pub fn load_passages(path: &Path) -> Result<Vec<Passage>> {
    let mut out = Vec::new();
    if path.is_file() && path.extension().is_some_and(|e| e == "jsonl") {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| Error::InvalidInput(format!("{}:{}: {e}", path.display(), n + 1)))?;
            let body = v.get("text").or_else(|| v.get("contents")).and_then(|t| t.as_str()).ok_or_else(|| {
                Error::InvalidInput(format!("{}:{}: no \"text\" string", path.display(), n + 1))
            })?;
            let title = v.get("title").and_then(|t| t.as_str()).map(str::trim).filter(|t| !t.is_empty()).map(String::from);
            if body.split_whitespace().next().is_some() {
                out.push(Passage { title, text: body.trim().to_string() });
            }
        }
    } else {
        if !path.exists() {
            return Err(Error::MissingFile(path.to_path_buf()));
        }
        let files = crate::ingest::walk(&[path.to_path_buf()], &crate::ingest::WalkOptions::default(), &mut |_| {});
        for file in files {
            // Unreadable files (binary, a scan without text) are skipped like the indexer does.
            let Ok(doc) = crate::ingest::read_file(&file, 50 << 20) else { continue };
            let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned());
            split_paragraphs(&doc.text, stem, &mut out);
        }
    }
    if out.is_empty() {
        return Err(Error::InvalidInput(format!("{}: no text to distil on", path.display())));
    }
    Ok(out)
}

/// Cuts `text` at blank lines into passages of at least 40 words (short paragraphs are joined,
/// a last piece under 8 words is dropped); `#` lines set the title.
fn split_paragraphs(text: &str, default_title: Option<String>, out: &mut Vec<Passage>) {
    let mut title = default_title;
    let mut words: Vec<&str> = Vec::new();
    let flush = |words: &mut Vec<&str>, title: &Option<String>, out: &mut Vec<Passage>, min: usize| {
        if words.len() >= min {
            out.push(Passage { title: title.clone(), text: words.join(" ") });
            words.clear();
        }
    };
    for line in text.lines() {
        let t = line.trim();
        if let Some(h) = t.strip_prefix('#') {
            flush(&mut words, &title, out, 8);
            words.clear();
            let h = h.trim_start_matches('#').trim();
            if !h.is_empty() {
                title = Some(h.to_string());
            }
        } else if t.is_empty() {
            flush(&mut words, &title, out, 40);
        } else {
            words.extend(t.split_whitespace());
        }
    }
    flush(&mut words, &title, out, 8);
}

/// splitmix64 over the parts: the sampling stream of one step and slot.
struct Rng(u64);

impl Rng {
    fn new(parts: &[u64]) -> Self {
        Rng(parts.iter().fold(0xd157_111, |h, &p| Self::mix(h ^ p)))
    }
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn next(&mut self) -> u64 {
        self.0 = Self::mix(self.0);
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A (pseudo-query, passage) pair cut from `p` with `rng`: the passage is a window of at most
/// `max_words` words (with the title before it); the query is one of the window's sentences
/// (5 to 30 words) or a span of 6 to 20 of its words, sometimes with the title, sometimes
/// lowercased.
fn make_pair(p: &Passage, max_words: usize, rng: &mut Rng) -> (String, String) {
    let all: Vec<&str> = p.text.split_whitespace().collect();
    let len = all.len().min(max_words.max(1));
    let start = if all.len() > len { rng.below(all.len() - len + 1) } else { 0 };
    let window = &all[start..start + len];
    let passage = match &p.title {
        Some(t) => format!("{t}\n\n{}", window.join(" ")),
        None => window.join(" "),
    };
    // Sentences: runs of words ending in . ? or !
    let mut sentences = Vec::new();
    let mut s0 = 0;
    for (i, w) in window.iter().enumerate() {
        if w.ends_with(['.', '?', '!']) || i + 1 == window.len() {
            if (5..=30).contains(&(i + 1 - s0)) {
                sentences.push((s0, i + 1));
            }
            s0 = i + 1;
        }
    }
    let (a, b) = if !sentences.is_empty() && rng.unit() < 0.4 {
        sentences[rng.below(sentences.len())]
    } else {
        let l = (6 + rng.below(15)).min(window.len());
        let a = rng.below(window.len() - l + 1);
        (a, a + l)
    };
    let mut query = window[a..b].join(" ");
    query = query.trim_end_matches(['.', ',', ';', ':']).to_string();
    if rng.unit() < 0.25 {
        query = query.to_lowercase();
    }
    if let Some(t) = &p.title {
        if rng.unit() < 0.3 {
            query = format!("{t} {query}");
        }
    }
    (query, passage)
}

/// Which passages train and which validate: every 64th (up to `val_max`) is held back. Under
/// 64 passages nothing can be spared: all train, and the first `val_max` also validate (the
/// validation then measures fit, not generalisation).
fn split_ids(n: usize, val_max: usize) -> (Vec<usize>, Vec<usize>) {
    if n < 64 {
        return ((0..n).collect(), (0..n.min(val_max)).collect());
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for i in 0..n {
        if i % 64 == 63 && val.len() < val_max {
            val.push(i);
        } else {
            train.push(i);
        }
    }
    (train, val)
}

/// The pairs of step `step`: a fresh permutation of the training passages per epoch, and a
/// window and pseudo-query per slot drawn from (seed, step, slot).
fn batch_at(passages: &[Passage], train: &[usize], opts: &DistillOptions, step: usize) -> Vec<(String, String)> {
    let n = train.len();
    let b = opts.batch.max(1);
    let epoch_len = n.div_ceil(b).max(1);
    let epoch = step / epoch_len;
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = Rng::new(&[opts.seed, epoch as u64, 1]);
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let start = (step % epoch_len) * b;
    (0..b.min(n))
        .map(|k| {
            let mut rng = Rng::new(&[opts.seed, step as u64, k as u64, 2]);
            make_pair(&passages[train[order[(start + k) % n]]], opts.max_words, &mut rng)
        })
        .collect()
}

/// Row-wise softmax of `scale * a·bᵀ` on the host (`a`, `b` row-major `[n, h]`), the
/// teacher's target distribution; `transpose` gives the column-wise one, as rows.
fn teacher_probs(a: &[Vec<f32>], b: &[Vec<f32>], scale: f32, transpose: bool) -> Vec<f32> {
    let n = a.len();
    let mut out = Vec::with_capacity(n * n);
    for i in 0..n {
        let row: Vec<f32> = (0..n)
            .map(|j| {
                let (x, y) = if transpose { (&a[j], &b[i]) } else { (&a[i], &b[j]) };
                scale * x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>()
            })
            .collect();
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = row.iter().map(|v| (v - max).exp()).collect();
        let sum: f32 = e.iter().sum();
        out.extend(e.iter().map(|v| v / sum));
    }
    out
}

/// Agreement of a student with its teacher on held-back passages.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct DistillValidation {
    /// Mean cosine between student and teacher vectors of the passages.
    pub passage_cosine: f64,
    /// Mean cosine between student and teacher vectors of the pseudo-queries.
    pub query_cosine: f64,
    /// MRR of each pseudo-query's own passage among all held-back passages, student.
    pub student_mrr: f64,
    /// The same for the teacher (the ceiling the student is pulled toward).
    pub teacher_mrr: f64,
}

struct ValidationSet {
    queries: Vec<String>,
    passages: Vec<String>,
    tq: Vec<Vec<f32>>,
    tp: Vec<Vec<f32>>,
}

fn mrr(q: &[Vec<f32>], p: &[Vec<f32>]) -> f64 {
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let mut total = 0.0;
    for (i, qv) in q.iter().enumerate() {
        let own = dot(qv, &p[i]);
        let rank = 1 + p.iter().enumerate().filter(|(j, pv)| *j != i && dot(qv, pv) > own).count();
        total += 1.0 / rank as f64;
    }
    total / q.len().max(1) as f64
}

impl ValidationSet {
    fn new(passages: &[Passage], ids: &[usize], opts: &DistillOptions, teacher: &Embedder) -> Result<Self> {
        let pairs: Vec<(String, String)> = ids
            .iter()
            .map(|&i| make_pair(&passages[i], opts.max_words, &mut Rng::new(&[opts.seed, i as u64, 3])))
            .collect();
        let (queries, passages): (Vec<String>, Vec<String>) = pairs.into_iter().unzip();
        let tq = teacher.embed(&queries.iter().map(String::as_str).collect::<Vec<_>>())?;
        let tp = teacher.embed(&passages.iter().map(String::as_str).collect::<Vec<_>>())?;
        Ok(ValidationSet { queries, passages, tq, tp })
    }

    fn run(&self, student: &Embedder) -> Result<DistillValidation> {
        let sq = student.embed(&self.queries.iter().map(String::as_str).collect::<Vec<_>>())?;
        let sp = student.embed(&self.passages.iter().map(String::as_str).collect::<Vec<_>>())?;
        // Vectors of different widths have no cosine: NaN (null in the JSON report).
        let mean_cos = |a: &[Vec<f32>], b: &[Vec<f32>]| {
            if a.first().map(Vec::len) != b.first().map(Vec::len) {
                return f64::NAN;
            }
            a.iter().zip(b).map(|(x, y)| f64::from(crate::embed::cosine(x, y))).sum::<f64>() / a.len().max(1) as f64
        };
        Ok(DistillValidation {
            passage_cosine: mean_cos(&sp, &self.tp),
            query_cosine: mean_cos(&sq, &self.tq),
            student_mrr: mrr(&sq, &sp),
            teacher_mrr: mrr(&self.tq, &self.tp),
        })
    }
}

/// Files, schedule and validation of a distillation run.
#[derive(Clone, Debug)]
pub struct DistillRun {
    /// Unlabeled text: a `.jsonl` file or a folder (see [`load_passages`]).
    pub data: PathBuf,
    /// The student model file to write.
    pub out: PathBuf,
    pub precision: Precision,
    pub checkpoint: PathBuf,
    pub checkpoint_every: usize,
    /// Validate every this many steps (0: at the start and the end only).
    pub eval_every: usize,
    /// Held-back passages for validation (0: none).
    pub val_passages: usize,
    pub progress_every: usize,
    /// Stop (with a checkpoint) once this session has trained this long.
    pub max_minutes: Option<f64>,
}

/// What a finished (or stopped) run reports.
#[derive(Debug, Clone, Serialize)]
pub struct DistillReport {
    pub layers: Vec<usize>,
    pub steps_done: usize,
    pub seconds: f64,
    /// Smoothed loss at the end (exponential moving average).
    pub final_loss: f64,
    /// (step, validation), in order.
    pub validation: Vec<(usize, DistillValidation)>,
    pub passages: usize,
}

/// Distils (or resumes distilling) a student started from `student_from` (the teacher itself, or another BERT-layout model) to `opts.steps` on `device`
/// (burn: flex on the CPU or wgpu), with `teacher` computing the targets, and writes it to
/// `rc.out`. Progress lines go to `log`.
pub fn run(
    student_from: &ModelWeights,
    teacher: &Embedder,
    opts: &DistillOptions,
    device: Device,
    rc: &DistillRun,
    log: &dyn Fn(&str),
) -> Result<DistillReport> {
    if !(8..=512).contains(&opts.max_len) || opts.max_words == 0 || opts.batch == 0 {
        return Err(Error::InvalidInput("distillation needs --max-len in 8..=512, --max-words > 0 and --batch > 0".into()));
    }
    if !(opts.mse_weight >= 0.0 && opts.kl_weight >= 0.0 && opts.mse_weight + opts.kl_weight > 0.0) {
        return Err(Error::InvalidInput("loss weights must be >= 0 and not both 0".into()));
    }
    let init = student_init(student_from, &opts.layers)?;
    // A teacher of another width cannot be matched vector for vector: the student then learns
    // its in-batch similarity distributions alone.
    let mut opts = opts.clone();
    let opts = &mut opts;
    if teacher.dim() != init.config.hidden_size {
        if opts.kl_weight <= 0.0 {
            return Err(Error::InvalidInput(format!(
                "the teacher's vectors have {} dimensions and the student's {}: only the KL term (--kl-weight > 0) can train it",
                teacher.dim(),
                init.config.hidden_size
            )));
        }
        if opts.mse_weight > 0.0 {
            log(&format!(
                "the teacher's vectors have {} dimensions and the student's {}: training on the KL term alone",
                teacher.dim(),
                init.config.hidden_size
            ));
            opts.mse_weight = 0.0;
        }
    }
    let opts = &*opts;
    let passages = load_passages(&rc.data)?;
    let (train_ids, val_ids) = split_ids(passages.len(), rc.val_passages);
    log(&format!(
        "distilling {} layers {:?} of {} ({} layers) from {} passages ({} held back for validation)",
        opts.layers.len(),
        opts.layers,
        student_from.source,
        student_from.config.num_layers,
        train_ids.len(),
        val_ids.len()
    ));
    let val = if val_ids.len() >= 2 { Some(ValidationSet::new(&passages, &val_ids, opts, teacher)?) } else { None };
    let topts = TrainOptions {
        queries_per_step: opts.batch,
        negatives: 0,
        max_len: opts.max_len,
        steps: opts.steps,
        lr: opts.lr,
        warmup: opts.warmup,
        weight_decay: opts.weight_decay,
        train_word_embeddings: opts.train_word_embeddings,
        seed: opts.seed,
        distill: true,
        distill_scale: opts.scale,
        ..Default::default()
    };
    // Settings the trainer does not know: a checkpoint made under others is refused.
    let tag = format!("distill mse={} kl={} words={}", opts.mse_weight, opts.kl_weight, opts.max_words);
    let mut trainer = Trainer::new_tagged(&init, topts, device, rc.checkpoint.clone(), &tag)?;
    let total = opts.steps;
    if trainer.step() > 0 {
        log(&format!("resumed from {} at step {}", rc.checkpoint.display(), trainer.step()));
    }
    let mut validation = Vec::new();
    let validate = |trainer: &Trainer, validation: &mut Vec<(usize, DistillValidation)>| -> Result<()> {
        if let Some(val) = &val {
            let t0 = Instant::now();
            let v = val.run(&trainer.native(Precision::F32)?)?;
            log(&format!(
                "validation at step {}: pseudo-query MRR {:.4} (teacher {:.4}), cosine to teacher: passages {:.4}, queries {:.4} ({:.0}s)",
                trainer.step(),
                v.student_mrr,
                v.teacher_mrr,
                v.passage_cosine,
                v.query_cosine,
                t0.elapsed().as_secs_f64()
            ));
            validation.push((trainer.step(), v));
        }
        Ok(())
    };
    if trainer.step() == 0 {
        validate(&trainer, &mut validation)?;
    }
    let schedule = crate::train::Schedule {
        total,
        progress_every: rc.progress_every,
        checkpoint_every: rc.checkpoint_every,
        eval_every: rc.eval_every,
        max_minutes: rc.max_minutes,
    };
    let stopped = crate::train::drive(
        &mut trainer,
        &schedule,
        &mut |trainer: &mut Trainer| distill_step(trainer, teacher, &passages, &train_ids, opts),
        &mut |trainer: &Trainer| validate(trainer, &mut validation),
        &|_| String::new(),
        log,
    )?;
    if !stopped && trainer.step() > 0 {
        validate(&trainer, &mut validation)?;
    }
    let mut weights = trainer.weights();
    let provenance = format!(
        "ponder student distilled by `ponder train distill`, started from {} (layers {:?}): {} steps of {} passages + pseudo-queries from {}, mse {} + kl {} (scale {}), max_len {}",
        student_from.source,
        opts.layers,
        trainer.step(),
        opts.batch,
        rc.data.display(),
        opts.mse_weight,
        opts.kl_weight,
        opts.scale,
        opts.max_len
    );
    weights.source = provenance.clone();
    crate::model::format::write_file(&weights, rc.precision, &provenance, &rc.out)?;
    log(&format!(
        "wrote {} ({:?}, {} layers) after {} steps, {:.1} min of training",
        rc.out.display(),
        rc.precision,
        weights.config.num_layers,
        trainer.step(),
        trainer.seconds() / 60.0
    ));
    Ok(DistillReport {
        layers: opts.layers.clone(),
        steps_done: trainer.step(),
        seconds: trainer.seconds(),
        final_loss: trainer.loss_ema(),
        validation,
        passages: passages.len(),
    })
}

/// One optimiser step: the teacher embeds the step's pseudo-queries and passages, the student
/// is pulled toward those vectors (squared distance) and toward the teacher's in-batch
/// similarity distributions (KL, both directions).
pub fn distill_step(
    trainer: &mut Trainer,
    teacher: &Embedder,
    passages: &[Passage],
    train_ids: &[usize],
    opts: &DistillOptions,
) -> Result<f64> {
    let pairs = batch_at(passages, train_ids, opts, trainer.step());
    let queries: Vec<&str> = pairs.iter().map(|(q, _)| q.as_str()).collect();
    let docs: Vec<&str> = pairs.iter().map(|(_, p)| p.as_str()).collect();
    let tq = teacher.embed(&queries)?;
    let tp = teacher.embed(&docs)?;
    let b = pairs.len();
    let h = tq.first().map_or(0, Vec::len);
    let scale = opts.scale as f32;
    // Teacher distributions and their entropy term, so the loss is a true KL (>= 0).
    let rows = teacher_probs(&tq, &tp, scale, false);
    let cols = teacher_probs(&tq, &tp, scale, true);
    let neg_entropy = |p: &[f32]| p.iter().filter(|&&x| x > 0.0).map(|&x| f64::from(x) * f64::from(x).ln()).sum::<f64>() / b as f64;
    let (ent_rows, ent_cols) = (neg_entropy(&rows), neg_entropy(&cols));
    let (mse_w, kl_w) = (opts.mse_weight, opts.kl_weight);
    trainer.custom_step(|model, tok| {
        if mse_w > 0.0 && model.config().hidden_size != h {
            return Err(Error::InvalidInput(format!(
                "teacher vectors have {h} dimensions, the student {}",
                model.config().hidden_size
            )));
        }
        let sq = model.embed_tensor(&tok.encode(&queries)?);
        let sp = model.embed_tensor(&tok.encode(&docs)?);
        let dev = sq.device();
        let flat = |v: &[Vec<f32>]| Tensor::<2>::from_data(TensorData::new(v.concat(), [b, h]), &dev);
        let mut loss = Tensor::<1>::zeros([1], &dev);
        if mse_w > 0.0 {
            let (tq, tp) = (flat(&tq), flat(&tp));
            let d = (sq.clone() - tq).powi_scalar(2).sum() + (sp.clone() - tp).powi_scalar(2).sum();
            loss = loss + d.mul_scalar(mse_w / (2 * b) as f64);
        }
        if kl_w > 0.0 && b > 1 {
            let sims = sq.matmul(sp.transpose()).mul_scalar(opts.scale);
            let pr = Tensor::<2>::from_data(TensorData::new(rows.clone(), [b, b]), &dev);
            let pc = Tensor::<2>::from_data(TensorData::new(cols.clone(), [b, b]), &dev);
            // KL(p || q) = sum p log p - sum p log q, per row, averaged.
            let ce_rows = (pr * log_softmax(sims.clone(), 1)).sum().neg().div_scalar(b as f64);
            let ce_cols = (pc * log_softmax(sims.transpose(), 1)).sum().neg().div_scalar(b as f64);
            let kl = (ce_rows + ce_cols).add_scalar(ent_rows + ent_cols).mul_scalar(0.5);
            loss = loss + kl.mul_scalar(kl_w);
        }
        Ok(loss)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_parse_as_a_count_or_a_list() {
        assert_eq!(parse_layers("3", 6).unwrap(), vec![0, 3, 5]);
        assert_eq!(parse_layers("3", 4).unwrap(), vec![0, 2, 3]);
        assert_eq!(parse_layers("6", 6).unwrap(), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(parse_layers("1", 6).unwrap(), vec![0]);
        assert_eq!(parse_layers("1,3,5", 6).unwrap(), vec![1, 3, 5]);
        assert_eq!(parse_layers("2", 6).unwrap(), vec![0, 5]);
        assert!(parse_layers("7", 6).is_err());
        assert!(parse_layers("0,6", 6).is_err());
        assert!(parse_layers("3,1", 6).is_err());
        assert!(parse_layers("x", 6).is_err());
        assert!(parse_layers("", 6).is_err());
    }

    #[test]
    fn pairs_are_cut_from_their_passage_and_repeat_per_seed() {
        let p = Passage {
            title: Some("Bees".into()),
            text: "Honey bees dance to tell the hive where flowers are. A queen lays up to two thousand eggs a day in spring. Workers live for about six weeks in summer.".into(),
        };
        for s in 0..50u64 {
            let (q, d) = make_pair(&p, 20, &mut Rng::new(&[s]));
            assert_eq!((q.clone(), d.clone()), make_pair(&p, 20, &mut Rng::new(&[s])));
            assert!(d.starts_with("Bees\n\n"));
            assert!(d.split_whitespace().count() <= 21, "{d}");
            let body = q.strip_prefix("Bees ").unwrap_or(&q).to_lowercase();
            assert!(p.text.to_lowercase().contains(&body), "{q}");
        }
    }

    #[test]
    fn paragraphs_join_until_long_enough_and_take_headings() {
        let mut out = Vec::new();
        let long = "word ".repeat(45);
        split_paragraphs(&format!("# Intro\n\nshort one\n\n{long}\n\n## Next\n\nfive more words here now ok yes sir\n"), None, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].title.as_deref(), Some("Intro"));
        assert!(out[0].text.starts_with("short one word"));
        assert_eq!(out[1].title.as_deref(), Some("Next"));
    }
}
