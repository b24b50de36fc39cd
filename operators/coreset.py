"""Diversity seeds (WaveCoder's KCenterGreedy) at corpus scale.

k-center greedy (farthest-first traversal) picks points one at a time, each the candidate
farthest from those already picked, so the picked set covers the embedding space instead of
piling up where the commonest files are; its radius is within twice the optimum's
(Gonzalez, 1985). On a corpus it runs as a composable coreset in two rounds
(Indyk et al., 2014):

1. the candidates of a language are hashed into cells of at most ``cell_rows`` rows (a
   cell is a uniform sample of the language); each cell picks
   ``ceil(overselect * k * cell rows / language rows)`` points by the greedy, starting from
   its highest-quality file;
2. a language's picks (about ``overselect * k`` rows, independent of the corpus size) meet
   in one cell, where the greedy picks the final ``k``, again from the best file.

A worker holds one cell's embeddings: ``cell_rows x dim`` in round 1, ``overselect x k x
dim`` in round 2. Distances are Euclidean between L2-normalised file embeddings
(:func:`operators.annotate.embedding_array`). :func:`coverage` measures a choice: every
candidate's distance to its nearest chosen point, as the mean and the max per language.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from operators.annotate import embedding_matrix
from operators.prompt_builder import hash_unit

CELL = "_cell"


@dataclasses.dataclass
class CoresetSettings:
    """``phase3.coreset``: which phase-2 files seed phase 3."""

    enabled: bool = False
    #: seeds per language: ``fraction`` of the language's candidates (phase 2's
    #: selection), or exactly ``per_language`` when set (at most all of them)
    fraction: float = 0.5
    per_language: int | None = None
    #: a language with few candidates keeps at least this many (all, if it has fewer):
    #: a diversity choice among a handful of files would only starve the language
    min_per_language: int = 8
    #: round 1's cell size, and how many more points than its share a cell keeps
    cell_rows: int = 50_000
    overselect: float = 4.0
    #: measure coverage against top-k by quality and random choices of the same size
    measure: bool = True

    def __post_init__(self):
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError("fraction must be in (0, 1]")
        if self.per_language is not None and self.per_language < 1:
            raise ValueError("per_language must be >= 1")
        if self.min_per_language < 0:
            raise ValueError("min_per_language must be >= 0")
        if self.cell_rows < 2 or self.overselect < 1.0:
            raise ValueError("cell_rows >= 2 and overselect >= 1")

    def k(self, n: int) -> int:
        if self.per_language is not None:
            return min(n, self.per_language)
        return min(n, max(1, self.min_per_language, math.ceil(self.fraction * n)))


#: points closer than this to a centre are the same point (float16 embeddings resolve
#: about 1e-3)
SAME = 1e-3


def kcenter_greedy(emb: np.ndarray, k: int, first: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(indices in the order picked, each one's distance to the points picked before it)
    of ``k`` centres by farthest-first traversal from ``first``. Stops early when every
    remaining point coincides with a centre (within :data:`SAME`)."""
    n = emb.shape[0]
    k = min(k, n)
    if k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    sq = np.einsum("ij,ij->i", emb, emb)
    picked, radius = [first], [np.inf]

    def dist(c):
        d2 = sq + sq[c] - 2.0 * (emb @ emb[c])
        return np.sqrt(np.maximum(d2, 0.0))

    nearest = dist(first)
    nearest[first] = 0.0
    while len(picked) < k:
        i = int(np.argmax(nearest))
        if nearest[i] <= SAME:
            break
        picked.append(i)
        radius.append(float(nearest[i]))
        np.minimum(nearest, dist(i), out=nearest)
        nearest[i] = 0.0
    return np.array(picked, np.int64), np.array(radius, np.float32)


def _order(t: pa.Table) -> np.ndarray:
    """The best file first: highest quality, ties by id hash (deterministic)."""
    q = t.column("quality").to_numpy(zero_copy_only=False).astype(np.float64)
    q = np.nan_to_num(q, nan=-np.inf)
    return np.lexsort((hash_unit(t.column("id").to_pylist(), "coreset:order"), -q))


def add_cells(t: pa.Table, *, cells: dict[str, int], seed: int) -> pa.Table:
    """Round 1's cell of each candidate: its language and a hash of its id."""
    langs = t.column("lang").to_pylist()
    draw = hash_unit(t.column("id").to_pylist(), f"{seed}:coreset:cell")
    out = [f"{lang}\x1f{int(u * cells[lang])}" for lang, u in zip(langs, draw)]
    return t.append_column(CELL, pa.array(out, pa.string()))


def pick(t: pa.Table, *, quota: dict[str, float], final: dict[str, int]) -> pa.Table:
    """In one partition: per cell, its share of picks by the greedy. A cell of language L
    keeps ``final[L]`` points if it is L's only cell (round 2), else
    ``ceil(quota[L] * its rows)``. Adds ``coreset_rank`` and ``coreset_radius``."""
    outs = []
    cells = t.column(CELL)
    for cell in pc.unique(cells).to_pylist():
        part = t.filter(pc.equal(cells, cell))
        lang = cell.split("\x1f", 1)[0]
        k = final[lang] if lang in final else math.ceil(quota[lang] * part.num_rows)
        order = _order(part)
        part = part.take(pa.array(order))
        emb = embedding_matrix(part.column("embedding"))
        idx, radius = kcenter_greedy(emb, max(1, k), 0)
        chosen = part.take(pa.array(idx)).drop_columns([CELL])
        chosen = chosen.append_column("coreset_rank", pa.array(np.arange(len(idx)), pa.int32()))
        outs.append(chosen.append_column("coreset_radius", pa.array(radius, pa.float32())))
    return pa.concat_tables(outs) if outs else t.drop_columns([CELL]).slice(0, 0)


def nearest_distances(t: pa.Table, centres: dict[str, np.ndarray]) -> np.ndarray:
    """Each row's distance to the nearest centre of its language (NaN: none given)."""
    out = np.full(t.num_rows, np.nan)
    langs = np.array(t.column("lang").to_pylist(), dtype=object)
    emb = embedding_matrix(t.column("embedding"))
    for lang, c in centres.items():
        rows = np.flatnonzero(langs == lang)
        if not len(rows) or not len(c):
            continue
        x = emb[rows]
        for lo in range(0, len(rows), 4096):  # a block of distances at a time
            xb = x[lo:lo + 4096]
            d2 = (np.einsum("ij,ij->i", xb, xb)[:, None] + np.einsum("ij,ij->i", c, c)[None]
                  - 2.0 * xb @ c.T)
            out[rows[lo:lo + 4096]] = np.sqrt(np.maximum(d2, 0.0)).min(axis=1)
    return out


def coverage(t: pa.Table, *, choices: dict[str, dict[str, np.ndarray]]) -> pa.Table:
    """Per (choice, language) of a block: candidates, the sum and the max of their distance
    to the nearest chosen point (one row each; the driver adds the blocks up)."""
    rows = {"choice": [], "lang": [], "n": [], "sum": [], "max": []}
    langs = np.array(t.column("lang").to_pylist(), dtype=object)
    for name, centres in choices.items():
        d = nearest_distances(t, centres)
        for lang in centres:
            sel = (langs == lang) & ~np.isnan(d)
            if sel.any():
                rows["choice"].append(name)
                rows["lang"].append(lang)
                rows["n"].append(int(sel.sum()))
                rows["sum"].append(float(d[sel].sum()))
                rows["max"].append(float(d[sel].max()))
    return pa.table(rows, schema=pa.schema([("choice", pa.string()), ("lang", pa.string()),
                                            ("n", pa.int64()), ("sum", pa.float64()),
                                            ("max", pa.float64())]))


def merge_coverage(parts: list[dict]) -> dict:
    """{choice: {lang: {candidates, mean, max}}} from per-block rows."""
    acc: dict = {}
    for r in parts:
        a = acc.setdefault(r["choice"], {}).setdefault(r["lang"], [0, 0.0, 0.0])
        a[0] += r["n"]
        a[1] += r["sum"]
        a[2] = max(a[2], r["max"])
    return {c: {lang: {"candidates": n, "mean": round(s / n, 6) if n else None,
                       "max": round(m, 6)} for lang, (n, s, m) in sorted(v.items())}
            for c, v in sorted(acc.items())}


def top_k_keys(t: pa.Table, *, k: dict[str, int], by: str, seed: int = 0) -> pa.Table:
    """A block's first ``k[lang]`` rows per language by ``by``: ``quality`` (highest
    first) or ``random`` (a seeded hash of the id); (``lang``, ``id``, ``key``), so the
    driver merges ids and keys only, never embeddings."""
    ids = t.column("id").to_pylist()
    if by == "quality":
        key = -np.nan_to_num(t.column("quality").to_numpy(zero_copy_only=False)
                             .astype(np.float64), nan=-np.inf)
    else:
        key = hash_unit(ids, f"{seed}:coreset:random")
    out = pa.table({"lang": t.column("lang"), "id": t.column("id"),
                    "key": pa.array(key, pa.float64())})
    keep = []
    langs = np.array(t.column("lang").to_pylist(), dtype=object)
    for lang, n in k.items():
        rows = np.flatnonzero(langs == lang)
        keep.extend(rows[np.argsort(key[rows], kind="stable")[:n]].tolist())
    return out.take(pa.array(sorted(keep), pa.int64()))
