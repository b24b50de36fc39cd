"""StarCoder's characters-per-token filter."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.base import RowOperator


@dataclasses.dataclass
class FertilityFilter(RowOperator):
    """Characters per token below a language's minimum (StarCoder: Python 2.5, Java 2.9,
    JavaScript 2.6): text the tokenizer cannot compress, such as encoded blobs or long
    runs of symbols. Needs ``n_tokens`` (runs after the token counter)."""

    name = "fertility"
    stage = "code_filters"
    reasons = ("low_fertility",)
    scores = ("chars_per_token",)

    minimum: dict = dataclasses.field(
        default_factory=lambda: {"Python": 2.5, "Java": 2.9, "JavaScript": 2.6})

    def __post_init__(self):
        self.minimum = {str(k): float(v) for k, v in dict(self.minimum).items()}

    def __call__(self, table: pa.Table) -> pa.Table:
        if not self.minimum:
            return table
        chars = pc.utf8_length(pc.fill_null(table.column("content"), "")).to_numpy(
            zero_copy_only=False).astype(np.float64)
        tokens = pc.fill_null(table.column("n_tokens"), 0).to_numpy(
            zero_copy_only=False).astype(np.float64)
        floor = np.array([self.minimum.get(x, 0.0) for x in table.column("lang").to_pylist()])
        ratio = np.divide(chars, tokens, out=np.full_like(chars, np.inf), where=tokens > 0)
        live = np.flatnonzero(self.live(table) & (tokens > 0))
        table = self.keep_score(table, "chars_per_token", ratio[live], live)
        detail = pa.array([f"{r:.2f}" for r in ratio], pa.string())
        return self.remove(table, (ratio < floor) & self.live(table), "low_fertility", detail)
