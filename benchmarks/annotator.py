"""The phase-2 annotator's encoder throughput, Ray-free: chunks/s and the share of the
machine's bfloat16 peak, through the flow's own forward-pass code
(:func:`operators.encoder_batches.embed_chunks`: length-sorted batches up to a token
budget, padding, pooling).

    python benchmarks/annotator.py [--model arctic-m|minilm|DIR] [--chunks 2048]
                                   [--batch-tokens 65536] [--peak-tflops T] [--out FILE]

It needs only torch and transformers (no Ray, no pyarrow, no network), so it runs as one
command on a GPU machine. ``arctic-m`` is an encoder with Snowflake arctic-embed-m's
configuration (BERT-base: 12 layers, hidden 768, 12 heads, FFN 3072, 512 positions,
vocabulary 30522) and random weights, built in memory: throughput does not depend on the
weights. On a GPU it runs in bfloat16 with SDPA attention; on a CPU in float32 weights
with bfloat16 matrix products (autocast, as the flow's CPU path) where the CPU has them.
``minilm`` is the embedded default's encoder (the packaged all-MiniLM-L6-v2; this one
needs the project installed).

Chunks are what the annotator feeds the encoder: a file's top, middle and bottom
512-token windows, shorter for short files; lengths are drawn from a fixed mix (70% full
512-token chunks, the rest uniform in 32..511), token ids at random. The figure of merit
is useful FLOPs (the encoder's matrix products on the chunks' real tokens, padding not
counted) per second over the bfloat16 peak: the data sheet's dense figure for known GPUs
(``--peak-tflops`` for others), and on every machine the rate of a large bfloat16 matrix
product measured in the same run. Goal on a GPU: >= 50% of peak.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: dense bfloat16 tensor-core peaks, TFLOPS, from the vendors' data sheets (SXM parts)
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0}
ARCTIC_M = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
            "intermediate_size": 3072, "max_position_embeddings": 512, "vocab_size": 30522}


def chunk_lengths(n: int, seed: int = 0, chunk: int = 512) -> list[int]:
    rng = random.Random(seed)
    return [chunk if rng.random() < 0.7 else rng.randint(32, chunk - 1) for _ in range(n)]


def flops(lengths: list[int], hidden: int, layers: int, ffn: int) -> float:
    """The encoder's matrix-product FLOPs on these chunks: per token and layer, the Q, K,
    V and output projections (8 h^2), the FFN (4 h f), and attention's two products over
    the chunk's length (4 s h)."""
    return float(sum(layers * s * (8 * hidden * hidden + 4 * hidden * ffn + 4 * s * hidden)
                     for s in lengths))


def matmul_tflops(device, autocast: bool, n: int = 4096, reps: int = 10) -> float:
    """The rate of an n x n bfloat16 matrix product on this device (best of ``reps``)."""
    import torch

    dtype = torch.bfloat16 if device.type == "cuda" or not autocast else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        for _ in range(reps):
            _sync(device)
            t = time.perf_counter()
            (a @ b).sum().item()
            _sync(device)
            best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e12


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def load(model: str, device, autocast: bool):
    """(model, pad id, pooling, normalise) for ``model``."""
    import torch

    cuda = device.type == "cuda"
    if model == "arctic-m":
        from transformers import BertConfig, BertModel

        torch.manual_seed(0)
        cfg = BertConfig(**ARCTIC_M, attn_implementation="sdpa")
        m = BertModel(cfg, add_pooling_layer=False)
        m = m.to(torch.bfloat16 if cuda else torch.float32).to(device).eval()
        return m, 0, "cls", True
    from operators.annotate import Encoder  # the flow's loading code (packaged, dir, s3)

    enc = Encoder("packaged:minilm" if model == "minilm" else model, device=device.type,
                  precision="bf16" if cuda or autocast else "fp32")
    return enc.model, enc.pad, enc.pooling, enc.normalise


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="arctic-m (default on a GPU), minilm "
                   "(default on a CPU), or an encoder directory")
    p.add_argument("--chunks", type=int, default=None, help="default: 4096 GPU, 256 CPU")
    p.add_argument("--batch-tokens", type=int, default=None,
                   help="padded tokens per forward pass; default 65536 GPU, 16384 CPU")
    p.add_argument("--peak-tflops", type=float, default=None)
    p.add_argument("--out", default=None, help="also write the result here (JSON)")
    args = p.parse_args(argv)

    import torch

    from operators.encoder_batches import embed_chunks

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    model_name = args.model or ("arctic-m" if cuda else "minilm")
    autocast = False
    if not cuda:
        try:
            from operators.annotate import cpu_has_bf16

            autocast = cpu_has_bf16()
        except ImportError:  # only torch here: try bfloat16 products anyway
            autocast = True
    n = args.chunks or (4096 if cuda else 256)
    batch_tokens = args.batch_tokens or (65536 if cuda else 16384)
    model, pad, pooling, normalise = load(model_name, device, autocast)
    cfg = model.config
    lengths = chunk_lengths(n)
    rng = random.Random(1)
    chunks = [[rng.randrange(1000, cfg.vocab_size) for _ in range(s)] for s in lengths]
    kw = dict(pad=pad, batch_tokens=batch_tokens, device=device, pooling=pooling,
              normalise=normalise, autocast=autocast)
    embed_chunks(model, chunks[:min(n, 64)], **kw)  # warm up (kernels, allocator)
    _sync(device)
    t = time.perf_counter()
    embed_chunks(model, chunks, **kw)
    _sync(device)
    secs = time.perf_counter() - t
    useful = flops(lengths, cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size)
    achieved = useful / secs / 1e12
    gemm = matmul_tflops(device, autocast)
    name = torch.cuda.get_device_name(0) if cuda else "cpu"
    peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    result = {
        "device": name, "model": model_name, "precision": "bf16" if cuda or autocast
        else "fp32", "attention": getattr(cfg, "_attn_implementation", None),
        "chunks": n, "tokens": sum(lengths), "batch_tokens": batch_tokens,
        "seconds": round(secs, 3), "chunks_per_s": round(n / secs, 1),
        "tokens_per_s": round(sum(lengths) / secs), "useful_tflops": round(achieved, 2),
        "gemm_tflops": round(gemm, 2), "share_of_gemm": round(achieved / gemm, 3),
        "peak_tflops": peak, "share_of_peak": round(achieved / peak, 3) if peak else None}
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
