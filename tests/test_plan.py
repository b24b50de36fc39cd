"""`arctic-curate plan`: the input listed from footers only, the cost model fitted and
applied, the CLI, and the plan the flow records and the report sets against the run."""

from __future__ import annotations

import json

import pyarrow.dataset as pads
import pytest

from flows.arctic import main
from flows.plan import (RATES, calibrate, list_input, load_rates, plan, plan_lines,
                        predict_phase1)
from flows.settings import load_settings


def test_input_listing_reads_footers_not_content(stack_corpus, tmp_path):
    root, expected = stack_corpus
    listing = list_input(str(root))
    good = [str(f) for f in root.glob("data/*/*.parquet") if "corrupt" not in f.name]
    table = pads.dataset(good, format="parquet").to_table(columns=["size", "lang"])
    jsonl = list(root.glob("data/*/*.jsonl"))
    assert listing["rows"] == table.num_rows
    assert listing["bytes"] == sum(table.column("size").to_pylist()) + sum(
        f.stat().st_size for f in jsonl)
    assert listing["files"] == len(good) + len(jsonl) + 1
    assert listing["unreadable_files"] == 1  # the corrupt footer: quarantined by the run
    assert listing["jsonl_files"] == len(jsonl)
    assert set(listing["languages"]) >= {"Python", "JavaScript", "Go"}
    # without The Stack's size column the footer's column size stands in for it
    import pyarrow.parquet as pq

    f = sorted(root.glob("data/python/*.parquet"))[0]
    t = pq.read_table(f).drop_columns(["size"])
    (tmp_path / "data" / "python").mkdir(parents=True)
    pq.write_table(t, tmp_path / "data" / "python" / "x.parquet", use_dictionary=False)
    est = list_input(str(tmp_path))
    real = sum(len(s.encode()) for s in t.column("content").to_pylist())
    assert est["rows"] == t.num_rows and abs(est["bytes"] - real) <= 0.02 * real


RUNS = [  # two runs of benchmarks/scale.py's shape: 10 and 160 MB
    {"MB": 10.0, "rows": 1000, "wall_s": 12.0, "kept": 600, "tokens": 3_000_000,
     "ingest_live": 800, "peak_worker_heap_MB": 300.0,
     "stage_s": {"ingest": 5.0, "exact_dedup": 2.0, "near_dedup": 2.5, "grouping": 2.0}},
    {"MB": 160.0, "rows": 16000, "wall_s": 42.0, "kept": 9600, "tokens": 48_000_000,
     "ingest_live": 12800, "peak_worker_heap_MB": 320.0,
     "stage_s": {"ingest": 20.0, "exact_dedup": 4.0, "near_dedup": 8.5, "grouping": 8.0}},
]


def test_calibration_reproduces_its_runs_and_predicts_partitions():
    rates = calibrate(RUNS, cores=2)
    for r in RUNS:  # a two-point fit goes through both points
        p = predict_phase1(rates, r["MB"] * 1e6, r["rows"], cores=2)
        for s, v in r["stage_s"].items():
            assert p["stage_s"][s] == pytest.approx(v, abs=0.01)
    # 4 GB on 2 cores: linear in bytes beyond the fixed parts; more cores, less time
    big = predict_phase1(rates, 4e9, 400_000, cores=2)
    assert big["stage_s"]["ingest"] == pytest.approx(5.0 - 1.0 + 1.0 * 4000 / 10, rel=0.01)
    assert predict_phase1(rates, 4e9, 400_000, cores=64)["wall_s"] < big["wall_s"] / 20
    s = load_settings(None)
    assert big["live_rows"] == 320_000
    assert big["partitions"]["exact_dedup"] == -(-320_000 // s.phase1.exact_dedup.rows_per_bucket)
    assert big["partitions"]["grouping"] == max(
        -(-320_000 // s.phase1.grouping.rows_per_partition),
        -(-int(4e9 * 0.8) // s.phase1.grouping.bytes_per_partition))
    assert big["peak_worker_heap_MB"] == 320.0


def test_plan_on_the_cluster_node_types_and_prices():
    from conftest import ROOT

    rates = calibrate(RUNS, cores=2)
    settings = load_settings(ROOT / "flows/configs/cluster.yaml")
    listing = {"files": 100, "rows": 4_000_000, "bytes": int(40e9),
               "languages": {"Python": int(40e9)}}
    p = plan(listing, settings, rates, cluster=str(ROOT / "cluster/aws.yaml"),
             prices={"cpu_worker": 2.0})
    one, two, three = p["phases"]["1"], p["phases"]["2"], p["phases"]["3"]
    assert one["node_type"] == "cpu_worker" and one["nodes"] == 48
    assert two["node_type"] == "gpu_annotator" and two["nodes"] == settings.phase2.actors
    assert three["node_type"] == "gpu_rewriter"
    assert one["cost"] == pytest.approx(one["wall_s"] / 3600 * 48 * 2.0, rel=0.01)
    assert p["cost"] == pytest.approx(sum(v["cost"] for v in p["phases"].values()), abs=0.05)
    text = "\n".join(plan_lines(p))
    assert "cpu_worker" in text and "gpu_rewriter" in text and "total:" in text


@pytest.mark.skipif(not RATES.exists(), reason="no shipped calibration")
def test_plan_cli(stack_corpus, capsys):
    root, _ = stack_corpus
    assert main(["plan", "--input", str(root), "--json"]) == 0
    p = json.loads(capsys.readouterr().out)
    assert p["input"] == list_input(str(root))
    assert set(p["phases"]) == {"1", "2", "3"}
    assert p["rates"]["calibrated_on_MB"] == load_rates()["calibrated_on_MB"]
    assert main(["plan", "--input", str(root), "--price", "gpu=cheap"]) == 2


def test_many_files_are_estimated_from_a_sample_of_footers(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = tmp_path / "data" / "python"
    d.mkdir(parents=True)
    for i in range(10):
        content = [f"x{i} = {j}\n" * 40 for j in range(50)]
        pq.write_table(pa.table({"content": content,
                                 "size": [len(c.encode()) for c in content]}),
                       d / f"train-{i:05d}-of-00010.parquet")
    full = list_input(str(tmp_path))
    sampled = list_input(str(tmp_path), max_footers=3)
    assert full["footers_read"] == 10 and sampled["footers_read"] == 3
    assert sampled["files"] == full["files"] == 10
    assert sampled["rows"] == full["rows"] == 500
    assert abs(sampled["bytes"] - full["bytes"]) <= 0.02 * full["bytes"]


@pytest.mark.skipif(not RATES.exists(), reason="no shipped calibration")
def test_the_run_records_its_plan_and_the_report_sets_it_against_the_run(
        ray_local, stack_corpus, tmp_path):
    root, _ = stack_corpus
    out = tmp_path / "out"
    assert main(["--input", str(root), "--output", str(out), "--phases", "1"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    plan1 = manifest["plan"]["phases"]["1"]
    assert manifest["plan"]["input"]["files"] == len(list(root.glob("data/*/*.*")))
    assert set(plan1["stage_s"]) == set(manifest["stage_seconds"]) & set(plan1["stage_s"])
    report = (out / "report.md").read_text()
    assert "Plan against the run" in report
    for stage in plan1["stage_s"]:
        assert f"| {stage} |" in report
