"""Phase 3 on Ray Data: an instruct LLM rewrites snippets of the top-scored files into
self-contained code files, validated, deduplicated and budgeted.

1. ``synth_seeds``  phase 2's selection (the top files per language) hashed and signed as
   in phase 1, with ``seed_syntax`` only the files that parse → ``_work/synth_seeds/``.
2. waves ``synth_wave_<k>``  per seed language a number of requests sized from the tokens
   still needed and the accepted tokens per request measured so far (a prior before any;
   :mod:`operators.synth_plan`); each seed file makes its share
   (:class:`operators.prompt_builder.PromptBuilder`), the requests go through the engine
   (:mod:`flows.rewrite`: an actor pool or Ray Data LLM; a chained SGCR → SCOR request
   generates twice) and straight on to validation
   (:class:`operators.synth.SynthValidator`: extraction, parsing, length, redaction,
   decontamination, hash, MinHash) → ``_work/synth/w<k>/``.
3. ``synth_dedup_<k>``  exact and near dedup of every output so far against the seeds and
   each other (the phase-1 keep policy and LSH stage; seeds always win) →
   ``removed/synth_exact_dedup/``, ``removed/synth_near_dedup/``. Waves stop when every
   language has its budget, or after ``max_waves``.
4. ``synth_budget``  the outputs beyond each language's budget are left out at random (a
   hash of the id, through the histogram thresholds of phase 2) → ``removed/synth_budget/``;
   the rest are written as ``phase=3`` documents, one per synthetic file, with their
   provenance (seed, template, sampling) → ``phase3/``; rejected rows →
   ``removed/synth_rejected/``.

The driver holds per-language counts only; every step streams or shuffles in partitions.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from flows.manifest import grouped_sums
from flows.near_dedup import near_dedup
from flows import rewrite
from flows.coreset import coreset_stage, in_coreset
from flows.phases import FILE_COLS, require
from flows.runtime import Run
from flows.shuffle import (KEY_BLOCK_ROWS, anti_join, block_rows, partition_count, partitioned,
                           rows_and_bytes)
from operators.dedup import choose_representatives
from operators.judge import STAGE as JUDGE_STAGE, apply_verdicts
from operators.schema import DOC_SCHEMA, FILE_SCHEMA, LEDGER_SCHEMA, conform, \
    put_column, tombstones_to_ledger
from operators.select import histogram, merge_histograms, select, thresholds
from operators.prompt_builder import hash_unit
from operators.synth_plan import plan_wave, request_counts, synth_targets
from operators.synth import SYNTH_FIELDS, SYNTH_SCHEMA, SynthValidator

#: seeds rank above every output in the keep policy (the most stars there can be)
SEED_STARS = 10 ** 12 - 1
NODE_COLS = ["id", "license", "stars", "content_hash", "lsh_bands", "minhash", "repo",
             "path", "lang", "n_tokens", "size_bytes", "source", "removed_stage"]
DEDUP = ["synth_exact_dedup", "synth_near_dedup"]
PHASE3_SCHEMA = pa.schema(list(DOC_SCHEMA) + [f for f in SYNTH_FIELDS])


def _apply(t: pa.Table, op) -> pa.Table:
    return op(t)


def _prepare_seeds(t: pa.Table, ops: list) -> pa.Table:
    t = conform(t, FILE_SCHEMA)
    t = t.set_column(t.schema.get_field_index("stars"), "stars",
                     pa.array([SEED_STARS] * t.num_rows, pa.int64()))
    t = t.set_column(t.schema.get_field_index("source"), "source",
                     pa.array(["seed"] * t.num_rows, pa.string()))
    for op in ops:
        t = op(t)
    return t


def seeds_stage(run: Run) -> dict:
    """Phase 2's selection as seeds: hashed and signed (the dedup of the outputs compares
    against them); with ``coreset`` only its files, with ``seed_syntax`` only the files
    that parse, with ``seed_min_lint`` only Python files scoring at least that. A seed left out stays in phase 2: it is not a
    removal from the data, so it has no ledger row; the manifest counts it by reason."""
    p1, p3 = run.settings.phase1, run.settings.phase3
    ops = [p1.exact_dedup, p1.near_dedup]
    if p3.seed_min_lint is not None:
        ops.insert(0, dataclasses.replace(p1.lint, enabled=True, min_score=p3.seed_min_lint,
                                          languages=("Python",)))
    if p3.seed_syntax:
        ops.insert(0, dataclasses.replace(p1.syntax, enabled=True))
    seeds = run.read("_work/selected", columns=FILE_COLS)
    if p3.coreset.enabled:  # only the diversity coreset's files (flows/coreset.py)
        seeds = in_coreset(run, seeds)
    run.write(seeds.map_batches(_prepare_seeds, fn_kwargs={"ops": ops},
                                batch_format="pyarrow"), "_work/synth_seeds")
    rows = grouped_sums(run.read("_work/synth_seeds", columns=["lang", "n_tokens"],
                                 live=True), ["lang"], ["n_tokens"])
    gone = grouped_sums(run.read("_work/synth_seeds", columns=["removed_reason"],
                                 live=False), ["removed_reason"], [])
    return {"files": {r["lang"]: r["count()"] for r in rows},
            "tokens": {r["lang"]: r["sum(n_tokens)"] for r in rows},
            "left_out": {r["removed_reason"]: r["count()"] for r in gone}}


# -- waves ---------------------------------------------------------------------------------

def build_validator(run: Run) -> SynthValidator:
    s = run.settings
    p1, p3 = s.phase1, s.phase3
    ops = p1.bound(["decontamination"], s.tokenizer, s.s3) + [p1.exact_dedup, p1.near_dedup]
    return SynthValidator(tokenizer=s.tokenizer, min_tokens=p3.min_file_tokens,
                          max_tokens=p3.max_file_tokens, reject_truncated=p3.reject_truncated,
                          require_parse=p3.require_parse,
                          redactor=p1.redaction if p1.redaction.enabled else None, ops=ops)


def _verdicts(t: pa.Table, d) -> pa.Table:
    return apply_verdicts(t, d, d.rules())


def _flat_counts(b: pa.Table) -> pa.Table:
    for name, fill in (("removed_stage", "kept"), ("output_tokens", 0),
                       ("first_output_tokens", 0)):
        i = b.schema.get_field_index(name)
        b = b.set_column(i, name, pc.fill_null(b.column(name), fill))
    return b


def generate_wave(run: Run, wave: int, plan: dict[str, int], seed_files: dict[str, int]
                  ) -> dict:
    s = run.settings
    p3 = s.phase3
    counts = {lang: (n, seed_files[lang]) for lang, n in plan.items()}
    seeds = run.read("_work/synth_seeds", columns=["id", "content", "lang"], live=True)
    requests = seeds.map_batches(request_counts, batch_format="pyarrow",
                                 fn_kwargs={"plan": counts, "seed": s.seed, "wave": wave})
    requests = requests.map_batches(_apply, fn_kwargs={"op": p3.builder(wave, s.seed)},
                                    batch_format="pyarrow")
    answers = rewrite.answers(run, requests, wave)
    checked = answers.map_batches(_apply, fn_kwargs={"op": build_validator(run)},
                                  batch_format="pyarrow")
    if p3.discriminator.enabled:  # after validation: the judge's own removals
        checked = checked.map_batches(_verdicts, fn_kwargs={"d": p3.discriminator},
                                      batch_format="pyarrow")
    t = time.time()
    run.write(checked, f"_work/synth/w{wave:03d}")
    seconds = time.time() - t
    rows = run.read(f"_work/synth/w{wave:03d}", columns=[
        "lang", "output_tokens", "first_output_tokens", "removed_stage"], schema=SYNTH_SCHEMA)
    flat = rows.map_batches(_flat_counts, batch_format="pyarrow")
    by = grouped_sums(flat, ["removed_stage"], ["output_tokens", "first_output_tokens"])
    # both steps' tokens: a chained request generates twice
    out_tokens = sum(r["sum(output_tokens)"] + r["sum(first_output_tokens)"] for r in by)
    return {"plan": plan, "requests": sum(r["count()"] for r in by),
            "seconds": round(seconds, 1), "output_tokens": out_tokens,
            "output_tokens_per_s": round(out_tokens / seconds, 1) if seconds else None,
            "rows_by_stage": {r["removed_stage"]: r["count()"] for r in by}}


def _nodes(t: pa.Table) -> pa.Table:
    return conform(t, pa.schema([SYNTH_SCHEMA.field(c) if c in SYNTH_SCHEMA.names else
                                 pa.field(c, pa.list_(pa.uint64())) for c in NODE_COLS]))


def _only_synthetic(t: pa.Table) -> pa.Table:
    return t.filter(pc.equal(t.column("source"), "synthetic"))


def dedup_stage(run: Run) -> dict:
    """Exact then near dedup of all outputs so far against the seeds and each other."""
    p1 = run.settings.phase1
    parts = [run.read(rel, live=True).map_batches(_nodes, batch_format="pyarrow")
             for rel in ("_work/synth_seeds", "_work/synth")]
    run.write(parts[0].union(parts[1]), "_work/synth_nodes")
    n_nodes = run.read("_work/synth_nodes", columns=["id"]).count()
    n_parts = partition_count(n_nodes, p1.exact_dedup.rows_per_bucket)
    keys = run.read("_work/synth_nodes", columns=["id", "license", "stars", "content_hash",
                                                   "repo", "path", "lang", "n_tokens",
                                                   "size_bytes", "source"],
                    rows_per_task=KEY_BLOCK_ROWS, total_rows=n_nodes)
    exact = partitioned(keys, ["content_hash"], n_parts, choose_representatives,
                        {"group_col": "content_hash", "stage": "synth_exact_dedup",
                         "reason": "exact_duplicate"}, batch_rows=None)
    run.write(exact.map_batches(_only_synthetic, batch_format="pyarrow"),
              "removed/synth_exact_dedup")
    info = {}
    if p1.near_dedup.enabled:
        info = near_dedup(run, n_nodes, source="_work/synth_nodes",
                          exclude=("removed/synth_exact_dedup",), out="_work/synth_near",
                          stage="synth_near_dedup")
        near = run.read("_work/synth_near", schema=LEDGER_SCHEMA)
        run.write(near.map_batches(_only_synthetic, batch_format="pyarrow"),
                  "removed/synth_near_dedup")
    return {"nodes": n_nodes, "near_dedup": info}


def _dedup_ledgers(run: Run, columns: list[str]) -> list:
    return [run.read(f"removed/{d}", columns=columns, schema=LEDGER_SCHEMA)
            for d in DEDUP if run.exists(f"removed/{d}")]


def accepted(run: Run) -> tuple[dict, dict]:
    """Per output language: requests made, and tokens accepted (valid, not duplicates)."""
    if not run.exists("_work/synth"):
        return {}, {}
    rows = run.read("_work/synth", columns=["lang", "n_tokens", "removed_stage"],
                    schema=SYNTH_SCHEMA)
    live = rows.map_batches(lambda b: b.append_column(
        "live", pc.is_null(b.column("removed_stage"))).drop_columns(["removed_stage"]),
        batch_format="pyarrow")
    made: dict[str, int] = {}
    good: dict[str, int] = {}
    for r in grouped_sums(live, ["lang", "live"], ["n_tokens"]):
        made[r["lang"]] = made.get(r["lang"], 0) + r["count()"]
        if r["live"]:
            good[r["lang"]] = good.get(r["lang"], 0) + r["sum(n_tokens)"]
    for ledger in _dedup_ledgers(run, ["lang", "n_tokens"]):
        for r in grouped_sums(ledger, ["lang"], ["n_tokens"]):
            good[r["lang"]] = good.get(r["lang"], 0) - r["sum(n_tokens)"]
    return made, good


def _priority(t: pa.Table) -> pa.Table:
    return t.append_column("quality", pa.array(hash_unit(t.column("id").to_pylist(), "p3")))


def _not_selected(t: pa.Table, cut: dict) -> pa.Table:
    th = np.array([cut.get(x, np.inf) for x in t.column("lang").to_pylist()])
    q = t.column("quality").to_numpy(zero_copy_only=False)
    out = t.filter(pa.array(q < th)).drop_columns(["quality"])
    out = out.append_column("stage", pa.array(["synth_budget"] * out.num_rows, pa.string()))
    out = out.append_column("reason", pa.array(["over_budget"] * out.num_rows, pa.string()))
    return conform(out, LEDGER_SCHEMA)


def _to_docs(t: pa.Table) -> pa.Table:
    n = t.num_rows
    cols = {"doc_id": t.column("id"), "text": t.column("content"),
            "phase": pa.array([3] * n, pa.int8()), "part": pa.array([0] * n, pa.int32()),
            "file_ids": pa.array([[i] for i in t.column("id").to_pylist()],
                                 pa.list_(pa.string())),
            "n_files": pa.array([1] * n, pa.int32())}
    for name, col in cols.items():
        t = put_column(t, name, col)
    return conform(t, PHASE3_SCHEMA)


def budget_stage(run: Run, targets: dict[str, float]) -> dict:
    p2 = run.settings.phase2
    cols = [c for c in SYNTH_SCHEMA.names if not c.startswith("removed_")]
    schema = pa.schema([SYNTH_SCHEMA.field(c) for c in cols])
    rows = run.read("_work/synth", columns=cols, live=True)
    n_rows, n_bytes = rows_and_bytes(run.read("_work/synth", columns=["size_bytes"], live=True))
    n_parts = partition_count(n_rows, run.settings.phase1.grouping.rows_per_partition)
    # rows carry prompts and answers besides the file: blocks of half the usual rows
    kept = anti_join(rows, _dedup_ledgers(run, ["id"]), schema, n_parts,
                     batch_rows=max(1, block_rows(n_rows, n_bytes) // 2))
    kept = kept.map_batches(_priority, batch_format="pyarrow").materialize()
    keys = kept.select_columns(["lang", "quality", "n_tokens"])

    def hist_fn(ranges):
        parts = keys.map_batches(histogram, fn_kwargs={"ranges": ranges, "bins": p2.bins},
                                 batch_format="pyarrow", batch_size=None)
        return merge_histograms(list(parts.iter_batches(batch_format="pyarrow",
                                                        batch_size=None)), p2.bins)

    cuts = thresholds(hist_fn, targets, (0.0, 1.0), bins=p2.bins, passes=p2.passes)
    cut = {lang: c["threshold"] for lang, c in cuts.items()}
    run.write(kept.map_batches(_not_selected, fn_kwargs={"cut": cut}, batch_format="pyarrow"),
              "removed/synth_budget")
    chosen = kept.map_batches(select, fn_kwargs={"cut": cut}, batch_format="pyarrow")
    run.write(chosen.map_batches(_to_docs, batch_format="pyarrow"), "phase3")
    rejected = run.read("_work/synth", live=False)
    run.write(rejected.map_batches(tombstones_to_ledger, batch_format="pyarrow"),
              "removed/synth_rejected")
    return {}


def _counts(run: Run) -> dict:
    """The phase-3 funnel: every request is in phase3/ or in exactly one ledger."""
    made = run.read("_work/synth", columns=["id"]).count()
    docs = grouped_sums(run.read("phase3", columns=["lang", "n_tokens", "template"],
                                 schema=PHASE3_SCHEMA), ["lang", "template"], ["n_tokens"])
    removed = {}
    for d in ["synth_rejected"] + DEDUP + ["synth_budget"]:
        ledger = run.read(f"removed/{d}", columns=["stage", "reason", "n_tokens"],
                          schema=LEDGER_SCHEMA)
        for r in grouped_sums(ledger, ["stage", "reason"], ["n_tokens"]):
            removed.setdefault(r["stage"], {})[r["reason"]] = r["count()"]
    kept_rows = sum(r["count()"] for r in docs)
    removed_rows = sum(v for st in removed.values() for v in st.values())
    return {"requests": made, "kept": kept_rows, "removed": removed,
            "docs": docs, "conservation": {"ok": made == kept_rows + removed_rows,
                                           "requests": made, "kept": kept_rows,
                                           "removed": removed_rows}}


def _clear_unfinished(run: Run) -> None:
    """Outputs of waves that did not finish (or, without --resume, of any earlier run)
    must not count towards the budget."""
    from operators import storage

    if not run.settings.resume:
        for rel in ["_work/synth", "_work/synth_step1", "_work/synth_judge",
                    "_work/synth_nodes", "_work/synth_near"] + [
                f"removed/{d}" for d in DEDUP + ["synth_budget", "synth_rejected"]]:
            storage.remove_dir(run.fs, run.path(rel))
        return
    if run.exists("_work/synth"):
        for info in run.fs.get_file_info(pafs.FileSelector(run.path("_work/synth"))):
            wave = int(info.base_name.lstrip("w") or 0)
            if not run.stage_done(f"synth_wave_{wave}"):
                storage.remove_dir(run.fs, info.path)


def run_phase3(run: Run) -> dict:
    s = run.settings
    p3 = s.phase3
    require(run, "select", "3", "2")
    _clear_unfinished(run)
    if p3.coreset.enabled:
        run.stage("synth_coreset", coreset_stage)
    run.stage("synth_seeds", seeds_stage)
    seed_files = run.stage_info["synth_seeds"]["files"]
    per_lang = {r["lang"]: r["sum(n_tokens)"] for r in grouped_sums(
        run.read("_work/scored", columns=["lang", "n_tokens"]), ["lang"], ["n_tokens"])}
    phase1_tokens = sum(per_lang.values())
    total = float(p3.budget_tokens) if p3.budget_tokens else p3.budget_ratio * phase1_tokens
    builder = p3.builder(0, s.seed)
    weights = {t: w for t, w in builder.templates.items() if w > 0}
    tshare = sum(w for t, w in weights.items()
                 if builder.library[t].output_language == "target") / sum(weights.values())
    targets = synth_targets(per_lang, seed_files, total, p3.shares, p3.target_language,
                            tshare > 0)
    run.log(f"phase 3: budget {total:.0f} tokens: " + ", ".join(
        f"{k} {v:.0f}" for k, v in sorted(targets.items())))
    waves = []
    for wave in range(p3.max_waves + 1):  # the last pass only measures
        made, good = accepted(run)
        need = {lang: targets[lang] - good.get(lang, 0) for lang in targets}
        if all(v <= 0 for v in need.values()) or wave == p3.max_waves:
            break
        per_request = {lang: (good.get(lang, 0) / made[lang]) if made.get(lang, 0) >= 8
                       else p3.prior_tokens_per_request for lang in targets}
        if wave and all(per_request[lang] <= 0 for lang in need if need[lang] > 0):
            run.log("phase 3: no output accepted so far for the languages still short; "
                    "stopping")
            break
        plan = plan_wave(need, per_request, seed_files, tshare, p3.target_language,
                         p3.overshoot, p3.max_requests_per_wave, p3.min_requests_per_wave,
                         p3.min_requests_per_language)
        if not plan:
            break
        run.log(f"phase 3: wave {wave}: requests per seed language {plan}")
        run.stage(f"synth_wave_{wave}", lambda r, w=wave, p=plan: generate_wave(
            r, w, p, seed_files))
        run.stage(f"synth_dedup_{wave}", dedup_stage)
        waves.append(run.stage_info[f"synth_wave_{wave}"])
    # every exit follows a fresh measurement: `good` is the accepted tokens of all waves
    run.stage("synth_budget", lambda r: budget_stage(r, targets))
    counts = _counts(run)
    got: dict[str, int] = {}
    for r in counts["docs"]:
        got[r["lang"]] = got.get(r["lang"], 0) + r["sum(n_tokens)"]
    selected = sum(got.values())
    templates: dict[str, int] = {}
    for r in counts["docs"]:
        templates[r["template"]] = templates.get(r["template"], 0) + r["count()"]
    rejected = sum(v for st, reasons in counts["removed"].items()
                   if st not in DEDUP + ["synth_budget", JUDGE_STAGE] for v in reasons.values())
    gen_s = sum(w["seconds"] for w in waves)
    out_tok = sum(w["output_tokens"] for w in waves)
    return {
        "budget_tokens": round(total), "selected_tokens": selected,
        "budget_error": round(selected / total - 1, 6) if total else None,
        # generation's stop rule: every language accepted its budget (the selection then
        # trims to it, within about half a file per language)
        "budget_met": all(good.get(k, 0) >= v for k, v in targets.items()),
        "waves": waves, "engine": {"model": p3.engine.model,
                                   "tensor_parallel_size": p3.engine.tensor_parallel_size},
        "output_tokens": out_tok, "output_tokens_per_s": round(out_tok / gen_s, 1)
        if gen_s else None,
        # of the requests made: answers that passed validation, and files finally kept
        "validation_pass_rate": round(1 - rejected / counts["requests"], 4)
        if counts["requests"] else None,
        "kept_rate": round(counts["kept"] / counts["requests"], 4)
        if counts["requests"] else None,
        "languages": {lang: {"budget": round(targets.get(lang, 0)),
                             "accepted_tokens": good.get(lang, 0),
                             "selected_tokens": got.get(lang, 0),
                             "share": round(got.get(lang, 0) / selected, 6) if selected else 0}
                      for lang in sorted(set(targets) | set(got))},
        "templates": templates,
        **({"discriminator": rewrite.discriminator_stats(run)}
           if p3.discriminator.enabled else {}),
        **({"coreset": run.stage_info["synth_coreset"]} if p3.coreset.enabled else {}),
        "removed": counts["removed"], "conservation": counts["conservation"]}
