//! The library's one error type. The binary wraps it with `anyhow`; callers can tell bad
//! input (`InvalidInput`), a missing or broken model (`MissingFile`, `Corrupt`, `TensorMismatch`)
//! and an unsupported request (`Unsupported`) apart.

use std::path::PathBuf;

/// Errors returned by the ponder library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("missing file: {0}")]
    MissingFile(PathBuf),

    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("unsupported model architecture {0:?} (supported: bert, modernbert, qwen3, qwen2, llama)")]
    UnsupportedArchitecture(String),

    #[error("tensor {name}: {problem}")]
    TensorMismatch { name: String, problem: String },

    #[error("corrupt file {path}: {problem}")]
    Corrupt { path: PathBuf, problem: String },

    #[error("invalid model config: {0}")]
    Config(String),

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("device: {0}")]
    Device(String),

    #[error("unsupported: {0}")]
    Unsupported(String),

    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// The directory holds no index yet (no `MANIFEST`).
    #[error("no index in {0}: create one with `ponder index PATH... --index {0}`")]
    NoIndex(PathBuf),

    /// An indexing job was cancelled; what it had committed stays in the index.
    #[error("indexing cancelled")]
    Cancelled,

    /// The file is not in the index.
    #[error("not in the index: {0}")]
    NotIndexed(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::MissingFile(path.into())
        } else {
            Error::Io { path: path.into(), source }
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        Error::Corrupt { path: path.into(), problem: problem.into() }
    }

    pub(crate) fn tensor(name: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::TensorMismatch { name: name.into(), problem: problem.into() }
    }
}
