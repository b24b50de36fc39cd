"""Files that do not parse (Seed-Coder's and SwallowCode's syntax gate)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa

from operators.base import RowOperator
from operators.syntax import GRAMMARS, PYTHON, SyntaxChecker

#: checked by default: Python by its own compiler, the rest by tree-sitter grammars that
#: agree with the language's own parser on real files (tests/test_syntax.py). C and C++ are
#: left out: tree-sitter does not run the preprocessor, and 88 of 99 C headers of this
#: machine's sample corpus (CPython's and the system's installed headers, which builds include
#: every day) fail its C grammar.
DEFAULT_LANGUAGES = ("Python", "Java", "JavaScript", "TypeScript", "Go", "Rust", "PHP",
                     "C#", "Ruby", "Scala", "Kotlin", "Swift", "Shell", "Dart")


@dataclasses.dataclass
class SyntaxFilter(RowOperator):
    """Files of the checked ``languages`` that do not parse: Python through the
    interpreter's compiler, the others through tree-sitter error and missing nodes, with
    ``tolerance`` the share of lines an error may touch before a file fails (0: any).
    Off by default, as in the paper's phase 1 (SwallowCode drops ~10% of Python files
    here; the cluster config turns it on). The detail is the first error's line and kind.
    """

    name = "syntax"
    stage = "code_filters"
    reasons = ("syntax_error",)

    enabled: bool = dataclasses.field(default=False, kw_only=True)
    languages: tuple[str, ...] = DEFAULT_LANGUAGES
    tolerance: float = 0.0

    def __post_init__(self):
        self.languages = tuple(str(x) for x in self.languages)
        unknown = [x for x in self.languages if x not in PYTHON and x not in GRAMMARS]
        if unknown:
            raise ValueError(f"languages: no parser for {unknown}; known: "
                             f"{sorted(set(PYTHON) | set(GRAMMARS))}")
        self.checker = SyntaxChecker(self.tolerance)  # raises on a bad tolerance

    def __call__(self, table: pa.Table) -> pa.Table:
        rows = self.live_rows(table, self.languages)
        if not len(rows):
            return table
        content = table.column("content").take(pa.array(rows)).to_pylist()
        langs = table.column("lang").take(pa.array(rows)).to_pylist()
        bad, detail = [], []
        for i, code, lang in zip(rows, content, langs):
            res = self.checker.check(code or "", lang)
            if isinstance(res, str):
                bad.append(i)
                detail.append(res[:200])
        if not bad:
            return table
        return self.remove(table, np.array(bad, dtype=np.int64), "syntax_error", detail)
