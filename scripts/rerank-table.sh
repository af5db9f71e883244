#!/usr/bin/env bash
# Issue 5's table: the default retriever (hybrid, weighted fusion) alone and with a reranker at
# depth 20 and 50 and interpolation weights 0 / 0.3 / 0.5 / 0.7 / 1, on SciFact and on the
# held-out SQuAD articles, plus rerank latency. One `ponder eval --rerank` per collection
# scores the deepest cut once and evaluates every cell from those scores.
# usage: scripts/rerank-table.sh [RERANKER] [SQUAD_QUERIES] [STUDENT]
#   RERANKER: default (built in) or a model file/directory; SQUAD_QUERIES: first N held-out
#   SQuAD queries (default 300 of 700, to keep the run near 20 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
rr=${1:-default}
squad_n=${2:-300}
student=${3:-}   # a distilled retriever (ponder train reranker --distill-from ...), optional
cargo build --release --bin ponder >/dev/null
scripts/fetch-minilm.sh >/dev/null
python3 scripts/squad-heldout.py >/dev/null 2>&1
bin=target/release/ponder
out=$(mktemp)
grid=(--rerank --reranker "$rr" --rerank-top 20,50 --rerank-weight 0,0.3,0.5,0.7,1 --json)
"$bin" eval ../shared/data/scifact/beir "${grid[@]}" >>"$out"
"$bin" eval target/eval-data/squad-heldout --max-queries "$squad_n" "${grid[@]}" >>"$out"
if [ -n "$student" ]; then
  for c in ../shared/data/scifact/beir target/eval-data/squad-heldout; do
    n=(); [ "$c" != ../shared/data/scifact/beir ] && n=(--max-queries "$squad_n")
    echo "== student $student on $c: dense exact, hybrid, hybrid + reranker top 20 weight 0.3" >&2
    "$bin" eval "$c" "${n[@]}" --model "$student" --mode dense --exact --json >&2
    "$bin" eval "$c" "${n[@]}" --model "$student" --rerank --reranker "$rr" --rerank-top 20 --rerank-weight 0.3 --json >&2
  done
fi
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cells = {}
timing = {}
for r in rows:
    if "rerank_ms_per_query" in r:
        timing[r["collection"]] = r
        continue
    cells[(r["collection"], r["rerank_top"], r["rerank_weight"])] = r
cols = sorted({c for c, _, _ in cells}, key=lambda c: c != "beir")
print("| retriever + reranker | " + " | ".join(f"{'scifact' if c == 'beir' else c} nDCG@10 | R@100" for c in cols) + " |")
print("|---|" + "---|---|" * len(cols))
keys = sorted({(t, w) for _, t, w in cells})
for t, w in keys:
    label = "hybrid retriever alone" if t == 0 else f"+ reranker top {t}, weight {w:g}"
    vals = []
    for c in cols:
        r = cells.get((c, t, w))
        vals += [f"{r['ndcg@10']:.2f}", f"{r['recall@100']:.2f}"] if r else ["", ""]
    print(f"| {label} | " + " | ".join(vals) + " |")
for c, r in timing.items():
    print(f"\n{'scifact' if c == 'beir' else c}: {r['queries']} queries, rerank latency {r['rerank_ms_per_query']} ms/query at top {r['rerank_ms_per_query_at_top']} "
          f"({r['rerank_ms_per_query_deepest']} ms at top {r['deepest']}), {r['reranker']}")
PY
rm -f "$out"
