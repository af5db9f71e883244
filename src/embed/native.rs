//! ponder's own CPU runtime for BERT encoders: f32 or int8 Linear layers, variable-length
//! batches without padding (every token row is a real token; attention runs per sequence),
//! pooling and normalisation. Kernels live in `kernels.rs`.

use rayon::prelude::*;

use super::kernels::{self, PackedI8, Post, QuantRows};
use super::tokenize::Encoded;
use crate::error::Result;
use crate::model::config::{Activation, Head, ModelConfig, Pooling};
use crate::model::{ModelWeights, Precision};

/// A Linear layer (f32 or int8 per output channel); a missing `{name}.bias` is zero, for
/// architectures without biases.
pub(crate) enum Linear {
    F32 { w: Vec<f32>, bias: Vec<f32>, n: usize, k: usize },
    I8 { w: PackedI8, bias: Vec<f32> },
}

impl Linear {
    pub(crate) fn load(weights: &ModelWeights, names: &[&str], precision: Precision) -> Result<Self> {
        // Several Linear layers with the same input may be fused (q, k, v) by stacking rows.
        let mut w = Vec::new();
        let mut bias = Vec::new();
        let mut k = 0;
        let tensors = names.iter().map(|name| weights.get(&format!("{name}.weight"))).collect::<Result<Vec<_>>>()?;
        // int8 weights run as stored; only otherwise are f32 values needed (dequantizing
        // them anyway cost 42 MB of allocation and about 15 ms on every start).
        let all_i8 = precision == Precision::Int8 && tensors.iter().all(|t| t.i8_parts().is_some());
        let mut i8_parts: Option<(Vec<i8>, Vec<f32>)> = all_i8.then(|| (Vec::new(), Vec::new()));
        for (name, t) in names.iter().zip(&tensors) {
            match weights.tensors.get(&format!("{name}.bias")) {
                Some(b) => bias.extend(b.to_f32()),
                None => bias.extend(std::iter::repeat_n(0f32, t.shape[0])),
            }
            k = t.shape[1];
            match (t.i8_parts(), &mut i8_parts) {
                (Some((q, s)), Some((qa, sa))) => {
                    qa.extend_from_slice(q);
                    sa.extend_from_slice(s);
                }
                _ => w.extend(t.to_f32()),
            }
        }
        let n = bias.len();
        Ok(match (precision, i8_parts) {
            (Precision::Int8, Some((q, s))) => Linear::I8 { w: PackedI8::pack(&q, &s, n, k), bias },
            (Precision::Int8, None) => {
                // f32/f16 weights asked to run int8: quantize now.
                let (q, s) = crate::model::quant::quantize_rows_i8(&w, n, k);
                Linear::I8 { w: PackedI8::pack(&q, &s, n, k), bias }
            }
            _ => Linear::F32 { w, bias, n, k },
        })
    }

    pub(crate) fn n(&self) -> usize {
        match self {
            Linear::F32 { n, .. } => *n,
            Linear::I8 { w, .. } => w.n,
        }
    }

    /// `x · wᵀ + bias` for `m` rows of `x`.
    pub(crate) fn forward(&self, x: &[f32], m: usize) -> Vec<f32> {
        let mut y = vec![0f32; m * self.n()];
        match self {
            Linear::F32 { w, bias, n, k } => kernels::gemm_f32_bias(x, w, bias, &mut y, m, *n, *k),
            Linear::I8 { w, bias } => {
                let xq = kernels::quantize_rows(x, m, w.k);
                kernels::gemm_i8_bias(&xq, w, bias, &mut y, m);
            }
        }
        y
    }

    /// `y = post(x · wᵀ + bias)` into `y` (resized, allocation kept). An int8 layer reads its
    /// input from `xq` (the rows of `x`, already quantized) and, given `qout`, quantizes its
    /// output rows for the next int8 layer in the same pass; an f32 layer reads `x`.
    fn run(&self, x: &[f32], xq: &QuantRows, m: usize, y: &mut Vec<f32>, post: Post, qout: Option<&mut QuantRows>) {
        y.resize(m * self.n(), 0.0);
        match self {
            Linear::F32 { w, bias, n, k } => {
                kernels::gemm_f32_bias(x, w, bias, y, m, *n, *k);
                y.par_chunks_mut(64 * n).enumerate().for_each(|(t, c)| post.apply(c, t * 64, *n));
                if let Some(q) = qout {
                    kernels::quantize_rows_into(y, m, *n, q);
                }
            }
            Linear::I8 { w, bias } => kernels::gemm_i8(xq, w, bias, y, m, post, qout),
        }
    }

    fn is_i8(&self) -> bool {
        matches!(self, Linear::I8 { .. })
    }
}

/// Scratch buffers up to this size are kept for the next forward pass.
const SCRATCH_KEEP_BYTES: usize = 64 << 20;

/// Activations of one forward pass, reused from layer to layer.
#[derive(Default)]
struct Scratch {
    /// Layer input / output (the residual stream), `[m, h]`.
    x: Vec<f32>,
    xq: QuantRows,
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    ctxq: QuantRows,
    /// After attention's output projection and LayerNorm, `[m, h]`.
    a: Vec<f32>,
    aq: QuantRows,
    /// FFN intermediate, `[m, ffn]`.
    u: Vec<f32>,
    uq: QuantRows,
}

struct Layer {
    qkv: Linear,
    o: Linear,
    attn_ln: (Vec<f32>, Vec<f32>),
    up: Linear,
    down: Linear,
    ffn_ln: (Vec<f32>, Vec<f32>),
}

pub struct NativeBert {
    cfg: ModelConfig,
    word: crate::model::WeightTensor,
    pos: Vec<f32>,
    types: Vec<f32>,
    emb_ln: (Vec<f32>, Vec<f32>),
    layers: Vec<Layer>,
    pooler: Option<(Linear, Vec<f32>, f32)>,
    /// Buffers of the last forward pass (if small enough), for the next one.
    scratch: std::sync::Mutex<Option<Scratch>>,
}

fn ln(weights: &ModelWeights, name: &str) -> Result<(Vec<f32>, Vec<f32>)> {
    Ok((weights.get(&format!("{name}.weight"))?.to_f32(), weights.get(&format!("{name}.bias"))?.to_f32()))
}

impl Scratch {
    fn bytes(&self) -> usize {
        let f = self.x.capacity() + self.qkv.capacity() + self.ctx.capacity() + self.a.capacity() + self.u.capacity();
        let q = [&self.xq, &self.ctxq, &self.aq, &self.uq].iter().map(|q| q.data.capacity() + 4 * q.scales.capacity()).sum::<usize>();
        4 * f + q
    }
}

impl NativeBert {
    pub fn new(weights: &ModelWeights, precision: Precision) -> Result<Self> {
        let cfg = weights.config.clone();
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for l in 0..cfg.num_layers {
            let p = |s: &str| format!("layer.{l}.{s}");
            layers.push(Layer {
                qkv: Linear::load(weights, &[&p("q"), &p("k"), &p("v")], precision)?,
                o: Linear::load(weights, &[&p("o")], precision)?,
                attn_ln: ln(weights, &p("attn_ln"))?,
                up: Linear::load(weights, &[&p("up")], precision)?,
                down: Linear::load(weights, &[&p("down")], precision)?,
                ffn_ln: ln(weights, &p("ffn_ln"))?,
            });
        }
        let pooler = if cfg.head == Head::Classifier {
            Some((
                Linear::load(weights, &["pooler"], Precision::F32)?,
                weights.get("classifier.weight")?.to_f32(),
                weights.get("classifier.bias")?.to_f32()[0],
            ))
        } else {
            None
        };
        Ok(NativeBert {
            word: weights.get("emb.word")?.clone(),
            pos: weights.get("emb.pos")?.to_f32(),
            types: weights.get("emb.type")?.to_f32(),
            emb_ln: ln(weights, "emb.ln")?,
            layers,
            pooler,
            cfg,
            scratch: Default::default(),
        })
    }

    /// Final hidden states of every token, concatenated (`[sum of lengths, hidden]`), for
    /// late interaction; with `key_lens`, sequence `b`'s tokens attend only to its first
    /// `key_lens[b]` tokens.
    pub fn hidden_states(&self, batch: &[Encoded], key_lens: Option<&[usize]>) -> Vec<f32> {
        self.encode_keys(batch, key_lens)
    }

    /// Final hidden states of every token, concatenated (`[sum of lengths, hidden]`).
    fn encode(&self, batch: &[Encoded]) -> Vec<f32> {
        self.encode_keys(batch, None)
    }

    fn encode_keys(&self, batch: &[Encoded], key_lens: Option<&[usize]>) -> Vec<f32> {
        let h = self.cfg.hidden_size;
        let total: usize = batch.iter().map(|e| e.ids.len()).sum();
        let mut x = vec![0f32; total * h];
        let mut row = 0;
        for e in batch {
            for (p, (&id, &tt)) in e.ids.iter().zip(&e.type_ids).enumerate() {
                let out = &mut x[row * h..(row + 1) * h];
                let id = (id as usize).min(self.cfg.vocab_size - 1);
                self.word.row_into(id, out);
                let tt = (tt as usize).min(self.cfg.type_vocab_size - 1);
                for ((o, pv), tv) in out.iter_mut().zip(&self.pos[p * h..(p + 1) * h]).zip(&self.types[tt * h..(tt + 1) * h]) {
                    *o += pv + tv;
                }
                row += 1;
            }
        }
        kernels::layer_norm(&mut x, &self.emb_ln.0, &self.emb_ln.1, self.cfg.layer_norm_eps);
        let lens: Vec<usize> = batch.iter().map(|e| e.ids.len()).collect();
        let int8 = self.layers.first().is_some_and(|l| l.qkv.is_i8());
        // Reuse the last pass's buffers (page faults on fresh ones cost a few percent).
        let mut sc = self.scratch.lock().ok().and_then(|mut s| s.take()).unwrap_or_default();
        sc.x = x;
        if int8 {
            kernels::quantize_rows_into(&sc.x, total, h, &mut sc.xq);
        }
        for (i, layer) in self.layers.iter().enumerate() {
            let last = i + 1 == self.layers.len();
            self.layer(layer, &mut sc, &lens, key_lens, total, int8 && !last);
        }
        let x = std::mem::take(&mut sc.x);
        if sc.bytes() <= SCRATCH_KEEP_BYTES {
            if let Ok(mut s) = self.scratch.lock() {
                *s = Some(sc);
            }
        }
        x
    }

    /// One encoder layer on `sc.x` (and `sc.xq`), leaving its output there; `quantize_out`
    /// asks for `sc.xq` to be refreshed for the next layer.
    fn layer(&self, layer: &Layer, sc: &mut Scratch, lens: &[usize], key_lens: Option<&[usize]>, m: usize, quantize_out: bool) {
        let cfg = &self.cfg;
        let h = cfg.hidden_size;
        let eps = cfg.layer_norm_eps;
        layer.qkv.run(&sc.x, &sc.xq, m, &mut sc.qkv, Post::None, None);
        sc.ctx.resize(m * h, 0.0);
        match key_lens {
            Some(k) => kernels::attention_key_prefix(&sc.qkv, lens, k, cfg.num_heads, cfg.head_dim(), &mut sc.ctx),
            None => kernels::attention(&sc.qkv, lens, cfg.num_heads, cfg.head_dim(), &mut sc.ctx),
        }
        if layer.o.is_i8() {
            kernels::quantize_rows_into(&sc.ctx, m, h, &mut sc.ctxq);
        }
        let (g, b) = (&layer.attn_ln.0[..], &layer.attn_ln.1[..]);
        let post = Post::AddLayerNorm { residual: &sc.x, gamma: g, beta: b, eps };
        layer.o.run(&sc.ctx, &sc.ctxq, m, &mut sc.a, post, layer.up.is_i8().then_some(&mut sc.aq));
        let tanh = matches!(cfg.activation, Activation::GeluTanh);
        if let (Linear::I8 { w: up, bias: ub }, Linear::I8 { w: down, bias: db }) = (&layer.up, &layer.down) {
            let ln = (&layer.ffn_ln.0[..], &layer.ffn_ln.1[..], eps);
            let xq = quantize_out.then_some(&mut sc.xq);
            if kernels::ffn_i8(&sc.aq, &sc.a, up, ub, tanh, down, db, ln, &mut sc.x, m, xq) {
                return;
            }
        }
        layer.up.run(&sc.a, &sc.aq, m, &mut sc.u, Post::Gelu { tanh }, layer.down.is_i8().then_some(&mut sc.uq));
        // The output replaces x; x's old contents are no longer needed (a is the residual).
        let (g, b) = (&layer.ffn_ln.0[..], &layer.ffn_ln.1[..]);
        let post = Post::AddLayerNorm { residual: &sc.a, gamma: g, beta: b, eps };
        layer.down.run(&sc.u, &sc.uq, m, &mut sc.x, post, quantize_out.then_some(&mut sc.xq));
    }

    /// Pooled (and, if the model says so, L2-normalised) vectors, one per input.
    pub fn embed(&self, batch: &[Encoded]) -> Vec<Vec<f32>> {
        pool(&self.cfg, &self.encode(batch), batch)
    }

    /// Relevance logits of a cross-encoder (one per encoded pair).
    pub fn score(&self, batch: &[Encoded]) -> Vec<f32> {
        let h = self.cfg.hidden_size;
        let Some((pooler, cw, cb)) = &self.pooler else {
            return Vec::new();
        };
        let x = self.encode(batch);
        let mut cls = Vec::with_capacity(batch.len() * h);
        let mut row = 0;
        for e in batch {
            cls.extend_from_slice(&x[row * h..(row + 1) * h]);
            row += e.ids.len();
        }
        let mut p = pooler.forward(&cls, batch.len());
        p.iter_mut().for_each(|v| *v = v.tanh());
        p.chunks_exact(h).map(|r| r.iter().zip(cw).map(|(a, b)| a * b).sum::<f32>() + cb).collect()
    }
}

pub fn l2_normalize(v: &mut [f32]) {
    let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|a| *a /= n);
    }
}

/// Pooled (and, if the model says so, L2-normalised) vectors of packed hidden states `x`
/// (`[rows of all sequences, hidden]`, sequences back to back), one per input.
pub(crate) fn pool(cfg: &ModelConfig, x: &[f32], batch: &[Encoded]) -> Vec<Vec<f32>> {
    let h = cfg.hidden_size;
    let mut out = Vec::with_capacity(batch.len());
    let mut row = 0;
    for e in batch {
        let len = e.ids.len();
        let mut v = vec![0f32; h];
        match cfg.pooling {
            Pooling::Cls | Pooling::LastToken if len == 0 => {}
            Pooling::Cls => v.copy_from_slice(&x[row * h..(row + 1) * h]),
            Pooling::LastToken => v.copy_from_slice(&x[(row + len - 1) * h..(row + len) * h]),
            Pooling::Mean => {
                for r in row..row + len {
                    v.iter_mut().zip(&x[r * h..(r + 1) * h]).for_each(|(a, b)| *a += b);
                }
                let inv = 1.0 / len.max(1) as f32;
                v.iter_mut().for_each(|a| *a *= inv);
            }
        }
        if cfg.normalize {
            l2_normalize(&mut v);
        }
        out.push(v);
        row += len;
    }
    out
}
