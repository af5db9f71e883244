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
    /// The attention projections (`Wqkv`, `Wo`) have biases (`attention_bias`).
    pub attention_bias: bool,
    /// The MLP projections (`Wi`, `Wo`) have biases (`mlp_bias`).
    pub mlp_bias: bool,
    /// The LayerNorms have biases (`norm_bias`).
    pub norm_bias: bool,
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
    /// Queries, keys and values have biases (Qwen2 always; Llama/Qwen3 `attention_bias`).
    pub qkv_bias: bool,
    /// The attention output projection has a bias (Llama/Qwen3 `attention_bias`).
    pub o_bias: bool,
    /// The model's own query prompt (sentence-transformers `prompts.query`), put verbatim before
    /// a query when no instruction is given.
    pub query_prompt: Option<String>,
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
    /// Token inserted after the first token of queries / documents (the ids of
    /// `query_prefix` / `document_prefix`); `None` for an empty prefix.
    pub query_prefix_id: Option<u32>,
    pub document_prefix_id: Option<u32>,
    /// Real query tokens attend to the expansion tokens (`attend_to_expansion_tokens`); when
    /// false, expansion tokens attend to the query but nothing attends to them.
    pub attend_to_expansion: bool,
    /// The projection has a bias (`colbert.proj.bias`).
    pub proj_bias: bool,
    /// Folder of the Dense module inside the Hugging Face directory (`1_Dense`); only used
    /// when loading that directory.
    pub dense_dir: String,
    /// Texts are lowercased before tokenization (sentence-transformers `do_lower_case`).
    pub lowercase: bool,
}

impl ModelConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    /// The text the model embeds for a query. An explicit `instruction` goes into the model's
    /// query template when it has one (Qwen3: `Instruct: {instruction}\nQuery:{query}`), else
    /// before the query with a space; without one, the model's own query prompt (if any) is
    /// put before the query. Documents are embedded as they are.
    pub fn query_text(&self, instruction: Option<&str>, query: &str) -> String {
        let d = self.decoder.as_ref();
        match instruction.filter(|i| !i.is_empty()) {
            Some(i) => match d.and_then(|d| d.query_template.as_deref()) {
                Some(t) => fill_template(t, i, query),
                None => format!("{i} {query}"),
            },
            None => match d.and_then(|d| d.query_prompt.as_deref()) {
                Some(p) => format!("{p}{query}"),
                None => query.to_string(),
            },
        }
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
        if let Some(c) = &self.colbert {
            let ok_len = |n: usize| (2..=self.max_position_embeddings).contains(&n);
            if c.dim == 0 || !ok_len(c.query_length) || !ok_len(c.document_length) {
                return bad(format!(
                    "late-interaction head: dim {}, query_length {} and document_length {} must be positive and within 2..={}",
                    c.dim, c.query_length, c.document_length, self.max_position_embeddings
                ));
            }
            let ids = [Some(c.mask_token_id), c.query_prefix_id, c.document_prefix_id];
            if ids.into_iter().flatten().any(|id| id as usize >= self.vocab_size) {
                return bad("late-interaction head: a prefix or mask token id is outside the vocabulary".into());
            }
        }
        Ok(())
    }

    /// Parses a Hugging Face model directory's configuration.
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let config = read_json(&dir.join("config.json"))?;
        let model_type = config.get("model_type").and_then(Value::as_str).unwrap_or("");
        let architecture = match model_type {
            "bert" => Architecture::Bert,
            "qwen3" | "qwen2" | "llama" => Architecture::Decoder,
            "modernbert" => Architecture::ModernBert,
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
        let activation = match config.get("hidden_act").or_else(|| config.get("hidden_activation")).and_then(Value::as_str).unwrap_or("gelu") {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            // Unused: decoders' SwiGLU is fixed (`decoder_params` checks `hidden_act`).
            _ if architecture == Architecture::Decoder => Activation::Gelu,
            other => return Err(Error::Config(format!("unsupported hidden_act {other:?}"))),
        };
        if let Some(pe) = config.get("position_embedding_type").and_then(Value::as_str) {
            if pe != "absolute" {
                return Err(Error::Config(format!("unsupported position_embedding_type {pe:?}")));
            }
        }
        let max_position_embeddings = int("max_position_embeddings")?;

        // sentence-transformers files, when present, decide pooling, normalisation and length.
        let mut pooling = if architecture == Architecture::Decoder { Pooling::LastToken } else { Pooling::Mean };
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
                    } else if flag("pooling_mode_lasttoken") {
                        Pooling::LastToken
                    } else {
                        return Err(Error::Config(format!(
                            "{}: only mean, CLS and last-token pooling are supported",
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
            layer_norm_eps: config.get("layer_norm_eps").or_else(|| config.get("norm_eps")).and_then(Value::as_f64).unwrap_or(1e-12) as f32,
            activation,
            pooling,
            normalize,
            max_seq_len,
            pad_token_id: config.get("pad_token_id").and_then(Value::as_u64).unwrap_or(0) as u32,
            modern_bert: match architecture {
                Architecture::ModernBert => Some(modern_bert_params(&config)?),
                _ => None,
            },
            decoder: match architecture {
                Architecture::Decoder => Some(decoder_params(&config, dir)?),
                _ => None,
            },
            colbert: colbert_params(dir, &config)?,
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

/// ModernBERT's settings from its `config.json`: the older keys (`global_rope_theta`,
/// `local_rope_theta`, `global_attn_every_n_layers`) or the newer `rope_parameters` and
/// `layer_types`, with `ModernBertConfig`'s defaults for absent keys. Only embedding models
/// (the bare encoder, or the masked-LM checkpoint whose head is ignored) are accepted.
fn modern_bert_params(config: &Value) -> Result<ModernBertParams> {
    let bad = |m: String| Err(Error::Config(m));
    let task_heads = ["ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering", "ForMultipleChoice"];
    for a in config.get("architectures").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
        if task_heads.iter().any(|h| a.ends_with(h)) {
            return Err(Error::Unsupported(format!(
                "ModernBERT with a task head ({a}): only ModernBERT embedding models are supported"
            )));
        }
    }
    let float = |key: &str, default: f64| -> Result<f64> {
        match config.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| Error::Config(format!("config.json: {key:?} is not a number"))),
        }
    };
    let boolean = |key: &str| -> Result<bool> {
        match config.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(v) => v.as_bool().ok_or_else(|| Error::Config(format!("config.json: {key:?} is not a boolean"))),
        }
    };
    let uint = |key: &str, default: u64| -> Result<usize> {
        match config.get(key) {
            None | Some(Value::Null) => Ok(default as usize),
            Some(v) => v
                .as_u64()
                .map(|v| v as usize)
                .ok_or_else(|| Error::Config(format!("config.json: {key:?} is not a non-negative integer"))),
        }
    };
    // Rotary bases: `rope_parameters` (newer transformers) wins over the flat keys.
    let mut global_rope_theta = float("global_rope_theta", 160_000.0)?;
    let mut local_rope_theta = float("local_rope_theta", 10_000.0)?;
    for key in ["rope_parameters", "rope_scaling"] {
        let Some(rp) = config.get(key).filter(|v| !v.is_null()) else { continue };
        let Some(rp) = rp.as_object() else {
            return bad(format!("config.json: {key:?} is not an object"));
        };
        // Either one dict per layer type or (older `rope_scaling`) one dict for all layers.
        let per_type = rp.contains_key("full_attention") || rp.contains_key("sliding_attention");
        let entries: Vec<(&str, &Value)> = if per_type {
            rp.iter().map(|(k, v)| (k.as_str(), v)).collect()
        } else {
            vec![("", &config[key])]
        };
        for (layer_type, p) in entries {
            let rope_type = p.get("rope_type").or_else(|| p.get("type")).and_then(Value::as_str).unwrap_or("default");
            if rope_type != "default" {
                return bad(format!("config.json: unsupported ModernBERT rope_type {rope_type:?}"));
            }
            if let Some(theta) = p.get("rope_theta").and_then(Value::as_f64) {
                match layer_type {
                    "full_attention" => global_rope_theta = theta,
                    "sliding_attention" => local_rope_theta = theta,
                    _ => {}
                }
            }
        }
    }
    let num_layers = uint("num_hidden_layers", 0)?;
    let mut every = uint("global_attn_every_n_layers", 3)?;
    if let Some(types) = config.get("layer_types").filter(|v| !v.is_null()) {
        // Only the regular pattern (global on every n-th layer from layer 0) is supported.
        let types: Vec<&str> = types.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let global: Vec<bool> = types.iter().map(|t| *t == "full_attention").collect();
        if types.len() != num_layers || types.iter().any(|t| *t != "full_attention" && *t != "sliding_attention") {
            return bad(format!("config.json: layer_types must name full_attention or sliding_attention for each of {num_layers} layers"));
        }
        every = global.iter().skip(1).position(|&g| g).map_or(num_layers.max(1), |p| p + 1);
        if global.iter().enumerate().any(|(i, &g)| g != (i % every == 0)) {
            return bad("config.json: layer_types is not global attention on every n-th layer from layer 0".into());
        }
    }
    let local_attention = uint("local_attention", 128)?;
    let norm_eps = float("norm_eps", 1e-5)? as f32;
    if every == 0 || local_attention < 2 {
        return bad(format!(
            "global_attn_every_n_layers {every} must be at least 1 and local_attention {local_attention} at least 2"
        ));
    }
    // (Written so that NaN fails too.)
    let (eps_ok, bases_ok) = (norm_eps > 0.0, global_rope_theta > 1.0 && local_rope_theta > 1.0);
    if !eps_ok || !bases_ok {
        return bad("norm_eps and the rotary bases must be positive (bases above 1)".into());
    }
    Ok(ModernBertParams {
        global_rope_theta: global_rope_theta as f32,
        local_rope_theta: local_rope_theta as f32,
        local_attention,
        global_attn_every_n_layers: every,
        norm_eps,
        attention_bias: boolean("attention_bias")?,
        mlp_bias: boolean("mlp_bias")?,
        norm_bias: boolean("norm_bias")?,
    })
}

/// `template` with `{instruction}` and `{query}` replaced in one pass (so that braces inside
/// the instruction or the query are left alone).
fn fill_template(template: &str, instruction: &str, query: &str) -> String {
    let mut out = String::with_capacity(template.len() + instruction.len() + query.len());
    let mut rest = template;
    while let Some(p) = rest.find('{') {
        out.push_str(&rest[..p]);
        let tail = &rest[p..];
        if let Some(t) = tail.strip_prefix("{instruction}") {
            out.push_str(instruction);
            rest = t;
        } else if let Some(t) = tail.strip_prefix("{query}") {
            out.push_str(query);
            rest = t;
        } else {
            out.push('{');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// The template behind a Qwen3-style prompt `Instruct: <task>\nQuery:`: the task replaced by
/// `{instruction}` and `{query}` appended. Other prompts have no template.
fn instruct_template(prompt: &str) -> Option<String> {
    let rest = prompt.strip_prefix("Instruct:")?;
    let body = rest.trim_start();
    let lead = &rest[..rest.len() - body.len()];
    let tail = &body[body.rfind("\nQuery:")?..];
    (tail.trim_end() == "\nQuery:").then(|| format!("Instruct:{lead}{{instruction}}{tail}{{query}}"))
}

/// A decoder embedder's settings from `config.json` (`Qwen3Config`, `Qwen2Config`,
/// `LlamaConfig`, with their defaults for absent keys) and its query prompt from
/// `config_sentence_transformers.json`. Task heads and features the runtime lacks (sliding
/// windows, scaled rotary positions, MLP biases, activations other than SiLU) are refused.
fn decoder_params(config: &Value, dir: &Path) -> Result<DecoderParams> {
    let bad = |m: String| Err(Error::Config(m));
    let model_type = config.get("model_type").and_then(Value::as_str).unwrap_or("");
    let task_heads = ["ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering"];
    for a in config.get("architectures").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
        if task_heads.iter().any(|h| a.ends_with(h)) {
            return bad(format!("{a}: decoder models with a task head are not supported, only decoder embedders"));
        }
    }
    let get = |key: &str| config.get(key).filter(|v| !v.is_null());
    let uint = |key: &str| -> Result<Option<usize>> {
        get(key)
            .map(|v| v.as_u64().map(|n| n as usize).ok_or_else(|| Error::Config(format!("config.json: {key:?} is not a non-negative integer"))))
            .transpose()
    };
    let float = |key: &str, default: f64| -> Result<f64> {
        get(key).map_or(Ok(default), |v| v.as_f64().ok_or_else(|| Error::Config(format!("config.json: {key:?} is not a number"))))
    };
    let boolean = |key: &str| -> Result<bool> {
        get(key).map_or(Ok(false), |v| v.as_bool().ok_or_else(|| Error::Config(format!("config.json: {key:?} is not a boolean"))))
    };
    let act = get("hidden_act").and_then(Value::as_str).unwrap_or("silu");
    if act != "silu" {
        return bad(format!("config.json: decoder hidden_act {act:?} is not supported (only silu)"));
    }
    let heads = uint("num_attention_heads")?.unwrap_or(0);
    let hidden = uint("hidden_size")?.unwrap_or(0);
    let num_kv_heads = uint("num_key_value_heads")?.unwrap_or(heads);
    let head_dim = match uint("head_dim")? {
        Some(d) => d,
        None if heads > 0 => hidden / heads,
        None => 0,
    };
    if heads == 0 || num_kv_heads == 0 || heads % num_kv_heads != 0 || head_dim == 0 || head_dim % 2 != 0 {
        return bad(format!(
            "config.json: {heads} attention heads, {num_kv_heads} key/value heads and head_dim {head_dim}: \
             heads must be a multiple of key/value heads and head_dim even"
        ));
    }
    if boolean("use_sliding_window")? {
        return bad("config.json: sliding-window attention (use_sliding_window) is not supported".into());
    }
    if let Some(types) = get("layer_types").and_then(Value::as_array) {
        if types.iter().any(|t| t.as_str() != Some("full_attention")) {
            return bad("config.json: only full_attention layer_types are supported".into());
        }
    }
    if boolean("mlp_bias")? {
        return bad("config.json: MLP biases (mlp_bias) are not supported".into());
    }
    if float("partial_rotary_factor", 1.0)? != 1.0 {
        return bad("config.json: partial rotary embeddings are not supported".into());
    }
    let mut rope_theta = float("rope_theta", 10_000.0)?;
    for key in ["rope_scaling", "rope_parameters"] {
        let Some(rp) = get(key) else { continue };
        let rope_type = rp.get("rope_type").or_else(|| rp.get("type")).and_then(Value::as_str).unwrap_or("default");
        if rope_type != "default" {
            return bad(format!("config.json: rotary scaling {rope_type:?} is not supported"));
        }
        if let Some(t) = rp.get("rope_theta").and_then(Value::as_f64) {
            rope_theta = t;
        }
    }
    let rms_norm_eps = float("rms_norm_eps", 1e-6)?;
    if !(rope_theta > 1.0) || !(rms_norm_eps > 0.0) {
        return bad("config.json: rope_theta must be above 1 and rms_norm_eps positive".into());
    }
    let attention_bias = boolean("attention_bias")?;
    let eos_token_id = match get("eos_token_id") {
        Some(Value::Array(a)) => a.first().and_then(Value::as_u64),
        Some(v) => v.as_u64(),
        None => None,
    }
    .map(|v| v as u32);
    let query_prompt = read_json_opt(&dir.join("config_sentence_transformers.json"))?
        .and_then(|st| st.get("prompts")?.get("query")?.as_str().map(str::to_string))
        .filter(|p| !p.is_empty());
    Ok(DecoderParams {
        num_kv_heads,
        head_dim,
        rope_theta: rope_theta as f32,
        rms_norm_eps: rms_norm_eps as f32,
        qk_norm: model_type == "qwen3",
        eos_token_id,
        query_template: query_prompt.as_deref().and_then(instruct_template),
        qkv_bias: model_type == "qwen2" || attention_bias,
        o_bias: model_type != "qwen2" && attention_bias,
        query_prompt,
    })
}

/// A PyLate (ColBERT) head: a `Dense` module after the encoder in `modules.json` and the
/// late-interaction settings of `config_sentence_transformers.json` (PyLate's defaults for
/// absent keys: prefixes `[Q] `/`[D] `, 32/180 tokens, expansion on, expansion tokens not
/// attended to, `string.punctuation` as the skiplist). Token ids are looked up in
/// `tokenizer.json` as `convert_tokens_to_ids` does (a skiplist word outside the vocabulary
/// stands for the unknown token). `None` when the directory has no Dense module, or pools
/// (a Dense after a Pooling module projects a single-vector model's pooled vector).
fn colbert_params(dir: &Path, config: &Value) -> Result<Option<ColbertParams>> {
    let Some(modules) = read_json_opt(&dir.join("modules.json"))? else { return Ok(None) };
    let pools = modules.as_array().into_iter().flatten().any(|m| m.get("type").and_then(Value::as_str).is_some_and(|t| t.ends_with("Pooling")));
    if pools {
        return Ok(None);
    }
    let dense: Vec<&str> = modules
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m.get("type").and_then(Value::as_str).is_some_and(|t| t.ends_with("Dense")))
        .filter_map(|m| m.get("path").and_then(Value::as_str))
        .collect();
    let dense_dir = match dense.as_slice() {
        [] => return Ok(None),
        [one] => one.to_string(),
        _ => return Err(Error::Unsupported("late-interaction models with more than one Dense module".into())),
    };
    let dense_cfg_path = dir.join(&dense_dir).join("config.json");
    let dc = read_json(&dense_cfg_path)?;
    let bad = |m: &str| Err(Error::Config(format!("{}: {m}", dense_cfg_path.display())));
    let activation = dc.get("activation_function").and_then(Value::as_str).unwrap_or("torch.nn.modules.linear.Identity");
    if !activation.ends_with("Identity") {
        return Err(Error::Unsupported(format!("Dense module with activation {activation:?} (only Identity)")));
    }
    if dc.get("use_residual").and_then(Value::as_bool).unwrap_or(false) {
        return Err(Error::Unsupported("Dense module with use_residual".into()));
    }
    let hidden = config.get("hidden_size").and_then(Value::as_u64).unwrap_or(0) as usize;
    let (Some(inf), Some(dim)) = (dc.get("in_features").and_then(Value::as_u64), dc.get("out_features").and_then(Value::as_u64)) else {
        return bad("in_features and out_features must be integers");
    };
    if inf as usize != hidden || dim == 0 {
        return bad(&format!("in_features {inf} must equal hidden_size {hidden} and out_features be positive"));
    }
    let st = read_json_opt(&dir.join("config_sentence_transformers.json"))?.unwrap_or(Value::Null);
    let text = |k: &str, d: &str| st.get(k).and_then(Value::as_str).unwrap_or(d).to_string();
    let uint = |k: &str, d: u64| st.get(k).and_then(Value::as_u64).unwrap_or(d) as usize;
    let flag = |k: &str, d: bool| st.get(k).and_then(Value::as_bool).unwrap_or(d);

    let tok_path = dir.join("tokenizer.json");
    let tok = tokenizers::Tokenizer::from_file(&tok_path).map_err(|e| Error::Tokenizer(format!("{}: {e}", tok_path.display())))?;
    // Special tokens as transformers names them (tokenizer_config.json, then special_tokens_map.json).
    let special = |key: &str| -> Result<Option<String>> {
        for f in ["tokenizer_config.json", "special_tokens_map.json"] {
            if let Some(v) = read_json_opt(&dir.join(f))?.as_ref().and_then(|c| c.get(key)) {
                let s = v.as_str().or_else(|| v.get("content").and_then(Value::as_str));
                if let Some(s) = s {
                    return Ok(Some(s.to_string()));
                }
            }
        }
        Ok(None)
    };
    let id_of = |s: &str| tok.token_to_id(s);
    let prefix_id = |p: &str| -> Result<Option<u32>> {
        if p.is_empty() {
            return Ok(None);
        }
        id_of(p).map(Some).ok_or_else(|| {
            Error::Unsupported(format!("the prefix {p:?} is not a token of tokenizer.json (PyLate would add it with a new, untrained embedding)"))
        })
    };
    let query_prefix = text("query_prefix", "[Q] ");
    let document_prefix = text("document_prefix", "[D] ");
    // Expansion pads with the mask token (an encoder's), else EOS (a decoder's), else padding.
    let mask_token_id = match (special("mask_token")?, special("eos_token")?) {
        (Some(m), _) if id_of(&m).is_some() => id_of(&m),
        (_, Some(e)) if id_of(&e).is_some() => id_of(&e),
        _ => None,
    }
    .unwrap_or(config.get("pad_token_id").and_then(Value::as_u64).unwrap_or(0) as u32);
    let unk = special("unk_token")?.and_then(|u| id_of(&u));
    let words: Vec<String> = match st.get("skiplist_words").and_then(Value::as_array) {
        Some(a) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        None => "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~".chars().map(String::from).collect(),
    };
    let mut skiplist: Vec<u32> = words.iter().filter_map(|w| id_of(w).or(unk)).collect();
    skiplist.sort_unstable();
    skiplist.dedup();
    let query_expansion = flag("do_query_expansion", true);
    let max_pos = config.get("max_position_embeddings").and_then(Value::as_u64).unwrap_or(512) as usize;
    let dense_st = dir.join(&dense_dir).join("model.safetensors");
    if !dense_st.exists() {
        return Err(Error::MissingFile(dense_st));
    }
    Ok(Some(ColbertParams {
        dim: dim as usize,
        query_prefix_id: prefix_id(&query_prefix)?,
        document_prefix_id: prefix_id(&document_prefix)?,
        query_prefix,
        document_prefix,
        query_length: uint("query_length", 32),
        // Longer documents than the encoder's positions cannot be embedded whole anyway.
        document_length: uint("document_length", 180).min(max_pos),
        query_expansion,
        mask_token_id,
        skiplist,
        attend_to_expansion: query_expansion && flag("attend_to_expansion_tokens", false),
        proj_bias: dc.get("bias").and_then(Value::as_bool).unwrap_or(true),
        dense_dir,
        lowercase: read_json_opt(&dir.join("sentence_bert_config.json"))?
            .and_then(|c| c.get("do_lower_case").and_then(Value::as_bool))
            .unwrap_or(false),
    }))
}
