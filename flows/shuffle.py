"""Hash-partitioned shuffles: rows with equal keys meet in one partition, and a vectorised
operator runs on each whole partition. The partition count is derived from the data size,
so a partition's size, and a worker's memory, stays bounded as the corpus grows."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import ray.data
import xxhash

from flows.faults import maybe_die


def partition_count(rows: int, rows_per_partition: int) -> int:
    return max(1, math.ceil(rows / max(1, rows_per_partition)))


def hash_partition(table: pa.Table, key_cols: list[str], n_parts: int) -> pa.Array:
    """A partition number per row from its key columns (stable across processes)."""
    h = np.zeros(table.num_rows, dtype=np.uint64)
    for c in key_cols:
        col = table.column(c)
        if pa.types.is_integer(col.type):
            v = col.to_numpy(zero_copy_only=False).astype(np.uint64)
            v = (v ^ (v >> np.uint64(31))) * np.uint64(0x9E3779B97F4A7C15)
            v ^= v >> np.uint64(29)
        else:
            v = np.fromiter((xxhash.xxh3_64_intdigest(s.encode()) if s is not None else 0
                             for s in col.to_pylist()), dtype=np.uint64, count=table.num_rows)
        h = (h * np.uint64(0x100000001B3)) ^ v
    return pa.array((h % np.uint64(n_parts)).astype(np.int64))


def _add_part(t: pa.Table, key_cols, n_parts) -> pa.Table:
    return t.append_column("_part", hash_partition(t, key_cols, n_parts))


def _apply(t: pa.Table, fn, fn_kwargs) -> pa.Table:
    maybe_die("shuffle")
    return fn(t.drop_columns(["_part"]), **fn_kwargs)


def partitioned(ds: ray.data.Dataset, key_cols: list[str], n_parts: int, fn,
                fn_kwargs: dict | None = None) -> ray.data.Dataset:
    """``fn(partition_table, **fn_kwargs)`` on each hash partition of ``ds`` by
    ``key_cols``."""
    return (ds.map_batches(_add_part, fn_kwargs={"key_cols": key_cols, "n_parts": n_parts},
                           batch_format="pyarrow")
            .groupby("_part", num_partitions=n_parts)
            .map_groups(_apply, fn_kwargs={"fn": fn, "fn_kwargs": fn_kwargs or {}},
                        batch_format="pyarrow"))


def _anti_join_partition(t: pa.Table) -> pa.Table:
    """In one id partition: the rows (side 0) minus the ids of side 1."""
    import pyarrow.compute as pc

    side = t.column("_side")
    gone = t.filter(pc.equal(side, 1)).column("id").combine_chunks()
    rows = t.filter(pc.equal(side, 0)).drop_columns(["_side"])
    return rows.filter(pc.invert(pc.is_in(rows.column("id"), gone)))


def _with_side(t: pa.Table, side: int, schema: pa.Schema) -> pa.Table:
    from operators.schema import conform

    t = conform(t, schema)
    return t.set_column(len(schema) - 1, "_side", pa.array([side] * t.num_rows, pa.int8()))


def anti_join(rows: ray.data.Dataset, gone: list[ray.data.Dataset], schema: pa.Schema,
              n_parts: int) -> ray.data.Dataset:
    """``rows`` (conformed to ``schema``) without the ids in any of ``gone``: one shuffle
    partitioned by id, so neither side is ever collected."""
    full = pa.schema(list(schema) + [pa.field("_side", pa.int8())])
    parts = [rows.map_batches(_with_side, fn_kwargs={"side": 0, "schema": full},
                              batch_format="pyarrow")]
    parts += [g.map_batches(_with_side, fn_kwargs={"side": 1, "schema": full},
                            batch_format="pyarrow") for g in gone]
    ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    return partitioned(ds, ["id"], n_parts, _anti_join_partition)
