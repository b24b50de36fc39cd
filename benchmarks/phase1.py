"""Phase 1 end to end, side by side with DataTrove, and its scaling.

    python benchmarks/phase1.py [--scales 1,4,16] [--cores N]
    python benchmarks/phase1.py --reference REV --scales 4 --out FILE   # this code vs REV

One invocation on this machine: (1) MinHash signatures, ours against datasketch's
per-document path, on one core; (2) our whole phase 1 (read, content checks, language,
redaction, token counting, basic and code filters, decontamination, exact dedup, near dedup,
grouping) and DataTrove's closest pipeline (read, the same basic filters, e-mail/IP
redaction, token counting, its exact dedup and its four MinHash steps; and once more
without token counting) on the same files and cores, at 1x,
4x and 16x the registry corpus of the near-dedup benchmark: MB/s per core, peak worker
memory, object-store spilling, and the log-log slope of our time against size. Writes
``benchmarks/results/phase1.md`` (the README links it).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
from pathlib import Path

import pyarrow.dataset as pads

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import (PEAK_MEMORY_NOTE, SDISTS, base_corpus, corpus_mb,  # noqa: E402
                               scaled_corpus)
from benchmarks.near_dedup import (PARTITION_ROWS, scaling_lines, side_by_side,  # noqa: E402
                                   throughput)


#: content bytes per grouping partition and per read batch at benchmark scale (defaults:
#: 256 MB and 8 MB)
PARTITION_BYTES = {"grouping": 8 << 20}
BATCH_BYTES = 4 << 20


CHANGES = "## Changes, measured before and after"


def ours_phase1(corpus: Path, out: Path, log=None) -> dict:
    """Our phase 1 with the embedded config's operators (Ray must be initialised)."""
    from flows.phase1 import run_phase1
    from flows.runtime import Run
    from flows.settings import load_settings

    # partitions and read batches sized down with the corpus (see PARTITION_ROWS): a 10-240
    # MB corpus then runs in the regime a large one runs in with the defaults
    settings = load_settings(None, {"output": str(out), "phases": ["1"],
                                    "read": {"batch_bytes": BATCH_BYTES}, "phase1": {
        "near_dedup": {"rows_per_partition": PARTITION_ROWS["near_dedup"]},
        "grouping": {"rows_per_partition": PARTITION_ROWS["grouping"],
                     "bytes_per_partition": PARTITION_BYTES["grouping"]}}})
    run = Run(settings, str(corpus), log=log or (lambda m: None))
    run_phase1(run)
    docs = pads.dataset(out / "phase1").to_table(columns=["n_files"])
    kept = int(sum(docs.column("n_files").to_pylist()))
    return {"kept": kept, "timings_s": run.timings}


#: one timed phase 1 in a fresh process, with the code of the tree at argv[1] (this
#: revision's or a reference's): a warm-up run, then the timed one; prints its figures and a
#: digest of what it wrote (documents' files, ledger rows)
RUNNER = """
import hashlib, json, sys, time
from pathlib import Path
root, warm, corpus, work, cores = sys.argv[1:6]
sys.path.insert(0, root)
import pyarrow.dataset as pads, ray
from benchmarks.phase1 import ours_phase1
from flows.runtime import WORKER_ENV
ray.init(num_cpus=int(cores), include_dashboard=False, object_store_memory=2 << 30,
         runtime_env={"env_vars": {"PYTHONPATH": root, **WORKER_ENV}})
ours_phase1(Path(warm), Path(work) / "warm")
t = time.perf_counter()
res = ours_phase1(Path(corpus), Path(work) / "run")
wall = time.perf_counter() - t
out = Path(work) / "run"
docs = pads.dataset(out / "phase1").to_table(columns=["file_ids"]).column("file_ids")
led = pads.dataset(out / "removed").to_table(columns=["id", "stage", "reason"]).to_pylist()
kept = sorted(i for ids in docs.to_pylist() for i in ids)
gone = sorted((r["id"], r["stage"], r["reason"]) for r in led)
digest = hashlib.sha256(json.dumps([kept, gone]).encode()).hexdigest()[:16]
print("RESULT " + json.dumps({"wall_s": sum(res["timings_s"].values()), "call_s": wall,
                              "kept": res["kept"], "removed": len(gone), "digest": digest,
                              "stage_s": res["timings_s"]}))
"""


def versus(rev: str, scale: int, rounds: int, cores: int) -> list[str]:
    """Phase 1 of this tree and of git revision ``rev`` on the same corpus and cores, in
    alternating fresh processes: median wall times, their ratio, and whether both wrote
    the same documents and ledger."""
    import statistics
    import subprocess

    corpus = scaled_corpus(base_corpus(), scale, mode="identifiers")
    warm = base_corpus()
    runs: dict[str, list[dict]] = {"reference": [], "now": []}
    with tempfile.TemporaryDirectory() as tmp:
        ref_tree = Path(tmp) / "reference"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(ref_tree),
                        rev], check=True, capture_output=True)
        try:
            for i in range(rounds):
                for name, tree in (("reference", ref_tree), ("now", ROOT)):
                    work = Path(tmp) / f"{name}-{i}"
                    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(tree))
                    proc = subprocess.run(
                        [sys.executable, "-c", RUNNER, str(tree), str(warm), str(corpus),
                         str(work), str(cores)], env=env, cwd=str(tree), capture_output=True,
                        text=True)
                    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
                    if proc.returncode or not line:
                        raise RuntimeError(f"{name} run failed:\n{proc.stderr[-3000:]}")
                    runs[name].append(json.loads(line[0][7:]))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(ref_tree)], capture_output=True)
    med = {k: statistics.median(r["wall_s"] for r in v) for k, v in runs.items()}
    same = {r["digest"] for v in runs.values() for r in v}
    lines = [f"## Side by side with revision `{rev}`", "",
             f"{scale}x corpus ({corpus_mb(corpus):.1f} MB), {cores} cores, {rounds} alternating "
             f"fresh-process runs each (after a warm-up run on the 1x corpus); time = the "
             "four stages' seconds (ingest, exact dedup, near dedup, grouping; since this "
             "revision `run_phase1` also aggregates its manifest section, outside them). "
             "Command: "
             f"`python benchmarks/phase1.py --reference {rev} --scales {scale}`.", "",
             "| code | stage s (each run) | median s | kept | removed | output digest |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, v in runs.items():
        walls = ", ".join(f"{r['wall_s']:.1f}" for r in v)
        lines.append(f"| {name} | {walls} | "
                     f"{med[name]:.1f} | {v[0]['kept']} | {v[0]['removed']} | "
                     f"{', '.join(sorted({r['digest'] for r in v}))} |")
    lines += ["", f"Now / reference (median stage seconds): **{med['now'] / med['reference']:.3f}**; "
              f"same documents and ledger in every run: **{len(same) == 1}**."]
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/phase1.md"))
    p.add_argument("--scales", default="1,4,16")
    p.add_argument("--cores", type=int, default=os.cpu_count())
    p.add_argument("--reference", help="git revision: time this tree's phase 1 against it "
                   "instead (first scale of --scales), writes --out")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = "1"
    if args.reference:
        scale = int(args.scales.split(",")[0])
        text = "\n".join(versus(args.reference, scale, args.rounds, args.cores)) + "\n"
        Path(args.out).write_text(text)
        print(text)
        return 0
    corpus = base_corpus()
    from benchmarks.peers import datatrove_phase1

    sig = throughput(corpus)
    lines = ["# Phase-1 benchmark: ours vs DataTrove, and scaling", "",
             f"Corpus: the near-dedup benchmark's {len(SDISTS)} source distributions, and "
             "copies of it in which every identifier that is not a keyword or builtin is "
             "renamed to another identifier of the corpus (a seeded permutation of its "
             "vocabulary per copy; 4x, 16x: still code to the code filters, with real-looking "
             "names, and no cross-copy duplicates); "
             f"machine: {os.cpu_count()} cores. Command: "
             "`python benchmarks/phase1.py`.", "",
             "## MinHash signatures (one core)", "", "| measure | value |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in sig.items()]
    scales = [int(x) for x in args.scales.split(",") if x]
    corpora = {k: scaled_corpus(corpus, k, mode="identifiers") for k in scales}
    from operators.tokens import tokenizer_dir

    # DataTrove counts tokens with the tokenizer our embedded config uses, as ours does
    tokenizer = os.path.join(tokenizer_dir("packaged:smollm2"), "tokenizer.json")
    with tempfile.TemporaryDirectory() as tmp:
        rows = side_by_side(corpora, Path(tmp), args.cores, ours=ours_phase1,
                            peer=functools.partial(datatrove_phase1, tokenizer=tokenizer),
                            extra_peers={"datatrove_no_tokens": datatrove_phase1})
    lines += ["", "## Phase 1: ours vs DataTrove, and scaling", "",
              f"Both on {args.cores} cores, same files, wall time from the first read to the "
              "last write. Ours: the flow's phase 1 with the embedded config's operators "
              "(`flows/phase1.run_phase1`), shuffle partitions sized down as in the near-dedup "
              "benchmark; \"kept\" = files in the repository documents. DataTrove 0.10.1: "
              "ParquetReader, a LambdaFilter with StarCoder's basic filters, PIIFormatter "
              "(e-mails, IPs), TokensCounter (the same SmolLM2 tokenizer.json: both count "
              "every kept file's tokens after redaction, which the recipe's token budgets "
              "need), ParquetWriter; ExactDedupSignature, ExactFindDedups, "
              "ExactDedupFilter; MinhashDedupSignature, Buckets, Cluster, Filter "
              "(LocalPipelineExecutor, our token rule, 25 x 10 bands, 64-bit hashes). "
              "DataTrove does no decontamination, secret scanning, code "
              "filters or repository grouping here: ours does that work on top. "
              + PEAK_MEMORY_NOTE, ""]
    lines += scaling_lines(rows, stages=" / ".join(rows[0]["ours_stage_s"]))
    lines += ["", "The same DataTrove pipeline without its TokensCounter (less work than ours "
              "by token counting too):", "",
              "| scale | DataTrove s | DataTrove MB/s/core | peak worker MB (heap / RSS) | "
              "kept | ours vs DataTrove |", "| --- " * 6 + "|"]
    lines += [f"| {r['scale']} | {r['datatrove_no_tokens_s']} | "
              f"{r['datatrove_no_tokens_MB_s_core']} | "
              f"{r['datatrove_no_tokens_peak_worker_MB']} / "
              f"{r['datatrove_no_tokens_peak_worker_rss_MB']} | {r['datatrove_no_tokens_kept']} "
              f"| {r['speedup_datatrove_no_tokens']}x |" for r in rows]
    text = "\n".join(lines) + "\n"
    out = Path(args.out)
    # the hand-kept record of optimisations below the generated tables survives a re-run
    old = out.read_text() if out.exists() else ""
    if CHANGES in old:
        text += "\n" + CHANGES + old.split(CHANGES, 1)[1]
    out.write_text(text)
    print(text)
    print(json.dumps({"signatures": sig, "side_by_side": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
