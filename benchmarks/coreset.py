"""Phase 3's seed coreset: coverage against top-k by quality and random choices, and the
coreset stage's memory at 1x, 16x and 64x the candidates.

    python benchmarks/coreset.py [--fractions 0.05 0.2] [--out benchmarks/results/coreset.md]

Candidates: every file of the benchmark corpus (``benchmarks/common.base_corpus``: real
package sources at several versions, so near-duplicate clusters of very different sizes),
embedded as the flow embeds them (the embedded MiniLM encoder through
:class:`operators.annotate.QualityScorer`: the mean of a file's top, middle and bottom
chunk embeddings) and scored by the embedded demonstration head (run ``python
flows/arctic.py`` once to train it). Per language and k (a fraction of its files):

- coverage: the mean and max distance of every candidate to its nearest chosen file (lower
  covers better) for the two-round coreset (cells of ``--cell-rows``), the exact one-cell
  greedy, the top k by quality and k at random (the mean of 5 draws);
- memory: the coreset's two rounds run through the flow's own stage
  (:func:`flows.coreset.coreset_stage`, Ray Data, 2 CPUs) on the candidates and on 16
  noisy copies of them (each embedding moved by Gaussian noise and renormalised: 16x the
  rows, no exact duplicates), ``per_language`` fixed, with the largest worker heap
  sampled, and the largest cell's own working set (the greedy's arrays, traced in-process
  over the same cells).
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def embed_corpus(corpus: Path, max_files: int) -> pa.Table:
    from operators.annotate import QualityHead, QualityScorer
    from operators.tokens import CACHE_DIR

    head_path = os.path.join(CACHE_DIR, "heads", "demo-minilm-lintdoc-256.json")
    if not os.path.exists(head_path):
        raise SystemExit(f"no demonstration head at {head_path}: run python flows/arctic.py")
    with open(head_path) as f:
        head = QualityHead.from_json(f.read())
    scorer = QualityScorer(head, device="cpu", threads=os.cpu_count())
    parts = []
    for path in sorted(glob.glob(str(corpus / "data" / "*" / "*.parquet"))):
        t = pq.read_table(path, columns=["hexsha", "content", "lang"])
        t = t.filter(pa.compute.greater(pa.compute.utf8_length(t.column("content")), 0))
        parts.append(t.slice(0, max_files))
    files = pa.concat_tables(parts).rename_columns(["id", "content", "lang"])
    out = []
    for lo in range(0, files.num_rows, 64):
        out.append(scorer(files.slice(lo, 64), embeddings=True).drop_columns(["content"]))
    return pa.concat_tables(out)


def greedy_choice(t: pa.Table, k: int, cell_rows: int, seed: int = 0) -> set:
    """The flow's two rounds, in-process (the same functions as the stage)."""
    from operators.coreset import CELL, add_cells, pick

    n = t.num_rows
    cells = max(1, math.ceil(n / cell_rows))
    lang = t.column("lang")[0].as_py()
    first = add_cells(t, cells={lang: cells}, seed=seed)
    if cells == 1:
        return set(pick(first, quota={}, final={lang: k}).column("id").to_pylist())
    quota = {lang: min(1.0, 4.0 * k / n)}
    picked = []
    for c in sorted(set(first.column(CELL).to_pylist())):
        part = first.filter(pa.compute.equal(first.column(CELL), c))
        picked.append(pick(part, quota=quota, final={}))
    merged = pa.concat_tables(picked).drop_columns(["coreset_rank", "coreset_radius"])
    merged = add_cells(merged, cells={lang: 1}, seed=seed)
    return set(pick(merged, quota={}, final={lang: k}).column("id").to_pylist())


def coverage_of(t: pa.Table, chosen: set) -> tuple[float, float]:
    from operators.annotate import embedding_matrix
    from operators.coreset import nearest_distances

    emb = embedding_matrix(t.column("embedding"))
    mask = np.isin(np.array(t.column("id").to_pylist(), dtype=object), list(chosen))
    lang = t.column("lang")[0].as_py()
    d = nearest_distances(t, {lang: emb[mask]})
    return float(d.mean()), float(d.max())


def coverage_table(t: pa.Table, fractions: list[float], cell_rows: int) -> list[list]:
    rows = []
    for lang in sorted(set(t.column("lang").to_pylist())):
        sub = t.filter(pa.compute.equal(t.column("lang"), lang))
        n = sub.num_rows
        if n < 50:
            continue  # too few files for a choice of a few percent
        q = np.nan_to_num(sub.column("quality").to_numpy(zero_copy_only=False), nan=-1)
        ids = np.array(sub.column("id").to_pylist(), dtype=object)
        for f in fractions:
            k = max(2, math.ceil(f * n))
            res = {"coreset": coverage_of(sub, greedy_choice(sub, k, cell_rows)),
                   "exact greedy": coverage_of(sub, greedy_choice(sub, k, n + 1)),
                   "top quality": coverage_of(sub, set(ids[np.argsort(-q, kind="stable")[:k]]))}
            draws = [coverage_of(sub, set(np.random.default_rng(s).choice(ids, k, False)))
                     for s in range(5)]
            res["random"] = (float(np.mean([d[0] for d in draws])),
                             float(np.mean([d[1] for d in draws])))
            rows.append([lang, n, k] + [f"{res[c][0]:.3f} / {res[c][1]:.3f}" for c in (
                "coreset", "exact greedy", "top quality", "random")])
    return rows


def noisy_copies(t: pa.Table, copies: int, sigma: float = 0.02) -> pa.Table:
    from operators.annotate import embedding_array, embedding_matrix

    emb = embedding_matrix(t.column("embedding"))
    out = []
    for c in range(copies):
        rng = np.random.default_rng(c)
        e = emb if c == 0 else emb + sigma * rng.standard_normal(emb.shape).astype(np.float32)
        ids = [f"{i}:{c}" for i in t.column("id").to_pylist()]
        out.append(pa.table({"id": ids, "lang": t.column("lang"), "quality": t.column("quality"),
                             "embedding": embedding_array(e, np.ones(len(e), bool))}))
    return pa.concat_tables(out)


def largest_cell_mb(t: pa.Table, k: int, cell_rows: int) -> float:
    """The greedy's traced peak (MB) over round 1's cells and round 2, in-process."""
    from operators.coreset import CELL, add_cells, pick

    peak = 0.0
    for lang in sorted(set(t.column("lang").to_pylist())):
        sub = t.filter(pa.compute.equal(t.column("lang"), lang))
        n = sub.num_rows
        cells = max(1, math.ceil(n / cell_rows))
        first = add_cells(sub, cells={lang: cells}, seed=0)
        picked = []
        for c in sorted(set(first.column(CELL).to_pylist())):
            part = first.filter(pa.compute.equal(first.column(CELL), c))
            tracemalloc.start()
            picked.append(pick(part, quota={lang: min(1.0, 4.0 * k / n)}, final={}))
            peak = max(peak, tracemalloc.get_traced_memory()[1] / 2 ** 20)
            tracemalloc.stop()
        merged = add_cells(pa.concat_tables(picked).drop_columns(
            ["coreset_rank", "coreset_radius"]), cells={lang: 1}, seed=0)
        tracemalloc.start()
        pick(merged, quota={}, final={lang: k})
        peak = max(peak, tracemalloc.get_traced_memory()[1] / 2 ** 20)
        tracemalloc.stop()
    return peak


def stage_memory(t: pa.Table, k: int, cell_rows: int, work: Path) -> dict:
    """The flow's coreset stage on ``t`` as phase 2's selection; the largest worker heap."""
    import ray

    from common import PeakMemory, ray_worker
    from flows.coreset import coreset_stage
    from flows.runtime import Run
    from flows.settings import load_settings

    settings = load_settings(None, {"output": str(work), "phase3": {"coreset": {
        "enabled": True, "per_language": k, "cell_rows": cell_rows, "measure": False}}})
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work / "_work" / "selected", exist_ok=True)
    for i, lo in enumerate(range(0, t.num_rows, 4096)):  # files of bounded size, as a run's
        pq.write_table(t.slice(lo, 4096), work / "_work" / "selected" / f"part-{i:05d}.parquet")
    from flows.runtime import export_repo_path

    export_repo_path()  # the flow's worker environment (its allocator settings)
    ray.init(num_cpus=2, object_store_memory=1 << 30, include_dashboard=False,
             log_to_driver=False)
    try:
        run = Run(settings, str(work), log=lambda m: None)
        with PeakMemory(ray_worker) as mem:
            start = time.time()
            info = coreset_stage(run)
            wall = time.time() - start
    finally:
        ray.shutdown()
    return {"rows": t.num_rows, "cells": sum(info["round1_cells"].values()),
            "chosen": sum(info["chosen"].values()), "wall_s": round(wall, 1),
            "peak_worker_MB": mem.peak_mb}


def main(argv=None) -> int:
    from common import base_corpus

    p = argparse.ArgumentParser()
    p.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.2])
    p.add_argument("--cell-rows", type=int, default=400)
    p.add_argument("--max-files", type=int, default=3000, help="per language")
    p.add_argument("--memory-k", type=int, default=100)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/coreset.md"))
    p.add_argument("--work", default="/tmp/arctic-bench-coreset")
    args = p.parse_args(argv)
    work = Path(args.work)
    cache = work / "embeddings.parquet"
    os.makedirs(work, exist_ok=True)
    t0 = time.time()
    cached = cache.exists()
    if cached:
        t = pq.read_table(cache)
    else:
        t = embed_corpus(base_corpus(), args.max_files)
        pq.write_table(t, cache)
    embed = "embeddings cached by an earlier run" if cached else f"{time.time() - t0:.0f} s"
    t = t.filter(pa.compute.is_valid(t.column("embedding")))
    langs = {lang: n for lang, n in zip(*np.unique(t.column("lang").to_pylist(),
                                                   return_counts=True))}
    cov = coverage_table(t, args.fractions, args.cell_rows)
    mem = []
    for copies in (1, 16, 64):
        data = noisy_copies(t, copies)
        m = stage_memory(data, args.memory_k, args.cell_rows, work / f"stage-x{copies}")
        m["largest_cell_MB"] = round(largest_cell_mb(data, args.memory_k, args.cell_rows), 2)
        mem.append((copies, m))
    lines = [
        "# Phase-3 seed coreset: coverage and memory", "",
        f"`python benchmarks/coreset.py --fractions {' '.join(map(str, args.fractions))} "
        f"--cell-rows {args.cell_rows} --memory-k {args.memory_k}`; candidates: the benchmark "
        f"corpus's files ({', '.join(f'{k} {v}' for k, v in langs.items())}), embedded by "
        f"the embedded MiniLM encoder as phase 2 embeds them ({embed}), quality by "
        "the demonstration head. Euclidean distance between L2-normalised embeddings (0 to "
        "2).", "",
        "## Coverage: mean / max distance of every candidate to its nearest chosen file", "",
        "Lower covers better. The coreset runs the flow's two rounds (cells of "
        f"{args.cell_rows} rows, 4x oversampling, then one cell per language); the exact "
        "greedy runs on all candidates at once; random is the mean of 5 draws.", "",
        "| language | candidates | k | coreset | exact greedy | top quality | random |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += ["| " + " | ".join(str(x) for x in r) + " |" for r in cov]
    lines += ["", "## Memory at 1x, 16x and 64x the candidates", "",
              f"The flow's coreset stage (Ray Data, 2 CPUs), `per_language: {args.memory_k}`, "
              f"`cell_rows: {args.cell_rows}`; 16x, 64x: noisy copies of every embedding.", "",
              "| data | rows | round-1 cells | chosen | wall s | peak worker heap MB | "
              "largest cell's traced working set MB |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for copies, m in mem:
        lines.append(f"| {copies}x | {m['rows']:,} | {m['cells']} | {m['chosen']} | "
                     f"{m['wall_s']} | {m['peak_worker_MB']} | {m['largest_cell_MB']} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
