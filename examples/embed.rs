//! Embedding ponder in a Rust program through `ponder::engine::Engine`: open an index, index a
//! folder (with progress), search it, print the hits.
//!
//! ```sh
//! cargo run --release --example embed -- samples "how long should the dough proof overnight"
//! cargo run --release --example embed -- ~/notes "router settings" --index /tmp/notes-index -k 3
//! ```
//!
//! Programs not written in Rust use the same engine through the C ABI: `include/ponder.h`.

use std::path::PathBuf;
use std::process::ExitCode;

use ponder::engine::{Engine, EngineOptions, IndexJob, SearchRequest};
use ponder::index::Progress;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut positional = Vec::new();
    let mut index_dir = None;
    let mut k = 5;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--index" => index_dir = Some(PathBuf::from(args.next().ok_or("--index needs a directory")?)),
            "-k" => k = args.next().ok_or("-k needs a number")?.parse()?,
            _ => positional.push(a),
        }
    }
    let [folder, query] = <[String; 2]>::try_from(positional)
        .map_err(|_| "usage: embed FOLDER QUERY [--index DIR] [-k N]")?;
    let index_dir = index_dir.unwrap_or_else(|| std::env::temp_dir().join("ponder-embed-example"));

    // One engine per index directory; it is Send + Sync, so an application shares it (in an
    // Arc) between its threads. Models load on first use.
    let engine = Engine::open(&index_dir, EngineOptions::default())?;

    // Index the folder: unchanged files are skipped on later runs.
    let mut on_progress = |p: Progress| match p {
        Progress::Walked { files } => eprintln!("found {files} files"),
        Progress::Warning(w) => eprintln!("warning: {w}"),
        Progress::Committed { generation, files, chunks } => {
            eprintln!("committed generation {generation}: {files} files, {chunks} chunks")
        }
        Progress::File { .. } => {}
    };
    let report = engine.index(&[PathBuf::from(&folder)], &IndexJob::default(), &mut on_progress)?;
    eprintln!(
        "indexed {} files ({} unchanged) into {}, {} chunks added in {:.1}s",
        report.files_indexed,
        report.files_unchanged,
        index_dir.display(),
        report.chunks_added,
        report.elapsed_s
    );

    // Search: a request as `ponder serve` and the C ABI take it (SearchRequest::from_json
    // parses the JSON form).
    let request = SearchRequest { k, ..SearchRequest::new(query) };
    let hits = engine.search(&request)?;
    if hits.is_empty() {
        println!("no hits");
    }
    for (rank, hit) in hits.iter().enumerate() {
        let heading = hit.heading.as_deref().map(|h| format!("  [{h}]")).unwrap_or_default();
        println!("{}. {}:{}-{}  score {:.4}{}", rank + 1, hit.path, hit.start_line, hit.end_line, hit.score, heading);
        let snippet: String = hit.text.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(160).collect();
        println!("   {snippet}");
    }
    Ok(())
}
