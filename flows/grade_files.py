"""Grade code files 0-5 with the phase-3 LLM: a labelled set for the phase-2 annotator.

    # a 2% sample of a phase-1 output, graded by the cluster's rewriter model
    ray job submit --working-dir . -- python flows/grade_files.py \\
        --config flows/configs/cluster.yaml --input s3://b/out/_work/clean \\
        --sample 0.02 --out s3://b/edu-labels/
    python flows/train_annotator.py --mode graded --labelled s3://b/edu-labels/ \\
        --label-column grade --out s3://b/heads/edu.json

phi-1 and FineWeb-Edu label files for "educational value" with a strong LLM and train a
classifier on the labels (the paper's ANN-EDU). Inputs: Parquet or JSONL(.gz) files with
the text in ``content`` (a phase-1 ``_work/clean`` folder works: removed rows have no
content and are skipped), local or S3. A file is kept in the sample when a hash of its id
(or text) falls under ``--sample``, so a re-run grades the same files. The prompt is a
template file (``operators/prompts/grade_educational.yaml`` by default); the engine is the
config's ``phase3.engine`` on a Ray Data actor pool. Output Parquet: ``id``, ``content``,
``lang``, ``grade`` (null when the answer holds no score), ``answer``, ``status``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pyarrow as pa
import xxhash

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from operators import storage  # noqa: E402

_SCORE = re.compile(r"(?:score|grade|rating)[^0-9\n]{0,20}([0-5])(?![0-9])", re.I)
_DIGIT = re.compile(r"(?<![0-9.])([0-5])(?![0-9])")


def parse_grade(answer: str | None) -> float | None:
    """The 0-5 score in an answer ("Score: 4"), else its first lone digit 0-5, else None."""
    if not answer:
        return None
    m = _SCORE.search(answer) or _DIGIT.search(answer)
    return float(m.group(1)) if m else None


def _read_sample(batch: pa.Table, fs, fraction: float, max_chars: int, template,
                 max_tokens: int) -> pa.Table:
    rows = []
    for path in batch.column("path").to_pylist():
        for i, r in enumerate(storage.read_records(fs, path)):
            text = r.get("content")
            if not text:
                continue
            rid = str(r.get("id") or f"{path}#{i}")
            if xxhash.xxh3_64_intdigest(rid.encode()) / 2.0 ** 64 >= fraction:
                continue
            lang = r.get("lang") or "code"
            msgs = template.messages(text[:max_chars], lang, lang)
            rows.append({"request_id": rid, "content": text, "lang": lang,
                         "messages_json": json.dumps(msgs), "temperature": 0.0,
                         "top_p": 1.0, "max_tokens": max_tokens,
                         "sampling_seed": 0})
    return pa.Table.from_pylist(rows, schema=pa.schema([
        ("request_id", pa.string()), ("content", pa.large_string()), ("lang", pa.string()),
        ("messages_json", pa.large_string()), ("temperature", pa.float32()),
        ("top_p", pa.float32()), ("max_tokens", pa.int32()), ("sampling_seed", pa.int64())]))


def _grades(t: pa.Table) -> pa.Table:
    answers = t.column("answer").to_pylist()
    grades = [parse_grade(a) for a in answers]
    status = [("failed: " + (e or "")) if s != "ok" else ("ok" if g is not None else
                                                          "no_score")
              for s, e, g in zip(t.column("gen_status").to_pylist(),
                                 t.column("gen_error").to_pylist(), grades)]
    return pa.table({"id": t.column("request_id"), "content": t.column("content"),
                     "lang": t.column("lang"), "grade": pa.array(grades, pa.float32()),
                     "answer": t.column("answer"), "status": pa.array(status, pa.string())})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input", required=True, help="files or folder, local or s3://")
    p.add_argument("--out", required=True, help="output folder, local or s3://")
    p.add_argument("--config", help="YAML settings (engine: phase3.engine)")
    p.add_argument("--sample", type=float, default=1.0, help="share of files to grade")
    p.add_argument("--max-chars", type=int, default=6000, help="file text in the prompt")
    p.add_argument("--template", default="grade_educational")
    p.add_argument("--templates-dir", help="a folder of *.yaml templates")
    p.add_argument("--max-tokens", type=int, default=32)
    args = p.parse_args(argv)
    if not 0 < args.sample <= 1:
        p.error("--sample must be in (0, 1]")

    import ray
    import ray.data

    import pyarrow.fs as pafs

    from flows.manifest import grouped_sums
    from flows.runtime import actor_resources, init_ray
    from flows.settings import SettingsError, load_settings
    from operators.llm import VLLMGenerator
    from operators.prompt_builder import load_templates

    try:
        settings = load_settings(args.config)
        templates = load_templates(args.templates_dir)
    except (SettingsError, FileNotFoundError, ValueError) as exc:
        print(f"grade_files: {exc}", file=sys.stderr)
        return 2
    if args.template not in templates:
        print(f"grade_files: unknown template {args.template!r}; known {sorted(templates)}",
              file=sys.stderr)
        return 2
    p3 = settings.phase3
    started = init_ray(settings, lambda m: print(m, file=sys.stderr))
    fs, root = storage.resolve(args.input, settings.s3)
    files = storage.list_files(fs, root, (".parquet", ".jsonl", ".jsonl.gz", ".json"))
    if not files:
        print(f"grade_files: no Parquet/JSONL files under {args.input}", file=sys.stderr)
        return 2
    ds = ray.data.from_items([{"path": f} for f in files],
                             override_num_blocks=min(len(files), 4096))
    requests = ds.map_batches(_read_sample, batch_size=1, batch_format="pyarrow",
                              fn_kwargs={"fs": fs, "fraction": args.sample,
                                         "max_chars": args.max_chars,
                                         "template": templates[args.template],
                                         "max_tokens": args.max_tokens})
    pool = ray.data.ActorPoolStrategy(min_size=p3.actors, max_size=p3.max_actors or p3.actors)
    answers = requests.map_batches(
        VLLMGenerator, batch_size=p3.batch_requests, batch_format="pyarrow",
        fn_constructor_kwargs={"engine": p3.engine, "s3": settings.s3}, compute=pool,
        **actor_resources(p3.cpus_per_actor, p3.gpus_per_actor, p3.resources))
    out_fs, out_root = storage.resolve(args.out, settings.s3)
    storage.remove_dir(out_fs, out_root)
    storage.ensure_dir(out_fs, out_root)
    local = isinstance(out_fs, pafs.LocalFileSystem)
    answers.map_batches(_grades, batch_format="pyarrow").write_parquet(
        out_root, filesystem=None if local else out_fs)
    written = ray.data.read_parquet(out_root, filesystem=None if local else out_fs)
    counts = grouped_sums(written.select_columns(["grade", "status"]), ["status", "grade"])
    summary = {"files": sum(r["count()"] for r in counts),
               "graded": sum(r["count()"] for r in counts if r["grade"] is not None),
               "histogram": {str(int(r["grade"])): r["count()"] for r in counts
                             if r["grade"] is not None},
               "status": {}}
    for r in counts:
        summary["status"][r["status"]] = summary["status"].get(r["status"], 0) + r["count()"]
    print(json.dumps(summary))
    if started:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
