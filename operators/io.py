"""Readers: The Stack v1 layout (``data/<lang>/*.parquet``) and JSONL, local or S3, onto
the canonical :data:`~operators.schema.FILE_SCHEMA`.

A reader handles one input file at a time and streams it in batches, so memory depends on
the batch, not on the file or the corpus. A file that cannot be read, or lacks a content
column, becomes a quarantine row in the ledger (stage ``read``) naming the file and the
error, unless ``strict`` is set, in which case the error is raised.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import xxhash

from operators.languages import EXTENSIONS, canonical_language, language_from_path
from operators.schema import FILE_SCHEMA, conform, mark_removed

INPUT_SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz", ".json.gz", ".ndjson", ".jsonl.zst")

#: Input column names per canonical column, in priority order. The Stack v1 names first;
#: canonical names and a few common raw-crawl spellings are accepted too.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "content": ("content", "text", "code"),
    "lang": ("lang", "language"),
    "repo": ("max_stars_repo_name", "repo", "repo_name", "repository_name",
             "max_forks_repo_name", "max_issues_repo_name"),
    "path": ("max_stars_repo_path", "path", "file_path", "filepath",
             "max_forks_repo_path", "max_issues_repo_path"),
    "license": ("max_stars_repo_licenses", "license", "licenses", "detected_licenses"),
    "stars": ("max_stars_count", "stars", "star_events_count"),
    "size_bytes": ("size", "size_bytes", "length_bytes"),
    "ext": ("ext", "extension"),
    "blob_sha": ("hexsha", "blob_id", "blob_sha", "sha"),
}

REQUIRED = ("content",)


class UnreadableInput(RuntimeError):
    """An input file that cannot be read, with ``read.strict`` set."""


def file_key(rel_path: str) -> str:
    """16 hex digits naming an input file (its path relative to the input root)."""
    return xxhash.xxh3_64_hexdigest(rel_path.encode())


def make_ids(rel_path: str, start: int, n: int) -> pa.Array:
    """Row ids ``<file key>-<row number>``: unique, and stable over the same input."""
    key = file_key(rel_path)
    return pa.array([f"{key}-{i}" for i in range(start, start + n)], pa.string())


def _pick(names: list[str], canonical: str) -> str | None:
    for alias in COLUMN_ALIASES[canonical]:
        if alias in names:
            return alias
    return None


def _as_text(col: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Content as a large_string array plus a mask of rows that were not valid UTF-8."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    bad = np.zeros(len(col), dtype=bool)
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        try:
            col.validate(full=True)
            return col.cast(pa.large_string()), bad
        except pa.ArrowInvalid:
            col = col.cast(pa.large_binary()) if pa.types.is_large_string(col.type) \
                else col.view(pa.binary()).cast(pa.large_binary())
    if pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type):
        out = []
        for i, v in enumerate(col.to_pylist()):
            if v is None:
                out.append(None)
                continue
            try:
                out.append(v.decode("utf-8"))
            except UnicodeDecodeError:
                out.append(None)
                bad[i] = True
        return pa.array(out, pa.large_string()), bad
    raise TypeError(f"content column has type {col.type}, expected string or binary")


def _cast(batch: pa.Table, name: str, to: pa.DataType) -> pa.ChunkedArray:
    """A column cast to the canonical type; a failure names the column."""
    try:
        return batch.column(name).cast(to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise TypeError(f"column {name!r} ({batch.schema.field(name).type}) cannot be read "
                        f"as {to}: {exc}") from None


def _license_text(col: pa.ChunkedArray) -> pa.Array:
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
        return pa.array([",".join(v) if v else None for v in col.to_pylist()], pa.string())
    return col.cast(pa.string())


def normalise_batch(batch: pa.Table, rel_path: str, start_row: int,
                    dir_lang: str | None) -> pa.Table:
    """Map one batch of an input file onto FILE_SCHEMA (ids, language, licenses, sizes)."""
    names = batch.column_names
    n = batch.num_rows
    cols: dict[str, pa.Array] = {"id": make_ids(rel_path, start_row, n)}
    content, bad_utf8 = _as_text(batch.column(_pick(names, "content")))
    cols["content"] = content
    for canon in ("repo", "path", "ext", "blob_sha"):
        src = _pick(names, canon)
        cols[canon] = _cast(batch, src, pa.string()) if src else pa.nulls(n, pa.string())
    src = _pick(names, "license")
    cols["license"] = _license_text(batch.column(src)) if src else pa.nulls(n, pa.string())
    src = _pick(names, "stars")
    cols["stars"] = _cast(batch, src, pa.int64()) if src else pa.nulls(n, pa.int64())
    # size: the input's own number when given, else the UTF-8 byte length
    byte_len = pc.binary_length(content).cast(pa.int64())
    src = _pick(names, "size_bytes")
    cols["size_bytes"] = pc.coalesce(_cast(batch, src, pa.int64()), byte_len) \
        if src else byte_len
    # language: the lang column, else the Stack directory, else the extension
    src = _pick(names, "lang")
    given = batch.column(src).to_pylist() if src else [None] * n
    paths = cols["path"].to_pylist()
    langs = []
    for g, p in zip(given, paths):
        langs.append(canonical_language(g) or dir_lang or language_from_path(p))
    cols["lang"] = pa.array(langs, pa.string())
    if cols["ext"].null_count == n:
        cols["ext"] = pa.array([posixpath.splitext(p)[1].lstrip(".") if p else None
                                for p in paths], pa.string())
    cols["source"] = pa.array([rel_path] * n, pa.string())
    table = conform(pa.table(cols), FILE_SCHEMA)
    table = mark_removed(table, pc.is_null(batch.column(_pick(names, "content"))),
                         "read", "missing_content")
    if bad_utf8.any():
        table = mark_removed(table, pa.array(bad_utf8), "read", "non_utf8")
    return table


def quarantine_row(rel_path: str, reason: str, detail: str, row: str = "file") -> pa.Table:
    """A ledger-bound row for input that could not be turned into file rows."""
    return conform(pa.table({
        "id": [f"{file_key(rel_path)}-{row}"], "source": [rel_path],
        "removed_stage": ["read"], "removed_reason": [reason],
        "removed_detail": [detail[:2000]],
    }), FILE_SCHEMA)


def _dir_language(rel_path: str) -> str | None:
    """``data/<slug>/x.parquet`` → the slug's language (The Stack v1 layout)."""
    parts = rel_path.split("/")
    if len(parts) >= 2:
        lang = canonical_language(parts[-2])
        return lang if lang in EXTENSIONS else None
    return None


def split_by_bytes(table: pa.Table, max_bytes: int | None) -> Iterator[pa.Table]:
    """Zero-copy slices of ``table`` whose content holds at most ``max_bytes`` bytes (a
    single larger row is a slice of its own)."""
    if max_bytes is None or "content" not in table.column_names or table.num_rows < 2:
        yield table
        return
    sizes = pc.fill_null(pc.binary_length(table.column("content")), 0).to_numpy(
        zero_copy_only=False).astype(np.int64)
    if int(sizes.sum()) <= max_bytes:
        yield table
        return
    start, acc = 0, 0
    for i, n in enumerate(sizes.tolist()):
        if i > start and acc + n > max_bytes:
            yield table.slice(start, i - start)
            start, acc = i, 0
        acc += n
    yield table.slice(start)


class FileReader:
    """Reads whole input files into canonical batches; one call per input file.

    Args:
        root: the input root (filesystem path) that ids and ``source`` are relative to.
        filesystem: where the files live.
        batch_rows: rows per emitted batch (bounds memory for big files).
        strict: raise on an unreadable file instead of quarantining it.
    """

    def __init__(self, root: str, filesystem: pafs.FileSystem, batch_rows: int = 2048,
                 strict: bool = False, batch_bytes: int | None = None):
        if batch_rows < 1 or (batch_bytes is not None and batch_bytes < 1):
            raise ValueError("batch_rows and batch_bytes must be >= 1")
        self.root = root.rstrip("/")
        self.fs = filesystem
        self.batch_rows = batch_rows
        self.batch_bytes = batch_bytes
        self.strict = strict

    def rel(self, path: str) -> str:
        if path == self.root:
            return os.path.basename(path)
        return path[len(self.root):].lstrip("/")

    def __call__(self, batch: pa.Table) -> Iterator[pa.Table]:
        for path in batch.column("path").to_pylist():
            yield from self.read_file(path)

    def read_file(self, path: str) -> Iterator[pa.Table]:
        rel = self.rel(path)
        reader = self._parquet if path.lower().endswith(".parquet") else self._jsonl
        emitted = 0
        try:
            for whole in reader(path, rel):
                for table in split_by_bytes(whole, self.batch_bytes):
                    emitted += table.num_rows
                    yield table
        except Exception as exc:  # noqa: BLE001 - every failure becomes a record
            if self.strict:
                raise UnreadableInput(f"cannot read input file {path}: {exc}") from exc
            what = "unreadable_file" if emitted == 0 else "unreadable_rest"
            yield quarantine_row(rel, what, f"{path}: {type(exc).__name__}: {exc}",
                                 row="file" if emitted == 0 else f"rest{emitted}")

    def _parquet(self, path: str, rel: str) -> Iterator[pa.Table]:
        with self.fs.open_input_file(path) as f:
            pf = pq.ParquetFile(f)
            names = pf.schema_arrow.names
            missing = [c for c in REQUIRED if _pick(names, c) is None]
            if missing:
                raise KeyError(f"missing required column(s) {missing}; has {names}")
            wanted = sorted({_pick(names, c) for c in COLUMN_ALIASES} - {None})
            row = 0
            dir_lang = _dir_language(rel)
            for rb in pf.iter_batches(batch_size=self.batch_rows, columns=wanted):
                t = pa.Table.from_batches([rb])
                yield normalise_batch(t, rel, row, dir_lang)
                row += t.num_rows

    def _jsonl(self, path: str, rel: str) -> Iterator[pa.Table]:
        dir_lang = _dir_language(rel)
        compression = "detect" if path.endswith((".gz", ".zst")) else None
        with self.fs.open_input_stream(path, compression=compression) as f:
            rows: list[dict] = []
            start = 0
            line_no = 0
            pending = b""
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    lines = [pending] if pending.strip() else []
                else:
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                for raw in lines:
                    if not raw.strip():
                        line_no += 1
                        continue
                    try:
                        obj = json.loads(raw)
                        if not isinstance(obj, dict):
                            raise ValueError("line is not a JSON object")
                        rows.append(obj)
                    except ValueError as exc:
                        yield quarantine_row(rel, "malformed_json",
                                             f"{path} line {line_no + 1}: {exc}",
                                             row=f"line{line_no}")
                        rows.append(None)
                    line_no += 1
                    if len(rows) >= self.batch_rows:
                        yield from self._json_batch(rows, rel, start, dir_lang, path)
                        start += len(rows)
                        rows = []
                if not chunk:
                    break
            if rows:
                yield from self._json_batch(rows, rel, start, dir_lang, path)

    def _json_batch(self, rows, rel, start, dir_lang, path) -> Iterator[pa.Table]:
        # malformed lines keep their row number (their id was used by the quarantine row)
        keep = [i for i, r in enumerate(rows) if r is not None]
        if not keep:
            return
        good = [rows[i] for i in keep]
        names = sorted(set().union(*(r.keys() for r in good)))
        wanted = sorted({_pick(names, c) for c in COLUMN_ALIASES} - {None})
        if _pick(names, "content") is None:  # every row becomes a missing_content record
            wanted.append("content")
        table = pa.Table.from_pylist([{k: r.get(k) for k in wanted} for r in good])
        if table.column("content").type == pa.null():
            table = table.set_column(table.schema.get_field_index("content"), "content",
                                     pa.nulls(table.num_rows, pa.large_string()))
        out = normalise_batch(table, rel, start, dir_lang)
        if len(keep) != len(rows):  # re-number ids to their line positions
            ids = [f"{file_key(rel)}-{start + i}" for i in keep]
            out = out.set_column(0, "id", pa.array(ids, pa.string()))
        yield out
