"""Writes a collection in BEIR layout (corpus.jsonl, queries.jsonl, qrels/<split>.tsv); shared
by the scripts that build ponder's SQuAD evaluation and training sets."""
import json
import os
import sys


def write(out, docs, queries, qrels, split):
    os.makedirs(os.path.join(out, "qrels"), exist_ok=True)
    with open(os.path.join(out, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    with open(os.path.join(out, "queries.jsonl"), "w", encoding="utf-8") as f:
        for q in queries:
            f.write(json.dumps(q, ensure_ascii=False) + "\n")
    with open(os.path.join(out, "qrels", f"{split}.tsv"), "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q, d in qrels:
            f.write(f"{q}\t{d}\t1\n")
    print(f"{out}: {len(docs)} docs, {len(queries)} queries", file=sys.stderr)
