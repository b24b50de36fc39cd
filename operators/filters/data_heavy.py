"""Data-heavy files: embedded tables and byte arrays inside code."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.base import RowOperator
from operators.kernels.text_scans import data_chars, word_digit_tables
from operators.kernels.utf8 import content_buffers


def data_fractions(content: pa.Array | pa.ChunkedArray, rows: np.ndarray) -> np.ndarray:
    """Per text at ``rows``: characters in data tokens (strings, numbers, hex literals and
    ``[]{},:;``, matched left to right) over non-whitespace characters, in one compiled pass
    over the batch's content buffer (:func:`operators.kernels.text_scans.data_chars`)."""
    rows = np.asarray(rows, dtype=np.int64)
    if not len(rows):
        return np.zeros(0)
    if isinstance(content, pa.ChunkedArray):
        content = content.combine_chunks()
    data, offsets = content_buffers(content)
    is_word, is_digit = word_digit_tables()
    found, non_ws = data_chars(data, offsets, rows, is_word, is_digit)
    return found / np.maximum(non_ws, 1)


@dataclasses.dataclass
class DataFileFilter(RowOperator):
    """Data-heavy files (embedded JSON/YAML/CSV-like tables, byte arrays): files over
    ``min_chars`` characters whose non-whitespace characters are more than
    ``max_data_fraction`` literals (strings, numbers) and data punctuation. StarCoder
    removes data files by extension and caps JSON/YAML at 5,000 characters (see the
    per-extension thresholds of :class:`operators.filters.basic.BasicFilters`); this
    catches the same content inside code files."""

    name = "data_heavy"
    stage = "code_filters"
    reasons = ("data_heavy",)
    scores = ("data_fraction",)

    min_chars: int = 10_000
    max_data_fraction: float = 0.7

    def __call__(self, table: pa.Table) -> pa.Table:
        content = table.column("content")
        chars = pc.utf8_length(pc.fill_null(content, "")).to_numpy(zero_copy_only=False)
        rows = self.live_rows(table)
        rows = rows[chars[rows] > self.min_chars]
        frac = data_fractions(content, rows)
        table = self.keep_score(table, "data_fraction", frac, rows)
        hit = frac > self.max_data_fraction
        return self.remove(table, rows[hit], "data_heavy", np.round(frac[hit], 3).tolist())
