#!/usr/bin/env bash
# Reproduces issue 5's distilled retriever: all-MiniLM-L6-v2 fine-tuned with margin-MSE against
# the built-in reranker on the SQuAD training split (scripts/squad-train.py), 150 steps × 8
# questions × (1 positive + 2 BM25/random negatives), one core. Stops after 40 minutes with a
# checkpoint; rerunning resumes to the same weights. Then compare it with
#   scripts/rerank-table.sh default 700 target/train/distilled.int8.ponder
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin ponder >/dev/null
scripts/fetch-minilm.sh >/dev/null
python3 scripts/squad-train.py --articles 150
mkdir -p target/train
target/release/ponder --threads 1 train reranker --distill-from default \
  --data target/train-data/squad-train --val target/train-data/squad-val \
  --out target/train/distilled.int8.ponder --steps 150 --max-minutes 40 \
  --negatives 2 --queries-per-step 8 --lr 2e-5
