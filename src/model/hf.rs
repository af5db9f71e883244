//! Reads a Hugging Face model directory (`config.json`, safetensors weights, `tokenizer.json`,
//! sentence-transformers files): whole into [`ModelWeights`] with f32 tensors, or one tensor at
//! a time straight into a ponder model file ([`import_hf_dir`]).
//!
//! Weights are `model.safetensors`, or the shards that `model.safetensors.index.json` lists
//! (`model-00001-of-00004.safetensors`, ...), as transformers saves large models. The files are
//! memory-mapped and read in place; importing holds one converted tensor at a time, so a model
//! larger than memory in f32 can be imported.

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::arch::{self, TensorSpec, HF_PREFIXES};
use super::config::ModelConfig;
use super::weights::{Bytes, DType, ModelWeights, WeightTensor};
use super::{format, quant, Precision};
use crate::error::{Error, Result};

const SINGLE: &str = "model.safetensors";
const INDEX: &str = "model.safetensors.index.json";

/// The safetensors files of one folder, memory-mapped.
struct Folder {
    /// Each file's path and map.
    files: Vec<(PathBuf, Arc<Mmap>)>,
    /// Sharded folders: tensor name to its file, from the index.
    index: Option<HashMap<String, usize>>,
}

impl Folder {
    fn open(folder: &Path) -> Result<Folder> {
        let map = |path: &Path| -> Result<Arc<Mmap>> {
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            // SAFETY: the map is read-only and the safetensors header is validated on every
            // lookup. A file rewritten underneath us yields wrong values; one truncated while it
            // is being read would fault, as any memory-mapped read would.
            Ok(Arc::new(unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?))
        };
        let index_path = folder.join(INDEX);
        if !folder.join(SINGLE).exists() && index_path.exists() {
            let text = std::fs::read(&index_path).map_err(|e| Error::io(&index_path, e))?;
            let json: Value = serde_json::from_slice(&text)
                .map_err(|e| Error::corrupt(&index_path, format!("not valid JSON: {e}")))?;
            let weight_map = json
                .get("weight_map")
                .and_then(Value::as_object)
                .ok_or_else(|| Error::corrupt(&index_path, "no \"weight_map\" object"))?;
            let mut names: Vec<&str> = Vec::new();
            let mut index = HashMap::with_capacity(weight_map.len());
            for (tensor, file) in weight_map {
                let file = file
                    .as_str()
                    .ok_or_else(|| Error::corrupt(&index_path, format!("{tensor}: file name is not a string")))?;
                // Shards sit next to the index; a name that leaves the folder is refused.
                if file.contains('/') || file.contains('\\') || file.starts_with('.') {
                    return Err(Error::corrupt(&index_path, format!("shard name {file:?} is not a file in this folder")));
                }
                let slot = match names.iter().position(|n| *n == file) {
                    Some(i) => i,
                    None => {
                        names.push(file);
                        names.len() - 1
                    }
                };
                index.insert(tensor.clone(), slot);
            }
            let files = names
                .iter()
                .map(|n| {
                    let p = folder.join(n);
                    map(&p).map(|m| (p, m))
                })
                .collect::<Result<Vec<_>>>()?;
            let folder = Folder { files, index: Some(index) };
            folder.check_headers()?;
            return Ok(folder);
        }
        let path = folder.join(SINGLE);
        let m = map(&path)?;
        let folder = Folder { files: vec![(path, m)], index: None };
        folder.check_headers()?;
        Ok(folder)
    }

    /// Every file's safetensors header parses: a damaged file is named when the folder is
    /// opened, not reported as a missing tensor later.
    fn check_headers(&self) -> Result<()> {
        (0..self.files.len()).try_for_each(|i| self.lookup(i).map(|_| ()))
    }

    /// Where the folder's weights are, for messages.
    fn describe(&self) -> String {
        match (&self.index, self.files.first()) {
            (None, Some((p, _))) => p.display().to_string(),
            (Some(_), Some((p, _))) => {
                format!("the {} shards listed in {}", self.files.len(), p.with_file_name(INDEX).display())
            }
            _ => "no files".into(),
        }
    }

    /// The tensor stored under one of `names`, as it is on disk (f32, f16 or bf16), read in
    /// place from the map.
    fn tensor(&self, names: &[String], spec: &TensorSpec) -> Result<WeightTensor> {
        let shown = spec.hf_name.trim_start_matches('@');
        let found = match &self.index {
            Some(index) => names.iter().find_map(|n| index.get(n).map(|&f| (f, n.as_str()))),
            None => {
                let st = self.lookup(0)?;
                names.iter().find(|n| st.tensor(n).is_ok()).map(|n| (0, n.as_str()))
            }
        };
        let (file, name) =
            found.ok_or_else(|| Error::tensor(shown, format!("not found in {}", self.describe())))?;
        let (path, map) = &self.files[file];
        let st = self.lookup(file)?;
        let view = st
            .tensor(name)
            .map_err(|_| Error::corrupt(path, format!("{name} is listed in {INDEX} but not stored in this shard")))?;
        if view.shape() != spec.shape.as_slice() {
            return Err(Error::tensor(
                shown,
                format!("shape {:?} in {}, expected {:?}", view.shape(), path.display(), spec.shape),
            ));
        }
        let dtype = match view.dtype() {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            other => return Err(Error::tensor(shown, format!("unsupported dtype {other:?} in {}", path.display()))),
        };
        let data = view.data();
        // The view borrows the map: find its offset to hand out a shared slice of the map itself.
        let start = data.as_ptr() as usize - map.as_ptr() as usize;
        let data = Bytes::from_owner(map.clone() as Arc<dyn AsRef<[u8]> + Send + Sync>).slice(start, data.len());
        Ok(WeightTensor { dtype, shape: spec.shape.clone(), data, scales: None })
    }

    fn lookup(&self, file: usize) -> Result<SafeTensors<'_>> {
        let (path, map) = &self.files[file];
        SafeTensors::deserialize(map).map_err(|e| Error::corrupt(path, format!("not a valid safetensors file: {e}")))
    }
}

/// The directory's weights, folder by folder: the main folder, and sentence-transformers
/// module folders such as `1_Dense/`.
struct Source {
    folders: BTreeMap<String, Folder>,
}

impl Source {
    fn open(dir: &Path, specs: &[TensorSpec]) -> Result<Source> {
        let mut folders = BTreeMap::new();
        for spec in specs {
            let sub = folder_of(&spec.hf_name);
            if let std::collections::btree_map::Entry::Vacant(e) = folders.entry(sub) {
                let path = if e.key().is_empty() { dir.to_path_buf() } else { dir.join(e.key()) };
                e.insert(Folder::open(&path)?);
            }
        }
        Ok(Source { folders })
    }

    /// `spec`'s tensor in its stored dtype. A name with a folder (`1_Dense/linear.weight`) or
    /// an `@` is looked up as it is; the others under any of the usual HF prefixes.
    fn tensor(&self, spec: &TensorSpec) -> Result<WeightTensor> {
        let names: Vec<String> = if let Some((_, exact)) = spec.hf_name.rsplit_once('/') {
            vec![exact.to_string()]
        } else if let Some(exact) = spec.hf_name.strip_prefix('@') {
            vec![exact.to_string()]
        } else {
            HF_PREFIXES.iter().map(|p| format!("{p}{}", spec.hf_name)).collect()
        };
        self.folders[&folder_of(&spec.hf_name)].tensor(&names, spec)
    }
}

fn folder_of(hf: &str) -> String {
    hf.rsplit_once('/').map_or(String::new(), |(d, _)| d.to_string())
}

fn read_parts(dir: &Path) -> Result<(ModelConfig, Vec<u8>, Vec<TensorSpec>, Source)> {
    let config = ModelConfig::from_hf_dir(dir)?;
    config.validate()?;
    let tok_path = dir.join("tokenizer.json");
    let tokenizer_json = std::fs::read(&tok_path).map_err(|e| Error::io(&tok_path, e))?;
    let specs = arch::layout(&config);
    let source = Source::open(dir, &specs)?;
    Ok((config, tokenizer_json, specs, source))
}

/// Loads the whole model with f32 tensors (for running a directory directly, and for tests).
pub fn load_hf_dir(dir: &Path) -> Result<ModelWeights> {
    let (config, tokenizer_json, specs, source) = read_parts(dir)?;
    let mut tensors = BTreeMap::new();
    for spec in &specs {
        let t = quant::convert(&source.tensor(spec)?, DType::F32);
        tensors.insert(spec.name.clone(), t);
    }
    let weights = ModelWeights { config, tokenizer_json, tensors, source: dir.display().to_string() };
    weights.validate()?;
    Ok(weights)
}

/// What [`import_hf_dir`] did.
#[derive(Debug, Clone)]
pub struct ImportReport {
    pub tensors: usize,
    /// Parameters in the model.
    pub parameters: usize,
    /// Bytes of the weights as stored in the directory.
    pub source_bytes: usize,
}

/// Converts a Hugging Face directory into a ponder model file at `precision`, one tensor at a
/// time: each is read from the map, converted, written and dropped before the next, so memory
/// stays near the largest single converted tensor.
pub fn import_hf_dir(dir: &Path, precision: Precision, provenance: &str, out: &Path) -> Result<ImportReport> {
    let (config, tokenizer_json, _, source) = read_parts(dir)?;
    let mut report = ImportReport { tensors: 0, parameters: 0, source_bytes: 0 };
    format::write_streaming(&config, &tokenizer_json, precision, provenance, out, |spec| {
        let t = source.tensor(spec)?;
        report.tensors += 1;
        report.parameters += t.numel();
        report.source_bytes += t.data.len();
        Ok(t)
    })?;
    Ok(report)
}
