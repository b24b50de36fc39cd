"""Check a run's mixture against its manifest.

    python flows/verify.py OUT [--config YAML] [--retokenize]   # OUT local or s3://

Re-reads every shard the manifest lists (one Ray task per shard, so a cluster checks in
parallel): its sha256, that it is Parquet with the mixture schema, its rows, its tokens,
its phase; its token files (``mixture.tokenized``): each file's sha256, that its index
parses and agrees with its data (sizes, offsets, an end-of-document token closing every
document), its documents and tokens against the manifest, one document per Parquet row
(``--retokenize``: every document's ids equal to the shard's text encoded again); then the
per-phase totals by language, source and epoch recomputed from the shards against the
manifest's; that no shard or token file is missing or unlisted; that the config hash is the
hash of the recorded config. Exit 0 when everything matches, 1 with the list of mismatches
otherwise, 2 when there is no manifest or mixture.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from operators import storage  # noqa: E402
from operators.mixture import (MIXTURE_SCHEMA, breakdown, merge_breakdowns,  # noqa: E402
                               phase_number, sha256)
from operators import tokenized as tk  # noqa: E402

TOKEN_SUFFIXES = (".bin", ".idx", ".ds", ".ds.index", ".ds.metadata")


def _token_file(fs, root: str, fmt: str, f: dict, info: dict) -> tuple[list, np.ndarray,
                                                                        np.ndarray]:
    """(problems, ids, lengths) of one listed token file."""
    errors, blobs = [], {}
    for suffix, rec in f["files"].items():
        path = f"{f['name']}{suffix}"
        try:
            data = storage.read_bytes(fs, f"{root}/{path}")
        except (FileNotFoundError, OSError) as exc:
            errors.append(f"{path}: cannot be read ({exc})")
            continue
        if sha256(data) != rec["sha256"]:
            errors.append(f"{path}: sha256 {sha256(data)[:12]}… != manifest "
                          f"{rec['sha256'][:12]}…")
        blobs[suffix] = data
    empty = np.zeros(0, np.int64)
    dtype = np.dtype(info["dtype"][fmt])
    try:
        if fmt == "megatron":
            got, lengths, pointers, doc_idx = tk.read_megatron_index(blobs[".idx"])
            lengths = lengths.astype(np.int64)
            if got != dtype:
                errors.append(f"{f['name']}.idx: dtype {got}, manifest {dtype}")
            want = np.concatenate([[0], np.cumsum(lengths[:-1] * got.itemsize)]) \
                if lengths.size else empty
            if not np.array_equal(pointers, want) or \
                    not np.array_equal(doc_idx, np.arange(lengths.size + 1)):
                errors.append(f"{f['name']}.idx: offsets or document indices do not follow "
                              "the lengths")
            data = blobs[".bin"]
        else:
            ends = np.frombuffer(blobs[".ds.index"], "<u8").astype(np.int64)
            lengths = np.diff(ends, prepend=0)
            meta = blobs[".ds.metadata"].decode().split("\n")
            if meta[:2] != [f"{info['tokenizer']}|{dtype.itemsize}", str(int(ends[-1]) if
                                                                          ends.size else 0)]:
                errors.append(f"{f['name']}.ds.metadata: {meta[:2]} does not name the "
                              "tokenizer, token size and count")
            data = blobs[".ds"]
    except (KeyError, ValueError) as exc:
        return errors + [f"{f['name']}: unreadable index ({exc})"], empty, empty
    if len(data) != int(lengths.sum()) * dtype.itemsize:
        return errors + [(f"{f['name']}: {len(data)} data bytes for {int(lengths.sum())} "
                          f"tokens of {dtype.itemsize} bytes")], empty, empty
    ids = np.frombuffer(data, dtype.newbyteorder("<")).astype(np.int64)
    if lengths.size and (lengths.min() < 1 or
                         (ids[np.cumsum(lengths) - 1] != info["eod_id"]).any()):
        errors.append(f"{f['name']}: a document does not end with the end-of-document token")
    if (lengths.size, int(lengths.sum())) != (f["documents"], f["tokens"]):
        errors.append(f"{f['name']}: {lengths.size} documents, {int(lengths.sum())} tokens; "
                      f"manifest {f['documents']}, {f['tokens']}")
    return errors, ids, lengths


def check_tokenized(fs, root: str, shard: dict, table: pa.Table | None, info: dict,
                    retokenize: bool) -> list[str]:
    """The problems of one Parquet shard's token files."""
    errors = []
    files = json.loads(shard["tokenized"])
    expected = None
    if retokenize and table is not None:
        vocab = tk.Vocabulary(info["tokenizer"], info["eod_token"], info["eod_id"],
                              info["vocab_size"])
        ids, lengths = tk.encode(table.column("text").to_pylist(), vocab)
        expected = tk.split_documents(ids, lengths)
    for fmt in info["formats"]:
        if fmt not in files:
            errors.append(f"{shard['path']}: no {fmt} token files listed")
            continue
        docs: list = []
        n = tokens = 0
        for f in files[fmt]:
            problems, ids, lengths = _token_file(fs, root, fmt, f, info)
            errors += problems
            n += f["documents"]
            tokens += f["tokens"]
            if expected is not None:
                docs += tk.split_documents(ids, lengths)
        if n != shard["rows"]:
            errors.append(f"{shard['path']}: {fmt} files hold {n} documents for "
                          f"{shard['rows']} rows")
        elif info.get("counts_n_tokens") and tokens - n != shard["tokens"]:
            errors.append(f"{shard['path']}: {fmt} files hold {tokens - n} tokens besides "
                          f"the end-of-document ones; its rows' n_tokens add up to "
                          f"{shard['tokens']}")
        if expected is not None:
            bad = [i for i, (a, b) in enumerate(zip(docs, expected)) if not np.array_equal(a, b)]
            if bad or len(docs) != len(expected):
                errors.append(f"{shard['path']}: {fmt} tokens differ from the text encoded "
                              f"again in {len(bad)} document(s) (first: row "
                              f"{bad[0] if bad else min(len(docs), len(expected))})")
    return errors


def check_shard(batch: pa.Table, fs, root: str, info: dict | None = None,
                retokenize: bool = False) -> pa.Table:
    """Per shard row (path, sha256, rows, tokens, phase): the problems found and the
    shard's recomputed breakdown."""
    out_err, out_bd = [], []
    for s in batch.to_pylist():
        errors = []
        bd: list = []
        try:
            data = storage.read_bytes(fs, f"{root}/{s['path']}")
        except (FileNotFoundError, OSError) as exc:
            out_err.append(json.dumps([f"{s['path']}: cannot be read ({exc})"]))
            out_bd.append("[]")
            continue
        if sha256(data) != s["sha256"]:
            errors.append(f"{s['path']}: sha256 {sha256(data)[:12]}… != manifest "
                          f"{s['sha256'][:12]}…")
        try:
            table = pq.read_table(pa.BufferReader(data))
        except (pa.ArrowInvalid, OSError) as exc:
            errors.append(f"{s['path']}: not a readable Parquet file ({exc})")
            out_err.append(json.dumps(errors))
            out_bd.append("[]")
            continue
        if table.schema.remove_metadata() != MIXTURE_SCHEMA:
            errors.append(f"{s['path']}: schema differs from the mixture schema")
        if table.num_rows != s["rows"]:
            errors.append(f"{s['path']}: {table.num_rows} rows, manifest {s['rows']}")
        if "n_tokens" in table.column_names:
            tokens = int(pc.sum(table.column("n_tokens")).as_py() or 0)
            if tokens != s["tokens"]:
                errors.append(f"{s['path']}: {tokens} tokens, manifest {s['tokens']}")
        if "phase" in table.column_names and table.num_rows:
            phases = set(pc.unique(table.column("phase")).to_pylist())
            if phases != {s["phase"]}:
                errors.append(f"{s['path']}: phase values {sorted(phases)} in a phase "
                              f"{s['phase']} shard")
        if {"lang", "source", "epoch", "n_tokens"} <= set(table.column_names):
            bd = breakdown(table)
        if info:
            errors += check_tokenized(fs, root, s, table if "text" in table.column_names
                                      else None, info, retokenize)
        out_err.append(json.dumps(errors))
        out_bd.append(json.dumps(bd))
    return pa.table({"path": batch.column("path"), "errors": out_err, "breakdown": out_bd,
                     "phase": batch.column("phase")})


def config_hash(config: dict, code: str | None = None) -> str:
    """:meth:`flows.settings.Settings.config_hash` from a manifest's record."""
    data = {k: v for k, v in config.items() if k not in ("resume", "phases")}
    if code is not None:
        data["code"] = code
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def verify(fs, root: str, retokenize: bool = False) -> tuple[list[str], dict]:
    """(problems, summary) of the mixture under ``root``; ``FileNotFoundError`` without a
    manifest, ``KeyError`` without a mixture in it."""
    import ray.data

    manifest = json.loads(storage.read_bytes(fs, f"{root}/manifest.json"))
    mix = manifest["mixture"]
    problems = []
    if config_hash(manifest["config"], manifest.get("code_fingerprint")) != \
            manifest["config_hash"]:
        problems.append("config_hash is not the hash of the recorded config")
    info = mix.get("tokenized")
    shards = [{**{k: s[k] for k in ("path", "rows", "tokens", "sha256")},
               "phase": phase_number(p), "tokenized": json.dumps(s.get("tokenized", {}))}
              for p, v in mix["phases"].items() for s in v["shards"]]
    listed = {s["path"] for s in shards}
    listed |= {f"{f['name']}{suffix}" for s in shards
               for files in json.loads(s["tokenized"]).values() for f in files
               for suffix in f["files"]}
    on_disk = set()
    if storage.exists(fs, f"{root}/mixture"):
        on_disk = {f[len(root) + 1:] for f in storage.list_files(
            fs, f"{root}/mixture", (".parquet",) + TOKEN_SUFFIXES)}
    problems += [f"{p}: in the mixture but not in the manifest" for p in sorted(on_disk - listed)]
    checked = []
    if shards:
        ds = ray.data.from_items(shards, override_num_blocks=min(len(shards), 1024))
        checked = ds.map_batches(check_shard, batch_size=1, batch_format="pyarrow",
                                 fn_kwargs={"fs": fs, "root": root, "info": info,
                                            "retokenize": retokenize}).take_all()
    by_phase: dict[int, list] = {}
    for r in checked:
        problems += json.loads(r["errors"])
        by_phase.setdefault(int(r["phase"]), []).append(json.loads(r["breakdown"]))
    for p, v in mix["phases"].items():
        got = merge_breakdowns(by_phase.get(phase_number(p), []))
        for key in ("rows", "tokens", "languages", "sources", "epochs"):
            if got[key] != v[key]:
                problems.append(f"phase {p}: {key} recomputed from the shards differ from the "
                                f"manifest ({json.dumps(got[key])[:200]} != "
                                f"{json.dumps(v[key])[:200]})")
    total = sum(v["tokens"] for v in mix["phases"].values())
    if total != mix["tokens"]:
        problems.append(f"mixture tokens {mix['tokens']} != the phases' sum {total}")
    return problems, {"shards": len(shards), "rows": mix["rows"], "tokens": mix["tokens"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="verify", description=__doc__.split("\n\n")[0])
    p.add_argument("output", help="the run's output URI (local or s3://)")
    p.add_argument("--config", help="YAML settings, for the s3 endpoint and credentials")
    p.add_argument("--retokenize", action="store_true",
                   help="encode every shard's text again and compare it with its token files")
    args = p.parse_args(argv)
    from flows.runtime import init_ray
    from flows.settings import SettingsError, load_settings

    try:
        settings = load_settings(args.config, {"output": args.output})
    except SettingsError as exc:
        print(f"verify: configuration error: {exc}", file=sys.stderr)
        return 2
    fs, root = storage.resolve(args.output, settings.s3)
    started = init_ray(settings, log=lambda m: None)
    try:
        problems, summary = verify(fs, root, args.retokenize)
    except FileNotFoundError:
        print(f"verify: no manifest.json under {args.output}", file=sys.stderr)
        return 2
    except KeyError:
        print(f"verify: the manifest under {args.output} has no mixture (run --phases mix)",
              file=sys.stderr)
        return 2
    finally:
        if started:
            import ray

            ray.shutdown()
    for line in problems:
        print(f"MISMATCH {line}")
    status = "FAILED" if problems else "OK"
    print(f"verify {status}: {summary['shards']} shards, {summary['rows']} rows, "
          f"{summary['tokens']} tokens; {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
