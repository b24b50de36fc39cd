"""A filter written the way a user adds one: this module, and one line in the registry
(``tests/test_contract.py`` inserts that line). It is not part of the pipeline."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.base import RowOperator


@dataclasses.dataclass
class TodoDensityFilter(RowOperator):
    """Files that are mostly unfinished: more than ``max_per_100_lines`` TODO / FIXME / XXX
    markers per 100 lines, in files of at least ``min_lines`` lines."""

    name = "todo_density"
    stage = "code_filters"
    reasons = ("todo_density",)

    max_per_100_lines: float = 10.0
    min_lines: int = 5

    def __post_init__(self):
        if self.max_per_100_lines <= 0:
            raise ValueError("max_per_100_lines must be > 0")

    def __call__(self, table: pa.Table) -> pa.Table:
        content = pc.fill_null(table.column("content"), "")
        marks = pc.count_substring_regex(content, r"\b(?:TODO|FIXME|XXX)\b").to_numpy(
            zero_copy_only=False)
        lines = pc.count_substring(content, "\n").to_numpy(zero_copy_only=False) + 1
        density = 100.0 * marks / lines
        hit = self.live(table) & (lines >= self.min_lines) & (density > self.max_per_100_lines)
        return self.remove(table, hit, "todo_density", np.round(density, 1).tolist())
