#!/usr/bin/env bash
# Issue 4's table: every retrieval mode and option on SciFact and on ponder's held-out SQuAD
# split (scripts/squad-heldout.py), one `ponder eval --json` per cell, printed as Markdown.
# usage: scripts/eval-table.sh [--quick]   (--quick: main rows only)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin ponder >/dev/null
scripts/fetch-minilm.sh >/dev/null
python3 scripts/squad-heldout.py >/dev/null 2>&1
bin=target/release/ponder
hf=target/hf/all-MiniLM-L6-v2
sets=("../shared/data/scifact/beir" "target/eval-data/squad-heldout")
rows=(
  "dense, int8 model, i8 vectors, exact|--mode dense --exact"
  "dense, int8 model, f32 vectors, exact|--mode dense --exact --vectors f32"
  "dense, f32 model, f32 vectors, exact|--mode dense --exact --vectors f32 --model $hf --precision f32"
  "dense, int8 model, i8 vectors, HNSW|--mode dense"
  "lexical BM25 (k1=0.9, b=0.4)|--mode lexical"
  "hybrid RRF k=60|--mode hybrid --fusion rrf"
  "hybrid weighted 0.5|--mode hybrid --fusion weighted --dense-weight 0.5"
  "hybrid weighted 0.3|--mode hybrid --fusion weighted --dense-weight 0.3"
  "hybrid weighted 0.7|--mode hybrid --fusion weighted --dense-weight 0.7"
  "dense + Rocchio PRF (5 docs, beta 0.5)|--mode dense --prf-dense 5"
  "lexical + RM3 (10 docs, 10 terms)|--mode lexical --rm3 10"
  "hybrid RRF + Rocchio + RM3|--mode hybrid --fusion rrf --prf-dense 5 --rm3 10"
  "hybrid weighted 0.5 + Rocchio + RM3|--mode hybrid --prf-dense 5 --rm3 10"
  "dense, long queries split (mean of windows)|--mode dense --long-query split"
)
[ "${1:-}" = "--quick" ] && rows=("${rows[@]:0:1}" "${rows[@]:4:3}")
printf '| configuration |'; for s in "${sets[@]}"; do printf ' %s nDCG@10 | R@100 |' "$(basename "$(dirname "$s")")/$(basename "$s")"; done; echo
printf '|---|'; for _ in "${sets[@]}"; do printf -- '---|---|'; done; echo
for row in "${rows[@]}"; do
  name=${row%%|*}; args=${row#*|}
  printf '| %s |' "$name"
  for s in "${sets[@]}"; do
    # shellcheck disable=SC2086
    out=$($bin eval "$s" --json $args)
    python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(" %.2f | %.2f |" % (d["ndcg@10"], d["recall@100"]), end="")' "$out"
  done
  echo
done
