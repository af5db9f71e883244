//! Models: configuration parsing, architecture layouts, loading Hugging Face directories,
//! ponder's own model file format, quantization, and the default model built into the binary.

pub mod arch;
pub mod config;
pub mod embedded;
pub mod format;
pub mod hf;
pub mod quant;
pub mod weights;

pub use config::{Head, ModelConfig, Pooling};
pub use weights::{DType, ModelWeights, WeightTensor};

use serde::{Deserialize, Serialize};

/// Storage precision of a model file / compute precision of the runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum Precision {
    F32,
    F16,
    Int8,
}

/// Which model to load: the embedded default or a path (HF directory or ponder file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSource {
    Default,
    Path(std::path::PathBuf),
}

impl std::str::FromStr for ModelSource {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(if s == "default" { ModelSource::Default } else { ModelSource::Path(s.into()) })
    }
}

impl ModelSource {
    pub fn load(&self) -> crate::Result<ModelWeights> {
        match self {
            ModelSource::Default => ModelWeights::embedded_default(),
            ModelSource::Path(p) => ModelWeights::load(p),
        }
    }
}
