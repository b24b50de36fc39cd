"""MinHash signatures and LSH bands for near-duplicate detection (BigCode's code setting).

Tokens are the maximal runs of ``[A-Za-z_0-9]`` (text split on ``[^A-Za-z_0-9]``, as
BigCode's near-dedup); shingles are ``ngram`` consecutive tokens (default 5). Each token
is hashed (FNV-1a over its bytes), each shingle gets a 64-bit hash (the rotated XOR of its
token hashes through the splitmix64 finaliser), and each of ``num_perm`` permutations is
the universal map ``a·h + b mod 2^64`` (``a`` odd) with the minimum kept per document.

The whole batch runs in one compiled pass over the Arrow content buffer (numba): no
per-document Python; a document's shingle hashes go to a reused buffer. A file with fewer
than ``ngram`` tokens has no signature and takes no part in near dedup.

The signature of a file is cut into ``bands`` × ``rows``; each band is hashed to 64 bits.
Two files share a bucket when a band hash matches. ``optimal_lsh`` picks bands and rows
for a Jaccard threshold by minimising the weighted false-positive and false-negative areas
under the S-curve, the optimum datasketch and text-dedup compute.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.base import RowOperator
from operators.kernels.minhash import bands_into, shingles_into, signatures_into
from operators.kernels.utf8 import content_buffers
from operators.schema import live_mask



@functools.lru_cache(maxsize=64)
def optimal_lsh(threshold: float, num_perm: int, fp_weight: float = 0.5,
                fn_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) with bands·rows <= num_perm minimising
    ``fp_weight·FP + fn_weight·FN``, where FP is the area under the candidate probability
    ``1-(1-s^r)^b`` below the threshold and FN the area above it that it misses."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    if num_perm < 2:
        raise ValueError(f"num_perm must be >= 2, got {num_perm}")
    lo = np.linspace(0.0, threshold, 2001)
    hi = np.linspace(threshold, 1.0, 2001)
    best, best_err = (1, 1), float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = np.trapezoid(1.0 - (1.0 - lo ** r) ** b, lo)
            fn = np.trapezoid((1.0 - hi ** r) ** b, hi)
            err = fp_weight * fp + fn_weight * fn
            if err < best_err - 1e-15:
                best, best_err = (b, r), err
    return best


def candidate_probability(s: float, bands: int, rows: int) -> float:
    """Probability that two files of Jaccard ``s`` share at least one band."""
    return 1.0 - (1.0 - s ** rows) ** bands


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 2 ** 63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2 ** 63, size=num_perm, dtype=np.uint64)
    return a, b




def signatures(content: pa.Array | pa.ChunkedArray, num_perm: int = 256, ngram: int = 5,
               seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """(``uint64[n, num_perm]`` minima, ``int64[n]`` token counts) for a string array."""
    if isinstance(content, pa.ChunkedArray):
        content = content.combine_chunks()
    a, b = permutations(num_perm, seed)
    out = np.full((len(content), num_perm), np.iinfo(np.uint64).max, dtype=np.uint64)
    n_tok = np.zeros(len(content), dtype=np.int64)
    if len(content):
        data, offsets = content_buffers(content)
        longest = int(np.max(np.diff(offsets)))
        buf = np.zeros(longest // 2 + 1, dtype=np.uint64)
        signatures_into(data, offsets, a, b, ngram, out, n_tok, buf)
    return out, n_tok


def shingle_hashes(content: pa.Array | pa.ChunkedArray, ngram: int, lower: bool = False
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Every document's ``ngram``-token shingle hashes (same tokens and hashing as the
    signatures; ``lower`` folds ASCII case): (``uint64`` hashes of all documents in order,
    ``int64[n + 1]`` offsets of each document's run)."""
    if isinstance(content, pa.ChunkedArray):
        content = content.combine_chunks()
    starts = np.zeros(len(content) + 1, dtype=np.int64)
    if not len(content):
        return np.zeros(0, dtype=np.uint64), starts
    data, offsets = content_buffers(content)
    # a token takes at least one byte and a separator: at most (bytes + 1) / 2 of them;
    # the kernel writes every entry it reports, so the buffer needs no zeroing, and the
    # caller gets a view of it (one batch's worth: a copy would cost more than it frees)
    out = np.empty(int(np.sum(np.diff(offsets) // 2 + 1)), dtype=np.uint64)
    shingles_into(data, offsets, ngram, lower, out, starts)
    return out[:starts[-1]], starts


def band_hashes(sigs: np.ndarray, bands: int, rows: int) -> np.ndarray:
    if bands * rows > sigs.shape[1]:
        raise ValueError(f"{bands} bands × {rows} rows exceed {sigs.shape[1]} permutations")
    out = np.zeros((sigs.shape[0], bands), dtype=np.uint64)
    bands_into(np.ascontiguousarray(sigs), bands, rows, out)
    return out


def estimate_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    return float(np.mean(sig_a == sig_b))


@dataclasses.dataclass
class MinHashLSH(RowOperator):
    """Adds ``lsh_bands`` (``list<uint64>``, one hash per band) to live rows with at least
    ``ngram`` tokens; other rows get null and are never near-duplicates. Near dedup
    (:mod:`flows.near_dedup`) then joins files that share a band into components and keeps
    one file of each.

    Args:
        threshold: the Jaccard similarity the bands are tuned for (StarCoder: 0.7).
        num_perm: permutations (256, as BigCode).
        ngram: tokens per shingle (5).
        seed: seeds the permutations; every worker must use the same.
        bands, rows: override the optimum of :func:`optimal_lsh`; give both or neither.
        verify: also store the full signature (``minhash``), and verify candidate pairs by
            it (estimated Jaccard >= threshold) before components: fewer false positives
            from band collisions, at the cost of storing the signatures and two joins.
        rows_per_partition: target rows per shuffle partition of near dedup (band rows,
            edges, ids).
        max_rounds: bound on the rounds of the connected-components stage.
    """

    name = stage = "near_dedup"
    reasons = ("near_duplicate",)
    writes = ("lsh_bands", "minhash")

    threshold: float = 0.7
    num_perm: int = 256
    ngram: int = 5
    seed: int = 42
    bands: int | None = None
    rows: int | None = None
    verify: bool = False
    rows_per_partition: int = 500_000
    max_rounds: int = 60

    def __post_init__(self):
        if self.ngram < 1:
            raise ValueError(f"ngram must be >= 1, got {self.ngram}")
        if (self.bands is None) != (self.rows is None):
            raise ValueError("give both bands and rows, or neither")
        if self.rows_per_partition < 1 or self.max_rounds < 1:
            raise ValueError("rows_per_partition and max_rounds must be >= 1")
        self.lsh = (self.bands, self.rows) if self.bands is not None else optimal_lsh(
            self.threshold, self.num_perm)
        if self.lsh[0] * self.lsh[1] > self.num_perm:
            raise ValueError(f"bands × rows = {self.lsh[0] * self.lsh[1]} > num_perm "
                             f"{self.num_perm}")

    def __call__(self, table: pa.Table) -> pa.Table:
        live = live_mask(table).to_numpy(zero_copy_only=False)
        content = pc.if_else(pa.array(live), pc.fill_null(table.column("content"), ""), "")
        sigs, n_tok = signatures(content, self.num_perm, self.ngram, self.seed)
        ok = live & (n_tok >= self.ngram)
        bands = band_hashes(sigs, *self.lsh)
        table = table.append_column("lsh_bands", _list_column(bands, ok))
        if self.verify:
            table = table.append_column("minhash", _list_column(sigs, ok))
        return table


def _list_column(matrix: np.ndarray, valid: np.ndarray) -> pa.Array:
    n, width = matrix.shape
    offsets = pa.array(np.arange(0, (n + 1) * width, width, dtype=np.int32))
    arr = pa.ListArray.from_arrays(offsets, pa.array(matrix.reshape(-1), pa.uint64()),
                                   mask=pa.array(~valid))
    return arr
