//! The C ABI: ponder for applications not written in Rust (Swift, C#, Qt, Electron, ...).
//!
//! This module owns the `extern "C"` functions behind `include/ponder.h` (the contract; read
//! it for the API as a C programmer sees it) and nothing else: each function checks its
//! pointers and strings, parses the JSON request into the [`Engine`] types, calls the engine,
//! and hands back JSON. It is modelled on sqlite's C API:
//!
//! - an opaque handle, `ponder_engine*`, made by [`ponder_open`] and destroyed once by
//!   [`ponder_close`]; it wraps an [`Engine`], which is `Send + Sync`, so any number of
//!   threads may use one handle at once (searches run in parallel; indexing jobs queue);
//! - every call returns an `int` code (`PONDER_OK` = 0, else one of the `PONDER_ERR_*`
//!   constants below) and, when the caller passes a non-NULL `char** err`, a message the caller
//!   frees with [`ponder_free_string`];
//! - requests and results cross as UTF-8 JSON strings with the fields of `ponder search --json`
//!   and of [`SearchRequest`]; every string ponder returns is the caller's, freed with
//!   [`ponder_free_string`];
//! - NULL pointers, invalid UTF-8 and malformed JSON are error codes, and no panic crosses the
//!   boundary: every entry point runs under [`std::panic::catch_unwind`] and reports a panic as
//!   `PONDER_ERR_INTERNAL`.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use clap::ValueEnum;
use serde::Deserialize;

use crate::device::DeviceChoice;
use crate::engine::{Engine, EngineOptions, IndexJob, SearchRequest};
use crate::error::Error;
use crate::index::{IndexReport, Progress, VectorKind};
use crate::model::{ModelSource, Precision};
use crate::present::Hit;

/// Success.
pub const PONDER_OK: c_int = 0;
/// Bad arguments: a NULL pointer, invalid UTF-8, malformed JSON, an unknown field, a value out
/// of range, or an index another process is writing.
pub const PONDER_ERR_INVALID: c_int = 1;
/// The directory holds no index yet.
pub const PONDER_ERR_NO_INDEX: c_int = 2;
/// A file is missing, or a path is not in the index.
pub const PONDER_ERR_NOT_FOUND: c_int = 3;
/// An I/O error.
pub const PONDER_ERR_IO: c_int = 4;
/// A corrupt index or model file.
pub const PONDER_ERR_CORRUPT: c_int = 5;
/// The indexing job was cancelled (what it had committed stays in the index).
pub const PONDER_ERR_CANCELLED: c_int = 6;
/// Something this build or model does not support.
pub const PONDER_ERR_UNSUPPORTED: c_int = 7;
/// The compute device (GPU adapter) failed.
pub const PONDER_ERR_DEVICE: c_int = 8;
/// A bug in ponder: an internal error or a caught panic.
pub const PONDER_ERR_INTERNAL: c_int = 9;

/// The progress callback of [`ponder_index`] and [`ponder_update`]: an event as a JSON object
/// (borrowed for the call) and the caller's `user` pointer. Returning non-zero cancels the job.
pub type PonderProgressFn = Option<unsafe extern "C" fn(event_json: *const c_char, user: *mut c_void) -> c_int>;

/// The object behind `ponder_engine*`: an [`Engine`] and the cancel flags of the indexing jobs
/// running (or queued) on it.
pub struct PonderEngine {
    engine: Engine,
    jobs: Mutex<Vec<Arc<AtomicBool>>>,
}

/// An error on its way to the caller: a code and a message.
#[derive(Debug)]
struct Failure {
    code: c_int,
    message: String,
}

impl Failure {
    fn invalid(message: impl Into<String>) -> Self {
        Failure { code: PONDER_ERR_INVALID, message: message.into() }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::InvalidInput(_) | Error::Config(_) | Error::Tokenizer(_) => PONDER_ERR_INVALID,
            Error::NoIndex(_) => PONDER_ERR_NO_INDEX,
            Error::NotIndexed(_) | Error::MissingFile(_) => PONDER_ERR_NOT_FOUND,
            Error::Io { .. } => PONDER_ERR_IO,
            Error::Corrupt { .. } | Error::TensorMismatch { .. } => PONDER_ERR_CORRUPT,
            Error::Cancelled => PONDER_ERR_CANCELLED,
            Error::Unsupported(_) | Error::UnsupportedArchitecture(_) => PONDER_ERR_UNSUPPORTED,
            Error::Device(_) => PONDER_ERR_DEVICE,
        };
        Failure { code, message: e.to_string() }
    }
}

type Outcome = std::result::Result<(), Failure>;

/// A Rust string as a C string the caller frees with [`ponder_free_string`]. Interior NULs
/// (JSON never has them; a message might) are written as `\0`.
fn c_string(s: String) -> *mut c_char {
    let s = if s.contains('\0') { s.replace('\0', "\\0") } else { s };
    CString::new(s).map(CString::into_raw).unwrap_or(ptr::null_mut())
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("internal error (panic): {what}")
}

/// Runs one entry point: clears `*err`, runs `f` with panics caught, and reports the outcome.
///
/// # Safety
/// `err` is NULL or valid for a write.
unsafe fn guard(err: *mut *mut c_char, f: impl FnOnce() -> Outcome) -> c_int {
    if !err.is_null() {
        *err = ptr::null_mut();
    }
    let failure = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return PONDER_OK,
        Ok(Err(failure)) => failure,
        Err(payload) => {
            let message = panic_message(&*payload);
            // Dropping a payload can panic in turn; leak it rather than unwind into C.
            std::mem::forget(payload);
            Failure { code: PONDER_ERR_INTERNAL, message }
        }
    };
    if !err.is_null() {
        *err = c_string(failure.message);
    }
    failure.code
}

/// Clears an out-parameter (when not NULL), so that the caller may free it whatever happens.
///
/// # Safety
/// `out` is NULL or valid for a write.
unsafe fn clear<T>(out: *mut *mut T) {
    if !out.is_null() {
        *out = ptr::null_mut();
    }
}

/// A required C string argument as `&str`.
///
/// # Safety
/// `s` is NULL or a NUL-terminated string that outlives the call.
unsafe fn text<'a>(s: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if s.is_null() {
        return Err(Failure::invalid(format!("{what} is NULL")));
    }
    CStr::from_ptr(s).to_str().map_err(|e| Failure::invalid(format!("{what} is not valid UTF-8: {e}")))
}

/// An optional C string argument (NULL: `None`).
///
/// # Safety
/// As [`text`].
unsafe fn optional_text<'a>(s: *const c_char, what: &str) -> Result<Option<&'a str>, Failure> {
    if s.is_null() {
        Ok(None)
    } else {
        text(s, what).map(Some)
    }
}

/// The handle behind a `ponder_engine*`.
///
/// # Safety
/// `engine` is NULL or a live handle from [`ponder_open`].
unsafe fn handle<'a>(engine: *const PonderEngine) -> Result<&'a PonderEngine, Failure> {
    engine.as_ref().ok_or_else(|| Failure::invalid("engine is NULL"))
}

/// Writes a required string out-parameter.
///
/// # Safety
/// `out` is NULL or valid for a write.
unsafe fn put(out: *mut *mut c_char, s: String) {
    if !out.is_null() {
        *out = c_string(s);
    }
}

/// The shape of every call that answers with one JSON string: `*out` is cleared first, the
/// handle and `out` are checked, and what `make` returns is stored in `*out`.
///
/// # Safety
/// `engine` is NULL or a live handle; `out` is NULL or valid for a write.
unsafe fn answer(
    engine: *const PonderEngine,
    out: *mut *mut c_char,
    name: &str,
    make: impl FnOnce(&PonderEngine) -> Result<String, Failure>,
) -> Outcome {
    clear(out);
    let h = handle(engine)?;
    if out.is_null() {
        return Err(Failure::invalid(format!("{name} is NULL")));
    }
    put(out, make(h)?);
    Ok(())
}

fn to_json(v: &impl serde::Serialize) -> Result<String, Failure> {
    serde_json::to_string(v).map_err(|e| Failure { code: PONDER_ERR_INTERNAL, message: format!("serializing the result: {e}") })
}

fn parse_json<'a, T: Deserialize<'a>>(json: &'a str, what: &str) -> Result<T, Failure> {
    serde_json::from_str(json).map_err(|e| Failure::invalid(format!("{what}: {e}")))
}

fn value_enum<T: ValueEnum>(s: &str, what: &str) -> Result<T, Failure> {
    T::from_str(s, true).map_err(|_| {
        let names: Vec<String> =
            T::value_variants().iter().filter_map(|v| v.to_possible_value()).map(|p| p.get_name().to_string()).collect();
        Failure::invalid(format!("{what}: unknown value {s:?} ({})", names.join(", ")))
    })
}

/// The result JSON of [`ponder_search`].
#[derive(serde::Serialize)]
struct Hits<'a> {
    hits: &'a [Hit],
}

/// The options JSON of [`ponder_open`].
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct OpenOptions {
    /// `"default"` or a path (Hugging Face directory or ponder model file).
    model: Option<String>,
    precision: Option<String>,
    device: Option<String>,
    vectors: Option<String>,
    hidden: bool,
    no_ignore: bool,
    follow_links: Option<bool>,
    max_bytes: Option<u64>,
    exclude: Vec<String>,
    commit_every_chunks: Option<usize>,
    commit_every_secs: Option<f64>,
    reranker: Option<String>,
    reranker_precision: Option<String>,
    /// [`EngineOptions::resident_limit`], in MiB.
    resident_limit_mb: Option<u64>,
    /// Refuse a directory without an index (`PONDER_ERR_NO_INDEX`) instead of preparing one.
    must_exist: bool,
}

impl OpenOptions {
    fn engine_options(&self) -> Result<EngineOptions, Failure> {
        let mut o = EngineOptions {
            model: self.model.as_deref().map(|m| m.parse().unwrap_or(ModelSource::Default)),
            precision: self.precision.as_deref().map(|p| value_enum::<Precision>(p, "precision")).transpose()?,
            ..Default::default()
        };
        if let Some(d) = &self.device {
            o.device = value_enum::<DeviceChoice>(d, "device")?;
        }
        if let Some(v) = &self.vectors {
            o.vectors = Some(value_enum::<VectorKind>(v, "vectors")?);
        }
        o.walk.hidden = self.hidden;
        o.walk.no_ignore = self.no_ignore;
        if let Some(f) = self.follow_links {
            o.walk.follow_links = f;
        }
        if let Some(m) = self.max_bytes {
            o.walk.max_bytes = m;
        }
        o.walk.exclude = self.exclude.iter().map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| PathBuf::from(p))).collect();
        if let Some(n) = self.commit_every_chunks {
            if n == 0 {
                return Err(Failure::invalid("commit_every_chunks must be positive"));
            }
            o.commit_every_chunks = n;
        }
        if let Some(s) = self.commit_every_secs {
            if !(s > 0.0) {
                return Err(Failure::invalid("commit_every_secs must be positive"));
            }
            o.commit_every_secs = s;
        }
        if let Some(r) = &self.reranker {
            o.reranker = r.parse().unwrap_or(ModelSource::Default);
        }
        o.reranker_precision =
            self.reranker_precision.as_deref().map(|p| value_enum::<Precision>(p, "reranker_precision")).transpose()?;
        o.resident_limit = self.resident_limit_mb.map(|mb| mb.saturating_mul(1 << 20));
        Ok(o)
    }
}

/// The request JSON of [`ponder_index`] and [`ponder_update`].
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct IndexRequest {
    paths: Vec<String>,
    rebuild: bool,
    compact: bool,
    /// New query instruction (`""` clears it; absent keeps the index's).
    instruction: Option<String>,
}

/// A progress event as the JSON object the callback receives (the shape of
/// `ponder index --progress json`).
fn event_json(p: &Progress) -> String {
    let v = match p {
        Progress::Walked { files } => serde_json::json!({"event": "walked", "files": files}),
        Progress::File { done, total, chunks, elapsed_s } => serde_json::json!({
            "event": "progress", "files_done": done, "files_total": total, "chunks": chunks,
            "chunks_per_s": *chunks as f64 / elapsed_s.max(1e-9), "elapsed_s": elapsed_s,
        }),
        Progress::Warning(m) => serde_json::json!({"event": "warning", "message": m}),
        Progress::Committed { generation, files, chunks } => {
            serde_json::json!({"event": "commit", "generation": generation, "files": files, "chunks": chunks})
        }
    };
    v.to_string()
}

/// Removes a job's cancel flag from its handle when the job ends, however it ends.
struct JobRegistration<'a> {
    handle: &'a PonderEngine,
    flag: Arc<AtomicBool>,
}

impl Drop for JobRegistration<'_> {
    fn drop(&mut self) {
        let mut jobs = self.handle.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.retain(|f| !Arc::ptr_eq(f, &self.flag));
    }
}

type WriteFn = fn(&Engine, &[PathBuf], &IndexJob, &mut dyn FnMut(Progress)) -> crate::Result<IndexReport>;

/// The body of [`ponder_index`] and [`ponder_update`].
///
/// # Safety
/// As those functions.
unsafe fn write_job(
    engine: *const PonderEngine,
    request_json: *const c_char,
    progress: PonderProgressFn,
    user: *mut c_void,
    report_json: *mut *mut c_char,
    err: *mut *mut c_char,
    work: WriteFn,
) -> c_int {
    guard(err, || {
        clear(report_json);
        let h = handle(engine)?;
        let req: IndexRequest = match optional_text(request_json, "request_json")? {
            Some(json) => parse_json(json, "index request")?,
            None => IndexRequest::default(),
        };
        let flag = Arc::new(AtomicBool::new(false));
        h.jobs.lock().unwrap_or_else(|e| e.into_inner()).push(flag.clone());
        let _registered = JobRegistration { handle: h, flag: flag.clone() };
        let job = IndexJob { rebuild: req.rebuild, compact: req.compact, instruction: req.instruction, cancel: Some(flag.clone()) };
        let paths: Vec<PathBuf> = req.paths.iter().map(PathBuf::from).collect();
        let mut on = |p: Progress| {
            if let Some(cb) = progress {
                let event = CString::new(event_json(&p)).unwrap_or_default();
                if cb(event.as_ptr(), user) != 0 {
                    flag.store(true, Ordering::Relaxed);
                }
            }
        };
        let report = work(&h.engine, &paths, &job, &mut on)?;
        put(report_json, to_json(&report)?);
        Ok(())
    })
}

/// The library's version (`"0.1.0"`), a static string: never free it.
#[unsafe(no_mangle)]
pub extern "C" fn ponder_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// A short static description of a code (`"invalid input"`, ...): never free it.
#[unsafe(no_mangle)]
pub extern "C" fn ponder_errstr(code: c_int) -> *const c_char {
    let s: &'static str = match code {
        PONDER_OK => "ok\0",
        PONDER_ERR_INVALID => "invalid input\0",
        PONDER_ERR_NO_INDEX => "no index\0",
        PONDER_ERR_NOT_FOUND => "not found\0",
        PONDER_ERR_IO => "I/O error\0",
        PONDER_ERR_CORRUPT => "corrupt file\0",
        PONDER_ERR_CANCELLED => "cancelled\0",
        PONDER_ERR_UNSUPPORTED => "unsupported\0",
        PONDER_ERR_DEVICE => "device error\0",
        PONDER_ERR_INTERNAL => "internal error\0",
        _ => "unknown code\0",
    };
    s.as_ptr().cast()
}

/// Frees a string ponder returned (a result or an error message). NULL is ignored.
///
/// # Safety
/// `s` is NULL or a string from this library not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ponder_free_string(s: *mut c_char) {
    if !s.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| drop(CString::from_raw(s))));
    }
}

/// Opens (or prepares to create) the index in `index_dir`; see `ponder.h`.
///
/// # Safety
/// `index_dir` and `options_json` are NULL or NUL-terminated strings; `out` and `err` are NULL
/// or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ponder_open(
    index_dir: *const c_char,
    options_json: *const c_char,
    out: *mut *mut PonderEngine,
    err: *mut *mut c_char,
) -> c_int {
    guard(err, || {
        clear(out);
        if out.is_null() {
            return Err(Failure::invalid("out is NULL"));
        }
        let dir = text(index_dir, "index_dir")?;
        if dir.is_empty() {
            return Err(Failure::invalid("index_dir is empty"));
        }
        let opts: OpenOptions = match optional_text(options_json, "options_json")? {
            Some(json) => parse_json(json, "options")?,
            None => OpenOptions::default(),
        };
        let eopts = opts.engine_options()?;
        let engine = if opts.must_exist { Engine::open_existing(dir, eopts)? } else { Engine::open(dir, eopts)? };
        let h = Box::new(PonderEngine { engine, jobs: Mutex::new(Vec::new()) });
        *out = Box::into_raw(h);
        Ok(())
    })
}

/// Closes a handle; see `ponder.h`. NULL is ignored.
///
/// # Safety
/// `engine` is NULL or a live handle that no other thread is using, not closed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ponder_close(engine: *mut PonderEngine) -> c_int {
    guard(ptr::null_mut(), || {
        if !engine.is_null() {
            drop(Box::from_raw(engine));
        }
        Ok(())
    })
}

/// Loads the model and opens the index now, so that the first search is fast.
///
/// # Safety
/// `engine` is NULL or a live handle; `err` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ponder_warm(engine: *const PonderEngine, err: *mut *mut c_char) -> c_int {
    guard(err, || Ok(handle(engine)?.engine.warm()?))
}

/// Searches; see `ponder.h`. `*hits_json` receives `{"hits": [...]}`.
///
/// # Safety
/// `engine` is NULL or a live handle; `request_json` is NULL or a NUL-terminated string;
/// `hits_json` and `err` are NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ponder_search(
    engine: *const PonderEngine,
    request_json: *const c_char,
    hits_json: *mut *mut c_char,
    err: *mut *mut c_char,
) -> c_int {
    guard(err, || {
        answer(engine, hits_json, "hits_json", |h| {
            let req = SearchRequest::from_json(text(request_json, "request_json")?)?;
            to_json(&Hits { hits: &h.engine.search(&req)? })
        })
    })
}

/// Indexes files and folders; see `ponder.h`.
///
/// # Safety
/// `engine` is NULL or a live handle; `request_json` is NULL or a NUL-terminated string;
/// `progress` is NULL or a function safe to call on this thread with `user`; `report_json`
/// and `err` are NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ponder_index(
    engine: *const PonderEngine,
    request_json: *const c_char,
    progress: PonderProgressFn,
    user: *mut c_void,
    report_json: *mut *mut c_char,
    err: *mut *mut c_char,
) -> c_int {
    write_job(engine, request_json, progress, user, report_json, err, |e, paths, job, on| e.index(paths, job, on))
}

/// Brings changed paths up to date without making them roots; see `ponder.h`.
///
/// # Safety
/// As [`ponder_index`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ponder_update(
    engine: *const PonderEngine,
    request_json: *const c_char,
    progress: PonderProgressFn,
    user: *mut c_void,
    report_json: *mut *mut c_char,
    err: *mut *mut c_char,
) -> c_int {
    write_job(engine, request_json, progress, user, report_json, err, |e, paths, job, on| {
        if paths.is_empty() {
            return Err(Error::InvalidInput("update: give one or more paths".into()));
        }
        e.update(paths, job, on)
    })
}

/// Cancels the indexing jobs running or waiting on this handle; see `ponder.h`.
///
/// # Safety
/// `engine` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ponder_cancel(engine: *const PonderEngine) -> c_int {
    guard(ptr::null_mut(), || {
        let h = handle(engine)?;
        for f in h.jobs.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            f.store(true, Ordering::Relaxed);
        }
        Ok(())
    })
}

/// What the index holds (the fields of `ponder status --json`); see `ponder.h`.
///
/// # Safety
/// `engine` is NULL or a live handle; `status_json` and `err` are NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ponder_status(engine: *const PonderEngine, status_json: *mut *mut c_char, err: *mut *mut c_char) -> c_int {
    guard(err, || {
        answer(engine, status_json, "status_json", |h| to_json(&h.engine.status()?))
    })
}

/// A file's indexed text, whole (`start_line` = `end_line` = 0) or lines
/// `start_line..=end_line`; see `ponder.h`.
///
/// # Safety
/// `engine` is NULL or a live handle; `path` is NULL or a NUL-terminated string; `doc_json`
/// and `err` are NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ponder_get(
    engine: *const PonderEngine,
    path: *const c_char,
    start_line: u32,
    end_line: u32,
    doc_json: *mut *mut c_char,
    err: *mut *mut c_char,
) -> c_int {
    guard(err, || {
        answer(engine, doc_json, "doc_json", |h| {
            let path = text(path, "path")?;
            let lines = match (start_line, end_line) {
                (0, 0) => None,
                (a, 0) => Some((a, u32::MAX)),
                (a, b) => Some((a, b)),
            };
            to_json(&h.engine.get(Path::new(path), lines)?)
        })
    })
}

/// Removes a file, or every file under a folder, from the index; see `ponder.h`.
///
/// # Safety
/// `engine` is NULL or a live handle; `path` is NULL or a NUL-terminated string; `removed` is
/// NULL or valid for a write; `err` is NULL or valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ponder_remove(
    engine: *const PonderEngine,
    path: *const c_char,
    removed: *mut u64,
    err: *mut *mut c_char,
) -> c_int {
    guard(err, || {
        if !removed.is_null() {
            *removed = 0;
        }
        let h = handle(engine)?;
        let path = text(path, "path")?;
        let n = h.engine.remove(Path::new(path))?;
        if !removed.is_null() {
            *removed = n as u64;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_names_and_errors_map() {
        for code in PONDER_OK..=PONDER_ERR_INTERNAL {
            let s = unsafe { CStr::from_ptr(ponder_errstr(code)) }.to_str().unwrap();
            assert_ne!(s, "unknown code", "{code}");
        }
        assert_eq!(Failure::from(Error::Cancelled).code, PONDER_ERR_CANCELLED);
        assert_eq!(Failure::from(Error::NoIndex("x".into())).code, PONDER_ERR_NO_INDEX);
        assert_eq!(Failure::from(Error::NotIndexed("x".into())).code, PONDER_ERR_NOT_FOUND);
    }

    #[test]
    fn panics_become_the_internal_code() {
        let mut err: *mut c_char = ptr::null_mut();
        let code = unsafe { guard(&mut err, || panic!("boom")) };
        assert_eq!(code, PONDER_ERR_INTERNAL);
        let msg = unsafe { CStr::from_ptr(err) }.to_str().unwrap().to_string();
        assert!(msg.contains("boom"), "{msg}");
        unsafe { ponder_free_string(err) };
    }

    #[test]
    fn options_parse_and_refuse_unknown_fields() {
        let o: OpenOptions =
            parse_json(r#"{"device": "cpu", "vectors": "f16", "hidden": true, "resident_limit_mb": 300}"#, "o").unwrap();
        let e = o.engine_options().unwrap();
        assert_eq!((e.device, e.vectors, e.walk.hidden), (DeviceChoice::Cpu, Some(VectorKind::F16), true));
        assert_eq!(e.resident_limit, Some(300 << 20));
        assert!(parse_json::<OpenOptions>(r#"{"colour": 1}"#, "o").is_err());
        let o: OpenOptions = parse_json(r#"{"device": "tpu"}"#, "o").unwrap();
        assert_eq!(o.engine_options().err().unwrap().code, PONDER_ERR_INVALID);
    }
}
