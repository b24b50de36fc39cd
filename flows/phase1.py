"""Phase 1 on Ray Data: the stage layer that wires :mod:`operators` into datasets.

Stages, each written to storage with a ``_SUCCESS`` marker (a re-run with ``--resume``
skips a finished stage whose config hash matches):

1. ``ingest``  read every input file → the row-wise operators of
   :mod:`operators.registry`, in its order (content checks → language filter → secret/PII
   redaction → token count → basic filters → code filters → decontamination → content
   hash → MinHash signatures). One streaming map over the content; output ``_work/clean/``
   holds every row, removed ones as tombstones without content, with the filters' scores
   and each batch's per-operator stats. Their ledger goes to ``removed/ingest/``.
2. ``exact_dedup``  only the key columns (no content) are shuffled, by content-hash bucket;
   each bucket picks representatives and writes the others to ``removed/exact_dedup/``.
3. ``near_dedup``  MinHash LSH buckets → edges → connected components (flows.near_dedup).
4. ``grouping``  live file rows and the removal markers of the dedup stages are unioned and
   grouped by (language, repository): the single content shuffle of phase 1. Each group
   drops its marked files and builds repo documents → ``phase1/``.

Decontamination and redaction run before dedup, not after it as in the design sketch:
both are row-wise, so in the ingest map they cost no extra pass over the content (after
dedup they would need one more read and write of every surviving file). Redaction goes
first of all: token counts, the fertility filter (a private-key block tokenises badly)
and both dedups then see the text that will be published, so two copies that differ only
in a secret or an address are duplicates. The price is redacting files that a filter or
dedup drops later, and a contaminated file that is also a duplicate is recorded as
contamination.
"""

from __future__ import annotations

import time

import pyarrow as pa
import pyarrow.compute as pc
import ray
import ray.data

from flows.faults import maybe_die
from flows.manifest import phase1_counts
from flows.near_dedup import near_dedup
from flows.phases import DEDUP_STAGES, live_rows, live_totals
from flows.runtime import Run, release_memory
from flows.shuffle import KEY_BLOCK_ROWS, block_rows, partition_count, partitioned
from operators import registry, storage
from operators.dedup import choose_representatives
from operators.grouping import RepoDocumentBuilder, group_key_repo
from operators.io import INPUT_SUFFIXES, FileReader
from operators.schema import (FILE_SCHEMA, KEY_COLUMNS, LEDGER_SCHEMA, conform, live_mask,
                              tombstone_columns, tombstones_to_ledger)
from operators.storage import list_files

#: per batch of the ingest map, on its first row: each operator's seconds and the live rows
#: and content bytes before and after it (the reader's as ``read``)
OP_STATS_TYPE = pa.list_(pa.struct([
    ("op", pa.string()), ("seconds", pa.float64()), ("rows_in", pa.int64()),
    ("rows_out", pa.int64()), ("bytes_in", pa.int64()), ("bytes_out", pa.int64())]))


def _live_counts(table: pa.Table) -> tuple[int, int]:
    """Live rows and their content bytes (tombstones have null content: not summed)."""
    size = pc.sum(pc.binary_length(table.column("content"))).as_py() or 0
    return int(pc.sum(live_mask(table)).as_py() or 0), int(size)


def _with_scores(table: pa.Table, ops: list) -> pa.Table:
    """Every operator's score columns, in operator order, last (null where an operator had
    nothing to measure in this batch): every block of the ingest map has one schema."""
    scores = [f"score_{s}" for op in ops for s in op.scores]
    for name in scores:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, pa.float32()))
    return table.select([c for c in table.column_names if c not in scores] + scores)


def _read_and_clean(batch: pa.Table, reader: FileReader, ops: list):
    """One input file (a one-row batch of paths) → cleaned canonical batches, each with
    its operators' stats (:data:`OP_STATS_TYPE`)."""
    maybe_die("ingest")
    batches = iter(reader(batch))
    while True:
        t = time.perf_counter()
        table = next(batches, None)
        if table is None:
            break
        rows, size = _live_counts(table)
        stats = [{"op": registry.READ_STAGE, "seconds": time.perf_counter() - t,
                  "rows_in": table.num_rows, "rows_out": rows, "bytes_in": size,
                  "bytes_out": size}]
        for op in ops:
            t = time.perf_counter()
            table = op(table)
            seconds = time.perf_counter() - t
            out_rows, out_size = _live_counts(table)
            stats.append({"op": op.name, "seconds": seconds, "rows_in": rows,
                          "rows_out": out_rows, "bytes_in": size, "bytes_out": out_size})
            rows, size = out_rows, out_size
        column = pa.array([stats] + [None] * (table.num_rows - 1), OP_STATS_TYPE)
        yield _with_scores(table, ops).append_column("op_stats", column)
    release_memory()


def read_files(run: Run, ops: list) -> ray.data.Dataset:
    """Every input file, one read task each, through the row-wise operators ``ops``."""
    files = list_files(run.in_fs, run.in_root, INPUT_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no input files ({', '.join(INPUT_SUFFIXES)}) under "
                                f"{run.input_uri}")
    run.detail(f"ingest: {len(files)} input files under {run.input_uri}")
    s = run.settings
    reader = FileReader(run.in_root, run.in_fs, s.read.batch_rows, s.read.strict,
                        batch_bytes=s.read.batch_bytes)
    ds = ray.data.from_items([{"path": f} for f in files],
                             override_num_blocks=min(len(files), 4096))
    return ds.map_batches(_read_and_clean, fn_kwargs={"reader": reader, "ops": ops},
                          batch_size=1, batch_format="pyarrow")


def ingest(run: Run) -> None:
    s = run.settings
    ops = s.phase1.bound(tokenizer=s.tokenizer, s3=s.s3)
    run.detail("ingest: " + " → ".join(op.name for op in ops))
    for op in ops:
        if hasattr(op, "n_items"):
            run.detail(f"ingest: {op.name} against {op.n_items} benchmark items")
    run.write(read_files(run, ops), "_work/clean")
    ledger = run.read("_work/clean", columns=tombstone_columns(), live=False)
    run.write(ledger.map_batches(tombstones_to_ledger, batch_format="pyarrow"),
              "removed/ingest")


def exact_dedup(run: Run) -> None:
    s = run.settings.phase1.operators["exact_dedup"]
    n_rows = live_rows(run)
    keys = run.read("_work/clean", columns=KEY_COLUMNS, live=True,
                    rows_per_task=KEY_BLOCK_ROWS, total_rows=n_rows)
    n_buckets = partition_count(n_rows, s.rows_per_bucket)
    run.detail(f"exact_dedup: {n_rows} live files in {n_buckets} hash bucket(s)")

    removed = partitioned(keys, ["content_hash"], n_buckets, choose_representatives,
                          {"group_col": "content_hash", "stage": "exact_dedup",
                           "reason": "exact_duplicate"}, batch_rows=None)
    run.write(removed, "removed/exact_dedup")


def grouping(run: Run) -> None:
    s = run.settings
    g = s.phase1.grouping
    cols = ["id", "content", "path", "n_tokens", "lang", "repo", "source"]

    def prepare(t: pa.Table, drop: bool) -> pa.Table:
        t = t.select(cols) if "content" in t.column_names else conform(
            t, pa.schema([FILE_SCHEMA.field(c) for c in cols]))
        t = t.set_column(t.schema.get_field_index("repo"), "repo", group_key_repo(t))
        return t.append_column("_drop", pa.array([drop] * t.num_rows, pa.bool_()))

    n_rows, n_bytes = live_totals(run)
    # read in blocks of ~64 MB for the shuffle (flows/shuffle.SHUFFLE_BLOCK_BYTES)
    files = run.read("_work/clean", columns=cols, live=True,
                     rows_per_task=block_rows(n_rows, n_bytes), total_rows=n_rows)
    files = files.map_batches(prepare, fn_kwargs={"drop": False}, batch_format="pyarrow")
    parts = [files]
    for stage in DEDUP_STAGES:
        if run.exists(f"removed/{stage}"):
            marks = run.read(f"removed/{stage}", columns=["id", "lang", "repo", "source"],
                             schema=LEDGER_SCHEMA)
            parts.append(marks.map_batches(prepare, fn_kwargs={"drop": True},
                                           batch_format="pyarrow"))
    ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    builder = RepoDocumentBuilder(tokenizer=s.tokenizer, seed=s.seed,
                                  max_doc_tokens=g.max_doc_tokens,
                                  repo_header=g.repo_header, file_header=g.file_header)
    n_partitions = max(partition_count(n_rows, g.rows_per_partition),
                       partition_count(n_bytes, g.bytes_per_partition))
    run.detail(f"grouping: {n_partitions} partition(s) by (language, repository)")
    docs = ds.groupby(["lang", "repo"], num_partitions=n_partitions).map_groups(
        _build_docs, fn_kwargs={"builder": builder}, batch_format="pyarrow")
    run.write(docs, "phase1")


def _build_docs(group: pa.Table, builder: RepoDocumentBuilder) -> pa.Table:
    maybe_die("group")
    try:
        return builder(group)
    finally:
        release_memory()


def near_dedup_stage(run: Run) -> dict:
    return near_dedup(run, live_rows(run))


STAGES = [("ingest", ingest), ("exact_dedup", exact_dedup), ("near_dedup", near_dedup_stage),
          ("grouping", grouping)]


def run_phase1(run: Run) -> dict:
    """Phase 1's stages; its section of the manifest."""
    ops = run.settings.phase1.operators
    for name, fn in STAGES:
        if name in ops and not ops[name].enabled:
            run.log(f"{name}: disabled in the config")
            storage.remove_dir(run.fs, run.path(f"removed/{name}"))
            continue
        run.stage(name, fn)
    return phase1_counts(run, registry.ledger_stages(), DEDUP_STAGES)
