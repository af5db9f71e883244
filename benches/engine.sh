#!/usr/bin/env bash
# Engine benchmark (issue 3): for a 10k-chunk and a 100k-chunk corpus built from SQuAD train
# text, measures indexing chunks/s and peak RSS, bytes per chunk on disk, cold start to first
# result, query latency p50/p99 per mode, and ANN recall@10 against exact search.
#   10k:  one SQuAD paragraph per file (~150 tokens per chunk)
#   100k: one sentence per file, from the same paragraphs (~30 tokens per chunk)
# usage: benches/engine.sh [SIZES...]   (default: 10000 100000); writes target/bench/*.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin ponder >/dev/null
bin=$PWD/target/release/ponder
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(10000 100000)
mkdir -p target/bench
for size in "${sizes[@]}"; do
  corpus=target/bench/corpus-$size; idx=target/bench/index-$size
  rm -rf "$corpus" "$idx"
  python3 - "$size" "$corpus" <<'PY'
import gzip, json, os, re, sys
n, out = int(sys.argv[1]), sys.argv[2]
data = json.load(gzip.open("../shared/data/squad/train-v1.1.json.gz", "rt"))["data"]
units = []
for ai, art in enumerate(data):
    for p in art["paragraphs"]:
        if n <= 20000:
            units.append(p["context"])
        else:
            units.extend(s for s in re.split(r"(?<=[.!?])\s+", p["context"]) if len(s) > 20)
units = units[:n]
for i, u in enumerate(units):
    d = os.path.join(out, f"d{i // 1000:03d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"{i:06d}.txt"), "w") as f:
        f.write(u + "\n")
print(f"{out}: {len(units)} files", file=sys.stderr)
PY
  python3 - "$bin" "$corpus" "$idx" <<'PY'
import resource, subprocess, sys, time, json
bin, corpus, idx = sys.argv[1:4]
t = time.time()
p = subprocess.run([bin, "index", corpus, "--index", idx, "--progress", "none"], capture_output=True, text=True)
wall = time.time() - t
sys.stderr.write(p.stderr)
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"event": "index", "corpus": corpus, "wall_s": round(wall, 1), "peak_rss_mb": round(rss / 1024, 1), "summary": p.stderr.strip().splitlines()[-1]}))
PY
  "$bin" status --index "$idx" --json
  for i in 1 2 3; do
    python3 - "$bin" "$idx" <<'PY'
import resource, subprocess, sys, time, json
bin, idx = sys.argv[1:3]
t = time.time()
subprocess.run([bin, "search", "when did the earthquake happen", "--index", idx, "-k", "1"], check=True, capture_output=True)
print(json.dumps({"event": "cold_start", "first_result_ms": round((time.time() - t) * 1e3, 1),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}))
PY
  done
  "$bin" bench search --index "$idx" --n 200
done
