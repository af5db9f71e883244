//! ModernBERT and the decoder embedder (Qwen3) on burn's devices (`src/embed/burn_archs.rs`):
//! `--device flex` (burn's CPU backend) and `--device gpu` (wgpu; skipped, with a note, when
//! there is no usable adapter or PONDER_SKIP_GPU_TESTS is set) against the Hugging Face
//! goldens in `tests/golden/modernbert-tiny/` and `tests/golden/qwen3-tiny/`, with the texts
//! in one padded batch (padding, sliding-window and causal masks all matter) and one by one.

use crate::common::{cosine, max_abs};
use ponder::device::DeviceChoice;
use ponder::model::{ModelWeights, Precision};
use ponder::{Embedder, Error};

/// (text, pooled vector) of every golden item.
fn golden(name: &str) -> (ModelWeights, Vec<(String, Vec<f32>)>) {
    let dir = crate::common::repo().join("tests/golden").join(name);
    let e: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let items = e["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let pooled = t["pooled"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
            (t["text"].as_str().unwrap().to_string(), pooled)
        })
        .collect();
    (ModelWeights::load(&dir).unwrap(), items)
}

/// The embedder on `choice`, or `None` (test skipped) when that is a GPU and none is usable.
fn embedder(w: &ModelWeights, choice: DeviceChoice) -> Option<Embedder> {
    if choice == DeviceChoice::Gpu && std::env::var_os("PONDER_SKIP_GPU_TESTS").is_some() {
        eprintln!("skipped: PONDER_SKIP_GPU_TESTS is set");
        return None;
    }
    match Embedder::new(w, Precision::F32, choice) {
        Ok(e) => Some(e),
        Err(Error::Device(msg)) if choice == DeviceChoice::Gpu => {
            eprintln!("skipped: no usable wgpu adapter ({msg})");
            None
        }
        Err(e) => panic!("{choice:?}: {e}"),
    }
}

/// Embeds the golden texts all in one batch and one by one; checks both against the golden.
fn check(name: &str, choice: DeviceChoice) {
    let (w, items) = golden(name);
    let Some(emb) = embedder(&w, choice) else { return };
    assert!(!emb.is_native_cpu(), "{name} on {choice:?} should run on burn: {}", emb.describe());
    assert_eq!(emb.precision_name(), "f32");
    // 64 MiB of attention scores per batch, as for BERT on burn.
    assert_eq!(emb.max_attention_bytes, 64 << 20);
    let texts: Vec<&str> = items.iter().map(|(t, _)| t.as_str()).collect();
    let batched = emb.embed(&texts).unwrap();
    let alone: Vec<Vec<f32>> = texts.iter().map(|t| emb.embed(&[t]).unwrap().remove(0)).collect();
    for (label, got) in [("batched", &batched), ("alone", &alone)] {
        let err = got.iter().zip(&items).map(|(g, (_, p))| max_abs(g, p)).fold(0.0, f32::max);
        let cos = got.iter().zip(&items).map(|(g, (_, p))| cosine(g, p)).fold(1.0, f32::min);
        eprintln!("{name} on {} ({label}): min cosine {cos:.7}, pooled max abs err {err:.2e}", emb.describe());
        assert!(cos >= 0.9999, "{name} {label}: min cosine {cos}");
        assert!(err <= 2e-5, "{name} {label}: pooled vectors differ by {err}");
    }
    let drift = batched.iter().zip(&alone).map(|(a, b)| max_abs(a, b)).fold(0.0, f32::max);
    assert!(drift <= 1e-5, "{name}: padding changes vectors by {drift}");
}

#[test]
fn modernbert_on_flex_matches_the_golden() {
    check("modernbert-tiny", DeviceChoice::Flex);
}

#[test]
fn qwen3_on_flex_matches_the_golden() {
    check("qwen3-tiny", DeviceChoice::Flex);
}

#[test]
fn modernbert_on_gpu_matches_the_golden() {
    check("modernbert-tiny", DeviceChoice::Gpu);
}

#[test]
fn qwen3_on_gpu_matches_the_golden() {
    check("qwen3-tiny", DeviceChoice::Gpu);
}

#[test]
fn int8_files_run_in_f32_on_burn_and_empty_batches_are_fine() {
    let (w, items) = golden("qwen3-tiny");
    let bytes = ponder::model::format::to_bytes(&w, Precision::Int8, "test").unwrap();
    let path = std::path::Path::new("qwen3-tiny.int8.ponder");
    let q = ponder::model::format::read_bytes(ponder::model::weights::Bytes::from_vec(bytes), path).unwrap();
    let emb = Embedder::new(&q, Precision::Int8, DeviceChoice::Flex).unwrap();
    assert_eq!(emb.precision_name(), "f32");
    let texts: Vec<&str> = items.iter().map(|(t, _)| t.as_str()).collect();
    let got = emb.embed(&texts).unwrap();
    let cos = got.iter().zip(&items).map(|(g, (_, p))| cosine(g, p)).fold(1.0, f32::min);
    assert!(cos >= 0.99, "dequantized int8 weights: min cosine {cos}");
    assert!(emb.embed(&[]).unwrap().is_empty());
}

#[test]
fn decoder_on_flex_appends_eos_when_the_tokenizer_does_not() {
    let (w, items) = golden("qwen3-tiny");
    let mut tok: serde_json::Value = serde_json::from_slice(&w.tokenizer_json).unwrap();
    tok["post_processor"] = serde_json::Value::Null;
    let w = ModelWeights { tokenizer_json: serde_json::to_vec(&tok).unwrap(), ..w };
    let emb = Embedder::new(&w, Precision::F32, DeviceChoice::Flex).unwrap();
    let texts: Vec<&str> = items.iter().map(|(t, _)| t.as_str()).collect();
    let eos = w.config.decoder.as_ref().unwrap().eos_token_id.unwrap();
    assert!(emb.tokenizer().encode(&texts).unwrap().iter().all(|e| e.ids.last() != Some(&eos)));
    for (g, (text, p)) in emb.embed(&texts).unwrap().iter().zip(&items) {
        assert!(max_abs(g, p) <= 2e-5, "{text:?}");
    }
}
