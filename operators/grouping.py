"""Repository documents: the files of one (language, repository), in seeded-random order,
concatenated into documents with a path header before each file (the paper groups by
language, then by repository).

Document format (StarCoder2's repository-context format, configurable)::

    <repo_name>{repo}
    <file_sep>{path}
    {content of file 1}
    <file_sep>{path}
    {content of file 2}

A repository whose files exceed ``max_doc_tokens`` is split at file boundaries into parts
(``part`` 0, 1, …), each with the repository header; a single file larger than the limit
becomes a part of its own and is never cut.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from operators.schema import DOC_SCHEMA
from operators.tokens import count_tokens


@dataclasses.dataclass
class RepoDocumentBuilder:
    """Builds the documents of one (lang, repo) group.

    The input table has ``id``, ``content``, ``path``, ``n_tokens``, ``lang``, ``repo``, an
    optional ``quality`` (the document gets its files' token-weighted mean) and a boolean
    ``_drop``: rows with ``_drop`` true are removal markers from the dedup stages
    (no content); every file row whose id has a marker is left out.
    """

    tokenizer: str = "packaged:smollm2"
    seed: int = 0
    max_doc_tokens: int = 32768
    repo_header: str = "<repo_name>{repo}\n"
    file_header: str = "<file_sep>{path}\n"
    phase: int = 1
    epoch: int | None = None

    def __post_init__(self):
        if self.max_doc_tokens <= 0:
            raise ValueError(f"max_doc_tokens must be > 0, got {self.max_doc_tokens}")
        for name, template, field in (("repo_header", self.repo_header, "{repo}"),
                                      ("file_header", self.file_header, "{path}")):
            if field not in template:
                raise ValueError(f"{name} must contain {field}, got {template!r}")

    def order_key(self, file_id: str) -> int:
        return xxhash.xxh3_64_intdigest(file_id.encode(), seed=self.seed)

    def __call__(self, group: pa.Table) -> pa.Table:
        drop = pc.fill_null(group.column("_drop"), False)
        dropped = set(group.filter(drop).column("id").to_pylist())
        files = group.filter(pc.invert(drop))
        if dropped:
            files = files.filter(pc.invert(pc.is_in(files.column("id"),
                                                    value_set=pa.array(sorted(dropped)))))
        if files.num_rows == 0:
            return DOC_SCHEMA.empty_table()
        lang = files.column("lang")[0].as_py()
        repo = files.column("repo")[0].as_py()
        ids = files.column("id").to_pylist()
        order = np.argsort(np.array([self.order_key(i) for i in ids], dtype=np.uint64),
                           kind="stable")
        paths = files.column("path").to_pylist()
        contents = files.column("content").to_pylist()
        tokens = files.column("n_tokens").to_pylist()
        scores = (files.column("quality").to_pylist() if "quality" in files.column_names
                  else [None] * files.num_rows)
        repo_head = self.repo_header.format(repo=repo)
        heads = [self.file_header.format(path=paths[i] or "") for i in order]
        head_tokens = count_tokens([repo_head] + heads, self.tokenizer)
        repo_tok, file_head_tok = head_tokens[0], head_tokens[1:]

        docs: list[dict] = []
        cur_parts: list[str] = []
        cur_ids: list[str] = []
        cur_tok = 0
        cur_q: list[tuple[float, int]] = []

        def flush():
            part = len(docs)
            key = f"{lang}\0{repo}\0{part}"
            if self.phase != 1:
                key = f"{self.phase}\0{self.epoch}\0{key}"
            docs.append({
                "doc_id": xxhash.xxh3_64_hexdigest(key.encode()), "epoch": self.epoch,
                "text": repo_head + "".join(cur_parts), "phase": self.phase,
                "lang": lang, "repo": repo, "part": part, "file_ids": list(cur_ids),
                "n_files": len(cur_ids), "n_tokens": cur_tok, "quality": weighted_mean(cur_q),
            })

        for k, i in enumerate(order):
            cost = file_head_tok[k] + (tokens[i] or 0)
            if cur_ids and cur_tok + cost > self.max_doc_tokens:
                flush()
                cur_parts, cur_ids, cur_tok, cur_q = [], [], 0, []
            if not cur_ids:
                cur_tok = repo_tok
            cur_parts.append(heads[k] + contents[i])
            cur_ids.append(ids[i])
            cur_tok += cost
            if scores[i] is not None:
                cur_q.append((scores[i], max(1, tokens[i] or 0)))
        flush()
        return pa.Table.from_pylist(docs, schema=DOC_SCHEMA)


def weighted_mean(pairs: list[tuple[float, int]]) -> float | None:
    """The weighted mean of (value, weight) pairs; None for none."""
    w = sum(k for _, k in pairs)
    return sum(v * k for v, k in pairs) / w if w else None


def group_key_repo(table: pa.Table) -> pa.Array:
    """The repository key for grouping; files with no repository are grouped by the input
    file they came from, so no giant "unknown" group forms."""
    repo = table.column("repo")
    fallback = pc.binary_join_element_wise("(no repo) ", pc.fill_null(table.column("source"),
                                                                        ""), "")
    return pc.coalesce(repo, fallback)
