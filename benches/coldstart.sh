#!/usr/bin/env bash
# Cold start: process start to the first printed result, for one or more ponder binaries on
# one or more indexes, runs interleaved (A B A B ...) so that machine load hits them alike.
# Reports the median and p90 wall time, the median CPU time and peak RSS of each.
#   usage: benches/coldstart.sh [-n RUNS] [-q QUERY] BINARY:INDEX [BINARY:INDEX ...]
#   e.g.   benches/coldstart.sh /tmp/ponder-old:/tmp/idx-old target/release/ponder:/tmp/idx-new
# The page cache is warm (the first run of each is discarded); a laptop's first search after
# boot also reads the files from disk.
set -euo pipefail
runs=15 query="when did the earthquake happen"
while getopts "n:q:" o; do case $o in n) runs=$OPTARG;; q) query=$OPTARG;; *) exit 2;; esac; done
shift $((OPTIND - 1))
[ $# -gt 0 ] || { echo "usage: $0 [-n RUNS] [-q QUERY] BINARY:INDEX..." >&2; exit 2; }
python3 - "$runs" "$query" "$@" <<'PY'
import json, os, resource, statistics, subprocess, sys, time
runs, query, pairs = int(sys.argv[1]), sys.argv[2], [p.split(":", 1) for p in sys.argv[3:]]
res = {i: [] for i in range(len(pairs))}
def one(b, idx):
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.Popen([b, "search", query, "--index", idx, "-k", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = p.stdout.readline()  # first printed result
    wall = time.perf_counter() - t
    p.communicate()
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0 or not first:
        sys.exit(f"{b} on {idx} failed")
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return wall * 1e3, cpu * 1e3, r1.ru_maxrss
for i, (b, idx) in enumerate(pairs):
    one(b, idx)  # warm the page cache
for _ in range(runs):
    for i, (b, idx) in enumerate(pairs):
        res[i].append(one(b, idx))
base = None
for i, (b, idx) in enumerate(pairs):
    w = sorted(r[0] for r in res[i])
    med = statistics.median(w)
    base = base or med
    out = {"binary": b, "index": idx, "runs": runs, "wall_p50_ms": round(med, 1),
           "wall_p90_ms": round(w[int(0.9 * (len(w) - 1))], 1),
           "cpu_p50_ms": round(statistics.median(r[1] for r in res[i]), 1),
           "ratio_to_first": round(med / base, 3)}
    print(json.dumps(out))
PY
