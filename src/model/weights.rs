//! In-memory model weights: typed views over bytes that may live in a memory map, in the
//! binary itself (the embedded default model), or in owned buffers. Owns dtype handling,
//! dequantization and loading dispatch (HF directory or ponder model file).

use half::f16;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::arch::{self, TensorKind};
use super::config::ModelConfig;
use crate::error::{Error, Result};

/// Shared, immutable bytes: a slice of a memory map, of a static, or of a vector.
#[derive(Clone)]
pub struct Bytes {
    owner: Arc<dyn AsRef<[u8]> + Send + Sync>,
    start: usize,
    len: usize,
}

struct StaticBytes(&'static [u8]);
impl AsRef<[u8]> for StaticBytes {
    fn as_ref(&self) -> &[u8] {
        self.0
    }
}

impl Bytes {
    pub fn from_vec(v: Vec<u8>) -> Self {
        let len = v.len();
        Bytes { owner: Arc::new(v), start: 0, len }
    }
    pub fn from_static(s: &'static [u8]) -> Self {
        Bytes { owner: Arc::new(StaticBytes(s)), start: 0, len: s.len() }
    }
    pub fn from_owner(owner: Arc<dyn AsRef<[u8]> + Send + Sync>) -> Self {
        let len = (*owner).as_ref().len();
        Bytes { owner, start: 0, len }
    }
    /// A sub-range; the caller has checked the bounds.
    pub fn slice(&self, start: usize, len: usize) -> Self {
        debug_assert!(start + len <= self.len);
        Bytes { owner: self.owner.clone(), start: self.start + start, len }
    }
    pub fn as_slice(&self) -> &[u8] {
        &(*self.owner).as_ref()[self.start..self.start + self.len]
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DType {
    F32,
    F16,
    /// Symmetric int8 with one f32 scale per row (output channel).
    I8,
    /// bfloat16, as Hugging Face checkpoints store large models. Read while importing; ponder
    /// model files never hold it.
    BF16,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::I8 => 1,
        }
    }
}

/// One tensor, row-major, little-endian.
#[derive(Clone)]
pub struct WeightTensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Bytes,
    /// Per-row scales, for `DType::I8`.
    pub scales: Option<Arc<Vec<f32>>>,
}

impl WeightTensor {
    pub fn from_f32(shape: Vec<usize>, values: &[f32]) -> Self {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        WeightTensor { dtype: DType::F32, shape, data: Bytes::from_vec(bytes), scales: None }
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Number of values in one row (the last dimension).
    pub fn row_len(&self) -> usize {
        *self.shape.last().unwrap_or(&1)
    }

    /// Dequantizes/decodes row `r` into `out` (length `row_len()`).
    pub fn row_into(&self, r: usize, out: &mut [f32]) {
        let n = self.row_len();
        let bytes = self.data.as_slice();
        match self.dtype {
            DType::F32 => {
                for (o, c) in out.iter_mut().zip(bytes[r * n * 4..(r + 1) * n * 4].chunks_exact(4)) {
                    *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
            DType::F16 => {
                for (o, c) in out.iter_mut().zip(bytes[r * n * 2..(r + 1) * n * 2].chunks_exact(2)) {
                    *o = f16::from_le_bytes([c[0], c[1]]).to_f32();
                }
            }
            DType::BF16 => {
                for (o, c) in out.iter_mut().zip(bytes[r * n * 2..(r + 1) * n * 2].chunks_exact(2)) {
                    *o = half::bf16::from_le_bytes([c[0], c[1]]).to_f32();
                }
            }
            DType::I8 => {
                let s = self.scales.as_ref().map(|s| s[r]).unwrap_or(1.0);
                for (o, &q) in out.iter_mut().zip(&bytes[r * n..(r + 1) * n]) {
                    *o = (q as i8) as f32 * s;
                }
            }
        }
    }

    /// The whole tensor as f32 (dequantized when stored int8).
    pub fn to_f32(&self) -> Vec<f32> {
        let n = self.row_len();
        let rows = if n == 0 { 0 } else { self.numel() / n };
        let mut out = vec![0f32; self.numel()];
        for r in 0..rows {
            self.row_into(r, &mut out[r * n..(r + 1) * n]);
        }
        out
    }

    /// int8 values and per-row scales (only for `DType::I8`).
    pub fn i8_parts(&self) -> Option<(&[i8], &[f32])> {
        match (self.dtype, &self.scales) {
            (DType::I8, Some(s)) => Some((bytemuck::cast_slice(self.data.as_slice()), s.as_slice())),
            _ => None,
        }
    }
}

/// A complete model: configuration, tokenizer and tensors under ponder's canonical names.
#[derive(Clone)]
pub struct ModelWeights {
    pub config: ModelConfig,
    /// The HF `tokenizer.json`, verbatim.
    pub tokenizer_json: Vec<u8>,
    pub tensors: BTreeMap<String, WeightTensor>,
    /// Human-readable origin (path, embedded, ...).
    pub source: String,
}

impl ModelWeights {
    /// Loads a Hugging Face directory or a ponder model file.
    pub fn load(path: &Path) -> Result<Self> {
        if path.is_dir() {
            super::hf::load_hf_dir(path)
        } else {
            super::format::read_file(path)
        }
    }

    /// The model built into the binary.
    pub fn embedded_default() -> Result<Self> {
        super::format::read_embedded(super::embedded::DEFAULT_MODEL, "<embedded default model>")
    }

    pub fn get(&self, name: &str) -> Result<&WeightTensor> {
        self.tensors.get(name).ok_or_else(|| Error::tensor(name, "missing from the model"))
    }

    /// Checks that every tensor the architecture needs is present with the right shape.
    pub fn validate(&self) -> Result<()> {
        self.config.validate()?;
        for spec in arch::layout(&self.config) {
            let t = self.get(&spec.name)?;
            if t.shape != spec.shape {
                return Err(Error::tensor(
                    &spec.name,
                    format!("shape {:?}, expected {:?}", t.shape, spec.shape),
                ));
            }
            if t.data.len() != t.numel() * t.dtype.size() {
                return Err(Error::tensor(&spec.name, "data length does not match its shape"));
            }
            if t.dtype == DType::I8 && t.scales.as_ref().map(|s| s.len()) != Some(t.shape[0]) {
                return Err(Error::tensor(&spec.name, "int8 tensor without one scale per row"));
            }
            if spec.kind == TensorKind::Vector && t.dtype != DType::F32 {
                return Err(Error::tensor(&spec.name, "bias/norm tensors must be f32"));
            }
        }
        Ok(())
    }

    /// Checksum over config, tokenizer and every tensor: two models with the same
    /// fingerprint produce the same vectors.
    pub fn fingerprint(&self) -> String {
        let mut h = crc32fast::Hasher::new();
        // Settings added after format 1 are left out while unset, so that a BERT model keeps
        // the fingerprint its indexes were stamped with.
        let mut cfg = serde_json::to_string(&self.config).unwrap_or_default();
        for unset in [",\"modern_bert\":null", ",\"decoder\":null", ",\"colbert\":null"] {
            cfg = cfg.replace(unset, "");
        }
        h.update(cfg.as_bytes());
        h.update(&self.tokenizer_json);
        let mut h2 = crc32fast::Hasher::new();
        for (name, t) in &self.tensors {
            h.update(name.as_bytes());
            h.update(t.data.as_slice());
            h2.update(t.data.as_slice());
            if let Some(s) = &t.scales {
                h.update(bytemuck::cast_slice(s.as_slice()));
            }
        }
        format!("{:08x}{:08x}", h.finalize(), h2.finalize())
    }

    /// Bytes the tensors occupy.
    pub fn tensor_bytes(&self) -> usize {
        self.tensors.values().map(|t| t.data.len() + t.scales.as_ref().map_or(0, |s| s.len() * 4)).sum()
    }
}
