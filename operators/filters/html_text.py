"""StarCoder's HTML filter: pages with too little visible text."""

from __future__ import annotations

import dataclasses
import re

import pyarrow as pa

from operators.base import RowOperator

_HTML_DROP = re.compile(r"<(script|style)\b.*?</\1\s*>|<!--.*?-->", re.S | re.I)
_HTML_TAG = re.compile(r"<[^>]*>")


@dataclasses.dataclass
class HtmlTextFilter(RowOperator):
    """HTML with too little visible text: StarCoder keeps HTML files whose visible text
    (outside tags, scripts and styles) is at least 100 characters and 20% of the file."""

    name = "html_text"
    stage = "code_filters"
    reasons = ("html_visible_text",)

    min_visible_chars: int = 100
    min_visible_fraction: float = 0.2
    languages: tuple[str, ...] = ("HTML",)

    def __call__(self, table: pa.Table) -> pa.Table:
        content = table.column("content")
        hit, vis = [], []
        for i in self.live_rows(table, self.languages).tolist():
            text = content[i].as_py() or ""
            visible = " ".join(_HTML_TAG.sub(" ", _HTML_DROP.sub(" ", text)).split())
            if (len(visible) < self.min_visible_chars
                    or len(visible) < self.min_visible_fraction * len(text)):
                hit.append(i)
                vis.append(f"{len(visible)} of {len(text)}")
        return self.remove(table, hit, "html_visible_text", vis)
