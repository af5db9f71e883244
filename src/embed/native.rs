//! ponder's own CPU runtime for BERT encoders: f32 or int8 Linear layers, variable-length
//! batches without padding (every token row is a real token; attention runs per sequence),
//! pooling and normalisation. Kernels live in `kernels.rs`.

use rayon::prelude::*;

use super::kernels::{self, PackedI8};
use super::tokenize::Encoded;
use crate::error::Result;
use crate::model::config::{Activation, Head, ModelConfig, Pooling};
use crate::model::{ModelWeights, Precision};

enum Linear {
    F32 { w: Vec<f32>, bias: Vec<f32>, n: usize, k: usize },
    I8 { w: PackedI8, bias: Vec<f32> },
}

impl Linear {
    fn load(weights: &ModelWeights, names: &[&str], precision: Precision) -> Result<Self> {
        // Several Linear layers with the same input may be fused (q, k, v) by stacking rows.
        let mut w = Vec::new();
        let mut bias = Vec::new();
        let mut k = 0;
        let mut i8_parts: Option<(Vec<i8>, Vec<f32>)> = Some((Vec::new(), Vec::new()));
        for name in names {
            let t = weights.get(&format!("{name}.weight"))?;
            bias.extend(weights.get(&format!("{name}.bias"))?.to_f32());
            k = t.shape[1];
            match (precision, t.i8_parts(), &mut i8_parts) {
                (Precision::Int8, Some((q, s)), Some((qa, sa))) => {
                    qa.extend_from_slice(q);
                    sa.extend_from_slice(s);
                }
                _ => i8_parts = None,
            }
            w.extend(t.to_f32());
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

    fn n(&self) -> usize {
        match self {
            Linear::F32 { n, .. } => *n,
            Linear::I8 { w, .. } => w.n,
        }
    }

    fn forward(&self, x: &[f32], m: usize) -> Vec<f32> {
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
}

fn ln(weights: &ModelWeights, name: &str) -> Result<(Vec<f32>, Vec<f32>)> {
    Ok((weights.get(&format!("{name}.weight"))?.to_f32(), weights.get(&format!("{name}.bias"))?.to_f32()))
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
        })
    }

    /// Final hidden states of every token, concatenated (`[sum of lengths, hidden]`).
    fn encode(&self, batch: &[Encoded]) -> Vec<f32> {
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
        for layer in &self.layers {
            x = self.layer(layer, x, &lens, total);
        }
        x
    }

    fn layer(&self, layer: &Layer, x: Vec<f32>, lens: &[usize], m: usize) -> Vec<f32> {
        let cfg = &self.cfg;
        let h = cfg.hidden_size;
        let qkv = layer.qkv.forward(&x, m);
        let ctx = attention(&qkv, lens, cfg.num_heads, cfg.head_dim());
        let mut a = layer.o.forward(&ctx, m);
        par_add_layer_norm(&mut a, &x, &layer.attn_ln, h, cfg.layer_norm_eps);
        let mut u = layer.up.forward(&a, m);
        u.par_chunks_mut(64 * cfg.intermediate_size).for_each(|c| match cfg.activation {
            Activation::Gelu => kernels::gelu_erf(c),
            Activation::GeluTanh => kernels::gelu_tanh(c),
        });
        let mut d = layer.down.forward(&u, m);
        debug_assert_eq!(d.len(), m * h);
        par_add_layer_norm(&mut d, &a, &layer.ffn_ln, h, cfg.layer_norm_eps);
        d
    }

    /// Pooled (and, if the model says so, L2-normalised) vectors, one per input.
    pub fn embed(&self, batch: &[Encoded]) -> Vec<Vec<f32>> {
        let h = self.cfg.hidden_size;
        let x = self.encode(batch);
        let mut out = Vec::with_capacity(batch.len());
        let mut row = 0;
        for e in batch {
            let len = e.ids.len();
            let mut v = vec![0f32; h];
            match self.cfg.pooling {
                Pooling::Cls => v.copy_from_slice(&x[row * h..(row + 1) * h]),
                Pooling::Mean => {
                    for r in row..row + len {
                        for (a, b) in v.iter_mut().zip(&x[r * h..(r + 1) * h]) {
                            *a += b;
                        }
                    }
                    let inv = 1.0 / len.max(1) as f32;
                    v.iter_mut().for_each(|a| *a *= inv);
                }
            }
            if self.cfg.normalize {
                l2_normalize(&mut v);
            }
            out.push(v);
            row += len;
        }
        out
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

/// `x = LayerNorm(x + residual)`, 64 rows per task.
fn par_add_layer_norm(x: &mut [f32], residual: &[f32], ln: &(Vec<f32>, Vec<f32>), h: usize, eps: f32) {
    x.par_chunks_mut(64 * h)
        .zip(residual.par_chunks(64 * h))
        .for_each(|(xc, rc)| kernels::add_layer_norm(xc, rc, &ln.0, &ln.1, eps));
}

pub fn l2_normalize(v: &mut [f32]) {
    let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|a| *a /= n);
    }
}

/// Multi-head self-attention over packed sequences; `qkv` rows are `[q | k | v]`.
fn attention(qkv: &[f32], lens: &[usize], heads: usize, dh: usize) -> Vec<f32> {
    let h = heads * dh;
    let total: usize = lens.iter().sum();
    let mut ctx = vec![0f32; total * h];
    let scale = 1.0 / (dh as f32).sqrt();
    let mut starts = Vec::with_capacity(lens.len());
    let mut s = 0;
    for &l in lens {
        starts.push(s);
        s += l;
    }
    // One task per (sequence, head); each writes a disjoint column block of ctx rows.
    let tasks: Vec<(usize, usize)> = (0..lens.len()).flat_map(|b| (0..heads).map(move |hd| (b, hd))).collect();
    let results: Vec<(usize, usize, Vec<f32>)> = tasks
        .par_iter()
        .map(|&(b, hd)| {
            let (start, len) = (starts[b], lens[b]);
            let base = &qkv[start * 3 * h..(start + len) * 3 * h];
            let mut scores = vec![0f32; len * len];
            // scores = Q K^T: Q rows at col hd*dh, K rows at col h + hd*dh, row stride 3h.
            kernels::gemm_f32_strided(
                len, len, dh, &mut scores, len,
                &base[hd * dh..], 3 * h, 1,
                &base[h + hd * dh..], 1, 3 * h,
            );
            // softmax(scale * s): the max is taken before scaling, which is the same for scale > 0.
            kernels::softmax_rows(&mut scores, len, scale);
            let mut out = vec![0f32; len * dh];
            kernels::gemm_f32_strided(
                len, dh, len, &mut out, dh,
                &scores, len, 1,
                &base[2 * h + hd * dh..], 3 * h, 1,
            );
            (b, hd, out)
        })
        .collect();
    for (b, hd, out) in results {
        for r in 0..lens[b] {
            let dst = (starts[b] + r) * h + hd * dh;
            ctx[dst..dst + dh].copy_from_slice(&out[r * dh..(r + 1) * dh]);
        }
    }
    ctx
}
