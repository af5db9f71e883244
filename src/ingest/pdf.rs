//! PDF reader: the text layer of a PDF via the `pdf-extract` crate, page by page, each page
//! normalised for chunking (no form feeds, no trailing spaces, at most one blank line in a row)
//! and the pages joined with a blank line between them; [`Document::pages`] records where each
//! page starts, so that chunks can be cited by page.
//!
//! The parser can panic, loop or exhaust memory on unusual files. Where it runs is a
//! process-wide setting ([`set_isolation`]):
//! - [`PdfIsolation::InProcess`] (the default, because a library cannot assume that its host
//!   process can be re-executed): extraction runs on the calling thread; a panic becomes
//!   [`IngestError::Unreadable`] and its message is not printed. It has **no** time or memory
//!   limit: a file that makes the parser loop hangs the caller, and one that exhausts memory
//!   aborts the whole process.
//! - [`PdfIsolation::Subprocess`]: extraction runs in a helper process (`exe __extract-pdf`,
//!   which must call [`serve_child`]; the `ponder` binary sets itself as the helper) under an
//!   address-space limit (`RLIMIT_AS`), a CPU-time limit (`RLIMIT_CPU`, a backstop) and a
//!   wall-clock timeout after which the parent kills the helper's whole process group. A file
//!   that trips a limit is [`IngestError::TimedOut`] or [`IngestError::OutOfMemory`]; the caller
//!   skips it and goes on.
//!
//! Helper protocol: the parent writes the PDF's bytes to the helper's stdin and closes it; the
//! helper writes [`MAGIC`] to stdout, then frames of one tag byte, a little-endian `u32` length
//! and that many bytes: `P` one page's raw text (UTF-8; page 1 first), then either `D` (done,
//! empty) or `E` (extraction failed; the payload is the message). Anything else (no `D`/`E`,
//! a signal, a non-zero exit) is a failed helper. The helper's own stdout is redirected to its
//! stderr while it runs, so stray prints cannot corrupt the frames.
//!
//! A PDF whose pages hold no text at all (a scan) is [`IngestError::NoTextLayer`], never an
//! empty document.

use std::cell::Cell;
use std::io::{Read, Write};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{mpsc, Once, RwLock};
use std::time::{Duration, Instant};

use super::{extension, DocKind, Document, IngestError, Reader};

/// `.pdf`.
pub struct PdfReader;

impl Reader for PdfReader {
    fn name(&self) -> &'static str {
        "pdf"
    }

    fn accepts(&self, path: &Path) -> bool {
        extension(path).as_deref() == Some("pdf")
    }

    fn read(&self, _path: &Path, bytes: &[u8]) -> Result<Document, IngestError> {
        let pages = match isolation() {
            PdfIsolation::InProcess => extract_pages(bytes)?,
            PdfIsolation::Subprocess { exe, timeout, memory } => {
                extract_in_subprocess(bytes, &exe, time_limit(timeout, bytes.len()), memory)?
            }
        };
        document_from_pages(&pages)
    }
}

/// Where PDF text extraction runs; see the module documentation.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum PdfIsolation {
    /// On the calling thread, panics caught; no time or memory limit.
    #[default]
    InProcess,
    /// In a helper process `exe __extract-pdf` (which calls [`serve_child`]), killed after
    /// `timeout` (wall clock) and limited to `memory` bytes of address space (`None`: no limit).
    Subprocess { exe: PathBuf, timeout: Duration, memory: Option<u64> },
}

/// Default wall-clock limit for one PDF in a helper process (plus [`TIMEOUT_PER_MIB`]).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Time added to the limit for each whole MiB of a PDF: extraction takes about 3–5 s per MiB
/// on one laptop core (R's 6.5 MB, 2,415-page reference manual: 28 s), so a big manual on a
/// busy machine is not mistaken for a file that loops.
pub const TIMEOUT_PER_MIB: Duration = Duration::from_secs(15);

/// The wall-clock limit for a PDF of `len` bytes: `base` plus [`TIMEOUT_PER_MIB`] per whole MiB.
pub fn time_limit(base: Duration, len: usize) -> Duration {
    base + TIMEOUT_PER_MIB * (len >> 20) as u32
}

/// Default address-space limit of a helper process: 1 GiB.
pub const DEFAULT_MEMORY: u64 = 1 << 30;
/// The argument that makes a helper executable serve one extraction ([`serve_child`]).
pub const HELPER_ARG: &str = "__extract-pdf";
/// First bytes of a helper's output.
pub const MAGIC: &[u8] = b"ponder-pdf-pages 1\n";

impl PdfIsolation {
    /// A helper process `exe` with the default limits.
    pub fn subprocess(exe: PathBuf) -> Self {
        PdfIsolation::Subprocess { exe, timeout: DEFAULT_TIMEOUT, memory: Some(DEFAULT_MEMORY) }
    }
}

static ISOLATION: RwLock<PdfIsolation> = RwLock::new(PdfIsolation::InProcess);

/// Sets where PDF extraction runs, for the whole process (all readers, all threads).
pub fn set_isolation(iso: PdfIsolation) {
    *ISOLATION.write().unwrap_or_else(|e| e.into_inner()) = iso;
}

/// The current process-wide [`PdfIsolation`].
pub fn isolation() -> PdfIsolation {
    ISOLATION.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Joins normalised pages into a document, recording where each page starts. Empty pages start
/// where the next non-empty page starts (or at the end), so that no chunk is attributed to them.
fn document_from_pages(pages: &[String]) -> Result<Document, IngestError> {
    if pages.is_empty() {
        return Err(IngestError::Unreadable("PDF has no pages".into()));
    }
    let mut text = String::new();
    let mut starts: Vec<Option<usize>> = Vec::with_capacity(pages.len());
    for raw in pages {
        let page = normalise(raw);
        if page.is_empty() {
            starts.push(None);
            continue;
        }
        if !text.is_empty() {
            text.push('\n'); // a blank line between pages (each page ends with '\n')
        }
        starts.push(Some(text.len()));
        text.push_str(&page);
    }
    if text.is_empty() {
        return Err(IngestError::NoTextLayer { pages: pages.len() });
    }
    let mut offsets = vec![0; starts.len()];
    let mut next = text.len();
    for (i, s) in starts.iter().enumerate().rev() {
        if let Some(s) = s {
            next = *s;
        }
        offsets[i] = next;
    }
    // Text before the first non-empty page does not exist; page 1 starts at 0 regardless.
    Ok(Document { text, kind: DocKind::Pdf, pages: offsets })
}

/// Extracts the raw text of each page on the calling thread. A page that fails or panics is
/// empty; the file fails only when it cannot be loaded or every page failed. Panics are caught.
pub fn extract_pages(bytes: &[u8]) -> Result<Vec<String>, IngestError> {
    match quietly(|| extract_pages_inner(bytes)) {
        Ok(r) => r,
        Err(panic) => Err(IngestError::Unreadable(format!("PDF parser failed: {}", panic_message(&*panic)))),
    }
}

fn extract_pages_inner(bytes: &[u8]) -> Result<Vec<String>, IngestError> {
    use pdf_extract::{output_doc_page, Document as PdfDocument, PlainTextOutput};
    let mut doc = PdfDocument::load_mem(bytes).map_err(|e| IngestError::Unreadable(format!("PDF: {e}")))?;
    if doc.is_encrypted() && doc.decrypt("").is_err() {
        return Err(IngestError::Unreadable("PDF is encrypted with a password".into()));
    }
    let numbers: Vec<u32> = doc.get_pages().keys().copied().collect();
    let mut pages = Vec::with_capacity(numbers.len());
    let mut first_error = None;
    let mut failed = 0;
    for n in numbers {
        let mut s = String::new();
        let r = quietly(|| {
            let mut out = PlainTextOutput::new(&mut s);
            output_doc_page(&doc, &mut out, n).map_err(|e| e.to_string())
        });
        let err = match r {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(panic) => Some(format!("parser failed: {}", panic_message(&*panic))),
        };
        if let Some(e) = err {
            failed += 1;
            first_error.get_or_insert_with(|| format!("page {n}: {e}"));
            s.clear();
        }
        pages.push(s);
    }
    if failed > 0 && failed == pages.len() {
        return Err(IngestError::Unreadable(format!("PDF: {}", first_error.unwrap_or_default())));
    }
    Ok(pages)
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown error".to_string())
}

/// The helper side of [`PdfIsolation::Subprocess`]: reads a PDF from stdin, extracts its pages
/// in this process and writes them to stdout in the framed format of the module documentation.
/// Returns the process exit code (0 also when the PDF was unreadable: that is reported in-band).
pub fn serve_child() -> i32 {
    let mut out = match private_stdout() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("ponder {HELPER_ARG}: {e}");
            return 2;
        }
    };
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin().lock().read_to_end(&mut bytes) {
        eprintln!("ponder {HELPER_ARG}: reading stdin: {e}");
        return 2;
    }
    let result = extract_pages(&bytes);
    let write = |out: &mut dyn Write| -> std::io::Result<()> {
        out.write_all(MAGIC)?;
        match &result {
            Ok(pages) => {
                for p in pages {
                    write_frame(out, b'P', p.as_bytes())?;
                }
                write_frame(out, b'D', b"")?;
            }
            Err(IngestError::Unreadable(msg)) => write_frame(out, b'E', msg.as_bytes())?,
            Err(e) => write_frame(out, b'E', e.to_string().as_bytes())?,
        }
        out.flush()
    };
    match write(&mut out) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ponder {HELPER_ARG}: writing stdout: {e}");
            2
        }
    }
}

/// This process's stdout for the frames alone: on Unix the original descriptor is duplicated
/// and descriptor 1 then points at stderr, so that prints from libraries go there.
fn private_stdout() -> std::io::Result<Box<dyn Write>> {
    #[cfg(unix)]
    {
        use std::os::fd::FromRawFd;
        // SAFETY: plain descriptor calls; the duplicate is owned by the returned File alone.
        unsafe {
            let fd = libc::dup(1);
            if fd < 0 || libc::dup2(2, 1) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(Box::new(std::io::BufWriter::new(std::fs::File::from_raw_fd(fd))))
        }
    }
    #[cfg(not(unix))]
    {
        Ok(Box::new(std::io::BufWriter::new(std::io::stdout())))
    }
}

fn write_frame(out: &mut dyn Write, tag: u8, payload: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(payload.len()).map_err(|_| std::io::Error::other("frame too large"))?;
    out.write_all(&[tag])?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(payload)
}

/// What a helper's stdout said: its pages, its error, or nothing usable.
enum Reply {
    Pages(Vec<String>),
    Failed(String),
    Broken,
}

fn parse_reply(buf: &[u8]) -> Reply {
    let Some(mut rest) = buf.strip_prefix(MAGIC) else { return Reply::Broken };
    let mut pages = Vec::new();
    while rest.len() >= 5 {
        let tag = rest[0];
        let len = u32::from_le_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let Some(payload) = rest.get(5..5 + len) else { return Reply::Broken };
        rest = &rest[5 + len..];
        let text = String::from_utf8_lossy(payload).into_owned();
        match tag {
            b'P' => pages.push(text),
            b'D' => return Reply::Pages(pages),
            b'E' => return Reply::Failed(text),
            _ => return Reply::Broken,
        }
    }
    Reply::Broken
}

/// Most bytes of helper output accepted (the text of one PDF).
const MAX_REPLY: u64 = 512 << 20;
/// How much of the helper's stderr is kept for messages (its tail).
const STDERR_TAIL: usize = 4096;

/// Runs `exe __extract-pdf` on `bytes` under the limits and returns its pages.
fn extract_in_subprocess(
    bytes: &[u8],
    exe: &Path,
    timeout: Duration,
    memory: Option<u64>,
) -> Result<Vec<String>, IngestError> {
    let mut cmd = Command::new(exe);
    cmd.arg(HELPER_ARG).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // Its own process group, so that a timeout kills whatever the helper started too.
        cmd.process_group(0);
        // CPU time is a backstop for the wall clock (whole seconds, rounded up, plus one).
        let cpu = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0) + 1;
        let mem = memory;
        // SAFETY: only async-signal-safe calls (getrlimit, setrlimit, prctl) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                limit(libc::RLIMIT_CORE as _, 0, 0);
                // The soft limit sends SIGXCPU; the hard one, a second later, SIGKILL.
                limit(libc::RLIMIT_CPU as _, cpu, cpu + 1);
                if let Some(m) = mem {
                    limit(libc::RLIMIT_AS as _, m, m);
                }
                #[cfg(target_os = "linux")]
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().map_err(|e| {
        IngestError::Unreadable(format!("could not start the PDF helper {}: {e}", exe.display()))
    })?;

    // Pipes are served on threads so that neither side can block the other.
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = bytes.to_vec();
    std::thread::spawn(move || {
        let _ = stdin.write_all(&input); // a helper that dies early closes the pipe: fine
    });
    let mut stdout = child.stdout.take().expect("piped stdout");
    let (out_tx, out_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let r = (&mut stdout).take(MAX_REPLY).read_to_end(&mut buf);
        let _ = out_tx.send(r.map(|_| buf));
    });
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (err_tx, err_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tail = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut chunk) {
            if n == 0 {
                break;
            }
            tail.extend_from_slice(&chunk[..n]);
            if tail.len() > 2 * STDERR_TAIL {
                tail.drain(..tail.len() - STDERR_TAIL);
            }
        }
        let _ = err_tx.send(tail);
    });

    let deadline = Instant::now() + timeout;
    let mut nap = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) => {}
            Err(e) => {
                kill(&mut child);
                return Err(IngestError::Io(e));
            }
        }
        let now = Instant::now();
        if now >= deadline {
            kill(&mut child);
            break None;
        }
        std::thread::sleep(nap.min(deadline - now));
        nap = (nap * 2).min(Duration::from_millis(20));
    };
    let Some(status) = status else { return Err(IngestError::TimedOut(timeout)) };

    // The pipes close when the helper exits, unless something it started still holds them.
    let grace = Duration::from_secs(2);
    let reply = match out_rx.recv_timeout(grace) {
        Ok(Ok(buf)) => parse_reply(&buf),
        _ => Reply::Broken,
    };
    match reply {
        Reply::Pages(pages) if status.success() => return Ok(pages),
        Reply::Failed(msg) if status.success() => return Err(IngestError::Unreadable(msg)),
        _ => {}
    }
    let tail = err_rx.recv_timeout(grace).unwrap_or_default();
    let tail = String::from_utf8_lossy(&tail);
    let last = tail.lines().rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    Err(helper_failure(status, last, timeout, memory))
}

/// Turns a helper's abnormal end into an error a person can act on.
fn helper_failure(status: ExitStatus, last_line: &str, timeout: Duration, memory: Option<u64>) -> IngestError {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if status.signal() == Some(libc::SIGXCPU) {
            return IngestError::TimedOut(timeout);
        }
    }
    let lower = last_line.to_ascii_lowercase();
    if let Some(limit) = memory {
        // Rust's allocation failure ("memory allocation of N bytes failed"), C's ENOMEM
        // ("Cannot allocate memory"), Python's MemoryError, ...
        if lower.contains("memory") || lower.contains("cannot allocate") {
            return IngestError::OutOfMemory { limit };
        }
    }
    let detail = if last_line.is_empty() { String::new() } else { format!(": {last_line}") };
    if status.success() {
        return IngestError::Unreadable(format!("the PDF helper gave no usable answer{detail}"));
    }
    IngestError::Unreadable(format!("the PDF helper failed ({status}){detail}"))
}

#[cfg(unix)]
fn limit(resource: libc::c_int, soft: u64, hard: u64) {
    // SAFETY: getrlimit/setrlimit on a local struct. The new limits never exceed the current hard
    // limit (which an unprivileged process cannot raise).
    unsafe {
        let mut cur = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(resource as _, &mut cur) != 0 {
            return;
        }
        let hard = (hard as libc::rlim_t).min(cur.rlim_max);
        let new = libc::rlimit { rlim_cur: (soft as libc::rlim_t).min(hard), rlim_max: hard };
        libc::setrlimit(resource as _, &new);
    }
}

/// Kills the helper and everything in its process group, and reaps it.
fn kill(child: &mut std::process::Child) {
    #[cfg(unix)]
    // SAFETY: the group is the unreaped child's own (process_group(0)), so its id is not reused.
    unsafe {
        libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, catching a panic and keeping the panic hook from printing it. The hook is replaced
/// once by one that consults a per-thread flag, so that concurrent callers (rayon workers
/// reading PDFs) never race on swapping the process-wide hook, and panics elsewhere still
/// reach the previous hook.
fn quietly<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
    let was = QUIET.with(|q| q.replace(true));
    let result = std::panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    result
}

/// Drops form feeds and trailing whitespace on lines, collapses runs of blank lines to one and
/// trims the ends.
fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0;
    for line in text.split('\n') {
        let line = line.trim_end_matches(|c: char| c.is_whitespace() || c == '\u{c}');
        let line: std::borrow::Cow<str> =
            if line.contains('\u{c}') { line.replace('\u{c}', "").into() } else { line.into() };
        if line.trim().is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        blank_run = 0;
        out.push_str(&line);
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// A minimal PDF writer for tests and examples: pages of Helvetica text lines, or a page
/// holding only an image (what a scan looks like to a text extractor).
#[doc(hidden)]
pub mod synth {
    /// One page of a generated PDF: lines of Helvetica text, or only an image (a "scan").
    pub enum Page<'a> {
        Text(&'a [&'a str]),
        Image,
    }

    /// A PDF with `pages`, with a correct cross-reference table.
    pub fn make_pdf(pages: &[Page]) -> Vec<u8> {
        // Objects: 1 catalog, 2 page tree, 3 font, 4 image, then a page and its content each.
        let kids: Vec<String> = (0..pages.len()).map(|i| format!("{} 0 R", 5 + 2 * i)).collect();
        let mut objects = vec![
            "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
            format!("<< /Type /Pages /Kids [{}] /Count {} >>", kids.join(" "), pages.len()),
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
                .to_string(),
            "<< /Type /XObject /Subtype /Image /Width 2 /Height 2 /ColorSpace /DeviceGray \
             /BitsPerComponent 8 /Length 4 >>\nstream\n\x00\x7f\x7f\x00\nendstream"
                .to_string(),
        ];
        for (i, page) in pages.iter().enumerate() {
            let content = match page {
                Page::Text(lines) => {
                    let mut c = String::from("BT /F1 12 Tf 72 720 Td 14 TL\n");
                    for l in *lines {
                        c.push_str(&format!("({l}) Tj T*\n"));
                    }
                    c + "ET"
                }
                Page::Image => "q 200 0 0 200 72 500 cm /Im1 Do Q".to_string(),
            };
            objects.push(format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {} 0 R \
                 /Resources << /Font << /F1 3 0 R >> /XObject << /Im1 4 0 R >> >> >>",
                6 + 2 * i
            ));
            objects.push(format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()));
        }
        let mut pdf = b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n".to_vec();
        let mut offsets = Vec::new();
        for (i, body) in objects.iter().enumerate() {
            offsets.push(pdf.len());
            pdf.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
        }
        let xref = pdf.len();
        let mut table = format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1);
        for off in offsets {
            table.push_str(&format!("{off:010} 00000 n \n"));
        }
        table.push_str(&format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        ));
        pdf.extend_from_slice(table.as_bytes());
        pdf
    }
}

#[cfg(test)]
mod tests {
    use super::synth::{make_pdf, Page};
    use super::*;

    fn tiny_pdf(lines: &[&str]) -> Vec<u8> {
        make_pdf(&[Page::Text(lines)])
    }

    #[test]
    fn extracts_text_from_a_minimal_pdf() {
        let pdf = tiny_pdf(&["Hello from ponder.", "Second line of text."]);
        let doc = PdfReader.read(Path::new("x.pdf"), &pdf).unwrap();
        assert_eq!(doc.kind, DocKind::Pdf);
        let words: Vec<&str> = doc.text.split_whitespace().collect();
        assert_eq!(
            words,
            ["Hello", "from", "ponder.", "Second", "line", "of", "text."],
            "{:?}",
            doc.text
        );
        assert!(!doc.text.contains('\u{c}'));
        assert!(!doc.text.contains("\n\n\n"));
        assert_eq!(doc.pages, [0]);
    }

    #[test]
    fn pages_are_recorded() {
        let pdf = make_pdf(&[
            Page::Text(&["Alpha on page one."]),
            Page::Image,
            Page::Text(&["Gamma on page three.", "More of three."]),
            Page::Text(&["Delta on page four."]),
        ]);
        let doc = PdfReader.read(Path::new("p.pdf"), &pdf).unwrap();
        assert_eq!(doc.pages.len(), 4, "{doc:?}");
        let at = |w: &str| doc.text.find(w).unwrap();
        let page = |w: &str| doc.page_range(at(w), at(w) + w.len()).unwrap();
        assert_eq!(page("Alpha"), (1, 1));
        assert_eq!(page("Gamma"), (3, 3));
        assert_eq!(page("More of three."), (3, 3));
        assert_eq!(page("Delta"), (4, 4));
        // The empty page starts where page 3 does, so nothing is attributed to it.
        assert_eq!(doc.pages[1], doc.pages[2]);
        assert_eq!(doc.page_range(at("Alpha"), at("Delta") + 5), Some((1, 4)));
        // Pages are separated by one blank line.
        assert!(doc.text.contains("one.\n\nGamma"), "{:?}", doc.text);
    }

    #[test]
    fn joining_pages() {
        let pages = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let doc = document_from_pages(&pages(&["", "a\n\n\n", "\u{c}", "b  \n", ""])).unwrap();
        assert_eq!(doc.text, "a\n\nb\n");
        assert_eq!(doc.pages, [0, 0, 3, 3, 5]);
        assert_eq!(doc.page_range(0, 1), Some((2, 2)));
        assert_eq!(doc.page_range(3, 5), Some((4, 4)));
        assert!(matches!(document_from_pages(&[]), Err(IngestError::Unreadable(_))));
        assert!(matches!(
            document_from_pages(&pages(&[" ", "\u{c}\n"])),
            Err(IngestError::NoTextLayer { pages: 2 })
        ));
    }

    #[test]
    fn a_scan_has_no_text_layer() {
        let pdf = make_pdf(&[Page::Image, Page::Image]);
        match PdfReader.read(Path::new("scan.pdf"), &pdf) {
            Err(e @ IngestError::NoTextLayer { pages: 2 }) => {
                assert!(e.to_string().contains("no text layer"), "{e}")
            }
            other => panic!("expected NoTextLayer, got {other:?}"),
        }
    }

    #[test]
    fn garbage_is_unreadable_not_a_panic() {
        for bytes in [
            &b"this is not a pdf at all"[..],
            b"",
            b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 99 0 R >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF",
            b"%PDF-1.4\n\xFF\xFE\x00garbage\x00\x01\x02 startxref 999999 %%EOF",
        ] {
            match PdfReader.read(Path::new("bad.pdf"), bytes) {
                Err(IngestError::Unreadable(msg)) => assert!(!msg.is_empty()),
                other => panic!("expected Unreadable, got {other:?}"),
            }
        }
        // Truncated files may or may not be recoverable, but never panic.
        let pdf = tiny_pdf(&["Truncated"]);
        for cut in [10, pdf.len() / 3, pdf.len() / 2, pdf.len() - 30] {
            let r = PdfReader.read(Path::new("cut.pdf"), &pdf[..cut]);
            assert!(
                matches!(r, Ok(_) | Err(IngestError::Unreadable(_) | IngestError::NoTextLayer { .. })),
                "{r:?}"
            );
        }
    }

    #[test]
    fn helper_replies() {
        let mut buf = MAGIC.to_vec();
        write_frame(&mut buf, b'P', "one".as_bytes()).unwrap();
        write_frame(&mut buf, b'P', b"").unwrap();
        let mut done = buf.clone();
        write_frame(&mut done, b'D', b"").unwrap();
        assert!(matches!(parse_reply(&done), Reply::Pages(p) if p == ["one", ""]));
        // Cut short (the helper died mid-way), no magic, or an unknown tag: broken.
        assert!(matches!(parse_reply(&buf), Reply::Broken));
        assert!(matches!(parse_reply(&done[..done.len() - 2]), Reply::Broken));
        assert!(matches!(parse_reply(b"hello"), Reply::Broken));
        let mut odd = MAGIC.to_vec();
        write_frame(&mut odd, b'X', b"").unwrap();
        assert!(matches!(parse_reply(&odd), Reply::Broken));
        let mut failed = MAGIC.to_vec();
        write_frame(&mut failed, b'E', b"PDF: bad xref").unwrap();
        assert!(matches!(parse_reply(&failed), Reply::Failed(m) if m == "PDF: bad xref"));
    }

    #[cfg(unix)]
    #[test]
    fn helper_limits_and_failures() {
        // A helper that hangs is killed at the timeout (its child `sleep` with it); one that
        // exits without a reply is a failure naming its last stderr line.
        let dir = std::env::temp_dir().join(format!("ponder-pdf-helper-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = |name: &str, body: &str| {
            use std::os::unix::fs::PermissionsExt;
            let p = dir.join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            p
        };
        let hang = script("hang", "cat >/dev/null; sleep 60");
        let t = Instant::now();
        let r = extract_in_subprocess(b"%PDF", &hang, Duration::from_millis(300), Some(DEFAULT_MEMORY));
        assert!(matches!(r, Err(IngestError::TimedOut(_))), "{r:?}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        let fail = script("fail", "echo 'something went wrong' >&2; exit 3");
        match extract_in_subprocess(b"%PDF", &fail, Duration::from_secs(10), None) {
            Err(IngestError::Unreadable(m)) => assert!(m.contains("something went wrong"), "{m}"),
            other => panic!("{other:?}"),
        }
        let oom = script("oom", "echo 'memory allocation of 4294967296 bytes failed' >&2; kill -ABRT $$");
        let r = extract_in_subprocess(b"%PDF", &oom, Duration::from_secs(10), Some(1 << 30));
        assert!(matches!(r, Err(IngestError::OutOfMemory { limit: 1073741824 })), "{r:?}");
        let missing = dir.join("missing");
        let r = extract_in_subprocess(b"%PDF", &missing, Duration::from_secs(10), None);
        assert!(matches!(&r, Err(IngestError::Unreadable(m)) if m.contains("could not start")), "{r:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_time_limit_grows_with_the_file() {
        let base = Duration::from_secs(30);
        assert_eq!(time_limit(base, 0), base);
        assert_eq!(time_limit(base, (1 << 20) - 1), base);
        assert_eq!(time_limit(base, 6_534_438), base + TIMEOUT_PER_MIB * 6);
    }

    #[test]
    fn panics_are_caught_quietly() {
        let r = quietly(|| -> u32 { panic!("boom") });
        assert!(r.is_err());
        assert_eq!(quietly(|| 7).unwrap(), 7);
        assert!(!QUIET.with(Cell::get));
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalise("\n\n a  \n\u{c}b\n\n\n\nc\u{c}\n\n"), " a\nb\n\nc\n");
        assert_eq!(normalise("\u{c}\n  \n"), "");
        assert!(PdfReader.accepts(Path::new("A.PDF")));
        assert!(!PdfReader.accepts(Path::new("a.txt")));
    }
}
