//! Loading and ponder's model format: round trips, quantization, typed errors for bad files,
//! and agreement between the runtimes on a tiny random BERT.

use crate::common::{cosine, write_tiny_bert, TempDir};
use ponder::device::DeviceChoice;
use ponder::model::{format, DType, ModelWeights, Precision};
use ponder::{Embedder, Error};

const TEXTS: &[&str] = &["hello world", "", "   ", "a much longer sentence about proteins and their folding, with punctuation!"];

fn tiny(classifier: bool) -> (TempDir, ModelWeights) {
    let dir = TempDir::new("tiny");
    write_tiny_bert(dir.path(), classifier, None);
    let w = ModelWeights::load(dir.path()).unwrap();
    (dir, w)
}

#[test]
fn f32_file_round_trips_exactly() {
    let (dir, w) = tiny(false);
    let path = dir.path().join("m.ponder");
    format::write_file(&w, Precision::F32, "test", &path).unwrap();
    let r = ModelWeights::load(&path).unwrap();
    assert_eq!(r.config, w.config);
    assert_eq!(r.tokenizer_json, w.tokenizer_json);
    for (name, t) in &w.tensors {
        assert_eq!(r.get(name).unwrap().to_f32(), t.to_f32(), "{name}");
    }
    let a = Embedder::new(&w, Precision::F32, DeviceChoice::Cpu).unwrap().embed(TEXTS).unwrap();
    let b = Embedder::new(&r, Precision::F32, DeviceChoice::Cpu).unwrap().embed(TEXTS).unwrap();
    assert_eq!(a, b);
}

#[test]
fn import_is_deterministic_and_int8_stores_linear_layers_as_i8() {
    let (_dir, w) = tiny(false);
    let a = format::to_bytes(&w, Precision::Int8, "x").unwrap();
    let b = format::to_bytes(&w, Precision::Int8, "x").unwrap();
    assert_eq!(a, b);
    let r = format::read_bytes(ponder::model::weights::Bytes::from_vec(a.clone()), "mem".as_ref()).unwrap();
    assert_eq!(r.get("layer.0.q.weight").unwrap().dtype, DType::I8);
    assert_eq!(r.get("layer.1.down.weight").unwrap().dtype, DType::I8);
    assert_eq!(r.get("emb.word").unwrap().dtype, DType::F16);
    assert_eq!(r.get("layer.0.q.bias").unwrap().dtype, DType::F32);
    assert_eq!(format::precision_of(&r), Precision::Int8);
    let f32_len = format::to_bytes(&w, Precision::F32, "x").unwrap().len();
    // The tiny model is mostly its (f16) embedding table; Linear layers shrink 4x.
    assert!(a.len() * 10 < f32_len * 6, "int8 file {} vs f32 {}", a.len(), f32_len);
    let q = r.get("layer.0.up.weight").unwrap();
    assert_eq!(q.data.len(), q.numel());
}

#[test]
fn runtimes_agree_on_a_tiny_model() {
    let (_dir, w) = tiny(false);
    let native = Embedder::new(&w, Precision::F32, DeviceChoice::Cpu).unwrap().embed(TEXTS).unwrap();
    let flex = Embedder::new(&w, Precision::F32, DeviceChoice::Flex).unwrap().embed(TEXTS).unwrap();
    let int8 = Embedder::new(&w, Precision::Int8, DeviceChoice::Cpu).unwrap().embed(TEXTS).unwrap();
    for i in 0..TEXTS.len() {
        assert_eq!(native[i].len(), 32);
        let n: f32 = native[i].iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-4, "not normalised");
        assert!(cosine(&native[i], &flex[i]) > 0.99999, "native vs flex, text {i}");
        assert!(cosine(&native[i], &int8[i]) > 0.99, "native f32 vs int8, text {i}");
    }
    // Batching and order: embedding one at a time gives the same vectors.
    let e = Embedder::new(&w, Precision::F32, DeviceChoice::Cpu).unwrap();
    for (i, t) in TEXTS.iter().enumerate() {
        let one = e.embed(&[t]).unwrap();
        assert!(cosine(&one[0], &native[i]) > 0.99999);
    }
}

#[test]
fn cross_encoder_layout_loads_and_scores_on_both_runtimes() {
    let (_dir, w) = tiny(true);
    assert_eq!(w.config.head, ponder::model::Head::Classifier);
    let pairs = [("what is a protein", "Proteins are chains of amino acids."), ("q", "")];
    let a = Embedder::new(&w, Precision::F32, DeviceChoice::Cpu).unwrap().score_pairs(&pairs).unwrap();
    let b = Embedder::new(&w, Precision::F32, DeviceChoice::Flex).unwrap().score_pairs(&pairs).unwrap();
    assert_eq!(a.len(), 2);
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-4, "{x} vs {y}");
    }
    assert!((a[0] - a[1]).abs() > 1e-6, "different pairs should score differently");
}

#[test]
fn corrupt_truncated_and_future_files_are_reported_with_their_path() {
    let (dir, w) = tiny(false);
    let path = dir.path().join("m.ponder");
    format::write_file(&w, Precision::Int8, "test", &path).unwrap();
    let good = std::fs::read(&path).unwrap();

    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    std::fs::write(&path, &flipped).unwrap();
    let err = ModelWeights::load(&path).err().unwrap();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("m.ponder") && err.to_string().contains("checksum"), "{err}");

    std::fs::write(&path, &good[..good.len() - 100]).unwrap();
    let err = ModelWeights::load(&path).err().unwrap();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");

    let mut future = good.clone();
    future[8] = 99;
    std::fs::write(&path, &future).unwrap();
    let err = ModelWeights::load(&path).err().unwrap();
    assert!(err.to_string().contains("version 99"), "{err}");

    std::fs::write(&path, b"not a model").unwrap();
    assert!(matches!(ModelWeights::load(&path), Err(Error::Corrupt { .. })));
}

#[test]
fn hf_errors_name_what_is_wrong() {
    // Missing tensor: named.
    let dir = TempDir::new("missing-tensor");
    write_tiny_bert(dir.path(), false, Some("encoder.layer.1.output.dense.weight"));
    let err = ModelWeights::load(dir.path()).err().unwrap();
    assert!(matches!(err, Error::TensorMismatch { .. }), "{err}");
    assert!(err.to_string().contains("encoder.layer.1.output.dense.weight"), "{err}");

    // Shape mismatch: the config says 3 layers' worth of intermediate size differs.
    let dir = TempDir::new("shape");
    write_tiny_bert(dir.path(), false, None);
    let cfg = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    std::fs::write(dir.path().join("config.json"), cfg.replace("\"intermediate_size\":64", "\"intermediate_size\":65")).unwrap();
    let err = ModelWeights::load(dir.path()).err().unwrap();
    assert!(err.to_string().contains("intermediate.dense.weight") && err.to_string().contains("[64, 32]"), "{err}");

    // Unsupported architecture.
    let cfg = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    std::fs::write(dir.path().join("config.json"), cfg.replace("\"bert\"", "\"gpt2\"")).unwrap();
    let err = ModelWeights::load(dir.path()).err().unwrap();
    assert!(matches!(err, Error::UnsupportedArchitecture(ref a) if a == "gpt2"), "{err}");

    // Missing file.
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    let err = ModelWeights::load(dir.path()).err().unwrap();
    assert!(matches!(err, Error::MissingFile(ref p) if p.ends_with("config.json")), "{err}");

    // Corrupt safetensors.
    let dir = TempDir::new("bad-st");
    write_tiny_bert(dir.path(), false, None);
    std::fs::write(dir.path().join("model.safetensors"), b"\x08\0\0\0\0\0\0\0{garbage").unwrap();
    let err = ModelWeights::load(dir.path()).err().unwrap();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
}

#[test]
fn sentence_transformers_settings_are_read() {
    let dir = ponder::model::ModelConfig::from_hf_dir(&crate::common::minilm_dir()).unwrap();
    assert_eq!(dir.max_seq_len, 256, "sentence_bert_config.json max_seq_length overrides the tokenizer's 128");
    assert_eq!(dir.pooling, ponder::model::Pooling::Mean);
    assert!(dir.normalize);
    let w = ModelWeights::embedded_default().unwrap();
    assert_eq!(w.config, dir);
    // Long input is truncated at 256 tokens, not the tokenizer file's 128.
    let e = Embedder::new(&w, Precision::Int8, DeviceChoice::Cpu).unwrap();
    let long = "word ".repeat(1000);
    assert_eq!(e.tokenizer().encode(&[&long]).unwrap()[0].ids.len(), 256);
    assert_eq!(e.tokenizer().encode(&["hello world"]).unwrap()[0].ids, vec![101, 7592, 2088, 102]);
}
