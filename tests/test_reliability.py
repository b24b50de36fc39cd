"""Reliability on a local Ray: the same input and config give the same output; workers killed
in the middle of map and shuffle stages are retried to the same output; a driver killed
mid-run resumes with --resume to the same output, without duplicates."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.dataset as pads
import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow


def cli(cfg, root, out, *extra, env=None, wait=True):
    cmd = [sys.executable, "flows/arctic.py", "--config", str(cfg), "--input", str(root),
           "--output", str(out), "--phases", "1,mix", *extra]
    full = {**os.environ, "RAY_ADDRESS": "", **(env or {})}
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, env=full, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
    res = subprocess.run(cmd, cwd=ROOT, env=full, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def snapshot(out) -> dict:
    """Everything a run produced that must not depend on task timing: the documents, the
    ledger (sorted rows) and the mixture shards' checksums."""
    docs = pads.dataset(out / "phase1").to_table().sort_by("doc_id").to_pylist()
    ledger = pads.dataset(out / "removed").to_table().sort_by(
        [("id", "ascending"), ("stage", "ascending")]).to_pylist()
    mix = json.loads((out / "manifest.json").read_text())["mixture"]
    shards = {s["path"]: s["sha256"] for p in mix["phases"].values() for s in p["shards"]}
    return {"docs": docs, "ledger": ledger, "shards": shards}


@pytest.fixture(scope="module")
def reference(stack_corpus, tmp_path_factory):
    root, _ = stack_corpus
    tmp = tmp_path_factory.mktemp("reliability")
    cfg = tmp / "cfg.yaml"
    cfg.write_text("mixture:\n  include: ['1']\nray:\n  object_store_memory_mb: 600\n")
    out = tmp / "reference"
    cli(cfg, root, out)
    return cfg, root, snapshot(out)


def test_same_input_same_output_byte_identical_shards(reference, tmp_path):
    cfg, root, ref = reference
    cli(cfg, root, tmp_path / "again")
    again = snapshot(tmp_path / "again")
    assert again["docs"] == ref["docs"] and again["ledger"] == ref["ledger"]
    assert again["shards"] == ref["shards"]  # same bytes, shard by shard


def test_workers_killed_in_map_and_shuffle_stages(reference, tmp_path):
    cfg, root, ref = reference
    tokens = tmp_path / "faults"
    tokens.mkdir()
    res = cli(cfg, root, tmp_path / "faulty",
              env={"ARCTIC_FAULTS": f"{tokens}:ingest=2,read=2,shuffle=3"})
    from flows.faults import deaths

    assert deaths(str(tokens)) == {"ingest": 2, "read": 2, "shuffle": 3}, res.stderr[-2000:]
    assert snapshot(tmp_path / "faulty") == ref


def test_driver_killed_mid_run_resumes_to_the_same_output(reference, tmp_path):
    cfg, root, ref = reference
    out = tmp_path / "killed"
    proc = cli(cfg, root, out, wait=False)
    marker = out / "_stages" / "exact_dedup" / "_SUCCESS"
    deadline = time.time() + 600
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
    proc.wait(timeout=60)
    assert not (out / "manifest.json").exists()
    res = cli(cfg, root, out, "--resume")
    assert "ingest: finished in an earlier run, skipped (--resume)" in res.stderr
    assert snapshot(out) == ref
