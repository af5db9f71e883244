//! Embedding: text → tokens → encoder → pooled, normalised vectors, on the chosen device.
//! Owns batching (length-sorted, token-budgeted) and the choice of runtime; knows nothing
//! about files or indexes.

pub mod attention;
pub mod burn_archs;
pub mod burn_bert;
pub mod colbert;
pub mod decoder;
pub mod kernels;
pub mod modernbert;
pub mod native;
pub mod tokenize;
pub mod wgsl;

use crate::device::{self, DeviceChoice, Resolved};
use crate::error::{Error, Result};
use crate::model::{ModelConfig, ModelWeights, Precision};
use colbert::{ColbertHead, TokenMatrix};
use tokenize::{Encoded, TextTokenizer};

enum Runtime {
    Native(native::NativeBert),
    Burn(burn_bert::BurnBert),
    /// int8 on a GPU: ponder's WGSL kernels (`shaders/`).
    Wgsl(wgsl::WgslBert),
    /// ModernBERT on the native CPU runtime.
    ModernBert(modernbert::NativeModernBert),
    /// A decoder embedder on the native CPU runtime.
    Decoder(decoder::NativeDecoder),
    /// ModernBERT on burn (wgpu, `flex`), f32.
    BurnModernBert(burn_archs::BurnModernBert),
    /// A decoder embedder on burn (wgpu, `flex`), f32.
    BurnDecoder(burn_archs::BurnDecoder),
}

/// A loaded encoder ready to embed (or, for a cross-encoder, to score) text.
pub struct Embedder {
    tokenizer: TextTokenizer,
    runtime: Runtime,
    config: ModelConfig,
    /// The late-interaction head, for a ColBERT model.
    colbert: Option<ColbertHead>,
    device: String,
    precision: Precision,
    /// At most this many inputs per forward pass.
    pub max_batch: usize,
    /// At most this many tokens per forward pass.
    pub max_batch_tokens: usize,
    /// At most this many bytes for one layer's attention scores (`batch × heads × T² × 4`).
    /// burn materialises that tensor whole, and wgpu refuses a storage buffer past its binding
    /// limit (128 MiB by default): 16 pairs of 512 tokens need 201 MiB.
    pub max_attention_bytes: usize,
}

impl Embedder {
    /// Builds an embedder. `precision` is the compute precision: `Int8` runs int8 Linear
    /// layers on the native CPU runtime, or on a wgpu GPU through the WGSL kernels; burn
    /// (f32 on a GPU, and `flex`) always computes in f32.
    pub fn new(weights: &ModelWeights, precision: Precision, choice: DeviceChoice) -> Result<Self> {
        weights.validate()?;
        let config = weights.config.clone();
        let tokenizer = TextTokenizer::from_json(&weights.tokenizer_json, config.max_seq_len)?;
        let resolved = device::resolve(choice)?;
        let device = resolved.describe();
        use crate::model::config::Architecture;
        let runtime = match (config.architecture, resolved) {
            // Late interaction needs every token's hidden state: the native runtime's or
            // burn's (the WGSL kernels return pooled vectors only).
            (Architecture::Bert, Resolved::Burn { device, .. }) if config.colbert.is_some() => {
                Runtime::Burn(burn_bert::BurnBert::new(weights, device)?)
            }
            // ModernBERT and decoders on burn's devices in f32.
            (Architecture::ModernBert, Resolved::Burn { device, .. }) => {
                Runtime::BurnModernBert(burn_archs::BurnModernBert::new(weights, device)?)
            }
            (Architecture::ModernBert, _) => Runtime::ModernBert(modernbert::NativeModernBert::new(weights, precision)?),
            (Architecture::Decoder, Resolved::Burn { device, .. }) => Runtime::BurnDecoder(burn_archs::BurnDecoder::new(weights, device)?),
            (Architecture::Decoder, Resolved::NativeCpu) => Runtime::Decoder(decoder::NativeDecoder::new(weights, precision)?),
            (Architecture::Bert, Resolved::NativeCpu) => Runtime::Native(native::NativeBert::new(weights, precision)?),
            // Only when a GPU is asked for by name: `auto` keeps burn's f32 kernels on a GPU
            // until the WGSL ones have been timed on real hardware (only lavapipe so far).
            (Architecture::Bert, Resolved::Burn { .. }) if precision == Precision::Int8 && choice == DeviceChoice::Gpu => {
                Runtime::Wgsl(wgsl::WgslBert::new(weights)?)
            }
            (Architecture::Bert, Resolved::Burn { device, .. }) => Runtime::Burn(burn_bert::BurnBert::new(weights, device)?),
        };
        let precision = match runtime {
            Runtime::Native(_) | Runtime::ModernBert(_) | Runtime::Decoder(_) if precision == Precision::Int8 => {
                Precision::Int8
            }
            Runtime::Wgsl(_) => Precision::Int8,
            _ => Precision::F32,
        };
        let max_attention_bytes = match runtime {
            Runtime::Burn(_) | Runtime::BurnModernBert(_) | Runtime::BurnDecoder(_) => 64 << 20,
            Runtime::Native(_) | Runtime::ModernBert(_) | Runtime::Decoder(_) => usize::MAX, // one sequence and head at a time
            Runtime::Wgsl(_) => usize::MAX,   // scores streamed, never stored
        };
        let colbert = match &config.colbert {
            Some(p) => Some(ColbertHead::new(weights, p, precision)?),
            None => None,
        };
        Ok(Embedder { tokenizer, runtime, config, colbert, device, precision, max_batch: 32, max_batch_tokens: 16384, max_attention_bytes })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Width of the vectors `embed` returns (a late-interaction model's projection width).
    pub fn dim(&self) -> usize {
        self.config.colbert.as_ref().map_or(self.config.hidden_size, |c| c.dim)
    }

    /// The most text tokens a chunk can hold and still be embedded whole: the tokenizer's limit
    /// (a late-interaction model's `document_length`, less its marker) less the special tokens
    /// it adds. A new index chunks to at most this.
    pub fn chunk_capacity(&self) -> usize {
        let tok = self.colbert.as_ref().map_or(&self.tokenizer, |h| h.document_tokenizer());
        tok.max_len().saturating_sub(tok.added_special_tokens()).max(1)
    }

    /// Whether the model has a late-interaction (ColBERT) head.
    pub fn is_late_interaction(&self) -> bool {
        self.colbert.is_some()
    }

    /// Late interaction: the token vectors of each text (queries with `is_query`), in input
    /// order, as PyLate's `encode` returns them (projected, L2-normalised per token; queries
    /// expanded, documents without skiplist tokens).
    pub fn embed_tokens(&self, texts: &[&str], is_query: bool) -> Result<Vec<TokenMatrix>> {
        let Some(head) = &self.colbert else {
            return Err(Error::Unsupported("this model has no late-interaction (ColBERT) head".into()));
        };
        let masked = head.masks_expansion(is_query);
        if !matches!(self.runtime, Runtime::Native(_) | Runtime::ModernBert(_) | Runtime::Burn(_) | Runtime::BurnModernBert(_)) {
            return Err(Error::Unsupported(format!("late interaction on {} (needs a BERT or ModernBERT backbone)", self.device)));
        }
        let enc = head.encode(texts, is_query)?;
        Ok(self.batched(&enc, |batch| {
            let keys: Vec<usize> = batch.iter().map(|e| head.key_len(e, is_query)).collect();
            let keys = masked.then_some(&keys[..]);
            let hidden = match &self.runtime {
                Runtime::Native(m) => m.hidden_states(batch, keys),
                Runtime::ModernBert(m) => m.hidden_states(batch, keys),
                Runtime::Burn(m) => burn_bert::PaddedEncoder::hidden_states(m, batch, keys),
                Runtime::BurnModernBert(m) => burn_bert::PaddedEncoder::hidden_states(m, batch, keys),
                _ => return vec![TokenMatrix::default(); batch.len()],
            };
            head.finish(&hidden, batch, is_query)
        }))
    }

    /// One vector per query: for a late-interaction model the normalised mean of its query
    /// token vectors (documents get the mean of theirs from `embed`), else `embed`.
    pub fn embed_queries(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if self.colbert.is_none() {
            return self.embed(texts);
        }
        Ok(self.embed_tokens(texts, true)?.iter().map(TokenMatrix::mean_normalized).collect())
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// `int8` or `f32`: the compute precision actually used.
    pub fn precision_name(&self) -> &'static str {
        match self.precision {
            Precision::Int8 => "int8",
            Precision::F16 => "f16",
            Precision::F32 => "f32",
        }
    }

    /// Human-readable description of where and how the model runs.
    pub fn describe(&self) -> String {
        format!("{} compute on {}", match self.precision {
            Precision::Int8 => "int8",
            Precision::F16 => "f16",
            Precision::F32 => "f32",
        }, self.device)
    }

    /// Whether this runs on ponder's native CPU runtime.
    pub fn is_native_cpu(&self) -> bool {
        matches!(self.runtime, Runtime::Native(_) | Runtime::ModernBert(_) | Runtime::Decoder(_))
    }

    /// Embeds texts; the result is in input order.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if self.colbert.is_some() {
            // A late-interaction model's single vector: the mean of its document tokens.
            return Ok(self.embed_tokens(texts, false)?.iter().map(TokenMatrix::mean_normalized).collect());
        }
        let enc = self.tokenizer.encode(texts)?;
        Ok(self.embed_encoded(&enc))
    }

    /// Embeds pre-tokenized inputs; the result is in input order.
    pub fn embed_encoded(&self, enc: &[Encoded]) -> Vec<Vec<f32>> {
        self.batched(enc, |batch| match &self.runtime {
            Runtime::Native(m) => m.embed(batch),
            Runtime::Burn(m) => m.embed(batch),
            Runtime::Wgsl(m) => m.embed(batch),
            Runtime::ModernBert(m) => m.embed(batch),
            Runtime::Decoder(m) => m.embed(batch),
            Runtime::BurnModernBert(m) => m.embed(batch),
            Runtime::BurnDecoder(m) => m.embed(batch),
        })
    }

    /// Cross-encoder relevance logits for (query, passage) pairs, in input order.
    pub fn score_pairs(&self, pairs: &[(&str, &str)]) -> Result<Vec<f32>> {
        if self.config.head != crate::model::Head::Classifier {
            return Err(Error::Unsupported("this model is not a cross-encoder".into()));
        }
        let enc = self.tokenizer.encode_pairs(pairs)?;
        Ok(self.batched(&enc, |batch| match &self.runtime {
            Runtime::Native(m) => m.score(batch),
            Runtime::Burn(m) => m.score(batch),
            Runtime::Wgsl(m) => m.score(batch),
            // Only BERT cross-encoders are loaded (checked above by the head).
            Runtime::ModernBert(_) | Runtime::Decoder(_) | Runtime::BurnModernBert(_) | Runtime::BurnDecoder(_) => {
                vec![f32::NAN; batch.len()]
            }
        }))
    }

    /// Runs `f` over length-sorted batches and puts results back in input order.
    fn batched<T: Clone + Default>(&self, enc: &[Encoded], f: impl Fn(&[Encoded]) -> Vec<T>) -> Vec<T> {
        let mut order: Vec<usize> = (0..enc.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(enc[i].ids.len()));
        let mut out = vec![T::default(); enc.len()];
        let mut start = 0;
        while start < order.len() {
            let longest = enc[order[start]].ids.len().max(1);
            let scores = self.config.num_heads.max(1).saturating_mul(longest * longest * 4);
            let fit = (self.max_batch_tokens / longest)
                .min(self.max_attention_bytes / scores)
                .clamp(1, self.max_batch.max(1));
            let end = (start + fit).min(order.len());
            let batch: Vec<Encoded> = order[start..end].iter().map(|&i| enc[i].clone()).collect();
            for (res, &i) in f(&batch).into_iter().zip(&order[start..end]) {
                out[i] = res;
            }
            start = end;
        }
        out
    }
}

/// Cosine similarity of two vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}
