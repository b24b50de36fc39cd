"""A lint score per file (SwallowCode's linter filter): ruff for pylint on Python, oxlint on
JavaScript and TypeScript."""

from __future__ import annotations

import ast
import dataclasses
import io
import os
import re
import subprocess
import tempfile
import tokenize
import warnings

import numpy as np
import pyarrow as pa

from operators.base import RowOperator
from operators.filters.comment_ratio import comment_fractions
from operators.filters.lint_js import LANGUAGES, oxlint_bin, oxlint_messages
from operators.filters.lint_js import statements as js_statements
from operators.kernels.pylex import python_counts
from operators.kernels.utf8 import content_buffers

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


#: one diagnostic per line of ruff's concise output: the file's number and the rule's
#: code (``invalid-syntax:`` where the file does not parse)
_CONCISE = r"^{}/f(\d+)\.py:\d+:\d+: (\S+)"


def _scratch_dir() -> str | None:
    """Where the batch's files are written for ruff: memory (``/dev/shm``) when there is one."""
    return "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


def ruff_messages(texts: list[bytes], select=SELECT, ignore=IGNORE, threads: int = 1
                  ) -> tuple[list[dict], np.ndarray]:
    """ruff's messages per file (UTF-8 bytes) by category, and whether ruff found a syntax
    error in it: one ruff process on ``threads`` cores for the whole list (the files are
    written to a temporary folder)."""
    from ruff.__main__ import find_ruff_bin

    out: list[dict] = [{} for _ in texts]
    syntax = np.zeros(len(texts), dtype=bool)
    if not texts:
        return out, syntax
    with tempfile.TemporaryDirectory(prefix="arctic-lint-", dir=_scratch_dir()) as tmp:
        for i, text in enumerate(texts):
            with open(os.path.join(tmp, f"f{i}.py"), "wb") as f:
                f.write(text)
        res = subprocess.run([find_ruff_bin(), "check", "--isolated", "--no-cache",
                              "--exit-zero", "--output-format", "concise",
                              "--select", ",".join(select), "--ignore", ",".join(ignore),
                              tmp], check=False, capture_output=True, text=True,
                             timeout=600,
                             env={**os.environ, "RAYON_NUM_THREADS": str(threads)})
        if res.returncode != 0:
            raise RuntimeError(f"ruff failed ({res.returncode}): {res.stderr[-500:]}")
        for m in re.finditer(_CONCISE.format(re.escape(tmp)), res.stdout, re.MULTILINE):
            i, code = int(m.group(1)), m.group(2).rstrip(":")
            bad = not re.fullmatch(r"[A-Z]+[0-9]+", code)  # invalid-syntax
            syntax[i] |= bad
            cat = _category("E999" if bad else code)
            out[i][cat] = out[i].get(cat, 0) + 1
    return out, syntax


@dataclasses.dataclass
class LintScore(RowOperator):
    """Files scored 0-10 as pylint would, kept as ``score_lint`` on every file of
    ``languages`` it saw: pylint's evaluation over the messages of ruff (Python: its
    pyflakes, pycodestyle and pylint rules) or oxlint (JavaScript, TypeScript:
    :mod:`operators.filters.lint_js`), times 1 - the comment share when
    ``comment_penalty`` (Python: comment tokens among all tokens, as SwallowCode; the
    others: characters in comments, by the comment-ratio filter's scan). With
    ``min_score`` (SwallowCode: 7.0 for Python, which dropped 34% of its files) files
    below it are removed, reason ``low_lint_score``. Off by default; phase 3 can use it on
    its seeds (``phase3.seed_min_lint``)."""

    name = "lint"
    stage = "code_filters"
    reasons = ("low_lint_score",)
    scores = ("lint",)

    enabled: bool = dataclasses.field(default=False, kw_only=True)
    min_score: float | None = None
    comment_penalty: bool = True
    languages: tuple = ("Python", "JavaScript", "TypeScript")
    #: each linter's threads per batch: one, as a Ray task holds one core
    threads: int = 1

    def __post_init__(self):
        self.languages = tuple(self.languages)
        unknown = set(self.languages) - {"Python", *LANGUAGES}
        if unknown:
            raise ValueError(f"lint: no linter for {sorted(unknown)}; "
                             f"languages are Python, {', '.join(LANGUAGES)}")
        if self.threads < 1:
            raise ValueError("threads must be at least 1")
        if self.min_score is not None and not 0.0 <= float(self.min_score) <= 10.0:
            raise ValueError("min_score must be in [0, 10] or null")

    def setup(self) -> None:  # a clear error on the driver when a linter is missing
        from ruff.__main__ import find_ruff_bin

        if "Python" in self.languages:
            find_ruff_bin()
        if set(self.languages) & set(LANGUAGES):
            oxlint_bin()

    def score(self, content: pa.Array | list[str], rows: np.ndarray | None = None,
              langs: list[str] | None = None) -> np.ndarray:
        """Scores of the texts at ``rows`` of ``content`` (all when None), in languages
        ``langs`` (all Python when None)."""
        if not isinstance(content, (pa.Array, pa.ChunkedArray)):
            content = pa.array(content, pa.large_string())
        if isinstance(content, pa.ChunkedArray):
            content = content.combine_chunks()
        rows = np.arange(len(content)) if rows is None else np.asarray(rows, dtype=np.int64)
        langs = ["Python"] * len(rows) if langs is None else list(langs)
        out = np.zeros(len(rows))
        py = np.array([lang == "Python" for lang in langs], dtype=bool)
        if py.any():
            out[py] = self._python(content, rows[py])
        if not py.all():
            out[~py] = self._js(content, rows[~py], [x for x in langs if x != "Python"])
        return out

    def _python(self, content: pa.Array, rows: np.ndarray) -> np.ndarray:
        """Statements and comment tokens from one compiled pass
        (:mod:`operators.kernels.pylex`); a file it is unsure of, or one ruff finds a
        syntax error in, is counted by :func:`statements` and :func:`comment_ratio`."""
        data, offsets = content_buffers(content)
        texts = [data[offsets[r]:offsets[r + 1]].tobytes() for r in rows]
        msgs, syntax = ruff_messages(texts, threads=self.threads)
        tokens, comments, stmts, ok = python_counts(data, offsets, rows)
        ratio = comments / np.maximum(tokens, 1)
        for i in np.flatnonzero(~ok | syntax):
            code = texts[i].decode("utf-8", "surrogatepass")
            stmts[i] = statements(code)
            if not ok[i]:
                ratio[i] = comment_ratio(code)
        out = np.array([pylint_score(m, n) for m, n in zip(msgs, stmts.tolist())])
        return out * (1.0 - ratio) if self.comment_penalty else out

    def _js(self, content: pa.Array, rows: np.ndarray, langs: list[str]) -> np.ndarray:
        data, offsets = content_buffers(content)
        texts = [data[offsets[r]:offsets[r + 1]].tobytes() for r in rows]
        msgs = oxlint_messages(texts, langs, _scratch_dir(), threads=self.threads)
        stmts = js_statements(texts, langs)
        out = np.array([pylint_score(m, n) for m, n in zip(msgs, stmts.tolist())])
        if self.comment_penalty:
            share, _ = comment_fractions(content, rows, langs, min_lines=0)
            out *= 1.0 - np.nan_to_num(share)
        return out

    def __call__(self, table: pa.Table) -> pa.Table:
        rows = self.live_rows(table, self.languages)
        langs = table.column("lang").take(pa.array(rows)).to_pylist() if len(rows) else []
        scores = (self.score(table.column("content"), rows, langs) if len(rows)
                  else np.zeros(0))
        table = self.keep_score(table, "lint", scores, rows)  # the column on every block
        if self.min_score is None:
            return table
        low = rows[scores < float(self.min_score)]
        return self.remove(table, low, "low_lint_score",
                           [f"{s:.2f}" for s in scores[scores < float(self.min_score)]])
