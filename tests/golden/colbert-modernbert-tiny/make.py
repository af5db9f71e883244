#!/usr/bin/env python3
"""The ColBERT golden of `../colbert-tiny/` with a ModernBERT backbone instead of BERT.

Regenerate (from the repository root; PyLate as described in ../colbert-tiny/make.py):
    PYLATE_PATH=/tmp/pylate-pkg:/tmp/pylate-stubs target/ref-venv/bin/python tests/golden/colbert-modernbert-tiny/make.py

Everything but the backbone comes from ../colbert-tiny/make.py (texts, PyLate settings, the
reference run and expected.json's layout). The backbone is ../modernbert-tiny's tokenizer
(byte-level BPE, with PyLate's `[Q] `/`[D] ` added) and its random weights (from
../modernbert-tiny/make.py, same seed rule), with the vocabulary sized to the tokenizer, as
PyLate's `resize_token_embeddings` leaves it. Queries are not expanded (`do_query_expansion`
false, as in mxbai-edge-colbert and LateOn-Code); `tokens_attend_expansion` holds expanded,
attended queries.
"""

import importlib.util
import json
import os

from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.dirname(HERE)


def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


colbert = load("colbert_tiny_make", os.path.join(GOLDEN, "colbert-tiny", "make.py"))
modernbert = load("modernbert_tiny_make", os.path.join(GOLDEN, "modernbert-tiny", "make.py"))


def write_backbone(base, vocab, rng):
    specials = {"unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "mask_token": "[MASK]"}
    with open(os.path.join(base, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 64, **specials}, f, indent=2)
    with open(os.path.join(base, "special_tokens_map.json"), "w") as f:
        json.dump(specials, f, indent=2)
    with open(os.path.join(base, "tokenizer.json")) as f:
        tok = json.load(f)
    ids = {t["content"]: t["id"] for t in tok["added_tokens"]}
    config = {
        "architectures": ["ModernBertModel"], "model_type": "modernbert", "vocab_size": vocab,
        **modernbert.CFG,
        "max_position_embeddings": 64,
        "pad_token_id": ids["[PAD]"], "bos_token_id": ids["[CLS]"], "eos_token_id": ids["[SEP]"],
        "cls_token_id": ids["[CLS]"], "sep_token_id": ids["[SEP]"],
        "embedding_dropout": 0.0, "attention_dropout": 0.0, "mlp_dropout": 0.0,
        "tie_word_embeddings": True, "torch_dtype": "float32",
    }
    with open(os.path.join(base, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    save_file(modernbert.make_weights(vocab, rng), os.path.join(base, "model.safetensors"), metadata={"format": "pt"})


colbert.HERE = HERE
colbert.build_tokenizer = modernbert.build_tokenizer
colbert.write_backbone = write_backbone
colbert.HIDDEN = modernbert.CFG["hidden_size"]
colbert.EXPANSION, colbert.ATTEND = False, False
colbert.NAME = "colbert-modernbert-tiny (random ModernBERT backbone of modernbert-tiny"

if __name__ == "__main__":
    colbert.main()
