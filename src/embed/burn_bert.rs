//! BERT encoder on burn tensors, for burn's devices (wgpu on a GPU, `flex` on the CPU).
//! Padded batches with an additive attention mask; weights are uploaded once as f32
//! (int8 files are dequantized on upload: the wgpu path computes in f32). The same model is
//! what `train` differentiates: every parameter is reachable by its canonical name, and
//! [`BurnBert::to_weights`] turns the trained tensors back into [`ModelWeights`].

use burn::tensor::activation::{gelu, gelu_approximate, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::tokenize::Encoded;
use crate::error::Result;
use crate::model::config::{Activation, Head, ModelConfig, Pooling};
use crate::model::{ModelWeights, WeightTensor};

/// A tensor's values on the host, without its autodiff association (row-major).
pub fn to_host(t: &Tensor<2>) -> Vec<f32> {
    t.clone().inner().into_data().as_slice::<f32>().expect("f32 tensor").to_vec()
}

struct Dense {
    /// `[in, out]` (transposed from the checkpoint's `[out, in]`); several checkpoint
    /// Linears (q, k, v) may be fused side by side.
    w: Tensor<2>,
    /// `[1, out]`.
    b: Tensor<2>,
    /// Canonical names of the fused Linears, in column order.
    names: Vec<String>,
}

impl Dense {
    fn load(weights: &ModelWeights, names: &[&str], device: &Device) -> Result<Self> {
        let mut ws = Vec::new();
        let mut bs = Vec::new();
        let mut k = 0;
        for name in names {
            let t = weights.get(&format!("{name}.weight"))?;
            k = t.shape[1];
            ws.extend(t.to_f32());
            bs.extend(weights.get(&format!("{name}.bias"))?.to_f32());
        }
        let n = bs.len();
        let w = Tensor::<2>::from_data(TensorData::new(ws, [n, k]), device).transpose();
        let b = Tensor::<2>::from_data(TensorData::new(bs, [1, n]), device);
        Ok(Dense { w, b, names: names.iter().map(|s| s.to_string()).collect() })
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        x.matmul(self.w.clone()) + self.b.clone()
    }
}

struct Norm {
    g: Tensor<2>,
    b: Tensor<2>,
    eps: f32,
    name: String,
}

impl Norm {
    fn load(weights: &ModelWeights, name: &str, eps: f32, device: &Device) -> Result<Self> {
        let g = weights.get(&format!("{name}.weight"))?.to_f32();
        let b = weights.get(&format!("{name}.bias"))?.to_f32();
        let h = g.len();
        Ok(Norm {
            g: Tensor::from_data(TensorData::new(g, [1, h]), device),
            b: Tensor::from_data(TensorData::new(b, [1, h]), device),
            eps,
            name: name.to_string(),
        })
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let mean = x.clone().mean_dim(1);
        let xc = x - mean;
        let var = xc.clone().powi_scalar(2).mean_dim(1);
        xc / (var + self.eps).sqrt() * self.g.clone() + self.b.clone()
    }
}

struct Layer {
    qkv: Dense,
    o: Dense,
    ln1: Norm,
    up: Dense,
    down: Dense,
    ln2: Norm,
}

pub struct BurnBert {
    cfg: ModelConfig,
    device: Device,
    word: Tensor<2>,
    pos: Tensor<2>,
    types: Tensor<2>,
    emb_ln: Norm,
    layers: Vec<Layer>,
    /// Cross-encoder head: pooler, classifier weight `[H, 1]`, classifier bias `[1, 1]`.
    head: Option<(Dense, Tensor<2>, Tensor<2>)>,
}

/// `[B, T]` mask of the keys each sequence's tokens may attend to (1 = visible): its first
/// `key_lens[b]` tokens, clamped to `1..=len` (late-interaction queries hide their expansion
/// tokens this way), or all of its tokens.
pub(crate) fn key_mask(batch: &[Encoded], t: usize, key_lens: Option<&[usize]>, dev: &Device) -> Tensor<2> {
    let mut mask = vec![0f32; batch.len() * t];
    for (b, e) in batch.iter().enumerate() {
        let len = e.ids.len().min(t);
        let keys = key_lens.and_then(|k| k.get(b).copied()).unwrap_or(len).clamp(len.min(1), len);
        mask[b * t..b * t + keys].fill(1.0);
    }
    Tensor::<2>::from_data(TensorData::new(mask, [batch.len(), t]), dev)
}

/// The hidden states of the real tokens of padded `[B*T, H]` rows, sequences back to back
/// (`[sum of lengths, H]`), as the native runtimes' `hidden_states` return them.
pub(crate) fn packed_rows(x: &Tensor<2>, batch: &[Encoded], t: usize, h: usize) -> Vec<f32> {
    let all = to_host(x);
    let mut out = Vec::with_capacity(batch.iter().map(|e| e.ids.len()).sum::<usize>() * h);
    for (b, e) in batch.iter().enumerate() {
        out.extend_from_slice(&all[b * t * h..(b * t + e.ids.len().min(t)) * h]);
    }
    out
}

/// A burn encoder over padded batches whose every token's hidden state late interaction reads.
pub(crate) trait PaddedEncoder {
    fn hidden_size(&self) -> usize;

    /// Final hidden states `[B*T, H]`, the float mask `[B, T]` and the padded length `T`; with
    /// `key_lens`, sequence `b`'s tokens attend only to its first `key_lens[b]` tokens (see
    /// [`key_mask`]).
    fn encode_keys(&self, batch: &[Encoded], key_lens: Option<&[usize]>) -> (Tensor<2>, Tensor<2>, usize);

    /// Final hidden states of every token, sequences back to back (`[sum of lengths, H]`),
    /// as the native runtimes' `hidden_states` return them.
    fn hidden_states(&self, batch: &[Encoded], key_lens: Option<&[usize]>) -> Vec<f32> {
        if batch.is_empty() {
            return Vec::new();
        }
        let (x, _, t) = self.encode_keys(batch, key_lens);
        packed_rows(&x, batch, t, self.hidden_size())
    }
}

pub(crate) fn table(weights: &ModelWeights, name: &str, device: &Device) -> Result<Tensor<2>> {
    let t = weights.get(name)?;
    Ok(Tensor::from_data(TensorData::new(t.to_f32(), [t.shape[0], t.shape[1]]), device))
}

/// Pools hidden states `x` (`[B*T, H]`, rows padded to `t`; `mask` `[B, T]` is 1 on real
/// tokens) as `cfg` says, normalised if configured: `[B, H]`. Shared with `burn_archs.rs`.
pub(crate) fn pool(cfg: &ModelConfig, x: Tensor<2>, mask: Tensor<2>, t: usize, batch: &[Encoded]) -> Tensor<2> {
    let h = cfg.hidden_size;
    let b = batch.len();
    let x = x.reshape([b, t, h]);
    let mut pooled: Tensor<2> = match cfg.pooling {
        Pooling::Cls => x.slice([0..b, 0..1, 0..h]).reshape([b, h]),
        Pooling::LastToken => {
            let rows: Vec<Tensor<2>> = batch
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let last = e.ids.len().max(1) - 1;
                    x.clone().slice([i..i + 1, last..last + 1, 0..h]).reshape([1, h])
                })
                .collect();
            Tensor::cat(rows, 0)
        }
        Pooling::Mean => {
            let m = mask.reshape([b, t, 1]);
            let sum = (x * m.clone()).sum_dim(1).reshape([b, h]);
            sum / m.sum_dim(1).reshape([b, 1])
        }
    };
    if cfg.normalize {
        let norm = pooled.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
        pooled = pooled / norm;
    }
    pooled
}

impl BurnBert {
    pub fn new(weights: &ModelWeights, device: Device) -> Result<Self> {
        let cfg = weights.config.clone();
        let eps = cfg.layer_norm_eps;
        let mut layers = Vec::new();
        for l in 0..cfg.num_layers {
            let p = |s: &str| format!("layer.{l}.{s}");
            layers.push(Layer {
                qkv: Dense::load(weights, &[&p("q"), &p("k"), &p("v")], &device)?,
                o: Dense::load(weights, &[&p("o")], &device)?,
                ln1: Norm::load(weights, &p("attn_ln"), eps, &device)?,
                up: Dense::load(weights, &[&p("up")], &device)?,
                down: Dense::load(weights, &[&p("down")], &device)?,
                ln2: Norm::load(weights, &p("ffn_ln"), eps, &device)?,
            });
        }
        let head = if cfg.head == Head::Classifier {
            let cw = weights.get("classifier.weight")?.to_f32();
            let cb = weights.get("classifier.bias")?.to_f32();
            let h = cw.len();
            Some((
                Dense::load(weights, &["pooler"], &device)?,
                Tensor::from_data(TensorData::new(cw, [h, 1]), &device),
                Tensor::from_data(TensorData::new(cb, [1, 1]), &device),
            ))
        } else {
            None
        };
        Ok(BurnBert {
            word: table(weights, "emb.word", &device)?,
            pos: table(weights, "emb.pos", &device)?,
            types: table(weights, "emb.type", &device)?,
            emb_ln: Norm::load(weights, "emb.ln", eps, &device)?,
            layers,
            head,
            cfg,
            device,
        })
    }

    /// Hidden states `[B*T, H]` and the float mask `[B, T]`, with `T` rounded up to 16 so
    /// that a GPU compiles few distinct shapes.
    fn encode(&self, batch: &[Encoded]) -> (Tensor<2>, Tensor<2>, usize) {
        self.encode_keys_impl(batch, None)
    }

    fn encode_keys_impl(&self, batch: &[Encoded], key_lens: Option<&[usize]>) -> (Tensor<2>, Tensor<2>, usize) {
        let cfg = &self.cfg;
        let (h, nh, dh) = (cfg.hidden_size, cfg.num_heads, cfg.head_dim());
        let b = batch.len();
        let longest = batch.iter().map(|e| e.ids.len()).max().unwrap_or(1);
        let t = longest.div_ceil(16).saturating_mul(16).min(cfg.max_position_embeddings).max(longest);
        let mut ids = vec![cfg.pad_token_id as i32; b * t];
        let mut tts = vec![0i32; b * t];
        let mut mask = vec![0f32; b * t];
        for (i, e) in batch.iter().enumerate() {
            for (j, (&id, &tt)) in e.ids.iter().zip(&e.type_ids).enumerate() {
                ids[i * t + j] = id.min(cfg.vocab_size as u32 - 1) as i32;
                tts[i * t + j] = tt.min(cfg.type_vocab_size as u32 - 1) as i32;
                mask[i * t + j] = 1.0;
            }
        }
        let dev = &self.device;
        let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [b * t]), dev);
        let tts = Tensor::<1, Int>::from_data(TensorData::new(tts, [b * t]), dev);
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [b, t]), dev);
        let pos = self.pos.clone().slice([0..t, 0..h]).unsqueeze_dim::<3>(0).repeat_dim(0, b).reshape([b * t, h]);
        let x = self.word.clone().select(0, ids) + self.types.clone().select(0, tts) + pos;
        let mut x = self.emb_ln.forward(x);
        // Additive mask [B, 1, 1, T]: 0 for visible keys, -1e9 for padding (and hidden keys).
        let keys = if key_lens.is_some() { key_mask(batch, t, key_lens, dev) } else { mask.clone() };
        let add_mask = (keys - 1.0).mul_scalar(1e9).reshape([b, 1, 1, t]);
        let scale = 1.0 / (dh as f32).sqrt();
        for layer in &self.layers {
            let qkv = layer.qkv.forward(x.clone());
            let split = |i: usize| {
                qkv.clone().slice([0..b * t, i * h..(i + 1) * h]).reshape([b, t, nh, dh]).swap_dims(1, 2)
            };
            let (q, k, v) = (split(0), split(1), split(2));
            let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale) + add_mask.clone();
            let ctx = softmax(scores, 3).matmul(v).swap_dims(1, 2).reshape([b * t, h]);
            x = layer.ln1.forward(layer.o.forward(ctx) + x);
            let u = layer.up.forward(x.clone());
            let u = match cfg.activation {
                Activation::Gelu => gelu(u),
                Activation::GeluTanh => gelu_approximate(u),
            };
            x = layer.ln2.forward(layer.down.forward(u) + x);
        }
        (x, mask, t)
    }

    /// Pooled (and, if configured, normalised) embeddings `[B, H]` as a tensor.
    pub fn embed_tensor(&self, batch: &[Encoded]) -> Tensor<2> {
        let (x, mask, t) = self.encode(batch);
        pool(&self.cfg, x, mask, t, batch)
    }

    pub fn embed(&self, batch: &[Encoded]) -> Vec<Vec<f32>> {
        if batch.is_empty() {
            return Vec::new();
        }
        let h = self.cfg.hidden_size;
        to_host(&self.embed_tensor(batch)).chunks_exact(h).map(|c| c.to_vec()).collect()
    }

    /// Cross-encoder logits `[B, 1]` as a tensor, or `None` without a classifier head.
    pub fn score_tensor(&self, batch: &[Encoded]) -> Option<Tensor<2>> {
        let (pooler, cw, cb) = self.head.as_ref()?;
        let h = self.cfg.hidden_size;
        let b = batch.len();
        let (x, _, t) = self.encode(batch);
        let cls = x.reshape([b, t, h]).slice([0..b, 0..1, 0..h]).reshape([b, h]);
        Some(pooler.forward(cls).tanh().matmul(cw.clone()) + cb.clone())
    }

    pub fn score(&self, batch: &[Encoded]) -> Vec<f32> {
        if batch.is_empty() {
            return Vec::new();
        }
        self.score_tensor(batch).map(|logits| to_host(&logits)).unwrap_or_default()
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Every parameter tensor with a stable key, in a fixed order. The word-embedding table
    /// is skipped unless `with_word` (it is the largest tensor and often kept frozen).
    pub fn params_mut(&mut self, with_word: bool) -> Vec<(String, &mut Tensor<2>)> {
        let mut out: Vec<(String, &mut Tensor<2>)> = Vec::new();
        if with_word {
            out.push(("emb.word".into(), &mut self.word));
        }
        out.push(("emb.pos".into(), &mut self.pos));
        out.push(("emb.type".into(), &mut self.types));
        fn norm<'a>(n: &'a mut Norm, out: &mut Vec<(String, &'a mut Tensor<2>)>) {
            let Norm { g, b, name, .. } = n;
            out.push((format!("{name}.weight"), g));
            out.push((format!("{name}.bias"), b));
        }
        fn dense<'a>(d: &'a mut Dense, out: &mut Vec<(String, &'a mut Tensor<2>)>) {
            let Dense { w, b, names } = d;
            let key = names.join("+");
            out.push((format!("{key}.weight"), w));
            out.push((format!("{key}.bias"), b));
        }
        norm(&mut self.emb_ln, &mut out);
        for layer in &mut self.layers {
            let Layer { qkv, o, ln1, up, down, ln2 } = layer;
            dense(qkv, &mut out);
            dense(o, &mut out);
            norm(ln1, &mut out);
            dense(up, &mut out);
            dense(down, &mut out);
            norm(ln2, &mut out);
        }
        if let Some((pooler, cw, cb)) = &mut self.head {
            dense(pooler, &mut out);
            out.push(("classifier.weight".into(), cw));
            out.push(("classifier.bias".into(), cb));
        }
        out
    }

    /// The current parameters as f32 [`ModelWeights`] under canonical names (fused Linears
    /// split again, transposed back to `[out, in]`); config and tokenizer come from `base`.
    pub fn to_weights(&self, base: &ModelWeights) -> ModelWeights {
        let host = |t: &Tensor<2>| (to_host(t), t.dims());
        let mut tensors = std::collections::BTreeMap::new();
        let mut put = |name: String, shape: Vec<usize>, v: Vec<f32>| {
            tensors.insert(name, WeightTensor::from_f32(shape, &v));
        };
        let table = |put: &mut dyn FnMut(String, Vec<usize>, Vec<f32>), name: &str, t: &Tensor<2>| {
            let (v, d) = host(t);
            put(name.into(), vec![d[0], d[1]], v);
        };
        table(&mut put, "emb.word", &self.word);
        table(&mut put, "emb.pos", &self.pos);
        table(&mut put, "emb.type", &self.types);
        let norm = |put: &mut dyn FnMut(String, Vec<usize>, Vec<f32>), n: &Norm| {
            let (g, _) = host(&n.g);
            let (b, _) = host(&n.b);
            put(format!("{}.weight", n.name), vec![g.len()], g);
            put(format!("{}.bias", n.name), vec![b.len()], b);
        };
        let dense = |put: &mut dyn FnMut(String, Vec<usize>, Vec<f32>), d: &Dense| {
            let (w, [k, n]) = host(&d.w);
            let (b, _) = host(&d.b);
            let per = n / d.names.len();
            for (j, name) in d.names.iter().enumerate() {
                // Column block j of the [k, n] matrix, transposed to [per, k].
                let mut out = vec![0f32; per * k];
                for r in 0..per {
                    for c in 0..k {
                        out[r * k + c] = w[c * n + j * per + r];
                    }
                }
                put(format!("{name}.weight"), vec![per, k], out);
                put(format!("{name}.bias"), vec![per], b[j * per..(j + 1) * per].to_vec());
            }
        };
        norm(&mut put, &self.emb_ln);
        for layer in &self.layers {
            dense(&mut put, &layer.qkv);
            dense(&mut put, &layer.o);
            norm(&mut put, &layer.ln1);
            dense(&mut put, &layer.up);
            dense(&mut put, &layer.down);
            norm(&mut put, &layer.ln2);
        }
        if let Some((pooler, cw, cb)) = &self.head {
            dense(&mut put, pooler);
            let (w, _) = host(cw);
            let (b, _) = host(cb);
            put("classifier.weight".into(), vec![1, w.len()], w);
            put("classifier.bias".into(), vec![1], b);
        }
        ModelWeights {
            config: self.cfg.clone(),
            tokenizer_json: base.tokenizer_json.clone(),
            tensors,
            source: base.source.clone(),
        }
    }
}

impl PaddedEncoder for BurnBert {
    fn hidden_size(&self) -> usize {
        self.cfg.hidden_size
    }

    fn encode_keys(&self, batch: &[Encoded], key_lens: Option<&[usize]>) -> (Tensor<2>, Tensor<2>, usize) {
        self.encode_keys_impl(batch, key_lens)
    }
}
