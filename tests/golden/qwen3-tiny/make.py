#!/usr/bin/env python3
"""Build the tiny random Qwen3 (embedding-style) checkpoint and its golden outputs.

Regenerate (from the repository root):
    python3 -m venv target/ref-venv
    target/ref-venv/bin/pip install torch transformers safetensors tokenizers numpy
    target/ref-venv/bin/python tests/golden/qwen3-tiny/make.py

Everything is derived from fixed seeds.  The reference outputs come from
Hugging Face transformers (Qwen3Model, eager attention, float32).  An
independent NumPy implementation (float64, written from the architecture
description) is run as well and must agree; if transformers is not
importable the NumPy implementation becomes the reference.
"""

import json
import math
import os

import numpy as np
from safetensors.numpy import save_file, load_file
from tokenizers import (Tokenizer, Regex, models, normalizers, pre_tokenizers, decoders,
                        trainers, processors, AddedToken)

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 20261202

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A search engine finds the documents that best match a query.",
    "Semantic search compares meaning instead of exact words.",
    "Offline tools keep working when the network is down.",
    "The index stores one vector for every chunk of text.",
    "Cosine similarity is the dot product of two unit vectors.",
    "We split long files into overlapping windows of tokens.",
    "A decoder model reads tokens from left to right and never looks ahead.",
    "Last-token pooling uses the hidden state of the final token.",
    "Grouped query attention shares each key and value head between several query heads.",
    "Please remember to water the plants on Tuesday and Friday.",
    "The library opens at nine in the morning and closes at six.",
    "She wrote a short letter to her brother who lives by the sea.",
    "Rain is expected this afternoon, so bring an umbrella.",
    "The recipe needs two eggs, a cup of flour and some milk.",
    "How do I reset my password if I forgot the old one?",
    "What is the capital city of France?",
    "Paris is the capital and largest city of France.",
    "Which planet is known as the red planet?",
    "Mars is called the red planet because of iron oxide on its surface.",
    "Given a question, retrieve passages that answer it.",
    "Instruct: Given a question, retrieve passages that answer it\nQuery: what is a vector?",
    "Let x = 3 and y = 4, then x^2 + y^2 = 25.",
    "The integral of 2x dx from 0 to 1 equals 1.",
    "If f(x) = sin(x) then f'(x) = cos(x).",
    "The sum 1 + 2 + ... + n equals n(n+1)/2.",
    "for i in range(10): print(i * i)",
    "def add(a, b):\n    return a + b",
    "fn main() { println!(\"hello, world\"); }",
    "let v: Vec<f32> = vec![0.0; 32];",
    "if (err != nil) { return err; }",
    "SELECT name, score FROM results WHERE score > 0.5 ORDER BY score;",
    "x = np.zeros((4, 8), dtype=np.float32)",
    "Version 1.2.3 was released on 2026-12-01.",
    "Error: file not found at /tmp/data/input.txt",
    "Numbers like 3.14159 and 2.71828 appear in many formulas.",
    "The cat sat on the mat while the dog slept by the door.",
    "Good tests compare the output of two independent implementations.",
    "Caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u2014 unicode text is split into bytes first.",
]

TEXTS = [
    "Paris is the capital and largest city of France.",
    "Mars is called the red planet because of iron oxide on its surface.",
    "Let x = 3 and y = 4, then x^2 + y^2 = 25.",
    "def add(a, b):\n    return a + b",
    "Hello world",
    "Caf\u00e9 r\u00e9sum\u00e9 \u2014 unicode",
    "fn main() { let v: Vec<f32> = vec![0.0; 32]; println!(\"{}\", v.len()); }",
    "A decoder model reads tokens from left to right and never looks ahead, "
    "so the last token is the only one that has seen the whole text; "
    "grouped query attention shares each key and value head between two query heads.",
]
QUERIES = [
    "What is the capital city of France?",
    "Which planet is known as the red planet?",
]
QUERY_PROMPT = "Instruct: Given a question, retrieve passages that answer it\nQuery:"

# Qwen2/Qwen3 pre-tokenisation regex (single digits, letters with optional leading non-letter, ...)
SPLIT_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
VOCAB_TARGET = 540
EOT = "<|endoftext|>"

CFG = dict(
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    intermediate_size=48,
    rope_theta=1000000.0,
    rms_norm_eps=1e-6,
)


def build_tokenizer():
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_TARGET,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    tok.add_special_tokens([AddedToken(s, special=True) for s in [EOT, "<|im_start|>", "<|im_end|>"]])
    eot = tok.token_to_id(EOT)
    # Like Qwen3-Embedding: every encoded input gets <|endoftext|> appended.
    tok.post_processor = processors.TemplateProcessing(
        single=f"$A:0 {EOT}:0",
        pair=f"$A:0 {EOT}:0 $B:1 {EOT}:1",
        special_tokens=[(EOT, eot)],
    )
    return tok


def make_weights(vocab_size, rng):
    H = CFG["hidden_size"]
    I = CFG["intermediate_size"]
    nq = CFG["num_attention_heads"]
    nkv = CFG["num_key_value_heads"]
    hd = CFG["head_dim"]

    def normal(shape, std):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    def nw(n):
        return (1.0 + 0.2 * rng.standard_normal(n)).astype(np.float32)

    w = {"embed_tokens.weight": normal((vocab_size, H), 0.5)}
    for i in range(CFG["num_hidden_layers"]):
        p = f"layers.{i}."
        w[p + "input_layernorm.weight"] = nw(H)
        w[p + "self_attn.q_proj.weight"] = normal((nq * hd, H), 0.3)
        w[p + "self_attn.k_proj.weight"] = normal((nkv * hd, H), 0.3)
        w[p + "self_attn.v_proj.weight"] = normal((nkv * hd, H), 0.3)
        w[p + "self_attn.o_proj.weight"] = normal((H, nq * hd), 0.2)
        w[p + "self_attn.q_norm.weight"] = nw(hd)
        w[p + "self_attn.k_norm.weight"] = nw(hd)
        w[p + "post_attention_layernorm.weight"] = nw(H)
        w[p + "mlp.gate_proj.weight"] = normal((I, H), 0.3)
        w[p + "mlp.up_proj.weight"] = normal((I, H), 0.3)
        w[p + "mlp.down_proj.weight"] = normal((H, I), 0.2)
    w["norm.weight"] = nw(H)
    return w


# ----------------------------------------------------------------------------
# Independent NumPy implementation (float64)

def np_rmsnorm(x, weight, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * weight


def np_rope(x, theta):
    # x: [heads, seq, d]; rotate-half convention (dims i and i + d/2 form a pair)
    d = x.shape[-1]
    seq = x.shape[-2]
    inv = 1.0 / (theta ** (np.arange(0, d, 2, dtype=np.float64) / d))
    ang = np.arange(seq, dtype=np.float64)[:, None] * inv[None, :]
    cos = np.cos(np.concatenate([ang, ang], -1))
    sin = np.sin(np.concatenate([ang, ang], -1))
    rot = np.concatenate([-x[..., d // 2:], x[..., : d // 2]], -1)
    return x * cos + rot * sin


def np_silu(x):
    return x / (1.0 + np.exp(-x))


def np_qwen3(ids, W, cfg):
    nq, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps = cfg["rms_norm_eps"]
    Wd = {k: v.astype(np.float64) for k, v in W.items()}
    n = len(ids)
    x = Wd["embed_tokens.weight"][ids]
    causal = np.tril(np.ones((n, n), dtype=bool))
    for l in range(cfg["num_hidden_layers"]):
        p = f"layers.{l}."
        h = np_rmsnorm(x, Wd[p + "input_layernorm.weight"], eps)
        q = (h @ Wd[p + "self_attn.q_proj.weight"].T).reshape(n, nq, hd)
        k = (h @ Wd[p + "self_attn.k_proj.weight"].T).reshape(n, nkv, hd)
        v = (h @ Wd[p + "self_attn.v_proj.weight"].T).reshape(n, nkv, hd)
        q = np_rmsnorm(q, Wd[p + "self_attn.q_norm.weight"], eps).transpose(1, 0, 2)  # per-head norm, before RoPE
        k = np_rmsnorm(k, Wd[p + "self_attn.k_norm.weight"], eps).transpose(1, 0, 2)
        v = v.transpose(1, 0, 2)
        q = np_rope(q, cfg["rope_theta"])
        k = np_rope(k, cfg["rope_theta"])
        group = nq // nkv
        outs = []
        for hq in range(nq):
            kv = hq // group  # query head hq uses kv head hq // (nq / nkv)
            s = q[hq] @ k[kv].T / math.sqrt(hd)
            s = np.where(causal, s, -np.inf)
            s = s - s.max(-1, keepdims=True)
            a = np.exp(s)
            a /= a.sum(-1, keepdims=True)
            outs.append(a @ v[kv])
        o = np.stack(outs, 1).reshape(n, nq * hd)
        x = x + o @ Wd[p + "self_attn.o_proj.weight"].T
        h = np_rmsnorm(x, Wd[p + "post_attention_layernorm.weight"], eps)
        m = np_silu(h @ Wd[p + "mlp.gate_proj.weight"].T) * (h @ Wd[p + "mlp.up_proj.weight"].T)
        x = x + m @ Wd[p + "mlp.down_proj.weight"].T
    return np_rmsnorm(x, Wd["norm.weight"], eps)


def last_pool_normalize(h):
    v = h[-1]
    return v / np.linalg.norm(v)


def r(x):
    return [r(y) for y in x] if isinstance(x, (list, np.ndarray)) and np.ndim(x) > 0 else float(f"{float(x):.8g}")


def main():
    tok = build_tokenizer()
    n_tok = tok.get_vocab_size(with_added_tokens=True)
    vocab_size = (n_tok + 7) // 8 * 8
    eot = tok.token_to_id(EOT)

    tok.save(os.path.join(HERE, "tokenizer.json"))
    with open(os.path.join(HERE, "tokenizer_config.json"), "w") as f:
        json.dump({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "clean_up_tokenization_spaces": False,
            "model_max_length": 128,
            "padding_side": "left",
            "model_input_names": ["input_ids", "attention_mask"],
            "eos_token": "<|im_end|>",
            "pad_token": EOT,
            "bos_token": None,
            "unk_token": None,
        }, f, indent=2)
    with open(os.path.join(HERE, "special_tokens_map.json"), "w") as f:
        json.dump({"eos_token": "<|im_end|>", "pad_token": EOT,
                   "additional_special_tokens": ["<|im_start|>", "<|im_end|>"]}, f, indent=2)

    config = {
        "architectures": ["Qwen3Model"],
        "model_type": "qwen3",
        "vocab_size": vocab_size,
        **CFG,
        "hidden_act": "silu",
        "max_position_embeddings": 128,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "rope_scaling": None,
        "use_sliding_window": False,
        "sliding_window": None,
        "max_window_layers": CFG["num_hidden_layers"],
        "tie_word_embeddings": True,
        "initializer_range": 0.02,
        "bos_token_id": eot,
        "eos_token_id": eot,
        "use_cache": False,
        "torch_dtype": "float32",
    }
    with open(os.path.join(HERE, "config.json"), "w") as f:
        json.dump(config, f, indent=2)

    with open(os.path.join(HERE, "modules.json"), "w") as f:
        json.dump([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ], f, indent=2)
    os.makedirs(os.path.join(HERE, "1_Pooling"), exist_ok=True)
    with open(os.path.join(HERE, "1_Pooling", "config.json"), "w") as f:
        json.dump({
            "word_embedding_dimension": CFG["hidden_size"],
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": False,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": True,
            "include_prompt": True,
        }, f, indent=2)
    # 2_Normalize has no files (and git keeps no empty folders), so no folder is written.
    with open(os.path.join(HERE, "sentence_bert_config.json"), "w") as f:
        json.dump({"max_seq_length": 128, "do_lower_case": False}, f, indent=2)
    with open(os.path.join(HERE, "config_sentence_transformers.json"), "w") as f:
        json.dump({
            "prompts": {"query": QUERY_PROMPT, "document": ""},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        }, f, indent=2)

    rng = np.random.default_rng(SEED)
    W = make_weights(vocab_size, rng)
    save_file(W, os.path.join(HERE, "model.safetensors"), metadata={"format": "pt"})
    os.chmod(os.path.join(HERE, "model.safetensors"), 0o644)
    W = load_file(os.path.join(HERE, "model.safetensors"))

    inputs = [("document", t, t) for t in TEXTS] + [("query", q, QUERY_PROMPT + q) for q in QUERIES]
    encs = [tok.encode(full) for _, _, full in inputs]
    for e in encs:
        assert e.ids[-1] == eot
    np_out = [np_qwen3(e.ids, W, CFG) for e in encs]

    reference = "numpy (own implementation)"
    ref_out = [o.astype(np.float32) for o in np_out]
    check = None
    try:
        import torch
        import transformers
        from transformers import AutoModel
    except ImportError:
        torch = None
    if torch is not None:
        model, info = AutoModel.from_pretrained(HERE, attn_implementation="eager",
                                                dtype=torch.float32, output_loading_info=True)
        bad = {k: v for k, v in info.items() if v}
        assert not bad, f"loading problems: {bad}"
        assert type(model).__name__ == "Qwen3Model"
        model.eval()
        sd = {k: v.numpy() for k, v in model.state_dict().items()}
        assert set(sd) == set(W), (set(sd) ^ set(W))
        assert all(np.array_equal(sd[k], W[k]) for k in W), "weights changed on load"
        model_sdpa = AutoModel.from_pretrained(HERE, attn_implementation="sdpa", dtype=torch.float32)
        model_sdpa.eval()
        ref_out = []
        sdpa_diff = 0.0
        with torch.no_grad():
            for e in encs:
                t = torch.tensor([e.ids])
                o = model(input_ids=t, attention_mask=torch.ones_like(t), use_cache=False).last_hidden_state[0].numpy()
                o2 = model_sdpa(input_ids=t, attention_mask=torch.ones_like(t), use_cache=False).last_hidden_state[0].numpy()
                sdpa_diff = max(sdpa_diff, float(np.abs(o - o2).max()))
                ref_out.append(o)
        diff_h = max(float(np.abs(a - b).max()) for a, b in zip(ref_out, np_out))
        diff_p = max(float(np.abs(last_pool_normalize(a.astype(np.float64)) - last_pool_normalize(b)).max())
                     for a, b in zip(ref_out, np_out))
        reference = f"transformers {transformers.__version__} / torch {torch.__version__} (Qwen3Model, eager attention, float32, CPU)"
        check = {
            "numpy_float64_vs_reference_max_abs_diff_hidden": diff_h,
            "numpy_float64_vs_reference_max_abs_diff_pooled": diff_p,
            "transformers_sdpa_vs_eager_max_abs_diff_hidden": sdpa_diff,
        }
        try:
            import sentence_transformers
            from sentence_transformers import SentenceTransformer
            st = SentenceTransformer(HERE, device="cpu")
            pooled_ref = np.stack([last_pool_normalize(h.astype(np.float64)) for h in ref_out])
            d = st.encode(TEXTS, convert_to_numpy=True, batch_size=len(TEXTS))
            qv = st.encode(QUERIES, prompt_name="query", convert_to_numpy=True, batch_size=len(QUERIES))
            check["sentence_transformers_batched_vs_reference_max_abs_diff_pooled"] = float(
                np.abs(np.concatenate([d, qv]) - pooled_ref).max())
            check["sentence_transformers_version"] = sentence_transformers.__version__
        except ImportError:
            pass
        print("check:", check)
        assert diff_h < 1e-4 and diff_p < 1e-5, "NumPy and transformers disagree"

    items = []
    for (kind, raw, full), e, h in zip(inputs, encs, ref_out):
        item = {"kind": kind, "text": full}
        if kind == "query":
            item["query"] = raw
            item["prompt_name"] = "query"
        item.update({
            "ids": e.ids,
            "tokens": e.tokens,
            "hidden": r(h),
            "pooled": r(last_pool_normalize(h.astype(np.float64)).astype(np.float32)),
        })
        items.append(item)
    out = {
        "model": "qwen3-tiny (random weights, seed %d)" % SEED,
        "reference": reference,
        "agreement": check,
        "pooling": "last token (the appended <|endoftext|>) of the final hidden states (after norm), then L2-normalised",
        "hidden": "last_hidden_state per token after the final norm, shape [n_tokens, 32], float32 rounded to 8 significant digits",
        "query_prompt": QUERY_PROMPT,
        "texts": items,
    }
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        json.dump(out, f, indent=1)
    print("vocab (tokenizer) =", n_tok, "config vocab_size =", vocab_size, "eot id =", eot)
    print("token counts:", [len(e.ids) for e in encs])


if __name__ == "__main__":
    main()
