"""A lint score for Python files (SwallowCode's linter filter, with ruff for pylint)."""

from __future__ import annotations

import ast
import dataclasses
import io
import json
import os
import subprocess
import tempfile
import tokenize
import warnings

import numpy as np
import pyarrow as pa

from operators.base import RowOperator

#: ruff rule families read as pylint's message categories; the pylint score weighs an
#: error five times (pylint's default evaluation: 10 - 10 * (5E + W + R + C) / statements)
ERROR_CODES = ("E9", "F821", "F822", "F823", "PLE")
REFACTOR_CODES = ("PLR", "C90")
CONVENTION_CODES = ("E", "PLC")
#: pyflakes, pycodestyle and ruff's pylint rules; line length is not judged (SwallowCode
#: disables pylint's line-too-long, naming, docstring, import-order and fixme messages,
#: which these families do not check either)
SELECT = ("E", "W", "F", "PL")
IGNORE = ("E501",)


def _category(code: str) -> str:
    for cat, prefixes in (("error", ERROR_CODES), ("refactor", REFACTOR_CODES),
                          ("convention", CONVENTION_CODES)):
        if code.startswith(prefixes):
            return cat
    return "warning"


#: the fields of a node that hold statements (an expression never does: a lambda's body
#: is an expression), so counting statements visits statements only
_BODIES = ("body", "orelse", "finalbody", "handlers", "cases")


def statements(code: str) -> int:
    """Statements in a module, as pylint counts them for its score (every ``ast.stmt``),
    visiting only statement lists (a fifth of a full ``ast.walk``'s nodes)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return 0
    n, todo = 0, [tree]
    while todo:
        node = todo.pop()
        for field in _BODIES:
            for child in getattr(node, field, ()):
                n += isinstance(child, ast.stmt)  # handlers and match cases are not
                todo.append(child)
    return n


def comment_ratio(code: str) -> float:
    """Comment tokens among all tokens (SwallowCode's comment penalty); 0 when the code
    does not tokenize."""
    total = comments = 0
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            total += 1
            comments += tok.type == tokenize.COMMENT
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return 0.0
    return comments / total if total else 0.0


def pylint_score(counts: dict, n_statements: int) -> float:
    """pylint's evaluation from message counts per category, floored at 0 (a file without
    statements scores 10 when it has no messages, else 0)."""
    weighted = 5 * counts.get("error", 0) + sum(
        counts.get(c, 0) for c in ("warning", "refactor", "convention"))
    if n_statements == 0:
        return 0.0 if weighted else 10.0
    return max(0.0, 10.0 - 10.0 * weighted / n_statements)


def ruff_messages(codes: list[str], select=SELECT, ignore=IGNORE) -> list[dict]:
    """ruff's message codes per code string, by category: one ruff process for the whole
    list (the files are written to a temporary folder)."""
    from ruff.__main__ import find_ruff_bin

    out: list[dict] = [{} for _ in codes]
    if not codes:
        return out
    with tempfile.TemporaryDirectory(prefix="arctic-lint-") as tmp:
        for i, code in enumerate(codes):
            with open(os.path.join(tmp, f"f{i}.py"), "w", encoding="utf-8",
                      errors="surrogatepass") as f:
                f.write(code)
        res = subprocess.run([find_ruff_bin(), "check", "--isolated", "--no-cache",
                              "--exit-zero", "--output-format", "json",
                              "--select", ",".join(select), "--ignore", ",".join(ignore),
                              tmp], capture_output=True, text=True, timeout=600)
        if res.returncode != 0:
            raise RuntimeError(f"ruff failed ({res.returncode}): {res.stderr[-500:]}")
        for d in json.loads(res.stdout or "[]"):
            i = int(os.path.basename(d["filename"])[1:-3])
            cat = _category(d.get("code") or "E999")  # no code: a syntax error
            out[i][cat] = out[i].get(cat, 0) + 1
    return out


@dataclasses.dataclass
class LintScore(RowOperator):
    """Python files scored 0-10 as pylint would (ruff's pyflakes, pycodestyle and pylint
    rules, weighed as pylint's evaluation), times 1 - the share of comment tokens (the
    comment penalty) when ``comment_penalty``; kept as ``score_lint`` on every Python file
    it saw. With ``min_score`` (SwallowCode: 7.0, which dropped 34% of its files) files
    below it are removed, reason ``low_lint_score``. Off by default; phase 3 can use it on
    its seeds (``phase3.seed_min_lint``)."""

    name = "lint"
    stage = "code_filters"
    reasons = ("low_lint_score",)
    scores = ("lint",)

    enabled: bool = dataclasses.field(default=False, kw_only=True)
    min_score: float | None = None
    comment_penalty: bool = True

    def __post_init__(self):
        if self.min_score is not None and not 0.0 <= float(self.min_score) <= 10.0:
            raise ValueError("min_score must be in [0, 10] or null")

    def setup(self) -> None:
        from ruff.__main__ import find_ruff_bin

        find_ruff_bin()  # a clear error on the driver when ruff is not installed

    def score(self, codes: list[str]) -> np.ndarray:
        msgs = ruff_messages(codes)
        out = np.array([pylint_score(m, statements(c)) for m, c in zip(msgs, codes)])
        if self.comment_penalty:
            out *= np.array([1.0 - comment_ratio(c) for c in codes])
        return out

    def __call__(self, table: pa.Table) -> pa.Table:
        rows = self.live_rows(table, ("Python",))
        codes = [c or "" for c in table.column("content").take(pa.array(rows)).to_pylist()]
        scores = self.score(codes) if codes else np.zeros(0)
        table = self.keep_score(table, "lint", scores, rows)  # the column on every block
        if self.min_score is None:
            return table
        low = rows[scores < float(self.min_score)]
        return self.remove(table, low, "low_lint_score",
                           [f"{s:.2f}" for s in scores[scores < float(self.min_score)]])
