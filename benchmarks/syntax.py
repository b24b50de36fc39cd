"""The syntax gate's and the lint score's throughput, and what they remove, per language,
on real files: the embedded sample corpus (stdlib, site-packages, headers, npm). Measured
against the token counter on the same files, one core, best of 3; then every phase-1
ingest operator alone (syntax and lint on), one core, on the same real files and on the
phase-1 benchmark's 4x corpus, so that the lint score's rank among them is read off one run.

    python benchmarks/syntax.py [--out benchmarks/results/syntax.md]
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402
import pyarrow.compute  # noqa: E402,F401

from benchmarks.cleaning import _best, real_files, table  # noqa: E402
from benchmarks.common import base_corpus, scaled_corpus  # noqa: E402
from operators import registry  # noqa: E402
from operators.filters.lint import LintScore  # noqa: E402
from operators.filters.syntax import SyntaxFilter  # noqa: E402
from operators.schema import live_mask  # noqa: E402
from operators.tokens import TokenCounter  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/syntax.md"))
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):  # one core, ruff's process included
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    rows = real_files()
    t = table(rows)
    mb = sum(len(r["content"].encode()) for r in rows) / 1e6
    gate = SyntaxFilter(enabled=True, languages=("Python", "JavaScript", "TypeScript",
                                                 "C", "C++", "Shell", "C#"))
    gate_s, count_s = _best(gate, t, runs=3), _best(TokenCounter(), t, runs=3)
    out = gate(t)
    alive = live_mask(out).to_pylist()
    per = collections.defaultdict(lambda: [0, 0, 0.0])
    for r, ok in zip(rows, alive):
        per[r["lang"]][0] += 1
        per[r["lang"]][1] += not ok
        per[r["lang"]][2] += len(r["content"].encode()) / 1e6
    default = set(SyntaxFilter().languages)
    lines = ["# Syntax gate (operators/filters/syntax.py)", "",
             f"`python benchmarks/syntax.py`: {len(rows)} real files, {mb:.1f} MB, one core.",
             "", f"- gate: {mb / gate_s:.1f} MB/s; token counter on the same files: "
             f"{mb / count_s:.1f} MB/s (gate / token counter = {count_s / gate_s:.2f}x)", "",
             "| language | files | fail to parse | share | MB | checked by default |",
             "| --- | --- | --- | --- | --- | --- |"]
    for lang, (n, bad, size) in sorted(per.items(), key=lambda kv: -kv[1][0]):
        lines.append(f"| {lang} | {n} | {bad} | {bad / n:.1%} | {size:.1f} | "
                     f"{'yes' if lang in default else 'no'} |")
    lines += ["", "C and C++ are measured here but not checked by default: tree-sitter does "
              "not run the preprocessor, and these are CPython's and the system's installed "
              "headers, which builds include every day."]
    py = t.filter(pa.compute.equal(t.column("lang"), "Python"))
    py_mb = sum(len(c.encode()) for c in py.column("content").to_pylist()) / 1e6
    lint = LintScore(enabled=True)
    lint_s, count_py_s = _best(lint, py, runs=3), _best(TokenCounter(), py, runs=3)
    scores = [x for x in lint(py).column("score_lint").to_pylist() if x is not None]
    below = sum(x < 7.0 for x in scores)
    lines += ["", "## Lint score (operators/filters/lint.py)", "",
              f"- Python: {py.num_rows} files, {py_mb:.1f} MB: {py_mb / lint_s:.1f} MB/s (one "
              f"ruff process per batch, statements and comment tokens in one compiled "
              f"pass); token counter on the same files {py_mb / count_py_s:.1f} MB/s "
              f"(lint / token counter = {count_py_s / lint_s:.2f}x); ruff alone on the same "
              f"files, one thread: {py_mb / _ruff_alone(py):.1f} MB/s",
              f"- Python scores: mean {sum(scores) / len(scores):.2f}; below SwallowCode's "
              f"7.0: {below} ({below / len(scores):.1%}; SwallowCode dropped 34.3% of The "
              "Stack v2's Python there)"]
    js = t.filter(pa.compute.is_in(t.column("lang"), pa.array(["JavaScript", "TypeScript"])))
    js_mb = sum(len(c.encode()) for c in js.column("content").to_pylist()) / 1e6
    js_s = _best(lint, js, runs=3)
    js_scores = [x for x in lint(js).column("score_lint").to_pylist() if x is not None]
    js_below = sum(x < 7.0 for x in js_scores)
    lines += [f"- JavaScript/TypeScript: {js.num_rows} files, {js_mb:.1f} MB: "
              f"{js_mb / js_s:.1f} MB/s (one oxlint process per batch, statements by "
              f"tree-sitter); scores: mean {sum(js_scores) / len(js_scores):.2f}, below 7.0: "
              f"{js_below} ({js_below / len(js_scores):.1%}; no published threshold: "
              "phase 3's seed criterion scores Python only)"]
    lines += ingest_lines(t, mb)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def _ruff_alone(py: pa.Table) -> float:
    """Seconds of one ruff process on the files, written beforehand (best of 3)."""
    import subprocess
    import tempfile

    from ruff.__main__ import find_ruff_bin

    from operators.filters.lint import IGNORE, SELECT

    best = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        for i, c in enumerate(py.column("content").to_pylist()):
            Path(tmp, f"f{i}.py").write_text(c, encoding="utf-8", errors="surrogatepass")
        for _ in range(3):
            start = time.perf_counter()
            subprocess.run([find_ruff_bin(), "check", "--isolated", "--no-cache",
                            "--exit-zero", "--output-format", "concise", "--select",
                            ",".join(SELECT), "--ignore", ",".join(IGNORE), tmp],
                           capture_output=True, check=True,
                           env={**os.environ, "RAYON_NUM_THREADS": "1"})
            best = min(best, time.perf_counter() - start)
    return best


def _corpus_table(path: Path) -> pa.Table:
    import pyarrow.parquet as pq

    rows = []
    for f in sorted(path.glob("data/*/*.parquet")):
        t = pq.read_table(f, columns=["content", "lang", "max_stars_repo_path", "ext"])
        rows += [{"content": r["content"], "lang": r["lang"], "path": r["max_stars_repo_path"],
                  "ext": r["ext"]} for r in t.to_pylist()]
    return table(rows)


def ingest_lines(real: pa.Table, real_mb: float) -> list[str]:
    """Every ingest operator alone (syntax and lint on), one core, best of 2: MB/s of all
    the table's files, on the real files and on the phase-1 benchmark's 4x corpus."""
    from operators.tokens import TokenCounter

    four = _corpus_table(scaled_corpus(base_corpus(), 4, "identifiers"))
    four_mb = sum(len(c.encode()) for c in four.column("content").to_pylist()) / 1e6
    per = {}
    for label, t in (("real", real), ("4x", four)):
        t = TokenCounter()(t)  # the fertility filter reads the counts
        for cls in registry.INGEST:
            op = cls(enabled=True) if cls.name in ("syntax", "lint") else cls()
            per.setdefault(cls.name, {})[label] = _best(op, t)
    mbs = {"real": real_mb, "4x": four_mb}
    rank = {label: sorted(per, key=lambda n: per[n][label], reverse=True) for label in mbs}
    lines = ["", "## Every ingest operator alone, one core", "",
             f"MB/s of all the table's files (each operator sees every file and works on "
             f"those of its languages): the real files above ({real_mb:.1f} MB) and the "
             f"phase-1 benchmark's 4x corpus ({four_mb:.1f} MB, 99.9% Python).", "",
             "| operator | real files MB/s | rank (1: slowest) | 4x corpus MB/s | rank |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name in registry.INGEST:
        n = name.name
        lines.append(f"| {n} | {mbs['real'] / per[n]['real']:.1f} | "
                     f"{rank['real'].index(n) + 1} | {mbs['4x'] / per[n]['4x']:.1f} | "
                     f"{rank['4x'].index(n) + 1} |")
    return lines


if __name__ == "__main__":
    sys.exit(main())
