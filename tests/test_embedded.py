"""The embedded default through the real CLI: a fresh local Ray, the sample corpus built
from source code on this machine, the packaged tokenizer."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.dataset as pads
import pytest
import yaml

from conftest import ROOT

pytestmark = pytest.mark.slow


def test_embedded_default_cli(tmp_path):
    base = yaml.safe_load((ROOT / "flows/configs/embedded.yaml").read_text())
    base["sample"].update(max_bytes=3_000_000, max_repo_bytes=400_000,
                          cache_dir=str(tmp_path / "sample"))
    base["ray"]["object_store_memory_mb"] = 800
    cfg = tmp_path / "small.yaml"
    cfg.write_text(yaml.safe_dump(base))
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "flows/arctic.py", "--config", str(cfg),
                          "--output", str(out)], cwd=ROOT, capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stderr[-4000:]
    assert f"output: {out}/phase1" in res.stdout
    assert "conservation: input rows" in res.stdout and "OK" in res.stdout
    summary = json.loads((tmp_path / "sample" / "summary.json").read_text())
    assert "Python" in summary["languages"] and summary["repos"] >= 5
    # The Stack v1 layout with its column names
    shard = next((tmp_path / "sample" / "data" / "python").glob("*.parquet"))
    cols = set(pads.dataset(shard).schema.names)
    assert {"hexsha", "content", "lang", "max_stars_repo_name", "max_stars_repo_path",
            "max_stars_repo_licenses"} <= cols
    manifest = json.loads((out / "manifest.json").read_text())
    p1 = manifest["phase1"]
    assert p1["conservation"]["ok"] and p1["documents"] > 0
    assert p1["input_rows"] == sum(v["files"] for v in summary["languages"].values())
