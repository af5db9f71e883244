//! Readers for files that are already text: plain text, Markdown and source code. They differ
//! only in which names they accept and the [`DocKind`] they report (which tells the chunker what
//! structure to look for). Bytes are decoded leniently: invalid UTF-8 becomes U+FFFD, never an
//! error; a NUL byte in the first 8 KiB marks the file as binary.

use std::path::Path;

use super::{decode_text, extension, DocKind, Document, IngestError, Reader};

/// Plain-text extensions. Files without an extension (README, LICENSE, dotfiles) are text too.
const TEXT_EXTENSIONS: &[&str] = &[
    "txt", "text", "rst", "org", "tex", "bib", "csv", "tsv", "log", "adoc", "asciidoc", "wiki",
    "textile", "pod", "rdoc", "me", "nfo", "srt", "vtt",
];

const MARKDOWN_EXTENSIONS: &[&str] = &["md", "markdown", "mdx", "mkd", "mdown", "mkdn"];

#[rustfmt::skip]
const CODE_EXTENSIONS: &[&str] = &[
    // systems and general purpose
    "rs", "c", "h", "cpp", "hpp", "cc", "hh", "cxx", "hxx", "c++", "h++", "cs", "go", "java",
    "kt", "kts", "scala", "swift", "m", "mm", "zig", "nim", "d", "dart", "v", "vala", "f",
    "f90", "f95", "pas", "ada", "adb", "ads", "asm", "s",
    // scripting
    "py", "pyi", "rb", "php", "pl", "pm", "lua", "r", "jl", "tcl", "sh", "bash", "zsh", "fish",
    "ps1", "psm1", "bat", "cmd", "awk", "sed", "vim", "el", "lisp", "scm", "rkt", "clj", "cljs",
    "cljc", "edn",
    // web
    "js", "mjs", "cjs", "ts", "mts", "cts", "tsx", "jsx", "vue", "svelte", "css", "scss", "sass",
    "less",
    // functional
    "hs", "lhs", "ml", "mli", "fs", "fsi", "fsx", "ex", "exs", "erl", "hrl", "elm", "purs",
    "idr", "agda", "lean", "coq",
    // data, config, build
    "sql", "toml", "yaml", "yml", "json", "jsonc", "json5", "ini", "cfg", "conf", "properties",
    "xml", "xsd", "xsl", "proto", "thrift", "graphql", "gql", "gradle", "groovy", "cmake", "mk",
    "make", "nix", "tf", "hcl", "bzl", "dockerfile", "sol", "cu", "cuh", "glsl", "hlsl", "wgsl",
    "metal",
];

/// Extensionless file names that are code.
const CODE_FILE_NAMES: &[&str] = &[
    "Makefile",
    "makefile",
    "GNUmakefile",
    "Dockerfile",
    "Containerfile",
    "Justfile",
    "justfile",
    "Rakefile",
    "Gemfile",
    "Vagrantfile",
    "Jenkinsfile",
    "BUILD",
    "WORKSPACE",
    "CMakeLists.txt",
];

fn has_extension(path: &Path, list: &[&str]) -> bool {
    extension(path).is_some_and(|e| list.contains(&e.as_str()))
}

fn text_document(bytes: &[u8], kind: DocKind) -> Result<Document, IngestError> {
    Ok(Document::new(decode_text(bytes)?, kind))
}

/// Plain text (and extensionless files).
pub struct TextReader;

impl Reader for TextReader {
    fn name(&self) -> &'static str {
        "text"
    }

    fn accepts(&self, path: &Path) -> bool {
        path.extension().is_none() || has_extension(path, TEXT_EXTENSIONS)
    }

    fn read(&self, _path: &Path, bytes: &[u8]) -> Result<Document, IngestError> {
        text_document(bytes, DocKind::Text)
    }
}

/// Markdown.
pub struct MarkdownReader;

impl Reader for MarkdownReader {
    fn name(&self) -> &'static str {
        "markdown"
    }

    fn accepts(&self, path: &Path) -> bool {
        has_extension(path, MARKDOWN_EXTENSIONS)
    }

    fn read(&self, _path: &Path, bytes: &[u8]) -> Result<Document, IngestError> {
        text_document(bytes, DocKind::Markdown)
    }
}

/// Source code, configuration and data files.
pub struct CodeReader;

impl Reader for CodeReader {
    fn name(&self) -> &'static str {
        "code"
    }

    fn accepts(&self, path: &Path) -> bool {
        has_extension(path, CODE_EXTENSIONS)
            || path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| CODE_FILE_NAMES.contains(&n))
    }

    fn read(&self, _path: &Path, bytes: &[u8]) -> Result<Document, IngestError> {
        text_document(bytes, DocKind::Code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_by_name() {
        let p = Path::new;
        assert!(TextReader.accepts(p("notes.txt")));
        assert!(TextReader.accepts(p("LICENSE")));
        assert!(TextReader.accepts(p("dir.d/README")));
        assert!(TextReader.accepts(p("paper.TEX")));
        assert!(!TextReader.accepts(p("a.md")));
        assert!(!TextReader.accepts(p("a.html")));
        assert!(MarkdownReader.accepts(p("a.md")));
        assert!(MarkdownReader.accepts(p("a.Markdown")));
        assert!(MarkdownReader.accepts(p("a.mdx")));
        assert!(CodeReader.accepts(p("src/lib.rs")));
        assert!(CodeReader.accepts(p("x.tsx")));
        assert!(CodeReader.accepts(p("Cargo.toml")));
        assert!(CodeReader.accepts(p("Dockerfile")));
        assert!(!CodeReader.accepts(p("index.html")));
        assert!(!CodeReader.accepts(p("x.png")));
    }

    #[test]
    fn lossy_utf8_never_fails() {
        let doc =
            TextReader.read(Path::new("x.txt"), b"ok \xC3\x28 \xF0\x9F\x98\x80 \x80end").unwrap();
        assert_eq!(doc.text, "ok \u{FFFD}( \u{1F600} \u{FFFD}end");
        assert_eq!(doc.kind, DocKind::Text);
        let doc = CodeReader.read(Path::new("x.rs"), b"fn main() {}\n").unwrap();
        assert_eq!(doc.kind, DocKind::Code);
        let doc = MarkdownReader.read(Path::new("x.md"), b"# T\n").unwrap();
        assert_eq!(doc.kind, DocKind::Markdown);
    }

    #[test]
    fn binary_detection() {
        let mut bytes = b"\x7fELF".to_vec();
        bytes.extend_from_slice(&[0, 0, 1, 2, 3]);
        assert!(matches!(TextReader.read(Path::new("a.out"), &bytes), Err(IngestError::Binary)));
        assert!(matches!(
            CodeReader.read(Path::new("x.json"), b"{\"a\":\0}"),
            Err(IngestError::Binary)
        ));
        assert!(TextReader.read(Path::new("empty"), b"").unwrap().text.is_empty());
    }
}
