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

`hidden_expansion()` then adds what Reason-ModernColBERT's setting gives (query expansion on,
`attend_to_expansion_tokens` false: the `[MASK]` expansion tokens have attention mask 0, so they
are hidden as keys but still produce vectors), from the saved model reloaded with those two
settings: `queries[].ids_hidden_expansion` / `attention_mask_hidden_expansion` (what PyLate fed
the encoder), `queries[].tokens_hidden_expansion` (PyLate's `encode`) and
`maxsim_hidden_expansion` (`colbert_scores` against the documents). transformers combines the
padding mask with the sliding window (a key is visible if it is within the window and not
masked); with `local_attention` 8 the last expansion tokens of the short queries see no key at
all in the local layers, and PyTorch's SDPA (transformers' default attention, so PyLate's) gives
such a fully masked row a zero context (eager attention would average every value instead).
`hidden_expansion.agreement` records a NumPy float64 forward written from that rule against
PyLate's batched run. The earlier keys are left as `colbert.main()` wrote them.
"""

import importlib.util
import json
import os

import numpy as np
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

def np_forward_keys(ids, keys, W, cfg):
    """ModernBERT in float64 where every token attends only to the first `keys` tokens (within
    the window on local layers); a token with no visible key gets a zero context."""
    import math
    H, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    hd, eps, n = H // nh, cfg["norm_eps"], len(ids)
    Wd = {k: v.astype(np.float64) for k, v in W.items()}
    x = modernbert.np_layernorm(Wd["embeddings.tok_embeddings.weight"][ids], Wd["embeddings.norm.weight"], eps)
    pos = np.arange(n)
    in_window = np.abs(pos[:, None] - pos[None, :]) <= cfg["local_attention"] // 2
    is_key = np.broadcast_to(pos[None, :] < keys, (n, n))
    for l in range(cfg["num_hidden_layers"]):
        p = f"layers.{l}."
        is_global = l % cfg["global_attn_every_n_layers"] == 0
        theta = cfg["global_rope_theta"] if is_global else cfg["local_rope_theta"]
        visible = is_key if is_global else is_key & in_window
        h = x if l == 0 else modernbert.np_layernorm(x, Wd[p + "attn_norm.weight"], eps)
        qkv = h @ Wd[p + "attn.Wqkv.weight"].T
        q, k, v = (qkv[:, j * H:(j + 1) * H].reshape(n, nh, hd).transpose(1, 0, 2) for j in range(3))
        s = modernbert.np_rope(q, theta) @ modernbert.np_rope(k, theta).transpose(0, 2, 1) / math.sqrt(hd)
        s = np.where(visible[None], s, -np.inf)
        mx = s.max(-1, keepdims=True)
        a = np.where(visible[None], np.exp(s - np.where(np.isfinite(mx), mx, 0.0)), 0.0)
        total = a.sum(-1, keepdims=True)
        a = a / np.where(total > 0, total, 1.0)
        x = x + (a @ v).transpose(1, 0, 2).reshape(n, H) @ Wd[p + "attn.Wo.weight"].T
        h = modernbert.np_layernorm(x, Wd[p + "mlp_norm.weight"], eps)
        u = h @ Wd[p + "mlp.Wi.weight"].T
        i = cfg["intermediate_size"]
        x = x + (modernbert.np_gelu(u[:, :i]) * u[:, i:]) @ Wd[p + "mlp.Wo.weight"].T
    return modernbert.np_layernorm(x, Wd["final_norm.weight"], eps)


def hidden_expansion():
    """Adds the queries expanded with hidden expansion tokens (see the docstring) to expected.json."""
    import torch
    from safetensors.numpy import load_file
    from pylate import models as pl_models, scores as pl_scores

    with open(os.path.join(HERE, "config_sentence_transformers.json")) as f:
        st_cfg = json.load(f)
    saved = {k: st_cfg[k] for k in ("query_prefix", "document_prefix", "query_length", "document_length",
                                      "attend_to_expansion_tokens", "skiplist_words", "do_query_expansion")}
    saved.update(do_query_expansion=True, attend_to_expansion_tokens=False)
    model = pl_models.ColBERT(model_name_or_path=HERE, device="cpu", trust_remote_code=True, **saved)
    model.eval()
    assert model.do_query_expansion and not model.attend_to_expansion_tokens
    hf = model[0].auto_model
    assert hf.config._attn_implementation == "sdpa", hf.config._attn_implementation
    queries, docs = colbert.QUERIES, colbert.DOCS
    q_emb = model.encode(queries, is_query=True, batch_size=len(queries))
    d_emb = model.encode(docs, is_query=False, batch_size=len(docs))
    scores = pl_scores.colbert_scores(
        torch.nn.utils.rnn.pad_sequence([torch.as_tensor(q) for q in q_emb], batch_first=True),
        torch.nn.utils.rnn.pad_sequence([torch.as_tensor(d) for d in d_emb], batch_first=True),
    ).numpy()

    with open(os.path.join(HERE, "expected.json")) as f:
        out = json.load(f)
    # The documents do not depend on the query settings.
    for d, want in zip(d_emb, out["documents"]):
        assert np.abs(np.asarray(d) - np.asarray(want["tokens"])).max() < 1e-6

    cfg = modernbert.CFG
    W = load_file(os.path.join(HERE, "model.safetensors"))
    Wd = load_file(os.path.join(HERE, "1_Dense", "model.safetensors"))["linear.weight"].astype(np.float64)
    half = cfg["local_attention"] // 2
    worst, unseen = 0.0, 0
    for t, q, item in zip(queries, q_emb, out["queries"]):
        f = model.tokenize([t], is_query=True)
        ids, mask = f["input_ids"][0].tolist(), f["attention_mask"][0].tolist()
        keys = sum(mask)
        assert len(ids) == colbert.QUERY_LENGTH and mask == [1] * keys + [0] * (len(ids) - keys)
        unseen += sum(1 for i in range(keys, len(ids)) if i - (keys - 1) > half)
        p = np_forward_keys(ids, keys, W, cfg) @ Wd.T
        p = p / np.linalg.norm(p, axis=1, keepdims=True)
        assert p.shape == np.shape(q)
        worst = max(worst, float(np.abs(p - q).max()))
        item["ids_hidden_expansion"] = ids
        item["attention_mask_hidden_expansion"] = mask
        item["tokens_hidden_expansion"] = colbert.r(q)
    assert unseen > 0, "some expansion token must see no key in the local layers"
    differs = min(float(np.abs(np.asarray(item["tokens_hidden_expansion"]) - np.asarray(item["tokens_attend_expansion"])).max())
                  for item in out["queries"] if 0 in item["attention_mask_hidden_expansion"])
    assert differs > 1e-2, "hiding the expansion tokens must matter"
    print("hidden expansion: numpy vs pylate max abs diff", worst, "; tokens seeing no key in local layers:", unseen)
    assert worst < 1e-5
    out["hidden_expansion"] = {
        "settings": "do_query_expansion true, attend_to_expansion_tokens false (expansion tokens: attention mask 0)",
        "agreement": {"numpy_float64_vs_pylate_max_abs_diff_tokens": worst},
        "tokens_without_visible_keys_in_local_layers": unseen,
    }
    out["maxsim_hidden_expansion"] = colbert.r(scores)
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    colbert.main()
    hidden_expansion()
