//! ponder needs no network: indexing (a PDF included), search, rerank, eval and `get` all run
//! inside a network namespace that has no interface but a loopback that is down and no route,
//! so any connection ponder tried to open would fail there.

use crate::common::{copy_dir, TempDir};
use std::path::Path;
use std::process::{Command, Output};

/// How to enter a fresh network namespace here: as root `unshare -n`, otherwise a user
/// namespace too (`unshare -rn`).
fn namespace_prefix() -> Vec<&'static str> {
    for prefix in [vec!["unshare", "-n"], vec!["unshare", "-rn"]] {
        let ok = Command::new(prefix[0]).args(&prefix[1..]).arg("true").output().is_ok_and(|o| o.status.success());
        if ok {
            return prefix;
        }
    }
    panic!("cannot create a network namespace with `unshare -n` or `unshare -rn` (util-linux); this test needs one");
}

fn offline(prefix: &[&str], args: &[&str]) -> Output {
    let out = Command::new(prefix[0])
        .args(&prefix[1..])
        .arg(env!("CARGO_BIN_EXE_ponder"))
        .args(args)
        .env("PONDER_NO_GPU", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "offline `ponder {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn index_search_rerank_and_eval_run_without_a_network() {
    let prefix = namespace_prefix();
    // The namespace really has no way out: only `lo` (down in a new namespace), no route.
    let net = Command::new(prefix[0]).args(&prefix[1..]).args(["cat", "/proc/net/dev"]).output().unwrap();
    let ifaces: Vec<String> = String::from_utf8_lossy(&net.stdout)
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(|s| s.trim().to_string()))
        .collect();
    assert_eq!(ifaces, vec!["lo".to_string()], "the namespace should have only a loopback");
    // No IPv4 route (at most the header line).
    let routes = Command::new(prefix[0]).args(&prefix[1..]).args(["cat", "/proc/net/route"]).output().unwrap();
    let routes = String::from_utf8_lossy(&routes.stdout).into_owned();
    assert!(routes.lines().all(|l| l.starts_with("Iface")), "the namespace has routes: {routes}");

    let t = TempDir::new("offline");
    let docs = t.path().join("docs");
    copy_dir(&crate::common::repo().join("samples"), &docs);
    let pdf = Path::new("/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf");
    let with_pdf = pdf.exists();
    if with_pdf {
        std::fs::copy(pdf, docs.join("mime-spec.pdf")).unwrap();
    } else {
        eprintln!("NOTE: {} is missing; the offline run indexes no PDF", pdf.display());
    }
    let index = t.path().join("index");
    let (docs_s, index_s) = (docs.to_str().unwrap(), index.to_str().unwrap());

    let out = offline(&prefix, &["index", docs_s, "--index", index_s, "--progress", "plain"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("indexed"));

    let out = offline(&prefix, &["search", "how long should the dough proof overnight", "--index", index_s, "--json", "-k", "3"]);
    let first: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert!(first["path"].as_str().unwrap().ends_with("sourdough-schedule.md"), "{first}");

    let out = offline(
        &prefix,
        &["search", "how long should the dough proof overnight", "--index", index_s, "--json", "--rerank", "--explain"],
    );
    let first: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert!(first["rerank_score"].is_number(), "{first}");

    if with_pdf {
        let out = offline(&prefix, &["search", "extended attributes", "--index", index_s, "--json", "--type", "pdf", "-k", "1"]);
        let hit: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
        assert!(hit["page"].as_u64().is_some_and(|p| p >= 1), "{hit}");
    }
    let note = docs.join("notes/sourdough-schedule.md");
    let out = offline(&prefix, &["get", &format!("{}:1-3", note.display()), "--index", index_s]);
    assert!(!out.stdout.is_empty());

    // A small BEIR collection: three documents, two queries.
    let beir = t.path().join("beir");
    std::fs::create_dir_all(beir.join("qrels")).unwrap();
    std::fs::write(
        beir.join("corpus.jsonl"),
        [
            r#"{"_id": "d1", "title": "Tides", "text": "The moon's gravity raises two tidal bulges, so most coasts get two high tides a day."}"#,
            r#"{"_id": "d2", "title": "Volcanoes", "text": "Sticky magma traps gas and erupts explosively, building steep cones."}"#,
            r#"{"_id": "d3", "title": "Deserts", "text": "Rain shadows behind mountains keep deserts dry."}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    std::fs::write(
        beir.join("queries.jsonl"),
        "{\"_id\": \"q1\", \"text\": \"why are there two high tides each day\"}\n{\"_id\": \"q2\", \"text\": \"what makes an eruption explosive\"}\n",
    )
    .unwrap();
    std::fs::write(beir.join("qrels/test.tsv"), "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n").unwrap();
    let cache = t.path().join("eval-cache");
    let out = offline(&prefix, &["eval", beir.to_str().unwrap(), "--cache", cache.to_str().unwrap(), "--json"]);
    let row: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(row["ndcg@10"], 100.0, "{row}");
    let out = offline(&prefix, &["eval", beir.to_str().unwrap(), "--cache", cache.to_str().unwrap(), "--json", "--rerank"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("rerank_top"));
}
