"""A corpus of bad inputs through phase 1 on a local Ray: each one ends as a quarantine or
removal record naming the file (or raises naming it, with ``read.strict``), the good rows
of the same files and of the rest of the corpus go on, and conservation holds."""

from __future__ import annotations

import json
import re

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from flows.arctic import main
from operators.io import file_key

pytestmark = pytest.mark.slow

GOOD = "def add(a, b):\n    \"\"\"Add two numbers.\"\"\"\n    return a + b\n"


def good_rows(n, tag):
    return {"content": [GOOD.replace("add", f"add_{tag}_{i}") for i in range(n)],
            "max_stars_repo_name": [f"ok/{tag}"] * n,
            "max_stars_repo_path": [f"m{i}.py" for i in range(n)],
            "max_stars_repo_licenses": [["MIT"]] * n}


def write_bad_corpus(root) -> dict[str, tuple[str, str]]:
    """Writes the corpus; returns {file or row id: (stage, reason)} for every bad input."""
    d = root / "data" / "python"
    d.mkdir(parents=True)
    expect = {}

    def rel(name):
        return f"data/python/{name}"

    pq.write_table(pa.table(good_rows(5, "clean")), d / "clean.parquet")
    # a valid file whose footer is overwritten, and one cut in half
    pq.write_table(pa.table(good_rows(5, "footer")), d / "footer.parquet")
    raw = (d / "footer.parquet").read_bytes()
    (d / "footer.parquet").write_bytes(raw[:-12] + b"\x00" * 8 + raw[-4:])
    expect[f"{file_key(rel('footer.parquet'))}-file"] = ("read", "unreadable_file")
    pq.write_table(pa.table(good_rows(5, "cut")), d / "truncated.parquet")
    raw = (d / "truncated.parquet").read_bytes()
    (d / "truncated.parquet").write_bytes(raw[: len(raw) // 2])
    expect[f"{file_key(rel('truncated.parquet'))}-file"] = ("read", "unreadable_file")
    # rows with bad content inside an otherwise good file (content as binary)
    rows = good_rows(3, "mixed")
    contents = [c.encode() for c in rows["content"]] + [
        b"x = '\xff\xfe not utf-8'\n", b"ab\x00cd = 1\n", b"", b"x = 1\n" * 9_000_000,
        b"y = '" + b"z" * 10_000_000 + b"'\n"]
    n = len(contents)
    pq.write_table(pa.table({
        "content": pa.array(contents, pa.binary()),
        "max_stars_repo_name": ["bad/rows"] * n,
        "max_stars_repo_path": [f"r{i}.py" for i in range(n)]}), d / "mixed.parquet")
    key = file_key(rel("mixed.parquet"))
    expect[f"{key}-3"] = ("read", "non_utf8")
    expect[f"{key}-4"] = ("content_checks", "binary")
    expect[f"{key}-5"] = ("content_checks", "empty_content")
    expect[f"{key}-6"] = ("content_checks", "too_large")   # a 54 MB file
    expect[f"{key}-7"] = ("content_checks", "too_large")   # a 10 MB single line
    # columns: none for the content, the wrong type for it, the wrong type for stars
    pq.write_table(pa.table({"body": ["x = 1\n"]}), d / "nocontent.parquet")
    expect[f"{file_key(rel('nocontent.parquet'))}-file"] = ("read", "unreadable_file")
    pq.write_table(pa.table({"content": pa.array([1, 2], pa.int64())}), d / "inttext.parquet")
    expect[f"{file_key(rel('inttext.parquet'))}-file"] = ("read", "unreadable_file")
    t = pa.table(good_rows(2, "stars"))
    t = t.append_column("max_stars_count", pa.array(["lots", "many"]))
    pq.write_table(t, d / "stars.parquet")
    expect[f"{file_key(rel('stars.parquet'))}-file"] = ("read", "unreadable_file")
    # JSONL with a broken line between good ones
    j = root / "extra.jsonl"
    j.write_text(json.dumps({"content": GOOD, "path": "a.py", "repo": "j/ok"}) + "\n"
                 + '{"content": "def broken(:\n' + "\n"
                 + json.dumps({"content": GOOD.replace("add", "add2"), "path": "b.py",
                               "repo": "j/ok"}) + "\n")
    expect[f"{file_key('extra.jsonl')}-line1"] = ("read", "malformed_json")
    return expect


def test_bad_inputs_are_recorded_and_the_run_goes_on(ray_local, tmp_path):
    root = tmp_path / "corpus"
    expect = write_bad_corpus(root)
    out = tmp_path / "out"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("phase1:\n  near_dedup:\n    enabled: false\n  decontamination:\n"
                   "    enabled: false\n")
    assert main(["--config", str(cfg), "--input", str(root), "--output", str(out),
                 "--phases", "1"]) == 0
    ledger = pads.dataset(out / "removed").to_table().to_pylist()
    got = {r["id"]: r for r in ledger}
    for rid, (stage, reason) in expect.items():
        assert rid in got, (rid, stage, reason)
        assert (got[rid]["stage"], got[rid]["reason"]) == (stage, reason), got[rid]
    for r in ledger:
        if r["reason"] == "unreadable_file":  # the message names the file and the error
            assert r["source"] in r["detail"]
            assert re.search(r": \w+(Error|Invalid|Exception): \S", r["detail"]), r["detail"]
    assert "column 'max_stars_count' (string) cannot be read as int64" in got[
        f"{file_key('data/python/stars.parquet')}-file"]["detail"]
    assert "content column has type int64" in got[
        f"{file_key('data/python/inttext.parquet')}-file"]["detail"]
    docs = pads.dataset(out / "phase1").to_table()
    repos = set(docs.column("repo").to_pylist())
    assert {"ok/clean", "bad/rows", "j/ok"} <= repos  # the good rows went on
    manifest = json.loads((out / "manifest.json").read_text())
    c = manifest["phase1"]["conservation"]
    assert c["ok"] and c["input_rows"] == c["rows_in_documents"] + c["removed_rows"]
    # strict: the first unreadable file stops the run, and the message names it
    strict = tmp_path / "strict.yaml"
    strict.write_text(cfg.read_text() + "read:\n  strict: true\n")
    assert main(["--config", str(strict), "--input", str(root), "--output",
                 str(tmp_path / "out-strict"), "--phases", "1"]) == 5
