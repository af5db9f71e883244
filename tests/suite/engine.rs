//! The library facade (`ponder::Engine`) as an application uses it: creating and opening an
//! index, indexing with progress and cancellation, searching with filters while another
//! thread indexes, following commits made by another engine, `get` and `remove`, and the
//! first errors a newcomer meets.

use crate::common::{copy_dir, TempDir};
use ponder::engine::{Engine, EngineOptions, IndexJob, SearchRequest};
use ponder::index::Progress;
use ponder::retrieve::Mode;
use ponder::Error;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

fn opts() -> EngineOptions {
    EngineOptions { device: ponder::device::DeviceChoice::Cpu, ..Default::default() }
}

/// The repo's samples copied into `root/docs`, with the index *inside* that root.
fn sample_root(t: &TempDir) -> (PathBuf, PathBuf) {
    let docs = t.path().join("docs");
    copy_dir(&crate::common::repo().join("samples"), &docs);
    let index = docs.join("my-index");
    (docs, index)
}

fn request(q: &str, k: usize, mode: Mode) -> SearchRequest {
    SearchRequest { k, mode, ..SearchRequest::new(q) }
}

#[test]
fn a_missing_index_says_how_to_make_one() {
    let t = TempDir::new("engine-missing");
    let dir = t.path().join("nothing-here");
    let engine = Engine::open(&dir, opts()).unwrap();
    assert!(!engine.exists());
    let err = engine.search(&SearchRequest::new("anything")).unwrap_err();
    assert!(matches!(err, Error::NoIndex(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("no index in") && msg.contains("ponder index"), "{msg}");
    assert!(matches!(Engine::open_existing(&dir, opts()), Err(Error::NoIndex(_))));
    assert!(matches!(engine.status(), Err(Error::NoIndex(_))));

    // The binary says the same, not "missing file: …/MANIFEST".
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ponder"))
        .args(["search", "dough", "--index", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no index in") && !stderr.contains("MANIFEST"), "{stderr}");
}

#[test]
fn index_inside_its_root_search_filters_get_and_remove() {
    let t = TempDir::new("engine-main");
    let (docs, index) = sample_root(&t);
    let engine = Engine::open(&index, opts()).unwrap();
    let commits = AtomicUsize::new(0);
    let files_seen = AtomicUsize::new(0);
    let report = engine
        .index(&[docs.clone()], &IndexJob::default(), &mut |p| match p {
            Progress::Committed { .. } => {
                commits.fetch_add(1, Ordering::Relaxed);
            }
            Progress::File { done, .. } => files_seen.store(done, Ordering::Relaxed),
            _ => {}
        })
        .unwrap();
    assert!(report.files_indexed >= 10, "{report:?}");
    assert!(commits.load(Ordering::Relaxed) >= 1);
    assert_eq!(files_seen.load(Ordering::Relaxed), report.files_seen);

    // The index directory sits inside the indexed root, and none of its files is a document.
    let st = engine.status().unwrap();
    assert_eq!(st.files, report.files_indexed);
    let m = ponder::index::Manifest::read(&index).unwrap().unwrap();
    let index_canon = std::fs::canonicalize(&index).unwrap().to_string_lossy().into_owned();
    assert!(m.files.keys().all(|p| !p.starts_with(&index_canon)), "{:?}", m.files.keys().collect::<Vec<_>>());
    // Indexing again changes nothing (the LOCK and MANIFEST it just wrote are not picked up).
    let again = engine.index(&[], &IndexJob::default(), &mut |_| {}).unwrap();
    assert_eq!((again.files_indexed, again.files_removed), (0, 0), "{again:?}");

    // Search, in every mode.
    for mode in [Mode::Hybrid, Mode::Dense, Mode::Lexical] {
        let hits = engine.search(&request("how long should the dough proof overnight", 5, mode)).unwrap();
        assert!(hits[0].path.ends_with("sourdough-schedule.md"), "{mode:?}: {}", hits[0].path);
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    }
    let hits = engine.search(&request("dough proof", 3, Mode::Lexical)).unwrap();
    let h = &hits[0];
    assert!(h.start_line >= 1 && h.end_line >= h.start_line);
    assert!(!h.highlights.is_empty());
    for (s, e) in &h.highlights {
        assert!(h.text[*s..*e].to_lowercase().starts_with("dough") || h.text[*s..*e].to_lowercase().starts_with("proof"));
    }

    // Filters work inside the search, in every mode, and still fill k from the allowed files.
    let lru = std::fs::canonicalize(docs.join("code/lru_cache.rs")).unwrap().to_string_lossy().into_owned();
    let lru_chunks = {
        let e = &m.files[&lru];
        (e.chunks.1 - e.chunks.0) as usize
    };
    assert!(lru_chunks >= 2, "the LRU sample should have several chunks");
    for mode in [Mode::Hybrid, Mode::Dense, Mode::Lexical] {
        let mut r = request("how long should the dough proof overnight", lru_chunks, mode);
        r.path = vec!["lru_cache.rs".into()];
        r.per_file = 0;
        let hits = engine.search(&r).unwrap();
        // The query shares no word with the file, so lexical mode finds nothing there; the
        // dense and hybrid modes must return every chunk of the one allowed file.
        if mode == Mode::Lexical {
            assert!(hits.iter().all(|h| h.path == lru));
        } else {
            assert_eq!(hits.len(), lru_chunks, "{mode:?}");
            assert!(hits.iter().all(|h| h.path == lru), "{mode:?}");
        }
    }
    let mut r = request("plants", 20, Mode::Hybrid);
    r.path = vec!["notes".into(), "!**/kyoto*".into()];
    let hits = engine.search(&r).unwrap();
    assert!(!hits.is_empty());
    assert!(hits.iter().all(|h| h.path.contains("/notes/") && !h.path.contains("kyoto")));
    let mut r = request("winter", 20, Mode::Hybrid);
    r.kinds = vec!["html".into()];
    let hits = engine.search(&r).unwrap();
    assert!(!hits.is_empty() && hits.iter().all(|h| h.path.ends_with(".html")));
    let mut r = request("winter", 20, Mode::Hybrid);
    r.after = Some("2999-01-01".into());
    assert!(engine.search(&r).unwrap().is_empty());
    r.after = None;
    r.before = Some("2999-01-01".into());
    assert!(!engine.search(&r).unwrap().is_empty());

    // get: the indexed text, whole and by lines.
    let note = docs.join("notes/sourdough-schedule.md");
    let original = std::fs::read_to_string(&note).unwrap();
    let doc = engine.get(&note, None).unwrap();
    let trim = |s: &str| s.lines().map(str::trim_end).collect::<Vec<_>>().join("\n").trim().to_string();
    assert_eq!(trim(&doc.text), trim(&original));
    let part = engine.get(&note, Some((3, 5))).unwrap();
    assert_eq!((part.start_line, part.end_line), (3, 5));
    let want: Vec<&str> = original.lines().skip(2).take(3).collect();
    assert_eq!(trim(&part.text), trim(&want.join("\n")));
    assert!(matches!(engine.get(Path::new("/no/such/file.md"), None), Err(Error::NotIndexed(_))));
    assert!(matches!(engine.get(&note, Some((5, 2))), Err(Error::InvalidInput(_))));

    // remove: gone from search, excluded from the next run over the root.
    let n = engine.remove(&docs.join("notes")).unwrap();
    assert_eq!(n, 6);
    let hits = engine.search(&request("how long should the dough proof overnight", 10, Mode::Hybrid)).unwrap();
    assert!(hits.iter().all(|h| !h.path.contains("/notes/")));
    let again = engine.index(&[], &IndexJob::default(), &mut |_| {}).unwrap();
    assert_eq!(again.files_indexed, 0);
    assert_eq!(engine.status().unwrap().files, st.files - 6);
}

#[test]
fn searches_run_while_indexing_and_see_each_commit() {
    let t = TempDir::new("engine-concurrent");
    let docs = t.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("seed.md"), "# Seed\n\nThe lighthouse keeper logs the weather every evening.\n").unwrap();
    let index = t.path().join("index");
    let engine = Arc::new(Engine::open(&index, EngineOptions { commit_every_chunks: 16, ..opts() }).unwrap());
    engine.index(&[docs.clone()], &IndexJob::default(), &mut |_| {}).unwrap();
    let batch = docs.join("batch");
    std::fs::create_dir_all(&batch).unwrap();
    for i in 0..60 {
        std::fs::write(batch.join(format!("n{i:03}.txt")), format!("Note {i}: the zebrafish{i} fin regrows after injury.\n")).unwrap();
    }
    // A second engine on the same directory stands for another process that only searches.
    let other = Engine::open_existing(&index, opts()).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (engine, docs, done) = (engine.clone(), docs.clone(), done.clone());
        std::thread::spawn(move || {
            let r = engine.index(&[docs], &IndexJob::default(), &mut |_| {});
            done.store(true, Ordering::SeqCst);
            r
        })
    };
    let mut searches = 0;
    let mut seen_partial = false;
    let started = std::time::Instant::now();
    while !done.load(Ordering::SeqCst) && started.elapsed().as_secs() < 120 {
        let hits = engine.search(&request("lighthouse keeper weather", 3, Mode::Lexical)).unwrap();
        assert!(hits[0].path.ends_with("seed.md"));
        let n = engine.search(&request("zebrafish fin regrows", 100, Mode::Lexical)).unwrap().len();
        seen_partial |= n > 0 && n < 60;
        searches += 1;
    }
    let report = writer.join().unwrap().unwrap();
    assert_eq!(report.files_indexed, 60);
    assert!(searches >= 1);
    assert!(report.generation >= 3, "several commits expected: {report:?}");
    // Both engines see the final state without being reopened.
    for e in [&*engine, &other] {
        let hits = e.search(&request("zebrafish fin regrows after injury", 100, Mode::Lexical)).unwrap();
        assert_eq!(hits.len(), 60);
        let dense = e.search(&request("zebrafish41 fin regrows", 5, Mode::Hybrid)).unwrap();
        assert!(dense[0].path.ends_with("n041.txt"), "{}", dense[0].path);
    }
    eprintln!("{searches} searches during indexing; a partial state was seen: {seen_partial}");
}

#[test]
fn cancelling_a_job_keeps_what_was_committed() {
    let t = TempDir::new("engine-cancel");
    let docs = t.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    for i in 0..40 {
        std::fs::write(docs.join(format!("c{i:03}.txt")), format!("Entry {i} about the quokka{i} on Rottnest island.\n")).unwrap();
    }
    let index = t.path().join("index");
    let engine = Engine::open(&index, EngineOptions { commit_every_chunks: 4, ..opts() }).unwrap();
    let cancel = Arc::new(AtomicBool::new(false));
    let job = IndexJob { cancel: Some(cancel.clone()), ..Default::default() };
    let err = engine
        .index(&[docs.clone()], &job, &mut |p| {
            if let Progress::File { done: 10, .. } = p {
                cancel.store(true, Ordering::SeqCst);
            }
        })
        .unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err:?}");
    let st = engine.status().unwrap();
    assert!(st.files >= 10 && st.files < 40, "{st:?}");
    // Every committed file answers; the rest comes with the next run.
    let hits = engine.search(&request("quokka Rottnest island", 100, Mode::Lexical)).unwrap();
    assert_eq!(hits.len(), st.files);
    let rest = engine.index(&[], &IndexJob::default(), &mut |_| {}).unwrap();
    assert_eq!(rest.files_indexed, 40 - st.files);
    assert_eq!(engine.status().unwrap().files, 40);
}

#[test]
fn rerank_and_several_queries_through_the_engine() {
    let t = TempDir::new("engine-rerank");
    let docs = t.path().join("docs");
    copy_dir(&crate::common::repo().join("samples/notes"), &docs);
    let engine = Engine::open(t.path().join("index"), opts()).unwrap();
    engine.index(&[docs], &IndexJob::default(), &mut |_| {}).unwrap();
    let mut r = request("which heat shock proteins help refold proteins", 3, Mode::Hybrid);
    r.rerank = true;
    r.rerank_top = 5;
    let hits = engine.search(&r).unwrap();
    assert_eq!(hits.len(), 3);
    assert!(hits[0].path.ends_with("protein-folding-chaperones.md"), "{}", hits[0].path);
    let mut r = request("index funds", 5, Mode::Hybrid);
    r.queries = vec!["bond prices when interest rates rise".into()];
    let hits = engine.search(&r).unwrap();
    assert!(hits[0].path.ends_with("index-funds-vs-bonds.md"));
    // Bad requests are typed errors, not panics.
    for bad in [SearchRequest { k: 0, ..SearchRequest::new("x") }, SearchRequest::default()] {
        assert!(matches!(engine.search(&bad), Err(Error::InvalidInput(_))));
    }
}

#[test]
fn many_threads_search_one_engine_at_once() {
    // usearch keeps a fixed number of search contexts per index; more simultaneous searches
    // than that used to fail ("Reserve capacity ahead of searches!") and surface as Corrupt.
    let t = TempDir::new("engine-threads");
    let docs = t.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    for i in 0..40 {
        std::fs::write(docs.join(format!("t{i:02}.txt")), format!("Record {i}: the heron{i} waits by the canal at dawn.\n")).unwrap();
    }
    let engine = Arc::new(Engine::open(t.path().join("index"), opts()).unwrap());
    engine.index(&[docs], &IndexJob::default(), &mut |_| {}).unwrap();
    let queries: Vec<Vec<f32>> = {
        let e = engine.embedder().unwrap();
        e.embed(&["heron by the canal", "dawn", "a bird waiting"]).unwrap()
    };
    let queries = Arc::new(queries);
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let (engine, queries) = (engine.clone(), queries.clone());
            std::thread::spawn(move || {
                let snap = engine.snapshot().unwrap();
                for j in 0..200 {
                    let hits = snap.reader.dense(&queries[(i + j) % 3], 10, false).unwrap();
                    assert_eq!(hits.len(), 10);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// A resident limit below what the process holds makes searches give the index's mapped pages
/// back (counted by `page_releases`), and changes no answer; without a limit, or with one far
/// above, nothing is given back.
#[cfg(target_os = "linux")]
#[test]
fn a_resident_limit_gives_mapped_pages_back_and_changes_no_answer() {
    let t = TempDir::new("engine-resident");
    let (docs, index) = sample_root(&t);
    Engine::open(&index, opts()).unwrap().index(&[docs], &IndexJob::default(), &mut |_| {}).unwrap();
    let limited = |limit| Engine::open_existing(&index, EngineOptions { resident_limit: limit, ..opts() }).unwrap();
    let (none, tiny, huge) = (limited(None), limited(Some(1)), limited(Some(u64::MAX)));
    // Over the limit, each vector file gives its pages back after its part of the dense
    // search, and the whole snapshot after the search.
    let per_search = tiny.snapshot().unwrap().reader.vector_files() as u64 + 1;
    assert!(per_search >= 2);
    for (i, q) in ["overnight proof", "how do I reset my password", "tides and the moon"].iter().enumerate() {
        let req = request(q, 5, Mode::Hybrid);
        let want = none.search(&req).unwrap();
        assert!(!want.is_empty());
        let got = tiny.search(&req).unwrap();
        let show = |h: &[ponder::present::Hit]| h.iter().map(|h| (h.path.clone(), h.start_line, h.score)).collect::<Vec<_>>();
        assert_eq!(show(&got), show(&want), "{q}");
        assert_eq!(tiny.page_releases(), (2 * i as u64 + 1) * per_search);
        let ranked = tiny.rank(&tiny.snapshot().unwrap(), &req).unwrap();
        assert_eq!(ranked, none.rank(&none.snapshot().unwrap(), &req).unwrap());
        assert_eq!(tiny.page_releases(), (2 * i as u64 + 2) * per_search);
        huge.search(&req).unwrap();
    }
    assert_eq!((none.page_releases(), huge.page_releases()), (0, 0));
}

const CHAPTERS: [(&str, &str); 4] = [
    ("Glaciers", "A glacier forms where snow accumulates faster than it melts, year after year, until the \
      buried layers recrystallise into dense blue ice. Under its own weight the ice deforms and creeps \
      downhill, scraping the valley floor into a broad U shape and carrying boulders far from their source."),
    ("Tides", "Tides are the slow rise and fall of the sea caused by the gravitational pull of the moon and \
      the sun on the rotating earth. Most coasts see two high waters a day; spring tides follow the new and \
      full moon, when both bodies pull along one line, and neap tides fall between them."),
    ("Volcanoes", "A volcano is an opening in the crust through which molten rock, ash and gases escape. Where \
      magma is runny, lava flows far and builds gentle shield volcanoes; sticky magma traps gas and erupts \
      explosively, piling steep cones of ash and cinders around the vent."),
    ("Deserts", "Deserts receive less than about twenty-five centimetres of rain in a year. Cold ocean \
      currents, rain shadows behind mountain ranges and sinking dry air near the tropics all starve a region \
      of water, and the plants that survive store it in fleshy stems or send roots deep."),
];

/// A little book published twice, as chapters and as one whole-book page, plus a long note
/// that mentions one word in every section.
fn book_root(t: &TempDir) -> PathBuf {
    let root = t.path().join("library");
    std::fs::create_dir_all(root.join("book")).unwrap();
    let mut print = String::from("<html><body>\n");
    for (i, (title, body)) in CHAPTERS.iter().enumerate() {
        let page = format!("<html><body><h1>{title}</h1>\n<p>{body}</p>\n</body></html>\n");
        std::fs::write(root.join(format!("book/ch{i}.html")), page).unwrap();
        print.push_str(&format!("<h1>{title}</h1>\n<p>{body}</p>\n"));
    }
    print.push_str("</body></html>\n");
    std::fs::write(root.join("book/print.html"), print).unwrap();
    let mut long = String::new();
    for i in 0..8 {
        long.push_str(&format!(
            "## Field trip {i}\n\nDay {i} of the trip: we measured the moraine, logged {} samples and \
             compared the readings with the survey from station {}. The weather held.\n\n",
            i * 3 + 2,
            i + 40
        ));
    }
    std::fs::write(root.join("fieldwork.md"), long).unwrap();
    root
}

#[test]
fn duplicates_collapse_files_are_capped_and_hits_explain_themselves() {
    let t = TempDir::new("engine-diversity");
    let root = book_root(&t);
    let engine = Engine::open(t.path().join("index"), opts()).unwrap();
    engine.index(&[root.clone()], &IndexJob::default(), &mut |_| {}).unwrap();
    let print = std::fs::canonicalize(root.join("book/print.html")).unwrap().to_string_lossy().into_owned();
    let tides = std::fs::canonicalize(root.join("book/ch1.html")).unwrap().to_string_lossy().into_owned();

    // The chapter and the whole-book page hold the same text: one hit, the chapter shown and
    // the book listed with it, in every mode.
    for mode in [Mode::Hybrid, Mode::Dense, Mode::Lexical] {
        let hits = engine.search(&request("why are there two high tides a day", 5, mode)).unwrap();
        assert_eq!(hits[0].path, tides, "{mode:?}");
        assert_eq!(hits[0].also_in, vec![print.clone()], "{mode:?}");
        assert!(hits.iter().all(|h| h.path != print), "{mode:?}: the book page is not a hit of its own");
        let mut chapters: Vec<&str> = hits.iter().map(|h| h.path.as_str()).filter(|p| p.contains("/book/")).collect();
        let n = chapters.len();
        chapters.sort();
        chapters.dedup();
        assert_eq!(chapters.len(), n, "{mode:?}: each chapter's text once");
        // Without dedup the book page competes with its own chapter.
        let mut r = request("why are there two high tides a day", 5, mode);
        r.dedup = false;
        let raw = engine.search(&r).unwrap();
        assert!(raw.iter().take(2).any(|h| h.path == print), "{mode:?}");
        assert!(raw.iter().all(|h| h.also_in.is_empty()));
    }

    // A file gives at most 2 hits by default; per_file changes it; files gives one row per file.
    let words = "moraine samples station survey readings";
    let hits = engine.search(&request(words, 10, Mode::Lexical)).unwrap();
    assert_eq!(hits.len(), ponder::engine::DEFAULT_PER_FILE, "only fieldwork.md has these words: {:?}", hits.iter().map(|h| &h.path).collect::<Vec<_>>());
    let mut r = request(words, 10, Mode::Lexical);
    r.per_file = 0;
    assert_eq!(engine.search(&r).unwrap().len(), 8);
    r.per_file = 5;
    assert_eq!(engine.search(&r).unwrap().len(), 5);
    let mut r = request("geology of the earth", 10, Mode::Hybrid);
    r.files = true;
    let hits = engine.search(&r).unwrap();
    let mut paths: Vec<&str> = hits.iter().map(|h| h.path.as_str()).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), hits.len(), "one row per file");
    assert_eq!(hits.len(), 5, "four chapters (the book page collapses into them) and the field notes");

    // Explanations: both lists' ranks and scores, the fused score, null where a list missed.
    let mut r = request("sticky magma erupts explosively", 3, Mode::Hybrid);
    r.explain = true;
    let hits = engine.search(&r).unwrap();
    let e = hits[0].explain.clone().expect("explained");
    assert_eq!(e.dense_rank, Some(1));
    assert_eq!(e.lexical_rank, Some(1));
    assert!(e.dense_score.unwrap() > 0.3 && e.lexical_score.unwrap() > 0.0);
    assert_eq!(e.fused_score, Some(hits[0].score));
    assert_eq!(e.rerank_score, None);
    r.mode = Mode::Lexical;
    let e = engine.search(&r).unwrap()[0].explain.clone().unwrap();
    assert!(e.dense_score.is_none() && e.dense_rank.is_none() && e.lexical_rank == Some(1));
    r.mode = Mode::Hybrid;
    r.rerank = true;
    let hits = engine.search(&r).unwrap();
    assert!(hits[0].explain.as_ref().unwrap().rerank_score.is_some());
    assert!(engine.search(&request("sticky magma", 3, Mode::Hybrid)).unwrap()[0].explain.is_none());

    // The CLI's JSON contract: the fields are there, null where a list did not return the chunk.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ponder"))
        .args(["search", "sticky magma erupts explosively", "--mode", "lexical", "--explain", "--json", "-k", "2"])
        .args(["--index", t.path().join("index").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let first: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    for key in ["dense_score", "dense_rank", "lexical_score", "lexical_rank", "rerank_score", "page", "page_end"] {
        assert!(first.get(key).is_some(), "{key} missing: {first}");
    }
    assert!(first["dense_score"].is_null() && first["dense_rank"].is_null());
    assert_eq!(first["lexical_rank"], 1);
    assert!(first["also_in"].is_array());
}
