"""The training mixture: planning (repeats, tokens, shares, caps), expansion into shards,
the shard files; then the mixture of the embedded run: `verify`, tampering, and the readers
a training job uses (HF datasets, polars, DuckDB) loading it unchanged."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import ROOT
from flows.settings import SettingsError, load_settings
from operators.mixture import (MIXTURE_SCHEMA, Component, MixtureSettings, cap_languages,
                               expand, plan_phase, shard_bytes, shard_count)


def docs(n, lang="Python", tokens=100, epoch=None):
    return pa.table({
        "doc_id": [f"{lang}-{i}" for i in range(n)], "text": ["x = 1\n" * 10] * n,
        "lang": [lang] * n, "repo": [f"r{i % 7}" for i in range(n)],
        "n_tokens": pa.array([tokens] * n, pa.int64()),
        "epoch": pa.array([epoch] * n, pa.int16()),
        "quality": pa.array([0.5] * n, pa.float32())})


def test_plan_repeats_tokens_and_shares():
    # the paper's phase 3: synthetic as it is, high-quality at 60% of the phase
    comps = [Component("synthetic", "phase3", repeats=1.0),
             Component("high_quality", "phase2", first_epoch_only=True, share=0.6)]
    plan = plan_phase(comps, [{"Python": 2000}, {"Python": 10000, "C": 2000}])
    assert plan[0]["tokens"] == pytest.approx(2000)
    assert plan[1]["tokens"] == pytest.approx(3000)  # 0.6 of 5000
    assert plan[1]["factor"] == pytest.approx(0.25)
    plan = plan_phase([Component("raw", "phase1", tokens=500)], [{"Go": 400}])
    assert plan[0]["factor"] == pytest.approx(1.25)


def test_language_caps_hold_after_renormalising():
    avail = {"Python": 800, "C": 100, "Go": 100}
    f = cap_languages({k: 1.0 for k in avail}, avail, {"Python": 0.5})
    tokens = {k: f[k] * avail[k] for k in avail}
    assert tokens["Python"] / sum(tokens.values()) == pytest.approx(0.5)
    assert f["C"] == f["Go"] == 1.0
    # two caps that interact still both hold
    f = cap_languages({k: 1.0 for k in avail}, avail, {"Python": 0.4, "C": 0.05})
    tokens = {k: f[k] * avail[k] for k in avail}
    total = sum(tokens.values())
    assert tokens["Python"] / total <= 0.4 + 1e-6 and tokens["C"] / total <= 0.05 + 1e-6


def test_expand_copies_epochs_and_determinism():
    t = docs(2000)
    kw = dict(phase=1, source="raw", factors={"Python": 1.25}, first_epoch_only=False,
              n_shards=4, seed=7)
    out = expand(t, **kw)
    # floor(1.25) copies each, one more for a hashed quarter of the documents
    assert 2000 * 1.25 * 0.95 < out.num_rows < 2000 * 1.25 * 1.05
    epochs = out.column("epoch").to_pylist()
    assert epochs.count(1) == 2000 and set(epochs) == {1, 2}
    assert set(out.column("_shard").to_pylist()) == {0, 1, 2, 3}
    assert out.equals(expand(t, **kw))  # same seed, same rows, same shards and order keys
    other = expand(t, **{**kw, "seed": 8})
    assert other.column("_key").to_pylist() != out.column("_key").to_pylist()
    # a repeated input keeps its epochs apart; first_epoch_only keeps its first epoch
    rep = pa.concat_tables([docs(10, epoch=e) for e in (1, 2, 3, 4)])
    two = expand(rep, **{**kw, "factors": {"Python": 2.0}})
    assert sorted(set(two.column("epoch").to_pylist())) == list(range(1, 9))
    first = expand(rep, **{**kw, "factors": {"Python": 1.0}, "first_epoch_only": True})
    assert first.num_rows == 10 and set(first.column("epoch").to_pylist()) == {1}
    assert expand(docs(5, lang="C"), **kw).num_rows == 0  # a language without a factor


def test_shard_file_is_ordered_zstd_with_row_groups():
    rows = expand(docs(300), phase=2, source="high_quality", factors={"Python": 1.0},
                  first_epoch_only=False, n_shards=1, seed=0)
    data, table = shard_bytes(rows, row_group_bytes=6000, compression="zstd",
                              compression_level=3)
    pf = pq.ParquetFile(pa.BufferReader(data))
    assert pf.schema_arrow.remove_metadata() == MIXTURE_SCHEMA
    assert pf.metadata.num_row_groups == 3  # 60 bytes a row, 100 rows a group
    assert pf.metadata.row_group(0).column(0).compression == "ZSTD"
    keys = rows.column("_key").to_pylist()
    order = sorted(range(len(keys)), key=keys.__getitem__)
    assert table.column("doc_id").to_pylist() == [rows.column("doc_id")[i].as_py()
                                                   for i in order]
    assert shard_count(2e9, 0.25, 512 << 20) == 1 and shard_count(4e9, 0.25, 512 << 20) == 2


def test_settings_validate_components():
    s = load_settings(None, {})
    assert s.phases == ["1", "2", "3", "mix"]
    assert [c.source for c in s.mixture.phase3] == ["synthetic", "high_quality"]
    with pytest.raises(ValueError, match="exactly one"):
        Component("raw", "phase1", repeats=1.0, share=0.5)
    with pytest.raises(ValueError, match="at least one component"):
        MixtureSettings(phase1=[Component("raw", "phase1", share=0.5)])
    with pytest.raises(ValueError, match="source"):
        Component("web", "phase1", repeats=1.0)
    with pytest.raises(SettingsError, match="max_lang_share"):
        from flows.config import build as _build
        from flows.settings import Settings

        _build(Settings, {"mixture": {"phase1": [
            {"source": "raw", "input": "phase1", "repeats": 1.0,
             "max_lang_share": {"Python": 2}}]}}, "")


# -- the embedded run's mixture ---------------------------------------------------------------

@pytest.mark.slow
def test_embedded_mixture_matches_the_plan_and_verifies(embedded_run, tmp_path):
    out, _, _ = embedded_run
    manifest = json.loads((out / "manifest.json").read_text())
    mix = manifest["mixture"]
    assert set(mix["phases"]) == {"1", "2", "3"}
    p1, p2, p3 = (mix["phases"][k] for k in "123")
    # phase 1: 1.25 x the phase-1 documents (a hashed quarter twice), within a few documents
    assert p1["components"][0]["factor"] == 1.25
    assert abs(p1["tokens"] / (1.25 * manifest["phase1"]["tokens"]) - 1) < 0.05
    # phase 2: the phase-2 output as written, its 4 epochs apart
    assert p2["tokens"] == p2["components"][0]["available_tokens"] > 0
    assert set(p2["epochs"]) == {"1", "2", "3", "4"} and set(p2["sources"]) == {"high_quality"}
    assert p3["sources"]["synthetic"]["tokens"] == manifest["phase3"]["selected_tokens"]
    files = sorted(p.relative_to(out).as_posix() for p in (out / "mixture").rglob("*.parquet"))
    assert files == sorted(s["path"] for v in mix["phases"].values() for s in v["shards"])
    assert all(f.startswith(f"mixture/phase{f.split('phase')[1][0]}/part-") for f in files)
    verify = [sys.executable, "flows/verify.py"]
    res = subprocess.run(verify + [str(out)], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr[-2000:]
    assert f"verify OK: {len(files)} shards" in res.stdout
    # tampering is caught: a changed shard, a missing row, an unlisted file
    bad = tmp_path / "bad"
    skip = {"_work", "phase1", "phase2", "phase3", "removed"}  # the flow outputs: not needed
    shutil.copytree(out, bad, ignore=lambda d, names: skip & set(names) if d == str(out)
                    else [])
    shard = bad / p2["shards"][0]["path"]
    t = pq.read_table(shard)
    pq.write_table(t.slice(1), shard, compression="zstd")
    (bad / "mixture" / "phase1" / "stray.parquet").write_bytes(b"not parquet")
    res = subprocess.run(verify + [str(bad)], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 1
    assert "sha256" in res.stdout and "rows, manifest" in res.stdout
    assert "stray.parquet: in the mixture but not in the manifest" in res.stdout
    assert "phase 2: tokens recomputed from the shards differ" in res.stdout


@pytest.mark.slow
def test_readers_load_the_mixture_unchanged(embedded_run):
    out, _, _ = embedded_run
    mix = json.loads((out / "manifest.json").read_text())["mixture"]
    glob = str(out / "mixture" / "*" / "*.parquet")
    cols = ["text", "phase", "epoch", "source", "lang", "repo", "n_tokens", "quality"]

    import duckdb
    import polars as pl
    from datasets import load_dataset

    df = pl.read_parquet(glob)
    assert df.height == mix["rows"] and int(df["n_tokens"].sum()) == mix["tokens"]
    assert set(cols) <= set(df.columns)
    by_phase = df.group_by("phase").agg(pl.col("n_tokens").sum()).sort("phase")
    assert dict(zip(by_phase["phase"].to_list(), by_phase["n_tokens"].to_list())) == {
        int(k): v["tokens"] for k, v in mix["phases"].items()}

    con = duckdb.connect()
    rows = con.execute(f"SELECT phase, source, count(*), sum(n_tokens) FROM "
                       f"read_parquet('{glob}') GROUP BY ALL ORDER BY ALL").fetchall()
    assert {(int(p), s): (n, t) for p, s, n, t in rows} == {
        (int(p), s): (v["rows"], v["tokens"]) for p, ph in mix["phases"].items()
        for s, v in ph["sources"].items()}

    ds = load_dataset("parquet", data_files={"train": glob}, split="train",
                      cache_dir=str(out.parent / "hf-cache"))
    assert ds.num_rows == mix["rows"] and set(cols) <= set(ds.column_names)
    assert sum(ds["n_tokens"]) == mix["tokens"]
    assert isinstance(ds[0]["text"], str) and ds[0]["text"]
