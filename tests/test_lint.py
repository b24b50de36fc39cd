"""The lint score (operators/filters/lint.py) against ruff run directly on the same real
files, one file at a time, and pylint's evaluation recomputed here from those messages."""

from __future__ import annotations

import ast
import glob
import io
import json
import os
import random
import re
import subprocess
import sysconfig
import tokenize

import numpy as np
import pyarrow as pa
import pytest
from ruff.__main__ import find_ruff_bin

from operators.filters.lint import IGNORE, SELECT, LintScore, _category, statements
from operators.schema import FILE_SCHEMA, conform, live_mask

STDLIB = sysconfig.get_paths()["stdlib"]


def _table(texts, langs=None):
    n = len(texts)
    return conform(pa.table({"id": [f"f{i}" for i in range(n)],
                             "content": pa.array(texts, pa.large_string()),
                             "lang": langs or ["Python"] * n,
                             "size_bytes": [len(x.encode()) for x in texts]}), FILE_SCHEMA)


def _direct(path: str) -> dict:
    res = subprocess.run([find_ruff_bin(), "check", "--isolated", "--no-cache", "--exit-zero",
                          "--output-format", "json", "--select", ",".join(SELECT),
                          "--ignore", ",".join(IGNORE), path], capture_output=True, text=True)
    counts: dict = {}
    for d in json.loads(res.stdout):
        cat = _category(d["code"] or "E999")
        counts[cat] = counts.get(cat, 0) + 1
    return counts


def _all_statements(code: str) -> int:  # pylint's count, by a full walk of the tree
    return sum(isinstance(n, ast.stmt) for n in ast.walk(ast.parse(code)))


def _comment_share(code: str) -> float:
    toks = list(tokenize.generate_tokens(io.StringIO(code).readline))
    return sum(t.type == tokenize.COMMENT for t in toks) / len(toks)


def test_scores_agree_with_ruff_run_on_each_file():
    files = random.Random(3).sample(sorted(glob.glob(os.path.join(STDLIB, "*.py"))), 25)
    texts = [open(f, encoding="utf-8").read() for f in files]
    out = LintScore(enabled=True)(_table(texts))
    got = out.column("score_lint").to_pylist()
    assert all(live_mask(out).to_pylist())  # no threshold: scores only
    for f, text, score in zip(files, texts, got):
        c = _direct(f)
        weighted = 5 * c.get("error", 0) + c.get("warning", 0) + c.get("refactor", 0) + \
            c.get("convention", 0)
        assert statements(text) == _all_statements(text)
        expect = max(0.0, 10 - 10 * weighted / statements(text)) * (1 - _comment_share(text))
        assert score == pytest.approx(expect, abs=1e-3), (f, c)
    assert 2.0 < sum(got) / len(got) < 10.0 and len(set(got)) > 10
    nested = ("match x:\n    case 1:\n        y = 2\n    case _:\n        pass\n"
              "try:\n    a = 1\nexcept E:\n    b = 2\nelse:\n    c = 3\nfinally:\n"
              "    d = 4\nwhile 0:\n    break\nelse:\n    e = lambda: 5\n")
    assert statements(nested) == _all_statements(nested) == 11


def test_threshold_removes_and_comments_are_penalised():
    clean = "def add(a, b):\n    return a + b\n\n\nprint(add(1, 2))\n"
    sloppy = ("import os, sys\nimport json\n\n\ndef f(x):\n    y = 1\n    return undefined\n")
    chatty = "# one\n# two\n# three\nx = 1  # four\n"
    t = _table([clean, sloppy, chatty, "int main() { return 0; }"],
               ["Python", "Python", "Python", "C"])
    out = LintScore(enabled=True, min_score=7.0)(t)
    s = out.column("score_lint").to_pylist()
    assert s[0] == pytest.approx(10.0) and s[1] < 7.0 and s[3] is None
    assert s[2] < 7.0 < LintScore(comment_penalty=False).score([chatty])[0]
    assert live_mask(out).to_pylist() == [True, False, False, True]
    assert set(out.column("removed_reason").to_pylist()) == {None, "low_lint_score"}
    with pytest.raises(ValueError, match="min_score"):
        LintScore(min_score=11)


def test_phase3_seed_lint_criterion(ray_local, tmp_path):
    import pyarrow.parquet as pq

    from flows.phase3 import seeds_stage
    from flows.runtime import Run
    from flows.settings import load_settings

    good = "def add(a, b):\n    return a + b\n"
    bad = "import os, sys\n\n\ndef f(x):\n    return undefined\n"
    sel = conform(pa.table({"id": ["a", "b", "c"], "content": pa.array(
        [good, bad, "function f() { return 1 }"], pa.large_string()),
        "lang": ["Python", "Python", "JavaScript"], "repo": ["r/x"] * 3, "path": ["p"] * 3,
        "n_tokens": [10] * 3, "size_bytes": [30] * 3}), FILE_SCHEMA)
    out = tmp_path / "out"
    (out / "_work" / "selected").mkdir(parents=True)
    pq.write_table(sel, out / "_work" / "selected" / "part-0.parquet")
    s = load_settings(None, {"output": str(out), "phase3": {"seed_min_lint": 7.0}})
    info = seeds_stage(Run(s, str(tmp_path), log=lambda m: None))
    assert info["files"] == {"Python": 1, "JavaScript": 1}
    assert info["left_out"] == {"low_lint_score": 1}


# -- the compiled counts (operators/kernels/pylex.py) against tokenize and ast ------------
def _plain(code: str) -> tuple[int, int, int | None]:
    """tokenize's tokens and comment tokens, and the statements (None: ast rejects it; the
    scan counts them anyway, and the score takes ast's count when ruff flags the file)."""
    toks = list(tokenize.generate_tokens(io.StringIO(code).readline))
    try:
        n = _all_statements(code)
    except SyntaxError:
        n = None
    return len(toks), sum(t.type == tokenize.COMMENT for t in toks), n


def _same(got: tuple, expect: tuple) -> bool:
    return got[:2] == expect[:2] and expect[2] in (None, got[2])


def _scan(texts: list[str]):
    from operators.kernels.pylex import python_counts
    from operators.kernels.utf8 import content_buffers

    data, offsets = content_buffers(pa.array(texts, pa.large_string()))
    return python_counts(data, offsets, np.arange(len(texts), dtype=np.int64))


#: constructs the scan reads itself, each as a whole module
READ = [
    "", "x = 1", "x = 1\n", "# only a comment", "# c\n", "x = 1  # c", "   ", "x = 1\n   ",
    "\n\n\nx = 1\n\n", "a = 1; b = 2\n", "a = 1;\n", "if x: a = 1; b = 2\nelse: c = 3\n",
    "class A: pass\n", "def f(): return 1\n", "@d\n@e(1)\ndef f():\n    pass\n",
    "try:\n    a\nexcept E as e:\n    b\nexcept F:\n    c\nelse:\n    d\nfinally:\n    e\n",
    "try: a\nexcept* F: c\n",
    "if a:\n    pass\nelif b:\n    pass\nelif c: pass\nelse:\n    pass\n",
    "async def f():\n    async for x in y:\n        await z\n    async with a as b: pass\n",
    "while 1:\n    break\nelse:\n    pass\nfor i in r: continue\n",
    "with (open(a) as f, open(b) as g):\n    pass\n",
    "x = (1,\n     2)  # c\ny = [\n    3,  # d\n]\n", "x = 1 + \\\n    2\n",
    "s = '''a\nb\\'''\nc'''\nt = \"\"\"\n\"\"\"\n", "s = rb'\\x00' + Rb\"\" + f'{x}' + u'a'\n",
    "s = f\"{'a'}\" + fr'\\d' + BR'x'\n", "x = ur'a'\n", "s = 'é' + \"日本\"  # ünï\n",
    "n = 0x_FF + 0o17 + 0b1_0 + 1_000 + 1.5e-3 + .5 + 1. + 1e5j + 0j + 00 + 0.0\n",
    "x[1:2, ::3]\nd = {1: 2, **e}\nf = lambda a, *b, **c: a\nx @= y; x //= 2; x **= 3\n",
    "def f(a: int = 1, *, b: 'x' = 2) -> dict[str, int]:\n    return {}\n",
    "if x := f():\n    pass\n", "x = 1 if y else 2\nprint(*a, sep='')\n",
    "class A(B, metaclass=M):\n    x: int = 1\n    def f(self): ...\n",
    "match p:\n    case Point(x=0) | 1:\n        pass\n    case x if x > 0: pass\n    case _:\n"
    "        y = 1; z = 2\n", "match = re.match(p, s)\ncase = 1\ncase: int = 2\ncase.x = 3\n",
    "def f():\n\tif x:\n\t\treturn 1\n\treturn 2\n", "x = 1\r\ny = 2\r\n",
    "if x:\n    y = 1\n\n  # odd comment\n    z = 2\n", "\x0cx = 1\n",
    "global a\nnonlocal_b = 1\ndel a[0], b\nimport a.b as c\nfrom . import (d,\n e)\n",
    "raise E from e\nassert x, 'm'\nreturn_ = yield_ = 1\n", "x = [i for i in y if i]\n",
]
#: what the scan hands to the plain forms (it cannot read them alone)
UNSURE = ["x = 'abc\\\ndef'\n", "x = $\n", "naïve = 1\n", "x = 1\ry = 2\n", "x = 01\n",
          "x = 1if y else 2\n", "if lambda: 1: pass\n", "x = (1,\n", "s = '''abc\n",
          "if x:\n    a\n  b\n", "case [a]: pass\n", "x = 'a\0'\n", "x = 'unterminated\n"]


def test_compiled_counts_equal_tokenize_and_ast():
    texts = READ + UNSURE
    tokens, comments, stmts, ok = _scan(texts)
    for i, text in enumerate(texts):
        if i < len(READ):
            assert ok[i], text
        else:
            assert not ok[i], text
            continue
        assert _same((tokens[i], comments[i], stmts[i]), _plain(text)), text
    files = random.Random(5).sample(sorted(glob.glob(os.path.join(STDLIB, "**", "*.py"),
                                                     recursive=True)), 800)
    texts = [open(f, encoding="utf-8", errors="replace").read() for f in files]
    tokens, comments, stmts, ok = _scan(texts)
    assert ok.mean() > 0.98
    for i in np.flatnonzero(ok):
        assert _same((tokens[i], comments[i], stmts[i]), _plain(texts[i])), files[i]


def test_scores_use_the_plain_forms_where_the_scan_or_ruff_is_unsure():
    texts = ["naïve = 1  # x\nprint(naïve)\n", "print 'py2'\n", "x = 1\ny = 2\n"]
    got = LintScore(comment_penalty=True).score(texts)
    for text, score in zip(texts, got):
        c = {}
        msgs = subprocess.run([find_ruff_bin(), "check", "--isolated", "--no-cache",
                               "--exit-zero", "--output-format", "json", "--select",
                               ",".join(SELECT), "--ignore", ",".join(IGNORE), "-"],
                              input=text, capture_output=True, text=True).stdout
        for d in json.loads(msgs):
            cat = _category(d["code"] or "E999")
            c[cat] = c.get(cat, 0) + 1
        weighted = 5 * c.get("error", 0) + sum(c.get(k, 0) for k in
                                               ("warning", "refactor", "convention"))
        try:
            n = _all_statements(text)
        except SyntaxError:
            n = 0
        expect = (10.0 if not weighted else 0.0) if n == 0 else max(
            0.0, 10 - 10 * weighted / n)
        assert score == pytest.approx(expect * (1 - _comment_share(text)), abs=1e-6), text


# -- JavaScript and TypeScript: oxlint run directly, statements by a full tree walk --------
def _walk_statements(text: bytes, grammar: str) -> int:
    from operators.filters.lint_js import _query

    parser, _ = _query(grammar)
    kinds = set(re.findall(r"\((\w+)\)", _query_source(grammar)))
    n, stack = 0, [parser.parse(text).root_node]
    while stack:
        node = stack.pop()
        n += node.is_named and node.type in kinds
        stack.extend(node.children)
    return n


def _query_source(grammar: str) -> str:
    from tree_sitter_language_pack import get_language

    lang = get_language(grammar)
    kinds = {lang.node_kind_for_id(i) for i in range(lang.node_kind_count)
             if lang.node_kind_is_named(i) and lang.node_kind_is_visible(i)}
    return " ".join(f"({k})" for k in sorted(kinds) if k == "method_definition" or
                    k.endswith(("_declaration", "_statement")) and
                    k not in ("statement_block", "empty_statement"))


def test_javascript_and_typescript_scores_agree_with_oxlint_run_on_each_file(tmp_path):
    from operators.filters.comment_ratio import comment_fractions
    from operators.filters.lint_js import RULES, oxlint_bin

    npm = "/usr/lib/node_modules/npm"
    js = random.Random(4).sample(sorted(glob.glob(f"{npm}/lib/**/*.js", recursive=True)), 20)
    ts = sorted(glob.glob(f"{npm}/node_modules/**/*.d.mts", recursive=True))[:2]
    texts = [open(f, encoding="utf-8").read() for f in js + ts]
    texts.append("interface P { x: number }\nexport function f(p: P): number {\n"
                 "  // the x\n  if (p.x == null) { return 0 }\n  debugger;\n  return p.x\n}\n")
    langs = ["JavaScript"] * len(js) + ["TypeScript"] * (len(ts) + 1)
    out = LintScore(enabled=True)(_table(texts, langs))
    got = out.column("score_lint").to_pylist()
    share, _ = comment_fractions(pa.array(texts, pa.large_string()),
                                 np.arange(len(texts)), langs, 0)
    for i, (text, lang) in enumerate(zip(texts, langs)):
        path = tmp_path / f"one{i}.{'js' if lang == 'JavaScript' else 'ts'}"
        path.write_text(text, encoding="utf-8")
        res = subprocess.run([oxlint_bin(), "--format", "json", *RULES, str(path)],
                             capture_output=True, text=True)
        diags = json.loads(res.stdout)["diagnostics"]
        errors = sum(d["severity"] == "error" for d in diags)
        weighted = 5 * errors + len(diags) - errors
        n = _walk_statements(text.encode(), lang.lower())
        expect = (10.0 if not weighted else 0.0) if n == 0 else max(
            0.0, 10 - 10 * weighted / n)
        assert got[i] == pytest.approx(expect * (1 - share[i]), abs=1e-6), (i, diags[:3])
    assert len(set(got)) > 5 and min(got) < 9.0
    assert got[-1] < 10.0  # debugger; and == null
