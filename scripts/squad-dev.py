#!/usr/bin/env python3
"""Builds the SQuAD v1.1 *dev* retrieval set in BEIR layout, for final checks of a default
change only (never for training or tuning). Corpus: every dev paragraph (title + paragraph);
queries: every 5th question (about 2,100); each query's relevant document is its paragraph.

usage: scripts/squad-dev.py [SQUAD_DEV_JSON_GZ] [OUT_DIR]
"""
import gzip
import json
import os
import sys

from beir import write


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "../../shared/data/squad/dev-v1.1.json.gz")
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "../target/eval-data/squad-dev")
    with gzip.open(src, "rt", encoding="utf-8") as f:
        data = json.load(f)["data"]
    docs, queries, qrels = [], [], []
    n_q = 0
    for ai, article in enumerate(data):
        title = article["title"].replace("_", " ")
        for pi, para in enumerate(article["paragraphs"]):
            did = f"d{ai}p{pi}"
            docs.append({"_id": did, "title": title, "text": para["context"]})
            for qi, qa in enumerate(para["qas"]):
                n_q += 1
                if n_q % 5 != 0:
                    continue
                qid = f"{did}q{qi}"
                queries.append({"_id": qid, "text": qa["question"]})
                qrels.append((qid, did))
    write(out, docs, queries, qrels, "test")


if __name__ == "__main__":
    main()
