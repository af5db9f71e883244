//! `ponder train distill`: a 3-layer student of a (tiny, 4-layer) teacher trains on a handful
//! of unlabeled texts, moves toward its teacher, stops at --max-minutes and resumes from its
//! checkpoint to the weights of an uninterrupted run, refuses a checkpoint made with other
//! settings, and writes a model file that loads with 3 layers and embeds.

use std::process::Command;

use crate::common::{write_tiny_bert, TempDir};
use ponder::model::{ModelWeights, Precision};

const TEXTS: &[(&str, &str)] = &[
    ("Bread", "Sourdough bread rises overnight in the fridge before baking in a hot oven. The crust darkens as sugars caramelise."),
    ("Bread", "Knead the dough for ten minutes so the gluten develops and the loaf holds its shape when it bakes."),
    ("Water", "Water boils at one hundred degrees Celsius at sea level and at lower temperatures high on mountains."),
    ("Moon", "The Moon orbits the Earth every twenty-seven days and always shows the same face. Tides follow its pull."),
    ("Rust", "The Rust borrow checker rejects programs that keep two mutable references to the same value alive."),
    ("Rust", "Cargo builds Rust crates, runs their tests and downloads their dependencies from a registry."),
    ("Bees", "Honey bees dance to tell the hive where flowers are. A queen lays up to two thousand eggs a day."),
    ("Piano", "A grand piano has eighty-eight keys and three pedals; tuning it adjusts more than two hundred strings."),
];

fn ponder(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ponder")).args(args).env("PONDER_NO_GPU", "1").env("RAYON_NUM_THREADS", "1").output().unwrap()
}

/// A tiny random BERT (hidden 32) with 4 layers, as a ponder file: the MiniLM-sized teacher
/// works the same way but writing its student's file (zstd over the embedding table) takes
/// longer than this whole test.
fn tiny_teacher(tmp: &TempDir) -> String {
    let hf = tmp.path().join("tiny");
    std::fs::create_dir_all(&hf).unwrap();
    write_tiny_bert(&hf, false, None);
    let mut w = ModelWeights::load(&hf).unwrap();
    let two = w.config.num_layers;
    let copies: Vec<(String, _)> = w
        .tensors
        .iter()
        .filter_map(|(n, t)| {
            let rest = n.strip_prefix("layer.")?;
            let (l, tail) = rest.split_once('.')?;
            Some((format!("layer.{}.{tail}", l.parse::<usize>().ok()? + two), t.clone()))
        })
        .collect();
    w.tensors.extend(copies);
    w.config.num_layers = 2 * two;
    let path = tmp.path().join("teacher.ponder");
    ponder::model::format::write_file(&w, Precision::F32, "tiny teacher", &path).unwrap();
    path.to_str().unwrap().to_string()
}

fn distill(teacher: &str, data: &str, out: &str, extra: &[&str]) -> (serde_json::Value, String) {
    let mut args = vec![
        "--threads", "1", "train", "distill", "--teacher", teacher, "--layers", "3", "--data", data, "--out", out,
        "--steps", "6", "--batch", "4", "--max-len", "48", "--max-words", "30", "--lr", "2e-3", "--val-passages", "8",
        "--device", "flex", "--progress-every", "1",
    ];
    args.extend_from_slice(extra);
    let o = ponder(&args);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{stderr}");
    (serde_json::from_slice(&o.stdout).expect("a JSON report"), stderr)
}

fn max_diff(a: &ModelWeights, b: &ModelWeights) -> f32 {
    let mut worst = 0f32;
    for (name, t) in &a.tensors {
        for (p, q) in t.to_f32().iter().zip(b.tensors[name].to_f32()) {
            worst = worst.max((p - q).abs());
        }
    }
    worst
}

#[test]
fn distill_runs_resumes_lowers_its_loss_and_writes_a_3_layer_student() {
    let tmp = TempDir::new("distill");
    let teacher = tiny_teacher(&tmp);
    let teacher = teacher.as_str();
    let data = tmp.path().join("texts.jsonl");
    let lines: String =
        TEXTS.iter().map(|(t, x)| serde_json::json!({"title": t, "text": x}).to_string() + "\n").collect();
    std::fs::write(&data, lines).unwrap();
    let data = data.to_str().unwrap();
    let (a, b) = (tmp.path().join("a.ponder"), tmp.path().join("b.ponder"));
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());

    // Uninterrupted: validation (on the training texts, too few to hold any back) at step 0
    // and at the end; training brings the student's vectors closer to the teacher's.
    let (report, _) = distill(teacher, data, a, &[]);
    assert_eq!(report["steps_done"], 6);
    assert_eq!(report["layers"], serde_json::json!([0, 2, 3]));
    let val = report["validation"].as_array().unwrap();
    assert_eq!(val.len(), 2);
    let cos = |i: usize, k: &str| val[i][1][k].as_f64().unwrap();
    assert!(cos(1, "passage_cosine") > cos(0, "passage_cosine") + 0.01, "{val:?}");
    assert!(cos(1, "query_cosine") > cos(0, "query_cosine") + 0.01, "{val:?}");

    // Stopped by --max-minutes after its first step, then resumed by the same command.
    let (stopped, stderr) = distill(teacher, data, b, &["--max-minutes", "0"]);
    assert_eq!(stopped["steps_done"], 1, "{stderr}");
    assert!(stderr.contains("--max-minutes"), "{stderr}");
    let (resumed, stderr) = distill(teacher, data, b, &[]);
    assert!(stderr.contains("resumed from") && stderr.contains("at step 1"), "{stderr}");
    assert_eq!(resumed["steps_done"], 6);

    // Other loss settings refuse the checkpoint instead of mixing two runs.
    let o = ponder(&[
        "--threads", "1", "train", "distill", "--teacher", teacher, "--data", data, "--out", b, "--steps", "6", "--batch", "4", "--max-len", "48",
        "--max-words", "30", "--lr", "5e-4", "--val-passages", "8", "--device", "flex", "--kl-weight", "0.5",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("another model"), "{}", String::from_utf8_lossy(&o.stderr));

    // The resumed student is the uninterrupted one, and it is a working 3-layer model.
    let (wa, wb) = (ModelWeights::load(std::path::Path::new(a)).unwrap(), ModelWeights::load(std::path::Path::new(b)).unwrap());
    assert_eq!(wa.config.num_layers, 3);
    assert!(!wa.tensors.contains_key("layer.3.q.weight"));
    let d = max_diff(&wa, &wb);
    assert!(d < 1e-6, "resumed student differs by {d}");
    let e = ponder::Embedder::new(&wa, Precision::Int8, ponder::device::DeviceChoice::Cpu).unwrap();
    let v = e.embed(&["how long should dough rise", "Sourdough bread rises overnight"]).unwrap();
    assert_eq!(v[0].len(), 32);
    assert!(v.iter().flatten().all(|x| x.is_finite()));

    // Bad input is an error, not a panic.
    let o = ponder(&["train", "distill", "--teacher", teacher, "--data", data, "--out", a, "--layers", "0,9", "--device", "flex"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--layers"));
}

#[test]
fn a_teacher_of_another_architecture_trains_a_bert_student() {
    // The Qwen3 decoder golden (hidden 32) teaches a student started from the tiny BERT: the
    // same width, so both loss terms apply.
    let tmp = TempDir::new("distill-decoder");
    let student = tiny_teacher(&tmp);
    let teacher = crate::common::repo().join("tests/golden/qwen3-tiny");
    let teacher = teacher.to_str().unwrap();
    let data = tmp.path().join("texts.jsonl");
    let lines: String =
        TEXTS.iter().map(|(t, x)| serde_json::json!({"title": t, "text": x}).to_string() + "\n").collect();
    std::fs::write(&data, lines).unwrap();
    let data = data.to_str().unwrap();
    let out = tmp.path().join("s.ponder");
    let out = out.to_str().unwrap();
    // Without --student, a decoder cannot be cut into a BERT student: a clear refusal.
    let o = ponder(&["--threads", "1", "train", "distill", "--teacher", teacher, "--data", data, "--out", out, "--device", "flex"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("BERT-layout"), "{}", String::from_utf8_lossy(&o.stderr));
    let (report, _) = distill(teacher, data, out, &["--student", &student]);
    assert_eq!(report["steps_done"], 6);
    let val = report["validation"].as_array().unwrap();
    let cos = |i: usize, k: &str| val[i][1][k].as_f64().unwrap();
    assert!(cos(1, "passage_cosine") > cos(0, "passage_cosine"), "{val:?}");
    assert_eq!(ModelWeights::load(std::path::Path::new(out)).unwrap().config.num_layers, 3);

    // A teacher of another width: the ColBERT golden's vectors are 16 wide, the student 32.
    // With the KL weight at 0 nothing could train it: refused.
    let colbert = crate::common::repo().join("tests/golden/colbert-tiny");
    let out2 = tmp.path().join("k.ponder");
    let o = ponder(&[
        "--threads", "1", "train", "distill", "--teacher", colbert.to_str().unwrap(), "--student", &student, "--data", data,
        "--out", out2.to_str().unwrap(), "--device", "flex", "--kl-weight", "0", "--steps", "1",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("only the KL term"), "{}", String::from_utf8_lossy(&o.stderr));
    // With the KL term on, the 16-wide ColBERT teacher trains the 32-wide student.
    let (report, stderr) = distill(colbert.to_str().unwrap(), data, out2.to_str().unwrap(), &["--student", &student]);
    assert!(stderr.contains("training on the KL term alone"), "{stderr}");
    assert_eq!(report["steps_done"], 6);
    assert!(report["validation"][0][1]["passage_cosine"].is_null());
}
