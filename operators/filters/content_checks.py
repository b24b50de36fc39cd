"""Content that is not usable text: too large, blank, or binary."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pyarrow.compute as pc

from operators.base import RowOperator


def content(table: pa.Table) -> pa.ChunkedArray:
    """The content column with nulls (tombstones) as empty strings."""
    return pc.fill_null(table.column("content"), "")


@dataclasses.dataclass
class ContentChecks(RowOperator):
    """Rejects unusable content: empty or whitespace-only, binary (NUL bytes), too large.

    Args:
        max_file_bytes: files larger than this (UTF-8 bytes) are removed as ``too_large``.
            Default 1 MB, The Stack v1's own cap.
    """

    name = stage = "content_checks"
    reasons = ("too_large", "empty_content", "binary")

    max_file_bytes: int = 1 << 20

    def __post_init__(self):
        if self.max_file_bytes <= 0:
            raise ValueError(f"max_file_bytes must be > 0, got {self.max_file_bytes}")

    def __call__(self, table: pa.Table) -> pa.Table:
        size = pc.binary_length(content(table))
        table = self.remove(table, pc.greater(size, self.max_file_bytes), "too_large",
                            pc.cast(size, pa.string()))
        blank = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(content(table))), 0)
        table = self.remove(table, blank, "empty_content")
        return self.remove(table, pc.match_substring(content(table), "\x00"), "binary")
