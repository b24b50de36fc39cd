"""Shuffle inputs: reads grouped into tasks of a set size, not fused into one task."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from flows.runtime import Run
from flows.settings import load_settings
from flows.shuffle import partitioned


def _run(tmp_path, n_files: int, rows: int) -> Run:
    out = tmp_path / "out"
    d = out / "_work" / "keys"
    d.mkdir(parents=True)
    for f in range(n_files):
        ids = [f"{f}-{i}" for i in range(rows)]
        pq.write_table(pa.table({"id": ids, "key": [i % 7 for i in range(rows)]}),
                       d / f"part-{f:03d}.parquet")
    return Run(load_settings(None, {"output": str(out)}), str(tmp_path), log=lambda m: None)


def _tasks(ds) -> int:
    """Tasks of the operator that reads the files, from the dataset's execution stats."""
    import re

    m = re.search(r"Operator \d+ [^:]*_read_parquet_files[^:]*: (\d+) tasks executed",
                  ds.stats())
    return int(m.group(1))


#: rows per partition (a lambda: cloudpickle sends it by value to workers that cannot
#: import this module)
_count = lambda t: pa.table({"key": [t.column("key")[0].as_py()], "n": [t.num_rows]})  # noqa


def test_grouped_read_bundles_files_per_task_not_the_whole_corpus(ray_local, tmp_path):
    """Ray Data fuses ``map_batches(batch_size=n)`` into the read's map and then bundles n
    *files* into one task (the whole corpus, for a shuffle's 65k-row bundles); a read
    with ``rows_per_task`` makes tasks of about that many rows instead."""
    run = _run(tmp_path, n_files=24, rows=100)
    fused = run.read("_work/keys").map_batches(lambda t: t, batch_size=1000,
                                               batch_format="pyarrow").materialize()
    assert _tasks(fused) == 1  # all 24 files in one task: the trap
    grouped = run.read("_work/keys", rows_per_task=400, total_rows=2400).materialize()
    assert _tasks(grouped) == 6
    sizes = sorted(b.num_rows for b in (ray_local.get(r) for r in
                                        grouped.to_arrow_refs()))
    assert len(sizes) == 6 and set(sizes) == {400}
    # a shuffle over the grouped read: the same partitions as over bundled blocks
    keyed = partitioned(run.read("_work/keys", rows_per_task=400, total_rows=2400),
                        ["key"], 3, _count, batch_rows=None).take_all()
    bundled = partitioned(run.read("_work/keys"), ["key"], 3, _count).take_all()
    assert sorted((r["key"], r["n"]) for r in keyed) == sorted(
        (r["key"], r["n"]) for r in bundled)
    assert sum(r["n"] for r in keyed) == 2400
