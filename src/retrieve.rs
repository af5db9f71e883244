//! Retrieval: a query (or several) → ranked chunk ids, by dense, lexical or hybrid search
//! over an opened index, with the index's query instruction applied to queries only.

use crate::embed::Embedder;
use crate::error::Result;
use crate::fuse::{self, Fusion};
use crate::index::manifest::LiveSet;
use crate::index::IndexReader;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Hybrid,
    Dense,
    Lexical,
    /// Late interaction (indexes built with a ColBERT model): the hybrid candidates (the
    /// union of the dense and lexical lists, `candidates` from each) ranked by MaxSim over
    /// the chunks' stored token vectors alone. An explicit mode rather than the default: with
    /// no relevance data measured for it yet, the hybrid ranking stays what `hybrid` means.
    Late,
}

/// Dense pseudo-relevance feedback (Rocchio): `q' = q + beta * mean(top docs)`, renormalised.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rocchio {
    pub docs: usize,
    pub beta: f32,
}

/// Lexical pseudo-relevance feedback (RM3): expansion terms from the top BM25 documents.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rm3 {
    pub docs: usize,
    pub terms: usize,
    /// Weight of the original query (Anserini's default 0.5).
    pub original_weight: f32,
}

/// What to do with a query longer than the model's window. Truncation is the default: no query
/// of SciFact or held-out SQuAD is that long, so splitting has not earned its place by measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LongQuery {
    /// The model sees the first window only.
    #[default]
    Truncate,
    /// Split into windows, embed each, and search with their normalised mean.
    Split,
}

#[derive(Clone, Debug)]
pub struct SearchOptions {
    pub k: usize,
    pub mode: Mode,
    pub fusion: Fusion,
    /// Candidates taken from each retriever before fusion.
    pub candidates: usize,
    /// Exact (brute-force) vector search instead of HNSW.
    pub exact: bool,
    pub rocchio: Option<Rocchio>,
    pub rm3: Option<Rm3>,
    pub long_query: LongQuery,
    /// Overrides the index's query instruction for this search (`Some("")`: none).
    pub instruction: Option<String>,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            k: 10,
            mode: Mode::Hybrid,
            fusion: Fusion::default(),
            candidates: 100,
            exact: false,
            rocchio: None,
            rm3: None,
            long_query: LongQuery::default(),
            instruction: None,
        }
    }
}

pub struct Searcher<'a> {
    pub reader: &'a IndexReader,
    pub embedder: &'a Embedder,
    /// Only these chunks are candidates (a filter); `None` means every live chunk.
    pub filter: Option<&'a LiveSet>,
    /// The task instruction put on queries: the index's (`ponder index --instruction`) unless
    /// overridden with [`Searcher::with_instruction`].
    pub instruction: Option<String>,
}

impl<'a> Searcher<'a> {
    pub fn new(reader: &'a IndexReader, embedder: &'a Embedder) -> Self {
        Searcher { reader, embedder, filter: None, instruction: reader.manifest.query_instruction.clone() }
    }

    /// Uses `instruction` on queries instead of the index's (`Some("")`: none).
    pub fn with_instruction(mut self, instruction: Option<&str>) -> Self {
        if let Some(i) = instruction {
            self.instruction = (!i.is_empty()).then(|| i.to_string());
        }
        self
    }

    /// Restricts candidates to `live` (which should be a subset of the reader's live chunks).
    pub fn with_filter(mut self, live: &'a LiveSet) -> Self {
        self.filter = Some(live);
        self
    }

    fn live(&self) -> &LiveSet {
        self.filter.unwrap_or(&self.reader.live)
    }

    /// The text the dense model sees for a query.
    pub fn dense_query(&self, query: &str) -> String {
        self.embedder.config().query_text(self.instruction.as_deref(), query)
    }

    /// The query vector: one window, or the normalised mean of its windows.
    pub fn query_vector(&self, query: &str, long: LongQuery) -> Result<Vec<f32>> {
        let text = self.dense_query(query);
        let tok = self.embedder.tokenizer();
        let window = tok.max_len().saturating_sub(2).max(1);
        let spans = tok.token_spans(&text);
        if long == LongQuery::Truncate || spans.len() <= window {
            return Ok(self.embedder.embed_queries(&[&text])?.remove(0));
        }
        let parts: Vec<&str> = spans
            .chunks(window)
            .map(|w| &text[w[0].0..w[w.len() - 1].1])
            .collect();
        let vecs = self.embedder.embed_queries(&parts)?;
        let mut mean = vec![0f32; vecs[0].len()];
        for v in &vecs {
            for (m, x) in mean.iter_mut().zip(v) {
                *m += x;
            }
        }
        crate::embed::native::l2_normalize(&mut mean);
        Ok(mean)
    }

    fn dense_list(&self, query: &str, n: usize, opts: &SearchOptions) -> Result<Vec<(u64, f32)>> {
        self.dense_from(self.query_vector(query, opts.long_query)?, n, opts)
    }

    /// Dense candidates for the query vector `q` (with Rocchio feedback if asked).
    fn dense_from(&self, mut q: Vec<f32>, n: usize, opts: &SearchOptions) -> Result<Vec<(u64, f32)>> {
        let first = self.reader.dense_in(&q, n, opts.exact, self.live())?;
        let Some(r) = opts.rocchio else { return Ok(first) };
        let mut centroid = vec![0f32; q.len()];
        let mut used = 0;
        for (id, _) in first.iter().take(r.docs) {
            if let Some(mut v) = self.reader.vector(*id)? {
                crate::embed::native::l2_normalize(&mut v);
                centroid.iter_mut().zip(&v).for_each(|(c, x)| *c += x);
                used += 1;
            }
        }
        if used == 0 {
            return Ok(first);
        }
        for (a, c) in q.iter_mut().zip(&centroid) {
            *a += r.beta * c / used as f32;
        }
        crate::embed::native::l2_normalize(&mut q);
        self.reader.dense_in(&q, n, opts.exact, self.live())
    }

    fn lexical_list(&self, query: &str, n: usize, opts: &SearchOptions) -> Result<Vec<(u64, f32)>> {
        let first = self.reader.lexical_in(query, n, self.live())?;
        let Some(r) = opts.rm3 else { return Ok(first) };
        let lex = &self.reader.lexical;
        // P(t | R): term distributions of the feedback documents, weighted by normalised score.
        let top: Vec<(u64, f32)> = first.iter().take(r.docs).copied().collect();
        let total: f32 = top.iter().map(|x| x.1).sum();
        if top.is_empty() || total <= 0.0 {
            return Ok(first);
        }
        let mut expansion: std::collections::HashMap<String, f32> = std::collections::HashMap::new();
        for (id, score) in &top {
            let Some(hit) = self.reader.chunk(*id)? else { continue };
            let terms = lex.analyzer.terms(&crate::index::writer::indexed_text(hit.record.heading.as_deref(), &hit.record.text));
            let len = terms.len().max(1) as f32;
            for t in terms {
                *expansion.entry(t).or_default() += score / total / len;
            }
        }
        let mut exp: Vec<(String, f32)> = expansion.into_iter().collect();
        exp.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        exp.truncate(r.terms);
        let exp_sum: f32 = exp.iter().map(|x| x.1).sum::<f32>().max(1e-9);
        let original = lex.query_terms(query);
        let mut weights: std::collections::HashMap<String, f32> = std::collections::HashMap::new();
        for t in &original {
            *weights.entry(t.clone()).or_default() += r.original_weight / original.len().max(1) as f32;
        }
        for (t, w) in exp {
            *weights.entry(t).or_default() += (1.0 - r.original_weight) * w / exp_sum;
        }
        lex.search_weighted(&weights, n, self.live())
    }

    /// `candidates` ranked by MaxSim between the query's token vectors and each chunk's
    /// stored ones (best first; ties keep the candidates' order). Chunks without stored
    /// tokens keep their order below the others.
    fn late_rerank(&self, q: &crate::embed::colbert::TokenMatrix, candidates: &[(u64, f32)]) -> Result<Vec<(u64, f32)>> {
        use rayon::prelude::*;
        let sims = candidates.par_iter().map(|&(id, _)| self.reader.maxsim(q, id)).collect::<Result<Vec<_>>>()?;
        let mut scored = Vec::with_capacity(candidates.len());
        let mut rest = Vec::new();
        for (&(id, s), m) in candidates.iter().zip(sims) {
            match m {
                Some(m) => scored.push((id, m)),
                None => rest.push((id, s)),
            }
        }
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        let floor = scored.last().map_or(0.0, |x| x.1);
        scored.extend(rest.into_iter().enumerate().map(|(i, (id, _))| (id, floor - 1.0 - i as f32)));
        Ok(scored)
    }

    /// A query's late-interaction token vectors (with the instruction, as dense queries).
    fn query_tokens(&self, query: &str) -> Result<crate::embed::colbert::TokenMatrix> {
        if !self.embedder.is_late_interaction() || !self.reader.has_tokens() {
            return Err(crate::Error::InvalidInput(
                "--mode late needs an index built with a late-interaction (ColBERT) model".into(),
            ));
        }
        let text = self.dense_query(query);
        Ok(self.embedder.embed_tokens(&[&text], true)?.remove(0))
    }

    /// Ranked (chunk id, score) for one or more queries; several queries are fused by RRF.
    pub fn search(&self, queries: &[String], opts: &SearchOptions) -> Result<Vec<(u64, f32)>> {
        self.search_with_signals(queries, opts, None)
    }

    /// [`Searcher::search`], also recording each chunk's best dense and lexical rank and score
    /// across the queries into `signals` (for explanations).
    pub fn search_with_signals(
        &self,
        queries: &[String],
        opts: &SearchOptions,
        mut signals: Option<&mut Signals>,
    ) -> Result<Vec<(u64, f32)>> {
        let n = opts.candidates.max(opts.k);
        let mut per_query = Vec::new();
        for q in queries {
            let list = match opts.mode {
                Mode::Dense => {
                    let d = self.dense_list(q, n, opts)?;
                    if let Some(s) = signals.as_deref_mut() {
                        Signals::record(&mut s.dense, &d);
                    }
                    d
                }
                Mode::Lexical => {
                    let l = self.lexical_list(q, n, opts)?;
                    if let Some(s) = signals.as_deref_mut() {
                        Signals::record(&mut s.lexical, &l);
                    }
                    l
                }
                Mode::Hybrid => {
                    // Side by side (here and in `Late`): the query's embedding and the dense
                    // search keep one core busy while BM25 runs on another.
                    let (d, l) = rayon::join(|| self.dense_list(q, n, opts), || self.lexical_list(q, n, opts));
                    let (d, l) = (d?, l?);
                    if let Some(s) = signals.as_deref_mut() {
                        Signals::record(&mut s.dense, &d);
                        Signals::record(&mut s.lexical, &l);
                    }
                    fuse::fuse(&d, &l, opts.fusion)
                }
                Mode::Late => {
                    // The query's token vectors serve both stages: their mean is the dense
                    // query vector (as a chunk's is its stored one), then MaxSim.
                    let tokens = self.query_tokens(q)?;
                    let (d, l) = rayon::join(|| self.dense_from(tokens.mean_normalized(), n, opts), || self.lexical_list(q, n, opts));
                    let (d, l) = (d?, l?);
                    if let Some(s) = signals.as_deref_mut() {
                        Signals::record(&mut s.dense, &d);
                        Signals::record(&mut s.lexical, &l);
                    }
                    self.late_rerank(&tokens, &fuse::fuse(&d, &l, opts.fusion))?
                }
            };
            per_query.push(list);
        }
        let mut out = if per_query.len() == 1 { per_query.pop().unwrap() } else { fuse::rrf(&per_query, 60.0) };
        out.truncate(opts.k);
        Ok(out)
    }
}

/// The candidate lists behind a ranking: for each chunk a list returned, its best (1-based)
/// rank and that rank's score across the queries.
#[derive(Clone, Debug, Default)]
pub struct Signals {
    pub dense: std::collections::HashMap<u64, (u32, f32)>,
    pub lexical: std::collections::HashMap<u64, (u32, f32)>,
}

impl Signals {
    fn record(into: &mut std::collections::HashMap<u64, (u32, f32)>, list: &[(u64, f32)]) {
        for (i, (id, score)) in list.iter().enumerate() {
            let rank = i as u32 + 1;
            let e = into.entry(*id).or_insert((rank, *score));
            if rank < e.0 {
                *e = (rank, *score);
            }
        }
    }
}
