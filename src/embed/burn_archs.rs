//! ModernBERT encoders and decoder embedders (Qwen3 / Qwen2 / Llama) on burn tensors, for
//! burn's devices (wgpu on a GPU, `flex` on the CPU), in f32 like `burn_bert.rs` does for
//! BERT. Owns both forward passes over padded batches (rows padded to a multiple of 16 with
//! an additive attention mask), the masks (padding combined with ModernBERT's sliding window
//! on its local layers, or with the decoder's causal mask), rotary positions in the
//! rotate-half convention with cos/sin tables built once per (length, base) on the device, and
//! grouped-query heads (key/value heads repeated). Weights are read under the canonical names
//! of `model::arch` exactly as the native runtimes (`modernbert.rs`, `decoder.rs`) read them;
//! int8 files are dequantized on upload. Pooling and read-back come from `burn_bert.rs`, the
//! decoder's appended end-of-sequence token from `decoder.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use burn::tensor::activation::{gelu, gelu_approximate, silu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::burn_bert::{key_mask, pool, table, to_host, PaddedEncoder};
use super::decoder::with_eos;
use super::tokenize::Encoded;
use crate::error::{Error, Result};
use crate::model::config::{Activation, Architecture, DecoderParams, ModelConfig, ModernBertParams};
use crate::model::ModelWeights;

/// Additive mask value for hidden keys (finite, so a row with every key hidden stays finite).
const HIDDEN: f32 = -1e9;

/// A Linear layer: `[in, out]` weight (checkpoint Linears stacked by output, then transposed)
/// and an optional `[1, out]` bias.
struct Proj {
    w: Tensor<2>,
    b: Option<Tensor<2>>,
}

impl Proj {
    /// Loads the Linears `names` stacked by output rows, expecting `n` outputs of width `k`.
    /// Biases are used when the checkpoint has them (absent ones count as zeros).
    fn load(weights: &ModelWeights, names: &[&str], n: usize, k: usize, device: &Device) -> Result<Self> {
        let mut ws = Vec::with_capacity(n * k);
        let mut bs = Vec::with_capacity(n);
        let mut any_bias = false;
        for name in names {
            let t = weights.get(&format!("{name}.weight"))?;
            if t.shape.len() != 2 || t.shape[1] != k {
                return Err(Error::tensor(format!("{name}.weight"), format!("shape {:?}, expected [_, {k}]", t.shape)));
            }
            let rows = t.shape[0];
            ws.extend(t.to_f32());
            match weights.tensors.get(&format!("{name}.bias")) {
                Some(b) => {
                    any_bias = true;
                    let b = b.to_f32();
                    if b.len() != rows {
                        return Err(Error::tensor(format!("{name}.bias"), format!("{} values, expected {rows}", b.len())));
                    }
                    bs.extend(b);
                }
                None => bs.extend(std::iter::repeat_n(0.0, rows)),
            }
        }
        if bs.len() != n {
            return Err(Error::tensor(names.join("+"), format!("{} outputs, expected {n}", bs.len())));
        }
        let w = Tensor::<2>::from_data(TensorData::new(ws, [n, k]), device).transpose();
        let b = any_bias.then(|| Tensor::<2>::from_data(TensorData::new(bs, [1, n]), device));
        Ok(Proj { w, b })
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let y = x.matmul(self.w.clone());
        match &self.b {
            Some(b) => y + b.clone(),
            None => y,
        }
    }
}

/// A `[1, n]` row of a vector tensor, or zeros when `optional` and the tensor is absent.
fn row(weights: &ModelWeights, name: &str, n: usize, optional: bool, device: &Device) -> Result<Tensor<2>> {
    let v = match weights.tensors.get(name) {
        None if optional => vec![0.0; n],
        _ => weights.get(name)?.to_f32(),
    };
    if v.len() != n {
        return Err(Error::tensor(name, format!("{} values, expected {n}", v.len())));
    }
    Ok(Tensor::from_data(TensorData::new(v, [1, n]), device))
}

/// LayerNorm over the last axis (population variance), scale `g` and shift `b` (`[1, n]`).
fn layer_norm(x: Tensor<2>, (g, b): &(Tensor<2>, Tensor<2>), eps: f32) -> Tensor<2> {
    let xc = x.clone() - x.mean_dim(1);
    let var = xc.clone().powi_scalar(2).mean_dim(1);
    xc / (var + eps).sqrt() * g.clone() + b.clone()
}

/// RMSNorm over the last axis: `x / sqrt(mean(x²) + eps) · w` (`w` `[1, n]`).
fn rms_norm(x: Tensor<2>, w: &Tensor<2>, eps: f32) -> Tensor<2> {
    let ms = x.clone().powi_scalar(2).mean_dim(1);
    x / (ms + eps).sqrt() * w.clone()
}

/// Rows padded to a multiple of 16 (few distinct shapes for a GPU to compile).
fn padded_len(batch: &[Encoded]) -> usize {
    let longest = batch.iter().map(|e| e.ids.len()).max().unwrap_or(1).max(1);
    longest.div_ceil(16) * 16
}

/// Token ids `[B*T]` (padded with `pad`, clamped to the vocabulary) and the float mask
/// `[B, T]` (1 on real tokens).
fn ids_and_mask(batch: &[Encoded], t: usize, vocab: usize, pad: u32, dev: &Device) -> (Tensor<1, Int>, Tensor<2>) {
    let b = batch.len();
    let top = vocab.saturating_sub(1) as u32;
    let mut ids = vec![pad.min(top) as i32; b * t];
    let mut mask = vec![0f32; b * t];
    for (i, e) in batch.iter().enumerate() {
        for (j, &id) in e.ids.iter().enumerate().take(t) {
            ids[i * t + j] = id.min(top) as i32;
            mask[i * t + j] = 1.0;
        }
    }
    (
        Tensor::<1, Int>::from_data(TensorData::new(ids, [b * t]), dev),
        Tensor::<2>::from_data(TensorData::new(mask, [b, t]), dev),
    )
}

/// `[T, T]` with `j - i` at row `i`, column `j` (key minus query position).
fn offsets(t: usize, dev: &Device) -> Tensor<2> {
    let pos = Tensor::<1, Int>::arange(0..t as i64, dev).float();
    pos.clone().reshape([1, t]) - pos.reshape([t, 1])
}

/// Rotary cos/sin tables `[1, 1, T, head_dim]` (each half's angles repeated for the other
/// half, rotate-half convention), built on the device once per (length, base).
struct Rotary {
    head_dim: usize,
    device: Device,
    /// Keyed by (length, base bits).
    cache: Mutex<HashMap<(usize, u32), Arc<CosSin>>>,
}

/// Rotary cos and sin tables `[1, 1, T, head_dim]`.
type CosSin = (Tensor<4>, Tensor<4>);

impl Rotary {
    fn new(head_dim: usize, device: &Device) -> Self {
        Rotary { head_dim, device: device.clone(), cache: Mutex::new(HashMap::new()) }
    }

    fn tables(&self, t: usize, theta: f32) -> Arc<CosSin> {
        let key = (t, theta.to_bits());
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = cache.get(&key) {
            return v.clone();
        }
        let (dh, half) = (self.head_dim, self.head_dim / 2);
        let inv: Vec<f64> = (0..half).map(|d| 1.0 / (theta as f64).powf(2.0 * d as f64 / dh as f64)).collect();
        let mut cos = vec![0f32; t * dh];
        let mut sin = vec![0f32; t * dh];
        for p in 0..t {
            for (d, f) in inv.iter().enumerate() {
                let a = p as f64 * f;
                let (s, c) = (a.sin() as f32, a.cos() as f32);
                for col in [d, d + half] {
                    cos[p * dh + col] = c;
                    sin[p * dh + col] = s;
                }
            }
        }
        let up = |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, [1, 1, t, dh]), &self.device);
        let v = Arc::new((up(cos), up(sin)));
        cache.insert(key, v.clone());
        v
    }

    /// Rotates `x` (`[B, heads, T, head_dim]`, positions `0..T`) by base `theta`.
    fn apply(&self, x: Tensor<4>, theta: f32) -> Tensor<4> {
        let [b, nh, t, dh] = x.dims();
        let half = dh / 2;
        let tabs = self.tables(t, theta);
        let (cos, sin) = (&tabs.0, &tabs.1);
        let x1 = x.clone().slice([0..b, 0..nh, 0..t, 0..half]);
        let x2 = x.clone().slice([0..b, 0..nh, 0..t, half..dh]);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        x * cos.clone() + rotated * sin.clone()
    }
}

/// `[B*T, heads*dh]` columns `col0..` → `[B, heads, T, dh]`.
fn heads(x: &Tensor<2>, col0: usize, b: usize, t: usize, nh: usize, dh: usize) -> Tensor<4> {
    x.clone().slice([0..b * t, col0..col0 + nh * dh]).reshape([b, t, nh, dh]).swap_dims(1, 2)
}

/// Softmax attention with an additive mask broadcast to `[B, heads, T, T]`; `[B*T, heads*dh]`.
/// `rows` (`[B, 1, T, 1]`, 0 or 1) zeroes the context of query rows that see no key at all,
/// as PyTorch's attention does for a fully masked row.
fn attend(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, mask: Tensor<4>, rows: Option<&Tensor<4>>) -> Tensor<2> {
    let [b, nh, t, dh] = q.dims();
    let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(1.0 / (dh as f32).sqrt()) + mask;
    let mut p = softmax(scores, 3);
    if let Some(r) = rows {
        p = p * r.clone();
    }
    p.matmul(v).swap_dims(1, 2).reshape([b * t, nh * dh])
}

/// Reads pooled `[B, H]` rows back to the host.
fn rows(pooled: &Tensor<2>, h: usize) -> Vec<Vec<f32>> {
    to_host(pooled).chunks_exact(h.max(1)).map(|c| c.to_vec()).collect()
}

struct MbLayer {
    /// `None` on layer 0 (an identity in HF).
    attn_ln: Option<(Tensor<2>, Tensor<2>)>,
    qkv: Proj,
    o: Proj,
    ffn_ln: (Tensor<2>, Tensor<2>),
    /// GeGLU `[input | gate]`.
    up: Proj,
    down: Proj,
    global: bool,
}

/// ModernBERT on burn: see the module documentation.
pub struct BurnModernBert {
    cfg: ModelConfig,
    params: ModernBertParams,
    device: Device,
    word: Tensor<2>,
    emb_ln: (Tensor<2>, Tensor<2>),
    layers: Vec<MbLayer>,
    final_ln: (Tensor<2>, Tensor<2>),
    rotary: Rotary,
}

impl BurnModernBert {
    pub fn new(weights: &ModelWeights, device: Device) -> Result<Self> {
        let (cfg, params) = super::modernbert::checked_config(weights)?;
        let (h, dh, i) = (cfg.hidden_size, cfg.head_dim(), cfg.intermediate_size);
        let dev = &device;
        let norm = |name: &str| -> Result<(Tensor<2>, Tensor<2>)> {
            Ok((row(weights, &format!("{name}.weight"), h, false, dev)?, row(weights, &format!("{name}.bias"), h, true, dev)?))
        };
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for l in 0..cfg.num_layers {
            let p = |s: &str| format!("layer.{l}.{s}");
            layers.push(MbLayer {
                attn_ln: if l == 0 { None } else { Some(norm(&p("attn_ln"))?) },
                qkv: Proj::load(weights, &[&p("qkv")], 3 * h, h, dev)?,
                o: Proj::load(weights, &[&p("o")], h, h, dev)?,
                ffn_ln: norm(&p("ffn_ln"))?,
                up: Proj::load(weights, &[&p("up")], 2 * i, h, dev)?,
                down: Proj::load(weights, &[&p("down")], h, i, dev)?,
                global: l % params.global_attn_every_n_layers == 0,
            });
        }
        let word = weights.get("emb.word")?;
        if word.shape != [cfg.vocab_size, h] {
            return Err(Error::tensor("emb.word", format!("shape {:?}, expected {:?}", word.shape, [cfg.vocab_size, h])));
        }
        Ok(BurnModernBert {
            word: table(weights, "emb.word", dev)?,
            emb_ln: norm("emb.ln")?,
            final_ln: norm("final_ln")?,
            layers,
            rotary: Rotary::new(dh, dev),
            params,
            cfg,
            device,
        })
    }

    /// Final hidden states `[B*T, H]`, the float mask `[B, T]` and the padded length `T`.
    fn encode(&self, batch: &[Encoded]) -> (Tensor<2>, Tensor<2>, usize) {
        self.encode_keys_impl(batch, None)
    }

    /// `encode` where, with `key_lens`, sequence `b`'s tokens attend only to its first
    /// `key_lens[b]` tokens, within the window on the local layers, and a token whose window
    /// holds no visible key gets a zero context (as the native runtime and transformers do).
    fn encode_keys_impl(&self, batch: &[Encoded], key_lens: Option<&[usize]>) -> (Tensor<2>, Tensor<2>, usize) {
        let cfg = &self.cfg;
        let (h, nh, dh, inter) = (cfg.hidden_size, cfg.num_heads, cfg.head_dim(), cfg.intermediate_size);
        let eps = self.params.norm_eps;
        let dev = &self.device;
        let b = batch.len();
        let t = padded_len(batch);
        let (ids, mask) = ids_and_mask(batch, t, cfg.vocab_size, cfg.pad_token_id, dev);
        let mut x = layer_norm(self.word.clone().select(0, ids), &self.emb_ln, eps);
        // Additive masks: padding (and hidden keys) `[B, 1, 1, T]`; local layers add the
        // window `[1, 1, T, T]`.
        let keys = if key_lens.is_some() { key_mask(batch, t, key_lens, dev) } else { mask.clone() };
        let pad_mask = (keys.clone() - 1.0).mul_scalar(-HIDDEN).reshape([b, 1, 1, t]);
        let half = (self.params.local_attention / 2) as f32;
        let outside = offsets(t, dev).abs().greater_elem(half).float();
        let local_mask = pad_mask.clone() + outside.clone().mul_scalar(HIDDEN).reshape([1, 1, t, t]);
        // With hidden keys, a local row can see none: its context must be zero, not the
        // uniform average a finite mask would give.
        let local_rows = key_lens.map(|_| {
            let visible = (outside.neg() + 1.0).reshape([1, 1, t, t]) * keys.reshape([b, 1, 1, t]);
            visible.sum_dim(3).greater_elem(0.0).float()
        });
        for layer in &self.layers {
            let a = match &layer.attn_ln {
                Some(n) => layer_norm(x.clone(), n, eps),
                None => x.clone(),
            };
            let qkv = layer.qkv.forward(a);
            let (theta, mask, rows) = if layer.global {
                (self.params.global_rope_theta, pad_mask.clone(), None)
            } else {
                (self.params.local_rope_theta, local_mask.clone(), local_rows.as_ref())
            };
            let q = self.rotary.apply(heads(&qkv, 0, b, t, nh, dh), theta);
            let k = self.rotary.apply(heads(&qkv, h, b, t, nh, dh), theta);
            let v = heads(&qkv, 2 * h, b, t, nh, dh);
            x = x + layer.o.forward(attend(q, k, v, mask, rows));
            // GeGLU: the activation on the first half of Wi's outputs, times the second.
            let u = layer.up.forward(layer_norm(x.clone(), &layer.ffn_ln, eps));
            let input = u.clone().slice([0..b * t, 0..inter]);
            let gate = u.slice([0..b * t, inter..2 * inter]);
            let act = match cfg.activation {
                Activation::Gelu => gelu(input),
                Activation::GeluTanh => gelu_approximate(input),
            };
            x = x + layer.down.forward(act * gate);
        }
        (layer_norm(x, &self.final_ln, eps), mask, t)
    }

    /// Pooled (and, if the model says so, normalised) vectors, one per input.
    pub fn embed(&self, batch: &[Encoded]) -> Vec<Vec<f32>> {
        if batch.is_empty() {
            return Vec::new();
        }
        let (x, mask, t) = self.encode(batch);
        rows(&pool(&self.cfg, x, mask, t, batch), self.cfg.hidden_size)
    }
}

impl PaddedEncoder for BurnModernBert {
    fn hidden_size(&self) -> usize {
        self.cfg.hidden_size
    }

    fn encode_keys(&self, batch: &[Encoded], key_lens: Option<&[usize]>) -> (Tensor<2>, Tensor<2>, usize) {
        self.encode_keys_impl(batch, key_lens)
    }
}

struct DecLayer {
    attn_norm: Tensor<2>,
    /// q, k and v stacked by output.
    qkv: Proj,
    /// Per-head RMSNorm weights `[1, head_dim]` of queries and keys (Qwen3).
    qk_norm: Option<(Tensor<2>, Tensor<2>)>,
    o: Proj,
    ffn_norm: Tensor<2>,
    /// gate and up stacked by output.
    gate_up: Proj,
    down: Proj,
}

/// A decoder embedder on burn: see the module documentation.
pub struct BurnDecoder {
    cfg: ModelConfig,
    p: DecoderParams,
    device: Device,
    word: Tensor<2>,
    layers: Vec<DecLayer>,
    norm: Tensor<2>,
    rotary: Rotary,
}

impl BurnDecoder {
    pub fn new(weights: &ModelWeights, device: Device) -> Result<Self> {
        let cfg = weights.config.clone();
        let p = match (&cfg.architecture, &cfg.decoder) {
            (Architecture::Decoder, Some(p)) => p.clone(),
            _ => return Err(Error::Config("not a decoder model (no decoder settings)".into())),
        };
        if p.num_kv_heads == 0 || !cfg.num_heads.is_multiple_of(p.num_kv_heads) || p.head_dim == 0 || p.head_dim % 2 != 0 {
            return Err(Error::Config(format!(
                "decoder with {} heads, {} key/value heads, head_dim {}: heads must be a multiple of \
                 key/value heads and head_dim even",
                cfg.num_heads, p.num_kv_heads, p.head_dim
            )));
        }
        weights.validate()?;
        let (h, hd, inter) = (cfg.hidden_size, p.head_dim, cfg.intermediate_size);
        let (qd, kvd) = (cfg.num_heads * hd, p.num_kv_heads * hd);
        let dev = &device;
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for l in 0..cfg.num_layers {
            let n = |s: &str| format!("layer.{l}.{s}");
            layers.push(DecLayer {
                attn_norm: row(weights, &n("attn_norm.weight"), h, false, dev)?,
                qkv: Proj::load(weights, &[&n("q"), &n("k"), &n("v")], qd + 2 * kvd, h, dev)?,
                qk_norm: if p.qk_norm {
                    Some((row(weights, &n("q_norm.weight"), hd, false, dev)?, row(weights, &n("k_norm.weight"), hd, false, dev)?))
                } else {
                    None
                },
                o: Proj::load(weights, &[&n("o")], h, qd, dev)?,
                ffn_norm: row(weights, &n("ffn_norm.weight"), h, false, dev)?,
                gate_up: Proj::load(weights, &[&n("gate"), &n("up")], 2 * inter, h, dev)?,
                down: Proj::load(weights, &[&n("down")], h, inter, dev)?,
            });
        }
        Ok(BurnDecoder {
            word: table(weights, "emb.word", dev)?,
            norm: row(weights, "norm.weight", h, false, dev)?,
            layers,
            rotary: Rotary::new(hd, dev),
            p,
            cfg,
            device,
        })
    }

    /// Final hidden states `[B*T, H]` (after the last RMSNorm) of `batch` as given, the float
    /// mask `[B, T]` and the padded length `T`.
    fn encode(&self, batch: &[Encoded]) -> (Tensor<2>, Tensor<2>, usize) {
        let cfg = &self.cfg;
        let (hd, nh, kv, inter) = (self.p.head_dim, cfg.num_heads, self.p.num_kv_heads, cfg.intermediate_size);
        let (qd, kvd, group) = (nh * hd, kv * hd, nh / kv);
        let eps = self.p.rms_norm_eps;
        let theta = self.p.rope_theta;
        let dev = &self.device;
        let b = batch.len();
        let t = padded_len(batch);
        let (ids, mask) = ids_and_mask(batch, t, cfg.vocab_size, cfg.pad_token_id, dev);
        let mut x = self.word.clone().select(0, ids);
        // Additive mask: causal `[1, 1, T, T]` plus padding `[B, 1, 1, T]`.
        let causal = offsets(t, dev).greater_elem(0.0).float().mul_scalar(HIDDEN).reshape([1, 1, t, t]);
        let mask4 = causal + (mask.clone() - 1.0).mul_scalar(-HIDDEN).reshape([b, 1, 1, t]);
        // Key/value head `g` serves query heads `g·group .. (g+1)·group` (HF `repeat_kv`).
        let repeat = |x: Tensor<4>| -> Tensor<4> {
            if group == 1 {
                return x;
            }
            x.reshape([b, kv, 1, t, hd]).repeat_dim(2, group).reshape([b, nh, t, hd])
        };
        for layer in &self.layers {
            let mut qkv = layer.qkv.forward(rms_norm(x.clone(), &layer.attn_norm, eps));
            if let Some((qn, kn)) = &layer.qk_norm {
                // Per-head RMSNorm of queries and keys, before the rotation.
                let q = rms_norm(qkv.clone().slice([0..b * t, 0..qd]).reshape([b * t * nh, hd]), qn, eps);
                let k = rms_norm(qkv.clone().slice([0..b * t, qd..qd + kvd]).reshape([b * t * kv, hd]), kn, eps);
                let v = qkv.slice([0..b * t, qd + kvd..qd + 2 * kvd]);
                qkv = Tensor::cat(vec![q.reshape([b * t, qd]), k.reshape([b * t, kvd]), v], 1);
            }
            let q = self.rotary.apply(heads(&qkv, 0, b, t, nh, hd), theta);
            let k = repeat(self.rotary.apply(heads(&qkv, qd, b, t, kv, hd), theta));
            let v = repeat(heads(&qkv, qd + kvd, b, t, kv, hd));
            x = x + layer.o.forward(attend(q, k, v, mask4.clone(), None));
            // SwiGLU: down(silu(gate(a)) · up(a)).
            let gu = layer.gate_up.forward(rms_norm(x.clone(), &layer.ffn_norm, eps));
            let g = gu.clone().slice([0..b * t, 0..inter]);
            let u = gu.slice([0..b * t, inter..2 * inter]);
            x = x + layer.down.forward(silu(g) * u);
        }
        (rms_norm(x, &self.norm, eps), mask, t)
    }

    /// Pooled (and, if the model says so, normalised) vectors, one per input; with last-token
    /// pooling on the end-of-sequence token, appended where the tokenizer did not.
    pub fn embed(&self, batch: &[Encoded]) -> Vec<Vec<f32>> {
        if batch.is_empty() {
            return Vec::new();
        }
        let batch = with_eos(&self.cfg, &self.p, batch);
        let (x, mask, t) = self.encode(&batch);
        rows(&pool(&self.cfg, x, mask, t, &batch), self.cfg.hidden_size)
    }
}
