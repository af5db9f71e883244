#!/usr/bin/env python3
"""Build the tiny random ColBERT checkpoint (BERT backbone, PyLate layout) and its golden outputs.

Regenerate (from the repository root):
    target/ref-venv/bin/python tests/golden/colbert-tiny/make.py

The venv needs torch, transformers, sentence-transformers, tokenizers, safetensors and PyLate.
PyLate pins older transformers/sentence-transformers than the shared venv has, so it is not
installed into it; it is unpacked without dependencies instead and imported from PYLATE_PATH
(its `datasets` import is only used for training and may be a stub):
    target/ref-venv/bin/pip download --no-deps pylate -d /tmp/pylate-dl
    mkdir -p /tmp/pylate-pkg && (cd /tmp/pylate-pkg && unzip -oq /tmp/pylate-dl/pylate-*.whl)
    mkdir -p /tmp/pylate-stubs/datasets && touch /tmp/pylate-stubs/datasets/__init__.py
    PYLATE_PATH=/tmp/pylate-pkg:/tmp/pylate-stubs target/ref-venv/bin/python tests/golden/colbert-tiny/make.py

Everything comes from fixed seeds. The checkpoint is written by PyLate itself (`ColBERT.save`),
so the file layout is PyLate's; the outputs are PyLate's `encode` (token vectors after its
prefix insertion, query expansion, skiplist and padding handling, projection and L2
normalisation) and `pylate.scores.colbert_scores` (MaxSim). A NumPy recomputation of the
projection, normalisation and MaxSim from transformers' hidden states is checked as well.
"""

import json
import os
import shutil
import sys
import tempfile

for p in os.environ.get("PYLATE_PATH", "/tmp/pylate-pkg:/tmp/pylate-stubs").split(":"):
    if p and p not in sys.path:
        sys.path.insert(0, p)

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer, AddedToken, models, normalizers, pre_tokenizers, processors, trainers, decoders

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 20261202

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Semantic search finds passages by meaning, not only by exact words.",
    "Late interaction keeps one vector per token and scores with MaxSim.",
    "Each query token takes its best match among the document tokens.",
    "The capital of France is Paris; the capital of Italy is Rome.",
    "Rust programs are compiled ahead of time and run without a garbage collector.",
    "An index stores compressed vectors for every chunk of every file.",
    "Queries are padded with mask tokens up to a fixed length.",
    "Punctuation such as commas, periods and colons is skipped in documents!",
    "How do I search my notes offline? Use a local index.",
    "The model projects hidden states to a smaller dimension, then normalises them.",
    "Tokens, words and sentences: three levels of text.",
    "What is the boiling point of water at sea level? About 100 degrees.",
    "A cat sat on the mat while the dog slept by the door.",
    "Numbers like 3.14 and 2.71 appear in many formulas (and tests).",
    "Good tests compare two independent implementations of the same idea.",
]

DOCS = [
    "Late interaction scores each query token against every document token.",
    "The capital of France is Paris, and Rome is the capital of Italy.",
    "Punctuation: commas, periods; colons! and (brackets) are skipped?",
    "A cat sat on the mat.",
    "Rust programs run without a garbage collector \u2603 and compile ahead of time.",
    # Longer than document_length: truncated.
    "Semantic search finds passages by meaning, not only by exact words, and an index stores "
    "compressed vectors for every chunk of every file so that queries are answered offline.",
]
QUERIES = [
    "what is late interaction?",
    "capital of italy",
    "cat",
    # Longer than query_length: truncated, no expansion tokens left.
    "how do programs run without a garbage collector and how are they compiled ahead of time",
]

QUERY_LENGTH = 12
DOCUMENT_LENGTH = 24
HIDDEN, LAYERS, HEADS, FFN, OUT = 32, 2, 4, 64, 16
# PyLate settings of the saved model.
EXPANSION, ATTEND = True, False
NAME = "colbert-tiny (random BERT backbone"
# PyLate's default skiplist is string.punctuation; a few of these are not in the vocabulary and
# map to [UNK] (as `convert_tokens_to_ids` does), so unknown tokens are skipped too.
import string
SKIPLIST = list(string.punctuation)


def build_tokenizer():
    # The vocabulary is built here rather than by tokenizers' WordPieceTrainer, whose ties
    # come out in a different order on every run: the special tokens, every character of the
    # corpus alone and as a continuation (`##c`), and every word of the corpus.
    from collections import Counter
    norm = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    words = Counter(w for s in CORPUS for w, _ in pre.pre_tokenize_str(norm.normalize_str(s)))
    chars = sorted({c for w in words for c in w})
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars]
    pieces += sorted(w for w in words if len(w) > 1)
    tok = Tokenizer(models.WordPiece(vocab={p: i for i, p in enumerate(pieces)}, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = norm
    tok.pre_tokenizer = pre
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return tok


def bert_weights(vocab, rng):
    def normal(shape, std):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    def lnw():
        return (1.0 + 0.2 * rng.standard_normal(HIDDEN)).astype(np.float32)

    w = {
        "embeddings.word_embeddings.weight": normal((vocab, HIDDEN), 0.5),
        "embeddings.position_embeddings.weight": normal((64, HIDDEN), 0.3),
        "embeddings.token_type_embeddings.weight": normal((2, HIDDEN), 0.3),
        "embeddings.LayerNorm.weight": lnw(),
        "embeddings.LayerNorm.bias": normal(HIDDEN, 0.1),
    }
    for l in range(LAYERS):
        p = f"encoder.layer.{l}."
        for t in ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"]:
            w[p + t + ".weight"] = normal((HIDDEN, HIDDEN), 0.3)
            w[p + t + ".bias"] = normal(HIDDEN, 0.1)
        w[p + "attention.output.LayerNorm.weight"] = lnw()
        w[p + "attention.output.LayerNorm.bias"] = normal(HIDDEN, 0.1)
        w[p + "intermediate.dense.weight"] = normal((FFN, HIDDEN), 0.3)
        w[p + "intermediate.dense.bias"] = normal(FFN, 0.1)
        w[p + "output.dense.weight"] = normal((HIDDEN, FFN), 0.2)
        w[p + "output.dense.bias"] = normal(HIDDEN, 0.1)
        w[p + "output.LayerNorm.weight"] = lnw()
        w[p + "output.LayerNorm.bias"] = normal(HIDDEN, 0.1)
    return w


def r(x):
    """float32 value(s) -> JSON floats with 8 significant digits."""
    return [r(y) for y in x] if isinstance(x, (list, np.ndarray)) and np.ndim(x) > 0 else float(f"{float(x):.8g}")


def main():
    from pylate import models as pl_models, scores as pl_scores
    import pylate
    import transformers
    import sentence_transformers

    if not hasattr(pl_models.ColBERT, "_text_length"):
        # Only the sort key of encode's length-sorted batching (renamed in sentence-transformers 6).
        pl_models.ColBERT._text_length = lambda self, t: len(t) if isinstance(t, str) else sum(map(len, t))
    from sentence_transformers.models import Transformer as _T

    def st5_tokenize(self, texts, padding=True, **_):
        # sentence-transformers 5.3's Transformer.tokenize, which PyLate 1.6 is written against
        # (sentence-transformers 6 ignores `padding`, so queries were not padded to query_length).
        return self.tokenizer(list(texts), padding=padding, truncation="longest_first",
                              return_tensors="pt", max_length=self.max_seq_length)
    _T.tokenize = st5_tokenize
    rng = np.random.default_rng(SEED)
    torch.manual_seed(0)
    tok = build_tokenizer()
    # PyLate adds its prefixes as ordinary added tokens; putting them in tokenizer.json first keeps
    # the vocabulary (and the embedding table) the size it is, as in published PyLate models.
    tok.add_tokens([AddedToken("[Q] ", normalized=True), AddedToken("[D] ", normalized=True)])
    vocab = tok.get_vocab_size(with_added_tokens=True)

    tmp = tempfile.mkdtemp()
    base = os.path.join(tmp, "bert")
    os.makedirs(base)
    tok.save(os.path.join(base, "tokenizer.json"))
    write_backbone(base, vocab, rng)
    return finish(base, tmp, vocab, rng)


def write_backbone(base, vocab, rng):
    """The encoder's own files (tokenizer.json is already there): a random BERT."""
    specials = {"unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "mask_token": "[MASK]"}
    with open(os.path.join(base, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 64, **specials}, f, indent=2)
    with open(os.path.join(base, "special_tokens_map.json"), "w") as f:
        json.dump(specials, f, indent=2)
    config = {
        "architectures": ["BertModel"], "model_type": "bert", "vocab_size": vocab,
        "hidden_size": HIDDEN, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
        "intermediate_size": FFN, "hidden_act": "gelu", "max_position_embeddings": 64,
        "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0,
        "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
        "position_embedding_type": "absolute", "torch_dtype": "float32",
    }
    with open(os.path.join(base, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    save_file(bert_weights(vocab, rng), os.path.join(base, "model.safetensors"), metadata={"format": "pt"})


def finish(base, tmp, vocab, rng):
    from pylate import models as pl_models, scores as pl_scores
    import pylate
    import transformers
    import sentence_transformers

    # The modules are built here (PyLate would add the Dense itself, but sentence-transformers 6
    # puts a Pooling module after a bare encoder, which PyLate 1.6 does not expect).
    from sentence_transformers.models import Transformer
    transformer = Transformer(base, max_seq_length=64)
    model = pl_models.ColBERT(
        modules=[transformer, pl_models.Dense(in_features=HIDDEN, out_features=OUT, bias=False)], device="cpu",
        query_prefix="[Q] ", document_prefix="[D] ", query_length=QUERY_LENGTH, document_length=DOCUMENT_LENGTH,
        do_query_expansion=EXPANSION, attend_to_expansion_tokens=ATTEND, skiplist_words=SKIPLIST,
    )
    assert len(model.tokenizer) == vocab, "PyLate added tokens: the vocabulary changed"
    dense = model[1]
    with torch.no_grad():
        dense.linear.weight.copy_(torch.from_numpy((rng.standard_normal((OUT, HIDDEN)) * 0.3).astype(np.float32)))
    model[0].max_seq_length = 64
    for name in os.listdir(HERE):
        if name not in ("make.py", "README.md"):
            path = os.path.join(HERE, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    if "_model_config" not in model.__dict__:  # sentence-transformers 6 renamed it
        model.__dict__["_model_config"] = model._get_model_config()
    model.save(HERE, create_model_card=False)
    shutil.rmtree(tmp)
    # sentence-transformers 6 writes its own newer module files; published PyLate models (for
    # example Reason-ModernColBERT) carry the classic ones, which are written here instead.
    with open(os.path.join(HERE, "modules.json"), "w") as f:
        json.dump([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
        ], f, indent=2)
    with open(os.path.join(HERE, "sentence_bert_config.json"), "w") as f:
        json.dump({"max_seq_length": 63, "do_lower_case": False}, f, indent=2)
    with open(os.path.join(HERE, "1_Dense", "config.json"), "w") as f:
        json.dump({"in_features": HIDDEN, "out_features": OUT, "bias": False,
                   "activation_function": "torch.nn.modules.linear.Identity", "use_residual": False}, f, indent=2)
    for root, _, files in os.walk(HERE):
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    # Keep only what a PyLate model needs (the saved README/model card is not written).
    print("saved:", sorted(os.path.relpath(os.path.join(r_, f), HERE) for r_, _, fs in os.walk(HERE) for f in fs))

    # Reload from disk, exactly as a user would.
    # PyLate 1.6 reads config_sentence_transformers.json in a loader hook that sentence-transformers
    # 6 no longer calls, so the saved settings are passed back explicitly (same values).
    with open(os.path.join(HERE, "config_sentence_transformers.json")) as f:
        st_cfg = json.load(f)
    saved = {k: st_cfg[k] for k in ("query_prefix", "document_prefix", "query_length", "document_length",
                                      "attend_to_expansion_tokens", "skiplist_words", "do_query_expansion")}
    model = pl_models.ColBERT(model_name_or_path=HERE, device="cpu", trust_remote_code=True, **saved)
    model.eval()
    assert model.query_prefix == "[Q] " and model.document_prefix == "[D] "
    assert model.query_length == QUERY_LENGTH and model.document_length == DOCUMENT_LENGTH
    assert model.do_query_expansion == EXPANSION and model.attend_to_expansion_tokens == (EXPANSION and ATTEND)
    q_emb = model.encode(QUERIES, is_query=True, batch_size=len(QUERIES))
    d_emb = model.encode(DOCS, is_query=False, batch_size=len(DOCS))
    scores = pl_scores.colbert_scores(
        torch.nn.utils.rnn.pad_sequence([torch.as_tensor(q) for q in q_emb], batch_first=True),
        torch.nn.utils.rnn.pad_sequence([torch.as_tensor(d) for d in d_emb], batch_first=True),
    ).numpy()

    # The same model with expansion tokens attended to (a setting some PyLate models use).
    model_att = pl_models.ColBERT(model_name_or_path=HERE, device="cpu", trust_remote_code=True,
                                  **dict(saved, do_query_expansion=True, attend_to_expansion_tokens=True))
    model_att.eval()
    q_att = model_att.encode(QUERIES, is_query=True, batch_size=len(QUERIES))

    # ids as PyLate feeds them (prefix inserted after [CLS]); kept tokens per document.
    def feats(texts, is_query, m):
        out = []
        for t in texts:
            f = m.tokenize([t], is_query=is_query)
            ids = f["input_ids"][0].tolist()
            keep = [True] * len(ids) if is_query else [i not in m.skiplist for i in ids]
            out.append((ids, f["attention_mask"][0].tolist(), keep))
        return out

    q_feats, d_feats = feats(QUERIES, True, model), feats(DOCS, False, model)

    # Independent recomputation from transformers' hidden states: projection, L2, skiplist, MaxSim.
    hf = model[0].auto_model
    W = load_file(os.path.join(HERE, "1_Dense", "model.safetensors"))
    (wname, Wd), = W.items()
    worst = 0.0
    def np_tokens(ids, mask, keep):
        with torch.no_grad():
            h = hf(input_ids=torch.tensor([ids]), attention_mask=torch.tensor([mask])).last_hidden_state[0].numpy().astype(np.float64)
        p = h @ Wd.astype(np.float64).T
        p = p / np.linalg.norm(p, axis=1, keepdims=True)
        return p[np.array(keep)]
    np_q = [np_tokens(*f) for f in q_feats]
    np_d = [np_tokens(*f) for f in d_feats]
    for a, b in zip(np_q + np_d, list(q_emb) + list(d_emb)):
        assert a.shape == b.shape, (a.shape, b.shape)
        worst = max(worst, float(np.abs(a - b).max()))
    assert not EXPANSION or all(len(q) == QUERY_LENGTH for q in q_emb), "queries must be expanded to query_length"
    assert all(len(q) == QUERY_LENGTH for q in q_att), "expanded queries have query_length tokens"
    np_scores = np.array([[float((q @ d.T).max(1).sum()) for d in np_d] for q in np_q])
    score_diff = float(np.abs(np_scores - scores).max())
    print("numpy vs pylate: tokens", worst, "scores", score_diff)
    assert worst < 1e-5 and score_diff < 1e-4

    vocab_json = json.loads(open(os.path.join(HERE, "tokenizer.json")).read())
    out = {
        "model": f"{NAME} + Dense {HIDDEN}->{OUT}, seed {SEED})",
        "reference": f"PyLate {pylate.__version__} / sentence-transformers {sentence_transformers.__version__} / "
                     f"transformers {transformers.__version__} / torch {torch.__version__} (CPU, float32)",
        "agreement": {"numpy_float64_vs_pylate_max_abs_diff_tokens": worst, "numpy_float64_vs_pylate_max_abs_diff_scores": score_diff},
        "dense_tensor": wname,
        "settings": {
            "query_prefix_id": model.query_prefix_id, "document_prefix_id": model.document_prefix_id,
            "mask_token_id": model.tokenizer.mask_token_id, "skiplist_ids": sorted(set(model.skiplist)),
            "query_length": QUERY_LENGTH, "document_length": DOCUMENT_LENGTH,
        },
        "tokens": "token vectors after projection and L2 normalisation, as PyLate's encode returns them "
                  "(queries: all query_length tokens incl. [MASK] expansion when expansion is on; documents: skiplist "
                  "and padding removed); tokens_attend_expansion: queries with expansion on and attended to",
        "queries": [{"text": t, "ids": f[0], "attention_mask": f[1], "tokens": r(e), "tokens_attend_expansion": r(a)}
                    for t, f, e, a in zip(QUERIES, q_feats, q_emb, q_att)],
        "documents": [{"text": t, "ids": f[0], "kept": f[2], "tokens": r(e)} for t, f, e in zip(DOCS, d_feats, d_emb)],
        "maxsim": r(scores),
    }
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        json.dump(out, f, indent=1)
    print("vocab", vocab, "settings", out["settings"])
    print("query lens", [len(q) for q in q_emb], "doc lens", [len(d) for d in d_emb])
    print("scores\n", scores)


if __name__ == "__main__":
    main()
