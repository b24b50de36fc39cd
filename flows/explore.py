"""Helpers for the notebooks on the cluster head: connect to Ray, open a run's output, and
pull small samples out of it with Ray Data (per-block samples merged on the driver; the
corpus stays where it is).
"""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import ray
import ray.data

from flows.runtime import Run, export_repo_path, worker_runtime_env
from flows.settings import load_settings
from operators import storage
from operators.schema import LEDGER_SCHEMA


def connect(log=print) -> str:
    """The running cluster when there is one (``ray.init(address="auto")``), else a local
    Ray; returns which."""
    if ray.is_initialized():
        return "already connected"
    try:
        ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), log_to_driver=False,
                 runtime_env=worker_runtime_env())
        where = "cluster"
    except (ConnectionError, RuntimeError, ValueError):
        export_repo_path()
        ray.init(address="local", include_dashboard=False, log_to_driver=False)
        where = "local"
    ray.data.DataContext.get_current().enable_progress_bars = False
    log(f"Ray ({where}): {ray.cluster_resources()}")
    return where


def open_run(output: str, config: str | None = None) -> tuple[Run, dict]:
    """A run's output (local or s3://; ``config`` for the S3 endpoint and credentials) and
    its manifest."""
    settings = load_settings(config, {"output": output})
    run = Run(settings, "", log=lambda m: None)
    manifest = json.loads(storage.read_bytes(run.fs, run.path("manifest.json")))
    return run, manifest


def _first_per_group(t: pa.Table, keys: list[str], k: int) -> pa.Table:
    if t.num_rows == 0:
        return t
    idx = pa.array(range(t.num_rows))
    t = t.append_column("_i", idx)
    firsts = t.group_by(keys).aggregate([("_i", "list")])
    take = [i for lst in firsts.column("_i_list").to_pylist() for i in lst[:k]]
    return t.take(pa.array(take)).drop_columns(["_i"])


def removal_samples(run: Run, per_reason: int = 2, snippet: int = 300) -> list[dict]:
    """Up to ``per_reason`` removed files per (stage, reason) of every ledger, with the start
    of their content."""
    ledgers = [f"removed/{fi.base_name}" for fi in run.fs.get_file_info(
        pafs.FileSelector(run.path("removed"))) if fi.type == pafs.FileType.Directory]
    parts = [run.read(rel, schema=LEDGER_SCHEMA) for rel in sorted(ledgers)]
    ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    block = ds.map_batches(_first_per_group, batch_format="pyarrow", batch_size=None,
                           fn_kwargs={"keys": ["stage", "reason"], "k": per_reason})
    rows = pa.Table.from_pylist(block.take_all(), schema=LEDGER_SCHEMA)  # one execution
    rows = _first_per_group(rows, ["stage", "reason"], per_reason).to_pylist()
    texts = contents(run, [r["id"] for r in rows])
    for r in rows:
        r["content"] = (texts.get(r["id"]) or "")[:snippet]
    return sorted(rows, key=lambda r: (r["stage"], r["reason"]))


def _pick(t: pa.Table, ids: list[str]) -> pa.Table:
    return t.filter(pc.is_in(t.column("id"), value_set=pa.array(ids, pa.string())))


def contents(run: Run, ids: list[str]) -> dict[str, str]:
    """The content of a few files by id, found by a streaming filter over the cleaned files
    (phase 3's rejected outputs are looked up in its generation work)."""
    ids = [i for i in ids if i]
    if not ids:
        return {}
    found = run.read("_work/clean", columns=["id", "content"]).map_batches(
        _pick, fn_kwargs={"ids": ids}, batch_format="pyarrow").take_all()
    out = {r["id"]: r["content"] for r in found}
    if run.exists("_work/synth"):
        synth = run.read("_work/synth", columns=["id", "content"]).map_batches(
            _pick, fn_kwargs={"ids": ids}, batch_format="pyarrow").take_all()
        out.update({r["id"]: r["content"] or "" for r in synth})
    return out


def duplicate_pairs(run: Run, n: int = 3) -> list[dict]:
    """``n`` near-duplicates with the file each was judged a duplicate of, both contents."""
    if not run.exists("removed/near_dedup"):
        return []
    rows = run.read("removed/near_dedup", schema=LEDGER_SCHEMA).take(n)
    texts = contents(run, [r["id"] for r in rows] + [r["duplicate_of"] for r in rows])
    return [{**r, "content": texts.get(r["id"], ""), "kept": texts.get(r["duplicate_of"], "")}
            for r in rows]


def _extremes(t: pa.Table, k: int) -> pa.Table:
    t = t.filter(pc.is_valid(t.column("quality")))
    out = []
    for lang in pc.unique(t.column("lang")).to_pylist():
        sub = t.filter(pc.equal(t.column("lang"), lang))
        order = pc.sort_indices(sub, sort_keys=[("quality", "descending")]).to_pylist()
        out.append(sub.take(pa.array(order[:k] + order[-k:][::-1] if len(order) > k
                                     else order)))
    return pa.concat_tables(out) if out else t.slice(0, 0)


def scored_extremes(run: Run, k: int = 2) -> dict[str, dict[str, list[dict]]]:
    """Per language, the ``k`` best- and worst-scored files (per-block candidates merged on
    the driver)."""
    cols = ["id", "lang", "repo", "path", "quality", "content"]
    cand = run.read("_work/scored", columns=cols).map_batches(
        _extremes, fn_kwargs={"k": k}, batch_format="pyarrow", batch_size=None).take_all()
    by_lang: dict[str, list[dict]] = {}
    for r in cand:
        by_lang.setdefault(r["lang"], []).append(r)
    return {lang: {"top": sorted(rs, key=lambda r: -r["quality"])[:k],
                   "bottom": sorted(rs, key=lambda r: r["quality"])[:k]}
            for lang, rs in sorted(by_lang.items())}
