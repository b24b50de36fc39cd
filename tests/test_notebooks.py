"""The notebooks run top to bottom on the embedded run's output (nbclient, a real kernel)."""

from __future__ import annotations

import os

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT

pytestmark = pytest.mark.slow


def execute(name: str, out, tmp_path) -> nbformat.NotebookNode:
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    env = {"ARCTIC_OUT": str(out), "RAY_ADDRESS": ""}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        # the kernel inherits this environment; no cluster is up, so it starts a local Ray
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    nbformat.write(nb, tmp_path / name)
    return nb


def outputs(nb) -> str:
    text = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            text.append(o.get("text", ""))
            data = o.get("data", {})
            text.append(data.get("text/plain", "") + data.get("text/html", ""))
    return "\n".join(text)


def test_explore_run_notebook(embedded_run, tmp_path):
    out, _, _ = embedded_run
    text = outputs(execute("explore_run.ipynb", out, tmp_path))
    assert "Ray (local)" in text
    assert "input files =" in text
    assert "near_duplicate" in text or "exact_duplicate" in text
    assert "pair(s) shown" in text
    assert "phase shares:" in text and "synthetic" in text


def test_try_models_notebook(embedded_run, tmp_path):
    out, _, _ = embedded_run
    nb = execute("try_models.ipynb", out, tmp_path)
    text = outputs(nb)
    assert "quality" in text
    assert text.count(">>>") == 2  # two answers from the rewriter
    assert "removed_reason" in text
