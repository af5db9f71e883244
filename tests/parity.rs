//! Parity of every model path against the independent f32 reference in ../shared/golden.

mod common;

use common::{cosine, golden, minilm_dir};
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
