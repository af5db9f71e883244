//! Late interaction against the independent golden in `tests/golden/colbert-tiny/` (a tiny
//! random BERT with a PyLate Dense head, saved and run by PyLate itself; see its `make.py`):
//! the PyLate settings read from the directory, token inputs (marker, expansion, truncation),
//! token vectors and MaxSim at f32, both query-expansion attention settings, the int8 model
//! file, and `ponder model import`.

use crate::common::{cosine, TempDir};
use ponder::device::DeviceChoice;
use ponder::embed::colbert::{maxsim, maxsim_i8, quantize_tokens, TokenMatrix};
use ponder::embed::Embedder;
use ponder::model::{format, ModelWeights, Precision};
use std::path::PathBuf;

fn golden_dir() -> PathBuf {
    crate::common::repo().join("tests/golden/colbert-tiny")
}

struct Item {
    text: String,
    ids: Vec<u32>,
    tokens: TokenMatrix,
    tokens_attend: Option<TokenMatrix>,
    /// Queries expanded with the expansion tokens hidden from attention (ModernBERT golden).
    tokens_hidden: Option<TokenMatrix>,
    ids_hidden: Option<Vec<u32>>,
}

struct Golden {
    queries: Vec<Item>,
    docs: Vec<Item>,
    maxsim: Vec<Vec<f32>>,
    maxsim_hidden: Option<Vec<Vec<f32>>>,
    settings: serde_json::Value,
}

fn matrix(x: &serde_json::Value) -> TokenMatrix {
    let rows: Vec<Vec<f32>> =
        x.as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(|f| f.as_f64().unwrap() as f32).collect()).collect();
    TokenMatrix { dim: rows[0].len(), data: rows.concat() }
}

fn golden() -> Golden {
    golden_at(&golden_dir())
}

fn modernbert_dir() -> PathBuf {
    crate::common::repo().join("tests/golden/colbert-modernbert-tiny")
}

fn golden_at(dir: &std::path::Path) -> Golden {
    let raw = std::fs::read_to_string(dir.join("expected.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let ids = |x: &serde_json::Value| -> Vec<u32> { x.as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect() };
    let items = |key: &str| -> Vec<Item> {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| Item {
                text: t["text"].as_str().unwrap().to_string(),
                ids: ids(&t["ids"]),
                tokens: matrix(&t["tokens"]),
                tokens_attend: t.get("tokens_attend_expansion").map(matrix),
                tokens_hidden: t.get("tokens_hidden_expansion").map(matrix),
                ids_hidden: t.get("ids_hidden_expansion").map(ids),
            })
            .collect()
    };
    let scores = |x: &serde_json::Value| -> Vec<Vec<f32>> {
        x.as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(|f| f.as_f64().unwrap() as f32).collect()).collect()
    };
    let (maxsim, maxsim_hidden) = (scores(&v["maxsim"]), v.get("maxsim_hidden_expansion").map(scores));
    Golden { queries: items("queries"), docs: items("documents"), maxsim, maxsim_hidden, settings: v["settings"].clone() }
}

fn texts(items: &[Item]) -> Vec<&str> {
    items.iter().map(|i| i.text.as_str()).collect()
}

/// Smallest cosine between corresponding token vectors (shapes must match).
fn min_token_cosine(a: &TokenMatrix, b: &TokenMatrix) -> f32 {
    assert_eq!((a.rows(), a.dim), (b.rows(), b.dim), "token matrix shapes");
    (0..a.rows()).map(|r| cosine(a.row(r), b.row(r))).fold(1.0, f32::min)
}

fn f32_embedder(w: &ModelWeights) -> Embedder {
    Embedder::new(w, Precision::F32, DeviceChoice::Cpu).unwrap()
}

/// The f32 embedder on `choice`, or `None` (skipped, with a note) for a GPU when there is no
/// usable adapter or PONDER_SKIP_GPU_TESTS is set.
fn embedder_on(w: &ModelWeights, choice: DeviceChoice) -> Option<Embedder> {
    if choice == DeviceChoice::Gpu && std::env::var_os("PONDER_SKIP_GPU_TESTS").is_some() {
        eprintln!("skipped: PONDER_SKIP_GPU_TESTS is set");
        return None;
    }
    match Embedder::new(w, Precision::F32, choice) {
        Ok(e) => Some(e),
        Err(ponder::Error::Device(msg)) if choice == DeviceChoice::Gpu => {
            eprintln!("skipped: no usable wgpu adapter ({msg})");
            None
        }
        Err(e) => panic!("{choice:?}: {e}"),
    }
}

#[test]
fn pylate_settings_are_read_from_the_directory() {
    let g = golden();
    let w = ModelWeights::load(&golden_dir()).unwrap();
    let c = w.config.colbert.as_ref().expect("a ColBERT head");
    let s = &g.settings;
    assert_eq!(c.dim, 16);
    assert_eq!((c.query_prefix.as_str(), c.document_prefix.as_str()), ("[Q] ", "[D] "));
    assert_eq!(c.query_prefix_id, Some(s["query_prefix_id"].as_u64().unwrap() as u32));
    assert_eq!(c.document_prefix_id, Some(s["document_prefix_id"].as_u64().unwrap() as u32));
    assert_eq!(c.mask_token_id as u64, s["mask_token_id"].as_u64().unwrap());
    assert_eq!((c.query_length, c.document_length), (12, 24));
    assert!(c.query_expansion && !c.attend_to_expansion && !c.proj_bias);
    let skip: Vec<u32> = s["skiplist_ids"].as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect();
    assert_eq!(c.skiplist, skip, "skiplist ids (words outside the vocabulary stand for [UNK])");
    assert!(w.tensors.contains_key("colbert.proj.weight"));
}

#[test]
fn token_vectors_and_maxsim_match_pylate() {
    check_f32(&golden_dir());
}

#[test]
fn modernbert_backbone_matches_pylate() {
    // Queries without expansion (the golden's setting), then expanded and attended to, then
    // expanded with the expansion tokens hidden.
    check_f32(&modernbert_dir());
    let g = golden_at(&modernbert_dir());
    let mut w = ModelWeights::load(&modernbert_dir()).unwrap();
    assert!(!w.config.colbert.as_ref().unwrap().query_expansion);
    let c = w.config.colbert.as_mut().unwrap();
    (c.query_expansion, c.attend_to_expansion) = (true, true);
    let q = f32_embedder(&w).embed_tokens(&texts(&g.queries), true).unwrap();
    let worst = q.iter().zip(&g.queries).map(|(a, b)| min_token_cosine(a, b.tokens_attend.as_ref().unwrap())).fold(1.0, f32::min);
    assert!(worst >= 0.9999, "expanded ModernBERT queries: smallest per-token cosine {worst}");
    // Expanded with the expansion tokens hidden from attention (Reason-ModernColBERT's
    // setting): keys limited to the real tokens, within the window on the local layers.
    w.config.colbert.as_mut().unwrap().attend_to_expansion = false;
    check_hidden_expansion(&w, &g);
    // The int8 model file keeps the MaxSim order.
    let t = TempDir::new("colbert-modernbert-int8");
    let path = t.path().join("m.int8.ponder");
    format::write_file(&ModelWeights::load(&modernbert_dir()).unwrap(), Precision::Int8, "test", &path).unwrap();
    let e = Embedder::new(&ModelWeights::load(&path).unwrap(), Precision::Int8, DeviceChoice::Cpu).unwrap();
    let q = e.embed_tokens(&texts(&g.queries), true).unwrap();
    let d = e.embed_tokens(&texts(&g.docs), false).unwrap();
    let scores: Vec<Vec<f32>> = q.iter().map(|q| d.iter().map(|d| maxsim(q, d)).collect()).collect();
    let agreement = pairwise_agreement(&scores, &g.maxsim);
    assert!(agreement >= 0.95, "int8 ModernBERT MaxSim pairwise order agreement {agreement}");
    eprintln!("ModernBERT int8: order agreement {agreement}");
}

/// ModernBERT queries expanded with hidden expansion tokens against PyLate's
/// (`tokens_hidden_expansion`, `maxsim_hidden_expansion`): the same ids, per-token cosine and
/// MaxSim against the golden's documents.
fn check_hidden_expansion(w: &ModelWeights, g: &Golden) {
    check_hidden_expansion_with(&f32_embedder(w), w, g);
}

fn check_hidden_expansion_with(e: &Embedder, w: &ModelWeights, g: &Golden) {
    let c = w.config.colbert.as_ref().unwrap();
    let mask = c.mask_token_id;
    let mut hidden_somewhere = false;
    for item in &g.queries {
        let ids = item.ids_hidden.as_ref().expect("ids_hidden_expansion");
        // The golden's ids are the unexpanded ones plus trailing mask tokens up to query_length.
        assert_eq!(ids.len(), c.query_length);
        assert_eq!(&ids[..item.ids.len()], &item.ids[..]);
        assert!(ids[item.ids.len()..].iter().all(|&i| i == mask));
        hidden_somewhere |= ids.len() > item.ids.len();
    }
    assert!(hidden_somewhere, "some query must have expansion tokens");
    let q = e.embed_tokens(&texts(&g.queries), true).unwrap();
    let d = e.embed_tokens(&texts(&g.docs), false).unwrap();
    let worst = q.iter().zip(&g.queries).map(|(a, b)| min_token_cosine(a, b.tokens_hidden.as_ref().unwrap())).fold(1.0, f32::min);
    assert!(worst >= 0.9999, "hidden-expansion ModernBERT queries: smallest per-token cosine {worst}");
    let want = g.maxsim_hidden.as_ref().expect("maxsim_hidden_expansion");
    let mut worst_rel = 0f32;
    for (qi, row) in want.iter().enumerate() {
        for (di, &want) in row.iter().enumerate() {
            worst_rel = worst_rel.max((maxsim(&q[qi], &d[di]) - want).abs() / want.abs().max(1e-6));
        }
    }
    assert!(worst_rel <= 1e-4, "hidden-expansion ModernBERT: largest relative MaxSim error {worst_rel}");
    // And the setting matters: attended and hidden expansion tokens give different vectors.
    let differs = g.queries.iter().any(|i| min_token_cosine(i.tokens_hidden.as_ref().unwrap(), i.tokens_attend.as_ref().unwrap()) < 0.999);
    assert!(differs);
    eprintln!("ModernBERT hidden expansion: f32 smallest token cosine {worst}, largest relative MaxSim error {worst_rel:.2e}");
}

fn check_f32(dir: &std::path::Path) {
    let w = ModelWeights::load(dir).unwrap();
    check_f32_with(&f32_embedder(&w), dir);
}

fn check_f32_with(e: &Embedder, dir: &std::path::Path) {
    let g = golden_at(dir);
    assert!(e.is_late_interaction());
    assert_eq!(e.dim(), 16);
    let q = e.embed_tokens(&texts(&g.queries), true).unwrap();
    let d = e.embed_tokens(&texts(&g.docs), false).unwrap();
    let mut worst = 1f32;
    for (got, want) in q.iter().zip(&g.queries).chain(d.iter().zip(&g.docs)) {
        worst = worst.min(min_token_cosine(got, &want.tokens));
    }
    assert!(worst >= 0.9999, "smallest per-token cosine {worst}");
    let mut worst_rel = 0f32;
    for (qi, row) in g.maxsim.iter().enumerate() {
        for (di, &want) in row.iter().enumerate() {
            let got = maxsim(&q[qi], &d[di]);
            worst_rel = worst_rel.max((got - want).abs() / want.abs().max(1e-6));
        }
    }
    assert!(worst_rel <= 1e-4, "largest relative MaxSim error {worst_rel}");
    eprintln!("{}: f32 smallest token cosine {worst}, largest relative MaxSim error {worst_rel:.2e}", dir.display());
}

#[test]
fn token_inputs_match_pylate() {
    // Markers, expansion and truncation: the golden's ids are what PyLate fed the encoder; the
    // number of document vectors left after the skiplist is checked by the shapes above.
    let g = golden();
    let w = ModelWeights::load(&golden_dir()).unwrap();
    let e = f32_embedder(&w);
    for (items, is_query) in [(&g.queries, true), (&g.docs, false)] {
        let got = e.embed_tokens(&texts(items), is_query).unwrap();
        for (m, item) in got.iter().zip(items.iter()) {
            assert_eq!(m.rows(), item.tokens.rows(), "{:?}: token count (ids {:?})", item.text, item.ids);
        }
    }
    let long_query = g.queries.iter().find(|q| !q.ids.contains(&(g.settings["mask_token_id"].as_u64().unwrap() as u32))).unwrap();
    assert_eq!(long_query.ids.len(), 12, "the long query is truncated to query_length");
}

#[test]
fn attending_to_expansion_tokens_matches_pylate() {
    let g = golden();
    let mut w = ModelWeights::load(&golden_dir()).unwrap();
    w.config.colbert.as_mut().unwrap().attend_to_expansion = true;
    let q = f32_embedder(&w).embed_tokens(&texts(&g.queries), true).unwrap();
    let worst = q.iter().zip(&g.queries).map(|(a, b)| min_token_cosine(a, b.tokens_attend.as_ref().unwrap())).fold(1.0, f32::min);
    assert!(worst >= 0.9999, "smallest per-token cosine {worst}");
    // And the setting matters: hidden expansion tokens give different vectors.
    let differs = g.queries.iter().any(|i| min_token_cosine(&i.tokens, i.tokens_attend.as_ref().unwrap()) < 0.999);
    assert!(differs);
}

/// Fraction of (query, doc pair) orderings that agree between two score matrices.
fn pairwise_agreement(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    let (mut agree, mut total) = (0, 0);
    for (ra, rb) in a.iter().zip(b) {
        for i in 0..ra.len() {
            for j in i + 1..ra.len() {
                total += 1;
                agree += ((ra[i] - ra[j]) * (rb[i] - rb[j]) > 0.0) as usize;
            }
        }
    }
    agree as f32 / total as f32
}

#[test]
fn int8_model_file_keeps_maxsim_order() {
    let g = golden();
    let t = TempDir::new("colbert-int8");
    let path = t.path().join("colbert.int8.ponder");
    let w = ModelWeights::load(&golden_dir()).unwrap();
    format::write_file(&w, Precision::Int8, "test", &path).unwrap();
    let r = ModelWeights::load(&path).unwrap();
    assert_eq!(r.config.colbert, w.config.colbert, "settings survive the model file");
    assert_eq!(format::precision_of(&r), Precision::Int8);
    let e = Embedder::new(&r, Precision::Int8, DeviceChoice::Cpu).unwrap();
    let q = e.embed_tokens(&texts(&g.queries), true).unwrap();
    let d = e.embed_tokens(&texts(&g.docs), false).unwrap();
    let scores: Vec<Vec<f32>> = q.iter().map(|q| d.iter().map(|d| maxsim(q, d)).collect()).collect();
    let agreement = pairwise_agreement(&scores, &g.maxsim);
    assert!(agreement >= 0.95, "int8 MaxSim pairwise order agreement {agreement}");
    // Stored int8 document tokens (one scale per token) keep the order too.
    let stored: Vec<Vec<f32>> = q
        .iter()
        .map(|q| d.iter().map(|d| { let (c, s) = quantize_tokens(d); maxsim_i8(q, &c, &s) }).collect())
        .collect();
    let agreement_stored = pairwise_agreement(&stored, &g.maxsim);
    assert!(agreement_stored >= 0.95, "int8 model + int8 tokens agreement {agreement_stored}");
    eprintln!("int8 model: order agreement {agreement}; with int8 stored tokens {agreement_stored}");
}

#[test]
fn single_vector_embedding_is_the_mean_of_document_tokens() {
    let g = golden();
    let w = ModelWeights::load(&golden_dir()).unwrap();
    let e = f32_embedder(&w);
    let v = e.embed(&texts(&g.docs)).unwrap();
    for (v, item) in v.iter().zip(&g.docs) {
        assert_eq!(v.len(), 16);
        assert!(cosine(v, &item.tokens.mean_normalized()) >= 0.9999);
    }
    let qv = e.embed_queries(&texts(&g.queries)).unwrap();
    assert!(cosine(&qv[0], &g.queries[0].tokens.mean_normalized()) >= 0.9999);
}

#[test]
fn model_import_of_the_directory_works() {
    let t = TempDir::new("colbert-import");
    let out_file = t.path().join("colbert.int8.ponder");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ponder"))
        .args(["model", "import"])
        .arg(golden_dir())
        .arg(&out_file)
        .args(["--precision", "int8"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = ModelWeights::load(&out_file).unwrap();
    assert_eq!(r.config.colbert.as_ref().map(|c| c.dim), Some(16));
}

#[test]
fn broken_pylate_files_are_typed_errors() {
    let t = TempDir::new("colbert-broken");
    let dir = t.path().join("m");
    std::fs::create_dir_all(dir.join("1_Dense")).unwrap();
    for f in ["config.json", "config_sentence_transformers.json", "modules.json", "model.safetensors", "sentence_bert_config.json", "tokenizer.json", "tokenizer_config.json", "1_Dense/config.json", "1_Dense/model.safetensors"] {
        std::fs::copy(golden_dir().join(f), dir.join(f)).unwrap();
    }
    let dense_cfg = std::fs::read_to_string(dir.join("1_Dense/config.json")).unwrap();
    // A projection whose input is not the hidden size.
    std::fs::write(dir.join("1_Dense/config.json"), dense_cfg.replace("\"in_features\": 32", "\"in_features\": 31")).unwrap();
    assert!(ModelWeights::load(&dir).is_err());
    // An activation the runtime does not apply.
    std::fs::write(dir.join("1_Dense/config.json"), dense_cfg.replace("linear.Identity", "activation.Tanh")).unwrap();
    assert!(matches!(ModelWeights::load(&dir), Err(ponder::Error::Unsupported(_))));
    std::fs::write(dir.join("1_Dense/config.json"), &dense_cfg).unwrap();
    // A prefix the tokenizer lacks.
    let st = std::fs::read_to_string(dir.join("config_sentence_transformers.json")).unwrap();
    std::fs::write(dir.join("config_sentence_transformers.json"), st.replace("\"[Q] \"", "\"[QQ] \"")).unwrap();
    assert!(matches!(ModelWeights::load(&dir), Err(ponder::Error::Unsupported(_))));
    std::fs::write(dir.join("config_sentence_transformers.json"), &st).unwrap();
    // The Dense weights missing.
    std::fs::remove_file(dir.join("1_Dense/model.safetensors")).unwrap();
    assert!(ModelWeights::load(&dir).is_err());
}

// ---------------------------------------------------------------------------------------
// The index: token files, MaxSim search, `ponder check`.
// ---------------------------------------------------------------------------------------

use ponder::engine::{Engine, EngineOptions, IndexJob, SearchRequest};
use ponder::model::ModelSource;
use ponder::retrieve::Mode;

/// An index of the golden documents (plus a few more files) built with the int8 model file.
fn late_index(t: &TempDir) -> (Engine, PathBuf) {
    let docs = t.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    for (n, item) in golden().docs.iter().enumerate() {
        std::fs::write(docs.join(format!("doc{n}.txt")), &item.text).unwrap();
    }
    std::fs::write(docs.join("notes.md"), "# Notes\n\nThe dog slept by the door.\n\nQueries are padded with mask tokens.").unwrap();
    let model = t.path().join("colbert.int8.ponder");
    format::write_file(&ModelWeights::load(&golden_dir()).unwrap(), Precision::Int8, "test", &model).unwrap();
    let index = t.path().join("index");
    let opts = EngineOptions { model: Some(ModelSource::Path(model)), device: DeviceChoice::Cpu, ..Default::default() };
    let engine = Engine::open(&index, opts).unwrap();
    let job = IndexJob { rebuild: false, compact: false, instruction: None, cancel: None };
    engine.index(&[docs], &job, &mut |_| {}).unwrap();
    (engine, index)
}

fn late_request(q: &str) -> SearchRequest {
    let mut req = SearchRequest::new(q);
    req.mode = Mode::Late;
    req
}

#[test]
fn an_index_stores_token_vectors_and_searches_by_maxsim() {
    let t = TempDir::new("colbert-index");
    let (engine, index) = late_index(&t);
    let snap = engine.snapshot().unwrap();
    let reader = &snap.reader;
    assert!(reader.has_tokens());
    assert_eq!(reader.manifest.token_files.len(), 1);
    assert_eq!(reader.manifest.model.dim, 16);
    // Every live chunk has its tokens, and the reader's MaxSim is the stored tokens' MaxSim.
    let embedder = engine.query_embedder().unwrap();
    let q = embedder.embed_tokens(&["capital of italy"], true).unwrap().remove(0);
    let mut scores = Vec::new();
    for &(a, b) in reader.live.ranges() {
        for id in a..b {
            let stored = reader.stored_tokens(id).unwrap().expect("tokens of a live chunk");
            let m = reader.maxsim(&q, id).unwrap().unwrap();
            assert!((m - maxsim_i8(&q, &stored.codes, &stored.scales)).abs() < 1e-5);
            scores.push((id, m));
        }
    }
    // `--mode late` ranks the hybrid candidates by MaxSim (all chunks are candidates here).
    let hits = engine.search(&late_request("capital of italy")).unwrap();
    assert!(!hits.is_empty());
    scores.sort_by(|a, b| b.1.total_cmp(&a.1));
    let best = reader.chunk(scores[0].0).unwrap().unwrap();
    assert_eq!(hits[0].path, best.path, "the best MaxSim chunk comes first");
    // The other modes still work on a late-interaction index.
    for mode in [Mode::Hybrid, Mode::Dense, Mode::Lexical] {
        let mut req = late_request("capital of italy");
        req.mode = mode;
        assert!(!engine.search(&req).unwrap().is_empty(), "{mode:?}");
    }
    let report = ponder::index::check::check(&index).unwrap();
    assert!(report.ok(), "{:?}", report.files);
    assert!(report.files.iter().any(|f| f.kind == "tokens" && f.items > 0));
}

#[test]
fn late_mode_on_a_single_vector_index_is_an_error() {
    let t = TempDir::new("colbert-not-late");
    let docs = t.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("a.txt"), "The cat sat on the mat.").unwrap();
    let engine = Engine::open(t.path().join("index"), EngineOptions { device: DeviceChoice::Cpu, ..Default::default() }).unwrap();
    let job = IndexJob { rebuild: false, compact: false, instruction: None, cancel: None };
    engine.index(&[docs], &job, &mut |_| {}).unwrap();
    assert!(engine.search(&late_request("cat")).is_err());
}

#[test]
fn updates_reuse_and_compaction_keep_token_vectors() {
    let t = TempDir::new("colbert-update");
    let (engine, index) = late_index(&t);
    let before = engine.snapshot().unwrap();
    let id_of = |r: &ponder::index::IndexReader, name: &str| {
        let (p, e) = r.manifest.files.iter().find(|(p, _)| p.ends_with(name)).unwrap();
        (p.clone(), e.chunks)
    };
    let (_, old_range) = id_of(&before.reader, "notes.md");
    let old_tokens: Vec<_> = (old_range.0..old_range.1).map(|id| before.reader.stored_tokens(id).unwrap().unwrap()).collect();
    // Append a paragraph: the unchanged chunks are reused with their stored tokens.
    let notes = t.path().join("docs/notes.md");
    let mut text = std::fs::read_to_string(&notes).unwrap();
    text.push_str("\n\n# More\n\nA new paragraph about compilers.");
    std::fs::write(&notes, text).unwrap();
    let job = IndexJob { rebuild: false, compact: false, instruction: None, cancel: None };
    engine.index(&[t.path().join("docs")], &job, &mut |_| {}).unwrap();
    let after = engine.snapshot().unwrap();
    assert_eq!(after.reader.manifest.token_files.len(), 2);
    let (_, new_range) = id_of(&after.reader, "notes.md");
    let new_first = after.reader.stored_tokens(new_range.0).unwrap().unwrap();
    assert_eq!(new_first, old_tokens[0], "reused chunk keeps its stored tokens");
    // Compaction copies every live chunk's tokens into one file.
    let job = IndexJob { compact: true, ..job };
    engine.index(&[t.path().join("docs")], &job, &mut |_| {}).unwrap();
    let compacted = engine.snapshot().unwrap();
    assert_eq!(compacted.reader.manifest.token_files.len(), 1);
    for &(a, b) in compacted.reader.live.ranges() {
        for id in a..b {
            assert!(compacted.reader.stored_tokens(id).unwrap().is_some());
        }
    }
    assert_eq!(compacted.reader.stored_tokens(new_range.0).unwrap().unwrap(), new_first);
    assert!(ponder::index::check::check(&index).unwrap().ok());
    // No token file is left behind unreferenced.
    let names: Vec<String> = std::fs::read_dir(&index).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names.iter().filter(|n| n.starts_with("tok-")).count(), 1, "{names:?}");
}

#[test]
fn a_damaged_token_file_is_named_by_check_and_search_never_panics() {
    let t = TempDir::new("colbert-damage");
    let (engine, index) = late_index(&t);
    let name = engine.snapshot().unwrap().reader.manifest.token_files[0].name.clone();
    let path = index.join(&name);
    let good = std::fs::read(&path).unwrap();
    drop(engine);
    // Flip bytes across the file (codes, scales, ids, row table, trailer, envelope).
    let step = (good.len() / 40).max(1);
    for at in (0..good.len()).step_by(step).chain([good.len() - 30, good.len() - 13]) {
        let mut bad = good.clone();
        bad[at] ^= 0x5a;
        std::fs::write(&path, &bad).unwrap();
        let report = ponder::index::check::check(&index).unwrap();
        let f = report.files.iter().find(|f| f.name == name).unwrap();
        assert!(f.problem.as_deref().is_some_and(|p| p.contains(&name)), "flip at {at}: {:?}", f.problem);
        // Queries do not hash the file: they may answer or fail, but never panic.
        let opts = EngineOptions { model: Some(ModelSource::Path(t.path().join("colbert.int8.ponder"))), device: DeviceChoice::Cpu, ..Default::default() };
        if let Ok(e) = Engine::open(&index, opts) {
            let _ = e.search(&late_request("capital of italy"));
        }
    }
    std::fs::write(&path, &good).unwrap();
    assert!(ponder::index::check::check(&index).unwrap().ok());
}

#[test]
fn a_new_index_chunks_to_the_models_document_length() {
    // colbert-tiny's `document_length` is 24: the [D] marker, [CLS] and [SEP] leave 21 tokens
    // of text, far below the default chunk of 254, which would be embedded cut short.
    let t = TempDir::new("colbert-chunking");
    let (engine, _) = late_index(&t);
    let embedder = engine.query_embedder().unwrap();
    assert_eq!(embedder.chunk_capacity(), 21);
    let status = engine.status().unwrap();
    assert_eq!(status.chunking["max_tokens"], 21, "{}", status.chunking);
    let long: String = (0..60).map(|i| format!("The dog number {i} slept by the door.")).collect::<Vec<_>>().join(" ");
    let docs = t.path().join("docs");
    std::fs::write(docs.join("long.txt"), &long).unwrap();
    let job = IndexJob { rebuild: false, compact: false, instruction: None, cancel: None };
    engine.index(&[docs], &job, &mut |_| {}).unwrap();
    let snap = engine.snapshot().unwrap();
    let mut pieces = 0;
    for &(a, b) in snap.reader.live.ranges() {
        for id in a..b {
            let c = snap.reader.chunk(id).unwrap().unwrap();
            let n = embedder.tokenizer().token_spans(&c.record.text).len();
            assert!(n <= 21, "a chunk of {n} tokens: {:?}", c.record.text);
            pieces += c.path.ends_with("long.txt") as usize;
        }
    }
    assert!(pieces >= 20, "the long file is cut into {pieces} chunks");
}

/// Late interaction on burn (`flex`, and wgpu on lavapipe or a GPU): both backbones against
/// PyLate, with queries as the goldens have them, expanded and attended to (BERT), and
/// expanded with the expansion tokens hidden from attention (ModernBERT, where some local
/// rows then see no key at all).
fn check_on_burn(choice: DeviceChoice) {
    for dir in [golden_dir(), modernbert_dir()] {
        let w = ModelWeights::load(&dir).unwrap();
        let Some(e) = embedder_on(&w, choice) else { return };
        assert!(!e.is_native_cpu(), "{} on {choice:?} runs on {}", dir.display(), e.describe());
        check_f32_with(&e, &dir);
        // One text at a time gives what the padded batch gives.
        let g = golden_at(&dir);
        let batched = e.embed_tokens(&texts(&g.docs), false).unwrap();
        for (doc, want) in g.docs.iter().zip(&batched) {
            let alone = e.embed_tokens(&[doc.text.as_str()], false).unwrap().remove(0);
            assert!(min_token_cosine(&alone, want) >= 0.99999, "padding changes {:?}", doc.text);
        }
    }
    let g = golden();
    let mut w = ModelWeights::load(&golden_dir()).unwrap();
    w.config.colbert.as_mut().unwrap().attend_to_expansion = true;
    let Some(e) = embedder_on(&w, choice) else { return };
    let q = e.embed_tokens(&texts(&g.queries), true).unwrap();
    let worst = q.iter().zip(&g.queries).map(|(a, b)| min_token_cosine(a, b.tokens_attend.as_ref().unwrap())).fold(1.0, f32::min);
    assert!(worst >= 0.9999, "attended expansion on {choice:?}: smallest per-token cosine {worst}");
    let g = golden_at(&modernbert_dir());
    let mut w = ModelWeights::load(&modernbert_dir()).unwrap();
    let c = w.config.colbert.as_mut().unwrap();
    (c.query_expansion, c.attend_to_expansion) = (true, false);
    let Some(e) = embedder_on(&w, choice) else { return };
    check_hidden_expansion_with(&e, &w, &g);
}

#[test]
fn late_interaction_on_flex_matches_pylate() {
    check_on_burn(DeviceChoice::Flex);
}

#[test]
fn late_interaction_on_gpu_matches_pylate() {
    check_on_burn(DeviceChoice::Gpu);
}
