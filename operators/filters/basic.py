"""StarCoder's basic filters: long lines, long mean lines, little alphanumeric content."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.base import RowOperator
from operators.filters.content_checks import content as _content
from operators.kernels.text_scans import flag_sums


def line_stats(content: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Per-row maximum and mean line length in characters (lines split on ``\\n``)."""
    if isinstance(content, pa.ChunkedArray):
        content = content.combine_chunks()
    lines = pc.split_pattern(content, "\n")
    counts = pc.list_value_length(lines).to_numpy(zero_copy_only=False)
    flat = pc.utf8_length(pc.list_flatten(lines)).to_numpy(zero_copy_only=False)
    n = len(content)
    max_len = np.zeros(n, dtype=np.int64)
    mean_len = np.zeros(n, dtype=np.float64)
    nonempty = counts > 0
    if flat.size:
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        starts = offsets[nonempty]
        max_len[nonempty] = np.maximum.reduceat(flat, starts)
        mean_len[nonempty] = np.add.reduceat(flat, starts) / counts[nonempty]
    return max_len, mean_len


#: ASCII letters and digits: for an ASCII string, exactly what ``[\p{L}\p{N}]`` matches
_ASCII_ALNUM = np.zeros(256, dtype=np.uint8)
_ASCII_ALNUM[np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
                           dtype=np.uint8)] = 1


def alnum_fraction(content: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Fraction of characters that are letters or digits (Unicode, as ``str.isalnum``).

    ASCII letters and digits are counted with a byte lookup table over the Arrow data
    buffer; rows with other characters add their non-ASCII letters and digits with a
    regex whose matches are rare (the Unicode regex over every character was the cost)."""
    if isinstance(content, pa.ChunkedArray):
        content = content.combine_chunks()
    content = pc.fill_null(content, "").cast(pa.large_string())
    n = len(content)
    chars = pc.utf8_length(content).to_numpy(zero_copy_only=False).astype(np.float64)
    alnum = np.zeros(n, dtype=np.float64)
    offsets = np.frombuffer(content.buffers()[1], dtype=np.int64)[
        content.offset:content.offset + n + 1]
    if n and offsets[-1] > offsets[0]:
        alnum[:] = flag_sums(np.frombuffer(content.buffers()[2], dtype=np.uint8), offsets,
                             _ASCII_ALNUM)
    ascii_rows = pc.string_is_ascii(content).to_numpy(zero_copy_only=False)
    if not ascii_rows.all():  # add the non-ASCII letters and digits (rare matches: fast)
        other = np.flatnonzero(~ascii_rows)
        alnum[other] += pc.count_substring_regex(
            content.take(pa.array(other)), r"[^\x00-\x7F\P{L}]|[^\x00-\x7F\P{N}]"
        ).to_numpy(zero_copy_only=False)
    return np.divide(alnum, chars, out=np.zeros_like(chars), where=chars > 0)


#: StarCoder's thresholds for data-like extensions (used when such files are targeted):
#: JSON and YAML files of 50-5,000 characters with at least half alphabetic content.
STARCODER_EXTENSION_THRESHOLDS = {
    "json": {"min_chars": 50, "max_chars": 5000, "min_alnum_fraction": 0.5},
    "yaml": {"min_chars": 50, "max_chars": 5000, "min_alnum_fraction": 0.5},
    "yml": {"min_chars": 50, "max_chars": 5000, "min_alnum_fraction": 0.5},
}
_EXT_KEYS = ("max_line_length", "max_mean_line_length", "min_alnum_fraction", "min_chars",
             "max_chars")


@dataclasses.dataclass
class BasicFilters(RowOperator):
    """StarCoder's basic filters (RECIPE.md): long lines, long mean lines, little alphanumeric
    content. Defaults are StarCoder's: max line 1000 characters, mean line 100, alphanumeric
    fraction 0.25.

    ``per_extension`` overrides any of them for an extension (lowercase, no dot) and can add
    ``min_chars`` / ``max_chars`` bounds; the default is StarCoder's JSON/YAML table.
    """

    name = stage = "basic_filters"
    reasons = ("max_line_length", "mean_line_length", "alnum_fraction", "too_short",
               "too_long")
    scores = ("max_line_length", "mean_line_length", "alnum_fraction")

    max_line_length: int = 1000
    max_mean_line_length: float = 100.0
    min_alnum_fraction: float = 0.25
    per_extension: dict = dataclasses.field(
        default_factory=lambda: {k: dict(v) for k, v in STARCODER_EXTENSION_THRESHOLDS.items()})

    def __post_init__(self):
        if self.max_line_length <= 0 or self.max_mean_line_length <= 0:
            raise ValueError("line-length thresholds must be > 0")
        if not 0.0 <= self.min_alnum_fraction <= 1.0:
            raise ValueError(
                f"min_alnum_fraction must be in [0, 1], got {self.min_alnum_fraction}")
        per = {}
        for ext, th in dict(self.per_extension or {}).items():
            if not isinstance(th, dict):
                raise ValueError(f"per_extension[{ext!r}]: expected a mapping, got {th!r}")
            bad = sorted(set(th) - set(_EXT_KEYS))
            if bad:
                raise ValueError(f"per_extension[{ext!r}]: unknown threshold(s) {bad}; "
                                 f"known: {list(_EXT_KEYS)}")
            per[str(ext).lower().lstrip(".")] = {k: float(v) for k, v in th.items()}
        self.per_extension = per

    def _thresholds(self, table: pa.Table) -> dict[str, np.ndarray]:
        n = table.num_rows
        out = {"max_line_length": np.full(n, float(self.max_line_length)),
               "max_mean_line_length": np.full(n, float(self.max_mean_line_length)),
               "min_alnum_fraction": np.full(n, float(self.min_alnum_fraction)),
               "min_chars": np.zeros(n), "max_chars": np.full(n, np.inf)}
        if self.per_extension:
            exts = pc.utf8_lower(pc.fill_null(table.column("ext"), "")).to_pylist()
            for i, e in enumerate(exts):
                for k, v in self.per_extension.get(e.lstrip("."), {}).items():
                    out[k][i] = v
        return out

    def __call__(self, table: pa.Table) -> pa.Table:
        live = self.live(table)
        if not live.any():
            return table
        content = _content(table)
        max_len, mean_len = line_stats(content)
        frac = alnum_fraction(content)
        chars = pc.utf8_length(content).to_numpy(zero_copy_only=False)
        th = self._thresholds(table)
        rows = np.flatnonzero(live)
        for name, value in zip(self.scores, (max_len, mean_len, frac)):
            table = self.keep_score(table, name, value[rows], rows)
        checks = [
            (max_len > th["max_line_length"], "max_line_length", max_len),
            (mean_len > th["max_mean_line_length"], "mean_line_length", mean_len.round(1)),
            (frac < th["min_alnum_fraction"], "alnum_fraction", frac.round(3)),
            (chars < th["min_chars"], "too_short", chars),
            (chars > th["max_chars"], "too_long", chars),
        ]
        for mask, reason, value in checks:
            if (mask & live).any():
                table = self.remove(table, mask & live, reason, value.tolist())
        return table
