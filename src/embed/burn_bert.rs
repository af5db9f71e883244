//! BERT encoder on burn tensors, for burn's devices (wgpu on a GPU, `flex` on the CPU).
//! Padded batches with an additive attention mask; weights are uploaded once as f32
//! (int8 files are dequantized on upload: the wgpu path computes in f32).

use burn::tensor::activation::{gelu, gelu_approximate, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::tokenize::Encoded;
use crate::error::Result;
use crate::model::config::{Activation, Head, ModelConfig, Pooling};
use crate::model::ModelWeights;

struct Dense {
    /// `[in, out]` (transposed from the checkpoint's `[out, in]`).
    w: Tensor<2>,
    /// `[1, out]`.
    b: Tensor<2>,
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
        Ok(Dense { w, b })
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        x.matmul(self.w.clone()) + self.b.clone()
    }
}

struct Norm {
    g: Tensor<2>,
    b: Tensor<2>,
    eps: f32,
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
    head: Option<(Dense, Tensor<2>, f32)>,
}

fn table(weights: &ModelWeights, name: &str, device: &Device) -> Result<Tensor<2>> {
    let t = weights.get(name)?;
    Ok(Tensor::from_data(TensorData::new(t.to_f32(), [t.shape[0], t.shape[1]]), device))
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
            let h = cw.len();
            Some((
                Dense::load(weights, &["pooler"], &device)?,
                Tensor::from_data(TensorData::new(cw, [h, 1]), &device),
                weights.get("classifier.bias")?.to_f32()[0],
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
        // Additive mask [B, 1, 1, T]: 0 for tokens, -1e9 for padding.
        let add_mask = (mask.clone() - 1.0).mul_scalar(1e9).reshape([b, 1, 1, t]);
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

    pub fn embed(&self, batch: &[Encoded]) -> Vec<Vec<f32>> {
        if batch.is_empty() {
            return Vec::new();
        }
        let h = self.cfg.hidden_size;
        let b = batch.len();
        let (x, mask, t) = self.encode(batch);
        let x = x.reshape([b, t, h]);
        let mut pooled: Tensor<2> = match self.cfg.pooling {
            Pooling::Cls => x.slice([0..b, 0..1, 0..h]).reshape([b, h]),
            Pooling::Mean => {
                let m = mask.reshape([b, t, 1]);
                let sum = (x * m.clone()).sum_dim(1).reshape([b, h]);
                sum / m.sum_dim(1).reshape([b, 1])
            }
        };
        if self.cfg.normalize {
            let norm = pooled.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
            pooled = pooled / norm;
        }
        let data = pooled.into_data();
        let flat = data.as_slice::<f32>().expect("f32 output").to_vec();
        flat.chunks_exact(h).map(|c| c.to_vec()).collect()
    }

    pub fn score(&self, batch: &[Encoded]) -> Vec<f32> {
        let Some((pooler, cw, cb)) = &self.head else {
            return Vec::new();
        };
        if batch.is_empty() {
            return Vec::new();
        }
        let h = self.cfg.hidden_size;
        let b = batch.len();
        let (x, _, t) = self.encode(batch);
        let cls = x.reshape([b, t, h]).slice([0..b, 0..1, 0..h]).reshape([b, h]);
        let logits = pooler.forward(cls).tanh().matmul(cw.clone()).add_scalar(*cb);
        logits.into_data().as_slice::<f32>().expect("f32 output").to_vec()
    }
}
