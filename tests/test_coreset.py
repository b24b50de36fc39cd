"""Phase 3's diversity seeds: k-center greedy, the two-round coreset over hash cells, the
coverage measure, and the embedded run's seeds (every synthetic file comes from a coreset
file; the others are left out as seeds with their reason)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from operators.annotate import embedding_array, embedding_matrix
from operators.coreset import (CELL, CoresetSettings, add_cells, coverage, kcenter_greedy,
                               merge_coverage, nearest_distances, pick, top_k_keys)


def _clusters(sizes, dim=16, spread=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), dim))
    x = np.concatenate([c + spread * rng.normal(size=(n, dim)) for c, n in zip(centres, sizes)])
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return x, np.repeat(np.arange(len(sizes)), sizes)


def _table(x, lang="Python", quality=None):
    n = len(x)
    q = quality if quality is not None else np.linspace(1, 0, n)
    return pa.table({"id": [f"{lang}-{i}" for i in range(n)], "lang": [lang] * n,
                     "quality": pa.array(q, pa.float32()),
                     "embedding": embedding_array(x, np.ones(n, bool))})


def test_greedy_reaches_every_cluster_and_its_radius_falls():
    x, label = _clusters([2000, 400, 60, 9, 2])
    idx, radius = kcenter_greedy(x, 5, first=0)
    assert sorted(set(label[idx])) == [0, 1, 2, 3, 4]  # the 2-file cluster too
    assert np.isinf(radius[0]) and np.all(np.diff(radius[1:]) <= 1e-6)
    # the top 5 by a score that favours the big cluster stay in it
    assert set(label[:5]) == {0}
    # duplicates: the greedy stops instead of picking the same point again
    dup = np.repeat(x[:3], 4, axis=0)
    assert len(kcenter_greedy(dup, 10)[0]) == 3


def test_two_rounds_over_cells_keep_k_and_cover_like_the_exact_greedy():
    x, label = _clusters([3000, 700, 120, 30, 6, 3], seed=1)
    t = _table(x)
    k = 12
    cells = add_cells(t, cells={"Python": 6}, seed=3)
    assert len(set(cells.column(CELL).to_pylist())) == 6
    first = [pick(cells.filter(pa.compute.equal(cells.column(CELL), c)),
                  quota={"Python": 4 * k / t.num_rows}, final={})
             for c in sorted(set(cells.column(CELL).to_pylist()))]
    merged = add_cells(pa.concat_tables(first).drop_columns(["coreset_rank", "coreset_radius"]),
                       cells={"Python": 1}, seed=3)
    chosen = pick(merged, quota={}, final={"Python": k})
    assert chosen.num_rows == k and chosen.column("coreset_rank").to_pylist() == list(range(k))
    assert chosen.column("id")[0].as_py() == merged.sort_by(
        [("quality", "descending")]).column("id")[0].as_py()  # the best file first
    ids = {int(i.split("-")[1]) for i in chosen.column("id").to_pylist()}
    assert set(label[list(ids)]) == set(range(6))
    exact = pick(add_cells(t, cells={"Python": 1}, seed=3), quota={}, final={"Python": k})
    emb = embedding_matrix(t.column("embedding"))

    def worst(ids):
        rows = [int(i.split("-")[1]) for i in ids]
        return nearest_distances(t, {"Python": emb[rows]}).max()

    two, one = worst(chosen.column("id").to_pylist()), worst(exact.column("id").to_pylist())
    assert two <= 2 * one + 1e-6  # within the composable coreset's factor of the greedy
    top = worst([f"Python-{i}" for i in range(k)])  # the k best by quality
    assert two < top


def test_coverage_blocks_add_up_and_top_k_keys():
    x, _ = _clusters([50, 50], seed=2)
    t = pa.concat_tables([_table(x[:60], "Python"), _table(x[60:], "Go")])
    emb = embedding_matrix(t.column("embedding"))
    choice = {"a": {"Python": emb[:2], "Go": emb[60:61]}}
    whole = merge_coverage(coverage(t, choices=choice).to_pylist())
    halves = merge_coverage(coverage(t.slice(0, 70), choices=choice).to_pylist()
                            + coverage(t.slice(70), choices=choice).to_pylist())
    assert whole == halves
    assert whole["a"]["Python"]["candidates"] == 60 and whole["a"]["Go"]["candidates"] == 40
    d = nearest_distances(t, choice["a"])
    assert whole["a"]["Go"]["max"] == pytest.approx(d[60:].max(), abs=1e-6)
    keys = top_k_keys(t, k={"Python": 3, "Go": 2}, by="quality")
    assert keys.num_rows == 5 and keys.column("id").to_pylist()[:3] == [
        "Python-0", "Python-1", "Python-2"]
    rnd = top_k_keys(t, k={"Python": 3}, by="random", seed=1)
    assert rnd.num_rows == 3 and rnd.equals(top_k_keys(t, k={"Python": 3}, by="random", seed=1))
    s = CoresetSettings(fraction=0.25, min_per_language=0)
    assert (s.k(10), s.k(1), CoresetSettings(per_language=5).k(3)) == (3, 1, 3)
    assert (CoresetSettings(fraction=0.25).k(100), CoresetSettings(fraction=0.25).k(5)) == (
        25, 5)  # a small language keeps min_per_language (8) or all it has
    with pytest.raises(ValueError):
        CoresetSettings(fraction=0)


@pytest.mark.slow
def test_embedded_run_seeds_phase3_from_the_coreset(embedded_run):
    out, _, _ = embedded_run
    m = json.loads((out / "manifest.json").read_text())
    c = m["phase3"]["coreset"]
    for lang, n in c["candidates"].items():
        # half, rounded up; at least 8 (or all) for a small language
        assert c["k"][lang] == min(n, max(8, -(-n // 2)))
        assert 0 < c["chosen"][lang] <= c["k"][lang]  # fewer only for identical files
        for choice in ("coreset", "top_quality", "random"):
            assert c["coverage"][choice][lang]["candidates"] == n
    core = pq.read_table(out / "_work" / "coreset")
    chosen = set(core.column("id").to_pylist())
    seeds = pq.read_table(out / "_work" / "synth_seeds",
                          columns=["id", "removed_stage", "removed_reason"])
    outside = [r for r in seeds.to_pylist() if r["removed_reason"] == "not_in_coreset"]
    assert {r["id"] for r in outside}.isdisjoint(chosen)
    assert len(outside) == sum(c["candidates"].values()) - len(chosen)
    phase3 = pq.read_table(out / "phase3", columns=["seed_id", "judge_verdict"])
    assert phase3.num_rows and set(phase3.column("seed_id").to_pylist()) <= chosen
    # the judge saw every kept file; its verdicts are provenance
    assert set(phase3.column("judge_verdict").to_pylist()) <= {"pass", "unclear"}
    d = m["phase3"]["discriminator"]
    assert d["judged"] >= phase3.num_rows
    assert d["against_validation"]["valid_pass"] + d["against_validation"]["valid_fail"] + \
        d["against_validation"]["valid_unclear"] >= phase3.num_rows
    assert m["phase3"]["conservation"]["ok"]
