"""The canonical schemas, defined once: file rows, removal-ledger rows and repo documents.

Every reader maps its input onto :data:`FILE_SCHEMA`; every stage keeps those column names.
A file row that a stage removes stays in the stage's output as a *tombstone*: its content
is nulled and ``removed_stage`` / ``removed_reason`` say why, so the ledger can be written
without any side effect inside a Ray task.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

#: One source-code file. ``id`` is unique and stable across runs over the same input: the
#: hash of the input file's path relative to the input root, then the row number in it
#: (see :func:`operators.io.make_ids`); ``blob_sha`` keeps the git blob hash (The Stack's
#: ``hexsha``), which is *not* unique in raw crawls.
FILE_SCHEMA = pa.schema([
    pa.field("id", pa.string()),
    pa.field("content", pa.large_string()),
    pa.field("lang", pa.string()),
    pa.field("repo", pa.string()),
    pa.field("path", pa.string()),
    pa.field("license", pa.string()),
    pa.field("stars", pa.int64()),
    pa.field("size_bytes", pa.int64()),
    pa.field("ext", pa.string()),
    pa.field("blob_sha", pa.string()),
    pa.field("source", pa.string()),
    pa.field("n_tokens", pa.int64()),
    pa.field("content_hash", pa.string()),
    #: what redaction replaced in this file: (kind, count) pairs, null when nothing
    pa.field("redactions", pa.list_(pa.struct([("kind", pa.string()),
                                                ("count", pa.int32())]))),
    pa.field("removed_stage", pa.string()),
    pa.field("removed_reason", pa.string()),
    pa.field("removed_detail", pa.string()),
])

#: One removed row (``OUT/removed/``). ``duplicate_of`` names the kept representative for
#: duplicates; ``detail`` carries stage-specific context (the error text, the benchmark...).
LEDGER_SCHEMA = pa.schema([
    pa.field("id", pa.string()),
    pa.field("repo", pa.string()),
    pa.field("path", pa.string()),
    pa.field("lang", pa.string()),
    pa.field("stage", pa.string()),
    pa.field("reason", pa.string()),
    pa.field("detail", pa.string()),
    pa.field("duplicate_of", pa.string()),
    pa.field("n_tokens", pa.int64()),
    pa.field("size_bytes", pa.int64()),
    pa.field("source", pa.string()),
])

#: One repository-level document of phase 1 (``OUT/phase1/``).
DOC_SCHEMA = pa.schema([
    pa.field("doc_id", pa.string()),
    pa.field("text", pa.large_string()),
    pa.field("phase", pa.int8()),
    pa.field("lang", pa.string()),
    pa.field("repo", pa.string()),
    pa.field("part", pa.int32()),
    pa.field("file_ids", pa.list_(pa.string())),
    pa.field("n_files", pa.int32()),
    pa.field("n_tokens", pa.int64()),
    #: phase 2 repeats its selection; each repetition is an epoch (null in phase 1)
    pa.field("epoch", pa.int16()),
    #: the token-weighted mean annotator score of the document's files (phase 2; null when
    #: its files were not scored)
    pa.field("quality", pa.float32()),
])

#: Columns a stage needs to decide on duplicates, without the content.
KEY_COLUMNS = ["id", "lang", "repo", "path", "license", "stars", "n_tokens", "size_bytes",
               "source", "content_hash"]


def empty(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Reorder/cast ``table`` to ``schema``, adding missing nullable columns as nulls."""
    cols = []
    for field in schema:
        if field.name in table.column_names:
            col = table.column(field.name)
            if col.type != field.type:
                col = col.cast(field.type)
            cols.append(col)
        else:
            cols.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(cols, schema=schema)


def put_column(table: pa.Table, field: str | pa.Field, values) -> pa.Table:
    """``table`` with the column ``field`` set to ``values``: replaced where it is, else
    appended."""
    name = field if isinstance(field, str) else field.name
    if name in table.column_names:
        return table.set_column(table.schema.get_field_index(name), field, values)
    return table.append_column(field, values)


def live_mask(table: pa.Table) -> pa.ChunkedArray:
    """True for rows no stage has removed yet."""
    return pc.is_null(table.column("removed_stage"))


def mark_removed(table: pa.Table, mask, stage: str, reason: str | pa.Array,
                 detail: str | pa.Array | None = None) -> pa.Table:
    """Tombstone the live rows where ``mask`` is true: null their content, record why.

    ``reason`` and ``detail`` may be per-row arrays (only the masked rows' values are used).
    Rows that an earlier stage removed keep their first removal.
    """
    mask = pc.and_(pc.fill_null(mask, False), live_mask(table))
    if not pc.any(mask).as_py():
        return table
    n = table.num_rows

    def _arr(value):
        if value is None:
            return pa.nulls(n, pa.string())
        if isinstance(value, str):
            return pa.array([value] * n, pa.string())
        return value

    cols = {
        "removed_stage": pc.if_else(mask, pa.scalar(stage), table.column("removed_stage")),
        "removed_reason": pc.if_else(mask, _arr(reason), table.column("removed_reason")),
        "removed_detail": pc.if_else(mask, _arr(detail), table.column("removed_detail")),
        "content": pc.if_else(mask, pa.scalar(None, pa.large_string()),
                              table.column("content")),
    }
    for name, col in cols.items():
        table = table.set_column(table.schema.get_field_index(name), name, col)
    return table


_TOMBSTONE_RENAMES = {"removed_stage": "stage", "removed_reason": "reason",
                      "removed_detail": "detail"}


def tombstone_columns() -> list[str]:
    """The file-table columns a ledger row is made of (no content: reading the ledger of
    a stage need not decompress its files)."""
    return [c for c in FILE_SCHEMA.names if _TOMBSTONE_RENAMES.get(c, c) in LEDGER_SCHEMA.names]


def tombstones_to_ledger(table: pa.Table) -> pa.Table:
    """Ledger rows for the tombstones of a file table."""
    dead = table.filter(pc.invert(live_mask(table)))
    return conform(dead.rename_columns([_TOMBSTONE_RENAMES.get(c, c) for c in dead.column_names]),
                   LEDGER_SCHEMA)
