//! PDF reader: the text layer of a PDF via the `pdf-extract` crate, normalised for chunking
//! (no form feeds, no trailing spaces, at most one blank line in a row). The parser can panic
//! on unusual files; a panic or an error becomes [`IngestError::Unreadable`] and the panic
//! message is not printed. A PDF without a text layer (a scan) yields an empty document.

use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Once;

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
        match quietly(|| pdf_extract::extract_text_from_mem(bytes)) {
            Ok(Ok(text)) => Ok(Document::new(normalise(&text), DocKind::Pdf)),
            Ok(Err(e)) => Err(IngestError::Unreadable(format!("PDF: {e}"))),
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown error".to_string());
                Err(IngestError::Unreadable(format!("PDF parser failed: {msg}")))
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-page PDF showing `lines` in Helvetica, with a correct cross-reference table.
    fn tiny_pdf(lines: &[&str]) -> Vec<u8> {
        let mut content = String::from("BT /F1 12 Tf 72 720 Td 14 TL\n");
        for l in lines {
            content.push_str(&format!("({l}) Tj T*\n"));
        }
        content.push_str("ET");
        let objects = [
            "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
            "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R \
             /Resources << /Font << /F1 5 0 R >> >> >>"
                .to_string(),
            format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()),
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
                .to_string(),
        ];
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
            assert!(matches!(r, Ok(_) | Err(IngestError::Unreadable(_))));
        }
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
