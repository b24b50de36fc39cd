"""Phase 2 in the flow: score the phase-1 files, select the top per language, repeat."""

from __future__ import annotations

import json

import pyarrow.dataset as pads
import pytest

from flows.arctic import main
from corpus import fixed_head

pytestmark = pytest.mark.slow


def test_phase2_on_a_phase1_output(ray_local, stack_corpus, tmp_path):
    root, _ = stack_corpus
    fixed_head(tmp_path / "head.json")  # fixed weights: the real encoder, no training
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"phase2:\n  head: {tmp_path / 'head.json'}\n  budget_ratio: 0.3\n"
                   "  epochs: 2\n  bins: 64\n")
    out = tmp_path / "out"
    args = ["--config", str(cfg), "--input", str(root), "--output", str(out)]
    assert main(args + ["--phases", "2"]) == 4  # no phase-1 output yet: refused, clearly
    assert main(args + ["--phases", "1"]) == 0
    assert main(args + ["--phases", "2"]) == 0

    manifest = json.loads((out / "manifest.json").read_text())
    assert "phase1" in manifest  # kept from the phase-1 run
    p2 = manifest["phase2"]
    kept = [i for ids in pads.dataset(out / "phase1").to_table().column("file_ids")
            .to_pylist() for i in ids]
    assert p2["score"]["files"] == len(kept)
    # whole files only: within half of the largest file of the corpus
    assert abs(p2["selected_tokens"] - p2["budget_tokens"]) <= 0.5 * max(
        r["n_tokens"] for r in pads.dataset(out / "_work/scored").to_table(
            columns=["n_tokens"]).to_pylist()) * len(p2["languages"])
    assert p2["phase1_tokens"] == sum(v["phase1_tokens"] for v in p2["languages"].values())

    scored = pads.dataset(out / "_work/scored").to_table(
        columns=["id", "lang", "quality"]).to_pylist()
    assert {r["id"] for r in scored} == set(kept) and all(
        0 <= r["quality"] <= 1 for r in scored)
    docs = pads.dataset(out / "phase2").to_table().to_pylist()
    assert {d["phase"] for d in docs} == {2} and {d["epoch"] for d in docs} == {1, 2}
    by_epoch = {e: sorted(i for d in docs if d["epoch"] == e for i in d["file_ids"])
                for e in (1, 2)}
    assert by_epoch[1] == by_epoch[2] and len(set(by_epoch[1])) == len(by_epoch[1])
    assert len({d["doc_id"] for d in docs}) == len(docs)
    chosen = set(by_epoch[1])
    assert chosen and chosen <= set(kept)
    for lang in {r["lang"] for r in scored}:  # the top of each language, nothing else
        inside = [r["quality"] for r in scored if r["lang"] == lang and r["id"] in chosen]
        outside = [r["quality"] for r in scored if r["lang"] == lang and r["id"] not in chosen]
        if inside and outside:
            assert min(inside) >= max(outside)
