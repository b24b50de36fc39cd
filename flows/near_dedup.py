"""Near-duplicate removal at corpus scale, as Ray Data programs.

The MinHash signatures and LSH band hashes are computed in the ingest map (one pass over
the content, see :class:`operators.minhash.MinHashLSH`) and stored with each row. This
stage then never touches content:

1. bands → buckets: (band, hash, node) rows are shuffled by (band, hash); each bucket of
   two or more files emits star edges from its smallest node.
2. components: large-star / small-star rounds, each a shuffle of the edge list by source
   node, until the edge set's checksum stops changing (:mod:`operators.components`).
   Nodes are keep-policy rank keys, so each component converges to a star centred on the
   file to keep.
3. ledger: star members are shuffled by id together with the key columns and the exact
   dedup removals; members already removed as exact duplicates are left out, the rest go
   to ``removed/near_dedup/`` with ``reason=near_duplicate`` and ``duplicate_of``.

Every step is partitioned by hash into a number of partitions proportional to its rows,
so no worker holds more than a partition, and nothing is gathered on the driver but
per-block checksums.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from flows.runtime import Run
from flows.shuffle import (KEY_BLOCK_ROWS, SHUFFLE_PARTITION_BYTES, block_rows,
                           partition_count, partitioned)
from operators import components as cc
from operators.schema import LEDGER_SCHEMA, conform

JOIN_COLS = ["id", "repo", "path", "lang", "n_tokens", "size_bytes", "source"]


def _checksum(ds) -> tuple[int, int]:
    def part(t: pa.Table) -> pa.Table:
        n, s = cc.edge_checksum(t)
        return pa.table({"n": [n], "s": pa.array([s], pa.uint64())})

    n, s = 0, 0
    for r in ds.map_batches(part, batch_format="pyarrow", batch_size=None).iter_rows():
        n += r["n"]
        s = (s + int(r["s"])) & ((1 << 64) - 1)
    return n, s


def _ledger(t: pa.Table, stage: str = "near_dedup") -> pa.Table:
    """In one id partition: near-dup members (side 0) ⋈ their key columns (side 1), minus
    the files exact dedup removed (side 2)."""
    side = t.column("_side")
    members = t.filter(pc.equal(side, 0)).select(["id", "duplicate_of"])
    keys = t.filter(pc.equal(side, 1)).select(JOIN_COLS)
    gone = t.filter(pc.equal(side, 2)).column("id")
    removed = pc.is_in(members.column("id"), value_set=gone.combine_chunks())
    members = members.filter(pc.invert(removed))
    if members.num_rows == 0:
        return LEDGER_SCHEMA.empty_table()
    out = members.join(keys, "id", join_type="inner")
    out = out.append_column("stage", pa.array([stage] * out.num_rows, pa.string()))
    out = out.append_column("reason", pa.array(["near_duplicate"] * out.num_rows, pa.string()))
    return conform(out, LEDGER_SCHEMA)


def _side(t: pa.Table, side: int, schema: pa.Schema) -> pa.Table:
    t = conform(t, schema)
    return t.set_column(t.schema.get_field_index("_side"), "_side",
                        pa.array([side] * t.num_rows, pa.int8()))


JOIN_SCHEMA = pa.schema([("id", pa.string()), ("duplicate_of", pa.string()),
                         ("repo", pa.string()), ("path", pa.string()), ("lang", pa.string()),
                         ("n_tokens", pa.int64()), ("size_bytes", pa.int64()),
                         ("source", pa.string()), ("_side", pa.int8())])


SIG_JOIN = pa.schema([("u", pa.string()), ("v", pa.string()), ("sig_u", pa.list_(pa.uint64())),
                      ("node", pa.string()), ("sig", pa.list_(pa.uint64())),
                      ("_side", pa.int8())])


def _sig_rows(t: pa.Table) -> pa.Table:
    from operators.dedup import is_permissive

    t = t.filter(pc.is_valid(t.column("minhash")))
    keys = cc.rank_key(t.column("id"), is_permissive(t.column("license")), t.column("stars"))
    return pa.table({"node": keys, "sig": t.column("minhash")})


def _verified(run: Run, edges, live_rows: int, n_edges: int, source: str, s):
    """Candidate edges whose full signatures agree on >= threshold of positions: two
    partitioned joins (by u, then by v) of the edges with the signatures."""
    sigs = run.read(source, columns=["id", "license", "stars", "minhash"], live=True)
    sigs = sigs.map_batches(_sig_rows, batch_format="pyarrow").map_batches(
        _side, fn_kwargs={"side": 1, "schema": SIG_JOIN}, batch_format="pyarrow")
    # a row carries one signature, an edge row up to two: partitions and bundled blocks
    # sized in bytes, so that a task's memory does not grow with the corpus
    row_bytes = 8 * s.num_perm + 128
    n_parts = max(partition_count(live_rows + n_edges, s.rows_per_partition),
                  partition_count((live_rows + 2 * n_edges) * row_bytes,
                                  SHUFFLE_PARTITION_BYTES))
    batch_rows = block_rows(live_rows + n_edges, (live_rows + 2 * n_edges) * row_bytes)

    def step(ds, key, out_col):
        left = ds.map_batches(_side, fn_kwargs={"side": 0, "schema": SIG_JOIN},
                              batch_format="pyarrow")
        keyed = left.union(sigs).map_batches(_join_key, fn_kwargs={"key": key},
                                             batch_format="pyarrow")
        return partitioned(keyed, ["_k"], n_parts, _attach, {"key": key, "out_col": out_col},
                           batch_rows=batch_rows)

    with_u = step(edges, "u", "sig_u")
    with_uv = step(with_u, "v", "sig_v")
    return with_uv.map_batches(cc.verify_edges, fn_kwargs={"threshold": s.threshold},
                               batch_format="pyarrow")


def _join_key(t: pa.Table, key: str) -> pa.Table:
    side = pc.equal(t.column("_side"), 0)
    return t.append_column("_k", pc.if_else(side, t.column(key), t.column("node")))


def _attach(t: pa.Table, key: str, out_col: str) -> pa.Table:
    t = t.drop_columns(["_k"])
    out = cc.attach_signature(t, key, out_col)
    return out


def near_dedup(run: Run, live_rows: int, source: str = "_work/clean",
               exclude: tuple[str, ...] = ("removed/exact_dedup",),
               out: str = "removed/near_dedup", stage: str = "near_dedup",
               settings=None) -> dict:
    """Near-duplicate ledger of the live rows of ``source`` (with ``lsh_bands``, and
    ``minhash`` when verifying), leaving out the ids of the ``exclude`` ledgers; written
    to ``out`` with ``stage``. Settings: phase 1's ``near_dedup`` unless given."""
    s = settings or run.settings.phase1.near_dedup
    bands, rows = s.lsh
    info: dict = {"threshold": s.threshold, "num_perm": s.num_perm, "ngram": s.ngram,
                  "bands": bands, "rows": rows, "verify": s.verify}
    nodes = run.read(source, columns=["id", "license", "stars", "lsh_bands"], live=True,
                     rows_per_task=max(1, KEY_BLOCK_ROWS // bands), total_rows=live_rows)
    bands_rows = nodes.map_batches(cc.explode_bands, batch_format="pyarrow")
    n_parts = partition_count(live_rows * bands, s.rows_per_partition)
    run.detail(f"{stage}: {n_parts} partition(s) of band rows")
    edges = partitioned(bands_rows, ["band", "hash"], n_parts, cc.bucket_edges,
                        batch_rows=None)
    edges = partitioned(edges, ["u", "v"], n_parts, cc.distinct_edges).materialize()
    prev = _checksum(edges)
    info["candidate_edges"] = prev[0]
    run.detail(f"near_dedup: {prev[0]} candidate edges from LSH buckets")
    if s.verify and prev[0]:
        edges = _verified(run, edges, live_rows, prev[0], source, s).materialize()
        prev = _checksum(edges)
        info["verified_edges"] = prev[0]
        run.detail(f"near_dedup: {prev[0]} edges with estimated Jaccard >= {s.threshold}")
    rounds = 0
    while prev[0] > 0:
        rounds += 1
        if rounds > s.max_rounds:
            raise RuntimeError(f"near_dedup: components did not converge in {s.max_rounds} "
                               "rounds (raise phase1.near_dedup.max_rounds)")
        e_parts = partition_count(prev[0] * 2, s.rows_per_partition)
        step = edges.map_batches(cc.both_directions, batch_format="pyarrow")
        step = partitioned(step, ["src"], e_parts, cc.large_star_step)
        step = step.map_batches(cc.both_directions, batch_format="pyarrow")
        step = partitioned(step, ["src"], e_parts, cc.small_star_step)
        step = partitioned(step, ["u", "v"], e_parts, cc.distinct_edges).materialize()
        cur = _checksum(step)
        run.detail(f"near_dedup: round {rounds}: {cur[0]} edges")
        edges = step
        if cur == prev:
            break
        prev = cur
    info["rounds"] = rounds
    members = edges.map_batches(cc.star_losers, batch_format="pyarrow")
    keys = run.read(source, columns=JOIN_COLS, live=True)
    parts = [members.map_batches(_side, fn_kwargs={"side": 0, "schema": JOIN_SCHEMA},
                                 batch_format="pyarrow"),
             keys.map_batches(_side, fn_kwargs={"side": 1, "schema": JOIN_SCHEMA},
                              batch_format="pyarrow")]
    for rel in exclude:
        if run.exists(rel):
            gone = run.read(rel, columns=["id"], schema=LEDGER_SCHEMA)
            parts.append(gone.map_batches(_side, fn_kwargs={"side": 2, "schema": JOIN_SCHEMA},
                                          batch_format="pyarrow"))
    joined = parts[0].union(*parts[1:])
    ledger = partitioned(joined, ["id"], partition_count(live_rows, s.rows_per_partition),
                         _ledger, {"stage": stage})
    run.write(ledger, out)
    return info
