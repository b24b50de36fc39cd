"""The mixture stage on Ray Data: ``OUT/mixture/phase{1,2,3}/part-NNNNN-of-MMMMM.parquet``.

Per mixture phase: per-language tokens of each component's input (grouped sums, a few rows
to the driver) → repeat factors (:func:`operators.mixture.plan_phase`) → the shard count
from the expected bytes → every component's documents expanded into mixture rows with a
shard and a seeded order key (a streaming map) → one shuffle by shard → each group written
as one Parquet file by the worker that holds it, returning its path, rows, tokens, bytes
and sha256 (and, with ``mixture.tokenized``, the shard's documents as Megatron and
DataTrove/nanotron token files, :mod:`operators.tokenized`). The driver receives one small
row per shard; a shard (~512 MB) is the most any worker holds. The manifest gets each
phase's sampling weights (per source, per token file) and the training schedule.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
import ray.data

from flows.faults import maybe_die
from flows.manifest import grouped_sums
from flows.phases import MissingPhaseInput
from flows.runtime import Run
from operators import storage
from operators.mixture import (PHASES, breakdown, expand, merge_breakdowns, phase_dir,
                               phase_number, plan_phase, sha256, shard_bytes, shard_count,
                               shard_name)
from operators.schema import DOC_SCHEMA
from operators.tokenized import vocabulary, write_shard

DOC_COLS = ["doc_id", "text", "lang", "repo", "n_tokens", "epoch", "quality"]


def _first_epoch(t: pa.Table) -> pa.Table:
    return t.filter(pc.fill_null(pc.less_equal(t.column("epoch"), 1), True))


def available_tokens(run: Run, rel: str, first_epoch_only: bool) -> dict[str, int]:
    ds = run.read(rel, columns=["lang", "n_tokens", "epoch"], schema=DOC_SCHEMA)
    if first_epoch_only:
        ds = ds.map_batches(_first_epoch, batch_format="pyarrow")
    return {r["lang"]: int(r["sum(n_tokens)"]) for r in grouped_sums(ds, ["lang"], ["n_tokens"])}


def _text_bytes(batch: pa.Table, fs) -> pa.Table:
    total = 0
    for path in batch.column("path").to_pylist():
        with fs.open_input_file(path) as f:
            md = pq.ParquetFile(f).metadata
        names = [md.schema.column(i).path for i in range(md.num_columns)]
        if "text" not in names:
            continue
        col = names.index("text")
        total += sum(md.row_group(g).column(col).total_uncompressed_size
                     for g in range(md.num_row_groups))
    return pa.table({"bytes": pa.array([total], pa.int64())})


def bytes_per_token(run: Run, rel: str, tokens: int) -> float:
    """Text bytes per token of a flow output holding ``tokens`` tokens, the bytes from its
    Parquet footers (no data read)."""
    files = storage.list_files(run.fs, run.path(rel), (".parquet",))
    if not files or not tokens:
        return 0.0
    sizes = ray.data.from_items([{"path": f} for f in files]).map_batches(
        _text_bytes, batch_size=16, batch_format="pyarrow", fn_kwargs={"fs": run.fs})
    return sum(int(r["bytes"]) for r in sizes.iter_rows()) / tokens


def _write_shard(group: pa.Table, *, fs, root: str, phase: str, n_shards: int,
                 row_group_bytes: int, compression: str, level: int, tokenized,
                 vocab) -> pa.Table:
    maybe_die("mixture")
    shard = int(group.column("_shard")[0].as_py())
    data, rows = shard_bytes(group, row_group_bytes, compression, level)
    rel = shard_name(phase, shard, n_shards)
    storage.write_bytes(fs, f"{root}/{rel}", data)
    md = pq.ParquetFile(pa.BufferReader(data)).metadata
    files = {}
    if vocab is not None:  # the same documents, in the same order, as token files
        files = write_shard(rows.column("text"), fs=fs, root=root, phase_dir=phase_dir(phase),
                            shard=shard, n_shards=n_shards, settings=tokenized, vocab=vocab)
    return pa.table({
        "phase": [phase_number(phase)], "shard": [shard], "path": [rel],
        "rows": [rows.num_rows], "tokens": [int(pc.sum(rows.column("n_tokens")).as_py() or 0)],
        "bytes": [len(data)], "row_groups": [md.num_row_groups], "sha256": [sha256(data)],
        "breakdown": [json.dumps(breakdown(rows))], "tokenized": [json.dumps(files)]})


def mix_phase(run: Run, phase: str, vocab=None) -> dict:
    m = run.settings.mixture
    comps = m.components(phase)
    for c in comps:
        if not run.exists(c.input) or not run.exists(f"_stages/{_producer(c.input)}/_SUCCESS"):
            raise MissingPhaseInput(
                f"mixture phase {phase} reads {c.input}/ ({c.source}), which is not under "
                f"{run.output_uri}: run that phase first, or leave phase {phase} out of "
                "mixture.include")
    available = [available_tokens(run, c.input, c.first_epoch_only) for c in comps]
    plans = plan_phase(comps, available)
    # an input's whole token count: a component reading all of it already summed it
    totals = {c.input: sum(a.values()) for c, a in zip(comps, available)
              if not c.first_epoch_only}
    bpt = {}
    for c in comps:
        if c.input not in bpt:
            tokens = totals.get(c.input)
            if tokens is None:
                tokens = sum(available_tokens(run, c.input, False).values())
            bpt[c.input] = bytes_per_token(run, c.input, tokens)
    expected = sum(p["tokens"] * bpt[c.input] for p, c in zip(plans, comps))
    n_shards = shard_count(expected, m.compressed_ratio, m.shard_bytes)
    run.detail(f"mixture phase {phase}: " + ", ".join(
        f"{p['component']} x{p['factor']:.3f} → {p['tokens']:,.0f} tokens" for p in plans)
        + f"; ~{expected / 1e6:,.1f} MB of text in {n_shards} shard(s)")
    parts = []
    for c, plan in zip(comps, plans):
        docs = run.read(c.input, columns=DOC_COLS, schema=DOC_SCHEMA)
        parts.append(docs.map_batches(expand, batch_format="pyarrow", fn_kwargs={
            "phase": phase_number(phase), "source": c.source, "factors": plan["languages"],
            "first_epoch_only": c.first_epoch_only, "n_shards": n_shards,
            "seed": run.settings.seed}))
    rows = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    written = rows.groupby("_shard", num_partitions=min(n_shards, 1024)).map_groups(
        _write_shard, batch_format="pyarrow", fn_kwargs={
            "fs": run.fs, "root": run.root, "phase": phase, "n_shards": n_shards,
            "row_group_bytes": m.row_group_bytes, "compression": m.compression,
            "level": m.compression_level, "tokenized": m.tokenized, "vocab": vocab})
    shards = sorted(written.take_all(), key=lambda r: r["shard"])
    totals = merge_breakdowns([json.loads(s["breakdown"]) for s in shards])
    planned = sum(p["tokens"] for p in plans)
    listed = [{k: s[k] for k in ("path", "rows", "tokens", "bytes", "row_groups", "sha256")}
              | ({"tokenized": json.loads(s["tokenized"])} if vocab is not None else {})
              for s in shards]
    out = {
        **totals,
        "planned_tokens": round(planned),
        "plan_error": round(totals["tokens"] / planned - 1, 6) if planned else None,
        "components": [{**p, "available_tokens": sum(a.values()),
                        "factor": round(p["factor"], 6),
                        "languages": {k: round(v, 6) for k, v in p["languages"].items()}}
                       for p, a in zip(plans, available)],
        "n_shards": n_shards,
        "bytes": sum(s["bytes"] for s in shards),
        "text_bytes_expected": round(expected),
        "shards": listed,
    }
    if vocab is not None:
        out["tokenized"] = tokenized_totals(listed)
    out["sampling"] = sampling(run, out)
    return out


def tokenized_totals(shards: list[dict]) -> dict:
    """Per format: files, documents and tokens (end-of-document tokens included)."""
    out = {}
    for s in shards:
        for fmt, files in s["tokenized"].items():
            d = out.setdefault(fmt, {"files": 0, "documents": 0, "tokens": 0})
            d["files"] += len(files)
            d["documents"] += sum(f["documents"] for f in files)
            d["tokens"] += sum(f["tokens"] for f in files)
            # the text's own tokens: the end-of-document token is one per document
            d["content_tokens"] = d["tokens"] - d["documents"]
    return out


def sampling(run: Run, phase: dict) -> dict:
    """What a trainer needs to sample a mixture phase as planned: each source's share of
    its tokens, and per token format the files' weights (their share of the tokens, as
    Megatron's ``--data-path W PREFIX ...`` and nanotron's dataset folders take them). The
    repeats are already in the files, so uniform sampling by tokens gives the plan."""
    total = phase["tokens"]
    out = {"sources": {k: round(v["tokens"] / total, 6) if total else 0.0
                       for k, v in phase["sources"].items()}}
    files = {}
    for s in phase["shards"]:
        for fmt, fs in s.get("tokenized", {}).items():
            files.setdefault(fmt, []).extend(fs)
    if "megatron" in files:
        n = sum(f["tokens"] for f in files["megatron"]) or 1
        out["megatron_data_path"] = [x for f in files["megatron"]
                                     for x in (round(f["tokens"] / n, 9), run.uri(f["name"]))]
    if "datatrove" in files:
        folder = files["datatrove"][0]["name"].rsplit("/", 1)[0]
        out["datatrove_folder"] = run.uri(folder)
    return out


def _producer(rel: str) -> str:
    """The stage whose marker says a flow output is complete."""
    return {"phase1": "grouping", "phase2": "select", "phase3": "synth_budget"}[rel]


def mixture_stage(run: Run) -> dict:
    m = run.settings.mixture
    vocab = None
    if m.tokenized.formats:  # resolved once, before anything is written
        vocab = vocabulary(m.tokenized.tokenizer or run.settings.tokenizer,
                           m.tokenized.eod_token, run.settings.s3)
    storage.remove_dir(run.fs, run.path("mixture"))
    phases = {}
    for phase in sorted(m.include, key=PHASES.index):  # training order
        phases[phase] = mix_phase(run, phase, vocab)
    total = sum(p["tokens"] for p in phases.values())
    done = 0
    schedule = []
    for p, v in phases.items():
        schedule.append({"phase": p, "phase_value": phase_number(p), "tokens": v["tokens"],
                         "fraction": round(v["tokens"] / total, 6) if total else 0.0,
                         "starts_at": round(done / total, 6) if total else 0.0})
        done += v["tokens"]
    extra = {}
    if vocab is not None:
        extra["tokenized"] = {**vocab.public(), "formats": list(m.tokenized.formats),
                              "max_file_tokens": m.tokenized.max_file_tokens,
                              # then every file's tokens are its rows' n_tokens + 1 each
                              "counts_n_tokens": vocab.spec == run.settings.tokenizer}
    return {
        **extra,
        "schedule": schedule,
        "tokens": total, "rows": sum(p["rows"] for p in phases.values()),
        "bytes": sum(p["bytes"] for p in phases.values()),
        "phase_tokens": {p: v["tokens"] for p, v in phases.items()},
        "phase_shares": {p: round(v["tokens"] / total, 6) if total else 0
                         for p, v in phases.items()},
        "phases": phases,
    }


def run_mixture(run: Run) -> dict:
    """The mixture's stage; its section of the manifest."""
    run.stage("mixture", mixture_stage)
    return run.stage_info["mixture"]
