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


#: Blocks entering a shuffle are bundled to about this size first. Ray Data's sort shuffle
#: costs far more than linearly in the number of input blocks: exact dedup's 357k key rows
#: at 404x the benchmark corpus took 380 s as the 1,211 one-file blocks they were read in,
#: 46 s as 595 blocks, 15 s as 238 and 2.2 s as 6 (2 partitions each, 2 cores).
SHUFFLE_BLOCK_BYTES = 64 << 20
#: rows per bundled block for shuffles of key columns only (~100-200 bytes a row)
KEY_BLOCK_ROWS = 65536
#: bytes of rows per reduce partition for shuffles whose rows are wider than keys (the
#: near-dedup verification join carries a full MinHash signature, 2 KB, per row): a
#: partition count from rows alone would grow a reduce task's memory with the corpus
SHUFFLE_PARTITION_BYTES = 128 << 20


def partition_count(rows: int, rows_per_partition: int) -> int:
    return max(1, math.ceil(rows / max(1, rows_per_partition)))


def block_rows(n_rows: int, n_bytes: int, target: int = SHUFFLE_BLOCK_BYTES) -> int:
    """Rows per block that make blocks of about ``target`` bytes, for a dataset of
    ``n_rows`` rows holding ``n_bytes`` of content."""
    if n_rows <= 0 or n_bytes <= 0:
        return KEY_BLOCK_ROWS
    return max(1, int(target * n_rows / n_bytes))


def _totals(t: pa.Table) -> pa.Table:
    import pyarrow.compute as pc

    return pa.table({"rows": [t.num_rows],
                     "bytes": [int(pc.sum(t.column("size_bytes")).as_py() or 0)]})


def rows_and_bytes(ds: ray.data.Dataset) -> tuple[int, int]:
    """Rows and content bytes (``size_bytes``) of a dataset, one row per block back."""
    parts = ds.map_batches(_totals, batch_format="pyarrow", batch_size=None).take_all()
    return sum(p["rows"] for p in parts), sum(p["bytes"] for p in parts)


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
    maybe_die("shuffle", f"shuffle.{fn.__name__}")
    return fn(t.drop_columns(["_part"]), **fn_kwargs)


def partitioned(ds: ray.data.Dataset, key_cols: list[str], n_parts: int, fn,
                fn_kwargs: dict | None = None,
                batch_rows: int | None = KEY_BLOCK_ROWS) -> ray.data.Dataset:
    """``fn(partition_table, **fn_kwargs)`` on each hash partition of ``ds`` by
    ``key_cols``. Input blocks are bundled into blocks of ``batch_rows`` rows first
    (:data:`SHUFFLE_BLOCK_BYTES`; the default suits key columns). ``batch_rows`` None:
    ``ds``'s blocks as they are, for a ``ds`` read with ``Run.read(rows_per_task=...)``
    (whose maps a bundling map would fuse into: see there)."""
    return (ds.map_batches(_add_part, fn_kwargs={"key_cols": key_cols, "n_parts": n_parts},
                           batch_format="pyarrow", batch_size=batch_rows)
            .groupby("_part", num_partitions=n_parts)
            .map_groups(_apply, fn_kwargs={"fn": fn, "fn_kwargs": fn_kwargs or {}},
                        batch_format="pyarrow"))


def _anti_join_partition(t: pa.Table, attach: tuple = ()) -> pa.Table:
    """In one id partition: the rows (side 0) minus the ids of side 1, with the columns
    ``attach`` taken from side 2's row of the same id (null where there is none)."""
    import pyarrow.compute as pc

    side = t.column("_side")
    gone = t.filter(pc.equal(side, 1)).column("id").combine_chunks()
    rows = t.filter(pc.equal(side, 0)).drop_columns(["_side"])
    rows = rows.filter(pc.invert(pc.is_in(rows.column("id"), gone)))
    if not attach:
        return rows
    extra = t.filter(pc.equal(side, 2)).select(["id", *attach])
    return rows.drop_columns(list(attach)).join(extra, "id", join_type="left outer")


def _with_side(t: pa.Table, side: int, schema: pa.Schema) -> pa.Table:
    from operators.schema import conform

    t = conform(t, schema)
    return t.set_column(len(schema) - 1, "_side", pa.array([side] * t.num_rows, pa.int8()))


def anti_join(rows: ray.data.Dataset, gone: list[ray.data.Dataset], schema: pa.Schema,
              n_parts: int, batch_rows: int = KEY_BLOCK_ROWS,
              attach: tuple[ray.data.Dataset, pa.Schema] | None = None) -> ray.data.Dataset:
    """``rows`` (conformed to ``schema``) without the ids in any of ``gone``: one shuffle
    partitioned by id, so neither side is ever collected. ``batch_rows``: rows per
    bundled block (:func:`block_rows` when ``rows`` carry content). ``attach``: a dataset
    of ``id`` and more columns (its schema) joined onto the rows by id in the same shuffle
    (stored per-file attributes such as phase 2's scores)."""
    extra = [f for f in attach[1] if f.name != "id"] if attach else []
    full = pa.schema(list(schema) + extra + [pa.field("_side", pa.int8())])
    parts = [rows.map_batches(_with_side, fn_kwargs={"side": 0, "schema": full},
                              batch_format="pyarrow")]
    parts += [g.map_batches(_with_side, fn_kwargs={"side": 1, "schema": full},
                            batch_format="pyarrow") for g in gone]
    if attach:
        parts.append(attach[0].map_batches(_with_side, fn_kwargs={"side": 2, "schema": full},
                                           batch_format="pyarrow"))
    ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    return partitioned(ds, ["id"], n_parts, _anti_join_partition,
                       fn_kwargs={"attach": tuple(f.name for f in extra)},
                       batch_rows=batch_rows)
