#!/usr/bin/env python3
"""Builds ponder's held-out SQuAD retrieval set in BEIR layout.

Whole articles are held out of SQuAD v1.1 *train*: article i is held out when i % 11 == 0
(about 40 of 442 articles; training code must skip the same articles). Corpus: every
paragraph of the held-out articles (title + " " + paragraph); queries: every 3rd question of
those paragraphs (at most 700); each query's relevant document is its paragraph. SQuAD dev is
never used here (final checks only).

usage: scripts/squad-heldout.py [SQUAD_TRAIN_JSON_GZ] [OUT_DIR]
"""
import gzip
import json
import os
import sys

from beir import write

HOLDOUT_MOD = 11


def held_out(article_index: int) -> bool:
    return article_index % HOLDOUT_MOD == 0


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "../../shared/data/squad/train-v1.1.json.gz")
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "../target/eval-data/squad-heldout")
    with gzip.open(src, "rt", encoding="utf-8") as f:
        data = json.load(f)["data"]
    docs, queries, qrels = [], [], []
    n_q = 0
    for ai, article in enumerate(data):
        if not held_out(ai):
            continue
        title = article["title"].replace("_", " ")
        for pi, para in enumerate(article["paragraphs"]):
            did = f"a{ai}p{pi}"
            docs.append({"_id": did, "title": title, "text": para["context"]})
            for qi, qa in enumerate(para["qas"]):
                n_q += 1
                if n_q % 3 != 0 or len(queries) >= 700:
                    continue
                qid = f"{did}q{qi}"
                queries.append({"_id": qid, "text": qa["question"]})
                qrels.append((qid, did))
    write(out, docs, queries, qrels, "test")


if __name__ == "__main__":
    main()
