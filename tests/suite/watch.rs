//! The live index (`ponder::watch`): files created, changed, renamed and deleted under an
//! index's roots become searchable (or leave) by themselves; bursts coalesce into a few
//! commits; the index directory, hidden and ignored files cause no update; dropping the handle
//! stops it. Plus `ponder watch` end to end. Every wait is bounded.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::TempDir;
use ponder::engine::{Engine, EngineOptions, SearchRequest};
use ponder::retrieve::Mode;
use ponder::watch::{self, WatchEvent, WatchHandle, WatchOptions};
use ponder::IndexJob;

/// How long one change may take to become searchable (the machine is shared and slow).
const CHANGE_LIMIT: Duration = Duration::from_secs(15);

#[derive(Default)]
struct Log {
    updates: usize,
    warnings: Vec<String>,
    errors: Vec<String>,
}

fn recorder() -> (Arc<Mutex<Log>>, Arc<dyn Fn(WatchEvent) + Send + Sync>) {
    let log = Arc::new(Mutex::new(Log::default()));
    let l = log.clone();
    let on = Arc::new(move |e: WatchEvent| {
        let mut l = l.lock().unwrap();
        match e {
            WatchEvent::Updated { .. } => l.updates += 1,
            WatchEvent::Warning(w) => l.warnings.push(w),
            WatchEvent::Error(e) => l.errors.push(e),
        }
    });
    (log, on)
}

fn search(engine: &Engine, q: &str, mode: Mode) -> Vec<String> {
    let mut r = SearchRequest::new(q);
    r.mode = mode;
    r.k = 20;
    engine.search(&r).unwrap().into_iter().map(|h| h.path).collect()
}

fn lexical(engine: &Engine, q: &str) -> Vec<String> {
    search(engine, q, Mode::Lexical)
}

/// Polls `cond` every 20 ms until it holds; panics after `limit`. Returns the time it took.
fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    loop {
        if cond() {
            return t.elapsed();
        }
        if t.elapsed() > limit {
            panic!("{what}: not within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the watcher has reported no update for a second (events of earlier steps may
/// still be arriving on a loaded machine).
fn settle(log: &Mutex<Log>) {
    let mut last = (log.lock().unwrap().updates, Instant::now());
    wait_until("the watcher settles", Duration::from_secs(30), || {
        let n = log.lock().unwrap().updates;
        if n != last.0 {
            last = (n, Instant::now());
        }
        last.1.elapsed() > Duration::from_secs(1)
    });
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn generation(engine: &Engine) -> u64 {
    engine.status().unwrap().generation
}

/// A word the BM25 analyzer keeps whole and no other test word stems to: consonants only.
fn word(prefix: &str, mut i: usize) -> String {
    const LETTERS: &[u8] = b"bcdfghjkmnpqrtvwxz";
    let mut w = String::from(prefix);
    for _ in 0..4 {
        w.push(LETTERS[i % LETTERS.len()] as char);
        i /= LETTERS.len();
    }
    w
}

/// A folder of notes and an index of it (inside the folder, under a plain name, so that its
/// own writes are seen by the watcher and must be ignored), and a running watcher.
struct Setup {
    _tmp: TempDir,
    docs: PathBuf,
    index: PathBuf,
    engine: Arc<Engine>,
}

fn setup(tag: &str) -> Setup {
    let tmp = TempDir::new(tag);
    let docs = tmp.path().join("docs");
    fs::create_dir_all(docs.join("notes")).unwrap();
    fs::create_dir_all(docs.join("bulk")).unwrap();
    fs::write(docs.join("bread.md"), "# Bread\n\nProof the dough overnight in a cool place.\n").unwrap();
    fs::write(docs.join("tea.txt"), "Green tea wants water below boiling.\n").unwrap();
    fs::write(docs.join("notes/rivers.md"), "# Rivers\n\nThe Danube flows into the Black Sea.\n").unwrap();
    fs::write(docs.join("bulk/seed.txt"), "The bulk folder holds many small notes.\n").unwrap();
    fs::write(docs.join(".gitignore"), "ignored/\n*.log\n").unwrap();
    let docs = fs::canonicalize(&docs).unwrap();
    let index = docs.join("ponder-index");
    let engine = Arc::new(Engine::open(&index, EngineOptions::default()).unwrap());
    let report = engine.index(&[docs.clone()], &IndexJob::default(), &mut |_| {}).unwrap();
    assert_eq!(report.files_indexed, 4, "{report:?}");
    Setup { _tmp: tmp, docs, index, engine }
}

fn fast() -> WatchOptions {
    WatchOptions { debounce_ms: 100, max_delay_ms: 1000 }
}

#[test]
fn follows_creates_edits_renames_deletes_and_bursts() {
    let Setup { _tmp, docs, index, engine } = setup("watch-live");
    let (log, on) = recorder();
    let handle = watch::start(engine.clone(), fast(), on).unwrap();
    assert_eq!(handle.roots(), &[docs.clone()]);
    assert!(handle.is_running());

    // Create.
    let new = docs.join("new.md");
    fs::write(&new, "# Fresh\n\nThe zanzibarite crystal glows faintly.\n").unwrap();
    let took = wait_until("a new file is found", CHANGE_LIMIT, || lexical(&engine, "zanzibarite").contains(&s(&new)));
    eprintln!("create -> searchable in {took:?}");
    let hybrid = search(&engine, "zanzibarite crystal", Mode::Hybrid);
    assert_eq!(hybrid.first(), Some(&s(&new)), "hybrid search finds the new file first: {hybrid:?}");

    // Modify: the old word goes, the new one comes.
    fs::write(&new, "# Fresh\n\nA quokkafication of the garden happened.\n").unwrap();
    wait_until("an edited file's new text is found", CHANGE_LIMIT, || lexical(&engine, "quokkafication").contains(&s(&new)));
    assert!(!lexical(&engine, "zanzibarite").contains(&s(&new)), "the old text is gone");

    // Rename: the old path leaves, the new one comes.
    let renamed = docs.join("notes/renamed.md");
    fs::rename(&new, &renamed).unwrap();
    wait_until("a renamed file is found under its new path", CHANGE_LIMIT, || {
        let hits = lexical(&engine, "quokkafication");
        hits.contains(&s(&renamed)) && !hits.contains(&s(&new))
    });

    // Delete.
    fs::remove_file(&renamed).unwrap();
    wait_until("a deleted file leaves the index", CHANGE_LIMIT, || lexical(&engine, "quokkafication").is_empty());

    // A new folder with files (created after the folder itself, as a copy would).
    let sub = docs.join("projects/deep");
    fs::create_dir_all(&sub).unwrap();
    fs::write(sub.join("plan.md"), "# Plan\n\nBuild the flibbertigibbet engine.\n").unwrap();
    fs::write(docs.join("projects/todo.txt"), "Order more snorkelwhistle parts.\n").unwrap();
    wait_until("files in a new folder are found", CHANGE_LIMIT, || {
        lexical(&engine, "flibbertigibbet").contains(&s(&sub.join("plan.md")))
            && lexical(&engine, "snorkelwhistle").contains(&s(&docs.join("projects/todo.txt")))
    });
    // A file added later to that new folder is seen too (the folder is watched).
    fs::write(sub.join("later.md"), "Later came the grumbleberry.\n").unwrap();
    wait_until("a file in a folder created while watching", CHANGE_LIMIT, || {
        lexical(&engine, "grumbleberry").contains(&s(&sub.join("later.md")))
    });

    // A folder renamed: its files move; the folder stays watched under its new name.
    fs::rename(docs.join("projects"), docs.join("archive")).unwrap();
    let moved = docs.join("archive/deep/plan.md");
    wait_until("files of a renamed folder are found under the new name", CHANGE_LIMIT, || {
        let hits = lexical(&engine, "flibbertigibbet");
        hits.contains(&s(&moved)) && !hits.contains(&s(&sub.join("plan.md")))
    });
    fs::write(docs.join("archive/deep/more.md"), "More about the plonkerdoodle.\n").unwrap();
    wait_until("a file in a renamed folder", CHANGE_LIMIT, || {
        lexical(&engine, "plonkerdoodle").contains(&s(&docs.join("archive/deep/more.md")))
    });
    // A folder deleted: its files leave.
    fs::remove_dir_all(docs.join("archive")).unwrap();
    wait_until("files of a deleted folder leave", CHANGE_LIMIT, || {
        ["flibbertigibbet", "plonkerdoodle", "snorkelwhistle", "grumbleberry"].iter().all(|w| lexical(&engine, w).is_empty())
    });

    // Writes the indexer would not take cause no update: the index directory, a hidden folder,
    // .git, an ignored folder and pattern, a file type without a reader.
    settle(&log);
    let (gen0, updates0) = (generation(&engine), log.lock().unwrap().updates);
    fs::write(index.join("stray.txt"), "written into the index folder: blorptangle\n").unwrap();
    fs::create_dir_all(docs.join(".hidden")).unwrap();
    fs::write(docs.join(".hidden/secret.md"), "hidden blorptangle\n").unwrap();
    fs::create_dir_all(docs.join(".git/objects")).unwrap();
    fs::write(docs.join(".git/objects/x.txt"), "git blorptangle\n").unwrap();
    fs::create_dir_all(docs.join("ignored")).unwrap();
    fs::write(docs.join("ignored/a.md"), "ignored blorptangle\n").unwrap();
    fs::write(docs.join("debug.log"), "ignored blorptangle\n").unwrap();
    fs::write(docs.join("picture.png"), "not an image blorptangle\n").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(log.lock().unwrap().updates, updates0, "no update for ignored writes");
    assert_eq!(generation(&engine), gen0, "no commit for ignored writes");
    assert!(lexical(&engine, "blorptangle").is_empty());

    // Un-ignoring a folder in .gitignore brings its files in, and the folder is watched from then on.
    fs::write(docs.join(".gitignore"), "*.log\n").unwrap();
    let unignored = docs.join("ignored/a.md");
    wait_until("a folder no longer ignored is indexed", CHANGE_LIMIT, || lexical(&engine, "blorptangle") == vec![s(&unignored)]);
    fs::write(docs.join("ignored/b.md"), "Now watched: zorbulent.\n").unwrap();
    wait_until("a file in the un-ignored folder", CHANGE_LIMIT, || {
        lexical(&engine, "zorbulent").contains(&s(&docs.join("ignored/b.md")))
    });

    // A burst: N one-line files written at once into a watched folder.
    let n: usize = std::env::var("PONDER_WATCH_BURST").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    settle(&log);
    let files0 = engine.status().unwrap().files;
    let (gen0, updates0) = (generation(&engine), log.lock().unwrap().updates);
    let t = Instant::now();
    for i in 0..n {
        fs::write(docs.join(format!("bulk/note-{i:04}.txt")), format!("Note {i} mentions {}.\n", word("zq", i))).unwrap();
    }
    eprintln!("wrote {n} files in {:?}", t.elapsed());
    // Searches are answered while the burst is being indexed.
    let mut slowest = Duration::ZERO;
    let took = wait_until("the whole burst is indexed", Duration::from_secs(30 + n as u64 / 5), || {
        let q = Instant::now();
        let _ = lexical(&engine, "danube");
        slowest = slowest.max(q.elapsed());
        engine.status().unwrap().files == files0 + n
    });
    for i in [0, n / 2, n - 1] {
        let path = s(&docs.join(format!("bulk/note-{i:04}.txt")));
        assert_eq!(lexical(&engine, &word("zq", i)).first(), Some(&path), "burst file {i}");
    }
    let (gen1, updates1) = (generation(&engine), log.lock().unwrap().updates);
    eprintln!(
        "burst of {n}: indexed in {took:?}, {} update(s), generation {gen0} -> {gen1}, slowest search meanwhile {slowest:?}",
        updates1 - updates0
    );
    assert!(gen1 - gen0 <= 10, "{n} files took {} commits", gen1 - gen0);
    assert!(slowest < Duration::from_secs(3), "a search waited {slowest:?} during indexing");

    // Dropping the handle, even while an update runs, returns quickly and stops everything.
    // (Long files, so that the update is still embedding when the handle is dropped.)
    let filler = "The river carried silt and stories down from the mountains to the delta. ".repeat(3);
    let files_before_late = engine.status().unwrap().files;
    for i in 0..150 {
        fs::write(docs.join(format!("bulk/late-{i:03}.txt")), format!("{filler}\n\nLate note {}.\n\n{filler}\n", word("kx", i))).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    drop(handle);
    let dropped_in = t.elapsed();
    eprintln!("drop took {dropped_in:?}");
    assert!(dropped_in < Duration::from_secs(1), "drop took {dropped_in:?}");
    let updates_at_drop = log.lock().unwrap().updates;
    // The update that was running is cancelled and commits what it had staged, in the
    // background: an (empty) update of our own waits for it, as jobs are serialised.
    let t = Instant::now();
    engine.update(&[], &IndexJob::default(), &mut |_| {}).unwrap();
    eprintln!("the cancelled update wound down {:?} after drop", t.elapsed() + dropped_in);
    let gen_after = generation(&engine);
    eprintln!("{} of 150 late files were indexed by the update running at drop", engine.status().unwrap().files - files_before_late);
    fs::write(docs.join("after-drop.md"), "Nobody watches the wibblewobble.\n").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(generation(&engine), gen_after, "no update after drop");
    assert!(lexical(&engine, "wibblewobble").is_empty());
    let log = log.lock().unwrap();
    assert_eq!(log.updates, updates_at_drop, "no report after drop");
    assert!(log.errors.is_empty(), "errors: {:?}", log.errors);
    eprintln!("warnings: {:?}", log.warnings);
}

#[test]
fn a_file_root_is_followed_through_replacement() {
    let tmp = TempDir::new("watch-file-root");
    let dir = fs::canonicalize(tmp.path()).unwrap();
    let file = dir.join("journal.md");
    fs::write(&file, "Day one: plumbifrost.\n").unwrap();
    fs::write(dir.join("sibling.md"), "Not a root: sibling.\n").unwrap();
    let engine = Arc::new(Engine::open(dir.join("idx"), EngineOptions::default()).unwrap());
    engine.index(&[file.clone()], &IndexJob::default(), &mut |_| {}).unwrap();
    let (log, on) = recorder();
    let _handle = watch::start(engine.clone(), fast(), on).unwrap();
    // Saved the way editors do: a temporary file renamed over the original.
    let tmp_file = dir.join(".journal.md.swp");
    fs::write(&tmp_file, "Day two: crumblewick.\n").unwrap();
    fs::rename(&tmp_file, &file).unwrap();
    wait_until("the replaced file's text is found", CHANGE_LIMIT, || lexical(&engine, "crumblewick").contains(&s(&file)));
    // Twice: the watch must survive the first replacement.
    fs::write(&tmp_file, "Day three: fizzlethorpe.\n").unwrap();
    fs::rename(&tmp_file, &file).unwrap();
    wait_until("the file replaced again is found", CHANGE_LIMIT, || lexical(&engine, "fizzlethorpe").contains(&s(&file)));
    // A sibling that is not a root stays out.
    fs::write(dir.join("sibling.md"), "Still not a root: sibling wombatique.\n").unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert!(lexical(&engine, "wombatique").is_empty());
    assert_eq!(engine.status().unwrap().files, 1);
    assert!(log.lock().unwrap().errors.is_empty());
}

#[test]
fn an_index_without_roots_or_without_an_index_is_refused() {
    let tmp = TempDir::new("watch-no-roots");
    let (_, on) = recorder();
    // No index at all.
    let engine = Arc::new(Engine::open(tmp.path().join("none"), EngineOptions::default()).unwrap());
    assert!(matches!(watch::start(engine, fast(), on.clone()), Err(ponder::Error::NoIndex(_))));
    // An index of in-memory records has no roots.
    let dir = tmp.path().join("records");
    let (embedder, stamp) =
        ponder::engine::load_model(&ponder::model::ModelSource::Default, None, ponder::device::DeviceChoice::Cpu).unwrap();
    let mut ix = ponder::index::Indexer::open(&dir, &embedder, stamp, Default::default()).unwrap();
    ix.index_records(&[("doc-1".into(), "a record".into())], &mut |_| {}).unwrap();
    drop(ix);
    let engine = Arc::new(Engine::open(&dir, EngineOptions::default()).unwrap());
    match watch::start(engine, fast(), on) {
        Err(ponder::Error::InvalidInput(m)) => assert!(m.contains("no files or folders to watch"), "{m}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("watching an index without roots was accepted"),
    }
}

/// Kills the child on drop, so that a failing test leaves no process behind.
struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ponder() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ponder"));
    c.env("PONDER_NO_GPU", "1");
    c
}

#[test]
fn ponder_watch_end_to_end() {
    let tmp = TempDir::new("watch-cli");
    let docs = tmp.path().join("docs");
    fs::create_dir_all(&docs).unwrap();
    fs::write(docs.join("a.md"), "# A\n\nSomething about sourdough.\n").unwrap();
    let docs = fs::canonicalize(&docs).unwrap();
    let index = tmp.path().join("idx");
    let idx = s(&index);
    let out = ponder().args(["index", &s(&docs), "--index", &idx]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let mut child = Kill(
        ponder()
            .args(["watch", "--index", &idx, "--debounce-ms", "100"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = mpsc::channel::<String>();
    let stderr = child.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut wait_line = |what: &str, limit: Duration, pred: &dyn Fn(&str) -> bool| {
        let t = Instant::now();
        loop {
            let left = limit.saturating_sub(t.elapsed());
            match rx.recv_timeout(left) {
                Ok(l) => {
                    let hit = pred(&l);
                    seen.push(l);
                    if hit {
                        return;
                    }
                }
                Err(_) => panic!("no {what} line within {limit:?}; stderr so far: {seen:#?}"),
            }
        }
    };
    wait_line("ready", Duration::from_secs(60), &|l| l.starts_with("watching "));

    let new = docs.join("fresh.md");
    fs::write(&new, "# Fresh\n\nA note on the marmalizard.\n").unwrap();
    wait_line("updated", CHANGE_LIMIT, &|l| l.starts_with("updated "));
    let found = wait_until("ponder search finds the new file", CHANGE_LIMIT, || {
        let out = ponder().args(["search", "marmalizard", "--index", &idx, "--json", "--mode", "lexical"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().any(|l| {
            serde_json::from_str::<serde_json::Value>(l).ok().and_then(|v| v["path"].as_str().map(String::from)) == Some(s(&new))
        })
    });
    eprintln!("ponder watch: new file found by ponder search after {found:?} of polling");
    drop(child);
}

/// Save → searchable latency: p50 over 20 saves with the CLI's default options (or
/// `PONDER_WATCH_DEBOUNCE_MS`). Run with
/// `cargo test --release --test suite -- --ignored --nocapture watch::save_to_searchable`.
#[test]
#[ignore]
fn save_to_searchable_latency() {
    let Setup { _tmp, docs, engine, .. } = setup("watch-latency");
    let mut opts = WatchOptions::default();
    if let Some(ms) = std::env::var("PONDER_WATCH_DEBOUNCE_MS").ok().and_then(|v| v.parse().ok()) {
        opts.debounce_ms = ms;
    }
    let (log, on) = recorder();
    let _handle: WatchHandle = watch::start(engine.clone(), opts.clone(), on).unwrap();
    let file = docs.join("live.md");
    let mut times = Vec::new();
    for i in 0..20 {
        let w = word("lat", i);
        let t = Instant::now();
        fs::write(&file, format!("# Live note\n\nToday's word is {w}, and a few more words around it.\n")).unwrap();
        wait_until("a saved word is found", CHANGE_LIMIT, || lexical(&engine, &w).contains(&s(&file)));
        times.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    eprintln!(
        "save -> searchable over {} saves (debounce {} ms, max delay {} ms): p50 {:.0} ms, p90 {:.0} ms, min {:.0} ms, max {:.0} ms",
        times.len(),
        opts.debounce_ms,
        opts.max_delay_ms,
        ms(times[times.len() / 2]),
        ms(times[times.len() * 9 / 10]),
        ms(times[0]),
        ms(times[times.len() - 1])
    );
    assert!(log.lock().unwrap().errors.is_empty());
}
