//! `ponder serve`: the warm local HTTP/JSON server over an [`Engine`] (being written).

use std::path::PathBuf;
use std::sync::Arc;

use crate::engine::Engine;
use crate::error::{Error, Result};

/// Where and how the server listens.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// TCP address (`127.0.0.1:7700` by default when no socket is given).
    pub addr: Option<String>,
    /// Unix socket path.
    pub socket: Option<PathBuf>,
    /// Allow a non-loopback address (requires `token`).
    pub allow_remote: bool,
    /// Bearer token required on every request when set.
    pub token: Option<String>,
    /// Follow the index's roots and re-index changed files.
    pub watch: bool,
    pub max_body_bytes: usize,
    pub max_concurrent: usize,
    pub timeout_secs: f64,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions { addr: None, socket: None, allow_remote: false, token: None, watch: false, max_body_bytes: 1 << 20, max_concurrent: 16, timeout_secs: 60.0 }
    }
}

/// Serves until the process is stopped. `log` receives human-readable lines (the first
/// being `listening on http://ADDR`).
pub fn run(engine: Arc<Engine>, opts: ServeOptions, log: Arc<dyn Fn(String) + Send + Sync>) -> Result<()> {
    let _ = (engine, opts, log);
    Err(Error::Unsupported("ponder serve is not built yet".into()))
}
