//! Parity of every model path against the independent f32 reference in ../shared/golden.

use crate::common::{cosine, golden, minilm_dir};
use ponder::device::DeviceChoice;
use ponder::model::{ModelWeights, Precision};
use ponder::Embedder;

fn cosines(weights: &ModelWeights, precision: Precision, device: DeviceChoice) -> Vec<f32> {
    let (texts, want) = golden();
    let e = Embedder::new(weights, precision, device).unwrap();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let got = e.embed(&refs).unwrap();
    got.iter().zip(&want).map(|(g, w)| cosine(g, w)).collect()
}

fn check(label: &str, cos: &[f32], each: f32, mean: f32) {
    let avg = cos.iter().sum::<f32>() / cos.len() as f32;
    let min = cos.iter().cloned().fold(1.0, f32::min);
    eprintln!("{label}: min cosine {min:.6}, mean {avg:.6}");
    for (i, c) in cos.iter().enumerate() {
        assert!(*c >= each, "{label}: text {i} cosine {c} < {each}");
    }
    assert!(avg >= mean, "{label}: mean cosine {avg} < {mean}");
}

#[test]
fn golden_row0_is_the_published_vector() {
    let (_, want) = golden();
    let row0 = [-0.03448f32, 0.03102, 0.00673, 0.02611, -0.03936];
    for (a, b) in want[0].iter().zip(row0) {
        assert!((a - b).abs() < 1e-4);
    }
}

#[test]
fn f32_native_cpu_matches_reference() {
    let w = ModelWeights::load(&minilm_dir()).unwrap();
    check("f32 native cpu", &cosines(&w, Precision::F32, DeviceChoice::Cpu), 0.9999, 0.9999);
}

#[test]
fn f32_burn_flex_matches_reference() {
    let w = ModelWeights::load(&minilm_dir()).unwrap();
    check("f32 burn flex", &cosines(&w, Precision::F32, DeviceChoice::Flex), 0.9999, 0.9999);
}

#[test]
fn int8_embedded_default_matches_reference() {
    let w = ModelWeights::embedded_default().unwrap();
    check("int8 native cpu (embedded)", &cosines(&w, Precision::Int8, DeviceChoice::Cpu), 0.99, 0.995);
}

#[test]
fn int8_portable_kernel_matches_reference() {
    // The portable (non-VNNI) int8 path, forced through the environment switch in a child
    // process so that this process keeps the fast path for the other tests.
    if std::env::var_os("PONDER_NO_SIMD").is_some() {
        let w = ModelWeights::embedded_default().unwrap();
        assert!(!ponder::embed::kernels::has_vnni());
        check("int8 native cpu (portable)", &cosines(&w, Precision::Int8, DeviceChoice::Cpu), 0.99, 0.995);
        return;
    }
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["int8_portable_kernel_matches_reference", "--exact", "--nocapture"])
        .env("PONDER_NO_SIMD", "1")
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn f32_wgpu_matches_reference() {
    if std::env::var_os("PONDER_SKIP_GPU_TESTS").is_some() {
        eprintln!("skipped: PONDER_SKIP_GPU_TESTS is set");
        return;
    }
    let w = ModelWeights::load(&minilm_dir()).unwrap();
    check("f32 wgpu", &cosines(&w, Precision::F32, DeviceChoice::Gpu), 0.9999, 0.9999);
}

/// all-MiniLM-L6-v2 laid out as a Hugging Face `BertForSequenceClassification` directory:
/// `bert.`-prefixed encoder, its own pooler, and the fixed one-logit classifier that
/// scripts/cross-encoder-golden.py gives the reference (weight[i] = 0.5·sin(0.37·i + 0.1), bias 0.1).
fn minilm_cross_encoder(dir: &std::path::Path) {
    use safetensors::{tensor::TensorView, Dtype, SafeTensors};
    let src = minilm_dir();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut views: Vec<(String, TensorView)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| !n.ends_with("position_ids"))
        .map(|(n, v)| (format!("bert.{n}"), v))
        .collect();
    let h = 384;
    let cw: Vec<u8> = (0..h).map(|i| (0.5 * (0.37 * i as f64 + 0.1).sin()) as f32).flat_map(f32::to_le_bytes).collect();
    let cb: Vec<u8> = 0.1f32.to_le_bytes().to_vec();
    views.push(("classifier.weight".into(), TensorView::new(Dtype::F32, vec![1, h], &cw).unwrap()));
    views.push(("classifier.bias".into(), TensorView::new(Dtype::F32, vec![1], &cb).unwrap()));
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    config["architectures"] = serde_json::json!(["BertForSequenceClassification"]);
    config["num_labels"] = serde_json::json!(1);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::copy(src.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
}

/// Reference pairs and logits (tests/golden/cross-encoder-minilm.json, written by
/// scripts/cross-encoder-golden.py with the independent numpy BERT of ../shared/golden).
fn cross_encoder_golden() -> (Vec<(String, String)>, Vec<f32>) {
    let (texts, _) = golden();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/cross-encoder-minilm.json");
    let g: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let pairs = g["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (texts[p[0].as_u64().unwrap() as usize].clone(), texts[p[1].as_u64().unwrap() as usize].clone()))
        .collect();
    let logits = g["logits"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    (pairs, logits)
}

fn check_cross_encoder(label: &str, precision: Precision, device: DeviceChoice, tol: f32, min_concordance: f32) {
    let dir = crate::common::TempDir::new("cross-encoder");
    minilm_cross_encoder(dir.path());
    let w = ModelWeights::load(dir.path()).unwrap();
    assert_eq!(w.config.head, ponder::model::Head::Classifier);
    assert_eq!(w.config.max_seq_len, 512);
    let (pairs, want) = cross_encoder_golden();
    let refs: Vec<(&str, &str)> = pairs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    // All pairs in one call: batched and padded, unlike the reference (one pair per pass).
    let got = Embedder::new(&w, precision, device).unwrap().score_pairs(&refs).unwrap();
    let worst = got.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0.0, f32::max);
    eprintln!("{label}: max |logit - reference| {worst:.2e} (reference logits span {:.3})",
        want.iter().cloned().fold(f32::MIN, f32::max) - want.iter().cloned().fold(f32::MAX, f32::min));
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() <= tol, "{label}: pair {i} logit {g} vs reference {w}");
    }
    // What a reranker needs: the pairs in the reference's order (pairwise concordance).
    let (mut agree, mut total) = (0, 0);
    for i in 0..want.len() {
        for j in i + 1..want.len() {
            total += 1;
            agree += usize::from((want[i] - want[j]) * (got[i] - got[j]) > 0.0);
        }
    }
    let concordance = agree as f32 / total as f32;
    eprintln!("{label}: pairwise order agreement {concordance:.3}");
    assert!(concordance >= min_concordance, "{label}: order agreement {concordance} < {min_concordance}");
    // One pair at a time through the reranker API gives the same logits.
    let rr = ponder::rerank::Reranker::new(&w, precision, device).unwrap();
    for (i, (q, p)) in refs.iter().enumerate().step_by(5) {
        let one = rr.score(q, &[p]).unwrap()[0];
        assert!((one - got[i]).abs() < 1e-3, "{label}: pair {i} alone {one} vs batched {}", got[i]);
    }
}

#[test]
fn cross_encoder_f32_native_matches_reference() {
    check_cross_encoder("cross-encoder f32 native cpu", Precision::F32, DeviceChoice::Cpu, 1e-3, 1.0);
}

#[test]
fn cross_encoder_f32_burn_flex_matches_reference() {
    check_cross_encoder("cross-encoder f32 burn flex", Precision::F32, DeviceChoice::Flex, 1e-3, 1.0);
}

#[test]
fn cross_encoder_int8_matches_reference() {
    check_cross_encoder("cross-encoder int8 native cpu", Precision::Int8, DeviceChoice::Cpu, 0.1, 0.9);
}

#[test]
fn cross_encoder_f32_wgpu_matches_reference() {
    if std::env::var_os("PONDER_SKIP_GPU_TESTS").is_some() {
        eprintln!("skipped: PONDER_SKIP_GPU_TESTS is set");
        return;
    }
    check_cross_encoder("cross-encoder f32 wgpu", Precision::F32, DeviceChoice::Gpu, 1e-3, 1.0);
}
