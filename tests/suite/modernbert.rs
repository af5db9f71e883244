//! ModernBERT on the native CPU runtime against the independent golden in
//! `tests/golden/modernbert-tiny/` (a tiny random ModernBERT run through Hugging Face
//! transformers, cross-checked with a NumPy float64 implementation; see
//! `tests/golden/README-archs.md`): token ids, hidden states and pooled vectors at f32, the
//! int8 model file, `ponder model import` / `ponder embed`, and an index built with the model.

use crate::common::{cosine, max_abs, TempDir};
use ponder::device::DeviceChoice;
use ponder::embed::modernbert::NativeModernBert;
use ponder::embed::tokenize::{Encoded, TextTokenizer};
use ponder::embed::Embedder;
use ponder::engine::{Engine, EngineOptions, IndexJob, SearchRequest};
use ponder::model::config::{Activation, Architecture, ModelConfig};
use ponder::model::weights::Bytes;
use ponder::model::{format, hf, ModelSource, ModelWeights, Pooling, Precision};
use ponder::Error;
use std::path::{Path, PathBuf};

fn golden_model() -> PathBuf {
    crate::common::repo().join("tests/golden/modernbert-tiny")
}

struct Item {
    text: String,
    ids: Vec<u32>,
    hidden: Vec<Vec<f32>>,
    pooled: Vec<f32>,
}

fn expected() -> Vec<Item> {
    let raw = std::fs::read_to_string(golden_model().join("expected.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let floats = |x: &serde_json::Value| -> Vec<f32> {
        x.as_array().unwrap().iter().map(|f| f.as_f64().unwrap() as f32).collect()
    };
    v["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| Item {
            text: t["text"].as_str().unwrap().to_string(),
            ids: t["ids"].as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect(),
            hidden: t["hidden"].as_array().unwrap().iter().map(floats).collect(),
            pooled: floats(&t["pooled"]),
        })
        .collect()
}

fn tokenize(w: &ModelWeights, texts: &[&str]) -> Vec<Encoded> {
    TextTokenizer::from_json(&w.tokenizer_json, w.config.max_seq_len).unwrap().encode(texts).unwrap()
}

/// (min, mean) cosine of vectors against the golden pooled vectors.
fn cosines(got: &[Vec<f32>], items: &[Item]) -> (f32, f32) {
    let c: Vec<f32> = got.iter().zip(items).map(|(g, e)| cosine(g, &e.pooled)).collect();
    (c.iter().cloned().fold(1.0, f32::min), c.iter().sum::<f32>() / c.len() as f32)
}

#[test]
fn config_of_the_golden_is_read_as_modernbert() {
    let cfg = ModelConfig::from_hf_dir(&golden_model()).unwrap();
    assert_eq!(cfg.architecture, Architecture::ModernBert);
    assert_eq!((cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.intermediate_size), (32, 4, 4, 48));
    assert_eq!((cfg.pooling, cfg.normalize, cfg.max_seq_len, cfg.activation), (Pooling::Mean, true, 64, Activation::Gelu));
    let p = cfg.modern_bert.unwrap();
    assert_eq!((p.global_attn_every_n_layers, p.local_attention), (3, 8));
    assert_eq!((p.global_rope_theta, p.local_rope_theta, p.norm_eps), (160_000.0, 10_000.0, 1e-5));
    assert!(!p.attention_bias && !p.mlp_bias && !p.norm_bias);
}

#[test]
fn newer_config_keys_biases_and_task_heads() {
    let t = TempDir::new("mb-config");
    let base: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(golden_model().join("config.json")).unwrap()).unwrap();
    let write = |patch: serde_json::Value| -> ponder::Result<ModelConfig> {
        let mut c = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        std::fs::write(t.path().join("config.json"), c.to_string()).unwrap();
        ModelConfig::from_hf_dir(t.path())
    };
    // transformers 5 writes `layer_types` and `rope_parameters` instead of the flat keys.
    let cfg = write(serde_json::json!({
        "global_attn_every_n_layers": null, "global_rope_theta": null, "local_rope_theta": null,
        "layer_types": ["full_attention", "sliding_attention", "full_attention", "sliding_attention"],
        "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 80000.0},
                            "sliding_attention": {"rope_type": "default", "rope_theta": 5000.0}},
        "attention_bias": true, "norm_bias": true
    }))
    .unwrap();
    let p = cfg.modern_bert.clone().unwrap();
    assert_eq!((p.global_attn_every_n_layers, p.global_rope_theta, p.local_rope_theta), (2, 80_000.0, 5_000.0));
    assert!(p.attention_bias && p.norm_bias && !p.mlp_bias);
    let names: Vec<String> = ponder::model::arch::layout(&cfg).into_iter().map(|s| s.hf_name).collect();
    assert!(names.contains(&"layers.0.attn.Wqkv.bias".to_string()) && names.contains(&"final_norm.bias".to_string()));
    assert!(!names.contains(&"layers.0.attn_norm.weight".to_string()) && !names.contains(&"layers.0.mlp.Wi.bias".to_string()));
    // An irregular layer pattern, a scaled rotary and a classifier head are refused by name.
    let irregular = write(serde_json::json!({"layer_types": ["full_attention", "full_attention", "sliding_attention", "full_attention"]}));
    assert!(matches!(irregular, Err(Error::Config(m)) if m.contains("layer_types")));
    let scaled = write(serde_json::json!({"rope_parameters": {"full_attention": {"rope_type": "yarn", "factor": 4.0}}}));
    assert!(matches!(scaled, Err(Error::Config(m)) if m.contains("rope_type")));
    let head = write(serde_json::json!({"architectures": ["ModernBertForSequenceClassification"]}));
    assert!(matches!(head, Err(Error::Unsupported(m)) if m.contains("ModernBertForSequenceClassification")));
}

#[test]
fn f32_matches_the_transformers_golden() {
    let w = hf::load_hf_dir(&golden_model()).unwrap();
    let items = expected();
    let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
    let enc = tokenize(&w, &texts);
    for (e, i) in enc.iter().zip(&items) {
        assert_eq!(e.ids, i.ids, "token ids of {:?}", i.text);
    }
    // Hidden states: each text alone, and all texts packed into one batch.
    let m = NativeModernBert::new(&w, Precision::F32).unwrap();
    let packed = m.encode(&enc);
    let (mut err_alone, mut err_packed, mut row) = (0f32, 0f32, 0);
    for (e, i) in enc.iter().zip(&items) {
        let want: Vec<f32> = i.hidden.concat();
        err_alone = err_alone.max(max_abs(&m.encode(std::slice::from_ref(e)), &want));
        err_packed = err_packed.max(max_abs(&packed[row * 32..(row + e.ids.len()) * 32], &want));
        row += e.ids.len();
    }
    // Pooled vectors through the Embedder, as indexing uses it.
    let emb = Embedder::new(&w, Precision::F32, DeviceChoice::Cpu).unwrap();
    let vecs = emb.embed(&texts).unwrap();
    let (min_cos, _) = cosines(&vecs, &items);
    let pooled_err = vecs.iter().zip(&items).map(|(v, i)| max_abs(v, &i.pooled)).fold(0.0, f32::max);
    eprintln!("f32: hidden max abs err {err_alone:.2e} alone, {err_packed:.2e} packed; pooled max abs err {pooled_err:.2e}, min cosine {min_cos:.7}");
    assert!(err_alone <= 2e-4 && err_packed <= 2e-4, "hidden states: {err_alone} / {err_packed}");
    assert!(pooled_err <= 2e-5, "pooled: {pooled_err}");
    assert!(min_cos >= 0.9999, "cosine {min_cos}");
}

fn round_trip(w: &ModelWeights, precision: Precision) -> ModelWeights {
    let bytes = format::to_bytes(w, precision, "modernbert test").unwrap();
    format::read_bytes(Bytes::from_vec(bytes), Path::new("modernbert-test.ponder")).unwrap()
}

#[test]
fn model_files_keep_the_model_at_f32_and_int8() {
    let w = hf::load_hf_dir(&golden_model()).unwrap();
    let items = expected();
    let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();

    let f = round_trip(&w, Precision::F32);
    assert_eq!(f.config, w.config);
    let a = Embedder::new(&w, Precision::F32, DeviceChoice::Cpu).unwrap().embed(&texts).unwrap();
    let b = Embedder::new(&f, Precision::F32, DeviceChoice::Cpu).unwrap().embed(&texts).unwrap();
    assert_eq!(a, b, "an f32 model file computes exactly what the HF directory does");

    let q = round_trip(&w, Precision::Int8);
    assert_eq!(q.config, w.config);
    assert_eq!(format::precision_of(&q), Precision::Int8);
    let emb = Embedder::new(&q, Precision::Int8, DeviceChoice::Cpu).unwrap();
    assert_eq!(emb.precision_name(), "int8");
    let (min, mean) = cosines(&emb.embed(&texts).unwrap(), &items);
    // The f32 HF weights run with int8 Linear layers (quantized at load) land in the same place.
    let (min_direct, mean_direct) = cosines(
        &Embedder::new(&w, Precision::Int8, DeviceChoice::Cpu).unwrap().embed(&texts).unwrap(),
        &items,
    );
    eprintln!("int8 file: min cosine {min:.5}, mean {mean:.5}; int8 from HF dir: min {min_direct:.5}, mean {mean_direct:.5}");
    assert!(min >= 0.99 && mean >= 0.995, "int8 file: min {min}, mean {mean}");
    assert!(min_direct >= 0.99 && mean_direct >= 0.995, "int8 from HF dir: min {min_direct}, mean {mean_direct}");
}

fn ponder(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ponder"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn cli_imports_and_embeds_modernbert() {
    let t = TempDir::new("mb-cli");
    let items = expected();
    let input: String = items.iter().map(|i| serde_json::to_string(&i.text).unwrap() + "\n").collect();
    for precision in ["int8", "f32"] {
        let file = t.path().join(format!("mb.{precision}.ponder"));
        let (dir, file_s) = (golden_model(), file.to_str().unwrap().to_string());
        let out = ponder(&["model", "import", dir.to_str().unwrap(), &file_s, "--precision", precision], None);
        assert!(out.status.success(), "import: {}", String::from_utf8_lossy(&out.stderr));
        let out = ponder(&["embed", "--model", &file_s, "--device", "cpu"], Some(&input));
        assert!(out.status.success(), "embed: {}", String::from_utf8_lossy(&out.stderr));
        let vecs: Vec<Vec<f32>> =
            String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let (min, mean) = cosines(&vecs, &items);
        let floor = if precision == "f32" { 0.9999 } else { 0.99 };
        assert!(vecs.len() == items.len() && min >= floor && mean >= floor, "{precision}: min {min}, mean {mean}");
    }
}

#[test]
fn an_index_built_with_modernbert_is_searched_with_it_and_refuses_the_default_model() {
    let t = TempDir::new("mb-index");
    let docs = t.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    for (i, item) in expected().iter().enumerate() {
        std::fs::write(docs.join(format!("doc{i}.txt")), &item.text).unwrap();
    }
    let index = t.path().join("index");
    let opts = |model: Option<ModelSource>| EngineOptions { device: DeviceChoice::Cpu, model, ..Default::default() };
    let mb = ModelSource::Path(golden_model());
    let engine = Engine::open(&index, opts(Some(mb.clone()))).unwrap();
    let report = engine.index(&[docs.clone()], &IndexJob::default(), &mut |_| {}).unwrap();
    assert_eq!(report.files_indexed, 8, "{report:?}");
    let req = SearchRequest { k: 3, mode: ponder::retrieve::Mode::Dense, ..SearchRequest::new("What is the capital city of France?") };
    let hits = engine.search(&req).unwrap();
    assert!(hits[0].path.ends_with("doc0.txt"), "{:?}", hits.iter().map(|h| &h.path).collect::<Vec<_>>());
    assert_eq!(engine.status().unwrap().dim, 32);
    drop(engine);

    // Reopened without naming a model, the index's own model answers.
    let engine = Engine::open(&index, opts(None)).unwrap();
    assert!(engine.search(&req).unwrap()[0].path.ends_with("doc0.txt"));
    drop(engine);

    // The built-in model (384 dimensions, another fingerprint) must not search these vectors.
    let engine = Engine::open(&index, opts(Some(ModelSource::Default))).unwrap();
    let err = engine.search(&req).expect_err("searching a ModernBERT index with the default model");
    assert!(matches!(&err, Error::InvalidInput(m) if m.contains("built with model")), "{err}");
    let err = engine.index(&[docs], &IndexJob::default(), &mut |_| {}).expect_err("mixing models");
    assert!(err.to_string().contains("refusing to mix"), "{err}");
}
