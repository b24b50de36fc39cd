"""Phase-2 annotator and selection: chunking, score averaging, threshold merging, budgets."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pytest

from operators.annotate import (Encoder, QualityHead, QualityScorer, average_by_file,
                                chunk_windows)
from operators.schema import FILE_SCHEMA, conform
from operators.select import (histogram, language_budgets, merge_histograms, select,
                              thresholds)


def test_chunk_windows_top_middle_bottom():
    assert chunk_windows(10, 510) == [(0, 10)]
    assert chunk_windows(510, 510) == [(0, 510)]
    assert chunk_windows(2000, 510) == [(0, 510), (745, 1255), (1490, 2000)]
    assert chunk_windows(600, 510) == [(0, 510), (45, 555), (90, 600)]  # overlapping
    assert chunk_windows(0, 510) == [(0, 0)]
    with pytest.raises(ValueError):
        chunk_windows(5, 0)


def test_average_by_file():
    scores = np.array([1.0, 0.0, 0.5, 0.2])
    owners = np.array([0, 0, 0, 2])
    out = average_by_file(scores, owners, 3)
    assert out[0] == pytest.approx(0.5) and np.isnan(out[1]) and out[2] == pytest.approx(0.2)


def test_encoder_chunks_and_embeds_with_the_packaged_minilm():
    enc = Encoder("packaged:minilm", device="cpu", chunk=64)
    long = "def f(x):\n    return x + 1\n" * 80
    chunks, owners = enc.chunks(["x = 1", long])
    assert owners.tolist() == [0, 1, 1, 1]
    assert all(c[0] == enc.cls and c[-1] == enc.sep for c in chunks)
    assert max(len(c) for c in chunks) == 64
    emb = enc.embed(chunks)
    assert emb.shape == (4, 384) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    # batching by length does not change an embedding
    alone = enc.embed([chunks[2]])
    assert np.allclose(alone[0], emb[2], atol=1e-4)


def test_scorer_averages_chunk_scores_and_skips_removed_rows():
    rng = np.random.default_rng(0)
    head = QualityHead(rng.normal(size=384), 0.1, "binary", "packaged:minilm", chunk=64)
    scorer = QualityScorer(head, device="cpu")
    long = "import os\n" + "def f(x):\n    return x + 1\n" * 80
    t = conform(pa.table({"id": ["a", "b", "c"],
                          "content": pa.array(["x = 1", long, None], pa.large_string()),
                          "removed_stage": [None, None, "x"]}), FILE_SCHEMA)
    q = scorer(t).column("quality").to_pylist()
    assert q[2] is None and 0 < q[0] < 1 and 0 < q[1] < 1
    chunks, _ = scorer.encoder.chunks([long])
    expect = head.score(scorer.encoder.embed(chunks)).mean()
    assert q[1] == pytest.approx(expect, abs=1e-5)
    # round trip of the head file
    back = QualityHead.from_json(head.to_json())
    assert np.allclose(back.weights, head.weights) and back.mode == "binary"
    with pytest.raises(ValueError, match="graded"):
        QualityHead(np.zeros(3), 0.0, "ranked")


def scored(n, lang, seed):
    rng = np.random.default_rng(seed)
    return pa.table({"lang": [lang] * n, "quality": rng.random(n).astype(np.float32),
                     "n_tokens": rng.integers(10, 2000, n)})


def test_thresholds_from_merged_block_histograms_meet_the_budget():
    blocks = [scored(3000, "Python", 1), scored(2000, "Python", 2), scored(1500, "Go", 3),
              pa.table({"lang": ["Go"], "quality": pa.array([None], pa.float32()),
                        "n_tokens": [5]})]
    bins = 64

    def hist_fn(ranges):  # what the flow does: one partial per block, merged
        return merge_histograms([histogram(b, ranges, bins) for b in blocks], bins)

    every = pa.concat_tables(blocks)
    per_lang = {lang: int(pa.compute.sum(every.filter(pa.compute.equal(
        every.column("lang"), lang)).column("n_tokens")).as_py()) for lang in ("Python", "Go")}
    budgets = language_budgets(per_lang, 0.25 * sum(per_lang.values()))
    assert budgets["Python"] / budgets["Go"] == pytest.approx(per_lang["Python"] / per_lang["Go"])
    cuts = thresholds(hist_fn, budgets, (0.0, 1.0), bins=bins, passes=3)
    chosen = select(every, {k: v["threshold"] for k, v in cuts.items()})
    for lang, budget in budgets.items():
        got = pa.compute.sum(chosen.filter(pa.compute.equal(chosen.column("lang"), lang))
                             .column("n_tokens")).as_py()
        assert abs(got - budget) <= budget * 0.01, (lang, got, budget)
        # and it is the top: nothing left out scores higher than what was taken
        rows = every.filter(pa.compute.equal(every.column("lang"), lang))
        q = rows.column("quality").to_numpy(zero_copy_only=False)
        assert np.nanmin(q[q >= cuts[lang]["threshold"]]) >= cuts[lang]["threshold"]


def test_a_language_with_too_few_tokens_gives_all_it_has():
    blocks = [scored(10, "Rust", 4)]

    def hist_fn(ranges):
        return merge_histograms([histogram(b, ranges, 16) for b in blocks], 16)

    cuts = thresholds(hist_fn, {"Rust": 1e9, "Dart": 0.0}, (0.0, 1.0), bins=16)
    assert select(blocks[0], {k: v["threshold"] for k, v in cuts.items()}).num_rows == 10
    assert cuts["Dart"]["threshold"] == float("inf")


def test_training_metrics_and_head_fit():
    from operators.annotator_train import f1_at, file_split, fit_head, roc_auc

    rng = np.random.default_rng(1)
    labels = rng.random(200) < 0.3
    scores = rng.random(200) + labels * 0.5
    brute = np.mean([(p > n) + 0.5 * (p == n) for p in scores[labels] for n in scores[~labels]])
    assert roc_auc(labels, scores) == pytest.approx(brute)
    assert roc_auc([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.5)
    assert f1_at([5, 4, 1, 0], [3.5, 2.0, 3.0, 0.0]) == pytest.approx(0.5)
    held = file_split(50, 0.2, 0)
    assert 0 < held.sum() < 50
    x = rng.normal(size=(300, 8)).astype(np.float32)
    y = (x[:, 0] + 0.3 * x[:, 1] > 0).astype(np.float32)
    w, b = fit_head(x, y, "binary")
    head = QualityHead(w, b, "binary")
    assert roc_auc(y > 0.5, head.score(x)) > 0.98
    grades = np.clip(2.5 + 2 * x[:, 2], 0, 5)
    wg, bg = fit_head(x, grades, "graded")
    pred = QualityHead(wg, bg, "graded").score(x)
    assert np.corrcoef(pred, grades)[0, 1] > 0.95
    with pytest.raises(ValueError):
        fit_head(x, np.ones(300, np.float32), "binary")


def test_annotator_benchmark_runs_ray_free_and_counts_flops(tmp_path):
    """benchmarks/annotator.py: the GPU check's script, here on a CPU with an encoder of
    arctic-embed-m's shape; its FLOP count is the encoder's matrix products."""
    import json
    import subprocess
    import sys

    from benchmarks.annotator import ARCTIC_M, flops

    h, f = ARCTIC_M["hidden_size"], ARCTIC_M["intermediate_size"]
    assert flops([512], h, 12, f) == 12 * 512 * (8 * h * h + 4 * h * f + 4 * 512 * h)
    assert round(flops([512], h, 12, f) / 1e9, 1) == 96.6  # GFLOPs per full chunk
    out = tmp_path / "r.json"
    code = ("import sys, builtins; real = builtins.__import__\n"
            "def guard(name, *a, **k):\n"
            "    if name.split('.')[0] in ('ray', 'pyarrow'):\n"
            "        raise ImportError('the benchmark must run without ' + name)\n"
            "    return real(name, *a, **k)\n"
            "builtins.__import__ = guard\n"
            "from benchmarks.annotator import main\n"
            f"sys.exit(main(['--model', 'arctic-m', '--chunks', '6', '--batch-tokens', "
            f"'2048', '--out', {str(out)!r}]))\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                   cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = json.loads(out.read_text())
    assert r["model"] == "arctic-m" and r["chunks"] == 6 and r["chunks_per_s"] > 0
    assert 0 < r["share_of_gemm"] < 2 and r["attention"] == "sdpa"
