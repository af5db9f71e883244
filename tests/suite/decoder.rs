//! The decoder embedder (Qwen3 family) against an independent golden: `tests/golden/qwen3-tiny/`
//! (a tiny random Qwen3-Embedding-style checkpoint; outputs from HF transformers, cross-checked
//! with NumPy and sentence-transformers; see `tests/golden/README-archs.md`). Token ids, final
//! hidden states and pooled vectors at f32; int8 through a model-file round trip; the query
//! prompt and instruction template, from `ModelConfig` down to an index's query vector; the
//! end-of-sequence token appended when a tokenizer does not; configurations refused.

use crate::common::{copy_dir, cosine, max_abs, TempDir};
use ponder::device::DeviceChoice;
use ponder::embed::decoder::NativeDecoder;
use ponder::engine::{Engine, EngineOptions, IndexJob};
use ponder::model::config::{Architecture, Pooling};
use ponder::model::weights::Bytes;
use ponder::model::{format, DType, ModelConfig, ModelSource, ModelWeights, Precision};
use ponder::retrieve::{LongQuery, Searcher};
use ponder::{Embedder, Error};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn golden_dir() -> PathBuf {
    crate::common::repo().join("tests/golden/qwen3-tiny")
}

struct Item {
    text: String,
    ids: Vec<u32>,
    hidden: Vec<f32>,
    pooled: Vec<f32>,
    /// For queries: the raw question (the prompt is already in `text`).
    query: Option<String>,
}

fn expected() -> Vec<Item> {
    let e: Value = serde_json::from_slice(&std::fs::read(golden_dir().join("expected.json")).unwrap()).unwrap();
    let floats = |v: &Value| -> Vec<f32> { v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect() };
    e["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| Item {
            text: t["text"].as_str().unwrap().to_string(),
            ids: t["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect(),
            hidden: t["hidden"].as_array().unwrap().iter().flat_map(|r| floats(r)).collect(),
            pooled: floats(&t["pooled"]),
            query: (t["kind"].as_str() == Some("query")).then(|| t["query"].as_str().unwrap().to_string()),
        })
        .collect()
}

/// The golden directory copied, with `config.json` changed by `edit`.
fn edited_copy(tag: &str, edit: impl FnOnce(&mut Value)) -> TempDir {
    let t = TempDir::new(tag);
    copy_dir(&golden_dir(), t.path());
    let path = t.path().join("config.json");
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(&path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    t
}

#[test]
fn config_is_read_from_the_hf_directory() {
    let cfg = ModelConfig::from_hf_dir(&golden_dir()).unwrap();
    assert_eq!(cfg.architecture, Architecture::Decoder);
    assert_eq!(cfg.pooling, Pooling::LastToken);
    assert!(cfg.normalize);
    assert_eq!((cfg.hidden_size, cfg.num_heads, cfg.num_layers, cfg.max_seq_len), (32, 4, 3, 128));
    let d = cfg.decoder.as_ref().unwrap();
    assert_eq!((d.num_kv_heads, d.head_dim, d.qk_norm, d.qkv_bias, d.o_bias), (2, 16, true, false, false));
    assert_eq!((d.rope_theta, d.rms_norm_eps, d.eos_token_id), (1e6, 1e-6, Some(468)));
    assert_eq!(d.query_prompt.as_deref(), Some("Instruct: Given a question, retrieve passages that answer it\nQuery:"));
    assert_eq!(d.query_template.as_deref(), Some("Instruct: {instruction}\nQuery:{query}"));
}

#[test]
fn query_text_uses_the_models_prompt_and_template() {
    let cfg = ModelConfig::from_hf_dir(&golden_dir()).unwrap();
    // No instruction: the model's own prompt, without a separator (as sentence-transformers).
    for item in expected().iter().filter(|i| i.query.is_some()) {
        assert_eq!(cfg.query_text(None, item.query.as_deref().unwrap()), item.text);
    }
    // An instruction goes into the template; braces in it or in the query are left alone.
    assert_eq!(cfg.query_text(Some("Find code {query}"), "rust {x}?"), "Instruct: Find code {query}\nQuery:rust {x}?");
    assert_eq!(cfg.query_text(Some(""), "q"), "Instruct: Given a question, retrieve passages that answer it\nQuery:q");
    // A prompt that is not `Instruct: …\nQuery:` is put before the query; an instruction
    // then replaces it, followed by a space (as for BERT models).
    let mut other = cfg.clone();
    let d = other.decoder.as_mut().unwrap();
    d.query_prompt = Some("query: ".into());
    d.query_template = None;
    assert_eq!(other.query_text(None, "q"), "query: q");
    assert_eq!(other.query_text(Some("Represent this:"), "q"), "Represent this: q");
    // A BERT model keeps the old behaviour.
    let bert = ModelWeights::embedded_default().unwrap().config;
    assert_eq!(bert.query_text(Some("Represent this:"), "q"), "Represent this: q");
    assert_eq!(bert.query_text(None, "q"), "q");
}

#[test]
fn f32_matches_the_golden() {
    let w = ModelWeights::load(&golden_dir()).unwrap();
    let items = expected();
    let emb = Embedder::new(&w, Precision::F32, DeviceChoice::Cpu).unwrap();
    assert_eq!(emb.precision_name(), "f32");
    let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
    let enc = emb.tokenizer().encode(&texts).unwrap();
    for (e, item) in enc.iter().zip(&items) {
        assert_eq!(e.ids, item.ids, "token ids of {:?}", item.text);
    }
    // Final hidden states of every token, each text alone and all packed in one batch.
    let dec = NativeDecoder::new(&w, Precision::F32).unwrap();
    let packed = dec.hidden_states(&enc);
    let want: Vec<f32> = items.iter().flat_map(|i| i.hidden.iter().copied()).collect();
    let hidden_err = max_abs(&packed, &want);
    for (e, item) in enc.iter().zip(&items) {
        assert!(max_abs(&dec.hidden_states(std::slice::from_ref(e)), &item.hidden) <= hidden_err);
    }
    // Pooled vectors through the embedder (length-sorted batches).
    let got = emb.embed(&texts).unwrap();
    let pooled_err = got.iter().zip(&items).map(|(g, i)| max_abs(g, &i.pooled)).fold(0.0, f32::max);
    let min_cos = got.iter().zip(&items).map(|(g, i)| cosine(g, &i.pooled)).fold(1.0, f32::min);
    eprintln!("qwen3-tiny f32: hidden max abs err {hidden_err:.2e}, pooled max abs err {pooled_err:.2e}, min cosine {min_cos:.7}");
    assert!(hidden_err <= 2e-4, "hidden states differ by {hidden_err}");
    assert!(pooled_err <= 2e-5, "pooled vectors differ by {pooled_err}");
    assert!(min_cos >= 0.9999, "min cosine {min_cos}");
}

#[test]
fn int8_model_file_round_trip_stays_close() {
    let w = ModelWeights::load(&golden_dir()).unwrap();
    let items = expected();
    let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
    let path = Path::new("qwen3-tiny.int8.ponder");
    let r = format::read_bytes(Bytes::from_vec(format::to_bytes(&w, Precision::Int8, "test").unwrap()), path).unwrap();
    assert_eq!(r.config, w.config);
    assert_eq!(r.get("layer.0.q.weight").unwrap().dtype, DType::I8);
    assert_eq!(r.get("layer.2.down.weight").unwrap().dtype, DType::I8);
    assert_eq!(r.get("layer.0.q_norm.weight").unwrap().dtype, DType::F32);
    let emb = Embedder::new(&r, Precision::Int8, DeviceChoice::Cpu).unwrap();
    assert_eq!(emb.precision_name(), "int8");
    let got = emb.embed(&texts).unwrap();
    let cos: Vec<f32> = got.iter().zip(&items).map(|(g, i)| cosine(g, &i.pooled)).collect();
    let min = cos.iter().copied().fold(1.0, f32::min);
    let mean = cos.iter().sum::<f32>() / cos.len() as f32;
    eprintln!("qwen3-tiny int8: min cosine {min:.5}, mean {mean:.5}");
    assert!(min >= 0.99 && mean >= 0.995, "int8 cosines {cos:?}");

    // An f32 file reproduces the directory exactly.
    let f = format::read_bytes(Bytes::from_vec(format::to_bytes(&w, Precision::F32, "test").unwrap()), path).unwrap();
    let a = Embedder::new(&f, Precision::F32, DeviceChoice::Cpu).unwrap().embed(&texts).unwrap();
    let b = Embedder::new(&w, Precision::F32, DeviceChoice::Cpu).unwrap().embed(&texts).unwrap();
    assert_eq!(a, b);
}

#[test]
fn eos_is_appended_when_the_tokenizer_does_not() {
    let t = TempDir::new("qwen3-no-eos");
    copy_dir(&golden_dir(), t.path());
    let tok_path = t.path().join("tokenizer.json");
    let mut tok: Value = serde_json::from_slice(&std::fs::read(&tok_path).unwrap()).unwrap();
    tok["post_processor"] = Value::Null;
    std::fs::write(&tok_path, serde_json::to_vec(&tok).unwrap()).unwrap();
    let w = ModelWeights::load(t.path()).unwrap();
    let emb = Embedder::new(&w, Precision::F32, DeviceChoice::Cpu).unwrap();
    let items = expected();
    let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
    let enc = emb.tokenizer().encode(&texts).unwrap();
    assert!(enc.iter().zip(&items).all(|(e, i)| e.ids[..] == i.ids[..i.ids.len() - 1]), "no <|endoftext|> from this tokenizer");
    let got = emb.embed(&texts).unwrap();
    for (g, i) in got.iter().zip(&items) {
        assert!(max_abs(g, &i.pooled) <= 2e-5, "{:?}", i.text);
    }
}

#[test]
fn an_index_embeds_queries_with_the_prompt_or_instruction() {
    let t = TempDir::new("qwen3-index");
    let docs = t.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    let items = expected();
    for (n, item) in items.iter().filter(|i| i.query.is_none()).enumerate() {
        std::fs::write(docs.join(format!("doc{n}.txt")), &item.text).unwrap();
    }
    // The model as an int8 file, as `ponder model import DIR OUT --precision int8` writes it.
    let model = t.path().join("qwen3-tiny.int8.ponder");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ponder"))
        .args(["model", "import"])
        .arg(golden_dir())
        .arg(&model)
        .args(["--precision", "int8"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let opts = EngineOptions { model: Some(ModelSource::Path(model)), device: DeviceChoice::Cpu, ..Default::default() };
    let engine = Engine::open(t.path().join("index"), opts).unwrap();
    let job = IndexJob { rebuild: false, compact: false, instruction: None, cancel: None };
    engine.index(&[docs.clone()], &job, &mut |_| {}).unwrap();
    let query = items.iter().find(|i| i.query.is_some()).unwrap();
    let raw = query.query.as_deref().unwrap();
    let hits = engine.search(&ponder::SearchRequest::new(raw)).unwrap();
    assert!(!hits.is_empty());
    let snap = engine.snapshot().unwrap();
    let embedder = engine.query_embedder().unwrap();
    let searcher = Searcher::new(&snap.reader, &embedder);
    assert_eq!(searcher.dense_query(raw), query.text);
    let v = searcher.query_vector(raw, LongQuery::Truncate).unwrap();
    let c = cosine(&v, &query.pooled);
    assert!(c >= 0.99, "int8 query vector cosine {c}");

    // An instruction recorded in the index goes into the model's template.
    let job = IndexJob { instruction: Some("Find the code".into()), ..job };
    engine.index(&[docs], &job, &mut |_| {}).unwrap();
    let snap = engine.snapshot().unwrap();
    let searcher = Searcher::new(&snap.reader, &embedder);
    assert_eq!(searcher.dense_query(raw), format!("Instruct: Find the code\nQuery:{raw}"));
}

#[test]
fn llama_layout_loads_without_query_key_norms() {
    // The same checkpoint read as Llama: no q_norm/k_norm (they are simply not read), so the
    // vectors differ, but everything else loads and runs.
    let t = edited_copy("qwen3-as-llama", |c| c["model_type"] = "llama".into());
    let w = ModelWeights::load(t.path()).unwrap();
    let d = w.config.decoder.as_ref().unwrap();
    assert!(!d.qk_norm && !d.qkv_bias);
    assert!(!w.tensors.contains_key("layer.0.q_norm.weight"));
    let v = Embedder::new(&w, Precision::F32, DeviceChoice::Cpu).unwrap().embed(&["Hello world"]).unwrap();
    assert!((v[0].iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-4);
    // Qwen2 has biases on q, k and v, which this checkpoint lacks: named in the error.
    let t = edited_copy("qwen3-as-qwen2", |c| c["model_type"] = "qwen2".into());
    let err = ModelWeights::load(t.path()).err().expect("refused");
    assert!(matches!(err, Error::TensorMismatch { ref name, .. } if name.contains("q_proj.bias")), "{err}");
}

#[test]
fn unsupported_decoder_configs_are_refused() {
    let cases: Vec<(&str, Box<dyn Fn(&mut Value)>)> = vec![
        ("classifier", Box::new(|c| c["architectures"] = serde_json::json!(["Qwen3ForSequenceClassification"]))),
        ("rope-scaling", Box::new(|c| c["rope_scaling"] = serde_json::json!({"rope_type": "llama3", "factor": 8.0}))),
        ("sliding", Box::new(|c| c["use_sliding_window"] = true.into())),
        ("gelu", Box::new(|c| c["hidden_act"] = "gelu".into())),
        ("gqa", Box::new(|c| c["num_key_value_heads"] = 3.into())),
        ("mlp-bias", Box::new(|c| c["mlp_bias"] = true.into())),
    ];
    for (tag, edit) in cases {
        let t = edited_copy(tag, |c| edit(c));
        let err = ModelWeights::load(t.path()).err().expect("refused");
        assert!(matches!(err, Error::Config(_)), "{tag}: {err:?}");
        if tag == "classifier" {
            assert!(err.to_string().contains("Qwen3ForSequenceClassification"), "{err}");
        }
    }
}

/// Throughput at Qwen3-Embedding-0.6B's layer width (2 of its 28 layers, random weights):
/// `cargo test --release --test suite decoder:: -- --ignored --nocapture`.
#[test]
#[ignore]
fn speed_at_qwen3_0_6b_width() {
    let mut w = ModelWeights::load(&golden_dir()).unwrap();
    let cfg = &mut w.config;
    (cfg.hidden_size, cfg.num_heads, cfg.intermediate_size, cfg.num_layers) = (1024, 16, 3072, 2);
    let d = cfg.decoder.as_mut().unwrap();
    (d.head_dim, d.num_kv_heads) = (128, 8);
    let mut seed = 7u64;
    w.tensors = ponder::model::arch::layout(&w.config)
        .into_iter()
        .map(|s| {
            let n: usize = s.shape.iter().product();
            let v: Vec<f32> = (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
                })
                .collect();
            (s.name, ponder::model::WeightTensor::from_f32(s.shape, &v))
        })
        .collect();
    let text = "A decoder model reads tokens from left to right and never looks ahead. ".repeat(12);
    let texts: Vec<&str> = vec![text.as_str(); 16];
    for p in [Precision::F32, Precision::Int8] {
        let emb = Embedder::new(&w, p, DeviceChoice::Cpu).unwrap();
        let tokens: usize = emb.tokenizer().encode(&texts).unwrap().iter().map(|e| e.ids.len()).sum();
        emb.embed(&texts[..1]).unwrap();
        let t = std::time::Instant::now();
        emb.embed(&texts).unwrap();
        let s = t.elapsed().as_secs_f64();
        eprintln!("{p:?}: {tokens} tokens through 2 layers in {s:.2}s: {:.0} tokens/s per layer", tokens as f64 * 2.0 / s);
    }
}

/// The golden checkpoint rewritten as `shards` safetensors files with an index, as transformers
/// saves large models; tensors named in `bf16` are stored as bfloat16.
fn sharded_copy(tag: &str, shards: usize, bf16: &[&str]) -> TempDir {
    use safetensors::{tensor::TensorView, Dtype, SafeTensors};
    let t = TempDir::new(tag);
    copy_dir(&golden_dir(), t.path());
    std::fs::remove_file(t.path().join("model.safetensors")).unwrap();
    let raw = std::fs::read(golden_dir().join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&raw).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    names.sort();
    let mut weight_map = serde_json::Map::new();
    for (n, part) in names.chunks(names.len().div_ceil(shards)).enumerate() {
        let file = format!("model-{:05}-of-{shards:05}.safetensors", n + 1);
        let bytes: Vec<(String, Vec<u8>, Vec<usize>, Dtype)> = part
            .iter()
            .map(|name| {
                let v = st.tensor(name).unwrap();
                if bf16.contains(&name.as_str()) {
                    let b = v
                        .data()
                        .chunks_exact(4)
                        .flat_map(|c| half::bf16::from_f32(f32::from_le_bytes([c[0], c[1], c[2], c[3]])).to_le_bytes())
                        .collect();
                    (name.clone(), b, v.shape().to_vec(), Dtype::BF16)
                } else {
                    (name.clone(), v.data().to_vec(), v.shape().to_vec(), v.dtype())
                }
            })
            .collect();
        let views = bytes.iter().map(|(n, b, s, d)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()));
        std::fs::write(t.path().join(&file), safetensors::serialize(views, None).unwrap()).unwrap();
        for name in part {
            weight_map.insert(name.clone(), Value::String(file.clone()));
        }
    }
    let index = serde_json::json!({ "metadata": { "total_size": raw.len() }, "weight_map": weight_map });
    std::fs::write(t.path().join("model.safetensors.index.json"), serde_json::to_vec_pretty(&index).unwrap()).unwrap();
    t
}

#[test]
fn sharded_checkpoints_load_and_import_like_one_file() {
    let sharded = sharded_copy("qwen3-sharded", 3, &[]);
    assert!(std::fs::read_dir(sharded.path()).unwrap().filter(|e| {
        e.as_ref().unwrap().file_name().to_string_lossy().ends_with("-of-00003.safetensors")
    }).count() == 3);
    let one = ModelWeights::load(&golden_dir()).unwrap();
    let three = ModelWeights::load(sharded.path()).unwrap();
    assert_eq!(one.fingerprint(), three.fingerprint());

    // The streaming import writes the same bytes as serialising the whole model in memory, from
    // one file or from shards, at every precision.
    for precision in [Precision::Int8, Precision::F16, Precision::F32] {
        let whole = format::to_bytes(&one, precision, "p").unwrap();
        for dir in [golden_dir(), sharded.path().to_path_buf()] {
            let out = sharded.path().join("out.ponder");
            let report = ponder::model::hf::import_hf_dir(&dir, precision, "p", &out).unwrap();
            assert_eq!(report.tensors, one.tensors.len());
            assert_eq!(report.parameters, one.tensors.values().map(|t| t.numel()).sum::<usize>());
            assert!(std::fs::read(&out).unwrap() == whole, "{precision:?} import of {} differs", dir.display());
            format::read_file(&out).unwrap();
        }
    }
    // No temporary file is left beside the output.
    let leftovers: Vec<String> = std::fs::read_dir(sharded.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn bf16_checkpoints_are_read_and_quantized() {
    let bf = ["embed_tokens.weight", "layers.1.mlp.up_proj.weight", "layers.2.input_layernorm.weight"];
    let t = sharded_copy("qwen3-bf16", 2, &bf);
    let exact = ModelWeights::load(&golden_dir()).unwrap();
    let w = ModelWeights::load(t.path()).unwrap();
    for (ours, hf) in [("emb.word", bf[0]), ("layer.1.up.weight", bf[1]), ("layer.2.attn_norm.weight", bf[2])] {
        let (a, b) = (exact.get(ours).unwrap().to_f32(), w.get(ours).unwrap().to_f32());
        assert_eq!(w.get(ours).unwrap().dtype, DType::F32, "{hf} is widened to f32 when loaded");
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(half::bf16::from_f32(*x).to_f32(), *y, "{hf}");
        }
        assert!(max_abs(&a, &b) > 0.0, "{hf} really went through bf16");
    }
    // An int8 import of it embeds like the f32 golden.
    let out = t.path().join("bf16.int8.ponder");
    ponder::model::hf::import_hf_dir(t.path(), Precision::Int8, "", &out).unwrap();
    let q = format::read_file(&out).unwrap();
    let items = expected();
    let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
    let got = Embedder::new(&q, Precision::Int8, DeviceChoice::Cpu).unwrap().embed(&texts).unwrap();
    for (v, item) in got.iter().zip(&items) {
        let c = cosine(v, &item.pooled);
        assert!(c >= 0.99, "bf16 → int8 pooled cosine {c}");
    }
}

#[test]
fn broken_shard_sets_are_named() {
    // A shard the index lists is missing.
    let t = sharded_copy("qwen3-shard-missing", 2, &[]);
    std::fs::remove_file(t.path().join("model-00002-of-00002.safetensors")).unwrap();
    let err = ModelWeights::load(t.path()).err().expect("refused");
    assert!(matches!(&err, Error::MissingFile(p) if p.ends_with("model-00002-of-00002.safetensors")), "{err}");

    // The index names a tensor the shard does not hold.
    let t = sharded_copy("qwen3-shard-lies", 2, &[]);
    let path = t.path().join("model.safetensors.index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let map = index["weight_map"].as_object_mut().unwrap();
    let wrong = if map["norm.weight"] == "model-00001-of-00002.safetensors" { "model-00002-of-00002.safetensors" } else { "model-00001-of-00002.safetensors" };
    map.insert("norm.weight".into(), Value::String(wrong.into()));
    std::fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();
    let err = ModelWeights::load(t.path()).err().expect("refused").to_string();
    assert!(err.contains(wrong) && err.contains("norm.weight"), "{err}");

    // The index leaves a tensor out, or points outside the folder, or is not JSON.
    let mut index: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    index["weight_map"].as_object_mut().unwrap().remove("norm.weight");
    std::fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();
    let err = ModelWeights::load(t.path()).err().expect("refused").to_string();
    assert!(err.contains("norm.weight") && err.contains("shards listed in"), "{err}");
    index["weight_map"]["norm.weight"] = Value::String("../model-00001-of-00002.safetensors".into());
    std::fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();
    let err = ModelWeights::load(t.path()).err().expect("refused").to_string();
    assert!(err.contains("not a file in this folder"), "{err}");
    std::fs::write(&path, b"{ not json").unwrap();
    let err = ModelWeights::load(t.path()).err().expect("refused");
    assert!(matches!(&err, Error::Corrupt { .. }), "{err}");

    // A damaged shard is named, not reported as a missing tensor.
    let t = sharded_copy("qwen3-shard-damaged", 2, &[]);
    std::fs::write(t.path().join("model-00002-of-00002.safetensors"), b"\x08\0\0\0\0\0\0\0{garbage").unwrap();
    let err = ModelWeights::load(t.path()).err().expect("refused");
    assert!(matches!(&err, Error::Corrupt { path, .. } if path.ends_with("model-00002-of-00002.safetensors")), "{err}");
}
