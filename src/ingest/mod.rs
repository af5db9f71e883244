//! Ingest: finding a person's files and turning each into a [`Document`] (plain text plus its
//! [`DocKind`]). This module owns directory walking (ignore files, hidden files, symlinks,
//! size limits), the choice of reader per file, and the decoding of bytes to text. Everything
//! downstream (chunking, byte ranges, line numbers) works on [`Document::text`].
//!
//! Each file type has its own [`Reader`] in its own file (`text.rs`, `html.rs`, `pdf.rs`);
//! adding a type means writing a reader and registering it in [`readers`], nothing else.
//!
//! It must not chunk, tokenize or touch the index; a file it cannot read is an [`IngestError`]
//! for the caller to report, and a walk problem is a warning, never a failed walk.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

pub mod generated;
pub mod html;
pub mod pdf;
pub mod text;

/// What kind of content a document holds; the chunker uses it to find structure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DocKind {
    Text,
    Markdown,
    Code,
    Html,
    Pdf,
}

/// A file's searchable text. Line numbers and byte ranges of chunks refer to `text`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    pub text: String,
    pub kind: DocKind,
    /// For paged documents (PDF): the byte offset in `text` where each page starts, ascending
    /// (page 1 first). Empty for documents without pages.
    pub pages: Vec<usize>,
}

impl Document {
    /// A document without pages.
    pub fn new(text: String, kind: DocKind) -> Self {
        Document { text, kind, pages: Vec::new() }
    }

    /// The first and last page (1-based) that `text[start..end]` touches, if the document has
    /// pages.
    pub fn page_range(&self, start: usize, end: usize) -> Option<(u32, u32)> {
        if self.pages.is_empty() {
            return None;
        }
        let page_of = |b: usize| self.pages.partition_point(|&s| s <= b).max(1) as u32;
        let last = end.saturating_sub(1).max(start);
        Some((page_of(start), page_of(last)))
    }
}

/// Why a file could not be turned into a [`Document`].
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),

    #[error("file is too large ({size} bytes; the limit is {limit} bytes)")]
    TooLarge { size: u64, limit: u64 },

    #[error("binary file (NUL bytes in its first 8 KiB)")]
    Binary,

    #[error("unsupported file type")]
    Unsupported,

    #[error("unreadable file: {0}")]
    Unreadable(String),

    /// A PDF whose pages carry no text (a scan without OCR).
    #[error("no text layer in its {pages} page(s); a scanned PDF? (OCR it to make it searchable)")]
    NoTextLayer { pages: usize },

    /// Text extraction ran past its time limit and was stopped.
    #[error("text extraction took longer than {:.1} s and was stopped (the file may make the parser loop)", .0.as_secs_f64())]
    TimedOut(std::time::Duration),

    /// Text extraction ran past its memory limit and was stopped.
    #[error("text extraction needed more than its {} MiB memory limit and was stopped", .limit >> 20)]
    OutOfMemory { limit: u64 },
}

/// One file type: which paths it takes and how their bytes become a [`Document`].
pub trait Reader: Send + Sync {
    /// Short name for messages ("text", "pdf", ...).
    fn name(&self) -> &'static str;
    /// Whether this reader handles `path` (decided from the name alone, never the contents).
    fn accepts(&self, path: &Path) -> bool;
    /// Converts the file's bytes.
    fn read(&self, path: &Path, bytes: &[u8]) -> Result<Document, IngestError>;
}

/// All readers, in priority order: the first that accepts a path reads it.
pub fn readers() -> Vec<Box<dyn Reader>> {
    vec![
        Box::new(text::MarkdownReader),
        Box::new(html::HtmlReader),
        Box::new(pdf::PdfReader),
        Box::new(text::CodeReader),
        Box::new(text::TextReader),
    ]
}

static READERS: LazyLock<Vec<Box<dyn Reader>>> = LazyLock::new(readers);

/// The reader that would read `path`, if any.
pub fn reader_for(path: &Path) -> Option<&'static dyn Reader> {
    READERS.iter().find(|r| r.accepts(path)).map(|r| r.as_ref())
}

/// Reads one file: checks its size against `max_bytes`, picks the first reader that accepts the
/// path and converts the bytes.
pub fn read_file(path: &Path, max_bytes: u64) -> Result<Document, IngestError> {
    let meta = fs::metadata(path)?;
    if !meta.is_file() {
        return Err(IngestError::Unsupported);
    }
    if meta.len() > max_bytes {
        return Err(IngestError::TooLarge { size: meta.len(), limit: max_bytes });
    }
    let reader = reader_for(path).ok_or(IngestError::Unsupported)?;
    let file = fs::File::open(path)?;
    // The file may grow between the check and the read: never read more than the limit.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max_bytes.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(IngestError::TooLarge { size: bytes.len() as u64, limit: max_bytes });
    }
    reader.read(path, &bytes)
}

/// Lower-cased extension of `path`, if it has one.
pub(crate) fn extension(path: &Path) -> Option<String> {
    path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase())
}

/// How many leading bytes are inspected for NUL bytes.
pub(crate) const BINARY_SNIFF_BYTES: usize = 8 * 1024;

/// Decodes a text file: UTF-16 with a byte-order mark is decoded as such; anything else is UTF-8
/// decoded lossily (invalid sequences become U+FFFD), minus a UTF-8 byte-order mark. A NUL byte in
/// the first 8 KiB (of a file without a UTF-16 mark) means the file is binary.
pub(crate) fn decode_text(bytes: &[u8]) -> Result<String, IngestError> {
    if let Some(s) = decode_utf16_bom(bytes) {
        return Ok(s);
    }
    let head = &bytes[..bytes.len().min(BINARY_SNIFF_BYTES)];
    if head.contains(&0) {
        return Err(IngestError::Binary);
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

fn decode_utf16_bom(bytes: &[u8]) -> Option<String> {
    let little = match bytes {
        [0xFF, 0xFE, ..] => true,
        [0xFE, 0xFF, ..] => false,
        _ => return None,
    };
    let units = bytes[2..].chunks_exact(2).map(|p| {
        if little {
            u16::from_le_bytes([p[0], p[1]])
        } else {
            u16::from_be_bytes([p[0], p[1]])
        }
    });
    let mut s: String =
        char::decode_utf16(units).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)).collect();
    if bytes.len() % 2 == 1 {
        s.push(char::REPLACEMENT_CHARACTER);
    }
    Some(s)
}

/// Options for [`walk`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalkOptions {
    /// Also visit hidden files and directories (names starting with `.`).
    pub hidden: bool,
    /// Disregard `.gitignore`, `.ignore` and `.git/info/exclude` files.
    pub no_ignore: bool,
    /// Follow symbolic links (loops are detected and reported as warnings).
    pub follow_links: bool,
    /// Files larger than this are skipped with a warning.
    pub max_bytes: u64,
    /// Directories never entered (canonical paths; the index's own directory, say). Any
    /// directory holding a ponder index (a `MANIFEST` with ponder's magic) is skipped too.
    pub exclude: Vec<PathBuf>,
    /// Also index generated and minified files (see [`generated`]), which are skipped with a
    /// warning otherwise.
    pub include_generated: bool,
}

impl Default for WalkOptions {
    fn default() -> Self {
        WalkOptions {
            hidden: false,
            no_ignore: false,
            follow_links: true,
            max_bytes: 50 << 20,
            exclude: Vec::new(),
            include_generated: false,
        }
    }
}

/// Whether `dir` holds a ponder index: its `MANIFEST` starts with the manifest's magic, or it
/// has the writer's `LOCK` file next to a `MANIFEST`.
pub fn is_index_dir(dir: &Path) -> bool {
    let manifest = dir.join(crate::index::manifest::MANIFEST);
    let mut magic = [0u8; 8];
    let starts = fs::File::open(&manifest).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic)).is_ok();
    (starts && &magic == crate::index::manifest::MAGIC) || (dir.join("LOCK").is_file() && manifest.is_file())
}

/// A directory the walk must not enter: one of `exclude`, or an index directory.
fn excluded_dir(dir: &Path, exclude: &[PathBuf]) -> bool {
    if !exclude.is_empty() {
        let canon = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        if exclude.iter().any(|x| *x == canon) {
            return true;
        }
    }
    is_index_dir(dir)
}

/// Version-control metadata directories, never descended into (even with `hidden`).
pub(crate) const VCS_DIRS: &[&str] = &[".git", ".hg", ".svn", ".jj", ".bzr", "_darcs"];

/// Lists the readable files under `roots`: regular files that some [`Reader`] accepts, no larger
/// than `opts.max_bytes`, honouring `.gitignore`/`.ignore`/`.git/info/exclude` (also outside git
/// repositories) unless `opts.no_ignore`, skipping hidden entries unless `opts.hidden`, and
/// never entering version-control directories. A root that is a file is taken as is.
///
/// Returns canonical absolute paths, sorted and without duplicates. Problems (unreadable
/// directories, symlink loops, broken links, files that vanish) are passed to `on_warning` and
/// the walk goes on.
pub fn walk(
    roots: &[PathBuf],
    opts: &WalkOptions,
    on_warning: &mut dyn FnMut(String),
) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for root in roots {
        let meta = match fs::metadata(root) {
            Ok(m) => m,
            Err(e) => {
                on_warning(format!("{}: {e}", root.display()));
                continue;
            }
        };
        if meta.is_file() {
            if reader_for(root).is_none() {
                on_warning(format!("{}: no reader for this file type; skipped", root.display()));
            } else {
                push_file(root, meta.len(), opts, &mut out, on_warning);
            }
            continue;
        }
        if !meta.is_dir() {
            on_warning(format!("{}: not a regular file or directory; skipped", root.display()));
            continue;
        }
        let exclude = opts.exclude.clone();
        if excluded_dir(root, &exclude) {
            continue;
        }

        let mut builder = ignore::WalkBuilder::new(root);
        builder
            .hidden(!opts.hidden)
            .follow_links(opts.follow_links)
            .require_git(false)
            .filter_entry(move |e| {
                let is_dir = e.file_type().is_some_and(|t| t.is_dir());
                if !is_dir {
                    return true;
                }
                let vcs = e.depth() > 0 && VCS_DIRS.iter().any(|d| e.file_name() == *d);
                !(vcs || excluded_dir(e.path(), &exclude))
            });
        if opts.no_ignore {
            builder
                .ignore(false)
                .git_ignore(false)
                .git_exclude(false)
                .git_global(false)
                .parents(false);
        }
        for entry in builder.build() {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    on_warning(e.to_string());
                    continue;
                }
            };
            // With follow_links, the file type is the link target's; without, links are skipped.
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            let path = entry.path();
            if reader_for(path).is_none() {
                continue;
            }
            match entry.metadata() {
                Ok(m) => push_file(path, m.len(), opts, &mut out, on_warning),
                Err(e) => on_warning(format!("{}: {e}", path.display())),
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn push_file(
    path: &Path,
    size: u64,
    opts: &WalkOptions,
    out: &mut Vec<PathBuf>,
    on_warning: &mut dyn FnMut(String),
) {
    if size > opts.max_bytes {
        on_warning(format!(
            "{}: {size} bytes exceeds the {}-byte limit; skipped",
            path.display(),
            opts.max_bytes
        ));
        return;
    }
    match fs::canonicalize(path) {
        Ok(p) => out.push(p),
        Err(e) => on_warning(format!("{}: {e}; skipped", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under `target/test-tmp/`, removed on drop.
    pub(crate) struct TempDir(pub PathBuf);

    impl TempDir {
        pub(crate) fn new(name: &str) -> TempDir {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/test-tmp")
                .join(format!("{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn names(paths: &[PathBuf], base: &Path) -> Vec<String> {
        let base = fs::canonicalize(base).unwrap();
        paths
            .iter()
            .map(|p| p.strip_prefix(&base).unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn reader_choice() {
        let kind = |p: &str| reader_for(Path::new(p)).map(|r| r.name());
        assert_eq!(kind("a/notes.md"), Some("markdown"));
        assert_eq!(kind("a/NOTES.MD"), Some("markdown"));
        assert_eq!(kind("main.rs"), Some("code"));
        assert_eq!(kind("Makefile"), Some("code"));
        assert_eq!(kind("README"), Some("text"));
        assert_eq!(kind("x.txt"), Some("text"));
        assert_eq!(kind("page.html"), Some("html"));
        assert_eq!(kind("paper.pdf"), Some("pdf"));
        assert_eq!(kind("photo.png"), None);
        assert_eq!(kind("archive.tar.gz"), None);
    }

    #[test]
    fn decoding() {
        assert_eq!(decode_text(b"caf\xC3\xA9 \xFF ok").unwrap(), "café \u{FFFD} ok");
        assert_eq!(decode_text(b"\xEF\xBB\xBFhi").unwrap(), "hi");
        assert!(matches!(decode_text(b"ELF\0\0\x01"), Err(IngestError::Binary)));
        // A NUL after the first 8 KiB does not make a file binary.
        let mut late = vec![b'a'; BINARY_SNIFF_BYTES];
        late.push(0);
        assert!(decode_text(&late).is_ok());
        // UTF-16 with a byte-order mark (both byte orders).
        assert_eq!(decode_text(b"\xFF\xFEh\0i\0").unwrap(), "hi");
        assert_eq!(decode_text(b"\xFE\xFF\0h\0i").unwrap(), "hi");
    }

    #[test]
    fn read_file_limits_and_types() {
        let t = TempDir::new("ingest-read");
        let small = t.0.join("a.txt");
        fs::write(&small, "hello\n").unwrap();
        let doc = read_file(&small, 100).unwrap();
        assert_eq!(doc, Document::new("hello\n".into(), DocKind::Text));
        assert!(matches!(read_file(&small, 3), Err(IngestError::TooLarge { size: 6, limit: 3 })));
        let bin = t.0.join("b.log");
        fs::write(&bin, b"abc\0def").unwrap();
        assert!(matches!(read_file(&bin, 100), Err(IngestError::Binary)));
        let png = t.0.join("c.png");
        fs::write(&png, b"x").unwrap();
        assert!(matches!(read_file(&png, 100), Err(IngestError::Unsupported)));
        assert!(matches!(read_file(&t.0.join("missing.txt"), 100), Err(IngestError::Io(_))));
    }

    #[test]
    fn walk_honours_ignore_files_and_hidden() {
        let t = TempDir::new("ingest-walk");
        let d = &t.0;
        fs::create_dir_all(d.join("sub")).unwrap();
        fs::create_dir_all(d.join(".hidden_dir")).unwrap();
        fs::create_dir_all(d.join(".git")).unwrap();
        fs::write(d.join(".gitignore"), "ignored.md\nbuild/\n").unwrap();
        fs::write(d.join("keep.md"), "# keep").unwrap();
        fs::write(d.join("ignored.md"), "# ignored").unwrap();
        fs::write(d.join(".secret.txt"), "hidden").unwrap();
        fs::write(d.join(".hidden_dir/in.txt"), "hidden dir").unwrap();
        fs::write(d.join(".git/config"), "[core]").unwrap();
        fs::write(d.join("sub/code.rs"), "fn main() {}").unwrap();
        fs::write(d.join("sub/image.png"), "not text").unwrap();
        fs::create_dir_all(d.join("build")).unwrap();
        fs::write(d.join("build/out.txt"), "generated").unwrap();
        fs::write(d.join("big.txt"), "x".repeat(2000)).unwrap();

        let mut warnings = Vec::new();
        let opts = WalkOptions { max_bytes: 1000, ..WalkOptions::default() };
        let files = walk(std::slice::from_ref(d), &opts, &mut |w| warnings.push(w));
        assert_eq!(names(&files, d), ["keep.md", "sub/code.rs"]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("big.txt"), "{warnings:?}");
        assert!(files.iter().all(|p| p.is_absolute()));

        let opts =
            WalkOptions { hidden: true, no_ignore: true, max_bytes: 1 << 20, ..Default::default() };
        let files = walk(std::slice::from_ref(d), &opts, &mut |w| panic!("unexpected warning {w}"));
        assert_eq!(
            names(&files, d),
            [
                ".gitignore",
                ".hidden_dir/in.txt",
                ".secret.txt",
                "big.txt",
                "build/out.txt",
                "ignored.md",
                "keep.md",
                "sub/code.rs"
            ]
        );

        // A file root is taken as is (ignore rules only apply inside directories); roots that
        // overlap are deduplicated; a missing root is a warning.
        let mut warnings = Vec::new();
        let files = walk(
            &[d.join("ignored.md"), d.join("sub"), d.join("sub/code.rs"), d.join("nope")],
            &WalkOptions::default(),
            &mut |w| warnings.push(w),
        );
        assert_eq!(names(&files, d), ["ignored.md", "sub/code.rs"]);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("nope"));
    }

    #[cfg(unix)]
    #[test]
    fn walk_symlink_loop_is_a_warning() {
        use std::os::unix::fs::symlink;
        let t = TempDir::new("ingest-loop");
        let d = &t.0;
        fs::create_dir_all(d.join("a/b")).unwrap();
        fs::write(d.join("a/b/doc.txt"), "text").unwrap();
        symlink(d.join("a"), d.join("a/b/back")).unwrap(); // a/b/back -> a: a loop
        symlink(d.join("a/b/doc.txt"), d.join("link.txt")).unwrap(); // same file twice
        symlink(d.join("gone.txt"), d.join("dangling.txt")).unwrap();
        symlink("self.txt", d.join("self.txt")).unwrap(); // ELOOP

        let mut warnings = Vec::new();
        let files =
            walk(std::slice::from_ref(d), &WalkOptions::default(), &mut |w| warnings.push(w));
        assert_eq!(names(&files, d), ["a/b/doc.txt"]);
        assert!(warnings.iter().any(|w| w.contains("loop")), "{warnings:?}");
        assert!(warnings.len() >= 2, "{warnings:?}");

        // Without following links, links are simply not visited.
        let opts = WalkOptions { follow_links: false, ..Default::default() };
        let files = walk(std::slice::from_ref(d), &opts, &mut |w| panic!("unexpected warning {w}"));
        assert_eq!(names(&files, d), ["a/b/doc.txt"]);
    }
}
