//! The int8 BERT encoder on ponder's own WGSL kernels (`shaders/`), driven through `wgpu`
//! directly: int8 Linear layers (per-channel weight scales, activations quantized per row on
//! the GPU), streamed attention over packed sequences, LayerNorm fused with the residual add
//! and with the next layer's quantization. The math is `native.rs`'s int8 path; only the token
//! embeddings (a gather) and the pooling are computed on the CPU. This module owns the GPU
//! buffers and dispatches; it does not choose devices (`device.rs`) or batches (`mod.rs`).

use std::future::Future;
use std::sync::{Arc, Mutex};

use wgpu::util::DeviceExt;

use super::tokenize::Encoded;
use crate::error::{Error, Result};
use crate::model::config::{Activation, Head, ModelConfig};
use crate::model::{ModelWeights, WeightTensor};

const GEMM_SRC: &str = include_str!("../../shaders/gemm_i8.wgsl");
const ROWS_SRC: &str = include_str!("../../shaders/layer_norm.wgsl");
const ATTENTION_SRC: &str = include_str!("../../shaders/attention.wgsl");

/// Rows and columns of y per GEMM workgroup (TM, TN in gemm_i8.wgsl).
const GEMM_TILE: usize = 64;

/// Largest head size the attention kernel holds in registers.
pub const MAX_HEAD_DIM: usize = 64;

/// What a GEMM applies after `acc * xs * ws + bias`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Epilogue {
    Bias,
    GeluErf,
    GeluTanh,
}

/// Polls a future that wgpu's native backends complete without a reactor.
fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

fn words(v: [u32; 4]) -> [u8; 16] {
    bytemuck::cast(v)
}

/// Packs row-major int8 `[rows, k]` four to a u32 (byte 0 = lowest column), rows padded with
/// zeros to `k.div_ceil(4)` words.
pub fn pack_i8(values: &[i8], rows: usize, k: usize) -> Vec<u32> {
    let k4 = k.div_ceil(4);
    let mut out = vec![0u32; rows * k4];
    for r in 0..rows {
        for (g, word) in out[r * k4..(r + 1) * k4].iter_mut().enumerate() {
            let mut b = [0u8; 4];
            for (t, byte) in b.iter_mut().enumerate() {
                let c = 4 * g + t;
                if c < k {
                    *byte = values[r * k + c] as u8;
                }
            }
            *word = u32::from_le_bytes(b);
        }
    }
    out
}

/// The inverse of [`pack_i8`].
pub fn unpack_i8(words: &[u32], rows: usize, k: usize) -> Vec<i8> {
    let k4 = k.div_ceil(4);
    let mut out = Vec::with_capacity(rows * k);
    for r in 0..rows {
        let bytes: Vec<i8> = words[r * k4..(r + 1) * k4].iter().flat_map(|w| w.to_le_bytes()).map(|b| b as i8).collect();
        out.extend_from_slice(&bytes[..k]);
    }
    out
}

/// One dispatch of a compute pipeline.
struct Dispatch<'a> {
    pipeline: &'a wgpu::ComputePipeline,
    bind: wgpu::BindGroup,
    groups: (u32, u32, u32),
}

/// A wgpu device with ponder's WGSL pipelines compiled.
pub struct WgslDevice {
    device: wgpu::Device,
    queue: wgpu::Queue,
    name: String,
    /// The first uncaptured wgpu error since the last check.
    error: Arc<Mutex<Option<String>>>,
    gemm: [wgpu::ComputePipeline; 3],
    layer_norm: wgpu::ComputePipeline,
    add_layer_norm: wgpu::ComputePipeline,
    quantize: wgpu::ComputePipeline,
    /// Attention pipelines by head size (the kernel's override constant).
    attention: Mutex<Vec<(usize, wgpu::ComputePipeline)>>,
    /// Bound where a kernel declares a buffer that its entry point does not read.
    dummy: wgpu::Buffer,
}

impl WgslDevice {
    /// Opens the preferred adapter (Vulkan, Metal or DX12; `WGPU_BACKEND` narrows it) and
    /// compiles the kernels. No adapter, or one that cannot compile them, is `Error::Device`.
    pub fn new() -> Result<Self> {
        // wgpu and drivers may panic on broken setups; that is an error here, not a crash.
        let opened = std::panic::catch_unwind(|| {
            let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
            desc.backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY);
            let instance = wgpu::Instance::new(desc);
            let adapter = block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            }))
            .map_err(|e| Error::Device(format!("no wgpu adapter: {e}")))?;
            let info = adapter.get_info();
            let (device, queue) = block_on(adapter.request_device(&wgpu::DeviceDescriptor {
                label: Some("ponder wgsl"),
                required_features: wgpu::Features::empty(),
                required_limits: adapter.limits(),
                ..Default::default()
            }))
            .map_err(|e| Error::Device(format!("wgpu device on {}: {e}", info.name)))?;
            Ok::<_, Error>((device, queue, info.name))
        });
        let (device, queue, name) = opened.map_err(|_| Error::Device("wgpu panicked while opening an adapter".into()))??;
        let error = Arc::new(Mutex::new(None));
        let slot = error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
            if s.is_none() {
                *s = Some(e.to_string());
            }
        }));
        let module = |label: &str, src: &str| {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            })
        };
        let gemm_mod = module("gemm_i8.wgsl", GEMM_SRC);
        let rows_mod = module("layer_norm.wgsl", ROWS_SRC);
        let pipe = |m: &wgpu::ShaderModule, entry: &str| pipeline(&device, m, entry, &[]);
        let gemm = [pipe(&gemm_mod, "gemm_bias"), pipe(&gemm_mod, "gemm_bias_gelu_erf"), pipe(&gemm_mod, "gemm_bias_gelu_tanh")];
        let layer_norm = pipe(&rows_mod, "layer_norm");
        let add_layer_norm = pipe(&rows_mod, "add_layer_norm");
        let quantize = pipe(&rows_mod, "quantize_rows");
        let dummy = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("unused"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let dev = WgslDevice {
            device,
            queue,
            name,
            error,
            gemm,
            layer_norm,
            add_layer_norm,
            quantize,
            attention: Mutex::new(Vec::new()),
            dummy,
        };
        dev.check("compiling the WGSL kernels")?;
        Ok(dev)
    }

    /// The adapter's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns (and clears) the first wgpu error since the last check.
    fn check(&self, what: &str) -> Result<()> {
        let _ = self.device.poll(wgpu::PollType::wait_indefinitely());
        match self.error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(e) => Err(Error::Device(format!("{what} on {}: {e}", self.name))),
            None => Ok(()),
        }
    }

    fn attention_pipeline(&self, dh: usize) -> Result<wgpu::ComputePipeline> {
        if dh == 0 || dh > MAX_HEAD_DIM || !dh.is_multiple_of(4) {
            return Err(Error::Unsupported(format!("head size {dh} on the WGSL path (a multiple of 4, at most {MAX_HEAD_DIM})")));
        }
        let mut cache = self.attention.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, p)) = cache.iter().find(|(d, _)| *d == dh) {
            return Ok(p.clone());
        }
        let m = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("attention.wgsl"),
            source: wgpu::ShaderSource::Wgsl(ATTENTION_SRC.into()),
        });
        let p = pipeline(&self.device, &m, "attention", &[("DH", dh as f64)]);
        self.check("compiling attention.wgsl")?;
        cache.push((dh, p.clone()));
        Ok(p)
    }

    fn upload(&self, label: &str, bytes: &[u8]) -> wgpu::Buffer {
        let pad = [0u8; 4];
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: if bytes.is_empty() { &pad } else { bytes },
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        })
    }

    fn scratch(&self, label: &str, bytes: usize) -> Result<wgpu::Buffer> {
        let limit = self.device.limits().max_storage_buffer_binding_size;
        if bytes as u64 > limit {
            return Err(Error::Device(format!("{label} needs {bytes} bytes, over the adapter's binding limit of {limit}")));
        }
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(4).next_multiple_of(4) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        }))
    }

    fn uniform(&self, v: [u32; 4]) -> wgpu::Buffer {
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("params"),
            contents: &words(v),
            usage: wgpu::BufferUsages::UNIFORM,
        })
    }

    fn bind(&self, pipeline: &wgpu::ComputePipeline, entries: &[(u32, &wgpu::Buffer)]) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry> =
            entries.iter().map(|(b, buf)| wgpu::BindGroupEntry { binding: *b, resource: buf.as_entire_binding() }).collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        })
    }

    /// Records the dispatches in one compute pass, submits, and reads `reads` back as bytes.
    fn run(&self, what: &str, dispatches: &[Dispatch], reads: &[&wgpu::Buffer]) -> Result<Vec<Vec<u8>>> {
        let max_groups = self.device.limits().max_compute_workgroups_per_dimension;
        if let Some(d) = dispatches.iter().find(|d| d.groups.0.max(d.groups.1).max(d.groups.2) > max_groups) {
            return Err(Error::Device(format!("{what}: {:?} workgroups exceed the adapter's {max_groups}", d.groups)));
        }
        let mut enc = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(what) });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(what), timestamp_writes: None });
            for d in dispatches {
                pass.set_pipeline(d.pipeline);
                pass.set_bind_group(0, &d.bind, &[]);
                pass.dispatch_workgroups(d.groups.0, d.groups.1, d.groups.2);
            }
        }
        let staging: Vec<wgpu::Buffer> = reads
            .iter()
            .map(|src| {
                let st = self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("readback"),
                    size: src.size(),
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                enc.copy_buffer_to_buffer(src, 0, &st, 0, src.size());
                st
            })
            .collect();
        self.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        for (i, st) in staging.iter().enumerate() {
            let tx = tx.clone();
            st.slice(..).map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send((i, r));
            });
        }
        drop(tx);
        self.check(what)?;
        for (i, r) in rx.iter() {
            r.map_err(|e| Error::Device(format!("{what}: reading buffer {i} back: {e}")))?;
        }
        staging
            .iter()
            .map(|st| {
                let bytes = st
                    .slice(..)
                    .get_mapped_range()
                    .map_err(|e| Error::Device(format!("{what}: mapping a result: {e}")))?
                    .to_vec();
                st.unmap();
                Ok(bytes)
            })
            .collect()
    }

    fn gemm_dispatch<'a>(
        &'a self,
        epilogue: Epilogue,
        xq: &wgpu::Buffer,
        xs: &wgpu::Buffer,
        lin: &GpuLinear,
        y: &wgpu::Buffer,
        m: usize,
    ) -> Dispatch<'a> {
        let params = self.uniform([m as u32, lin.n as u32, lin.k4 as u32, 0]);
        let pipeline = &self.gemm[epilogue as usize];
        let bind = self.bind(pipeline, &[(0, xq), (1, xs), (2, &lin.w), (3, &lin.scales), (4, &lin.bias), (5, y), (6, &params)]);
        Dispatch { pipeline, bind, groups: (lin.n.div_ceil(GEMM_TILE) as u32, m.div_ceil(GEMM_TILE) as u32, 1) }
    }

    /// LayerNorm (with `residual` added first, if given) of `x` in place, then quantization
    /// of the result into `q`/`qs`.
    #[allow(clippy::too_many_arguments)]
    fn norm_dispatch<'a>(
        &'a self,
        x: &wgpu::Buffer,
        residual: Option<&wgpu::Buffer>,
        ln: &GpuNorm,
        q: &wgpu::Buffer,
        qs: &wgpu::Buffer,
        m: usize,
        h: usize,
        eps: f32,
    ) -> Dispatch<'a> {
        let params = self.uniform([m as u32, h as u32, eps.to_bits(), 0]);
        let (pipeline, res) = match residual {
            Some(r) => (&self.add_layer_norm, r),
            None => (&self.layer_norm, &self.dummy),
        };
        let bind = self.bind(pipeline, &[(0, x), (1, res), (2, &ln.gamma), (3, &ln.beta), (4, q), (5, qs), (6, &params)]);
        Dispatch { pipeline, bind, groups: (m as u32, 1, 1) }
    }

    fn quantize_dispatch<'a>(&'a self, x: &wgpu::Buffer, q: &wgpu::Buffer, qs: &wgpu::Buffer, m: usize, h: usize) -> Dispatch<'a> {
        let params = self.uniform([m as u32, h as u32, 0, 0]);
        let bind = self.bind(&self.quantize, &[(0, x), (4, q), (5, qs), (6, &params)]);
        Dispatch { pipeline: &self.quantize, bind, groups: (m as u32, 1, 1) }
    }

    #[allow(clippy::too_many_arguments)]
    fn attention_dispatch<'a>(
        &self,
        pipeline: &'a wgpu::ComputePipeline,
        qkv: &wgpu::Buffer,
        seqs: &wgpu::Buffer,
        ctx: &wgpu::Buffer,
        lens: &[usize],
        heads: usize,
        dh: usize,
    ) -> Dispatch<'a> {
        let scale = 1.0 / (dh as f32).sqrt();
        let params = self.uniform([(heads * dh) as u32, scale.to_bits(), 0, 0]);
        let bind = self.bind(pipeline, &[(0, qkv), (1, seqs), (2, ctx), (3, &params)]);
        let longest = lens.iter().copied().max().unwrap_or(0);
        Dispatch { pipeline, bind, groups: (longest.div_ceil(64).max(1) as u32, heads as u32, lens.len() as u32) }
    }

    fn seqs_buffer(&self, lens: &[usize]) -> wgpu::Buffer {
        let mut v = Vec::with_capacity(lens.len() * 2);
        let mut start = 0u32;
        for &l in lens {
            v.extend([start, l as u32]);
            start += l as u32;
        }
        self.upload("sequences", bytemuck::cast_slice(&v))
    }

    // ---- single kernels, for tests and measurements -------------------------------------

    /// `act(f32(xq . wq) * xs * ws + bias)` for int8 `xq` (`[m, k]`) and `wq` (`[n, k]`).
    #[allow(clippy::too_many_arguments)]
    pub fn gemm_i8(
        &self,
        xq: &[i8],
        xs: &[f32],
        wq: &[i8],
        ws: &[f32],
        bias: &[f32],
        (m, n, k): (usize, usize, usize),
        epilogue: Epilogue,
    ) -> Result<Vec<f32>> {
        check_len("xq", xq.len(), m * k)?;
        check_len("xs", xs.len(), m)?;
        check_len("bias", bias.len(), n)?;
        let lin = GpuLinear::upload(self, wq, ws, bias, n, k)?;
        let xqb = self.upload("xq", bytemuck::cast_slice(&pack_i8(xq, m, k)));
        let xsb = self.upload("xs", bytemuck::cast_slice(xs));
        let y = self.scratch("y", m * n * 4)?;
        let d = self.gemm_dispatch(epilogue, &xqb, &xsb, &lin, &y, m);
        let out = self.run("int8 gemm", &[d], &[&y])?;
        Ok(floats(&out[0], m * n))
    }

    /// LayerNorm of `[rows, h]` rows (after adding `residual`, if given) and the result's
    /// per-row int8 quantization: (normalized, int8 values, row scales).
    pub fn layer_norm(
        &self,
        x: &[f32],
        residual: Option<&[f32]>,
        gamma: &[f32],
        beta: &[f32],
        eps: f32,
    ) -> Result<(Vec<f32>, Vec<i8>, Vec<f32>)> {
        let h = gamma.len();
        if h == 0 || !h.is_multiple_of(4) || !x.len().is_multiple_of(h) || beta.len() != h {
            return Err(Error::InvalidInput(format!("layer_norm: width {h} (a multiple of 4) and {} values", x.len())));
        }
        let m = x.len() / h;
        let xb = self.upload("x", bytemuck::cast_slice(x));
        let rb = residual.map(|r| self.upload("residual", bytemuck::cast_slice(r)));
        let ln = GpuNorm { gamma: self.upload("gamma", bytemuck::cast_slice(gamma)), beta: self.upload("beta", bytemuck::cast_slice(beta)) };
        let q = self.scratch("q", m * h)?;
        let qs = self.scratch("qs", m * 4)?;
        let d = self.norm_dispatch(&xb, rb.as_ref(), &ln, &q, &qs, m, h, eps);
        let out = self.run("layer norm", &[d], &[&xb, &q, &qs])?;
        let qwords: Vec<u32> = bytemuck::pod_collect_to_vec(&out[1]);
        Ok((floats(&out[0], m * h), unpack_i8(&qwords, m, h), floats(&out[2], m)))
    }

    /// Self-attention over packed sequences: `qkv` rows are `[q | k | v]` (`3 * heads * dh`
    /// wide), one row per token of the sequences of `lens`, in order.
    pub fn attention(&self, qkv: &[f32], lens: &[usize], heads: usize, dh: usize) -> Result<Vec<f32>> {
        let h = heads * dh;
        let total: usize = lens.iter().sum();
        check_len("qkv", qkv.len(), total * 3 * h)?;
        let pipeline = self.attention_pipeline(dh)?;
        let qb = self.upload("qkv", bytemuck::cast_slice(qkv));
        let sb = self.seqs_buffer(lens);
        let ctx = self.scratch("ctx", total * h * 4)?;
        let d = self.attention_dispatch(&pipeline, &qb, &sb, &ctx, lens, heads, dh);
        let out = self.run("attention", &[d], &[&ctx])?;
        Ok(floats(&out[0], total * h))
    }
}

fn pipeline(device: &wgpu::Device, module: &wgpu::ShaderModule, entry: &str, constants: &[(&str, f64)]) -> wgpu::ComputePipeline {
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: None,
        module,
        entry_point: Some(entry),
        compilation_options: wgpu::PipelineCompilationOptions { constants, ..Default::default() },
        cache: None,
    })
}

fn floats(bytes: &[u8], n: usize) -> Vec<f32> {
    let mut v: Vec<f32> = bytemuck::pod_collect_to_vec(bytes);
    v.truncate(n);
    v
}

fn check_len(what: &str, got: usize, want: usize) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!("{what}: {got} values, expected {want}")))
    }
}

/// An int8 Linear layer on the GPU: packed weights `[n, k4]`, channel scales, bias.
struct GpuLinear {
    w: wgpu::Buffer,
    scales: wgpu::Buffer,
    bias: wgpu::Buffer,
    n: usize,
    k4: usize,
}

impl GpuLinear {
    fn upload(dev: &WgslDevice, wq: &[i8], ws: &[f32], bias: &[f32], n: usize, k: usize) -> Result<Self> {
        check_len("weights", wq.len(), n * k)?;
        check_len("weight scales", ws.len(), n)?;
        check_len("bias", bias.len(), n)?;
        Ok(GpuLinear {
            w: dev.upload("weights", bytemuck::cast_slice(&pack_i8(wq, n, k))),
            scales: dev.upload("weight scales", bytemuck::cast_slice(ws)),
            bias: dev.upload("bias", bytemuck::cast_slice(bias)),
            n,
            k4: k.div_ceil(4),
        })
    }

    /// Several Linear layers with the same input, stacked by rows (q, k, v), as int8: the
    /// file's own int8 values when it has them, quantized per row here otherwise.
    fn load(dev: &WgslDevice, weights: &ModelWeights, names: &[&str]) -> Result<Self> {
        let (mut q, mut s, mut bias) = (Vec::new(), Vec::new(), Vec::new());
        let mut k = 0;
        for name in names {
            let t = weights.get(&format!("{name}.weight"))?;
            k = t.shape[1];
            bias.extend(weights.get(&format!("{name}.bias"))?.to_f32());
            match t.i8_parts() {
                Some((tq, ts)) => {
                    q.extend_from_slice(tq);
                    s.extend_from_slice(ts);
                }
                None => {
                    let (tq, ts) = crate::model::quant::quantize_rows_i8(&t.to_f32(), t.shape[0], k);
                    q.extend(tq);
                    s.extend(ts);
                }
            }
        }
        Self::upload(dev, &q, &s, &bias, bias.len(), k)
    }
}

struct GpuNorm {
    gamma: wgpu::Buffer,
    beta: wgpu::Buffer,
}

impl GpuNorm {
    fn load(dev: &WgslDevice, weights: &ModelWeights, name: &str) -> Result<Self> {
        let g = weights.get(&format!("{name}.weight"))?.to_f32();
        let b = weights.get(&format!("{name}.bias"))?.to_f32();
        Ok(GpuNorm { gamma: dev.upload("gamma", bytemuck::cast_slice(&g)), beta: dev.upload("beta", bytemuck::cast_slice(&b)) })
    }
}

struct GpuLayer {
    qkv: GpuLinear,
    o: GpuLinear,
    attn_ln: GpuNorm,
    up: GpuLinear,
    down: GpuLinear,
    ffn_ln: GpuNorm,
}

/// The cross-encoder head, on the CPU (one row per pair): pooler `[h, h]` + bias, classifier.
struct Classifier {
    pooler_w: Vec<f32>,
    pooler_b: Vec<f32>,
    weight: Vec<f32>,
    bias: f32,
}

/// A BERT encoder on the WGSL kernels, int8 Linear layers.
pub struct WgslBert {
    dev: WgslDevice,
    cfg: ModelConfig,
    word: WeightTensor,
    pos: Vec<f32>,
    types: Vec<f32>,
    emb_ln: GpuNorm,
    layers: Vec<GpuLayer>,
    classifier: Option<Classifier>,
}

impl WgslBert {
    /// Opens the GPU, uploads the model's int8 weights and runs one tiny input through it, so
    /// that a device that cannot run the kernels fails here with `Error::Device`.
    pub fn new(weights: &ModelWeights) -> Result<Self> {
        let cfg = weights.config.clone();
        let (h, inter) = (cfg.hidden_size, cfg.intermediate_size);
        if !h.is_multiple_of(4) || !inter.is_multiple_of(4) {
            return Err(Error::Unsupported(format!("hidden size {h} / intermediate size {inter} not multiples of 4 on the WGSL path")));
        }
        if cfg.head_dim() > MAX_HEAD_DIM || !cfg.head_dim().is_multiple_of(4) {
            return Err(Error::Unsupported(format!(
                "head size {} on the WGSL path (a multiple of 4, at most {MAX_HEAD_DIM})",
                cfg.head_dim()
            )));
        }
        let dev = WgslDevice::new()?;
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for l in 0..cfg.num_layers {
            let p = |s: &str| format!("layer.{l}.{s}");
            layers.push(GpuLayer {
                qkv: GpuLinear::load(&dev, weights, &[&p("q"), &p("k"), &p("v")])?,
                o: GpuLinear::load(&dev, weights, &[&p("o")])?,
                attn_ln: GpuNorm::load(&dev, weights, &p("attn_ln"))?,
                up: GpuLinear::load(&dev, weights, &[&p("up")])?,
                down: GpuLinear::load(&dev, weights, &[&p("down")])?,
                ffn_ln: GpuNorm::load(&dev, weights, &p("ffn_ln"))?,
            });
        }
        let classifier = if cfg.head == Head::Classifier {
            Some(Classifier {
                pooler_w: weights.get("pooler.weight")?.to_f32(),
                pooler_b: weights.get("pooler.bias")?.to_f32(),
                weight: weights.get("classifier.weight")?.to_f32(),
                bias: weights.get("classifier.bias")?.to_f32()[0],
            })
        } else {
            None
        };
        let model = WgslBert {
            emb_ln: GpuNorm::load(&dev, weights, "emb.ln")?,
            word: weights.get("emb.word")?.clone(),
            pos: weights.get("emb.pos")?.to_f32(),
            types: weights.get("emb.type")?.to_f32(),
            layers,
            classifier,
            cfg,
            dev,
        };
        model.dev.attention_pipeline(model.cfg.head_dim())?;
        model.encode(&[Encoded { ids: vec![0, 1], type_ids: vec![0, 0] }])?;
        Ok(model)
    }

    /// The adapter's name.
    pub fn adapter(&self) -> &str {
        self.dev.name()
    }

    /// Final hidden states of every token, concatenated (`[sum of lengths, hidden]`).
    fn encode(&self, batch: &[Encoded]) -> Result<Vec<f32>> {
        let cfg = &self.cfg;
        let (h, inter) = (cfg.hidden_size, cfg.intermediate_size);
        let lens: Vec<usize> = batch.iter().map(|e| e.ids.len()).collect();
        let m: usize = lens.iter().sum();
        if m == 0 {
            return Ok(Vec::new());
        }
        // Token + position + type embeddings: a gather, done here.
        let mut x = vec![0f32; m * h];
        let mut row = 0;
        for e in batch {
            for (p, (&id, &tt)) in e.ids.iter().zip(&e.type_ids).enumerate() {
                let out = &mut x[row * h..(row + 1) * h];
                self.word.row_into((id as usize).min(cfg.vocab_size - 1), out);
                let tt = (tt as usize).min(cfg.type_vocab_size - 1);
                let p = p.min(cfg.max_position_embeddings - 1);
                for ((o, pv), tv) in out.iter_mut().zip(&self.pos[p * h..(p + 1) * h]).zip(&self.types[tt * h..(tt + 1) * h]) {
                    *o += pv + tv;
                }
                row += 1;
            }
        }
        let dev = &self.dev;
        let attention = dev.attention_pipeline(cfg.head_dim())?;
        let xb = dev.upload("x", bytemuck::cast_slice(&x));
        let ab = dev.scratch("a", m * h * 4)?;
        let qkv = dev.scratch("qkv", m * 3 * h * 4)?;
        let ctx = dev.scratch("ctx", m * h * 4)?;
        let u = dev.scratch("ffn", m * inter * 4)?;
        let q = dev.scratch("quantized", m * h.max(inter))?;
        let qs = dev.scratch("row scales", m * 4)?;
        let seqs = dev.seqs_buffer(&lens);
        let act = match cfg.activation {
            Activation::Gelu => Epilogue::GeluErf,
            Activation::GeluTanh => Epilogue::GeluTanh,
        };
        let eps = cfg.layer_norm_eps;
        let mut d = Vec::with_capacity(1 + 9 * self.layers.len());
        d.push(dev.norm_dispatch(&xb, None, &self.emb_ln, &q, &qs, m, h, eps));
        for l in &self.layers {
            d.push(dev.gemm_dispatch(Epilogue::Bias, &q, &qs, &l.qkv, &qkv, m));
            d.push(dev.attention_dispatch(&attention, &qkv, &seqs, &ctx, &lens, cfg.num_heads, cfg.head_dim()));
            d.push(dev.quantize_dispatch(&ctx, &q, &qs, m, h));
            d.push(dev.gemm_dispatch(Epilogue::Bias, &q, &qs, &l.o, &ab, m));
            d.push(dev.norm_dispatch(&ab, Some(&xb), &l.attn_ln, &q, &qs, m, h, eps));
            d.push(dev.gemm_dispatch(act, &q, &qs, &l.up, &u, m));
            d.push(dev.quantize_dispatch(&u, &q, &qs, m, inter));
            d.push(dev.gemm_dispatch(Epilogue::Bias, &q, &qs, &l.down, &xb, m));
            d.push(dev.norm_dispatch(&xb, Some(&ab), &l.ffn_ln, &q, &qs, m, h, eps));
        }
        let out = dev.run("bert encoder", &d, &[&xb])?;
        Ok(floats(&out[0], m * h))
    }

    /// Pooled (and, if the model says so, L2-normalised) vectors, one per input.
    pub fn try_embed(&self, batch: &[Encoded]) -> Result<Vec<Vec<f32>>> {
        Ok(super::native::pool(&self.cfg, &self.encode(batch)?, batch))
    }

    /// Cross-encoder logits, one per encoded pair (empty for a model without the head).
    pub fn try_score(&self, batch: &[Encoded]) -> Result<Vec<f32>> {
        let h = self.cfg.hidden_size;
        let Some(c) = &self.classifier else {
            return Ok(Vec::new());
        };
        let x = self.encode(batch)?;
        let mut cls = Vec::with_capacity(batch.len() * h);
        let mut row = 0;
        for e in batch {
            cls.extend_from_slice(&x[row * h..(row + 1) * h]);
            row += e.ids.len();
        }
        let mut p = vec![0f32; batch.len() * h];
        super::kernels::gemm_f32_bias(&cls, &c.pooler_w, &c.pooler_b, &mut p, batch.len(), h, h);
        Ok(p.chunks_exact(h).map(|r| r.iter().zip(&c.weight).map(|(a, b)| a.tanh() * b).sum::<f32>() + c.bias).collect())
    }

    /// [`Self::try_embed`] for the embedder's infallible batch interface: a device lost
    /// after a successful start is not recoverable there, so it panics with the reason.
    pub fn embed(&self, batch: &[Encoded]) -> Vec<Vec<f32>> {
        self.try_embed(batch).unwrap_or_else(|e| panic!("WGSL encoder: {e}"))
    }

    /// [`Self::try_score`], panicking as [`Self::embed`] does.
    pub fn score(&self, batch: &[Encoded]) -> Vec<f32> {
        self.try_score(batch).unwrap_or_else(|e| panic!("WGSL encoder: {e}"))
    }
}
