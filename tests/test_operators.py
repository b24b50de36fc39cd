"""Unit tests: each operator on tiny tables, no Ray."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from operators.dedup import (ContentHasher, choose_representatives,
                             normalise_content)
from operators.filters.basic import BasicFilters, line_stats
from operators.filters.content_checks import ContentChecks
from operators.filters.language import LanguageFilter
from operators.grouping import RepoDocumentBuilder, group_key_repo
from operators.io import FileReader, UnreadableInput, file_key, normalise_batch
from operators.languages import canonical_language, language_from_path, validate_languages
from operators.schema import FILE_SCHEMA, conform, live_mask, mark_removed, tombstones_to_ledger
from operators.tokens import TokenCounter, count_tokens

TOK = "packaged:smollm2"


def files(**cols) -> pa.Table:
    n = len(next(iter(cols.values())))
    cols.setdefault("id", [f"f{i}" for i in range(n)])
    return conform(pa.table(cols), FILE_SCHEMA)


# -- languages ---------------------------------------------------------------------------
def test_language_names_and_extensions():
    assert canonical_language("c-sharp") == "C#"
    assert canonical_language("jupyter-notebook") == "Jupyter Notebook"
    assert canonical_language("PYTHON") == "Python"
    assert language_from_path("a/b/x.hpp") == "C++"
    assert language_from_path("x.h") == "C"
    assert language_from_path("README.md") is None
    assert language_from_path("pkg/_speedups.pyx") is None  # Cython, as in The Stack
    with pytest.raises(ValueError, match="unknown language 'Cobol'"):
        validate_languages(["Python", "Cobol"])


# -- schema / ledger ---------------------------------------------------------------------
def test_mark_removed_keeps_first_reason_and_nulls_content():
    t = files(content=["a", "b", "c"])
    t = mark_removed(t, pa.array([True, False, False]), "s1", "r1")
    t = mark_removed(t, pa.array([True, True, False]), "s2", "r2", "why")
    assert t.column("removed_stage").to_pylist() == ["s1", "s2", None]
    assert t.column("removed_reason").to_pylist() == ["r1", "r2", None]
    assert t.column("content").to_pylist() == [None, None, "c"]
    ledger = tombstones_to_ledger(t)
    assert ledger.column("id").to_pylist() == ["f0", "f1"]
    assert ledger.column("detail").to_pylist() == [None, "why"]


# -- readers -----------------------------------------------------------------------------
def test_normalise_maps_stack_columns_ids_and_languages():
    batch = pa.table({
        "hexsha": ["aa", "bb", "cc"], "content": ["print(1)\n", "int x;\n", "x"],
        "max_stars_repo_name": ["o/r", "o/r", None], "max_stars_repo_path": [
            "a.py", "b.cpp", "c.unknown"],
        "max_stars_repo_licenses": [["MIT"], ["MIT", "Apache-2.0"], []],
        "max_stars_count": [3, None, 1], "lang": [None, None, None]})
    t = normalise_batch(batch, "data/x/f.parquet", 10, dir_lang=None)
    assert t.schema == FILE_SCHEMA
    key = file_key("data/x/f.parquet")
    assert t.column("id").to_pylist() == [f"{key}-10", f"{key}-11", f"{key}-12"]
    assert t.column("lang").to_pylist() == ["Python", "C++", None]
    assert t.column("license").to_pylist() == ["MIT", "MIT,Apache-2.0", None]
    assert t.column("blob_sha").to_pylist() == ["aa", "bb", "cc"]
    assert t.column("size_bytes").to_pylist() == [9, 7, 1]
    assert t.column("ext").to_pylist() == ["py", "cpp", "unknown"]
    # the same batch gives the same ids: stable across runs
    assert normalise_batch(batch, "data/x/f.parquet", 10, None).column("id") == t.column("id")


def test_normalise_flags_non_utf8_binary_content():
    batch = pa.table({"content": pa.array([b"ok = 1\n", b"\xff\xfe bad", None], pa.binary()),
                      "path": ["a.py", "b.py", "c.py"]})
    t = normalise_batch(batch, "f.parquet", 0, None)
    assert t.column("removed_reason").to_pylist() == [None, "non_utf8", "missing_content"]
    assert t.column("content").to_pylist()[0] == "ok = 1\n"


def test_reader_cuts_batches_by_content_bytes(tmp_path):
    sizes = [100, 100, 100, 900, 50, 50, 2000, 10]
    t = pa.table({"content": ["x" * n for n in sizes],
                  "max_stars_repo_path": [f"f{i}.py" for i in range(len(sizes))]})
    (tmp_path / "data" / "python").mkdir(parents=True)
    pq.write_table(t, tmp_path / "data/python/a.parquet")
    path = str(tmp_path / "data/python/a.parquet")
    whole = list(FileReader(str(tmp_path), pafs.LocalFileSystem()).read_file(path))
    cut = list(FileReader(str(tmp_path), pafs.LocalFileSystem(), batch_bytes=300)
               .read_file(path))
    assert [b.num_rows for b in whole] == [8]
    # at most 300 content bytes per batch, a larger row alone; same rows and ids in order
    assert [b.num_rows for b in cut] == [3, 1, 2, 1, 1]
    assert pa.concat_tables(cut).column("id").to_pylist() == whole[0].column("id").to_pylist()


def test_reader_streams_parquet_and_quarantines_bad_files(tmp_path):
    good = pa.table({"content": [f"x = {i}\n" for i in range(10)],
                     "max_stars_repo_path": [f"f{i}.py" for i in range(10)]})
    (tmp_path / "data" / "python").mkdir(parents=True)
    pq.write_table(good, tmp_path / "data/python/a.parquet", row_group_size=3)
    pq.write_table(pa.table({"text_wrong": ["x"]}), tmp_path / "data/python/nocontent.parquet")
    (tmp_path / "data/python/corrupt.parquet").write_bytes(b"PAR1 not really parquet")
    reader = FileReader(str(tmp_path), pafs.LocalFileSystem(), batch_rows=4)
    batches = list(reader.read_file(str(tmp_path / "data/python/a.parquet")))
    assert [b.num_rows for b in batches] == [4, 4, 2]
    assert all(b.column("lang").to_pylist() == ["Python"] * b.num_rows for b in batches)
    for name, reason in (("nocontent", "unreadable_file"), ("corrupt", "unreadable_file")):
        (q,) = list(reader.read_file(str(tmp_path / f"data/python/{name}.parquet")))
        assert q.column("removed_reason").to_pylist() == [reason]
        assert f"{name}.parquet" in q.column("removed_detail")[0].as_py()
    strict = FileReader(str(tmp_path), pafs.LocalFileSystem(), strict=True)
    with pytest.raises(UnreadableInput, match="corrupt.parquet"):
        list(strict.read_file(str(tmp_path / "data/python/corrupt.parquet")))


def test_reader_jsonl_keeps_line_numbers_and_records_broken_lines(tmp_path):
    lines = [json.dumps({"content": "a = 1\n", "path": "a.py", "repo": "o/r"}),
             "{not json", "",
             json.dumps({"content": "b = 2\n", "path": "b.py", "repo": "o/r"}),
             json.dumps({"path": "c.py"})]
    (tmp_path / "x.jsonl").write_text("\n".join(lines))
    reader = FileReader(str(tmp_path), pafs.LocalFileSystem(), batch_rows=2)
    out = pa.concat_tables(list(reader.read_file(str(tmp_path / "x.jsonl"))))
    key = file_key("x.jsonl")
    got = dict(zip(out.column("id").to_pylist(), out.column("removed_reason").to_pylist()))
    assert got == {f"{key}-0": None, f"{key}-line1": "malformed_json", f"{key}-2": None,
                   f"{key}-3": "missing_content"}


# -- filters -----------------------------------------------------------------------------
def test_alnum_fraction_lookup_equals_the_unicode_regex():
    from operators.filters.basic import alnum_fraction

    texts = ["abc 123", "", None, "héllo wörld ß ٣ Ⅻ", "!!!", "x\x00y", "日本語 abc",
             "   ", "def f(x):\n    return x_1 + 2  # ok\n", "ñ" * 50 + "-" * 50]
    arr = pa.array(texts)

    def regex(a):
        a = pc.fill_null(a, "")
        chars = pc.utf8_length(a).to_numpy(zero_copy_only=False).astype(float)
        hits = pc.count_substring_regex(a, r"[\p{L}\p{N}]").to_numpy(
            zero_copy_only=False).astype(float)
        return np.divide(hits, chars, out=np.zeros_like(chars), where=chars > 0)

    for a in (arr, arr.slice(2, 6), pa.chunked_array([arr.slice(0, 3), arr.slice(3)]),
              arr.cast(pa.large_string())):
        full = a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a
        assert np.array_equal(alnum_fraction(a), regex(full))
    expected = [sum(ch.isalnum() for ch in t) / len(t) if t else 0.0 for t in texts]
    assert np.allclose(alnum_fraction(arr), expected)


def test_content_checks():
    t = files(content=["ok\n", "  \n\t", "a\x00b", "x" * 50], path=["a", "b", "c", "d"])
    t = ContentChecks(max_file_bytes=20)(t)
    assert t.column("removed_reason").to_pylist() == [None, "empty_content", "binary",
                                                      "too_large"]
    with pytest.raises(ValueError):
        ContentChecks(max_file_bytes=0)


def test_language_filter():
    t = files(content=["a", "b", "c"], lang=["Python", "Markdown", None])
    t = LanguageFilter(languages=("Python", "go"))(t)
    assert t.column("removed_reason").to_pylist() == [None, "language_not_targeted",
                                                      "unknown_language"]


def test_line_stats_and_basic_filters():
    mx, mean = line_stats(pa.array(["ab\nabcd", "", "x" * 5]))
    assert list(mx) == [4, 0, 5] and list(mean) == [3.0, 0.0, 5.0]
    long_line = "a = 1\n" + "b" * 1001 + "\n"
    wide = "\n".join(["c" * 150] * 3)
    symbols = "{}[]();;;;;;;;;;;;a\n"
    ok = "def f(x):\n    return x * 2\n"
    t = files(content=[long_line, wide, symbols, ok])
    t = BasicFilters()(t)
    assert t.column("removed_reason").to_pylist() == [
        "max_line_length", "mean_line_length", "alnum_fraction", None]
    # a looser threshold keeps the wide file
    t2 = BasicFilters(max_mean_line_length=200)(files(content=[wide]))
    assert live_mask(t2).to_pylist() == [True]
    with pytest.raises(ValueError, match="min_alnum_fraction"):
        BasicFilters(min_alnum_fraction=1.5)


# -- tokens ------------------------------------------------------------------------------
def test_token_counter_uses_a_real_tokenizer():
    n = count_tokens(["def foo(x):\n    return x + 1\n", ""], TOK)
    assert 8 <= n[0] <= 16 and n[1] == 0
    t = mark_removed(files(content=["import os\n", "x"]), pa.array([False, True]), "s", "r")
    t = TokenCounter(TOK)(t)
    assert t.column("n_tokens").to_pylist()[0] == count_tokens(["import os\n"], TOK)[0]
    assert t.column("n_tokens").to_pylist()[1] is None


# -- exact dedup -------------------------------------------------------------------------
def test_normalisation_makes_whitespace_variants_equal():
    a = "def f():\n    return 1\n"
    b = "\r\n".join(line + " \t" for line in a.split("\n")) + "\n\n"
    c = "def f():\n    return 2\n"
    norm = normalise_content(pa.array([a, b, c])).to_pylist()
    assert norm[0] == norm[1] != norm[2]
    t = ContentHasher()(files(content=[a, b, c]))
    h = t.column("content_hash").to_pylist()
    assert h[0] == h[1] != h[2] and len(h[0]) == 32


def test_keep_policy_permissive_then_stars_then_id():
    t = files(id=["d", "b", "a", "c", "e", "s"], content_hash=["h", "h", "h", "h", "g", None],
              license=["GPL-3.0", "MIT", "Apache-2.0", "MIT", "MIT", "MIT"],
              stars=[900, 5, 5, 2, 1, 1])
    out = choose_representatives(t, "content_hash", "exact_dedup", "exact_duplicate")
    got = dict(zip(out.column("id").to_pylist(), out.column("duplicate_of").to_pylist()))
    # a and b tie on license and stars: the smaller id wins; GPL loses despite stars
    assert got == {"b": "a", "c": "a", "d": "a"}
    assert set(out.column("reason").to_pylist()) == {"exact_duplicate"}
    # order of rows does not matter
    shuffled = t.take(pa.array([5, 3, 1, 4, 0, 2]))
    out2 = choose_representatives(shuffled, "content_hash", "exact_dedup", "exact_duplicate")
    assert sorted(out2.column("id").to_pylist()) == ["b", "c", "d"]


def test_hash_partitions_are_stable_and_in_range():
    from flows.shuffle import hash_partition

    t = pa.table({"content_hash": ["ff" * 16, "00" * 16, None, "0123456789abcdef" * 2],
                  "band": pa.array([3, 3, 7, 9], pa.int32())})
    for cols in (["content_hash"], ["band"], ["band", "content_hash"]):
        b = hash_partition(t, cols, 7).to_pylist()
        assert all(0 <= x < 7 for x in b)
        assert hash_partition(t, cols, 7).to_pylist() == b
    assert hash_partition(t, ["band"], 7).to_pylist()[0] == hash_partition(
        t, ["band"], 7).to_pylist()[1]


# -- grouping ----------------------------------------------------------------------------
def group_table(n=4, drop=()):
    rows = [{"id": f"r-{i}", "content": f"x = {i}\n", "path": f"m{i}.py", "n_tokens": 4,
             "lang": "Python", "repo": "o/r", "source": "s", "_drop": False}
            for i in range(n)]
    rows += [{"id": d, "content": None, "path": None, "n_tokens": None, "lang": "Python",
              "repo": "o/r", "source": "s", "_drop": True} for d in drop]
    return pa.Table.from_pylist(rows)


def test_repo_documents_have_headers_seeded_order_and_drop_marked_files():
    b = RepoDocumentBuilder(tokenizer=TOK, seed=1)
    docs = b(group_table(4, drop=["r-2"]))
    assert docs.num_rows == 1
    d = docs.to_pylist()[0]
    assert d["phase"] == 1 and d["repo"] == "o/r" and d["n_files"] == 3
    assert "r-2" not in d["file_ids"] and sorted(d["file_ids"]) == ["r-0", "r-1", "r-3"]
    assert d["text"].startswith("<repo_name>o/r\n<file_sep>m")
    for fid in d["file_ids"]:
        i = fid.split("-")[1]
        assert f"<file_sep>m{i}.py\nx = {i}\n" in d["text"]
    # the order depends on the seed only, not on the row order
    rev = group_table(4, drop=["r-2"]).take(pa.array([4, 3, 2, 1, 0]))
    assert b(rev).to_pylist()[0]["file_ids"] == d["file_ids"]
    other = RepoDocumentBuilder(tokenizer=TOK, seed=2)
    orders = {tuple(RepoDocumentBuilder(tokenizer=TOK, seed=s)(group_table(6)).to_pylist()[0][
        "file_ids"]) for s in range(5)}
    assert len(orders) > 1 and other.seed == 2
    # tokens: file tokens plus header tokens
    heads = ["<repo_name>o/r\n"] + [f"<file_sep>m{f.split('-')[1]}.py\n" for f in d["file_ids"]]
    assert d["n_tokens"] == 3 * 4 + sum(count_tokens(heads, TOK))


def test_repo_documents_split_at_file_boundaries():
    docs = RepoDocumentBuilder(tokenizer=TOK, max_doc_tokens=20)(group_table(6)).to_pylist()
    assert len(docs) > 1 and [d["part"] for d in docs] == list(range(len(docs)))
    assert sum(d["n_files"] for d in docs) == 6
    assert all(d["text"].startswith("<repo_name>o/r\n") for d in docs)
    assert len({d["doc_id"] for d in docs}) == len(docs)
    # a single file bigger than the limit is a part of its own, never cut
    big = RepoDocumentBuilder(tokenizer=TOK, max_doc_tokens=1)(group_table(2)).to_pylist()
    assert [d["n_files"] for d in big] == [1, 1]
    with pytest.raises(ValueError, match="file_header"):
        RepoDocumentBuilder(file_header="no path")


def test_files_without_repo_group_by_source():
    t = files(content=["a", "b"], repo=[None, "o/r"], source=["data/x.parquet", "s"])
    assert group_key_repo(t).to_pylist() == ["(no repo) data/x.parquet", "o/r"]


def test_token_counts_have_no_padding_or_truncation():
    # the packaged MiniLM tokenizer.json pads to 128 and truncates at 512 by default
    assert count_tokens(["hello world", "x " * 1000], "packaged:minilm") == [2, 1000]
