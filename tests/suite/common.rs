//! Shared test helpers: the golden reference data, the f32 reference model directory, and a
//! tiny random BERT written in Hugging Face layout.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn golden_dir() -> PathBuf {
    repo().join("../shared/golden")
}

/// Golden texts and their reference embeddings (independent f32 implementation, max length 256).
pub fn golden() -> (Vec<String>, Vec<Vec<f32>>) {
    let texts: Vec<String> = std::fs::read_to_string(golden_dir().join("texts.jsonl"))
        .expect("../shared/golden/texts.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let vecs: Vec<Vec<f32>> = std::fs::read_to_string(golden_dir().join("minilm-f32-256.jsonl"))
        .expect("../shared/golden/minilm-f32-256.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(texts.len(), vecs.len());
    (texts, vecs)
}

/// The genuine all-MiniLM-L6-v2 directory (f32), fetched by scripts/fetch-minilm.sh.
pub fn minilm_dir() -> PathBuf {
    let dir = std::env::var_os("PONDER_MINILM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/hf/all-MiniLM-L6-v2"));
    assert!(
        dir.join("model.safetensors").exists(),
        "{} has no model.safetensors: run scripts/fetch-minilm.sh (scripts/test.sh does)",
        dir.display()
    );
    dir
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    ponder::embed::cosine(a, b)
}

/// Starts the `ponder` binary with `args`, its three standard streams piped and no GPU.
pub fn spawn_ponder(args: &[&str]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_ponder"))
        .args(args)
        .env("PONDER_NO_GPU", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// A scratch directory under target/, removed on drop.
pub struct TempDir(pub PathBuf);
impl TempDir {
    pub fn new(tag: &str) -> Self {
        // Every test runs in this one process: a counter keeps two same-named directories apart.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let p = repo().join("target/test-tmp").join(format!(
            "{tag}-{}-{}-{:?}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// Writes a tiny random BERT (hidden 32, 2 layers, 4 heads) with the MiniLM tokenizer.
/// `skip` leaves one HF tensor out; `classifier` makes it a BertForSequenceClassification.
pub fn write_tiny_bert(dir: &Path, classifier: bool, skip: Option<&str>) {
    let (v, h, i, l, p) = (30522usize, 32usize, 64usize, 2usize, 128usize);
    let arch = if classifier { "BertForSequenceClassification" } else { "BertModel" };
    let config = serde_json::json!({
        "architectures": [arch], "model_type": "bert", "vocab_size": v, "hidden_size": h,
        "num_hidden_layers": l, "num_attention_heads": 4, "intermediate_size": i,
        "max_position_embeddings": p, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
        "hidden_act": "gelu", "pad_token_id": 0
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::copy(minilm_dir().join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    let prefix = if classifier { "bert." } else { "" };
    let mut specs: Vec<(String, Vec<usize>)> = vec![
        ("embeddings.word_embeddings.weight".into(), vec![v, h]),
        ("embeddings.position_embeddings.weight".into(), vec![p, h]),
        ("embeddings.token_type_embeddings.weight".into(), vec![2, h]),
        ("embeddings.LayerNorm.weight".into(), vec![h]),
        ("embeddings.LayerNorm.bias".into(), vec![h]),
    ];
    for layer in 0..l {
        let n = |s: &str| format!("encoder.layer.{layer}.{s}");
        for t in ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"] {
            specs.push((n(&format!("{t}.weight")), vec![h, h]));
            specs.push((n(&format!("{t}.bias")), vec![h]));
        }
        specs.push((n("attention.output.LayerNorm.weight"), vec![h]));
        specs.push((n("attention.output.LayerNorm.bias"), vec![h]));
        specs.push((n("intermediate.dense.weight"), vec![i, h]));
        specs.push((n("intermediate.dense.bias"), vec![i]));
        specs.push((n("output.dense.weight"), vec![h, i]));
        specs.push((n("output.dense.bias"), vec![h]));
        specs.push((n("output.LayerNorm.weight"), vec![h]));
        specs.push((n("output.LayerNorm.bias"), vec![h]));
    }
    specs.push(("pooler.dense.weight".into(), vec![h, h]));
    specs.push(("pooler.dense.bias".into(), vec![h]));
    let mut named: Vec<(String, Vec<usize>)> = specs.into_iter().map(|(n, s)| (format!("{prefix}{n}"), s)).collect();
    if classifier {
        named.push(("classifier.weight".into(), vec![1, h]));
        named.push(("classifier.bias".into(), vec![1]));
    }
    let mut rng = Lcg(42);
    let mut buffers: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, shape) in named {
        if skip == Some(name.as_str()) {
            continue;
        }
        let n: usize = shape.iter().product();
        let is_ln_weight = name.contains("LayerNorm.weight");
        let vals: Vec<f32> = (0..n)
            .map(|_| if is_ln_weight { 1.0 + 0.1 * rng.next() } else { 0.2 * rng.next() })
            .collect();
        buffers.push((name, shape, vals.iter().flat_map(|x| x.to_le_bytes()).collect()));
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = buffers
        .iter()
        .map(|(n, s, b)| (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
}

/// Largest absolute difference between two equally long slices.
pub fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Copies a directory tree (a model directory, a sample corpus).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}
