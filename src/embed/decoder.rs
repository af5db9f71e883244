//! The decoder embedder (Qwen3/Llama family) on ponder's native CPU runtime (f32 and int8).

use super::tokenize::Encoded;
use crate::error::{Error, Result};
use crate::model::{ModelWeights, Precision};

pub struct NativeDecoder {
    _private: (),
}

impl NativeDecoder {
    pub fn new(_weights: &ModelWeights, _precision: Precision) -> Result<Self> {
        Err(Error::Unsupported("the decoder embedder (Qwen3/Llama family) is not implemented yet".into()))
    }

    /// Pooled (and, if the model says so, normalised) vectors, one per input.
    pub fn embed(&self, _batch: &[Encoded]) -> Vec<Vec<f32>> {
        Vec::new()
    }
}
