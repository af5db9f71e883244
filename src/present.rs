//! Presentation: turning ranked chunks into results a person (or an agent) reads —
//! path, score, line range, and a snippet with the query's terms highlighted.

use serde::Serialize;

pub mod collapse;

use crate::index::lexical::Analyzer;

#[derive(Clone, Debug, Serialize)]
pub struct Hit {
    pub path: String,
    pub score: f32,
    pub start_line: u32,
    pub end_line: u32,
    pub heading: Option<String>,
    pub text: String,
    /// Byte ranges in `text` that match query terms.
    pub highlights: Vec<(usize, usize)>,
    pub chunk_id: u64,
    /// First page of the chunk in a paged document (PDF), 1-based.
    pub page: Option<u32>,
    /// Last page of the chunk in a paged document (PDF).
    pub page_end: Option<u32>,
    /// Other files holding the same (or nearly the same) text, collapsed into this hit.
    pub also_in: Vec<String>,
    /// Why the hit ranks where it does (`--explain`); flattened into the hit's JSON.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub explain: Option<Explain>,
}

impl Hit {
    /// Where a hit in a paged document (PDF) is cited: `p. 7` or `pp. 7–8`.
    pub fn page_label(&self) -> Option<String> {
        match (self.page, self.page_end) {
            (Some(a), Some(b)) if b > a => Some(format!("pp. {a}\u{2013}{b}")),
            (Some(a), _) => Some(format!("p. {a}")),
            _ => None,
        }
    }
}

/// Each signal behind a hit: the dense and lexical lists' scores and 1-based ranks (`None`
/// where that list did not return the chunk), the fused retriever score, and the cross-encoder
/// score when the search was reranked.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Explain {
    pub dense_score: Option<f32>,
    pub dense_rank: Option<u32>,
    pub lexical_score: Option<f32>,
    pub lexical_rank: Option<u32>,
    pub fused_score: Option<f32>,
    pub rerank_score: Option<f32>,
}

/// Byte ranges of words (and CJK bigrams) in `text` whose analyzed form is one of `terms`,
/// sorted, overlapping ranges merged. `text` is analyzed as a document, in its own language.
pub fn matches(text: &str, terms: &[String], analyzer: &Analyzer) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    if terms.is_empty() {
        return out;
    }
    for (t, s, e) in analyzer.terms_with_spans(text) {
        if !terms.contains(&t) {
            continue;
        }
        // Spans come in text order; consecutive CJK bigrams overlap by a character.
        match out.last_mut() {
            Some(last) if s < last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// A window of about `width` bytes of `text` holding the most highlights, on char boundaries,
/// with highlight ranges relative to the window.
pub fn snippet(text: &str, highlights: &[(usize, usize)], width: usize) -> (String, Vec<(usize, usize)>) {
    let text_trim = text.trim_end();
    if text_trim.len() <= width {
        return (text_trim.to_string(), highlights.iter().copied().filter(|h| h.1 <= text_trim.len()).collect());
    }
    let mut best = (0usize, 0usize);
    for (i, h) in highlights.iter().enumerate() {
        let n = highlights[i..].iter().take_while(|x| x.1 <= h.0 + width).count();
        if n > best.1 {
            best = (h.0.saturating_sub(width / 6), n);
        }
    }
    let floor = |mut i: usize| {
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let mut start = floor(best.0.min(text.len()));
    // Start on a word: skip a partial word when a space is close.
    if start > 0 {
        let first_hit = highlights.iter().map(|h| h.0).find(|&h| h >= start).unwrap_or(text.len());
        if let Some(sp) = text[start..first_hit.min(start + 40).min(text.len())].find(char::is_whitespace) {
            start += sp + text[start + sp..].chars().next().map_or(1, char::len_utf8);
        }
    }
    let end = floor((start + width).min(text.len()));
    let hs = highlights.iter().filter(|h| h.0 >= start && h.1 <= end).map(|h| (h.0 - start, h.1 - start)).collect();
    (text[start..end].to_string(), hs)
}

/// Renders a snippet with highlights wrapped in `open`/`close`, whitespace collapsed.
pub fn render(snippet: &str, highlights: &[(usize, usize)], open: &str, close: &str) -> String {
    let mut out = String::new();
    let mut at = 0;
    for &(s, e) in highlights {
        out.push_str(&snippet[at..s]);
        out.push_str(open);
        out.push_str(&snippet[s..e]);
        out.push_str(close);
        at = e;
    }
    out.push_str(&snippet[at..]);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highlights_stemmed_matches() {
        let a = Analyzer::default();
        let terms = a.terms("running dogs");
        let text = "The dog ran. Dogs were running; a runner watched.";
        let m = matches(text, &terms, &a);
        let words: Vec<&str> = m.iter().map(|&(s, e)| &text[s..e]).collect();
        assert_eq!(words, vec!["dog", "Dogs", "running"]);
        let (snip, hs) = snippet(text, &m, 1000);
        assert_eq!(render(&snip, &hs, "[", "]"), "The [dog] ran. [Dogs] were [running]; a runner watched.");
    }

    #[test]
    fn highlights_cjk_bigrams_and_accented_words() {
        let a = Analyzer::default();
        // Chinese: the query's bigrams 东京 and 京都 overlap in the text and merge into one range.
        let text = "我住在东京都，喜欢寿司。";
        let m = matches(text, &a.query_terms("东京都", &[]), &a);
        let words: Vec<&str> = m.iter().map(|&(s, e)| &text[s..e]).collect();
        assert_eq!(words, vec!["东京都"]);
        // Japanese: a lone kana word and a katakana run.
        let text = "今日はラーメンを食べた";
        let m = matches(text, &a.query_terms("ラーメン", &[]), &a);
        let words: Vec<&str> = m.iter().map(|&(s, e)| &text[s..e]).collect();
        assert_eq!(words, vec!["ラーメン"]);
        // Accents fold both ways: a query without them finds the accented word.
        let text = "Un café crème, s'il vous plaît.";
        let m = matches(text, &a.query_terms("cafe creme", &[]), &a);
        let words: Vec<&str> = m.iter().map(|&(s, e)| &text[s..e]).collect();
        assert_eq!(words, vec!["café", "crème"]);
    }

    #[test]
    fn snippet_window_is_on_char_boundaries() {
        let text = "é".repeat(300) + " target " + &"ü".repeat(300);
        let a = Analyzer::default();
        let m = matches(&text, &a.terms("target"), &a);
        let (s, hs) = snippet(&text, &m, 100);
        assert!(s.len() <= 100);
        assert_eq!(hs.len(), 1);
        assert_eq!(&s[hs[0].0..hs[0].1], "target");
    }
}
