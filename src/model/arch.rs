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
    let mut specs = match cfg.architecture {
        Architecture::Bert => bert_layout(cfg),
        Architecture::ModernBert => modern_bert_layout(cfg),
        Architecture::Decoder => decoder_layout(cfg),
    };
    specs.extend(colbert_layout(cfg));
    specs
}

/// A late-interaction (PyLate) head's token projection: `linear.weight` (and `linear.bias`)
/// of the Dense module's own `model.safetensors`, named `<dense_dir>/linear.weight` (a
/// name with a folder is read from that folder's file).
fn colbert_layout(cfg: &ModelConfig) -> Vec<TensorSpec> {
    let Some(c) = &cfg.colbert else { return Vec::new() };
    let hf = |t: &str| format!("{}/linear.{t}", c.dense_dir);
    let mut specs = vec![TensorSpec {
        name: "colbert.proj.weight".into(),
        hf_name: hf("weight"),
        shape: vec![c.dim, cfg.hidden_size],
        kind: TensorKind::Linear,
    }];
    if c.proj_bias {
        specs.push(TensorSpec { name: "colbert.proj.bias".into(), hf_name: hf("bias"), shape: vec![c.dim], kind: TensorKind::Vector });
    }
    specs
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

/// ModernBERT (`ModernBertModel`, or the encoder inside `ModernBertForMaskedLM` under `model.`;
/// the masked-LM head is not read). Biases appear only where the config enables them; layer 0
/// has no attention LayerNorm (HF uses an identity there). `Wqkv` stacks q, k and v rows and
/// `Wi` stacks the GeGLU input and gate rows, as in the checkpoint.
fn modern_bert_layout(cfg: &ModelConfig) -> Vec<TensorSpec> {
    let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
    let p = cfg.modern_bert.clone().unwrap_or_default();
    let mut specs = Vec::new();
    let mut push = |name: String, hf: String, shape: Vec<usize>, kind| {
        specs.push(TensorSpec { name, hf_name: hf, shape, kind })
    };
    use TensorKind::*;
    let norm = |push: &mut dyn FnMut(String, String, Vec<usize>, TensorKind), ours: String, hf: String| {
        push(format!("{ours}.weight"), format!("{hf}.weight"), vec![h], Vector);
        if p.norm_bias {
            push(format!("{ours}.bias"), format!("{hf}.bias"), vec![h], Vector);
        }
    };
    push("emb.word".into(), "embeddings.tok_embeddings.weight".into(), vec![cfg.vocab_size, h], Embedding);
    norm(&mut push, "emb.ln".into(), "embeddings.norm".into());
    for l in 0..cfg.num_layers {
        let hf = |s: &str| format!("layers.{l}.{s}");
        let ours = |s: &str| format!("layer.{l}.{s}");
        if l > 0 {
            norm(&mut push, ours("attn_ln"), hf("attn_norm"));
        }
        let linears = [
            ("qkv", "attn.Wqkv", 3 * h, h, p.attention_bias),
            ("o", "attn.Wo", h, h, p.attention_bias),
            ("up", "mlp.Wi", 2 * i, h, p.mlp_bias),
            ("down", "mlp.Wo", h, i, p.mlp_bias),
        ];
        for (o, t, n, k, bias) in linears {
            push(ours(&format!("{o}.weight")), hf(&format!("{t}.weight")), vec![n, k], Linear);
            if bias {
                push(ours(&format!("{o}.bias")), hf(&format!("{t}.bias")), vec![n], Vector);
            }
            if o == "o" {
                norm(&mut push, ours("ffn_ln"), hf("mlp_norm"));
            }
        }
    }
    norm(&mut push, "final_ln".into(), "final_norm".into());
    specs
}

/// Qwen3 / Qwen2 / Llama (`Qwen3Model`, or the `model.` of `*ForCausalLM`; the LM head, tied
/// or not, is not needed). Without decoder settings there is nothing to lay out.
fn decoder_layout(cfg: &ModelConfig) -> Vec<TensorSpec> {
    let Some(d) = &cfg.decoder else {
        return Vec::new();
    };
    let (h, i, hd) = (cfg.hidden_size, cfg.intermediate_size, d.head_dim);
    let (qd, kvd) = (cfg.num_heads * hd, d.num_kv_heads * hd);
    let mut specs = Vec::new();
    let mut push = |name: String, hf: String, shape: Vec<usize>, kind| {
        specs.push(TensorSpec { name, hf_name: hf, shape, kind })
    };
    use TensorKind::*;
    push("emb.word".into(), "embed_tokens.weight".into(), vec![cfg.vocab_size, h], Embedding);
    for l in 0..cfg.num_layers {
        let hf = |s: &str| format!("layers.{l}.{s}");
        let ours = |s: &str| format!("layer.{l}.{s}");
        push(ours("attn_norm.weight"), hf("input_layernorm.weight"), vec![h], Vector);
        for (o, t, out) in [("q", "q_proj", qd), ("k", "k_proj", kvd), ("v", "v_proj", kvd)] {
            push(ours(&format!("{o}.weight")), hf(&format!("self_attn.{t}.weight")), vec![out, h], Linear);
            if d.qkv_bias {
                push(ours(&format!("{o}.bias")), hf(&format!("self_attn.{t}.bias")), vec![out], Vector);
            }
        }
        if d.qk_norm {
            push(ours("q_norm.weight"), hf("self_attn.q_norm.weight"), vec![hd], Vector);
            push(ours("k_norm.weight"), hf("self_attn.k_norm.weight"), vec![hd], Vector);
        }
        push(ours("o.weight"), hf("self_attn.o_proj.weight"), vec![h, qd], Linear);
        if d.o_bias {
            push(ours("o.bias"), hf("self_attn.o_proj.bias"), vec![h], Vector);
        }
        push(ours("ffn_norm.weight"), hf("post_attention_layernorm.weight"), vec![h], Vector);
        push(ours("gate.weight"), hf("mlp.gate_proj.weight"), vec![i, h], Linear);
        push(ours("up.weight"), hf("mlp.up_proj.weight"), vec![i, h], Linear);
        push(ours("down.weight"), hf("mlp.down_proj.weight"), vec![h, i], Linear);
    }
    push("norm.weight".into(), "norm.weight".into(), vec![h], Vector);
    specs
}
