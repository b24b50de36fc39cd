"""StarCoder's comment-to-code ratio filter."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.base import RowOperator
from operators.kernels.text_scans import FAMILIES, comment_chars
from operators.kernels.utf8 import class_table, content_buffers

#: each language's comment syntax family (:data:`operators.kernels.text_scans.FAMILIES`):
#: ``#`` lines (Python: and docstrings), ``//`` and ``/* */`` (PHP: and ``#``), SQL's
#: ``--``, CSS blocks, HTML's ``<!-- -->``; strings are skipped, so a "//" in a URL string
#: is not a comment
COMMENT_SYNTAX = {
    "Python": "python", "Ruby": "hash", "Shell": "hash", "PHP": "php", "SQL": "sql",
    "Java": "c", "C++": "c", "C": "c", "JavaScript": "c", "C#": "c", "Go": "c",
    "TypeScript": "c", "Rust": "c", "Scala": "c", "Kotlin": "c", "Dart": "c", "Swift": "c",
    "CSS": "css", "HTML": "html",
}


def comment_fractions(content: pa.Array | pa.ChunkedArray, rows: np.ndarray,
                      langs: list[str], min_lines: int) -> tuple[np.ndarray, np.ndarray]:
    """(characters in comments over all characters, non-blank lines up to ``min_lines``) of
    the texts at ``rows`` (languages ``langs``, each in :data:`COMMENT_SYNTAX`), in one
    compiled pass over the batch's content buffer; a fraction is left at 0 where the line
    count is short of ``min_lines``, and is NaN for an empty text."""
    rows = np.asarray(rows, dtype=np.int64)
    if not len(rows):
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    if isinstance(content, pa.ChunkedArray):
        content = content.combine_chunks()
    data, offsets = content_buffers(content)
    families = np.array([FAMILIES.index(COMMENT_SYNTAX[lang]) for lang in langs],
                        dtype=np.int64)
    found, chars, lines = comment_chars(data, offsets, rows, families,
                                        class_table(r"\s+"), min_lines)
    return np.where(chars > 0, found / np.maximum(chars, 1), np.nan), lines


@dataclasses.dataclass
class CommentRatioFilter(RowOperator):
    """Comment-to-code ratio outside [``min_ratio``, ``max_ratio``] (StarCoder: 0.01–0.8):
    no documentation at all, or documentation with hardly any code. Files shorter than
    ``min_lines`` non-blank lines are exempt (a three-line ``__init__.py``)."""

    name = "comment_ratio"
    stage = "code_filters"
    reasons = ("comment_ratio",)
    scores = ("comment_ratio",)

    min_ratio: float = 0.01
    max_ratio: float = 0.8
    min_lines: int = 10

    def __post_init__(self):
        if not 0.0 <= self.min_ratio < self.max_ratio <= 1.0:
            raise ValueError("need 0 <= min_ratio < max_ratio <= 1")

    def __call__(self, table: pa.Table) -> pa.Table:
        rows = self.live_rows(table, COMMENT_SYNTAX)
        content = table.column("content")
        rows = rows[pc.is_valid(content.take(pa.array(rows))).to_numpy(
            zero_copy_only=False)] if len(rows) else rows
        langs = table.column("lang").take(pa.array(rows)).to_pylist()
        ratio, lines = comment_fractions(content, rows, langs, self.min_lines)
        measured = lines >= self.min_lines
        table = self.keep_score(table, "comment_ratio", ratio[measured], rows[measured])
        hit = measured & ((ratio < self.min_ratio) | (ratio > self.max_ratio))
        return self.remove(table, rows[hit], "comment_ratio", np.round(ratio[hit], 4).tolist())
