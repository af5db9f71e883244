//! Training a cross-encoder: it learns, a killed run resumes to the same weights, a broken
//! checkpoint is an error, the exported file scores like the trained tensors, and the
//! reranker reaches `search` and `eval` through the CLI.

use std::path::Path;
use std::process::Command;

use burn::tensor::Device;
use crate::common::{minilm_dir, write_tiny_bert, TempDir};
use ponder::model::{ModelWeights, Precision};
use ponder::train::{self, Loss, TrainData, TrainOptions, Trainer};

/// Eight topics, two documents each; queries name their topic in other words.
const DOCS: &[(&str, &str)] = &[
    ("bread1", "Sourdough bread rises overnight in the fridge before baking in a hot oven."),
    ("bread2", "Knead the dough for ten minutes so the gluten develops and the loaf holds its shape."),
    ("boil1", "Water boils at one hundred degrees Celsius at sea level and lower on mountains."),
    ("boil2", "A pressure cooker raises the boiling point so food cooks faster."),
    ("moon1", "The Moon orbits the Earth every twenty-seven days and always shows the same face."),
    ("moon2", "Tides are caused mostly by the gravitational pull of the Moon."),
    ("rust1", "The Rust borrow checker rejects programs that keep two mutable references."),
    ("rust2", "Cargo builds Rust crates and downloads their dependencies."),
    ("bee1", "Honey bees dance to tell the hive where flowers are."),
    ("bee2", "A queen bee lays up to two thousand eggs a day in spring."),
    ("tax1", "Income tax returns are due in April for most people in the United States."),
    ("tax2", "Deductions lower the taxable income reported on a tax return."),
    ("bike1", "Pump bicycle tires to the pressure printed on the sidewall."),
    ("bike2", "A derailleur moves the bicycle chain between gears."),
    ("piano1", "A grand piano has eighty-eight keys and three pedals."),
    ("piano2", "Tuning a piano adjusts the tension of more than two hundred strings."),
];

const QUERIES: &[(&str, &str, &str)] = &[
    ("q1", "how long should dough proof", "bread1"),
    ("q2", "why knead a loaf", "bread2"),
    ("q3", "temperature where water turns to steam", "boil1"),
    ("q4", "why does a pressure cooker cook quickly", "boil2"),
    ("q5", "how long is a lunar orbit", "moon1"),
    ("q6", "what causes ocean tides", "moon2"),
    ("q7", "why does the compiler reject my mutable references", "rust1"),
    ("q8", "what tool fetches crate dependencies", "rust2"),
    ("q9", "how do bees communicate flower locations", "bee1"),
    ("q10", "how many eggs does a queen lay", "bee2"),
    ("q11", "when must I file my taxes", "tax1"),
    ("q12", "what reduces taxable income", "tax2"),
    ("q13", "how hard should I inflate my tires", "bike1"),
    ("q14", "what shifts gears on a bike", "bike2"),
    ("q15", "how many keys on a piano", "piano1"),
    ("q16", "how is a piano tuned", "piano2"),
];

fn write_collection(dir: &Path, split: &str) {
    std::fs::create_dir_all(dir.join("qrels")).unwrap();
    let corpus: String = DOCS
        .iter()
        .map(|(id, t)| serde_json::json!({"_id": id, "title": "", "text": t}).to_string() + "\n")
        .collect();
    std::fs::write(dir.join("corpus.jsonl"), corpus).unwrap();
    let queries: String =
        QUERIES.iter().map(|(id, t, _)| serde_json::json!({"_id": id, "text": t}).to_string() + "\n").collect();
    std::fs::write(dir.join("queries.jsonl"), queries).unwrap();
    let qrels: String = std::iter::once("query-id\tcorpus-id\tscore\n".to_string())
        .chain(QUERIES.iter().map(|(q, _, d)| format!("{q}\t{d}\t1\n")))
        .collect();
    std::fs::write(dir.join("qrels").join(format!("{split}.tsv")), qrels).unwrap();
}

fn tiny_opts(steps: usize) -> TrainOptions {
    TrainOptions { steps, negatives: 2, queries_per_step: 4, max_len: 32, lr: 1e-3, mine_depth: 5, ..Default::default() }
}

fn max_diff(a: &ModelWeights, b: &ModelWeights) -> f32 {
    let mut worst = 0f32;
    for (name, t) in &a.tensors {
        let (x, y) = (t.to_f32(), b.tensors[name].to_f32());
        assert_eq!(x.len(), y.len(), "{name}");
        for (p, q) in x.iter().zip(&y) {
            worst = worst.max((p - q).abs());
        }
    }
    worst
}

/// A tiny random BERT and the training collection, both under `tmp`.
fn tiny_setup(tmp: &TempDir) -> (ModelWeights, TrainData) {
    let (hf, data_dir) = (tmp.path().join("tiny"), tmp.path().join("data"));
    std::fs::create_dir_all(&hf).unwrap();
    write_tiny_bert(&hf, false, None);
    write_collection(&data_dir, "train");
    (ModelWeights::load(&hf).unwrap(), TrainData::load(&data_dir, "train", 5, None, &|_| {}).unwrap())
}

#[test]
fn a_resumed_run_ends_where_an_uninterrupted_one_does() {
    let tmp = TempDir::new("train-resume");
    let (init, data) = tiny_setup(&tmp);
    assert_eq!(data.queries(), QUERIES.len());

    let mut straight = Trainer::new(&init, tiny_opts(6), Device::flex(), tmp.path().join("a.ckpt")).unwrap();
    for _ in 0..6 {
        straight.train_step(&data).unwrap();
    }

    let ckpt = tmp.path().join("b.ckpt");
    let mut first = Trainer::new(&init, tiny_opts(6), Device::flex(), ckpt.clone()).unwrap();
    for _ in 0..3 {
        first.train_step(&data).unwrap();
    }
    first.save_checkpoint().unwrap();
    drop(first); // as if killed right after the checkpoint
    let mut resumed = Trainer::new(&init, tiny_opts(6), Device::flex(), ckpt.clone()).unwrap();
    assert_eq!(resumed.step(), 3);
    for _ in 0..3 {
        resumed.train_step(&data).unwrap();
    }
    let d = max_diff(&straight.weights(), &resumed.weights());
    assert!(d < 1e-5, "resumed weights differ by {d}");
    // Training moved the weights at all.
    let start = Trainer::new(&init, tiny_opts(6), Device::flex(), tmp.path().join("none.ckpt")).unwrap();
    assert!(max_diff(&start.weights(), &resumed.weights()) > 1e-4);

    // Other options refuse the checkpoint; a damaged checkpoint is reported, not a panic.
    let other = TrainOptions { negatives: 3, ..tiny_opts(6) };
    let err = Trainer::new(&init, other, Device::flex(), ckpt.clone()).err().expect("options mismatch").to_string();
    assert!(err.contains("other training options"), "{err}");
    let mut bytes = std::fs::read(&ckpt).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&ckpt, &bytes).unwrap();
    let err = Trainer::new(&init, tiny_opts(6), Device::flex(), ckpt.clone()).err().expect("corrupt").to_string();
    assert!(err.contains("b.ckpt"), "{err}");
}

#[test]
fn minilm_learns_to_rank_and_the_export_scores_the_same() {
    let tmp = TempDir::new("train-learn");
    let data_dir = tmp.path().join("data");
    write_collection(&data_dir, "train");
    write_collection(&data_dir, "test");
    let init = ModelWeights::load(&minilm_dir()).unwrap();
    let data = TrainData::load(&data_dir, "train", 5, None, &|_| {}).unwrap();
    for loss in [Loss::Listwise, Loss::Bce] {
        let opts = TrainOptions { loss, lr: 1e-4, warmup: 0.1, ..tiny_opts(24) };
        let mut t = Trainer::new(&init, opts, Device::flex(), tmp.path().join(format!("{loss:?}.ckpt"))).unwrap();
        let losses: Vec<f64> = (0..24).map(|_| t.train_step(&data).unwrap()).collect();
        let early: f64 = losses[..8].iter().sum::<f64>() / 8.0;
        let late: f64 = losses[16..].iter().sum::<f64>() / 8.0;
        assert!(late < 0.7 * early, "{loss:?}: loss {early:.3} -> {late:.3}");
    }

    // The full run: train, validate, export int8; the file is a cross-encoder that ranks
    // each query's own document above the other topics.
    let out = tmp.path().join("rr.int8.ponder");
    let rc = train::RunConfig {
        data: data_dir.clone(),
        val: Some(data_dir.clone()),
        val_split: "test".into(),
        val_queries: 16,
        val_candidates: 5,
        out: out.clone(),
        precision: Precision::Int8,
        checkpoint: tmp.path().join("rr.ckpt"),
        checkpoint_every: 10,
        eval_every: 0,
        progress_every: 0,
        max_minutes: None,
        dense_negatives: true,
    };
    let opts = TrainOptions { lr: 1e-4, ..tiny_opts(24) };
    let report = train::run(&init, opts, Device::flex(), &rc, None, &|_| {}).unwrap();
    assert_eq!(report.steps_done, 24);
    let v = report.validation.last().expect("validated").1;
    assert!(v.mrr >= 0.9, "validation MRR {}", v.mrr);

    let weights = ModelWeights::load(&out).unwrap();
    assert_eq!(weights.config.head, ponder::model::Head::Classifier);
    let rr = ponder::rerank::Reranker::new(&weights, Precision::Int8, ponder::device::DeviceChoice::Cpu).unwrap();
    let passages: Vec<&str> = DOCS.iter().map(|d| d.1).collect();
    let mut hits = 0;
    for (_, q, want) in QUERIES {
        let s = rr.score(q, &passages).unwrap();
        let best = (0..s.len()).max_by(|&a, &b| s[a].total_cmp(&s[b])).unwrap();
        hits += usize::from(DOCS[best].0 == *want);
    }
    assert!(hits >= 12, "top-1 on {hits}/16 queries");

    // f32 export through the native runtime gives the logits the burn model computed.
    let resumed = Trainer::new(&init, TrainOptions { lr: 1e-4, ..tiny_opts(24) }, Device::flex(), tmp.path().join("rr.ckpt")).unwrap();
    assert_eq!(resumed.step(), 24);
    let native = resumed.native(Precision::F32).unwrap();
    let f32_file = tmp.path().join("rr.f32.ponder");
    ponder::model::format::write_file(&resumed.weights(), Precision::F32, "test", &f32_file).unwrap();
    let burn = ponder::Embedder::new(&ModelWeights::load(&f32_file).unwrap(), Precision::F32, ponder::device::DeviceChoice::Flex).unwrap();
    let pairs: Vec<(&str, &str)> = QUERIES.iter().zip(DOCS).map(|(q, d)| (q.1, d.1)).collect();
    let (a, b) = (native.score_pairs(&pairs).unwrap(), burn.score_pairs(&pairs).unwrap());
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-3, "native {x} vs flex {y}");
    }

    // Distillation: the bi-encoder's margins move toward the reranker's.
    let teacher = ponder::Embedder::new(&weights, Precision::Int8, ponder::device::DeviceChoice::Cpu).unwrap();
    let opts = TrainOptions { distill: true, lr: 5e-5, ..tiny_opts(16) };
    let mut s = Trainer::new(&init, opts, Device::flex(), tmp.path().join("student.ckpt")).unwrap();
    assert!(s.train_step(&data).is_err(), "a distillation run needs its teacher");
    let losses: Vec<f64> = (0..16).map(|_| s.distill_step(&data, &teacher).unwrap()).collect();
    let (early, late) = (losses[..5].iter().sum::<f64>() / 5.0, losses[11..].iter().sum::<f64>() / 5.0);
    assert!(late < early, "margin-MSE {early:.3} -> {late:.3}");
    let student = s.weights();
    assert_eq!(student.config.head, ponder::model::Head::Embedding);
    let e = ponder::Embedder::new(&student, Precision::F32, ponder::device::DeviceChoice::Cpu).unwrap();
    let v = e.embed(&["tides"]).unwrap();
    let norm: f32 = v[0].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4);
}

fn ponder(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ponder")).args(args).env("PONDER_NO_GPU", "1").output().unwrap()
}

#[test]
fn search_and_eval_rerank_through_the_cli() {
    let tmp = TempDir::new("rerank-cli");
    let data_dir = tmp.path().join("col");
    write_collection(&data_dir, "test");
    let docs = tmp.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    for (id, text) in DOCS {
        std::fs::write(docs.join(format!("{id}.txt")), text).unwrap();
    }
    let index = tmp.path().join("index");
    let (idx, d) = (index.to_str().unwrap(), docs.to_str().unwrap());
    let o = ponder(&["index", d, "--index", idx]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // The built-in reranker: reranked JSON results, the right document first.
    let o = ponder(&["search", "temperature where water turns to steam", "--index", idx, "--rerank", "--json", "-k", "3"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0]["path"].as_str().unwrap().ends_with("boil1.txt"), "{lines:?}");

    // A model without a classifier head is refused by name.
    let o = ponder(&["search", "tides", "--index", idx, "--rerank", "--reranker", minilm_dir().to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a cross-encoder"));
    let o = ponder(&["search", "tides", "--index", idx, "--rerank", "--rerank-weight", "1.5"]);
    assert!(!o.status.success());

    // eval: weight 0 reproduces the retriever exactly; every grid cell is reported.
    let cache = tmp.path().join("cache");
    let o = ponder(&[
        "eval", data_dir.to_str().unwrap(), "--cache", cache.to_str().unwrap(), "--json", "--rerank",
        "--rerank-top", "3,5", "--rerank-weight", "0,0.5,1",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows: Vec<serde_json::Value> =
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 1 + 6 + 1, "{rows:?}");
    let base = rows[0]["ndcg@10"].as_f64().unwrap();
    for r in &rows[1..7] {
        if r["rerank_weight"].as_f64() == Some(0.0) {
            assert_eq!(r["ndcg@10"].as_f64().unwrap(), base, "{r}");
        }
    }
    assert!(rows[7]["rerank_ms_per_query"].as_f64().unwrap() > 0.0);
}

#[test]
fn the_same_training_step_runs_on_wgpu() {
    let tmp = TempDir::new("train-wgpu");
    let (init, data) = tiny_setup(&tmp);
    let gpu = match ponder::device::resolve(ponder::device::DeviceChoice::Gpu).unwrap() {
        ponder::device::Resolved::Burn { device, .. } => device,
        ponder::device::Resolved::NativeCpu => unreachable!(),
    };
    let mut on_gpu = Trainer::new(&init, tiny_opts(3), gpu, tmp.path().join("g.ckpt")).unwrap();
    let mut on_cpu = Trainer::new(&init, tiny_opts(3), Device::flex(), tmp.path().join("c.ckpt")).unwrap();
    // The losses of steps 2 and 3 are computed from the weights the earlier steps produced.
    for _ in 0..3 {
        let (a, b) = (on_gpu.train_step(&data).unwrap(), on_cpu.train_step(&data).unwrap());
        assert!((a - b).abs() < 1e-3, "loss on wgpu {a} vs flex {b}");
    }
    // AdamW moves each weight by about lr per step whatever the gradient's size, so rounding
    // can flip the direction of a near-zero gradient: the bound is 2 * lr per step.
    let d = max_diff(&on_gpu.weights(), &on_cpu.weights());
    assert!(d < 2.0 * 1e-3 * 3.0, "weights after three steps differ by {d}");
}
