"""Phase 1 end to end, side by side with DataTrove, and its scaling.

    python benchmarks/phase1.py [--scales 1,4,16] [--cores N]

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

from benchmarks.common import PEAK_MEMORY_NOTE, SDISTS, base_corpus, scaled_corpus  # noqa: E402
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/phase1.md"))
    p.add_argument("--scales", default="1,4,16")
    p.add_argument("--cores", type=int, default=os.cpu_count())
    args = p.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = "1"
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
