//! ponder's model file: one self-contained file holding config, tokenizer and tensors.
//!
//! ```text
//! "PONDRMDL" | u32 format version | u32 header length | header (postcard) | pad to 64
//! | data section (each blob 64-byte aligned, zstd only where it saves >= 20%)
//! | footer: u32 CRC32 of every byte before it | u32 format version | "PNDRMEND"
//! ```
//! Uncompressed tensors are read in place from the memory map (or from the binary for the
//! embedded model), so loading costs a checksum pass and no copy.

use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use super::arch::{self, TensorKind};
use super::config::ModelConfig;
use super::quant;
use super::weights::{Bytes, DType, ModelWeights, WeightTensor};
use super::Precision;
use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"PONDRMDL";
const FOOTER_MAGIC: &[u8; 8] = b"PNDRMEND";
/// Bumped whenever the layout changes incompatibly. Version 2 added the architecture
/// settings to `ModelConfig`; version 1 files (BERT only) are still read.
pub const FORMAT_VERSION: u32 = 2;
const ALIGN: usize = 64;
const FOOTER_LEN: usize = 16;

#[derive(Serialize, Deserialize)]
struct Header {
    config: ModelConfig,
    precision: Precision,
    provenance: String,
    tokenizer: Section,
    tensors: Vec<Entry>,
}

/// Version 1's header: `ModelConfig` before the architecture settings were added.
#[derive(Deserialize)]
struct HeaderV1 {
    config: ConfigV1,
    precision: Precision,
    provenance: String,
    tokenizer: Section,
    tensors: Vec<Entry>,
}

#[derive(Deserialize)]
struct ConfigV1 {
    architecture: super::config::Architecture,
    head: super::config::Head,
    vocab_size: usize,
    hidden_size: usize,
    num_layers: usize,
    num_heads: usize,
    intermediate_size: usize,
    max_position_embeddings: usize,
    type_vocab_size: usize,
    layer_norm_eps: f32,
    activation: super::config::Activation,
    pooling: super::config::Pooling,
    normalize: bool,
    max_seq_len: usize,
    pad_token_id: u32,
}

impl From<HeaderV1> for Header {
    fn from(h: HeaderV1) -> Header {
        let c = h.config;
        Header {
            config: ModelConfig {
                architecture: c.architecture,
                head: c.head,
                vocab_size: c.vocab_size,
                hidden_size: c.hidden_size,
                num_layers: c.num_layers,
                num_heads: c.num_heads,
                intermediate_size: c.intermediate_size,
                max_position_embeddings: c.max_position_embeddings,
                type_vocab_size: c.type_vocab_size,
                layer_norm_eps: c.layer_norm_eps,
                activation: c.activation,
                pooling: c.pooling,
                normalize: c.normalize,
                max_seq_len: c.max_seq_len,
                pad_token_id: c.pad_token_id,
                modern_bert: None,
                decoder: None,
                colbert: None,
            },
            precision: h.precision,
            provenance: h.provenance,
            tokenizer: h.tokenizer,
            tensors: h.tensors,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy)]
struct Section {
    /// Offset from the start of the data section.
    offset: u64,
    len: u64,
    zstd: bool,
    raw_len: u64,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    name: String,
    dtype: DType,
    shape: Vec<u64>,
    data: Section,
    scales: Option<Section>,
}

/// Storage type of each tensor kind at a given precision.
fn storage(kind: TensorKind, precision: Precision) -> DType {
    match (precision, kind) {
        (_, TensorKind::Vector) | (Precision::F32, _) => DType::F32,
        (Precision::F16, _) | (Precision::Int8, TensorKind::Embedding) => DType::F16,
        (Precision::Int8, TensorKind::Linear) => DType::I8,
    }
}

struct DataWriter {
    buf: Vec<u8>,
}

impl DataWriter {
    fn push(&mut self, raw: &[u8], try_zstd: bool) -> Result<Section> {
        while self.buf.len() % ALIGN != 0 {
            self.buf.push(0);
        }
        let offset = self.buf.len() as u64;
        if try_zstd && !raw.is_empty() {
            let packed = zstd::bulk::compress(raw, 19).map_err(|e| Error::Config(format!("zstd: {e}")))?;
            if packed.len() * 5 <= raw.len() * 4 {
                self.buf.extend_from_slice(&packed);
                return Ok(Section { offset, len: packed.len() as u64, zstd: true, raw_len: raw.len() as u64 });
            }
        }
        self.buf.extend_from_slice(raw);
        Ok(Section { offset, len: raw.len() as u64, zstd: false, raw_len: raw.len() as u64 })
    }
}

/// Serialises `weights` at `precision`.
pub fn to_bytes(weights: &ModelWeights, precision: Precision, provenance: &str) -> Result<Vec<u8>> {
    weights.validate()?;
    let mut data = DataWriter { buf: Vec::new() };
    let tokenizer = data.push(&weights.tokenizer_json, true)?;
    let mut entries = Vec::new();
    for spec in arch::layout(&weights.config) {
        let t = quant::convert(weights.get(&spec.name)?, storage(spec.kind, precision));
        let section = data.push(t.data.as_slice(), true)?;
        let scales = match &t.scales {
            Some(s) => {
                let raw: Vec<u8> = s.iter().flat_map(|v| v.to_le_bytes()).collect();
                Some(data.push(&raw, false)?)
            }
            None => None,
        };
        entries.push(Entry {
            name: spec.name,
            dtype: t.dtype,
            shape: t.shape.iter().map(|&d| d as u64).collect(),
            data: section,
            scales,
        });
    }
    let header = Header {
        config: weights.config.clone(),
        precision,
        provenance: provenance.to_string(),
        tokenizer,
        tensors: entries,
    };
    let header_bytes = postcard::to_allocvec(&header).map_err(|e| Error::Config(format!("header: {e}")))?;
    let mut out = Vec::with_capacity(header_bytes.len() + data.buf.len() + 256);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(header_bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(&header_bytes);
    while out.len() % ALIGN != 0 {
        out.push(0);
    }
    out.extend_from_slice(&data.buf);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(FOOTER_MAGIC);
    Ok(out)
}

/// Writes a model file atomically (temporary file, fsync, rename).
pub fn write_file(weights: &ModelWeights, precision: Precision, provenance: &str, path: &Path) -> Result<()> {
    let bytes = to_bytes(weights, precision, provenance)?;
    crate::fsutil::write_atomic(path, &bytes)
}

/// Memory-maps and reads a model file.
pub fn read_file(path: &Path) -> Result<ModelWeights> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: model files are written once, atomically, and never modified in place.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    read_bytes(Bytes::from_owner(Arc::new(map)), path)
}

/// Reads a model from bytes, checking magic, version and checksum.
pub fn read_bytes(bytes: Bytes, path: &Path) -> Result<ModelWeights> {
    read(bytes, path, true)
}

/// Reads a model built into the binary without hashing it whole: its bytes are the
/// executable's own read-only data, and the checksum would page in the whole embedding table
/// (most of which a query never touches) on every start. A unit test verifies the built-in
/// models' checksums.
pub fn read_embedded(bytes: &'static [u8], name: &str) -> Result<ModelWeights> {
    read(Bytes::from_static(bytes), Path::new(name), false)
}

fn read(bytes: Bytes, path: &Path, verify: bool) -> Result<ModelWeights> {
    let b = bytes.as_slice();
    let corrupt = |m: String| Error::corrupt(path, m);
    if b.len() < 16 + FOOTER_LEN || &b[..8] != MAGIC {
        return Err(corrupt("not a ponder model file (bad magic)".into()));
    }
    let version = u32::from_le_bytes(b[8..12].try_into().unwrap());
    if version != FORMAT_VERSION && version != 1 {
        return Err(corrupt(format!(
            "model format version {version}; this ponder reads versions 1 to {FORMAT_VERSION}"
        )));
    }
    let foot = &b[b.len() - FOOTER_LEN..];
    if &foot[8..16] != FOOTER_MAGIC {
        return Err(corrupt("truncated (no footer)".into()));
    }
    let stored_crc = u32::from_le_bytes(foot[0..4].try_into().unwrap());
    let body_len = b.len() - FOOTER_LEN;
    if verify && crc32fast::hash(&b[..body_len]) != stored_crc {
        return Err(corrupt("checksum mismatch".into()));
    }
    let header_len = u32::from_le_bytes(b[12..16].try_into().unwrap()) as usize;
    if 16 + header_len > body_len {
        return Err(corrupt("header runs past the end of the file".into()));
    }
    let raw_header = &b[16..16 + header_len];
    let header: Header = if version == 1 {
        postcard::from_bytes::<HeaderV1>(raw_header).map(Header::from)
    } else {
        postcard::from_bytes(raw_header)
    }
    .map_err(|e| corrupt(format!("header: {e}")))?;
    let data_start = (16 + header_len).div_ceil(ALIGN) * ALIGN;

    let section = |s: &Section| -> Result<Bytes> {
        let start = data_start as u64 + s.offset;
        let end = start.checked_add(s.len).filter(|&e| e <= body_len as u64);
        let Some(end) = end else {
            return Err(corrupt("a section runs past the end of the file".into()));
        };
        let raw = bytes.slice(start as usize, (end - start) as usize);
        if s.zstd {
            let out = zstd::bulk::decompress(raw.as_slice(), s.raw_len as usize)
                .map_err(|e| corrupt(format!("zstd: {e}")))?;
            Ok(Bytes::from_vec(out))
        } else {
            Ok(raw)
        }
    };

    let tokenizer_json = section(&header.tokenizer)?.as_slice().to_vec();
    let mut tensors = BTreeMap::new();
    for e in &header.tensors {
        let data = section(&e.data)?;
        let scales = match &e.scales {
            Some(s) => {
                let raw = section(s)?;
                let v: Vec<f32> = raw
                    .as_slice()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                Some(Arc::new(v))
            }
            None => None,
        };
        let shape = e.shape.iter().map(|&d| d as usize).collect();
        tensors.insert(e.name.clone(), WeightTensor { dtype: e.dtype, shape, data, scales });
    }
    let weights = ModelWeights {
        config: header.config,
        tokenizer_json,
        tensors,
        source: format!("{} ({:?}; {})", path.display(), header.precision, header.provenance),
    };
    weights.validate().map_err(|e| corrupt(e.to_string()))?;
    Ok(weights)
}

/// The precision a model file was written at, without loading tensors.
pub fn precision_of(weights: &ModelWeights) -> Precision {
    if weights.tensors.values().any(|t| t.dtype == DType::I8) {
        Precision::Int8
    } else if weights.tensors.values().any(|t| t.dtype == DType::F16) {
        Precision::F16
    } else {
        Precision::F32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_models_pass_their_checksums() {
        // Starting up skips the whole-file checksum of the models built into the binary
        // (`read_embedded`); this is where they are checked.
        for (bytes, name) in [
            (crate::model::embedded::DEFAULT_MODEL, "default model"),
            (crate::model::embedded::DEFAULT_RERANKER, "reranker"),
        ] {
            read_bytes(Bytes::from_static(bytes), Path::new(name)).unwrap();
        }
    }

    #[test]
    fn the_default_models_fingerprint_is_stable() {
        // Every index is stamped with this; if it changes, every user's index must be rebuilt.
        // Settings added to `ModelConfig` after format 1 must not enter it while unset.
        let w = read_embedded(crate::model::embedded::DEFAULT_MODEL, "default model").unwrap();
        assert_eq!(w.fingerprint(), "43472145c76b5e27");
    }
}
