//! `ponder serve` from outside: the real binary on a loopback port (and a Unix socket), spoken
//! to with a small hand-written HTTP/1.1 client. Covers the routes, answers equal to the CLI's,
//! indexing jobs (progress stream, cancel, a client leaving mid-stream), the error contract,
//! 10,000 junk requests, `kill -9` in the middle of a job, and the refusal of remote addresses.

use crate::common::{repo, TempDir};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

fn ponder() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ponder"))
}

/// Runs the CLI and returns its stdout; panics with its stderr on failure.
fn cli(args: &[&str]) -> String {
    let out = Command::new(ponder()).args(args).stdin(Stdio::null()).output().expect("running ponder");
    assert!(out.status.success(), "ponder {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ---------------------------------------------------------------------------------------------
// The server process

/// A running `ponder serve`, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    token: Option<String>,
}

impl Server {
    /// Starts the server on `127.0.0.1:0` and waits for every `listening on` line.
    fn start(index: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(ponder())
            .args(["serve", "--index", s(index), "--addr", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting ponder serve");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let stderr = child.stderr.take().unwrap();
        {
            // Drains stderr for the server's whole life, so that it never blocks on a full pipe.
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    log.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        let want = if extra.contains(&"--socket") { 2 } else { 1 };
        let mut addr = None;
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(120);
        while seen < want {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(a) = line.strip_prefix("listening on http://") {
                        addr = Some(a.parse::<SocketAddr>().expect("a socket address"));
                        seen += 1;
                    } else if line.starts_with("listening on unix:") {
                        seen += 1;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("the server did not start: {:?}", log.lock().unwrap());
                }
            }
        }
        let addr = addr.unwrap();
        assert!(addr.ip().is_loopback());
        let token = extra.iter().position(|a| *a == "--token").map(|i| extra[i + 1].to_string());
        Server { child, addr, log, token }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn auth(&self) -> Vec<(String, String)> {
        self.token.iter().map(|t| ("Authorization".to_string(), format!("Bearer {t}"))).collect()
    }

    fn get(&self, path: &str) -> Reply {
        self.send("GET", path, &[], None)
    }

    fn post(&self, path: &str, body: &Value) -> Reply {
        let body = body.to_string();
        self.send("POST", path, &[("Content-Type", "application/json")], Some(body.as_bytes()))
    }

    fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Reply {
        let mut h: Vec<(String, String)> = self.auth();
        h.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let stream = TcpStream::connect(self.addr).expect("connecting");
        stream.set_read_timeout(Some(Duration::from_secs(180))).unwrap();
        stream.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
        exchange(stream, &self.addr.to_string(), method, path, &h, body)
    }

    fn search(&self, req: Value) -> Vec<Value> {
        let r = self.post("/search", &req);
        assert_eq!(r.status, 200, "search {req}: {}", r.text());
        r.json()["hits"].as_array().unwrap().clone()
    }

    fn wait_job(&self, id: u64, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let j = self.get(&format!("/jobs/{id}")).json();
            if ["done", "failed", "cancelled"].contains(&j["state"].as_str().unwrap()) {
                return j;
            }
            assert!(Instant::now() < deadline, "job {id} did not finish: {j}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// A small HTTP/1.1 client

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    /// Asserts a JSON error of this status and type.
    fn error(&self, status: u16, kind: &str) -> String {
        assert_eq!(self.status, status, "wanted {status} {kind}, got: {}", self.text());
        let v = self.json();
        assert_eq!(v["error"]["type"], kind, "{v}");
        let m = v["error"]["message"].as_str().unwrap().to_string();
        assert!(!m.is_empty());
        m
    }
}

/// One request on a fresh connection (`Connection: close`), read to the end.
fn exchange<S: Read + Write>(mut stream: S, host: &str, method: &str, path: &str, headers: &[(String, String)], body: Option<&[u8]>) -> Reply {
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {host}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    let mut req = head.into_bytes();
    req.extend_from_slice(body.unwrap_or_default());
    // The server may answer (413) and close before reading everything: a failed write is fine,
    // the answer is still there to read.
    let _ = stream.write_all(&req);
    let _ = stream.flush();
    let mut reader = BufReader::new(stream);
    read_reply(&mut reader)
}

fn read_head<R: BufRead>(r: &mut R) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    r.read_line(&mut line).expect("reading the status line");
    let status: u16 = line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).expect("reading a header");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').expect("a header line");
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    (status, headers)
}

fn read_reply<R: BufRead>(r: &mut R) -> Reply {
    let (status, headers) = read_head(r);
    let find = |n: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        while let Some(chunk) = read_chunk(r) {
            body.extend(chunk);
        }
    } else if let Some(n) = find("content-length") {
        body.resize(n.parse().unwrap(), 0);
        r.read_exact(&mut body).expect("reading the body");
    } else {
        let _ = r.read_to_end(&mut body);
    }
    Reply { status, headers, body }
}

/// One chunk of a chunked body; `None` at the end.
fn read_chunk<R: BufRead>(r: &mut R) -> Option<Vec<u8>> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let n = usize::from_str_radix(line.trim().split(';').next().unwrap(), 16).ok()?;
    let mut data = vec![0; n + 2];
    r.read_exact(&mut data).ok()?;
    data.truncate(n);
    (n > 0).then_some(data)
}

/// A job's event stream, read line by line.
struct Events {
    reader: BufReader<TcpStream>,
    pending: Vec<u8>,
}

impl Events {
    fn open(srv: &Server, id: u64) -> Events {
        let stream = TcpStream::connect(srv.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut head = format!("GET /jobs/{id}/events HTTP/1.1\r\nHost: {}\r\n", srv.addr);
        for (k, v) in srv.auth() {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        (&stream).write_all(head.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let (status, headers) = read_head(&mut reader);
        assert_eq!(status, 200);
        assert!(headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("content-type") && v.starts_with("application/x-ndjson")), "{headers:?}");
        Events { reader, pending: Vec::new() }
    }

    /// The next event; `None` when the stream ends.
    fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(i) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=i).collect();
                return Some(serde_json::from_slice(&line).unwrap_or_else(|e| panic!("event line {:?}: {e}", String::from_utf8_lossy(&line))));
            }
            let chunk = read_chunk(&mut self.reader)?;
            self.pending.extend(chunk);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn hit_keys(hits: &[Value]) -> Vec<(String, u64)> {
    hits.iter().map(|h| (h["path"].as_str().unwrap().to_string(), h["chunk_id"].as_u64().unwrap())).collect()
}

/// `ponder search --json` for the same request.
fn cli_hits(index: &Path, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["search", "--index", s(index), "--json"];
    all.extend(args);
    cli(&all).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn assert_same_hits(server: &[Value], cli: &[Value], what: &str) {
    assert!(!server.is_empty(), "{what}: no hits");
    assert_eq!(hit_keys(server), hit_keys(cli), "{what}: server and CLI disagree");
    for (a, b) in server.iter().zip(cli) {
        assert!((a["score"].as_f64().unwrap() - b["score"].as_f64().unwrap()).abs() < 1e-5, "{what}: scores {a} {b}");
        for field in ["start_line", "end_line", "heading", "text", "highlights"] {
            assert_eq!(a[field], b[field], "{what}: field {field}");
        }
    }
}

/// `n` notes of one chunk each: a line, plus `paragraphs` paragraphs of some 60 tokens.
fn write_notes(dir: &Path, n: usize, tag: &str, paragraphs: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        let mut body = format!("# Note {i} {tag}\n\nA remark about topic {}, item {i}.\n\n", i % 23);
        for p in 0..paragraphs {
            body.push_str(&format!(
                "Paragraph {p} of note {i}: a remark about topic {} and the {tag} item {i}, with some words about \
                 gardens, rivers, engines and bread so that the chunk has a little weight to embed.\n\n",
                i % 23
            ));
        }
        std::fs::write(dir.join(format!("n{i:03}.md")), body).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn serves_search_jobs_and_errors_like_the_cli() {
    let t = TempDir::new("serve");
    let index = t.path().join("index");
    let samples = repo().join("samples");
    cli(&["index", s(&samples), "--index", s(&index), "--progress", "none"]);
    // Unix socket paths are limited to about 100 bytes: fall back to /tmp for a deep checkout.
    let mut socket = t.path().join("ponder.sock");
    if socket.as_os_str().len() > 100 {
        socket = std::env::temp_dir().join(format!("ponder-serve-test-{}.sock", std::process::id()));
    }
    let srv = Server::start(&index, &["--socket", s(&socket), "--max-concurrent", "4"]);

    // Health, info, status.
    let r = srv.get("/health");
    assert_eq!((r.status, r.json()), (200, json!({"status": "ok"})));
    assert!(r.header("content-type").unwrap().starts_with("application/json"));
    let info = srv.get("/info").json();
    assert_eq!(info["limits"]["max_concurrent"], 4);
    assert_eq!(info["limits"]["max_body_bytes"], 1 << 20);
    let status = srv.get("/status").json();
    let cli_status: Value = serde_json::from_str(&cli(&["status", "--index", s(&index), "--json"])).unwrap();
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&status), keys(&cli_status));
    for f in ["generation", "files", "chunks", "model", "model_fingerprint", "dim", "roots"] {
        assert_eq!(status[f], cli_status[f], "status field {f}");
    }
    assert!(status["files"].as_u64().unwrap() >= 8);

    // Searches answer as the CLI does.
    for q in ["how long should the dough proof overnight", "which Wi-Fi channels do not overlap", "evict least recently used entry"] {
        let hits = srv.search(json!({"query": q, "k": 5}));
        assert_eq!(hits.len(), 5);
        assert_same_hits(&hits, &cli_hits(&index, &[q, "-k", "5"]), q);
    }
    let (q1, q2) = ("bond prices when rates go up", "index funds or bonds");
    assert_same_hits(&srv.search(json!({"queries": [q1, q2], "k": 4})), &cli_hits(&index, &[q1, "--query", q2, "-k", "4"]), "queries");
    let q = "heat shock proteins refold proteins";
    let lexical = srv.search(json!({"query": q, "k": 3, "mode": "lexical"}));
    assert_eq!(lexical.len(), 3);
    assert_same_hits(&lexical, &cli_hits(&index, &[q, "-k", "3", "--mode", "lexical"]), "lexical");
    let q = "does sleep help you remember what you learned";
    assert_same_hits(
        &srv.search(json!({"query": q, "k": 3, "rerank": true, "rerank_top": 8, "rerank_weight": 0.5})),
        &cli_hits(&index, &[q, "-k", "3", "--rerank", "--rerank-top", "8", "--rerank-weight", "0.5"]),
        "rerank",
    );
    // Concurrent searches (more than the machine has cores) answer as single ones do.
    let qs = ["sourdough levain", "bond duration", "Wi-Fi channels", "protein chaperones", "Kyoto temples", "Stoic reading", "photosynthesis", "LRU cache"];
    let want: Vec<_> = qs.iter().map(|q| hit_keys(&srv.search(json!({"query": q, "k": 5, "exact": true})))).collect();
    std::thread::scope(|sc| {
        for t in 0..8 {
            let (srv, qs, want) = (&srv, &qs, &want);
            sc.spawn(move || {
                for i in 0..6 {
                    let q = (t + i) % qs.len();
                    assert_eq!(hit_keys(&srv.search(json!({"query": qs[q], "k": 5, "exact": true}))), want[q], "{}", qs[q]);
                }
            });
        }
    });
    // Filters.
    let md = srv.search(json!({"query": "notes", "k": 20, "path": ["*.md"]}));
    assert!(!md.is_empty() && md.iter().all(|h| h["path"].as_str().unwrap().ends_with(".md")), "{md:?}");
    let code = srv.search(json!({"query": "cache", "k": 20, "type": ["code"]}));
    assert!(!code.is_empty() && code.iter().all(|h| h["path"].as_str().unwrap().contains("/code/")), "{code:?}");
    assert!(srv.search(json!({"query": "bread", "after": "2999-01-01"})).is_empty());
    // One row per file, explained, as the CLI gives it.
    let files = srv.search(json!({"query": "notes on reading and travel", "k": 8, "files": true, "explain": true}));
    let mut paths: Vec<&str> = files.iter().map(|h| h["path"].as_str().unwrap()).collect();
    paths.sort();
    paths.dedup();
    assert_eq!((files.len(), paths.len()), (8, 8), "{files:?}");
    assert!(files.iter().all(|h| h["dense_rank"].is_u64() && h.get("lexical_rank").is_some() && h["also_in"].is_array()));
    assert_same_hits(&files, &cli_hits(&index, &["notes on reading and travel", "-k", "8", "--files", "--explain"]), "files");

    // The error contract.
    let post_raw = |path: &str, body: &str| srv.send("POST", path, &[("Content-Type", "application/json")], Some(body.as_bytes()));
    post_raw("/search", r#"{"query": "x""#).error(400, "invalid_input");
    assert!(post_raw("/search", r#"{"query": "x", "colour": 1}"#).error(400, "invalid_input").contains("colour"));
    post_raw("/search", r#"{"query": 5}"#).error(400, "invalid_input");
    post_raw("/search", r#"{"query": "x", "k": 0}"#).error(400, "invalid_input");
    post_raw("/search", r#"{"query": "x", "mode": "psychic"}"#).error(400, "invalid_input");
    post_raw("/search", r#"{"query": "x", "per_file": 1000000}"#).error(400, "invalid_input");
    post_raw("/search", r#"{"query": "x", "files": "yes"}"#).error(400, "invalid_input");
    post_raw("/search", "{}").error(400, "invalid_input");
    post_raw("/search", "").error(400, "invalid_input");
    post_raw("/search", "\u{1F4A9}[").error(400, "invalid_input");
    srv.send("POST", "/search", &[("Content-Type", "application/json")], Some(b"{\"query\": \"\xff\xfe\"}")).error(400, "invalid_input");
    srv.send("POST", "/search", &[("Content-Type", "text/plain")], Some(br#"{"query": "x"}"#)).error(415, "unsupported_media_type");
    let big = format!(r#"{{"query": "{}"}}"#, "a".repeat(2 << 20));
    post_raw("/search", &big).error(413, "payload_too_large");
    chunked_post(&srv, "/search", 3 << 20).error(413, "payload_too_large");
    srv.get("/nope").error(404, "not_found");
    srv.get("/jobs/999999").error(404, "not_found");
    srv.get("/jobs/abc").error(404, "not_found");
    srv.get("/jobs/999999/events").error(404, "not_found");
    srv.send("DELETE", "/jobs/424242", &[], None).error(404, "not_found");
    srv.get("/search").error(405, "method_not_allowed");
    srv.send("GET", "/health", &[("Host", "evil.example:80")], None).error(403, "forbidden");
    srv.send("GET", "/health", &[("Host", "127.0.0.1.nip.io")], None).error(403, "forbidden");
    srv.send("GET", "/health", &[("Host", "localhost"), ("Host", "evil.example")], None).error(400, "invalid_input");
    assert_eq!(srv.send("GET", "/health", &[("Host", "localhost:1234")], None).status, 200);
    srv.send("GET", "/status", &[("Origin", "https://evil.example")], None).error(403, "forbidden");
    srv.send("GET", "/status", &[("Origin", "null")], None).error(403, "forbidden");
    assert_eq!(srv.send("GET", "/health", &[("Origin", "http://localhost:3000")], None).status, 200);
    srv.get("/get?path=/no/such/file.md").error(404, "not_found");
    srv.get("/get").error(400, "invalid_input");
    srv.get("/get?path=x&start=abc").error(400, "invalid_input");
    srv.get("/get?path=x&colour=1").error(400, "invalid_input");
    srv.post("/index", &json!({"paths": ["/no/such/folder"]})).error(400, "invalid_input");
    srv.post("/index", &json!({"paths": "notalist"})).error(400, "invalid_input");
    srv.post("/index", &json!({"paths": [], "colour": 1})).error(400, "invalid_input");
    srv.post("/remove", &json!({})).error(400, "invalid_input");
    srv.post("/remove", &json!({"path": 7})).error(400, "invalid_input");

    // An indexing job: progress stream to the end, then the new file answers.
    let extra = t.path().join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    let note = extra.join("zyx-note.md");
    std::fs::write(&note, "# Quorble\n\nThe zyxquorble is a small blue bird of the northern marshes.\n\nIt sings at dawn.\n").unwrap();
    let r = srv.post("/index", &json!({"paths": [s(&extra)]}));
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["job"].as_u64().unwrap();
    assert_eq!(r.header("location"), Some(format!("/jobs/{id}").as_str()));
    let mut events = Events::open(&srv, id);
    let mut types = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let last = loop {
        let e = events.next().expect("the stream ended before the job did");
        let ty = e["type"].as_str().expect("every event has a type").to_string();
        types.push(ty.clone());
        if ty == "end" {
            break e;
        }
        assert!(Instant::now() < deadline, "no end event: {types:?}");
    };
    assert!(events.next().is_none(), "the stream goes on after its end");
    assert_eq!(types[0], "job", "{types:?}");
    assert!(types.contains(&"commit".to_string()), "{types:?}");
    assert_eq!(last["state"], "done", "{last}");
    let job = srv.get(&format!("/jobs/{id}")).json();
    assert_eq!(job["state"], "done");
    assert_eq!(job["report"]["files_indexed"], 1, "{job}");
    assert!(job["error"].is_null() && job["commits"].as_u64().unwrap() >= 1 && job["generation"].as_u64().unwrap() > status["generation"].as_u64().unwrap());
    for f in ["id", "state", "files_done", "files_total", "chunks", "commits", "generation", "report", "error", "warnings"] {
        assert!(job.get(f).is_some(), "job field {f} missing: {job}");
    }
    let found = srv.search(json!({"query": "zyxquorble", "k": 3, "mode": "lexical"}));
    assert!(found[0]["path"].as_str().unwrap().ends_with("zyx-note.md"), "{found:?}");
    assert!(srv.get("/jobs").json()["jobs"].as_array().unwrap().iter().any(|j| j["id"] == id));

    // get, by query string and by body.
    let note_abs = std::fs::canonicalize(&note).unwrap();
    let doc = srv.get(&format!("/get?path={}&start=1&end=1", s(&note_abs))).json();
    assert_eq!((doc["start_line"].as_u64(), doc["end_line"].as_u64(), doc["text"].as_str()), (Some(1), Some(1), Some("# Quorble")));
    let doc = srv.post("/get", &json!({"path": s(&note_abs)})).json();
    assert!(doc["text"].as_str().unwrap().contains("zyxquorble") && doc["total_lines"].as_u64().unwrap() >= 5, "{doc}");

    // Cancelling a job.
    let bulk = t.path().join("bulk");
    write_notes(&bulk, 150, "bulk", 1);
    let id = srv.post("/index", &json!({"paths": [s(&bulk)]})).json()["job"].as_u64().unwrap();
    let r = srv.send("DELETE", &format!("/jobs/{id}"), &[], None);
    assert_eq!(r.status, 202, "{}", r.text());
    let job = srv.wait_job(id, 120);
    assert_eq!(job["state"], "cancelled", "{job}");
    assert_eq!(srv.send("DELETE", &format!("/jobs/{id}"), &[], None).status, 200);

    // Clients that leave in the middle of a stream leave nothing running.
    let id = srv.post("/index", &json!({"paths": [s(&bulk)]})).json()["job"].as_u64().unwrap();
    for _ in 0..5 {
        let mut events = Events::open(&srv, id);
        assert!(events.next().is_some());
        drop(events);
    }
    let job = srv.wait_job(id, 180);
    assert_eq!(job["state"], "done", "{job}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = srv.get("/info").json();
        let jobs = srv.get("/jobs").json();
        let live = jobs["jobs"].as_array().unwrap().iter().filter(|j| j["state"] == "running" || j["state"] == "queued").count();
        if info["event_streams"] == 0 && live == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "streams or jobs left behind: {info} {jobs}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // remove.
    let r = srv.post("/remove", &json!({"path": s(&note_abs)}));
    assert_eq!((r.status, r.json()), (200, json!({"removed": 1})), "{}", r.text());
    let found = srv.search(json!({"query": "zyxquorble", "k": 3, "mode": "lexical"}));
    assert!(found.iter().all(|h| !h["path"].as_str().unwrap().ends_with("zyx-note.md")), "{found:?}");
    srv.get(&format!("/get?path={}", s(&note_abs))).error(404, "not_found");

    // Junk, then the server still answers.
    let before = srv.get("/info").json()["connections_total"].as_u64().unwrap();
    let (sent, took) = junk(srv.addr, 10_000, Duration::from_secs(60));
    eprintln!("{sent} junk requests in {:.1}s", took.as_secs_f64());
    assert!(sent >= 2_000, "only {sent} junk requests were sent");
    let info = srv.get("/info").json();
    assert!(info["connections_total"].as_u64().unwrap() > before + sent as u64, "{info}");
    assert_eq!(srv.get("/health").status, 200, "{}", srv.log());
    assert_eq!(srv.search(json!({"query": "sourdough", "k": 1})).len(), 1);

    // The Unix socket: private, same routes.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777, 0o600);
        let stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        let r = exchange(stream, "localhost", "GET", "/health", &[], None);
        assert_eq!((r.status, r.json()), (200, json!({"status": "ok"})));
        let stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        let body = json!({"query": "sourdough", "k": 2}).to_string();
        let ct = [("Content-Type".to_string(), "application/json".to_string())];
        let r = exchange(stream, "localhost", "POST", "/search", &ct, Some(body.as_bytes()));
        assert_eq!(r.json()["hits"].as_array().unwrap().len(), 2);
    }

    // SIGTERM: a graceful stop that removes the socket.
    let mut srv = srv;
    let killed = Command::new("kill").args(["-TERM", &srv.pid().to_string()]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = srv.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "the server did not stop on SIGTERM: {}", srv.log());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}: {}", srv.log());
    std::thread::sleep(Duration::from_millis(200));
    assert!(srv.log().contains("stopped"), "{}", srv.log());
    assert!(!socket.exists());
}

/// A POST with a chunked body of `n` bytes (no declared length).
fn chunked_post(srv: &Server, path: &str, n: usize) -> Reply {
    let mut stream = TcpStream::connect(srv.addr).unwrap();
    stream.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!("POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n", srv.addr);
    let _ = stream.write_all(head.as_bytes());
    let piece = vec![b' '; 64 << 10];
    let mut sent = 0;
    while sent < n {
        if stream.write_all(format!("{:x}\r\n", piece.len()).as_bytes()).is_err() || stream.write_all(&piece).is_err() || stream.write_all(b"\r\n").is_err() {
            break;
        }
        sent += piece.len();
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    read_reply(&mut BufReader::new(stream))
}

/// Sends `n` malformed or hostile requests from 4 threads (each on its own connection), for at
/// most `limit`. Returns how many were sent and how long it took.
fn junk(addr: SocketAddr, n: usize, limit: Duration) -> (usize, Duration) {
    let start = Instant::now();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut seed = 0x2545F4914F6CDD1D ^ (t + 1).wrapping_mul(0x9E3779B97F4A7C15);
                let mut rand = move || {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed
                };
                let mut sent = 0;
                for i in 0..n / 4 {
                    if start.elapsed() > limit {
                        break;
                    }
                    let req = junk_request(i, &mut rand);
                    let Ok(mut stream) = TcpStream::connect(addr) else { continue };
                    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    let _ = stream.write_all(&req);
                    let _ = stream.shutdown(Shutdown::Write);
                    let mut sink = [0u8; 4096];
                    let until = Instant::now() + Duration::from_secs(3);
                    while Instant::now() < until {
                        match stream.read(&mut sink) {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                    }
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    let sent = threads.into_iter().map(|t| t.join().unwrap()).sum();
    (sent, start.elapsed())
}

fn junk_request(i: usize, rand: &mut impl FnMut() -> u64) -> Vec<u8> {
    let r = rand();
    let valid = b"POST /search HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 30\r\n\r\n{\"query\": \"bread\", \"k\": 1000}".to_vec();
    match i % 12 {
        // Random bytes.
        0 => (0..r % 2000).map(|_| rand() as u8).collect(),
        // A valid request cut short.
        1 => valid[..(r as usize % valid.len())].to_vec(),
        // A valid request with a few bytes flipped.
        2 => {
            let mut v = valid.clone();
            for _ in 0..1 + r % 4 {
                let at = rand() as usize % v.len();
                v[at] = rand() as u8;
            }
            v
        }
        3 => b"BREW /coffee HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
        4 => b"GET /../../etc/passwd HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
        // Oversized headers (every 40th request: they are large).
        5 if i % 40 == 5 => format!("GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n", "a".repeat(100_000 + r as usize % 500_000)).into_bytes(),
        5 => format!("GET /health HTTP/1.1\r\nHost: localhost\r\n{}\r\n", "X-H: v\r\n".repeat(50 + r as usize % 200)).into_bytes(),
        6 => b"POST /search HTTP/1.1\r\nHost: localhost\r\nContent-Length: -5\r\n\r\n".to_vec(),
        7 => b"POST /search HTTP/1.1\r\nHost: localhost\r\nContent-Length: 99999999999999999999\r\n\r\n{}".to_vec(),
        8 => b"POST /index HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n".to_vec(),
        9 => b"GET /health HTTP/1.0\r\n\r\nGET /status HTTP/1.1\r\nHost: localhost\r\n\r\nGET /jobs/1/events HTTP/1.1\r\n\r\n".to_vec(),
        10 => format!("POST /get HTTP/1.1\r\nHost: localhost\r\nContent-Length: 12\r\n\r\n{{\"path\": {}}}", r % 10).into_bytes(),
        _ => format!("GET /{} HTTP/1.1\r\nHost: localhost\r\n\r\n", "%ff".repeat(r as usize % 3000)).into_bytes(),
    }
}

#[test]
fn kill_dash_nine_in_the_middle_of_a_job_keeps_committed_files() {
    let t = TempDir::new("serve-kill");
    let docs = t.path().join("docs");
    // The indexer embeds 256 chunks at a time and commits after such a batch: 800 short notes
    // (one chunk each, quick to embed) make three commits before the last.
    write_notes(&docs, 800, "killtest", 0);
    let index = t.path().join("index");
    // No index yet: the server creates it. A token guards every request.
    let mut srv = Server::start(&index, &["--commit-every", "16", "--token", "s3cret-t0ken"]);
    let bare = |method: &str, path: &str, headers: &[(String, String)]| {
        exchange(TcpStream::connect(srv.addr).unwrap(), &srv.addr.to_string(), method, path, headers, None)
    };
    bare("GET", "/health", &[]).error(401, "unauthorized");
    bare("GET", "/health", &[("Authorization".into(), "Bearer wrong".into())]).error(401, "unauthorized");
    assert_eq!(srv.get("/health").status, 200);
    srv.get("/status").error(404, "no_index");
    srv.post("/search", &json!({"query": "x"})).error(404, "no_index");

    let id = srv.post("/index", &json!({"paths": [s(&docs)]})).json()["job"].as_u64().unwrap();
    let mut events = Events::open(&srv, id);
    let mut commits = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while commits.is_empty() {
        let e = events.next().expect("the stream ended before a commit");
        match e["type"].as_str().unwrap() {
            "commit" => commits.push(e),
            "end" => panic!("the job ended before it was killed: {e}"),
            _ => {}
        }
        assert!(Instant::now() < deadline, "no commits");
    }
    srv.child.kill().unwrap();
    srv.child.wait().unwrap();
    let last = commits.last().unwrap();

    // The index opens and answers, with at least what the last commit we heard of held.
    let status: Value = serde_json::from_str(&cli(&["status", "--index", s(&index), "--json"])).unwrap();
    assert!(status["generation"].as_u64() >= last["generation"].as_u64(), "{status} {last}");
    assert!(status["files"].as_u64() >= last["files"].as_u64(), "{status} {last}");
    assert!(status["files"].as_u64().unwrap() < 800, "the job was not interrupted: {status}");
    let hits = cli_hits(&index, &["a remark about topic 3", "-k", "3"]);
    assert_eq!(hits.len(), 3);
    let r = ponder::index::IndexReader::open(&index).expect("the index opens");
    for (path, entry) in &r.manifest.files {
        for cid in entry.chunks.0..entry.chunks.1 {
            let c = r.chunk(cid).unwrap().unwrap_or_else(|| panic!("chunk {cid} of {path} missing"));
            assert_eq!(c.path, *path);
            assert!(r.vector(cid).unwrap().is_some(), "vector of chunk {cid} missing");
        }
    }
    drop(r);

    // A server opens the index again; with --watch a new file is indexed and found.
    let srv = Server::start(&index, &["--watch"]);
    assert!(srv.log().contains("watching"), "{}", srv.log());
    std::fs::write(docs.join("watched.md"), "# Watched\n\nThe frobnicated wombat arrived by itself.\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let hits = srv.search(json!({"query": "frobnicated wombat", "k": 1, "mode": "lexical"}));
        if hits.first().is_some_and(|h| h["path"].as_str().unwrap().ends_with("watched.md")) {
            break;
        }
        assert!(Instant::now() < deadline, "the watcher did not index the new file: {}", srv.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(srv);

    // Searches past the time limit answer 503 (loading the reranker alone takes longer).
    let srv = Server::start(&index, &["--timeout", "0.05"]);
    srv.post("/search", &json!({"query": "a remark about topic 3", "k": 50, "rerank": true, "rerank_top": 200})).error(503, "timeout");
    assert_eq!(srv.get("/health").status, 200);
}

#[test]
fn refuses_remote_addresses_without_a_token() {
    let t = TempDir::new("serve-remote");
    let index = t.path().join("index");
    for (extra, says) in [(&[][..], "allow-remote"), (&["--allow-remote"][..], "token")] {
        let out = Command::new(ponder())
            .args(["serve", "--index", s(&index), "--addr", "0.0.0.0:0"])
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "served on 0.0.0.0 with {extra:?}: {err}");
        assert!(err.contains(says) && !err.contains("listening on"), "{extra:?}: {err}");
    }
}
