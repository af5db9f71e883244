//! HTML reader: turns a page into the text a person would read. Tags are dropped; scripts,
//! styles, `<noscript>`, `<template>`, `<svg>` and the `<head>` (except its `<title>`) are
//! dropped with their content; block elements become line breaks, headings become Markdown
//! `#` lines (so the chunker sees the page's sections) and `<pre>` becomes a fenced block (so
//! it is kept whole and its `#` lines are not taken for headings); entities are decoded and
//! whitespace collapsed.
//!
//! Hand-written on purpose: we only need text, and a single forward pass over the bytes is
//! robust to the malformed HTML found on disks (unclosed tags, stray `<`, comments, CDATA).

use std::borrow::Cow;
use std::path::Path;

use super::{decode_text, extension, DocKind, Document, IngestError, Reader};

/// `.html`, `.htm`, `.xhtml`.
pub struct HtmlReader;

impl Reader for HtmlReader {
    fn name(&self) -> &'static str {
        "html"
    }

    fn accepts(&self, path: &Path) -> bool {
        matches!(extension(path).as_deref(), Some("html" | "htm" | "xhtml"))
    }

    fn read(&self, _path: &Path, bytes: &[u8]) -> Result<Document, IngestError> {
        let html = decode_text(bytes)?;
        Ok(Document::new(html_to_text(&html), DocKind::Html))
    }
}

/// Elements dropped together with everything inside them.
const DROPPED: &[&str] = &["script", "style", "noscript", "template", "svg"];

/// Elements that may appear inside `<head>`; any other start tag ends the head.
const HEAD_ELEMENTS: &[&str] =
    &["html", "head", "meta", "link", "base", "title", "style", "script", "noscript", "template"];

/// Elements that separate paragraphs.
#[rustfmt::skip]
const BLOCKS: &[&str] = &[
    "p", "div", "section", "article", "blockquote", "table", "ul", "ol", "dl", "hr", "body",
    "header", "footer", "main", "nav", "aside", "figure", "figcaption", "form", "fieldset",
    "details", "summary", "address", "caption", "thead", "tbody", "tfoot", "menu", "center",
    "h1", "h2", "h3", "h4", "h5", "h6", "pre",
];

/// Elements that start a new line.
const LINES: &[&str] = &["br", "li", "tr", "dt", "dd", "option", "legend"];

/// Elements whose boundaries separate words.
const CELLS: &[&str] = &["td", "th"];

fn heading_level(name: &str) -> Option<usize> {
    match name.as_bytes() {
        [b'h', d @ b'1'..=b'6'] => Some((d - b'0') as usize),
        _ => None,
    }
}

/// Converts HTML to text (see the module documentation for what is kept).
pub fn html_to_text(html: &str) -> String {
    let b = html.as_bytes();
    let mut out = Out::default();
    let mut in_head = false;
    let mut text_start = 0;
    let mut i = 0;
    let last = Last::of(b);
    while i < b.len() {
        let Some(off) = b[i..].iter().position(|&c| c == b'<') else { break };
        i += off;
        // Literal '<' (not followed by anything tag-like) stays part of the text run.
        let next = match classify(b, i, &last) {
            Some(m) => m,
            None => {
                i += 1;
                continue;
            }
        };
        if !in_head {
            out.text(&decode_entities(&html[text_start..i]));
        }
        match next {
            Markup::Comment(end) | Markup::Other(end) => i = end,
            Markup::Cdata(start, end, after) => {
                if !in_head {
                    out.text(&html[start..end]);
                }
                i = after;
            }
            Markup::End { name, end } => {
                i = end;
                end_tag(&mut out, &mut in_head, &name);
            }
            Markup::Start { name, end, self_closing } => {
                i = end;
                if DROPPED.contains(&name.as_str()) {
                    if !self_closing {
                        i = skip_past_close(b, i, &name).unwrap_or(b.len());
                    }
                } else if name == "title" {
                    if let Some(close) = find_close(b, i, "title") {
                        out.paragraph();
                        out.text(&decode_entities(&html[i..close]));
                        out.paragraph();
                        i = skip_past_close(b, i, "title").unwrap_or(b.len());
                    }
                } else {
                    if in_head && !HEAD_ELEMENTS.contains(&name.as_str()) {
                        in_head = false;
                    }
                    if name == "head" {
                        in_head = true;
                    }
                    start_tag(&mut out, &name);
                }
            }
        }
        text_start = i;
    }
    if !in_head && text_start < b.len() {
        out.text(&decode_entities(&html[text_start..]));
    }
    out.finish()
}

/// Positions of the last `>`, `"` and `'`: a search that starts past them fails at once, which
/// keeps the pass linear on text full of unterminated `<tag` or quotes.
struct Last {
    gt: Option<usize>,
    dquote: Option<usize>,
    squote: Option<usize>,
}

impl Last {
    fn of(b: &[u8]) -> Last {
        let last = |c: u8| b.iter().rposition(|&x| x == c);
        Last { gt: last(b'>'), dquote: last(b'"'), squote: last(b'\'') }
    }

    fn has_gt_from(&self, from: usize) -> bool {
        self.gt.is_some_and(|p| p >= from)
    }
}

enum Markup {
    /// `<!-- ... -->`; the index just past it.
    Comment(usize),
    /// `<![CDATA[ ... ]]>`: content start, content end, index past it.
    Cdata(usize, usize, usize),
    /// `<!DOCTYPE ...>`, `<?xml ...?>`: index past it.
    Other(usize),
    Start {
        name: String,
        end: usize,
        self_closing: bool,
    },
    End {
        name: String,
        end: usize,
    },
}

/// What starts at `b[i] == b'<'`, or None when the `<` is just text.
fn classify(b: &[u8], i: usize, last: &Last) -> Option<Markup> {
    let rest = &b[i..];
    if rest.starts_with(b"<!--") {
        let end = find(b, i + 4, b"-->").map_or(b.len(), |p| p + 3);
        return Some(Markup::Comment(end));
    }
    if rest.len() >= 9 && rest[..9].eq_ignore_ascii_case(b"<![CDATA[") {
        let start = i + 9;
        return Some(match find(b, start, b"]]>") {
            Some(p) => Markup::Cdata(start, p, p + 3),
            None => Markup::Cdata(start, b.len(), b.len()),
        });
    }
    if rest.starts_with(b"<!") || rest.starts_with(b"<?") {
        let end = find(b, i + 2, b">").map_or(b.len(), |p| p + 1);
        return Some(Markup::Other(end));
    }
    let (closing, name_at) = if rest.starts_with(b"</") { (true, i + 2) } else { (false, i + 1) };
    if !b.get(name_at).is_some_and(|c| c.is_ascii_alphabetic()) || !last.has_gt_from(name_at) {
        return None;
    }
    let name_end = name_at
        + b[name_at..]
            .iter()
            .position(|&c| !(c.is_ascii_alphanumeric() || c == b'-' || c == b':' || c == b'_'))
            .unwrap_or(b.len() - name_at);
    let name = String::from_utf8_lossy(&b[name_at..name_end]).to_ascii_lowercase();
    if closing {
        let end = find(b, name_end, b">")? + 1;
        return Some(Markup::End { name, end });
    }
    let gt = tag_end(b, name_end, last)?;
    let self_closing = gt > name_end && b[gt - 1] == b'/';
    Some(Markup::Start { name, end: gt + 1, self_closing })
}

/// Index of the `>` ending a start tag whose attributes begin at `from`; quoted attribute values
/// may contain `>`. Falls back to the first `>` when quotes are unbalanced; None without any.
fn tag_end(b: &[u8], from: usize, last: &Last) -> Option<usize> {
    let mut j = from;
    let mut after_eq = false;
    while j < b.len() {
        match b[j] {
            b'>' => return Some(j),
            q @ (b'"' | b'\'') if after_eq => match closing_quote(b, j, q, last) {
                Some(p) => {
                    j += p + 2;
                    after_eq = false;
                    continue;
                }
                None => return find(b, from, b">"),
            },
            b'=' => after_eq = true,
            c if c.is_ascii_whitespace() => {}
            _ => after_eq = false,
        }
        j += 1;
    }
    None
}

fn closing_quote(b: &[u8], open: usize, q: u8, last: &Last) -> Option<usize> {
    let last_q = if q == b'"' { last.dquote } else { last.squote };
    if last_q.is_none_or(|p| p <= open) {
        return None;
    }
    b[open + 1..].iter().position(|&c| c == q)
}

fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    if from >= b.len() {
        return None;
    }
    b[from..].windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

/// Position of the `<` of the first `</name` (any case, followed by a delimiter) at or after
/// `from`.
fn find_close(b: &[u8], from: usize, name: &str) -> Option<usize> {
    let n = name.len();
    let mut j = from;
    while let Some(p) = b[j.min(b.len())..].iter().position(|&c| c == b'<') {
        let k = j + p;
        let after = k + 2 + n;
        if b.len() >= after
            && b[k + 1] == b'/'
            && b[k + 2..after].eq_ignore_ascii_case(name.as_bytes())
            && b.get(after).is_none_or(|&c| c == b'>' || c == b'/' || c.is_ascii_whitespace())
        {
            return Some(k);
        }
        j = k + 1;
    }
    None
}

/// Index just past the `>` of the first `</name ...>` at or after `from`.
fn skip_past_close(b: &[u8], from: usize, name: &str) -> Option<usize> {
    let k = find_close(b, from, name)?;
    Some(find(b, k, b">").map_or(b.len(), |p| p + 1))
}

fn start_tag(out: &mut Out, name: &str) {
    if let Some(level) = heading_level(name) {
        out.start_heading(level);
    } else if name == "pre" {
        out.end_heading();
        out.start_pre();
    } else if BLOCKS.contains(&name) {
        out.end_heading();
        out.paragraph();
    } else if name == "br" {
        out.line_break();
    } else if LINES.contains(&name) {
        out.newline();
    } else if CELLS.contains(&name) {
        out.space();
    }
}

fn end_tag(out: &mut Out, in_head: &mut bool, name: &str) {
    if name == "head" {
        *in_head = false;
    } else if heading_level(name).is_some() {
        out.end_heading();
        out.paragraph();
    } else if name == "pre" {
        out.end_pre();
    } else if BLOCKS.contains(&name) {
        out.paragraph();
    } else if LINES.contains(&name) {
        out.newline();
    } else if CELLS.contains(&name) {
        out.space();
    }
}

/// The text being built: collapses whitespace, keeps at most one blank line between blocks.
#[derive(Default)]
struct Out {
    s: String,
    pending_space: bool,
    /// Start of the current heading line (its `#` prefix), while inside `<hN>`.
    heading: Option<usize>,
    /// Nesting depth of `<pre>`, and where the outermost one's content starts.
    pre_depth: usize,
    pre_start: usize,
}

impl Out {
    fn text(&mut self, t: &str) {
        if self.pre_depth > 0 {
            // Preformatted: keep whitespace, normalise line ends.
            if t.contains('\r') {
                self.s.push_str(&t.replace("\r\n", "\n").replace('\r', "\n"));
            } else {
                self.s.push_str(t);
            }
            return;
        }
        for c in t.chars() {
            if c.is_whitespace() {
                self.pending_space = true;
                continue;
            }
            if self.pending_space {
                if !self.s.is_empty() && !self.s.ends_with(['\n', ' ']) {
                    self.s.push(' ');
                }
                self.pending_space = false;
            }
            self.s.push(c);
        }
    }

    fn space(&mut self) {
        self.pending_space = true;
    }

    fn newline(&mut self) {
        if self.heading.is_some() {
            self.pending_space = true;
            return;
        }
        self.pending_space = false;
        if self.pre_depth == 0 {
            let trimmed = self.s.trim_end_matches([' ', '\t']).len();
            self.s.truncate(trimmed);
        }
        if !self.s.is_empty() && !self.s.ends_with('\n') {
            self.s.push('\n');
        }
    }

    /// `<br>`: ends the line; a second one in a row leaves a blank line (`<br><br>` is how
    /// many pages separate paragraphs).
    fn line_break(&mut self) {
        if self.heading.is_some() {
            self.pending_space = true;
        } else if self.pre_depth > 0 || (self.s.ends_with('\n') && !self.s.ends_with("\n\n")) {
            self.s.push('\n');
        } else {
            self.newline();
        }
    }

    fn paragraph(&mut self) {
        self.newline();
        if self.heading.is_none()
            && self.pre_depth == 0
            && !self.s.is_empty()
            && !self.s.ends_with("\n\n")
        {
            self.s.push('\n');
        }
    }

    fn start_heading(&mut self, level: usize) {
        self.end_heading();
        if self.pre_depth > 0 {
            return;
        }
        self.paragraph();
        let at = self.s.len();
        for _ in 0..level {
            self.s.push('#');
        }
        self.s.push(' ');
        self.pending_space = false;
        self.heading = Some(at);
    }

    fn end_heading(&mut self) {
        if let Some(at) = self.heading.take() {
            if self.s[at..].trim_start_matches('#').trim().is_empty() {
                self.s.truncate(at);
            }
            self.paragraph();
        }
    }

    fn start_pre(&mut self) {
        self.paragraph();
        self.pre_depth += 1;
        if self.pre_depth == 1 {
            self.pre_start = self.s.len();
        }
    }

    fn end_pre(&mut self) {
        if self.pre_depth == 0 {
            self.paragraph();
            return;
        }
        self.pre_depth -= 1;
        if self.pre_depth > 0 {
            return;
        }
        let body = self.s.split_off(self.pre_start);
        // One newline right after <pre> is not content (HTML); leading blank lines are not either.
        let body = body.trim_start_matches('\n').trim_end();
        if !body.is_empty() {
            // A fence longer than any run of backticks inside, so the block stays one block.
            let mut longest = 0;
            let mut run = 0;
            for c in body.chars() {
                run = if c == '`' { run + 1 } else { 0 };
                longest = longest.max(run);
            }
            let fence = "`".repeat((longest + 1).max(3));
            self.s.push_str(&fence);
            self.s.push('\n');
            self.s.push_str(body);
            self.s.push('\n');
            self.s.push_str(&fence);
        }
        self.pending_space = false;
        self.paragraph();
    }

    fn finish(mut self) -> String {
        if self.pre_depth > 0 {
            self.pre_depth = 1;
            self.end_pre();
        }
        self.end_heading();
        let len = self.s.trim_end().len();
        self.s.truncate(len);
        if !self.s.is_empty() {
            self.s.push('\n');
        }
        self.s
    }
}

/// Decodes character references: the common named ones and numeric ones (`&#NNN;`, `&#xHH;`).
/// Unknown or malformed references are left as written.
pub fn decode_entities(s: &str) -> Cow<'_, str> {
    if !s.contains('&') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find('&') {
        out.push_str(&rest[..p]);
        let after = &rest[p + 1..];
        match parse_reference(after) {
            Some((text, used)) => {
                out.push_str(text.as_ref());
                rest = &after[used..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Parses the reference after a `&`: its text and the number of bytes it used.
fn parse_reference(s: &str) -> Option<(Cow<'static, str>, usize)> {
    let b = s.as_bytes();
    if b.first() == Some(&b'#') {
        let (hex, digits_at) = match b.get(1) {
            Some(b'x' | b'X') => (true, 2),
            _ => (false, 1),
        };
        let digits = b[digits_at..]
            .iter()
            .take_while(|c| if hex { c.is_ascii_hexdigit() } else { c.is_ascii_digit() })
            .count();
        if digits == 0 {
            return None;
        }
        let text = &s[digits_at..digits_at + digits];
        let value = if digits > 8 {
            None
        } else {
            u32::from_str_radix(text, if hex { 16 } else { 10 }).ok()
        };
        let mut used = digits_at + digits;
        if b.get(used) == Some(&b';') {
            used += 1;
        }
        let c = value.map_or(char::REPLACEMENT_CHARACTER, numeric_char);
        return Some((Cow::Owned(c.to_string()), used));
    }
    let name_len = b.iter().take(32).take_while(|c| c.is_ascii_alphanumeric()).count();
    if name_len == 0 || b.get(name_len) != Some(&b';') {
        return None;
    }
    let text = named_entity(&s[..name_len])?;
    Some((Cow::Borrowed(text), name_len + 1))
}

/// A numeric reference's character: NUL, surrogates and out-of-range values become U+FFFD, and
/// 0x80–0x9F are read as Windows-1252 (as browsers do).
fn numeric_char(v: u32) -> char {
    const CP1252: [u32; 32] = [
        0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
        0x2039, 0x0152, 0x8D, 0x017D, 0x8F, 0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013,
        0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178,
    ];
    let v = if (0x80..0xA0).contains(&v) { CP1252[(v - 0x80) as usize] } else { v };
    if v == 0 {
        return char::REPLACEMENT_CHARACTER;
    }
    char::from_u32(v).unwrap_or(char::REPLACEMENT_CHARACTER)
}

fn named_entity(name: &str) -> Option<&'static str> {
    Some(match name {
        "amp" | "AMP" => "&",
        "lt" | "LT" => "<",
        "gt" | "GT" => ">",
        "quot" | "QUOT" => "\"",
        "apos" => "'",
        "nbsp" | "ensp" | "emsp" | "thinsp" => " ",
        "shy" | "zwj" | "zwnj" | "lrm" | "rlm" => "",
        "copy" => "©",
        "reg" => "®",
        "trade" => "™",
        "hellip" => "…",
        "mdash" => "—",
        "ndash" => "–",
        "minus" => "−",
        "lsquo" => "‘",
        "rsquo" => "’",
        "sbquo" => "‚",
        "ldquo" => "“",
        "rdquo" => "”",
        "bdquo" => "„",
        "laquo" => "«",
        "raquo" => "»",
        "lsaquo" => "‹",
        "rsaquo" => "›",
        "middot" => "·",
        "bull" => "•",
        "deg" => "°",
        "plusmn" => "±",
        "times" => "×",
        "divide" => "÷",
        "micro" => "µ",
        "para" => "¶",
        "sect" => "§",
        "euro" => "€",
        "pound" => "£",
        "yen" => "¥",
        "cent" => "¢",
        "iexcl" => "¡",
        "iquest" => "¿",
        "frac12" => "½",
        "frac14" => "¼",
        "frac34" => "¾",
        "larr" => "←",
        "rarr" => "→",
        "uarr" => "↑",
        "darr" => "↓",
        "harr" => "↔",
        "rArr" => "⇒",
        "le" => "≤",
        "ge" => "≥",
        "ne" => "≠",
        "asymp" => "≈",
        "infin" => "∞",
        "dagger" => "†",
        "prime" => "′",
        "szlig" => "ß",
        "auml" => "ä",
        "ouml" => "ö",
        "uuml" => "ü",
        "Auml" => "Ä",
        "Ouml" => "Ö",
        "Uuml" => "Ü",
        "eacute" => "é",
        "egrave" => "è",
        "ecirc" => "ê",
        "aacute" => "á",
        "agrave" => "à",
        "acirc" => "â",
        "iacute" => "í",
        "oacute" => "ó",
        "uacute" => "ú",
        "ntilde" => "ñ",
        "ccedil" => "ç",
        "Eacute" => "É",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_tags_scripts_styles_and_head() {
        let html = r#"<!DOCTYPE html>
<html><head>
  <meta charset="utf-8"><title>My &amp; Page</title>
  <style>body { color: red; } p > a { x: "<p>" }</style>
  <script>var s = "<div>not text</div>"; if (a < b) {}</script>
  <link rel="stylesheet" href="x.css">
</head>
<body>
  <noscript>Enable JS</noscript>
  <template><p>hidden template</p></template>
  <svg width="10"><title>icon</title><text>svg text</text></svg>
  <p>Hello,   <b>world</b>!<br>Second   line</p>
  <SCRIPT type="text/javascript">alert("x")</SCRIPT >
  <div>After</div>
</body></html>"#;
        let text = html_to_text(html);
        assert_eq!(text, "My & Page\n\nHello, world!\nSecond line\n\nAfter\n");
    }

    #[test]
    fn headings_lists_and_blank_lines() {
        let html = "<h1>Install</h1><p>intro</p><h2 class=\"x\">On <em>Linux</em></h2>\
                    <ul><li>one</li><li>two</li></ul><p></p><p></p><div><div>deep</div></div>\
                    <h3></h3><hr><table><tr><td>a</td><td>b</td></tr><tr><th>c</th><td>d</td></tr></table>";
        assert_eq!(
            html_to_text(html),
            "# Install\n\nintro\n\n## On Linux\n\none\ntwo\n\ndeep\n\na b\nc d\n"
        );
        // An unclosed heading ends at the next block.
        assert_eq!(html_to_text("<h2>Title<p>body text"), "## Title\n\nbody text\n");
        // <br><br> separates paragraphs.
        assert_eq!(html_to_text("a<br>b<br><br>c<br><br><br>d<br>"), "a\nb\n\nc\n\nd\n");
        // Line breaks inside a heading stay on the heading line.
        assert_eq!(html_to_text("<h3>a<br>b</h3>"), "### a b\n");
    }

    #[test]
    fn entities() {
        assert_eq!(
            decode_entities("&amp; &lt;b&gt; &quot;q&quot; &#39;s&apos; a&nbsp;b &#65;&#x42;&#X43; &#150; &copy;"),
            "& <b> \"q\" 's' a b ABC – ©"
        );
        // Unknown, malformed and unterminated references stay as written.
        assert_eq!(
            decode_entities("AT&T &bogus; & &#; &#xZZ; &amp"),
            "AT&T &bogus; & &#; &#xZZ; &amp"
        );
        assert_eq!(decode_entities("&#0; &#xD800; &#99999999999;"), "\u{FFFD} \u{FFFD} \u{FFFD}");
        assert_eq!(
            html_to_text("<p>1 &lt; 2 &amp;&amp; 3&nbsp;&gt;&nbsp;2</p>"),
            "1 < 2 && 3 > 2\n"
        );
    }

    #[test]
    fn malformed_html() {
        // '<' in text, comments, CDATA, unclosed tags, an unterminated tag at the end.
        let html = "a < b and x<3 <!-- hidden <p>comment</p> --> x<![CDATA[ raw <stuff> ]]>y \
                    <p>unclosed <b>bold <i>both</p> tail <a href='x>y'>link</a> <img src=x";
        assert_eq!(
            html_to_text(html),
            "a < b and x<3 x raw <stuff> y\n\nunclosed bold both\n\ntail link <img src=x\n"
        );
        // Unterminated comment and script swallow the rest but do not panic.
        assert_eq!(html_to_text("before<!-- never closed <p>x"), "before\n");
        assert_eq!(html_to_text("before<script>var x = 1;"), "before\n");
        assert_eq!(html_to_text(""), "");
        assert_eq!(html_to_text("<<<>>>&&&;"), "<<<>>>&&&;\n");
        assert_eq!(html_to_text("</p></div></pre></h1>x"), "x\n");
        // Multi-byte text around markup.
        assert_eq!(
            html_to_text("<p>héllo</p><p>日本語 <b>テキスト</b></p>"),
            "héllo\n\n日本語 テキスト\n"
        );
        // No head/body tags at all, and a body-level tag while still "in the head".
        assert_eq!(html_to_text("<head><title>T</title><p>text"), "T\n\ntext\n");
    }

    #[test]
    fn pre_becomes_a_fenced_block() {
        let html = "<p>Run:</p><pre>\n# install\n$ make  &amp;&amp; make   install\n\n  indented</pre><p>done</p>";
        assert_eq!(
            html_to_text(html),
            "Run:\n\n```\n# install\n$ make  && make   install\n\n  indented\n```\n\ndone\n"
        );
        assert_eq!(html_to_text("<pre>a ``` b</pre>"), "````\na ``` b\n````\n");
        assert_eq!(html_to_text("<pre>   </pre>x"), "x\n");
    }

    #[test]
    fn reader() {
        let r = HtmlReader;
        assert!(r.accepts(Path::new("a/b.HTML")));
        assert!(r.accepts(Path::new("b.htm")));
        assert!(r.accepts(Path::new("b.xhtml")));
        assert!(!r.accepts(Path::new("b.md")));
        let doc = r.read(Path::new("x.html"), b"<h1>T\xFFx</h1>").unwrap();
        assert_eq!(doc, Document::new("# T\u{FFFD}x\n".into(), DocKind::Html));
        assert!(matches!(r.read(Path::new("x.html"), b"<p>\0</p>"), Err(IngestError::Binary)));
    }
}
