//! The `ponder embed` command contract, checked from outside the process.

use std::io::Write;

fn ponder(args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = crate::common::spawn_ponder(args);
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn embed_writes_one_vector_per_line_in_order() {
    let input = "\"hello world\"\n\"\"\n\"   \"\n\"Paris is the capital of France.\"\n\"hello world\"\n";
    let out = ponder(&["embed"], input);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Vec<f32>> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    for v in &lines {
        assert_eq!(v.len(), 384);
        let n: f32 = v.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-3);
    }
    assert_eq!(lines[0], lines[4], "same text, same vector");
    assert!(crate::common::cosine(&lines[0], &lines[3]) < 0.9);
    // Golden check through the CLI: "hello world" starts like the published vector.
    let row0 = [-0.03448f32, 0.03102, 0.00673, 0.02611, -0.03936];
    let c = crate::common::cosine(&lines[0][..5], &row0);
    assert!(c > 0.95, "first dims {:?}", &lines[0][..5]);
}

#[test]
fn embed_f32_from_hf_dir_matches_golden_exactly_enough() {
    let (texts, want) = crate::common::golden();
    let input: String = texts.iter().map(|t| serde_json::to_string(t).unwrap() + "\n").collect();
    let dir = crate::common::minilm_dir();
    let out = ponder(&["embed", "--model", dir.to_str().unwrap(), "--precision", "f32", "--device", "cpu"], &input);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: Vec<Vec<f32>> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!(crate::common::cosine(g, w) >= 0.9999);
    }
}

#[test]
fn a_line_that_is_not_a_json_string_is_an_error_naming_the_line() {
    for bad in ["not json", "42", "[\"a\"]", ""] {
        let out = ponder(&["embed"], &format!("\"ok\"\n{bad}\n\"fine\"\n"));
        assert!(!out.status.success(), "input {bad:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("line 2"), "stderr for {bad:?}: {err}");
        assert!(out.stdout.is_empty(), "nothing written on bad input");
    }
}

#[test]
fn empty_input_gives_empty_output() {
    let out = ponder(&["embed"], "");
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
}

#[test]
fn missing_model_path_is_a_clear_error() {
    let out = ponder(&["embed", "--model", "/nonexistent/model.ponder"], "\"x\"\n");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/model.ponder"), "{err}");
}

#[test]
fn demo_runs_on_the_embedded_model() {
    let out = ponder(&["demo"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = String::from_utf8(out.stdout).unwrap();
    assert!(s.contains("cosine similarity"));
}
