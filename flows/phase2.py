"""Phase 2 on Ray Data: score every phase-1 file, keep the top per language up to the
token budget, repeat for the epochs, regroup by repository.

1. ``score``  the phase-1 files (live rows of ``_work/clean`` minus the dedup removals, one
   anti-join shuffle by id) through the configured annotators
   (:class:`operators.annotators.MultiScorer`) on an actor pool (GPU actors on a cluster,
   CPU actors embedded) → ``_work/scored/`` with a ``score_<name>`` column each and their
   combined ``quality``; the scores alone → ``scores/phase2/``. A run with the stored
   scores' annotators and phase-1 output joins them back by id instead of scoring.
2. ``select``  per-language thresholds from score histograms merged across blocks and
   refined around the budget (:mod:`operators.select`), a streaming filter, ``epochs``
   copies with an ``epoch`` column, grouped by (language, repository, epoch) into
   repository documents tagged ``phase=2`` → ``phase2/``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
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
from operators.annotate import QualityHead
from operators.annotators import MultiScorer, combine, fingerprint, score_range
from operators.grouping import RepoDocumentBuilder, group_key_repo
from operators.schema import FILE_SCHEMA, LEDGER_SCHEMA
from operators.select import (histogram, language_budgets, merge_histograms, select,
                              thresholds)



class Scorer(MultiScorer):
    """The annotators on the pool, with the ``score`` fault point of the node-loss tests."""

    def __call__(self, table: pa.Table) -> pa.Table:
        maybe_die("score")
        return super().__call__(table)


def head_bytes(run: Run, spec: str) -> bytes:
    """A head file's bytes (``packaged:demo``: trained once and cached)."""
    if spec == "packaged:demo":
        from flows.train_annotator import train_demo_head

        p2 = run.settings.phase2
        path = train_demo_head(log=run.detail, threads=p2.threads, batch_tokens=p2.batch_tokens)
        with open(path, "rb") as f:
            return f.read()
    fs, path = storage.resolve(spec, run.settings.s3)
    return storage.read_bytes(fs, path)


def load_head(run: Run) -> QualityHead:
    return QualityHead.from_json(head_bytes(run, run.settings.phase2.head))


def phase1_files(run: Run, attach=None) -> ray.data.Dataset:
    """The files phase 1 kept, with content: live rows minus the dedup removals (and the
    ``attach`` columns joined on by id, see :func:`flows.shuffle.anti_join`)."""
    rows = run.read("_work/clean", columns=FILE_COLS, live=True)
    gone = [run.read(f"removed/{s}", columns=["id"], schema=LEDGER_SCHEMA)
            for s in DEDUP_STAGES if run.exists(f"removed/{s}")]
    schema = pa.schema([FILE_SCHEMA.field(c) for c in FILE_COLS])
    n_rows, n_bytes = live_totals(run)
    n = partition_count(n_rows, run.settings.phase1.grouping.rows_per_partition)
    return anti_join(rows, gone, schema, n, batch_rows=block_rows(n_rows, n_bytes),
                     attach=attach)


SCORES = "scores/phase2"


def _annotators(run: Run) -> tuple[list, dict, str]:
    """(specs, heads by name, fingerprint) of the configured annotators: reads the head
    files, nothing of the models."""
    p2 = run.settings.phase2
    specs, heads, raw = p2.annotators, {}, {}
    for s in specs:
        if s.kind == "head":
            raw[s.name] = head_bytes(run, s.head or p2.head)
            heads[s.name] = QualityHead.from_json(raw[s.name])
    shas = {n: hashlib.sha256(b).hexdigest() for n, b in raw.items()}
    return specs, heads, fingerprint(specs, shas)


def _ranges(run: Run, specs: list, heads: dict) -> dict:
    """Each annotator's score range (an ``hf`` model's from its config's outputs)."""
    out = {}
    for s in specs:
        labels = None
        if s.kind == "hf" and not s.range:
            from transformers import AutoConfig

            from operators.tokens import tokenizer_dir

            where = s.model or next(iter(s.per_language.values()))
            labels = AutoConfig.from_pretrained(tokenizer_dir(where, run.settings.s3)).num_labels
        out[s.name] = score_range(s, heads.get(s.name), labels)
    return out


def _phase1_identity(run: Run) -> dict:
    """When phase 1's outputs were made: stored scores belong to those files only."""
    return {name: (run.marker(name) or {}).get("finished_unix")
            for name in ("ingest", *DEDUP_STAGES)}


def keeps_embeddings(run: Run) -> bool:
    """Whether the files' embeddings are kept (``phase2.embeddings``, or phase 3's coreset
    needs them): in ``_work/scored``, ``scores/phase2/`` and the selection."""
    return run.settings.phase2.embeddings or run.settings.phase3.coreset.enabled


def score(run: Run) -> dict:
    p2 = run.settings.phase2
    specs, heads, fp = _annotators(run)
    weights = p2.combine
    meta_path = f"{SCORES}/_annotators.json"
    identity = _phase1_identity(run)
    stored = (json.loads(storage.read_bytes(run.fs, run.path(meta_path)))
              if p2.reuse_scores and run.exists(meta_path) else None)
    reuse = bool(stored and stored["fingerprint"] == fp and stored["phase1"] == identity)
    ranges = ({n: tuple(r) for n, r in stored["ranges"].items()} if reuse
              else _ranges(run, specs, heads))
    t = time.time()
    keep_emb = keeps_embeddings(run)
    if reuse:  # re-selection: the stored scores joined onto the files, no model loaded
        run.detail(f"score: the stored scores of {[s.name for s in specs]} ({SCORES}/)")
        cols = [s.column for s in specs]
        schema = pa.schema([pa.field("id", pa.string())] +
                           [pa.field(c, pa.float32()) for c in cols])
        if keep_emb:
            stored_schema = run.read(SCORES).schema()
            if "embedding" not in stored_schema.names:
                raise ValueError("phase2.reuse_scores: the stored scores have no embeddings, "
                                 "which phase 3's coreset needs; score again "
                                 "(reuse_scores: false)")
            cols.append("embedding")
            schema = schema.append(pa.field("embedding",
                                            stored_schema.base_schema.field("embedding").type))
        scored = phase1_files(run, attach=(run.read(SCORES, columns=["id", *cols]), schema))
        scored = scored.map_batches(combine, fn_kwargs={
            "specs": specs, "ranges": ranges, "weights": weights}, batch_format="pyarrow")
    else:
        run.detail(f"score: annotators {[(s.name, s.kind) for s in specs]}; "
                   f"{p2.actors} actor(s)")
        # device "auto": CUDA where the actor's GPU is a real one; a logical GPU without
        # CUDA (a test cluster, a driver/toolkit mismatch) falls back to the CPU
        scored = phase1_files(run).map_batches(
            Scorer, batch_size=p2.batch_files, batch_format="pyarrow",
            fn_constructor_kwargs={"specs": specs, "heads": heads, "ranges": ranges,
                                   "weights": weights, "batch_tokens": p2.batch_tokens,
                                   "device": "auto", "threads": p2.threads,
                                   "precision": p2.precision, "s3": run.settings.s3,
                                   "embeddings": keep_emb},
            compute=ray.data.ActorPoolStrategy(size=p2.actors),
            **actor_resources(p2.cpus_per_actor, p2.gpus_per_actor, p2.resources))
    run.write(scored, "_work/scored")
    if not reuse:  # every file's scores apart from the text, as Dolma's attributes
        run.write(run.read("_work/scored", columns=["id", "lang", "n_tokens"] +
                           [s.column for s in specs] + (["embedding"] if keep_emb else [])),
                  SCORES)
        storage.write_bytes(run.fs, run.path(meta_path), json.dumps(
            {"fingerprint": fp, "phase1": identity, "ranges": ranges,
             "annotators": [dataclasses.asdict(s) for s in specs]}, indent=1).encode())
    files = run.read("_work/scored", columns=["id"]).count()
    seconds = time.time() - t
    head = next(iter(heads.values()), None)
    return {"files": files, "seconds": round(seconds, 1),
            "files_per_s": round(files / seconds, 2) if seconds else None,
            "reused_scores": reuse, "fingerprint": fp,
            "annotators": annotator_stats(run, specs, ranges),
            "mode": head.mode if head else None, "encoder": head.encoder if head else None,
            "chunk": head.chunk if head else None, "precision": p2.precision,
            "head_metrics": head.metadata.get("metrics", {}) if head else {}}


def annotator_stats(run: Run, specs: list, ranges: dict, bins: int = 20) -> dict:
    """Each annotator's score distribution over the files it scored: files, mean and a
    histogram over its range (a small aggregate per block, merged on the driver)."""
    cols = [s.column for s in specs]

    def part(t: pa.Table) -> pa.Table:
        rows = []
        for s, c in zip(specs, cols):
            v = t.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
            v = v[~np.isnan(v)]
            lo, hi = ranges[s.name]
            h = np.histogram(np.clip(v, lo, hi), bins=bins, range=(lo, hi))[0]
            rows.append({"name": s.name, "n": len(v), "sum": float(v.sum()),
                         "hist": h.tolist()})
        return pa.Table.from_pylist(rows)

    out = {s.name: {"files": 0, "sum": 0.0, "hist": np.zeros(bins, np.int64)} for s in specs}
    parts = run.read("_work/scored", columns=cols).map_batches(part, batch_format="pyarrow",
                                                                 batch_size=None)
    for batch in parts.iter_batches(batch_format="pyarrow", batch_size=None):
        for r in batch.to_pylist():
            o = out[r["name"]]
            o["files"] += r["n"]
            o["sum"] += r["sum"]
            o["hist"] += np.array(r["hist"], np.int64)
    return {name: {"files": o["files"], "range": list(ranges[name]),
                   "mean": round(o["sum"] / o["files"], 4) if o["files"] else None,
                   "histogram": o["hist"].tolist()} for name, o in out.items()}


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

    top = 1.0  # quality: the annotators' weighted mean, each scaled to [0, 1]
    cuts = thresholds(hist_fn, budgets, (0.0, top), bins=p2.bins, passes=p2.passes)
    cut = {lang: c["threshold"] for lang, c in cuts.items()}
    # the score distribution per language for the report: 20 bins over the score range
    report_bins = 20
    dist = hist_fn({lang: (0.0, top, True) for lang in per_lang}, report_bins)
    histograms = {"range": [0.0, top], "bins": report_bins, "threshold": {
        lang: c for lang, c in cut.items() if np.isfinite(c)}, "languages": {
        lang: h["files"].astype(int).tolist() for lang, h in sorted(dist.items())}}
    files = run.read("_work/scored", columns=FILE_COLS + ["quality"] + (
        ["embedding"] if keeps_embeddings(run) else []))
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
