//! The engine end to end through the `ponder` binary: indexing, incremental updates,
//! searching, model mixing, corruption, crash safety and bad input.

use crate::common::TempDir;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn ponder(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ponder"))
        .args(args)
        .env("PONDER_NO_GPU", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = ponder(args);
    assert!(out.status.success(), "ponder {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn search_json(index: &Path, query: &str, mode: &str) -> Vec<serde_json::Value> {
    ok(&["search", query, "--index", index.to_str().unwrap(), "--json", "--mode", mode, "-k", "5"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn status(index: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(&["status", "--index", index.to_str().unwrap(), "--json"])).unwrap()
}

fn corpus(dir: &Path) {
    write(dir, "bread.md", "# Sourdough\n\nLet the dough proof overnight in the fridge for twelve hours.\n\n## Baking\n\nBake at 250 degrees with steam for twenty minutes.\n");
    write(dir, "plants.txt", "C4 plants concentrate carbon dioxide around RuBisCO, so photorespiration wastes less energy in hot climates.\n");
    write(dir, "cache.rs", "/// Evicts the least recently used entry when the cache is full.\nfn evict(&mut self) {\n    self.order.pop_back();\n}\n");
    write(dir, "page.html", "<html><head><title>Winter plants</title><script>var x = 'ignore me';</script></head><body><h1>Watering</h1><p>Water a fiddle leaf fig less often in winter.</p></body></html>");
}

/// A temp dir with the sample corpus in `docs/` and an index path beside it (not built).
fn setup(tag: &str) -> (TempDir, std::path::PathBuf, std::path::PathBuf) {
    let t = TempDir::new(tag);
    let docs = t.path().join("docs");
    corpus(&docs);
    let index = t.path().join("index");
    (t, docs, index)
}

/// As `setup`, with the index built.
fn indexed(tag: &str) -> (TempDir, std::path::PathBuf, std::path::PathBuf) {
    let (t, docs, index) = setup(tag);
    ok(&["index", docs.to_str().unwrap(), "--index", index.to_str().unwrap(), "--progress", "none"]);
    (t, docs, index)
}

#[test]
fn index_search_and_json_output() {
    let (_t, _docs, index) = indexed("ix-basic");
    let idx = index.to_str().unwrap();
    let st = status(&index);
    assert_eq!(st["files"], 4);
    assert!(st["chunks"].as_u64().unwrap() >= 4);
    assert_eq!(st["vectors"], "i8");
    for mode in ["hybrid", "dense", "lexical"] {
        let hits = search_json(&index, "how long should the dough proof overnight", mode);
        assert!(!hits.is_empty(), "{mode}");
        let top = &hits[0];
        assert!(top["path"].as_str().unwrap().ends_with("bread.md"), "{mode}: {top}");
        for key in ["path", "score", "start_line", "end_line", "text"] {
            assert!(!top[key].is_null(), "{mode}: missing {key}");
        }
        assert!(top["start_line"].as_u64().unwrap() >= 1);
    }
    let hits = search_json(&index, "evict least recently used", "hybrid");
    assert!(hits[0]["path"].as_str().unwrap().ends_with("cache.rs"));
    // HTML is indexed as text: the script is gone.
    let hits = search_json(&index, "fiddle leaf fig winter watering", "hybrid");
    let top = &hits[0];
    assert!(top["path"].as_str().unwrap().ends_with("page.html"));
    assert!(!top["text"].as_str().unwrap().contains("ignore me"));
    // Human output highlights query terms.
    let human = ok(&["search", "photorespiration hot climates", "--index", idx]);
    assert!(human.contains("plants.txt") && human.contains("**photorespiration**"), "{human}");
    // Output into a pipe nobody reads (`ponder status | head -0`) ends quietly, not in a panic.
    for args in [&["status", "--index", idx][..], &["search", "dough", "--index", idx]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_ponder"))
            .args(args)
            .env("PONDER_NO_GPU", "1")
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked") && out.status.code() != Some(101), "{args:?}: {:?} {err}", out.status);
    }
}

#[test]
fn several_queries_fuse_into_one_ranking() {
    let (_t, _docs, index) = indexed("ix-multi");
    let idx = index.to_str().unwrap();
    let ids = |out: String| -> Vec<u64> {
        out.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["chunk_id"].as_u64().unwrap()).collect()
    };
    let q1 = ids(ok(&["search", "dough", "--index", idx, "--json", "-k", "100"]));
    let q2 = ids(ok(&["search", "RuBisCO carbon", "--index", idx, "--json", "-k", "100"]));
    // Reciprocal-rank fusion of the two rankings, computed here independently.
    let mut want: Vec<(u64, f64)> = q1.iter().chain(&q2).copied().collect::<std::collections::BTreeSet<u64>>().into_iter().map(|id| {
        let rr = |list: &Vec<u64>| list.iter().position(|&x| x == id).map_or(0.0, |p| 1.0 / (61.0 + p as f64));
        (id, rr(&q1) + rr(&q2))
    }).collect();
    want.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let want: Vec<u64> = want.iter().take(3).map(|x| x.0).collect();
    let fused = ids(ok(&["search", "dough", "--query", "RuBisCO carbon", "--index", idx, "--json", "-k", "3"]));
    assert_eq!(fused, want);
    // The same through stdin, as an agent would send them.
    let mut child = Command::new(env!("CARGO_BIN_EXE_ponder"))
        .args(["search", "--index", idx, "--json", "-k", "3"])
        .env("PONDER_NO_GPU", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(br#"["dough", "RuBisCO carbon"]"#).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(ids(String::from_utf8(out.stdout).unwrap()), want);
}

#[test]
fn reindexing_embeds_only_changed_files_and_drops_deleted_ones() {
    let (_t, docs, index) = setup("ix-incr");
    let (d, idx) = (docs.to_str().unwrap(), index.to_str().unwrap());
    let first = ponder(&["index", d, "--index", idx, "--progress", "none"]);
    assert!(String::from_utf8_lossy(&first.stderr).contains("4 indexed, 0 unchanged"));
    // Same content, new mtime: not re-embedded.
    let p = docs.join("plants.txt");
    let text = std::fs::read(&p).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&p, &text).unwrap();
    write(&docs, "bread.md", "# Sourdough\n\nA completely new recipe with rye flour and caraway seeds.\n");
    std::fs::remove_file(docs.join("cache.rs")).unwrap();
    let again = ponder(&["index", d, "--index", idx, "--progress", "none"]);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("1 indexed, 2 unchanged, 1 removed"), "{err}");
    assert_eq!(status(&index)["files"], 3);
    let hits = search_json(&index, "evict least recently used entry", "lexical");
    assert!(hits.iter().all(|h| !h["path"].as_str().unwrap().ends_with("cache.rs")), "deleted file still found");
    let hits = search_json(&index, "rye caraway", "hybrid");
    assert!(hits[0]["path"].as_str().unwrap().ends_with("bread.md"));
    assert!(hits.iter().all(|h| !h["text"].as_str().unwrap().contains("overnight")), "old chunk of a changed file");
    // Re-running with no paths re-indexes the recorded roots.
    let third = ponder(&["index", "--index", idx, "--progress", "none"]);
    assert!(String::from_utf8_lossy(&third.stderr).contains("0 indexed, 3 unchanged"));
    // remove: gone, and it stays gone when its folder is re-indexed ...
    ok(&["remove", docs.join("plants.txt").to_str().unwrap(), "--index", idx]);
    assert_eq!(status(&index)["files"], 2);
    ok(&["index", d, "--index", idx, "--progress", "none"]);
    assert_eq!(status(&index)["files"], 2);
    // ... until it is indexed explicitly.
    ok(&["index", docs.join("plants.txt").to_str().unwrap(), "--index", idx, "--progress", "none"]);
    assert_eq!(status(&index)["files"], 3);
    ok(&["remove", docs.join("plants.txt").to_str().unwrap(), "--index", idx]);
    // compaction keeps results
    ok(&["index", "--index", idx, "--compact", "--progress", "none"]);
    let st = status(&index);
    assert_eq!(st["files"], 2);
    assert_eq!(st["vector_files"], 1);
    let hits = search_json(&index, "rye caraway", "dense");
    assert!(hits[0]["path"].as_str().unwrap().ends_with("bread.md"));
}

#[test]
fn commits_merge_as_they_come_and_answer_as_one_segment_does() {
    // 26 files committed one by one: the small segments merge by fours during the job, so the
    // index never holds more than three, and it answers as an index built in one commit.
    let t = TempDir::new("ix-merge");
    let docs = t.path().join("docs");
    let topics = ["bread", "rivers", "engines", "gardens", "violins", "glaciers", "compilers", "bees", "tides", "kites", "ferns", "comets", "looms"];
    for (i, topic) in topics.iter().enumerate() {
        for part in 0..2 {
            let text = format!("# Note {i}.{part} on {topic}\n\nThis note is about {topic}: part {part} of two, number {i}, with words on {topic} and little else.\n");
            write(&docs, &format!("{topic}-{part}.md"), &text);
        }
    }
    let (one, many) = (t.path().join("one"), t.path().join("many"));
    let d = docs.to_str().unwrap();
    ok(&["index", d, "--index", one.to_str().unwrap(), "--progress", "none"]);
    let out = ponder(&["index", d, "--index", many.to_str().unwrap(), "--progress", "json", "--commit-every", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let commits = String::from_utf8_lossy(&out.stdout).lines().chain(String::from_utf8_lossy(&out.stderr).lines()).filter(|l| l.contains("\"event\":\"commit\"")).count();
    assert!(commits >= 26, "{commits} commits");
    let st = status(&many);
    assert_eq!(st["files"], 26);
    assert_eq!(st["chunks"], status(&one)["chunks"]);
    let segments = st["vector_files"].as_u64().unwrap();
    assert!((1..=3).contains(&segments), "{segments} segments after {commits} commit events: {st}");
    // Every data file the manifest names is sound, and merged-away files are gone.
    let report: serde_json::Value = serde_json::from_str(&ok(&["check", "--index", many.to_str().unwrap(), "--json"])).unwrap();
    let files = report["files"].as_array().unwrap();
    assert!(files.iter().all(|f| f["problem"].is_null()), "{report}");
    let on_disk = std::fs::read_dir(&many).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with("vec-")).count();
    assert_eq!(on_disk as u64, segments);
    for q in ["glaciers and tides", "how do compilers work", "bees in the gardens", "part 1 of two number 7"] {
        for mode in ["hybrid", "dense", "lexical"] {
            let top = |idx: &Path| search_json(idx, q, mode).iter().map(|h| (h["path"].as_str().unwrap().to_string(), h["start_line"].clone())).collect::<Vec<_>>();
            let score = |idx: &Path| search_json(idx, q, mode)[0]["score"].as_f64().unwrap();
            assert_eq!(top(&many), top(&one), "{mode} {q}");
            assert!((score(&many) - score(&one)).abs() < 1e-4, "{mode} {q}");
        }
    }
}

#[test]
fn an_index_refuses_to_mix_models_and_records_its_instruction() {
    let (_t, docs, index) = setup("ix-mix");
    let (d, idx) = (docs.to_str().unwrap(), index.to_str().unwrap());
    ok(&["index", d, "--index", idx, "--progress", "none", "--instruction", "Given a question, retrieve notes that answer it"]);
    assert_eq!(status(&index)["query_instruction"], "Given a question, retrieve notes that answer it");
    let out = ponder(&["index", d, "--index", idx, "--precision", "f32", "--progress", "none"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to mix"), "{}", String::from_utf8_lossy(&out.stderr));
    // Search still works with the instruction applied.
    assert!(!search_json(&index, "dough", "dense").is_empty());
}

#[test]
fn corrupt_files_are_named_and_rebuild_recovers() {
    let (_t, docs, index) = setup("ix-corrupt");
    let (d, idx) = (docs.to_str().unwrap(), index.to_str().unwrap());
    ok(&["index", d, "--index", idx, "--progress", "none"]);
    // A sound index passes `ponder check`, which lists every data file.
    let report: serde_json::Value = serde_json::from_str(&ok(&["check", "--index", idx, "--json"])).unwrap();
    let files = report["files"].as_array().unwrap();
    assert_eq!(files.len(), 3, "{report}");
    assert!(files.iter().all(|f| f["problem"].is_null() && f["items"].as_u64().unwrap() > 0), "{report}");
    for prefix in ["chunks-", "lex-", "vec-", "MANIFEST"] {
        let file = std::fs::read_dir(&index)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let good = std::fs::read(&file).unwrap();
        let mut bad = good.clone();
        let at = bad.len() / 2;
        bad[at] ^= 0x5a;
        std::fs::write(&file, &bad).unwrap();
        let out = ponder(&["search", "dough", "--index", idx]);
        let err = String::from_utf8_lossy(&out.stderr);
        if prefix == "MANIFEST" || prefix == "vec-" {
            // Checked whole on open (usearch trusts its graph, so vector files are hashed).
            assert!(!out.status.success(), "{prefix}: corrupt file not detected");
            assert!(err.contains(&name), "{prefix}: {err}");
        } else {
            // Chunk and BM25 files are read in place: a search either meets the damage and
            // names the file, or never reads that byte. It never crashes.
            assert!(out.status.code().is_some(), "{prefix}: search was killed by a signal: {err}");
            assert!(out.status.success() || err.contains(&name), "{prefix}: {err}");
        }
        if prefix != "MANIFEST" {
            // `ponder check` reads everything, and names the file.
            let out = ponder(&["check", "--index", idx]);
            assert!(!out.status.success(), "{prefix}: check passed a damaged file");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("DAMAGED") && text.contains(&name), "{prefix}: {text}");
            // So does the writer, before copying from it.
            let out = ponder(&["index", d, "--index", idx, "--progress", "none"]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success() && err.contains(&name), "{prefix}: the writer used a damaged file: {err}");
        }
        // Truncated files are caught on open.
        std::fs::write(&file, &good[..good.len() / 3]).unwrap();
        assert!(!ponder(&["search", "dough", "--index", idx]).status.success(), "{prefix}: truncation not detected");
        if prefix == "MANIFEST" {
            ok(&["index", d, "--index", idx, "--rebuild", "--progress", "none"]);
        } else {
            ok(&["index", "--index", idx, "--rebuild", "--progress", "none"]);
        }
        assert_eq!(status(&index)["files"], 4, "{prefix}: rebuild did not recover");
        assert!(!search_json(&index, "dough", "hybrid").is_empty());
    }
}

#[test]
fn bad_input_is_skipped_or_handled_with_warnings() {
    let t = TempDir::new("ix-bad");
    let docs = t.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    write(&docs, "good.md", "# Good\n\nA perfectly ordinary note about tea.\n");
    std::fs::write(docs.join("latin1.txt"), b"caf\xe9 cr\xe8me br\xfbl\xe9e and more text\n").unwrap();
    std::fs::write(docs.join("empty.txt"), b"").unwrap();
    std::fs::write(docs.join("binary.txt"), b"\x00\x01\x02\x03binary").unwrap();
    // A 200 MB file (sparse: cheap to make).
    let big = std::fs::File::create(docs.join("huge.txt")).unwrap();
    big.set_len(200 * 1024 * 1024).unwrap();
    drop(big);
    // A 1 MB single line (long runs tokenize to [UNK], keeping the embedding work small;
    // the chunker's own tests cover a 1 MB line of ordinary words).
    let line = "oolong tea ".repeat(50) + &(("x".repeat(5000) + " ").repeat(210));
    assert!(line.len() >= 1 << 20 && !line.contains('\n'));
    std::fs::write(docs.join("oneline.txt"), &line).unwrap();
    let minified: String = (0..300).map(|i| format!("function f{i}(a){{return a.map(x=>x*{i})}};")).collect();
    std::fs::write(docs.join("app.js"), minified).unwrap();
    // A symlink loop and a dangling link.
    std::os::unix::fs::symlink(&docs, docs.join("loop")).unwrap();
    std::os::unix::fs::symlink(docs.join("nowhere.txt"), docs.join("dangling.txt")).unwrap();
    let index = t.path().join("index");
    let out = ponder(&["index", docs.to_str().unwrap(), "--index", index.to_str().unwrap(), "--progress", "plain"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("huge.txt") && err.contains("limit"), "200 MB file not reported: {err}");
    assert!(err.contains("binary.txt"), "binary file not reported: {err}");
    // The 1 MB line is almost all non-space: it looks minified, and a minified script too.
    assert!(err.contains("oneline.txt") && err.contains("minified"), "minified text not reported: {err}");
    assert!(err.contains("app.js") && err.contains("--include-generated"), "{err}");
    let st = status(&index);
    // good, latin1, empty
    assert_eq!(st["files"], 3, "{st}");
    let hits = search_json(&index, "crème brûlée", "lexical");
    assert!(!hits.is_empty() || !search_json(&index, "caf", "lexical").is_empty());
    // Asked for, generated files are indexed, and the 1 MB line is searchable.
    let out = ponder(&["index", docs.to_str().unwrap(), "--index", index.to_str().unwrap(), "--include-generated", "--progress", "none"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(status(&index)["files"], 5);
    let hits = search_json(&index, "oolong", "lexical");
    assert!(hits.iter().any(|h| h["path"].as_str().unwrap().ends_with("oneline.txt")), "1 MB line not searchable");
}

#[test]
fn files_vanishing_mid_run_do_not_break_indexing() {
    let t = TempDir::new("ix-vanish");
    let docs = t.path().join("docs");
    for i in 0..300 {
        write(&docs, &format!("n{i:03}.txt"), &format!("note {i} about topic {}\n", i % 17));
    }
    let index = t.path().join("index");
    let child = Command::new(env!("CARGO_BIN_EXE_ponder"))
        .args(["index", docs.to_str().unwrap(), "--index", index.to_str().unwrap(), "--progress", "none"])
        .env("PONDER_NO_GPU", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for i in (0..300).step_by(3) {
        let _ = std::fs::remove_file(docs.join(format!("n{i:03}.txt")));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let st = status(&index);
    assert!(st["files"].as_u64().unwrap() >= 200);
    // A second run converges on exactly what exists.
    ok(&["index", docs.to_str().unwrap(), "--index", index.to_str().unwrap(), "--progress", "none"]);
    assert_eq!(status(&index)["files"], 200);
}

/// A long plain document (about 85 pages) of pseudo-random sentences, with two distinctive
/// paragraphs far apart.
fn long_document() -> Vec<String> {
    const W: &[&str] = &[
        "river", "stone", "garden", "window", "market", "letter", "winter", "engine", "forest", "village",
        "bridge", "signal", "harvest", "mirror", "candle", "ladder", "thunder", "pocket", "silver", "meadow",
        "the", "a", "of", "and", "to", "in", "was", "quietly", "under", "beside", "across", "near", "old",
        "bright", "heavy", "narrow", "warm", "distant", "careful", "small", "walked", "carried", "opened",
        "watched", "painted", "measured", "found", "kept", "followed", "built",
    ];
    let mut seed: u64 = 7;
    let mut next = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        seed >> 33
    };
    (0..600)
        .map(|_| {
            let words = 15 + next() % 110;
            let mut p = String::new();
            let mut left = words;
            while left > 0 {
                let n = (4 + next() % 14).min(left);
                let s: Vec<&str> = (0..n).map(|_| W[(next() % W.len() as u64) as usize]).collect();
                let mut s = s.join(" ");
                s[..1].make_ascii_uppercase();
                if !p.is_empty() {
                    p.push(' ');
                }
                p.push_str(&s);
                p.push('.');
                left -= n;
            }
            p
        })
        .collect()
}

fn index_json(docs: &Path, index: &Path) -> serde_json::Value {
    let out = ponder(&["index", docs.to_str().unwrap(), "--index", index.to_str().unwrap(), "--progress", "json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let summary = err.lines().find(|l| l.contains("chunks added")).expect("summary line");
    let v: serde_json::Value = err
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "summary")
        .expect("json summary event");
    assert!(summary.contains(&format!("{} chunks embedded", v["chunks_embedded"])), "{summary}");
    v
}

/// Editing one paragraph of a long document re-embeds at most 3 chunks; the others keep their
/// stored vectors (a far-away paragraph scores exactly as before) and the edit is searchable.
#[test]
fn editing_one_paragraph_reembeds_few_chunks() {
    let t = TempDir::new("ix-reuse");
    let (docs, index) = (t.path().join("docs"), t.path().join("index"));
    let mut paras = long_document();
    paras[40].push_str(" Copper kettles whistle at dawn in the Reykjavik harbour.");
    // Two stretches are runs of one-sentence blocks (as in manuals: list items, code lines),
    // where cutting afresh shifts chunk after chunk; the edits fall inside them.
    let doc = |p: &[String]| {
        let blocks: Vec<String> = p
            .iter()
            .enumerate()
            .map(|(i, t)| if (280..330).contains(&i) || (430..480).contains(&i) { t.replace(". ", ".\n\n") } else { t.clone() })
            .collect();
        blocks.join("\n\n") + "\n"
    };
    write(&docs, "book.txt", &doc(&paras));
    let first = index_json(&docs, &index);
    let total = first["chunks_added"].as_u64().unwrap();
    assert!(total > 200, "{first}");
    assert_eq!(first["chunks_embedded"], total);
    let far = |index: &Path| {
        let hits = search_json(index, "copper kettles whistle at dawn in Reykjavik harbour", "dense");
        (hits[0]["text"].as_str().unwrap().to_string(), hits[0]["score"].as_f64().unwrap())
    };
    let before = far(&index);
    assert!(before.0.contains("Copper kettles"), "{before:?}");

    // Add a sentence to one paragraph, then remove one from another.
    paras[300].push_str(" The zebra quartet juggled marmalade beneath a violet lighthouse.");
    let edits: [(usize, &str); 2] = [(300, "zebra quartet juggled marmalade violet lighthouse"), (450, "")];
    for (at, query) in edits {
        if query.is_empty() {
            let p = paras[at].clone();
            paras[at] = p[p.find(". ").unwrap() + 2..].to_string();
        }
        let text = doc(&paras);
        write(&docs, "book.txt", &text);
        let again = index_json(&docs, &index);
        assert_eq!(again["files_indexed"], 1, "{again}");
        let embedded = again["chunks_embedded"].as_u64().unwrap();
        assert!((1..=3).contains(&embedded), "editing paragraph {at} re-embedded {embedded} chunks: {again}");
        // The file's chunks are all there (live), and rebuild its new text.
        let chunks = again["chunks_added"].as_u64().unwrap();
        assert!(chunks.abs_diff(total) <= 2, "{again}");
        assert_eq!(status(&index)["chunks"], chunks);
        let path = docs.join("book.txt");
        let got = ok(&["get", path.to_str().unwrap(), "--index", index.to_str().unwrap()]);
        assert_eq!(got.trim(), text.trim());
        if !query.is_empty() {
            let hits = search_json(&index, query, "dense");
            assert!(hits[0]["text"].as_str().unwrap().contains("zebra quartet"), "{:?}", hits[0]);
        }
        // Reused vectors: the far paragraph's chunk scores exactly as before.
        assert_eq!(far(&index), before);
    }
}
