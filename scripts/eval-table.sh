#!/usr/bin/env bash
# Every retrieval mode and option on SciFact, ponder's held-out SQuAD split
# (scripts/squad-heldout.py) and the two reasoning-style sets (../shared/data/reasoning: theorem
# retrieval, BRIGHT's leetcode queries), one `ponder eval --json` per cell, printed as Markdown.
# usage: scripts/eval-table.sh [--quick]   (--quick: main rows only)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin ponder >/dev/null
scripts/fetch-minilm.sh >/dev/null
python3 scripts/squad-heldout.py >/dev/null 2>&1
bin=target/release/ponder
hf=target/hf/all-MiniLM-L6-v2
sets=("../shared/data/scifact/beir" "target/eval-data/squad-heldout"
  "../shared/data/reasoning/theorem-retrieval" "../shared/data/reasoning/bright-leetcode-lite")
rows=(
  "dense, int8 model, i8 vectors, exact|--mode dense --exact"
  "dense, int8 model, f32 vectors, exact|--mode dense --exact --vectors f32"
  "dense, f32 model, f32 vectors, exact|--mode dense --exact --vectors f32 --model $hf --precision f32"
  "dense, int8 model, i8 vectors, HNSW|--mode dense"
  "lexical BM25 (k1=0.9, b=0.4)|--mode lexical"
  "hybrid z-score 0.6 (default)|--mode hybrid"
  "hybrid z-score 0.5|--mode hybrid --fusion zscore --dense-weight 0.5"
  "hybrid RRF k=60|--mode hybrid --fusion rrf"
  "hybrid min-max weighted 0.5|--mode hybrid --fusion weighted --dense-weight 0.5"
  "hybrid min-max weighted 0.6|--mode hybrid --fusion weighted --dense-weight 0.6"
  "dense + Rocchio PRF (5 docs, beta 0.5)|--mode dense --prf-dense 5"
  "lexical + RM3 (10 docs, 10 terms)|--mode lexical --rm3 10"
  "hybrid + Rocchio + RM3|--mode hybrid --prf-dense 5 --rm3 10"
  "dense, long queries split (mean of windows)|--mode dense --long-query split"
  "hybrid, long queries split|--mode hybrid --long-query split"
  "hybrid + rerank (top 20, weight 0.3, gated at spread 1.0)|--mode hybrid --rerank"
  "hybrid + rerank, ungated|--mode hybrid --rerank --rerank-min-spread 0"
  "hybrid, task instruction on queries|--mode hybrid --instruction 'Given a question, retrieve the document that answers it:'"
)
[ "${1:-}" = "--quick" ] && rows=("${rows[@]:0:1}" "${rows[@]:4:2}")
printf '| configuration |'; for s in "${sets[@]}"; do printf ' %s nDCG@10 | R@100 |' "$(basename "$(dirname "$s")")/$(basename "$s")"; done; echo
printf '|---|'; for _ in "${sets[@]}"; do printf -- '---|---|'; done; echo
for row in "${rows[@]}"; do
  name=${row%%|*}; args=${row#*|}
  printf '| %s |' "$name"
  for s in "${sets[@]}"; do
    out=$(eval "$bin eval \"\$s\" --json $args")
    # One JSON line, or with --rerank a grid (the reranked cell is the last with nDCG).
    python3 -c 'import json,sys; d=[json.loads(l) for l in sys.argv[1].splitlines() if "ndcg@10" in l][-1]; print(" %.2f | %.2f |" % (d["ndcg@10"], d["recall@100"]), end="")' "$out"
  done
  echo
done
