#!/usr/bin/env python3
"""Writes a random Qwen3-shaped embedding checkpoint in Hugging Face layout, for measuring
`ponder model import` on real sizes (time and peak memory). The weights are random: the
vectors mean nothing. The tokenizer and sentence-transformers files are copied from
tests/golden/qwen3-tiny.

  scripts/synthetic-decoder.py OUT [--layers 28] [--hidden 1024] [--inter 3072]
      [--heads 16] [--kv-heads 8] [--head-dim 128] [--vocab 151669] [--shard-mb 0]

--shard-mb N splits the weights into files of about N MB with a
model.safetensors.index.json, as transformers does for large models. Needs numpy only.
"""
import argparse, json, pathlib, shutil
import numpy as np

p = argparse.ArgumentParser()
p.add_argument("out")
for name, default in [("layers", 28), ("hidden", 1024), ("inter", 3072), ("heads", 16),
                      ("kv-heads", 8), ("head-dim", 128), ("vocab", 151669), ("shard-mb", 0)]:
    p.add_argument(f"--{name}", type=int, default=default)
a = p.parse_args()
out = pathlib.Path(a.out)
out.mkdir(parents=True, exist_ok=True)
golden = pathlib.Path(__file__).resolve().parent.parent / "tests/golden/qwen3-tiny"
for f in golden.iterdir():
    if f.is_file() and f.suffix != ".py" and f.name not in ("model.safetensors", "expected.json", "config.json"):
        shutil.copy(f, out / f.name)
    elif f.is_dir():
        shutil.copytree(f, out / f.name, dirs_exist_ok=True)
cfg = json.loads((golden / "config.json").read_text())
cfg.update(vocab_size=a.vocab, hidden_size=a.hidden, num_hidden_layers=a.layers,
           num_attention_heads=a.heads, num_key_value_heads=a.kv_heads, head_dim=a.head_dim,
           intermediate_size=a.inter, max_position_embeddings=32768, max_window_layers=a.layers,
           torch_dtype="bfloat16")
(out / "config.json").write_text(json.dumps(cfg, indent=2))

rng = np.random.default_rng(7)
def bf16(shape, std):
    x = (rng.standard_normal(shape, dtype=np.float32) * std).view(np.uint32)
    return ((x + 0x8000) >> 16).astype(np.uint16)  # round to bfloat16 bits

h, i, hd = a.hidden, a.inter, a.head_dim
tensors = {"embed_tokens.weight": bf16((a.vocab, h), 0.02)}
for l in range(a.layers):
    pre = f"layers.{l}."
    tensors[pre + "input_layernorm.weight"] = bf16((h,), 0.1)
    tensors[pre + "post_attention_layernorm.weight"] = bf16((h,), 0.1)
    tensors[pre + "self_attn.q_proj.weight"] = bf16((a.heads * hd, h), 0.02)
    tensors[pre + "self_attn.k_proj.weight"] = bf16((a.kv_heads * hd, h), 0.02)
    tensors[pre + "self_attn.v_proj.weight"] = bf16((a.kv_heads * hd, h), 0.02)
    tensors[pre + "self_attn.o_proj.weight"] = bf16((h, a.heads * hd), 0.02)
    tensors[pre + "self_attn.q_norm.weight"] = bf16((hd,), 0.1)
    tensors[pre + "self_attn.k_norm.weight"] = bf16((hd,), 0.1)
    tensors[pre + "mlp.gate_proj.weight"] = bf16((i, h), 0.02)
    tensors[pre + "mlp.up_proj.weight"] = bf16((i, h), 0.02)
    tensors[pre + "mlp.down_proj.weight"] = bf16((h, i), 0.02)
tensors["norm.weight"] = bf16((h,), 0.1)

# Written by hand: safetensors' numpy writer has no bfloat16. Layout: u64 header length,
# JSON header (name -> dtype, shape, data_offsets), then the tensors' bytes.
def write(path, part):
    header, off = {}, 0
    for k, v in part.items():
        header[k] = {"dtype": "BF16", "shape": list(v.shape), "data_offsets": [off, off + v.nbytes]}
        off += v.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for v in part.values():
            f.write(np.ascontiguousarray(v).astype("<u2").tobytes())

if a.shard_mb <= 0:
    write(out / "model.safetensors", tensors)
else:
    shards, cur, size = [], {}, 0
    for k, v in tensors.items():
        if cur and size + v.nbytes > a.shard_mb * 1e6:
            shards.append(cur); cur, size = {}, 0
        cur[k] = v; size += v.nbytes
    shards.append(cur)
    weight_map = {}
    for n, part in enumerate(shards, 1):
        name = f"model-{n:05d}-of-{len(shards):05d}.safetensors"
        write(out / name, part)
        weight_map.update({k: name for k in part})
    total = sum(v.nbytes for v in tensors.values())
    (out / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
print(out, sum(v.size for v in tensors.values()) / 1e6, "M parameters")
