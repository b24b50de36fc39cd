"""Exact deduplication: a normalised content hash per file, and the keep policy that picks
one representative per group of duplicates.

The keep policy (BigCode's, which keeps repository context): a permissive license first,
then the most stars, then the smallest ``id``. It is a pure function of the rows, so the
same input gives the same representatives whatever the order rows arrive in.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from operators.base import RowOperator
from operators.schema import LEDGER_SCHEMA, conform, live_mask

#: SPDX ids (lowercase) treated as permissive by the keep policy.
PERMISSIVE_LICENSES = frozenset({
    "mit", "mit-0", "apache-2.0", "apache 2.0", "apache-1.1", "bsd-2-clause", "bsd-3-clause",
    "bsd-3-clause-clear", "bsd-4-clause", "0bsd", "isc", "unlicense", "cc0-1.0", "zlib",
    "psf-2.0", "python-2.0", "bsl-1.0", "wtfpl", "x11", "ncsa", "artistic-2.0", "upl-1.0",
    "postgresql", "bsd", "apache", "apache software license", "mit license",
    "bsd license", "python software foundation license", "isc license (iscl)",
})


def normalise_content(content: pa.ChunkedArray | pa.Array) -> pa.Array:
    """The text that exact dedup compares: CRLF/CR → LF, trailing whitespace stripped from
    every line, leading and trailing blank lines dropped."""
    text = pc.replace_substring(pc.fill_null(content, ""), "\r\n", "\n")
    text = pc.replace_substring(text, "\r", "\n")
    text = pc.replace_substring_regex(text, r"[ \t\f\v]+\n", "\n")
    return pc.utf8_trim_whitespace(text)


@dataclasses.dataclass
class ContentHasher(RowOperator):
    """Sets ``content_hash`` (xxh3-128 hex of the normalised content) on live rows, the key
    of exact dedup (``flows.phase1.exact_dedup``), which removes all but one file of each
    hash. ``rows_per_bucket``: target rows per bucket of that stage's shuffle of the key
    columns; the bucket count is derived from it."""

    name = stage = "exact_dedup"
    reasons = ("exact_duplicate",)
    writes = ("content_hash",)

    rows_per_bucket: int = 200_000

    def __post_init__(self):
        if self.rows_per_bucket < 1:
            raise ValueError("rows_per_bucket must be >= 1")

    def __call__(self, table: pa.Table) -> pa.Table:
        live = live_mask(table).to_numpy(zero_copy_only=False)
        norm = normalise_content(table.column("content")).to_pylist()
        hashes = [xxhash.xxh3_128_hexdigest(t.encode()) if ok else None
                  for t, ok in zip(norm, live)]
        col = pa.array(hashes, pa.string())
        return table.set_column(table.schema.get_field_index("content_hash"),
                                "content_hash", col)


def is_permissive(licenses: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """True where any of a row's comma-separated licenses is permissive."""
    out = []
    for value in licenses.to_pylist():
        names = [v.strip().lower() for v in value.split(",")] if value else []
        out.append(any(n in PERMISSIVE_LICENSES for n in names))
    return np.array(out, dtype=bool)


def rank_order(table: pa.Table, group_col: str) -> pa.Table:
    """Rows sorted by group, then by the keep policy (best first)."""
    ranked = table.append_column("_permissive", pa.array(is_permissive(table.column("license"))))
    ranked = ranked.append_column("_stars", pc.fill_null(table.column("stars"), -1))
    return ranked.sort_by([(group_col, "ascending"), ("_permissive", "descending"),
                           ("_stars", "descending"), ("id", "ascending")])


def choose_representatives(table: pa.Table, group_col: str, stage: str,
                           reason: str) -> pa.Table:
    """Ledger rows for every member of a group except its representative.

    ``table`` holds key columns (``id``, ``license``, ``stars``, ``group_col``, …) of whole
    groups; rows whose group is null are singletons and never removed.
    """
    table = table.filter(pc.is_valid(table.column(group_col)))
    if table.num_rows == 0:
        return LEDGER_SCHEMA.empty_table()
    ranked = rank_order(table, group_col)
    groups = ranked.column(group_col).to_numpy(zero_copy_only=False)
    first = np.ones(len(groups), dtype=bool)
    first[1:] = groups[1:] != groups[:-1]
    starts = np.flatnonzero(first)
    rep_index = np.repeat(starts, np.diff(np.append(starts, len(groups))))
    ids = ranked.column("id").to_numpy(zero_copy_only=False)
    losers = np.flatnonzero(~first)
    if losers.size == 0:
        return LEDGER_SCHEMA.empty_table()
    out = ranked.take(pa.array(losers))
    out = out.append_column("duplicate_of", pa.array(ids[rep_index[losers]], pa.string()))
    out = out.append_column("stage", pa.array([stage] * len(losers), pa.string()))
    out = out.append_column("reason", pa.array([reason] * len(losers), pa.string()))
    return conform(out, LEDGER_SCHEMA)
