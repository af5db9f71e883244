//! Tensor layout of each supported architecture: ponder's canonical tensor names, the
//! Hugging Face names they come from, and their shapes. This is the one place that knows
//! checkpoint key names; adding XLM-RoBERTa or ModernBERT means adding a layout here.

use super::config::{Architecture, Head, ModelConfig};

/// One tensor the runtime needs.
#[derive(Clone, Debug)]
pub struct TensorSpec {
    /// ponder's name, used in ponder model files and by the runtime.
    pub name: String,
    /// The name in a Hugging Face checkpoint (without a model prefix such as `bert.`).
    pub hf_name: String,
    pub shape: Vec<usize>,
    pub kind: TensorKind,
}

/// What a tensor is, which decides how it may be quantized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorKind {
    /// A lookup table (`[rows, hidden]`); may be stored f16.
    Embedding,
    /// A Linear layer's weight (`[out, in]`); int8 per output channel in int8 files.
    Linear,
    /// Biases and LayerNorm parameters; always f32.
    Vector,
}

/// Prefixes under which HF task models nest the encoder.
pub const HF_PREFIXES: &[&str] = &["", "bert.", "model."];

pub fn layout(cfg: &ModelConfig) -> Vec<TensorSpec> {
    match cfg.architecture {
        Architecture::Bert => bert_layout(cfg),
        Architecture::ModernBert => modern_bert_layout(cfg),
        Architecture::Decoder => decoder_layout(cfg),
    }
}

fn bert_layout(cfg: &ModelConfig) -> Vec<TensorSpec> {
    let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
    let mut specs = Vec::new();
    let mut push = |name: String, hf: String, shape: Vec<usize>, kind| {
        specs.push(TensorSpec { name, hf_name: hf, shape, kind })
    };
    use TensorKind::*;
    push("emb.word".into(), "embeddings.word_embeddings.weight".into(), vec![cfg.vocab_size, h], Embedding);
    push("emb.pos".into(), "embeddings.position_embeddings.weight".into(), vec![cfg.max_position_embeddings, h], Embedding);
    push("emb.type".into(), "embeddings.token_type_embeddings.weight".into(), vec![cfg.type_vocab_size, h], Embedding);
    push("emb.ln.weight".into(), "embeddings.LayerNorm.weight".into(), vec![h], Vector);
    push("emb.ln.bias".into(), "embeddings.LayerNorm.bias".into(), vec![h], Vector);
    for l in 0..cfg.num_layers {
        let hf = |s: &str| format!("encoder.layer.{l}.{s}");
        let ours = |s: &str| format!("layer.{l}.{s}");
        for (o, t) in [("q", "attention.self.query"), ("k", "attention.self.key"), ("v", "attention.self.value"), ("o", "attention.output.dense")] {
            push(ours(&format!("{o}.weight")), hf(&format!("{t}.weight")), vec![h, h], Linear);
            push(ours(&format!("{o}.bias")), hf(&format!("{t}.bias")), vec![h], Vector);
        }
        push(ours("attn_ln.weight"), hf("attention.output.LayerNorm.weight"), vec![h], Vector);
        push(ours("attn_ln.bias"), hf("attention.output.LayerNorm.bias"), vec![h], Vector);
        push(ours("up.weight"), hf("intermediate.dense.weight"), vec![i, h], Linear);
        push(ours("up.bias"), hf("intermediate.dense.bias"), vec![i], Vector);
        push(ours("down.weight"), hf("output.dense.weight"), vec![h, i], Linear);
        push(ours("down.bias"), hf("output.dense.bias"), vec![h], Vector);
        push(ours("ffn_ln.weight"), hf("output.LayerNorm.weight"), vec![h], Vector);
        push(ours("ffn_ln.bias"), hf("output.LayerNorm.bias"), vec![h], Vector);
    }
    if cfg.head == Head::Classifier {
        push("pooler.weight".into(), "pooler.dense.weight".into(), vec![h, h], Linear);
        push("pooler.bias".into(), "pooler.dense.bias".into(), vec![h], Vector);
        // The classifier sits beside the encoder, not under its prefix.
        push("classifier.weight".into(), "@classifier.weight".into(), vec![1, h], Vector);
        push("classifier.bias".into(), "@classifier.bias".into(), vec![1], Vector);
    }
    specs
}

fn modern_bert_layout(_cfg: &ModelConfig) -> Vec<TensorSpec> {
    Vec::new()
}

fn decoder_layout(_cfg: &ModelConfig) -> Vec<TensorSpec> {
    Vec::new()
}
