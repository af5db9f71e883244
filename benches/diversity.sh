#!/usr/bin/env bash
# Result diversity on a real documentation corpus: the Cargo book as rustup installs it (HTML
# chapters, the whole book again as print.html, a minified search index, font licences).
# Indexes it twice with one binary — as before (generated files indexed) and by default — and
# runs 15 everyday questions (benches/cargo-book-questions.tsv: question, right chapter files)
# with and without diversification. Reports, over the top 5: the share of distinct documents
# (print.html counts as a document of its own), how many places print.html, generated files
# and licences take, and hit@5 (a right chapter among the top 5 paths).
#   benches/diversity.sh [PONDER_BIN] [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/ponder}
WORK=${2:-target/bench-diversity}
BOOK="$(rustc --print sysroot)/share/doc/rust/html/cargo"
[ -d "$BOOK" ] || { echo "no Cargo book at $BOOK (rustup component rust-docs)"; exit 1; }
mkdir -p "$WORK"
for variant in before after; do
  if [ ! -f "$WORK/$variant/MANIFEST" ]; then
    extra=(); [ "$variant" = before ] && extra=(--include-generated)
    "$BIN" index "$BOOK" --index "$WORK/$variant" --progress plain "${extra[@]}" 2>&1 | grep -v '^progress' | tail -3
  fi
done
python3 - "$BIN" "$WORK" "$BOOK" benches/cargo-book-questions.tsv <<'PY'
import json, subprocess, sys
bin_, work, book, qfile = sys.argv[1:]
qs = [l.rstrip("\n").split("\t") for l in open(qfile) if l.strip()]
def run(index, q, flags):
    out = subprocess.run([bin_, "search", q, "--index", index, "--json", "-k", "5", *flags],
                         check=True, capture_output=True, text=True).stdout
    return [json.loads(l) for l in out.splitlines()]
def rel(p): return p[len(book) + 1:] if p.startswith(book) else p
configs = [("before: generated indexed, no diversification", "before", ["--no-dedup", "--per-file", "0"]),
           ("generated skipped, no diversification", "after", ["--no-dedup", "--per-file", "0"]),
           ("after: defaults (dedup, 2 per file)", "after", []),
           ("--per-file 3", "after", ["--per-file", "3"]),
           ("--files", "after", ["--files"])]
for name, variant, flags in configs:
    distinct = hits5 = prints = gen = 0; total = 0
    for q, want in qs:
        hits = run(f"{work}/{variant}", q, flags)
        paths = [rel(h["path"]) for h in hits]
        total += len(paths)
        distinct += len(set(paths))
        prints += sum(p.endswith("print.html") for p in paths)
        gen += sum(p.endswith(".js") or "LICENSE" in p or p.endswith(".css") for p in paths)
        hits5 += any(p in want.split() for p in paths)
    print(f"{name:50s} distinct {distinct/total*100:5.1f}% of top 5 | print.html {prints:2d} places | "
          f"generated/licence {gen:2d} | hit@5 {hits5}/{len(qs)}")
PY
