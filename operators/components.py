"""Connected components of the duplicate graph, by large-star / small-star rounds
(Kiveris et al., "Connected Components in MapReduce and Beyond", SoCC 2014).

Every function here works on one hash partition of a directed edge table ``(src, dst)``
in which each node's whole neighbourhood is present (the stage layer shuffles the edges
by ``src``), vectorised with Arrow: memory is one partition's edges, never the graph.

Nodes are strings that sort in keep-policy order (:func:`rank_key`), so the minimum of a
component, which the rounds converge to as the centre of a star, is the representative
to keep.

- large-star(u): m = min(Γ(u) ∪ {u}); for every neighbour v > u emit (v, m).
- small-star(u): m = min({v ∈ Γ(u): v < u} ∪ {u}); for every such v and u itself emit
  (v, m), self-loops dropped.

Repeating (large-star, small-star) until the edge set stops changing leaves one star per
component, centred on its minimum.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

EDGE_SCHEMA = pa.schema([("u", pa.string()), ("v", pa.string())])
STARS_WIDTH = 13


def rank_key(ids: pa.Array, permissive: np.ndarray, stars: pa.Array) -> pa.Array:
    """``<0|1><10^12 - stars, 13 digits>:<id>``: sorts permissive first, then by most
    stars, then by smallest id (the keep policy of :mod:`operators.dedup`)."""
    st = pc.fill_null(stars, -1).to_numpy(zero_copy_only=False)
    st = np.clip(st, -1, 10 ** 12 - 1)
    out = [f"{0 if p else 1}{10 ** 12 - s:0{STARS_WIDTH}d}:{i}"
           for i, p, s in zip(ids.to_pylist(), permissive, st)]
    return pa.array(out, pa.string())


def id_of(keys: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The file id inside a rank key."""
    return pc.utf8_slice_codeunits(keys, STARS_WIDTH + 2)


def normalise(u: pa.Array, v: pa.Array) -> pa.Table:
    """Undirected edges as (min, max), self-loops dropped."""
    lo = pc.min_element_wise(u, v)
    hi = pc.max_element_wise(u, v)
    t = pa.table({"u": lo, "v": hi})
    return t.filter(pc.not_equal(t.column("u"), t.column("v")))


def both_directions(edges: pa.Table) -> pa.Table:
    """(u, v) → (src=u, dst=v) and (src=v, dst=u)."""
    return pa.table({
        "src": pa.concat_arrays([_arr(edges.column("u")), _arr(edges.column("v"))]),
        "dst": pa.concat_arrays([_arr(edges.column("v")), _arr(edges.column("u"))]),
    })


def _arr(col):
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def distinct_directed(t: pa.Table) -> pa.Table:
    return t.group_by(["src", "dst"]).aggregate([])


def edge_checksum(edges: pa.Table) -> tuple[int, int]:
    """(count, order-independent 64-bit sum of edge hashes) of a distinct edge table."""
    total = 0
    for a, b in zip(edges.column("u").to_pylist(), edges.column("v").to_pylist()):
        total = (total + xxhash.xxh3_64_intdigest(f"{a}\0{b}".encode())) & ((1 << 64) - 1)
    return edges.num_rows, total


def _neighbour_min(directed: pa.Table) -> pa.Table:
    m = directed.group_by("src").aggregate([("dst", "min")])
    m = m.set_column(1, "m", pc.min_element_wise(m.column("dst_min"), m.column("src")))
    return directed.join(m, "src")


def large_star(directed: pa.Table) -> pa.Table:
    """One large-star step on a partition of distinct directed edges (every neighbour of
    each ``src`` present); returns undirected edges (u < v)."""
    if directed.num_rows == 0:
        return EDGE_SCHEMA.empty_table()
    j = _neighbour_min(directed)
    up = j.filter(pc.greater(j.column("dst"), j.column("src")))
    return normalise(_arr(up.column("dst")), _arr(up.column("m")))


def small_star(directed: pa.Table) -> pa.Table:
    """One small-star step on a partition of distinct directed edges."""
    down = directed.filter(pc.less(directed.column("dst"), directed.column("src")))
    if down.num_rows == 0:
        return EDGE_SCHEMA.empty_table()
    j = _neighbour_min(down)
    # emit (v, m) for every lower neighbour v, and (u, m) for the node itself
    members = pa.concat_arrays([_arr(j.column("dst")), _arr(j.column("src"))])
    centre = pa.concat_arrays([_arr(j.column("m")), _arr(j.column("m"))])
    return normalise(members, centre)


def star_edges_of_buckets(t: pa.Table, key_cols: list[str], node_col: str) -> pa.Table:
    """For each bucket (rows sharing ``key_cols``) of two or more nodes, the star edges
    from its smallest node to the others."""
    if t.num_rows == 0:
        return EDGE_SCHEMA.empty_table()
    t = t.sort_by([(c, "ascending") for c in key_cols] + [(node_col, "ascending")])
    same = np.ones(t.num_rows, dtype=bool)
    same[0] = False
    for c in key_cols:
        k = t.column(c).to_numpy(zero_copy_only=False)
        same[1:] &= k[1:] == k[:-1]
    first = np.flatnonzero(~same)
    owner = np.repeat(first, np.diff(np.append(first, t.num_rows)))
    nodes = t.column(node_col).combine_chunks()
    idx = np.flatnonzero(same)
    if idx.size == 0:
        return EDGE_SCHEMA.empty_table()
    e = normalise(nodes.take(pa.array(owner[idx])), nodes.take(pa.array(idx)))
    return e.group_by(["u", "v"]).aggregate([])


def components_local(edges: pa.Table, max_rounds: int = 100) -> pa.Table:
    """Reference: the rounds on one table (for tests and small graphs). Returns the final
    star edges (centre u, member v)."""
    prev = None
    cur = normalise(_arr(edges.column("u")), _arr(edges.column("v")))
    for _ in range(max_rounds):
        cur = distinct_directed(both_directions(cur))
        cur = large_star(cur)
        cur = small_star(distinct_directed(both_directions(cur)))
        cur = cur.group_by(["u", "v"]).aggregate([]).sort_by([("u", "ascending"),
                                                               ("v", "ascending")])
        chk = edge_checksum(cur)
        if chk == prev:
            return cur
        prev = chk
    raise RuntimeError(f"components did not converge in {max_rounds} rounds")


def explode_bands(table: pa.Table) -> pa.Table:
    """One row per (band, band hash, node) for files with LSH bands; ``node`` is the
    file's rank key."""
    from operators.dedup import is_permissive

    t = table.filter(pc.is_valid(table.column("lsh_bands")))
    if t.num_rows == 0:
        return pa.table({"band": pa.array([], pa.int32()), "hash": pa.array([], pa.uint64()),
                         "node": pa.array([], pa.string())})
    keys = rank_key(t.column("id"), is_permissive(t.column("license")), t.column("stars"))
    bands = t.column("lsh_bands").combine_chunks()
    n_bands = pc.list_value_length(bands).to_numpy(zero_copy_only=False)
    return pa.table({
        "band": pa.array(np.concatenate([np.arange(k, dtype=np.int32) for k in n_bands])),
        "hash": pc.list_flatten(bands),
        "node": keys.take(pa.array(np.repeat(np.arange(t.num_rows), n_bands))),
    })


def bucket_edges(t: pa.Table) -> pa.Table:
    """Star edges of the LSH buckets in a partition of exploded bands."""
    return star_edges_of_buckets(t, ["band", "hash"], "node")


def large_star_step(t: pa.Table) -> pa.Table:
    return large_star(distinct_directed(t))


def small_star_step(t: pa.Table) -> pa.Table:
    return small_star(distinct_directed(t))


def distinct_edges(t: pa.Table) -> pa.Table:
    return t.group_by(["u", "v"]).aggregate([]).select(["u", "v"])


def star_losers(edges: pa.Table) -> pa.Table:
    """From converged star edges (centre u, member v): each member is a duplicate of its
    centre. Returns (id, duplicate_of) as file ids."""
    return pa.table({"id": id_of(edges.column("v")), "duplicate_of": id_of(edges.column("u"))})


def attach_signature(t: pa.Table, key: str, out_col: str) -> pa.Table:
    """In one partition: edges (``_side`` 0) get the signature of their ``key`` node from
    the signature rows (``_side`` 1, columns ``node``, ``sig``)."""
    side = t.column("_side").to_numpy(zero_copy_only=False)
    edges = t.filter(pa.array(side == 0)).drop_columns(["_side", "node", "sig"])
    if out_col in edges.column_names:
        edges = edges.drop_columns([out_col])
    sigs = t.filter(pa.array(side == 1))
    pos = {k: i for i, k in enumerate(sigs.column("node").to_pylist())}
    idx = pa.array([pos.get(k) for k in edges.column(key).to_pylist()], pa.int64())
    return edges.append_column(out_col, sigs.column("sig").combine_chunks().take(idx))


def verify_edges(t: pa.Table, threshold: float) -> pa.Table:
    """Keep the candidate edges whose signatures agree on at least ``threshold`` of their
    positions (the MinHash estimate of Jaccard similarity)."""
    if t.num_rows == 0:
        return EDGE_SCHEMA.empty_table()
    a = t.column("sig_u").combine_chunks()
    b = t.column("sig_v").combine_chunks()
    width = len(a[0].values) if len(a) else 0
    av = a.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
    bv = b.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
    keep = (av == bv).mean(axis=1) >= threshold
    return t.select(["u", "v"]).filter(pa.array(keep))
