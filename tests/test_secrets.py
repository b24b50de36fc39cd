"""Credential redaction on the suite built from providers' documented formats
(benchmarks/secret_suite.py): recall per kind and per file context, look-alikes left
alone, placeholders that keep each file format valid, real code left alone."""

from __future__ import annotations

import ast
import collections
import glob
import json
import os
import random
import subprocess

import pyarrow as pa
import pytest
import yaml

from benchmarks.secret_suite import CONTEXTS, FORMATS, negatives, positives
from operators.pii import Redactor
from operators.schema import FILE_SCHEMA, conform
from operators.secret_formats import RULE_LIST


def _batch(cases: list[dict]) -> list[str]:
    """The redacted texts, through the operator's batch path (prefilters, line scan)."""
    t = conform(pa.table({"id": [str(i) for i in range(len(cases))],
                          "content": pa.array([c["text"] for c in cases], pa.large_string()),
                          "path": [c["path"] for c in cases]}), FILE_SCHEMA)
    return Redactor()(t).column("content").to_pylist()


@pytest.fixture(scope="module")
def suite():
    cases = positives(per_kind=2, seed=3)
    return cases, _batch(cases)


def test_every_kind_and_context_is_redacted(suite):
    cases, out = suite
    per = collections.defaultdict(lambda: [0, 0])
    for c, text in zip(cases, out):
        for key in (("kind", c["kind"]), ("context", c["context"])):
            per[key][0] += c["value"] not in text
            per[key][1] += 1
    assert {k for k, _ in per} == {"kind", "context"}
    assert len([k for k in per if k[0] == "kind"]) == len(FORMATS) + 1  # + private keys
    assert len([k for k in per if k[0] == "context"]) >= len(CONTEXTS)
    low = {k: f"{a}/{n}" for k, (a, n) in per.items() if a < n}
    assert not low, low
    assert sum(a for a, _ in per.values()) > 2000


def test_look_alikes_are_left_alone():
    cases = negatives(seed=4)
    out = _batch(cases)
    changed = [(c["kind"], c["text"]) for c, text in zip(cases, out) if text != c["text"]]
    assert not changed
    assert {c["kind"] for c in cases} >= {"placeholder", "hash_or_id", "lockfile",
                                          "test_fixture", "base64_data", "look_alike"}


def _sample(pattern: str, rng: random.Random) -> str:
    """A random string that the regex ``pattern`` matches (lookarounds skipped)."""
    import re._constants as c
    import re._parser as parser
    import string

    classes = {c.CATEGORY_DIGIT: string.digits, c.CATEGORY_WORD: string.ascii_letters + "_",
               c.CATEGORY_SPACE: " "}

    def gen(tree) -> str:
        out = []
        for op, av in tree:
            if op is c.LITERAL:
                out.append(chr(av))
            elif op is c.IN:
                chars = []
                for kind, v in av:
                    if kind is c.LITERAL:
                        chars.append(chr(v))
                    elif kind is c.RANGE:
                        chars += [chr(x) for x in range(v[0], v[1] + 1)]
                    elif kind is c.CATEGORY:
                        chars += list(classes[v])
                out.append(rng.choice(chars))
            elif op in (c.MAX_REPEAT, c.MIN_REPEAT):
                lo, hi, sub = av
                out += [gen(sub) for _ in range(rng.randint(lo, min(hi, lo + 8)))]
            elif op is c.SUBPATTERN:
                out.append(gen(av[-1]))
            elif op is c.BRANCH:
                out.append(gen(rng.choice(av[1])))
            elif op is c.CATEGORY:
                out.append(rng.choice(classes[av]))
        return "".join(out)

    return gen(parser.parse(pattern))


def test_every_vendor_rule_fires_through_the_batch_path():
    """Each format in the table is found in text drawn from its own pattern (so that the
    anchors, RE2 prefilters and boundaries of every rule are exercised, not only those of
    the suite's kinds), in code and in configuration; its twin with an EXAMPLE or xxxx
    body (documentation examples) is not."""
    rng = random.Random(2)
    cases = []
    for rule in RULE_LIST:
        for path, fmt in (("a.py", 'KEY = "{}"\n'), ("conf/app.env", "KEY={}\n")):
            value = ("https://" if rule.regex.pattern.startswith("(?<=://)") else ""
                     ) + _sample(rule.regex.pattern, rng)
            cases.append({"path": path, "text": fmt.format(value), "value": value,
                          "vendor": rule.vendor})
    out = _batch(cases)
    missed = [(c["vendor"], c["value"]) for c, text in zip(cases, out) if c["value"] in text]
    assert not missed
    doc = {"aws": "AKIAIOSFODNN7EXAMPLE", "stripe": "sk_test_" + "x" * 24,
           "github": "ghp_" + "x" * 36, "openai": "sk-proj-" + "xxxx" * 20}
    r = Redactor()
    for vendor, value in doc.items():
        assert r.redact(f'ID = "{value}"\n', "a.py")[1] == {}, vendor


def test_placeholders_keep_each_format_valid(suite):
    cases, out = suite
    checked = collections.Counter()
    for c, text in zip(cases, out):
        if c["value"] in text:
            continue
        ctx = c["context"]
        if ctx in ("json", "notebook", "json_escaped"):
            json.loads(text)
        elif ctx in ("yaml", "yaml_block"):
            yaml.safe_load(text)
        elif ctx in ("python", "python_call"):
            ast.parse(text)
        elif ctx in ("shell", "dotenv"):
            if checked[ctx] < 20:  # bash -n: the file still parses as shell
                subprocess.run(["bash", "-n"], input=text, text=True, check=True)
        else:
            continue
        checked[ctx] += 1
    assert set(checked) >= {"json", "notebook", "yaml", "python", "python_call", "shell",
                            "dotenv", "json_escaped"}


def test_real_source_files_are_left_alone():
    """Standard-library sources (no live credentials) are not changed by a secret
    detector: at most 0.5% of them."""
    files = sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "**", "*.py"),
                             recursive=True))
    sample = random.Random(1).sample(files, 800)
    texts = []
    for f in sample:
        with open(f, encoding="utf-8", errors="replace") as fh:
            texts.append(fh.read())
    t = conform(pa.table({"id": [str(i) for i in range(len(texts))],
                          "content": pa.array(texts, pa.large_string()),
                          "path": [os.path.relpath(f, os.path.dirname(os.__file__))
                                   for f in sample]}), FILE_SCHEMA)
    red = Redactor()(t).column("redactions").to_pylist()
    secret = {"private_key", "aws_key", "github_token", "gitlab_token", "slack_token",
              "api_key", "password", "secret"}
    touched = [sample[i] for i, rr in enumerate(red)
               if {x["kind"] for x in rr or []} & secret]
    assert len(touched) <= 0.005 * len(sample), touched
