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
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use super::arch::{self, TensorKind, TensorSpec};
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

/// Appends 64-byte-aligned sections to the data section, hashing what it writes.
struct DataWriter<W: Write> {
    out: W,
    /// Where `out` goes, for errors.
    path: std::path::PathBuf,
    pos: u64,
    crc: crc32fast::Hasher,
}

/// Tensors up to this size are compressed at zstd's highest level when that saves 20%; larger
/// ones (an imported model's matrices) are first tried on a sample, because level 19 runs at a
/// few MB/s and quantized weights rarely compress.
const ZSTD_WHOLE_MAX: usize = 32 << 20;
const ZSTD_SAMPLE: usize = 4 << 20;

fn compress(raw: &[u8]) -> Result<Option<Vec<u8>>> {
    let zstd = |b: &[u8], level| zstd::bulk::compress(b, level).map_err(|e| Error::Config(format!("zstd: {e}")));
    let worth = |packed: usize, raw: usize| packed * 5 <= raw * 4;
    let level = if raw.len() <= ZSTD_WHOLE_MAX {
        19
    } else {
        // A middle sample, since the first rows of an embedding table are often special tokens.
        let at = (raw.len() - ZSTD_SAMPLE) / 2;
        let sample = &raw[at..at + ZSTD_SAMPLE];
        if !worth(zstd(sample, 9)?.len(), sample.len()) {
            return Ok(None);
        }
        9
    };
    let packed = zstd(raw, level)?;
    Ok(worth(packed.len(), raw.len()).then_some(packed))
}

impl<W: Write> DataWriter<W> {
    fn new(out: W, path: &Path) -> Self {
        DataWriter { out, path: path.to_path_buf(), pos: 0, crc: crc32fast::Hasher::new() }
    }

    fn write(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.out.write_all(b)?;
        self.crc.update(b);
        self.pos += b.len() as u64;
        Ok(())
    }

    fn push(&mut self, raw: &[u8], try_zstd: bool) -> Result<Section> {
        let path = self.path.clone();
        let io = |e| Error::io(&path, e);
        let pad = (ALIGN - self.pos as usize % ALIGN) % ALIGN;
        self.write(&[0u8; ALIGN][..pad]).map_err(io)?;
        let offset = self.pos;
        if try_zstd && !raw.is_empty() {
            if let Some(packed) = compress(raw)? {
                self.write(&packed).map_err(io)?;
                return Ok(Section { offset, len: packed.len() as u64, zstd: true, raw_len: raw.len() as u64 });
            }
        }
        self.write(raw).map_err(io)?;
        Ok(Section { offset, len: raw.len() as u64, zstd: false, raw_len: raw.len() as u64 })
    }
}

/// Writes the tokenizer and every tensor of `config`'s layout to `data`, asking `tensor` for
/// each in turn and converting it to its storage type, and returns the header describing them.
fn write_data<W: Write>(
    config: &ModelConfig,
    tokenizer_json: &[u8],
    precision: Precision,
    provenance: &str,
    data: &mut DataWriter<W>,
    mut tensor: impl FnMut(&TensorSpec) -> Result<WeightTensor>,
) -> Result<Header> {
    let tokenizer = data.push(tokenizer_json, true)?;
    let mut entries = Vec::new();
    for spec in arch::layout(config) {
        let t = quant::convert(&tensor(&spec)?, storage(spec.kind, precision));
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
    Ok(Header { config: config.clone(), precision, provenance: provenance.to_string(), tokenizer, tensors: entries })
}

/// Magic, version, header and padding: everything before the data section.
fn prefix(header: &Header) -> Result<Vec<u8>> {
    let header_bytes = postcard::to_allocvec(header).map_err(|e| Error::Config(format!("header: {e}")))?;
    let mut out = Vec::with_capacity(header_bytes.len() + 80);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(header_bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(&header_bytes);
    while out.len() % ALIGN != 0 {
        out.push(0);
    }
    Ok(out)
}

fn footer(crc: u32) -> Vec<u8> {
    let mut out = crc.to_le_bytes().to_vec();
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(FOOTER_MAGIC);
    out
}

/// Serialises `weights` at `precision`.
pub fn to_bytes(weights: &ModelWeights, precision: Precision, provenance: &str) -> Result<Vec<u8>> {
    to_bytes_sharing(weights, precision, provenance, &[])
}

/// Writes a model file atomically (temporary file, fsync, rename).
pub fn write_file(weights: &ModelWeights, precision: Precision, provenance: &str, path: &Path) -> Result<()> {
    weights.validate()?;
    write_streaming(&weights.config, &weights.tokenizer_json, precision, provenance, path, |spec| {
        weights.get(&spec.name).cloned()
    })
}

/// Writes a model file from tensors handed over one at a time by `tensor` (in any dtype; each
/// is converted to its storage type and dropped before the next is asked for), so a model
/// need never be in memory whole. The data section goes to a temporary file first, because
/// the header that precedes it records where each tensor landed; the file then appears
/// atomically at `path`.
pub fn write_streaming(
    config: &ModelConfig,
    tokenizer_json: &[u8],
    precision: Precision,
    provenance: &str,
    path: &Path,
    tensor: impl FnMut(&TensorSpec) -> Result<WeightTensor>,
) -> Result<()> {
    config.validate()?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.data.{}", std::process::id()));
    let result = (|| -> Result<()> {
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut data = DataWriter::new(std::io::BufWriter::with_capacity(1 << 20, file), &tmp);
        let header = write_data(config, tokenizer_json, precision, provenance, &mut data, tensor)?;
        data.out.flush().map_err(|e| Error::io(&tmp, e))?;
        let head = prefix(&header)?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head);
        crc.combine(&data.crc);
        let crc = crc.finalize();
        crate::fsutil::write_atomic_with(path, |f| {
            f.write_all(&head)?;
            std::io::copy(&mut File::open(&tmp)?, f)?;
            f.write_all(&footer(crc))
        })
    })();
    let _ = std::fs::remove_file(&tmp);
    result
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

/// Serialises `weights` at `precision` with the tensors named in `shared` left out (stored
/// with no rows), for a model built into the binary that takes them from another built-in
/// model when it is read ([`read_embedded_sharing`]). The built-in reranker shares the
/// default model's word-embedding table this way: it was frozen in training, so the two are
/// the same bytes, 23 MB of the binary.
pub fn to_bytes_sharing(weights: &ModelWeights, precision: Precision, provenance: &str, shared: &[&str]) -> Result<Vec<u8>> {
    weights.validate()?;
    let mut data = DataWriter::new(Vec::new(), Path::new("<memory>"));
    let header = write_data(&weights.config, &weights.tokenizer_json, precision, provenance, &mut data, |spec| {
        let t = weights.get(&spec.name)?;
        if !shared.contains(&spec.name.as_str()) {
            return Ok(t.clone());
        }
        let mut shape = t.shape.clone();
        shape[0] = 0;
        let dtype = storage(spec.kind, precision);
        Ok(WeightTensor { dtype, shape, data: Bytes::from_vec(Vec::new()), scales: (dtype == DType::I8).then(|| Arc::new(Vec::new())) })
    })?;
    let mut out = prefix(&header)?;
    out.extend_from_slice(&data.out);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&footer(crc));
    Ok(out)
}

/// Reads a model built into the binary whose file leaves some tensors out (see
/// [`to_bytes_sharing`]): each tensor stored with no rows is taken from `base`, which must
/// hold it; then the model is validated as any other. `verify` checks the file's checksum.
pub fn read_embedded_sharing(bytes: &'static [u8], name: &str, base: &ModelWeights, verify: bool) -> Result<ModelWeights> {
    let path = Path::new(name);
    let mut w = read_raw(Bytes::from_static(bytes), path, verify)?;
    for (n, t) in w.tensors.iter_mut() {
        if t.shape.first() == Some(&0) {
            let from = base.tensors.get(n).ok_or_else(|| Error::corrupt(path, format!("{n} is shared, and the base model has none")))?;
            *t = from.clone();
        }
    }
    w.validate().map_err(|e| Error::corrupt(path, e.to_string()))?;
    Ok(w)
}

fn read(bytes: Bytes, path: &Path, verify: bool) -> Result<ModelWeights> {
    let weights = read_raw(bytes, path, verify)?;
    weights.validate().map_err(|e| Error::corrupt(path, e.to_string()))?;
    Ok(weights)
}

/// Reads the container: magic, version, checksum (when `verify`), header and sections. The
/// tensors are not checked against the architecture.
fn read_raw(bytes: Bytes, path: &Path, verify: bool) -> Result<ModelWeights> {
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
        if e.dtype == DType::BF16 {
            return Err(corrupt(format!("{}: bf16 is not a type ponder model files store", e.name)));
        }
        let shape = e.shape.iter().map(|&d| d as usize).collect();
        tensors.insert(e.name.clone(), WeightTensor { dtype: e.dtype, shape, data, scales });
    }
    let weights = ModelWeights {
        config: header.config,
        tokenizer_json,
        tensors,
        source: format!("{} ({:?}; {})", path.display(), header.precision, header.provenance),
    };
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
        let default = read_bytes(Bytes::from_static(crate::model::embedded::DEFAULT_MODEL), Path::new("default model")).unwrap();
        read_embedded_sharing(crate::model::embedded::DEFAULT_RERANKER, "reranker", &default, true).unwrap();
    }

    /// Fingerprint of the whole reranker file (`ponder train reranker`'s output) that
    /// `models/ponder-rerank-minilm-l6.int8.ponder` was cut from.
    const RERANKER_FINGERPRINT: &str = "0aa33bc49ad99f5e";

    /// The provenance a model file was written with (the end of its `source`).
    fn provenance_of(w: &ModelWeights) -> String {
        let s = &w.source;
        s.split_once("; ").map(|x| x.1.strip_suffix(')').unwrap_or(x.1).to_string()).unwrap_or_default()
    }

    /// Cuts the built-in reranker file from a whole one (what `ponder train reranker` writes):
    /// `PONDER_WHOLE_RERANKER=FILE cargo test --release --lib cut_the_reranker -- --ignored`.
    #[test]
    #[ignore]
    fn cut_the_reranker() {
        let whole = read_file(Path::new(&std::env::var("PONDER_WHOLE_RERANKER").unwrap())).unwrap();
        let default = read_embedded(crate::model::embedded::DEFAULT_MODEL, "default model").unwrap();
        assert!(whole.get("emb.word").unwrap().data.as_slice() == default.get("emb.word").unwrap().data.as_slice());
        let cut = to_bytes_sharing(&whole, Precision::Int8, &provenance_of(&whole), &["emb.word"]).unwrap();
        std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/models/ponder-rerank-minilm-l6.int8.ponder"), &cut).unwrap();
        eprintln!("whole fingerprint {}; {} bytes cut to {}", whole.fingerprint(), std::fs::metadata(std::env::var("PONDER_WHOLE_RERANKER").unwrap()).unwrap().len(), cut.len());
    }

    #[test]
    fn the_built_in_reranker_shares_the_default_models_word_table_and_is_whole() {
        // The reranker file leaves out the word-embedding table (frozen in its training: the
        // default model's bytes). Assembled, it is the model that was trained, tensor for
        // tensor: this is the fingerprint of the whole file it was cut from.
        let default = read_embedded(crate::model::embedded::DEFAULT_MODEL, "default model").unwrap();
        let r = read_embedded_sharing(crate::model::embedded::DEFAULT_RERANKER, "reranker", &default, false).unwrap();
        assert_eq!(r.fingerprint(), RERANKER_FINGERPRINT);
        // Alone, the file is refused with the missing table named, not read as a model.
        let alone = read_embedded(crate::model::embedded::DEFAULT_RERANKER, "reranker").err().unwrap().to_string();
        assert!(alone.contains("emb.word"), "{alone}");
        // The table is the default model's own bytes, not a copy.
        let (a, b) = (default.get("emb.word").unwrap(), r.get("emb.word").unwrap());
        assert_eq!(a.data.as_slice().as_ptr(), b.data.as_slice().as_ptr());
        // Cutting the whole model again gives the built-in file byte for byte.
        let cut = to_bytes_sharing(&r, Precision::Int8, &provenance_of(&r), &["emb.word"]).unwrap();
        assert!(cut == crate::model::embedded::DEFAULT_RERANKER, "the built-in reranker file is not what to_bytes_sharing writes");
    }

    #[test]
    fn large_sections_are_compressed_only_when_a_sample_says_it_pays() {
        let n = ZSTD_WHOLE_MAX + (1 << 20);
        // Values over a narrow range, as in a table of small weights: compresses well.
        let narrow: Vec<u8> = (0..n).map(|i| ((i * 7919) % 13) as u8).collect();
        let packed = compress(&narrow).unwrap().expect("compressible data is compressed");
        assert_eq!(zstd::bulk::decompress(&packed, n).unwrap(), narrow);
        // Pseudo-random bytes: the sample says no, and nothing is compressed.
        let mut x = 0x9E3779B97F4A7C15u64;
        let noise: Vec<u8> = (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(compress(&noise).unwrap().is_none());
    }

    #[test]
    fn the_default_models_fingerprint_is_stable() {
        // Every index is stamped with this; if it changes, every user's index must be rebuilt.
        // Settings added to `ModelConfig` after format 1 must not enter it while unset.
        let w = read_embedded(crate::model::embedded::DEFAULT_MODEL, "default model").unwrap();
        assert_eq!(w.fingerprint(), "43472145c76b5e27");
    }
}
