"""Keeps the target languages."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pyarrow.compute as pc

from operators.base import RowOperator
from operators.languages import PAPER_LANGUAGES, validate_languages


@dataclasses.dataclass
class LanguageFilter(RowOperator):
    """Keeps the target languages (default: the paper's 18)."""

    name = stage = "language"
    reasons = ("unknown_language", "language_not_targeted")

    languages: tuple[str, ...] = PAPER_LANGUAGES

    def __post_init__(self):
        self.languages = tuple(validate_languages(list(self.languages)))
        if not self.languages:
            raise ValueError("languages must name at least one language")

    def __call__(self, table: pa.Table) -> pa.Table:
        lang = table.column("lang")
        keep = pc.is_in(lang, value_set=pa.array(self.languages, pa.string()))
        table = self.remove(table, pc.is_null(lang), "unknown_language")
        return self.remove(table, pc.invert(pc.fill_null(keep, False)),
                           "language_not_targeted", lang)
