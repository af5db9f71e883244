//! `ponder mcp` from outside the process: real JSON-RPC sessions over the binary's stdin and
//! stdout (newline-delimited JSON), as an agent's MCP client runs them.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::TempDir;
use serde_json::{json, Value};

/// The longest wait for one response (a search loads nothing: the model is warm).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest wait for the process to exit once stdin is closed.
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

fn ponder(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_ponder")).args(args).env("PONDER_NO_GPU", "1").output().unwrap();
    assert!(out.status.success(), "ponder {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// A `ponder mcp` process with a reader thread on its stdout.
struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    next_id: u64,
    /// Responses read while waiting for another id.
    pending: HashMap<u64, Value>,
    /// Notifications the server sent.
    notifications: Vec<Value>,
}

impl Session {
    fn start(index: &Path) -> Session {
        let mut child = crate::common::spawn_ponder(&["mcp", "--index", index.to_str().unwrap()]);
        let (tx, lines) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let (mut err_pipe, sink) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdin = child.stdin.take();
        Session { child, stdin, lines, stderr, next_id: 1, pending: HashMap::new(), notifications: Vec::new() }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn send(&mut self, msg: &Value) {
        self.send_raw(&msg.to_string());
    }

    fn send_raw(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// The next message on stdout; every line must be one JSON-RPC 2.0 message.
    fn read(&mut self) -> Value {
        let line = match self.lines.recv_timeout(RESPONSE_TIMEOUT) {
            Ok(l) => l,
            Err(RecvTimeoutError::Timeout) => panic!("no message within {RESPONSE_TIMEOUT:?}; stderr:\n{}", self.stderr()),
            Err(RecvTimeoutError::Disconnected) => panic!("stdout closed; stderr:\n{}", self.stderr()),
        };
        let msg: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}"));
        assert_eq!(msg["jsonrpc"], "2.0", "not a JSON-RPC 2.0 message: {line}");
        msg
    }

    /// Sends a request without waiting; returns its id.
    fn submit(&mut self, method: &str, params: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        id
    }

    /// The response to request `id` (other responses and notifications are kept).
    fn response(&mut self, id: u64) -> Value {
        loop {
            if let Some(m) = self.pending.remove(&id) {
                return m;
            }
            let msg = self.read();
            match msg.get("id").and_then(Value::as_u64) {
                Some(got) if msg.get("method").is_none() => {
                    self.pending.insert(got, msg);
                }
                _ => {
                    assert!(msg.get("method").is_some(), "neither a response nor a notification: {msg}");
                    self.notifications.push(msg);
                }
            }
        }
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.submit(method, params);
        self.response(id)
    }

    /// `tools/call`; returns the result (a JSON-RPC error fails the test).
    fn call(&mut self, tool: &str, args: Value) -> Value {
        let r = self.request("tools/call", json!({"name": tool, "arguments": args}));
        assert!(r.get("error").is_none(), "tools/call {tool} failed: {r}");
        r["result"].clone()
    }

    fn initialize(&mut self, version: &str) -> Value {
        let r = self.request(
            "initialize",
            json!({
                "protocolVersion": version,
                "capabilities": {},
                "clientInfo": {"name": "ponder-tests", "version": "0"}
            }),
        );
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        r
    }

    /// Closes stdin and waits for the process to exit: status 0, within [`EXIT_TIMEOUT`], with
    /// nothing on stdout but JSON-RPC.
    fn close(mut self) {
        drop(self.stdin.take());
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > EXIT_TIMEOUT {
                let _ = self.child.kill();
                panic!("ponder mcp still running {EXIT_TIMEOUT:?} after stdin closed; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "ponder mcp exited with {status}; stderr:\n{}", self.stderr());
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            let msg: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}"));
            assert_eq!(msg["jsonrpc"], "2.0");
        }
    }
}

fn text_of(result: &Value) -> String {
    result["content"].as_array().unwrap().iter().filter_map(|c| c["text"].as_str()).collect::<Vec<_>>().join("\n")
}

fn is_error(result: &Value) -> bool {
    result["isError"] == json!(true)
}

fn chunk_ids(hits: &[Value]) -> Vec<u64> {
    hits.iter().map(|h| h["chunk_id"].as_u64().unwrap()).collect()
}

#[test]
fn a_session_over_the_samples() {
    let tmp = TempDir::new("mcp-samples");
    let index = tmp.path().join("index");
    let samples = crate::common::repo().join("samples");
    ponder(&["index", samples.to_str().unwrap(), "--index", index.to_str().unwrap(), "--progress", "none"]);

    let mut s = Session::start(&index);
    // The handshake: the client's (known) version is echoed; tools are offered.
    let init = s.initialize("2025-06-18");
    let r = &init["result"];
    assert_eq!(r["protocolVersion"], "2025-06-18", "{init}");
    assert_eq!(r["serverInfo"]["name"], "ponder");
    assert!(r["serverInfo"]["version"].is_string());
    assert!(r["capabilities"]["tools"].is_object(), "{init}");
    assert!(r["instructions"].as_str().is_some_and(|i| i.contains("search")));
    assert_eq!(s.request("ping", json!({}))["result"], json!({}));

    // The four tools, each described, with an object input schema; search requires a query.
    let list = s.request("tools/list", json!({}));
    let tools = list["result"]["tools"].as_array().unwrap_or_else(|| panic!("{list}"));
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["search", "get", "status", "index"]);
    for t in tools {
        assert!(t["description"].as_str().is_some_and(|d| d.len() > 80), "{t}");
        assert_eq!(t["inputSchema"]["type"], "object", "{t}");
        for (field, p) in t["inputSchema"]["properties"].as_object().unwrap() {
            assert!(p["description"].is_string(), "{}.{field} has no description", t["name"]);
        }
    }
    let search_tool = &tools[0];
    assert_eq!(search_tool["inputSchema"]["required"], json!(["query"]));
    for field in ["query", "queries", "k", "mode", "rerank", "path", "type", "after", "before"] {
        assert!(search_tool["inputSchema"]["properties"][field].is_object(), "search has no {field}");
    }

    // search: the sourdough note answers a dough-proofing question, and the structured hits
    // are `ponder search --json`'s, in the same order.
    let query = "how long should the dough proof overnight";
    let res = s.call("search", json!({"query": query, "k": 5}));
    assert!(!is_error(&res), "{res}");
    let hits = res["structuredContent"]["hits"].as_array().unwrap_or_else(|| panic!("{res}")).clone();
    assert_eq!(hits.len(), 5);
    assert!(hits[0]["path"].as_str().unwrap().ends_with("notes/sourdough-schedule.md"), "{}", hits[0]);
    for field in ["path", "score", "start_line", "end_line", "heading", "text", "highlights", "chunk_id"] {
        assert!(hits[0].get(field).is_some(), "hit has no {field}: {}", hits[0]);
    }
    let text = text_of(&res);
    let first = format!("{}:{}-{}", hits[0]["path"].as_str().unwrap(), hits[0]["start_line"], hits[0]["end_line"]);
    assert!(text.contains(&first), "the text does not name {first}:\n{text}");
    let cli = ponder(&["search", query, "--index", index.to_str().unwrap(), "-k", "5", "--json"]);
    let cli_hits: Vec<Value> =
        String::from_utf8(cli.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(chunk_ids(&hits), chunk_ids(&cli_hits), "MCP and `ponder search --json` disagree");
    for (m, c) in hits.iter().zip(&cli_hits) {
        assert_eq!((&m["path"], &m["start_line"], &m["end_line"], &m["text"]), (&c["path"], &c["start_line"], &c["end_line"], &c["text"]));
        assert!((m["score"].as_f64().unwrap() - c["score"].as_f64().unwrap()).abs() < 1e-4, "{m} vs {c}");
    }

    // Several phrasings, filters, lexical mode and reranking are arguments too.
    let res = s.call(
        "search",
        json!({"query": "keep a fiddle leaf fig alive", "queries": ["houseplant care when it is cold"], "type": ["html"], "mode": "hybrid", "rerank": true, "k": 3}),
    );
    assert!(!is_error(&res), "{res}");
    let hits2 = res["structuredContent"]["hits"].as_array().unwrap();
    assert!(!hits2.is_empty() && hits2.iter().all(|h| h["path"].as_str().unwrap().ends_with(".html")), "{res}");
    let res = s.call("search", json!({"query": "evict least recently used entry", "mode": "lexical", "path": "*.rs"}));
    let hits3 = res["structuredContent"]["hits"].as_array().unwrap();
    assert!(!hits3.is_empty() && hits3.iter().all(|h| h["path"].as_str().unwrap().ends_with("lru_cache.rs")), "{res}");

    // get: a line range of the top hit's file holds the hit's text.
    let path = hits[0]["path"].as_str().unwrap();
    let (a, b) = (hits[0]["start_line"].as_u64().unwrap(), hits[0]["end_line"].as_u64().unwrap());
    let res = s.call("get", json!({"path": path, "start_line": a, "end_line": b}));
    assert!(!is_error(&res), "{res}");
    let doc = &res["structuredContent"];
    assert_eq!((doc["path"].as_str().unwrap(), doc["start_line"].as_u64().unwrap(), doc["end_line"].as_u64().unwrap()), (path, a, b));
    assert!(doc["total_lines"].as_u64().unwrap() >= b);
    let hit_first_line = hits[0]["text"].as_str().unwrap().lines().find(|l| !l.trim().is_empty()).unwrap();
    assert!(doc["text"].as_str().unwrap().contains(hit_first_line), "{doc}");
    assert!(text_of(&res).contains(hit_first_line));
    let whole = s.call("get", json!({"path": path}));
    assert_eq!(whole["structuredContent"]["start_line"], 1);
    assert_eq!(whole["structuredContent"]["end_line"], doc["total_lines"]);

    // status: what the index holds.
    let res = s.call("status", json!({}));
    assert!(!is_error(&res), "{res}");
    let st = &res["structuredContent"];
    for field in ["index", "generation", "files", "chunks", "model", "dim", "roots", "updated_unix"] {
        assert!(st.get(field).is_some(), "status has no {field}: {st}");
    }
    assert!(st["files"].as_u64().unwrap() >= 10 && st["chunks"].as_u64().unwrap() >= st["files"].as_u64().unwrap(), "{st}");
    assert!(st["roots"].as_array().unwrap().iter().any(|r| r.as_str().unwrap().ends_with("samples")), "{st}");

    // Bad arguments are tool errors that say what is wrong; the server keeps working.
    for (tool, args, says) in [
        ("search", json!({"query": "dough", "k": 0}), "k must be between"),
        ("search", json!({"query": 5}), "bad arguments for search"),
        ("search", json!({"query": "dough", "mode": "psychic"}), "psychic"),
        ("search", json!({"query": "dough", "colour": "red"}), "colour"),
        ("search", json!({}), "query"),
        ("get", json!({}), "path"),
        ("get", json!({"path": "/no/such/file.md"}), "not in the index"),
        ("get", json!({"path": path, "start_line": 9, "end_line": 2}), "bad line range"),
        ("status", json!({"verbose": true}), "verbose"),
        ("index", json!({"paths": 5}), "must be a list"),
    ] {
        let res = s.call(tool, args.clone());
        assert!(is_error(&res), "{tool} {args} was accepted: {res}");
        assert!(text_of(&res).contains(says), "{tool} {args}: {res}");
    }
    // An unknown tool and an unknown method are JSON-RPC errors; a line that is not JSON gets
    // no answer; none of them stops the server.
    let r = s.request("tools/call", json!({"name": "delete_everything", "arguments": {}}));
    assert_eq!(r["error"]["code"], -32602, "{r}");
    let r = s.request("resources/frobnicate", json!({}));
    assert_eq!(r["error"]["code"], -32601, "{r}");
    s.send_raw("this is not JSON");
    let res = s.call("search", json!({"query": query, "k": 1}));
    assert_eq!(chunk_ids(res["structuredContent"]["hits"].as_array().unwrap()), chunk_ids(&cli_hits[..1]));

    s.close();
}

#[test]
fn without_an_index_the_tools_say_how_to_make_one_and_index_builds_it() {
    let tmp = TempDir::new("mcp-empty");
    let index = tmp.path().join("index");
    let docs = tmp.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(
        docs.join("tide-pools.md"),
        "# Tide pools\n\nWhen the tide goes out, sea anemones pull in their tentacles and close up \
         to keep from drying out until the water returns.\n",
    )
    .unwrap();
    let long: String = (1..=2500).map(|i| format!("row {i}\n")).collect();
    std::fs::write(docs.join("long.txt"), long).unwrap();

    let mut s = Session::start(&index);
    // A version this server does not know: it answers with one it supports.
    let init = s.initialize("2099-01-01");
    let version = init["result"]["protocolVersion"].as_str().unwrap_or_else(|| panic!("{init}")).to_string();
    assert!(["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"].contains(&version.as_str()), "{init}");
    assert!(init["result"]["capabilities"]["tools"].is_object());

    for (tool, args) in [("search", json!({"query": "sea anemones at low tide"})), ("status", json!({}))] {
        let res = s.call(tool, args);
        assert!(is_error(&res), "{res}");
        let text = text_of(&res);
        assert!(text.contains("no index") && text.contains("ponder index") && text.contains("--index"), "{text}");
        assert!(text.contains("`index` tool"), "{text}");
    }

    // index creates it (with progress notifications when asked); a request sent meanwhile is
    // answered too.
    let id = s.submit(
        "tools/call",
        json!({"name": "index", "arguments": {"paths": [docs.to_str().unwrap()]}, "_meta": {"progressToken": "ix"}}),
    );
    let ping = s.submit("ping", json!({}));
    assert_eq!(s.response(ping)["result"], json!({}));
    let r = s.response(id);
    let res = &r["result"];
    assert!(!is_error(res), "{r}");
    let report = &res["structuredContent"];
    assert_eq!((report["files_indexed"].as_u64(), report["files_seen"].as_u64()), (Some(2), Some(2)), "{report}");
    assert!(report["chunks_added"].as_u64().unwrap() >= 1 && report["generation"].as_u64().unwrap() >= 1, "{report}");
    assert!(text_of(res).contains("Indexed 2 file"), "{res}");
    for n in &s.notifications {
        if n["method"] == "notifications/progress" {
            assert_eq!(n["params"]["progressToken"], "ix");
        }
    }

    let res = s.call("search", json!({"query": "what do sea anemones do at low tide", "k": 3}));
    assert!(!is_error(&res), "{res}");
    let hits = res["structuredContent"]["hits"].as_array().unwrap();
    assert!(hits[0]["path"].as_str().unwrap().ends_with("tide-pools.md"), "{res}");
    // get returns at most 2000 lines at a time and says how to go on.
    let long = docs.join("long.txt");
    let res = s.call("get", json!({"path": long.to_str().unwrap()}));
    let doc = &res["structuredContent"];
    assert_eq!((doc["start_line"].as_u64(), doc["end_line"].as_u64()), (Some(1), Some(2000)), "{doc}");
    assert!(doc["total_lines"].as_u64().unwrap() >= 2500);
    assert!(doc["text"].as_str().unwrap().ends_with("row 2000"), "{doc}");
    assert!(text_of(&res).contains("start_line 2001"), "{res}");
    let res = s.call("get", json!({"path": long.to_str().unwrap(), "start_line": 2001}));
    let doc = &res["structuredContent"];
    assert_eq!((doc["start_line"].as_u64(), doc["end_line"].as_u64()), (Some(2001), doc["total_lines"].as_u64()), "{doc}");
    assert!(doc["text"].as_str().unwrap().starts_with("row 2001\nrow 2002"), "{doc}");
    let st = s.call("status", json!({}));
    assert_eq!(st["structuredContent"]["files"], 2, "{st}");
    // No paths: the roots are re-indexed, and nothing changed.
    let res = s.call("index", json!({}));
    assert!(!is_error(&res), "{res}");
    assert_eq!(res["structuredContent"]["files_unchanged"], 2, "{res}");

    s.close();
}

#[test]
fn stdin_closed_before_the_handshake_is_a_clean_exit() {
    let tmp = TempDir::new("mcp-eof");
    Session::start(&tmp.path().join("index")).close();
}
