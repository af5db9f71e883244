#!/usr/bin/env python3
"""Writes unlabeled text for `ponder train distill` from SQuAD v1.1 *train*: one JSON line
{"title", "text"} per paragraph of every article except the held-out ones (i % 11 == 0,
scripts/squad-heldout.py), which ponder evaluates on. No questions are written, and SQuAD dev
is never read.

usage: scripts/distill-data.py [SQUAD_TRAIN_JSON_GZ] [OUT_JSONL]
"""
import gzip
import json
import os
import sys

HOLDOUT_MOD = 11


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "../../shared/data/squad/train-v1.1.json.gz")
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "../target/distill-data/squad-train-paragraphs.jsonl")
    with gzip.open(src, "rt", encoding="utf-8") as f:
        data = json.load(f)["data"]
    os.makedirs(os.path.dirname(out), exist_ok=True)
    n = 0
    with open(out, "w", encoding="utf-8") as f:
        for ai, article in enumerate(data):
            if ai % HOLDOUT_MOD == 0:
                continue
            title = article["title"].replace("_", " ")
            for para in article["paragraphs"]:
                f.write(json.dumps({"title": title, "text": para["context"]}) + "\n")
                n += 1
    print(f"{out}: {n} paragraphs")


if __name__ == "__main__":
    main()
