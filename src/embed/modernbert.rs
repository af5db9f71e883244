//! The ModernBERT encoder on ponder's native CPU runtime (f32 and int8 Linear layers).
//!
//! Owns ModernBERT's forward pass over packed batches (every token row real, sequences back to
//! back, positions restarting at 0 for each input): token embeddings → LayerNorm; per layer a
//! pre-LayerNorm residual attention block (fused `Wqkv`, rotary positions on queries and keys,
//! global attention with the global rotary base on every n-th layer from layer 0, a
//! sliding window `|i - j| <= local_attention / 2` with the local base on the others) and a
//! pre-LayerNorm residual GeGLU block (`Wi` rows split into `[input | gate]`,
//! `Wo(act(input) * gate)`); a final LayerNorm; then pooling. Layer 0 has no attention
//! LayerNorm. Tensor names come from `model::arch::modern_bert_layout`.

use rayon::prelude::*;

use super::attention::{self, Mask};
use super::kernels;
use super::native::{self, Linear};
use super::tokenize::Encoded;
use crate::error::{Error, Result};
use crate::model::config::{Activation, Architecture, Head, ModelConfig, ModernBertParams};
use crate::model::{ModelWeights, Precision, WeightTensor};

/// A LayerNorm's scale and shift (zeros when the model has no norm biases).
type Norm = (Vec<f32>, Vec<f32>);

struct Layer {
    /// `None` on layer 0 (an identity in HF).
    attn_ln: Option<Norm>,
    /// Fused q, k, v projection (`[3h, h]`).
    qkv: Linear,
    o: Linear,
    ffn_ln: Norm,
    /// GeGLU input and gate projection (`[2 × intermediate, h]`).
    up: Linear,
    down: Linear,
    /// Global attention (else the sliding window).
    global: bool,
}

pub struct NativeModernBert {
    cfg: ModelConfig,
    params: ModernBertParams,
    word: WeightTensor,
    emb_ln: Norm,
    layers: Vec<Layer>,
    final_ln: Norm,
}

fn norm(weights: &ModelWeights, name: &str, h: usize) -> Result<Norm> {
    let gamma = weights.get(&format!("{name}.weight"))?.to_f32();
    let beta = match weights.tensors.get(&format!("{name}.bias")) {
        Some(b) => b.to_f32(),
        None => vec![0.0; h],
    };
    if gamma.len() != h || beta.len() != h {
        return Err(Error::tensor(name, format!("LayerNorm of width {}/{}, expected {h}", gamma.len(), beta.len())));
    }
    Ok((gamma, beta))
}

/// The model's config and ModernBERT settings, checked for what the runtimes support (an
/// embedding head, an even head width for rotary positions, a sensible layer pattern).
/// Shared by the native runtime and burn's (`burn_archs.rs`).
pub(crate) fn checked_config(weights: &ModelWeights) -> Result<(ModelConfig, ModernBertParams)> {
    let cfg = weights.config.clone();
    if cfg.architecture != Architecture::ModernBert {
        return Err(Error::Config(format!("{:?} model given to the ModernBERT runtime", cfg.architecture)));
    }
    let params = cfg
        .modern_bert
        .clone()
        .ok_or_else(|| Error::Config("ModernBERT model without its ModernBERT settings".into()))?;
    if cfg.head != Head::Embedding {
        return Err(Error::Unsupported("ModernBERT cross-encoders are not supported; only embedding models".into()));
    }
    cfg.validate()?;
    let dh = cfg.head_dim();
    if dh % 2 != 0 {
        return Err(Error::Config(format!("rotary positions need an even head width, got {dh}")));
    }
    if params.global_attn_every_n_layers == 0 || params.local_attention < 2 {
        return Err(Error::Config(format!(
            "global_attn_every_n_layers {} must be at least 1 and local_attention {} at least 2",
            params.global_attn_every_n_layers, params.local_attention
        )));
    }
    Ok((cfg, params))
}

impl NativeModernBert {
    pub fn new(weights: &ModelWeights, precision: Precision) -> Result<Self> {
        let (cfg, params) = checked_config(weights)?;
        let h = cfg.hidden_size;
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for l in 0..cfg.num_layers {
            let p = |s: &str| format!("layer.{l}.{s}");
            let layer = Layer {
                attn_ln: if l == 0 { None } else { Some(norm(weights, &p("attn_ln"), h)?) },
                qkv: Linear::load(weights, &[&p("qkv")], precision)?,
                o: Linear::load(weights, &[&p("o")], precision)?,
                ffn_ln: norm(weights, &p("ffn_ln"), h)?,
                up: Linear::load(weights, &[&p("up")], precision)?,
                down: Linear::load(weights, &[&p("down")], precision)?,
                global: l % params.global_attn_every_n_layers == 0,
            };
            let i = cfg.intermediate_size;
            if layer.qkv.n() != 3 * h || layer.o.n() != h || layer.up.n() != 2 * i || layer.down.n() != h {
                return Err(Error::tensor(p("*"), "projection widths do not match the config"));
            }
            layers.push(layer);
        }
        let word = weights.get("emb.word")?.clone();
        if word.shape != [cfg.vocab_size, h] {
            return Err(Error::tensor("emb.word", format!("shape {:?}, expected {:?}", word.shape, [cfg.vocab_size, h])));
        }
        Ok(NativeModernBert {
            emb_ln: norm(weights, "emb.ln", h)?,
            final_ln: norm(weights, "final_ln", h)?,
            word,
            layers,
            params,
            cfg,
        })
    }

    /// Final hidden states of every token, sequences back to back (`[sum of lengths, hidden]`).
    pub fn encode(&self, batch: &[Encoded]) -> Vec<f32> {
        self.hidden_states(batch, None)
    }

    /// `encode`, where with `key_lens` sequence `b`'s tokens attend only to its first
    /// `key_lens[b]` tokens (clamped to `1..=len`; a missing entry means all): every token is
    /// still computed as a query, as ColBERT queries with expansion tokens hidden from
    /// attention need (PyLate's attention mask 0 on them). In the sliding-window layers the
    /// window and the key limit both apply, as transformers combines its sliding-window and
    /// padding masks; a token whose window holds no visible key gets a zero context (PyTorch
    /// SDPA's fully masked row).
    pub fn hidden_states(&self, batch: &[Encoded], key_lens: Option<&[usize]>) -> Vec<f32> {
        let cfg = &self.cfg;
        let h = cfg.hidden_size;
        let lens: Vec<usize> = batch.iter().map(|e| e.ids.len()).collect();
        let keys: Vec<usize> = lens
            .iter()
            .enumerate()
            .map(|(b, &len)| key_lens.and_then(|k| k.get(b).copied()).unwrap_or(len).clamp(len.min(1), len))
            .collect();
        let m: usize = lens.iter().sum();
        let mut x = vec![0f32; m * h];
        for (row, &id) in x.chunks_exact_mut(h.max(1)).zip(batch.iter().flat_map(|e| &e.ids)) {
            self.word.row_into((id as usize).min(cfg.vocab_size - 1), row);
        }
        if m == 0 {
            return x;
        }
        let eps = self.params.norm_eps;
        kernels::layer_norm(&mut x, &self.emb_ln.0, &self.emb_ln.1, eps);
        let keys = (keys != lens).then_some(&keys[..]);
        for layer in &self.layers {
            self.layer(layer, &mut x, &lens, keys, m);
        }
        kernels::layer_norm(&mut x, &self.final_ln.0, &self.final_ln.1, eps);
        x
    }

    /// One encoder layer on the residual stream `x` (`m` rows); `keys`: each sequence's
    /// visible key prefix (already clamped), when any is shorter than its sequence.
    fn layer(&self, layer: &Layer, x: &mut [f32], lens: &[usize], keys: Option<&[usize]>, m: usize) {
        let cfg = &self.cfg;
        let (h, heads, dh, i) = (cfg.hidden_size, cfg.num_heads, cfg.head_dim(), cfg.intermediate_size);
        let eps = self.params.norm_eps;

        // Attention block.
        let mut qkv = match &layer.attn_ln {
            Some((g, b)) => {
                let mut a = x.to_vec();
                kernels::layer_norm(&mut a, g, b, eps);
                layer.qkv.forward(&a, m)
            }
            None => layer.qkv.forward(x, m),
        };
        let theta = if layer.global { self.params.global_rope_theta } else { self.params.local_rope_theta };
        let mut seqs: Vec<&mut [f32]> = Vec::with_capacity(lens.len());
        let mut rest = &mut qkv[..];
        for &len in lens {
            let (seq, tail) = rest.split_at_mut(len * 3 * h);
            seqs.push(seq);
            rest = tail;
        }
        seqs.into_par_iter().zip(lens.par_iter()).for_each(|(seq, &len)| {
            if len > 0 {
                // Queries at column 0 of each row, keys at column h; positions restart at 0.
                attention::rotary(seq, len, 3 * h, heads, dh, theta);
                attention::rotary(&mut seq[h..], len, 3 * h, heads, dh, theta);
            }
        });
        let mut ctx = vec![0f32; m * h];
        let half = self.params.local_attention / 2;
        if layer.global || lens.iter().all(|&l| l <= half + 1) {
            // No window cuts anything: the shared full-attention kernel (keys limited to a
            // prefix where asked).
            match keys {
                Some(k) => kernels::attention_key_prefix(&qkv, lens, k, heads, dh, &mut ctx),
                None => kernels::attention(&qkv, lens, heads, dh, &mut ctx),
            }
        } else {
            let mut start = 0;
            for (b, &len) in lens.iter().enumerate() {
                let s = &qkv[start * 3 * h..(start + len) * 3 * h];
                let (q, k, v) = (s, s.get(h..).unwrap_or(&[]), s.get(2 * h..).unwrap_or(&[]));
                let out = &mut ctx[start * h..(start + len) * h];
                let mask = if len <= half + 1 { Mask::Full } else { Mask::Window { half } };
                let visible = keys.map_or(len, |k| k[b]);
                attention::attend_keys(q, 3 * h, k, 3 * h, v, 3 * h, len, heads, heads, dh, mask, visible, out);
                start += len;
            }
        }
        drop(qkv);
        let o = layer.o.forward(&ctx, m);
        add(x, &o);

        // GeGLU block: Wi's rows are [input | gate]; the activation goes on the input half.
        let mut a = x.to_vec();
        kernels::layer_norm(&mut a, &layer.ffn_ln.0, &layer.ffn_ln.1, eps);
        let u = layer.up.forward(&a, m);
        let mut g = vec![0f32; m * i];
        g.par_chunks_mut(i).zip(u.par_chunks(2 * i)).for_each(|(g, u)| g.copy_from_slice(&u[..i]));
        match cfg.activation {
            Activation::Gelu => kernels::gelu_erf(&mut g),
            Activation::GeluTanh => kernels::gelu_tanh(&mut g),
        }
        g.par_chunks_mut(i).zip(u.par_chunks(2 * i)).for_each(|(g, u)| {
            g.iter_mut().zip(&u[i..]).for_each(|(a, b)| *a *= b);
        });
        drop(u);
        let d = layer.down.forward(&g, m);
        add(x, &d);
    }

    /// Pooled (and, if the model says so, normalised) vectors, one per input.
    pub fn embed(&self, batch: &[Encoded]) -> Vec<Vec<f32>> {
        native::pool(&self.cfg, &self.encode(batch), batch)
    }
}

fn add(x: &mut [f32], y: &[f32]) {
    x.par_chunks_mut(4096).zip(y.par_chunks(4096)).for_each(|(x, y)| x.iter_mut().zip(y).for_each(|(a, b)| *a += b));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::arch;
    use std::collections::BTreeMap;

    /// A random tiny ModernBERT: 3 layers (global, local, local), head width 8, window 4.
    fn tiny(biases: bool) -> ModelWeights {
        let params = ModernBertParams {
            global_rope_theta: 160_000.0,
            local_rope_theta: 10_000.0,
            local_attention: 4,
            global_attn_every_n_layers: 3,
            norm_eps: 1e-5,
            attention_bias: biases,
            mlp_bias: biases,
            norm_bias: biases,
        };
        let cfg = ModelConfig {
            architecture: Architecture::ModernBert,
            head: Head::Embedding,
            vocab_size: 40,
            hidden_size: 16,
            num_layers: 3,
            num_heads: 2,
            intermediate_size: 24,
            max_position_embeddings: 64,
            type_vocab_size: 2,
            layer_norm_eps: 1e-5,
            activation: Activation::Gelu,
            pooling: crate::model::Pooling::Mean,
            normalize: true,
            max_seq_len: 64,
            pad_token_id: 0,
            modern_bert: Some(params),
            decoder: None,
            colbert: None,
        };
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        };
        let mut tensors = BTreeMap::new();
        for spec in arch::layout(&cfg) {
            let n: usize = spec.shape.iter().product();
            let is_gamma = spec.name.ends_with("ln.weight");
            let scale = if spec.kind == arch::TensorKind::Linear { 0.4 } else { 0.2 };
            let v: Vec<f32> = (0..n).map(|_| if is_gamma { 1.0 + 0.2 * rnd() } else { scale * rnd() }).collect();
            tensors.insert(spec.name.clone(), WeightTensor::from_f32(spec.shape.clone(), &v));
        }
        ModelWeights { config: cfg, tokenizer_json: Vec::new(), tensors, source: "test".into() }
    }

    fn enc(ids: &[u32]) -> Encoded {
        Encoded { ids: ids.to_vec(), type_ids: vec![0; ids.len()] }
    }

    /// A plain reference for one sequence: explicit mask matrix, rotary from its definition.
    fn reference(w: &ModelWeights, ids: &[u32]) -> Vec<f32> {
        reference_keys(w, ids, ids.len())
    }

    /// `reference` with keys limited to the first `keys` tokens (a query seeing no key gets a
    /// zero context).
    fn reference_keys(w: &ModelWeights, ids: &[u32], keys: usize) -> Vec<f32> {
        let cfg = &w.config;
        let p = cfg.modern_bert.clone().unwrap();
        let (h, nh, i, t) = (cfg.hidden_size, cfg.num_heads, cfg.intermediate_size, ids.len());
        let dh = h / nh;
        let get = |n: &str| w.tensors.get(n).map(|t| t.to_f32());
        let ln = |x: &[f32], name: &str| -> Vec<f32> {
            let g = get(&format!("{name}.weight")).unwrap();
            let b = get(&format!("{name}.bias")).unwrap_or(vec![0.0; h]);
            x.chunks(h)
                .flat_map(|r| {
                    let mean = r.iter().sum::<f32>() / h as f32;
                    let var = r.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / h as f32;
                    let inv = 1.0 / (var + p.norm_eps).sqrt();
                    r.iter().enumerate().map(|(j, v)| (v - mean) * inv * g[j] + b[j]).collect::<Vec<_>>()
                })
                .collect()
        };
        let lin = |x: &[f32], name: &str| -> Vec<f32> {
            let wt = get(&format!("{name}.weight")).unwrap();
            let n = wt.len() / (x.len() / t);
            let k = x.len() / t;
            let b = get(&format!("{name}.bias")).unwrap_or(vec![0.0; n]);
            (0..t).flat_map(|r| (0..n).map(move |c| (r, c))).map(|(r, c)| {
                (0..k).map(|j| x[r * k + j] * wt[c * k + j]).sum::<f32>() + b[c]
            }).collect()
        };
        let word = get("emb.word").unwrap();
        let x: Vec<f32> = ids.iter().flat_map(|&id| word[id as usize * h..(id as usize + 1) * h].to_vec()).collect();
        let mut x = ln(&x, "emb.ln");
        for l in 0..cfg.num_layers {
            let global = l % p.global_attn_every_n_layers == 0;
            let theta = if global { p.global_rope_theta } else { p.local_rope_theta } as f64;
            let a = if l == 0 { x.clone() } else { ln(&x, &format!("layer.{l}.attn_ln")) };
            let qkv = lin(&a, &format!("layer.{l}.qkv"));
            let rope = |v: &[f32], pos: usize| -> Vec<f32> {
                (0..dh).map(|d| {
                    let (pair, sign) = if d < dh / 2 { (d + dh / 2, -1.0) } else { (d - dh / 2, 1.0) };
                    let ang = pos as f64 / theta.powf(2.0 * (d % (dh / 2)) as f64 / dh as f64);
                    (v[d] as f64 * ang.cos() + sign * v[pair] as f64 * ang.sin()) as f32
                }).collect()
            };
            let mut ctx = vec![0f32; t * h];
            for hd in 0..nh {
                let q: Vec<Vec<f32>> = (0..t).map(|r| rope(&qkv[r * 3 * h + hd * dh..][..dh], r)).collect();
                let k: Vec<Vec<f32>> = (0..t).map(|r| rope(&qkv[r * 3 * h + h + hd * dh..][..dh], r)).collect();
                for r in 0..t {
                    let visible = |j: usize| j < keys && (global || r.abs_diff(j) <= p.local_attention / 2);
                    if !(0..t).any(visible) {
                        continue;
                    }
                    let s: Vec<f32> = (0..t)
                        .map(|j| if visible(j) { q[r].iter().zip(&k[j]).map(|(a, b)| a * b).sum::<f32>() / (dh as f32).sqrt() } else { f32::NEG_INFINITY })
                        .collect();
                    let mx = s.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    let e: Vec<f32> = s.iter().map(|v| (v - mx).exp()).collect();
                    let sum: f32 = e.iter().sum();
                    for d in 0..dh {
                        ctx[r * h + hd * dh + d] = (0..t).map(|j| e[j] / sum * qkv[j * 3 * h + 2 * h + hd * dh + d]).sum();
                    }
                }
            }
            let o = lin(&ctx, &format!("layer.{l}.o"));
            x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
            let a = ln(&x, &format!("layer.{l}.ffn_ln"));
            let u = lin(&a, &format!("layer.{l}.up"));
            let g: Vec<f32> = (0..t * i).map(|z| {
                let (r, c) = (z / i, z % i);
                let v = u[r * 2 * i + c] as f64;
                let gelu = 0.5 * v * (1.0 + libm_erf(v / std::f64::consts::SQRT_2));
                (gelu * u[r * 2 * i + i + c] as f64) as f32
            }).collect();
            let d = lin(&g, &format!("layer.{l}.down"));
            x.iter_mut().zip(&d).for_each(|(a, b)| *a += b);
        }
        ln(&x, "final_ln")
    }

    /// erf by its Taylor series (|x| small here) or the continued tail; accurate to ~1e-12.
    fn libm_erf(x: f64) -> f64 {
        if x.abs() > 5.0 {
            return x.signum();
        }
        // Series: erf(x) = 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1)).
        let (mut term, mut sum, mut n) = (x, x, 0.0);
        while term.abs() > 1e-17 * sum.abs().max(1e-300) && n < 200.0 {
            n += 1.0;
            term *= -x * x / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    fn max_abs(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn matches_a_plain_reference_with_windows_and_packing() {
        for biases in [false, true] {
            let w = tiny(biases);
            let m = NativeModernBert::new(&w, Precision::F32).unwrap();
            // 11 tokens > window: the local layers must mask; a short one packed alongside.
            let a: Vec<u32> = (0..11).map(|j| (j * 7 + 3) % 40).collect();
            let b: Vec<u32> = vec![5, 9, 1];
            let got = m.encode(&[enc(&a), enc(&b)]);
            let h = w.config.hidden_size;
            let (ra, rb) = (reference(&w, &a), reference(&w, &b));
            let err = max_abs(&got[..a.len() * h], &ra).max(max_abs(&got[a.len() * h..], &rb));
            assert!(err < 2e-4, "biases {biases}: max abs error {err}");
        }
    }

    #[test]
    fn key_prefix_limits_global_and_windowed_keys() {
        for biases in [false, true] {
            let w = tiny(biases);
            let m = NativeModernBert::new(&w, Precision::F32).unwrap();
            let h = w.config.hidden_size;
            // 11 tokens, keys limited to 3 (window half 2): tokens 5.. see no key in the local
            // layers; a short one (all keys) and one limited to 2 of 3 packed alongside.
            let a: Vec<u32> = (0..11).map(|j| (j * 7 + 3) % 40).collect();
            let (b, c): (Vec<u32>, Vec<u32>) = (vec![5, 9, 1], vec![4, 8, 2]);
            let got = m.hidden_states(&[enc(&a), enc(&b), enc(&c)], Some(&[3, 3, 2]));
            let want: Vec<f32> = [reference_keys(&w, &a, 3), reference(&w, &b), reference_keys(&w, &c, 2)].concat();
            assert!(got.iter().all(|v| v.is_finite()));
            let err = max_abs(&got, &want);
            assert!(err < 2e-4, "biases {biases}: max abs error {err}");
            // The limit changes the result; a full or out-of-range limit (or a missing entry) is
            // no limit, and 0 counts as 1.
            assert!(max_abs(&got[..11 * h], &reference(&w, &a)) > 1e-3);
            let full = m.encode(&[enc(&a), enc(&b)]);
            assert_eq!(m.hidden_states(&[enc(&a), enc(&b)], Some(&[11, 99])), full);
            assert_eq!(m.hidden_states(&[enc(&a), enc(&b)], Some(&[11])), full);
            let zero = m.hidden_states(&[enc(&a)], Some(&[0]));
            assert!(max_abs(&zero, &reference_keys(&w, &a, 1)) < 2e-4);
            assert!(m.hidden_states(&[], Some(&[1])).is_empty());
        }
    }

    #[test]
    fn window_is_inclusive_of_half_the_local_attention() {
        // With window 4 (half 2), token 0 of a local layer must not see token 3: a reference
        // with a wider or narrower window disagrees.
        let mut w = tiny(false);
        let a: Vec<u32> = (0..9).map(|j| (j * 5 + 1) % 40).collect();
        let m = NativeModernBert::new(&w, Precision::F32).unwrap();
        let got = m.encode(&[enc(&a)]);
        assert!(max_abs(&got, &reference(&w, &a)) < 2e-4);
        for other in [2, 6] {
            w.config.modern_bert.as_mut().unwrap().local_attention = other;
            assert!(max_abs(&got, &reference(&w, &a)) > 1e-3, "window {other} should differ");
        }
    }

    #[test]
    fn int8_is_close_to_f32_and_batches_do_not_interact() {
        let w = tiny(false);
        let f = NativeModernBert::new(&w, Precision::F32).unwrap();
        let q = NativeModernBert::new(&w, Precision::Int8).unwrap();
        let inputs: Vec<Encoded> = (0..4).map(|s| enc(&(0..(3 + 4 * s)).map(|j| ((j * 11 + s) % 40) as u32).collect::<Vec<_>>())).collect();
        let vf = f.embed(&inputs);
        let vq = q.embed(&inputs);
        for (a, b) in vf.iter().zip(&vq) {
            assert!(crate::embed::cosine(a, b) > 0.99, "int8 cosine {}", crate::embed::cosine(a, b));
        }
        for (e, v) in inputs.iter().zip(&vf) {
            let alone = f.embed(std::slice::from_ref(e));
            assert!(max_abs(&alone[0], v) < 1e-5);
        }
        assert!(f.embed(&[]).is_empty());
    }

    #[test]
    fn rejects_classifier_heads_and_wrong_architectures() {
        let mut w = tiny(false);
        w.config.head = Head::Classifier;
        assert!(matches!(NativeModernBert::new(&w, Precision::F32), Err(Error::Unsupported(_))));
        let mut w = tiny(false);
        w.config.modern_bert = None;
        assert!(matches!(NativeModernBert::new(&w, Precision::F32), Err(Error::Config(_))));
    }
}
