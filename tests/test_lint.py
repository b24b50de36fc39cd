"""The lint score (operators/filters/lint.py) against ruff run directly on the same real
files, one file at a time, and pylint's evaluation recomputed here from those messages."""

from __future__ import annotations

import ast
import glob
import io
import json
import os
import random
import subprocess
import sysconfig
import tokenize

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
