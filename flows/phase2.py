"""Phase 2 on Ray Data: score every phase-1 file, keep the top per language up to the
token budget, repeat for the epochs, regroup by repository.

1. ``score``  the phase-1 files (live rows of ``_work/clean`` minus the dedup removals, one
   anti-join shuffle by id) through :class:`operators.annotate.QualityScorer` on an actor
   pool (GPU actors on a cluster, CPU actors embedded) → ``_work/scored/`` with a
   ``quality`` column.
2. ``select``  per-language thresholds from score histograms merged across blocks and
   refined around the budget (:mod:`operators.select`), a streaming filter, ``epochs``
   copies with an ``epoch`` column, grouped by (language, repository, epoch) into
   repository documents tagged ``phase=2`` → ``phase2/``.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pyarrow as pa
import ray
import ray.data

from flows.manifest import grouped_sums
from flows.faults import maybe_die
from flows.phases import DEDUP_STAGES, FILE_COLS, live_totals, require
from flows.runtime import Run, actor_resources
from flows.shuffle import anti_join, block_rows, partition_count
from operators import storage
from operators.annotate import QualityHead, QualityScorer
from operators.grouping import RepoDocumentBuilder, group_key_repo
from operators.schema import FILE_SCHEMA, LEDGER_SCHEMA
from operators.select import (histogram, language_budgets, merge_histograms, select,
                              thresholds)



class Scorer(QualityScorer):
    """The annotator on the pool, with the ``score`` fault point of the node-loss tests."""

    def __call__(self, table: pa.Table) -> pa.Table:
        maybe_die("score")
        return super().__call__(table)


def load_head(run: Run) -> QualityHead:
    spec = run.settings.phase2.head
    if spec == "packaged:demo":
        from flows.train_annotator import train_demo_head

        p2 = run.settings.phase2
        path = train_demo_head(log=run.detail, threads=p2.threads, batch_tokens=p2.batch_tokens)
        with open(path, "rb") as f:
            return QualityHead.from_json(f.read())
    fs, path = storage.resolve(spec, run.settings.s3)
    return QualityHead.from_json(storage.read_bytes(fs, path))


def phase1_files(run: Run) -> ray.data.Dataset:
    """The files phase 1 kept, with content: live rows minus the dedup removals."""
    rows = run.read("_work/clean", columns=FILE_COLS, live=True)
    gone = [run.read(f"removed/{s}", columns=["id"], schema=LEDGER_SCHEMA)
            for s in DEDUP_STAGES if run.exists(f"removed/{s}")]
    schema = pa.schema([FILE_SCHEMA.field(c) for c in FILE_COLS])
    n_rows, n_bytes = live_totals(run)
    n = partition_count(n_rows, run.settings.phase1.grouping.rows_per_partition)
    return anti_join(rows, gone, schema, n, batch_rows=block_rows(n_rows, n_bytes))


def score(run: Run) -> dict:
    p2 = run.settings.phase2
    head = load_head(run)
    run.detail(f"score: head {p2.head} ({head.mode}, encoder {head.encoder}, "
            f"chunk {head.chunk}); {p2.actors} actor(s)")
    t = time.time()
    # device "auto": CUDA where the actor's GPU is a real one; a logical GPU without CUDA
    # (a test cluster, a driver/toolkit mismatch) falls back to the CPU
    scored = phase1_files(run).map_batches(
        Scorer, batch_size=p2.batch_files, batch_format="pyarrow",
        fn_constructor_kwargs={"head": head, "batch_tokens": p2.batch_tokens,
                               "device": "auto", "threads": p2.threads,
                               "precision": p2.precision},
        compute=ray.data.ActorPoolStrategy(size=p2.actors),
        **actor_resources(p2.cpus_per_actor, p2.gpus_per_actor, p2.resources))
    run.write(scored, "_work/scored")
    files = run.read("_work/scored", columns=["id"]).count()
    seconds = time.time() - t
    return {"files": files, "seconds": round(seconds, 1),
            "files_per_s": round(files / seconds, 2) if seconds else None,
            "mode": head.mode, "encoder": head.encoder, "chunk": head.chunk,
            "precision": p2.precision,
            "head_metrics": head.metadata.get("metrics", {})}


def _epochs(t: pa.Table, epochs: int) -> pa.Table:
    t = t.append_column("_drop", pa.array([False] * t.num_rows, pa.bool_()))
    t = t.set_column(t.schema.get_field_index("repo"), "repo", group_key_repo(t))
    out = [t.append_column("epoch", pa.array([e] * t.num_rows, pa.int16()))
           for e in range(1, epochs + 1)]
    return pa.concat_tables(out)


def _build(group: pa.Table, builder: RepoDocumentBuilder) -> pa.Table:
    epoch = int(group.column("epoch")[0].as_py())
    b = dataclasses.replace(builder, seed=builder.seed + 1000 * epoch, epoch=epoch)
    return b(group.drop_columns(["epoch"]))


def select_stage(run: Run) -> dict:
    s = run.settings
    p2 = s.phase2
    keys = run.read("_work/scored", columns=["lang", "quality", "n_tokens"])
    per_lang = {r["lang"]: r["sum(n_tokens)"]
                for r in grouped_sums(keys, ["lang"], ["n_tokens"])}
    phase1_tokens = sum(per_lang.values())
    total = float(p2.budget_tokens) if p2.budget_tokens else p2.budget_ratio * phase1_tokens
    budgets = language_budgets(per_lang, total)

    def hist_fn(ranges, bins=p2.bins):
        parts = keys.map_batches(histogram, fn_kwargs={"ranges": ranges, "bins": bins},
                                 batch_format="pyarrow", batch_size=None)
        return merge_histograms(list(parts.iter_batches(batch_format="pyarrow",
                                                        batch_size=None)), bins)

    top = 1.0 if run.stage_info["score"]["mode"] == "binary" else 5.0
    cuts = thresholds(hist_fn, budgets, (0.0, top), bins=p2.bins, passes=p2.passes)
    cut = {lang: c["threshold"] for lang, c in cuts.items()}
    # the score distribution per language for the report: 20 bins over the score range
    report_bins = 20
    dist = hist_fn({lang: (0.0, top, True) for lang in per_lang}, report_bins)
    histograms = {"range": [0.0, top], "bins": report_bins, "threshold": {
        lang: c for lang, c in cut.items() if np.isfinite(c)}, "languages": {
        lang: h["files"].astype(int).tolist() for lang, h in sorted(dist.items())}}
    files = run.read("_work/scored", columns=FILE_COLS + ["quality"])
    chosen = files.map_batches(select, fn_kwargs={"cut": cut}, batch_format="pyarrow")
    run.write(chosen, "_work/selected")
    sel = grouped_sums(run.read("_work/selected", columns=["lang", "n_tokens"]), ["lang"],
                       ["n_tokens"])
    got = {r["lang"]: r["sum(n_tokens)"] for r in sel}
    n_rows = sum(r["count()"] for r in sel)
    selected = run.read("_work/selected", columns=FILE_COLS + ["quality"])
    repeated = selected.map_batches(_epochs, fn_kwargs={"epochs": p2.epochs},
                                    batch_format="pyarrow")
    g = s.phase1.grouping
    builder = RepoDocumentBuilder(tokenizer=s.tokenizer, seed=s.seed,
                                  max_doc_tokens=g.max_doc_tokens, repo_header=g.repo_header,
                                  file_header=g.file_header, phase=2)
    n_parts = partition_count(n_rows * p2.epochs, g.rows_per_partition)
    docs = repeated.groupby(["lang", "repo", "epoch"], num_partitions=n_parts).map_groups(
        _build, fn_kwargs={"builder": builder}, batch_format="pyarrow")
    run.write(docs, "phase2")
    selected_tokens = sum(got.values())
    languages = {}
    for lang in sorted(per_lang):
        languages[lang] = {
            "phase1_tokens": per_lang[lang], "budget": round(budgets[lang]),
            "selected_tokens": got.get(lang, 0),
            "threshold": None if not np.isfinite(cut.get(lang, np.inf)) else cut[lang],
            "share_phase1": round(per_lang[lang] / phase1_tokens, 6) if phase1_tokens else 0,
            "share_selected": round(got.get(lang, 0) / selected_tokens, 6)
            if selected_tokens else 0}
    return {"phase1_tokens": phase1_tokens, "budget_tokens": round(total),
            "selected_tokens": selected_tokens, "selected_files": n_rows,
            "budget_error": round(selected_tokens / total - 1, 6) if total else None,
            "epochs": p2.epochs, "tokens_with_epochs": selected_tokens * p2.epochs,
            "languages": languages, "score_histograms": histograms}


STAGES = [("score", score), ("select", select_stage)]


def run_phase2(run: Run) -> dict:
    """Phase 2's stages; its section of the manifest."""
    require(run, "grouping", "2", "1")
    for name, fn in STAGES:
        run.stage(name, fn)
    return {"score": run.stage_info.get("score", {}), **run.stage_info.get("select", {})}
