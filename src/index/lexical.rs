//! BM25 lexical index: a multilingual analyzer (lowercase, accent folding, CJK character
//! bigrams, a Snowball stemmer and stop words chosen per text from its detected language) and
//! immutable, checksummed postings segments, one per commit, scored together over the live
//! chunks with Lucene's BM25 (defaults k1 = 0.9, b = 0.4 as in Anserini).
//!
//! Documents are analyzed once, in their own language ([`Analyzer::terms`]); English is kept
//! unless detection is reliable on enough words. Queries are too short to detect (whatlang
//! calls "Sauerteigbrot backen" Romanian, and a third of short English queries something
//! else), so [`Lexical::query_terms`] analyzes a query as English and adds its terms in each
//! other language the index's documents were analyzed in (each segment lists them).

use memmap2::Mmap;
use rust_stemmers::{Algorithm, Stemmer};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use super::container;
use super::manifest::LiveSet;
use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"PNDRLEXS";

/// Lucene's English stop words.
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not",
    "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to", "was",
    "will", "with",
];

// Small stop lists of our own (articles, the commonest prepositions and conjunctions), sorted
// by bytes for binary search. Languages without a list keep every word.
const STOP_DE: &[&str] = &[
    "auf", "aus", "bei", "das", "dass", "dem", "den", "der", "des", "die", "ein", "eine", "einem", "einen", "einer",
    "eines", "im", "ist", "mit", "oder", "sich", "sind", "und", "von", "zu", "zum", "zur",
];
const STOP_ES: &[&str] = &[
    "a", "al", "con", "de", "del", "el", "en", "es", "la", "las", "lo", "los", "para", "por", "que", "se", "su",
    "sus", "un", "una", "y",
];
const STOP_FR: &[&str] = &[
    "au", "aux", "ce", "ces", "dans", "de", "des", "du", "en", "est", "et", "il", "la", "le", "les", "ou", "par",
    "pour", "que", "qui", "sur", "un", "une",
];
const STOP_IT: &[&str] =
    &["a", "che", "con", "da", "del", "della", "di", "e", "il", "in", "la", "le", "per", "un", "una"];
const STOP_PT: &[&str] = &[
    "a", "ao", "com", "da", "das", "de", "do", "dos", "e", "em", "na", "no", "o", "os", "para", "por", "que", "um",
    "uma",
];
const STOP_NL: &[&str] = &["de", "een", "en", "het", "in", "is", "met", "op", "te", "van", "voor", "zijn"];

/// Words that mark a text as English: when they make up enough of a text, it is analyzed as
/// English without asking the detector (sorted).
const ENGLISH_MARKERS: &[&str] = &["and", "are", "been", "from", "has", "have", "of", "that", "the", "this", "were", "which", "with"];

/// A document is switched away from English only when it has at least this many words ...
const MIN_DETECT_WORDS: usize = 8;
/// ... (this many for languages without a stop list to confirm the detection) ...
const MIN_DETECT_WORDS_UNCONFIRMED: usize = 16;
/// ... and the detector's confidence is at least this (whatlang calls > 0.9 reliable).
const MIN_CONFIDENCE: f64 = 0.9;
/// The detector reads at most this many bytes of a text.
const DETECT_BYTES: usize = 4096;

/// A language the analyzer stems: its detector code, Snowball algorithm and stop words.
struct LangSpec {
    lang: whatlang::Lang,
    algorithm: Algorithm,
    stop: &'static [&'static str],
}

/// English first: index 0 is the default.
const LANGS: &[LangSpec] = &[
    LangSpec { lang: whatlang::Lang::Eng, algorithm: Algorithm::English, stop: STOP_WORDS },
    LangSpec { lang: whatlang::Lang::Deu, algorithm: Algorithm::German, stop: STOP_DE },
    LangSpec { lang: whatlang::Lang::Spa, algorithm: Algorithm::Spanish, stop: STOP_ES },
    LangSpec { lang: whatlang::Lang::Fra, algorithm: Algorithm::French, stop: STOP_FR },
    LangSpec { lang: whatlang::Lang::Ita, algorithm: Algorithm::Italian, stop: STOP_IT },
    LangSpec { lang: whatlang::Lang::Por, algorithm: Algorithm::Portuguese, stop: STOP_PT },
    LangSpec { lang: whatlang::Lang::Nld, algorithm: Algorithm::Dutch, stop: STOP_NL },
    LangSpec { lang: whatlang::Lang::Swe, algorithm: Algorithm::Swedish, stop: &[] },
    LangSpec { lang: whatlang::Lang::Dan, algorithm: Algorithm::Danish, stop: &[] },
    LangSpec { lang: whatlang::Lang::Nob, algorithm: Algorithm::Norwegian, stop: &[] },
    LangSpec { lang: whatlang::Lang::Fin, algorithm: Algorithm::Finnish, stop: &[] },
    LangSpec { lang: whatlang::Lang::Hun, algorithm: Algorithm::Hungarian, stop: &[] },
    LangSpec { lang: whatlang::Lang::Ron, algorithm: Algorithm::Romanian, stop: &[] },
    LangSpec { lang: whatlang::Lang::Tur, algorithm: Algorithm::Turkish, stop: &[] },
    LangSpec { lang: whatlang::Lang::Rus, algorithm: Algorithm::Russian, stop: &[] },
    LangSpec { lang: whatlang::Lang::Ell, algorithm: Algorithm::Greek, stop: &[] },
];

/// Han ideographs, kana and Hangul: scripts written without spaces between words, indexed as
/// overlapping character bigrams.
pub(crate) fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x1100..=0x11FF      // Hangul Jamo
        | 0x3005 | 0x3007    // 々 〇
        | 0x3040..=0x309F    // Hiragana
        | 0x30A0..=0x30FA | 0x30FC..=0x30FF // Katakana (not the middle dot ・)
        | 0x3130..=0x318F    // Hangul compatibility Jamo
        | 0x31F0..=0x31FF    // Katakana phonetic extensions
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xAC00..=0xD7AF    // Hangul syllables
        | 0xF900..=0xFAFF    // CJK compatibility ideographs
        | 0xFF66..=0xFF9F    // halfwidth Katakana
        | 0x20000..=0x3134F  // CJK extensions B–H and compatibility supplement
    )
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || (!c.is_ascii() && unicode_normalization::char::is_combining_mark(c))
}

/// Latin letters that do not decompose into a base letter and marks.
fn fold_special(c: char) -> Option<&'static str> {
    Some(match c {
        'ß' => "ss",
        'æ' => "ae",
        'œ' => "oe",
        'ø' => "o",
        'đ' | 'ð' => "d",
        'ł' => "l",
        'ı' => "i",
        'þ' => "th",
        _ => return None,
    })
}

/// Folds Latin diacritics (é → e, ü → u, ß → ss) in a lowercased term; other scripts, whose
/// marks carry meaning, are left alone. Marks already decomposed (NFD text) are dropped.
fn fold(term: &mut String) {
    if term.is_ascii() {
        return;
    }
    let mut out = String::with_capacity(term.len());
    for c in term.chars() {
        match c as u32 {
            0x0300..=0x036F => {} // combining diacritical marks
            0x00C0..=0x024F | 0x1E00..=0x1EFF => {
                if let Some(s) = fold_special(c) {
                    out.push_str(s);
                } else {
                    let mut first = true;
                    unicode_normalization::char::decompose_canonical(c, |d| {
                        if first {
                            out.push(d);
                            first = false;
                        }
                    });
                }
            }
            _ => out.push(c),
        }
    }
    *term = out;
}

/// Lowercases a word, mapping fullwidth ASCII (ａｂｃ１２３) to ASCII.
fn lowercase(word: &str) -> String {
    if word.is_ascii() {
        return word.to_ascii_lowercase();
    }
    let mut out = String::with_capacity(word.len());
    for c in word.chars() {
        let c = match c as u32 {
            0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            _ => c,
        };
        out.extend(c.to_lowercase());
    }
    out
}

/// A token before analysis: a word (byte range) or a run of CJK characters (byte range).
#[derive(Clone, Copy)]
enum Token {
    Word(usize, usize),
    Cjk(usize, usize),
}

/// Splits text into words (runs of letters, digits and combining marks) and CJK runs.
fn tokens(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut word: Option<usize> = None;
    let mut cjk: Option<usize> = None;
    for (i, c) in text.char_indices() {
        if is_cjk(c) {
            if let Some(s) = word.take() {
                out.push(Token::Word(s, i));
            }
            cjk.get_or_insert(i);
        } else if is_word_char(c) {
            if let Some(s) = cjk.take() {
                out.push(Token::Cjk(s, i));
            }
            word.get_or_insert(i);
        } else {
            if let Some(s) = word.take() {
                out.push(Token::Word(s, i));
            }
            if let Some(s) = cjk.take() {
                out.push(Token::Cjk(s, i));
            }
        }
    }
    if let Some(s) = word {
        out.push(Token::Word(s, text.len()));
    }
    if let Some(s) = cjk {
        out.push(Token::Cjk(s, text.len()));
    }
    out
}

/// Text → index terms.
pub struct Analyzer {
    /// One stemmer per entry of `LANGS`, created once.
    stemmers: Vec<Stemmer>,
    /// Detector over every language whatlang knows (a language ponder cannot stem counts as no
    /// detection).
    detector: whatlang::Detector,
}

impl Default for Analyzer {
    fn default() -> Self {
        Analyzer {
            stemmers: LANGS.iter().map(|l| Stemmer::create(l.algorithm)).collect(),
            detector: whatlang::Detector::new(),
        }
    }
}

/// The index in `LANGS` of a detected language, if ponder stems it.
fn lang_index(lang: whatlang::Lang) -> Option<usize> {
    LANGS.iter().position(|l| l.lang == lang)
}

/// At most `DETECT_BYTES` of `text`, cut on a char boundary.
fn detect_prefix(text: &str) -> &str {
    if text.len() <= DETECT_BYTES {
        return text;
    }
    let mut end = DETECT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl Analyzer {
    /// Document terms: `text` is analyzed in its detected language (English unless detection
    /// is reliable on a long enough text).
    pub fn terms(&self, text: &str) -> Vec<String> {
        self.document_terms(text).1
    }

    /// A document's language and terms.
    pub fn document_terms(&self, text: &str) -> (whatlang::Lang, Vec<String>) {
        let toks = tokens(text);
        let lang = self.document_language(text, &toks);
        let mut out = Vec::with_capacity(toks.len());
        self.analyze(text, &toks, lang, &mut |t, _, _| out.push(t));
        (LANGS[lang].lang, out)
    }

    /// Document terms with the byte range in `text` each came from (a CJK bigram spans both
    /// characters).
    pub fn terms_with_spans(&self, text: &str) -> Vec<(String, usize, usize)> {
        let toks = tokens(text);
        let lang = self.document_language(text, &toks);
        let mut out = Vec::with_capacity(toks.len());
        self.analyze(text, &toks, lang, &mut |t, s, e| out.push((t, s, e)));
        out
    }

    /// Query terms: the English analysis (repeated words repeated, so that they weigh more),
    /// then each further term of the analysis in each of `languages` (deduplicated).
    pub fn query_terms(&self, query: &str, languages: &[whatlang::Lang]) -> Vec<String> {
        let toks = tokens(query);
        let mut out = Vec::with_capacity(toks.len());
        self.analyze(query, &toks, 0, &mut |t, _, _| out.push(t));
        for lang in languages.iter().filter_map(|l| lang_index(*l)).filter(|&l| l != 0) {
            self.analyze(query, &toks, lang, &mut |t, _, _| {
                if !out.contains(&t) {
                    out.push(t);
                }
            });
        }
        out
    }

    /// The language a document text is analyzed in.
    pub fn language(&self, text: &str) -> whatlang::Lang {
        LANGS[self.document_language(text, &tokens(text))].lang
    }

    /// Index in `LANGS` of a document's language: English unless the detector is confident
    /// on enough words that are not English function words.
    fn document_language(&self, text: &str, toks: &[Token]) -> usize {
        let mut words = 0usize;
        let mut markers = 0usize;
        for t in toks {
            if let Token::Word(s, e) = *t {
                let w = &text[s..e];
                if w.bytes().all(|b| b.is_ascii_digit()) {
                    continue;
                }
                words += 1;
                if w.len() <= 5 && w.is_ascii() && ENGLISH_MARKERS.iter().any(|m| m.eq_ignore_ascii_case(w)) {
                    markers += 1;
                }
            }
        }
        if words < MIN_DETECT_WORDS || (markers >= 2 && markers * 25 >= words) {
            return 0;
        }
        let Some(info) = self.detector.detect(detect_prefix(text)) else { return 0 };
        if info.confidence() < MIN_CONFIDENCE {
            return 0;
        }
        let Some(lang) = lang_index(info.lang()) else { return 0 };
        if lang == 0 {
            return 0;
        }
        let stop = LANGS[lang].stop;
        if stop.is_empty() {
            // Non-Latin scripts (Russian, Greek) cannot be English text misread; Latin-script
            // languages without a stop list to confirm them need a longer text.
            let latin = !matches!(info.script(), whatlang::Script::Cyrillic | whatlang::Script::Greek);
            return if latin && words < MIN_DETECT_WORDS_UNCONFIRMED { 0 } else { lang };
        }
        // Confirm: the language's own function words occur in the text.
        let own = toks
            .iter()
            .filter(|t| match **t {
                Token::Word(s, e) => e - s <= 6 && stop.binary_search(&lowercase(&text[s..e]).as_str()).is_ok(),
                Token::Cjk(..) => false,
            })
            .take(2)
            .count();
        if own >= 2 { lang } else { 0 }
    }

    /// Emits (term, start, end) for each token of `text` analyzed in language `lang`.
    fn analyze(&self, text: &str, toks: &[Token], lang: usize, emit: &mut dyn FnMut(String, usize, usize)) {
        let spec = &LANGS[lang];
        let stemmer = &self.stemmers[lang];
        for t in toks {
            match *t {
                Token::Word(s, e) => {
                    let word = &text[s..e];
                    if word.len() > 64 {
                        continue;
                    }
                    let lower = lowercase(word);
                    if lower == "s" || spec.stop.binary_search(&lower.as_str()).is_ok() {
                        continue;
                    }
                    let mut term = stemmer.stem(&lower).into_owned();
                    fold(&mut term);
                    if !term.is_empty() {
                        emit(term, s, e);
                    }
                }
                Token::Cjk(s, e) => {
                    let run = &text[s..e];
                    let mut chars = run.char_indices().map(|(i, c)| (s + i, c)).peekable();
                    if run.chars().nth(1).is_none() {
                        emit(run.to_string(), s, e);
                        continue;
                    }
                    while let Some((i, c)) = chars.next() {
                        let Some(&(j, d)) = chars.peek() else { break };
                        let mut bigram = String::with_capacity(8);
                        bigram.push(c);
                        bigram.push(d);
                        emit(bigram, i, j + d.len_utf8());
                    }
                }
            }
        }
    }
}

/// BM25 parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bm25 {
    pub k1: f32,
    pub b: f32,
}

impl Default for Bm25 {
    fn default() -> Self {
        Bm25 { k1: 0.9, b: 0.4 }
    }
}

#[derive(Serialize, Deserialize, Default)]
struct SegmentData {
    ids: Vec<u64>,
    lens: Vec<u32>,
    /// Sorted terms.
    terms: Vec<String>,
    /// Start of each term's postings in `postings` (len = terms + 1).
    offsets: Vec<u64>,
    /// Varint pairs: (doc index delta, term frequency).
    postings: Vec<u8>,
    /// Languages other than English that documents were analyzed in (whatlang codes, sorted).
    languages: Vec<String>,
}

fn put_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(bytes: &[u8], pos: &mut usize) -> Option<u32> {
    let mut v = 0u32;
    let mut shift = 0;
    loop {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        v |= ((b & 0x7f) as u32) << shift;
        if b < 0x80 {
            return Some(v);
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
}

/// Builds one segment from (chunk id, text) pairs.
pub fn encode(analyzer: &Analyzer, docs: &[(u64, &str)]) -> Result<Vec<u8>> {
    let mut inverted: HashMap<String, Vec<(u32, u32)>> = HashMap::new();
    let mut data = SegmentData::default();
    let mut languages = std::collections::BTreeSet::new();
    for (idx, (id, text)) in docs.iter().enumerate() {
        let (lang, terms) = analyzer.document_terms(text);
        if lang != whatlang::Lang::Eng {
            languages.insert(lang.code().to_string());
        }
        data.ids.push(*id);
        data.lens.push(terms.len() as u32);
        let mut tf: HashMap<String, u32> = HashMap::new();
        for t in terms {
            *tf.entry(t).or_default() += 1;
        }
        for (t, f) in tf {
            inverted.entry(t).or_default().push((idx as u32, f));
        }
    }
    let mut terms: Vec<(String, Vec<(u32, u32)>)> = inverted.into_iter().collect();
    terms.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (term, mut postings) in terms {
        postings.sort_unstable();
        data.offsets.push(data.postings.len() as u64);
        let mut prev = 0;
        for (doc, f) in postings {
            put_varint(&mut data.postings, doc - prev);
            put_varint(&mut data.postings, f);
            prev = doc;
        }
        data.terms.push(term);
    }
    data.offsets.push(data.postings.len() as u64);
    data.languages = languages.into_iter().collect();
    let payload = postcard::to_allocvec(&data).map_err(|e| Error::Config(format!("lexical segment: {e}")))?;
    Ok(container::seal(MAGIC, &payload))
}

/// An opened, verified BM25 segment.
pub struct LexicalSegment {
    data: SegmentData,
    path: std::path::PathBuf,
}

impl LexicalSegment {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: segment files are immutable once committed.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&map, path)
    }

    /// Opens a segment held in memory (as `encode` returned it); `path` names it in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let payload = container::open(MAGIC, bytes, path)?;
        let data: SegmentData =
            postcard::from_bytes(payload).map_err(|e| Error::corrupt(path, format!("lexical segment: {e}")))?;
        if data.offsets.len() != data.terms.len() + 1 || data.ids.len() != data.lens.len() {
            return Err(Error::corrupt(path, "inconsistent lexical segment"));
        }
        Ok(LexicalSegment { data, path: path.to_path_buf() })
    }

    fn postings(&self, term: &str) -> Result<Vec<(u32, u32)>> {
        let Ok(i) = self.data.terms.binary_search_by(|t| t.as_str().cmp(term)) else {
            return Ok(Vec::new());
        };
        let (a, b) = (self.data.offsets[i] as usize, self.data.offsets[i + 1] as usize);
        let bytes = self.data.postings.get(a..b).ok_or_else(|| Error::corrupt(&self.path, "postings out of range"))?;
        let mut pos = 0;
        let mut doc = 0u32;
        let mut out = Vec::new();
        while pos < bytes.len() {
            let (Some(d), Some(f)) = (get_varint(bytes, &mut pos), get_varint(bytes, &mut pos)) else {
                return Err(Error::corrupt(&self.path, "bad postings varint"));
            };
            doc += d;
            out.push((doc, f));
        }
        Ok(out)
    }
}

/// All BM25 segments of an index, searched together.
#[derive(Default)]
pub struct Lexical {
    pub segments: Vec<std::sync::Arc<LexicalSegment>>,
    pub analyzer: Analyzer,
    pub params: Bm25,
}

impl Lexical {
    /// Top `k` live chunks for `query`: (chunk id, BM25 score), best first.
    pub fn search(&self, query: &str, k: usize, live: &LiveSet) -> Result<Vec<(u64, f32)>> {
        let mut qtf: HashMap<String, f32> = HashMap::new();
        for t in self.query_terms(query) {
            *qtf.entry(t).or_default() += 1.0;
        }
        self.search_weighted(&qtf, k, live)
    }

    /// Top `k` live chunks for analyzed terms with query weights (a term's BM25 contribution
    /// is multiplied by its weight; plain queries weigh each occurrence 1).
    pub fn search_weighted(&self, qtf: &HashMap<String, f32>, k: usize, live: &LiveSet) -> Result<Vec<(u64, f32)>> {
        if qtf.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        // Collection statistics over live chunks.
        let mut n_docs = 0u64;
        let mut total_len = 0u64;
        for s in &self.segments {
            for (id, len) in s.data.ids.iter().zip(&s.data.lens) {
                if live.contains(*id) {
                    n_docs += 1;
                    total_len += *len as u64;
                }
            }
        }
        if n_docs == 0 {
            return Ok(Vec::new());
        }
        let avgdl = total_len as f32 / n_docs as f32;
        let Bm25 { k1, b } = self.params;
        let mut per_term: Vec<(f32, Vec<Vec<(u32, u32)>>)> = Vec::new();
        for (term, &q) in qtf {
            let lists: Vec<Vec<(u32, u32)>> = self
                .segments
                .iter()
                .map(|s| {
                    s.postings(term).map(|p| p.into_iter().filter(|(d, _)| live.contains(s.data.ids[*d as usize])).collect())
                })
                .collect::<Result<_>>()?;
            per_term.push((q, lists));
        }
        let mut scores: HashMap<u64, f32> = HashMap::new();
        for (q, lists) in &per_term {
            let df: usize = lists.iter().map(Vec::len).sum();
            if df == 0 {
                continue;
            }
            let idf = (1.0 + (n_docs as f32 - df as f32 + 0.5) / (df as f32 + 0.5)).ln();
            for (s, list) in self.segments.iter().zip(lists) {
                for &(d, tf) in list {
                    let dl = s.data.lens[d as usize] as f32;
                    let tf = tf as f32;
                    let w = idf * tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * dl / avgdl));
                    *scores.entry(s.data.ids[d as usize]).or_default() += w * *q;
                }
            }
        }
        let mut out: Vec<(u64, f32)> = scores.into_iter().collect();
        out.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out.truncate(k);
        Ok(out)
    }

    /// Languages other than English that the segments' documents were analyzed in.
    pub fn languages(&self) -> Vec<whatlang::Lang> {
        let mut out: Vec<whatlang::Lang> = Vec::new();
        for s in &self.segments {
            for code in &s.data.languages {
                if let Some(l) = whatlang::Lang::from_code(code.as_str()) {
                    if !out.contains(&l) {
                        out.push(l);
                    }
                }
            }
        }
        out
    }

    /// Query terms as searched (for highlighting and RM3): English, plus the query analyzed in
    /// each other language of the index.
    pub fn query_terms(&self, query: &str) -> Vec<String> {
        self.analyzer.query_terms(query, &self.languages())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_words_are_sorted_for_binary_search() {
        assert!(STOP_WORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn analyzer_stems_and_drops_stop_words() {
        let a = Analyzer::default();
        assert_eq!(a.terms("The running dogs aren't in Berlin's parks"), vec!["run", "dog", "aren", "t", "berlin", "park"]);
    }

    #[test]
    fn own_stop_lists_are_sorted_for_binary_search() {
        for l in LANGS {
            assert!(l.stop.windows(2).all(|w| w[0] < w[1]), "{:?}", l.lang);
        }
        assert!(ENGLISH_MARKERS.windows(2).all(|w| w[0] < w[1]));
    }

    /// The analyzer before languages: split on non-alphanumerics, lowercase, Lucene stop words,
    /// English Snowball.
    fn english_only(text: &str) -> Vec<String> {
        let st = Stemmer::create(Algorithm::English);
        text.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty() && w.len() <= 64)
            .map(str::to_lowercase)
            .filter(|w| STOP_WORDS.binary_search(&w.as_str()).is_err() && w != "s")
            .map(|w| st.stem(&w).into_owned())
            .collect()
    }

    const GERMAN: &str = "Die Häuser in der Altstadt sind sehr alt. Das Dach des Hauses wurde im Winter \
        repariert, was viel Geld kostete. Wir wohnen an der Straße neben dem Bäcker, der jeden Morgen \
        frisches Brot backt, und ich will dort bleiben.";
    const SPANISH: &str = "Las canciones populares de este pueblo son muy antiguas. Cada canción cuenta una \
        historia sobre el mar y los pescadores. No hay fiesta sin música en la plaza, y los niños \
        aprenden las letras de memoria.";

    #[test]
    fn english_text_is_analyzed_as_before() {
        let a = Analyzer::default();
        for text in [
            "The running dogs aren't in Berlin's parks",
            "Alterations of the architecture of cerebral white matter in the developing human brain can \
             affect cortical development and result in functional disabilities. A line scan diffusion-weighted \
             magnetic resonance imaging (MRI) sequence with diffusion tensor analysis was applied to measure \
             the apparent diffusion coefficient in 17 preterm infants.",
            "BRCA1 TP53 KRAS EGFR PIK3CA PTEN APC CDKN2A SMAD4 NOTCH1 ARID1A FBXW7",
            "fn main() { let mut v = Vec::new(); v.push(1); println!(\"{:?}\", v); }",
            "Semaglutide reduces HbA1c in type 2 diabetes",
        ] {
            assert_eq!(a.language(text), whatlang::Lang::Eng, "{text}");
            assert_eq!(a.terms(text), english_only(text), "{text}");
            assert_eq!(a.query_terms(text, &[]), english_only(text), "{text}");
        }
    }

    #[test]
    fn cjk_runs_become_overlapping_bigrams() {
        let a = Analyzer::default();
        assert_eq!(a.terms("我爱北京天安门"), vec!["我爱", "爱北", "北京", "京天", "天安", "安门"]);
        // A lone character is a unigram; Latin words around CJK runs stay words.
        assert_eq!(a.terms("Rust语言 is 快!"), vec!["rust", "语言", "快"]);
        // Kana and kanji bigram together; the katakana middle dot separates runs.
        assert_eq!(a.terms("すしを食べる・ラーメン"), vec!["すし", "しを", "を食", "食べ", "べる", "ラー", "ーメ", "メン"]);
        // Hangul.
        assert_eq!(a.terms("한국어"), vec!["한국", "국어"]);
        let spans = a.terms_with_spans("北京");
        assert_eq!(spans, vec![("北京".to_string(), 0, 6)]);
    }

    #[test]
    fn accents_fold() {
        let a = Analyzer::default();
        assert_eq!(a.terms("naïve café Ångström"), a.terms("naive cafe Angstrom"));
        assert_eq!(a.terms("Fuß"), a.terms("fuss"));
        // Decomposed (NFD) input folds to the same terms as composed input.
        assert_eq!(a.terms("cafe\u{301} resume\u{301}"), a.terms("café résumé"));
        // Fullwidth Latin is plain Latin.
        assert_eq!(a.terms("ＰＯＮＤＥＲ"), vec!["ponder"]);
        assert!(a.terms("élan").iter().all(|t| t.is_ascii()));
    }

    #[test]
    fn german_text_gets_the_german_stemmer_and_no_english_stop_words() {
        let a = Analyzer::default();
        assert_eq!(a.language(GERMAN), whatlang::Lang::Deu);
        let terms = a.terms(GERMAN);
        // Häuser and Hauses share the German stem (English Snowball would keep them apart).
        let st = Stemmer::create(Algorithm::German);
        let haus = st.stem("häuser").into_owned().replace('ä', "a");
        assert_eq!(haus, "haus");
        assert_eq!(terms.iter().filter(|t| *t == "haus").count(), 2, "{terms:?}");
        assert_ne!(english_only("Häuser"), english_only("Hauses"));
        // English stop words are German words here and are kept; German articles are dropped.
        for w in ["an", "was", "will", "in"] {
            assert!(terms.iter().any(|t| t == w), "{w} missing from {terms:?}");
        }
        for w in ["die", "der", "und"] {
            assert!(!terms.iter().any(|t| t == w), "{w} kept in {terms:?}");
        }
        // A short German snippet is too short to trust detection: English rules.
        assert_eq!(a.language("Die Häuser"), whatlang::Lang::Eng);
    }

    #[test]
    fn spanish_text_gets_the_spanish_stemmer() {
        let a = Analyzer::default();
        assert_eq!(a.language(SPANISH), whatlang::Lang::Spa);
        let terms = a.terms(SPANISH);
        assert_eq!(terms.iter().filter(|t| *t == "cancion").count(), 2, "{terms:?}");
        assert!(terms.iter().any(|t| t == "no"), "{terms:?}");
        assert!(terms.iter().any(|t| t == "music"), "{terms:?}");
        assert!(!terms.iter().any(|t| t == "los"), "{terms:?}");
    }

    #[test]
    fn queries_add_the_index_languages_to_english() {
        use whatlang::Lang::{Deu, Spa};
        let a = Analyzer::default();
        // English queries: the English analysis, repeated words kept for query term frequency.
        assert_eq!(a.query_terms("dog dog running", &[]), vec!["dog", "dog", "run"]);
        // With German in the index, a German query also gets German stems, which is how the
        // German chunks were indexed.
        let doc = a.terms(GERMAN);
        assert!(doc.iter().any(|t| t == "haus"));
        assert!(!a.query_terms("Häuser Altstadt", &[]).iter().any(|t| t == "haus"));
        let q = a.query_terms("Häuser Altstadt", &[Deu, Spa]);
        assert!(q.iter().any(|t| t == "haus"), "{q:?}");
        let q = a.query_terms("canciones populares", &[Deu, Spa]);
        assert!(q.iter().any(|t| t == "cancion"), "{q:?}");
        // Deduplicated across the analyses.
        let mut dedup = q.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), q.len());
    }

    #[test]
    fn segments_record_their_languages() {
        let a = Analyzer::default();
        let docs = [(1u64, GERMAN), (2, SPANISH), (3, "The dogs were running in the park with their owners.")];
        let seg = LexicalSegment::from_bytes(&encode(&a, &docs).unwrap(), Path::new("mem")).unwrap();
        let lex = Lexical { segments: vec![std::sync::Arc::new(seg)], ..Default::default() };
        let mut langs = lex.languages();
        langs.sort_by_key(|l| l.code());
        assert_eq!(langs, vec![whatlang::Lang::Deu, whatlang::Lang::Spa]);
        // A German query with a plural finds the German document's singular stem, and the
        // Spanish one by its own word.
        let live = LiveSet::new(vec![(1, 4)]);
        assert_eq!(lex.search("Häuser", 3, &live).unwrap()[0].0, 1);
        assert_eq!(lex.search("canción", 3, &live).unwrap()[0].0, 2);
        assert_eq!(lex.search("dog", 3, &live).unwrap()[0].0, 3);
    }

    #[test]
    fn bm25_matches_a_hand_computed_score() {
        let a = Analyzer::default();
        let docs = [(10u64, "apple banana"), (11, "apple apple cherry date"), (12, "cherry")];
        let dir = std::env::temp_dir().join(format!("ponder-lex-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("lex");
        std::fs::write(&p, encode(&a, &docs).unwrap()).unwrap();
        let lex = Lexical { segments: vec![std::sync::Arc::new(LexicalSegment::open(&p).unwrap())], ..Default::default() };
        let live = LiveSet::new(vec![(10, 13)]);
        let res = lex.search("apple", 10, &live).unwrap();
        // N = 3, df = 2, avgdl = 7/3; k1 = 0.9, b = 0.4.
        let idf = (1.0f32 + (3.0 - 2.0 + 0.5) / (2.0 + 0.5)).ln();
        let s = |tf: f32, dl: f32| idf * tf * 1.9 / (tf + 0.9 * (0.6 + 0.4 * dl / (7.0 / 3.0)));
        assert_eq!(res.len(), 2);
        assert_eq!(res[0].0, 11);
        assert!((res[0].1 - s(2.0, 4.0)).abs() < 1e-5);
        assert!((res[1].1 - s(1.0, 2.0)).abs() < 1e-5);
        // Dead chunks neither match nor count in the statistics.
        let live = LiveSet::new(vec![(10, 11)]);
        let res = lex.search("apple cherry", 10, &live).unwrap();
        assert_eq!(res.len(), 1);
        assert_eq!(res[0].0, 10);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
