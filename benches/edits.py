#!/usr/bin/env python3
"""Chunks re-embedded per edit, end to end through the binary.

    benches/edits.py PONDER TEXT_FILE [N]

Indexes a copy of TEXT_FILE (a manual's text, e.g. from `ponder get some.pdf`) into a fresh
index under target/bench/edits, then makes N edits one after the other (a clause appended to
a paragraph, paragraphs spread over the document) and re-indexes after each. Prints the
`chunks_embedded` of every re-index, how many exceeded 3, and the largest.
"""
import json, os, re, shutil, subprocess, sys

ponder, source = sys.argv[1:3]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 25
work = os.path.join("target", "bench", "edits")
docs, index = os.path.join(work, "docs"), os.path.join(work, "index")
shutil.rmtree(work, True)
os.makedirs(docs)
path = os.path.join(docs, "doc.txt")


def reindex():
    p = subprocess.run([ponder, "index", docs, "--index", index, "--progress", "json"],
                       capture_output=True, text=True, check=True)
    for line in (p.stdout + p.stderr).splitlines():
        if '"summary"' in line:
            return json.loads(line)
    raise SystemExit("no summary line")


text = open(source).read()
with open(path, "w") as f:
    f.write(text)
first = reindex()
# Paragraph ends: a non-blank line followed by a blank one.
ends = [m.start() + 1 for m in re.finditer(r"[^\n]\n\n", text)]
step = max(1, len(ends) // n)
cur, embedded = text, []
for k in range(n):
    at = ends[(k * step) % len(ends)] + len(cur) - len(text)
    cur = cur[:at] + f" and an added clause number {k}." + cur[at:]
    with open(path, "w") as f:
        f.write(cur)
    embedded.append(reindex()["chunks_embedded"])
print(json.dumps({"chunks": first["chunks_added"], "edits": n, "embedded": embedded,
                  "over_3": sum(e > 3 for e in embedded), "max": max(embedded)}))
