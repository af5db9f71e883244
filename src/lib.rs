//! ponder: offline, on-device semantic search.
//!
//! The crate follows the data flow. Stages present so far:
//! - [`ingest`]: walking a person's files (ignore files, hidden files, symlinks, size limits)
//!   and reading each type (text, Markdown, code, HTML, PDF) into a document's text;
//! - [`chunk`]: cutting a document along its structure into chunks within a token budget;
//! - [`model`]: model configuration, architecture layouts, Hugging Face loading, ponder's
//!   own model file format, quantization, the embedded default model;
//! - [`embed`]: tokenization, the encoder runtimes (native CPU with int8 kernels, burn on
//!   wgpu/flex), pooling, batching;
//! - [`device`]: choosing where the encoder runs;
//! - [`index`]: the on-disk index (manifest, chunk store, usearch vectors, BM25), its writer
//!   and reader;
//! - [`retrieve`]: dense, lexical and hybrid retrieval for one or several queries;
//! - [`fuse`]: reciprocal-rank and weighted-score fusion;
//! - [`rerank`]: cross-encoder reranking interpolated with the retriever;
//! - [`present`]: results, snippets and highlighting;
//! - [`eval`]: BEIR/BRIGHT collections and trec_eval-style metrics;
//! - [`train`]: training a cross-encoder reranker with burn's autodiff;
//! - [`distill`]: distilling a smaller bi-encoder from a bigger one on unlabeled text;
//! - [`engine`]: the facade applications use: [`Engine`] opens an index with its models, indexes
//!   (with progress and cancellation), searches (with filters and reranking), and reports;
//! - [`serve`], [`mcp`], [`watch`]: the warm HTTP server, the MCP server for agents, and the
//!   live index that follows file changes, all over an [`Engine`].
//! - [`capi`]: the C ABI (`include/ponder.h`) over an [`Engine`], for applications not written
//!   in Rust.
//!
//! Libraries return [`Error`]; the `ponder` binary reports it.

pub mod capi;
pub mod chunk;
pub mod device;
pub mod distill;
pub mod engine;
pub mod eval;
pub mod embed;
pub mod error;
pub mod fsutil;
pub mod fuse;
pub mod index;
pub mod mcp;
pub mod ingest;
pub mod model;
pub mod present;
pub mod rerank;
pub mod retrieve;
pub mod serve;
pub mod train;
pub mod watch;

pub use embed::Embedder;
pub use engine::{Engine, EngineOptions, IndexJob, SearchRequest};
pub use error::{Error, Result};
