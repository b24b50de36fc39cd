"""JavaScript and TypeScript for the lint score: oxlint's messages (the Rust linter of the
oxc project, ESLint's rules; pinned in ``package.json``, installed by ``npm ci``) and the
statements tree-sitter finds (the same grammars as the syntax gate).

oxlint's categories stand for pylint's: ``correctness`` (code that is outright wrong or
useless) is denied, so its messages and parse errors count as errors (five times, as
pylint weighs its E messages); ``suspicious`` and ``perf`` warn and count once. Its
``style``, ``pedantic`` and ``restriction`` categories stay off (naming, comment casing,
magic numbers: what SwallowCode switched off in pylint too).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

LANGUAGES = {"JavaScript": ("javascript", ".js"), "TypeScript": ("typescript", ".ts")}
RULES = ("-D", "correctness", "-W", "suspicious", "-W", "perf")
#: one diagnostic per line of oxlint's ``unix`` output: the file's number, the severity
_UNIX = r"^{}/f(\d+)\.[jt]s:\d+:\d+: .* \[(Error|Warning)[/\]]"


def oxlint_bin() -> str:
    """oxlint's executable: ``$ARCTIC_OXLINT``, this checkout's ``node_modules`` (the
    README's install), or one on ``PATH``."""
    for cand in (os.environ.get("ARCTIC_OXLINT"),
                 str(Path(__file__).resolve().parents[2] / "node_modules/.bin/oxlint"),
                 shutil.which("oxlint")):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise FileNotFoundError(
        "the lint score needs oxlint for JavaScript/TypeScript: run `npm ci` in the "
        "checkout (package.json pins it), set ARCTIC_OXLINT, or drop those languages "
        "from phase1.code_filters.lint.languages")


def oxlint_messages(texts: list[bytes], langs: list[str], folder: str | None,
                    threads: int = 1) -> list[dict]:
    """oxlint's messages per file by category (``error``, ``warning``): one oxlint
    process on ``threads`` cores for the whole list, written to a temporary folder."""
    out: list[dict] = [{} for _ in texts]
    if not texts:
        return out
    with tempfile.TemporaryDirectory(prefix="arctic-lint-", dir=folder) as tmp:
        for i, (text, lang) in enumerate(zip(texts, langs)):
            with open(os.path.join(tmp, f"f{i}{LANGUAGES[lang][1]}"), "wb") as f:
                f.write(text)
        res = subprocess.run([oxlint_bin(), "--threads", str(threads), "--format", "unix",
                              "--no-ignore", *RULES, tmp], check=False,
                             capture_output=True, text=True, timeout=600)
        if res.returncode not in (0, 1):  # 1: errors found
            raise RuntimeError(f"oxlint failed ({res.returncode}): {res.stderr[-500:]}")
        for m in re.finditer(_UNIX.format(re.escape(tmp)), res.stdout, re.MULTILINE):
            cat = "error" if m.group(2) == "Error" else "warning"
            d = out[int(m.group(1))]
            d[cat] = d.get(cat, 0) + 1
    return out


@functools.lru_cache(maxsize=None)
def _query(grammar: str):
    """The grammar's parser and a query for its statements: named node kinds ending in
    ``_statement`` (not blocks, not empty ones) or ``_declaration``, and class methods
    (a ``def`` in a class is a statement to pylint)."""
    from tree_sitter import Query
    from tree_sitter_language_pack import get_language, get_parser

    lang = get_language(grammar)
    kinds = sorted({lang.node_kind_for_id(i) for i in range(lang.node_kind_count)
                    if lang.node_kind_is_named(i) and lang.node_kind_is_visible(i)})
    pick = [k for k in kinds if k == "method_definition" or k.endswith("_declaration")
            or (k.endswith("_statement") and k not in ("statement_block", "empty_statement"))]
    return get_parser(grammar), Query(lang, "[" + " ".join(f"({k})" for k in pick) + "] @s")


def statements(texts: list[bytes], langs: list[str]) -> np.ndarray:
    """Statements per file, by its language's tree-sitter grammar."""
    from tree_sitter import QueryCursor

    out = np.zeros(len(texts), dtype=np.int64)
    for i, (text, lang) in enumerate(zip(texts, langs)):
        parser, query = _query(LANGUAGES[lang][0])
        root = parser.parse(text).root_node
        out[i] = len(QueryCursor(query).captures(root).get("s", ()))
    return out
