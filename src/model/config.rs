//! Model configuration: what ponder needs to know about an encoder, parsed once from a
//! Hugging Face directory (`config.json` plus the sentence-transformers files when present)
//! and stored inside ponder's model file. Nothing outside this file reads HF config keys.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

use crate::error::{Error, Result};

/// Model families. New variants are appended (the model file stores the variant index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Architecture {
    /// BERT-style encoder (absolute positions, post-LayerNorm, GELU FFN).
    Bert,
    /// ModernBERT encoder (rotary positions, alternating global/local attention, GeGLU,
    /// pre-LayerNorm without biases). Settings in `ModelConfig::modern_bert`.
    ModernBert,
    /// Decoder-only embedder (Qwen3/Llama family: RMSNorm, rotary positions, grouped-query
    /// causal attention, SwiGLU, last-token pooling). Settings in `ModelConfig::decoder`.
    Decoder,
}

/// Feed-forward activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// Exact GELU (erf), HF `gelu`.
    Gelu,
    /// Tanh approximation, HF `gelu_new` / `gelu_pytorch_tanh`.
    GeluTanh,
}

/// How token vectors become one text vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Pooling {
    /// Mean over non-padding tokens.
    Mean,
    /// The first ([CLS]) token.
    Cls,
    /// The last token (decoder embedders).
    LastToken,
}

/// What the model head produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Head {
    /// A bi-encoder: pooled (and optionally normalised) text vectors.
    Embedding,
    /// A cross-encoder: one relevance logit per (query, passage) pair.
    Classifier,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub head: Head,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f32,
    pub activation: Activation,
    pub pooling: Pooling,
    pub normalize: bool,
    /// Inputs are truncated to this many tokens (special tokens included).
    pub max_seq_len: usize,
    pub pad_token_id: u32,
    /// ModernBERT settings; `Some` exactly when `architecture` is `ModernBert`.
    pub modern_bert: Option<ModernBertParams>,
    /// Decoder settings; `Some` exactly when `architecture` is `Decoder`.
    pub decoder: Option<DecoderParams>,
    /// Late-interaction (ColBERT) head, when the model has one.
    pub colbert: Option<ColbertParams>,
}

/// ModernBERT's own settings (HF `ModernBertConfig`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct ModernBertParams {
    /// Rotary base of the global-attention layers (`global_rope_theta`).
    pub global_rope_theta: f32,
    /// Rotary base of the local (sliding-window) layers (`local_rope_theta`).
    pub local_rope_theta: f32,
    /// Total window of local attention in tokens (`local_attention`); a token sees
    /// `local_attention / 2` tokens on each side.
    pub local_attention: usize,
    /// Every n-th layer (starting with layer 0) attends globally (`global_attn_every_n_layers`).
    pub global_attn_every_n_layers: usize,
    /// LayerNorm epsilon (`norm_eps`).
    pub norm_eps: f32,
}

/// A decoder embedder's own settings (HF `Qwen3Config` / `LlamaConfig`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct DecoderParams {
    /// Key/value heads for grouped-query attention (`num_key_value_heads`).
    pub num_kv_heads: usize,
    /// Per-head width (`head_dim`; `hidden_size / num_attention_heads` when absent).
    pub head_dim: usize,
    /// Rotary base (`rope_theta`).
    pub rope_theta: f32,
    /// RMSNorm epsilon (`rms_norm_eps`).
    pub rms_norm_eps: f32,
    /// Qwen3 normalises queries and keys per head (`q_norm`, `k_norm`).
    pub qk_norm: bool,
    /// Token appended to every input before pooling (the EOS the model was trained to pool on).
    pub eos_token_id: Option<u32>,
    /// Template put around queries, with `{instruction}` and `{query}` (for example
    /// `Instruct: {instruction}\nQuery:{query}`); documents are embedded as they are.
    pub query_template: Option<String>,
}

/// A late-interaction (ColBERT / PyLate) head's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct ColbertParams {
    /// Output width of the token projection.
    pub dim: usize,
    /// Marker tokens put after [CLS] on queries and documents (PyLate `[Q] `, `[D] `).
    pub query_prefix: String,
    pub document_prefix: String,
    /// Queries are padded with the mask token to this length (`query_length`) when
    /// `attend_to_expansion_tokens`-style expansion is on.
    pub query_length: usize,
    pub document_length: usize,
    /// Pad queries with mask tokens (`do_query_expansion`).
    pub query_expansion: bool,
    /// Mask token id used for query expansion.
    pub mask_token_id: u32,
    /// Token ids dropped from document token vectors (punctuation skip-list).
    pub skiplist: Vec<u32>,
}

impl ModelConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.hidden_size == 0 || self.num_heads == 0 || self.hidden_size % self.num_heads != 0 {
            return bad(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_heads
            ));
        }
        if self.num_layers == 0 || self.intermediate_size == 0 || self.vocab_size == 0 {
            return bad("zero-sized layer count, intermediate size or vocabulary".into());
        }
        if self.max_seq_len < 2 || self.max_seq_len > self.max_position_embeddings {
            return bad(format!(
                "max_seq_len {} must be within 2..={} (max_position_embeddings)",
                self.max_seq_len, self.max_position_embeddings
            ));
        }
        Ok(())
    }

    /// Parses a Hugging Face model directory's configuration.
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let config = read_json(&dir.join("config.json"))?;
        let model_type = config.get("model_type").and_then(Value::as_str).unwrap_or("");
        let architecture = match model_type {
            "bert" => Architecture::Bert,
            other => return Err(Error::UnsupportedArchitecture(other.to_string())),
        };
        let archs: Vec<&str> = config
            .get("architectures")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let head = if archs.iter().any(|a| a.ends_with("ForSequenceClassification")) {
            Head::Classifier
        } else {
            Head::Embedding
        };
        let int = |key: &str| -> Result<usize> {
            config
                .get(key)
                .and_then(Value::as_u64)
                .map(|v| v as usize)
                .ok_or_else(|| Error::Config(format!("config.json lacks integer {key:?}")))
        };
        let activation = match config.get("hidden_act").and_then(Value::as_str).unwrap_or("gelu") {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            other => return Err(Error::Config(format!("unsupported hidden_act {other:?}"))),
        };
        if let Some(pe) = config.get("position_embedding_type").and_then(Value::as_str) {
            if pe != "absolute" {
                return Err(Error::Config(format!("unsupported position_embedding_type {pe:?}")));
            }
        }
        let max_position_embeddings = int("max_position_embeddings")?;

        // sentence-transformers files, when present, decide pooling, normalisation and length.
        let mut pooling = Pooling::Mean;
        let mut normalize = head == Head::Embedding;
        let mut max_seq_len = max_position_embeddings.min(512);
        if let Some(modules) = read_json_opt(&dir.join("modules.json"))? {
            normalize = false;
            for m in modules.as_array().into_iter().flatten() {
                let ty = m.get("type").and_then(Value::as_str).unwrap_or("");
                let path = m.get("path").and_then(Value::as_str).unwrap_or("");
                if ty.ends_with("Normalize") {
                    normalize = true;
                } else if ty.ends_with("Pooling") {
                    let pc = read_json(&dir.join(path).join("config.json"))?;
                    let flag = |k: &str| pc.get(k).and_then(Value::as_bool).unwrap_or(false);
                    pooling = if flag("pooling_mode_cls_token") {
                        Pooling::Cls
                    } else if flag("pooling_mode_mean_tokens") {
                        Pooling::Mean
                    } else {
                        return Err(Error::Config(format!(
                            "{}: only mean and CLS pooling are supported",
                            dir.join(path).join("config.json").display()
                        )));
                    };
                }
            }
        }
        if let Some(st) = read_json_opt(&dir.join("sentence_bert_config.json"))? {
            if let Some(n) = st.get("max_seq_length").and_then(Value::as_u64) {
                max_seq_len = (n as usize).min(max_position_embeddings);
            }
        }
        let cfg = ModelConfig {
            architecture,
            head,
            vocab_size: int("vocab_size")?,
            hidden_size: int("hidden_size")?,
            num_layers: int("num_hidden_layers")?,
            num_heads: int("num_attention_heads")?,
            intermediate_size: int("intermediate_size")?,
            max_position_embeddings,
            type_vocab_size: config.get("type_vocab_size").and_then(Value::as_u64).unwrap_or(2) as usize,
            layer_norm_eps: config.get("layer_norm_eps").and_then(Value::as_f64).unwrap_or(1e-12) as f32,
            activation,
            pooling,
            normalize,
            max_seq_len,
            pad_token_id: config.get("pad_token_id").and_then(Value::as_u64).unwrap_or(0) as u32,
            modern_bert: None,
            decoder: None,
            colbert: None,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

fn read_json(path: &Path) -> Result<Value> {
    read_json_opt(path)?.ok_or_else(|| Error::MissingFile(path.to_path_buf()))
}

fn read_json_opt(path: &Path) -> Result<Option<Value>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::corrupt(path, format!("not valid JSON: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}
