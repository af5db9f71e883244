#!/usr/bin/env python3
"""Reference logits for the cross-encoder parity test (tests/suite/parity.rs).

The cross-encoder is all-MiniLM-L6-v2's encoder and pooler (its model.safetensors carries
`pooler.dense`) with a fixed classifier head: weight[i] = 0.5 * sin(0.37 * i + 0.1), bias 0.1.
The logit follows BertForSequenceClassification: classifier(tanh(pooler(h[CLS]))), the input
`[CLS] a [SEP] b [SEP]` with token types 0/1, truncated longest-first to 512 tokens (the window
ponder gives a cross-encoder directory without sentence_bert_config.json). The encoder is the
independent numpy BERT in ../shared/golden/reference_bert.py (imported, not copied); pairs are
(texts[i], texts[(i + 5) % 16]) over ../shared/golden/texts.jsonl, so long texts exercise
truncation.

Needs numpy, scipy, safetensors, tokenizers. Writes tests/golden/cross-encoder-minilm.json.
usage: scripts/cross-encoder-golden.py [MINILM_DIR]
"""
import json, os, sys

import numpy as np
from tokenizers import Tokenizer

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
golden = os.path.join(root, "..", "shared", "golden")
sys.path.insert(0, golden)
from reference_bert import Bert  # noqa: E402

model_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "target", "hf", "all-MiniLM-L6-v2")
texts = [json.loads(l) for l in open(os.path.join(golden, "texts.jsonl"))]
model, tok = Bert(model_dir), Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
tok.no_padding()
tok.enable_truncation(512)  # longest-first for pairs; 512: no sentence_bert_config.json in a cross-encoder directory
h = model.w["pooler.dense.weight"].shape[0]
cw = (0.5 * np.sin(0.37 * np.arange(h) + 0.1)).astype(np.float32)
cb = np.float32(0.1)

pairs = [(i, (i + 5) % len(texts)) for i in range(len(texts))]
logits, lengths = [], []
for a, b in pairs:  # one pair per forward pass: no padding anywhere
    e = tok.encode(texts[a], texts[b])
    ids = np.array([e.ids]); tt = np.array([e.type_ids]); mask = np.ones_like(ids)
    x = model(ids, tt, mask)[0, 0]
    pooled = np.tanh(model.w["pooler.dense.weight"] @ x + model.w["pooler.dense.bias"])
    logits.append(float(pooled @ cw + cb))
    lengths.append(len(e.ids))

out = {
    "model": "all-MiniLM-L6-v2 (model.safetensors sha256 53aa5117...) + pooler.dense, classifier 0.5*sin(0.37*i+0.1), bias 0.1",
    "pairs": pairs,
    "tokens": lengths,
    "logits": logits,
}
dest = os.path.join(root, "tests", "golden", "cross-encoder-minilm.json")
os.makedirs(os.path.dirname(dest), exist_ok=True)
with open(dest, "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
print(f"wrote {dest}: {len(pairs)} pairs, tokens {min(lengths)}..{max(lengths)}, logits {min(logits):.4f}..{max(logits):.4f}")
