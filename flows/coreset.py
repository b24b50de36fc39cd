"""Phase 3's diversity seeds on Ray Data (``synth_coreset``, before ``synth_seeds``):
k-center greedy over phase 2's selection, per language, in two rounds of hash-partitioned
cells (:mod:`operators.coreset`), and its coverage against top-k by quality and random
choices of the same size.

The driver holds per-language counts, then the chosen ids of each comparison choice
(k per language, as the selection itself); embeddings stay in the cells. The result,
``_work/coreset/`` (``id``, ``lang``, ``quality``, ``coreset_rank``, ``coreset_radius``), is
joined onto the selection by id in the seeds stage.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flows.manifest import grouped_sums
from flows.phases import FILE_COLS
from flows.runtime import Run
from flows.shuffle import anti_join, block_rows, partition_count, partitioned
from operators.annotate import embedding_matrix
from operators.schema import FILE_SCHEMA, conform, mark_removed
from operators.coreset import (CELL, add_cells, coverage, merge_coverage, pick,
                               top_k_keys)

OUT = "_work/coreset"
COLS = ["id", "lang", "quality", "embedding"]


#: bytes of candidate rows per shuffle block (a row is mostly its embedding)
EMBEDDING_BLOCK_BYTES = 8 << 20


def _row_bytes(run: Run) -> int:
    emb = run.read("_work/selected").schema().base_schema.field("embedding").type
    return 2 * getattr(emb, "list_size", 768) + 96  # float16s, id, language, quality


def _live(t: pa.Table) -> pa.Table:
    return t.filter(pc.is_valid(t.column("embedding")))


def candidates(run: Run, rows_per_task: int | None = None, total_rows: int | None = None):
    """Phase 2's selection with its embeddings; ``rows_per_task``: read in tasks of about
    that many rows (the blocks a shuffle takes; see ``Run.read``)."""
    if "embedding" not in run.read("_work/selected").schema().names:
        raise ValueError("phase3.coreset needs the files' embeddings: phase 2 keeps them "
                         "when phase3.coreset is on; run phase 2 again")
    return run.read("_work/selected", columns=COLS, rows_per_task=rows_per_task,
                    total_rows=total_rows).map_batches(_live, batch_format="pyarrow")


def _chosen_embeddings(run: Run, ids: dict[str, set]) -> dict[str, np.ndarray]:
    """The embeddings of a choice (k per language: the size of the selection itself)."""
    want = pa.array(sorted(set().union(*ids.values())) if ids else [], pa.string())

    def keep(t: pa.Table) -> pa.Table:
        return t.filter(pc.is_in(t.column("id"), value_set=want)).select(["lang", "embedding"])

    out: dict[str, list] = {}
    for b in candidates(run).map_batches(keep, batch_format="pyarrow").iter_batches(
            batch_format="pyarrow", batch_size=None):
        for lang in set(b.column("lang").to_pylist()):
            rows = b.filter(pc.equal(b.column("lang"), lang))
            out.setdefault(lang, []).append(embedding_matrix(rows.column("embedding")))
    return {lang: np.concatenate(v) for lang, v in out.items()}


def _first_k(run: Run, k: dict[str, int], by: str) -> dict[str, set]:
    parts = candidates(run).map_batches(top_k_keys, fn_kwargs={"k": k, "by": by,
                                                                "seed": run.settings.seed},
                                        batch_format="pyarrow")
    rows: dict[str, list] = {}
    for r in parts.iter_rows():
        rows.setdefault(r["lang"], []).append((r["key"], r["id"]))
    return {lang: {i for _, i in sorted(v)[:k[lang]]} for lang, v in rows.items()}


def coreset_stage(run: Run) -> dict:
    c = run.settings.phase3.coreset
    seed = run.settings.seed
    counts = {r["lang"]: r["count()"] for r in grouped_sums(
        candidates(run).select_columns(["lang"]), ["lang"])}
    k = {lang: c.k(n) for lang, n in counts.items()}
    cells = {lang: max(1, math.ceil(n / c.cell_rows)) for lang, n in counts.items()}
    quota = {lang: min(1.0, c.overselect * k[lang] / counts[lang]) for lang in counts}
    # round 1: a language of a single cell picks its k there and then
    single = {lang: k[lang] for lang in counts if cells[lang] == 1}
    n_parts = partition_count(sum(cells.values()), 1)
    # rows carry an embedding (2 bytes a dimension): blocks of EMBEDDING_BLOCK_BYTES
    rows = block_rows(1, _row_bytes(run), EMBEDDING_BLOCK_BYTES)
    total = run.read("_work/selected", columns=["id"]).count()
    first = partitioned(candidates(run, rows, total).map_batches(
        add_cells, fn_kwargs={"cells": cells, "seed": seed}, batch_format="pyarrow"),
        [CELL], min(n_parts, 4096), pick, {"quota": quota, "final": single},
        batch_rows=None)
    run.write(first, "_work/coreset_round1")
    multi = {lang: k[lang] for lang in counts if cells[lang] > 1}
    picked = run.read("_work/coreset_round1")
    if multi:  # round 2: a language's round-1 picks meet in one cell
        one = {lang: 1 for lang in counts}
        again = picked.drop_columns(["coreset_rank", "coreset_radius"]).map_batches(
            _only, fn_kwargs={"langs": sorted(multi)}, batch_format="pyarrow").map_batches(
            add_cells, fn_kwargs={"cells": one, "seed": seed}, batch_format="pyarrow")
        second = partitioned(again, [CELL], len(multi), pick, {"quota": {}, "final": multi},
                             batch_rows=rows)
        kept = picked.map_batches(_only, fn_kwargs={"langs": sorted(single)},
                                  batch_format="pyarrow")
        run.write(kept.union(second).select_columns(
            ["id", "lang", "quality", "coreset_rank", "coreset_radius"]), OUT)
    else:
        run.write(picked.select_columns(["id", "lang", "quality", "coreset_rank",
                                         "coreset_radius"]), OUT)
    got = {r["lang"]: r["count()"] for r in grouped_sums(run.read(OUT, columns=["lang"]),
                                                        ["lang"])}
    info = {"candidates": counts, "k": k, "chosen": got, "round1_cells": cells,
            "overselect": c.overselect}
    if c.measure:
        info["coverage"] = measure(run, k)
    return info


def _only(t: pa.Table, langs: list[str]) -> pa.Table:
    return t.filter(pc.is_in(t.column("lang"), value_set=pa.array(langs, pa.string())))


def measure(run: Run, k: dict[str, int]) -> dict:
    """Mean and max distance of every candidate to the nearest chosen file, for the coreset,
    the top k by quality and k at random, per language."""
    chosen: dict[str, set] = {}
    for r in run.read(OUT, columns=["id", "lang"]).iter_rows():
        chosen.setdefault(r["lang"], set()).add(r["id"])
    choices = {"coreset": chosen, "top_quality": _first_k(run, k, "quality"),
               "random": _first_k(run, k, "random")}
    centres = {name: _chosen_embeddings(run, ids) for name, ids in choices.items()}
    parts = candidates(run).map_batches(coverage, fn_kwargs={"choices": centres},
                                        batch_format="pyarrow")
    return merge_coverage(list(parts.iter_rows()))


def _mark(t: pa.Table) -> pa.Table:
    outside = pc.is_null(t.column("coreset_rank"))
    return mark_removed(conform(t.drop_columns(["coreset_rank"]), FILE_SCHEMA), outside,
                        "synth_seeds", "not_in_coreset")


def in_coreset(run: Run, seeds):
    """The selection's files with those outside the coreset marked ``not_in_coreset``
    (left out as seeds, still in phase 2): one shuffle by id with the coreset attached."""
    n_rows = run.read("_work/selected", columns=["id"]).count()
    schema = pa.schema([FILE_SCHEMA.field(c) for c in FILE_COLS])
    attach = (run.read(OUT, columns=["id", "coreset_rank"]),
              pa.schema([("id", pa.string()), ("coreset_rank", pa.int32())]))
    # rows with their content: partitions sized as phase 3's other joins of file rows
    n_parts = partition_count(n_rows, run.settings.phase1.grouping.rows_per_partition)
    joined = anti_join(seeds, [], schema, n_parts, batch_rows=None, attach=attach)
    return joined.map_batches(_mark, batch_format="pyarrow")
