//! ponder's integration tests, one module per area, built as one test binary: each binary
//! links the whole library and both embedded models (about 110 MB), so one binary instead of
//! twenty saves CI about 1.7 GB of disk and nineteen links. Run one area with
//! `cargo test --release --test suite <module>::`, e.g. `--test suite wgsl::`.
//!
//! Every test shares this process: tests that need a scratch directory take a
//! [`common::TempDir`]; none changes the process's environment or working directory.

mod common;
mod burn_archs;
mod capi;
mod cli;
mod colbert;
mod crash;
mod decoder;
mod distill;
mod engine;
mod index;
mod languages;
mod mcp;
mod model_format;
mod modernbert;
mod offline;
mod parity;
mod pdf;
mod serve;
mod train;
mod watch;
mod wgsl;
