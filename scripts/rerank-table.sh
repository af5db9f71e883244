#!/usr/bin/env bash
# Issue 5's table: the default retriever (hybrid, weighted fusion) alone and with a reranker at
# depth 20 and 50 and interpolation weights 0 / 0.3 / 0.5 / 0.7 / 1, on SciFact and on the
# held-out SQuAD articles, plus rerank latency; with a STUDENT (a retriever distilled from the
# reranker), also the student against all-MiniLM-L6-v2: dense exact, hybrid, hybrid + reranker.
# One `ponder eval --rerank` per collection and retriever scores the deepest cut once and
# evaluates every cell from those scores.
#
# usage: scripts/rerank-table.sh [RERANKER] [SQUAD_QUERIES] [STUDENT]
#   RERANKER: default (built in) or a model file/directory
#   SQUAD_QUERIES: first N of the 700 held-out SQuAD queries (default 700)
#   STUDENT: a distilled retriever (ponder train reranker --distill-from ...), optional
# env: THREADS=n (ponder --threads), FRESH=1 (forget cached results)
#
# Each eval's JSON lines are kept in target/rerank-table/, named by what produced them (the
# arguments and the checksums of the model files), so an interrupted run picks up where it
# stopped and adding a STUDENT later only runs the student's rows.
set -euo pipefail
cd "$(dirname "$0")/.."
rr=${1:-default}
squad_n=${2:-700}
student=${3:-}
cargo build --release --bin ponder >/dev/null
scripts/fetch-minilm.sh >/dev/null
python3 scripts/squad-heldout.py >/dev/null 2>&1
bin=target/release/ponder
threads=(); [ -n "${THREADS:-}" ] && threads=(--threads "$THREADS")
cache=target/rerank-table
[ "${FRESH:-}" = 1 ] && rm -rf "$cache"
mkdir -p "$cache"
scifact=../shared/data/scifact/beir
squad=target/eval-data/squad-heldout

# A short content id for a model argument: "default", or the checksum of the file(s).
model_id() {
  case $1 in
    default) echo default ;;
    *) if [ -d "$1" ]; then cat "$1"/*.safetensors "$1"/config.json; else cat "$1"; fi | sha256sum | cut -c1-16 ;;
  esac
}
rr_id=$(model_id "$rr")
# keep ROLE:COLLECTION NAME ARGS...: runs `ponder ARGS` unless $cache/NAME.jsonl exists, keeps
# its stdout there, and lists the file under ROLE and COLLECTION for the table.
files=()
keep() {
  local tag=$1 f="$cache/$2.jsonl"; shift 2
  if [ ! -s "$f" ]; then
    echo "== ponder $*" >&2
    "$bin" "${threads[@]}" "$@" >"$f.part"
    mv "$f.part" "$f"
  fi
  files+=("$tag:$f")
}
grid=(--rerank --reranker "$rr" --rerank-top 20,50 --rerank-weight 0,0.3,0.5,0.7,1 --json)
keep grid:scifact "grid-scifact-$rr_id" eval "$scifact" "${grid[@]}"
keep grid:squad "grid-squad$squad_n-$rr_id" eval "$squad" --max-queries "$squad_n" "${grid[@]}"
if [ -n "$student" ]; then
  st_id=$(model_id "$student")
  sgrid=(--rerank --reranker "$rr" --rerank-top 20 --rerank-weight 0,0.3,0.5,0.7,1 --json)
  for c in scifact squad; do
    dir=$scifact; n=()
    [ $c = squad ] && dir=$squad && n=(--max-queries "$squad_n")
    suffix=$c; [ $c = squad ] && suffix=squad$squad_n
    keep base-dense:$c "dense-$suffix-default" eval "$dir" "${n[@]}" --mode dense --exact --json
    keep student-dense:$c "dense-$suffix-$st_id" eval "$dir" "${n[@]}" --model "$student" --mode dense --exact --json
    keep student-grid:$c "grid20-$suffix-$st_id-$rr_id" eval "$dir" "${n[@]}" --model "$student" "${sgrid[@]}"
  done
fi
python3 - "$rr" "$student" "${files[@]}" <<'PY'
import json, sys
rr, student, specs = sys.argv[1], sys.argv[2], sys.argv[3:]
rows = {}      # (role, collection) -> list of json rows
for s in specs:
    role, coll, path = s.split(":", 2)
    rows[(role, coll)] = [json.loads(l) for l in open(path) if l.strip()]
colls = ["scifact", "squad"]

def cell(role, coll, top=None, weight=None):
    for r in rows.get((role, coll), []):
        if "rerank_ms_per_query" in r:
            continue
        if top is None or (r.get("rerank_top") == top and abs(r.get("rerank_weight", 0) - weight) < 1e-6):
            return r
    return None

def line(label, cells):
    vals = []
    for r in cells:
        vals += [f"{r['ndcg@10']:.2f}", f"{r['recall@100']:.2f}"] if r else ["", ""]
    print(f"| {label} | " + " | ".join(vals) + " |")

nq = {c: next((r["queries"] for r in rows.get(("grid", c), []) if "queries" in r), "?") for c in colls}
print(f"reranker: {rr}" + (f"; student: {student}" if student else ""))
print()
print(f"| configuration | SciFact ({nq['scifact']} q) nDCG@10 | R@100 | SQuAD held-out ({nq['squad']} q) nDCG@10 | R@100 |")
print("|---|---|---|---|---|")
line("hybrid retriever alone", [cell("grid", c, 0, 0.0) for c in colls])
for top in (20, 50):
    for w in (0.0, 0.3, 0.5, 0.7, 1.0):
        extra = " (reranker only)" if w == 1.0 else ""
        line(f"+ reranker top {top}, weight {w:g}{extra}", [cell("grid", c, top, w) for c in colls])
if student:
    line("all-MiniLM-L6-v2 dense, exact", [cell("base-dense", c) for c in colls])
    line("distilled dense, exact", [cell("student-dense", c) for c in colls])
    line("distilled hybrid", [cell("student-grid", c, 0, 0.0) for c in colls])
    for w in (0.3, 0.5):
        line(f"distilled hybrid + reranker top 20, weight {w:g}", [cell("student-grid", c, 20, w) for c in colls])
print()
for role in ("grid", "student-grid"):
    for c in colls:
        for r in rows.get((role, c), []):
            if "rerank_ms_per_query" in r:
                who = "default retriever" if role == "grid" else "distilled retriever"
                print(f"{c} ({who}): {r['queries']} queries, rerank latency {r['rerank_ms_per_query']} ms/query at top "
                      f"{r['rerank_ms_per_query_at_top']} ({r['rerank_ms_per_query_deepest']} ms at top {r['deepest']}), {r['reranker']}")
PY
