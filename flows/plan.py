"""A plan before the run: what the input is, and what each phase will need and cost.

    arctic-curate plan --input URI [--config FILE] [--cluster cluster/aws.yaml]
                       [--rates FILE] [--price cpu_worker=1.61,...] [--json]

The input is listed without reading any content: files, rows and content bytes from the
Parquet footers (JSONL: file sizes), languages from The Stack's ``data/<lang>/`` folders or
extensions. Phase 1 is predicted from per-stage costs measured on this code
(``benchmarks/results/rates.json``: a fixed part and core-seconds per MB, fitted on two
runs of ``benchmarks/scale.py``; ``--rates`` gives a calibration of your own), the
partitions from the same formulas the stages use, shuffle bytes from the columns each
shuffle moves. Phases 2 and 3 are predicted from their work (chunks to score, tokens to
generate) and per-GPU rates that are *assumptions* until a run measures them (the
manifest records the measured ones: ``score.files_per_s``, ``output_tokens_per_s``). Node
hours and cost come from the cluster's node types (``--cluster``; without it, this machine)
and prices per node-hour (``--price``). The flow writes the plan into ``manifest.json`` and
the report sets it against the run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RATES = ROOT / "benchmarks/results/rates.json"
PHASE1_STAGES = ("ingest", "exact_dedup", "near_dedup", "grouping")

#: assumed until measured on the GPU types (see the README's cost model for the sources)
ASSUMED = {
    # arctic-embed-m chunks of <= 512 tokens per second on one L4 at ~50% of its bf16 peak
    "annotator_chunks_per_s_per_gpu": 550.0,
    # Llama-3.1-70B FP8 output tokens per second per H100 (vLLM, continuous batching, TP 2):
    # NVIDIA's TensorRT-LLM figure for Llama-3.3-70B FP8 on 2 H100s at 1000/1000 tokens,
    # 4,205/s, times 0.75 for vLLM (README cost model)
    "rewriter_tokens_per_s_per_gpu": 1577.0,
    # generated tokens per kept synthetic token of a one-step template (validation, dedup
    # and budget losses, answers ending at their code fence)
    "rewriter_generated_per_kept": 1.41,
    # a chained rewrite (SGCR then SCOR) generates a second whole answer, and ~5% of the
    # requests are lost between the two steps
    "rewriter_chain_factor": 2.05,
    "bytes_per_token": 3.3,
}
#: on-demand list prices per node-hour (AWS us-east-1; p5 at a negotiated H100 rate)
PRICES = {"cpu_worker": 1.61, "gpu_annotator": 0.98, "gpu_rewriter": 24.0, "local": 0.0}


# -- the input, without reading content ----------------------------------------------------

def _language(rel: str) -> str | None:
    from operators.languages import canonical_language, language_from_path

    parts = rel.split("/")
    if len(parts) >= 3 and parts[-3] == "data":
        slug = parts[-2]
        return canonical_language({"c-sharp": "C#", "jupyter-notebook": "Jupyter Notebook"}
                                  .get(slug, slug))
    return language_from_path(rel.removesuffix(".gz"))


def _footer(fs, path: str) -> tuple[int | None, int]:
    """(rows, content bytes) of one input file from its footer; JSONL: (None, its size,
    times 4 when compressed); an unreadable footer: (None, 0), as the run will quarantine
    the file."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if not path.endswith(".parquet"):
        size = fs.get_file_info(path).size or 0
        return None, size * (4 if path.endswith((".gz", ".zst")) else 1)
    try:
        with fs.open_input_file(path) as f:
            md = pq.ParquetFile(f).metadata
    except (OSError, ValueError):  # pyarrow.ArrowInvalid is a ValueError
        return None, 0
    names = [md.schema.column(i).name for i in range(md.num_columns)]
    if "size" in names:  # The Stack's byte size per file: a small column, no content read
        with fs.open_input_file(path) as f:
            sizes = pq.read_table(f, columns=["size"]).column("size")
        return md.num_rows, int(pc.sum(sizes).as_py() or 0)
    col = next((names.index(c) for c in ("content", "text", "code") if c in names), None)
    size = 0
    if col is not None:
        for g in range(md.num_row_groups):
            chunk = md.row_group(g).column(col)
            # plain-encoded strings: 4 length bytes per value besides the text
            size += chunk.total_uncompressed_size - 4 * md.row_group(g).num_rows
    return md.num_rows, max(size, 0)


def list_input(uri: str, s3=None, threads: int = 16, max_footers: int = 2000) -> dict:
    """Files, rows, content bytes and bytes per language of an input (footers only). Past
    ``max_footers`` files, an evenly spaced sample of footers stands for the rest (The
    Stack's shards are of similar sizes): the totals are then estimates, and say so."""
    from operators import storage
    from operators.io import INPUT_SUFFIXES

    fs, root = storage.resolve(uri, s3)
    all_files = storage.list_files(fs, root, INPUT_SUFFIXES)
    step = max(1, math.ceil(len(all_files) / max_footers))
    files = all_files[::step]
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        sizes = list(pool.map(lambda f: _footer(fs, f), files))
    if step > 1:  # each sampled file stands for the files up to the next one
        weights = [min(step, len(all_files) - i * step) for i in range(len(files))]
        sizes = [(None if r is None else r * w, b * w) for (r, b), w in zip(sizes, weights)]
    langs: dict[str, int] = {}
    for f, (_, b) in zip(files, sizes):
        lang = _language(f[len(root):].lstrip("/")) or "unknown"
        langs[lang] = langs.get(lang, 0) + b
    jsonl = [(f, b) for f, (r, b) in zip(files, sizes) if r is None and b]
    return {"files": len(all_files), "footers_read": len(files),
            "rows": sum(r or 0 for r, _ in sizes),
            "bytes": sum(b for _, b in sizes),
            # rows unknown without reading: JSONL files (estimated from their bytes)
            "jsonl_files": len(jsonl), "jsonl_bytes": sum(b for _, b in jsonl),
            "unreadable_files": sum(1 for r, b in sizes if r is None and not b) * step,
            "languages": dict(sorted(langs.items(), key=lambda kv: -kv[1]))}


# -- calibration: per-stage costs from measured runs ---------------------------------------

def calibrate(runs: list[dict], cores: int, overrides: dict | None = None) -> dict:
    """Per-stage cost ``fixed_s + core_s_per_MB * MB / cores`` fitted through two runs of
    different sizes (``benchmarks/scale.py`` rows: MB, rows, stage_s, wall_s, kept,
    peak_worker_heap_MB, ingest_live)."""
    small, large = sorted(runs, key=lambda r: r["MB"])[:2]
    d_mb = large["MB"] - small["MB"]
    stages = {}
    for s in PHASE1_STAGES:
        slope = max(0.0, (large["stage_s"][s] - small["stage_s"][s]) / d_mb)
        stages[s] = {"fixed_s": round(max(0.0, large["stage_s"][s] - slope * large["MB"]), 3),
                     "core_s_per_MB": round(slope * cores, 5)}
    overhead = large["wall_s"] - sum(large["stage_s"][s] for s in PHASE1_STAGES)
    return {"source": "benchmarks/scale.py", "cores": cores, "overrides": overrides or {},
            "stages": stages, "overhead_s": round(max(0.0, overhead), 2),
            "rows_per_MB": round(large["rows"] / large["MB"], 2),
            "live_after_ingest": round(large.get("ingest_live", large["kept"])
                                       / large["rows"], 4),
            "kept_share": round(large["kept"] / large["rows"], 4),
            "tokens_per_MB": round(large["tokens"] / large["MB"], 1),
            "peak_worker_heap_MB": large["peak_worker_heap_MB"],
            "calibrated_on_MB": [small["MB"], large["MB"]]}


def load_rates(path: str | os.PathLike | None = None) -> dict:
    with open(path or RATES) as f:
        return json.load(f)


# -- prediction ----------------------------------------------------------------------------

def _settings(overrides: dict | None):
    from flows.settings import load_settings

    return load_settings(None, overrides or {})


def predict_phase1(rates: dict, n_bytes: float, rows: int, cores: int,
                   overrides: dict | None = None, settings=None) -> dict:
    """Stage seconds, partitions and shuffle bytes of phase 1 over ``n_bytes`` of content
    in ``rows`` files on ``cores`` CPUs."""
    from flows.shuffle import partition_count

    s = settings or _settings(overrides)
    p1 = s.phase1
    mb = n_bytes / 1e6
    stage_s = {k: v["fixed_s"] + v["core_s_per_MB"] * mb / cores
               for k, v in rates["stages"].items()}
    live = int(rows * rates["live_after_ingest"])
    kept = int(rows * rates["kept_share"])
    bands = p1.near_dedup.lsh[0]
    live_bytes = n_bytes * rates["live_after_ingest"]
    g = p1.grouping
    parts = {"exact_dedup": partition_count(live, p1.exact_dedup.rows_per_bucket),
             "near_dedup": partition_count(live * bands, p1.near_dedup.rows_per_partition),
             "grouping": max(partition_count(live, g.rows_per_partition),
                             partition_count(int(live_bytes), g.bytes_per_partition))}
    # what each shuffle moves: keys (~90 B a row), band rows (~40 B), live content
    shuffle = {"exact_dedup": live * 90, "near_dedup": live * bands * 40,
               "grouping": live_bytes + live * 150}
    return {"stage_s": stage_s, "wall_s": sum(stage_s.values()) + rates["overhead_s"],
            "partitions": parts, "shuffle_bytes": shuffle, "live_rows": live,
            "kept_rows": kept, "tokens": mb * rates["tokens_per_MB"],
            "peak_worker_heap_MB": rates["peak_worker_heap_MB"]}


def _cluster_groups(path: str | None, cpus: int | None = None) -> dict:
    """Node groups: CPUs, GPUs and max workers per type (``cluster/aws.yaml`` layout);
    without one, this machine (or ``cpus``: a running cluster's)."""
    if not path:
        return {"local": {"cpus": cpus or os.cpu_count() or 1, "gpus": 0, "max_workers": 1}}
    import yaml

    with open(path) as f:
        cfg = yaml.safe_load(f)
    out = {}
    for name, t in cfg["available_node_types"].items():
        res = t.get("resources", {})
        if name == cfg.get("head_node_type"):
            continue
        out[name] = {"cpus": res.get("CPU", 0), "gpus": res.get("GPU", 0),
                     "max_workers": t.get("max_workers", 0)}
    return out


def plan(listing: dict, settings, rates: dict, cluster: str | None = None,
         prices: dict | None = None, cpus: int | None = None) -> dict:
    """The whole plan: input, per phase work, time at the configured maximum workers,
    node-hours and cost."""
    prices = {**PRICES, **(prices or {})}
    groups = _cluster_groups(cluster, cpus)
    cpu_group = next((g for g, v in groups.items() if v["cpus"] and not v["gpus"]), None)
    cpu = groups[cpu_group] if cpu_group else {"cpus": 1, "max_workers": 1}
    cores = cpu["cpus"] * cpu["max_workers"]
    rows = listing["rows"] + int(listing.get("jsonl_bytes", 0) / 1e6 * rates["rows_per_MB"])
    p1 = predict_phase1(rates, listing["bytes"], rows, cores, settings=settings)
    store = settings.ray.object_store_memory_mb or 2048
    phases = {"1": {"node_type": cpu_group or "local", "nodes": cpu["max_workers"],
                    "wall_s": round(p1["wall_s"], 1),
                    "stage_s": {k: round(v, 1) for k, v in p1["stage_s"].items()},
                    "partitions": p1["partitions"],
                    "shuffle_bytes": {k: int(v) for k, v in p1["shuffle_bytes"].items()},
                    "peak_worker_heap_MB": p1["peak_worker_heap_MB"],
                    "object_store_MB_per_node": store,
                    "spill_bytes": int(max(0, max(p1["shuffle_bytes"].values())
                                           - store * 2 ** 20 * cpu["max_workers"])),
                    "disk_bytes": int(listing["bytes"] * 0.6),  # zstd outputs + ledger
                    "kept_files": p1["kept_rows"], "tokens": int(p1["tokens"])}}
    # phase 2: <= 3 chunks of <= 512 tokens per kept file
    tokens_per_file = p1["tokens"] / max(1, p1["kept_rows"])
    chunks = p1["kept_rows"] * min(3, max(1, math.ceil(tokens_per_file / 512)))
    gpu2 = next((g for g, v in groups.items() if v["gpus"] and g != "gpu_rewriter"), None)
    s2 = settings.phase2
    actors2 = s2.actors
    rate2 = ASSUMED["annotator_chunks_per_s_per_gpu"] * max(1, s2.gpus_per_actor)
    wall2 = chunks / (rate2 * actors2)
    phases["2"] = {"node_type": gpu2 or "local", "nodes": actors2, "chunks": int(chunks),
                   "wall_s": round(wall2, 1), "rate_assumed": rate2}
    # phase 3: kept synthetic tokens from the budget, generated tokens through the replicas
    s3 = settings.phase3
    budget = s3.budget_tokens or s3.budget_ratio * p1["tokens"]
    chained = s3.builder().chained_share
    generated = budget * ASSUMED["rewriter_generated_per_kept"] * (
        1 - chained + chained * ASSUMED["rewriter_chain_factor"])
    replicas = s3.max_actors or s3.actors
    gpus3 = max(1.0, s3.gpus_per_actor)
    rate3 = ASSUMED["rewriter_tokens_per_s_per_gpu"] * gpus3
    wall3 = generated / (rate3 * replicas)
    node_gpus = groups.get("gpu_rewriter", {}).get("gpus") or gpus3
    phases["3"] = {"node_type": "gpu_rewriter" if "gpu_rewriter" in groups else "local",
                   "nodes": math.ceil(replicas * gpus3 / node_gpus), "replicas": replicas,
                   "kept_tokens": int(budget), "chained_share": round(chained, 3),
                   "generated_tokens": int(generated), "wall_s": round(wall3, 1),
                   "rate_assumed": rate3}
    total = 0.0
    for v in phases.values():
        v["node_hours"] = round(v["wall_s"] / 3600 * v["nodes"], 2)
        v["cost"] = round(v["node_hours"] * prices.get(v["node_type"], 0.0), 2)
        total += v["cost"]
    return {"input": listing, "rates": {"source": rates.get("source"),
                                        "calibrated_on_MB": rates.get("calibrated_on_MB")},
            "assumed": ASSUMED, "prices": prices, "phases": phases,
            "wall_s": round(sum(v["wall_s"] for v in phases.values()), 1),
            "cost": round(total, 2)}


def plan_lines(p: dict) -> list[str]:
    i = p["input"]
    lines = [f"input: {i['files']:,} files, {i['rows']:,} rows, {i['bytes'] / 1e9:,.2f} GB "
             "of content; " + ", ".join(f"{k} {v / 1e9:.2f} GB"
                                        for k, v in list(i["languages"].items())[:8]),
             f"{'phase':<7}{'node type':<16}{'nodes':>6}{'wall h':>9}{'node-h':>9}"
             f"{'cost $':>10}  work"]
    for k, v in p["phases"].items():
        work = {"1": lambda: "partitions " + ", ".join(
                    f"{s} {n}" for s, n in v["partitions"].items())
                + f"; shuffle {max(v['shuffle_bytes'].values()) / 1e9:.2f} GB; spill "
                  f"{v['spill_bytes'] / 1e9:.2f} GB; peak worker heap "
                  f"{v['peak_worker_heap_MB']:.0f} MB",
                "2": lambda: f"{v['chunks']:,} chunks (assumed {v['rate_assumed']:.0f}/s per "
                             "actor)",
                "3": lambda: f"{v['generated_tokens']:,} tokens generated for "
                             f"{v['kept_tokens']:,} kept ({v['chained_share']:.0%} chained); "
                             f"{v['replicas']} replicas at an assumed "
                             f"{v['rate_assumed']:.0f}/s each"}[k]()
        lines.append(f"{k:<7}{v['node_type']:<16}{v['nodes']:>6}{v['wall_s'] / 3600:>9.2f}"
                     f"{v['node_hours']:>9.2f}{v['cost']:>10.2f}  {work}")
    lines.append(f"total: {p['wall_s'] / 3600:.2f} h, ${p['cost']:,.2f}")
    return lines


def extrapolation_lines(rates: dict, tb: float = 2.2) -> list[str]:
    """Phase 1 over ``tb`` TB on cluster/aws.yaml's CPU group, at several sizes of it."""
    groups = _cluster_groups(str(ROOT / "cluster/aws.yaml"))
    cpus = groups["cpu_worker"]["cpus"]
    n_bytes = tb * 1e12
    rows = int(n_bytes / 1e6 * rates["rows_per_MB"])
    settings = _settings(None)
    out = [f"From `rates.json` (fitted on {rates['calibrated_on_MB']} MB), the shipped "
           f"defaults, {tb} TB of content (~{rows / 1e6:,.0f}M files): per-stage hours on "
           f"m7i.8xlarge nodes ({cpus} vCPUs each), assuming the per-core rate holds across "
           "nodes (the stages are one task per file or partition, with no single-node "
           "step).", "",
           "| nodes | vCPUs | ingest h | exact h | near h | grouping h | wall h | node-h | "
           "cost $ |", "| --- " * 9 + "|"]
    for nodes in (8, 16, 32, 48):
        p = predict_phase1(rates, n_bytes, rows, cpus * nodes, settings=settings)
        st = p["stage_s"]
        nh = p["wall_s"] / 3600 * nodes
        out.append(f"| {nodes} | {cpus * nodes} | " + " | ".join(
            f"{st[s] / 3600:.2f}" for s in PHASE1_STAGES)
            + f" | {p['wall_s'] / 3600:.2f} | {nh:.1f} | {nh * PRICES['cpu_worker']:.0f} |")
    p = predict_phase1(rates, n_bytes, rows, cpus * 48, settings=settings)
    out += ["", "Partitions at 2.2 TB with the defaults: " + ", ".join(
        f"{k} {v:,}" for k, v in p["partitions"].items()) + "; bytes each shuffle moves: "
        + ", ".join(f"{k} {v / 1e9:,.0f} GB" for k, v in p["shuffle_bytes"].items()) + "."]
    return out


def plan_for_run(settings, input_uri: str, cpus: int) -> dict | None:
    """The plan the flow records in its manifest, for the ``cpus`` of the Ray it runs on
    (None when no calibration is shipped)."""
    if not RATES.exists():
        return None
    listing = list_input(input_uri, settings.s3)
    return plan(listing, settings, load_rates(), cpus=cpus)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="arctic-curate plan", description=__doc__.split("\n\n")[0])
    p.add_argument("--input", required=True, help="input URI, local or s3://")
    p.add_argument("--config", help="YAML settings (default: the embedded ones)")
    p.add_argument("--cluster", help="Ray autoscaler YAML with the node types (e.g. "
                                     "cluster/aws.yaml); default: this machine")
    p.add_argument("--rates", help=f"calibration JSON (default: {RATES.relative_to(ROOT)})")
    p.add_argument("--price", default="", help="prices per node-hour: type=USD,...")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    args = p.parse_args(argv)
    from flows.settings import SettingsError, load_settings

    try:
        settings = load_settings(args.config, {"input": args.input})
        prices = {k: float(v) for k, v in (x.split("=") for x in args.price.split(",") if x)}
    except (SettingsError, ValueError) as exc:
        print(f"arctic plan: configuration error: {exc}", file=sys.stderr)
        return 2
    result = plan(list_input(args.input, settings.s3), settings, load_rates(args.rates),
                  cluster=args.cluster, prices=prices)
    print(json.dumps(result, indent=1) if args.json else "\n".join(plan_lines(result)))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
