//! Reads a Hugging Face model directory (`config.json`, `model.safetensors`,
//! `tokenizer.json`, sentence-transformers files) into [`ModelWeights`] with f32 tensors.

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use super::arch::{self, HF_PREFIXES};
use super::config::ModelConfig;
use super::weights::{ModelWeights, WeightTensor};
use crate::error::{Error, Result};

pub fn load_hf_dir(dir: &Path) -> Result<ModelWeights> {
    let config = ModelConfig::from_hf_dir(dir)?;
    let tok_path = dir.join("tokenizer.json");
    let tokenizer_json = std::fs::read(&tok_path).map_err(|e| Error::io(&tok_path, e))?;

    // A name with a folder (`1_Dense/linear.weight`) is read from that folder's
    // `model.safetensors`, as it is; the others from the main file, under any HF prefix.
    let specs = arch::layout(&config);
    let folder = |hf: &str| hf.rsplit_once('/').map_or(String::new(), |(d, _)| d.to_string());
    let mut folders: Vec<String> = specs.iter().map(|s| folder(&s.hf_name)).collect();
    folders.sort();
    folders.dedup();
    let mut tensors = BTreeMap::new();
    for sub in folders {
        let st_path = if sub.is_empty() { dir.join("model.safetensors") } else { dir.join(&sub).join("model.safetensors") };
        let file = File::open(&st_path).map_err(|e| Error::io(&st_path, e))?;
        // SAFETY: the map is read-only and dropped before this function returns; a file changed
        // underneath us can only yield wrong values, which the shape checks below then catch.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&st_path, e))?;
        let st = SafeTensors::deserialize(&map)
            .map_err(|e| Error::corrupt(&st_path, format!("not a valid safetensors file: {e}")))?;
        for spec in specs.iter().filter(|s| folder(&s.hf_name) == sub) {
            let view = if let Some((_, exact)) = spec.hf_name.rsplit_once('/') {
                st.tensor(exact).ok()
            } else if let Some(exact) = spec.hf_name.strip_prefix('@') {
                st.tensor(exact).ok()
            } else {
                HF_PREFIXES.iter().find_map(|p| st.tensor(&format!("{p}{}", spec.hf_name)).ok())
            };
            let view = view.ok_or_else(|| {
                Error::tensor(spec.hf_name.trim_start_matches('@'), format!("not found in {}", st_path.display()))
            })?;
            if view.shape() != spec.shape.as_slice() {
                return Err(Error::tensor(
                    spec.hf_name.trim_start_matches('@'),
                    format!("shape {:?} in {}, expected {:?}", view.shape(), st_path.display(), spec.shape),
                ));
            }
            let data = view.data();
            let values: Vec<f32> = match view.dtype() {
                Dtype::F32 => data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
                Dtype::F16 => data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
                Dtype::BF16 => data.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
                other => {
                    return Err(Error::tensor(&spec.hf_name, format!("unsupported dtype {other:?}")));
                }
            };
            tensors.insert(spec.name.clone(), WeightTensor::from_f32(spec.shape.clone(), &values));
        }
    }
    let weights = ModelWeights { config, tokenizer_json, tensors, source: dir.display().to_string() };
    weights.validate()?;
    Ok(weights)
}
