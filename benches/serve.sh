#!/usr/bin/env bash
# The warm server against the cold CLI: search latency through HTTP (p50/p90/p99 over N
# queries on one keep-alive connection), `ponder search` from process start to exit, CLIENTS
# concurrent clients while an indexing job runs (requests/s, failures, answers consistent per
# committed generation and equal to the CLI's once the job is done), and the server's memory
# (VmRSS idle, after the latency run, peak VmHWM under load).
#
# Usage:
#   benches/serve.sh INDEX_DIR [QUERIES_FILE] [LOAD_DIR]
#     INDEX_DIR     an existing index; it is copied first and the copy is what the job writes
#     QUERIES_FILE  one query per line (default: the questions of samples/README.md)
#     LOAD_DIR      a folder the job indexes during the concurrent phase (default: 400
#                   generated notes under target/bench-serve/)
#   benches/serve.sh --squad DIR
#     writes SQuAD dev paragraphs (../shared/data/squad) as text files of 5 paragraphs into
#     DIR/docs, one question per paragraph into DIR/questions.txt, and the first 1,000 train
#     paragraphs the same way into DIR/load (a folder for the concurrent phase), then stops
#
# Env: PONDER (binary; default target/release/ponder, built when missing), N (1000 queries),
# COLD (10 CLI runs), CLIENTS (8), MIN_LOAD_S (10: the concurrent phase lasts at least this).
# Needs python3 (standard library only).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--squad" ]]; then
    out="${2:?usage: benches/serve.sh --squad DIR}"
    python3 - "$out" <<'EOF'
import gzip, json, os, re, sys
out = sys.argv[1]

def write(split, folder, max_paragraphs):
    folder = os.path.join(out, folder)
    os.makedirs(folder, exist_ok=True)
    data = json.load(gzip.open(f"../shared/data/squad/{split}-v1.1.json.gz"))["data"]
    questions, files, n = [], 0, 0
    for art in data:
        title = art["title"]
        paras = art["paragraphs"][: max_paragraphs - n]
        n += len(paras)
        # Sections of 5 paragraphs: files of a few chunks each, like notes.
        for s in range(0, len(paras), 5):
            name = re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-")[:60] + f"-{s // 5:02d}.txt"
            with open(os.path.join(folder, name), "w") as f:
                f.write(title.replace("_", " ") + "\n\n" + "\n\n".join(p["context"] for p in paras[s:s + 5]) + "\n")
            files += 1
        for p in paras:
            questions += [qa["question"].replace("\n", " ") for qa in p["qas"][:1]]
        if n >= max_paragraphs:
            break
    print(f"{files} files ({n} paragraphs) in {folder}")
    return questions

questions = write("dev", "docs", 10**9)
write("train", "load", 1000)
with open(os.path.join(out, "questions.txt"), "w") as f:
    f.write("\n".join(questions) + "\n")
print(f"{len(questions)} questions in {out}/questions.txt")
EOF
    exit 0
fi

index="${1:?usage: benches/serve.sh INDEX_DIR [QUERIES_FILE] [LOAD_DIR]}"
queries="${2:-}"
load="${3:-}"
ponder="${PONDER:-target/release/ponder}"
[[ -x "$ponder" ]] || cargo build --release
work="target/bench-serve/run-$$"
mkdir -p "$work"
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
cp -r "$index" "$work/index"

if [[ -z "$queries" ]]; then
    queries="$work/queries.txt"
    cat >"$queries" <<'EOF'
how long should the dough proof overnight
why do C4 plants waste less energy in hot climates
which heat shock proteins help refold proteins
how to keep a fiddle leaf fig alive in winter
evict least recently used entry
what happens to bond prices when rates go up
which Wi-Fi channels do not overlap
does sleep help you remember what you learned
EOF
fi
if [[ -z "$load" ]]; then
    load="$work/load"
    mkdir -p "$load"
    for i in $(seq 0 399); do
        printf '# Load note %d\n\nA note about topic %d written while the server answers searches: gardens, rivers,\nengines, bread and the weather of week %d.\n\nSecond paragraph of note %d with a few more words to embed.\n' \
            "$i" $((i % 31)) $((i % 52)) "$i" >"$load/n$i.md"
    done
fi

"$ponder" serve --index "$work/index" --addr 127.0.0.1:0 2>"$work/server.log" &
server=$!
for _ in $(seq 1 600); do
    grep -q '^listening on http://' "$work/server.log" 2>/dev/null && break
    kill -0 "$server" 2>/dev/null || { cat "$work/server.log"; exit 1; }
    sleep 0.1
done
addr=$(sed -n 's|^listening on http://||p' "$work/server.log" | head -1)
[[ -n "$addr" ]] || { cat "$work/server.log"; exit 1; }

python3 - "$addr" "$server" "$ponder" "$work/index" "$queries" "$load" <<'EOF'
import http.client, json, os, statistics, subprocess, sys, threading, time

addr, pid, ponder, index, qfile, load = sys.argv[1:7]
host, port = addr.rsplit(":", 1)
N = int(os.environ.get("N", "1000"))
COLD = int(os.environ.get("COLD", "10"))
CLIENTS = int(os.environ.get("CLIENTS", "8"))
MIN_LOAD_S = float(os.environ.get("MIN_LOAD_S", "10"))
queries = [q.strip() for q in open(qfile) if q.strip()]

def mem():
    d = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            d[k] = int(v.split()[0]) / 1024
    return d

class Client:
    def __init__(self):
        self.c = http.client.HTTPConnection(host, int(port), timeout=120)
    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        try:
            self.c.request(method, path, body=data, headers=headers)
            r = self.c.getresponse()
            return r.status, json.loads(r.read() or b"null")
        except (OSError, http.client.HTTPException):
            self.c.close()
            self.c = http.client.HTTPConnection(host, int(port), timeout=120)
            raise
    def search(self, q):
        return self.call("POST", "/search", {"query": q, "k": 10})

def key(hits):
    return tuple((h["path"], h["chunk_id"]) for h in hits)

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]

rows = []
c = Client()
mem_idle = mem()
for q in queries[:20]:
    c.search(q)

# 1. Latency, one client, keep-alive.
lat = []
for i in range(N):
    q = queries[i % len(queries)]
    t = time.perf_counter()
    st, _ = c.search(q)
    lat.append((time.perf_counter() - t) * 1e3)
    assert st == 200, st
rows.append((f"HTTP search, 1 client, {N} queries: p50 / p90 / p99 ms", f"{pct(lat,50):.1f} / {pct(lat,90):.1f} / {pct(lat,99):.1f}"))
mem_after = mem()

# 2. The CLI, cold: process start to exit.
cold = []
for i in range(COLD):
    q = queries[i % len(queries)]
    t = time.perf_counter()
    subprocess.run([ponder, "search", q, "--index", index, "--json", "-k", "10"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cold.append((time.perf_counter() - t) * 1e3)
rows.append((f"CLI `ponder search`, {COLD} runs: p50 / max ms", f"{pct(cold,50):.0f} / {max(cold):.0f}"))

# 3. CLIENTS clients while an indexing job runs.
def generation(cl):
    st, s = cl.call("GET", "/status")
    return s["generation"] if st == 200 else None

st, job = c.call("POST", "/index", {"paths": [os.path.abspath(load)]})
assert st == 202, (st, job)
job_id = job["job"]
stop = threading.Event()
lock = threading.Lock()
counts = {"ok": 0, "failed": 0}
failures = []
answers = {}  # (query, generation) -> set of answers seen while the generation did not change
peak_rss = [0.0]
lat_load = []

def worker(w):
    cl = Client()
    i = w
    while not stop.is_set():
        q = queries[i % len(queries)]
        i += CLIENTS
        try:
            g0 = generation(cl)
            t = time.perf_counter()
            st, body = cl.search(q)
            dt = (time.perf_counter() - t) * 1e3
            g1 = generation(cl)
        except Exception as e:
            with lock:
                counts["failed"] += 1
                failures.append(repr(e))
            continue
        with lock:
            if st != 200:
                counts["failed"] += 1
                failures.append(f"{st} {body}")
                continue
            counts["ok"] += 1
            lat_load.append(dt)
            if g0 == g1 and g0 is not None:
                answers.setdefault((q, g0), set()).add(key(body["hits"]))

threads = [threading.Thread(target=worker, args=(w,)) for w in range(CLIENTS)]
t0 = time.perf_counter()
for t in threads:
    t.start()
state = "queued"
while True:
    time.sleep(0.2)
    peak_rss[0] = max(peak_rss[0], mem()["VmRSS"])
    st, j = c.call("GET", f"/jobs/{job_id}")
    state = j["state"]
    if state in ("done", "failed", "cancelled") and time.perf_counter() - t0 >= MIN_LOAD_S:
        break
job_s = j.get("elapsed_s") or 0
stop.set()
for t in threads:
    t.join()
wall = time.perf_counter() - t0
mem_load = mem()
gens = sorted({g for (_, g) in answers})
inconsistent = sum(1 for v in answers.values() if len(v) > 1)
rows.append((f"{CLIENTS} clients (a /status before and after each search) during an indexing job ({j['files_done']} files, {j['commits']} commits, {job_s:.1f}s; state {state})", f"{counts['ok'] / wall:.1f} searches/s over {wall:.1f}s"))
rows.append(("  search latency under load: p50 / p99 ms", f"{pct(lat_load,50):.1f} / {pct(lat_load,99):.1f}" if lat_load else "-"))
rows.append(("  failed requests", str(counts["failed"])))
rows.append((f"  (query, generation) groups with differing answers (of {len(answers)}; generations {gens[:1]}..{gens[-1:]})", str(inconsistent)))

# 4. After the job: the server answers as the CLI does on the same committed state.
same = 0
for q in queries[:20]:
    st, body = c.search(q)
    out = subprocess.run([ponder, "search", q, "--index", index, "--json", "-k", "10"], check=True, capture_output=True, text=True).stdout
    cli = [json.loads(l) for l in out.splitlines() if l.strip()]
    same += key(body["hits"]) == key(cli)
rows.append(("answers equal to the CLI's after the job", f"{same}/{min(20, len(queries))}"))
rows.append(("server VmRSS idle (warm) / after latency run / after load, MB", f"{mem_idle['VmRSS']:.0f} / {mem_after['VmRSS']:.0f} / {mem_load['VmRSS']:.0f}"))
rows.append(("server peak VmRSS sampled under load / VmHWM, MB", f"{peak_rss[0]:.0f} / {mem_load['VmHWM']:.0f}"))

for f in failures[:5]:
    print("failure:", f[:300])
w = max(len(r[0]) for r in rows)
print(f"ponder serve on {addr}, index {index}, {len(queries)} distinct queries, {os.cpu_count()} CPUs")
for k, v in rows:
    print(f"{k:<{w}}  {v}")
ok = counts["failed"] == 0 and inconsistent == 0 and same == min(20, len(queries))
sys.exit(0 if ok else 1)
EOF
