#!/usr/bin/env bash
# A million chunks (issue 11): one generated corpus, indexed at 10k, 100k and 1M chunks, with
# the same measurements at each size, so that each figure's growth can be read off:
#   - indexing wall time and peak RSS (per run: a resumed size has one line per run);
#   - bytes per chunk on disk (`ponder bench search`'s `open` line) and the segment count;
#   - hybrid, dense and lexical query latency p50/p99, and HNSW recall@10 against exact search
#     (`ponder bench search --n 200`);
#   - the warm server's RSS (VmRSS, VmHWM) after 200 searches over HTTP on 127.0.0.1, the
#     highest RSS read between them, and their latency, for each resident limit in SERVE_LIMITS.
#
# Corpus: Markdown files of 1,000 sections (`## Note N` and one ~30-token unit each), so every
# section is its own chunk and the file table stays small. Units are SQuAD train sentences
# (../shared/data/squad), then pairs of sentence halves, all distinct; size S is the first
# S/1000 files of the same stream.
#
# Runs in the background and resumes: `nohup benches/million.sh &`, and after a kill run it
# again. A corpus is written once (a `.done` marker); `ponder index` is incremental and
# crash-safe, so a second run continues from the last commit. A size whose `measured` marker
# exists is skipped.
#
# usage: benches/million.sh [SIZES...]  (default: 10000 100000 1000000)
# Env: PONDER (binary; default target/release/ponder, built when missing),
#      OUT (default target/bench/million), SERVE_LIMITS (the server's --resident-limit-mb values
#      to measure, `none` for no limit; default `none`), RECALL_QUERIES (queries of the exact-search recall
#      check, default 200: a full scan each, about a second at 1M chunks on 2 cores).
#      Results: $OUT/results.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
ponder=${PONDER:-target/release/ponder}
[ -x "$ponder" ] || cargo build --release --bin ponder >/dev/null
ponder=$(realpath "$ponder")
out=${OUT:-target/bench/million}
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(10000 100000 1000000)
mkdir -p "$out"
results=$out/results.jsonl

for size in "${sizes[@]}"; do
  corpus=$out/corpus-$size idx=$out/index-$size
  [ -e "$idx/measured" ] && { echo "size $size: measured already ($idx/measured)" >&2; continue; }
  if [ ! -e "$corpus/.done" ]; then
    python3 - "$size" "$corpus" <<'PY'
import gzip, json, os, random, re, sys
n, out = int(sys.argv[1]), sys.argv[2]
data = json.load(gzip.open("../shared/data/squad/train-v1.1.json.gz", "rt"))["data"]
sents, seen = [], set()
for art in data:
    for p in art["paragraphs"]:
        for s in re.split(r"(?<=[.!?])\s+", p["context"]):
            s = " ".join(s.split()[:40])
            if len(s) > 20 and s not in seen:
                seen.add(s)
                sents.append(s)
def units():
    yield from sents
    rng = random.Random(11)
    while True:
        a, b = rng.choice(sents).split(), rng.choice(sents).split()
        u = " ".join(a[: max(3, len(a) // 2)] + b[len(b) // 2 :])
        if u not in seen:
            seen.add(u)
            yield u
per_file = 1000
os.makedirs(out, exist_ok=True)
it = units()
for f in range(n // per_file):
    path = os.path.join(out, f"d{f // 100:03d}", f"notes-{f:05d}.md")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    secs = [f"## Note {f * per_file + i}\n\n{next(it)}\n" for i in range(per_file)]
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write("\n".join(secs))
    os.replace(tmp, path)
open(os.path.join(out, ".done"), "w").close()
print(f"{out}: {n // per_file} files of {per_file} sections", file=sys.stderr)
PY
  fi
  # Index (or resume); one result line per run.
  python3 - "$ponder" "$corpus" "$idx" "$size" >>"$results" <<'PY'
import json, resource, subprocess, sys, time
bin, corpus, idx, size = sys.argv[1:5]
t = time.time()
p = subprocess.run([bin, "index", corpus, "--index", idx, "--progress", "none"], capture_output=True, text=True)
wall = time.time() - t
sys.stderr.write(p.stderr)
if p.returncode != 0:
    sys.exit(p.returncode)
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"size": int(size), "event": "index", "wall_s": round(wall, 1), "peak_rss_mb": round(rss / 1024, 1),
                  "summary": p.stderr.strip().splitlines()[-1]}))
PY
  st=$("$ponder" status --index "$idx" --json)
  python3 -c 'import json,sys; s=json.loads(sys.argv[1]); s["size"]=int(sys.argv[2]); s["event"]="status"; print(json.dumps(s))' "$st" "$size" >>"$results"
  "$ponder" bench search --index "$idx" --n 200 --recall-queries "${RECALL_QUERIES:-200}" | python3 -c 'import json,sys
for l in sys.stdin:
    d=json.loads(l); d["size"]=int(sys.argv[1]); print(json.dumps(d))' "$size" >>"$results"
  # The warm server's memory after 200 searches, once per resident limit.
  for limit in ${SERVE_LIMITS:-none}; do
    log=$out/serve-$size.log
    limit_args=(); [ "$limit" = none ] || limit_args=(--resident-limit-mb "$limit")
    "$ponder" serve --index "$idx" --addr 127.0.0.1:0 "${limit_args[@]}" 2>"$log" &
    server=$!
    for _ in $(seq 600); do grep -q '^listening on http://' "$log" && break; kill -0 $server; sleep 0.1; done
    addr=$(sed -n 's|^listening on http://||p' "$log" | head -1)
    python3 - "$addr" "$server" "$idx" "$size" "$limit" >>"$results" <<'PY'
import http.client, json, statistics, sys, time
addr, pid, idx, size, limit = sys.argv[1:6]
host, port = addr.rsplit(":", 1)
def mem():
    out = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[k] = round(int(v.split()[0]) / 1024, 1)
    return out
idle = mem()
qs = [f"what happened to note {i} and why did it matter" for i in range(200)]
c = http.client.HTTPConnection(host, int(port), timeout=120)
lat = []
between = 0.0
for q in qs:
    t = time.time()
    c.request("POST", "/search", json.dumps({"query": q, "k": 10}), {"Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
    lat.append((time.time() - t) * 1e3)
    between = max(between, mem()["VmRSS"])
lat.sort()
c.request("GET", "/info")
info = json.loads(c.getresponse().read())
print(json.dumps({"size": int(size), "event": "serve", "resident_limit_mb": limit, "idle_mb": idle, "after_mb": mem(), "max_rss_between_searches_mb": between,
                  "page_releases": info["memory"]["page_releases"],
                  "http_p50_ms": round(lat[len(lat) // 2], 2), "http_p99_ms": round(lat[int(len(lat) * 0.99) - 1], 2)}))
PY
    kill $server; wait $server 2>/dev/null || true
  done
  date -u +%FT%TZ >"$idx/measured"
  echo "size $size: done" >&2
done
cat "$results"
