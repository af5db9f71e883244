//! Chunking: cutting a [`Document`](crate::ingest::Document)'s text into pieces the encoder can
//! take whole, along the document's own structure. This module owns block detection (Markdown
//! headings, fenced code, paragraphs, blank-line separated code items), the heading path of each
//! chunk, greedy packing within a token budget, overlap between neighbours, and windowing of
//! blocks too large for one chunk.
//!
//! Token counts come from the caller's tokenizer (`count` gives token byte spans). The whole
//! text is tokenized once; the token count of any byte range is then two binary searches, so
//! chunking is O(n log n) in the document size however it is cut.
//!
//! Guarantees: each chunk's `text` is exactly `doc[start_byte..end_byte]`, starts and ends on
//! non-whitespace, holds at most `max_tokens` tokens by the counter's spans, and every
//! non-whitespace character of the document lies in some chunk.
//!
//! It must not read files, know about models or tokenize more than once per document: text
//! comes from [`ingest`](crate::ingest), token spans from the caller.

use serde::{Deserialize, Serialize};

use crate::ingest::DocKind;

/// Chunk size settings (recorded in the index, so a change can be detected).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkOptions {
    /// Most model tokens in one chunk, special tokens excluded.
    pub max_tokens: usize,
    /// Tokens repeated from the end of a chunk at the start of the next (at most half of
    /// `max_tokens` is used).
    pub overlap_tokens: usize,
}

impl Default for ChunkOptions {
    fn default() -> Self {
        // 256 positions minus [CLS] and [SEP].
        ChunkOptions { max_tokens: 254, overlap_tokens: 32 }
    }
}

/// One piece of a document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// `doc_text[start_byte..end_byte]`.
    pub text: String,
    pub start_byte: usize,
    pub end_byte: usize,
    /// 1-based, inclusive.
    pub start_line: usize,
    pub end_line: usize,
    /// Heading path in effect where the chunk's content starts ("Install > Linux"; a chunk
    /// that opens with heading lines takes the last of them), for Markdown and HTML.
    pub heading: Option<String>,
    /// First and last page (1-based) of a paged document (PDF) the chunk lies on; set by the
    /// caller from [`Document::pages`](crate::ingest::Document::pages), `None` otherwise.
    pub pages: Option<(u32, u32)>,
}

/// Cuts `text` into chunks of at most `opts.max_tokens` tokens, where `count(s)` gives the byte
/// spans of the model tokens of `s` (without special tokens).
pub fn chunk(
    text: &str,
    kind: DocKind,
    opts: &ChunkOptions,
    count: &dyn Fn(&str) -> Vec<(usize, usize)>,
) -> Vec<Chunk> {
    rechunk(text, kind, opts, count(text), &[])
}

/// A chunk of an earlier version of a document: where it started, and its text.
#[derive(Clone, Copy, Debug)]
pub struct Earlier<'a> {
    pub start_byte: usize,
    pub text: &'a str,
}

/// Most bytes an earlier chunk is looked for away from where it is expected.
const SEEK: usize = 64 << 10;

/// Like [`chunk`], given the token spans of the whole text (`count(text)`), for a new version
/// of a document that was chunked before (`earlier`, in order): every earlier chunk whose text
/// is still in the document, in the same order, is kept as it was, and only the text between
/// kept chunks is cut afresh. So an edit changes the chunks it touches and not those after it,
/// which greedy packing alone can shift one after the other; their vectors can then be reused.
///
/// The result satisfies the same guarantees as [`chunk`]'s. Its chunks are those [`chunk`]
/// would give the new text only where nothing was kept. As edits accumulate the kept chunks
/// may be fuller or emptier than fresh ones; when the result has more than an eighth (plus
/// one) more chunks than a fresh cut, the fresh cut is returned instead.
pub fn rechunk(
    text: &str,
    kind: DocKind,
    opts: &ChunkOptions,
    spans: Vec<(usize, usize)>,
    earlier: &[Earlier],
) -> Vec<Chunk> {
    if text.trim().is_empty() {
        return Vec::new();
    }
    let mut packer = Packer::new(text, kind, opts, spans);
    let fresh = packer.pack(packer.blocks.clone(), None);
    let kept = packer.keep(earlier);
    if kept.is_empty() {
        return fresh;
    }
    let mut out = Vec::with_capacity(fresh.len() + 2);
    let mut covered = 0;
    let mut prev = None;
    for &(start, end) in kept.iter().chain([(text.len(), text.len())].iter()) {
        if start > covered {
            let gap = packer.clip_blocks(covered, start);
            if !gap.is_empty() {
                out.extend(packer.pack(gap, prev));
            }
        }
        if start < end {
            out.push(packer.chunk_at(start, end, packer.section_of(start, end)));
            covered = end;
            prev = Some((start, end));
        }
    }
    if out.len() > fresh.len() + 1 + fresh.len() / 8 {
        return fresh;
    }
    out
}

fn floor_boundary(text: &str, mut p: usize) -> usize {
    while !text.is_char_boundary(p) {
        p -= 1;
    }
    p
}

fn ceil_boundary(text: &str, mut p: usize) -> usize {
    while p < text.len() && !text.is_char_boundary(p) {
        p += 1;
    }
    p.min(text.len())
}

/// A run of the document that is kept together when it fits: a heading line, a fenced code
/// block, a paragraph (blank-line separated; for code, a top-level item).
#[derive(Clone, Debug)]
struct Block {
    /// First and one-past-last non-whitespace bytes.
    start: usize,
    end: usize,
    /// Heading level, for heading blocks.
    heading: Option<usize>,
    /// Index into the section list (the heading path in effect).
    section: usize,
    /// Whether the block's first line starts in column 0 (a top-level item, for code).
    top_level: bool,
}

#[derive(Clone, Debug)]
struct Section {
    path: Option<String>,
    /// Where the section's heading starts (0 for the part before any heading).
    start: usize,
}

/// Lines of `text` with their byte offsets (without the `\n`).
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut pos = 0;
    text.split('\n').map(move |l| {
        let at = pos;
        pos += l.len() + 1;
        (at, l)
    })
}

/// Leading spaces (at most 3, as in CommonMark) before a Markdown construct, or None.
fn md_indent(line: &str) -> Option<usize> {
    let n = line.bytes().take_while(|&c| c == b' ').count();
    (n <= 3).then_some(n)
}

/// `#`-style heading: level and title.
fn atx_heading(line: &str) -> Option<(usize, String)> {
    let rest = &line[md_indent(line)?..];
    let level = rest.bytes().take_while(|&c| c == b'#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &rest[level..];
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let mut title = rest.trim();
    // Optional closing sequence: " ##".
    let without = title.trim_end_matches('#');
    if without.is_empty() || without.ends_with([' ', '\t']) {
        title = without.trim_end();
    }
    Some((level, title.to_string()))
}

/// Opening code fence: its character and length.
fn fence_open(line: &str) -> Option<(u8, usize)> {
    let rest = &line[md_indent(line)?..];
    let ch = *rest.as_bytes().first()?;
    if ch != b'`' && ch != b'~' {
        return None;
    }
    let n = rest.bytes().take_while(|&c| c == ch).count();
    if n < 3 || (ch == b'`' && rest[n..].contains('`')) {
        return None;
    }
    Some((ch, n))
}

fn fence_closes(line: &str, ch: u8, n: usize) -> bool {
    let Some(indent) = md_indent(line) else { return false };
    let rest = &line[indent..];
    let run = rest.bytes().take_while(|&c| c == ch).count();
    run >= n && rest[run..].trim().is_empty()
}

/// Setext underline (`===` or `---`, at least three): heading level 1 or 2.
fn setext_level(line: &str) -> Option<usize> {
    let t = line[md_indent(line)?..].trim_end();
    if t.len() >= 3 && t.bytes().all(|c| c == b'=') {
        Some(1)
    } else if t.len() >= 3 && t.bytes().all(|c| c == b'-') {
        Some(2)
    } else {
        None
    }
}

/// Markdown list item (`- x`, `* x`, `+ x`, `1. x`, `1) x`).
fn is_list_item(line: &str) -> bool {
    let Some(indent) = md_indent(line) else { return false };
    let rest = &line.as_bytes()[indent..];
    let marker = match rest.first() {
        Some(b'-' | b'*' | b'+') => 1,
        Some(b'0'..=b'9') => {
            let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
            if digits > 9 || !matches!(rest.get(digits), Some(b'.' | b')')) {
                return false;
            }
            digits + 1
        }
        _ => return false,
    };
    matches!(rest.get(marker), None | Some(b' ' | b'\t'))
}

/// End of the line of a YAML front matter block at the start of a Markdown document.
fn front_matter_end(text: &str) -> Option<usize> {
    let mut it = lines(text);
    let (_, first) = it.next()?;
    if first.trim_end() != "---" {
        return None;
    }
    it.take(500)
        .find(|(_, l)| matches!(l.trim_end(), "---" | "..."))
        .map(|(at, l)| at + l.trim_end().len())
}

fn split_blocks(text: &str, kind: DocKind) -> (Vec<Block>, Vec<Section>) {
    let structured = matches!(kind, DocKind::Markdown | DocKind::Html);
    let mut sections = vec![Section { path: None, start: 0 }];
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut blocks = Vec::new();
    // Open paragraph: start, end, number of lines, top level.
    let mut para: Option<(usize, usize, usize, bool)> = None;
    // Open fence: char, length, start, end so far.
    let mut fence: Option<(u8, usize, usize, usize)> = None;

    let mut skip_to = 0;
    if kind == DocKind::Markdown {
        if let Some(end) = front_matter_end(text) {
            blocks.push(Block { start: 0, end, heading: None, section: 0, top_level: true });
            skip_to = end;
        }
    }

    let flush =
        |para: &mut Option<(usize, usize, usize, bool)>, blocks: &mut Vec<Block>, section| {
            if let Some((start, end, _, top_level)) = para.take() {
                blocks.push(Block { start, end, heading: None, section, top_level });
            }
        };

    for (ls, line) in lines(text) {
        if ls < skip_to {
            continue;
        }
        let trimmed = line.trim();
        let indent = line.len() - line.trim_start().len();
        let content_start = ls + indent;
        let content_end = ls + line.trim_end().len();
        let section = sections.len() - 1;

        if let Some((ch, n, start, end)) = fence.as_mut() {
            if fence_closes(line, *ch, *n) {
                blocks.push(Block {
                    start: *start,
                    end: content_end,
                    heading: None,
                    section,
                    top_level: true,
                });
                fence = None;
            } else if !trimmed.is_empty() {
                *end = content_end;
            }
            continue;
        }
        if trimmed.is_empty() {
            flush(&mut para, &mut blocks, section);
            continue;
        }
        if structured {
            if let Some((ch, n)) = fence_open(line) {
                flush(&mut para, &mut blocks, section);
                fence = Some((ch, n, content_start, content_end));
                continue;
            }
            let heading =
                atx_heading(line).map(|(l, t)| (l, t, content_start)).or_else(|| {
                    match (kind, para, setext_level(line)) {
                        (DocKind::Markdown, Some((ps, pe, 1, _)), Some(level)) => {
                            para = None;
                            Some((level, text[ps..pe].trim().to_string(), ps))
                        }
                        _ => None,
                    }
                });
            if let Some((level, title, start)) = heading {
                flush(&mut para, &mut blocks, section);
                while stack.last().is_some_and(|(l, _)| *l >= level) {
                    stack.pop();
                }
                stack.push((level, title));
                let titles: Vec<&str> =
                    stack.iter().map(|(_, t)| t.as_str()).filter(|t| !t.is_empty()).collect();
                let path = (!titles.is_empty()).then(|| titles.join(" > "));
                sections.push(Section { path, start });
                blocks.push(Block {
                    start,
                    end: content_end,
                    heading: Some(level),
                    section: sections.len() - 1,
                    top_level: true,
                });
                continue;
            }
        }
        // Each list item is a block of its own, so that chunks end between items.
        if kind == DocKind::Markdown && is_list_item(line) {
            flush(&mut para, &mut blocks, section);
        }
        match para.as_mut() {
            Some((_, end, n, _)) => {
                *end = content_end;
                *n += 1;
            }
            None => para = Some((content_start, content_end, 1, indent == 0)),
        }
    }
    let section = sections.len() - 1;
    flush(&mut para, &mut blocks, section);
    if let Some((_, _, start, end)) = fence {
        blocks.push(Block { start, end, heading: None, section, top_level: true });
    }
    (blocks, sections)
}

/// The chunk being filled.
struct Cur {
    start: usize,
    end: usize,
    section: usize,
    first_block: usize,
    /// Whether it holds only heading lines so far.
    heading_only: bool,
}

struct Packer<'a> {
    text: &'a str,
    kind: DocKind,
    max: usize,
    overlap: usize,
    /// Sorted token start offsets (on char boundaries).
    starts: Vec<usize>,
    line_starts: Vec<usize>,
    blocks: Vec<Block>,
    sections: Vec<Section>,
    out: Vec<Chunk>,
    cur: Option<Cur>,
    /// Byte range of the last chunk emitted.
    prev: Option<(usize, usize)>,
}

/// Break quality before a position (see [`Packer::break_rank`]).
const LINE_START: u8 = 3;
const WORD_START: u8 = 1;
const ANYWHERE: u8 = 0;

impl<'a> Packer<'a> {
    fn new(
        text: &'a str,
        kind: DocKind,
        opts: &ChunkOptions,
        spans: Vec<(usize, usize)>,
    ) -> Self {
        let max = opts.max_tokens.max(1);
        let overlap = opts.overlap_tokens.min(max / 2);
        let mut starts: Vec<usize> = spans
            .into_iter()
            .filter(|&(s, _)| s < text.len())
            .map(|(s, _)| floor_boundary(text, s))
            .collect();
        starts.sort_unstable();
        let (blocks, sections) = split_blocks(text, kind);
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Packer {
            text,
            kind,
            max,
            overlap,
            starts,
            line_starts,
            blocks,
            sections,
            out: Vec::new(),
            cur: None,
            prev: None,
        }
    }

    /// Packs `blocks` (in order) into chunks; `prev` is the chunk just before them, which the
    /// first may overlap.
    fn pack(&mut self, blocks: Vec<Block>, prev: Option<(usize, usize)>) -> Vec<Chunk> {
        let all = std::mem::replace(&mut self.blocks, blocks);
        self.prev = prev;
        self.cur = None;
        self.run();
        self.blocks = all;
        std::mem::take(&mut self.out)
    }

    /// Where the `earlier` chunks lie in this text, for those that are still there whole, in
    /// order, within the token budget: each is looked for where the one before it suggests
    /// (same shift), then near there.
    fn keep(&self, earlier: &[Earlier]) -> Vec<(usize, usize)> {
        let text = self.text;
        let mut kept: Vec<(usize, usize)> = Vec::new();
        let mut shift: isize = 0;
        for e in earlier {
            let len = e.text.len();
            if len == 0 || e.text.trim() != e.text {
                continue;
            }
            // After the last kept chunk: starting later, ending later.
            let (lo, min_end) = kept.last().map_or((0, 1), |&(s, e)| (s + 1, e + 1));
            let guess = (e.start_byte as isize + shift).max(0) as usize;
            let at_guess = (guess >= lo && text.get(guess..guess + len) == Some(e.text)).then_some(guess);
            let found = at_guess.or_else(|| {
                let from = ceil_boundary(text, lo.max(guess.saturating_sub(SEEK)));
                let to = floor_boundary(text, (guess.max(from) + len + SEEK).min(text.len()));
                (from < to).then(|| text[from..to].find(e.text).map(|p| from + p)).flatten()
            });
            let Some(at) = found else { continue };
            if at + len < min_end || self.tokens(at, at + len) > self.max {
                continue;
            }
            shift = at as isize - e.start_byte as isize;
            kept.push((at, at + len));
        }
        kept
    }

    /// The blocks of the text, cut to `[a, b)` (whitespace at the cuts dropped).
    fn clip_blocks(&self, a: usize, b: usize) -> Vec<Block> {
        let text = self.text;
        let first = self.blocks.partition_point(|bl| bl.end <= a);
        let mut out = Vec::new();
        for bl in &self.blocks[first..] {
            if bl.start >= b {
                break;
            }
            let mut c = bl.clone();
            if c.start < a {
                c.start = a + (text[a..c.end].len() - text[a..c.end].trim_start().len());
                c.heading = None;
                c.top_level = false;
            }
            if c.end > b {
                c.end = c.start.min(b) + text[c.start.min(b)..b].trim_end().len();
                c.heading = None;
            }
            if c.start < c.end {
                out.push(c);
            }
        }
        out
    }

    /// The section a chunk over `[start, end)` belongs to: that of its first block that is
    /// not a heading, else of its first block.
    fn section_of(&self, start: usize, end: usize) -> usize {
        let first = self.blocks.partition_point(|bl| bl.end <= start);
        let mut inside = self.blocks[first..].iter().take_while(|bl| bl.start < end);
        let head = inside.clone().next().map_or(self.sections.len() - 1, |bl| bl.section);
        inside.find(|bl| bl.heading.is_none()).map_or(head, |bl| bl.section)
    }

    /// Tokens starting before `pos`.
    fn before(&self, pos: usize) -> usize {
        self.starts.partition_point(|&s| s < pos)
    }

    /// Tokens starting in `[a, b)`.
    fn tokens(&self, a: usize, b: usize) -> usize {
        self.before(b).saturating_sub(self.before(a))
    }

    fn run(&mut self) {
        let mut bi = 0;
        while bi < self.blocks.len() {
            bi = self.step(bi);
        }
        self.flush();
    }

    /// Places block `bi`; returns the next block to place.
    fn step(&mut self, bi: usize) -> usize {
        let b = self.blocks[bi].clone();
        let size = self.tokens(b.start, b.end);
        let Some(cur) = self.cur.as_ref() else {
            self.start_chunk(bi);
            return bi + 1;
        };
        let (cs, first, heading_only) = (cur.start, cur.first_block, cur.heading_only);

        // Level 1-2 headings start a chunk (unless the chunk so far is only headings).
        if b.heading.is_some_and(|l| l <= 2) && !heading_only {
            self.flush();
            self.start_chunk(bi);
            return bi + 1;
        }
        // A heading goes with the block after it: into this chunk only if both fit, and into
        // a chunk of its own if that block must be windowed.
        let mut fit_end = b.end;
        if b.heading.is_some() && !heading_only {
            if let Some(next) = self.blocks.get(bi + 1).filter(|n| n.heading.is_none()) {
                if self.tokens(next.start, next.end) > self.max {
                    self.flush();
                    self.start_chunk(bi);
                    return bi + 1;
                }
                fit_end = next.end;
            }
        }
        if self.tokens(cs, fit_end) <= self.max {
            let cur = self.cur.as_mut().unwrap();
            cur.end = b.end;
            if cur.heading_only {
                // The chunk's heading path is that of its first content, not its first heading.
                cur.section = b.section;
                cur.heading_only = b.heading.is_some();
            }
            return bi + 1;
        }
        // Headings followed by a block too large for any chunk: the first window takes them.
        if heading_only && b.heading.is_none() && size > self.max {
            self.cur = None;
            let (start, end) = self.windows(cs, b.end, b.section, b.start);
            self.cur =
                Some(Cur { start, end, section: b.section, first_block: bi, heading_only: false });
            return bi + 1;
        }
        // In code, rather end the chunk before a top-level item than inside one, if that leaves
        // the chunk at least half full.
        if self.kind == DocKind::Code && !b.top_level {
            let back = (first + 1..bi).rev().find(|&k| {
                self.blocks[k].top_level && self.tokens(cs, self.blocks[k].start) >= self.max / 2
            });
            if let Some(k) = back {
                self.cur.as_mut().unwrap().end = self.blocks[k - 1].end;
                self.flush();
                self.start_chunk(k);
                return k + 1;
            }
        }
        self.flush();
        self.start_chunk(bi);
        bi + 1
    }

    /// Starts a chunk at block `bi` (with overlap from the previous chunk when allowed),
    /// windowing the block if it is too large.
    fn start_chunk(&mut self, bi: usize) {
        let b = self.blocks[bi].clone();
        let size = self.tokens(b.start, b.end);
        let mut start = b.start;
        if b.heading.is_none() {
            if let Some((ps, pe)) = self.prev {
                let section_start = self.sections[b.section].start;
                // Only within the section: overlap never crosses a heading.
                if pe > section_start {
                    let budget = if size > self.max {
                        self.overlap
                    } else {
                        self.overlap.min(self.max - size)
                    };
                    let lo = section_start.max(ps + 1);
                    // Code overlaps by whole lines only.
                    let min_rank = if self.kind == DocKind::Code { LINE_START } else { WORD_START };
                    if let Some(p) = self.overlap_point(lo, pe, budget, min_rank) {
                        start = p;
                    }
                }
            }
        }
        let fits = self.tokens(start, b.end) <= self.max;
        let (start, end) =
            if fits { (start, b.end) } else { self.windows(start, b.end, b.section, start) };
        self.cur = Some(Cur {
            start,
            end,
            section: b.section,
            first_block: bi,
            heading_only: fits && b.heading.is_some(),
        });
    }

    fn flush(&mut self) {
        if let Some(cur) = self.cur.take() {
            self.emit(cur.start, cur.end, cur.section);
        }
    }

    fn emit(&mut self, start: usize, end: usize, section: usize) {
        let slice = &self.text[start..end];
        let start = start + (slice.len() - slice.trim_start().len());
        let end = start + self.text[start..end].trim_end().len();
        if start >= end {
            return;
        }
        let c = self.chunk_at(start, end, section);
        self.out.push(c);
        self.prev = Some((start, end));
    }

    /// The chunk `text[start..end]` (trimmed) in `section`.
    fn chunk_at(&self, start: usize, end: usize, section: usize) -> Chunk {
        let line_of = |pos: usize| self.line_starts.partition_point(|&s| s <= pos);
        Chunk {
            text: self.text[start..end].to_string(),
            start_byte: start,
            end_byte: end,
            start_line: line_of(start),
            end_line: line_of(end - 1),
            heading: self.sections[section].path.clone(),
            pages: None,
        }
    }

    /// Splits `[pos, end)` into windows of at most `max` tokens, each cut at the best break in
    /// its last quarter, the next starting up to `overlap` tokens earlier (never before `floor`).
    /// Emits all windows but the last, which is returned (so that following blocks can join it).
    fn windows(
        &mut self,
        mut pos: usize,
        end: usize,
        section: usize,
        floor: usize,
    ) -> (usize, usize) {
        loop {
            let pos_tok = self.before(pos);
            let end_tok = self.before(end);
            if end_tok - pos_tok <= self.max {
                return (pos, end);
            }
            // Cutting before token `c` leaves `c - pos_tok` tokens in the window.
            let hard = pos_tok + self.max;
            let quarter = (pos_tok + self.max - self.max / 4).max(pos_tok + 1);
            let mut cut =
                self.best_break(quarter, hard, true).map_or(self.starts[hard], |(_, p)| p);
            if cut <= pos {
                cut = ceil_boundary(self.text, self.starts[hard].max(pos + 1));
            }
            self.emit(pos, cut, section);
            let next = self.overlap_point(floor.max(pos + 1), cut, self.overlap, ANYWHERE);
            pos = next.filter(|&p| p > pos).unwrap_or(cut);
        }
    }

    /// Earliest good start in `[lo, hi)` such that at most `budget` tokens lie between it and
    /// `hi`: a line start if there is one, else a sentence start, else a word start, else (if
    /// `min_rank` allows) any token.
    fn overlap_point(&self, lo: usize, hi: usize, budget: usize, min_rank: u8) -> Option<usize> {
        if budget == 0 || lo >= hi {
            return None;
        }
        let hi_tok = self.before(hi);
        let first = hi_tok.saturating_sub(budget).max(self.before(lo));
        if first >= hi_tok {
            return None;
        }
        let (rank, p) = self.best_break(first, hi_tok - 1, false)?;
        (rank >= min_rank && p >= lo && p < hi).then_some(p)
    }

    /// Rank and position of the token in `first..=last` that is the best place to break: the
    /// highest rank, and of those the last when `prefer_last`, else the first.
    fn best_break(&self, first: usize, last: usize, prefer_last: bool) -> Option<(u8, usize)> {
        let last = last.min(self.starts.len().checked_sub(1)?);
        let mut best: Option<(u8, usize)> = None;
        for t in first..=last {
            let pos = self.starts[t];
            let rank = self.break_rank(pos);
            let better = match best {
                None => true,
                Some((r, _)) => rank > r || (prefer_last && rank == r),
            };
            if better {
                best = Some((rank, pos));
            }
            if rank == LINE_START && !prefer_last {
                break;
            }
        }
        best
    }

    /// How good a break lies just before `pos`: 3 after a line break, 2 after a sentence end,
    /// 1 after other whitespace, 0 inside a word.
    fn break_rank(&self, pos: usize) -> u8 {
        let before = &self.text[..pos];
        let word = before.trim_end();
        let gap = &before[word.len()..];
        if word.is_empty() || gap.contains('\n') {
            return LINE_START;
        }
        if matches!(word.chars().next_back(), Some('。' | '！' | '？')) {
            return 2;
        }
        if gap.is_empty() {
            return ANYWHERE;
        }
        let word = word.trim_end_matches(['"', '\'', ')', ']', '”', '’']);
        if matches!(word.chars().next_back(), Some('.' | '!' | '?' | ':' | ';')) {
            2
        } else {
            WORD_START
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// One token per whitespace-separated word.
    fn words(s: &str) -> Vec<(usize, usize)> {
        let mut spans = Vec::new();
        let mut start = None;
        for (i, c) in s.char_indices() {
            if c.is_whitespace() {
                if let Some(st) = start.take() {
                    spans.push((st, i));
                }
            } else if start.is_none() {
                start = Some(i);
            }
        }
        if let Some(st) = start {
            spans.push((st, s.len()));
        }
        spans
    }

    /// One token per non-whitespace character.
    fn chars(s: &str) -> Vec<(usize, usize)> {
        s.char_indices()
            .filter(|(_, c)| !c.is_whitespace())
            .map(|(i, c)| (i, i + c.len_utf8()))
            .collect()
    }

    fn opts(max: usize, overlap: usize) -> ChunkOptions {
        ChunkOptions { max_tokens: max, overlap_tokens: overlap }
    }

    /// Checks the invariants every chunking must satisfy.
    fn check(
        doc: &str,
        chunks: &[Chunk],
        o: &ChunkOptions,
        count: &dyn Fn(&str) -> Vec<(usize, usize)>,
    ) {
        let newlines: Vec<usize> = doc.match_indices('\n').map(|(i, _)| i).collect();
        let line = |pos: usize| 1 + newlines.partition_point(|&n| n < pos);
        let mut covered = vec![false; doc.len() + 1];
        let mut prev: Option<&Chunk> = None;
        for c in chunks {
            assert!(c.start_byte < c.end_byte);
            assert_eq!(c.text, doc[c.start_byte..c.end_byte]);
            assert_eq!(c.text.trim(), c.text, "chunk has surrounding whitespace");
            let n = count(&c.text).len();
            assert!(
                n <= o.max_tokens.max(1),
                "chunk of {n} tokens > {}: {:?}",
                o.max_tokens,
                c.text
            );
            assert_eq!(c.start_line, line(c.start_byte));
            assert_eq!(c.end_line, line(c.end_byte - 1));
            if let Some(p) = prev {
                assert!(c.start_byte > p.start_byte, "chunks must advance");
                assert!(c.end_byte > p.end_byte, "chunks must advance");
            }
            for b in &mut covered[c.start_byte..c.end_byte] {
                *b = true;
            }
            prev = Some(c);
        }
        for (i, ch) in doc.char_indices() {
            assert!(ch.is_whitespace() || covered[i], "byte {i} ({ch:?}) not covered");
        }
    }

    /// Deterministic pseudo-random text.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn sentence(&mut self, words: usize) -> String {
            const W: &[&str] = &[
                "alpha", "beta", "gamma", "delta", "search", "index", "vector", "naïve", "日本",
                "café",
            ];
            let mut s = String::new();
            for i in 0..words {
                if i > 0 {
                    s.push(' ');
                }
                s.push_str(W[(self.next() % W.len() as u64) as usize]);
            }
            s.push('.');
            s
        }
        /// `n` words from a vocabulary of 5,000, ending in a full stop.
        fn words(&mut self, n: usize) -> String {
            let w: Vec<String> = (0..n.max(1)).map(|_| format!("w{}", self.next() % 5000)).collect();
            format!("{}.", w.join(" "))
        }
        fn paragraph(&mut self, words: usize) -> String {
            let mut p = String::new();
            let mut left = words;
            while left > 0 {
                let n = (3 + self.next() % 12).min(left as u64) as usize;
                if !p.is_empty() {
                    p.push(if self.next().is_multiple_of(4) { '\n' } else { ' ' });
                }
                p.push_str(&self.sentence(n));
                left -= n;
            }
            p
        }
    }

    /// Heading lines of a generated Markdown document (ATX, outside fences): offset and level.
    fn heading_lines(doc: &str) -> Vec<(usize, usize, String)> {
        let mut out = Vec::new();
        let mut in_fence = false;
        for (at, line) in lines(doc) {
            if line.starts_with("```") {
                in_fence = !in_fence;
            } else if !in_fence && line.starts_with('#') {
                let level = line.bytes().take_while(|&c| c == b'#').count();
                out.push((at, level, line[level..].trim().to_string()));
            }
        }
        out
    }

    /// Heading path in effect at `pos`, computed independently.
    fn expected_heading(headings: &[(usize, usize, String)], pos: usize) -> Option<String> {
        let mut stack: Vec<(usize, &str)> = Vec::new();
        for (at, level, title) in headings.iter().take_while(|h| h.0 <= pos) {
            let _ = at;
            stack.retain(|(l, _)| l < level);
            stack.push((*level, title));
        }
        let titles: Vec<&str> = stack.iter().map(|(_, t)| *t).collect();
        (!titles.is_empty()).then(|| titles.join(" > "))
    }

    fn generated_markdown() -> String {
        let mut r = Rng(42);
        let mut doc = String::from("Preamble before any heading.\n\n");
        for s in 0..6 {
            doc.push_str(&format!("# Part {s}\n\n"));
            for sub in 0..3 {
                doc.push_str(&format!("## Section {s}.{sub}\n\n"));
                for p in 0..(1 + r.next() % 5) {
                    let len = [5, 20, 40, 70, 150, 400][(r.next() % 6) as usize];
                    doc.push_str(&r.paragraph(len));
                    doc.push_str("\n\n");
                    if p == 1 {
                        doc.push_str(&format!("### Detail {s}.{sub}.{p}\n\n"));
                        doc.push_str("- item one\n- item two\n  continued\n\n");
                    }
                }
                if sub == 1 {
                    doc.push_str("```sh\n# not a heading\nmake install\n\n\nmake test\n```\n\n");
                }
            }
        }
        doc.push_str("Closing words.\n");
        doc
    }

    #[test]
    fn markdown_invariants_headings_and_overlap() {
        let doc = generated_markdown();
        let headings = heading_lines(&doc);
        for o in [opts(64, 12), opts(254, 32), opts(30, 0), opts(8, 2), opts(1, 0), opts(3, 40)] {
            let chunks = chunk(&doc, DocKind::Markdown, &o, &words);
            check(&doc, &chunks, &o, &words);
            for c in &chunks {
                // The heading path of a chunk is the one in effect at its first content line
                // (or its last line, when it holds only heading lines).
                let mut pos = c.start_byte;
                for (at, line) in lines(&c.text) {
                    let here = c.start_byte + at;
                    if !line.trim().is_empty() {
                        pos = here;
                        if !headings.iter().any(|h| h.0 == here) {
                            break;
                        }
                    }
                }
                assert_eq!(c.heading, expected_heading(&headings, pos), "{o:?} {c:?}");
            }
            // A level-1/2 heading is never preceded by content in its chunk.
            for (at, level, _) in &headings {
                if *level <= 2 {
                    let c =
                        chunks.iter().find(|c| c.start_byte <= *at && *at < c.end_byte).unwrap();
                    let before = &doc[c.start_byte..*at];
                    assert!(
                        lines(before).all(|(off, l)| l.trim().is_empty()
                            || headings.iter().any(|h| h.0 == c.start_byte + off)),
                        "{o:?}: content before a level-{level} heading in {:?}",
                        c.text
                    );
                }
            }
            let overlap = o.overlap_tokens.min(o.max_tokens / 2);
            if overlap > 0 {
                let overlapping =
                    chunks.windows(2).filter(|w| w[1].start_byte < w[0].end_byte).count();
                assert!(overlapping > 0, "no overlap with {o:?}");
                for w in chunks.windows(2) {
                    if w[1].start_byte < w[0].end_byte {
                        // Overlap never crosses a heading and stays within its budget.
                        let inside =
                            headings.iter().any(|h| w[1].start_byte < h.0 && h.0 < w[0].end_byte);
                        assert!(
                            !inside,
                            "{o:?}: overlap crosses a heading: {:?}",
                            &doc[w[1].start_byte..w[0].end_byte]
                        );
                        assert!(words(&doc[w[1].start_byte..w[0].end_byte]).len() <= overlap);
                    }
                }
            } else {
                assert!(chunks.windows(2).all(|w| w[1].start_byte >= w[0].end_byte));
            }
        }
        let chunks = chunk(&doc, DocKind::Markdown, &opts(64, 12), &words);
        assert_eq!(chunks[0].heading, None);
        assert!(chunks
            .iter()
            .any(|c| c.heading.as_deref().is_some_and(|h| h.contains(" > Detail "))));
        // With the default budget, no chunk is a bare heading.
        let chunks = chunk(&doc, DocKind::Markdown, &ChunkOptions::default(), &words);
        assert!(chunks
            .iter()
            .all(|c| !headings.iter().any(|h| h.0 == c.start_byte) || c.text.contains("\n\n")));
    }

    #[test]
    fn code_fences_kept_whole() {
        let fence = format!(
            "```rust\n{}```",
            (0..40).map(|i| format!("let x{i} = {i};\n")).collect::<String>()
        );
        let doc = format!(
            "# Title\n\n{}\n\n{fence}\n\n{}\n\n~~~\n# inside tilde fence\n~~~\n",
            Rng(1).paragraph(60),
            Rng(2).paragraph(60)
        );
        let o = opts(200, 20);
        let chunks = chunk(&doc, DocKind::Markdown, &o, &words);
        check(&doc, &chunks, &o, &words);
        assert!(chunks.iter().any(|c| c.text.contains(&fence)), "fence split: {chunks:#?}");
        assert!(chunks.iter().all(|c| c.heading.as_deref() == Some("Title")), "{chunks:#?}");
        // A fence larger than the budget is windowed like any other block; its windows end
        // at line ends.
        let o = opts(50, 10);
        let chunks = chunk(&doc, DocKind::Markdown, &o, &words);
        check(&doc, &chunks, &o, &words);
        for c in chunks.iter().filter(|c| c.text.contains("let x2")) {
            assert!(doc[c.end_byte..].starts_with('\n'), "{:?}", c.text);
        }
    }

    #[test]
    fn one_megabyte_single_line() {
        let mut doc = String::new();
        let mut i = 0;
        while doc.len() < 1 << 20 {
            doc.push_str(&format!("word{i} "));
            if i % 17 == 0 {
                doc.push_str("end. ");
            }
            i += 1;
        }
        let o = ChunkOptions::default();
        let t = Instant::now();
        let chunks = chunk(&doc, DocKind::Text, &o, &words);
        let took = t.elapsed();
        assert!(took.as_millis() < 1000, "took {took:?}");
        check(&doc, &chunks, &o, &words);
        assert!(chunks.len() > 300, "{}", chunks.len());
        assert!(chunks.iter().all(|c| c.start_line == 1 && c.end_line == 1 && c.heading.is_none()));
        // Windows overlap and prefer sentence ends.
        assert!(chunks.windows(2).all(|w| w[1].start_byte < w[0].end_byte));
        let sentence_cuts = chunks.iter().filter(|c| c.text.ends_with('.')).count();
        assert!(sentence_cuts > chunks.len() * 9 / 10, "{sentence_cuts} of {}", chunks.len());
        // No whitespace at all, one token per character: cuts stay on char boundaries.
        let cjk = "日本語のテキストです。".repeat(100_000);
        let t = Instant::now();
        let chunks = chunk(&cjk, DocKind::Text, &o, &chars);
        let took = t.elapsed();
        assert!(took.as_millis() < 1000, "took {took:?}");
        check(&cjk, &chunks, &o, &chars);
        assert!(chunks.iter().filter(|c| c.text.ends_with('。')).count() > chunks.len() * 9 / 10);
    }

    #[test]
    fn empty_and_whitespace() {
        let o = ChunkOptions::default();
        assert!(chunk("", DocKind::Text, &o, &words).is_empty());
        assert!(chunk(" \n\t\n  \r\n", DocKind::Markdown, &o, &words).is_empty());
        let c = chunk("\n\n  hello world  \n\n", DocKind::Text, &o, &words);
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0].text.as_str(), c[0].start_byte, c[0].start_line, c[0].end_line),
            ("hello world", 4, 3, 3)
        );
        // A counter that finds no tokens at all still yields covering chunks.
        let c = chunk("a b\n\nc", DocKind::Text, &o, &|_| Vec::new());
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].text, "a b\n\nc");
        // CRLF line ends.
        let c = chunk("one\r\n\r\ntwo\r\n", DocKind::Text, &opts(1, 0), &words);
        let got: Vec<(&str, usize)> = c.iter().map(|c| (c.text.as_str(), c.start_line)).collect();
        assert_eq!(got, [("one", 1), ("two", 3)]);
    }

    #[test]
    fn code_documents() {
        let mut doc = String::new();
        for f in 0..30 {
            doc.push_str(&format!(
                "# comment for f{f}\ndef f{f}(x):\n    y = x + {f}\n\n    return y * 2 + x - 1\n\n"
            ));
        }
        for o in [opts(35, 5), opts(35, 0)] {
            let chunks = chunk(&doc, DocKind::Code, &o, &words);
            check(&doc, &chunks, &o, &words);
            for c in &chunks {
                assert!(c.heading.is_none());
                // Chunks end after a whole function, and start at a top-level item or at a
                // whole overlapping line.
                assert!(c.text.ends_with("- 1"), "{:?}", c.text);
                assert!(
                    c.text.starts_with("# comment") || c.text.starts_with("return"),
                    "{:?}",
                    c.text
                );
            }
            if o.overlap_tokens == 0 {
                assert!(chunks.iter().all(|c| c.text.starts_with("# comment")));
            }
        }
    }

    #[test]
    fn setext_headings_front_matter_and_html() {
        let doc = "---\ntitle: x\n---\n\nIntro\n=====\n\nText one.\n\nUsage\n-----\n\nText two.\n";
        let chunks = chunk(doc, DocKind::Markdown, &ChunkOptions::default(), &words);
        let got: Vec<(&str, Option<&str>)> =
            chunks.iter().map(|c| (c.text.as_str(), c.heading.as_deref())).collect();
        assert_eq!(
            got,
            [
                ("---\ntitle: x\n---", None),
                ("Intro\n=====\n\nText one.", Some("Intro")),
                ("Usage\n-----\n\nText two.", Some("Intro > Usage")),
            ]
        );
        // Plain text has no headings.
        let chunks = chunk("# not\n\ntext", DocKind::Text, &ChunkOptions::default(), &words);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].heading, None);
        // HTML after conversion: headings become the path; '#' in <pre> is not a heading.
        let text = crate::ingest::html::html_to_text(
            "<h1>Guide</h1><p>Hello</p><h2>Install</h2><h3>Linux</h3><p>apt</p><pre># root\nrun</pre>",
        );
        let chunks = chunk(&text, DocKind::Html, &ChunkOptions::default(), &words);
        let got: Vec<Option<&str>> = chunks.iter().map(|c| c.heading.as_deref()).collect();
        assert_eq!(got, [Some("Guide"), Some("Guide > Install > Linux")]);
        assert!(chunks[1].text.starts_with("## Install\n\n### Linux"));
        assert!(chunks[1].text.ends_with("# root\nrun\n```"));
    }

    /// The model's own tokenizer: chunks re-tokenized on their own stay within the budget,
    /// and spans are byte offsets (multi-byte text, accents, CJK).
    #[test]
    fn with_the_model_tokenizer() {
        let weights = crate::model::ModelWeights::embedded_default().unwrap();
        let tok =
            crate::embed::tokenize::TextTokenizer::from_json(&weights.tokenizer_json, 256).unwrap();
        let text = "Naïve café: 日本語 tokenization!";
        let pieces: String = tok.token_spans(text).iter().map(|&(a, b)| &text[a..b]).collect();
        assert_eq!(pieces, "Naïvecafé:日本語tokenization!");
        let count = |s: &str| tok.token_spans(s);
        let doc = format!("{}\n\n{}", generated_markdown(), "word ".repeat(5000));
        let o = ChunkOptions::default();
        let t = Instant::now();
        let chunks = chunk(&doc, DocKind::Markdown, &o, &count);
        assert!(t.elapsed().as_secs() < 5);
        check(&doc, &chunks, &o, &count);
        // The encoder sees every chunk whole: [CLS] + chunk + [SEP] fits the model.
        for c in &chunks {
            assert!(tok.count_tokens(&c.text).unwrap() <= 256);
        }
        // Spans of a long text (encoded in segments) agree with one encoding of the whole.
        let long = format!("{doc}\n{}", "Lorem ipsum, dolor sit amet. ".repeat(6_000));
        assert!(long.len() > 4 * 32 * 1024);
        assert_eq!(tok.token_spans(&long).len() + 2, tok.count_tokens(&long).unwrap());
        // The writer's reading thread encodes the segments itself, with the same result.
        assert_eq!(tok.token_spans_here(&long), tok.token_spans(&long));
    }

    #[test]
    fn block_syntax() {
        assert_eq!(atx_heading("## Install ##"), Some((2, "Install".into())));
        assert_eq!(atx_heading("   # C#"), Some((1, "C#".into())));
        assert_eq!(atx_heading("#"), Some((1, "".into())));
        assert_eq!(atx_heading("#hashtag"), None);
        assert_eq!(atx_heading("    # code"), None);
        assert_eq!(atx_heading("####### seven"), None);
        assert_eq!(fence_open("```rust"), Some((b'`', 3)));
        assert_eq!(fence_open("~~~~"), Some((b'~', 4)));
        assert_eq!(fence_open("``` a ` b"), None);
        assert!(fence_closes("````", b'`', 3));
        assert!(!fence_closes("``", b'`', 3));
        assert_eq!(setext_level("==="), Some(1));
        assert_eq!(setext_level("---  "), Some(2));
        assert_eq!(setext_level("- x"), None);
        assert!(
            is_list_item("- x")
                && is_list_item("  * x")
                && is_list_item("12. x")
                && is_list_item("3)")
        );
        assert!(
            !is_list_item("-x")
                && !is_list_item("---")
                && !is_list_item("1.5 x")
                && !is_list_item("    - x")
        );
    }

    #[test]
    fn markdown_list_items_are_blocks() {
        let mut doc = String::from("Intro line.\n");
        let mut r = Rng(7);
        for i in 0..20 {
            doc.push_str(&format!("- item {i} {}\n", r.sentence(8)));
            if i % 3 == 0 {
                doc.push_str("  continued line of the item\n");
            }
        }
        let o = opts(35, 0);
        let chunks = chunk(&doc, DocKind::Markdown, &o, &words);
        check(&doc, &chunks, &o, &words);
        assert!(chunks.len() > 3);
        assert!(chunks[1..].iter().all(|c| c.text.starts_with("- item")), "{chunks:#?}");
        let at_item_end =
            |c: &Chunk| doc[c.end_byte..].starts_with("\n- ") || c.end_byte == doc.trim_end().len();
        assert!(chunks.iter().all(at_item_end), "{chunks:#?}");
    }

    /// Editing one paragraph of a long document of plain paragraphs changes few chunks: greedy
    /// packing falls back onto the old boundaries soon after the edit, which is what lets
    /// re-indexing reuse the vectors of the other chunks. (Documents of many one-line blocks,
    /// or paragraphs windowed because they exceed a chunk, can cascade further.)
    #[test]
    fn an_edit_changes_few_chunks() {
        let mut r = Rng(11);
        let paras: Vec<String> = (0..400)
            .map(|_| {
                let n = 15 + (r.next() % 110) as usize;
                r.paragraph(n)
            })
            .collect();
        let o = ChunkOptions::default();
        let doc = paras.join("\n\n");
        let before = chunk(&doc, DocKind::Text, &o, &words);
        check(&doc, &before, &o, &words);
        let old: std::collections::HashSet<&str> = before.iter().map(|c| c.text.as_str()).collect();
        let mut changed = Vec::new();
        for at in (20..380).step_by(23) {
            for add in [true, false] {
                let mut p = paras.clone();
                if add {
                    p[at].push_str(" An added sentence of several words.");
                } else {
                    p[at] = match p[at].find(". ") {
                        Some(i) => p[at][i + 2..].to_string(),
                        None => "Shortened.".to_string(),
                    };
                }
                let edited = p.join("\n\n");
                let after = chunk(&edited, DocKind::Text, &o, &words);
                check(&edited, &after, &o, &words);
                changed.push(after.iter().filter(|c| !old.contains(c.text.as_str())).count());
            }
        }
        eprintln!("changed chunks per edit: {changed:?} of {}", before.len());
        assert!(changed.iter().all(|&n| n <= 3), "{changed:?}");
    }

    use std::collections::HashSet;

    /// A manual-like document: sections of one-line blocks (list items, short code lines,
    /// captions), ordinary paragraphs, and now and then a paragraph longer than a chunk.
    fn manual(r: &mut Rng, sections: usize) -> Vec<String> {
        let mut blocks = Vec::new();
        for s in 0..sections {
            blocks.push(format!("## Section {s} {}", r.words(3)));
            for _ in 0..(4 + r.next() % 12) {
                let long = r.next() % 40 == 0;
                let n = match r.next() % 3 {
                    _ if long => 300 + r.next() % 400,
                    0 => 30 + r.next() % 90,
                    _ => 3 + r.next() % 12,
                };
                let b = r.words(n as usize);
                blocks.push(if n < 16 && r.next() % 2 == 0 { format!("- {b}") } else { b });
            }
        }
        blocks
    }

    /// Chunks of `after` that `before` did not have.
    fn changed(before: &[Chunk], after: &[Chunk]) -> usize {
        let old: HashSet<&str> = before.iter().map(|c| c.text.as_str()).collect();
        after.iter().filter(|c| !old.contains(c.text.as_str())).count()
    }

    fn earlier(chunks: &[Chunk]) -> Vec<Earlier<'_>> {
        chunks.iter().map(|c| Earlier { start_byte: c.start_byte, text: &c.text }).collect()
    }

    /// One-paragraph edits of manual-like documents. Cut afresh, an edit often shifts the
    /// boundaries of many chunks after it (greedy packing cascades through runs of short
    /// blocks); cut with the earlier chunks kept, it changes at most 3.
    #[test]
    fn an_edit_changes_at_most_three_chunks_when_the_earlier_ones_are_kept() {
        let o = ChunkOptions::default();
        let mut worst_fresh = 0;
        let mut edits = 0;
        for (seed, kind) in [(1, DocKind::Markdown), (2, DocKind::Text), (3, DocKind::Markdown)] {
            let mut r = Rng(seed);
            let blocks = manual(&mut r, 60);
            let doc = blocks.join("\n\n");
            let before = chunk(&doc, kind, &o, &words);
            check(&doc, &before, &o, &words);
            assert_eq!(rechunk(&doc, kind, &o, words(&doc), &earlier(&before)), before, "an unchanged text keeps its chunks");
            for at in (1..blocks.len()).step_by(7) {
                for how in 0..4 {
                    let mut b = blocks.clone();
                    match how {
                        0 => b[at].push_str(" and an added clause of several more words"),
                        1 => b[at] = b[at].split_once(' ').map_or("x".into(), |(_, rest)| rest.to_string()),
                        2 => {
                            let n = 5 + (r.next() % 40) as usize;
                            b.insert(at, r.words(n));
                        }
                        _ => {
                            b.remove(at);
                        }
                    }
                    let edited = b.join("\n\n");
                    let fresh = chunk(&edited, kind, &o, &words);
                    let kept = rechunk(&edited, kind, &o, words(&edited), &earlier(&before));
                    check(&edited, &kept, &o, &words);
                    let n = changed(&before, &kept);
                    assert!(n <= 3, "{kind:?} edit {how} of block {at}: {n} chunks changed");
                    worst_fresh = worst_fresh.max(changed(&before, &fresh));
                    edits += 1;
                }
            }
        }
        eprintln!("{edits} edits; worst cut afresh: {worst_fresh} chunks changed");
        assert!(worst_fresh > 3, "these documents should make greedy packing cascade");
    }

    /// Random edits anywhere (inside words, across blocks, on headings, text duplicated
    /// elsewhere), one after the other, each cut from the chunks of the one before: the
    /// guarantees of [`chunk`] hold every time, also with windows cut inside long blocks.
    #[test]
    fn rechunking_after_random_edits_keeps_every_guarantee() {
        for (seed, kind, max, counter) in [
            (5u64, DocKind::Markdown, 254, words as fn(&str) -> Vec<(usize, usize)>),
            (6, DocKind::Text, 40, words),
            (7, DocKind::Code, 30, chars),
            (8, DocKind::Markdown, 25, chars),
        ] {
            let o = opts(max, max / 6);
            let mut r = Rng(seed);
            let mut doc = manual(&mut r, 8).join("\n\n");
            let mut cur = chunk(&doc, kind, &o, &counter);
            for step in 0..60 {
                let cut = |p: usize, d: &str| floor_boundary(d, p.min(d.len()));
                let a = cut((r.next() as usize) % (doc.len() + 1), &doc);
                let b = cut(a + (r.next() as usize) % 200, &doc);
                let insert = match r.next() % 5 {
                    0 => String::new(),
                    1 => format!("\n\n# Heading {step}\n\n"),
                    2 => cur.get(step % cur.len().max(1)).map_or(String::new(), |c| c.text.clone()),
                    3 => r.words(3),
                    _ => format!("\n\n{}\n\n", r.words(80)),
                };
                doc = format!("{}{}{}", &doc[..a], insert, &doc[b..]);
                let next = rechunk(&doc, kind, &o, counter(&doc), &earlier(&cur));
                check(&doc, &next, &o, &counter);
                let fresh = chunk(&doc, kind, &o, &counter);
                assert!(next.len() <= fresh.len() + 1 + fresh.len() / 8);
                cur = next;
            }
        }
    }

    /// Measures single-paragraph edits of real documents (`PONDER_EDIT_DOCS`, paths joined by
    /// `:`), with the default model's tokenizer: how many chunks each edit changes when cut
    /// afresh and when the earlier chunks are kept, and how many chunks a long run of edits
    /// leaves against a fresh cut. Run with `--ignored --nocapture`.
    #[test]
    #[ignore]
    fn edits_of_real_documents() {
        let Ok(paths) = std::env::var("PONDER_EDIT_DOCS") else { return };
        let weights = crate::model::ModelWeights::embedded_default().unwrap();
        let tok = crate::embed::tokenize::TextTokenizer::from_json(&weights.tokenizer_json, 256).unwrap();
        let count = |s: &str| tok.token_spans(s);
        let o = ChunkOptions::default();
        for path in paths.split(':') {
            let doc = crate::ingest::read_file(std::path::Path::new(path), 1 << 30).unwrap();
            let text = doc.text;
            let before = chunk(&text, doc.kind, &o, &count);
            // Paragraph ends: a non-blank line followed by a blank one (not a code fence's
            // closing line, which the added words would turn into text).
            let last_line = |i: usize| text[..i].rsplit('\n').next().unwrap_or("").trim_start();
            let ends: Vec<usize> = text
                .match_indices("\n\n")
                .map(|(i, _)| i)
                .filter(|&i| i > 0 && !text[..i].ends_with('\n') && !["```", "~~~"].iter().any(|f| last_line(i).starts_with(f)))
                .collect();
            let step = (ends.len() / 100).max(1);
            let (mut fresh_n, mut kept_n) = (Vec::new(), Vec::new());
            for &at in ends.iter().step_by(step) {
                let edited = format!("{} and then some added words here.{}", &text[..at], &text[at..]);
                let spans = count(&edited);
                let fresh = rechunk(&edited, doc.kind, &o, spans.clone(), &[]);
                let kept = rechunk(&edited, doc.kind, &o, spans, &earlier(&before));
                check(&edited, &kept, &o, &count);
                fresh_n.push(changed(&before, &fresh));
                kept_n.push(changed(&before, &kept));
            }
            let over = |v: &[usize]| v.iter().filter(|&&n| n > 3).count();
            // A hundred edits one after the other, each cut from the chunks of the last.
            let (mut cur_text, mut cur) = (text.clone(), before.clone());
            for (k, &at) in ends.iter().step_by(step).enumerate().take(100) {
                let at = floor_boundary(&cur_text, (at + 40 * k).min(cur_text.len()));
                cur_text = format!("{} more words {k}.{}", &cur_text[..at], &cur_text[at..]);
                cur = rechunk(&cur_text, doc.kind, &o, count(&cur_text), &earlier(&cur));
            }
            let fresh_end = chunk(&cur_text, doc.kind, &o, &count).len();
            eprintln!(
                "{path}: {} chunks, {} edits; afresh: {} over 3 chunks, max {}, mean {:.2}; kept: {} over 3, max {}, mean {:.2}; after 100 edits {} chunks kept vs {} afresh",
                before.len(),
                fresh_n.len(),
                over(&fresh_n),
                fresh_n.iter().max().unwrap_or(&0),
                fresh_n.iter().sum::<usize>() as f64 / fresh_n.len().max(1) as f64,
                over(&kept_n),
                kept_n.iter().max().unwrap_or(&0),
                kept_n.iter().sum::<usize>() as f64 / kept_n.len().max(1) as f64,
                cur.len(),
                fresh_end
            );
        }
    }
}
