//! The decoder embedder (Qwen3 / Qwen2 / Llama family) on ponder's native CPU runtime, f32 or
//! int8 Linear layers: token embeddings, then per layer pre-RMSNorm grouped-query causal
//! attention with rotary positions (Qwen3 also RMS-normalises each query and key head before
//! the rotation) and a pre-RMSNorm SwiGLU feed-forward, each added to the residual stream; a
//! final RMSNorm; last-token pooling. Inputs are packed back to back without padding, each
//! starting at position 0. Owns appending the end-of-sequence token that last-token pooling
//! lands on when the tokenizer did not add it. Rotary positions and attention come from
//! `attention.rs`, Linear layers and pooling from `native.rs`.

use std::borrow::Cow;

use rayon::prelude::*;

use super::attention::{attend, rotary, Mask};
use super::native::{pool, Linear};
use super::tokenize::Encoded;
use crate::error::{Error, Result};
use crate::model::config::{Architecture, DecoderParams, ModelConfig, Pooling};
use crate::model::{ModelWeights, Precision, WeightTensor};

struct Layer {
    attn_norm: Vec<f32>,
    /// q, k and v stacked: `heads·head_dim + 2·kv_heads·head_dim` outputs.
    qkv: Linear,
    /// Per-head RMSNorm weights of queries and keys (Qwen3).
    qk_norm: Option<(Vec<f32>, Vec<f32>)>,
    o: Linear,
    ffn_norm: Vec<f32>,
    /// gate and up stacked: `2·intermediate` outputs.
    gate_up: Linear,
    down: Linear,
}

pub struct NativeDecoder {
    cfg: ModelConfig,
    p: DecoderParams,
    word: WeightTensor,
    layers: Vec<Layer>,
    norm: Vec<f32>,
}

/// RMSNorm of each `w.len()`-wide row of `x` in place: `x / sqrt(mean(x²) + eps) · w`.
pub fn rms_norm(x: &mut [f32], w: &[f32], eps: f32) {
    let n = w.len();
    let norm_row = |row: &mut [f32]| {
        let ms = row.iter().map(|v| v * v).sum::<f32>() / n as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        row.iter_mut().zip(w).for_each(|(v, g)| *v = *v * inv * g);
    };
    if x.len() >= 64 * n {
        x.par_chunks_mut(n * 16).for_each(|rows| rows.chunks_exact_mut(n).for_each(norm_row));
    } else {
        x.chunks_exact_mut(n).for_each(norm_row);
    }
}

fn silu(v: f32) -> f32 {
    v / (1.0 + (-v).exp())
}

impl NativeDecoder {
    pub fn new(weights: &ModelWeights, precision: Precision) -> Result<Self> {
        let cfg = weights.config.clone();
        let p = match (&cfg.architecture, &cfg.decoder) {
            (Architecture::Decoder, Some(p)) => p.clone(),
            _ => return Err(Error::Config("not a decoder model (no decoder settings)".into())),
        };
        if p.num_kv_heads == 0 || cfg.num_heads % p.num_kv_heads != 0 || p.head_dim == 0 || p.head_dim % 2 != 0 {
            return Err(Error::Config(format!(
                "decoder with {} heads, {} key/value heads, head_dim {}: heads must be a multiple of \
                 key/value heads and head_dim even",
                cfg.num_heads, p.num_kv_heads, p.head_dim
            )));
        }
        // Shapes of every tensor were checked against the layout (`ModelWeights::validate`).
        weights.validate()?;
        let f32s = |name: String| -> Result<Vec<f32>> { Ok(weights.get(&name)?.to_f32()) };
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for l in 0..cfg.num_layers {
            let n = |s: &str| format!("layer.{l}.{s}");
            layers.push(Layer {
                attn_norm: f32s(n("attn_norm.weight"))?,
                qkv: Linear::load(weights, &[&n("q"), &n("k"), &n("v")], precision)?,
                qk_norm: if p.qk_norm { Some((f32s(n("q_norm.weight"))?, f32s(n("k_norm.weight"))?)) } else { None },
                o: Linear::load(weights, &[&n("o")], precision)?,
                ffn_norm: f32s(n("ffn_norm.weight"))?,
                gate_up: Linear::load(weights, &[&n("gate"), &n("up")], precision)?,
                down: Linear::load(weights, &[&n("down")], precision)?,
            });
        }
        Ok(NativeDecoder { word: weights.get("emb.word")?.clone(), norm: f32s("norm.weight".into())?, layers, p, cfg })
    }

    /// Final hidden states (after the last RMSNorm) of every token of `batch` as given,
    /// sequences back to back (`[sum of lengths, hidden]`).
    pub fn hidden_states(&self, batch: &[Encoded]) -> Vec<f32> {
        let cfg = &self.cfg;
        let (h, hd, heads, kv) = (cfg.hidden_size, self.p.head_dim, cfg.num_heads, self.p.num_kv_heads);
        let (qd, kvd) = (heads * hd, kv * hd);
        let w = qd + 2 * kvd;
        let eps = self.p.rms_norm_eps;
        let inter = cfg.intermediate_size;
        let lens: Vec<usize> = batch.iter().map(|e| e.ids.len()).collect();
        let m: usize = lens.iter().sum();
        if m == 0 {
            return Vec::new();
        }
        let mut x = vec![0f32; m * h];
        for (row, &id) in x.chunks_exact_mut(h).zip(batch.iter().flat_map(|e| &e.ids)) {
            self.word.row_into((id as usize).min(cfg.vocab_size - 1), row);
        }
        let mut a = vec![0f32; m * h];
        let mut ctx = vec![0f32; m * qd];
        for layer in &self.layers {
            // Attention block.
            a.copy_from_slice(&x);
            rms_norm(&mut a, &layer.attn_norm, eps);
            let mut qkv = layer.qkv.forward(&a, m);
            // Per sequence: per-head q/k RMSNorm (Qwen3), then rotary positions from 0.
            let mut seqs: Vec<&mut [f32]> = Vec::with_capacity(lens.len());
            let mut rest = &mut qkv[..];
            for &len in &lens {
                let (s, r) = rest.split_at_mut(len * w);
                seqs.push(s);
                rest = r;
            }
            seqs.into_par_iter().zip(&lens).for_each(|(s, &len)| {
                if let Some((qn, kn)) = &layer.qk_norm {
                    for row in s.chunks_exact_mut(w) {
                        rms_norm(&mut row[..qd], qn, eps);
                        rms_norm(&mut row[qd..qd + kvd], kn, eps);
                    }
                }
                rotary(s, len, w, heads, hd, self.p.rope_theta);
                rotary(&mut s[qd..], len, w, kv, hd, self.p.rope_theta);
            });
            let mut outs: Vec<&mut [f32]> = Vec::with_capacity(lens.len());
            let mut rest = &mut ctx[..];
            for &len in &lens {
                let (s, r) = rest.split_at_mut(len * qd);
                outs.push(s);
                rest = r;
            }
            let starts: Vec<usize> = lens.iter().scan(0, |acc, &l| {
                let s = *acc;
                *acc += l;
                Some(s)
            }).collect();
            outs.into_par_iter().zip(starts.par_iter().zip(&lens)).for_each(|(out, (&row0, &len))| {
                if len == 0 {
                    return;
                }
                let s = &qkv[row0 * w..(row0 + len) * w];
                attend(s, w, &s[qd..], w, &s[qd + kvd..], w, len, heads, kv, hd, Mask::Causal, out);
            });
            let o = layer.o.forward(&ctx, m);
            x.iter_mut().zip(&o).for_each(|(x, o)| *x += o);
            // Feed-forward block: down(silu(gate(a)) · up(a)).
            a.copy_from_slice(&x);
            rms_norm(&mut a, &layer.ffn_norm, eps);
            let gu = layer.gate_up.forward(&a, m);
            let mut u = vec![0f32; m * inter];
            u.par_chunks_mut(inter).zip(gu.par_chunks(2 * inter)).for_each(|(u, gu)| {
                let (g, up) = gu.split_at(inter);
                u.iter_mut().zip(g.iter().zip(up)).for_each(|(u, (g, up))| *u = silu(*g) * up);
            });
            let d = layer.down.forward(&u, m);
            x.iter_mut().zip(&d).for_each(|(x, d)| *x += d);
        }
        rms_norm(&mut x, &self.norm, eps);
        x
    }

    /// The inputs as the model pools them: with last-token pooling, the end-of-sequence token
    /// is appended to every input that does not already end with it (Qwen3-Embedding's
    /// tokenizer adds it itself; others may not).
    pub fn with_eos<'a>(&self, batch: &'a [Encoded]) -> Cow<'a, [Encoded]> {
        with_eos(&self.cfg, &self.p, batch)
    }

    /// Pooled (and, if the model says so, normalised) vectors, one per input.
    pub fn embed(&self, batch: &[Encoded]) -> Vec<Vec<f32>> {
        let batch = self.with_eos(batch);
        pool(&self.cfg, &self.hidden_states(&batch), &batch)
    }
}

/// [`NativeDecoder::with_eos`] for any runtime of the model (`burn_archs.rs` too).
pub fn with_eos<'a>(cfg: &ModelConfig, p: &DecoderParams, batch: &'a [Encoded]) -> Cow<'a, [Encoded]> {
    let Some(eos) = p.eos_token_id.filter(|_| cfg.pooling == Pooling::LastToken) else {
        return Cow::Borrowed(batch);
    };
    if batch.iter().all(|e| e.ids.last() == Some(&eos)) {
        return Cow::Borrowed(batch);
    }
    Cow::Owned(
        batch
            .iter()
            .map(|e| {
                let mut e = e.clone();
                if e.ids.last() != Some(&eos) {
                    e.ids.push(eos);
                    e.type_ids.push(0);
                }
                e
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_matches_its_definition() {
        let w = [1.0f32, 2.0, 0.5, -1.0];
        let mut x = vec![1.0f32, -2.0, 3.0, 0.5, 0.0, 0.0, 0.0, 0.0];
        rms_norm(&mut x, &w, 1e-6);
        let ms: f32 = (1.0 + 4.0 + 9.0 + 0.25) / 4.0;
        let inv = 1.0 / (ms + 1e-6f32).sqrt();
        let want = [1.0 * inv, -4.0 * inv, 1.5 * inv, -0.5 * inv];
        for (a, b) in x[..4].iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        // An all-zero row stays zero (eps keeps it finite).
        assert!(x[4..].iter().all(|v| *v == 0.0));
        // Many rows take the parallel path with the same result.
        let row = [1.0f32, -2.0, 3.0, 0.5];
        let mut big: Vec<f32> = row.iter().copied().cycle().take(4 * 1000).collect();
        rms_norm(&mut big, &w, 1e-6);
        assert!(big.chunks(4).all(|r| r.iter().zip(&x[..4]).all(|(a, b)| a == b)));
    }

    #[test]
    fn silu_is_x_times_sigmoid() {
        assert_eq!(silu(0.0), 0.0);
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
        assert!((silu(-20.0)).abs() < 1e-6);
    }
}
