//! `ponder serve`: the warm local HTTP/JSON server over an [`Engine`].
//!
//! This module owns the HTTP layer and nothing below it: routes, request parsing and limits,
//! the JSON error shape, the guard against other machines and web pages, background indexing
//! jobs with their progress streams, and graceful shutdown. Searching, indexing and reading the
//! index are the engine's; this module only calls [`Engine`] and knows nothing about models,
//! vectors or files on disk beyond the Unix socket it listens on.
//!
//! Routes (bodies and answers are JSON; errors are `{"error": {"type", "message"}}`):
//!
//! | route                     | does                                                        |
//! |---------------------------|-------------------------------------------------------------|
//! | `GET /health`             | `{"status": "ok"}`                                          |
//! | `GET /info`               | version, index directory and the server's limits            |
//! | `GET /status`             | [`Engine::status`] (the fields of `ponder status --json`)   |
//! | `POST /search`            | a [`SearchRequest`] → `{"hits": [Hit, …], "took_ms"}`       |
//! | `POST /index`             | `{"paths", "rebuild"?, "compact"?, "instruction"?}` → 202 `{"job": ID}` |
//! | `GET /jobs`               | `{"jobs": [Job, …]}` (the queued, running and last 100 finished) |
//! | `GET /jobs/ID`            | one job: state, counters, report, error                     |
//! | `GET /jobs/ID/events`     | the job's progress as NDJSON, one `{"type": …}` per line, until it ends |
//! | `DELETE /jobs/ID`         | cancels the job (what it staged is committed)               |
//! | `POST /remove`            | `{"path"}` → `{"removed": N}`                               |
//! | `GET /get?path=&start=&end=`, `POST /get` | a file's indexed text ([`Engine::get`])     |
//!
//! Protection: the server listens on loopback unless told otherwise (a remote address needs
//! both `allow_remote` and a token). On a loopback listener a request whose `Host` is not a
//! loopback name is refused (403; DNS rebinding), and on every listener so is a request with an
//! `Origin` that is not loopback (a web page driving the server). With a token every request
//! needs `Authorization: Bearer TOKEN` (401). Bodies are limited (413), searches are limited in
//! number and time (503), connections in number and idle time, and a panic in a handler becomes
//! a 500 instead of taking the server down. Whoever can reach the server can index, and then
//! read through `/get`, any file the server's user can read: that is why it listens only on
//! loopback and a 0600 socket unless told otherwise.
//!
//! Indexing jobs run one at a time on one worker thread, in the order they were asked for; the
//! engine serialises them with any other writer. Searches keep answering from the last commit
//! while a job runs.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path as RoutePath, Query, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use crate::engine::{Engine, IndexJob, SearchRequest};
use crate::error::{Error, Result};
use crate::index::{IndexReport, Progress};

/// Where and how the server listens.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// TCP address (`127.0.0.1:7700` by default when no socket is given). Port 0 picks a free
    /// port; a bare port number means `127.0.0.1:PORT`.
    pub addr: Option<String>,
    /// Unix socket path (created with 0600 permissions; a stale socket file is replaced).
    pub socket: Option<PathBuf>,
    /// Allow a non-loopback address (requires `token`).
    pub allow_remote: bool,
    /// Bearer token required on every request when set.
    pub token: Option<String>,
    /// Follow the index's roots and re-index changed files.
    pub watch: bool,
    /// Largest request body (413 past it).
    pub max_body_bytes: usize,
    /// Searches (and other index reads) running at once; more wait a bounded time, then 503.
    pub max_concurrent: usize,
    /// Longest a request may take once its body is read (503 `timeout` past it).
    pub timeout_secs: f64,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions { addr: None, socket: None, allow_remote: false, token: None, watch: false, max_body_bytes: 1 << 20, max_concurrent: 16, timeout_secs: 60.0 }
    }
}

/// The address used when neither an address nor a socket is given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7700";
/// Finished jobs kept for `GET /jobs/ID`.
const KEEP_FINISHED_JOBS: usize = 100;
/// Jobs that may wait for the worker at once (503 past it).
const MAX_QUEUED_JOBS: usize = 64;
/// Events a job keeps for its streams (progress counters are kept apart and never lost).
const KEEP_EVENTS: usize = 512;
/// Warnings a job records as events; past it they are only counted.
const KEEP_WARNINGS: usize = 200;
/// Open connections at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 256;
/// Longest wait for a search slot before 503 `busy`.
const MAX_QUEUE_WAIT: Duration = Duration::from_secs(10);
/// Longest a client may take to send a request body (408).
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of a refused body is read and dropped, and for how long.
const DRAIN_MAX: usize = 16 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(5);
/// Event streams send a heartbeat line this often when nothing happens.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// How long shutdown waits for open requests, then for the indexing job to commit and stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
const SHUTDOWN_JOB_WAIT: Duration = Duration::from_secs(60);

/// Serves until the process receives SIGINT or SIGTERM, then stops accepting, cancels indexing
/// jobs (what they staged is committed), waits a bounded time for open requests and the job
/// worker, removes the socket file, and returns. `log` receives human-readable lines; once every
/// listener is bound it gets `listening on http://ADDR` (the bound address, with the real port)
/// and/or `listening on unix:PATH`. Refuses a non-loopback address unless `allow_remote` and a
/// `token` are both given.
pub fn run(engine: Arc<Engine>, opts: ServeOptions, log: Arc<dyn Fn(String) + Send + Sync>) -> Result<()> {
    check_options(&opts)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ponder-serve")
        .build()
        .map_err(|e| Error::Io { path: PathBuf::from("tokio runtime"), source: e })?;
    let result = rt.block_on(serve(engine, opts, log));
    // Searches still running past the grace period are left to finish on their own threads.
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}

fn check_options(opts: &ServeOptions) -> Result<()> {
    let bad = |m: &str| Err(Error::InvalidInput(m.to_string()));
    if opts.max_concurrent == 0 {
        return bad("max_concurrent must be at least 1");
    }
    if opts.max_body_bytes == 0 {
        return bad("max_body_bytes must be at least 1");
    }
    if !(opts.timeout_secs.is_finite() && opts.timeout_secs > 0.0 && opts.timeout_secs <= 86_400.0) {
        return bad("the timeout must be between 0 and 86400 seconds");
    }
    if let Some(t) = &opts.token {
        if t.is_empty() || t.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
            return bad("the token must be non-empty printable ASCII without spaces");
        }
    }
    if opts.allow_remote && opts.token.is_none() {
        return bad("--allow-remote needs --token TOKEN: a server reachable from other machines must require one");
    }
    Ok(())
}

type Log = Arc<dyn Fn(String) + Send + Sync>;

/// What every request handler shares.
struct Shared {
    engine: Arc<Engine>,
    opts: ServeOptions,
    log: Log,
    /// Slots for searches and other index reads.
    reads: Arc<Semaphore>,
    jobs: Arc<Jobs>,
    timeout: Duration,
    /// Connection slots (`MAX_CONNECTIONS` of them).
    slots: Arc<Semaphore>,
    /// Connections open now, and accepted since the start.
    open: Arc<AtomicUsize>,
    accepted: Arc<AtomicU64>,
    /// Event streams open now.
    streams: AtomicUsize,
}

/// One listener's view of the server: the shared state and what the listener is.
#[derive(Clone)]
struct App {
    shared: Arc<Shared>,
    /// A loopback TCP listener: `Host` must be a loopback name.
    check_host: bool,
}

impl Shared {
    fn new(engine: Arc<Engine>, opts: ServeOptions, log: Log) -> Arc<Shared> {
        Arc::new(Shared {
            reads: Arc::new(Semaphore::new(opts.max_concurrent)),
            jobs: Jobs::start(engine.clone(), log.clone()),
            timeout: Duration::from_secs_f64(opts.timeout_secs),
            slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            open: Arc::new(AtomicUsize::new(0)),
            accepted: Arc::new(AtomicU64::new(0)),
            streams: AtomicUsize::new(0),
            engine,
            opts,
            log,
        })
    }
}

async fn serve(engine: Arc<Engine>, opts: ServeOptions, log: Log) -> Result<()> {
    let shared = Shared::new(engine.clone(), opts.clone(), log.clone());
    let (jobs, slots, open, accepted) = (shared.jobs.clone(), shared.slots.clone(), shared.open.clone(), shared.accepted.clone());
    // Idle connections are closed; a request never takes longer than the timeout (plus the
    // body), and event streams send heartbeats, so this never cuts a live exchange.
    let idle = shared.timeout + BODY_READ_TIMEOUT + Duration::from_secs(30);
    let (stop_tx, stop_rx) = watch::channel(false);

    let mut servers = tokio::task::JoinSet::new();
    let mut ready = Vec::new();
    let addr = match (&opts.addr, &opts.socket) {
        (None, None) => Some(DEFAULT_ADDR.to_string()),
        (a, _) => a.clone(),
    };
    if let Some(addr) = addr {
        let listener = bind_tcp(&addr, &opts).await?;
        let local = listener.local_addr().map_err(|e| Error::io(&addr, e))?;
        let app = App { shared: shared.clone(), check_host: local.ip().is_loopback() };
        let listener = Limited { inner: listener, slots: slots.clone(), open: open.clone(), accepted: accepted.clone(), idle };
        let stop = wait_for(stop_rx.clone());
        servers.spawn(async move { axum::serve(listener, router(app)).with_graceful_shutdown(stop).await });
        ready.push(format!("listening on http://{local}"));
    }
    #[cfg(unix)]
    let _socket_file = match &opts.socket {
        Some(path) => {
            let listener = bind_unix(path)?;
            let app = App { shared: shared.clone(), check_host: false };
            let listener = Limited { inner: listener, slots: slots.clone(), open: open.clone(), accepted: accepted.clone(), idle };
            let stop = wait_for(stop_rx.clone());
            servers.spawn(async move { axum::serve(listener, router(app)).with_graceful_shutdown(stop).await });
            ready.push(format!("listening on unix:{}", path.display()));
            Some(RemoveOnDrop(path.clone()))
        }
        None => None,
    };
    #[cfg(not(unix))]
    if opts.socket.is_some() {
        return Err(Error::Unsupported("Unix sockets exist only on Unix".into()));
    }

    let _watcher = if opts.watch {
        let wlog = log.clone();
        let on = Arc::new(move |e: crate::watch::WatchEvent| match e {
            crate::watch::WatchEvent::Updated { paths, report } => wlog(format!(
                "watch: {paths} changed path(s): {} file(s) indexed, {} removed, generation {}",
                report.files_indexed, report.files_removed, report.generation
            )),
            crate::watch::WatchEvent::Warning(m) => wlog(format!("watch: warning: {m}")),
            crate::watch::WatchEvent::Error(m) => wlog(format!("watch: error: {m}")),
        });
        match crate::watch::start(engine.clone(), Default::default(), on) {
            Ok(h) => {
                log("watching the index's folders for changes".into());
                Some(h)
            }
            Err(e) => {
                log(format!("not watching for changes: {e}"));
                None
            }
        }
    } else {
        None
    };

    for line in ready {
        log(line);
    }

    // Serve until a signal, or until a listener fails.
    let failed = tokio::select! {
        sig = shutdown_signal() => {
            log(format!("{sig}: shutting down"));
            None
        }
        Some(r) = servers.join_next() => Some(r),
    };
    let _ = stop_tx.send(true);
    jobs.cancel_all();
    // A second signal stops at once.
    let again = log.clone();
    tokio::spawn(async move {
        let sig = shutdown_signal().await;
        again(format!("{sig} again: stopping now"));
        std::process::exit(130);
    });
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while servers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        log(format!("{} connection(s) still open after {}s; closing them", open.load(Ordering::SeqCst), SHUTDOWN_GRACE.as_secs()));
        servers.abort_all();
    }
    let worker = jobs.clone();
    let stopped = tokio::task::spawn_blocking(move || worker.stop(SHUTDOWN_JOB_WAIT)).await.unwrap_or(false);
    if !stopped {
        log(format!("the indexing job did not stop within {}s; leaving it (the index keeps its last commit)", SHUTDOWN_JOB_WAIT.as_secs()));
    }
    log("stopped".into());
    match failed {
        Some(Ok(Err(e))) => Err(Error::Io { path: PathBuf::from("listener"), source: e }),
        Some(Err(e)) => Err(Error::Io { path: PathBuf::from("listener"), source: io::Error::other(e.to_string()) }),
        _ => Ok(()),
    }
}

fn wait_for(mut stop: watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
    async move {
        let _ = stop.wait_for(|s| *s).await;
    }
}

/// Waits for SIGINT or SIGTERM; returns the signal's name.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(mut int), Ok(mut term)) => tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            _ => std::future::pending().await,
        }
    }
    #[cfg(not(unix))]
    {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "Ctrl-C",
            Err(_) => std::future::pending().await,
        }
    }
}

/// Binds a TCP address, refusing a non-loopback one unless remote access is allowed with a
/// token.
async fn bind_tcp(addr: &str, opts: &ServeOptions) -> Result<tokio::net::TcpListener> {
    let addr = addr.trim();
    let spec = if !addr.is_empty() && addr.bytes().all(|b| b.is_ascii_digit()) { format!("127.0.0.1:{addr}") } else { addr.to_string() };
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host(spec.as_str())
        .await
        .map_err(|e| Error::InvalidInput(format!("address {addr:?}: {e} (expected HOST:PORT, e.g. 127.0.0.1:7700)")))?
        .collect();
    let Some(first) = resolved.first().copied() else {
        return Err(Error::InvalidInput(format!("address {addr:?} resolves to nothing")));
    };
    let remote: Vec<&SocketAddr> = resolved.iter().filter(|a| !a.ip().is_loopback()).collect();
    if !remote.is_empty() && !(opts.allow_remote && opts.token.is_some()) {
        return Err(Error::InvalidInput(format!(
            "refusing to listen on {addr} ({}): it is not a loopback address, so other machines could reach the index. \
             Use 127.0.0.1, or pass --allow-remote together with --token TOKEN",
            remote[0].ip()
        )));
    }
    // A name like `localhost` may resolve to several addresses; prefer a loopback one.
    let target = resolved.iter().copied().find(|a| a.ip().is_loopback()).unwrap_or(first);
    tokio::net::TcpListener::bind(target).await.map_err(|e| Error::io(target.to_string(), e))
}

/// Binds a Unix socket with 0600 permissions, replacing a stale socket file (never another
/// kind of file, and never a socket someone is still listening on).
#[cfg(unix)]
fn bind_unix(path: &Path) -> Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(Error::InvalidInput(format!("{} exists and is not a socket; not replacing it", path.display())));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(Error::InvalidInput(format!("{} is in use by another server", path.display())));
        }
        std::fs::remove_file(path).map_err(|e| Error::io(path, e))?;
    }
    // The socket is created with the process umask; make it private before anyone can connect
    // (connecting needs write permission on the socket).
    // SAFETY: umask only swaps the process's file-creation mask; nothing else is creating files
    // while the server starts.
    let old = unsafe { libc::umask(0o177) };
    let bound = tokio::net::UnixListener::bind(path);
    unsafe { libc::umask(old) };
    let listener = bound.map_err(|e| Error::io(path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| Error::io(path, e))?;
    Ok(listener)
}

/// Removes the socket file when the server stops.
struct RemoveOnDrop(PathBuf);
impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn router(app: App) -> Router {
    with_guard(routes(), app)
}

fn routes() -> Router<App> {
    Router::new()
        .route("/health", get(health))
        .route("/info", get(info))
        .route("/status", get(status))
        .route("/search", post(search))
        .route("/index", post(start_index))
        .route("/jobs", get(list_jobs))
        .route("/jobs/{id}", get(get_job).delete(cancel_job))
        .route("/jobs/{id}/events", get(job_events))
        .route("/remove", post(remove))
        .route("/get", get(get_query).post(get_body))
}

/// The fallbacks and the guard around `routes`.
fn with_guard(routes: Router<App>, app: App) -> Router {
    routes
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

// ---------------------------------------------------------------------------------------------
// Errors

/// A JSON error answer: `{"error": {"type", "message"}}` with its status.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, kind, message: message.into() }
    }
    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_input", message)
    }
    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            Error::InvalidInput(m) => Self::invalid(m),
            Error::NoIndex(_) => Self::new(StatusCode::NOT_FOUND, "no_index", message),
            Error::NotIndexed(_) => Self::not_found(message),
            _ => Self::internal(message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status, Json(json!({"error": {"type": self.kind, "message": self.message}}))).into_response();
        let h = res.headers_mut();
        match self.status {
            StatusCode::UNAUTHORIZED => {
                h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        res
    }
}

type Answer = std::result::Result<Response, ApiError>;

// ---------------------------------------------------------------------------------------------
// The guard: origin checks, authentication, panics

/// Runs before every route (the fallbacks included): refuses foreign `Host`/`Origin` headers
/// and missing tokens, and turns a panic in the handler into a 500.
async fn guard(State(app): State<App>, req: Request, next: Next) -> Response {
    if let Err(e) = admit(&app, &req) {
        return e.into_response();
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut res = match CatchPanic(Box::pin(next.run(req))).await {
        Ok(res) => res,
        Err(msg) => {
            (app.shared.log)(format!("{method} {path}: handler panicked: {msg}"));
            ApiError::internal(format!("the server failed while answering: {msg}")).into_response()
        }
    };
    if res.status().is_server_error() && res.status() != StatusCode::SERVICE_UNAVAILABLE {
        (app.shared.log)(format!("{method} {path}: {}", res.status()));
    }
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    res
}

fn admit(app: &App, req: &Request) -> std::result::Result<(), ApiError> {
    let forbidden = |m: String| ApiError::new(StatusCode::FORBIDDEN, "forbidden", m);
    let headers = req.headers();
    if headers.get_all(header::HOST).iter().nth(1).is_some() {
        return Err(ApiError::invalid("several Host headers"));
    }
    if app.check_host {
        if let Some(host) = headers.get(header::HOST) {
            let ok = host.to_str().ok().and_then(host_of_authority).is_some_and(is_loopback_host);
            if !ok {
                return Err(forbidden(format!(
                    "Host {:?} is not a loopback name; this server answers only requests addressed to localhost",
                    String::from_utf8_lossy(host.as_bytes())
                )));
            }
        }
        if let Some(auth) = req.uri().authority() {
            if !is_loopback_host(auth.host()) {
                return Err(forbidden(format!("request target {auth} is not a loopback name")));
            }
        }
    }
    for origin in headers.get_all(header::ORIGIN) {
        let ok = origin.to_str().ok().and_then(|o| o.split_once("://")).and_then(|(_, rest)| host_of_authority(rest)).is_some_and(is_loopback_host);
        if !ok {
            return Err(forbidden(format!(
                "Origin {:?} is not loopback; web pages from other sites may not use this server",
                String::from_utf8_lossy(origin.as_bytes())
            )));
        }
    }
    if let Some(token) = &app.shared.opts.token {
        let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
        if !given.is_some_and(|g| same_secret(g.as_bytes(), token.as_bytes())) {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "this server needs `Authorization: Bearer TOKEN`"));
        }
    }
    Ok(())
}

/// The host part of `host[:port]` (an IPv6 address in brackets keeps no brackets).
fn host_of_authority(a: &str) -> Option<&str> {
    let a = a.trim();
    if let Some(rest) = a.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return (after.is_empty() || after.strip_prefix(':').is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))).then_some(host);
    }
    match a.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => Some(host),
        Some(_) => None,
        None => Some(a),
    }
}

fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Compares secrets in time independent of where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A future that turns a panic while polling into an error message.
struct CatchPanic<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchPanic<F> {
    type Output = std::result::Result<F::Output, String>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(move || inner.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(p) => Poll::Ready(Err(panic_message(p.as_ref()))),
        }
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_else(|| "panic".into())
}

// ---------------------------------------------------------------------------------------------
// Request bodies and blocking work

/// Reads a JSON request body as text: checks the content type (415), the size (413, before
/// reading when the length is declared) and UTF-8, within a time limit (408).
async fn read_body(app: &App, req: Request) -> std::result::Result<String, ApiError> {
    let limit = app.shared.opts.max_body_bytes;
    let headers = req.headers();
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if ct != "application/json" && !(ct.starts_with("application/") && ct.ends_with("+json")) {
            return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", format!("the body must be JSON (Content-Type: application/json), not {ct:?}")));
        }
    }
    let too_large = || ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", format!("the body is larger than {limit} bytes"));
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let mut body = req.into_body();
    if let Some(n) = declared.filter(|n| *n > limit as u64) {
        if n <= DRAIN_MAX as u64 {
            drain(&mut body).await;
        }
        return Err(too_large());
    }
    let mut buf: Vec<u8> = Vec::with_capacity(declared.unwrap_or(0) as usize);
    let mut over = false;
    let read = async {
        while let Some(data) = next_data(&mut body).await? {
            if buf.len() + data.len() > limit {
                over = true;
                return Ok(());
            }
            buf.extend_from_slice(&data);
        }
        Ok::<(), ApiError>(())
    };
    match tokio::time::timeout(BODY_READ_TIMEOUT, read).await {
        Ok(r) => r?,
        Err(_) => return Err(ApiError::new(StatusCode::REQUEST_TIMEOUT, "timeout", format!("the body took longer than {}s to arrive", BODY_READ_TIMEOUT.as_secs()))),
    }
    if over {
        drop(buf);
        drain(&mut body).await;
        return Err(too_large());
    }
    String::from_utf8(buf).map_err(|_| ApiError::invalid("the body is not UTF-8"))
}

/// The next piece of a request body (`None` at its end).
async fn next_data(body: &mut Body) -> std::result::Result<Option<Bytes>, ApiError> {
    loop {
        match std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await {
            None => return Ok(None),
            Some(Err(e)) => return Err(ApiError::invalid(format!("reading the body: {e}"))),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// Reads and drops the rest of a refused body (at most `DRAIN_MAX` bytes, for at most
/// `DRAIN_TIME`), so that the connection closes cleanly and the client reads the 413 instead of
/// a reset.
async fn drain(body: &mut Body) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut seen = 0usize;
        while let Ok(Some(data)) = next_data(body).await {
            seen += data.len();
            if seen > DRAIN_MAX {
                break;
            }
        }
    })
    .await;
}

/// Parses a JSON body into `T`, naming what is wrong.
fn parse<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> std::result::Result<T, ApiError> {
    serde_json::from_str(text).map_err(|e| ApiError::invalid(format!("{what}: {e}")))
}

impl App {
    /// Runs `work` on the blocking pool: waits a bounded time for a slot (503 `busy`), then at
    /// most the timeout (503 `timeout`; the work finishes in the background and keeps its slot
    /// until then). A panic in `work` is a 500.
    async fn read<T: Send + 'static>(&self, what: &str, work: impl FnOnce(&Engine) -> Result<T> + Send + 'static) -> std::result::Result<T, ApiError> {
        let s = &self.shared;
        let start = Instant::now();
        let wait = s.timeout.min(MAX_QUEUE_WAIT);
        let permit = match tokio::time::timeout(wait, s.reads.clone().acquire_owned()).await {
            Ok(Ok(p)) => p,
            _ => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    format!("{} requests are running; none finished within {:.1}s", s.opts.max_concurrent, wait.as_secs_f64()),
                ))
            }
        };
        let engine = s.engine.clone();
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work(&engine)
        });
        self.finish(what, task, s.timeout.saturating_sub(start.elapsed())).await
    }

    async fn finish<T>(&self, what: &str, task: tokio::task::JoinHandle<Result<T>>, left: Duration) -> std::result::Result<T, ApiError> {
        match tokio::time::timeout(left, task).await {
            Ok(Ok(r)) => r.map_err(ApiError::from),
            Ok(Err(e)) if e.is_panic() => Err(ApiError::internal(format!("{what} failed: {}", panic_message(e.into_panic().as_ref())))),
            Ok(Err(e)) => Err(ApiError::internal(format!("{what} failed: {e}"))),
            Err(_) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!("{what} took longer than {:.1}s", self.shared.timeout.as_secs_f64()),
            )),
        }
    }
}

fn json_response(status: StatusCode, v: Value) -> Response {
    (status, Json(v)).into_response()
}

// ---------------------------------------------------------------------------------------------
// Routes

async fn health() -> Response {
    json_response(StatusCode::OK, json!({"status": "ok"}))
}

async fn info(State(app): State<App>) -> Response {
    let s = &app.shared;
    json_response(
        StatusCode::OK,
        json!({
            "name": "ponder",
            "version": env!("CARGO_PKG_VERSION"),
            "index": s.engine.dir().display().to_string(),
            "index_exists": s.engine.exists(),
            "watch": s.opts.watch,
            "auth": s.opts.token.is_some(),
            "limits": {
                "max_body_bytes": s.opts.max_body_bytes,
                "max_concurrent": s.opts.max_concurrent,
                "timeout_secs": s.opts.timeout_secs,
                "max_k": crate::engine::MAX_K,
                "max_queries": crate::engine::MAX_QUERIES,
                "max_connections": MAX_CONNECTIONS,
            },
            "open_connections": s.open.load(Ordering::SeqCst),
            "connections_total": s.accepted.load(Ordering::SeqCst),
            "event_streams": s.streams.load(Ordering::SeqCst),
            "searches_running": s.opts.max_concurrent - s.reads.available_permits(),
            "memory": {
                "resident_bytes": crate::fsutil::resident_bytes(),
                "resident_limit": s.engine.options().resident_limit,
                "page_releases": s.engine.page_releases(),
            },
        }),
    )
}

async fn status(State(app): State<App>) -> Answer {
    let st = app.read("status", |e| e.status()).await?;
    Ok(json_response(StatusCode::OK, serde_json::to_value(st).map_err(|e| ApiError::internal(e.to_string()))?))
}

async fn search(State(app): State<App>, req: Request) -> Answer {
    let body = read_body(&app, req).await?;
    let request = SearchRequest::from_json(&body)?;
    let start = Instant::now();
    let hits = app.read("search", move |e| e.search(&request)).await?;
    Ok(json_response(StatusCode::OK, json!({"hits": hits, "took_ms": start.elapsed().as_secs_f64() * 1e3})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexBody {
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    rebuild: bool,
    #[serde(default)]
    compact: bool,
    #[serde(default)]
    instruction: Option<String>,
}

async fn start_index(State(app): State<App>, req: Request) -> Answer {
    let body: IndexBody = parse(&read_body(&app, req).await?, "index request")?;
    if body.paths.is_empty() && !app.shared.engine.exists() {
        return Err(ApiError::invalid("nothing to index: the index is empty, give `paths`"));
    }
    for p in &body.paths {
        if p.trim().is_empty() {
            return Err(ApiError::invalid("an empty path"));
        }
        if std::fs::symlink_metadata(p).is_err() {
            return Err(ApiError::invalid(format!("no such file or folder: {p}")));
        }
    }
    let job = app.shared.jobs.submit(body)?;
    let mut res = json_response(StatusCode::ACCEPTED, json!({"job": job.id, "state": job.state().state.name()}));
    if let Ok(v) = HeaderValue::from_str(&format!("/jobs/{}", job.id)) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

async fn list_jobs(State(app): State<App>) -> Response {
    let jobs: Vec<Value> = app.shared.jobs.all().iter().map(|j| j.to_json()).collect();
    json_response(StatusCode::OK, json!({"jobs": jobs}))
}

fn find_job(app: &App, id: &str) -> std::result::Result<Arc<Job>, ApiError> {
    id.parse::<u64>().ok().and_then(|n| app.shared.jobs.get(n)).ok_or_else(|| ApiError::not_found(format!("no job {id:?}")))
}

async fn get_job(State(app): State<App>, RoutePath(id): RoutePath<String>) -> Answer {
    Ok(json_response(StatusCode::OK, find_job(&app, &id)?.to_json()))
}

async fn cancel_job(State(app): State<App>, RoutePath(id): RoutePath<String>) -> Answer {
    let job = find_job(&app, &id)?;
    let status = if app.shared.jobs.cancel(&job) { StatusCode::ACCEPTED } else { StatusCode::OK };
    Ok(json_response(status, job.to_json()))
}

async fn job_events(State(app): State<App>, RoutePath(id): RoutePath<String>) -> Answer {
    let job = find_job(&app, &id)?;
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let shared = app.shared.clone();
    shared.streams.fetch_add(1, Ordering::SeqCst);
    tokio::spawn(async move {
        pump_events(job, tx).await;
        shared.streams.fetch_sub(1, Ordering::SeqCst);
    });
    let mut res = Body::from_stream(Lines(rx)).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    Ok(res)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveBody {
    path: String,
}

async fn remove(State(app): State<App>, req: Request) -> Answer {
    let body: RemoveBody = parse(&read_body(&app, req).await?, "remove request")?;
    if body.path.trim().is_empty() {
        return Err(ApiError::invalid("an empty path"));
    }
    // Removing writes the index: it waits for a running indexing job (bounded by the timeout;
    // past it the removal still happens once the job ends), and takes no search slot.
    let engine = app.shared.engine.clone();
    let path = PathBuf::from(&body.path);
    let task = tokio::task::spawn_blocking(move || engine.remove(&path));
    let n = app.finish("remove", task, app.shared.timeout).await.map_err(|e| {
        if e.kind != "timeout" {
            return e;
        }
        let m = format!("{}; it waits for the running indexing job and happens when that ends", e.message);
        ApiError { message: m, ..e }
    })?;
    (app.shared.log)(format!("removed {n} file(s) under {}", body.path));
    Ok(json_response(StatusCode::OK, json!({"removed": n})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GetParams {
    path: String,
    #[serde(default)]
    start: Option<u32>,
    #[serde(default)]
    end: Option<u32>,
}

async fn get_query(State(app): State<App>, q: std::result::Result<Query<GetParams>, QueryRejection>) -> Answer {
    let Query(p) = q.map_err(|e| ApiError::invalid(format!("get: {}", e.body_text())))?;
    get_document(app, p).await
}

async fn get_body(State(app): State<App>, req: Request) -> Answer {
    let p: GetParams = parse(&read_body(&app, req).await?, "get request")?;
    get_document(app, p).await
}

async fn get_document(app: App, p: GetParams) -> Answer {
    if p.path.trim().is_empty() {
        return Err(ApiError::invalid("an empty path"));
    }
    let lines = match (p.start, p.end) {
        (None, None) => None,
        (s, e) => Some((s.unwrap_or(1), e.unwrap_or(u32::MAX))),
    };
    let path = PathBuf::from(p.path);
    let doc = app.read("get", move |e| e.get(&path, lines)).await?;
    Ok(json_response(StatusCode::OK, serde_json::to_value(doc).map_err(|e| ApiError::internal(e.to_string()))?))
}

async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route {method} {}", uri.path()))
}

async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", format!("{} does not take {method}", uri.path()))
}

// ---------------------------------------------------------------------------------------------
// Indexing jobs

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JobPhase {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl JobPhase {
    fn name(self) -> &'static str {
        match self {
            JobPhase::Queued => "queued",
            JobPhase::Running => "running",
            JobPhase::Done => "done",
            JobPhase::Failed => "failed",
            JobPhase::Cancelled => "cancelled",
        }
    }
    fn finished(self) -> bool {
        matches!(self, JobPhase::Done | JobPhase::Failed | JobPhase::Cancelled)
    }
}

/// What a job has done so far, and the events its streams have not all seen.
struct JobState {
    state: JobPhase,
    files_done: usize,
    files_total: usize,
    chunks: u64,
    commits: u64,
    generation: Option<u64>,
    report: Option<IndexReport>,
    error: Option<String>,
    warnings: usize,
    cancel_requested: bool,
    created: SystemTime,
    started: Option<Instant>,
    elapsed_s: Option<f64>,
    /// Events (not progress counters), `first_seq` being the sequence number of the first.
    events: VecDeque<Value>,
    first_seq: u64,
}

/// One indexing request.
struct Job {
    id: u64,
    paths: Vec<String>,
    job: IndexJob,
    cancel: Arc<AtomicBool>,
    state: Mutex<JobState>,
    /// Bumped on every change; event streams wait on it.
    tick: watch::Sender<u64>,
}

impl Job {
    fn state(&self) -> std::sync::MutexGuard<'_, JobState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut JobState)) {
        f(&mut self.state());
        self.tick.send_modify(|t| *t += 1);
    }

    fn push_event(st: &mut JobState, event: Value) {
        st.events.push_back(event);
        while st.events.len() > KEEP_EVENTS {
            st.events.pop_front();
            st.first_seq += 1;
        }
    }

    fn to_json(&self) -> Value {
        job_json(self, &self.state())
    }
}

fn job_json(job: &Job, st: &JobState) -> Value {
    let elapsed = st.elapsed_s.or_else(|| st.started.map(|t| t.elapsed().as_secs_f64()));
    json!({
        "id": job.id,
        "kind": "index",
        "state": st.state.name(),
        "paths": job.paths,
        "rebuild": job.job.rebuild,
        "compact": job.job.compact,
        "files_done": st.files_done,
        "files_total": st.files_total,
        "chunks": st.chunks,
        "commits": st.commits,
        "generation": st.generation,
        "report": st.report,
        "error": st.error,
        "warnings": st.warnings,
        "cancel_requested": st.cancel_requested,
        "created_unix": st.created.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "elapsed_s": elapsed,
    })
}

/// The job table and its worker thread.
struct Jobs {
    table: Mutex<JobTable>,
    queue: Mutex<Option<std::sync::mpsc::Sender<Arc<Job>>>>,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct JobTable {
    next_id: u64,
    jobs: BTreeMap<u64, Arc<Job>>,
}

impl Jobs {
    fn start(engine: Arc<Engine>, log: Log) -> Arc<Jobs> {
        let (tx, rx) = std::sync::mpsc::channel::<Arc<Job>>();
        let jobs = Arc::new(Jobs { table: Mutex::new(JobTable { next_id: 1, jobs: BTreeMap::new() }), queue: Mutex::new(Some(tx)), worker: Mutex::new(None) });
        let me = Arc::downgrade(&jobs);
        let worker = std::thread::Builder::new()
            .name("ponder-jobs".into())
            .spawn(move || {
                for job in rx {
                    run_job(&engine, &job, &log);
                    if let Some(jobs) = me.upgrade() {
                        jobs.prune();
                    }
                }
            })
            .expect("spawning the job worker thread");
        *jobs.worker.lock().unwrap_or_else(|e| e.into_inner()) = Some(worker);
        jobs
    }

    fn table(&self) -> std::sync::MutexGuard<'_, JobTable> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn submit(&self, body: IndexBody) -> std::result::Result<Arc<Job>, ApiError> {
        let mut t = self.table();
        let queued = t.jobs.values().filter(|j| j.state().state == JobPhase::Queued).count();
        if queued >= MAX_QUEUED_JOBS {
            return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", format!("{queued} indexing jobs are already waiting")));
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let id = t.next_id;
        let job = Arc::new(Job {
            id,
            paths: body.paths,
            job: IndexJob { rebuild: body.rebuild, compact: body.compact, instruction: body.instruction, cancel: Some(cancel.clone()) },
            cancel,
            state: Mutex::new(JobState {
                state: JobPhase::Queued,
                files_done: 0,
                files_total: 0,
                chunks: 0,
                commits: 0,
                generation: None,
                report: None,
                error: None,
                warnings: 0,
                cancel_requested: false,
                created: SystemTime::now(),
                started: None,
                elapsed_s: None,
                events: VecDeque::new(),
                first_seq: 0,
            }),
            tick: watch::channel(0).0,
        });
        let sent = self.queue.lock().unwrap_or_else(|e| e.into_inner()).as_ref().is_some_and(|q| q.send(job.clone()).is_ok());
        if !sent {
            return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "the server is shutting down"));
        }
        t.next_id += 1;
        t.jobs.insert(id, job.clone());
        Ok(job)
    }

    fn get(&self, id: u64) -> Option<Arc<Job>> {
        self.table().jobs.get(&id).cloned()
    }

    fn all(&self) -> Vec<Arc<Job>> {
        self.table().jobs.values().cloned().collect()
    }

    /// Asks a job to stop; false when it had already finished.
    fn cancel(&self, job: &Job) -> bool {
        job.cancel.store(true, Ordering::SeqCst);
        let mut was_live = false;
        job.update(|st| {
            if st.state.finished() {
                return;
            }
            was_live = true;
            st.cancel_requested = true;
            if st.state == JobPhase::Queued {
                // The worker skips it.
                st.state = JobPhase::Cancelled;
                st.elapsed_s = Some(0.0);
            }
        });
        was_live
    }

    fn cancel_all(&self) {
        for job in self.all() {
            self.cancel(&job);
        }
    }

    /// Drops the oldest finished jobs past the limit.
    fn prune(&self) {
        let mut t = self.table();
        let finished: Vec<u64> = t.jobs.values().filter(|j| j.state().state.finished()).map(|j| j.id).collect();
        for id in finished.iter().take(finished.len().saturating_sub(KEEP_FINISHED_JOBS)) {
            t.jobs.remove(id);
        }
    }

    /// Closes the queue and waits (at most `wait`) for the worker to finish its job.
    fn stop(&self, wait: Duration) -> bool {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(worker) = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take() else { return true };
        let deadline = Instant::now() + wait;
        while !worker.is_finished() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = worker.join();
        true
    }
}

/// Runs one job on the worker thread.
fn run_job(engine: &Engine, job: &Job, log: &Log) {
    let mut skip = false;
    job.update(|st| {
        if st.state != JobPhase::Queued {
            skip = true;
            return;
        }
        st.state = JobPhase::Running;
        st.started = Some(Instant::now());
        Job::push_event(st, json!({"type": "state", "state": "running"}));
    });
    if skip {
        return;
    }
    log(format!("job {}: indexing {}", job.id, if job.paths.is_empty() { "the index's folders".to_string() } else { job.paths.join(", ") }));
    let paths: Vec<PathBuf> = job.paths.iter().map(PathBuf::from).collect();
    let mut on = |p: Progress| {
        job.update(|st| match p {
            Progress::Walked { files } => {
                st.files_total = files;
                Job::push_event(st, json!({"type": "walked", "files": files}));
            }
            Progress::File { done, total, chunks, .. } => {
                st.files_done = done;
                st.files_total = total;
                st.chunks = chunks;
            }
            Progress::Warning(m) => {
                st.warnings += 1;
                if st.warnings <= KEEP_WARNINGS {
                    Job::push_event(st, json!({"type": "warning", "message": m}));
                }
            }
            Progress::Committed { generation, files, chunks } => {
                st.commits += 1;
                st.generation = Some(generation);
                Job::push_event(st, json!({"type": "commit", "generation": generation, "files": files, "chunks": chunks}));
            }
        })
    };
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| engine.index(&paths, &job.job, &mut on)));
    let mut line = String::new();
    job.update(|st| {
        st.elapsed_s = st.started.map(|t| t.elapsed().as_secs_f64());
        match outcome {
            Ok(Ok(report)) => {
                st.state = JobPhase::Done;
                st.generation = Some(report.generation);
                line = format!(
                    "job {} done: {} file(s) indexed, {} unchanged, {} removed, {} chunk(s), generation {} in {:.1}s",
                    job.id, report.files_indexed, report.files_unchanged, report.files_removed, report.chunks_added, report.generation, report.elapsed_s
                );
                st.report = Some(report);
            }
            Ok(Err(Error::Cancelled)) => {
                st.state = JobPhase::Cancelled;
                line = format!("job {} cancelled", job.id);
            }
            Ok(Err(e)) => {
                st.state = JobPhase::Failed;
                line = format!("job {} failed: {e}", job.id);
                st.error = Some(e.to_string());
            }
            Err(p) => {
                st.state = JobPhase::Failed;
                let m = format!("the indexing job panicked: {}", panic_message(p.as_ref()));
                line = format!("job {} failed: {m}", job.id);
                st.error = Some(m);
            }
        }
    });
    log(line);
}

/// Feeds a job's events to one stream as NDJSON lines: a snapshot first (`type: job`), then
/// events and coalesced progress as they happen, a heartbeat when nothing does, and the final
/// state (`type: end`). Stops as soon as the client goes away; the job never waits for it.
async fn pump_events(job: Arc<Job>, tx: mpsc::Sender<Bytes>) {
    let mut tick = job.tick.subscribe();
    let mut seq = 0u64;
    let mut sent_progress = None;
    let mut first = true;
    loop {
        let _ = tick.borrow_and_update();
        let (lines, finished) = {
            let st = job.state();
            let mut lines = Vec::new();
            if first {
                let mut snap = job_json(&job, &st);
                snap["type"] = json!("job");
                lines.push(snap);
                // The snapshot covers what happened before.
                seq = st.first_seq + st.events.len() as u64;
                first = false;
            }
            if seq < st.first_seq {
                lines.push(json!({"type": "lagged", "missed": st.first_seq - seq}));
                seq = st.first_seq;
            }
            for e in st.events.iter().skip((seq - st.first_seq) as usize) {
                lines.push(e.clone());
            }
            seq = st.first_seq + st.events.len() as u64;
            let progress = (st.files_done, st.files_total, st.chunks);
            if st.state == JobPhase::Running && sent_progress != Some(progress) && progress != (0, 0, 0) {
                sent_progress = Some(progress);
                lines.push(json!({
                    "type": "progress", "files_done": st.files_done, "files_total": st.files_total, "chunks": st.chunks,
                    "elapsed_s": st.started.map(|t| t.elapsed().as_secs_f64()),
                }));
            }
            let finished = st.state.finished();
            if finished {
                let mut end = job_json(&job, &st);
                end["type"] = json!("end");
                lines.push(end);
            }
            (lines, finished)
        };
        for l in lines {
            let mut bytes = serde_json::to_vec(&l).unwrap_or_default();
            bytes.push(b'\n');
            if tx.send(Bytes::from(bytes)).await.is_err() {
                return;
            }
        }
        if finished {
            return;
        }
        tokio::select! {
            r = tick.changed() => {
                if r.is_err() {
                    return;
                }
                // Coalesce bursts of progress into a few lines a second.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ = tx.closed() => return,
            _ = tokio::time::sleep(HEARTBEAT) => {
                if tx.send(Bytes::from_static(b"{\"type\":\"heartbeat\"}\n")).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The receiving end of an event stream as a response body.
struct Lines(mpsc::Receiver<Bytes>);

impl futures_core::Stream for Lines {
    type Item = std::result::Result<Bytes, std::convert::Infallible>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|line| line.map(Ok))
    }
}

// ---------------------------------------------------------------------------------------------
// Connections: a bounded number, closed when idle

/// A listener that holds at most `slots` connections open and closes idle ones.
struct Limited<L> {
    inner: L,
    slots: Arc<Semaphore>,
    open: Arc<AtomicUsize>,
    accepted: Arc<AtomicU64>,
    idle: Duration,
}

impl<L: axum::serve::Listener> axum::serve::Listener for Limited<L> {
    type Io = Conn<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let slot = self.slots.clone().acquire_owned().await.expect("the connection semaphore is never closed");
        let (io, addr) = self.inner.accept().await;
        self.open.fetch_add(1, Ordering::SeqCst);
        self.accepted.fetch_add(1, Ordering::Relaxed);
        let slot = Slot { _permit: slot, open: self.open.clone() };
        let conn = Conn { io, _slot: slot, idle: self.idle, last: Instant::now(), timer: Box::pin(tokio::time::sleep(self.idle)) };
        (conn, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection's place in the limit and the count.
struct Slot {
    _permit: OwnedSemaphorePermit,
    open: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A connection that fails once nothing was read or written for `idle`.
struct Conn<T> {
    io: T,
    _slot: Slot,
    idle: Duration,
    last: Instant,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl<T> Conn<T> {
    /// After a write: bytes written count as activity; a write still pending past the idle
    /// limit fails the connection.
    fn wrote(&mut self, cx: &mut Context<'_>, p: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match p {
            Poll::Ready(r) => {
                if matches!(r, Ok(n) if n > 0) {
                    self.last = Instant::now();
                }
                Poll::Ready(r)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(idle_error())),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Whether the connection has been idle too long (registers for a wake-up otherwise).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let due = self.last + self.idle;
            if Instant::now() >= due {
                return true;
            }
            self.timer.as_mut().reset(due.into());
        }
    }
}

fn idle_error() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "connection idle")
}

impl<T: AsyncRead + Unpin> AsyncRead for Conn<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.last = Instant::now();
                }
                Poll::Ready(r)
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(idle_error())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Conn<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let p = Pin::new(&mut self.io).poll_write(cx, data);
        self.wrote(cx, p)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let p = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.wrote(cx, p)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_origins() {
        for ok in ["localhost", "localhost:7700", "LOCALHOST.", "127.0.0.1", "127.0.0.1:80", "127.9.9.9:1", "[::1]", "[::1]:7700"] {
            assert!(host_of_authority(ok).is_some_and(is_loopback_host), "{ok} refused");
        }
        for bad in ["evil.com", "evil.com:7700", "localhost.evil.com", "10.0.0.1:7700", "[::2]:1", "127.0.0.1:abc", "[::1]x", "", "0.0.0.0:7700"] {
            assert!(!host_of_authority(bad).is_some_and(is_loopback_host), "{bad} accepted");
        }
    }

    #[test]
    fn options_are_checked() {
        assert!(check_options(&ServeOptions::default()).is_ok());
        assert!(check_options(&ServeOptions { allow_remote: true, ..Default::default() }).is_err());
        assert!(check_options(&ServeOptions { allow_remote: true, token: Some("t0ken".into()), ..Default::default() }).is_ok());
        assert!(check_options(&ServeOptions { token: Some("has space".into()), ..Default::default() }).is_err());
        assert!(check_options(&ServeOptions { max_concurrent: 0, ..Default::default() }).is_err());
        assert!(check_options(&ServeOptions { timeout_secs: f64::NAN, ..Default::default() }).is_err());
    }

    #[test]
    fn a_panicking_handler_answers_500_and_the_server_goes_on() {
        let dir = std::env::temp_dir().join(format!("ponder-serve-unit-{}", std::process::id()));
        let engine = Arc::new(Engine::open(&dir, Default::default()).unwrap());
        let shared = Shared::new(engine, ServeOptions::default(), Arc::new(|_| {}));
        let app = App { shared, check_host: true };
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let app_routes = routes().route("/boom", get(|| async {
            if std::hint::black_box(true) {
                panic!("boom at {}", 42);
            }
            "unreachable"
        }));
        rt.spawn(async move { axum::serve(listener, with_guard(app_routes, app)).await });
        let ask = |path: &str| {
            use std::io::{Read, Write};
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            write!(c, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
            let mut out = String::new();
            c.read_to_string(&mut out).unwrap();
            out
        };
        let r = ask("/boom");
        assert!(r.starts_with("HTTP/1.1 500"), "{r}");
        assert!(r.contains(r#""type":"internal""#) && r.contains("boom at 42"), "{r}");
        assert!(ask("/health").starts_with("HTTP/1.1 200"));
        assert!(ask("/nowhere").contains(r#""type":"not_found""#));
        rt.shutdown_timeout(Duration::from_secs(1));
    }

    #[test]
    fn secrets_compare() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }
}
