#!/usr/bin/env python3
"""Builds ponder's reranker training and validation sets from SQuAD v1.1 *train*, in BEIR layout.

Article i of SQuAD train is
  - held out for evaluation when i % 11 == 0 (scripts/squad-heldout.py; never seen here),
  - validation when i % 11 == 5 (whole articles; used to pick models, never trained on),
  - training otherwise.
Training: the first ARTICLES training articles (default all), every paragraph a document
(title + " " + paragraph), every question a query whose relevant document is its paragraph
(qrels/train.tsv). Validation: same layout with qrels/test.tsv. SQuAD dev is never used.

usage: scripts/squad-train.py [--articles N] [SQUAD_TRAIN_JSON_GZ] [OUT_DIR]
"""
import gzip
import json
import os
import sys

from beir import write

HOLDOUT_MOD = 11


def main() -> None:
    args = sys.argv[1:]
    limit = None
    if args[:1] == ["--articles"]:
        limit = int(args[1])
        args = args[2:]
    here = os.path.dirname(os.path.abspath(__file__))
    src = args[0] if args else os.path.join(here, "../../shared/data/squad/train-v1.1.json.gz")
    out = args[1] if len(args) > 1 else os.path.join(here, "../target/train-data")
    with gzip.open(src, "rt", encoding="utf-8") as f:
        data = json.load(f)["data"]
    sets = {"train": ([], [], []), "val": ([], [], [])}
    n_train = 0
    for ai, article in enumerate(data):
        r = ai % HOLDOUT_MOD
        if r == 0:
            continue
        name = "val" if r == 5 else "train"
        if name == "train":
            if limit is not None and n_train >= limit:
                continue
            n_train += 1
        docs, queries, qrels = sets[name]
        title = article["title"].replace("_", " ")
        for pi, para in enumerate(article["paragraphs"]):
            did = f"a{ai}p{pi}"
            docs.append({"_id": did, "title": title, "text": para["context"]})
            for qi, qa in enumerate(para["qas"]):
                qid = f"{did}q{qi}"
                queries.append({"_id": qid, "text": qa["question"]})
                qrels.append((qid, did))
    write(os.path.join(out, "squad-train"), *sets["train"], "train")
    # Validation queries are interleaved across articles (every 7th) so a small prefix covers many.
    docs, queries, qrels = sets["val"]
    order = queries[::7] + [q for i, q in enumerate(queries) if i % 7 != 0]
    rel = dict(qrels)
    write(os.path.join(out, "squad-val"), docs, order, [(q["_id"], rel[q["_id"]]) for q in order], "test")


if __name__ == "__main__":
    main()
