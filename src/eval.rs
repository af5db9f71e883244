//! Evaluation: loading BEIR and BRIGHT collections, building (or reusing) an index of the
//! corpus, running every query, and trec_eval-style metrics (nDCG@10 with graded relevance
//! and log2 discount, Recall@100, MRR@10).

use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};

use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::index::manifest::LiveSet;
use crate::index::{IndexOptions, IndexReader, Indexer, Manifest, ModelStamp, Progress, VectorKind};
use crate::rerank::Reranker;
use crate::retrieve::{SearchOptions, Searcher};

/// A test collection.
#[derive(Default)]
pub struct Collection {
    pub name: String,
    /// (doc id, text) — BEIR text is `title + " " + text`.
    pub docs: Vec<(String, String)>,
    /// (query id, text), only queries with judgements.
    pub queries: Vec<(String, String)>,
    pub qrels: HashMap<String, HashMap<String, i32>>,
    /// Documents that must not count for a query (BRIGHT's `excluded_ids`).
    pub excluded: HashMap<String, HashSet<String>>,
}

fn jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line)
                .map_err(|e| Error::corrupt(path, format!("line {}: {e}", i + 1)))?,
        );
    }
    Ok(out)
}

#[derive(Deserialize)]
struct BeirDoc {
    #[serde(rename = "_id")]
    id: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    text: String,
}

#[derive(Deserialize)]
struct BeirQuery {
    #[serde(rename = "_id")]
    id: String,
    text: String,
}

#[derive(Deserialize)]
struct BrightDoc {
    id: String,
    content: String,
}

#[derive(Deserialize)]
struct BrightExample {
    #[serde(default)]
    id: Option<serde_json::Value>,
    query: String,
    gold_ids: Vec<String>,
    #[serde(default)]
    excluded_ids: Vec<String>,
}

impl Collection {
    /// Loads a BEIR (`corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`) or BRIGHT
    /// (`documents.jsonl`, `examples.jsonl`) directory, detected from its files.
    pub fn load(dir: &Path, split: &str) -> Result<Self> {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if dir.join("corpus.jsonl").exists() {
            Self::load_beir(dir, split, name)
        } else if dir.join("documents.jsonl").exists() && dir.join("examples.jsonl").exists() {
            Self::load_bright(dir, name)
        } else {
            Err(Error::InvalidInput(format!(
                "{} is neither BEIR (corpus.jsonl, queries.jsonl, qrels/) nor BRIGHT (documents.jsonl, examples.jsonl)",
                dir.display()
            )))
        }
    }

    fn load_beir(dir: &Path, split: &str, name: String) -> Result<Self> {
        let docs: Vec<BeirDoc> = jsonl(&dir.join("corpus.jsonl"))?;
        let queries: Vec<BeirQuery> = jsonl(&dir.join("queries.jsonl"))?;
        let qpath = dir.join("qrels").join(format!("{split}.tsv"));
        let text = std::fs::read_to_string(&qpath).map_err(|e| Error::io(&qpath, e))?;
        let mut qrels: HashMap<String, HashMap<String, i32>> = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let f: Vec<&str> = line.split('\t').collect();
            if i == 0 && f.first().is_some_and(|h| h.contains("query")) {
                continue; // header
            }
            if f.len() < 3 {
                continue;
            }
            let rel: i32 = f[2].trim().parse().map_err(|_| Error::corrupt(&qpath, format!("line {}: bad score", i + 1)))?;
            qrels.entry(f[0].to_string()).or_default().insert(f[1].to_string(), rel);
        }
        let docs = docs
            .into_iter()
            .map(|d| {
                let text = if d.title.is_empty() { d.text } else { format!("{} {}", d.title, d.text) };
                (d.id, text)
            })
            .collect();
        let queries = queries.into_iter().filter(|q| qrels.contains_key(&q.id)).map(|q| (q.id, q.text)).collect();
        Ok(Collection { name, docs, queries, qrels, excluded: HashMap::new() })
    }

    fn load_bright(dir: &Path, name: String) -> Result<Self> {
        let docs: Vec<BrightDoc> = jsonl(&dir.join("documents.jsonl"))?;
        let examples: Vec<BrightExample> = jsonl(&dir.join("examples.jsonl"))?;
        let mut c = Collection { name, docs: docs.into_iter().map(|d| (d.id, d.content)).collect(), ..Default::default() };
        for (i, ex) in examples.into_iter().enumerate() {
            let qid = match ex.id {
                Some(serde_json::Value::String(s)) => s,
                Some(v) => v.to_string(),
                None => i.to_string(),
            };
            c.qrels.insert(qid.clone(), ex.gold_ids.into_iter().map(|g| (g, 1)).collect());
            c.excluded.insert(qid.clone(), ex.excluded_ids.into_iter().collect());
            c.queries.push((qid, ex.query));
        }
        Ok(c)
    }

    /// A short key identifying the collection's content (for index reuse).
    pub fn fingerprint(&self) -> String {
        let mut h = crc32fast::Hasher::new();
        for (id, text) in &self.docs {
            h.update(id.as_bytes());
            h.update(text.as_bytes());
        }
        format!("{:08x}-{}", h.finalize(), self.docs.len())
    }
}

/// Metrics averaged over queries (each in [0, 1]).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Metrics {
    pub ndcg10: f64,
    pub recall100: f64,
    pub mrr10: f64,
    pub queries: usize,
}

/// nDCG@k with linear gains (trec_eval `ndcg_cut`): DCG = sum rel_i / log2(i + 1).
pub fn ndcg_at(ranked: &[&str], rels: &HashMap<String, i32>, k: usize) -> f64 {
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, d)| rels.get(*d).copied().unwrap_or(0).max(0) as f64 / ((i + 2) as f64).log2())
        .sum();
    let mut ideal: Vec<i32> = rels.values().copied().filter(|&r| r > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal.iter().take(k).enumerate().map(|(i, &r)| r as f64 / ((i + 2) as f64).log2()).sum();
    if idcg > 0.0 {
        dcg / idcg
    } else {
        0.0
    }
}

pub fn recall_at(ranked: &[&str], rels: &HashMap<String, i32>, k: usize) -> f64 {
    let relevant = rels.values().filter(|&&r| r > 0).count();
    if relevant == 0 {
        return 0.0;
    }
    let found = ranked.iter().take(k).filter(|d| rels.get(**d).is_some_and(|&r| r > 0)).count();
    found as f64 / relevant as f64
}

pub fn mrr_at(ranked: &[&str], rels: &HashMap<String, i32>, k: usize) -> f64 {
    ranked
        .iter()
        .take(k)
        .position(|d| rels.get(*d).is_some_and(|&r| r > 0))
        .map_or(0.0, |p| 1.0 / (p + 1) as f64)
}

/// The value at fraction `p` (0 to 1) of `sorted` (ascending), nearest rank; 0 when empty. For
/// the latency figures of the benchmarks.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Scores a run (query id → ranked doc ids) against the collection's judgements
/// (nDCG@10, Recall@100, MRR@10).
pub fn evaluate(c: &Collection, run: &HashMap<String, Vec<String>>) -> Metrics {
    evaluate_at(c, run, 10)
}

/// As [`evaluate`], with nDCG and MRR cut at `k` (the fields keep their names).
pub fn evaluate_at(c: &Collection, run: &HashMap<String, Vec<String>>, k: usize) -> Metrics {
    let mut m = Metrics::default();
    for (qid, _) in &c.queries {
        let Some(rels) = c.qrels.get(qid) else { continue };
        if !rels.values().any(|&r| r > 0) {
            continue;
        }
        let excluded = c.excluded.get(qid);
        let ranked: Vec<&str> = run
            .get(qid)
            .map(|r| r.iter().map(String::as_str).filter(|d| excluded.is_none_or(|e| !e.contains(*d))).collect())
            .unwrap_or_default();
        m.ndcg10 += ndcg_at(&ranked, rels, k);
        m.recall100 += recall_at(&ranked, rels, 100);
        m.mrr10 += mrr_at(&ranked, rels, k);
        m.queries += 1;
    }
    if m.queries > 0 {
        let n = m.queries as f64;
        m.ndcg10 /= n;
        m.recall100 /= n;
        m.mrr10 /= n;
    }
    m
}

/// An evaluation index of a collection's corpus (one chunk per document), cached by
/// collection, model, precision and vector kind.
pub struct EvalIndex {
    pub dir: PathBuf,
    /// Whether a cached index was reused.
    pub reused: bool,
    /// Seconds spent building it (0 when reused).
    pub index_s: f64,
}

/// Builds (or reuses) the evaluation index of `c` under `cache` (default: [`default_cache_dir`]).
/// `on` hears (docs done, docs total, docs/s) while it builds.
pub fn eval_index(
    c: &Collection,
    embedder: &Embedder,
    stamp: ModelStamp,
    vectors: VectorKind,
    cache: Option<PathBuf>,
    on: &mut dyn FnMut(usize, usize, f64),
) -> Result<EvalIndex> {
    let key = format!(
        "{}-{}-{}-{}-{}",
        c.name, c.fingerprint(), &stamp.fingerprint, stamp.precision, format!("{vectors:?}").to_lowercase()
    );
    let dir = cache.unwrap_or_else(default_cache_dir).join(key);
    let reused = Manifest::read(&dir).ok().flatten().is_some_and(|m| m.files.len() == c.docs.len());
    let mut index_s = 0.0;
    if !reused {
        let t = std::time::Instant::now();
        let opts = IndexOptions { vector_kind: vectors, rebuild: true, ..Default::default() };
        let mut ix = Indexer::open(&dir, embedder, stamp, opts)?;
        ix.index_records(&c.docs, &mut |p| {
            if let Progress::File { done, total, chunks, elapsed_s } = p {
                on(done, total, chunks as f64 / elapsed_s.max(1e-9));
            }
        })?;
        index_s = t.elapsed().as_secs_f64();
    }
    Ok(EvalIndex { dir, reused, index_s })
}

/// Every query's ranking: document ids per query id (the run), the ranked chunk lists in query
/// order (for reranking), and the query rate.
pub struct QueryRun {
    pub run: HashMap<String, Vec<String>>,
    pub lists: Vec<Vec<(u64, f32)>>,
    pub queries_per_s: f64,
}

/// Runs every query of `c` against an evaluation index, over the documents `filter` keeps
/// (all when `None`).
pub fn run_queries(
    c: &Collection,
    reader: &IndexReader,
    embedder: &Embedder,
    opts: &SearchOptions,
    filter: Option<&LiveSet>,
) -> Result<QueryRun> {
    let mut searcher = Searcher::new(reader, embedder).with_instruction(opts.instruction.as_deref());
    if let Some(f) = filter {
        searcher = searcher.with_filter(f);
    }
    let t = std::time::Instant::now();
    let mut run = HashMap::new();
    let mut lists = Vec::new();
    for (qid, q) in &c.queries {
        let ranked = searcher.search(std::slice::from_ref(q), opts)?;
        let docs: Vec<String> = ranked.iter().filter_map(|(id, _)| reader.path_of(*id).map(String::from)).collect();
        run.insert(qid.clone(), docs);
        lists.push(ranked);
    }
    let queries_per_s = c.queries.len() as f64 / t.elapsed().as_secs_f64().max(1e-9);
    Ok(QueryRun { run, lists, queries_per_s })
}

/// For a filtered run `approx` made with HNSW: runs the same queries with exact filtered search
/// and returns [`overlap_at`] of the two, the recall of filtered HNSW.
pub fn filter_recall(
    c: &Collection,
    reader: &IndexReader,
    embedder: &Embedder,
    opts: &SearchOptions,
    filter: &LiveSet,
    approx: &QueryRun,
    k: usize,
) -> Result<f64> {
    let exact = run_queries(c, reader, embedder, &SearchOptions { exact: true, ..opts.clone() }, Some(filter))?;
    Ok(overlap_at(approx, &exact, k))
}

/// How much of exact search's top `k` an approximate run found, averaged over queries: the
/// recall of HNSW (with a filter, of filtered HNSW) against brute force.
pub fn overlap_at(approx: &QueryRun, exact: &QueryRun, k: usize) -> f64 {
    let mut total = 0.0;
    let mut n = 0;
    for (a, e) in approx.lists.iter().zip(&exact.lists) {
        let want: HashSet<u64> = e.iter().take(k).map(|x| x.0).collect();
        if want.is_empty() {
            continue;
        }
        let got = a.iter().take(k).filter(|x| want.contains(&x.0)).count();
        total += got as f64 / want.len() as f64;
        n += 1;
    }
    if n == 0 {
        1.0
    } else {
        total / n as f64
    }
}

/// One cell of a rerank grid.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GridCell {
    /// Candidates reranked (0: the retriever alone).
    pub rerank_top: usize,
    pub rerank_weight: f32,
    pub metrics: Metrics,
}

/// A rerank grid and the reranker's latency.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RerankGrid {
    pub cells: Vec<GridCell>,
    /// The shallowest depth, and milliseconds per query to rerank it (what a user waits).
    pub first_top: usize,
    pub ms_per_query: f64,
    /// The deepest depth, and milliseconds per query for it.
    pub deepest: usize,
    pub ms_per_query_deepest: f64,
    /// The reranker's scores of each query's top `deepest` candidates, in query order.
    #[serde(skip)]
    pub scores: Vec<Vec<f32>>,
}

/// Scores the deepest of `tops` once per query with `reranker`, then evaluates every
/// (top, weight) pair by interpolation (gated per query by `min_spread`, see
/// [`crate::rerank::gate`]); the first cell is the retriever alone (`base`).
/// `on` hears (queries done, total) while it scores.
#[allow(clippy::too_many_arguments)]
pub fn rerank_grid(
    c: &Collection,
    reader: &IndexReader,
    lists: &[Vec<(u64, f32)>],
    reranker: &Reranker,
    tops: &[usize],
    weights: &[f32],
    min_spread: f32,
    k: usize,
    base: &Metrics,
    on: &mut dyn FnMut(usize, usize),
) -> Result<RerankGrid> {
    let deepest = *tops.iter().max().unwrap_or(&20);
    let first = *tops.iter().min().unwrap_or(&20);
    let mut scores: Vec<Vec<f32>> = Vec::with_capacity(lists.len());
    let (mut first_s, mut total_s) = (0.0, 0.0);
    for (i, ((_, q), ranked)) in c.queries.iter().zip(lists).enumerate() {
        let n = deepest.min(ranked.len());
        let texts: Vec<String> = ranked[..n]
            .iter()
            .map(|(id, _)| Ok(reader.chunk(*id)?.map(|h| h.record.text).unwrap_or_default()))
            .collect::<Result<_>>()?;
        let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
        // The shallowest depth is timed on its own: that is the per-query latency a user sees.
        let t = std::time::Instant::now();
        let mut s = reranker.score(q, &refs[..first.min(n)])?;
        first_s += t.elapsed().as_secs_f64();
        s.extend(reranker.score(q, &refs[first.min(n)..])?);
        total_s += t.elapsed().as_secs_f64();
        scores.push(s);
        on(i + 1, c.queries.len());
    }
    let nq = lists.len().max(1) as f64;
    let mut cells = vec![GridCell { rerank_top: 0, rerank_weight: 0.0, metrics: *base }];
    for &top in tops {
        for &w in weights {
            let mut run = HashMap::new();
            for (((qid, _), ranked), s) in c.queries.iter().zip(lists).zip(&scores) {
                let out = crate::rerank::interpolate_gated(ranked, &s[..top.min(s.len())], w, min_spread);
                run.insert(qid.clone(), out.iter().filter_map(|(id, _)| reader.path_of(*id).map(String::from)).collect());
            }
            cells.push(GridCell { rerank_top: top, rerank_weight: w, metrics: evaluate_at(c, &run, k) });
        }
    }
    Ok(RerankGrid {
        cells,
        first_top: first,
        ms_per_query: first_s / nq * 1e3,
        deepest,
        ms_per_query_deepest: total_s / nq * 1e3,
        scores,
    })
}

/// Where evaluation indexes are cached: `$XDG_CACHE_HOME/ponder/eval`.
pub fn default_cache_dir() -> PathBuf {
    dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("ponder").join("eval")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rels(pairs: &[(&str, i32)]) -> HashMap<String, i32> {
        pairs.iter().map(|(d, r)| (d.to_string(), *r)).collect()
    }

    #[test]
    fn metrics_match_a_hand_computed_case() {
        // Relevant: a (2), b (1), c (1); ranking: x a y b.
        let r = rels(&[("a", 2), ("b", 1), ("c", 1), ("z", 0)]);
        let ranked = ["x", "a", "y", "b"];
        let dcg = 2.0 / 3f64.log2() + 1.0 / 5f64.log2();
        let idcg = 2.0 / 2f64.log2() + 1.0 / 3f64.log2() + 1.0 / 4f64.log2();
        assert!((ndcg_at(&ranked, &r, 10) - dcg / idcg).abs() < 1e-12);
        // Cut at 3: b falls off.
        let dcg3 = 2.0 / 3f64.log2();
        assert!((ndcg_at(&ranked, &r, 3) - dcg3 / idcg).abs() < 1e-12);
        assert!((recall_at(&ranked, &r, 100) - 2.0 / 3.0).abs() < 1e-12);
        assert!((recall_at(&ranked, &r, 2) - 1.0 / 3.0).abs() < 1e-12);
        assert!((mrr_at(&ranked, &r, 10) - 0.5).abs() < 1e-12);
        assert_eq!(mrr_at(&["x", "y"], &r, 10), 0.0);
        // A perfect ranking scores 1.
        assert!((ndcg_at(&["a", "b", "c"], &r, 10) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn both_layouts_are_detected_and_loaded() {
        let root = std::env::temp_dir().join(format!("ponder-eval-layouts-{}", std::process::id()));
        let beir = root.join("beir");
        std::fs::create_dir_all(beir.join("qrels")).unwrap();
        std::fs::write(beir.join("corpus.jsonl"), "{\"_id\": \"d1\", \"title\": \"T\", \"text\": \"body\"}\n{\"_id\": \"d2\", \"text\": \"x\"}\n").unwrap();
        std::fs::write(beir.join("queries.jsonl"), "{\"_id\": \"q1\", \"text\": \"what\"}\n{\"_id\": \"q9\", \"text\": \"unjudged\"}\n").unwrap();
        std::fs::write(beir.join("qrels/test.tsv"), "query-id\tcorpus-id\tscore\nq1\td1\t2\n").unwrap();
        let c = Collection::load(&beir, "test").unwrap();
        assert_eq!(c.docs, vec![("d1".to_string(), "T body".to_string()), ("d2".to_string(), "x".to_string())]);
        assert_eq!(c.queries.len(), 1, "unjudged queries are dropped");
        assert_eq!(c.qrels["q1"]["d1"], 2);

        let bright = root.join("bright");
        std::fs::create_dir_all(&bright).unwrap();
        std::fs::write(bright.join("documents.jsonl"), "{\"id\": \"a\", \"content\": \"alpha\"}\n{\"id\": \"b\", \"content\": \"beta\"}\n").unwrap();
        std::fs::write(bright.join("examples.jsonl"), "{\"id\": \"0\", \"query\": \"long post\", \"gold_ids\": [\"b\"], \"excluded_ids\": [\"a\"]}\n").unwrap();
        let c = Collection::load(&bright, "test").unwrap();
        assert_eq!(c.docs.len(), 2);
        assert_eq!(c.queries, vec![("0".to_string(), "long post".to_string())]);
        assert!(c.excluded["0"].contains("a"));
        assert_eq!(c.qrels["0"]["b"], 1);

        assert!(Collection::load(&root, "test").is_err(), "a directory of neither layout is an error");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn excluded_docs_are_dropped_before_scoring() {
        let mut c = Collection::default();
        c.queries.push(("q".into(), "query".into()));
        c.qrels.insert("q".into(), rels(&[("a", 1)]));
        c.excluded.insert("q".into(), ["x".to_string()].into_iter().collect());
        let run: HashMap<String, Vec<String>> = [("q".to_string(), vec!["x".into(), "a".into()])].into_iter().collect();
        let m = evaluate(&c, &run);
        assert!((m.ndcg10 - 1.0).abs() < 1e-12);
        assert!((m.mrr10 - 1.0).abs() < 1e-12);
    }
}
