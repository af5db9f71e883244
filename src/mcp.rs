//! `ponder mcp`: a Model Context Protocol server over stdio, so that AI agents can search a
//! person's files through an [`Engine`].
//!
//! This module owns what ponder says over MCP: the four tools (`search`, `get`, `status`,
//! `index`) with their descriptions and JSON input schemas, the mapping of tool arguments onto
//! engine calls ([`SearchRequest`], [`Engine::get`], [`Engine::status`], [`Engine::index`]), the
//! results (readable text for the model plus `structuredContent` JSON for programs), and the
//! lifetime of a stdio session. The protocol itself — JSON-RPC 2.0 framing as newline-delimited
//! JSON, the `initialize` handshake and protocol-version negotiation, `ping`, method-not-found
//! and invalid-params errors, cancellation and progress notifications — is the official Rust
//! SDK's (`rmcp`), through a hand-written [`ServerHandler`].
//!
//! Engine calls are CPU-bound and blocking, so each runs on tokio's blocking pool; the SDK
//! serves requests concurrently, so searches keep being answered while an `index` call runs.
//! Tool failures (bad arguments, no index yet, a file not indexed) come back as tool results
//! with `isError: true` and a message that says what to do; an unknown tool is a JSON-RPC
//! invalid-params error. Nothing but JSON-RPC is ever written to stdout: diagnostics go to the
//! `log` callback.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, JsonObject, ListToolsResult,
    PaginatedRequestParams, ProgressNotificationParam, ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::{RequestContext, ServerInitializeError};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::engine::{Document, Engine, IndexJob, SearchRequest, Status};
use crate::error::{Error, Result};
use crate::index::{IndexReport, Progress};
use crate::present::Hit;

/// The names of the tools the server offers, in the order `tools/list` gives them.
pub const TOOL_NAMES: [&str; 4] = ["search", "get", "status", "index"];

/// The most lines one `get` call returns; the result says how to ask for the rest.
pub const MAX_GET_LINES: u32 = 2000;
/// The most bytes of text one `get` call returns (whole lines, at least one).
pub const MAX_GET_BYTES: usize = 256 * 1024;
/// Indexing warnings kept in an `index` result (the count says how many there were).
const MAX_WARNINGS: usize = 50;
/// How long a closing session waits for engine work in flight (an index job stops at its
/// next file once cancelled and commits what it staged).
const SHUTDOWN_WAIT: Duration = Duration::from_secs(60);

/// Serves MCP on stdin/stdout until stdin closes. `log` receives diagnostics (stderr); stdout
/// carries only JSON-RPC messages. Returns `Ok` when the client closes stdin, also before the
/// handshake; an indexing job still running then is cancelled (what it committed stays).
pub fn run_stdio(engine: Arc<Engine>, log: Arc<dyn Fn(String) + Send + Sync>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("ponder-mcp")
        .enable_all()
        .build()
        .map_err(|e| Error::io("tokio runtime", e))?;
    let server = McpServer::new(engine, log.clone());
    let jobs = server.jobs.clone();
    let outcome = rt.block_on(async {
        let running = match server.serve(rmcp::transport::stdio()).await {
            Ok(running) => running,
            Err(ServerInitializeError::ConnectionClosed(_)) => {
                log("mcp: stdin closed before the handshake".into());
                return Ok(());
            }
            Err(e) => return Err(Error::InvalidInput(format!("MCP handshake failed: {e}"))),
        };
        match running.waiting().await {
            Ok(reason) => log(format!("mcp: session ended ({reason:?})")),
            Err(e) => log(format!("mcp: session task failed: {e}")),
        }
        Ok(())
    });
    jobs.cancel_all();
    let deadline = Instant::now() + SHUTDOWN_WAIT;
    while jobs.in_flight() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if jobs.in_flight() > 0 {
        log(format!("mcp: {} engine call(s) still running at exit", jobs.in_flight()));
    }
    rt.shutdown_background();
    outcome
}

/// The MCP server over one [`Engine`]: an rmcp [`ServerHandler`] offering the tools named in
/// [`TOOL_NAMES`]. [`run_stdio`] serves it on stdin/stdout; it can be served on any other rmcp
/// transport too.
#[derive(Clone)]
pub struct McpServer {
    engine: Arc<Engine>,
    log: Arc<dyn Fn(String) + Send + Sync>,
    jobs: Arc<Jobs>,
}

/// Engine work in flight, and the cancel flags of running index jobs.
#[derive(Default)]
struct Jobs {
    in_flight: AtomicUsize,
    cancels: Mutex<Vec<Weak<AtomicBool>>>,
}

impl Jobs {
    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    fn register_cancel(&self, flag: &Arc<AtomicBool>) {
        let mut v = self.cancels.lock().unwrap_or_else(|e| e.into_inner());
        v.retain(|w| w.strong_count() > 0);
        v.push(Arc::downgrade(flag));
    }

    fn cancel_all(&self) {
        for w in self.cancels.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            if let Some(f) = w.upgrade() {
                f.store(true, Ordering::SeqCst);
            }
        }
    }
}

/// Counts one blocking engine call from its start to its end (even if its caller went away).
struct InFlight(Arc<Jobs>);

impl InFlight {
    fn enter(jobs: &Arc<Jobs>) -> Self {
        jobs.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(jobs.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl McpServer {
    /// A server over `engine`; `log` receives diagnostics.
    pub fn new(engine: Arc<Engine>, log: Arc<dyn Fn(String) + Send + Sync>) -> Self {
        McpServer { engine, log, jobs: Arc::new(Jobs::default()) }
    }

    /// The tool definitions `tools/list` returns.
    pub fn tools() -> Vec<Tool> {
        static TOOLS: OnceLock<Vec<Tool>> = OnceLock::new();
        TOOLS.get_or_init(tool_definitions).clone()
    }

    /// Runs a blocking engine call on the blocking pool; a panic becomes an error message.
    async fn blocking<T: Send + 'static>(&self, work: impl FnOnce(&Engine) -> Result<T> + Send + 'static) -> Result<T, String> {
        let engine = self.engine.clone();
        let guard = InFlight::enter(&self.jobs);
        let task = tokio::task::spawn_blocking(move || {
            let _guard = guard;
            work(&engine)
        });
        match task.await {
            Ok(result) => result.map_err(|e| error_text(&e)),
            Err(e) => {
                (self.log)(format!("mcp: engine call failed: {e}"));
                Err(format!("internal error in ponder: {e}"))
            }
        }
    }

    async fn search(&self, args: JsonObject) -> Result<CallToolResult, String> {
        let req = search_request(args)?;
        let query = req.all_queries().join(" | ");
        let reranked = req.rerank;
        let mode = req.mode;
        let hits = self.blocking(move |e| e.search(&req)).await?;
        let text = hits_text(&query, &format!("{mode:?}").to_lowercase(), reranked, &hits);
        let structured = json!({ "hits": hits });
        Ok(result(text, structured))
    }

    async fn get(&self, args: JsonObject) -> Result<CallToolResult, String> {
        let args: GetArgs = parse_args("get", args)?;
        let range = match (args.start_line, args.end_line) {
            (None, None) => None,
            (Some(a), None) => Some((a, u32::MAX)),
            (None, Some(b)) => Some((1, b)),
            (Some(a), Some(b)) => Some((a, b)),
        };
        let path = PathBuf::from(&args.path);
        let mut doc = self.blocking(move |e| e.get(&path, range)).await?;
        let truncated = cap_document(&mut doc);
        let text = document_text(&doc, truncated);
        let structured = serde_json::to_value(&doc).map_err(|e| e.to_string())?;
        Ok(result(text, structured))
    }

    async fn status(&self, args: JsonObject) -> Result<CallToolResult, String> {
        let _: NoArgs = parse_args("status", args)?;
        let status = self.blocking(|e| e.status()).await?;
        let structured = serde_json::to_value(&status).map_err(|e| e.to_string())?;
        Ok(result(status_text(&status), structured))
    }

    async fn index(&self, args: JsonObject, context: &RequestContext<RoleServer>) -> Result<CallToolResult, String> {
        let args: IndexArgs = parse_args("index", args)?;
        let paths = args.paths()?;
        let cancel = Arc::new(AtomicBool::new(false));
        self.jobs.register_cancel(&cancel);
        let job = IndexJob { cancel: Some(cancel.clone()), ..Default::default() };

        // Progress notifications, when the client asked for them with a progress token.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, usize)>();
        let forwarder = context.meta.get_progress_token().map(|token| {
            let peer = context.peer.clone();
            tokio::spawn(async move {
                while let Some((done, total)) = rx.recv().await {
                    let p = ProgressNotificationParam::new(token.clone(), done as f64)
                        .with_total(total as f64)
                        .with_message(format!("{done} of {total} files"));
                    if peer.notify_progress(p).await.is_err() {
                        break;
                    }
                }
            })
        });
        let wants_progress = forwarder.is_some();
        let log = self.log.clone();
        let work = self.blocking(move |e| {
            let mut warnings = Vec::new();
            let mut n_warnings = 0usize;
            let mut last_sent = None::<Instant>;
            let report = e.index(&paths, &job, &mut |p| match p {
                Progress::Warning(w) => {
                    n_warnings += 1;
                    if warnings.len() < MAX_WARNINGS {
                        warnings.push(w);
                    }
                }
                Progress::File { done, total, .. } if wants_progress => {
                    if done == total || last_sent.is_none_or(|t| t.elapsed() >= Duration::from_millis(200)) {
                        last_sent = Some(Instant::now());
                        let _ = tx.send((done, total));
                    }
                }
                _ => {}
            })?;
            log(format!(
                "mcp: indexed {} file(s), {} unchanged, {} removed; generation {}",
                report.files_indexed, report.files_unchanged, report.files_removed, report.generation
            ));
            Ok((report, warnings, n_warnings))
        });
        tokio::pin!(work);
        let outcome = tokio::select! {
            r = &mut work => r,
            _ = context.ct.cancelled() => {
                // The client cancelled the call (or went away): stop at the next file; what was
                // staged is committed.
                cancel.store(true, Ordering::SeqCst);
                work.await
            }
        };
        if let Some(f) = forwarder {
            // The sender went with the job; the forwarder ends once it has sent what was queued.
            let _ = f.await;
        }
        let (report, warnings, n_warnings) = outcome?;
        let text = index_text(&report, &warnings, n_warnings);
        let mut structured = serde_json::to_value(&report).map_err(|e| e.to_string())?;
        if let Value::Object(m) = &mut structured {
            m.insert("warnings".into(), json!(warnings));
            m.insert("warnings_total".into(), json!(n_warnings));
        }
        Ok(result(text, structured))
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new("ponder", env!("CARGO_PKG_VERSION"))
                    .with_title("ponder: offline semantic search over local files")
                    .with_description("Searches the files indexed in one ponder index by meaning and by words."),
            )
            .with_instructions(format!(
                "ponder searches the user's own files (notes, documents, PDFs, papers, source code, saved web \
                 pages) that were indexed into {}. Use `search` first whenever the answer may be in those files; \
                 it returns passages with their path and line range. Read around a hit with `get`. `status` tells \
                 which folders are indexed and how much; `index` adds folders or refreshes the index after files \
                 changed.",
                self.engine.dir().display()
            ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(Self::tools()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        Self::tools().into_iter().find(|t| t.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.unwrap_or_default();
        let outcome = match request.name.as_ref() {
            "search" => self.search(args).await,
            "get" => self.get(args).await,
            "status" => self.status(args).await,
            "index" => self.index(args, &context).await,
            other => {
                return Err(ErrorData::invalid_params(
                    format!("unknown tool {other:?}; the tools are {}", TOOL_NAMES.join(", ")),
                    None,
                ))
            }
        };
        Ok(match outcome {
            Ok(r) => r,
            Err(message) => CallToolResult::error(vec![ContentBlock::text(message)]),
        }
        .into())
    }
}

/// A successful result: text for the model, the same data as JSON for programs.
fn result(text: String, structured: Value) -> CallToolResult {
    let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
    r.structured_content = Some(structured);
    r
}

/// An engine error as a message that tells an agent what to do next.
fn error_text(e: &Error) -> String {
    match e {
        Error::NoIndex(_) => format!("{e}. From here, call the `index` tool with the folders to index (`paths`)."),
        Error::NotIndexed(_) => format!("{e}. Pass a path exactly as `search` returned it, or see `status` for the indexed roots."),
        _ => e.to_string(),
    }
}

/// Tool arguments into a typed struct, naming the tool in the error.
fn parse_args<T: for<'de> Deserialize<'de>>(tool: &str, args: JsonObject) -> Result<T, String> {
    serde_json::from_value(Value::Object(without_nulls(args))).map_err(|e| format!("bad arguments for {tool}: {e}"))
}

/// Drops `"key": null` (clients send it for "not given").
fn without_nulls(mut args: JsonObject) -> JsonObject {
    args.retain(|_, v| !v.is_null());
    args
}

/// `search`'s arguments as a validated [`SearchRequest`]. Any field of the request is accepted
/// (the schema lists the ones an agent needs); a single string stands for a one-item list.
fn search_request(args: JsonObject) -> Result<SearchRequest, String> {
    let mut args = without_nulls(args);
    for key in ["queries", "path", "type"] {
        if let Some(Value::String(s)) = args.get(key) {
            let one = Value::Array(vec![Value::String(s.clone())]);
            args.insert(key.to_string(), one);
        }
    }
    let req: SearchRequest = parse_args("search", args)?;
    req.validate().map_err(|e| format!("bad arguments for search: {}", error_text(&e)))?;
    Ok(req)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GetArgs {
    path: String,
    start_line: Option<u32>,
    end_line: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexArgs {
    /// A list of paths, or one path.
    #[serde(default)]
    paths: Value,
}

impl IndexArgs {
    fn paths(self) -> Result<Vec<PathBuf>, String> {
        let bad = || "bad arguments for index: `paths` must be a list of file or folder paths".to_string();
        match self.paths {
            Value::Null => Ok(Vec::new()),
            Value::String(s) => Ok(vec![PathBuf::from(s)]),
            Value::Array(items) => items.into_iter().map(|v| v.as_str().map(PathBuf::from).ok_or_else(bad)).collect(),
            _ => Err(bad()),
        }
    }
}

/// Hits as text: one block per hit, `path:start-end`, score, heading, then the chunk's text.
fn hits_text(query: &str, mode: &str, reranked: bool, hits: &[Hit]) -> String {
    let how = if reranked { format!("{mode}, reranked") } else { mode.to_string() };
    if hits.is_empty() {
        return format!(
            "No hits for {query:?} ({how}). Try other wording or alternative phrasings in `queries`, \
             `mode: \"lexical\"` for exact names, fewer filters, or check `status` for what is indexed."
        );
    }
    let mut out = format!("{} hit{} for {query:?} ({how}):\n", hits.len(), if hits.len() == 1 { "" } else { "s" });
    for (i, h) in hits.iter().enumerate() {
        out.push_str(&format!("\n{}. {}:{}-{}  score {:.4}", i + 1, h.path, h.start_line, h.end_line, h.score));
        if let Some(p) = h.page_label() {
            out.push_str(&format!("  {p}"));
        }
        if let Some(heading) = h.heading.as_deref().filter(|s| !s.is_empty()) {
            out.push_str(&format!("  [{heading}]"));
        }
        if !h.also_in.is_empty() {
            out.push_str(&format!("\n(the same text is also in: {})", h.also_in.join(", ")));
        }
        out.push('\n');
        out.push_str(h.text.trim_end());
        out.push('\n');
    }
    out.push_str("\nRead around a hit with `get` (path, start_line, end_line).");
    out
}

/// Keeps a document within [`MAX_GET_LINES`] and [`MAX_GET_BYTES`] (whole lines; a single
/// longer line is cut on a character boundary). Returns whether anything was cut.
fn cap_document(doc: &mut Document) -> bool {
    let mut kept = 0usize;
    let mut bytes = 0usize;
    let mut cut_line = false;
    for line in doc.text.split('\n') {
        if kept as u32 >= MAX_GET_LINES {
            break;
        }
        if bytes + line.len() + 1 > MAX_GET_BYTES {
            if kept == 0 {
                let mut end = MAX_GET_BYTES.min(line.len());
                while !line.is_char_boundary(end) {
                    end -= 1;
                }
                bytes = end;
                kept = 1;
                cut_line = true;
            }
            break;
        }
        bytes += line.len() + 1;
        kept += 1;
    }
    let returned = doc.end_line - doc.start_line + 1;
    if kept as u32 >= returned && !cut_line {
        return false;
    }
    let mut text = String::with_capacity(bytes);
    for (i, line) in doc.text.split('\n').take(kept).enumerate() {
        if i > 0 {
            text.push('\n');
        }
        text.push_str(line);
    }
    text.truncate(bytes.min(text.len()));
    doc.text = text;
    doc.end_line = doc.start_line + kept as u32 - 1;
    true
}

/// A document as text: a header, then its lines numbered like `cat -n`.
fn document_text(doc: &Document, truncated: bool) -> String {
    let mut out = format!("{} lines {}-{} of {}\n", doc.path, doc.start_line, doc.end_line, doc.total_lines);
    for (i, line) in doc.text.split('\n').enumerate() {
        out.push_str(&format!("{:>6}\t{}\n", doc.start_line as usize + i, line));
    }
    if truncated {
        out.push_str(&format!(
            "[cut at line {}; call get with start_line {} for more]\n",
            doc.end_line,
            doc.end_line + 1
        ));
    } else if doc.end_line < doc.total_lines {
        out.push_str(&format!("[{} more lines after line {}]\n", doc.total_lines - doc.end_line, doc.end_line));
    }
    out
}

fn status_text(s: &Status) -> String {
    let roots = if s.roots.is_empty() { "(none)".to_string() } else { s.roots.join("\n  ") };
    format!(
        "index: {}\nroots:\n  {}\nfiles: {}\nchunks: {}\nmodel: {} ({}, {} dimensions, {} vectors)\ngeneration: {}, updated {} (unix time)\ndisk: {} bytes",
        s.index, roots, s.files, s.chunks, s.model, s.precision, s.dim, s.vectors, s.generation, s.updated_unix, s.disk_bytes
    )
}

fn index_text(r: &IndexReport, warnings: &[String], n_warnings: usize) -> String {
    let mut out = format!(
        "Indexed {} file(s): {} new or changed, {} unchanged, {} removed, {} skipped; {} chunk(s) added; generation {}; {:.1} s.",
        r.files_seen, r.files_indexed, r.files_unchanged, r.files_removed, r.files_skipped, r.chunks_added, r.generation, r.elapsed_s
    );
    if n_warnings > 0 {
        out.push_str(&format!("\n{n_warnings} warning(s):"));
        for w in warnings {
            out.push_str("\n- ");
            out.push_str(w);
        }
        if n_warnings > warnings.len() {
            out.push_str(&format!("\n- ... {} more", n_warnings - warnings.len()));
        }
    }
    out
}

fn schema(v: Value) -> Arc<JsonObject> {
    match v {
        Value::Object(m) => Arc::new(m),
        _ => unreachable!("tool schemas are objects"),
    }
}

fn tool(name: &'static str, title: &str, description: &'static str, input: Value, annotations: ToolAnnotations) -> Tool {
    Tool::new(Cow::Borrowed(name), Cow::Borrowed(description), schema(input))
        .with_title(title)
        .with_annotations(annotations)
}

fn tool_definitions() -> Vec<Tool> {
    let read_only = |title: &str| ToolAnnotations::with_title(title).read_only(true).open_world(false);
    vec![
        tool(
            "search",
            "Search local files",
            "Search the user's own files (notes, documents, PDFs, papers, source code, saved web pages) in the \
             ponder index, by meaning as well as by words. Use it whenever the answer may be in the user's files: \
             before answering from general knowledge about their notes or projects, and instead of grep when the \
             exact wording is unknown. Returns the best passages with file path, line range, score, section \
             heading and text; read more around a hit with `get`. Ask a full question or describe the passage you \
             want; add other phrasings in `queries`; use mode \"lexical\" for exact names and identifiers; narrow \
             with `path`, `type`, `after`, `before`.",
            json!({
                "type": "object",
                "properties": {
                    "query": {
                        "type": "string",
                        "description": "What to find, in natural language: a question or a description of the passage (e.g. \"how long should the dough proof overnight\"). Keywords work too."
                    },
                    "queries": {
                        "type": "array",
                        "items": { "type": "string" },
                        "description": "More phrasings of the same need (rewrites, synonyms, a guessed answer sentence); their rankings are fused with the one for `query`."
                    },
                    "k": {
                        "type": "integer", "minimum": 1, "maximum": 1000, "default": 10,
                        "description": "How many passages to return."
                    },
                    "mode": {
                        "type": "string", "enum": ["hybrid", "dense", "lexical", "late"], "default": "hybrid",
                        "description": "hybrid: meaning and words together (best in general); dense: meaning only (paraphrases, other vocabulary); lexical: BM25 on exact words (names, identifiers, error messages); late: hybrid candidates ranked by token-level MaxSim (only for indexes built with a ColBERT model)."
                    },
                    "rerank": {
                        "type": "boolean", "default": false,
                        "description": "Re-score the top candidates with a cross-encoder: more precise ordering, a little slower. Use when the right passage is among the hits but not first."
                    },
                    "path": {
                        "type": "array",
                        "items": { "type": "string" },
                        "description": "Only files matching one of these globs or paths; a leading ! excludes. Relative globs match anywhere (\"*.md\", \"notes/**\", \"!**/drafts/**\"); a plain folder path matches everything under it."
                    },
                    "type": {
                        "type": "array",
                        "items": { "type": "string", "enum": ["pdf", "md", "html", "code", "text"] },
                        "description": "Only files of these kinds."
                    },
                    "after": {
                        "type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                        "description": "Only files modified on or after this day (YYYY-MM-DD, UTC)."
                    },
                    "before": {
                        "type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                        "description": "Only files modified before this day (YYYY-MM-DD, UTC)."
                    },
                    "files": {
                        "type": "boolean", "default": false,
                        "description": "One hit per file (its best passage): use it to find which documents are about something."
                    },
                    "per_file": {
                        "type": "integer", "minimum": 0, "maximum": 1000, "default": 2,
                        "description": "Most passages from one file (0: no limit)."
                    },
                    "explain": {
                        "type": "boolean", "default": false,
                        "description": "Add each hit's dense and lexical scores and ranks, fused score and rerank score."
                    }
                },
                "required": ["query"]
            }),
            read_only("Search local files"),
        ),
        tool(
            "get",
            "Read an indexed file",
            "Read a file's indexed text, whole or a range of lines. Use it after `search` to read the context \
             around a hit (e.g. from 20 lines before its start_line to 20 lines after its end_line), or to read a \
             whole document the user refers to. The text is what ponder indexed (text extracted from PDF and HTML), \
             with line numbers that match the hits'. At most 2000 lines per call.",
            json!({
                "type": "object",
                "properties": {
                    "path": {
                        "type": "string",
                        "description": "The file, as `search` returned it (absolute path)."
                    },
                    "start_line": {
                        "type": "integer", "minimum": 1,
                        "description": "First line to return (1-based). Default: 1."
                    },
                    "end_line": {
                        "type": "integer", "minimum": 1,
                        "description": "Last line to return (inclusive). Default: the end of the file."
                    }
                },
                "required": ["path"]
            }),
            read_only("Read an indexed file"),
        ),
        tool(
            "status",
            "Index status",
            "Show what the ponder index holds: its folder, the indexed roots, how many files and chunks, the \
             embedding model, and when it was last updated. Use it to learn which of the user's folders are \
             searchable (before concluding something is not in their files) or to check an indexing run.",
            json!({ "type": "object", "properties": {} }),
            read_only("Index status"),
        ),
        tool(
            "index",
            "Index files",
            "Index or re-index files and folders so that `search` finds them: new and changed files are embedded, \
             unchanged ones skipped, deleted ones dropped (hidden files and .gitignore'd paths are skipped). With \
             `paths`, those files or folders are added to the index's roots; with no paths, every root the index \
             already has is refreshed. Use it when the user asks to make files searchable, or when `search` misses \
             files that were just created or edited. A few files take seconds, thousands take minutes; searches keep \
             working meanwhile.",
            json!({
                "type": "object",
                "properties": {
                    "paths": {
                        "type": "array",
                        "items": { "type": "string" },
                        "description": "Files or folders to index (absolute paths; relative ones are resolved against the server's working directory). Empty or absent: re-index the roots the index already has."
                    }
                }
            }),
            ToolAnnotations::with_title("Index files").read_only(false).destructive(false).idempotent(true).open_world(false),
        ),
    ]
}
