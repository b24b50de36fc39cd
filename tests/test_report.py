"""The run report of the embedded run, rendered by headless Chromium (Debian's chromium):
the page shows its sections, numbers from the manifest and its plots."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]


def chromium(tmp_path, *args):
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium(embedded_run, tmp_path):
    out, _, _ = embedded_run
    manifest = json.loads((out / "manifest.json").read_text())
    page = (out / "report.html").as_uri()
    dom = chromium(tmp_path, "--dump-dom", page).stdout
    for section in ("Funnel", "Removal reasons", "Language mix per phase",
                    "Score distributions", "Annotators", "Budgets", "Wall time per stage",
                    "Mixture", "Training schedule and token files", "Discriminator",
                    "Seed coreset coverage"):
        assert f">{section}</h2>" in dom, section
    # numbers from the manifest, as the page shows them
    assert f"{manifest['phase1']['input_rows']:,}" in dom
    assert f"{manifest['mixture']['tokens']:,}" in dom
    assert dom.count("data:image/png;base64,") == 7  # self-contained: plots inline
    assert "http://" not in dom and "https://" not in dom  # nothing fetched from outside
    shot = tmp_path / "report.png"
    res = chromium(tmp_path, "--window-size=1200,2600", f"--screenshot={shot}", page)
    assert shot.exists(), res.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    # the plots were decoded and drawn: many saturated (coloured) pixels, as text is grey
    sat = img.max(axis=2) - img.min(axis=2)
    assert (sat > 80).mean() > 0.03
    # and the markdown twin links the same plots, which exist
    md = (out / "report.md").read_text()
    for name in ("funnel", "removals", "languages", "scores", "annotators", "budgets",
                 "times"):
        assert f"(report_files/{name}.png)" in md and (out / "report_files" / f"{name}.png"
                                                        ).stat().st_size > 1000
