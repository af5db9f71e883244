#!/usr/bin/env python3
"""Build the tiny random ModernBERT checkpoint and its golden outputs.

Regenerate (from the repository root):
    python3 -m venv target/ref-venv
    target/ref-venv/bin/pip install torch transformers safetensors tokenizers numpy
    target/ref-venv/bin/python tests/golden/modernbert-tiny/make.py

Everything is derived from fixed seeds.  The reference outputs come from
Hugging Face transformers (ModernBertModel, eager attention, float32).  An
independent NumPy implementation (float64, written from the architecture
description) is run as well and must agree; if transformers is not
importable the NumPy implementation becomes the reference.
"""

import json
import math
import os
import sys

import numpy as np
from safetensors.numpy import save_file, load_file
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers, processors, AddedToken

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 20261201

# ----------------------------------------------------------------------------
# Tokenizer corpus (written for this golden; English prose plus math/code-ish text)
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A search engine finds the documents that best match a query.",
    "Semantic search compares meaning instead of exact words.",
    "Offline tools keep working when the network is down.",
    "The index stores one vector for every chunk of text.",
    "Cosine similarity is the dot product of two unit vectors.",
    "We split long files into overlapping windows of tokens.",
    "The model reads the sentence and returns a hidden state per token.",
    "Mean pooling averages the hidden states of all tokens.",
    "Rotary position embeddings rotate pairs of query and key features.",
    "Local attention only looks at nearby tokens, global attention sees everything.",
    "Please remember to water the plants on Tuesday and Friday.",
    "The library opens at nine in the morning and closes at six.",
    "She wrote a short letter to her brother who lives by the sea.",
    "Rain is expected this afternoon, so bring an umbrella.",
    "The recipe needs two eggs, a cup of flour and some milk.",
    "Our team meets every Monday to review open issues.",
    "How do I reset my password if I forgot the old one?",
    "What is the capital city of France?",
    "Paris is the capital and largest city of France.",
    "Let x = 3 and y = 4, then x^2 + y^2 = 25.",
    "The integral of 2x dx from 0 to 1 equals 1.",
    "If f(x) = sin(x) then f'(x) = cos(x).",
    "The sum 1 + 2 + ... + n equals n(n+1)/2.",
    "E = mc^2 relates energy and mass.",
    "for i in range(10): print(i * i)",
    "def add(a, b):\n    return a + b",
    "fn main() { println!(\"hello, world\"); }",
    "let v: Vec<f32> = vec![0.0; 32];",
    "if (err != nil) { return err; }",
    "SELECT name, score FROM results WHERE score > 0.5 ORDER BY score;",
    "x = np.zeros((4, 8), dtype=np.float32)",
    "The matrix W has shape [32, 96] and maps hidden to query, key and value.",
    "Version 1.2.3 was released on 2026-12-01.",
    "Call the function with --help to list every option.",
    "Error: file not found at /tmp/data/input.txt",
    "Tokens are small pieces of text such as words or parts of words.",
    "Numbers like 3.14159 and 2.71828 appear in many formulas.",
    "The cat sat on the mat while the dog slept by the door.",
    "Good tests compare the output of two independent implementations.",
]

# Texts for the golden outputs (8-62 tokens, all <= max_seq_length 64; the last one spans ~8 local windows).
TEXTS = [
    "What is the capital city of France?",
    "Semantic search compares meaning instead of exact words.",
    "Let x = 3 and y = 4, then x^2 + y^2 = 25.",
    "def add(a, b):\n    return a + b",
    "Hello world",
    "The library opens at nine and a quiet reader finds a book about rotary embeddings.",
    "fn main() { let v: Vec<f32> = vec![0.0; 32]; println!(\"{}\", v.len()); }",
    "Local attention only looks at nearby tokens, while global attention sees everything; "
    "we split long files into windows and compare them.",
]

VOCAB_TARGET = 520  # BPE vocabulary incl. the 256 byte symbols, before special tokens
SPECIALS = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]

CFG = dict(
    hidden_size=32,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=48,
    hidden_activation="gelu",
    max_position_embeddings=128,
    global_attn_every_n_layers=3,
    local_attention=8,
    global_rope_theta=160000.0,
    local_rope_theta=10000.0,
    norm_eps=1e-5,
    norm_bias=False,
    attention_bias=False,
    mlp_bias=False,
)


def build_tokenizer():
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_TARGET,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    # Special tokens are appended after the BPE vocabulary (as in the real
    # ModernBERT tokenizer, where they live at ids 50280+).
    tok.add_special_tokens([
        AddedToken("[UNK]", special=True),
        AddedToken("[CLS]", special=True),
        AddedToken("[SEP]", special=True),
        AddedToken("[PAD]", special=True),
        AddedToken("[MASK]", special=True, lstrip=True),
    ])
    cls_id = tok.token_to_id("[CLS]")
    sep_id = tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:0 [SEP]:0",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return tok


def make_weights(vocab_size, rng):
    H = CFG["hidden_size"]
    I = CFG["intermediate_size"]
    L = CFG["num_hidden_layers"]

    def normal(shape, std):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    def lnw():
        return (1.0 + 0.2 * rng.standard_normal(H)).astype(np.float32)

    w = {}
    w["embeddings.tok_embeddings.weight"] = normal((vocab_size, H), 0.5)
    w["embeddings.norm.weight"] = lnw()
    for i in range(L):
        p = f"layers.{i}."
        if i != 0:  # layer 0 has no attn_norm (Identity in HF)
            w[p + "attn_norm.weight"] = lnw()
        w[p + "attn.Wqkv.weight"] = normal((3 * H, H), 0.3)
        w[p + "attn.Wo.weight"] = normal((H, H), 0.25)
        w[p + "mlp_norm.weight"] = lnw()
        w[p + "mlp.Wi.weight"] = normal((2 * I, H), 0.3)
        w[p + "mlp.Wo.weight"] = normal((H, I), 0.2)
    w["final_norm.weight"] = lnw()
    return w


# ----------------------------------------------------------------------------
# Independent NumPy implementation (float64)

def np_layernorm(x, weight, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * weight


_erf = np.vectorize(math.erf)


def np_gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def np_rope(x, theta):
    # x: [heads, seq, d]; rotate-half convention (pairs i and i + d/2)
    d = x.shape[-1]
    seq = x.shape[-2]
    inv = 1.0 / (theta ** (np.arange(0, d, 2, dtype=np.float64) / d))
    ang = np.arange(seq, dtype=np.float64)[:, None] * inv[None, :]  # [seq, d/2]
    cos = np.cos(np.concatenate([ang, ang], -1))
    sin = np.sin(np.concatenate([ang, ang], -1))
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    rot = np.concatenate([-x2, x1], -1)
    return x * cos + rot * sin


def np_modernbert(ids, W, cfg):
    H = cfg["hidden_size"]
    nh = cfg["num_attention_heads"]
    hd = H // nh
    eps = cfg["norm_eps"]
    Wd = {k: v.astype(np.float64) for k, v in W.items()}
    n = len(ids)
    x = Wd["embeddings.tok_embeddings.weight"][ids]
    x = np_layernorm(x, Wd["embeddings.norm.weight"], eps)
    pos = np.arange(n)
    dist = np.abs(pos[:, None] - pos[None, :])
    half = cfg["local_attention"] // 2
    for l in range(cfg["num_hidden_layers"]):
        p = f"layers.{l}."
        is_global = (l % cfg["global_attn_every_n_layers"]) == 0
        theta = cfg["global_rope_theta"] if is_global else cfg["local_rope_theta"]
        h = x if l == 0 else np_layernorm(x, Wd[p + "attn_norm.weight"], eps)
        qkv = h @ Wd[p + "attn.Wqkv.weight"].T  # [n, 3H]
        q, k, v = (qkv[:, j * H:(j + 1) * H].reshape(n, nh, hd).transpose(1, 0, 2) for j in range(3))
        q = np_rope(q, theta)
        k = np_rope(k, theta)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(hd)  # [nh, n, n]
        if not is_global:
            s = np.where(dist[None] <= half, s, -np.inf)
        s = s - s.max(-1, keepdims=True)
        a = np.exp(s)
        a = a / a.sum(-1, keepdims=True)
        o = (a @ v).transpose(1, 0, 2).reshape(n, H)
        x = x + o @ Wd[p + "attn.Wo.weight"].T
        h = np_layernorm(x, Wd[p + "mlp_norm.weight"], eps)
        u = h @ Wd[p + "mlp.Wi.weight"].T
        inp, gate = u[:, : cfg["intermediate_size"]], u[:, cfg["intermediate_size"]:]
        x = x + (np_gelu(inp) * gate) @ Wd[p + "mlp.Wo.weight"].T
    return np_layernorm(x, Wd["final_norm.weight"], eps)


def mean_pool_normalize(h):
    v = h.mean(0)
    return v / np.linalg.norm(v)


def r(x):
    """float32 value -> JSON float with 8 significant digits."""
    return [r(y) for y in x] if isinstance(x, (list, np.ndarray)) and np.ndim(x) > 0 else float(f"{float(x):.8g}")


def main():
    tok = build_tokenizer()
    n_tok = tok.get_vocab_size(with_added_tokens=True)
    vocab_size = (n_tok + 7) // 8 * 8  # config vocab padded to a multiple of 8 (like the real model)
    ids = {s: tok.token_to_id(s) for s in SPECIALS}

    tok.save(os.path.join(HERE, "tokenizer.json"))
    tok_cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "clean_up_tokenization_spaces": True,
        "model_max_length": 64,
        "model_input_names": ["input_ids", "attention_mask"],
        "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
        "pad_token": "[PAD]", "mask_token": "[MASK]",
    }
    with open(os.path.join(HERE, "tokenizer_config.json"), "w") as f:
        json.dump(tok_cfg, f, indent=2)
    with open(os.path.join(HERE, "special_tokens_map.json"), "w") as f:
        json.dump({"unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                   "pad_token": "[PAD]", "mask_token": "[MASK]"}, f, indent=2)

    config = {
        "architectures": ["ModernBertModel"],
        "model_type": "modernbert",
        "vocab_size": vocab_size,
        **CFG,
        "initializer_range": 0.02,
        "initializer_cutoff_factor": 2.0,
        "norm_bias": False,
        "embedding_dropout": 0.0,
        "attention_dropout": 0.0,
        "mlp_dropout": 0.0,
        "pad_token_id": ids["[PAD]"],
        "bos_token_id": ids["[CLS]"],
        "eos_token_id": ids["[SEP]"],
        "cls_token_id": ids["[CLS]"],
        "sep_token_id": ids["[SEP]"],
        "classifier_pooling": "mean",
        "deterministic_flash_attn": False,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
    }
    with open(os.path.join(HERE, "config.json"), "w") as f:
        json.dump(config, f, indent=2)

    # sentence-transformers layout
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
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False,
            "include_prompt": True,
        }, f, indent=2)
    # 2_Normalize has no files (and git keeps no empty folders), so no folder is written.
    with open(os.path.join(HERE, "sentence_bert_config.json"), "w") as f:
        json.dump({"max_seq_length": 64, "do_lower_case": False}, f, indent=2)

    rng = np.random.default_rng(SEED)
    W = make_weights(vocab_size, rng)
    save_file(W, os.path.join(HERE, "model.safetensors"), metadata={"format": "pt"})
    os.chmod(os.path.join(HERE, "model.safetensors"), 0o644)
    W = load_file(os.path.join(HERE, "model.safetensors"))

    encs = [tok.encode(t) for t in TEXTS]
    np_out = [np_modernbert(e.ids, W, CFG) for e in encs]

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
        torch.manual_seed(0)
        model, info = AutoModel.from_pretrained(HERE, attn_implementation="eager",
                                                dtype=torch.float32, output_loading_info=True)
        bad = {k: v for k, v in info.items() if v}
        assert not bad, f"loading problems: {bad}"
        assert type(model).__name__ == "ModernBertModel"
        print("layer_types:", model.config.layer_types, "sliding_window:", model.config.sliding_window)
        model.eval()
        sd = {k: v.numpy() for k, v in model.state_dict().items()}
        assert set(sd) == set(W), (set(sd) ^ set(W))
        assert all(np.array_equal(sd[k], W[k]) for k in W), "weights changed on load"
        ref_out = []
        sdpa_diff = 0.0
        model_sdpa = AutoModel.from_pretrained(HERE, attn_implementation="sdpa", dtype=torch.float32)
        model_sdpa.eval()
        with torch.no_grad():
            for e in encs:
                t = torch.tensor([e.ids])
                o = model(input_ids=t, attention_mask=torch.ones_like(t)).last_hidden_state[0].numpy()
                o2 = model_sdpa(input_ids=t, attention_mask=torch.ones_like(t)).last_hidden_state[0].numpy()
                sdpa_diff = max(sdpa_diff, float(np.abs(o - o2).max()))
                ref_out.append(o)
        diff_h = max(float(np.abs(a - b).max()) for a, b in zip(ref_out, np_out))
        diff_p = max(float(np.abs(mean_pool_normalize(a.astype(np.float64)) - mean_pool_normalize(b)).max())
                     for a, b in zip(ref_out, np_out))
        reference = f"transformers {transformers.__version__} / torch {torch.__version__} (ModernBertModel, eager attention, float32, CPU)"
        check = {
            "numpy_float64_vs_reference_max_abs_diff_hidden": diff_h,
            "numpy_float64_vs_reference_max_abs_diff_pooled": diff_p,
            "transformers_sdpa_vs_eager_max_abs_diff_hidden": sdpa_diff,
        }
        try:
            from sentence_transformers import SentenceTransformer
            st = SentenceTransformer(HERE, device="cpu")
            emb = st.encode(TEXTS, convert_to_numpy=True, batch_size=len(TEXTS))
            pooled_ref = np.stack([mean_pool_normalize(h.astype(np.float64)) for h in ref_out])
            check["sentence_transformers_batched_vs_reference_max_abs_diff_pooled"] = float(np.abs(emb - pooled_ref).max())
            check["sentence_transformers_version"] = __import__("sentence_transformers").__version__
        except ImportError:
            pass
        print("check:", check)
        assert diff_h < 1e-4 and diff_p < 1e-5, "NumPy and transformers disagree"

    # Sanity: the sliding window must actually matter for the long text.
    long_ids = encs[-1].ids
    alt = dict(CFG, local_attention=10 ** 6)
    d_window = float(np.abs(np_modernbert(long_ids, W, alt) - np_out[-1]).max())
    print("effect of the sliding window on the long text (max abs diff):", d_window)
    assert d_window > 1e-2

    items = []
    for t, e, h in zip(TEXTS, encs, ref_out):
        items.append({
            "text": t,
            "ids": e.ids,
            "tokens": e.tokens,
            "hidden": r(h),
            "pooled": r(mean_pool_normalize(h.astype(np.float64)).astype(np.float32)),
        })
    out = {
        "model": "modernbert-tiny (random weights, seed %d)" % SEED,
        "reference": reference,
        "agreement": check,
        "pooling": "mean over all tokens (incl. [CLS]/[SEP]) of the final hidden states (after final_norm), then L2-normalised",
        "hidden": "last_hidden_state per token after final_norm, shape [n_tokens, 32], float32 rounded to 8 significant digits",
        "texts": items,
    }
    with open(os.path.join(HERE, "expected.json"), "w") as f:
        json.dump(out, f, indent=1)
    print("vocab (tokenizer) =", n_tok, "config vocab_size =", vocab_size, "special ids =", ids)
    print("token counts:", [len(e.ids) for e in encs])


if __name__ == "__main__":
    main()
