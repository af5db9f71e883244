//! Crash safety: `kill -9` at random moments of `ponder index` always leaves an index that
//! opens and answers with every previously committed file, and readers running beside the
//! writer always see a consistent committed state.

use crate::common::TempDir;
use ponder::index::IndexReader;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Opens the index and checks that every file's chunks can be read and searched.
fn check(index: &Path) -> Option<usize> {
    if !index.join("MANIFEST").exists() {
        return None;
    }
    let r = IndexReader::open(index).unwrap_or_else(|e| panic!("index does not open: {e}"));
    for (path, entry) in &r.manifest.files {
        for id in entry.chunks.0..entry.chunks.1 {
            let c = r.chunk(id).unwrap().unwrap_or_else(|| panic!("chunk {id} of {path} missing"));
            assert_eq!(c.path, *path);
            assert!(r.vector(id).unwrap().is_some(), "vector of chunk {id} missing");
        }
    }
    if !r.manifest.files.is_empty() {
        let hits = r.lexical("note topic", 5).unwrap();
        assert!(!hits.is_empty(), "lexical search found nothing");
    }
    Some(r.manifest.files.len())
}

#[test]
fn kill_dash_nine_at_random_moments_never_loses_committed_files() {
    let t = TempDir::new("crash");
    let docs = t.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    let write_notes = |round: u64, every: usize| {
        for i in (0..400).step_by(every) {
            let body = format!("# Note {i}\n\nnote about topic {} and item {i}, revision {round}\n", i % 23);
            std::fs::write(docs.join(format!("n{i:03}.md")), body.repeat(1 + i % 4)).unwrap();
        }
    };
    write_notes(0, 1);
    let index = t.path().join("index");
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    let mut committed = 0usize;
    let mut kills = 0;
    let stop = Arc::new(AtomicBool::new(false));
    // A concurrent reader, as a search in another process would be.
    let reader = {
        let (stop, index) = (stop.clone(), index.clone());
        std::thread::spawn(move || {
            let mut opened = 0;
            while !stop.load(Ordering::Relaxed) {
                if check(&index).is_some() {
                    opened += 1;
                }
                std::thread::sleep(std::time::Duration::from_millis(30));
            }
            opened
        })
    };
    let mut round = 0;
    while kills < 24 {
        round += 1;
        assert!(round < 200, "could not kill the indexer mid-run");
        // Every run has work to do: a third of the notes change each round.
        if round > 1 {
            write_notes(round, 3);
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_ponder"))
            .args(["index", docs.to_str().unwrap(), "--index", index.to_str().unwrap(), "--progress", "none", "--commit-every", "8"])
            .env("PONDER_NO_GPU", "1")
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        if round == 1 {
            // The first run is let go until its first commit, however slow the machine is
            // (the first commit waits for 256 embedded chunks), so later kills have a
            // committed index to damage.
            let t0 = std::time::Instant::now();
            while !index.join("MANIFEST").exists() && t0.elapsed().as_secs() < 300 {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        let wait_ms = 150 + (seed >> 33) % 900;
        std::thread::sleep(std::time::Duration::from_millis(wait_ms));
        let finished = child.try_wait().unwrap().is_some();
        child.kill().ok(); // SIGKILL
        child.wait().unwrap();
        if !finished {
            kills += 1;
        }
        let now = check(&index).unwrap_or(0);
        assert!(now >= committed, "committed files went from {committed} to {now} after a kill");
        committed = now;
    }
    stop.store(true, Ordering::Relaxed);
    let opened = reader.join().unwrap();
    assert!(kills >= 20, "only {kills} kills landed mid-run");
    assert!(opened > 0, "the concurrent reader never saw an index");
    // Finish the job: everything is there, and no orphan files are left behind.
    let out = Command::new(env!("CARGO_BIN_EXE_ponder"))
        .args(["index", docs.to_str().unwrap(), "--index", index.to_str().unwrap(), "--progress", "none"])
        .env("PONDER_NO_GPU", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(check(&index), Some(400));
    let r = IndexReader::open(&index).unwrap();
    let referenced: std::collections::BTreeSet<String> = r.manifest.referenced().map(String::from).collect();
    for e in std::fs::read_dir(&index).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(name == "MANIFEST" || name == "LOCK" || referenced.contains(&name), "orphan file {name}");
    }
    eprintln!("{kills} kills in {round} runs, final 400 files");
}
