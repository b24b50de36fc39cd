"""Minified or bundled JavaScript and CSS."""

from __future__ import annotations

import dataclasses
import re

import pyarrow as pa

from operators.base import RowOperator


@dataclasses.dataclass
class MinifiedFilter(RowOperator):
    """Minified or bundled JavaScript/CSS: a ``.min.`` / bundle file name, or lines of
    mostly unbroken code (more than ``max_long_line_fraction`` of the characters on lines
    longer than ``long_line``, or less than ``min_whitespace_fraction`` whitespace)."""

    name = "minified"
    stage = "code_filters"
    reasons = ("minified",)

    languages: tuple[str, ...] = ("JavaScript", "TypeScript", "CSS")
    long_line: int = 300
    max_long_line_fraction: float = 0.5
    min_whitespace_fraction: float = 0.08
    min_chars: int = 1000
    name_pattern: str = r"(\.min\.(js|css|mjs)$|[.-]bundle\.js$|-min\.js$)"

    def __post_init__(self):
        self.languages = tuple(self.languages)
        self._name = re.compile(self.name_pattern, re.IGNORECASE)

    def __call__(self, table: pa.Table) -> pa.Table:
        content, paths = table.column("content"), table.column("path")
        hit, why = [], []
        for i in self.live_rows(table, self.languages).tolist():
            path = paths[i].as_py() or ""
            if self._name.search(path):
                hit.append(i)
                why.append("file name")
                continue
            text = content[i].as_py() or ""
            if len(text) < self.min_chars:
                continue
            long_chars = sum(len(x) for x in text.split("\n") if len(x) > self.long_line)
            ws = sum(text.count(c) for c in " \t\n\r") / len(text)
            if long_chars / len(text) > self.max_long_line_fraction:
                hit.append(i)
                why.append(f"long lines {long_chars / len(text):.2f}")
            elif ws < self.min_whitespace_fraction:
                hit.append(i)
                why.append(f"whitespace {ws:.3f}")
        return self.remove(table, hit, "minified", why)
