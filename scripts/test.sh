#!/usr/bin/env bash
# The test suite: fetches the f32 reference model for the parity tests (once), then builds
# once in release mode and runs every test. GPU tests run on any wgpu adapter; on a machine
# without a GPU install Mesa's lavapipe first (apt-get install -y mesa-vulkan-drivers).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-minilm.sh target/hf/all-MiniLM-L6-v2
export PONDER_MINILM_DIR="$PWD/target/hf/all-MiniLM-L6-v2"
mkdir -p target
set -o pipefail
cargo test --release "$@" 2>&1 | tee target/test-output.log
# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' target/test-output.log
