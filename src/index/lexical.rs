//! BM25 lexical index: an English analyzer (lowercase, stop words, Snowball stemmer) and
//! immutable, checksummed postings segments, one per commit, scored together over the live
//! chunks with Lucene's BM25 (defaults k1 = 0.9, b = 0.4 as in Anserini).

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

/// Text → index terms.
pub struct Analyzer {
    stemmer: Stemmer,
}

impl Default for Analyzer {
    fn default() -> Self {
        Analyzer { stemmer: Stemmer::create(Algorithm::English) }
    }
}

impl Analyzer {
    pub fn terms(&self, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        for word in text.split(|c: char| !c.is_alphanumeric()) {
            if word.is_empty() || word.len() > 64 {
                continue;
            }
            let lower = word.to_lowercase();
            if STOP_WORDS.binary_search(&lower.as_str()).is_ok() || lower == "s" {
                continue;
            }
            out.push(self.stemmer.stem(&lower).into_owned());
        }
        out
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
    for (idx, (id, text)) in docs.iter().enumerate() {
        let terms = analyzer.terms(text);
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
        for t in self.analyzer.terms(query) {
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

    /// Query terms after analysis (for highlighting).
    pub fn query_terms(&self, query: &str) -> Vec<String> {
        self.analyzer.terms(query)
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
